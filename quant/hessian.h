/* GPTQ Hessians: H = (2/n) * sum over calibration rows x of x x^T, accumulated in fp64
 * from the activations at a linear layer's input (k = in_features = the weight's cols).
 *
 * The calibration side (model forward) calls qg_hessian_accumulate for every batch of
 * activation rows it sees at a layer's input, then qg_hessian_finalize once; the quantize
 * pipeline (quant/pipeline.h) takes a qg_hessian_map keyed by the *weight's* state-dict
 * name ("blocks.3.attn.c_q.weight"; "tok_emb.weight" for the tied output head, whose
 * input is the final normed hidden state). */
#ifndef QG_QUANT_HESSIAN_H
#define QG_QUANT_HESSIAN_H

#include <stdint.h>

#include "core/status.h"

typedef struct {
  int64_t k;   /* H is k x k, row-major, symmetric */
  int64_t n;   /* rows accumulated so far */
  double *H;   /* running sum of x x^T until finalized, then (2/n) * that */
  int finalized;
} qg_hessian;

qg_status qg_hessian_init(qg_hessian *h, int64_t k);
void qg_hessian_free(qg_hessian *h);
/* Adds n_rows activation rows (X: n_rows x k floats, row-major) to the sum (fp64 dsyrk). */
qg_status qg_hessian_accumulate(qg_hessian *h, const float *X, int64_t n_rows, int64_t k);
/* The same, fast: blocks of up to 1024 rows are summed by fp32 ssyrk and each block's sum
 * is added to the fp64 total, so the rounding error stays at the fp32 level of one block
 * (about 1e-6 relative) instead of growing with the number of rows. Calibration uses this;
 * qg_hessian_accumulate is the exact fp64 reference it is tested against. */
qg_status qg_hessian_accumulate_fast(qg_hessian *h, const float *X, int64_t n_rows, int64_t k);
/* The same from fp64 rows. */
qg_status qg_hessian_accumulate_f64(qg_hessian *h, const double *X, int64_t n_rows, int64_t k);
/* Scales the sum to (2/n) * sum x x^T and fills both triangles. n = 0 is an error. */
qg_status qg_hessian_finalize(qg_hessian *h);

/* Hessians by weight name. */
typedef struct {
  char **names;
  qg_hessian *h;
  int n, cap;
} qg_hessian_map;

void qg_hessian_map_init(qg_hessian_map *m);
void qg_hessian_map_free(qg_hessian_map *m);
/* The Hessian for name, created (k x k, zero) when absent; a k mismatch is an error. The
 * pointer is valid until the next call that adds a name. */
qg_status qg_hessian_map_get(qg_hessian_map *m, const char *name, int64_t k, qg_hessian **out);
/* NULL when absent. */
const qg_hessian *qg_hessian_map_find(const qg_hessian_map *m, const char *name);
/* Finalizes every entry. */
qg_status qg_hessian_map_finalize(qg_hessian_map *m);

#endif
