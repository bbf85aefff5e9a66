// The nccl backend's rank-order fold on the device: one element-wise add or divide per
// launch, in the element's own type (no FMA contraction can occur: one operation each).
#include <cuda_runtime.h>
#include <stdint.h>

#include "comm/cuda/comm_fold.h"

template <typename T>
__global__ void add_kernel(T *out, const T *a, const T *b, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = a[i] + b[i];
}

template <typename T>
__global__ void div_kernel(T *out, int64_t n, T w) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = out[i] / w;
}

static int grid_of(int64_t n) {
  int64_t g = (n + 255) / 256;
  return (int)(g < 1 ? 1 : g > 4096 ? 4096 : g);
}

static qg_status launched(const char *what) {
  cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? QG_OK : qg_fail(QG_ERR_DEVICE, "%s: %s", what, cudaGetErrorString(e));
}

extern "C" qg_status qg_comm_cuda_add(void *out, const void *a, const void *b, int64_t n, qg_comm_dtype t,
                                      void *stream) {
  if (n <= 0) return QG_OK;
  cudaStream_t s = (cudaStream_t)stream;
  switch (t) {
    case QG_COMM_F32:
      add_kernel<float><<<grid_of(n), 256, 0, s>>>((float *)out, (const float *)a, (const float *)b, n);
      break;
    case QG_COMM_F64:
      add_kernel<double><<<grid_of(n), 256, 0, s>>>((double *)out, (const double *)a, (const double *)b, n);
      break;
    case QG_COMM_I64:
      add_kernel<long long><<<grid_of(n), 256, 0, s>>>((long long *)out, (const long long *)a, (const long long *)b, n);
      break;
    default: return qg_fail(QG_ERR_UNSUPPORTED, "nccl: bytes cannot be summed");
  }
  return launched("nccl fold");
}

extern "C" qg_status qg_comm_cuda_divide(void *out, int64_t n, qg_comm_dtype t, int world, void *stream) {
  if (n <= 0) return QG_OK;
  cudaStream_t s = (cudaStream_t)stream;
  if (t == QG_COMM_F32) div_kernel<float><<<grid_of(n), 256, 0, s>>>((float *)out, n, (float)world);
  else if (t == QG_COMM_F64) div_kernel<double><<<grid_of(n), 256, 0, s>>>((double *)out, n, (double)world);
  else return qg_fail(QG_ERR_UNSUPPORTED, "nccl: an average needs a floating type");
  return launched("nccl average");
}
