/* io/spm + io/protobuf: the contest .vocab, the non-contest .model read completely,
 * hand-made models and vocabularies, the contest's BPB lookup tables, and malformed input
 * (every case must fail with a message naming the file, and never crash). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/status.h"
#include "core/util.h"
#include "io/protobuf.h"
#include "io/spm.h"
#include "tests/testlib.h"

#define NONCONTEST "noncontest_sp1024_nobytefallback_CiprianFlorin-Ifrim"
#define SPACE "\xE2\x96\x81" /* U+2581, SentencePiece's whitespace mark */

/* ---- a tiny protobuf writer for hand-made models ---------------------------------- */

static void pb_varint(qg_buf *b, uint64_t v) {
  while (v >= 0x80) {
    qg_buf_byte(b, (uint8_t)(v | 0x80));
    v >>= 7;
  }
  qg_buf_byte(b, (uint8_t)v);
}
static void pb_tag(qg_buf *b, uint32_t field, int wire) { pb_varint(b, (uint64_t)field << 3 | (uint64_t)wire); }
static void pb_uint(qg_buf *b, uint32_t field, uint64_t v) {
  pb_tag(b, field, 0);
  pb_varint(b, v);
}
/* int32 fields are sign-extended to 64 bits on the wire (10 bytes when negative). */
static void pb_int32(qg_buf *b, uint32_t field, int32_t v) { pb_uint(b, field, (uint64_t)(int64_t)v); }
static void pb_bytes(qg_buf *b, uint32_t field, const void *p, size_t n) {
  pb_tag(b, field, 2);
  pb_varint(b, n);
  qg_buf_append(b, p, n);
}
static void pb_str(qg_buf *b, uint32_t field, const char *s) { pb_bytes(b, field, s, strlen(s)); }
static void pb_float(qg_buf *b, uint32_t field, float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  pb_tag(b, field, 5);
  qg_buf_u32le(b, u);
}
static void pb_msg(qg_buf *b, uint32_t field, qg_buf *m) {
  pb_bytes(b, field, m->p, m->n);
  qg_buf_free(m);
}
/* A piece; type 0 leaves the field out (proto2 default NORMAL). */
static void pb_piece(qg_buf *b, const char *piece, float score, int type) {
  qg_buf m;
  qg_buf_init(&m);
  pb_str(&m, 1, piece);
  pb_float(&m, 2, score);
  if (type) pb_uint(&m, 3, (uint64_t)type);
  pb_msg(b, 1, &m);
}
static void pb_min_specs(qg_buf *b) { /* empty trainer_spec and normalizer_spec */
  pb_bytes(b, 2, "", 0);
  pb_bytes(b, 3, "", 0);
}

static qg_status parse_buf_model(const qg_buf *b, qg_spm *s) {
  return qg_spm_parse_model(b->p, b->n, "made.model", s);
}

static void assert_fails_naming(qg_status st, const char *name, const char *needle) {
  assert_int_not_equal(st, QG_OK);
  const char *msg = qg_last_error();
  if (!strstr(msg, name) || (needle && !strstr(msg, needle)))
    fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", msg, name, needle ? needle : "");
}

/* ---- the contest vocabulary ----------------------------------------------------------- */

static void test_contest_vocab(void **st) {
  (void)st;
  const char *path;
  QG_REQUIRE_CONTEST_FILE(path, "fineweb_1024_bpe.vocab");
  qg_spm s;
  assert_int_equal(qg_spm_load(path, &s), QG_OK); /* picked by content: text with TABs */
  assert_int_equal(s.n_pieces, 1024);
  assert_true(s.specs_assumed);
  assert_string_equal(s.pieces[0].piece, "<pad>");
  assert_int_equal(s.pieces[0].type, QG_SPM_CONTROL);
  assert_string_equal(s.pieces[1].piece, "<s>");
  assert_int_equal(s.pieces[1].type, QG_SPM_CONTROL);
  assert_string_equal(s.pieces[2].piece, "</s>");
  assert_int_equal(s.pieces[2].type, QG_SPM_CONTROL);
  assert_string_equal(s.pieces[3].piece, "<unk>");
  assert_int_equal(s.pieces[3].type, QG_SPM_UNKNOWN);
  for (int b = 0; b < 256; b++) {
    char want[8];
    snprintf(want, sizeof want, "<0x%02X>", b);
    assert_string_equal(s.pieces[4 + b].piece, want);
    assert_int_equal(s.pieces[4 + b].type, QG_SPM_BYTE);
    assert_true(s.pieces[4 + b].score == 0.0f);
  }
  for (int i = 260; i < 1024; i++) assert_int_equal(s.pieces[i].type, QG_SPM_NORMAL);
  assert_int_equal(s.n_byte_pieces, 256);
  assert_int_equal(qg_spm_piece_to_id(&s, SPACE, 3), 939);
  assert_int_equal(qg_spm_piece_to_id(&s, SPACE "t", 4), 260);
  assert_int_equal(qg_spm_piece_to_id(&s, "<0x41>", 6), 4 + 0x41);
  assert_int_equal(qg_spm_piece_to_id(&s, "nope", 4), -1);
  assert_true(s.pieces[938].score == -678.0f);
  assert_true(s.pieces[939].score == -679.0f);
  assert_true(s.pieces[1023].score == -763.0f);
  /* the assumed contest settings */
  assert_int_equal(s.trainer.model_type, QG_SPM_BPE);
  assert_int_equal(s.trainer.vocab_size, 1024);
  assert_true(s.trainer.byte_fallback);
  assert_true(s.trainer.split_digits);
  assert_int_equal(s.trainer.pad_id, 0);
  assert_int_equal(s.trainer.bos_id, 1);
  assert_int_equal(s.trainer.eos_id, 2);
  assert_int_equal(s.trainer.unk_id, 3);
  assert_string_equal(s.normalizer.name, "nmt_nfkc");
  assert_false(s.normalizer.add_dummy_prefix);
  assert_true(s.normalizer.remove_extra_whitespaces);
  assert_null(s.normalizer.charsmap);

  /* LUTs. Expected values were computed independently in Python from the file's text:
   * split each line at the last TAB, classify <pad>/<s>/</s>/<unk>/<0xXX>, strip one
   * leading U+2581, len(rest.encode("utf-8")). Sums over all 1024 ids: base_bytes 2330,
   * has_leading_space 325, is_boundary 4; sum((id+1)*base_bytes) = 1392228,
   * sum((id+1)*has_leading_space) = 199478. */
  qg_spm_luts l;
  assert_int_equal(qg_spm_luts_init(&l, &s, 1024), QG_OK);
  assert_int_equal(l.size, 1024);
  static const struct { int id, bytes, lead, bound; } want[] = {
      {0, 0, 0, 1},   {1, 0, 0, 1},   {2, 0, 0, 1},   {3, 0, 0, 1},    {4, 1, 0, 0},
      {132, 1, 0, 0}, {259, 1, 0, 0}, {260, 1, 1, 0}, {262, 2, 0, 0},  {502, 3, 1, 0},
      {600, 3, 1, 0}, {923, 4, 0, 0}, {930, 11, 1, 0}, {938, 7, 1, 0}, {939, 0, 1, 0},
      {940, 1, 0, 0}, {983, 3, 0, 0},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    int id = want[i].id;
    if (l.base_bytes[id] != want[i].bytes || l.has_leading_space[id] != want[i].lead ||
        l.is_boundary[id] != want[i].bound)
      fail_msg("id %d: got %d/%d/%d", id, l.base_bytes[id], l.has_leading_space[id],
               l.is_boundary[id]);
  }
  int64_t sb = 0, sl = 0, sd = 0, wb = 0, wl = 0;
  for (int i = 0; i < l.size; i++) {
    sb += l.base_bytes[i];
    sl += l.has_leading_space[i];
    sd += l.is_boundary[i];
    wb += (int64_t)(i + 1) * l.base_bytes[i];
    wl += (int64_t)(i + 1) * l.has_leading_space[i];
  }
  assert_int_equal(sb, 2330);
  assert_int_equal(sl, 325);
  assert_int_equal(sd, 4);
  assert_int_equal(wb, 1392228);
  assert_int_equal(wl, 199478);
  /* "<s> ▁t e ▁t ▁because": after BOS the leading space is not counted. */
  uint16_t toks[] = {1, 260, 940, 260, 938};
  assert_int_equal(qg_spm_token_bytes(&l, 1, 260), 1);
  assert_int_equal(qg_spm_token_bytes(&l, 940, 260), 2);
  int64_t bytes = -1;
  assert_int_equal(qg_spm_count_bytes(&l, toks, 5, &bytes), QG_OK);
  assert_int_equal(bytes, 1 + 1 + 2 + 8);
  uint16_t bad[] = {1, 1024};
  assert_fails_naming(qg_spm_count_bytes(&l, bad, 2, &bytes), "token 1", "1024");
  qg_spm_luts_free(&l);
  qg_spm_free(&s);
}

/* ---- the non-contest .model, read completely ------------------------------------------ */

static void test_noncontest_model(void **st) {
  (void)st;
  const char *p;
  QG_REQUIRE_CONTEST_FILE(p, NONCONTEST ".model");
  char model_path[4096];
  snprintf(model_path, sizeof model_path, "%s", p);
  QG_REQUIRE_CONTEST_FILE(p, NONCONTEST ".vocab");
  char vocab_path[4096];
  snprintf(vocab_path, sizeof vocab_path, "%s", p);

  qg_spm s, v;
  assert_int_equal(qg_spm_load(model_path, &s), QG_OK);
  assert_false(s.specs_assumed);
  assert_int_equal(s.n_pieces, 1024);
  int count[7] = {0};
  for (int i = 0; i < s.n_pieces; i++) count[s.pieces[i].type]++;
  assert_int_equal(count[QG_SPM_CONTROL], 3);
  assert_int_equal(count[QG_SPM_UNKNOWN], 1);
  assert_int_equal(count[QG_SPM_NORMAL], 1020);
  assert_int_equal(count[QG_SPM_BYTE], 0);
  assert_int_equal(s.n_byte_pieces, 0);
  assert_string_equal(s.pieces[0].piece, "<pad>");
  assert_string_equal(s.pieces[3].piece, "<unk>");
  assert_int_equal(s.pieces[3].type, QG_SPM_UNKNOWN);
  assert_string_equal(s.pieces[4].piece, SPACE "t");
  assert_true(s.pieces[5].score == -1.0f);
  assert_int_equal(qg_spm_piece_to_id(&s, SPACE, 3), 940); /* sentencepiece agrees */
  assert_int_equal(qg_spm_piece_to_id(&s, SPACE "the", 6), 11);

  const qg_spm_trainer *t = &s.trainer;
  assert_int_equal(t->model_type, QG_SPM_BPE);
  assert_int_equal(t->vocab_size, 1024);
  assert_true(t->character_coverage == 0.999f);
  assert_true(t->split_digits);
  assert_false(t->byte_fallback);
  assert_false(t->hard_vocab_limit);
  assert_int_equal(t->pad_id, 0);
  assert_int_equal(t->bos_id, 1);
  assert_int_equal(t->eos_id, 2);
  assert_int_equal(t->unk_id, 3);
  assert_string_equal(t->model_prefix, "/workspace/parameter-golf/data/tokenizers/fineweb_1024_bpe");
  assert_int_equal(t->n_input, 0); /* trained from an iterator */
  /* absent fields keep the proto2 defaults */
  assert_int_equal(t->max_sentencepiece_length, 16);
  assert_true(t->split_by_whitespace);
  assert_false(t->treat_whitespace_as_suffix);
  assert_false(t->allow_whitespace_only_pieces);
  assert_int_equal(t->max_sentence_length, 4192);
  assert_string_equal(t->unk_piece, "<unk>");
  assert_string_equal(t->pad_piece, "<pad>");
  assert_string_equal(t->unk_surface, " \xE2\x81\x87 ");

  const qg_spm_normalizer *n = &s.normalizer;
  assert_string_equal(n->name, "nmt_nfkc");
  assert_int_equal(n->charsmap_len, 240007);
  assert_false(n->add_dummy_prefix);
  assert_true(n->remove_extra_whitespaces);
  assert_true(n->escape_whitespaces);
  assert_string_equal(n->normalization_rule_tsv, "");
  assert_int_equal(n->trie_len, 179200); /* the charsmap's own header, via Python */
  assert_ptr_equal(n->trie, n->charsmap + 4);
  assert_int_equal(n->normalized_len, 240007 - 4 - 179200);
  assert_false(s.has_denormalizer);

  /* its own .vocab agrees: pieces, scores, and the inferred types */
  assert_int_equal(qg_spm_load(vocab_path, &v), QG_OK);
  assert_int_equal(v.n_pieces, s.n_pieces);
  for (int i = 0; i < s.n_pieces; i++) {
    assert_int_equal(v.pieces[i].len, s.pieces[i].len);
    assert_memory_equal(v.pieces[i].piece, s.pieces[i].piece, s.pieces[i].len);
    assert_true(v.pieces[i].score == s.pieces[i].score);
    assert_int_equal(v.pieces[i].type, s.pieces[i].type);
  }
  qg_spm_free(&v);

  /* LUTs against the contest's own build_sentencepiece_luts run (with sentencepiece
   * 0.2.x in Python) on this model with vocab_size 1030: 6 padding ids; sums base_bytes
   * 3058, has_leading_space 476, is_boundary 10; weighted sums 1655222 / 240408. */
  qg_spm_luts l;
  assert_int_equal(qg_spm_luts_init(&l, &s, 1030), QG_OK);
  assert_int_equal(l.size, 1030);
  int64_t sb = 0, sl = 0, sd = 0, wb = 0, wl = 0;
  for (int i = 0; i < l.size; i++) {
    sb += l.base_bytes[i];
    sl += l.has_leading_space[i];
    sd += l.is_boundary[i];
    wb += (int64_t)(i + 1) * l.base_bytes[i];
    wl += (int64_t)(i + 1) * l.has_leading_space[i];
  }
  assert_int_equal(sb, 3058);
  assert_int_equal(sl, 476);
  assert_int_equal(sd, 10);
  assert_int_equal(wb, 1655222);
  assert_int_equal(wl, 240408);
  assert_int_equal(l.base_bytes[687], 4); /* .” */
  assert_int_equal(l.base_bytes[255], 3); /* ▁“ */
  assert_int_equal(l.has_leading_space[255], 1);
  assert_int_equal(l.is_boundary[1029], 1);
  qg_spm_luts_free(&l);
  /* a smaller vocab_size never shrinks the tables below the pieces */
  assert_int_equal(qg_spm_lut_size(&s, 512), 1024);
  qg_spm_free(&s);
}

/* ---- hand-made data -------------------------------------------------------------------- */

static void build_model(qg_buf *b) {
  qg_buf_init(b);
  pb_piece(b, "<unk>", 0, QG_SPM_UNKNOWN);
  pb_piece(b, "<s>", 0, QG_SPM_CONTROL);
  pb_piece(b, SPACE "hi", -1.5f, 0);
  pb_piece(b, "<s>", -2.0f, QG_SPM_NORMAL); /* same text, other class: allowed */
  pb_piece(b, "<mask>", 0, QG_SPM_USER_DEFINED);
  pb_piece(b, "zz", -3.0f, QG_SPM_UNUSED);
  pb_piece(b, SPACE, -4.0f, QG_SPM_NORMAL);
  pb_piece(b, SPACE SPACE "x", -5.0f, QG_SPM_NORMAL);
  pb_piece(b, "\xC3\xA9", -6.0f, QG_SPM_NORMAL); /* é, 2 bytes */
  for (int i = 0; i < 256; i++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", i);
    pb_piece(b, name, 0, QG_SPM_BYTE);
  }
  /* unknown top-level fields of every wire type are skipped */
  pb_uint(b, 99, 12345);
  pb_str(b, 100, "ignored");
  pb_tag(b, 101, 1);
  qg_buf_u64le(b, 7);
  pb_float(b, 102, 1.0f);
  qg_buf ts;
  qg_buf_init(&ts);
  pb_uint(&ts, 3, QG_SPM_BPE);
  pb_int32(&ts, 4, 265);
  pb_str(&ts, 1, "a.txt");
  pb_str(&ts, 1, "b.txt");
  pb_float(&ts, 10, 0.5f);
  pb_uint(&ts, 35, 1);
  pb_int32(&ts, 43, -1);
  pb_int32(&ts, 41, -1);
  pb_uint(&ts, 50, 1); /* enable_differential_privacy: not kept, skipped */
  pb_str(&ts, 45, "<UNK>");
  pb_msg(b, 2, &ts);
  /* a second trainer_spec merges into the first (proto2) */
  qg_buf ts2;
  qg_buf_init(&ts2);
  pb_int32(&ts2, 40, 0);
  pb_uint(&ts2, 25, 1);
  pb_str(&ts2, 5, "en");
  pb_msg(b, 2, &ts2);
  qg_buf ns;
  qg_buf_init(&ns);
  pb_str(&ns, 1, "custom");
  static const uint8_t cm[] = {4, 0, 0, 0, 1, 2, 3, 4, 'a', 0};
  pb_bytes(&ns, 2, cm, sizeof cm);
  pb_uint(&ns, 3, 0);
  pb_uint(&ns, 7, 1); /* unknown */
  pb_msg(b, 3, &ns);
  qg_buf dn;
  qg_buf_init(&dn);
  pb_str(&dn, 1, "denorm");
  pb_uint(&dn, 4, 0);
  pb_msg(b, 5, &dn);
}

static void test_made_model(void **st) {
  (void)st;
  qg_buf b;
  build_model(&b);
  qg_spm s;
  assert_int_equal(parse_buf_model(&b, &s), QG_OK);
  assert_int_equal(s.n_pieces, 9 + 256);
  assert_int_equal(s.pieces[2].type, QG_SPM_NORMAL); /* default */
  assert_true(s.pieces[2].score == -1.5f);
  assert_int_equal(s.pieces[4].type, QG_SPM_USER_DEFINED);
  assert_int_equal(s.n_byte_pieces, 256);
  /* the reserved "<s>" wins the lookup, as in SentencePiece */
  assert_int_equal(qg_spm_piece_to_id(&s, "<s>", 3), 1);
  assert_int_equal(qg_spm_piece_to_id(&s, "<0xFF>", 6), 9 + 255);
  const qg_spm_trainer *t = &s.trainer;
  assert_int_equal(t->model_type, QG_SPM_BPE);
  assert_int_equal(t->vocab_size, 265);
  assert_int_equal(t->n_input, 2);
  assert_string_equal(t->input[1], "b.txt");
  assert_int_equal(t->n_accept_language, 1);
  assert_string_equal(t->accept_language[0], "en");
  assert_true(t->character_coverage == 0.5f);
  assert_true(t->byte_fallback);
  assert_true(t->split_digits);
  assert_int_equal(t->pad_id, -1);
  assert_int_equal(t->bos_id, -1);
  assert_int_equal(t->unk_id, 0);
  assert_int_equal(t->eos_id, 2); /* default */
  assert_string_equal(t->unk_piece, "<UNK>");
  assert_string_equal(t->bos_piece, "<s>");
  assert_true(t->hard_vocab_limit); /* default true */
  assert_true(t->shrinking_factor == 0.75f);
  assert_string_equal(s.normalizer.name, "custom");
  assert_false(s.normalizer.add_dummy_prefix);
  assert_true(s.normalizer.remove_extra_whitespaces);
  assert_int_equal(s.normalizer.charsmap_len, 10);
  assert_int_equal(s.normalizer.trie_len, 4);
  assert_int_equal(s.normalizer.normalized_len, 2);
  assert_memory_equal(s.normalizer.normalized, "a", 2);
  assert_true(s.has_denormalizer);
  assert_string_equal(s.denormalizer.name, "denorm");
  assert_false(s.denormalizer.remove_extra_whitespaces);
  assert_true(s.denormalizer.add_dummy_prefix);

  /* LUTs with vocab_size below and above the piece count */
  assert_int_equal(qg_spm_lut_size(&s, 10), 265);
  qg_spm_luts l;
  assert_int_equal(qg_spm_luts_init(&l, &s, 300), QG_OK);
  assert_int_equal(l.size, 300);
  static const struct { int id, bytes, lead, bound; } want[] = {
      {0, 0, 0, 1}, /* unknown */ {1, 0, 0, 1}, /* control */ {2, 2, 1, 0}, /* ▁hi */
      {3, 3, 0, 0}, /* "<s>" as a normal piece */ {4, 6, 0, 0}, /* user-defined */
      {5, 0, 0, 1}, /* unused */ {6, 0, 1, 0}, /* ▁ alone */ {7, 4, 1, 0}, /* ▁▁x: one ▁ off */
      {8, 2, 0, 0}, /* é */ {9, 1, 0, 0}, {264, 1, 0, 0}, /* bytes */
      {265, 0, 0, 1}, {299, 0, 0, 1}, /* padding */
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    int id = want[i].id;
    if (l.base_bytes[id] != want[i].bytes || l.has_leading_space[id] != want[i].lead ||
        l.is_boundary[id] != want[i].bound)
      fail_msg("id %d: got %d/%d/%d", id, l.base_bytes[id], l.has_leading_space[id],
               l.is_boundary[id]);
  }
  /* <unk> ▁hi ▁hi <s> ▁ : 2 (after a boundary) + 3 + 0 (after control) */
  uint16_t toks[] = {0, 2, 2, 1, 6};
  int64_t bytes;
  assert_int_equal(qg_spm_count_bytes(&l, toks, 5, &bytes), QG_OK);
  assert_int_equal(bytes, 2 + 3 + 0 + 0);
  assert_int_equal(qg_spm_count_bytes(&l, toks, 1, &bytes), QG_OK);
  assert_int_equal(bytes, 0);
  qg_spm_luts_free(&l);
  assert_int_not_equal(qg_spm_luts_init(&l, &s, -1), QG_OK);
  qg_spm_free(&s);

  /* the same bytes through qg_spm_load (content detection picks protobuf) */
  char *dir = qg_test_tmpdir();
  const char *path = qg_test_path(dir, "made.bin");
  qg_test_write(path, b.p, b.n);
  assert_int_equal(qg_spm_load(path, &s), QG_OK);
  assert_int_equal(s.n_pieces, 265);
  qg_spm_free(&s);
  qg_test_rmdir(dir);
  qg_buf_free(&b);
}

static void test_made_vocab(void **st) {
  (void)st;
  static const char txt[] =
      "<unk>\t0\r\n"
      "<s>\t0\r\n"
      SPACE "a\t-1.5\r\n"
      "x\ty\t2e-3\n"  /* split at the last TAB: the piece is "x\ty" */
      "<0x4g>\t-2\n"  /* not a byte piece (lower-case / non-hex) */
      "<0x0a>\t-3\n"  /* lower-case hex: normal too */
      "\xC3\xA9\t-4"; /* no final newline */
  qg_spm s;
  assert_int_equal(qg_spm_parse_vocab((const uint8_t *)txt, strlen(txt), "t.vocab", &s), QG_OK);
  assert_int_equal(s.n_pieces, 7);
  assert_true(s.specs_assumed);
  assert_int_equal(s.pieces[0].type, QG_SPM_UNKNOWN);
  assert_int_equal(s.pieces[1].type, QG_SPM_CONTROL);
  assert_true(s.pieces[2].score == -1.5f);
  assert_int_equal(s.pieces[3].len, 3);
  assert_memory_equal(s.pieces[3].piece, "x\ty", 3);
  assert_true(s.pieces[3].score == 2e-3f);
  assert_int_equal(s.pieces[4].type, QG_SPM_NORMAL);
  assert_int_equal(s.pieces[5].type, QG_SPM_NORMAL);
  assert_string_equal(s.pieces[6].piece, "\xC3\xA9");
  assert_int_equal(s.trainer.unk_id, 0);
  assert_int_equal(s.trainer.bos_id, 1);
  assert_int_equal(s.trainer.eos_id, -1);
  assert_int_equal(s.trainer.pad_id, -1);
  assert_false(s.trainer.byte_fallback); /* no byte pieces */
  assert_int_equal(s.trainer.vocab_size, 7);
  qg_spm_luts l;
  assert_int_equal(qg_spm_luts_init(&l, &s, 0), QG_OK);
  assert_int_equal(l.size, 7);
  assert_int_equal(l.base_bytes[2], 1);
  assert_int_equal(l.has_leading_space[2], 1);
  assert_int_equal(l.base_bytes[3], 3);
  assert_int_equal(l.base_bytes[6], 2);
  qg_spm_luts_free(&l);
  qg_spm_free(&s);

  /* a .vocab name with content that is not obviously text still goes to the vocab
   * reader, so its message is about lines */
  char *dir = qg_test_tmpdir();
  const char *path = qg_test_path(dir, "odd.vocab");
  qg_test_write(path, "\x01x\t0\n", 5);
  assert_int_equal(qg_spm_load(path, &s), QG_OK);
  assert_int_equal(s.n_pieces, 1);
  qg_spm_free(&s);
  qg_test_rmdir(dir);
}

/* ---- malformed input ------------------------------------------------------------------- */

static void expect_model_error(const uint8_t *d, size_t n, const char *needle) {
  qg_spm s;
  qg_status st = qg_spm_parse_model(d, n, "bad.model", &s);
  assert_fails_naming(st, "bad.model", needle);
  assert_int_equal(s.n_pieces, 0); /* left empty on failure */
  qg_spm_free(&s);
}

static void expect_vocab_error(const char *txt, size_t n, const char *needle) {
  qg_spm s;
  qg_status st = qg_spm_parse_vocab((const uint8_t *)txt, n, "bad.vocab", &s);
  assert_fails_naming(st, "bad.vocab", needle);
  qg_spm_free(&s);
}

/* A valid minimal model with one extra piece message appended at the front. */
static void model_with(qg_buf *b, const char *piece, int type, int byte_fallback) {
  qg_buf_init(b);
  pb_piece(b, "<unk>", 0, QG_SPM_UNKNOWN);
  if (piece) pb_piece(b, piece, 0, type);
  qg_buf ts;
  qg_buf_init(&ts);
  pb_uint(&ts, 35, (uint64_t)byte_fallback);
  pb_msg(b, 2, &ts);
  pb_bytes(b, 3, "", 0);
}

static void test_bad_model(void **st) {
  (void)st;
  /* the wire format */
  static const uint8_t overflow11[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0x01};
  expect_model_error(overflow11, sizeof overflow11, "offset 1: varint");
  static const uint8_t overflow10[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff,
                                       0xff, 0xff, 0xff, 0xff, 0x02};
  expect_model_error(overflow10, sizeof overflow10, "overflows");
  static const uint8_t past_end[] = {0x0a, 0x05, 0x0a, 0x01};
  expect_model_error(past_end, sizeof past_end, "offset 1");
  static const uint8_t inner_past[] = {0x0a, 0x03, 0x0a, 0x05, 0x41};
  expect_model_error(inner_past, sizeof inner_past, "past the end");
  static const uint8_t pieces_varint[] = {0x08, 0x01};
  expect_model_error(pieces_varint, sizeof pieces_varint, "ModelProto.pieces");
  static const uint8_t score_varint[] = {0x0a, 0x05, 0x0a, 0x01, 0x41, 0x10, 0x01};
  expect_model_error(score_varint, sizeof score_varint, "SentencePiece.score");
  static const uint8_t group[] = {0x0b, 0x0c};
  expect_model_error(group, sizeof group, "group");
  static const uint8_t wire7[] = {0x0f};
  expect_model_error(wire7, sizeof wire7, "wire type 7");
  static const uint8_t field0[] = {0x02, 0x00};
  expect_model_error(field0, sizeof field0, "field number 0");
  static const uint8_t trunc_fixed[] = {0x0a, 0x03, 0x15, 0x00, 0x00};
  expect_model_error(trunc_fixed, sizeof trunc_fixed, "truncated fixed32");
  static const uint8_t trunc_tag[] = {0x0a, 0x01, 0x80};
  expect_model_error(trunc_tag, sizeof trunc_tag, "truncated varint");
  expect_model_error((const uint8_t *)"", 0, "empty");
  static const uint8_t no_specs[] = {0x0a, 0x09, 0x0a, 0x05, '<', 'u', 'n', 'k', '>', 0x18, 0x02};
  expect_model_error(no_specs, sizeof no_specs, "trainer_spec");

  /* what SentencePiece's loader refuses */
  qg_buf b;
  model_with(&b, "", QG_SPM_NORMAL, 0);
  expect_model_error(b.p, b.n, "empty");
  qg_buf_free(&b);
  model_with(&b, "<unk>", QG_SPM_UNKNOWN, 0);
  expect_model_error(b.p, b.n, "second <unk>");
  qg_buf_free(&b);
  model_with(&b, "<0x00>", QG_SPM_BYTE, 0);
  expect_model_error(b.p, b.n, "byte_fallback is false");
  qg_buf_free(&b);
  model_with(&b, "<0x00>", QG_SPM_BYTE, 1);
  expect_model_error(b.p, b.n, "<0x01> is missing");
  qg_buf_free(&b);
  model_with(&b, "<0xzz>", QG_SPM_BYTE, 1);
  expect_model_error(b.p, b.n, "not named");
  qg_buf_free(&b);
  model_with(&b, "a", 9, 0);
  expect_model_error(b.p, b.n, "type 9");
  qg_buf_free(&b);
  qg_buf_init(&b);
  pb_piece(&b, "a", 0, 0);
  pb_piece(&b, "<unk>", 0, QG_SPM_UNKNOWN);
  pb_piece(&b, "a", 0, QG_SPM_USER_DEFINED); /* same class as NORMAL */
  pb_min_specs(&b);
  expect_model_error(b.p, b.n, "already defined as id 0");
  qg_buf_free(&b);
  qg_buf_init(&b);
  pb_piece(&b, "a", 0, 0);
  pb_min_specs(&b);
  expect_model_error(b.p, b.n, "UNKNOWN");
  qg_buf_free(&b);
  qg_buf_init(&b);
  pb_min_specs(&b);
  expect_model_error(b.p, b.n, "no pieces");
  qg_buf_free(&b);
  /* model_type outside the enum; a charsmap whose trie does not fit */
  qg_buf_init(&b);
  pb_piece(&b, "<unk>", 0, QG_SPM_UNKNOWN);
  qg_buf ts;
  qg_buf_init(&ts);
  pb_uint(&ts, 3, 7);
  pb_msg(&b, 2, &ts);
  pb_bytes(&b, 3, "", 0);
  expect_model_error(b.p, b.n, "model_type 7");
  qg_buf_free(&b);
  static const uint8_t cm_big[] = {9, 0, 0, 0, 1, 2, 3, 4};
  static const uint8_t cm_odd[] = {2, 0, 0, 0, 1, 2, 3, 4};
  static const uint8_t cm_short[] = {0, 0};
  const uint8_t *cms[] = {cm_big, cm_odd, cm_short};
  size_t cml[] = {sizeof cm_big, sizeof cm_odd, sizeof cm_short};
  for (int i = 0; i < 3; i++) {
    qg_buf_init(&b);
    pb_piece(&b, "<unk>", 0, QG_SPM_UNKNOWN);
    pb_bytes(&b, 2, "", 0);
    qg_buf ns;
    qg_buf_init(&ns);
    pb_bytes(&ns, 2, cms[i], cml[i]);
    pb_msg(&b, 3, &ns);
    expect_model_error(b.p, b.n, "precompiled_charsmap");
    qg_buf_free(&b);
  }
  /* a missing file names the path */
  qg_spm s;
  assert_fails_naming(qg_spm_load("/nonexistent/x.model", &s), "/nonexistent/x.model", NULL);
}

/* Every strict prefix of the real .model must fail, and never crash. All cut points in the
 * head and in the specs region, every 7th through the pieces, every 1009th through the
 * charsmap, and the last 300. */
static void test_truncated_model(void **st) {
  (void)st;
  const char *path;
  QG_REQUIRE_CONTEST_FILE(path, NONCONTEST ".model");
  uint8_t *data;
  size_t len;
  assert_int_equal(qg_read_file(path, &data, &len, 0), QG_OK);
  int tried = 0;
  for (size_t cut = 0; cut < len; cut++) {
    int take = cut < 300 || (cut < 14000 && cut % 7 == 0) || (cut >= 13700 && cut < 13900) ||
               cut % 1009 == 0 || cut + 300 >= len;
    if (!take) continue;
    /* a copy of exactly `cut` bytes, so ASan sees any read past it */
    uint8_t *d = malloc(cut ? cut : 1);
    memcpy(d, data, cut);
    qg_spm s;
    qg_status r = qg_spm_parse_model(d, cut, "cut.model", &s);
    if (r == QG_OK) fail_msg("prefix of %zu bytes parsed", cut);
    if (!strstr(qg_last_error(), "cut.model")) fail_msg("message: %s", qg_last_error());
    qg_spm_free(&s);
    free(d);
    tried++;
  }
  assert_true(tried > 2500);
  free(data);
}

static void test_bad_vocab(void **st) {
  (void)st;
  expect_vocab_error("", 0, "empty");
  expect_vocab_error("a\t0\nb 0\n", 8, "line 2");
  expect_vocab_error("a\t0\nb\tzero\n", 11, "line 2");
  expect_vocab_error("a\t0\nb\t1.5x\n", 11, "not a finite");
  expect_vocab_error("a\tnan\n", 6, "line 1");
  expect_vocab_error("a\tinf\n", 6, "line 1");
  expect_vocab_error("a\t\n", 3, "line 1");
  expect_vocab_error("a\t0\nb\t0\na\t-1\n", 13, "line 3: duplicate piece \"a\" (first at line 1)");
  expect_vocab_error("\t0\n", 3, "empty piece");
  expect_vocab_error("a\t0\n\nb\t0\n", 9, "line 2");
  expect_vocab_error("a\t0\nb\t0\n\n", 9, "line 3");
  expect_vocab_error("a\0b\t0\n", 6, "NUL");
  expect_vocab_error("\n", 1, "line 1");
  expect_vocab_error("<unk>\t0\n<0x00>\t0\n", 17, "<0x01> is missing");
  char *dir = qg_test_tmpdir();
  const char *path = qg_test_path(dir, "empty.vocab");
  qg_test_write(path, "", 0);
  qg_spm s;
  assert_fails_naming(qg_spm_load(path, &s), "empty.vocab", "empty");
  qg_test_rmdir(dir);
}

/* Random byte edits of the real files: must never crash (ASan/UBSan builds check the
 * memory side); any status is fine. */
static void test_mutations(void **st) {
  (void)st;
  const char *names[] = {NONCONTEST ".model", "fineweb_1024_bpe.vocab"};
  uint64_t rng = 0x5eed;
  for (int f = 0; f < 2; f++) {
    const char *path = qg_test_contest_file(names[f]);
    if (!path) {
      print_message("SKIP: %s not found\n", names[f]);
      continue;
    }
    uint8_t *data;
    size_t len;
    assert_int_equal(qg_read_file(path, &data, &len, 0), QG_OK);
    /* the model's pieces and specs live in its first ~14 KB; edit there mostly */
    size_t span = f == 0 ? 14000 : len;
    for (int it = 0; it < 400; it++) {
      uint8_t *d = malloc(len);
      memcpy(d, data, len);
      int edits = 1 + (int)(qg_test_rand(&rng) % 4);
      for (int e = 0; e < edits; e++)
        d[qg_test_rand(&rng) % span] = (uint8_t)qg_test_rand(&rng);
      qg_spm s;
      qg_status r = f == 0 ? qg_spm_parse_model(d, len, "mut", &s)
                           : qg_spm_parse_vocab(d, len, "mut", &s);
      if (r == QG_OK) {
        qg_spm_luts l;
        if (qg_spm_luts_init(&l, &s, 1024) == QG_OK) qg_spm_luts_free(&l);
      } else {
        assert_non_null(strstr(qg_last_error(), "mut"));
      }
      qg_spm_free(&s);
      free(d);
    }
    free(data);
  }
}

/* The protobuf reader on its own: offsets are absolute through sub-readers. */
static void test_protobuf_reader(void **st) {
  (void)st;
  qg_buf b, m;
  qg_buf_init(&b);
  qg_buf_init(&m);
  pb_int32(&m, 1, -2);
  pb_str(&m, 2, "hey");
  pb_uint(&b, 5, 300);
  pb_msg(&b, 6, &m);
  qg_pb_reader r;
  qg_pb_init(&r, b.p, b.n, "pb");
  qg_pb_field f;
  int more;
  assert_int_equal(qg_pb_next(&r, &f, &more), QG_OK);
  assert_true(more);
  assert_int_equal(f.number, 5);
  assert_int_equal(f.u, 300);
  assert_int_equal(qg_pb_next(&r, &f, &more), QG_OK);
  assert_int_equal(f.number, 6);
  assert_int_equal(f.offset, 3);
  qg_pb_reader sub = qg_pb_sub(&r, &f);
  qg_pb_field g;
  assert_int_equal(qg_pb_next(&sub, &g, &more), QG_OK);
  int32_t v;
  assert_int_equal(qg_pb_get_i32(&sub, &g, "x", &v), QG_OK);
  assert_int_equal(v, -2);
  assert_int_equal(g.offset, 5);
  float fl;
  assert_int_not_equal(qg_pb_get_float(&sub, &g, "Msg.x", &fl), QG_OK);
  assert_non_null(strstr(qg_last_error(), "pb: offset 5: Msg.x (field 1): expected fixed32"));
  assert_int_equal(qg_pb_next(&sub, &g, &more), QG_OK);
  char *s = NULL;
  size_t n;
  assert_int_equal(qg_pb_get_string(&sub, &g, "y", &s, &n), QG_OK);
  assert_string_equal(s, "hey");
  free(s);
  assert_int_equal(qg_pb_next(&sub, &g, &more), QG_OK);
  assert_false(more);
  assert_int_equal(qg_pb_next(&r, &f, &more), QG_OK);
  assert_false(more);
  qg_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_protobuf_reader), cmocka_unit_test(test_contest_vocab),
      cmocka_unit_test(test_noncontest_model), cmocka_unit_test(test_made_model),
      cmocka_unit_test(test_made_vocab),       cmocka_unit_test(test_bad_model),
      cmocka_unit_test(test_truncated_model),  cmocka_unit_test(test_bad_vocab),
      cmocka_unit_test(test_mutations),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
