/* turbo: FWHT rotation + Lloyd-Max levels (lloydmax, quant/lloydmax_quantizer.c, is the
 * same levels without the rotation).
 *
 * turbo, per row and per group of g = 2^k input columns: x = the group (times the column
 * equalisation s, when eq > 0), rotated by R = H D (seeded random signs D shared by all
 * rows, normalised Walsh-Hadamard H), scaled to unit variance y = R x sqrt(g) / |x|,
 * rounded coordinatewise to the b-bit Lloyd-Max codebook c for N(0,1), inverted, and
 * given back its norm. After a random rotation every coordinate of a group is close to
 * N(0, |x|^2 / g) whatever the weights looked like, so the Gaussian codebook is the
 * right one and outliers are spread over the whole group.
 *   norm=l2: the fp16 section "norms" stores |x|; the reconstruction is
 *            |x| R^-1 c / |c| (its norm equals the original's).
 *   norm=ls: the fp16 section "scales" stores the least-squares gain a = <R x, c> / |c|^2
 *            and the reconstruction is a R^-1 c: never worse in MSE than l2, since a is
 *            the best multiplier of R^-1 c (l2 over-scales by about 1/sqrt(1 - D)).
 *   eq=alpha: columns scaled by s_i = (H_ii / mean H_ii)^alpha (fp16, section "colscale")
 *            before rotating and divided out after (W x = (W S)(S^-1 x), so the function
 *            is unchanged). Needs a Hessian or importance. After the rotation a group's
 *            error is spread evenly over its columns in proportion to the group's norm,
 *            so column i's error is weighted by H_ii / s_i^2 while the norm grows with
 *            s_i^2: for columns of like magnitude, sum_i H_ii err_i^2 is smallest at
 *            alpha = 1/4 (Cauchy-Schwarz); alpha = 1/2 is neutral.
 * Sections: "codes" (b bits, rows x cols, in rotated order within each group), "norms"
 * or "scales" (rows x groups fp16), "seed" (8 raw bytes, little-endian), ["colscale"].
 * The rounding is written as a grid of width g (a whole group at once, qg_grid.width_of),
 * used for round-to-nearest and as GPTQ's inner grid; see the note at qg_quantizer_turbo.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/fwht.h"
#include "quant/lloydmax.h"
#include "quant/quant_internal.h"
#include "quant/turbo.h"

static const char *const norm_names[] = {"ls", "l2", NULL};

static qg_status tb_parse(qg_opts *o, void **out) {
  qg_turbo_opts *c = calloc(1, sizeof *c);
  if (!c) return qg_fail(QG_ERR_NOMEM, "out of memory");
  int64_t bits, group;
  qg_status s = qg_opt_int(o, "turbo", "bits", 1, QG_LLOYDMAX_MAX_BITS, 4, &bits);
  if (!s) s = qg_opt_int(o, "turbo", "group", 2, (int64_t)1 << 20, 128, &group);
  if (!s) s = qg_opt_choice(o, "turbo", "norm", norm_names, QG_TB_NORM_LS, &c->norm);
  if (!s) s = qg_opt_num(o, "turbo", "eq", 0.0, 1.0, 0.0, &c->eq);
  if (!s && !qg_is_pow2(group))
    s = qg_fail(QG_ERR_INPUT, "turbo: option group=%lld: must be a power of two (2, 4, ..., 2^20)",
                (long long)group);
  if (s) {
    free(c);
    return s;
  }
  c->bits = (int)bits, c->group = group;
  *out = c;
  return QG_OK;
}

static void tb_canon(const void *cfg, qg_buf *b) {
  const qg_turbo_opts *c = cfg;
  qg_buf_printf(b, "bits=%d group=%lld norm=%s eq=%s", c->bits, (long long)c->group,
                norm_names[c->norm], QG_NUMSTR(c->eq));
}

static qg_status tb_can_take(const void *cfg, const char *name, int ndim, const int64_t *shape) {
  const qg_turbo_opts *c = cfg;
  if (ndim != 2) return qg_cannot_take("turbo", name, ndim, shape, "needs a 2-D matrix");
  if (shape[0] < 1 || shape[1] < 1) return qg_cannot_take("turbo", name, ndim, shape, "empty matrix");
  if (shape[1] % c->group)
    return qg_cannot_take("turbo", name, ndim, shape, "%lld columns are not a multiple of group=%lld",
                          (long long)shape[1], (long long)c->group);
  return QG_OK;
}

/* The reconstruction of one group from its codes (rotated order) and stored gain, in
 * original column order: a R^-1 c (ls) or n R^-1 c / |c| (l2), divided by the column
 * scales. Shared by the grid and dequantize so both give the same floats. */
static void tb_recon(const qg_turbo_opts *c, const qg_lloydmax *lm, const uint32_t *codes, float gain,
                     const float *signs, const float *colscale, float *out) {
  int64_t g = c->group;
  double cc = 0;
  for (int64_t j = 0; j < g; j++) {
    out[j] = lm->cf[codes[j]];
    cc += (double)out[j] * out[j];
  }
  float a = c->norm == QG_TB_NORM_LS ? gain : (cc > 0 ? (float)(gain / sqrt(cc)) : 0.0f);
  for (int64_t j = 0; j < g; j++) out[j] *= a;
  qg_rotate_inv(out, signs, g);
  if (colscale)
    for (int64_t j = 0; j < g; j++) out[j] /= colscale[j];
}

typedef struct {
  const qg_turbo_opts *c;
  const qg_lloydmax *lm;
  int64_t rows, cols, ngroups;
  uint64_t seed;
  float *signs;    /* cols */
  float *colscale; /* cols, or NULL without equalisation */
  uint32_t *codes; /* rows x cols */
  float *gain;     /* rows x ngroups (fp16 values) */
  int nthreads;
  float *buf;      /* nthreads x g: one rotation buffer per thread */
} tb_state;

static int64_t tb_group(const void *cfg) { return ((const qg_turbo_opts *)cfg)->group; }

static void tb_free(void *p) {
  tb_state *st = p;
  if (!st) return;
  free(st->signs), free(st->colscale), free(st->codes), free(st->gain), free(st->buf);
  free(st);
}

/* s_i = (d_i / mean d)^alpha in fp16; dead columns (d_i = 0) are floored at 1e-6 of the
 * mean so the division after dequantization stays finite. */
static qg_status tb_colscale(const qg_turbo_opts *c, const qg_qinput *in, float *s) {
  int64_t n = in->cols;
  double mean = 0;
  for (int64_t j = 0; j < n; j++) {
    double d = in->importance ? in->importance[j] : in->hessian[j * n + j];
    if (!(d >= 0) || isinf(d))
      return qg_fail(QG_ERR_INPUT, "turbo eq: importance of column %lld is %g", (long long)j, d);
    mean += d;
  }
  mean /= (double)n;
  for (int64_t j = 0; j < n; j++) {
    double d = in->importance ? in->importance[j] : in->hessian[j * n + j];
    s[j] = mean > 0 ? qg_f16r(pow(fmax(d, 1e-6 * mean) / mean, c->eq)) : 1.0f;
    if (s[j] == 0.0f) s[j] = qg_f16_to_f32(1); /* smallest subnormal, never zero */
  }
  return QG_OK;
}

static qg_status tb_begin(const void *cfg, const qg_qinput *in, void **out) {
  const qg_turbo_opts *c = cfg;
  if (in->cols % c->group)
    return qg_fail(QG_ERR_INPUT, "turbo: %lld columns are not a multiple of group=%lld",
                   (long long)in->cols, (long long)c->group);
  if (c->eq > 0 && !in->importance && !in->hessian)
    return qg_fail(QG_ERR_INPUT, "turbo: eq=%g needs a Hessian or per-column importance "
                   "(calibrate, or use eq=0)", c->eq);
  tb_state *st = calloc(1, sizeof *st);
  if (!st) return qg_fail(QG_ERR_NOMEM, "out of memory");
  st->c = c;
  st->lm = qg_lloydmax_gaussian_cached(c->bits);
  st->rows = in->rows, st->cols = in->cols, st->ngroups = in->cols / c->group;
  st->seed = in->seed;
  st->signs = malloc((size_t)in->cols * sizeof *st->signs);
  st->codes = calloc((size_t)(in->rows * in->cols), sizeof *st->codes);
  st->gain = calloc((size_t)(in->rows * st->ngroups), sizeof *st->gain);
  st->nthreads = qg_quant_threads();
  st->buf = malloc((size_t)st->nthreads * (size_t)c->group * sizeof *st->buf);
  if (c->eq > 0) st->colscale = malloc((size_t)in->cols * sizeof *st->colscale);
  if (!st->lm || !st->signs || !st->codes || !st->gain || !st->buf || (c->eq > 0 && !st->colscale)) {
    tb_free(st);
    return qg_fail(QG_ERR_NOMEM, "out of memory (%lld x %lld)", (long long)in->rows, (long long)in->cols);
  }
  qg_random_signs(st->seed, st->signs, in->cols);
  if (st->colscale) {
    qg_status s = tb_colscale(c, in, st->colscale);
    if (s) {
      tb_free(st);
      return s;
    }
  }
  *out = st;
  return QG_OK;
}

/* The gains depend on each group's current values, so they are set in round(). */
static qg_status tb_set_scale(void *p, int64_t gi, const double *x, int64_t ldx, int64_t n, const double *imp) {
  tb_state *st = p;
  (void)x, (void)ldx, (void)imp;
  if (gi < 0 || gi >= st->ngroups || n != st->c->group)
    return qg_fail(QG_ERR_INTERNAL, "turbo grid: group %lld of %lld columns", (long long)gi, (long long)n);
  return QG_OK;
}

/* One task per row (rows are independent; each thread rotates in its own buffer, so the
 * result is bitwise that of a sequential loop). */
typedef struct {
  tb_state *st;
  int64_t col, ldx, ldq;
  const double *x;
  double *q;
} tb_round_job;

static void tb_round_row(void *p, int64_t r, int thread) {
  const tb_round_job *jb = p;
  tb_state *st = jb->st;
  const qg_turbo_opts *c = st->c;
  int64_t g = c->group, col = jb->col, gi = col / g;
  const float *sg = st->signs + col, *cs = st->colscale ? st->colscale + col : NULL;
  float *b = st->buf + (size_t)thread * (size_t)g;
  uint32_t *codes = st->codes + r * st->cols + col;
  for (int64_t j = 0; j < g; j++) b[j] = (float)(jb->x[r * jb->ldx + j] * (cs ? cs[j] : 1.0));
  qg_rotate_fwd(b, sg, g);
  double nn = 0;
  for (int64_t j = 0; j < g; j++) nn += (double)b[j] * b[j];
  double norm = sqrt(nn), k = norm > 0 ? sqrt((double)g) / norm : 0.0, dot = 0, cc = 0;
  for (int64_t j = 0; j < g; j++) {
    int i = qg_lloydmax_index(st->lm, (float)(b[j] * k));
    codes[j] = (uint32_t)i;
    dot += (double)b[j] * st->lm->c[i];
    cc += st->lm->c[i] * st->lm->c[i];
  }
  float gain = c->norm == QG_TB_NORM_LS ? qg_f16r(dot / cc) : qg_f16r(norm);
  st->gain[r * st->ngroups + gi] = gain;
  tb_recon(c, st->lm, codes, gain, sg, cs, b);
  for (int64_t j = 0; j < g; j++) jb->q[r * jb->ldq + j] = b[j];
}

static void tb_round(void *p, int64_t col, const double *x, int64_t ldx, double *q, int64_t ldq) {
  tb_round_job jb = {p, col, ldx, ldq, x, q};
  qg_quant_parallel_for(((tb_state *)p)->rows, tb_round_row, &jb);
}

static qg_status tb_finish(void *p, qg_qtensor *out) {
  tb_state *st = p;
  const qg_turbo_opts *c = st->c;
  uint32_t *codes;
  uint16_t *h;
  uint8_t *seed;
  int64_t n = st->rows * st->cols, ng = st->rows * st->ngroups;
  QG_TRY(qg_qtensor_add(out, "codes", QG_SEC_CODES, c->bits, n, (void **)&codes));
  memcpy(codes, st->codes, (size_t)n * sizeof *codes);
  QG_TRY(qg_qtensor_add(out, c->norm == QG_TB_NORM_LS ? "scales" : "norms", QG_SEC_F16, 0, ng, (void **)&h));
  for (int64_t i = 0; i < ng; i++) h[i] = qg_f32_to_f16(st->gain[i]);
  QG_TRY(qg_qtensor_add(out, "seed", QG_SEC_RAW, 0, 8, (void **)&seed));
  for (int i = 0; i < 8; i++) seed[i] = (uint8_t)(st->seed >> (8 * i));
  if (st->colscale) {
    QG_TRY(qg_qtensor_add(out, "colscale", QG_SEC_F16, 0, st->cols, (void **)&h));
    for (int64_t j = 0; j < st->cols; j++) h[j] = qg_f32_to_f16(st->colscale[j]);
  }
  return QG_OK;
}

static int tb_width(const void *cfg) { return (int)((const qg_turbo_opts *)cfg)->group; }

/* Width: the group (width_of), one rotation block rounded at once. */
static const qg_grid tb_grid = {
    .group = tb_group,
    .begin = tb_begin,
    .set_scale = tb_set_scale,
    .round = tb_round,
    .finish = tb_finish,
    .free = tb_free,
    .width_of = tb_width,
};

static qg_status tb_quantize(const void *cfg, const qg_qinput *in, qg_qtensor *out) {
  return qg_grid_rtn(&tb_grid, cfg, in, out);
}

static qg_status tb_dequantize(const void *cfg, const qg_qtensor *q, float *w) {
  const qg_turbo_opts *c = cfg;
  const char *nm = q->name ? q->name : "?";
  int64_t g = c->group;
  if (q->cols % g)
    return qg_fail(QG_ERR_INPUT, "tensor '%s' (turbo): %lld columns are not a multiple of group=%lld", nm,
                   (long long)q->cols, (long long)g);
  int64_t ng = q->cols / g;
  const qg_qsection *cs, *gs, *ss, *es = NULL;
  QG_TRY(qg_qtensor_need(q, "codes", QG_SEC_CODES, q->rows * q->cols, &cs));
  QG_TRY(qg_qtensor_need(q, c->norm == QG_TB_NORM_LS ? "scales" : "norms", QG_SEC_F16, q->rows * ng, &gs));
  QG_TRY(qg_qtensor_need(q, "seed", QG_SEC_RAW, 8, &ss));
  if (c->eq > 0) QG_TRY(qg_qtensor_need(q, "colscale", QG_SEC_F16, q->cols, &es));
  if (cs->bits != c->bits)
    return qg_fail(QG_ERR_INPUT, "tensor '%s' (turbo): codes are %d-bit, options say bits=%d", nm, cs->bits,
                   c->bits);
  const qg_lloydmax *lm = qg_lloydmax_gaussian_cached(c->bits);
  const uint32_t *codes = cs->data;
  for (int64_t i = 0; i < q->rows * q->cols; i++)
    if (codes[i] >= (uint32_t)lm->levels)
      return qg_fail(QG_ERR_INPUT, "tensor '%s' (turbo): code %u at %lld outside 0..%d", nm, codes[i],
                     (long long)i, lm->levels - 1);
  uint64_t seed = 0;
  for (int i = 0; i < 8; i++) seed |= (uint64_t)((const uint8_t *)ss->data)[i] << (8 * i);
  float *signs = malloc((size_t)q->cols * sizeof *signs), *colscale = NULL;
  if (es) colscale = malloc((size_t)q->cols * sizeof *colscale);
  if (!signs || (es && !colscale)) {
    free(signs), free(colscale);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  qg_random_signs(seed, signs, q->cols);
  qg_status s = QG_OK;
  if (es)
    for (int64_t j = 0; j < q->cols && !s; j++) {
      colscale[j] = qg_f16_to_f32(((const uint16_t *)es->data)[j]);
      if (!(colscale[j] > 0) || isinf(colscale[j]))
        s = qg_fail(QG_ERR_INPUT, "tensor '%s' (turbo): column scale %lld is %g", nm, (long long)j, colscale[j]);
    }
  const uint16_t *gain = gs->data;
  for (int64_t r = 0; r < q->rows && !s; r++)
    for (int64_t k = 0; k < ng; k++) {
      float a = qg_f16_to_f32(gain[r * ng + k]);
      if (!isfinite(a)) {
        s = qg_fail(QG_ERR_INPUT, "tensor '%s' (turbo): non-finite gain at row %lld group %lld", nm,
                    (long long)r, (long long)k);
        break;
      }
      tb_recon(c, lm, codes + r * q->cols + k * g, a, signs + k * g, colscale ? colscale + k * g : NULL,
               w + r * q->cols + k * g);
    }
  free(signs), free(colscale);
  return s;
}

static void tb_free_cfg(void *c) { free(c); }

/* A GPTQ grid of width = group (qg_grid.width_of): "gptq grid=turbo bits=3 group=32"
 * rotates each group of the error-updated weights, rounds the rotated coordinates to the
 * Lloyd-Max levels, and GPTQ feeds the group's error back in the original basis through
 * its block update (E = (W_b - Q_b) U_bb^-1), as for E8's 8 columns. GPTQ's blocksize must
 * be a multiple of the group; act_order is not available (width > 1). */
static const char *const tb_docs[] = {
    "bits", "code width: 2^bits Gaussian Lloyd-Max levels after the rotation",
    "group", "rotation group in input columns (a power of two)",
    "norm", "l2: store |x|; ls: store the least-squares gain (never worse in MSE)",
    "eq", "column equalisation exponent alpha (0 off; needs --calib; 1/4 is the optimum)",
    NULL};

const qg_quantizer qg_quantizer_turbo = {
    .name = "turbo",
    .summary = "FWHT rotation (seeded signs) + Gaussian Lloyd-Max levels per group of 2^k columns, fp16 norms",
    .parse = tb_parse,
    .option_docs = tb_docs,
    .free_cfg = tb_free_cfg,
    .canon = tb_canon,
    .can_take = tb_can_take,
    .quantize = tb_quantize,
    .dequantize = tb_dequantize,
    .grid = &tb_grid,
};

const qg_turbo_opts *qg_turbo_opts_of(const qg_quantizer *q, const void *cfg) {
  return q == &qg_quantizer_turbo ? cfg : NULL;
}
