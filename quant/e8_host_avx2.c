/* The host encoder on AVX2: quant/e8_core.h compiled for AVX2 with the coset decoding
 * and the point lookup done on all 8 coordinates at once. On baseline x86-64 the core's
 * decoding is branchy scalar code (rintf emulated, clamps, the worst coordinate); here it
 * is the same IEEE operations lane by lane (no FMA: not in the target, and ISO C never
 * contracts), so z, |y - z|^2 (summed in coordinate order), the key and the signs are the
 * core's bit for bit. quant/e8.c calls it where the CPU has AVX2. */
#include "quant/e8_host.h"

#if QG_E8_HOST_AVX2

#include <immintrin.h>
#include <math.h>

#include "quant/e8_search.h"

#define E8A __attribute__((target("avx2")))

/* qg_e8c_coset: qg_e8c_d8_nearest on y (half = 0) or y - ½ (then + ½). */
E8A static inline void coset_avx2(const float *y, int half, float *z, float *d) {
  __m256 yv = _mm256_loadu_ps(y);
  __m256 s = half ? _mm256_sub_ps(yv, _mm256_set1_ps(0.5f)) : yv;
  /* qg_e8c_clampf: NaN -> 0 (max_ps returns its second operand for a NaN, the mask
   * zeroes it), else min(max(s, -2^20), 2^20) */
  __m256 c = _mm256_min_ps(_mm256_max_ps(s, _mm256_set1_ps(-1048576.0f)), _mm256_set1_ps(1048576.0f));
  c = _mm256_and_ps(c, _mm256_cmp_ps(s, s, _CMP_ORD_Q));
  __m256 f = _mm256_round_ps(c, _MM_FROUND_CUR_DIRECTION); /* rintf */
  __m256 dd = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(c, f));
  /* the parity of the integer sum: |f| <= 2^20, so the int32 conversion is exact */
  __m256i fi = _mm256_cvtps_epi32(f);
  __m128i p4 = _mm_xor_si128(_mm256_castsi256_si128(fi), _mm256_extracti128_si256(fi, 1));
  p4 = _mm_xor_si128(p4, _mm_shuffle_epi32(p4, 0x4E));
  p4 = _mm_xor_si128(p4, _mm_shuffle_epi32(p4, 0xB1));
  float fz[8], cz[8];
  _mm256_storeu_ps(fz, f);
  if (_mm_cvtsi128_si32(p4) & 1) {
    /* the first coordinate of largest rounding distance */
    __m256 m = _mm256_max_ps(dd, _mm256_permute2f128_ps(dd, dd, 1));
    m = _mm256_max_ps(m, _mm256_permute_ps(m, 0x4E));
    m = _mm256_max_ps(m, _mm256_permute_ps(m, 0xB1));
    int w = __builtin_ctz((unsigned)_mm256_movemask_ps(_mm256_cmp_ps(dd, m, _CMP_EQ_OQ)));
    _mm256_storeu_ps(cz, c);
    fz[w] += cz[w] >= fz[w] ? 1.0f : -1.0f;
  }
  __m256 zv = _mm256_loadu_ps(fz);
  if (half) zv = _mm256_add_ps(zv, _mm256_set1_ps(0.5f));
  _mm256_storeu_ps(z, zv);
  __m256 df = _mm256_sub_ps(yv, zv);
  float sq[8];
  _mm256_storeu_ps(sq, _mm256_mul_ps(df, df));
  float acc = 0;
  for (int j = 0; j < 8; j++) acc += sq[j]; /* qg_e8c_dist2's order */
  *d = acc;
}

/* qg_e8c_lookup_point with the hash: the key packs |2 z_j| (<= 15) 4 bits each. */
E8A static inline int lookup_avx2(const qg_e8_tables *cb, const float *z, unsigned *neg) {
  __m256 zv = _mm256_loadu_ps(z);
  __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_add_ps(zv, zv));
  *neg = (unsigned)_mm256_movemask_ps(_mm256_cmp_ps(zv, _mm256_setzero_ps(), _CMP_LT_OQ));
  if (_mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(15.0f), _CMP_GT_OQ))) return -1;
  __m256i k = _mm256_sllv_epi32(_mm256_cvttps_epi32(a), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28));
  __m128i k4 = _mm_or_si128(_mm256_castsi256_si128(k), _mm256_extracti128_si256(k, 1));
  k4 = _mm_or_si128(k4, _mm_shuffle_epi32(k4, 0x4E));
  k4 = _mm_or_si128(k4, _mm_shuffle_epi32(k4, 0xB1));
  return qg_e8_host_find(cb, (uint32_t)_mm_cvtsi128_si32(k4));
}

E8A static inline float scores_avx2(const qg_e8_tables *cb, const float *ay, unsigned negpar, int *pbest) {
  return qg_e8_search_scores_isa(QG_E8_ISA_AVX2, 1, cb, ay, negpar, pbest, NULL);
}

#define QG_E8_FN static inline E8A
#define QG_E8_POPC __builtin_popcount
#define QG_E8_CHUNK QG_E8_HOST_CHUNK
#define QG_E8_COSET coset_avx2
#define QG_E8_LOOKUP lookup_avx2
#define QG_E8_SCORES scores_avx2
#include "quant/e8_core.h"

E8A uint32_t qg_e8_host_encode_avx2(const qg_e8_tables *cb, const float *x, float *d2) {
  return qg_e8c_encode(cb, x, d2);
}

E8A uint32_t qg_e8_host_encode_search_avx2(const qg_e8_tables *cb, const float *v, float *d2) {
  return qg_e8c_encode_search(cb, v, d2);
}

#endif
