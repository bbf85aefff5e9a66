/* Progress on stderr for long work: "label: done/total unit (pct), rate unit/s, ETA m:ss".
 * Silent for the first two seconds and at most one line per second after, so short runs
 * and tests print nothing; finish() prints a final line only if anything was printed. */
#ifndef QG_CORE_PROGRESS_H
#define QG_CORE_PROGRESS_H

#include <stdint.h>

typedef struct {
  const char *label, *unit;
  int64_t total;
  double t0, last;
  int printed;
} qg_progress;

void qg_progress_start(qg_progress *p, const char *label, const char *unit, int64_t total);
void qg_progress_update(qg_progress *p, int64_t done);
void qg_progress_finish(qg_progress *p, int64_t done);
double qg_now(void); /* monotonic seconds */

#endif
