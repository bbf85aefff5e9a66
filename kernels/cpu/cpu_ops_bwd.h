/* The CPU backend's backward ops (kernels/cpu/cpu_ops_bwd.c), wired into the CPU table in
 * kernels/cpu/cpu_ops.c. Semantics are documented beside the pointers in kernels/ops.h. */
#ifndef QG_KERNELS_CPU_CPU_OPS_BWD_H
#define QG_KERNELS_CPU_CPU_OPS_BWD_H

#include "kernels/ops.h"

qg_status qg_cpu_embed_bwd(const qg_ops *o, float *demb, const float *dx, const int32_t *tok, int64_t n, int d);
qg_status qg_cpu_rmsnorm_bwd(const qg_ops *o, float *dx, const float *dy, const float *x, int64_t rows, int dim,
                             float eps, int accumulate);
qg_status qg_cpu_matmul_bwd_x(const qg_ops *o, float *dx, const float *dy, const float *w, int64_t M, int K, int N,
                              int accumulate);
qg_status qg_cpu_matmul_bwd_w(const qg_ops *o, float *dw, const float *dy, const float *x, int64_t M, int K, int N);
qg_status qg_cpu_rope_bwd(const qg_ops *o, float *dx, int64_t B, int T, int H, int hd, float base);
qg_status qg_cpu_head_scale_bwd(const qg_ops *o, float *dx, float *dgain, const float *dy, const float *x,
                                int64_t rows, int H, int hd, const float *gain);
qg_status qg_cpu_attention_bwd(const qg_ops *o, float *dq, float *dk, float *dv, const float *dy, const float *q,
                               const float *k, const float *v, const float *y, int64_t B, int T, int H, int KVH,
                               int hd);
qg_status qg_cpu_relu_pow_bwd(const qg_ops *o, float *dx, const float *dy, const float *u, int64_t n, float p);
qg_status qg_cpu_resid_mix_bwd(const qg_ops *o, float *dx, float *dx0, float *dmix, const float *dy, const float *x,
                               const float *x0, const float *mix, int64_t rows, int d);
qg_status qg_cpu_add_scaled_bwd(const qg_ops *o, float *dy, float *ds, const float *dx, const float *y,
                                const float *s, int64_t rows, int d, int accumulate);
qg_status qg_cpu_affine_bwd(const qg_ops *o, float *dx, float *dscale, float *dshift, const float *dy,
                            const float *x, const float *scale, int64_t rows, int d);
/* xent_fwd_bwd: kernels/cpu/cpu_xent.h */

#endif
