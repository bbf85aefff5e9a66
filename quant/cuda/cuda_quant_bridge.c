/* quant/ plug-ins -> the quantizer kernels (see quant/cuda/cuda_quant_bridge.h) and the
 * host-side limits of those kernels; the CPU-only build's stubs of quant/cuda/cuda_quant.h
 * are in cuda_quant_none.c. */
#include "quant/cuda/cuda_quant_bridge.h"

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

qg_status qg_cuq_quantize_hook(void *ctx, const qg_qconfig *c, const qg_qinput *in, qg_qtensor *out) {
  (void)ctx;
  return qg_cuq_quantize(c, in, out);
}

/* ---- calibration with device Hessians ------------------------------------------------ */

typedef struct {
  char *name;
  int64_t k;
  qg_cuq_hacc *h; /* NULL: reserved for a weight that shares its input (c_k, c_v) */
} dev_entry;

typedef struct {
  dev_entry *v;
  int n, cap;
  int timing;
  double t_hessian;
} dev_tap;

static qg_status tap_entry(dev_tap *t, const char *name, int64_t k, int create, dev_entry **out) {
  for (int i = 0; i < t->n; i++)
    if (!strcmp(t->v[i].name, name)) {
      if (t->v[i].k != k)
        return qg_fail(QG_ERR_INPUT, "Hessian for '%s' is %lld wide, asked for %lld", name, (long long)t->v[i].k,
                       (long long)k);
      *out = &t->v[i];
      return QG_OK;
    }
  if (t->n == t->cap) {
    int cap = t->cap ? 2 * t->cap : 64;
    dev_entry *v = realloc(t->v, sizeof *v * (size_t)cap);
    if (!v) return qg_fail(QG_ERR_NOMEM, "out of memory");
    t->v = v, t->cap = cap;
  }
  dev_entry *e = &t->v[t->n];
  memset(e, 0, sizeof *e);
  e->k = k;
  if (!(e->name = qg_strdup(name))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  if (create) {
    qg_status s = qg_cuq_hacc_create(k, &e->h);
    if (s) {
      free(e->name);
      return s;
    }
  }
  t->n++;
  *out = e;
  return QG_OK;
}

static qg_status device_tap(void *c, const char *const *names, int n_names, const float *x, int64_t rows, int K) {
  dev_tap *t = c;
  dev_entry *e;
  QG_TRY(tap_entry(t, names[0], K, 1, &e));
  if (!e->h) QG_TRY(qg_cuq_hacc_create(K, &e->h)); /* reserved earlier, now read directly */
  double t0 = 0;
  if (t->timing) { /* the benchmark's split: drain the forward's work first */
    QG_TRY(qg_cuq_sync());
    t0 = qg_now();
  }
  QG_TRY(qg_cuq_hacc_add(e->h, x, rows));
  if (t->timing) {
    QG_TRY(qg_cuq_sync());
    t->t_hessian += qg_now() - t0;
  }
  for (int i = 1; i < n_names; i++) QG_TRY(tap_entry(t, names[i], K, 0, &e));
  return QG_OK;
}

qg_status qg_cuq_calib_hessians(qg_gpt *m, const int32_t *seqs, int n, int len, int batch, qg_hessian_map *map,
                                double *seconds) {
  if (strncmp(m->ops->name, "cuda", 4) != 0)
    return qg_fail(QG_ERR_INPUT, "device Hessians need the model on a CUDA backend (it runs on '%s')", m->ops->name);
  if (batch <= 0) batch = len >= 8192 ? 1 : 8192 / len;
  dev_tap t = {0};
  t.timing = seconds != NULL;
  m->tap = device_tap;
  m->tap_ctx = &t;
  qg_status s = QG_OK;
  double t0 = qg_now();
  qg_progress pr;
  qg_progress_start(&pr, "calibration (cuda)", "tokens", (int64_t)n * len);
  for (int i = 0; i < n && !s; i += batch) {
    int nb = n - i < batch ? n - i : batch;
    s = qg_gpt_forward(m, seqs + (int64_t)i * len, nb, len);
    qg_progress_update(&pr, (int64_t)(i + nb) * len);
  }
  if (!s) s = qg_cuq_sync();
  qg_progress_finish(&pr, (int64_t)n * len);
  m->tap = NULL;
  m->tap_ctx = NULL;
  if (seconds) seconds[0] = qg_now() - t0 - t.t_hessian, seconds[1] = t.t_hessian;
  /* the sums into the host map (rows counted), then calibrate.c's sharing rule: weights
   * that read the same input as c_q (c_k, c_v) get c_q's sum */
  for (int i = 0; i < t.n && !s; i++) {
    qg_hessian *h;
    if ((s = qg_hessian_map_get(map, t.v[i].name, t.v[i].k, &h))) break;
    if (t.v[i].h) {
      double t1 = qg_now();
      s = qg_cuq_hacc_download(t.v[i].h, h->H);
      h->n = qg_cuq_hacc_rows(t.v[i].h);
      if (seconds) seconds[1] += qg_now() - t1;
    }
  }
  for (int i = 0; i < t.n; i++) free(t.v[i].name), qg_cuq_hacc_free(t.v[i].h);
  free(t.v);
  if (s) return s;
  for (int i = 0; i < map->n; i++) {
    if (map->h[i].n > 0) continue;
    const char *nm = map->names[i];
    const char *dot = strstr(nm, ".attn.c_");
    if (!dot) continue;
    char src[128];
    snprintf(src, sizeof src, "%.*s.attn.c_q.weight", (int)(dot - nm), nm);
    const qg_hessian *q = qg_hessian_map_find(map, src);
    if (!q || q->n == 0) continue;
    memcpy(map->h[i].H, q->H, sizeof(double) * (size_t)(q->k * q->k));
    map->h[i].n = q->n;
  }
  return qg_hessian_map_finalize(map);
}
