// The CUDA context every CUDA file of the project shares (C++ only): the checked-call
// helpers, the one device context with its cuBLAS and cuSOLVER handles, grid sizing and
// device scratch. kernels/cuda/cuda_context.cu defines it; the quantizer kernels
// (quant/cuda/) and the optimizer kernels (train/cuda/) include this header, never
// kernels/cuda/cuda_common.h, which is the op tables' own.
//
// Error policy: every CUDA runtime and cuBLAS call goes through QG_CU / QG_CUBLAS, which
// turn a failure into qg_fail(QG_ERR_DEVICE, "cuda: <call> failed: <reason>"), naming the
// call. Every kernel launch is followed by qg_cu_launched("<kernel>"), which reports a bad
// launch at once. Faults inside a running kernel are asynchronous: they surface at the next
// synchronising call (a download, the statistics read-back), which names itself; set
// QG_CUDA_SYNC=1 to synchronise after every launch so the failing kernel is named instead.
#ifndef QG_KERNELS_CUDA_CONTEXT_H
#define QG_KERNELS_CUDA_CONTEXT_H

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

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

// The process-wide context for device 0, shared by every CUDA file of the project (the op
// tables, the quantizer kernels, the optimizers): one cuBLAS handle and one cuSOLVER
// handle. All work goes to the legacy default stream, so ops are ordered without events
// and a host copy waits for the work before it (what the op interface's synchronous
// download promises).
//
// qg_cu_init creates the context on first use (device 0, its multiprocessor count, the
// cuBLAS handle with TF32 excluded: CUBLAS_DEFAULT_MATH never uses it for fp32) and fails
// with QG_ERR_DEVICE where there is no usable GPU; qg_cu_ready says whether it has run.
qg_status qg_cu_init(void);
int qg_cu_ready(void);
cublasHandle_t qg_cu_blas(void);
// The cuSOLVER handle, created on first use (only the quantizer kernels factor matrices).
qg_status qg_cu_solver(cusolverDnHandle_t *out);

#endif
