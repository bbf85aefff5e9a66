/* The sgemm yardstick for the peer benchmark (bench/peer_torch_cpu.py): OpenBLAS's fp32
 * GEMM rate on a GPT's own products y[R, N] = x[R, K] w[N, K]^T, each timed as the best of
 * five calls and weighted by the FLOPs the forward spends on it, with as many BLAS threads
 * as QG_THREADS (else every online CPU).
 *
 * usage: bench_sgemm ROWS D KV_DIM HIDDEN VOCAB LAYERS   -> one JSON object on stdout. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/progress.h"
#include "core/threadpool.h"

static double best_seconds(int M, int K, int N) {
  float *x = malloc(sizeof *x * (size_t)M * K), *w = malloc(sizeof *w * (size_t)N * K);
  float *y = malloc(sizeof *y * (size_t)M * N);
  if (!x || !w || !y) {
    fprintf(stderr, "bench_sgemm: out of memory\n");
    exit(1);
  }
  for (long i = 0; i < (long)M * K; i++) x[i] = (float)(i % 7) * 0.1f;
  for (long i = 0; i < (long)N * K; i++) w[i] = (float)(i % 5) * 0.1f;
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    double t0 = qg_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
    double t = qg_now() - t0;
    if (t < best) best = t;
  }
  free(x);
  free(w);
  free(y);
  return best;
}

int main(int argc, char **argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: bench_sgemm ROWS D KV_DIM HIDDEN VOCAB LAYERS\n");
    return 2;
  }
  int v[6];
  for (int i = 0; i < 6; i++) {
    char *end;
    long x = strtol(argv[i + 1], &end, 10);
    if (*end || x <= 0 || x > 1 << 20) {
      fprintf(stderr, "bench_sgemm: bad argument %s\n", argv[i + 1]);
      return 2;
    }
    v[i] = (int)x;
  }
  int R = v[0], d = v[1], kvd = v[2], hid = v[3], V = v[4], L = v[5];
  openblas_set_num_threads(qg_threads());
  /* (K, N, how many per forward): q and out-proj, k and v, fc, mlp proj, the head */
  int shp[5][3] = {{d, d, 2 * L}, {d, kvd, 2 * L}, {d, hid, L}, {hid, d, L}, {d, V, 1}};
  double fl = 0, tm = 0;
  printf("{\"benchmark\": \"bench_sgemm\", \"threads\": %d, \"rows\": %d, \"shapes\": [", qg_threads(), R);
  for (int i = 0; i < 5; i++) {
    double s = best_seconds(R, shp[i][0], shp[i][1]), f = 2.0 * R * shp[i][0] * shp[i][1];
    fl += f * shp[i][2];
    tm += s * shp[i][2];
    printf("%s{\"K\": %d, \"N\": %d, \"count\": %d, \"gflops\": %.3f}", i ? ", " : "", shp[i][0], shp[i][1],
           shp[i][2], f / s / 1e9);
  }
  printf("], \"sgemm_gflops\": %.3f, \"statistic\": \"best of 5 per shape, FLOP-weighted\"}\n", fl / tm / 1e9);
  return 0;
}
