/* Row helpers the CPU forward and backward share, so both compute the same bits. */
#ifndef QG_KERNELS_CPU_ROWS_H
#define QG_KERNELS_CPU_ROWS_H

#include <math.h>

/* The backward's elementwise and column-reduction loops, compiled twice: for AVX2 where
 * the CPU has it (twice the lanes of SSE2 for their fp64 sums), else for the baseline.
 * Both run the same C operations in the same order, with no FMA (neither target has it,
 * and ISO C mode does not contract), so both give the same bits. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QG_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define QG_CPU_CLONES
#endif

/* 1 / sqrt(mean(x^2) + eps) of one row. The mean of squares is accumulated in double:
 * F.rms_norm computes in float32 with a pairwise/vectorised sum, and double keeps us
 * within its rounding either way. Eight interleaved partial sums (element j into lane
 * j % 8, combined in a fixed tree) let the compiler vectorise the loop without any
 * reassociation of its own: the result is the same on every machine. */
static inline float qg_cpu_rms_inv(const float *x, int n, float eps) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int j = 0;
  for (; j + 8 <= n; j += 8)
    for (int l = 0; l < 8; l++) s[l] += (double)x[j + l] * x[j + l];
  for (; j < n; j++) s[j & 7] += (double)x[j] * x[j];
  double ss = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
  return 1.0f / sqrtf((float)(ss / n) + eps);
}

#endif
