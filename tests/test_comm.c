/* comm/comm.h: the collectives against sequential folds computed here, under the self
 * backend (plain ctest) and under MPI (ctest runs this program by mpiexec with 2 and 4
 * ranks). Every rank can compute every rank's contribution (seeded by rank), so each
 * checks the exact bits the rank-order fold must give.
 *   test_comm --hang: rank 1 never joins a barrier; rank 0's watchdog must end the job
 *   test_comm --die:  rank 1 dies before an all-reduce; the job must end, not hang */
#include <math.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "comm/comm.h"
#include "tests/testlib.h"

static qg_comm *g_comm;

/* Values of wildly different magnitudes and signs: float sums of these depend on order. */
static float term(int rank, int64_t i, int round) {
  uint64_t s = 0x9e37u * (uint64_t)(rank + 1) + 7919u * (uint64_t)i + 104729u * (uint64_t)round;
  float u = qg_test_randf(&s);
  int e = (int)(qg_test_rand(&s) % 40) - 20;
  return ldexpf(u, e);
}

static void test_identity(void **st) {
  (void)st;
  qg_comm *c = g_comm;
  int W = qg_comm_world(c), me = qg_comm_rank(c);
  assert_true(W >= 1 && me >= 0 && me < W);
  print_message("comm: backend %s, rank %d of %d (built: %s)\n", qg_comm_name(c), me, W, qg_comm_available());
  if (W == 1) assert_string_equal(qg_comm_name(c), "self");
}

/* all-reduce sum: every element is c_0 + c_1 + ... + c_{W-1}, left to right */
static void test_allreduce_order(void **st) {
  (void)st;
  qg_comm *c = g_comm;
  int W = qg_comm_world(c), me = qg_comm_rank(c);
  const int64_t n = 1001; /* not a multiple of the world: uneven blocks inside */
  float *buf = malloc(sizeof(float) * n), *want = malloc(sizeof(float) * n);
  double *d = malloc(sizeof(double) * n), *dw = malloc(sizeof(double) * n);
  for (int64_t i = 0; i < n; i++) {
    buf[i] = term(me, i, 0);
    d[i] = (double)term(me, i, 1) * 1e-3 + (double)term(me, i, 2);
    want[i] = term(0, i, 0);
    dw[i] = (double)term(0, i, 1) * 1e-3 + (double)term(0, i, 2);
    for (int r = 1; r < W; r++) {
      want[i] = want[i] + term(r, i, 0);
      dw[i] = dw[i] + ((double)term(r, i, 1) * 1e-3 + (double)term(r, i, 2));
    }
  }
  assert_int_equal(qg_comm_allreduce(c, buf, n, QG_COMM_F32, QG_COMM_SUM), QG_OK);
  assert_int_equal(qg_comm_allreduce(c, d, n, QG_COMM_F64, QG_COMM_SUM), QG_OK);
  assert_memory_equal(buf, want, sizeof(float) * n);
  assert_memory_equal(d, dw, sizeof(double) * n);
  /* average: the same sum divided by the world */
  for (int64_t i = 0; i < n; i++) buf[i] = term(me, i, 0);
  assert_int_equal(qg_comm_allreduce(c, buf, n, QG_COMM_F32, QG_COMM_AVG), QG_OK);
  for (int64_t i = 0; i < n; i++) assert_true(buf[i] == want[i] / (float)W);
  /* the reverse order gives other bits for these terms (the check above can fail);
   * two terms commute, so this needs three ranks or more */
  if (W > 2) {
    int differ = 0;
    for (int64_t i = 0; i < n; i++) {
      float rev = term(W - 1, i, 0);
      for (int r = W - 2; r >= 0; r--) rev = rev + term(r, i, 0);
      differ += rev != want[i];
    }
    print_message("comm: %d of %lld sums differ in reverse rank order\n", differ, (long long)n);
    assert_true(differ > 0);
  }
  free(buf), free(want), free(d), free(dw);
}

/* The trainer's contract: a sequential sum x_0 + ... + x_{K-1} whose term k lives on rank
 * k % W in round k / W, folded round by round with ACCUMULATE onto the owners' blocks,
 * equals the one-rank sequential sum bit for bit. Blocks of unequal size, one empty. */
static void test_reduce_scatter_rounds(void **st) {
  (void)st;
  qg_comm *c = g_comm;
  int W = qg_comm_world(c), me = qg_comm_rank(c);
  int64_t *counts = malloc(sizeof(int64_t) * W), total = 0;
  for (int r = 0; r < W; r++) counts[r] = r == 1 ? 0 : 37 + 11 * r, total += counts[r];
  int64_t off = 0;
  for (int r = 0; r < me; r++) off += counts[r];
  const int K = 3 * W; /* terms: rank k % W holds term k in round k / W */
  float *send = malloc(sizeof(float) * total), *acc = calloc((size_t)counts[me] + 1, sizeof(float));
  for (int round = 0; round < K / W; round++) {
    int k = round * W + me;
    for (int64_t i = 0; i < total; i++) send[i] = term(k, i, 5);
    assert_int_equal(qg_comm_reduce_scatter(c, send, acc, 0, counts, QG_COMM_F32, QG_COMM_ACCUMULATE), QG_OK);
  }
  for (int64_t i = 0; i < counts[me]; i++) {
    float want = 0.0f;
    for (int k = 0; k < K; k++) want += term(k, off + i, 5);
    if (memcmp(&want, &acc[i], sizeof want)) fail_msg("element %lld: %a, sequential %a", (long long)(off + i), acc[i], want);
  }
  /* overwrite: the fold starts from rank 0's block */
  for (int64_t i = 0; i < total; i++) send[i] = term(me, i, 6);
  assert_int_equal(qg_comm_reduce_scatter(c, send, acc, 0, counts, QG_COMM_F32, QG_COMM_OVERWRITE), QG_OK);
  for (int64_t i = 0; i < counts[me]; i++) {
    float want = term(0, off + i, 6);
    for (int r = 1; r < W; r++) want = want + term(r, off + i, 6);
    assert_true(memcmp(&want, &acc[i], sizeof want) == 0);
  }
  free(counts), free(send), free(acc);
}

static void test_allgather_broadcast(void **st) {
  (void)st;
  qg_comm *c = g_comm;
  int W = qg_comm_world(c), me = qg_comm_rank(c);
  int64_t *counts = malloc(sizeof(int64_t) * W), total = 0;
  for (int r = 0; r < W; r++) counts[r] = (r * 7) % 5, total += counts[r]; /* rank 0: 0 */
  double *mine = malloc(sizeof(double) * (counts[me] + 1)), *all = malloc(sizeof(double) * (total + 1));
  for (int64_t i = 0; i < counts[me]; i++) mine[i] = me * 1000.0 + (double)i;
  assert_int_equal(qg_comm_allgather(c, mine, all, 0, counts, QG_COMM_F64), QG_OK);
  int64_t k = 0;
  for (int r = 0; r < W; r++)
    for (int64_t i = 0; i < counts[r]; i++) assert_true(all[k++] == r * 1000.0 + (double)i);
  /* in place: the send block already sits in recv */
  int64_t *one = malloc(sizeof(int64_t) * W);
  one[me] = 10 + me;
  assert_int_equal(qg_comm_allgather(c, one + me, one, 1, NULL, QG_COMM_I64), QG_OK);
  for (int r = 0; r < W; r++) assert_int_equal(one[r], 10 + r);
  char msg[32];
  snprintf(msg, sizeof msg, "from rank %d", me);
  assert_int_equal(qg_comm_broadcast(c, msg, sizeof msg, W - 1), QG_OK);
  char want[32];
  snprintf(want, sizeof want, "from rank %d", W - 1);
  assert_string_equal(msg, want);
  assert_int_equal(qg_comm_barrier(c), QG_OK);
  free(counts), free(mine), free(all), free(one);
}

static void test_check_same(void **st) {
  (void)st;
  qg_comm *c = g_comm;
  int W = qg_comm_world(c), me = qg_comm_rank(c);
  const char cfg[] = "layers=2 dim=64";
  assert_int_equal(qg_comm_check_same(c, "the configuration", cfg, sizeof cfg), QG_OK);
  assert_int_equal(qg_comm_check_same_i64(c, "the token count", 4096), QG_OK);
  if (W == 1) return;
  char mine[32];
  snprintf(mine, sizeof mine, "seed=%d", me == W - 1 ? 7 : 1); /* the last rank differs */
  assert_int_equal(qg_comm_check_same(c, "the configuration", mine, strlen(mine)), QG_ERR_INPUT);
  char want[64];
  snprintf(want, sizeof want, "differs on rank %d of %d", W - 1, W);
  if (!strstr(qg_last_error(), want)) fail_msg("message: %s", qg_last_error());
  assert_int_equal(qg_comm_check_same_i64(c, "the token count", me == 1 ? 5 : 4), QG_ERR_INPUT);
  if (!strstr(qg_last_error(), "rank 1 of") || !strstr(qg_last_error(), "5 there, 4 on rank 0"))
    fail_msg("message: %s", qg_last_error());
}

static void test_stats(void **st) {
  (void)st;
  qg_comm *c = g_comm;
  int W = qg_comm_world(c);
  qg_comm_reset_stats(c);
  float x[256] = {0};
  for (int i = 0; i < 3; i++) assert_int_equal(qg_comm_allreduce(c, x, 256, QG_COMM_F32, QG_COMM_SUM), QG_OK);
  qg_comm_stats s;
  qg_comm_get_stats(c, &s);
  assert_int_equal(s.calls[QG_COMM_OP_ALLREDUCE], 3);
  assert_int_equal(s.bytes[QG_COMM_OP_ALLREDUCE], 3 * 1024);
  assert_int_equal(s.calls[QG_COMM_OP_ALLGATHER], 0); /* the inner steps are not counted twice */
  assert_int_equal(qg_comm_stats_bytes(&s), 3 * 1024);
  assert_true(s.seconds[QG_COMM_OP_ALLREDUCE] >= 0);
  /* nccl-tests' bus bandwidth: 1 GB in 1 s at 4 ranks is 1.5 GB/s for all-reduce */
  assert_true(fabs(qg_comm_busbw_gbs(QG_COMM_OP_ALLREDUCE, 4, 1e9, 1.0) - 1.5) < 1e-12);
  assert_true(fabs(qg_comm_busbw_gbs(QG_COMM_OP_ALLGATHER, 4, 1e9, 2.0) - 0.375) < 1e-12);
  assert_true(qg_comm_busbw_gbs(QG_COMM_OP_ALLREDUCE, 1, 1e9, 1.0) == 0);
  (void)W;
}

static void test_open_errors(void **st) {
  (void)st;
  qg_comm *x = NULL;
  assert_int_equal(qg_comm_open("tcp", &x), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "unknown backend"));
  assert_null(x);
  if (!strstr(qg_comm_available(), "nccl")) {
    assert_int_equal(qg_comm_open("nccl", &x), QG_ERR_UNSUPPORTED);
    assert_non_null(strstr(qg_last_error(), "no NCCL"));
  }
  if (!strstr(qg_comm_available(), "mpi")) {
    assert_int_equal(qg_comm_open("mpi", &x), QG_ERR_UNSUPPORTED);
    assert_non_null(strstr(qg_last_error(), "libopenmpi-dev"));
  }
  if (qg_comm_launcher_world() > 1) {
    assert_int_equal(qg_comm_open("self", &x), QG_ERR_INPUT);
    assert_non_null(strstr(qg_last_error(), "--comm mpi"));
  }
}

static void on_timeout(void *ctx, const char *msg) {
  (void)ctx;
  fprintf(stderr, "%s\n", msg);
}

int main(int argc, char **argv) {
  qg_comm_set_timeout_handler(on_timeout, NULL);
  if (qg_comm_open(NULL, &g_comm)) {
    fprintf(stderr, "test_comm: %s\n", qg_last_error());
    return 1;
  }
  int me = qg_comm_rank(g_comm);
  if (argc > 1 && !strcmp(argv[1], "--hang")) {
    if (me == 1) sleep(30); /* never joins in time */
    qg_comm_barrier(g_comm);
    fprintf(stderr, "test_comm --hang: rank %d passed the barrier (the watchdog did not fire)\n", me);
    return 0;
  }
  if (argc > 1 && !strcmp(argv[1], "--die")) {
    float x[4] = {0};
    if (me == 1) raise(SIGKILL);
    qg_comm_allreduce(g_comm, x, 4, QG_COMM_F32, QG_COMM_SUM);
    sleep(30);
    return 0; /* only reached if nothing ended the job */
  }
  if (qg_comm_world(g_comm) == 1 && strstr(qg_comm_available(), "mpi"))
    print_message("SKIP: MPI collectives with more than one rank run under mpiexec (ctest test_comm_mpi2/4)\n");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_identity),        cmocka_unit_test(test_allreduce_order),
      cmocka_unit_test(test_reduce_scatter_rounds), cmocka_unit_test(test_allgather_broadcast),
      cmocka_unit_test(test_check_same),      cmocka_unit_test(test_stats),
      cmocka_unit_test(test_open_errors),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  /* one rank failing must fail the whole launch, not leave the others waiting */
  if (rc && qg_comm_world(g_comm) > 1) qg_comm_abort(g_comm, 1);
  qg_comm_close(g_comm);
  return rc;
}
