// The one CUDA context of the project (see cuda_context.h): checked-call failures, device
// 0 with its cuBLAS and cuSOLVER handles, grid sizing, device scratch.
#include <atomic>
#include <mutex>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_context.h"
#include "kernels/cuda/cuda_device.h"

// ---- errors --------------------------------------------------------------------------

qg_status qg_cu_fail(cudaError_t e, const char *call) {
  qg_status st = qg_fail(QG_ERR_DEVICE, "cuda: %s failed: %s (%s)", call, cudaGetErrorString(e), cudaGetErrorName(e));
  cudaGetLastError(); // clear a non-sticky error so the next call starts clean
  return st;
}

qg_status qg_cublas_fail(cublasStatus_t e, const char *call) {
  return qg_fail(QG_ERR_DEVICE, "cuda: %s failed: %s (%s)", call, cublasGetStatusString(e), cublasGetStatusName(e));
}

static int sync_every_launch = -1; // QG_CUDA_SYNC, read once

qg_status qg_cu_launched(const char *kernel) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return qg_fail(QG_ERR_DEVICE, "cuda: launch of %s failed: %s", kernel, cudaGetErrorString(e));
  if (sync_every_launch < 0) {
    const char *s = getenv("QG_CUDA_SYNC");
    sync_every_launch = s && *s && strcmp(s, "0") != 0;
  }
  if (sync_every_launch && (e = cudaDeviceSynchronize()) != cudaSuccess)
    return qg_fail(QG_ERR_DEVICE, "cuda: kernel %s failed while running: %s", kernel, cudaGetErrorString(e));
  return QG_OK;
}

// ---- the context ---------------------------------------------------------------------

static std::mutex ctx_lock;
static std::atomic<int> ctx_ready;
static cublasHandle_t ctx_blas;
static cusolverDnHandle_t ctx_solver;
static int ctx_sms = 132;
static void *scratch_p[QG_SCRATCH_COUNT];
static size_t scratch_n[QG_SCRATCH_COUNT];

cublasHandle_t qg_cu_blas(void) { return ctx_blas; }

unsigned qg_cu_blocks(int64_t n, int threads) {
  int64_t want = (n + threads - 1) / threads, cap = (int64_t)ctx_sms * 32;
  if (want < 1) want = 1;
  return (unsigned)(want < cap ? want : cap);
}

qg_status qg_cu_scratch(int slot, size_t bytes, void **p) {
  if (bytes > scratch_n[slot]) {
    if (scratch_p[slot]) QG_CU(cudaFree(scratch_p[slot]));
    scratch_p[slot] = NULL;
    scratch_n[slot] = 0;
    size_t want = bytes + bytes / 4; // some headroom: batches grow a little at a time
    QG_CU(cudaMalloc(&scratch_p[slot], want));
    scratch_n[slot] = want;
  }
  *p = scratch_p[slot];
  return QG_OK;
}

qg_status qg_cu_init(void) {
  std::lock_guard<std::mutex> g(ctx_lock);
  if (ctx_ready) return QG_OK;
  if (qg_cuda_device_count() == 0) {
    char why[256];
    qg_cuda_describe(why, sizeof why);
    return qg_fail(QG_ERR_DEVICE, "no usable CUDA GPU on this machine: %s", why);
  }
  QG_CU(cudaSetDevice(0));
  QG_CU(cudaDeviceGetAttribute(&ctx_sms, cudaDevAttrMultiProcessorCount, 0));
  QG_CUBLAS(cublasCreate(&ctx_blas));
  QG_CUBLAS(cublasSetStream(ctx_blas, 0));
  QG_CUBLAS(cublasSetMathMode(ctx_blas, CUBLAS_DEFAULT_MATH));
  ctx_ready = 1;
  return QG_OK;
}

int qg_cu_ready(void) { return ctx_ready; }

qg_status qg_cu_solver(cusolverDnHandle_t *out) {
  *out = NULL;
  QG_TRY(qg_cu_init());
  std::lock_guard<std::mutex> g(ctx_lock);
  if (!ctx_solver) {
    cusolverDnHandle_t sv;
    cusolverStatus_t e = cusolverDnCreate(&sv);
    if (e == CUSOLVER_STATUS_SUCCESS && (e = cusolverDnSetStream(sv, 0)) != CUSOLVER_STATUS_SUCCESS) cusolverDnDestroy(sv);
    if (e != CUSOLVER_STATUS_SUCCESS) return qg_fail(QG_ERR_DEVICE, "cusolver: cusolverDnCreate failed: status %d", (int)e);
    ctx_solver = sv;
  }
  *out = ctx_solver;
  return QG_OK;
}
