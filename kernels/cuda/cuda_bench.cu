// Device ceilings for the benchmarks: see cuda_bench.h.
#include <algorithm>
#include <vector>

#include "kernels/cuda/cuda_bench.h"
#include "kernels/cuda/cuda_common.h"
#include "kernels/cuda_precision.h"

// Fills n floats with a cheap hash in [-1, 1): random data, never zeros (a GEMM on zeros
// runs faster than on real data).
__global__ void k_fill(float *p, int64_t n, uint32_t seed) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    uint32_t h = (uint32_t)i * 2654435761u ^ seed;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    p[i] = ((float)(h >> 8) + 0.5f) / 8388608.0f - 1.0f;
  }
}

// Times `reps` runs of fn() with events (after two warm-up runs); median seconds.
template <typename F>
static qg_status time_median(int reps, F fn, double *seconds) {
  cudaEvent_t e0, e1;
  QG_CU(cudaEventCreate(&e0));
  QG_CU(cudaEventCreate(&e1));
  std::vector<double> t;
  qg_status st = QG_OK;
  for (int r = 0; r < reps + 2 && !st; r++) {
    if ((st = qg_cu_fail_if(cudaEventRecord(e0, 0), "cudaEventRecord"))) break;
    if ((st = fn())) break;
    if ((st = qg_cu_fail_if(cudaEventRecord(e1, 0), "cudaEventRecord"))) break;
    if ((st = qg_cu_fail_if(cudaEventSynchronize(e1), "cudaEventSynchronize"))) break;
    float ms = 0;
    if ((st = qg_cu_fail_if(cudaEventElapsedTime(&ms, e0, e1), "cudaEventElapsedTime"))) break;
    if (r >= 2) t.push_back(ms / 1e3);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  if (st) return st;
  std::sort(t.begin(), t.end());
  *seconds = t[t.size() / 2];
  return QG_OK;
}

extern "C" qg_status qg_cuda_gemm_bf16_tflops(int n, int reps, double *tflops) {
  const qg_ops *o;
  QG_TRY(qg_ops_cuda(&o)); // the context (cuBLAS handle)
  size_t nn = (size_t)n * n;
  float *a = NULL, *c = NULL;
  void *ab = NULL, *bb = NULL;
  qg_status st = QG_OK;
  cudaError_t e;
  if ((e = cudaMalloc(&a, nn * 4)) || (e = cudaMalloc(&c, nn * 4)) || (e = cudaMalloc(&ab, nn * 2)) ||
      (e = cudaMalloc(&bb, nn * 2)))
    st = qg_cu_fail(e, "cudaMalloc(gemm operands)");
  if (!st) {
    k_fill<<<qg_cu_blocks((int64_t)nn, 256), 256>>>(a, (int64_t)nn, 1u);
    st = qg_cu_launched("k_fill");
  }
  if (!st) st = qg_cu_to_bf16(ab, a, (int64_t)nn);
  if (!st) {
    k_fill<<<qg_cu_blocks((int64_t)nn, 256), 256>>>(a, (int64_t)nn, 2u);
    st = qg_cu_launched("k_fill");
  }
  if (!st) st = qg_cu_to_bf16(bb, a, (int64_t)nn);
  double s = 0;
  if (!st)
    st = time_median(
        reps,
        [&]() -> qg_status {
          const float one = 1.0f, zero = 0.0f;
          QG_CUBLAS(cublasGemmEx(qg_cu_blas(), CUBLAS_OP_T, CUBLAS_OP_N, n, n, n, &one, ab, CUDA_R_16BF, n, bb,
                                 CUDA_R_16BF, n, &zero, c, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
          return QG_OK;
        },
        &s);
  if (!st) *tflops = 2.0 * n * (double)n * n / s / 1e12;
  cudaFree(a), cudaFree(c), cudaFree(ab), cudaFree(bb);
  return st;
}

extern "C" qg_status qg_cuda_copy_gbps(size_t bytes, int reps, double *gbps) {
  const qg_ops *o;
  QG_TRY(qg_ops_cuda(&o));
  float *a = NULL, *b = NULL;
  qg_status st = QG_OK;
  cudaError_t e;
  if ((e = cudaMalloc(&a, bytes)) || (e = cudaMalloc(&b, bytes))) st = qg_cu_fail(e, "cudaMalloc(copy buffers)");
  if (!st) {
    k_fill<<<qg_cu_blocks((int64_t)(bytes / 4), 256), 256>>>(a, (int64_t)(bytes / 4), 3u);
    st = qg_cu_launched("k_fill");
  }
  double s = 0;
  if (!st)
    st = time_median(
        reps,
        [&]() -> qg_status {
          QG_CU(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, 0));
          return QG_OK;
        },
        &s);
  if (!st) *gbps = 2.0 * (double)bytes / s / 1e9;
  cudaFree(a), cudaFree(b);
  return st;
}
