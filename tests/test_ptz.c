/* io/ptz.c + io/contest_int8.c: the contest's int8+zlib artifacts, read from the real
 * files in ../shared/contest, dequantized as the contest does, and reproduced bit-exactly
 * from the matching float checkpoint. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "io/ptz.h"
#include "io/torchfile.h"
#include "tests/testlib.h"

#define TINY_PT "tiny3L128d_nolanvild_3c063e5.pt"
#define TINY_PTZ "tiny3L128d_nolanvild_3c063e5.int8.ptz"
#define SAM_PTZ "baseline7L384d_SamTruss_c839523.int8.ptz"
#define MONTY_PTZ "recur6x2L512d_int6qat_MontySteele_dc69b08.int8.ptz"

/* The README's inventory of the SamTruss artifact: 7 layers x 6 matrices + tok_emb
 * quantized, 7 x 4 control tensors + skip_weights passthrough, every block-matrix row
 * scale at the 1/127 floor. */
static void test_read_samtruss(void **st) {
  (void)st;
  const char *path;
  QG_REQUIRE_CONTEST_FILE(path, SAM_PTZ);
  qg_int8_artifact a;
  assert_int_equal(qg_ptz_read(path, &a), QG_OK);
  assert_string_equal(a.format, "int8_clean_per_row_v1");
  assert_int_equal(a.quantized.n, 43);
  assert_int_equal(a.passthrough.n, 29);
  const qg_tensor *emb = qg_state_find(&a.quantized, "tok_emb.weight");
  assert_non_null(emb);
  assert_int_equal(emb->shape[0], 1024);
  assert_int_equal(emb->shape[1], 384);
  const qg_tensor *ck = qg_state_find(&a.quantized, "blocks.3.attn.c_k.weight");
  assert_non_null(ck);
  assert_int_equal(ck->shape[0], 192);
  int idx = (int)(ck - a.quantized.t);
  assert_string_equal(a.orig_dtype[idx], "float32");
  assert_true(a.per_row[idx]);
  const qg_tensor *sc = &a.scales.t[idx];
  assert_int_equal(sc->dtype, QG_F16);
  for (int r = 0; r < 192; r++) assert_int_equal(((uint16_t *)sc->data)[r], qg_f32_to_f16(1.0f / 127.0f));
  /* |q| <= 21 in the block matrices (README) */
  int maxq = 0;
  for (int64_t i = 0; i < qg_tensor_numel(ck); i++) maxq = abs(((int8_t *)ck->data)[i]) > maxq ? abs(((int8_t *)ck->data)[i]) : maxq;
  assert_true(maxq <= 21 && maxq > 0);
  int ei = (int)(emb - a.quantized.t);
  assert_string_equal(a.orig_dtype[ei], "bfloat16");
  const qg_tensor *sw = qg_state_find(&a.passthrough, "skip_weights");
  assert_non_null(sw);
  assert_int_equal(sw->dtype, QG_F32);
  assert_int_equal(sw->shape[0], 3);

  qg_state d;
  assert_int_equal(qg_int8_dequantize(&a, &d), QG_OK);
  assert_int_equal(d.n, 72);
  assert_int_equal(qg_state_numel(&d), 7630520); /* README: 7,630,520 parameters */
  const qg_tensor *de = qg_state_find(&d, "tok_emb.weight");
  assert_int_equal(de->dtype, QG_BF16);
  /* each dequantized value is bf16(q * f32(scale)) */
  const uint16_t *escale = a.scales.t[ei].data;
  for (int64_t i = 0; i < 1024 * 384; i += 997) {
    float want = (float)((int8_t *)emb->data)[i] * qg_f16_to_f32(escale[i / 384]);
    assert_int_equal(((uint16_t *)de->data)[i], qg_f32_to_bf16(want));
  }
  qg_state_free(&d);
  qg_int8_artifact_free(&a);
}

static void test_read_montysteele(void **st) {
  (void)st;
  const char *path;
  QG_REQUIRE_CONTEST_FILE(path, MONTY_PTZ);
  qg_int8_artifact a;
  assert_int_equal(qg_ptz_read(path, &a), QG_OK);
  assert_int_equal(a.quantized.n, 37);
  const qg_tensor *rs = qg_state_find(&a.passthrough, "repeat_scales");
  assert_non_null(rs);
  assert_int_equal(rs->dtype, QG_F16);
  assert_int_equal(rs->shape[0], 12);
  assert_int_equal(rs->shape[1], 512);
  assert_string_equal(a.pass_orig[rs - a.passthrough.t], "bfloat16");
  assert_non_null(qg_state_find(&a.passthrough, "repeat_shifts"));
  /* int6 codes inside the int8 container: |q| <= 31 everywhere */
  for (int i = 0; i < a.quantized.n; i++) {
    const int8_t *c = a.quantized.t[i].data;
    for (int64_t j = 0; j < qg_tensor_numel(&a.quantized.t[i]); j++) assert_true(c[j] >= -31 && c[j] <= 31);
  }
  qg_state d;
  assert_int_equal(qg_int8_dequantize(&a, &d), QG_OK);
  assert_int_equal(qg_state_numel(&d), 11562032); /* README: params of the 6bit_6Lx2_ada run */
  const qg_tensor *drs = qg_state_find(&d, "repeat_scales");
  assert_int_equal(drs->dtype, QG_BF16);
  for (int64_t i = 0; i < 12 * 512; i += 101)
    assert_int_equal(((uint16_t *)drs->data)[i], qg_f32_to_bf16(qg_f16_to_f32(((uint16_t *)rs->data)[i])));
  qg_state_free(&d);
  qg_int8_artifact_free(&a);
}

/* Acceptance: quantizing the nolanvild .pt reproduces every code, scale and passthrough
 * value of the matching .int8.ptz. */
static void test_export_reproduces_tiny(void **st) {
  (void)st;
  const char *p1, *p2;
  QG_REQUIRE_CONTEST_FILE(p1, TINY_PT);
  char pt[4096];
  snprintf(pt, sizeof pt, "%s", p1);
  QG_REQUIRE_CONTEST_FILE(p2, TINY_PTZ);
  qg_state sd;
  assert_int_equal(qg_pt_load(pt, &sd), QG_OK);
  assert_int_equal(sd.n, 32); /* 31 passthrough + tok_emb (README) */
  qg_int8_artifact mine, ref;
  assert_int_equal(qg_int8_quantize(&sd, &mine), QG_OK);
  assert_int_equal(qg_ptz_read(p2, &ref), QG_OK);
  assert_int_equal(mine.quantized.n, ref.quantized.n);
  assert_int_equal(mine.quantized.n, 1);
  assert_int_equal(mine.passthrough.n, ref.passthrough.n);
  for (int i = 0; i < ref.quantized.n; i++) {
    const qg_tensor *r = &ref.quantized.t[i], *m = qg_state_find(&mine.quantized, r->name);
    assert_non_null(m);
    int mi = (int)(m - mine.quantized.t);
    assert_int_equal(m->nbytes, r->nbytes);
    int64_t diff = 0;
    for (size_t j = 0; j < r->nbytes; j++) diff += ((int8_t *)m->data)[j] != ((int8_t *)r->data)[j];
    assert_int_equal(diff, 0);
    assert_int_equal(mine.scales.t[mi].nbytes, ref.scales.t[i].nbytes);
    assert_memory_equal(mine.scales.t[mi].data, ref.scales.t[i].data, ref.scales.t[i].nbytes);
    assert_string_equal(mine.orig_dtype[mi], ref.orig_dtype[i]);
    assert_int_equal(mine.per_row[mi], ref.per_row[i]);
  }
  for (int i = 0; i < ref.passthrough.n; i++) {
    const qg_tensor *r = &ref.passthrough.t[i], *m = qg_state_find(&mine.passthrough, r->name);
    assert_non_null(m);
    int mi = (int)(m - mine.passthrough.t);
    assert_int_equal(m->dtype, r->dtype);
    assert_int_equal(m->nbytes, r->nbytes);
    assert_memory_equal(m->data, r->data, r->nbytes);
    if (ref.pass_orig[i])
      assert_string_equal(mine.pass_orig[mi], ref.pass_orig[i]);
    else
      assert_null(mine.pass_orig[mi]);
  }
  qg_int8_artifact_free(&mine);
  qg_int8_artifact_free(&ref);
  qg_state_free(&sd);
}

static int cmp_float_asc(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Writing an artifact and reading it back gives the same contents; the zip inside has the
 * torch layout (archive/ prefix, 64-byte aligned records, version "3\n"). */
static void test_write_roundtrip(void **st) {
  (void)st;
  uint64_t rng = 7;
  qg_state sd;
  qg_state_init(&sd);
  int64_t big[2] = {300, 257}, vec[1] = {70000}, small[1] = {40}, ctrl[2] = {2, 16};
  qg_tensor *t;
  assert_int_equal(qg_state_add(&sd, "blocks.0.mlp.fc.weight", QG_F32, 2, big, &t), QG_OK);
  for (int64_t i = 0; i < 300 * 257; i++) ((float *)t->data)[i] = qg_test_randf(&rng) * 0.05f;
  ((float *)t->data)[5] = 3.0f; /* an outlier the percentile clip must handle */
  assert_int_equal(qg_state_add(&sd, "tok_emb.weight", QG_BF16, 2, big, &t), QG_OK);
  for (int64_t i = 0; i < 300 * 257; i++) ((uint16_t *)t->data)[i] = qg_f32_to_bf16(qg_test_randf(&rng) * 3.0f);
  assert_int_equal(qg_state_add(&sd, "long_vector", QG_F32, 1, vec, &t), QG_OK);
  for (int64_t i = 0; i < 70000; i++) ((float *)t->data)[i] = qg_test_randf(&rng);
  assert_int_equal(qg_state_add(&sd, "blocks.0.resid_mix", QG_F32, 2, ctrl, &t), QG_OK);
  for (int64_t i = 0; i < 32; i++) ((float *)t->data)[i] = qg_test_randf(&rng);
  assert_int_equal(qg_state_add(&sd, "small_bf16", QG_BF16, 1, small, &t), QG_OK);
  for (int64_t i = 0; i < 40; i++) ((uint16_t *)t->data)[i] = qg_f32_to_bf16(qg_test_randf(&rng));
  assert_int_equal(qg_state_add(&sd, "counter", QG_I64, 1, small, &t), QG_OK);
  for (int64_t i = 0; i < 40; i++) ((int64_t *)t->data)[i] = (int64_t)qg_test_rand(&rng);

  qg_int8_artifact a;
  assert_int_equal(qg_int8_quantize(&sd, &a), QG_OK);
  assert_int_equal(a.quantized.n, 3);
  assert_false(a.per_row[2]); /* the 1-D tensor gets a per-tensor scale */
  assert_int_equal(a.scales.t[2].ndim, 0);
  assert_int_equal(a.passthrough.n, 3);
  assert_null(a.pass_orig[0]);                     /* control tensor kept fp32 */
  assert_int_equal(a.passthrough.t[0].dtype, QG_F32);
  assert_string_equal(a.pass_orig[1], "bfloat16"); /* small bf16 stored as fp16 */
  assert_int_equal(a.passthrough.t[2].dtype, QG_I64);

  /* Each row scale is max(q99.99984(|row|)/127, 1/127): check against a full sort with
   * the interpolation done in double (agrees to fp16 rounding). */
  for (int64_t r = 0; r < 300; r++) {
    float row[257];
    for (int j = 0; j < 257; j++) row[j] = fabsf(((float *)sd.t[0].data)[r * 257 + j]);
    qsort(row, 257, sizeof *row, cmp_float_asc);
    double rank = 0.9999984 * 256, w = rank - floor(rank);
    double q = row[(int)floor(rank)] + w * (row[(int)ceil(rank)] - row[(int)floor(rank)]);
    double want = q / 127 > 1.0 / 127 ? q / 127 : 1.0 / 127;
    float got = qg_f16_to_f32(((uint16_t *)a.scales.t[0].data)[r]);
    assert_true(fabs(got - want) <= want * 1e-3);
  }
  /* Dequantization error is bounded by half a step for unclipped values. */
  qg_state d;
  assert_int_equal(qg_int8_dequantize(&a, &d), QG_OK);
  const float *w = sd.t[0].data, *dq = d.t[0].data;
  const uint16_t *sc = a.scales.t[0].data;
  for (int64_t r = 0; r < 300; r++)
    for (int64_t j = 0; j < 257; j++) {
      float s = qg_f16_to_f32(sc[r]);
      if (r == 0 && j == 5) continue;
      assert_true(fabsf(w[r * 257 + j] - dq[r * 257 + j]) <= 0.5f * s * 1.01f + 1e-6f);
    }

  char *dir = qg_test_tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/out.int8.ptz", dir);
  size_t nbytes = 0;
  assert_int_equal(qg_ptz_write(path, &a, &nbytes), QG_OK);
  assert_true(nbytes > 1000);
  qg_int8_artifact b;
  assert_int_equal(qg_ptz_read(path, &b), QG_OK);
  assert_int_equal(b.quantized.n, a.quantized.n);
  assert_int_equal(b.passthrough.n, a.passthrough.n);
  for (int i = 0; i < a.quantized.n; i++) {
    assert_string_equal(b.quantized.t[i].name, a.quantized.t[i].name);
    assert_memory_equal(b.quantized.t[i].data, a.quantized.t[i].data, a.quantized.t[i].nbytes);
    assert_int_equal(b.scales.t[i].ndim, a.scales.t[i].ndim);
    assert_memory_equal(b.scales.t[i].data, a.scales.t[i].data, a.scales.t[i].nbytes);
    assert_string_equal(b.orig_dtype[i], a.orig_dtype[i]);
    assert_int_equal(b.per_row[i], a.per_row[i]);
  }
  for (int i = 0; i < a.passthrough.n; i++) {
    assert_int_equal(b.passthrough.t[i].dtype, a.passthrough.t[i].dtype);
    assert_memory_equal(b.passthrough.t[i].data, a.passthrough.t[i].data, a.passthrough.t[i].nbytes);
  }
  /* Byte-level look at the zip inside. */
  uint8_t *blob, *raw;
  size_t blob_len, raw_len;
  assert_int_equal(qg_ptz_encode(&a, &blob, &blob_len, &raw, &raw_len), QG_OK);
  assert_int_equal(blob[0], 0x78);
  assert_int_equal(blob[1], 0xda); /* zlib level 9 header, as zlib.compress(level=9) */
  assert_memory_equal(raw, "PK\3\4", 4);
  qg_zip z;
  assert_int_equal(qg_zip_open_mem(raw, raw_len, "raw", &z), QG_OK);
  assert_string_equal(z.entries[0].name, "archive/data.pkl");
  assert_string_equal(z.entries[z.n - 1].name, "archive/.data/serialization_id");
  assert_string_equal(z.entries[z.n - 2].name, "archive/version");
  for (int i = 0; i < z.n; i++) assert_int_equal(z.entries[i].data_offset % 64, 0);
  const uint8_t *pk;
  size_t pkn;
  assert_int_equal(qg_zip_read(&z, &z.entries[0], &pk, &pkn), QG_OK);
  assert_int_equal(pk[0], 0x80);
  assert_int_equal(pk[1], 2); /* protocol 2, as torch.save writes */
  qg_zip_close(&z);
  free(blob);
  free(raw);
  qg_int8_artifact_free(&b);
  qg_int8_artifact_free(&a);
  qg_state_free(&d);
  qg_state_free(&sd);
  qg_test_rmdir(dir);
}

static void test_export_rejects_nan(void **st) {
  (void)st;
  qg_state sd;
  qg_state_init(&sd);
  int64_t shape[2] = {300, 300};
  qg_tensor *t;
  assert_int_equal(qg_state_add(&sd, "blocks.1.attn.c_q.weight", QG_F32, 2, shape, &t), QG_OK);
  ((float *)t->data)[1234] = NAN;
  qg_int8_artifact a;
  assert_int_equal(qg_int8_quantize(&sd, &a), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "blocks.1.attn.c_q.weight"));
  assert_non_null(strstr(qg_last_error(), "1234"));
  qg_state_free(&sd);
}

/* A small artifact saved by real torch.save + zlib; its dequantization must equal the
 * contest's own dequantize_state_dict_int8 run by torch (the manifest), byte for byte. */
static void test_torch_written_artifact(void **st) {
  (void)st;
  qg_int8_artifact a;
  assert_int_equal(qg_ptz_read(qg_test_data_file("small_artifact.int8.ptz"), &a), QG_OK);
  assert_int_equal(a.quantized.n, 3);
  assert_false(a.per_row[2]);
  qg_state d;
  assert_int_equal(qg_int8_dequantize(&a, &d), QG_OK);
  qg_test_check_manifest(&d, qg_test_data_file("small_artifact_expected.bin"), 6);
  qg_state_free(&d);
  qg_int8_artifact_free(&a);
}

/* Truncations, flipped bytes and a zlib bomb: every one an error that names the file. */
static void test_malformed(void **st) {
  (void)st;
  const char *path;
  QG_REQUIRE_CONTEST_FILE(path, TINY_PTZ);
  uint8_t *data;
  size_t len;
  assert_int_equal(qg_read_file(path, &data, &len, 0), QG_OK);
  size_t cuts[] = {0, 1, 2, 10, 100, len / 3, len / 2, len - 10, len - 4, len - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    qg_int8_artifact a;
    assert_int_not_equal(qg_ptz_read_mem(data, cuts[i], "cut.ptz", &a), QG_OK);
    assert_non_null(strstr(qg_last_error(), "cut.ptz"));
  }
  /* inflated image, then truncated/corrupted at the zip level */
  uint8_t *raw;
  size_t raw_len;
  assert_int_equal(qg_zlib_inflate(data, len, "x", QG_PTZ_MAX_INFLATED, &raw, &raw_len), QG_OK);
  for (size_t cut = 1; cut < raw_len; cut += raw_len / 37) {
    qg_int8_artifact a;
    assert_int_not_equal(qg_ptz_read_mem(raw, cut, "rawcut", &a), QG_OK);
  }
  uint8_t *copy = malloc(raw_len);
  memcpy(copy, raw, raw_len);
  copy[200] ^= 0x55; /* inside data.pkl: the CRC must catch it */
  qg_int8_artifact a;
  assert_int_equal(qg_ptz_read_mem(copy, raw_len, "flip", &a), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "CRC"));
  /* a limit below the real size acts as the bomb guard */
  uint8_t *o;
  size_t on;
  assert_int_equal(qg_zlib_inflate(data, len, "bomb", 1 << 16, &o, &on), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "bomb"));
  free(copy);
  free(raw);
  free(data);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_read_samtruss),      cmocka_unit_test(test_read_montysteele),
      cmocka_unit_test(test_export_reproduces_tiny), cmocka_unit_test(test_write_roundtrip),
      cmocka_unit_test(test_export_rejects_nan), cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_torch_written_artifact),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
