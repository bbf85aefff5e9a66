/* quant/gptq.c + quant/hessian.c: Hessians against a naive sum; GPTQ against a slow direct
 * implementation written here (column by column, the remaining columns' inverse Hessian
 * downdated explicitly as in OBS, no Cholesky, no lazy blocks) to 1e-5, across per-row,
 * dynamic groups not aligned with the blocks, act_order with static groups; GPTQ's output
 * error <= round-to-nearest's on correlated inputs (every grid, turbo's config-dependent
 * width included); dead columns; damping retries. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/hessian.h"
#include "quant/quant_internal.h"
#include "tests/testlib.h"

/* Correlated activations: X = Z A, Z uniform, A a random mixing matrix (n x k). */
static float *correlated_x(int64_t n, int64_t k, uint64_t seed) {
  float *z = malloc(sizeof(float) * n * k), *a = malloc(sizeof(float) * k * k), *x = calloc(n * k, sizeof(float));
  for (int64_t i = 0; i < n * k; i++) z[i] = qg_test_randf(&seed);
  for (int64_t i = 0; i < k * k; i++) a[i] = qg_test_randf(&seed) + (i % (k + 1) == 0 ? 1.0f : 0.0f);
  for (int64_t r = 0; r < n; r++)
    for (int64_t t = 0; t < k; t++)
      for (int64_t j = 0; j < k; j++) x[r * k + j] += z[r * k + t] * a[t * k + j];
  free(z), free(a);
  return x;
}

static void hessian_of(const float *x, int64_t n, int64_t k, qg_hessian *h) {
  assert_int_equal(qg_hessian_init(h, k), QG_OK);
  assert_int_equal(qg_hessian_accumulate(h, x, n / 2, k), QG_OK);
  assert_int_equal(qg_hessian_accumulate(h, x + (n / 2) * k, n - n / 2, k), QG_OK);
  assert_int_equal(qg_hessian_finalize(h), QG_OK);
}

static void test_hessian(void **st) {
  (void)st;
  const int64_t n = 300, k = 24;
  float *x = correlated_x(n, k, 1);
  qg_hessian h;
  hessian_of(x, n, k, &h);
  for (int64_t i = 0; i < k; i++)
    for (int64_t j = 0; j < k; j++) {
      double s = 0;
      for (int64_t r = 0; r < n; r++) s += (double)x[r * k + i] * x[r * k + j];
      assert_true(fabs(h.H[i * k + j] - 2.0 * s / n) <= 1e-12 * fabs(2.0 * s / n) + 1e-12);
    }
  assert_int_equal(qg_hessian_accumulate(&h, x, 1, k), QG_ERR_INTERNAL); /* after finalize */
  qg_hessian_free(&h);
  qg_hessian_map m;
  qg_hessian_map_init(&m);
  qg_hessian *p;
  assert_int_equal(qg_hessian_map_get(&m, "a.weight", k, &p), QG_OK);
  assert_int_equal(qg_hessian_accumulate(p, x, n, k), QG_OK);
  assert_int_equal(qg_hessian_map_get(&m, "a.weight", k + 1, &p), QG_ERR_INPUT);
  assert_null(qg_hessian_map_find(&m, "b.weight"));
  assert_int_equal(qg_hessian_map_finalize(&m), QG_OK);
  assert_int_equal(qg_hessian_map_find(&m, "a.weight")->n, n);
  qg_hessian_map_free(&m);
  free(x);
}

/* In-place inverse of an SPD matrix by Gauss-Jordan (the test's own, no LAPACK). */
static void invert(double *a, int64_t n) {
  double *b = calloc(n * n, sizeof *b);
  for (int64_t i = 0; i < n; i++) b[i * n + i] = 1;
  for (int64_t c = 0; c < n; c++) {
    double p = a[c * n + c];
    for (int64_t j = 0; j < n; j++) a[c * n + j] /= p, b[c * n + j] /= p;
    for (int64_t r = 0; r < n; r++) {
      if (r == c) continue;
      double f = a[r * n + c];
      for (int64_t j = 0; j < n; j++) a[r * n + j] -= f * a[c * n + j], b[r * n + j] -= f * b[c * n + j];
    }
  }
  memcpy(a, b, sizeof *b * n * n);
  free(b);
}

/* The slow direct GPTQ (OBS form): after each column, update every later column at once
 * and downdate the inverse Hessian of the remaining columns. Rounds through the same
 * rowwise grid (public interface). */
static void slow_gptq(const float *w, int64_t m, int64_t n, const double *H0, double percdamp, int act_order,
                      const char *grid_opts, float *out) {
  qg_qconfig c;
  assert_int_equal(qg_qconfig_parse("rowwise", grid_opts, &c), QG_OK);
  const qg_grid *g = c.q->grid;
  int64_t gs = g->group(c.cfg), gsz = gs ? gs : n;
  int dynamic = gs && !act_order;
  double *W = malloc(sizeof *W * m * n), *H = malloc(sizeof *H * n * n), *imp = malloc(sizeof *imp * n),
         *q = malloc(sizeof *q * m), *t = malloc(sizeof *t * n * n);
  int64_t *perm = malloc(sizeof *perm * n);
  for (int64_t i = 0; i < m * n; i++) W[i] = w[i];
  memcpy(H, H0, sizeof *H * n * n);
  for (int64_t j = 0; j < n; j++)
    if (H[j * n + j] == 0) {
      H[j * n + j] = 1;
      for (int64_t r = 0; r < m; r++) W[r * n + j] = 0;
    }
  for (int64_t j = 0; j < n; j++) imp[j] = H[j * n + j], perm[j] = j;
  qg_qinput in = {.name = "t", .w = w, .rows = m, .cols = n};
  void *st;
  assert_int_equal(g->begin(c.cfg, &in, &st), QG_OK);
  if (!dynamic)
    for (int64_t gi = 0; gi * gsz < n; gi++) assert_int_equal(g->set_scale(st, gi, W + gi * gsz, n, gsz, imp + gi * gsz), QG_OK);
  if (act_order) { /* stable insertion sort, descending diag */
    for (int64_t i = 1; i < n; i++) {
      int64_t v = perm[i], j = i;
      while (j > 0 && imp[perm[j - 1]] < imp[v]) perm[j] = perm[j - 1], j--;
      perm[j] = v;
    }
    for (int64_t r = 0; r < m; r++) {
      for (int64_t j = 0; j < n; j++) t[j] = W[r * n + perm[j]];
      memcpy(W + r * n, t, sizeof *t * n);
    }
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++) t[i * n + j] = H[perm[i] * n + perm[j]];
    memcpy(H, t, sizeof *H * n * n);
  }
  double mean = 0;
  for (int64_t j = 0; j < n; j++) mean += H[j * n + j];
  for (int64_t j = 0; j < n; j++) H[j * n + j] += percdamp * mean / n;
  invert(H, n); /* H now holds the inverse of the remaining columns' Hessian */
  for (int64_t i = 0; i < n; i++) {
    if (dynamic && i % gsz == 0) assert_int_equal(g->set_scale(st, i / gsz, W + i, n, gsz, imp + i), QG_OK);
    g->round(st, perm[i], W + i, n, q, 1);
    double d = H[i * n + i];
    for (int64_t r = 0; r < m; r++) {
      double e = (W[r * n + i] - q[r]) / d;
      for (int64_t j = i + 1; j < n; j++) W[r * n + j] -= e * H[i * n + j];
      W[r * n + i] = q[r];
    }
    for (int64_t a = i + 1; a < n; a++) /* OBS downdate: remove column i from the inverse */
      for (int64_t b = i + 1; b < n; b++) H[a * n + b] -= H[a * n + i] * H[i * n + b] / d;
  }
  qg_qtensor qt;
  qg_qtensor_init(&qt);
  qt.rows = m, qt.cols = n;
  assert_int_equal(g->finish(st, &qt), QG_OK);
  g->free(st);
  assert_int_equal(qg_dequantize(&c, &qt, out), QG_OK);
  qg_qtensor_free(&qt);
  qg_qconfig_free(&c);
  free(W), free(H), free(imp), free(q), free(t), free(perm);
}

static qg_status run_gptq(const char *opts, const float *w, int64_t m, int64_t n, const double *H, float *out,
                          char **note) {
  qg_qconfig c;
  qg_status s = qg_qconfig_parse("gptq", opts, &c);
  if (s) return s;
  qg_qinput in = {.name = "blocks.0.attn.c_q.weight", .w = w, .rows = m, .cols = n, .hessian = H};
  qg_qtensor q;
  s = qg_quantize(&c, &in, &q);
  if (!s) s = qg_dequantize(&c, &q, out);
  if (!s && note) *note = q.note ? qg_strdup(q.note) : NULL;
  if (!s) qg_qtensor_free(&q);
  qg_qconfig_free(&c);
  return s;
}

/* ||(W - Q) X^T||_F^2 */
static double out_err(const float *w, const float *q, const float *x, int64_t m, int64_t n, int64_t rows) {
  double e = 0;
  for (int64_t r = 0; r < m; r++)
    for (int64_t t = 0; t < rows; t++) {
      double s = 0;
      for (int64_t j = 0; j < n; j++) s += ((double)w[r * n + j] - q[r * n + j]) * x[t * n + j];
      e += s * s;
    }
  return e;
}

static float *rand_w(int64_t n, uint64_t seed) {
  float *w = malloc(sizeof *w * n);
  for (int64_t i = 0; i < n; i++) w[i] = 0.1f * qg_test_randf(&seed);
  return w;
}

static void test_matches_slow(void **st) {
  (void)st;
  const int64_t m = 24, n = 96, rows = 400;
  float *x = correlated_x(rows, n, 7), *w = rand_w(m * n, 8), *a = malloc(sizeof(float) * m * n),
        *b = malloc(sizeof(float) * m * n);
  qg_hessian h;
  hessian_of(x, rows, n, &h);
  struct {
    const char *gptq, *grid;
    int act_order;
  } cases[] = {
      {"bits=3 clip=absmax blocksize=32", "bits=3 clip=absmax", 0},
      {"bits=4 clip=absmax blocksize=128", "bits=4 clip=absmax", 0}, /* one block */
      {"bits=3 clip=absmax group=32 blocksize=20", "bits=3 clip=absmax group=32", 0}, /* groups straddle blocks */
      {"bits=4 clip=pct pct=99 group=48 blocksize=16", "bits=4 clip=pct pct=99 group=48", 0},
      {"bits=3 clip=absmax act_order=1 blocksize=32", "bits=3 clip=absmax", 1},
      {"bits=3 clip=absmax act_order=1 group=32 blocksize=24", "bits=3 clip=absmax group=32", 1},
      {"bits=2 clip=search range=full blocksize=40 percdamp=0.1", "bits=2 clip=search range=full", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    double pd = strstr(cases[i].gptq, "percdamp=0.1") ? 0.1 : 0.01;
    assert_int_equal(run_gptq(cases[i].gptq, w, m, n, h.H, a, NULL), QG_OK);
    slow_gptq(w, m, n, h.H, pd, cases[i].act_order, cases[i].grid, b);
    for (int64_t k = 0; k < m * n; k++)
      if (fabsf(a[k] - b[k]) > 1e-5f) fail_msg("case '%s': [%lld] lazy %g vs direct %g", cases[i].gptq, (long long)k, a[k], b[k]);
  }
  qg_hessian_free(&h);
  free(x), free(w), free(a), free(b);
}

static void test_beats_rtn(void **st) {
  (void)st;
  const int64_t m = 32, n = 64, rows = 512;
  float *x = correlated_x(rows, n, 11), *w = rand_w(m * n, 12), *g = malloc(sizeof(float) * m * n),
        *r = malloc(sizeof(float) * m * n);
  qg_hessian h;
  hessian_of(x, rows, n, &h);
  const char *grids[] = {"bits=3 clip=absmax", "bits=4 clip=pct pct=99.9 group=16", "bits=2 clip=absmax range=full"};
  for (int i = 0; i < 3; i++)
    for (int ao = 0; ao < 2; ao++) {
      char opts[128];
      snprintf(opts, sizeof opts, "%s act_order=%d", grids[i], ao);
      assert_int_equal(run_gptq(opts, w, m, n, h.H, g, NULL), QG_OK);
      qg_qconfig c;
      assert_int_equal(qg_qconfig_parse("rowwise", grids[i], &c), QG_OK);
      qg_qinput in = {.name = "t", .w = w, .rows = m, .cols = n};
      qg_qtensor q;
      assert_int_equal(qg_quantize(&c, &in, &q), QG_OK);
      assert_int_equal(qg_dequantize(&c, &q, r), QG_OK);
      double eg = out_err(w, g, x, m, n, rows), er = out_err(w, r, x, m, n, rows);
      if (!(eg <= er)) fail_msg("'%s': GPTQ %g > RTN %g", opts, eg, er);
      if (!(eg < 0.8 * er)) fail_msg("'%s': GPTQ %g is not clearly below RTN %g", opts, eg, er);
      qg_qtensor_free(&q);
      qg_qconfig_free(&c);
    }
  qg_hessian_free(&h);
  free(x), free(w), free(g), free(r);
}

/* Every registered grid (scalar or vector, e.g. E8 over 8 columns) composes with GPTQ:
 * its output error is at most round-to-nearest's with the same grid. */
static void test_all_grids_beat_rtn(void **st) {
  (void)st;
  const int64_t m = 32, n = 64, rows = 512;
  float *x = correlated_x(rows, n, 31), *w = rand_w(m * n, 32), *g = malloc(sizeof(float) * m * n),
        *r = malloc(sizeof(float) * m * n);
  qg_hessian h;
  hessian_of(x, rows, n, &h);
  int tried = 0;
  for (int i = 0; qg_quantizers[i]; i++) {
    const qg_quantizer *qz = qg_quantizers[i];
    if (!qz->grid) continue;
    /* turbo's width is its group (default 128 > n): a group that fits */
    const char *extra = strcmp(qz->name, "turbo") ? "" : "group=32";
    char opts[64];
    snprintf(opts, sizeof opts, "grid=%s %s", qz->name, extra);
    qg_status s = run_gptq(opts, w, m, n, h.H, g, NULL);
    if (s) fail_msg("gptq %s: %s", opts, qg_last_error());
    qg_qconfig c;
    assert_int_equal(qg_qconfig_parse(qz->name, extra, &c), QG_OK);
    qg_qinput in = {.name = "t", .w = w, .rows = m, .cols = n, .seed = 1};
    qg_qtensor q;
    assert_int_equal(qg_quantize(&c, &in, &q), QG_OK);
    assert_int_equal(qg_dequantize(&c, &q, r), QG_OK);
    double eg = out_err(w, g, x, m, n, rows), er = out_err(w, r, x, m, n, rows);
    print_message("grid %-10s width %d: GPTQ/RTN output error %.3f\n", qz->name, qg_grid_width(qz->grid, c.cfg), eg / er);
    if (!(eg <= er)) fail_msg("grid %s: GPTQ %g > RTN %g", qz->name, eg, er);
    qg_qtensor_free(&q);
    qg_qconfig_free(&c);
    tried++;
  }
  assert_true(tried >= 1);
  qg_hessian_free(&h);
  free(x), free(w), free(g), free(r);
}

/* turbo as GPTQ's inner grid (width = its group, qg_grid.width_of): each group is rotated
 * and Lloyd-Max rounded as one block, its error fed back in the original basis. On
 * correlated X, ||(W - Q) X^T|| is clearly below turbo round-to-nearest's at the same bits
 * and group; with one group spanning the whole row there is nothing to feed the error
 * into and GPTQ is exactly round-to-nearest. */
static void test_turbo_grid_beats_rtn(void **st) {
  (void)st;
  const int64_t m = 32, n = 64, rows = 512;
  float *x = correlated_x(rows, n, 41), *w = rand_w(m * n, 42), *g = malloc(sizeof(float) * m * n),
        *r = malloc(sizeof(float) * m * n);
  qg_hessian h;
  hessian_of(x, rows, n, &h);
  const char *grids[] = {"bits=3 group=16", "bits=3 group=32 norm=l2", "bits=2 group=8", "bits=3 group=64"};
  for (int i = 0; i < 4; i++) {
    char opts[128];
    snprintf(opts, sizeof opts, "grid=turbo %s blocksize=64", grids[i]);
    qg_status s = run_gptq(opts, w, m, n, h.H, g, NULL);
    if (s) fail_msg("gptq %s: %s", opts, qg_last_error());
    qg_qconfig c;
    assert_int_equal(qg_qconfig_parse("turbo", grids[i], &c), QG_OK);
    qg_qinput in = {.name = "blocks.0.attn.c_q.weight", .w = w, .rows = m, .cols = n};
    qg_qtensor q;
    assert_int_equal(qg_quantize(&c, &in, &q), QG_OK);
    assert_int_equal(qg_dequantize(&c, &q, r), QG_OK);
    double eg = out_err(w, g, x, m, n, rows), er = out_err(w, r, x, m, n, rows);
    print_message("gptq %s: GPTQ/RTN output error %.3f\n", opts, eg / er);
    if (i == 3) assert_memory_equal(g, r, sizeof(float) * m * n); /* group = n: one block */
    else if (!(eg < 0.9 * er)) fail_msg("'%s': GPTQ %g is not clearly below turbo RTN %g", opts, eg, er);
    qg_qtensor_free(&q);
    qg_qconfig_free(&c);
  }
  /* the width comes from the config: act_order needs width 1; blocksize a multiple */
  qg_qconfig c;
  assert_int_equal(qg_qconfig_parse("gptq", "grid=turbo group=32 act_order=1", &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "32 columns at a time"));
  assert_int_equal(qg_qconfig_parse("gptq", "grid=turbo group=256", &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "grid width 256"));
  assert_int_equal(qg_qconfig_parse("gptq", "grid=turbo group=256 blocksize=256", &c), QG_OK);
  int64_t shape[2] = {4, 384};
  assert_int_equal(qg_qconfig_can_take(&c, "x.weight", 2, shape), QG_ERR_INPUT);
  qg_qconfig_free(&c);
  qg_hessian_free(&h);
  free(x), free(w), free(g), free(r);
}

static void test_dead_and_damping(void **st) {
  (void)st;
  const int64_t m = 8, n = 32, rows = 100;
  float *x = correlated_x(rows, n, 21), *w = rand_w(m * n, 22), *a = malloc(sizeof(float) * m * n),
        *b = malloc(sizeof(float) * m * n);
  for (int64_t r = 0; r < rows; r++) x[r * n + 5] = 0; /* input 5 never fires */
  qg_hessian h;
  hessian_of(x, rows, n, &h);
  char *note = NULL;
  assert_int_equal(run_gptq("bits=4 clip=absmax", w, m, n, h.H, a, &note), QG_OK);
  assert_non_null(note);
  assert_non_null(strstr(note, "1 dead columns"));
  free(note);
  for (int64_t r = 0; r < m; r++) assert_true(a[r * n + 5] == 0.0f);
  slow_gptq(w, m, n, h.H, 0.01, 0, "bits=4 clip=absmax", b);
  for (int64_t k = 0; k < m * n; k++) assert_true(fabsf(a[k] - b[k]) <= 1e-5f);
  qg_hessian_free(&h);
  /* rank-deficient H (fewer samples than inputs) with no damping: Cholesky fails, the
   * retry raises percdamp and says so */
  hessian_of(x, 6, n, &h);
  for (int64_t j = 0; j < n; j++) /* keep every diagonal positive so nothing is "dead" */
    if (h.H[j * n + j] == 0) h.H[j * n + j] = 1e-3;
  note = NULL;
  assert_int_equal(run_gptq("bits=4 percdamp=0", w, m, n, h.H, a, &note), QG_OK);
  assert_non_null(note);
  assert_non_null(strstr(note, "percdamp raised"));
  free(note);
  qg_hessian_free(&h);
  free(x), free(w), free(a), free(b);
}

static void test_errors(void **st) {
  (void)st;
  float w[64] = {0}, out[64];
  assert_int_equal(run_gptq("bits=4", w, 4, 16, NULL, out, NULL), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "calibration"));
  assert_non_null(strstr(qg_last_error(), "blocks.0.attn.c_q.weight"));
  qg_qconfig c;
  assert_int_equal(qg_qconfig_parse("gptq", "act_order=1 group=32 static_groups=0", &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "static_groups"));
  assert_int_equal(qg_qconfig_parse("gptq", "grid=fp16", &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "not a grid quantizer"));
  assert_int_equal(qg_qconfig_parse("gptq", "act_order=1 group=32", &c), QG_OK);
  assert_non_null(strstr(c.canon, "static_groups=1"));
  int64_t shape[2] = {4, 40};
  assert_int_equal(qg_qconfig_can_take(&c, "x.weight", 2, shape), QG_ERR_INPUT); /* 40 % 32 */
  qg_qconfig_free(&c);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hessian),          cmocka_unit_test(test_matches_slow),
      cmocka_unit_test(test_beats_rtn),        cmocka_unit_test(test_all_grids_beat_rtn),
      cmocka_unit_test(test_turbo_grid_beats_rtn), cmocka_unit_test(test_dead_and_damping),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
