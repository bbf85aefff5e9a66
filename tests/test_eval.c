/* eval/: window plans (the contest's eval_val and sliding windows: every target scored
 * exactly once), and the streaming evaluator against the fp64 reference: a shard holding a
 * reference sequence must give the reference's mean NLL, and BPB from the vocabulary's
 * byte counts. */
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
#include "eval/eval.h"
#include "eval/kldstats.h"
#include "kernels/ops.h"
#include "quant/artifact.h"
#include "tests/testlib.h"

static void test_plan_contest(void **st) {
  (void)st;
  qg_eval_plan p;
  qg_eval_opts o = {.seq_len = 100};
  assert_int_equal(qg_eval_plan_make(1001, &o, &p), QG_OK); /* 1000 targets: 10 windows */
  assert_int_equal(p.n, 10);
  assert_int_equal(p.n_scored, 1000);
  assert_int_equal(p.w[9].start, 900);
  qg_eval_plan_free(&p);
  assert_int_equal(qg_eval_plan_make(1050, &o, &p), QG_OK); /* truncated to 10*100+1 */
  assert_int_equal(p.n, 10);
  assert_int_equal(p.n_stream, 1001);
  qg_eval_plan_free(&p);
  o.max_tokens = 350;
  assert_int_equal(qg_eval_plan_make(100000, &o, &p), QG_OK);
  assert_int_equal(p.n, 3);
  qg_eval_plan_free(&p);
  o.max_tokens = 0;
  assert_int_equal(qg_eval_plan_make(100, &o, &p), QG_ERR_INPUT); /* too few for a window */
  assert_non_null(strstr(qg_last_error(), "too few tokens"));
}

/* Sliding windows: coverage is exactly once, context >= seq - stride after the first
 * window, for many stream lengths and strides. */
static void test_plan_sliding(void **st) {
  (void)st;
  int seqs[] = {16, 64, 100};
  for (int si = 0; si < 3; si++)
    for (int stride = 1; stride <= seqs[si]; stride += (stride < 8 ? 1 : 13))
      for (int64_t n = 2; n < 400; n += 37) {
        qg_eval_opts o = {.seq_len = seqs[si], .stride = stride};
        qg_eval_plan p;
        assert_int_equal(qg_eval_plan_make(n, &o, &p), QG_OK);
        int64_t targets = n - 1;
        unsigned char *seen = calloc((size_t)targets, 1);
        for (int64_t w = 0; w < p.n; w++) {
          assert_true(p.w[w].start >= 0 && p.w[w].start + p.seq <= targets);
          for (int t = p.w[w].score_from; t < p.seq; t++) {
            int64_t j = p.w[w].start + t;
            assert_int_equal(seen[j], 0);
            seen[j] = 1;
            if (w > 0) assert_true(t >= p.seq - stride); /* at least seq - stride of context */
          }
        }
        for (int64_t j = 0; j < targets; j++) assert_int_equal(seen[j], 1);
        assert_int_equal(p.n_scored, targets);
        free(seen);
        qg_eval_plan_free(&p);
      }
}

/* Reads the "seq 1024" case of a reference file: tokens and nll. */
static void read_ref_1024(const char *name, int32_t *tok, double *nll) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tests/data/model_ref/%s", QG_SOURCE_DIR, name);
  uint8_t *d;
  size_t n;
  assert_int_equal(qg_read_file(path, &d, &n, 0), QG_OK);
  char *s = strstr((char *)d, "\nseq 1024\n");
  assert_non_null(s);
  s = strstr(s, "tokens ") + 7;
  for (int i = 0; i <= 1024; i++) tok[i] = (int32_t)strtol(s, &s, 10);
  s = strstr(s, "nll ") + 4;
  for (int i = 0; i < 1024; i++) nll[i] = strtod(s, &s);
  free(d);
}

typedef struct {
  int64_t count;
  double nll;
} sink_ctx;

static void sink(void *c, const qg_token_stat *st, int32_t prev, int32_t tgt, int bytes) {
  (void)prev;
  (void)tgt;
  (void)bytes;
  sink_ctx *s = c;
  s->count++;
  s->nll += st->nll_a;
}

static void test_eval_against_reference(void **st) {
  (void)st;
  const char *mp, *vp;
  QG_REQUIRE_CONTEST_FILE(mp, "tiny3L128d_nolanvild_3c063e5.pt");
  char model[4096];
  snprintf(model, sizeof model, "%s", mp);
  QG_REQUIRE_CONTEST_FILE(vp, "fineweb_1024_bpe.vocab");
  int32_t tok[1025];
  double ref[1024];
  read_ref_1024("nolanvild_pt_p3.txt", tok, ref);
  uint16_t t16[1025];
  for (int i = 0; i <= 1024; i++) t16[i] = (uint16_t)tok[i];
  char *dir = qg_test_tmpdir();
  const char *shard = qg_test_path(dir, "val_000000.bin");
  char shard_path[4200];
  snprintf(shard_path, sizeof shard_path, "%s", shard);
  assert_int_equal(qg_shard_write(shard_path, t16, 1025), QG_OK);

  qg_gpt m;
  qg_gpt_options opt = {.mlp_power = 3};
  assert_int_equal(qg_gpt_load(&m, model, &opt, qg_ops_cpu()), QG_OK);
  qg_shards val;
  assert_int_equal(qg_shards_open(shard_path, &val), QG_OK);
  qg_spm tok_model;
  assert_int_equal(qg_spm_load(vp, &tok_model), QG_OK);
  qg_spm_luts luts;
  assert_int_equal(qg_spm_luts_init(&luts, &tok_model, 1024), QG_OK);

  /* one 1024-token window: the reference sequence exactly */
  qg_eval_opts o = {.seq_len = 1024};
  qg_eval_totals t;
  sink_ctx sc = {0};
  assert_int_equal(qg_eval_run(&m, NULL, &val, &luts, &o, sink, &sc, &t), QG_OK);
  double ref_sum = 0;
  for (int i = 0; i < 1024; i++) ref_sum += ref[i];
  assert_int_equal(t.tokens, 1024);
  assert_int_equal(sc.count, 1024);
  assert_true(fabs(t.nll_a - ref_sum) <= 1e-5 * ref_sum);
  int64_t bytes = 0;
  assert_int_equal(qg_spm_count_bytes(&luts, t16, 1025, &bytes), QG_OK);
  assert_int_equal(t.bytes, bytes);
  double bpb = ref_sum / log(2.0) / (double)bytes;
  assert_true(fabs(qg_bpb(t.nll_a, t.bytes) - bpb) <= 1e-5 * bpb);

  /* contest windows of 256: 4 windows, less context, so a higher loss than one window */
  o.seq_len = 256;
  qg_eval_totals t4;
  assert_int_equal(qg_eval_run(&m, NULL, &val, &luts, &o, NULL, NULL, &t4), QG_OK);
  assert_int_equal(t4.tokens, 1024);
  assert_true(t4.nll_a > t.nll_a);
  /* sliding with stride 64 recovers most of the context: between the two */
  o.stride = 64;
  qg_eval_totals ts;
  assert_int_equal(qg_eval_run(&m, NULL, &val, &luts, &o, NULL, NULL, &ts), QG_OK);
  assert_int_equal(ts.tokens, 1024);
  assert_int_equal(ts.bytes, bytes);
  assert_true(ts.nll_a < t4.nll_a && ts.nll_a > t.nll_a);
  /* the first window of a sliding run is the contest's first window: same per-token values */

  /* the CLI: same numbers, JSON keys, and the vocabulary checks */
  char args[9000], out[8192], err[4096];
  snprintf(args, sizeof args, "eval --model '%s' --mlp-power 3 --val '%s' --tokenizer '%s' --seq-len 1024 --json --device cpu",
           model, shard_path, vp);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 0);
  char *vl = strstr(out, "\"val_loss\": ");
  assert_non_null(vl);
  assert_true(fabs(strtod(vl + 12, NULL) - ref_sum / 1024) <= 1e-5 * ref_sum / 1024);
  assert_non_null(strstr(out, "\"tokens\": 1024"));
  assert_non_null(strstr(out, "\"val_bpb\""));
  assert_non_null(strstr(out, "\"ppl\""));
  snprintf(args, sizeof args, "eval --model '%s' --val '%s' --tokenizer '%s' --seq-len 2000", model, shard_path, vp);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, "too few tokens"));
  /* a shard with an out-of-vocabulary token */
  t16[500] = 1500;
  const char *badp = qg_test_path(dir, "bad.bin");
  char bad[4200];
  snprintf(bad, sizeof bad, "%s", badp);
  assert_int_equal(qg_shard_write(bad, t16, 1025), QG_OK);
  snprintf(args, sizeof args, "eval --model '%s' --val '%s' --tokenizer '%s'", model, bad, vp);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, "1500"));

  qg_spm_luts_free(&luts);
  qg_spm_free(&tok_model);
  qg_shards_close(&val);
  qg_gpt_free(&m);
  qg_test_rmdir(dir);
}

/* kld: the fused token-statistics op against an independent per-position computation
 * from the raw logits (qg_kld_token_from_logits), self-vs-self is exactly zero, and the
 * CLI's JSON and per-token dump agree with each other. */
/* token_stats_many (a's log-softmax once a row, then each model) is token_stats against
 * each model on its own, to the bit: fresh random logits, a wide range (the softcap
 * matters), one model an exact copy of the base (KLD 0). */
static void test_token_stats_many(void **st) {
  (void)st;
  const qg_ops *o = qg_ops_cpu();
  assert_non_null(o->token_stats_many);
  enum { R = 37, V = 1024, NB = 3 };
  uint64_t rs = 2026;
  float *a = malloc(sizeof *a * R * V), *b[NB];
  int32_t tg[R];
  for (int i = 0; i < R * V; i++) a[i] = 12.0f * qg_test_randf(&rs) + (i % V == 7 ? 20.0f : 0.0f);
  for (int k = 0; k < NB; k++) {
    b[k] = malloc(sizeof *b[k] * R * V);
    for (int i = 0; i < R * V; i++) b[k][i] = k == 1 ? a[i] : a[i] + (float)(k + 1) * 0.3f * qg_test_randf(&rs);
  }
  for (int r = 0; r < R; r++) tg[r] = (int32_t)((uint32_t)(r * 97 + 5) % V);
  qg_token_stat one[NB][R], many[NB * R];
  for (int k = 0; k < NB; k++) assert_int_equal(o->token_stats(o, a, b[k], tg, R, V, 30.0f, one[k]), QG_OK);
  const float *bs[NB] = {b[0], b[1], b[2]};
  memset(many, 0x5a, sizeof many);
  assert_int_equal(o->token_stats_many(o, a, bs, NB, tg, R, V, 30.0f, many, R), QG_OK);
  for (int k = 0; k < NB; k++)
    for (int r = 0; r < R; r++) {
      const qg_token_stat *x = &one[k][r], *y = &many[k * R + r];
      assert_true(x->nll_a == y->nll_a && x->nll_b == y->nll_b && x->kld == y->kld && x->p_a == y->p_a && x->p_b == y->p_b);
      assert_int_equal(x->top_a, y->top_a);
      assert_int_equal(x->top_b, y->top_b);
      if (k == 1) assert_true(fabs(y->kld) < 1e-15);
      else assert_true(y->kld > 0);
    }
  free(a);
  for (int k = 0; k < NB; k++) free(b[k]);
}

static void test_kld(void **st) {
  (void)st;
  const char *p1, *p2, *vp;
  QG_REQUIRE_CONTEST_FILE(p1, "tiny3L128d_nolanvild_3c063e5.pt");
  char pt[4096], ptz[4096];
  snprintf(pt, sizeof pt, "%s", p1);
  QG_REQUIRE_CONTEST_FILE(p2, "tiny3L128d_nolanvild_3c063e5.int8.ptz");
  snprintf(ptz, sizeof ptz, "%s", p2);
  QG_REQUIRE_CONTEST_FILE(vp, "fineweb_1024_bpe.vocab");
  qg_gpt a, b;
  qg_gpt_options opt = {.mlp_power = 3};
  assert_int_equal(qg_gpt_load(&a, pt, &opt, qg_ops_cpu()), QG_OK);
  assert_int_equal(qg_gpt_load(&b, ptz, &opt, qg_ops_cpu()), QG_OK);
  enum { T = 64 };
  int32_t tok[T + 1];
  double ref[1024];
  int32_t seq[1025];
  read_ref_1024("nolanvild_pt_p3.txt", seq, ref);
  memcpy(tok, seq + 300, sizeof tok);
  assert_int_equal(qg_gpt_forward(&a, tok, 1, T), QG_OK);
  assert_int_equal(qg_gpt_forward(&b, tok, 1, T), QG_OK);
  int32_t tg[T];
  for (int t = 0; t < T; t++) tg[t] = tok[t + 1];
  assert_int_equal(a.ops->upload(a.ops, a.targets, tg, sizeof tg), QG_OK);
  qg_token_stat fused[T];
  assert_int_equal(a.ops->token_stats(a.ops, a.logits, b.logits, a.targets, T, 1024, 30.0f, fused), QG_OK);
  float za[1024], zb[1024];
  double max_rel = 0;
  for (int t = 0; t < T; t++) {
    for (int v = 0; v < 1024; v++) {
      za[v] = 30.0f * tanhf(a.logits[t * 1024 + v] / 30.0f);
      zb[v] = 30.0f * tanhf(b.logits[t * 1024 + v] / 30.0f);
    }
    qg_kld_token r;
    assert_int_equal(qg_kld_token_from_logits(za, zb, 1024, tg[t], &r), QG_OK);
    assert_true(fabs(r.nll_base - fused[t].nll_a) <= 1e-9 * r.nll_base);
    assert_true(fabs(r.nll_model - fused[t].nll_b) <= 1e-9 * r.nll_model);
    double rel = fabs(r.kld - fused[t].kld) / r.kld;
    if (rel > max_rel) max_rel = rel;
    assert_int_equal(r.same_top, fused[t].top_a == fused[t].top_b);
  }
  assert_true(max_rel < 1e-6);
  qg_gpt_free(&a);
  qg_gpt_free(&b);

  char *dir = qg_test_tmpdir();
  char shard[4200], dump[4200], args[32768], out[16384], err[4096];
  snprintf(shard, sizeof shard, "%s/val.bin", dir);
  snprintf(dump, sizeof dump, "%s/tok.kld", dir);
  uint16_t t16[1025];
  for (int i = 0; i <= 1024; i++) t16[i] = (uint16_t)seq[i];
  assert_int_equal(qg_shard_write(shard, t16, 1025), QG_OK);
  snprintf(args, sizeof args, "kld --base '%s' --model '%s' --val '%s' --tokenizer '%s' --mlp-power 3 --seq-len 256 --json", pt, pt, shard, vp);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 0);
  char *k = strstr(out, "\"kld\": {");
  assert_non_null(k);
  assert_true(fabs(strtod(strstr(k, "\"mean\": ") + 8, NULL)) < 1e-12); /* a model against itself */
  assert_non_null(strstr(out, "\"rate\": 1"));
  /* delta_p is in percent, as kld's text report prints it, and says so */
  assert_non_null(strstr(out, "\"delta_p\": {\n    \"unit\": \"percent\""));
  snprintf(args, sizeof args,
           "kld --base '%s' --model '%s' --val '%s' --tokenizer '%s' --mlp-power 3 --seq-len 256 --json --dump-token-kld '%s'",
           pt, ptz, shard, vp, dump);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 0);
  k = strstr(out, "\"kld\": {");
  double mean = strtod(strstr(k, "\"mean\": ") + 8, NULL);
  assert_true(mean > 1e-5 && mean < 0.1); /* int8 of a tiny model: small but not zero */
  uint8_t *d;
  size_t n;
  assert_int_equal(qg_read_file(dump, &d, &n, 0), QG_OK);
  assert_int_equal(n, 16 + 1024 * 12);
  assert_memory_equal(d, "QGKLD001", 8);
  uint64_t cnt;
  memcpy(&cnt, d + 8, 8);
  assert_int_equal(cnt, 1024);
  double sum = 0;
  for (int i = 0; i < 1024; i++) {
    float r[3];
    memcpy(r, d + 16 + 12 * i, 12);
    sum += r[0];
  }
  assert_true(fabs(sum / 1024 - mean) <= 1e-5 * mean);
  free(d);
  /* a tokenizer of another size is refused, and no dump is left behind */
  char vocab[4200];
  snprintf(vocab, sizeof vocab, "%s/small.vocab", dir);
  qg_test_write(vocab, "<unk>\t0\na\t-1\n", 13);
  snprintf(args, sizeof args, "kld --base '%s' --model '%s' --val '%s' --tokenizer '%s' --dump-token-kld '%s/x.kld'", pt, ptz,
           shard, vocab, dir);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, "2 pieces"));
  assert_int_equal(qg_test_count_entries(dir), 3); /* val.bin, tok.kld, small.vocab */
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_plan_contest),
      cmocka_unit_test(test_plan_sliding),
      cmocka_unit_test(test_eval_against_reference),
      cmocka_unit_test(test_kld),
      cmocka_unit_test(test_token_stats_many),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
