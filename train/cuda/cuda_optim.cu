// The trainer's optimizers on the GPU: see train/cuda/cuda_optim.h for what each computes, its
// CPU twin and the arithmetic. Work goes to the legacy default stream like every other op
// of the CUDA backend, so it is ordered after the backward that produced the gradients
// and before the next download without any events.
//
// Scratch: private growable device buffers (the Nesterov input, the Newton-Schulz
// iterates, the norm partials), grown to the largest matrix seen and kept, so a training
// step allocates nothing after its first. Like the rest of the backend, not thread-safe:
// one trainer per process drives it.
#include <cuda_bf16.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels/cuda/cuda_context.h"
#include "train/cuda/cuda_optim.h"

// ---- context and checked calls ------------------------------------------------------------

// The cuBLAS handle belongs to the one CUDA context (kernels/cuda/cuda_context.h); the
// optimizer may be its first user (the tests), so it asks for it.
static qg_status ensure_ctx(void) { return qg_cu_init(); }

static qg_status blas_fail(cublasStatus_t e, const char *what) {
  return qg_fail(QG_ERR_DEVICE, "cuda: cublasGemmEx(%s) failed: %s (%s)", what, cublasGetStatusString(e),
                 cublasGetStatusName(e));
}

// One GEMM on row-major operands in column-major cuBLAS terms (the caller has done the
// transposition bookkeeping); all operands of type ty, fp32 accumulation and fp32 alpha /
// beta, TF32 excluded by the context's CUBLAS_DEFAULT_MATH.
static qg_status gemm(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha, const void *A,
                      int lda, const void *B, int ldb, float beta, void *C, int ldc, cudaDataType_t ty,
                      const char *what) {
  cublasStatus_t e = cublasGemmEx(qg_cu_blas(), ta, tb, m, n, k, &alpha, A, ty, lda, B, ty, ldb, &beta, C, ty, ldc,
                                  CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
  return e == CUBLAS_STATUS_SUCCESS ? QG_OK : blas_fail(e, what);
}

static qg_status copy_d2d(void *dst, const void *src, size_t bytes, const char *what) {
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0);
  if (e == cudaSuccess) return QG_OK;
  cudaGetLastError();
  return qg_fail(QG_ERR_DEVICE, "cuda: cudaMemcpyAsync(%s) failed: %s", what, cudaGetErrorString(e));
}

// ---- scratch ------------------------------------------------------------------------------

enum { SL_U, SL_X, SL_Y, SL_A, SL_B, SL_NORM, SL_COUNT };
static const char *const slot_names[SL_COUNT] = {"Nesterov input", "NS X", "NS Y", "NS A", "NS B", "NS norm"};
static void *scr_p[SL_COUNT];
static size_t scr_n[SL_COUNT];

static qg_status scratch(int slot, size_t bytes, void **p) {
  if (bytes > scr_n[slot]) {
    if (scr_p[slot]) {
      cudaError_t e = cudaFree(scr_p[slot]); // waits for the work still reading it
      scr_p[slot] = NULL;
      scr_n[slot] = 0;
      if (e != cudaSuccess) {
        cudaGetLastError();
        return qg_fail(QG_ERR_DEVICE, "cuda: cudaFree(optimizer scratch: %s) failed: %s", slot_names[slot],
                       cudaGetErrorString(e));
      }
    }
    cudaError_t e = cudaMalloc(&scr_p[slot], bytes);
    if (e != cudaSuccess) {
      scr_p[slot] = NULL;
      cudaGetLastError();
      return qg_fail(e == cudaErrorMemoryAllocation ? QG_ERR_NOMEM : QG_ERR_DEVICE,
                     "cuda: cudaMalloc(optimizer scratch: %s, %zu bytes) failed: %s", slot_names[slot], bytes,
                     cudaGetErrorString(e));
    }
    scr_n[slot] = bytes;
  }
  *p = scr_p[slot];
  return QG_OK;
}

extern "C" void qg_cuda_optim_release(void) {
  for (int i = 0; i < SL_COUNT; i++) {
    if (scr_p[i] && cudaFree(scr_p[i]) != cudaSuccess) cudaGetLastError(); // nothing to report to
    scr_p[i] = NULL;
    scr_n[i] = 0;
  }
}

extern "C" qg_status qg_cuda_optim_sync(void) {
  cudaError_t e = cudaDeviceSynchronize();
  if (e == cudaSuccess) return QG_OK;
  return qg_cu_fail(e, "cudaDeviceSynchronize (after the optimizer step)");
}

extern "C" qg_status qg_cuda_optim_zero(float *p, int64_t n) {
  if (n <= 0) return QG_OK;
  QG_TRY(ensure_ctx());
  QG_CU(cudaMemsetAsync(p, 0, sizeof(float) * (size_t)n, 0));
  return QG_OK;
}

// ---- Adam -----------------------------------------------------------------------------------

// qg_adam_step's loop body with every operation rounded as the C code rounds it, in the
// same order: m += (1 - b1)(g - m); v = b2 v + ((1 - b2) g) g; p -= (ss m) / (sqrt(v) / bc + eps).
__global__ void k_adam(float *p, const float *g, float *m, float *v, int64_t n, float step_size, float bc2_sqrt,
                       float b2, float omb1, float omb2, float eps) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float gi = g[i];
    float mi = __fadd_rn(m[i], __fmul_rn(omb1, __fsub_rn(gi, m[i])));
    float vi = __fadd_rn(__fmul_rn(b2, v[i]), __fmul_rn(__fmul_rn(omb2, gi), gi));
    float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bc2_sqrt), eps);
    p[i] = __fsub_rn(p[i], __fdiv_rn(__fmul_rn(step_size, mi), denom));
    m[i] = mi;
    v[i] = vi;
  }
}

extern "C" qg_status qg_cuda_adam_step(float *p, const float *g, float *m, float *v, int64_t n, double lr, double b1,
                                       double b2, double eps, int64_t t) {
  if (n <= 0) return QG_OK;
  QG_TRY(ensure_ctx());
  // the bias corrections exactly as the CPU twin computes them (double, then float)
  double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
  float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
  float fb1 = (float)b1, fb2 = (float)b2;
  k_adam<<<qg_cu_blocks(n, 256), 256>>>(p, g, m, v, n, step_size, bc2_sqrt, fb2, 1.0f - fb1, 1.0f - fb2, (float)eps);
  return qg_cu_launched("k_adam");
}

// ---- Newton-Schulz --------------------------------------------------------------------------

#define NORM_BLOCKS 256
#define NORM_THREADS 256

// ||G||^2 in fp64: a fixed grid of NORM_BLOCKS blocks, each a fixed shared-memory tree, so
// the sum (and hence the scale) is the same bits on every run.
__global__ void k_sumsq(const float *G, int64_t n, double *part) {
  __shared__ double sh[NORM_THREADS];
  double s = 0;
  for (int64_t i = (int64_t)blockIdx.x * NORM_THREADS + threadIdx.x; i < n; i += (int64_t)NORM_BLOCKS * NORM_THREADS)
    s += (double)G[i] * G[i];
  sh[threadIdx.x] = s;
  __syncthreads();
  for (int w = NORM_THREADS / 2; w > 0; w >>= 1) {
    if ((int)threadIdx.x < w) sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

// inv = 1 / (||G|| + 1e-7) with the CPU twin's roundings (sqrt in double, then float).
__global__ void k_inv_norm(const double *part, float *inv) {
  double s = 0;
  for (int i = 0; i < NORM_BLOCKS; i++) s += part[i];
  *inv = __fdiv_rn(1.0f, __fadd_rn((float)sqrt(s), 1e-7f));
}

__device__ __forceinline__ void store(float *p, float v) { *p = v; }
__device__ __forceinline__ void store(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }
__device__ __forceinline__ float load(const float *p) { return *p; }
__device__ __forceinline__ float load(const __nv_bfloat16 *p) { return __bfloat162float(*p); }

// X [r, k] = G * inv in the wide orientation: X = G when rows <= cols, else X = G^T.
template <typename T>
__global__ void k_ns_load(T *X, const float *G, const float *inv, int rows, int cols, int tr) {
  int64_t n = (int64_t)rows * cols;
  float s = *inv;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
    int64_t i = idx / cols, j = idx % cols;
    float v = __fmul_rn(G[idx], s);
    store(tr ? X + j * rows + i : X + idx, v);
  }
}

// out [rows, cols] (fp32) from the result X [r, k], transposing back when tr.
template <typename T>
__global__ void k_ns_store(float *out, const T *X, int rows, int cols, int tr) {
  int64_t n = (int64_t)rows * cols;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
    int64_t i = idx / cols, j = idx % cols;
    out[idx] = load(tr ? X + j * rows + i : X + idx);
  }
}

// The iteration on the wide orientation X [r, k] (r <= k), leaving the result in *res (a
// scratch buffer of element type float or bf16 by prec). Row-major products through cuBLAS's
// column-major view (a row-major M x N matrix is the column-major N x M transpose):
//   A = X X^T  : gemm(T, N, r, r, k; X, X)          A [r, r]
//   B = c A A + b B (B preloaded with A) : gemm(N, N, r, r, r; A, A)
//   Y = B X + a Y (Y preloaded with X)   : gemm(N, N, k, r, r; X, B)
static qg_status ns_core(const float *G, int rows, int cols, int steps, qg_precision prec, void **res) {
  const float a = 3.4445f, b = -4.7750f, c = 2.0315f;
  int tr = rows > cols, r = tr ? cols : rows, k = tr ? rows : cols;
  int bf = prec == QG_PRECISION_BF16;
  size_t es = bf ? sizeof(__nv_bfloat16) : sizeof(float);
  cudaDataType_t ty = bf ? CUDA_R_16BF : CUDA_R_32F;
  int64_t n = (int64_t)rows * cols;
  void *X = NULL, *Y = NULL, *A = NULL, *B = NULL, *norm = NULL;
  QG_TRY(scratch(SL_X, es * (size_t)n, &X));
  QG_TRY(scratch(SL_Y, es * (size_t)n, &Y));
  QG_TRY(scratch(SL_A, es * (size_t)r * r, &A));
  QG_TRY(scratch(SL_B, es * (size_t)r * r, &B));
  QG_TRY(scratch(SL_NORM, sizeof(double) * NORM_BLOCKS + sizeof(float), &norm));
  double *part = (double *)norm;
  float *inv = (float *)(part + NORM_BLOCKS);
  k_sumsq<<<NORM_BLOCKS, NORM_THREADS>>>(G, n, part);
  QG_TRY(qg_cu_launched("k_sumsq"));
  k_inv_norm<<<1, 1>>>(part, inv);
  QG_TRY(qg_cu_launched("k_inv_norm"));
  if (bf) k_ns_load<<<qg_cu_blocks(n, 256), 256>>>((__nv_bfloat16 *)X, G, inv, rows, cols, tr);
  else k_ns_load<<<qg_cu_blocks(n, 256), 256>>>((float *)X, G, inv, rows, cols, tr);
  QG_TRY(qg_cu_launched("k_ns_load"));
  for (int s = 0; s < steps; s++) {
    QG_TRY(gemm(CUBLAS_OP_T, CUBLAS_OP_N, r, r, k, 1.0f, X, k, X, k, 0.0f, A, r, ty, "NS A = X X^T"));
    QG_TRY(copy_d2d(B, A, es * (size_t)r * r, "NS B = A"));
    QG_TRY(gemm(CUBLAS_OP_N, CUBLAS_OP_N, r, r, r, c, A, r, A, r, b, B, r, ty, "NS B = b A + c A A"));
    QG_TRY(copy_d2d(Y, X, es * (size_t)n, "NS Y = X"));
    QG_TRY(gemm(CUBLAS_OP_N, CUBLAS_OP_N, k, r, r, 1.0f, X, k, B, r, a, Y, k, ty, "NS X = a X + B X"));
    void *t = X;
    X = Y;
    Y = t;
  }
  *res = X;
  return QG_OK;
}

static qg_status ns_args(int rows, int cols, int steps, const char *what) {
  if (rows < 1 || cols < 1 || steps < 0)
    return qg_fail(QG_ERR_INPUT, "cuda %s: a %d x %d matrix with %d steps", what, rows, cols, steps);
  return QG_OK;
}

extern "C" qg_status qg_cuda_newton_schulz5(float *out, const float *G, int rows, int cols, int steps,
                                            qg_precision prec) {
  QG_TRY(ns_args(rows, cols, steps, "newton_schulz5"));
  QG_TRY(ensure_ctx());
  void *X;
  QG_TRY(ns_core(G, rows, cols, steps, prec, &X));
  int64_t n = (int64_t)rows * cols;
  int tr = rows > cols;
  if (prec == QG_PRECISION_BF16) k_ns_store<<<qg_cu_blocks(n, 256), 256>>>(out, (const __nv_bfloat16 *)X, rows, cols, tr);
  else k_ns_store<<<qg_cu_blocks(n, 256), 256>>>(out, (const float *)X, rows, cols, tr);
  return qg_cu_launched("k_ns_store");
}

// ---- Muon ------------------------------------------------------------------------------------

// buf = buf * mom + g; u = g + buf * mom (the CPU twin's two lines, same roundings).
__global__ void k_momentum(float *buf, const float *g, float *u, int64_t n, float mom) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float bi = __fadd_rn(__fmul_rn(buf[i], mom), g[i]);
    buf[i] = bi;
    u[i] = __fadd_rn(g[i], __fmul_rn(bi, mom));
  }
}

// p -= lr * (o * scale), o read from the NS result in its wide orientation. bf16: the
// contest's update tensor is bf16, so o * scale is rounded to bf16 before the fp32 add.
template <typename T>
__global__ void k_muon_update(float *p, const T *X, int rows, int cols, int tr, float lr, float scale, int bf) {
  int64_t n = (int64_t)rows * cols;
  for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < n; idx += (int64_t)gridDim.x * blockDim.x) {
    int64_t i = idx / cols, j = idx % cols;
    float u = __fmul_rn(load(tr ? X + j * rows + i : X + idx), scale);
    if (bf) u = __bfloat162float(__float2bfloat16_rn(u));
    p[idx] = __fsub_rn(p[idx], __fmul_rn(lr, u));
  }
}

extern "C" qg_status qg_cuda_muon_step(float *p, const float *g, float *buf, int rows, int cols, double lr,
                                       double momentum, int steps, qg_precision prec) {
  QG_TRY(ns_args(rows, cols, steps, "muon_step"));
  QG_TRY(ensure_ctx());
  int64_t n = (int64_t)rows * cols;
  void *u, *X;
  QG_TRY(scratch(SL_U, sizeof(float) * (size_t)n, &u));
  k_momentum<<<qg_cu_blocks(n, 256), 256>>>(buf, g, (float *)u, n, (float)momentum);
  QG_TRY(qg_cu_launched("k_momentum"));
  QG_TRY(ns_core((const float *)u, rows, cols, steps, prec, &X));
  float scale = (float)sqrt(rows > cols ? (double)rows / cols : 1.0);
  int tr = rows > cols, bf = prec == QG_PRECISION_BF16;
  if (bf) k_muon_update<<<qg_cu_blocks(n, 256), 256>>>(p, (const __nv_bfloat16 *)X, rows, cols, tr, (float)lr, scale, 1);
  else k_muon_update<<<qg_cu_blocks(n, 256), 256>>>(p, (const float *)X, rows, cols, tr, (float)lr, scale, 0);
  return qg_cu_launched("k_muon_update");
}

// ---- the clip-range STE ------------------------------------------------------------------------

#define MASK_THREADS 256

// A block per row: the row's max |weff| (a max is exact in any order), then the mask.
__global__ void k_qat_mask(const float *w, const float *weff, float *g, int64_t rows, int64_t cols) {
  __shared__ float sh[MASK_THREADS / 32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *wr = w + r * cols, *qr = weff + r * cols;
    float *gr = g + r * cols;
    float mx = 0.0f;
    for (int64_t j = threadIdx.x; j < cols; j += MASK_THREADS) mx = fmaxf(mx, fabsf(qr[j]));
    for (int off = 16; off; off >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = mx;
    __syncthreads();
    mx = sh[0];
    for (int i = 1; i < MASK_THREADS / 32; i++) mx = fmaxf(mx, sh[i]);
    for (int64_t j = threadIdx.x; j < cols; j += MASK_THREADS)
      if (fabsf(wr[j]) > mx) gr[j] = 0.0f;
    __syncthreads(); // sh is rewritten for the next row
  }
}

extern "C" qg_status qg_cuda_qat_mask(const float *w, const float *weff, float *g, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return QG_OK;
  QG_TRY(ensure_ctx());
  k_qat_mask<<<(unsigned)(rows < 65535 ? rows : 65535), MASK_THREADS>>>(w, weff, g, rows, cols);
  return qg_cu_launched("k_qat_mask");
}
