/* Paired statistics for the experiment runner: block bootstrap over evaluation windows,
 * one-sided p-values against a margin, Holm-Bonferroni correction, and the verdict rules.
 *
 * Every metric the runner compares is a ratio of sums over tokens, metric = Σ num / Σ den:
 *   KLD and NLL: num = the per-token value, den = 1;
 *   BPB:         num = NLL / ln 2, den = the target's byte count.
 * A paired difference between an arm and its baseline on the same tokens is then
 * Σ (num_arm − num_base) / Σ den, so the caller passes num = the per-token difference.
 *
 * Tokens within an evaluation window share their context and are correlated; the unit of
 * resampling is therefore the whole window (a block bootstrap whose blocks are the
 * windows). Both arms are resampled with the same window indices because the difference
 * is formed per token before resampling (a paired bootstrap, as sacrebleu's paired
 * bootstrap test). The iid interval (normal approximation, tokens treated as
 * independent, as llama.cpp's ±) is computed beside it so that the report can show how
 * much the dependence widens the interval. */
#ifndef QG_LAB_STATS_H
#define QG_LAB_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* Tokens grouped in windows: tokens win_start[w] .. win_start[w+1]-1 form window w
 * (win_start has n_windows + 1 entries, win_start[0] = 0, win_start[n_windows] = n). */
typedef struct {
  const double *num;        /* n values */
  const double *den;        /* n values, or NULL for all 1 */
  size_t n;
  const size_t *win_start;  /* n_windows + 1 offsets */
  size_t n_windows;
} qg_boot_data;

typedef struct {
  int resamples;            /* >= 2000 for reports (default 2000 when 0; 1 and < 0 are
                               errors) */
  uint64_t seed;            /* the resampling stream; the same seed gives the same indices */
  double alpha;             /* two-sided interval level 1 − alpha (e.g. 0.01) */
  int expect;               /* +1: the hypothesis says the statistic is > margin;
                               −1: < −margin; 0: no direction (p, confidence: NaN) */
  double margin;            /* >= 0, in the metric's units */
} qg_boot_opts;

typedef struct {
  double estimate;          /* Σ num / Σ den on the data as observed */
  double lo, hi;            /* percentile interval at 1 − alpha, block bootstrap */
  double se_boot;           /* standard deviation of the bootstrap replicates */
  double iid_lo, iid_hi;    /* normal interval at 1 − alpha treating tokens as iid
                               (delta method for the ratio: se = sqrt(Σ (num − r den)²) / Σ den
                               · sqrt(n / (n − 1))); NaN when n < 2 */
  double se_iid;
  double inflation;         /* (hi − lo) / (iid_hi − iid_lo); NaN when the iid width is 0 */
  double p_one_sided;       /* (c + 1) / (resamples + 1), c = #{ s*_b − mean(s*) ≥ ŝ − margin }
                               with s = expect · statistic (the null centred at margin) */
  double frac_expected;     /* fraction of replicates with s* > margin */
  int resamples;
  uint64_t seed;
  size_t n_tokens, n_windows;
} qg_boot_result;

/* Runs the bootstrap. Errors (QG_ERR_INPUT): no windows, offsets not increasing or not
 * covering n, Σ den == 0 (or ≤ 0 within one window, since a resample may repeat a single
 * window), a non-finite value, alpha outside (0, 1), margin < 0 or not finite, expect not
 * in {−1, 0, +1}, resamples < 0 or == 1. QG_ERR_NOMEM when allocation fails. */
qg_status qg_boot_ratio(const qg_boot_data *d, const qg_boot_opts *o, qg_boot_result *out);

/* The replicates themselves (resamples values, 2000 when resamples is 0, in draw order),
 * for pooling over seeds; same stream as qg_boot_ratio with the same options. */
qg_status qg_boot_replicates(const qg_boot_data *d, const qg_boot_opts *o, double *out);

/* Holm–Bonferroni step-down adjusted p-values for m tests (adj[i] for p[i]; monotone,
 * capped at 1). A NaN p gives a NaN adj and is not counted in m. adj must not alias p. */
void qg_holm_adjust(const double *p, int m, double *adj);

/* One-sided one-sample t-test over k values (e.g. per-seed differences) of H1: expect ·
 * mean > margin. Returns the p-value (Student t with k − 1 degrees of freedom, from the
 * regularized incomplete beta function); NaN when k < 2, the variance is 0, expect is not
 * ±1 or a value is not finite. */
double qg_ttest_one_sided(const double *x, int k, int expect, double margin);

/* The standard normal quantile Φ⁻¹(p) (±inf at 0 and 1, NaN outside [0, 1]); close to
 * machine precision. */
double qg_norm_quantile(double p);

/* Verdicts (computed, never typed in). */
typedef enum { QG_VERDICT_INCONCLUSIVE = 0, QG_VERDICT_SUCCESS, QG_VERDICT_FAILURE } qg_verdict;
const char *qg_verdict_name(qg_verdict v); /* "inconclusive", "success", "failure" */

/* One comparison in one reproduction: success when the interval lies beyond margin in the
 * expected direction (lo > margin for expect = +1, hi < −margin for expect = −1, i.e. the
 * whole interval of s = expect · statistic is > margin) and the (corrected) p ≤ alpha; failure
 * when the interval lies beyond zero the other way (all of s < 0) or, when margin > 0,
 * entirely inside (−margin, margin); inconclusive otherwise. An interval of [0, 0] (A/A)
 * is inconclusive when margin == 0 (a failure when margin > 0: it lies inside). Every
 * comparison with expect not ±1 is inconclusive. */
qg_verdict qg_verdict_one(double lo, double hi, int expect, double margin, double p_adj, double alpha);

/* Across reproductions: success when every one is success, failure when every one is
 * failure, inconclusive otherwise; *agree = the number whose verdict equals the result
 * (for inconclusive: the number of inconclusive ones; agree may be NULL). n == 0 gives
 * inconclusive. */
qg_verdict qg_verdict_combine(const qg_verdict *v, int n, int *agree);

/* Across arms (the hypothesis says each arm beats the baseline): failure when any arm
 * fails, success when all succeed, inconclusive otherwise (and for n == 0). */
qg_verdict qg_verdict_all(const qg_verdict *v, int n);

#endif
