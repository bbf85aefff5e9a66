/* quantgolf train: the contest's training recipe (train/train.h) with STE QAT,
 * checkpoints and resume; at the end val_loss / val_bpb as the contest's log prints them. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "core/json.h"
#include "core/progress.h"
#include "eval/eval.h"
#include "train/train.h"

void qg_cmd_train_help(void) {
  printf(
      "usage: quantgolf train --train GLOB --val GLOB --tokenizer T --out DIR [options]\n\n"
      "Trains the contest GPT with train_gpt.py's recipe on the CPU (Muon for block matrices,\n"
      "Adam for the embedding and control tensors, warmdown, gradient accumulation), then\n"
      "prints val_loss and val_bpb (the contest's eval_val). Checkpoints: DIR/train_state.safetensors\n"
      "(weights, optimizer state, step, data position; for --resume) and DIR/final_model.safetensors\n"
      "(the float weights). The full configuration and every logged step go to DIR/train.log.\n\n"
      "model (defaults: the contest baseline)\n"
      "  --layers 9 --dim 512 --heads 8 --kv-heads 4 --mlp-mult 2 [--untied] [--mlp-power 2]\n"
      "  the vocabulary is the tokenizer's piece count\n"
      "batch and schedule\n"
      "  --seq-len 1024 --batch-tokens 524288 --grad-accum 8   (batch-tokens / grad-accum must be\n"
      "                                                        a multiple of seq-len)\n"
      "  --iterations 20000 --warmup-steps 10 --warmdown 150\n"
      "  --max-seconds S      wall-clock cap; the warmdown then follows elapsed time (default off)\n"
      "optimizers\n"
      "  --matrix-lr 0.04 --scalar-lr 0.04 --tied-embed-lr 0.05 --embed-lr 0.6 --head-lr 0.008\n"
      "  --muon-momentum 0.95 --muon-momentum-warmup-start 0.85 --muon-momentum-warmup-steps 500\n"
      "  --muon-backend-steps 5 --beta1 0.9 --beta2 0.95 --adam-eps 1e-8\n"
      "  --qk-gain-init 1.5 --tied-embed-init-std 0.005 --seed 1337 [--init CHECKPOINT]\n"
      "QAT (straight-through fake quantization in the forward)\n"
      "  --qat SPEC           quantize spec (inline rules or YAML file, as `quantgolf quantize`)\n"
      "  --qat-start FRAC     on from step FRAC * iterations (default 0: from the start)\n"
      "  --late-qat T         on once lr_mul < T (the contest's LATE_QAT_THRESHOLD, e.g. 0.15)\n"
      "  --qat-ste clip       zero the gradient of clipped weights (default: identity)\n"
      "checkpoints\n"
      "  --save-every N       also every N steps (default: only at the end)\n"
      "  --stop-at STEP       end after STEP steps as an interruption would (no final eval)\n"
      "  --resume             continue DIR's run (bitwise on the CPU; same configuration)\n"
      "output\n"
      "  --val-max-tokens N   evaluate on the first N validation tokens only\n"
      "  --json               final figures as one JSON object on stdout\n");
}

typedef struct {
  FILE *log;
  double last_print;
  int iterations;
  int quiet;
} progress_ctx;

static void on_event(void *ctx, const qg_train_info *i) {
  progress_ctx *p = ctx;
  char line[512];
  switch (i->ev) {
    case QG_TRAIN_EV_WARMUP:
      snprintf(line, sizeof line, "warmup_step:%d train_loss:%.4f", i->step, i->train_loss);
      break;
    case QG_TRAIN_EV_SAVED:
      snprintf(line, sizeof line, "checkpoint step:%d %s", i->step, i->path);
      break;
    default: {
      double eta = i->step > 0 ? i->elapsed_s / i->step * (p->iterations - i->step) : 0;
      snprintf(line, sizeof line,
               "step:%d/%d train_loss:%.4f lr_mul:%.4f tok/s:%.0f train_time:%.0fms step_avg:%.2fms eta:%d:%02d%s",
               i->step, p->iterations, i->train_loss, i->lr_mul, i->tokens_per_s, 1000 * i->elapsed_s,
               1000 * i->elapsed_s / (i->step ? i->step : 1), (int)(eta / 60), (int)fmod(eta, 60),
               i->ev == QG_TRAIN_EV_QAT_ON ? " qat:on" : "");
    }
  }
  if (p->log) {
    fprintf(p->log, "%s\n", line);
    fflush(p->log);
  }
  /* stderr: the first 10 steps, then at most one line a second, and every event */
  double now = qg_now();
  int is_step = i->ev == QG_TRAIN_EV_STEP;
  if (!is_step || i->step <= 10 || i->step == p->iterations || now - p->last_print >= 1.0) {
    fprintf(stderr, "%s\n", line);
    p->last_print = now;
  }
}

/* Parses a number option; -1 on a usage error (printed). */
static int num(const char *a, const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (*end || end == v || errno || !(d >= lo && d <= hi)) {
    qg_cli_usage_error("train", "%s expects a number in [%g, %g], got '%s'", a, lo, hi, v);
    return -1;
  }
  *out = d;
  return 0;
}

static int integer(const char *a, const char *v, long long lo, long long hi, long long *out) {
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (*end || end == v || errno || n < lo || n > hi) {
    qg_cli_usage_error("train", "%s expects an integer in [%lld, %lld], got '%s'", a, lo, hi, v);
    return -1;
  }
  *out = n;
  return 0;
}

static qg_status evaluate(const qg_trainer *t, int quantized, const qg_shards *val, const qg_spm_luts *luts,
                          const qg_eval_opts *eo, double *loss, double *bpb) {
  qg_state s;
  QG_TRY(qg_trainer_weights(t, quantized, &s));
  qg_gpt m;
  qg_gpt_options go = {.mlp_power = t->cfg.mlp_power};
  qg_status st = qg_gpt_init(&m, &s, &go, qg_ops_cpu());
  qg_state_free(&s);
  if (st) return st;
  qg_eval_totals tot;
  st = qg_eval_run(&m, NULL, val, luts, eo, NULL, NULL, &tot);
  qg_gpt_free(&m);
  if (st) return st;
  *loss = tot.nll_a / (double)tot.tokens;
  *bpb = qg_bpb(tot.nll_a, tot.bytes);
  return QG_OK;
}

int qg_cmd_train(int argc, char **argv) {
  qg_train_config c;
  qg_train_config_defaults(&c);
  qg_eval_cli ev = {.opts = {.seq_len = 0}};
  int json = 0, have_ste = 0;
  long long n;
  double d;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--json")) { json = 1; continue; }
    if (!strcmp(a, "--resume")) { c.resume = 1; continue; }
    if (!strcmp(a, "--untied")) { c.untied = 1; continue; }
    if (i + 1 >= argc) return qg_cli_usage_error("train", "unknown or incomplete option '%s'", a);
    const char *v = argv[++i];
    /* integer options: name, field, range */
    struct { const char *name; int *f; long long lo, hi; } ints[] = {
        {"--layers", &c.layers, 1, 256}, {"--dim", &c.dim, 2, 65536}, {"--heads", &c.heads, 1, 4096},
        {"--kv-heads", &c.kv_heads, 1, 4096}, {"--mlp-mult", &c.mlp_mult, 1, 64}, {"--seq-len", &c.seq_len, 1, 1 << 20},
        {"--grad-accum", &c.grad_accum, 1, 1 << 20}, {"--iterations", &c.iterations, 0, 1 << 30},
        {"--warmup-steps", &c.warmup_steps, 0, 1 << 20}, {"--warmdown", &c.warmdown_iters, 0, 1 << 30},
        {"--muon-momentum-warmup-steps", &c.muon_momentum_warmup_steps, 0, 1 << 30},
        {"--muon-backend-steps", &c.muon_backend_steps, 0, 100}, {"--save-every", &c.save_every, 0, 1 << 30},
        {"--stop-at", &c.stop_at, 1, 1 << 30}};
    struct { const char *name; double *f; double lo, hi; } nums[] = {
        {"--matrix-lr", &c.matrix_lr, 0, 100}, {"--scalar-lr", &c.scalar_lr, 0, 100},
        {"--tied-embed-lr", &c.tied_embed_lr, 0, 100}, {"--embed-lr", &c.embed_lr, 0, 100},
        {"--head-lr", &c.head_lr, 0, 100}, {"--muon-momentum", &c.muon_momentum, 0, 1},
        {"--muon-momentum-warmup-start", &c.muon_momentum_warmup_start, 0, 1}, {"--beta1", &c.beta1, 0, 0.999999},
        {"--beta2", &c.beta2, 0, 0.999999}, {"--adam-eps", &c.adam_eps, 0, 1}, {"--qk-gain-init", &c.qk_gain_init, -100, 100},
        {"--tied-embed-init-std", &c.tied_embed_init_std, 0, 100}, {"--max-seconds", &c.max_seconds, 0, 1e9},
        {"--qat-start", &c.qat_start_frac, 0, 1}, {"--late-qat", &c.late_qat, 0, 1}};
    int done = 0;
    for (size_t k = 0; k < sizeof ints / sizeof ints[0] && !done; k++)
      if (!strcmp(a, ints[k].name)) {
        if (integer(a, v, ints[k].lo, ints[k].hi, &n)) return 2;
        *ints[k].f = (int)n;
        done = 1;
      }
    for (size_t k = 0; k < sizeof nums / sizeof nums[0] && !done; k++)
      if (!strcmp(a, nums[k].name)) {
        if (num(a, v, nums[k].lo, nums[k].hi, nums[k].f)) return 2;
        done = 1;
      }
    if (done) continue;
    if (!strcmp(a, "--train")) c.train_glob = v;
    else if (!strcmp(a, "--val")) ev.val = v;
    else if (!strcmp(a, "--tokenizer")) ev.tokenizer = v;
    else if (!strcmp(a, "--out")) c.out_dir = v;
    else if (!strcmp(a, "--qat")) c.qat_spec = v;
    else if (!strcmp(a, "--init")) c.init_from = v;
    else if (!strcmp(a, "--batch-tokens")) {
      if (integer(a, v, 1, 1LL << 40, &n)) return 2;
      c.batch_tokens = n;
    } else if (!strcmp(a, "--seed")) {
      if (integer(a, v, 0, 1LL << 62, &n)) return 2;
      c.seed = (uint64_t)n;
    } else if (!strcmp(a, "--val-max-tokens")) {
      if (integer(a, v, 2, 1LL << 50, &n)) return 2;
      ev.opts.max_tokens = n;
    } else if (!strcmp(a, "--mlp-power")) {
      if (num(a, v, 0.01, 16, &d)) return 2;
      c.mlp_power = (float)d;
    } else if (!strcmp(a, "--qat-ste")) {
      if (strcmp(v, "clip") && strcmp(v, "identity"))
        return qg_cli_usage_error("train", "--qat-ste expects clip or identity, got '%s'", v);
      c.qat_ste_clip = !strcmp(v, "clip");
      have_ste = 1;
    } else {
      return qg_cli_usage_error("train", "unknown option '%s'", a);
    }
  }
  if (!c.train_glob || !ev.val || !ev.tokenizer || !c.out_dir)
    return qg_cli_usage_error("train", "--train, --val, --tokenizer and --out are required");
  if (!c.qat_spec && (c.late_qat > 0 || c.qat_start_frac > 0 || have_ste))
    return qg_cli_usage_error("train", "--late-qat, --qat-start and --qat-ste need --qat SPEC");

  /* the vocabulary is the tokenizer's; validation data checked before any training */
  qg_spm tok;
  qg_status s = qg_spm_load(ev.tokenizer, &tok);
  if (s) return qg_cli_report("train", s);
  c.vocab = tok.n_pieces;
  qg_spm_free(&tok);
  qg_shards val;
  qg_spm_luts luts;
  if ((s = qg_cli_open_eval_data(&ev, c.vocab, &val, &luts))) return qg_cli_report("train", s);
  ev.opts.seq_len = c.seq_len;

  if (mkdir(c.out_dir, 0777) != 0 && errno != EEXIST) {
    fprintf(stderr, "quantgolf train: %s: cannot create the output directory: %s\n", c.out_dir, strerror(errno));
    qg_spm_luts_free(&luts);
    qg_shards_close(&val);
    return 1;
  }
  char logpath[4096];
  snprintf(logpath, sizeof logpath, "%s/train.log", c.out_dir);
  progress_ctx pc = {fopen(logpath, "a"), 0, c.iterations, 0};
  if (pc.log) {
    qg_buf b;
    qg_buf_init(&b);
    qg_train_config_describe(&c, &b);
    fprintf(pc.log, "==== quantgolf %s train\ncommand:", QG_VERSION);
    for (int i = 0; i < argc; i++) fprintf(pc.log, " %s", argv[i]);
    fprintf(pc.log, "\nval: %s\ntokenizer: %s\n%.*s", ev.val, ev.tokenizer, (int)b.n, (const char *)b.p);
    qg_buf_free(&b);
  }
  qg_trainer t;
  s = qg_trainer_init(&t, &c, on_event, &pc);
  if (!s) {
    char desc[256];
    qg_gpt_describe(&t.mc, desc, sizeof desc);
    fprintf(stderr, "model: %s, %lld parameters; %s from step %d\n", desc, (long long)t.lay.total,
            c.resume ? "resuming" : "training", t.step);
    if (pc.log) fprintf(pc.log, "model: %s params:%lld start_step:%d\n", desc, (long long)t.lay.total, t.step);
    s = qg_trainer_run(&t, on_event, &pc);
  }
  int rc = 0;
  if (s) {
    rc = qg_cli_report("train", s);
    if (pc.log) fprintf(pc.log, "error: %s\n", qg_last_error());
  } else if (t.step < c.iterations && !(c.max_seconds > 0 && t.train_s >= c.max_seconds)) {
    fprintf(stderr, "stopped at step %d/%d; continue with --resume\n", t.step, c.iterations);
    if (pc.log) fprintf(pc.log, "stopped at step %d/%d\n", t.step, c.iterations);
  } else {
    double loss = 0, bpb = 0, qloss = 0, qbpb = 0;
    double t0 = qg_now();
    s = evaluate(&t, 0, &val, &luts, &ev.opts, &loss, &bpb);
    if (!s && t.have_qat) s = evaluate(&t, 1, &val, &luts, &ev.opts, &qloss, &qbpb);
    if (s) {
      rc = qg_cli_report("train", s);
    } else {
      char l1[256], l2[256] = "";
      snprintf(l1, sizeof l1, "step:%d/%d val_loss:%.4f val_bpb:%.4f train_time:%.0fms step_avg:%.2fms", t.step,
               c.iterations, loss, bpb, 1000 * t.train_s, 1000 * t.train_s / (t.step ? t.step : 1));
      if (t.have_qat)
        snprintf(l2, sizeof l2, "final_qat_fakequant val_loss:%.4f val_bpb:%.4f eval_time:%.0fms", qloss, qbpb,
                 1000 * (qg_now() - t0));
      if (pc.log) fprintf(pc.log, "%s\n%s%sfinal_model: %s/final_model.safetensors\n", l1, l2, *l2 ? "\n" : "", c.out_dir);
      if (json) {
        qg_buf b;
        qg_buf_init(&b);
        qg_json j;
        qg_json_init(&j, &b, 1);
        qg_json_obj_begin(&j);
        qg_json_key(&j, "steps"), qg_json_int(&j, t.step);
        qg_json_key(&j, "iterations"), qg_json_int(&j, c.iterations);
        qg_json_key(&j, "params"), qg_json_int(&j, t.lay.total);
        qg_json_key(&j, "val_loss"), qg_json_num(&j, loss);
        qg_json_key(&j, "val_bpb"), qg_json_num(&j, bpb);
        if (t.have_qat) {
          qg_json_key(&j, "qat_val_loss"), qg_json_num(&j, qloss);
          qg_json_key(&j, "qat_val_bpb"), qg_json_num(&j, qbpb);
        }
        qg_json_key(&j, "train_seconds"), qg_json_num(&j, t.train_s);
        qg_json_key(&j, "tokens_per_s"), qg_json_num(&j, t.train_s > 0 ? (double)t.step * c.batch_tokens / t.train_s : 0);
        char ck[4200];
        snprintf(ck, sizeof ck, "%s/final_model.safetensors", c.out_dir);
        qg_json_key(&j, "checkpoint"), qg_json_str(&j, ck);
        qg_json_obj_end(&j);
        qg_buf_byte(&b, '\n');
        fwrite(b.p, 1, b.n, stdout);
        qg_buf_free(&b);
      } else {
        printf("%s\n", l1);
        if (*l2) printf("%s\n", l2);
        printf("final_model: %s/final_model.safetensors\n", c.out_dir);
      }
    }
  }
  if (pc.log) fclose(pc.log);
  if (t.lay.p) qg_trainer_free(&t);
  qg_spm_luts_free(&luts);
  qg_shards_close(&val);
  return rc;
}
