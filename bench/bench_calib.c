/* The calibration forward against the plain forward on the 7L384d checkpoint: the same
 * sequences (seq 1024, 8 a batch) through qg_gpt_forward alone and through
 * qg_calib_hessians (the forward with every linear input's Hessian accumulated), the two
 * alternating, each pass timed in wall and process CPU seconds; prints the medians and the
 * ratio of the pairs' medians and writes JSON (argv[1], default bench_calib.json; argv[2]
 * sequences, default 16; argv[3] pairs, default 3). Skips (exit 0) without
 * ../shared/contest. Figures only: nothing passes or fails on time. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"
#include "core/threadpool.h"
#include "io/checkpoint.h"
#include "model/gpt.h"
#include "quant/artifact.h"
#include "quant/calibrate.h"

static double clock_s(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

enum { T = 1024, BATCH = 8, MAXP = 16 };

int main(int argc, char **argv) {
  const char *out = argc > 1 ? argv[1] : "bench_calib.json";
  int n = argc > 2 ? atoi(argv[2]) : 16, pairs = argc > 3 ? atoi(argv[3]) : 3;
  if (n < 1) n = 1;
  if (pairs < 1 || pairs > MAXP) pairs = 3;
  char path[4096];
  snprintf(path, sizeof path, "%s/../shared/contest/baseline7L384d_SamTruss_c839523.int8.ptz", QG_SOURCE_DIR);
  if (access(path, R_OK)) {
    fprintf(stderr, "bench_calib: skipped (%s absent)\n", path);
    return 0;
  }
  qg_state s;
  qg_gpt m;
  if (qg_checkpoint_load(path, &s, NULL) || qg_gpt_init(&m, &s, NULL, qg_ops_cpu())) {
    fprintf(stderr, "bench_calib: %s\n", qg_last_error());
    return 1;
  }
  int32_t *tok = malloc(sizeof *tok * (size_t)n * T);
  uint64_t r = 7;
  for (int64_t i = 0; i < (int64_t)n * T; i++) { /* token ids with some structure: repeats */
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    tok[i] = (int32_t)((r >> 33) % 1024 < 700 ? (r >> 40) % 64 : (r >> 40) % (uint64_t)m.cfg.vocab);
  }
  double fw[MAXP], fc[MAXP], cw[MAXP], cc[MAXP];
  qg_status e = qg_gpt_forward(&m, tok, BATCH < n ? BATCH : n, T); /* warm-up */
  for (int p = 0; p < pairs && !e; p++) {
    double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    for (int i = 0; i < n && !e; i += BATCH) e = qg_gpt_forward(&m, tok + (int64_t)i * T, n - i < BATCH ? n - i : BATCH, T);
    fw[p] = clock_s(CLOCK_MONOTONIC) - w0, fc[p] = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    qg_hessian_map map;
    qg_hessian_map_init(&map);
    w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    if (!e) e = qg_calib_hessians(&m, tok, n, T, BATCH, &map);
    cw[p] = clock_s(CLOCK_MONOTONIC) - w0, cc[p] = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    qg_hessian_map_free(&map);
    if (!e) fprintf(stderr, "bench_calib: pair %d: forward %.2f s (cpu %.2f), calibration %.2f s (cpu %.2f)\n", p, fw[p],
                    fc[p], cw[p], cc[p]);
  }
  if (e) {
    fprintf(stderr, "bench_calib: %s\n", qg_last_error());
    return 1;
  }
  double rw[MAXP], rc[MAXP];
  for (int p = 0; p < pairs; p++) rw[p] = cw[p] / fw[p], rc[p] = cc[p] / fc[p];
  double mfw = median(fw, pairs), mfc = median(fc, pairs), mcw = median(cw, pairs), mcc = median(cc, pairs);
  double mrw = median(rw, pairs), mrc = median(rc, pairs);
  printf("7L384d, %d x %d tokens, %d threads, %d pairs (medians)\n", n, T, qg_threads(), pairs);
  printf("  plain forward      %8.2f s wall %8.2f s cpu\n", mfw, mfc);
  printf("  calibration        %8.2f s wall %8.2f s cpu\n", mcw, mcc);
  printf("  ratio (pairs)      %8.3f wall   %8.3f cpu   (wall range %.3f-%.3f)\n", mrw, mrc, rw[0], rw[pairs - 1]);
  qg_buf b;
  qg_buf_init(&b);
  qg_json j;
  qg_json_init(&j, &b, 1);
  qg_json_obj_begin(&j);
  qg_json_key(&j, "benchmark"), qg_json_str(&j, "bench_calib");
  qg_json_key(&j, "model"), qg_json_str(&j, "baseline7L384d_SamTruss_c839523.int8.ptz");
  qg_json_key(&j, "sequences"), qg_json_int(&j, n);
  qg_json_key(&j, "seq_len"), qg_json_int(&j, T);
  qg_json_key(&j, "threads"), qg_json_int(&j, qg_threads());
  qg_json_key(&j, "pairs"), qg_json_int(&j, pairs);
  qg_json_key(&j, "forward_wall_s"), qg_json_num(&j, mfw);
  qg_json_key(&j, "forward_cpu_s"), qg_json_num(&j, mfc);
  qg_json_key(&j, "calibration_wall_s"), qg_json_num(&j, mcw);
  qg_json_key(&j, "calibration_cpu_s"), qg_json_num(&j, mcc);
  qg_json_key(&j, "ratio_wall"), qg_json_num(&j, mrw);
  qg_json_key(&j, "ratio_cpu"), qg_json_num(&j, mrc);
  qg_json_obj_end(&j);
  qg_buf_byte(&b, '\n');
  FILE *f = fopen(out, "wb");
  if (f) {
    fwrite(b.p, 1, b.n, f);
    fclose(f);
  }
  qg_buf_free(&b);
  free(tok);
  qg_gpt_free(&m);
  qg_state_free(&s);
  return f ? 0 : 1;
}
