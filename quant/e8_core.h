/* E8 nearest points and nearest-codebook-entry encoding, written once for the CPU
 * (quant/e8.c) and the device (quant/cuda/cuda_quant_e8.h): the same float operations in
 * the same order and the same tie-breaks (first minimum), so with --fmad=false (the rule of
 * quant/cuda) a device index equals the CPU's by construction.
 *
 * The includer defines QG_E8_FN (the functions' qualifiers: `static inline` for C,
 * `__device__ inline` for CUDA), QG_E8_POPC (popcount of an unsigned) and QG_E8_CHUNK (how
 * many patterns one search step scores together: 32 on the CPU, where the fixed trip count
 * vectorises; 1 on the device, one thread per vector). Include it once per translation
 * unit. */
#ifndef QG_QUANT_E8_CORE_H
#define QG_QUANT_E8_CORE_H

#include <math.h>
#include <stdint.h>

#include "quant/e8_tables.h"

#if !defined(QG_E8_FN) || !defined(QG_E8_POPC) || !defined(QG_E8_CHUNK)
#error "define QG_E8_FN, QG_E8_POPC and QG_E8_CHUNK before including quant/e8_core.h"
#endif

#define QG_E8_BALL 0 /* qg_e8cb_kind */
#define QG_E8_E8P 1

/* Inputs are clamped to +-2^20 so the integer parity below is exact; codebook users scale
 * their inputs to a few units, and anything that large is far outside every codebook. */
QG_E8_FN float qg_e8c_clampf(float v) {
  if (!(v == v)) return 0.0f; /* NaN */
  return v > 1048576.0f ? 1048576.0f : v < -1048576.0f ? -1048576.0f : v;
}

QG_E8_FN void qg_e8c_d8_nearest(const float *x, float *y) {
  int64_t sum = 0;
  int worst = 0;
  float wd = -1.0f;
  for (int j = 0; j < 8; j++) {
    float v = qg_e8c_clampf(x[j]);
    float f = rintf(v);
    y[j] = f;
    sum += (int64_t)f;
    float d = fabsf(v - f);
    if (d > wd) wd = d, worst = j;
  }
  /* Odd sum: re-round the coordinate that was rounded worst, the other way; that costs
   * the least extra distance of any single change (Conway & Sloane's g(x)). */
  if (sum & 1) y[worst] += qg_e8c_clampf(x[worst]) >= y[worst] ? 1.0f : -1.0f;
}

/* Nearest point of the coset D8 + ½. */
QG_E8_FN void qg_e8c_half_nearest(const float *x, float *y) {
  float s[8];
  for (int j = 0; j < 8; j++) s[j] = x[j] - 0.5f;
  qg_e8c_d8_nearest(s, y);
  for (int j = 0; j < 8; j++) y[j] += 0.5f;
}

QG_E8_FN float qg_e8c_dist2(const float *a, const float *b) {
  float s = 0;
  for (int j = 0; j < 8; j++) s += (a[j] - b[j]) * (a[j] - b[j]);
  return s;
}

QG_E8_FN void qg_e8c_e8_nearest(const float *x, float *y) {
  float h[8];
  qg_e8c_d8_nearest(x, y);
  qg_e8c_half_nearest(x, h);
  if (qg_e8c_dist2(x, h) < qg_e8c_dist2(x, y))
    for (int j = 0; j < 8; j++) y[j] = h[j];
}

/* The nearest point z of D8 (half = 0) or D8 + ½ (half = 1) to y, and |y - z|^2. */
QG_E8_FN void qg_e8c_coset(const float *y, int half, float *z, float *d) {
  if (half) qg_e8c_half_nearest(y, z);
  else qg_e8c_d8_nearest(y, z);
  *d = qg_e8c_dist2(y, z);
}

QG_E8_FN int qg_e8c_find_pattern(const qg_e8_tables *cb, uint32_t key) {
  int lo = 0, hi = cb->n_pat - 1;
  while (lo <= hi) {
    int mid = (lo + hi) >> 1;
    if (cb->keys[mid] == key) return cb->key_pat[mid];
    if (cb->keys[mid] < key) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/* Index of pattern p with minus signs at the coordinates set in neg (bit j = coordinate
 * j) and, for e8p, shift bit sh. neg must be valid for p (parity, zeros). */
QG_E8_FN uint32_t qg_e8c_index_of(const qg_e8_tables *cb, int p, unsigned neg, int sh) {
  uint32_t code;
  if (cb->pat_half[p]) {
    code = (neg >> 1) & 127;
  } else {
    code = 0;
    int b = 0;
    for (int j = 0; j < 8; j++)
      if (cb->pat[p * 8 + j]) code |= ((neg >> j) & 1u) << b++;
  }
  if (cb->kind == QG_E8_E8P) return ((uint32_t)p << 8) | (code << 1) | (uint32_t)sh;
  return cb->pat_off[p] + code;
}

/* The lattice point z as (pattern, signs), or -1 when its pattern is not in cb. Keys pack
 * the doubled absolute coordinates 4 bits each. */
QG_E8_FN int qg_e8c_lookup_point(const qg_e8_tables *cb, const float *z, unsigned *neg) {
  uint32_t key = 0;
  *neg = 0;
  for (int j = 0; j < 8; j++) {
    float a = fabsf(2.0f * z[j]);
    if (a > 15.0f) return -1;
    key |= (uint32_t)(uint8_t)a << (4 * j);
    if (z[j] < 0) *neg |= 1u << j;
  }
  return qg_e8c_find_pattern(cb, key);
}

/* The includer may supply its own coset decoding, point lookup and scoring pass (same
 * signatures, the same results bit for bit: quant/e8.c and quant/e8_host_avx2.c do);
 * the device uses these. */
#ifndef QG_E8_COSET
#define QG_E8_COSET qg_e8c_coset
#endif
#ifndef QG_E8_LOOKUP
#define QG_E8_LOOKUP qg_e8c_lookup_point
#endif

/* One pass over the patterns: the nearest entry to y (without shift), as pattern and
 * minus signs; returns its squared distance. For pattern a the best signs follow y, and
 * the distance is |y|^2 - 2 sum a_j|y_j| + |a|^2; a half pattern whose parity disagrees
 * with y's signs pays 4 min_j a_j|y_j| for flipping its cheapest coordinate. The search
 * is three steps so that the host can replace the middle one (the scoring pass, see
 * quant/e8_search.c) and keep the rest: search_prep (|y|, |y|^2, y's minus signs),
 * search_scores (the first pattern of least score), search_finish (its signs). */
QG_E8_FN unsigned qg_e8c_search_prep(const float *y, float *ay, float *y2) {
  unsigned neg = 0;
  float s = 0;
  for (int j = 0; j < 8; j++) {
    ay[j] = fabsf(y[j]);
    s += y[j] * y[j];
    if (y[j] < 0) neg |= 1u << j;
  }
  *y2 = s;
  return neg;
}

/* Patterns go QG_E8_CHUNK at a time, coordinate-major (each pattern's terms still summed
 * in coordinate order, so the chunk size does not change a result); the tables are
 * padded to whole host chunks. The least score (+inf when none is below +inf) and its
 * first pattern (0 when none). */
QG_E8_FN float qg_e8c_search_scores(const qg_e8_tables *cb, const float *ay, unsigned negpar, int *pbest) {
  float best = INFINITY;
  int bp = 0, np = cb->n_pat;
  for (int base = 0; base < np; base += QG_E8_CHUNK) {
    int m = np - base < QG_E8_CHUNK ? np - base : QG_E8_CHUNK;
    float dot[QG_E8_CHUNK], mn[QG_E8_CHUNK];
    for (int p = 0; p < QG_E8_CHUNK; p++) dot[p] = 0.0f, mn[p] = INFINITY;
    for (int j = 0; j < 8; j++) {
      const float *aj = cb->pat_at + (size_t)j * (size_t)cb->n_pad + (size_t)base;
      float yj = ay[j];
      for (int p = 0; p < QG_E8_CHUNK; p++) {
        float t = aj[p] * yj;
        dot[p] += t;
        mn[p] = t < mn[p] ? t : mn[p];
      }
    }
    const uint8_t *half = cb->pat_half + base, *par = cb->pat_par + base;
    const float *nrm = cb->pat_norm + base;
    for (int p = 0; p < m; p++) {
      float score = nrm[p] - 2.0f * dot[p] + ((half[p] & (par[p] ^ negpar)) ? 4.0f * mn[p] : 0.0f);
      if (score < best) best = score, bp = base + p;
    }
  }
  *pbest = bp;
  return best;
}

QG_E8_FN float qg_e8c_search_finish(const qg_e8_tables *cb, const float *ay, unsigned neg, unsigned negpar,
                                    int bp, float best, float y2, int *pbest, unsigned *negbest) {
  unsigned n = neg;
  if (cb->pat_half[bp] && cb->pat_par[bp] != negpar) { /* flip the cheapest coordinate */
    int mj = 0;
    float mv = INFINITY;
    for (int j = 0; j < 8; j++) {
      float t = cb->pat_at[(size_t)j * (size_t)cb->n_pad + (size_t)bp] * ay[j];
      if (t < mv) mv = t, mj = j;
    }
    n ^= 1u << mj;
  }
  if (!cb->pat_half[bp]) /* zero coordinates of integer patterns carry no sign */
    for (int j = 0; j < 8; j++)
      if (!cb->pat[bp * 8 + j]) n &= ~(1u << j);
  *pbest = bp;
  *negbest = n;
  float d = y2 + best;
  return d > 0 ? d : 0;
}

#ifndef QG_E8_SCORES
#define QG_E8_SCORES qg_e8c_search_scores
#endif

QG_E8_FN float qg_e8c_search(const qg_e8_tables *cb, const float *y, int *pbest, unsigned *negbest) {
  float ay[8], y2;
  unsigned neg = qg_e8c_search_prep(y, ay, &y2);
  unsigned negpar = (unsigned)(QG_E8_POPC(neg) & 1);
  int bp;
  float best = QG_E8_SCORES(cb, ay, negpar, &bp);
  return qg_e8c_search_finish(cb, ay, neg, negpar, bp, best, y2, pbest, negbest);
}

/* The nearest entry by searching every pattern (v already sanitised). */
QG_E8_FN uint32_t qg_e8c_encode_search(const qg_e8_tables *cb, const float *v, float *d2) {
  int p;
  unsigned neg;
  if (cb->kind == QG_E8_BALL) {
    *d2 = qg_e8c_search(cb, v, &p, &neg);
    return qg_e8c_index_of(cb, p, neg, 0);
  }
  uint32_t best = 0;
  float bd = INFINITY;
  for (int sh = 0; sh < 2; sh++) {
    float y[8], t = sh ? 0.25f : -0.25f;
    for (int j = 0; j < 8; j++) y[j] = v[j] - t;
    float d = qg_e8c_search(cb, y, &p, &neg);
    if (d < bd) bd = d, best = qg_e8c_index_of(cb, p, neg, sh);
  }
  *d2 = bd;
  return best;
}

/* The nearest entry to x (non-finite coordinates read as 0) and its squared distance. */
QG_E8_FN uint32_t qg_e8c_encode(const qg_e8_tables *cb, const float *x, float *d2) {
  float v[8], z[8];
  for (int j = 0; j < 8; j++) v[j] = isfinite(x[j]) ? x[j] : 0.0f;
  unsigned neg;
  int p;
  if (cb->kind == QG_E8_BALL && cb->n_pat <= 64) /* a few patterns: searching is cheaper */
    return qg_e8c_encode_search(cb, v, d2);
  if (cb->kind == QG_E8_BALL) {
    /* The nearest lattice point (qg_e8c_e8_nearest) is the nearest entry whenever it is
     * in the ball. */
    float h[8], dz, dh;
    QG_E8_COSET(v, 0, z, &dz);
    QG_E8_COSET(v, 1, h, &dh);
    if (dh < dz) {
      for (int j = 0; j < 8; j++) z[j] = h[j];
      dz = dh;
    }
    if ((p = QG_E8_LOOKUP(cb, z, &neg)) >= 0) {
      *d2 = dz;
      return qg_e8c_index_of(cb, p, neg, 0);
    }
    *d2 = qg_e8c_search(cb, v, &p, &neg);
    return qg_e8c_index_of(cb, p, neg, 0);
  }
  /* e8p: each shift's entries are a subset of the coset D8 + ½ (shifted); within a
   * shift, the coset's nearest point is the answer when the codebook holds it, and a
   * lower bound on that shift's answer otherwise, so a shift whose bound cannot beat
   * the best so far is not searched. */
  float y[2][8], dl[2];
  int pp[2];
  unsigned nn[2];
  for (int sh = 0; sh < 2; sh++) {
    float t = sh ? 0.25f : -0.25f;
    for (int j = 0; j < 8; j++) y[sh][j] = v[j] - t;
    QG_E8_COSET(y[sh], 1, z, &dl[sh]);
    pp[sh] = QG_E8_LOOKUP(cb, z, &nn[sh]);
  }
  uint32_t best = 0;
  float bd = INFINITY;
  int first = dl[1] < dl[0];
  for (int k = 0; k < 2; k++) {
    int sh = k ? !first : first;
    if (dl[sh] >= bd) continue;
    float d = dl[sh];
    if (pp[sh] < 0) d = qg_e8c_search(cb, y[sh], &pp[sh], &nn[sh]);
    if (d < bd) bd = d, best = qg_e8c_index_of(cb, pp[sh], nn[sh], sh);
  }
  *d2 = bd;
  return best;
}

#endif
