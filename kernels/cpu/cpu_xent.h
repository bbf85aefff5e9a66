/* The CPU backend's training loss (kernels/cpu/cpu_xent.c): logit softcap, log-softmax
 * and cross-entropy with their gradient in one pass (the xent_fwd_bwd op of
 * kernels/ops.h), and the vectorised tanh the softcap uses. */
#ifndef QG_KERNELS_CPU_CPU_XENT_H
#define QG_KERNELS_CPU_CPU_XENT_H

#include <stdint.h>

#include "kernels/ops.h"

/* t[i] = tanh(x[i]) for i < n, tmp: n floats of scratch (t, x, tmp distinct). Relative
 * error <= 2.5e-7 against the fp64 tanh (tests/test_xent.c); 1 exactly from |x| >= 44.2
 * (and at the floats rounding there below), odd, NaN for NaN. */
void qg_cpu_vtanhf(float *t, const float *x, int64_t n, float *tmp);

/* The op: softcap z = cap tanh(l / cap), per row loss lse(z) - z[target] summed into
 * *loss_sum (fp64, row order), dlogits = grad_scale (softmax(z) - onehot) (1 - (z/cap)^2);
 * dlogits may be logits. The softcap's tanh and the softmax's exp are the vectorised
 * ones; the sums are fp64. Same bits for any thread count. */
qg_status qg_cpu_xent_fwd_bwd(const qg_ops *o, float *dlogits, double *loss_sum, const float *logits,
                              const int32_t *targets, int64_t rows, int V, float softcap, float grad_scale);

/* The same with libm's tanhf and fp64 exp per logit (the path before the vectorised one):
 * the reference for tests. */
qg_status qg_cpu_xent_fwd_bwd_exact(float *dlogits, double *loss_sum, const float *logits, const int32_t *targets,
                                    int64_t rows, int V, float softcap, float grad_scale);

#endif
