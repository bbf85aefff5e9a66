/* The rans writer's cost in the loops that write one model again and again (the runner's
 * fit values, allocate's re-solves, sensitivity's byte costs): a contest checkpoint
 * quantized once per spec, then written to .qgz (rans) with the compressor memo off, cold,
 * warm (the same codes again) and after one role's bits changed (a fit step), each case's
 * write timed on its own (best and median of reps). Every file of a spec must be the same
 * bytes whatever the memo did: the bench checks it and fails otherwise. Threads:
 * QG_THREADS (default all cores). Prints a table, writes JSON (argv[1], default
 * bench_qgz_write.json); argv[2]: a checkpoint instead of 7L384d; argv[3]: reps (3). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/json.h"
#include "core/threadpool.h"
#include "io/compress_memo.h"
#include "io/qgz.h"
#include "quant/job.h"
#include "quant/spec.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmpd(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Quantizes model by spec (no file: dry runs write nothing, so the job writes to a
 * scratch path and the tensors are kept). */
static int quantize(const char *model, const char *spec_text, const char *scratch, qg_qjob_result *r) {
  qg_spec sp;
  if (qg_spec_parse_inline(spec_text, &sp)) return fprintf(stderr, "bench_qgz_write: %s\n", qg_last_error()), -1;
  qg_qjob_opts o = {.model = model, .spec = &sp, .out = scratch, .compressor = QG_COMP_NONE, .layout = QG_LAYOUT_PACKED};
  memset(r, 0, sizeof *r);
  qg_status s = qg_quantize_job(&o, r);
  qg_spec_free(&sp);
  if (s) return fprintf(stderr, "bench_qgz_write: %s\n", qg_last_error()), -1;
  return 0;
}

typedef struct {
  char name[96];
  double best_s, median_s;
  size_t bytes;
  int reps;
  qg_memo_stats memo; /* after the case's last write */
} result;

/* Writes q reps times; mode 0: memo off, 1: cold (emptied before each write), 2: warm. */
static int time_write(const qg_qtensor *const *q, int n, int mode, int reps, result *r, uint8_t **keep, size_t *keep_n) {
  double t[16];
  if (reps > 16) reps = 16;
  for (int i = 0; i < reps; i++) {
    if (mode == 0) qg_memo_set_limit(0);
    else qg_memo_set_limit(QG_MEMO_DEFAULT_LIMIT);
    if (mode == 1) qg_memo_clear();
    uint8_t *f;
    size_t fn;
    qg_qgz_info info;
    double t0 = now();
    if (qg_qgz_encode(q, n, QG_COMP_RANS, QG_LAYOUT_PACKED, &f, &fn, &info))
      return fprintf(stderr, "bench_qgz_write: %s\n", qg_last_error()), -1;
    t[i] = now() - t0;
    if (*keep && (fn != *keep_n || memcmp(f, *keep, fn)))
      return fprintf(stderr, "bench_qgz_write: %s: the file differs from the memo-off file\n", r->name), free(f), -1;
    if (!*keep) *keep = f, *keep_n = fn;
    else free(f);
    r->bytes = fn;
  }
  qsort(t, (size_t)reps, sizeof *t, cmpd);
  r->best_s = t[0], r->median_s = t[reps / 2], r->reps = reps, r->memo = qg_memo_get_stats();
  return 0;
}

int main(int argc, char **argv) {
  const char *json_path = argc > 1 ? argv[1] : "bench_qgz_write.json";
  static char def[4096];
  snprintf(def, sizeof def, "%s/../shared/contest/baseline7L384d_SamTruss_c839523.int8.ptz", QG_SOURCE_DIR);
  const char *model = argc > 2 ? argv[2] : def;
  int reps = argc > 3 ? atoi(argv[3]) : 3;
  if (access(model, R_OK) != 0) {
    printf("SKIP: bench_qgz_write: %s is not here (../shared/contest)\n", model);
    return 0;
  }
  char scratch[] = "/tmp/qgbench_write.XXXXXX";
  int fd = mkstemp(scratch);
  if (fd < 0) return perror("mkstemp"), 1;
  close(fd);
  const char *base = "tok_emb.weight: rowwise bits=8; blocks.*: rowwise bits=6";
  const char *step = "tok_emb.weight: rowwise bits=7; blocks.*: rowwise bits=6"; /* a fit step */
  qg_qjob_result ra, rb;
  if (quantize(model, base, scratch, &ra) || quantize(model, step, scratch, &rb)) return unlink(scratch), 1;
  unlink(scratch);
  const qg_qtensor **qa = malloc(sizeof *qa * (size_t)ra.qm.n), **qb = malloc(sizeof *qb * (size_t)rb.qm.n);
  for (int i = 0; i < ra.qm.n; i++) qa[i] = &ra.qm.t[i].q;
  for (int i = 0; i < rb.qm.n; i++) qb[i] = &rb.qm.t[i].q;
  result res[5] = {{.name = "write, memo off"},
                   {.name = "write, memo cold"},
                   {.name = "write again, memo warm"},
                   {.name = "write after tok_emb 8 -> 7 bits, memo off"},
                   {.name = "write after tok_emb 8 -> 7 bits, memo warm"}};
  uint8_t *fa = NULL, *fb = NULL;
  size_t na = 0, nb = 0;
  int bad = time_write(qa, ra.qm.n, 0, reps, &res[0], &fa, &na) || time_write(qa, ra.qm.n, 1, reps, &res[1], &fa, &na) ||
            time_write(qa, ra.qm.n, 2, reps, &res[2], &fa, &na) || time_write(qb, rb.qm.n, 0, 1, &res[3], &fb, &nb);
  /* the fit step proper: base written (warm), then the step once per rep after a fresh base */
  if (!bad) {
    double t[16];
    int r = reps > 16 ? 16 : reps;
    for (int i = 0; i < r && !bad; i++) {
      qg_memo_set_limit(QG_MEMO_DEFAULT_LIMIT);
      qg_memo_clear();
      uint8_t *f, *g;
      size_t fn, gn;
      qg_qgz_info info;
      bad = qg_qgz_encode(qa, ra.qm.n, QG_COMP_RANS, QG_LAYOUT_PACKED, &f, &fn, &info) != QG_OK;
      double t0 = now();
      bad = bad || qg_qgz_encode(qb, rb.qm.n, QG_COMP_RANS, QG_LAYOUT_PACKED, &g, &gn, &info) != QG_OK;
      t[i] = now() - t0;
      if (!bad && (gn != nb || memcmp(g, fb, gn))) fprintf(stderr, "bench_qgz_write: the step's file differs\n"), bad = 1;
      if (!bad) free(f), free(g), res[4].bytes = gn;
    }
    qsort(t, (size_t)r, sizeof *t, cmpd);
    res[4].best_s = t[0], res[4].median_s = t[r / 2], res[4].reps = r, res[4].memo = qg_memo_get_stats();
  }
  if (bad) return fprintf(stderr, "bench_qgz_write: %s\n", qg_last_error()), 1;
  qg_buf b;
  qg_buf_init(&b);
  qg_json j;
  qg_json_init(&j, &b, 1);
  qg_json_obj_begin(&j);
  qg_json_key(&j, "benchmark"), qg_json_str(&j, "bench_qgz_write");
  qg_json_key(&j, "model"), qg_json_str(&j, model);
  qg_json_key(&j, "threads"), qg_json_int(&j, qg_threads());
  qg_json_key(&j, "results");
  qg_json_arr_begin(&j);
  printf("%s, %d threads\n%-46s %10s %10s %10s %8s %8s\n", model, qg_threads(), "case", "best s", "median s", "bytes",
         "hits", "misses");
  for (int i = 0; i < 5; i++) {
    printf("%-46s %10.2f %10.2f %10zu %8llu %8llu\n", res[i].name, res[i].best_s, res[i].median_s, res[i].bytes,
           (unsigned long long)res[i].memo.hits, (unsigned long long)res[i].memo.misses);
    qg_json_obj_begin(&j);
    qg_json_key(&j, "case"), qg_json_str(&j, res[i].name);
    qg_json_key(&j, "best_s"), qg_json_num(&j, res[i].best_s);
    qg_json_key(&j, "median_s"), qg_json_num(&j, res[i].median_s);
    qg_json_key(&j, "reps"), qg_json_int(&j, res[i].reps);
    qg_json_key(&j, "file_bytes"), qg_json_int(&j, (int64_t)res[i].bytes);
    qg_json_obj_end(&j);
  }
  qg_json_arr_end(&j);
  qg_json_obj_end(&j);
  qg_buf_byte(&b, '\n');
  FILE *f = fopen(json_path, "wb");
  if (f) fwrite(b.p, 1, b.n, f), fclose(f), fprintf(stderr, "bench_qgz_write: wrote %s\n", json_path);
  qg_buf_free(&b);
  free(fa), free(fb), free(qa), free(qb);
  qg_qjob_result_free(&ra), qg_qjob_result_free(&rb);
  return 0;
}
