/* tok/ encoder and decoder against the sentencepiece library's own outputs, committed as
 * vectors by tests/reference/make_tok_vectors.py (sentencepiece 0.2.3): every vector must
 * match id for id, byte for byte. Plus assembling a .model from the contest .vocab, and
 * the CLI's encode/decode and bad-input behaviour. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/status.h"
#include "tests/testlib.h"
#include "tok/tok.h"
#include "tok/train.h"

#define NONCONTEST "noncontest_sp1024_nobytefallback_CiprianFlorin-Ifrim.model"
#define CONTEST_VOCAB "fineweb_1024_bpe.vocab"

static int hexval(int c) { return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10; }

/* "hex<TAB>x y z" lines; calls fn(text, len, ids, n_ids, line) for each. */
typedef void (*vec_fn)(void *ctx, const uint8_t *a, size_t na, const char *b, int line);

static int for_vectors(const char *path, vec_fn fn, void *ctx) {
  uint8_t *data;
  size_t len;
  assert_int_equal(qg_read_file(path, &data, &len, 0), QG_OK);
  char *s = (char *)data;
  int line = 0;
  uint8_t *buf = malloc(len + 1);
  assert_non_null(buf);
  for (char *p = s; *p;) {
    char *nl = strchr(p, '\n');
    if (nl) *nl = 0;
    char *tab = strchr(p, '\t');
    assert_non_null(tab);
    *tab = 0;
    line++;
    size_t n = strlen(p) / 2;
    for (size_t i = 0; i < n; i++) buf[i] = (uint8_t)(hexval(p[2 * i]) << 4 | hexval(p[2 * i + 1]));
    fn(ctx, buf, n, tab + 1, line);
    if (!nl) break;
    p = nl + 1;
  }
  free(buf);
  free(data);
  return line;
}

typedef struct {
  qg_tok_ctx *c;
  qg_tok_ids ids;
  qg_buf text;
  const qg_tok *t;
  int bad, ascii_only, checked;
  char first[600];
} enc_state;

static void check_encode(void *ctx, const uint8_t *in, size_t n, const char *want, int line) {
  enc_state *e = ctx;
  if (e->ascii_only) { /* only printable ASCII (and spaces) */
    for (size_t i = 0; i < n; i++)
      if (in[i] < 0x20 || in[i] > 0x7E) return;
  }
  e->ids.n = 0;
  assert_int_equal(qg_tok_encode(e->c, in, n, &e->ids), QG_OK);
  char got[8192];
  size_t k = 0;
  got[0] = 0;
  for (size_t i = 0; i < e->ids.n && k < sizeof got - 16; i++)
    k += (size_t)snprintf(got + k, sizeof got - k, i ? " %d" : "%d", e->ids.v[i]);
  e->checked++;
  if (strcmp(got, want) != 0) {
    if (!e->bad) snprintf(e->first, sizeof e->first, "line %d: want [%.200s] got [%.200s]", line, want, got);
    e->bad++;
  }
}

static void run_encode_vectors(const qg_tok *t, const char *vec, int ascii_only, int min_checked) {
  enc_state e;
  memset(&e, 0, sizeof e);
  e.ascii_only = ascii_only;
  assert_int_equal(qg_tok_ctx_new(t, &e.c), QG_OK);
  /* twice: the second pass runs from the word cache */
  for (int pass = 0; pass < 2; pass++) for_vectors(vec, check_encode, &e);
  qg_tok_ctx_free(e.c);
  qg_tok_ids_free(&e.ids);
  if (e.bad) fail_msg("%s: %d of %d vectors differ; first: %s", vec, e.bad, e.checked, e.first);
  assert_true(e.checked >= min_checked);
}

static void test_rules_encode(void **st) {
  (void)st;
  qg_tok t;
  assert_int_equal(qg_tok_load(&t, qg_test_data_file("tok_rules.model"), NULL), QG_OK);
  assert_non_null(t.trie); /* a real charsmap trie: the vectors exercise it */
  assert_true(t.byte_fallback);
  run_encode_vectors(&t, qg_test_data_file("tok_rules.enc"), 0, 1600);
  qg_tok_free(&t);
}

static void test_rules_decode(void **st) {
  (void)st;
  qg_tok t;
  assert_int_equal(qg_tok_load(&t, qg_test_data_file("tok_rules.model"), NULL), QG_OK);
  uint8_t *data;
  size_t len;
  assert_int_equal(qg_read_file(qg_test_data_file("tok_rules.dec"), &data, &len, 0), QG_OK);
  qg_tok_ids ids = {0};
  qg_buf out, want;
  qg_buf_init(&out);
  qg_buf_init(&want);
  int lines = 0;
  for (char *p = (char *)data; *p;) {
    char *nl = strchr(p, '\n'), *tab = strchr(p, '\t');
    assert_non_null(tab);
    if (nl) *nl = 0;
    *tab = 0;
    ids.n = 0;
    for (char *q = p; *q;) {
      char *end;
      long v = strtol(q, &end, 10);
      if (end == q) break;
      assert_int_equal(qg_tok_ids_push(&ids, (int32_t)v), QG_OK);
      q = end;
    }
    want.n = 0;
    for (char *h = tab + 1; h[0] && h[1]; h += 2) qg_buf_byte(&want, (uint8_t)(hexval(h[0]) << 4 | hexval(h[1])));
    out.n = 0;
    assert_int_equal(qg_tok_decode(&t, ids.v, ids.n, &out), QG_OK);
    if (out.n != want.n || (out.n && memcmp(out.p, want.p, out.n)))
      fail_msg("tok_rules.dec line %d: ids [%s] decode to %zu bytes, sentencepiece %zu", lines + 1, p,
               out.n, want.n);
    lines++;
    if (!nl) break;
    p = nl + 1;
  }
  assert_true(lines >= 300);
  /* an id outside the vocabulary fails and names its position */
  int32_t badv[2] = {5, 600};
  out.n = 0;
  assert_int_equal(qg_tok_decode(&t, badv, 2, &out), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "position 1"));
  assert_int_equal(out.n, 0);
  qg_buf_free(&out);
  qg_buf_free(&want);
  qg_tok_ids_free(&ids);
  free(data);
  qg_tok_free(&t);
}

/* decode(encode(x)) is x for text the normalizer leaves alone */
static void test_roundtrip(void **st) {
  (void)st;
  qg_tok t;
  assert_int_equal(qg_tok_load(&t, qg_test_data_file("tok_rules.model"), NULL), QG_OK);
  qg_tok_ctx *c;
  assert_int_equal(qg_tok_ctx_new(&t, &c), QG_OK);
  const char *texts[] = {"This License applies to any program", "x", "caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC 123",
                         "emoji \xF0\x9F\x98\x80 and <s> literal", "two words"};
  qg_tok_ids ids = {0};
  qg_buf out;
  qg_buf_init(&out);
  for (size_t i = 0; i < sizeof texts / sizeof *texts; i++) {
    ids.n = 0;
    out.n = 0;
    assert_int_equal(qg_tok_encode(c, (const uint8_t *)texts[i], strlen(texts[i]), &ids), QG_OK);
    assert_int_equal(qg_tok_decode(&t, ids.v, ids.n, &out), QG_OK);
    qg_buf_byte(&out, 0);
    /* the rules model maps e-acute to e + U+0301, so compare after normalizing */
    qg_buf norm;
    qg_buf_init(&norm);
    assert_int_equal(qg_tok_normalize(&t, (const uint8_t *)texts[i], strlen(texts[i]), &norm), QG_OK);
    for (size_t k = 0; k + 3 <= norm.n; k++)
      if (!memcmp(norm.p + k, QG_TOK_SPACE, 3)) {
        norm.p[k] = ' ';
        memmove(norm.p + k + 1, norm.p + k + 3, norm.n - k - 3);
        norm.n -= 2;
      }
    qg_buf_byte(&norm, 0);
    assert_string_equal((const char *)out.p, (const char *)norm.p);
    qg_buf_free(&norm);
  }
  qg_buf_free(&out);
  qg_tok_ids_free(&ids);
  qg_tok_ctx_free(c);
  qg_tok_free(&t);
}

static void test_noncontest_encode(void **st) {
  (void)st;
  const char *m;
  QG_REQUIRE_CONTEST_FILE(m, NONCONTEST);
  qg_tok t;
  assert_int_equal(qg_tok_load(&t, m, NULL), QG_OK);
  assert_false(t.byte_fallback); /* unknown characters become <unk>, runs merged */
  run_encode_vectors(&t, qg_test_data_file("tok_noncontest.enc"), 0, 900);
  qg_tok_free(&t);
}

/* The contest .vocab assembled with the non-contest model's nmt_nfkc charsmap: a .model
 * the library loads; both it and the .vocab + --normalizer-from encode as the library. */
static void test_contest_assembled(void **st) {
  (void)st;
  const char *m, *v;
  QG_REQUIRE_CONTEST_FILE(m, NONCONTEST);
  char mpath[4096];
  snprintf(mpath, sizeof mpath, "%s", m);
  QG_REQUIRE_CONTEST_FILE(v, CONTEST_VOCAB);
  char vpath[4096];
  snprintf(vpath, sizeof vpath, "%s", v);
  qg_spm voc, donor, back;
  assert_int_equal(qg_spm_load(vpath, &voc), QG_OK);
  assert_int_equal(qg_spm_load(mpath, &donor), QG_OK);
  assert_int_equal(qg_tok_assemble(&voc, &donor.normalizer), QG_OK);
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_tok_model_serialize(&voc, &b), QG_OK);
  assert_int_equal(qg_spm_parse_model(b.p, b.n, "assembled", &back), QG_OK);
  /* the contest's trainer settings, the pieces unchanged */
  assert_int_equal(back.n_pieces, 1024);
  assert_int_equal(back.trainer.model_type, QG_SPM_BPE);
  assert_true(back.trainer.byte_fallback);
  assert_true(back.trainer.split_digits);
  assert_int_equal(back.trainer.pad_id, 0);
  assert_int_equal(back.trainer.bos_id, 1);
  assert_int_equal(back.trainer.eos_id, 2);
  assert_int_equal(back.trainer.unk_id, 3);
  assert_false(back.normalizer.add_dummy_prefix);
  assert_int_equal(back.normalizer.charsmap_len, donor.normalizer.charsmap_len);
  for (int i = 0; i < 1024; i++) {
    assert_int_equal(back.pieces[i].len, voc.pieces[i].len);
    assert_memory_equal(back.pieces[i].piece, voc.pieces[i].piece, voc.pieces[i].len);
    assert_int_equal(back.pieces[i].type, voc.pieces[i].type);
    assert_true(back.pieces[i].score == voc.pieces[i].score);
  }
  /* the contest's published .model is 254,483 bytes; ours differs only in trainer-spec
   * strings (model_prefix, input paths) */
  assert_true(b.n > 254000 && b.n < 255000);
  qg_tok t;
  assert_int_equal(qg_tok_init(&t, &back), QG_OK);
  run_encode_vectors(&t, qg_test_data_file("tok_contest.enc"), 0, 900);
  qg_tok_free(&t);
  assert_int_equal(qg_tok_load(&t, vpath, mpath), QG_OK);
  run_encode_vectors(&t, qg_test_data_file("tok_contest.enc"), 0, 900);
  qg_tok_free(&t);
  /* the .vocab alone (identity normalization) agrees on printable ASCII */
  assert_int_equal(qg_tok_load(&t, vpath, NULL), QG_OK);
  assert_null(t.trie);
  run_encode_vectors(&t, qg_test_data_file("tok_contest.enc"), 1, 150);
  qg_tok_free(&t);
  qg_buf_free(&b);
  qg_spm_free(&voc);
  qg_spm_free(&donor);
}

/* ---- the CLI ---------------------------------------------------------------------------- */
static char out_buf[1 << 16], err_buf[1 << 14];

static void test_cli_encode_decode(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char args[16384], in[4200];
  snprintf(in, sizeof in, "%s", qg_test_path(dir, "in.txt"));
  const char text[] = "This License applies\n\n  two   spaces \xC3\xA9\n";
  qg_test_write(in, text, sizeof text - 1);
  snprintf(args, sizeof args, "encode --tokenizer '%s' '%s'", qg_test_data_file("tok_rules.model"), in);
  assert_int_equal(qg_test_run_cli(args, out_buf, sizeof out_buf, err_buf, sizeof err_buf), 0);
  /* one output line per input line; the empty line encodes to nothing */
  int lines = 0;
  for (char *p = out_buf; *p; p++) lines += *p == '\n';
  assert_int_equal(lines, 3);
  assert_non_null(strstr(out_buf, "\n\n"));
  /* decode gives the text back (whitespace as the normalizer leaves it) */
  char ids_path[4200];
  snprintf(ids_path, sizeof ids_path, "%s", qg_test_path(dir, "ids.txt"));
  qg_test_write(ids_path, out_buf, strlen(out_buf));
  snprintf(args, sizeof args, "decode --tokenizer '%s' '%s'", qg_test_data_file("tok_rules.model"), ids_path);
  assert_int_equal(qg_test_run_cli(args, out_buf, sizeof out_buf, err_buf, sizeof err_buf), 0);
  assert_string_equal(out_buf, "This License applies\n\ntwo spaces e\xCC\x81\n");
  /* --json */
  snprintf(args, sizeof args, "encode --json --tokenizer '%s' '%s'", qg_test_data_file("tok_rules.model"), in);
  assert_int_equal(qg_test_run_cli(args, out_buf, sizeof out_buf, err_buf, sizeof err_buf), 0);
  assert_true(out_buf[0] == '[');
  assert_non_null(strstr(out_buf, "]\n[]\n["));
  /* bad input: exit 2, one line naming the file */
  snprintf(args, sizeof args, "encode --tokenizer '%s' '%s'", in, in); /* text is not a tokenizer */
  assert_int_equal(qg_test_run_cli(args, out_buf, sizeof out_buf, err_buf, sizeof err_buf), 2);
  assert_non_null(strstr(err_buf, in));
  snprintf(args, sizeof args, "encode --tokenizer '%s' '%s/missing.txt'", qg_test_data_file("tok_rules.model"), dir);
  assert_int_equal(qg_test_run_cli(args, out_buf, sizeof out_buf, err_buf, sizeof err_buf), 2);
  assert_non_null(strstr(err_buf, "missing.txt"));
  snprintf(args, sizeof args, "decode --tokenizer '%s' '%s'", qg_test_data_file("tok_rules.model"), in);
  assert_int_equal(qg_test_run_cli(args, out_buf, sizeof out_buf, err_buf, sizeof err_buf), 2);
  assert_non_null(strstr(err_buf, "line 1"));
  qg_test_rmdir(dir);
}

static void test_cli_vocab_note(void **st) {
  (void)st;
  const char *v;
  QG_REQUIRE_CONTEST_FILE(v, CONTEST_VOCAB);
  char args[8192];
  snprintf(args, sizeof args, "encode --tokenizer '%s' /dev/null", v);
  assert_int_equal(qg_test_run_cli(args, out_buf, sizeof out_buf, err_buf, sizeof err_buf), 0);
  assert_non_null(strstr(err_buf, "--normalizer-from"));
  /* said once: one line */
  assert_non_null(strchr(err_buf, '\n'));
  assert_null(strchr(strchr(err_buf, '\n') + 1, '\n'));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rules_encode),       cmocka_unit_test(test_rules_decode),
      cmocka_unit_test(test_roundtrip),          cmocka_unit_test(test_noncontest_encode),
      cmocka_unit_test(test_contest_assembled),  cmocka_unit_test(test_cli_encode_decode),
      cmocka_unit_test(test_cli_vocab_note),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
