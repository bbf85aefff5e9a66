// Internal to the CUDA backend (kernels/*.cu only; C++): the checked-call helpers, the
// one device context, and the launchers each focused .cu file provides to the op table in
// cuda_ops.cu. Nothing outside kernels/ includes this header.
//
// Error policy: every CUDA runtime and cuBLAS call goes through QG_CU / QG_CUBLAS, which
// turn a failure into qg_fail(QG_ERR_DEVICE, "cuda: <call> failed: <reason>"), naming the
// call. Every kernel launch is followed by qg_cu_launched("<kernel>"), which reports a bad
// launch at once. Faults inside a running kernel are asynchronous: they surface at the next
// synchronising call (a download, the statistics read-back), which names itself; set
// QG_CUDA_SYNC=1 to synchronise after every launch so the failing kernel is named instead.
#ifndef QG_KERNELS_CUDA_COMMON_H
#define QG_KERNELS_CUDA_COMMON_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/ops.h"

qg_status qg_cu_fail(cudaError_t e, const char *call);
qg_status qg_cublas_fail(cublasStatus_t e, const char *call);
// QG_OK for cudaSuccess, else qg_cu_fail (for chains that must clean up before returning).
static inline qg_status qg_cu_fail_if(cudaError_t e, const char *call) {
  return e == cudaSuccess ? QG_OK : qg_cu_fail(e, call);
}
// After a launch: the launch error, or (in QG_CUDA_SYNC mode) the kernel's own fault.
qg_status qg_cu_launched(const char *kernel);

#define QG_CU(call)                                        \
  do {                                                     \
    cudaError_t qg_cu_e_ = (call);                         \
    if (qg_cu_e_ != cudaSuccess) return qg_cu_fail(qg_cu_e_, #call); \
  } while (0)

#define QG_CUBLAS(call)                                    \
  do {                                                     \
    cublasStatus_t qg_cb_e_ = (call);                      \
    if (qg_cb_e_ != CUBLAS_STATUS_SUCCESS) return qg_cublas_fail(qg_cb_e_, #call); \
  } while (0)

// Grid size for a grid-stride loop over n items with `threads` per block: enough blocks to
// fill the GPU several times over, never more than the work needs.
unsigned qg_cu_blocks(int64_t n, int threads);

// Growable device scratch buffers, one per purpose, owned by the context. Growth frees the
// old buffer (cudaFree synchronises the device, so nothing in flight still reads it).
enum { QG_SCRATCH_MM_X, QG_SCRATCH_MM_W, QG_SCRATCH_STATS, QG_SCRATCH_ROPE, QG_SCRATCH_COUNT };
qg_status qg_cu_scratch(int slot, size_t bytes, void **p);

// The process-wide context for device 0: the cuBLAS handle. All work goes to the legacy
// default stream, so ops are ordered without events and a host copy waits for the work
// before it (what the op interface's synchronous download promises).
cublasHandle_t qg_cu_blas(void);

// ---- launchers (each defined in one focused .cu file) --------------------------------
// cuda_elementwise.cu
qg_status qg_cu_embed(float *x, const float *emb, const int32_t *tok, int64_t n, int d);
qg_status qg_cu_rmsnorm(float *y, const float *x, int64_t rows, int dim, float eps);
qg_status qg_cu_rope(float *x, int64_t B, int T, int H, int hd, float base);
qg_status qg_cu_head_scale(float *x, int64_t rows, int H, int hd, const float *gain);
qg_status qg_cu_relu_pow(float *x, int64_t n, float p);
qg_status qg_cu_resid_mix(float *x, const float *x0, const float *mix, int64_t rows, int d);
qg_status qg_cu_add_scaled(float *x, const float *y, const float *s, int64_t rows, int d);
qg_status qg_cu_affine(float *x, const float *scale, const float *shift, int64_t rows, int d);
// fp32 -> bf16 (round to nearest even) of n values, for the bf16 matrix products.
qg_status qg_cu_to_bf16(void *dst, const float *src, int64_t n);
// cuda_attention.cu
qg_status qg_cu_attention(float *y, const float *q, const float *k, const float *v, int64_t B, int T, int H, int KVH,
                          int hd);
// cuda_token_stats.cu
qg_status qg_cu_token_stats(const float *a, const float *b, const int32_t *targets, int64_t rows, int V, float softcap,
                            qg_token_stat *out);

#endif
