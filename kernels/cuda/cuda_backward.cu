// The CUDA backend's backward ops except attention (cuda_backward_attention.cu): the
// embedding scatter, RMSNorm, the two matrix-product gradients (cuBLAS), RoPE's inverse
// rotation, relu^p, the per-channel ops (head_scale, resid_mix, add_scaled, affine) with
// their parameter-gradient column sums, and the fused softcap + cross-entropy + gradient.
// Semantics: kernels/ops.h; CPU twins: kernels/cpu/cpu_ops_bwd.c.
//
// Rounding: like cuda_elementwise.cu, the elementwise arithmetic uses __fmul_rn /
// __fadd_rn / __fsub_rn so nvcc cannot fuse a*b + c into one FMA; where the CPU twin is a
// plain float expression the GPU result is then the same bits. Reductions differ from the
// CPU only in summation order (both accumulate in double).
#include <cub/cub.cuh>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backward.h"
#include "kernels/cuda/cuda_common.h"

// ---- private scratch -------------------------------------------------------------------

static void *bws_p[QG_BWS_COUNT];
static size_t bws_n[QG_BWS_COUNT];

qg_status qg_cu_bw_scratch(int slot, size_t bytes, void **p) {
  if (bytes > bws_n[slot]) {
    if (bws_p[slot]) QG_CU(cudaFree(bws_p[slot])); // cudaFree waits: nothing in flight still reads it
    bws_p[slot] = NULL;
    bws_n[slot] = 0;
    size_t want = bytes + bytes / 4;
    QG_CU(cudaMalloc(&bws_p[slot], want ? want : 16));
    bws_n[slot] = want;
  }
  *p = bws_p[slot];
  return QG_OK;
}

// ---- embed: stable sort of positions by token, then in-order sums per token -------------

__global__ void k_iota(int32_t *v, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    v[i] = (int32_t)i;
}

// A block per sorted position that starts a run of equal tokens: its threads own columns
// and add the run's rows in position order (the radix sort is stable), starting from the
// existing gradient row, which is exactly the CPU's `dst[j] += src[j]` sequence.
__global__ void k_embed_runs(float *demb, const float *dx, const int32_t *keys, const int32_t *pos, int64_t n, int d) {
  for (int64_t j = blockIdx.x; j < n; j += gridDim.x) {
    int32_t t = keys[j];
    if (j > 0 && keys[j - 1] == t) continue; // uniform over the block: not a run start
    int64_t e = j + 1;
    while (e < n && keys[e] == t) e++;
    float *dst = demb + (int64_t)t * d;
    for (int c = threadIdx.x; c < d; c += blockDim.x) {
      float acc = dst[c];
      for (int64_t s = j; s < e; s++) acc = __fadd_rn(acc, dx[(int64_t)pos[s] * d + c]);
      dst[c] = acc;
    }
  }
}

qg_status qg_cu_embed_bwd(const qg_ops *o, float *demb, const float *dx, const int32_t *tok, int64_t n, int d) {
  (void)o;
  if (n <= 0 || d <= 0) return QG_OK;
  if (n > INT32_MAX) return qg_fail(QG_ERR_UNSUPPORTED, "cuda embed_bwd: %lld positions exceed int range", (long long)n);
  void *keys = NULL, *vin = NULL, *vout = NULL, *tmp = NULL;
  size_t tmp_bytes = 0;
  QG_TRY(qg_cu_bw_scratch(QG_BWS_SORT_KEYS, sizeof(int32_t) * (size_t)n, &keys));
  QG_TRY(qg_cu_bw_scratch(QG_BWS_SORT_VALS, sizeof(int32_t) * 2 * (size_t)n, &vin));
  vout = (int32_t *)vin + n;
  QG_CU(cub::DeviceRadixSort::SortPairs(tmp, tmp_bytes, tok, (int32_t *)keys, (const int32_t *)vin, (int32_t *)vout,
                                        (int)n, 0, 31, (cudaStream_t)0));
  QG_TRY(qg_cu_bw_scratch(QG_BWS_SORT_TMP, tmp_bytes, &tmp));
  k_iota<<<qg_cu_blocks(n, 256), 256>>>((int32_t *)vin, n);
  QG_TRY(qg_cu_launched("k_iota"));
  // ids are non-negative int32 (checked < vocab upstream): 31 key bits cover them
  QG_CU(cub::DeviceRadixSort::SortPairs(tmp, tmp_bytes, tok, (int32_t *)keys, (const int32_t *)vin, (int32_t *)vout,
                                        (int)n, 0, 31, (cudaStream_t)0));
  int threads = d >= 256 ? 256 : (d + 31) / 32 * 32;
  k_embed_runs<<<(unsigned)(n < 65535 ? n : 65535), threads>>>(demb, dx, (const int32_t *)keys,
                                                               (const int32_t *)vout, n, d);
  return qg_cu_launched("k_embed_runs");
}

// ---- RMSNorm: one warp per row -----------------------------------------------------------

__global__ void k_rmsnorm_bwd(float *dx, const float *dy, const float *x, int64_t rows, int dim, float eps,
                              int accumulate) {
  int lane = threadIdx.x & 31, warps = blockDim.x >> 5;
  for (int64_t r = (int64_t)blockIdx.x * warps + (threadIdx.x >> 5); r < rows; r += (int64_t)gridDim.x * warps) {
    const float *xr = x + r * dim, *gr = dy + r * dim;
    double ss = 0, dot = 0;
    for (int j = lane; j < dim; j += 32) ss += (double)xr[j] * xr[j];
    for (int off = 16; off; off >>= 1) ss += __shfl_xor_sync(0xffffffffu, ss, off);
    float inv = 1.0f / sqrtf((float)(ss / dim) + eps); // the forward's 1/rms, same roundings
    for (int j = lane; j < dim; j += 32) dot += (double)gr[j] * ((double)xr[j] * inv);
    for (int off = 16; off; off >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, off);
    float m = (float)(dot / dim);
    float *dr = dx + r * dim;
    // dx may be dy: each lane reads its own elements before writing them
    for (int j = lane; j < dim; j += 32) {
      float v = __fmul_rn(inv, __fsub_rn(gr[j], __fmul_rn(__fmul_rn(xr[j], inv), m)));
      dr[j] = accumulate ? __fadd_rn(dr[j], v) : v;
    }
  }
}

qg_status qg_cu_rmsnorm_bwd(const qg_ops *o, float *dx, const float *dy, const float *x, int64_t rows, int dim,
                            float eps, int accumulate) {
  (void)o;
  if (rows <= 0 || dim <= 0) return QG_OK;
  int64_t blocks = (rows + 7) / 8;
  k_rmsnorm_bwd<<<(unsigned)(blocks < 65535 ? blocks : 65535), 256>>>(dx, dy, x, rows, dim, eps, accumulate);
  return qg_cu_launched("k_rmsnorm_bwd");
}

// ---- matrix products (cuBLAS; bf16 inputs on the cuda-bf16 table) -----------------------

static int is_bf16(const qg_ops *o) { return o && o->bf16; }

static qg_status mm_dims(int64_t M, int K, int N, const char *what) {
  if (M > INT32_MAX || K < 0 || N < 0)
    return qg_fail(QG_ERR_UNSUPPORTED, "cuda %s: %lld rows exceed cuBLAS's int range", what, (long long)M);
  return QG_OK;
}

// Operands rounded to bf16 into private scratch (fp32 accumulation and output), as the
// forward's bf16 matmul does; a and b are the two inputs of the product.
static qg_status bf16_pair(const float *a, int64_t na, const float *b, int64_t nb, const void **ab, const void **bb) {
  void *pa = NULL, *pb = NULL;
  QG_TRY(qg_cu_bw_scratch(QG_BWS_BF16_A, sizeof(uint16_t) * (size_t)na, &pa));
  QG_TRY(qg_cu_bw_scratch(QG_BWS_BF16_B, sizeof(uint16_t) * (size_t)nb, &pb));
  QG_TRY(qg_cu_to_bf16(pa, a, na));
  QG_TRY(qg_cu_to_bf16(pb, b, nb));
  *ab = pa, *bb = pb;
  return QG_OK;
}

// dx[M, K] (=|+=) dy[M, N] . w[N, K]. Column-major view: dx^T [K, M] = w^T [K, N] . dy^T
// [N, M], where row-major w is column-major w^T with ld K and row-major dy is dy^T, ld N.
qg_status qg_cu_matmul_bwd_x(const qg_ops *o, float *dx, const float *dy, const float *w, int64_t M, int K, int N,
                             int accumulate) {
  if (M <= 0 || K <= 0) return QG_OK;
  QG_TRY(mm_dims(M, K, N, "matmul_bwd_x"));
  const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  const void *A = w, *Bm = dy;
  cudaDataType_t ty = CUDA_R_32F;
  if (is_bf16(o) && N > 0) {
    QG_TRY(bf16_pair(w, (int64_t)N * K, dy, M * (int64_t)N, &A, &Bm));
    ty = CUDA_R_16BF;
  }
  QG_CUBLAS(cublasGemmEx(qg_cu_blas(), CUBLAS_OP_N, CUBLAS_OP_N, K, (int)M, N, &one, A, ty, K, Bm, ty, N, &beta, dx,
                         CUDA_R_32F, K, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return QG_OK;
}

// dw[N, K] += dy[M, N]^T . x[M, K]. Column-major: dw^T [K, N] += x^T [K, M] . dy [M, N],
// row-major x being x^T with ld K (op N) and row-major dy being dy^T with ld N (op T).
qg_status qg_cu_matmul_bwd_w(const qg_ops *o, float *dw, const float *dy, const float *x, int64_t M, int K, int N) {
  if (M <= 0 || K <= 0 || N <= 0) return QG_OK;
  QG_TRY(mm_dims(M, K, N, "matmul_bwd_w"));
  const float one = 1.0f;
  const void *A = x, *Bm = dy;
  cudaDataType_t ty = CUDA_R_32F;
  if (is_bf16(o)) {
    QG_TRY(bf16_pair(x, M * (int64_t)K, dy, M * (int64_t)N, &A, &Bm));
    ty = CUDA_R_16BF;
  }
  QG_CUBLAS(cublasGemmEx(qg_cu_blas(), CUBLAS_OP_N, CUBLAS_OP_T, K, N, (int)M, &one, A, ty, K, Bm, ty, N, &one, dw,
                         CUDA_R_32F, K, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return QG_OK;
}

// ---- RoPE: rotation by the opposite angle -------------------------------------------------

__global__ void k_rope_bwd(float *x, const float *tab, int64_t pairs, int T, int H, int hd) {
  int half = hd / 2;
  const float *cs = tab, *sn = tab + (int64_t)T * half;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < pairs; i += (int64_t)gridDim.x * blockDim.x) {
    int j = (int)(i % half);
    int64_t rh = i / half;
    int t = (int)((rh / H) % T);
    float *v = x + rh * hd;
    float c = cs[(int64_t)t * half + j], s = sn[(int64_t)t * half + j];
    float g1 = v[j], g2 = v[j + half];
    v[j] = __fsub_rn(__fmul_rn(g1, c), __fmul_rn(g2, s));
    v[j + half] = __fadd_rn(__fmul_rn(g1, s), __fmul_rn(g2, c));
  }
}

qg_status qg_cu_rope_bwd(const qg_ops *o, float *dx, int64_t B, int T, int H, int hd, float base) {
  (void)o;
  if (hd % 2) return qg_fail(QG_ERR_INPUT, "rope_bwd: head dim %d is odd", hd);
  if (B <= 0 || T <= 0 || H <= 0 || hd <= 0) return QG_OK;
  const float *tab = NULL;
  QG_TRY(qg_cu_rope_table(T, hd, base, &tab)); // the forward's cached table
  int64_t pairs = B * T * H * (hd / 2);
  k_rope_bwd<<<qg_cu_blocks(pairs, 256), 256>>>(dx, tab, pairs, T, H, hd);
  return qg_cu_launched("k_rope_bwd");
}

// ---- relu^p -------------------------------------------------------------------------------

__global__ void k_relu_pow_bwd(float *dx, const float *dy, const float *u, int64_t n, float p) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float x = u[i], g = dy[i];
    float r = 0.0f;
    if (x > 0.0f) r = p == 2.0f ? __fmul_rn(__fmul_rn(g, 2.0f), x) : __fmul_rn(__fmul_rn(g, p), powf(x, p - 1.0f));
    dx[i] = r;
  }
}

qg_status qg_cu_relu_pow_bwd(const qg_ops *o, float *dx, const float *dy, const float *u, int64_t n, float p) {
  (void)o;
  if (n <= 0) return QG_OK;
  k_relu_pow_bwd<<<qg_cu_blocks(n, 256), 256>>>(dx, dy, u, n, p);
  return qg_cu_launched("k_relu_pow_bwd");
}

// ---- per-channel ops: elementwise gradient and column sums in one pass --------------------
//
// Pass 1: a thread per (column, chunk of rows) walks its rows in order, writes the
// activation gradient of each element it reads (so in-place dx == dy is safe) and leaves
// two double partial sums. Pass 2: a thread per column (per head for head_scale) adds the
// chunks in order and accumulates into the parameter gradient. Fixed chunking: the same
// sums for the same shapes, run after run.

enum { COL_RESID_MIX, COL_ADD_SCALED, COL_AFFINE, COL_HEAD_SCALE };

struct col_args {
  int kind;
  float *out, *out2;
  float *acc, *acc2;
  const float *g, *a, *b, *p1;
  int64_t rows, chunk;
  int d, hd, accumulate;
};

#define COL_THREADS 128

__global__ void k_col_pass(col_args e, double *part) {
  int c = blockIdx.x * COL_THREADS + threadIdx.x;
  if (c >= e.d) return;
  int64_t r0 = (int64_t)blockIdx.y * e.chunk, r1 = r0 + e.chunk < e.rows ? r0 + e.chunk : e.rows;
  double s1 = 0, s2 = 0;
  int d = e.d;
  for (int64_t r = r0; r < r1; r++) {
    int64_t i = r * d + c;
    float g = e.g[i];
    switch (e.kind) {
      case COL_RESID_MIX: // out = dx, out2 = dx0 (+=), sums for dmix[0], dmix[1]
        s1 += (double)g * e.a[i];
        s2 += (double)g * e.b[i];
        e.out2[i] = __fadd_rn(e.out2[i], __fmul_rn(e.p1[d + c], g));
        e.out[i] = __fmul_rn(e.p1[c], g);
        break;
      case COL_ADD_SCALED: { // out = dy (=|+=), sum for ds
        s1 += (double)g * e.a[i];
        float v = __fmul_rn(e.p1[c], g);
        e.out[i] = e.accumulate ? __fadd_rn(e.out[i], v) : v;
        break;
      }
      case COL_AFFINE: // out = dx, sums for dscale and dshift
        s1 += (double)g * e.a[i];
        s2 += g;
        e.out[i] = __fmul_rn(g, e.p1[c]);
        break;
      default: // COL_HEAD_SCALE: out = dx, sum for dgain[c / hd]
        s1 += (double)g * e.a[i];
        e.out[i] = __fmul_rn(g, e.p1[c / e.hd]);
    }
  }
  part[((int64_t)blockIdx.y * 2) * d + c] = s1;
  part[((int64_t)blockIdx.y * 2 + 1) * d + c] = s2;
}

__global__ void k_col_finish(col_args e, const double *part, int chunks) {
  int i = blockIdx.x * blockDim.x + threadIdx.x, d = e.d;
  if (e.kind == COL_HEAD_SCALE) {
    if (i >= d / e.hd) return;
    double s = 0;
    for (int k = 0; k < chunks; k++)
      for (int c = i * e.hd; c < (i + 1) * e.hd; c++) s += part[(int64_t)k * 2 * d + c];
    e.acc[i] += (float)s;
    return;
  }
  if (i >= d) return;
  double s1 = 0, s2 = 0;
  for (int k = 0; k < chunks; k++) {
    s1 += part[(int64_t)k * 2 * d + i];
    s2 += part[((int64_t)k * 2 + 1) * d + i];
  }
  e.acc[i] += (float)s1;
  if (e.kind == COL_RESID_MIX) e.acc[d + i] += (float)s2;
  else if (e.kind == COL_AFFINE) e.acc2[i] += (float)s2;
}

static qg_status col_run(col_args e) {
  if (e.rows <= 0 || e.d <= 0) return QG_OK;
  // 128 rows a chunk, more when there are very many rows (the grid's y limit, and the
  // partials stay a small fraction of the input)
  e.chunk = 128;
  while ((e.rows + e.chunk - 1) / e.chunk > 4096) e.chunk *= 2;
  int chunks = (int)((e.rows + e.chunk - 1) / e.chunk);
  void *part = NULL;
  QG_TRY(qg_cu_bw_scratch(QG_BWS_PARTIAL, sizeof(double) * 2 * (size_t)chunks * (size_t)e.d, &part));
  dim3 grid((unsigned)((e.d + COL_THREADS - 1) / COL_THREADS), (unsigned)chunks);
  k_col_pass<<<grid, COL_THREADS>>>(e, (double *)part);
  QG_TRY(qg_cu_launched("k_col_pass"));
  int n = e.kind == COL_HEAD_SCALE ? e.d / e.hd : e.d;
  k_col_finish<<<(unsigned)((n + 127) / 128), 128>>>(e, (const double *)part, chunks);
  return qg_cu_launched("k_col_finish");
}

qg_status qg_cu_resid_mix_bwd(const qg_ops *o, float *dx, float *dx0, float *dmix, const float *dy, const float *x,
                              const float *x0, const float *mix, int64_t rows, int d) {
  (void)o;
  col_args e = {COL_RESID_MIX, dx, dx0, dmix, NULL, dy, x, x0, mix, rows, 0, d, 1, 0};
  return col_run(e);
}

qg_status qg_cu_add_scaled_bwd(const qg_ops *o, float *dy, float *ds, const float *dx, const float *y, const float *s,
                               int64_t rows, int d, int accumulate) {
  (void)o;
  col_args e = {COL_ADD_SCALED, dy, NULL, ds, NULL, dx, y, NULL, s, rows, 0, d, 1, accumulate};
  return col_run(e);
}

qg_status qg_cu_affine_bwd(const qg_ops *o, float *dx, float *dscale, float *dshift, const float *dy, const float *x,
                           const float *scale, int64_t rows, int d) {
  (void)o;
  col_args e = {COL_AFFINE, dx, NULL, dscale, dshift, dy, x, NULL, scale, rows, 0, d, 1, 0};
  return col_run(e);
}

qg_status qg_cu_head_scale_bwd(const qg_ops *o, float *dx, float *dgain, const float *dy, const float *x, int64_t rows,
                               int H, int hd, const float *gain) {
  (void)o;
  if (H <= 0 || hd <= 0) return QG_OK;
  col_args e = {COL_HEAD_SCALE, dx, NULL, dgain, NULL, dy, x, NULL, gain, rows, 0, H * hd, hd, 0};
  return col_run(e);
}

// ---- softcap + cross-entropy + gradient: a block per row ---------------------------------

#define XENT_THREADS 256

// Block-wide reduction of one double (max or sum); every thread gets the result.
__device__ double block_reduce(double v, bool is_max, double *sh) {
  for (int off = 16; off; off >>= 1) {
    double o = __shfl_xor_sync(0xffffffffu, v, off);
    v = is_max ? fmax(v, o) : v + o;
  }
  int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads(); // sh may still be read from a previous reduction
  if ((threadIdx.x & 31) == 0) sh[w] = v;
  __syncthreads();
  double r = sh[0];
  for (int i = 1; i < nw; i++) r = is_max ? fmax(r, sh[i]) : r + sh[i];
  return r;
}

// z = cap * tanh(l / cap) in float (as the forward and token_stats), the log-sum-exp and
// probabilities in double; dl = scale * (p - onehot) * (1 - (z/cap)^2). dl may be l: each
// element is read and written by the same thread, and z[target] is taken before any write.
__global__ void k_xent(float *dl, double *nll, const float *l, const int32_t *tgt, int64_t rows, int V, float cap,
                       float scale) {
  __shared__ double sh[32];
  __shared__ double zt;
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *lr = l + r * V;
    float *dr = dl + r * V;
    int32_t t = tgt[r];
    double mx = -INFINITY;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      double z = (double)(cap * tanhf(lr[i] / cap));
      mx = fmax(mx, z);
      if (i == t) zt = z;
    }
    mx = block_reduce(mx, true, sh);
    double sum = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) sum += exp((double)(cap * tanhf(lr[i] / cap)) - mx);
    sum = block_reduce(sum, false, sh); // its barriers also publish zt
    double lse = mx + log(sum);
    if (threadIdx.x == 0) nll[r] = lse - zt;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      double z = (double)(cap * tanhf(lr[i] / cap));
      double p = exp(z - lse) - (i == t ? 1.0 : 0.0), th = z / cap;
      dr[i] = (float)(scale * p * (1.0 - th * th));
    }
    __syncthreads(); // zt and sh are reused by the next row
  }
}

qg_status qg_cu_xent_fwd_bwd(const qg_ops *o, float *dlogits, double *loss_sum, const float *logits,
                             const int32_t *targets, int64_t rows, int V, float softcap, float grad_scale) {
  (void)o;
  *loss_sum = 0;
  if (rows <= 0) return QG_OK;
  if (V <= 0) return qg_fail(QG_ERR_INPUT, "xent: empty vocabulary");
  void *nll = NULL;
  QG_TRY(qg_cu_bw_scratch(QG_BWS_XENT, sizeof(double) * (size_t)rows, &nll));
  k_xent<<<(unsigned)(rows < 65535 ? rows : 65535), XENT_THREADS>>>(dlogits, (double *)nll, logits, targets, rows, V,
                                                                    softcap, grad_scale);
  QG_TRY(qg_cu_launched("k_xent"));
  // the per-row losses come back and are summed on the host in row order: the CPU twin's
  // exact summation, and the op's contract puts loss_sum in host memory anyway
  double *h = (double *)malloc(sizeof(double) * (size_t)rows);
  if (!h) return qg_fail(QG_ERR_NOMEM, "xent: out of host memory");
  qg_status st = qg_cu_fail_if(cudaMemcpy(h, nll, sizeof(double) * (size_t)rows, cudaMemcpyDeviceToHost),
                               "cudaMemcpy(xent losses)");
  double s = 0;
  for (int64_t r = 0; !st && r < rows; r++) s += h[r];
  free(h);
  if (!st) *loss_sum = s;
  return st;
}
