/* Bit allocation under a byte budget: an exact multiple-choice knapsack (one option per
 * group, minimise the sum of predicted deltas subject to total bytes <= budget) solved by
 * dynamic programming over bytes, and the Pareto frontier of predicted delta vs bytes.
 *
 * Granularity g: each option's bytes above its group's smallest option are rounded UP to
 * whole units of g, and the capacity (budget minus the groups' smallest options) DOWN.
 * So every allocation the DP accepts also fits the exact budget (checked on exact bytes
 * after solving), and the optimum found is at least as good as the exact optimum at
 * budget - slack, slack = n_groups * (g - 1) bytes (each group loses under g bytes to
 * rounding up). With g = 1 the solution is the exact optimum. */
#ifndef QG_LAB_ALLOCATE_H
#define QG_LAB_ALLOCATE_H

#include <stdint.h>

#include "core/status.h"

typedef struct {
  int64_t bytes;
  double delta; /* predicted change of the objective (may be negative) */
} qg_alloc_option;

typedef struct {
  int n_groups;
  int *n_opts;             /* per group */
  qg_alloc_option **opts;  /* per group, n_opts[g] options */
  int64_t fixed_bytes;     /* bytes no group accounts for (added to every total) */
} qg_alloc_problem;

typedef struct {
  double delta;            /* sum of the chosen deltas, in group order */
  int64_t bytes;           /* exact: fixed_bytes + the chosen options' bytes */
  int *choice;             /* per group: the chosen option's index (owned) */
} qg_alloc_point;

typedef struct {
  qg_alloc_point best;     /* the optimum within the budget */
  qg_alloc_point *frontier; /* Pareto points (bytes ascending, delta strictly descending),
                            * every one within the budget; the last equals best */
  int n_frontier;
  int64_t granularity, slack_bytes; /* slack: the rounding's worst case (see above) */
  int64_t min_bytes;       /* the smallest achievable total */
  int64_t cells;           /* DP table size (groups x capacity units), for the record */
} qg_alloc_solution;

/* Fails (QG_ERR_INPUT) when the budget is below the smallest achievable total, naming
 * both; when the DP would need more than max_cells cells (0: 1<<28), saying which
 * granularity would fit. */
qg_status qg_alloc_solve(const qg_alloc_problem *p, int64_t budget, int64_t granularity, int64_t max_cells,
                         qg_alloc_solution *out);
void qg_alloc_solution_free(qg_alloc_solution *s);
/* The finest granularity whose DP table stays within max_cells (1: exact, when it fits). */
int64_t qg_alloc_auto_granularity(const qg_alloc_problem *p, int64_t budget, int64_t max_cells);
/* The objective and exact bytes of a choice vector, summed in group order. */
void qg_alloc_eval(const qg_alloc_problem *p, const int *choice, double *delta, int64_t *bytes);

/* Real compressed bytes are not additive over tensors, so a solution within the budget
 * on the table's per-tensor costs can come out over it. Solves at budget and measures the
 * solution's real total (measure: e.g. quantize it and add code bytes). While it is over,
 * the residual (real minus predicted) is charged to the options the solution took in the
 * groups that left their base, option 0 (whose bytes the table measured with the whole
 * artifact), in proportion to how far each moved from its base in bytes, and the corrected
 * problem is solved again at the same budget: costs learnt from measurements, so a choice
 * measured over is not predicted to fit again, and the solver does not give up promotions
 * for demotions as a budget cut would. A choice measured before falls back to cutting the
 * solver's budget by its excess. At most max_rounds (<= QG_ALLOC_REPAIR_MAX) re-solves are
 * measured. out is the first that fits, else the smallest real artifact measured (measured
 * again last, so measure's side effects describe it; the log's last entry), its best.bytes the
 * table's prediction for it (its frontier is on the corrected costs); log lists every
 * measurement in order. */
#define QG_ALLOC_REPAIR_MAX 8
typedef struct {
  int rounds;                                   /* measurements after the first */
  int64_t budget[QG_ALLOC_REPAIR_MAX + 2];      /* the solver's budget, per measurement */
  int64_t measured[QG_ALLOC_REPAIR_MAX + 2];    /* the real total, per measurement */
  int fits;                                     /* out's real total is within the budget */
} qg_alloc_repair_log;
typedef qg_status (*qg_alloc_measure_fn)(void *ctx, const qg_alloc_solution *sol, int64_t *real_bytes);
qg_status qg_alloc_solve_repair(const qg_alloc_problem *p, int64_t budget, int64_t granularity, int max_rounds,
                                qg_alloc_measure_fn measure, void *ctx, qg_alloc_solution *out,
                                qg_alloc_repair_log *log);

#endif
