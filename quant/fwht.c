/* Fast Walsh-Hadamard transform (normalised), sign flips and the rotation built on them. */
#include "quant/fwht.h"

#include <math.h>

int qg_is_pow2(int64_t n) { return n >= 1 && (n & (n - 1)) == 0; }

/* Butterflies in passes of doubling span; the 1/sqrt(n) scale is applied once at the end
 * (exact for even k, one rounding otherwise) rather than 1/sqrt(2) per pass. */
#define FWHT_BODY(T)                                         \
  for (int64_t h = 1; h < n; h <<= 1)                        \
    for (int64_t i = 0; i < n; i += h << 1)                  \
      for (int64_t j = i; j < i + h; j++) {                  \
        T a = x[j], b = x[j + h];                            \
        x[j] = a + b;                                        \
        x[j + h] = a - b;                                    \
      }                                                      \
  T scale = (T)(1.0 / sqrt((double)n));                      \
  for (int64_t i = 0; i < n; i++) x[i] *= scale;

void qg_fwht(float *x, int64_t n) { FWHT_BODY(float) }
void qg_fwht_f64(double *x, int64_t n) { FWHT_BODY(double) }

void qg_fwht_batch(float *x, int64_t n, int64_t m) {
  for (int64_t r = 0; r < m; r++) qg_fwht(x + r * n, n);
}

uint64_t qg_splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void qg_random_signs(uint64_t seed, float *s, int64_t n) {
  uint64_t st = seed, word = 0;
  for (int64_t i = 0; i < n; i++) {
    if ((i & 63) == 0) word = qg_splitmix64(&st);
    s[i] = (word >> (i & 63)) & 1 ? -1.0f : 1.0f;
  }
}

void qg_rotate_fwd(float *x, const float *s, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] *= s[i];
  qg_fwht(x, n);
}

void qg_rotate_inv(float *x, const float *s, int64_t n) {
  qg_fwht(x, n);
  for (int64_t i = 0; i < n; i++) x[i] *= s[i];
}

void qg_rotate_fwd_f64(double *x, const float *s, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] *= s[i];
  qg_fwht_f64(x, n);
}

void qg_rotate_inv_f64(double *x, const float *s, int64_t n) {
  qg_fwht_f64(x, n);
  for (int64_t i = 0; i < n; i++) x[i] *= s[i];
}
