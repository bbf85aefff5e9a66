/* E8 nearest-point decoding and sign-orbit codebooks (see e8.h). */
#include "quant/e8.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "quant/e8_host.h"
#include "quant/e8_search.h"

/* The encoder is shared with the device (quant/e8_core.h); the host pads the tables to
 * whole blocks of 32 patterns and replaces the core's pattern search and key lookup with
 * its own (quant/e8_search.c: the same results, bit for bit). */
#define E8_CHUNK QG_E8_HOST_CHUNK
#define QG_E8_FN static inline
#define QG_E8_POPC __builtin_popcount
#define QG_E8_CHUNK E8_CHUNK
#define QG_E8_SCORES qg_e8_search_scores_host
#define QG_E8_LOOKUP host_lookup
static inline int host_lookup(const qg_e8_tables *cb, const float *z, unsigned *neg);
#include "quant/e8_core.h"

/* qg_e8c_lookup_point with the hash. */
static inline int host_lookup(const qg_e8_tables *cb, const float *z, unsigned *neg) {
  uint32_t key = 0;
  *neg = 0;
  for (int j = 0; j < 8; j++) {
    float a = fabsf(2.0f * z[j]);
    if (a > 15.0f) return -1;
    key |= (uint32_t)(uint8_t)a << (4 * j);
    if (z[j] < 0) *neg |= 1u << j;
  }
  return qg_e8_host_find(cb, key);
}

_Static_assert(QG_E8_BALL == QG_E8CB_BALL && QG_E8_E8P == QG_E8CB_E8P, "e8_core's kinds are e8.h's");

/* ---- lattice decoding ---------------------------------------------------------------- */

void qg_d8_nearest(const float x[8], float y[8]) { qg_e8c_d8_nearest(x, y); }

void qg_e8_nearest(const float x[8], float y[8]) { qg_e8c_e8_nearest(x, y); }

/* ---- building codebooks -------------------------------------------------------------- */

typedef struct {
  uint8_t d[8];
  int n2; /* sum of d^2 = 4 |a|^2 */
} pattern;

typedef struct {
  pattern *v;
  int n, cap;
  int failed;
} patlist;

static void patlist_push(patlist *l, const uint8_t d[8], int n2) {
  if (l->failed) return;
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 256;
    pattern *v = realloc(l->v, sizeof *v * (size_t)cap);
    if (!v) { l->failed = 1; return; }
    l->v = v, l->cap = cap;
  }
  memcpy(l->v[l->n].d, d, 8);
  l->v[l->n++].n2 = n2;
}

/* All absolute patterns with doubled coordinates of parity `odd` (0: integer, 1: half)
 * and sum of d^2 <= lim; integer patterns also need an even coordinate sum (D8). */
static void enum_patterns(patlist *l, uint8_t *d, int j, int n2, int lim, int odd) {
  if (j == 8) {
    int s = 0;
    for (int k = 0; k < 8; k++) s += d[k];
    if (!odd && (s / 2) % 2) return;
    patlist_push(l, d, n2);
    return;
  }
  for (int v = odd; n2 + v * v <= lim && v <= 15; v += 2) {
    d[j] = (uint8_t)v;
    enum_patterns(l, d, j + 1, n2 + v * v, lim, odd);
  }
}

static uint32_t key_of(const uint8_t d[8]) {
  uint32_t k = 0;
  for (int j = 0; j < 8; j++) k |= (uint32_t)d[j] << (4 * j);
  return k;
}

static int cmp_pattern(const void *a, const void *b) {
  const pattern *x = a, *y = b;
  if (x->n2 != y->n2) return x->n2 < y->n2 ? -1 : 1;
  uint32_t kx = key_of(x->d), ky = key_of(y->d);
  return (kx > ky) - (kx < ky);
}

static int cmp_u32pair(const void *a, const void *b) {
  uint32_t x = ((const uint32_t *)a)[0], y = ((const uint32_t *)b)[0];
  return (x > y) - (x < y);
}

void qg_e8_codebook_free(qg_e8_codebook *cb) {
  free(cb->pat), free(cb->pat_at), free(cb->pat_norm), free(cb->pat_half);
  free(cb->pat_par), free(cb->pat_nnz), free(cb->pat_off), free(cb->keys);
  free(cb->key_pat), free(cb->entries);
  qg_e8_host_free(cb->host);
  memset(cb, 0, sizeof *cb);
}

/* Entries one pattern contributes (before the e8p shift doubles them). */
static uint32_t orbit_size(const pattern *p) {
  if (p->d[0] & 1) return 128;
  int nnz = 0;
  for (int j = 0; j < 8; j++) nnz += p->d[j] != 0;
  return 1u << nnz;
}

/* Fills the per-pattern tables, the sorted key index and the entry table. */
static qg_status finish_codebook(qg_e8_codebook *cb, const pattern *pats, int n) {
  cb->n_pat = n;
  cb->pat = malloc(sizeof *cb->pat * (size_t)n);
  cb->n_pad = (n + E8_CHUNK - 1) / E8_CHUNK * E8_CHUNK;
  cb->pat_at = calloc(8 * (size_t)cb->n_pad, sizeof(float)); /* padding: zero patterns */
  cb->pat_norm = malloc(sizeof(float) * (size_t)n);
  cb->pat_half = malloc((size_t)n);
  cb->pat_par = malloc((size_t)n);
  cb->pat_nnz = malloc((size_t)n);
  cb->pat_off = malloc(sizeof(uint32_t) * (size_t)n);
  uint32_t *pairs = malloc(sizeof(uint32_t) * 2 * (size_t)n);
  cb->keys = malloc(sizeof(uint32_t) * (size_t)n);
  cb->key_pat = malloc(sizeof(int32_t) * (size_t)n);
  if (!cb->pat || !cb->pat_at || !cb->pat_norm || !cb->pat_half || !cb->pat_par ||
      !cb->pat_nnz || !cb->pat_off || !pairs || !cb->keys || !cb->key_pat) {
    free(pairs);
    qg_e8_codebook_free(cb);
    return qg_fail(QG_ERR_NOMEM, "e8 codebook: out of memory (%d patterns)", n);
  }
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    const pattern *p = &pats[i];
    int s = 0, nnz = 0;
    for (int j = 0; j < 8; j++) {
      cb->pat[i][j] = p->d[j];
      cb->pat_at[(size_t)j * (size_t)cb->n_pad + (size_t)i] = 0.5f * (float)p->d[j];
      s += p->d[j];
      nnz += p->d[j] != 0;
    }
    cb->pat_norm[i] = 0.25f * (float)p->n2;
    cb->pat_half[i] = p->d[0] & 1;
    /* Half pattern: the signed sum is sum|a| - 2 sum_{minus}|a|, and each 2|a_j| is odd,
     * so it is even exactly when (#minus) has the parity of sum|a| = s/2. */
    cb->pat_par[i] = (uint8_t)((s / 2) & 1);
    cb->pat_nnz[i] = (uint8_t)nnz;
    cb->pat_off[i] = (uint32_t)off;
    off += cb->kind == QG_E8CB_E8P ? 256 : orbit_size(p);
    pairs[2 * i] = key_of(p->d);
    pairs[2 * i + 1] = (uint32_t)i;
  }
  qsort(pairs, (size_t)n, 2 * sizeof(uint32_t), cmp_u32pair);
  for (int i = 0; i < n; i++) cb->keys[i] = pairs[2 * i], cb->key_pat[i] = (int32_t)pairs[2 * i + 1];
  free(pairs);
  if (off > (1u << QG_E8CB_MAX_INDEX_BITS)) {
    qg_e8_codebook_free(cb);
    return qg_fail(QG_ERR_INPUT, "e8 codebook: %llu entries exceed 2^%d",
                   (unsigned long long)off, QG_E8CB_MAX_INDEX_BITS);
  }
  cb->size = (uint32_t)off;
  int bits = 0;
  while ((1ull << bits) < off) bits++;
  cb->index_bits = bits;
  cb->entries = malloc((size_t)off * 8);
  if (!cb->entries) {
    qg_e8_codebook_free(cb);
    return qg_fail(QG_ERR_NOMEM, "e8 codebook: out of memory (%llu entries)",
                   (unsigned long long)off);
  }
  cb->t = (qg_e8_tables){.kind = (int)cb->kind, .n_pat = n, .n_pad = cb->n_pad, .size = cb->size,
                         .pat_at = cb->pat_at, .pat_norm = cb->pat_norm, .pat_half = cb->pat_half,
                         .pat_par = cb->pat_par, .pat = &cb->pat[0][0], .pat_off = cb->pat_off,
                         .keys = cb->keys, .key_pat = cb->key_pat, .entries = cb->entries};
  qg_status hs = qg_e8_host_build(&cb->t, &cb->host);
  if (hs) {
    qg_e8_codebook_free(cb);
    return hs;
  }
  cb->t.host = cb->host;
  /* Enumerate every entry through the same index arithmetic the decoder inverts. */
  for (int i = 0; i < n; i++) {
    uint32_t m = cb->kind == QG_E8CB_E8P ? 256 : orbit_size(&pats[i]);
    for (uint32_t c = 0; c < m; c++) {
      int8_t *e = cb->entries + ((size_t)cb->pat_off[i] + c) * 8;
      uint32_t signs = cb->kind == QG_E8CB_E8P ? c >> 1 : c;
      int shift = cb->kind == QG_E8CB_E8P ? (c & 1 ? 1 : -1) : 0;
      if (cb->pat_half[i]) {
        int neg0 = (__builtin_popcount(signs) & 1) ^ cb->pat_par[i];
        for (int j = 0; j < 8; j++) {
          int neg = j == 0 ? neg0 : (int)(signs >> (j - 1)) & 1;
          e[j] = (int8_t)((neg ? -2 : 2) * (int)cb->pat[i][j] + shift);
        }
      } else {
        int b = 0;
        for (int j = 0; j < 8; j++) {
          int v = 2 * (int)cb->pat[i][j];
          if (v) v = (signs >> b++) & 1 ? -v : v;
          e[j] = (int8_t)v;
        }
      }
    }
  }
  return QG_OK;
}

qg_status qg_e8_codebook_ball(double r2, qg_e8_codebook *cb) {
  memset(cb, 0, sizeof *cb);
  if (!(r2 >= 2 && r2 <= 30))
    return qg_fail(QG_ERR_INPUT, "e8 ball codebook: radius^2 %g outside [2, 30]", r2);
  cb->kind = QG_E8CB_BALL;
  cb->r2 = r2;
  patlist l = {0};
  uint8_t d[8];
  int lim = (int)floor(4 * r2 + 1e-9);
  enum_patterns(&l, d, 0, 0, lim, 0);
  enum_patterns(&l, d, 0, 0, lim, 1);
  if (l.failed) {
    free(l.v);
    return qg_fail(QG_ERR_NOMEM, "e8 ball codebook: out of memory");
  }
  /* Ordered by norm, so small indices are the likely ones (helps entropy coders). */
  qsort(l.v, (size_t)l.n, sizeof *l.v, cmp_pattern);
  uint64_t total = 0;
  for (int i = 0; i < l.n; i++) total += orbit_size(&l.v[i]);
  if (total > (1u << QG_E8CB_MAX_INDEX_BITS)) {
    free(l.v);
    return qg_fail(QG_ERR_INPUT, "e8 ball codebook: radius^2 %g gives %llu points (max 2^%d)",
                   r2, (unsigned long long)total, QG_E8CB_MAX_INDEX_BITS);
  }
  qg_status s = finish_codebook(cb, l.v, l.n);
  free(l.v);
  return s;
}

/* Points of E8 with |v|^2 <= r2, counted through the patterns. */
static uint64_t ball_count(int r2) {
  patlist l = {0};
  uint8_t d[8];
  enum_patterns(&l, d, 0, 0, 4 * r2, 0);
  enum_patterns(&l, d, 0, 0, 4 * r2, 1);
  uint64_t t = 0;
  for (int i = 0; i < l.n; i++) t += orbit_size(&l.v[i]);
  if (l.failed) t = UINT64_MAX;
  free(l.v);
  return t;
}

qg_status qg_e8_codebook_for_bits(double bits, qg_e8_codebook *cb) {
  memset(cb, 0, sizeof *cb);
  if (!(bits >= 1 && bits * 8 <= QG_E8CB_MAX_INDEX_BITS))
    return qg_fail(QG_ERR_INPUT, "e8 ball codebook: %g bits/weight outside [1, %g]", bits,
                   QG_E8CB_MAX_INDEX_BITS / 8.0);
  uint64_t cap = 1ull << (int)floor(8 * bits + 1e-9);
  int r2 = 2; /* E8 norms are even: grow the ball one shell at a time */
  while (r2 + 2 <= 30 && ball_count(r2 + 2) <= cap) r2 += 2;
  return qg_e8_codebook_ball(r2, cb);
}

qg_status qg_e8_codebook_e8p(qg_e8_codebook *cb) {
  memset(cb, 0, sizeof *cb);
  cb->kind = QG_E8CB_E8P;
  cb->r2 = 12;
  patlist l = {0};
  uint8_t d[8];
  enum_patterns(&l, d, 0, 0, 40, 1); /* |a|^2 <= 10: the 227 patterns of D8 + ½ */
  /* 29 of the 56 patterns with five 3/2's and three ½'s: the first 29 sets of ½
   * positions {i < j < k} in lexicographic order. All 56 are permutations of each other,
   * so which 29 is a convention; QuIP# fixes its own list. */
  int added = 0;
  for (int i = 0; i < 8 && added < 29; i++)
    for (int j = i + 1; j < 8 && added < 29; j++)
      for (int k = j + 1; k < 8 && added < 29; k++) {
        for (int m = 0; m < 8; m++) d[m] = (m == i || m == j || m == k) ? 1 : 3;
        patlist_push(&l, d, 48);
        added++;
      }
  if (l.failed || l.n != 256) {
    free(l.v);
    return qg_fail(l.failed ? QG_ERR_NOMEM : QG_ERR_INTERNAL, "e8p codebook: %d patterns", l.n);
  }
  qsort(l.v, (size_t)l.n, sizeof *l.v, cmp_pattern);
  qg_status s = finish_codebook(cb, l.v, l.n);
  free(l.v);
  return s;
}

static qg_e8_codebook g_e8p, g_ball1, g_ball2;
static int g_ok_e8p, g_ok_ball1, g_ok_ball2;
static pthread_once_t g_once_e8p = PTHREAD_ONCE_INIT, g_once_b1 = PTHREAD_ONCE_INIT,
                      g_once_b2 = PTHREAD_ONCE_INIT;
static void init_e8p(void) { g_ok_e8p = qg_e8_codebook_e8p(&g_e8p) == QG_OK; }
static void init_b1(void) { g_ok_ball1 = qg_e8_codebook_ball(2, &g_ball1) == QG_OK; }
static void init_b2(void) { g_ok_ball2 = qg_e8_codebook_ball(10, &g_ball2) == QG_OK; }

const qg_e8_codebook *qg_e8_codebook_get(const char *name) {
  if (!strcmp(name, "e8p")) {
    pthread_once(&g_once_e8p, init_e8p);
    return g_ok_e8p ? &g_e8p : NULL;
  }
  if (!strcmp(name, "ball1")) {
    pthread_once(&g_once_b1, init_b1);
    return g_ok_ball1 ? &g_ball1 : NULL;
  }
  if (!strcmp(name, "ball2")) {
    pthread_once(&g_once_b2, init_b2);
    return g_ok_ball2 ? &g_ball2 : NULL;
  }
  return NULL;
}

/* ---- encoding ------------------------------------------------------------------------ */

static inline int use_avx2(void) {
#if QG_E8_HOST_AVX2
  return __builtin_cpu_supports("avx2");
#else
  return 0;
#endif
}

uint32_t qg_e8_encode_search(const qg_e8_codebook *cb, const float x[8], float *d2) {
  float v[8], d;
  uint32_t i;
  for (int j = 0; j < 8; j++) v[j] = isfinite(x[j]) ? x[j] : 0.0f;
#if QG_E8_HOST_AVX2
  if (use_avx2()) i = qg_e8_host_encode_search_avx2(&cb->t, v, &d);
  else
#endif
    i = qg_e8c_encode_search(&cb->t, v, &d);
  if (d2) *d2 = d;
  return i;
}

uint32_t qg_e8_encode(const qg_e8_codebook *cb, const float x[8], float *d2) {
  float d;
  uint32_t i;
#if QG_E8_HOST_AVX2
  if (use_avx2()) i = qg_e8_host_encode_avx2(&cb->t, x, &d);
  else
#endif
    i = qg_e8c_encode(&cb->t, x, &d);
  if (d2) *d2 = d;
  return i;
}
