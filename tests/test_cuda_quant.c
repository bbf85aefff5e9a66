/* kernels/cuda_quant_bridge.c, the host side of the CUDA quantizers, on any machine: the
 * canonical options -> device grid translation (every field the kernels read, the search
 * multipliers computed with the CPU quantizers' own formulas), which configs the device
 * takes, the CPU fallback of qg_cuq_quantize, the pipeline's quantize hook, and the CLI's
 * --device checks. The device itself is tested in test_cuda_quant_gpu.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_device.h"
#include "kernels/cuda_quant.h"
#include "kernels/cuda_quant_bridge.h"
#include "quant/pipeline.h"
#include "tests/testlib.h"

#define OK(expr)                                        \
  do {                                                  \
    qg_status s_ = (expr);                              \
    if (s_) fail_msg("%s: %s", #expr, qg_last_error()); \
  } while (0)

static qg_cuq_grid g; /* large (the multiplier tables): static */

static void grid_of(const char *method, const char *opts) {
  qg_qconfig c;
  OK(qg_qconfig_parse(method, opts, &c)); /* through the canonical string, as the bridge does */
  OK(qg_cuq_grid_from_canon(method, c.canon, &g));
  qg_qconfig_free(&c);
}

static void test_rowwise_grid(void **st) {
  (void)st;
  grid_of("rowwise", "bits=6");
  assert_int_equal(g.kind, QG_CUQ_ROWWISE);
  assert_int_equal(g.width, 1);
  assert_int_equal(g.bits, 6);
  assert_int_equal(g.qmin, -31);
  assert_int_equal(g.qmax, 31);
  assert_int_equal(g.clip, QG_CUQ_CLIP_PCT);
  assert_true(g.pct == 99.99984);
  grid_of("rowwise", "bits=4 range=full group=64 clip=search steps=37 maxshrink=0.5 objective=hessian");
  assert_int_equal(g.qmin, -8);
  assert_int_equal(g.qmax, 7);
  assert_int_equal(g.group, 64);
  assert_int_equal(g.clip, QG_CUQ_CLIP_SEARCH);
  assert_int_equal(g.steps, 37);
  assert_true(g.maxshrink == 0.5);
  assert_int_equal(g.objective, 1);
  grid_of("rowwise", "bits=8 clip=sd k=3.5");
  assert_int_equal(g.clip, QG_CUQ_CLIP_SD);
  assert_true(g.k == 3.5);
  grid_of("rowwise", "bits=2 clip=absmax");
  assert_int_equal(g.clip, QG_CUQ_CLIP_ABSMAX);
  assert_int_equal(g.qmin, -1);
  assert_int_equal(g.qmax, 1);
}

static void test_lloydmax_grid(void **st) {
  (void)st;
  grid_of("lloydmax", "bits=3 group=128 steps=9 lo=0.4 hi=3");
  assert_int_equal(g.kind, QG_CUQ_LLOYDMAX);
  assert_int_equal(g.bits, 3);
  assert_int_equal(g.group, 128);
  assert_int_equal(g.lm_search, 1);
  assert_int_equal(g.steps, 9);
  for (int i = 0; i < 9; i++) /* turbo.c lm_set_scale's multipliers, bit for bit */
    assert_true(g.mult[0][i] == 0.4 * pow(3.0 / 0.4, (double)i / 8.0));
  grid_of("lloydmax", "bits=2 scale=rms");
  assert_int_equal(g.lm_search, 0);
}

static void test_e8_grid(void **st) {
  (void)st;
  grid_of("e8", "cb=e8p bits=4 steps=10");
  assert_int_equal(g.kind, QG_CUQ_E8);
  assert_int_equal(g.width, 8);
  assert_int_equal(g.nstages, 2);
  assert_ptr_equal(g.cb[0], qg_e8_codebook_get("e8p"));
  assert_ptr_equal(g.cb[1], g.cb[0]);
  assert_int_equal(g.steps2, 5);
  double ratio = pow(2.0 / 0.5, 1.0 / 9);
  for (int i = 0; i < 10; i++) assert_true(g.mult[0][i] == 0.5 * pow(ratio, i));
  assert_true(g.up[0][0] == sqrt(ratio) && g.dn[0][0] == pow(sqrt(ratio), -1));
  assert_true(g.up[0][1] == sqrt(sqrt(ratio)));
  assert_true(g.unit[0] > 0.5f && g.unit[0] < 2.0f);
  grid_of("e8", "cb=e8p bits=3");
  assert_ptr_equal(g.cb[1], qg_e8_codebook_get("ball1"));
  assert_int_equal(g.steps2, 6);
  grid_of("e8", "cb=ball bits=1 steps=1");
  assert_int_equal(g.nstages, 1);
  assert_true(g.mult[0][0] == sqrt(0.5 * 2.0)); /* one step: the geometric middle */
  /* a ball the device has no cached codebook for */
  qg_qconfig c;
  OK(qg_qconfig_parse("e8", "cb=ball bits=1.5", &c));
  assert_int_equal(qg_cuq_grid_from_canon("e8", c.canon, &g), QG_ERR_UNSUPPORTED);
  assert_int_equal(qg_cuq_takes(&c, 16, 64), 0);
  qg_qconfig_free(&c);
  assert_int_equal(qg_cuq_grid_from_canon("turbo", "bits=4", &g), QG_ERR_UNSUPPORTED);
}

static void test_takes(void **st) {
  (void)st;
  struct {
    const char *m, *o;
    int64_t rows, cols;
    int takes;
  } cases[] = {
      {"rowwise", "bits=6", 512, 512, 1},
      {"rowwise", "bits=6 clip=pct", 4, 8193, 0},    /* the percentile sort's limit */
      {"rowwise", "bits=6 clip=absmax", 4, 8193, 1}, /* no sort: no limit */
      {"rowwise", "bits=6 group=64", 4, 8192 * 2, 1},
      {"lloydmax", "bits=3", 100, 300, 1},
      {"e8", "cb=e8p bits=2", 16, 4096, 0}, /* e8 groups <= 2048 */
      {"e8", "cb=e8p bits=2 group=512", 16, 4096, 1},
      {"gptq", "bits=6", 512, 1024, 1},
      {"gptq", "grid=lloydmax bits=3 act_order=1", 64, 200, 1},
      {"gptq", "grid=e8 bits=2", 64, 512, 1},
      {"turbo", "bits=4", 64, 512, 0},
      {"fp16", "", 64, 512, 0},
      {"rowwise", "bits=6", 70000, 8, 0}, /* rows beyond the grid's launch limit */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    qg_qconfig c;
    OK(qg_qconfig_parse(cases[i].m, cases[i].o, &c));
    if (qg_cuq_takes(&c, cases[i].rows, cases[i].cols) != cases[i].takes)
      fail_msg("%s %s on %lld x %lld: expected takes=%d", cases[i].m, cases[i].o, (long long)cases[i].rows,
               (long long)cases[i].cols, cases[i].takes);
    qg_qconfig_free(&c);
  }
}

/* Configs the device does not take are quantized by the CPU, with identical results. */
static void test_fallback_identical(void **st) {
  (void)st;
  uint64_t rng = 5;
  int64_t rows = 24, cols = 64;
  float *w = malloc(sizeof *w * (size_t)(rows * cols));
  for (int64_t i = 0; i < rows * cols; i++) w[i] = qg_test_randf(&rng);
  qg_qconfig c;
  OK(qg_qconfig_parse("turbo", "bits=3 group=32", &c));
  qg_qinput in = {.name = "t", .w = w, .rows = rows, .cols = cols, .dtype = QG_F32, .seed = 9};
  qg_qtensor a, b;
  OK(qg_quantize(&c, &in, &a));
  OK(qg_cuq_quantize(&c, &in, &b));
  assert_string_equal(a.method, b.method);
  assert_string_equal(a.options, b.options);
  assert_int_equal(a.nsec, b.nsec);
  for (int i = 0; i < a.nsec; i++) {
    assert_int_equal(a.sec[i].count, b.sec[i].count);
    size_t el = a.sec[i].kind == QG_SEC_CODES ? 4 : a.sec[i].kind == QG_SEC_RAW ? 1 : a.sec[i].kind == QG_SEC_F32 ? 4 : 2;
    assert_memory_equal(a.sec[i].data, b.sec[i].data, el * (size_t)a.sec[i].count);
  }
  qg_qtensor_free(&a), qg_qtensor_free(&b);
  qg_qconfig_free(&c);
  free(w);
}

/* Without a GPU the device entry points fail cleanly (a status and a message, no crash). */
static void test_no_gpu_errors(void **st) {
  (void)st;
  if (qg_cuq_available()) {
    print_message("SKIP: a GPU is present; the no-GPU error paths are not reachable here\n");
    skip();
  }
  grid_of("rowwise", "bits=6");
  float w[16] = {1, 2, 3};
  qg_cuq_result r;
  qg_status s = qg_cuq_rtn(&g, w, 2, 8, NULL, &r);
  assert_true(s == QG_ERR_UNSUPPORTED || s == QG_ERR_DEVICE);
  assert_true(strlen(qg_last_error()) > 10);
  assert_null(r.codes);
  qg_cuq_hacc *h;
  s = qg_cuq_hacc_create(8, &h);
  assert_true(s == QG_ERR_UNSUPPORTED || s == QG_ERR_DEVICE);
  assert_null(h);
}

typedef struct {
  int calls;
} hook_ctx;

static qg_status counting_hook(void *ctx, const qg_qconfig *c, const qg_qinput *in, qg_qtensor *out) {
  ((hook_ctx *)ctx)->calls++;
  return qg_quantize(c, in, out);
}

static void test_pipeline_hook(void **st) {
  (void)st;
  qg_state s;
  qg_state_init(&s);
  uint64_t rng = 3;
  const char *names[] = {"a.weight", "b.weight"};
  for (int k = 0; k < 2; k++) {
    int64_t shape[2] = {16, 96};
    qg_tensor *t;
    OK(qg_state_add(&s, names[k], QG_F32, 2, shape, &t));
    float *p = t->data;
    for (int64_t i = 0; i < 16 * 96; i++) p[i] = qg_test_randf(&rng);
  }
  qg_spec spec;
  OK(qg_spec_parse_inline("*.weight: rowwise bits=5", &spec));
  hook_ctx hc = {0};
  qg_quantize_opts with = {.quantize = counting_hook, .quantize_ctx = &hc}, without = {0};
  qg_qmodel a, b;
  OK(qg_quantize_model(&s, &spec, &with, &a));
  OK(qg_quantize_model(&s, &spec, &without, &b));
  assert_int_equal(hc.calls, 2);
  assert_int_equal(a.n, b.n);
  for (int i = 0; i < a.n; i++) {
    assert_true(a.t[i].mse == b.t[i].mse);
    assert_int_equal(a.t[i].packed_bytes, b.t[i].packed_bytes);
  }
  qg_qmodel_free(&a), qg_qmodel_free(&b);
  qg_spec_free(&spec);
  qg_state_free(&s);
}

static void test_cli_device(void **st) {
  (void)st;
  char out[4096], err[4096];
  int rc = qg_test_run_cli("quantize --model /nonexistent.pt --spec '*: rowwise' --out /tmp/x.qgz --device tpu",
                           out, sizeof out, err, sizeof err);
  assert_int_equal(rc, 2);
  assert_non_null(strstr(err, "unknown device 'tpu'"));
  if (!qg_cuq_available()) { /* asking for cuda without one is an error, never a CPU run */
    rc = qg_test_run_cli("quantize --model /nonexistent.pt --spec '*: rowwise' --out /tmp/x.qgz --device cuda", out,
                         sizeof out, err, sizeof err);
    assert_true(rc != 0);
    assert_true(strstr(err, "CUDA") || strstr(err, "cuda") || strstr(err, "GPU"));
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rowwise_grid),   cmocka_unit_test(test_lloydmax_grid),
      cmocka_unit_test(test_e8_grid),        cmocka_unit_test(test_takes),
      cmocka_unit_test(test_fallback_identical), cmocka_unit_test(test_no_gpu_errors),
      cmocka_unit_test(test_pipeline_hook),  cmocka_unit_test(test_cli_device),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
