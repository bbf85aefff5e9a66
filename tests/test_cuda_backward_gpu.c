/* kernels/ (CUDA backward): each of the 12 backward ops of the CUDA tables against its CPU
 * twin (kernels/cpu_ops_bwd.c) on fresh random inputs, several shapes, sizes that are not
 * powers of two among them. Outputs an op overwrites are poisoned with NaN before the GPU
 * run (an element never written fails); outputs it accumulates into (parameter
 * gradients, dx0, the accumulate flag) start from the same random values on both sides.
 * Error measure: ||gpu - cpu|| / ||cpu|| over each whole output (NaN never passes).
 * Tolerances: 1e-5 for fp32 ops, 1e-4 for attention (dS = p (dP - D) cancels), 1e-2 for
 * the bf16 matmul gradients, 1e-6 for the summed loss, and 0 (bit-identical) for the
 * embedding gradient, whose GPU sums run in the CPU's order. Skipped, visibly, where there
 * is no CUDA GPU or CUDA is not compiled in. */
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
#include "kernels/cuda_precision.h"
#include "kernels/ops.h"
#include "tests/testlib.h"

#define TOL_FP32 1e-5
#define TOL_ATT 1e-4
#define TOL_BF16 1e-2
#define TOL_LOSS 1e-6

static const qg_ops *gpu, *gpu16, *cpu;
static uint64_t rng = 8675309;

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

/* ---- host and device buffers, freed together at the end of each test ------------------ */

#define MAX_BUFS 64
static void *hbufs[MAX_BUFS], *dbufs[MAX_BUFS];
static int nh, nd;

static void *hkeep(void *p) {
  assert_true(nh < MAX_BUFS);
  return hbufs[nh++] = p;
}
static void release(void) {
  while (nh) free(hbufs[--nh]);
  while (nd) gpu->free(gpu, dbufs[--nd]);
}

/* n uniform values in [-scale, scale), never exactly zero. */
static float *rnd(int64_t n, float scale) {
  float *p = hkeep(malloc(sizeof *p * (size_t)(n ? n : 1)));
  for (int64_t i = 0; i < n; i++) {
    float v = qg_test_randf(&rng);
    p[i] = (v != 0.0f ? v : 0.5f) * scale;
  }
  return p;
}
static int32_t *rnd_ids(int64_t n, int below) {
  int32_t *p = hkeep(malloc(sizeof *p * (size_t)(n ? n : 1)));
  for (int64_t i = 0; i < n; i++) p[i] = (int32_t)(qg_test_rand(&rng) % (uint64_t)below);
  return p;
}
static float *copy(const float *src, int64_t n) {
  float *p = hkeep(malloc(sizeof *p * (size_t)(n ? n : 1)));
  memcpy(p, src, sizeof *p * (size_t)n);
  return p;
}
static void *dev(const void *h, size_t bytes) {
  void *d;
  OK(gpu->alloc(gpu, &d, bytes));
  OK(gpu->upload(gpu, d, h, bytes));
  assert_true(nd < MAX_BUFS);
  return dbufs[nd++] = d;
}
static float *devf(const float *h, int64_t n) { return dev(h, sizeof(float) * (size_t)n); }
static float *dev_poison(int64_t n) {
  float *h = malloc(sizeof *h * (size_t)(n ? n : 1));
  for (int64_t i = 0; i < n; i++) h[i] = NAN;
  float *d = devf(h, n);
  free(h);
  return d;
}
static float *fetch(const float *d, int64_t n) {
  float *h = hkeep(malloc(sizeof *h * (size_t)(n ? n : 1)));
  OK(gpu->download(gpu, h, d, sizeof *h * (size_t)n));
  return h;
}

/* ---- the tests ----------------------------------------------------------------------- */

static void test_embed_bwd(void **st) {
  (void)st;
  NEED_GPU();
  int shapes[][3] = {{1, 8, 5}, {300, 100, 77}, {4099, 48, 3}, {2048, 512, 1024}}; /* n, d, vocab */
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int n = shapes[s][0], d = shapes[s][1], V = shapes[s][2];
    float *dx = rnd((int64_t)n * d, 1), *demb = rnd((int64_t)V * d, 1), *ref = copy(demb, (int64_t)V * d);
    int32_t *tok = rnd_ids(n, V);
    float *g_demb = devf(demb, (int64_t)V * d);
    OK(cpu->embed_bwd(cpu, ref, dx, tok, n, d));
    OK(gpu->embed_bwd(gpu, g_demb, devf(dx, (int64_t)n * d), dev(tok, sizeof(int32_t) * (size_t)n), n, d));
    char what[96];
    snprintf(what, sizeof what, "embed_bwd n=%d d=%d V=%d (exact)", n, d, V);
    qg_test_expect_close(what, fetch(g_demb, (int64_t)V * d), ref, (int64_t)V * d, 0.0);
    release();
  }
}

static void test_rmsnorm_bwd(void **st) {
  (void)st;
  NEED_GPU();
  int shapes[][2] = {{1, 32}, {37, 384}, {1000, 512}, {5, 100}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int rows = shapes[s][0], dim = shapes[s][1];
    int64_t n = (int64_t)rows * dim;
    float *x = rnd(n, 3), *dy = rnd(n, 1), *base = rnd(n, 1);
    for (int acc = 0; acc < 2; acc++) {
      float *ref = acc ? copy(base, n) : rnd(n, 1);
      float *g = acc ? devf(base, n) : dev_poison(n);
      OK(cpu->rmsnorm_bwd(cpu, ref, dy, x, rows, dim, 1.1920929e-07f, acc));
      OK(gpu->rmsnorm_bwd(gpu, g, devf(dy, n), devf(x, n), rows, dim, 1.1920929e-07f, acc));
      char what[96];
      snprintf(what, sizeof what, "rmsnorm_bwd %dx%d%s", rows, dim, acc ? " accumulate" : "");
      qg_test_expect_close(what, fetch(g, n), ref, n, TOL_FP32);
    }
    /* in place (dx == dy) */
    float *ref = copy(dy, n), *g = devf(dy, n);
    OK(cpu->rmsnorm_bwd(cpu, ref, ref, x, rows, dim, 1.1920929e-07f, 0));
    OK(gpu->rmsnorm_bwd(gpu, g, g, devf(x, n), rows, dim, 1.1920929e-07f, 0));
    qg_test_expect_close("rmsnorm_bwd in place", fetch(g, n), ref, n, TOL_FP32);
    release();
  }
}

static void test_matmul_bwd(void **st) {
  (void)st;
  NEED_GPU();
  int shapes[][3] = {{1, 8, 8}, {37, 384, 100}, {1024, 512, 1536}, {300, 64, 1024}}; /* M, K, N */
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int M = shapes[s][0], K = shapes[s][1], N = shapes[s][2];
    float *dy = rnd((int64_t)M * N, 1), *w = rnd((int64_t)N * K, 0.1f), *x = rnd((int64_t)M * K, 1);
    float *dx0 = rnd((int64_t)M * K, 1), *dw0 = rnd((int64_t)N * K, 1);
    for (int b16 = 0; b16 < 2; b16++) {
      const qg_ops *g = b16 ? gpu16 : gpu;
      double tol = b16 ? TOL_BF16 : TOL_FP32;
      for (int acc = 0; acc < 2; acc++) {
        float *ref = acc ? copy(dx0, (int64_t)M * K) : rnd((int64_t)M * K, 1);
        float *gd = acc ? devf(dx0, (int64_t)M * K) : dev_poison((int64_t)M * K);
        OK(cpu->matmul_bwd_x(cpu, ref, dy, w, M, K, N, acc));
        OK(g->matmul_bwd_x(g, gd, devf(dy, (int64_t)M * N), devf(w, (int64_t)N * K), M, K, N, acc));
        char what[96];
        snprintf(what, sizeof what, "matmul_bwd_x %s M=%d K=%d N=%d%s", b16 ? "bf16" : "fp32", M, K, N,
                 acc ? " acc" : "");
        qg_test_expect_close(what, fetch(gd, (int64_t)M * K), ref, (int64_t)M * K, tol);
      }
      float *ref = copy(dw0, (int64_t)N * K), *gw = devf(dw0, (int64_t)N * K);
      OK(cpu->matmul_bwd_w(cpu, ref, dy, x, M, K, N));
      OK(g->matmul_bwd_w(g, gw, devf(dy, (int64_t)M * N), devf(x, (int64_t)M * K), M, K, N));
      char what[96];
      snprintf(what, sizeof what, "matmul_bwd_w %s M=%d K=%d N=%d", b16 ? "bf16" : "fp32", M, K, N);
      qg_test_expect_close(what, fetch(gw, (int64_t)N * K), ref, (int64_t)N * K, tol);
    }
    release();
  }
}

static void test_rope_bwd(void **st) {
  (void)st;
  NEED_GPU();
  int shapes[][4] = {{1, 1, 1, 8}, {2, 100, 8, 64}, {3, 37, 4, 48}, {1, 1024, 2, 32}}; /* B, T, H, hd */
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int B = shapes[s][0], T = shapes[s][1], H = shapes[s][2], hd = shapes[s][3];
    int64_t n = (int64_t)B * T * H * hd;
    float *x = rnd(n, 1), *ref = copy(x, n), *g = devf(x, n);
    OK(cpu->rope_bwd(cpu, ref, B, T, H, hd, 10000.0f));
    OK(gpu->rope_bwd(gpu, g, B, T, H, hd, 10000.0f));
    char what[96];
    snprintf(what, sizeof what, "rope_bwd B=%d T=%d H=%d hd=%d", B, T, H, hd);
    qg_test_expect_close(what, fetch(g, n), ref, n, TOL_FP32);
    release();
  }
}

static void test_head_scale_bwd(void **st) {
  (void)st;
  NEED_GPU();
  int shapes[][3] = {{1, 1, 8}, {37, 8, 64}, {2000, 4, 48}, {300, 6, 16}}; /* rows, H, hd */
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int rows = shapes[s][0], H = shapes[s][1], hd = shapes[s][2];
    int64_t n = (int64_t)rows * H * hd;
    float *dy = rnd(n, 1), *x = rnd(n, 1), *gain = rnd(H, 2), *dg0 = rnd(H, 1);
    float *ref = rnd(n, 1), *rdg = copy(dg0, H), *gdx = dev_poison(n), *gdg = devf(dg0, H);
    OK(cpu->head_scale_bwd(cpu, ref, rdg, dy, x, rows, H, hd, gain));
    OK(gpu->head_scale_bwd(gpu, gdx, gdg, devf(dy, n), devf(x, n), rows, H, hd, devf(gain, H)));
    char what[96];
    snprintf(what, sizeof what, "head_scale_bwd rows=%d H=%d hd=%d: dx", rows, H, hd);
    qg_test_expect_close(what, fetch(gdx, n), ref, n, TOL_FP32);
    qg_test_expect_close("  dgain", fetch(gdg, H), rdg, H, TOL_FP32);
    release();
  }
}

static void test_attention_bwd(void **st) {
  (void)st;
  NEED_GPU();
  int shapes[][5] = {{1, 1, 1, 1, 8}, {2, 100, 8, 4, 64}, {3, 37, 6, 2, 48}, {1, 300, 4, 4, 32},
                     {2, 1024, 8, 4, 64}}; /* B, T, H, KVH, hd */
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int B = shapes[s][0], T = shapes[s][1], H = shapes[s][2], KVH = shapes[s][3], hd = shapes[s][4];
    int64_t nq = (int64_t)B * T * H * hd, nk = (int64_t)B * T * KVH * hd;
    float *q = rnd(nq, 1), *k = rnd(nk, 1), *v = rnd(nk, 1), *dy = rnd(nq, 1);
    float *y = rnd(nq, 1);
    OK(cpu->attention(cpu, y, q, k, v, B, T, H, KVH, hd)); /* the forward output the backward takes */
    float *rq = rnd(nq, 1), *rk = rnd(nk, 1), *rv = rnd(nk, 1);
    OK(cpu->attention_bwd(cpu, rq, rk, rv, dy, q, k, v, y, B, T, H, KVH, hd));
    float *gq = dev_poison(nq), *gk = dev_poison(nk), *gv = dev_poison(nk);
    OK(gpu->attention_bwd(gpu, gq, gk, gv, devf(dy, nq), devf(q, nq), devf(k, nk), devf(v, nk), devf(y, nq), B, T, H,
                          KVH, hd));
    char what[96];
    snprintf(what, sizeof what, "attention_bwd B=%d T=%d H=%d KVH=%d hd=%d: dq", B, T, H, KVH, hd);
    qg_test_expect_close(what, fetch(gq, nq), rq, nq, TOL_ATT);
    qg_test_expect_close("  dk", fetch(gk, nk), rk, nk, TOL_ATT);
    qg_test_expect_close("  dv", fetch(gv, nk), rv, nk, TOL_ATT);
    release();
  }
}

static void test_relu_pow_bwd(void **st) {
  (void)st;
  NEED_GPU();
  int64_t sizes[] = {1, 1000, 65537};
  float powers[] = {2.0f, 1.5f, 3.0f};
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++)
    for (size_t p = 0; p < sizeof powers / sizeof powers[0]; p++) {
      int64_t n = sizes[s];
      float *u = rnd(n, 2), *dy = rnd(n, 1), *ref = rnd(n, 1), *g = dev_poison(n);
      OK(cpu->relu_pow_bwd(cpu, ref, dy, u, n, powers[p]));
      OK(gpu->relu_pow_bwd(gpu, g, devf(dy, n), devf(u, n), n, powers[p]));
      char what[96];
      snprintf(what, sizeof what, "relu_pow_bwd n=%lld p=%g", (long long)n, powers[p]);
      qg_test_expect_close(what, fetch(g, n), ref, n, TOL_FP32);
      release();
    }
}

static void test_channel_bwd(void **st) {
  (void)st;
  NEED_GPU();
  int shapes[][2] = {{1, 8}, {37, 384}, {5000, 512}, {300, 100}}; /* rows, d */
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int rows = shapes[s][0], d = shapes[s][1];
    int64_t n = (int64_t)rows * d;
    float *dy = rnd(n, 1), *x = rnd(n, 1), *x0 = rnd(n, 1), *mix = rnd(2 * d, 1), *dmix0 = rnd(2 * d, 1);
    float *dx00 = rnd(n, 1);
    char what[96];
    /* resid_mix: dx overwritten, dx0 and dmix accumulated */
    float *rdx = rnd(n, 1), *rdx0 = copy(dx00, n), *rdm = copy(dmix0, 2 * d);
    float *gdx = dev_poison(n), *gdx0 = devf(dx00, n), *gdm = devf(dmix0, 2 * d);
    OK(cpu->resid_mix_bwd(cpu, rdx, rdx0, rdm, dy, x, x0, mix, rows, d));
    OK(gpu->resid_mix_bwd(gpu, gdx, gdx0, gdm, devf(dy, n), devf(x, n), devf(x0, n), devf(mix, 2 * d), rows, d));
    snprintf(what, sizeof what, "resid_mix_bwd %dx%d: dx", rows, d);
    qg_test_expect_close(what, fetch(gdx, n), rdx, n, TOL_FP32);
    qg_test_expect_close("  dx0", fetch(gdx0, n), rdx0, n, TOL_FP32);
    qg_test_expect_close("  dmix", fetch(gdm, 2 * d), rdm, 2 * d, TOL_FP32);
    /* add_scaled: dy (=|+=), ds accumulated */
    float *sc = rnd(d, 1), *ds0 = rnd(d, 1);
    for (int acc = 0; acc < 2; acc++) {
      float *rdy = acc ? copy(dx00, n) : rnd(n, 1), *rds = copy(ds0, d);
      float *gdy = acc ? devf(dx00, n) : dev_poison(n), *gds = devf(ds0, d);
      OK(cpu->add_scaled_bwd(cpu, rdy, rds, dy, x, sc, rows, d, acc));
      OK(gpu->add_scaled_bwd(gpu, gdy, gds, devf(dy, n), devf(x, n), devf(sc, d), rows, d, acc));
      snprintf(what, sizeof what, "add_scaled_bwd %dx%d%s: dy", rows, d, acc ? " accumulate" : "");
      qg_test_expect_close(what, fetch(gdy, n), rdy, n, TOL_FP32);
      qg_test_expect_close("  ds", fetch(gds, d), rds, d, TOL_FP32);
    }
    /* affine: dx overwritten (also in place), dscale and dshift accumulated */
    float *dsh0 = rnd(d, 1);
    for (int inplace = 0; inplace < 2; inplace++) {
      float *rdx2 = inplace ? copy(dy, n) : rnd(n, 1), *rsc = copy(ds0, d), *rsh = copy(dsh0, d);
      float *gdy = devf(dy, n), *gdx2 = inplace ? gdy : dev_poison(n), *gsc = devf(ds0, d), *gsh = devf(dsh0, d);
      OK(cpu->affine_bwd(cpu, rdx2, rsc, rsh, inplace ? rdx2 : dy, x, sc, rows, d));
      OK(gpu->affine_bwd(gpu, gdx2, gsc, gsh, gdy, devf(x, n), devf(sc, d), rows, d));
      snprintf(what, sizeof what, "affine_bwd %dx%d%s: dx", rows, d, inplace ? " in place" : "");
      qg_test_expect_close(what, fetch(gdx2, n), rdx2, n, TOL_FP32);
      qg_test_expect_close("  dscale", fetch(gsc, d), rsc, d, TOL_FP32);
      qg_test_expect_close("  dshift", fetch(gsh, d), rsh, d, TOL_FP32);
    }
    release();
  }
}

static void test_xent_fwd_bwd(void **st) {
  (void)st;
  NEED_GPU();
  int shapes[][2] = {{1, 5}, {37, 1024}, {1000, 1024}, {64, 300}}; /* rows, V */
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int rows = shapes[s][0], V = shapes[s][1];
    int64_t n = (int64_t)rows * V;
    float *l = rnd(n, 40); /* beyond the soft cap of 30 */
    int32_t *t = rnd_ids(rows, V);
    for (int inplace = 0; inplace < 2; inplace++) {
      float *ref = inplace ? copy(l, n) : rnd(n, 1);
      float *gl = devf(l, n), *gd = inplace ? gl : dev_poison(n);
      double lc, lg;
      OK(cpu->xent_fwd_bwd(cpu, ref, &lc, inplace ? ref : l, t, rows, V, 30.0f, 0.125f));
      OK(gpu->xent_fwd_bwd(gpu, gd, &lg, gl, dev(t, sizeof(int32_t) * (size_t)rows), rows, V, 30.0f, 0.125f));
      char what[96];
      snprintf(what, sizeof what, "xent_fwd_bwd rows=%d V=%d%s: dlogits", rows, V, inplace ? " in place" : "");
      qg_test_expect_close(what, fetch(gd, n), ref, n, TOL_FP32);
      double e = fabs(lg - lc) / fabs(lc);
      print_message("  %-48s rel err %.2e\n", "  loss sum", e);
      if (!(e <= TOL_LOSS)) fail_msg("xent loss sum: GPU %.10g, CPU %.10g (rel %.2e)", lg, lc, e);
    }
    release();
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_embed_bwd),      cmocka_unit_test(test_rmsnorm_bwd),   cmocka_unit_test(test_matmul_bwd),
      cmocka_unit_test(test_rope_bwd),       cmocka_unit_test(test_head_scale_bwd),
      cmocka_unit_test(test_attention_bwd),  cmocka_unit_test(test_relu_pow_bwd),  cmocka_unit_test(test_channel_bwd),
      cmocka_unit_test(test_xent_fwd_bwd),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
