/* quant/fwht: the fast transform against a dense Hadamard matrix built from its closed
 * form H_ij = (-1)^popcount(i & j) / sqrt(n); orthonormality, self-inverse, seeded signs
 * and the randomised rotation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/fwht.h"
#include "tests/testlib.h"

static void test_against_dense(void **st) {
  (void)st;
  uint64_t rs = 7;
  for (int64_t n = 1; n <= 512; n *= 2) {
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    double *xd = malloc(sizeof(double) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = qg_test_randf(&rs), xd[i] = x[i];
    memcpy(y, x, sizeof(float) * (size_t)n);
    qg_fwht(y, n);
    qg_fwht_f64(xd, n);
    for (int64_t i = 0; i < n; i++) {
      double ref = 0;
      for (int64_t j = 0; j < n; j++)
        ref += (__builtin_popcountll((unsigned long long)(i & j)) & 1 ? -1.0 : 1.0) * x[j];
      ref /= sqrt((double)n);
      assert_true(fabs(y[i] - ref) < 1e-5);
      assert_true(fabs(xd[i] - ref) < 1e-12);
    }
    free(x), free(y), free(xd);
  }
}

/* Norms are kept and applying the transform twice gives the input back. */
static void test_orthonormal_involution(void **st) {
  (void)st;
  uint64_t rs = 11;
  for (int64_t n = 2; n <= 4096; n *= 4) {
    float *x = malloc(sizeof(float) * (size_t)n), *y = malloc(sizeof(float) * (size_t)n);
    double n0 = 0, n1 = 0;
    for (int64_t i = 0; i < n; i++) x[i] = y[i] = qg_test_randf(&rs), n0 += (double)x[i] * x[i];
    qg_fwht(y, n);
    for (int64_t i = 0; i < n; i++) n1 += (double)y[i] * y[i];
    assert_true(fabs(n1 / n0 - 1) < 1e-5);
    qg_fwht(y, n);
    for (int64_t i = 0; i < n; i++) assert_true(fabs(y[i] - x[i]) < 1e-5);
    free(x), free(y);
  }
  /* batch = one transform per block */
  float a[3 * 16], b[3 * 16];
  for (int i = 0; i < 48; i++) a[i] = b[i] = qg_test_randf(&rs);
  qg_fwht_batch(a, 16, 3);
  for (int r = 0; r < 3; r++) qg_fwht(b + 16 * r, 16);
  assert_memory_equal(a, b, sizeof a);
  assert_true(qg_is_pow2(1) && qg_is_pow2(1024) && !qg_is_pow2(0) && !qg_is_pow2(96));
}

static void test_signs(void **st) {
  (void)st;
  enum { N = 100000 };
  float *s = malloc(sizeof(float) * N), *t = malloc(sizeof(float) * N);
  qg_random_signs(123, s, N);
  qg_random_signs(123, t, N);
  assert_memory_equal(s, t, sizeof(float) * N);
  int neg = 0, diff = 0;
  for (int i = 0; i < N; i++) neg += s[i] < 0, assert_true(s[i] == 1.0f || s[i] == -1.0f);
  assert_true(abs(neg - N / 2) < N / 100); /* balanced to 1 % (20 sigma) */
  qg_random_signs(124, t, N);
  for (int i = 0; i < N; i++) diff += s[i] != t[i];
  assert_true(abs(diff - N / 2) < N / 100); /* another seed: independent signs */
  free(s), free(t);
}

/* R = H D is a rotation: inverse exact, norms kept; a one-hot (the worst case for a
 * scalar grid) spreads to +-1/sqrt(n) in every coordinate. */
static void test_rotation(void **st) {
  (void)st;
  enum { N = 256 };
  float s[N], x[N], y[N];
  double yd[N];
  uint64_t rs = 5;
  qg_random_signs(99, s, N);
  for (int i = 0; i < N; i++) x[i] = y[i] = qg_test_randf(&rs), yd[i] = x[i];
  qg_rotate_fwd(y, s, N);
  qg_rotate_fwd_f64(yd, s, N);
  for (int i = 0; i < N; i++) assert_true(fabs(y[i] - yd[i]) < 1e-5);
  qg_rotate_inv(y, s, N);
  qg_rotate_inv_f64(yd, s, N);
  for (int i = 0; i < N; i++) assert_true(fabs(y[i] - x[i]) < 1e-5 && fabs(yd[i] - x[i]) < 1e-12);
  memset(y, 0, sizeof y);
  y[37] = 1.0f;
  qg_rotate_fwd(y, s, N);
  for (int i = 0; i < N; i++) assert_true(fabsf(fabsf(y[i]) - 1.0f / 16.0f) < 1e-7f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_against_dense),
      cmocka_unit_test(test_orthonormal_involution),
      cmocka_unit_test(test_signs),
      cmocka_unit_test(test_rotation),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
