/* gptq: GPTQ (Frantar et al. 2022, "fasterquant") with lazy blocks, act_order, static
 * groups and dead columns; the rounding is delegated to an inner grid (quant/quantizer.h,
 * struct qg_grid), rowwise by default, so "gptq grid=lloydmax ..." needs no new code.
 *
 * With U the upper Cholesky factor of (H + lambda I)^-1 (H^-1 = U^T U), GPTQ visits columns
 * in order and, after rounding column i, spreads its error over the later columns:
 *   err = (w_i - q_i) / U_ii,   W[:, j] -= err * U_ij   for j > i.
 * Lazy blocks (width 128) apply the update inside the block at once and to the columns
 * after it with one GEMM per block (the same arithmetic, reordered). A grid of width w > 1
 * (E8: 8 columns; turbo: its rotation group, via the grid's width_of) rounds w columns
 * jointly; its error is E = (W_b - Q_b) U_bb^-1 and the
 * update W[:, rest] -= E U_b,rest (the block form of the same recursion, as GPTVQ).
 * The tensor's codes are whatever the inner grid wrote, so dequantization is the inner
 * quantizer's own. */
#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/gptq.h"
#include "quant/quant_internal.h"

static void gptq_free_cfg(void *p) {
  qg_gptq_opts *c = p;
  if (!c) return;
  qg_qconfig_free(&c->grid);
  free(c);
}

static qg_status gptq_parse(qg_opts *o, void **out) {
  qg_gptq_opts *c = calloc(1, sizeof *c);
  if (!c) return qg_fail(QG_ERR_NOMEM, "out of memory");
  const char *grid;
  int64_t bs, ao, sg;
  qg_status s = qg_opt_str(o, "gptq", "grid", "rowwise", &grid);
  if (!s) s = qg_opt_num(o, "gptq", "percdamp", 0.0, 100.0, 0.01, &c->percdamp);
  if (!s) s = qg_opt_int(o, "gptq", "blocksize", 1, 4096, 128, &bs);
  if (!s) s = qg_opt_int(o, "gptq", "act_order", 0, 1, 0, &ao);
  /* with act_order and groups, group membership must follow original columns so the
   * inner quantizer's layout holds: static groups are the default then */
  if (!s) s = qg_opt_int(o, "gptq", "static_groups", 0, 1, ao, &sg);
  if (!s) {
    c->grid.q = qg_quantizer_find(grid);
    if (!c->grid.q || !c->grid.q->grid) {
      qg_buf b;
      qg_buf_init(&b);
      int k = 0;
      for (int i = 0; qg_quantizers[i]; i++)
        if (qg_quantizers[i]->grid) qg_buf_printf(&b, "%s%s", k++ ? ", " : "", qg_quantizers[i]->name);
      qg_buf_byte(&b, 0);
      s = qg_fail(QG_ERR_INPUT, "gptq: option grid=%s: not a grid quantizer (valid: %s)", grid,
                  b.failed ? "?" : (char *)b.p);
      qg_buf_free(&b);
    }
  }
  if (!s) s = c->grid.q->parse(o, &c->grid.cfg);
  if (!s) {
    c->blocksize = bs, c->act_order = (int)ao, c->static_groups = (int)sg;
    const qg_grid *g = c->grid.q->grid;
    int width = qg_grid_width(g, c->grid.cfg);
    if (c->act_order && width != 1)
      s = qg_fail(QG_ERR_INPUT, "gptq: act_order=1 needs a scalar grid; %s rounds %d columns at a time",
                  c->grid.q->name, width);
    else if (c->act_order && g->group(c->grid.cfg) && !c->static_groups)
      s = qg_fail(QG_ERR_INPUT, "gptq: act_order=1 with groups needs static_groups=1 (groups follow the original "
                  "column order)");
    else if (width < 1 || c->blocksize % width)
      s = qg_fail(QG_ERR_INPUT, "gptq: blocksize=%lld is not a multiple of the %s grid width %d", (long long)bs,
                  c->grid.q->name, width);
  }
  if (s) {
    gptq_free_cfg(c);
    return s;
  }
  *out = c;
  return QG_OK;
}

static void gptq_canon(const void *p, qg_buf *b) {
  const qg_gptq_opts *c = p;
  qg_buf_printf(b, "grid=%s percdamp=%s blocksize=%lld act_order=%d static_groups=%d ", c->grid.q->name,
                QG_NUMSTR(c->percdamp), (long long)c->blocksize, c->act_order, c->static_groups);
  c->grid.q->canon(c->grid.cfg, b);
}

static qg_status gptq_can_take(const void *p, const char *name, int ndim, const int64_t *shape) {
  const qg_gptq_opts *c = p;
  if (ndim != 2) return qg_cannot_take("gptq", name, ndim, shape, "needs a 2-D matrix");
  int width = qg_grid_width(c->grid.q->grid, c->grid.cfg);
  if (shape[1] % width)
    return qg_cannot_take("gptq", name, ndim, shape, "%lld columns are not a multiple of the %s grid width %d",
                          (long long)shape[1], c->grid.q->name, width);
  return c->grid.q->can_take(c->grid.cfg, name, ndim, shape);
}

static qg_status gptq_dequantize(const void *p, const qg_qtensor *q, float *w) {
  const qg_gptq_opts *c = p;
  return c->grid.q->dequantize(c->grid.cfg, q, w);
}

/* U (n x n, row-major, upper) with U^T U = (H + damp I)^-1. Returns the LAPACK info of
 * the failing factorisation (0 on success). */
static int inverse_cholesky_upper(const double *H, int64_t n, double damp, double *U) {
  memcpy(U, H, (size_t)(n * n) * sizeof *U);
  for (int64_t i = 0; i < n; i++) U[i * n + i] += damp;
  int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, U, (lapack_int)n);
  if (info) return info;
  info = LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, U, (lapack_int)n);
  if (info) return info;
  for (int64_t i = 0; i < n; i++) /* mirror the upper triangle of the inverse */
    for (int64_t j = 0; j < i; j++) U[i * n + j] = U[j * n + i];
  info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', (lapack_int)n, U, (lapack_int)n);
  if (info) return info;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < i; j++) U[i * n + j] = 0.0;
  return 0;
}

/* Descending diag(H), ties by index (deterministic). */
typedef struct {
  double d;
  int64_t i;
} diag_idx;
static int cmp_diag_desc(const void *a, const void *b) {
  const diag_idx *x = a, *y = b;
  if (x->d != y->d) return x->d > y->d ? -1 : 1;
  return (x->i > y->i) - (x->i < y->i);
}

typedef struct {
  int64_t m, n, bs, width, gsz; /* gsz: group size, n when per row */
  int dynamic_groups;
  double *W, *U, *Err, *Q, *E, *G, *diag;
  int64_t *perm;
} gptq_work;

static void work_free(gptq_work *k) {
  free(k->W), free(k->U), free(k->Err), free(k->Q), free(k->E), free(k->G), free(k->diag), free(k->perm);
}

/* The current values of group columns [c, c + gsz) while block [i1, i2) is open and its
 * columns before c have errors in Err: in-block columns are up to date in W; later
 * columns still owe the block's pending update, applied here to a copy (so lazy blocks
 * give exactly what a column-by-column update would). */
static void group_values(gptq_work *k, int64_t i1, int64_t i2, int64_t c) {
  int64_t m = k->m, n = k->n, g = k->gsz, bs = k->bs;
  for (int64_t r = 0; r < m; r++)
    for (int64_t j = c; j < c + g; j++) {
      double v = k->W[r * n + j];
      if (j >= i2)
        for (int64_t t = i1; t < c; t++) v -= k->Err[r * bs + (t - i1)] * k->U[t * n + j];
      k->G[r * g + (j - c)] = v;
    }
}

static qg_status gptq_quantize(const void *p, const qg_qinput *in, qg_qtensor *out) {
  const qg_gptq_opts *c = p;
  const qg_grid *grid = c->grid.q->grid;
  if (!in->hessian)
    return qg_fail(QG_ERR_INPUT, "gptq needs a calibration Hessian for '%s' and none was given (calibration data "
                   "is required; use rowwise for data-free rounding)", in->name ? in->name : "?");
  gptq_work k = {0};
  k.m = in->rows, k.n = in->cols, k.width = qg_grid_width(grid, c->grid.cfg);
  int64_t m = k.m, n = k.n, w = k.width;
  k.bs = c->blocksize < n ? c->blocksize : n;
  k.bs = (k.bs + w - 1) / w * w;
  int64_t ig = grid->group(c->grid.cfg);
  k.gsz = ig ? ig : n;
  k.dynamic_groups = ig && !c->static_groups;
  k.W = malloc((size_t)(m * n) * sizeof *k.W);
  k.U = malloc((size_t)(n * n + 2 * n) * sizeof *k.U); /* + room for the act_order sort keys */
  k.Err = calloc((size_t)(m * k.bs), sizeof *k.Err);
  k.Q = malloc((size_t)(m * w) * sizeof *k.Q);
  k.E = malloc((size_t)(m * w) * sizeof *k.E);
  k.G = malloc((size_t)(m * k.gsz) * sizeof *k.G);
  k.diag = malloc((size_t)n * sizeof *k.diag);
  k.perm = malloc((size_t)n * sizeof *k.perm);
  double *H = malloc((size_t)(n * n) * sizeof *H), *imp = malloc((size_t)n * sizeof *imp);
  void *st = NULL;
  qg_status s = QG_OK;
  if (!k.W || !k.U || !k.Err || !k.Q || !k.E || !k.G || !k.diag || !k.perm || !H || !imp) {
    s = qg_fail(QG_ERR_NOMEM, "out of memory (%lld x %lld)", (long long)m, (long long)n);
    goto done;
  }
  for (int64_t i = 0; i < m * n; i++) k.W[i] = in->w[i];
  memcpy(H, in->hessian, (size_t)(n * n) * sizeof *H);
  /* dead columns: inputs that never fire carry no information; fix H_ii = 1, W = 0 */
  int64_t dead = 0;
  for (int64_t j = 0; j < n; j++)
    if (H[j * n + j] == 0.0) {
      dead++;
      H[j * n + j] = 1.0;
      for (int64_t r = 0; r < m; r++) k.W[r * n + j] = 0.0;
    }
  for (int64_t j = 0; j < n; j++) imp[j] = k.diag[j] = H[j * n + j];
  if ((s = grid->begin(c->grid.cfg, in, &st))) goto done;
  /* per-row and static group scales from the (dead-fixed) original weights */
  if (!k.dynamic_groups)
    for (int64_t gi = 0; !s && gi * k.gsz < n; gi++) s = grid->set_scale(st, gi, k.W + gi * k.gsz, n, k.gsz, imp + gi * k.gsz);
  if (s) goto done;
  for (int64_t j = 0; j < n; j++) k.perm[j] = j;
  if (c->act_order) {
    diag_idx *di = (diag_idx *)k.U; /* U is free scratch until the factorisation */
    for (int64_t j = 0; j < n; j++) di[j].d = k.diag[j], di[j].i = j;
    qsort(di, (size_t)n, sizeof *di, cmp_diag_desc);
    for (int64_t j = 0; j < n; j++) k.perm[j] = di[j].i;
    double *t = k.U; /* scratch for the permuted copies */
    for (int64_t r = 0; r < m; r++) {
      for (int64_t j = 0; j < n; j++) t[j] = k.W[r * n + k.perm[j]];
      memcpy(k.W + r * n, t, (size_t)n * sizeof *t);
    }
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++) t[i * n + j] = H[k.perm[i] * n + k.perm[j]];
    memcpy(H, t, (size_t)(n * n) * sizeof *H);
    for (int64_t j = 0; j < n; j++) imp[j] = H[j * n + j];
  }
  /* damping, raised tenfold (up to three times) when H is not numerically positive */
  double mean = 0;
  for (int64_t j = 0; j < n; j++) mean += H[j * n + j];
  mean /= (double)n;
  double pd = c->percdamp;
  int info = 0, tries = 0;
  for (; tries < 4; tries++, pd = pd > 0 ? pd * 10 : 0.01)
    if (!(info = inverse_cholesky_upper(H, n, pd * mean, k.U))) break;
  if (info) {
    s = qg_fail(QG_ERR_INPUT, "gptq: Hessian of '%s' is not positive definite even with percdamp=%g (LAPACK info %d)",
                in->name ? in->name : "?", pd / 10, info);
    goto done;
  }
  if (tries || dead) {
    char note[160];
    int len = 0;
    if (tries) len += snprintf(note, sizeof note, "Cholesky failed; percdamp raised from %g to %g", c->percdamp, pd);
    if (dead) snprintf(note + len, sizeof note - (size_t)len, "%s%lld dead columns", len ? "; " : "", (long long)dead);
    out->note = qg_strdup(note);
  }
  /* the lazy-block sweep */
  for (int64_t i1 = 0; i1 < n; i1 += k.bs) {
    int64_t i2 = i1 + k.bs < n ? i1 + k.bs : n, nb = i2 - i1;
    for (int64_t i = i1; i < i2; i += w) {
      if (k.dynamic_groups && i % k.gsz == 0) {
        group_values(&k, i1, i2, i);
        if ((s = grid->set_scale(st, i / k.gsz, k.G, k.gsz, k.gsz, imp + i))) goto done;
      }
      grid->round(st, k.perm[i], k.W + i, n, k.Q, w);
      /* E = (W_b - Q_b) U_bb^-1, solved left to right (U_bb upper triangular) */
      for (int64_t r = 0; r < m; r++)
        for (int64_t a = 0; a < w; a++) {
          double d = k.W[r * n + i + a] - k.Q[r * w + a];
          for (int64_t b = 0; b < a; b++) d -= k.E[r * w + b] * k.U[(i + b) * n + i + a];
          k.E[r * w + a] = d / k.U[(i + a) * n + i + a];
        }
      for (int64_t r = 0; r < m; r++) {
        double *wr = k.W + r * n;
        for (int64_t a = 0; a < w; a++) {
          double e = k.E[r * w + a];
          const double *ur = k.U + (i + a) * n;
          k.Err[r * k.bs + (i - i1) + a] = e;
          wr[i + a] = k.Q[r * w + a];
          for (int64_t j = i + w; j < i2; j++) wr[j] -= e * ur[j];
        }
      }
    }
    if (i2 < n) /* W[:, i2:] -= Err (m x nb) @ U[i1:i2, i2:] */
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)(n - i2), (int)nb, -1.0, k.Err, (int)k.bs,
                  k.U + i1 * n + i2, (int)n, 1.0, k.W + i2, (int)n);
  }
  s = grid->finish(st, out);
done:
  if (st) grid->free(st);
  work_free(&k);
  free(H);
  free(imp);
  return s;
}

/* needs_hessian: GPTQ's error feedback is H^-1 itself, whatever the inner grid; the grid
 * is never run on its own here, so its quantizer's flag plays no part. */
static const char *const gptq_docs[] = {
    "grid", "the inner grid that rounds (rowwise, lloydmax, turbo, e8); its options are given alongside",
    "percdamp", "damping added to diag H, as a fraction of its mean",
    "blocksize", "columns per lazy-update block",
    "act_order", "1: visit columns by decreasing diag H",
    "static_groups", "1: group scales from the original weights before any update (default: act_order)",
    NULL};

const qg_quantizer qg_quantizer_gptq = {
    .name = "gptq",
    .summary = "GPTQ with lazy blocks, act_order, static groups; rounding by an inner grid (grid=rowwise default)",
    .parse = gptq_parse,
    .option_docs = gptq_docs,
    .free_cfg = gptq_free_cfg,
    .canon = gptq_canon,
    .can_take = gptq_can_take,
    .quantize = gptq_quantize,
    .dequantize = gptq_dequantize,
    .needs_hessian = 1,
};

const qg_gptq_opts *qg_gptq_opts_of(const qg_quantizer *q, const void *cfg) {
  return q == &qg_quantizer_gptq ? cfg : NULL;
}
