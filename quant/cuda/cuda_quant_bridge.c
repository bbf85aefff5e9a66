/* quant/ plug-ins -> the quantizer kernels (see quant/cuda/cuda_quant_bridge.h) and the
 * host-side limits of those kernels; the CPU-only build's stubs of quant/cuda/cuda_quant.h
 * are in cuda_quant_none.c. */
#include "quant/cuda/cuda_quant_bridge.h"

#include "quant/backend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/progress.h"
#include "kernels/cuda/cuda_device.h"
#include "quant/cuda/cuda_quant.h"
#include "quant/e8_quantizer.h"
#include "quant/gptq.h"
#include "quant/lloydmax_quantizer.h"
#include "quant/rowwise.h"

/* ---- the CPU plug-ins' parsed options -> qg_cuq_grid (host code, every build) ---------- */

_Static_assert(QG_E8_MAX_STEPS <= QG_CUQ_MAX_MULT, "e8's search must fit the device grid's table");
_Static_assert(QG_E8_MAX_STAGES == 2, "the device grid holds two e8 stages");

static qg_status grid_from_config(const qg_qconfig *c, qg_cuq_grid *g) {
  const qg_rowwise_opts *rw = qg_rowwise_opts_of(c->q, c->cfg);
  const qg_lloydmax_opts *lm = qg_lloydmax_opts_of(c->q, c->cfg);
  const qg_e8_opts *e8 = qg_e8_opts_of(c->q, c->cfg);
  memset(g, 0, sizeof *g);
  g->width = 1;
  if (rw) {
    g->kind = QG_CUQ_ROWWISE;
    g->bits = rw->bits, g->group = rw->group, g->steps = rw->steps, g->objective = rw->objective;
    g->full = rw->full, g->clip = rw->clip;
    g->pct = rw->pct, g->k = rw->k, g->maxshrink = rw->maxshrink;
    qg_rowwise_code_range(rw, &g->qmin, &g->qmax);
  } else if (lm) {
    if (lm->steps > QG_CUQ_MAX_MULT) return qg_fail(QG_ERR_UNSUPPORTED, "cuda quant: lloydmax steps=%d", lm->steps);
    g->kind = QG_CUQ_LLOYDMAX;
    g->bits = lm->bits, g->group = lm->group, g->steps = lm->steps, g->objective = lm->objective;
    g->lm_search = lm->scale == QG_LM_SCALE_SEARCH;
    for (int i = 0; i < lm->steps; i++) g->mult[0][i] = qg_lloydmax_mult(lm, i);
  } else if (e8) {
    if (e8->cb == QG_E8_CB_BALL && e8->bits != 1 && e8->bits != 2)
      return qg_fail(QG_ERR_UNSUPPORTED, "cuda quant: e8 cb=ball bits=%g has no device codebook (e8p 2-4, ball 1-2)",
                     e8->bits);
    g->kind = QG_CUQ_E8;
    g->width = 8;
    g->bits = (int)e8->bits, g->group = e8->group, g->steps = e8->steps, g->objective = e8->objective;
    g->lo = e8->lo, g->hi = e8->hi;
    g->nstages = e8->nstages, g->steps2 = e8->steps2;
    for (int k = 0; k < e8->nstages; k++) g->cb[k] = e8->stage[k], g->unit[k] = e8->unit[k];
    for (int t = 0; t < 2; t++) {
      memcpy(g->mult[t], e8->search[t].mult, sizeof(double) * (size_t)e8->search[t].n);
      memcpy(g->up[t], e8->search[t].up, sizeof g->up[t]);
      memcpy(g->dn[t], e8->search[t].dn, sizeof g->dn[t]);
    }
  } else {
    return qg_fail(QG_ERR_UNSUPPORTED, "cuda quant: no device grid for method '%s'", c->q ? c->q->name : "?");
  }
  return QG_OK;
}

qg_status qg_cuq_plan(const qg_qconfig *c, qg_cuq_grid *g, qg_cuq_gptq_opts *go) {
  const qg_gptq_opts *gp = qg_gptq_opts_of(c->q, c->cfg);
  if (go) memset(go, 0, sizeof *go);
  if (!gp) return grid_from_config(c, g);
  if (go) {
    go->percdamp = gp->percdamp, go->blocksize = gp->blocksize;
    go->act_order = gp->act_order, go->static_groups = gp->static_groups;
  }
  return grid_from_config(&gp->grid, g);
}

qg_status qg_cuq_grid_from_canon(const char *method, const char *canon, qg_cuq_grid *g) {
  const qg_quantizer *q = qg_quantizer_find(method);
  if (!q || !q->grid) {
    memset(g, 0, sizeof *g);
    return qg_fail(QG_ERR_UNSUPPORTED, "cuda quant: no device grid for method '%s'", method);
  }
  qg_qconfig c;
  QG_TRY(qg_qconfig_parse(method, canon, &c));
  qg_status s = grid_from_config(&c, g);
  qg_qconfig_free(&c);
  return s;
}

qg_status qg_cuq_grid_fits(const qg_cuq_grid *g, int64_t rows, int64_t cols) {
  int64_t n = g->group ? g->group : cols;
  if (rows < 1 || cols < 1 || rows > 65535 || n < 1 || cols % n || cols % g->width || n % g->width)
    return qg_fail(QG_ERR_UNSUPPORTED, "cuda quant: a %lld x %lld tensor in groups of %lld is outside the kernels' "
                   "limits (rows <= 65535, groups dividing the columns)", (long long)rows, (long long)cols,
                   (long long)n);
  if (g->kind == QG_CUQ_ROWWISE && g->clip == QG_CUQ_CLIP_PCT && n > QG_CUQ_PCT_MAX)
    return qg_fail(QG_ERR_UNSUPPORTED, "cuda quant: clip=pct sorts groups of at most %d values on the device, this "
                   "one has %lld", QG_CUQ_PCT_MAX, (long long)n);
  if (g->kind == QG_CUQ_E8 && n > QG_CUQ_E8_MAX)
    return qg_fail(QG_ERR_UNSUPPORTED, "cuda quant: e8 searches groups of at most %d values on the device, this one "
                   "has %lld", QG_CUQ_E8_MAX, (long long)n);
  return QG_OK;
}

/* The device plan of a config: the grid, and for gptq its options. 0 when the device does
 * not take it (the message says why; callers go to the CPU). */
typedef struct {
  int gptq;
  qg_cuq_gptq_opts go;
  qg_cuq_grid g;
} plan;

static int make_plan(const qg_qconfig *c, int64_t rows, int64_t cols, plan *p) {
  memset(p, 0, sizeof *p);
  p->gptq = qg_gptq_opts_of(c->q, c->cfg) != NULL;
  qg_status s = qg_cuq_plan(c, &p->g, &p->go);
  if (!s) s = qg_cuq_grid_fits(&p->g, rows, cols);
  return s == QG_OK;
}

int qg_cuq_takes(const qg_qconfig *c, int64_t rows, int64_t cols) {
  plan p;
  return make_plan(c, rows, cols, &p);
}

int qg_cuq_available(void) { return qg_cuda_compiled() && qg_cuda_device_count() > 0; }

/* Sections exactly as the CPU grid's finish() writes them. */
static qg_status add_sections(const qg_cuq_grid *g, const qg_cuq_result *r, int64_t rows, int64_t cols,
                              qg_qtensor *out) {
  uint32_t *codes;
  uint16_t *h;
  if (g->kind == QG_CUQ_E8) {
    static const char *const names[2] = {"codes", "codes2"};
    int64_t nv = rows * (cols / 8);
    for (int k = 0; k < g->nstages; k++) {
      QG_TRY(qg_qtensor_add(out, names[k], QG_SEC_CODES, g->cb[k]->index_bits, nv, (void **)&codes));
      memcpy(codes, r->codes + k * nv, sizeof *codes * (size_t)nv);
    }
  } else {
    QG_TRY(qg_qtensor_add(out, "codes", QG_SEC_CODES, g->bits, rows * cols, (void **)&codes));
    memcpy(codes, r->codes, sizeof *codes * (size_t)(rows * cols));
  }
  QG_TRY(qg_qtensor_add(out, "scales", QG_SEC_F16, 0, r->n_scales, (void **)&h));
  for (int64_t i = 0; i < r->n_scales; i++) h[i] = qg_f32_to_f16(r->scales[i]);
  return QG_OK;
}

static qg_status run_plan(const plan *p, const qg_qinput *in, qg_qtensor *out) {
  qg_cuq_result r;
  qg_status s;
  if (p->gptq) {
    if (!in->hessian)
      return qg_fail(QG_ERR_INPUT, "gptq needs a calibration Hessian for '%s' and none was given (calibration data "
                     "is required; use rowwise for data-free rounding)", in->name ? in->name : "?");
    QG_TRY(qg_cuq_gptq(&p->g, &p->go, in->w, in->hessian, in->rows, in->cols, &r));
    if (r.damp_tries || r.dead) { /* gptq.c's note, word for word */
      char note[160];
      int len = 0;
      if (r.damp_tries)
        len += snprintf(note, sizeof note, "Cholesky failed; percdamp raised from %g to %g", p->go.percdamp,
                        r.damp_used);
      if (r.dead)
        snprintf(note + len, sizeof note - (size_t)len, "%s%lld dead columns", len ? "; " : "", (long long)r.dead);
      out->note = qg_strdup(note);
    }
  } else {
    double *imp = NULL; /* qg_grid_rtn(): importance, else diag H, else none */
    if (in->importance || in->hessian) {
      if (!(imp = malloc(sizeof *imp * (size_t)in->cols))) return qg_fail(QG_ERR_NOMEM, "out of memory");
      for (int64_t j = 0; j < in->cols; j++)
        imp[j] = in->importance ? in->importance[j] : in->hessian[j * in->cols + j];
    }
    s = qg_cuq_rtn(&p->g, in->w, in->rows, in->cols, imp, &r);
    free(imp);
    if (s) return s;
  }
  s = add_sections(&p->g, &r, in->rows, in->cols, out);
  qg_cuq_result_free(&r);
  return s;
}

qg_status qg_cuq_quantize(const qg_qconfig *c, const qg_qinput *in, qg_qtensor *out) {
  plan p;
  if (!make_plan(c, in->rows, in->cols, &p)) return qg_quantize(c, in, out);
  /* qg_quantize's bookkeeping, then the device instead of c->q->quantize */
  QG_TRY(qg_qtensor_begin(c, in, out));
  qg_status s = run_plan(&p, in, out);
  if (s) {
    qg_fail_prefix(s, "tensor '%s' (%s on cuda)", out->name, c->q->name);
    qg_qtensor_free(out);
  }
  return s;
}

static int cuda_supports(const qg_quant_backend *b, const qg_qconfig *c, int64_t rows, int64_t cols) {
  (void)b;
  return qg_cuq_takes(c, rows, cols);
}

static qg_status cuda_quantize(const qg_quant_backend *b, const qg_qconfig *c, const qg_qinput *in, qg_qtensor *out) {
  (void)b;
  return qg_cuq_quantize(c, in, out);
}

const qg_quant_backend *qg_quant_backend_cuda(void) {
  static const qg_quant_backend t = {
      .kind = QG_BACKEND_CUDA, .name = "cuda", .supports = cuda_supports, .quantize = cuda_quantize};
  return &t;
}


