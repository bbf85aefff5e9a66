/* Paired block bootstrap, Holm correction, one-sided t-test and verdict rules (see
 * stats.h for the contract).
 *
 * Resampling stream: one splitmix64 sequence with initial state opts.seed. Replicate b
 * (b = 0, 1, ...) draws n_windows window indices in turn, each from the next output x not
 * below 2^64 mod n_windows (smaller ones are skipped), as x mod n_windows; every index is
 * exactly uniform, and the indices depend only on the seed and n_windows, never on the
 * data, so metrics resampled with the same seed use the same windows.
 *
 * Percentiles: type 7 of Hyndman & Fan (numpy's default): for sorted x_0 <= ... <= x_{B-1}
 * and level q, h = q (B − 1), value = x_floor(h) + (h − floor(h)) (x_floor(h)+1 − x_floor(h)). */
#include "lab/stats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define QG_BOOT_DEFAULT_RESAMPLES 2000

/* ---- random indices ------------------------------------------------------------------ */

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* threshold = 2^64 mod range = (0 − range) mod range, computed once per stream */
static size_t uniform_index(uint64_t *state, uint64_t range, uint64_t threshold) {
  uint64_t x;
  do x = splitmix64(state);
  while (x < threshold);
  return (size_t)(x % range);
}

/* ---- validation and per-window sums -------------------------------------------------- */

typedef struct {
  double *num, *den; /* per-window sums */
  double total_num, total_den;
  int resamples;
} boot_prep;

static void prep_free(boot_prep *p) {
  free(p->num);
  free(p->den);
  p->num = p->den = NULL;
}

static qg_status prep(const qg_boot_data *d, const qg_boot_opts *o, boot_prep *p) {
  memset(p, 0, sizeof *p);
  if (!d || !o) return qg_fail(QG_ERR_INPUT, "bootstrap: missing data or options");
  if (d->n_windows == 0) return qg_fail(QG_ERR_INPUT, "bootstrap: no windows");
  if (!d->win_start) return qg_fail(QG_ERR_INPUT, "bootstrap: no window offsets");
  if (d->n > 0 && !d->num) return qg_fail(QG_ERR_INPUT, "bootstrap: no values");
  if (o->resamples < 0 || o->resamples == 1)
    return qg_fail(QG_ERR_INPUT, "bootstrap: resamples = %d (need >= 2, or 0 for %d)",
                   o->resamples, QG_BOOT_DEFAULT_RESAMPLES);
  /* written as a negation so that NaN is rejected too */
  if (!(o->alpha > 0 && o->alpha < 1))
    return qg_fail(QG_ERR_INPUT, "bootstrap: alpha = %g outside (0, 1)", o->alpha);
  if (!(o->margin >= 0) || !isfinite(o->margin))
    return qg_fail(QG_ERR_INPUT, "bootstrap: margin = %g (must be finite and >= 0)", o->margin);
  if (o->expect < -1 || o->expect > 1)
    return qg_fail(QG_ERR_INPUT, "bootstrap: expect = %d (must be -1, 0 or +1)", o->expect);
  if (d->win_start[0] != 0)
    return qg_fail(QG_ERR_INPUT, "bootstrap: window offsets start at %zu, not 0", d->win_start[0]);
  for (size_t w = 0; w < d->n_windows; w++)
    if (d->win_start[w + 1] <= d->win_start[w])
      return qg_fail(QG_ERR_INPUT, "bootstrap: window offsets not increasing at window %zu", w);
  if (d->win_start[d->n_windows] != d->n)
    return qg_fail(QG_ERR_INPUT, "bootstrap: window offsets end at %zu, but there are %zu tokens",
                   d->win_start[d->n_windows], d->n);
  for (size_t i = 0; i < d->n; i++)
    if (!isfinite(d->num[i]) || (d->den && !isfinite(d->den[i])))
      return qg_fail(QG_ERR_INPUT, "bootstrap: non-finite value at token %zu", i);

  p->resamples = o->resamples ? o->resamples : QG_BOOT_DEFAULT_RESAMPLES;
  p->num = malloc(d->n_windows * sizeof *p->num);
  p->den = malloc(d->n_windows * sizeof *p->den);
  if (!p->num || !p->den) {
    prep_free(p);
    return qg_fail(QG_ERR_NOMEM, "bootstrap: out of memory for %zu windows", d->n_windows);
  }
  /* long double accumulators: a difference metric sums many values of both signs */
  long double tn = 0, td = 0;
  for (size_t w = 0; w < d->n_windows; w++) {
    long double sn = 0, sd = 0;
    for (size_t i = d->win_start[w]; i < d->win_start[w + 1]; i++) {
      sn += d->num[i];
      sd += d->den ? d->den[i] : 1.0;
    }
    p->num[w] = (double)sn;
    p->den[w] = (double)sd;
    tn += sn;
    td += sd;
    /* a resample may consist of one window repeated, so each must have a usable Σ den */
    if (!(sd > 0)) {
      prep_free(p);
      return qg_fail(QG_ERR_INPUT, "bootstrap: window %zu has sum of den = %g (must be > 0)", w,
                     (double)sd);
    }
  }
  p->total_num = (double)tn;
  p->total_den = (double)td;
  if (!(p->total_den > 0) || !isfinite(p->total_den) || !isfinite(p->total_num)) {
    prep_free(p);
    return qg_fail(QG_ERR_INPUT, "bootstrap: sum of den = %g, sum of num = %g", p->total_den,
                   p->total_num);
  }
  return QG_OK;
}

static void draw_replicates(const boot_prep *p, size_t n_windows, uint64_t seed, double *out) {
  uint64_t state = seed, threshold = (0 - (uint64_t)n_windows) % n_windows;
  for (int b = 0; b < p->resamples; b++) {
    long double sn = 0, sd = 0;
    for (size_t k = 0; k < n_windows; k++) {
      size_t w = uniform_index(&state, n_windows, threshold);
      sn += p->num[w];
      sd += p->den[w];
    }
    out[b] = (double)(sn / sd);
  }
}

qg_status qg_boot_replicates(const qg_boot_data *d, const qg_boot_opts *o, double *out) {
  boot_prep p;
  QG_TRY(prep(d, o, &p));
  if (!out) {
    prep_free(&p);
    return qg_fail(QG_ERR_INPUT, "bootstrap: no output buffer");
  }
  draw_replicates(&p, d->n_windows, o->seed, out);
  prep_free(&p);
  return QG_OK;
}

/* ---- summaries ----------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Type-7 percentile of sorted x[0..n-1]. */
static double percentile_sorted(const double *x, int n, double q) {
  double h = q * (n - 1);
  int i = (int)floor(h);
  if (i < 0) return x[0];
  if (i >= n - 1) return x[n - 1];
  return x[i] + (h - i) * (x[i + 1] - x[i]);
}

double qg_norm_quantile(double p) {
  if (!(p > 0 && p < 1)) return p == 0 ? -INFINITY : p == 1 ? INFINITY : NAN;
  /* the upper half by symmetry: 1 − p is exact for p >= 0.5, and the refinement below is
   * accurate only in the lower tail (Φ near 1 would lose the digits that matter) */
  if (p > 0.5) return -qg_norm_quantile(1 - p);
  /* Acklam's rational approximation (relative error < 1.2e-9) ... */
  static const double a[6] = {-3.969683028665376e+01, 2.209460984245205e+02,
                              -2.759285104469687e+02, 1.383577518672690e+02,
                              -3.066479806614716e+01, 2.506628277459239e+00};
  static const double b[5] = {-5.447609879822406e+01, 1.615858368580409e+02,
                              -1.556989798598866e+02, 6.680131188771972e+01,
                              -1.328068155288572e+01};
  static const double c[6] = {-7.784894002430293e-03, -3.223964580411365e-01,
                              -2.400758277161838e+00, -2.549732539343734e+00,
                              4.374664141464968e+00,  2.938163982698783e+00};
  static const double d[4] = {7.784695709041462e-03, 3.224671290700398e-01,
                              2.445134137142996e+00, 3.754408661907416e+00};
  const double p_low = 0.02425;
  double x;
  if (p < p_low) {
    double q = sqrt(-2 * log(p));
    x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
        ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  } else {
    double q = p - 0.5, r = q * q;
    x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
  }
  /* ... refined by one Halley step on Φ(x) − p (erfc keeps the tails accurate), which
   * brings it to about machine precision. */
  double e = 0.5 * erfc(-x / sqrt(2.0)) - p;
  double u = e * sqrt(2 * 3.14159265358979323846) * exp(x * x / 2);
  return x - u / (1 + x * u / 2);
}

qg_status qg_boot_ratio(const qg_boot_data *d, const qg_boot_opts *o, qg_boot_result *out) {
  if (!out) return qg_fail(QG_ERR_INPUT, "bootstrap: no result");
  boot_prep p;
  QG_TRY(prep(d, o, &p));
  int B = p.resamples;
  double *rep = malloc((size_t)B * sizeof *rep);
  if (!rep) {
    prep_free(&p);
    return qg_fail(QG_ERR_NOMEM, "bootstrap: out of memory for %d replicates", B);
  }
  draw_replicates(&p, d->n_windows, o->seed, rep);

  qg_boot_result r;
  memset(&r, 0, sizeof r);
  r.resamples = B;
  r.seed = o->seed;
  r.n_tokens = d->n;
  r.n_windows = d->n_windows;
  r.estimate = p.total_num / p.total_den;

  /* one-sided quantities on s = expect · statistic */
  r.p_one_sided = r.frac_expected = NAN;
  long double sum = 0;
  for (int b = 0; b < B; b++) sum += rep[b];
  double mean = (double)(sum / B);
  if (o->expect != 0) {
    double s_hat = o->expect * r.estimate, s_mean = o->expect * mean;
    int c = 0, above = 0;
    for (int b = 0; b < B; b++) {
      double s = o->expect * rep[b];
      c += s - s_mean >= s_hat - o->margin;
      above += s > o->margin;
    }
    r.p_one_sided = (c + 1.0) / (B + 1.0);
    r.frac_expected = (double)above / B;
  }
  long double ss = 0;
  for (int b = 0; b < B; b++) ss += (rep[b] - (long double)mean) * (rep[b] - (long double)mean);
  r.se_boot = sqrt((double)(ss / (B - 1)));

  qsort(rep, (size_t)B, sizeof *rep, cmp_double);
  r.lo = percentile_sorted(rep, B, o->alpha / 2);
  r.hi = percentile_sorted(rep, B, 1 - o->alpha / 2);
  free(rep);

  /* delta method for the ratio, tokens treated as independent */
  if (d->n >= 2) {
    long double sr = 0;
    for (size_t i = 0; i < d->n; i++) {
      double resid = d->num[i] - r.estimate * (d->den ? d->den[i] : 1.0);
      sr += (long double)resid * resid;
    }
    r.se_iid = sqrt((double)sr) / p.total_den * sqrt((double)d->n / (double)(d->n - 1));
  } else {
    r.se_iid = NAN;
  }
  double z = qg_norm_quantile(1 - o->alpha / 2);
  r.iid_lo = r.estimate - z * r.se_iid;
  r.iid_hi = r.estimate + z * r.se_iid;
  double iid_width = r.iid_hi - r.iid_lo;
  r.inflation = iid_width > 0 ? (r.hi - r.lo) / iid_width : NAN;
  prep_free(&p);
  *out = r;
  return QG_OK;
}

/* ---- multiple testing ---------------------------------------------------------------- */

void qg_holm_adjust(const double *p, int m, double *adj) {
  /* O(m²) without allocation (m is the number of hypotheses of one experiment). NaN
   * entries stay NaN and do not count in m, as R's p.adjust drops NA. */
  int valid = 0;
  for (int i = 0; i < m; i++) valid += !isnan(p[i]);
  /* first pass: min(1, (m − rank) p) with the 0-based ascending rank, ties broken by
   * position */
  for (int i = 0; i < m; i++) {
    if (isnan(p[i])) {
      adj[i] = NAN;
      continue;
    }
    int rank = 0;
    for (int k = 0; k < m; k++)
      if (!isnan(p[k]) && (p[k] < p[i] || (p[k] == p[i] && k < i))) rank++;
    adj[i] = fmin(1.0, (valid - rank) * p[i]);
  }
  /* second pass: the step-down running maximum, adj[i] = max over p[j] <= p[i] of the
   * first-pass values. Tied p[j] of higher rank have smaller first-pass values, so
   * including them changes nothing; updating in place is safe because an updated adj[j]
   * is a maximum over p values <= p[j], all of which every later i with p[j] <= p[i]
   * includes anyway. */
  for (int i = 0; i < m; i++) {
    if (isnan(p[i])) continue;
    double best = adj[i];
    for (int j = 0; j < m; j++)
      if (!isnan(p[j]) && p[j] <= p[i] && adj[j] > best) best = adj[j];
    adj[i] = best;
  }
}

/* ---- Student t ----------------------------------------------------------------------- */

/* Continued fraction of the incomplete beta function (modified Lentz), as in Numerical
 * Recipes' betacf. */
static double beta_cf(double a, double b, double x) {
  const double tiny = 1e-300, eps = 1e-16;
  double qab = a + b, qap = a + 1, qam = a - 1;
  double c = 1, d = 1 - qab * x / qap;
  if (fabs(d) < tiny) d = tiny;
  d = 1 / d;
  double h = d;
  for (int m = 1; m <= 1000; m++) {
    int m2 = 2 * m;
    double aa = m * (b - m) * x / ((qam + m2) * (a + m2));
    d = 1 + aa * d;
    if (fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (fabs(c) < tiny) c = tiny;
    d = 1 / d;
    h *= d * c;
    aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
    d = 1 + aa * d;
    if (fabs(d) < tiny) d = tiny;
    c = 1 + aa / c;
    if (fabs(c) < tiny) c = tiny;
    d = 1 / d;
    double del = d * c;
    h *= del;
    if (fabs(del - 1) < eps) break;
  }
  return h;
}

/* Regularized incomplete beta I_x(a, b). */
static double beta_inc(double a, double b, double x) {
  if (x <= 0) return 0;
  if (x >= 1) return 1;
  double front = exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x));
  /* the continued fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry
   * I_x(a, b) = 1 − I_{1−x}(b, a) beyond */
  if (x < (a + 1) / (a + b + 2)) return front * beta_cf(a, b, x) / a;
  return 1 - front * beta_cf(b, a, 1 - x) / b;
}

/* P(T > t) for Student t with df degrees of freedom. */
static double student_t_sf(double t, double df) {
  double tail = 0.5 * beta_inc(df / 2, 0.5, df / (df + t * t)); /* P(T > |t|) */
  return t >= 0 ? tail : 1 - tail;
}

double qg_ttest_one_sided(const double *x, int k, int expect, double margin) {
  if (!x || k < 2 || (expect != 1 && expect != -1) || !isfinite(margin)) return NAN;
  long double sum = 0;
  for (int i = 0; i < k; i++) {
    if (!isfinite(x[i])) return NAN;
    sum += x[i];
  }
  double mean = (double)(sum / k);
  long double ss = 0;
  for (int i = 0; i < k; i++) ss += ((long double)x[i] - mean) * ((long double)x[i] - mean);
  double var = (double)(ss / (k - 1));
  if (!(var > 0)) return NAN;
  double t = (expect * mean - margin) / sqrt(var / k);
  return student_t_sf(t, k - 1);
}

/* ---- verdicts ------------------------------------------------------------------------ */

const char *qg_verdict_name(qg_verdict v) {
  switch (v) {
    case QG_VERDICT_INCONCLUSIVE: return "inconclusive";
    case QG_VERDICT_SUCCESS: return "success";
    case QG_VERDICT_FAILURE: return "failure";
  }
  return "invalid";
}

qg_verdict qg_verdict_one(double lo, double hi, int expect, double margin, double p_adj,
                          double alpha) {
  if (expect != 1 && expect != -1) return QG_VERDICT_INCONCLUSIVE;
  double s_lo = expect > 0 ? lo : -hi, s_hi = expect > 0 ? hi : -lo;
  if (s_lo > margin && p_adj <= alpha) return QG_VERDICT_SUCCESS;
  if (s_hi < 0 || (margin > 0 && s_lo > -margin && s_hi < margin)) return QG_VERDICT_FAILURE;
  return QG_VERDICT_INCONCLUSIVE;
}

qg_verdict qg_verdict_combine(const qg_verdict *v, int n, int *agree) {
  int succ = 0, fail = 0, inc = 0;
  for (int i = 0; i < n; i++) {
    succ += v[i] == QG_VERDICT_SUCCESS;
    fail += v[i] == QG_VERDICT_FAILURE;
    inc += v[i] == QG_VERDICT_INCONCLUSIVE;
  }
  qg_verdict r = QG_VERDICT_INCONCLUSIVE;
  int count = inc;
  if (n > 0 && succ == n) r = QG_VERDICT_SUCCESS, count = succ;
  else if (n > 0 && fail == n) r = QG_VERDICT_FAILURE, count = fail;
  if (agree) *agree = count;
  return r;
}

qg_verdict qg_verdict_all(const qg_verdict *v, int n) {
  int succ = 0;
  for (int i = 0; i < n; i++) {
    if (v[i] == QG_VERDICT_FAILURE) return QG_VERDICT_FAILURE;
    succ += v[i] == QG_VERDICT_SUCCESS;
  }
  return n > 0 && succ == n ? QG_VERDICT_SUCCESS : QG_VERDICT_INCONCLUSIVE;
}
