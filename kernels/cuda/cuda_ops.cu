// The CUDA backend's op tables: memory through plain cudaMalloc / cudaMemcpy, matrix
// products through cuBLAS, every other op a launcher from a focused file
// (cuda_elementwise.cu, cuda_attention.cu, cuda_token_stats.cu). Two tables share
// everything but matmul: "cuda" (fp32, TF32 off: the reference path, checked against the
// CPU backend to 1e-5) and "cuda-bf16" (inputs rounded to bf16, fp32 accumulation).
//
// Backward ops (the trainer) slot in the same way: a launcher in its own .cu file, declared
// in cuda_common.h, and one more line in each table below.
#include <mutex>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_backward.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda_precision.h"

static void fill_tables(void);

// The context (cuda_context.cu) and, once, the two tables.
static qg_status ctx_init(void) {
  static std::once_flag tables;
  QG_TRY(qg_cu_init());
  std::call_once(tables, fill_tables);
  return QG_OK;
}

// ---- memory --------------------------------------------------------------------------

static qg_status cu_alloc(const qg_ops *o, void **p, size_t bytes) {
  (void)o;
  *p = NULL;
  cudaError_t e = cudaMalloc(p, bytes ? bytes : 16);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return qg_fail(QG_ERR_NOMEM, "cuda: cudaMalloc(%zu bytes) failed: out of device memory", bytes);
  }
  if (e != cudaSuccess) return qg_cu_fail(e, "cudaMalloc");
  return QG_OK;
}

static void cu_free(const qg_ops *o, void *p) {
  (void)o;
  if (p && cudaFree(p) != cudaSuccess) cudaGetLastError(); // nothing to report to: free returns void
}

static qg_status cu_upload(const qg_ops *o, void *dst, const void *src, size_t bytes) {
  (void)o;
  if (bytes) QG_CU(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  return QG_OK;
}

static qg_status cu_download(const qg_ops *o, void *dst, const void *src, size_t bytes) {
  (void)o;
  if (bytes) QG_CU(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  return QG_OK;
}

static qg_status cu_copy(const qg_ops *o, void *dst, const void *src, size_t bytes) {
  (void)o;
  if (bytes) QG_CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, 0));
  return QG_OK;
}

// ---- matrix products -----------------------------------------------------------------

// y[M, N] = x[M, K] . w[N, K]^T in row-major is, read column-major, y^T = w . x^T with
// w^T stored [K, N] (so op T) and x^T stored [K, M] (op N): m = N, n = M, k = K.
static qg_status mm_check(int64_t M, int K, int N, const char *what) {
  if (M > INT32_MAX || K < 0 || N < 0)
    return qg_fail(QG_ERR_UNSUPPORTED, "cuda %s: %lld rows exceed cuBLAS's int range", what, (long long)M);
  return QG_OK;
}

static qg_status cu_matmul(const qg_ops *o, float *y, const float *x, const float *w, int64_t M, int K, int N) {
  (void)o;
  if (M <= 0 || N <= 0) return QG_OK;
  QG_TRY(mm_check(M, K, N, "matmul"));
  const float one = 1.0f, zero = 0.0f;
  // CUBLAS_COMPUTE_32F (not _FAST_TF32) under CUBLAS_DEFAULT_MATH: full fp32 products
  QG_CUBLAS(cublasGemmEx(qg_cu_blas(), CUBLAS_OP_T, CUBLAS_OP_N, N, (int)M, K, &one, w, CUDA_R_32F, K, x, CUDA_R_32F, K,
                         &zero, y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return QG_OK;
}

// bf16 inputs, fp32 accumulation and output. Both operands are rounded into scratch each
// call: the weights too, since the op interface hands over fp32 weights and a hidden cache
// keyed by pointer would go stale the day a trainer updates them in place. (A weights-in-
// bf16 op for inference is the obvious next step; the conversion costs one read of the
// weights per product, a few per cent of a forward pass at batch 8192.)
static qg_status cu_matmul_bf16(const qg_ops *o, float *y, const float *x, const float *w, int64_t M, int K, int N) {
  (void)o;
  if (M <= 0 || N <= 0) return QG_OK;
  QG_TRY(mm_check(M, K, N, "matmul (bf16)"));
  if (K == 0) return cu_matmul(o, y, x, w, M, K, N);
  void *xb = NULL, *wb = NULL;
  QG_TRY(qg_cu_scratch(QG_SCRATCH_MM_X, sizeof(uint16_t) * (size_t)M * (size_t)K, &xb));
  QG_TRY(qg_cu_scratch(QG_SCRATCH_MM_W, sizeof(uint16_t) * (size_t)N * (size_t)K, &wb));
  QG_TRY(qg_cu_to_bf16(xb, x, M * (int64_t)K));
  QG_TRY(qg_cu_to_bf16(wb, w, (int64_t)N * K));
  const float one = 1.0f, zero = 0.0f;
  QG_CUBLAS(cublasGemmEx(qg_cu_blas(), CUBLAS_OP_T, CUBLAS_OP_N, N, (int)M, K, &one, wb, CUDA_R_16BF, K, xb, CUDA_R_16BF,
                         K, &zero, y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  return QG_OK;
}

// ---- the remaining ops: argument checks here, kernels in their files -------------------

static qg_status cu_embed(const qg_ops *o, float *x, const float *emb, const int32_t *tok, int64_t n, int d) {
  (void)o;
  return qg_cu_embed(x, emb, tok, n, d);
}
static qg_status cu_rmsnorm(const qg_ops *o, float *y, const float *x, int64_t rows, int dim, float eps) {
  (void)o;
  return qg_cu_rmsnorm(y, x, rows, dim, eps);
}
static qg_status cu_rope(const qg_ops *o, float *x, int64_t B, int T, int H, int hd, float base) {
  (void)o;
  if (hd % 2) return qg_fail(QG_ERR_INPUT, "rope: head dim %d is odd", hd);
  return qg_cu_rope(x, B, T, H, hd, base);
}
static qg_status cu_head_scale(const qg_ops *o, float *x, int64_t rows, int H, int hd, const float *gain) {
  (void)o;
  return qg_cu_head_scale(x, rows, H, hd, gain);
}
static qg_status cu_attention(const qg_ops *o, float *y, const float *q, const float *k, const float *v, int64_t B,
                              int T, int H, int KVH, int hd) {
  (void)o;
  if (KVH <= 0 || H % KVH != 0) return qg_fail(QG_ERR_INPUT, "attention: %d heads not a multiple of %d kv heads", H, KVH);
  return qg_cu_attention(y, q, k, v, B, T, H, KVH, hd);
}
static qg_status cu_relu_pow(const qg_ops *o, float *x, int64_t n, float p) {
  (void)o;
  return qg_cu_relu_pow(x, n, p);
}
static qg_status cu_resid_mix(const qg_ops *o, float *x, const float *x0, const float *mix, int64_t rows, int d) {
  (void)o;
  return qg_cu_resid_mix(x, x0, mix, rows, d);
}
static qg_status cu_add_scaled(const qg_ops *o, float *x, const float *y, const float *s, int64_t rows, int d) {
  (void)o;
  return qg_cu_add_scaled(x, y, s, rows, d);
}
static qg_status cu_affine(const qg_ops *o, float *x, const float *scale, const float *shift, int64_t rows, int d) {
  (void)o;
  return qg_cu_affine(x, scale, shift, rows, d);
}
static qg_status cu_token_stats(const qg_ops *o, const float *a, const float *b, const int32_t *targets, int64_t rows,
                                int V, float softcap, qg_token_stat *out) {
  (void)o;
  if (rows <= 0) return QG_OK;
  if (V <= 0) return qg_fail(QG_ERR_INPUT, "token stats: empty vocabulary");
  return qg_cu_token_stats(a, b, targets, rows, V, softcap, out);
}

// The tables are filled field by field at first use rather than by an initialiser list:
// C++17 has no designated initialisers, and assigning by name keeps this file correct as
// ops.h grows (the backward twins arrive there; any this backend lacks stay NULL, which
// ops.h allows). The forward ops are all here.
static qg_ops cuda_fp32, cuda_bf16;

static void fill_table(qg_ops *t, const char *name,
                       qg_status (*mm)(const qg_ops *, float *, const float *, const float *, int64_t, int, int)) {
  memset(t, 0, sizeof *t);
  t->name = name;
  t->kind = QG_BACKEND_CUDA;
  t->bf16 = mm == cu_matmul_bf16;
  t->alloc = cu_alloc;
  t->free = cu_free;
  t->upload = cu_upload;
  t->download = cu_download;
  t->copy = cu_copy;
  t->hacc_create = qg_cu_hacc_create;
  t->hacc_add = qg_cu_hacc_add;
  t->hacc_read = qg_cu_hacc_read;
  t->hacc_free = qg_cu_hacc_free;
  t->embed = cu_embed;
  t->rmsnorm = cu_rmsnorm;
  t->matmul = mm;
  t->rope = cu_rope;
  t->head_scale = cu_head_scale;
  t->attention = cu_attention;
  t->relu_pow = cu_relu_pow;
  t->resid_mix = cu_resid_mix;
  t->add_scaled = cu_add_scaled;
  t->affine = cu_affine;
  t->token_stats = cu_token_stats;
  t->embed_bwd = qg_cu_embed_bwd;
  t->rmsnorm_bwd = qg_cu_rmsnorm_bwd;
  t->matmul_bwd_x = qg_cu_matmul_bwd_x;
  t->matmul_bwd_w = qg_cu_matmul_bwd_w;
  t->rope_bwd = qg_cu_rope_bwd;
  t->head_scale_bwd = qg_cu_head_scale_bwd;
  t->attention_bwd = qg_cu_attention_bwd;
  t->relu_pow_bwd = qg_cu_relu_pow_bwd;
  t->resid_mix_bwd = qg_cu_resid_mix_bwd;
  t->add_scaled_bwd = qg_cu_add_scaled_bwd;
  t->affine_bwd = qg_cu_affine_bwd;
  t->xent_fwd_bwd = qg_cu_xent_fwd_bwd;
}

static void fill_tables(void) {
  fill_table(&cuda_fp32, "cuda", cu_matmul);
  fill_table(&cuda_bf16, "cuda-bf16", cu_matmul_bf16);
}

extern "C" qg_status qg_ops_cuda(const qg_ops **out) {
  *out = NULL;
  QG_TRY(ctx_init());
  *out = &cuda_fp32;
  return QG_OK;
}

extern "C" qg_status qg_ops_cuda_bf16(const qg_ops **out) {
  *out = NULL;
  QG_TRY(ctx_init());
  *out = &cuda_bf16;
  return QG_OK;
}
