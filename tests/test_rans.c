/* io/rans.c: round trips over sizes and distributions, the frequency normaliser against a
 * brute-force minimum, coded size against the order-0 entropy bound, cost == real size,
 * and rejection of corrupt tables and payloads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/rans.h"
#include "tests/testlib.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return rng_state;
}
static double urand(void) { return (double)(rnd() >> 11) / 9007199254740992.0; }

/* A rounded Gaussian clamped to [0, nsym): the shape of int-k weight codes. */
static void gaussian_codes(uint32_t *s, size_t n, int nsym, double sigma) {
  for (size_t i = 0; i < n; i++) {
    double u1 = urand() + 1e-300, u2 = urand();
    double g = sqrt(-2 * log(u1)) * cos(6.283185307179586 * u2);
    long v = lround(nsym / 2.0 - 0.5 + g * sigma);
    s[i] = (uint32_t)(v < 0 ? 0 : v >= nsym ? nsym - 1 : v);
  }
}

static void roundtrip(const uint32_t *s, size_t n, int nsym, int pb) {
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_rans_compress(s, n, nsym, pb, &b), QG_OK);
  size_t cost;
  assert_int_equal(qg_rans_cost(s, n, nsym, pb, &cost), QG_OK);
  assert_int_equal(cost, b.n);
  uint32_t *d = malloc((n + 1) * sizeof *d);
  size_t used = 0;
  assert_int_equal(qg_rans_decompress(b.p, b.n, &used, d, n, (uint32_t)nsym), QG_OK);
  assert_int_equal(used, b.n);
  if (n) assert_memory_equal(d, s, n * sizeof *s);
  free(d);
  qg_buf_free(&b);
}

static void test_roundtrip_sizes(void **st) {
  (void)st;
  static const size_t sizes[] = {0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 33, 255, 1001, 4097, 65537};
  uint32_t *s = malloc(65537 * sizeof *s);
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    size_t n = sizes[k];
    for (int pb = QG_RANS_MIN_BITS; pb <= QG_RANS_MAX_BITS; pb += 2) {
      for (size_t i = 0; i < n; i++) s[i] = (uint32_t)(rnd() % 64); /* uniform */
      roundtrip(s, n, 64, pb);
      gaussian_codes(s, n, 64, 2.0); /* skewed, rare tails */
      roundtrip(s, n, 64, pb);
      for (size_t i = 0; i < n; i++) s[i] = (rnd() % 1000) ? 7 : (uint32_t)(rnd() % 256); /* very skewed */
      roundtrip(s, n, 256, pb);
      for (size_t i = 0; i < n; i++) s[i] = 3; /* one symbol: zero payload */
      roundtrip(s, n, 4, pb);
    }
    for (size_t i = 0; i < n; i++) s[i] = (uint32_t)(rnd() % 4096); /* the largest alphabet */
    roundtrip(s, n, 4096, 0);
  }
  free(s);
}

/* Exhaustive minimum of sum -c_s log2 f_s over f_s >= 1 summing to M for three symbols. */
static void test_normaliser_is_optimal(void **st) {
  (void)st;
  const uint32_t M = 1u << QG_RANS_MIN_BITS;
  static const uint64_t cases[][3] = {{1, 1, 1}, {1000000, 3, 1}, {5, 7, 11}, {1, 1, 9999999}, {123456, 654321, 2}};
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    const uint64_t *k = cases[c];
    double best = INFINITY;
    for (uint32_t a = 1; a + 2 <= M; a++) {
      double ca = -(double)k[0] * log2((double)a / M);
      for (uint32_t b = 1; a + b + 1 <= M; b++) {
        uint32_t d = M - a - b;
        double v = ca - (double)k[1] * log2((double)b / M) - (double)k[2] * log2((double)d / M);
        if (v < best) best = v;
      }
    }
    qg_rans_table t;
    assert_int_equal(qg_rans_table_build(k, 3, QG_RANS_MIN_BITS, &t), QG_OK);
    assert_int_equal(t.freq[0] + t.freq[1] + t.freq[2], M);
    assert_true(t.freq[0] >= 1 && t.freq[1] >= 1 && t.freq[2] >= 1);
    double got = qg_rans_cross_entropy_bits(&t, k, 3);
    assert_true(got <= best * (1 + 1e-12) + 1e-9);
    qg_rans_table_free(&t);
  }
}

/* Against a slower exact method on larger alphabets: from all ones, add units one at a
 * time where the marginal gain is largest (optimal for a separable concave objective). */
static void test_normaliser_matches_greedy(void **st) {
  (void)st;
  const int pb = QG_RANS_MIN_BITS;
  const uint32_t M = 1u << pb;
  uint64_t cnt[200];
  uint32_t f[200];
  for (int trial = 0; trial < 20; trial++) {
    int k = 2 + (int)(rnd() % 199);
    for (int s = 0; s < k; s++) {
      uint64_t r = rnd();
      cnt[s] = (r & 3) == 0 ? 1 + (r >> 8) % 3 : (r & 3) == 1 ? 1 + (r >> 8) % 100000 : 1 + (r >> 8) % 1000;
      f[s] = 1;
    }
    for (uint32_t u = (uint32_t)k; u < M; u++) {
      int b = 0;
      double bg = -1;
      for (int s = 0; s < k; s++) {
        double g = (double)cnt[s] * log2((double)(f[s] + 1) / f[s]);
        if (g > bg) bg = g, b = s;
      }
      f[b]++;
    }
    double ref = 0;
    for (int s = 0; s < k; s++) ref -= (double)cnt[s] * log2((double)f[s] / M);
    qg_rans_table t;
    assert_int_equal(qg_rans_table_build(cnt, k, pb, &t), QG_OK);
    double got = qg_rans_cross_entropy_bits(&t, cnt, k);
    assert_true(got <= ref * (1 + 1e-12) + 1e-9);
    qg_rans_table_free(&t);
  }
}

/* The normaliser as first written: a linear scan per unit move, O(k^2). The heap version
 * in io/rans.c must give the same table, tie-breaks included. */
static double ref_up(uint64_t c, uint32_t f) { return (double)c * log2((double)(f + 1) / f); }
static double ref_dn(uint64_t c, uint32_t f) { return f > 1 ? (double)c * log2((double)f / (f - 1)) : INFINITY; }
static void scan_normalise(const uint64_t *counts, int nsym, int pb, uint32_t *freq) {
  const uint32_t M = 1u << pb;
  uint64_t total = 0;
  for (int s = 0; s < nsym; s++) total += counts[s];
  int64_t total_f = 0;
  for (int s = 0; s < nsym; s++) {
    freq[s] = 0;
    if (!counts[s]) continue;
    uint64_t f = (uint64_t)((double)counts[s] * M / (double)total);
    freq[s] = (uint32_t)(f < 1 ? 1 : f > M ? M : f);
    total_f += freq[s];
  }
  while (total_f != (int64_t)M) {
    int best = -1;
    double bv = 0;
    for (int s = 0; s < nsym; s++) {
      if (!counts[s]) continue;
      double v = total_f < (int64_t)M ? ref_up(counts[s], freq[s]) : -ref_dn(counts[s], freq[s]);
      if (best < 0 || v > bv) best = s, bv = v;
    }
    if (total_f < (int64_t)M) freq[best]++, total_f++;
    else freq[best]--, total_f--;
  }
  for (int iter = 0; iter < 4 * nsym + 16; iter++) {
    int up = -1, dn = -1;
    double gu = 0, ld = INFINITY;
    for (int s = 0; s < nsym; s++) {
      if (!counts[s]) continue;
      double g = ref_up(counts[s], freq[s]), l = ref_dn(counts[s], freq[s]);
      if (up < 0 || g > gu) up = s, gu = g;
      if (l < ld) dn = s, ld = l;
    }
    if (up < 0 || dn < 0 || up == dn || !(gu > ld * (1 + 1e-12))) break;
    freq[up]++, freq[dn]--;
  }
}

static void test_normaliser_heap_equals_scan(void **st) {
  (void)st;
  static uint64_t cnt[QG_RANS_MAX_ALPHABET];
  static uint32_t ref[QG_RANS_MAX_ALPHABET];
  int trials = 0;
  for (int trial = 0; trial < 300; trial++) {
    int pb = QG_RANS_MIN_BITS + trial % (QG_RANS_MAX_BITS - QG_RANS_MIN_BITS + 1);
    int k = trial < 100 ? 1 + (int)(rnd() % 64) : trial < 250 ? 1 + (int)(rnd() % 1024) : QG_RANS_MAX_ALPHABET;
    if (k > (1 << pb)) k = 1 << pb;
    int shape = trial % 5;
    for (int s = 0; s < k; s++) {
      uint64_t r = rnd();
      cnt[s] = shape == 0 ? 1 + r % 3                                  /* many ties, tiny counts */
               : shape == 1 ? (r & 7) ? 0 : 1 + (r >> 8) % 1000000     /* sparse, wide range */
               : shape == 2 ? (uint64_t)(1e6 * exp(-0.5 * (s - k / 2.0) * (s - k / 2.0) / (k / 8.0 + 1)))  /* codes */
               : shape == 3 ? 1000                                     /* all equal */
                            : 1 + (r >> 8) % (1u << (r % 30));          /* heavy tailed */
    }
    cnt[k - 1] += 1; /* the alphabet is k */
    scan_normalise(cnt, k, pb, ref);
    qg_rans_table t;
    assert_int_equal(qg_rans_table_build(cnt, k, pb, &t), QG_OK);
    assert_int_equal(t.nsym, k);
    if (memcmp(t.freq, ref, (size_t)k * sizeof *ref)) fail_msg("trial %d (k %d, %d bits, shape %d): tables differ", trial, k, pb, shape);
    trials++;
    qg_rans_table_free(&t);
  }
  assert_int_equal(trials, 300);
}

/* A large skewed stream codes within 0.05 % of its order-0 entropy plus its table, the
 * flush bytes and the length varint. */
static void test_near_entropy(void **st) {
  (void)st;
  const size_t n = 1u << 21;
  uint32_t *s = malloc(n * sizeof *s);
  static const double sig[] = {1.5, 4.0, 12.0};
  for (int k = 0; k < 3; k++) {
    gaussian_codes(s, n, 64, sig[k]);
    uint64_t cnt[64];
    assert_int_equal(qg_rans_count(s, n, 64, cnt), QG_OK);
    double h = qg_entropy_bits(cnt, 64) / 8;
    qg_rans_table t;
    assert_int_equal(qg_rans_table_build(cnt, 64, 16, &t), QG_OK);
    size_t pay;
    assert_int_equal(qg_rans_payload_cost(&t, s, n, &pay), QG_OK);
    double overhead = (double)qg_rans_table_bytes(&t) + QG_RANS_FLUSH_BYTES + qg_varint_len(pay);
    size_t total;
    assert_int_equal(qg_rans_cost(s, n, 64, 0, &total), QG_OK);
    print_message("sigma %.1f: entropy %.0f B, payload %zu B (+%.4f %%), self-contained %zu B\n", sig[k], h, pay,
                  100.0 * ((double)pay - QG_RANS_FLUSH_BYTES - h) / h, total);
    assert_true((double)total <= (h + 0) * 1.0005 + overhead);
    assert_true((double)pay >= h); /* no coder beats the entropy: a sanity check on h */
    qg_rans_table_free(&t);
  }
  free(s);
}

static void test_table_compact_roundtrip(void **st) {
  (void)st;
  uint64_t cnt[300] = {0};
  for (int i = 0; i < 300; i += 3) cnt[i] = 1 + rnd() % 100000;
  cnt[299] = 5;
  for (int pb = QG_RANS_MIN_BITS; pb <= QG_RANS_MAX_BITS; pb++) {
    qg_rans_table t, r;
    assert_int_equal(qg_rans_table_build(cnt, 300, pb, &t), QG_OK);
    qg_buf b;
    qg_buf_init(&b);
    qg_rans_table_write(&t, &b);
    assert_int_equal(b.n, qg_rans_table_bytes(&t));
    size_t used;
    assert_int_equal(qg_rans_table_read(b.p, b.n, &used, &r), QG_OK);
    assert_int_equal(used, b.n);
    assert_int_equal(r.nsym, t.nsym);
    assert_memory_equal(r.freq, t.freq, (size_t)t.nsym * sizeof *t.freq);
    /* compact: under 3 bytes per present symbol at 16 bits */
    assert_true(b.n < 3 * (size_t)t.present + 4);
    qg_rans_table_free(&t), qg_rans_table_free(&r), qg_buf_free(&b);
  }
}

static void test_corrupt_rejected(void **st) {
  (void)st;
  const size_t n = 5000;
  uint32_t *s = malloc(n * sizeof *s), *d = malloc(n * sizeof *d);
  gaussian_codes(s, n, 64, 3.0);
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_rans_compress(s, n, 64, 14, &b), QG_OK);
  size_t used;
  /* every truncation fails */
  for (size_t cut = 0; cut < b.n; cut++) assert_int_equal(qg_rans_decompress(b.p, cut, &used, d, n, 64), QG_ERR_INPUT);
  /* flipping any payload bit fails or, when it passes the checks, is caught by comparison;
   * a flip must never decode "successfully" to the original. Table bits may still give a
   * valid table, so count failures only over the rANS bytes. */
  qg_rans_table t;
  size_t tb;
  assert_int_equal(qg_rans_table_read(b.p, b.n, &tb, &t), QG_OK);
  qg_rans_table_free(&t);
  int failed = 0, tried = 0;
  for (size_t i = tb + 2; i < b.n; i += 7, tried++) {
    b.p[i] ^= 0x10;
    if (qg_rans_decompress(b.p, b.n, &used, d, n, 64) != QG_OK) failed++;
    else assert_memory_not_equal(d, s, n * sizeof *s);
    b.p[i] ^= 0x10;
  }
  assert_true(failed >= tried * 9 / 10);
  /* a decoder expecting more symbols reads past the end */
  uint32_t *d2 = malloc((n + 64) * sizeof *d2);
  assert_int_equal(qg_rans_decompress(b.p, b.n, &used, d2, n + 64, 64), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "past its end"));
  /* the alphabet the caller allows */
  assert_int_equal(qg_rans_decompress(b.p, b.n, &used, d, n, 32), QG_ERR_INPUT);
  /* bad precision, frequencies over the total */
  uint8_t bad1[] = {3, 20, 0, 0};
  assert_int_equal(qg_rans_table_read(bad1, sizeof bad1, &used, &t), QG_ERR_INPUT);
  uint8_t bad2[] = {3, 12, 0x0d | (0 << 5), 0xff, 0xff, 0xff}; /* symbol 0 has 13 bits = 2^12 */
  assert_int_equal(qg_rans_table_read(bad2, sizeof bad2, &used, &t), QG_ERR_INPUT);
  /* a symbol outside the table on encode */
  uint64_t cnt[4] = {1, 0, 1, 0};
  assert_int_equal(qg_rans_table_build(cnt, 4, 12, &t), QG_OK);
  uint32_t x[3] = {0, 1, 2};
  size_t c;
  assert_int_equal(qg_rans_payload_cost(&t, x, 3, &c), QG_ERR_INPUT);
  qg_rans_table_free(&t);
  free(s), free(d), free(d2), qg_buf_free(&b);
}

/* E8P-shaped 16-bit symbols: a skewed high part (pattern, by norm) and low bytes that
 * depend on it a little. */
static void e8p_like(uint32_t *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    uint32_t hi = (uint32_t)(fabs(urand() * urand() * urand()) * 256) & 0xff;
    uint32_t lo = (uint32_t)(rnd() & 0xff);
    if (hi < 4) lo &= 0x3f; /* a class of high values with a narrower low byte */
    s[i] = hi << 8 | lo;
  }
}

/* Alphabets over 4096 (wide symbols): the self-contained stream round-trips, its cost is
 * its size, and it codes within 0.05 % of the entropy of (high part) + (low byte) plus two
 * tables, flush bytes and the varint. */
static void test_wide_streams(void **st) {
  (void)st;
  static const size_t sizes[] = {0, 1, 2, 3, 5, 1001, 200000};
  uint32_t *s = malloc(200000 * sizeof *s);
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    size_t n = sizes[k];
    e8p_like(s, n);
    roundtrip(s, n, 65536, 0);
    roundtrip(s, n, 65536, 13);
    for (size_t i = 0; i < n; i++) s[i] = (uint32_t)(rnd() % 8192); /* 13 bits */
    roundtrip(s, n, 8192, 0);
    for (size_t i = 0; i < n; i++) s[i] = 0x1234; /* one symbol */
    roundtrip(s, n, 65536, 0);
  }
  const size_t n = 200000;
  e8p_like(s, n);
  uint64_t ch[256] = {0}, cl[256] = {0};
  for (size_t i = 0; i < n; i++) ch[s[i] >> 8]++, cl[s[i] & 0xff]++;
  double h = (qg_entropy_bits(ch, 256) + qg_entropy_bits(cl, 256)) / 8;
  size_t total;
  assert_int_equal(qg_rans_cost(s, n, 65536, 0, &total), QG_OK);
  print_message("wide: entropy of the parts %.0f B, stream %zu B\n", h, total);
  assert_true((double)total <= h * 1.0005 + 2 * 3 * 256 + QG_RANS_FLUSH_BYTES + 4);
  assert_true((double)total >= h);
  /* the low byte's table per high class: lo[1] for high values < 4 */
  uint64_t c0[256] = {0}, c1[256] = {0};
  for (size_t i = 0; i < n; i++) ((s[i] >> 8) < 4 ? c1 : c0)[s[i] & 0xff]++;
  qg_rans_table th, t0, t1;
  assert_int_equal(qg_rans_table_build(ch, 256, 14, &th), QG_OK);
  assert_int_equal(qg_rans_table_build(c0, 256, 14, &t0), QG_OK);
  assert_int_equal(qg_rans_table_build(c1, 256, 14, &t1), QG_OK);
  uint8_t lc[256] = {1, 1, 1, 1};
  qg_rans_wide w = {.hi = {&th}, .lo = {&t0, &t1}, .lc = lc}, w1 = {.hi = {&th}, .lo = {&t0}};
  size_t pay, pay1;
  assert_int_equal(qg_rans_wide_payload_cost(&w, s, n, &pay), QG_OK);
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_rans_wide_encode(&w, s, n, &b), QG_OK);
  assert_int_equal(b.n, pay);
  uint32_t *d = malloc(n * sizeof *d);
  assert_int_equal(qg_rans_wide_decode(&w, b.p, b.n, d, n), QG_OK);
  assert_memory_equal(d, s, n * sizeof *s);
  /* t0 lacks no low byte, but t1 lacks those over 0x3f: a class map that sends a high
   * value >= 4 to t1 cannot code the stream */
  lc[4] = 1;
  assert_int_equal(qg_rans_wide_payload_cost(&w, s, n, &pay1), QG_ERR_INPUT);
  lc[4] = 0;
  /* the classes pay: about 2 bits of each code under high values < 4 */
  assert_int_equal(qg_rans_wide_payload_cost(&w1, s, n, &pay1), QG_OK);
  assert_true(pay < pay1);
  /* truncations and a missing table fail cleanly */
  for (size_t cut = 0; cut < b.n; cut += 1 + cut / 8) assert_int_equal(qg_rans_wide_decode(&w, b.p, cut, d, n), QG_ERR_INPUT);
  qg_rans_wide wm = {.hi = {&th}, .lo = {&t0, NULL}, .lc = lc};
  assert_int_equal(qg_rans_wide_decode(&wm, b.p, b.n, d, n), QG_ERR_INPUT);
  /* a symbol over 16 bits */
  s[7] = 1u << 16;
  assert_int_equal(qg_rans_wide_payload_cost(&w1, s, n, &pay1), QG_ERR_INPUT);
  assert_int_equal(qg_rans_cost(s, n, 1 << 17, 0, &total), QG_ERR_INPUT);
  qg_rans_table_free(&th), qg_rans_table_free(&t0), qg_rans_table_free(&t1);
  qg_buf_free(&b), free(s), free(d);
}

/* Lagged contexts: a matrix whose rows repeat with noise codes smaller with the code
 * above as context (lag = row length) than with the code before it (lag 1), and both
 * round-trip. */
static void test_lag_contexts(void **st) {
  (void)st;
  const size_t cols = 64, rows = 200, n = rows * cols;
  const int nsym = 64;
  uint32_t *s = malloc(n * sizeof *s), *d = malloc(n * sizeof *d);
  gaussian_codes(s, cols, nsym, 6.0);
  for (size_t i = cols; i < n; i++) s[i] = (rnd() % 4) ? s[i - cols] : (uint32_t)(rnd() % nsym);
  size_t pay[2];
  for (int k = 0; k < 2; k++) {
    size_t lag = k ? cols : 1;
    uint64_t *c = calloc((size_t)QG_RANS_NCTX * nsym, sizeof *c);
    assert_int_equal(qg_rans_lag_count(s, n, nsym, nsym / 2, lag, c), QG_OK);
    qg_rans_table t[QG_RANS_NCTX];
    for (int x = 0; x < QG_RANS_NCTX; x++) assert_int_equal(qg_rans_table_build(c + (size_t)x * nsym, nsym, 14, &t[x]), QG_OK);
    assert_int_equal(qg_rans_lag_payload_cost(t, nsym / 2, lag, s, n, &pay[k]), QG_OK);
    qg_buf b;
    qg_buf_init(&b);
    assert_int_equal(qg_rans_lag_encode(t, nsym / 2, lag, s, n, &b), QG_OK);
    assert_int_equal(b.n, pay[k]);
    assert_int_equal(qg_rans_lag_decode(t, nsym / 2, lag, b.p, b.n, d, n), QG_OK);
    assert_memory_equal(d, s, n * sizeof *s);
    if (lag == 1) { /* the same as the previous-symbol functions */
      size_t p2;
      assert_int_equal(qg_rans_ctx_payload_cost(t, nsym / 2, NULL, s, n, &p2), QG_OK);
      assert_int_equal(p2, pay[k]);
    }
    for (int x = 0; x < QG_RANS_NCTX; x++) qg_rans_table_free(&t[x]);
    free(c), qg_buf_free(&b);
  }
  print_message("lag 1: %zu B, lag %zu: %zu B\n", pay[0], cols, pay[1]);
  assert_true(pay[1] < pay[0]);
  free(s), free(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wide_streams), cmocka_unit_test(test_lag_contexts),
      cmocka_unit_test(test_roundtrip_sizes),     cmocka_unit_test(test_normaliser_is_optimal), cmocka_unit_test(test_normaliser_matches_greedy),
      cmocka_unit_test(test_normaliser_heap_equals_scan),
      cmocka_unit_test(test_near_entropy),        cmocka_unit_test(test_table_compact_roundtrip),
      cmocka_unit_test(test_corrupt_rejected),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
