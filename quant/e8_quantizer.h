/* The e8 quantizer's parsed options (quant/e8_quantizer.c): the codebooks of its stages,
 * their RMS coordinates and the scale search's candidates, computed once at parse. The
 * CPU quantizer and the device path (quant/cuda/cuda_quant_bridge.c) both read this struct,
 * so they try the same scales. A qg_qconfig of method "e8" holds one as its cfg. */
#ifndef QG_QUANT_E8_QUANTIZER_H
#define QG_QUANT_E8_QUANTIZER_H

#include <stdint.h>

#include "quant/e8.h"
#include "quant/quantizer.h"

#define QG_E8_MAX_STAGES 2
#define QG_E8_MAX_STEPS 1000 /* the steps option's upper bound */

enum { QG_E8_CB_E8P = 0, QG_E8_CB_BALL = 1 };

/* One scale search: candidates mult[0..n) times RMS / unit, then two refinement rounds
 * that try best * up[r] and best * dn[r] (the candidate spacing halved, in log, each round). */
typedef struct {
  int n;
  double mult[QG_E8_MAX_STEPS];
  double up[2], dn[2];
} qg_e8_search;

typedef struct {
  int cb;        /* QG_E8_CB_* */
  int nstages;   /* 1, or 2 with a residual stage */
  int steps;     /* stage-1 candidates over [lo, hi] */
  int steps2;    /* stage-2 candidates over [QG_E8_S2_LO, QG_E8_S2_HI] */
  int objective; /* 0 mse, 1 hessian (diag H weighted) */
  double bits, lo, hi;
  int64_t group; /* input columns per scale (a multiple of 8), 0 = one per row */
  const qg_e8_codebook *stage[QG_E8_MAX_STAGES];
  float unit[QG_E8_MAX_STAGES];   /* RMS coordinate of each stage's codebook */
  qg_e8_search search[2];         /* [0]: a stage searched alone; [1]: stage 2 */
  qg_e8_codebook own;             /* cb=ball with a size not cached (stage[0] = &own) */
} qg_e8_opts;

/* Stage 2 searches a narrower range around its own optimum (the residual's shape varies
 * little), with half the steps (at least 4). */
#define QG_E8_S2_LO 0.7
#define QG_E8_S2_HI 1.4

extern const qg_quantizer qg_quantizer_e8;

/* The parsed options of an e8 config, or NULL when q is another quantizer. */
const qg_e8_opts *qg_e8_opts_of(const qg_quantizer *q, const void *cfg);

#endif
