/* Experiment reports (lab/report.h): result.json, report.md and the figures. */
#include "lab/report.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "core/json.h"
#include "lab/svg.h"

static const char *const metric_unit[4] = {"nats/token", "nats/token", "bits/byte", "bytes"};

static const char *interval_text(void) {
  return "percentile interval of a paired block bootstrap whose blocks are whole evaluation windows (tokens within a "
         "window share context and are correlated); both arms resampled with the same window indices";
}

/* ---- result.json ---------------------------------------------------------------------- */

/* The arm's artifact compressor as written (the arm's, else the experiment's). */
static const char *arm_compressor(const qg_lab_hypothesis *h, const qg_lab_arm *arm) {
  return arm->compress ? arm->compress : h->compress;
}

static void boot_json(qg_json *j, const char *key, const qg_boot_result *b, int with_p) {
  qg_json_key(j, key);
  qg_json_obj_begin(j);
  qg_json_key(j, "estimate"), qg_json_num(j, b->estimate);
  qg_json_key(j, "lo"), qg_json_num(j, b->lo);
  qg_json_key(j, "hi"), qg_json_num(j, b->hi);
  qg_json_key(j, "se_boot"), qg_json_num(j, b->se_boot);
  qg_json_key(j, "iid_lo"), qg_json_num(j, b->iid_lo);
  qg_json_key(j, "iid_hi"), qg_json_num(j, b->iid_hi);
  qg_json_key(j, "inflation"), qg_json_num(j, b->inflation);
  if (with_p) {
    qg_json_key(j, "p_one_sided"), qg_json_num(j, b->p_one_sided);
    qg_json_key(j, "frac_expected"), qg_json_num(j, b->frac_expected);
  }
  qg_json_obj_end(j);
}

static void setup_json(qg_json *j, const qg_lab_result *r) {
  const qg_lab_setup *s = &r->setup;
  const qg_lab_hypothesis *h = r->h;
  qg_json_key(j, "setup");
  qg_json_obj_begin(j);
  qg_json_key(j, "model"), h->model ? qg_json_str(j, h->model) : qg_json_null(j);
  qg_json_key(j, "model_sha256"), h->model ? qg_json_str(j, s->model_sha) : qg_json_null(j);
  qg_json_key(j, "tokenizer"), qg_json_str(j, h->tokenizer);
  qg_json_key(j, "tokenizer_sha256"), qg_json_str(j, s->tokenizer_sha);
  qg_json_key(j, "val"), qg_json_str(j, h->val);
  qg_json_key(j, "val_sha256"), qg_json_str(j, s->val_sha);
  qg_json_key(j, "calib"), h->calib ? qg_json_str(j, h->calib) : qg_json_null(j);
  qg_json_key(j, "calib_sha256"), h->calib ? qg_json_str(j, s->calib_sha) : qg_json_null(j);
  qg_json_key(j, "tokens"), qg_json_int(j, s->tokens);
  qg_json_key(j, "windows"), qg_json_int(j, s->windows);
  qg_json_key(j, "seq_len"), qg_json_int(j, s->seq_len);
  qg_json_key(j, "stride"), qg_json_int(j, s->stride);
  qg_json_key(j, "max_tokens"), qg_json_int(j, h->max_tokens);
  qg_json_key(j, "reference"), qg_json_str(j, h->reference);
  qg_json_key(j, "baseline"), qg_json_str(j, h->baseline);
  qg_json_key(j, "seeds");
  qg_json_arr_begin(j);
  for (int i = 0; i < r->n_seeds; i++) qg_json_int(j, (int64_t)h->seeds[i]);
  qg_json_arr_end(j);
  qg_json_key(j, "quantgolf_version"), qg_json_str(j, s->version);
  qg_json_key(j, "git_commit"), qg_json_str(j, s->commit);
  qg_json_key(j, "machine"), qg_json_str(j, s->machine);
  qg_json_key(j, "device"), qg_json_str(j, s->device);
  qg_json_key(j, "started"), qg_json_str(j, s->started);
  qg_json_key(j, "wall_seconds"), qg_json_num(j, s->wall_seconds);
  qg_json_key(j, "all_from_cache"), qg_json_bool(j, s->reused_all);
  qg_json_obj_end(j);
}

static void cell_json(qg_json *j, const qg_lab_result *r, const qg_lab_cell *c, int is_base) {
  qg_json_obj_begin(j);
  qg_json_key(j, "seed"), qg_json_int(j, (int64_t)c->seed);
  qg_json_key(j, "artifact_bytes"), c->is_float ? qg_json_null(j) : qg_json_int(j, c->artifact_bytes);
  qg_json_key(j, "params"), qg_json_int(j, c->params);
  qg_json_key(j, "bits_per_weight"), c->is_float ? qg_json_null(j) : qg_json_num(j, c->bits_per_weight);
  if (c->fit_value) qg_json_key(j, "fit_value"), qg_json_str(j, c->fit_value);
  if (c->n_trials) {
    qg_json_key(j, "fit_trials");
    qg_json_arr_begin(j);
    for (int v = 0; v < c->n_trials; v++) {
      qg_json_obj_begin(j);
      qg_json_key(j, "value"), qg_json_str(j, c->trial_values[v]);
      qg_json_key(j, "artifact_bytes"), qg_json_int(j, c->trial_bytes[v]);
      qg_json_obj_end(j);
    }
    qg_json_arr_end(j);
  }
  qg_json_key(j, "cache");
  qg_json_obj_begin(j);
  qg_json_key(j, "train_key"), c->train_key[0] ? qg_json_str(j, c->train_key) : qg_json_null(j);
  qg_json_key(j, "artifact_key"), c->artifact_key[0] ? qg_json_str(j, c->artifact_key) : qg_json_null(j);
  qg_json_key(j, "eval_key"), qg_json_str(j, c->eval_key);
  qg_json_key(j, "reused"), qg_json_int(j, c->reused);
  qg_json_obj_end(j);
  qg_json_key(j, "tokens"), qg_json_int(j, (int64_t)c->tok.n);
  boot_json(j, "kld", &c->kld, 0);
  qg_json_key(j, "kld_p99"), qg_json_num(j, c->kld_p99);
  boot_json(j, "nll", &c->nll, 0);
  boot_json(j, "bpb", &c->bpb, 0);
  boot_json(j, "ln_ppl_ratio", &c->ln_ppl_ratio, 0);
  qg_json_key(j, "ppl_ratio");
  qg_json_obj_begin(j);
  qg_json_key(j, "estimate"), qg_json_num(j, exp(c->ln_ppl_ratio.estimate));
  qg_json_key(j, "lo"), qg_json_num(j, exp(c->ln_ppl_ratio.lo));
  qg_json_key(j, "hi"), qg_json_num(j, exp(c->ln_ppl_ratio.hi));
  qg_json_obj_end(j);
  qg_json_key(j, "same_top"), qg_json_num(j, c->same_top);
  if (!is_base) {
    qg_json_key(j, "vs_baseline");
    qg_json_obj_begin(j);
    for (int m = 0; m < 4; m++) boot_json(j, qg_metric_name((qg_metric)m), &c->d[m], 1);
    qg_json_key(j, "p_holm"), qg_json_num(j, c->p_holm);
    qg_json_key(j, "verdict"), qg_json_str(j, qg_verdict_name(c->verdict));
    qg_json_obj_end(j);
  }
  qg_json_key(j, "tensors");
  qg_json_arr_begin(j);
  for (int t = 0; t < c->n_tensors; t++) {
    const qg_lab_tensor *x = &c->tensors[t];
    qg_json_obj_begin(j);
    qg_json_key(j, "name"), qg_json_str(j, x->name);
    qg_json_key(j, "method"), qg_json_str(j, x->method);
    qg_json_key(j, "options"), qg_json_str(j, x->options);
    qg_json_key(j, "numel"), qg_json_int(j, x->numel);
    qg_json_key(j, "bytes"), qg_json_int(j, x->bytes);
    qg_json_key(j, "bits_per_weight"), qg_json_num(j, x->bits_per_weight);
    qg_json_key(j, "mse"), qg_json_num(j, x->mse);
    qg_json_key(j, "hessian_rel_err"), qg_json_num(j, x->herr);
    qg_json_obj_end(j);
  }
  qg_json_arr_end(j);
  (void)r;
  qg_json_obj_end(j);
}

qg_status qg_lab_result_json(const qg_lab_result *r, qg_buf *out) {
  const qg_lab_hypothesis *h = r->h;
  int base = qg_lab_arm_index(h, h->baseline), hl = r->headline;
  qg_json j;
  qg_json_init(&j, out, 1);
  qg_json_obj_begin(&j);
  qg_json_key(&j, "schema_version"), qg_json_int(&j, QG_LAB_SCHEMA_VERSION);
  qg_json_key(&j, "id"), qg_json_str(&j, h->id);
  qg_json_key(&j, "hypothesis"), qg_json_str(&j, h->hypothesis);
  qg_json_key(&j, "file"), qg_json_str(&j, h->path);
  qg_json_key(&j, "notes"), h->notes ? qg_json_str(&j, h->notes) : qg_json_null(&j);
  qg_json_key(&j, "published");
  if (h->published || h->published_arm) {
    qg_json_obj_begin(&j);
    qg_json_key(&j, "text"), h->published ? qg_json_str(&j, h->published) : qg_json_null(&j);
    qg_json_key(&j, "arm"), h->published_arm ? qg_json_str(&j, h->published_arm) : qg_json_null(&j);
    qg_json_key(&j, "value"), qg_json_num(&j, h->published_value);
    if (h->published_arm) {
      const qg_lab_armsum *s = &r->arms[qg_lab_arm_index(h, h->published_arm)];
      qg_json_key(&j, "inside_interval"), qg_json_bool(&j, h->published_value >= s->lo && h->published_value <= s->hi);
    }
    qg_json_obj_end(&j);
  } else {
    qg_json_null(&j);
  }
  qg_json_key(&j, "verdict");
  qg_json_obj_begin(&j);
  qg_json_key(&j, "result"), qg_json_str(&j, qg_verdict_name(r->verdict));
  qg_json_key(&j, "confidence"), qg_json_num(&j, r->confidence);
  qg_json_key(&j, "reproductions_agree"), qg_json_int(&j, r->agree);
  qg_json_key(&j, "reproductions"), qg_json_int(&j, r->n_repro);
  qg_json_key(&j, "headline");
  qg_json_obj_begin(&j);
  qg_json_key(&j, "arm"), qg_json_str(&j, h->arms[hl].name);
  qg_json_key(&j, "metric"), qg_json_str(&j, qg_metric_name(h->metric));
  qg_json_key(&j, "difference"), qg_json_str(&j, "arm - baseline, averaged over seeds");
  qg_json_key(&j, "estimate"), qg_json_num(&j, r->arms[hl].est);
  qg_json_key(&j, "lo"), qg_json_num(&j, r->arms[hl].lo);
  qg_json_key(&j, "hi"), qg_json_num(&j, r->arms[hl].hi);
  qg_json_key(&j, "artifact_bytes"), qg_json_int(&j, r->cells[hl * r->n_seeds].artifact_bytes);
  qg_json_obj_end(&j);
  qg_json_obj_end(&j);
  qg_json_key(&j, "decision");
  qg_json_obj_begin(&j);
  qg_json_key(&j, "metric"), qg_json_str(&j, qg_metric_name(h->metric));
  qg_json_key(&j, "unit"), qg_json_str(&j, metric_unit[h->metric]);
  qg_json_key(&j, "expect"), qg_json_str(&j, h->expect < 0 ? "lower" : "higher");
  qg_json_key(&j, "margin"), qg_json_num(&j, h->margin);
  qg_json_key(&j, "alpha"), qg_json_num(&j, h->alpha);
  qg_json_key(&j, "rule"), h->rule_contest ? qg_json_str(&j, "contest") : qg_json_null(&j);
  qg_json_key(&j, "interval"), qg_json_str(&j, interval_text());
  qg_json_key(&j, "correction"), qg_json_str(&j, "holm-bonferroni over the compared arms, per seed");
  qg_json_key(&j, "p_value"), qg_json_str(&j, "one-sided, (c+1)/(n+1), c = replicates of the null-centred statistic at "
                                               "least as extreme as observed");
  qg_json_key(&j, "resamples"), qg_json_int(&j, h->resamples);
  qg_json_key(&j, "bootstrap_seed"), qg_json_int(&j, (int64_t)h->bootstrap_seed);
  qg_json_key(&j, "mean_interval_inflation_kld"), qg_json_num(&j, r->mean_ratio_kld);
  qg_json_key(&j, "budget");
  if (h->has_budget) {
    qg_json_obj_begin(&j);
    qg_json_key(&j, "bytes"), h->budget_bytes ? qg_json_int(&j, h->budget_bytes) : qg_json_null(&j);
    qg_json_key(&j, "equal"), qg_json_num(&j, h->budget_equal);
    qg_json_key(&j, "code_bytes"), qg_json_int(&j, h->budget_code_bytes);
    qg_json_obj_end(&j);
  } else {
    qg_json_null(&j);
  }
  qg_json_obj_end(&j);
  setup_json(&j, r);
  qg_json_key(&j, "arms");
  qg_json_arr_begin(&j);
  for (int a = 0; a < h->n_arms; a++) {
    const qg_lab_arm *arm = &h->arms[a];
    qg_json_obj_begin(&j);
    qg_json_key(&j, "name"), qg_json_str(&j, arm->name);
    qg_json_key(&j, "label"), qg_json_str(&j, arm->label ? arm->label : arm->name);
    const char *spec = arm->allocates ? r->alloc[a].spec : arm->spec;
    qg_json_key(&j, "spec"), spec ? qg_json_str(&j, spec) : qg_json_null(&j);
    qg_json_key(&j, "spec_file"), arm->spec_file ? qg_json_str(&j, arm->spec_file) : qg_json_null(&j);
    qg_json_key(&j, "float"), qg_json_bool(&j, arm->is_float);
    qg_json_key(&j, "compressor"), qg_json_str(&j, arm_compressor(h, arm));
    qg_json_key(&j, "allocate");
    if (arm->allocates) {
      qg_json_obj_begin(&j);
      qg_json_key(&j, "budget"), qg_json_int(&j, arm->alloc_budget);
      qg_json_key(&j, "candidates"), arm->alloc_candidates ? qg_json_str(&j, arm->alloc_candidates) : qg_json_null(&j);
      qg_json_key(&j, "groups"), qg_json_str(&j, arm->alloc_groups ? arm->alloc_groups : "roles");
      qg_json_key(&j, "sensitivity"), qg_json_str(&j, arm->alloc_sensitivity ? arm->alloc_sensitivity : "(measured in place)");
      const qg_lab_alloc *al = &r->alloc[a];
      qg_json_key(&j, "repair_rounds"), qg_json_int(&j, al->repair_rounds);
      qg_json_key(&j, "repair_measured_bytes"), qg_json_int(&j, al->measured_bytes);
      qg_json_key(&j, "predicted_kld"), qg_json_num(&j, al->predicted_kld);
      qg_json_key(&j, "predicted_bytes"), qg_json_int(&j, al->predicted_bytes);
      qg_json_key(&j, "seconds"), qg_json_num(&j, al->seconds);
      qg_json_key(&j, "from_cache"), qg_json_bool(&j, al->reused);
      qg_json_obj_end(&j);
    } else {
      qg_json_null(&j);
    }
    qg_json_key(&j, "baseline"), qg_json_bool(&j, a == base);
    qg_json_key(&j, "expect"), qg_json_str(&j, qg_lab_arm_expect(h, a) < 0 ? "lower" : "higher");
    qg_json_key(&j, "train");
    if (arm->trains) {
      qg_json_obj_begin(&j);
      for (int k = 0; k < arm->n_train; k++) qg_json_key(&j, arm->train[k].key), qg_json_str(&j, arm->train[k].value);
      qg_json_obj_end(&j);
    } else {
      qg_json_null(&j);
    }
    qg_json_key(&j, "compared"), qg_json_bool(&j, qg_lab_arm_compared(h, a));
    if (qg_lab_arm_compared(h, a)) {
      const qg_lab_armsum *s = &r->arms[a];
      qg_json_key(&j, "summary");
      qg_json_obj_begin(&j);
      qg_json_key(&j, "verdict"), qg_json_str(&j, qg_verdict_name(s->verdict));
      qg_json_key(&j, "reproductions_agree"), qg_json_int(&j, s->agree);
      qg_json_key(&j, "confidence"), qg_json_num(&j, s->confidence);
      qg_json_key(&j, "estimate"), qg_json_num(&j, s->est);
      qg_json_key(&j, "lo"), qg_json_num(&j, s->lo);
      qg_json_key(&j, "hi"), qg_json_num(&j, s->hi);
      qg_json_key(&j, "ttest_p"), qg_json_num(&j, s->ttest_p);
      qg_json_obj_end(&j);
    }
    qg_json_key(&j, "seeds");
    qg_json_arr_begin(&j);
    for (int si = 0; si < r->n_seeds; si++) cell_json(&j, r, &r->cells[a * r->n_seeds + si], !qg_lab_arm_compared(h, a));
    qg_json_arr_end(&j);
    qg_json_obj_end(&j);
  }
  qg_json_arr_end(&j);
  qg_json_obj_end(&j);
  qg_buf_byte(out, '\n');
  return qg_buf_status(out);
}

/* ---- report.md ------------------------------------------------------------------------ */

/* A number in a compact form that keeps small KLDs readable. */
static void fmt(char *b, size_t cap, double x) {
  if (!isfinite(x)) snprintf(b, cap, "n/a");
  else if (x == 0) snprintf(b, cap, "0");
  else if (fabs(x) >= 1e-3 && fabs(x) < 1e5) snprintf(b, cap, "%.5g", x);
  else snprintf(b, cap, "%.3e", x);
}

static void est_ci(qg_buf *o, double e, double lo, double hi) {
  char a[32], b[32], c[32];
  fmt(a, sizeof a, e), fmt(b, sizeof b, lo), fmt(c, sizeof c, hi);
  qg_buf_printf(o, "%s [%s, %s]", a, b, c);
}

static void bytes_text(qg_buf *o, int64_t n) {
  char d[32];
  snprintf(d, sizeof d, "%lld", (long long)n);
  int len = (int)strlen(d);
  for (int i = 0; i < len; i++) {
    qg_buf_byte(o, (uint8_t)d[i]);
    if ((len - i - 1) % 3 == 0 && i < len - 1) qg_buf_byte(o, ',');
  }
}

static void verdict_line(qg_buf *o, const qg_lab_result *r) {
  const qg_lab_hypothesis *h = r->h;
  const qg_lab_armsum *s = &r->arms[r->headline];
  qg_buf_printf(o, "**Verdict: %s** — confidence %.3f, reproductions %d/%d, headline Δ%s (%s − %s) = ",
                qg_verdict_name(r->verdict), r->confidence, r->agree, r->n_repro, qg_metric_name(h->metric),
                h->arms[r->headline].name, h->baseline);
  est_ci(o, s->est, s->lo, s->hi);
  qg_buf_printf(o, " %s (%g%% CI)\n", metric_unit[h->metric], 100 * (1 - h->alpha));
}

static int n_compared(const qg_lab_hypothesis *h) {
  int n = 0;
  for (int a = 0; a < h->n_arms; a++) n += qg_lab_arm_compared(h, a);
  return n;
}

static void setup_md(qg_buf *o, const qg_lab_result *r) {
  const qg_lab_hypothesis *h = r->h;
  const qg_lab_setup *s = &r->setup;
  qg_buf_printf(o, "## Setup\n\n| | |\n|---|---|\n");
  if (h->model) qg_buf_printf(o, "| model | `%s` (SHA-256 `%.16s…`) |\n", h->model, s->model_sha);
  else qg_buf_printf(o, "| model | trained by the arms (see below) |\n");
  qg_buf_printf(o, "| tokenizer | `%s` (SHA-256 `%.16s…`) |\n", h->tokenizer, s->tokenizer_sha);
  qg_buf_printf(o, "| validation | `%s` (SHA-256 `%.16s…`) |\n", h->val, s->val_sha);
  if (h->calib) qg_buf_printf(o, "| calibration | `%s` (SHA-256 `%.16s…`) |\n", h->calib, s->calib_sha);
  qg_buf_printf(o, "| tokens evaluated | %lld in %lld windows of %d (stride %d%s) |\n", (long long)s->tokens,
                (long long)s->windows, s->seq_len, s->stride, s->stride ? "" : ": the contest's eval_val");
  qg_buf_printf(o, "| reference | %s%s |\n", h->reference,
                strcmp(h->reference, "float") ? " (the float weights of this arm, per seed)" : " (the model itself)");
  qg_buf_printf(o, "| baseline | %s |\n| seeds |", h->baseline);
  for (int i = 0; i < r->n_seeds; i++) qg_buf_printf(o, " %llu", (unsigned long long)h->seeds[i]);
  qg_buf_printf(o, " |\n| decision | metric %s, expect %s, margin %g, alpha %g%s, Holm–Bonferroni over %d compared arm(s) |\n",
                qg_metric_name(h->metric), h->expect < 0 ? "lower" : "higher", h->margin, h->alpha,
                h->rule_contest ? ", rule: contest (also a t-test over seeds)" : "", n_compared(h));
  if (h->has_budget) {
    qg_buf_printf(o, "| budget | ");
    if (h->budget_bytes) bytes_text(o, h->budget_bytes), qg_buf_printf(o, " bytes");
    if (h->budget_bytes && h->budget_code_bytes)
      qg_buf_printf(o, " including %lld bytes of shipped code (each arm's artifact may use the rest)",
                    (long long)h->budget_code_bytes);
    if (h->budget_equal > 0) qg_buf_printf(o, "%sall arms within %g%% of each other", h->budget_bytes ? "; " : "", 100 * h->budget_equal);
    qg_buf_printf(o, " |\n");
  }
  qg_buf_printf(o, "| bootstrap | %d resamples, seed %llu |\n", h->resamples, (unsigned long long)h->bootstrap_seed);
  qg_buf_printf(o, "| quantgolf | %s, commit %s |\n| machine | %s, device %s |\n| started | %s |\n| wall time | %.1f s%s |\n\n",
                s->version, s->commit, s->machine, s->device, s->started, s->wall_seconds,
                s->reused_all ? " (every result from the cache)" : "");
}

static void results_md(qg_buf *o, const qg_lab_result *r) {
  const qg_lab_hypothesis *h = r->h;
  int base = qg_lab_arm_index(h, h->baseline);
  qg_buf_printf(o, "## Results\n\nIntervals are %g%% %s. KLD is KL(reference ‖ arm) per token in nats; PPL ratio = "
                "exp(mean NLL(arm) − mean NLL(reference)).\n\n", 100 * (1 - h->alpha), interval_text());
  qg_buf_printf(o, "| arm | seed | artifact bytes | bits/weight | KLD mean | KLD p99 | PPL ratio | NLL | BPB | same top | "
                "Δ%s vs %s | p (Holm) | verdict |\n|---|---|---:|---:|---|---:|---|---|---|---:|---|---:|---|\n",
                qg_metric_name(h->metric), h->baseline);
  for (int a = 0; a < h->n_arms; a++)
    for (int si = 0; si < r->n_seeds; si++) {
      const qg_lab_cell *c = &r->cells[a * r->n_seeds + si];
      char b1[32], b2[32];
      qg_buf_printf(o, "| %s%s | %llu | ", h->arms[a].name,
                    a == base ? " (baseline)" : !qg_lab_arm_compared(h, a) ? " (reference)" : "", (unsigned long long)c->seed);
      if (c->is_float) qg_buf_printf(o, "float | – | ");
      else bytes_text(o, c->artifact_bytes), qg_buf_printf(o, " | %.3f | ", c->bits_per_weight);
      est_ci(o, c->kld.estimate, c->kld.lo, c->kld.hi);
      fmt(b1, sizeof b1, c->kld_p99);
      qg_buf_printf(o, " | %s | ", b1);
      est_ci(o, exp(c->ln_ppl_ratio.estimate), exp(c->ln_ppl_ratio.lo), exp(c->ln_ppl_ratio.hi));
      qg_buf_printf(o, " | ");
      est_ci(o, c->nll.estimate, c->nll.lo, c->nll.hi);
      qg_buf_printf(o, " | ");
      est_ci(o, c->bpb.estimate, c->bpb.lo, c->bpb.hi);
      qg_buf_printf(o, " | %.4f | ", c->same_top);
      if (!qg_lab_arm_compared(h, a)) {
        qg_buf_printf(o, "– | – | – |\n");
        continue;
      }
      const qg_boot_result *d = &c->d[h->metric];
      est_ci(o, d->estimate, d->lo, d->hi);
      fmt(b2, sizeof b2, c->p_holm);
      qg_buf_printf(o, " | %s | %s |\n", b2, qg_verdict_name(c->verdict));
    }
  qg_buf_printf(o, "\n### Differences against the baseline, every metric\n\n"
                "| arm | seed | ΔKLD | ΔNLL | ΔBPB | Δbytes | p one-sided (%s) | iid interval (%s) | block / iid width |\n"
                "|---|---|---|---|---|---:|---:|---|---:|\n", qg_metric_name(h->metric), qg_metric_name(h->metric));
  for (int a = 0; a < h->n_arms; a++) {
    if (!qg_lab_arm_compared(h, a)) continue;
    for (int si = 0; si < r->n_seeds; si++) {
      const qg_lab_cell *c = &r->cells[a * r->n_seeds + si];
      qg_buf_printf(o, "| %s | %llu | ", h->arms[a].name, (unsigned long long)c->seed);
      for (int m = 0; m < 3; m++) est_ci(o, c->d[m].estimate, c->d[m].lo, c->d[m].hi), qg_buf_printf(o, " | ");
      if (c->is_float || r->cells[base * r->n_seeds + si].is_float) qg_buf_printf(o, "n/a (float) | ");
      else qg_buf_printf(o, "%+lld | ", (long long)c->d[QG_METRIC_BYTES].estimate);
      const qg_boot_result *d = &c->d[h->metric];
      char p[32], lo[32], hi[32];
      fmt(p, sizeof p, d->p_one_sided), fmt(lo, sizeof lo, d->iid_lo), fmt(hi, sizeof hi, d->iid_hi);
      qg_buf_printf(o, "%s | [%s, %s] | %.2f |\n", p, lo, hi, d->inflation);
    }
  }
  qg_buf_printf(o, "\nThe iid interval treats tokens as independent (as llama.cpp's ± does); the block interval is "
                "wider by the factor in the last column because tokens of one window are correlated. Mean "
                "block/iid width for the arms' own KLD: %.2f.\n\n", r->mean_ratio_kld);
  qg_buf_printf(o, "### Per arm over the seeds\n\n| arm | verdict | reproductions | confidence | Δ%s averaged over seeds |%s\n"
                "|---|---|---|---:|---|%s\n", qg_metric_name(h->metric), h->rule_contest ? " t-test p |" : "",
                h->rule_contest ? "---:|" : "");
  for (int a = 0; a < h->n_arms; a++) {
    if (!qg_lab_arm_compared(h, a)) continue;
    const qg_lab_armsum *s = &r->arms[a];
    qg_buf_printf(o, "| %s | %s | %d/%d | %.3f | ", h->arms[a].name, qg_verdict_name(s->verdict), s->agree, r->n_seeds,
                  s->confidence);
    est_ci(o, s->est, s->lo, s->hi);
    if (h->rule_contest) {
      char p[32];
      fmt(p, sizeof p, s->ttest_p);
      qg_buf_printf(o, " | %s", p);
    }
    qg_buf_printf(o, " |\n");
  }
  qg_buf_printf(o, "\nA reproduction (seed) succeeds when its interval for Δ%s lies beyond the margin in the expected "
                "direction and its Holm-corrected p ≤ alpha; it fails when the interval lies beyond zero the other way "
                "(or, with a margin, entirely inside ±margin); otherwise it is inconclusive. An arm's verdict needs "
                "every seed to agree; the hypothesis fails when any arm fails and succeeds when all succeed. "
                "Confidence is the fraction of bootstrap replicates, pooled over seeds, beyond the margin in the "
                "expected direction. The seed-averaged interval resamples evaluation windows only: how much the "
                "result moves between seeds (calibration draws, training runs) is what the reproductions column "
                "shows%s.\n\n", qg_metric_name(h->metric), h->rule_contest ? " and the t-test over seeds tests" : "");
}

static void fits_md(qg_buf *o, const qg_lab_result *r) {
  const qg_lab_hypothesis *h = r->h;
  int any = 0;
  for (int a = 0; a < h->n_arms; a++) any |= h->arms[a].fit_param != NULL;
  if (!any) return;
  qg_buf_printf(o, "## Fit to equal bytes\n\n| arm | seed | target | tried (value: bytes) | chosen |\n|---|---|---|---|---|\n");
  for (int a = 0; a < h->n_arms; a++) {
    const qg_lab_arm *arm = &h->arms[a];
    if (!arm->fit_param) continue;
    for (int si = 0; si < r->n_seeds; si++) {
      const qg_lab_cell *c = &r->cells[a * r->n_seeds + si];
      qg_buf_printf(o, "| %s | %llu | %s | ", arm->name, (unsigned long long)c->seed,
                    strcmp(arm->fit_to, "budget") ? arm->fit_to : "largest within budget");
      for (int v = 0; v < c->n_trials; v++) {
        qg_buf_printf(o, "%s%s=%s: ", v ? ", " : "", arm->fit_param, c->trial_values[v]);
        bytes_text(o, c->trial_bytes[v]);
      }
      qg_buf_printf(o, " | %s=%s |\n", arm->fit_param, c->fit_value ? c->fit_value : "?");
    }
  }
  qg_buf_printf(o, "\n");
}

static void tensors_md(qg_buf *o, const qg_lab_result *r) {
  const qg_lab_hypothesis *h = r->h;
  qg_buf_printf(o, "## Per-tensor bytes and error (seed %llu)\n\n", (unsigned long long)h->seeds[0]);
  for (int a = 0; a < h->n_arms; a++) {
    const qg_lab_cell *c = &r->cells[a * r->n_seeds];
    if (c->is_float) continue;
    qg_buf_printf(o, "<details><summary>%s: %d tensors, ", h->arms[a].name, c->n_tensors);
    bytes_text(o, c->artifact_bytes);
    qg_buf_printf(o, " bytes on disk</summary>\n\n| tensor | method | options | bits/weight | packed bytes | weight MSE | "
                  "Hessian rel. error |\n|---|---|---|---:|---:|---:|---:|\n");
    for (int t = 0; t < c->n_tensors; t++) {
      const qg_lab_tensor *x = &c->tensors[t];
      char m[32], e[32];
      fmt(m, sizeof m, x->mse), fmt(e, sizeof e, x->herr);
      qg_buf_printf(o, "| %s | %s | %s | %.3f | ", x->name, x->method, x->options, x->bits_per_weight);
      bytes_text(o, x->bytes);
      qg_buf_printf(o, " | %s | %s |\n", m, e);
    }
    qg_buf_printf(o, "\n</details>\n\n");
  }
}

qg_status qg_lab_report_md(const qg_lab_result *r, const char *command, qg_buf *o) {
  const qg_lab_hypothesis *h = r->h;
  qg_buf_printf(o, "# %s\n\n> %s\n\n", h->id, h->hypothesis);
  verdict_line(o, r);
  qg_buf_printf(o, "\nThe verdict is computed from the numbers below (`quantgolf run --check reports/%s/result.json` "
                "recomputes it).\n\n", h->id);
  setup_md(o, r);
  qg_buf_printf(o, "## Arms\n\n| arm | spec | trained |\n|---|---|---|\n");
  for (int a = 0; a < h->n_arms; a++) {
    const qg_lab_arm *arm = &h->arms[a];
    qg_buf_printf(o, "| %s | `", arm->name);
    const char *spec = arm->allocates ? r->alloc[a].spec : arm->spec;
    for (const char *p = spec ? spec : arm->spec_file; *p; p++)
      if (*p == '|') qg_buf_str(o, "\\|");
      else if (*p == '\n') qg_buf_byte(o, ' ');
      else qg_buf_byte(o, (uint8_t)*p);
    qg_buf_printf(o, "` | ");
    if (!arm->trains) qg_buf_printf(o, "no");
    for (int k = 0; k < arm->n_train; k++)
      if (strcmp(arm->train[k].key, "train")) qg_buf_printf(o, "%s%s=%s", k ? " " : "", arm->train[k].key, arm->train[k].value);
    qg_buf_printf(o, " |\n");
  }
  qg_buf_printf(o, "\n");
  for (int a = 0; a < h->n_arms; a++) {
    const qg_lab_arm *arm = &h->arms[a];
    if (!arm->allocates) continue;
    const qg_lab_alloc *al = &r->alloc[a];
    qg_buf_printf(o, "Arm %s is the allocation solver's choice (exact multiple-choice knapsack, 1-byte granularity) "
                  "from `%s` under a budget of %lld bytes%s%s: predicted KLD %.6g at %lld bytes (the sum of the "
                  "table's per-group deltas and marginal bytes; measured below), solved when the experiment ran "
                  "in %.1f s%s.\n\n", arm->name,
                  arm->alloc_sensitivity ? arm->alloc_sensitivity : "a table measured in place",
                  (long long)arm->alloc_budget, arm->alloc_candidates ? ", candidates " : "",
                  arm->alloc_candidates ? arm->alloc_candidates : "", al->predicted_kld,
                  (long long)al->predicted_bytes, al->seconds, al->reused ? " (this run read it from the cache)" : "");
    if (al->repair_rounds)
      qg_buf_printf(o, "Its first choice's real artifact was over the budget (compressed bytes are not additive over "
                    "tensors): re-solved %d time(s), each time with the measured excess charged to the options that "
                    "choice took; that artifact measured %lld bytes (%s).\n\n", al->repair_rounds, (long long)al->measured_bytes,
                    arm_compressor(r->h, arm));
  }
  results_md(o, r);
  fits_md(o, r);
  qg_buf_printf(o, "## Figures\n\n![KLD vs artifact bytes](figures/kld_vs_bytes.svg)\n\n"
                "![Per-token KLD distribution](figures/kld_distribution.svg)\n\n"
                "![Weight error by role](figures/tensor_error_by_role.svg)\n\n");
  tensors_md(o, r);
  if (h->notes) qg_buf_printf(o, "## Notes\n\n%s\n\n", h->notes);
  if (h->published || h->published_arm) {
    qg_buf_printf(o, "## Against the published figure\n\n%s\n\n", h->published ? h->published : "");
    if (h->published_arm) {
      const qg_lab_armsum *s = &r->arms[qg_lab_arm_index(h, h->published_arm)];
      int inside = h->published_value >= s->lo && h->published_value <= s->hi;
      char v[32], e[32], lo[32], hi[32];
      fmt(v, sizeof v, h->published_value), fmt(e, sizeof e, s->est), fmt(lo, sizeof lo, s->lo), fmt(hi, sizeof hi, s->hi);
      qg_buf_printf(o, "Computed: the published Δ%s (%s − %s) of %s lies %s this experiment's %g%% interval %s [%s, %s]%s.\n\n",
                    qg_metric_name(h->metric), h->published_arm, h->baseline, v, inside ? "inside" : "outside",
                    100 * (1 - h->alpha), e, lo, hi,
                    inside ? "" : h->published_value < s->lo ? " (below it)" : " (above it)");
    }
  }
  qg_buf_printf(o, "## Reproduce\n\n```\n%s\n```\n", command);
  return qg_buf_status(o);
}

/* ---- figures -------------------------------------------------------------------------- */

static const char *const roles[] = {"attn.c_q", "attn.c_k", "attn.c_v", "attn.proj", "mlp.fc", "mlp.proj", "tok_emb",
                                    "lm_head", NULL};

static int role_of(const char *name) {
  for (int i = 0; roles[i]; i++)
    if (strstr(name, roles[i])) return i;
  return -1;
}

static qg_status write_svg(const char *dir, const char *name, qg_buf *b) {
  char path[4300];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  QG_TRY(qg_buf_status(b));
  return qg_write_file_atomic(path, b->p, b->n);
}

static qg_status figures(const qg_lab_result *r, const char *dir) {
  const qg_lab_hypothesis *h = r->h;
  int na = h->n_arms, ns = r->n_seeds;
  qg_svg_point *pt = calloc((size_t)na, sizeof *pt);
  const char **names = calloc((size_t)na, sizeof *names);
  const double **series = calloc((size_t)na, sizeof *series);
  size_t *counts = calloc((size_t)na, sizeof *counts);
  double *val = calloc((size_t)na * 8, sizeof *val);
  qg_status s = pt && names && series && counts && val ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
  int np = 0;
  for (int a = 0; !s && a < na; a++) {
    const qg_lab_cell *c = &r->cells[a * ns];
    names[a] = h->arms[a].name, series[a] = c->tok.kld, counts[a] = c->tok.n;
    if (c->is_float) continue;
    pt[np++] = (qg_svg_point){h->arms[a].name, (double)c->artifact_bytes, c->kld.estimate, c->kld.lo, c->kld.hi, NAN, NAN};
  }
  int log_y = 1;
  for (int i = 0; i < np; i++) log_y &= pt[i].y > 0 && pt[i].y_lo > 0;
  qg_buf b;
  qg_buf_init(&b);
  if (!s && np) {
    qg_svg_axes ax = {"Mean KLD to the reference vs artifact bytes (first seed)", "artifact bytes",
                      "mean KLD (nats/token)", 0, log_y, h->budget_bytes ? (double)h->budget_bytes : NAN,
                      "budget", NAN, NULL};
    if (!(s = qg_svg_scatter(&b, &ax, pt, np))) s = write_svg(dir, "kld_vs_bytes.svg", &b);
  }
  qg_buf_free(&b);
  qg_buf_init(&b);
  if (!s) {
    qg_svg_axes ax = {"Per-token KLD to the reference, empirical CDF (first seed)", "KLD (nats)", "fraction of tokens", 1,
                      0, NAN, NULL, NAN, NULL};
    if (!(s = qg_svg_ecdf(&b, &ax, names, series, counts, na))) s = write_svg(dir, "kld_distribution.svg", &b);
  }
  qg_buf_free(&b);
  /* weight MSE per role: Σ mse·numel / Σ numel over the role's tensors */
  int nr = 0;
  while (roles[nr]) nr++;
  double *num = calloc((size_t)nr * (size_t)na, sizeof *num), *den = calloc((size_t)nr * (size_t)na, sizeof *den);
  if (!s && (!num || !den)) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  const char **snames = calloc((size_t)na, sizeof *snames);
  int nser = 0;
  for (int a = 0; !s && a < na; a++) {
    const qg_lab_cell *c = &r->cells[a * ns];
    if (c->is_float) continue;
    for (int t = 0; t < c->n_tensors; t++) {
      int k = role_of(c->tensors[t].name);
      if (k < 0 || !isfinite(c->tensors[t].mse)) continue;
      num[k * na + nser] += c->tensors[t].mse * (double)c->tensors[t].numel;
      den[k * na + nser] += (double)c->tensors[t].numel;
    }
    snames[nser++] = h->arms[a].name;
  }
  if (!s && nser) {
    const char *gn[16];
    int ng = 0;
    double *v = calloc((size_t)nr * (size_t)nser, sizeof *v);
    if (!v) s = qg_fail(QG_ERR_NOMEM, "out of memory");
    for (int k = 0; !s && k < nr; k++) {
      int present = 0;
      for (int a = 0; a < nser; a++) present |= den[k * na + a] > 0;
      if (!present) continue;
      for (int a = 0; a < nser; a++) v[ng * nser + a] = den[k * na + a] > 0 ? num[k * na + a] / den[k * na + a] : NAN;
      gn[ng++] = roles[k];
    }
    int pos = 1;
    for (int i = 0; i < ng * nser; i++) pos &= !(v[i] <= 0);
    qg_buf_init(&b);
    if (!s && ng) {
      qg_svg_axes ax = {"Weight MSE by role (first seed)", "mean squared weight error", NULL, pos, 0, NAN, NULL, NAN, NULL};
      if (!(s = qg_svg_bars(&b, &ax, gn, ng, snames, nser, v, NULL))) s = write_svg(dir, "tensor_error_by_role.svg", &b);
    }
    qg_buf_free(&b);
    free(v);
  }
  free(num), free(den), free(snames);
  free(pt), free(names), free(series), free(counts), free(val);
  return s;
}


qg_status qg_lab_write_report(const qg_lab_result *r, const char *out_dir, const char *command) {
  char dir[4096], fig[4200], path[4300];
  snprintf(dir, sizeof dir, "%s/%s", out_dir, r->h->id);
  snprintf(fig, sizeof fig, "%s/figures", dir);
  QG_TRY(qg_mkdir_p(fig));
  QG_TRY(figures(r, fig));
  qg_buf b;
  qg_buf_init(&b);
  qg_status s = qg_lab_result_json(r, &b);
  snprintf(path, sizeof path, "%s/result.json", dir);
  if (!s) s = qg_write_file_atomic(path, b.p, b.n);
  qg_buf_free(&b);
  qg_buf_init(&b);
  if (!s) s = qg_lab_report_md(r, command, &b);
  snprintf(path, sizeof path, "%s/report.md", dir);
  if (!s) s = qg_write_file_atomic(path, b.p, b.n);
  qg_buf_free(&b);
  return s;
}
