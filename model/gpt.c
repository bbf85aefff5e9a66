#include "model/gpt.h"


#include <float.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define QG_MAX_BLOCKS 256

static const char *block_names[] = {"attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight", "attn.proj.weight",
                                    "mlp.fc.weight",   "mlp.proj.weight", "attn_scale",      "mlp_scale",
                                    "resid_mix",       "attn.q_gain"};
enum { B_CQ, B_CK, B_CV, B_PROJ, B_FC, B_MPROJ, B_ASCALE, B_MSCALE, B_MIX, B_QGAIN, B_COUNT };

/* Tensor lookup that also marks the tensor as used, for the unknown-tensor report. */
typedef struct {
  const qg_state *s;
  unsigned char *used;
} lookup;

static const qg_tensor *get(lookup *l, const char *name) {
  for (int i = 0; i < l->s->n; i++)
    if (l->s->t[i].name && !strcmp(l->s->t[i].name, name)) {
      l->used[i] = 1;
      return &l->s->t[i];
    }
  return NULL;
}

static qg_status need(lookup *l, const char *name, const qg_tensor **out) {
  *out = get(l, name);
  if (!*out) return qg_fail(QG_ERR_INPUT, "not a contest GPT: tensor '%s' is missing", name);
  if (!qg_dtype_is_float((*out)->dtype))
    return qg_fail(QG_ERR_INPUT, "tensor '%s' is %s, expected a float type", name, qg_dtype_name((*out)->dtype));
  return QG_OK;
}

static qg_status check_shape(const qg_tensor *t, int ndim, int64_t d0, int64_t d1) {
  int ok = t->ndim == ndim && t->shape[0] == d0 && (ndim < 2 || t->shape[1] == d1);
  if (ok) return QG_OK;
  char got[96], want[96];
  int64_t w[2] = {d0, d1};
  return qg_fail(QG_ERR_INPUT, "tensor '%s' has shape %s, expected %s", t->name, qg_shape_str(t->ndim, t->shape, got, sizeof got),
                 qg_shape_str(ndim, w, want, sizeof want));
}

/* Parses "blocks.<i>.<rest>" and returns i (or -1). */
static int block_index(const char *name, const char **rest) {
  if (strncmp(name, "blocks.", 7) != 0) return -1;
  char *end;
  long i = strtol(name + 7, &end, 10);
  if (end == name + 7 || *end != '.' || i < 0 || i >= QG_MAX_BLOCKS) return -1;
  *rest = end + 1;
  return (int)i;
}

qg_status qg_gpt_config_from_state(const qg_state *s, const qg_gpt_options *opt, qg_gpt_config *c) {
  memset(c, 0, sizeof *c);
  lookup l = {s, calloc((size_t)s->n + 1, 1)};
  if (!l.used) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status st = QG_OK;
  const qg_tensor *t;
  if ((st = need(&l, "tok_emb.weight", &t))) goto done;
  if (t->ndim != 2) {
    st = qg_fail(QG_ERR_INPUT, "tensor 'tok_emb.weight' must be 2-D [vocab, d]");
    goto done;
  }
  c->vocab = (int)t->shape[0];
  c->d = (int)t->shape[1];
  for (int i = 0; i < s->n; i++) {
    const char *rest;
    int b = block_index(s->t[i].name, &rest);
    if (b >= 0 && b + 1 > c->n_blocks) c->n_blocks = b + 1;
  }
  if (c->n_blocks == 0) {
    st = qg_fail(QG_ERR_INPUT, "not a contest GPT: no blocks.N.* tensors");
    goto done;
  }
  char name[96];
  snprintf(name, sizeof name, "blocks.0.attn.q_gain");
  if ((st = need(&l, name, &t))) goto done;
  c->n_head = (int)t->shape[0];
  if (t->ndim != 1 || c->n_head <= 0 || c->d % c->n_head != 0 || (c->d / c->n_head) % 2 != 0) {
    st = qg_fail(QG_ERR_INPUT, "q_gain of %lld heads does not split d=%d into even head dims", (long long)t->shape[0], c->d);
    goto done;
  }
  c->head_dim = c->d / c->n_head;
  snprintf(name, sizeof name, "blocks.0.attn.c_k.weight");
  if ((st = need(&l, name, &t))) goto done;
  if (t->ndim != 2 || t->shape[0] % c->head_dim != 0 || c->n_head % (int)(t->shape[0] / c->head_dim ? t->shape[0] / c->head_dim : 1) != 0 ||
      t->shape[0] == 0) {
    st = qg_fail(QG_ERR_INPUT, "c_k has %lld rows: not a whole number of %d-wide KV heads dividing %d heads",
                 (long long)t->shape[0], c->head_dim, c->n_head);
    goto done;
  }
  c->n_kv_head = (int)(t->shape[0] / c->head_dim);
  snprintf(name, sizeof name, "blocks.0.mlp.fc.weight");
  if ((st = need(&l, name, &t))) goto done;
  c->mlp_hidden = (int)t->shape[0];
  int kvd = c->n_kv_head * c->head_dim, d = c->d, hid = c->mlp_hidden;
  int64_t shapes[B_COUNT][3] = {{2, d, d},   {2, kvd, d}, {2, kvd, d}, {2, d, d}, {2, hid, d},
                                {2, d, hid}, {1, d, 0},   {1, d, 0},   {2, 2, d}, {1, c->n_head, 0}};
  for (int b = 0; b < c->n_blocks; b++)
    for (int k = 0; k < B_COUNT; k++) {
      snprintf(name, sizeof name, "blocks.%d.%s", b, block_names[k]);
      if ((st = need(&l, name, &t)) || (st = check_shape(t, (int)shapes[k][0], shapes[k][1], shapes[k][2]))) goto done;
    }
  const qg_tensor *head = get(&l, "lm_head.weight");
  c->tied = head == NULL;
  if (head && (st = check_shape(head, 2, c->vocab, d))) goto done;
  const qg_tensor *rs = get(&l, "repeat_scales"), *rsh = get(&l, "repeat_shifts");
  if ((rs == NULL) != (rsh == NULL)) {
    st = qg_fail(QG_ERR_INPUT, "not a contest GPT: '%s' without '%s'", rs ? "repeat_scales" : "repeat_shifts",
                 rs ? "repeat_shifts" : "repeat_scales");
    goto done;
  }
  c->recurrent = rs != NULL;
  c->n_layers = c->n_blocks;
  if (rs) {
    if (rs->ndim != 2 || rs->shape[1] != d || rs->shape[0] < c->n_blocks || rs->shape[0] % c->n_blocks != 0) {
      st = qg_fail(QG_ERR_INPUT, "repeat_scales must be [k*%d, %d] for %d unique blocks", c->n_blocks, d, c->n_blocks);
      goto done;
    }
    c->n_layers = (int)rs->shape[0];
    if ((st = check_shape(rsh, 2, c->n_layers, d))) goto done;
  }
  c->n_enc = c->n_layers / 2;
  c->n_dec = c->n_layers - c->n_enc;
  c->n_skip = c->n_enc < c->n_dec ? c->n_enc : c->n_dec;
  /* a single-layer model has no skips: the contest stores skip_weights as [0, d], and a
   * checkpoint without the tensor (quantgolf's trainer writes none) is the same model */
  if (c->n_skip > 0 || qg_state_find_c(s, "skip_weights")) {
    if ((st = need(&l, "skip_weights", &t))) goto done;
    if (t->ndim != 2 || t->shape[0] != c->n_skip || t->shape[1] != d) {
      st = check_shape(t, 2, c->n_skip, d);
      goto done;
    }
  }
  /* anything left over is not part of this model */
  {
    char list[512] = "";
    int n_unknown = 0;
    for (int i = 0; i < s->n; i++) {
      if (l.used[i]) continue;
      if (n_unknown++ < 6) {
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s'%s'", len ? ", " : "", s->t[i].name);
      }
    }
    if (n_unknown) {
      st = qg_fail(QG_ERR_INPUT, "not a contest GPT: %d unknown tensor%s: %s%s", n_unknown, n_unknown > 1 ? "s" : "",
                   list, n_unknown > 6 ? ", ..." : "");
      goto done;
    }
  }
  c->mlp_power = opt && opt->mlp_power > 0 ? opt->mlp_power : 2.0f;
  c->softcap = 30.0f;
  c->rope_base = 10000.0f;
  c->eps = FLT_EPSILON;
done:
  free(l.used);
  return st;
}

int64_t qg_gpt_param_count(const qg_gpt_config *c) {
  int64_t d = c->d, kvd = (int64_t)c->n_kv_head * c->head_dim, h = c->mlp_hidden;
  int64_t per_block = 2 * d * d + 2 * kvd * d + 2 * h * d + 4 * d + c->n_head;
  int64_t n = (int64_t)c->vocab * d * (c->tied ? 1 : 2) + c->n_blocks * per_block + (int64_t)c->n_skip * d;
  if (c->recurrent) n += 2 * (int64_t)c->n_layers * d;
  return n;
}

void qg_gpt_describe(const qg_gpt_config *c, char *buf, size_t cap) {
  char rec[64] = "";
  if (c->recurrent) snprintf(rec, sizeof rec, " (%d unique blocks, recurrent)", c->n_blocks);
  snprintf(buf, cap, "%dL%s (%d enc + %d dec) d=%d H=%d KVH=%d hd=%d mlp=%d relu^%g V=%d %s", c->n_layers, rec, c->n_enc,
           c->n_dec, c->d, c->n_head, c->n_kv_head, c->head_dim, c->mlp_hidden, (double)c->mlp_power, c->vocab,
           c->tied ? "tied" : "untied head");
}

/* Converts a checkpoint tensor to fp32 and places it in backend memory. */
static qg_status upload(qg_gpt *m, const qg_state *s, const char *name, float **out) {
  const qg_tensor *t = qg_state_find_c(s, name);
  if (!t) return qg_fail(QG_ERR_INTERNAL, "tensor '%s' vanished", name);
  int64_t n = qg_tensor_numel(t);
  float *host = malloc(sizeof *host * (size_t)(n ? n : 1));
  if (!host) return qg_fail(QG_ERR_NOMEM, "out of memory converting '%s'", name);
  qg_tensor_to_f32(t, host);
  for (int64_t i = 0; i < n; i++)
    if (!(host[i] - host[i] == 0.0f)) { /* NaN or infinite */
      free(host);
      return qg_fail(QG_ERR_INPUT, "tensor '%s': element %lld is not finite", name, (long long)i);
    }
  qg_status st = m->ops->alloc(m->ops, (void **)out, sizeof *host * (size_t)n);
  if (!st) st = m->ops->upload(m->ops, *out, host, sizeof *host * (size_t)n);
  free(host);
  return st;
}

qg_status qg_gpt_init(qg_gpt *m, const qg_state *s, const qg_gpt_options *opt, const qg_ops *ops) {
  memset(m, 0, sizeof *m);
  if (opt && opt->precision != QG_PRECISION_FP32) QG_TRY(qg_ops_with_precision(ops, opt->precision, &ops));
  m->ops = ops;
  QG_TRY(qg_gpt_config_from_state(s, opt, &m->cfg));
  const qg_gpt_config *c = &m->cfg;
  m->blocks = calloc((size_t)c->n_blocks, sizeof *m->blocks);
  if (!m->blocks) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status st;
  if ((st = upload(m, s, "tok_emb.weight", &m->tok_emb))) goto fail;
  if (c->n_skip > 0 && (st = upload(m, s, "skip_weights", &m->skip_weights))) goto fail;
  if (!c->tied && (st = upload(m, s, "lm_head.weight", &m->lm_head))) goto fail;
  if (c->recurrent &&
      ((st = upload(m, s, "repeat_scales", &m->repeat_scales)) || (st = upload(m, s, "repeat_shifts", &m->repeat_shifts))))
    goto fail;
  for (int b = 0; b < c->n_blocks; b++) {
    float **dst[B_COUNT] = {&m->blocks[b].c_q,        &m->blocks[b].c_k,       &m->blocks[b].c_v,
                            &m->blocks[b].proj,       &m->blocks[b].fc,        &m->blocks[b].mlp_proj,
                            &m->blocks[b].attn_scale, &m->blocks[b].mlp_scale, &m->blocks[b].resid_mix,
                            &m->blocks[b].q_gain};
    for (int k = 0; k < B_COUNT; k++) {
      char name[96];
      snprintf(name, sizeof name, "blocks.%d.%s", b, block_names[k]);
      if ((st = upload(m, s, name, dst[k]))) goto fail;
    }
  }
  return QG_OK;
fail:
  qg_gpt_free(m);
  return st;
}

static void free_acts(qg_gpt *m) {
  float **bufs[] = {&m->x, &m->x0, &m->h, &m->q, &m->k, &m->v, &m->att, &m->u, &m->skips, &m->logits};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
    if (*bufs[i]) m->ops->free(m->ops, *bufs[i]);
    *bufs[i] = NULL;
  }
  if (m->tok) m->ops->free(m->ops, m->tok);
  if (m->targets) m->ops->free(m->ops, m->targets);
  m->tok = m->targets = NULL;
  m->max_rows = 0;
}

qg_status qg_gpt_reserve(qg_gpt *m, int64_t rows) {
  if (rows <= m->max_rows) return QG_OK;
  free_acts(m);
  const qg_gpt_config *c = &m->cfg;
  int64_t d = c->d, kvd = (int64_t)c->n_kv_head * c->head_dim;
  struct {
    float **p;
    int64_t n;
  } plan[] = {{&m->x, d},   {&m->x0, d},  {&m->h, d},   {&m->q, d},
              {&m->k, kvd}, {&m->v, kvd}, {&m->att, d}, {&m->u, c->mlp_hidden},
              {&m->skips, d * (c->n_skip ? c->n_skip : 1)}, {&m->logits, c->vocab}};
  for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
    qg_status st = m->ops->alloc(m->ops, (void **)plan[i].p, sizeof(float) * (size_t)(rows * plan[i].n));
    if (st) {
      free_acts(m);
      return qg_fail_prefix(st, "activations for %lld rows", (long long)rows);
    }
  }
  qg_status st = m->ops->alloc(m->ops, (void **)&m->tok, sizeof(int32_t) * (size_t)rows);
  if (!st) st = m->ops->alloc(m->ops, (void **)&m->targets, sizeof(int32_t) * (size_t)rows);
  if (st) {
    free_acts(m);
    return st;
  }
  m->max_rows = rows;
  return QG_OK;
}

void qg_gpt_free(qg_gpt *m) {
  if (!m->ops) return;
  free_acts(m);
  float *singles[] = {m->tok_emb, m->lm_head, m->skip_weights, m->repeat_scales, m->repeat_shifts};
  for (size_t i = 0; i < sizeof singles / sizeof singles[0]; i++)
    if (singles[i]) m->ops->free(m->ops, singles[i]);
  for (int b = 0; m->blocks && b < m->cfg.n_blocks; b++) {
    float *w[] = {m->blocks[b].c_q,        m->blocks[b].c_k,       m->blocks[b].c_v,       m->blocks[b].proj,
                  m->blocks[b].fc,         m->blocks[b].mlp_proj,  m->blocks[b].attn_scale, m->blocks[b].mlp_scale,
                  m->blocks[b].resid_mix,  m->blocks[b].q_gain};
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++)
      if (w[i]) m->ops->free(m->ops, w[i]);
  }
  free(m->blocks);
  memset(m, 0, sizeof *m);
}

/* Reports a linear layer's input to the calibration tap, if any. */
static qg_status tap(qg_gpt *m, int block, const char *const *roles, int n, const float *x, int64_t rows, int K) {
  if (!m->tap) return QG_OK;
  char buf[4][96];
  const char *names[4];
  for (int i = 0; i < n && i < 4; i++) {
    if (block >= 0)
      snprintf(buf[i], sizeof buf[i], "blocks.%d.%s", block, roles[i]);
    else
      snprintf(buf[i], sizeof buf[i], "%s", roles[i]);
    names[i] = buf[i];
  }
  return m->tap(m->tap_ctx, names, n, x, rows, K);
}

static const char *const tap_qkv[] = {"attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight"};
static const char *const tap_proj[] = {"attn.proj.weight"};
static const char *const tap_fc[] = {"mlp.fc.weight"};
static const char *const tap_mproj[] = {"mlp.proj.weight"};

/* One transformer block on x (rows = B*T). */
static qg_status block_forward(qg_gpt *m, const qg_gpt_block *w, int64_t B, int T) {
  int bi = (int)(w - m->blocks);
  const qg_ops *o = m->ops;
  const qg_gpt_config *c = &m->cfg;
  int64_t R = B * T;
  int d = c->d, kvd = c->n_kv_head * c->head_dim, hd = c->head_dim;
  QG_TRY(o->resid_mix(o, m->x, m->x0, w->resid_mix, R, d));
  QG_TRY(o->rmsnorm(o, m->h, m->x, R, d, c->eps));
  QG_TRY(tap(m, bi, tap_qkv, 3, m->h, R, d));
  QG_TRY(o->matmul(o, m->q, m->h, w->c_q, R, d, d));
  QG_TRY(o->matmul(o, m->k, m->h, w->c_k, R, d, kvd));
  QG_TRY(o->matmul(o, m->v, m->h, w->c_v, R, d, kvd));
  QG_TRY(o->rmsnorm(o, m->q, m->q, R * c->n_head, hd, c->eps));
  QG_TRY(o->rmsnorm(o, m->k, m->k, R * c->n_kv_head, hd, c->eps));
  QG_TRY(o->rope(o, m->q, B, T, c->n_head, hd, c->rope_base));
  QG_TRY(o->rope(o, m->k, B, T, c->n_kv_head, hd, c->rope_base));
  QG_TRY(o->head_scale(o, m->q, R, c->n_head, hd, w->q_gain));
  QG_TRY(o->attention(o, m->att, m->q, m->k, m->v, B, T, c->n_head, c->n_kv_head, hd));
  QG_TRY(tap(m, bi, tap_proj, 1, m->att, R, d));
  QG_TRY(o->matmul(o, m->h, m->att, w->proj, R, d, d));
  QG_TRY(o->add_scaled(o, m->x, m->h, w->attn_scale, R, d));
  QG_TRY(o->rmsnorm(o, m->h, m->x, R, d, c->eps));
  QG_TRY(tap(m, bi, tap_fc, 1, m->h, R, d));
  QG_TRY(o->matmul(o, m->u, m->h, w->fc, R, d, c->mlp_hidden));
  QG_TRY(o->relu_pow(o, m->u, R * c->mlp_hidden, c->mlp_power));
  QG_TRY(tap(m, bi, tap_mproj, 1, m->u, R, c->mlp_hidden));
  QG_TRY(o->matmul(o, m->h, m->u, w->mlp_proj, R, c->mlp_hidden, d));
  QG_TRY(o->add_scaled(o, m->x, m->h, w->mlp_scale, R, d));
  return QG_OK;
}

/* Effective layer i: block i mod n_blocks, then the recurrent adapters. */
static qg_status layer_forward(qg_gpt *m, int i, int64_t B, int T) {
  const qg_gpt_config *c = &m->cfg;
  QG_TRY(block_forward(m, &m->blocks[i % c->n_blocks], B, T));
  if (c->recurrent)
    QG_TRY(m->ops->affine(m->ops, m->x, m->repeat_scales + (int64_t)i * c->d, m->repeat_shifts + (int64_t)i * c->d,
                          B * T, c->d));
  return QG_OK;
}

qg_status qg_gpt_forward(qg_gpt *m, const int32_t *tokens, int64_t B, int T) {
  const qg_ops *o = m->ops;
  const qg_gpt_config *c = &m->cfg;
  int64_t R = B * T;
  if (B <= 0 || T <= 0) return qg_fail(QG_ERR_INPUT, "forward: empty batch");
  for (int64_t i = 0; i < R; i++)
    if (tokens[i] < 0 || tokens[i] >= c->vocab)
      return qg_fail(QG_ERR_INPUT, "token %lld at position %lld is outside the model's vocabulary of %d",
                     (long long)tokens[i], (long long)i, c->vocab);
  QG_TRY(qg_gpt_reserve(m, R));
  size_t act = sizeof(float) * (size_t)R * (size_t)c->d;
  QG_TRY(o->upload(o, m->tok, tokens, sizeof(int32_t) * (size_t)R));
  QG_TRY(o->embed(o, m->x, m->tok_emb, m->tok, R, c->d));
  QG_TRY(o->rmsnorm(o, m->x, m->x, R, c->d, c->eps));
  QG_TRY(o->copy(o, m->x0, m->x, act));
  /* U-Net: the encoder half stores its outputs, the decoder half adds them back in reverse */
  for (int i = 0; i < c->n_enc; i++) {
    QG_TRY(layer_forward(m, i, B, T));
    if (i < c->n_skip) QG_TRY(o->copy(o, m->skips + (size_t)i * R * c->d, m->x, act));
  }
  for (int i = 0; i < c->n_dec; i++) {
    if (i < c->n_skip)
      QG_TRY(o->add_scaled(o, m->x, m->skips + (size_t)(c->n_skip - 1 - i) * R * c->d, m->skip_weights + (int64_t)i * c->d,
                           R, c->d));
    QG_TRY(layer_forward(m, c->n_enc + i, B, T));
  }
  QG_TRY(o->rmsnorm(o, m->h, m->x, R, c->d, c->eps));
  static const char *const head_tied[] = {"tok_emb.weight"}, *const head_untied[] = {"lm_head.weight"};
  QG_TRY(tap(m, -1, c->tied ? head_tied : head_untied, 1, m->h, R, c->d));
  if (m->taps_only && m->tap) return QG_OK;
  return o->matmul(o, m->logits, m->h, c->tied ? m->tok_emb : m->lm_head, R, c->d, c->vocab);
}

qg_status qg_gpt_score(qg_gpt *m, const int32_t *seqs, int64_t B, int T, qg_token_stat *out) {
  int64_t R = B * T;
  int32_t *in = malloc(sizeof *in * (size_t)R * 2);
  if (!in) return qg_fail(QG_ERR_NOMEM, "out of memory");
  int32_t *tg = in + R;
  for (int64_t b = 0; b < B; b++)
    for (int t = 0; t < T; t++) {
      in[b * T + t] = seqs[b * (T + 1) + t];
      tg[b * T + t] = seqs[b * (T + 1) + t + 1];
    }
  qg_status st = QG_OK;
  for (int64_t i = 0; i < R && !st; i++)
    if (tg[i] < 0 || tg[i] >= m->cfg.vocab)
      st = qg_fail(QG_ERR_INPUT, "target token %d is outside the model's vocabulary of %d", tg[i], m->cfg.vocab);
  if (!st) st = qg_gpt_forward(m, in, B, T);
  if (!st) st = m->ops->upload(m->ops, m->targets, tg, sizeof *tg * (size_t)R);
  if (!st) st = m->ops->token_stats(m->ops, m->logits, NULL, m->targets, R, m->cfg.vocab, m->cfg.softcap, out);
  free(in);
  return st;
}

