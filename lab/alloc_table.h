/* The sensitivity table (sensitivity.json, written by `quantgolf sensitivity`, read by
 * `quantgolf allocate` and the runner's allocate arms) and what allocation makes of it:
 * the knapsack instance (every group's base choice plus its measured cells), the check
 * that the table applies to a model, and the chosen allocation as a spec.
 *
 * Reading is strict: every key the format defines must be present with its type (extra
 * keys are allowed: the format is extended only by adding keys), group and candidate
 * names unique, every cell naming a listed group and candidate once, bytes_saved equal
 * to base_bytes - bytes, one base_bytes per group, finite deltas, ci95 lo <= hi. Each
 * error is one line naming the file, the byte offset and the key. */
#ifndef QG_LAB_ALLOC_TABLE_H
#define QG_LAB_ALLOC_TABLE_H

#include <stdint.h>

#include "core/tensor.h"
#include "io/qgz.h"
#include "lab/allocate.h"

typedef struct {
  char *name;
  char **tensors;
  int n_tensors;
  int64_t base_bytes;      /* from its cells (-1 when it has none) */
} qg_alloc_tgroup;

typedef struct {
  int group, cand;
  double delta_kld, ci_lo, ci_hi, delta_nll, roi;
  int64_t bytes, base_bytes, bytes_saved;
} qg_alloc_tcell;

typedef struct {
  char *path;
  char *model_path, model_sha[65];
  int64_t tokens, windows;
  char *metric, *base;
  double base_kld, base_nll;
  int64_t base_artifact_bytes, fixed_bytes;
  qg_compressor comp;      /* what the bytes were measured with ("compressor"; brotli when
                            * absent: the default of the tables written before the key) */
  qg_alloc_tgroup *groups;
  int n_groups;
  char **cands;
  int n_cands;
  qg_alloc_tcell *cells;
  int n_cells;
} qg_alloc_table;

qg_status qg_alloc_table_load(const char *path, qg_alloc_table *t);
qg_status qg_alloc_table_parse(const char *text, size_t len, const char *name, qg_alloc_table *t);
void qg_alloc_table_free(qg_alloc_table *t);

/* The table against a model's state (and its file's SHA-256, when not NULL): the same
 * model, every group's tensors present and in no other group, the base spec and every
 * cell's candidate applicable to its group's tensors (planned, not quantized). */
qg_status qg_alloc_table_check(const qg_alloc_table *t, const qg_state *st, const char *model_sha);

/* objective: "kld" or "nll". only: when not NULL, a list of n_only candidate texts the
 * allocation may use (each must be in the table). code_bytes are added to fixed bytes.
 * Option 0 of each group is its base choice (delta 0, base bytes); option k > 0 is cell
 * opt_cell[g][k]. */
typedef struct {
  qg_alloc_problem p;
  int **opt_cell;          /* per group, per option: the cell index, -1 for the base */
} qg_alloc_tproblem;
qg_status qg_alloc_tproblem_make(const qg_alloc_table *t, const char *objective, const char *const *only, int n_only,
                               int64_t code_bytes, qg_alloc_tproblem *out);
void qg_alloc_tproblem_free(qg_alloc_tproblem *sp);

/* The chosen allocation as spec text: per group away from the base, one rule per tensor
 * (its exact name) with the candidate, then the base spec's rules that still assign a
 * tensor. Inline form (rules joined by "; ") or YAML (a `rules:` list, with comment
 * lines from header). *contest_passthrough gets the base spec's flag. */
qg_status qg_alloc_table_spec(const qg_alloc_table *t, const qg_alloc_tproblem *sp, const int *choice,
                             const qg_state *st, int yaml, const char *header, char **text, int *contest_passthrough);


#endif
