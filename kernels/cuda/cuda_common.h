// Internal to the CUDA op tables (kernels/cuda/*.cu only; C++): the launchers each focused
// .cu file provides to the op table in cuda_ops.cu, on top of the shared context
// (cuda_context.h: checked calls, handles, scratch). Nothing outside kernels/cuda/
// includes this header.
#ifndef QG_KERNELS_CUDA_COMMON_H
#define QG_KERNELS_CUDA_COMMON_H

#include <stdint.h>

#include "kernels/cuda/cuda_context.h"
#include "kernels/ops.h"

// ---- launchers (each defined in one focused .cu file) --------------------------------
// cuda_elementwise.cu
qg_status qg_cu_embed(float *x, const float *emb, const int32_t *tok, int64_t n, int d);
qg_status qg_cu_rmsnorm(float *y, const float *x, int64_t rows, int dim, float eps);
qg_status qg_cu_rope(float *x, int64_t B, int T, int H, int hd, float base);
// The rope cos/sin table of qg_rope_table_fill on the device, cached for the last shape
// (forward and backward share it).
qg_status qg_cu_rope_table(int T, int hd, float base, const float **tab);
qg_status qg_cu_head_scale(float *x, int64_t rows, int H, int hd, const float *gain);
qg_status qg_cu_relu_pow(float *x, int64_t n, float p);
qg_status qg_cu_resid_mix(float *x, const float *x0, const float *mix, int64_t rows, int d);
qg_status qg_cu_add_scaled(float *x, const float *y, const float *s, int64_t rows, int d);
qg_status qg_cu_affine(float *x, const float *scale, const float *shift, int64_t rows, int d);
// fp32 -> bf16 (round to nearest even) of n values, for the bf16 matrix products.
qg_status qg_cu_to_bf16(void *dst, const float *src, int64_t n);
// cuda_attention.cu
qg_status qg_cu_attention(float *y, const float *q, const float *k, const float *v, int64_t B, int T, int H, int KVH,
                          int hd);
// cuda_hessian.cu (the op table's hacc_* entries)
qg_status qg_cu_hacc_create(const qg_ops *o, int64_t k, qg_hacc **out);
qg_status qg_cu_hacc_add(const qg_ops *o, qg_hacc *h, const float *x, int64_t rows);
qg_status qg_cu_hacc_read(const qg_ops *o, const qg_hacc *h, double *H, int64_t *rows);
void qg_cu_hacc_free(const qg_ops *o, qg_hacc *h);
// cuda_token_stats.cu
qg_status qg_cu_token_stats(const float *a, const float *b, const int32_t *targets, int64_t rows, int V, float softcap,
                            qg_token_stat *out);

#endif
