#include "core/tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"

int64_t qg_shape_numel(int ndim, const int64_t *shape) {
  /* The product of the nonzero dims must fit too, even when a 0 dim makes the count 0:
   * callers take sub-products (rows x cols views, strides) of the same shape. */
  int64_t n = 1;
  int zero = 0;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return -1;
    if (shape[i] == 0) zero = 1;
    else if (qg_mul_overflow_i64(n, shape[i], &n)) return -1;
  }
  return zero ? 0 : n;
}

int64_t qg_tensor_numel(const qg_tensor *t) { return qg_shape_numel(t->ndim, t->shape); }

const char *qg_shape_str(int ndim, const int64_t *shape, char *buf, size_t cap) {
  size_t off = 0;
  off += (size_t)snprintf(buf + off, cap - off, "[");
  for (int i = 0; i < ndim && off < cap; i++)
    off += (size_t)snprintf(buf + off, cap - off, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (off < cap) snprintf(buf + off, cap - off, "]");
  return buf;
}

qg_status qg_tensor_alloc(qg_tensor *t, const char *name, qg_dtype dtype, int ndim,
                          const int64_t *shape) {
  memset(t, 0, sizeof *t);
  if (ndim < 0 || ndim > QG_MAX_DIMS)
    return qg_fail(QG_ERR_UNSUPPORTED, "tensor %s: %d dims (at most %d supported)",
                   name ? name : "?", ndim, QG_MAX_DIMS);
  int64_t n = qg_shape_numel(ndim, shape);
  size_t es = qg_dtype_size(dtype);
  if (n < 0 || es == 0 || (uint64_t)n > SIZE_MAX / es / 2)
    return qg_fail(QG_ERR_INPUT, "tensor %s: invalid shape or dtype", name ? name : "?");
  t->dtype = dtype;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  t->nbytes = (size_t)n * es;
  t->data = calloc(t->nbytes ? t->nbytes : 1, 1);
  if (!t->data) return qg_fail(QG_ERR_NOMEM, "tensor %s: cannot allocate %zu bytes", name ? name : "?", t->nbytes);
  t->owns = true;
  if (name && !(t->name = qg_strdup(name))) {
    free(t->data);
    t->data = NULL;
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  return QG_OK;
}

void qg_tensor_release(qg_tensor *t) {
  if (t->owns) free(t->data);
  free(t->name);
  memset(t, 0, sizeof *t);
}

void qg_tensor_to_f32(const qg_tensor *t, float *out) {
  int64_t n = qg_tensor_numel(t);
  if (t->dtype == QG_F32) {
    memcpy(out, t->data, (size_t)n * 4);
    return;
  }
  for (int64_t i = 0; i < n; i++) out[i] = (float)qg_read_elem(t->data, t->dtype, (size_t)i);
}

void qg_state_init(qg_state *s) { memset(s, 0, sizeof *s); }

void qg_state_free(qg_state *s) {
  for (int i = 0; i < s->n; i++) qg_tensor_release(&s->t[i]);
  for (int i = 0; i < s->n_meta; i++) {
    free(s->meta_keys[i]);
    free(s->meta_vals[i]);
  }
  free(s->t);
  free(s->meta_keys);
  free(s->meta_vals);
  memset(s, 0, sizeof *s);
}

static qg_status state_reserve(qg_state *s, const char *name) {
  if (qg_state_find(s, name)) return qg_fail(QG_ERR_INPUT, "duplicate tensor name '%s'", name);
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 16;
    qg_tensor *t = realloc(s->t, sizeof *t * (size_t)cap);
    if (!t) return qg_fail(QG_ERR_NOMEM, "out of memory");
    s->t = t;
    s->cap = cap;
  }
  return QG_OK;
}

qg_status qg_state_add(qg_state *s, const char *name, qg_dtype dtype, int ndim,
                       const int64_t *shape, qg_tensor **out) {
  QG_TRY(state_reserve(s, name));
  QG_TRY(qg_tensor_alloc(&s->t[s->n], name, dtype, ndim, shape));
  if (out) *out = &s->t[s->n];
  s->n++;
  return QG_OK;
}

qg_status qg_state_add_owned(qg_state *s, const char *name, qg_dtype dtype, int ndim,
                             const int64_t *shape, void *data) {
  qg_status st = state_reserve(s, name);
  if (st) {
    free(data);
    return st;
  }
  int64_t n = qg_shape_numel(ndim, shape);
  if (ndim < 0 || ndim > QG_MAX_DIMS || n < 0) {
    free(data);
    return qg_fail(QG_ERR_INPUT, "tensor %s: invalid shape", name);
  }
  qg_tensor *t = &s->t[s->n];
  memset(t, 0, sizeof *t);
  t->name = qg_strdup(name);
  if (!t->name) {
    free(data);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  t->dtype = dtype;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  t->nbytes = (size_t)n * qg_dtype_size(dtype);
  t->data = data;
  t->owns = true;
  s->n++;
  return QG_OK;
}

qg_tensor *qg_state_find(const qg_state *s, const char *name) {
  for (int i = 0; i < s->n; i++)
    if (s->t[i].name && strcmp(s->t[i].name, name) == 0) return &s->t[i];
  return NULL;
}
const qg_tensor *qg_state_find_c(const qg_state *s, const char *name) { return qg_state_find(s, name); }

qg_status qg_state_set_meta(qg_state *s, const char *key, const char *val) {
  for (int i = 0; i < s->n_meta; i++)
    if (strcmp(s->meta_keys[i], key) == 0) {
      char *v = qg_strdup(val);
      if (!v) return qg_fail(QG_ERR_NOMEM, "out of memory");
      free(s->meta_vals[i]);
      s->meta_vals[i] = v;
      return QG_OK;
    }
  char **k = realloc(s->meta_keys, sizeof *k * (size_t)(s->n_meta + 1));
  if (!k) return qg_fail(QG_ERR_NOMEM, "out of memory");
  s->meta_keys = k;
  char **v = realloc(s->meta_vals, sizeof *v * (size_t)(s->n_meta + 1));
  if (!v) return qg_fail(QG_ERR_NOMEM, "out of memory");
  s->meta_vals = v;
  s->meta_keys[s->n_meta] = qg_strdup(key);
  s->meta_vals[s->n_meta] = qg_strdup(val);
  if (!s->meta_keys[s->n_meta] || !s->meta_vals[s->n_meta]) {
    free(s->meta_keys[s->n_meta]);
    free(s->meta_vals[s->n_meta]);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  s->n_meta++;
  return QG_OK;
}

const char *qg_state_get_meta(const qg_state *s, const char *key) {
  for (int i = 0; i < s->n_meta; i++)
    if (strcmp(s->meta_keys[i], key) == 0) return s->meta_vals[i];
  return NULL;
}

int64_t qg_state_numel(const qg_state *s) {
  int64_t n = 0;
  for (int i = 0; i < s->n; i++) n += qg_tensor_numel(&s->t[i]);
  return n;
}
int64_t qg_state_nbytes(const qg_state *s) {
  int64_t n = 0;
  for (int i = 0; i < s->n; i++) n += (int64_t)s->t[i].nbytes;
  return n;
}
