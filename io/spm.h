/* SentencePiece tokenizer files (.model protobuf and .vocab text) and the contest's BPB
 * lookup tables.
 *
 * Both readers fill one qg_spm: the pieces in id order, the trainer and normalizer specs,
 * and the normalizer's precompiled charsmap (kept for the encoder). A .model carries all of
 * it; a .vocab carries only pieces and scores, so the specs are the contest's training
 * settings (data/download_hf_docs_and_tokenize.py) and `specs_assumed` says so.
 *
 * The lookup tables reproduce train_gpt.py's build_sentencepiece_luts, which is what the
 * contest's val_bpb divides by; see qg_spm_build_luts. */
#ifndef QG_IO_SPM_H
#define QG_IO_SPM_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* ModelProto.SentencePiece.Type (the numbers are the proto's). */
enum {
  QG_SPM_NORMAL = 1,
  QG_SPM_UNKNOWN = 2,
  QG_SPM_CONTROL = 3,
  QG_SPM_USER_DEFINED = 4,
  QG_SPM_UNUSED = 5,
  QG_SPM_BYTE = 6
};

/* TrainerSpec.ModelType. */
enum { QG_SPM_UNIGRAM = 1, QG_SPM_BPE = 2, QG_SPM_WORD = 3, QG_SPM_CHAR = 4 };

typedef struct {
  char *piece; /* NUL-terminated copy; len is authoritative (never 0; a .model piece may
                 hold a NUL byte, a .vocab piece cannot) */
  size_t len;
  float score;
  int type; /* QG_SPM_NORMAL ... QG_SPM_BYTE */
} qg_spm_piece;

/* TrainerSpec (sentencepiece_model.proto field numbers in brackets). Absent fields hold
 * the proto2 defaults; strings are never NULL (absent = "" or the declared default). */
typedef struct {
  char **input; /* [1] repeated */
  int n_input;
  char *input_format;  /* [7] */
  char *model_prefix;  /* [2] */
  int model_type;      /* [3] default UNIGRAM */
  int32_t vocab_size;  /* [4] default 8000 */
  char **accept_language; /* [5] repeated */
  int n_accept_language;
  int32_t self_test_sample_size;  /* [6] default 0 */
  float character_coverage;       /* [10] default 0.9995 */
  uint64_t input_sentence_size;   /* [11] default 0 */
  int shuffle_input_sentence;     /* [19] default true */
  int32_t seed_sentencepiece_size; /* [14] default 1000000 */
  float shrinking_factor;          /* [15] default 0.75 */
  int32_t max_sentence_length;     /* [18] default 4192 */
  int32_t num_threads;             /* [16] default 16 */
  int32_t num_sub_iterations;      /* [17] default 2 */
  int32_t max_sentencepiece_length; /* [20] default 16 */
  int split_by_unicode_script;      /* [21] default true */
  int split_by_number;              /* [23] default true */
  int split_by_whitespace;          /* [22] default true */
  int treat_whitespace_as_suffix;   /* [24] default false */
  int allow_whitespace_only_pieces; /* [26] default false */
  int split_digits;                 /* [25] default false */
  char *pretokenization_delimiter;  /* [53] default "" */
  char **control_symbols;           /* [30] repeated */
  int n_control_symbols;
  char **user_defined_symbols; /* [31] repeated */
  int n_user_defined_symbols;
  char *required_chars;             /* [36] */
  int byte_fallback;                /* [35] default false */
  int vocabulary_output_piece_score; /* [32] default true */
  int hard_vocab_limit;             /* [33] default true */
  int use_all_vocab;                /* [34] default false */
  int32_t unk_id, bos_id, eos_id, pad_id; /* [40..43] defaults 0, 1, 2, -1 */
  char *unk_piece, *bos_piece, *eos_piece, *pad_piece; /* [45..48] "<unk>" "<s>" "</s>" "<pad>" */
  char *unk_surface;                /* [44] default " \xE2\x81\x87 " */
  int train_extremely_large_corpus; /* [49] default false */
  char *seed_sentencepieces_file;   /* [54] */
} qg_spm_trainer;

/* NormalizerSpec (also used for the optional denormalizer_spec). */
typedef struct {
  char *name;                 /* [1] */
  uint8_t *charsmap;          /* [2] precompiled_charsmap, owned (NULL when empty) */
  size_t charsmap_len;
  int add_dummy_prefix;         /* [3] default true */
  int remove_extra_whitespaces; /* [4] default true */
  int escape_whitespaces;       /* [5] default true */
  char *normalization_rule_tsv; /* [6] */
  /* The charsmap split as SentencePiece reads it: a little-endian u32 trie size, the
   * double-array trie (trie_len bytes, a multiple of 4), then the NUL-separated
   * normalized strings. Pointers into charsmap; NULL/0 when the charsmap is empty. */
  const uint8_t *trie;
  size_t trie_len;
  const uint8_t *normalized;
  size_t normalized_len;
} qg_spm_normalizer;

typedef struct {
  int n_pieces;
  qg_spm_piece *pieces; /* id order */
  qg_spm_trainer trainer;
  qg_spm_normalizer normalizer;
  int has_denormalizer; /* ModelProto field 5 was present */
  qg_spm_normalizer denormalizer;
  /* 1 when read from a .vocab: trainer and normalizer hold the contest's settings
   * (BPE, character_coverage 0.999, split_digits, hard_vocab_limit off, nmt_nfkc with
   * add_dummy_prefix off and remove_extra_whitespaces on, byte_fallback iff byte pieces
   * exist, unk/bos/eos/pad ids where those pieces are, else -1) but no charsmap. */
  int specs_assumed;
  int n_byte_pieces;
  /* piece -> id hash (open addressing, internal) */
  int32_t *hash;
  size_t hash_cap;
} qg_spm;

/* Reads a tokenizer file, choosing the reader by content: text of `piece<TAB>score` lines
 * is a .vocab, anything else is parsed as a ModelProto. On failure *out is left empty
 * (safe to qg_spm_free). */
qg_status qg_spm_load(const char *path, qg_spm *out);
/* Parses a serialized ModelProto. `name` labels error messages. Rejects: malformed wire
 * format, wrong wire types for known fields, piece or model types outside the enum, a
 * charsmap whose header does not fit, a missing trainer_spec or normalizer_spec (every
 * spm_train output has both; without them a truncated file would parse), and what
 * SentencePiece's loader refuses: no pieces, an empty piece, a piece defined twice in its
 * class, zero or two UNKNOWN pieces, BYTE pieces without byte_fallback or not named
 * <0xXX>, byte_fallback without all 256 byte pieces. */
qg_status qg_spm_parse_model(const uint8_t *data, size_t len, const char *name, qg_spm *out);
/* Parses a .vocab: UTF-8 lines `piece<TAB>score` (split at the last TAB; LF or CRLF; the
 * last line may lack its LF). Types are inferred: <pad> <s> </s> control, <unk> unknown,
 * <0xXX> (two upper-case hex digits) byte, all else normal. Rejects an empty file, a line
 * without TAB, an empty piece, a score that is not a finite number, a duplicate piece, a
 * NUL byte; every message names the line. */
qg_status qg_spm_parse_vocab(const uint8_t *data, size_t len, const char *name, qg_spm *out);
void qg_spm_free(qg_spm *s);

/* The id of a piece (len bytes), or -1. */
int qg_spm_piece_to_id(const qg_spm *s, const char *piece, size_t len);

/* The trainer settings the contest's tokenizer was trained with
 * (data/download_hf_docs_and_tokenize.py): BPE over all pieces, coverage 0.999, split
 * digits, soft vocabulary limit, byte fallback when byte pieces exist. */
void qg_spm_set_contest_trainer(qg_spm *s);

/* ---- the contest's BPB lookup tables -------------------------------------------------
 * For each id < n_pieces, as build_sentencepiece_luts does:
 *   control / unknown / unused: is_boundary = 1, base_bytes = 0, has_leading_space = 0;
 *   byte:                       is_boundary = 0, base_bytes = 1, has_leading_space = 0;
 *   otherwise (normal, user-defined): is_boundary = 0; if the piece starts with U+2581 "▁"
 *     has_leading_space = 1 and that one "▁" is dropped; base_bytes = UTF-8 byte count
 *     of the rest.
 * The tables have max(n_pieces, vocab_size) entries (the contest sizes them so); ids at
 * or past n_pieces are padding: base_bytes 0, has_leading_space 0, is_boundary 1. */
int qg_spm_lut_size(const qg_spm *s, int vocab_size);
/* Fills caller arrays of qg_spm_lut_size() entries. Fails (QG_ERR_INPUT) if a piece is
 * longer than int16 can count, as the contest's int16 table could not hold it. */
qg_status qg_spm_build_luts(const qg_spm *s, int vocab_size, int16_t *base_bytes,
                            uint8_t *has_leading_space, uint8_t *is_boundary);

typedef struct {
  int size;
  int16_t *base_bytes;
  uint8_t *has_leading_space;
  uint8_t *is_boundary;
} qg_spm_luts;

/* Allocates and fills the tables; qg_spm_luts_free releases them. */
qg_status qg_spm_luts_init(qg_spm_luts *l, const qg_spm *s, int vocab_size);
void qg_spm_luts_free(qg_spm_luts *l);

/* Bytes the contest counts for target token tgt following token prev (both < size):
 * base_bytes[tgt] + (has_leading_space[tgt] && !is_boundary[prev]). */
static inline int qg_spm_token_bytes(const qg_spm_luts *l, int prev, int tgt) {
  return l->base_bytes[tgt] + (l->has_leading_space[tgt] && !l->is_boundary[prev]);
}
/* Sum of qg_spm_token_bytes over the targets tok[1..n-1] (each with its predecessor), as
 * eval_val sums over x = tok[:-1], y = tok[1:]. Fails naming the position of an id that
 * is out of the tables' range. */
qg_status qg_spm_count_bytes(const qg_spm_luts *l, const uint16_t *tok, size_t n,
                             int64_t *bytes);

#endif
