/* The contest GPT (train_gpt.py), and its depth-recurrent variant, written once against
 * kernels/ops.h. The shape is read from the checkpoint's tensors; weights are converted to
 * fp32 in backend memory; activations live in one arena sized up front for a maximum
 * batch of rows. */
#ifndef QG_MODEL_GPT_H
#define QG_MODEL_GPT_H

#include "core/tensor.h"
#include "kernels/cuda_precision.h"
#include "kernels/ops.h"

typedef struct {
  int vocab, d;
  int n_blocks;    /* unique blocks stored in the checkpoint */
  int n_layers;    /* effective depth (= n_blocks unless recurrent) */
  int n_enc, n_dec, n_skip;
  int n_head, n_kv_head, head_dim, mlp_hidden;
  int tied;        /* output head is tok_emb (no lm_head.weight) */
  int recurrent;   /* repeat_scales / repeat_shifts present */
  float mlp_power; /* relu(x)^p; not recoverable from weights (default 2) */
  float softcap;   /* 30 */
  float rope_base; /* 10000 */
  float eps;       /* F.rms_norm's default: float32 machine epsilon */
} qg_gpt_config;

typedef struct {
  float mlp_power;        /* 0 = default 2 */
  qg_precision precision; /* matrix products: fp32 (default) or bf16 (CUDA only) */
} qg_gpt_options;

typedef struct {
  float *c_q, *c_k, *c_v, *proj, *fc, *mlp_proj;
  float *attn_scale, *mlp_scale, *resid_mix, *q_gain;
} qg_gpt_block;

typedef struct {
  qg_gpt_config cfg;
  const qg_ops *ops;
  float *tok_emb, *lm_head, *skip_weights, *repeat_scales, *repeat_shifts;
  qg_gpt_block *blocks;
  /* activation arena, sized for max_rows = batch * seq */
  int64_t max_rows;
  float *x, *x0, *h, *q, *k, *v, *att, *u, *skips, *logits;
  int32_t *tok, *targets;
  /* Optional observer of every linear layer's input (calibration): called before each
   * matrix product with the state-dict names of the weights that read this input (c_q,
   * c_k and c_v share one), and the input rows x [rows, K] in backend memory. A recurrent
   * model calls it once per effective layer, so a shared block's inputs accumulate. */
  qg_status (*tap)(void *ctx, const char *const *names, int n_names, const float *x, int64_t rows, int K);
  void *tap_ctx;
  /* Set by a caller that reads only the taps (calibration): the forward stops after the
   * output head's tap, without the logits product (m->logits is then not written). */
  int taps_only;
} qg_gpt;

/* Infers the configuration from tensor names and shapes, checking every tensor: unknown
 * names are an error listing them, missing ones an error naming them, shapes must agree. */
qg_status qg_gpt_config_from_state(const qg_state *s, const qg_gpt_options *opt, qg_gpt_config *cfg);
/* Builds the model on a backend (weights converted to fp32 and uploaded). With
 * opt->precision bf16 the model runs on that backend's bf16 table (m->ops). */
qg_status qg_gpt_init(qg_gpt *m, const qg_state *s, const qg_gpt_options *opt, const qg_ops *ops);
/* Sizes the activation arena for up to max_rows = batch * seq rows. */
qg_status qg_gpt_reserve(qg_gpt *m, int64_t max_rows);
void qg_gpt_free(qg_gpt *m);

/* Forward pass over B sequences of T tokens (host memory, ids < vocab): leaves the logits
 * [B*T, vocab] in m->logits (backend memory). */
qg_status qg_gpt_forward(qg_gpt *m, const int32_t *tokens, int64_t B, int T);
/* Forward + per-token statistics: the target of position t is tokens[t + 1] within each
 * sequence of T + 1 tokens (B sequences laid out back to back, B*(T+1) ids). out gets
 * B*T entries (host memory). */
qg_status qg_gpt_score(qg_gpt *m, const int32_t *seqs, int64_t B, int T, qg_token_stat *out);
/* Parameter count of the model as stored. */
int64_t qg_gpt_param_count(const qg_gpt_config *c);
/* One line such as "7L (3 enc + 4 dec) d=384 H=8 KVH=4 hd=48 mlp=768 V=1024 tied". */
void qg_gpt_describe(const qg_gpt_config *c, char *buf, size_t cap);

/* ---- training (model/gpt_backward.c) ---------------------------------------------------
 * The trainer keeps every parameter in one flat fp32 buffer (so optimizers, checkpoints
 * and gradient buffers are plain arrays) and *binds* qg_gpt structs to it: one for the
 * weights the forward reads, one for the gradients the backward accumulates into (same
 * field names, same layout). The inference forward above is untouched; training uses its
 * own forward that keeps per-layer activations in a qg_gpt_train_store. */

/* Where a parameter belongs in the contest's optimizer split. */
typedef enum {
  QG_PARAM_EMBED = 0, /* tok_emb.weight (Adam, tied/embed lr) */
  QG_PARAM_HEAD,      /* lm_head.weight when untied (Adam, head lr) */
  QG_PARAM_MATRIX,    /* 2-D block matrices (Muon) */
  QG_PARAM_CONTROL    /* vectors and control tensors (Adam, scalar lr) */
} qg_param_role;

typedef struct {
  char name[64]; /* contest state-dict name */
  int ndim;
  int64_t shape[2];
  int64_t offset, numel; /* in floats, within the flat buffer */
  qg_param_role role;
} qg_gpt_param;

typedef struct {
  qg_gpt_param *p; /* in the contest's state_dict order */
  int n;
  int64_t total; /* floats */
} qg_gpt_layout;

/* A configuration from hyperparameters (the trainer's --layers/--dim/...): checks that
 * heads divide d into even head dims, KV heads divide heads; QG_ERR_INPUT otherwise.
 * n_blocks = layers (not recurrent); mlp_power 0 means 2. */
qg_status qg_gpt_config_make(int vocab, int layers, int d, int heads, int kv_heads, int mlp_hidden, int tied,
                             float mlp_power, qg_gpt_config *out);
qg_status qg_gpt_layout_make(const qg_gpt_config *c, qg_gpt_layout *out);
void qg_gpt_layout_free(qg_gpt_layout *l);
/* Points m's weight fields into flat (backend memory laid out as the layout says).
 * m->ops is set, no activations; release with qg_gpt_unbind, never qg_gpt_free. */
qg_status qg_gpt_bind(qg_gpt *m, const qg_gpt_config *c, const qg_gpt_layout *l, float *flat, const qg_ops *ops);
void qg_gpt_unbind(qg_gpt *m);

/* Activations kept by the training forward for the backward, per effective layer: the
 * layer input, the mixed residual, raw q/k (before their RMSNorm), v, the attention
 * output, its projection, the mid residual, the MLP pre-activation and its projection;
 * plus the U-Net skips and the logits (turned into d logits in place). Everything else
 * (norm outputs, rotated q/k, relu^p) is recomputed in the backward. */
typedef struct {
  const qg_ops *ops;
  int64_t rows; /* capacity: B * T */
  int n_layers, d, kvd, hid, vocab, n_skip;
  float *xin;                                     /* (n_layers + 1) x rows x d */
  float *xm, *q0, *k0, *v, *att, *p, *x2, *u, *mo; /* n_layers x rows x (d | kvd | hid) */
  float *x0, *skips, *dskips, *logits;
  /* scratch shared by forward and backward */
  float *h, *s1, *s2, *a, *du, *qr, *qg, *dq, *kr, *dk, *dv, *g, *dx0, *ones;
  int32_t *tok, *tgt;
  int B, T; /* of the last forward */
} qg_gpt_train_store;

qg_status qg_gpt_train_reserve(qg_gpt_train_store *s, const qg_gpt *m, int64_t rows);
void qg_gpt_train_store_free(qg_gpt_train_store *s);
/* Training forward over B sequences of T inputs with their targets (host int32, checked
 * against the vocabulary): stores activations, returns the mean token NLL in *loss and
 * leaves d(grad_scale * mean NLL)/d logits in the store for qg_gpt_backward. */
qg_status qg_gpt_forward_train(qg_gpt *m, qg_gpt_train_store *s, const int32_t *inputs, const int32_t *targets, int B,
                               int T, float grad_scale, double *loss);
/* Accumulates (+=) the gradient of grad_scale * mean NLL of the last forward_train into
 * grads, a qg_gpt bound to the gradient buffer (same config and layout as m). */
qg_status qg_gpt_backward(qg_gpt *m, qg_gpt_train_store *s, qg_gpt *grads);

#endif
