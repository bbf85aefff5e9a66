/* kld with several --model: one base pass, each model's figures equal to its own
 * single-model run, and the paired line equal to the difference of the two means. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/testlib.h"

static double num_after(const char *text, const char *key) {
  const char *p = strstr(text, key);
  if (!p) fail_msg("no %s in output", key);
  return strtod(p + strlen(key), NULL);
}

static void test_kld_many(void **st) {
  (void)st;
  const char *vocab;
  QG_REQUIRE_CONTEST_FILE(vocab, "fineweb_1024_bpe.vocab");
  char v[2048];
  snprintf(v, sizeof v, "%s", vocab);
  char *dir = qg_test_tmpdir();
  static char out[1 << 20], err[1 << 14];
  char args[16384], model[2048], val[2048];
  snprintf(model, sizeof model, "%s", qg_test_data_file("train_ref/init.safetensors"));
  snprintf(val, sizeof val, "%s", qg_test_data_file("train_ref/train.bin"));
  const int bits[2] = {8, 4};
  char art[2][2048];
  for (int i = 0; i < 2; i++) {
    snprintf(art[i], sizeof art[i], "%s/a%d.qgz", dir, bits[i]);
    snprintf(args, sizeof args, "quantize --model '%s' --spec '*: rowwise bits=%d' --out '%s'", model, bits[i], art[i]);
    assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 0);
  }
  double single[2];
  for (int i = 0; i < 2; i++) {
    snprintf(args, sizeof args, "kld --base '%s' --model '%s' --val '%s' --tokenizer '%s' --seq-len 64 --device cpu --json",
             model, art[i], val, v);
    assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 0);
    single[i] = num_after(strstr(out, "\"kld\": {"), "\"mean\": ");
  }
  snprintf(args, sizeof args,
           "kld --base '%s' --model '%s' --model '%s' --val '%s' --tokenizer '%s' --seq-len 64 --device cpu --json", model,
           art[0], art[1], val, v);
  int rc = qg_test_run_cli(args, out, sizeof out, err, sizeof err);
  if (rc) fail_msg("exit %d: %s", rc, err);
  const char *m0 = strstr(out, "\"kld\": {"), *m1 = m0 ? strstr(m0 + 1, "\"kld\": {") : NULL;
  assert_non_null(m1);
  /* each model's mean KLD is exactly its own run's (same windows, same base logits) */
  assert_true(num_after(m0, "\"mean\": ") == single[0]);
  assert_true(num_after(m1, "\"mean\": ") == single[1]);
  const char *pd = strstr(out, "\"paired\"");
  assert_non_null(pd);
  const char *pk = strstr(pd, "\"kld\": {");
  double est = num_after(pk, "\"estimate\": "), lo = num_after(pk, "\"lo\": "), hi = num_after(pk, "\"hi\": ");
  assert_true(fabs(est - (single[1] - single[0])) <= 1e-12 * fabs(single[1]));
  assert_true(lo < est && est < hi && lo > 0); /* int4 is farther from the base than int8 */
  assert_true(num_after(strstr(out, "\"models\""), "\"file_bytes\": ") > 0);
  /* --dump-token-kld takes one model */
  snprintf(args, sizeof args, "kld --base '%s' --model '%s' --model '%s' --val '%s' --tokenizer '%s' --dump-token-kld '%s/d'",
           model, art[0], art[1], val, v, dir);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_kld_many)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
