/* The training loop of train_gpt.py on the op interface, with checkpoints and resume.
 * See train/train.h for what is reproduced and what is ours. */
#include <inttypes.h>
#include <stdarg.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/progress.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "quant/artifact.h"
#include "train/device.h"
#include "train/dp.h"
#include "train/train.h"

#define STATE_FORMAT "quantgolf-train-v1"

void qg_train_config_defaults(qg_train_config *c) {
  memset(c, 0, sizeof *c);
  c->vocab = 1024, c->layers = 9, c->dim = 512, c->heads = 8, c->kv_heads = 4, c->mlp_mult = 2;
  c->mlp_power = 2.0f;
  c->seq_len = 1024, c->batch_tokens = 524288, c->grad_accum = 8;
  c->iterations = 20000, c->warmup_steps = 10, c->warmdown_iters = 150;
  c->tied_embed_lr = 0.05, c->embed_lr = 0.6, c->head_lr = 0.008, c->matrix_lr = 0.04, c->scalar_lr = 0.04;
  c->muon_momentum = 0.95, c->muon_momentum_warmup_start = 0.85;
  c->muon_momentum_warmup_steps = 500, c->muon_backend_steps = 5;
  c->beta1 = 0.9, c->beta2 = 0.95, c->adam_eps = 1e-8;
  c->tied_embed_init_std = 0.005, c->qk_gain_init = 1.5;
  c->seed = 1337;
  c->device = "cpu", c->precision = QG_PRECISION_FP32;
}

/* Everything that shapes the trajectory, one "key: value" per line. The same text is the
 * resume fingerprint, so options that only say when to stop or save are left out. */
static void describe(const qg_train_config *c, qg_buf *b, int fingerprint) {
  qg_buf_printf(b, "train: %s\n", c->train_glob ? c->train_glob : "");
  qg_buf_printf(b, "model: vocab=%d layers=%d dim=%d heads=%d kv_heads=%d mlp_mult=%d tied=%d mlp_power=%.9g\n",
                c->vocab, c->layers, c->dim, c->heads, c->kv_heads, c->mlp_mult, !c->untied, (double)c->mlp_power);
  qg_buf_printf(b, "batch: seq_len=%d batch_tokens=%lld grad_accum=%d\n", c->seq_len, (long long)c->batch_tokens,
                c->grad_accum);
  qg_buf_printf(b, "schedule: iterations=%d warmup_steps=%d warmdown_iters=%d max_seconds=%.9g\n", c->iterations,
                c->warmup_steps, c->warmdown_iters, c->max_seconds);
  qg_buf_printf(b,
                "optim: tied_embed_lr=%.9g embed_lr=%.9g head_lr=%.9g matrix_lr=%.9g scalar_lr=%.9g "
                "muon_momentum=%.9g muon_momentum_warmup_start=%.9g muon_momentum_warmup_steps=%d "
                "muon_backend_steps=%d (newton-schulz in %s) beta1=%.9g beta2=%.9g adam_eps=%.9g\n",
                c->tied_embed_lr, c->embed_lr, c->head_lr, c->matrix_lr, c->scalar_lr, c->muon_momentum,
                c->muon_momentum_warmup_start, c->muon_momentum_warmup_steps, c->muon_backend_steps,
                qg_precision_name(c->precision), c->beta1, c->beta2, c->adam_eps);
  qg_buf_printf(b, "init: tied_embed_init_std=%.9g qk_gain_init=%.9g seed=%" PRIu64 " from=%s\n",
                c->tied_embed_init_std, c->qk_gain_init, c->seed, c->init_from ? c->init_from : "-");
  qg_buf_printf(b, "qat: spec=%s start_frac=%.9g late_qat=%.9g ste=%s\n", c->qat_spec ? c->qat_spec : "none",
                c->qat_start_frac, c->late_qat, c->qat_ste_clip ? "clip" : "identity");
  if (!fingerprint)
    qg_buf_printf(b, "run: out=%s save_every=%d stop_at=%d resume=%d device=%s precision=%s comm=%s world=%d\n",
                  c->out_dir ? c->out_dir : "", c->save_every, c->stop_at, c->resume, c->device ? c->device : "cpu",
                  qg_precision_name(c->precision), qg_comm_name(c->comm), qg_comm_world(c->comm));
}

void qg_train_config_describe(const qg_train_config *c, qg_buf *out) { describe(c, out, 0); }

/* ---- RNG: splitmix64, Box-Muller ------------------------------------------------------ */

static uint64_t next_u64(uint64_t *s) {
  uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
static double uniform01(uint64_t *s) { return ((double)(next_u64(s) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }
static double normal(uint64_t *s) {
  double u = uniform01(s), v = uniform01(s);
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static int ends(const char *s, const char *suf) { return qg_ends_with(s, suf); }

/* The contest's init (GPT._init_weights over PyTorch's module defaults). */
static void init_weights(qg_trainer *t) {
  const qg_train_config *c = &t->cfg;
  uint64_t *r = &t->rng;
  for (int i = 0; i < t->lay.n; i++) {
    const qg_gpt_param *p = &t->lay.p[i];
    float *w = t->w + p->offset;
    int64_t n = p->numel;
    if (!strcmp(p->name, "tok_emb.weight")) {
      double sd = c->untied ? 1.0 : c->tied_embed_init_std; /* nn.Embedding default is N(0, 1) */
      for (int64_t j = 0; j < n; j++) w[j] = (float)(sd * normal(r));
    } else if (ends(p->name, "attn.proj.weight") || ends(p->name, "mlp.proj.weight") || !strcmp(p->name, "lm_head.weight")) {
      memset(w, 0, sizeof(float) * (size_t)n); /* _zero_init */
    } else if (p->role == QG_PARAM_MATRIX) {
      /* nn.Linear: kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
      double bound = 1.0 / sqrt((double)p->shape[1]);
      for (int64_t j = 0; j < n; j++) w[j] = (float)(bound * (2.0 * uniform01(r) - 1.0));
    } else if (ends(p->name, "resid_mix")) {
      for (int64_t j = 0; j < n; j++) w[j] = j < p->shape[1] ? 1.0f : 0.0f;
    } else if (ends(p->name, "q_gain")) {
      for (int64_t j = 0; j < n; j++) w[j] = (float)c->qk_gain_init;
    } else { /* attn_scale, mlp_scale, skip_weights */
      for (int64_t j = 0; j < n; j++) w[j] = 1.0f;
    }
  }
}

/* ---- set-up --------------------------------------------------------------------------- */

static qg_status check_config(const qg_train_config *c) {
  if (c->seq_len < 1) return qg_fail(QG_ERR_INPUT, "--seq-len must be positive");
  if (c->grad_accum < 1) return qg_fail(QG_ERR_INPUT, "--grad-accum must be positive");
  if (c->batch_tokens < 1 || c->batch_tokens % c->grad_accum != 0 ||
      (c->batch_tokens / c->grad_accum) % c->seq_len != 0)
    return qg_fail(QG_ERR_INPUT,
                   "--batch-tokens %lld is not a multiple of --grad-accum %d x --seq-len %d (each micro-batch must "
                   "hold whole sequences)",
                   (long long)c->batch_tokens, c->grad_accum, c->seq_len);
  if (c->iterations < 0 || c->warmup_steps < 0 || c->warmdown_iters < 0)
    return qg_fail(QG_ERR_INPUT, "iterations, warmup and warmdown steps must not be negative");
  if (c->mlp_mult < 1) return qg_fail(QG_ERR_INPUT, "--mlp-mult must be positive");
  if (c->muon_backend_steps < 0 || c->muon_backend_steps > 100)
    return qg_fail(QG_ERR_INPUT, "Newton-Schulz steps must be in 0..100");
  if (c->resume && !c->out_dir) return qg_fail(QG_ERR_INPUT, "--resume needs --out DIR");
  return QG_OK;
}

static void reset_optim(qg_trainer *t) {
  size_t n = sizeof(float) * (size_t)t->lay.total;
  memset(t->adam_m, 0, n);
  memset(t->adam_v, 0, n);
  memset(t->muon_buf, 0, n);
  t->adam_t = 0;
}

static qg_status load_state(qg_trainer *t);
static qg_status load_tensor(const qg_state *s, const char *path, const char *name, const qg_gpt_param *p, float *dst);

/* Starting weights from a checkpoint: every parameter by name, converted to fp32; the
 * checkpoint must be this configuration's model exactly. */
static qg_status load_init(qg_trainer *t, const char *path) {
  qg_state s;
  QG_TRY(qg_checkpoint_load(path, &s, NULL));
  qg_status st = QG_OK;
  for (int i = 0; i < t->lay.n && !st; i++) {
    const qg_gpt_param *p = &t->lay.p[i];
    qg_tensor *x = qg_state_find(&s, p->name);
    if (x && x->dtype != QG_F32 && qg_dtype_is_float(x->dtype) && qg_tensor_numel(x) == p->numel) {
      float *f = malloc(sizeof(float) * (size_t)p->numel);
      if (!f) st = qg_fail(QG_ERR_NOMEM, "out of memory");
      if (f) {
        qg_tensor_to_f32(x, f);
        memcpy(t->w + p->offset, f, sizeof(float) * (size_t)p->numel);
        free(f);
      }
      if (x->ndim != p->ndim || x->shape[0] != p->shape[0])
        st = qg_fail(QG_ERR_INPUT, "%s: tensor '%s' does not have this model's shape", path, p->name);
    } else {
      st = load_tensor(&s, path, p->name, p, t->w + p->offset);
    }
  }
  if (!st && s.n != t->lay.n)
    st = qg_fail(QG_ERR_INPUT, "%s: %d tensors, this model has %d", path, s.n, t->lay.n);
  qg_state_free(&s);
  return st;
}

/* The optimizers of the tensors this rank owns (all of them on one rank, and on the GPU,
 * where every rank holds the whole summed gradient). */
static qg_status optimize(qg_trainer *t, double scale, double momentum) {
  const qg_train_config *c = &t->cfg;
  double tok_lr = c->untied ? c->embed_lr : c->tied_embed_lr;
  for (int i = 0; i < t->lay.n; i++) {
    const qg_gpt_param *p = &t->lay.p[i];
    if (!t->dev_dp && t->owner && t->owner[i] != t->rank) continue;
    switch (p->role) {
      case QG_PARAM_MATRIX:
        QG_TRY(qg_train_muon(t, p, c->matrix_lr * scale, momentum));
        break;
      case QG_PARAM_EMBED:
      case QG_PARAM_HEAD:
      case QG_PARAM_CONTROL: {
        double lr = p->role == QG_PARAM_EMBED ? tok_lr : p->role == QG_PARAM_HEAD ? c->head_lr : c->scalar_lr;
        QG_TRY(qg_train_adam(t, p, lr * scale));
        break;
      }
    }
  }
  return QG_OK;
}

/* One optimizer step on the CPU, over the ranks of t->comm (train/dp.h): this rank's
 * grad_accum / world micro-batches, each gradient folded onto its owner's sum, the owners'
 * optimizers, the weights gathered. One rank runs exactly this too, so every world size
 * gives the same bits. */
static qg_status do_step_cpu(qg_trainer *t, double scale, double momentum, double *loss_out) {
  const qg_train_config *c = &t->cfg;
  int64_t local = c->batch_tokens / c->grad_accum;
  int B = (int)(local / c->seq_len), T = c->seq_len, la = c->grad_accum / t->world;
  qg_gpt *model = t->qat_active ? &t->meff : &t->m;
  if (t->qat_active) QG_TRY(qg_train_qat_apply(t));
  qg_dp_begin(t);
  for (int j = 0; j < la; j++) {
    QG_TRY(qg_dp_take(t, local + 1, t->chunk));
    memcpy(t->xbuf, t->chunk, sizeof(int32_t) * (size_t)local);
    memcpy(t->ybuf, t->chunk + 1, sizeof(int32_t) * (size_t)local);
    QG_TRY(qg_train_zero_grads(t));
    QG_TRY(qg_gpt_forward_train(model, &t->st, t->xbuf, t->ybuf, B, T, 1.0f / (float)c->grad_accum, &t->losses[j]));
    QG_TRY(qg_gpt_backward(model, &t->st, &t->gm));
    /* test-only: this rank dies mid-step, as a crashed node would, once the others (a
     * few milliseconds of work behind) wait in the step's first reduce-scatter */
    if (t->die_at_step == t->step + 1 && t->rank == t->die_rank && j == 0) {
      usleep(300000);
      raise(SIGKILL);
    }
    QG_TRY(qg_dp_fold_micro(t));
  }
  qg_dp_grads_ready(t);
  QG_TRY(qg_dp_loss(t, t->losses, loss_out));
  if (t->qat_active && c->qat_ste_clip) QG_TRY(qg_train_qat_mask(t));
  t->adam_t++;
  QG_TRY(optimize(t, scale, momentum));
  QG_TRY(qg_dp_gather_weights(t));
  return qg_train_step_end(t);
}

/* One step with every rank running the whole optimizer (the GPU over an on-device
 * communicator, nccl; train/dp.h): the CPU's split and fold order in the op table's
 * memory, the summed gradient all-gathered. */
static qg_status do_step_dev_dp(qg_trainer *t, double scale, double momentum, double *loss_out) {
  const qg_train_config *c = &t->cfg;
  int64_t local = c->batch_tokens / c->grad_accum;
  int B = (int)(local / c->seq_len), T = c->seq_len, la = c->grad_accum / t->world;
  qg_gpt *model = t->qat_active ? &t->meff : &t->m;
  if (t->qat_active) QG_TRY(qg_train_qat_apply(t));
  QG_TRY(qg_dp_dev_begin(t));
  for (int j = 0; j < la; j++) {
    QG_TRY(qg_dp_take(t, local + 1, t->chunk));
    memcpy(t->xbuf, t->chunk, sizeof(int32_t) * (size_t)local);
    memcpy(t->ybuf, t->chunk + 1, sizeof(int32_t) * (size_t)local);
    QG_TRY(qg_train_zero_grads(t));
    QG_TRY(qg_gpt_forward_train(model, &t->st, t->xbuf, t->ybuf, B, T, 1.0f / (float)c->grad_accum, &t->losses[j]));
    QG_TRY(qg_gpt_backward(model, &t->st, &t->gm));
    QG_TRY(qg_dp_dev_fold_micro(t));
  }
  QG_TRY(qg_dp_dev_grads_ready(t));
  QG_TRY(qg_dp_dev_loss(t, t->losses, loss_out));
  if (t->qat_active && c->qat_ste_clip) QG_TRY(qg_train_qat_mask(t));
  t->adam_t++;
  QG_TRY(optimize(t, scale, momentum));
  return qg_train_step_end(t);
}

/* One optimizer step at the given lr multiplier and Muon momentum. */
static qg_status do_step(qg_trainer *t, double scale, double momentum, double *loss_out) {
  if (t->dev_dp) return do_step_dev_dp(t, scale, momentum, loss_out);
  if (!t->on_device) return do_step_cpu(t, scale, momentum, loss_out);
  /* the GPU on the self backend: gradients accumulated in place on the device */
  const qg_train_config *c = &t->cfg;
  int64_t local = c->batch_tokens / c->grad_accum;
  int B = (int)(local / c->seq_len), T = c->seq_len;
  qg_gpt *model = t->qat_active ? &t->meff : &t->m;
  QG_TRY(qg_train_zero_grads(t));
  if (t->qat_active) QG_TRY(qg_train_qat_apply(t));
  double loss_sum = 0;
  for (int micro = 0; micro < c->grad_accum; micro++) {
    QG_TRY(qg_loader_take(&t->data, local + 1, t->chunk));
    memcpy(t->xbuf, t->chunk, sizeof(int32_t) * (size_t)local);
    memcpy(t->ybuf, t->chunk + 1, sizeof(int32_t) * (size_t)local);
    double loss;
    QG_TRY(qg_gpt_forward_train(model, &t->st, t->xbuf, t->ybuf, B, T, 1.0f / (float)c->grad_accum, &loss));
    QG_TRY(qg_gpt_backward(model, &t->st, &t->gm));
    loss_sum += loss;
  }
  *loss_out = loss_sum / c->grad_accum;
  if (t->qat_active && c->qat_ste_clip) QG_TRY(qg_train_qat_mask(t));
  t->adam_t++;
  QG_TRY(optimize(t, scale, momentum));
  return qg_train_step_end(t);
}

qg_status qg_trainer_init(qg_trainer *t, const qg_train_config *cfg, qg_train_cb cb, void *ctx) {
  memset(t, 0, sizeof *t);
  t->cfg = *cfg;
  t->ops = qg_ops_cpu();
  const qg_train_config *c = &t->cfg;
  qg_status s = check_config(c);
  /* the backend first: asking for a GPU that is not there fails before any work */
  if (!s) s = qg_train_backend(c, &t->ops);
  if (s) return s;
  t->on_device = t->ops->kind != QG_BACKEND_CPU;
  t->comm = cfg->comm;
  if (!t->comm) {
    if ((s = qg_comm_open_self(&t->comm))) return s;
    t->own_comm = 1;
  }
  t->rank = qg_comm_rank(t->comm), t->world = qg_comm_world(t->comm);
  int comm_dev = qg_comm_on_device(t->comm);
  if (comm_dev && !t->on_device)
    s = qg_fail(QG_ERR_INPUT, "--comm %s moves GPU memory: it trains with --device cuda (CPU ranks take --comm mpi)",
                qg_comm_name(t->comm));
  else if (t->world > 1 && t->on_device && !comm_dev)
    s = qg_fail(QG_ERR_UNSUPPORTED, "data-parallel training on the GPU (%d ranks) needs --comm nccl; --comm %s ranks "
                "train on the CPU (--device cpu)", t->world, qg_comm_name(t->comm));
  if (!s && c->grad_accum % t->world != 0)
    s = qg_fail(QG_ERR_INPUT,
                "--grad-accum %d is not a multiple of the world size %d: the global batch does not depend on the "
                "number of ranks, each runs grad_accum / world micro-batches (use %d ranks that divide %d)",
                c->grad_accum, t->world, t->world, c->grad_accum);
  if (s) goto fail;
  if (!s) s = qg_gpt_config_make(c->vocab, c->layers, c->dim, c->heads, c->kv_heads, c->mlp_mult * c->dim, !c->untied,
                                 c->mlp_power, &t->mc);
  if (s) goto fail;
  qg_buf fp;
  qg_buf_init(&fp);
  describe(c, &fp, 1);
  qg_buf_byte(&fp, 0);
  if ((s = qg_buf_status(&fp))) {
    qg_buf_free(&fp);
    goto fail;
  }
  t->config_line = (char *)fp.p;
  if ((s = qg_comm_check_same(t->comm, "the training configuration (train.log's settings)", t->config_line,
                              strlen(t->config_line))))
    goto fail;
  if ((s = qg_gpt_layout_make(&t->mc, &t->lay))) goto fail;
  if ((s = qg_loader_open(&t->data, c->train_glob, c->vocab))) goto fail;
  if ((s = qg_comm_check_same_i64(t->comm, "the training data's token count", qg_shards_count(&t->data.shards))))
    goto fail;
  if ((s = qg_dp_init(t))) goto fail;
  /* test-only on the CPU (train/dp.h): the GPU's data-parallel path, checked bitwise */
  const char *repl = getenv("QG_TEST_DP_REPLICATED");
  if (((t->on_device && comm_dev) || (!t->on_device && repl && !strcmp(repl, "1"))) && (s = qg_dp_dev_init(t)))
    goto fail;
  if (!(t->losses = calloc((size_t)c->grad_accum, sizeof(double)))) {
    s = qg_fail(QG_ERR_NOMEM, "out of memory");
    goto fail;
  }
  int64_t n = t->lay.total, local = c->batch_tokens / c->grad_accum, maxmat = 0, maxmin = 0;
  for (int i = 0; i < t->lay.n; i++)
    if (t->lay.p[i].role == QG_PARAM_MATRIX) {
      int64_t r = t->lay.p[i].shape[0], k = t->lay.p[i].shape[1], mn = r < k ? r : k;
      if (r * k > maxmat) maxmat = r * k;
      if (mn > maxmin) maxmin = mn;
    }
  if ((s = qg_train_alloc_state(t, 5 * maxmat + 2 * maxmin * maxmin, c->qat_spec != NULL))) goto fail;
  t->xbuf = malloc(sizeof(int32_t) * (size_t)local);
  t->ybuf = malloc(sizeof(int32_t) * (size_t)local);
  t->chunk = malloc(sizeof(int32_t) * (size_t)(local + 1));
  if (!t->xbuf || !t->ybuf || !t->chunk) {
    s = qg_fail(QG_ERR_NOMEM, "out of memory");
    goto fail;
  }
  if ((s = qg_gpt_bind(&t->m, &t->mc, &t->lay, t->dw, t->ops)) ||
      (s = qg_gpt_bind(&t->gm, &t->mc, &t->lay, t->g, t->ops)))
    goto fail;
  if (c->qat_spec) {
    if ((s = qg_qat_init(&t->qat, c->qat_spec, &t->lay))) goto fail;
    t->have_qat = 1;
    if ((s = qg_gpt_bind(&t->meff, &t->mc, &t->lay, t->weff, t->ops))) goto fail;
  }
  /* the state is made (or loaded) on the host, then pushed to the GPU when training there */
  if (c->resume) {
    if ((s = load_state(t)) || (s = qg_train_push(t))) goto fail;
    return QG_OK;
  }
  t->rng = c->seed;
  init_weights(t);
  if (c->init_from && (s = load_init(t, c->init_from))) goto fail;
  if ((s = qg_train_push(t))) goto fail;
  if (c->warmup_steps > 0) {
    /* train_gpt.py primes its compiled paths with real steps, then restores the initial
     * weights, the optimizer state and the loader: the run is as if they never happened.
     * (On the GPU the steps ran on the device copies; the host still holds the start.) */
    float *w0 = malloc(sizeof(float) * (size_t)n);
    if (!w0) {
      s = qg_fail(QG_ERR_NOMEM, "out of memory");
      goto fail;
    }
    memcpy(w0, t->w, sizeof(float) * (size_t)n);
    for (int i = 0; i < c->warmup_steps && !s; i++) {
      double loss, t0 = qg_now();
      s = do_step(t, 1.0, c->muon_momentum, &loss);
      if (!s && cb) {
        qg_train_info info = {.ev = QG_TRAIN_EV_WARMUP, .step = i + 1, .train_loss = loss, .lr_mul = 1.0,
                              .momentum = c->muon_momentum, .elapsed_s = qg_now() - t0};
        cb(ctx, &info);
      }
    }
    memcpy(t->w, w0, sizeof(float) * (size_t)n);
    free(w0);
    if (s) goto fail;
    reset_optim(t);
    t->data.pos = 0;
    t->qat_active = 0;
    if ((s = qg_train_push(t))) goto fail;
  }
  return QG_OK;
fail:
  qg_trainer_free(t);
  return s;
}

void qg_trainer_free(qg_trainer *t) {
  qg_gpt_train_store_free(&t->st);
  if (t->m.blocks) qg_gpt_unbind(&t->m);
  if (t->gm.blocks) qg_gpt_unbind(&t->gm);
  if (t->meff.blocks) qg_gpt_unbind(&t->meff);
  if (t->have_qat) qg_qat_free(&t->qat);
  if (t->data.shards.files) qg_loader_close(&t->data);
  qg_train_free_state(t);
  free(t->xbuf), free(t->ybuf), free(t->chunk), free(t->config_line), free(t->losses);
  qg_dp_free(t);
  qg_dp_dev_free(t);
  if (t->own_comm) qg_comm_close(t->comm);
  qg_gpt_layout_free(&t->lay);
  memset(t, 0, sizeof *t);
}

/* ---- the loop ------------------------------------------------------------------------- */

qg_status qg_trainer_step(qg_trainer *t, qg_train_info *info) {
  const qg_train_config *c = &t->cfg;
  double t0 = qg_now();
  /* the wall-clock schedule follows rank 0's clock, so every rank takes the same lr */
  if (t->world > 1 && c->max_seconds > 0) QG_TRY(qg_comm_broadcast(t->comm, &t->train_s, sizeof t->train_s, 0));
  qg_comm_stats cs0, cs1;
  qg_comm_get_stats(t->comm, &cs0);
  double scale = qg_lr_mul(t->step, 1000.0 * t->train_s, c->iterations, c->warmdown_iters, c->max_seconds);
  memset(info, 0, sizeof *info);
  if (t->have_qat && !t->qat_active) {
    int on = c->late_qat > 0 ? scale < c->late_qat : t->step >= c->qat_start_frac * c->iterations;
    if (on) {
      t->qat_active = 1;
      info->ev = QG_TRAIN_EV_QAT_ON; /* reported with this step */
    }
  }
  double frac = c->muon_momentum_warmup_steps > 0 ? (double)t->step / c->muon_momentum_warmup_steps : 1.0;
  if (frac > 1.0) frac = 1.0;
  double momentum = (1 - frac) * c->muon_momentum_warmup_start + frac * c->muon_momentum;
  double loss;
  QG_TRY(do_step(t, scale, momentum, &loss));
  t->step++;
  double dt = qg_now() - t0;
  t->train_s += dt;
  if (info->ev != QG_TRAIN_EV_QAT_ON) info->ev = QG_TRAIN_EV_STEP;
  info->step = t->step;
  info->train_loss = loss;
  info->lr_mul = scale;
  info->momentum = momentum;
  info->elapsed_s = t->train_s;
  info->tokens_per_s = dt > 0 ? (double)c->batch_tokens / dt : 0;
  info->qat_active = t->qat_active;
  qg_comm_get_stats(t->comm, &cs1);
  info->world = t->world;
  info->comm_s = qg_comm_stats_seconds(&cs1) - qg_comm_stats_seconds(&cs0);
  info->rs_bytes = cs1.bytes[QG_COMM_OP_REDUCE_SCATTER] - cs0.bytes[QG_COMM_OP_REDUCE_SCATTER];
  info->ag_bytes = cs1.bytes[QG_COMM_OP_ALLGATHER] - cs0.bytes[QG_COMM_OP_ALLGATHER];
  double rs_s = cs1.seconds[QG_COMM_OP_REDUCE_SCATTER] - cs0.seconds[QG_COMM_OP_REDUCE_SCATTER];
  double ag_s = cs1.seconds[QG_COMM_OP_ALLGATHER] - cs0.seconds[QG_COMM_OP_ALLGATHER];
  /* the bus bytes of both kinds over their time (nccl-tests' busbw, combined) */
  double bus = (double)(info->rs_bytes + info->ag_bytes) * (t->world - 1) / (t->world > 0 ? t->world : 1);
  info->busbw_gbs = rs_s + ag_s > 0 ? bus / (rs_s + ag_s) / 1e9 : 0;
  return QG_OK;
}

qg_status qg_trainer_run(qg_trainer *t, qg_train_cb cb, void *ctx) {
  const qg_train_config *c = &t->cfg;
  char path[4096];
  /* Test-only fault injection for the dying-rank test (tests/test_train_dp.c): with
   * QG_TEST_DIE_AT_STEP=K the rank QG_TEST_DIE_RANK (default 1) kills itself with SIGKILL
   * in the middle of training step K (warmup steps are not counted). Not for real runs. */
  const char *die = getenv("QG_TEST_DIE_AT_STEP"), *die_rank = getenv("QG_TEST_DIE_RANK");
  if (die && *die) t->die_at_step = atoi(die), t->die_rank = die_rank && *die_rank ? atoi(die_rank) : 1;
  while (t->step < c->iterations) {
    if (c->max_seconds > 0 && t->train_s >= c->max_seconds) break; /* the wall-clock cap */
    if (c->stop_at > 0 && t->step >= c->stop_at) break;
    qg_train_info info;
    QG_TRY(qg_trainer_step(t, &info));
    if (cb) cb(ctx, &info);
    if (c->out_dir && c->save_every > 0 && t->step % c->save_every == 0 && t->step < c->iterations) {
      QG_TRY(qg_trainer_save(t, path, sizeof path));
      qg_train_info sv = {.ev = QG_TRAIN_EV_SAVED, .step = t->step, .path = path};
      if (cb) cb(ctx, &sv);
    }
  }
  if (c->out_dir) {
    QG_TRY(qg_trainer_save(t, path, sizeof path));
    qg_train_info sv = {.ev = QG_TRAIN_EV_SAVED, .step = t->step, .path = path};
    if (cb) cb(ctx, &sv);
  }
  return qg_trainer_sync_host(t); /* t->w is the final weights for the caller */
}

/* ---- checkpoints ---------------------------------------------------------------------- */

static qg_status add_copy(qg_state *s, const char *name, const qg_gpt_param *p, const float *src) {
  qg_tensor *t;
  QG_TRY(qg_state_add(s, name, QG_F32, p->ndim, p->shape, &t));
  memcpy(t->data, src, sizeof(float) * (size_t)p->numel);
  return QG_OK;
}

qg_status qg_trainer_weights(const qg_trainer *t, int quantized, qg_state *out) {
  qg_state_init(out);
  const float *w = t->w;
  float *tmp = NULL, *host = NULL;
  size_t bytes = sizeof(float) * (size_t)t->lay.total;
  qg_status s = QG_OK;
  if (t->on_device) { /* the device copy is the current one (the host's may be older) */
    if (!(host = malloc(bytes))) return qg_fail(QG_ERR_NOMEM, "out of memory");
    if ((s = t->ops->download(t->ops, host, t->dw, bytes))) {
      free(host);
      return s;
    }
    w = host;
  }
  if (quantized && t->have_qat) {
    if (!(tmp = malloc(bytes))) s = qg_fail(QG_ERR_NOMEM, "out of memory");
    if (!s) s = qg_qat_apply(&t->qat, &t->lay, w, tmp);
    if (s) {
      free(tmp), free(host);
      return s;
    }
    w = tmp;
  }
  for (int i = 0; i < t->lay.n && !s; i++) s = add_copy(out, t->lay.p[i].name, &t->lay.p[i], w + t->lay.p[i].offset);
  free(tmp), free(host);
  if (s) qg_state_free(out);
  return s;
}

static qg_status set_meta_num(qg_state *s, const char *k, const char *fmt, ...) QG_PRINTF(3, 4);
static qg_status set_meta_num(qg_state *s, const char *k, const char *fmt, ...) {
  char v[64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(v, sizeof v, fmt, ap);
  va_end(ap);
  return qg_state_set_meta(s, k, v);
}

static void opt_name(char *buf, size_t cap, const char *kind, const char *name) { snprintf(buf, cap, "%s.%s", kind, name); }

qg_status qg_trainer_save(qg_trainer *t, char *path_out, size_t cap) {
  const char *dir = t->cfg.out_dir;
  /* every rank takes part in gathering the owners' optimizer state; rank 0 writes */
  if (!t->on_device) QG_TRY(qg_dp_gather_state(t));
  if (t->rank != 0) {
    if (path_out) snprintf(path_out, cap, "%s/train_state.safetensors", dir);
    return QG_OK;
  }
  if (mkdir(dir, 0777) != 0) {
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return qg_fail(QG_ERR_IO, "%s: cannot create the output directory", dir);
  }
  QG_TRY(qg_trainer_sync_host(t)); /* the host arrays below are what gets written */
  qg_state s;
  QG_TRY(qg_trainer_weights(t, 0, &s));
  char path[4096], name[160];
  snprintf(path, sizeof path, "%s/final_model.safetensors", dir);
  qg_status st = qg_safetensors_write(path, &s);
  for (int i = 0; i < t->lay.n && !st; i++) {
    const qg_gpt_param *p = &t->lay.p[i];
    if (p->role == QG_PARAM_MATRIX) {
      opt_name(name, sizeof name, "muon_buf", p->name);
      st = add_copy(&s, name, p, t->muon_buf + p->offset);
    } else {
      opt_name(name, sizeof name, "adam_m", p->name);
      st = add_copy(&s, name, p, t->adam_m + p->offset);
      opt_name(name, sizeof name, "adam_v", p->name);
      if (!st) st = add_copy(&s, name, p, t->adam_v + p->offset);
    }
  }
  if (!st) st = qg_state_set_meta(&s, "format", STATE_FORMAT);
  if (!st) st = qg_state_set_meta(&s, "config", t->config_line);
  if (!st) st = set_meta_num(&s, "step", "%d", t->step);
  if (!st) st = set_meta_num(&s, "adam_step", "%lld", (long long)t->adam_t);
  if (!st) st = set_meta_num(&s, "data_pos", "%lld", (long long)t->data.pos);
  if (!st) st = set_meta_num(&s, "train_seconds", "%.17g", t->train_s);
  if (!st) st = set_meta_num(&s, "rng", "%" PRIu64, t->rng);
  if (!st) st = set_meta_num(&s, "qat_active", "%d", t->qat_active);
  snprintf(path, sizeof path, "%s/train_state.safetensors", dir);
  if (!st) st = qg_safetensors_write(path, &s);
  qg_state_free(&s);
  if (path_out) snprintf(path_out, cap, "%s", path);
  return st;
}

static qg_status meta_ll(const qg_state *s, const char *path, const char *k, long long lo, long long hi, long long *out) {
  const char *v = qg_state_get_meta(s, k);
  char *end;
  if (!v) return qg_fail(QG_ERR_INPUT, "%s: not a quantgolf training state (no '%s')", path, k);
  *out = strtoll(v, &end, 10);
  if (*end || end == v || *out < lo || *out > hi) return qg_fail(QG_ERR_INPUT, "%s: bad '%s' value '%s'", path, k, v);
  return QG_OK;
}

static qg_status load_tensor(const qg_state *s, const char *path, const char *name, const qg_gpt_param *p, float *dst) {
  const qg_tensor *x = qg_state_find_c(s, name);
  if (!x) return qg_fail(QG_ERR_INPUT, "%s: tensor '%s' is missing", path, name);
  if (x->dtype != QG_F32 || x->ndim != p->ndim || x->shape[0] != p->shape[0] || (p->ndim > 1 && x->shape[1] != p->shape[1]))
    return qg_fail(QG_ERR_INPUT, "%s: tensor '%s' does not have this model's shape (another configuration?)", path, name);
  memcpy(dst, x->data, sizeof(float) * (size_t)p->numel);
  return QG_OK;
}

/* Resume: the state must come from the same configuration, line for line. */
static qg_status load_state(qg_trainer *t) {
  char path[4096], name[160];
  snprintf(path, sizeof path, "%s/train_state.safetensors", t->cfg.out_dir);
  qg_state s;
  qg_status st = qg_safetensors_read(path, &s);
  if (st) return qg_fail_prefix(st, "--resume");
  const char *fmt = qg_state_get_meta(&s, "format"), *cfg = qg_state_get_meta(&s, "config");
  if (!fmt || strcmp(fmt, STATE_FORMAT) != 0 || !cfg) {
    st = qg_fail(QG_ERR_INPUT, "%s: not a quantgolf training state", path);
    goto done;
  }
  if (strcmp(cfg, t->config_line) != 0) {
    /* name the first line that differs */
    const char *a = cfg, *b = t->config_line;
    while (*a && *a == *b) a++, b++;
    while (a > cfg && a[-1] != '\n') a--, b--;
    int la = (int)strcspn(a, "\n"), lb = (int)strcspn(b, "\n");
    st = qg_fail(QG_ERR_INPUT, "--resume: %s was written by another configuration: it has '%.*s', this run '%.*s'", path,
                 la, a, lb, b);
    goto done;
  }
  long long v = 0;
  if ((st = meta_ll(&s, path, "step", 0, t->cfg.iterations, &v))) goto done;
  t->step = (int)v;
  if ((st = meta_ll(&s, path, "adam_step", 0, 1LL << 40, &v))) goto done;
  t->adam_t = v;
  if ((st = meta_ll(&s, path, "data_pos", 0, qg_shards_count(&t->data.shards) - 1, &v))) goto done;
  t->data.pos = v;
  if ((st = meta_ll(&s, path, "qat_active", 0, 1, &v))) goto done;
  t->qat_active = (int)v && t->have_qat;
  const char *rs = qg_state_get_meta(&s, "rng"), *ts = qg_state_get_meta(&s, "train_seconds");
  if (!rs || !ts) {
    st = qg_fail(QG_ERR_INPUT, "%s: not a quantgolf training state (no rng/train_seconds)", path);
    goto done;
  }
  t->rng = strtoull(rs, NULL, 10);
  t->train_s = strtod(ts, NULL);
  for (int i = 0; i < t->lay.n && !st; i++) {
    const qg_gpt_param *p = &t->lay.p[i];
    st = load_tensor(&s, path, p->name, p, t->w + p->offset);
    if (!st && p->role == QG_PARAM_MATRIX) {
      opt_name(name, sizeof name, "muon_buf", p->name);
      st = load_tensor(&s, path, name, p, t->muon_buf + p->offset);
    } else if (!st) {
      opt_name(name, sizeof name, "adam_m", p->name);
      st = load_tensor(&s, path, name, p, t->adam_m + p->offset);
      opt_name(name, sizeof name, "adam_v", p->name);
      if (!st) st = load_tensor(&s, path, name, p, t->adam_v + p->offset);
    }
  }
done:
  qg_state_free(&s);
  return st;
}
