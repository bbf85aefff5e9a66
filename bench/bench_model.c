/* CPU forward throughput of the contest GPT: tokens/s and achieved GFLOP/s for the 7L384d
 * checkpoint (when ../shared/contest is present) and for random weights of the 9x512
 * baseline shape, at seq 1024, next to the sgemm GFLOP/s this machine reaches on the
 * model's own matrix shapes. Prints a table and writes JSON (argv[1], default
 * bench_model.json). Figures only: nothing here passes or fails on time. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"
#include "core/progress.h"
#include "core/threadpool.h"
#include "io/checkpoint.h"
#include "model/gpt.h"
#include "quant/artifact.h"

/* Forward FLOPs per token at sequence length T (causal attention counted at half). */
static double flops_per_token(const qg_gpt_config *c, int T) {
  double d = c->d, kvd = (double)c->n_kv_head * c->head_dim, h = c->mlp_hidden;
  double per_layer = 2 * (2 * d * d + 2 * d * kvd + 2 * d * h) + 2.0 * T * d; /* QK^T and PV, T/2 keys avg */
  return c->n_layers * per_layer + 2 * d * c->vocab;
}

/* sgemm GFLOP/s for y[M,N] = x[M,K] w[N,K]^T, best of a few runs. */
static double sgemm_gflops(int M, int K, int N) {
  float *x = calloc((size_t)M * K, 4), *w = calloc((size_t)N * K, 4), *y = calloc((size_t)M * N, 4);
  for (long i = 0; i < (long)M * K; i++) x[i] = (float)(i % 7) * 0.1f;
  for (long i = 0; i < (long)N * K; i++) w[i] = (float)(i % 5) * 0.1f;
  double best = 1e9;
  for (int r = 0; r < 5; r++) {
    double t0 = qg_now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
    double t = qg_now() - t0;
    if (t < best) best = t;
  }
  free(x);
  free(w);
  free(y);
  return 2.0 * M * K * N / best / 1e9;
}

static uint64_t bench_rng = 42;

/* Adds a tensor of uniform values in [-scale/2, scale/2) (cols 0: a vector). */
static void add_random(qg_state *s, const char *name, int rows, int cols, double scale) {
  int64_t shp[2] = {rows, cols};
  qg_tensor *t;
  if (qg_state_add(s, name, QG_F32, cols ? 2 : 1, shp, &t)) return;
  float *p = t->data;
  for (int64_t i = 0; i < qg_tensor_numel(t); i++) {
    bench_rng = bench_rng * 6364136223846793005ull + 1442695040888963407ull;
    p[i] = (float)(((double)(bench_rng >> 40) / 16777216.0 - 0.5) * scale);
  }
}

static void random_state(qg_state *s, int L, int d, int H, int KVH, int hidden, int V) {
  qg_state_init(s);
  int hd = d / H;
  char name[96];
  add_random(s, "tok_emb.weight", V, d, 0.02);
  add_random(s, "skip_weights", L / 2, d, 2.0);
  static const char *mats[] = {"attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight",
                               "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight"};
  int rows[] = {d, KVH * hd, KVH * hd, d, hidden, d}, cols[] = {d, d, d, d, d, hidden};
  for (int l = 0; l < L; l++) {
    for (int k = 0; k < 6; k++) {
      snprintf(name, sizeof name, "blocks.%d.%s", l, mats[k]);
      add_random(s, name, rows[k], cols[k], 0.1);
    }
    snprintf(name, sizeof name, "blocks.%d.attn_scale", l);
    add_random(s, name, d, 0, 2.0);
    snprintf(name, sizeof name, "blocks.%d.mlp_scale", l);
    add_random(s, name, d, 0, 2.0);
    snprintf(name, sizeof name, "blocks.%d.resid_mix", l);
    add_random(s, name, 2, d, 2.0);
    snprintf(name, sizeof name, "blocks.%d.attn.q_gain", l);
    add_random(s, name, H, 0, 3.0);
  }
}

typedef struct {
  const char *name;
  double tok_s, gflops, sgemm_gflops, seconds;
  int64_t tokens;
} row;

static int run(row *r, const char *name, const qg_state *s, int B, int T) {
  qg_gpt m;
  if (qg_gpt_init(&m, s, NULL, qg_ops_cpu())) {
    fprintf(stderr, "bench_model: %s\n", qg_last_error());
    return -1;
  }
  int32_t *tok = malloc(sizeof *tok * (size_t)B * T);
  for (int i = 0; i < B * T; i++) tok[i] = (i * 7919) % m.cfg.vocab;
  qg_gpt_forward(&m, tok, B, T); /* warm-up: allocations, page faults */
  double best = 1e9;
  for (int rep = 0; rep < 3; rep++) {
    double t0 = qg_now();
    if (qg_gpt_forward(&m, tok, B, T)) return -1;
    double t = qg_now() - t0;
    if (t < best) best = t;
  }
  const qg_gpt_config *c = &m.cfg;
  int kvd = c->n_kv_head * c->head_dim;
  /* the sgemm reference: the model's own shapes at this batch, weighted by their FLOPs */
  int64_t R = (int64_t)B * T;
  int shapes[5][2] = {{c->d, c->d}, {c->d, kvd}, {c->d, c->mlp_hidden}, {c->mlp_hidden, c->d}, {c->d, c->vocab}};
  double w[5] = {2.0 * c->n_layers, 2.0 * c->n_layers, c->n_layers, c->n_layers, 1};
  double fl = 0, tm = 0;
  for (int i = 0; i < 5; i++) {
    double f = 2.0 * R * shapes[i][0] * shapes[i][1] * w[i];
    fl += f;
    tm += f / (sgemm_gflops((int)R, shapes[i][0], shapes[i][1]) * 1e9);
  }
  r->name = name;
  r->tokens = R;
  r->seconds = best;
  r->tok_s = (double)R / best;
  r->gflops = flops_per_token(c, T) * (double)R / best / 1e9;
  r->sgemm_gflops = fl / tm / 1e9;
  free(tok);
  qg_gpt_free(&m);
  return 0;
}

int main(int argc, char **argv) {
  const char *out = argc > 1 ? argv[1] : "bench_model.json";
  row rows[2];
  int n = 0;
  char path[4096];
  snprintf(path, sizeof path, "%s/../shared/contest/baseline7L384d_SamTruss_c839523.int8.ptz", QG_SOURCE_DIR);
  if (access(path, R_OK) == 0) {
    qg_state s;
    if (qg_checkpoint_load(path, &s, NULL) == QG_OK) {
      if (run(&rows[n], "samtruss_7L384d_seq1024_b4", &s, 4, 1024) == 0) n++;
      qg_state_free(&s);
    }
  } else {
    fprintf(stderr, "bench_model: skip the 7L384d checkpoint (../shared/contest absent)\n");
  }
  qg_state s;
  random_state(&s, 9, 512, 8, 4, 1024, 1024);
  if (run(&rows[n], "random_9x512_seq1024_b4", &s, 4, 1024) == 0) n++;
  qg_state_free(&s);
  qg_buf b;
  qg_buf_init(&b);
  qg_json j;
  qg_json_init(&j, &b, 1);
  qg_json_obj_begin(&j);
  qg_json_key(&j, "benchmark"), qg_json_str(&j, "bench_model");
  qg_json_key(&j, "threads"), qg_json_int(&j, qg_threads());
  qg_json_key(&j, "results");
  qg_json_arr_begin(&j);
  printf("%-32s %10s %10s %12s %8s\n", "case", "tokens/s", "GFLOP/s", "sgemm GF/s", "ratio");
  for (int i = 0; i < n; i++) {
    printf("%-32s %10.0f %10.1f %12.1f %7.0f%%\n", rows[i].name, rows[i].tok_s, rows[i].gflops, rows[i].sgemm_gflops,
           100 * rows[i].gflops / rows[i].sgemm_gflops);
    qg_json_obj_begin(&j);
    qg_json_key(&j, "case"), qg_json_str(&j, rows[i].name);
    qg_json_key(&j, "tokens_per_s"), qg_json_num(&j, rows[i].tok_s);
    qg_json_key(&j, "gflops"), qg_json_num(&j, rows[i].gflops);
    qg_json_key(&j, "sgemm_gflops_same_shapes"), qg_json_num(&j, rows[i].sgemm_gflops);
    qg_json_key(&j, "fraction_of_sgemm"), qg_json_num(&j, rows[i].gflops / rows[i].sgemm_gflops);
    qg_json_key(&j, "best_seconds"), qg_json_num(&j, rows[i].seconds);
    qg_json_obj_end(&j);
  }
  qg_json_arr_end(&j);
  qg_json_obj_end(&j);
  qg_buf_byte(&b, '\n');
  FILE *f = fopen(out, "wb");
  if (f) {
    fwrite(b.p, 1, b.n, f);
    fclose(f);
    fprintf(stderr, "bench_model: wrote %s\n", out);
  }
  qg_buf_free(&b);
  return 0;
}
