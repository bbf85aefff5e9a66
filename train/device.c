/* The parts of a training step, one table per backend kind (see train/device.h): the CPU
 * table works on host arrays (train/optim.c, train/qat.c); the CUDA one keeps the state in
 * device memory and calls train/cuda/cuda_optim.h (optimizers, gradient zeroing, the STE
 * mask) and train/qat.c's device fake quantization. The table is found from the op table's
 * kind, so nothing here tests where it runs. The data loader stays on the host:
 * qg_gpt_forward_train uploads each micro-batch's tokens itself. */
#include <stdlib.h>
#include <string.h>

#include "train/cuda/cuda_optim.h"
#include "train/device.h"

qg_status qg_train_backend(const qg_train_config *c, const qg_ops **out) {
  const qg_ops *base;
  *out = NULL;
  QG_TRY(qg_ops_by_name(c->device ? c->device : "cpu", &base));
  /* the precision is a property of the table: bf16 on the CPU is refused here */
  return qg_ops_with_precision(base, c->precision, out);
}

static qg_status alloc_host(float **p, int64_t n) {
  *p = calloc((size_t)(n ? n : 1), sizeof(float));
  return *p ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory for %lld training floats", (long long)n);
}

static qg_status alloc_dev(const qg_trainer *t, float **p, int64_t n, const char *what) {
  qg_status s = t->ops->alloc(t->ops, (void **)p, sizeof(float) * (size_t)(n ? n : 1));
  return s ? qg_fail_prefix(s, "training state on the GPU (%s)", what) : QG_OK;
}

/* ---- the CPU table ---------------------------------------------------------------------- */

static qg_status cpu_alloc_state(qg_trainer *t, int64_t scratch_floats, int with_qat) {
  int64_t n = t->lay.total;
  qg_status s;
  t->dw = t->w, t->dm = t->adam_m, t->dv = t->adam_v, t->dbuf = t->muon_buf;
  if ((s = alloc_host(&t->g, n)) || (s = alloc_host(&t->scratch, scratch_floats))) return s;
  return with_qat ? alloc_host(&t->weff, n) : QG_OK;
}

static void cpu_free_state(qg_trainer *t) { free(t->g), free(t->weff); }

static qg_status cpu_nothing(qg_trainer *t) {
  (void)t;
  return QG_OK; /* the host arrays are the state */
}

static qg_status cpu_zero_grads(qg_trainer *t) {
  memset(t->g, 0, sizeof(float) * (size_t)t->lay.total);
  return QG_OK;
}

static qg_status cpu_qat_apply(qg_trainer *t) { return qg_qat_apply(&t->qat, &t->lay, t->w, t->weff); }

static qg_status cpu_qat_mask(qg_trainer *t) {
  qg_qat_mask(&t->qat, &t->lay, t->w, t->weff, t->g);
  return QG_OK;
}

static qg_status cpu_muon(qg_trainer *t, const qg_gpt_param *p, double lr, double momentum) {
  int64_t o = p->offset;
  qg_muon_step(t->w + o, t->g + o, t->muon_buf + o, (int)p->shape[0], (int)p->shape[1], lr, momentum,
               t->cfg.muon_backend_steps, t->scratch);
  return QG_OK;
}

static qg_status cpu_adam(qg_trainer *t, const qg_gpt_param *p, double lr) {
  const qg_train_config *c = &t->cfg;
  int64_t o = p->offset;
  qg_adam_step(t->w + o, t->g + o, t->adam_m + o, t->adam_v + o, p->numel, lr, c->beta1, c->beta2, c->adam_eps,
               t->adam_t);
  return QG_OK;
}

/* ---- the CUDA table --------------------------------------------------------------------- */

static qg_status cuda_alloc_state(qg_trainer *t, int64_t scratch_floats, int with_qat) {
  (void)scratch_floats; /* Newton-Schulz scratch is the device optimizer's own */
  int64_t n = t->lay.total;
  qg_status s;
  /* device memory starts undefined: push() fills the state, each step zeroes g, and QAT
   * writes all of weff before the forward reads it */
  if ((s = alloc_dev(t, &t->dw, n, "weights")) || (s = alloc_dev(t, &t->dm, n, "Adam m")) ||
      (s = alloc_dev(t, &t->dv, n, "Adam v")) || (s = alloc_dev(t, &t->dbuf, n, "Muon momentum")) ||
      (s = alloc_dev(t, &t->g, n, "gradients")))
    return s;
  return with_qat ? alloc_dev(t, &t->weff, n, "fake-quantized weights") : QG_OK;
}

static void cuda_free_state(qg_trainer *t) {
  float *dev[] = {t->dw, t->dm, t->dv, t->dbuf, t->g, t->weff};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    if (dev[i]) t->ops->free(t->ops, dev[i]);
  qg_cuda_optim_release();
}

/* The four arrays that make the state, host and backend side by side. */
static void state_arrays(qg_trainer *t, float **host[4], float **dev[4]) {
  host[0] = &t->w, host[1] = &t->adam_m, host[2] = &t->adam_v, host[3] = &t->muon_buf;
  dev[0] = &t->dw, dev[1] = &t->dm, dev[2] = &t->dv, dev[3] = &t->dbuf;
}

static qg_status cuda_push(qg_trainer *t) {
  float **h[4], **d[4];
  state_arrays(t, h, d);
  size_t bytes = sizeof(float) * (size_t)t->lay.total;
  for (int i = 0; i < 4; i++) QG_TRY(t->ops->upload(t->ops, *d[i], *h[i], bytes));
  return QG_OK;
}

static qg_status cuda_sync_host(qg_trainer *t) {
  float **h[4], **d[4];
  state_arrays(t, h, d);
  size_t bytes = sizeof(float) * (size_t)t->lay.total;
  for (int i = 0; i < 4; i++) QG_TRY(t->ops->download(t->ops, *h[i], *d[i], bytes));
  return QG_OK;
}

static qg_status cuda_zero_grads(qg_trainer *t) { return qg_cuda_optim_zero(t->g, t->lay.total); }

static qg_status cuda_qat_apply(qg_trainer *t) { return qg_qat_apply_device(&t->qat, &t->lay, t->ops, t->dw, t->weff); }

static qg_status cuda_qat_mask(qg_trainer *t) { return qg_qat_mask_device(&t->qat, &t->lay, t->dw, t->weff, t->g); }

static qg_status cuda_muon(qg_trainer *t, const qg_gpt_param *p, double lr, double momentum) {
  const qg_train_config *c = &t->cfg;
  int64_t o = p->offset;
  qg_status s = qg_cuda_muon_step(t->dw + o, t->g + o, t->dbuf + o, (int)p->shape[0], (int)p->shape[1], lr, momentum,
                                  c->muon_backend_steps, c->precision);
  return s ? qg_fail_prefix(s, "Muon on '%s'", p->name) : QG_OK;
}

static qg_status cuda_adam(qg_trainer *t, const qg_gpt_param *p, double lr) {
  const qg_train_config *c = &t->cfg;
  int64_t o = p->offset;
  qg_status s = qg_cuda_adam_step(t->dw + o, t->g + o, t->dm + o, t->dv + o, p->numel, lr, c->beta1, c->beta2,
                                  c->adam_eps, t->adam_t);
  return s ? qg_fail_prefix(s, "Adam on '%s'", p->name) : QG_OK;
}

static qg_status cuda_step_end(qg_trainer *t) {
  (void)t;
  return qg_cuda_optim_sync();
}

/* ---- dispatch --------------------------------------------------------------------------- */

typedef struct {
  qg_status (*alloc_state)(qg_trainer *t, int64_t scratch_floats, int with_qat);
  void (*free_state)(qg_trainer *t);
  qg_status (*push)(qg_trainer *t), (*sync_host)(qg_trainer *t), (*zero_grads)(qg_trainer *t);
  qg_status (*qat_apply)(qg_trainer *t), (*qat_mask)(qg_trainer *t);
  qg_status (*muon)(qg_trainer *t, const qg_gpt_param *p, double lr, double momentum);
  qg_status (*adam)(qg_trainer *t, const qg_gpt_param *p, double lr);
  qg_status (*step_end)(qg_trainer *t);
} step_table;

static const step_table tables[QG_BACKEND_COUNT] = {
    [QG_BACKEND_CPU] = {.alloc_state = cpu_alloc_state, .free_state = cpu_free_state, .push = cpu_nothing,
                        .sync_host = cpu_nothing, .zero_grads = cpu_zero_grads, .qat_apply = cpu_qat_apply,
                        .qat_mask = cpu_qat_mask, .muon = cpu_muon, .adam = cpu_adam, .step_end = cpu_nothing},
    [QG_BACKEND_CUDA] = {.alloc_state = cuda_alloc_state, .free_state = cuda_free_state, .push = cuda_push,
                         .sync_host = cuda_sync_host, .zero_grads = cuda_zero_grads, .qat_apply = cuda_qat_apply,
                         .qat_mask = cuda_qat_mask, .muon = cuda_muon, .adam = cuda_adam, .step_end = cuda_step_end},
};

static const step_table *of(const qg_trainer *t) { return &tables[t->ops ? t->ops->kind : QG_BACKEND_CPU]; }

qg_status qg_train_alloc_state(qg_trainer *t, int64_t scratch_floats, int with_qat) {
  int64_t n = t->lay.total;
  qg_status s; /* the host copy always exists: checkpoints, export and resume read it */
  if ((s = alloc_host(&t->w, n)) || (s = alloc_host(&t->adam_m, n)) || (s = alloc_host(&t->adam_v, n)) ||
      (s = alloc_host(&t->muon_buf, n)))
    return s;
  return of(t)->alloc_state(t, scratch_floats, with_qat);
}

void qg_train_free_state(qg_trainer *t) {
  if (t->w) of(t)->free_state(t);
  free(t->w), free(t->adam_m), free(t->adam_v), free(t->muon_buf), free(t->scratch);
  t->w = t->adam_m = t->adam_v = t->muon_buf = t->scratch = NULL;
  t->dw = t->dm = t->dv = t->dbuf = t->g = t->weff = NULL;
}

qg_status qg_train_push(qg_trainer *t) { return of(t)->push(t); }
qg_status qg_trainer_sync_host(qg_trainer *t) { return of(t)->sync_host(t); }
qg_status qg_train_zero_grads(qg_trainer *t) { return of(t)->zero_grads(t); }
qg_status qg_train_qat_apply(qg_trainer *t) { return of(t)->qat_apply(t); }
qg_status qg_train_qat_mask(qg_trainer *t) { return of(t)->qat_mask(t); }
qg_status qg_train_muon(qg_trainer *t, const qg_gpt_param *p, double lr, double momentum) {
  return of(t)->muon(t, p, lr, momentum);
}
qg_status qg_train_adam(qg_trainer *t, const qg_gpt_param *p, double lr) { return of(t)->adam(t, p, lr); }
qg_status qg_train_step_end(qg_trainer *t) { return of(t)->step_end(t); }
