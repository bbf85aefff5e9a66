/* Quantized tensors as named sections (see io/qtensor.h). */
#include "io/qtensor.h"

#include "core/util.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void qg_qtensor_init(qg_qtensor *q) {
  memset(q, 0, sizeof *q);
  q->orig_dtype = QG_F32;
}

void qg_qtensor_free(qg_qtensor *q) {
  for (int i = 0; i < q->nsec; i++) free(q->sec[i].data);
  free(q->name);
  free(q->method);
  free(q->options);
  free(q->note);
  qg_qtensor_init(q);
}

static size_t kind_size(qg_sec_kind k) {
  switch (k) {
    case QG_SEC_CODES: return 4;
    case QG_SEC_F16:
    case QG_SEC_BF16: return 2;
    case QG_SEC_F32: return 4;
    default: return 1;
  }
}

qg_status qg_qtensor_add(qg_qtensor *q, const char *name, qg_sec_kind kind, int bits, int64_t count, void **data) {
  if (q->nsec >= QG_QT_MAX_SECTIONS) return qg_fail(QG_ERR_INTERNAL, "too many sections in a quantized tensor");
  if (strlen(name) >= QG_SEC_NAME_MAX) return qg_fail(QG_ERR_INTERNAL, "section name '%s' too long", name);
  if (kind == QG_SEC_CODES && (bits < 1 || bits > 32))
    return qg_fail(QG_ERR_INTERNAL, "section '%s': code width %d outside 1..32", name, bits);
  if (count < 0 || (uint64_t)count > ((uint64_t)1 << 40))
    return qg_fail(QG_ERR_NOMEM, "section '%s': %lld elements is beyond limits", name, (long long)count);
  if (qg_qtensor_find(q, name)) return qg_fail(QG_ERR_INTERNAL, "section '%s' added twice", name);
  void *p = calloc((size_t)(count ? count : 1), kind_size(kind));
  if (!p) return qg_fail(QG_ERR_NOMEM, "out of memory (section '%s', %lld elements)", name, (long long)count);
  qg_qsection *s = &q->sec[q->nsec++];
  memset(s, 0, sizeof *s);
  memcpy(s->name, name, strlen(name) + 1);
  s->kind = kind;
  s->bits = kind == QG_SEC_CODES ? bits : 0;
  s->count = count;
  s->data = p;
  if (data) *data = p;
  return QG_OK;
}

const qg_qsection *qg_qtensor_find(const qg_qtensor *q, const char *name) {
  for (int i = 0; i < q->nsec; i++)
    if (!strcmp(q->sec[i].name, name)) return &q->sec[i];
  return NULL;
}

static const char *kind_name(qg_sec_kind k) {
  static const char *n[] = {"codes", "f16", "bf16", "f32", "raw"};
  return (unsigned)k < QG_SEC_KIND_COUNT ? n[k] : "?";
}

qg_status qg_qtensor_need(const qg_qtensor *q, const char *name, qg_sec_kind kind, int64_t count,
                          const qg_qsection **out) {
  const qg_qsection *s = qg_qtensor_find(q, name);
  const char *tn = q->name ? q->name : "(tensor)", *m = q->method ? q->method : "?";
  if (!s) return qg_fail(QG_ERR_INPUT, "tensor '%s' (%s): section '%s' missing", tn, m, name);
  if (s->kind != kind)
    return qg_fail(QG_ERR_INPUT, "tensor '%s' (%s): section '%s' is %s, expected %s", tn, m, name,
                   kind_name(s->kind), kind_name(kind));
  if (count >= 0 && s->count != count)
    return qg_fail(QG_ERR_INPUT, "tensor '%s' (%s): section '%s' holds %lld values, expected %lld", tn, m, name,
                   (long long)s->count, (long long)count);
  *out = s;
  return QG_OK;
}

int64_t qg_qsection_packed_bytes(const qg_qsection *s) {
  if (s->kind == QG_SEC_CODES) return (s->count * s->bits + 7) / 8;
  return s->count * (int64_t)kind_size(s->kind);
}

int64_t qg_qtensor_packed_bytes(const qg_qtensor *q) {
  int64_t n = 0;
  for (int i = 0; i < q->nsec; i++) n += qg_qsection_packed_bytes(&q->sec[i]);
  return n;
}

int64_t qg_qtensor_bytewise_bytes(const qg_qtensor *q) {
  int64_t n = 0;
  for (int i = 0; i < q->nsec; i++) {
    const qg_qsection *s = &q->sec[i];
    n += s->kind == QG_SEC_CODES ? s->count * ((s->bits + 7) / 8) : qg_qsection_packed_bytes(s);
  }
  return n;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

double qg_qtensor_code_entropy_bits(const qg_qtensor *q) {
  double total = 0;
  for (int i = 0; i < q->nsec; i++) {
    const qg_qsection *s = &q->sec[i];
    if (s->kind != QG_SEC_CODES || strcmp(s->name, "codes") || s->count == 0) continue;
    const uint32_t *c = s->data;
    double n = (double)s->count, h = 0;
    if (s->bits <= 16) { /* histogram */
      size_t m = (size_t)1 << s->bits;
      int64_t *hist = calloc(m, sizeof *hist);
      if (!hist) return NAN;
      for (int64_t j = 0; j < s->count; j++) hist[c[j] & (m - 1)]++;
      for (size_t v = 0; v < m; v++)
        if (hist[v]) h -= (double)hist[v] * log2((double)hist[v] / n);
      free(hist);
    } else { /* wide codes (vector codebooks): count runs in a sorted copy */
      uint32_t *t = malloc((size_t)s->count * sizeof *t);
      if (!t) return NAN;
      memcpy(t, c, (size_t)s->count * sizeof *t);
      qsort(t, (size_t)s->count, sizeof *t, cmp_u32);
      for (int64_t j = 0; j < s->count;) {
        int64_t k = j;
        while (k < s->count && t[k] == t[j]) k++;
        h -= (double)(k - j) * log2((double)(k - j) / n);
        j = k;
      }
      free(t);
    }
    total += h;
  }
  return total;
}

void qg_matrix_view(int ndim, const int64_t *shape, int64_t *rows, int64_t *cols) {
  if (ndim <= 0) {
    *rows = 1, *cols = 1;
    return;
  }
  if (ndim == 1) {
    *rows = 1, *cols = shape[0];
    return;
  }
  /* checked: a shape that qg_shape_numel rejects gives cols -1 rather than undefined
   * behaviour, and no caller accepts a negative view */
  int64_t c = 1;
  for (int i = 1; i < ndim; i++)
    if (qg_mul_overflow_i64(c, shape[i], &c)) {
      c = -1;
      break;
    }
  *rows = shape[0], *cols = c;
}
