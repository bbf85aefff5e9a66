/* Making tokenizers: a SentencePiece BPE trainer, .model / .vocab writers, and assembling a
 * .model from a .vocab.
 *
 * The trainer follows sentencepiece 0.2.3's spm_train for model_type=bpe
 * (trainer_interface.cc + bpe_model_trainer.cc) step by step, so that on the same corpus
 * and settings it produces the same pieces in the same order:
 *   - input files are read as lines; a line is a sentence; empty lines, lines longer than
 *     max_sentence_length bytes and lines holding U+2585 are skipped;
 *   - sentences are normalized (the normalizer spec given, or identity) and meta pieces
 *     (<unk>, <s>, </s>, <pad>, <0xXX>) in them are cut out;
 *   - characters are counted; the most frequent ones up to character_coverage are kept
 *     ("required"), the others become U+2585 and never join a piece;
 *   - sentences are split into words before each "▁" and counted;
 *   - BPE: repeatedly the most frequent adjacent pair (ties: fewer characters, then
 *     bytewise smaller) becomes a piece, if it is a valid piece (at most
 *     max_sentencepiece_length characters, "▁" only first, one Unicode script, digits
 *     alone when split_digits); until vocab_size - meta pieces - required chars merges;
 *   - the .model lists: meta pieces at their ids (unk/bos/eos/pad, then the 256 byte
 *     pieces with byte_fallback) with score 0, the merges with scores 0, -1, ..., then the
 *     required characters by frequency. */
#ifndef QG_TOK_TRAIN_H
#define QG_TOK_TRAIN_H

#include "core/util.h"
#include "io/spm.h"
#include "tok/tok.h"

typedef struct {
  int vocab_size;               /* required, > meta pieces */
  int byte_fallback;            /* 256 <0xXX> pieces */
  float character_coverage;     /* 0.98 .. 1 (contest: 0.999) */
  int split_digits;             /* contest: 1 */
  int split_by_whitespace;      /* default 1 */
  int split_by_unicode_script;  /* default 1 */
  int split_by_number;          /* default 1 */
  int max_sentencepiece_length; /* default 16 */
  int max_sentence_length;      /* bytes, default 4192 */
  int unk_id, bos_id, eos_id, pad_id; /* contest: 3, 1, 2, 0 (-1 = none, not for unk) */
  /* normalizer spec for the model (its charsmap normalizes the training text too); NULL
   * = identity with add_dummy_prefix off and remove_extra_whitespaces on, the contest's
   * flags */
  const qg_spm_normalizer *normalizer;
  /* progress (called from the training thread; may be NULL) */
  void (*progress)(void *user, const char *stage, double done, double total);
  void *progress_user;
} qg_tok_train_opts;

/* The contest's settings: BPE, byte_fallback, character_coverage 0.999, split_digits,
 * pad/bos/eos/unk = 0/1/2/3; vocab_size 1024. */
void qg_tok_train_defaults(qg_tok_train_opts *o);

/* Trains on the lines of the given files and fills *out (a complete model: pieces, trainer
 * and normalizer specs). */
qg_status qg_tok_train(const char *const *files, int n_files, const qg_tok_train_opts *o,
                       qg_spm *out);

/* A ModelProto in protobuf wire format, appended to out. */
qg_status qg_tok_model_serialize(const qg_spm *s, qg_buf *out);
/* Atomic writes of a .model and of a .vocab (piece TAB score lines, as spm_train). */
qg_status qg_tok_model_write(const qg_spm *s, const char *path);
qg_status qg_tok_vocab_write(const qg_spm *s, const char *path);

/* Turns a model read from a .vocab into one with the contest's trainer settings and the
 * given normalizer spec (copied; NULL = identity), ready for qg_tok_model_write. */
qg_status qg_tok_assemble(qg_spm *s, const qg_spm_normalizer *normalizer);

/* The trainer's Unicode script of a code point (sentencepiece's table). */
int qg_tok_script(uint32_t cp);

#endif
