/* CUDA eval throughput of the contest GPT, fp32 and bf16, at seq 1024: random weights of
 * the 9x512 baseline shape and (when ../shared/contest is present) the 7L384d checkpoint.
 * Per model and precision: forward tokens/s, the eval path (forward + fused token
 * statistics), and the kld path through the real evaluator (two models over the same
 * windows, statistics on the host), with a 62M-token kld extrapolated from it. Next to
 * them the floor: the model's FLOPs over the measured bf16 GEMM rate and the bytes its op
 * sequence must move over the measured copy rate. Prints a table and writes JSON (argv[1],
 * default bench_cuda_model.json). Figures only: nothing here passes or fails on time.
 * Without a GPU it says so, writes {"skipped": ...} and exits 0. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"
#include "core/progress.h"
#include "eval/eval.h"
#include "io/checkpoint.h"
#include "kernels/cuda/cuda_bench.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda_precision.h"
#include "model/gpt.h"
#include "quant/artifact.h"

enum { SEQ = 1024, BATCH = 8, REPS = 10 };

static uint64_t seed = 1234567;

static float urand(void) {
  seed = seed * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((double)(seed >> 40) / 16777216.0 * 2.0 - 1.0);
}

static int add(qg_state *s, const char *name, int rows, int cols, float scale) {
  int64_t shape[2] = {rows, cols};
  qg_tensor *t;
  if (qg_state_add(s, name, QG_F32, cols ? 2 : 1, shape, &t)) return -1;
  float *p = t->data;
  for (int64_t i = 0; i < qg_tensor_numel(t); i++) p[i] = urand() * scale;
  return 0;
}

/* Random weights of the baseline's shape: 9 layers, d 512, 8 heads, 4 KV heads, MLP 1024. */
static int baseline_state(qg_state *s) {
  const int L = 9, d = 512, H = 8, KVH = 4, hid = 1024, V = 1024, hd = d / H;
  qg_state_init(s);
  int rc = add(s, "tok_emb.weight", V, d, 0.5f) | add(s, "skip_weights", L / 2, d, 1.0f);
  static const char *mats[] = {"attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight",
                               "attn.proj.weight", "mlp.fc.weight",   "mlp.proj.weight"};
  int rows[] = {d, KVH * hd, KVH * hd, d, hid, d}, cols[] = {d, d, d, d, d, hid};
  char name[96];
  for (int l = 0; l < L; l++) {
    for (int k = 0; k < 6; k++) {
      snprintf(name, sizeof name, "blocks.%d.%s", l, mats[k]);
      rc |= add(s, name, rows[k], cols[k], 1.0f / sqrtf((float)cols[k]));
    }
    snprintf(name, sizeof name, "blocks.%d.attn_scale", l), rc |= add(s, name, d, 0, 1.0f);
    snprintf(name, sizeof name, "blocks.%d.mlp_scale", l), rc |= add(s, name, d, 0, 1.0f);
    snprintf(name, sizeof name, "blocks.%d.resid_mix", l), rc |= add(s, name, 2, d, 1.0f);
    snprintf(name, sizeof name, "blocks.%d.attn.q_gain", l), rc |= add(s, name, H, 0, 2.0f);
  }
  return rc;
}

/* Forward FLOPs per token at sequence length T: the matrix products, plus causal attention
 * (T/2 keys on average, QK^T and PV), plus the output head. */
static double flops_per_token(const qg_gpt_config *c, int T) {
  double d = c->d, kvd = (double)c->n_kv_head * c->head_dim, h = c->mlp_hidden;
  double layer = 2 * (2 * d * d + 2 * d * kvd + 2 * d * h) + 2.0 * T * d;
  return c->n_layers * layer + 2 * d * c->vocab;
}

/* Bytes per token the op sequence of model/gpt.c must move at the least (each op's
 * operands read once, results written once, no fusion), plus the weights once per batch of
 * R tokens (fp32 for the fp32 path; bf16 operands for bf16 are written then read again). */
static double bytes_per_token(const qg_gpt_config *c, int64_t params, int bf16, int64_t R) {
  double d = c->d, kvd = (double)c->n_kv_head * c->head_dim, h = c->mlp_hidden;
  double layer = 3 * d + 2 * d                   /* resid_mix, rmsnorm */
                 + 3 * d + d + 2 * kvd           /* q, k, v products: h read three times */
                 + 2 * (d + kvd) * 3 + 2 * d     /* q/k rmsnorm and rope, head_scale */
                 + 2 * d + 2 * kvd               /* attention: q, k, v in, y out */
                 + 2 * d + 3 * d + 2 * d         /* proj, add_scaled, rmsnorm */
                 + d + h + 2 * h + h + d + 3 * d; /* fc, relu^2, mlp proj, add_scaled */
  if (bf16) layer += 2 * (d + d + d + h) * 1.5; /* operand rounding: read fp32, write bf16, read it back */
  double per_tok = 4 * (c->n_layers * layer + 2 * d + 2.0 * c->vocab);
  double weights = (double)params * (bf16 ? 4 + 2 + 2 : 4);
  return per_tok + weights / (double)R;
}

typedef struct {
  char name[96];
  const char *precision;
  double fwd_tok_s, eval_tok_s, kld_tok_s, kld_62m_s;
  double gflop_per_tok, mb_per_tok, floor_flops_s, floor_bytes_s, floor_tok_s;
  double achieved_tflops;
} row;

static int sync_dev(qg_gpt *m) {
  float x;
  return m->ops->download(m->ops, &x, m->logits, sizeof x) ? -1 : 0; /* a synchronous copy */
}

static double median(double *v, int n) {
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && v[j] < v[j - 1]; j--) {
      double t = v[j];
      v[j] = v[j - 1], v[j - 1] = t;
    }
  return v[n / 2];
}

typedef struct {
  double nll;
} light_sink;

static void sink(void *c, const qg_token_stat *t, int32_t prev, int32_t tgt, int bytes) {
  (void)prev, (void)tgt, (void)bytes;
  ((light_sink *)c)->nll += t->kld;
}

static int bench(row *r, const char *name, const qg_state *s, qg_precision p, double tflops, double gbps) {
  const qg_ops *cuda;
  qg_gpt a, b;
  qg_gpt_options opt = {.precision = p};
  if (qg_ops_cuda(&cuda) || qg_gpt_init(&a, s, &opt, cuda) || qg_gpt_init(&b, s, &opt, cuda)) {
    fprintf(stderr, "bench_cuda_model: %s\n", qg_last_error());
    return -1;
  }
  memset(r, 0, sizeof *r);
  snprintf(r->name, sizeof r->name, "%s", name);
  r->precision = qg_precision_name(p);
  int64_t R = (int64_t)BATCH * SEQ;
  int32_t *seqs = malloc(sizeof *seqs * (size_t)BATCH * (SEQ + 1));
  qg_token_stat *st = malloc(sizeof *st * (size_t)R);
  for (int64_t i = 0; i < (int64_t)BATCH * (SEQ + 1); i++) seqs[i] = (int32_t)((i * 7919 + 13) % a.cfg.vocab);
  double t[REPS];
  int rc = 0;
  /* forward only */
  for (int rep = -2; rep < REPS && !rc; rep++) {
    double t0 = qg_now();
    rc = qg_gpt_forward(&a, seqs, BATCH, SEQ) || sync_dev(&a);
    if (rep >= 0) t[rep] = qg_now() - t0;
  }
  if (!rc) r->fwd_tok_s = (double)R / median(t, REPS);
  /* the eval path: forward + fused statistics read back to the host */
  for (int rep = -2; rep < REPS && !rc; rep++) {
    double t0 = qg_now();
    rc = qg_gpt_score(&a, seqs, BATCH, SEQ, st) != QG_OK;
    if (rep >= 0) t[rep] = qg_now() - t0;
  }
  if (!rc) r->eval_tok_s = (double)R / median(t, REPS);
  /* the kld path through the evaluator over 64 windows of synthetic tokens in memory */
  enum { WINDOWS = 64 };
  size_t n_tok = (size_t)WINDOWS * SEQ + 1, len = 1024 + 2 * n_tok; /* 256 int32 header, uint16 tokens */
  uint8_t *shard = calloc(1, len);
  int32_t hdr[3] = {20240520, 1, (int32_t)n_tok};
  memcpy(shard, hdr, sizeof hdr);
  for (size_t i = 0; i < n_tok; i++) {
    uint16_t v = (uint16_t)((i * 2654435761u >> 7) % (uint32_t)a.cfg.vocab);
    memcpy(shard + 1024 + 2 * i, &v, 2);
  }
  qg_shards val;
  qg_shards_init(&val);
  qg_spm_luts luts = {0};
  luts.size = a.cfg.vocab;
  luts.base_bytes = calloc((size_t)a.cfg.vocab, sizeof *luts.base_bytes);
  luts.has_leading_space = calloc((size_t)a.cfg.vocab, sizeof *luts.has_leading_space);
  luts.is_boundary = calloc((size_t)a.cfg.vocab, sizeof *luts.is_boundary);
  if (!rc && qg_shards_add_memory(&val, shard, len, "synthetic")) rc = -1;
  qg_eval_opts eo = {.seq_len = SEQ, .batch = BATCH};
  for (int rep = 0; rep < 3 && !rc; rep++) {
    qg_eval_totals tt;
    light_sink ls = {0};
    if (qg_eval_run(&a, &b, &val, &luts, &eo, sink, &ls, &tt)) rc = -1;
    else if (rep > 0) t[rep - 1] = tt.seconds / (double)tt.tokens; /* the first run warms up */
  }
  if (!rc) {
    double sec_per_tok = t[0] < t[1] ? t[0] : t[1];
    r->kld_tok_s = 1.0 / sec_per_tok;
    r->kld_62m_s = 62e6 * sec_per_tok;
  }
  if (rc) fprintf(stderr, "bench_cuda_model: %s: %s\n", name, qg_last_error());
  /* the floor */
  int64_t params = qg_gpt_param_count(&a.cfg);
  double f = flops_per_token(&a.cfg, SEQ), by = bytes_per_token(&a.cfg, params, p == QG_PRECISION_BF16, R);
  r->gflop_per_tok = f / 1e9;
  r->mb_per_tok = by / 1e6;
  r->floor_flops_s = tflops > 0 ? f / (tflops * 1e12) : 0;
  r->floor_bytes_s = gbps > 0 ? by / (gbps * 1e9) : 0;
  double fl = r->floor_flops_s > r->floor_bytes_s ? r->floor_flops_s : r->floor_bytes_s;
  r->floor_tok_s = fl > 0 ? 1.0 / fl : 0;
  r->achieved_tflops = r->fwd_tok_s * f / 1e12;
  qg_shards_close(&val);
  free(luts.base_bytes), free(luts.has_leading_space), free(luts.is_boundary);
  free(shard), free(seqs), free(st);
  qg_gpt_free(&a), qg_gpt_free(&b);
  return rc;
}

int main(int argc, char **argv) {
  const char *out = argc > 1 ? argv[1] : "bench_cuda_model.json";
  qg_buf jb;
  qg_buf_init(&jb);
  qg_json j;
  qg_json_init(&j, &jb, 1);
  qg_json_obj_begin(&j);
  char dev[256];
  qg_cuda_describe(dev, sizeof dev);
  qg_json_key(&j, "device"), qg_json_str(&j, dev);
  if (qg_cuda_device_count() == 0) {
    printf("SKIP: no CUDA GPU (%s); nothing measured\n", dev);
    qg_json_key(&j, "skipped"), qg_json_str(&j, "no CUDA GPU");
  } else {
    double tflops = 0, gbps = 0;
    if (qg_cuda_gemm_bf16_tflops(8192, 10, &tflops) || qg_cuda_copy_gbps((size_t)1 << 30, 10, &gbps)) {
      fprintf(stderr, "bench_cuda_model: %s\n", qg_last_error());
      return 1;
    }
    printf("%s\nceilings: bf16 GEMM 8192^3 %.1f TFLOP/s, device copy %.0f GB/s (read + write)\n", dev, tflops, gbps);
    qg_json_key(&j, "bf16_gemm_tflops"), qg_json_num(&j, tflops);
    qg_json_key(&j, "copy_gbps"), qg_json_num(&j, gbps);
    qg_json_key(&j, "seq_len"), qg_json_int(&j, SEQ);
    qg_json_key(&j, "batch"), qg_json_int(&j, BATCH);
    row rows[4];
    int n = 0;
    qg_state s;
    if (baseline_state(&s) == 0) {
      for (int p = 0; p < 2; p++)
        if (bench(&rows[n], "random_9x512", &s, (qg_precision)p, tflops, gbps) == 0) n++;
    }
    qg_state_free(&s);
    char path[4096];
    snprintf(path, sizeof path, "%s/../shared/contest/baseline7L384d_SamTruss_c839523.int8.ptz", QG_SOURCE_DIR);
    const char *env = getenv("QG_CONTEST_DIR");
    if (env) snprintf(path, sizeof path, "%s/baseline7L384d_SamTruss_c839523.int8.ptz", env);
    if (access(path, R_OK) == 0 && qg_checkpoint_load(path, &s, NULL) == QG_OK) {
      for (int p = 0; p < 2; p++)
        if (bench(&rows[n], "samtruss_7L384d", &s, (qg_precision)p, tflops, gbps) == 0) n++;
      qg_state_free(&s);
    } else {
      printf("SKIP: the 7L384d checkpoint (%s not found)\n", path);
    }
    printf("\n%-18s %-5s %12s %12s %12s %10s %12s %9s\n", "model", "prec", "fwd tok/s", "eval tok/s", "kld tok/s",
           "kld 62M s", "floor tok/s", "TFLOP/s");
    qg_json_key(&j, "results");
    qg_json_arr_begin(&j);
    for (int i = 0; i < n; i++) {
      row *r = &rows[i];
      printf("%-18s %-5s %12.0f %12.0f %12.0f %10.1f %12.0f %9.1f\n", r->name, r->precision, r->fwd_tok_s,
             r->eval_tok_s, r->kld_tok_s, r->kld_62m_s, r->floor_tok_s, r->achieved_tflops);
      qg_json_obj_begin(&j);
      qg_json_key(&j, "model"), qg_json_str(&j, r->name);
      qg_json_key(&j, "precision"), qg_json_str(&j, r->precision);
      qg_json_key(&j, "forward_tokens_per_s"), qg_json_num(&j, r->fwd_tok_s);
      qg_json_key(&j, "eval_tokens_per_s"), qg_json_num(&j, r->eval_tok_s);
      qg_json_key(&j, "kld_tokens_per_s"), qg_json_num(&j, r->kld_tok_s);
      qg_json_key(&j, "kld_62m_tokens_seconds"), qg_json_num(&j, r->kld_62m_s);
      qg_json_key(&j, "gflop_per_token"), qg_json_num(&j, r->gflop_per_tok);
      qg_json_key(&j, "mb_per_token"), qg_json_num(&j, r->mb_per_tok);
      qg_json_key(&j, "floor_tokens_per_s"), qg_json_num(&j, r->floor_tok_s);
      qg_json_key(&j, "floor_flops_seconds_per_token"), qg_json_num(&j, r->floor_flops_s);
      qg_json_key(&j, "floor_bytes_seconds_per_token"), qg_json_num(&j, r->floor_bytes_s);
      qg_json_key(&j, "achieved_forward_tflops"), qg_json_num(&j, r->achieved_tflops);
      qg_json_obj_end(&j);
    }
    qg_json_arr_end(&j);
  }
  qg_json_obj_end(&j);
  qg_buf_byte(&jb, '\n');
  FILE *f = fopen(out, "wb");
  if (!f || fwrite(jb.p, 1, jb.n, f) != jb.n || fclose(f)) {
    fprintf(stderr, "bench_cuda_model: cannot write %s\n", out);
    return 1;
  }
  printf("wrote %s\n", out);
  qg_buf_free(&jb);
  return 0;
}
