/* fp32 GEMM on the core pool (kernels/cpu/cpu_gemm.c): C is cut into fixed blocks, each
 * computed by one single-threaded OpenBLAS call on a pool thread.
 *
 * Why: OpenBLAS's own worker threads spin (sched_yield) for a long while after every
 * threaded call, so threaded BLAS between the pool's elementwise ops keeps a third
 * runnable thread on the cores: on the quickstart model's training step that spinning
 * was a fifth of the CPU time. With every product of the step (the forward's linears
 * already, now the backward's and Newton-Schulz's) on the pool, OpenBLAS's workers
 * never wake.
 *
 * Results: each block of C is one sgemm over the full reduction, and the blocks are
 * fixed sizes (never derived from the thread count), so C is the same for every thread
 * count. */
#ifndef QG_KERNELS_CPU_CPU_GEMM_H
#define QG_KERNELS_CPU_CPU_GEMM_H

#include <stddef.h>

/* C[M, N] = alpha op(A) op(B) + beta C, row-major, op(A) M x K, op(B) K x N (cblas_sgemm's
 * meaning of trans_a / trans_b, lda, ldb, ldc), in blocks of block_m x block_n of C
 * (block_n <= 0: all N columns). M, N, K > 0. */
void qg_cpu_sgemm_blocked(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
                          const float *B, int ldb, float beta, float *C, int ldc, int block_m, int block_n);

/* One line on the BLAS: OpenBLAS's build, the kernels it runs, and OPENBLAS_CORETYPE when
 * the environment chose them (it picks once, at load). The kernels matter: on an AVX-512
 * CPU with OPENBLAS_CORETYPE=Haswell the 7L384d eval runs 1.5x slower (README,
 * Performance). */
void qg_cpu_blas_describe(char *out, size_t cap);

#endif
