/* e8: E8 lattice vector quantization over 8 consecutive input columns (quant/e8.h).
 *
 * Each row (or group of g columns, g a multiple of 8) has one fp16 scale s per stage;
 * 8 weights v are coded as the index of the codebook entry nearest to v / s, and
 * reconstructed as s * entry. Residual stages code what the earlier ones left
 * (v - s1 e1, ...) with their own scale, as QuIP#'s RVQ does:
 *   cb=e8p bits=2: E8P (65,536 entries, 16 bits per 8 weights)
 *   cb=e8p bits=3: E8P + the 241-point E8 ball (r^2 = 2; 8-bit indices)
 *   cb=e8p bits=4: E8P + E8P
 *   cb=ball bits=b (1 <= b <= 2.5): one stage, the largest E8 ball with at most 2^(8b)
 *                  points (b = 2: 56,881 points, r^2 = 10).
 * Scales: s = (RMS / u) * m, u the codebook's RMS coordinate, m the best of `steps`
 * multipliers spaced geometrically over [lo, hi] (then refined twice) for sum imp_j (v_j - q_j)^2 (imp = 1,
 * or diag H with objective=hessian); with two stages the pair is searched jointly
 * (see e8_joint). Sections: "codes" (stage 1 indices, rows x cols/8,
 * index_bits each), "codes2" (stage 2), "scales" (stages x rows x groups fp16, stage
 * major). A GPTQ grid of width 8: GPTQ feeds back the error of 8 columns at a time. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/e8.h"
#include "quant/e8_quantizer.h"
#include "quant/quant_internal.h"

static const char *const cb_names[] = {"e8p", "ball", NULL};

static void e8_free_cfg(void *p) {
  qg_e8_opts *c = p;
  if (!c) return;
  qg_e8_codebook_free(&c->own);
  free(c);
}

static float cb_unit(const qg_e8_codebook *cb) {
  double s = 0;
  for (uint32_t i = 0; i < cb->size; i++) {
    float v[8];
    qg_e8_decode(cb, i, v);
    for (int j = 0; j < 8; j++) s += (double)v[j] * v[j];
  }
  return (float)sqrt(s / (8.0 * cb->size));
}

/* The candidates of stage_scale over [lo, hi] in `steps`: geometric, the middle for one
 * step; each refinement round square-roots the spacing. */
static void search_of(double lo, double hi, int steps, qg_e8_search *sr) {
  double ratio = steps > 1 ? pow(hi / lo, 1.0 / (steps - 1)) : 1.0;
  sr->n = steps;
  for (int i = 0; i < steps; i++) sr->mult[i] = steps == 1 ? sqrt(lo * hi) : lo * pow(ratio, i);
  for (int r = 0; r < 2; r++) {
    ratio = sqrt(ratio);
    sr->up[r] = pow(ratio, 1);
    sr->dn[r] = pow(ratio, -1);
  }
}

static qg_status e8_parse(qg_opts *o, void **out) {
  qg_e8_opts *c = calloc(1, sizeof *c);
  if (!c) return qg_fail(QG_ERR_NOMEM, "out of memory");
  int64_t group, steps;
  qg_status s = qg_opt_choice(o, "e8", "cb", cb_names, QG_E8_CB_E8P, &c->cb);
  if (!s) s = qg_opt_num(o, "e8", "bits", 1.0, 4.0, 2.0, &c->bits);
  if (!s) s = qg_opt_int(o, "e8", "group", 0, (int64_t)1 << 30, 0, &group);
  if (!s) s = qg_opt_num(o, "e8", "lo", 0.05, 20.0, 0.5, &c->lo);
  if (!s) s = qg_opt_num(o, "e8", "hi", 0.05, 20.0, 2.0, &c->hi);
  if (!s) s = qg_opt_int(o, "e8", "steps", 1, QG_E8_MAX_STEPS, 12, &steps);
  if (!s) s = qg_opt_choice(o, "e8", "objective", qg_objective_names, 0, &c->objective);
  if (!s && c->lo > c->hi) s = qg_fail(QG_ERR_INPUT, "e8: lo=%g is above hi=%g", c->lo, c->hi);
  if (!s && group % 8) s = qg_fail(QG_ERR_INPUT, "e8: option group=%lld: must be a multiple of 8", (long long)group);
  if (!s && c->cb == QG_E8_CB_E8P && c->bits != 2 && c->bits != 3 && c->bits != 4)
    s = qg_fail(QG_ERR_INPUT, "e8: option bits=%g: cb=e8p takes 2, 3 or 4 (E8P, + 1-bit ball, + E8P)", c->bits);
  if (!s && c->cb == QG_E8_CB_BALL && c->bits > QG_E8CB_MAX_INDEX_BITS / 8.0)
    s = qg_fail(QG_ERR_INPUT, "e8: option bits=%g: cb=ball takes 1 .. %g", c->bits, QG_E8CB_MAX_INDEX_BITS / 8.0);
  if (!s) {
    c->group = group, c->steps = (int)steps;
    c->steps2 = c->steps / 2 > 4 ? c->steps / 2 : 4;
    search_of(c->lo, c->hi, c->steps, &c->search[0]);
    search_of(QG_E8_S2_LO, QG_E8_S2_HI, c->steps2, &c->search[1]);
    if (c->cb == QG_E8_CB_E8P) {
      c->nstages = c->bits == 2 ? 1 : 2;
      c->stage[0] = qg_e8_codebook_get("e8p");
      if (c->bits == 3) c->stage[1] = qg_e8_codebook_get("ball1");
      if (c->bits == 4) c->stage[1] = c->stage[0];
    } else {
      c->nstages = 1;
      if (c->bits == 1) c->stage[0] = qg_e8_codebook_get("ball1");
      else if (c->bits == 2) c->stage[0] = qg_e8_codebook_get("ball2");
      else if (!(s = qg_e8_codebook_for_bits(c->bits, &c->own))) c->stage[0] = &c->own;
    }
    for (int k = 0; !s && k < c->nstages; k++)
      if (!c->stage[k]) s = qg_fail(QG_ERR_NOMEM, "e8: out of memory building a codebook");
    for (int k = 0; !s && k < c->nstages; k++) c->unit[k] = cb_unit(c->stage[k]);
  }
  if (s) {
    e8_free_cfg(c);
    return s;
  }
  *out = c;
  return QG_OK;
}

static void e8_canon(const void *cfg, qg_buf *b) {
  const qg_e8_opts *c = cfg;
  qg_buf_printf(b, "cb=%s bits=%s group=%lld lo=%s hi=%s steps=%d objective=%s", cb_names[c->cb], QG_NUMSTR(c->bits),
                (long long)c->group, QG_NUMSTR(c->lo), QG_NUMSTR(c->hi), c->steps, qg_objective_names[c->objective]);
}

static qg_status e8_can_take(const void *cfg, const char *name, int ndim, const int64_t *shape) {
  const qg_e8_opts *c = cfg;
  if (ndim != 2) return qg_cannot_take("e8", name, ndim, shape, "needs a 2-D matrix");
  if (shape[0] < 1 || shape[1] < 1) return qg_cannot_take("e8", name, ndim, shape, "empty matrix");
  if (shape[1] % 8) return qg_cannot_take("e8", name, ndim, shape, "%lld columns are not a multiple of 8", (long long)shape[1]);
  if (c->group && shape[1] % c->group)
    return qg_cannot_take("e8", name, ndim, shape, "%lld columns are not a multiple of group=%lld",
                          (long long)shape[1], (long long)c->group);
  return QG_OK;
}

/* ---- the grid ----------------------------------------------------------------------- */

typedef struct {
  const qg_e8_opts *c;
  int64_t rows, cols, group, ngroups, nvec; /* nvec = cols / 8 */
  float *scales;                            /* stages x rows x ngroups (fp16 values) */
  uint32_t *codes;                          /* stages x rows x nvec */
  int nthreads;
  double *res;                              /* nthreads x group: residuals, per thread */
} e8_state;

static int64_t e8_group(const void *cfg) { return ((const qg_e8_opts *)cfg)->group; }

static void e8_free(void *p) {
  e8_state *st = p;
  if (!st) return;
  free(st->scales), free(st->codes), free(st->res);
  free(st);
}

static qg_status e8_begin(const void *cfg, const qg_qinput *in, void **out) {
  const qg_e8_opts *c = cfg;
  if (in->cols % 8) return qg_fail(QG_ERR_INPUT, "e8: %lld columns are not a multiple of 8", (long long)in->cols);
  e8_state *st = calloc(1, sizeof *st);
  if (!st) return qg_fail(QG_ERR_NOMEM, "out of memory");
  st->c = c;
  st->rows = in->rows, st->cols = in->cols, st->nvec = in->cols / 8;
  st->group = c->group ? c->group : in->cols;
  st->ngroups = in->cols / st->group;
  st->scales = calloc((size_t)(c->nstages * st->rows * st->ngroups), sizeof *st->scales);
  st->codes = calloc((size_t)(c->nstages * st->rows * st->nvec), sizeof *st->codes);
  st->nthreads = qg_quant_threads();
  st->res = malloc((size_t)st->nthreads * (size_t)st->group * sizeof *st->res);
  if (!st->scales || !st->codes || !st->res) {
    e8_free(st);
    return qg_fail(QG_ERR_NOMEM, "out of memory (%lld x %lld)", (long long)in->rows, (long long)in->cols);
  }
  *out = st;
  return QG_OK;
}

/* Codes 8 values x with scale s: the entry index, and s * entry into q (float, the
 * product dequantize computes). */
static uint32_t code8(const qg_e8_codebook *cb, const double *x, float s, float *q) {
  float v[8];
  for (int j = 0; j < 8; j++) v[j] = (float)(x[j] / s);
  uint32_t i = qg_e8_encode(cb, v, NULL);
  qg_e8_decode(cb, i, v);
  for (int j = 0; j < 8; j++) q[j] = s * v[j];
  return i;
}

/* The error of coding x at scale s, sum imp_j (x_j - q_j)^2; the sum stops early, at a
 * partial value, once it exceeds `stop` (or reaches it, when `reach`): the terms are >= 0
 * (imp >= 0, checked by the caller), so the full sum could only be larger, and the scale
 * searches below only need to know that this candidate cannot win. */
static double stage_err_upto(const qg_e8_codebook *cb, const double *x, const double *imp, int64_t n, float s,
                             double stop, int reach) {
  double e = 0;
  for (int64_t j = 0; j < n; j += 8) {
    float q[8];
    code8(cb, x + j, s, q);
    for (int k = 0; k < 8; k++) e += (imp ? imp[j + k] : 1.0) * (x[j + k] - q[k]) * (x[j + k] - q[k]);
    if (e > stop || (reach && e == stop)) return e;
  }
  return e;
}

static double stage_err(const qg_e8_codebook *cb, const double *x, const double *imp, int64_t n, float s) {
  return stage_err_upto(cb, x, imp, n, s, INFINITY, 0);
}

/* The best scale for one stage on n values x: the search's multipliers of RMS / unit
 * (geometric over a range), then two refinements halving the spacing around the best
 * (encodes are the cost, so a coarse grid plus refinement beats a fine grid); *err gets
 * its error. The winner is the first candidate (in the grid's order) of least error, as
 * a plain loop finds it; the grid is visited from the middle outwards, so a good error
 * is known early and the other candidates' sums stop as soon as they cannot win (a
 * candidate before the best so far must stay at or below its error to win, one after it
 * strictly below), which leaves every result as the plain loop's. */
static float stage_scale(const qg_e8_opts *c, int k, const double *x, const double *imp, int64_t n,
                         const qg_e8_search *sr, double *err) {
  double ss = 0;
  int prune = 1;
  for (int64_t j = 0; j < n; j++) {
    ss += x[j] * x[j];
    if (imp && !(imp[j] >= 0)) prune = 0; /* a negative or NaN weight: sums not monotone */
  }
  double base = sqrt(ss / (double)n) / c->unit[k];
  /* all zero: the smallest scale makes every entry ~0 */
  float best = qg_f16_to_f32(1);
  double be = INFINITY, bm = 0;
  int bi = -1, mid = (sr->n - 1) / 2, order[QG_E8_MAX_STEPS], no = 0;
  order[no++] = mid;
  for (int d = 1; no < sr->n; d++) {
    if (mid + d < sr->n) order[no++] = mid + d;
    if (mid - d >= 0) order[no++] = mid - d;
  }
  for (int t = 0; base > 0 && t < sr->n; t++) {
    int i = order[t];
    double m = sr->mult[i];
    float s = qg_f16r(base * m);
    if (s == 0.0f) continue;
    int before = bi >= 0 && i < bi;
    double e = prune ? stage_err_upto(c->stage[k], x, imp, n, s, be, !before) : stage_err(c->stage[k], x, imp, n, s);
    if (e < be || (before && e == be)) be = e, best = s, bm = m, bi = i;
  }
  for (int round = 0; bm > 0 && sr->n > 1 && round < 2; round++) {
    double m0 = bm;
    for (int sgn = -1; sgn <= 1; sgn += 2) {
      double m = m0 * (sgn < 0 ? sr->dn[round] : sr->up[round]);
      float s = qg_f16r(base * m);
      if (s == 0.0f || s == best) continue;
      double e = prune ? stage_err_upto(c->stage[k], x, imp, n, s, be, 1) : stage_err(c->stage[k], x, imp, n, s);
      if (e < be) be = e, best = s, bm = m;
    }
  }
  if (err) *err = be < INFINITY ? be : stage_err(c->stage[k], x, imp, n, best);
  return best;
}

/* x minus its stage reconstruction at scale s, into r. */
static void residual(const qg_e8_codebook *cb, const double *x, int64_t n, float s, double *r) {
  for (int64_t j = 0; j < n; j += 8) {
    float q[8];
    code8(cb, x + j, s, q);
    for (int t = 0; t < 8; t++) r[j + t] = x[j + t] - q[t];
  }
}

/* Stage-1 scales tried jointly with stage 2, as multiples of stage 1's own best: a
 * coarser first stage leaves a residual the second codes better (on Gaussian data the
 * joint optimum is ~1.15x the single-stage one and gives 4 bits 16 % less MSE). */
static const double e8_joint[] = {0.94, 1.0, 1.06, 1.12, 1.19, 1.26};

/* One task per row: rows are independent, each thread has its own residual buffer, so
 * the scales are bitwise those of a sequential loop. */
typedef struct {
  e8_state *st;
  int64_t gi, ldx, n;
  const double *x, *w;
} e8_scale_job;

static void e8_scale_row(void *p, int64_t r, int thread) {
  const e8_scale_job *j = p;
  e8_state *st = j->st;
  const qg_e8_opts *c = st->c;
  const double *xr = j->x + r * j->ldx, *w = j->w;
  int64_t n = j->n, gi = j->gi;
  float *s1 = &st->scales[r * st->ngroups + gi];
  *s1 = stage_scale(c, 0, xr, w, n, &c->search[0], NULL);
  if (c->nstages == 1) return;
  double *res = st->res + (size_t)thread * (size_t)st->group;
  float *s2 = &st->scales[(st->rows + r) * st->ngroups + gi], solo = *s1;
  double best = INFINITY;
  for (size_t f = 0; f < sizeof e8_joint / sizeof *e8_joint; f++) {
    float a = qg_f16r(solo * e8_joint[f]), b;
    double e;
    if (a == 0.0f) continue;
    residual(c->stage[0], xr, n, a, res);
    b = stage_scale(c, 1, res, w, n, &c->search[1], &e);
    if (e < best) best = e, *s1 = a, *s2 = b;
  }
}

static qg_status e8_set_scale(void *p, int64_t gi, const double *x, int64_t ldx, int64_t n, const double *imp) {
  e8_state *st = p;
  const qg_e8_opts *c = st->c;
  if (gi < 0 || gi >= st->ngroups || n != st->group)
    return qg_fail(QG_ERR_INTERNAL, "e8 grid: group %lld of %lld columns", (long long)gi, (long long)n);
  e8_scale_job j = {st, gi, ldx, n, x, c->objective == 1 ? imp : NULL};
  qg_quant_parallel_for(st->rows, e8_scale_row, &j);
  return QG_OK;
}

typedef struct {
  e8_state *st;
  int64_t col, ldx, ldq;
  const double *x;
  double *q;
} e8_round_job;

static void e8_round_row(void *p, int64_t r, int thread) {
  const e8_round_job *j = p;
  e8_state *st = j->st;
  const qg_e8_opts *c = st->c;
  int64_t gi = j->col / st->group, vi = j->col / 8;
  double res[8];
  float acc[8] = {0}, qk[8];
  (void)thread;
  memcpy(res, j->x + r * j->ldx, sizeof res);
  for (int k = 0; k < c->nstages; k++) {
    float s = st->scales[(k * st->rows + r) * st->ngroups + gi];
    st->codes[(k * st->rows + r) * st->nvec + vi] = code8(c->stage[k], res, s, qk);
    for (int t = 0; t < 8; t++) acc[t] += qk[t], res[t] -= qk[t];
  }
  for (int t = 0; t < 8; t++) j->q[r * j->ldq + t] = acc[t];
}

static void e8_round(void *p, int64_t col, const double *x, int64_t ldx, double *q, int64_t ldq) {
  e8_round_job j = {p, col, ldx, ldq, x, q};
  qg_quant_parallel_for(((e8_state *)p)->rows, e8_round_row, &j);
}

static const char *const code_names[QG_E8_MAX_STAGES] = {"codes", "codes2"};

static qg_status e8_finish(void *p, qg_qtensor *out) {
  e8_state *st = p;
  const qg_e8_opts *c = st->c;
  int64_t nv = st->rows * st->nvec, ns = c->nstages * st->rows * st->ngroups;
  for (int k = 0; k < c->nstages; k++) {
    uint32_t *codes;
    QG_TRY(qg_qtensor_add(out, code_names[k], QG_SEC_CODES, c->stage[k]->index_bits, nv, (void **)&codes));
    memcpy(codes, st->codes + k * nv, (size_t)nv * sizeof *codes);
  }
  uint16_t *h;
  QG_TRY(qg_qtensor_add(out, "scales", QG_SEC_F16, 0, ns, (void **)&h));
  for (int64_t i = 0; i < ns; i++) h[i] = qg_f32_to_f16(st->scales[i]);
  return QG_OK;
}

static const qg_grid e8_grid = {
    .width = 8,
    .group = e8_group,
    .begin = e8_begin,
    .set_scale = e8_set_scale,
    .round = e8_round,
    .finish = e8_finish,
    .free = e8_free,
};

/* ---- the quantizer ------------------------------------------------------------------ */

static qg_status e8_quantize(const void *cfg, const qg_qinput *in, qg_qtensor *out) {
  return qg_grid_rtn(&e8_grid, cfg, in, out);
}

static qg_status e8_dequantize(const void *cfg, const qg_qtensor *q, float *w) {
  const qg_e8_opts *c = cfg;
  const char *nm = q->name ? q->name : "?";
  int64_t g = c->group ? c->group : q->cols;
  if (q->cols % 8 || g <= 0 || q->cols % g)
    return qg_fail(QG_ERR_INPUT, "tensor '%s' (e8): %lld columns do not split into groups of 8 and %lld", nm,
                   (long long)q->cols, (long long)g);
  int64_t ng = q->cols / g, nvec = q->cols / 8;
  const qg_qsection *cs[QG_E8_MAX_STAGES], *ss;
  for (int k = 0; k < c->nstages; k++) {
    QG_TRY(qg_qtensor_need(q, code_names[k], QG_SEC_CODES, q->rows * nvec, &cs[k]));
    if (cs[k]->bits != c->stage[k]->index_bits)
      return qg_fail(QG_ERR_INPUT, "tensor '%s' (e8): %s are %d-bit, the codebook needs %d", nm, code_names[k],
                     cs[k]->bits, c->stage[k]->index_bits);
    const uint32_t *codes = cs[k]->data;
    for (int64_t i = 0; i < q->rows * nvec; i++)
      if (codes[i] >= c->stage[k]->size)
        return qg_fail(QG_ERR_INPUT, "tensor '%s' (e8): %s[%lld] = %u outside the %u-entry codebook", nm,
                       code_names[k], (long long)i, codes[i], c->stage[k]->size);
  }
  QG_TRY(qg_qtensor_need(q, "scales", QG_SEC_F16, c->nstages * q->rows * ng, &ss));
  const uint16_t *sc = ss->data;
  for (int64_t i = 0; i < c->nstages * q->rows * ng; i++)
    if (!isfinite(qg_f16_to_f32(sc[i])))
      return qg_fail(QG_ERR_INPUT, "tensor '%s' (e8): non-finite scale at %lld", nm, (long long)i);
  for (int64_t r = 0; r < q->rows; r++)
    for (int64_t v = 0; v < nvec; v++) {
      float acc[8] = {0}, e[8];
      for (int k = 0; k < c->nstages; k++) {
        float s = qg_f16_to_f32(sc[(k * q->rows + r) * ng + v * 8 / g]);
        qg_e8_decode(c->stage[k], ((const uint32_t *)cs[k]->data)[r * nvec + v], e);
        for (int t = 0; t < 8; t++) acc[t] += s * e[t];
      }
      memcpy(w + r * q->cols + v * 8, acc, sizeof acc);
    }
  return QG_OK;
}

static const char *const e8_docs[] = {
    "cb", "codebook: e8p (2-bit E8P, residual stages above 2 bits) or ball (E8 points in a ball)",
    "bits", "bits per weight (8 weights share one codeword)",
    "group", "input columns per fp16 scale (a multiple of 8); 0 = one scale per row",
    "lo", "lowest scale multiple searched",
    "hi", "highest scale multiple searched",
    "steps", "scale candidates over [lo, hi]",
    "objective", "error minimised, mse or hessian (needs --calib)",
    NULL};

const qg_quantizer qg_quantizer_e8 = {
    .name = "e8",
    .summary = "E8 lattice VQ over 8 columns: E8P 2-bit codebook (+ residual stages for 3-4 bits) or an E8 ball; "
               "fp16 scales",
    .parse = e8_parse,
    .option_docs = e8_docs,
    .free_cfg = e8_free_cfg,
    .canon = e8_canon,
    .can_take = e8_can_take,
    .quantize = e8_quantize,
    .dequantize = e8_dequantize,
    .grid = &e8_grid,
};

const qg_e8_opts *qg_e8_opts_of(const qg_quantizer *q, const void *cfg) {
  return q == &qg_quantizer_e8 ? cfg : NULL;
}
