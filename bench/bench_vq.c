/* Benchmarks of the vector-quantization cores: E8 lattice decoding, codebook encoding
 * (the lattice fast path and the full pattern search, each beside the reference encoder
 * that the device runs), codebook decoding, the FWHT, and
 * the e8 / turbo / lloydmax quantizers on a 512 x 1024 Gaussian matrix. Prints a table
 * and writes JSON (argv[1], default bench_vq.json). Never fails on time. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"
#include "quant/e8.h"
#include "quant/e8_search.h"
#include "quant/fwht.h"
#include "quant/quantizer.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
  char name[64];
  double best_s, items; /* items processed per run */
  const char *unit;     /* what an item is */
} result;

static result res[48];
static int nres;
static volatile float sink; /* keeps results alive */

static double gauss(uint64_t *s) {
  double u1 = ((double)(qg_splitmix64(s) >> 11) + 0.5) / 9007199254740992.0;
  double u2 = ((double)(qg_splitmix64(s) >> 11) + 0.5) / 9007199254740992.0;
  return sqrt(-2 * log(u1)) * cos(2 * M_PI * u2);
}

/* Best of reps runs of the statement (variadic: bodies contain commas). */
#define TIMEIT(label, unit_, n_items, reps, ...)            \
  do {                                                      \
    double best_ = INFINITY;                                \
    for (int rep_ = 0; rep_ < (reps); rep_++) {             \
      double t0_ = now();                                   \
      __VA_ARGS__;                                          \
      double t_ = now() - t0_;                              \
      if (t_ < best_) best_ = t_;                           \
    }                                                       \
    result *r_ = &res[nres++];                              \
    snprintf(r_->name, sizeof r_->name, "%s", label);       \
    r_->best_s = best_, r_->items = (double)(n_items);      \
    r_->unit = unit_;                                       \
  } while (0)

enum { NV = 1 << 16 }; /* 8-vectors per encode run */

int main(int argc, char **argv) {
  const char *json_path = argc > 1 ? argv[1] : "bench_vq.json";
  float *x = malloc(sizeof(float) * 8 * NV);
  uint32_t *idx = malloc(sizeof(uint32_t) * NV);
  uint64_t rs = 1;
  for (int i = 0; i < 8 * NV; i++) x[i] = (float)gauss(&rs);
  const qg_e8_codebook *e8p = qg_e8_codebook_get("e8p"), *b1 = qg_e8_codebook_get("ball1"),
                       *b2 = qg_e8_codebook_get("ball2");
  if (!e8p || !b1 || !b2) return 1;

  TIMEIT("e8_nearest (lattice)", "vec8", NV, 5, {
    float y[8], acc = 0;
    for (int i = 0; i < NV; i++) qg_e8_nearest(x + 8 * i, y), acc += y[0];
    sink = acc;
  });
  /* Gaussian data at each codebook's best scale (1.04 / 1.0 / 0.6 units per sigma). */
  const struct {
    const char *name;
    const qg_e8_codebook *cb;
    float u;
  } cbs[] = {{"e8p", e8p, 1.04f}, {"ball2", b2, 1.0f}, {"ball1", b1, 0.6f}};
  float *xs = malloc(sizeof(float) * 8 * NV);
  for (int c = 0; c < 3; c++) {
    char label[64];
    for (int i = 0; i < 8 * NV; i++) xs[i] = x[i] * cbs[c].u;
    snprintf(label, sizeof label, "encode %s (fast path)", cbs[c].name);
    TIMEIT(label, "vec8", NV, 3, {
      for (int i = 0; i < NV; i++) idx[i] = qg_e8_encode(cbs[c].cb, xs + 8 * i, NULL);
    });
    /* the reference (quant/e8_core.h as the device runs it), for the host search's speedup
     * measured in one process */
    snprintf(label, sizeof label, "encode %s (reference)", cbs[c].name);
    TIMEIT(label, "vec8", NV, 3, {
      for (int i = 0; i < NV; i++) idx[i] = qg_e8_encode_ref(cbs[c].cb, xs + 8 * i, NULL);
    });
    snprintf(label, sizeof label, "encode %s (full search)", cbs[c].name);
    TIMEIT(label, "vec8", NV / 8, 3, {
      for (int i = 0; i < NV / 8; i++) idx[i] = qg_e8_encode_search(cbs[c].cb, xs + 8 * i, NULL);
    });
    snprintf(label, sizeof label, "encode %s (full search, reference)", cbs[c].name);
    TIMEIT(label, "vec8", NV / 8, 3, {
      for (int i = 0; i < NV / 8; i++) idx[i] = qg_e8_encode_search_ref(cbs[c].cb, xs + 8 * i, NULL);
    });
    snprintf(label, sizeof label, "decode %s", cbs[c].name);
    TIMEIT(label, "vec8", NV, 5, {
      float y[8], acc = 0;
      for (int i = 0; i < NV; i++) qg_e8_decode(cbs[c].cb, idx[i], y), acc += y[i & 7];
      sink = acc;
    });
  }
  int64_t ns[] = {128, 1024, 16384};
  for (int k = 0; k < 3; k++) {
    char label[64];
    snprintf(label, sizeof label, "fwht n=%lld", (long long)ns[k]);
    int64_t m = (8 * NV) / ns[k];
    TIMEIT(label, "float", 8 * NV, 5, { qg_fwht_batch(xs, ns[k], m); });
  }

  /* Quantizers, end to end (scale searches included), on 512 x 1024 N(0, 0.02^2). */
  enum { R = 512, C = 1024 };
  float *w = malloc(sizeof(float) * R * C), *out = malloc(sizeof(float) * R * C);
  for (int i = 0; i < R * C; i++) w[i] = (float)(0.02 * gauss(&rs));
  const char *qs[][2] = {{"e8", "bits=2"},         {"e8", "bits=3"},        {"e8", "bits=4"},
                         {"turbo", "bits=3"},      {"turbo", "bits=4"},     {"lloydmax", "bits=3"},
                         {"rowwise", "bits=3 clip=search"}};
  double mse[16];
  int nq = (int)(sizeof qs / sizeof *qs), q0 = nres;
  for (int k = 0; k < nq; k++) {
    qg_qconfig c;
    if (qg_qconfig_parse(qs[k][0], qs[k][1], &c)) {
      fprintf(stderr, "%s\n", qg_last_error());
      return 1;
    }
    qg_qinput in = {.name = "bench", .w = w, .rows = R, .cols = C, .dtype = QG_F32, .seed = 7};
    char label[64];
    snprintf(label, sizeof label, "quantize %s %s", qs[k][0], qs[k][1]);
    qg_status st = QG_OK;
    TIMEIT(label, "weight", (double)R * C, 1, {
      qg_qtensor q;
      if (!(st = qg_quantize(&c, &in, &q))) {
        st = qg_dequantize(&c, &q, out);
        qg_qtensor_free(&q);
      }
    });
    if (st) {
      fprintf(stderr, "%s\n", qg_last_error());
      return 1;
    }
    double e = 0, n = 0;
    for (int i = 0; i < R * C; i++) e += (double)(w[i] - out[i]) * (w[i] - out[i]), n += (double)w[i] * w[i];
    mse[k] = e / n;
    qg_qconfig_free(&c);
  }

  printf("E8 host search: %s\n", qg_e8_search_isa());
  printf("%-36s %12s %16s\n", "case", "best ms", "throughput");
  for (int i = 0; i < nres; i++) {
    double rate = res[i].items / res[i].best_s;
    printf("%-36s %12.3f %12.3g %s/s", res[i].name, res[i].best_s * 1e3, rate, res[i].unit);
    if (i >= q0) printf("   rel MSE %.5f", mse[i - q0]);
    printf("\n");
  }

  qg_buf b;
  qg_buf_init(&b);
  qg_json j;
  qg_json_init(&j, &b, 1);
  qg_json_obj_begin(&j);
  qg_json_key(&j, "benchmark");
  qg_json_str(&j, "bench_vq");
  qg_json_key(&j, "e8_host_search");
  qg_json_str(&j, qg_e8_search_isa());
  qg_json_key(&j, "results");
  qg_json_arr_begin(&j);
  for (int i = 0; i < nres; i++) {
    qg_json_obj_begin(&j);
    qg_json_key(&j, "case");
    qg_json_str(&j, res[i].name);
    qg_json_key(&j, "best_ms");
    qg_json_num(&j, res[i].best_s * 1e3);
    qg_json_key(&j, "items_per_s");
    qg_json_num(&j, res[i].items / res[i].best_s);
    qg_json_key(&j, "item");
    qg_json_str(&j, res[i].unit);
    if (i >= q0) {
      qg_json_key(&j, "rel_mse");
      qg_json_num(&j, mse[i - q0]);
    }
    qg_json_obj_end(&j);
  }
  qg_json_arr_end(&j);
  qg_json_obj_end(&j);
  qg_buf_byte(&b, '\n');
  FILE *f = fopen(json_path, "wb");
  if (f) {
    fwrite(b.p, 1, b.n, f);
    fclose(f);
  }
  qg_buf_free(&b);
  free(x), free(xs), free(idx), free(w), free(out);
  return f ? 0 : 1;
}
