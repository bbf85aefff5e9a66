/* The gptq quantizer's parsed options (quant/gptq.c): its own and, as a config of its
 * own, the inner grid's. The CPU quantizer and the device path (quant/cuda/cuda_quant_bridge.c)
 * both read this struct. A qg_qconfig of method "gptq" holds one as its cfg. */
#ifndef QG_QUANT_GPTQ_H
#define QG_QUANT_GPTQ_H

#include <stdint.h>

#include "quant/quantizer.h"

typedef struct {
  /* The inner grid: a quantizer with a non-NULL grid and its parsed options (canon is
   * NULL: the inner options are part of gptq's canonical string). Owned by gptq. */
  qg_qconfig grid;
  double percdamp;   /* damping, as a fraction of the mean diag(H) */
  int64_t blocksize; /* columns per lazy block, a multiple of the grid width */
  int act_order;     /* visit columns by decreasing diag(H) */
  int static_groups; /* group scales from the original weights (default: = act_order) */
} qg_gptq_opts;

extern const qg_quantizer qg_quantizer_gptq;

/* The parsed options of a gptq config, or NULL when q is another quantizer. */
const qg_gptq_opts *qg_gptq_opts_of(const qg_quantizer *q, const void *cfg);

#endif
