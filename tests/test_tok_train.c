/* tok/ trainer and corpus preparation: the trainer reproduces spm_train's vocabulary
 * (pieces, order and scores, committed by tests/reference/make_tok_vectors.py) on the
 * same corpus and settings; prepare's shards hold exactly BOS + encode(document) per
 * document, split and named as the contest's; bad input leaves no shard behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "io/shards.h"
#include "tests/testlib.h"
#include "tok/prepare.h"
#include "tok/train.h"

#define NONCONTEST "noncontest_sp1024_nobytefallback_CiprianFlorin-Ifrim.model"

/* trained pieces == spm_train's .vocab, line for line */
static void check_same_as_spm(const qg_spm *m, const char *vocab_file) {
  qg_spm want;
  assert_int_equal(qg_spm_load(vocab_file, &want), QG_OK);
  assert_int_equal(m->n_pieces, want.n_pieces);
  for (int i = 0; i < want.n_pieces; i++) {
    const qg_spm_piece *a = &m->pieces[i], *b = &want.pieces[i];
    if (a->len != b->len || memcmp(a->piece, b->piece, a->len) || a->score != b->score)
      fail_msg("piece %d: trained \"%.*s\" %g, spm_train \"%.*s\" %g", i, (int)a->len, a->piece,
               (double)a->score, (int)b->len, b->piece, (double)b->score);
    assert_int_equal(a->type, b->type);
  }
  qg_spm_free(&want);
}

static void test_train_identity(void **st) {
  (void)st;
  qg_tok_train_opts o;
  qg_tok_train_defaults(&o);
  o.vocab_size = 800;
  const char *in[1] = {qg_test_data_file("tok_corpus.txt")};
  char path[4096];
  snprintf(path, sizeof path, "%s", in[0]);
  in[0] = path;
  qg_spm m;
  assert_int_equal(qg_tok_train(in, 1, &o, &m), QG_OK);
  check_same_as_spm(&m, qg_test_data_file("tok_train_identity.vocab"));
  /* the contest layout: pad/bos/eos/unk = 0..3, bytes 4..259, merges, characters */
  assert_int_equal(m.pieces[0].type, QG_SPM_CONTROL);
  assert_int_equal(m.pieces[3].type, QG_SPM_UNKNOWN);
  assert_int_equal(m.n_byte_pieces, 256);
  assert_string_equal(m.pieces[4].piece, "<0x00>");
  assert_true(m.trainer.byte_fallback && m.trainer.split_digits);
  /* the model round-trips through the writer and the reader, and encodes */
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_tok_model_serialize(&m, &b), QG_OK);
  qg_spm back;
  assert_int_equal(qg_spm_parse_model(b.p, b.n, "trained", &back), QG_OK);
  assert_int_equal(back.n_pieces, m.n_pieces);
  qg_tok t;
  assert_int_equal(qg_tok_init(&t, &back), QG_OK);
  qg_tok_ctx *c;
  assert_int_equal(qg_tok_ctx_new(&t, &c), QG_OK);
  qg_tok_ids ids = {0};
  const char *s = "This License applies to any program";
  assert_int_equal(qg_tok_encode(c, (const uint8_t *)s, strlen(s), &ids), QG_OK);
  assert_true(ids.n > 3 && ids.n < 15); /* merged, not bytes */
  qg_tok_ids_free(&ids);
  qg_tok_ctx_free(c);
  qg_tok_free(&t);
  qg_buf_free(&b);
  qg_spm_free(&m);
}

static void test_train_nfkc(void **st) {
  (void)st;
  const char *mp;
  QG_REQUIRE_CONTEST_FILE(mp, NONCONTEST);
  qg_spm donor;
  assert_int_equal(qg_spm_load(mp, &donor), QG_OK);
  qg_tok_train_opts o;
  qg_tok_train_defaults(&o);
  o.vocab_size = 800;
  o.normalizer = &donor.normalizer;
  char path[4096];
  snprintf(path, sizeof path, "%s", qg_test_data_file("tok_corpus.txt"));
  const char *in[1] = {path};
  qg_spm m;
  assert_int_equal(qg_tok_train(in, 1, &o, &m), QG_OK);
  check_same_as_spm(&m, qg_test_data_file("tok_train_nfkc.vocab"));
  assert_int_equal(m.normalizer.charsmap_len, donor.normalizer.charsmap_len);
  qg_spm_free(&m);
  qg_spm_free(&donor);
}

static void test_train_errors(void **st) {
  (void)st;
  qg_tok_train_opts o;
  qg_tok_train_defaults(&o);
  o.vocab_size = 300; /* 260 meta pieces + ~70 characters do not fit */
  char path[4096];
  snprintf(path, sizeof path, "%s", qg_test_data_file("tok_corpus.txt"));
  const char *in[1] = {path};
  qg_spm m;
  assert_int_equal(qg_tok_train(in, 1, &o, &m), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "required characters"));
  const char *missing[1] = {"/nonexistent/corpus.txt"};
  o.vocab_size = 800;
  assert_int_not_equal(qg_tok_train(missing, 1, &o, &m), QG_OK);
  assert_non_null(strstr(qg_last_error(), "/nonexistent/corpus.txt"));
}

/* ---- prepare ------------------------------------------------------------------------------- */

static void load_rules(qg_tok *t) {
  assert_int_equal(qg_tok_load(t, qg_test_data_file("tok_rules.model"), NULL), QG_OK);
}

static void test_prepare(void **st) {
  (void)st;
  qg_tok t;
  load_rules(&t);
  char *dir = qg_test_tmpdir();
  /* documents: paragraphs of the corpus; also as JSONL, with escapes */
  uint8_t *corpus;
  size_t len;
  assert_int_equal(qg_read_file(qg_test_data_file("tok_corpus.txt"), &corpus, &len, 0), QG_OK);
  qg_buf jsonl;
  qg_buf_init(&jsonl);
  qg_tok_ids want = {0};
  qg_tok_ctx *c;
  assert_int_equal(qg_tok_ctx_new(&t, &c), QG_OK);
  int docs = 0;
  for (char *p = (char *)corpus; *p;) {
    while (*p == '\n') p++;
    if (!*p) break;
    char *e = strstr(p, "\n\n");
    size_t n = e ? (size_t)(e - p) : strlen(p);
    while (n && p[n - 1] == '\n') n--;
    assert_int_equal(qg_tok_ids_push(&want, 1), QG_OK); /* BOS */
    assert_int_equal(qg_tok_encode(c, (const uint8_t *)p, n, &want), QG_OK);
    qg_buf_str(&jsonl, "{\"id\": 7, \"text\": \"");
    for (size_t i = 0; i < n; i++) {
      if (p[i] == '\n') qg_buf_str(&jsonl, "\\n");
      else if (p[i] == '"' || p[i] == '\\') qg_buf_printf(&jsonl, "\\%c", p[i]);
      else if ((uint8_t)p[i] < 0x20) qg_buf_printf(&jsonl, "\\u%04x", p[i]);
      else qg_buf_byte(&jsonl, (uint8_t)p[i]);
    }
    qg_buf_str(&jsonl, "\"}\n");
    docs++;
    p += n;
  }
  assert_true(docs > 50);
  char jpath[4200];
  snprintf(jpath, sizeof jpath, "%s", qg_test_path(dir, "docs.jsonl"));
  qg_test_write(jpath, jsonl.p, jsonl.n);
  char tpath[4200];
  snprintf(tpath, sizeof tpath, "%s", qg_test_data_file("tok_corpus.txt"));
  for (int form = 0; form < 2; form++) {
    char out[4200];
    snprintf(out, sizeof out, "%s/out%d", dir, form);
    qg_tok_prepare_opts o;
    qg_tok_prepare_defaults(&o);
    o.out_dir = out;
    o.val_docs = 5;
    o.shard_tokens = 2000;
    o.name = "kjv";
    qg_tok_prepare_stats s;
    const char *in[1] = {form ? jpath : tpath};
    char mk[4300];
    snprintf(mk, sizeof mk, "mkdir -p '%s'", out);
    assert_int_equal(system(mk), 0);
    assert_int_equal(qg_tok_prepare(&t, in, 1, &o, &s), QG_OK);
    assert_int_equal(s.val.docs, 5);
    assert_int_equal(s.val.docs + s.train.docs, docs);
    assert_int_equal(s.val.tokens + s.train.tokens, (int64_t)want.n);
    /* the stream: val shards then train shards == BOS + encode(doc), in order */
    char pat[4300];
    qg_shards v, tr;
    snprintf(pat, sizeof pat, "%s/kjv_val_*.bin", out);
    assert_int_equal(qg_shards_open(pat, &v), QG_OK);
    snprintf(pat, sizeof pat, "%s/kjv_train_*.bin", out);
    assert_int_equal(qg_shards_open(pat, &tr), QG_OK);
    assert_int_equal(v.n_files, s.val.shards);
    assert_int_equal(tr.n_files, s.train.shards);
    assert_true(tr.n_files >= 3);
    for (int i = 0; i + 1 < tr.n_files; i++) assert_int_equal(tr.files[i].count, 2000);
    assert_non_null(strstr(tr.files[0].name, "kjv_train_000000.bin"));
    uint16_t *got = malloc(want.n * sizeof *got);
    assert_int_equal(qg_shards_read(&v, 0, v.total, got), QG_OK);
    assert_int_equal(qg_shards_read(&tr, 0, tr.total, got + v.total), QG_OK);
    assert_int_equal(v.total + tr.total, (int64_t)want.n);
    for (size_t i = 0; i < want.n; i++)
      if (got[i] != want.v[i]) fail_msg("form %d: token %zu is %u, want %d", form, i, got[i], want.v[i]);
    free(got);
    qg_shards_close(&v);
    qg_shards_close(&tr);
    snprintf(mk, sizeof mk, "rm -rf '%s'", out);
    assert_int_equal(system(mk), 0);
  }
  /* JSONL without "text": an error naming the line, and no shard left behind */
  char bad[4200], out[4200];
  snprintf(bad, sizeof bad, "%s", qg_test_path(dir, "bad.jsonl"));
  const char badj[] = "{\"text\": \"fine\"}\n{\"body\": \"no text\"}\n";
  qg_test_write(bad, badj, sizeof badj - 1);
  snprintf(out, sizeof out, "%s", qg_test_path(dir, "badout"));
  char mk[4300];
  snprintf(mk, sizeof mk, "mkdir -p '%s'", out);
  assert_int_equal(system(mk), 0);
  qg_tok_prepare_opts o;
  qg_tok_prepare_defaults(&o);
  o.out_dir = out;
  o.val_docs = 0;
  o.shard_tokens = 1;
  qg_tok_prepare_stats s;
  const char *in[2] = {tpath, bad};
  assert_int_equal(qg_tok_prepare(&t, in, 2, &o, &s), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "line 2"));
  assert_non_null(strstr(qg_last_error(), "\"text\""));
  assert_int_equal(qg_test_count_entries(out), 0);
  free(corpus);
  qg_buf_free(&jsonl);
  qg_tok_ids_free(&want);
  qg_tok_ctx_free(c);
  qg_tok_free(&t);
  snprintf(mk, sizeof mk, "rmdir '%s'", out);
  assert_int_equal(system(mk), 0);
  qg_test_rmdir(dir);
}

static char out_buf[1 << 14], err_buf[1 << 14];

static void test_cli_bad_input(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char args[16384];
  /* missing input: exit 2, nothing written */
  snprintf(args, sizeof args, "prepare --tokenizer '%s' --input '%s/none.txt' --out '%s'",
           qg_test_data_file("tok_rules.model"), dir, dir);
  assert_int_equal(qg_test_run_cli(args, out_buf, sizeof out_buf, err_buf, sizeof err_buf), 2);
  assert_non_null(strstr(err_buf, "none.txt"));
  assert_int_equal(qg_test_count_entries(dir), 0);
  /* a tokenizer that is neither .model nor .vocab */
  snprintf(args, sizeof args, "prepare --tokenizer '%s' --input '%s' --out '%s'",
           qg_test_data_file("tok_corpus.txt"), qg_test_data_file("tok_corpus.txt"), dir);
  assert_int_equal(qg_test_run_cli(args, out_buf, sizeof out_buf, err_buf, sizeof err_buf), 2);
  assert_non_null(strstr(err_buf, "tok_corpus.txt"));
  assert_int_equal(qg_test_count_entries(dir), 0);
  /* a vocabulary too large for uint16 shards */
  char big[4200];
  snprintf(big, sizeof big, "%s", qg_test_path(dir, "big.vocab"));
  qg_buf v;
  qg_buf_init(&v);
  qg_buf_str(&v, "<unk>\t0\n");
  for (int i = 0; i < 70000; i++) qg_buf_printf(&v, "p%d\t%d\n", i, -i);
  qg_test_write(big, v.p, v.n);
  qg_buf_free(&v);
  char outd[4200];
  snprintf(outd, sizeof outd, "%s", qg_test_path(dir, "o"));
  snprintf(args, sizeof args, "prepare --tokenizer '%s' --input '%s' --out '%s'",
           big, qg_test_data_file("tok_corpus.txt"), outd);
  assert_int_equal(qg_test_run_cli(args, out_buf, sizeof out_buf, err_buf, sizeof err_buf), 2);
  assert_non_null(strstr(err_buf, "uint16"));
  assert_false(qg_test_exists(outd)); /* the folder prepare made is gone again */
  /* train: the trained model is written with its .vocab, and encodes */
  char model[4200];
  snprintf(model, sizeof model, "%s", qg_test_path(dir, "t.model"));
  snprintf(args, sizeof args, "tokenizer train --input '%s' --vocab-size 800 --out '%s'",
           qg_test_data_file("tok_corpus.txt"), model);
  assert_int_equal(qg_test_run_cli(args, out_buf, sizeof out_buf, err_buf, sizeof err_buf), 0);
  assert_true(qg_test_exists(qg_test_path(dir, "t.vocab")));
  uint8_t *a, *b;
  size_t na, nb;
  assert_int_equal(qg_read_file(qg_test_path(dir, "t.vocab"), &a, &na, 0), QG_OK);
  assert_int_equal(qg_read_file(qg_test_data_file("tok_train_identity.vocab"), &b, &nb, 0), QG_OK);
  assert_int_equal(na, nb); /* byte-identical to spm_train's .vocab */
  assert_memory_equal(a, b, na);
  free(a), free(b);
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_train_identity), cmocka_unit_test(test_train_nfkc),
      cmocka_unit_test(test_train_errors),   cmocka_unit_test(test_prepare),
      cmocka_unit_test(test_cli_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
