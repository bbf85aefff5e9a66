/* The runner's allocate arms (`allocate: {budget, candidates, groups, base, sensitivity}`):
 * checked cheaply when the hypothesis file is read, solved when the experiment runs (a
 * table measured in place takes minutes, and reading a file must not), and cached under
 * the run's cache folder by every input that determines the choice. */
#ifndef QG_LAB_ALLOC_ARM_H
#define QG_LAB_ALLOC_ARM_H

#include <stdint.h>

#include "core/status.h"
#include "lab/hypothesis.h"
#include "lab/sensitivity.h"

/* One allocate arm's resolution. */
typedef struct {
  char *spec;                 /* the solver's choice, inline spec text */
  int contest_passthrough;
  double predicted_kld;       /* the table's base KLD + the chosen deltas */
  int64_t predicted_bytes;    /* the sum of the chosen marginal bytes */
  int repair_rounds;          /* over-budget re-solves */
  int64_t measured_bytes;     /* the delivered choice's real artifact bytes */
  int measured_in_place;      /* no table file: the sensitivity engine measured one */
  double seconds;             /* solving (and measuring) when it was computed */
  int reused;                 /* read from the cache */
} qg_lab_alloc;

/* The inputs' digests the cache key needs (the runner has them already). */
typedef struct {
  const char *model_sha, *tokenizer_sha, *val_sha, *calib_sha; /* calib_sha "" when none */
} qg_lab_alloc_ids;

/* Everything cheap, at parse time: the options, the table against the model and the solve
 * (with a table), or the engine's input checks (without). */
qg_status qg_lab_alloc_check(const qg_lab_hypothesis *h, const qg_lab_arm *a);
/* Solves (measuring in place where there is no table) unless cache_dir/alloc/KEY.tsv holds
 * this choice already; force recomputes. */
qg_status qg_lab_alloc_resolve(const qg_lab_hypothesis *h, const qg_lab_arm *a, const qg_lab_alloc_ids *ids,
                               const char *cache_dir, int force, qg_sens_progress cb, void *cb_ctx,
                               qg_lab_alloc *out);
void qg_lab_alloc_free(qg_lab_alloc *a);

#endif
