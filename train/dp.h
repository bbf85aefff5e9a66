/* Data parallelism of the CPU trainer (train/dp.c), private to train/. Every parameter
 * tensor has one owner rank, chosen by cost (rows x cols; greedy, largest first, onto the
 * least-loaded rank), which folds its gradient, runs its optimizer (Muon's Newton-Schulz
 * or Adam) and owns its optimizer state; the updated weights are then all-gathered.
 *
 * Why the result does not depend on the world size: the contest's loader gives rank r of
 * W its micro-batch j from the global micro-batch m = j*W + r (DistributedTokenLoader:
 * each take of W x (local + 1) tokens is cut into W spans in rank order). Each micro-batch
 * gradient is computed into a zeroed buffer and folded onto the owner's running sum with a
 * rank-order reduce-scatter (comm/comm.h, QG_COMM_ACCUMULATE), round j adding m = jW+0,
 * jW+1, ...: the sum is (((0 + g_0) + g_1) + g_2) + ... in every world size, one rank
 * included, and each tensor's optimizer arithmetic is the single-rank code's. */
#ifndef QG_TRAIN_DP_H
#define QG_TRAIN_DP_H

#include "train/train.h"

/* Ownership, packing and buffers for t->comm; checks that every rank has the same
 * configuration and training data. */
qg_status qg_dp_init(qg_trainer *t);
void qg_dp_free(qg_trainer *t);
/* Start of a step: the owners' running gradient sums to zero. */
void qg_dp_begin(qg_trainer *t);
/* After one micro-batch's backward into t->g: folds it onto the owners' sums. */
qg_status qg_dp_fold_micro(qg_trainer *t);
/* After the last micro-batch: the owners' sums into t->g at the owned tensors. */
void qg_dp_grads_ready(qg_trainer *t);
/* The mean of the step's micro-batch losses (losses[j] this rank's), in global order. */
qg_status qg_dp_loss(qg_trainer *t, const double *losses, double *mean);
/* Every rank's updated tensors to every rank (t->w complete everywhere). */
qg_status qg_dp_gather_weights(qg_trainer *t);
/* The optimizer state of every owner to every rank (before a checkpoint). */
qg_status qg_dp_gather_state(qg_trainer *t);
/* The loader's share of this rank: n tokens of rank r's span of a W x n take. */
qg_status qg_dp_take(qg_trainer *t, int64_t n, int32_t *out);

/* The GPU trainer over a communicator whose buffers are device memory (nccl; train/dp_device.c).
 * Each rank runs grad_accum / world micro-batches of the same split (qg_dp_take); after
 * each, its gradient (computed into zeroed memory) is folded with the rank-order
 * reduce-scatter onto a running sum of one contiguous block of the layout per rank, round
 * by round as on the CPU, so the step's gradient is ((g_0 + g_1) + g_2) + ... on any world
 * size; the summed blocks are then all-gathered into t->g and every rank runs the whole
 * optimizer (Muon is not sharded on the GPU). One rank runs this same code. The CPU
 * trainer takes this path too when the test-only QG_TEST_DP_REPLICATED=1 is set, so that
 * tests/test_train_dp.c can check it under mpirun against the single-process run, bit for
 * bit (the fold order and each tensor's optimizer arithmetic are the same). */
qg_status qg_dp_dev_init(qg_trainer *t);
void qg_dp_dev_free(qg_trainer *t);
/* Start of a step: this rank's running block sum to zero. */
qg_status qg_dp_dev_begin(qg_trainer *t);
/* After a micro-batch's backward into t->g: folds it onto this rank's block. */
qg_status qg_dp_dev_fold_micro(qg_trainer *t);
/* After the last micro-batch: every rank's summed block into t->g. */
qg_status qg_dp_dev_grads_ready(qg_trainer *t);
/* The mean of the step's micro-batch losses (losses[j] this rank's), in global order. */
qg_status qg_dp_dev_loss(qg_trainer *t, const double *losses, double *mean);

#endif
