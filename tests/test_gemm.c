/* kernels/cpu/cpu_gemm: the blocked GEMM on the core pool against an fp64 reference on
 * fresh random inputs, every transpose combination, alpha and beta, sizes that are no
 * multiple of the blocks, submatrices (leading dimensions wider than the rows), and
 * against one whole single-threaded cblas_sgemm call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/cpu/cpu_gemm.h"
#include "tests/testlib.h"

/* |C - C64| <= GEMM_TOL * (|alpha| sum_k |a_ik b_kj| + |beta c_ij|): fp32 accumulation
 * over K <= 700 terms stays well inside it */
#define GEMM_TOL 1e-5

static float *randm(int64_t n, uint64_t *rng) {
  float *p = malloc(sizeof *p * (size_t)n);
  assert_non_null(p);
  for (int64_t i = 0; i < n; i++) p[i] = qg_test_randf(rng);
  return p;
}

static void check(int ta, int tb, int M, int N, int K, float alpha, float beta, int bm, int bn, uint64_t seed) {
  uint64_t rng = seed;
  int pad = 3; /* leading dimensions wider than the matrices */
  int ar = ta ? K : M, ac = ta ? M : K, br = tb ? N : K, bc = tb ? K : N;
  int lda = ac + pad, ldb = bc + pad, ldc = N + pad;
  float *A = randm((int64_t)ar * lda, &rng), *B = randm((int64_t)br * ldb, &rng);
  float *C = randm((int64_t)M * ldc, &rng), *C1 = malloc(sizeof(float) * (size_t)M * ldc);
  assert_non_null(C1);
  for (int64_t i = 0; i < (int64_t)M * ldc; i++) C1[i] = C[i];
  double worst = 0, worst_whole = 0;
  float *Cw = malloc(sizeof(float) * (size_t)M * ldc);
  assert_non_null(Cw);
  for (int64_t i = 0; i < (int64_t)M * ldc; i++) Cw[i] = C[i];
  qg_cpu_sgemm_blocked(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C1, ldc, bm, bn);
  openblas_set_num_threads(1);
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B,
              ldb, beta, Cw, ldc);
  for (int i = 0; i < M; i++) {
    for (int j = 0; j < N; j++) {
      double s = 0, sa = 0;
      for (int k = 0; k < K; k++) {
        double a = ta ? A[(int64_t)k * lda + i] : A[(int64_t)i * lda + k];
        double b = tb ? B[(int64_t)j * ldb + k] : B[(int64_t)k * ldb + j];
        s += a * b, sa += fabs(a * b);
      }
      double ref = alpha * s + beta * (double)C[(int64_t)i * ldc + j];
      double lim = GEMM_TOL * (fabs(alpha) * sa + fabs(beta * C[(int64_t)i * ldc + j])) + 1e-30;
      double e = fabs(C1[(int64_t)i * ldc + j] - ref) / lim;
      double ew = fabs(C1[(int64_t)i * ldc + j] - Cw[(int64_t)i * ldc + j]) / lim;
      worst = e > worst ? e : worst;
      worst_whole = ew > worst_whole ? ew : worst_whole;
    }
    for (int j = N; j < ldc; j++) assert_true(C1[(int64_t)i * ldc + j] == C[(int64_t)i * ldc + j]); /* untouched */
  }
  print_message("  %c%c M %d N %d K %d alpha %g beta %g blocks %dx%d: %.3g of the tolerance vs fp64, %.3g vs one "
                "whole sgemm\n", ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, beta, bm, bn, worst, worst_whole);
  assert_true(worst <= 1.0);
  assert_true(worst_whole <= 2.0);
  free(A), free(B), free(C), free(C1), free(Cw);
}

static void test_blocked_vs_fp64(void **st) {
  (void)st;
  uint64_t seed = 7;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      check(ta, tb, 300, 130, 70, 1.0f, 0.0f, 64, 64, seed++);   /* partial blocks both ways */
      check(ta, tb, 97, 45, 700, -0.75f, 1.0f, 32, 0, seed++);    /* accumulate, long reduction */
      check(ta, tb, 64, 128, 128, 2.0315f, -4.775f, 32, 0, seed++); /* Newton-Schulz's B = c A A + b B */
      check(ta, tb, 5, 3, 9, 1.0f, 0.5f, 64, 64, seed++);        /* smaller than one block */
    }
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_blocked_vs_fp64)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
