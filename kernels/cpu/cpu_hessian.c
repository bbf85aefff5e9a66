/* The CPU backend's calibration sums (kernels/ops.h hacc_*). */
#include "kernels/cpu/cpu_hessian.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"

qg_status qg_cpu_hessian_add(double *H, const float *X, int64_t rows, int64_t k) {
  enum { BLOCK = 1024 };
  if (rows <= 0) return QG_OK;
  if (k <= 0 || k > 65536) return qg_fail(QG_ERR_INPUT, "Hessian size %lld out of range", (long long)k);
  float *blk = malloc((size_t)(k * k) * sizeof *blk);
  if (!blk) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int64_t r0 = 0; r0 < rows; r0 += BLOCK) {
    int64_t nr = rows - r0 < BLOCK ? rows - r0 : BLOCK;
    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)k, (int)nr, 1.0f, X + r0 * k, (int)k, 0.0f, blk, (int)k);
    for (int64_t i = 0; i < k; i++)
      for (int64_t j = i; j < k; j++) H[i * k + j] += blk[i * k + j];
  }
  free(blk);
  return QG_OK;
}

struct qg_hacc {
  int64_t k, n;
  double *H; /* upper triangle of the running sum */
};

qg_status qg_cpu_hacc_create(const qg_ops *o, int64_t k, qg_hacc **out) {
  (void)o;
  *out = NULL;
  if (k <= 0 || k > 65536) return qg_fail(QG_ERR_INPUT, "Hessian size %lld out of range", (long long)k);
  qg_hacc *h = calloc(1, sizeof *h);
  if (h) h->H = calloc((size_t)(k * k), sizeof *h->H);
  if (!h || !h->H) {
    free(h);
    return qg_fail(QG_ERR_NOMEM, "out of memory for a %lld x %lld Hessian", (long long)k, (long long)k);
  }
  h->k = k;
  *out = h;
  return QG_OK;
}

qg_status qg_cpu_hacc_add(const qg_ops *o, qg_hacc *h, const float *x, int64_t rows) {
  (void)o;
  QG_TRY(qg_cpu_hessian_add(h->H, x, rows, h->k));
  h->n += rows > 0 ? rows : 0;
  return QG_OK;
}

qg_status qg_cpu_hacc_read(const qg_ops *o, const qg_hacc *h, double *H, int64_t *rows) {
  (void)o;
  int64_t k = h->k;
  for (int64_t i = 0; i < k; i++)
    for (int64_t j = 0; j < k; j++) H[i * k + j] = j >= i ? h->H[i * k + j] : h->H[j * k + i];
  *rows = h->n;
  return QG_OK;
}

void qg_cpu_hacc_free(const qg_ops *o, qg_hacc *h) {
  (void)o;
  if (h) free(h->H);
  free(h);
}

