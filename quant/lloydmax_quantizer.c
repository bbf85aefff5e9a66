/* lloydmax: per row or group, an fp16 scale sigma (the RMS, or searched) and codes into
 * the b-bit Gaussian Lloyd-Max levels (quant/lloydmax.h): w = sigma c[code]. A scalar
 * grid (width 1), so "gptq grid=lloydmax bits=3" is GPTQ with non-uniform levels.
 * Sections: "codes" (b bits, rows x cols), "scales" (rows x groups fp16). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/lloydmax.h"
#include "quant/lloydmax_quantizer.h"
#include "quant/quant_internal.h"

static const char *const scale_names[] = {"rms", "search", NULL};

static qg_status lm_parse(qg_opts *o, void **out) {
  qg_lloydmax_opts *c = calloc(1, sizeof *c);
  if (!c) return qg_fail(QG_ERR_NOMEM, "out of memory");
  int64_t bits, group, steps;
  qg_status s = qg_opt_int(o, "lloydmax", "bits", 1, QG_LLOYDMAX_MAX_BITS, 4, &bits);
  if (!s) s = qg_opt_int(o, "lloydmax", "group", 0, (int64_t)1 << 30, 0, &group);
  if (!s) s = qg_opt_choice(o, "lloydmax", "scale", scale_names, QG_LM_SCALE_SEARCH, &c->scale);
  if (!s) s = qg_opt_num(o, "lloydmax", "lo", 0.1, 10.0, 0.5, &c->lo);
  if (!s) s = qg_opt_num(o, "lloydmax", "hi", 0.1, 10.0, 2.0, &c->hi);
  if (!s) s = qg_opt_int(o, "lloydmax", "steps", 1, 1000, 32, &steps);
  if (!s) s = qg_opt_choice(o, "lloydmax", "objective", qg_objective_names, 0, &c->objective);
  if (!s && c->lo > c->hi) s = qg_fail(QG_ERR_INPUT, "lloydmax: lo=%g is above hi=%g", c->lo, c->hi);
  if (s) {
    free(c);
    return s;
  }
  c->bits = (int)bits, c->group = group, c->steps = (int)steps;
  *out = c;
  return QG_OK;
}

static void lm_canon(const void *cfg, qg_buf *b) {
  const qg_lloydmax_opts *c = cfg;
  qg_buf_printf(b, "bits=%d group=%lld scale=%s", c->bits, (long long)c->group, scale_names[c->scale]);
  if (c->scale == QG_LM_SCALE_SEARCH)
    qg_buf_printf(b, " lo=%s hi=%s steps=%d objective=%s", QG_NUMSTR(c->lo), QG_NUMSTR(c->hi), c->steps, qg_objective_names[c->objective]);
}

static qg_status lm_can_take(const void *cfg, const char *name, int ndim, const int64_t *shape) {
  const qg_lloydmax_opts *c = cfg;
  if (ndim != 2) return qg_cannot_take("lloydmax", name, ndim, shape, "needs a 2-D matrix");
  if (shape[0] < 1 || shape[1] < 1) return qg_cannot_take("lloydmax", name, ndim, shape, "empty matrix");
  if (c->group && shape[1] % c->group)
    return qg_cannot_take("lloydmax", name, ndim, shape, "%lld columns are not a multiple of group=%lld",
                          (long long)shape[1], (long long)c->group);
  return QG_OK;
}

typedef struct {
  const qg_lloydmax_opts *c;
  const qg_lloydmax *lm;
  int64_t rows, cols, group, ngroups;
  float *scales;   /* rows x ngroups (fp16 values) */
  uint32_t *codes; /* rows x cols */
} lm_state;

static int64_t lm_group(const void *cfg) { return ((const qg_lloydmax_opts *)cfg)->group; }

static void lm_free(void *p) {
  lm_state *st = p;
  if (!st) return;
  free(st->scales), free(st->codes);
  free(st);
}

static qg_status lm_begin(const void *cfg, const qg_qinput *in, void **out) {
  const qg_lloydmax_opts *c = cfg;
  lm_state *st = calloc(1, sizeof *st);
  if (!st) return qg_fail(QG_ERR_NOMEM, "out of memory");
  st->c = c;
  st->lm = qg_lloydmax_gaussian_cached(c->bits);
  st->rows = in->rows, st->cols = in->cols;
  st->group = c->group ? c->group : in->cols;
  st->ngroups = in->cols / st->group;
  st->scales = calloc((size_t)(st->rows * st->ngroups), sizeof *st->scales);
  st->codes = calloc((size_t)(st->rows * st->cols), sizeof *st->codes);
  if (!st->lm || !st->scales || !st->codes) {
    lm_free(st);
    return qg_fail(QG_ERR_NOMEM, "out of memory (%lld x %lld)", (long long)in->rows, (long long)in->cols);
  }
  *out = st;
  return QG_OK;
}

static double lm_err(const qg_lloydmax *lm, const double *x, const double *imp, int64_t n, float s) {
  double e = 0;
  for (int64_t j = 0; j < n; j++) {
    double d = x[j] - (double)s * lm->cf[qg_lloydmax_index(lm, (float)(x[j] / s))];
    e += (imp ? imp[j] : 1.0) * d * d;
  }
  return e;
}

double qg_lloydmax_mult(const qg_lloydmax_opts *c, int i) {
  return c->steps == 1 ? c->lo : c->lo * pow(c->hi / c->lo, (double)i / (c->steps - 1));
}

typedef struct {
  lm_state *st;
  int64_t gi, ldx, n;
  const double *x, *w;
} lm_scale_job;

static void lm_scale_row(void *p, int64_t r, int thread) {
  const lm_scale_job *jb = p;
  lm_state *st = jb->st;
  const qg_lloydmax_opts *c = st->c;
  const double *xr = jb->x + r * jb->ldx, *w = jb->w;
  int64_t n = jb->n;
  (void)thread;
  double ss = 0;
  for (int64_t j = 0; j < n; j++) ss += xr[j] * xr[j];
  double rms = sqrt(ss / (double)n);
  /* An all-zero (or fp16-underflowing) group gets the smallest subnormal scale, so
   * its innermost levels reconstruct to ~1e-8 rather than +-0.45 */
  float best = qg_f16r(rms);
  if (best == 0.0f) best = qg_f16_to_f32(1);
  if (c->scale == QG_LM_SCALE_SEARCH && rms > 0) {
    double be = lm_err(st->lm, xr, w, n, best);
    for (int i = 0; i < c->steps; i++) {
      double m = qg_lloydmax_mult(c, i);
      float s = qg_f16r(rms * m);
      if (s == 0.0f) continue;
      double e = lm_err(st->lm, xr, w, n, s);
      if (e < be) be = e, best = s;
    }
  }
  st->scales[r * st->ngroups + jb->gi] = best;
}

/* sigma = RMS (the Gaussian optimum), or the best of `steps` multipliers of it spaced
 * geometrically over [lo, hi] (1 always among the candidates); one task per row. */
static qg_status lm_set_scale(void *p, int64_t gi, const double *x, int64_t ldx, int64_t n, const double *imp) {
  lm_state *st = p;
  const qg_lloydmax_opts *c = st->c;
  if (gi < 0 || gi >= st->ngroups || n != st->group)
    return qg_fail(QG_ERR_INTERNAL, "lloydmax grid: group %lld of %lld columns", (long long)gi, (long long)n);
  lm_scale_job jb = {st, gi, ldx, n, x, c->objective == 1 ? imp : NULL};
  qg_quant_parallel_for(st->rows, lm_scale_row, &jb);
  return QG_OK;
}

static void lm_round(void *p, int64_t col, const double *x, int64_t ldx, double *q, int64_t ldq) {
  lm_state *st = p;
  int64_t gi = col / st->group;
  for (int64_t r = 0; r < st->rows; r++) {
    float s = st->scales[r * st->ngroups + gi];
    int i = qg_lloydmax_index(st->lm, (float)(x[r * ldx] / s));
    st->codes[r * st->cols + col] = (uint32_t)i;
    q[r * ldq] = (double)(s * st->lm->cf[i]); /* the float product dequantize computes */
  }
}

static qg_status lm_finish(void *p, qg_qtensor *out) {
  lm_state *st = p;
  uint32_t *codes;
  uint16_t *h;
  int64_t n = st->rows * st->cols, ng = st->rows * st->ngroups;
  QG_TRY(qg_qtensor_add(out, "codes", QG_SEC_CODES, st->c->bits, n, (void **)&codes));
  memcpy(codes, st->codes, (size_t)n * sizeof *codes);
  QG_TRY(qg_qtensor_add(out, "scales", QG_SEC_F16, 0, ng, (void **)&h));
  for (int64_t i = 0; i < ng; i++) h[i] = qg_f32_to_f16(st->scales[i]);
  return QG_OK;
}

static const qg_grid lm_grid = {
    .width = 1,
    .group = lm_group,
    .begin = lm_begin,
    .set_scale = lm_set_scale,
    .round = lm_round,
    .finish = lm_finish,
    .free = lm_free,
};

static qg_status lm_quantize(const void *cfg, const qg_qinput *in, qg_qtensor *out) {
  return qg_grid_rtn(&lm_grid, cfg, in, out);
}

static qg_status lm_dequantize(const void *cfg, const qg_qtensor *q, float *w) {
  const qg_lloydmax_opts *c = cfg;
  const char *nm = q->name ? q->name : "?";
  int64_t g = c->group ? c->group : q->cols;
  if (g <= 0 || q->cols % g)
    return qg_fail(QG_ERR_INPUT, "tensor '%s' (lloydmax): group does not divide %lld columns", nm, (long long)q->cols);
  int64_t ng = q->cols / g;
  const qg_qsection *cs, *ss;
  QG_TRY(qg_qtensor_need(q, "codes", QG_SEC_CODES, q->rows * q->cols, &cs));
  QG_TRY(qg_qtensor_need(q, "scales", QG_SEC_F16, q->rows * ng, &ss));
  if (cs->bits != c->bits)
    return qg_fail(QG_ERR_INPUT, "tensor '%s' (lloydmax): codes are %d-bit, options say bits=%d", nm, cs->bits,
                   c->bits);
  const qg_lloydmax *lm = qg_lloydmax_gaussian_cached(c->bits);
  const uint32_t *codes = cs->data;
  const uint16_t *sc = ss->data;
  for (int64_t r = 0; r < q->rows; r++)
    for (int64_t j = 0; j < q->cols; j++) {
      uint32_t u = codes[r * q->cols + j];
      if (u >= (uint32_t)lm->levels)
        return qg_fail(QG_ERR_INPUT, "tensor '%s' (lloydmax): code %u at [%lld, %lld] outside 0..%d", nm, u,
                       (long long)r, (long long)j, lm->levels - 1);
      w[r * q->cols + j] = qg_f16_to_f32(sc[r * ng + j / g]) * lm->cf[u];
    }
  return QG_OK;
}

static void lm_free_cfg(void *c) { free(c); }

static const char *const lm_docs[] = {
    "bits", "code width: 2^bits Gaussian Lloyd-Max levels",
    "group", "input columns per fp16 scale; 0 = one scale per row",
    "scale", "rms: sigma = the RMS; search: the best sigma / RMS over [lo, hi]",
    "lo", "scale=search: lowest multiple of the RMS tried",
    "hi", "scale=search: highest multiple of the RMS tried",
    "steps", "scale=search: candidates, geometrically spaced",
    "objective", "scale=search: error minimised, mse or hessian (needs --calib)",
    NULL};

const qg_quantizer qg_quantizer_lloydmax = {
    .name = "lloydmax",
    .summary = "Gaussian Lloyd-Max levels (1..8 bits) times an fp16 scale per row or group (RMS or searched)",
    .parse = lm_parse,
    .option_docs = lm_docs,
    .free_cfg = lm_free_cfg,
    .canon = lm_canon,
    .can_take = lm_can_take,
    .quantize = lm_quantize,
    .dequantize = lm_dequantize,
    .grid = &lm_grid,
};

const qg_lloydmax_opts *qg_lloydmax_opts_of(const qg_quantizer *q, const void *cfg) {
  return q == &qg_quantizer_lloydmax ? cfg : NULL;
}
