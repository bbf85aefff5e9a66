/* Benchmark of io/rans.c on one core: encode and decode throughput of int6-shaped codes
 * (a rounded Gaussian over 64 symbols, 4 Mi symbols) at each table precision, counted as
 * one byte per symbol (what a byte-per-code layout holds). Reports best and median of
 * repeated runs (the machine is shared: the median is the figure to quote), and the coded
 * size against the order-0 entropy. Writes JSON (argv[1], default bench_rans.json). Never
 * fails on time. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/rans.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  const char *json = argc > 1 ? argv[1] : "bench_rans.json";
  const size_t n = (size_t)4 << 20;
  const int reps = 9;
  uint32_t *s = malloc(n * sizeof *s), *d = malloc(n * sizeof *d);
  if (!s || !d) return 1;
  uint64_t r = 0x243f6a8885a308d3ull;
  for (size_t i = 0; i < n; i++) {
    double u[2];
    for (int k = 0; k < 2; k++) r ^= r << 13, r ^= r >> 7, r ^= r << 17, u[k] = (double)(r >> 11) / 9007199254740992.0;
    double g = sqrt(-2 * log(u[0] + 1e-300)) * cos(6.283185307179586 * u[1]);
    long v = lround(31.5 + 6.0 * g);
    s[i] = (uint32_t)(v < 0 ? 0 : v > 63 ? 63 : v);
  }
  uint64_t cnt[64];
  qg_rans_count(s, n, 64, cnt);
  double h = qg_entropy_bits(cnt, 64) / 8;
  FILE *f = fopen(json, "w");
  if (!f) return 1;
  fprintf(f, "{\"bench\": \"rans\", \"symbols\": %zu, \"alphabet\": 64, \"entropy_bytes\": %.1f, \"reps\": %d,\n"
             " \"note\": \"one core; MB/s = 1e6 symbols/s (one byte per code); median of reps on a shared machine\",\n"
             " \"results\": [\n", n, h, reps);
  printf("%-6s %12s %10s %14s %14s %14s\n", "bits", "bytes", "vs H", "enc MB/s med", "dec MB/s med", "dec MB/s best");
  for (int pb = QG_RANS_MIN_BITS; pb <= QG_RANS_MAX_BITS; pb += 2) {
    qg_rans_table t;
    if (qg_rans_table_build(cnt, 64, pb, &t) != QG_OK) return 1;
    double te[16], td[16];
    qg_buf b;
    qg_buf_init(&b);
    for (int k = 0; k < reps; k++) {
      b.n = 0;
      double t0 = now();
      if (qg_rans_encode(&t, s, n, &b) != QG_OK) return 1;
      te[k] = now() - t0;
      t0 = now();
      if (qg_rans_decode(&t, b.p, b.n, d, n) != QG_OK) return 1;
      td[k] = now() - t0;
      if (memcmp(d, s, n * sizeof *s)) return fprintf(stderr, "round trip failed\n"), 1;
    }
    qsort(te, reps, sizeof *te, cmpd), qsort(td, reps, sizeof *td, cmpd);
    double enc = n / te[reps / 2] / 1e6, dec = n / td[reps / 2] / 1e6, decb = n / td[0] / 1e6;
    size_t total = b.n + qg_rans_table_bytes(&t);
    printf("%-6d %12zu %9.4f%% %14.1f %14.1f %14.1f\n", pb, total, 100.0 * (total - h) / h, enc, dec, decb);
    fprintf(f, "  {\"prob_bits\": %d, \"bytes\": %zu, \"table_bytes\": %zu, \"over_entropy_pct\": %.5f, "
               "\"encode_mb_s_median\": %.1f, \"decode_mb_s_median\": %.1f, \"decode_mb_s_best\": %.1f}%s\n",
            pb, total, qg_rans_table_bytes(&t), 100.0 * (total - h) / h, enc, dec, decb,
            pb + 2 <= QG_RANS_MAX_BITS ? "," : "");
    qg_buf_free(&b);
    qg_rans_table_free(&t);
  }
  fprintf(f, " ]}\n");
  fclose(f);
  printf("wrote %s\n", json);
  free(s), free(d);
  return 0;
}
