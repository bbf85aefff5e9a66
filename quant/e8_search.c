/* The host's E8 pattern search (see e8_search.h). Every form returns what the reference
 * pass (e8_core.h's qg_e8c_search_scores) returns, bit for bit: the least float score
 * and, among equal scores, the smallest pattern index.
 *
 * Scores. A pattern's score is always computed by the reference's float operations in
 * its order (products, the sum in coordinate order, min, no fused multiply-add: ISO C and
 * target("avx2") without "fma" never contract), so it is the reference's own score.
 *
 * Full pass. The reference keeps `if (score < best)` as one scalar chain, which costs
 * most of its time. Here lane k of block b (32 patterns a block) holds pattern 32 b + k,
 * each lane keeps its own first minimum, and one pass over the lanes takes the least
 * score with the smallest index: the reference's first minimum. NaN and infinite scores
 * are skipped alike (a < compare is false for them).
 *
 * Pruned search. Patterns that are permutations of one another form a class (same norm,
 * same parity). For |y| sorted descending (sy) and the class's sorted values a, the
 * rearrangement inequality bounds every member's sum a_p . |y| by M = a . sy, reached by
 * the member that puts a in |y|'s order; a half pattern that pays the sign flip pays at
 * least 4 a_7 sy_7 (its least term). So every member's score is at least
 *   lb = |a|^2 - 2 M (+ 4 a_7 sy_7) - margin,
 * the margin covering the float rounding of a score (2^-16 relative, far above the ~20
 * units of 2^-24 that 8 products, their sum and three more operations can lose). A member
 * other than the sorted one has a sum lower by at least g = min_t (a_t - a_t+1)(sy_t -
 * sy_t+1) over the steps of a (a t+1 subset of |y| other than the top one loses at least
 * the step at t), so its score is >= lb + 2 g. The search scores the sorted member of the
 * class with the least bound, then of every class whose bound does not exceed the best
 * score so far; a class whose other members might still reach the best (2 g not above
 * best - lb: ties in |y| at a step) or that lacks some permutations (E8P's 29 of 56) has
 * the blocks holding its members scored in full. No pattern left out can reach the best
 * score, so the first minimum is the reference's. Inputs above 1e15 (where float scores
 * could overflow) take the full pass. */
#include "quant/e8_search.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define E8S_X86 1
#endif

_Static_assert(QG_E8_HOST_CHUNK == 32, "the kernels below score 32 patterns a block");

#define MAX_CLASSES 64 /* more (large balls): the pruned search is off, the full pass runs */

/* ---- the full pass over blocks [b0, b1) ------------------------------------------------ */

/* The first least of the lane minima (a lane that took no score holds +inf and 0; with
 * fewer than 32 patterns the lanes past them see only padding). */
static float reduce_lanes(const float *b, const int32_t *ix, int n_pat, int *pbest) {
  float best = INFINITY;
  int bp = 0, nl = n_pat < 32 ? n_pat : 32;
  for (int k = 0; k < nl; k++)
    if (b[k] < best || (b[k] == best && ix[k] < bp)) best = b[k], bp = ix[k];
  *pbest = bp;
  return best;
}

typedef float (*blocks_fn)(const qg_e8_tables *cb, const float *ay, unsigned negpar, int b0, int b1, int *pbest);

static float blocks_scalar(const qg_e8_tables *cb, const float *ay, unsigned negpar, int b0, int b1, int *pbest) {
  const qg_e8_host *h = cb->host;
  const uint32_t *pen = h->pen + (size_t)negpar * (size_t)cb->n_pad;
  float lb[32];
  int32_t li[32];
  for (int k = 0; k < 32; k++) lb[k] = INFINITY, li[k] = 0;
  for (int base = 32 * b0; base < 32 * b1; base += 32) {
    float dot[32], mn[32];
    for (int k = 0; k < 32; k++) dot[k] = 0.0f, mn[k] = INFINITY;
    for (int j = 0; j < 8; j++) {
      const float *aj = cb->pat_at + (size_t)j * (size_t)cb->n_pad + (size_t)base;
      for (int k = 0; k < 32; k++) {
        float t = aj[k] * ay[j];
        dot[k] += t;
        mn[k] = t < mn[k] ? t : mn[k];
      }
    }
    for (int k = 0; k < 32; k++) {
      float s = h->norm[base + k] - 2.0f * dot[k] + (pen[base + k] ? 4.0f * mn[k] : 0.0f);
      if (s < lb[k]) lb[k] = s, li[k] = base + k;
    }
  }
  return reduce_lanes(lb, li, cb->n_pat, pbest);
}

#ifdef E8S_X86
/* SSE2 (every x86-64): 8 registers of 4 lanes; min_ps(t, m) is `t < m ? t : m`. */
static float blocks_sse2(const qg_e8_tables *cb, const float *ay, unsigned negpar, int b0, int b1, int *pbest) {
  const qg_e8_host *h = cb->host;
  const uint32_t *pen = h->pen + (size_t)negpar * (size_t)cb->n_pad;
  const __m128 two = _mm_set1_ps(2.0f), four = _mm_set1_ps(4.0f);
  const __m128i step = _mm_set1_epi32(32);
  __m128 lb[8];
  __m128i li[8], idx[8];
  for (int r = 0; r < 8; r++) {
    int i0 = 32 * b0 + 4 * r;
    lb[r] = _mm_set1_ps(INFINITY), li[r] = _mm_setzero_si128();
    idx[r] = _mm_setr_epi32(i0, i0 + 1, i0 + 2, i0 + 3);
  }
  for (int base = 32 * b0; base < 32 * b1; base += 32) {
    __m128 d[8], m[8];
    for (int r = 0; r < 8; r++) d[r] = _mm_setzero_ps(), m[r] = _mm_set1_ps(INFINITY);
    for (int j = 0; j < 8; j++) {
      const float *aj = cb->pat_at + (size_t)j * (size_t)cb->n_pad + (size_t)base;
      __m128 yj = _mm_set1_ps(ay[j]);
      for (int r = 0; r < 8; r++) {
        __m128 t = _mm_mul_ps(_mm_loadu_ps(aj + 4 * r), yj);
        d[r] = _mm_add_ps(d[r], t);
        m[r] = _mm_min_ps(t, m[r]);
      }
    }
    for (int r = 0; r < 8; r++) {
      __m128 pm = _mm_castsi128_ps(_mm_loadu_si128((const __m128i *)(pen + base + 4 * r)));
      __m128 s = _mm_sub_ps(_mm_loadu_ps(h->norm + base + 4 * r), _mm_mul_ps(two, d[r]));
      s = _mm_add_ps(s, _mm_and_ps(pm, _mm_mul_ps(four, m[r])));
      __m128 lt = _mm_cmplt_ps(s, lb[r]);
      __m128i lti = _mm_castps_si128(lt);
      lb[r] = _mm_or_ps(_mm_and_ps(lt, s), _mm_andnot_ps(lt, lb[r]));
      li[r] = _mm_or_si128(_mm_and_si128(lti, idx[r]), _mm_andnot_si128(lti, li[r]));
      idx[r] = _mm_add_epi32(idx[r], step);
    }
  }
  float b[32];
  int32_t ix[32];
  for (int r = 0; r < 8; r++) _mm_storeu_ps(b + 4 * r, lb[r]), _mm_storeu_si128((__m128i *)(ix + 4 * r), li[r]);
  return reduce_lanes(b, ix, cb->n_pat, pbest);
}

/* AVX2: 4 registers of 8 lanes. */
__attribute__((target("avx2"))) static float blocks_avx2(const qg_e8_tables *cb, const float *ay, unsigned negpar,
                                                         int b0, int b1, int *pbest) {
  const qg_e8_host *h = cb->host;
  const uint32_t *pen = h->pen + (size_t)negpar * (size_t)cb->n_pad;
  const __m256 two = _mm256_set1_ps(2.0f), four = _mm256_set1_ps(4.0f);
  const __m256i step = _mm256_set1_epi32(32);
  __m256 lb[4];
  __m256i li[4], idx[4];
  for (int r = 0; r < 4; r++) {
    int i0 = 32 * b0 + 8 * r;
    lb[r] = _mm256_set1_ps(INFINITY), li[r] = _mm256_setzero_si256();
    idx[r] = _mm256_setr_epi32(i0, i0 + 1, i0 + 2, i0 + 3, i0 + 4, i0 + 5, i0 + 6, i0 + 7);
  }
  for (int base = 32 * b0; base < 32 * b1; base += 32) {
    __m256 d[4], m[4];
    for (int r = 0; r < 4; r++) d[r] = _mm256_setzero_ps(), m[r] = _mm256_set1_ps(INFINITY);
    for (int j = 0; j < 8; j++) {
      const float *aj = cb->pat_at + (size_t)j * (size_t)cb->n_pad + (size_t)base;
      __m256 yj = _mm256_set1_ps(ay[j]);
      for (int r = 0; r < 4; r++) {
        __m256 t = _mm256_mul_ps(_mm256_loadu_ps(aj + 8 * r), yj);
        d[r] = _mm256_add_ps(d[r], t);
        m[r] = _mm256_min_ps(t, m[r]);
      }
    }
    for (int r = 0; r < 4; r++) {
      __m256 pm = _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(pen + base + 8 * r)));
      __m256 s = _mm256_sub_ps(_mm256_loadu_ps(h->norm + base + 8 * r), _mm256_mul_ps(two, d[r]));
      s = _mm256_add_ps(s, _mm256_and_ps(pm, _mm256_mul_ps(four, m[r])));
      __m256 lt = _mm256_cmp_ps(s, lb[r], _CMP_LT_OQ);
      lb[r] = _mm256_blendv_ps(lb[r], s, lt);
      li[r] = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(li[r]), _mm256_castsi256_ps(idx[r]), lt));
      idx[r] = _mm256_add_epi32(idx[r], step);
    }
  }
  float b[32];
  int32_t ix[32];
  for (int r = 0; r < 4; r++) _mm256_storeu_ps(b + 8 * r, lb[r]), _mm256_storeu_si256((__m256i *)(ix + 8 * r), li[r]);
  return reduce_lanes(b, ix, cb->n_pat, pbest);
}
#endif

static blocks_fn blocks_of(int isa) {
#ifdef E8S_X86
  if (isa == QG_E8_ISA_AVX2) return blocks_avx2;
  if (isa == QG_E8_ISA_SSE2) return blocks_sse2;
#endif
  (void)isa;
  return blocks_scalar;
}

static int best_isa(void) {
#ifdef E8S_X86
  return __builtin_cpu_supports("avx2") ? QG_E8_ISA_AVX2 : QG_E8_ISA_SSE2;
#else
  return QG_E8_ISA_SCALAR;
#endif
}

/* ---- the pruned search ------------------------------------------------------------------ */

/* Pattern p's score by the reference's operations. */
static inline float score_of(const qg_e8_tables *cb, const float *ay, unsigned negpar, int p) {
  const qg_e8_host *h = cb->host;
  const float *at = cb->pat_at + p;
  size_t np = (size_t)cb->n_pad;
  float dot = 0.0f, mn = INFINITY;
  for (int j = 0; j < 8; j++) {
    float t = at[(size_t)j * np] * ay[j];
    dot += t;
    mn = t < mn ? t : mn;
  }
  return h->norm[p] - 2.0f * dot + (h->pen[negpar * np + (size_t)p] ? 4.0f * mn : 0.0f);
}

/* (s, p) into the running first minimum (bs, bp). */
static inline void take(float s, int p, float *bs, int *bp) {
  if (s < *bs || (s == *bs && p < *bp)) *bs = s, *bp = p;
}

static inline void cswap(uint64_t *k, int a, int b) { /* descending */
  uint64_t x = k[a], y = k[b];
  k[a] = x > y ? x : y;
  k[b] = x > y ? y : x;
}

typedef struct {
  const qg_e8_tables *cb;
  const float *ay;
  unsigned negpar;
  blocks_fn blocks;
  float sy[8];
  int ord[8]; /* sy[i] = ay[ord[i]] */
  float bs;
  int bp;
} prune_ctx;

/* Class c's candidates into the running minimum: its sorted member, or every block that
 * holds a member when the bound cannot exclude the others. 0: the member is missing
 * (cannot happen for a complete class; the caller then runs the full pass). */
static int visit(prune_ctx *x, const qg_e8_class *q, double lb) {
  if (q->complete) {
    uint32_t key = 0;
    for (int i = 0; i < 8; i++) key |= (uint32_t)q->d[i] << (4 * x->ord[i]);
    int p = qg_e8_host_find(x->cb, key);
    if (p < 0) return 0;
    take(score_of(x->cb, x->ay, x->negpar, p), p, &x->bs, &x->bp);
    double g = INFINITY;
    for (int t = 0; t < 7; t++)
      if (q->steps >> t & 1) {
        double v = (q->a[t] - q->a[t + 1]) * ((double)x->sy[t] - (double)x->sy[t + 1]);
        g = v < g ? v : g;
      }
    /* (1 - 2^-40): g's own rounding in double */
    if (2.0 * g * (1.0 - 0x1p-40) > (double)x->bs - lb) return 1;
  }
  int p;
  float s = x->blocks(x->cb, x->ay, x->negpar, q->blk0, q->blk1, &p);
  take(s, p, &x->bs, &x->bp);
  return 1;
}

/* 1 with the result in (*best, *pbest); 0 when the full pass must decide. */
static int pruned(const qg_e8_tables *cb, const float *ay, unsigned negpar, blocks_fn blocks, float *best,
                  int *pbest) {
  const qg_e8_host *h = cb->host;
  if (!h->n_cls) return 0;
  prune_ctx x = {.cb = cb, .ay = ay, .negpar = negpar, .blocks = blocks, .bs = INFINITY, .bp = 0};
  /* |y| sorted: the float's bits (|y| >= +0 orders as an integer) over the coordinate */
  uint64_t k[8];
  for (int j = 0; j < 8; j++) {
    uint32_t b;
    memcpy(&b, &ay[j], 4);
    k[j] = (uint64_t)b << 3 | (uint64_t)j;
  }
  cswap(k, 0, 2), cswap(k, 1, 3), cswap(k, 4, 6), cswap(k, 5, 7);
  cswap(k, 0, 4), cswap(k, 1, 5), cswap(k, 2, 6), cswap(k, 3, 7);
  cswap(k, 0, 1), cswap(k, 2, 3), cswap(k, 4, 5), cswap(k, 6, 7);
  cswap(k, 2, 4), cswap(k, 3, 5);
  cswap(k, 1, 4), cswap(k, 3, 6);
  cswap(k, 1, 2), cswap(k, 3, 4), cswap(k, 5, 6);
  for (int i = 0; i < 8; i++) {
    uint32_t b = (uint32_t)(k[i] >> 3);
    memcpy(&x.sy[i], &b, 4);
    x.ord[i] = (int)(k[i] & 7);
  }
  if (!(x.sy[0] <= 1e15f)) return 0;
  double lb[MAX_CLASSES], lbmin = INFINITY;
  int cmin = 0;
  for (int c = 0; c < h->n_cls; c++) {
    const qg_e8_class *q = &h->cls[c];
    double m = 0;
    for (int i = 0; i < 8; i++) m += q->a[i] * (double)x.sy[i];
    double flip = q->half && (q->par ^ negpar) ? 4.0 * q->a[7] * (double)x.sy[7] : 0.0;
    lb[c] = q->nrm - 2.0 * m + flip - (0x1p-16 * (q->nrm + 2.0 * m) + 1e-30);
    if (lb[c] < lbmin) lbmin = lb[c], cmin = c;
  }
  if (!visit(&x, &h->cls[cmin], lbmin)) return 0;
  for (int c = 0; c < h->n_cls; c++)
    if (c != cmin && lb[c] <= (double)x.bs && !visit(&x, &h->cls[c], lb[c])) return 0;
  *best = x.bs, *pbest = x.bp;
  return 1;
}

/* ---- entry points ----------------------------------------------------------------------- */

float qg_e8_search_scores_isa(int isa, int use_pruned, const qg_e8_tables *cb, const float *ay, unsigned negpar,
                              int *pbest, int *used_full) {
  blocks_fn f = blocks_of(isa);
  float best;
  if (use_pruned && pruned(cb, ay, negpar, f, &best, pbest)) {
    if (used_full) *used_full = 0;
    return best;
  }
  if (used_full) *used_full = 1;
  return f(cb, ay, negpar, 0, cb->n_pad / 32, pbest);
}

float qg_e8_search_scores_host(const qg_e8_tables *cb, const float *ay, unsigned negpar, int *pbest) {
  return qg_e8_search_scores_isa(best_isa(), 1, cb, ay, negpar, pbest, NULL);
}

int qg_e8_search_isas(void) {
  int m = 1 << QG_E8_ISA_SCALAR;
#ifdef E8S_X86
  m |= 1 << QG_E8_ISA_SSE2;
  if (__builtin_cpu_supports("avx2")) m |= 1 << QG_E8_ISA_AVX2;
#endif
  return m;
}

const char *qg_e8_search_isa(void) {
  int i = best_isa();
  return i == QG_E8_ISA_AVX2 ? "avx2" : i == QG_E8_ISA_SSE2 ? "sse2" : "scalar";
}

/* ---- building the host tables --------------------------------------------------------- */

void qg_e8_host_free(qg_e8_host *h) {
  if (!h) return;
  free(h->norm), free(h->pen), free(h->hash), free(h->cls);
  free(h);
}

static int cmp_desc_u8(const void *a, const void *b) { return (int)*(const uint8_t *)b - (int)*(const uint8_t *)a; }

qg_status qg_e8_host_build(const qg_e8_tables *cb, qg_e8_host **out) {
  int n = cb->n_pat, np = cb->n_pad, hb = 4;
  while ((1 << hb) < 4 * n) hb++;
  qg_e8_host *h = calloc(1, sizeof *h);
  if (h) {
    h->norm = malloc(sizeof(float) * (size_t)np);
    h->pen = calloc(2 * (size_t)np, sizeof(uint32_t));
    h->hash = malloc(sizeof(uint32_t) * 2 * ((size_t)1 << hb));
    h->cls = calloc(MAX_CLASSES, sizeof *h->cls);
  }
  if (!h || !h->norm || !h->pen || !h->hash || !h->cls) {
    qg_e8_host_free(h);
    return qg_fail(QG_ERR_NOMEM, "e8 codebook: out of memory (host search tables)");
  }
  for (int i = 0; i < np; i++) h->norm[i] = i < n ? cb->pat_norm[i] : INFINITY;
  for (int i = 0; i < n; i++)
    for (unsigned q = 0; q < 2; q++) h->pen[q * (size_t)np + (size_t)i] = cb->pat_half[i] && (cb->pat_par[i] ^ q) ? ~0u : 0u;
  h->hash_bits = hb;
  for (size_t s = 0; s < ((size_t)1 << hb); s++) h->hash[2 * s] = 0, h->hash[2 * s + 1] = UINT32_MAX;
  for (int i = 0; i < n; i++) {
    uint32_t s = qg_e8_hash_slot(cb->keys[i], hb);
    while (h->hash[2 * s + 1] != UINT32_MAX) s = (s + 1) & ((1u << hb) - 1);
    h->hash[2 * s] = cb->keys[i], h->hash[2 * s + 1] = (uint32_t)cb->key_pat[i];
  }
  /* Classes by the sorted pattern; members counted against the distinct permutations,
   * 8! / prod(multiplicity!). */
  int nc = 0, counts[MAX_CLASSES] = {0};
  for (int i = 0; i < n && nc >= 0; i++) {
    uint8_t d[8];
    memcpy(d, cb->pat + 8 * (size_t)i, 8);
    qsort(d, 8, 1, cmp_desc_u8);
    int c = 0;
    while (c < nc && memcmp(h->cls[c].d, d, 8)) c++;
    if (c == nc) {
      if (nc == MAX_CLASSES) {
        nc = -1; /* too many: no pruning */
        break;
      }
      qg_e8_class *q = &h->cls[nc++];
      memcpy(q->d, d, 8);
      q->half = cb->pat_half[i], q->par = cb->pat_par[i];
      q->blk0 = i / 32, q->nrm = (double)cb->pat_norm[i];
      for (int t = 0; t < 8; t++) q->a[t] = 0.5 * d[t];
      for (int t = 0; t < 7; t++)
        if (d[t] > d[t + 1]) q->steps |= (uint8_t)(1u << t);
    }
    counts[c]++;
    h->cls[c].blk1 = i / 32 + 1;
  }
  h->n_cls = nc > 0 ? nc : 0;
  for (int c = 0; c < h->n_cls; c++) {
    qg_e8_class *q = &h->cls[c];
    double perms = 40320;
    for (int t = 0, run = 1; t < 8; t++, run++)
      if (t == 7 || q->d[t] != q->d[t + 1]) {
        for (int r = 2; r <= run; r++) perms /= r;
        run = 0;
      }
    q->complete = counts[c] == (int)perms;
  }
  *out = h;
  return QG_OK;
}
