/* The rowwise quantizer's parsed options (quant/rowwise.c): one struct that the CPU
 * quantizer and the device path (quant/cuda/cuda_quant_bridge.c) both read, so the defaults
 * and derived values exist once. A qg_qconfig of method "rowwise" holds one as its cfg. */
#ifndef QG_QUANT_ROWWISE_H
#define QG_QUANT_ROWWISE_H

#include <stdint.h>

#include "quant/quantizer.h"

enum { QG_RW_CLIP_PCT = 0, QG_RW_CLIP_SD, QG_RW_CLIP_ABSMAX, QG_RW_CLIP_SEARCH };

typedef struct {
  int bits;       /* 2..8 */
  int full;       /* range: 0 sym, 1 full */
  int clip;       /* QG_RW_CLIP_* */
  int64_t group;  /* input columns per scale, 0 = one scale per row */
  double pct;     /* clip=pct: the percentile of |w| */
  double k;       /* clip=sd: sigmas (default interpolated by bits, see rowwise.c) */
  double maxshrink;
  int steps;      /* clip=search: candidates over [1 - maxshrink, 1] x absmax */
  int objective;  /* clip=search: 0 mse, 1 hessian (diag H weighted) */
} qg_rowwise_opts;

extern const qg_quantizer qg_quantizer_rowwise;

/* The parsed options of a rowwise config (q == &qg_quantizer_rowwise, cfg its parse()
 * result), or NULL for any other quantizer. */
const qg_rowwise_opts *qg_rowwise_opts_of(const qg_quantizer *q, const void *cfg);
/* The signed code range: sym [-(2^(bits-1)-1), 2^(bits-1)-1], full [-2^(bits-1), 2^(bits-1)-1]. */
void qg_rowwise_code_range(const qg_rowwise_opts *o, int *qmin, int *qmax);

#endif
