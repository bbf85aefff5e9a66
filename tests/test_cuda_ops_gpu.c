/* kernels/ (CUDA): every forward op of the CUDA backend against its CPU twin, on fresh
 * random inputs (never zeros) of several shapes, sizes that are not powers of two among
 * them. Outputs are poisoned with NaN before each GPU run, so an element the kernel never
 * writes fails the comparison. Error measure: ||gpu - cpu|| / ||cpu|| over the whole
 * output (NaN never passes); tolerance 1e-5 for fp32, 1e-2 for the bf16 matmul. Each test
 * is skipped, visibly, where there is no CUDA GPU or CUDA is not compiled in. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda_device.h"
#include "kernels/cuda_precision.h"
#include "kernels/ops.h"
#include "tests/testlib.h"

#define TOL_FP32 1e-5
#define TOL_BF16 1e-2

static const qg_ops *gpu, *gpu16, *cpu;
static uint64_t rng = 20240520;

/* Skips the test with a visible reason unless a GPU is present; a GPU that is present but
 * whose backend fails to start is a failure, not a skip. */
#define NEED_GPU()                                                                        \
  do {                                                                                    \
    if (qg_cuda_device_count() == 0) {                                                    \
      char why_[256];                                                                     \
      qg_cuda_describe(why_, sizeof why_);                                                \
      print_message("SKIP: no CUDA GPU (%s)\n", why_);                                    \
      skip();                                                                             \
    }                                                                                     \
    if (qg_ops_cuda(&gpu) || qg_ops_cuda_bf16(&gpu16)) fail_msg("%s", qg_last_error());   \
    cpu = qg_ops_cpu();                                                                   \
  } while (0)

#define OK(expr)                                                        \
  do {                                                                  \
    qg_status s_ = (expr);                                              \
    if (s_) fail_msg("%s: %s", #expr, qg_last_error());                 \
  } while (0)

/* n uniform values in [-scale, scale), with no exact zeros. */
static float *rnd(int64_t n, float scale) {
  float *p = malloc(sizeof *p * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) {
    float v = qg_test_randf(&rng);
    p[i] = (v != 0.0f ? v : 0.5f) * scale;
  }
  return p;
}

static int32_t *rnd_ids(int64_t n, int below) {
  int32_t *p = malloc(sizeof *p * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) p[i] = (int32_t)(qg_test_rand(&rng) % (uint64_t)below);
  return p;
}

static float *host_copy(const float *src, int64_t n) {
  float *p = malloc(sizeof *p * (size_t)(n ? n : 1));
  memcpy(p, src, sizeof *p * (size_t)n);
  return p;
}

/* Device copy of a host buffer. */
static void *dev(const void *h, size_t bytes) {
  void *d;
  OK(gpu->alloc(gpu, &d, bytes));
  OK(gpu->upload(gpu, d, h, bytes));
  return d;
}

/* A device buffer of n floats, all NaN. */
static float *dev_poison(int64_t n) {
  float *h = malloc(sizeof *h * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) h[i] = NAN;
  float *d = dev(h, sizeof *h * (size_t)n);
  free(h);
  return d;
}

static float *fetch(const float *d, int64_t n) {
  float *h = malloc(sizeof *h * (size_t)(n ? n : 1));
  OK(gpu->download(gpu, h, d, sizeof *h * (size_t)n));
  return h;
}

/* ||got - ref|| / ||ref||, NaN when got holds a NaN (unwritten or broken). */
/* ---- the tests ----------------------------------------------------------------------- */

static void test_embed(void **st) {
  (void)st;
  NEED_GPU();
  int shapes[][3] = {{1, 8, 5}, {37, 384, 1024}, {300, 100, 77}, {4099, 48, 3}}; /* n, d, vocab */
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int n = shapes[s][0], d = shapes[s][1], V = shapes[s][2];
    float *emb = rnd((int64_t)V * d, 1.0f), *ref = malloc(sizeof(float) * (size_t)n * d);
    int32_t *tok = rnd_ids(n, V);
    OK(cpu->embed(cpu, ref, emb, tok, n, d));
    float *demb = dev(emb, sizeof(float) * (size_t)V * d), *dx = dev_poison((int64_t)n * d);
    int32_t *dtok = dev(tok, sizeof *tok * (size_t)n);
    OK(gpu->embed(gpu, dx, demb, dtok, n, d));
    float *got = fetch(dx, (int64_t)n * d);
    char what[64];
    snprintf(what, sizeof what, "embed n=%d d=%d V=%d", n, d, V);
    qg_test_expect_close(what, got, ref, (int64_t)n * d, TOL_FP32);
    gpu->free(gpu, demb), gpu->free(gpu, dx), gpu->free(gpu, dtok);
    free(emb), free(ref), free(tok), free(got);
  }
}

static void test_rmsnorm(void **st) {
  (void)st;
  NEED_GPU();
  int shapes[][2] = {{1, 1}, {1, 64}, {1000, 64}, {37, 512}, {5, 1000}, {3, 4099}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int rows = shapes[s][0], dim = shapes[s][1];
    int64_t n = (int64_t)rows * dim;
    for (int inplace = 0; inplace < 2; inplace++) {
      float *x = rnd(n, 3.0f), *ref = malloc(sizeof(float) * (size_t)n);
      OK(cpu->rmsnorm(cpu, ref, x, rows, dim, FLT_EPSILON));
      float *dx = dev(x, sizeof(float) * (size_t)n), *dy = inplace ? dx : dev_poison(n);
      OK(gpu->rmsnorm(gpu, dy, dx, rows, dim, FLT_EPSILON));
      float *got = fetch(dy, n);
      char what[64];
      snprintf(what, sizeof what, "rmsnorm %dx%d%s", rows, dim, inplace ? " in place" : "");
      qg_test_expect_close(what, got, ref, n, TOL_FP32);
      if (!inplace) gpu->free(gpu, dy);
      gpu->free(gpu, dx);
      free(x), free(ref), free(got);
    }
  }
}

static void check_matmul(const qg_ops *g, double tol) {
  int shapes[][3] = {{1, 1, 1}, {37, 100, 33}, {256, 512, 1024}, {130, 384, 1024}, {1000, 77, 129}, {8, 1024, 512}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
    float *x = rnd((int64_t)M * K, 1.0f), *w = rnd((int64_t)N * K, 0.1f), *ref = malloc(sizeof(float) * (size_t)M * N);
    OK(cpu->matmul(cpu, ref, x, w, M, K, N));
    float *dxp = dev(x, sizeof(float) * (size_t)M * K), *dw = dev(w, sizeof(float) * (size_t)N * K);
    float *dy = dev_poison((int64_t)M * N);
    OK(g->matmul(g, dy, dxp, dw, M, K, N));
    float *got = fetch(dy, (int64_t)M * N);
    char what[64];
    snprintf(what, sizeof what, "matmul (%s) M=%d K=%d N=%d", g->name, M, K, N);
    qg_test_expect_close(what, got, ref, (int64_t)M * N, tol);
    gpu->free(gpu, dxp), gpu->free(gpu, dw), gpu->free(gpu, dy);
    free(x), free(w), free(ref), free(got);
  }
}

static void test_matmul_fp32(void **st) {
  (void)st;
  NEED_GPU();
  check_matmul(gpu, TOL_FP32);
}

static void test_matmul_bf16(void **st) {
  (void)st;
  NEED_GPU();
  check_matmul(gpu16, TOL_BF16);
}

static void test_rope(void **st) {
  (void)st;
  NEED_GPU();
  struct {
    int B, T, H, hd;
    float base;
  } shapes[] = {{1, 1, 1, 2, 10000}, {2, 37, 3, 48, 10000}, {1, 1024, 8, 64, 10000}, {3, 130, 4, 24, 500}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int B = shapes[s].B, T = shapes[s].T, H = shapes[s].H, hd = shapes[s].hd;
    int64_t n = (int64_t)B * T * H * hd;
    float *x = rnd(n, 1.0f), *ref = host_copy(x, n);
    OK(cpu->rope(cpu, ref, B, T, H, hd, shapes[s].base));
    float *dx = dev(x, sizeof(float) * (size_t)n);
    OK(gpu->rope(gpu, dx, B, T, H, hd, shapes[s].base));
    float *got = fetch(dx, n);
    char what[64];
    snprintf(what, sizeof what, "rope B=%d T=%d H=%d hd=%d base=%g", B, T, H, hd, (double)shapes[s].base);
    qg_test_expect_close(what, got, ref, n, TOL_FP32);
    gpu->free(gpu, dx);
    free(x), free(ref), free(got);
  }
}

static void test_head_scale(void **st) {
  (void)st;
  NEED_GPU();
  int shapes[][3] = {{1, 1, 2}, {37, 8, 48}, {1000, 3, 64}}; /* rows, H, hd */
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int rows = shapes[s][0], H = shapes[s][1], hd = shapes[s][2];
    int64_t n = (int64_t)rows * H * hd;
    float *x = rnd(n, 1.0f), *gain = rnd(H, 3.0f), *ref = host_copy(x, n);
    OK(cpu->head_scale(cpu, ref, rows, H, hd, gain));
    float *dx = dev(x, sizeof(float) * (size_t)n), *dg = dev(gain, sizeof(float) * (size_t)H);
    OK(gpu->head_scale(gpu, dx, rows, H, hd, dg));
    float *got = fetch(dx, n);
    char what[64];
    snprintf(what, sizeof what, "head_scale rows=%d H=%d hd=%d", rows, H, hd);
    qg_test_expect_close(what, got, ref, n, TOL_FP32);
    gpu->free(gpu, dx), gpu->free(gpu, dg);
    free(x), free(gain), free(ref), free(got);
  }
}

static void test_attention(void **st) {
  (void)st;
  NEED_GPU();
  int shapes[][5] = {{1, 1, 1, 1, 8},    {2, 37, 4, 2, 24},   {1, 300, 8, 4, 64}, {2, 130, 6, 3, 48},
                     {1, 1024, 8, 4, 64}, {1, 77, 2, 1, 128}, {3, 200, 4, 4, 32}}; /* B, T, H, KVH, hd */
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int B = shapes[s][0], T = shapes[s][1], H = shapes[s][2], KVH = shapes[s][3], hd = shapes[s][4];
    int64_t nq = (int64_t)B * T * H * hd, nk = (int64_t)B * T * KVH * hd;
    /* q large enough that the softmax is far from uniform */
    float *q = rnd(nq, 4.0f), *k = rnd(nk, 1.0f), *v = rnd(nk, 1.0f), *ref = malloc(sizeof(float) * (size_t)nq);
    OK(cpu->attention(cpu, ref, q, k, v, B, T, H, KVH, hd));
    float *dq = dev(q, sizeof(float) * (size_t)nq), *dk = dev(k, sizeof(float) * (size_t)nk);
    float *dv = dev(v, sizeof(float) * (size_t)nk), *dy = dev_poison(nq);
    OK(gpu->attention(gpu, dy, dq, dk, dv, B, T, H, KVH, hd));
    float *got = fetch(dy, nq);
    char what[64];
    snprintf(what, sizeof what, "attention B=%d T=%d H=%d KVH=%d hd=%d", B, T, H, KVH, hd);
    qg_test_expect_close(what, got, ref, nq, TOL_FP32);
    gpu->free(gpu, dq), gpu->free(gpu, dk), gpu->free(gpu, dv), gpu->free(gpu, dy);
    free(q), free(k), free(v), free(ref), free(got);
  }
}

static void test_relu_pow(void **st) {
  (void)st;
  NEED_GPU();
  int64_t sizes[] = {1, 1000, 12291};
  float powers[] = {2.0f, 3.0f, 1.5f};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
    for (size_t p = 0; p < sizeof powers / sizeof powers[0]; p++) {
      int64_t n = sizes[s];
      float *x = rnd(n, 2.0f), *ref = host_copy(x, n);
      if (n == 1) x[0] = ref[0] = 0.75f; /* a single element: make it positive, so it is powered */
      OK(cpu->relu_pow(cpu, ref, n, powers[p]));
      float *dx = dev(x, sizeof(float) * (size_t)n);
      OK(gpu->relu_pow(gpu, dx, n, powers[p]));
      float *got = fetch(dx, n);
      char what[64];
      snprintf(what, sizeof what, "relu_pow n=%lld p=%g", (long long)n, (double)powers[p]);
      qg_test_expect_close(what, got, ref, n, TOL_FP32);
      gpu->free(gpu, dx);
      free(x), free(ref), free(got);
    }
}

enum { RESID_MIX, ADD_SCALED, AFFINE };

/* The three per-channel ops of the residual stream, on the same shapes. */
static void check_channel_op(int kind) {
  static const char *names[] = {"resid_mix", "add_scaled", "affine"};
  int shapes[][2] = {{1, 1}, {37, 384}, {1000, 513}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int rows = shapes[s][0], d = shapes[s][1];
    int64_t n = (int64_t)rows * d;
    float *x = rnd(n, 1.0f), *y = rnd(n, 1.0f), *p = rnd(2 * (int64_t)d, 2.0f), *ref = host_copy(x, n);
    float *dx = dev(x, sizeof(float) * (size_t)n), *dy = dev(y, sizeof(float) * (size_t)n);
    float *dp = dev(p, sizeof(float) * 2 * (size_t)d);
    if (kind == RESID_MIX) {
      OK(cpu->resid_mix(cpu, ref, y, p, rows, d));
      OK(gpu->resid_mix(gpu, dx, dy, dp, rows, d));
    } else if (kind == ADD_SCALED) {
      OK(cpu->add_scaled(cpu, ref, y, p, rows, d));
      OK(gpu->add_scaled(gpu, dx, dy, dp, rows, d));
    } else {
      OK(cpu->affine(cpu, ref, p, p + d, rows, d));
      OK(gpu->affine(gpu, dx, dp, dp + d, rows, d));
    }
    float *got = fetch(dx, n);
    char what[64];
    snprintf(what, sizeof what, "%s %dx%d", names[kind], rows, d);
    qg_test_expect_close(what, got, ref, n, TOL_FP32);
    gpu->free(gpu, dx), gpu->free(gpu, dy), gpu->free(gpu, dp);
    free(x), free(y), free(p), free(ref), free(got);
  }
}

static void test_resid_mix(void **st) {
  (void)st;
  NEED_GPU();
  check_channel_op(RESID_MIX);
}
static void test_add_scaled(void **st) {
  (void)st;
  NEED_GPU();
  check_channel_op(ADD_SCALED);
}
static void test_affine(void **st) {
  (void)st;
  NEED_GPU();
  check_channel_op(AFFINE);
}

/* One field of the statistics as a column, for the norm-wise comparison. */
static void stat_column(const qg_token_stat *s, int64_t n, int field, float *col) {
  for (int64_t i = 0; i < n; i++) {
    double v = field == 0 ? s[i].nll_a : field == 1 ? s[i].nll_b : field == 2 ? s[i].kld : field == 3 ? s[i].p_a : s[i].p_b;
    col[i] = (float)v;
  }
}

/* token_stats with no second model, a close second model (a quantised one's logits are a
 * small perturbation) and an unrelated one. */
static void test_token_stats(void **st) {
  (void)st;
  NEED_GPU();
  int shapes[][2] = {{1, 2}, {37, 1024}, {300, 1000}, {5, 50000}}; /* rows, V */
  static const char *fields[] = {"nll_a", "nll_b", "kld", "p_a", "p_b"};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
    for (int mode = 0; mode < 3; mode++) {
      int rows = shapes[s][0], V = shapes[s][1];
      int64_t n = (int64_t)rows * V;
      float *a = rnd(n, 15.0f), *b = rnd(n, mode == 1 ? 0.3f : 15.0f);
      if (mode == 1)
        for (int64_t i = 0; i < n; i++) b[i] += a[i];
      int32_t *tg = rnd_ids(rows, V);
      qg_token_stat *ref = malloc(sizeof *ref * (size_t)rows), *got = malloc(sizeof *got * (size_t)rows);
      for (int i = 0; i < rows; i++) { /* poison the host output too */
        got[i].nll_a = got[i].nll_b = got[i].kld = got[i].p_a = got[i].p_b = NAN;
        got[i].top_a = got[i].top_b = INT32_MIN;
      }
      OK(cpu->token_stats(cpu, a, mode ? b : NULL, tg, rows, V, 30.0f, ref));
      float *da = dev(a, sizeof(float) * (size_t)n), *db = dev(b, sizeof(float) * (size_t)n);
      int32_t *dt = dev(tg, sizeof *tg * (size_t)rows);
      OK(gpu->token_stats(gpu, da, mode ? db : NULL, dt, rows, V, 30.0f, got));
      float *cg = malloc(sizeof(float) * (size_t)rows), *cr = malloc(sizeof(float) * (size_t)rows);
      for (int f = 0; f < 5; f++) {
        if (!mode && (f == 1 || f == 2 || f == 4)) { /* no b: these must be exactly 0 */
          stat_column(got, rows, f, cg);
          for (int i = 0; i < rows; i++) assert_true(cg[i] == 0.0f);
          continue;
        }
        stat_column(got, rows, f, cg);
        stat_column(ref, rows, f, cr);
        char what[80];
        snprintf(what, sizeof what, "token_stats %s rows=%d V=%d %s", fields[f], rows, V,
                 mode == 0 ? "(a only)" : mode == 1 ? "(close b)" : "(unrelated b)");
        qg_test_expect_close(what, cg, cr, rows, TOL_FP32);
      }
      for (int i = 0; i < rows; i++) {
        assert_int_equal(got[i].top_a, ref[i].top_a);
        assert_int_equal(got[i].top_b, ref[i].top_b);
      }
      gpu->free(gpu, da), gpu->free(gpu, db), gpu->free(gpu, dt);
      free(a), free(b), free(tg), free(ref), free(got), free(cg), free(cr);
    }
}

/* Failures come back as statuses naming what failed; bad arguments as QG_ERR_INPUT. */
static void test_errors(void **st) {
  (void)st;
  /* precision needs no GPU to refuse bf16 on the CPU backend */
  const qg_ops *o;
  assert_int_equal(qg_ops_with_precision(qg_ops_cpu(), QG_PRECISION_BF16, &o), QG_ERR_UNSUPPORTED);
  assert_non_null(strstr(qg_last_error(), "CUDA"));
  assert_int_equal(qg_ops_with_precision(qg_ops_cpu(), QG_PRECISION_FP32, &o), QG_OK);
  assert_ptr_equal(o, qg_ops_cpu());
  NEED_GPU();
  assert_int_equal(qg_ops_with_precision(gpu, QG_PRECISION_BF16, &o), QG_OK);
  assert_ptr_equal(o, gpu16);
  assert_int_equal(qg_ops_with_precision(gpu16, QG_PRECISION_FP32, &o), QG_OK);
  assert_ptr_equal(o, gpu);
  void *p = NULL;
  qg_status s = gpu->alloc(gpu, &p, (size_t)1 << 52); /* 4 PiB */
  assert_true(s == QG_ERR_NOMEM || s == QG_ERR_DEVICE);
  assert_non_null(strstr(qg_last_error(), "cudaMalloc"));
  float *x = dev_poison(64);
  assert_int_equal(gpu->attention(gpu, x, x, x, x, 1, 1, 6, 4, 8), QG_ERR_INPUT);
  assert_int_equal(gpu->attention(gpu, x, x, x, x, 1, 1, 1, 1, 10), QG_ERR_UNSUPPORTED);
  assert_non_null(strstr(qg_last_error(), "head dim 10"));
  /* the backend still works after the failures */
  float h[64];
  for (int i = 0; i < 64; i++) h[i] = (float)i + 1.0f;
  OK(gpu->upload(gpu, x, h, sizeof h));
  OK(gpu->relu_pow(gpu, x, 64, 2.0f));
  OK(gpu->download(gpu, h, x, sizeof h));
  for (int i = 0; i < 64; i++) assert_true(h[i] == ((float)i + 1.0f) * ((float)i + 1.0f));
  gpu->free(gpu, x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_embed),       cmocka_unit_test(test_rmsnorm),     cmocka_unit_test(test_matmul_fp32),
      cmocka_unit_test(test_matmul_bf16), cmocka_unit_test(test_rope),        cmocka_unit_test(test_head_scale),
      cmocka_unit_test(test_attention),   cmocka_unit_test(test_relu_pow),    cmocka_unit_test(test_resid_mix),
      cmocka_unit_test(test_add_scaled),  cmocka_unit_test(test_affine),      cmocka_unit_test(test_token_stats),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
