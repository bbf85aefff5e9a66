// The inner grids on the device: scale selection (rowwise pct / sd / absmax / search,
// Lloyd-Max RMS or searched, E8 per-stage and joint two-stage search) and rounding, plus
// round-to-nearest over a whole tensor and rowwise fake quantization.
//
// Scales: one thread block per (row, group). Work that is naturally parallel (candidate
// errors of a search, E8 encodes, the sort behind a percentile) is spread over the block;
// every sum the CPU takes sequentially is taken sequentially by one thread here, in the
// same order, so scales come out bit-identical to quant/rowwise.c, turbo.c (lloydmax) and
// e8_quantizer.c.
#include <stdlib.h>
#include <string.h>

#include "quant/cuda/cuda_quant_e8.h"

#define SCALE_THREADS 256 // limits on group sizes: QG_CUQ_PCT_MAX, QG_CUQ_E8_MAX (qg_cuq_grid_fits)

// ---- rowwise ------------------------------------------------------------------------------

// quant/rowwise.c group_err().
__device__ double rw_group_err(const qgq_dgrid &g, const double *x, const double *imp, int64_t n, double s) {
  double e = 0;
  for (int64_t j = 0; j < n; j++) {
    double v = rint(x[j] / s);
    v = v < g.qmin ? g.qmin : v > g.qmax ? g.qmax : v;
    double d = x[j] - v * s;
    e += (imp ? imp[j] : 1.0) * d * d;
  }
  return e;
}

// Block-wide max of |x| (max is exact in any order).
__device__ double block_absmax(const double *x, int64_t n, double *red) {
  double m = 0;
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) m = fmax(m, fabs(x[j]));
  red[threadIdx.x] = m;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w >>= 1) {
    if ((int)threadIdx.x < w) red[threadIdx.x] = fmax(red[threadIdx.x], red[threadIdx.x + w]);
    __syncthreads();
  }
  double r = red[0];
  __syncthreads();
  return r;
}

__device__ void rw_scale(const qgq_dgrid &g, const double *x, const double *imp, int64_t n, float *out,
                         unsigned char *sh, double *red) {
  double amax = block_absmax(x, n, red);
  if (g.clip == QG_CUQ_CLIP_ABSMAX) {
    if (threadIdx.x == 0) *out = qgq_rw_scale_for(g, amax);
    return;
  }
  if (g.clip == QG_CUQ_CLIP_SD) { // torch.std (unbiased), sums in the CPU's order
    if (threadIdx.x == 0) {
      double m = 0, v = 0;
      for (int64_t j = 0; j < n; j++) m += x[j];
      m /= (double)n;
      for (int64_t j = 0; j < n; j++) v += (x[j] - m) * (x[j] - m);
      v = n > 1 ? v / (double)(n - 1) : 0;
      *out = qgq_rw_scale_for(g, g.k * sqrt(v));
    }
    return;
  }
  if (g.clip == QG_CUQ_CLIP_PCT) { // sort |x| as floats, then ATen's interpolated quantile
    float *v = (float *)sh;
    int64_t P = 1;
    while (P < n) P <<= 1;
    for (int64_t i = threadIdx.x; i < P; i += blockDim.x) v[i] = i < n ? (float)fabs(x[i]) : INFINITY;
    __syncthreads();
    for (int64_t k = 2; k <= P; k <<= 1)
      for (int64_t j = k >> 1; j > 0; j >>= 1) {
        for (int64_t i = threadIdx.x; i < P; i += blockDim.x) {
          int64_t l = i ^ j;
          if (l > i) {
            float a = v[i], b = v[l];
            if ((a > b) == ((i & k) == 0)) v[i] = b, v[l] = a;
          }
        }
        __syncthreads();
      }
    if (threadIdx.x == 0) { // io/contest.c qg_quantile_f32 on the sorted values
      float qf = (float)(g.pct / 100.0);
      float rank = qf * (float)(n - 1);
      int64_t below = (int64_t)rank, above = (int64_t)ceilf(rank);
      if (above > n - 1) above = n - 1;
      if (below > n - 1) below = n - 1;
      float w = rank - (float)below, lo = v[below], hi = v[above];
      float q = fabsf(w) < 0.5f ? fmaf(w, hi - lo, lo) : fmaf(w - 1.0f, hi - lo, hi);
      *out = qgq_rw_scale_for(g, q);
    }
    return;
  }
  // search: candidate 0 is absmax, candidate i the ratio 1 - maxshrink * i / steps; one
  // thread per candidate, then the CPU's scan (first strict minimum wins: ties keep the
  // larger clip)
  double *e = (double *)sh;
  float *sc = (float *)(e + g.steps + 1);
  const double *w = g.objective == 1 ? imp : NULL;
  for (int t = threadIdx.x; t <= g.steps; t += blockDim.x) {
    double r = 1.0 - g.maxshrink * (double)t / (double)g.steps;
    float s = t == 0 ? qgq_rw_scale_for(g, amax) : qgq_rw_scale_for(g, r * amax);
    sc[t] = s;
    e[t] = rw_group_err(g, x, w, n, s);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float best = sc[0];
    double be = e[0];
    for (int t = 1; t <= g.steps; t++)
      if (e[t] < be) be = e[t], best = sc[t];
    *out = best;
  }
}

// ---- Lloyd-Max ------------------------------------------------------------------------------

__device__ double lm_err(const qgq_dgrid &g, const double *x, const double *imp, int64_t n, float s) {
  double e = 0;
  for (int64_t j = 0; j < n; j++) {
    double d = x[j] - (double)s * g.lm_cf[qgq_lm_index(g.lm_tf, g.levels, (float)(x[j] / s))];
    e += (imp ? imp[j] : 1.0) * d * d;
  }
  return e;
}

__device__ void lm_scale(const qgq_dgrid &g, const double *x, const double *imp, int64_t n, float *out,
                         unsigned char *sh) {
  __shared__ double rms_s;
  __shared__ float base_s;
  if (threadIdx.x == 0) {
    double ss = 0;
    for (int64_t j = 0; j < n; j++) ss += x[j] * x[j];
    rms_s = sqrt(ss / (double)n);
    float b = qgq_f16r(rms_s);
    base_s = b == 0.0f ? 5.9604644775390625e-08f : b;
  }
  __syncthreads();
  double rms = rms_s;
  float first = base_s;
  if (!(g.lm_search && rms > 0)) {
    if (threadIdx.x == 0) *out = first;
    return;
  }
  double *e = (double *)sh;
  float *sc = (float *)(e + g.steps + 1);
  const double *w = g.objective == 1 ? imp : NULL;
  for (int t = threadIdx.x; t <= g.steps; t += blockDim.x) {
    float s = t == 0 ? first : qgq_f16r(rms * g.mult0[t - 1]);
    sc[t] = s;
    e[t] = s == 0.0f ? 0.0 : lm_err(g, x, w, n, s);
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float best = sc[0];
    double be = e[0];
    for (int t = 1; t <= g.steps; t++)
      if (sc[t] != 0.0f && e[t] < be) be = e[t], best = sc[t];
    *out = best;
  }
}

// ---- E8 -------------------------------------------------------------------------------------

// Per-block scratch for the E8 searches (the group's fp64 error terms and residual).
struct e8_scratch {
  double *terms, *res;
  double *bcast; // one shared value handed from thread 0 to the block
};

// e8_quantizer.c stage_err(): encodes spread over the block, the sum by one thread in
// column order. Every thread calls it with the same s and gets the same result.
__device__ double e8_stage_err(const qgq_dgrid &g, int k, const double *x, const double *imp, int64_t n, float s,
                               e8_scratch &z) {
  for (int64_t v = threadIdx.x; v < n / 8; v += blockDim.x) {
    float q[8];
    qgq_code8(g.cb[k], x + 8 * v, s, q);
    for (int t = 0; t < 8; t++) {
      int64_t j = 8 * v + t;
      z.terms[j] = (imp ? imp[j] : 1.0) * (x[j] - q[t]) * (x[j] - q[t]);
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double e = 0;
    for (int64_t j = 0; j < n; j++) e += z.terms[j];
    *z.bcast = e;
  }
  __syncthreads();
  double e = *z.bcast;
  __syncthreads();
  return e;
}

// e8_quantizer.c stage_scale() with its multipliers from the host (search kind t).
__device__ float e8_stage_scale(const qgq_dgrid &g, int k, int t, const double *x, const double *imp, int64_t n,
                                int steps, double *err, e8_scratch &z) {
  if (threadIdx.x == 0) {
    double ss = 0;
    for (int64_t j = 0; j < n; j++) ss += x[j] * x[j];
    *z.bcast = sqrt(ss / (double)n) / g.unit[k];
  }
  __syncthreads();
  double base = *z.bcast;
  __syncthreads();
  const double *mult = t ? g.mult1 : g.mult0;
  float best = 5.9604644775390625e-08f;
  double be = INFINITY, bm = 0;
  for (int i = 0; base > 0 && i < steps; i++) {
    double m = mult[i];
    float s = qgq_f16r(base * m);
    if (s == 0.0f) continue;
    double e = e8_stage_err(g, k, x, imp, n, s, z);
    if (e < be) be = e, best = s, bm = m;
  }
  for (int round = 0; bm > 0 && steps > 1 && round < 2; round++) {
    double m0 = bm;
    for (int sgn = -1; sgn <= 1; sgn += 2) {
      double m = m0 * (sgn < 0 ? g.dn[t][round] : g.up[t][round]);
      float s = qgq_f16r(base * m);
      if (s == 0.0f || s == best) continue;
      double e = e8_stage_err(g, k, x, imp, n, s, z);
      if (e < be) be = e, best = s, bm = m;
    }
  }
  if (err) *err = be < INFINITY ? be : e8_stage_err(g, k, x, imp, n, best, z);
  return best;
}

__constant__ double e8_joint[QG_CUQ_E8_JOINT] = {0.94, 1.0, 1.06, 1.12, 1.19, 1.26};

__device__ void e8_scale(const qgq_dgrid &g, int64_t r, int64_t gi, const double *x, const double *imp, int64_t n,
                         e8_scratch &z) {
  const double *w = g.objective == 1 ? imp : NULL;
  float s1 = e8_stage_scale(g, 0, 0, x, w, n, g.steps, NULL, z);
  float s2 = 0.0f;
  if (g.nstages == 2) {
    float solo = s1;
    double best = INFINITY;
    for (int f = 0; f < QG_CUQ_E8_JOINT; f++) {
      float a = qgq_f16r(solo * e8_joint[f]), b;
      double e;
      if (a == 0.0f) continue;
      for (int64_t v = threadIdx.x; v < n / 8; v += blockDim.x) { // residual after stage 1
        float q[8];
        qgq_code8(g.cb[0], x + 8 * v, a, q);
        for (int t = 0; t < 8; t++) z.res[8 * v + t] = x[8 * v + t] - q[t];
      }
      __syncthreads();
      b = e8_stage_scale(g, 1, 1, z.res, w, n, g.steps2, &e, z);
      if (e < best) best = e, s1 = a, s2 = b;
    }
  }
  if (threadIdx.x == 0) {
    g.scales[r * g.ngroups + gi] = s1;
    if (g.nstages == 2) g.scales[(g.rows + r) * g.ngroups + gi] = s2;
  }
}

// ---- the scale kernel -------------------------------------------------------------------------

__global__ void __launch_bounds__(SCALE_THREADS) k_scales(qgq_dgrid g, const double *X, int64_t ldx, int64_t gi0,
                                                          const double *imp) {
  extern __shared__ double shd[];
  __shared__ double red[SCALE_THREADS];
  __shared__ double bcast;
  int64_t r = blockIdx.x, gi = gi0 + blockIdx.y, n = g.group;
  const double *x = X + r * ldx + (int64_t)blockIdx.y * n;
  const double *w = imp ? imp + (int64_t)blockIdx.y * n : NULL;
  unsigned char *sh = (unsigned char *)shd;
  if (g.kind == QG_CUQ_ROWWISE) {
    rw_scale(g, x, w, n, &g.scales[r * g.ngroups + gi], sh, red);
  } else if (g.kind == QG_CUQ_LLOYDMAX) {
    lm_scale(g, x, w, n, &g.scales[r * g.ngroups + gi], sh);
  } else {
    e8_scratch z = {shd, shd + n, &bcast};
    e8_scale(g, r, gi, x, w, n, z);
  }
}

static size_t scale_shmem(const qgq_dgrid &g) {
  if (g.kind == QG_CUQ_E8) return 2 * sizeof(double) * (size_t)g.group;
  size_t search = (sizeof(double) + sizeof(float)) * (size_t)(g.steps + 1);
  if (g.kind == QG_CUQ_LLOYDMAX) return search;
  if (g.clip == QG_CUQ_CLIP_PCT) {
    size_t P = 1;
    while ((int64_t)P < g.group) P <<= 1;
    return sizeof(float) * P;
  }
  return g.clip == QG_CUQ_CLIP_SEARCH ? search : 0;
}

qg_status qgq_set_scales(const qgq_state *st, const double *X, int64_t ldx, int64_t gi0, int64_t ng,
                         const double *imp) {
  const qgq_dgrid &g = st->d;
  if (ng <= 0) return QG_OK;
  for (int64_t done = 0; done < ng; done += 65535) { // gridDim.y is at most 65535
    int64_t part = ng - done < 65535 ? ng - done : 65535;
    dim3 grid((unsigned)g.rows, (unsigned)part);
    k_scales<<<grid, SCALE_THREADS, scale_shmem(g)>>>(g, X + done * g.group, ldx, gi0 + done,
                                                      imp ? imp + done * g.group : NULL);
    QG_TRY(qgq_launched("k_scales"));
  }
  return QG_OK;
}

// ---- rounding a whole tensor ------------------------------------------------------------------

__global__ void k_round_all(qgq_dgrid g, double *X) {
  int64_t per_row = g.width == 8 ? g.nvec : g.cols, total = g.rows * per_row;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i / per_row, c = i % per_row;
    if (g.width == 8) {
      double *x = X + r * g.cols + 8 * c, q[8];
      qgq_round8(g, r, 8 * c, x, q, true);
      for (int t = 0; t < 8; t++) x[t] = q[t];
    } else {
      double *x = X + r * g.cols + c;
      *x = qgq_round1(g, r, c, *x, true);
    }
  }
}

qg_status qgq_round_all(const qgq_state *st, double *X) {
  int64_t n = st->d.rows * (st->d.width == 8 ? st->d.nvec : st->d.cols);
  int64_t b = (n + 255) / 256;
  k_round_all<<<(unsigned)(b < 1 ? 1 : b > 65535 ? 65535 : b), 256>>>(st->d, X);
  return qgq_launched("k_round_all");
}

__global__ void k_f32_to_f64(const float *a, double *b, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    b[i] = a[i];
}

// Fake quantization writes what rowwise's dequantize computes: float(code + qmin) * scale.
__global__ void k_dequant_rowwise(qgq_dgrid g, float *out) {
  int64_t total = g.rows * g.cols;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = i / g.cols, c = i % g.cols;
    out[i] = (float)((int)g.codes[i] + g.qmin) * g.scales[r * g.ngroups + c / g.group];
  }
}

// Scales from W (optionally importance-weighted), then every column rounded.
static qg_status rtn_device(const qgq_state *st, double *dX, const double *dimp) {
  QG_TRY(qgq_set_scales(st, dX, st->d.cols, 0, st->d.ngroups, dimp));
  return qgq_round_all(st, dX);
}

extern "C" qg_status qg_cuq_rtn(const qg_cuq_grid *g, const float *W, int64_t rows, int64_t cols, const double *imp,
                                qg_cuq_result *out) {
  memset(out, 0, sizeof *out);
  QG_TRY(qg_cuq_grid_fits(g, rows, cols));
  qgq_state st;
  double *dX = NULL, *dimp = NULL, *hx = (double *)malloc(sizeof(double) * (size_t)(rows * cols));
  if (!hx) return qg_fail(QG_ERR_NOMEM, "out of memory (%lld x %lld)", (long long)rows, (long long)cols);
  for (int64_t i = 0; i < rows * cols; i++) hx[i] = W[i];
  qg_status s = qgq_state_init(&st, g, rows, cols);
  if (!s) s = qg_cuq_alloc((void **)&dX, sizeof(double) * (size_t)(rows * cols));
  if (!s) s = qg_cuq_upload(dX, hx, sizeof(double) * (size_t)(rows * cols));
  if (!s && imp) s = qg_cuq_alloc((void **)&dimp, sizeof(double) * (size_t)cols);
  if (!s && imp) s = qg_cuq_upload(dimp, imp, sizeof(double) * (size_t)cols);
  if (!s) s = rtn_device(&st, dX, dimp);
  if (!s) s = qgq_state_download(&st, out);
  if (s) qg_cuq_result_free(out);
  qgq_state_free(&st);
  qg_cuq_free(dX), qg_cuq_free(dimp);
  free(hx);
  return s;
}

extern "C" qg_status qg_cuq_fakequant(const qg_cuq_grid *g, const float *dW, float *dOut, int64_t rows,
                                      int64_t cols) {
  if (g->kind != QG_CUQ_ROWWISE) return qg_fail(QG_ERR_UNSUPPORTED, "cuda fake quantization is rowwise only");
  QG_TRY(qg_cuq_grid_fits(g, rows, cols));
  qgq_state st;
  double *dX = NULL;
  qg_status s = qgq_state_init(&st, g, rows, cols);
  if (!s) s = qg_cuq_alloc((void **)&dX, sizeof(double) * (size_t)(rows * cols));
  if (!s) {
    int64_t b = (rows * cols + 255) / 256;
    k_f32_to_f64<<<(unsigned)(b > 65535 ? 65535 : b), 256>>>(dW, dX, rows * cols);
    s = qgq_launched("k_f32_to_f64");
  }
  if (!s) s = rtn_device(&st, dX, NULL);
  if (!s) {
    int64_t b = (rows * cols + 255) / 256;
    k_dequant_rowwise<<<(unsigned)(b > 65535 ? 65535 : b), 256>>>(st.d, dOut);
    s = qgq_launched("k_dequant_rowwise");
  }
  qgq_state_free(&st);
  qg_cuq_free(dX);
  return s;
}
