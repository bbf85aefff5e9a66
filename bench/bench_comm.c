/* bench_comm: data parallelism on the CPU. Run it alone (1 rank) and under
 * `mpirun -np N` (bench/bench_comm.sh does both and computes the efficiency):
 *  - weak scaling of the training step: every rank runs one micro-batch of the same size
 *    (global batch = world x that), one pool and BLAS thread per rank; per-step wall time
 *    (median and range over the timed steps), the time inside collectives, bytes per
 *    collective kind;
 *  - the all-reduce of the comm layer (gather + rank-order fold + all-gather) from 4 KiB
 *    to 16 MiB: time per call and nccl-tests' bus bandwidth.
 * Rank 0 prints a table and writes JSON (argv[1], default bench_comm.json). Figures only,
 * never pass/fail. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#include "core/json.h"
#include "core/progress.h"
#include "core/threadpool.h"
#include "io/shards.h"
#include "train/train.h"

#define STEPS 8

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void fail(qg_comm *c, const char *what) {
  fprintf(stderr, "bench_comm: rank %d: %s: %s\n", qg_comm_rank(c), what, qg_last_error());
  qg_comm_abort(c, 1);
  exit(1);
}

int main(int argc, char **argv) {
  const char *json_path = argc > 1 ? argv[1] : "bench_comm.json";
  qg_comm *c;
  if (qg_comm_open(NULL, &c)) {
    fprintf(stderr, "bench_comm: %s\n", qg_last_error());
    return 1;
  }
  int W = qg_comm_world(c), me = qg_comm_rank(c);
  qg_threads_request(1);
  /* the token stream: rank 0 writes it, the others wait */
  char shard[256];
  snprintf(shard, sizeof shard, "/tmp/bench_comm_%d.bin", (int)getppid());
  if (me == 0) {
    int n = 1 << 18;
    uint16_t *tok = malloc(sizeof(uint16_t) * (size_t)n);
    uint64_t r = 7;
    for (int i = 0; i < n; i++) r = r * 6364136223846793005ull + 1442695040888963407ull, tok[i] = (uint16_t)((r >> 33) % 1024);
    if (qg_shard_write(shard, tok, n)) fail(c, "shard");
    free(tok);
  }
  if (qg_comm_barrier(c)) fail(c, "barrier");
  /* the step: 4 layers x 256, seq 256, 4 sequences per rank per step */
  qg_train_config cfg;
  qg_train_config_defaults(&cfg);
  cfg.train_glob = shard;
  cfg.layers = 4, cfg.dim = 256, cfg.heads = 4, cfg.kv_heads = 2, cfg.mlp_mult = 2;
  cfg.seq_len = 256, cfg.grad_accum = W, cfg.batch_tokens = (int64_t)W * 4 * 256;
  cfg.iterations = STEPS + 1, cfg.warmup_steps = 0, cfg.warmdown_iters = 0;
  cfg.comm = c;
  qg_trainer t;
  if (qg_trainer_init(&t, &cfg, NULL, NULL)) fail(c, "trainer");
  double step_s[STEPS], comm_s[STEPS];
  int64_t rs = 0, ag = 0;
  qg_train_info info;
  if (qg_trainer_step(&t, &info)) fail(c, "step"); /* untimed: first touches */
  for (int i = 0; i < STEPS; i++) {
    double t0 = qg_now();
    if (qg_trainer_step(&t, &info)) fail(c, "step");
    step_s[i] = qg_now() - t0, comm_s[i] = info.comm_s;
    rs = info.rs_bytes, ag = info.ag_bytes;
  }
  int64_t params = t.lay.total;
  qg_trainer_free(&t);
  /* every rank's median step: the slowest rank sets the pace */
  qsort(step_s, STEPS, sizeof *step_s, cmp_d);
  qsort(comm_s, STEPS, sizeof *comm_s, cmp_d);
  double med = step_s[STEPS / 2], cmed = comm_s[STEPS / 2], lo = step_s[0], hi = step_s[STEPS - 1];
  double worst = med;
  if (qg_comm_allreduce(c, &worst, 1, QG_COMM_F64, QG_COMM_SUM)) fail(c, "all-reduce");
  /* the all-reduce alone */
  enum { NSZ = 5 };
  const int64_t sizes[NSZ] = {1024, 16384, 262144, 1048576, 4194304}; /* floats */
  double ar_s[NSZ], ar_bw[NSZ];
  float *buf = calloc((size_t)sizes[NSZ - 1], sizeof(float));
  for (int k = 0; k < NSZ; k++) {
    int reps = sizes[k] >= 1048576 ? 4 : 16;
    if (qg_comm_barrier(c)) fail(c, "barrier");
    double t0 = qg_now();
    for (int r = 0; r < reps; r++)
      if (qg_comm_allreduce(c, buf, sizes[k], QG_COMM_F32, QG_COMM_SUM)) fail(c, "all-reduce");
    ar_s[k] = (qg_now() - t0) / reps;
    ar_bw[k] = qg_comm_busbw_gbs(QG_COMM_OP_ALLREDUCE, W, 4.0 * (double)sizes[k], ar_s[k]);
  }
  free(buf);
  if (me == 0) {
    printf("bench_comm: %d rank(s) over %s, 1 thread each, %lld parameters\n", W, qg_comm_name(c), (long long)params);
    printf("  training step (4 x 256 tokens per rank): median %.1f ms [%.1f, %.1f] over %d steps; mean of the ranks' "
           "medians %.1f ms; in collectives %.1f ms; reduce-scatter %lld B, all-gather %lld B per step\n",
           1000 * med, 1000 * lo, 1000 * hi, STEPS, 1000 * worst / W, 1000 * cmed, (long long)rs, (long long)ag);
    for (int k = 0; k < NSZ; k++)
      printf("  all-reduce %9lld B: %8.3f ms  busbw %.3f GB/s\n", (long long)(4 * sizes[k]), 1000 * ar_s[k], ar_bw[k]);
    qg_buf b;
    qg_buf_init(&b);
    qg_json j;
    qg_json_init(&j, &b, 1);
    qg_json_obj_begin(&j);
    qg_json_key(&j, "world"), qg_json_int(&j, W);
    qg_json_key(&j, "comm"), qg_json_str(&j, qg_comm_name(c));
    qg_json_key(&j, "threads_per_rank"), qg_json_int(&j, 1);
    qg_json_key(&j, "params"), qg_json_int(&j, params);
    qg_json_key(&j, "tokens_per_rank_per_step"), qg_json_int(&j, 4 * 256);
    qg_json_key(&j, "steps_timed"), qg_json_int(&j, STEPS);
    qg_json_key(&j, "step_seconds_median"), qg_json_num(&j, med);
    qg_json_key(&j, "step_seconds_min"), qg_json_num(&j, lo);
    qg_json_key(&j, "step_seconds_max"), qg_json_num(&j, hi);
    qg_json_key(&j, "step_seconds_mean_of_rank_medians"), qg_json_num(&j, worst / W);
    qg_json_key(&j, "comm_seconds_median"), qg_json_num(&j, cmed);
    qg_json_key(&j, "reduce_scatter_bytes_per_step"), qg_json_int(&j, rs);
    qg_json_key(&j, "all_gather_bytes_per_step"), qg_json_int(&j, ag);
    qg_json_key(&j, "allreduce");
    qg_json_arr_begin(&j);
    for (int k = 0; k < NSZ; k++) {
      qg_json_obj_begin(&j);
      qg_json_key(&j, "bytes"), qg_json_int(&j, 4 * sizes[k]);
      qg_json_key(&j, "seconds"), qg_json_num(&j, ar_s[k]);
      qg_json_key(&j, "busbw_gbs"), qg_json_num(&j, ar_bw[k]);
      qg_json_obj_end(&j);
    }
    qg_json_arr_end(&j);
    qg_json_obj_end(&j);
    qg_buf_byte(&b, '\n');
    FILE *f = fopen(json_path, "w");
    if (f) {
      fwrite(b.p, 1, b.n, f);
      fclose(f);
    }
    qg_buf_free(&b);
    remove(shard);
  }
  qg_comm_close(c);
  return 0;
}
