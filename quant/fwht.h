/* The normalised fast Walsh-Hadamard transform and seeded random sign flips.
 *
 * qg_fwht applies H_n / sqrt(n) (Sylvester ordering: H_2n = [[H, H], [H, -H]]) in place to
 * n = 2^k values, O(n log n). The normalised matrix is symmetric and orthogonal, so the
 * transform is orthonormal (keeps L2 norms) and its own inverse. Preceded by a diagonal
 * of random signs D it becomes the randomised rotation R = H D (inverse D H) that turbo
 * uses to make any group of weights look Gaussian. */
#ifndef QG_QUANT_FWHT_H
#define QG_QUANT_FWHT_H

#include <stddef.h>
#include <stdint.h>

/* True when n is a power of two >= 1. */
int qg_is_pow2(int64_t n);
/* In place; n must be a power of two (n = 1 is the identity). */
void qg_fwht(float *x, int64_t n);
void qg_fwht_f64(double *x, int64_t n);
/* m independent transforms of length n over consecutive blocks of x (m*n values). */
void qg_fwht_batch(float *x, int64_t n, int64_t m);

/* Fills s[0..n) with +1/-1 from a splitmix64 stream seeded by seed (bit i of successive
 * 64-bit words), so the same seed always gives the same signs. */
void qg_random_signs(uint64_t seed, float *s, int64_t n);
/* The splitmix64 step (also used to derive per-group seeds). */
uint64_t qg_splitmix64(uint64_t *state);

/* R x = H D x / sqrt(n) and its inverse D H y / sqrt(n), in place (signs s from
 * qg_random_signs, n values). */
void qg_rotate_fwd(float *x, const float *s, int64_t n);
void qg_rotate_inv(float *x, const float *s, int64_t n);
void qg_rotate_fwd_f64(double *x, const float *s, int64_t n);
void qg_rotate_inv_f64(double *x, const float *s, int64_t n);

#endif
