/* io/qgz_cols.c through the .qgz container: the transposed stream mode (8) of a rANS .qgz
 * chosen by bytes where it pays (rows along a smooth curve in random order, like an
 * embedding: the greedy row order makes each column a slow signal) and smaller than the
 * file without it, exact round trips with and without a stored row order, and corrupt
 * transposed streams (wrong length, a code outside the alphabet, a row order out of
 * range, the mode on a section that is not a code matrix) rejected naming tensor and
 * section. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/qgz.h"
#include "io/qgz_cols.h"
#include "io/qgz_rans.h"
#include "io/rans.h"
#include "tests/testlib.h"

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { return rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17; }

/* rows x cols 8-bit codes: row r is a point t_r (uniform, so rows come in random order) on
 * a curve, column c a sinusoid of t of its own amplitude and phase, plus +-1 noise on a
 * fifth of the codes; f16 scales. */
static void embedding(qg_qtensor *t, int64_t rows, int64_t cols) {
  qg_qtensor_init(t);
  t->name = strdup("tok_emb.weight"), t->method = strdup("rowwise"), t->options = strdup("bits=8");
  t->ndim = 2, t->shape[0] = rows, t->shape[1] = cols, t->rows = rows, t->cols = cols;
  void *d;
  assert_int_equal(qg_qtensor_add(t, "codes", QG_SEC_CODES, 8, rows * cols, &d), QG_OK);
  uint32_t *c = d;
  double *amp = malloc((size_t)cols * sizeof *amp), *ph = malloc((size_t)cols * sizeof *ph);
  for (int64_t j = 0; j < cols; j++) amp[j] = 10 + (double)(rnd() % 50), ph[j] = (double)(rnd() % 628) / 100;
  for (int64_t r = 0; r < rows; r++) {
    double u = (double)(rnd() % 100000) / 100000;
    for (int64_t j = 0; j < cols; j++) {
      long v = lround(127 + amp[j] * sin(6.283 * u * (1 + j % 3) + ph[j]));
      if (rnd() % 5 == 0) v += rnd() % 2 ? 1 : -1;
      c[r * cols + j] = (uint32_t)v;
    }
  }
  free(amp), free(ph);
  assert_int_equal(qg_qtensor_add(t, "scales", QG_SEC_F16, 0, rows, &d), QG_OK);
  for (int64_t j = 0; j < rows; j++) ((uint16_t *)d)[j] = (uint16_t)(0x2000 + (rnd() % 300));
}

static void encode_one(const qg_qtensor *t, int force, uint8_t **f, size_t *n, qg_qgz_info *info) {
  qg_qgz_rans_force_transposed(force);
  qg_status s = qg_qgz_encode(&t, 1, QG_COMP_RANS, QG_LAYOUT_PACKED, f, n, info);
  qg_qgz_rans_force_transposed(0);
  if (s) fail_msg("%s", qg_last_error());
  assert_int_equal(QG_QGZ_HEADER + info->meta_compressed + info->code_payload + info->code_tables +
                       info->code_stream_headers, *n);
  qg_qgz a;
  if (qg_qgz_read_mem(*f, *n, "c.qgz", &a)) fail_msg("%s", qg_last_error());
  assert_int_equal(a.n, 1);
  for (int k = 0; k < t->nsec; k++) {
    assert_int_equal(a.t[0].sec[k].count, t->sec[k].count);
    size_t es = t->sec[k].kind == QG_SEC_CODES ? 4 : 2;
    assert_memory_equal(a.t[0].sec[k].data, t->sec[k].data, (size_t)t->sec[k].count * es);
  }
  qg_qgz_free(&a);
}

static void test_chosen_where_it_pays(void **st) {
  (void)st;
  qg_qtensor t;
  embedding(&t, 512, 64);
  uint8_t *f[2];
  size_t n[2];
  qg_qgz_info info[2];
  encode_one(&t, 0, &f[0], &n[0], &info[0]);  /* by bytes */
  encode_one(&t, -1, &f[1], &n[1], &info[1]); /* never transposed */
  print_message("transposed: %zu bytes (%d transposed, %d row-ordered, %d inline), without the mode %zu bytes\n", n[0],
                info[0].streams_transposed, info[0].streams_permuted, info[0].streams_inline, n[1]);
  assert_int_equal(info[0].streams_transposed, 1);
  assert_int_equal(info[0].streams_permuted, 1); /* with the greedy order */
  assert_int_equal(info[0].streams_inline, 0);   /* and out of the meta */
  assert_int_equal(info[1].streams_transposed, 0);
  assert_true(n[0] + n[0] / 20 < n[1]); /* at least 5 % smaller */
  /* every truncation fails cleanly */
  for (size_t cut = 0; cut < n[0]; cut += 1 + cut / 16) {
    qg_qgz a;
    qg_wr_u32le(f[0] + 24, (uint32_t)(cut > QG_QGZ_HEADER ? cut - QG_QGZ_HEADER : 0));
    assert_int_not_equal(qg_qgz_read_mem(f[0], cut, "c.qgz", &a), QG_OK);
  }
  free(f[0]), free(f[1]);
  qg_qtensor_free(&t);
}

/* Forced with and without an order, over widths 1..8 and a few shapes: exact round trips. */
static void test_forced_round_trips(void **st) {
  (void)st;
  static const int64_t shapes[][2] = {{2, 1}, {3, 5}, {17, 8}, {64, 33}};
  for (int bits = 1; bits <= 8; bits++)
    for (int sh = 0; sh < 4; sh++)
      for (int force = 1; force <= 2; force++) {
        qg_qtensor t;
        qg_qtensor_init(&t);
        t.name = strdup("blocks.0.mlp.proj.weight"), t.method = strdup("rowwise"), t.options = strdup("");
        int64_t rows = shapes[sh][0], cols = shapes[sh][1];
        t.ndim = 2, t.shape[0] = rows, t.shape[1] = cols, t.rows = rows, t.cols = cols;
        void *d;
        assert_int_equal(qg_qtensor_add(&t, "codes", QG_SEC_CODES, bits, rows * cols, &d), QG_OK);
        for (int64_t j = 0; j < rows * cols; j++) ((uint32_t *)d)[j] = (uint32_t)(rnd() % 3 ? (uint64_t)(j % 5) : rnd()) & ((1u << bits) - 1);
        uint8_t *f;
        size_t n;
        qg_qgz_info info;
        qg_qgz_rans_set_inline(0); /* the stream in the block, as forced */
        encode_one(&t, force, &f, &n, &info);
        qg_qgz_rans_set_inline(1);
        assert_int_equal(info.streams_transposed, 1);
        assert_int_equal(info.streams_permuted, force == 2);
        free(f);
        qg_qtensor_free(&t);
      }
}

/* A 4 x 8 matrix of 2-bit codes, transposed without an order; *cb = where its code block's
 * streams start (after options and placement bits), the rest being [0 shared tables]
 * [0 wide tables][mode 8][varint length][brotli]. */
static void small_matrix(int64_t rows, int64_t cols, uint8_t **f, size_t *n, size_t *cb) {
  qg_qtensor t;
  qg_qtensor_init(&t);
  t.name = strdup("m"), t.method = strdup("rowwise"), t.options = strdup("");
  t.ndim = 2, t.shape[0] = rows, t.shape[1] = cols, t.rows = rows, t.cols = cols;
  void *d;
  assert_int_equal(qg_qtensor_add(&t, "codes", QG_SEC_CODES, 2, rows * cols, &d), QG_OK);
  for (int64_t j = 0; j < rows * cols; j++) ((uint32_t *)d)[j] = (uint32_t)(j % 3);
  qg_qgz_info info;
  qg_qgz_rans_set_inline(0);
  encode_one(&t, 1, f, n, &info);
  qg_qgz_rans_set_inline(1);
  qg_qtensor_free(&t);
  size_t pos = QG_QGZ_HEADER;
  uint64_t mz;
  assert_int_equal(qg_varint_get(*f, *n, &pos, &mz), 0);
  static const uint8_t head[] = {1, 1, 1, 0, 0, QG_QGZ_MODE_COLS}; /* planes, one bit: in the block */
  assert_memory_equal(*f + pos + (size_t)mz, head, sizeof head);
  *cb = pos + (size_t)mz + 3;
}

/* The file of small_matrix(4, 8) with its streams replaced by blk, read: fails naming needle. */
static void expect_error(const uint8_t *blk, size_t bn, const char *needle) {
  uint8_t *f;
  size_t n, cb;
  small_matrix(4, 8, &f, &n, &cb);
  f = realloc(f, cb + bn);
  memcpy(f + cb, blk, bn);
  qg_wr_u32le(f + 24, (uint32_t)(cb + bn - QG_QGZ_HEADER));
  qg_qgz a;
  assert_int_equal(qg_qgz_read_mem(f, cb + bn, "bad.qgz", &a), QG_ERR_INPUT);
  const char *m = qg_last_error();
  print_message("%s\n", m);
  assert_non_null(strstr(m, "bad.qgz"));
  assert_non_null(strstr(m, "tensor 'm', section 'codes'"));
  assert_non_null(strstr(m, needle));
  free(f);
}

/* [0][0][mode][order bytes][varint length][brotli of k bytes, all v] */
static size_t stream_of(uint8_t *blk, uint8_t mode, const uint8_t *ord, size_t on, size_t k, uint8_t v) {
  uint8_t raw[64], *z;
  size_t zn, b = 0;
  memset(raw, 0, sizeof raw);
  for (size_t j = 0; j < k; j++) raw[j] = (uint8_t)(j % 3);
  if (k) raw[k - 1] = v;
  assert_int_equal(qg_compress(QG_COMP_BROTLI, raw, k, &z, &zn), QG_OK);
  blk[b++] = 0, blk[b++] = 0, blk[b++] = mode;
  if (on) memcpy(blk + b, ord, on), b += on; /* ord may be NULL when on is 0 */
  blk[b++] = (uint8_t)zn;
  memcpy(blk + b, z, zn), b += zn;
  free(z);
  return b;
}

static void test_corrupt_streams(void **st) {
  (void)st;
  uint8_t blk[256];
  size_t bn;
  bn = stream_of(blk, QG_QGZ_MODE_COLS, NULL, 0, 31, 0);
  expect_error(blk, bn, "inflates to 31 bytes, not rows x cols = 4 x 8");
  bn = stream_of(blk, QG_QGZ_MODE_COLS, NULL, 0, 33, 0);
  expect_error(blk, bn, "inflates to more than rows x cols = 4 x 8");
  bn = stream_of(blk, QG_QGZ_MODE_COLS, NULL, 0, 32, 7); /* 7 in a 2-bit section */
  expect_error(blk, bn, "code 7 at row 3, column 7: a symbol outside the 2-bit alphabet");
  /* a Lehmer code of 4 rows: 2 + 2 + 1 + 0 bits; entry 1 has 3 choices, here 3 */
  static const uint8_t ord[] = {0x0c};
  bn = stream_of(blk, QG_QGZ_MODE_COLS | QG_QGZ_ROWS_PERMUTED, ord, 1, 32, 0);
  expect_error(blk, bn, "row order entry 1 is 3 of 3 choices");
  bn = stream_of(blk, QG_QGZ_MODE_COLS, NULL, 0, 32, 0);
  blk[3] = (uint8_t)(bn + 10); /* the length runs past the block */
  expect_error(blk, bn, "transposed brotli stream length runs past the block");
  static const uint8_t junk[] = {0, 0, QG_QGZ_MODE_COLS, 4, 0xff, 0xff, 0xff, 0xff};
  expect_error(junk, sizeof junk, "transposed brotli stream is corrupt");
  static const uint8_t mode9[] = {0, 0, QG_QGZ_MODE_COLS + 1, 0};
  expect_error(mode9, sizeof mode9, "unknown stream mode 9");
  /* the mode on a section that is not a code matrix (one row) */
  qg_qtensor t;
  qg_qtensor_init(&t);
  t.name = strdup("v"), t.method = strdup("rowwise"), t.options = strdup("");
  t.ndim = 1, t.shape[0] = 32, t.rows = 1, t.cols = 32;
  void *d;
  assert_int_equal(qg_qtensor_add(&t, "codes", QG_SEC_CODES, 2, 32, &d), QG_OK);
  uint8_t *f;
  size_t n;
  qg_qgz_info info;
  qg_qgz_rans_set_inline(0);
  encode_one(&t, 1, &f, &n, &info);
  qg_qgz_rans_set_inline(1);
  qg_qtensor_free(&t);
  assert_int_equal(info.streams_transposed, 0); /* not eligible, so not forced */
  size_t pos = QG_QGZ_HEADER;
  uint64_t mz;
  assert_int_equal(qg_varint_get(f, n, &pos, &mz), 0);
  size_t cb = pos + (size_t)mz + 3;
  bn = stream_of(blk, QG_QGZ_MODE_COLS, NULL, 0, 32, 0);
  f = realloc(f, cb + bn);
  memcpy(f + cb, blk, bn);
  qg_wr_u32le(f + 24, (uint32_t)(cb + bn - QG_QGZ_HEADER));
  qg_qgz a;
  assert_int_equal(qg_qgz_read_mem(f, cb + bn, "bad.qgz", &a), QG_ERR_INPUT);
  print_message("%s\n", qg_last_error());
  assert_non_null(strstr(qg_last_error(), "tensor 'v', section 'codes'): transposed stream for a section that is not a code matrix"));
  free(f);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_chosen_where_it_pays), cmocka_unit_test(test_forced_round_trips),
                                     cmocka_unit_test(test_corrupt_streams)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
