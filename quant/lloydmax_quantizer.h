/* The lloydmax quantizer's parsed options (quant/lloydmax_quantizer.c): the CPU quantizer
 * and the device path (quant/cuda/cuda_quant_bridge.c) both read this struct and the scale
 * search's multipliers below. A qg_qconfig of method "lloydmax" holds one as its cfg. */
#ifndef QG_QUANT_LLOYDMAX_QUANTIZER_H
#define QG_QUANT_LLOYDMAX_QUANTIZER_H

#include <stdint.h>

#include "quant/quantizer.h"

enum { QG_LM_SCALE_RMS = 0, QG_LM_SCALE_SEARCH = 1 };

typedef struct {
  int bits;      /* 1..QG_LLOYDMAX_MAX_BITS */
  int scale;     /* QG_LM_SCALE_*: sigma = the RMS, or the best multiple of it */
  int steps;     /* scale=search: candidates, geometrically spaced over [lo, hi] */
  int objective; /* 0 mse, 1 hessian (diag H weighted) */
  int64_t group; /* input columns per scale, 0 = one scale per row */
  double lo, hi; /* search range of sigma / RMS */
} qg_lloydmax_opts;

extern const qg_quantizer qg_quantizer_lloydmax;

/* The parsed options of a lloydmax config, or NULL when q is another quantizer. */
const qg_lloydmax_opts *qg_lloydmax_opts_of(const qg_quantizer *q, const void *cfg);
/* The search's i-th multiplier of the RMS (0 <= i < steps). */
double qg_lloydmax_mult(const qg_lloydmax_opts *o, int i);

#endif
