/* bench_train: CPU training throughput (tokens/s, forward + backward + Muon/Adam) for a
 * small contest-shaped model; and, where a CUDA GPU is present, the GPU step time of the
 * 9x512 baseline at 524,288 tokens per step (seq 1024, gradient accumulation over 8
 * micro-batches of 64 sequences), fp32 and bf16: forward + backward alone (the CUDA
 * backward kernels), and the full device training step of `quantgolf train --device cuda`
 * (token upload, forward, backward, Muon with Newton-Schulz on cuBLAS, Adam, everything
 * resident on the GPU; qg_trainer_step waits for the GPU before it returns). The
 * difference of the two is the optimizers' share. bench/torch_train_reference.py times
 * the contest's step (torch.compile) for the same shape. Prints a table and writes JSON
 * (argv[1], default bench_train.json). Figures only; without a GPU the GPU section says
 * so. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "core/json.h"
#include "core/progress.h"
#include "core/threadpool.h"
#include "io/shards.h"
#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda_precision.h"
#include "train/train.h"

typedef struct {
  const char *name;
  int layers, dim, heads, kv, seq, batch_tokens;
} shape;

/* ---- GPU: forward + backward of the 9x512 baseline, 524,288 tokens per step ------------ */

typedef struct {
  int ran;
  char why[256];
  double fb_s[2];   /* forward + backward of one whole step, fp32 and bf16 matmuls */
  double step_s[2]; /* the full device training step (qg_trainer_step), fp32 and bf16 */
  double loss[2];
} gpu_result;

static uint64_t grng = 99;
static float gurand(void) {
  grng = grng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((double)(grng >> 40) / 16777216.0 * 2.0 - 1.0);
}

#define GPU_SEQ 1024
#define GPU_STEP_TOKENS 524288
#define GPU_ACCUM 8

static qg_status gpu_case(const qg_ops *o, const qg_gpt_config *mc, const qg_gpt_layout *lay, const float *w0,
                          const int32_t *x, const int32_t *y, int steps, double *sec, double *loss, float *g_host) {
  float *w = NULL, *g = NULL, *zero = NULL;
  qg_gpt m = {0}, gm = {0};
  qg_gpt_train_store st = {0};
  size_t bytes = sizeof(float) * (size_t)lay->total;
  int B = GPU_STEP_TOKENS / GPU_ACCUM / GPU_SEQ;
  qg_status s = o->alloc(o, (void **)&w, bytes);
  if (!s) s = o->alloc(o, (void **)&g, bytes);
  if (!s) s = o->upload(o, w, w0, bytes);
  if (!s && !(zero = calloc(1, bytes))) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  if (!s) s = qg_gpt_bind(&m, mc, lay, w, o);
  if (!s) s = qg_gpt_bind(&gm, mc, lay, g, o);
  double t0 = 0;
  for (int it = 0; !s && it <= steps; it++) { /* step 0 warms up (allocations, cuBLAS plans) */
    if (it == 1) t0 = qg_now();
    s = o->upload(o, g, zero, bytes);
    double l = 0;
    for (int k = 0; !s && k < GPU_ACCUM; k++) {
      int64_t off = (int64_t)k * B * GPU_SEQ;
      s = qg_gpt_forward_train(&m, &st, x + off, y + off, B, GPU_SEQ, 1.0f / GPU_ACCUM, &l);
      if (!s) s = qg_gpt_backward(&m, &st, &gm);
    }
    *loss = l;
    if (!s && it == steps) s = o->download(o, g_host, g, bytes); /* also waits for the GPU */
    else if (!s) s = o->download(o, zero, g, sizeof(float)); /* a sync point; zero[0] restored below */
    if (zero) zero[0] = 0.0f;
  }
  *sec = steps > 0 ? (qg_now() - t0) / steps : 0;
  qg_gpt_train_store_free(&st);
  if (m.blocks) qg_gpt_unbind(&m);
  if (gm.blocks) qg_gpt_unbind(&gm);
  if (w) o->free(o, w);
  if (g) o->free(o, g);
  free(zero);
  return s;
}

/* The full step through the trainer, on the bench's shard (1M tokens; the loader wraps). */
static qg_status gpu_step(const char *shard, qg_precision prec, int steps, double *sec) {
  qg_train_config c;
  qg_train_config_defaults(&c);
  c.train_glob = shard;
  c.seq_len = GPU_SEQ, c.batch_tokens = GPU_STEP_TOKENS, c.grad_accum = GPU_ACCUM;
  c.iterations = 100000, c.warmup_steps = 0; /* lr_mul 1 throughout */
  c.device = "cuda", c.precision = prec;
  qg_trainer t;
  QG_TRY(qg_trainer_init(&t, &c, NULL, NULL));
  qg_train_info info;
  qg_status s = qg_trainer_step(&t, &info); /* first touch: allocations, cuBLAS plans */
  double t0 = qg_now();
  for (int i = 0; !s && i < steps; i++) s = qg_trainer_step(&t, &info);
  *sec = steps > 0 ? (qg_now() - t0) / steps : 0;
  qg_trainer_free(&t);
  return s;
}

static void gpu_bench(gpu_result *r, const char *shard) {
  memset(r, 0, sizeof *r);
  if (qg_cuda_device_count() == 0) {
    qg_cuda_describe(r->why, sizeof r->why);
    return;
  }
  const qg_ops *ops[2];
  if (qg_ops_cuda(&ops[0]) || qg_ops_cuda_bf16(&ops[1])) {
    snprintf(r->why, sizeof r->why, "%s", qg_last_error());
    return;
  }
  qg_gpt_config mc;
  qg_gpt_layout lay;
  if (qg_gpt_config_make(1024, 9, 512, 8, 4, 1024, 1, 2.0f, &mc) || qg_gpt_layout_make(&mc, &lay)) {
    snprintf(r->why, sizeof r->why, "%s", qg_last_error());
    return;
  }
  float *w0 = malloc(sizeof(float) * (size_t)lay.total), *gh = malloc(sizeof(float) * (size_t)lay.total);
  int32_t *x = malloc(sizeof(int32_t) * (GPU_STEP_TOKENS + 1));
  for (int64_t i = 0; w0 && i < lay.total; i++) w0[i] = 0.05f * gurand();
  for (int i = 0; x && i <= GPU_STEP_TOKENS; i++) x[i] = (int32_t)((gurand() + 1.0f) * 511.0f);
  qg_status s = w0 && gh && x ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int p = 0; !s && p < 2; p++) s = gpu_case(ops[p], &mc, &lay, w0, x, x + 1, 5, &r->fb_s[p], &r->loss[p], gh);
  for (int p = 0; !s && p < 2; p++) s = gpu_step(shard, p ? QG_PRECISION_BF16 : QG_PRECISION_FP32, 5, &r->step_s[p]);
  if (s) snprintf(r->why, sizeof r->why, "%s", qg_last_error());
  else r->ran = 1;
  free(w0), free(gh), free(x);
  qg_gpt_layout_free(&lay);
}

int main(int argc, char **argv) {
  const char *out = argc > 1 ? argv[1] : "bench_train.json";
  char shard[] = "/tmp/bench_train_XXXXXX";
  int fd = mkstemp(shard);
  if (fd < 0) return 1;
  close(fd);
  int64_t n = 1 << 20;
  uint16_t *tok = malloc(sizeof *tok * (size_t)n);
  uint64_t r = 1;
  for (int64_t i = 0; i < n; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    tok[i] = (uint16_t)((r >> 33) % 1024);
  }
  if (qg_shard_write(shard, tok, (size_t)n)) return 1;
  free(tok);
  shape shapes[] = {{"4L d256 seq256 (quickstart-sized)", 4, 256, 4, 2, 256, 4096},
                    {"9L d512 seq256 (contest baseline shape, 2k tokens/step)", 9, 512, 8, 4, 256, 2048}};
  int ns = sizeof shapes / sizeof shapes[0];
  double tps[4] = {0}, step_s[4] = {0};
  int64_t params[4] = {0};
  printf("bench_train: %d threads\n", qg_threads());
  for (int i = 0; i < ns; i++) {
    qg_train_config c;
    qg_train_config_defaults(&c);
    c.train_glob = shard;
    c.layers = shapes[i].layers, c.dim = shapes[i].dim, c.heads = shapes[i].heads, c.kv_heads = shapes[i].kv;
    c.seq_len = shapes[i].seq, c.batch_tokens = shapes[i].batch_tokens, c.grad_accum = 1;
    c.iterations = 1000, c.warmup_steps = 0;
    qg_trainer t;
    if (qg_trainer_init(&t, &c, NULL, NULL)) {
      fprintf(stderr, "bench_train: %s\n", qg_last_error());
      return 1;
    }
    qg_train_info info;
    qg_trainer_step(&t, &info); /* first touch of every buffer */
    int steps = 0;
    double t0 = qg_now();
    while (steps < 2 || (qg_now() - t0 < 5.0 && steps < 50)) {
      qg_trainer_step(&t, &info);
      steps++;
    }
    step_s[i] = (qg_now() - t0) / steps;
    tps[i] = c.batch_tokens / step_s[i];
    params[i] = t.lay.total;
    printf("  %-52s %9lld params  %8.0f tokens/s  %7.1f ms/step\n", shapes[i].name, (long long)params[i], tps[i],
           1000 * step_s[i]);
    qg_trainer_free(&t);
  }
  gpu_result gr;
  gpu_bench(&gr, shard);
  unlink(shard);
  if (gr.ran) {
    printf("  GPU 9L d512 seq1024, 524,288 tokens/step (8 x 64 seqs): fwd+bwd fp32 %.1f ms/step, bf16 %.1f ms/step; "
           "full device step fp32 %.1f ms, bf16 %.1f ms (%.0f tokens/s)\n", 1000 * gr.fb_s[0], 1000 * gr.fb_s[1],
           1000 * gr.step_s[0], 1000 * gr.step_s[1], gr.step_s[1] > 0 ? GPU_STEP_TOKENS / gr.step_s[1] : 0);
  } else {
    printf("  GPU: skipped (%s)\n", gr.why);
  }
  qg_buf b;
  qg_buf_init(&b);
  qg_json j;
  qg_json_init(&j, &b, 1);
  qg_json_obj_begin(&j);
  qg_json_key(&j, "benchmark"), qg_json_str(&j, "bench_train");
  qg_json_key(&j, "device"), qg_json_str(&j, "cpu");
  qg_json_key(&j, "threads"), qg_json_int(&j, qg_threads());
  qg_json_key(&j, "results");
  qg_json_arr_begin(&j);
  for (int i = 0; i < ns; i++) {
    qg_json_obj_begin(&j);
    qg_json_key(&j, "case"), qg_json_str(&j, shapes[i].name);
    qg_json_key(&j, "params"), qg_json_int(&j, params[i]);
    qg_json_key(&j, "tokens_per_step"), qg_json_int(&j, shapes[i].batch_tokens);
    qg_json_key(&j, "tokens_per_s"), qg_json_num(&j, tps[i]);
    qg_json_key(&j, "seconds_per_step"), qg_json_num(&j, step_s[i]);
    qg_json_obj_end(&j);
  }
  qg_json_arr_end(&j);
  qg_json_key(&j, "gpu");
  qg_json_obj_begin(&j);
  if (gr.ran) {
    qg_json_key(&j, "case"), qg_json_str(&j, "9L d512 8H/4KV seq1024, 524288 tokens/step, grad_accum 8 (64 seqs)");
    qg_json_key(&j, "fwd_bwd_seconds_per_step_fp32"), qg_json_num(&j, gr.fb_s[0]);
    qg_json_key(&j, "fwd_bwd_seconds_per_step_bf16"), qg_json_num(&j, gr.fb_s[1]);
    qg_json_key(&j, "train_step_seconds_fp32"), qg_json_num(&j, gr.step_s[0]);
    qg_json_key(&j, "train_step_seconds_bf16"), qg_json_num(&j, gr.step_s[1]);
    qg_json_key(&j, "tokens_per_s_bf16_fwd_bwd"), qg_json_num(&j, gr.fb_s[1] > 0 ? GPU_STEP_TOKENS / gr.fb_s[1] : 0);
    qg_json_key(&j, "tokens_per_s_bf16_train_step"), qg_json_num(&j, gr.step_s[1] > 0 ? GPU_STEP_TOKENS / gr.step_s[1] : 0);
  } else {
    qg_json_key(&j, "skipped"), qg_json_str(&j, gr.why);
  }
  qg_json_obj_end(&j);
  qg_json_key(&j, "note"), qg_json_str(&j, "CPU backend: fp32 OpenBLAS, Newton-Schulz in fp32. GPU: forward + backward "
                                          "through the CUDA backward kernels, and the full device training step "
                                          "(quantgolf train --device cuda: Muon with cuBLAS Newton-Schulz, Adam, state "
                                          "resident on the GPU; bf16 = the contest's mixed precision). Compare with "
                                          "bench/torch_train_reference.py on the same GPU.");
  qg_json_obj_end(&j);
  qg_buf_byte(&b, '\n');
  qg_status s = qg_write_file_atomic(out, b.p, b.n);
  qg_buf_free(&b);
  if (s) {
    fprintf(stderr, "bench_train: %s\n", qg_last_error());
    return 1;
  }
  printf("wrote %s\n", out);
  return 0;
}
