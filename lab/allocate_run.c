/* `quantgolf allocate` as a library call (see lab/allocate_run.h). */
#include "lab/allocate_run.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/util.h"
#include "eval/eval.h"
#include "io/shard_manifest.h"
#include "io/shards.h"
#include "io/spm.h"
#include "kernels/ops.h"
#include "lab/sensitivity.h"
#include "lab/stats.h"
#include "quant/artifact.h"
#include "quant/job.h"

void qg_allocate_result_free(qg_allocate_result *r) {
  if (r->choice)
    for (int g = 0; g < r->t.n_groups; g++) free(r->choice[g]);
  free(r->choice);
  r->choice = NULL;
  qg_alloc_table_free(&r->t);
  qg_alloc_tproblem_free(&r->sp);
  qg_alloc_solution_free(&r->sol);
  free(r->spec_inline), free(r->spec_yaml);
  for (int k = 0; k < r->n_rounds; k++) free(r->rounds[k].spec);
  memset(r, 0, sizeof *r);
}

typedef struct {
  double kld, nll;
  int64_t n;
  double *tok_kld; /* per scored token, in stream order (cap entries) */
  size_t cap;
} kld_acc;

static void acc_sink(void *ctx, const qg_token_stat *st, int32_t prev, int32_t tgt, int bytes) {
  (void)prev, (void)tgt, (void)bytes;
  kld_acc *a = ctx;
  double k = st->kld < 0 ? 0 : st->kld;
  a->kld += k;
  a->nll += st->nll_b;
  if ((size_t)a->n < a->cap) a->tok_kld[a->n] = k;
  a->n++;
}

/* The measured mean KLD's 95 % interval: block bootstrap over the evaluation windows
 * (lab/stats, 2000 resamples, seed 1), the windows the evaluator scored. */
static qg_status kld_interval(const kld_acc *a, const qg_eval_opts *eo, int64_t n_stream, double *lo, double *hi) {
  qg_eval_plan plan = {0};
  QG_TRY(qg_eval_plan_make(n_stream, eo, &plan));
  size_t *ws = malloc(sizeof *ws * (size_t)(plan.n + 1));
  qg_status s = ws ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
  if (!s) {
    ws[0] = 0;
    for (int64_t w = 0; w < plan.n; w++) ws[w + 1] = ws[w] + (size_t)(plan.seq - plan.w[w].score_from);
    if (ws[plan.n] != (size_t)a->n || (size_t)a->n > a->cap)
      s = qg_fail(QG_ERR_INTERNAL, "verify: %lld tokens scored, the plan has %zu", (long long)a->n, ws[plan.n]);
  }
  if (!s) {
    qg_boot_data bd = {a->tok_kld, NULL, (size_t)a->n, ws, (size_t)plan.n};
    qg_boot_opts bo = {2000, 1, 0.05, 0, 0};
    qg_boot_result b;
    if (!(s = qg_boot_ratio(&bd, &bo, &b))) *lo = b.lo, *hi = b.hi;
  }
  free(ws);
  qg_eval_plan_free(&plan);
  return s;
}

static qg_status verify(const qg_allocate_opts *o, qg_allocate_result *r) {
  char tmp[4200];
  const char *art = o->verify_out;
  if (!art) {
    snprintf(tmp, sizeof tmp, "%s/quantgolf-allocate-%ld.qgz", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (long)getpid());
    art = tmp;
  }
  qg_spec sp;
  QG_TRY(qg_spec_parse_inline(r->spec_inline, &sp));
  if (r->contest_passthrough) sp.contest_passthrough = 1;
  qg_qjob_opts jo = {.model = o->model, .spec = &sp, .out = art, .compressor = r->t.comp, .layout = QG_LAYOUT_AUTO,
                     .calib = qg_spec_needs_hessians(&sp) ? o->calib : NULL, .calib_seqs = o->calib_seqs,
                     .calib_len = o->calib_len, .device = o->device};
  qg_qjob_result jr;
  qg_status s = qg_quantize_job(&jo, &jr);
  qg_spec_free(&sp);
  if (s) return qg_fail_prefix(s, "verify: quantize");
  r->measured_bytes = jr.artifact_bytes;
  qg_qjob_result_free(&jr);
  if (!o->verify) {
    if (!o->verify_out) unlink(art);
    return QG_OK;
  }
  const qg_ops *ops;
  qg_spm tok;
  qg_spm_luts luts;
  qg_shards val;
  qg_shards_init(&val);
  memset(&luts, 0, sizeof luts);
  if ((s = qg_ops_by_name(o->device ? o->device : "cpu", &ops))) goto out_art;
  if ((s = qg_spm_load(o->tokenizer, &tok))) goto out_art;
  s = qg_spm_luts_init(&luts, &tok, tok.n_pieces);
  if (!s && (s = qg_shards_open(o->val, &val))) qg_shards_init(&val);
  if (!s) s = qg_shards_check_vocab(&val, tok.n_pieces);
  if (!s) s = qg_shards_check_tokenizer(&val, &tok, o->tokenizer, NULL);
  qg_spm_free(&tok);
  if (!s) {
    qg_gpt m0, m1;
    if (!(s = qg_gpt_load(&m0, o->model, NULL, ops))) {
      if (!(s = qg_gpt_load(&m1, art, NULL, ops))) {
        qg_eval_opts eo = {.seq_len = o->seq_len ? o->seq_len : 1024, .max_tokens = o->max_tokens};
        kld_acc a = {0, 0, 0, NULL, 0};
        qg_eval_plan plan = {0};
        if (!(s = qg_eval_plan_make(qg_shards_count(&val), &eo, &plan))) {
          a.cap = (size_t)plan.n_scored;
          if (!(a.tok_kld = malloc(sizeof *a.tok_kld * (a.cap ? a.cap : 1)))) s = qg_fail(QG_ERR_NOMEM, "out of memory");
          qg_eval_plan_free(&plan);
        }
        qg_eval_totals tot;
        if (!s) s = qg_eval_run(&m0, &m1, &val, &luts, &eo, acc_sink, &a, &tot);
        if (!s && a.n) s = kld_interval(&a, &eo, qg_shards_count(&val), &r->measured_kld_lo, &r->measured_kld_hi);
        free(a.tok_kld);
        if (!s && a.n) {
          r->measured_kld = a.kld / (double)a.n, r->measured_nll = a.nll / (double)a.n;
          r->measured_tokens = a.n;
          r->measured_metric = strcmp(o->objective ? o->objective : "kld", "nll") ? r->measured_kld : r->measured_nll;
          r->verified = 1;
        }
        qg_gpt_free(&m1);
      }
      qg_gpt_free(&m0);
    }
  }
  qg_spm_luts_free(&luts);
  qg_shards_close(&val);
out_art:
  if (!o->verify_out) unlink(art);
  return s;
}

/* Solves at a budget and renders the choice as inline spec text (replacing any earlier). */
static qg_status solve_at(qg_allocate_result *r, const qg_state *st, int64_t budget, int64_t gran) {
  qg_alloc_solution_free(&r->sol);
  free(r->spec_inline);
  r->spec_inline = NULL;
  QG_TRY(qg_alloc_solve(&r->sp.p, budget, gran, 0, &r->sol));
  return qg_alloc_table_spec(&r->t, &r->sp, r->sol.best.choice, st, 0, NULL, &r->spec_inline, &r->contest_passthrough);
}

/* A table measured in place by the sensitivity engine at the given base spec: its
 * sensitivity.json read back through the same strict parser as a file. */
static qg_sens_opts sens_opts(const qg_allocate_opts *o, const char *base) {
  qg_sens_opts so = {.model = o->model, .val = o->val, .tokenizer = o->tokenizer, .base = base,
                     .candidates = o->candidates, .groups = o->groups, .calib = o->calib,
                     .calib_seqs = o->calib_seqs, .calib_len = o->calib_len, .comp = o->comp,
                     .eval = {.seq_len = o->seq_len ? o->seq_len : 1024, .max_tokens = o->max_tokens},
                     .device = o->device, .est_seqs = -1, .progress = o->progress, .progress_ctx = o->progress_ctx};
  return so;
}

static qg_status measure_table(const qg_allocate_opts *o, const char *base, qg_compressor comp, qg_alloc_table *t) {
  qg_sens_opts so = sens_opts(o, base);
  so.comp = comp;
  qg_sens_result sr;
  QG_TRY(qg_sensitivity_run(&so, &sr));
  qg_buf b;
  qg_buf_init(&b);
  qg_status s = qg_sens_json(&so, &sr, &b);
  if (!s) s = qg_alloc_table_parse((const char *)b.p, b.n, "(sensitivity measured in place)", t);
  qg_buf_free(&b);
  qg_sens_result_free(&sr);
  return s;
}

/* What group g runs after a solve: its chosen cell's candidate, or (base) prev[g]. */
static const char *effective(const qg_allocate_result *r, int g, const char *prev) {
  int c = r->sp.opt_cell[g][r->sol.best.choice[g]];
  return c < 0 ? prev : r->t.cands[r->t.cells[c].cand];
}

/* --iterate: re-measure the deltas with the chosen allocation as the base, re-solve, until
 * no group's candidate changes or the rounds run out. */
static qg_status iterate(const qg_allocate_opts *o, qg_allocate_result *r, const qg_state *st, const char *objective,
                         const char *const *only, int n_only, int64_t budget, int64_t gran) {
  int ng = r->t.n_groups;
  char **eff = r->choice; /* updated in place */
  qg_status s = QG_OK;
  int rounds = o->iterate < QG_ALLOC_ITER_MAX ? o->iterate : QG_ALLOC_ITER_MAX;
  for (int k = 0; !s && k < rounds && !r->converged; k++) {
    qg_alloc_table t;
    if ((s = measure_table(o, r->spec_inline, r->t.comp, &t))) break;
    if (t.n_groups != ng) s = qg_fail(QG_ERR_INTERNAL, "iterate: %d groups after re-measuring, %d before", t.n_groups, ng);
    for (int g = 0; !s && g < ng; g++)
      if (strcmp(t.groups[g].name, r->t.groups[g].name)) s = qg_fail(QG_ERR_INTERNAL, "iterate: groups changed order");
    if (s) {
      qg_alloc_table_free(&t);
      break;
    }
    qg_alloc_table_free(&r->t);
    qg_alloc_tproblem_free(&r->sp);
    r->t = t;
    if ((s = qg_alloc_tproblem_make(&r->t, objective, only, n_only, o->code_bytes, &r->sp))) break;
    if ((s = solve_at(r, st, budget, gran))) break;
    qg_alloc_round *rd = &r->rounds[r->n_rounds++];
    rd->base_metric = strcmp(objective, "nll") ? r->t.base_kld : r->t.base_nll;
    rd->predicted = rd->base_metric + r->sol.best.delta;
    rd->predicted_bytes = r->sol.best.bytes;
    rd->changed = 0;
    for (int g = 0; !s && g < ng; g++) {
      const char *e = effective(r, g, eff[g]);
      if (strcmp(e, eff[g])) {
        rd->changed++;
        char *d = qg_strdup(e);
        if (!d) s = qg_fail(QG_ERR_NOMEM, "out of memory");
        else free(eff[g]), eff[g] = d;
      }
    }
    if (!s && !(rd->spec = qg_strdup(r->spec_inline))) s = qg_fail(QG_ERR_NOMEM, "out of memory");
    r->converged = !rd->changed;
  }
  return s;
}

typedef struct {
  const qg_allocate_opts *o;
  qg_allocate_result *r;
  const qg_state *st;
} measure_ctx;

/* The repair's measurement: the solution as spec, quantized (and with verify evaluated). */
static qg_status measure_real(void *ctx, const qg_alloc_solution *sol, int64_t *real_bytes) {
  measure_ctx *m = ctx;
  free(m->r->spec_inline);
  m->r->spec_inline = NULL;
  QG_TRY(qg_alloc_table_spec(&m->r->t, &m->r->sp, sol->best.choice, m->st, 0, NULL, &m->r->spec_inline,
                             &m->r->contest_passthrough));
  QG_TRY(verify(m->o, m->r));
  *real_bytes = m->r->measured_bytes + m->o->code_bytes;
  return QG_OK;
}

/* Per-tensor bytes are only valid under the compressor they were measured with. */
static qg_status same_compressor(const qg_allocate_opts *o, const qg_alloc_table *t) {
  if (!o->comp || o->comp == t->comp) return QG_OK;
  return qg_fail(QG_ERR_INPUT, "allocate: %s: its bytes were measured with %s, the artifact would be %s: re-measure "
                 "the table (sensitivity --compress %s) or write the artifact with %s", o->sensitivity,
                 qg_compressor_name(t->comp), qg_compressor_name(o->comp), qg_compressor_name(o->comp),
                 qg_compressor_name(t->comp));
}

/* The options alone, before any file is read. */
static qg_status check_opts(const qg_allocate_opts *o) {
  const char *objective = o->objective ? o->objective : "kld";
  if (strcmp(objective, "kld") && strcmp(objective, "nll"))
    return qg_fail(QG_ERR_INPUT, "--objective '%s': expected kld or nll", objective);
  if (o->verify && (!o->val || !o->tokenizer))
    return qg_fail(QG_ERR_INPUT, "--verify needs --val and --tokenizer (the KLD is measured on them)");
  if (o->code_bytes < 0) return qg_fail(QG_ERR_INPUT, "--code-bytes must be >= 0");
  if ((!o->sensitivity || o->iterate) && (!o->val || !o->tokenizer || !o->candidates))
    return qg_fail(QG_ERR_INPUT, "allocate: measuring the table in place (no --sensitivity, or --iterate) needs --val, "
                   "--tokenizer and --candidates");
  if (!o->sensitivity && !o->base)
    return qg_fail(QG_ERR_INPUT, "allocate: without --sensitivity, --base SPEC (what every group starts from) is required");
  if (o->iterate < 0 || o->iterate > QG_ALLOC_ITER_MAX)
    return qg_fail(QG_ERR_INPUT, "--iterate: at most %d rounds, got %d", QG_ALLOC_ITER_MAX, o->iterate);
  return QG_OK;
}

qg_status qg_allocate_check(const qg_allocate_opts *o) {
  QG_TRY(check_opts(o));
  if (!o->sensitivity || o->iterate) {
    qg_sens_opts so = sens_opts(o, o->sensitivity ? "*: rowwise bits=8" : o->base);
    QG_TRY(qg_sensitivity_check(&so));
  }
  if (!o->sensitivity) return QG_OK;
  /* with a table the whole solve is cheap: a budget below the smallest total shows here */
  char **only = NULL;
  int n_only = 0;
  if (o->candidates) QG_TRY(qg_sens_expand_candidates(o->candidates, &only, &n_only));
  qg_allocate_result r;
  memset(&r, 0, sizeof r);
  qg_state st;
  qg_state_init(&st);
  char sha[65];
  qg_status s = qg_alloc_table_load(o->sensitivity, &r.t);
  if (!s) s = same_compressor(o, &r.t);
  if (!s) s = qg_sha256_file(o->model, sha);
  if (!s) s = qg_checkpoint_load(o->model, &st, NULL);
  if (!s) s = qg_alloc_table_check(&r.t, &st, sha);
  if (!s) s = qg_alloc_tproblem_make(&r.t, o->objective ? o->objective : "kld", (const char *const *)only, n_only,
                                     o->code_bytes, &r.sp);
  int64_t gran = o->granularity ? o->granularity : s ? 1 : qg_alloc_auto_granularity(&r.sp.p, o->budget, (int64_t)1 << 24);
  if (!s) s = solve_at(&r, &st, o->budget, gran);
  for (int k = 0; k < n_only; k++) free(only[k]);
  free(only);
  qg_state_free(&st);
  qg_allocate_result_free(&r);
  return s;
}

static qg_status allocate_run(const qg_allocate_opts *o, qg_allocate_result *r) {
  memset(r, 0, sizeof *r);
  double t0 = qg_now();
  const char *objective = o->objective ? o->objective : "kld";
  QG_TRY(check_opts(o));
  char **only = NULL;
  int n_only = 0;
  qg_status s = QG_OK;
  if (o->candidates) QG_TRY(qg_sens_expand_candidates(o->candidates, &only, &n_only));
  if (o->sensitivity) s = qg_alloc_table_load(o->sensitivity, &r->t);
  else s = measure_table(o, o->base, o->comp ? o->comp : QG_COMP_DEFAULT, &r->t), r->measured_in_place = 1;
  if (!s) s = same_compressor(o, &r->t);
  qg_state st;
  qg_state_init(&st);
  char sha[65];
  if (!s) s = qg_sha256_file(o->model, sha);
  if (!s) s = qg_checkpoint_load(o->model, &st, NULL);
  if (!s) s = qg_alloc_table_check(&r->t, &st, sha);
  if (!s) s = qg_alloc_tproblem_make(&r->t, objective, (const char *const *)only, n_only, o->code_bytes, &r->sp);
  /* exact (1 byte) whenever the table stays within 2^24 cells, else the finest power of two that does */
  int64_t gran = o->granularity ? o->granularity : s ? 1 : qg_alloc_auto_granularity(&r->sp.p, o->budget, (int64_t)1 << 24);
  int64_t budget = o->budget;
  if (!s) s = solve_at(r, &st, budget, gran);
  if (!s) {
    r->first_predicted = (strcmp(objective, "nll") ? r->t.base_kld : r->t.base_nll) + r->sol.best.delta;
    r->first_predicted_bytes = r->sol.best.bytes;
    if (!(r->choice = calloc((size_t)r->t.n_groups, sizeof *r->choice))) s = qg_fail(QG_ERR_NOMEM, "out of memory");
    for (int g = 0; !s && g < r->t.n_groups; g++)
      if (!(r->choice[g] = qg_strdup(effective(r, g, "base")))) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  if (!s && o->iterate) s = iterate(o, r, &st, objective, (const char *const *)only, n_only, budget, gran);
  for (int k = 0; k < n_only; k++) free(only[k]);
  free(only);
  if (!s && (o->verify || o->repair)) {
    /* compression is not additive over tensors: repair an over-budget real artifact */
    measure_ctx mc = {o, r, &st};
    qg_alloc_solution_free(&r->sol); /* the repair solves again from the full budget */
    s = qg_alloc_solve_repair(&r->sp.p, budget, gran, QG_ALLOC_REPAIR_MAX, measure_real, &mc, &r->sol, &r->repair);
    if (!s) budget = r->repair.budget[r->repair.rounds], r->fits = r->repair.fits;
  }
  if (!s) r->base_metric = strcmp(objective, "nll") ? r->t.base_kld : r->t.base_nll;
  if (!s) {
    char hdr[1024];
    snprintf(hdr, sizeof hdr, "chosen by quantgolf allocate: budget %lld bytes (solved at %lld), objective %s, "
             "predicted %s %.6g, predicted bytes %lld\ntable %s (model sha256 %s)", (long long)o->budget,
             (long long)budget, objective, objective, r->base_metric + r->sol.best.delta, (long long)r->sol.best.bytes,
             o->sensitivity ? o->sensitivity : "(measured in place)", r->t.model_sha);
    s = qg_alloc_table_spec(&r->t, &r->sp, r->sol.best.choice, &st, 1, hdr, &r->spec_yaml, NULL);
  }
  qg_state_free(&st);
  if (!s) r->predicted = r->base_metric + r->sol.best.delta;
  if (!s && o->out) s = qg_write_file_atomic(o->out, r->spec_yaml, strlen(r->spec_yaml));
  r->seconds = qg_now() - t0;
  if (s) qg_allocate_result_free(r);
  return s;
}

/* A file as the JSON vocabulary names one: {"path", "file_bytes"}. */
static void file_json(qg_json *j, const char *key, const char *path) {
  struct stat sb;
  qg_json_key(j, key);
  qg_json_obj_begin(j);
  qg_json_key(j, "path"), qg_json_str(j, path);
  qg_json_key(j, "file_bytes");
  if (path && stat(path, &sb) == 0) qg_json_int(j, (int64_t)sb.st_size);
  else qg_json_null(j);
  qg_json_obj_end(j);
}

void qg_allocate_json(const qg_allocate_opts *o, const qg_allocate_result *r, qg_json *j) {
  const char *objective = o->objective ? o->objective : "kld";
  qg_json_obj_begin(j);
  qg_json_key(j, "schema_version"), qg_json_int(j, 1);
  qg_json_key(j, "command"), qg_json_str(j, "allocate");
  qg_json_key(j, "quantgolf_version"), qg_json_str(j, QG_VERSION);
  file_json(j, "model", o->model);
  if (o->sensitivity) {
    file_json(j, "sensitivity", o->sensitivity);
  } else { /* measured in place */
    qg_json_key(j, "sensitivity"), qg_json_null(j);
  }
  qg_json_key(j, "compressor"), qg_json_str(j, qg_compressor_name(r->t.comp));
  qg_json_key(j, "iterate");
  qg_json_obj_begin(j);
  qg_json_key(j, "first_predicted_metric"), qg_json_num(j, r->first_predicted);
  qg_json_key(j, "first_predicted_bytes"), qg_json_int(j, r->first_predicted_bytes);
  qg_json_key(j, "max_rounds"), qg_json_int(j, o->iterate);
  qg_json_key(j, "converged"), qg_json_bool(j, r->converged);
  qg_json_key(j, "rounds");
  qg_json_arr_begin(j);
  for (int k = 0; k < r->n_rounds; k++) {
    qg_json_obj_begin(j);
    qg_json_key(j, "previous_measured_metric"), qg_json_num(j, r->rounds[k].base_metric);
    qg_json_key(j, "predicted_metric"), qg_json_num(j, r->rounds[k].predicted);
    qg_json_key(j, "predicted_bytes"), qg_json_int(j, r->rounds[k].predicted_bytes);
    qg_json_key(j, "groups_changed"), qg_json_int(j, r->rounds[k].changed);
    qg_json_key(j, "spec"), qg_json_str(j, r->rounds[k].spec);
    qg_json_obj_end(j);
  }
  qg_json_arr_end(j);
  qg_json_obj_end(j);
  qg_json_key(j, "objective"), qg_json_str(j, objective);
  qg_json_key(j, "budget_bytes"), qg_json_int(j, o->budget);
  qg_json_key(j, "code_bytes"), qg_json_int(j, o->code_bytes);
  qg_json_key(j, "granularity_bytes"), qg_json_int(j, r->sol.granularity);
  qg_json_key(j, "rounding_slack_bytes"), qg_json_int(j, r->sol.slack_bytes);
  qg_json_key(j, "min_bytes"), qg_json_int(j, r->sol.min_bytes);
  qg_json_key(j, "base_spec"), qg_json_str(j, r->t.base);
  qg_json_key(j, "base_metric"), qg_json_num(j, r->base_metric);
  qg_json_key(j, "predicted_metric"), qg_json_num(j, r->predicted);
  qg_json_key(j, "predicted_delta"), qg_json_num(j, r->sol.best.delta);
  qg_json_key(j, "predicted_bytes"), qg_json_int(j, r->sol.best.bytes);
  qg_json_key(j, "choice");
  qg_json_arr_begin(j);
  for (int g = 0; g < r->t.n_groups; g++) {
    int c = r->sp.opt_cell[g][r->sol.best.choice[g]];
    qg_json_obj_begin(j);
    qg_json_key(j, "group"), qg_json_str(j, r->t.groups[g].name);
    qg_json_key(j, "candidate"), qg_json_str(j, r->choice ? r->choice[g] : c < 0 ? "base" : r->t.cands[r->t.cells[c].cand]);
    qg_json_key(j, "delta"), qg_json_num(j, r->sp.p.opts[g][r->sol.best.choice[g]].delta);
    qg_json_key(j, "bytes"), qg_json_int(j, r->sp.p.opts[g][r->sol.best.choice[g]].bytes);
    qg_json_obj_end(j);
  }
  qg_json_arr_end(j);
  qg_json_key(j, "frontier");
  qg_json_arr_begin(j);
  for (int f = 0; f < r->sol.n_frontier; f++) {
    qg_json_obj_begin(j);
    qg_json_key(j, "bytes"), qg_json_int(j, r->sol.frontier[f].bytes);
    qg_json_key(j, "predicted_metric"), qg_json_num(j, r->base_metric + r->sol.frontier[f].delta);
    qg_json_obj_end(j);
  }
  qg_json_arr_end(j);
  qg_json_key(j, "spec"), qg_json_str(j, r->spec_inline);
  qg_json_key(j, "verify");
  if (!r->verified) {
    qg_json_null(j);
  } else {
    qg_json_obj_begin(j);
    qg_json_key(j, "measured_bytes"), qg_json_int(j, r->measured_bytes);
    qg_json_key(j, "bytes_error"), qg_json_int(j, r->measured_bytes - r->sol.best.bytes);
    qg_json_key(j, "bytes_error_rel"), qg_json_num(j, (double)(r->measured_bytes - r->sol.best.bytes) / (double)r->sol.best.bytes);
    qg_json_key(j, "measured_kld"), qg_json_num(j, r->measured_kld);
    qg_json_key(j, "measured_nll"), qg_json_num(j, r->measured_nll);
    qg_json_key(j, "measured_metric"), qg_json_num(j, r->measured_metric);
    qg_json_key(j, "additivity_error"), qg_json_num(j, r->measured_metric - r->predicted);
    qg_json_key(j, "measured_kld_ci95");
    qg_json_arr_begin(j);
    qg_json_num(j, r->measured_kld_lo), qg_json_num(j, r->measured_kld_hi);
    qg_json_arr_end(j);
    qg_json_key(j, "interval"), qg_json_str(j, "95% percentile, block bootstrap over evaluation windows, 2000 resamples, seed 1");
    qg_json_key(j, "fits_budget"), qg_json_bool(j, r->fits);
    qg_json_key(j, "repair");
    qg_json_arr_begin(j);
    for (int k = 0; k <= r->repair.rounds; k++) {
      qg_json_obj_begin(j);
      qg_json_key(j, "solver_budget"), qg_json_int(j, r->repair.budget[k]);
      qg_json_key(j, "measured_total_bytes"), qg_json_int(j, r->repair.measured[k]);
      qg_json_obj_end(j);
    }
    qg_json_arr_end(j);
    qg_json_key(j, "tokens"), qg_json_int(j, r->measured_tokens);
    qg_json_obj_end(j);
  }
  qg_json_key(j, "seconds"), qg_json_num(j, r->seconds);
  qg_json_obj_end(j);
}

qg_status qg_allocate_run(const qg_allocate_opts *o, qg_allocate_result *r) {
  qg_status s = allocate_run(o, r);
  if (s) qg_allocate_result_free(r); /* a failed run leaves nothing to free */
  return s;
}
