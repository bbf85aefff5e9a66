/* The trainer: the contest's train_gpt.py recipe on the op interface, on the CPU (the
 * reference: bitwise resume, checked against PyTorch) or on a CUDA GPU (cfg.device).
 *
 * What is reproduced from train_gpt.py, as defaults:
 *  - init: tied tok_emb ~ N(0, 0.005) (untied: N(0, 1) and a zero lm_head); block matrices
 *    keep nn.Linear's default kaiming-uniform U(-1/sqrt(fan_in), 1/sqrt(fan_in)) except
 *    attn.proj and mlp.proj, zero; q_gain 1.5, attn/mlp scales 1, resid_mix (1, 0),
 *    skip_weights 1. Our RNG (splitmix64 + Box-Muller), seeded; not torch's stream.
 *  - optimizers: Muon for 2-D block matrices (Nesterov, momentum warmed 0.85 -> 0.95 over
 *    500 steps, 5 Newton-Schulz steps (3.4445, -4.7750, 2.0315) on X / (||X|| + 1e-7),
 *    transposed when rows > cols, update scaled by max(1, rows/cols)^0.5). The contest
 *    runs Newton-Schulz in bf16; we run it in fp32 (OpenBLAS sgemm). Adam (0.9, 0.95,
 *    1e-8, bias-corrected as torch.optim.Adam) for tok_emb (tied lr 0.05; untied 0.6 and
 *    lm_head 0.008) and for vectors/control tensors (0.04); matrix lr 0.04.
 *  - schedule: lr_mul exactly as the script (warmdown by iterations, or by wall-clock when
 *    max_seconds > 0); warmup steps whose model, optimizer and loader are then reset;
 *    gradient accumulation with loss / grad_accum; train_loss = mean of micro-batch losses.
 *  - data: TokenStream + DistributedTokenLoader for world size 1: the sorted shards as one
 *    cyclic stream; each micro-batch takes batch_tokens / grad_accum + 1 tokens, x = all
 *    but the last, y = all but the first.
 * Additions: STE fake quantization (QAT) by a quant/spec.h spec, checkpoints with
 * optimizer state, bitwise resume on the CPU.
 *
 * On the GPU (device "cuda", train/device.c): parameters, gradients and the optimizer
 * state (Muon momentum, Adam moments) live in device memory; forward and backward run on
 * the CUDA op table, Muon (Newton-Schulz by cuBLAS) and Adam on train/cuda/cuda_optim.h, QAT's
 * rowwise fake quantization on quant/cuda/cuda_quant.h (other quantizers by a host round
 * trip). Only the token batches go up and, for checkpoints and the final weights, the
 * state comes down. precision bf16: bf16 matrix products (fp32 accumulation, fp32 master
 * weights) and Newton-Schulz in bf16, as the contest runs; fp32: fp32 throughout. */
#ifndef QG_TRAIN_TRAIN_H
#define QG_TRAIN_TRAIN_H

#include <stdint.h>

#include "comm/comm.h"
#include "core/tensor.h"
#include "io/shards.h"
#include "kernels/cuda_precision.h"
#include "model/gpt.h"
#include "quant/spec.h"

typedef struct {
  /* data and output */
  const char *train_glob;
  const char *out_dir; /* checkpoints go here; NULL: none */
  /* model */
  int vocab, layers, dim, heads, kv_heads, mlp_mult;
  int untied;
  float mlp_power;
  /* batch and schedule */
  int seq_len;
  int64_t batch_tokens; /* per optimizer step, over all micro-batches */
  int grad_accum;
  int iterations, warmup_steps, warmdown_iters;
  double max_seconds; /* > 0: wall-clock warmdown and cap */
  /* optimizers */
  double tied_embed_lr, embed_lr, head_lr, matrix_lr, scalar_lr;
  double muon_momentum, muon_momentum_warmup_start;
  int muon_momentum_warmup_steps, muon_backend_steps;
  double beta1, beta2, adam_eps;
  double tied_embed_init_std, qk_gain_init;
  /* QAT: spec text (inline rules or a YAML path), NULL for none */
  const char *qat_spec;
  double qat_start_frac; /* on from step >= frac * iterations (0: from the start) */
  double late_qat;       /* > 0: on once lr_mul < late_qat (overrides qat_start_frac) */
  int qat_ste_clip;      /* zero the gradient of weights outside the clip range */
  /* checkpoints */
  int save_every; /* steps; 0: only at the end */
  int stop_at;    /* > 0: end the run after this step, as an interruption would */
  int resume;
  uint64_t seed;
  /* initial weights from a checkpoint (any format quantgolf reads) instead of the init */
  const char *init_from;
  /* where it runs: "cpu" (also NULL), "cuda" or "auto" (cuda where a GPU is present), and
   * the matrix precision (bf16 needs cuda). Not part of the resume fingerprint except
   * through the Newton-Schulz precision, so a run may continue on another device. */
  const char *device;
  qg_precision precision;
  /* data parallelism: the ranks this run trains on (NULL: one rank). Not part of the
   * configuration: a run gives the same weights on any world size that divides
   * grad_accum, and resumes on any other (see train/dp.h). The CPU trainer takes a host
   * communicator (self, mpi), the GPU trainer self or an on-device one (nccl). */
  qg_comm *comm;
} qg_train_config;

/* Sets a training option by its train-command name without the dashes ("layers",
 * "matrix-lr", "qat", ...); `a` names it in messages ("--layers", "F.yaml: line 3:
 * layers"). v is NULL for a flag given without a value. String values are kept by
 * pointer. *known = 0 (and QG_OK) for a name that is not a training option. */
qg_status qg_train_config_set(qg_train_config *c, const char *name, const char *a, const char *v, int *known);
/* Whether a training option is a flag (true/false; no value on the command line). */
int qg_train_option_is_flag(const char *name);
/* The contest's defaults (the 9x512 baseline shape, 20,000 iterations, ...). */
void qg_train_config_defaults(qg_train_config *c);
/* One line per setting, "key: value", everything that defines the run (the log file). */
void qg_train_config_describe(const qg_train_config *c, qg_buf *out);

/* The op table a configuration trains on: cfg->device ("cpu" when NULL) at
 * cfg->precision. No GPU for "cuda", or bf16 on the CPU: an error saying why (the CLI
 * asks before creating anything). */
qg_status qg_train_backend(const qg_train_config *c, const qg_ops **out);

/* The cyclic token stream (TokenStream semantics). */
typedef struct {
  qg_shards shards;
  int64_t pos; /* next token, in [0, total) */
} qg_token_loader;

qg_status qg_loader_open(qg_token_loader *l, const char *glob, int vocab);
/* n tokens from the stream, wrapping at the end (as TokenStream.take). */
qg_status qg_loader_take(qg_token_loader *l, int64_t n, int32_t *out);
void qg_loader_close(qg_token_loader *l);

/* Optimizers (train/optim.c), host fp32 arrays. Device twins: train/cuda/cuda_optim.h. */
/* torch.optim.Adam step t (1-based) on n values. */
void qg_adam_step(float *p, const float *g, float *m, float *v, int64_t n, double lr, double b1, double b2, double eps,
                  int64_t t);
/* Newton-Schulz orthogonalisation of G [rows, cols] into out, fp32, `steps` iterations;
 * scratch must hold 3 * rows * cols + 2 * min(rows, cols)^2 floats. */
void qg_newton_schulz5(float *out, const float *G, int rows, int cols, int steps, float *scratch);
/* Muon on one matrix: buf = mom * buf + g; u = g + mom * buf; p -= lr * NS(u) * scale. */
void qg_muon_step(float *p, const float *g, float *buf, int rows, int cols, double lr, double momentum, int steps,
                  float *scratch);
/* lr_mul of train_gpt.py (max_seconds <= 0: by iterations). */
double qg_lr_mul(int step, double elapsed_ms, int iterations, int warmdown_iters, double max_seconds);

/* STE fake quantization (train/qat.c). */
typedef struct {
  qg_spec spec;
  qg_spec_plan plan;
  qg_state names; /* one empty-data tensor per parameter, for the plan */
  int *quantized; /* per layout parameter: 1 when fake-quantized */
  int *on_device; /* per layout parameter: 1 when the device's rowwise fake-quant takes it */
  int n_device, n_host; /* quantized tensors by device kernel / by host round trip (GPU) */
  void *grid;           /* a qg_cuq_grid (quant/cuda/cuda_quant.h), rebuilt per tensor */
} qg_qat;

qg_status qg_qat_init(qg_qat *q, const char *spec_text, const qg_gpt_layout *l);
void qg_qat_free(qg_qat *q);
/* weff = w with every planned tensor replaced by dequantize(quantize(w)). */
qg_status qg_qat_apply(const qg_qat *q, const qg_gpt_layout *l, const float *w, float *weff);
/* Zeroes gradient entries whose weight lies outside its row's reconstructed range
 * (|w| > max |weff| of the row): the clip-range STE. */
void qg_qat_mask(const qg_qat *q, const qg_gpt_layout *l, const float *w, const float *weff, float *g);
/* The same two on a CUDA op table's memory (dw, dweff, dg device pointers): rowwise rules
 * the device kernels take run there (qg_cuq_fakequant: the CPU grid's codes and scales);
 * every other quantized tensor goes down, through qg_quantize/qg_dequantize on the host,
 * and back up (the same values as qg_qat_apply, more slowly). */
qg_status qg_qat_apply_device(const qg_qat *q, const qg_gpt_layout *l, const qg_ops *o, const float *dw, float *dweff);
qg_status qg_qat_mask_device(const qg_qat *q, const qg_gpt_layout *l, const float *dw, const float *dweff, float *dg);

/* What one step reports (through the callback; the library never prints). */
typedef enum { QG_TRAIN_EV_WARMUP = 0, QG_TRAIN_EV_STEP, QG_TRAIN_EV_SAVED, QG_TRAIN_EV_QAT_ON } qg_train_event;

typedef struct {
  qg_train_event ev;
  int step; /* steps done */
  double train_loss, lr_mul, momentum;
  double elapsed_s, tokens_per_s;
  int qat_active;
  const char *path; /* QG_TRAIN_EV_SAVED */
  /* communication in this step (data parallel runs; zero on one rank's self backend too,
   * apart from the copies): time inside collectives (exposed: nothing overlaps them),
   * bytes per kind of collective (nccl-tests' sizes) and the bus bandwidth they reached */
  double comm_s;
  int64_t rs_bytes, ag_bytes;
  double busbw_gbs;
  int world;
} qg_train_info;

typedef void (*qg_train_cb)(void *ctx, const qg_train_info *info);

typedef struct {
  qg_train_config cfg;
  qg_gpt_config mc;
  qg_gpt_layout lay;
  const qg_ops *ops;       /* cpu, cuda or cuda-bf16 */
  int on_device;           /* ops is a CUDA table: the state below lives on the GPU */
  /* HOST memory: on the CPU the state itself; on the GPU its host copy, current after
   * qg_trainer_sync_host (which qg_trainer_save and the end of qg_trainer_run call) */
  float *w;                /* parameters */
  float *adam_m, *adam_v;  /* per parameter (used for Adam ones) */
  float *muon_buf;         /* per parameter (used for Muon ones) */
  /* BACKEND memory (ops): the copies the step works on; on the CPU they are the host
   * arrays above (same pointers) */
  float *dw, *dm, *dv, *dbuf;
  float *g, *weff;         /* gradients, fake-quantized copy (QAT): backend memory only */
  float *scratch;          /* Newton-Schulz on the host (CPU only) */
  qg_gpt m, gm, meff;
  qg_gpt_train_store st;
  qg_token_loader data;
  int32_t *xbuf, *ybuf, *chunk;
  int step;
  int64_t adam_t;      /* Adam steps taken (all Adam groups step together) */
  double train_s;      /* training time so far (excludes checkpoint writes) */
  uint64_t rng;        /* state after init (kept for reproducibility) */
  int qat_active;
  int have_qat;
  qg_qat qat;
  char *config_line;   /* the fingerprint checked on resume */
  /* data parallelism (train/dp.h) */
  qg_comm *comm;       /* cfg.comm, or a self communicator of our own */
  int own_comm, rank, world;
  int *owner;          /* per layout parameter: the rank that folds and updates it */
  int64_t *pack_off;   /* per parameter: its offset in owner order */
  int64_t *counts;     /* per rank: floats it owns */
  float *gpack, *gacc, *wpack;
  double *losses;      /* this rank's micro-batch losses of a step */
  /* every rank running the whole optimizer (the GPU over an on-device communicator;
   * train/dp.h, qg_dp_dev_*): one contiguous block of the layout per rank, its running
   * gradient sum and the losses, in the op table's memory */
  int dev_dp;
  int64_t *dev_counts;
  float *dev_gacc;
  double *dev_loss;
  float *dev_zeros; /* host zeros of this rank's block */
  /* test-only fault injection (QG_TEST_DIE_AT_STEP / QG_TEST_DIE_RANK, see trainer.c);
   * 0: off */
  int die_at_step, die_rank;
} qg_trainer;

/* Validates the configuration (shapes that divide, batch vs seq_len and grad_accum),
 * opens the data (ids >= vocab are an error), and either initialises (running and then
 * undoing the warmup steps) or, with cfg->resume, loads DIR/train_state.safetensors and
 * checks it was written by the same configuration. */
qg_status qg_trainer_init(qg_trainer *t, const qg_train_config *cfg, qg_train_cb cb, void *ctx);
/* One optimizer step (grad_accum micro-batches). */
qg_status qg_trainer_step(qg_trainer *t, qg_train_info *info);
/* Steps until iterations, the wall-clock cap or stop_at; checkpoints every save_every
 * steps and at the end (when out_dir is set). */
qg_status qg_trainer_run(qg_trainer *t, qg_train_cb cb, void *ctx);
/* Device -> host copy of the weights and optimizer state (no-op on the CPU). */
qg_status qg_trainer_sync_host(qg_trainer *t);
/* Writes DIR/train_state.safetensors (everything to resume) and DIR/final_model.safetensors
 * (the float weights alone), each atomically. */
qg_status qg_trainer_save(qg_trainer *t, char *path_out, size_t cap);
/* The current weights (fake-quantized ones when quantized = 1) as a named state (read from
 * the device when training there; the fake quantization then runs on the host). */
qg_status qg_trainer_weights(const qg_trainer *t, int quantized, qg_state *out);
void qg_trainer_free(qg_trainer *t);

/* A quantize spec given as text: a YAML file when a regular file of that name exists,
 * else inline rules (quant/spec.h). */
qg_status qg_train_spec_load(const char *text, qg_spec *out);

/* The export at the end of a run (train/export.c): the float weights quantized by a spec
 * into a .qgz (QG_COMP_DEFAULT, code layout auto), as `quantgolf quantize` writes it. A spec with
 * GPTQ rules gets its Hessians from the training shards (seeded, non-overlapping). */
typedef struct {
  const char *spec;     /* inline rules or a YAML path */
  const char *path;     /* the artifact to write (atomically) */
  int calib_seqs;       /* GPTQ calibration sequences (0: 128, fewer if the shards are short) */
  int calib_len;        /* tokens per sequence (0: the training seq_len) */
  uint64_t calib_seed;
} qg_train_export_opts;

typedef struct {
  int tensors, hessians, calib_seqs, calib_len;
  int64_t params, packed_bytes; /* before compression, bit-packed */
  int64_t raw_bytes;            /* the uncompressed payload of the written layout */
  int64_t file_bytes;           /* the artifact on disk */
  const char *compressor;       /* "rans" (QG_COMP_DEFAULT) */
  double calib_seconds, quant_seconds;
} qg_train_export_info;

qg_status qg_train_export(const qg_trainer *t, const qg_train_export_opts *o, qg_train_export_info *info);
/* Options from a YAML file (train/config_yaml.c): one mapping of option names to scalar
 * values, in file order, each with its line. Malformed YAML, a non-mapping, a non-scalar
 * value, an empty value or a repeated key is QG_ERR_INPUT naming the file and line. */
typedef struct {
  char *key, *value;
  int line;
} qg_train_kv;
typedef struct {
  qg_train_kv *kv;
  int n;
} qg_train_kvs;
qg_status qg_train_kvs_load(const char *path, qg_train_kvs *out);
void qg_train_kvs_free(qg_train_kvs *k);

/* Checks before training that a spec parses and plans over this configuration's tensors
 * (an export spec that fails only after hours of training helps nobody). */
qg_status qg_train_export_check(const qg_train_config *c, const char *spec_text);

#endif
