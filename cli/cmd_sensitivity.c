/* quantgolf sensitivity: per-group KLD deltas, bytes and ROI (the work is lab/sensitivity). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "lab/sensitivity.h"

void qg_cmd_sensitivity_help(void) {
  printf(
      "usage: quantgolf sensitivity --model M --val GLOB --tokenizer T --base SPEC\n"
      "                             --candidates 'rowwise bits=4|5|6|8; gptq bits=4|5|6'\n"
      "                             [--groups roles|layers|tensors|GLOB,...] [--calib GLOB]\n"
      "                             [--calib-seqs N] [--calib-len L] [--calib-seed S]\n"
      "                             [--est-seqs N] [--probes P] [--probe-seqs M]\n"
      "                             [--compress rans|brotli|zstd|xz|zlib] [--chunk N] [--out DIR] [--json]\n"
      "                             [--seq-len 1024] [--stride S] [--max-tokens N] [--device cpu|cuda|auto]\n\n"
      "For each group (default roles: attn.c_q, attn.c_k, attn.c_v, attn.proj, mlp.fc, mlp.proj,\n"
      "tok_emb, lm_head) and candidate: the KLD to the float model when that group alone moves\n"
      "from --base to the candidate, minus the base's (paired per token, 95%% block bootstrap\n"
      "over windows), the group's compressed bytes (under --compress, default rans; the table\n"
      "records it and allocate uses the same), and ROI = bytes saved per nat of KLD added.\n"
      "Prints the cells ranked by ROI; --out DIR writes DIR/sensitivity.json and\n"
      "DIR/sensitivity.svg. --calib collects Hessians once (needed by gptq) and enables the\n"
      "layer-local estimators, reported with their Spearman correlation against the measured\n"
      "deltas. With --calib, the loss-based estimators (Fisher sum (g dY)^2 at layer outputs and\n"
      "Hutchinson's tr(H)/n x ||dW||^2) run on two disjoint calibration subsets of --est-seqs\n"
      "sequences each (8; 0: none), Hutchinson with --probes probes (8; 0: none) on --probe-seqs\n"
      "of them (2); each is reported with its Spearman against the measured deltas and its\n"
      "stability between the subsets.\n");
}

static void on_progress(void *ctx, const char *stage, int i, int n) {
  (void)ctx;
  fprintf(stderr, "sensitivity: %s %d/%d\n", stage, i, n);
}

int qg_cmd_sensitivity(int argc, char **argv) {
  qg_eval_cli c = {.opts = {.seq_len = 1024}, .device = "cpu"};
  qg_sens_opts o = {.progress = on_progress};
  const char *out = NULL;
  int64_t calib_seed = (int64_t)o.calib_seed;
  int est_seqs = -2, probes = -2; /* -2: not given (the engine's defaults); 0 turns them off */
  qg_arg common[QG_CLI_EVAL_NARGS];
  qg_cli_eval_args("sensitivity", &c, common);
#define STR(nm, field) {.name = nm, .kind = QG_ARG_STR, .dst = &field}
#define INT(nm, field) {.name = nm, .kind = QG_ARG_INT, .dst = &o.field, .bad = "{opt} expects an integer, got '{val}'"}
  const qg_arg args[] = {
      {.kind = QG_ARG_TABLE, .table = common},
      {.name = "--model", .kind = QG_ARG_STR, .dst = &o.model, .flags = QG_ARG_REQUIRED},
      {.name = "--base", .kind = QG_ARG_STR, .dst = &o.base, .flags = QG_ARG_REQUIRED},
      {.name = "--candidates", .kind = QG_ARG_STR, .dst = &o.candidates, .flags = QG_ARG_REQUIRED},
      STR("--groups", o.groups), STR("--calib", o.calib),
      INT("--calib-seqs", calib_seqs), INT("--calib-len", calib_len),
      {.name = "--calib-seed", .kind = QG_ARG_I64, .dst = &calib_seed, .bad = "{opt} expects an integer, got '{val}'"},
      INT("--chunk", chunk), STR("--out", out), INT("--probe-seqs", probe_seqs),
      {.name = "--est-seqs", .kind = QG_ARG_INT, .dst = &est_seqs, .bad = "{opt} expects an integer, got '{val}'"},
      {.name = "--probes", .kind = QG_ARG_INT, .dst = &probes, .bad = "{opt} expects an integer, got '{val}'"},
      {.name = "--compress", .kind = QG_ARG_FN, .dst = &o.comp, .fn = qg_cli_artifact_compressor,
       .bad = "{opt} expects rans, brotli, zstd, xz or zlib, got '{val}'"},
      {0}};
#undef STR
#undef INT
  const qg_args_spec spec = {
      .cmd = "sensitivity", .args = args, .flags = QG_ARGS_GLOB_HINT, .unknown = "unknown or incomplete option '{arg}'",
      .required = "--model, --val, --tokenizer, --base and --candidates are required"};
  if (qg_cli_parse(&spec, &argc, argv)) return 2;
  o.calib_seed = (uint64_t)calib_seed;
  if (est_seqs != -2) o.est_seqs = est_seqs == 0 ? -1 : est_seqs;
  if (probes != -2) o.probes = probes == 0 ? -1 : probes;
  if (o.calib_seqs < 0 || o.calib_len < 0 || o.chunk < 0 || o.est_seqs < -1 || o.probes < -1 || o.probe_seqs < 0)
    return qg_cli_usage_error("sensitivity",
                              "--calib-seqs, --calib-len, --chunk, --est-seqs, --probes and --probe-seqs must be positive");
  o.val = c.val, o.tokenizer = c.tokenizer, o.eval = c.opts, o.device = c.device;
  o.mlp_power = c.gopt.mlp_power, o.allow_tokenizer_mismatch = c.allow_tok_mismatch;
  qg_sens_result r;
  qg_status s = qg_sensitivity_run(&o, &r);
  if (s) return qg_cli_report("sensitivity", s);
  if (out) s = qg_sens_write(&o, &r, out);
  qg_buf b;
  qg_buf_init(&b);
  if (!s && c.json) s = qg_sens_json(&o, &r, &b);
  else if (!s) qg_sens_table(&r, &b);
  if (!s) fwrite(b.p, 1, b.n, stdout);
  qg_buf_free(&b);
  qg_sens_result_free(&r);
  return s ? qg_cli_report("sensitivity", s) : 0;
}
