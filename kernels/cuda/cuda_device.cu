// GPU discovery through the CUDA runtime; see cuda_device.h.
#include <cuda_runtime.h>
#include <stdio.h>

#include "kernels/cuda/cuda_device.h"

extern "C" int qg_cuda_compiled(void) { return 1; }

extern "C" int qg_cuda_device_count(void) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError(); /* clear the sticky "no device" error */
    return 0;
  }
  return n;
}

extern "C" void qg_cuda_describe(char *buf, size_t cap) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    snprintf(buf, cap, "CUDA compiled in, no usable GPU (%s)",
             e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
    cudaGetLastError();
    return;
  }
  cudaDeviceProp p;
  if (cudaGetDeviceProperties(&p, 0) != cudaSuccess) {
    snprintf(buf, cap, "CUDA: %d device(s), properties unavailable", n);
    return;
  }
  snprintf(buf, cap, "CUDA: %d device(s); device 0: %s, sm_%d%d, %.1f GiB", n, p.name, p.major,
           p.minor, (double)p.totalGlobalMem / (1024.0 * 1024.0 * 1024.0));
}

// qg_ops_cuda() and the op tables live in cuda_ops.cu.
