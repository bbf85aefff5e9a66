/* The vectorised exp and the attention softmax numerator (kernels/cpu/cpu_softmax.h).
 * Range reduction and polynomial after Cephes' expf (S. Moshier); every path below is
 * the same sequence of single-precision multiplies and adds, lane by lane. */
#include "kernels/cpu/cpu_softmax.h"

#include <math.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define QG_X86 1
#include <immintrin.h>
#endif

/* k = round(x log2 e) by the 1.5 * 2^23 trick: t + MAGIC holds k in its low mantissa
 * bits (|k| < 2^22), so both k as a float and k as an integer come out of one add. */
#define EXP_LOG2E 1.44269504088896341f
#define EXP_MAGIC 12582912.0f
#define EXP_MAGIC_BITS 0x4B400000
/* ln 2 = C1 + C2, C1 with 9 significant bits so k * C1 is exact for |k| <= 128 */
#define EXP_C1 0.693359375f
#define EXP_C2 (-2.12194440e-4f)
#define EXP_P0 1.9875691500e-4f
#define EXP_P1 1.3981999507e-3f
#define EXP_P2 8.3334519073e-3f
#define EXP_P3 4.1665795894e-2f
#define EXP_P4 1.6666665459e-1f
#define EXP_P5 5.0000001201e-1f
/* below: the result would be subnormal (2^k needs k >= -126), returned as 0; above: 2^k
 * would need k = 128, returned as +inf */
#define EXP_LO (-87.33654f)
#define EXP_HI 88.3762626647949f

float qg_cpu_expf(float x) {
  float t = x * EXP_LOG2E;
  float u = t + EXP_MAGIC;
  float kf = u - EXP_MAGIC;
  uint32_t ub;
  memcpy(&ub, &u, sizeof ub);
  float a = kf * EXP_C1, b = kf * EXP_C2;
  float r = x - a;
  r = r - b;
  float z = r * r;
  float p = EXP_P0 * r;
  p = p + EXP_P1;
  p = p * r;
  p = p + EXP_P2;
  p = p * r;
  p = p + EXP_P3;
  p = p * r;
  p = p + EXP_P4;
  p = p * r;
  p = p + EXP_P5;
  p = p * z;
  p = p + r;
  p = p + 1.0f;
  uint32_t sb = (ub - EXP_MAGIC_BITS + 127u) << 23;
  float s;
  memcpy(&s, &sb, sizeof s);
  float y = p * s;
  if (x < EXP_LO) return 0.0f;
  if (x > EXP_HI) return INFINITY;
  return y; /* NaN in, NaN out: r is NaN */
}

/* The fixed tree over the eight partial sums. */
static float lane_sum(const float a[8]) { return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])); }

static float softmax_scalar(float *row, int n) {
  float mx = -INFINITY;
  for (int s = 0; s < n; s++) mx = row[s] > mx ? row[s] : mx;
  float acc[8] = {0};
  for (int s = 0; s < n; s++) {
    row[s] = qg_cpu_expf(row[s] - mx);
    acc[s & 7] += row[s];
  }
  return 1.0f / lane_sum(acc);
}

#ifdef QG_X86
static inline __m128 exp_sse2(__m128 x) {
  __m128 t = _mm_mul_ps(x, _mm_set1_ps(EXP_LOG2E));
  __m128 u = _mm_add_ps(t, _mm_set1_ps(EXP_MAGIC));
  __m128 kf = _mm_sub_ps(u, _mm_set1_ps(EXP_MAGIC));
  __m128 r = _mm_sub_ps(x, _mm_mul_ps(kf, _mm_set1_ps(EXP_C1)));
  r = _mm_sub_ps(r, _mm_mul_ps(kf, _mm_set1_ps(EXP_C2)));
  __m128 z = _mm_mul_ps(r, r);
  __m128 p = _mm_mul_ps(_mm_set1_ps(EXP_P0), r);
  p = _mm_mul_ps(_mm_add_ps(p, _mm_set1_ps(EXP_P1)), r);
  p = _mm_mul_ps(_mm_add_ps(p, _mm_set1_ps(EXP_P2)), r);
  p = _mm_mul_ps(_mm_add_ps(p, _mm_set1_ps(EXP_P3)), r);
  p = _mm_mul_ps(_mm_add_ps(p, _mm_set1_ps(EXP_P4)), r);
  p = _mm_add_ps(p, _mm_set1_ps(EXP_P5));
  p = _mm_add_ps(_mm_add_ps(_mm_mul_ps(p, z), r), _mm_set1_ps(1.0f));
  __m128i k = _mm_sub_epi32(_mm_castps_si128(u), _mm_set1_epi32(EXP_MAGIC_BITS - 127));
  __m128 y = _mm_mul_ps(p, _mm_castsi128_ps(_mm_slli_epi32(k, 23)));
  y = _mm_andnot_ps(_mm_cmplt_ps(x, _mm_set1_ps(EXP_LO)), y);
  __m128 big = _mm_cmpgt_ps(x, _mm_set1_ps(EXP_HI));
  return _mm_or_ps(_mm_andnot_ps(big, y), _mm_and_ps(big, _mm_set1_ps(INFINITY)));
}

static float softmax_sse2(float *row, int n) {
  int n8 = n & ~7;
  __m128 m0 = _mm_set1_ps(-INFINITY), m1 = m0;
  for (int s = 0; s < n8; s += 8) {
    m0 = _mm_max_ps(m0, _mm_loadu_ps(row + s));
    m1 = _mm_max_ps(m1, _mm_loadu_ps(row + s + 4));
  }
  float mv[8];
  _mm_storeu_ps(mv, _mm_max_ps(m0, m1));
  float mx = -INFINITY;
  for (int l = 0; l < 4; l++) mx = mv[l] > mx ? mv[l] : mx;
  for (int s = n8; s < n; s++) mx = row[s] > mx ? row[s] : mx;
  __m128 vm = _mm_set1_ps(mx), a0 = _mm_setzero_ps(), a1 = a0;
  for (int s = 0; s < n8; s += 8) {
    __m128 e0 = exp_sse2(_mm_sub_ps(_mm_loadu_ps(row + s), vm));
    __m128 e1 = exp_sse2(_mm_sub_ps(_mm_loadu_ps(row + s + 4), vm));
    _mm_storeu_ps(row + s, e0);
    _mm_storeu_ps(row + s + 4, e1);
    a0 = _mm_add_ps(a0, e0);
    a1 = _mm_add_ps(a1, e1);
  }
  float acc[8];
  _mm_storeu_ps(acc, a0);
  _mm_storeu_ps(acc + 4, a1);
  for (int s = n8; s < n; s++) {
    row[s] = qg_cpu_expf(row[s] - mx);
    acc[s - n8] += row[s];
  }
  return 1.0f / lane_sum(acc);
}

__attribute__((target("avx2"))) static inline __m256 exp_avx2(__m256 x) {
  __m256 t = _mm256_mul_ps(x, _mm256_set1_ps(EXP_LOG2E));
  __m256 u = _mm256_add_ps(t, _mm256_set1_ps(EXP_MAGIC));
  __m256 kf = _mm256_sub_ps(u, _mm256_set1_ps(EXP_MAGIC));
  __m256 r = _mm256_sub_ps(x, _mm256_mul_ps(kf, _mm256_set1_ps(EXP_C1)));
  r = _mm256_sub_ps(r, _mm256_mul_ps(kf, _mm256_set1_ps(EXP_C2)));
  __m256 z = _mm256_mul_ps(r, r);
  __m256 p = _mm256_mul_ps(_mm256_set1_ps(EXP_P0), r);
  p = _mm256_mul_ps(_mm256_add_ps(p, _mm256_set1_ps(EXP_P1)), r);
  p = _mm256_mul_ps(_mm256_add_ps(p, _mm256_set1_ps(EXP_P2)), r);
  p = _mm256_mul_ps(_mm256_add_ps(p, _mm256_set1_ps(EXP_P3)), r);
  p = _mm256_mul_ps(_mm256_add_ps(p, _mm256_set1_ps(EXP_P4)), r);
  p = _mm256_add_ps(p, _mm256_set1_ps(EXP_P5));
  p = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(p, z), r), _mm256_set1_ps(1.0f));
  __m256i k = _mm256_sub_epi32(_mm256_castps_si256(u), _mm256_set1_epi32(EXP_MAGIC_BITS - 127));
  __m256 y = _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(k, 23)));
  y = _mm256_andnot_ps(_mm256_cmp_ps(x, _mm256_set1_ps(EXP_LO), _CMP_LT_OQ), y);
  __m256 big = _mm256_cmp_ps(x, _mm256_set1_ps(EXP_HI), _CMP_GT_OQ);
  return _mm256_blendv_ps(y, _mm256_set1_ps(INFINITY), big);
}

__attribute__((target("avx2"))) static float softmax_avx2(float *row, int n) {
  int n8 = n & ~7;
  __m256 m = _mm256_set1_ps(-INFINITY);
  for (int s = 0; s < n8; s += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(row + s));
  float mv[8];
  _mm256_storeu_ps(mv, m);
  float mx = -INFINITY;
  for (int l = 0; l < 8; l++) mx = mv[l] > mx ? mv[l] : mx;
  for (int s = n8; s < n; s++) mx = row[s] > mx ? row[s] : mx;
  __m256 vm = _mm256_set1_ps(mx), a = _mm256_setzero_ps();
  for (int s = 0; s < n8; s += 8) {
    __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(row + s), vm));
    _mm256_storeu_ps(row + s, e);
    a = _mm256_add_ps(a, e);
  }
  float acc[8];
  _mm256_storeu_ps(acc, a);
  for (int s = n8; s < n; s++) {
    row[s] = qg_cpu_expf(row[s] - mx);
    acc[s - n8] += row[s];
  }
  return 1.0f / lane_sum(acc);
}

__attribute__((target("avx2"))) static void vexp_avx2(float *y, const float *x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, exp_avx2(_mm256_loadu_ps(x + i)));
  for (; i < n; i++) y[i] = qg_cpu_expf(x[i]);
}

static void vexp_sse2(float *y, const float *x, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) _mm_storeu_ps(y + i, exp_sse2(_mm_loadu_ps(x + i)));
  for (; i < n; i++) y[i] = qg_cpu_expf(x[i]);
}
#endif

qg_cpu_isa qg_cpu_isa_best(void) {
#ifdef QG_X86
  /* libgcc's check includes the OS's support for the YMM state */
  return __builtin_cpu_supports("avx2") ? QG_ISA_AVX2 : QG_ISA_SSE2;
#else
  return QG_ISA_SCALAR;
#endif
}

int qg_cpu_isa_available(qg_cpu_isa isa) {
  if (isa == QG_ISA_BEST || isa == QG_ISA_SCALAR) return 1;
  return isa <= qg_cpu_isa_best();
}

/* An unavailable path falls back to the best one: same bits either way. */
static qg_cpu_isa resolve(qg_cpu_isa isa) { return isa == QG_ISA_BEST || !qg_cpu_isa_available(isa) ? qg_cpu_isa_best() : isa; }

void qg_cpu_vexpf(qg_cpu_isa isa, float *y, const float *x, int64_t n) {
  switch (resolve(isa)) {
#ifdef QG_X86
    case QG_ISA_AVX2:
      vexp_avx2(y, x, n);
      return;
    case QG_ISA_SSE2:
      vexp_sse2(y, x, n);
      return;
#endif
    default:
      for (int64_t i = 0; i < n; i++) y[i] = qg_cpu_expf(x[i]);
  }
}

float qg_cpu_softmax_exp_isa(qg_cpu_isa isa, float *row, int n) {
  switch (resolve(isa)) {
#ifdef QG_X86
    case QG_ISA_AVX2:
      return softmax_avx2(row, n);
    case QG_ISA_SSE2:
      return softmax_sse2(row, n);
#endif
    default:
      return softmax_scalar(row, n);
  }
}
