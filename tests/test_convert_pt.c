/* quantgolf convert A.qgz B.pt: the torch.save state dict it writes, read back by our .pt
 * reader, holds exactly the C dequantization of the artifact (names, dtypes, shapes and
 * every byte), for every quantizer and a passthrough; bad output names and corrupt
 * inputs exit 2 and leave nothing behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "io/torchfile.h"
#include "quant/artifact.h"
#include "tests/testlib.h"

/* A contest-shaped slice: a bf16 embedding, two block matrices, a control vector. */
static void write_model(const char *path) {
  qg_state s;
  qg_state_init(&s);
  qg_tensor *t;
  uint64_t seed = 5;
  int64_t emb[2] = {256, 64}, fc[2] = {128, 64}, pr[2] = {64, 128}, vec[1] = {64};
  assert_int_equal(qg_state_add(&s, "tok_emb.weight", QG_BF16, 2, emb, &t), QG_OK);
  for (int64_t i = 0; i < 256 * 64; i++) ((uint16_t *)t->data)[i] = qg_f32_to_bf16(0.3f * qg_test_randf(&seed));
  assert_int_equal(qg_state_add(&s, "blocks.0.mlp.fc.weight", QG_F32, 2, fc, &t), QG_OK);
  for (int64_t i = 0; i < 128 * 64; i++) ((float *)t->data)[i] = 0.05f * qg_test_randf(&seed);
  assert_int_equal(qg_state_add(&s, "blocks.0.mlp.proj.weight", QG_F32, 2, pr, &t), QG_OK);
  for (int64_t i = 0; i < 64 * 128; i++) ((float *)t->data)[i] = 0.05f * qg_test_randf(&seed);
  assert_int_equal(qg_state_add(&s, "blocks.0.attn_scale", QG_F32, 1, vec, &t), QG_OK);
  for (int64_t i = 0; i < 64; i++) ((float *)t->data)[i] = 1 + qg_test_randf(&seed);
  assert_int_equal(qg_safetensors_write(path, &s), QG_OK);
  qg_state_free(&s);
}

static void assert_same_state(const qg_state *a, const qg_state *b) {
  assert_int_equal(a->n, b->n);
  for (int i = 0; i < a->n; i++) {
    const qg_tensor *x = &a->t[i], *y = qg_state_find(b, x->name);
    if (!y) fail_msg("tensor %s missing from the .pt", x->name);
    assert_int_equal(x->dtype, y->dtype);
    assert_int_equal(x->ndim, y->ndim);
    for (int d = 0; d < x->ndim; d++) assert_int_equal(x->shape[d], y->shape[d]);
    assert_int_equal(x->nbytes, y->nbytes);
    if (memcmp(x->data, y->data, x->nbytes)) fail_msg("tensor %s differs between the .qgz and the .pt", x->name);
  }
}

static void test_qgz_to_pt_exact(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char m[512], q[512], pt[512], args[2048], out[4096], err[4096];
  snprintf(m, sizeof m, "%s", qg_test_path(dir, "m.safetensors"));
  snprintf(q, sizeof q, "%s", qg_test_path(dir, "a.qgz"));
  snprintf(pt, sizeof pt, "%s", qg_test_path(dir, "b.pt"));
  write_model(m);
  static const char *specs[] = {
      "blocks.*.mlp.fc.*: rowwise bits=5 group=32; blocks.*.mlp.proj.*: turbo bits=3 group=64; tok_emb.weight: bf16",
      "blocks.*.mlp.fc.*: e8 bits=3; blocks.*.mlp.proj.*: lloydmax bits=4; tok_emb.weight: rowwise bits=6"};
  static const char *comps[] = {"rans", "brotli"};
  for (int k = 0; k < 2; k++) {
    snprintf(args, sizeof args, "quantize --model '%s' --spec '%s' --out '%s' --compress %s", m, specs[k], q, comps[k]);
    if (qg_test_run_cli(args, out, sizeof out, err, sizeof err)) fail_msg("%s", err);
    snprintf(args, sizeof args, "convert '%s' '%s'", q, pt);
    if (qg_test_run_cli(args, out, sizeof out, err, sizeof err)) fail_msg("%s", err);
    qg_state a, b;
    if (qg_qgz_load_state(q, &a)) fail_msg("%s", qg_last_error());
    if (qg_pt_load(pt, &b)) fail_msg("%s", qg_last_error());
    assert_same_state(&a, &b);
    /* not vacuous: the quantized tensors are float32 and differ from the model's weights */
    const qg_tensor *fc = qg_state_find(&b, "blocks.0.mlp.fc.weight");
    assert_non_null(fc);
    assert_int_equal(fc->dtype, QG_F32);
    qg_state src;
    assert_int_equal(qg_safetensors_read(m, &src), QG_OK);
    assert_memory_not_equal(fc->data, qg_state_find(&src, "blocks.0.mlp.fc.weight")->data, 128 * 64 * 4);
    qg_state_free(&src), qg_state_free(&a), qg_state_free(&b);
  }
  /* a bad output name or a corrupt artifact: exit 2, one line, nothing written */
  int before = qg_test_count_entries(dir);
  snprintf(args, sizeof args, "convert '%s' '%s'", q, qg_test_path(dir, "c.bin"));
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, ".pt"));
  static const uint8_t junk[40] = "QGZA\2\0\5\0\1\0\0\0";
  qg_test_write(qg_test_path(dir, "bad.qgz"), junk, sizeof junk);
  before++;
  snprintf(args, sizeof args, "convert '%s' '%s'", qg_test_path(dir, "bad.qgz"), qg_test_path(dir, "c.pt"));
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, "bad.qgz"));
  assert_int_equal(qg_test_count_entries(dir), before);
  qg_test_rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_qgz_to_pt_exact)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
