// E8 nearest point and codebook search on the device: a line-for-line port of quant/e8.c
// (qg_d8_nearest, qg_e8_nearest, qg_e8_encode, its pattern search), one 8-vector per
// thread. Same float operations in the same order (the file is compiled with
// --fmad=false), same tie-breaks (first minimum), so indices equal the CPU's. C++ only;
// included by the .cu files that round with E8 (no separate compilation in this build).
#ifndef QG_QUANT_CUDA_QUANT_E8_H
#define QG_QUANT_CUDA_QUANT_E8_H

#include "quant/cuda/cuda_quant_dev.h"

__device__ __forceinline__ float qgq_clampf(float v) {
  if (!(v == v)) return 0.0f;
  return v > 1048576.0f ? 1048576.0f : v < -1048576.0f ? -1048576.0f : v;
}

__device__ inline void qgq_d8_nearest(const float *x, float *y) {
  long long sum = 0;
  int worst = 0;
  float wd = -1.0f;
  for (int j = 0; j < 8; j++) {
    float v = qgq_clampf(x[j]);
    float f = rintf(v);
    y[j] = f;
    sum += (long long)f;
    float d = fabsf(v - f);
    if (d > wd) wd = d, worst = j;
  }
  if (sum & 1) y[worst] += qgq_clampf(x[worst]) >= y[worst] ? 1.0f : -1.0f;
}

__device__ inline void qgq_half_nearest(const float *x, float *y) {
  float s[8];
  for (int j = 0; j < 8; j++) s[j] = x[j] - 0.5f;
  qgq_d8_nearest(s, y);
  for (int j = 0; j < 8; j++) y[j] += 0.5f;
}

__device__ inline float qgq_dist2(const float *a, const float *b) {
  float s = 0;
  for (int j = 0; j < 8; j++) s += (a[j] - b[j]) * (a[j] - b[j]);
  return s;
}

__device__ inline void qgq_e8_nearest(const float *x, float *y) {
  float h[8];
  qgq_d8_nearest(x, y);
  qgq_half_nearest(x, h);
  if (qgq_dist2(x, h) < qgq_dist2(x, y))
    for (int j = 0; j < 8; j++) y[j] = h[j];
}

__device__ inline int qgq_find_pattern(const qgq_dcb &cb, uint32_t key) {
  int lo = 0, hi = cb.n_pat - 1;
  while (lo <= hi) {
    int mid = (lo + hi) >> 1;
    if (cb.keys[mid] == key) return cb.key_pat[mid];
    if (cb.keys[mid] < key) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

__device__ inline uint32_t qgq_index_of(const qgq_dcb &cb, int p, unsigned neg, int sh) {
  uint32_t code;
  if (cb.pat_half[p]) {
    code = (neg >> 1) & 127;
  } else {
    code = 0;
    int b = 0;
    for (int j = 0; j < 8; j++)
      if (cb.pat[p * 8 + j]) code |= ((neg >> j) & 1u) << b++;
  }
  if (cb.kind == QG_E8CB_E8P) return ((uint32_t)p << 8) | (code << 1) | (uint32_t)sh;
  return cb.pat_off[p] + code;
}

__device__ inline int qgq_lookup_point(const qgq_dcb &cb, const float *z, unsigned *neg) {
  uint32_t key = 0;
  *neg = 0;
  for (int j = 0; j < 8; j++) {
    float a = fabsf(2.0f * z[j]);
    if (a > 15.0f) return -1;
    key |= (uint32_t)(uint8_t)a << (4 * j);
    if (z[j] < 0) *neg |= 1u << j;
  }
  return qgq_find_pattern(cb, key);
}

// quant/e8.c search(): one pass over the patterns (per pattern, the coordinates in order
// 0..7 exactly as the CPU's chunked loop accumulates them).
__device__ inline float qgq_search(const qgq_dcb &cb, const float *y, int *pbest, unsigned *negbest) {
  float ay[8], y2 = 0;
  unsigned neg = 0;
  for (int j = 0; j < 8; j++) {
    ay[j] = fabsf(y[j]);
    y2 += y[j] * y[j];
    if (y[j] < 0) neg |= 1u << j;
  }
  uint8_t negpar = (uint8_t)(__popc(neg) & 1);
  float best = INFINITY;
  int bp = 0;
  for (int p = 0; p < cb.n_pat; p++) {
    float dot = 0.0f, mn = INFINITY;
    for (int j = 0; j < 8; j++) {
      float t = cb.pat_at[j * cb.n_pad + p] * ay[j];
      dot += t;
      mn = t < mn ? t : mn;
    }
    float score = cb.pat_norm[p] - 2.0f * dot + ((cb.pat_half[p] & (cb.pat_par[p] ^ negpar)) ? 4.0f * mn : 0.0f);
    if (score < best) best = score, bp = p;
  }
  unsigned n = neg;
  if (cb.pat_half[bp] && cb.pat_par[bp] != negpar) {
    int mj = 0;
    float mv = INFINITY;
    for (int j = 0; j < 8; j++) {
      float t = cb.pat_at[j * cb.n_pad + bp] * ay[j];
      if (t < mv) mv = t, mj = j;
    }
    n ^= 1u << mj;
  }
  if (!cb.pat_half[bp])
    for (int j = 0; j < 8; j++)
      if (!cb.pat[bp * 8 + j]) n &= ~(1u << j);
  *pbest = bp;
  *negbest = n;
  float d = y2 + best;
  return d > 0 ? d : 0;
}

__device__ inline uint32_t qgq_encode_search(const qgq_dcb &cb, const float *v, float *d2) {
  int p;
  unsigned neg;
  if (cb.kind == QG_E8CB_BALL) {
    float d = qgq_search(cb, v, &p, &neg);
    *d2 = d;
    return qgq_index_of(cb, p, neg, 0);
  }
  uint32_t best = 0;
  float bd = INFINITY;
  for (int sh = 0; sh < 2; sh++) {
    float y[8], t = sh ? 0.25f : -0.25f;
    for (int j = 0; j < 8; j++) y[j] = v[j] - t;
    float d = qgq_search(cb, y, &p, &neg);
    if (d < bd) bd = d, best = qgq_index_of(cb, p, neg, sh);
  }
  *d2 = bd;
  return best;
}

// qg_e8_encode(): x sanitised (non-finite -> 0), the lattice fast path, else the search.
__device__ inline uint32_t qgq_e8_encode(const qgq_dcb &cb, const float *x, float *d2) {
  float v[8], z[8];
  for (int j = 0; j < 8; j++) v[j] = isfinite(x[j]) ? x[j] : 0.0f;
  unsigned neg;
  int p;
  if (cb.kind == QG_E8CB_BALL && cb.n_pat <= 64) return qgq_encode_search(cb, v, d2);
  if (cb.kind == QG_E8CB_BALL) {
    qgq_e8_nearest(v, z);
    if ((p = qgq_lookup_point(cb, z, &neg)) >= 0) {
      *d2 = qgq_dist2(v, z);
      return qgq_index_of(cb, p, neg, 0);
    }
    *d2 = qgq_search(cb, v, &p, &neg);
    return qgq_index_of(cb, p, neg, 0);
  }
  float y[2][8], dl[2];
  int pp[2];
  unsigned nn[2];
  for (int sh = 0; sh < 2; sh++) {
    float t = sh ? 0.25f : -0.25f;
    for (int j = 0; j < 8; j++) y[sh][j] = v[j] - t;
    qgq_half_nearest(y[sh], z);
    dl[sh] = qgq_dist2(y[sh], z);
    pp[sh] = qgq_lookup_point(cb, z, &nn[sh]);
  }
  uint32_t best = 0;
  float bd = INFINITY;
  int first = dl[1] < dl[0];
  for (int k = 0; k < 2; k++) {
    int sh = k ? !first : first;
    if (dl[sh] >= bd) continue;
    float d = dl[sh];
    if (pp[sh] < 0) d = qgq_search(cb, y[sh], &pp[sh], &nn[sh]);
    if (d < bd) bd = d, best = qgq_index_of(cb, pp[sh], nn[sh], sh);
  }
  *d2 = bd;
  return best;
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
