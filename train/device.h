/* The trainer's split between host and device (train/device.c), private to train/: where
 * the weights, gradients and optimizer state live, moving them across, and each part of
 * a step (zeroing gradients, QAT, the optimizers) on the host or the GPU by t->on_device.
 * On the CPU every function here does exactly what trainer.c did inline before the GPU
 * path existed (same calls, same arguments), so CPU runs stay bit for bit the same. */
#ifndef QG_TRAIN_DEVICE_H
#define QG_TRAIN_DEVICE_H

#include "train/train.h"

/* Allocates the host arrays (w, adam_m, adam_v, muon_buf) and the backend ones (dw, dm,
 * dv, dbuf, g, and weff when with_qat); on the CPU the backend ones alias the host ones
 * (g, weff are host) and the Newton-Schulz scratch of scratch_floats is allocated. */
qg_status qg_train_alloc_state(qg_trainer *t, int64_t scratch_floats, int with_qat);
void qg_train_free_state(qg_trainer *t);
/* Host -> backend: weights and optimizer state (after init, a resume, the warmup reset). */
qg_status qg_train_push(qg_trainer *t);

/* The parts of one optimizer step. */
qg_status qg_train_zero_grads(qg_trainer *t);
qg_status qg_train_qat_apply(qg_trainer *t);
qg_status qg_train_qat_mask(qg_trainer *t);
qg_status qg_train_muon(qg_trainer *t, const qg_gpt_param *p, double lr, double momentum);
qg_status qg_train_adam(qg_trainer *t, const qg_gpt_param *p, double lr);
/* After the optimizers: on the GPU, waits for the step (honest step times, and any fault
 * of its kernels reported here rather than in the next step). */
qg_status qg_train_step_end(qg_trainer *t);

#endif
