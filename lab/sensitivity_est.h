/* Loss-based sensitivity estimators: what the measured KLD deltas of lab/sensitivity.h
 * would cost to approximate from gradients of the float model alone.
 *
 * Both use the next-token cross-entropy of the float model on calibration sequences and
 * its gradients from the training backward (model/gpt.h, on the CPU backend):
 *
 *  - Fisher at the layer outputs (as NVIDIA ModelOpt's auto_quantize scores): for a
 *    linear layer Y = X W^T and a quantized weight W' = Q(W), dY = X (W' - W)^T and
 *      F(W') = (1/N) sum over tokens t and outputs i of (g_ti * dY_ti)^2,
 *    with g = d(sum of the sequence's token NLL)/dY and N the calibration tokens: a
 *    diagonal empirical-Fisher approximation of the loss change per token. The gradient
 *    g is captured by intercepting the backward's weight-gradient ops (matmul_bwd_w and
 *    embed_bwd) in a private copy of the CPU ops table, so the model needs no hook: each
 *    call receives exactly dY and X of one linear layer. The tied embedding gets both
 *    its output-head term (Y = the logits) and its input term (Y = the looked-up rows).
 *
 *  - Hessian trace (as HAWQ): tr(H_WW)/n * ||W' - W||^2 with H the Hessian of the mean
 *    token NLL w.r.t. the tensor's n weights, tr(H_WW) by Hutchinson's estimator: a
 *    Rademacher probe v over all the tensors at once, Hv by central differences of
 *    gradients (g(w + eps v) - g(w - eps v)) / (2 eps), and per tensor v_W . (Hv)_W, whose
 *    expectation is tr(H_WW) (cross terms have mean zero). The per-probe values are kept
 *    so a caller reports the estimator's own standard error. */
#ifndef QG_LAB_SENSITIVITY_EST_H
#define QG_LAB_SENSITIVITY_EST_H

#include <stdint.h>

#include "core/tensor.h"
#include "model/gpt.h"

/* The float model bound to one flat fp32 parameter buffer (the trainer's layout), with
 * its gradient buffer and training store, on a spying copy of the CPU ops table. */
typedef struct qg_grad_model qg_grad_model;

qg_status qg_grad_model_new(const qg_state *st, float mlp_power, qg_grad_model **out);
void qg_grad_model_free(qg_grad_model *gm);
/* The flat parameters (read-write: Hutchinson perturbs them) and their count. */
float *qg_grad_model_params(qg_grad_model *gm, int64_t *n);
/* Offset and length in the flat buffer of a state-dict name; QG_ERR_INPUT when unknown. */
qg_status qg_grad_model_find(const qg_grad_model *gm, const char *name, int64_t *off, int64_t *len);
/* grad = d(mean token NLL over the n sequences of len + 1 tokens)/d params, batch
 * sequences per forward (all when 0); *loss the mean NLL. grad holds every parameter. */
qg_status qg_grad_model_grad(qg_grad_model *gm, const int32_t *seqs, int n, int len, int batch, float *grad,
                             double *loss);

/* Fisher scores of nt tensors x nd weight deltas: delta[t * nd + d] is W' - W of tensor
 * names[t] (numel floats, host; NULL skips that pair), score[t * nd + d] gets F. One
 * forward and backward per batch of sequences. */
qg_status qg_sens_fisher(qg_grad_model *gm, const int32_t *seqs, int n, int len, int batch, int nt,
                         const char *const *names, int nd, const float *const *delta, double *score);

/* A gradient of a function of n parameters at theta (host memory). */
typedef qg_status (*qg_grad_fn)(void *ctx, const float *theta, float *grad);

/* Hutchinson over nseg disjoint segments [off[s], off[s] + len[s]) of theta: probes
 * Rademacher vectors on the union of the segments (seeded), z[p * nseg + s] = v_s . (Hv)_s
 * with Hv by central differences at step eps (absolute). theta is restored bitwise. */
qg_status qg_hutchinson(qg_grad_fn f, void *ctx, float *theta, int64_t n, const int64_t *off, const int64_t *len,
                        int nseg, int probes, double eps, uint64_t seed, double *z);

/* Mean and standard error (sample sd / sqrt(n)) of x[0], x[stride], ... (n values). */
void qg_mean_se(const double *x, int n, int stride, double *mean, double *se);

#endif
