/* Training for the contest GPT: a flat parameter layout, binding qg_gpt structs to it,
 * the training forward (which keeps what the backward needs) and the backward, all on the
 * op interface. Written to mirror block_forward in gpt.c line for line; the tests check
 * the training loss against the inference forward and every gradient against finite
 * differences of an independent fp64 model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gpt.h"

qg_status qg_gpt_config_make(int vocab, int layers, int d, int heads, int kv_heads, int mlp_hidden, int tied,
                             float mlp_power, qg_gpt_config *c) {
  memset(c, 0, sizeof *c);
  if (vocab < 2 || vocab > 65536) return qg_fail(QG_ERR_INPUT, "vocabulary of %d is outside 2..65536", vocab);
  if (layers < 1 || layers > 256) return qg_fail(QG_ERR_INPUT, "%d layers is outside 1..256", layers);
  if (d < 2 || heads < 1 || d % heads != 0 || (d / heads) % 2 != 0)
    return qg_fail(QG_ERR_INPUT, "--dim %d does not split into %d heads of an even head dim", d, heads);
  if (kv_heads < 1 || heads % kv_heads != 0)
    return qg_fail(QG_ERR_INPUT, "%d heads are not a multiple of %d KV heads", heads, kv_heads);
  if (mlp_hidden < 1) return qg_fail(QG_ERR_INPUT, "MLP width %d must be positive", mlp_hidden);
  c->vocab = vocab;
  c->d = d;
  c->n_blocks = c->n_layers = layers;
  c->n_enc = layers / 2;
  c->n_dec = layers - c->n_enc;
  c->n_skip = c->n_enc < c->n_dec ? c->n_enc : c->n_dec;
  c->n_head = heads;
  c->n_kv_head = kv_heads;
  c->head_dim = d / heads;
  c->mlp_hidden = mlp_hidden;
  c->tied = tied;
  c->mlp_power = mlp_power > 0 ? mlp_power : 2.0f;
  c->softcap = 30.0f;
  c->rope_base = 10000.0f;
  c->eps = 1.1920928955078125e-07f; /* FLT_EPSILON, as F.rms_norm(eps=None) */
  return QG_OK;
}

/* ---- layout ------------------------------------------------------------------------- */

static void add_param(qg_gpt_layout *l, const char *name, int ndim, int64_t d0, int64_t d1, qg_param_role role) {
  qg_gpt_param *p = &l->p[l->n++];
  snprintf(p->name, sizeof p->name, "%s", name);
  p->ndim = ndim;
  p->shape[0] = d0;
  p->shape[1] = ndim > 1 ? d1 : 0;
  p->numel = ndim > 1 ? d0 * d1 : d0;
  p->offset = l->total;
  p->role = role;
  l->total += p->numel;
}

/* The contest's state_dict order: the GPT's own parameter (skip_weights), then tok_emb,
 * then per block its own parameters (attn_scale, mlp_scale, resid_mix) before those of
 * its submodules (attn.q_gain, attn.c_q/c_k/c_v/proj, mlp.fc/proj), then lm_head. */
qg_status qg_gpt_layout_make(const qg_gpt_config *c, qg_gpt_layout *l) {
  memset(l, 0, sizeof *l);
  l->p = calloc((size_t)c->n_blocks * 10 + 6, sizeof *l->p);
  if (!l->p) return qg_fail(QG_ERR_NOMEM, "out of memory");
  int64_t d = c->d, kvd = (int64_t)c->n_kv_head * c->head_dim, hid = c->mlp_hidden;
  if (c->n_skip) add_param(l, "skip_weights", 2, c->n_skip, d, QG_PARAM_CONTROL);
  add_param(l, "tok_emb.weight", 2, c->vocab, d, QG_PARAM_EMBED);
  char n[64];
  for (int b = 0; b < c->n_blocks; b++) {
#define P(suffix, nd, d0, d1, role)                          \
  do {                                                       \
    snprintf(n, sizeof n, "blocks.%d.%s", b, suffix);        \
    add_param(l, n, nd, d0, d1, role);                       \
  } while (0)
    P("attn_scale", 1, d, 0, QG_PARAM_CONTROL);
    P("mlp_scale", 1, d, 0, QG_PARAM_CONTROL);
    P("resid_mix", 2, 2, d, QG_PARAM_CONTROL);
    P("attn.q_gain", 1, c->n_head, 0, QG_PARAM_CONTROL);
    P("attn.c_q.weight", 2, d, d, QG_PARAM_MATRIX);
    P("attn.c_k.weight", 2, kvd, d, QG_PARAM_MATRIX);
    P("attn.c_v.weight", 2, kvd, d, QG_PARAM_MATRIX);
    P("attn.proj.weight", 2, d, d, QG_PARAM_MATRIX);
    P("mlp.fc.weight", 2, hid, d, QG_PARAM_MATRIX);
    P("mlp.proj.weight", 2, d, hid, QG_PARAM_MATRIX);
#undef P
  }
  if (!c->tied) add_param(l, "lm_head.weight", 2, c->vocab, d, QG_PARAM_HEAD);
  if (c->recurrent) {
    add_param(l, "repeat_scales", 2, c->n_layers, d, QG_PARAM_CONTROL);
    add_param(l, "repeat_shifts", 2, c->n_layers, d, QG_PARAM_CONTROL);
  }
  return QG_OK;
}

void qg_gpt_layout_free(qg_gpt_layout *l) {
  free(l->p);
  memset(l, 0, sizeof *l);
}

qg_status qg_gpt_bind(qg_gpt *m, const qg_gpt_config *c, const qg_gpt_layout *l, float *flat, const qg_ops *ops) {
  memset(m, 0, sizeof *m);
  m->cfg = *c;
  m->ops = ops;
  m->blocks = calloc((size_t)c->n_blocks, sizeof *m->blocks);
  if (!m->blocks) return qg_fail(QG_ERR_NOMEM, "out of memory");
  int pi = 0;
  if (c->n_skip) m->skip_weights = flat + l->p[pi++].offset;
  m->tok_emb = flat + l->p[pi++].offset;
  for (int b = 0; b < c->n_blocks; b++) {
    qg_gpt_block *w = &m->blocks[b];
    float **f[10] = {&w->attn_scale, &w->mlp_scale, &w->resid_mix, &w->q_gain, &w->c_q,
                     &w->c_k,        &w->c_v,       &w->proj,      &w->fc,     &w->mlp_proj};
    for (int k = 0; k < 10; k++) *f[k] = flat + l->p[pi++].offset;
  }
  if (!c->tied) m->lm_head = flat + l->p[pi++].offset;
  if (c->recurrent) {
    m->repeat_scales = flat + l->p[pi++].offset;
    m->repeat_shifts = flat + l->p[pi++].offset;
  }
  if (pi != l->n) return qg_fail(QG_ERR_INTERNAL, "layout has %d parameters, bound %d", l->n, pi);
  return QG_OK;
}

void qg_gpt_unbind(qg_gpt *m) {
  free(m->blocks);
  memset(m, 0, sizeof *m);
}

/* ---- the activation store -------------------------------------------------------------- */

typedef struct {
  float **p;
  int64_t n; /* floats */
} plan_item;

void qg_gpt_train_store_free(qg_gpt_train_store *s) {
  if (!s->ops) return;
  float **all[] = {&s->xin, &s->xm, &s->q0, &s->k0, &s->v,  &s->att, &s->p,  &s->x2, &s->u,   &s->mo,
                   &s->x0,  &s->skips, &s->dskips, &s->logits, &s->h, &s->s1, &s->s2, &s->a, &s->du, &s->qr,
                   &s->qg,  &s->dq, &s->kr, &s->dk, &s->dv, &s->g, &s->dx0, &s->ones};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
    if (*all[i]) s->ops->free(s->ops, *all[i]);
  if (s->tok) s->ops->free(s->ops, s->tok);
  if (s->tgt) s->ops->free(s->ops, s->tgt);
  memset(s, 0, sizeof *s);
}

qg_status qg_gpt_train_reserve(qg_gpt_train_store *s, const qg_gpt *m, int64_t rows) {
  const qg_gpt_config *c = &m->cfg;
  int kvd = c->n_kv_head * c->head_dim;
  if (s->ops && s->rows >= rows && s->n_layers == c->n_layers && s->d == c->d && s->kvd == kvd &&
      s->hid == c->mlp_hidden && s->vocab == c->vocab)
    return QG_OK;
  qg_gpt_train_store_free(s);
  s->ops = m->ops;
  s->rows = rows;
  s->n_layers = c->n_layers;
  s->d = c->d;
  s->kvd = kvd;
  s->hid = c->mlp_hidden;
  s->vocab = c->vocab;
  s->n_skip = c->n_skip;
  int64_t L = c->n_layers, d = c->d, R = rows, hid = c->mlp_hidden, ns = c->n_skip ? c->n_skip : 1;
  plan_item plan[] = {
      {&s->xin, (L + 1) * R * d}, {&s->xm, L * R * d},    {&s->q0, L * R * d},     {&s->k0, L * R * kvd},
      {&s->v, L * R * kvd},       {&s->att, L * R * d},   {&s->p, L * R * d},      {&s->x2, L * R * d},
      {&s->u, L * R * hid},       {&s->mo, L * R * d},    {&s->x0, R * d},         {&s->skips, ns * R * d},
      {&s->dskips, ns * R * d},   {&s->logits, R * c->vocab}, {&s->h, R * d},      {&s->s1, R * d},
      {&s->s2, R * d},            {&s->a, R * hid},       {&s->du, R * hid},       {&s->qr, R * d},
      {&s->qg, R * d},            {&s->dq, R * d},        {&s->kr, R * kvd},       {&s->dk, R * kvd},
      {&s->dv, R * kvd},          {&s->g, R * d},         {&s->dx0, R * d},        {&s->ones, d}};
  for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
    qg_status st = s->ops->alloc(s->ops, (void **)plan[i].p, sizeof(float) * (size_t)plan[i].n);
    if (st) {
      qg_gpt_train_store_free(s);
      return qg_fail_prefix(st, "training activations for %lld rows", (long long)rows);
    }
  }
  qg_status st = s->ops->alloc(s->ops, (void **)&s->tok, sizeof(int32_t) * (size_t)R);
  if (!st) st = s->ops->alloc(s->ops, (void **)&s->tgt, sizeof(int32_t) * (size_t)R);
  float *ones = malloc(sizeof *ones * (size_t)d);
  if (!st && !ones) st = qg_fail(QG_ERR_NOMEM, "out of memory");
  if (!st) {
    for (int64_t j = 0; j < d; j++) ones[j] = 1.0f;
    st = s->ops->upload(s->ops, s->ones, ones, sizeof *ones * (size_t)d);
  }
  free(ones);
  if (st) qg_gpt_train_store_free(s);
  return st;
}

/* ---- forward ------------------------------------------------------------------------ */

/* Per-layer slot pointers. */
typedef struct {
  float *xin, *out, *xm, *q0, *k0, *v, *att, *p, *x2, *u, *mo;
} slots;

static slots layer_slots(const qg_gpt_train_store *s, int l, int64_t R) {
  int64_t d = s->d, kvd = s->kvd, hid = s->hid;
  slots z = {s->xin + l * R * d, s->xin + (l + 1) * R * d, s->xm + l * R * d, s->q0 + l * R * d, s->k0 + l * R * kvd,
             s->v + l * R * kvd, s->att + l * R * d,       s->p + l * R * d,  s->x2 + l * R * d, s->u + l * R * hid,
             s->mo + l * R * d};
  return z;
}

/* One block, as block_forward in gpt.c, writing its intermediates into the layer's slots
 * and its output into the next layer's input slot. */
static qg_status block_train(qg_gpt *m, qg_gpt_train_store *s, const qg_gpt_block *w, const slots *z, int B, int T) {
  const qg_ops *o = m->ops;
  const qg_gpt_config *c = &m->cfg;
  int64_t R = (int64_t)B * T;
  int d = c->d, kvd = s->kvd, hd = c->head_dim, hid = c->mlp_hidden;
  size_t act = sizeof(float) * (size_t)R * (size_t)d;
  QG_TRY(o->copy(o, z->xm, z->xin, act));
  QG_TRY(o->resid_mix(o, z->xm, s->x0, w->resid_mix, R, d));
  QG_TRY(o->rmsnorm(o, s->h, z->xm, R, d, c->eps));
  QG_TRY(o->matmul(o, z->q0, s->h, w->c_q, R, d, d));
  QG_TRY(o->matmul(o, z->k0, s->h, w->c_k, R, d, kvd));
  QG_TRY(o->matmul(o, z->v, s->h, w->c_v, R, d, kvd));
  QG_TRY(o->rmsnorm(o, s->qg, z->q0, R * c->n_head, hd, c->eps));
  QG_TRY(o->rmsnorm(o, s->kr, z->k0, R * c->n_kv_head, hd, c->eps));
  QG_TRY(o->rope(o, s->qg, B, T, c->n_head, hd, c->rope_base));
  QG_TRY(o->rope(o, s->kr, B, T, c->n_kv_head, hd, c->rope_base));
  QG_TRY(o->head_scale(o, s->qg, R, c->n_head, hd, w->q_gain));
  QG_TRY(o->attention(o, z->att, s->qg, s->kr, z->v, B, T, c->n_head, c->n_kv_head, hd));
  QG_TRY(o->matmul(o, z->p, z->att, w->proj, R, d, d));
  QG_TRY(o->copy(o, z->x2, z->xm, act));
  QG_TRY(o->add_scaled(o, z->x2, z->p, w->attn_scale, R, d));
  QG_TRY(o->rmsnorm(o, s->h, z->x2, R, d, c->eps));
  QG_TRY(o->matmul(o, z->u, s->h, w->fc, R, d, hid));
  QG_TRY(o->copy(o, s->a, z->u, sizeof(float) * (size_t)R * (size_t)hid));
  QG_TRY(o->relu_pow(o, s->a, R * hid, c->mlp_power));
  QG_TRY(o->matmul(o, z->mo, s->a, w->mlp_proj, R, hid, d));
  QG_TRY(o->copy(o, z->out, z->x2, act));
  QG_TRY(o->add_scaled(o, z->out, z->mo, w->mlp_scale, R, d));
  return QG_OK;
}

qg_status qg_gpt_forward_train(qg_gpt *m, qg_gpt_train_store *s, const int32_t *inputs, const int32_t *targets, int B,
                               int T, float grad_scale, double *loss) {
  const qg_ops *o = m->ops;
  const qg_gpt_config *c = &m->cfg;
  int64_t R = (int64_t)B * T;
  if (B <= 0 || T <= 0) return qg_fail(QG_ERR_INPUT, "training forward: empty batch");
  for (int64_t i = 0; i < R; i++) {
    if (inputs[i] < 0 || inputs[i] >= c->vocab)
      return qg_fail(QG_ERR_INPUT, "token %d at position %lld is outside the model's vocabulary of %d", inputs[i],
                     (long long)i, c->vocab);
    if (targets[i] < 0 || targets[i] >= c->vocab)
      return qg_fail(QG_ERR_INPUT, "target token %d at position %lld is outside the model's vocabulary of %d",
                     targets[i], (long long)i, c->vocab);
  }
  if (!o->xent_fwd_bwd) return qg_fail(QG_ERR_UNSUPPORTED, "backend '%s' has no backward ops yet", o->name);
  QG_TRY(qg_gpt_train_reserve(s, m, R));
  s->B = B;
  s->T = T;
  int d = c->d;
  size_t act = sizeof(float) * (size_t)R * (size_t)d;
  QG_TRY(o->upload(o, s->tok, inputs, sizeof(int32_t) * (size_t)R));
  QG_TRY(o->upload(o, s->tgt, targets, sizeof(int32_t) * (size_t)R));
  QG_TRY(o->embed(o, s->h, m->tok_emb, s->tok, R, d));
  QG_TRY(o->rmsnorm(o, s->x0, s->h, R, d, c->eps));
  QG_TRY(o->copy(o, s->xin, s->x0, act));
  for (int l = 0; l < c->n_layers; l++) {
    slots z = layer_slots(s, l, R);
    if (l >= c->n_enc && l - c->n_enc < c->n_skip) { /* decoder: add the mirrored skip */
      int i = l - c->n_enc;
      QG_TRY(o->add_scaled(o, z.xin, s->skips + (size_t)(c->n_skip - 1 - i) * R * d, m->skip_weights + (int64_t)i * d,
                           R, d));
    }
    QG_TRY(block_train(m, s, &m->blocks[l % c->n_blocks], &z, B, T));
    if (c->recurrent)
      QG_TRY(o->affine(o, z.out, m->repeat_scales + (int64_t)l * d, m->repeat_shifts + (int64_t)l * d, R, d));
    if (l < c->n_enc && l < c->n_skip) QG_TRY(o->copy(o, s->skips + (size_t)l * R * d, z.out, act));
  }
  QG_TRY(o->rmsnorm(o, s->h, s->xin + (int64_t)c->n_layers * R * d, R, d, c->eps));
  QG_TRY(o->matmul(o, s->logits, s->h, c->tied ? m->tok_emb : m->lm_head, R, d, c->vocab));
  double sum;
  QG_TRY(o->xent_fwd_bwd(o, s->logits, &sum, s->logits, s->tgt, R, c->vocab, c->softcap, grad_scale / (float)R));
  *loss = sum / (double)R;
  return QG_OK;
}

/* ---- backward ----------------------------------------------------------------------- */

/* On entry s->g holds d(block output) (before the recurrent affine's inverse, which the
 * caller has already applied); on return d(block input). Parameter gradients of block w
 * accumulate into gw. */
static qg_status block_backward(qg_gpt *m, qg_gpt_train_store *s, const qg_gpt_block *w, qg_gpt_block *gw,
                                const slots *z, int B, int T) {
  const qg_ops *o = m->ops;
  const qg_gpt_config *c = &m->cfg;
  int64_t R = (int64_t)B * T;
  int d = c->d, kvd = s->kvd, hd = c->head_dim, hid = c->mlp_hidden, H = c->n_head, KVH = c->n_kv_head;
  float *G = s->g;
  /* MLP branch: out = x2 + mlp_scale * (relu(u)^p . Wm^T), u = rmsnorm(x2) . Wfc^T */
  QG_TRY(o->add_scaled_bwd(o, s->s1, gw->mlp_scale, G, z->mo, w->mlp_scale, R, d, 0));
  QG_TRY(o->copy(o, s->a, z->u, sizeof(float) * (size_t)R * (size_t)hid));
  QG_TRY(o->relu_pow(o, s->a, R * hid, c->mlp_power));
  QG_TRY(o->matmul_bwd_w(o, gw->mlp_proj, s->s1, s->a, R, hid, d));
  QG_TRY(o->matmul_bwd_x(o, s->du, s->s1, w->mlp_proj, R, hid, d, 0));
  QG_TRY(o->relu_pow_bwd(o, s->du, s->du, z->u, R * hid, c->mlp_power));
  QG_TRY(o->rmsnorm(o, s->h, z->x2, R, d, c->eps));
  QG_TRY(o->matmul_bwd_w(o, gw->fc, s->du, s->h, R, d, hid));
  QG_TRY(o->matmul_bwd_x(o, s->s1, s->du, w->fc, R, d, hid, 0));
  QG_TRY(o->rmsnorm_bwd(o, G, s->s1, z->x2, R, d, c->eps, 1)); /* G = d x2 */
  /* attention branch: x2 = xm + attn_scale * (att . Wproj^T) */
  QG_TRY(o->add_scaled_bwd(o, s->s1, gw->attn_scale, G, z->p, w->attn_scale, R, d, 0));
  QG_TRY(o->matmul_bwd_w(o, gw->proj, s->s1, z->att, R, d, d));
  QG_TRY(o->matmul_bwd_x(o, s->s2, s->s1, w->proj, R, d, d, 0));
  /* recompute the rotated q (before and after the gain) and k the attention saw */
  QG_TRY(o->rmsnorm(o, s->qr, z->q0, R * H, hd, c->eps));
  QG_TRY(o->rope(o, s->qr, B, T, H, hd, c->rope_base));
  QG_TRY(o->copy(o, s->qg, s->qr, sizeof(float) * (size_t)R * (size_t)d));
  QG_TRY(o->head_scale(o, s->qg, R, H, hd, w->q_gain));
  QG_TRY(o->rmsnorm(o, s->kr, z->k0, R * KVH, hd, c->eps));
  QG_TRY(o->rope(o, s->kr, B, T, KVH, hd, c->rope_base));
  QG_TRY(o->attention_bwd(o, s->dq, s->dk, s->dv, s->s2, s->qg, s->kr, z->v, z->att, B, T, H, KVH, hd));
  QG_TRY(o->head_scale_bwd(o, s->dq, gw->q_gain, s->dq, s->qr, R, H, hd, w->q_gain));
  QG_TRY(o->rope_bwd(o, s->dq, B, T, H, hd, c->rope_base));
  QG_TRY(o->rope_bwd(o, s->dk, B, T, KVH, hd, c->rope_base));
  QG_TRY(o->rmsnorm_bwd(o, s->dq, s->dq, z->q0, R * H, hd, c->eps, 0));
  QG_TRY(o->rmsnorm_bwd(o, s->dk, s->dk, z->k0, R * KVH, hd, c->eps, 0));
  QG_TRY(o->rmsnorm(o, s->h, z->xm, R, d, c->eps));
  QG_TRY(o->matmul_bwd_w(o, gw->c_q, s->dq, s->h, R, d, d));
  QG_TRY(o->matmul_bwd_w(o, gw->c_k, s->dk, s->h, R, d, kvd));
  QG_TRY(o->matmul_bwd_w(o, gw->c_v, s->dv, s->h, R, d, kvd));
  QG_TRY(o->matmul_bwd_x(o, s->s1, s->dq, w->c_q, R, d, d, 0));
  QG_TRY(o->matmul_bwd_x(o, s->s1, s->dk, w->c_k, R, d, kvd, 1));
  QG_TRY(o->matmul_bwd_x(o, s->s1, s->dv, w->c_v, R, d, kvd, 1));
  QG_TRY(o->rmsnorm_bwd(o, G, s->s1, z->xm, R, d, c->eps, 1)); /* G = d xm */
  /* xm = mix0 * xin + mix1 * x0 */
  QG_TRY(o->resid_mix_bwd(o, G, s->dx0, gw->resid_mix, G, z->xin, s->x0, w->resid_mix, R, d));
  return QG_OK;
}

qg_status qg_gpt_backward(qg_gpt *m, qg_gpt_train_store *s, qg_gpt *grads) {
  const qg_ops *o = m->ops;
  const qg_gpt_config *c = &m->cfg;
  if (!s->ops || s->B <= 0) return qg_fail(QG_ERR_INTERNAL, "backward without a training forward");
  int B = s->B, T = s->T;
  int64_t R = (int64_t)B * T;
  int d = c->d;
  size_t act = sizeof(float) * (size_t)R * (size_t)d;
  float *G = s->g, *head = c->tied ? m->tok_emb : m->lm_head, *dhead = c->tied ? grads->tok_emb : grads->lm_head;
  const float *xL = s->xin + (int64_t)c->n_layers * R * d;
  /* logits = rmsnorm(xL) . head^T; the store holds d logits */
  QG_TRY(o->rmsnorm(o, s->h, xL, R, d, c->eps));
  QG_TRY(o->matmul_bwd_w(o, dhead, s->logits, s->h, R, d, c->vocab));
  QG_TRY(o->matmul_bwd_x(o, s->s1, s->logits, head, R, d, c->vocab, 0));
  QG_TRY(o->rmsnorm_bwd(o, G, s->s1, xL, R, d, c->eps, 0));
  /* resid_mix_bwd accumulates every layer's share of d x0 here */
  {
    float *zero = calloc((size_t)R * (size_t)d, sizeof(float));
    if (!zero) return qg_fail(QG_ERR_NOMEM, "out of memory");
    qg_status st = o->upload(o, s->dx0, zero, act);
    free(zero);
    QG_TRY(st);
  }
  for (int l = c->n_layers - 1; l >= 0; l--) {
    slots z = layer_slots(s, l, R);
    /* the output of an encoder layer is also its skip: add what the decoder sent back */
    if (l < c->n_enc && l < c->n_skip) QG_TRY(o->add_scaled(o, G, s->dskips + (size_t)l * R * d, s->ones, R, d));
    if (c->recurrent) { /* out = x3 * scale + shift with x3 = x2 + mlp_scale * mo, recomputed */
      QG_TRY(o->copy(o, s->s2, z.x2, act));
      QG_TRY(o->add_scaled(o, s->s2, z.mo, m->blocks[l % c->n_blocks].mlp_scale, R, d));
      QG_TRY(o->affine_bwd(o, G, grads->repeat_scales + (int64_t)l * d, grads->repeat_shifts + (int64_t)l * d, G, s->s2,
                           m->repeat_scales + (int64_t)l * d, R, d));
    }
    QG_TRY(block_backward(m, s, &m->blocks[l % c->n_blocks], &grads->blocks[l % c->n_blocks], &z, B, T));
    if (l >= c->n_enc && l - c->n_enc < c->n_skip) { /* xin = prev + skip_weights[i] * skip */
      int i = l - c->n_enc, j = c->n_skip - 1 - i;
      QG_TRY(o->add_scaled_bwd(o, s->dskips + (size_t)j * R * d, grads->skip_weights + (int64_t)i * d, G,
                               s->skips + (size_t)j * R * d, m->skip_weights + (int64_t)i * d, R, d, 0));
    }
  }
  /* x0 = rmsnorm(tok_emb[tok]) fed layer 0 directly and every resid_mix */
  QG_TRY(o->add_scaled(o, G, s->dx0, s->ones, R, d));
  QG_TRY(o->embed(o, s->h, m->tok_emb, s->tok, R, d));
  QG_TRY(o->rmsnorm_bwd(o, s->s1, G, s->h, R, d, c->eps, 0));
  return o->embed_bwd(o, grads->tok_emb, s->s1, s->tok, R, d);
}
