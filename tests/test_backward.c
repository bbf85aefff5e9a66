/* Backward ops and the whole-model gradient against finite differences of an independent
 * fp64 implementation (the "fp64 check harness").
 *
 * Each op test draws random fp32 inputs, defines L = sum(w * f(x)) with a random w and f
 * the op written here in fp64 loops, and compares the fp32 backward op (fed dy = w) with
 * central differences of L in fp64 (step 1e-5 x max(1, |x|)). The measure is the normwise
 * relative error ||g - g_fd|| / ||g_fd|| per gradient tensor; tolerance 1e-4 (fp32
 * arithmetic in the op gives ~1e-6). The model test does the same for every parameter of
 * two tiny models (tied 3-layer U-Net; untied depth-recurrent 2 blocks x 2 with relu^3)
 * against a complete fp64 forward written in this file, and checks the training loss
 * against that forward and against the inference forward (qg_gpt_score). */
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

#include "kernels/ops.h"
#include "model/gpt.h"
#include "tests/testlib.h"

#define TOL 1e-4

static uint64_t rng = 12345;
static float rnd(void) { return qg_test_randf(&rng); }
static double *dalloc(int64_t n) { return calloc((size_t)(n ? n : 1), sizeof(double)); }
static float *falloc(int64_t n) { return calloc((size_t)(n ? n : 1), sizeof(float)); }
/* random fp32 values, mirrored into an fp64 array (exactly the same numbers) */
static void fill(float *f, double *d, int64_t n, float scale, float offset) {
  for (int64_t i = 0; i < n; i++) {
    f[i] = offset + scale * rnd();
    d[i] = f[i];
  }
}

/* ---- the harness -------------------------------------------------------------------- */

typedef double (*loss_fn)(void *ctx);

/* Central differences of loss() w.r.t. x[idx] for `count` indices (all when count >= n,
 * else a deterministic sample), against the analytic gradient g (fp32). Returns the
 * normwise relative error over the checked entries. */
static double fd_check(const char *what, loss_fn loss, void *ctx, double *x, int64_t n, const float *g, int64_t count) {
  double num = 0, den = 0;
  uint64_t pick = 99;
  int64_t m = count < n ? count : n;
  for (int64_t k = 0; k < m; k++) {
    int64_t i = count < n ? (int64_t)(qg_test_rand(&pick) % (uint64_t)n) : k;
    double x0 = x[i], h = 1e-5 * fmax(1.0, fabs(x0));
    x[i] = x0 + h;
    double lp = loss(ctx);
    x[i] = x0 - h;
    double lm = loss(ctx);
    x[i] = x0;
    double fd = (lp - lm) / (2 * h);
    num += (g[i] - fd) * (g[i] - fd);
    den += fd * fd;
  }
  double rel = sqrt(num) / fmax(sqrt(den), 1e-300);
  print_message("  %-28s %6lld entries  rel err %.2e\n", what, (long long)m, rel);
  if (!(rel < TOL)) fail_msg("%s: relative error %.3e above %.0e", what, rel, TOL);
  assert_true(den > 0); /* the check must see a non-zero gradient */
  return rel;
}

static double dot(const double *a, const double *w, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += a[i] * w[i];
  return s;
}

/* ---- fp64 reference ops --------------------------------------------------------------- */

static void rms64(double *y, const double *x, int64_t rows, int n, double eps) {
  for (int64_t r = 0; r < rows; r++) {
    double ss = 0;
    for (int j = 0; j < n; j++) ss += x[r * n + j] * x[r * n + j];
    double inv = 1.0 / sqrt(ss / n + eps);
    for (int j = 0; j < n; j++) y[r * n + j] = x[r * n + j] * inv;
  }
}

static void rope64(double *x, int64_t B, int T, int H, int hd, float base) {
  int half = hd / 2;
  for (int64_t r = 0; r < B * T; r++) {
    int t = (int)(r % T);
    for (int h = 0; h < H; h++)
      for (int j = 0; j < half; j++) {
        float inv = 1.0f / powf(base, (float)(2 * j) / (float)hd), a = (float)t * inv;
        double c = cos((double)a), s = sin((double)a);
        double *v = x + (r * H + h) * hd, x1 = v[j], x2 = v[j + half];
        v[j] = x1 * c + x2 * s;
        v[j + half] = -x1 * s + x2 * c;
      }
  }
}

static void attn64(double *y, const double *q, const double *k, const double *v, int64_t B, int T, int H, int KVH,
                   int hd) {
  double *sc = dalloc(T);
  int qs = H * hd, ks = KVH * hd;
  for (int64_t b = 0; b < B; b++)
    for (int h = 0; h < H; h++) {
      int kh = h / (H / KVH);
      for (int t = 0; t < T; t++) {
        const double *qq = q + (b * T + t) * qs + h * hd;
        double mx = -INFINITY, sum = 0;
        for (int s = 0; s <= t; s++) {
          sc[s] = dot(qq, k + (b * T + s) * ks + kh * hd, hd) / sqrt((double)hd);
          mx = fmax(mx, sc[s]);
        }
        for (int s = 0; s <= t; s++) sum += (sc[s] = exp(sc[s] - mx));
        double *yy = y + (b * T + t) * qs + h * hd;
        for (int j = 0; j < hd; j++) {
          double acc = 0;
          for (int s = 0; s <= t; s++) acc += sc[s] * v[(b * T + s) * ks + kh * hd + j];
          yy[j] = acc / sum;
        }
      }
    }
  free(sc);
}

static void matmul64(double *y, const double *x, const double *w, int64_t M, int K, int N) {
  for (int64_t i = 0; i < M; i++)
    for (int j = 0; j < N; j++) y[i * N + j] = dot(x + i * K, w + (int64_t)j * K, K);
}

static double xent64(const double *l, const int32_t *tgt, int64_t rows, int V, double cap) {
  double tot = 0;
  for (int64_t r = 0; r < rows; r++) {
    double mx = -INFINITY, s = 0;
    for (int i = 0; i < V; i++) mx = fmax(mx, cap * tanh(l[r * V + i] / cap));
    for (int i = 0; i < V; i++) s += exp(cap * tanh(l[r * V + i] / cap) - mx);
    tot += mx + log(s) - cap * tanh(l[r * V + tgt[r]] / cap);
  }
  return tot / (double)rows;
}

/* ---- op tests ----------------------------------------------------------------------- */

/* Shared context: up to four fp64 inputs, the projection w, shapes. */
typedef struct {
  double *x[4], *w, *out;
  int64_t rows, n;
  int d, B, T, H, KVH, hd, V;
  double p;
  int32_t *tok;
} op_ctx;

static double l_rms(void *c) {
  op_ctx *o = c;
  rms64(o->out, o->x[0], o->rows, o->d, FLT_EPSILON);
  return dot(o->out, o->w, o->rows * o->d);
}

static void test_rmsnorm_bwd(void **st) {
  (void)st;
  const qg_ops *ops = qg_ops_cpu();
  int64_t rows = 70;
  int d = 24;
  op_ctx c = {.rows = rows, .d = d};
  float *x = falloc(rows * d), *w = falloc(rows * d), *dx = falloc(rows * d);
  c.x[0] = dalloc(rows * d), c.w = dalloc(rows * d), c.out = dalloc(rows * d);
  fill(x, c.x[0], rows * d, 2.0f, 0.3f);
  fill(w, c.w, rows * d, 1.0f, 0);
  assert_int_equal(ops->rmsnorm_bwd(ops, dx, w, x, rows, d, FLT_EPSILON, 0), QG_OK);
  fd_check("rmsnorm dx", l_rms, &c, c.x[0], rows * d, dx, 1 << 30);
  /* accumulate = 1 adds onto what is there */
  float *acc = falloc(rows * d);
  for (int64_t i = 0; i < rows * d; i++) acc[i] = 1.0f;
  assert_int_equal(ops->rmsnorm_bwd(ops, acc, w, x, rows, d, FLT_EPSILON, 1), QG_OK);
  for (int64_t i = 0; i < rows * d; i++) assert_float_equal(acc[i], 1.0f + dx[i], 1e-5);
  free(acc), free(x), free(w), free(dx), free(c.x[0]), free(c.w), free(c.out);
}

static double l_matmul(void *c) {
  op_ctx *o = c;
  matmul64(o->out, o->x[0], o->x[1], o->rows, o->d, (int)o->n);
  return dot(o->out, o->w, o->rows * o->n);
}

static void test_matmul_bwd(void **st) {
  (void)st;
  const qg_ops *ops = qg_ops_cpu();
  int64_t M = 33;
  int K = 20, N = 12;
  op_ctx c = {.rows = M, .d = K, .n = N};
  float *x = falloc(M * K), *wt = falloc((int64_t)N * K), *g = falloc(M * N), *dx = falloc(M * K),
        *dw = falloc((int64_t)N * K);
  c.x[0] = dalloc(M * K), c.x[1] = dalloc((int64_t)N * K), c.w = dalloc(M * N), c.out = dalloc(M * N);
  fill(x, c.x[0], M * K, 1, 0);
  fill(wt, c.x[1], (int64_t)N * K, 1, 0);
  fill(g, c.w, M * N, 1, 0);
  assert_int_equal(ops->matmul_bwd_x(ops, dx, g, wt, M, K, N, 0), QG_OK);
  assert_int_equal(ops->matmul_bwd_w(ops, dw, g, x, M, K, N), QG_OK);
  fd_check("matmul dx", l_matmul, &c, c.x[0], M * K, dx, 1 << 30);
  fd_check("matmul dw", l_matmul, &c, c.x[1], (int64_t)N * K, dw, 1 << 30);
  free(x), free(wt), free(g), free(dx), free(dw);
  for (int i = 0; i < 2; i++) free(c.x[i]);
  free(c.w), free(c.out);
}

static double l_rope(void *c) {
  op_ctx *o = c;
  memcpy(o->out, o->x[0], sizeof(double) * (size_t)(o->B * o->T * o->H * o->hd));
  rope64(o->out, o->B, o->T, o->H, o->hd, 10000.0f);
  return dot(o->out, o->w, (int64_t)o->B * o->T * o->H * o->hd);
}

static void test_rope_bwd(void **st) {
  (void)st;
  const qg_ops *ops = qg_ops_cpu();
  op_ctx c = {.B = 2, .T = 70, .H = 3, .hd = 8};
  int64_t n = (int64_t)c.B * c.T * c.H * c.hd;
  float *x = falloc(n), *g = falloc(n);
  c.x[0] = dalloc(n), c.w = dalloc(n), c.out = dalloc(n);
  fill(x, c.x[0], n, 1, 0);
  fill(g, c.w, n, 1, 0);
  assert_int_equal(ops->rope_bwd(ops, g, c.B, c.T, c.H, c.hd, 10000.0f), QG_OK); /* in place: g becomes dx */
  fd_check("rope dx", l_rope, &c, c.x[0], n, g, 1 << 30);
  free(x), free(g), free(c.x[0]), free(c.w), free(c.out);
}

static double l_head_scale(void *c) {
  op_ctx *o = c;
  int64_t n = o->rows * o->H * o->hd;
  for (int64_t i = 0; i < n; i++) o->out[i] = o->x[0][i] * o->x[1][(i / o->hd) % o->H];
  return dot(o->out, o->w, n);
}

static void test_head_scale_bwd(void **st) {
  (void)st;
  const qg_ops *ops = qg_ops_cpu();
  op_ctx c = {.rows = 40, .H = 4, .hd = 6};
  int64_t n = c.rows * c.H * c.hd;
  float *x = falloc(n), *gain = falloc(c.H), *g = falloc(n), *dx = falloc(n), *dgain = falloc(c.H);
  c.x[0] = dalloc(n), c.x[1] = dalloc(c.H), c.w = dalloc(n), c.out = dalloc(n);
  fill(x, c.x[0], n, 1, 0);
  fill(gain, c.x[1], c.H, 0.5f, 1.5f);
  fill(g, c.w, n, 1, 0);
  assert_int_equal(ops->head_scale_bwd(ops, dx, dgain, g, x, c.rows, c.H, c.hd, gain), QG_OK);
  fd_check("head_scale dx", l_head_scale, &c, c.x[0], n, dx, 1 << 30);
  fd_check("head_scale dgain", l_head_scale, &c, c.x[1], c.H, dgain, 1 << 30);
  free(x), free(gain), free(g), free(dx), free(dgain);
  for (int i = 0; i < 2; i++) free(c.x[i]);
  free(c.w), free(c.out);
}

static double l_attn(void *c) {
  op_ctx *o = c;
  attn64(o->out, o->x[0], o->x[1], o->x[2], o->B, o->T, o->H, o->KVH, o->hd);
  return dot(o->out, o->w, (int64_t)o->B * o->T * o->H * o->hd);
}

/* T = 70 crosses the 64-query block; GQA with 2 query heads per KV head. */
static void test_attention_bwd(void **st) {
  (void)st;
  const qg_ops *ops = qg_ops_cpu();
  op_ctx c = {.B = 2, .T = 70, .H = 4, .KVH = 2, .hd = 8};
  int64_t R = (int64_t)c.B * c.T, nq = R * c.H * c.hd, nk = R * c.KVH * c.hd;
  float *q = falloc(nq), *k = falloc(nk), *v = falloc(nk), *y = falloc(nq), *g = falloc(nq), *dq = falloc(nq),
        *dk = falloc(nk), *dv = falloc(nk);
  c.x[0] = dalloc(nq), c.x[1] = dalloc(nk), c.x[2] = dalloc(nk), c.w = dalloc(nq), c.out = dalloc(nq);
  fill(q, c.x[0], nq, 1.5f, 0);
  fill(k, c.x[1], nk, 1.5f, 0);
  fill(v, c.x[2], nk, 1, 0);
  fill(g, c.w, nq, 1, 0);
  for (int64_t i = 0; i < nk; i++) dk[i] = dv[i] = 7.0f; /* overwritten, not accumulated */
  assert_int_equal(ops->attention(ops, y, q, k, v, c.B, c.T, c.H, c.KVH, c.hd), QG_OK);
  assert_int_equal(ops->attention_bwd(ops, dq, dk, dv, g, q, k, v, y, c.B, c.T, c.H, c.KVH, c.hd), QG_OK);
  fd_check("attention dq", l_attn, &c, c.x[0], nq, dq, 400);
  fd_check("attention dk", l_attn, &c, c.x[1], nk, dk, 400);
  fd_check("attention dv", l_attn, &c, c.x[2], nk, dv, 400);
  free(q), free(k), free(v), free(y), free(g), free(dq), free(dk), free(dv);
  for (int i = 0; i < 3; i++) free(c.x[i]);
  free(c.w), free(c.out);
}

static double l_relu(void *c) {
  op_ctx *o = c;
  for (int64_t i = 0; i < o->n; i++) o->out[i] = o->x[0][i] > 0 ? pow(o->x[0][i], o->p) : 0;
  return dot(o->out, o->w, o->n);
}

static void test_relu_pow_bwd(void **st) {
  (void)st;
  const qg_ops *ops = qg_ops_cpu();
  for (int pi = 0; pi < 2; pi++) {
    op_ctx c = {.n = 3000, .p = pi ? 3.0 : 2.0};
    float *u = falloc(c.n), *g = falloc(c.n);
    c.x[0] = dalloc(c.n), c.w = dalloc(c.n), c.out = dalloc(c.n);
    fill(u, c.x[0], c.n, 1, 0);
    for (int64_t i = 0; i < c.n; i++) /* keep clear of the kink at 0, where FD is meaningless */
      if (fabs(c.x[0][i]) < 1e-3) u[i] = (float)(c.x[0][i] = 0.5);
    fill(g, c.w, c.n, 1, 0);
    assert_int_equal(ops->relu_pow_bwd(ops, g, g, u, c.n, (float)c.p), QG_OK);
    fd_check(pi ? "relu^3 dx" : "relu^2 dx", l_relu, &c, c.x[0], c.n, g, 1 << 30);
    free(u), free(g), free(c.x[0]), free(c.w), free(c.out);
  }
}

/* resid_mix, add_scaled and affine share one context: x[0] = x, x[1] = x0 or y, x[2] =
 * the parameter vector(s). */
static double l_mix(void *c) {
  op_ctx *o = c;
  int d = o->d;
  for (int64_t r = 0; r < o->rows; r++)
    for (int j = 0; j < d; j++) {
      int64_t i = r * d + j;
      o->out[i] = o->x[2][j] * o->x[0][i] + o->x[2][d + j] * o->x[1][i];
    }
  return dot(o->out, o->w, o->rows * d);
}
static double l_add_scaled(void *c) {
  op_ctx *o = c;
  for (int64_t i = 0; i < o->rows * o->d; i++) o->out[i] = o->x[0][i] + o->x[2][i % o->d] * o->x[1][i];
  return dot(o->out, o->w, o->rows * o->d);
}
static double l_affine(void *c) {
  op_ctx *o = c;
  for (int64_t i = 0; i < o->rows * o->d; i++) o->out[i] = o->x[0][i] * o->x[2][i % o->d] + o->x[2][o->d + i % o->d];
  return dot(o->out, o->w, o->rows * o->d);
}

static void test_channel_ops_bwd(void **st) {
  (void)st;
  const qg_ops *ops = qg_ops_cpu();
  int64_t rows = 50;
  int d = 40; /* more than one 32-column reduction chunk */
  int64_t n = rows * d;
  op_ctx c = {.rows = rows, .d = d};
  float *x = falloc(n), *x0 = falloc(n), *par = falloc(2 * d), *g = falloc(n), *dx = falloc(n), *dx0 = falloc(n),
        *dpar = falloc(2 * d);
  for (int i = 0; i < 3; i++) c.x[i] = dalloc(i < 2 ? n : 2 * d);
  c.w = dalloc(n), c.out = dalloc(n);
  fill(x, c.x[0], n, 1, 0);
  fill(x0, c.x[1], n, 1, 0);
  fill(par, c.x[2], 2 * d, 0.5f, 0.8f);
  fill(g, c.w, n, 1, 0);

  assert_int_equal(ops->resid_mix_bwd(ops, dx, dx0, dpar, g, x, x0, par, rows, d), QG_OK);
  fd_check("resid_mix dx", l_mix, &c, c.x[0], n, dx, 1 << 30);
  fd_check("resid_mix dx0", l_mix, &c, c.x[1], n, dx0, 1 << 30);
  fd_check("resid_mix dmix", l_mix, &c, c.x[2], 2 * d, dpar, 1 << 30);

  memset(dpar, 0, sizeof(float) * 2 * d);
  assert_int_equal(ops->add_scaled_bwd(ops, dx0, dpar, g, x0, par, rows, d, 0), QG_OK);
  fd_check("add_scaled dy", l_add_scaled, &c, c.x[1], n, dx0, 1 << 30);
  fd_check("add_scaled ds", l_add_scaled, &c, c.x[2], d, dpar, 1 << 30);

  memset(dpar, 0, sizeof(float) * 2 * d);
  assert_int_equal(ops->affine_bwd(ops, dx, dpar, dpar + d, g, x, par, rows, d), QG_OK);
  fd_check("affine dx", l_affine, &c, c.x[0], n, dx, 1 << 30);
  fd_check("affine dscale+dshift", l_affine, &c, c.x[2], 2 * d, dpar, 1 << 30);
  free(x), free(x0), free(par), free(g), free(dx), free(dx0), free(dpar);
  for (int i = 0; i < 3; i++) free(c.x[i]);
  free(c.w), free(c.out);
}

static double l_embed(void *c) {
  op_ctx *o = c;
  double s = 0;
  for (int64_t i = 0; i < o->rows; i++) s += dot(o->x[0] + (int64_t)o->tok[i] * o->d, o->w + i * o->d, o->d);
  return s;
}

static void test_embed_bwd(void **st) {
  (void)st;
  const qg_ops *ops = qg_ops_cpu();
  op_ctx c = {.rows = 60, .d = 40, .V = 11};
  int32_t tok[60];
  for (int i = 0; i < 60; i++) tok[i] = (i * 7) % 10; /* token 10 never occurs: zero row */
  c.tok = tok;
  float *g = falloc(c.rows * c.d), *de = falloc((int64_t)c.V * c.d);
  c.x[0] = dalloc((int64_t)c.V * c.d), c.w = dalloc(c.rows * c.d);
  fill(g, c.w, c.rows * c.d, 1, 0);
  assert_int_equal(ops->embed_bwd(ops, de, g, tok, c.rows, c.d), QG_OK);
  fd_check("embed demb", l_embed, &c, c.x[0], (int64_t)(c.V - 1) * c.d, de, 1 << 30);
  for (int j = 0; j < c.d; j++) assert_true(de[10 * c.d + j] == 0.0f);
  free(g), free(de), free(c.x[0]), free(c.w);
}

static double l_xent(void *c) {
  op_ctx *o = c;
  return 0.5 * xent64(o->x[0], o->tok, o->rows, o->V, 30.0);
}

static void test_xent_bwd(void **st) {
  (void)st;
  const qg_ops *ops = qg_ops_cpu();
  op_ctx c = {.rows = 9, .V = 50};
  int32_t tgt[9];
  for (int i = 0; i < 9; i++) tgt[i] = (i * 13) % 50;
  c.tok = tgt;
  int64_t n = c.rows * c.V;
  float *l = falloc(n), *dl = falloc(n);
  c.x[0] = dalloc(n);
  fill(l, c.x[0], n, 40.0f, 0); /* large logits: the softcap's tanh matters */
  double sum;
  assert_int_equal(ops->xent_fwd_bwd(ops, dl, &sum, l, tgt, c.rows, c.V, 30.0f, 0.5f / (float)c.rows), QG_OK);
  double ref = xent64(c.x[0], tgt, c.rows, c.V, 30.0);
  print_message("  xent loss %.10f, fp64 %.10f\n", sum / c.rows, ref);
  assert_true(fabs(sum / c.rows - ref) < 1e-6 * fabs(ref));
  fd_check("xent dlogits", l_xent, &c, c.x[0], n, dl, 1 << 30);
  /* in place gives the same bits */
  float *l2 = falloc(n);
  memcpy(l2, l, sizeof(float) * (size_t)n);
  assert_int_equal(ops->xent_fwd_bwd(ops, l2, &sum, l2, tgt, c.rows, c.V, 30.0f, 0.5f / (float)c.rows), QG_OK);
  assert_memory_equal(l2, dl, sizeof(float) * (size_t)n);
  free(l), free(dl), free(l2), free(c.x[0]);
}

/* ---- whole model ---------------------------------------------------------------------- */

typedef struct {
  const qg_gpt_config *c;
  const qg_gpt_layout *l;
  double *w; /* flat parameters, fp64 */
  const int32_t *in, *tgt;
  int B, T;
} model_ctx;

static double *par(model_ctx *m, const char *name) {
  for (int i = 0; i < m->l->n; i++)
    if (!strcmp(m->l->p[i].name, name)) return m->w + m->l->p[i].offset;
  fail_msg("no parameter %s", name);
  return NULL;
}

/* The contest GPT (and its recurrent variant) in plain fp64 loops, from train_gpt.py. */
static double model64(void *ctx) {
  model_ctx *m = ctx;
  const qg_gpt_config *c = m->c;
  int d = c->d, H = c->n_head, KVH = c->n_kv_head, hd = c->head_dim, hid = c->mlp_hidden, kvd = KVH * hd;
  int64_t R = (int64_t)m->B * m->T;
  double eps = FLT_EPSILON;
  double *x = dalloc(R * d), *x0 = dalloc(R * d), *h = dalloc(R * d), *q = dalloc(R * d), *k = dalloc(R * kvd),
         *v = dalloc(R * kvd), *y = dalloc(R * d), *o = dalloc(R * d), *u = dalloc(R * hid),
         *skips = dalloc((int64_t)(c->n_skip + 1) * R * d), *logits = dalloc(R * c->vocab);
  double *emb = par(m, "tok_emb.weight");
  for (int64_t r = 0; r < R; r++) memcpy(x + r * d, emb + (int64_t)m->in[r] * d, sizeof(double) * (size_t)d);
  rms64(x, x, R, d, eps);
  memcpy(x0, x, sizeof(double) * (size_t)(R * d));
  char nm[96];
  for (int l = 0; l < c->n_layers; l++) {
    if (l >= c->n_enc && l - c->n_enc < c->n_skip) {
      int i = l - c->n_enc;
      double *sw = par(m, "skip_weights") + (int64_t)i * d, *sk = skips + (int64_t)(c->n_skip - 1 - i) * R * d;
      for (int64_t e = 0; e < R * d; e++) x[e] += sw[e % d] * sk[e];
    }
    int b = l % c->n_blocks;
#define BP(s) (snprintf(nm, sizeof nm, "blocks.%d.%s", b, s), par(m, nm))
    double *mix = BP("resid_mix"), *as = BP("attn_scale"), *ms = BP("mlp_scale"), *gain = BP("attn.q_gain");
    for (int64_t e = 0; e < R * d; e++) x[e] = mix[e % d] * x[e] + mix[d + e % d] * x0[e];
    rms64(h, x, R, d, eps);
    matmul64(q, h, BP("attn.c_q.weight"), R, d, d);
    matmul64(k, h, BP("attn.c_k.weight"), R, d, kvd);
    matmul64(v, h, BP("attn.c_v.weight"), R, d, kvd);
    rms64(q, q, R * H, hd, eps);
    rms64(k, k, R * KVH, hd, eps);
    rope64(q, m->B, m->T, H, hd, c->rope_base);
    rope64(k, m->B, m->T, KVH, hd, c->rope_base);
    for (int64_t e = 0; e < R * d; e++) q[e] *= gain[(e % d) / hd];
    attn64(y, q, k, v, m->B, m->T, H, KVH, hd);
    matmul64(o, y, BP("attn.proj.weight"), R, d, d);
    for (int64_t e = 0; e < R * d; e++) x[e] += as[e % d] * o[e];
    rms64(h, x, R, d, eps);
    matmul64(u, h, BP("mlp.fc.weight"), R, d, hid);
    for (int64_t e = 0; e < R * hid; e++) u[e] = u[e] > 0 ? pow(u[e], c->mlp_power) : 0;
    matmul64(o, u, BP("mlp.proj.weight"), R, hid, d);
    for (int64_t e = 0; e < R * d; e++) x[e] += ms[e % d] * o[e];
#undef BP
    if (c->recurrent) {
      double *sc = par(m, "repeat_scales") + (int64_t)l * d, *sh = par(m, "repeat_shifts") + (int64_t)l * d;
      for (int64_t e = 0; e < R * d; e++) x[e] = x[e] * sc[e % d] + sh[e % d];
    }
    if (l < c->n_enc && l < c->n_skip) memcpy(skips + (int64_t)l * R * d, x, sizeof(double) * (size_t)(R * d));
  }
  rms64(h, x, R, d, eps);
  matmul64(logits, h, par(m, c->tied ? "tok_emb.weight" : "lm_head.weight"), R, d, c->vocab);
  double loss = xent64(logits, m->tgt, R, c->vocab, c->softcap);
  free(x), free(x0), free(h), free(q), free(k), free(v), free(y), free(o), free(u), free(skips), free(logits);
  return loss;
}

static void check_model(qg_gpt_config *c, int B, int T) {
  const qg_ops *ops = qg_ops_cpu();
  qg_gpt_layout l;
  assert_int_equal(qg_gpt_layout_make(c, &l), QG_OK);
  float *w = falloc(l.total), *gw = falloc(l.total);
  double *w64 = dalloc(l.total);
  for (int i = 0; i < l.n; i++) { /* non-degenerate values everywhere (no zero init here) */
    const qg_gpt_param *p = &l.p[i];
    float scale = p->role == QG_PARAM_CONTROL ? 0.3f : 0.4f, off = 0;
    if (strstr(p->name, "q_gain")) off = 1.5f;
    else if (strstr(p->name, "scale") || strstr(p->name, "skip")) off = 1.0f;
    fill(w + p->offset, w64 + p->offset, p->numel, scale, off);
  }
  int64_t R = (int64_t)B * T;
  int32_t *in = malloc(sizeof *in * (size_t)R), *tgt = malloc(sizeof *tgt * (size_t)R),
          *seq = malloc(sizeof *seq * (size_t)(B * (T + 1)));
  for (int b = 0; b < B; b++)
    for (int t = 0; t <= T; t++) seq[b * (T + 1) + t] = (int32_t)(qg_test_rand(&rng) % (uint64_t)c->vocab);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++) in[b * T + t] = seq[b * (T + 1) + t], tgt[b * T + t] = seq[b * (T + 1) + t + 1];
  qg_gpt m, g;
  assert_int_equal(qg_gpt_bind(&m, c, &l, w, ops), QG_OK);
  assert_int_equal(qg_gpt_bind(&g, c, &l, gw, ops), QG_OK);
  qg_gpt_train_store s = {0};
  double loss;
  assert_int_equal(qg_gpt_forward_train(&m, &s, in, tgt, B, T, 1.0f, &loss), QG_OK);
  assert_int_equal(qg_gpt_backward(&m, &s, &g), QG_OK);
  model_ctx mc = {c, &l, w64, in, tgt, B, T};
  double ref = model64(&mc);
  print_message("  training loss %.9f, fp64 model %.9f\n", loss, ref);
  assert_true(fabs(loss - ref) < 1e-5 * ref);

  /* the inference forward (gpt.c) on the same weights gives the same loss */
  qg_state st;
  qg_state_init(&st);
  for (int i = 0; i < l.n; i++) {
    qg_tensor *t;
    assert_int_equal(qg_state_add(&st, l.p[i].name, QG_F32, l.p[i].ndim, l.p[i].shape, &t), QG_OK);
    memcpy(t->data, w + l.p[i].offset, sizeof(float) * (size_t)l.p[i].numel);
  }
  qg_gpt inf;
  qg_gpt_options opt = {.mlp_power = c->mlp_power};
  assert_int_equal(qg_gpt_init(&inf, &st, &opt, ops), QG_OK);
  assert_int_equal(inf.cfg.n_layers, c->n_layers);
  qg_token_stat *ts = malloc(sizeof *ts * (size_t)R);
  assert_int_equal(qg_gpt_score(&inf, seq, B, T, ts), QG_OK);
  double sum = 0;
  for (int64_t i = 0; i < R; i++) sum += ts[i].nll_a;
  print_message("  inference forward loss %.9f\n", sum / R);
  assert_true(fabs(sum / R - loss) < 1e-6 * loss);
  free(ts);
  qg_gpt_free(&inf);
  qg_state_free(&st);

  double worst = 0;
  for (int i = 0; i < l.n; i++) {
    double e = fd_check(l.p[i].name, model64, &mc, w64 + l.p[i].offset, l.p[i].numel, gw + l.p[i].offset, 1 << 30);
    if (e > worst) worst = e;
  }
  print_message("  worst parameter gradient rel err %.2e over %d tensors\n", worst, l.n);
  /* gradients accumulate: a second backward doubles them */
  float *g1 = falloc(l.total);
  memcpy(g1, gw, sizeof(float) * (size_t)l.total);
  assert_int_equal(qg_gpt_forward_train(&m, &s, in, tgt, B, T, 1.0f, &loss), QG_OK);
  assert_int_equal(qg_gpt_backward(&m, &s, &g), QG_OK);
  for (int64_t i = 0; i < l.total; i++) assert_float_equal(gw[i], 2 * g1[i], 1e-6 + 1e-5 * fabsf(g1[i]));
  free(g1);
  qg_gpt_train_store_free(&s);
  qg_gpt_unbind(&m);
  qg_gpt_unbind(&g);
  qg_gpt_layout_free(&l);
  free(w), free(gw), free(w64), free(in), free(tgt), free(seq);
}

static void test_model_grad_tied(void **st) {
  (void)st;
  qg_gpt_config c;
  assert_int_equal(qg_gpt_config_make(24, 3, 16, 4, 2, 32, 1, 2.0f, &c), QG_OK);
  check_model(&c, 2, 7);
}

static void test_model_grad_recurrent(void **st) {
  (void)st;
  qg_gpt_config c;
  assert_int_equal(qg_gpt_config_make(20, 2, 16, 2, 1, 24, 0, 3.0f, &c), QG_OK);
  c.recurrent = 1; /* 2 unique blocks run twice: 4 effective layers */
  c.n_layers = 4;
  c.n_enc = 2, c.n_dec = 2, c.n_skip = 2;
  check_model(&c, 2, 5);
}

static void test_config_errors(void **st) {
  (void)st;
  qg_gpt_config c;
  assert_int_equal(qg_gpt_config_make(1024, 9, 512, 8, 4, 1024, 1, 0, &c), QG_OK);
  assert_int_equal(c.head_dim, 64);
  assert_int_equal(c.n_skip, 4);
  assert_int_equal(qg_gpt_config_make(1024, 9, 500, 8, 4, 1024, 1, 0, &c), QG_ERR_INPUT); /* 500 / 8 */
  assert_int_equal(qg_gpt_config_make(1024, 9, 512, 8, 3, 1024, 1, 0, &c), QG_ERR_INPUT); /* 8 % 3 */
  assert_int_equal(qg_gpt_config_make(1024, 9, 24, 8, 4, 1024, 1, 0, &c), QG_ERR_INPUT);  /* odd head dim */
  qg_gpt_layout l;
  assert_int_equal(qg_gpt_config_make(1024, 9, 512, 8, 4, 1024, 1, 0, &c), QG_OK);
  assert_int_equal(qg_gpt_layout_make(&c, &l), QG_OK);
  assert_int_equal(l.total, qg_gpt_param_count(&c)); /* 17,059,912 for the contest baseline */
  assert_string_equal(l.p[0].name, "skip_weights");
  assert_string_equal(l.p[1].name, "tok_emb.weight");
  qg_gpt_layout_free(&l);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_rmsnorm_bwd),      cmocka_unit_test(test_matmul_bwd),
      cmocka_unit_test(test_rope_bwd),         cmocka_unit_test(test_head_scale_bwd),
      cmocka_unit_test(test_attention_bwd),    cmocka_unit_test(test_relu_pow_bwd),
      cmocka_unit_test(test_channel_ops_bwd),  cmocka_unit_test(test_embed_bwd),
      cmocka_unit_test(test_xent_bwd),         cmocka_unit_test(test_model_grad_tied),
      cmocka_unit_test(test_model_grad_recurrent), cmocka_unit_test(test_config_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
