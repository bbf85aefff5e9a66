/* The attention rows' softmax numerator, shared by the forward pass and the backward
 * pass that recomputes it, so both see the same probabilities to the bit. */
#ifndef QG_KERNELS_CPU_SOFTMAX_H
#define QG_KERNELS_CPU_SOFTMAX_H

#include <math.h>

/* row[0..n) <- exp(row - max row); returns 1 / their sum. */
static inline float qg_cpu_softmax_exp(float *row, int n) {
  float mx = -INFINITY;
  for (int s = 0; s < n; s++) mx = row[s] > mx ? row[s] : mx;
  float sum = 0.0f;
  for (int s = 0; s < n; s++) {
    row[s] = expf(row[s] - mx);
    sum += row[s];
  }
  return 1.0f / sum;
}

#endif
