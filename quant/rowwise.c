/* rowwise: symmetric int-N (N = 2..8) with one fp16 scale per row or per group of g input
 * columns, the contest's post-training format. Also the default inner grid of GPTQ: its
 * own quantize() is exactly "set every scale, round every column" through the grid.
 *
 * Codes: sym: q in [-(2^(N-1)-1), 2^(N-1)-1], scale = clip / (2^(N-1)-1);
 *        full: q in [-2^(N-1), 2^(N-1)-1], scale = clip / 2^(N-1) (the negative end
 *        reaches -clip; the positive end one step short of clip).
 * Stored code = q - qmin (unsigned, N bits). Dequantized value = q * f16(scale), computed
 * with the fp16-rounded scale so codes and reconstruction agree exactly.
 * Clip per row/group: pct (torch.quantile of |w| at pct/100, the contest's 99.99984
 * default), sd (k * std, unbiased, the contest's "SDClip"), absmax, or search (the ratio
 * r * absmax, r on a grid over [1 - maxshrink, 1], minimising sum imp_j (w_j - q_j)^2 with
 * imp = 1 (objective=mse) or diag H (objective=hessian)). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant_internal.h"
#include "quant/rowwise.h"

static const char *const clip_names[] = {"pct", "sd", "absmax", "search", NULL};
static const char *const range_names[] = {"sym", "full", NULL};

static qg_status rw_parse(qg_opts *o, void **out) {
  qg_rowwise_opts *c = calloc(1, sizeof *c);
  if (!c) return qg_fail(QG_ERR_NOMEM, "out of memory");
  int64_t bits, group, steps;
  qg_status s = qg_opt_int(o, "rowwise", "bits", 2, 8, 6, &bits);
  if (!s) s = qg_opt_choice(o, "rowwise", "range", range_names, 0, &c->full);
  if (!s) s = qg_opt_int(o, "rowwise", "group", 0, (int64_t)1 << 30, 0, &group);
  if (!s) s = qg_opt_choice(o, "rowwise", "clip", clip_names, QG_RW_CLIP_PCT, &c->clip);
  if (!s) s = qg_opt_num(o, "rowwise", "pct", 50.0, 100.0, QG_CONTEST_CLIP_PERCENTILE, &c->pct);
  /* SDClip defaults from the contest: 12.85 sigma at 6 bits (matrices), 20 at 8 bits
   * (embeddings); other widths interpolate linearly in bits. */
  if (!s) s = qg_opt_num(o, "rowwise", "k", 0.1, 1000.0, 12.85 + (20.0 - 12.85) * ((double)bits - 6.0) / 2.0, &c->k);
  if (!s) s = qg_opt_num(o, "rowwise", "maxshrink", 0.0, 0.99, 0.8, &c->maxshrink);
  if (!s) s = qg_opt_int(o, "rowwise", "steps", 1, 1000, 100, &steps);
  if (!s) s = qg_opt_choice(o, "rowwise", "objective", qg_objective_names, 0, &c->objective);
  if (s) {
    free(c);
    return s;
  }
  if (c->k <= 0.1) c->k = 0.1; /* the interpolated default stays positive at 2 bits */
  c->bits = (int)bits, c->group = group, c->steps = (int)steps;
  *out = c;
  return QG_OK;
}

static void rw_canon(const void *cfg, qg_buf *b) {
  const qg_rowwise_opts *c = cfg;
  qg_buf_printf(b, "bits=%d range=%s group=%lld clip=%s", c->bits, range_names[c->full], (long long)c->group,
                clip_names[c->clip]);
  if (c->clip == QG_RW_CLIP_PCT) qg_buf_printf(b, " pct=%s", QG_NUMSTR(c->pct));
  if (c->clip == QG_RW_CLIP_SD) qg_buf_printf(b, " k=%s", QG_NUMSTR(c->k));
  if (c->clip == QG_RW_CLIP_SEARCH)
    qg_buf_printf(b, " maxshrink=%s steps=%d objective=%s", QG_NUMSTR(c->maxshrink), c->steps,
                  qg_objective_names[c->objective]);
}

static qg_status rw_can_take(const void *cfg, const char *name, int ndim, const int64_t *shape) {
  const qg_rowwise_opts *c = cfg;
  if (ndim != 2) return qg_cannot_take("rowwise", name, ndim, shape, "needs a 2-D matrix");
  if (shape[0] < 1 || shape[1] < 1) return qg_cannot_take("rowwise", name, ndim, shape, "empty matrix");
  if (c->group && shape[1] % c->group)
    return qg_cannot_take("rowwise", name, ndim, shape, "%lld columns are not a multiple of group=%lld",
                          (long long)shape[1], (long long)c->group);
  return QG_OK;
}

void qg_rowwise_code_range(const qg_rowwise_opts *c, int *qmin, int *qmax) {
  int h = 1 << (c->bits - 1);
  *qmax = h - 1;
  *qmin = c->full ? -h : -(h - 1);
}

/* The fp16 scale for a clip level: never zero for a positive clip (the smallest fp16
 * subnormal at worst), never infinite. */
static float scale_for(const qg_rowwise_opts *c, double clip) {
  int qmin, qmax;
  qg_rowwise_code_range(c, &qmin, &qmax);
  double den = c->full ? (double)-qmin : (double)qmax;
  if (!(clip > 0)) return 1.0f; /* an all-zero group: every code is 0 whatever the scale */
  float s = qg_f16_to_f32(qg_f32_to_f16((float)(clip / den)));
  if (s == 0.0f) s = qg_f16_to_f32(1);
  if (isinf(s)) s = 65504.0f;
  return s;
}

/* sum imp_j (x_j - q(x_j))^2 for one scale. */
static double group_err(const double *x, const double *imp, int64_t n, double s, int qmin, int qmax) {
  double e = 0;
  for (int64_t j = 0; j < n; j++) {
    double v = rint(x[j] / s);
    v = v < qmin ? qmin : v > qmax ? qmax : v;
    double d = x[j] - v * s;
    e += (imp ? imp[j] : 1.0) * d * d;
  }
  return e;
}

/* The scale of one row's group: x (n values), imp (n or NULL); scratch n floats. */
static float choose_scale(const qg_rowwise_opts *c, const double *x, const double *imp, int64_t n, float *scratch,
                          double *tmp) {
  double amax = 0;
  for (int64_t j = 0; j < n; j++) amax = fmax(amax, fabs(x[j]));
  switch (c->clip) {
    case QG_RW_CLIP_ABSMAX: return scale_for(c, amax);
    case QG_RW_CLIP_PCT: {
      for (int64_t j = 0; j < n; j++) scratch[j] = (float)fabs(x[j]);
      return scale_for(c, qg_quantile_f32(scratch, n, c->pct / 100.0));
    }
    case QG_RW_CLIP_SD: {
      double m = 0, v = 0;
      for (int64_t j = 0; j < n; j++) m += x[j];
      m /= (double)n;
      for (int64_t j = 0; j < n; j++) v += (x[j] - m) * (x[j] - m);
      v = n > 1 ? v / (double)(n - 1) : 0; /* torch.std: unbiased */
      return scale_for(c, c->k * sqrt(v));
    }
    default: { /* search */
      int qmin, qmax;
      qg_rowwise_code_range(c, &qmin, &qmax);
      const double *w = c->objective == 1 ? imp : NULL;
      float best = scale_for(c, amax);
      double best_e = group_err(x, w, n, best, qmin, qmax);
      (void)tmp;
      for (int i = 1; i <= c->steps; i++) {
        double r = 1.0 - c->maxshrink * (double)i / (double)c->steps;
        float s = scale_for(c, r * amax);
        double e = group_err(x, w, n, s, qmin, qmax);
        if (e < best_e) best_e = e, best = s; /* ties keep the larger clip */
      }
      return best;
    }
  }
}

/* ---- the grid ----------------------------------------------------------------------- */

typedef struct {
  const qg_rowwise_opts *c;
  int64_t rows, cols, group, ngroups;
  int qmin, qmax;
  float *scales;   /* rows x ngroups */
  uint32_t *codes; /* rows x cols */
  float *scratch;
  double *xrow, *tmp;
} rw_state;

static int64_t rw_group(const void *cfg) { return ((const qg_rowwise_opts *)cfg)->group; }

static void rw_free(void *p) {
  rw_state *st = p;
  if (!st) return;
  free(st->scales), free(st->codes), free(st->scratch), free(st->xrow), free(st->tmp);
  free(st);
}

static qg_status rw_begin(const void *cfg, const qg_qinput *in, void **out) {
  const qg_rowwise_opts *c = cfg;
  rw_state *st = calloc(1, sizeof *st);
  if (!st) return qg_fail(QG_ERR_NOMEM, "out of memory");
  st->c = c;
  st->rows = in->rows, st->cols = in->cols;
  st->group = c->group ? c->group : in->cols;
  st->ngroups = in->cols / st->group;
  qg_rowwise_code_range(c, &st->qmin, &st->qmax);
  st->scales = calloc((size_t)(st->rows * st->ngroups), sizeof *st->scales);
  st->codes = calloc((size_t)(st->rows * st->cols), sizeof *st->codes);
  st->scratch = malloc((size_t)st->group * sizeof *st->scratch);
  st->xrow = malloc((size_t)st->group * sizeof *st->xrow);
  st->tmp = malloc((size_t)st->group * sizeof *st->tmp);
  if (!st->scales || !st->codes || !st->scratch || !st->xrow || !st->tmp) {
    rw_free(st);
    return qg_fail(QG_ERR_NOMEM, "out of memory (%lld x %lld)", (long long)in->rows, (long long)in->cols);
  }
  *out = st;
  return QG_OK;
}

static qg_status rw_set_scale(void *p, int64_t gi, const double *x, int64_t ldx, int64_t n, const double *imp) {
  rw_state *st = p;
  if (gi < 0 || gi >= st->ngroups || n != st->group)
    return qg_fail(QG_ERR_INTERNAL, "rowwise grid: group %lld of %lld columns (expected < %lld, %lld)", (long long)gi,
                   (long long)n, (long long)st->ngroups, (long long)st->group);
  for (int64_t r = 0; r < st->rows; r++) {
    memcpy(st->xrow, x + r * ldx, (size_t)n * sizeof *x);
    st->scales[r * st->ngroups + gi] = choose_scale(st->c, st->xrow, imp, n, st->scratch, st->tmp);
  }
  return QG_OK;
}

static void rw_round(void *p, int64_t col, const double *x, int64_t ldx, double *q, int64_t ldq) {
  rw_state *st = p;
  int64_t gi = col / st->group;
  for (int64_t r = 0; r < st->rows; r++) {
    double s = st->scales[r * st->ngroups + gi];
    double v = rint(x[r * ldx] / s);
    v = v < st->qmin ? st->qmin : v > st->qmax ? st->qmax : v;
    st->codes[r * st->cols + col] = (uint32_t)((int)v - st->qmin);
    q[r * ldq] = v * s;
  }
}

static qg_status rw_finish(void *p, qg_qtensor *out) {
  rw_state *st = p;
  uint32_t *codes;
  uint16_t *sc;
  QG_TRY(qg_qtensor_add(out, "codes", QG_SEC_CODES, st->c->bits, st->rows * st->cols, (void **)&codes));
  memcpy(codes, st->codes, (size_t)(st->rows * st->cols) * sizeof *codes);
  QG_TRY(qg_qtensor_add(out, "scales", QG_SEC_F16, 0, st->rows * st->ngroups, (void **)&sc));
  for (int64_t i = 0; i < st->rows * st->ngroups; i++) sc[i] = qg_f32_to_f16(st->scales[i]);
  return QG_OK;
}

static const qg_grid rw_grid = {
    .width = 1,
    .group = rw_group,
    .begin = rw_begin,
    .set_scale = rw_set_scale,
    .round = rw_round,
    .finish = rw_finish,
    .free = rw_free,
};

/* ---- the quantizer ------------------------------------------------------------------ */

static qg_status rw_quantize(const void *cfg, const qg_qinput *in, qg_qtensor *out) {
  return qg_grid_rtn(&rw_grid, cfg, in, out);
}

static qg_status rw_dequantize(const void *cfg, const qg_qtensor *q, float *w) {
  const qg_rowwise_opts *c = cfg;
  int64_t g = c->group ? c->group : q->cols;
  if (g <= 0 || q->cols % g) return qg_fail(QG_ERR_INPUT, "tensor '%s' (rowwise): group does not divide %lld columns",
                                            q->name ? q->name : "?", (long long)q->cols);
  int64_t ng = q->cols / g;
  const qg_qsection *cs, *ss;
  QG_TRY(qg_qtensor_need(q, "codes", QG_SEC_CODES, q->rows * q->cols, &cs));
  QG_TRY(qg_qtensor_need(q, "scales", QG_SEC_F16, q->rows * ng, &ss));
  if (cs->bits != c->bits)
    return qg_fail(QG_ERR_INPUT, "tensor '%s' (rowwise): codes are %d-bit, options say bits=%d", q->name ? q->name : "?",
                   cs->bits, c->bits);
  int qmin, qmax;
  qg_rowwise_code_range(c, &qmin, &qmax);
  const uint32_t *codes = cs->data;
  const uint16_t *sc = ss->data;
  for (int64_t r = 0; r < q->rows; r++)
    for (int64_t j = 0; j < q->cols; j++) {
      uint32_t u = codes[r * q->cols + j];
      if (u > (uint32_t)(qmax - qmin))
        return qg_fail(QG_ERR_INPUT, "tensor '%s' (rowwise): code %u at [%lld, %lld] outside 0..%d",
                       q->name ? q->name : "?", u, (long long)r, (long long)j, qmax - qmin);
      w[r * q->cols + j] = (float)((int)u + qmin) * qg_f16_to_f32(sc[r * ng + j / g]);
    }
  return QG_OK;
}

static void rw_free_cfg(void *c) { free(c); }

static const char *const rw_docs[] = {
    "bits", "code width: symmetric int-N codes per weight",
    "range", "sym: q in +-(2^(N-1)-1); full: also -2^(N-1) (one more level)",
    "group", "input columns per fp16 scale; 0 = one scale per row",
    "clip", "where the scale clips: pct (quantile of |w|, the contest's), sd (k * std, SDClip), absmax, "
            "search (best ratio of absmax)",
    "pct", "clip=pct: the quantile of |w| in percent",
    "k", "clip=sd: the clip in standard deviations (default 12.85 at 6 bits, 20 at 8, linear in between)",
    "maxshrink", "clip=search: ratios searched over [1 - maxshrink, 1] of absmax",
    "steps", "clip=search: ratios tried",
    "objective", "clip=search: error minimised, mse or hessian (diag H weighted, needs --calib)",
    NULL};

const qg_quantizer qg_quantizer_rowwise = {
    .name = "rowwise",
    .summary = "symmetric int-N (2..8 bits), fp16 scale per row or group; pct/sd/absmax/search clipping",
    .parse = rw_parse,
    .option_docs = rw_docs,
    .free_cfg = rw_free_cfg,
    .canon = rw_canon,
    .can_take = rw_can_take,
    .quantize = rw_quantize,
    .dequantize = rw_dequantize,
    .grid = &rw_grid,
};

const qg_rowwise_opts *qg_rowwise_opts_of(const qg_quantizer *q, const void *cfg) {
  return q == &qg_quantizer_rowwise ? cfg : NULL;
}
