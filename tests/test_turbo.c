/* quant/turbo.c: the turbo (rotation + Lloyd-Max) and lloydmax quantizers through the
 * plug-in interface: a reference reconstruction written here with a dense Hadamard matrix
 * and linear-search rounding, MSE on Gaussian and heavy-tailed weights against the
 * Lloyd-Max figures, equalisation, exact packed bytes, options, corrupt sections, and
 * GPTQ with the Lloyd-Max grid. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/dtype.h"
#include "quant/fwht.h"
#include "quant/lloydmax.h"
#include "quant/quant_internal.h"
#include "quant/quantizer.h"
#include "tests/testlib.h"

static double gauss(uint64_t *rs) {
  double u1 = 0.5 * (qg_test_randf(rs) + 1.0) + 1e-12, u2 = 0.5 * (qg_test_randf(rs) + 1.0);
  return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static float *gauss_matrix(int64_t n, float sd, uint64_t seed) {
  float *w = malloc(sizeof(float) * (size_t)n);
  uint64_t rs = seed;
  for (int64_t i = 0; i < n; i++) w[i] = (float)(sd * gauss(&rs));
  return w;
}

static qg_qinput input(const float *w, int64_t rows, int64_t cols) {
  qg_qinput in = {0};
  in.name = "blocks.0.mlp.fc.weight";
  in.w = w, in.rows = rows, in.cols = cols, in.dtype = QG_F32, in.seed = 1234;
  return in;
}

/* Quantize + dequantize with method/options; returns the relative MSE |W - Q|^2 / |W|^2
 * and leaves the reconstruction in out (rows*cols) and the tensor in *qt when non-NULL. */
static double run(const char *method, const char *opts, const qg_qinput *in, float *out, qg_qtensor *qt) {
  qg_qconfig c;
  qg_qtensor q;
  assert_int_equal(qg_qconfig_parse(method, opts, &c), QG_OK);
  qg_status s = qg_quantize(&c, in, &q);
  if (s) print_message("%s\n", qg_last_error());
  assert_int_equal(s, QG_OK);
  assert_int_equal(qg_dequantize(&c, &q, out), QG_OK);
  double e = 0, n = 0;
  for (int64_t i = 0; i < in->rows * in->cols; i++) {
    e += ((double)in->w[i] - out[i]) * ((double)in->w[i] - out[i]);
    n += (double)in->w[i] * in->w[i];
  }
  if (qt) *qt = q;
  else qg_qtensor_free(&q);
  qg_qconfig_free(&c);
  return e / n;
}

/* turbo's reconstruction recomputed here: dense H_ij = (-1)^popcount(i&j) / sqrt(g), the
 * seeded signs, nearest level by linear search, least-squares gain rounded to fp16. */
static void test_turbo_reference(void **st) {
  (void)st;
  enum { R = 6, C = 64, G = 32 };
  float *w = gauss_matrix(R * C, 0.05f, 3), out[R * C];
  w[5] = 1.0f; /* an outlier */
  qg_qinput in = input(w, R, C);
  run("turbo", "bits=3 group=32", &in, out, NULL);
  const qg_lloydmax *lm = qg_lloydmax_gaussian_cached(3);
  float s[C];
  qg_random_signs(in.seed, s, C);
  for (int r = 0; r < R; r++)
    for (int k = 0; k < C / G; k++) {
      double y[G], c[G], n2 = 0, dot = 0, cc = 0;
      for (int i = 0; i < G; i++) {
        y[i] = 0;
        for (int j = 0; j < G; j++)
          y[i] += (__builtin_popcount((unsigned)(i & j)) & 1 ? -1.0 : 1.0) * s[k * G + j] * w[r * C + k * G + j];
        y[i] /= sqrt((double)G);
        n2 += y[i] * y[i];
      }
      for (int i = 0; i < G; i++) {
        double u = y[i] * sqrt((double)G / n2), best = INFINITY;
        for (int l = 0; l < lm->levels; l++)
          if (fabs(u - lm->c[l]) < best) best = fabs(u - lm->c[l]), c[i] = lm->c[l];
        dot += y[i] * c[i], cc += c[i] * c[i];
      }
      double a = qg_f16_to_f32(qg_f32_to_f16((float)(dot / cc)));
      for (int j = 0; j < G; j++) {
        double v = 0;
        for (int i = 0; i < G; i++) v += (__builtin_popcount((unsigned)(i & j)) & 1 ? -1.0 : 1.0) * a * c[i];
        v = v / sqrt((double)G) * s[k * G + j];
        assert_true(fabs(v - out[r * C + k * G + j]) < 1e-5);
      }
    }
  free(w);
}

/* On Gaussian weights turbo's relative MSE is within 5 % of the Lloyd-Max MSE D_b
 * (0.1175, 0.03455, 0.0095 at 2, 3, 4 bits); norm=ls is never worse than norm=l2; and
 * the packed size is exactly b bits per weight + 2 bytes per group + the 8-byte seed. */
static void test_turbo_gaussian(void **st) {
  (void)st;
  enum { R = 64, C = 1024 };
  float *w = gauss_matrix(R * C, 0.02f, 9), *out = malloc(sizeof(float) * R * C);
  qg_qinput in = input(w, R, C);
  for (int b = 2; b <= 4; b++) {
    char opts[64];
    snprintf(opts, sizeof opts, "bits=%d group=128", b);
    qg_qtensor q;
    double ls = run("turbo", opts, &in, out, &q);
    assert_int_equal(qg_qtensor_packed_bytes(&q), (int64_t)R * C * b / 8 + R * (C / 128) * 2 + 8);
    qg_qtensor_free(&q);
    snprintf(opts, sizeof opts, "bits=%d group=128 norm=l2", b);
    double l2 = run("turbo", opts, &in, out, NULL);
    double d = qg_lloydmax_gaussian_cached(b)->mse;
    print_message("turbo %d bits: rel MSE ls %.5f l2 %.5f (Lloyd-Max %.5f)\n", b, ls, l2, d);
    assert_true(fabs(ls / d - 1) < 0.05);
    assert_true(ls <= l2);
  }
  free(w), free(out);
}

/* Heavy tails (a few large outliers per row): the rotation spreads them, so turbo stays
 * near D_3 while Lloyd-Max levels on the raw weights (per-row RMS scale) degrade. */
static void test_turbo_outliers(void **st) {
  (void)st;
  enum { R = 32, C = 512 };
  float *w = gauss_matrix(R * C, 0.02f, 21), *out = malloc(sizeof(float) * R * C);
  uint64_t rs = 5;
  for (int r = 0; r < R; r++)
    for (int k = 0; k < 4; k++) w[r * C + (qg_test_rand(&rs) % C)] = 0.4f * (qg_test_randf(&rs) > 0 ? 1 : -1);
  qg_qinput in = input(w, R, C);
  double t = run("turbo", "bits=3 group=512", &in, out, NULL);
  double l = run("lloydmax", "bits=3 scale=rms", &in, out, NULL);
  print_message("outliers, 3 bits: turbo %.5f, lloydmax %.5f\n", t, l);
  assert_true(t < 1.1 * qg_lloydmax_gaussian_cached(3)->mse);
  assert_true(t < 0.5 * l);
  free(w), free(out);
}

/* Equalisation. After the rotation a group's error is spread evenly over its columns in
 * proportion to the group's norm, so scaling column i by s_i weights its error by
 * H_ii / s_i^2 while growing the norm by s_i^2: for columns of like magnitude the
 * Hessian-weighted error sum_i H_ii |W_:i - Q_:i|^2 is smallest at s_i ~ H_ii^(1/4)
 * (Cauchy-Schwarz), by the factor (E sqrt H)^2 / E H (0.60 for log H uniform on [-3, 3],
 * spread within every group here), and alpha = 0.5 is neutral. Asserted: eq=0.25 is
 * below 0.75 x eq=0 and below eq=0.5. Without a Hessian eq is refused. */
static void test_turbo_equalisation(void **st) {
  (void)st;
  enum { R = 64, C = 256 };
  float *w = gauss_matrix(R * C, 0.02f, 33), *out = malloc(sizeof(float) * R * C);
  double imp[C];
  for (int j = 0; j < C; j++) imp[j] = exp(6.0 * ((j * 37) % C) / C - 3.0);
  qg_qinput in = input(w, R, C);
  const char *opts[3] = {"bits=3 group=64", "bits=3 group=64 eq=0.25", "bits=3 group=64 eq=0.5"};
  double herr[3];
  for (int k = 0; k < 3; k++) {
    in.importance = k ? imp : NULL;
    qg_qtensor q;
    run("turbo", opts[k], &in, out, &q);
    if (k) assert_non_null(qg_qtensor_find(&q, "colscale"));
    qg_qtensor_free(&q);
    herr[k] = 0;
    for (int r = 0; r < R; r++)
      for (int j = 0; j < C; j++) herr[k] += imp[j] * (w[r * C + j] - out[r * C + j]) * (w[r * C + j] - out[r * C + j]);
  }
  print_message("H-weighted error: eq=0 %.4g, eq=0.25 %.4g, eq=0.5 %.4g\n", herr[0], herr[1], herr[2]);
  assert_true(herr[1] < 0.75 * herr[0]);
  assert_true(herr[1] < herr[2]);
  in.importance = NULL;
  qg_qconfig c;
  qg_qtensor q;
  assert_int_equal(qg_qconfig_parse("turbo", "eq=0.5", &c), QG_OK);
  assert_int_equal(qg_quantize(&c, &in, &q), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "Hessian"));
  qg_qconfig_free(&c);
  free(w), free(out);
}

/* Same seed, same codes; the seed is stored and used: changing it in the tensor changes
 * the reconstruction. */
static void test_turbo_seed(void **st) {
  (void)st;
  enum { R = 4, C = 256 };
  float *w = gauss_matrix(R * C, 1.0f, 8), a[R * C], b[R * C];
  qg_qinput in = input(w, R, C);
  qg_qtensor q;
  qg_qconfig c;
  run("turbo", "bits=4", &in, a, NULL);
  run("turbo", "bits=4", &in, b, &q);
  assert_memory_equal(a, b, sizeof a);
  assert_int_equal(qg_qconfig_parse("turbo", "bits=4", &c), QG_OK);
  qg_qsection *s = (qg_qsection *)qg_qtensor_find(&q, "seed");
  assert_non_null(s);
  ((uint8_t *)s->data)[0] ^= 1;
  assert_int_equal(qg_dequantize(&c, &q, b), QG_OK);
  assert_true(memcmp(a, b, sizeof a) != 0);
  qg_qconfig_free(&c);
  qg_qtensor_free(&q);
  free(w);
}

static void test_options_and_corruption(void **st) {
  (void)st;
  qg_qconfig c;
  assert_int_equal(qg_qconfig_parse("turbo", "bits=3 group=64 norm=l2 eq=0.25", &c), QG_OK);
  assert_string_equal(c.canon, "bits=3 group=64 norm=l2 eq=0.25");
  qg_qconfig c2;
  assert_int_equal(qg_qconfig_parse("turbo", c.canon, &c2), QG_OK);
  assert_string_equal(c2.canon, c.canon);
  qg_qconfig_free(&c2);
  int64_t shape[2] = {8, 96};
  assert_int_equal(qg_qconfig_can_take(&c, "x.weight", 2, shape), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "x.weight"));
  qg_qconfig_free(&c);
  assert_int_equal(qg_qconfig_parse("turbo", "group=96", &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "power of two"));
  assert_int_equal(qg_qconfig_parse("turbo", "bitz=3", &c), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "bits"));
  assert_int_equal(qg_qconfig_parse("lloydmax", "bits=9", &c), QG_ERR_INPUT);
  assert_int_equal(qg_qconfig_parse("lloydmax", "lo=2 hi=1", &c), QG_ERR_INPUT);
  assert_int_equal(qg_qconfig_parse("lloydmax", "bits=3 group=64", &c), QG_OK);
  assert_string_equal(c.canon, "bits=3 group=64 scale=search lo=0.5 hi=2 steps=32 objective=mse");
  qg_qconfig_free(&c);

  /* A code beyond the levels, a missing section: one clear error each. */
  enum { R = 2, C = 64 };
  float *w = gauss_matrix(R * C, 1.0f, 2), out[R * C];
  qg_qinput in = input(w, R, C);
  const char *methods[] = {"turbo", "lloydmax"};
  for (int m = 0; m < 2; m++) {
    qg_qtensor q;
    run(methods[m], "bits=2 group=32", &in, out, &q);
    assert_int_equal(qg_qconfig_parse(methods[m], "bits=2 group=32", &c), QG_OK);
    qg_qsection *s = (qg_qsection *)qg_qtensor_find(&q, "codes");
    ((uint32_t *)s->data)[7] = 4;
    assert_int_equal(qg_dequantize(&c, &q, out), QG_ERR_INPUT);
    assert_non_null(strstr(qg_last_error(), "code 4"));
    strcpy(s->name, "junk");
    assert_int_equal(qg_dequantize(&c, &q, out), QG_ERR_INPUT);
    qg_qconfig_free(&c);
    qg_qtensor_free(&q);
  }
  free(w);
}

/* lloydmax on Gaussian rows with the RMS scale lands on D_b (per-row scale estimated from
 * 2048 values: within 3 %); the scale search is never worse than the RMS scale; the
 * reconstruction is exactly f16(scale) * level. */
static void test_lloydmax_quantizer(void **st) {
  (void)st;
  enum { R = 32, C = 2048 };
  float *w = gauss_matrix(R * C, 0.03f, 17), *out = malloc(sizeof(float) * R * C);
  qg_qinput in = input(w, R, C);
  for (int b = 1; b <= 4; b++) {
    char o1[64], o2[64];
    snprintf(o1, sizeof o1, "bits=%d scale=rms", b);
    snprintf(o2, sizeof o2, "bits=%d", b);
    qg_qtensor q;
    double e_rms = run("lloydmax", o1, &in, out, &q);
    double e_search = run("lloydmax", o2, &in, out, NULL);
    double d = qg_lloydmax_gaussian_cached(b)->mse;
    assert_true(fabs(e_rms / d - 1) < 0.03);
    assert_true(e_search <= e_rms * (1 + 1e-12));
    assert_int_equal(qg_qtensor_packed_bytes(&q), (int64_t)R * C * b / 8 + R * 2);
    if (b == 3) { /* reconstruct from the sections by hand */
      run("lloydmax", o1, &in, out, NULL);
      const qg_qsection *cs = qg_qtensor_find(&q, "codes"), *ss = qg_qtensor_find(&q, "scales");
      const qg_lloydmax *lm = qg_lloydmax_gaussian_cached(3);
      for (int r = 0; r < R; r++)
        for (int j = 0; j < C; j += 97) {
          float v = qg_f16_to_f32(((uint16_t *)ss->data)[r]) * (float)lm->c[((uint32_t *)cs->data)[r * C + j]];
          assert_true(v == out[r * C + j]);
        }
    }
    qg_qtensor_free(&q);
  }
  free(w), free(out);
}

/* GPTQ with the Lloyd-Max grid: on inputs X with correlated features, the output error
 * tr((W - Q) H (W - Q)^T) is below round-to-nearest's with the same grid. */
static void test_gptq_lloydmax_grid(void **st) {
  (void)st;
  enum { R = 48, C = 64, N = 1024 };
  float *w = gauss_matrix(R * C, 0.05f, 40), *out = malloc(sizeof(float) * R * C);
  double *H = calloc((size_t)C * C, sizeof *H), *x = malloc(sizeof(double) * C);
  uint64_t rs = 41;
  for (int n = 0; n < N; n++) { /* x = a shared factor + noise, scaled per feature */
    double f = gauss(&rs);
    for (int j = 0; j < C; j++) x[j] = (0.8 * f + 0.6 * gauss(&rs)) * (1.0 + (j % 5));
    for (int i = 0; i < C; i++)
      for (int j = 0; j < C; j++) H[i * C + j] += 2.0 * x[i] * x[j] / N;
  }
  qg_qinput in = input(w, R, C);
  in.hessian = H;
  double err[2];
  const char *m[2] = {"lloydmax", "gptq"}, *o[2] = {"bits=3", "grid=lloydmax bits=3"};
  for (int k = 0; k < 2; k++) {
    run(m[k], o[k], &in, out, NULL);
    err[k] = 0;
    for (int r = 0; r < R; r++) {
      double d[C];
      for (int j = 0; j < C; j++) d[j] = (double)w[r * C + j] - out[r * C + j];
      for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) err[k] += d[i] * H[i * C + j] * d[j];
    }
  }
  print_message("output error: lloydmax RTN %.4g, gptq grid=lloydmax %.4g\n", err[0], err[1]);
  assert_true(err[1] < err[0]);
  free(w), free(out), free(H), free(x);
}

/* turbo's rotations and lloydmax's scale searches run one row per pool task (QG_THREADS=4
 * forced in main): bitwise the sequential result, RTN and under GPTQ (turbo as the grid). */
static void test_threads_match_serial(void **st) {
  (void)st;
  enum { R = 37, C = 64 };
  float *w = gauss_matrix(R * C, 0.02f, 77);
  double *H = calloc((size_t)C * C, sizeof *H);
  for (int i = 0; i < C; i++) H[i * C + i] = 1.0 + (i % 7);
  for (int i = 0; i + 1 < C; i++) H[i * C + i + 1] = H[(i + 1) * C + i] = 0.3;
  qg_qinput in = input(w, R, C);
  in.hessian = H;
  assert_true(qg_quant_threads() > 1);
  qg_test_threaded_equals_serial("turbo", "bits=3 group=32", &in);
  qg_test_threaded_equals_serial("turbo", "bits=4 group=64 norm=l2 eq=0.25", &in);
  qg_test_threaded_equals_serial("lloydmax", "bits=3 group=16 objective=hessian", &in);
  qg_test_threaded_equals_serial("gptq", "grid=lloydmax bits=3", &in);
  qg_test_threaded_equals_serial("gptq", "grid=turbo bits=3 group=16 eq=0.25", &in);
  free(w), free(H);
}

int main(void) {
  setenv("QG_THREADS", "4", 0); /* a multi-thread pool even on one core (unless set) */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_turbo_reference),    cmocka_unit_test(test_turbo_gaussian),
      cmocka_unit_test(test_turbo_outliers),     cmocka_unit_test(test_turbo_equalisation),
      cmocka_unit_test(test_turbo_seed),         cmocka_unit_test(test_options_and_corruption),
      cmocka_unit_test(test_lloydmax_quantizer), cmocka_unit_test(test_gptq_lloydmax_grid),
      cmocka_unit_test(test_threads_match_serial),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
