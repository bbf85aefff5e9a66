/* The device fold of the nccl backend (comm/cuda/comm_fold.cu): out = a + b and
 * out /= world on n elements of device memory, queued on a CUDA stream. */
#ifndef QG_COMM_CUDA_FOLD_H
#define QG_COMM_CUDA_FOLD_H

#include "comm/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

qg_status qg_comm_cuda_add(void *out, const void *a, const void *b, int64_t n, qg_comm_dtype t, void *stream);
qg_status qg_comm_cuda_divide(void *out, int64_t n, qg_comm_dtype t, int world, void *stream);

#ifdef __cplusplus
}
#endif

#endif
