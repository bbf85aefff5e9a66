/* The CPU backend's calibration sums (kernels/ops.h hacc_*). */
#include "kernels/cpu/cpu_hessian.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "kernels/ops.h"

/* Blocks of BLOCK rows, a wave of up to nbuf of them at a time: each block's fp32 sum by
 * one single-threaded ssyrk on the core pool (OpenBLAS's own workers would spin in
 * sched_yield after the call and steal cores from the forward's pooled ops), then the
 * wave's sums added into fp64 by the pool, rows of H split over threads, each element
 * taking the blocks in order. Every element sees the same fp32 block sums added in the
 * same order as one block after another, so H is the same bits for any thread count. */
enum { BLOCK = 1024 };

typedef struct {
  double *H;
  const float *X;
  float *bufs;
  int64_t rows, k, r0, nb, chunk;
} hs_ctx;

static void syrk_task(void *p, int64_t b, int thread) {
  (void)thread;
  hs_ctx *c = p;
  int64_t r = c->r0 + b * BLOCK, nr = c->rows - r < BLOCK ? c->rows - r : BLOCK;
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)c->k, (int)nr, 1.0f, c->X + r * c->k, (int)c->k, 0.0f,
              c->bufs + b * c->k * c->k, (int)c->k);
}

static void add_task(void *p, int64_t t, int thread) {
  (void)thread;
  hs_ctx *c = p;
  int64_t k = c->k, lo = t * c->chunk, hi = lo + c->chunk < k ? lo + c->chunk : k;
  for (int64_t i = lo; i < hi; i++) {
    double *h = c->H + i * k;
    for (int64_t b = 0; b < c->nb; b++) {
      const float *s = c->bufs + b * k * k + i * k;
      for (int64_t j = i; j < k; j++) h[j] += s[j];
    }
  }
}

int qg_cpu_hessian_nbuf(void) { return qg_threads(); }

qg_status qg_cpu_hessian_add_buf(double *H, const float *X, int64_t rows, int64_t k, float *bufs, int nbuf) {
  if (rows <= 0) return QG_OK;
  if (k <= 0 || k > 65536) return qg_fail(QG_ERR_INPUT, "Hessian size %lld out of range", (long long)k);
  if (nbuf < 1) return qg_fail(QG_ERR_INTERNAL, "Hessian sum without a buffer");
  int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  hs_ctx c = {H, X, bufs, rows, k, 0, 0, 0};
  int64_t nblocks = (rows + BLOCK - 1) / BLOCK;
  int64_t T = qg_threads(), ntask = T * 4 < k ? T * 4 : k;
  c.chunk = (k + ntask - 1) / ntask; /* H's rows: the upper triangle's work shrinks down the rows, so more tasks than threads */
  for (int64_t b0 = 0; b0 < nblocks; b0 += nbuf) {
    c.r0 = b0 * BLOCK;
    c.nb = nblocks - b0 < nbuf ? nblocks - b0 : nbuf;
    qg_parallel_for(c.nb, syrk_task, &c);
    qg_parallel_for((k + c.chunk - 1) / c.chunk, add_task, &c);
  }
  openblas_set_num_threads(blas_threads);
  return QG_OK;
}

qg_status qg_cpu_hessian_add(double *H, const float *X, int64_t rows, int64_t k) {
  if (rows <= 0) return QG_OK;
  if (k <= 0 || k > 65536) return qg_fail(QG_ERR_INPUT, "Hessian size %lld out of range", (long long)k);
  int nbuf = qg_cpu_hessian_nbuf();
  float *bufs = malloc((size_t)nbuf * (size_t)(k * k) * sizeof *bufs);
  if (!bufs) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = qg_cpu_hessian_add_buf(H, X, rows, k, bufs, nbuf);
  free(bufs);
  return s;
}

struct qg_hacc {
  int64_t k, n;
  double *H;  /* upper triangle of the running sum */
  float *blk; /* nbuf blocks' fp32 sums, kept: fresh k x k buffers are an mmap (and page faults) each call */
  int nbuf;
};

qg_status qg_cpu_hacc_create(const qg_ops *o, int64_t k, qg_hacc **out) {
  (void)o;
  *out = NULL;
  if (k <= 0 || k > 65536) return qg_fail(QG_ERR_INPUT, "Hessian size %lld out of range", (long long)k);
  qg_hacc *h = calloc(1, sizeof *h);
  int nbuf = qg_cpu_hessian_nbuf();
  if (h) {
    h->H = calloc((size_t)(k * k), sizeof *h->H);
    h->blk = malloc((size_t)nbuf * (size_t)(k * k) * sizeof *h->blk);
    h->nbuf = nbuf;
  }
  if (!h || !h->H || !h->blk) {
    if (h) free(h->H), free(h->blk);
    free(h);
    return qg_fail(QG_ERR_NOMEM, "out of memory for a %lld x %lld Hessian", (long long)k, (long long)k);
  }
  h->k = k;
  *out = h;
  return QG_OK;
}

qg_status qg_cpu_hacc_add(const qg_ops *o, qg_hacc *h, const float *x, int64_t rows) {
  (void)o;
  QG_TRY(qg_cpu_hessian_add_buf(h->H, x, rows, h->k, h->blk, h->nbuf));
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
  if (h) free(h->H), free(h->blk);
  free(h);
}

