/* quantgolf eval: val_loss, val_bpb and perplexity of one model, as the contest computes
 * them (eval_val), or with sliding windows. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "comm/comm.h"
#include "core/json.h"
#include "eval/eval.h"
#include "quant/artifact.h"
#include "io/shard_manifest.h"

void qg_cmd_eval_help(void) {
  printf(
      "usage: quantgolf eval --model M --val 'DIR/fineweb_val_*.bin' --tokenizer T.model|T.vocab\n"
      "                      [--seq-len 1024] [--stride S] [--max-tokens N] [--batch B]\n"
      "                      [--mlp-power P] [--device cpu|cuda|auto] [--precision fp32|bf16] [--json]\n"
      "                      [--threads N] [--allow-tokenizer-mismatch]\n\n"
      "Prints val_loss (nats/token), val_bpb, perplexity, and the token and byte counts.\n"
      "  --model       any checkpoint: .pt, .safetensors, .int8.ptz (dequantized as the contest does)\n"
      "  --val         token shards (a quoted glob is concatenated in sorted order)\n"
      "  --tokenizer   the SentencePiece .model or .vocab; bytes per token come from its pieces\n"
      "                exactly as the contest's build_sentencepiece_luts counts them\n"
      "  --seq-len     window length (default 1024)\n"
      "  --stride      sliding windows: every token scored once with >= seq_len - S context;\n"
      "                without it, the contest's non-overlapping eval_val windows over the\n"
      "                stream truncated to ((n-1)/seq_len)*seq_len + 1 tokens\n"
      "  --max-tokens  use only the first N tokens of the stream\n"
      "  --batch       windows per forward pass (default: about 8192 tokens)\n"
      "  --mlp-power   the MLP's relu(x)^p exponent (not stored in checkpoints; default 2)\n"
      "  --device      backend (default auto: CUDA where a GPU is present)\n"
      "  --precision   matrix products in fp32 (default; TF32 off on CUDA) or bf16 inputs with\n"
      "                fp32 accumulation (CUDA only)\n"
      "  --json        one JSON object: val_loss, val_bpb, ppl, tokens, bytes, ...\n"
      "  --threads     CPU threads (default: the QG_THREADS environment variable, else every\n"
      "                online CPU)\n"
      "  --allow-tokenizer-mismatch  evaluate although the shards' manifest (written by\n"
      "                `prepare`) names another tokenizer: bytes per token, and so val_bpb,\n"
      "                would then be counted with the wrong pieces\n"
      "  --comm self|mpi|auto  under mpirun: windows split over the ranks, the one-rank figures\n");
}

int qg_cli_parse_eval_common(const char *cmd, int argc, char **argv, int *i, qg_eval_cli *c) {
  const char *a = argv[*i];
  const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
  c->cmd = cmd;
#define TAKE()                                                            \
  do {                                                                    \
    if (!v) {                                                             \
      qg_cli_usage_error(cmd, "%s needs a value", a);                     \
      return -1;                                                          \
    }                                                                     \
    (*i)++;                                                               \
  } while (0)
  char *end;
  if (!strcmp(a, "--val")) {
    TAKE();
    c->val = v;
  } else if (!strcmp(a, "--tokenizer")) {
    TAKE();
    c->tokenizer = v;
  } else if (!strcmp(a, "--seq-len") || !strcmp(a, "--stride") || !strcmp(a, "--batch") ||
             !strcmp(a, "--max-tokens")) {
    TAKE();
    long long n = strtoll(v, &end, 10);
    if (!*v || *end || n < 1) {
      qg_cli_usage_error(cmd, "%s expects a positive integer, got '%s'", a, v);
      return -1;
    }
    if (strcmp(a, "--max-tokens") && n > 1000000) { /* say the limit, not just "invalid" */
      qg_cli_usage_error(cmd, "%s %s: at most 1,000,000", a, v);
      return -1;
    }
    if (!strcmp(a, "--seq-len")) c->opts.seq_len = (int)n;
    else if (!strcmp(a, "--stride")) c->opts.stride = (int)n;
    else if (!strcmp(a, "--batch")) c->opts.batch = (int)n;
    else c->opts.max_tokens = n;
  } else if (!strcmp(a, "--mlp-power")) {
    TAKE();
    double p = strtod(v, &end);
    if (*end || !(p > 0 && p <= 16)) {
      qg_cli_usage_error(cmd, "--mlp-power expects a number in (0, 16], got '%s'", v);
      return -1;
    }
    c->gopt.mlp_power = (float)p;
  } else if (!strcmp(a, "--device")) {
    TAKE();
    c->device = v;
  } else if (!strcmp(a, "--precision")) { /* matmul precision: the CUDA backend's bf16 table */
    TAKE();
    if (qg_precision_parse(v, &c->gopt.precision)) {
      qg_cli_usage_error(cmd, "--precision expects fp32 or bf16, got '%s'", v);
      return -1;
    }
  } else if (!strcmp(a, "--json")) {
    c->json = 1;
  } else if (!strcmp(a, "--allow-tokenizer-mismatch")) {
    c->allow_tok_mismatch = 1;
  } else {
    return 0;
  }
#undef TAKE
  return 1;
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

int qg_cmd_eval(int argc, char **argv) {
  qg_eval_cli c = {.opts = {.seq_len = 1024}, .device = "auto"};
  /* --comm: windows split over ranks, the single-rank figures; rank 0 prints */
  int crc = qg_cli_take_comm("eval", &argc, argv, &c.opts.comm);
  if (crc) return crc;
  const char *model = NULL;
  for (int i = 1; i < argc; i++) {
    int r = qg_cli_parse_eval_common("eval", argc, argv, &i, &c);
    if (r < 0) return 2;
    if (r > 0) continue;
    if (!strcmp(argv[i], "--model") && i + 1 < argc)
      model = argv[++i];
    else
      return qg_cli_unknown_arg("eval", "unknown or incomplete option", argv[i]);
  }
  if (!model || !c.val || !c.tokenizer) return qg_cli_usage_error("eval", "--model, --val and --tokenizer are required");
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
      qg_buf_init(&b);
      qg_json j;
      qg_json_init(&j, &b, 1);
      qg_json_obj_begin(&j);
      qg_json_key(&j, "model"), qg_json_str(&j, model);
      qg_json_key(&j, "architecture"), qg_json_str(&j, desc);
      qg_json_key(&j, "device"), qg_json_str(&j, m.ops->name);
      qg_json_key(&j, "val_loss"), qg_json_num(&j, loss);
      qg_json_key(&j, "val_bpb"), qg_json_num(&j, bpb);
      qg_json_key(&j, "ppl"), qg_json_num(&j, exp(loss));
      qg_json_key(&j, "tokens"), qg_json_int(&j, t.tokens);
      qg_json_key(&j, "bytes"), qg_json_int(&j, t.bytes);
      qg_json_key(&j, "seq_len"), qg_json_int(&j, c.opts.seq_len);
      qg_json_key(&j, "stride"), qg_json_int(&j, c.opts.stride);
      qg_json_key(&j, "seconds"), qg_json_num(&j, t.seconds);
      qg_json_obj_end(&j);
      qg_buf_byte(&b, '\n');
      fwrite(b.p, 1, b.n, stdout);
      qg_buf_free(&b);
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
  int rc = s ? qg_cli_comm_report("eval", c.opts.comm, s, 0) : 0;
  qg_comm_close(c.opts.comm);
  return rc;
}
