/* kernels/ (backward): each of the 12 backward ops, two ways, as rows of the twin harness
 * (tests/twin.h).
 *
 * Twin rows: the CUDA tables against the CPU twin (kernels/cpu/cpu_ops_bwd.c) on fresh random
 * inputs, several shapes, sizes that are not powers of two among them. Outputs an op
 * overwrites are poisoned with NaN (an element never written fails); outputs it
 * accumulates into (parameter gradients, dx0, the accumulate flag) start from the same
 * random values on both sides. Error measure: ||gpu - cpu|| / ||cpu|| over each whole
 * output (NaN never passes). Tolerances: 1e-5 for fp32 ops, 1e-4 for attention (dS = p (dP
 * - D) cancels), 1e-2 for the bf16 matmul gradients, 1e-6 for the summed loss, and 0
 * (bit-identical) for the embedding gradient, whose GPU sums run in the CPU's order.
 * Skipped, visibly, where there is no CUDA GPU or CUDA is not compiled in.
 *
 * Finite-difference rows, in every build: each backward op on the CPU against central
 * differences of its own forward op, L = sum(w * y) summed in fp64 and the backward fed
 * dy = w, on small shapes (every entry of small variables, a seeded sample of 256 of
 * larger ones). tests/test_backward.c checks the same ops against independent fp64
 * formulas; these rows check the backward is the derivative of the forward it ships
 * with, through the same table a GPU backend fills. */
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
#include "kernels/cuda_precision.h"
#include "kernels/ops.h"
#include "tests/testlib.h"
#include "tests/twin.h"

#define OK QG_TEST_OK
#define ROW QG_TWIN_ROW_TOL
#define FP32 QG_PRECISION_FP32
#define TOL_FP32 1e-5
#define TOL_ATT 1e-4
#define TOL_BF16 1e-2
#define TOL_LOSS 1e-6
#define WHY_FP32 "fp32 on both sides; only the summation order differs"
#define EPS 1.1920929e-07f

/* A backend copy of a host buffer, as the next few rows start several outputs from it. */
static float *dup(qg_twin_io *io, const float *h, int64_t n) { return qg_twin_upf(io, h, n); }

/* ---- twin rows -------------------------------------------------------------------------- */

static void run_embed_bwd(qg_twin_io *io, const int64_t *sh) { /* n, d, V */
  int64_t n = sh[0];
  int d = (int)sh[1], V = (int)sh[2];
  float *dx = qg_twin_rand(io, n * d, 1), *demb = qg_twin_rand(io, (int64_t)V * d, 1);
  int32_t *tok = qg_twin_ids(io, n, V);
  OK(io->o->embed_bwd(io->o, demb, dx, tok, n, d));
  qg_twin_result(io, "demb (exact)", demb, (int64_t)V * d, 0.0);
}

static void run_rmsnorm_bwd(qg_twin_io *io, const int64_t *sh) { /* rows, dim */
  int64_t rows = sh[0], n = rows * sh[1];
  int dim = (int)sh[1];
  float *x = qg_twin_rand(io, n, 3), *hdy = qg_twin_randh(io, n, 1), *base = qg_twin_randh(io, n, 1);
  float *dy = dup(io, hdy, n), *g = qg_twin_poison(io, n);
  OK(io->o->rmsnorm_bwd(io->o, g, dy, x, rows, dim, EPS, 0));
  qg_twin_result(io, "dx", g, n, ROW);
  g = dup(io, base, n);
  OK(io->o->rmsnorm_bwd(io->o, g, dy, x, rows, dim, EPS, 1));
  qg_twin_result(io, "dx accumulate", g, n, ROW);
  g = dup(io, hdy, n); /* in place (dx == dy) */
  OK(io->o->rmsnorm_bwd(io->o, g, g, x, rows, dim, EPS, 0));
  qg_twin_result(io, "dx in place", g, n, ROW);
}

static void run_matmul_bwd(qg_twin_io *io, const int64_t *sh) { /* M, K, N */
  int64_t M = sh[0];
  int K = (int)sh[1], N = (int)sh[2];
  float *dy = qg_twin_rand(io, M * N, 1), *w = qg_twin_rand(io, (int64_t)N * K, 0.1f), *x = qg_twin_rand(io, M * K, 1);
  float *dx0 = qg_twin_randh(io, M * K, 1), *dw0 = qg_twin_randh(io, (int64_t)N * K, 1);
  float *gd = qg_twin_poison(io, M * K);
  OK(io->o->matmul_bwd_x(io->o, gd, dy, w, M, K, N, 0));
  qg_twin_result(io, "dx", gd, M * K, ROW);
  gd = dup(io, dx0, M * K);
  OK(io->o->matmul_bwd_x(io->o, gd, dy, w, M, K, N, 1));
  qg_twin_result(io, "dx acc", gd, M * K, ROW);
  float *gw = dup(io, dw0, (int64_t)N * K);
  OK(io->o->matmul_bwd_w(io->o, gw, dy, x, M, K, N));
  qg_twin_result(io, "dw", gw, (int64_t)N * K, ROW);
}

static void run_rope_bwd(qg_twin_io *io, const int64_t *sh) { /* B, T, H, hd */
  int64_t n = sh[0] * sh[1] * sh[2] * sh[3];
  float *g = qg_twin_rand(io, n, 1);
  OK(io->o->rope_bwd(io->o, g, sh[0], (int)sh[1], (int)sh[2], (int)sh[3], 10000.0f));
  qg_twin_result(io, "dx", g, n, ROW);
}

static void run_head_scale_bwd(qg_twin_io *io, const int64_t *sh) { /* rows, H, hd */
  int64_t rows = sh[0], n = rows * sh[1] * sh[2];
  int H = (int)sh[1], hd = (int)sh[2];
  float *dy = qg_twin_rand(io, n, 1), *x = qg_twin_rand(io, n, 1), *gain = qg_twin_rand(io, H, 2);
  float *dg = qg_twin_rand(io, H, 1), *dx = qg_twin_poison(io, n);
  OK(io->o->head_scale_bwd(io->o, dx, dg, dy, x, rows, H, hd, gain));
  qg_twin_result(io, "dx", dx, n, ROW);
  qg_twin_result(io, "dgain", dg, H, ROW);
}

static void run_attention_bwd(qg_twin_io *io, const int64_t *sh) { /* B, T, H, KVH, hd */
  int64_t B = sh[0];
  int T = (int)sh[1], H = (int)sh[2], KVH = (int)sh[3], hd = (int)sh[4];
  int64_t nq = B * T * H * hd, nk = B * T * KVH * hd;
  float *q = qg_twin_randh(io, nq, 1), *k = qg_twin_randh(io, nk, 1), *v = qg_twin_randh(io, nk, 1);
  float *dy = qg_twin_rand(io, nq, 1), *y = qg_twin_keep(io, malloc(sizeof(float) * (size_t)nq));
  /* the forward output the backward takes: the CPU's on both sides, so both get one input */
  const qg_ops *cpu = qg_ops_cpu();
  OK(cpu->attention(cpu, y, q, k, v, B, T, H, KVH, hd));
  float *gq = qg_twin_poison(io, nq), *gk = qg_twin_poison(io, nk), *gv = qg_twin_poison(io, nk);
  OK(io->o->attention_bwd(io->o, gq, gk, gv, dy, dup(io, q, nq), dup(io, k, nk), dup(io, v, nk), dup(io, y, nq), B, T,
                          H, KVH, hd));
  qg_twin_result(io, "dq", gq, nq, ROW);
  qg_twin_result(io, "dk", gk, nk, ROW);
  qg_twin_result(io, "dv", gv, nk, ROW);
}

static void run_relu_pow_bwd(qg_twin_io *io, const int64_t *sh) { /* n, p*10 */
  int64_t n = sh[0];
  float *u = qg_twin_rand(io, n, 2), *dy = qg_twin_rand(io, n, 1), *g = qg_twin_poison(io, n);
  OK(io->o->relu_pow_bwd(io->o, g, dy, u, n, (float)sh[1] / 10.0f));
  qg_twin_result(io, "dx", g, n, ROW);
}

static void run_channel_bwd(qg_twin_io *io, const int64_t *sh) { /* rows, d */
  int64_t rows = sh[0], n = rows * sh[1];
  int d = (int)sh[1];
  float *dy = qg_twin_rand(io, n, 1), *x = qg_twin_rand(io, n, 1), *x0 = qg_twin_rand(io, n, 1);
  float *mix = qg_twin_rand(io, 2 * (int64_t)d, 1), *dmix0 = qg_twin_randh(io, 2 * (int64_t)d, 1);
  float *dx00 = qg_twin_randh(io, n, 1);
  /* resid_mix: dx overwritten, dx0 and dmix accumulated */
  float *gdx = qg_twin_poison(io, n), *gdx0 = dup(io, dx00, n), *gdm = dup(io, dmix0, 2 * (int64_t)d);
  OK(io->o->resid_mix_bwd(io->o, gdx, gdx0, gdm, dy, x, x0, mix, rows, d));
  qg_twin_result(io, "resid_mix dx", gdx, n, ROW);
  qg_twin_result(io, "resid_mix dx0", gdx0, n, ROW);
  qg_twin_result(io, "resid_mix dmix", gdm, 2 * (int64_t)d, ROW);
  /* add_scaled: dy (=|+=), ds accumulated */
  float *sc = qg_twin_rand(io, d, 1), *ds0 = qg_twin_randh(io, d, 1);
  for (int acc = 0; acc < 2; acc++) {
    float *gdy = acc ? dup(io, dx00, n) : qg_twin_poison(io, n), *gds = dup(io, ds0, d);
    OK(io->o->add_scaled_bwd(io->o, gdy, gds, dy, x, sc, rows, d, acc));
    qg_twin_result(io, acc ? "add_scaled dy accumulate" : "add_scaled dy", gdy, n, ROW);
    qg_twin_result(io, acc ? "add_scaled ds (accumulate run)" : "add_scaled ds", gds, d, ROW);
  }
  /* affine: dx overwritten (also in place), dscale and dshift accumulated */
  float *hdy = qg_twin_down(io, dy, n), *dsh0 = qg_twin_randh(io, d, 1);
  for (int inplace = 0; inplace < 2; inplace++) {
    float *gdy = dup(io, hdy, n), *gdx2 = inplace ? gdy : qg_twin_poison(io, n);
    float *gsc = dup(io, ds0, d), *gsh = dup(io, dsh0, d);
    OK(io->o->affine_bwd(io->o, gdx2, gsc, gsh, gdy, x, sc, rows, d));
    qg_twin_result(io, inplace ? "affine dx in place" : "affine dx", gdx2, n, ROW);
    qg_twin_result(io, "affine dscale", gsc, d, ROW);
    qg_twin_result(io, "affine dshift", gsh, d, ROW);
  }
}

static void run_xent(qg_twin_io *io, const int64_t *sh) { /* rows, V */
  int64_t rows = sh[0], n = rows * sh[1];
  int V = (int)sh[1];
  float *l = qg_twin_randh(io, n, 40); /* beyond the soft cap of 30 */
  int32_t *t = qg_twin_ids(io, rows, V);
  for (int inplace = 0; inplace < 2; inplace++) {
    float *gl = dup(io, l, n), *gd = inplace ? gl : qg_twin_poison(io, n);
    double loss = NAN;
    OK(io->o->xent_fwd_bwd(io->o, gd, &loss, gl, t, rows, V, 30.0f, 0.125f));
    qg_twin_result(io, inplace ? "dlogits in place" : "dlogits", gd, n, ROW);
    qg_twin_result_d(io, "loss sum", &loss, 1, TOL_LOSS);
  }
}

#define MATMUL_SHAPES {{1, 8, 8}, {37, 384, 100}, {1024, 512, 1536}, {300, 64, 1024}}

static const qg_twin_row rows[] = {
    {"embed_bwd", "n d V", run_embed_bwd, {{1, 8, 5}, {300, 100, 77}, {4099, 48, 3}, {2048, 512, 1024}}, 0.0,
     "the GPU sums each row in the CPU's order", FP32},
    {"rmsnorm_bwd", "rows dim", run_rmsnorm_bwd, {{1, 32}, {37, 384}, {1000, 512}, {5, 100}}, TOL_FP32, WHY_FP32, FP32},
    {"matmul_bwd fp32", "M K N", run_matmul_bwd, MATMUL_SHAPES, TOL_FP32, WHY_FP32, FP32},
    {"matmul_bwd bf16", "M K N", run_matmul_bwd, MATMUL_SHAPES, TOL_BF16,
     "bf16 operands (8-bit mantissa) with fp32 accumulation against the fp32 CPU", QG_PRECISION_BF16},
    {"rope_bwd", "B T H hd", run_rope_bwd, {{1, 1, 1, 8}, {2, 100, 8, 64}, {3, 37, 4, 48}, {1, 1024, 2, 32}}, TOL_FP32,
     WHY_FP32, FP32},
    {"head_scale_bwd", "rows H hd", run_head_scale_bwd, {{1, 1, 8}, {37, 8, 64}, {2000, 4, 48}, {300, 6, 16}}, TOL_FP32,
     WHY_FP32, FP32},
    {"attention_bwd", "B T H KVH hd", run_attention_bwd,
     {{1, 1, 1, 1, 8}, {2, 100, 8, 4, 64}, {3, 37, 6, 2, 48}, {1, 300, 4, 4, 32}, {2, 1024, 8, 4, 64}}, TOL_ATT,
     "dS = p (dP - D) cancels: fp32 rounding of the recomputed probabilities is amplified", FP32},
    {"relu_pow_bwd", "n p*10", run_relu_pow_bwd,
     {{1, 20}, {1, 15}, {1, 30}, {1000, 20}, {1000, 15}, {1000, 30}, {65537, 20}, {65537, 15}, {65537, 30}}, TOL_FP32,
     WHY_FP32, FP32},
    {"resid_mix/add_scaled/affine bwd", "rows d", run_channel_bwd, {{1, 8}, {37, 384}, {5000, 512}, {300, 100}},
     TOL_FP32, WHY_FP32, FP32},
    {"xent_fwd_bwd", "rows V", run_xent, {{1, 5}, {37, 1024}, {1000, 1024}, {64, 300}}, TOL_FP32,
     "fp32 softcap and softmax; the loss sum (fp64, row order) has its own 1e-6", FP32},
};

/* ---- finite-difference rows ---------------------------------------------------------------- */

/* Per row: the variables first (in the order grad reports them), then the constants in
 * f->io (w = dy and the like), kept in a small per-row context. */
typedef struct {
  float *w;
  int32_t *tok;
  float *x;     /* add_scaled's x, a constant of that op */
} fd_consts;
static fd_consts fc;

static float *var(qg_twin_fd *f, int i) { return f->var[i].x; }
static float *up(qg_twin_fd *f, int i) { return qg_twin_upf(&f->io, f->var[i].x, f->var[i].n); }

static void su_embed(qg_twin_fd *f, const int64_t *sh) { /* n, d, V */
  qg_twin_fd_var(f, "emb", sh[2] * sh[1], 1);
  fc.tok = qg_twin_idsh(&f->io, sh[0], (int)sh[2]);
  fc.w = qg_twin_randh(&f->io, sh[0] * sh[1], 1);
}
static double lo_embed(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *y = qg_twin_poison(io, sh[0] * sh[1]);
  OK(io->o->embed(io->o, y, up(f, 0), qg_twin_up(io, fc.tok, sizeof(int32_t) * (size_t)sh[0]), sh[0], (int)sh[1]));
  return qg_twin_dot(io, fc.w, y, sh[0] * sh[1]);
}
static void gr_embed(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *g = qg_twin_zeros(io, sh[2] * sh[1]);
  OK(io->o->embed_bwd(io->o, g, qg_twin_upf(io, fc.w, sh[0] * sh[1]),
                      qg_twin_up(io, fc.tok, sizeof(int32_t) * (size_t)sh[0]), sh[0], (int)sh[1]));
  qg_twin_fd_grad(f, "emb", g);
}

static void su_rms(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_fd_var(f, "x", sh[0] * sh[1], 3);
  fc.w = qg_twin_randh(&f->io, sh[0] * sh[1], 1);
}
static double lo_rms(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *y = qg_twin_poison(io, sh[0] * sh[1]);
  OK(io->o->rmsnorm(io->o, y, up(f, 0), sh[0], (int)sh[1], EPS));
  return qg_twin_dot(io, fc.w, y, sh[0] * sh[1]);
}
static void gr_rms(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *g = qg_twin_poison(io, sh[0] * sh[1]);
  OK(io->o->rmsnorm_bwd(io->o, g, qg_twin_upf(io, fc.w, sh[0] * sh[1]), up(f, 0), sh[0], (int)sh[1], EPS, 0));
  qg_twin_fd_grad(f, "x", g);
}

static void su_mm(qg_twin_fd *f, const int64_t *sh) { /* M, K, N */
  qg_twin_fd_var(f, "x", sh[0] * sh[1], 1);
  qg_twin_fd_var(f, "w", sh[2] * sh[1], 0.5f);
  fc.w = qg_twin_randh(&f->io, sh[0] * sh[2], 1);
}
static double lo_mm(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *y = qg_twin_poison(io, sh[0] * sh[2]);
  OK(io->o->matmul(io->o, y, up(f, 0), up(f, 1), sh[0], (int)sh[1], (int)sh[2]));
  return qg_twin_dot(io, fc.w, y, sh[0] * sh[2]);
}
static void gr_mm(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *dy = qg_twin_upf(io, fc.w, sh[0] * sh[2]), *dx = qg_twin_poison(io, sh[0] * sh[1]);
  float *dw = qg_twin_zeros(io, sh[2] * sh[1]);
  OK(io->o->matmul_bwd_x(io->o, dx, dy, up(f, 1), sh[0], (int)sh[1], (int)sh[2], 0));
  OK(io->o->matmul_bwd_w(io->o, dw, dy, up(f, 0), sh[0], (int)sh[1], (int)sh[2]));
  qg_twin_fd_grad(f, "x", dx);
  qg_twin_fd_grad(f, "w", dw);
}

static int64_t n4(const int64_t *sh) { return sh[0] * sh[1] * sh[2] * sh[3]; }

static void su_rope(qg_twin_fd *f, const int64_t *sh) { /* B, T, H, hd */
  qg_twin_fd_var(f, "x", n4(sh), 1);
  fc.w = qg_twin_randh(&f->io, n4(sh), 1);
}
static double lo_rope(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *x = up(f, 0);
  OK(io->o->rope(io->o, x, sh[0], (int)sh[1], (int)sh[2], (int)sh[3], 10000.0f));
  return qg_twin_dot(io, fc.w, x, n4(sh));
}
static void gr_rope(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *g = qg_twin_upf(io, fc.w, n4(sh));
  OK(io->o->rope_bwd(io->o, g, sh[0], (int)sh[1], (int)sh[2], (int)sh[3], 10000.0f));
  qg_twin_fd_grad(f, "x", g);
}

static void su_hs(qg_twin_fd *f, const int64_t *sh) { /* rows, H, hd */
  int64_t n = sh[0] * sh[1] * sh[2];
  qg_twin_fd_var(f, "x", n, 1);
  qg_twin_fd_var(f, "gain", sh[1], 2);
  fc.w = qg_twin_randh(&f->io, n, 1);
}
static double lo_hs(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *x = up(f, 0);
  OK(io->o->head_scale(io->o, x, sh[0], (int)sh[1], (int)sh[2], up(f, 1)));
  return qg_twin_dot(io, fc.w, x, sh[0] * sh[1] * sh[2]);
}
static void gr_hs(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  int64_t n = sh[0] * sh[1] * sh[2];
  float *dx = qg_twin_poison(io, n), *dg = qg_twin_zeros(io, sh[1]);
  OK(io->o->head_scale_bwd(io->o, dx, dg, qg_twin_upf(io, fc.w, n), up(f, 0), sh[0], (int)sh[1], (int)sh[2], up(f, 1)));
  qg_twin_fd_grad(f, "x", dx);
  qg_twin_fd_grad(f, "gain", dg);
}

static void su_att(qg_twin_fd *f, const int64_t *sh) { /* B, T, H, KVH, hd */
  int64_t nq = sh[0] * sh[1] * sh[2] * sh[4], nk = sh[0] * sh[1] * sh[3] * sh[4];
  qg_twin_fd_var(f, "q", nq, 1.5f);
  qg_twin_fd_var(f, "k", nk, 1.5f);
  qg_twin_fd_var(f, "v", nk, 1);
  fc.w = qg_twin_randh(&f->io, nq, 1);
}
static float *att(qg_twin_fd *f, const int64_t *sh, float *q, float *k, float *v) {
  qg_twin_io *io = &f->io;
  float *y = qg_twin_poison(io, sh[0] * sh[1] * sh[2] * sh[4]);
  OK(io->o->attention(io->o, y, q, k, v, sh[0], (int)sh[1], (int)sh[2], (int)sh[3], (int)sh[4]));
  return y;
}
static double lo_att(qg_twin_fd *f, const int64_t *sh) {
  return qg_twin_dot(&f->io, fc.w, att(f, sh, up(f, 0), up(f, 1), up(f, 2)), sh[0] * sh[1] * sh[2] * sh[4]);
}
static void gr_att(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  int64_t nq = sh[0] * sh[1] * sh[2] * sh[4], nk = sh[0] * sh[1] * sh[3] * sh[4];
  float *q = up(f, 0), *k = up(f, 1), *v = up(f, 2), *y = att(f, sh, q, k, v);
  float *dq = qg_twin_poison(io, nq), *dk = qg_twin_poison(io, nk), *dv = qg_twin_poison(io, nk);
  OK(io->o->attention_bwd(io->o, dq, dk, dv, qg_twin_upf(io, fc.w, nq), q, k, v, y, sh[0], (int)sh[1], (int)sh[2],
                          (int)sh[3], (int)sh[4]));
  qg_twin_fd_grad(f, "q", dq);
  qg_twin_fd_grad(f, "k", dk);
  qg_twin_fd_grad(f, "v", dv);
}

static void su_relu(qg_twin_fd *f, const int64_t *sh) { /* n, p*10 */
  float *u = qg_twin_fd_var(f, "u", sh[0], 2);
  for (int64_t i = 0; i < sh[0]; i++) /* away from the kink at 0, which a step would straddle */
    if (fabsf(u[i]) < 0.1f) u[i] = u[i] < 0 ? -0.1f - u[i] : 0.1f + u[i];
  fc.w = qg_twin_randh(&f->io, sh[0], 1);
}
static double lo_relu(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *x = up(f, 0);
  OK(io->o->relu_pow(io->o, x, sh[0], (float)sh[1] / 10.0f));
  return qg_twin_dot(io, fc.w, x, sh[0]);
}
static void gr_relu(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *g = qg_twin_poison(io, sh[0]);
  OK(io->o->relu_pow_bwd(io->o, g, qg_twin_upf(io, fc.w, sh[0]), up(f, 0), sh[0], (float)sh[1] / 10.0f));
  qg_twin_fd_grad(f, "u", g);
}

static void su_mix(qg_twin_fd *f, const int64_t *sh) { /* rows, d */
  qg_twin_fd_var(f, "x", sh[0] * sh[1], 1);
  qg_twin_fd_var(f, "x0", sh[0] * sh[1], 1);
  qg_twin_fd_var(f, "mix", 2 * sh[1], 1);
  fc.w = qg_twin_randh(&f->io, sh[0] * sh[1], 1);
}
static double lo_mix(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *x = up(f, 0);
  OK(io->o->resid_mix(io->o, x, up(f, 1), up(f, 2), sh[0], (int)sh[1]));
  return qg_twin_dot(io, fc.w, x, sh[0] * sh[1]);
}
static void gr_mix(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  int64_t n = sh[0] * sh[1];
  float *dx = qg_twin_poison(io, n), *dx0 = qg_twin_zeros(io, n), *dm = qg_twin_zeros(io, 2 * sh[1]);
  OK(io->o->resid_mix_bwd(io->o, dx, dx0, dm, qg_twin_upf(io, fc.w, n), up(f, 0), up(f, 1), up(f, 2), sh[0], (int)sh[1]));
  qg_twin_fd_grad(f, "x", dx);
  qg_twin_fd_grad(f, "x0", dx0);
  qg_twin_fd_grad(f, "mix", dm);
}

static void su_as(qg_twin_fd *f, const int64_t *sh) { /* rows, d: x += s * y */
  qg_twin_fd_var(f, "y", sh[0] * sh[1], 1);
  qg_twin_fd_var(f, "s", sh[1], 1);
  fc.x = qg_twin_randh(&f->io, sh[0] * sh[1], 1);
  fc.w = qg_twin_randh(&f->io, sh[0] * sh[1], 1);
}
static double lo_as(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *x = qg_twin_upf(io, fc.x, sh[0] * sh[1]);
  OK(io->o->add_scaled(io->o, x, up(f, 0), up(f, 1), sh[0], (int)sh[1]));
  return qg_twin_dot(io, fc.w, x, sh[0] * sh[1]);
}
static void gr_as(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  int64_t n = sh[0] * sh[1];
  float *dy = qg_twin_poison(io, n), *ds = qg_twin_zeros(io, sh[1]);
  OK(io->o->add_scaled_bwd(io->o, dy, ds, qg_twin_upf(io, fc.w, n), up(f, 0), up(f, 1), sh[0], (int)sh[1], 0));
  qg_twin_fd_grad(f, "y", dy);
  qg_twin_fd_grad(f, "s", ds);
}

static void su_aff(qg_twin_fd *f, const int64_t *sh) { /* rows, d */
  qg_twin_fd_var(f, "x", sh[0] * sh[1], 1);
  qg_twin_fd_var(f, "scale", sh[1], 1);
  qg_twin_fd_var(f, "shift", sh[1], 1);
  fc.w = qg_twin_randh(&f->io, sh[0] * sh[1], 1);
}
static double lo_aff(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  float *x = up(f, 0);
  OK(io->o->affine(io->o, x, up(f, 1), up(f, 2), sh[0], (int)sh[1]));
  return qg_twin_dot(io, fc.w, x, sh[0] * sh[1]);
}
static void gr_aff(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  int64_t n = sh[0] * sh[1];
  float *dx = qg_twin_poison(io, n), *dsc = qg_twin_zeros(io, sh[1]), *dsh = qg_twin_zeros(io, sh[1]);
  OK(io->o->affine_bwd(io->o, dx, dsc, dsh, qg_twin_upf(io, fc.w, n), up(f, 0), up(f, 1), sh[0], (int)sh[1]));
  qg_twin_fd_grad(f, "x", dx);
  qg_twin_fd_grad(f, "scale", dsc);
  qg_twin_fd_grad(f, "shift", dsh);
}

static void su_xent(qg_twin_fd *f, const int64_t *sh) { /* rows, V */
  qg_twin_fd_var(f, "logits", sh[0] * sh[1], 40); /* beyond the soft cap of 30 */
  fc.tok = qg_twin_idsh(&f->io, sh[0], (int)sh[1]);
}
static double lo_xent(qg_twin_fd *f, const int64_t *sh) { /* the summed loss itself, fp64 */
  qg_twin_io *io = &f->io;
  int64_t n = sh[0] * sh[1];
  double loss;
  OK(io->o->xent_fwd_bwd(io->o, qg_twin_poison(io, n), &loss, up(f, 0),
                         qg_twin_up(io, fc.tok, sizeof(int32_t) * (size_t)sh[0]), sh[0], (int)sh[1], 30.0f, 1.0f));
  return loss;
}
static void gr_xent(qg_twin_fd *f, const int64_t *sh) {
  qg_twin_io *io = &f->io;
  int64_t n = sh[0] * sh[1];
  double loss;
  float *g = qg_twin_poison(io, n);
  OK(io->o->xent_fwd_bwd(io->o, g, &loss, up(f, 0), qg_twin_up(io, fc.tok, sizeof(int32_t) * (size_t)sh[0]), sh[0],
                         (int)sh[1], 30.0f, 1.0f));
  qg_twin_fd_grad(f, "logits", g);
}

/* fp32 forwards: each loss carries rounding noise of ~1e-7 |L|, divided by the step of
 * 1e-3 (relative), plus an O(h^2) truncation; measured errors are ~1e-6 .. 3e-4. */
#define TOL_FD 1e-3
#define WHY_FD "central differences of an fp32 forward with a 1e-3 relative step"

static const qg_twin_fd_row fd_rows[] = {
    {"embed_bwd", "n d V", {{1, 8, 5}, {30, 6, 7}}, su_embed, lo_embed, gr_embed, TOL_FD, WHY_FD, 0, 0},
    {"rmsnorm_bwd", "rows dim", {{1, 1}, {3, 40}, {2, 129}}, su_rms, lo_rms, gr_rms, TOL_FD, WHY_FD, 0, 0},
    {"matmul_bwd", "M K N", {{1, 1, 1}, {5, 12, 7}, {9, 33, 17}}, su_mm, lo_mm, gr_mm, TOL_FD, WHY_FD, 0, 0},
    {"rope_bwd", "B T H hd", {{1, 1, 1, 8}, {2, 7, 2, 12}}, su_rope, lo_rope, gr_rope, TOL_FD, WHY_FD, 0, 0},
    {"head_scale_bwd", "rows H hd", {{1, 1, 8}, {5, 3, 6}}, su_hs, lo_hs, gr_hs, TOL_FD, WHY_FD, 0, 0},
    {"attention_bwd", "B T H KVH hd", {{1, 1, 1, 1, 8}, {2, 9, 4, 2, 8}, {1, 13, 2, 1, 24}}, su_att, lo_att, gr_att,
     TOL_FD, "a 1e-2 step: the softmax's fp32 noise over a 1e-3 step comes near the tolerance", 1e-2, 0},
    {"relu_pow_bwd", "n p*10", {{1, 20}, {200, 20}, {200, 15}, {200, 30}}, su_relu, lo_relu, gr_relu, TOL_FD, WHY_FD, 0,
     0},
    {"resid_mix_bwd", "rows d", {{1, 1}, {7, 19}}, su_mix, lo_mix, gr_mix, TOL_FD, WHY_FD, 0, 0},
    {"add_scaled_bwd", "rows d", {{1, 1}, {7, 19}}, su_as, lo_as, gr_as, TOL_FD, WHY_FD, 0, 0},
    {"affine_bwd", "rows d", {{1, 1}, {7, 19}}, su_aff, lo_aff, gr_aff, TOL_FD, WHY_FD, 0, 0},
    {"xent_fwd_bwd", "rows V", {{1, 5}, {6, 37}}, su_xent, lo_xent, gr_xent, TOL_FD, WHY_FD, 0, 0},
};

int main(void) {
  (void)var;
  return qg_twin_main("cuda backward", rows, sizeof rows / sizeof rows[0], fd_rows, sizeof fd_rows / sizeof fd_rows[0],
                      NULL, 0);
}
