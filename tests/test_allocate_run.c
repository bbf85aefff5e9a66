/* allocate end to end on the contest's tiny checkpoint: the table measured in place by the
 * sensitivity engine, --iterate re-measuring around the chosen allocation, and --verify's
 * interval and budget. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "core/progress.h"
#include "lab/alloc_arm.h"
#include "lab/allocate_run.h"
#include "lab/hypothesis.h"
#include "lab/report.h"
#include "lab/runner.h"
#include "tests/testlib.h"

static void test_in_place_iterate_verify(void **st) {
  (void)st;
  const char *p;
  char model[2048], tok[2048], val[2048];
  QG_REQUIRE_CONTEST_FILE(p, "fineweb_1024_bpe.vocab");
  snprintf(tok, sizeof tok, "%s", p);
  QG_REQUIRE_CONTEST_FILE(p, "tiny3L128d_nolanvild_3c063e5.pt");
  snprintf(model, sizeof model, "%s", p);
  snprintf(val, sizeof val, "%s", qg_test_data_file("train_ref/train.bin"));
  /* a budget between the all-int3 and the all-int8 artifact (about 157 KB and 452 KB) */
  qg_allocate_opts o = {.model = model, .budget = 250000, .granularity = 1, .base = "*: rowwise bits=8",
                        .candidates = "rowwise bits=3|4", .val = val, .tokenizer = tok, .seq_len = 64,
                        .max_tokens = 257, .verify = 1};
  qg_allocate_result r0, r;
  if (qg_allocate_run(&o, &r0)) fail_msg("%s", qg_last_error());
  assert_true(r0.measured_in_place && r0.verified);
  assert_int_equal(r0.measured_tokens, 256);
  assert_true(r0.measured_kld_lo < r0.measured_kld && r0.measured_kld < r0.measured_kld_hi);
  assert_true(r0.fits && r0.measured_bytes <= o.budget);
  o.iterate = 3;
  if (qg_allocate_run(&o, &r)) fail_msg("%s", qg_last_error());
  print_message("  first solve: predicted %.6g, measured %.6g; iterated %d round(s), %s: measured %.6g [%.6g, %.6g]\n",
                r0.predicted, r0.measured_kld, r.n_rounds, r.converged ? "converged" : "not converged",
                r.measured_kld, r.measured_kld_lo, r.measured_kld_hi);
  assert_true(r.first_predicted == r0.predicted);
  assert_true(r.n_rounds >= 1);
  /* round 1 re-measured the table around the first allocation: its base is that allocation,
   * whose KLD the first run verified on the same tokens */
  assert_true(fabs(r.rounds[0].base_metric - r0.measured_kld) <= 1e-9 * r0.measured_kld);
  for (int k = 1; k < r.n_rounds; k++) assert_true(r.rounds[k - 1].changed > 0);
  if (r.converged) {
    const qg_alloc_round *last = &r.rounds[r.n_rounds - 1];
    assert_int_equal(last->changed, 0);
    /* the allocation is the last table's base: predicted is its measured KLD, verified again */
    assert_true(fabs(r.measured_kld - last->predicted) <= 1e-9 * r.measured_kld);
    assert_string_equal(last->spec, r.spec_inline);
    assert_true(r.measured_kld <= r0.measured_kld + 1e-12);
  }
  assert_true(r.fits && r.measured_bytes <= o.budget);
  qg_allocate_result_free(&r0);
  qg_allocate_result_free(&r);
}

static void test_in_place_errors(void **st) {
  (void)st;
  qg_allocate_opts o = {.model = "m.pt", .budget = 1000, .candidates = "rowwise bits=4", .val = "v", .tokenizer = "t"};
  qg_allocate_result r;
  assert_int_equal(qg_allocate_run(&o, &r), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "--base"));
  o.base = "*: rowwise bits=8", o.iterate = 9;
  assert_int_equal(qg_allocate_run(&o, &r), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "--iterate"));
  o.iterate = 1, o.candidates = NULL, o.sensitivity = "s.json";
  assert_int_equal(qg_allocate_run(&o, &r), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "--candidates"));
}

/* A runner arm `allocate:` without a table: reading the file measures nothing; resolving it
 * (as the runner does) measures the table in place and quantizes the choice's real artifact
 * once to keep it within the budget; the second resolution comes from the cache. */
static void test_runner_arm_in_place(void **st) {
  (void)st;
  const char *p;
  char model[2048], tok[2048], val[2048];
  QG_REQUIRE_CONTEST_FILE(p, "fineweb_1024_bpe.vocab");
  snprintf(tok, sizeof tok, "%s", p);
  QG_REQUIRE_CONTEST_FILE(p, "tiny3L128d_nolanvild_3c063e5.pt");
  snprintf(model, sizeof model, "%s", p);
  snprintf(val, sizeof val, "%s", qg_test_data_file("train_ref/train.bin"));
  char yaml[8192];
  snprintf(yaml, sizeof yaml,
           "hypothesis: h\nmodel: %s\ntokenizer: %s\ndata: {val: %s, seq_len: 64, max_tokens: 257}\nbaseline: a\n"
           "arms:\n  a: {spec: 'blocks.*: rowwise bits=6; tok_emb.weight: rowwise bits=8'}\n"
           "  s: {allocate: {budget: 250000, candidates: 'rowwise bits=3|4', base: '*: rowwise bits=8'}}\n",
           model, tok, val);
  char *dir = qg_test_tmpdir();
  char hpath[4200];
  snprintf(hpath, sizeof hpath, "%s", qg_test_path(dir, "h.yaml"));
  qg_lab_hypothesis h;
  double t0 = qg_now();
  if (qg_lab_hypothesis_parse(yaml, strlen(yaml), hpath, &h)) fail_msg("%s", qg_last_error());
  print_message("  reading the file took %.2f s (nothing measured)\n", qg_now() - t0);
  const qg_lab_arm *a = &h.arms[qg_lab_arm_index(&h, "s")];
  assert_true(a->allocates && !a->spec);
  qg_lab_alloc_ids ids = {"m", "t", "v", ""};
  qg_lab_alloc al, again;
  if (qg_lab_alloc_resolve(&h, a, &ids, dir, 0, NULL, NULL, &al)) fail_msg("%s", qg_last_error());
  print_message("  arm s: predicted KLD %.6g at %lld bytes, real artifact %lld bytes after %d repair round(s)\n",
                al.predicted_kld, (long long)al.predicted_bytes, (long long)al.measured_bytes, al.repair_rounds);
  assert_true(al.measured_in_place && !al.reused);
  assert_true(al.predicted_bytes <= 250000);
  assert_true(al.measured_bytes > 0 && al.measured_bytes <= 250000);
  if (qg_lab_alloc_resolve(&h, a, &ids, dir, 0, NULL, NULL, &again)) fail_msg("%s", qg_last_error());
  assert_true(again.reused && !strcmp(again.spec, al.spec) && again.measured_bytes == al.measured_bytes);
  assert_true(again.predicted_kld == al.predicted_kld && again.predicted_bytes == al.predicted_bytes);
  qg_lab_alloc_free(&again);
  /* the same choice as allocate itself from the same in-place table */
  qg_allocate_opts o = {.model = model, .budget = 250000, .granularity = 1, .base = "*: rowwise bits=8",
                        .candidates = "rowwise bits=3|4", .val = val, .tokenizer = tok, .seq_len = 64,
                        .max_tokens = 257, .repair = 1};
  qg_allocate_result r;
  if (qg_allocate_run(&o, &r)) fail_msg("%s", qg_last_error());
  assert_string_equal(r.spec_inline, al.spec);
  assert_true(r.measured_bytes == al.measured_bytes && !r.verified);
  /* the runner end to end: the arm's cell runs the resolved spec (its artifact is the one the
   * repair measured), the report says so, and a second run takes the choice from the cache */
  int si = qg_lab_arm_index(&h, "s");
  char cache[4200], out[4200];
  snprintf(cache, sizeof cache, "%s", qg_test_path(dir, "cache"));
  snprintf(out, sizeof out, "%s", qg_test_path(dir, "reports"));
  for (int pass = 0; pass < 2; pass++) {
    qg_lab_opts lo = {.cache_dir = cache, .git_commit = "test"};
    qg_lab_result lr;
    if (qg_lab_run(&h, &lo, &lr)) fail_msg("%s", qg_last_error());
    assert_string_equal(lr.alloc[si].spec, al.spec);
    assert_int_equal(lr.alloc[si].reused, pass);
    assert_true(lr.cells[si * lr.n_seeds].artifact_bytes == al.measured_bytes);
    assert_int_equal(lr.setup.reused_all, pass);
    if (qg_lab_write_report(&lr, out, "quantgolf run h.yaml")) fail_msg("%s", qg_last_error());
    char rp[4300];
    snprintf(rp, sizeof rp, "%s/%s/report.md", out, h.id);
    static char md[1 << 16];
    qg_test_slurp(rp, md, sizeof md);
    assert_non_null(strstr(md, "solved when the experiment ran"));
    assert_true(!strstr(md, "read it from the cache") == !pass);
    qg_lab_result_free(&lr);
  }
  qg_lab_alloc_free(&al);
  qg_allocate_result_free(&r);
  qg_lab_hypothesis_free(&h);
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_in_place_errors),
                                     cmocka_unit_test(test_in_place_iterate_verify),
                                     cmocka_unit_test(test_runner_arm_in_place)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
