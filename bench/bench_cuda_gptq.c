/* Whole-model GPTQ on the GPU for the contest's 9 x 512 baseline shape (vocab 1024, 8
 * heads, 4 KV heads, MLP 1024; random weights) with 128 x 1024 calibration tokens, split
 * into calibration forward, Hessians (device fp64 syrk, timed inside the tap with the
 * device synchronised around it) and the solve (GPTQ rowwise int6, blocksize 128, for
 * all 55 matrices: 9 x {c_q, c_k, c_v, proj, fc, mlp proj} + tok_emb). Prints a line
 * and writes JSON (argv[1], default bench_cuda_gptq.json). Skips visibly without a GPU.
 * Compare with bench/torch_gptq_reference.py run on the same GPU. Never fails on time. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/json.h"
#include "core/progress.h"
#include "kernels/cuda/cuda_device.h"
#include "quant/backend.h"
#include "quant/calibrate.h"
#include "quant/cuda/cuda_quant_bridge.h"
#include "quant/pipeline.h"

static uint64_t rng = 2024;
static float randf(void) {
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((rng >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
}

static int add_rand(qg_state *s, const char *name, int rows, int cols, float scale) {
  int64_t shape[2] = {rows, cols};
  qg_tensor *t;
  if (qg_state_add(s, name, QG_F32, cols ? 2 : 1, shape, &t)) return 1;
  float *p = t->data;
  for (int64_t i = 0; i < qg_tensor_numel(t); i++) p[i] = randf() * scale;
  return 0;
}

static int baseline_model(qg_state *s) {
  const int L = 9, d = 512, H = 8, KVH = 4, hidden = 1024, V = 1024, hd = d / H;
  char name[96];
  int e = 0;
  qg_state_init(s);
  e |= add_rand(s, "tok_emb.weight", V, d, 1.0f);
  e |= add_rand(s, "skip_weights", L / 2, d, 1.0f);
  static const char *mats[] = {"attn.c_q.weight", "attn.c_k.weight", "attn.c_v.weight",
                               "attn.proj.weight", "mlp.fc.weight", "mlp.proj.weight"};
  int rows[] = {d, KVH * hd, KVH * hd, d, hidden, d}, cols[] = {d, d, d, d, d, hidden};
  static const char *vecs[] = {"attn_scale", "mlp_scale", "attn.q_gain"};
  for (int b = 0; b < L; b++) {
    for (int k = 0; k < 6; k++) {
      snprintf(name, sizeof name, "blocks.%d.%s", b, mats[k]);
      e |= add_rand(s, name, rows[k], cols[k], 1.0f / sqrtf((float)cols[k]));
    }
    for (int k = 0; k < 3; k++) {
      snprintf(name, sizeof name, "blocks.%d.%s", b, vecs[k]);
      e |= add_rand(s, name, k == 2 ? H : d, 0, 1.0f);
    }
    snprintf(name, sizeof name, "blocks.%d.resid_mix", b);
    e |= add_rand(s, name, 2, d, 1.0f);
  }
  return e;
}

int main(int argc, char **argv) {
  const char *json_path = argc > 1 ? argv[1] : "bench_cuda_gptq.json";
  if (!qg_cuq_available()) {
    char why[256];
    qg_cuda_describe(why, sizeof why);
    printf("SKIP: bench_cuda_gptq needs a CUDA GPU (%s)\n", why);
    return 0;
  }
  const int nseq = 128, len = 1024;
  qg_state st;
  const qg_ops *ops;
  qg_gpt m;
  qg_gpt_options go = {0};
  qg_hessian_map hm;
  qg_hessian_map_init(&hm);
  int32_t *tok = malloc(sizeof *tok * (size_t)nseq * len);
  for (int64_t i = 0; i < (int64_t)nseq * len; i++) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    tok[i] = (int32_t)((rng >> 33) % 1024);
  }
  qg_status s = baseline_model(&st) ? qg_fail(QG_ERR_NOMEM, "out of memory") : QG_OK;
  if (!s) s = qg_ops_cuda(&ops);
  if (!s) s = qg_gpt_init(&m, &st, &go, ops);
  double split[2] = {0, 0}, t_total = 0, t_solve = 0;
  if (!s) { /* warm-up: one sequence through forward, tap and kernels */
    qg_hessian_map warm;
    qg_hessian_map_init(&warm);
    s = qg_calib_hessians(&m, tok, 1, len, 0, &warm);
    qg_hessian_map_free(&warm);
  }
  if (!s) {
    double t0 = qg_now();
    s = qg_calib_hessians(&m, tok, nseq, len, 0, &hm);
    t_total = qg_now() - t0;
  }
  /* the split: the same forward passes without the Hessian taps (the pass's batching: 8
   * sequences of 1024), so Hessians = calibration pass - forward */
  for (int i = 0; !s && i < nseq; i += 8) {
    double t0 = qg_now();
    s = qg_gpt_forward(&m, tok + (int64_t)i * len, nseq - i < 8 ? nseq - i : 8, len);
    if (!s) s = qg_cuq_sync();
    split[0] += qg_now() - t0;
  }
  split[1] = t_total - split[0];
  if (!s) qg_gpt_free(&m);
  qg_spec spec;
  qg_qmodel qm;
  memset(&qm, 0, sizeof qm);
  if (!s) s = qg_spec_parse_inline("*.weight: gptq bits=6 blocksize=128", &spec);
  if (!s) {
    qg_quantize_opts qo = {.hessians = &hm, .backend = qg_quant_backend_for(QG_BACKEND_CUDA)};
    double t0 = qg_now();
    s = qg_quantize_model(&st, &spec, &qo, &qm);
    t_solve = qg_now() - t0;
    qg_spec_free(&spec);
  }
  if (s) {
    fprintf(stderr, "bench_cuda_gptq: %s\n", qg_last_error());
    return 1;
  }
  double t_q = 0; /* the quantizer calls alone (the pipeline also dequantizes and scores) */
  int nmat = 0;
  for (int i = 0; i < qm.n; i++)
    if (!strcmp(qm.t[i].q.method, "gptq")) t_q += qm.t[i].seconds, nmat++;
  char dev[256];
  qg_cuda_describe(dev, sizeof dev);
  printf("9x512, %d x %d calibration tokens on %s\n", nseq, len, dev);
  printf("calibration forward %.3f s, Hessians %.3f s (pass %.3f s), GPTQ solve %.3f s for %d matrices "
         "(pipeline incl. metrics %.3f s); whole model %.3f s\n",
         split[0], split[1], t_total, t_q, nmat, t_solve, t_total + t_q);
  qg_buf b;
  qg_buf_init(&b);
  qg_json j;
  qg_json_init(&j, &b, 1);
  qg_json_obj_begin(&j);
  qg_json_key(&j, "bench"), qg_json_str(&j, "cuda_gptq");
  qg_json_key(&j, "device"), qg_json_str(&j, dev);
  qg_json_key(&j, "shape"), qg_json_str(&j, "9L d512 H8 KVH4 mlp1024 V1024, random weights");
  qg_json_key(&j, "calibration_tokens"), qg_json_int(&j, (int64_t)nseq * len);
  qg_json_key(&j, "spec"), qg_json_str(&j, "*.weight: gptq bits=6 blocksize=128 (rowwise grid, clip=pct)");
  qg_json_key(&j, "seconds_calibration_forward"), qg_json_num(&j, split[0]);
  qg_json_key(&j, "seconds_hessians"), qg_json_num(&j, split[1]);
  qg_json_key(&j, "seconds_solve"), qg_json_num(&j, t_q);
  qg_json_key(&j, "matrices"), qg_json_int(&j, nmat);
  qg_json_key(&j, "seconds_pipeline_with_metrics"), qg_json_num(&j, t_solve);
  qg_json_key(&j, "seconds_whole_model"), qg_json_num(&j, t_total + t_q);
  qg_json_obj_end(&j);
  qg_buf_byte(&b, '\n');
  if (!b.failed) {
    fwrite(b.p, 1, b.n, stdout);
    if (qg_write_file_atomic(json_path, b.p, b.n)) fprintf(stderr, "bench_cuda_gptq: %s\n", qg_last_error());
  }
  qg_buf_free(&b);
  qg_qmodel_free(&qm);
  qg_hessian_map_free(&hm);
  qg_state_free(&st);
  free(tok);
  return 0;
}
