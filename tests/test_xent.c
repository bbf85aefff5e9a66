/* kernels/cpu/cpu_xent: the vectorised tanh against the fp64 tanh (a dense sweep and its
 * edges), and the fast training-loss op against the exact one (libm tanhf, fp64 exp per
 * logit) on fresh random logits: loss, gradient, in place, and each row independent of
 * the others (which is what makes it the same for any thread count). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_xent.h"
#include "tests/testlib.h"

/* the bound cpu_xent.h states */
#define VTANH_REL_BOUND 2.5e-7
/* Against the fp64 truth (tanh, exp, sums in double from the same float logits): the
 * loss, relative; each gradient entry, relative to itself plus a floor relative to its
 * row's largest entry. The fast path is held to GRAD_REL/GRAD_ABS; against the exact
 * path (whose p_t - 1 cancels when p_t is near 1: up to 4e-5 off there) and the exact
 * path itself (reported) to ten times that, the project's fp64 tolerance of 1e-4. */
#define XENT_LOSS_REL 1e-6
#define XENT_GRAD_REL 1e-5
#define XENT_GRAD_ABS 1e-7

static float from_bits(uint32_t b) {
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

/* Every 37th float bit pattern of [0, 50] (about 29 million: every binade from the
 * smallest subnormal up), both signs. */
static void test_vtanh_dense(void **st) {
  (void)st;
  enum { CHUNK = 1 << 16 };
  float *x = malloc(sizeof *x * CHUNK), *t = malloc(sizeof *t * CHUNK), *tmp = malloc(sizeof *tmp * CHUNK);
  assert_non_null(x), assert_non_null(t), assert_non_null(tmp);
  uint32_t top;
  float fifty = 50.0f;
  memcpy(&top, &fifty, sizeof top);
  double worst = 0, worst_x = 0;
  long count = 0;
  for (uint32_t b = 1; b <= top;) {
    int n = 0;
    for (; n < CHUNK && b <= top; b += 37, n++) {
      float v = from_bits(b);
      x[n] = (n & 1) ? -v : v;
    }
    qg_cpu_vtanhf(t, x, n, tmp);
    for (int i = 0; i < n; i++) {
      double ref = tanh((double)x[i]);
      double e = fabs((double)t[i] - ref) / fabs(ref);
      if (e > worst) worst = e, worst_x = x[i];
    }
    count += n;
  }
  print_message("  vtanhf: %ld inputs, worst relative error %.3g at x = %.9g\n", count, worst, worst_x);
  assert_true(worst <= VTANH_REL_BOUND);
  free(x), free(t), free(tmp);
}

static void test_vtanh_edges(void **st) {
  (void)st;
  float x[] = {0.0f, -0.0f, 0.625f, -0.625f, 0.62499994f, 44.2f, -44.2f, 88.0f, 1e30f, -1e30f, INFINITY, -INFINITY,
               NAN, 1e-40f, -1e-40f};
  enum { N = sizeof x / sizeof x[0] };
  float t[N], tmp[N];
  qg_cpu_vtanhf(t, x, N, tmp);
  assert_true(t[0] == 0.0f && !signbit(t[0]));
  assert_true(t[1] == 0.0f && signbit(t[1]));
  for (int i = 2; i < 5; i++) assert_true(fabs(t[i] - tanh((double)x[i])) <= VTANH_REL_BOUND * fabs(tanh((double)x[i])));
  for (int i = 5; i < 12; i++) assert_true(t[i] == (x[i] > 0 ? 1.0f : -1.0f));
  assert_true(isnan(t[12]));
  assert_true(t[13] == x[13] && t[14] == x[14]); /* tanh x = x below an ulp's reach */
}

/* Random logits with a spread that makes the softcap matter, a few rows pushed to
 * extremes (one logit far above the rest; everything near the cap). */
static void fill_logits(float *l, int32_t *tgt, int64_t rows, int V, float spread, uint64_t *rng) {
  for (int64_t r = 0; r < rows; r++) {
    for (int i = 0; i < V; i++) l[r * V + i] = spread * qg_test_randf(rng);
    tgt[r] = (int32_t)(qg_test_rand(rng) % (uint64_t)V);
    if (r % 7 == 3) l[r * V + tgt[r]] = 80.0f;                       /* a confident row */
    if (r % 7 == 5) l[r * V + (int)(qg_test_rand(rng) % V)] = -90.0f; /* a far tail */
  }
}

static void compare_case(int64_t rows, int V, float spread, uint64_t seed) {
  uint64_t rng = seed;
  int64_t n = rows * V;
  float *l = malloc(sizeof *l * (size_t)n), *fast = malloc(sizeof *fast * (size_t)n);
  float *exact = malloc(sizeof *exact * (size_t)n), *inpl = malloc(sizeof *inpl * (size_t)n);
  int32_t *tgt = malloc(sizeof *tgt * (size_t)rows);
  assert_non_null(l), assert_non_null(fast), assert_non_null(exact), assert_non_null(inpl), assert_non_null(tgt);
  fill_logits(l, tgt, rows, V, spread, &rng);
  const qg_ops *o = qg_ops_cpu();
  double sf, se, si;
  float gs = 0.7f / (float)rows;
  assert_int_equal(qg_cpu_xent_fwd_bwd(o, fast, &sf, l, tgt, rows, V, 30.0f, gs), QG_OK);
  assert_int_equal(qg_cpu_xent_fwd_bwd_exact(exact, &se, l, tgt, rows, V, 30.0f, gs), QG_OK);
  /* the fp64 truth from the same float logits */
  double s64 = 0, wf = 0, we = 0, wfe = 0;
  double *g64 = malloc(sizeof *g64 * (size_t)V);
  assert_non_null(g64);
  for (int64_t r = 0; r < rows; r++) {
    const float *lr = l + r * V;
    double zmax = -INFINITY, sum = 0, mx = 0;
    for (int i = 0; i < V; i++) zmax = fmax(zmax, 30.0 * tanh(lr[i] / 30.0));
    for (int i = 0; i < V; i++) sum += exp(30.0 * tanh(lr[i] / 30.0) - zmax);
    double lse = zmax + log(sum);
    s64 += lse - 30.0 * tanh(lr[tgt[r]] / 30.0);
    /* p_t - 1 = -(sum of the other terms) / sum: no cancellation when p_t is near 1 */
    double rest = 0;
    for (int i = 0; i < V; i++)
      if (i != tgt[r]) rest += exp(30.0 * tanh(lr[i] / 30.0) - zmax);
    for (int i = 0; i < V; i++) {
      double th = tanh(lr[i] / 30.0);
      double p1 = i == tgt[r] ? -rest / sum : exp(30.0 * th - zmax) / sum;
      g64[i] = (double)gs * p1 * (1.0 - th * th);
      mx = fmax(mx, fabs(g64[i]));
    }
    for (int i = 0; i < V; i++) {
      double lim = XENT_GRAD_REL * fabs(g64[i]) + XENT_GRAD_ABS * mx;
      wf = fmax(wf, fabs(fast[r * V + i] - g64[i]) / lim);
      we = fmax(we, fabs(exact[r * V + i] - g64[i]) / (10 * lim));
      wfe = fmax(wfe, fabs(fast[r * V + i] - exact[r * V + i]) / (10 * (XENT_GRAD_REL * fabs(exact[r * V + i]) + XENT_GRAD_ABS * mx)));
    }
  }
  free(g64);
  double lf = fabs(sf - s64) / fabs(s64), le = fabs(se - s64) / fabs(s64);
  print_message("  xent rows %lld V %d spread %g: loss relative error fast %.2g exact %.2g; gradient error "
                "vs fp64 at %.3g of the tolerance (fast), %.3g of ten times it (exact); fast vs exact %.3g of that\n", (long long)rows, V, spread,
                lf, le, wf, we, wfe);
  assert_true(lf <= XENT_LOSS_REL);
  assert_true(wf <= 1.0);
  assert_true(wfe <= 1.0);
  /* in place: the same bits */
  memcpy(inpl, l, sizeof(float) * (size_t)n);
  assert_int_equal(qg_cpu_xent_fwd_bwd(o, inpl, &si, inpl, tgt, rows, V, 30.0f, gs), QG_OK);
  assert_memory_equal(inpl, fast, sizeof(float) * (size_t)n);
  assert_true(si == sf);
  /* one row at a time: the same bits (rows never depend on each other or on the thread) */
  for (int64_t r = 0; r < rows; r++) {
    double s1;
    assert_int_equal(qg_cpu_xent_fwd_bwd(o, inpl + r * V, &s1, l + r * V, tgt + r, 1, V, 30.0f, gs), QG_OK);
  }
  assert_memory_equal(inpl, fast, sizeof(float) * (size_t)n);
  free(l), free(fast), free(exact), free(inpl), free(tgt);
}

static void test_xent_fast_vs_exact(void **st) {
  (void)st;
  compare_case(37, 1024, 8.0f, 11);  /* the contest vocabulary, trained-model logits */
  compare_case(64, 1024, 0.05f, 12); /* an initial model: logits near 0 */
  compare_case(9, 50, 60.0f, 13);    /* past the cap: tanh saturates */
  compare_case(5, 37, 3.0f, 14);     /* a width that is no multiple of the vector lanes */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_vtanh_dense),
      cmocka_unit_test(test_vtanh_edges),
      cmocka_unit_test(test_xent_fast_vs_exact),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
