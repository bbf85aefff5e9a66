/* kernels/cpu/cpu_softmax: the polynomial exp against the fp64 exp over a dense sweep of
 * float bit patterns (the stated bound), its edges (0, the underflow and overflow cut-offs,
 * infinities, NaN), every SIMD path bitwise equal to the scalar reference, and the
 * softmax numerator against an fp64 softmax. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_softmax.h"
#include "tests/testlib.h"

/* the bound cpu_softmax.h states */
#define VEXP_REL_BOUND 1.2e-7
#define VEXP_LO (-87.33654f)
#define VEXP_HI 88.3762626647949f

static float from_bits(uint32_t b) {
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}
static uint32_t to_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, sizeof b);
  return b;
}

/* Every 61st float of [-87.33, 88.37] (about 37 million inputs: every binade, densely
 * near 0), through the best path, against exp in fp64. */
static void test_dense_accuracy(void **st) {
  (void)st;
  enum { CHUNK = 1 << 16 };
  float *x = malloc(sizeof(float) * CHUNK), *y = malloc(sizeof(float) * CHUNK);
  double worst = 0, worst_vs_expf = 0;
  float worst_x = 0;
  int64_t count = 0;
  /* positive floats up to HI, then negative ones down to LO (sign bit set) */
  uint32_t lim[2] = {to_bits(VEXP_HI), to_bits(VEXP_LO)}, base[2] = {0, 0x80000000u};
  for (int side = 0; side < 2; side++) {
    uint32_t b = base[side];
    while (b <= lim[side]) {
      int n = 0;
      for (; n < CHUNK && b <= lim[side]; n++, b += 61) x[n] = from_bits(b);
      qg_cpu_vexpf(QG_ISA_BEST, y, x, n);
      for (int i = 0; i < n; i++) {
        double ref = exp((double)x[i]);
        double rel = fabs((double)y[i] - ref) / ref;
        double rel_f = fabs((double)y[i] - (double)expf(x[i])) / ref;
        if (!(rel <= worst)) worst = rel, worst_x = x[i];
        if (rel_f > worst_vs_expf) worst_vs_expf = rel_f;
      }
      count += n;
    }
  }
  print_message("exp: %lld inputs, max relative error %.3g vs fp64 exp (at x = %.9g), %.3g vs expf\n",
                (long long)count, worst, (double)worst_x, worst_vs_expf);
  assert_true(count > 30000000);
  assert_true(worst <= VEXP_REL_BOUND);
  assert_true(worst_vs_expf <= VEXP_REL_BOUND + 6e-8); /* expf itself is within half an ulp */
  free(x);
  free(y);
}

static void test_edges(void **st) {
  (void)st;
  float in[] = {0.0f, -0.0f, 1.0f, -1.0f, VEXP_LO, nextafterf(VEXP_LO, -INFINITY), -88.0f, -100.0f, -1e30f,
                -INFINITY, VEXP_HI, nextafterf(VEXP_HI, INFINITY), 89.0f, 1e30f, INFINITY, NAN};
  int n = (int)(sizeof in / sizeof in[0]);
  float out[16];
  assert_int_equal(n, 16);
  for (int isa = QG_ISA_SCALAR; isa <= QG_ISA_AVX2; isa++) {
    qg_cpu_vexpf((qg_cpu_isa)isa, out, in, n);
    assert_true(out[0] == 1.0f && out[1] == 1.0f);
    assert_true(fabs(out[2] - M_E) < 3e-7 && fabs(out[3] - 1 / M_E) < 1e-7);
    assert_true(out[4] >= FLT_MIN);
    for (int i = 5; i <= 9; i++) assert_true(out[i] == 0.0f && !signbit(out[i]));
    assert_true(isfinite(out[10]) && out[10] > 2e38f);
    for (int i = 11; i <= 14; i++) assert_true(isinf(out[i]) && out[i] > 0);
    assert_true(isnan(out[15]));
    for (int i = 0; i < n; i++) assert_int_equal(to_bits(out[i]), to_bits(qg_cpu_expf(in[i])));
  }
}

/* Same bits on every path this CPU runs, lengths 1..300 so every tail length is hit. */
static void test_paths_bitwise(void **st) {
  (void)st;
  uint64_t rs = 5;
  enum { N = 300 };
  float x[N], ref[N], got[N];
  for (int isa = QG_ISA_SSE2; isa <= QG_ISA_AVX2; isa++) {
    if (!qg_cpu_isa_available((qg_cpu_isa)isa)) {
      print_message("SKIP: isa %d not on this CPU\n", isa);
      continue;
    }
    for (int n = 1; n <= N; n++) {
      for (int i = 0; i < n; i++) x[i] = 40.0f * qg_test_randf(&rs) - 30.0f;
      qg_cpu_vexpf(QG_ISA_SCALAR, ref, x, n);
      qg_cpu_vexpf((qg_cpu_isa)isa, got, x, n);
      assert_memory_equal(ref, got, sizeof(float) * (size_t)n);
      memcpy(ref, x, sizeof x);
      memcpy(got, x, sizeof x);
      float inv_ref = qg_cpu_softmax_exp_isa(QG_ISA_SCALAR, ref, n);
      float inv_got = qg_cpu_softmax_exp_isa((qg_cpu_isa)isa, got, n);
      assert_int_equal(to_bits(inv_ref), to_bits(inv_got));
      assert_memory_equal(ref, got, sizeof(float) * (size_t)n);
    }
  }
}

/* The numerator and 1/sum against an fp64 softmax of the same row. */
static void test_softmax_vs_fp64(void **st) {
  (void)st;
  uint64_t rs = 9;
  enum { N = 1500 };
  float *row = malloc(sizeof(float) * N);
  double *x = malloc(sizeof(double) * N);
  double worst = 0;
  for (int n = 1; n <= N; n += 37) {
    for (int i = 0; i < n; i++) x[i] = row[i] = 12.0f * qg_test_randf(&rs);
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    for (int i = 0; i < n; i++) sum += exp(x[i] - mx);
    float inv = qg_cpu_softmax_exp(row, n);
    for (int i = 0; i < n; i++) {
      double p = exp(x[i] - mx) / sum, got = (double)row[i] * inv;
      double e = fabs(got - p) / p;
      if (e > worst) worst = e;
    }
  }
  print_message("softmax: max relative error %.3g vs fp64\n", worst);
  assert_true(worst < 2e-6);
  free(row);
  free(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dense_accuracy),
      cmocka_unit_test(test_edges),
      cmocka_unit_test(test_paths_bitwise),
      cmocka_unit_test(test_softmax_vs_fp64),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
