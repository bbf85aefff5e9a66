/* io/qgz_rans.c and io/qgz_wide.c through the .qgz container (format version 3): exact
 * round trips of every section kind, the per-stream choices (shared role tables, brotli
 * fallback, wide 16-bit streams), version-1 and version-2 files still read, and corrupt
 * code blocks rejected naming tensor and section. */
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
#include "io/qgz_rans.h"
#include "io/rans.h"
#include "tests/testlib.h"

static uint64_t rs = 88172645463325252ull;
static uint64_t rnd(void) { return rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17; }

#define NT 10
static qg_qtensor T[NT];

/* six layers of one role (Gaussian int6 codes + f16 scales), an all-zero tensor, a
 * periodic tensor (structure beyond order 0: brotli wins), and a 16-bit code section
 * with f32 and raw sections (stays inline) */
static void build(void) {
  for (int i = 0; i < NT; i++) {
    qg_qtensor *t = &T[i];
    qg_qtensor_init(t);
    char name[64];
    snprintf(name, sizeof name, i < 6 ? "blocks.%d.mlp.fc.weight" : "other%d", i);
    t->name = strdup(name), t->method = strdup("rowwise"), t->options = strdup("bits=6");
    t->ndim = 2, t->shape[0] = 64, t->shape[1] = 96, t->rows = 64, t->cols = 96;
    void *d;
    int bits = i == 8 ? 16 : 6;
    assert_int_equal(qg_qtensor_add(t, "codes", QG_SEC_CODES, bits, 64 * 96, &d), QG_OK);
    uint32_t *c = d;
    for (int j = 0; j < 64 * 96; j++) {
      double g = 0;
      for (int k = 0; k < 4; k++) g += (double)(rnd() % 1000) / 1000.0 - 0.5;
      long v = lround(31 + g * 8);
      if (i == 9) v = lround(31 + g * (j % 96 < 24 ? 24 : 1)); /* outlier columns: column contexts pay */
      c[j] = i == 6 ? 0 : i == 7 ? (uint32_t)((j * 7) % 61) : i == 8 ? (uint32_t)(rnd() & 0xffff)
                                                          : (uint32_t)(v < 0 ? 0 : v > 63 ? 63 : v);
    }
    assert_int_equal(qg_qtensor_add(t, "scales", QG_SEC_F16, 0, 64, &d), QG_OK);
    uint16_t *h = d;
    for (int j = 0; j < 64; j++) h[j] = (uint16_t)(0x2000 + (rnd() % 300));
    if (i == 8) {
      assert_int_equal(qg_qtensor_add(t, "norms", QG_SEC_F32, 0, 3, &d), QG_OK);
      ((float *)d)[0] = 1.5f, ((float *)d)[1] = -0.0f, ((float *)d)[2] = 3e-30f;
      assert_int_equal(qg_qtensor_add(t, "data", QG_SEC_RAW, 0, 5, &d), QG_OK);
      memcpy(d, "abcde", 5);
    }
  }
}

static void same(const qg_qgz *a) {
  assert_int_equal(a->n, NT);
  for (int i = 0; i < NT; i++) {
    assert_string_equal(a->t[i].name, T[i].name);
    assert_int_equal(a->t[i].nsec, T[i].nsec);
    for (int k = 0; k < T[i].nsec; k++) {
      const qg_qsection *x = &T[i].sec[k], *y = &a->t[i].sec[k];
      assert_string_equal(x->name, y->name);
      assert_int_equal(x->kind, y->kind);
      assert_int_equal(x->bits, y->bits);
      assert_int_equal(x->count, y->count);
      size_t es = x->kind == QG_SEC_CODES || x->kind == QG_SEC_F32 ? 4 : x->kind == QG_SEC_RAW ? 1 : 2;
      assert_memory_equal(x->data, y->data, (size_t)x->count * es);
    }
  }
}

static const qg_qtensor *P[NT];

static void encode(qg_compressor c, uint8_t **f, size_t *n, qg_qgz_info *info) {
  for (int i = 0; i < NT; i++) P[i] = &T[i];
  assert_int_equal(qg_qgz_encode(P, NT, c, QG_LAYOUT_PACKED, f, n, info), QG_OK);
}

static void test_roundtrip_and_choices(void **st) {
  (void)st;
  uint8_t *f;
  size_t n;
  qg_qgz_info info;
  encode(QG_COMP_RANS, &f, &n, &info);
  assert_int_equal(qg_rd_u16le(f + 4), QG_QGZ_VERSION_WIDE);
  assert_int_equal(info.file_bytes, n);
  /* the split adds up to the file */
  assert_int_equal(QG_QGZ_HEADER + info.meta_compressed + info.code_payload + info.code_tables +
                       info.code_stream_headers, n);
  /* six same-role layers share one table; the periodic tensor goes to brotli */
  assert_true(info.streams_shared >= 5);
  assert_true(info.shared_tables >= 1);
  assert_true(info.streams_brotli >= 1);
  /* the outlier columns: column-class contexts or brotli over the columns */
  assert_true(info.streams_ctx + info.streams_transposed >= 1);
  assert_int_equal(info.streams_own + info.streams_shared + info.streams_brotli + info.streams_ctx + info.streams_wide +
                       info.streams_transposed,
                   NT); /* the 16-bit one too (wide, or brotli for its random codes) */
  qg_qgz a;
  if (qg_qgz_read_mem(f, n, "m.qgz", &a)) fail_msg("%s", qg_last_error());
  same(&a);
  qg_qgz_free(&a);
  /* smaller than brotli-11 over the same tensors */
  uint8_t *fb;
  size_t nb;
  qg_qgz_info ib;
  encode(QG_COMP_BROTLI, &fb, &nb, &ib);
  print_message("rans %zu bytes, brotli-11 %zu bytes\n", n, nb);
  assert_true(n < nb);
  /* version 1 is still read */
  assert_int_equal(qg_rd_u16le(fb + 4), QG_QGZ_VERSION);
  if (qg_qgz_read_mem(fb, nb, "m.qgz", &a)) fail_msg("%s", qg_last_error());
  same(&a);
  qg_qgz_free(&a);
  free(fb);
  /* every truncation fails cleanly */
  for (size_t cut = 0; cut < n; cut += 1 + cut / 16) {
    qg_wr_u32le(f + 24, (uint32_t)(cut > QG_QGZ_HEADER ? cut - QG_QGZ_HEADER : 0));
    assert_int_not_equal(qg_qgz_read_mem(f, cut, "m.qgz", &a), QG_OK);
  }
  free(f);
}

/* One all-zero 2-bit tensor: its code block is [options 1][1 placement bit: 1][0 tables][0 wide tables][mode 0]
 * [table 01 0c][payload 0]. */
static void one_zero_tensor(uint8_t **f, size_t *n, size_t *cb) {
  qg_qtensor t;
  qg_qtensor_init(&t);
  t.name = strdup("w"), t.method = strdup("rowwise"), t.options = strdup("");
  t.ndim = 1, t.shape[0] = 100, t.rows = 1, t.cols = 100;
  void *d;
  assert_int_equal(qg_qtensor_add(&t, "codes", QG_SEC_CODES, 2, 100, &d), QG_OK);
  const qg_qtensor *p = &t;
  assert_int_equal(qg_qgz_encode(&p, 1, QG_COMP_RANS, QG_LAYOUT_PACKED, f, n, NULL), QG_OK);
  qg_qtensor_free(&t);
  size_t pos = QG_QGZ_HEADER;
  uint64_t mz;
  assert_int_equal(qg_varint_get(*f, *n, &pos, &mz), 0);
  /* options (f16 planes), one placement bit (in the block), then the streams' part */
  static const uint8_t head[] = {1, 1, 1};
  assert_memory_equal(*f + pos + (size_t)mz, head, sizeof head);
  *cb = pos + (size_t)mz + sizeof head;
  static const uint8_t want[] = {0, 0, 0, 1, 12, 0}; /* no shared tables, no wide shared tables, mode 0, ... */
  assert_int_equal(*n - *cb, sizeof want);
  assert_memory_equal(*f + *cb, want, sizeof want);
}

static void expect_error(const uint8_t *blk, size_t bn, const char *needle) {
  uint8_t *f;
  size_t n, cb;
  one_zero_tensor(&f, &n, &cb);
  f = realloc(f, cb + bn);
  memcpy(f + cb, blk, bn);
  qg_wr_u32le(f + 24, (uint32_t)(cb + bn - QG_QGZ_HEADER));
  qg_qgz a;
  assert_int_equal(qg_qgz_read_mem(f, cb + bn, "bad.qgz", &a), QG_ERR_INPUT);
  const char *m = qg_last_error();
  print_message("%s\n", m);
  assert_non_null(strstr(m, "bad.qgz"));
  assert_non_null(strstr(m, needle));
  if (strcmp(needle, "trailing") && !strstr(needle, "table count")) assert_non_null(strstr(m, "tensor 'w', section 'codes'"));
  free(f);
}

static void test_corrupt_blocks(void **st) {
  (void)st;
  static const uint8_t mode[] = {0, 0, 9, 1, 12, 0};
  expect_error(mode, sizeof mode, "unknown stream mode 9");
  static const uint8_t wide[] = {0, 0, 6, 1, 1, 1, 1, 0}; /* the wide mode for 2-bit codes */
  expect_error(wide, sizeof wide, "wide stream mode for 2-bit codes");
  static const uint8_t wcount[] = {0, 9}; /* nine wide shared tables in two bytes */
  expect_error(wcount, sizeof wcount, "wide shared-table count");
  static const uint8_t alpha[] = {0, 0, 0, 5, 12, 0, 0, 0, 0}; /* 5 symbols in a 2-bit section */
  expect_error(alpha, sizeof alpha, "outside the 2-bit alphabet");
  static const uint8_t past[] = {0, 0, 0, 2, 12, 0x0c | 0, 0x00, 5, 0}; /* payload length past the end */
  expect_error(past, sizeof past, "past the block");
  static const uint8_t idx[] = {0, 0, 1, 0, 0}; /* shared table 0 of 0 */
  expect_error(idx, sizeof idx, "shared table index");
  static const uint8_t badtab[] = {0, 0, 0, 1, 30, 0}; /* precision 30 */
  expect_error(badtab, sizeof badtab, "precision");
  static const uint8_t trail[] = {0, 0, 0, 1, 12, 0, 9};
  expect_error(trail, sizeof trail, "trailing");
  /* a two-symbol table whose payload is not a valid stream */
  static const uint8_t junk[] = {0, 0, 0, 2, 12, 0x0c, 0x00, 16, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  expect_error(junk, sizeof junk, "rANS payload");
}

/* E8P-shaped 16-bit codes in four layers of one role: skewed high parts (patterns by
 * norm), low bytes uniform but for a few high values, f16 scales. */
static void e8p_tensors(qg_qtensor *w, int nw, int64_t rows, int64_t cols) {
  for (int i = 0; i < nw; i++) {
    qg_qtensor *t = &w[i];
    qg_qtensor_init(t);
    char name[64];
    snprintf(name, sizeof name, "blocks.%d.attn.c_q.weight", i);
    t->name = strdup(name), t->method = strdup("e8"), t->options = strdup("bits=2");
    t->ndim = 2, t->shape[0] = rows, t->shape[1] = cols, t->rows = rows, t->cols = cols;
    void *d;
    int64_t nc = rows * cols / 8;
    assert_int_equal(qg_qtensor_add(t, "codes", QG_SEC_CODES, 16, nc, &d), QG_OK);
    uint32_t *c = d;
    for (int64_t j = 0; j < nc; j++) {
      double u = (double)(rnd() % 100000) / 100000.0;
      uint32_t hi = (uint32_t)(u * u * u * (j % (cols / 8) < 2 ? 255 : 60)), lo = (uint32_t)(rnd() & 0xff);
      c[j] = hi << 8 | (hi < 3 ? lo & 0x1f : lo);
    }
    assert_int_equal(qg_qtensor_add(t, "scales", QG_SEC_F16, 0, rows, &d), QG_OK);
    for (int j = 0; j < rows; j++) ((uint16_t *)d)[j] = (uint16_t)(0x2000 + (rnd() % 300));
  }
}

static void test_wide_streams(void **st) {
  (void)st;
  enum { NW = 4 };
  qg_qtensor w[NW];
  e8p_tensors(w, NW, 256, 512);
  const qg_qtensor *p[NW];
  for (int i = 0; i < NW; i++) p[i] = &w[i];
  uint8_t *f, *fb;
  size_t n, nb;
  qg_qgz_info info, ib;
  qg_qgz_rans_set_inline(1); /* the default: smaller than brotli-11 with the inline images on offer too */
  assert_int_equal(qg_qgz_encode(p, NW, QG_COMP_RANS, QG_LAYOUT_PACKED, &f, &n, &info), QG_OK);
  qg_qgz_rans_set_inline(0);
  assert_int_equal(qg_qgz_encode(p, NW, QG_COMP_BROTLI, QG_LAYOUT_AUTO, &fb, &nb, &ib), QG_OK);
  print_message("wide: rans %zu bytes (%d wide streams, %d shared tables), brotli-11 %zu bytes\n", n, info.streams_wide,
                info.shared_tables, nb);
  assert_int_equal(info.streams_wide, NW);
  assert_true(info.shared_tables >= 1);
  assert_int_equal(QG_QGZ_HEADER + info.meta_compressed + info.code_payload + info.code_tables +
                       info.code_stream_headers, n);
  assert_true(n < nb);
  qg_qgz a;
  if (qg_qgz_read_mem(f, n, "w.qgz", &a)) fail_msg("%s", qg_last_error());
  for (int i = 0; i < NW; i++)
    assert_memory_equal(a.t[i].sec[0].data, w[i].sec[0].data, (size_t)w[i].sec[0].count * sizeof(uint32_t));
  qg_qgz_free(&a);
  /* every truncation and every 16th byte flipped in the code block fails cleanly or reads
   * other codes (never a crash: the sanitizer build runs this too) */
  for (size_t cut = 0; cut < n; cut += 1 + cut / 16) {
    uint8_t *g = malloc(n);
    memcpy(g, f, n);
    qg_wr_u32le(g + 24, (uint32_t)(cut > QG_QGZ_HEADER ? cut - QG_QGZ_HEADER : 0));
    assert_int_not_equal(qg_qgz_read_mem(g, cut, "w.qgz", &a), QG_OK);
    free(g);
  }
  size_t pos = QG_QGZ_HEADER;
  uint64_t mz;
  assert_int_equal(qg_varint_get(f, n, &pos, &mz), 0);
  for (size_t i = pos + (size_t)mz; i < n; i += 16) {
    f[i] ^= 0x41;
    if (qg_qgz_read_mem(f, n, "w.qgz", &a) == QG_OK) qg_qgz_free(&a);
    f[i] ^= 0x41;
  }
  /* the same file marked version 2 does not read: its 16-bit codes would be inline */
  qg_wr_u16le(f + 4, QG_QGZ_VERSION_RANS);
  assert_int_not_equal(qg_qgz_read_mem(f, n, "w.qgz", &a), QG_OK);
  free(f), free(fb);
  for (int i = 0; i < NW; i++) qg_qtensor_free(&w[i]);
}

/* Rows of a few kinds in random order: a stored row order (greedy nearest neighbour)
 * with previous-row contexts pays for itself; without row orders the file is larger and
 * both decode to the same codes. */
static void permutable(qg_qtensor *t, int64_t rows, int64_t cols) {
  qg_qtensor_init(t);
  t->name = strdup("blocks.0.mlp.fc.weight"), t->method = strdup("rowwise"), t->options = strdup("bits=6");
  t->ndim = 2, t->shape[0] = rows, t->shape[1] = cols, t->rows = rows, t->cols = cols;
  void *d;
  assert_int_equal(qg_qtensor_add(t, "codes", QG_SEC_CODES, 6, rows * cols, &d), QG_OK);
  /* four row kinds, each with its own spread per column (1 or 12 codes): a row's code
   * magnitudes follow its kind's, so the row above says much when it is of the same kind */
  uint32_t *c = d;
  double *sig = malloc((size_t)(4 * cols) * sizeof *sig);
  for (int64_t j = 0; j < 4 * cols; j++) sig[j] = rnd() % 2 ? 12 : 1;
  for (int64_t r = 0; r < rows; r++) {
    int64_t k = (int64_t)(rnd() % 4);
    for (int64_t j = 0; j < cols; j++) {
      double g = 0;
      for (int m = 0; m < 4; m++) g += (double)(rnd() % 1000) / 1000.0 - 0.5;
      long v = lround(31 + g * 1.7 * sig[k * cols + j]);
      c[r * cols + j] = (uint32_t)(v < 0 ? 0 : v > 63 ? 63 : v);
    }
  }
  free(sig);
  assert_int_equal(qg_qtensor_add(t, "scales", QG_SEC_F16, 0, rows, &d), QG_OK);
  for (int64_t j = 0; j < rows; j++) ((uint16_t *)d)[j] = (uint16_t)(0x2000 + (rnd() % 300));
}

static void test_row_orders(void **st) {
  (void)st;
  qg_qtensor t;
  permutable(&t, 192, 96);
  const qg_qtensor *p = &t;
  uint8_t *f[2];
  size_t n[2];
  qg_qgz_info info[2];
  qg_qgz_rans_force_transposed(-1); /* the orders of the context modes (test_qgz_cols has the transposed one) */
  for (int k = 0; k < 2; k++) {
    qg_qgz_rans_set_row_orders(k == 0);
    assert_int_equal(qg_qgz_encode(&p, 1, QG_COMP_RANS, QG_LAYOUT_PACKED, &f[k], &n[k], &info[k]), QG_OK);
    qg_qgz a;
    if (qg_qgz_read_mem(f[k], n[k], "r.qgz", &a)) fail_msg("%s", qg_last_error());
    assert_memory_equal(a.t[0].sec[0].data, t.sec[0].data, (size_t)t.sec[0].count * sizeof(uint32_t));
    qg_qgz_free(&a);
  }
  qg_qgz_rans_set_row_orders(1), qg_qgz_rans_force_transposed(0);
  print_message("row orders: %zu bytes (%d row-ordered), without %zu bytes\n", n[0], info[0].streams_permuted, n[1]);
  assert_int_equal(info[0].streams_permuted, 1);
  assert_int_equal(info[1].streams_permuted, 0);
  assert_true(n[0] < n[1]);
  /* truncations and flipped bytes in the order fail cleanly or read other codes */
  for (size_t cut = 0; cut < n[0]; cut += 1 + cut / 16) {
    qg_qgz a;
    qg_wr_u32le(f[0] + 24, (uint32_t)(cut > QG_QGZ_HEADER ? cut - QG_QGZ_HEADER : 0));
    assert_int_not_equal(qg_qgz_read_mem(f[0], cut, "r.qgz", &a), QG_OK);
  }
  free(f[0]), free(f[1]);
  qg_qtensor_free(&t);
}

/* A format-2 file written by the format-2 writer (before wide streams): a 6-bit rowwise
 * tensor (8 x 16, codes 28 + k % 8 from the xorshift below) and a 16-bit one (8 x 8, one
 * code per row) whose codes stay inline in the brotli meta. */
static const uint8_t golden_v2[] = {
#include "tests/data/qgz_v2_golden.inc"
};

static void test_version2_still_reads(void **st) {
  (void)st;
  qg_qgz a;
  if (qg_qgz_read_mem(golden_v2, sizeof golden_v2, "v2.qgz", &a)) fail_msg("%s", qg_last_error());
  assert_int_equal(qg_rd_u16le(golden_v2 + 4), QG_QGZ_VERSION_RANS);
  assert_int_equal(a.n, 2);
  uint64_t x = 88172645463325252ull;
#define XS() (x ^= x << 13, x ^= x >> 7, x ^= x << 17)
  for (int i = 0; i < 2; i++) {
    const qg_qsection *c = qg_qtensor_find(&a.t[i], "codes"), *h = qg_qtensor_find(&a.t[i], "scales");
    assert_non_null(c), assert_non_null(h);
    assert_int_equal(c->bits, i ? 16 : 6);
    assert_int_equal(c->count, i ? 8 : 128);
    for (int j = 0; j < c->count; j++) {
      uint32_t want = i ? (uint32_t)(XS() & 0xffff) : (uint32_t)(28 + XS() % 8);
      assert_int_equal(((const uint32_t *)c->data)[j], want);
    }
    for (int j = 0; j < 8; j++) assert_int_equal(((const uint16_t *)h->data)[j], (uint16_t)(0x2000 + XS() % 300));
  }
#undef XS
  qg_qgz_free(&a);
}

int main(void) {
  qg_qgz_rans_set_inline(0); /* every stream in the code block, but where a test turns it on */
  build();
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_roundtrip_and_choices), cmocka_unit_test(test_corrupt_blocks),
                                     cmocka_unit_test(test_wide_streams), cmocka_unit_test(test_version2_still_reads),
                                     cmocka_unit_test(test_row_orders)};
  int r = cmocka_run_group_tests(tests, NULL, NULL);
  for (int i = 0; i < NT; i++) qg_qtensor_free(&T[i]);
  return r;
}
