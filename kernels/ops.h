/* The op interface: every numerical operation the model, the evaluator, the quantizers'
 * calibration and (later) the trainer need, as one table of function pointers per
 * backend, chosen once at start. Pointers passed to ops are backend memory (host memory
 * for the CPU backend, device memory for CUDA); activations are row-major [rows, dim].
 *
 * Every op returns a qg_status (a CUDA launch or allocation can fail). Backward ops sit
 * at the end of the table (the trainer), so model code never needs to know which backend
 * runs it. */
#ifndef QG_KERNELS_OPS_H
#define QG_KERNELS_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-token statistics of one row of logits (and optionally a second model's), the
 * evaluator's raw material. fp64 where sums are involved. */
typedef struct {
  double nll_a;   /* -log p_a(target) */
  double nll_b;   /* -log p_b(target) (0 when there is no second model) */
  double kld;     /* KL(p_a || p_b) = sum_i p_a,i (log p_a,i - log p_b,i), fp64, full vocab */
  double p_a;     /* p_a(target) */
  double p_b;     /* p_b(target) */
  int32_t top_a;  /* argmax of a's logits */
  int32_t top_b;  /* argmax of b's logits (-1 without b) */
} qg_token_stat;

/* What a table runs on. Code above kernels/ that needs a backend-specific path (the
 * quantizers' and optimizers' sub-tables) indexes its own table by this, never by name. */
typedef enum { QG_BACKEND_CPU = 0, QG_BACKEND_CUDA = 1, QG_BACKEND_COUNT } qg_backend_kind;

/* A running sum of x x^T over activation rows of one width k, kept in backend memory
 * (GPTQ calibration: quant/calibrate.c reads it back once at the end). */
typedef struct qg_hacc qg_hacc;

typedef struct qg_ops qg_ops;
struct qg_ops {
  const char *name;      /* for messages and reports only: "cpu", "cuda", "cuda-bf16" */
  qg_backend_kind kind;  /* what it runs on; memory is host memory exactly when CPU */
  int bf16;              /* matrix products take bf16 inputs (fp32 accumulation) */

  /* memory */
  qg_status (*alloc)(const qg_ops *o, void **p, size_t bytes);
  void (*free)(const qg_ops *o, void *p);
  qg_status (*upload)(const qg_ops *o, void *dst, const void *src, size_t bytes);   /* host -> backend */
  qg_status (*download)(const qg_ops *o, void *dst, const void *src, size_t bytes); /* backend -> host */
  qg_status (*copy)(const qg_ops *o, void *dst, const void *src, size_t bytes);     /* backend -> backend */

  /* x[i, :] = emb[tok[i], :] for i < n; tok holds int32 ids already checked < vocab. */
  qg_status (*embed)(const qg_ops *o, float *x, const float *emb, const int32_t *tok, int64_t n, int d);
  /* y = x / sqrt(mean(x^2) + eps) per row of `dim` (F.rms_norm without weight); y may be x. */
  qg_status (*rmsnorm)(const qg_ops *o, float *y, const float *x, int64_t rows, int dim, float eps);
  /* y[M, N] = x[M, K] . w[N, K]^T  (torch's F.linear), fp32. */
  qg_status (*matmul)(const qg_ops *o, float *y, const float *x, const float *w, int64_t M, int K, int N);
  /* Rotary embedding in place on x [B*T, H*hd]: row r has position r % T; rotate-half over
   * the full head dim with inv_freq = base^(-2i/hd), angles in float32 as torch computes. */
  qg_status (*rope)(const qg_ops *o, float *x, int64_t B, int T, int H, int hd, float base);
  /* x[r, h*hd + j] *= gain[h]. */
  qg_status (*head_scale)(const qg_ops *o, float *x, int64_t rows, int H, int hd, const float *gain);
  /* Causal scaled-dot-product attention with GQA: q [B*T, H*hd], k and v [B*T, KVH*hd],
   * y [B*T, H*hd]; query head h reads kv head h / (H / KVH); scale 1/sqrt(hd). */
  qg_status (*attention)(const qg_ops *o, float *y, const float *q, const float *k, const float *v, int64_t B,
                         int T, int H, int KVH, int hd);
  /* x = relu(x)^p elementwise (p = 2 is the contest's relu^2). */
  qg_status (*relu_pow)(const qg_ops *o, float *x, int64_t n, float p);
  /* x = mix[0, c] * x + mix[1, c] * x0 (resid_mix, mix is [2, d]). */
  qg_status (*resid_mix)(const qg_ops *o, float *x, const float *x0, const float *mix, int64_t rows, int d);
  /* x += s[c] * y (attn_scale, mlp_scale, skip weights). */
  qg_status (*add_scaled)(const qg_ops *o, float *x, const float *y, const float *s, int64_t rows, int d);
  /* x = x * scale[c] + shift[c] (the recurrent model's per-layer adapters). */
  qg_status (*affine)(const qg_ops *o, float *x, const float *scale, const float *shift, int64_t rows, int d);
  /* For each row: z = softcap * tanh(logits / softcap), log-softmax in fp64, and the
   * statistics of qg_token_stat against a second model's logits b (NULL for none).
   * targets are int32 backend memory; out is HOST memory (rows entries). */
  qg_status (*token_stats)(const qg_ops *o, const float *a, const float *b, const int32_t *targets, int64_t rows,
                           int V, float softcap, qg_token_stat *out);
  /* The same against nb models at once, a's log-softmax computed once per row: out[k *
   * stride + r] is token_stats(a, bs[k])'s row r, to the bit. NULL where a backend has no
   * such op (callers then loop token_stats). */
  qg_status (*token_stats_many)(const qg_ops *o, const float *a, const float *const *bs, int nb, const int32_t *targets,
                                int64_t rows, int V, float softcap, qg_token_stat *out, int64_t stride);

  /* ---- calibration: Hessian sums (the CPU twin: blocked fp32 ssyrk added into fp64; CUDA:
   * widened to fp64 and summed by cublasDsyrk). x is backend memory [rows, k]. read
   * writes the full symmetric k x k running sum (HOST memory, fp64) and its row count. */
  qg_status (*hacc_create)(const qg_ops *o, int64_t k, qg_hacc **out);
  qg_status (*hacc_add)(const qg_ops *o, qg_hacc *h, const float *x, int64_t rows);
  qg_status (*hacc_read)(const qg_ops *o, const qg_hacc *h, double *H, int64_t *rows);
  void (*hacc_free)(const qg_ops *o, qg_hacc *h);

  /* ---- backward twins (the trainer; kernels/cpu/cpu_ops_bwd.c). NULL where a backend has
   * none yet. Naming: dX is the gradient of the loss w.r.t. X. Parameter gradients (dw,
   * dgain, dmix, ds, dscale, dshift, demb) are always ACCUMULATED (+=), so shared blocks
   * and gradient accumulation need no extra pass; activation gradients are overwritten
   * unless the op takes an `accumulate` flag and it is non-zero. Reductions run in a
   * fixed order that does not depend on the thread count (bitwise reproducible). */

  /* demb[tok[i], :] += dx[i, :]. */
  qg_status (*embed_bwd)(const qg_ops *o, float *demb, const float *dx, const int32_t *tok, int64_t n, int d);
  /* Backward of rmsnorm from its INPUT x (the 1/rms is recomputed): dx (=|+=) r * (dy -
   * y * mean(dy * y)) with y = r x. dx may equal dy when not accumulating. */
  qg_status (*rmsnorm_bwd)(const qg_ops *o, float *dx, const float *dy, const float *x, int64_t rows, int dim, float eps,
                           int accumulate);
  /* y = x w^T: dx[M, K] (=|+=) dy[M, N] . w[N, K]. */
  qg_status (*matmul_bwd_x)(const qg_ops *o, float *dx, const float *dy, const float *w, int64_t M, int K, int N,
                            int accumulate);
  /* y = x w^T: dw[N, K] += dy[M, N]^T . x[M, K]. */
  qg_status (*matmul_bwd_w)(const qg_ops *o, float *dw, const float *dy, const float *x, int64_t M, int K, int N);
  /* Inverse rotation in place (the transpose of rope): turns d(rope(x)) into dx. */
  qg_status (*rope_bwd)(const qg_ops *o, float *dx, int64_t B, int T, int H, int hd, float base);
  /* y = x * gain[h]: dx = dy * gain[h] (dx may equal dy), dgain[h] += sum(dy * x). */
  qg_status (*head_scale_bwd)(const qg_ops *o, float *dx, float *dgain, const float *dy, const float *x, int64_t rows,
                              int H, int hd, const float *gain);
  /* Backward of `attention` (same layout): dq, dk, dv (overwritten) from dy, the inputs
   * and the forward output y. Scores and probabilities are recomputed a block of queries
   * at a time (at most QBLOCK x T of them per thread); one task per (sequence, kv head)
   * owns its slice of dk and dv, so there are no races and no atomics. */
  qg_status (*attention_bwd)(const qg_ops *o, float *dq, float *dk, float *dv, const float *dy, const float *q,
                             const float *k, const float *v, const float *y, int64_t B, int T, int H, int KVH, int hd);
  /* y = relu(u)^p: dx = dy * p * relu(u)^(p-1) (dx may equal dy). */
  qg_status (*relu_pow_bwd)(const qg_ops *o, float *dx, const float *dy, const float *u, int64_t n, float p);
  /* y = mix0 * x + mix1 * x0: dx = mix0 * dy (dx may equal dy), dx0 += mix1 * dy,
   * dmix[0, c] += sum(dy * x), dmix[1, c] += sum(dy * x0). */
  qg_status (*resid_mix_bwd)(const qg_ops *o, float *dx, float *dx0, float *dmix, const float *dy, const float *x,
                             const float *x0, const float *mix, int64_t rows, int d);
  /* x += s * y: dy (=|+=) s * dx, ds += sum(dx * y) (dx itself passes through unchanged). */
  qg_status (*add_scaled_bwd)(const qg_ops *o, float *dy, float *ds, const float *dx, const float *y, const float *s,
                              int64_t rows, int d, int accumulate);
  /* y = x * scale + shift: dx = dy * scale (dx may equal dy), dscale += sum(dy * x),
   * dshift += sum(dy). */
  qg_status (*affine_bwd)(const qg_ops *o, float *dx, float *dscale, float *dshift, const float *dy, const float *x,
                          const float *scale, int64_t rows, int d);
  /* The training loss and its gradient in one pass: per row z = softcap * tanh(l / softcap),
   * nll = logsumexp(z) - z[target]; dlogits = grad_scale * (softmax(z) - onehot(target))
   * * (1 - (z / softcap)^2). dlogits may equal logits (in place). *loss_sum (HOST memory)
   * gets the sum of nll over rows, in fp64, summed in row order. */
  qg_status (*xent_fwd_bwd)(const qg_ops *o, float *dlogits, double *loss_sum, const float *logits,
                            const int32_t *targets, int64_t rows, int V, float softcap, float grad_scale);
};

/* The CPU reference backend (OpenBLAS sgemm, the core thread pool). */
const qg_ops *qg_ops_cpu(void);
/* The CUDA backend, or NULL (with a message) where not compiled in or no GPU. */
qg_status qg_ops_cuda(const qg_ops **out);
/* By name: "cpu", "cuda", or "auto" (cuda where a GPU is present, else cpu). */
qg_status qg_ops_by_name(const char *name, const qg_ops **out);

#ifdef __cplusplus
}
#endif

#endif
