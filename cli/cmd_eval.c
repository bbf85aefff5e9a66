/* quantgolf eval: val_loss, val_bpb and perplexity of one model, as the contest computes
 * them (eval_val), or with sliding windows. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "cli/json_doc.h"
#include "comm/comm.h"
#include "eval/eval.h"
#include "quant/artifact.h"
#include "io/shard_manifest.h"

static void eval_args(qg_eval_cli *c, const char **model, qg_arg common[QG_CLI_EVAL_NARGS], qg_arg args[3]);

void qg_cmd_eval_help(void) {
  printf(
      "usage: quantgolf eval --model M --val 'DIR/fineweb_val_*.bin' --tokenizer T.model|T.vocab\n"
      "                      [--seq-len 1024] [--stride S] [--max-tokens N] [--batch B]\n"
      "                      [--mlp-power P] [--device cpu|cuda|auto] [--precision fp32|bf16] [--json]\n"
      "                      [--threads N] [--allow-tokenizer-mismatch]\n\n"
      "Prints val_loss (nats/token), val_bpb, perplexity, and the token and byte counts.\n");
  /* the option list comes from the table the parser reads */
  qg_eval_cli c = {0};
  const char *model;
  qg_arg common[QG_CLI_EVAL_NARGS], args[3];
  eval_args(&c, &model, common, args);
  char buf[4096];
  qg_args_help(args, 13, buf, sizeof buf);
  fputs(buf, stdout);
  fputs("  --comm self|mpi|auto  under mpirun: windows split over the ranks, the one-rank figures\n", stdout);
  fputs("  --nproc N             N ranks on this machine: the same command under `mpirun -np N`\n", stdout);
}

static int precision(const char *v, void *dst, char *err, size_t cap) {
  (void)err, (void)cap;
  return qg_precision_parse(v, dst) != QG_OK;
}

void qg_cli_eval_args(const char *cmd, qg_eval_cli *c, qg_arg tab[QG_CLI_EVAL_NARGS]) {
  c->cmd = cmd;
  /* windows: say the limit, not just "invalid" */
#define WINDOW(nm, field, text)                                                                                    \
  {.name = nm, .kind = QG_ARG_INT, .dst = &c->opts.field, .lo = 1, .hi = 1000000, .missing = "{opt} needs a value", \
   .bad = "{opt} expects a positive integer, got '{val}'", .high = "{opt} {val}: at most 1,000,000", .help = text}
  const qg_arg t[QG_CLI_EVAL_NARGS] = {
      {.name = "--val", .kind = QG_ARG_STR, .dst = &c->val, .missing = "{opt} needs a value", .flags = QG_ARG_REQUIRED,
       .help = "token shards (a quoted glob is concatenated in sorted order)"},
      {.name = "--tokenizer", .kind = QG_ARG_STR, .dst = &c->tokenizer, .missing = "{opt} needs a value",
       .flags = QG_ARG_REQUIRED,
       .help = "the SentencePiece .model or .vocab; bytes per token come from its pieces\n"
               "exactly as the contest's build_sentencepiece_luts counts them"},
      WINDOW("--seq-len", seq_len, "window length (default 1024)"),
      WINDOW("--stride", stride,
             "sliding windows: every token scored once with >= seq_len - S context;\n"
             "without it, the contest's non-overlapping eval_val windows over the\n"
             "stream truncated to ((n-1)/seq_len)*seq_len + 1 tokens"),
      {.name = "--max-tokens", .kind = QG_ARG_I64, .dst = &c->opts.max_tokens, .lo = 1, .hi = INT64_MAX,
       .missing = "{opt} needs a value", .bad = "{opt} expects a positive integer, got '{val}'",
       .help = "use only the first N tokens of the stream"},
      WINDOW("--batch", batch, "windows per forward pass (default: about 8192 tokens)"),
      {.name = "--mlp-power", .kind = QG_ARG_F32, .dst = &c->gopt.mlp_power, .min = 0, .max = 16,
       .flags = QG_ARG_OPEN_MIN, .missing = "{opt} needs a value", .bad = "{opt} expects a number in (0, 16], got '{val}'",
       .help = "the MLP's relu(x)^p exponent (not stored in checkpoints; default 2)"},
      {.name = "--device", .kind = QG_ARG_STR, .dst = &c->device, .missing = "{opt} needs a value",
       .help = "backend (default auto: CUDA where a GPU is present)"},
      /* matmul precision: the CUDA backend's bf16 table */
      {.name = "--precision", .kind = QG_ARG_FN, .dst = &c->gopt.precision, .fn = precision,
       .missing = "{opt} needs a value", .bad = "{opt} expects fp32 or bf16, got '{val}'",
       .help = "matrix products in fp32 (default; TF32 off on CUDA) or bf16 inputs with\n"
               "fp32 accumulation (CUDA only)"},
      {.name = "--json", .kind = QG_ARG_FLAG, .dst = &c->json,
       .help = "one JSON object: val_loss, val_bpb, ppl, tokens, bytes, ..."},
      {.kind = QG_ARG_TABLE, .table = qg_cli_threads_args},
      {.name = "--allow-tokenizer-mismatch", .kind = QG_ARG_FLAG, .dst = &c->allow_tok_mismatch,
       .help = "evaluate although the shards' manifest (written by\n"
               "`prepare`) names another tokenizer: bytes per token, and so val_bpb,\n"
               "would then be counted with the wrong pieces"},
      {0}};
#undef WINDOW
  memcpy(tab, t, sizeof t);
}

qg_status qg_cli_check_tokenizer(const char *cmd, const qg_shards *sh, const qg_spm *tok, const char *tok_path,
                                 int allow) {
  qg_status s = qg_shards_check_tokenizer(sh, tok, tok_path, NULL);
  if (s && allow) {
    fprintf(stderr, "quantgolf %s: warning (--allow-tokenizer-mismatch): %s\n", cmd, qg_last_error());
    s = QG_OK;
  }
  return s;
}

/* Opens shards and tokenizer, checks them against the vocabulary and the shards'
 * tokenizer manifest. */
qg_status qg_cli_open_eval_data(const qg_eval_cli *c, int vocab, qg_shards *val, qg_spm_luts *luts) {
  qg_spm tok;
  qg_shards_init(val);
  memset(luts, 0, sizeof *luts);
  QG_TRY(qg_spm_load(c->tokenizer, &tok));
  qg_status s = QG_OK;
  if (tok.n_pieces != vocab)
    s = qg_fail(QG_ERR_INPUT, "%s: tokenizer has %d pieces but the model's vocabulary is %d", c->tokenizer, tok.n_pieces,
                vocab);
  if (!s) s = qg_spm_luts_init(luts, &tok, vocab);
  if (!s) s = qg_shards_open(c->val, val);
  if (!s) s = qg_cli_check_tokenizer(c->cmd ? c->cmd : "train", val, &tok, c->tokenizer, c->allow_tok_mismatch);
  qg_spm_free(&tok);
  if (!s) s = qg_shards_check_vocab(val, vocab);
  /* named here: the window planner only sees a token count */
  if (!s && qg_shards_count(val) < 2)
    s = qg_fail(QG_ERR_INPUT, "%s: %lld tokens; evaluation needs at least 2", c->val, (long long)qg_shards_count(val));
  if (s) {
    qg_spm_luts_free(luts);
    qg_shards_close(val);
  }
  return s;
}

static void eval_args(qg_eval_cli *c, const char **model, qg_arg common[QG_CLI_EVAL_NARGS], qg_arg args[3]) {
  qg_cli_eval_args("eval", c, common);
  const qg_arg t[3] = {{.name = "--model", .kind = QG_ARG_STR, .dst = model, .flags = QG_ARG_REQUIRED,
                        .help = "any checkpoint: .pt, .safetensors, .int8.ptz (dequantized as the contest does)"},
                       {.kind = QG_ARG_TABLE, .table = common},
                       {0}};
  memcpy(args, t, sizeof t);
}

int qg_cmd_eval(int argc, char **argv) {
  qg_eval_cli c = {.opts = {.seq_len = 1024}, .device = "auto"};
  /* --comm: windows split over ranks, the single-rank figures; rank 0 prints */
  int crc = qg_cli_take_comm("eval", &argc, argv, &c.opts.comm);
  if (crc) return crc;
  const char *model = NULL;
  qg_arg common[QG_CLI_EVAL_NARGS], args[3];
  eval_args(&c, &model, common, args);
  const qg_args_spec spec = {.cmd = "eval", .args = args, .flags = QG_ARGS_GLOB_HINT,
                             .unknown = "unknown or incomplete option '{arg}'",
                             .required = "--model, --val and --tokenizer are required"};
  int rc = qg_cli_parse(&spec, &argc, argv);
  if (rc) return rc;
  const qg_ops *ops;
  qg_status s = qg_ops_by_name(c.device, &ops);
  if (s) return qg_cli_report("eval", s);
  qg_gpt m;
  if ((s = qg_gpt_load(&m, model, &c.gopt, ops))) return qg_cli_report("eval", s);
  qg_shards val;
  qg_spm_luts luts;
  if ((s = qg_cli_open_eval_data(&c, m.cfg.vocab, &val, &luts))) {
    qg_gpt_free(&m);
    return qg_cli_report("eval", s);
  }
  qg_eval_totals t;
  s = qg_eval_run(&m, NULL, &val, &luts, &c.opts, NULL, NULL, &t);
  if (!s && qg_comm_rank(c.opts.comm) == 0) {
    double loss = t.nll_a / (double)t.tokens, bpb = qg_bpb(t.nll_a, t.bytes);
    char desc[256];
    qg_gpt_describe(&m.cfg, desc, sizeof desc);
    if (c.json) {
      qg_buf b;
      qg_json j;
      qg_cli_json_begin(&j, &b, "eval");
      qg_cli_json_file_open(&j, "model", model);
      qg_json_key(&j, "architecture"), qg_json_str(&j, desc);
      qg_json_key(&j, "parameters"), qg_json_int(&j, qg_gpt_param_count(&m.cfg));
      qg_json_obj_end(&j);
      qg_json_key(&j, "device"), qg_json_str(&j, m.ops->name);
      qg_json_key(&j, "val_loss"), qg_json_num(&j, loss);
      qg_json_key(&j, "val_bpb"), qg_json_num(&j, bpb);
      qg_json_key(&j, "ppl"), qg_json_num(&j, exp(loss));
      qg_json_key(&j, "tokens"), qg_json_int(&j, t.tokens);
      qg_json_key(&j, "bytes"), qg_json_int(&j, t.bytes);
      qg_json_key(&j, "seq_len"), qg_json_int(&j, c.opts.seq_len);
      qg_json_key(&j, "stride"), qg_json_int(&j, c.opts.stride);
      qg_json_key(&j, "seconds"), qg_json_num(&j, t.seconds);
      qg_cli_json_end(&j, &b);
    } else {
      printf("model: %s\narchitecture: %s\ndevice: %s\n", model, desc, m.ops->name);
      printf("windows: seq_len %d, %s\n", c.opts.seq_len, c.opts.stride ? "sliding" : "contest eval_val (non-overlapping)");
      if (c.opts.stride) printf("stride: %d\n", c.opts.stride);
      printf("tokens: %lld\nbytes: %lld\nval_loss: %.8f\nval_bpb: %.8f\nppl: %.6f\n", (long long)t.tokens,
             (long long)t.bytes, loss, bpb, exp(loss));
      printf("throughput: %.1f tokens/s\n", t.seconds > 0 ? (double)t.tokens / t.seconds : 0.0);
    }
  }
  qg_shards_close(&val);
  qg_spm_luts_free(&luts);
  qg_gpt_free(&m);
  rc = s ? qg_cli_comm_report("eval", c.opts.comm, s, 0) : 0;
  qg_cli_comm_close();
  return rc;
}
