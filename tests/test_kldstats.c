/* eval/kldstats: llama.cpp-style KLD / PPL / Δp / same-top statistics, checked against
 * hand-computed values, a slow two-pass long-double computation on random data, merging,
 * the ≤ 10-token rule for uncertainties, input validation, the logits helper and JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "eval/kldstats.h"
#include "io/json_parse.h"
#include "tests/testlib.h"

static void close_rel(double got, double want, double rel, const char *what) {
  double tol = rel * fmax(fabs(want), 1e-300);
  if (!(fabs(got - want) <= tol)) {
    print_message("%s: got %.17g want %.17g (rel tol %g)\n", what, got, want, rel);
    fail();
  }
}

static void close_abs(double got, double want, double tol, const char *what) {
  if (!(fabs(got - want) <= tol)) {
    print_message("%s: got %.17g want %.17g (abs tol %g)\n", what, got, want, tol);
    fail();
  }
}

static qg_kld_token tok(double nb, double nm, double kld, double pb, double pm, int same) {
  qg_kld_token t = {nb, nm, kld, pb, pm, same};
  return t;
}

/* Four tokens, every number worked out by hand. n ≤ 10, so every ± is 0 (llama.cpp's
 * rule), the covariance is 0 and the correlation undefined. */
static void test_hand_small(void **st) {
  (void)st;
  qg_kldstats s;
  qg_kldstats_init(&s, 1);
  const double nb[4] = {1, 2, 3, 4}, nm[4] = {1.5, 2, 2.5, 5}, kl[4] = {0.1, 0.4, 0.2, 0.3};
  const double pb[4] = {0.5, 0.25, 0.125, 0.0625}, pm[4] = {0.5, 0.5, 0, 0.0625};
  const int same[4] = {1, 0, 1, 1};
  for (int i = 0; i < 4; i++)
    assert_int_equal(qg_kldstats_add(&s, &(qg_kld_token){nb[i], nm[i], kl[i], pb[i], pm[i],
                                                         same[i]}), QG_OK);
  qg_kld_summary o;
  assert_int_equal(qg_kldstats_summarize(&s, &o), QG_OK);
  assert_int_equal(o.count, 4);
  close_rel(o.nll_base.value, 2.5, 1e-15, "mean nll base");
  close_rel(o.nll_model.value, 2.75, 1e-15, "mean nll model");
  close_rel(o.ppl_base.value, exp(2.5), 1e-15, "ppl base");
  close_rel(o.ppl_model.value, exp(2.75), 1e-15, "ppl model");
  close_rel(o.ln_ppl_ratio.value, 0.25, 1e-14, "ln ratio");
  close_rel(o.ppl_ratio.value, exp(0.25), 1e-14, "ratio");
  close_rel(o.ppl_diff.value, exp(2.75) - exp(2.5), 1e-14, "ppl diff");
  assert_true(o.nll_base.unc == 0 && o.nll_model.unc == 0 && o.ppl_base.unc == 0);
  assert_true(o.ln_ppl_ratio.unc == 0 && o.ppl_diff.unc == 0 && o.kld.unc == 0);
  assert_true(o.dp.unc == 0 && o.dp_rms.unc == 0);
  assert_true(o.ln_prob_cov == 0);
  assert_true(isnan(o.ln_prob_corr));
  close_rel(o.kld.value, 0.25, 1e-15, "kld mean");
  assert_true(o.kld_min == 0.1 && o.kld_max == 0.4);
  /* sorted KLD 0.1 0.2 0.3 0.4: median at 1.5 -> 0.25; p10 at 0.3 -> 0.13;
   * p99.9 at 2.997 -> 0.3997; p0.1 at 0.003 -> 0.1003 */
  close_rel(o.kld_pct[5], 0.25, 1e-15, "kld median");
  close_rel(o.kld_pct[3], 0.13, 1e-14, "kld p10");
  close_rel(o.kld_pct[10], 0.3997, 1e-14, "kld p99.9");
  close_rel(o.kld_pct[0], 0.1003, 1e-14, "kld p0.1");
  /* Δp = 0, 0.25, -0.125, 0: mean 1/32; sorted -0.125 0 0 0.25; median 0;
   * p75 at 2.25 -> 0.0625; mean Δp² = 0.078125/4 */
  close_rel(o.dp.value, 0.03125, 1e-15, "dp mean");
  assert_true(o.dp_pct[5] == 0.0);
  close_rel(o.dp_pct[6], 0.0625, 1e-15, "dp p75");
  close_rel(o.dp_rms.value, sqrt(0.01953125), 1e-15, "dp rms");
  assert_true(o.dp_min == -0.125 && o.dp_max == 0.25 && o.max_abs_dp == 0.25);
  close_rel(o.same_top.value, 0.75, 1e-15, "same top");
  close_rel(o.same_top.unc, 0.25, 1e-15, "same top unc"); /* sqrt(.75 .25 / 3) */
  qg_kldstats_free(&s);
}

/* Twelve tokens; the expected values come from exact rational arithmetic on the decimal
 * inputs with two-pass formulas (worked out once in Python, printed with %.17g). */
static void test_hand_twelve(void **st) {
  (void)st;
  const double nb[12] = {2.1, 0.3, 5.7, 1.2, 3.3, 0.05, 4.4, 2.2, 1.9, 6.1, 0.8, 3.0};
  const double nm[12] = {2.3, 0.2, 6.1, 1.1, 3.9, 0.07, 4.2, 2.6, 1.8, 6.9, 0.8, 3.4};
  const double kl[12] = {0.02, 0.01, 0.3, 0.005, 0.12, 0.0, 0.07, 0.09, 0.03, 0.5, 0.001, 0.06};
  const int same[12] = {1, 1, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1};
  qg_kld_token t[12];
  for (int i = 0; i < 12; i++) t[i] = tok(nb[i], nm[i], kl[i], exp(-nb[i]), exp(-nm[i]), same[i]);
  qg_kldstats s;
  qg_kldstats_init(&s, 1);
  assert_int_equal(qg_kldstats_add_many(&s, t, 12), QG_OK);
  qg_kld_summary o;
  assert_int_equal(qg_kldstats_summarize(&s, &o), QG_OK);
  const double r = 1e-12;
  close_rel(o.nll_base.value, 2.5874999999999999, r, "mean_b");
  close_rel(o.nll_base.unc, 0.57498764808867453, r, "unc_b");
  close_rel(o.ppl_base.value, 13.296488795032781, r, "ppl_b");
  close_rel(o.ppl_base.unc, 7.6453168200933126, r, "ppl_b unc");
  close_rel(o.nll_model.value, 2.7808333333333333, r, "mean_m");
  close_rel(o.nll_model.unc, 0.63733875956546415, r, "unc_m");
  close_rel(o.ppl_model.value, 16.13245906392152, r, "ppl_m");
  close_rel(o.ln_prob_cov, 0.3640804924242424, r, "cov");
  close_rel(o.ln_prob_corr, 0.99350158398324384, r, "corr");
  close_rel(o.ln_ppl_ratio.value, 0.19333333333333333, r, "ln ratio");
  close_rel(o.ln_ppl_ratio.unc, 0.093008091317396305, 1e-10, "ln ratio unc");
  close_rel(o.ppl_ratio.value, 1.2132871551734909, r, "ratio");
  close_rel(o.ppl_ratio.unc, 0.11284552252260002, 1e-10, "ratio unc");
  close_rel(o.ppl_diff.value, 2.8359702688887385, r, "ppl diff");
  close_rel(o.ppl_diff.unc, 2.8236352896377697, 1e-10, "ppl diff unc");
  close_rel(o.kld.value, 0.10050000000000001, r, "kld");
  close_rel(o.kld.unc, 0.043625732606508115, r, "kld unc");
  const double kp[QG_KLD_NPCT] = {1.1e-05, 0.00011, 0.00055000000000000003, 0.0014000000000000004,
                                  0.0087499999999999991, 0.044999999999999998,
                                  0.097500000000000003, 0.28200000000000003, 0.38999999999999985,
                                  0.47800000000000009, 0.49780000000000013};
  for (int i = 0; i < QG_KLD_NPCT; i++) close_rel(o.kld_pct[i], kp[i], r, qg_kld_pct_name[i]);
  assert_true(o.kld_min == 0.0 && o.kld_max == 0.5);
  close_rel(o.dp.value, 0.001256825536180163, 1e-10, "dp");
  close_rel(o.dp.unc, 0.0087215646949624481, 1e-10, "dp unc");
  close_rel(o.dp_rms.value, 0.028953448990421928, r, "dp rms");
  close_rel(o.dp_rms.unc, 0.0084738412440332027, 1e-10, "dp rms unc");
  const double dpp[QG_KLD_NPCT] = {-0.036371928196203954, -0.034953060630039591,
                                   -0.028646982558197982, -0.021861386536636919,
                                   -0.017189843115268152, -0.0011690900142113808,
                                   0.005971244937794818,  0.030082211507184826,
                                   0.052482919060551317,  0.072826609729121458,
                                   0.077403940129549723};
  for (int i = 0; i < QG_KLD_NPCT; i++) close_rel(o.dp_pct[i], dpp[i], 1e-10, qg_kld_pct_name[i]);
  close_rel(o.dp_min, -0.036529580147999993, 1e-12, "dp min");
  close_rel(o.dp_max, 0.077912532396263945, 1e-12, "dp max");
  close_rel(o.max_abs_dp, 0.077912532396263945, 1e-12, "max |dp|");
  close_rel(o.same_top.value, 0.75, 1e-15, "same");
  close_rel(o.same_top.unc, 0.13055824196677338, 1e-14, "same unc");
  qg_kldstats_free(&s);
}

/* Uncertainties switch on at n = 11 exactly (llama.cpp: count > 10). */
static void test_threshold(void **st) {
  (void)st;
  qg_kldstats s;
  qg_kldstats_init(&s, 0);
  qg_kld_summary o;
  for (int i = 0; i < 11; i++) {
    double x = 1.0 + 0.1 * i;
    assert_int_equal(qg_kldstats_add(&s, &(qg_kld_token){x, x * 1.1, 0.01 * i, exp(-x),
                                                         exp(-1.1 * x), i % 2}), QG_OK);
    assert_int_equal(qg_kldstats_summarize(&s, &o), QG_OK);
    if (i < 10) {
      assert_true(o.nll_base.unc == 0 && o.kld.unc == 0 && o.ln_prob_cov == 0);
      assert_true(o.ln_ppl_ratio.unc == 0);
    } else {
      assert_true(o.nll_base.unc > 0 && o.kld.unc > 0 && o.ln_prob_cov > 0);
      assert_true(o.ln_ppl_ratio.unc > 0);
      close_rel(o.ln_prob_corr, 1.0, 1e-12, "perfectly correlated");
    }
  }
  qg_kldstats_free(&s);
}

/* ---- random data vs a slow two-pass long-double computation ----------------------- */

static double gauss(uint64_t *rs) {
  double u1 = 0.5 * (qg_test_randf(rs) + 1.0), u2 = 0.5 * (qg_test_randf(rs) + 1.0);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void make_tokens(qg_kld_token *t, size_t n, uint64_t seed, double noise) {
  uint64_t rs = seed;
  for (size_t i = 0; i < n; i++) {
    double nb = fabs(3.0 + 2.0 * gauss(&rs));
    double nm = fabs(nb + noise * gauss(&rs) + 0.2 * noise);
    double kld = noise * noise * fabs(gauss(&rs)) * (1.0 + fabs(gauss(&rs)));
    t[i] = tok(nb, nm, kld, exp(-nb), exp(-nm), (qg_test_rand(&rs) % 10) < 8);
  }
}

typedef struct {
  long double mean, unc;
} ld_est;

static ld_est ld_mean_unc(const long double *x, size_t n) {
  long double m = 0, v = 0;
  for (size_t i = 0; i < n; i++) m += x[i];
  m /= n;
  for (size_t i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
  v /= n;
  ld_est e = {m, sqrtl(v / (n - 1))};
  return e;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double slow_pct(const double *sorted, size_t n, double q) {
  long double p = (long double)q * (n - 1);
  size_t i = (size_t)p;
  if (i >= n - 1) return sorted[n - 1];
  p -= i;
  return (double)((1 - p) * sorted[i] + p * sorted[i + 1]);
}

static void check_against_slow(const qg_kld_token *t, size_t n, const qg_kld_summary *o) {
  long double *b = calloc(n, sizeof *b), *m = calloc(n, sizeof *m), *k = calloc(n, sizeof *k);
  long double *dp = calloc(n, sizeof *dp), *dp2 = calloc(n, sizeof *dp2);
  long double *d = calloc(n, sizeof *d);
  double *ks = calloc(n, sizeof *ks), *ds = calloc(n, sizeof *ds);
  assert_non_null(b && m && k && dp && dp2 && d && ks && ds);
  size_t same = 0;
  for (size_t i = 0; i < n; i++) {
    b[i] = t[i].nll_base;
    m[i] = t[i].nll_model;
    d[i] = m[i] - b[i];
    k[i] = t[i].kld;
    dp[i] = (long double)t[i].p_model - t[i].p_base;
    dp2[i] = dp[i] * dp[i];
    ks[i] = t[i].kld;
    ds[i] = t[i].p_model - t[i].p_base;
    same += t[i].same_top != 0;
  }
  ld_est eb = ld_mean_unc(b, n), em = ld_mean_unc(m, n), ek = ld_mean_unc(k, n);
  ld_est ed = ld_mean_unc(dp, n), ed2 = ld_mean_unc(dp2, n), edf = ld_mean_unc(d, n);
  long double cov = 0;
  for (size_t i = 0; i < n; i++) cov += (m[i] - em.mean) * (b[i] - eb.mean);
  cov = cov / n / (n - 1);
  const double r = 1e-10;
  close_rel(o->nll_base.value, (double)eb.mean, 1e-13, "mean_b");
  close_rel(o->nll_base.unc, (double)eb.unc, r, "unc_b");
  close_rel(o->nll_model.value, (double)em.mean, 1e-13, "mean_m");
  close_rel(o->nll_model.unc, (double)em.unc, r, "unc_m");
  close_rel(o->ppl_base.value, (double)expl(eb.mean), 1e-13, "ppl_b");
  close_rel(o->ppl_base.unc, (double)(expl(eb.mean) * eb.unc), r, "ppl_b unc");
  close_rel(o->ppl_model.unc, (double)(expl(em.mean) * em.unc), r, "ppl_m unc");
  close_rel(o->ln_prob_cov, (double)cov, r, "cov");
  close_rel(o->ln_prob_corr, (double)(cov / (em.unc * eb.unc)), r, "corr");
  /* llama.cpp's formula literally, in long double, and the mean of differences agree */
  long double lru = sqrtl(em.unc * em.unc + eb.unc * eb.unc - 2 * cov);
  close_rel(o->ln_ppl_ratio.value, (double)(em.mean - eb.mean), 1e-11, "ln ratio");
  close_rel(o->ln_ppl_ratio.unc, (double)lru, 1e-8, "ln ratio unc (llama form)");
  close_rel(o->ln_ppl_ratio.unc, (double)edf.unc, r, "ln ratio unc (differences)");
  long double ratio = expl(em.mean - eb.mean);
  close_rel(o->ppl_ratio.value, (double)ratio, 1e-11, "ratio");
  close_rel(o->ppl_ratio.unc, (double)(ratio * edf.unc), r, "ratio unc");
  long double pm = expl(em.mean), pb = expl(eb.mean);
  /* llama.cpp's form cancels for near-identical models, even in long double (for the
   * 1e-4-noise case its own Vm + Vb − 2 cov is off by ~1e-9 relative): the tight check
   * uses the identical quantity ab·Vd + (a − b)(a·Vm − b·Vb), Vd from the differences */
  long double lit = pm * pm * em.unc * em.unc + pb * pb * eb.unc * eb.unc - 2 * pm * pb * cov;
  long double alt = pm * pb * edf.unc * edf.unc +
                    (pm - pb) * (pm * em.unc * em.unc - pb * eb.unc * eb.unc);
  close_rel(o->ppl_diff.value, (double)(pm - pb), 1e-10, "ppl diff");
  close_rel(o->ppl_diff.unc, (double)sqrtl(lit), 1e-6, "ppl diff unc (llama form)");
  close_rel(o->ppl_diff.unc, (double)sqrtl(alt), 1e-10, "ppl diff unc");
  close_rel(o->kld.value, (double)ek.mean, 1e-13, "kld");
  close_rel(o->kld.unc, (double)ek.unc, r, "kld unc");
  close_abs(o->dp.value, (double)ed.mean, 1e-15, "dp");
  close_rel(o->dp.unc, (double)ed.unc, r, "dp unc");
  close_rel(o->dp_rms.value, (double)sqrtl(ed2.mean), 1e-13, "rms");
  close_rel(o->dp_rms.unc, (double)(0.5L / sqrtl(ed2.mean) * ed2.unc), r, "rms unc");
  long double f = (long double)same / n;
  close_rel(o->same_top.value, (double)f, 1e-15, "same");
  close_rel(o->same_top.unc, (double)sqrtl(f * (1 - f) / (n - 1)), 1e-14, "same unc");
  qsort(ks, n, sizeof *ks, cmp_d);
  qsort(ds, n, sizeof *ds, cmp_d);
  assert_true(o->kld_min == ks[0] && o->kld_max == ks[n - 1]);
  assert_true(o->dp_min == ds[0] && o->dp_max == ds[n - 1]);
  if (o->has_values) {
    for (int i = 0; i < QG_KLD_NPCT; i++) {
      /* q·(n−1) rounds differently in double and long double: a few ulps */
      close_rel(o->kld_pct[i], slow_pct(ks, n, qg_kld_pct_fraction[i]), 1e-13, "kld pct");
      double want = slow_pct(ds, n, qg_kld_pct_fraction[i]);
      close_abs(o->dp_pct[i], want, 1e-13 * fabs(want) + 1e-17, "dp pct");
    }
    /* the median is llama.cpp's: the middle value, or the mean of the two middle ones */
    double med = n % 2 ? ks[n / 2] : 0.5 * (ks[n / 2] + ks[n / 2 - 1]);
    close_rel(o->kld_pct[5], med, 1e-15, "kld median");
  }
  free(b), free(m), free(k), free(dp), free(dp2), free(d), free(ks), free(ds);
}

static void test_random_vs_slow(void **st) {
  (void)st;
  const size_t ns[3] = {11, 4001, 50000};
  const double noise[3] = {0.3, 0.05, 1e-4}; /* the last: nearly identical models */
  for (int c = 0; c < 3; c++) {
    size_t n = ns[c];
    qg_kld_token *t = malloc(n * sizeof *t);
    assert_non_null(t);
    make_tokens(t, n, 1000 + (uint64_t)c, noise[c]);
    qg_kldstats s;
    qg_kldstats_init(&s, 1);
    for (size_t i = 0; i < n; i++) assert_int_equal(qg_kldstats_add(&s, &t[i]), QG_OK);
    qg_kld_summary o;
    assert_int_equal(qg_kldstats_summarize(&s, &o), QG_OK);
    check_against_slow(t, n, &o);
    qg_kldstats_free(&s);
    free(t);
  }
}

/* Merging parts (one empty) gives the same summary as adding everything at once; with or
 * without kept values the shared statistics are identical. */
/* The percentiles come from a partial selection; they must equal those of a full sort,
 * bit for bit, on patterns that trouble quickselects: sorted, reversed, all equal, two
 * values, few distinct values, organ pipe, random; sizes around every small threshold. */
static void test_percentiles_select(void **st) {
  (void)st;
  const size_t sizes[] = {1, 2, 3, 5, 10, 11, 16, 17, 18, 33, 100, 1001, 4096, 100003};
  uint64_t rs = 31337;
  for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
    size_t n = sizes[si];
    double *v = malloc(n * sizeof *v), *sorted = malloc(n * sizeof *sorted);
    qg_kld_token *t = malloc(n * sizeof *t);
    assert_non_null(v && sorted && t);
    for (int pat = 0; pat < 7; pat++) {
      for (size_t i = 0; i < n; i++) {
        double x;
        switch (pat) {
          case 0: x = (double)i; break;
          case 1: x = (double)(n - i); break;
          case 2: x = 0.5; break;
          case 3: x = (double)(i % 2); break;
          case 4: x = (double)(qg_test_rand(&rs) % 5) * 0.25; break;
          case 5: x = (double)(i < n / 2 ? i : n - i); break;
          default: x = qg_test_randf(&rs); break;
        }
        v[i] = x;
        /* kld = x, Δp = −x (p_model − p_base) */
        t[i] = tok(1.0, 1.0, x, 0.5 + x, 0.5, 1);
      }
      qg_kldstats s;
      qg_kldstats_init(&s, 1);
      assert_int_equal(qg_kldstats_add_many(&s, t, n), QG_OK);
      qg_kld_summary o;
      assert_int_equal(qg_kldstats_summarize(&s, &o), QG_OK);
      memcpy(sorted, v, n * sizeof *v);
      qsort(sorted, n, sizeof *sorted, cmp_d);
      for (int i = 0; i < QG_KLD_NPCT; i++) {
        double q = qg_kld_pct_fraction[i], p = q * (double)(n - 1);
        size_t k = (size_t)p;
        double want = k >= n - 1 ? sorted[n - 1]
                                 : (1.0 - (p - (double)k)) * sorted[k] +
                                       (p - (double)k) * sorted[k + 1];
        if (o.kld_pct[i] != want) {
          print_message("n %zu pattern %d %s: got %.17g want %.17g\n", n, pat,
                        qg_kld_pct_name[i], o.kld_pct[i], want);
          fail();
        }
        /* Δp = 0.5 − (0.5 + x): the mirror image, up to rounding (0.5 + x, and q·(n−1) vs
         * (1 − q)·(n−1) are not exactly complementary) */
        close_abs(o.dp_pct[QG_KLD_NPCT - 1 - i], -want, 1e-12 * fmax(1.0, fabs(want)),
                  "mirrored dp pct");
      }
      assert_true(o.kld_min == sorted[0] && o.kld_max == sorted[n - 1]);
      qg_kldstats_free(&s);
    }
    free(v);
    free(sorted);
    free(t);
  }
}

static void test_merge(void **st) {
  (void)st;
  const size_t n = 6000;
  qg_kld_token *t = malloc(n * sizeof *t);
  assert_non_null(t);
  make_tokens(t, n, 77, 0.2);
  qg_kldstats all, parts[3], total, lean;
  qg_kldstats_init(&all, 1);
  qg_kldstats_init(&total, 1);
  qg_kldstats_init(&lean, 0);
  assert_int_equal(qg_kldstats_add_many(&all, t, n), QG_OK);
  assert_int_equal(qg_kldstats_add_many(&lean, t, n), QG_OK);
  const size_t cut[4] = {0, 0, 1700, n}; /* parts[0] is empty */
  for (int p = 0; p < 3; p++) {
    qg_kldstats_init(&parts[p], 1);
    assert_int_equal(qg_kldstats_add_many(&parts[p], t + cut[p], cut[p + 1] - cut[p]), QG_OK);
  }
  /* merge in a different order than the data: 2, 0, 1 */
  assert_int_equal(qg_kldstats_merge(&total, &parts[2]), QG_OK);
  assert_int_equal(qg_kldstats_merge(&total, &parts[0]), QG_OK);
  assert_int_equal(qg_kldstats_merge(&total, &parts[1]), QG_OK);
  assert_int_equal(total.count, n);
  assert_int_equal(qg_kldstats_merge(&total, &total), QG_ERR_INPUT);
  assert_int_equal(qg_kldstats_merge(&lean, &parts[1]), QG_ERR_INPUT);
  qg_kld_summary a, b, c;
  assert_int_equal(qg_kldstats_summarize(&all, &a), QG_OK);
  assert_int_equal(qg_kldstats_summarize(&total, &b), QG_OK);
  assert_int_equal(qg_kldstats_summarize(&lean, &c), QG_OK);
  check_against_slow(t, n, &b);
  const double r = 1e-14;
  close_rel(b.nll_base.value, a.nll_base.value, r, "merge mean_b");
  close_rel(b.nll_model.unc, a.nll_model.unc, 1e-12, "merge unc_m");
  close_rel(b.ln_prob_cov, a.ln_prob_cov, 1e-12, "merge cov");
  close_rel(b.ln_ppl_ratio.unc, a.ln_ppl_ratio.unc, 1e-12, "merge ratio unc");
  close_rel(b.kld.value, a.kld.value, r, "merge kld");
  close_rel(b.dp_rms.value, a.dp_rms.value, r, "merge rms");
  assert_true(b.same_top.value == a.same_top.value);
  for (int i = 0; i < QG_KLD_NPCT; i++) {
    assert_true(b.kld_pct[i] == a.kld_pct[i]); /* same multiset, same sorted order */
    assert_true(b.dp_pct[i] == a.dp_pct[i]);
    assert_true(isnan(c.kld_pct[i]) && isnan(c.dp_pct[i]));
  }
  assert_false(c.has_values);
  assert_true(c.nll_base.value == a.nll_base.value && c.kld.unc == a.kld.unc);
  assert_true(c.kld_max == a.kld_max && c.max_abs_dp == a.max_abs_dp);
  assert_null(lean.kld_values);
  /* summarize sorted the kept values; adding more afterwards still works */
  assert_int_equal(qg_kldstats_add(&all, &t[0]), QG_OK);
  assert_int_equal(qg_kldstats_summarize(&all, &a), QG_OK);
  assert_int_equal(a.count, n + 1);
  for (int p = 0; p < 3; p++) qg_kldstats_free(&parts[p]);
  qg_kldstats_free(&all);
  qg_kldstats_free(&total);
  qg_kldstats_free(&lean);
  free(t);
}

static void test_errors(void **st) {
  (void)st;
  qg_kldstats s;
  qg_kldstats_init(&s, 1);
  qg_kld_summary o;
  assert_int_equal(qg_kldstats_summarize(&s, &o), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "no tokens"));
  assert_int_equal(qg_kldstats_add(&s, &(qg_kld_token){1, NAN, 0, 0.3, 0.3, 1}), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "nll_model"));
  assert_int_equal(qg_kldstats_add(&s, &(qg_kld_token){1, 1, INFINITY, 0.3, 0.3, 1}),
                   QG_ERR_INPUT);
  assert_int_equal(s.count, 0);
  qg_kld_token t[3] = {tok(1, 1, 0, 0.3, 0.3, 1), tok(2, 2, 0, 0.1, 0.1, 1),
                       tok(1, 1, 0, NAN, 0.3, 1)};
  assert_int_equal(qg_kldstats_add_many(&s, t, 3), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "record 2 of 3: p_base"));
  assert_int_equal(s.count, 0); /* all or nothing */
  assert_int_equal(qg_kldstats_add_many(&s, t, 2), QG_OK);
  assert_int_equal(qg_kldstats_add_many(&s, t, 0), QG_OK);
  assert_int_equal(s.count, 2);
  /* one token: every percentile is that token's value */
  qg_kldstats one;
  qg_kldstats_init(&one, 1);
  assert_int_equal(qg_kldstats_add(&one, &(qg_kld_token){2, 3, 0.7, 0.2, 0.1, 0}), QG_OK);
  assert_int_equal(qg_kldstats_summarize(&one, &o), QG_OK);
  for (int i = 0; i < QG_KLD_NPCT; i++) assert_true(o.kld_pct[i] == 0.7);
  assert_true(o.same_top.value == 0 && o.same_top.unc == 0);
  qg_kldstats_free(&one);
  qg_kldstats_free(&s);
}

/* ---- the logits helper ------------------------------------------------------------- */

static void test_from_logits(void **st) {
  (void)st;
  enum { V = 1024 };
  float *a = malloc(V * sizeof *a), *b = malloc(V * sizeof *b);
  assert_non_null(a && b);
  uint64_t rs = 5;
  for (int v = 0; v < V; v++) {
    a[v] = 30.0f * tanhf(4.0f * qg_test_randf(&rs));
    b[v] = a[v] + 0.3f * qg_test_randf(&rs);
  }
  qg_kld_token t;
  assert_int_equal(qg_kld_token_from_logits(a, b, V, 17, &t), QG_OK);
  /* direct, in long double */
  long double mb = a[0], mm = b[0];
  int ib = 0, im = 0;
  for (int v = 1; v < V; v++) {
    if (a[v] > mb) mb = a[v], ib = v;
    if (b[v] > mm) mm = b[v], im = v;
  }
  long double zb = 0, zm = 0;
  for (int v = 0; v < V; v++) zb += expl(a[v] - mb), zm += expl(b[v] - mm);
  long double lb = mb + logl(zb), lm = mm + logl(zm), kld = 0;
  for (int v = 0; v < V; v++) kld += expl(a[v] - lb) * ((a[v] - lb) - (b[v] - lm));
  close_rel(t.nll_base, (double)(lb - a[17]), 1e-13, "nll base");
  close_rel(t.nll_model, (double)(lm - b[17]), 1e-13, "nll model");
  close_rel(t.p_base, (double)expl(a[17] - lb), 1e-12, "p base");
  close_rel(t.p_model, (double)expl(b[17] - lm), 1e-12, "p model");
  close_rel(t.kld, (double)kld, 1e-9, "kld");
  assert_true(t.kld > 0);
  assert_int_equal(t.same_top, ib == im);

  /* identical logits: exactly zero KLD, same top, equal probabilities */
  assert_int_equal(qg_kld_token_from_logits(a, a, V, 3, &t), QG_OK);
  assert_true(t.kld == 0.0 && t.same_top == 1 && t.p_base == t.p_model);
  /* top-1 on ties is the first maximum: base ties at 0 and 1, model peaks at 1 */
  float tb[3] = {2, 2, 0}, tm[3] = {1, 2, 0};
  assert_int_equal(qg_kld_token_from_logits(tb, tm, 3, 0, &t), QG_OK);
  assert_int_equal(t.same_top, 0);
  /* a constant shift changes nothing (exact in float for these values) */
  float sb[3] = {0.5f, -1.25f, 2.0f}, sm[3] = {3.5f, 1.75f, 5.0f};
  assert_int_equal(qg_kld_token_from_logits(sb, sm, 3, 1, &t), QG_OK);
  close_abs(t.kld, 0.0, 1e-15, "shifted kld");
  close_rel(t.nll_base, t.nll_model, 1e-15, "shifted nll");
  assert_int_equal(t.same_top, 1);

  assert_int_equal(qg_kld_token_from_logits(a, b, V, V, &t), QG_ERR_INPUT);
  assert_int_equal(qg_kld_token_from_logits(a, b, V, -1, &t), QG_ERR_INPUT);
  assert_int_equal(qg_kld_token_from_logits(a, b, 0, 0, &t), QG_ERR_INPUT);
  b[100] = INFINITY;
  assert_int_equal(qg_kld_token_from_logits(a, b, V, 0, &t), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "model logit 100"));
  free(a);
  free(b);
}

/* ---- JSON -------------------------------------------------------------------------- */

static double jnum(const char *text, const qg_jnode *n) {
  assert_non_null(n);
  assert_int_equal(n->type, QG_JNUM);
  return strtod(text + n->offset, NULL);
}

static void test_json(void **st) {
  (void)st;
  const size_t n = 300;
  qg_kld_token *t = malloc(n * sizeof *t);
  assert_non_null(t);
  make_tokens(t, n, 9, 0.1);
  for (int keep = 0; keep <= 1; keep++) {
    qg_kldstats s;
    qg_kldstats_init(&s, keep);
    assert_int_equal(qg_kldstats_add_many(&s, t, n), QG_OK);
    qg_kld_summary o;
    assert_int_equal(qg_kldstats_summarize(&s, &o), QG_OK);
    qg_buf b;
    qg_buf_init(&b);
    qg_json j;
    qg_json_init(&j, &b, keep); /* pretty for one of the two */
    qg_kld_summary_json(&j, &o);
    qg_buf_byte(&b, 0);
    assert_int_equal(qg_buf_status(&b), QG_OK);
    const char *text = (const char *)b.p;
    qg_jdoc doc;
    const qg_jnode *root;
    assert_int_equal(qg_jparse(text, strlen(text), NULL, &doc, &root), QG_OK);
    const qg_jnode *dup;
    assert_int_equal(qg_jobj_duplicate(root, &dup), QG_OK);
    assert_null(dup);
    const qg_jnode *tokens = qg_jobj_get(root, "tokens");
    assert_true(tokens && tokens->is_int && tokens->i == (int64_t)n);
    const char *ests[] = {"mean_nll_base", "mean_nll_model", "ppl_base", "ppl_model",
                          "ln_ppl_ratio", "ppl_ratio", "ppl_diff", "same_top"};
    for (size_t e = 0; e < sizeof ests / sizeof *ests; e++) {
      const qg_jnode *x = qg_jobj_get(root, ests[e]);
      assert_true(x && x->type == QG_JOBJ && x->len == 2);
      jnum(text, qg_jobj_get(x, "value"));
      jnum(text, qg_jobj_get(x, "unc"));
    }
    assert_true(jnum(text, qg_jobj_get(qg_jobj_get(root, "ppl_ratio"), "value")) ==
                o.ppl_ratio.value); /* %.17g round-trips */
    assert_true(jnum(text, qg_jobj_get(root, "ln_prob_corr")) == o.ln_prob_corr);
    const qg_jnode *kld = qg_jobj_get(root, "kld"), *dp = qg_jobj_get(root, "delta_p");
    assert_true(kld && dp && kld->type == QG_JOBJ && dp->type == QG_JOBJ);
    assert_true(jnum(text, qg_jobj_get(kld, "mean")) == o.kld.value);
    assert_true(jnum(text, qg_jobj_get(kld, "max")) == o.kld_max);
    assert_true(jnum(text, qg_jobj_get(dp, "rms")) == o.dp_rms.value);
    assert_true(jnum(text, qg_jobj_get(dp, "max_abs")) == o.max_abs_dp);
    const qg_jnode *kp = qg_jobj_get(kld, "percentiles"), *dpp = qg_jobj_get(dp, "percentiles");
    assert_non_null(kp);
    assert_non_null(dpp);
    if (!keep) {
      assert_int_equal(kp->type, QG_JNULL);
      assert_int_equal(dpp->type, QG_JNULL);
    } else {
      assert_true(kp->type == QG_JOBJ && kp->len == QG_KLD_NPCT);
      for (int i = 0; i < QG_KLD_NPCT; i++) {
        assert_true(jnum(text, qg_jobj_get(kp, qg_kld_pct_name[i])) == o.kld_pct[i]);
        assert_true(jnum(text, qg_jobj_get(dpp, qg_kld_pct_name[i])) == o.dp_pct[i]);
      }
    }
    qg_jdoc_free(&doc);
    qg_buf_free(&b);
    qg_kldstats_free(&s);
  }
  /* undefined correlation (n ≤ 10) is written as null */
  qg_kldstats s;
  qg_kldstats_init(&s, 1);
  assert_int_equal(qg_kldstats_add_many(&s, t, 5), QG_OK);
  qg_kld_summary o;
  assert_int_equal(qg_kldstats_summarize(&s, &o), QG_OK);
  qg_buf b;
  qg_buf_init(&b);
  qg_json j;
  qg_json_init(&j, &b, 0);
  qg_kld_summary_json(&j, &o);
  qg_buf_byte(&b, 0);
  assert_non_null(strstr((const char *)b.p, "\"ln_prob_corr\":null"));
  qg_buf_free(&b);
  qg_kldstats_free(&s);
  free(t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hand_small),  cmocka_unit_test(test_hand_twelve),
      cmocka_unit_test(test_threshold),   cmocka_unit_test(test_random_vs_slow),
      cmocka_unit_test(test_percentiles_select),
      cmocka_unit_test(test_merge),       cmocka_unit_test(test_errors),
      cmocka_unit_test(test_from_logits), cmocka_unit_test(test_json),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
