/* quantgolf train: the contest's training recipe (train/train.h) with STE QAT,
 * checkpoints and resume; at the end val_loss / val_bpb as the contest's log prints them. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "cli/json_doc.h"
#include "comm/comm.h"
#include "core/progress.h"
#include "eval/eval.h"
#include "io/checkpoint.h"
#include "quant/artifact.h"
#include "train/train.h"

void qg_cmd_train_help(void) {
  printf(
      "usage: quantgolf train --train GLOB --val GLOB --tokenizer T --out DIR [options]\n"
      "       quantgolf train --config F.yaml [options]\n\n"
      "Trains the contest GPT with train_gpt.py's recipe on the CPU or a CUDA GPU (Muon for block matrices,\n"
      "Adam for the embedding and control tensors, warmdown, gradient accumulation), then\n"
      "prints val_loss and val_bpb (the contest's eval_val). Checkpoints: DIR/train_state.safetensors\n"
      "(weights, optimizer state, step, data position; for --resume) and DIR/final_model.safetensors\n"
      "(the float weights). The full configuration and every logged step go to DIR/train.log.\n\n"
      "device\n"
      "  --device cpu|cuda|auto   where to train (default cpu: the reference path, bitwise resume).\n"
      "                       cuda: weights, gradients and optimizer state on the GPU; auto: cuda\n"
      "                       where a GPU is present. The final evaluation runs there too (fp32)\n"
      "  --precision fp32|bf16    matrix products and Newton-Schulz (default fp32; bf16: the\n"
      "                       contest's mixed precision, fp32 master weights; cuda only)\n"
      "  --threads N          CPU threads (default: QG_THREADS, else every online CPU)\n"
      "  --comm self|mpi|nccl|auto  ranks for data-parallel training (default auto: mpi under\n"
      "                       mpirun with more than one rank); same weights on any world size\n"
      "                       that divides --grad-accum (mpi: CPU ranks; nccl: GPU ranks with\n"
      "                       --device cuda; see README, Data parallelism)\n"
      "  --nproc N            N ranks on this machine: the same command under `mpirun -np N` (from\n"
      "                       PATH); --threads is per rank\n"
      "  --allow-tokenizer-mismatch  train although a shard manifest (from `prepare`) names\n"
      "                       another tokenizer\n"
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
      "export (at the end of a completed run)\n"
      "  --export SPEC        quantize the final weights by SPEC (as `quantgolf quantize --spec`, or a\n"
      "                       YAML spec file) into DIR/final_model.qgz (rans), read it back and\n"
      "                       print final_qgz_roundtrip val_loss/val_bpb and its bytes. Default: the\n"
      "                       --qat spec when given; --export none for no artifact\n"
      "  --calib-seqs 128 --calib-len SEQ_LEN --calib-seed 1234\n"
      "                       GPTQ rules get their Hessians from the training shards\n"
      "output\n"
      "  --val-max-tokens N   evaluate on the first N validation tokens only\n"
      "  --json               final figures as one JSON object on stdout\n"
      "config file\n"
      "  --config F.yaml      the same options as a YAML mapping, names without dashes\n"
      "                       (layers: 4, qat: 'blocks.*: rowwise bits=6', untied: true, ...);\n"
      "                       options on the command line override the file's\n");
}

typedef struct {
  FILE *log;
  double last_print;
  int iterations;
  int quiet; /* ranks other than 0: rank 0 speaks for the job */
  /* communication over the run's steps */
  double comm_s, train_s;
  long long comm_bytes;
  int world;
  /* the train_loss of this run's first and last step, at full precision for --json (the
   * step lines print four decimals; bench/peer_torch_train_cpu.py compares step 1) */
  double first_loss, last_loss;
  int have_first;
} progress_ctx;

static void on_event(void *ctx, const qg_train_info *i) {
  progress_ctx *p = ctx;
  if (p->quiet) return;
  char line[640];
  switch (i->ev) {
    case QG_TRAIN_EV_WARMUP:
      snprintf(line, sizeof line, "warmup_step:%d train_loss:%.4f", i->step, i->train_loss);
      break;
    case QG_TRAIN_EV_SAVED:
      snprintf(line, sizeof line, "checkpoint step:%d %s", i->step, i->path);
      break;
    default: {
      double eta = i->step > 0 ? i->elapsed_s / i->step * (p->iterations - i->step) : 0;
      int n = snprintf(line, sizeof line,
               "step:%d/%d train_loss:%.4f lr_mul:%.4f tok/s:%.0f train_time:%.0fms step_avg:%.2fms eta:%d:%02d%s",
               i->step, p->iterations, i->train_loss, i->lr_mul, i->tokens_per_s, 1000 * i->elapsed_s,
               1000 * i->elapsed_s / (i->step ? i->step : 1), (int)(eta / 60), (int)fmod(eta, 60),
               i->ev == QG_TRAIN_EV_QAT_ON ? " qat:on" : "");
      p->comm_s += i->comm_s, p->comm_bytes += (long long)(i->rs_bytes + i->ag_bytes);
      p->train_s = i->elapsed_s, p->world = i->world;
      if (!p->have_first) p->first_loss = i->train_loss, p->have_first = 1;
      p->last_loss = i->train_loss;
      /* data parallel: time in collectives (nothing overlaps them), bytes per collective
       * kind this step, and the bus bandwidth they reached (nccl-tests' definition) */
      if (i->world > 1 && n > 0 && n < (int)sizeof line)
        snprintf(line + n, sizeof line - (size_t)n, " ranks:%d comm:%.1fms reduce_scatter:%lldB all_gather:%lldB busbw:%.3fGB/s",
                 i->world, 1000 * i->comm_s, (long long)i->rs_bytes, (long long)i->ag_bytes, i->busbw_gbs);
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

/* Everything the command line (or a --config file) sets. */
typedef struct {
  qg_train_config c;
  qg_eval_cli ev;
  int json, have_ste;
  const char *export_spec; /* NULL: not given (then the QAT spec, if any); "none": no export */
  int64_t calib_seqs, calib_len, calib_seed;
  const char *config;
  qg_train_kvs kvs; /* the --config file's values (owned; the strings above may point here) */
} targs;

/* The training options proper are the library's (qg_train_config_set, also read by the
 * experiment runner); the table below names only the command's own. */
static int train_option(void *ctx, const char *name, const char *label, const char *value, char *err, size_t cap) {
  targs *t = ctx;
  int known;
  if (qg_train_config_set(&t->c, name, label, value, &known)) {
    snprintf(err, cap, "%s", qg_last_error());
    return 2;
  }
  if (known && !strcmp(name, "qat-ste")) t->have_ste = 1;
  return known ? 0 : 1;
}

/* --config F first (its values are defaults), then every other option on the command
 * line, which overrides the file's. */
static int parse_args(int *argc, char **argv, targs *t) {
  memset(t, 0, sizeof *t);
  qg_train_config_defaults(&t->c);
  t->calib_seqs = 128, t->calib_seed = 1234;
#define RANGE(nm, field, l, h) \
  {.name = nm, .kind = QG_ARG_I64, .dst = &t->field, .lo = l, .hi = h, .bad = "{opt} expects an integer in [{lo}, {hi}], got '{val}'"}
  const qg_arg args[] = {
      {.kind = QG_ARG_TABLE, .table = qg_cli_threads_args},
      /* kept in argv: train.log records the command line with it */
      {.name = "--config", .kind = QG_ARG_STR, .dst = &t->config, .missing = "--config needs a YAML file",
       .flags = QG_ARG_EARLY | QG_ARG_KEEP},
      {.name = "--allow-tokenizer-mismatch", .kind = QG_ARG_FLAG, .dst = &t->ev.allow_tok_mismatch},
      {.name = "--json", .kind = QG_ARG_FLAG, .dst = &t->json},
      RANGE("--calib-seqs", calib_seqs, 1, 1000000),
      RANGE("--calib-len", calib_len, 1, 1 << 20),
      RANGE("--calib-seed", calib_seed, 0, 1LL << 62),
      {.name = "--val", .kind = QG_ARG_STR, .dst = &t->ev.val},
      {.name = "--tokenizer", .kind = QG_ARG_STR, .dst = &t->ev.tokenizer},
      {.name = "--export", .kind = QG_ARG_STR, .dst = &t->export_spec},
      RANGE("--val-max-tokens", ev.opts.max_tokens, 2, 1LL << 50),
      {0}};
#undef RANGE
  const qg_args_spec spec = {.cmd = "train", .args = args, .flags = QG_ARGS_LONG_ONLY | QG_ARGS_GLOB_HINT,
                             .unknown = "unknown option '{arg}'", .unexpected = "unexpected argument '{arg}'",
                             .missing = "unknown or incomplete option '{arg}'",
                             .other_is_flag = qg_train_option_is_flag, .other = train_option, .other_ctx = t};
  qg_args p;
  if (qg_args_begin(&p, &spec, argc, argv)) return qg_cli_args_error(&p);
  if (t->config) {
    qg_status s = qg_train_kvs_load(t->config, &t->kvs);
    if (s) return qg_cli_report("train", s);
    for (int k = 0; k < t->kvs.n; k++) {
      const qg_train_kv *kv = &t->kvs.kv[k];
      char where[4400];
      snprintf(where, sizeof where, "%s: line %d: %s", t->config, kv->line, kv->key);
      if (!strcmp(kv->key, "config"))
        return qg_cli_usage_error("train", "%s: a config file cannot name another config file", where);
      if (qg_args_set(&p, kv->key, where, kv->value)) return qg_cli_args_error(&p);
    }
  }
  if (qg_args_finish(&p)) return qg_cli_args_error(&p);
  qg_train_config *c = &t->c;
  if (!c->train_glob || !t->ev.val || !t->ev.tokenizer || !c->out_dir)
    return qg_cli_usage_error("train", "--train, --val, --tokenizer and --out are required");
  if (!c->qat_spec && (c->late_qat > 0 || c->qat_start_frac > 0 || t->have_ste))
    return qg_cli_usage_error("train", "--late-qat, --qat-start and --qat-ste need --qat SPEC");
  /* the export: --export SPEC, else the QAT spec (the grid the run trained for) */
  if (!t->export_spec) t->export_spec = c->qat_spec;
  else if (!strcmp(t->export_spec, "none")) t->export_spec = NULL;
  return 0;
}

/* val_loss / val_bpb of a weight set, the contest's eval_val windows, on the training
 * backend with fp32 products (the CPU for a CPU run: figures `quantgolf eval --device cpu`
 * reproduces to the last digit). */
static qg_status evaluate_state(const qg_state *s, const qg_trainer *t, const qg_shards *val, const qg_spm_luts *luts,
                                const qg_eval_opts *eo, double *loss, double *bpb) {
  qg_gpt m;
  qg_gpt_options go = {.mlp_power = t->cfg.mlp_power};
  const qg_ops *ops;
  QG_TRY(qg_ops_with_precision(t->ops, QG_PRECISION_FP32, &ops));
  QG_TRY(qg_gpt_init(&m, s, &go, ops));
  qg_eval_totals tot;
  qg_status st = qg_eval_run(&m, NULL, val, luts, eo, NULL, NULL, &tot);
  qg_gpt_free(&m);
  if (st) return st;
  *loss = tot.nll_a / (double)tot.tokens;
  *bpb = qg_bpb(tot.nll_a, tot.bytes);
  return QG_OK;
}

static qg_status evaluate(const qg_trainer *t, int quantized, const qg_shards *val, const qg_spm_luts *luts,
                          const qg_eval_opts *eo, double *loss, double *bpb) {
  qg_state s;
  QG_TRY(qg_trainer_weights(t, quantized, &s));
  qg_status st = evaluate_state(&s, t, val, luts, eo, loss, bpb);
  qg_state_free(&s);
  return st;
}

/* The export and its round trip: the artifact is read back from disk, as `quantgolf eval`
 * reads it, so the figures printed are the file's. */
typedef struct {
  char path[4200];
  qg_train_export_info info;
  double loss, bpb, eval_s;
} export_result;

static qg_status export_and_eval(const qg_trainer *t, const targs *a, const qg_shards *val, const qg_spm_luts *luts,
                                 export_result *r) {
  snprintf(r->path, sizeof r->path, "%s/final_model.qgz", a->c.out_dir);
  qg_train_export_opts eo = {.spec = a->export_spec, .path = r->path, .calib_seqs = (int)a->calib_seqs,
                             .calib_len = (int)a->calib_len, .calib_seed = (uint64_t)a->calib_seed};
  fprintf(stderr, "export: quantizing by %s\n", a->export_spec);
  QG_TRY(qg_train_export(t, &eo, &r->info));
  qg_state s;
  qg_format fmt;
  QG_TRY(qg_checkpoint_load(r->path, &s, &fmt));
  double t0 = qg_now();
  qg_status st = evaluate_state(&s, t, val, luts, &a->ev.opts, &r->loss, &r->bpb);
  r->eval_s = qg_now() - t0;
  qg_state_free(&s);
  return st;
}

static long long file_bytes(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 ? (long long)sb.st_size : -1;
}

static void print_json(const qg_trainer *t, const targs *a, const progress_ctx *pc, double loss, double bpb,
                       double qloss, double qbpb, const export_result *ex, double t_start) {
  const qg_train_config *c = &a->c;
  qg_buf b;
  qg_json j;
  qg_cli_json_begin(&j, &b, "train");
  qg_json_key(&j, "steps"), qg_json_int(&j, t->step);
  qg_json_key(&j, "iterations"), qg_json_int(&j, c->iterations);
  qg_json_key(&j, "parameters"), qg_json_int(&j, t->lay.total);
  qg_json_key(&j, "val_loss"), qg_json_num(&j, loss);
  qg_json_key(&j, "val_bpb"), qg_json_num(&j, bpb);
  if (t->have_qat) {
    qg_json_key(&j, "qat_val_loss"), qg_json_num(&j, qloss);
    qg_json_key(&j, "qat_val_bpb"), qg_json_num(&j, qbpb);
  }
  qg_json_key(&j, "train_seconds"), qg_json_num(&j, t->train_s);
  qg_json_key(&j, "comm"), qg_json_str(&j, qg_comm_name(t->comm));
  qg_json_key(&j, "world"), qg_json_int(&j, t->world);
  qg_json_key(&j, "comm_seconds"), qg_json_num(&j, pc->comm_s);
  qg_json_key(&j, "comm_bytes"), qg_json_int(&j, pc->comm_bytes);
  qg_json_key(&j, "tokens_per_s"), qg_json_num(&j, t->train_s > 0 ? (double)t->step * c->batch_tokens / t->train_s : 0);
  qg_json_key(&j, "first_train_loss");
  if (pc->have_first) qg_json_num(&j, pc->first_loss);
  else qg_json_null(&j);
  qg_json_key(&j, "last_train_loss");
  if (pc->have_first) qg_json_num(&j, pc->last_loss);
  else qg_json_null(&j);
  char ck[4200];
  snprintf(ck, sizeof ck, "%s/final_model.safetensors", c->out_dir);
  qg_cli_json_file_open(&j, "checkpoint", ck);
  qg_json_obj_end(&j);
  qg_json_key(&j, "export");
  if (ex) {
    qg_json_obj_begin(&j);
    qg_json_key(&j, "spec"), qg_json_str(&j, a->export_spec);
    qg_cli_json_file_open(&j, "artifact", ex->path);
    qg_json_obj_end(&j);
    qg_json_key(&j, "artifact_bytes"), qg_json_int(&j, ex->info.file_bytes);
    qg_json_key(&j, "raw_bytes"), qg_json_int(&j, ex->info.raw_bytes);
    qg_json_key(&j, "packed_bytes"), qg_json_int(&j, ex->info.packed_bytes);
    qg_json_key(&j, "compressor"), qg_json_str(&j, ex->info.compressor);
    qg_json_key(&j, "calibration_sequences"), qg_json_int(&j, ex->info.calib_seqs);
    qg_json_key(&j, "calibration_length"), qg_json_int(&j, ex->info.calib_len);
    qg_json_key(&j, "hessians"), qg_json_int(&j, ex->info.hessians);
    qg_json_key(&j, "val_loss"), qg_json_num(&j, ex->loss);
    qg_json_key(&j, "val_bpb"), qg_json_num(&j, ex->bpb);
    qg_json_obj_end(&j);
  } else {
    qg_json_null(&j);
  }
  qg_json_key(&j, "device"), qg_json_str(&j, t->ops->name);
  qg_json_key(&j, "seconds"), qg_json_num(&j, qg_now() - t_start);
  qg_cli_json_end(&j, &b);
}

int qg_cmd_train(int argc, char **argv) {
  double t_start = qg_now();
  targs a;
  qg_comm *comm = NULL;
  int rc = qg_cli_take_comm("train", &argc, argv, &comm);
  if (rc) return rc;
  rc = parse_args(&argc, argv, &a);
  if (rc) {
    qg_train_kvs_free(&a.kvs);
    qg_cli_comm_close();
    return rc;
  }
  int rank = qg_comm_rank(comm);
  qg_train_config *cp = &a.c;
  cp->comm = comm;
  qg_eval_cli *ev = &a.ev;
  /* the device before anything else: a GPU that is not there (or bf16 on the CPU) is one
   * line and exit 2, with no output directory created */
  const qg_ops *backend;
  if (qg_train_backend(cp, &backend)) {
    fprintf(stderr, "quantgolf train: --device %s --precision %s: %s\n", cp->device, qg_precision_name(cp->precision),
            qg_last_error());
    qg_train_kvs_free(&a.kvs);
    return 2;
  }

  /* the vocabulary is the tokenizer's; validation data and the export spec are checked
   * before any training */
  qg_spm tok;
  qg_status s = qg_spm_load(ev->tokenizer, &tok);
  if (!s) {
    cp->vocab = tok.n_pieces;
    /* the training shards' manifest too: a model trained on other pieces is no contest model */
    qg_shards tr;
    if (!(s = qg_shards_open(cp->train_glob, &tr))) {
      s = qg_cli_check_tokenizer("train", &tr, &tok, ev->tokenizer, ev->allow_tok_mismatch);
      qg_shards_close(&tr);
    }
    qg_spm_free(&tok);
  }
  if (!s && a.export_spec) s = qg_train_export_check(cp, a.export_spec);
  if (s) {
    qg_train_kvs_free(&a.kvs);
    return qg_cli_comm_report("train", comm, s, 1);
  }
  const qg_train_config c = *cp;
  qg_shards val;
  qg_spm_luts luts;
  if ((s = qg_cli_open_eval_data(ev, c.vocab, &val, &luts))) {
    qg_train_kvs_free(&a.kvs);
    return qg_cli_comm_report("train", comm, s, 1);
  }
  ev->opts.seq_len = c.seq_len;

  /* rank 0 owns the output directory, the log and the final figures */
  int dir_made = rank == 0 && mkdir(c.out_dir, 0777) == 0, mk_err = rank == 0 ? errno : EEXIST;
  struct stat dst;
  if (rank == 0 && !dir_made && (mk_err != EEXIST || stat(c.out_dir, &dst) != 0 || !S_ISDIR(dst.st_mode))) {
    /* a missing, read-only or non-directory parent, or a file in the way: bad usage */
    int usage = mk_err == EEXIST || mk_err == ENOENT || mk_err == ENOTDIR || mk_err == EACCES || mk_err == EROFS ||
                mk_err == EPERM;
    fprintf(stderr, "quantgolf train: %s: cannot create the output directory: %s\n", c.out_dir,
            mk_err == EEXIST ? "a file of that name is in the way" : strerror(mk_err));
    qg_spm_luts_free(&luts);
    qg_shards_close(&val);
    qg_train_kvs_free(&a.kvs);
    qg_comm_abort(comm, usage ? 2 : 1);
    return usage ? 2 : 1;
  }
  char logpath[4096];
  snprintf(logpath, sizeof logpath, "%s/train.log", c.out_dir);
  struct stat lst;
  int log_existed = stat(logpath, &lst) == 0;
  progress_ctx pc = {rank == 0 ? fopen(logpath, "a") : NULL, 0, c.iterations, rank != 0, 0, 0, 0, 1, 0, 0, 0};
  if (pc.log) {
    qg_buf b;
    qg_buf_init(&b);
    qg_train_config_describe(&c, &b);
    fprintf(pc.log, "==== quantgolf %s train\ncommand:", QG_VERSION);
    for (int i = 0; i < argc; i++) fprintf(pc.log, " %s", argv[i]);
    fprintf(pc.log, "\nconfig file: %s\nval: %s\ntokenizer: %s\nexport: %s\n%.*s", a.config ? a.config : "-", ev->val,
            ev->tokenizer, a.export_spec ? a.export_spec : "none", (int)b.n, (const char *)b.p);
    qg_buf_free(&b);
  }
  qg_trainer t;
  s = qg_trainer_init(&t, &c, on_event, &pc);
  if (!s) {
    char desc[256];
    qg_gpt_describe(&t.mc, desc, sizeof desc);
    if (rank == 0)
      fprintf(stderr, "model: %s, %lld parameters; %s from step %d on %s%s\n", desc, (long long)t.lay.total,
              c.resume ? "resuming" : "training", t.step, t.ops->name, t.world > 1 ? " (data parallel)" : "");
    if (rank == 0 && t.world > 1)
      fprintf(stderr, "data parallel: %d ranks over %s, %d micro-batches each per step\n", t.world,
              qg_comm_name(comm), c.grad_accum / t.world);
    if (pc.log) fprintf(pc.log, "model: %s params:%lld start_step:%d device:%s\n", desc, (long long)t.lay.total, t.step,
                        t.ops->name);
    if (t.on_device && t.have_qat)
      fprintf(stderr, "qat: %d tensors fake-quantized on the GPU, %d by a host round trip each step (only rowwise "
              "rules run on the device)\n", t.qat.n_device, t.qat.n_host);
    s = qg_trainer_run(&t, on_event, &pc);
  } else {
    /* nothing was trained (bad data, bad checkpoint): leave nothing behind either */
    if (pc.log) fclose(pc.log);
    pc.log = NULL;
    if (rank == 0 && !log_existed) unlink(logpath);
    if (dir_made) rmdir(c.out_dir);
  }
  if (s) {
    if (pc.log) fprintf(pc.log, "error: %s\n", qg_last_error());
    if (pc.log) fflush(pc.log);
    rc = qg_cli_comm_report("train", comm, s, !t.lay.p || t.step == 0);
  } else if (rank != 0) {
    /* rank 0 evaluates and reports */
  } else if (t.step < c.iterations && !(c.max_seconds > 0 && t.train_s >= c.max_seconds)) {
    fprintf(stderr, "stopped at step %d/%d; continue with --resume\n", t.step, c.iterations);
    if (pc.log) fprintf(pc.log, "stopped at step %d/%d\n", t.step, c.iterations);
  } else {
    double loss = 0, bpb = 0, qloss = 0, qbpb = 0;
    double t0 = qg_now();
    s = evaluate(&t, 0, &val, &luts, &ev->opts, &loss, &bpb);
    if (!s && t.have_qat) s = evaluate(&t, 1, &val, &luts, &ev->opts, &qloss, &qbpb);
    double qat_eval_s = qg_now() - t0;
    export_result ex;
    memset(&ex, 0, sizeof ex);
    if (!s && a.export_spec) s = export_and_eval(&t, &a, &val, &luts, &ex);
    if (s) {
      rc = qg_cli_report("train", s);
      if (pc.log) fprintf(pc.log, "error: %s\n", qg_last_error());
    } else {
      /* the contest's log lines (train_gpt.py), with the artifact named for what it is */
      char ck[4200];
      snprintf(ck, sizeof ck, "%s/final_model.safetensors", c.out_dir);
      qg_buf out;
      qg_buf_init(&out);
      qg_buf_printf(&out, "step:%d/%d val_loss:%.4f val_bpb:%.4f train_time:%.0fms step_avg:%.2fms\n", t.step,
                    c.iterations, loss, bpb, 1000 * t.train_s, 1000 * t.train_s / (t.step ? t.step : 1));
      if (t.have_qat)
        qg_buf_printf(&out, "final_qat_fakequant val_loss:%.4f val_bpb:%.4f eval_time:%.0fms\n", qloss, qbpb,
                      1000 * qat_eval_s);
      qg_buf_printf(&out, "Serialized model: %lld bytes\n", file_bytes(ck));
      if (a.export_spec) {
        qg_buf_printf(&out, "Serialized model qgz+%s: %lld bytes (payload:%lld packed:%lld tensors:%d hessians:%d)\n",
                      ex.info.compressor, (long long)ex.info.file_bytes, (long long)ex.info.raw_bytes,
                      (long long)ex.info.packed_bytes, ex.info.tensors, ex.info.hessians);
        qg_buf_printf(&out, "final_qgz_roundtrip val_loss:%.4f val_bpb:%.4f eval_time:%.0fms\n", ex.loss, ex.bpb,
                      1000 * ex.eval_s);
        qg_buf_printf(&out, "final_qgz_roundtrip_exact val_loss:%.8f val_bpb:%.8f\n", ex.loss, ex.bpb);
        qg_buf_printf(&out, "artifact: %s\n", ex.path);
      }
      qg_buf_printf(&out, "final_model: %s\n", ck);
      if (pc.log) fwrite(out.p, 1, out.n, pc.log);
      if (a.json) print_json(&t, &a, &pc, loss, bpb, qloss, qbpb, a.export_spec ? &ex : NULL, t_start);
      else fwrite(out.p, 1, out.n, stdout);
      qg_buf_free(&out);
    }
  }
  if (pc.log) fclose(pc.log);
  if (t.lay.p) qg_trainer_free(&t);
  qg_spm_luts_free(&luts);
  qg_shards_close(&val);
  qg_train_kvs_free(&a.kvs);
  qg_cli_comm_close();
  return rc;
}
