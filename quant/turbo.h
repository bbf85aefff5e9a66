/* The turbo quantizer's parsed options (quant/turbo.c). A qg_qconfig of method "turbo"
 * holds one as its cfg. */
#ifndef QG_QUANT_TURBO_H
#define QG_QUANT_TURBO_H

#include <stdint.h>

#include "quant/quantizer.h"

enum { QG_TB_NORM_LS = 0, QG_TB_NORM_L2 = 1 };

typedef struct {
  int bits;      /* 1..QG_LLOYDMAX_MAX_BITS */
  int norm;      /* QG_TB_NORM_*: least-squares gain ("scales") or the group's norm ("norms") */
  int64_t group; /* rotation group, a power of two */
  double eq;     /* column equalisation exponent (0 = none; > 0 needs importance) */
} qg_turbo_opts;

extern const qg_quantizer qg_quantizer_turbo;

/* The parsed options of a turbo config, or NULL when q is another quantizer. */
const qg_turbo_opts *qg_turbo_opts_of(const qg_quantizer *q, const void *cfg);

#endif
