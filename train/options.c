/* Training options by name: the one table that maps the train command's option names
 * (also the keys of a --config file and of an experiment's `train:` arm) onto
 * qg_train_config, with their ranges. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

static qg_status num(const char *a, const char *v, double lo, double hi, double *out) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (*end || end == v || errno || !(d >= lo && d <= hi))
    return qg_fail(QG_ERR_INPUT, "%s expects a number in [%g, %g], got '%s'", a, lo, hi, v);
  *out = d;
  return QG_OK;
}

static qg_status integer(const char *a, const char *v, long long lo, long long hi, long long *out) {
  char *end;
  errno = 0;
  long long n = strtoll(v, &end, 10);
  if (*end || end == v || errno || n < lo || n > hi)
    return qg_fail(QG_ERR_INPUT, "%s expects an integer in [%lld, %lld], got '%s'", a, lo, hi, v);
  *out = n;
  return QG_OK;
}

int qg_train_option_is_flag(const char *name) { return !strcmp(name, "resume") || !strcmp(name, "untied"); }

qg_status qg_train_config_set(qg_train_config *c, const char *name, const char *a, const char *v, int *known) {
  long long n = 0;
  double d = 0;
  *known = 1;
  if (qg_train_option_is_flag(name)) {
    int on = 1;
    if (v) {
      if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1")) on = 1;
      else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0")) on = 0;
      else return qg_fail(QG_ERR_INPUT, "%s expects true or false, got '%s'", a, v);
    }
    if (!strcmp(name, "resume")) c->resume = on;
    else c->untied = on;
    return QG_OK;
  }
  if (!v) return qg_fail(QG_ERR_INPUT, "%s needs a value", a);
  /* integer options: name, field, range */
  struct { const char *name; int *f; long long lo, hi; } ints[] = {
      {"layers", &c->layers, 1, 256}, {"dim", &c->dim, 2, 65536}, {"heads", &c->heads, 1, 4096},
      {"kv-heads", &c->kv_heads, 1, 4096}, {"mlp-mult", &c->mlp_mult, 1, 64}, {"seq-len", &c->seq_len, 1, 1 << 20},
      {"grad-accum", &c->grad_accum, 1, 1 << 20}, {"iterations", &c->iterations, 0, 1 << 30},
      {"warmup-steps", &c->warmup_steps, 0, 1 << 20}, {"warmdown", &c->warmdown_iters, 0, 1 << 30},
      {"muon-momentum-warmup-steps", &c->muon_momentum_warmup_steps, 0, 1 << 30},
      {"muon-backend-steps", &c->muon_backend_steps, 0, 100}, {"save-every", &c->save_every, 0, 1 << 30},
      {"stop-at", &c->stop_at, 1, 1 << 30}};
  struct { const char *name; double *f; double lo, hi; } nums[] = {
      {"matrix-lr", &c->matrix_lr, 0, 100}, {"scalar-lr", &c->scalar_lr, 0, 100},
      {"tied-embed-lr", &c->tied_embed_lr, 0, 100}, {"embed-lr", &c->embed_lr, 0, 100},
      {"head-lr", &c->head_lr, 0, 100}, {"muon-momentum", &c->muon_momentum, 0, 1},
      {"muon-momentum-warmup-start", &c->muon_momentum_warmup_start, 0, 1}, {"beta1", &c->beta1, 0, 0.999999},
      {"beta2", &c->beta2, 0, 0.999999}, {"adam-eps", &c->adam_eps, 0, 1}, {"qk-gain-init", &c->qk_gain_init, -100, 100},
      {"tied-embed-init-std", &c->tied_embed_init_std, 0, 100}, {"max-seconds", &c->max_seconds, 0, 1e9},
      {"qat-start", &c->qat_start_frac, 0, 1}, {"late-qat", &c->late_qat, 0, 1}};
  for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++)
    if (!strcmp(name, ints[k].name)) {
      QG_TRY(integer(a, v, ints[k].lo, ints[k].hi, &n));
      *ints[k].f = (int)n;
      return QG_OK;
    }
  for (size_t k = 0; k < sizeof nums / sizeof nums[0]; k++)
    if (!strcmp(name, nums[k].name)) return num(a, v, nums[k].lo, nums[k].hi, nums[k].f);
  if (!strcmp(name, "train")) c->train_glob = v;
  else if (!strcmp(name, "out")) c->out_dir = v;
  else if (!strcmp(name, "qat")) c->qat_spec = v;
  else if (!strcmp(name, "init")) c->init_from = v;
  else if (!strcmp(name, "device")) {
    if (strcmp(v, "cpu") && strcmp(v, "cuda") && strcmp(v, "auto"))
      return qg_fail(QG_ERR_INPUT, "%s expects cpu, cuda or auto, got '%s'", a, v);
    c->device = v;
  } else if (!strcmp(name, "precision")) {
    if (qg_precision_parse(v, &c->precision)) return qg_fail(QG_ERR_INPUT, "%s expects fp32 or bf16, got '%s'", a, v);
  } else if (!strcmp(name, "batch-tokens")) {
    QG_TRY(integer(a, v, 1, 1LL << 40, &n));
    c->batch_tokens = n;
  } else if (!strcmp(name, "seed")) {
    QG_TRY(integer(a, v, 0, 1LL << 62, &n));
    c->seed = (uint64_t)n;
  } else if (!strcmp(name, "mlp-power")) {
    QG_TRY(num(a, v, 0.01, 16, &d));
    c->mlp_power = (float)d;
  } else if (!strcmp(name, "qat-ste")) {
    if (strcmp(v, "clip") && strcmp(v, "identity"))
      return qg_fail(QG_ERR_INPUT, "%s expects clip or identity, got '%s'", a, v);
    c->qat_ste_clip = !strcmp(v, "clip");
  } else {
    *known = 0;
  }
  return QG_OK;
}
