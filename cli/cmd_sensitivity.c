/* quantgolf sensitivity: per-group KLD deltas, bytes and ROI (the work is lab/sensitivity). */
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
      "                             [--compress brotli|zstd|xz|zlib] [--chunk N] [--out DIR] [--json]\n"
      "                             [--seq-len 1024] [--stride S] [--max-tokens N] [--device cpu|cuda|auto]\n\n"
      "For each group (default roles: attn.c_q, attn.c_k, attn.c_v, attn.proj, mlp.fc, mlp.proj,\n"
      "tok_emb, lm_head) and candidate: the KLD to the float model when that group alone moves\n"
      "from --base to the candidate, minus the base's (paired per token, 95%% block bootstrap\n"
      "over windows), the group's compressed bytes, and ROI = bytes saved per nat of KLD added.\n"
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
  for (int i = 1; i < argc; i++) {
    int r = qg_cli_parse_eval_common("sensitivity", argc, argv, &i, &c);
    if (r < 0) return 2;
    if (r > 0) continue;
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) return qg_cli_unknown_arg("sensitivity", "unknown or incomplete option", a);
    if (!strcmp(a, "--model")) o.model = v;
    else if (!strcmp(a, "--base")) o.base = v;
    else if (!strcmp(a, "--candidates")) o.candidates = v;
    else if (!strcmp(a, "--groups")) o.groups = v;
    else if (!strcmp(a, "--calib")) o.calib = v;
    else if (!strcmp(a, "--calib-seqs")) o.calib_seqs = atoi(v);
    else if (!strcmp(a, "--calib-len")) o.calib_len = atoi(v);
    else if (!strcmp(a, "--calib-seed")) o.calib_seed = strtoull(v, NULL, 10);
    else if (!strcmp(a, "--chunk")) o.chunk = atoi(v);
    else if (!strcmp(a, "--est-seqs")) o.est_seqs = atoi(v) == 0 ? -1 : atoi(v);
    else if (!strcmp(a, "--probes")) o.probes = atoi(v) == 0 ? -1 : atoi(v);
    else if (!strcmp(a, "--probe-seqs")) o.probe_seqs = atoi(v);
    else if (!strcmp(a, "--out")) out = v;
    else if (!strcmp(a, "--compress")) {
      qg_compressor k;
      if (qg_compressor_from_name(v, &k) || k == QG_COMP_NONE)
        return qg_cli_usage_error("sensitivity", "--compress expects brotli, zstd, xz or zlib, got '%s'", v);
      o.comp = k;
    } else {
      return qg_cli_unknown_arg("sensitivity", "unknown or incomplete option", a);
    }
    i++;
  }
  if (!o.model || !c.val || !c.tokenizer || !o.base || !o.candidates)
    return qg_cli_usage_error("sensitivity", "--model, --val, --tokenizer, --base and --candidates are required");
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
