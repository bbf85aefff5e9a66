/* The CPU-only build: no device fold (the nccl backend is not built without CUDA). */
#include "comm/cuda/comm_fold.h"

qg_status qg_comm_cuda_add(void *out, const void *a, const void *b, int64_t n, qg_comm_dtype t, void *stream) {
  (void)out, (void)a, (void)b, (void)n, (void)t, (void)stream;
  return qg_fail(QG_ERR_UNSUPPORTED, "this build has no CUDA");
}
qg_status qg_comm_cuda_divide(void *out, int64_t n, qg_comm_dtype t, int world, void *stream) {
  (void)out, (void)n, (void)t, (void)world, (void)stream;
  return qg_fail(QG_ERR_UNSUPPORTED, "this build has no CUDA");
}
