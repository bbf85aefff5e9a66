/* quantgolf kld: a model against its full-precision base on the same windows, in one
 * pass (no logit files): KL divergence first, then PPL, BPB and paired statistics, as
 * llama.cpp's perplexity --kl-divergence reports them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "comm/comm.h"
#include "core/file.h"
#include "cli/json_doc.h"
#include "eval/eval.h"
#include "eval/kldstats.h"
#include "lab/stats.h"
#include "quant/artifact.h"

void qg_cmd_kld_help(void) {
  printf(
      "usage: quantgolf kld --base M0 --model M1 [--model M2 ...] --val 'DIR/fineweb_val_*.bin' --tokenizer T\n"
      "                     [--seq-len 1024] [--stride S] [--max-tokens N] [--batch B]\n"
      "                     [--mlp-power P] [--device cpu|cuda|auto] [--precision fp32|bf16] [--json]\n"
      "                     [--dump-token-kld FILE] [--threads N] [--allow-tokenizer-mismatch]\n\n"
      "Runs both models over the same windows (as in `quantgolf eval`) and prints:\n"
      "  PPL of each, their ratio and ln-ratio with uncertainties from the covariance of the\n"
      "  two runs, the correlation of per-token ln-probabilities; KLD(base || model) mean +-\n"
      "  standard error, median, min, max and the 99.9/99/95/90/10/5/1/0.1%% points (exact over\n"
      "  the full vocabulary, fp64, no clamping); the change in the correct token's probability\n"
      "  (mean, RMS, percentiles); the same-top-token rate; val_loss and val_bpb of both.\n"
      "  Several --model: the base's forward pass runs once; each model is reported as above\n"
      "  (with its file's bytes), then each against the first, paired on the same tokens:\n"
      "  dKLD, dNLL, dBPB with 95%% paired block-bootstrap intervals over the windows (the\n"
      "  experiment runner's statistics) and the iid interval beside them.\n"
      "  --dump-token-kld FILE  per-token records for paired statistics later: an 16-byte\n"
      "                         header (\"QGKLD001\", uint64 count), then per scored token\n"
      "                         three little-endian float32: kld, nll_base, nll_model\n"
      "  --comm self|mpi|auto   under mpirun: windows split over the ranks, every figure and the\n"
      "                         dump those of one rank (rank 0 prints and writes)\n"
      "  --nproc N              N ranks on this machine: the same command under `mpirun -np N`\n");
}


typedef struct {
  qg_kldstats st;
  qg_atomic_file *dump;
  qg_status err;
  int64_t n;
} kld_sink_ctx;

static void kld_sink(void *c, const qg_token_stat *t, int32_t prev, int32_t tgt, int bytes) {
  (void)prev;
  (void)tgt;
  (void)bytes;
  kld_sink_ctx *k = c;
  if (k->err) return;
  qg_kld_token r = {t->nll_a, t->nll_b, t->kld, t->p_a, t->p_b, t->top_a == t->top_b};
  if (r.kld < 0) r.kld = 0; /* fp64 rounding can leave -1e-17 for identical rows */
  k->err = qg_kldstats_add(&k->st, &r);
  if (!k->err && k->dump) {
    float rec[3] = {(float)r.kld, (float)r.nll_base, (float)r.nll_model};
    k->err = qg_atomic_write(k->dump, rec, sizeof rec);
  }
  k->n++;
}

static void est_json(qg_json *j, const char *key, qg_est e) {
  qg_json_key(j, key);
  qg_json_num(j, e.value);
  char k2[64];
  snprintf(k2, sizeof k2, "%s_se", key);
  qg_json_key(j, k2);
  qg_json_num(j, e.unc);
}

static void run_json(qg_json *j, const char *key, const char *path, double nll, int64_t tokens, int64_t bytes) {
  qg_cli_json_file_open(j, key, path);
  qg_json_key(j, "val_loss"), qg_json_num(j, nll / (double)tokens);
  qg_json_key(j, "val_bpb"), qg_json_num(j, qg_bpb(nll, bytes));
  qg_json_key(j, "ppl"), qg_json_num(j, exp(nll / (double)tokens));
  qg_json_obj_end(j);
}

static void pct_json(qg_json *j, const double *v) {
  for (int i = 0; i < QG_KLD_NPCT; i++) {
    qg_json_key(j, qg_kld_pct_name[i]);
    qg_json_num(j, v[i]);
  }
}

/* The fields of one base-model comparison, into an open object (j is a pointer so the same
 * writer serves the single-model document and each entry of the several-model one). */
static void kld_fields(qg_json *jp, const char *base, const char *model, const qg_eval_totals *t,
                       const qg_kld_summary *s, const qg_eval_cli *c) {
#define j (*jp)
  qg_json_key(&j, "tokens"), qg_json_int(&j, t->tokens);
  qg_json_key(&j, "bytes"), qg_json_int(&j, t->bytes);
  qg_json_key(&j, "seq_len"), qg_json_int(&j, c->opts.seq_len);
  qg_json_key(&j, "stride"), qg_json_int(&j, c->opts.stride);
  run_json(&j, "base", base, t->nll_a, t->tokens, t->bytes);
  run_json(&j, "model", model, t->nll_b, t->tokens, t->bytes);
  /* "ppl" is a number wherever it appears; the comparison of the two has its own name */
  qg_json_key(&j, "ppl_comparison");
  qg_json_obj_begin(&j);
  est_json(&j, "base_ppl", s->ppl_base);
  est_json(&j, "model_ppl", s->ppl_model);
  est_json(&j, "ratio", s->ppl_ratio);
  est_json(&j, "ln_ratio", s->ln_ppl_ratio);
  est_json(&j, "diff", s->ppl_diff);
  qg_json_key(&j, "ln_prob_cov"), qg_json_num(&j, s->ln_prob_cov);
  qg_json_key(&j, "ln_prob_corr"), qg_json_num(&j, s->ln_prob_corr);
  qg_json_obj_end(&j);
  qg_json_key(&j, "kld");
  qg_json_obj_begin(&j);
  qg_json_key(&j, "mean"), qg_json_num(&j, s->kld.value);
  qg_json_key(&j, "se"), qg_json_num(&j, s->kld.unc);
  qg_json_key(&j, "median"), qg_json_num(&j, s->kld_pct[5]);
  qg_json_key(&j, "min"), qg_json_num(&j, s->kld_min);
  qg_json_key(&j, "max"), qg_json_num(&j, s->kld_max);
  pct_json(&j, s->kld_pct);
  qg_json_obj_end(&j);
  /* in percentage points, as the text report prints them, and labelled so */
  qg_json_key(&j, "delta_p");
  qg_json_obj_begin(&j);
  qg_json_key(&j, "unit"), qg_json_str(&j, "percent");
  qg_json_key(&j, "mean"), qg_json_num(&j, 100 * s->dp.value);
  qg_json_key(&j, "se"), qg_json_num(&j, 100 * s->dp.unc);
  qg_json_key(&j, "rms"), qg_json_num(&j, 100 * s->dp_rms.value);
  qg_json_key(&j, "rms_se"), qg_json_num(&j, 100 * s->dp_rms.unc);
  qg_json_key(&j, "min"), qg_json_num(&j, 100 * s->dp_min);
  qg_json_key(&j, "max"), qg_json_num(&j, 100 * s->dp_max);
  double dp_pct[QG_KLD_NPCT];
  for (int i = 0; i < QG_KLD_NPCT; i++) dp_pct[i] = 100 * s->dp_pct[i];
  pct_json(&j, dp_pct);
  qg_json_obj_end(&j);
  qg_json_key(&j, "same_top");
  qg_json_obj_begin(&j);
  qg_json_key(&j, "rate"), qg_json_num(&j, s->same_top.value);
  qg_json_key(&j, "se"), qg_json_num(&j, s->same_top.unc);
  qg_json_obj_end(&j);
#undef j
}

static void print_json(const char *base, const char *model, const qg_eval_totals *t, const qg_kld_summary *s,
                       const qg_eval_cli *c, const char *device) {
  qg_buf b;
  qg_json j;
  qg_cli_json_begin(&j, &b, "kld");
  kld_fields(&j, base, model, t, s, c);
  qg_json_key(&j, "device"), qg_json_str(&j, device);
  qg_json_key(&j, "seconds"), qg_json_num(&j, t->seconds);
  qg_cli_json_end(&j, &b);
}

static void print_text(const char *base, const char *model, const qg_eval_totals *t, const qg_kld_summary *s) {
  printf("base:  %s\nmodel: %s\ntokens: %lld  bytes: %lld\n\n", base, model, (long long)t->tokens, (long long)t->bytes);
  printf("====== KL divergence (base || model) ======\n");
  printf("Mean    KLD: %10.6f +- %.6f\n", s->kld.value, s->kld.unc);
  printf("Maximum KLD: %10.6f\n", s->kld_max);
  static const int order[] = {10, 9, 8, 7, 5, 3, 2, 1, 0}; /* 99.9 99 95 90 50 10 5 1 0.1 */
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
    printf("%-7s KLD: %10.6f\n", order[i] == 5 ? "Median" : qg_kld_pct_name[order[i]], s->kld_pct[order[i]]);
  printf("Minimum KLD: %10.6f\n\n", s->kld_min);
  printf("====== Perplexity ======\n");
  printf("PPL(base)           : %10.4f +- %.4f\n", s->ppl_base.value, s->ppl_base.unc);
  printf("PPL(model)          : %10.4f +- %.4f\n", s->ppl_model.value, s->ppl_model.unc);
  printf("Cor(ln PPL(model), ln PPL(base)): %.2f%%\n", 100.0 * s->ln_prob_corr);
  printf("Mean ln(PPL(model)/PPL(base)): %10.6f +- %.6f\n", s->ln_ppl_ratio.value, s->ln_ppl_ratio.unc);
  printf("Mean PPL(model)/PPL(base)    : %10.6f +- %.6f\n", s->ppl_ratio.value, s->ppl_ratio.unc);
  printf("Mean PPL(model)-PPL(base)    : %10.6f +- %.6f\n\n", s->ppl_diff.value, s->ppl_diff.unc);
  printf("====== Token probability ======\n");
  printf("Mean    Dp: %8.4f%% +- %.4f%%\n", 100 * s->dp.value, 100 * s->dp.unc);
  printf("RMS     Dp: %8.4f%% +- %.4f%%\n", 100 * s->dp_rms.value, 100 * s->dp_rms.unc);
  printf("Maximum Dp: %8.4f%%\n", 100 * s->dp_max);
  for (size_t i = 0; i < sizeof order / sizeof order[0]; i++)
    printf("%-7s Dp: %8.4f%%\n", order[i] == 5 ? "Median" : qg_kld_pct_name[order[i]], 100 * s->dp_pct[order[i]]);
  printf("Minimum Dp: %8.4f%%\n", 100 * s->dp_min);
  printf("Same top p: %8.4f%% +- %.4f%%\n\n", 100 * s->same_top.value, 100 * s->same_top.unc);
  printf("====== Contest metrics ======\n");
  printf("base : val_loss %.8f  val_bpb %.8f\n", t->nll_a / (double)t->tokens, qg_bpb(t->nll_a, t->bytes));
  printf("model: val_loss %.8f  val_bpb %.8f\n", t->nll_b / (double)t->tokens, qg_bpb(t->nll_b, t->bytes));
  printf("model file: %lld bytes\n", qg_cli_file_bytes(model));
}

/* ---- several models over one base pass ------------------------------------------------ */

typedef struct {
  int n;                 /* models */
  size_t cap, count;     /* tokens per model */
  qg_kldstats *st;
  double *kld, *nll, *bytes; /* [model][token] (bytes: one row) */
  qg_status err;
} many_ctx;

static void many_sink(void *c, int model, const qg_token_stat *t, int32_t prev, int32_t tgt, int bytes) {
  (void)prev, (void)tgt;
  many_ctx *k = c;
  if (k->err) return;
  qg_kld_token r = {t->nll_a, t->nll_b, t->kld < 0 ? 0 : t->kld, t->p_a, t->p_b, t->top_a == t->top_b};
  k->err = qg_kldstats_add(&k->st[model], &r);
  size_t i = (size_t)k->st[model].count - 1;
  if (i >= k->cap) {
    k->err = qg_fail(QG_ERR_INTERNAL, "more scored tokens than the plan holds");
    return;
  }
  k->kld[(size_t)model * k->cap + i] = r.kld;
  k->nll[(size_t)model * k->cap + i] = r.nll_model;
  if (model == 0) k->bytes[i] = bytes;
}

/* model m minus model 0 on the same tokens: the paired block bootstrap of the experiment
 * runner (blocks = evaluation windows), 95 % percentile interval */
static qg_status paired(const many_ctx *k, int m, const size_t *ws, size_t nw, int metric, qg_boot_result *out) {
  size_t n = k->cap;
  double *d = malloc(sizeof *d * (n ? n : 1));
  if (!d) return qg_fail(QG_ERR_NOMEM, "out of memory");
  const double *x = metric == 0 ? k->kld : k->nll;
  for (size_t i = 0; i < n; i++) d[i] = (x[(size_t)m * n + i] - x[i]) / (metric == 2 ? 0.69314718055994530942 : 1.0);
  qg_boot_data bd = {d, metric == 2 ? k->bytes : NULL, n, ws, nw};
  qg_boot_opts o = {2000, 1, 0.05, 0, 0};
  qg_status s = qg_boot_ratio(&bd, &o, out);
  free(d);
  return s;
}

static int kld_many(const char *base, const char *const *models, int n, qg_eval_cli *c) {
  const qg_ops *ops;
  qg_status s = qg_ops_by_name(c->device, &ops);
  if (s) return qg_cli_report("kld", s);
  qg_gpt m0, *m = calloc((size_t)n, sizeof *m);
  qg_gpt **mp = calloc((size_t)n, sizeof *mp);
  many_ctx k = {.n = n, .st = calloc((size_t)n, sizeof *k.st)};
  if (!m || !mp || !k.st) {
    free(m), free(mp), free(k.st);
    return qg_cli_report("kld", qg_fail(QG_ERR_NOMEM, "out of memory"));
  }
  int loaded = 0, data_open = 0;
  if (!(s = qg_gpt_load(&m0, base, &c->gopt, ops))) loaded = 1;
  int nm = 0;
  for (; !s && nm < n; nm++) {
    if ((s = qg_gpt_load(&m[nm], models[nm], &c->gopt, ops))) break;
    mp[nm] = &m[nm];
    if (m[nm].cfg.vocab != m0.cfg.vocab)
      s = qg_fail(QG_ERR_INPUT, "models of different vocabularies: %s has %d, %s has %d", base, m0.cfg.vocab,
                  models[nm], m[nm].cfg.vocab);
  }
  qg_shards val;
  qg_spm_luts luts;
  qg_eval_plan plan = {0};
  size_t *ws = NULL;
  if (!s && !(s = qg_cli_open_eval_data(c, m0.cfg.vocab, &val, &luts))) data_open = 1;
  if (!s) s = qg_eval_plan_make(qg_shards_count(&val), &c->opts, &plan);
  if (!s) {
    k.cap = (size_t)plan.n_scored;
    k.kld = malloc(sizeof(double) * k.cap * (size_t)n);
    k.nll = malloc(sizeof(double) * k.cap * (size_t)n);
    k.bytes = malloc(sizeof(double) * (k.cap ? k.cap : 1));
    ws = malloc(sizeof *ws * (size_t)(plan.n + 1));
    if (!k.kld || !k.nll || !k.bytes || !ws) s = qg_fail(QG_ERR_NOMEM, "out of memory for per-token records");
    for (int i = 0; i < n; i++) qg_kldstats_init(&k.st[i], 1);
  }
  if (!s) {
    ws[0] = 0;
    for (int64_t w = 0; w < plan.n; w++) ws[w + 1] = ws[w] + (size_t)(plan.seq - plan.w[w].score_from);
  }
  qg_eval_totals *t = calloc((size_t)n, sizeof *t);
  qg_kld_summary *sum = calloc((size_t)n, sizeof *sum);
  if (!s && (!t || !sum)) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  if (!s) s = qg_eval_run_many(&m0, mp, n, &val, &luts, &c->opts, many_sink, &k, t);
  if (!s) s = k.err;
  for (int i = 0; !s && i < n; i++) s = qg_kldstats_summarize(&k.st[i], &sum[i]);
  qg_boot_result *d = calloc((size_t)n * 3, sizeof *d);
  if (!s && !d) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int i = 1; !s && i < n; i++)
    for (int mtr = 0; !s && mtr < 3; mtr++) s = paired(&k, i, ws, (size_t)plan.n, mtr, &d[i * 3 + mtr]);
  static const char *const mname[3] = {"kld", "nll", "bpb"};
  if (!s && c->json) {
    qg_buf b;
    qg_json j;
    qg_cli_json_begin(&j, &b, "kld");
    qg_json_key(&j, "models");
    qg_json_arr_begin(&j);
    for (int i = 0; i < n; i++) {
      qg_json_obj_begin(&j);
      kld_fields(&j, base, models[i], &t[i], &sum[i], c);
      qg_json_obj_end(&j);
    }
    qg_json_arr_end(&j);
    qg_json_key(&j, "paired");
    qg_json_arr_begin(&j);
    for (int i = 1; i < n; i++) {
      qg_json_obj_begin(&j);
      qg_cli_json_file_open(&j, "model", models[i]);
      qg_json_obj_end(&j);
      qg_cli_json_file_open(&j, "minus", models[0]);
      qg_json_obj_end(&j);
      qg_json_key(&j, "interval"), qg_json_str(&j, "95% percentile, paired block bootstrap over evaluation windows, "
                                                 "2000 resamples, seed 1");
      for (int mtr = 0; mtr < 3; mtr++) {
        const qg_boot_result *x = &d[i * 3 + mtr];
        qg_json_key(&j, mname[mtr]);
        qg_json_obj_begin(&j);
        qg_json_key(&j, "estimate"), qg_json_num(&j, x->estimate);
        qg_json_key(&j, "lo"), qg_json_num(&j, x->lo);
        qg_json_key(&j, "hi"), qg_json_num(&j, x->hi);
        qg_json_key(&j, "iid_lo"), qg_json_num(&j, x->iid_lo);
        qg_json_key(&j, "iid_hi"), qg_json_num(&j, x->iid_hi);
        qg_json_obj_end(&j);
      }
      qg_json_key(&j, "file_bytes_diff"), qg_json_int(&j, qg_cli_file_bytes(models[i]) - qg_cli_file_bytes(models[0]));
      qg_json_obj_end(&j);
    }
    qg_json_arr_end(&j);
    qg_json_key(&j, "device"), qg_json_str(&j, m0.ops->name);
    qg_json_key(&j, "seconds"), qg_json_num(&j, t[0].seconds);
    if (qg_comm_rank(c->opts.comm) == 0) qg_cli_json_end(&j, &b);
    else qg_buf_free(&b);
  } else if (!s && qg_comm_rank(c->opts.comm) == 0) {
    for (int i = 0; i < n; i++) {
      if (i) printf("\n");
      print_text(base, models[i], &t[i], &sum[i]);
    }
    printf("\n====== Paired against %s (95%% paired block bootstrap over windows) ======\n", models[0]);
    for (int i = 1; i < n; i++) {
      printf("%s (%+lld bytes):\n", models[i], qg_cli_file_bytes(models[i]) - qg_cli_file_bytes(models[0]));
      for (int mtr = 0; mtr < 3; mtr++) {
        const qg_boot_result *x = &d[i * 3 + mtr];
        printf("  d%-4s %+.6g [%+.6g, %+.6g]  (iid [%+.6g, %+.6g])\n", mname[mtr], x->estimate, x->lo, x->hi, x->iid_lo,
               x->iid_hi);
      }
    }
  }
  free(d), free(t), free(sum), free(ws);
  free(k.kld), free(k.nll), free(k.bytes);
  for (int i = 0; i < n; i++) qg_kldstats_free(&k.st[i]);
  free(k.st);
  qg_eval_plan_free(&plan);
  if (data_open) {
    qg_shards_close(&val);
    qg_spm_luts_free(&luts);
  }
  for (int i = 0; i < nm && i < n; i++)
    if (mp[i]) qg_gpt_free(&m[i]);
  if (loaded) qg_gpt_free(&m0);
  free(m), free(mp);
  return s ? qg_cli_report("kld", s) : 0;
}

int qg_cmd_kld(int argc, char **argv) {
  qg_eval_cli c = {.opts = {.seq_len = 1024}, .device = "auto"};
  /* --comm: windows split over ranks, every statistic the single-rank run's; rank 0 writes */
  int crc = qg_cli_take_comm("kld", &argc, argv, &c.opts.comm);
  if (crc) return crc;
  int rank0 = qg_comm_rank(c.opts.comm) == 0;
  const char *base = NULL, *model = NULL, *dump = NULL;
  const char *models[16];
  qg_arg_list ml = {models, 0, 16};
  qg_arg common[QG_CLI_EVAL_NARGS];
  qg_cli_eval_args("kld", &c, common);
  const qg_arg args[] = {
      {.name = "--base", .kind = QG_ARG_STR, .dst = &base, .flags = QG_ARG_REQUIRED},
      {.name = "--model", .kind = QG_ARG_LIST, .dst = &ml, .high = "at most 16 --model", .flags = QG_ARG_REQUIRED},
      {.name = "--dump-token-kld", .kind = QG_ARG_STR, .dst = &dump},
      {.kind = QG_ARG_TABLE, .table = common},
      {0}};
  const qg_args_spec spec = {.cmd = "kld", .args = args, .flags = QG_ARGS_GLOB_HINT,
                             .unknown = "unknown or incomplete option '{arg}'",
                             .required = "--base, --model, --val and --tokenizer are required"};
  int rc = qg_cli_parse(&spec, &argc, argv);
  if (rc) return rc;
  int n_models = ml.n;
  model = models[n_models - 1];
  if (n_models > 1) {
    if (dump) return qg_cli_usage_error("kld", "--dump-token-kld takes one --model");
    return kld_many(base, models, n_models, &c);
  }
  const qg_ops *ops;
  qg_status s = qg_ops_by_name(c.device, &ops);
  if (s) return qg_cli_report("kld", s);
  qg_gpt m0, m1;
  if ((s = qg_gpt_load(&m0, base, &c.gopt, ops))) return qg_cli_report("kld", s);
  if ((s = qg_gpt_load(&m1, model, &c.gopt, ops))) {
    qg_gpt_free(&m0);
    return qg_cli_report("kld", s);
  }
  qg_shards val;
  qg_spm_luts luts;
  qg_atomic_file df;
  kld_sink_ctx k = {0};
  qg_kldstats_init(&k.st, 1);
  if (m0.cfg.vocab != m1.cfg.vocab)
    s = qg_fail(QG_ERR_INPUT, "models of different vocabularies: %s has %d, %s has %d", base, m0.cfg.vocab, model,
                m1.cfg.vocab);
  int data_open = 0;
  if (!s && !(s = qg_cli_open_eval_data(&c, m0.cfg.vocab, &val, &luts))) data_open = 1;
  if (!s && dump && rank0 && !(s = qg_atomic_open(&df, dump))) {
    k.dump = &df;
    char header[16] = "QGKLD001";
    s = qg_atomic_write(&df, header, sizeof header); /* count patched in at the end */
  }
  qg_eval_totals t;
  if (!s) s = qg_eval_run(&m0, &m1, &val, &luts, &c.opts, kld_sink, &k, &t);
  if (!s) s = k.err;
  qg_kld_summary sum;
  if (!s) s = qg_kldstats_summarize(&k.st, &sum);
  if (k.dump) {
    if (!s) {
      /* rewrite the header's count: the file is small enough to patch through stdio */
      uint64_t n = (uint64_t)k.n;
      if (fflush(df.f) || fseek(df.f, 8, SEEK_SET) || fwrite(&n, 8, 1, df.f) != 1)
        s = qg_fail(QG_ERR_IO, "%s: cannot write the record count", dump);
    }
    if (!s) s = qg_atomic_commit(&df);
    else qg_atomic_abort(&df);
  }
  if (!s && rank0) {
    if (c.json) print_json(base, model, &t, &sum, &c, m0.ops->name);
    else print_text(base, model, &t, &sum);
  }
  qg_kldstats_free(&k.st);
  if (data_open) {
    qg_shards_close(&val);
    qg_spm_luts_free(&luts);
  }
  qg_gpt_free(&m0);
  qg_gpt_free(&m1);
  rc = s ? qg_cli_comm_report("kld", c.opts.comm, s, 0) : 0;
  qg_cli_comm_close();
  return rc;
}
