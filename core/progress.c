#define _POSIX_C_SOURCE 200809L
#include "core/progress.h"

#include <stdio.h>
#include <time.h>

double qg_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

void qg_progress_start(qg_progress *p, const char *label, const char *unit, int64_t total) {
  p->label = label;
  p->unit = unit;
  p->total = total;
  p->t0 = p->last = qg_now();
  p->printed = 0;
}

static void line(qg_progress *p, int64_t done, double now, const char *end) {
  double el = now - p->t0, rate = el > 0 ? (double)done / el : 0;
  double eta = rate > 0 && p->total > done ? (double)(p->total - done) / rate : 0;
  fprintf(stderr, "\r%s: %lld/%lld %s (%.1f%%), %.1f %s/s, %s %d:%02d%s", p->label, (long long)done,
          (long long)p->total, p->unit, p->total ? 100.0 * (double)done / (double)p->total : 100.0, rate, p->unit,
          *end ? "elapsed" : "ETA", (int)((*end ? el : eta) / 60), (int)(*end ? el : eta) % 60, end);
  fflush(stderr);
  p->printed = 1;
}

void qg_progress_update(qg_progress *p, int64_t done) {
  double now = qg_now();
  if (now - p->t0 < 2.0 || now - p->last < 1.0) return;
  p->last = now;
  line(p, done, now, "");
}

void qg_progress_finish(qg_progress *p, int64_t done) {
  if (p->printed) line(p, done, qg_now(), "\n");
}
