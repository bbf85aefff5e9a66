// The CUDA backend's backward ops (kernels/cuda/cuda_backward.cu, cuda_backward_attention.cu),
// with exactly the signatures of the op table's pointers (kernels/ops.h documents what each
// computes), so kernels/cuda/cuda_ops.cu registers each with one assignment. Internal to
// kernels/ (C++).
//
// Determinism: no floating-point atomics anywhere. Parameter gradients are per-column
// sums over rows, taken in two passes (fixed row chunks, then the chunks in order), the
// embedding gradient is a stable sort of positions by token followed by in-order sums per
// token (the CPU twin's very order, so it is bit-identical), and attention's dk/dv are
// owned by one thread per key. The same inputs therefore give the same bits on every run.
#ifndef QG_KERNELS_CUDA_BACKWARD_H
#define QG_KERNELS_CUDA_BACKWARD_H

#include "kernels/ops.h"

qg_status qg_cu_embed_bwd(const qg_ops *o, float *demb, const float *dx, const int32_t *tok, int64_t n, int d);
qg_status qg_cu_rmsnorm_bwd(const qg_ops *o, float *dx, const float *dy, const float *x, int64_t rows, int dim,
                            float eps, int accumulate);
qg_status qg_cu_matmul_bwd_x(const qg_ops *o, float *dx, const float *dy, const float *w, int64_t M, int K, int N,
                             int accumulate);
qg_status qg_cu_matmul_bwd_w(const qg_ops *o, float *dw, const float *dy, const float *x, int64_t M, int K, int N);
qg_status qg_cu_rope_bwd(const qg_ops *o, float *dx, int64_t B, int T, int H, int hd, float base);
qg_status qg_cu_head_scale_bwd(const qg_ops *o, float *dx, float *dgain, const float *dy, const float *x, int64_t rows,
                               int H, int hd, const float *gain);
qg_status qg_cu_attention_bwd(const qg_ops *o, float *dq, float *dk, float *dv, const float *dy, const float *q,
                              const float *k, const float *v, const float *y, int64_t B, int T, int H, int KVH, int hd);
qg_status qg_cu_relu_pow_bwd(const qg_ops *o, float *dx, const float *dy, const float *u, int64_t n, float p);
qg_status qg_cu_resid_mix_bwd(const qg_ops *o, float *dx, float *dx0, float *dmix, const float *dy, const float *x,
                              const float *x0, const float *mix, int64_t rows, int d);
qg_status qg_cu_add_scaled_bwd(const qg_ops *o, float *dy, float *ds, const float *dx, const float *y, const float *s,
                               int64_t rows, int d, int accumulate);
qg_status qg_cu_affine_bwd(const qg_ops *o, float *dx, float *dscale, float *dshift, const float *dy, const float *x,
                           const float *scale, int64_t rows, int d);
qg_status qg_cu_xent_fwd_bwd(const qg_ops *o, float *dlogits, double *loss_sum, const float *logits,
                             const int32_t *targets, int64_t rows, int V, float softcap, float grad_scale);

// Growable device scratch private to the backward kernels (the forward's slots in
// cuda_common.h belong to the forward ops; sharing one would let a backward op free a
// buffer a forward op still holds a pointer to between calls).
enum { QG_BWS_SORT_KEYS, QG_BWS_SORT_VALS, QG_BWS_SORT_TMP, QG_BWS_PARTIAL, QG_BWS_ATT, QG_BWS_XENT,
       QG_BWS_BF16_A, QG_BWS_BF16_B, QG_BWS_COUNT };
qg_status qg_cu_bw_scratch(int slot, size_t bytes, void **p);

#endif
