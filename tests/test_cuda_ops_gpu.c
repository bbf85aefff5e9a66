/* kernels/ (CUDA): every forward op of the CUDA backend against its CPU twin, as rows of
 * the twin harness (tests/twin.h): fresh random inputs (never zeros) of several shapes,
 * sizes that are not powers of two among them; outputs poisoned with NaN before each
 * run, so an element the kernel never writes fails. Error measure: ||gpu - cpu|| / ||cpu||
 * over the whole output (NaN never passes); tolerance 1e-5 for fp32, 1e-2 for the bf16
 * matmul. The rows are skipped, visibly, where there is no CUDA GPU or CUDA is not
 * compiled in (they still run CPU against CPU as the harness's self-check). */
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

#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda_precision.h"
#include "kernels/ops.h"
#include "tests/testlib.h"
#include "tests/twin.h"

#define OK QG_TEST_OK
#define ROW QG_TWIN_ROW_TOL
#define FP32 QG_PRECISION_FP32
#define TOL_FP32 1e-5
#define TOL_BF16 1e-2
#define WHY_FP32 "fp32 on both sides; only the summation order differs"
#define WHY_BF16 "bf16 operands (8-bit mantissa) with fp32 accumulation against the fp32 CPU"

/* ---- the rows: each runs its op on io->o --------------------------------------------------- */

static void run_embed(qg_twin_io *io, const int64_t *sh) { /* n, d, vocab */
  int64_t n = sh[0];
  int d = (int)sh[1], V = (int)sh[2];
  float *emb = qg_twin_rand(io, (int64_t)V * d, 1.0f), *x = qg_twin_poison(io, n * d);
  int32_t *tok = qg_twin_ids(io, n, V);
  OK(io->o->embed(io->o, x, emb, tok, n, d));
  qg_twin_result(io, "x", x, n * d, ROW);
}

static void run_rmsnorm(qg_twin_io *io, const int64_t *sh) { /* rows, dim */
  int64_t rows = sh[0], n = rows * sh[1];
  int dim = (int)sh[1];
  float *x = qg_twin_rand(io, n, 3.0f), *y = qg_twin_poison(io, n);
  OK(io->o->rmsnorm(io->o, y, x, rows, dim, FLT_EPSILON));
  qg_twin_result(io, "y", y, n, ROW);
  OK(io->o->rmsnorm(io->o, x, x, rows, dim, FLT_EPSILON));
  qg_twin_result(io, "y in place", x, n, ROW);
}

static void run_matmul(qg_twin_io *io, const int64_t *sh) { /* M, K, N */
  int64_t M = sh[0];
  int K = (int)sh[1], N = (int)sh[2];
  float *x = qg_twin_rand(io, M * K, 1.0f), *w = qg_twin_rand(io, (int64_t)N * K, 0.1f), *y = qg_twin_poison(io, M * N);
  OK(io->o->matmul(io->o, y, x, w, M, K, N));
  qg_twin_result(io, "y", y, M * N, ROW);
}

static void run_rope(qg_twin_io *io, const int64_t *sh) { /* B, T, H, hd, base */
  int64_t n = sh[0] * sh[1] * sh[2] * sh[3];
  float *x = qg_twin_rand(io, n, 1.0f);
  OK(io->o->rope(io->o, x, sh[0], (int)sh[1], (int)sh[2], (int)sh[3], (float)sh[4]));
  qg_twin_result(io, "x", x, n, ROW);
}

static void run_head_scale(qg_twin_io *io, const int64_t *sh) { /* rows, H, hd */
  int64_t n = sh[0] * sh[1] * sh[2];
  float *x = qg_twin_rand(io, n, 1.0f), *gain = qg_twin_rand(io, sh[1], 3.0f);
  OK(io->o->head_scale(io->o, x, sh[0], (int)sh[1], (int)sh[2], gain));
  qg_twin_result(io, "x", x, n, ROW);
}

static void run_attention(qg_twin_io *io, const int64_t *sh) { /* B, T, H, KVH, hd */
  int64_t B = sh[0];
  int T = (int)sh[1], H = (int)sh[2], KVH = (int)sh[3], hd = (int)sh[4];
  int64_t nq = B * T * H * hd, nk = B * T * KVH * hd;
  /* q large enough that the softmax is far from uniform */
  float *q = qg_twin_rand(io, nq, 4.0f), *k = qg_twin_rand(io, nk, 1.0f), *v = qg_twin_rand(io, nk, 1.0f);
  float *y = qg_twin_poison(io, nq);
  OK(io->o->attention(io->o, y, q, k, v, B, T, H, KVH, hd));
  qg_twin_result(io, "y", y, nq, ROW);
}

static void run_relu_pow(qg_twin_io *io, const int64_t *sh) { /* n, 10 * power */
  int64_t n = sh[0];
  float *h = qg_twin_randh(io, n, 2.0f);
  if (n == 1) h[0] = 0.75f; /* a single element: make it positive, so it is powered */
  float *x = qg_twin_upf(io, h, n);
  OK(io->o->relu_pow(io->o, x, n, (float)sh[1] / 10.0f));
  qg_twin_result(io, "x", x, n, ROW);
}

/* The three per-channel ops of the residual stream, on the same shapes. */
static void run_channel_ops(qg_twin_io *io, const int64_t *sh) { /* rows, d */
  int64_t rows = sh[0], n = rows * sh[1];
  int d = (int)sh[1];
  float *y = qg_twin_rand(io, n, 1.0f), *p = qg_twin_rand(io, 2 * (int64_t)d, 2.0f);
  float *x = qg_twin_rand(io, n, 1.0f);
  OK(io->o->resid_mix(io->o, x, y, p, rows, d));
  qg_twin_result(io, "resid_mix", x, n, ROW);
  x = qg_twin_rand(io, n, 1.0f);
  OK(io->o->add_scaled(io->o, x, y, p, rows, d));
  qg_twin_result(io, "add_scaled", x, n, ROW);
  x = qg_twin_rand(io, n, 1.0f);
  OK(io->o->affine(io->o, x, p, p + d, rows, d));
  qg_twin_result(io, "affine", x, n, ROW);
}

/* token_stats with no second model (mode 0), a close second model (1: a quantised
 * one's logits are a small perturbation) and an unrelated one (2). */
static void run_token_stats(qg_twin_io *io, const int64_t *sh) { /* rows, V, mode */
  static const char *fields[] = {"nll_a", "nll_b", "kld", "p_a", "p_b", "top_a", "top_b"};
  int64_t rows = sh[0], n = rows * sh[1];
  int V = (int)sh[1], mode = (int)sh[2];
  float *a = qg_twin_randh(io, n, 15.0f), *b = qg_twin_randh(io, n, mode == 1 ? 0.3f : 15.0f);
  if (mode == 1)
    for (int64_t i = 0; i < n; i++) b[i] += a[i];
  float *da = qg_twin_upf(io, a, n), *db = qg_twin_upf(io, b, n);
  int32_t *tg = qg_twin_ids(io, rows, V);
  qg_token_stat *st = qg_twin_keep(io, malloc(sizeof *st * (size_t)rows)); /* host output, poisoned too */
  for (int64_t i = 0; i < rows; i++) {
    st[i].nll_a = st[i].nll_b = st[i].kld = st[i].p_a = st[i].p_b = NAN;
    st[i].top_a = st[i].top_b = INT32_MIN;
  }
  OK(io->o->token_stats(io->o, da, mode ? db : NULL, tg, rows, V, 30.0f, st));
  double *col = qg_twin_keep(io, malloc(sizeof *col * (size_t)rows));
  for (int f = 0; f < 7; f++) {
    for (int64_t i = 0; i < rows; i++) {
      const qg_token_stat *t = &st[i];
      col[i] = f == 0 ? t->nll_a : f == 1 ? t->nll_b : f == 2 ? t->kld : f == 3 ? t->p_a : f == 4 ? t->p_b
             : f == 5 ? t->top_a : t->top_b;
      if (!mode && (f == 1 || f == 2 || f == 4)) assert_true(col[i] == 0.0); /* no b: exactly 0 */
    }
    /* argmaxes exactly; without b the b fields are 0 on both sides, so exactly too */
    qg_twin_result_d(io, fields[f], col, rows, f >= 5 || (!mode && (f == 1 || f == 2 || f == 4)) ? 0.0 : ROW);
  }
}

static const qg_twin_row rows[] = {
    {"embed", "n d V", run_embed, {{1, 8, 5}, {37, 384, 1024}, {300, 100, 77}, {4099, 48, 3}}, TOL_FP32, WHY_FP32, FP32},
    {"rmsnorm", "rows dim", run_rmsnorm, {{1, 1}, {1, 64}, {1000, 64}, {37, 512}, {5, 1000}, {3, 4099}}, TOL_FP32,
     WHY_FP32, FP32},
    {"matmul fp32", "M K N", run_matmul,
     {{1, 1, 1}, {37, 100, 33}, {256, 512, 1024}, {130, 384, 1024}, {1000, 77, 129}, {8, 1024, 512}}, TOL_FP32,
     WHY_FP32, FP32},
    {"matmul bf16", "M K N", run_matmul,
     {{1, 1, 1}, {37, 100, 33}, {256, 512, 1024}, {130, 384, 1024}, {1000, 77, 129}, {8, 1024, 512}}, TOL_BF16,
     WHY_BF16, QG_PRECISION_BF16},
    {"rope", "B T H hd base", run_rope,
     {{1, 1, 1, 2, 10000}, {2, 37, 3, 48, 10000}, {1, 1024, 8, 64, 10000}, {3, 130, 4, 24, 500}}, TOL_FP32, WHY_FP32, FP32},
    {"head_scale", "rows H hd", run_head_scale, {{1, 1, 2}, {37, 8, 48}, {1000, 3, 64}}, TOL_FP32, WHY_FP32, FP32},
    {"attention", "B T H KVH hd", run_attention,
     {{1, 1, 1, 1, 8}, {2, 37, 4, 2, 24}, {1, 300, 8, 4, 64}, {2, 130, 6, 3, 48}, {1, 1024, 8, 4, 64},
      {1, 77, 2, 1, 128}, {3, 200, 4, 4, 32}},
     TOL_FP32, WHY_FP32, FP32},
    {"relu_pow", "n p*10", run_relu_pow,
     {{1, 20}, {1, 30}, {1, 15}, {1000, 20}, {1000, 30}, {1000, 15}, {12291, 20}, {12291, 30}, {12291, 15}}, TOL_FP32,
     WHY_FP32, FP32},
    {"resid_mix add_scaled affine", "rows d", run_channel_ops, {{1, 1}, {37, 384}, {1000, 513}}, TOL_FP32, WHY_FP32, FP32},
    {"token_stats", "rows V mode", run_token_stats,
     {{1, 2, 0}, {1, 2, 1}, {1, 2, 2}, {37, 1024, 0}, {37, 1024, 1}, {37, 1024, 2}, {300, 1000, 0}, {300, 1000, 1},
      {300, 1000, 2}, {5, 50000, 0}, {5, 50000, 1}, {5, 50000, 2}},
     TOL_FP32, "fp64 log-softmax on both sides; the logits' fp32 softcap differs in the last bit", FP32},
};

/* Failures come back as statuses naming what failed; bad arguments as QG_ERR_INPUT. */
static void test_errors(void **st) {
  (void)st;
  /* precision needs no GPU to refuse bf16 on the CPU backend */
  const qg_ops *o;
  assert_int_equal(qg_ops_with_precision(qg_ops_cpu(), QG_PRECISION_BF16, &o), QG_ERR_UNSUPPORTED);
  assert_non_null(strstr(qg_last_error(), "CUDA"));
  assert_int_equal(qg_ops_with_precision(qg_ops_cpu(), QG_PRECISION_FP32, &o), QG_OK);
  assert_ptr_equal(o, qg_ops_cpu());
  const qg_ops *gpu = qg_twin_need_gpu(), *gpu16 = qg_twin_gpu(QG_PRECISION_BF16);
  assert_int_equal(qg_ops_with_precision(gpu, QG_PRECISION_BF16, &o), QG_OK);
  assert_ptr_equal(o, gpu16);
  assert_int_equal(qg_ops_with_precision(gpu16, QG_PRECISION_FP32, &o), QG_OK);
  assert_ptr_equal(o, gpu);
  void *p = NULL;
  qg_status s = gpu->alloc(gpu, &p, (size_t)1 << 52); /* 4 PiB */
  assert_true(s == QG_ERR_NOMEM || s == QG_ERR_DEVICE);
  assert_non_null(strstr(qg_last_error(), "cudaMalloc"));
  float nan64[64];
  for (int i = 0; i < 64; i++) nan64[i] = NAN;
  float *x;
  OK(gpu->alloc(gpu, (void **)&x, sizeof nan64));
  OK(gpu->upload(gpu, x, nan64, sizeof nan64));
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
  const struct CMUnitTest extra[] = {cmocka_unit_test(test_errors)};
  return qg_twin_main("cuda ops", rows, sizeof rows / sizeof rows[0], NULL, 0, extra, 1);
}
