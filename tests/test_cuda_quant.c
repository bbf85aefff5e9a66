/* quant/cuda/cuda_quant_bridge.c, the host side of the CUDA quantizers, on any machine: the
 * device grid of a config against the CPU plug-in's own parsed options (every field the
 * kernels read, defaults included) and against the scales the CPU quantizer chooses (its
 * picks must be among the device's candidates), which configs the device takes,
 * qg_cuq_quantize against qg_quantize, the pipeline's quantize hook, and the CLI's
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

#include "kernels/cuda/cuda_device.h"
#include "quant/cuda/cuda_quant.h"
#include "quant/backend.h"
#include "quant/cuda/cuda_quant_bridge.h"
#include "quant/e8_quantizer.h"
#include "quant/gptq.h"
#include "quant/lloydmax_quantizer.h"
#include "quant/pipeline.h"
#include "quant/quant_internal.h"
#include "quant/rowwise.h"
#include "tests/testlib.h"

#define OK(expr)                                        \
  do {                                                  \
    qg_status s_ = (expr);                              \
    if (s_) fail_msg("%s: %s", #expr, qg_last_error()); \
  } while (0)

static qg_cuq_grid g; /* large (the multiplier tables): static */

/* The CPU plug-in's config and the grid the bridge makes of it. */
static void plan_of(const char *method, const char *opts, qg_qconfig *c, qg_cuq_gptq_opts *go) {
  OK(qg_qconfig_parse(method, opts, c));
  OK(qg_cuq_plan(c, &g, go));
}

static void grid_of(const char *method, const char *opts) {
  qg_qconfig c;
  plan_of(method, opts, &c, NULL);
  qg_qconfig_free(&c);
}

/* Every field the kernels read equals the rowwise plug-in's own parsed options. */
static void check_rowwise_fields(const qg_rowwise_opts *o) {
  int qmin, qmax;
  qg_rowwise_code_range(o, &qmin, &qmax);
  assert_int_equal(g.kind, QG_CUQ_ROWWISE);
  assert_int_equal(g.width, 1);
  assert_int_equal(g.bits, o->bits);
  assert_int_equal(g.group, o->group);
  assert_int_equal(g.full, o->full);
  assert_int_equal(g.clip, o->clip);
  assert_int_equal(g.steps, o->steps);
  assert_int_equal(g.objective, o->objective);
  assert_true(g.pct == o->pct && g.k == o->k && g.maxshrink == o->maxshrink);
  assert_int_equal(g.qmin, qmin);
  assert_int_equal(g.qmax, qmax);
}

static void test_rowwise_grid(void **st) {
  (void)st;
  const char *opts[] = {"bits=6", "bits=4 range=full group=64 clip=search steps=37 maxshrink=0.5 objective=hessian",
                        "bits=8 clip=sd k=3.5", "bits=2 clip=absmax", "bits=5 clip=sd"};
  for (size_t i = 0; i < sizeof opts / sizeof *opts; i++) {
    qg_qconfig c;
    plan_of("rowwise", opts[i], &c, NULL);
    check_rowwise_fields(qg_rowwise_opts_of(c.q, c.cfg));
    qg_qconfig_free(&c);
  }
  grid_of("rowwise", "bits=6"); /* the code ranges themselves, by definition */
  assert_int_equal(g.qmin, -31);
  assert_int_equal(g.qmax, 31);
  grid_of("rowwise", "bits=4 range=full");
  assert_int_equal(g.qmin, -8);
  assert_int_equal(g.qmax, 7);
}

static float *rand_rows(int64_t n, uint64_t seed) {
  float *w = malloc(sizeof *w * (size_t)n);
  for (int64_t i = 0; i < n; i++) w[i] = qg_test_randf(&seed) * (1.0f + (float)(i % 7));
  return w;
}

/* Round-to-nearest on the CPU plug-in; its fp16 "scales" section into sc (as floats). */
static void cpu_scales(const qg_qconfig *c, const float *w, int64_t rows, int64_t cols, float *sc, int64_t nsc) {
  qg_qinput in = {.name = "t", .w = w, .rows = rows, .cols = cols, .dtype = QG_F32};
  qg_qtensor q;
  OK(qg_quantize(c, &in, &q));
  const qg_qsection *ss = qg_qtensor_find(&q, "scales");
  assert_non_null(ss);
  assert_int_equal(ss->count, nsc);
  for (int64_t i = 0; i < nsc; i++) sc[i] = qg_f16_to_f32(((const uint16_t *)ss->data)[i]);
  qg_qtensor_free(&q);
}

static double row_rms(const float *x, int64_t n) {
  double ss = 0;
  for (int64_t j = 0; j < n; j++) ss += (double)x[j] * x[j];
  return sqrt(ss / (double)n);
}

static void test_lloydmax_grid(void **st) {
  (void)st;
  qg_qconfig c;
  plan_of("lloydmax", "bits=3 steps=9 lo=0.4 hi=3", &c, NULL);
  const qg_lloydmax_opts *o = qg_lloydmax_opts_of(c.q, c.cfg);
  assert_int_equal(g.kind, QG_CUQ_LLOYDMAX);
  assert_int_equal(g.bits, o->bits);
  assert_int_equal(g.group, o->group);
  assert_int_equal(g.steps, o->steps);
  assert_int_equal(g.objective, o->objective);
  assert_int_equal(g.lm_search, 1);
  /* Every scale the CPU plug-in chose is one of the device's candidates: the RMS itself
   * or the RMS times one of the bridge's multipliers. */
  int64_t rows = 40, cols = 96;
  float *w = rand_rows(rows * cols, 11), sc[40];
  cpu_scales(&c, w, rows, cols, sc, rows);
  int off_grid = 0, searched = 0;
  for (int64_t r = 0; r < rows; r++) {
    double rms = row_rms(w + r * cols, cols);
    int found = sc[r] == qg_f16r(rms);
    for (int i = 0; !found && i < g.steps; i++) found = sc[r] == qg_f16r(rms * g.mult[0][i]);
    off_grid += !found;
    searched += sc[r] != qg_f16r(rms);
  }
  assert_int_equal(off_grid, 0);
  if (searched < rows / 4) fail_msg("only %d of %lld scales moved off the RMS", searched, (long long)rows);
  free(w);
  qg_qconfig_free(&c);
  grid_of("lloydmax", "bits=2 scale=rms");
  assert_int_equal(g.lm_search, 0);
}

static void test_e8_grid(void **st) {
  (void)st;
  const char *opts[] = {"cb=e8p bits=4 steps=10", "cb=e8p bits=3", "cb=ball bits=1 steps=1", "cb=e8p bits=2"};
  for (size_t k = 0; k < sizeof opts / sizeof *opts; k++) {
    qg_qconfig c;
    plan_of("e8", opts[k], &c, NULL);
    const qg_e8_opts *o = qg_e8_opts_of(c.q, c.cfg);
    assert_int_equal(g.kind, QG_CUQ_E8);
    assert_int_equal(g.width, 8);
    assert_int_equal(g.nstages, o->nstages);
    assert_int_equal(g.steps, o->steps);
    assert_int_equal(g.steps2, o->steps2);
    assert_true(g.lo == o->lo && g.hi == o->hi);
    for (int s = 0; s < o->nstages; s++) {
      assert_ptr_equal(g.cb[s], o->stage[s]);
      assert_true(g.unit[s] == o->unit[s]);
    }
    for (int t = 0; t < 2; t++) {
      assert_memory_equal(g.mult[t], o->search[t].mult, sizeof(double) * (size_t)o->search[t].n);
      assert_memory_equal(g.up[t], o->search[t].up, sizeof g.up[t]);
      assert_memory_equal(g.dn[t], o->search[t].dn, sizeof g.dn[t]);
    }
    qg_qconfig_free(&c);
  }
  grid_of("e8", "cb=e8p bits=4");
  assert_ptr_equal(g.cb[1], g.cb[0]);
  grid_of("e8", "cb=e8p bits=3");
  assert_ptr_equal(g.cb[1], qg_e8_codebook_get("ball1"));
  /* One stage: every scale the CPU plug-in chose is base times a candidate of the
   * bridge's tables (a multiplier, refined by up/dn at most once per round). */
  qg_qconfig c;
  plan_of("e8", "cb=e8p bits=2 steps=6", &c, NULL);
  int64_t rows = 12, cols = 64;
  float *w = rand_rows(rows * cols, 17), sc[12];
  cpu_scales(&c, w, rows, cols, sc, rows);
  int off_grid = 0;
  for (int64_t r = 0; r < rows; r++) {
    double base = row_rms(w + r * cols, cols) / g.unit[0];
    int found = 0;
    for (int i = 0; !found && i < g.steps; i++)
      for (int a = 0; !found && a < 3; a++)
        for (int b = 0; !found && b < 3; b++) {
          double m = g.mult[0][i];
          if (a) m *= a == 1 ? g.up[0][0] : g.dn[0][0];
          if (b) m *= b == 1 ? g.up[0][1] : g.dn[0][1];
          found = sc[r] == qg_f16r(base * m);
        }
    off_grid += !found;
  }
  assert_int_equal(off_grid, 0);
  free(w);
  qg_qconfig_free(&c);
  /* a ball the device has no cached codebook for */
  OK(qg_qconfig_parse("e8", "cb=ball bits=1.5", &c));
  assert_int_equal(qg_cuq_plan(&c, &g, NULL), QG_ERR_UNSUPPORTED);
  assert_int_equal(qg_cuq_grid_from_canon("e8", c.canon, &g), QG_ERR_UNSUPPORTED);
  assert_int_equal(qg_cuq_takes(&c, 16, 64), 0);
  qg_qconfig_free(&c);
  assert_int_equal(qg_cuq_grid_from_canon("turbo", "bits=4", &g), QG_ERR_UNSUPPORTED);
}

/* The options the device path sees are the CPU plug-in's, defaults included: option
 * strings that leave out a key whose default is derived (rowwise k from bits; gptq
 * static_groups = act_order), through every way into the bridge. */
static void test_bridge_sees_cpu_defaults(void **st) {
  (void)st;
  const char *rw[] = {"bits=5 clip=sd", "bits=2 clip=sd", "bits=7 clip=sd group=32", "bits=6"};
  for (size_t i = 0; i < sizeof rw / sizeof *rw; i++) {
    qg_qconfig c;
    plan_of("rowwise", rw[i], &c, NULL);
    const qg_rowwise_opts *o = qg_rowwise_opts_of(c.q, c.cfg);
    check_rowwise_fields(o);
    OK(qg_cuq_grid_from_canon("rowwise", rw[i], &g)); /* the raw string, not the canonical one */
    check_rowwise_fields(o);
    qg_qconfig_free(&c);
  }
  struct {
    const char *o, *inner;
  } gp[] = {{"act_order=1 group=32", "rowwise"},
            {"bits=4 act_order=1", "rowwise"},
            {"grid=lloydmax bits=3 act_order=1", "lloydmax"},
            {"grid=e8 bits=2 percdamp=0.05 blocksize=64", "e8"},
            {"bits=6", "rowwise"}};
  for (size_t i = 0; i < sizeof gp / sizeof *gp; i++) {
    qg_qconfig c;
    qg_cuq_gptq_opts go;
    plan_of("gptq", gp[i].o, &c, &go);
    const qg_gptq_opts *o = qg_gptq_opts_of(c.q, c.cfg);
    assert_non_null(o);
    assert_string_equal(o->grid.q->name, gp[i].inner);
    assert_int_equal(go.act_order, o->act_order);
    assert_int_equal(go.static_groups, o->static_groups);
    assert_int_equal(go.blocksize, o->blocksize);
    assert_true(go.percdamp == o->percdamp);
    if (o->act_order) assert_int_equal(go.static_groups, 1);
    const qg_rowwise_opts *ro = qg_rowwise_opts_of(o->grid.q, o->grid.cfg);
    if (ro) check_rowwise_fields(ro);
    else if (qg_lloydmax_opts_of(o->grid.q, o->grid.cfg)) assert_int_equal(g.kind, QG_CUQ_LLOYDMAX);
    else assert_int_equal(g.kind, QG_CUQ_E8);
    qg_qconfig_free(&c);
  }
  qg_qconfig c;
  qg_cuq_gptq_opts go;
  memset(&go, 0xff, sizeof go);
  plan_of("rowwise", "bits=6", &c, &go); /* not gptq: its options are zero */
  assert_int_equal(go.act_order, 0);
  assert_int_equal(go.static_groups, 0);
  assert_int_equal(go.blocksize, 0);
  qg_qconfig_free(&c);
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

/* qg_cuq_quantize against the CPU quantizer (qg_quantize) on the same input, section for
 * section and bit for bit: configs the device declines (other methods, tensors beyond the
 * kernels' limits, a codebook it lacks) go to the CPU on any machine; configs it takes run
 * on the device where there is one (round-to-nearest is bit-identical to the CPU there). */
static void test_fallback_identical(void **st) {
  (void)st;
  struct {
    const char *m, *o;
    int64_t rows, cols;
    int device; /* the device takes it */
  } cases[] = {
      {"turbo", "bits=3 group=32", 24, 64, 0},
      {"rowwise", "bits=6 clip=pct", 2, 8200, 0}, /* wider than the device's percentile sort */
      {"e8", "cb=ball bits=1.5", 8, 64, 0},        /* no device codebook */
      {"e8", "cb=e8p bits=2", 2, 4096, 0},         /* an e8 group beyond the device's */
      {"fp16", "", 24, 64, 0},
      {"contest-int8", "", 24, 64, 0},
      {"rowwise", "bits=6", 24, 64, 1},
      {"rowwise", "bits=5 clip=sd group=32", 24, 64, 1},
      {"lloydmax", "bits=3 group=32", 24, 64, 1},
      {"e8", "cb=e8p bits=3", 24, 64, 1},
  };
  int skipped = 0;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    int64_t rows = cases[i].rows, cols = cases[i].cols;
    float *w = rand_rows(rows * cols, 5 + i);
    qg_qconfig c;
    OK(qg_qconfig_parse(cases[i].m, cases[i].o, &c));
    if (qg_cuq_takes(&c, rows, cols) != cases[i].device)
      fail_msg("%s %s on %lld x %lld: expected takes=%d", cases[i].m, cases[i].o, (long long)rows, (long long)cols,
               cases[i].device);
    if (cases[i].device && !qg_cuq_available()) {
      skipped++;
      qg_qconfig_free(&c);
      free(w);
      continue;
    }
    qg_qinput in = {.name = "t", .w = w, .rows = rows, .cols = cols, .dtype = QG_F32, .seed = 9};
    qg_qtensor a, b;
    OK(qg_quantize(&c, &in, &a));
    OK(qg_cuq_quantize(&c, &in, &b));
    assert_string_equal(a.method, b.method);
    assert_string_equal(a.options, b.options);
    assert_int_equal(a.nsec, b.nsec);
    for (int k = 0; k < a.nsec; k++) {
      assert_string_equal(a.sec[k].name, b.sec[k].name);
      assert_int_equal(a.sec[k].kind, b.sec[k].kind);
      assert_int_equal(a.sec[k].bits, b.sec[k].bits);
      assert_int_equal(a.sec[k].count, b.sec[k].count);
      size_t el = a.sec[k].kind == QG_SEC_CODES || a.sec[k].kind == QG_SEC_F32 ? 4 : a.sec[k].kind == QG_SEC_RAW ? 1 : 2;
      if (memcmp(a.sec[k].data, b.sec[k].data, el * (size_t)a.sec[k].count))
        fail_msg("%s %s: section '%s' differs from the CPU quantizer's", cases[i].m, cases[i].o, a.sec[k].name);
    }
    qg_qtensor_free(&a), qg_qtensor_free(&b);
    qg_qconfig_free(&c);
    free(w);
  }
  if (skipped) print_message("SKIP: %d device configs of test_fallback_identical (no GPU here)\n", skipped);
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
  const qg_quant_backend *qb = NULL; /* and the quantizers' table is never the CUDA one */
  s = qg_quant_backend_by_device("cuda", &qb);
  assert_true(s == QG_ERR_UNSUPPORTED || s == QG_ERR_DEVICE);
  assert_int_equal(qb->kind, QG_BACKEND_CPU);
  OK(qg_quant_backend_by_device("auto", &qb));
  assert_int_equal(qb->kind, QG_BACKEND_CPU);
}

typedef struct {
  int calls;
} hook_ctx;

static int counting_supports(const qg_quant_backend *b, const qg_qconfig *c, int64_t rows, int64_t cols) {
  (void)b, (void)c, (void)rows, (void)cols;
  return 1;
}

static qg_status counting_quantize(const qg_quant_backend *b, const qg_qconfig *c, const qg_qinput *in,
                                   qg_qtensor *out) {
  ((hook_ctx *)b->ctx)->calls++;
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
  qg_quant_backend counting = {
      .kind = QG_BACKEND_CPU, .name = "counting", .supports = counting_supports, .quantize = counting_quantize, .ctx = &hc};
  qg_quantize_opts with = {.backend = &counting}, without = {0};
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
      cmocka_unit_test(test_e8_grid),        cmocka_unit_test(test_bridge_sees_cpu_defaults),
      cmocka_unit_test(test_takes),
      cmocka_unit_test(test_fallback_identical), cmocka_unit_test(test_no_gpu_errors),
      cmocka_unit_test(test_pipeline_hook),  cmocka_unit_test(test_cli_device),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
