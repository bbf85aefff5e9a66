/* The CPU-only build's answers to the CUDA backend's entry points (cuda_device.h,
 * cuda_bench.h, qg_ops_cuda*). Like every cuda/ folder's *_none.c, CMake compiles it in
 * place of that folder's .cu files when QG_CUDA is off, so no source tests QG_HAVE_CUDA. */
#include <stdio.h>

#include "kernels/cuda/cuda_bench.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda_precision.h"
#include "kernels/ops.h"

int qg_cuda_compiled(void) { return 0; }
int qg_cuda_device_count(void) { return 0; }
void qg_cuda_describe(char *buf, size_t cap) {
  snprintf(buf, cap, "CUDA not compiled in (configured with -DQG_CUDA=OFF or no nvcc)");
}

qg_status qg_ops_cuda(const qg_ops **out) {
  *out = NULL;
  return qg_fail(QG_ERR_UNSUPPORTED, "the CUDA backend is not compiled in (configured with -DQG_CUDA=OFF or no nvcc)");
}
qg_status qg_ops_cuda_bf16(const qg_ops **out) { return qg_ops_cuda(out); }
qg_status qg_cuda_gemm_bf16_tflops(int n, int reps, double *tflops) {
  (void)n, (void)reps, (void)tflops;
  return qg_ops_cuda(&(const qg_ops *){NULL});
}
qg_status qg_cuda_copy_gbps(size_t bytes, int reps, double *gbps) {
  (void)bytes, (void)reps, (void)gbps;
  return qg_ops_cuda(&(const qg_ops *){NULL});
}
