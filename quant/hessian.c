/* GPTQ Hessian accumulation in fp64 (see quant/hessian.h). */
#include "quant/hessian.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "kernels/cpu/cpu_hessian.h"

qg_status qg_hessian_init(qg_hessian *h, int64_t k) {
  memset(h, 0, sizeof *h);
  if (k <= 0 || k > 65536) return qg_fail(QG_ERR_INPUT, "Hessian size %lld out of range", (long long)k);
  h->H = calloc((size_t)(k * k), sizeof *h->H);
  if (!h->H) return qg_fail(QG_ERR_NOMEM, "out of memory (Hessian %lld x %lld)", (long long)k, (long long)k);
  h->k = k;
  return QG_OK;
}

void qg_hessian_free(qg_hessian *h) {
  free(h->H);
  memset(h, 0, sizeof *h);
}

qg_status qg_hessian_accumulate_f64(qg_hessian *h, const double *X, int64_t n_rows, int64_t k) {
  if (h->finalized) return qg_fail(QG_ERR_INTERNAL, "Hessian accumulated after finalize");
  if (k != h->k) return qg_fail(QG_ERR_INPUT, "Hessian is %lld wide, activations have %lld columns", (long long)h->k,
                                (long long)k);
  if (n_rows <= 0) return QG_OK;
  /* upper triangle of sum x x^T += X^T X */
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)k, (int)n_rows, 1.0, X, (int)k, 1.0, h->H, (int)k);
  h->n += n_rows;
  return QG_OK;
}

qg_status qg_hessian_accumulate(qg_hessian *h, const float *X, int64_t n_rows, int64_t k) {
  enum { CHUNK = 256 }; /* rows converted to fp64 at a time */
  if (k != h->k)
    return qg_fail(QG_ERR_INPUT, "Hessian is %lld wide, activations have %lld columns", (long long)h->k, (long long)k);
  double *buf = malloc((size_t)(CHUNK * k) * sizeof *buf);
  if (!buf) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = QG_OK;
  for (int64_t r0 = 0; r0 < n_rows && !s; r0 += CHUNK) {
    int64_t nr = n_rows - r0 < CHUNK ? n_rows - r0 : CHUNK;
    for (int64_t i = 0; i < nr * k; i++) buf[i] = X[r0 * k + i];
    s = qg_hessian_accumulate_f64(h, buf, nr, k);
  }
  free(buf);
  return s;
}

qg_status qg_hessian_accumulate_fast(qg_hessian *h, const float *X, int64_t n_rows, int64_t k) {
  if (h->finalized) return qg_fail(QG_ERR_INTERNAL, "Hessian accumulated after finalize");
  if (k != h->k)
    return qg_fail(QG_ERR_INPUT, "Hessian is %lld wide, activations have %lld columns", (long long)h->k, (long long)k);
  if (n_rows <= 0) return QG_OK;
  QG_TRY(qg_cpu_hessian_add(h->H, X, n_rows, k));
  h->n += n_rows;
  return QG_OK;
}

qg_status qg_hessian_finalize(qg_hessian *h) {
  if (h->finalized) return QG_OK;
  if (h->n <= 0) return qg_fail(QG_ERR_INPUT, "Hessian has no calibration rows");
  double f = 2.0 / (double)h->n;
  int64_t k = h->k;
  for (int64_t i = 0; i < k; i++)
    for (int64_t j = i; j < k; j++) h->H[j * k + i] = h->H[i * k + j] = h->H[i * k + j] * f;
  h->finalized = 1;
  return QG_OK;
}

void qg_hessian_map_init(qg_hessian_map *m) { memset(m, 0, sizeof *m); }

void qg_hessian_map_free(qg_hessian_map *m) {
  for (int i = 0; i < m->n; i++) free(m->names[i]), qg_hessian_free(&m->h[i]);
  free(m->names);
  free(m->h);
  memset(m, 0, sizeof *m);
}

const qg_hessian *qg_hessian_map_find(const qg_hessian_map *m, const char *name) {
  for (int i = 0; m && i < m->n; i++)
    if (!strcmp(m->names[i], name)) return &m->h[i];
  return NULL;
}

qg_status qg_hessian_map_get(qg_hessian_map *m, const char *name, int64_t k, qg_hessian **out) {
  for (int i = 0; i < m->n; i++)
    if (!strcmp(m->names[i], name)) {
      if (m->h[i].k != k)
        return qg_fail(QG_ERR_INPUT, "Hessian for '%s' is %lld wide, asked for %lld", name, (long long)m->h[i].k,
                       (long long)k);
      *out = &m->h[i];
      return QG_OK;
    }
  if (m->n == m->cap) {
    int cap = m->cap ? 2 * m->cap : 16;
    char **nn = realloc(m->names, sizeof *nn * (size_t)cap);
    if (!nn) return qg_fail(QG_ERR_NOMEM, "out of memory");
    m->names = nn;
    qg_hessian *nh = realloc(m->h, sizeof *nh * (size_t)cap);
    if (!nh) return qg_fail(QG_ERR_NOMEM, "out of memory");
    m->h = nh;
    m->cap = cap;
  }
  if (!(m->names[m->n] = qg_strdup(name))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = qg_hessian_init(&m->h[m->n], k);
  if (s) {
    free(m->names[m->n]);
    return s;
  }
  *out = &m->h[m->n++];
  return QG_OK;
}

qg_status qg_hessian_map_finalize(qg_hessian_map *m) {
  for (int i = 0; i < m->n; i++) {
    qg_status s = qg_hessian_finalize(&m->h[i]);
    if (s) return qg_fail_prefix(s, "'%s'", m->names[i]);
  }
  return QG_OK;
}
