#define _POSIX_C_SOURCE 200809L
#include "core/progress.h"

#include <time.h>

static qg_progress_sink g_sink;
static void *g_ctx;

void qg_progress_set_sink(qg_progress_sink sink, void *ctx) {
  g_sink = sink;
  g_ctx = ctx;
}

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

static void report(qg_progress *p, int64_t done, double now, int final) {
  double el = now - p->t0, rate = el > 0 ? (double)done / el : 0;
  double eta = rate > 0 && p->total > done ? (double)(p->total - done) / rate : 0;
  qg_progress_report r = {p->label, p->unit, done, p->total, rate, final ? el : eta, final};
  if (g_sink) g_sink(g_ctx, &r);
  p->printed = 1;
}

void qg_progress_update(qg_progress *p, int64_t done) {
  double now = qg_now();
  if (now - p->t0 < 2.0 || now - p->last < 1.0) return;
  p->last = now;
  report(p, done, now, 0);
}

void qg_progress_finish(qg_progress *p, int64_t done) {
  if (p->printed) report(p, done, qg_now(), 1);
}
