/* train/: the trainer against the PyTorch reference of train_gpt.py (per-step losses,
 * tests/reference/make_train_refs.py), bitwise resume, the warmup reset, the optimizers
 * and schedule against independent formulas, the loader's wrap-around, QAT, bad input. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "io/safetensors.h"
#include "kernels/cuda/cuda_device.h"
#include "tests/testlib.h"
#include "train/train.h"

/* Relative tolerance on each step's train loss against PyTorch (fp32 both sides, NS fp32). */
#define REF_TOL 1e-4

static char ref_dir[4096];

static void ref_path(char *buf, size_t cap, const char *name) {
  snprintf(buf, cap, "%s/tests/data/train_ref/%s", QG_SOURCE_DIR, name);
}

/* The reference run's configuration (make_train_refs.py). */
static void tiny_config(qg_train_config *c, char *shard, size_t cap) {
  qg_train_config_defaults(c);
  ref_path(shard, cap, "train.bin");
  c->train_glob = shard;
  c->layers = 2, c->dim = 64, c->heads = 4, c->kv_heads = 2, c->mlp_mult = 2;
  c->seq_len = 32, c->batch_tokens = 128, c->grad_accum = 2;
  c->iterations = 20, c->warmdown_iters = 5, c->warmup_steps = 0;
}

typedef struct {
  double loss[64];
  int n, saved, qat_on_step;
} collect;

static void on_step(void *ctx, const qg_train_info *i) {
  collect *c = ctx;
  if (i->ev == QG_TRAIN_EV_STEP || i->ev == QG_TRAIN_EV_QAT_ON) {
    if (c->n < 64) c->loss[c->n++] = i->train_loss;
    if (i->ev == QG_TRAIN_EV_QAT_ON) c->qat_on_step = i->step;
  }
  if (i->ev == QG_TRAIN_EV_SAVED) c->saved++;
}

static void test_pytorch_reference(void **st) {
  (void)st;
  char shard[4096], init[4096], losses[4096];
  qg_train_config c;
  tiny_config(&c, shard, sizeof shard);
  ref_path(init, sizeof init, "init.safetensors");
  ref_path(losses, sizeof losses, "losses.txt");
  c.init_from = init;
  FILE *f = fopen(losses, "r");
  assert_non_null(f);
  double ref[20];
  char line[512];
  int n = 0;
  while (fgets(line, sizeof line, f))
    if (line[0] != '#' && n < 20) ref[n++] = strtod(line, NULL);
  fclose(f);
  assert_int_equal(n, 20);
  qg_trainer t;
  collect col = {0};
  assert_int_equal(qg_trainer_init(&t, &c, NULL, NULL), QG_OK);
  assert_int_equal(qg_trainer_run(&t, on_step, &col), QG_OK);
  assert_int_equal(col.n, 20);
  double worst = 0;
  for (int i = 0; i < 20; i++) {
    double rel = fabs(col.loss[i] - ref[i]) / ref[i];
    if (rel > worst) worst = rel;
    if (rel > REF_TOL) fail_msg("step %d: loss %.7f, PyTorch %.7f (rel %.2e)", i + 1, col.loss[i], ref[i], rel);
  }
  print_message("20 steps vs PyTorch: worst relative loss difference %.2e (first %.7f, last %.7f)\n", worst,
                col.loss[0], col.loss[19]);
  qg_trainer_free(&t);
}

/* Runs a tiny training into dir; returns the final weights (malloc'd) and losses. */
static float *train_into(qg_train_config *c, collect *col, int64_t *n) {
  qg_trainer t;
  assert_int_equal(qg_trainer_init(&t, c, NULL, NULL), QG_OK);
  assert_int_equal(qg_trainer_run(&t, on_step, col), QG_OK);
  *n = t.lay.total;
  float *w = malloc(sizeof(float) * (size_t)*n);
  memcpy(w, t.w, sizeof(float) * (size_t)*n);
  qg_trainer_free(&t);
  return w;
}

/* 20 iterations straight == 10, stop, resume for 10: bitwise equal weights and losses. */
static void test_resume_bitwise(void **st) {
  (void)st;
  char shard[4096];
  qg_train_config c;
  tiny_config(&c, shard, sizeof shard);
  c.qat_spec = "blocks.*.mlp.fc.weight: rowwise bits=4 clip=absmax";
  c.late_qat = 0.5; /* switches on during the warmdown, after the resume point */
  char *d1 = qg_test_tmpdir(), *d2 = qg_test_tmpdir();
  collect a = {0}, b = {0};
  int64_t n1, n2;
  c.out_dir = d1;
  float *w1 = train_into(&c, &a, &n1);
  c.out_dir = d2;
  c.stop_at = 10;
  c.save_every = 4;
  float *wpart = train_into(&c, &b, &n2);
  assert_int_equal(b.n, 10);
  assert_int_equal(b.saved, 3); /* steps 4, 8 and the stop at 10 */
  c.stop_at = 0;
  c.resume = 1;
  float *w2 = train_into(&c, &b, &n2);
  assert_int_equal(b.n, 20);
  assert_int_equal(n1, n2);
  assert_memory_equal(w1, w2, sizeof(float) * (size_t)n1);
  assert_memory_equal(a.loss, b.loss, sizeof(double) * 20);
  /* lr_mul before step index 17 is (20 - 17) / 5 = 0.6, before 18 it is 0.4 < 0.5: on for the 19th step */
  assert_int_equal(a.qat_on_step, 19);
  assert_int_equal(b.qat_on_step, 19);
  assert_true(memcmp(wpart, w2, sizeof(float) * (size_t)n1) != 0);
  /* the float checkpoint loads as a model-only safetensors */
  qg_state s;
  assert_int_equal(qg_safetensors_read(qg_test_path(d2, "final_model.safetensors"), &s), QG_OK);
  assert_int_equal(s.n, 2 * 10 + 2);
  qg_state_free(&s);
  /* resuming under another configuration is refused with the differing line */
  c.dim = 32;
  qg_trainer t;
  assert_int_equal(qg_trainer_init(&t, &c, NULL, NULL), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "another configuration"));
  assert_non_null(strstr(qg_last_error(), "dim=64"));
  free(w1), free(w2), free(wpart);
  qg_test_rmdir(d1);
  qg_test_rmdir(d2);
}

/* Counts the warmup events and keeps their losses. */
typedef struct {
  int n;
  double loss[8];
} warm_events;

static void on_warm(void *ctx, const qg_train_info *i) {
  warm_events *w = ctx;
  if (i->ev == QG_TRAIN_EV_WARMUP && w->n < 8) w->loss[w->n++] = i->train_loss;
}

/* NULL when two CPU trainers hold bitwise the same weights, optimizer state and loader
 * position (everything a step reads), else the first part that differs. */
static const char *state_diff(const qg_trainer *a, const qg_trainer *b) {
  size_t bytes = sizeof(float) * (size_t)a->lay.total;
  if (a->lay.total != b->lay.total) return "layout";
  if (memcmp(a->w, b->w, bytes)) return "weights";
  if (memcmp(a->adam_m, b->adam_m, bytes) || memcmp(a->adam_v, b->adam_v, bytes) || a->adam_t != b->adam_t)
    return "Adam state";
  if (memcmp(a->muon_buf, b->muon_buf, bytes)) return "Muon momentum";
  if (a->data.pos != b->data.pos) return "loader position";
  if (a->step != b->step) return "step";
  return NULL;
}

/* Warmup steps run (on real batches) and are then undone: weights, optimizer and loader
 * are back at the un-warmed start, so the run equals one without warmup, step for step.
 * The contrast, a trainer that keeps W steps, shows the steps do change all three, so
 * the equality cannot come from warmup being skipped or from a state nothing touches. */
static void test_warmup_reset(void **st) {
  (void)st;
  enum { W = 2, K = 3 };
  char shard[4096];
  qg_train_config c;
  tiny_config(&c, shard, sizeof shard);
  c.iterations = K;
  qg_trainer cold, warm, kept;
  warm_events we = {0}, none = {0};
  assert_int_equal(qg_trainer_init(&cold, &c, on_warm, &none), QG_OK);
  assert_int_equal(none.n, 0);
  /* the contrast: the un-warmed start stepped W times, as warmup steps without the reset */
  assert_int_equal(qg_trainer_init(&kept, &c, NULL, NULL), QG_OK);
  assert_null(state_diff(&cold, &kept));
  for (int i = 0; i < W; i++) {
    qg_train_info info;
    assert_int_equal(qg_trainer_step(&kept, &info), QG_OK);
  }
  size_t bytes = sizeof(float) * (size_t)cold.lay.total;
  assert_true(memcmp(kept.w, cold.w, bytes) != 0);
  assert_true(memcmp(kept.adam_m, cold.adam_m, bytes) != 0);
  assert_true(memcmp(kept.muon_buf, cold.muon_buf, bytes) != 0);
  assert_true(kept.adam_t == W && kept.data.pos != 0);
  c.warmup_steps = W;
  assert_int_equal(qg_trainer_init(&warm, &c, on_warm, &we), QG_OK);
  /* warmup really ran, on the same first batch from the same start */
  if (we.n != W) fail_msg("%d warmup steps reported, %d asked", we.n, W);
  collect lc = {0}, lw = {0};
  /* after the reset: the un-warmed start, not the stepped one */
  const char *d = state_diff(&warm, &cold);
  if (d) fail_msg("after %d warmup steps the trainer is not back at its initial state: %s differ", W, d);
  assert_non_null(state_diff(&warm, &kept));
  assert_int_equal(qg_trainer_run(&cold, on_step, &lc), QG_OK);
  assert_int_equal(qg_trainer_run(&warm, on_step, &lw), QG_OK);
  assert_int_equal(lc.n, K);
  assert_int_equal(lw.n, K);
  /* the first warmup step saw the first step's batch and weights: the same loss */
  assert_true(we.loss[0] == lc.loss[0]);
  assert_memory_equal(lc.loss, lw.loss, sizeof(double) * K);
  assert_null(state_diff(&warm, &cold));
  qg_trainer_free(&cold), qg_trainer_free(&warm), qg_trainer_free(&kept);
}

/* lr_mul against train_gpt.py's formula, evaluated by hand. */
static void test_lr_mul(void **st) {
  (void)st;
  assert_true(qg_lr_mul(0, 0, 100, 0, 0) == 1.0);
  assert_true(qg_lr_mul(89, 0, 100, 10, 0) == 1.0);
  assert_true(qg_lr_mul(90, 0, 100, 10, 0) == 1.0);   /* (100 - 90) / 10 */
  assert_true(qg_lr_mul(95, 0, 100, 10, 0) == 0.5);
  assert_true(qg_lr_mul(99, 0, 100, 10, 0) == 0.1);
  assert_true(qg_lr_mul(5, 0, 3, 10, 0) == 1.0);       /* past the end: 1 (the loop never asks) */
  assert_true(qg_lr_mul(0, 0, 5, 10, 0) == 0.5);       /* warmdown longer than the run: (5 - 0) / 10 */
  assert_true(fabs(qg_lr_mul(1, 0, 5, 10, 0) - 0.4) < 1e-15);
  /* wall-clock: 100 ms/step, warmdown 10 steps = 1 s; cap 10 s */
  assert_true(qg_lr_mul(50, 5000, 0, 10, 10.0) == 1.0);
  assert_true(fabs(qg_lr_mul(95, 9500, 0, 10, 10.0) - 0.5) < 1e-12); /* 500 ms left of a 1000 ms warmdown */
  assert_true(qg_lr_mul(120, 12000, 0, 10, 10.0) == 0.0);
}

/* Newton-Schulz against the same iteration in fp64, both orientations; the result's
 * singular values land in the band the quintic is designed for (~0.7 .. 1.2). */
static void ns64(double *X, int r, int k, int steps) { /* r <= k, X normalised */
  const double a = 3.4445, b = -4.7750, c = 2.0315;
  double *A = calloc((size_t)r * r, 8), *B = calloc((size_t)r * r, 8), *Y = calloc((size_t)r * k, 8);
  for (int s = 0; s < steps; s++) {
    for (int i = 0; i < r; i++)
      for (int j = 0; j < r; j++) {
        double acc = 0;
        for (int l = 0; l < k; l++) acc += X[i * k + l] * X[j * k + l];
        A[i * r + j] = acc;
      }
    for (int i = 0; i < r; i++)
      for (int j = 0; j < r; j++) {
        double acc = 0;
        for (int l = 0; l < r; l++) acc += A[i * r + l] * A[l * r + j];
        B[i * r + j] = b * A[i * r + j] + c * acc;
      }
    for (int i = 0; i < r; i++)
      for (int j = 0; j < k; j++) {
        double acc = 0;
        for (int l = 0; l < r; l++) acc += B[i * r + l] * X[l * k + j];
        Y[i * k + j] = a * X[i * k + j] + acc;
      }
    memcpy(X, Y, sizeof(double) * (size_t)r * k);
  }
  free(A), free(B), free(Y);
}

static void test_newton_schulz(void **st) {
  (void)st;
  uint64_t rng = 7;
  for (int tr = 0; tr < 2; tr++) {
    int rows = tr ? 48 : 16, cols = tr ? 16 : 48, r = 16, k = 48;
    float *G = malloc(sizeof(float) * rows * cols), *O = malloc(sizeof(float) * rows * cols);
    float *scratch = malloc(sizeof(float) * (3 * rows * cols + 2 * r * r));
    double *X = malloc(sizeof(double) * rows * cols), nrm = 0;
    for (int i = 0; i < rows * cols; i++) G[i] = qg_test_randf(&rng), nrm += (double)G[i] * G[i];
    nrm = sqrt(nrm) + 1e-7;
    for (int i = 0; i < rows; i++) /* the wide orientation in fp64 */
      for (int j = 0; j < cols; j++) X[tr ? j * k + i : i * k + j] = G[i * cols + j] / nrm;
    ns64(X, r, k, 5);
    qg_newton_schulz5(O, G, rows, cols, 5, scratch);
    double num = 0, den = 0;
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++) {
        double ref = X[tr ? j * k + i : i * k + j];
        num += (O[i * cols + j] - ref) * (O[i * cols + j] - ref);
        den += ref * ref;
      }
    print_message("newton-schulz %dx%d vs fp64: rel err %.2e\n", rows, cols, sqrt(num / den));
    assert_true(sqrt(num / den) < 1e-5);
    /* ||O||_F^2 = sum of squared singular values: 16 of them, each in ~[0.5, 1.5] */
    assert_true(den > 16 * 0.25 && den < 16 * 2.25);
    free(G), free(O), free(scratch), free(X);
  }
}

/* Adam with a constant gradient: closed forms m_t = (1 - b1^t) g, v_t = (1 - b2^t) g^2,
 * so each step moves by lr * g / (|g| + eps) exactly. */
static void test_adam(void **st) {
  (void)st;
  float p[3] = {1, 1, 1}, g[3] = {0.5f, -2.0f, 1e-3f}, m[3] = {0}, v[3] = {0};
  for (int t = 1; t <= 3; t++) qg_adam_step(p, g, m, v, 3, 0.1, 0.9, 0.95, 1e-8, t);
  for (int i = 0; i < 3; i++) {
    double step = 0.1 * g[i] / (fabs(g[i]) + 1e-8);
    assert_true(fabs(p[i] - (1 - 3 * step)) < 1e-5);
    assert_true(fabs(m[i] - (1 - pow(0.9, 3)) * g[i]) < 1e-6 * fabs(g[i]) + 1e-9);
  }
}

/* The loader wraps around the stream as TokenStream does. */
static void test_loader_wrap(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  uint16_t a[5] = {1, 2, 3, 4, 5}, b[3] = {6, 7, 8};
  assert_int_equal(qg_shard_write(qg_test_path(dir, "x_001.bin"), b, 3), QG_OK);
  assert_int_equal(qg_shard_write(qg_test_path(dir, "x_000.bin"), a, 5), QG_OK);
  char glob[4200];
  snprintf(glob, sizeof glob, "%s/x_*.bin", dir);
  qg_token_loader l;
  assert_int_equal(qg_loader_open(&l, glob, 9), QG_OK);
  int32_t out[11];
  assert_int_equal(qg_loader_take(&l, 6, out), QG_OK);
  assert_int_equal(qg_loader_take(&l, 5, out + 6), QG_OK);
  int32_t want[11] = {1, 2, 3, 4, 5, 6, 7, 8, 1, 2, 3};
  assert_memory_equal(out, want, sizeof want);
  assert_int_equal(l.pos, 3);
  qg_loader_close(&l);
  /* ids >= vocab are refused, naming the token */
  assert_int_equal(qg_loader_open(&l, glob, 8), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "8"));
  qg_test_rmdir(dir);
}

/* QAT: 2-bit symmetric absmax rows hold at most 3 distinct values {-s, 0, s}; control
 * tensors are not touched; the clip STE zeroes exactly the clipped weights. */
static void test_qat(void **st) {
  (void)st;
  qg_gpt_config mc;
  assert_int_equal(qg_gpt_config_make(64, 2, 32, 4, 2, 64, 1, 2, &mc), QG_OK);
  qg_gpt_layout l;
  assert_int_equal(qg_gpt_layout_make(&mc, &l), QG_OK);
  float *w = malloc(sizeof(float) * (size_t)l.total), *q = malloc(sizeof(float) * (size_t)l.total),
        *g = malloc(sizeof(float) * (size_t)l.total);
  uint64_t rng = 3;
  for (int64_t i = 0; i < l.total; i++) w[i] = qg_test_randf(&rng), g[i] = 1.0f;
  qg_qat qa;
  /* tensors this small are passthrough in the export unless a rule names them exactly */
  const char *spec =
      "blocks.*.attn.c_q.weight: rowwise bits=2 clip=absmax; blocks.*.attn.c_k.weight: rowwise bits=2 clip=absmax;"
      "blocks.*.attn.c_v.weight: rowwise bits=2 clip=absmax; blocks.*.mlp.fc.weight: rowwise bits=3 clip=pct pct=90;"
      "blocks.*.mlp.proj.weight: rowwise bits=3 clip=pct pct=90";
  assert_int_equal(qg_qat_init(&qa, spec, &l), QG_OK);
  assert_int_equal(qg_qat_apply(&qa, &l, w, q), QG_OK);
  int nq = 0;
  for (int i = 0; i < l.n; i++) {
    const qg_gpt_param *p = &l.p[i];
    int quant = strstr(p->name, "attn.c_") || strstr(p->name, "mlp.");
    assert_int_equal(qa.quantized[i], quant);
    nq += quant;
    if (!quant) {
      assert_memory_equal(w + p->offset, q + p->offset, sizeof(float) * (size_t)p->numel);
      continue;
    }
    int maxdistinct = strstr(p->name, "attn.") ? 3 : 7;
    for (int64_t r = 0; r < p->shape[0]; r++) {
      float seen[16];
      int ns = 0;
      for (int64_t j = 0; j < p->shape[1]; j++) {
        float v = q[p->offset + r * p->shape[1] + j];
        int k = 0;
        while (k < ns && seen[k] != v) k++;
        if (k == ns && ns < 16) seen[ns++] = v;
      }
      assert_true(ns <= maxdistinct);
    }
  }
  assert_int_equal(nq, 2 * 5);
  qg_qat_mask(&qa, &l, w, q, g);
  int64_t zeroed = 0, checked = 0;
  for (int i = 0; i < l.n; i++) {
    const qg_gpt_param *p = &l.p[i];
    for (int64_t r = 0; r < (p->ndim == 2 ? p->shape[0] : 1); r++) {
      int64_t cols = p->ndim == 2 ? p->shape[1] : p->numel;
      float mx = 0;
      for (int64_t j = 0; j < cols; j++) mx = fmaxf(mx, fabsf(q[p->offset + r * cols + j]));
      for (int64_t j = 0; j < cols; j++) {
        int64_t e = p->offset + r * cols + j;
        int clipped = qa.quantized[i] && fabsf(w[e]) > mx;
        assert_true(g[e] == (clipped ? 0.0f : 1.0f));
        zeroed += clipped;
        checked++;
      }
    }
  }
  print_message("qat: clip STE zeroed %lld of %lld gradient entries\n", (long long)zeroed, (long long)checked);
  assert_true(zeroed > 0); /* pct=90 clips about 10%% of the MLP weights */
  qg_qat_free(&qa);
  /* a spec the plan cannot use is refused */
  assert_int_equal(qg_qat_init(&qa, "nothing.*: rowwise bits=4", &l), QG_ERR_INPUT);
  qg_gpt_layout_free(&l);
  free(w), free(q), free(g);
}

static void test_bad_config(void **st) {
  (void)st;
  char shard[4096];
  qg_train_config c;
  qg_trainer t;
  tiny_config(&c, shard, sizeof shard);
  c.batch_tokens = 100; /* not whole sequences per micro-batch */
  assert_int_equal(qg_trainer_init(&t, &c, NULL, NULL), QG_ERR_INPUT);
  tiny_config(&c, shard, sizeof shard);
  c.kv_heads = 3;
  assert_int_equal(qg_trainer_init(&t, &c, NULL, NULL), QG_ERR_INPUT);
  tiny_config(&c, shard, sizeof shard);
  c.vocab = 512; /* the shard holds ids up to 1023 */
  assert_int_equal(qg_trainer_init(&t, &c, NULL, NULL), QG_ERR_INPUT);
  tiny_config(&c, shard, sizeof shard);
  char *dir = qg_test_tmpdir();
  c.out_dir = dir;
  c.resume = 1; /* nothing to resume */
  assert_int_not_equal(qg_trainer_init(&t, &c, NULL, NULL), QG_OK);
  assert_non_null(strstr(qg_last_error(), "train_state.safetensors"));
  qg_test_rmdir(dir);
}

/* The CLI: a short run end to end, then the bad-input contract (one line, exit 2) and an
 * interrupted run whose checkpoint survives a refused resume. */
static void test_cli(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  uint16_t *tok = malloc(sizeof(uint16_t) * 6000);
  uint64_t r = 5;
  for (int i = 0; i < 6000; i++) tok[i] = (uint16_t)(qg_test_rand(&r) % 600); /* tok_rules.model: 600 pieces */
  assert_int_equal(qg_shard_write(qg_test_path(dir, "train.bin"), tok, 4000), QG_OK);
  assert_int_equal(qg_shard_write(qg_test_path(dir, "val.bin"), tok + 4000, 2000), QG_OK);
  tok[100] = 700;
  assert_int_equal(qg_shard_write(qg_test_path(dir, "bad.bin"), tok, 4000), QG_OK);
  free(tok);
  char base[8192], badbase[8192], cmd[9000], out[4096], err[4096];
  const char *fmt = "train --train '%s/%s' --val '%s/val.bin' --tokenizer '%s/tests/data/tok_rules.model' "
                    "--layers 2 --dim 32 --heads 2 --kv-heads 1 --seq-len 16 --batch-tokens 64 --grad-accum 2 "
                    "--iterations 6 --warmup-steps 1 --warmdown 2";
  snprintf(base, sizeof base, fmt, dir, "train.bin", dir, QG_SOURCE_DIR);
  snprintf(badbase, sizeof badbase, fmt, dir, "bad.bin", dir, QG_SOURCE_DIR);
  snprintf(cmd, sizeof cmd, "%s --out '%s/run' --stop-at 3", base, dir);
  assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(err, "stopped at step 3/6"));
  char state[4200];
  snprintf(state, sizeof state, "%s/run/train_state.safetensors", dir);
  assert_true(qg_test_exists(state));
  uint8_t *before;
  size_t blen;
  assert_int_equal(qg_read_file(state, &before, &blen, 0), QG_OK);
  /* refused resume: another configuration; exit 2, one line, checkpoint untouched */
  snprintf(cmd, sizeof cmd, "%s --out '%s/run' --resume --seed 7", base, dir);
  assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, "another configuration"));
  uint8_t *after;
  size_t alen;
  assert_int_equal(qg_read_file(state, &after, &alen, 0), QG_OK);
  assert_int_equal(alen, blen);
  assert_memory_equal(before, after, blen);
  free(before), free(after);
  snprintf(cmd, sizeof cmd, "%s --out '%s/run' --resume --json", base, dir);
  assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(out, "\"val_bpb\""));
  assert_non_null(strstr(out, "\"steps\": 6"));
  assert_true(qg_test_exists(qg_test_path(dir, "run/final_model.safetensors")));
  assert_true(qg_test_exists(qg_test_path(dir, "run/train.log")));
  const char *bad[] = {" --out x --frobnicate 1", " --out x --heads 3", " --out x --kv-heads 2 --heads 3",
                       " --out x --batch-tokens 100", " --out x --late-qat 0.15"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    snprintf(cmd, sizeof cmd, "%s%s", base, bad[i]);
    assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 2);
    assert_non_null(strstr(err, "quantgolf train"));
    assert_true(strchr(err, '\n') == err + strlen(err) - 1); /* exactly one line */
  }
  snprintf(cmd, sizeof cmd, "%s --out '%s/run2'", badbase, dir); /* ids >= vocab in the training data */
  assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, "700"));
  assert_false(qg_test_exists(qg_test_path(dir, "run2"))); /* no train.log (nor folder) left behind */
  /* a 0-token validation shard: the message names the file */
  assert_int_equal(qg_shard_write(qg_test_path(dir, "zzz.bin"), NULL, 0), QG_OK);
  char zb[8192];
  snprintf(zb, sizeof zb, "%s", base);
  char *vp = strstr(zb, "/val.bin'");
  assert_non_null(vp);
  memcpy(vp, "/zzz.bin'", 9);
  snprintf(cmd, sizeof cmd, "%s --out '%s/run3'", zb, dir);
  assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 2);
  if (!strstr(err, "zzz.bin") || !strstr(err, "0 tokens")) fail_msg("0-token shard: %s", err);
  assert_false(qg_test_exists(qg_test_path(dir, "run3")));
  unlink(qg_test_path(dir, "zzz.bin"));
  char rm[4300];
  snprintf(rm, sizeof rm, "rm -rf '%s/run' '%s/run2' x", dir, dir);
  assert_int_equal(system(rm), 0);
  qg_test_rmdir(dir);
}

/* Writes the CLI tests' shards (600-piece tokenizer) into dir; returns the common options. */
static void cli_data(const char *dir, char *base, size_t cap) {
  uint16_t *tok = malloc(sizeof(uint16_t) * 6000);
  uint64_t r = 5;
  for (int i = 0; i < 6000; i++) tok[i] = (uint16_t)(qg_test_rand(&r) % 600); /* tok_rules.model: 600 pieces */
  assert_int_equal(qg_shard_write(qg_test_path(dir, "train.bin"), tok, 4000), QG_OK);
  assert_int_equal(qg_shard_write(qg_test_path(dir, "val.bin"), tok + 4000, 2000), QG_OK);
  free(tok);
  snprintf(base, cap,
           "train --train '%s/train.bin' --val '%s/val.bin' --tokenizer '%s/tests/data/tok_rules.model' "
           "--layers 2 --dim 32 --heads 2 --kv-heads 1 --seq-len 16 --batch-tokens 64 --grad-accum 2 "
           "--iterations 6 --warmup-steps 1 --warmdown 2",
           dir, dir, QG_SOURCE_DIR);
}

/* The value after `key` in text (e.g. "final_qgz_roundtrip_exact val_loss:"), up to the next
 * blank, into buf; fails the test when absent. */
static void field(const char *text, const char *key, char *buf, size_t cap) {
  const char *p = strstr(text, key);
  if (!p) fail_msg("'%s' not found in:\n%s", key, text);
  p += strlen(key);
  size_t n = strcspn(p, " \n");
  assert_true(n < cap);
  memcpy(buf, p, n);
  buf[n] = 0;
}

/* --export: the artifact is written, its round-trip figures are those of `quantgolf eval`
 * on the file (same windows, same backend: equal to all 8 printed decimals), GPTQ rules
 * are calibrated from the training shards, and --qat alone exports by the QAT spec. */
static void test_cli_export(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char base[8192], cmd[9000], out[8192], err[8192], a[64], b[64];
  cli_data(dir, base, sizeof base);
  const char *spec = "blocks.*.mlp.fc.weight: gptq bits=4; blocks.*.attn.c_q.weight: rowwise bits=4";
  snprintf(cmd, sizeof cmd, "%s --out '%s/ex' --export '%s' --calib-seqs 8", base, dir, spec);
  assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 0);
  char art[4300];
  snprintf(art, sizeof art, "%s/ex/final_model.qgz", dir);
  assert_true(qg_test_exists(art));
  char bytes[64];
  field(out, "Serialized model qgz+rans: ", bytes, sizeof bytes);
  long long fb = -1;
  FILE *f = fopen(art, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  fb = ftell(f);
  fclose(f);
  assert_int_equal(atoll(bytes), fb);
  field(out, "hessians:", b, sizeof b);
  assert_true(atoi(b) >= 2); /* both blocks' mlp.fc (and the other linears) were calibrated */
  assert_non_null(strstr(out, "final_qgz_roundtrip val_loss:"));
  char qbpb[64];
  field(out, "final_qgz_roundtrip_exact val_loss:", a, sizeof a);
  field(strstr(out, "final_qgz_roundtrip_exact"), "val_bpb:", qbpb, sizeof qbpb);
  char eout[8192];
  snprintf(cmd, sizeof cmd, "eval --model '%s' --val '%s/val.bin' --tokenizer '%s/tests/data/tok_rules.model' "
           "--seq-len 16 --device cpu", art, dir, QG_SOURCE_DIR);
  assert_int_equal(qg_test_run_cli(cmd, eout, sizeof eout, err, sizeof err), 0);
  field(eout, "val_loss: ", b, sizeof b);
  print_message("export: artifact %lld bytes, round trip val_loss %s, quantgolf eval %s\n", fb, a, b);
  assert_string_equal(a, b);
  field(eout, "val_bpb: ", b, sizeof b);
  assert_string_equal(qbpb, b);
  /* --qat alone exports by the QAT spec; --json carries the export */
  snprintf(cmd, sizeof cmd, "%s --out '%s/qat' --qat 'blocks.*.mlp.fc.weight: rowwise bits=4' --json", base, dir);
  assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(out, "\"export\": {"));
  assert_non_null(strstr(out, "\"artifact_bytes\""));
  assert_true(qg_test_exists(qg_test_path(dir, "qat/final_model.qgz")));
  /* --export none: no artifact */
  snprintf(cmd, sizeof cmd, "%s --out '%s/none' --qat 'blocks.*.mlp.fc.weight: rowwise bits=4' --export none", base,
           dir);
  assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 0);
  assert_false(qg_test_exists(qg_test_path(dir, "none/final_model.qgz")));
  /* a spec that cannot apply is refused before any training: one line, exit 2, no output */
  snprintf(cmd, sizeof cmd, "%s --out '%s/bad' --export 'nothing.*: rowwise bits=4'", base, dir);
  assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 2);
  assert_non_null(strstr(err, "--export"));
  assert_true(strchr(err, '\n') == err + strlen(err) - 1);
  assert_false(qg_test_exists(qg_test_path(dir, "bad")));
  char rm[4400];
  snprintf(rm, sizeof rm, "rm -rf '%s/ex' '%s/qat' '%s/none'", dir, dir, dir);
  assert_int_equal(system(rm), 0);
  qg_test_rmdir(dir);
}

/* --config F.yaml: the file's options, the command line overriding them; malformed YAML,
 * an unknown key, a list value or a repeated key: one line naming the file, exit 2. */
static void test_cli_config(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char base[8192], cmd[17000], out[8192], err[8192], yaml[9000];
  cli_data(dir, base, sizeof base);
  snprintf(yaml, sizeof yaml,
           "# a tiny run\ntrain: %s/train.bin\nval: '%s/val.bin'\ntokenizer: %s/tests/data/tok_rules.model\n"
           "layers: 2\ndim: 32\nheads: 2\nkv-heads: 1\nseq-len: 16\nbatch-tokens: 64\ngrad-accum: 2\n"
           "iterations: 4\nwarmup-steps: 0\nwarmdown: 2\njson: true\nqat: 'blocks.*.mlp.fc.weight: rowwise bits=4'\n"
           "out: %s/cfg\n",
           dir, dir, QG_SOURCE_DIR, dir);
  char cfg[4300];
  snprintf(cfg, sizeof cfg, "%s/run.yaml", dir);
  qg_test_write(cfg, yaml, strlen(yaml));
  snprintf(cmd, sizeof cmd, "train --config '%s'", cfg);
  assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(out, "\"steps\": 4"));
  assert_non_null(strstr(out, "\"qat_val_bpb\""));
  assert_true(qg_test_exists(qg_test_path(dir, "cfg/final_model.qgz")));
  /* the command line wins over the file */
  snprintf(cmd, sizeof cmd, "train --iterations 5 --config '%s' --out '%s/cfg2' --export none", cfg, dir);
  assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(out, "\"steps\": 5"));
  assert_non_null(strstr(out, "\"export\": null"));
  /* the same run from the command line alone gives the same figures */
  char out2[8192];
  /* each option once: base's iteration and warmup counts are swapped for the file's */
  char *it = strstr(base, "--iterations 6 --warmup-steps 1");
  assert_non_null(it);
  memcpy(it, "--iterations 5 --warmup-steps 0", 31);
  snprintf(cmd, sizeof cmd, "%s --qat 'blocks.*.mlp.fc.weight: rowwise bits=4' "
           "--out '%s/cfg3' --export none --json", base, dir);
  assert_int_equal(qg_test_run_cli(cmd, out2, sizeof out2, err, sizeof err), 0);
  char v1[64], v2[64];
  field(out, "\"val_loss\": ", v1, sizeof v1);
  field(out2, "\"val_loss\": ", v2, sizeof v2);
  assert_string_equal(v1, v2);
  const char *bad[] = {"layers: [2, 3\n", "frobnicate: 1\n", "layers: [2, 3]\n", "layers: 2\nlayers: 3\n",
                       "- layers\n", "layers:\n", "json: maybe\n", "config: other.yaml\n", "layers: two\n"};
  const char *want[] = {"malformed YAML", "unknown option", "single value", "twice", "mapping", "no value",
                        "true or false", "another config", "integer"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char bp[4300];
    snprintf(bp, sizeof bp, "%s/bad.yaml", dir);
    qg_test_write(bp, bad[i], strlen(bad[i]));
    snprintf(cmd, sizeof cmd, "%s --out '%s/never' --config '%s'", base, dir, bp);
    assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 2);
    if (!strstr(err, want[i]) || !strstr(err, "bad.yaml")) fail_msg("case %zu: '%s'", i, err);
    assert_true(strchr(err, '\n') == err + strlen(err) - 1); /* exactly one line */
    assert_false(qg_test_exists(qg_test_path(dir, "never")));
  }
  snprintf(cmd, sizeof cmd, "%s --out '%s/never' --config '%s/missing.yaml'", base, dir, dir);
  assert_int_not_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 0);
  assert_non_null(strstr(err, "missing.yaml"));
  char rm[4400];
  snprintf(rm, sizeof rm, "rm -rf '%s/cfg' '%s/cfg2' '%s/cfg3' '%s/run.yaml' '%s/bad.yaml'", dir, dir, dir, dir, dir);
  assert_int_equal(system(rm), 0);
  qg_test_rmdir(dir);
}

/* --device / --precision on the host side: bf16 on the CPU and an unknown device are
 * refused; without a GPU, --device cuda is one line, exit 2 and no output directory, and
 * auto falls back to the CPU. The CPU run's resume fingerprint keeps its old text, so
 * checkpoints written before the GPU path existed still resume. */
static void test_device_options(void **st) {
  (void)st;
  char shard[4096];
  qg_train_config c;
  const qg_ops *o;
  tiny_config(&c, shard, sizeof shard);
  assert_string_equal(c.device, "cpu");
  assert_int_equal(qg_train_backend(&c, &o), QG_OK);
  assert_string_equal(o->name, "cpu");
  c.precision = QG_PRECISION_BF16;
  assert_int_equal(qg_train_backend(&c, &o), QG_ERR_UNSUPPORTED);
  assert_non_null(strstr(qg_last_error(), "bf16"));
  qg_trainer t;
  assert_int_equal(qg_trainer_init(&t, &c, NULL, NULL), QG_ERR_UNSUPPORTED);
  c.precision = QG_PRECISION_FP32;
  c.device = "tpu";
  assert_int_equal(qg_train_backend(&c, &o), QG_ERR_INPUT);
  qg_buf b;
  qg_buf_init(&b);
  c.device = "cpu";
  qg_train_config_describe(&c, &b);
  qg_buf_byte(&b, 0);
  assert_non_null(strstr((const char *)b.p, "(newton-schulz in fp32)"));
  assert_non_null(strstr((const char *)b.p, "device=cpu precision=fp32"));
  qg_buf_free(&b);
  /* which QAT tensors the GPU path fake-quantizes itself (rowwise rules the device grid
   * takes) and which go by a host round trip (here contest-int8); decided on the host */
  qg_gpt_config mc;
  qg_gpt_layout l;
  assert_int_equal(qg_gpt_config_make(64, 2, 64, 4, 2, 128, 1, 2, &mc), QG_OK);
  assert_int_equal(qg_gpt_layout_make(&mc, &l), QG_OK);
  qg_qat qa;
  assert_int_equal(qg_qat_init(&qa, "blocks.*.mlp.fc.weight: rowwise bits=4 clip=absmax; blocks.*.attn.c_q.weight: "
                                    "rowwise bits=5; blocks.*.attn.c_v.weight: contest-int8", &l),
                   QG_OK);
  assert_int_equal(qa.n_device, 4);
  assert_int_equal(qa.n_host, 2);
  for (int i = 0; i < l.n; i++)
    assert_int_equal(qa.on_device[i], strstr(l.p[i].name, "mlp.fc") || strstr(l.p[i].name, "c_q") ? 1 : 0);
  qg_qat_free(&qa);
  qg_gpt_layout_free(&l);
  int have_gpu = qg_cuda_device_count() > 0;
  if (!have_gpu) {
    c.device = "cuda";
    assert_int_not_equal(qg_train_backend(&c, &o), QG_OK);
    assert_int_not_equal(qg_trainer_init(&t, &c, NULL, NULL), QG_OK);
    c.device = "auto";
    assert_int_equal(qg_trainer_init(&t, &c, NULL, NULL), QG_OK);
    assert_int_equal(t.on_device, 0);
    assert_string_equal(t.ops->name, "cpu");
    qg_trainer_free(&t);
  }
  /* the CLI: one line, exit 2, nothing created */
  char *dir = qg_test_tmpdir();
  char base[8192], cmd[9000], out[4096], err[4096];
  cli_data(dir, base, sizeof base);
  const char *bad[] = {"--precision bf16", "--device tpu", "--precision fp16", "--device cuda"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (i == 3 && have_gpu) break; /* with a GPU, --device cuda is a real run (test_cuda_optim_gpu) */
    snprintf(cmd, sizeof cmd, "%s --out '%s/never' %s", base, dir, bad[i]);
    assert_int_equal(qg_test_run_cli(cmd, out, sizeof out, err, sizeof err), 2);
    assert_non_null(strstr(err, "quantgolf train"));
    assert_true(strchr(err, '\n') == err + strlen(err) - 1); /* exactly one line */
    assert_false(qg_test_exists(qg_test_path(dir, "never")));
    print_message("%s: %s", bad[i], err);
  }
  char rm[4400];
  snprintf(rm, sizeof rm, "rm -f '%s/train.bin' '%s/val.bin'", dir, dir);
  assert_int_equal(system(rm), 0);
  qg_test_rmdir(dir);
}

int main(void) {
  (void)ref_dir;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lr_mul),        cmocka_unit_test(test_adam),
      cmocka_unit_test(test_newton_schulz), cmocka_unit_test(test_loader_wrap),
      cmocka_unit_test(test_qat),           cmocka_unit_test(test_bad_config),
      cmocka_unit_test(test_pytorch_reference), cmocka_unit_test(test_warmup_reset),
      cmocka_unit_test(test_resume_bitwise), cmocka_unit_test(test_cli),
      cmocka_unit_test(test_cli_export),    cmocka_unit_test(test_cli_config),
      cmocka_unit_test(test_device_options),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
