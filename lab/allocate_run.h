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

typedef struct {
  const char *model, *sensitivity;
  int64_t budget, code_bytes, granularity; /* granularity 0: 1 byte (exact) while the DP
                                            * table stays within 2^24 cells, else coarser */
  const char *objective;                   /* kld (default) | nll */
  const char *candidates;                  /* restrict to these (expanded list), or NULL */
  const char *out;                         /* spec YAML path, or NULL */
  /* verify */
  int verify;
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
  int64_t measured_tokens;
  double seconds;
} qg_allocate_result;

qg_status qg_allocate_run(const qg_allocate_opts *o, qg_allocate_result *r);
void qg_allocate_result_free(qg_allocate_result *r);
/* The result as one JSON object (schema_version 1, command "allocate"). */
void qg_allocate_json(const qg_allocate_opts *o, const qg_allocate_result *r, qg_json *j);

#endif
