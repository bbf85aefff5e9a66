/* The allocation solver on a contest-sized instance: 100 groups x 10 candidates, bytes
 * like per-role tensors (60-160 KB per group), a budget at the middle of the achievable
 * range, granularities 1 KB and 256 B. Prints and writes JSON (argv[1], default
 * bench_allocate.json): median and best of 7 runs. Never fails on time. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"
#include "lab/allocate.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  const char *json_path = argc > 1 ? argv[1] : "bench_allocate.json";
  enum { G = 100, K = 10, RUNS = 7 };
  static qg_alloc_option store[G][K];
  qg_alloc_option *ops[G];
  int no[G];
  uint64_t r = 42;
  int64_t lo = 0, hi = 0;
  for (int g = 0; g < G; g++) {
    /* candidate k: fewer bytes as k grows, larger delta (convex-ish with noise) */
    int64_t full = 60000 + (int64_t)((r = r * 6364136223846793005ULL + 1442695040888963407ULL) >> 48) % 100000;
    for (int k = 0; k < K; k++) {
      double frac = 1.0 - 0.08 * k;
      store[g][k].bytes = (int64_t)(full * frac);
      store[g][k].delta = 1e-4 * k * k * (1.0 + (double)((r = r * 6364136223846793005ULL + 1) >> 54) / 1024.0);
    }
    lo += store[g][K - 1].bytes, hi += store[g][0].bytes;
    ops[g] = store[g], no[g] = K;
  }
  qg_alloc_problem p = {G, no, ops, 1000000};
  int64_t budget = p.fixed_bytes + (lo + hi) / 2;
  const int64_t grans[] = {1024, 256};
  qg_buf b;
  qg_buf_init(&b);
  qg_json j;
  qg_json_init(&j, &b, 1);
  qg_json_obj_begin(&j);
  qg_json_key(&j, "benchmark"), qg_json_str(&j, "bench_allocate");
  qg_json_key(&j, "groups"), qg_json_int(&j, G);
  qg_json_key(&j, "candidates"), qg_json_int(&j, K);
  qg_json_key(&j, "budget_bytes"), qg_json_int(&j, budget);
  qg_json_key(&j, "results");
  qg_json_arr_begin(&j);
  printf("%-12s %10s %10s %12s %14s %10s\n", "granularity", "median_ms", "best_ms", "cells", "delta", "frontier");
  for (size_t gi = 0; gi < sizeof grans / sizeof *grans; gi++) {
    double t[RUNS];
    qg_alloc_solution s;
    memset(&s, 0, sizeof s);
    for (int i = 0; i < RUNS; i++) {
      qg_alloc_solution_free(&s);
      double t0 = now();
      if (qg_alloc_solve(&p, budget, grans[gi], 0, &s)) {
        fprintf(stderr, "bench_allocate: %s\n", qg_last_error());
        return 1;
      }
      t[i] = now() - t0;
    }
    qsort(t, RUNS, sizeof *t, cmp);
    printf("%-12lld %10.2f %10.2f %12lld %14.6g %10d\n", (long long)grans[gi], t[RUNS / 2] * 1e3, t[0] * 1e3,
           (long long)s.cells, s.best.delta, s.n_frontier);
    qg_json_obj_begin(&j);
    qg_json_key(&j, "granularity_bytes"), qg_json_int(&j, grans[gi]);
    qg_json_key(&j, "median_ms"), qg_json_num(&j, t[RUNS / 2] * 1e3);
    qg_json_key(&j, "best_ms"), qg_json_num(&j, t[0] * 1e3);
    qg_json_key(&j, "runs"), qg_json_int(&j, RUNS);
    qg_json_key(&j, "cells"), qg_json_int(&j, s.cells);
    qg_json_key(&j, "slack_bytes"), qg_json_int(&j, s.slack_bytes);
    qg_json_key(&j, "best_delta"), qg_json_num(&j, s.best.delta);
    qg_json_key(&j, "best_bytes"), qg_json_int(&j, s.best.bytes);
    qg_json_key(&j, "frontier_points"), qg_json_int(&j, s.n_frontier);
    qg_json_obj_end(&j);
    qg_alloc_solution_free(&s);
  }
  qg_json_arr_end(&j);
  qg_json_obj_end(&j);
  qg_buf_append(&b, "\n", 1);
  FILE *f = fopen(json_path, "w");
  if (!f || fwrite(b.p, 1, b.n, f) != b.n || fclose(f)) {
    fprintf(stderr, "bench_allocate: cannot write %s\n", json_path);
    return 1;
  }
  qg_buf_free(&b);
  return 0;
}
