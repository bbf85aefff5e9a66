/* train/cuda/cuda_optim.h and the trainer on the GPU: Adam, Newton-Schulz, Muon and the
 * clip-range STE mask against their CPU twins (train/optim.c, train/qat.c) on fresh random
 * inputs (rows of the twin harness, tests/twin.h); then whole training runs with --device
 * cuda against the CPU trainer.
 *
 * Outputs a kernel overwrites (the Newton-Schulz result) are poisoned with NaN before the
 * GPU run, so an element never written fails; state it updates in place (p, m, v, the
 * momentum buffer, g) starts from the same random values on both sides. Error measure:
 * ||gpu - cpu|| / ||cpu|| over each whole output (NaN never passes). For Muon the measure
 * is taken on the update (p_after - p_before), not on p, whose size would hide it.
 *
 * Tolerances:
 *  - fp32 (Adam, momentum, Newton-Schulz, Muon update): 1e-5. Adam and the momentum are
 *    written to round as the C code does and are expected to be bit-identical (printed);
 *    Newton-Schulz differs from OpenBLAS in GEMM summation order only.
 *  - bf16 Newton-Schulz and the bf16 Muon update against the fp32 CPU twin: 1e-2.
 *  - the STE mask: exact (a max and a comparison).
 *  - training, fp32: each step's train loss within 1e-4 relative of the CPU trainer's
 *    (6 steps, the tiny reference configuration of tests/test_train.c); with rowwise QAT
 *    1e-3 (a weight that lands on the other side of a rounding boundary moves by a whole
 *    grid step); bf16: within 5e-2 (a sanity bound: the contest's mixed precision is not
 *    meant to reproduce fp32).
 *  - GPU resume: 6 steps straight equal 3 + 3 resumed, bit for bit (no atomics anywhere on
 *    the device path, so it is deterministic run to run).
 * Skipped, visibly, where there is no CUDA GPU or CUDA is not compiled in. */
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
#include "kernels/ops.h"
#include "tests/testlib.h"
#include "tests/twin.h"
#include "train/cuda/cuda_optim.h"
#include "train/train.h"

#define TOL_FP32 1e-5
#define TOL_BF16 1e-2
#define TOL_LOSS 1e-4
#define TOL_LOSS_QAT 1e-3
#define TOL_LOSS_BF16 5e-2

static const qg_ops *gpu;

/* The shared preamble (tests/twin.h): a visible skip without a GPU. */
#define NEED_GPU() (gpu = qg_twin_need_gpu())
#define OK QG_TEST_OK

/* ---- host and device buffers, freed together at the end of each test ------------------ */

#define MAX_BUFS 64
static void *hbufs[MAX_BUFS], *dbufs[MAX_BUFS];
static int nh, nd;

static void *hkeep(void *p) {
  assert_non_null(p);
  assert_true(nh < MAX_BUFS);
  return hbufs[nh++] = p;
}
static void release(void) {
  while (nh) free(hbufs[--nh]);
  while (nd) gpu->free(gpu, dbufs[--nd]);
}
static float *copy(const float *src, int64_t n) {
  float *p = hkeep(malloc(sizeof *p * (size_t)(n ? n : 1)));
  memcpy(p, src, sizeof *p * (size_t)n);
  return p;
}

/* ---- optimizer kernels: twin rows (tests/twin.h), the host function on the CPU and the
 * kernel on the GPU, on the same inputs ----------------------------------------------------- */

#define ROW QG_TWIN_ROW_TOL
#define WHY_FP32 "fp32 both sides (Adam and the momentum are expected bit-identical, printed)"
#define WHY_BF16 "bf16 Newton-Schulz against the fp32 CPU twin"

static void run_adam(qg_twin_io *io, const int64_t *sh) { /* n, t */
  int64_t n = sh[0];
  float *p = qg_twin_upf(io, qg_twin_rangeh(io, n, -1, 1), n), *g = qg_twin_upf(io, qg_twin_rangeh(io, n, -0.1f, 0.1f), n);
  float *m = qg_twin_upf(io, qg_twin_rangeh(io, n, -0.05f, 0.05f), n), *v = qg_twin_upf(io, qg_twin_rangeh(io, n, 0, 0.01f), n);
  if (io->on_cpu)
    qg_adam_step(p, g, m, v, n, 0.04, 0.9, 0.95, 1e-8, sh[1]);
  else
    OK(qg_cuda_adam_step(p, g, m, v, n, 0.04, 0.9, 0.95, 1e-8, sh[1]));
  qg_twin_result(io, "p", p, n, ROW);
  qg_twin_result(io, "m", m, n, ROW);
  qg_twin_result(io, "v", v, n, ROW);
}

static void run_ns(qg_twin_io *io, const int64_t *sh) { /* rows, cols, steps */
  int rows = (int)sh[0], cols = (int)sh[1], steps = (int)sh[2], mn = rows < cols ? rows : cols;
  int64_t n = (int64_t)rows * cols;
  float *G = qg_twin_upf(io, qg_twin_rangeh(io, n, -1, 1), n), *O = qg_twin_poison(io, n);
  if (io->on_cpu)
    qg_newton_schulz5(O, G, rows, cols, steps,
                      qg_twin_keep(io, malloc(sizeof(float) * (size_t)(3 * n + 2 * (int64_t)mn * mn))));
  else
    OK(qg_cuda_newton_schulz5(O, G, rows, cols, steps, io->precision));
  qg_twin_result(io, "out", O, n, ROW);
  qg_twin_result(io, "input after (left as it was)", G, n, 0.0);
}

/* The measure is taken on the update (p_after - p_before), not on p, whose size would hide it. */
static void run_muon(qg_twin_io *io, const int64_t *sh) { /* rows, cols */
  int rows = (int)sh[0], cols = (int)sh[1], mn = rows < cols ? rows : cols;
  int64_t n = (int64_t)rows * cols;
  float *p0 = qg_twin_rangeh(io, n, -0.1f, 0.1f), *g = qg_twin_upf(io, qg_twin_rangeh(io, n, -0.01f, 0.01f), n);
  float *buf = qg_twin_upf(io, qg_twin_rangeh(io, n, -0.01f, 0.01f), n), *p = qg_twin_upf(io, p0, n);
  if (io->on_cpu)
    qg_muon_step(p, g, buf, rows, cols, 0.04, 0.9, 5,
                 qg_twin_keep(io, malloc(sizeof(float) * (size_t)(5 * n + 2 * (int64_t)mn * mn))));
  else
    OK(qg_cuda_muon_step(p, g, buf, rows, cols, 0.04, 0.9, 5, io->precision));
  float *upd = qg_twin_down(io, p, n);
  for (int64_t i = 0; i < n; i++) upd[i] -= p0[i];
  qg_twin_result_host(io, "update", upd, n, ROW);
  qg_twin_result(io, "momentum buffer (fp32 at any precision)", buf, n, TOL_FP32);
}

static void run_qat_mask(qg_twin_io *io, const int64_t *sh) { /* rows, cols */
  int rows = (int)sh[0], cols = (int)sh[1];
  int64_t n = (int64_t)rows * cols;
  float *w = qg_twin_upf(io, qg_twin_rangeh(io, n, -1, 1), n), *q = qg_twin_upf(io, qg_twin_rangeh(io, n, -0.9f, 0.9f), n);
  float *g = qg_twin_upf(io, qg_twin_rangeh(io, n, 0.5f, 1.0f), n);
  if (io->on_cpu) { /* one tensor through the layout-level CPU twin: a one-parameter "layout" */
    qg_gpt_param prm;
    memset(&prm, 0, sizeof prm);
    snprintf(prm.name, sizeof prm.name, "t");
    prm.ndim = 2, prm.shape[0] = rows, prm.shape[1] = cols, prm.numel = n;
    qg_gpt_layout l = {&prm, 1, n};
    int quantized = 1;
    qg_qat qa;
    memset(&qa, 0, sizeof qa);
    qa.quantized = &quantized;
    qg_qat_mask(&qa, &l, w, q, g);
  } else {
    OK(qg_cuda_qat_mask(w, q, g, rows, cols));
  }
  qg_twin_result(io, "masked gradient", g, n, ROW);
}

/* Shapes: both orientations, square, not powers of two, the 9x512 baseline's matrices. */
#define NS_SHAPES {16, 48}, {48, 16}, {64, 64}, {37, 100}, {100, 37}, {256, 512}, {512, 512}, {1024, 512}, {512, 1024}
#define NS_STEPS(s) {16, 48, s}, {48, 16, s}, {64, 64, s}, {37, 100, s}, {100, 37, s}, {256, 512, s}, {512, 512, s}, \
    {1024, 512, s}, {512, 1024, s}

static const qg_twin_row rows[] = {
    {"adam", "n t", run_adam,
     {{1, 1}, {1, 3}, {1, 500}, {7, 1}, {7, 3}, {7, 500}, {1000, 1}, {1000, 3}, {1000, 500}, {262147, 1}, {262147, 3},
      {262147, 500}},
     TOL_FP32, WHY_FP32, QG_PRECISION_FP32},
    {"newton-schulz fp32", "rows cols steps", run_ns, {NS_STEPS(0), NS_STEPS(5)}, TOL_FP32,
     "fp32; cuBLAS and OpenBLAS differ in GEMM summation order only", QG_PRECISION_FP32},
    {"newton-schulz bf16", "rows cols steps", run_ns, {NS_STEPS(0), NS_STEPS(5)}, TOL_BF16, WHY_BF16, QG_PRECISION_BF16},
    {"muon fp32", "rows cols", run_muon, {NS_SHAPES}, TOL_FP32, "fp32; Newton-Schulz's GEMM order", QG_PRECISION_FP32},
    {"muon bf16", "rows cols", run_muon, {NS_SHAPES}, TOL_BF16, WHY_BF16, QG_PRECISION_BF16},
    {"qat clip mask", "rows cols", run_qat_mask, {{1, 5}, {64, 256}, {1024, 512}, {3, 1000}}, 0.0,
     "a max and a comparison: exact", QG_PRECISION_FP32},
};

/* A matrix that is not one is refused, naming the call. */
static void test_ns_refusal(void **st) {
  (void)st;
  NEED_GPU();
  assert_int_equal(qg_cuda_newton_schulz5(NULL, NULL, 0, 4, 5, QG_PRECISION_FP32), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "newton_schulz5"));
}

/* ---- whole training runs ---------------------------------------------------------------- */

static void tiny_config(qg_train_config *c, char *shard, size_t cap) {
  qg_train_config_defaults(c);
  snprintf(shard, cap, "%s/tests/data/train_ref/train.bin", QG_SOURCE_DIR);
  c->train_glob = shard;
  c->layers = 2, c->dim = 64, c->heads = 4, c->kv_heads = 2, c->mlp_mult = 2;
  c->seq_len = 32, c->batch_tokens = 128, c->grad_accum = 2;
  c->iterations = 6, c->warmdown_iters = 3, c->warmup_steps = 1;
}

typedef struct {
  double loss[64];
  int n;
} losses;

static void on_step(void *ctx, const qg_train_info *i) {
  losses *c = ctx;
  if ((i->ev == QG_TRAIN_EV_STEP || i->ev == QG_TRAIN_EV_QAT_ON) && c->n < 64) c->loss[c->n++] = i->train_loss;
}

/* Trains c on `device`; returns the final weights (malloc'd, kept for release()). */
static float *run(qg_train_config *c, const char *device, qg_precision prec, losses *out, int64_t *n) {
  qg_trainer t;
  c->device = device;
  c->precision = prec;
  OK(qg_trainer_init(&t, c, NULL, NULL));
  assert_int_equal(t.on_device, strcmp(device, "cpu") != 0);
  if (t.on_device && t.have_qat) { /* the test's spec exercises both device QAT paths */
    print_message("  qat on the gpu: %d tensors by the device kernel, %d by the host round trip\n", t.qat.n_device,
                  t.qat.n_host);
    assert_true(t.qat.n_device > 0 && t.qat.n_host > 0);
  }
  OK(qg_trainer_run(&t, on_step, out));
  *n = t.lay.total;
  float *w = copy(t.w, t.lay.total);
  qg_trainer_free(&t);
  return w;
}

static void compare_losses(const char *what, const losses *gpu_l, const losses *cpu_l, double tol) {
  assert_int_equal(gpu_l->n, cpu_l->n);
  double worst = 0;
  for (int i = 0; i < cpu_l->n; i++) {
    double rel = fabs(gpu_l->loss[i] - cpu_l->loss[i]) / cpu_l->loss[i];
    if (!(rel <= tol))
      fail_msg("%s step %d: gpu loss %.7f, cpu %.7f (rel %.2e > %.0e)", what, i + 1, gpu_l->loss[i], cpu_l->loss[i], rel,
               tol);
    if (rel > worst) worst = rel;
  }
  print_message("  %-52s worst step loss rel diff %.2e (last cpu %.6f gpu %.6f)\n", what, worst,
                cpu_l->loss[cpu_l->n - 1], gpu_l->loss[gpu_l->n - 1]);
}

static void test_train_vs_cpu(void **st) {
  (void)st;
  NEED_GPU();
  char shard[4096];
  qg_train_config c;
  int64_t n;
  tiny_config(&c, shard, sizeof shard);
  losses lc = {0}, lg = {0}, lb = {0};
  float *wc = run(&c, "cpu", QG_PRECISION_FP32, &lc, &n);
  float *wg = run(&c, "cuda", QG_PRECISION_FP32, &lg, &n);
  compare_losses("train fp32, 6 steps", &lg, &lc, TOL_LOSS);
  print_message("  %-52s rel err %.2e (reported, not bounded)\n", "final weights fp32 gpu vs cpu", qg_test_rel_err(wg, wc, n));
  run(&c, "cuda", QG_PRECISION_BF16, &lb, &n);
  compare_losses("train bf16, 6 steps", &lb, &lc, TOL_LOSS_BF16);
  /* QAT: rowwise rules fake-quantize on the device, the contest-int8 rule by the host
   * round trip; the clip STE mask on the device */
  losses qc = {0}, qgl = {0};
  c.qat_spec = "blocks.*.mlp.fc.weight: rowwise bits=4 clip=absmax; blocks.*.attn.c_q.weight: rowwise bits=5; "
               "blocks.*.attn.c_v.weight: contest-int8";
  c.qat_ste_clip = 1;
  run(&c, "cpu", QG_PRECISION_FP32, &qc, &n);
  run(&c, "cuda", QG_PRECISION_FP32, &qgl, &n);
  compare_losses("train fp32 + rowwise QAT (clip STE), 6 steps", &qgl, &qc, TOL_LOSS_QAT);
  release();
}

/* 6 steps straight == 3, checkpoint, resume for 3: bitwise on the GPU too (and the
 * checkpoints it writes are the safetensors the CPU trainer reads). */
static void test_train_resume(void **st) {
  (void)st;
  NEED_GPU();
  char shard[4096];
  qg_train_config c;
  int64_t n;
  tiny_config(&c, shard, sizeof shard);
  char *d1 = qg_test_tmpdir(), *d2 = qg_test_tmpdir();
  losses a = {0}, b = {0};
  c.out_dir = d1;
  float *w1 = run(&c, "cuda", QG_PRECISION_FP32, &a, &n);
  c.out_dir = d2;
  c.stop_at = 3;
  run(&c, "cuda", QG_PRECISION_FP32, &b, &n);
  assert_int_equal(b.n, 3);
  c.stop_at = 0;
  c.resume = 1;
  float *w2 = run(&c, "cuda", QG_PRECISION_FP32, &b, &n);
  assert_int_equal(b.n, 6);
  assert_memory_equal(a.loss, b.loss, sizeof(double) * 6);
  assert_memory_equal(w1, w2, sizeof(float) * (size_t)n);
  print_message("  gpu resume: 6 steps == 3 + 3 resumed, bit for bit\n");
  /* the GPU's checkpoint resumes on the CPU (same fingerprint; not bitwise across devices) */
  losses cc = {0};
  qg_trainer t;
  c.out_dir = d1;
  c.device = "cpu"; /* the same configuration: resuming at step 6 of 6 runs no step */
  OK(qg_trainer_init(&t, &c, NULL, NULL));
  assert_int_equal(t.step, 6);
  assert_memory_equal(t.w, w1, sizeof(float) * (size_t)n);
  OK(qg_trainer_run(&t, on_step, &cc));
  assert_int_equal(cc.n, 0);
  qg_trainer_free(&t);
  release();
  qg_test_rmdir(d1);
  qg_test_rmdir(d2);
}

int main(void) {
  const struct CMUnitTest extra[] = {cmocka_unit_test(test_ns_refusal), cmocka_unit_test(test_train_vs_cpu),
                                     cmocka_unit_test(test_train_resume)};
  return qg_twin_main("cuda optim", rows, sizeof rows / sizeof rows[0], NULL, 0, extra, 3);
}
