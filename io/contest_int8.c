/* The contest's int8 export (train_gpt.py quantize_state_dict_int8), reproduced
 * bit-exactly: per-row clip at torch.quantile(|w|, 0.9999984) with torch's semantics,
 * fp16 row scales with a 1/127 floor, round-half-even codes. The constants, the control
 * names and the quantile are io/contest.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "io/contest.h"
#include "io/ptz.h"

static qg_status check_finite(const qg_tensor *t, const float *v, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    if (!isfinite(v[i]))
      return qg_fail(QG_ERR_INPUT, "tensor '%s': element %lld is %s; the int8 export needs finite weights", t->name,
                     (long long)i, isnan(v[i]) ? "NaN" : "infinite");
  return QG_OK;
}

/* Appends a (possibly NULL) name to a per-tensor array whose length is *len. */
static qg_status push_name(char ***arr, int *len, const char *val) {
  char **a = realloc(*arr, sizeof **arr * (size_t)(*len + 1));
  if (!a) return qg_fail(QG_ERR_NOMEM, "out of memory");
  *arr = a;
  a[*len] = NULL;
  if (val && !(a[*len] = qg_strdup(val))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  (*len)++;
  return QG_OK;
}

static qg_status push_flag(int **arr, int *len, int v) {
  int *a = realloc(*arr, sizeof **arr * (size_t)(*len + 1));
  if (!a) return qg_fail(QG_ERR_NOMEM, "out of memory");
  *arr = a;
  a[(*len)++] = v;
  return QG_OK;
}

/* Per-row int8 of a 2-D float tensor (quantize_float_tensor, the t32.ndim == 2 branch). */
static qg_status quantize_rows(const qg_tensor *t, const float *w, qg_int8_artifact *a) {
  int64_t rows = t->shape[0], cols = t->shape[1];
  qg_tensor *q, *sc;
  QG_TRY(qg_state_add(&a->quantized, t->name, QG_I8, 2, t->shape, &q));
  QG_TRY(qg_state_add(&a->scales, t->name, QG_F16, 1, &rows, &sc));
  float *scratch = malloc((size_t)(cols ? cols : 1) * sizeof *scratch);
  if (!scratch) return qg_fail(QG_ERR_NOMEM, "out of memory");
  int8_t *codes = q->data;
  uint16_t *scales = sc->data;
  const float floor_scale = (float)(1.0 / 127.0);
  for (int64_t r = 0; r < rows; r++) {
    const float *row = w + r * cols;
    float clip = 0.0f;
    if (cols > 0) {
      for (int64_t j = 0; j < cols; j++) scratch[j] = fabsf(row[j]);
      clip = qg_contest_clip(scratch, cols);
    }
    float scale = clip / 127.0f;
    if (scale < floor_scale) scale = floor_scale;
    for (int64_t j = 0; j < cols; j++) {
      float c = fmaxf(fminf(row[j], clip), -clip);
      float v = nearbyintf(c / scale); /* round half to even, as torch.round */
      if (v > 127.0f) v = 127.0f;
      if (v < -127.0f) v = -127.0f;
      codes[r * cols + j] = (int8_t)v;
    }
    scales[r] = qg_f32_to_f16(scale);
  }
  free(scratch);
  return QG_OK;
}

/* Per-tensor int8 for float tensors that are not 2-D (the vector/scalar branch). */
static qg_status quantize_tensor(const qg_tensor *t, const float *w, int64_t n, qg_int8_artifact *a) {
  qg_tensor *q, *sc;
  QG_TRY(qg_state_add(&a->quantized, t->name, QG_I8, t->ndim, t->shape, &q));
  QG_TRY(qg_state_add(&a->scales, t->name, QG_F32, 0, NULL, &sc));
  float clip = 0.0f;
  if (n > 0) {
    float *scratch = malloc((size_t)n * sizeof *scratch);
    if (!scratch) return qg_fail(QG_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; j < n; j++) scratch[j] = fabsf(w[j]);
    clip = qg_contest_clip(scratch, n);
    free(scratch);
  }
  /* scale = torch.tensor(clip/127.0 if clip > 0 else 1.0): the division is in Python
   * doubles, then stored as float32. */
  float scale = clip > 0.0f ? (float)((double)clip / 127.0) : 1.0f;
  int8_t *codes = q->data;
  for (int64_t j = 0; j < n; j++) {
    float c = fmaxf(fminf(w[j], clip), -clip);
    float v = nearbyintf(c / scale);
    if (v > 127.0f) v = 127.0f;
    if (v < -127.0f) v = -127.0f;
    codes[j] = (int8_t)v;
  }
  memcpy(sc->data, &scale, sizeof scale);
  return QG_OK;
}

/* Small float tensors (keep_float_tensor): control tensors as fp32, other fp32/bf16 as
 * fp16 with the original dtype recorded, anything else unchanged. */
static qg_status keep_float(const qg_tensor *t, const float *w, int64_t n, qg_int8_artifact *a) {
  qg_tensor *p;
  const char *orig = NULL;
  qg_dtype store = t->dtype;
  if (qg_contest_is_control(t->name))
    store = QG_F32;
  else if (t->dtype == QG_F32 || t->dtype == QG_BF16) {
    store = QG_F16;
    orig = qg_dtype_name(t->dtype);
  }
  QG_TRY(qg_state_add(&a->passthrough, t->name, store, t->ndim, t->shape, &p));
  QG_TRY(push_name(&a->pass_orig, &a->n_pass_orig, orig));
  if (store == t->dtype) {
    memcpy(p->data, t->data, t->nbytes);
  } else if (store == QG_F32) {
    memcpy(p->data, w, (size_t)n * sizeof *w);
  } else {
    uint16_t *h = p->data;
    for (int64_t j = 0; j < n; j++) h[j] = qg_f32_to_f16(w[j]);
  }
  return QG_OK;
}

qg_status qg_int8_quantize(const qg_state *in, qg_int8_artifact *a) {
  qg_int8_artifact_init(a);
  a->format = qg_strdup("int8_clean_per_row_v1");
  if (!a->format) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = QG_OK;
  float *w = NULL;
  for (int i = 0; i < in->n && !s; i++) {
    const qg_tensor *t = &in->t[i];
    int64_t n = qg_tensor_numel(t);
    if (!qg_dtype_is_float(t->dtype)) { /* exact passthrough for non-floats */
      qg_tensor *p;
      if ((s = qg_state_add(&a->passthrough, t->name, t->dtype, t->ndim, t->shape, &p))) break;
      memcpy(p->data, t->data, t->nbytes);
      s = push_name(&a->pass_orig, &a->n_pass_orig, NULL);
      continue;
    }
    free(w);
    w = malloc((size_t)(n ? n : 1) * sizeof *w);
    if (!w) {
      s = qg_fail(QG_ERR_NOMEM, "out of memory");
      break;
    }
    qg_tensor_to_f32(t, w);
    if ((s = check_finite(t, w, n))) break;
    if (n <= QG_CONTEST_KEEP_FLOAT_MAX_NUMEL) {
      s = keep_float(t, w, n, a);
      continue;
    }
    s = t->ndim == 2 ? quantize_rows(t, w, a) : quantize_tensor(t, w, n, a);
    if (!s) s = push_name(&a->orig_dtype, &a->n_orig_dtype, qg_dtype_name(t->dtype));
    if (!s) s = push_flag(&a->per_row, &a->n_per_row, t->ndim == 2);
  }
  free(w);
  if (s) qg_int8_artifact_free(a);
  return s;
}
