/* KLD-first evaluation statistics: per-token records of a base model and a (quantized)
 * model on the same tokens, accumulated in a streaming, mergeable way, and summarised as
 * llama.cpp's `perplexity --kl-divergence` does (tools/perplexity/perplexity.cpp).
 *
 * A record holds, for one predicted token: both models' NLL of the target (nats), the KL
 * divergence KL(base || model) over the vocabulary at that position, both models'
 * probability of the target, and whether both put their maximum on the same token.
 *
 * Accumulation keeps float64 sums (Neumaier-compensated, so 62M tokens lose nothing) and,
 * unless told not to, the per-token KLD and Δp values that the percentiles need (16 bytes a
 * token). Merging two accumulators is exact: sums add, kept values concatenate, and every
 * reported statistic is independent of the order the tokens came in (up to the last bit
 * of the compensated sums).
 *
 * Formulas (n tokens; for x in {nll_base, nll_model, kld, Δp, Δp²}):
 *   mean  f = Σx / n
 *   ±     sqrt((Σx²/n − f²) / (n − 1)), reported as 0 unless n > 10 and the variance > 0
 *         (llama.cpp's mean_and_uncertainty)
 *   PPL   exp(mean nll), ± PPL · (± of mean nll)
 *   cov   (Σ nll_m·nll_b / n − mean_m · mean_b) / (n − 1), 0 unless n > 10: the covariance
 *         of the two mean ln-probs (llama.cpp uses n ≥ 10 here; aligned with the means so
 *         the ln-ratio's ± never takes the root of a negative number)
 *   corr  cov / (±_m · ±_b), the Pearson correlation of the per-token ln-probs (NaN when
 *         either ± is 0)
 *   ln(PPL_m/PPL_b) = mean_m − mean_b, ± sqrt(±_m² + ±_b² − 2 cov), computed as the ± of
 *         the mean of the per-token differences, which is the same number without the
 *         cancellation
 *   PPL_m/PPL_b = exp(ln ratio), ± ratio · (± of ln ratio)
 *   PPL_m − PPL_b, ± sqrt(±PPL_m² + ±PPL_b² − 2 PPL_m PPL_b cov), evaluated in an
 *         algebraically identical form that avoids the cancellation (see the .c file)
 *   Δp    p_model(target) − p_base(target); RMS Δp = sqrt(mean Δp²),
 *         ± = 0.5 / RMS · (± of mean Δp²)
 *   same top: f = n_same / n, ± sqrt(f (1 − f) / (n − 1)) (0 when n = 1)
 *   percentile at fraction q of the sorted values v[0..n−1]: linear interpolation at
 *         q·(n − 1), computed in double (llama.cpp uses float); q = 0.5 is llama.cpp's
 *         median (the mean of the two middle values when n is even).
 */
#ifndef QG_EVAL_KLDSTATS_H
#define QG_EVAL_KLDSTATS_H

#include <stddef.h>
#include <stdint.h>

#include "core/json.h"
#include "core/status.h"

/* One predicted token. All fields finite; probabilities as computed (not clamped). */
typedef struct {
  double nll_base;  /* −ln p_base(target) */
  double nll_model; /* −ln p_model(target) */
  double kld;       /* Σ_v p_base(v) (ln p_base(v) − ln p_model(v)), nats */
  double p_base;    /* p_base(target) */
  double p_model;   /* p_model(target) */
  int same_top;     /* nonzero when argmax_v p_base(v) == argmax_v p_model(v) */
} qg_kld_token;

/* A compensated (Neumaier) float64 sum: the value is s + c. */
typedef struct {
  double s, c;
} qg_ksum;

/* The accumulator. Plain data; initialise with qg_kldstats_init, free with _free. */
typedef struct {
  uint64_t count;
  uint64_t n_same_top;
  qg_ksum nll_base, nll_base2;   /* Σ nll_b, Σ nll_b² */
  qg_ksum nll_model, nll_model2; /* Σ nll_m, Σ nll_m² */
  qg_ksum nll_cross;             /* Σ nll_m · nll_b */
  qg_ksum nll_diff, nll_diff2;   /* Σ (nll_m − nll_b), Σ (nll_m − nll_b)² */
  qg_ksum kld, kld2;             /* Σ kld, Σ kld² */
  qg_ksum dp, dp2, dp4;          /* Σ Δp, Σ Δp², Σ Δp⁴ */
  double kld_min, kld_max, dp_min, dp_max; /* meaningful when count > 0 */
  int keep_values;               /* whether the per-token values below are kept */
  double *kld_values, *dp_values; /* count values each (when kept), in arrival order
                                     until qg_kldstats_summarize reorders them */
  size_t cap;
} qg_kldstats;

/* The percentile fractions reported for KLD and Δp (0.5 is the median). */
#define QG_KLD_NPCT 11
extern const double qg_kld_pct_fraction[QG_KLD_NPCT];
/* Their JSON keys: "p0.1", "p1", "p5", "p10", "p25", "p50", "p75", "p90", "p95", "p99",
 * "p99.9". */
extern const char *const qg_kld_pct_name[QG_KLD_NPCT];

/* A value and its one-sigma uncertainty. */
typedef struct {
  double value, unc;
} qg_est;

typedef struct {
  uint64_t count;
  qg_est nll_base, nll_model;  /* mean NLL (= ln PPL) of each run */
  qg_est ppl_base, ppl_model;
  double ln_prob_cov;          /* covariance of the two mean ln-probs (see above) */
  double ln_prob_corr;         /* correlation of the per-token ln-probs; NaN if undefined */
  qg_est ln_ppl_ratio;         /* ln(PPL_model / PPL_base) */
  qg_est ppl_ratio;            /* PPL_model / PPL_base */
  qg_est ppl_diff;             /* PPL_model − PPL_base */
  qg_est kld;                  /* mean KLD */
  qg_est dp;                   /* mean Δp */
  qg_est dp_rms;               /* RMS Δp */
  qg_est same_top;             /* fraction of tokens whose top-1 agrees */
  double kld_min, kld_max;     /* always available */
  double dp_min, dp_max, max_abs_dp;
  int has_values;              /* whether the percentiles were computed (values kept) */
  double kld_pct[QG_KLD_NPCT]; /* at qg_kld_pct_fraction[i]; NaN when !has_values */
  double dp_pct[QG_KLD_NPCT];
} qg_kld_summary;

/* keep_values = 0 saves 16 bytes a token but leaves the percentiles out. */
void qg_kldstats_init(qg_kldstats *s, int keep_values);
void qg_kldstats_free(qg_kldstats *s);

/* Adds records. A record with a non-finite field fails with QG_ERR_INPUT naming it (for
 * add_many, by index), and nothing of the call is added; out of memory: QG_ERR_NOMEM,
 * likewise nothing added. */
qg_status qg_kldstats_add(qg_kldstats *s, const qg_kld_token *t);
qg_status qg_kldstats_add_many(qg_kldstats *s, const qg_kld_token *t, size_t n);

/* dst += src (src unchanged). Both must agree on keep_values (else QG_ERR_INPUT). */
qg_status qg_kldstats_merge(qg_kldstats *dst, const qg_kldstats *src);

/* The summary of everything added so far. Reorders the kept values in place (a partial
 * sort around the percentile ranks, O(n); no statistic depends on their order and adding
 * more afterwards is fine). No tokens: QG_ERR_INPUT. */
qg_status qg_kldstats_summarize(qg_kldstats *s, qg_kld_summary *out);

/* The record of one position from the two models' logits (any real logits: soft-capped
 * already if the model caps them), computed in double: log-softmax of each, the NLLs and
 * probabilities of `target`, the exact KL(base || model) over all n_vocab entries, and
 * top-1 agreement (the first maximum on ties). Fails with QG_ERR_INPUT on n_vocab < 1, a
 * target out of range, or a non-finite logit. */
qg_status qg_kld_token_from_logits(const float *logits_base, const float *logits_model,
                                   int n_vocab, int target, qg_kld_token *out);

/* Writes the summary as one JSON object (keys documented in the .c file's header). */
void qg_kld_summary_json(qg_json *j, const qg_kld_summary *s);

#endif
