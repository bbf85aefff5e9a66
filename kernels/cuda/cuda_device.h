/* GPU discovery. Works in every build: without CUDA support compiled in, or on a machine
 * without a GPU, qg_cuda_device_count() reports 0 and qg_cuda_describe() says why. */
#ifndef QG_KERNELS_CUDA_DEVICE_H
#define QG_KERNELS_CUDA_DEVICE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 1 when the library was built with the CUDA backend. */
int qg_cuda_compiled(void);
/* Number of usable CUDA devices (0 when none or not compiled). */
int qg_cuda_device_count(void);
/* One line describing device 0, or why there is none. */
void qg_cuda_describe(char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
