/* The device's two ceilings, measured (for bench/: the floor of a workload is its FLOPs
 * over the measured bf16 GEMM rate and its bytes over the measured copy rate). Timed with
 * CUDA events after a warm-up; the median of `reps`. Plain C; in a build without CUDA
 * both return QG_ERR_UNSUPPORTED. */
#ifndef QG_KERNELS_CUDA_BENCH_H
#define QG_KERNELS_CUDA_BENCH_H

#include <stddef.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* cuBLAS bf16 x bf16 -> fp32 (fp32 accumulation) GEMM of n x n x n on random data:
 * TFLOP/s. */
qg_status qg_cuda_gemm_bf16_tflops(int n, int reps, double *tflops);
/* Device-to-device copy of `bytes`: GB/s counting bytes read plus bytes written. */
qg_status qg_cuda_copy_gbps(size_t bytes, int reps, double *gbps);

#ifdef __cplusplus
}
#endif

#endif
