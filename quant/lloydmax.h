/* Lloyd-Max scalar quantizers for the standard normal N(0,1).
 *
 * The b-bit codebook (L = 2^b levels) minimises E[(X - Q(X))^2] for X ~ N(0,1). It is
 * computed by Lloyd iteration (finished by Newton steps) on the exact density:
 * thresholds are midpoints of adjacent centroids, each centroid is the conditional mean
 * of its cell, (phi(a) - phi(b)) / (Phi(b) - Phi(a)), all with erfc and exp; no sampling. turbo rounds rotated,
 * unit-variance coordinates to these levels, and GPTQ can use them (times a per-row
 * scale) as a non-uniform inner grid. */
#ifndef QG_QUANT_LLOYDMAX_H
#define QG_QUANT_LLOYDMAX_H

#include <stdint.h>

#include "core/status.h"

#define QG_LLOYDMAX_MAX_BITS 8

typedef struct {
  int bits, levels;                     /* levels = 2^bits */
  double c[1 << QG_LLOYDMAX_MAX_BITS];  /* centroids, increasing, symmetric about 0 */
  double t[(1 << QG_LLOYDMAX_MAX_BITS) + 1]; /* cell edges: t[0] = -inf ... t[L] = +inf */
  float cf[1 << QG_LLOYDMAX_MAX_BITS];  /* centroids as float, for rounding loops */
  float tf[1 << QG_LLOYDMAX_MAX_BITS];  /* interior edges t[1..L-1] as float */
  double mse;                           /* E[(X - Q(X))^2], exact integral */
  int iters;                            /* Lloyd iterations used */
} qg_lloydmax;

/* Computes the b-bit codebook for N(0,1), b in 1..QG_LLOYDMAX_MAX_BITS, to
 * |c_i - centroid_i| < 1e-12 for every level (all eight widths take ~15 ms together). */
qg_status qg_lloydmax_gaussian(int bits, qg_lloydmax *out);
/* The same codebook from a per-process cache (computed once per bit width; thread-safe
 * only after the first call for that width returns). NULL on bad bits. */
const qg_lloydmax *qg_lloydmax_gaussian_cached(int bits);

/* Index of the level nearest to x (binary search over the cell edges). */
static inline int qg_lloydmax_index(const qg_lloydmax *q, float x) {
  int lo = 0, hi = q->levels - 1; /* answer in [lo, hi] */
  while (lo < hi) {
    int mid = (lo + hi) >> 1;
    if (x > q->tf[mid]) lo = mid + 1; else hi = mid; /* tf[mid] = edge between mid, mid+1 */
  }
  return lo;
}

/* Exact MSE of an arbitrary codebook (levels c[0..n-1], increasing) under N(0,1) with
 * nearest-level rounding; used by tests as an independent check. */
double qg_lloydmax_gaussian_mse(const double *c, int n);

/* Standard normal density and distribution function (erfc-based, accurate in tails). */
double qg_norm_pdf(double x);
double qg_norm_cdf(double x);

#endif
