/* Benchmarks of quant/: GPTQ solve time over every matrix shape of the 7L384d contest
 * model (random weights, Hessians from random correlated activations), Hessian
 * accumulation throughput, and rowwise throughput per clipping rule. Prints a table and
 * writes JSON (argv[1], default bench_quant.json). Never fails on time. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"
#include "core/file.h"
#include "quant/hessian.h"
#include "quant/quantizer.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng = 12345;
static float randf(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

/* rows x k activations with correlated columns (each a mix of its neighbours) */
static float *activations(int64_t rows, int64_t k) {
  float *x = malloc(sizeof *x * rows * k);
  for (int64_t r = 0; r < rows; r++) {
    float prev = 0;
    for (int64_t j = 0; j < k; j++) prev = x[r * k + j] = 0.7f * prev + randf();
  }
  return x;
}

typedef struct {
  char name[64];
  double seconds, per_unit; /* per_unit: weights/s or rows/s */
  const char *unit;
} result;

int main(int argc, char **argv) {
  const char *json_path = argc > 1 ? argv[1] : "bench_quant.json";
  result res[32];
  int nr = 0;
  /* 7L384d: per layer c_q, c_k, c_v, attn.proj, mlp.fc, mlp.proj; plus tok_emb (1024 x 384) */
  struct {
    const char *role;
    int64_t rows, cols, count;
  } shapes[] = {{"attn.c_q", 384, 384, 7}, {"attn.c_k", 192, 384, 7}, {"attn.c_v", 192, 384, 7},
                {"attn.proj", 384, 384, 7}, {"mlp.fc", 768, 384, 7}, {"mlp.proj", 384, 768, 7},
                {"tok_emb", 1024, 384, 1}};
  const int64_t calib_rows = 4096;
  double *H384 = NULL, *H768 = NULL;
  qg_hessian h;
  for (int w = 0; w < 2; w++) {
    int64_t k = w ? 768 : 384;
    float *x = activations(calib_rows, k);
    qg_hessian_init(&h, k);
    double t0 = now();
    qg_hessian_accumulate(&h, x, calib_rows, k);
    double dt = now() - t0;
    qg_hessian_finalize(&h);
    if (w) H768 = h.H;
    else H384 = h.H;
    result *r = &res[nr++];
    snprintf(r->name, sizeof r->name, "hessian accumulate k=%lld", (long long)k);
    r->seconds = dt, r->per_unit = (double)calib_rows / dt, r->unit = "rows/s";
    free(x);
  }
  const char *gopts[] = {"bits=6", "bits=6 act_order=1", "bits=5 group=128"};
  for (int o = 0; o < 3; o++) {
    qg_qconfig c;
    if (qg_qconfig_parse("gptq", gopts[o], &c)) {
      fprintf(stderr, "%s\n", qg_last_error());
      return 1;
    }
    double total = 0;
    int64_t weights = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
      int64_t m = shapes[i].rows, n = shapes[i].cols;
      float *wt = malloc(sizeof *wt * m * n);
      for (int64_t j = 0; j < m * n; j++) wt[j] = 0.05f * randf();
      qg_qinput in = {.name = shapes[i].role, .w = wt, .rows = m, .cols = n, .hessian = n == 768 ? H768 : H384};
      qg_qtensor q;
      double t0 = now();
      if (qg_quantize(&c, &in, &q)) {
        fprintf(stderr, "%s\n", qg_last_error());
        return 1;
      }
      double dt = now() - t0;
      total += dt * (double)shapes[i].count; /* same shape, same work */
      weights += m * n * shapes[i].count;
      qg_qtensor_free(&q);
      free(wt);
    }
    result *r = &res[nr++];
    snprintf(r->name, sizeof r->name, "gptq all 43 matrices (%s)", gopts[o]);
    r->seconds = total, r->per_unit = (double)weights / total, r->unit = "weights/s";
    qg_qconfig_free(&c);
  }
  const char *ropts[] = {"bits=6", "bits=6 clip=sd", "bits=6 clip=absmax", "bits=6 clip=search", "bits=4 group=64"};
  int64_t m = 768, n = 384;
  float *wt = malloc(sizeof *wt * m * n);
  for (int64_t j = 0; j < m * n; j++) wt[j] = 0.05f * randf();
  for (int o = 0; o < 5; o++) {
    qg_qconfig c;
    qg_qconfig_parse("rowwise", ropts[o], &c);
    qg_qinput in = {.name = "mlp.fc", .w = wt, .rows = m, .cols = n};
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
      qg_qtensor q;
      double t0 = now();
      qg_quantize(&c, &in, &q);
      double dt = now() - t0;
      if (dt < best) best = dt;
      qg_qtensor_free(&q);
    }
    result *r = &res[nr++];
    snprintf(r->name, sizeof r->name, "rowwise 768x384 %s", ropts[o]);
    r->seconds = best, r->per_unit = (double)(m * n) / best, r->unit = "weights/s";
    qg_qconfig_free(&c);
  }
  free(wt);
  free(H384), free(H768);
  printf("%-44s %10s %14s\n", "case", "seconds", "throughput");
  for (int i = 0; i < nr; i++) printf("%-44s %10.4f %14.4g %s\n", res[i].name, res[i].seconds, res[i].per_unit, res[i].unit);
  printf("(GPTQ totals: each shape solved once and counted per occurrence; Hessians from %lld rows)\n",
         (long long)calib_rows);
  qg_buf b;
  qg_buf_init(&b);
  qg_json j;
  qg_json_init(&j, &b, 1);
  qg_json_obj_begin(&j);
  qg_json_key(&j, "benchmark"), qg_json_str(&j, "bench_quant");
  qg_json_key(&j, "results");
  qg_json_arr_begin(&j);
  for (int i = 0; i < nr; i++) {
    qg_json_obj_begin(&j);
    qg_json_key(&j, "case"), qg_json_str(&j, res[i].name);
    qg_json_key(&j, "seconds"), qg_json_num(&j, res[i].seconds);
    qg_json_key(&j, "throughput"), qg_json_num(&j, res[i].per_unit);
    qg_json_key(&j, "unit"), qg_json_str(&j, res[i].unit);
    qg_json_obj_end(&j);
  }
  qg_json_arr_end(&j);
  qg_json_obj_end(&j);
  qg_buf_byte(&b, '\n');
  if (qg_write_file_atomic(json_path, b.p, b.n)) fprintf(stderr, "bench_quant: %s\n", qg_last_error());
  else printf("wrote %s\n", json_path);
  qg_buf_free(&b);
  return 0;
}
