/* Encoder throughput: MB/s of text encoded line by line (as sp.encode per line), on one
 * thread and on two (the lines split in halves, each thread with its own context), each
 * from a cold word cache. Prints a table and a JSON line. Never fails on time.
 * usage: bench_tok TOKENIZER [TEXT] [--normalizer-from M.model]
 * (TEXT defaults to data/corpus/kjv.txt, from scripts/fetch-corpus.sh; compare with
 *  tests/reference/bench_spm.py TOKENIZER TEXT on the same machine) */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/file.h"
#include "tok/tok.h"

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

typedef struct {
  const qg_tok *t;
  const uint8_t *p, *end;
  size_t tokens;
  qg_status st;
} job;

static void *run(void *arg) {
  job *j = arg;
  qg_tok_ctx *c;
  j->st = qg_tok_ctx_new(j->t, &c);
  qg_tok_ids ids = {0};
  for (const uint8_t *p = j->p; p < j->end && !j->st;) {
    const uint8_t *nl = memchr(p, '\n', (size_t)(j->end - p));
    size_t n = nl ? (size_t)(nl - p) : (size_t)(j->end - p);
    ids.n = 0;
    j->st = qg_tok_encode(c, p, n, &ids);
    j->tokens += ids.n;
    p += n + 1;
  }
  qg_tok_ids_free(&ids);
  if (!j->st) qg_tok_ctx_free(c);
  return NULL;
}

/* seconds for encoding [p, end) with nt threads (best of reps) */
static double timed(const qg_tok *t, const uint8_t *p, size_t n, int nt, int reps, size_t *tokens) {
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    job j[2];
    const uint8_t *cut = p + n;
    if (nt == 2) { /* split at a line break near the middle */
      cut = p + n / 2;
      const uint8_t *nl = memchr(cut, '\n', (size_t)(p + n - cut));
      cut = nl ? nl + 1 : p + n;
    }
    j[0] = (job){t, p, cut, 0, QG_OK};
    j[1] = (job){t, cut, p + n, 0, QG_OK};
    double t0 = now();
    pthread_t th;
    if (nt == 2) pthread_create(&th, NULL, run, &j[1]);
    run(&j[0]);
    if (nt == 2) pthread_join(th, NULL);
    double el = now() - t0;
    if (j[0].st || j[1].st) {
      fprintf(stderr, "bench_tok: %s\n", qg_last_error());
      exit(1);
    }
    *tokens = j[0].tokens + (nt == 2 ? j[1].tokens : 0);
    if (el < best) best = el;
  }
  return best;
}

int main(int argc, char **argv) {
  const char *tokp = NULL, *text = QG_SOURCE_DIR "/data/corpus/kjv.txt", *nfrom = NULL;
  int pos = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--normalizer-from") && i + 1 < argc) nfrom = argv[++i];
    else if (pos++ == 0) tokp = argv[i];
    else text = argv[i];
  }
  if (!tokp) {
    fprintf(stderr, "usage: bench_tok TOKENIZER [TEXT] [--normalizer-from M.model]\n");
    return 2;
  }
  qg_tok t;
  if (qg_tok_load(&t, tokp, nfrom)) {
    fprintf(stderr, "bench_tok: %s\n", qg_last_error());
    return 2;
  }
  uint8_t *data;
  size_t n;
  if (qg_read_file(text, &data, &n, 0)) {
    fprintf(stderr, "bench_tok: %s (run scripts/fetch-corpus.sh, or name a text file)\n",
            qg_last_error());
    return 2;
  }
  size_t tok1, tok2;
  double s1 = timed(&t, data, n, 1, 3, &tok1), s2 = timed(&t, data, n, 2, 3, &tok2);
  printf("%-28s %10s %12s %10s\n", "encode (cold cache)", "MB/s", "tokens", "bytes/tok");
  printf("%-28s %10.2f %12zu %10.3f\n", "1 thread", (double)n / 1e6 / s1, tok1, (double)n / (double)tok1);
  printf("%-28s %10.2f %12zu %10.3f\n", "2 threads", (double)n / 1e6 / s2, tok2, (double)n / (double)tok2);
  printf("{\"bench\": \"tok_encode\", \"bytes\": %zu, \"mbps_1t\": %.3f, \"mbps_2t\": %.3f, "
         "\"tokens\": %zu}\n", n, (double)n / 1e6 / s1, (double)n / 1e6 / s2, tok1);
  free(data);
  qg_tok_free(&t);
  return 0;
}
