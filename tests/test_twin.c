/* tests/twin.c, the twin harness itself, on the CPU: the comparison passes two equal
 * backends and catches a backend whose op is slightly off or leaves an element unwritten
 * (the poison), and a row whose runs disagree on what they report; the finite-difference
 * mode accepts the CPU's backward and catches a backward that is off by a little, in one
 * entry, or in one of several variables. Without these the GPU programs' rows could
 * never fail for the right reason where no GPU is present to make them fail. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "tests/testlib.h"
#include "tests/twin.h"

/* ---- a "backend" that is the CPU with one op broken ------------------------------------ */

static int breakage; /* 0: none; 1: rmsnorm 1e-4 off; 2: rmsnorm skips the last element */

static qg_status bad_rmsnorm(const qg_ops *o, float *y, const float *x, int64_t rows, int dim, float eps) {
  const qg_ops *cpu = qg_ops_cpu();
  int64_t n = rows * dim;
  float last = y[n - 1];
  qg_status s = cpu->rmsnorm(cpu, y, x, rows, dim, eps);
  (void)o;
  if (breakage == 1) y[n / 2] *= 1.0001f;
  if (breakage == 2 && y != x) y[n - 1] = last;
  return s;
}

static qg_ops broken;

static void run_rmsnorm(qg_twin_io *io, const int64_t *sh) {
  int64_t n = sh[0] * sh[1];
  float *x = qg_twin_rand(io, n, 3.0f), *y = qg_twin_poison(io, n);
  QG_TEST_OK(io->o->rmsnorm(io->o, y, x, sh[0], (int)sh[1], 1e-6f));
  qg_twin_result(io, "y", y, n, QG_TWIN_ROW_TOL);
}

/* Reports one result more on the broken backend than on the CPU. */
static void run_uneven(qg_twin_io *io, const int64_t *sh) {
  float *x = qg_twin_rand(io, sh[0], 1.0f);
  qg_twin_result(io, "x", x, sh[0], 0.0);
  if (io->o == &broken) qg_twin_result(io, "extra", x, sh[0], 0.0);
}

static const qg_twin_row rms_row = {"rmsnorm", "rows dim", run_rmsnorm, {{1, 7}, {37, 129}}, 1e-5, "fp32", QG_PRECISION_FP32};

static void test_compare(void **st) {
  (void)st;
  broken = *qg_ops_cpu();
  broken.name = "broken-cpu";
  broken.rmsnorm = bad_rmsnorm;
  char msg[512];
  breakage = 0;
  assert_int_equal(qg_twin_compare(&rms_row, qg_ops_cpu(), &broken, QG_PRECISION_FP32, msg, sizeof msg), 0);
  breakage = 1; /* one element of 4773 off by 1e-4: a normwise error of ~2e-6 is below 1e-5 ... */
  assert_int_equal(qg_twin_compare(&rms_row, qg_ops_cpu(), &broken, QG_PRECISION_FP32, msg, sizeof msg), 1);
  /* ... but not in the 7-element shape, where it is ~2e-5 */
  print_message("caught: %s\n", msg);
  assert_non_null(strstr(msg, "rmsnorm rows=1 dim=7: y"));
  breakage = 2; /* an element never written keeps the poison: NaN never passes */
  assert_int_equal(qg_twin_compare(&rms_row, qg_ops_cpu(), &broken, QG_PRECISION_FP32, msg, sizeof msg), 2);
  print_message("caught: %s\n", msg);
  assert_non_null(strstr(msg, "relative error nan"));
  breakage = 0;
  const qg_twin_row uneven = {"uneven", "n", run_uneven, {{5}}, 0.0, "exact", QG_PRECISION_FP32};
  assert_int_equal(qg_twin_compare(&uneven, qg_ops_cpu(), &broken, QG_PRECISION_FP32, msg, sizeof msg), 1);
  print_message("caught: %s\n", msg);
  assert_non_null(strstr(msg, "1 results on cpu, 2 on broken-cpu"));
}

/* ---- finite differences: y = x * gain per head (head_scale) ---------------------------- */

static float *w_dy;
static int fd_breakage; /* 0: none; 1: dx 1% off; 2: one dx entry wrong; 3: dgain dropped */

static void su(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_fd_var(f, "x", sh[0] * sh[1] * sh[2], 1);
  qg_twin_fd_var(f, "gain", sh[1], 2);
  w_dy = qg_twin_randh(&f->io, sh[0] * sh[1] * sh[2], 1);
}

static double lo(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  int64_t n = sh[0] * sh[1] * sh[2];
  float *x = qg_twin_upf(io, f->var[0].x, n);
  QG_TEST_OK(io->o->head_scale(io->o, x, sh[0], (int)sh[1], (int)sh[2], qg_twin_upf(io, f->var[1].x, sh[1])));
  return qg_twin_dot(io, w_dy, x, n);
}

static void gr(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  int64_t n = sh[0] * sh[1] * sh[2];
  float *dx = qg_twin_poison(io, n), *dg = qg_twin_zeros(io, sh[1]);
  QG_TEST_OK(io->o->head_scale_bwd(io->o, dx, dg, qg_twin_upf(io, w_dy, n), qg_twin_upf(io, f->var[0].x, n), sh[0],
                                   (int)sh[1], (int)sh[2], qg_twin_upf(io, f->var[1].x, sh[1])));
  if (fd_breakage == 1)
    for (int64_t i = 0; i < n; i++) dx[i] *= 1.01f; /* the CPU table: host memory */
  if (fd_breakage == 2) dx[n / 3] += 0.5f;
  if (fd_breakage == 3) dg[0] = 0;
  qg_twin_fd_grad(f, "x", dx);
  qg_twin_fd_grad(f, "gain", dg);
}

static void test_fd(void **st) {
  (void)st;
  const qg_twin_fd_row r = {"head_scale", "rows H hd", {{4, 3, 8}, {40, 2, 16}}, su, lo, gr, 1e-3, "fp32", 0, 0};
  char msg[512];
  static const char *want[] = {NULL, "head_scale rows=4 H=3 hd=8: dx", "head_scale rows=4 H=3 hd=8: dx",
                               "head_scale rows=4 H=3 hd=8: dgain"};
  for (fd_breakage = 0; fd_breakage < 4; fd_breakage++) {
    int fails = qg_twin_fd_check(&r, qg_ops_cpu(), msg, sizeof msg);
    if (!fd_breakage) {
      if (fails) fail_msg("the CPU's own backward fails: %s", msg);
      continue;
    }
    print_message("breakage %d caught: %s\n", fd_breakage, msg);
    assert_true(fails >= 1);
    assert_non_null(strstr(msg, want[fd_breakage]));
  }
  fd_breakage = 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_compare), cmocka_unit_test(test_fd)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
