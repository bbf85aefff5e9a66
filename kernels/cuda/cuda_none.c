/* The CPU-only build's answers to cuda_device.h (compiled only without QG_HAVE_CUDA). */
#ifndef QG_HAVE_CUDA
#include <stdio.h>

#include "kernels/cuda/cuda_device.h"

int qg_cuda_compiled(void) { return 0; }
int qg_cuda_device_count(void) { return 0; }
void qg_cuda_describe(char *buf, size_t cap) {
  snprintf(buf, cap, "CUDA not compiled in (configured with -DQG_CUDA=OFF or no nvcc)");
}
#else
typedef int qg_cuda_none_unused; /* ISO C forbids an empty translation unit */
#endif
