/* The multiple-choice knapsack behind `quantgolf allocate` (see lab/allocate.h). */
#include "lab/allocate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void qg_alloc_eval(const qg_alloc_problem *p, const int *choice, double *delta, int64_t *bytes) {
  double d = 0;
  int64_t b = p->fixed_bytes;
  for (int g = 0; g < p->n_groups; g++) {
    d += p->opts[g][choice[g]].delta;
    b += p->opts[g][choice[g]].bytes;
  }
  if (delta) *delta = d;
  if (bytes) *bytes = b;
}

void qg_alloc_solution_free(qg_alloc_solution *s) {
  free(s->best.choice);
  for (int i = 0; i < s->n_frontier; i++) free(s->frontier[i].choice);
  free(s->frontier);
  memset(s, 0, sizeof *s);
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

int64_t qg_alloc_auto_granularity(const qg_alloc_problem *p, int64_t budget, int64_t max_cells) {
  int64_t base = p->fixed_bytes, span = 0;
  for (int g = 0; g < p->n_groups; g++) {
    int64_t mn = INT64_MAX, mx = 0;
    for (int j = 0; j < p->n_opts[g]; j++) {
      if (p->opts[g][j].bytes < mn) mn = p->opts[g][j].bytes;
      if (p->opts[g][j].bytes > mx) mx = p->opts[g][j].bytes;
    }
    base += mn, span += mx - mn;
  }
  int64_t cap = budget - base < span ? budget - base : span;
  if (cap < 0) cap = 0;
  int64_t n = p->n_groups ? p->n_groups : 1;
  for (int64_t g = 1;; g *= 2)
    if (n * (cap / g + 1) <= max_cells) return g;
}

qg_status qg_alloc_solve(const qg_alloc_problem *p, int64_t budget, int64_t gran, int64_t max_cells,
                         qg_alloc_solution *out) {
  memset(out, 0, sizeof *out);
  if (gran < 1) return qg_fail(QG_ERR_INPUT, "allocate: granularity must be >= 1 byte (got %lld)", (long long)gran);
  if (!max_cells) max_cells = (int64_t)1 << 28;
  int n = p->n_groups;
  int64_t base = p->fixed_bytes, span = 0;
  int64_t *lo = calloc((size_t)(n ? n : 1), sizeof *lo);
  if (!lo) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int g = 0; g < n; g++) {
    if (p->n_opts[g] < 1 || p->n_opts[g] > 65535) {
      free(lo);
      return qg_fail(QG_ERR_INPUT, "allocate: group %d has %d options (1..65535 allowed)", g, p->n_opts[g]);
    }
    int64_t mn = INT64_MAX, mx = 0;
    for (int j = 0; j < p->n_opts[g]; j++) {
      const qg_alloc_option *o = &p->opts[g][j];
      if (o->bytes < 0 || !isfinite(o->delta)) {
        free(lo);
        return qg_fail(QG_ERR_INPUT, "allocate: group %d option %d: bytes %lld, delta %g (bytes >= 0 and a finite "
                       "delta required)", g, j, (long long)o->bytes, o->delta);
      }
      if (o->bytes < mn) mn = o->bytes;
      if (o->bytes > mx) mx = o->bytes;
    }
    lo[g] = mn, base += mn, span += ceil_div(mx - mn, gran);
  }
  if (budget < base) {
    free(lo);
    return qg_fail(QG_ERR_INPUT, "allocate: budget %lld bytes is below the smallest achievable total %lld bytes",
                   (long long)budget, (long long)base);
  }
  int64_t C = (budget - base) / gran;
  if (C > span) C = span; /* capacity beyond every group's largest option buys nothing */
  int64_t cells = (int64_t)(n ? n : 1) * (C + 1);
  if (cells > max_cells) {
    int64_t need = gran * ceil_div(cells, max_cells);
    free(lo);
    return qg_fail(QG_ERR_INPUT, "allocate: the table would need %lld cells at %lld-byte granularity (limit %lld): use "
                   "a granularity of at least %lld bytes", (long long)cells, (long long)gran, (long long)max_cells,
                   (long long)need);
  }
  size_t W = (size_t)(C + 1);
  double *dp = malloc(W * sizeof *dp), *nx = malloc(W * sizeof *nx);
  uint16_t *ch = malloc((size_t)(n ? n : 1) * W * sizeof *ch);
  int64_t *w = NULL;
  qg_status s = QG_OK;
  if (!dp || !nx || !ch) s = qg_fail(QG_ERR_NOMEM, "out of memory (%lld DP cells)", (long long)cells);
  /* dp[c]: the least delta over the groups so far with rounded extra bytes <= c */
  for (size_t c = 0; !s && c < W; c++) dp[c] = 0;
  for (int g = 0; !s && g < n; g++) {
    int m = p->n_opts[g];
    w = realloc(w, (size_t)m * sizeof *w);
    if (!w) {
      s = qg_fail(QG_ERR_NOMEM, "out of memory");
      break;
    }
    for (int j = 0; j < m; j++) w[j] = ceil_div(p->opts[g][j].bytes - lo[g], gran);
    uint16_t *row = ch + (size_t)g * W;
    for (size_t c = 0; c < W; c++) {
      double best = INFINITY;
      int bj = 0;
      for (int j = 0; j < m; j++) {
        if (w[j] > (int64_t)c) continue;
        double v = dp[c - (size_t)w[j]] + p->opts[g][j].delta;
        if (v < best) best = v, bj = j;
      }
      nx[c] = best;
      row[c] = (uint16_t)bj;
    }
    double *t = dp;
    dp = nx, nx = t;
  }
  /* the frontier: capacities where the optimum strictly improves (the smallest one always
   * counts), each reconstructed on exact bytes, then dominated points dropped */
  int nf = 0;
  int64_t *at = NULL;
  if (!s) {
    at = malloc(W * sizeof *at);
    if (!at) s = qg_fail(QG_ERR_NOMEM, "out of memory");
    for (size_t c = 0; !s && c < W; c++)
      if (c == 0 || dp[c] < dp[c - 1]) at[nf++] = (int64_t)c;
  }
  if (!s) {
    out->frontier = calloc((size_t)nf, sizeof *out->frontier);
    if (!out->frontier) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  for (int f = 0; !s && f < nf; f++) {
    qg_alloc_point *pt = &out->frontier[f];
    pt->choice = malloc((size_t)(n ? n : 1) * sizeof *pt->choice);
    if (!pt->choice) {
      s = qg_fail(QG_ERR_NOMEM, "out of memory");
      break;
    }
    int64_t c = at[f];
    for (int g = n - 1; g >= 0; g--) {
      int j = ch[(size_t)g * W + (size_t)c];
      pt->choice[g] = j;
      c -= ceil_div(p->opts[g][j].bytes - lo[g], gran);
    }
    qg_alloc_eval(p, pt->choice, &pt->delta, &pt->bytes);
    out->n_frontier = f + 1;
  }
  if (!s) {
    /* keep a point only when no later (better) point costs as few bytes or fewer */
    int64_t minb = INT64_MAX;
    int k = nf;
    for (int f = nf - 1; f >= 0; f--) {
      if (out->frontier[f].bytes < minb) {
        minb = out->frontier[f].bytes;
        out->frontier[--k] = out->frontier[f];
      } else {
        free(out->frontier[f].choice);
      }
    }
    memmove(out->frontier, out->frontier + k, (size_t)(nf - k) * sizeof *out->frontier);
    out->n_frontier = nf - k;
    const qg_alloc_point *last = &out->frontier[out->n_frontier - 1];
    out->best.choice = malloc((size_t)(n ? n : 1) * sizeof *out->best.choice);
    if (!out->best.choice) s = qg_fail(QG_ERR_NOMEM, "out of memory");
    else {
      memcpy(out->best.choice, last->choice, (size_t)n * sizeof *last->choice);
      out->best.delta = last->delta, out->best.bytes = last->bytes;
      if (out->best.bytes > budget)
        s = qg_fail(QG_ERR_INTERNAL, "allocate: the solution's exact bytes %lld exceed the budget %lld",
                    (long long)out->best.bytes, (long long)budget);
    }
    out->granularity = gran, out->slack_bytes = (int64_t)n * (gran - 1);
    out->min_bytes = base, out->cells = cells;
  }
  free(at), free(w), free(lo), free(dp), free(nx), free(ch);
  if (s) qg_alloc_solution_free(out);
  return s;
}

/* A measured solution of the repair: its choice, prediction and real total. */
typedef struct {
  qg_alloc_solution sol;
  int64_t solver_budget, real;
} repair_try;

static int same_choice(const qg_alloc_problem *p, const int *a, const int *b) {
  return !memcmp(a, b, sizeof *a * (size_t)p->n_groups);
}

/* A copy of p whose option bytes the repair corrects. */
static qg_status copy_problem(const qg_alloc_problem *p, qg_alloc_problem *w) {
  memset(w, 0, sizeof *w);
  w->n_groups = p->n_groups, w->fixed_bytes = p->fixed_bytes;
  w->n_opts = malloc(sizeof *w->n_opts * (size_t)p->n_groups);
  w->opts = calloc((size_t)p->n_groups, sizeof *w->opts);
  if (!w->n_opts || !w->opts) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int g = 0; g < p->n_groups; g++) {
    w->n_opts[g] = p->n_opts[g];
    if (!(w->opts[g] = malloc(sizeof **w->opts * (size_t)p->n_opts[g]))) return qg_fail(QG_ERR_NOMEM, "out of memory");
    memcpy(w->opts[g], p->opts[g], sizeof **w->opts * (size_t)p->n_opts[g]);
  }
  return QG_OK;
}

static void free_problem(qg_alloc_problem *w) {
  for (int g = 0; w->opts && g < w->n_groups; g++) free(w->opts[g]);
  free(w->opts), free(w->n_opts);
}

/* Charges the measured residual (real total minus the corrected prediction) to the
 * options of the groups that left their base (option 0), in proportion to how far each
 * moved from its base in table bytes (equally when none moved in bytes). */
static void charge_residual(const qg_alloc_problem *p, qg_alloc_problem *w, const int *choice, int64_t residual) {
  int64_t total = 0;
  int moved = 0;
  for (int g = 0; g < p->n_groups; g++)
    if (choice[g]) moved++, total += llabs(p->opts[g][choice[g]].bytes - p->opts[g][0].bytes);
  if (!moved || !residual) return;
  int64_t left = residual;
  int k = 0;
  for (int g = 0; g < p->n_groups; g++) {
    if (!choice[g]) continue;
    int64_t share = ++k == moved ? left
                    : total ? (int64_t)((double)residual * (double)llabs(p->opts[g][choice[g]].bytes - p->opts[g][0].bytes) /
                                        (double)total)
                            : residual / moved;
    w->opts[g][choice[g]].bytes += share;
    left -= share;
  }
}

qg_status qg_alloc_solve_repair(const qg_alloc_problem *p, int64_t budget, int64_t granularity, int max_rounds,
                                qg_alloc_measure_fn measure, void *ctx, qg_alloc_solution *out,
                                qg_alloc_repair_log *log) {
  memset(log, 0, sizeof *log);
  memset(out, 0, sizeof *out);
  if (max_rounds > QG_ALLOC_REPAIR_MAX) max_rounds = QG_ALLOC_REPAIR_MAX;
  if (max_rounds < 0) max_rounds = 0;
  qg_alloc_problem w;
  qg_status s = copy_problem(p, &w);
  repair_try tries[QG_ALLOC_REPAIR_MAX + 1];
  int nt = 0, n_log = 0;
  int64_t b = budget;
  for (int step = 0; step < 4 * (QG_ALLOC_REPAIR_MAX + 1) && !s; step++) {
    qg_alloc_solution sol;
    if ((s = qg_alloc_solve(&w, b, granularity, 0, &sol))) {
      if (nt) s = QG_OK; /* nothing more fits the corrected costs: keep what was measured */
      break;
    }
    int cur = -1;
    for (int k = 0; k < nt && cur < 0; k++)
      if (same_choice(p, tries[k].sol.best.choice, sol.best.choice)) cur = k;
    if (cur >= 0) { /* measured before: fits, so done; or over, so fall back to the excess step */
      qg_alloc_solution_free(&sol);
      if (tries[cur].real <= budget) break;
      b -= tries[cur].real - budget;
      continue;
    }
    if (nt > max_rounds) { /* no measurement left */
      qg_alloc_solution_free(&sol);
      break;
    }
    tries[nt] = (repair_try){sol, b, 0};
    if ((s = measure(ctx, &tries[nt].sol, &tries[nt].real))) {
      qg_alloc_solution_free(&tries[nt].sol);
      break;
    }
    log->budget[n_log] = b, log->measured[n_log] = tries[nt].real, n_log++;
    const repair_try *t = &tries[nt++];
    if (t->real <= budget) break; /* the corrected costs' optimum fits */
    double d;
    int64_t predicted;
    qg_alloc_eval(&w, t->sol.best.choice, &d, &predicted);
    charge_residual(p, &w, t->sol.best.choice, t->real - predicted);
    b = budget;
  }
  free_problem(&w);
  if (s) {
    for (int k = 0; k < nt; k++) qg_alloc_solution_free(&tries[k].sol);
    return s;
  }
  /* the first choice that fits (the last measured), else the smallest real artifact */
  int pick = nt - 1;
  if (tries[pick].real > budget)
    for (int k = 0; k < nt; k++)
      if (tries[k].real < tries[pick].real) pick = k;
  if (pick != nt - 1) { /* measured again, so the caller's state describes the delivered one */
    int64_t real;
    s = measure(ctx, &tries[pick].sol, &real);
    if (!s) log->budget[n_log] = tries[pick].solver_budget, log->measured[n_log] = real, n_log++;
  }
  for (int k = 0; k < nt; k++)
    if (k != pick || s) qg_alloc_solution_free(&tries[k].sol);
  if (s) return s;
  *out = tries[pick].sol;
  /* the prediction in the table's own bytes (the frontier stays on the corrected costs) */
  qg_alloc_eval(p, out->best.choice, &out->best.delta, &out->best.bytes);
  log->rounds = n_log - 1;
  log->fits = log->measured[n_log - 1] <= budget;
  return QG_OK;
}
