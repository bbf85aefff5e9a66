/* `quantgolf allocate` as a library call: a sensitivity table and a model in, the best
 * allocation under a byte budget out (per group the chosen candidate, predicted metric
 * and bytes, the Pareto frontier, the spec as YAML and inline text), and with verify the
 * allocation quantized for real (quant/job), its artifact's bytes and its KLD against the
 * float model measured (eval), so predicted and measured can be compared. Everything
 * cheap is checked before the expensive part (quantizing, evaluating). */
#ifndef QG_LAB_ALLOCATE_RUN_H
#define QG_LAB_ALLOCATE_RUN_H

#include <stdint.h>

#include "core/json.h"
#include "lab/allocate.h"
#include "lab/alloc_table.h"
#include "lab/sensitivity.h"

/* --iterate: at most this many rounds */
#define QG_ALLOC_ITER_MAX 8

/* One --iterate round: the table re-measured with the previous allocation as its base,
 * then re-solved. */
typedef struct {
  double predicted;           /* the new table's base metric + the chosen deltas */
  double base_metric;         /* measured metric of the previous allocation itself */
  int64_t predicted_bytes;
  int changed;                /* groups whose candidate changed */
  char *spec;                 /* the allocation after this round (inline) */
} qg_alloc_round;

typedef struct {
  const char *model, *sensitivity;
  int64_t budget, code_bytes, granularity; /* granularity 0: 1 byte (exact) while the DP
                                            * table stays within 2^24 cells, else coarser */
  const char *objective;                   /* kld (default) | nll */
  qg_compressor comp;                      /* the artifact's compressor: 0 = the table's (measured
                                            * in place: QG_COMP_DEFAULT); else the table's bytes
                                            * must have been measured with it */
  const char *candidates;                  /* restrict to these (expanded list), or NULL */
  const char *out;                         /* spec YAML path, or NULL */
  /* without a table (sensitivity NULL) the sensitivity engine measures one in place from
   * base, candidates (required) and groups (roles when NULL), on val/tokenizer/calib */
  const char *base, *groups;
  int iterate;                             /* up to this many re-measure + re-solve rounds */
  qg_sens_progress progress;
  void *progress_ctx;
  /* verify */
  int verify;
  int repair;  /* without verify: quantize the choice only to measure its real bytes and
                * repair an over-budget allocation as verify does (no evaluation) */
  const char *val, *tokenizer, *calib, *device, *verify_out; /* verify_out: the artifact path (NULL: temp, removed) */
  int seq_len, calib_seqs, calib_len;
  int64_t max_tokens;
} qg_allocate_opts;

typedef struct {
  qg_alloc_table t;
  qg_alloc_tproblem sp;
  qg_alloc_solution sol;
  char *spec_inline, *spec_yaml;
  int contest_passthrough;
  double predicted;      /* base metric + the chosen deltas (the objective's metric) */
  double base_metric;
  /* verify */
  int verified;
  int64_t measured_bytes;
  double measured_kld, measured_nll, measured_metric;
  double measured_kld_lo, measured_kld_hi; /* 95 %, block bootstrap over windows */
  /* over budget: the solver's bytes are a sum of per-tensor costs, the artifact one
   * compressed stream; each repair round re-solves with the budget reduced by the
   * measured excess (cumulative) and verifies again */
  qg_alloc_repair_log repair; /* measured = artifact + code bytes */
  int fits;              /* the delivered (last verified) artifact is within the budget */
  qg_alloc_round rounds[QG_ALLOC_ITER_MAX];
  double first_predicted;        /* the first solve's prediction (before any iterate round) */
  int64_t first_predicted_bytes;
  char **choice;                 /* per group of t: the candidate it runs, "base" for the original base */
  int n_rounds, converged;
  int measured_in_place; /* the first table came from the engine, not a file */
  int64_t measured_tokens;
  double seconds;
} qg_allocate_result;

qg_status qg_allocate_run(const qg_allocate_opts *o, qg_allocate_result *r);
/* The cheap part of qg_allocate_run alone: the options, and with a table file the table
 * against the model and the solve itself (a budget below the smallest total fails here);
 * without one the sensitivity engine's own input checks. Nothing is quantized. */
qg_status qg_allocate_check(const qg_allocate_opts *o);
void qg_allocate_result_free(qg_allocate_result *r);
/* The result as one JSON object (schema_version 1, command "allocate"). */
void qg_allocate_json(const qg_allocate_opts *o, const qg_allocate_result *r, qg_json *j);

#endif
