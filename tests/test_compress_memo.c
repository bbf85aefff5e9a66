/* io/compress_memo.c behind qg_compress: a remembered result is the fresh result, byte
 * for byte; any change of input, compressor or level misses; small inputs are not kept;
 * the oldest results go first at the limit; and whole .qgz artifacts come out the same
 * with the memo warm, cold or off, on two threads (the rans writer's candidates run on
 * the pool). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "io/compress_memo.h"
#include "io/qgz.h"
#include "io/qgz_rans.h"
#include "tests/testlib.h"

static uint64_t rs = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) { return rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17; }

/* n bytes of skewed codes: compressible, and different for every call */
static uint8_t *codes(size_t n) {
  uint8_t *b = malloc(n);
  assert_non_null(b);
  for (size_t i = 0; i < n; i++) {
    int g = 0;
    for (int k = 0; k < 4; k++) g += (int)(rnd() % 16);
    b[i] = (uint8_t)g;
  }
  return b;
}

static void fresh(qg_compressor c, const uint8_t *in, size_t n, uint8_t **z, size_t *zn) {
  size_t keep = 64u << 20;
  qg_memo_set_limit(0); /* off: computed now */
  assert_int_equal(qg_compress(c, in, n, z, zn), QG_OK);
  qg_memo_set_limit(keep);
}

static void check_round_trip(qg_compressor c, const uint8_t *z, size_t zn, const uint8_t *in, size_t n) {
  uint8_t *back = malloc(n);
  assert_int_equal(qg_decompress(c, z, zn, back, n, "memo"), QG_OK);
  assert_memory_equal(back, in, n);
  free(back);
}

static void test_remembered_is_fresh(void **st) {
  (void)st;
  qg_memo_clear();
  qg_memo_set_limit(64u << 20);
  const qg_compressor comp[] = {QG_COMP_BROTLI, QG_COMP_ZSTD, QG_COMP_XZ};
  for (int ci = 0; ci < 3; ci++) {
    size_t n = 50000 + (size_t)(rnd() % 20000);
    uint8_t *in = codes(n), *z0, *z1, *z2, *zf;
    size_t n0, n1, n2, nf;
    qg_memo_stats a = qg_memo_get_stats();
    assert_int_equal(qg_compress(comp[ci], in, n, &z0, &n0), QG_OK);
    qg_memo_stats b = qg_memo_get_stats();
    assert_int_equal(b.misses, a.misses + 1);
    assert_int_equal(qg_compress(comp[ci], in, n, &z1, &n1), QG_OK);
    qg_memo_stats c = qg_memo_get_stats();
    assert_int_equal(c.hits, b.hits + 1);
    fresh(comp[ci], in, n, &zf, &nf);
    assert_int_equal(n1, nf);
    assert_memory_equal(z1, zf, nf);
    assert_int_equal(n0, nf);
    check_round_trip(comp[ci], z1, n1, in, n);
    /* one byte changed: a miss, and the output is that input's */
    in[n / 3] ^= 0x40;
    assert_int_equal(qg_compress(comp[ci], in, n, &z2, &n2), QG_OK);
    assert_int_equal(qg_memo_get_stats().misses, c.misses + 1);
    check_round_trip(comp[ci], z2, n2, in, n);
    free(in), free(z0), free(z1), free(z2), free(zf);
  }
  /* the same input through another compressor or brotli level is another result */
  size_t n = 30000;
  uint8_t *in = codes(n), *zb, *zz, *zq;
  size_t nb, nz, nq;
  assert_int_equal(qg_compress(QG_COMP_BROTLI, in, n, &zb, &nb), QG_OK);
  assert_int_equal(qg_compress(QG_COMP_ZSTD, in, n, &zz, &nz), QG_OK);
  check_round_trip(QG_COMP_ZSTD, zz, nz, in, n);
  uint64_t m = qg_memo_get_stats().misses;
  qg_qgz_set_brotli_quality(1);
  assert_int_equal(qg_compress(QG_COMP_BROTLI, in, n, &zq, &nq), QG_OK);
  qg_qgz_set_brotli_quality(11);
  assert_int_equal(qg_memo_get_stats().misses, m + 1);
  assert_true(nq != nb || memcmp(zq, zb, nb)); /* quality 1 is not quality 11's stream */
  check_round_trip(QG_COMP_BROTLI, zq, nq, in, n);
  free(in), free(zb), free(zz), free(zq);
}

static void test_small_inputs_and_limit(void **st) {
  (void)st;
  qg_memo_clear();
  qg_memo_set_limit(64u << 20);
  uint8_t *in = codes(QG_MEMO_MIN_INPUT - 1), *z;
  size_t zn;
  for (int k = 0; k < 2; k++) assert_int_equal(qg_compress(QG_COMP_BROTLI, in, QG_MEMO_MIN_INPUT - 1, &z, &zn), QG_OK), free(z);
  qg_memo_stats s = qg_memo_get_stats();
  assert_int_equal(s.hits + s.misses, 0);
  assert_int_equal(s.entries, 0);
  free(in);
  /* room for about one output: the second result pushes out the first */
  size_t n = 40000;
  uint8_t *a = codes(n), *b = codes(n), *za, *zb;
  size_t na, nb;
  assert_int_equal(qg_compress(QG_COMP_BROTLI, a, n, &za, &na), QG_OK);
  qg_memo_set_limit(na + na / 4);
  assert_int_equal(qg_memo_get_stats().entries, 1);
  assert_int_equal(qg_compress(QG_COMP_BROTLI, b, n, &zb, &nb), QG_OK);
  s = qg_memo_get_stats();
  assert_int_equal(s.entries, 1);
  assert_int_equal(s.evictions, 1);
  assert_true(s.bytes == nb);
  free(zb);
  assert_int_equal(qg_compress(QG_COMP_BROTLI, b, n, &zb, &nb), QG_OK); /* b is held */
  assert_int_equal(qg_memo_get_stats().hits, s.hits + 1);
  free(za);
  assert_int_equal(qg_compress(QG_COMP_BROTLI, a, n, &za, &na), QG_OK); /* a was dropped */
  assert_int_equal(qg_memo_get_stats().misses, s.misses + 1);
  qg_memo_set_limit(0);
  assert_int_equal(qg_memo_get_stats().entries, 0);
  free(a), free(b), free(za), free(zb);
}

/* A model of 12 tensors of int5/int6/int8 codes (rows with their own spreads, so row
 * orders and column classes have something to find) written as rans. */
#define NT 12
static qg_qtensor T[NT];
static const qg_qtensor *P[NT];

static void build(void) {
  for (int i = 0; i < NT; i++) {
    qg_qtensor *t = &T[i];
    qg_qtensor_init(t);
    char name[64];
    snprintf(name, sizeof name, "blocks.%d.%s.weight", i / 3, i % 3 == 0 ? "attn.c_q" : i % 3 == 1 ? "mlp.fc" : "mlp.proj");
    int bits = i % 3 == 0 ? 6 : i % 3 == 1 ? 5 : 8;
    int64_t rows = 96 + 32 * (i % 3), cols = 128;
    t->name = strdup(name), t->method = strdup("rowwise"), t->options = strdup("bits=6");
    t->ndim = 2, t->shape[0] = rows, t->shape[1] = cols, t->rows = rows, t->cols = cols;
    void *d;
    assert_int_equal(qg_qtensor_add(t, "codes", QG_SEC_CODES, bits, rows * cols, &d), QG_OK);
    uint32_t *c = d, mid = 1u << (bits - 1);
    for (int64_t r = 0; r < rows; r++) {
      double spread = 1 + (double)(rnd() % 8);
      for (int64_t j = 0; j < cols; j++) {
        double g = 0;
        for (int k = 0; k < 4; k++) g += (double)(rnd() % 1000) / 1000.0 - 0.5;
        long v = lround(mid + g * spread * (j % 17 == 0 ? 3 : 1));
        c[r * cols + j] = (uint32_t)(v < 0 ? 0 : v > (long)(2 * mid - 1) ? (long)(2 * mid - 1) : v);
      }
    }
    assert_int_equal(qg_qtensor_add(t, "scales", QG_SEC_F16, 0, rows, &d), QG_OK);
    for (int64_t r = 0; r < rows; r++) ((uint16_t *)d)[r] = (uint16_t)(0x2000 + rnd() % 300);
    P[i] = t;
  }
}

static void test_artifacts_same_warm_cold_off(void **st) {
  (void)st;
  build();
  uint8_t *f[4];
  size_t n[4];
  qg_qgz_info info;
  qg_memo_set_limit(64u << 20);
  qg_memo_clear();
  assert_int_equal(qg_qgz_encode(P, NT, QG_COMP_RANS, QG_LAYOUT_PACKED, &f[0], &n[0], &info), QG_OK); /* cold */
  qg_memo_stats a = qg_memo_get_stats();
  assert_true(a.hits > 0); /* the images tried share streams */
  assert_int_equal(qg_qgz_encode(P, NT, QG_COMP_RANS, QG_LAYOUT_PACKED, &f[1], &n[1], &info), QG_OK); /* warm */
  qg_memo_stats b = qg_memo_get_stats();
  assert_int_equal(b.misses, a.misses); /* nothing recomputed */
  /* one tensor changed: only what holds it misses */
  uint32_t *c = T[4].sec[0].data;
  for (int j = 0; j < 64; j++) c[j] = 16 - c[j] % 8;
  assert_int_equal(qg_qgz_encode(P, NT, QG_COMP_RANS, QG_LAYOUT_PACKED, &f[2], &n[2], &info), QG_OK);
  qg_memo_stats d = qg_memo_get_stats();
  assert_true(d.misses > b.misses && d.hits > b.hits);
  qg_memo_set_limit(0);
  assert_int_equal(qg_qgz_encode(P, NT, QG_COMP_RANS, QG_LAYOUT_PACKED, &f[3], &n[3], &info), QG_OK); /* off */
  assert_int_equal(n[0], n[1]);
  assert_memory_equal(f[0], f[1], n[0]);
  assert_int_equal(n[2], n[3]);
  assert_memory_equal(f[2], f[3], n[2]);
  qg_qgz q;
  assert_int_equal(qg_qgz_read_mem(f[2], n[2], "memo.qgz", &q), QG_OK);
  assert_int_equal(q.n, NT);
  for (int i = 0; i < NT; i++) assert_memory_equal(q.t[i].sec[0].data, T[i].sec[0].data, (size_t)T[i].sec[0].count * 4);
  qg_qgz_free(&q);
  for (int k = 0; k < 4; k++) free(f[k]);
  for (int i = 0; i < NT; i++) qg_qtensor_free(&T[i]);
}

/* Several code matrices whose rows pay for a stored order, written again and again with
 * the memo off on two threads: the streams' candidates (row orders sorted by spread
 * included) run side by side, and every file must be the same bytes and read back. */
static void kinds_of_rows(qg_qtensor *t, int layer, int64_t rows, int64_t cols) {
  qg_qtensor_init(t);
  char name[64];
  snprintf(name, sizeof name, "blocks.%d.mlp.fc.weight", layer);
  t->name = strdup(name), t->method = strdup("rowwise"), t->options = strdup("bits=6");
  t->ndim = 2, t->shape[0] = rows, t->shape[1] = cols, t->rows = rows, t->cols = cols;
  void *d;
  assert_int_equal(qg_qtensor_add(t, "codes", QG_SEC_CODES, 6, rows * cols, &d), QG_OK);
  uint32_t *c = d;
  double *sig = malloc((size_t)(4 * cols) * sizeof *sig);
  for (int64_t j = 0; j < 4 * cols; j++) sig[j] = rnd() % 2 ? 12 : 1;
  for (int64_t r = 0; r < rows; r++) {
    int64_t k = (int64_t)(rnd() % 4);
    double row_gain = 0.5 + (double)(rnd() % 100) / 50.0; /* every row its own spread */
    for (int64_t j = 0; j < cols; j++) {
      double g = 0;
      for (int m = 0; m < 4; m++) g += (double)(rnd() % 1000) / 1000.0 - 0.5;
      long v = lround(31 + g * 1.7 * row_gain * sig[k * cols + j]);
      c[r * cols + j] = (uint32_t)(v < 0 ? 0 : v > 63 ? 63 : v);
    }
  }
  free(sig);
  assert_int_equal(qg_qtensor_add(t, "scales", QG_SEC_F16, 0, rows, &d), QG_OK);
  for (int64_t j = 0; j < rows; j++) ((uint16_t *)d)[j] = (uint16_t)(0x2000 + (rnd() % 300));
}

static void test_parallel_streams_deterministic(void **st) {
  (void)st;
  enum { N = 8 };
  qg_qtensor t[N];
  const qg_qtensor *p[N];
  for (int i = 0; i < N; i++) kinds_of_rows(&t[i], i, 192, 96), p[i] = &t[i];
  qg_memo_set_limit(0);
  qg_qgz_rans_force_transposed(-1); /* the context modes' row orders */
  uint8_t *first = NULL;
  size_t first_n = 0;
  int permuted = 0;
  for (int rep = 0; rep < 6; rep++) {
    uint8_t *f;
    size_t n;
    qg_qgz_info info;
    assert_int_equal(qg_qgz_encode(p, N, QG_COMP_RANS, QG_LAYOUT_PACKED, &f, &n, &info), QG_OK);
    if (!first) {
      first = f, first_n = n, permuted = info.streams_permuted;
      qg_qgz q;
      assert_int_equal(qg_qgz_read_mem(f, n, "rows.qgz", &q), QG_OK);
      for (int i = 0; i < N; i++) assert_memory_equal(q.t[i].sec[0].data, t[i].sec[0].data, (size_t)t[i].sec[0].count * 4);
      qg_qgz_free(&q);
      continue;
    }
    assert_int_equal(n, first_n);
    assert_memory_equal(f, first, n);
    free(f);
  }
  qg_qgz_rans_force_transposed(0);
  qg_memo_set_limit(QG_MEMO_DEFAULT_LIMIT);
  print_message("  %d of %d streams row-ordered, %zu bytes, 6 identical writes\n", permuted, N, first_n);
  assert_true(permuted > 0);
  free(first);
  for (int i = 0; i < N; i++) qg_qtensor_free(&t[i]);
}

int main(void) {
  qg_threads_request(2);
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_remembered_is_fresh), cmocka_unit_test(test_small_inputs_and_limit),
                                     cmocka_unit_test(test_artifacts_same_warm_cold_off),
                                     cmocka_unit_test(test_parallel_streams_deterministic)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
