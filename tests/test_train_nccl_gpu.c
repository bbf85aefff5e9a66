/* The GPU trainer over the nccl backend (train/dp.h, qg_dp_dev_*) with one rank: the same
 * training as the self backend on the GPU within fp32 tolerance (the nccl path folds each
 * micro-batch's gradient with the rank-order reduce-scatter where the self path
 * accumulates in place, so the last bits differ), and it really ran the collectives: one
 * reduce-scatter per micro-batch and two all-gathers (gradient blocks, losses) per step,
 * warmup included. --comm nccl with the CPU trainer is refused. Multi-GPU correctness
 * needs more than one GPU; the CPU bitwise tests under mpirun (test_train_dp) prove the
 * algorithm. Skips visibly without NCCL in the build or without a GPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "tests/testlib.h"
#include "tests/twin.h"
#include "train/train.h"

typedef struct {
  double loss[64];
  int n;
} losses;

static void on_step(void *ctx, const qg_train_info *i) {
  losses *c = ctx;
  if (i->ev == QG_TRAIN_EV_STEP && c->n < 64) c->loss[c->n++] = i->train_loss;
}

static float *run(qg_train_config *c, qg_comm *comm, losses *out, int64_t *n, int *dev_dp) {
  qg_trainer t;
  c->comm = comm;
  QG_TEST_OK(qg_trainer_init(&t, c, NULL, NULL));
  *dev_dp = t.dev_dp;
  QG_TEST_OK(qg_trainer_run(&t, on_step, out));
  *n = t.lay.total;
  float *w = malloc(sizeof(float) * (size_t)t.lay.total);
  memcpy(w, t.w, sizeof(float) * (size_t)t.lay.total);
  qg_trainer_free(&t);
  return w;
}

static void test_nccl_matches_self(void **st) {
  (void)st;
  if (!strstr(qg_comm_available(), "nccl")) {
    print_message("SKIP: this build has no NCCL\n");
    skip();
  }
  qg_twin_need_gpu();
  qg_comm *nc;
  QG_TEST_OK(qg_comm_open("nccl", &nc));
  assert_int_equal(qg_comm_world(nc), 1);
  char shard[4096];
  snprintf(shard, sizeof shard, "%s/tests/data/train_ref/train.bin", QG_SOURCE_DIR);
  qg_train_config c;
  qg_train_config_defaults(&c);
  c.train_glob = shard;
  c.layers = 2, c.dim = 64, c.heads = 4, c.kv_heads = 2, c.mlp_mult = 2;
  c.seq_len = 32, c.batch_tokens = 256, c.grad_accum = 4; /* 4 fold rounds a step */
  c.iterations = 6, c.warmdown_iters = 3, c.warmup_steps = 1;
  c.device = "cuda";
  losses ls = {0}, ln = {0};
  int64_t n;
  int dp_self, dp_nccl;
  float *ws = run(&c, NULL, &ls, &n, &dp_self);
  qg_comm_reset_stats(nc);
  float *wn = run(&c, nc, &ln, &n, &dp_nccl);
  assert_int_equal(dp_self, 0);
  assert_int_equal(dp_nccl, 1);
  qg_comm_stats cs;
  qg_comm_get_stats(nc, &cs);
  int steps = c.iterations + c.warmup_steps;
  assert_int_equal(cs.calls[QG_COMM_OP_REDUCE_SCATTER], (int64_t)steps * c.grad_accum);
  assert_int_equal(cs.calls[QG_COMM_OP_ALLGATHER], (int64_t)steps * 2);
  assert_int_equal(cs.bytes[QG_COMM_OP_REDUCE_SCATTER], (int64_t)steps * c.grad_accum * n * 4);
  assert_int_equal(ls.n, c.iterations);
  assert_int_equal(ln.n, c.iterations);
  for (int i = 0; i < ls.n; i++) {
    double rel = fabs(ln.loss[i] - ls.loss[i]) / ls.loss[i];
    if (!(rel <= 1e-4)) fail_msg("step %d: nccl loss %.8f, self %.8f (rel %.2e)", i + 1, ln.loss[i], ls.loss[i], rel);
  }
  /* the loss bound is test_cuda_optim_gpu's GPU-vs-CPU one; the weights' is looser, as
   * Adam divides tiny gradient differences by tiny second moments */
  qg_test_expect_close("final weights, nccl (1 rank) vs self on the GPU", wn, ws, n, 1e-3);
  /* the CPU trainer does not take a device communicator */
  qg_trainer t;
  c.device = "cpu";
  c.comm = nc;
  assert_int_equal(qg_trainer_init(&t, &c, NULL, NULL), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "--device cuda"));
  free(ws), free(wn);
  qg_comm_close(nc);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_nccl_matches_self)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
