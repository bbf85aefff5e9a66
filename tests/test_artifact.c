/* io/qgz.c and the quantize pipeline: artifacts load back to exactly the dequantized
 * weights (every compressor and code layout, through qg_checkpoint_load too); the auto
 * layout keeps the smaller; corrupt and truncated files are QG_ERR_INPUT naming the file;
 * the contest .int8.ptz written from rowwise codes reproduces the same weights through the
 * contest's dequantization; the CLI end to end. */
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
#include "io/checkpoint.h"
#include "io/qgz.h"
#include "io/safetensors.h"
#include "quant/artifact.h"
#include "quant/pipeline.h"
#include "tests/testlib.h"

/* A small model with every kind of tensor the pipeline meets. */
static void model(qg_state *s) {
  qg_state_init(s);
  qg_tensor *t;
  uint64_t seed = 77;
  int64_t emb[2] = {512, 160}, fc[2] = {640, 128}, pr[2] = {128, 640}, vec[1] = {128}, sc[1] = {0}, big1[1] = {70000};
  assert_int_equal(qg_state_add(s, "tok_emb.weight", QG_BF16, 2, emb, &t), QG_OK);
  for (int64_t i = 0; i < 512 * 160; i++) ((uint16_t *)t->data)[i] = qg_f32_to_bf16(0.3f * qg_test_randf(&seed));
  assert_int_equal(qg_state_add(s, "blocks.0.mlp.fc.weight", QG_F32, 2, fc, &t), QG_OK);
  for (int64_t i = 0; i < 640 * 128; i++) ((float *)t->data)[i] = 0.05f * qg_test_randf(&seed);
  assert_int_equal(qg_state_add(s, "blocks.0.mlp.proj.weight", QG_F32, 2, pr, &t), QG_OK);
  for (int64_t i = 0; i < 640 * 128; i++) ((float *)t->data)[i] = 0.05f * qg_test_randf(&seed);
  assert_int_equal(qg_state_add(s, "blocks.0.attn_scale", QG_F32, 1, vec, &t), QG_OK);
  for (int64_t i = 0; i < 128; i++) ((float *)t->data)[i] = 1 + qg_test_randf(&seed);
  assert_int_equal(qg_state_add(s, "blocks.0.norm.bias", QG_F32, 1, vec, &t), QG_OK);
  for (int64_t i = 0; i < 128; i++) ((float *)t->data)[i] = qg_test_randf(&seed);
  assert_int_equal(qg_state_add(s, "big.vector", QG_F32, 1, big1, &t), QG_OK);
  for (int64_t i = 0; i < 70000; i++) ((float *)t->data)[i] = qg_test_randf(&seed);
  assert_int_equal(qg_state_add(s, "scalar", QG_F32, 0, sc, &t), QG_OK);
  *(float *)t->data = 0.125f;
  assert_int_equal(qg_state_add(s, "step", QG_I64, 1, vec, &t), QG_OK);
  for (int64_t i = 0; i < 128; i++) ((int64_t *)t->data)[i] = i * 1000003;
}

static const char *SPEC = "blocks.*.mlp.fc.*: rowwise bits=5 group=64 clip=search; blocks.*.mlp.proj.*: rowwise "
                          "bits=3 range=full; tok_emb.weight: bf16; blocks.0.norm.bias: fp32";

static void quantize(qg_state *s, const char *spec, qg_qmodel *qm, const qg_qtensor ***qp) {
  qg_spec sp;
  if (qg_spec_parse_inline(spec, &sp)) fail_msg("%s", qg_last_error());
  if (qg_quantize_model(s, &sp, NULL, qm)) fail_msg("%s", qg_last_error());
  qg_spec_free(&sp);
  *qp = malloc(sizeof **qp * qm->n);
  for (int i = 0; i < qm->n; i++) (*qp)[i] = &qm->t[i].q;
}

/* Every tensor of `got` equals the direct dequantization of qm, bit for bit. */
static void expect_dequantized(const qg_state *got, const qg_qmodel *qm) {
  qg_state want;
  qg_state_init(&want);
  for (int i = 0; i < qm->n; i++) assert_int_equal(qg_qtensor_to_state(&qm->t[i].q, &want), QG_OK);
  assert_int_equal(got->n, want.n);
  for (int i = 0; i < want.n; i++) {
    const qg_tensor *g = &got->t[i], *w = &want.t[i];
    assert_string_equal(g->name, w->name);
    assert_int_equal(g->dtype, w->dtype);
    assert_int_equal(g->ndim, w->ndim);
    assert_memory_equal(g->shape, w->shape, sizeof(int64_t) * w->ndim);
    assert_int_equal(g->nbytes, w->nbytes);
    if (memcmp(g->data, w->data, w->nbytes)) fail_msg("tensor %s differs", w->name);
  }
  qg_state_free(&want);
}

/* Bytes of an unsigned LEB128 varint. */
static size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) v >>= 7, n++;
  return n;
}

/* One tensor's payload bytes, worked out from io/qgz.h's format description (not from
 * the writer): name, method, options; dtype, ndim, dims; per section its header and data
 * (codes bit-packed or ceil(bits/8) bytes each, f16/bf16 2, f32 4, raw 1). */
static size_t expected_payload(const qg_qtensor *t, int bytewise, size_t *data_bytes) {
  const char *str[3] = {t->name, t->method, t->options};
  size_t n = 0, data = 0;
  for (int i = 0; i < 3; i++) {
    size_t l = str[i] ? strlen(str[i]) : 0;
    n += varint_len(l) + l;
  }
  n += 2;
  for (int d = 0; d < t->ndim; d++) n += varint_len((uint64_t)t->shape[d]);
  n += 1;
  for (int k = 0; k < t->nsec; k++) {
    const qg_qsection *sc = &t->sec[k];
    n += 1 + strlen(sc->name) + 2 + varint_len((uint64_t)sc->count);
    int64_t c = sc->count;
    switch (sc->kind) {
      case QG_SEC_CODES: data += (size_t)(bytewise ? c * ((sc->bits + 7) / 8) : (c * sc->bits + 7) / 8); break;
      case QG_SEC_F16:
      case QG_SEC_BF16: data += (size_t)c * 2; break;
      case QG_SEC_F32: data += (size_t)c * 4; break;
      default: data += (size_t)c; break;
    }
  }
  *data_bytes = data;
  return n + data;
}

/* Every tensor's share of the artifact, not just one: each tensor's own payload has
 * exactly the size the format gives, its packed/bytewise byte counts and bits per
 * weight are those of its sections, and the whole payload is the sum of the tensors'. */
static void expect_sizes(const qg_qmodel *qm, const qg_qtensor *const *qp) {
  for (int l = 0; l < 2; l++) {
    size_t total = 0;
    for (int i = 0; i < qm->n; i++) {
      size_t data, want = expected_payload(qp[i], l, &data);
      qg_buf one;
      qg_buf_init(&one);
      assert_int_equal(qg_qgz_payload(qp + i, 1, (qg_code_layout)l, &one), QG_OK);
      if (one.n != want)
        fail_msg("%s (%s layout): payload %zu bytes, the format gives %zu", qp[i]->name, l ? "bytes" : "packed", one.n,
                 want);
      qg_buf_free(&one);
      int64_t counted = l ? qg_qtensor_bytewise_bytes(qp[i]) : qg_qtensor_packed_bytes(qp[i]);
      if (counted != (int64_t)data)
        fail_msg("%s (%s layout): %lld data bytes counted, its sections hold %zu", qp[i]->name, l ? "bytes" : "packed",
                 (long long)counted, data);
      if (!l) {
        int64_t numel = 1;
        for (int d = 0; d < qp[i]->ndim; d++) numel *= qp[i]->shape[d];
        assert_int_equal(qm->t[i].packed_bytes, (int64_t)data);
        double bpw = numel ? 8.0 * (double)data / (double)numel : 0;
        if (qm->t[i].bits_per_weight != bpw)
          fail_msg("%s: %.6f bits per weight reported, %.6f from its sections", qp[i]->name, qm->t[i].bits_per_weight,
                   bpw);
      }
      total += want;
    }
    qg_buf all;
    qg_buf_init(&all);
    assert_int_equal(qg_qgz_payload(qp, qm->n, (qg_code_layout)l, &all), QG_OK);
    assert_int_equal(all.n, total);
    qg_buf_free(&all);
  }
}

static void test_roundtrip(void **st) {
  (void)st;
  qg_state s;
  model(&s);
  qg_qmodel qm;
  const qg_qtensor **qp;
  quantize(&s, SPEC, &qm, &qp);
  /* assignments: fc by rule 1 ... step raw, big.vector default contest-int8 */
  assert_string_equal(qm.t[5].q.method, "contest-int8");
  assert_string_equal(qm.t[7].q.method, "raw");
  assert_string_equal(qm.t[3].q.method, "fp32"); /* control */
  assert_true(qm.t[1].bits_per_weight > 5.0 && qm.t[1].bits_per_weight < 5.3);
  assert_true(qm.t[2].mse > qm.t[1].mse); /* 3 bits vs 5 bits, same scale of weights */
  assert_int_equal(qm.n, 8);
  expect_sizes(&qm, qp);
  for (int c = QG_COMP_NONE; c < QG_COMP_COUNT; c++)
    for (int l = 0; l < 2; l++) {
      uint8_t *f;
      size_t n;
      qg_qgz_info info;
      assert_int_equal(qg_qgz_encode(qp, qm.n, (qg_compressor)c, (qg_code_layout)l, &f, &n, &info), QG_OK);
      assert_int_equal(info.file_bytes, n);
      qg_state got;
      if (qg_qgz_load_state_mem(f, n, "mem.qgz", &got)) fail_msg("%s", qg_last_error());
      expect_dequantized(&got, &qm);
      qg_state_free(&got);
      /* the stored payload is every tensor's, uncompressed exactly their sum */
      qg_buf want;
      qg_buf_init(&want);
      assert_int_equal(qg_qgz_payload(qp, qm.n, (qg_code_layout)l, &want), QG_OK);
      if (c != QG_COMP_RANS) assert_int_equal(info.raw_bytes, want.n); /* rans stores codes outside it */
      if (c == QG_COMP_NONE) assert_int_equal(n - QG_QGZ_HEADER, want.n);
      qg_buf_free(&want);
      free(f);
    }
  /* auto keeps the smaller of the two compressed layouts */
  uint8_t *f;
  size_t n;
  qg_qgz_info info;
  assert_int_equal(qg_qgz_encode(qp, qm.n, QG_COMP_ZSTD, QG_LAYOUT_AUTO, &f, &n, &info), QG_OK);
  assert_true(info.packed_compressed > 0 && info.bytes_compressed > 0);
  size_t best = info.packed_compressed < info.bytes_compressed ? info.packed_compressed : info.bytes_compressed;
  assert_int_equal(n, best + QG_QGZ_HEADER);
  assert_int_equal(f[7], info.layout);
  free(f);
  /* through the file system and qg_checkpoint_load (what inspect/convert/eval use) */
  char *dir = qg_test_tmpdir();
  const char *path = qg_test_path(dir, "m.qgz");
  assert_int_equal(qg_qgz_write(path, qp, qm.n, QG_COMP_ZSTD, QG_LAYOUT_AUTO, NULL), QG_OK);
  qg_state got;
  qg_format fmt;
  assert_int_equal(qg_checkpoint_load(path, &got, &fmt), QG_OK);
  assert_int_equal(fmt, QG_FMT_QGZ);
  expect_dequantized(&got, &qm);
  assert_int_equal(got.t[6].ndim, 0); /* the scalar keeps its shape */
  qg_state_free(&got);
  qg_test_rmdir(dir);
  free(qp);
  qg_qmodel_free(&qm);
  qg_state_free(&s);
}

static void test_corrupt(void **st) {
  (void)st;
  qg_state s;
  model(&s);
  qg_qmodel qm;
  const qg_qtensor **qp;
  quantize(&s, SPEC, &qm, &qp);
  for (int c = QG_COMP_NONE; c <= QG_COMP_ZSTD; c++) {
    uint8_t *f;
    size_t n;
    assert_int_equal(qg_qgz_encode(qp, qm.n, (qg_compressor)c, QG_LAYOUT_PACKED, &f, &n, NULL), QG_OK);
    qg_qgz a;
    size_t cuts[] = {0, 3, 31, 32, 33, n / 2, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
      assert_int_equal(qg_qgz_read_mem(f, cuts[i], "cut.qgz", &a), QG_ERR_INPUT);
      assert_non_null(strstr(qg_last_error(), "cut.qgz: "));
    }
    uint8_t *g = malloc(n);
    for (size_t off = 0; off < n; off += 1 + n / 61) { /* every flipped byte is caught */
      memcpy(g, f, n);
      g[off] ^= 0x5a;
      qg_status rs = qg_qgz_read_mem(g, n, "flip.qgz", &a);
      if (rs == QG_OK) fail_msg("flip at %zu accepted (compressor %d)", off, c);
      assert_non_null(strstr(qg_last_error(), "flip.qgz"));
    }
    free(g);
    free(f);
  }
  /* a payload that is well-formed for the CRC but lies: rebuild the header's CRC over a
   * payload whose first section count is enlarged */
  qg_buf p;
  qg_buf_init(&p);
  assert_int_equal(qg_qgz_payload(qp, 1, QG_LAYOUT_PACKED, &p), QG_OK);
  p.n -= 10; /* truncate the last section's data */
  uint8_t *f = malloc(QG_QGZ_HEADER + p.n);
  memcpy(f, QG_QGZ_MAGIC, 4);
  qg_wr_u16le(f + 4, QG_QGZ_VERSION);
  f[6] = QG_COMP_NONE, f[7] = QG_LAYOUT_PACKED;
  qg_wr_u32le(f + 8, 1);
  extern unsigned long crc32(unsigned long, const unsigned char *, unsigned int);
  qg_wr_u32le(f + 12, (uint32_t)crc32(0, p.p, (unsigned)p.n));
  qg_wr_u32le(f + 16, (uint32_t)p.n), qg_wr_u32le(f + 20, 0);
  qg_wr_u32le(f + 24, (uint32_t)p.n), qg_wr_u32le(f + 28, 0);
  memcpy(f + QG_QGZ_HEADER, p.p, p.n);
  qg_qgz a;
  assert_int_equal(qg_qgz_read_mem(f, QG_QGZ_HEADER + p.n, "lie.qgz", &a), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "lie.qgz: payload offset"));
  assert_non_null(strstr(qg_last_error(), "tensor 'tok_emb.weight'"));
  free(f);
  qg_buf_free(&p);
  free(qp);
  qg_qmodel_free(&qm);
  qg_state_free(&s);
}

/* rowwise per-row <= 8 bits -> the contest container -> the contest's dequantization */
static void test_int8_container(void **st) {
  (void)st;
  qg_state s;
  model(&s);
  qg_qmodel qm;
  const qg_qtensor **qp;
  quantize(&s, "blocks.*.mlp.*: rowwise bits=6; tok_emb.weight: rowwise bits=8 clip=sd", &qm, &qp);
  qg_int8_artifact ia;
  assert_int_equal(qg_qtensors_to_int8(qp, qm.n, &ia), QG_OK);
  uint8_t *blob;
  size_t blen;
  assert_int_equal(qg_ptz_encode(&ia, &blob, &blen, NULL, NULL), QG_OK);
  qg_int8_artifact back;
  assert_int_equal(qg_ptz_read_mem(blob, blen, "x.int8.ptz", &back), QG_OK);
  qg_state d;
  assert_int_equal(qg_int8_dequantize(&back, &d), QG_OK);
  for (int i = 0; i < qm.n; i++) {
    const qg_qtensor *q = qp[i];
    const qg_tensor *t = qg_state_find(&d, q->name);
    assert_non_null(t);
    int64_t n = q->rows * q->cols;
    float *want = malloc(n * sizeof *want), *got = malloc(n * sizeof *got);
    qg_state one;
    qg_state_init(&one);
    assert_int_equal(qg_qtensor_to_state(q, &one), QG_OK);
    qg_tensor_to_f32(&one.t[0], want);
    qg_tensor_to_f32(t, got);
    for (int64_t k = 0; k < n; k++) { /* the contest rounds to the source dtype on load */
      float w = q->orig_dtype == QG_BF16 ? qg_bf16_to_f32(qg_f32_to_bf16(want[k])) : want[k];
      if (got[k] != w && !(q->orig_dtype == QG_I64)) fail_msg("%s[%lld]: %g vs %g", q->name, (long long)k, got[k], w);
    }
    qg_state_free(&one);
    free(want), free(got);
  }
  qg_state_free(&d);
  qg_int8_artifact_free(&back);
  qg_int8_artifact_free(&ia);
  free(blob);
  free(qp);
  qg_qmodel_free(&qm);
  /* groups cannot go into the container */
  quantize(&s, "blocks.*.mlp.*: rowwise bits=6 group=64", &qm, &qp);
  assert_int_equal(qg_qtensors_to_int8(qp, qm.n, &ia), QG_ERR_INPUT);
  if (!strstr(qg_last_error(), "blocks.0.mlp.fc.weight")) fail_msg("%s", qg_last_error());
  free(qp);
  qg_qmodel_free(&qm);
  qg_state_free(&s);
}

static void test_cli(void **st) {
  (void)st;
  static char out[1 << 16], err[1 << 12];
  char *dir = qg_test_tmpdir(), args[2048], model_p[400], art[400];
  qg_state s;
  model(&s);
  snprintf(model_p, sizeof model_p, "%s", qg_test_path(dir, "m.safetensors"));
  assert_int_equal(qg_safetensors_write(model_p, &s), QG_OK);
  snprintf(art, sizeof art, "%s", qg_test_path(dir, "a.qgz"));
  snprintf(args, sizeof args, "quantize --model %s --spec 'blocks.*.mlp.*: rowwise bits=4; *.weight: rowwise bits=6' "
           "--out %s --json --code-bytes 47000 --compare-compressors", model_p, art);
  int rc = qg_test_run_cli(args, out, sizeof out, err, sizeof err);
  if (rc) fail_msg("exit %d: %s", rc, err);
  const char *keys[] = {"\"artifact_bytes\"", "\"raw_bytes\"", "\"zstd_bytes\"", "\"brotli_bytes\"", "\"xz_bytes\"",
                        "\"zlib_bytes\"", "\"entropy_bytes\"", "\"code_bytes\": 47000", "\"total_bytes\"",
                        "\"cap_bytes\": 16000000", "\"tensors\": ["};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    if (!strstr(out, keys[i])) fail_msg("--json lacks %s", keys[i]);
  qg_mmap m;
  assert_int_equal(qg_mmap_open(art, &m), QG_OK);
  char want[64];
  snprintf(want, sizeof want, "\"artifact_bytes\": %zu", m.len);
  assert_non_null(strstr(out, want));
  qg_mmap_close(&m);
  snprintf(args, sizeof args, "inspect %s", art);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(out, "blocks.0.mlp.fc.weight"));
  /* bad spec, gptq without calibration, corrupt artifact: exit 2, one line */
  int before = qg_test_count_entries(dir);
  snprintf(args, sizeof args, "quantize --model %s --spec 'blocks.*.attn.*: rowwise' --out %s/b.qgz", model_p, dir);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, "matches no tensor"));
  snprintf(args, sizeof args, "quantize --model %s --spec '*.fc.weight: gptq bits=4' --out %s/b.qgz", model_p, dir);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, "calibration"));
  assert_int_equal(qg_test_count_entries(dir), before);
  uint8_t junk[40];
  memcpy(junk, QG_QGZ_MAGIC, 4);
  memset(junk + 4, 0xff, 36);
  qg_test_write(qg_test_path(dir, "bad.qgz"), junk, sizeof junk);
  snprintf(args, sizeof args, "inspect %s/bad.qgz", dir);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, "bad.qgz"));
  assert_null(strchr(err, '\n') == err + strlen(err) - 1 ? NULL : "x");
  /* the contest container from the CLI */
  snprintf(args, sizeof args, "quantize --model %s --spec '*.weight: rowwise bits=6' --out %s/c.int8.ptz", model_p, dir);
  rc = qg_test_run_cli(args, out, sizeof out, err, sizeof err);
  if (rc) fail_msg("exit %d: %s", rc, err);
  qg_state d;
  assert_int_equal(qg_checkpoint_load(qg_test_path(dir, "c.int8.ptz"), &d, NULL), QG_OK);
  assert_int_equal(d.n, s.n);
  qg_state_free(&d);
  qg_state_free(&s);
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_corrupt),
      cmocka_unit_test(test_int8_container),
      cmocka_unit_test(test_cli),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
