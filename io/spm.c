/* SentencePiece .model / .vocab readers and the contest's BPB lookup tables (see spm.h).
 *
 * The .model checks after parsing mirror what SentencePiece's own loader refuses
 * (ModelInterface::InitializePieces): empty pieces, a piece defined twice within its
 * class, zero or two <unk>, byte pieces without byte_fallback or not named <0xXX>, and
 * byte_fallback without all 256 byte pieces. Accepting what the real loader refuses would
 * only move the failure to the encoder or, worse, into a BPB number. */
#include "io/spm.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/util.h"
#include "io/json_parse.h"
#include "io/protobuf.h"

#define SPM_MAX_FILE ((size_t)256 << 20) /* the largest real models are a few MiB */
#define SPM_MAX_PIECES (1 << 26)
#define SPM_MAX_LUT (1 << 24) /* contest shards hold uint16 ids; leave ample room */

/* ---- small helpers ------------------------------------------------------------------ */

static qg_status dup_into(char **dst, const char *src) {
  char *s = qg_strdup(src);
  if (!s) return qg_fail(QG_ERR_NOMEM, "out of memory copying \"%s\"", src);
  free(*dst);
  *dst = s;
  return QG_OK;
}

static void free_strv(char **v, int n) {
  for (int i = 0; i < n; i++) free(v[i]);
  free(v);
}

/* Appends a LEN field as a string to a repeated-string list (capacity doubles at powers
 * of two, so n alone tells when to grow). */
static qg_status push_str(const qg_pb_reader *r, const qg_pb_field *f, const char *what,
                          char ***v, int *n) {
  if (*n >= SPM_MAX_PIECES)
    return qg_fail(QG_ERR_INPUT, "%s: offset %zu: %s: more than %d entries", r->name,
                   f->offset, what, SPM_MAX_PIECES);
  if ((*n & (*n - 1)) == 0) {
    size_t cap = *n ? (size_t)*n * 2 : 1;
    char **nv = realloc(*v, cap * sizeof *nv);
    if (!nv) return qg_fail(QG_ERR_NOMEM, "%s: %s: out of memory", r->name, what);
    *v = nv;
  }
  char *s = NULL;
  QG_TRY(qg_pb_get_string(r, f, what, &s, NULL));
  (*v)[(*n)++] = s;
  return QG_OK;
}

/* A piece shortened for messages (pieces may be long or hold odd bytes). */
#define PIECE_FMT "\"%.*s\""
#define PIECE_ARG(p, n) (int)((n) > 40 ? 40 : (n)), (p)

static int is_byte_piece_name(const char *p, size_t n) {
  if (n != 6 || memcmp(p, "<0x", 3) != 0 || p[5] != '>') return 0;
  for (int i = 3; i < 5; i++)
    if (!((p[i] >= '0' && p[i] <= '9') || (p[i] >= 'A' && p[i] <= 'F'))) return 0;
  return 1;
}

static int hexval(char c) { return c <= '9' ? c - '0' : c - 'A' + 10; }

/* ---- defaults and freeing ----------------------------------------------------------- */

static qg_status trainer_defaults(qg_spm_trainer *t) {
  memset(t, 0, sizeof *t);
  t->model_type = QG_SPM_UNIGRAM;
  t->vocab_size = 8000;
  t->character_coverage = 0.9995f;
  t->shuffle_input_sentence = 1;
  t->seed_sentencepiece_size = 1000000;
  t->shrinking_factor = 0.75f;
  t->max_sentence_length = 4192;
  t->num_threads = 16;
  t->num_sub_iterations = 2;
  t->max_sentencepiece_length = 16;
  t->split_by_unicode_script = 1;
  t->split_by_number = 1;
  t->split_by_whitespace = 1;
  t->vocabulary_output_piece_score = 1;
  t->hard_vocab_limit = 1;
  t->unk_id = 0;
  t->bos_id = 1;
  t->eos_id = 2;
  t->pad_id = -1;
  QG_TRY(dup_into(&t->input_format, ""));
  QG_TRY(dup_into(&t->model_prefix, ""));
  QG_TRY(dup_into(&t->pretokenization_delimiter, ""));
  QG_TRY(dup_into(&t->required_chars, ""));
  QG_TRY(dup_into(&t->unk_piece, "<unk>"));
  QG_TRY(dup_into(&t->bos_piece, "<s>"));
  QG_TRY(dup_into(&t->eos_piece, "</s>"));
  QG_TRY(dup_into(&t->pad_piece, "<pad>"));
  QG_TRY(dup_into(&t->unk_surface, " \xE2\x81\x87 ")); /* " ⁇ " */
  QG_TRY(dup_into(&t->seed_sentencepieces_file, ""));
  return QG_OK;
}

static void trainer_free(qg_spm_trainer *t) {
  free_strv(t->input, t->n_input);
  free_strv(t->accept_language, t->n_accept_language);
  free_strv(t->control_symbols, t->n_control_symbols);
  free_strv(t->user_defined_symbols, t->n_user_defined_symbols);
  free(t->input_format);
  free(t->model_prefix);
  free(t->pretokenization_delimiter);
  free(t->required_chars);
  free(t->unk_piece);
  free(t->bos_piece);
  free(t->eos_piece);
  free(t->pad_piece);
  free(t->unk_surface);
  free(t->seed_sentencepieces_file);
  memset(t, 0, sizeof *t);
}

static qg_status normalizer_defaults(qg_spm_normalizer *n) {
  memset(n, 0, sizeof *n);
  n->add_dummy_prefix = 1;
  n->remove_extra_whitespaces = 1;
  n->escape_whitespaces = 1;
  QG_TRY(dup_into(&n->name, ""));
  QG_TRY(dup_into(&n->normalization_rule_tsv, ""));
  return QG_OK;
}

static void normalizer_free(qg_spm_normalizer *n) {
  free(n->name);
  free(n->charsmap);
  free(n->normalization_rule_tsv);
  memset(n, 0, sizeof *n);
}

void qg_spm_free(qg_spm *s) {
  if (!s) return;
  for (int i = 0; i < s->n_pieces; i++) free(s->pieces[i].piece);
  free(s->pieces);
  trainer_free(&s->trainer);
  normalizer_free(&s->normalizer);
  normalizer_free(&s->denormalizer);
  free(s->hash);
  memset(s, 0, sizeof *s);
}

/* ---- piece -> id hash ----------------------------------------------------------------
 * SentencePiece keeps two maps: "normal" pieces (NORMAL, USER_DEFINED, UNUSED) and
 * reserved ones (CONTROL, UNKNOWN, BYTE); one string may be in both, and lookup tries the
 * reserved map first. The key here is (string, class), which gives the same behaviour. */

static int reserved_class(int type) {
  return type == QG_SPM_CONTROL || type == QG_SPM_UNKNOWN || type == QG_SPM_BYTE;
}

static uint64_t fnv1a(const char *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
  return h;
}

static int hash_find(const qg_spm *s, const char *p, size_t n, int cls) {
  if (!s->hash) return -1;
  size_t mask = s->hash_cap - 1;
  for (size_t i = (size_t)(fnv1a(p, n) ^ (uint64_t)cls) & mask;; i = (i + 1) & mask) {
    int id = s->hash[i];
    if (id < 0) return -1;
    const qg_spm_piece *q = &s->pieces[id];
    if (q->len == n && reserved_class(q->type) == cls && memcmp(q->piece, p, n) == 0)
      return id;
  }
}

/* Builds the hash over all pieces; *dup gets the pair (first, second) of the first
 * duplicate within a class, or -1. */
static qg_status hash_build(qg_spm *s, int *dup_first, int *dup_second) {
  *dup_first = *dup_second = -1;
  size_t cap = 16;
  while (cap < (size_t)s->n_pieces * 2) cap *= 2;
  s->hash = malloc(cap * sizeof *s->hash);
  if (!s->hash) return qg_fail(QG_ERR_NOMEM, "out of memory for a %zu-slot piece table", cap);
  s->hash_cap = cap;
  for (size_t i = 0; i < cap; i++) s->hash[i] = -1;
  for (int id = 0; id < s->n_pieces; id++) {
    const qg_spm_piece *q = &s->pieces[id];
    int cls = reserved_class(q->type);
    int old = hash_find(s, q->piece, q->len, cls);
    if (old >= 0) {
      *dup_first = old;
      *dup_second = id;
      return QG_OK;
    }
    size_t i = (size_t)(fnv1a(q->piece, q->len) ^ (uint64_t)cls) & (cap - 1);
    while (s->hash[i] >= 0) i = (i + 1) & (cap - 1);
    s->hash[i] = id;
  }
  return QG_OK;
}

int qg_spm_piece_to_id(const qg_spm *s, const char *piece, size_t len) {
  if (!s || !piece) return -1;
  int id = hash_find(s, piece, len, 1);
  return id >= 0 ? id : hash_find(s, piece, len, 0);
}

/* ---- .model -------------------------------------------------------------------------- */

/* Room for one more piece (and its offset, kept for messages). */
static qg_status grow_pieces(qg_spm *s, size_t **offs, int *cap, const char *name, size_t at) {
  if (s->n_pieces < *cap) return QG_OK;
  if (*cap >= SPM_MAX_PIECES)
    return qg_fail(QG_ERR_INPUT, "%s: offset %zu: more than %d pieces", name, at,
                   SPM_MAX_PIECES);
  int ncap = *cap ? *cap * 2 : 256;
  qg_spm_piece *np = realloc(s->pieces, (size_t)ncap * sizeof *np);
  if (!np) return qg_fail(QG_ERR_NOMEM, "%s: out of memory for %d pieces", name, ncap);
  s->pieces = np;
  size_t *no = realloc(*offs, (size_t)ncap * sizeof *no);
  if (!no) return qg_fail(QG_ERR_NOMEM, "%s: out of memory for %d pieces", name, ncap);
  *offs = no;
  *cap = ncap;
  return QG_OK;
}

static qg_status parse_piece(qg_pb_reader *r, qg_spm_piece *p) {
  qg_pb_field f;
  int more;
  memset(p, 0, sizeof *p);
  p->type = QG_SPM_NORMAL; /* proto2 default */
  qg_status st;
  while ((st = qg_pb_next(r, &f, &more)) == QG_OK && more) {
    if (f.number == 1) {
      st = qg_pb_get_string(r, &f, "SentencePiece.piece", &p->piece, &p->len);
    } else if (f.number == 2) {
      st = qg_pb_get_float(r, &f, "SentencePiece.score", &p->score);
    } else if (f.number == 3) {
      int32_t t;
      st = qg_pb_get_i32(r, &f, "SentencePiece.type", &t);
      if (st == QG_OK && (t < QG_SPM_NORMAL || t > QG_SPM_BYTE))
        st = qg_fail(QG_ERR_UNSUPPORTED, "%s: offset %zu: SentencePiece.type %d is not one of "
                     "NORMAL..BYTE (1..6)", r->name, f.offset, (int)t);
      p->type = t;
    }
    if (st != QG_OK) break;
  }
  if (st == QG_OK && !p->piece) st = dup_into(&p->piece, ""); /* absent = "" (rejected later) */
  if (st != QG_OK) {
    free(p->piece);
    p->piece = NULL;
  }
  return st;
}

static qg_status parse_trainer(qg_pb_reader *r, qg_spm_trainer *t) {
  qg_pb_field f;
  int more;
  qg_status st;
  while ((st = qg_pb_next(r, &f, &more)) == QG_OK && more) {
    switch (f.number) {
      case 1: st = push_str(r, &f, "TrainerSpec.input", &t->input, &t->n_input); break;
      case 7: st = qg_pb_get_string(r, &f, "TrainerSpec.input_format", &t->input_format, NULL); break;
      case 2: st = qg_pb_get_string(r, &f, "TrainerSpec.model_prefix", &t->model_prefix, NULL); break;
      case 3: {
        int32_t v;
        st = qg_pb_get_i32(r, &f, "TrainerSpec.model_type", &v);
        if (st == QG_OK && (v < QG_SPM_UNIGRAM || v > QG_SPM_CHAR))
          st = qg_fail(QG_ERR_UNSUPPORTED, "%s: offset %zu: TrainerSpec.model_type %d is not "
                       "one of UNIGRAM, BPE, WORD, CHAR (1..4)", r->name, f.offset, (int)v);
        t->model_type = v;
        break;
      }
      case 4: st = qg_pb_get_i32(r, &f, "TrainerSpec.vocab_size", &t->vocab_size); break;
      case 5:
        st = push_str(r, &f, "TrainerSpec.accept_language", &t->accept_language,
                      &t->n_accept_language);
        break;
      case 6: st = qg_pb_get_i32(r, &f, "TrainerSpec.self_test_sample_size", &t->self_test_sample_size); break;
      case 10: st = qg_pb_get_float(r, &f, "TrainerSpec.character_coverage", &t->character_coverage); break;
      case 11: st = qg_pb_get_u64(r, &f, "TrainerSpec.input_sentence_size", &t->input_sentence_size); break;
      case 19: st = qg_pb_get_bool(r, &f, "TrainerSpec.shuffle_input_sentence", &t->shuffle_input_sentence); break;
      case 14: st = qg_pb_get_i32(r, &f, "TrainerSpec.seed_sentencepiece_size", &t->seed_sentencepiece_size); break;
      case 15: st = qg_pb_get_float(r, &f, "TrainerSpec.shrinking_factor", &t->shrinking_factor); break;
      case 18: st = qg_pb_get_i32(r, &f, "TrainerSpec.max_sentence_length", &t->max_sentence_length); break;
      case 16: st = qg_pb_get_i32(r, &f, "TrainerSpec.num_threads", &t->num_threads); break;
      case 17: st = qg_pb_get_i32(r, &f, "TrainerSpec.num_sub_iterations", &t->num_sub_iterations); break;
      case 20: st = qg_pb_get_i32(r, &f, "TrainerSpec.max_sentencepiece_length", &t->max_sentencepiece_length); break;
      case 21: st = qg_pb_get_bool(r, &f, "TrainerSpec.split_by_unicode_script", &t->split_by_unicode_script); break;
      case 23: st = qg_pb_get_bool(r, &f, "TrainerSpec.split_by_number", &t->split_by_number); break;
      case 22: st = qg_pb_get_bool(r, &f, "TrainerSpec.split_by_whitespace", &t->split_by_whitespace); break;
      case 24: st = qg_pb_get_bool(r, &f, "TrainerSpec.treat_whitespace_as_suffix", &t->treat_whitespace_as_suffix); break;
      case 26: st = qg_pb_get_bool(r, &f, "TrainerSpec.allow_whitespace_only_pieces", &t->allow_whitespace_only_pieces); break;
      case 25: st = qg_pb_get_bool(r, &f, "TrainerSpec.split_digits", &t->split_digits); break;
      case 53: st = qg_pb_get_string(r, &f, "TrainerSpec.pretokenization_delimiter", &t->pretokenization_delimiter, NULL); break;
      case 30:
        st = push_str(r, &f, "TrainerSpec.control_symbols", &t->control_symbols,
                      &t->n_control_symbols);
        break;
      case 31:
        st = push_str(r, &f, "TrainerSpec.user_defined_symbols", &t->user_defined_symbols,
                      &t->n_user_defined_symbols);
        break;
      case 36: st = qg_pb_get_string(r, &f, "TrainerSpec.required_chars", &t->required_chars, NULL); break;
      case 35: st = qg_pb_get_bool(r, &f, "TrainerSpec.byte_fallback", &t->byte_fallback); break;
      case 32: st = qg_pb_get_bool(r, &f, "TrainerSpec.vocabulary_output_piece_score", &t->vocabulary_output_piece_score); break;
      case 33: st = qg_pb_get_bool(r, &f, "TrainerSpec.hard_vocab_limit", &t->hard_vocab_limit); break;
      case 34: st = qg_pb_get_bool(r, &f, "TrainerSpec.use_all_vocab", &t->use_all_vocab); break;
      case 40: st = qg_pb_get_i32(r, &f, "TrainerSpec.unk_id", &t->unk_id); break;
      case 41: st = qg_pb_get_i32(r, &f, "TrainerSpec.bos_id", &t->bos_id); break;
      case 42: st = qg_pb_get_i32(r, &f, "TrainerSpec.eos_id", &t->eos_id); break;
      case 43: st = qg_pb_get_i32(r, &f, "TrainerSpec.pad_id", &t->pad_id); break;
      case 45: st = qg_pb_get_string(r, &f, "TrainerSpec.unk_piece", &t->unk_piece, NULL); break;
      case 46: st = qg_pb_get_string(r, &f, "TrainerSpec.bos_piece", &t->bos_piece, NULL); break;
      case 47: st = qg_pb_get_string(r, &f, "TrainerSpec.eos_piece", &t->eos_piece, NULL); break;
      case 48: st = qg_pb_get_string(r, &f, "TrainerSpec.pad_piece", &t->pad_piece, NULL); break;
      case 44: st = qg_pb_get_string(r, &f, "TrainerSpec.unk_surface", &t->unk_surface, NULL); break;
      case 49: st = qg_pb_get_bool(r, &f, "TrainerSpec.train_extremely_large_corpus", &t->train_extremely_large_corpus); break;
      case 54: st = qg_pb_get_string(r, &f, "TrainerSpec.seed_sentencepieces_file", &t->seed_sentencepieces_file, NULL); break;
      default: break; /* unknown or unused (e.g. differential privacy): skipped */
    }
    if (st != QG_OK) return st;
  }
  return st;
}

/* Splits the charsmap into trie and normalized strings, checking the header fits. */
static qg_status split_charsmap(qg_spm_normalizer *n, const char *name, size_t at) {
  n->trie = n->normalized = NULL;
  n->trie_len = n->normalized_len = 0;
  if (n->charsmap_len == 0) return QG_OK;
  if (n->charsmap_len < 4)
    return qg_fail(QG_ERR_INPUT, "%s: offset %zu: precompiled_charsmap is %zu bytes, shorter "
                   "than its 4-byte trie-size header", name, at, n->charsmap_len);
  uint32_t trie = qg_rd_u32le(n->charsmap);
  size_t rest = n->charsmap_len - 4;
  if (trie > rest || trie % 4 != 0)
    return qg_fail(QG_ERR_INPUT, "%s: offset %zu: precompiled_charsmap trie size %u must be "
                   "a multiple of 4 and at most the %zu bytes that follow the header",
                   name, at, (unsigned)trie, rest);
  n->trie = n->charsmap + 4;
  n->trie_len = trie;
  n->normalized = n->charsmap + 4 + trie;
  n->normalized_len = rest - trie;
  return QG_OK;
}

static qg_status parse_normalizer(qg_pb_reader *r, qg_spm_normalizer *n, const char *what) {
  qg_pb_field f;
  int more;
  qg_status st;
  char w[64];
  while ((st = qg_pb_next(r, &f, &more)) == QG_OK && more) {
    switch (f.number) {
      case 1:
        snprintf(w, sizeof w, "%s.name", what);
        st = qg_pb_get_string(r, &f, w, &n->name, NULL);
        break;
      case 2: {
        snprintf(w, sizeof w, "%s.precompiled_charsmap", what);
        char *cm = NULL;
        size_t len = 0;
        st = qg_pb_get_string(r, &f, w, &cm, &len);
        if (st != QG_OK) break;
        free(n->charsmap);
        n->charsmap = (uint8_t *)cm;
        n->charsmap_len = len;
        if (len == 0) {
          free(cm);
          n->charsmap = NULL;
        }
        st = split_charsmap(n, r->name, f.value_offset);
        break;
      }
      case 3:
        snprintf(w, sizeof w, "%s.add_dummy_prefix", what);
        st = qg_pb_get_bool(r, &f, w, &n->add_dummy_prefix);
        break;
      case 4:
        snprintf(w, sizeof w, "%s.remove_extra_whitespaces", what);
        st = qg_pb_get_bool(r, &f, w, &n->remove_extra_whitespaces);
        break;
      case 5:
        snprintf(w, sizeof w, "%s.escape_whitespaces", what);
        st = qg_pb_get_bool(r, &f, w, &n->escape_whitespaces);
        break;
      case 6:
        snprintf(w, sizeof w, "%s.normalization_rule_tsv", what);
        st = qg_pb_get_string(r, &f, w, &n->normalization_rule_tsv, NULL);
        break;
      default: break;
    }
    if (st != QG_OK) return st;
  }
  return st;
}

/* The loader's rules that need the whole model (see the top of this file). */
static qg_status check_model(qg_spm *s, const size_t *offs, const char *name, size_t len) {
  if (s->n_pieces == 0)
    return qg_fail(QG_ERR_INPUT, "%s: offset %zu: no pieces (ModelProto field 1) in the model",
                   name, len);
  int unk = -1;
  int found[256] = {0};
  s->n_byte_pieces = 0;
  for (int i = 0; i < s->n_pieces; i++) {
    const qg_spm_piece *p = &s->pieces[i];
    if (p->len == 0)
      return qg_fail(QG_ERR_INPUT, "%s: offset %zu: piece %d is empty", name, offs[i], i);
    if (p->type == QG_SPM_UNKNOWN) {
      if (unk >= 0)
        return qg_fail(QG_ERR_INPUT, "%s: offset %zu: piece %d is a second <unk> (the first is "
                       "id %d)", name, offs[i], i, unk);
      unk = i;
    }
    if (p->type == QG_SPM_BYTE) {
      if (!s->trainer.byte_fallback)
        return qg_fail(QG_ERR_INPUT, "%s: offset %zu: byte piece %d " PIECE_FMT " although "
                       "byte_fallback is false", name, offs[i], i, PIECE_ARG(p->piece, p->len));
      if (!is_byte_piece_name(p->piece, p->len))
        return qg_fail(QG_ERR_INPUT, "%s: offset %zu: byte piece %d " PIECE_FMT " is not "
                       "named <0xXX>", name, offs[i], i, PIECE_ARG(p->piece, p->len));
      found[hexval(p->piece[3]) * 16 + hexval(p->piece[4])] = 1;
      s->n_byte_pieces++;
    }
  }
  if (unk < 0)
    return qg_fail(QG_ERR_INPUT, "%s: offset %zu: no piece has type UNKNOWN (<unk> is "
                   "required)", name, len);
  if (s->trainer.byte_fallback)
    for (int b = 0; b < 256; b++)
      if (!found[b])
        return qg_fail(QG_ERR_INPUT, "%s: offset %zu: byte_fallback is true but byte piece "
                       "<0x%02X> is missing", name, len, b);
  int d1, d2;
  QG_TRY(hash_build(s, &d1, &d2));
  if (d1 >= 0)
    return qg_fail(QG_ERR_INPUT, "%s: offset %zu: piece %d " PIECE_FMT " is already defined "
                   "as id %d", name, offs[d2], d2,
                   PIECE_ARG(s->pieces[d2].piece, s->pieces[d2].len), d1);
  return QG_OK;
}

static qg_status parse_model_into(const uint8_t *data, size_t len, const char *name,
                                  qg_spm *s, size_t **offs) {
  QG_TRY(trainer_defaults(&s->trainer));
  QG_TRY(normalizer_defaults(&s->normalizer));
  QG_TRY(normalizer_defaults(&s->denormalizer));
  qg_pb_reader r;
  qg_pb_init(&r, data, len, name);
  qg_pb_field f;
  int more, cap = 0, has_trainer = 0, has_normalizer = 0;
  qg_status st;
  while ((st = qg_pb_next(&r, &f, &more)) == QG_OK && more) {
    if (f.number == 1) {
      QG_TRY(qg_pb_get_len(&r, &f, "ModelProto.pieces"));
      QG_TRY(grow_pieces(s, offs, &cap, name, f.offset));
      qg_pb_reader sub = qg_pb_sub(&r, &f);
      QG_TRY(parse_piece(&sub, &s->pieces[s->n_pieces]));
      (*offs)[s->n_pieces++] = f.offset;
    } else if (f.number == 2) {
      /* A repeated optional message merges into the earlier one, as proto2 does. */
      QG_TRY(qg_pb_get_len(&r, &f, "ModelProto.trainer_spec"));
      qg_pb_reader sub = qg_pb_sub(&r, &f);
      QG_TRY(parse_trainer(&sub, &s->trainer));
      has_trainer = 1;
    } else if (f.number == 3) {
      QG_TRY(qg_pb_get_len(&r, &f, "ModelProto.normalizer_spec"));
      qg_pb_reader sub = qg_pb_sub(&r, &f);
      QG_TRY(parse_normalizer(&sub, &s->normalizer, "NormalizerSpec"));
      has_normalizer = 1;
    } else if (f.number == 5) {
      QG_TRY(qg_pb_get_len(&r, &f, "ModelProto.denormalizer_spec"));
      qg_pb_reader sub = qg_pb_sub(&r, &f);
      QG_TRY(parse_normalizer(&sub, &s->denormalizer, "denormalizer_spec"));
      s->has_denormalizer = 1;
    }
    /* field 4 (self_test_data) and anything unknown: skipped */
  }
  QG_TRY(st);
  /* spm_train always writes both specs (pieces first, then trainer_spec, then
   * normalizer_spec). Without them a file cut at a field boundary would still parse, as
   * a smaller model with default settings; refusing it turns every truncation into an
   * error instead of a silently different tokenizer. */
  if (!has_trainer || !has_normalizer)
    return qg_fail(QG_ERR_INPUT, "%s: offset %zu: no %s (ModelProto field %d): truncated "
                   "file? every SentencePiece .model carries it", name, len,
                   !has_trainer ? "trainer_spec" : "normalizer_spec", !has_trainer ? 2 : 3);
  return check_model(s, *offs, name, len);
}

qg_status qg_spm_parse_model(const uint8_t *data, size_t len, const char *name, qg_spm *out) {
  if (!name) name = "<model>";
  qg_spm s;
  memset(&s, 0, sizeof s);
  memset(out, 0, sizeof *out);
  if (!data || len == 0) return qg_fail(QG_ERR_INPUT, "%s: offset 0: empty file", name);
  size_t *offs = NULL;
  qg_status st = parse_model_into(data, len, name, &s, &offs);
  free(offs);
  if (st != QG_OK) {
    qg_spm_free(&s);
    return st;
  }
  *out = s;
  return QG_OK;
}

/* ---- .vocab -------------------------------------------------------------------------- */

static int infer_type(const char *p, size_t n) {
  if ((n == 5 && !memcmp(p, "<pad>", 5)) || (n == 3 && !memcmp(p, "<s>", 3)) ||
      (n == 4 && !memcmp(p, "</s>", 4)))
    return QG_SPM_CONTROL;
  if (n == 5 && !memcmp(p, "<unk>", 5)) return QG_SPM_UNKNOWN;
  if (is_byte_piece_name(p, n)) return QG_SPM_BYTE;
  return QG_SPM_NORMAL;
}

static qg_status parse_score(const char *p, size_t n, float *out) {
  char buf[64];
  if (n == 0 || n >= sizeof buf) return QG_ERR_INPUT;
  memcpy(buf, p, n);
  buf[n] = 0;
  char *end = NULL;
  errno = 0;
  float v = strtof(buf, &end);
  if (end != buf + n || !isfinite(v)) return QG_ERR_INPUT;
  *out = v;
  return QG_OK;
}

void qg_spm_set_contest_trainer(qg_spm *s) {
  qg_spm_trainer *t = &s->trainer;
  t->model_type = QG_SPM_BPE;
  t->vocab_size = s->n_pieces;
  t->character_coverage = 0.999f;
  t->split_digits = 1;
  t->hard_vocab_limit = 0;
  t->byte_fallback = s->n_byte_pieces > 0;
}

/* Contest settings over the proto2 defaults; the charsmap stays empty because a .vocab
 * does not carry it. */
static qg_status assume_specs(qg_spm *s) {
  QG_TRY(trainer_defaults(&s->trainer));
  QG_TRY(normalizer_defaults(&s->normalizer));
  QG_TRY(normalizer_defaults(&s->denormalizer));
  qg_spm_trainer *t = &s->trainer;
  qg_spm_set_contest_trainer(s);
  t->unk_id = qg_spm_piece_to_id(s, "<unk>", 5);
  t->bos_id = qg_spm_piece_to_id(s, "<s>", 3);
  t->eos_id = qg_spm_piece_to_id(s, "</s>", 4);
  t->pad_id = qg_spm_piece_to_id(s, "<pad>", 5);
  QG_TRY(dup_into(&s->normalizer.name, "nmt_nfkc"));
  s->normalizer.add_dummy_prefix = 0;
  s->normalizer.remove_extra_whitespaces = 1;
  s->normalizer.escape_whitespaces = 1;
  s->specs_assumed = 1;
  return QG_OK;
}

static qg_status parse_vocab_into(const uint8_t *data, size_t len, const char *name, qg_spm *s,
                                  int **line_of) {
  const char *txt = (const char *)data;
  size_t n_lines = 0;
  for (size_t i = 0; i < len; i++) n_lines += data[i] == '\n';
  if (len && data[len - 1] != '\n') n_lines++;
  if (n_lines > SPM_MAX_PIECES)
    return qg_fail(QG_ERR_INPUT, "%s: line 1: more than %d lines", name, SPM_MAX_PIECES);
  s->pieces = calloc(n_lines, sizeof *s->pieces);
  *line_of = calloc(n_lines, sizeof **line_of);
  if (!s->pieces || !*line_of)
    return qg_fail(QG_ERR_NOMEM, "%s: out of memory for %zu pieces", name, n_lines);
  int found[256] = {0};
  int line = 0;
  for (size_t pos = 0; pos < len;) {
    line++;
    const char *nl = memchr(txt + pos, '\n', len - pos);
    size_t end = nl ? (size_t)(nl - txt) : len, next = nl ? end + 1 : len;
    if (end > pos && txt[end - 1] == '\r') end--; /* CRLF files */
    if (memchr(txt + pos, 0, end - pos))
      return qg_fail(QG_ERR_INPUT, "%s: line %d (offset %zu): NUL byte in the line", name, line,
                     pos);
    size_t tab = end;
    while (tab > pos && txt[tab - 1] != '\t') tab--;
    if (tab == pos)
      return qg_fail(QG_ERR_INPUT, "%s: line %d (offset %zu): expected piece<TAB>score, found "
                     "no TAB", name, line, pos);
    tab--; /* index of the last TAB: pieces may hold TABs, scores cannot */
    if (tab == pos)
      return qg_fail(QG_ERR_INPUT, "%s: line %d (offset %zu): empty piece before the TAB", name,
                     line, pos);
    /* SentencePiece pieces are UTF-8; a .model assembled from others would be unloadable */
    size_t ok = qg_utf8_valid_prefix((const uint8_t *)txt + pos, tab - pos);
    if (ok != tab - pos)
      return qg_fail(QG_ERR_INPUT, "%s: line %d (offset %zu): the piece is not valid UTF-8 (byte 0x%02X)", name, line,
                     pos + ok, (unsigned)(uint8_t)txt[pos + ok]);
    qg_spm_piece *p = &s->pieces[s->n_pieces];
    if (parse_score(txt + tab + 1, end - tab - 1, &p->score) != QG_OK)
      return qg_fail(QG_ERR_INPUT, "%s: line %d (offset %zu): score \"%.*s\" is not a finite "
                     "number", name, line, tab + 1, (int)((end - tab - 1) > 40 ? 40 : end - tab - 1),
                     txt + tab + 1);
    p->len = tab - pos;
    p->piece = qg_strndup(txt + pos, p->len);
    if (!p->piece) return qg_fail(QG_ERR_NOMEM, "%s: line %d: out of memory", name, line);
    p->type = infer_type(p->piece, p->len);
    if (p->type == QG_SPM_BYTE) {
      found[hexval(p->piece[3]) * 16 + hexval(p->piece[4])] = 1;
      s->n_byte_pieces++;
    }
    (*line_of)[s->n_pieces++] = line;
    pos = next;
  }
  if (s->n_pieces == 0) return qg_fail(QG_ERR_INPUT, "%s: line 1: empty file", name);
  int d1, d2;
  QG_TRY(hash_build(s, &d1, &d2));
  if (d1 >= 0)
    return qg_fail(QG_ERR_INPUT, "%s: line %d: duplicate piece " PIECE_FMT " (first at line %d)",
                   name, (*line_of)[d2], PIECE_ARG(s->pieces[d2].piece, s->pieces[d2].len),
                   (*line_of)[d1]);
  /* byte_fallback is assumed from the byte pieces; SentencePiece then needs all 256. */
  if (s->n_byte_pieces > 0)
    for (int b = 0; b < 256; b++)
      if (!found[b])
        return qg_fail(QG_ERR_INPUT, "%s: line %d: byte pieces present but <0x%02X> is missing "
                       "(byte fallback needs all 256)", name, line, b);
  return assume_specs(s);
}

qg_status qg_spm_parse_vocab(const uint8_t *data, size_t len, const char *name, qg_spm *out) {
  if (!name) name = "<vocab>";
  qg_spm s;
  memset(&s, 0, sizeof s);
  memset(out, 0, sizeof *out);
  if (!data || len == 0) return qg_fail(QG_ERR_INPUT, "%s: line 1: empty file", name);
  int *line_of = NULL;
  qg_status st = parse_vocab_into(data, len, name, &s, &line_of);
  free(line_of);
  if (st != QG_OK) {
    qg_spm_free(&s);
    return st;
  }
  *out = s;
  return QG_OK;
}

/* ---- loading by content ---------------------------------------------------------------
 * A ModelProto starts with a tag byte (0x0a for its pieces), which is a control
 * character; a .vocab starts with a text line holding a TAB. */
static int looks_like_vocab(const uint8_t *d, size_t n) {
  int tab = 0;
  for (size_t i = 0; i < n && d[i] != '\n'; i++) {
    if (d[i] == '\t') tab = 1;
    else if (d[i] < 0x20 && d[i] != '\r') return 0;
    else if (d[i] == 0x7f) return 0;
  }
  return tab;
}

qg_status qg_spm_load(const char *path, qg_spm *out) {
  memset(out, 0, sizeof *out);
  uint8_t *data = NULL;
  size_t len = 0;
  QG_TRY(qg_read_file(path, &data, &len, SPM_MAX_FILE));
  qg_status st;
  if (len == 0)
    st = qg_fail(QG_ERR_INPUT, "%s: offset 0: empty file (neither a .model nor a .vocab)", path);
  else if (looks_like_vocab(data, len) || qg_ends_with(path, ".vocab"))
    st = qg_spm_parse_vocab(data, len, path, out);
  else
    st = qg_spm_parse_model(data, len, path, out);
  free(data);
  return st;
}

/* ---- BPB lookup tables ------------------------------------------------------------- */

int qg_spm_lut_size(const qg_spm *s, int vocab_size) {
  return s->n_pieces > vocab_size ? s->n_pieces : vocab_size;
}

qg_status qg_spm_build_luts(const qg_spm *s, int vocab_size, int16_t *base_bytes,
                            uint8_t *has_leading_space, uint8_t *is_boundary) {
  if (vocab_size < 0)
    return qg_fail(QG_ERR_INPUT, "BPB tables: vocab_size %d is negative", vocab_size);
  int size = qg_spm_lut_size(s, vocab_size);
  for (int id = 0; id < size; id++) { /* padding ids: no bytes, boundary */
    base_bytes[id] = 0;
    has_leading_space[id] = 0;
    is_boundary[id] = 1;
  }
  for (int id = 0; id < s->n_pieces; id++) {
    const qg_spm_piece *p = &s->pieces[id];
    if (p->type == QG_SPM_CONTROL || p->type == QG_SPM_UNKNOWN || p->type == QG_SPM_UNUSED)
      continue;
    is_boundary[id] = 0;
    if (p->type == QG_SPM_BYTE) {
      base_bytes[id] = 1;
      continue;
    }
    size_t n = p->len;
    if (n >= 3 && memcmp(p->piece, "\xE2\x96\x81", 3) == 0) { /* U+2581 "▁" */
      has_leading_space[id] = 1;
      n -= 3;
    }
    if (n > INT16_MAX)
      return qg_fail(QG_ERR_INPUT, "BPB tables: piece %d is %zu bytes, more than the contest's "
                     "int16 table can hold", id, n);
    base_bytes[id] = (int16_t)n;
  }
  return QG_OK;
}

qg_status qg_spm_luts_init(qg_spm_luts *l, const qg_spm *s, int vocab_size) {
  memset(l, 0, sizeof *l);
  if (vocab_size < 0 || vocab_size > SPM_MAX_LUT)
    return qg_fail(QG_ERR_INPUT, "BPB tables: vocab_size %d outside 0..%d", vocab_size,
                   SPM_MAX_LUT);
  int size = qg_spm_lut_size(s, vocab_size);
  size_t n = size ? (size_t)size : 1;
  l->base_bytes = malloc(n * sizeof *l->base_bytes);
  l->has_leading_space = malloc(n);
  l->is_boundary = malloc(n);
  if (!l->base_bytes || !l->has_leading_space || !l->is_boundary) {
    qg_spm_luts_free(l);
    return qg_fail(QG_ERR_NOMEM, "BPB tables: out of memory for %d entries", size);
  }
  qg_status st = qg_spm_build_luts(s, vocab_size, l->base_bytes, l->has_leading_space,
                                   l->is_boundary);
  if (st != QG_OK) {
    qg_spm_luts_free(l);
    return st;
  }
  l->size = size;
  return QG_OK;
}

void qg_spm_luts_free(qg_spm_luts *l) {
  if (!l) return;
  free(l->base_bytes);
  free(l->has_leading_space);
  free(l->is_boundary);
  memset(l, 0, sizeof *l);
}

qg_status qg_spm_count_bytes(const qg_spm_luts *l, const uint16_t *tok, size_t n,
                             int64_t *bytes) {
  int64_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    if (tok[i] >= l->size)
      return qg_fail(QG_ERR_INPUT, "token %zu: id %u is outside the %d-entry BPB tables", i,
                     (unsigned)tok[i], l->size);
    if (i > 0) sum += qg_spm_token_bytes(l, tok[i - 1], tok[i]);
  }
  *bytes = sum;
  return QG_OK;
}
