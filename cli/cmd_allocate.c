/* quantgolf allocate: the best per-group candidate under a byte budget, from a sensitivity
 * table (the work is lab/allocate_run.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/util.h"
#include "io/qgz_loader.h"
#include "lab/allocate_run.h"

void qg_cmd_allocate_help(void) {
  printf("usage: quantgolf allocate --model M --budget BYTES --sensitivity FILE [--objective kld|nll]\n"
         "         [--candidates 'rowwise bits=4|5; ...'] [--code-bytes N|auto] [--granularity BYTES]\n"
         "         [--out SPEC.yaml] [--json]\n"
         "         [--verify --val GLOB --tokenizer T [--max-tokens N] [--seq-len N] [--calib GLOB]\n"
         "          [--device cpu|cuda|auto] [--verify-out A.qgz]]\n\n"
         "Chooses one candidate per group of the sensitivity table (or the group's base spec) to\n"
         "minimise the predicted metric (base + the sum of measured per-group deltas) with the\n"
         "artifact's bytes (fixed bytes + per-group bytes + --code-bytes; auto: the bytes of\n"
         "python/qgz_load.py, the loader an entrant ships) within the budget: an\n"
         "exact multiple-choice knapsack, DP over bytes at --granularity (default: 1 byte, exact,\n"
         "while the table stays within 2^24 cells, else the finest power of two that does; the\n"
         "rounding's worst case, groups x (granularity - 1) bytes, is printed). Prints\n"
         "the choice, the prediction and the Pareto frontier; --out writes the allocation as a\n"
         "spec YAML for quantize --spec-file. --verify quantizes it, measures the artifact's real\n"
         "bytes and its KLD to the float model, and prints predicted vs measured.\n");
}

static int take_i64(const char *v, int64_t min, int64_t *out) {
  char *end;
  errno = 0;
  long long x = strtoll(v, &end, 10);
  if (errno || end == v || *end || x < min) return -1;
  *out = x;
  return 0;
}

int qg_cmd_allocate(int argc, char **argv) {
  const char *cmd = "allocate";
  qg_allocate_opts o = {.budget = -1};
  int json = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char **sv = NULL;
    int64_t *iv = NULL, min = 0;
    if (!strcmp(a, "--json")) { json = 1; continue; }
    if (!strcmp(a, "--verify")) { o.verify = 1; continue; }
    if (!strcmp(a, "--iterate"))
      return qg_cli_usage_error(cmd, "--iterate re-measures around the chosen point with the sensitivity engine, "
                                "which this build does not have yet");
    if (!strcmp(a, "--model")) sv = &o.model;
    else if (!strcmp(a, "--sensitivity")) sv = &o.sensitivity;
    else if (!strcmp(a, "--objective")) sv = &o.objective;
    else if (!strcmp(a, "--candidates")) sv = &o.candidates;
    else if (!strcmp(a, "--out")) sv = &o.out;
    else if (!strcmp(a, "--val")) sv = &o.val;
    else if (!strcmp(a, "--tokenizer")) sv = &o.tokenizer;
    else if (!strcmp(a, "--calib")) sv = &o.calib;
    else if (!strcmp(a, "--device")) sv = &o.device;
    else if (!strcmp(a, "--verify-out")) sv = &o.verify_out;
    else if (!strcmp(a, "--budget")) iv = &o.budget, min = 1;
    else if (!strcmp(a, "--code-bytes")) iv = &o.code_bytes;
    else if (!strcmp(a, "--granularity")) iv = &o.granularity, min = 1;
    else if (!strcmp(a, "--max-tokens")) iv = &o.max_tokens, min = 1;
    else if (!strcmp(a, "--seq-len") || !strcmp(a, "--calib-seqs") || !strcmp(a, "--calib-len")) {
      int64_t x;
      if (i + 1 >= argc || take_i64(argv[i + 1], 1, &x) || x > 1 << 20)
        return qg_cli_usage_error(cmd, "%s needs a positive integer", a);
      *(!strcmp(a, "--seq-len") ? &o.seq_len : !strcmp(a, "--calib-seqs") ? &o.calib_seqs : &o.calib_len) = (int)x;
      i++;
      continue;
    } else return qg_cli_unknown_arg(cmd, "unknown option", a);
    if (i + 1 >= argc) return qg_cli_usage_error(cmd, "%s needs a value", a);
    if (iv == &o.code_bytes && !strcmp(argv[i + 1], "auto")) { /* the loader entrants ship */
      o.code_bytes = qg_qgz_loader_bytes(), i++;
      continue;
    }
    if (sv) *sv = argv[++i];
    else if (take_i64(argv[++i], min, iv)) return qg_cli_usage_error(cmd, "%s: '%s' is not an integer >= %lld", a, argv[i], (long long)min);
  }
  if (!o.model) return qg_cli_usage_error(cmd, "--model is required");
  if (o.budget < 0) return qg_cli_usage_error(cmd, "--budget BYTES is required");
  if (!o.sensitivity)
    return qg_cli_usage_error(cmd, "--sensitivity FILE is required (a sensitivity.json; measuring one in place needs "
                              "the sensitivity engine, which this build does not have yet)");
  qg_allocate_result r;
  qg_status s = qg_allocate_run(&o, &r);
  if (s) return qg_cli_report(cmd, s);
  if (json) {
    qg_buf b;
    qg_buf_init(&b);
    qg_json j;
    qg_json_init(&j, &b, 1);
    qg_allocate_json(&o, &r, &j);
    qg_buf_byte(&b, '\n');
    fwrite(b.p, 1, b.n, stdout);
    qg_buf_free(&b);
  } else {
    const char *obj = o.objective ? o.objective : "kld";
    printf("%-16s %-28s %14s %12s\n", "group", "choice", "delta", "bytes");
    for (int g = 0; g < r.t.n_groups; g++) {
      int k = r.sol.best.choice[g], c = r.sp.opt_cell[g][k];
      printf("%-16s %-28s %14.6g %12lld\n", r.t.groups[g].name, c < 0 ? "base" : r.t.cands[r.t.cells[c].cand],
             r.sp.p.opts[g][k].delta, (long long)r.sp.p.opts[g][k].bytes);
    }
    printf("predicted %s %.6g (base %.6g + %.6g), predicted bytes %lld of budget %lld (fixed %lld, code %lld)\n", obj,
           r.predicted, r.base_metric, r.sol.best.delta, (long long)r.sol.best.bytes, (long long)o.budget,
           (long long)r.t.fixed_bytes, (long long)o.code_bytes);
    printf("solver: exact DP at %lld-byte granularity (worst-case rounding loss %lld bytes of budget), smallest "
           "achievable %lld bytes\n", (long long)r.sol.granularity, (long long)r.sol.slack_bytes,
           (long long)r.sol.min_bytes);
    int nf = r.sol.n_frontier, step = nf > 12 ? nf / 12 : 1;
    printf("frontier (%d points%s): bytes -> predicted %s\n", nf, step > 1 ? ", every few shown" : "", obj);
    for (int f = 0; f < nf; f += step)
      if (f + step < nf || f == nf - 1) printf("  %12lld  %.6g\n", (long long)r.sol.frontier[f].bytes, r.base_metric + r.sol.frontier[f].delta);
    if (nf > 1 && (nf - 1) % step) printf("  %12lld  %.6g\n", (long long)r.sol.frontier[nf - 1].bytes, r.base_metric + r.sol.frontier[nf - 1].delta);
    if (r.verified)
      printf("verify: measured %s %.6g vs predicted %.6g (additivity error %+.6g); artifact %lld bytes vs predicted %lld "
             "(%+lld, %+.3f%%: compressed bytes are not exactly additive); %lld tokens\n", obj, r.measured_metric,
             r.predicted, r.measured_metric - r.predicted, (long long)r.measured_bytes, (long long)r.sol.best.bytes,
             (long long)(r.measured_bytes - r.sol.best.bytes),
             100.0 * (double)(r.measured_bytes - r.sol.best.bytes) / (double)r.sol.best.bytes, (long long)r.measured_tokens);
    if (o.out) printf("spec: %s\n", o.out);
  }
  qg_allocate_result_free(&r);
  return 0;
}
