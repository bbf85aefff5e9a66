/* KLD-first evaluation statistics (see kldstats.h for the formulas).
 *
 * JSON written by qg_kld_summary_json (an "est" is {"value": v, "unc": u}; non-finite
 * numbers are null):
 *   { "tokens": n,
 *     "mean_nll_base": est, "mean_nll_model": est, "ppl_base": est, "ppl_model": est,
 *     "ln_ppl_ratio": est, "ppl_ratio": est, "ppl_diff": est,
 *     "ln_prob_cov": x, "ln_prob_corr": x,
 *     "kld":     { "mean", "unc", "min", "max", "percentiles": {"p0.1": x, ... "p99.9": x} },
 *     "delta_p": { "mean", "unc", "rms", "rms_unc", "min", "max", "max_abs", "percentiles" },
 *     "same_top": est }
 * "percentiles" is null when the per-token values were not kept. */
#include "eval/kldstats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const double qg_kld_pct_fraction[QG_KLD_NPCT] = {0.001, 0.01, 0.05, 0.10, 0.25, 0.50,
                                                  0.75,  0.90, 0.95, 0.99, 0.999};
const char *const qg_kld_pct_name[QG_KLD_NPCT] = {"p0.1", "p1",  "p5",  "p10", "p25",  "p50",
                                                  "p75",  "p90", "p95", "p99", "p99.9"};

/* ---- compensated sums ------------------------------------------------------------- */

static void ks_add(qg_ksum *k, double x) {
  double t = k->s + x;
  if (fabs(k->s) >= fabs(x))
    k->c += (k->s - t) + x;
  else
    k->c += (x - t) + k->s;
  k->s = t;
}

static double ks_val(const qg_ksum *k) { return k->s + k->c; }

static void ks_merge(qg_ksum *a, const qg_ksum *b) {
  ks_add(a, b->s);
  a->c += b->c;
}

/* ---- accumulation ------------------------------------------------------------------ */

void qg_kldstats_init(qg_kldstats *s, int keep_values) {
  memset(s, 0, sizeof *s);
  s->keep_values = keep_values != 0;
}

void qg_kldstats_free(qg_kldstats *s) {
  free(s->kld_values);
  free(s->dp_values);
  int keep = s->keep_values;
  qg_kldstats_init(s, keep);
}

static qg_status reserve(qg_kldstats *s, uint64_t more) {
  if (!s->keep_values) return QG_OK;
  if (more > (uint64_t)SIZE_MAX - s->count)
    return qg_fail(QG_ERR_NOMEM, "kldstats: %llu more tokens overflow the count",
                   (unsigned long long)more);
  size_t need = (size_t)(s->count + more);
  if (need <= s->cap) return QG_OK;
  size_t cap = s->cap ? s->cap : 1024;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  if (cap > SIZE_MAX / sizeof(double))
    return qg_fail(QG_ERR_NOMEM, "kldstats: %zu tokens are too many to keep", need);
  double *k = realloc(s->kld_values, cap * sizeof *k);
  if (!k) return qg_fail(QG_ERR_NOMEM, "kldstats: keeping %zu per-token values", cap);
  s->kld_values = k;
  double *d = realloc(s->dp_values, cap * sizeof *d);
  if (!d) return qg_fail(QG_ERR_NOMEM, "kldstats: keeping %zu per-token values", cap);
  s->dp_values = d;
  s->cap = cap;
  return QG_OK;
}

/* Name of the first non-finite field, or NULL. */
static const char *bad_field(const qg_kld_token *t) {
  if (!isfinite(t->nll_base)) return "nll_base";
  if (!isfinite(t->nll_model)) return "nll_model";
  if (!isfinite(t->kld)) return "kld";
  if (!isfinite(t->p_base)) return "p_base";
  if (!isfinite(t->p_model)) return "p_model";
  return NULL;
}

static void add_one(qg_kldstats *s, const qg_kld_token *t) {
  double nb = t->nll_base, nm = t->nll_model, d = nm - nb;
  double dp = t->p_model - t->p_base, dp2 = dp * dp;
  ks_add(&s->nll_base, nb);
  ks_add(&s->nll_base2, nb * nb);
  ks_add(&s->nll_model, nm);
  ks_add(&s->nll_model2, nm * nm);
  ks_add(&s->nll_cross, nm * nb);
  ks_add(&s->nll_diff, d);
  ks_add(&s->nll_diff2, d * d);
  ks_add(&s->kld, t->kld);
  ks_add(&s->kld2, t->kld * t->kld);
  ks_add(&s->dp, dp);
  ks_add(&s->dp2, dp2);
  ks_add(&s->dp4, dp2 * dp2);
  if (s->count == 0) {
    s->kld_min = s->kld_max = t->kld;
    s->dp_min = s->dp_max = dp;
  } else {
    s->kld_min = fmin(s->kld_min, t->kld);
    s->kld_max = fmax(s->kld_max, t->kld);
    s->dp_min = fmin(s->dp_min, dp);
    s->dp_max = fmax(s->dp_max, dp);
  }
  if (s->keep_values) {
    s->kld_values[s->count] = t->kld;
    s->dp_values[s->count] = dp;
  }
  if (t->same_top) s->n_same_top++;
  s->count++;
}

qg_status qg_kldstats_add(qg_kldstats *s, const qg_kld_token *t) {
  const char *bad = bad_field(t);
  if (bad) return qg_fail(QG_ERR_INPUT, "kldstats: token %llu: %s is not finite",
                          (unsigned long long)s->count, bad);
  QG_TRY(reserve(s, 1));
  add_one(s, t);
  return QG_OK;
}

qg_status qg_kldstats_add_many(qg_kldstats *s, const qg_kld_token *t, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const char *bad = bad_field(&t[i]);
    if (bad) return qg_fail(QG_ERR_INPUT, "kldstats: record %zu of %zu: %s is not finite", i,
                            n, bad);
  }
  QG_TRY(reserve(s, n));
  for (size_t i = 0; i < n; i++) add_one(s, &t[i]);
  return QG_OK;
}

qg_status qg_kldstats_merge(qg_kldstats *dst, const qg_kldstats *src) {
  if (dst == src) return qg_fail(QG_ERR_INPUT, "kldstats: merging an accumulator into itself");
  if (dst->keep_values != src->keep_values)
    return qg_fail(QG_ERR_INPUT, "kldstats: merging an accumulator that %s values into one "
                   "that %s", src->keep_values ? "keeps" : "drops",
                   dst->keep_values ? "keeps" : "drops");
  if (src->count == 0) return QG_OK;
  QG_TRY(reserve(dst, src->count));
  if (dst->keep_values) {
    memcpy(dst->kld_values + dst->count, src->kld_values, (size_t)src->count * sizeof(double));
    memcpy(dst->dp_values + dst->count, src->dp_values, (size_t)src->count * sizeof(double));
  }
  ks_merge(&dst->nll_base, &src->nll_base);
  ks_merge(&dst->nll_base2, &src->nll_base2);
  ks_merge(&dst->nll_model, &src->nll_model);
  ks_merge(&dst->nll_model2, &src->nll_model2);
  ks_merge(&dst->nll_cross, &src->nll_cross);
  ks_merge(&dst->nll_diff, &src->nll_diff);
  ks_merge(&dst->nll_diff2, &src->nll_diff2);
  ks_merge(&dst->kld, &src->kld);
  ks_merge(&dst->kld2, &src->kld2);
  ks_merge(&dst->dp, &src->dp);
  ks_merge(&dst->dp2, &src->dp2);
  ks_merge(&dst->dp4, &src->dp4);
  if (dst->count == 0) {
    dst->kld_min = src->kld_min;
    dst->kld_max = src->kld_max;
    dst->dp_min = src->dp_min;
    dst->dp_max = src->dp_max;
  } else {
    dst->kld_min = fmin(dst->kld_min, src->kld_min);
    dst->kld_max = fmax(dst->kld_max, src->kld_max);
    dst->dp_min = fmin(dst->dp_min, src->dp_min);
    dst->dp_max = fmax(dst->dp_max, src->dp_max);
  }
  dst->n_same_top += src->n_same_top;
  dst->count += src->count;
  return QG_OK;
}

/* ---- summary ----------------------------------------------------------------------- */

/* llama.cpp's mean_and_uncertainty. */
static qg_est mean_unc(double sum, double sum2, uint64_t n) {
  qg_est e = {0.0, 0.0};
  if (n < 1) return e;
  double f = sum / (double)n;
  double var = sum2 / (double)n - f * f;
  e.value = f;
  e.unc = (var > 0 && n > 10) ? sqrt(var / (double)(n - 1)) : 0.0;
  return e;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void swap_d(double *v, size_t i, size_t j) {
  double t = v[i];
  v[i] = v[j];
  v[j] = t;
}

/* Reorders v[lo, hi) so that v[k] holds the value sorted order puts there, for every k in
 * ks[0, nk) (ascending, inside [lo, hi)). Quickselect on all wanted ranks at once, with a
 * median-of-three pivot and a three-way partition (runs of equal values, such as Δp = 0
 * for identical models, cost one pass); after `depth` levels the range is qsorted. */
static void multiselect(double *v, size_t lo, size_t hi, const size_t *ks, size_t nk, int depth) {
  while (nk > 0 && hi - lo > 16) {
    if (depth-- <= 0) {
      qsort(v + lo, hi - lo, sizeof *v, cmp_double);
      return;
    }
    size_t mid = lo + (hi - lo) / 2;
    double a = v[lo], b = v[mid], c = v[hi - 1];
    double piv = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
    size_t lt = lo, i = lo, gt = hi; /* [lo,lt) < piv, [lt,i) == piv, [gt,hi) > piv */
    while (i < gt) {
      if (v[i] < piv)
        swap_d(v, lt++, i++);
      else if (v[i] > piv)
        swap_d(v, i, --gt);
      else
        i++;
    }
    size_t nl = 0, nr;
    while (nl < nk && ks[nl] < lt) nl++;
    nr = nl;
    while (nr < nk && ks[nr] < gt) nr++;
    /* recurse into the smaller side with ranks, loop on the other */
    if (lt - lo < hi - gt) {
      multiselect(v, lo, lt, ks, nl, depth);
      ks += nr;
      nk -= nr;
      lo = gt;
    } else {
      multiselect(v, gt, hi, ks + nr, nk - nr, depth);
      nk = nl;
      hi = lt;
    }
  }
  if (nk == 0) return;
  for (size_t i = lo + 1; i < hi; i++) { /* small range: insertion sort */
    double x = v[i];
    size_t j = i;
    for (; j > lo && v[j - 1] > x; j--) v[j] = v[j - 1];
    v[j] = x;
  }
}

/* The ranks the percentiles read: floor(q·(n−1)) and the one after, for every q. */
static size_t pct_ranks(size_t n, size_t *ks) {
  size_t m = 0;
  for (int i = 0; i < QG_KLD_NPCT; i++) {
    size_t r = (size_t)(qg_kld_pct_fraction[i] * (double)(n - 1));
    if (r > n - 1) r = n - 1;
    ks[m++] = r;
    if (r + 1 < n) ks[m++] = r + 1;
  }
  /* sort and deduplicate (tiny) */
  for (size_t i = 1; i < m; i++)
    for (size_t j = i; j > 0 && ks[j - 1] > ks[j]; j--) {
      size_t t = ks[j];
      ks[j] = ks[j - 1];
      ks[j - 1] = t;
    }
  size_t u = 0;
  for (size_t i = 0; i < m; i++)
    if (u == 0 || ks[u - 1] != ks[i]) ks[u++] = ks[i];
  return u;
}

static void select_for_pct(double *v, size_t n) {
  size_t ks[2 * QG_KLD_NPCT];
  size_t nk = pct_ranks(n, ks);
  int depth = 8;
  for (size_t m = n; m > 1; m >>= 1) depth += 2;
  multiselect(v, 0, n, ks, nk, depth);
}

/* Linear interpolation at q·(n−1) of v[0..n), which holds the sorted-order values at the
 * ranks pct_ranks names. */
static double pct_sorted(const double *v, size_t n, double q) {
  if (q <= 0) return v[0];
  if (q >= 1) return v[n - 1];
  double p = q * (double)(n - 1);
  size_t i = (size_t)p;
  if (i >= n - 1) return v[n - 1];
  p -= (double)i;
  return (1.0 - p) * v[i] + p * v[i + 1];
}

qg_status qg_kldstats_summarize(qg_kldstats *s, qg_kld_summary *o) {
  if (s->count == 0) return qg_fail(QG_ERR_INPUT, "kldstats: no tokens to summarize");
  memset(o, 0, sizeof *o);
  uint64_t n = s->count;
  o->count = n;

  o->nll_base = mean_unc(ks_val(&s->nll_base), ks_val(&s->nll_base2), n);
  o->nll_model = mean_unc(ks_val(&s->nll_model), ks_val(&s->nll_model2), n);
  o->ppl_base.value = exp(o->nll_base.value);
  o->ppl_base.unc = o->ppl_base.value * o->nll_base.unc;
  o->ppl_model.value = exp(o->nll_model.value);
  o->ppl_model.unc = o->ppl_model.value * o->nll_model.unc;

  double cov = 0.0;
  if (n > 10) {
    double dn = (double)n;
    cov = ks_val(&s->nll_cross) / dn - (ks_val(&s->nll_model) / dn) * (ks_val(&s->nll_base) / dn);
    cov /= dn - 1.0;
  }
  o->ln_prob_cov = cov;
  o->ln_prob_corr = (o->nll_model.unc > 0 && o->nll_base.unc > 0)
                        ? cov / (o->nll_model.unc * o->nll_base.unc)
                        : NAN;

  o->ln_ppl_ratio.value = o->nll_model.value - o->nll_base.value;
  o->ln_ppl_ratio.unc = mean_unc(ks_val(&s->nll_diff), ks_val(&s->nll_diff2), n).unc;
  o->ppl_ratio.value = exp(o->ln_ppl_ratio.value);
  o->ppl_ratio.unc = o->ppl_ratio.value * o->ln_ppl_ratio.unc;
  /* llama.cpp: sqrt(a² Vm + b² Vb − 2ab cov) with a, b the PPLs and Vm, Vb the squared ±
   * of the mean NLLs. The same quantity is ab Vd + (a − b)(a Vm − b Vb) with Vd = Vm + Vb −
   * 2 cov taken from the per-token differences, which keeps its digits when the two
   * models are nearly identical (the direct form cancels there). */
  double a = o->ppl_model.value, b = o->ppl_base.value;
  double vm = o->nll_model.unc * o->nll_model.unc, vb = o->nll_base.unc * o->nll_base.unc;
  double vd = o->ln_ppl_ratio.unc * o->ln_ppl_ratio.unc;
  double dv = a * b * vd + (a - b) * (a * vm - b * vb);
  o->ppl_diff.value = a - b;
  o->ppl_diff.unc = dv > 0 ? sqrt(dv) : 0.0;

  o->kld = mean_unc(ks_val(&s->kld), ks_val(&s->kld2), n);
  o->dp = mean_unc(ks_val(&s->dp), ks_val(&s->dp2), n);
  qg_est mse = mean_unc(ks_val(&s->dp2), ks_val(&s->dp4), n);
  o->dp_rms.value = mse.value > 0 ? sqrt(mse.value) : 0.0;
  o->dp_rms.unc = o->dp_rms.value > 0 ? 0.5 / o->dp_rms.value * mse.unc : 0.0;

  double f = (double)s->n_same_top / (double)n;
  o->same_top.value = f;
  o->same_top.unc = n > 1 ? sqrt(f * (1.0 - f) / (double)(n - 1)) : 0.0;

  o->kld_min = s->kld_min;
  o->kld_max = s->kld_max;
  o->dp_min = s->dp_min;
  o->dp_max = s->dp_max;
  o->max_abs_dp = fmax(fabs(s->dp_min), fabs(s->dp_max));

  o->has_values = s->keep_values;
  for (int i = 0; i < QG_KLD_NPCT; i++) o->kld_pct[i] = o->dp_pct[i] = NAN;
  if (s->keep_values) {
    size_t m = (size_t)n;
    select_for_pct(s->kld_values, m);
    select_for_pct(s->dp_values, m);
    for (int i = 0; i < QG_KLD_NPCT; i++) {
      o->kld_pct[i] = pct_sorted(s->kld_values, m, qg_kld_pct_fraction[i]);
      o->dp_pct[i] = pct_sorted(s->dp_values, m, qg_kld_pct_fraction[i]);
    }
  }
  return QG_OK;
}

/* ---- one position from logits ------------------------------------------------------ */

/* Log-sum-exp of x[0..n) and the index of the first maximum. */
static qg_status lse_argmax(const float *x, int n, const char *which, double *lse, int *imax) {
  double m = -INFINITY;
  int im = 0;
  for (int v = 0; v < n; v++) {
    if (!isfinite(x[v]))
      return qg_fail(QG_ERR_INPUT, "kld token: %s logit %d is not finite", which, v);
    if (x[v] > m) {
      m = x[v];
      im = v;
    }
  }
  double sum = 0.0;
  for (int v = 0; v < n; v++) sum += exp((double)x[v] - m);
  *lse = m + log(sum);
  *imax = im;
  return QG_OK;
}

qg_status qg_kld_token_from_logits(const float *lb, const float *lm, int n_vocab, int target,
                                   qg_kld_token *out) {
  if (n_vocab < 1) return qg_fail(QG_ERR_INPUT, "kld token: vocabulary size %d", n_vocab);
  if (target < 0 || target >= n_vocab)
    return qg_fail(QG_ERR_INPUT, "kld token: target %d outside the vocabulary [0, %d)", target,
                   n_vocab);
  double lse_b = 0, lse_m = 0;
  int top_b = 0, top_m = 0;
  QG_TRY(lse_argmax(lb, n_vocab, "base", &lse_b, &top_b));
  QG_TRY(lse_argmax(lm, n_vocab, "model", &lse_m, &top_m));
  double kld = 0.0;
  for (int v = 0; v < n_vocab; v++) {
    double lpb = (double)lb[v] - lse_b, lpm = (double)lm[v] - lse_m;
    kld += exp(lpb) * (lpb - lpm);
  }
  out->nll_base = lse_b - (double)lb[target];
  out->nll_model = lse_m - (double)lm[target];
  out->p_base = exp(-out->nll_base);
  out->p_model = exp(-out->nll_model);
  out->kld = kld;
  out->same_top = top_b == top_m;
  return QG_OK;
}

/* ---- JSON -------------------------------------------------------------------------- */

static void j_est(qg_json *j, const char *key, qg_est e) {
  qg_json_key(j, key);
  qg_json_obj_begin(j);
  qg_json_key(j, "value");
  qg_json_num(j, e.value);
  qg_json_key(j, "unc");
  qg_json_num(j, e.unc);
  qg_json_obj_end(j);
}

static void j_num(qg_json *j, const char *key, double v) {
  qg_json_key(j, key);
  qg_json_num(j, v);
}

static void j_pct(qg_json *j, int has, const double *pct) {
  qg_json_key(j, "percentiles");
  if (!has) {
    qg_json_null(j);
    return;
  }
  qg_json_obj_begin(j);
  for (int i = 0; i < QG_KLD_NPCT; i++) j_num(j, qg_kld_pct_name[i], pct[i]);
  qg_json_obj_end(j);
}

void qg_kld_summary_json(qg_json *j, const qg_kld_summary *s) {
  qg_json_obj_begin(j);
  qg_json_key(j, "tokens");
  qg_json_int(j, (int64_t)s->count);
  j_est(j, "mean_nll_base", s->nll_base);
  j_est(j, "mean_nll_model", s->nll_model);
  j_est(j, "ppl_base", s->ppl_base);
  j_est(j, "ppl_model", s->ppl_model);
  j_est(j, "ln_ppl_ratio", s->ln_ppl_ratio);
  j_est(j, "ppl_ratio", s->ppl_ratio);
  j_est(j, "ppl_diff", s->ppl_diff);
  j_num(j, "ln_prob_cov", s->ln_prob_cov);
  j_num(j, "ln_prob_corr", s->ln_prob_corr);

  qg_json_key(j, "kld");
  qg_json_obj_begin(j);
  j_num(j, "mean", s->kld.value);
  j_num(j, "unc", s->kld.unc);
  j_num(j, "min", s->kld_min);
  j_num(j, "max", s->kld_max);
  j_pct(j, s->has_values, s->kld_pct);
  qg_json_obj_end(j);

  qg_json_key(j, "delta_p");
  qg_json_obj_begin(j);
  j_num(j, "mean", s->dp.value);
  j_num(j, "unc", s->dp.unc);
  j_num(j, "rms", s->dp_rms.value);
  j_num(j, "rms_unc", s->dp_rms.unc);
  j_num(j, "min", s->dp_min);
  j_num(j, "max", s->dp_max);
  j_num(j, "max_abs", s->max_abs_dp);
  j_pct(j, s->has_values, s->dp_pct);
  qg_json_obj_end(j);

  j_est(j, "same_top", s->same_top);
  qg_json_obj_end(j);
}
