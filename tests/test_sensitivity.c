/* Sensitivity: a cell's KLD equals an independent whole-model quantize + KLD of the same
 * assignment, a candidate equal to the base moves nothing, Spearman against known values,
 * and bad input exits 2 before any work. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "io/shards.h"
#include "io/spm.h"
#include "lab/sensitivity.h"
#include "quant/artifact.h"
#include "quant/calibrate.h"
#include "quant/pipeline.h"
#include "tests/testlib.h"

static void test_spearman_known(void **st) {
  (void)st;
  /* scipy.stats.spearmanr([1,2,3,4,5], [5,6,7,8,7]) = 0.8207826816681233 (a tie in y) */
  const double x[5] = {1, 2, 3, 4, 5}, y[5] = {5, 6, 7, 8, 7}, z[5] = {9, 7, 5, 3, 1}, c[5] = {2, 2, 2, 2, 2};
  assert_true(fabs(qg_spearman(x, y, 5) - 0.8207826816681233) < 1e-15);
  assert_true(qg_spearman(x, z, 5) == -1.0);
  assert_true(isnan(qg_spearman(x, c, 5)));
  assert_true(isnan(qg_spearman(x, y, 1)));
}

static void test_expand(void **st) {
  (void)st;
  char **c;
  int n;
  assert_int_equal(qg_sens_expand_candidates("rowwise bits=4|5 pct=99|100; gptq bits=6", &c, &n), 0);
  assert_int_equal(n, 5);
  assert_string_equal(c[0], "rowwise bits=4 pct=99");
  assert_string_equal(c[3], "rowwise bits=5 pct=100");
  assert_string_equal(c[4], "gptq bits=6");
  for (int i = 0; i < n; i++) free(c[i]);
  free(c);
  assert_int_equal(qg_sens_expand_candidates("rowwise bits=4|", &c, &n), QG_ERR_INPUT);
  assert_int_equal(qg_sens_expand_candidates("nosuchquantizer bits=4", &c, &n), QG_ERR_INPUT);
}

typedef struct {
  double sum;
  int64_t n;
} kld_acc;

static void acc_sink(void *c, const qg_token_stat *t, int32_t prev, int32_t tgt, int bytes) {
  (void)prev, (void)tgt, (void)bytes;
  kld_acc *a = c;
  a->sum += t->kld < 0 ? 0 : t->kld;
  a->n++;
}

/* The mean KLD of a whole-model quantization by spec, from scratch: its own quantize of
 * every tensor, its own dequantize and a plain two-model pass. */
static double independent_kld(const char *model, const char *spec, const qg_hessian_map *hm, const char *val,
                              const char *tok, const qg_eval_opts *eo) {
  const qg_ops *ops;
  assert_int_equal(qg_ops_by_name("cpu", &ops), 0);
  qg_state st;
  assert_int_equal(qg_checkpoint_load(model, &st, NULL), 0);
  qg_spec sp;
  assert_int_equal(qg_spec_parse_inline(spec, &sp), 0);
  qg_quantize_opts qo = {.hessians = hm};
  qg_qmodel qm;
  assert_int_equal(qg_quantize_model(&st, &sp, &qo, &qm), 0);
  const qg_qtensor **qp = malloc(sizeof *qp * (size_t)qm.n);
  for (int i = 0; i < qm.n; i++) qp[i] = &qm.t[i].q;
  qg_state dq;
  qg_state_init(&dq);
  assert_int_equal(qg_qtensors_dequantize(qp, qm.n, &dq), 0);
  qg_gpt m0, m1;
  assert_int_equal(qg_gpt_init(&m0, &st, NULL, ops), 0);
  assert_int_equal(qg_gpt_init(&m1, &dq, NULL, ops), 0);
  qg_spm spm;
  assert_int_equal(qg_spm_load(tok, &spm), 0);
  qg_spm_luts luts;
  assert_int_equal(qg_spm_luts_init(&luts, &spm, spm.n_pieces), 0);
  qg_shards sh;
  assert_int_equal(qg_shards_open(val, &sh), 0);
  kld_acc a = {0};
  qg_eval_totals t;
  assert_int_equal(qg_eval_run(&m0, &m1, &sh, &luts, eo, acc_sink, &a, &t), 0);
  qg_shards_close(&sh);
  qg_spm_luts_free(&luts);
  qg_spm_free(&spm);
  qg_gpt_free(&m0), qg_gpt_free(&m1);
  qg_state_free(&dq), qg_state_free(&st);
  free(qp);
  qg_qmodel_free(&qm);
  qg_spec_free(&sp);
  return a.sum / (double)a.n;
}

static const qg_sens_cell *find_cell(const qg_sens_result *r, const char *group, const char *cand) {
  for (int i = 0; i < r->ng * r->nc; i++)
    if (!strcmp(r->g[r->cells[i].group].name, group) && !strcmp(r->cand[r->cells[i].cand], cand)) return &r->cells[i];
  fail_msg("no cell %s / %s", group, cand);
  return NULL;
}

static void test_cells_exact(void **st) {
  (void)st;
  const char *vocab;
  QG_REQUIRE_CONTEST_FILE(vocab, "fineweb_1024_bpe.vocab");
  char model[2048], val[2048], tok[2048];
  snprintf(tok, sizeof tok, "%s", vocab);
  /* a trained model: the contest's init zeroes both projections, so most roles would not
   * move the output at all */
  const char *tiny;
  QG_REQUIRE_CONTEST_FILE(tiny, "tiny3L128d_nolanvild_3c063e5.pt");
  snprintf(model, sizeof model, "%s", tiny);
  snprintf(val, sizeof val, "%s", qg_test_data_file("train_ref/train.bin"));
  qg_sens_opts o = {.model = model, .val = val, .tokenizer = tok, .base = "*: rowwise bits=8",
                    .candidates = "rowwise bits=3|8; gptq bits=3", .calib = val, .calib_seqs = 4, .calib_len = 64,
                    .calib_seed = 7, .eval = {.seq_len = 64, .max_tokens = 1025}, .chunk = 3};
  qg_sens_result r;
  qg_status s = qg_sensitivity_run(&o, &r);
  if (s) fail_msg("%s", qg_last_error());
  assert_int_equal(r.ng, 7); /* six block roles and the tied tok_emb; no lm_head */
  assert_int_equal(r.g[0].n, 3); /* attn.c_q of three layers */
  assert_int_equal(r.nc, 3);
  assert_int_equal(r.tokens, 1024);
  /* the base itself, from scratch */
  assert_true(independent_kld(model, o.base, NULL, val, tok, &o.eval) == r.base_kld);
  /* the same Hessians as the run: same sequences, same model */
  qg_hessian_map hm;
  qg_hessian_map_init(&hm);
  {
    qg_state fs;
    assert_int_equal(qg_checkpoint_load(model, &fs, NULL), 0);
    const qg_ops *ops;
    assert_int_equal(qg_ops_by_name("cpu", &ops), 0);
    qg_gpt m;
    assert_int_equal(qg_gpt_init(&m, &fs, NULL, ops), 0);
    qg_shards sh;
    assert_int_equal(qg_shards_open(val, &sh), 0);
    int32_t seqs[4 * 64];
    assert_int_equal(qg_calib_from_shards(&sh, 4, 64, 7, 0, seqs), 0);
    assert_int_equal(qg_calib_hessians(&m, seqs, 4, 64, 0, &hm), 0);
    qg_shards_close(&sh);
    qg_gpt_free(&m);
    qg_state_free(&fs);
  }
  const char *cases[3][3] = {{"attn.c_v", "rowwise bits=3", "blocks.*.attn.c_v.weight"},
                             {"mlp.fc", "gptq bits=3", "blocks.*.mlp.fc.weight"},
                             {"tok_emb", "rowwise bits=3", "tok_emb.weight"}};
  for (int k = 0; k < 3; k++) {
    const qg_sens_cell *c = find_cell(&r, cases[k][0], cases[k][1]);
    char spec[512];
    snprintf(spec, sizeof spec, "%s: %s; *: rowwise bits=8", cases[k][2], cases[k][1]);
    double want = independent_kld(model, spec, &hm, val, tok, &o.eval);
    if (c->kld != want) fail_msg("%s at %s: cell KLD %.17g, whole-model %.17g", cases[k][0], cases[k][1], c->kld, want);
    if (!(c->delta_kld > 0 && c->lo <= c->delta_kld && c->delta_kld <= c->hi))
      fail_msg("%s at %s: delta %g [%g, %g]", cases[k][0], cases[k][1], c->delta_kld, c->lo, c->hi);
    assert_true(fabs(c->delta_kld - (want - r.base_kld)) <= 1e-12 * want);
    assert_true(c->bytes < c->base_bytes);
  }
  qg_hessian_map_free(&hm);
  /* the base spec as a candidate: nothing moves */
  for (int g = 0; g < r.ng; g++) {
    const qg_sens_cell *c = find_cell(&r, r.g[g].name, "rowwise bits=8");
    assert_true(c->delta_kld == 0 && c->lo == 0 && c->hi == 0 && c->delta_nll == 0);
    assert_true(c->bytes == c->base_bytes && isnan(c->roi));
    /* the loss-based estimators are candidate minus base: exactly zero here, on both subsets */
    for (int h = 0; h < 2; h++) assert_true(c->est_fisher[h] == 0 && c->est_hutch[h] == 0);
  }
  /* the estimators ran on both calibration subsets; a coarser candidate scores higher */
  assert_true(r.loss_est && r.est_seqs == 8 && r.probes == 8);
  for (int h = 0; h < 2; h++) assert_true(isfinite(r.rho_fisher[h]) && isfinite(r.rho_hutch[h]));
  assert_true(isfinite(r.stab_fisher) && isfinite(r.stab_hutch) && isfinite(r.stab_output));
  for (int g = 0; g < r.ng; g++)
    for (int h = 0; h < 2; h++)
      assert_true(find_cell(&r, r.g[g].name, "rowwise bits=3")->est_fisher[h] > 0);
  /* bytes: the groups' base bytes and fixed_bytes add up to the artifact */
  int64_t gb = 0;
  for (int g = 0; g < r.ng; g++) gb += find_cell(&r, r.g[g].name, "rowwise bits=3")->base_bytes;
  assert_true(gb + r.fixed_bytes == r.base_artifact_bytes);
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_sens_json(&o, &r, &b), 0);
  qg_buf_byte(&b, 0);
  assert_non_null(strstr((char *)b.p, "\"schema_version\": 1"));
  assert_non_null(strstr((char *)b.p, "\"bytes_saved\""));
  qg_buf_free(&b);
  qg_sens_result_free(&r);
}

static void test_errors(void **st) {
  (void)st;
  const char *vocab;
  QG_REQUIRE_CONTEST_FILE(vocab, "fineweb_1024_bpe.vocab");
  char *dir = qg_test_tmpdir();
  static char out[1 << 16], err[1 << 14];
  char pre[8192], args[16384];
  char model[2048], val[2048]; /* qg_test_data_file returns one static buffer */
  snprintf(model, sizeof model, "%s", qg_test_data_file("train_ref/init.safetensors"));
  snprintf(val, sizeof val, "%s", qg_test_data_file("train_ref/train.bin"));
  snprintf(pre, sizeof pre, "sensitivity --model '%s' --val '%s' --tokenizer '%s' --seq-len 64 --out '%s/o'", model,
           val, vocab, dir);
  /* the same line with good arguments works, so each failure below is its own argument's */
  snprintf(args, sizeof args, "%s --base '*: rowwise bits=8' --candidates 'rowwise bits=4' --max-tokens 129", pre);
  int ok = qg_test_run_cli(args, out, sizeof out, err, sizeof err);
  if (ok) fail_msg("good arguments: exit %d: %s", ok, err);
  assert_non_null(strstr(out, "ROI"));
  qg_test_rmdir(dir);
  dir = qg_test_tmpdir();
  snprintf(pre, sizeof pre, "sensitivity --model '%s' --val '%s' --tokenizer '%s' --seq-len 64 --out '%s/o'", model,
           val, vocab, dir);
  const char *bad[] = {
      "--base '*: rowwise bits=8' --candidates 'rowwise bits=99'",
      "--base '*: rowwise bits=8' --candidates 'rowwise bits=4' --groups 'blocks.*.nothing.*'",
      "--base '*: rowwise bits=8' --candidates 'rowwise bits=4' --groups foo",
      "--base '*: rowwise bits=8' --candidates 'rowwise bits=4 group=48'",
      "--base '*: rowwise bits=8' --candidates 'gptq bits=4'",
      "--base '*: nosuch bits=8' --candidates 'rowwise bits=4'",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(args, sizeof args, "%s %s", pre, bad[i]);
    int rc = qg_test_run_cli(args, out, sizeof out, err, sizeof err);
    if (rc != 2) fail_msg("exit %d for %s: %s", rc, bad[i], err);
    int lines = 0;
    for (const char *p = err; *p; p++) lines += *p == '\n';
    if (lines != 1) fail_msg("%s: %d lines on stderr: %s", bad[i], lines, err);
    assert_int_equal(qg_test_count_entries(dir), 0); /* nothing written */
  }
  /* the estimators' calibration subsets must fit the calibration shards: checked up front */
  char extra[4400];
  snprintf(extra, sizeof extra, "--base '*: rowwise bits=8' --candidates 'rowwise bits=4' --calib '%s' --est-seqs 100000",
           val);
  snprintf(args, sizeof args, "%s %s", pre, extra);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  if (!strstr(err, "--est-seqs") || strchr(err, '\n') != err + strlen(err) - 1) fail_msg("%s", err);
  assert_int_equal(qg_test_count_entries(dir), 0);
  snprintf(args, sizeof args, "%s --base '*: rowwise bits=8' --candidates 'rowwise bits=4' --probes -3", pre);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_spearman_known), cmocka_unit_test(test_expand),
                                     cmocka_unit_test(test_cells_exact), cmocka_unit_test(test_errors)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
