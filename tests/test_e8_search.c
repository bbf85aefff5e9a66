/* The host's E8 encoder (quant/e8.c, quant/e8_host_avx2.c, quant/e8_search.c) against the
 * reference (quant/e8_core.h as the device compiles it: the exhaustive scalar pattern
 * pass and binary-search lookup, qg_e8_encode_ref): the same index and the same squared
 * distance, bit for bit, on fresh random inputs at every scale the quantizers use, on
 * inputs full of ties (int8-like grids, repeated magnitudes, zeros, half-integers,
 * lattice points and midpoints between entries) and on extreme ones (huge, subnormal,
 * non-finite); and every form of the scoring pass (scalar / SSE2 / AVX2, pruned or full)
 * against the reference pass on the same |y|. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/e8.h"
#include "quant/e8_search.h"
#include "tests/testlib.h"

/* the reference scoring pass itself, for the direct comparison of the forms */
#define QG_E8_FN static inline
#define QG_E8_POPC __builtin_popcount
#define QG_E8_CHUNK 32
#include "quant/e8_core.h"

static long n_checked;

/* Index and distance of the host encoder (both entry points) equal the reference's. */
static void check_one(const qg_e8_codebook *cb, const float *x) {
  float d1, d2;
  uint32_t a = qg_e8_encode(cb, x, &d1), b = qg_e8_encode_ref(cb, x, &d2);
  if (a != b || memcmp(&d1, &d2, sizeof d1)) {
    print_error("encode: x = %a %a %a %a %a %a %a %a: host %u (%a), reference %u (%a)\n", x[0], x[1], x[2], x[3],
                x[4], x[5], x[6], x[7], a, d1, b, d2);
    fail();
  }
  a = qg_e8_encode_search(cb, x, &d1), b = qg_e8_encode_search_ref(cb, x, &d2);
  if (a != b || memcmp(&d1, &d2, sizeof d1)) {
    print_error("encode_search: x = %a ...: host %u (%a), reference %u (%a)\n", x[0], a, d1, b, d2);
    fail();
  }
  n_checked++;
}

/* Every scoring form on y = x - shift against the reference pass. */
static long n_full, n_pruned;
static void check_scores(const qg_e8_codebook *cb, const float *y) {
  float ay[8], y2;
  unsigned neg = qg_e8c_search_prep(y, ay, &y2);
  for (unsigned negpar = 0; negpar < 2; negpar++) { /* both parities, whatever y's signs */
    (void)neg;
    int pr;
    float r = qg_e8c_search_scores(&cb->t, ay, negpar, &pr);
    int isas = qg_e8_search_isas();
    for (int isa = 0; isa < 3; isa++) {
      if (!(isas >> isa & 1)) continue;
      for (int pruned = 0; pruned < 2; pruned++) {
        int p, full;
        float s = qg_e8_search_scores_isa(isa, pruned, &cb->t, ay, negpar, &p, &full);
        if (p != pr || memcmp(&s, &r, sizeof s)) {
          print_error("scores isa %d pruned %d: |y| = %a %a %a %a %a %a %a %a parity %u: %d (%a), reference %d (%a)\n",
                      isa, pruned, ay[0], ay[1], ay[2], ay[3], ay[4], ay[5], ay[6], ay[7], negpar, p, s, pr, r);
          fail();
        }
        if (pruned) n_full += full, n_pruned += !full;
      }
    }
  }
}

static double gauss(uint64_t *s) {
  double u1 = ((double)(qg_test_rand(s) >> 11) + 0.5) / 9007199254740992.0;
  double u2 = ((double)(qg_test_rand(s) >> 11) + 0.5) / 9007199254740992.0;
  return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static const char *const cb_names[] = {"e8p", "ball1", "ball2"};

static void both(const qg_e8_codebook *cb, const float *x) {
  check_one(cb, x);
  float y[8];
  for (int j = 0; j < 8; j++) y[j] = isfinite(x[j]) ? x[j] - 0.25f : 0.0f;
  check_scores(cb, y);
}

/* Gaussian inputs over the scales the scale searches try (0.3 .. 4 units) and beyond. */
static void run_gaussian(const qg_e8_codebook *cb, uint64_t seed, int n) {
  uint64_t rs = seed;
  const float scales[] = {0.05f, 0.3f, 0.6f, 1.0f, 1.04f, 1.5f, 2.0f, 3.0f, 6.0f, 40.0f};
  for (int i = 0; i < n; i++) {
    float x[8], sc = scales[i % 10];
    for (int j = 0; j < 8; j++) x[j] = sc * (float)gauss(&rs);
    both(cb, x);
  }
}

/* Ties: coordinates drawn from small grids (int8 weights over a scale: equal magnitudes
 * within a vector are common), half-integers and integers (rounding ties, lattice
 * points), midpoints of two entries, repeated and zero coordinates, sign patterns. */
static void run_ties(const qg_e8_codebook *cb, uint64_t seed, int n) {
  uint64_t rs = seed;
  float e1[8], e2[8];
  for (int i = 0; i < n; i++) {
    float x[8];
    int kind = i % 6;
    float step = (float)(1 + qg_test_rand(&rs) % 8) * 0.125f;
    for (int j = 0; j < 8; j++) {
      int q = (int)(qg_test_rand(&rs) % 9) - 4;
      switch (kind) {
      case 0: x[j] = (float)q * step; break;                       /* a coarse grid */
      case 1: x[j] = (float)q * 0.5f; break;                       /* half-integers */
      case 2: x[j] = (float)q * 0.25f; break;                      /* quarter grid (E8P's shifts) */
      case 3: x[j] = (float)(q % 2) * 1.5f + (q < 0 ? -0.0f : 0.0f); break; /* few values, signed zeros */
      default: break;
      }
    }
    if (kind == 4) { /* the midpoint of two entries */
      qg_e8_decode(cb, (uint32_t)(qg_test_rand(&rs) % cb->size), e1);
      qg_e8_decode(cb, (uint32_t)(qg_test_rand(&rs) % cb->size), e2);
      for (int j = 0; j < 8; j++) x[j] = 0.5f * (e1[j] + e2[j]);
    }
    if (kind == 5) { /* one magnitude, random signs, a random scale */
      float m = (float)(1 + qg_test_rand(&rs) % 40) * 0.1f;
      for (int j = 0; j < 8; j++) x[j] = qg_test_rand(&rs) & 1 ? m : -m;
    }
    both(cb, x);
  }
}

static void run_extremes(const qg_e8_codebook *cb) {
  const float vals[] = {0.0f, -0.0f, 1e-40f, -1e-45f, FLT_MIN, 0.25f, 0.5f, 0.75f, 7.5f, 1048576.0f, -1048576.5f,
                        2e7f, 1e15f, 1.1e15f, 1e30f, -3e38f, FLT_MAX, -FLT_MAX, INFINITY, -INFINITY, NAN};
  int nv = (int)(sizeof vals / sizeof *vals);
  uint64_t rs = 99;
  for (int i = 0; i < 4000; i++) {
    float x[8];
    for (int j = 0; j < 8; j++) {
      float g = (float)gauss(&rs);
      x[j] = qg_test_rand(&rs) % 3 ? vals[qg_test_rand(&rs) % (uint64_t)nv] : g;
    }
    both(cb, x);
  }
  float same[8];
  for (int k = 0; k < nv; k++) {
    for (int j = 0; j < 8; j++) same[j] = vals[k];
    both(cb, same);
  }
}

static void test_host_encoder_matches_reference(void **st) {
  (void)st;
  print_message("host search: %s\n", qg_e8_search_isa());
  for (int c = 0; c < 3; c++) {
    const qg_e8_codebook *cb = qg_e8_codebook_get(cb_names[c]);
    assert_non_null(cb);
    n_full = n_pruned = 0;
    run_gaussian(cb, 1000 + (uint64_t)c, 30000);
    print_message("%s gaussian: the pruned search decided %ld, the full pass %ld\n", cb_names[c], n_pruned, n_full);
    run_ties(cb, 2000 + (uint64_t)c, 30000);
    run_extremes(cb);
  }
  /* other ball sizes (the cb=ball bits=b codebooks built on demand) */
  const double bits[] = {1.5, 2.5};
  for (int k = 0; k < 2; k++) {
    qg_e8_codebook cb;
    assert_int_equal(qg_e8_codebook_for_bits(bits[k], &cb), QG_OK);
    run_gaussian(&cb, 3000 + (uint64_t)k, 8000);
    run_ties(&cb, 4000 + (uint64_t)k, 8000);
    run_extremes(&cb);
    qg_e8_codebook_free(&cb);
  }
  print_message("%ld inputs, every one the reference's index and distance\n", n_checked);
}

/* The pruned search is exact only if its class tables are right: every pattern in one
 * class, classes are permutation sets, complete ones hold every permutation. */
static void test_host_classes(void **st) {
  (void)st;
  const qg_e8_codebook *cb = qg_e8_codebook_get("e8p");
  const qg_e8_host *h = cb->host;
  assert_int_equal(h->n_cls, 8);
  int incomplete = 0;
  for (int c = 0; c < h->n_cls; c++) incomplete += !h->cls[c].complete;
  assert_int_equal(incomplete, 1); /* E8P's 29 of the 56 norm-12 patterns */
  cb = qg_e8_codebook_get("ball2");
  for (int c = 0; c < cb->host->n_cls; c++) assert_true(cb->host->cls[c].complete);
  /* every key finds its pattern through the hash, and other keys find nothing */
  for (int i = 0; i < cb->n_pat; i++) assert_int_equal(qg_e8_host_find(&cb->t, cb->keys[i]), cb->key_pat[i]);
  assert_int_equal(qg_e8_host_find(&cb->t, 0xFFFFFFFFu), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_host_encoder_matches_reference),
      cmocka_unit_test(test_host_classes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
