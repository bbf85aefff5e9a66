/* io/qgz_rows.c: stored row orders round-trip at exactly their counted bytes, within a
 * byte a row of log2(rows!), corrupt entries are rejected, and the orders found are
 * permutations (greedy nearest neighbour finds rows planted in pairs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "io/qgz_rows.h"
#include "tests/testlib.h"

static uint64_t rs = 0x2545f4914f6cdd1dull;
static uint64_t rnd(void) { return rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17; }

static void shuffle(uint32_t *o, int64_t n) {
  for (int64_t i = 0; i < n; i++) o[i] = (uint32_t)i;
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)(rnd() % (uint64_t)(i + 1));
    uint32_t t = o[i];
    o[i] = o[j], o[j] = t;
  }
}

static int is_perm(const uint32_t *o, int64_t n) {
  uint8_t *seen = calloc((size_t)n + 1, 1);
  int ok = 1;
  for (int64_t i = 0; i < n && ok; i++) ok = o[i] < (uint64_t)n && !seen[o[i]]++;
  free(seen);
  return ok;
}

static void test_order_roundtrip(void **st) {
  (void)st;
  static const int64_t sizes[] = {1, 2, 3, 7, 8, 9, 255, 256, 257, 1000, 4096};
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    int64_t n = sizes[k];
    uint32_t *o = malloc((size_t)n * sizeof *o), *r = malloc((size_t)n * sizeof *r);
    shuffle(o, n);
    qg_buf b;
    qg_buf_init(&b);
    assert_int_equal(qg_rows_order_write(o, n, &b), QG_OK);
    assert_int_equal(b.n, qg_rows_order_bytes(n));
    double lf = 0; /* log2(n!) */
    for (int64_t i = 2; i <= n; i++) lf += log2((double)i);
    assert_true((double)b.n * 8 >= lf && (double)b.n <= lf / 8 + (double)n / 8 + 1);
    size_t pos = 0;
    assert_int_equal(qg_rows_order_read(b.p ? b.p : (const uint8_t *)"", b.n, &pos, n, r), QG_OK);
    assert_int_equal(pos, b.n);
    assert_memory_equal(o, r, (size_t)n * sizeof *o);
    if (b.n) { /* truncated */
      pos = 0;
      assert_int_equal(qg_rows_order_read(b.p, b.n - 1, &pos, n, r), QG_ERR_INPUT);
    }
    free(o), free(r), qg_buf_free(&b);
  }
  /* three rows: entry 0 in 2 bits may say 3, which is not one of 3 choices */
  uint8_t bad[] = {0x03};
  uint32_t r[3];
  size_t pos = 0;
  assert_int_equal(qg_rows_order_read(bad, 1, &pos, 3, r), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "choices"));
}

static void test_orders_found(void **st) {
  (void)st;
  const int64_t rows = 40, cols = 32;
  uint32_t *s = malloc((size_t)(rows * cols) * sizeof *s), o[40], p[40];
  /* rows 2k and 2k+1 are copies with one code changed; then the rows are shuffled */
  uint32_t *base = malloc((size_t)(rows * cols) * sizeof *base);
  for (int64_t r = 0; r < rows; r += 2)
    for (int64_t c = 0; c < cols; c++) base[r * cols + c] = base[(r + 1) * cols + c] = (uint32_t)(rnd() % 64);
  for (int64_t r = 1; r < rows; r += 2) base[r * cols + (r % cols)] ^= 1;
  shuffle(p, rows);
  qg_rows_apply(base, rows, cols, p, s, 0);
  /* apply then undo is the identity */
  uint32_t *u = malloc((size_t)(rows * cols) * sizeof *u);
  qg_rows_apply(s, rows, cols, p, u, 1);
  assert_memory_equal(u, base, (size_t)(rows * cols) * sizeof *u);
  assert_int_equal(qg_rows_by_spread(s, rows, cols, 32, o), QG_OK);
  assert_true(is_perm(o, rows));
  assert_int_equal(qg_rows_greedy(s, rows, cols, 32, o), QG_OK);
  assert_true(is_perm(o, rows));
  /* each planted pair is adjacent in the greedy order at least most of the time */
  int adj = 0;
  for (int64_t k = 0; k + 1 < rows; k++) adj += p[o[k]] / 2 == p[o[k + 1]] / 2;
  print_message("greedy order: %d of %lld pairs adjacent\n", adj, (long long)(rows / 2));
  assert_true(adj >= rows / 2 - 4);
  free(s), free(base), free(u);
}

/* The orders are functions of their input alone, whichever threads compute them at once
 * (the rans writer runs streams side by side): two matrices sorted by spread and greedy
 * order on two threads, 40 times each, against the same calls made one after another. */
enum { CR = 1500, CC = 24, CN = 2 };
static uint32_t *conc_sym[CN], conc_ref[CN][2][CR];
static _Atomic int conc_bad;

static void conc_task(void *v, int64_t k, int thread) {
  (void)v, (void)thread;
  uint32_t o[CR];
  for (int rep = 0; rep < 40; rep++) {
    if (qg_rows_by_spread(conc_sym[k], CR, CC, 32, o) || memcmp(o, conc_ref[k][0], sizeof o)) conc_bad = 1;
    if (rep % 8 == 0 && (qg_rows_greedy(conc_sym[k], CR, CC, 32, o) || memcmp(o, conc_ref[k][1], sizeof o))) conc_bad = 1;
  }
}

static void test_orders_on_threads(void **st) {
  (void)st;
  qg_threads_request(2);
  for (int k = 0; k < CN; k++) {
    conc_sym[k] = malloc(sizeof(uint32_t) * CR * CC);
    for (int64_t i = 0; i < CR * CC; i++) {
      int64_t r = i / CC;
      uint32_t spread = (uint32_t)(1 + (r * (k ? 7 : 13)) % 29); /* the two matrices' rows rank differently */
      conc_sym[k][i] = 32 + (uint32_t)(rnd() % (2 * spread + 1)) - spread;
    }
    assert_int_equal(qg_rows_by_spread(conc_sym[k], CR, CC, 32, conc_ref[k][0]), QG_OK);
    assert_int_equal(qg_rows_greedy(conc_sym[k], CR, CC, 32, conc_ref[k][1]), QG_OK);
    assert_true(is_perm(conc_ref[k][0], CR));
  }
  assert_true(memcmp(conc_ref[0][0], conc_ref[1][0], sizeof conc_ref[0][0]) != 0);
  conc_bad = 0;
  qg_parallel_for(CN, conc_task, NULL);
  assert_int_equal(conc_bad, 0);
  for (int k = 0; k < CN; k++) free(conc_sym[k]);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_order_roundtrip), cmocka_unit_test(test_orders_found),
                                     cmocka_unit_test(test_orders_on_threads)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
