/* --code-bytes auto: the byte count built into the binary is python/qgz_load.py's size
 * now (a stale build would differ), and quantize adds exactly it to the artifact's bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/tensor.h"
#include "io/qgz_loader.h"
#include "io/safetensors.h"
#include "tests/testlib.h"

static void test_loader_bytes_is_the_file(void **st) {
  (void)st;
  struct stat sb;
  assert_int_equal(stat(QG_SOURCE_DIR "/" QG_QGZ_LOADER_NAME, &sb), 0);
  assert_true(sb.st_size > 1000);
  assert_int_equal(qg_qgz_loader_bytes(), (int64_t)sb.st_size);
}

/* the integer after "key": in a JSON text */
static long long json_int(const char *j, const char *key) {
  char k[64];
  snprintf(k, sizeof k, "\"%s\": ", key);
  const char *p = strstr(j, k);
  if (!p) fail_msg("no %s in %s", key, j);
  return strtoll(p + strlen(k), NULL, 10);
}

static void test_quantize_code_bytes_auto(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char m[512], q[512], args[2048], out[16384], err[4096];
  snprintf(m, sizeof m, "%s", qg_test_path(dir, "m.safetensors"));
  snprintf(q, sizeof q, "%s", qg_test_path(dir, "a.qgz"));
  qg_state s;
  qg_state_init(&s);
  qg_tensor *t;
  uint64_t seed = 9;
  int64_t sh[2] = {64, 64};
  assert_int_equal(qg_state_add(&s, "blocks.0.mlp.fc.weight", QG_F32, 2, sh, &t), QG_OK);
  for (int64_t i = 0; i < 64 * 64; i++) ((float *)t->data)[i] = 0.05f * qg_test_randf(&seed);
  assert_int_equal(qg_safetensors_write(m, &s), QG_OK);
  qg_state_free(&s);
  snprintf(args, sizeof args, "quantize --model '%s' --spec '*: rowwise bits=4' --out '%s' --code-bytes auto --json", m,
           q);
  if (qg_test_run_cli(args, out, sizeof out, err, sizeof err)) fail_msg("%s", err);
  assert_int_equal(json_int(out, "code_bytes"), qg_qgz_loader_bytes());
  assert_non_null(strstr(out, "\"code_bytes_auto\": true"));
  assert_int_equal(json_int(out, "total_bytes"), json_int(out, "artifact_bytes") + qg_qgz_loader_bytes());
  /* a given count is not auto; a bad word is a usage error before any work */
  snprintf(args, sizeof args, "quantize --model '%s' --spec '*: rowwise bits=4' --out '%s' --code-bytes 17 --json", m, q);
  if (qg_test_run_cli(args, out, sizeof out, err, sizeof err)) fail_msg("%s", err);
  assert_int_equal(json_int(out, "code_bytes"), 17);
  assert_non_null(strstr(out, "\"code_bytes_auto\": false"));
  snprintf(args, sizeof args, "quantize --model '%s' --spec '*: rowwise bits=4' --out '%s' --code-bytes automatic", m, q);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_loader_bytes_is_the_file),
                                     cmocka_unit_test(test_quantize_code_bytes_auto)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
