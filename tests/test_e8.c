/* quant/e8: lattice decoders against brute force over nearby lattice points, codebook
 * sizes against the E8 theta series (1, 240, 2160, 6720, 17520, 30240), the E8P
 * construction's invariants, and the codebook encoder against brute force over every
 * entry. */
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
#include "quant/e8.h"
#include "quant/lloydmax.h"
#include "quant/quant_internal.h"
#include "quant/quantizer.h"
#include "tests/testlib.h"

static double d2(const float *a, const float *b) {
  double s = 0;
  for (int j = 0; j < 8; j++) s += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
  return s;
}

/* Membership by definition: all integers or all halves of odd integers, even sum. */
static int in_e8(const float *v) {
  int half = fabsf(v[0] - rintf(v[0])) > 0.25f;
  double s = 0;
  for (int j = 0; j < 8; j++) {
    double f = half ? v[j] - 0.5 : v[j];
    if (f != rint(f)) return 0;
    s += v[j];
  }
  return fmod(fabs(s), 2.0) == 0.0;
}

/* Smallest squared distance from x to a point of D8 (half = 0) or D8 + ½ (half = 1), by
 * enumerating every such point with each coordinate within `reach` of x's. */
static double brute_coset(const float *x, int half, double reach) {
  float lo[8];
  int cnt[8];
  for (int j = 0; j < 8; j++) {
    double off = half ? 0.5 : 0.0;
    double a = ceil(x[j] - reach - off), b = floor(x[j] + reach - off);
    lo[j] = (float)(a + off);
    cnt[j] = (int)(b - a) + 1;
  }
  double best = INFINITY;
  int idx[8] = {0};
  for (;;) {
    float v[8];
    double s = 0;
    for (int j = 0; j < 8; j++) v[j] = lo[j] + (float)idx[j], s += v[j];
    if (fmod(fabs(s), 2.0) == 0.0) best = fmin(best, d2(x, v));
    int j = 0;
    while (j < 8 && ++idx[j] == cnt[j]) idx[j++] = 0;
    if (j == 8) break;
  }
  return best;
}

static void random_vec(uint64_t *rs, float *x, float scale) {
  for (int j = 0; j < 8; j++) x[j] = scale * qg_test_randf(rs);
}

static void test_lattice_nearest(void **st) {
  (void)st;
  uint64_t rs = 1;
  for (int it = 0; it < 400; it++) {
    float x[8], y[8];
    random_vec(&rs, x, 0.5f + (float)(it % 7));
    qg_e8_nearest(x, y);
    assert_true(in_e8(y));
    /* E8's covering radius is 1: the nearest point of either coset is within 1 in every
     * coordinate, so this enumeration contains it. */
    double ref = fmin(brute_coset(x, 0, 1.0), brute_coset(x, 1, 1.0));
    assert_true(fabs(d2(x, y) - ref) < 1e-5);
    if (it < 40) {
      /* D8 alone (covering radius sqrt 2): enumerate within 1.5 per coordinate. */
      qg_d8_nearest(x, y);
      assert_true(in_e8(y) && fabsf(y[0] - rintf(y[0])) == 0.0f);
      assert_true(fabs(d2(x, y) - brute_coset(x, 0, 1.5)) < 1e-5);
    }
  }
  /* Lattice points decode to themselves. */
  float p[8] = {0.5f, -0.5f, 1.5f, 0.5f, -2.5f, 0.5f, 0.5f, -0.5f}, y[8];
  qg_e8_nearest(p, y);
  assert_memory_equal(p, y, sizeof p);
}

/* Entries are distinct, lie in E8, and fill the ball exactly (theta series counts). */
static void check_ball(double r2, uint32_t expect_size, int expect_bits) {
  qg_e8_codebook cb;
  assert_int_equal(qg_e8_codebook_ball(r2, &cb), QG_OK);
  assert_int_equal(cb.size, expect_size);
  assert_int_equal(cb.index_bits, expect_bits);
  int64_t *keys = malloc(sizeof(int64_t) * cb.size);
  for (uint32_t i = 0; i < cb.size; i++) {
    float v[8];
    qg_e8_decode(&cb, i, v);
    assert_true(in_e8(v));
    double n = 0;
    int64_t k = 0;
    for (int j = 0; j < 8; j++) n += (double)v[j] * v[j], k = k * 64 + (int64_t)(2 * v[j] + 32);
    assert_true(n <= r2 + 1e-9);
    keys[i] = k;
  }
  for (uint32_t i = 0; i < cb.size; i++)
    for (uint32_t j = i + 1; j < cb.size && cb.size < 3000; j++) assert_true(keys[i] != keys[j]);
  free(keys);
  qg_e8_codebook_free(&cb);
}

static void test_ball_codebooks(void **st) {
  (void)st;
  check_ball(2, 1 + 240, 8);
  check_ball(4, 1 + 240 + 2160, 12);
  check_ball(10, 1 + 240 + 2160 + 6720 + 17520 + 30240, 16);
  qg_e8_codebook cb;
  assert_int_equal(qg_e8_codebook_for_bits(1, &cb), QG_OK);
  assert_int_equal(cb.size, 241);
  qg_e8_codebook_free(&cb);
  assert_int_equal(qg_e8_codebook_for_bits(1.5, &cb), QG_OK);
  assert_int_equal(cb.size, 2401);
  qg_e8_codebook_free(&cb);
  assert_int_equal(qg_e8_codebook_for_bits(2, &cb), QG_OK);
  assert_int_equal(cb.size, 56881);
  qg_e8_codebook_free(&cb);
  assert_int_equal(qg_e8_codebook_for_bits(0.5, &cb), QG_ERR_INPUT);
  assert_int_equal(qg_e8_codebook_ball(1, &cb), QG_ERR_INPUT);
}

/* E8P: 2^16 distinct entries; each minus (¼, ..., ¼) lies in E8 (the codebook is a subset
 * of E8 + ¼); without the shift each is a point of D8 + ½ with |v|^2 <= 10, or one of 29
 * points of norm 12 with five 3/2's and three ½'s in absolute value; every index
 * decodes. */
static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static void test_e8p_codebook(void **st) {
  (void)st;
  const qg_e8_codebook *cb = qg_e8_codebook_get("e8p");
  assert_non_null(cb);
  assert_int_equal(cb->size, 65536);
  assert_int_equal(cb->index_bits, 16);
  assert_int_equal(cb->n_pat, 256);
  uint64_t *keys = malloc(sizeof(uint64_t) * 65536);
  int norm12 = 0, small = 0;
  for (uint32_t i = 0; i < 65536; i++) {
    float v[8], u[8];
    qg_e8_decode(cb, i, v);
    float sh = i & 1 ? 0.25f : -0.25f;
    double n = 0;
    uint64_t k = 0;
    for (int j = 0; j < 8; j++) {
      u[j] = v[j] - 0.25f;
      k = k * 64 + (uint64_t)(4 * v[j] + 32);
    }
    assert_true(in_e8(u));
    for (int j = 0; j < 8; j++) u[j] = v[j] - sh, n += (double)u[j] * u[j];
    assert_true(in_e8(u) && fabsf(u[0] - rintf(u[0])) == 0.5f);
    if (n <= 10) small++;
    else {
      assert_true(n == 12);
      int threes = 0;
      for (int j = 0; j < 8; j++) threes += fabsf(u[j]) == 1.5f;
      assert_int_equal(threes, 5);
      norm12++;
    }
    keys[i] = k;
  }
  assert_int_equal(small, 227 * 256);
  assert_int_equal(norm12, 29 * 256);
  qsort(keys, 65536, sizeof *keys, cmp_u64);
  for (int i = 1; i < 65536; i++) assert_true(keys[i] != keys[i - 1]);
  free(keys);
}

/* The encoder's index is a nearest entry: checked against every entry of the codebook,
 * for inputs inside the codebook's reach and far outside it (the slow path). */
static void check_encoder(const qg_e8_codebook *cb, int n_inputs, uint64_t seed) {
  uint64_t rs = seed;
  for (int it = 0; it < n_inputs; it++) {
    float x[8], y[8], dd, ds;
    float scale = it % 4 == 3 ? 6.0f : 0.4f + 0.5f * (float)(it % 4);
    random_vec(&rs, x, scale);
    uint32_t i = qg_e8_encode(cb, x, &dd);
    assert_true(i < cb->size);
    qg_e8_decode(cb, i, y);
    double got = d2(x, y), best = INFINITY;
    for (uint32_t k = 0; k < cb->size; k++) {
      float v[8];
      qg_e8_decode(cb, k, v);
      best = fmin(best, d2(x, v));
    }
    assert_true(fabs(got - best) < 1e-4 * (1 + best));
    assert_true(fabs(dd - got) < 1e-4 * (1 + got));
    uint32_t j = qg_e8_encode_search(cb, x, &ds);
    qg_e8_decode(cb, j, y);
    assert_true(fabs(d2(x, y) - best) < 1e-4 * (1 + best));
  }
}

static void test_encoder_brute_force(void **st) {
  (void)st;
  check_encoder(qg_e8_codebook_get("ball1"), 400, 3);
  qg_e8_codebook cb;
  assert_int_equal(qg_e8_codebook_ball(4, &cb), QG_OK);
  check_encoder(&cb, 100, 4);
  qg_e8_codebook_free(&cb);
  check_encoder(qg_e8_codebook_get("ball2"), 16, 5);
  check_encoder(qg_e8_codebook_get("e8p"), 32, 6);
  /* Every entry encodes to itself (exact points, ties impossible). */
  const qg_e8_codebook *e = qg_e8_codebook_get("e8p");
  for (uint32_t i = 0; i < 65536; i += 97) {
    float v[8];
    qg_e8_decode(e, i, v);
    assert_int_equal(qg_e8_encode(e, v, NULL), i);
  }
  /* Non-finite input is read as 0, not undefined behaviour. */
  float bad[8] = {NAN, INFINITY, 0, 0, 0, 0, 0, 0};
  assert_true(qg_e8_encode(e, bad, NULL) < 65536);
  assert_null(qg_e8_codebook_get("nope"));
}

/* A real property of the construction: on Gaussian data at its best scale, E8P (2 bits
 * per weight) has lower MSE than the best fixed-rate scalar 2-bit quantizer (Lloyd-Max,
 * 0.1175 per coordinate), and lower than the E8 ball with 56,881 points. */
static void test_e8p_gaussian_mse(void **st) {
  (void)st;
  enum { N = 2000 };
  const qg_e8_codebook *e = qg_e8_codebook_get("e8p"), *b = qg_e8_codebook_get("ball2");
  float *x = malloc(sizeof(float) * 8 * N);
  uint64_t rs = 77;
  for (int i = 0; i < 8 * N; i += 2) { /* Box-Muller */
    double u1 = 0.5 * (qg_test_randf(&rs) + 1.0) + 1e-12, u2 = 0.5 * (qg_test_randf(&rs) + 1.0);
    x[i] = (float)(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
    x[i + 1] = (float)(sqrt(-2 * log(u1)) * sin(2 * M_PI * u2));
  }
  double best_e = INFINITY, best_b = INFINITY;
  for (double s = 0.8; s <= 1.25; s += 0.05) { /* codebook units per standard deviation */
    double se = 0, sb = 0;
    for (int i = 0; i < N; i++) {
      float v[8], d;
      for (int j = 0; j < 8; j++) v[j] = (float)(x[8 * i + j] * s);
      qg_e8_encode(e, v, &d);
      se += d;
      qg_e8_encode(b, v, &d);
      sb += d;
    }
    best_e = fmin(best_e, se / (8.0 * N) / (s * s));
    best_b = fmin(best_b, sb / (8.0 * N) / (s * s));
  }
  print_message("gaussian MSE per weight: e8p %.4f, e8 ball(56881) %.4f, lloyd-max 2-bit 0.1175\n",
                best_e, best_b);
  assert_true(best_e < 0.1175);
  assert_true(best_e < best_b);
  free(x);
}

/* ---- the e8 quantizer ---------------------------------------------------------------- */

static double gauss(uint64_t *rs) {
  double u1 = 0.5 * (qg_test_randf(rs) + 1.0) + 1e-12, u2 = 0.5 * (qg_test_randf(rs) + 1.0);
  return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

static qg_qinput input(const float *w, int64_t rows, int64_t cols) {
  qg_qinput in = {0};
  in.name = "blocks.1.attn.c_q.weight";
  in.w = w, in.rows = rows, in.cols = cols, in.dtype = QG_F32;
  return in;
}

/* Relative MSE of method/opts on in; the tensor goes to *qt when non-NULL. */
static double run(const char *method, const char *opts, const qg_qinput *in, float *out, qg_qtensor *qt) {
  qg_qconfig c;
  qg_qtensor q;
  assert_int_equal(qg_qconfig_parse(method, opts, &c), QG_OK);
  qg_status s = qg_quantize(&c, in, &q);
  if (s) print_message("%s\n", qg_last_error());
  assert_int_equal(s, QG_OK);
  assert_int_equal(qg_dequantize(&c, &q, out), QG_OK);
  double e = 0, n = 0;
  for (int64_t i = 0; i < in->rows * in->cols; i++)
    e += ((double)in->w[i] - out[i]) * ((double)in->w[i] - out[i]), n += (double)in->w[i] * in->w[i];
  if (qt) *qt = q;
  else qg_qtensor_free(&q);
  qg_qconfig_free(&c);
  return e / n;
}

/* On Gaussian weights at 2 bits per weight (plus fp16 row scales), e8 beats scalar 2-bit
 * round-to-nearest in MSE: rowwise (both ranges, clip searched) and even Lloyd-Max levels
 * (and a 1.5-bit ball codebook lands between 2 bits and 0.25);
 * each residual stage lowers it below the Lloyd-Max MSE of the same rate (0.03455 at 3,
 * 0.0095 at 4 bits). Packed bytes: index bits per 8 weights + 2 bytes per row and stage. */
static void test_e8_quantizer_gaussian(void **st) {
  (void)st;
  enum { R = 32, C = 256 };
  float *w = malloc(sizeof(float) * R * C), *out = malloc(sizeof(float) * R * C);
  uint64_t rs = 91;
  for (int i = 0; i < R * C; i++) w[i] = (float)(0.02 * gauss(&rs));
  qg_qinput in = input(w, R, C);
  qg_qtensor q;
  double e2 = run("e8", "bits=2", &in, out, &q);
  assert_int_equal(qg_qtensor_packed_bytes(&q), (int64_t)R * C / 8 * 2 + R * 2);
  /* every code is a nearest entry of w / scale (brute force over E8P on a sample) */
  const qg_e8_codebook *cb = qg_e8_codebook_get("e8p");
  const qg_qsection *cs = qg_qtensor_find(&q, "codes"), *ss = qg_qtensor_find(&q, "scales");
  assert_int_equal(cs->bits, 16);
  for (int r = 0; r < R; r += 15)
    for (int v = 0; v < C / 8; v += 11) {
      float x[8], y[8], s = qg_f16_to_f32(((uint16_t *)ss->data)[r]);
      for (int j = 0; j < 8; j++) x[j] = w[r * C + v * 8 + j] / s;
      qg_e8_decode(cb, ((uint32_t *)cs->data)[r * (C / 8) + v], y);
      double got = d2(x, y), best = INFINITY;
      for (uint32_t k = 0; k < cb->size; k++) {
        float e[8];
        qg_e8_decode(cb, k, e);
        best = fmin(best, d2(x, e));
      }
      assert_true(got <= best + 1e-4);
    }
  qg_qtensor_free(&q);
  double rw = run("rowwise", "bits=2 clip=search", &in, out, NULL);
  double rwf = run("rowwise", "bits=2 range=full clip=search", &in, out, NULL);
  double lm = run("lloydmax", "bits=2", &in, out, NULL);
  double e3 = run("e8", "bits=3", &in, out, &q);
  assert_int_equal(qg_qtensor_packed_bytes(&q), (int64_t)R * C / 8 * 3 + 2 * R * 2);
  assert_int_equal(qg_qtensor_find(&q, "codes2")->bits, 8);
  qg_qtensor_free(&q);
  double e4 = run("e8", "bits=4", &in, out, NULL);
  double eb = run("e8", "cb=ball bits=1.5", &in, out, &q);
  assert_int_equal(qg_qtensor_packed_bytes(&q), (int64_t)R * C / 8 * 12 / 8 + R * 2); /* 2401 points */
  qg_qtensor_free(&q);
  print_message("rel MSE at 2 bits: e8p %.4f, rowwise sym %.4f, full %.4f, lloydmax %.4f; e8 ball 1.5 bits %.4f; "
                "e8 3 bits %.5f, 4 bits %.5f\n", e2, rw, rwf, lm, eb, e3, e4);
  assert_true(e2 < rw && e2 < rwf && e2 < lm);
  assert_true(e2 < 0.1175 && eb > e2 && eb < 0.25);
  assert_true(e3 < 0.03455 && e4 < 0.0095 && e4 < e3);
  free(w), free(out);
}

/* GPTQ with the E8 grid (8 columns rounded jointly, error fed back 8 at a time) has lower
 * output error tr((W - Q) H (W - Q)^T) than e8 round-to-nearest on correlated inputs. */
static void test_gptq_e8_grid(void **st) {
  (void)st;
  enum { R = 32, C = 64, N = 1024 };
  float *w = malloc(sizeof(float) * R * C), *out = malloc(sizeof(float) * R * C);
  double *H = calloc((size_t)C * C, sizeof *H), x[C];
  uint64_t rs = 17;
  for (int i = 0; i < R * C; i++) w[i] = (float)(0.05 * gauss(&rs));
  for (int n = 0; n < N; n++) {
    double f = gauss(&rs);
    for (int j = 0; j < C; j++) x[j] = (0.8 * f + 0.6 * gauss(&rs)) * (1.0 + (j % 3));
    for (int i = 0; i < C; i++)
      for (int j = 0; j < C; j++) H[i * C + j] += 2.0 * x[i] * x[j] / N;
  }
  qg_qinput in = input(w, R, C);
  in.hessian = H;
  const char *m[2] = {"e8", "gptq"}, *o[2] = {"bits=2", "grid=e8 bits=2"};
  double err[2];
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
  print_message("output error: e8 RTN %.4g, gptq grid=e8 %.4g\n", err[0], err[1]);
  assert_true(err[1] < err[0]);
  free(w), free(out), free(H);
}

static void test_e8_options_and_corruption(void **st) {
  (void)st;
  qg_qconfig c;
  assert_int_equal(qg_qconfig_parse("e8", "bits=3 group=64", &c), QG_OK);
  assert_string_equal(c.canon, "cb=e8p bits=3 group=64 lo=0.5 hi=2 steps=12 objective=mse");
  int64_t shape[2] = {4, 60};
  assert_int_equal(qg_qconfig_can_take(&c, "w.weight", 2, shape), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "multiple of 8"));
  qg_qconfig_free(&c);
  assert_int_equal(qg_qconfig_parse("e8", "bits=2.5", &c), QG_ERR_INPUT);
  assert_int_equal(qg_qconfig_parse("e8", "group=12", &c), QG_ERR_INPUT);
  assert_int_equal(qg_qconfig_parse("e8", "cb=ball bits=3", &c), QG_ERR_INPUT);
  assert_int_equal(qg_qconfig_parse("e8", "cb=lattice", &c), QG_ERR_INPUT);
  assert_int_equal(qg_qconfig_parse("e8", "cb=ball bits=1.5", &c), QG_OK);
  qg_qconfig_free(&c);

  enum { R = 3, C = 32 };
  float w[R * C], out[R * C];
  uint64_t rs = 4;
  for (int i = 0; i < R * C; i++) w[i] = qg_test_randf(&rs);
  qg_qinput in = input(w, R, C);
  qg_qtensor q;
  run("e8", "bits=3 group=16", &in, out, &q);
  assert_int_equal(qg_qconfig_parse("e8", "bits=3 group=16", &c), QG_OK);
  qg_qsection *s = (qg_qsection *)qg_qtensor_find(&q, "codes2");
  ((uint32_t *)s->data)[1] = 241; /* the 1-bit ball has 241 entries */
  assert_int_equal(qg_dequantize(&c, &q, out), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "241"));
  s->count--;
  assert_int_equal(qg_dequantize(&c, &q, out), QG_ERR_INPUT);
  s->count++;
  qg_qconfig_free(&c);
  qg_qtensor_free(&q);
  /* an all-zero matrix reconstructs to (near) zero */
  memset(w, 0, sizeof w);
  run("e8", "bits=2", &in, out, NULL);
  for (int i = 0; i < R * C; i++) assert_true(fabsf(out[i]) < 1e-3f);
}

/* The e8 grid's scale searches and encodes run one row per pool task (with QG_THREADS=4
 * forced in main, so the pool is exercised on any machine): bitwise the sequential result,
 * for RTN (one and two stages, groups, the Hessian objective) and under GPTQ. */
static void test_e8_threads_match_serial(void **st) {
  (void)st;
  enum { R = 37, C = 64 };
  float *w = malloc(sizeof(float) * R * C);
  double *H = calloc((size_t)C * C, sizeof *H);
  uint64_t rs = 5;
  for (int i = 0; i < R * C; i++) w[i] = (float)(0.02 * gauss(&rs));
  for (int i = 0; i < C; i++) H[i * C + i] = 1.0 + (i % 7);
  for (int i = 0; i + 1 < C; i++) H[i * C + i + 1] = H[(i + 1) * C + i] = 0.3;
  qg_qinput in = input(w, R, C);
  in.hessian = H;
  print_message("thread pool: %d threads\n", qg_quant_threads());
  assert_true(qg_quant_threads() > 1);
  qg_test_threaded_equals_serial("e8", "bits=2", &in);
  qg_test_threaded_equals_serial("e8", "bits=3 group=32", &in);
  qg_test_threaded_equals_serial("e8", "bits=4 objective=hessian", &in);
  qg_test_threaded_equals_serial("e8", "cb=ball bits=1.5 group=16", &in);
  qg_test_threaded_equals_serial("gptq", "grid=e8 bits=3 blocksize=32", &in);
  free(w), free(H);
}

int main(void) {
  setenv("QG_THREADS", "4", 0); /* a multi-thread pool even on one core (unless set) */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_lattice_nearest),    cmocka_unit_test(test_ball_codebooks),
      cmocka_unit_test(test_e8p_codebook),       cmocka_unit_test(test_encoder_brute_force),
      cmocka_unit_test(test_e8p_gaussian_mse),   cmocka_unit_test(test_e8_quantizer_gaussian),
      cmocka_unit_test(test_gptq_e8_grid),       cmocka_unit_test(test_e8_options_and_corruption),
      cmocka_unit_test(test_e8_threads_match_serial),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
