/* The E8 encoder with the reference scoring pass: quant/e8_core.h as the device compiles
 * it (QG_E8_SCORES left at its scalar default), for tests and benchmarks to compare the
 * host's SIMD pass (quant/e8.c, quant/e8_search.c) with, index for index. */
#include <math.h>

#include "quant/e8.h"

#define QG_E8_FN static inline
#define QG_E8_POPC __builtin_popcount
#define QG_E8_CHUNK 32
#include "quant/e8_core.h"

uint32_t qg_e8_encode_ref(const qg_e8_codebook *cb, const float x[8], float *d2) {
  float d;
  uint32_t i = qg_e8c_encode(&cb->t, x, &d);
  if (d2) *d2 = d;
  return i;
}

uint32_t qg_e8_encode_search_ref(const qg_e8_codebook *cb, const float x[8], float *d2) {
  float v[8], d;
  for (int j = 0; j < 8; j++) v[j] = isfinite(x[j]) ? x[j] : 0.0f;
  uint32_t i = qg_e8c_encode_search(&cb->t, v, &d);
  if (d2) *d2 = d;
  return i;
}
