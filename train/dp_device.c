/* Data parallelism with every rank running the whole optimizer: the GPU trainer over an
 * on-device communicator (nccl), see train/dp.h. Buffers are the trainer's op table's
 * memory (device memory on the GPU), the memory the communicator's collectives take. */
#include <stdlib.h>
#include <string.h>

#include "train/dp.h"

qg_status qg_dp_dev_init(qg_trainer *t) {
  int W = t->world;
  int64_t P = t->lay.total, mine = 0;
  if (!(t->dev_counts = calloc((size_t)W, sizeof *t->dev_counts))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  /* contiguous blocks of the layout: no packing, t->g is the send buffer as it is */
  for (int r = 0; r < W; r++) t->dev_counts[r] = P / W + (r < P % W);
  mine = t->dev_counts[t->rank];
  QG_TRY(t->ops->alloc(t->ops, (void **)&t->dev_gacc, sizeof(float) * (size_t)(mine ? mine : 1)));
  QG_TRY(t->ops->alloc(t->ops, (void **)&t->dev_loss, sizeof(double) * (size_t)t->cfg.grad_accum));
  if (!(t->dev_zeros = calloc((size_t)(mine ? mine : 1), sizeof(float)))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  t->dev_dp = 1;
  return QG_OK;
}

void qg_dp_dev_free(qg_trainer *t) {
  if (t->dev_gacc) t->ops->free(t->ops, t->dev_gacc);
  if (t->dev_loss) t->ops->free(t->ops, t->dev_loss);
  free(t->dev_counts), free(t->dev_zeros);
  t->dev_gacc = NULL, t->dev_loss = NULL, t->dev_counts = NULL, t->dev_zeros = NULL, t->dev_dp = 0;
}

/* The running sum starts from zero as the CPU's does, so the fold is the same arithmetic
 * ((0 + g_0) + g_1) + ..., signs of zeros included. */
qg_status qg_dp_dev_begin(qg_trainer *t) {
  return t->ops->upload(t->ops, t->dev_gacc, t->dev_zeros, sizeof(float) * (size_t)t->dev_counts[t->rank]);
}

qg_status qg_dp_dev_fold_micro(qg_trainer *t) {
  return qg_comm_reduce_scatter(t->comm, t->g, t->dev_gacc, 0, t->dev_counts, QG_COMM_F32, QG_COMM_ACCUMULATE);
}

qg_status qg_dp_dev_grads_ready(qg_trainer *t) {
  return qg_comm_allgather(t->comm, t->dev_gacc, t->g, 0, t->dev_counts, QG_COMM_F32);
}

qg_status qg_dp_dev_loss(qg_trainer *t, const double *losses, double *mean) {
  int W = t->world, la = t->cfg.grad_accum / W;
  double *all = malloc(sizeof(double) * (size_t)(W * la));
  if (!all) return qg_fail(QG_ERR_NOMEM, "out of memory");
  double *mine = t->dev_loss + (size_t)t->rank * (size_t)la;
  qg_status s = t->ops->upload(t->ops, mine, losses, sizeof(double) * (size_t)la);
  if (!s) s = qg_comm_allgather(t->comm, mine, t->dev_loss, la, NULL, QG_COMM_F64);
  if (!s) s = t->ops->download(t->ops, all, t->dev_loss, sizeof(double) * (size_t)(W * la));
  double sum = 0;
  for (int j = 0; j < la && !s; j++) /* global micro-batch order m = j * W + r */
    for (int r = 0; r < W; r++) sum += all[r * la + j];
  free(all);
  *mean = sum / t->cfg.grad_accum;
  return s;
}
