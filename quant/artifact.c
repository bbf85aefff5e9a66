/* Loading and converting .qgz artifacts with the quantizers (see quant/artifact.h). */
#include "quant/artifact.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/util.h"
#include "quant/pipeline.h"

qg_status qg_qgz_load_state_mem(const uint8_t *data, size_t len, const char *fname, qg_state *out) {
  qg_state_init(out);
  qg_qgz a;
  QG_TRY(qg_qgz_read_mem(data, len, fname, &a));
  qg_status s = QG_OK;
  for (int i = 0; i < a.n && !s; i++)
    if ((s = qg_qtensor_to_state(&a.t[i], out))) qg_fail_prefix(s, "%s", fname);
  qg_qgz_free(&a);
  if (s) qg_state_free(out);
  return s;
}

qg_status qg_qgz_load_state(const char *path, qg_state *out) {
  uint8_t *d;
  size_t n;
  qg_state_init(out);
  QG_TRY(qg_read_file(path, &d, &n, 0));
  qg_status s = qg_qgz_load_state_mem(d, n, path, out);
  free(d);
  return s;
}

/* ---- the contest's int8 container ----------------------------------------------------- */

static qg_status push_str(char ***arr, int *len, const char *v) {
  char **a = realloc(*arr, sizeof **arr * (size_t)(*len + 1));
  if (!a) return qg_fail(QG_ERR_NOMEM, "out of memory");
  *arr = a;
  a[*len] = v ? qg_strdup(v) : NULL;
  if (v && !a[*len]) return qg_fail(QG_ERR_NOMEM, "out of memory");
  (*len)++;
  return QG_OK;
}

static qg_status push_int(int **arr, int *len, int v) {
  int *a = realloc(*arr, sizeof **arr * (size_t)(*len + 1));
  if (!a) return qg_fail(QG_ERR_NOMEM, "out of memory");
  *arr = a;
  a[(*len)++] = v;
  return QG_OK;
}

/* codes + per-row fp16 scales: recover int8 q = w / scale and check it reproduces w. */
static qg_status to_int8_rows(const qg_qtensor *t, const float *w, qg_int8_artifact *a) {
  const qg_qsection *ss = qg_qtensor_find(t, "scales"), *one = qg_qtensor_find(t, "scale");
  int per_row = ss && ss->kind == QG_SEC_F16 && ss->count == t->rows;
  if (!per_row && !(one && one->kind == QG_SEC_F32 && one->count == 1))
    return qg_fail(QG_ERR_INPUT, "tensor '%s' (%s %s): the contest .int8.ptz needs one fp16 scale per row", t->name,
                   t->method, t->options);
  qg_tensor *q, *sc;
  int64_t one_dim = 0;
  QG_TRY(qg_state_add(&a->quantized, t->name, QG_I8, t->ndim, t->shape, &q));
  QG_TRY(qg_state_add(&a->scales, t->name, per_row ? QG_F16 : QG_F32, per_row ? 1 : 0, per_row ? &t->rows : &one_dim,
                      &sc));
  memcpy(sc->data, per_row ? ss->data : one->data, sc->nbytes);
  int8_t *c = q->data;
  const qg_qsection *cs = qg_qtensor_find(t, "codes");
  if (!strcmp(t->method, "contest-int8")) {
    /* the contest's own codes (offset 127); its dequantized values carry dtype rounding */
    for (int64_t i = 0; i < t->rows * t->cols; i++) c[i] = (int8_t)((int)((const uint32_t *)cs->data)[i] - 127);
  } else {
    for (int64_t r = 0; r < t->rows; r++) {
      float s = per_row ? qg_f16_to_f32(((const uint16_t *)ss->data)[r]) : *(const float *)one->data;
      for (int64_t j = 0; j < t->cols; j++) {
        float v = w[r * t->cols + j];
        float k = s != 0 ? rintf(v / s) : 0;
        if (k < -128 || k > 127 || k * s != v)
          return qg_fail(QG_ERR_INPUT, "tensor '%s' (%s %s): value at [%lld, %lld] is not an int8 multiple of its "
                         "row scale; the contest .int8.ptz cannot hold it", t->name, t->method, t->options,
                         (long long)r, (long long)j);
        c[r * t->cols + j] = (int8_t)k;
      }
    }
  }
  QG_TRY(push_str(&a->orig_dtype, &a->n_orig_dtype, qg_dtype_name(t->orig_dtype)));
  return push_int(&a->per_row, &a->n_per_row, per_row);
}

qg_status qg_qtensors_to_int8(const qg_qtensor *const *q, int n, qg_int8_artifact *a) {
  qg_int8_artifact_init(a);
  if (!(a->format = qg_strdup("int8_clean_per_row_v1"))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = QG_OK;
  for (int i = 0; i < n && !s; i++) {
    const qg_qtensor *t = q[i];
    const qg_qsection *cs = qg_qtensor_find(t, "codes"), *ds = qg_qtensor_find(t, "data");
    qg_state one;
    qg_state_init(&one);
    if ((s = qg_qtensor_to_state(t, &one))) break;
    const qg_tensor *d = &one.t[0];
    if (cs) {
      if (cs->kind != QG_SEC_CODES || cs->bits > 8 || t->nsec != 2)
        s = qg_fail(QG_ERR_INPUT, "tensor '%s' (%s %s): the contest .int8.ptz holds codes of at most 8 bits with "
                    "per-row scales only", t->name, t->method, t->options);
      else
        s = to_int8_rows(t, d->data, a);
    } else if (ds && t->nsec == 1) { /* passthrough: stored as kept, the source dtype recorded */
      qg_dtype store = ds->kind == QG_SEC_F16 ? QG_F16 : ds->kind == QG_SEC_BF16 ? QG_BF16
                       : ds->kind == QG_SEC_F32 ? QG_F32 : t->orig_dtype;
      qg_tensor *p;
      if (!(s = qg_state_add(&a->passthrough, t->name, store, t->ndim, t->shape, &p))) {
        memcpy(p->data, ds->data, p->nbytes); /* the section holds exactly this layout */
        s = push_str(&a->pass_orig, &a->n_pass_orig,
                     store != t->orig_dtype && qg_dtype_is_float(t->orig_dtype) ? qg_dtype_name(t->orig_dtype) : NULL);
      }
    } else {
      s = qg_fail(QG_ERR_INPUT, "tensor '%s' (%s): the contest .int8.ptz cannot hold this quantizer's sections",
                  t->name, t->method);
    }
    qg_state_free(&one);
  }
  if (s) qg_int8_artifact_free(a);
  return s;
}

/* ---- loaders for every format ----------------------------------------------------------- */

qg_status qg_checkpoint_load(const char *path, qg_state *out, qg_format *fmt) {
  qg_state_init(out);
  qg_format f;
  QG_TRY(qg_detect_file_format(path, &f));
  if (f != QG_FMT_QGZ) return qg_checkpoint_read(path, out, fmt);
  if (fmt) *fmt = f;
  return qg_qgz_load_state(path, out);
}

qg_status qg_gpt_load(qg_gpt *m, const char *path, const qg_gpt_options *opt, const qg_ops *ops) {
  qg_state s;
  memset(m, 0, sizeof *m);
  QG_TRY(qg_checkpoint_load(path, &s, NULL));
  qg_status st = qg_gpt_init(m, &s, opt, ops);
  qg_state_free(&s);
  return st ? qg_fail_prefix(st, "%s", path) : QG_OK;
}
