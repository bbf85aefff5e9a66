/* Loss-based sensitivity estimators (lab/sensitivity_est.h). */
#include "lab/sensitivity_est.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The spying ops table: ops first, so a const qg_ops * handed to an op is this struct. */
typedef struct {
  qg_ops ops;
  const qg_ops *real;
  qg_grad_model *gm;
} spy_ops;

/* What the spy accumulates during a Fisher pass (NULL outside one). */
typedef struct {
  int nt, nd;
  const int64_t *off; /* per tensor: flat offset of its gradient */
  const float *const *delta;
  double *score;
  float *dy_buf; /* scratch rows x N for X dW^T */
  size_t dy_cap;
  qg_status err;
} fisher_acc;

struct qg_grad_model {
  qg_gpt_config cfg;
  qg_gpt_layout lay;
  float *w, *gw;
  qg_gpt m, g;
  int bound_m, bound_g;
  qg_gpt_train_store s;
  spy_ops spy;
  fisher_acc *acc;
};

/* ---- the gradient model ------------------------------------------------------------- */

qg_status qg_grad_model_new(const qg_state *st, float mlp_power, qg_grad_model **out) {
  *out = NULL;
  qg_grad_model *gm = calloc(1, sizeof *gm);
  if (!gm) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_gpt_options go = {.mlp_power = mlp_power};
  qg_status s = qg_gpt_config_from_state(st, &go, &gm->cfg);
  if (!s) s = qg_gpt_layout_make(&gm->cfg, &gm->lay);
  if (!s) {
    gm->w = calloc((size_t)gm->lay.total, sizeof(float));
    gm->gw = calloc((size_t)gm->lay.total, sizeof(float));
    if (!gm->w || !gm->gw) s = qg_fail(QG_ERR_NOMEM, "out of memory for %lld parameters", (long long)gm->lay.total);
  }
  for (int i = 0; !s && i < gm->lay.n; i++) {
    const qg_gpt_param *p = &gm->lay.p[i];
    const qg_tensor *t = qg_state_find_c(st, p->name);
    if (!t || !qg_dtype_is_float(t->dtype) || qg_tensor_numel(t) != p->numel)
      s = qg_fail(QG_ERR_INPUT, "gradient model: tensor '%s' is missing, not float or not %lld values", p->name,
                  (long long)p->numel);
    else qg_tensor_to_f32(t, gm->w + p->offset);
  }
  if (!s) {
    gm->spy.real = qg_ops_cpu();
    gm->spy.ops = *gm->spy.real;
    gm->spy.gm = gm;
  }
  *out = gm;
  if (s) qg_grad_model_free(gm), *out = NULL;
  return s;
}

void qg_grad_model_free(qg_grad_model *gm) {
  if (!gm) return;
  qg_gpt_train_store_free(&gm->s);
  if (gm->bound_m) qg_gpt_unbind(&gm->m);
  if (gm->bound_g) qg_gpt_unbind(&gm->g);
  qg_gpt_layout_free(&gm->lay);
  free(gm->w), free(gm->gw);
  free(gm);
}

float *qg_grad_model_params(qg_grad_model *gm, int64_t *n) {
  *n = gm->lay.total;
  return gm->w;
}

qg_status qg_grad_model_find(const qg_grad_model *gm, const char *name, int64_t *off, int64_t *len) {
  for (int i = 0; i < gm->lay.n; i++)
    if (!strcmp(gm->lay.p[i].name, name)) {
      *off = gm->lay.p[i].offset, *len = gm->lay.p[i].numel;
      return QG_OK;
    }
  return qg_fail(QG_ERR_INPUT, "gradient model: no parameter named '%s'", name);
}

/* Binds lazily: the ops table must be final (the spy's overrides) before the models
 * copy its pointer. */
static qg_status bind(qg_grad_model *gm) {
  if (!gm->bound_m) {
    QG_TRY(qg_gpt_bind(&gm->m, &gm->cfg, &gm->lay, gm->w, &gm->spy.ops));
    gm->bound_m = 1;
  }
  if (!gm->bound_g) {
    QG_TRY(qg_gpt_bind(&gm->g, &gm->cfg, &gm->lay, gm->gw, &gm->spy.ops));
    gm->bound_g = 1;
  }
  return QG_OK;
}

/* One forward + backward over sequences [first, first + b): gradients accumulate into
 * gm->gw with weight grad_scale on the batch's mean NLL. */
static qg_status batch_grad(qg_grad_model *gm, const int32_t *seqs, int first, int b, int len, float grad_scale,
                            double *loss) {
  int64_t R = (int64_t)b * len;
  int32_t *in = malloc(sizeof *in * (size_t)R), *tg = malloc(sizeof *tg * (size_t)R);
  if (!in || !tg) {
    free(in), free(tg);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; i < b; i++) {
    const int32_t *q = seqs + (size_t)(first + i) * (size_t)(len + 1);
    memcpy(in + (size_t)i * (size_t)len, q, sizeof *in * (size_t)len);
    memcpy(tg + (size_t)i * (size_t)len, q + 1, sizeof *tg * (size_t)len);
  }
  qg_status s = qg_gpt_forward_train(&gm->m, &gm->s, in, tg, b, len, grad_scale, loss);
  if (!s) s = qg_gpt_backward(&gm->m, &gm->s, &gm->g);
  free(in), free(tg);
  return s;
}

qg_status qg_grad_model_grad(qg_grad_model *gm, const int32_t *seqs, int n, int len, int batch, float *grad,
                             double *loss) {
  if (n <= 0 || len <= 0) return qg_fail(QG_ERR_INPUT, "gradient: no calibration sequences");
  QG_TRY(bind(gm));
  if (batch <= 0 || batch > n) batch = n;
  memset(gm->gw, 0, sizeof(float) * (size_t)gm->lay.total);
  double sum = 0;
  for (int first = 0; first < n; first += batch) {
    int b = n - first < batch ? n - first : batch;
    double l;
    /* the mean over all n sequences: each batch weighs by its share of them */
    QG_TRY(batch_grad(gm, seqs, first, b, len, (float)b / (float)n, &l));
    sum += l * b;
  }
  memcpy(grad, gm->gw, sizeof(float) * (size_t)gm->lay.total);
  *loss = sum / n;
  return QG_OK;
}

/* ---- Fisher: the spy's weight-gradient ops ------------------------------------------ */

static fisher_acc *acc_of(const qg_ops *o) { return ((const spy_ops *)o)->gm->acc; }

/* The tensor whose gradient starts at dw, or -1. */
static int tensor_at(const qg_ops *o, const fisher_acc *a, const float *dw) {
  const qg_grad_model *gm = ((const spy_ops *)o)->gm;
  int64_t off = dw - gm->gw;
  for (int t = 0; t < a->nt; t++)
    if (a->off[t] == off) return t;
  return -1;
}

static qg_status spy_matmul_bwd_w(const qg_ops *o, float *dw, const float *dy, const float *x, int64_t M, int K,
                                  int N) {
  const qg_ops *real = ((const spy_ops *)o)->real;
  QG_TRY(real->matmul_bwd_w(real, dw, dy, x, M, K, N));
  fisher_acc *a = acc_of(o);
  int t = a ? tensor_at(o, a, dw) : -1;
  if (t < 0 || a->err) return QG_OK;
  size_t need = (size_t)M * (size_t)N;
  if (need > a->dy_cap) {
    float *p = realloc(a->dy_buf, sizeof *p * need);
    if (!p) return a->err = qg_fail(QG_ERR_NOMEM, "out of memory");
    a->dy_buf = p, a->dy_cap = need;
  }
  for (int d = 0; d < a->nd; d++) {
    const float *D = a->delta[(size_t)t * (size_t)a->nd + (size_t)d];
    if (!D) continue;
    QG_TRY(real->matmul(real, a->dy_buf, x, D, M, K, N)); /* dY = X D^T */
    double acc = 0;
    for (size_t i = 0; i < need; i++) {
      double v = (double)dy[i] * (double)a->dy_buf[i];
      acc += v * v;
    }
    a->score[(size_t)t * (size_t)a->nd + (size_t)d] += acc;
  }
  return QG_OK;
}

static qg_status spy_embed_bwd(const qg_ops *o, float *demb, const float *dx, const int32_t *tok, int64_t n, int d) {
  const qg_ops *real = ((const spy_ops *)o)->real;
  QG_TRY(real->embed_bwd(real, demb, dx, tok, n, d));
  fisher_acc *a = acc_of(o);
  int t = a ? tensor_at(o, a, demb) : -1;
  if (t < 0 || a->err) return QG_OK;
  /* the looked-up rows are the layer output: dY_t = D[tok_t] */
  for (int k = 0; k < a->nd; k++) {
    const float *D = a->delta[(size_t)t * (size_t)a->nd + (size_t)k];
    if (!D) continue;
    double acc = 0;
    for (int64_t i = 0; i < n; i++) {
      const float *row = D + (size_t)tok[i] * (size_t)d, *g = dx + (size_t)i * (size_t)d;
      for (int j = 0; j < d; j++) {
        double v = (double)g[j] * (double)row[j];
        acc += v * v;
      }
    }
    a->score[(size_t)t * (size_t)a->nd + (size_t)k] += acc;
  }
  return QG_OK;
}

qg_status qg_sens_fisher(qg_grad_model *gm, const int32_t *seqs, int n, int len, int batch, int nt,
                         const char *const *names, int nd, const float *const *delta, double *score) {
  if (n <= 0 || len <= 0) return qg_fail(QG_ERR_INPUT, "Fisher: no calibration sequences");
  int64_t *off = malloc(sizeof *off * (size_t)(nt ? nt : 1));
  if (!off) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = QG_OK;
  for (int t = 0; !s && t < nt; t++) {
    int64_t l;
    s = qg_grad_model_find(gm, names[t], &off[t], &l);
  }
  fisher_acc a = {nt, nd, off, delta, score, NULL, 0, QG_OK};
  memset(score, 0, sizeof *score * (size_t)nt * (size_t)nd);
  gm->spy.ops.matmul_bwd_w = spy_matmul_bwd_w;
  gm->spy.ops.embed_bwd = spy_embed_bwd;
  gm->acc = &a;
  if (!s) s = bind(gm);
  if (batch <= 0 || batch > n) batch = n;
  memset(gm->gw, 0, sizeof(float) * (size_t)gm->lay.total);
  for (int first = 0; !s && first < n; first += batch) {
    int b = n - first < batch ? n - first : batch;
    double l;
    /* grad_scale = tokens in the batch: g is the gradient of the summed token NLL */
    s = batch_grad(gm, seqs, first, b, len, (float)((int64_t)b * len), &l);
    if (!s) s = a.err;
  }
  gm->acc = NULL;
  free(a.dy_buf);
  free(off);
  double tokens = (double)n * (double)len;
  for (size_t i = 0; !s && i < (size_t)nt * (size_t)nd; i++) score[i] /= tokens;
  return s;
}

/* ---- Hutchinson --------------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

qg_status qg_hutchinson(qg_grad_fn f, void *ctx, float *theta, int64_t n, const int64_t *off, const int64_t *len,
                        int nseg, int probes, double eps, uint64_t seed, double *z) {
  if (probes <= 0 || !(eps > 0)) return qg_fail(QG_ERR_INPUT, "Hutchinson: needs probes > 0 and eps > 0");
  for (int s = 0; s < nseg; s++)
    if (off[s] < 0 || len[s] < 0 || off[s] + len[s] > n)
      return qg_fail(QG_ERR_INTERNAL, "Hutchinson: segment %d outside the %lld parameters", s, (long long)n);
  float *keep = malloc(sizeof *keep * (size_t)n), *gp = malloc(sizeof *gp * (size_t)n),
        *gn = malloc(sizeof *gn * (size_t)n);
  int8_t *v = malloc((size_t)n);
  qg_status st = keep && gp && gn && v ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory for Hutchinson probes");
  if (!st) memcpy(keep, theta, sizeof *keep * (size_t)n);
  uint64_t rs = seed;
  for (int p = 0; !st && p < probes; p++) {
    memset(v, 0, (size_t)n);
    for (int s = 0; s < nseg; s++)
      for (int64_t i = off[s]; i < off[s] + len[s];) {
        uint64_t bits = splitmix(&rs);
        for (int b = 0; b < 64 && i < off[s] + len[s]; b++, i++) v[i] = (bits >> b) & 1 ? 1 : -1;
      }
    for (int64_t i = 0; i < n; i++) theta[i] = keep[i] + (float)(eps * v[i]);
    st = f(ctx, theta, gp);
    for (int64_t i = 0; !st && i < n; i++) theta[i] = keep[i] - (float)(eps * v[i]);
    if (!st) st = f(ctx, theta, gn);
    memcpy(theta, keep, sizeof *keep * (size_t)n);
    for (int s = 0; !st && s < nseg; s++) {
      double acc = 0;
      for (int64_t i = off[s]; i < off[s] + len[s]; i++) {
        acc += v[i] * ((double)gp[i] - (double)gn[i]);
      }
      z[(size_t)p * (size_t)nseg + (size_t)s] = acc / (2 * eps);
    }
  }
  if (keep) memcpy(theta, keep, sizeof *keep * (size_t)n);
  free(keep), free(gp), free(gn), free(v);
  return st;
}

void qg_mean_se(const double *x, int n, int stride, double *mean, double *se) {
  double m = 0;
  for (int i = 0; i < n; i++) m += x[(size_t)i * (size_t)stride];
  m = n ? m / n : NAN;
  double ss = 0;
  for (int i = 0; i < n; i++) {
    double d = x[(size_t)i * (size_t)stride] - m;
    ss += d * d;
  }
  *mean = m;
  *se = n > 1 ? sqrt(ss / (n - 1) / n) : NAN;
}
