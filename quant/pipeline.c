/* The quantize pipeline (see quant/pipeline.h). */
#include "quant/pipeline.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void qg_qmodel_free(qg_qmodel *m) {
  for (int i = 0; i < m->n; i++) qg_qtensor_free(&m->t[i].q);
  free(m->t);
  memset(m, 0, sizeof *m);
}

uint64_t qg_tensor_seed(uint64_t spec_seed, const char *name) {
  uint64_t h = 1469598103934665603ull ^ (spec_seed * 0x9E3779B97F4A7C15ull);
  for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 1099511628211ull;
  return h;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* tr(D H D^T) for D = a - b (rows x cols), H cols x cols. */
static double hweighted(const float *a, const float *b, int64_t rows, int64_t cols, const double *H, double *d) {
  double t = 0;
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t j = 0; j < cols; j++) d[j] = (double)a[r * cols + j] - (b ? (double)b[r * cols + j] : 0.0);
    for (int64_t i = 0; i < cols; i++) {
      if (d[i] == 0) continue;
      const double *hi = H + i * cols;
      double s = 0;
      for (int64_t j = 0; j < cols; j++) s += hi[j] * d[j];
      t += d[i] * s;
    }
  }
  return t;
}

static qg_status quantize_one(const qg_tensor *t, const qg_spec *spec, const qg_spec_assign *a,
                              const qg_quantize_opts *opts, qg_qresult *res) {
  int64_t n = qg_tensor_numel(t), rows, cols;
  qg_matrix_view(t->ndim, t->shape, &rows, &cols);
  float *w = malloc((size_t)(n ? n : 1) * sizeof *w), *dq = malloc((size_t)(n ? n : 1) * sizeof *dq);
  qg_status s = QG_OK;
  if (!w || !dq) {
    free(w), free(dq);
    return qg_fail(QG_ERR_NOMEM, "out of memory (tensor '%s')", t->name);
  }
  qg_tensor_to_f32(t, w);
  if (qg_dtype_is_float(t->dtype))
    for (int64_t i = 0; i < n; i++)
      if (!isfinite(w[i])) {
        s = qg_fail(QG_ERR_INPUT, "tensor '%s': element %lld is not finite", t->name, (long long)i);
        break;
      }
  const qg_hessian *h = opts && opts->hessians ? qg_hessian_map_find(opts->hessians, t->name) : NULL;
  if (!s && h && (h->k != cols || !h->finalized))
    s = qg_fail(QG_ERR_INPUT, "tensor '%s': Hessian is %lld wide%s, the tensor has %lld columns", t->name,
                (long long)h->k, h->finalized ? "" : " and not finalized", (long long)cols);
  qg_qinput in = {.name = t->name, .w = w, .rows = rows, .cols = cols, .ndim = t->ndim, .dtype = t->dtype,
                  .src = t, .hessian = h ? h->H : NULL, .seed = qg_tensor_seed(spec ? spec->seed : 0, t->name)};
  memcpy(in.shape, t->shape, sizeof in.shape);
  if (in.ndim == 0) { /* scalars: the matrix view [1, 1] with the true shape kept by the artifact */
    in.ndim = 2;
    in.shape[0] = in.shape[1] = 1;
  }
  double t0 = now_s();
  if (!s)
    s = opts && opts->backend ? opts->backend->quantize(opts->backend, a->cfg, &in, &res->q)
                              : qg_quantize(a->cfg, &in, &res->q);
  res->seconds = now_s() - t0;
  if (!s && t->ndim == 0) res->q.ndim = 0;
  if (!s) s = qg_dequantize(a->cfg, &res->q, dq);
  if (!s) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) e += ((double)w[i] - dq[i]) * ((double)w[i] - dq[i]);
    res->numel = n;
    res->mse = n ? e / (double)n : 0;
    res->packed_bytes = qg_qtensor_packed_bytes(&res->q);
    res->bits_per_weight = n ? 8.0 * (double)res->packed_bytes / (double)n : 0;
    res->entropy_bits = qg_qtensor_code_entropy_bits(&res->q);
    res->herr = NAN;
    if (h) {
      double *d = malloc((size_t)cols * sizeof *d);
      if (!d) {
        s = qg_fail(QG_ERR_NOMEM, "out of memory");
      } else {
        double num = hweighted(w, dq, rows, cols, h->H, d), den = hweighted(w, NULL, rows, cols, h->H, d);
        res->herr = den > 0 ? num / den : NAN;
        free(d);
      }
    }
  }
  free(w), free(dq);
  return s;
}

qg_status qg_quantize_model(const qg_state *st, const qg_spec *spec, const qg_quantize_opts *opts, qg_qmodel *out) {
  memset(out, 0, sizeof *out);
  qg_spec_plan plan;
  QG_TRY(qg_spec_plan_make(spec, st, &plan));
  qg_status s = QG_OK;
  out->t = calloc((size_t)(st->n ? st->n : 1), sizeof *out->t);
  if (!out->t) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int i = 0; i < st->n && !s; i++) {
    const qg_tensor *t = &st->t[i];
    qg_qresult *r = &out->t[i];
    qg_qtensor_init(&r->q);
    out->n = i + 1;
    qg_spec_assign_why(spec, st, &plan.a[i], r->why, sizeof r->why);
    if (opts && opts->progress) opts->progress(opts->progress_ctx, i, st->n, t->name);
    s = quantize_one(t, spec, &plan.a[i], opts, r);
    if (s && plan.a[i].kind == QG_ASSIGN_RULE && plan.a[i].cfg->q->needs_hessian &&
        !(opts && opts->hessians && qg_hessian_map_find(opts->hessians, t->name)))
      qg_fail(s, "tensor '%s': %s asks for gptq, which needs calibration Hessians, and none were collected (give "
              "calibration data, or use rowwise)", t->name, r->why);
  }
  qg_spec_plan_free(&plan);
  if (s) qg_qmodel_free(out);
  return s;
}

qg_status qg_qtensor_to_state(const qg_qtensor *q, qg_state *out) {
  qg_qconfig c;
  QG_TRY(qg_qconfig_parse(q->method, q->options, &c));
  qg_status s;
  if (c.q->dequantize_native) {
    qg_tensor t;
    memset(&t, 0, sizeof t);
    s = c.q->dequantize_native(c.cfg, q, &t);
    if (!s) {
      s = qg_state_add_owned(out, q->name, t.dtype, t.ndim, t.shape, t.data);
      t.data = NULL;
    }
    qg_tensor_release(&t);
  } else {
    int64_t n = q->rows * q->cols;
    float *w = malloc((size_t)(n ? n : 1) * sizeof *w);
    if (!w) {
      qg_qconfig_free(&c);
      return qg_fail(QG_ERR_NOMEM, "out of memory (tensor '%s')", q->name);
    }
    s = qg_dequantize(&c, q, w);
    if (!s) s = qg_state_add_owned(out, q->name, QG_F32, q->ndim, q->shape, w);
    else free(w);
  }
  qg_qconfig_free(&c);
  return s;
}

qg_status qg_qtensors_dequantize(const qg_qtensor *const *q, int n, qg_state *out) {
  qg_state_init(out);
  for (int i = 0; i < n; i++) {
    qg_status s = qg_qtensor_to_state(q[i], out);
    if (s) {
      qg_state_free(out);
      return s;
    }
  }
  return QG_OK;
}
