/* Lloyd-Max codebooks for N(0,1) by Lloyd iteration on the exact density. */
#include "quant/lloydmax.h"

#include <math.h>
#include <pthread.h>
#include <string.h>

double qg_norm_pdf(double x) { return 0.39894228040143267794 * exp(-0.5 * x * x); }

/* erfc keeps relative accuracy in the lower tail, where 1 - Phi would cancel. */
double qg_norm_cdf(double x) { return 0.5 * erfc(-x * 0.70710678118654752440); }

/* Probability of (a, b) under N(0,1), computed on the side of 0 where it does not cancel. */
static double cell_prob(double a, double b) {
  if (a >= 0) return qg_norm_cdf(-a) - qg_norm_cdf(-b);
  return qg_norm_cdf(b) - qg_norm_cdf(a);
}

/* x * phi(x), zero at +-inf. */
static double xpdf(double x) { return isinf(x) ? 0.0 : x * qg_norm_pdf(x); }

/* Integral of (x - c)^2 phi(x) over (a, b): with m0 = P, m1 = phi(a) - phi(b) and
 * m2 = P + a phi(a) - b phi(b) (integration by parts), it is m2 - 2 c m1 + c^2 m0. */
static double cell_sqerr(double a, double b, double c) {
  double m0 = cell_prob(a, b);
  double m1 = qg_norm_pdf(a) - qg_norm_pdf(b);
  double m2 = m0 + xpdf(a) - xpdf(b);
  return m2 - 2 * c * m1 + c * c * m0;
}

double qg_lloydmax_gaussian_mse(const double *c, int n) {
  double s = 0;
  for (int i = 0; i < n; i++) {
    double a = i == 0 ? -INFINITY : 0.5 * (c[i - 1] + c[i]);
    double b = i == n - 1 ? INFINITY : 0.5 * (c[i] + c[i + 1]);
    s += cell_sqerr(a, b, c[i]);
  }
  return s;
}

/* Inverse CDF by bisection: only used for the starting point, so speed does not matter. */
static double norm_quantile(double p) {
  double lo = -40, hi = 40;
  for (int i = 0; i < 200 && hi - lo > 1e-15; i++) {
    double mid = 0.5 * (lo + hi);
    if (qg_norm_cdf(mid) < p) lo = mid; else hi = mid;
  }
  return 0.5 * (lo + hi);
}

/* Exact symmetry: average mirrored pairs so rounding never skews the codebook. */
static void symmetrize(double *c, int n) {
  for (int i = 0; i < n / 2; i++) {
    double m = 0.5 * (c[n - 1 - i] - c[i]);
    c[i] = -m;
    c[n - 1 - i] = m;
  }
}

/* F(c)_i = c_i - (centroid of cell i), into f; returns max |F|. With lo/di/up non-NULL
 * also the tridiagonal Jacobian: for a cell (a, b) with probability P and centroid mu,
 * d mu/da = phi(a)(mu - a)/P and d mu/db = phi(b)(b - mu)/P, and each edge moves by
 * half of each adjacent level. */
static double residual(const double *c, int n, double *f, double *lo, double *di,
                       double *up) {
  double m = 0;
  for (int i = 0; i < n; i++) {
    double a = i == 0 ? -INFINITY : 0.5 * (c[i - 1] + c[i]);
    double b = i == n - 1 ? INFINITY : 0.5 * (c[i] + c[i + 1]);
    double p = cell_prob(a, b);
    double mu = (qg_norm_pdf(a) - qg_norm_pdf(b)) / p;
    f[i] = c[i] - mu;
    m = fmax(m, fabs(f[i]));
    if (lo) {
      double da = isinf(a) ? 0 : qg_norm_pdf(a) * (mu - a) / p;
      double db = isinf(b) ? 0 : qg_norm_pdf(b) * (b - mu) / p;
      lo[i] = -0.5 * da;
      up[i] = -0.5 * db;
      di[i] = 1 - 0.5 * da - 0.5 * db;
    }
  }
  return m;
}

/* One Lloyd step in place (f is scratch); returns the largest centroid move. */
static double lloyd_step(double *c, int n, double *f) {
  double d = residual(c, n, f, NULL, NULL, NULL);
  for (int i = 0; i < n; i++) c[i] -= f[i];
  symmetrize(c, n);
  return d;
}

/* Solves the tridiagonal system (lo, di, up) x = r (lo[0], up[n-1] unused). */
static void thomas(const double *lo, const double *di, const double *up, const double *r,
                   double *x, int n) {
  double cp[1 << QG_LLOYDMAX_MAX_BITS], dp[1 << QG_LLOYDMAX_MAX_BITS];
  cp[0] = up[0] / di[0];
  dp[0] = r[0] / di[0];
  for (int i = 1; i < n; i++) {
    double m = di[i] - lo[i] * cp[i - 1];
    cp[i] = up[i] / m;
    dp[i] = (r[i] - lo[i] * dp[i - 1]) / m;
  }
  x[n - 1] = dp[n - 1];
  for (int i = n - 2; i >= 0; i--) x[i] = dp[i] - cp[i] * x[i + 1];
}

qg_status qg_lloydmax_gaussian(int bits, qg_lloydmax *q) {
  if (bits < 1 || bits > QG_LLOYDMAX_MAX_BITS)
    return qg_fail(QG_ERR_INPUT, "lloyd-max: bits %d out of range 1..%d", bits,
                   QG_LLOYDMAX_MAX_BITS);
  memset(q, 0, sizeof *q);
  int n = 1 << bits;
  q->bits = bits;
  q->levels = n;
  /* Start from the high-resolution optimum (point density proportional to pdf^(1/3),
   * i.e. quantiles of N(0, 3)); Lloyd from there converges in few iterations even at
   * 256 levels, where a uniform start would need tens of thousands. */
  for (int i = 0; i < n; i++) q->c[i] = sqrt(3.0) * norm_quantile((i + 0.5) / n);
  int it = 0;
  /* A few Lloyd steps, then Newton on F(c) = c - centroid(c). Lloyd alone contracts
   * ever more slowly as levels are added (about 10^5 steps at 8 bits); F's Jacobian is
   * tridiagonal (a centroid depends on its two neighbours through the midpoints), so a
   * Newton step is one Thomas solve and converges quadratically. */
  double f[1 << QG_LLOYDMAX_MAX_BITS];
  for (; it < 200; it++)
    if (lloyd_step(q->c, n, f) < 1e-6) break;
  double res = residual(q->c, n, f, NULL, NULL, NULL);
  for (int k = 0; k < 60 && res > 1e-12; k++, it++) {
    double lo[1 << QG_LLOYDMAX_MAX_BITS], di[1 << QG_LLOYDMAX_MAX_BITS],
        up[1 << QG_LLOYDMAX_MAX_BITS], step[1 << QG_LLOYDMAX_MAX_BITS];
    residual(q->c, n, f, lo, di, up);
    thomas(lo, di, up, f, step, n);
    double trial[1 << QG_LLOYDMAX_MAX_BITS], tres = INFINITY;
    /* Damped: halve until the residual drops and the levels stay ordered. */
    for (double h = 1; h > 1e-4; h *= 0.5) {
      int ok = 1;
      for (int i = 0; i < n; i++) trial[i] = q->c[i] - h * step[i];
      for (int i = 1; i < n; i++) ok &= trial[i] > trial[i - 1];
      if (ok && (tres = residual(trial, n, f, NULL, NULL, NULL)) < res) break;
    }
    if (!(tres < res)) { /* Newton stalled at rounding level: a Lloyd step is safe */
      lloyd_step(q->c, n, f);
      res = residual(q->c, n, f, NULL, NULL, NULL);
      continue;
    }
    memcpy(q->c, trial, sizeof(double) * (size_t)n);
    res = tres;
  }
  symmetrize(q->c, n);
  q->iters = it;
  for (int i = 0; i <= n; i++)
    q->t[i] = i == 0 ? -INFINITY : i == n ? INFINITY : 0.5 * (q->c[i - 1] + q->c[i]);
  for (int i = 0; i < n; i++) q->cf[i] = (float)q->c[i];
  for (int i = 0; i + 1 < n; i++) q->tf[i] = (float)q->t[i + 1];
  q->mse = qg_lloydmax_gaussian_mse(q->c, n);
  return QG_OK;
}

static qg_lloydmax g_cache[QG_LLOYDMAX_MAX_BITS + 1];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void fill_cache(void) {
  for (int b = 1; b <= QG_LLOYDMAX_MAX_BITS; b++) qg_lloydmax_gaussian(b, &g_cache[b]);
}

const qg_lloydmax *qg_lloydmax_gaussian_cached(int bits) {
  if (bits < 1 || bits > QG_LLOYDMAX_MAX_BITS) return NULL;
  pthread_once(&g_once, fill_cache);
  return &g_cache[bits];
}
