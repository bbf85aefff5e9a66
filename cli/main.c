/* quantgolf: the command-line entry point. Parses the subcommand and hands over. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"

#include "cli/commands.h"
#include "core/progress.h"
#include "io/qgz.h"

static const qg_command commands[] = {
    {"inspect", "list the tensors of a checkpoint, tokenizer or shard file", qg_cmd_inspect,
     qg_cmd_inspect_help, 0},
    {"convert", "convert any readable checkpoint to safetensors", qg_cmd_convert,
     qg_cmd_convert_help, 0},
    {"export-int8", "quantize a float checkpoint to the contest's .int8.ptz artifact",
     qg_cmd_export_int8, qg_cmd_export_int8_help, 0},
    {"tokenizer", "assemble or train a SentencePiece BPE .model", qg_cmd_tokenizer,
     qg_cmd_tokenizer_help, 0},
    {"encode", "text lines to token ids, exactly as sentencepiece", qg_cmd_encode,
     qg_cmd_encode_help, 0},
    {"decode", "token ids back to text", qg_cmd_decode, qg_cmd_decode_help, 0},
    {"prepare", "documents to contest token shards (BOS + tokens)", qg_cmd_prepare,
     qg_cmd_prepare_help, 0},
    {"eval", "val_loss, val_bpb and perplexity of a model on token shards", qg_cmd_eval, qg_cmd_eval_help, 1},
    {"kld", "KL divergence and paired statistics of a model against a base model", qg_cmd_kld, qg_cmd_kld_help, 1},
    {"quantize", "quantize a checkpoint by a spec into a .qgz (or contest .int8.ptz) artifact",
     qg_cmd_quantize, qg_cmd_quantize_help, 1},
    {"quantizers", "every quantizer and option (type, range, default, meaning) and the spec presets",
     qg_cmd_quantizers, qg_cmd_quantizers_help, 0},
    {"train", "train the contest GPT (Muon + Adam, STE QAT, checkpoints, resume)", qg_cmd_train,
     qg_cmd_train_help, 1},
    {"sensitivity", "per-group KLD deltas, bytes and ROI of candidate quantizers against a base spec",
     qg_cmd_sensitivity, qg_cmd_sensitivity_help, 0},
    {"allocate", "the best per-group quantizer choice under a byte budget, from a sensitivity table",
     qg_cmd_allocate, qg_cmd_allocate_help, 0},
    {"run", "run hypothesis files (experiments/*.yaml) into reports with verdicts", qg_cmd_run, qg_cmd_run_help, 0},
    {"info", "version, build options and GPU availability", qg_cmd_info, qg_cmd_info_help, 0},
};
static const int n_commands = (int)(sizeof commands / sizeof commands[0]);

static void usage(FILE *f) {
  fprintf(f,
          "quantgolf %s: a post-training quantization workbench for the Parameter Golf model\n\n"
          "usage: quantgolf COMMAND [ARGS...]\n       quantgolf COMMAND --help\n\ncommands:\n",
          QG_VERSION);
  for (int i = 0; i < n_commands; i++) fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
  fprintf(f, "\nenvironment: QG_THREADS=N  CPU threads (default every online CPU); quantize, eval, kld and\n"
             "                           train also take --threads N\n");
  fprintf(f, "\nexit codes: 0 success, 1 runtime failure, 2 bad usage or bad input\n");
}

int qg_cli_report(const char *cmd, qg_status st) {
  const char *msg = qg_last_error();
  fprintf(stderr, "quantgolf %s: %s\n", cmd, *msg ? msg : qg_status_name(st));
  return qg_status_exit_code(st);
}

int qg_cli_usage_error(const char *cmd, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "quantgolf %s: ", cmd);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, " (see quantgolf %s --help)\n", cmd);
  va_end(ap);
  return 2;
}

/* --threads N for the commands that run the thread pool: it fixes the pool's size before
 * first use, so it is taken out of argv before the command's other options. */
static int threads_n;
static int threads_request(const char *value, void *dst, char *err, size_t cap) {
  (void)value, (void)dst;
  if (qg_threads_request(threads_n))
    snprintf(err, cap, "--threads: the thread pool is already running with %d threads", qg_threads());
  return err[0] != 0;
}
const qg_arg qg_cli_threads_args[] = {
    {.name = "--threads", .kind = QG_ARG_INT, .dst = &threads_n, .lo = 1, .hi = 256, .fn = threads_request,
     .bad = "{opt} {val}: expected an integer in [1, 256]", .missing = "{opt} needs a value", .flags = QG_ARG_EARLY,
     .help = "CPU threads (default: the QG_THREADS environment variable, else every\nonline CPU)"},
    {0}};

int qg_cli_artifact_compressor(const char *v, void *dst, char *err, size_t cap) {
  (void)err, (void)cap;
  qg_compressor k;
  if (qg_compressor_from_name(v, &k) || k == QG_COMP_NONE) return 1;
  *(qg_compressor *)dst = k;
  return 0;
}

int qg_cli_args_error(const qg_args *p) {
  /* QG_ARGS_HELP: main answers -h/--help before a command parses, so only a caller that
   * skipped main sees it */
  if (!p->err[0]) return qg_cli_usage_error(p->spec->cmd, "for help: quantgolf %s --help", p->spec->cmd);
  return qg_cli_usage_error(p->spec->cmd, "%s", p->err);
}

int qg_cli_parse(const qg_args_spec *spec, int *argc, char **argv) {
  qg_args p;
  if (qg_args_begin(&p, spec, argc, argv) || qg_args_finish(&p)) return qg_cli_args_error(&p);
  return 0;
}

/* The library's progress reports, one refreshed line on stderr per piece of work. */
static void print_progress(void *ctx, const qg_progress_report *r) {
  (void)ctx;
  fprintf(stderr, "\r%s: %lld/%lld %s (%.1f%%), %.1f %s/s, %s %d:%02d%s", r->label, (long long)r->done,
          (long long)r->total, r->unit, r->total ? 100.0 * (double)r->done / (double)r->total : 100.0, r->rate, r->unit,
          r->final ? "elapsed" : "ETA", (int)(r->seconds / 60), (int)r->seconds % 60, r->final ? "\n" : "");
  fflush(stderr);
}

int main(int argc, char **argv) {
  qg_progress_set_sink(print_progress, NULL);
  if (argc < 2) {
    fprintf(stderr, "quantgolf: missing COMMAND (see quantgolf --help)\n");
    return 2;
  }
  if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("quantgolf %s\n", QG_VERSION);
    return 0;
  }
  for (int i = 0; i < n_commands; i++) {
    if (strcmp(argv[1], commands[i].name) != 0) continue;
    if (qg_args_wants_help(argc - 1, argv + 1)) {
      commands[i].help();
      return 0;
    }
    int sub_argc = argc - 1, rc = commands[i].ranks ? qg_cli_nproc(argv[1], &sub_argc, argv + 1) : -1;
    if (rc >= 0) return rc;
    rc = commands[i].run(sub_argc, argv + 1);
    qg_cli_comm_close();
    return rc;
  }
  fprintf(stderr, "quantgolf: unknown command '%s' (see quantgolf --help)\n", argv[1]);
  return 2;
}
