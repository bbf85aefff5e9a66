// The CUDA backend's row-wise and elementwise ops: embed, RMSNorm, RoPE, head_scale,
// relu^p, resid_mix, add_scaled, affine, and the fp32 -> bf16 rounding for matmul.
//
// Exactness against the CPU twin: the CPU code is C11 without FP contraction (and x86-64
// without -march has no FMA), so a*b + c is two roundings there. nvcc would fuse it into
// one FMA; the explicit __fmul_rn / __fadd_rn below forbid that, which makes these ops
// bit-identical to kernels/cpu/cpu_ops.c rather than merely close. RoPE's cos/sin table is
// computed on the host by the very expressions the CPU op uses (float32 angles, libm's
// cosf/sinf), so its rotations are bit-identical too.
#include <cuda_bf16.h>
#include <math.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_common.h"
#include "kernels/rope_table.h"

// Threads per block for a row of d columns: a whole number of warps, at most 256.
static int row_threads(int d) {
  int t = (d + 31) / 32 * 32;
  return t < 32 ? 32 : t > 256 ? 256 : t;
}

// Blocks for a loop over rows, one row per block at a time.
static unsigned row_blocks(int64_t rows) {
  int64_t cap = 65535;
  return (unsigned)(rows < 1 ? 1 : rows < cap ? rows : cap);
}

// ---- embed ---------------------------------------------------------------------------

__global__ void k_embed(float *x, const float *emb, const int32_t *tok, int64_t n, int d) {
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const float *src = emb + (int64_t)tok[r] * d;
    float *dst = x + r * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) dst[c] = src[c];
  }
}

qg_status qg_cu_embed(float *x, const float *emb, const int32_t *tok, int64_t n, int d) {
  if (n <= 0 || d <= 0) return QG_OK;
  k_embed<<<row_blocks(n), row_threads(d)>>>(x, emb, tok, n, d);
  return qg_cu_launched("k_embed");
}

// ---- RMSNorm: one warp per row ---------------------------------------------------------

// The sum of squares is accumulated in double, as the CPU twin does, and the scale
// 1/sqrt(mean + eps) rounded through the same float operations (IEEE sqrtf and division:
// this file is never built with --use_fast_math).
__global__ void k_rmsnorm(float *y, const float *x, int64_t rows, int dim, float eps) {
  int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (int64_t r = (int64_t)blockIdx.x * warps + (threadIdx.x >> 5); r < rows; r += (int64_t)gridDim.x * warps) {
    const float *xr = x + r * dim;
    double ss = 0;
    for (int j = lane; j < dim; j += 32) ss += (double)xr[j] * xr[j];
    for (int off = 16; off; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    float inv = 1.0f / sqrtf((float)(ss / dim) + eps);
    float *yr = y + r * dim;
    // in place is safe: each lane rewrites only the elements it read
    for (int j = lane; j < dim; j += 32) yr[j] = __fmul_rn(xr[j], inv);
  }
}

qg_status qg_cu_rmsnorm(float *y, const float *x, int64_t rows, int dim, float eps) {
  if (rows <= 0 || dim <= 0) return QG_OK;
  int64_t blocks = (rows + 7) / 8;
  k_rmsnorm<<<(unsigned)(blocks < 65535 ? blocks : 65535), 256>>>(y, x, rows, dim, eps);
  return qg_cu_launched("k_rmsnorm");
}

// ---- RoPE ----------------------------------------------------------------------------

// The last table built, kept on the device: every layer's q and k use the same (T, hd,
// base), so it is computed and uploaded once per shape, not once per call.
static int rope_T = -1, rope_hd = -1;
static float rope_base = 0;
static float *rope_tab; // [2][T][hd/2]: cos then sin

qg_status qg_cu_rope_table(int T, int hd, float base, const float **tab) {
  if (rope_tab && T == rope_T && hd == rope_hd && base == rope_base) {
    *tab = rope_tab;
    return QG_OK;
  }
  int half = hd / 2;
  size_t n = (size_t)T * half * 2;
  float *h = (float *)malloc(sizeof(float) * (n ? n : 1));
  if (!h) return qg_fail(QG_ERR_NOMEM, "cuda rope: out of host memory for the table");
  qg_rope_table_fill(h, T, hd, base); // the CPU's table, uploaded
  void *d = NULL;
  qg_status st = qg_cu_scratch(QG_SCRATCH_ROPE, sizeof(float) * n, &d);
  // the synchronous copy from pageable memory waits for earlier work on the default
  // stream, so no kernel still reading the previous table sees it change
  if (!st && n) {
    cudaError_t e = cudaMemcpy(d, h, sizeof(float) * n, cudaMemcpyHostToDevice);
    if (e != cudaSuccess) st = qg_cu_fail(e, "cudaMemcpy(rope table)");
  }
  free(h);
  if (st) {
    rope_tab = NULL;
    return st;
  }
  rope_tab = (float *)d;
  rope_T = T;
  rope_hd = hd;
  rope_base = base;
  *tab = rope_tab;
  return QG_OK;
}

// One thread per rotated pair (row, head, j < hd/2).
__global__ void k_rope(float *x, const float *tab, int64_t pairs, int T, int H, int hd) {
  int half = hd / 2;
  const float *cs = tab, *sn = tab + (int64_t)T * half;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < pairs; i += (int64_t)gridDim.x * blockDim.x) {
    int j = (int)(i % half);
    int64_t rh = i / half; // row * H + head
    int t = (int)((rh / H) % T);
    float *v = x + rh * hd;
    float c = cs[(int64_t)t * half + j], s = sn[(int64_t)t * half + j];
    float x1 = v[j], x2 = v[j + half];
    v[j] = __fadd_rn(__fmul_rn(x1, c), __fmul_rn(x2, s));
    v[j + half] = __fadd_rn(__fmul_rn(x1, -s), __fmul_rn(x2, c));
  }
}

qg_status qg_cu_rope(float *x, int64_t B, int T, int H, int hd, float base) {
  int64_t pairs = B * T * H * (int64_t)(hd / 2);
  if (pairs <= 0) return QG_OK;
  const float *tab = NULL;
  QG_TRY(qg_cu_rope_table(T, hd, base, &tab));
  k_rope<<<qg_cu_blocks(pairs, 256), 256>>>(x, tab, pairs, T, H, hd);
  return qg_cu_launched("k_rope");
}

// ---- per-channel ops over [rows, d]: one row per block at a time -----------------------

__global__ void k_head_scale(float *x, int64_t rows, int H, int hd, const float *gain) {
  int d = H * hd;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
    for (int c = threadIdx.x; c < d; c += blockDim.x) x[r * d + c] = __fmul_rn(x[r * d + c], gain[c / hd]);
}

qg_status qg_cu_head_scale(float *x, int64_t rows, int H, int hd, const float *gain) {
  if (rows <= 0 || H * hd <= 0) return QG_OK;
  k_head_scale<<<row_blocks(rows), row_threads(H * hd)>>>(x, rows, H, hd, gain);
  return qg_cu_launched("k_head_scale");
}

__global__ void k_resid_mix(float *x, const float *x0, const float *mix, int64_t rows, int d) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
      int64_t i = r * d + c;
      x[i] = __fadd_rn(__fmul_rn(mix[c], x[i]), __fmul_rn(mix[d + c], x0[i]));
    }
}

qg_status qg_cu_resid_mix(float *x, const float *x0, const float *mix, int64_t rows, int d) {
  if (rows <= 0 || d <= 0) return QG_OK;
  k_resid_mix<<<row_blocks(rows), row_threads(d)>>>(x, x0, mix, rows, d);
  return qg_cu_launched("k_resid_mix");
}

__global__ void k_add_scaled(float *x, const float *y, const float *s, int64_t rows, int d) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
      int64_t i = r * d + c;
      x[i] = __fadd_rn(x[i], __fmul_rn(s[c], y[i]));
    }
}

qg_status qg_cu_add_scaled(float *x, const float *y, const float *s, int64_t rows, int d) {
  if (rows <= 0 || d <= 0) return QG_OK;
  k_add_scaled<<<row_blocks(rows), row_threads(d)>>>(x, y, s, rows, d);
  return qg_cu_launched("k_add_scaled");
}

__global__ void k_affine(float *x, const float *scale, const float *shift, int64_t rows, int d) {
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x)
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
      int64_t i = r * d + c;
      x[i] = __fadd_rn(__fmul_rn(x[i], scale[c]), shift[c]);
    }
}

qg_status qg_cu_affine(float *x, const float *scale, const float *shift, int64_t rows, int d) {
  if (rows <= 0 || d <= 0) return QG_OK;
  k_affine<<<row_blocks(rows), row_threads(d)>>>(x, scale, shift, rows, d);
  return qg_cu_launched("k_affine");
}

// ---- flat elementwise ------------------------------------------------------------------

// relu(x)^p; p = 2 (the contest's relu^2) as a product, as the CPU twin does. For other p,
// CUDA's powf is within 2 ulp of libm's.
__global__ void k_relu_pow(float *x, int64_t n, float p) {
  int64_t step = (int64_t)gridDim.x * blockDim.x;
  if (p == 2.0f) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {
      float r = x[i] > 0.0f ? x[i] : 0.0f;
      x[i] = __fmul_rn(r, r);
    }
  } else {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step)
      x[i] = x[i] > 0.0f ? powf(x[i], p) : 0.0f;
  }
}

qg_status qg_cu_relu_pow(float *x, int64_t n, float p) {
  if (n <= 0) return QG_OK;
  k_relu_pow<<<qg_cu_blocks(n, 256), 256>>>(x, n, p);
  return qg_cu_launched("k_relu_pow");
}

__global__ void k_to_bf16(__nv_bfloat16 *dst, const float *src, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}

qg_status qg_cu_to_bf16(void *dst, const float *src, int64_t n) {
  if (n <= 0) return QG_OK;
  k_to_bf16<<<qg_cu_blocks(n, 256), 256>>>((__nv_bfloat16 *)dst, src, n);
  return qg_cu_launched("k_to_bf16");
}
