/* python/qgz_load.py against the C reader: the contest's tiny checkpoint quantized with
 * every method (rowwise, lloydmax, turbo, e8, gptq over each grid) under rANS and the
 * format-1 compressors, loaded by both, tensor for tensor (names, element counts, values
 * bit for bit: the loader rebuilds the Lloyd-Max levels and E8 codebooks and repeats the
 * float32 arithmetic of the C dequantizers). Skips visibly without python3 + numpy (and
 * brotli for the brotli-using files) or the checkpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/tensor.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/qgz.h"
#include "io/qgz_cols.h"
#include "io/qgz_rans.h"
#include "io/rans.h"
#include "quant/artifact.h"
#include "tests/testlib.h"

static const char *python(void) {
  static const char *cand[] = {"python3", "/usr/bin/python3"};
  for (int i = 0; i < 2; i++) {
    char cmd[256];
    snprintf(cmd, sizeof cmd, "%s -c 'import numpy, brotli' >/dev/null 2>&1", cand[i]);
    if (system(cmd) == 0) return cand[i];
  }
  return NULL;
}

static void compare(const char *qgz, const char *raw) {
  qg_state s;
  qg_format f;
  if (qg_checkpoint_load(qgz, &s, &f)) fail_msg("%s", qg_last_error());
  uint8_t *d;
  size_t n, pos = 0;
  assert_int_equal(qg_read_file(raw, &d, &n, 0), QG_OK);
  int seen = 0;
  while (pos < n) {
    uint32_t nl = qg_rd_u32le(d + pos);
    char name[512];
    assert_true(nl < sizeof name);
    memcpy(name, d + pos + 4, nl), name[nl] = 0;
    uint64_t cnt = qg_rd_u64le(d + pos + 4 + nl);
    const uint8_t *v8 = d + pos + 12 + nl; /* unaligned in the dump: read each value by memcpy */
    const qg_tensor *t = qg_state_find(&s, name);
    if (!t) fail_msg("python tensor %s not in the C state", name);
    assert_int_equal(qg_tensor_numel(t), (int64_t)cnt);
    float *c = malloc(cnt * sizeof *c + 1);
    qg_tensor_to_f32(t, c);
    for (uint64_t i = 0; i < cnt; i++) {
      float v;
      memcpy(&v, v8 + 4 * i, sizeof v);
      if (!(c[i] == v) && !(isnan(c[i]) && isnan(v)))
        fail_msg("%s: %s[%llu] C %g python %g", qgz, name, (unsigned long long)i, c[i], v);
    }
    free(c);
    pos += 12 + nl + cnt * 4, seen++;
  }
  assert_int_equal(seen, s.n);
  free(d);
  qg_state_free(&s);
}

static void test_python_matches_c(void **st) {
  (void)st;
  const char *py = python(), *model;
  if (!py) {
    print_message("SKIP: python3 with numpy and brotli not found\n");
    skip();
  }
  QG_REQUIRE_CONTEST_FILE(model, "tiny3L128d_nolanvild_3c063e5.pt");
  char *dir = qg_test_tmpdir();
  /* every method the C reader dequantizes, GPTQ over each inner grid (self-generated
   * calibration, so no data files), under rANS (format 2) and a format-1 compressor */
  static const struct {
    const char *spec, *comps, *extra;
  } cases[] = {
      {"blocks.*.mlp.*: rowwise bits=5 group=64; *: rowwise bits=6 range=full", "rans brotli xz zlib none", ""},
      {"*.attn.*: rowwise bits=4", "rans brotli", ""},
      {"blocks.*.mlp.*: lloydmax bits=4 group=64; blocks.*.attn.*: turbo bits=3 group=64 norm=l2", "rans brotli", ""},
      {"blocks.*.mlp.*: turbo bits=4 group=128 eq=0.25; blocks.*.attn.*: e8 bits=3", "rans", "--calib self"},
      {"blocks.*.mlp.*: e8 cb=ball bits=1.5 group=64; blocks.*.attn.*: e8 bits=4 group=64", "rans zlib", ""},
      {"blocks.*.mlp.fc.*: gptq grid=e8 bits=2; blocks.*.mlp.*: gptq grid=turbo bits=4 group=64 blocksize=128; "
       "blocks.*.attn.c_q.*: gptq grid=lloydmax bits=3; *: gptq bits=6 act_order=1",
       "rans", "--calib self"},
  };
  for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
    char comps[64];
    snprintf(comps, sizeof comps, "%s", cases[k].comps);
    for (char *c = strtok(comps, " "); c; c = strtok(NULL, " ")) {
      char args[2048], out[4096], err[4096];
      char *q = strdup(qg_test_path(dir, "m.qgz")), *raw = strdup(qg_test_path(dir, "m.bin"));
      snprintf(args, sizeof args,
               "quantize --model '%s' --spec '%s' --out '%s' --compress %s %s --calib-seqs 4 --calib-len 64", model,
               cases[k].spec, q, c, cases[k].extra);
      if (!*cases[k].extra) *strstr(args, " --calib-seqs") = 0;
      if (qg_test_run_cli(args, out, sizeof out, err, sizeof err)) fail_msg("%s", err);
      snprintf(args, sizeof args, "%s '%s/python/qgz_load.py' '%s' --raw '%s' >/dev/null", py, QG_SOURCE_DIR, q, raw);
      if (system(args) != 0) fail_msg("qgz_load.py failed on case %zu (%s)", k, c);
      compare(q, raw);
      free(q), free(raw);
    }
  }
  qg_test_rmdir(dir);
}

static uint64_t rs = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) { return rs ^= rs << 13, rs ^= rs >> 7, rs ^= rs << 17; }

/* rows x cols 8-bit codes: row r a point (uniform) on a curve, column c a sinusoid of it,
 * +-1 noise on a fifth of the codes (as tests/test_qgz_cols.c) */
static void embedding(qg_qtensor *t, int64_t rows, int64_t cols) {
  qg_qtensor_init(t);
  t->name = strdup("tok_emb.weight"), t->method = strdup("rowwise"), t->options = strdup("bits=8");
  t->ndim = 2, t->shape[0] = rows, t->shape[1] = cols, t->rows = rows, t->cols = cols;
  void *d;
  assert_int_equal(qg_qtensor_add(t, "codes", QG_SEC_CODES, 8, rows * cols, &d), QG_OK);
  uint32_t *c = d;
  double amp[256], ph[256];
  assert_true(cols <= 256);
  for (int64_t j = 0; j < cols; j++) amp[j] = 10 + (double)(rnd() % 50), ph[j] = (double)(rnd() % 628) / 100;
  for (int64_t r = 0; r < rows; r++) {
    double u = (double)(rnd() % 100000) / 100000;
    for (int64_t j = 0; j < cols; j++) {
      long v = lround(127 + amp[j] * sin(6.283 * u * (1 + j % 3) + ph[j]));
      if (rnd() % 5 == 0) v += rnd() % 2 ? 1 : -1;
      c[r * cols + j] = (uint32_t)v;
    }
  }
  assert_int_equal(qg_qtensor_add(t, "scales", QG_SEC_F16, 0, rows, &d), QG_OK);
  for (int64_t j = 0; j < rows; j++) ((uint16_t *)d)[j] = (uint16_t)(0x2000 + (rnd() % 300));
}

/* Format 3's own stream kinds, forced into the code block: E8P codes as wide streams
 * (shared tables, low-byte classes), rows of four kinds in random order (a stored row
 * order with previous-row contexts) and an embedding-like 8-bit matrix (rows along a
 * smooth curve in random order: brotli over its columns in the greedy row order), read by
 * both readers. */
static void test_python_reads_format3_streams(void **st) {
  (void)st;
  const char *py = python();
  if (!py) {
    print_message("SKIP: python3 with numpy and brotli not found\n");
    skip();
  }
  enum { NT = 5 };
  qg_qtensor t[NT];
  for (int i = 0; i < NT - 1; i++) {
    qg_qtensor_init(&t[i]);
    char name[64];
    int e8 = i < 3;
    snprintf(name, sizeof name, e8 ? "blocks.%d.attn.c_q.weight" : "blocks.%d.mlp.fc.weight", i);
    t[i].name = strdup(name), t[i].method = strdup(e8 ? "e8" : "rowwise"), t[i].options = strdup(e8 ? "bits=2" : "bits=6");
    int64_t rows = e8 ? 128 : 160, cols = e8 ? 256 : 96, nc = e8 ? rows * cols / 8 : rows * cols;
    t[i].ndim = 2, t[i].shape[0] = rows, t[i].shape[1] = cols, t[i].rows = rows, t[i].cols = cols;
    void *d;
    assert_int_equal(qg_qtensor_add(&t[i], "codes", QG_SEC_CODES, e8 ? 16 : 6, nc, &d), QG_OK);
    uint32_t *c = d;
    double sig[4][96];
    for (int k = 0; k < 4; k++)
      for (int j = 0; j < 96; j++) sig[k][j] = rnd() % 2 ? 12 : 1;
    for (int64_t r = 0; r < rows; r++) {
      int k = (int)(rnd() % 4);
      for (int64_t j = 0; j < nc / rows; j++) {
        double u = (double)(rnd() % 100000) / 100000.0, g = 0;
        for (int m = 0; m < 4; m++) g += (double)(rnd() % 1000) / 1000.0 - 0.5;
        uint32_t hi = (uint32_t)(u * u * u * 255), lo = (uint32_t)(rnd() & 0xff);
        long v = lround(31 + g * 1.7 * sig[k][j % 96]);
        c[r * (nc / rows) + j] = e8 ? hi << 8 | (hi < 3 ? lo & 0x1f : lo) : (uint32_t)(v < 0 ? 0 : v > 62 ? 62 : v); /* rowwise 6-bit: 0..62 */
      }
    }
    assert_int_equal(qg_qtensor_add(&t[i], "scales", QG_SEC_F16, 0, rows, &d), QG_OK);
    for (int64_t j = 0; j < rows; j++) ((uint16_t *)d)[j] = (uint16_t)(0x2000 + (rnd() % 300));
  }
  embedding(&t[NT - 1], 512, 64);
  const qg_qtensor *p[NT];
  for (int i = 0; i < NT; i++) p[i] = &t[i];
  char *dir = qg_test_tmpdir();
  char *q = strdup(qg_test_path(dir, "f3.qgz")), *raw = strdup(qg_test_path(dir, "f3.bin")), cmd[2048];
  qg_qgz_info info;
  /* two files: the first four tensors with the transposed mode off (the rows of four
   * kinds would take it too), then the embedding by bytes */
  for (int k = 0; k < 2; k++) {
    qg_qgz_rans_set_inline(0), qg_qgz_rans_force_transposed(k ? 0 : -1);
    assert_int_equal(qg_qgz_write(q, k ? p + NT - 1 : p, k ? 1 : NT - 1, QG_COMP_RANS, QG_LAYOUT_PACKED, &info), QG_OK);
    qg_qgz_rans_set_inline(1), qg_qgz_rans_force_transposed(0);
    print_message("format 3: %d wide streams, %d transposed, %d row-ordered, %zu bytes\n", info.streams_wide,
                  info.streams_transposed, info.streams_permuted, info.file_bytes);
    assert_int_equal(info.streams_wide, k ? 0 : 3);
    assert_int_equal(info.streams_transposed, k);
    assert_int_equal(info.streams_permuted, 1);
    snprintf(cmd, sizeof cmd, "%s '%s/python/qgz_load.py' '%s' --raw '%s' >/dev/null", py, QG_SOURCE_DIR, q, raw);
    if (system(cmd) != 0) fail_msg("qgz_load.py failed on the format-3 streams");
    compare(q, raw);
  }
  for (int i = 0; i < NT; i++) qg_qtensor_free(&t[i]);
  free(q), free(raw);
  qg_test_rmdir(dir);
}

/* A rows x 8 matrix of 2-bit codes transposed into the code block, its streams replaced
 * by [0 tables][0 wide tables][mode][order bytes][length][brotli of k bytes, the last v]:
 * both readers must fail, the loader with a message holding needle. */
static void python_rejects(const char *py, const char *dir, int64_t rows, uint8_t mode, const uint8_t *ord, size_t on,
                           size_t k, uint8_t v, const char *needle) {
  qg_qtensor t;
  qg_qtensor_init(&t);
  t.name = strdup("m"), t.method = strdup("rowwise"), t.options = strdup("bits=2");
  t.ndim = 2, t.shape[0] = rows, t.shape[1] = 8, t.rows = rows, t.cols = 8;
  void *d;
  assert_int_equal(qg_qtensor_add(&t, "codes", QG_SEC_CODES, 2, rows * 8, &d), QG_OK);
  assert_int_equal(qg_qtensor_add(&t, "scales", QG_SEC_F16, 0, rows, &d), QG_OK);
  const qg_qtensor *p = &t;
  uint8_t *f, *raw = calloc(k ? k : 1, 1), *z;
  assert_non_null(raw);
  size_t n, zn, pos = QG_QGZ_HEADER;
  qg_qgz_rans_set_inline(0), qg_qgz_rans_force_transposed(1);
  assert_int_equal(qg_qgz_encode(&p, 1, QG_COMP_RANS, QG_LAYOUT_PACKED, &f, &n, NULL), QG_OK);
  qg_qgz_rans_set_inline(1), qg_qgz_rans_force_transposed(0);
  qg_qtensor_free(&t);
  uint64_t mz;
  assert_int_equal(qg_varint_get(f, n, &pos, &mz), 0);
  size_t cb = pos + (size_t)mz + 3; /* options, one placement bit */
  assert_int_equal(f[cb + 2], QG_QGZ_MODE_COLS);
  if (k) raw[k - 1] = v;
  assert_int_equal(qg_compress(QG_COMP_BROTLI, raw, k, &z, &zn), QG_OK);
  free(raw);
  assert_true(zn < 128); /* the one-byte length below */
  f = realloc(f, cb + 4 + on + zn);
  f[cb] = 0, f[cb + 1] = 0, f[cb + 2] = mode;
  if (on) memcpy(f + cb + 3, ord, on); /* ord may be NULL when on is 0 */
  f[cb + 3 + on] = (uint8_t)zn;
  memcpy(f + cb + 4 + on, z, zn);
  n = cb + 4 + on + zn;
  free(z);
  qg_wr_u32le(f + 24, (uint32_t)(n - QG_QGZ_HEADER));
  char *q = strdup(qg_test_path(dir, "bad.qgz")), *e = strdup(qg_test_path(dir, "bad.err")), cmd[2048];
  assert_int_equal(qg_write_file_atomic(q, f, n), QG_OK);
  free(f);
  qg_qgz a;
  assert_int_equal(qg_qgz_read(q, &a), QG_ERR_INPUT); /* the C reader too */
  snprintf(cmd, sizeof cmd, "%s '%s/python/qgz_load.py' '%s' >/dev/null 2>'%s'", py, QG_SOURCE_DIR, q, e);
  if (system(cmd) == 0) fail_msg("qgz_load.py read a corrupt transposed stream (%s)", needle);
  uint8_t *msg;
  size_t ml;
  assert_int_equal(qg_read_file(e, &msg, &ml, 0), QG_OK);
  msg = realloc(msg, ml + 1), msg[ml] = 0;
  if (!strstr((char *)msg, needle)) fail_msg("qgz_load.py: no '%s' in: %s", needle, (char *)msg);
  print_message("python: ...%s", strstr((char *)msg, needle));
  free(msg), free(q), free(e);
}

static void test_python_rejects_bad_transposed(void **st) {
  (void)st;
  const char *py = python();
  if (!py) {
    print_message("SKIP: python3 with numpy and brotli not found\n");
    skip();
  }
  char *dir = qg_test_tmpdir();
  python_rejects(py, dir, 4, QG_QGZ_MODE_COLS, NULL, 0, 31, 0, "transposed stream of 31 bytes, not rows x cols = 32");
  python_rejects(py, dir, 4, QG_QGZ_MODE_COLS, NULL, 0, 32, 7, "symbol outside the alphabet");
  /* 8 MiB from a few dozen bytes where 32 are due: refused (the loader stops decoding a
   * stream once it passes its size) */
  python_rejects(py, dir, 4, QG_QGZ_MODE_COLS, NULL, 0, (size_t)8 << 20, 0, "transposed stream of more bytes");
  static const uint8_t ord[] = {0x0c}; /* 4 rows: entry 1 is 3 of 3 choices */
  python_rejects(py, dir, 4, QG_QGZ_MODE_COLS | QG_QGZ_ROWS_PERMUTED, ord, 1, 32, 0, "row order entry out of range");
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_python_rejects_bad_transposed),
                                     cmocka_unit_test(test_python_reads_format3_streams),
                                     cmocka_unit_test(test_python_matches_c)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
