/* Benchmarks of the format layer: reading each real contest artifact (inflate + unzip +
 * unpickle + dequantize), the contest int8 export, safetensors write/read and shard
 * reads. Prints a table and writes JSON (argv[1], default bench_io.json). Never fails on
 * time; files absent here are skipped and say so. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"
#include "io/checkpoint.h"
#include "io/ptz.h"
#include "io/safetensors.h"
#include "io/shards.h"
#include "io/torchfile.h"
#include "quant/artifact.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
  const char *name;
  double best_s, median_s;
  double bytes; /* bytes processed per run, for a throughput figure */
  int reps;
} result;

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Runs fn reps times; records best and median wall time. */
static int timeit(result *r, int reps, int (*fn)(void *), void *arg) {
  double t[64];
  if (reps > 64) reps = 64;
  for (int i = 0; i < reps; i++) {
    double t0 = now();
    if (fn(arg) != 0) return -1;
    t[i] = now() - t0;
  }
  qsort(t, (size_t)reps, sizeof *t, cmpd);
  r->best_s = t[0];
  r->median_s = t[reps / 2];
  r->reps = reps;
  return 0;
}

static const char *contest(const char *name) {
  static char p[4096];
  snprintf(p, sizeof p, "%s/../shared/contest/%s", QG_SOURCE_DIR, name);
  return access(p, R_OK) == 0 ? p : NULL;
}

static int load_ckpt(void *arg) {
  qg_state s;
  if (qg_checkpoint_load(arg, &s, NULL)) return -1;
  qg_state_free(&s);
  return 0;
}

static int export_int8(void *arg) {
  qg_int8_artifact a;
  if (qg_int8_quantize(arg, &a)) return -1;
  uint8_t *blob;
  size_t n;
  qg_status s = qg_ptz_encode(&a, &blob, &n, NULL, NULL);
  qg_int8_artifact_free(&a);
  if (s) return -1;
  free(blob);
  return 0;
}

typedef struct {
  const char *path;
  const qg_state *s;
} st_arg;

static int st_write(void *arg) {
  st_arg *a = arg;
  return qg_safetensors_write(a->path, a->s) ? -1 : 0;
}

static int st_read(void *arg) {
  qg_state s;
  if (qg_safetensors_read(((st_arg *)arg)->path, &s)) return -1;
  qg_state_free(&s);
  return 0;
}

static int shard_read(void *arg) {
  qg_shards s;
  if (qg_shards_open(arg, &s)) return -1;
  int64_t n = qg_shards_count(&s);
  uint16_t *buf = malloc(1 << 21);
  uint64_t sum = 0;
  for (int64_t i = 0; i < n; i += 1 << 20) {
    int64_t k = n - i < (1 << 20) ? n - i : (1 << 20);
    if (qg_shards_read(&s, i, k, buf)) {
      free(buf);
      qg_shards_close(&s);
      return -1;
    }
    sum += buf[0];
  }
  free(buf);
  qg_shards_close(&s);
  return sum == 0xffffffffffffffffull; /* keep the loop from being optimised away */
}

int main(int argc, char **argv) {
  const char *json_path = argc > 1 ? argv[1] : "bench_io.json";
  result res[16];
  int nres = 0;
  const char *arts[] = {"baseline7L384d_SamTruss_c839523.int8.ptz", "recur6x2L512d_int6qat_MontySteele_dc69b08.int8.ptz",
                        "tiny3L128d_nolanvild_3c063e5.int8.ptz", "tiny3L128d_nolanvild_3c063e5.pt"};
  for (int i = 0; i < 4; i++) {
    const char *p = contest(arts[i]);
    if (!p) {
      fprintf(stderr, "bench_io: skip %s (../shared/contest absent)\n", arts[i]);
      continue;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s", p);
    result *r = &res[nres];
    r->name = arts[i];
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    r->bytes = (double)ftell(f);
    fclose(f);
    if (timeit(r, 5, load_ckpt, path) == 0) nres++;
  }
  /* the contest int8 export of a 9x512-shaped random state dict */
  qg_state s;
  qg_state_init(&s);
  uint64_t rng = 1;
  const char *roles[] = {"attn.c_q", "attn.c_k", "attn.c_v", "attn.proj", "mlp.fc", "mlp.proj"};
  int64_t shapes[6][2] = {{512, 512}, {256, 512}, {256, 512}, {512, 512}, {1024, 512}, {512, 1024}};
  for (int l = 0; l < 9; l++)
    for (int k = 0; k < 6; k++) {
      char name[64];
      snprintf(name, sizeof name, "blocks.%d.%s.weight", l, roles[k]);
      qg_tensor *t;
      qg_state_add(&s, name, QG_F32, 2, shapes[k], &t);
      float *w = t->data;
      for (int64_t i = 0; i < shapes[k][0] * shapes[k][1]; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        w[i] = ((float)(rng >> 40) / 16777216.0f - 0.5f) * 0.1f;
      }
    }
  int64_t emb[2] = {1024, 512};
  qg_tensor *t;
  qg_state_add(&s, "tok_emb.weight", QG_F32, 2, emb, &t);
  res[nres] = (result){.name = "export_int8_9x512", .bytes = (double)qg_state_nbytes(&s)};
  if (timeit(&res[nres], 3, export_int8, &s) == 0) nres++;
  char tmpdir[] = "/tmp/qgbench.XXXXXX";
  if (mkdtemp(tmpdir)) {
    char stp[256], shp[256];
    snprintf(stp, sizeof stp, "%s/m.safetensors", tmpdir);
    st_arg a = {stp, &s};
    res[nres] = (result){.name = "safetensors_write_9x512", .bytes = (double)qg_state_nbytes(&s)};
    if (timeit(&res[nres], 5, st_write, &a) == 0) nres++;
    res[nres] = (result){.name = "safetensors_read_9x512", .bytes = (double)qg_state_nbytes(&s)};
    if (timeit(&res[nres], 5, st_read, &a) == 0) nres++;
    snprintf(shp, sizeof shp, "%s/shard.bin", tmpdir);
    size_t ntok = 50u << 20;
    uint16_t *tok = malloc(ntok * 2);
    for (size_t i = 0; i < ntok; i++) tok[i] = (uint16_t)(i % 1024);
    if (qg_shard_write(shp, tok, ntok) == 0) {
      res[nres] = (result){.name = "shard_read_50M_tokens", .bytes = (double)ntok * 2};
      if (timeit(&res[nres], 5, shard_read, shp) == 0) nres++;
    }
    free(tok);
    unlink(stp);
    unlink(shp);
    rmdir(tmpdir);
  }
  qg_state_free(&s);

  qg_buf b;
  qg_buf_init(&b);
  qg_json j;
  qg_json_init(&j, &b, 1);
  qg_json_obj_begin(&j);
  qg_json_key(&j, "benchmark");
  qg_json_str(&j, "bench_io");
  qg_json_key(&j, "results");
  qg_json_arr_begin(&j);
  printf("%-52s %10s %10s %10s\n", "case", "best ms", "median ms", "MB/s");
  for (int i = 0; i < nres; i++) {
    double mbs = res[i].bytes / res[i].best_s / 1e6;
    printf("%-52s %10.2f %10.2f %10.1f\n", res[i].name, res[i].best_s * 1e3, res[i].median_s * 1e3, mbs);
    qg_json_obj_begin(&j);
    qg_json_key(&j, "case");
    qg_json_str(&j, res[i].name);
    qg_json_key(&j, "best_ms");
    qg_json_num(&j, res[i].best_s * 1e3);
    qg_json_key(&j, "median_ms");
    qg_json_num(&j, res[i].median_s * 1e3);
    qg_json_key(&j, "reps");
    qg_json_int(&j, res[i].reps);
    qg_json_key(&j, "mb_per_s");
    qg_json_num(&j, mbs);
    qg_json_obj_end(&j);
  }
  qg_json_arr_end(&j);
  qg_json_obj_end(&j);
  qg_buf_byte(&b, '\n');
  FILE *f = fopen(json_path, "wb");
  if (f) {
    fwrite(b.p, 1, b.n, f);
    fclose(f);
    fprintf(stderr, "bench_io: wrote %s\n", json_path);
  }
  qg_buf_free(&b);
  return 0;
}
