/* The contest tokenizer: SentencePiece normalization, BPE encoding and decoding, exactly
 * as the sentencepiece library (0.2.x) does them, for any BPE .model or .vocab that
 * io/spm.h reads.
 *
 * Encoding, in the library's order (normalizer.cc, bpe_model.cc, sentencepiece_processor.cc):
 *   1. normalization: at each position the longest match in the precompiled charsmap's
 *      double-array trie is replaced by its normalized string; without a match one UTF-8
 *      character is copied, an invalid byte becomes U+FFFD; leading, trailing and repeated
 *      spaces are dropped (remove_extra_whitespaces), "▁" is prefixed (add_dummy_prefix)
 *      and every space becomes "▁" (escape_whitespaces);
 *   2. BPE over the characters: repeatedly merge the adjacent pair whose concatenation is
 *      a NORMAL / USER_DEFINED / UNUSED piece with the highest score, leftmost on ties;
 *      UNUSED results are split back into the pieces they were merged from;
 *   3. symbols that are not pieces become their UTF-8 bytes as <0xXX> pieces when the model
 *      has byte_fallback, else <unk> (a run of unknown symbols gives one <unk>).
 *
 * A qg_tok is read-only after qg_tok_init and may be shared by threads; each thread
 * encodes with its own qg_tok_ctx (scratch memory and a cache of encoded words). */
#ifndef QG_TOK_TOK_H
#define QG_TOK_TOK_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/util.h"
#include "io/spm.h"

#define QG_TOK_SPACE "\xE2\x96\x81" /* U+2581, SentencePiece's escaped whitespace */

typedef struct {
  /* the model; owned (qg_tok_init moves it in) */
  qg_spm spm;
  /* normalizer, from spm.normalizer (views into its charsmap) */
  const uint32_t *trie; /* darts-clone double array units (host order), NULL = identity */
  size_t trie_units;
  const char *norm_pool; /* NUL-separated normalized strings */
  size_t norm_pool_len;
  uint8_t first_byte_has_rule[256]; /* 0: no trie key starts with this byte */
  int add_dummy_prefix, remove_extra_ws, escape_ws, ws_suffix;
  /* BPE piece table over NORMAL, USER_DEFINED and UNUSED pieces (the ones merges may
   * produce); open addressing, ids or -1 */
  int32_t *ptab;
  uint64_t *ptab_hash;
  size_t ptab_cap;
  int unk_id;
  int byte_fallback;
  int byte_id[256];        /* id of <0xXX>, or -1 */
  int32_t *ud_ids;         /* USER_DEFINED pieces: matched whole, never normalized or split */
  int n_ud;
  int word_cache_ok;       /* no piece holds "▁" after its start: words encode alone */
  char unk_surface[64];    /* what decode writes for <unk> */
} qg_tok;

/* Takes ownership of *spm (it is zeroed) and prepares the encoder. Fails for a model that
 * is not BPE, a charsmap whose trie is malformed, or a model without <unk>. */
qg_status qg_tok_init(qg_tok *t, qg_spm *spm);
/* Loads a .model or .vocab (qg_spm_load). normalizer_from (NULL = none) names a .model
 * whose normalizer spec (precompiled charsmap included) replaces the tokenizer's own:
 * the way to encode exactly with only a .vocab. */
qg_status qg_tok_load(qg_tok *t, const char *path, const char *normalizer_from);
void qg_tok_free(qg_tok *t);

/* The normalizer alone (for the trainer): n must outlive t; free with qg_tok_free. */
qg_status qg_tok_init_normalizer(qg_tok *t, const qg_spm_normalizer *n, int ws_suffix);
/* Copies src's normalizer spec (name, charsmap, flags) into dst. */
qg_status qg_tok_copy_normalizer(qg_spm_normalizer *dst, const qg_spm_normalizer *src);

/* Step 1 alone: appends the normalized text to out. */
qg_status qg_tok_normalize(const qg_tok *t, const uint8_t *text, size_t len, qg_buf *out);

/* A growable list of ids. */
typedef struct {
  int32_t *v;
  size_t n, cap;
} qg_tok_ids;
qg_status qg_tok_ids_push(qg_tok_ids *ids, int32_t id);
void qg_tok_ids_free(qg_tok_ids *ids);

/* Per-thread encoder state. */
typedef struct qg_tok_ctx qg_tok_ctx;
qg_status qg_tok_ctx_new(const qg_tok *t, qg_tok_ctx **out);
void qg_tok_ctx_free(qg_tok_ctx *c);

/* Encodes text[0..len) and appends its ids to out (what sp.encode(text) returns). */
qg_status qg_tok_encode(qg_tok_ctx *c, const uint8_t *text, size_t len, qg_tok_ids *out);

/* sp.decode(ids): pieces joined, "▁" back to spaces, the first piece's leading "▁"
 * dropped, runs of byte pieces decoded as UTF-8 (each invalid byte as U+FFFD), control
 * pieces invisible, <unk> as the unk surface. Appends to out; an id outside the model
 * fails naming its position. */
qg_status qg_tok_decode(const qg_tok *t, const int32_t *ids, size_t n, qg_buf *out);

/* Length of the longest USER_DEFINED piece that prefixes s[0..n), or 0. */
size_t qg_tok_user_match(const qg_tok *t, const uint8_t *s, size_t n);

/* UTF-8 helpers with SentencePiece's rules (util.cc): a character is valid when it is
 * well-formed, not overlong, not a surrogate and at most U+10FFFF. */
int qg_tok_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp); /* length, 0 if invalid */
size_t qg_tok_utf8_encode(uint32_t cp, uint8_t out[4]);

#endif
