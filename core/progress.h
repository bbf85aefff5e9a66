/* Progress of long work: "label: done/total unit (pct), rate unit/s, ETA m:ss". The library
 * never writes it anywhere itself: each report goes to the sink the program installs (the
 * CLI prints it on stderr); without a sink progress is silent. Reports are made after the
 * first two seconds and at most once a second, so short runs and tests report nothing;
 * finish() reports a final line only if anything was reported. */
#ifndef QG_CORE_PROGRESS_H
#define QG_CORE_PROGRESS_H

#include <stdint.h>

typedef struct {
  const char *label, *unit;
  int64_t total;
  double t0, last;
  int printed;
} qg_progress;

/* One report: done of total units at rate units/s; seconds is the ETA, or the elapsed time
 * when final is set (the last report of this piece of work). */
typedef struct {
  const char *label, *unit;
  int64_t done, total;
  double rate, seconds;
  int final;
} qg_progress_report;

typedef void (*qg_progress_sink)(void *ctx, const qg_progress_report *r);
/* Installs the process-wide sink (NULL: silent). Not thread-safe; set it once at start. */
void qg_progress_set_sink(qg_progress_sink sink, void *ctx);

void qg_progress_start(qg_progress *p, const char *label, const char *unit, int64_t total);
void qg_progress_update(qg_progress *p, int64_t done);
void qg_progress_finish(qg_progress *p, int64_t done);
double qg_now(void); /* monotonic seconds */

#endif
