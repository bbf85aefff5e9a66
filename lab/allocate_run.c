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
#include "quant/artifact.h"
#include "quant/job.h"

void qg_allocate_result_free(qg_allocate_result *r) {
  qg_alloc_table_free(&r->t);
  qg_alloc_tproblem_free(&r->sp);
  qg_alloc_solution_free(&r->sol);
  free(r->spec_inline), free(r->spec_yaml);
  memset(r, 0, sizeof *r);
}

typedef struct {
  double kld, nll;
  int64_t n;
} kld_acc;

static void acc_sink(void *ctx, const qg_token_stat *st, int32_t prev, int32_t tgt, int bytes) {
  (void)prev, (void)tgt, (void)bytes;
  kld_acc *a = ctx;
  a->kld += st->kld < 0 ? 0 : st->kld;
  a->nll += st->nll_b;
  a->n++;
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
  qg_qjob_opts jo = {.model = o->model, .spec = &sp, .out = art, .compressor = QG_COMP_BROTLI, .layout = QG_LAYOUT_AUTO,
                     .calib = qg_spec_needs_hessians(&sp) ? o->calib : NULL, .calib_seqs = o->calib_seqs,
                     .calib_len = o->calib_len, .device = o->device};
  qg_qjob_result jr;
  qg_status s = qg_quantize_job(&jo, &jr);
  qg_spec_free(&sp);
  if (s) return qg_fail_prefix(s, "verify: quantize");
  r->measured_bytes = jr.artifact_bytes;
  qg_qjob_result_free(&jr);
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
        kld_acc a = {0, 0, 0};
        qg_eval_totals tot;
        s = qg_eval_run(&m0, &m1, &val, &luts, &eo, acc_sink, &a, &tot);
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

qg_status qg_allocate_run(const qg_allocate_opts *o, qg_allocate_result *r) {
  memset(r, 0, sizeof *r);
  double t0 = qg_now();
  const char *objective = o->objective ? o->objective : "kld";
  if (strcmp(objective, "kld") && strcmp(objective, "nll"))
    return qg_fail(QG_ERR_INPUT, "--objective '%s': expected kld or nll", objective);
  if (o->verify && (!o->val || !o->tokenizer))
    return qg_fail(QG_ERR_INPUT, "--verify needs --val and --tokenizer (the KLD is measured on them)");
  if (o->code_bytes < 0) return qg_fail(QG_ERR_INPUT, "--code-bytes must be >= 0");
  QG_TRY(qg_alloc_table_load(o->sensitivity, &r->t));
  char **only = NULL;
  int n_only = 0;
  qg_status s = QG_OK;
  if (o->candidates) s = qg_sens_expand_candidates(o->candidates, &only, &n_only);
  qg_state st;
  qg_state_init(&st);
  char sha[65];
  if (!s) s = qg_sha256_file(o->model, sha);
  if (!s) s = qg_checkpoint_load(o->model, &st, NULL);
  if (!s) s = qg_alloc_table_check(&r->t, &st, sha);
  if (!s) s = qg_alloc_tproblem_make(&r->t, objective, (const char *const *)only, n_only, o->code_bytes, &r->sp);
  for (int k = 0; k < n_only; k++) free(only[k]);
  free(only);
  /* exact (1 byte) whenever the table stays within 2^24 cells, else the finest power of two that does */
  int64_t gran = o->granularity ? o->granularity : s ? 1 : qg_alloc_auto_granularity(&r->sp.p, o->budget, (int64_t)1 << 24);
  if (!s) s = qg_alloc_solve(&r->sp.p, o->budget, gran, 0, &r->sol);
  if (!s) s = qg_alloc_table_spec(&r->t, &r->sp, r->sol.best.choice, &st, 0, NULL, &r->spec_inline,
                                 &r->contest_passthrough);
  if (!s) r->base_metric = strcmp(objective, "nll") ? r->t.base_kld : r->t.base_nll;
  if (!s) {
    char hdr[1024];
    snprintf(hdr, sizeof hdr, "chosen by quantgolf allocate: budget %lld bytes, objective %s, predicted %s %.6g, "
             "predicted bytes %lld\ntable %s (model sha256 %s)", (long long)o->budget, objective, objective,
             r->base_metric + r->sol.best.delta, (long long)r->sol.best.bytes, o->sensitivity, r->t.model_sha);
    s = qg_alloc_table_spec(&r->t, &r->sp, r->sol.best.choice, &st, 1, hdr, &r->spec_yaml, NULL);
  }
  qg_state_free(&st);
  if (!s) r->predicted = r->base_metric + r->sol.best.delta;
  if (!s && o->out) s = qg_write_file_atomic(o->out, r->spec_yaml, strlen(r->spec_yaml));
  if (!s && o->verify) s = verify(o, r);
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
  file_json(j, "sensitivity", o->sensitivity);
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
    qg_json_key(j, "candidate"), qg_json_str(j, c < 0 ? "base" : r->t.cands[r->t.cells[c].cand]);
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
    qg_json_key(j, "tokens"), qg_json_int(j, r->measured_tokens);
    qg_json_obj_end(j);
  }
  qg_json_key(j, "seconds"), qg_json_num(j, r->seconds);
  qg_json_obj_end(j);
}
