/* The nccl backend of comm/comm.h on one GPU (world 1: NCCL's own communicator of one
 * rank), against the self backend on the host: all-reduce sum and average, the
 * accumulating reduce-scatter (the device fold) and all-gather, bit for bit (the fold is
 * one IEEE addition per element on either side), plus the bus-bandwidth counters.
 * Multi-GPU correctness needs more than one GPU; the CPU bitwise tests under mpirun prove
 * the algorithm. Skips visibly without a GPU or without NCCL in the build. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm.h"
#include "kernels/ops.h"
#include "tests/testlib.h"
#include "tests/twin.h"

static void test_nccl_matches_self(void **st) {
  (void)st;
  if (!strstr(qg_comm_available(), "nccl")) {
    print_message("SKIP: this build has no NCCL\n");
    skip();
  }
  const qg_ops *gpu = qg_twin_need_gpu();
  qg_comm *nc, *sc;
  QG_TEST_OK(qg_comm_open("nccl", &nc));
  QG_TEST_OK(qg_comm_open_self(&sc));
  assert_int_equal(qg_comm_world(nc), 1);
  assert_true(qg_comm_on_device(nc));
  const int64_t n = 1 << 20;
  float *h = malloc(sizeof(float) * n), *ref = malloc(sizeof(float) * n), *got = malloc(sizeof(float) * n);
  uint64_t r = 1;
  for (int64_t i = 0; i < n; i++) h[i] = qg_test_randf(&r);
  float *d, *dacc;
  QG_TEST_OK(gpu->alloc(gpu, (void **)&d, sizeof(float) * n));
  QG_TEST_OK(gpu->alloc(gpu, (void **)&dacc, sizeof(float) * n));
  /* all-reduce: identity on one rank, average divides by one */
  memcpy(ref, h, sizeof(float) * n);
  QG_TEST_OK(qg_comm_allreduce(sc, ref, n, QG_COMM_F32, QG_COMM_AVG));
  QG_TEST_OK(gpu->upload(gpu, d, h, sizeof(float) * n));
  QG_TEST_OK(qg_comm_allreduce(nc, d, n, QG_COMM_F32, QG_COMM_AVG));
  QG_TEST_OK(gpu->download(gpu, got, d, sizeof(float) * n));
  assert_memory_equal(got, ref, sizeof(float) * n);
  /* reduce-scatter accumulating three rounds onto a running sum: the device fold */
  float *acc = calloc((size_t)n, sizeof(float));
  QG_TEST_OK(gpu->upload(gpu, dacc, acc, sizeof(float) * n));
  for (int round = 0; round < 3; round++) {
    for (int64_t i = 0; i < n; i++) h[i] = qg_test_randf(&r) * (float)(1 << (round * 7));
    QG_TEST_OK(qg_comm_reduce_scatter(sc, h, acc, n, NULL, QG_COMM_F32, QG_COMM_ACCUMULATE));
    QG_TEST_OK(gpu->upload(gpu, d, h, sizeof(float) * n));
    QG_TEST_OK(qg_comm_reduce_scatter(nc, d, dacc, n, NULL, QG_COMM_F32, QG_COMM_ACCUMULATE));
  }
  QG_TEST_OK(gpu->download(gpu, got, dacc, sizeof(float) * n));
  assert_memory_equal(got, acc, sizeof(float) * n);
  /* all-gather and broadcast move bytes unchanged */
  QG_TEST_OK(qg_comm_allgather(nc, dacc, d, n, NULL, QG_COMM_F32));
  QG_TEST_OK(gpu->download(gpu, got, d, sizeof(float) * n));
  assert_memory_equal(got, acc, sizeof(float) * n);
  QG_TEST_OK(qg_comm_broadcast(nc, d, sizeof(float) * n, 0));
  QG_TEST_OK(qg_comm_barrier(nc));
  qg_comm_stats s;
  qg_comm_get_stats(nc, &s);
  assert_int_equal(s.calls[QG_COMM_OP_REDUCE_SCATTER], 3);
  print_message("nccl (1 GPU): all-reduce of %lld B in %.3f ms\n", (long long)(4 * n),
                1000 * s.seconds[QG_COMM_OP_ALLREDUCE]);
  gpu->free(gpu, d), gpu->free(gpu, dacc);
  free(h), free(ref), free(got), free(acc);
  qg_comm_close(nc), qg_comm_close(sc);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_nccl_matches_self)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
