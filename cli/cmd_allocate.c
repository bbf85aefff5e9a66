/* quantgolf allocate: the best per-group candidate under a byte budget, from a sensitivity
 * table (the work is lab/allocate_run.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/util.h"
#include "io/qgz_loader.h"
#include "lab/allocate_run.h"

void qg_cmd_allocate_help(void) {
  printf("usage: quantgolf allocate --model M --budget BYTES [--sensitivity FILE] [--objective kld|nll]\n"
         "         [--base SPEC --val GLOB --tokenizer T [--groups roles|layers|tensors|GLOB,...] [--calib GLOB]]\n"
         "         [--iterate N]\n"
         "         [--candidates 'rowwise bits=4|5; ...'] [--code-bytes N|auto] [--granularity BYTES]\n"
         "         [--compress rans|brotli|zstd|xz|zlib] [--out SPEC.yaml] [--json]\n"
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
         "bytes and its KLD to the float model (95%% block-bootstrap interval), and prints\n"
         "predicted vs measured; when the real artifact (plus --code-bytes) is over the budget it\n"
         "charges the measured excess to the options the choice took and re-solves (at most 8\n"
         "measured re-solves), and says whether the delivered artifact fits. Without --sensitivity the table is measured in\n"
         "place by the sensitivity engine from --base and --candidates. --iterate N re-measures\n"
         "the table with the chosen allocation as the base and re-solves, until no group's\n"
         "choice changes (at most N rounds, N <= 8), printing each round.\n"
         "Bytes are those of the table's compressor (its \"compressor\"; brotli for tables without\n"
         "one), and verify writes the artifact with it; --compress names the artifact's and refuses\n"
         "a table measured with another; measured in place, --compress (default rans) is used.\n");
}

/* --code-bytes N, or auto: the bytes of the loader an entrant ships (python/qgz_load.py) */
static int code_bytes_arg(const char *v, void *dst, char *err, size_t cap) {
  (void)err, (void)cap;
  int64_t *out = dst;
  if (!strcmp(v, "auto")) {
    *out = qg_qgz_loader_bytes();
    return 0;
  }
  char *end;
  long long x = strtoll(v, &end, 10);
  if (!*v || *end || x < 0) return 1;
  *out = x;
  return 0;
}

static void on_progress(void *ctx, const char *stage, int i, int n) {
  (void)ctx;
  fprintf(stderr, "allocate: sensitivity %s %d/%d\n", stage, i, n);
}

int qg_cmd_allocate(int argc, char **argv) {
  const char *cmd = "allocate";
  qg_allocate_opts o = {.budget = -1};
  int json = 0;
#define STR(nm, field) {.name = nm, .kind = QG_ARG_STR, .dst = &o.field}
#define AT_LEAST(nm, field, l) \
  {.name = nm, .kind = QG_ARG_I64, .dst = &o.field, .lo = l, .hi = INT64_MAX, .bad = "{opt}: '{val}' is not an integer >= {lo}"}
#define POSITIVE(nm, field)                                                   \
  {.name = nm, .kind = QG_ARG_INT, .dst = &o.field, .lo = 1, .hi = 1 << 20, \
   .bad = "{opt} needs a positive integer", .missing = "{opt} needs a positive integer"}
  const qg_arg args[] = {
      {.name = "--json", .kind = QG_ARG_FLAG, .dst = &json},
      {.name = "--verify", .kind = QG_ARG_FLAG, .dst = &o.verify},
      STR("--model", model), STR("--sensitivity", sensitivity), STR("--objective", objective),
      STR("--base", base), STR("--groups", groups),
      STR("--candidates", candidates), STR("--out", out), STR("--val", val), STR("--tokenizer", tokenizer),
      STR("--calib", calib), STR("--device", device), STR("--verify-out", verify_out),
      AT_LEAST("--budget", budget, 1), {.name = "--code-bytes", .kind = QG_ARG_FN, .dst = &o.code_bytes, .fn = code_bytes_arg,
       .bad = "{opt}: '{val}' is not an integer >= 0 or auto"},
      AT_LEAST("--granularity", granularity, 1),
      {.name = "--compress", .kind = QG_ARG_FN, .dst = &o.comp, .fn = qg_cli_artifact_compressor,
       .bad = "{opt} expects rans, brotli, zstd, xz or zlib, got '{val}'"},
      AT_LEAST("--max-tokens", max_tokens, 1),
      POSITIVE("--seq-len", seq_len), POSITIVE("--calib-seqs", calib_seqs), POSITIVE("--calib-len", calib_len),
      POSITIVE("--iterate", iterate),
      {0}};
#undef STR
#undef AT_LEAST
#undef POSITIVE
  const qg_args_spec spec = {.cmd = cmd, .args = args, .flags = QG_ARGS_GLOB_HINT, .unknown = "unknown option '{arg}'",
                             .missing = "{opt} needs a value"};
  if (qg_cli_parse(&spec, &argc, argv)) return 2;
  if (!o.model) return qg_cli_usage_error(cmd, "--model is required");
  if (o.budget < 0) return qg_cli_usage_error(cmd, "--budget BYTES is required");
  if (!o.sensitivity && (!o.base || !o.candidates || !o.val || !o.tokenizer))
    return qg_cli_usage_error(cmd, "without --sensitivity FILE, give --base, --candidates, --val and --tokenizer (the "
                              "table is measured in place)");
  if (o.iterate > QG_ALLOC_ITER_MAX) return qg_cli_usage_error(cmd, "--iterate: at most %d rounds", QG_ALLOC_ITER_MAX);
  o.progress = on_progress;
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
      int k = r.sol.best.choice[g];
      printf("%-16s %-28s %14.6g %12lld\n", r.t.groups[g].name, r.choice[g],
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
    if (o.iterate) printf("iterate: first solve predicted %s %.6g at %lld bytes\n", obj, r.first_predicted,
                          (long long)r.first_predicted_bytes);
    for (int k = 0; k < r.n_rounds; k++)
      printf("iterate round %d: re-measured around the allocation: its %s %.6g (predicted %.6g), re-solved: predicted "
             "%.6g, %lld bytes, %d group(s) changed\n", k + 1, obj, r.rounds[k].base_metric,
             k ? r.rounds[k - 1].predicted : r.first_predicted, r.rounds[k].predicted,
             (long long)r.rounds[k].predicted_bytes, r.rounds[k].changed);
    if (o.iterate) printf("iterate: %s after %d round(s)\n", r.converged ? "converged" : "not converged", r.n_rounds);
    if (r.verified) {
      printf("verify: measured %s %.6g", obj, r.measured_metric);
      if (strcmp(obj, "nll")) printf(" [%.6g, %.6g] (95%%, block bootstrap over windows)", r.measured_kld_lo, r.measured_kld_hi);
      printf(" vs predicted %.6g (additivity error %+.6g); artifact %lld bytes vs predicted %lld (%+lld, %+.3f%%: "
             "compressed bytes are not exactly additive); %lld tokens\n", r.predicted, r.measured_metric - r.predicted,
             (long long)r.measured_bytes, (long long)r.sol.best.bytes, (long long)(r.measured_bytes - r.sol.best.bytes),
             100.0 * (double)(r.measured_bytes - r.sol.best.bytes) / (double)r.sol.best.bytes, (long long)r.measured_tokens);
      for (int k = 1; k <= r.repair.rounds; k++)
        printf("repair %d: solved at budget %lld: artifact + code %lld bytes (%+lld against the budget)\n", k,
               (long long)r.repair.budget[k], (long long)r.repair.measured[k],
               (long long)(r.repair.measured[k] - o.budget));
      printf("delivered artifact %s the budget (%lld + code %lld vs %lld)\n", r.fits ? "fits" : "does NOT fit",
             (long long)r.measured_bytes, (long long)o.code_bytes, (long long)o.budget);
    }
    if (o.out) printf("spec: %s\n", o.out);
  }
  qg_allocate_result_free(&r);
  return 0;
}
