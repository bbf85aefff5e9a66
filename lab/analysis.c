/* The experiment's statistics and verdict (qg_lab_analyze in lab/runner.h).
 *
 * Per cell (arm x seed): the arm's own KLD, NLL, BPB and ln(PPL ratio) to the reference,
 * each with a block-bootstrap interval over the evaluation windows. Per non-baseline cell:
 * the paired difference to the baseline on the same tokens for all three metrics, with the
 * block interval, the one-sided p against the margin, Holm-corrected over the arms within
 * the seed for the primary metric, and the reproduction's verdict. Every bootstrap uses
 * the experiment's bootstrap seed, so all arms, metrics and seeds are resampled with the
 * same window indices. Per arm: the verdicts over seeds combined, the pooled confidence
 * (replicates of all seeds together) and the seed-averaged effect with the interval of the
 * seed-averaged replicates. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lab/runner.h"

#define LN2 0.69314718055994530942

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double percentile(const double *v, size_t n, double q) {
  double *s = malloc(sizeof *s * (n ? n : 1));
  if (!s || !n) {
    free(s);
    return NAN;
  }
  memcpy(s, v, sizeof *s * n);
  qsort(s, n, sizeof *s, cmp_double);
  double pos = q * (double)(n - 1);
  size_t i = (size_t)pos;
  double f = pos - (double)i, r = i + 1 < n ? s[i] + f * (s[i + 1] - s[i]) : s[i];
  free(s);
  return r;
}

typedef struct {
  double *num, *den;
} series;

/* num[t] for a metric of one cell (or the difference of two cells), den for BPB. */
static qg_status metric_series(qg_metric m, const qg_lab_tokens *a, const qg_lab_tokens *b, series *out) {
  size_t n = a->n;
  out->num = malloc(sizeof(double) * (n ? n : 1));
  out->den = NULL;
  if (!out->num) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) {
    double x = m == QG_METRIC_KLD ? a->kld[i] : m == QG_METRIC_NLL ? a->nll[i] : a->nll[i] / LN2;
    if (b) x -= m == QG_METRIC_KLD ? b->kld[i] : m == QG_METRIC_NLL ? b->nll[i] : b->nll[i] / LN2;
    out->num[i] = x;
  }
  if (m == QG_METRIC_BPB) out->den = a->bytes;
  return QG_OK;
}

static qg_status boot(const qg_lab_hypothesis *h, const qg_lab_tokens *t, const series *s, int expect,
                      qg_boot_result *out, double *replicates) {
  qg_boot_data d = {s->num, s->den, t->n, t->win_start, t->n_windows};
  qg_boot_opts o = {h->resamples, h->bootstrap_seed, h->alpha, expect, expect ? h->margin : 0};
  QG_TRY(qg_boot_ratio(&d, &o, out));
  if (replicates) QG_TRY(qg_boot_replicates(&d, &o, replicates));
  return QG_OK;
}

/* The byte difference is exact: its interval is the point itself, p is 0 or 1. */
static void bytes_diff(const qg_lab_hypothesis *h, int expect, const qg_lab_cell *c, const qg_lab_cell *b,
                       qg_boot_result *out) {
  memset(out, 0, sizeof *out);
  double d = (double)(c->artifact_bytes - b->artifact_bytes);
  int beyond = expect * d > h->margin;
  out->estimate = out->lo = out->hi = out->iid_lo = out->iid_hi = d;
  out->inflation = NAN;
  out->p_one_sided = beyond ? 0 : 1;
  out->frac_expected = beyond;
  out->resamples = h->resamples, out->seed = h->bootstrap_seed;
  out->n_tokens = c->tok.n, out->n_windows = c->tok.n_windows;
}

static qg_status own_stats(const qg_lab_hypothesis *h, qg_lab_cell *c) {
  const qg_lab_tokens *t = &c->tok;
  series s;
  qg_status st = QG_OK;
  for (int m = 0; m < 3 && !st; m++) {
    if ((st = metric_series((qg_metric)m, t, NULL, &s))) break;
    st = boot(h, t, &s, 0, m == 0 ? &c->kld : m == 1 ? &c->nll : &c->bpb, NULL);
    free(s.num);
  }
  if (st) return st;
  double *d = malloc(sizeof *d * (t->n ? t->n : 1));
  if (!d) return qg_fail(QG_ERR_NOMEM, "out of memory");
  size_t same = 0;
  for (size_t i = 0; i < t->n; i++) d[i] = t->nll[i] - t->nll_ref[i], same += t->same_top[i];
  series r = {d, NULL};
  st = boot(h, t, &r, 0, &c->ln_ppl_ratio, NULL);
  free(d);
  c->kld_p99 = percentile(t->kld, t->n, 0.99);
  c->same_top = t->n ? (double)same / (double)t->n : NAN;
  return st;
}

qg_status qg_lab_analyze(qg_lab_result *r) {
  const qg_lab_hypothesis *h = r->h;
  int na = h->n_arms, ns = r->n_seeds, base = qg_lab_arm_index(h, h->baseline);
  int R = h->resamples;
  for (int i = 0; i < na * ns; i++) QG_TRY(own_stats(h, &r->cells[i]));
  double *rep = malloc(sizeof *rep * (size_t)R * (size_t)ns);
  double *p = malloc(sizeof *p * (size_t)na), *adj = malloc(sizeof *adj * (size_t)na);
  qg_verdict *v = malloc(sizeof *v * (size_t)(ns > na ? ns : na));
  double *est = malloc(sizeof *est * (size_t)ns);
  qg_status st = rep && p && adj && v && est ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
  /* the paired differences, seed by seed, and Holm over the arms of each seed */
  for (int si = 0; si < ns && !st; si++) {
    const qg_lab_cell *b = &r->cells[base * ns + si];
    int m = 0;
    for (int a = 0; a < na && !st; a++) {
      qg_lab_cell *c = &r->cells[a * ns + si];
      if (!qg_lab_arm_compared(h, a)) continue;
      if (c->tok.n != b->tok.n || c->tok.n_windows != b->tok.n_windows) {
        st = qg_fail(QG_ERR_INTERNAL, "arms '%s' and '%s' were evaluated on different tokens", h->arms[a].name,
                     h->baseline);
        break;
      }
      int ex = qg_lab_arm_expect(h, a);
      for (int k = 0; k < 3 && !st; k++) {
        series s;
        if ((st = metric_series((qg_metric)k, &c->tok, &b->tok, &s))) break;
        st = boot(h, &c->tok, &s, ex, &c->d[k], NULL);
        free(s.num);
      }
      bytes_diff(h, ex, c, b, &c->d[QG_METRIC_BYTES]);
      p[m++] = c->d[h->metric].p_one_sided;
    }
    if (st) break;
    qg_holm_adjust(p, m, adj);
    m = 0;
    for (int a = 0; a < na; a++) {
      if (!qg_lab_arm_compared(h, a)) continue;
      qg_lab_cell *c = &r->cells[a * ns + si];
      c->p_holm = adj[m++];
      c->verdict = qg_verdict_one(c->d[h->metric].lo, c->d[h->metric].hi, qg_lab_arm_expect(h, a), h->margin, c->p_holm,
                                  h->alpha);
    }
  }
  /* per arm over the seeds */
  r->verdict = QG_VERDICT_SUCCESS;
  r->agree = ns, r->n_repro = ns, r->confidence = 1, r->headline = -1;
  qg_verdict *arm_v = malloc(sizeof *arm_v * (size_t)na);
  int n_cmp = 0;
  if (!arm_v && !st) st = qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int a = 0; a < na && !st; a++) {
    if (!qg_lab_arm_compared(h, a)) continue;
    qg_lab_armsum *sum = &r->arms[a];
    int ex = qg_lab_arm_expect(h, a);
    for (int si = 0; si < ns && !st; si++) {
      qg_lab_cell *c = &r->cells[a * ns + si];
      const qg_lab_cell *b = &r->cells[base * ns + si];
      v[si] = c->verdict;
      est[si] = c->d[h->metric].estimate;
      if (h->metric == QG_METRIC_BYTES) {
        for (int k = 0; k < R; k++) rep[(size_t)si * (size_t)R + (size_t)k] = est[si];
        continue;
      }
      series s;
      if ((st = metric_series(h->metric, &c->tok, &b->tok, &s))) break;
      qg_boot_result tmp;
      st = boot(h, &c->tok, &s, ex, &tmp, rep + (size_t)si * (size_t)R);
      free(s.num);
    }
    if (st) break;
    sum->verdict = qg_verdict_combine(v, ns, &sum->agree);
    /* pooled: replicates of every seed (the same window indices in each) */
    int beyond = 0;
    double *avg = malloc(sizeof *avg * (size_t)R);
    if (!avg) {
      st = qg_fail(QG_ERR_NOMEM, "out of memory");
      break;
    }
    for (int b = 0; b < R; b++) {
      double acc = 0;
      for (int si = 0; si < ns; si++) {
        double x = rep[(size_t)si * (size_t)R + (size_t)b];
        acc += x;
        beyond += ex * x > h->margin;
      }
      avg[b] = acc / ns;
    }
    sum->confidence = (double)beyond / ((double)R * ns);
    sum->est = 0;
    for (int si = 0; si < ns; si++) sum->est += est[si] / ns;
    sum->lo = percentile(avg, (size_t)R, h->alpha / 2);
    sum->hi = percentile(avg, (size_t)R, 1 - h->alpha / 2);
    free(avg);
    /* the contest's rule: also a one-sided t-test over the seeds' differences */
    sum->ttest_p = ns >= 2 ? qg_ttest_one_sided(est, ns, ex, h->margin) : NAN;
    if (h->rule_contest && sum->verdict == QG_VERDICT_SUCCESS && !isnan(sum->ttest_p) && sum->ttest_p >= h->alpha)
      sum->verdict = QG_VERDICT_INCONCLUSIVE;
    arm_v[n_cmp++] = sum->verdict;
    if (sum->agree < r->agree) r->agree = sum->agree;
    if (sum->confidence < r->confidence) r->confidence = sum->confidence;
    /* the headline is the question's arm: the first one expected to move as the hypothesis says
     * (not a sanity arm with its own direction) */
    if (r->headline < 0 && !h->arms[a].is_float && qg_lab_arm_expect(h, a) == h->expect) r->headline = a;
  }
  if (!st) {
    r->verdict = qg_verdict_all(arm_v, n_cmp);
    /* with several question arms the headline must explain the verdict: when the first one
     * agrees with the hypothesis but another decides against it, show the deciding arm */
    if (r->headline >= 0 && r->arms[r->headline].verdict != r->verdict) {
      int pick = -1;
      for (int a = 0; a < na && pick < 0; a++)
        if (qg_lab_arm_compared(h, a) && !h->arms[a].is_float && qg_lab_arm_expect(h, a) == h->expect &&
            r->arms[a].verdict == r->verdict)
          pick = a;
      if (pick >= 0) r->headline = pick;
    }
    if (r->headline < 0)
      for (int a = 0; a < na && r->headline < 0; a++)
        if (qg_lab_arm_compared(h, a)) r->headline = a;
    if (r->headline < 0) st = qg_fail(QG_ERR_INPUT, "%s: no arm is compared with the baseline (every arm is the baseline or the reference)", h->path);
    /* reproductions that agree: seeds whose own verdict over all arms (the same rule
     * across arms, applied to that seed's intervals) equals the experiment's */
    r->agree = 0;
    for (int si = 0; si < ns; si++) {
      int m = 0;
      for (int a = 0; a < na; a++)
        if (qg_lab_arm_compared(h, a)) v[m++] = r->cells[a * ns + si].verdict;
      r->agree += qg_verdict_all(v, m) == r->verdict;
    }
    double infl = 0;
    int k = 0;
    for (int i = 0; i < na * ns; i++)
      if (isfinite(r->cells[i].kld.inflation)) infl += r->cells[i].kld.inflation, k++;
    r->mean_ratio_kld = k ? infl / k : NAN;
  }
  free(arm_v);
  free(rep), free(p), free(adj), free(v), free(est);
  return st;
}
