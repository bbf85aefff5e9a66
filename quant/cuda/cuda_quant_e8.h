// E8 nearest point and codebook search on the device: quant/e8_core.h, the CPU's own
// code, compiled as __device__ functions (one 8-vector per thread, one pattern per search
// step). With --fmad=false (this folder's rule) the float operations are the CPU's, so
// indices equal the CPU's. C++ only; included by the .cu files that round with E8 (no
// separate compilation in this build).
#ifndef QG_QUANT_CUDA_QUANT_E8_H
#define QG_QUANT_CUDA_QUANT_E8_H

#include "quant/cuda/cuda_quant_dev.h"

#define QG_E8_FN __device__ inline
#define QG_E8_POPC __popc
#define QG_E8_CHUNK 1
#include "quant/e8_core.h"

__device__ inline void qgq_e8_nearest(const float *x, float *y) { qg_e8c_e8_nearest(x, y); }

// qg_e8_encode(): x sanitised (non-finite -> 0), the lattice fast path, else the search.
__device__ inline uint32_t qgq_e8_encode(const qgq_dcb &cb, const float *x, float *d2) {
  return qg_e8c_encode(&cb, x, d2);
}

// e8_quantizer.c code8(): 8 values x / s coded, s * entry into q (the float product
// dequantize computes); returns the index.
__device__ inline uint32_t qgq_code8(const qgq_dcb &cb, const double *x, float s, float *q) {
  float v[8], d2;
  for (int j = 0; j < 8; j++) v[j] = (float)(x[j] / s);
  uint32_t i = qgq_e8_encode(cb, v, &d2);
  const int8_t *e = cb.entries + (size_t)i * 8;
  for (int j = 0; j < 8; j++) q[j] = s * (0.25f * (float)e[j]);
  return i;
}

// ---- one rounding step of the inner grids (the CPU grids' round()) ---------------------

// Rowwise or Lloyd-Max: value x of original column col in row r -> its dequantized value;
// the code is stored when `store` (one lane of a warp stores, the others only compute).
__device__ inline double qgq_round1(const qgq_dgrid &g, int64_t r, int64_t col, double x, bool store) {
  float s = g.scales[r * g.ngroups + col / g.group];
  if (g.kind == QG_CUQ_ROWWISE) {
    double ds = s, v = rint(x / ds);
    v = v < g.qmin ? g.qmin : v > g.qmax ? g.qmax : v;
    if (store) g.codes[r * g.cols + col] = (uint32_t)((int)v - g.qmin);
    return v * ds;
  }
  int i = qgq_lm_index(g.lm_tf, g.levels, (float)(x / s));
  if (store) g.codes[r * g.cols + col] = (uint32_t)i;
  return (double)(s * g.lm_cf[i]);
}

// E8 (every stage, residual after residual): columns col .. col+7 of row r.
__device__ inline void qgq_round8(const qgq_dgrid &g, int64_t r, int64_t col, const double *x, double *q, bool store) {
  int64_t gi = col / g.group, vi = col / 8;
  double res[8];
  float acc[8], qk[8];
  for (int t = 0; t < 8; t++) res[t] = x[t], acc[t] = 0.0f;
  for (int k = 0; k < g.nstages; k++) {
    float s = g.scales[(k * g.rows + r) * g.ngroups + gi];
    uint32_t c = qgq_code8(g.cb[k], res, s, qk);
    if (store) g.codes[(k * g.rows + r) * g.nvec + vi] = c;
    for (int t = 0; t < 8; t++) acc[t] += qk[t], res[t] -= qk[t];
  }
  for (int t = 0; t < 8; t++) q[t] = acc[t];
}

#endif
