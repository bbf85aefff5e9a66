/* The CPU's Hessian sum, shared by the op table's hacc_* and quant/hessian.c: the one
 * place the calibration arithmetic is written. */
#ifndef QG_KERNELS_CPU_HESSIAN_H
#define QG_KERNELS_CPU_HESSIAN_H

#include <stdint.h>

#include "core/status.h"
#include "kernels/ops.h"

/* H[i, j] += sum_r X[r, i] X[r, j] for j >= i (the upper triangle of the row-major k x k
 * fp64 sum; the lower one is not touched). Blocks of 1024 rows go through fp32 ssyrk and
 * are added into fp64, so the rounding error stays that of one block (about 1e-6
 * relative) instead of growing with the number of rows. The blocks run on the core pool
 * (single-threaded BLAS each); H is the same bits for every thread count. */
qg_status qg_cpu_hessian_add(double *H, const float *X, int64_t rows, int64_t k);
/* The same with the caller's scratch: nbuf k x k fp32 block sums (nbuf >= 1; the pool's
 * thread count, qg_cpu_hessian_nbuf(), keeps every thread busy). */
qg_status qg_cpu_hessian_add_buf(double *H, const float *X, int64_t rows, int64_t k, float *bufs, int nbuf);
int qg_cpu_hessian_nbuf(void);

/* The op table's entries (kernels/ops.h). */
qg_status qg_cpu_hacc_create(const qg_ops *o, int64_t k, qg_hacc **out);
qg_status qg_cpu_hacc_add(const qg_ops *o, qg_hacc *h, const float *x, int64_t rows);
qg_status qg_cpu_hacc_read(const qg_ops *o, const qg_hacc *h, double *H, int64_t *rows);
void qg_cpu_hacc_free(const qg_ops *o, qg_hacc *h);

#endif
