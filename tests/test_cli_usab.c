/* What a new contest entrant meets at the command line: honest labels on quantize's
 * figures, the spec language listed from the parsers' own tables, presets, inspecting
 * artifacts, requantize and tokenizer warnings, dry runs, thread counts, saved Hessians
 * and the hint for a shell-expanded glob. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "quant/quantizer.h"
#include "tests/testlib.h"

static char out[1 << 17], err[1 << 14];
static char cmd[20000];

/* A float checkpoint with one 64x32 matrix "w" and one 16-element vector "b". */
static void small_model(const char *path) {
  qg_state s;
  qg_state_init(&s);
  int64_t shape[2] = {64, 32}, vshape[1] = {16};
  qg_tensor *t;
  assert_int_equal(qg_state_add(&s, "w", QG_F32, 2, shape, &t), QG_OK);
  uint64_t rng = 9;
  for (int i = 0; i < 64 * 32; i++) ((float *)t->data)[i] = qg_test_randf(&rng);
  assert_int_equal(qg_state_add(&s, "b", QG_F32, 1, vshape, &t), QG_OK);
  for (int i = 0; i < 16; i++) ((float *)t->data)[i] = qg_test_randf(&rng);
  assert_int_equal(qg_safetensors_write(path, &s), QG_OK);
  qg_state_free(&s);
}

static int run(const char *fmt, ...) QG_PRINTF(1, 2);
static int run(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  return qg_test_run_cli(cmd, out, sizeof out, err, sizeof err);
}

/* Item: misleading numbers. Option floats print in their shortest round-trip form, the
 * table says '-' for an absent Hessian and labels packed bytes, and the order-0 figure is
 * not called a bound. */
static void test_honest_numbers(void **st) {
  (void)st;
  char b[32];
  assert_string_equal(qg_num_str(99.99984, b), "99.99984");
  assert_string_equal(qg_num_str(20.0, b), "20");
  assert_string_equal(qg_num_str(0.01, b), "0.01");
  assert_true(strtod(qg_num_str(0.1 + 0.2, b), NULL) == 0.1 + 0.2);
  qg_qconfig c;
  assert_int_equal(qg_qconfig_parse("rowwise", "bits=8 clip=pct pct=99.99984", &c), QG_OK);
  assert_non_null(strstr(c.canon, "pct=99.99984"));
  assert_null(strstr(c.canon, "99.999840000"));
  qg_qconfig_free(&c);

  char *dir = qg_test_tmpdir();
  char m[4200], o[4200];
  snprintf(m, sizeof m, "%s/m.safetensors", dir);
  snprintf(o, sizeof o, "%s/a.qgz", dir);
  small_model(m);
  assert_int_equal(run("quantize --model '%s' --spec '*: rowwise bits=6' --out '%s'", m, o), 0);
  assert_null(strstr(out, "nan"));
  assert_non_null(strstr(out, "packed B"));
  assert_null(strstr(out, "bound"));
  assert_non_null(strstr(out, "order-0 entropy"));
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_honest_numbers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
