/* fp32 GEMM in fixed blocks of C on the core pool (kernels/cpu/cpu_gemm.h). */
#include "kernels/cpu/cpu_gemm.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/threadpool.h"

typedef struct {
  int ta, tb, M, N, K, lda, ldb, ldc, bm, bn, nbn;
  float alpha, beta;
  const float *A, *B;
  float *C;
} gemm_ctx;

static void gemm_task(void *c, int64_t task, int thread) {
  (void)thread;
  const gemm_ctx *g = c;
  int m0 = (int)(task / g->nbn) * g->bm, n0 = (int)(task % g->nbn) * g->bn;
  int mb = g->M - m0 < g->bm ? g->M - m0 : g->bm, nb = g->N - n0 < g->bn ? g->N - n0 : g->bn;
  /* rows m0.. of op(A): rows of A, or columns of A^T; columns n0.. of op(B) likewise */
  const float *a = g->ta ? g->A + m0 : g->A + (size_t)m0 * g->lda;
  const float *b = g->tb ? g->B + (size_t)n0 * g->ldb : g->B + n0;
  cblas_sgemm(CblasRowMajor, g->ta ? CblasTrans : CblasNoTrans, g->tb ? CblasTrans : CblasNoTrans, mb, nb, g->K,
              g->alpha, a, g->lda, b, g->ldb, g->beta, g->C + (size_t)m0 * g->ldc + n0, g->ldc);
}

void qg_cpu_sgemm_blocked(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                          const float *B, int ldb, float beta, float *C, int ldc, int block_m, int block_n) {
  if (block_m <= 0 || block_m > M) block_m = M;
  if (block_n <= 0 || block_n > N) block_n = N;
  gemm_ctx g = {trans_a, trans_b, M, N, K, lda, ldb, ldc, block_m, block_n, (N + block_n - 1) / block_n,
                alpha, beta, A, B, C};
  int64_t tasks = (int64_t)((M + block_m - 1) / block_m) * g.nbn;
  int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  qg_parallel_for(tasks, gemm_task, &g);
  openblas_set_num_threads(blas_threads);
}

void qg_cpu_blas_describe(char *out, size_t cap) {
  const char *env = getenv("OPENBLAS_CORETYPE");
  snprintf(out, cap, "cpu blas: %s, kernels %s%s%s%s", openblas_get_config(), openblas_get_corename(),
           env ? " (OPENBLAS_CORETYPE=" : " (chosen by OpenBLAS for this CPU)", env ? env : "", env ? " in the environment)" : "");
}
