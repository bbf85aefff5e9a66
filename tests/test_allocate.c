/* The allocation solver against brute force, its rounding bound, its frontier and errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lab/allocate.h"
#include "tests/testlib.h"

typedef struct {
  qg_alloc_problem p;
  int no[8];
  qg_alloc_option *op[8];
  qg_alloc_option store[8][6];
} inst;

static uint64_t rng;
static uint64_t next(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return rng;
}

static void make(inst *I) {
  memset(I, 0, sizeof *I);
  int n = 1 + (int)(next() % 6);
  for (int g = 0; g < n; g++) {
    I->no[g] = 1 + (int)(next() % 5);
    for (int j = 0; j < I->no[g]; j++) {
      I->store[g][j].bytes = (int64_t)(next() % 200);
      /* dyadic deltas: every sum is exact, so "the same optimum" means bit-equal */
      I->store[g][j].delta = ((double)(int64_t)(next() % 4001) - 500.0) / 1024.0;
    }
    I->op[g] = I->store[g];
  }
  I->p.n_groups = n, I->p.n_opts = I->no, I->p.opts = I->op, I->p.fixed_bytes = (int64_t)(next() % 50);
}

/* Exhaustive: the least delta with exact bytes <= budget (INFINITY when none fits). */
static double brute(const qg_alloc_problem *p, int64_t budget) {
  int c[8] = {0};
  double best = INFINITY;
  for (;;) {
    double d;
    int64_t b;
    qg_alloc_eval(p, c, &d, &b);
    if (b <= budget && d < best) best = d;
    int g = 0;
    while (g < p->n_groups && ++c[g] == p->n_opts[g]) c[g++] = 0;
    if (g == p->n_groups) break;
  }
  return best;
}

static int64_t min_total(const qg_alloc_problem *p) {
  int64_t t = p->fixed_bytes;
  for (int g = 0; g < p->n_groups; g++) {
    int64_t m = INT64_MAX;
    for (int j = 0; j < p->n_opts[g]; j++) m = p->opts[g][j].bytes < m ? p->opts[g][j].bytes : m;
    t += m;
  }
  return t;
}

static void test_exact_vs_brute(void **st) {
  (void)st;
  rng = 0x9e3779b97f4a7c15ULL;
  for (int t = 0; t < 3000; t++) {
    inst I;
    make(&I);
    int64_t mn = min_total(&I.p);
    int64_t budget = mn + (int64_t)(next() % 700);
    qg_alloc_solution s;
    assert_int_equal(qg_alloc_solve(&I.p, budget, 1, 0, &s), QG_OK);
    double want = brute(&I.p, budget);
    double d;
    int64_t b;
    qg_alloc_eval(&I.p, s.best.choice, &d, &b);
    assert_true(d == want);
    assert_true(s.best.delta == want);
    assert_true(b == s.best.bytes && b <= budget);
    assert_int_equal(s.slack_bytes, 0);
    assert_int_equal(s.min_bytes, mn);
    /* the frontier: bytes ascending, delta descending, each point optimal at its bytes */
    for (int f = 0; f < s.n_frontier; f++) {
      const qg_alloc_point *pt = &s.frontier[f];
      assert_true(pt->bytes <= budget);
      assert_true(pt->delta == brute(&I.p, pt->bytes));
      if (f) {
        assert_true(pt->bytes > s.frontier[f - 1].bytes);
        assert_true(pt->delta < s.frontier[f - 1].delta);
        /* nothing strictly between two points improves on the earlier one */
        assert_true(brute(&I.p, pt->bytes - 1) == s.frontier[f - 1].delta);
      }
    }
    assert_true(s.frontier[0].bytes == mn || brute(&I.p, s.frontier[0].bytes - 1) == INFINITY);
    qg_alloc_solution_free(&s);
  }
}

/* With granularity g the answer fits the exact budget and is no worse than the exact
 * optimum at budget - n (g - 1). */
static void test_granularity_bound(void **st) {
  (void)st;
  rng = 12345;
  for (int t = 0; t < 2000; t++) {
    inst I;
    make(&I);
    int64_t g = 2 + (int64_t)(next() % 40);
    int64_t budget = min_total(&I.p) + (int64_t)(next() % 700);
    qg_alloc_solution s;
    assert_int_equal(qg_alloc_solve(&I.p, budget, g, 0, &s), QG_OK);
    assert_int_equal(s.slack_bytes, I.p.n_groups * (g - 1));
    assert_true(s.best.bytes <= budget);
    assert_true(s.best.delta >= brute(&I.p, budget));
    assert_true(s.best.delta <= brute(&I.p, budget - s.slack_bytes));
    qg_alloc_solution_free(&s);
  }
}

/* A hand-made case whose answer is known: two groups, 100 bytes. */
static void test_known(void **st) {
  (void)st;
  qg_alloc_option a[] = {{60, 0.0}, {40, 0.5}, {20, 2.0}}, b[] = {{50, 0.0}, {30, 0.25}, {10, 3.0}};
  qg_alloc_option *ops[] = {a, b};
  int no[] = {3, 3};
  qg_alloc_problem p = {2, no, ops, 5};
  qg_alloc_solution s;
  assert_int_equal(qg_alloc_solve(&p, 100, 1, 0, &s), QG_OK);
  /* 5 + 60 + 30 = 95 at 0.25 beats 5 + 40 + 50 = 95 at 0.5 */
  assert_int_equal(s.best.choice[0], 0);
  assert_int_equal(s.best.choice[1], 1);
  assert_true(s.best.delta == 0.25);
  assert_int_equal(s.best.bytes, 95);
  /* frontier from the smallest total 35 (2.0 + 3.0 = 5.0) up to 95 */
  assert_int_equal(s.frontier[0].bytes, 35);
  assert_true(s.frontier[0].delta == 5.0);
  qg_alloc_solution_free(&s);
}

static void test_auto_granularity(void **st) {
  (void)st;
  qg_alloc_option a[] = {{1000, 0.0}, {1000000, -1.0}}, b[] = {{0, 0.0}, {3000000, -1.0}};
  qg_alloc_option *ops[] = {a, b};
  int no[] = {2, 2};
  qg_alloc_problem p = {2, no, ops, 0};
  /* capacity is min(budget - 1000, span 3,999,000): 2 x 4,000,000 cells need g = 1 at 2^23 */
  assert_int_equal(qg_alloc_auto_granularity(&p, 10000000, (int64_t)1 << 23), 1);
  int64_t g = qg_alloc_auto_granularity(&p, 10000000, 100000);
  /* the finest power of two within the cap: half of it would not fit */
  assert_true(2 * (3999000 / g + 1) <= 100000);
  assert_true(2 * (3999000 / (g / 2) + 1) > 100000);
  qg_alloc_solution s;
  assert_int_equal(qg_alloc_solve(&p, 10000000, g, 100000, &s), QG_OK);
  assert_true(s.best.delta == -2.0);
  qg_alloc_solution_free(&s);
}

static void test_errors(void **st) {
  (void)st;
  qg_alloc_option a[] = {{60, 0.0}, {40, 0.5}};
  qg_alloc_option *ops[] = {a};
  int no[] = {2};
  qg_alloc_problem p = {1, no, ops, 10};
  qg_alloc_solution s;
  assert_int_equal(qg_alloc_solve(&p, 49, 1, 0, &s), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "smallest achievable total 50"));
  assert_int_equal(qg_alloc_solve(&p, 50, 0, 0, &s), QG_ERR_INPUT);
  a[1].delta = NAN;
  assert_int_equal(qg_alloc_solve(&p, 100, 1, 0, &s), QG_ERR_INPUT);
  a[1].delta = 0.5;
  assert_int_equal(qg_alloc_solve(&p, 1000000, 1, 4, &s), QG_ERR_INPUT);
  assert_non_null(strstr(qg_last_error(), "granularity"));
}

/* A non-additive "real" size: the table's exact bytes plus a per-choice surcharge, as a
 * shared compressed stream costs more or less than the sum of its parts. */
typedef struct {
  const qg_alloc_problem *p;
  double rate;   /* surcharge per byte above fixed */
  int calls;
} real_cost;

/* Real bytes per option (a choice's real total is their sum): non-additivity that
 * differs between options rather than a uniform surcharge. */
typedef struct {
  int64_t real[2][3];
  int calls;
} per_option_cost;

static qg_status measure_per_option(void *ctx, const qg_alloc_solution *sol, int64_t *bytes) {
  per_option_cost *c = ctx;
  *bytes = c->real[0][sol->best.choice[0]] + c->real[1][sol->best.choice[1]];
  c->calls++;
  return QG_OK;
}

static qg_status measure(void *ctx, const qg_alloc_solution *sol, int64_t *bytes) {
  real_cost *c = ctx;
  double d;
  int64_t b;
  qg_alloc_eval(c->p, sol->best.choice, &d, &b);
  *bytes = b + (int64_t)(c->rate * (double)(b - c->p->fixed_bytes));
  c->calls++;
  return QG_OK;
}

/* Brute force: the lowest delta among all choices whose real cost (the surcharge model)
 * is within the budget, or INFINITY. */
static double best_real(const qg_alloc_problem *p, const real_cost *c, int64_t budget) {
  int n = p->n_groups, ch[16] = {0};
  double best = INFINITY;
  for (;;) {
    double d;
    int64_t b;
    qg_alloc_eval(p, ch, &d, &b);
    int64_t real = b + (int64_t)(c->rate * (double)(b - p->fixed_bytes));
    if (real <= budget && d < best) best = d;
    int g = 0;
    while (g < n && ++ch[g] == p->n_opts[g]) ch[g++] = 0;
    if (g == n) break;
  }
  return best;
}

static void test_repair(void **st) {
  (void)st;
  int n_fit = 0, n_opt = 0;
  for (int trial = 0; trial < 200; trial++) {
    inst I;
    make(&I);
    qg_alloc_solution s0;
    int64_t budget = I.p.fixed_bytes + (int64_t)(next() % 900);
    if (qg_alloc_solve(&I.p, budget, 1, 0, &s0)) continue; /* below the smallest total */
    qg_alloc_solution_free(&s0);
    real_cost c = {&I.p, 0.03 + 0.01 * (double)(next() % 5), 0};
    qg_alloc_solution s;
    qg_alloc_repair_log log;
    assert_int_equal(qg_alloc_solve_repair(&I.p, budget, 1, QG_ALLOC_REPAIR_MAX, measure, &c, &s, &log), QG_OK);
    /* every measurement is logged; the last one is the delivered choice's */
    assert_int_equal(c.calls, log.rounds + 1);
    assert_true(log.rounds <= QG_ALLOC_REPAIR_MAX + 1); /* + the delivered one measured again */
    int64_t real;
    measure(&c, &s, &real);
    assert_true(real == log.measured[log.rounds]);
    assert_int_equal(log.fits, real <= budget);
    /* it stops at the first choice that fits: every earlier one was over; when none fits it
     * delivers the smallest real artifact it measured */
    for (int k = 0; k < log.rounds; k++) assert_true(log.measured[k] > budget);
    if (!log.fits)
      for (int k = 0; k < log.rounds; k++) assert_true(log.measured[log.rounds] <= log.measured[k]);
    /* the delivered prediction is in the table's own bytes */
    double d;
    int64_t tb;
    qg_alloc_eval(&I.p, s.best.choice, &d, &tb);
    assert_true(tb == s.best.bytes && d == s.best.delta);
    /* never better than the best choice that really fits (brute force) */
    double opt = best_real(&I.p, &c, budget);
    if (log.fits) assert_true(s.best.delta >= opt);
    n_fit += isfinite(opt), n_opt += log.fits && s.best.delta == opt;
    qg_alloc_solution_free(&s);
  }
  /* with a uniform surcharge the learnt costs find the real optimum nearly always */
  print_message("  repair reached the real optimum on %d of %d instances where one fits\n", n_opt, n_fit);
  assert_true(n_fit > 100 && n_opt >= 0.9 * n_fit);
  /* one excess step is enough here: two groups, 3 % surcharge; 600 + 500 = 1100 fits the
   * table but is 1133 real; re-solved at 1067, 600 + 300 = 900 is 927 real; the bisection
   * between 1067 and 1100 finds only that choice again, so nothing more is quantized */
  qg_alloc_option a[] = {{600, 0.0}, {400, 0.5}}, b[] = {{500, 0.0}, {300, 0.25}};
  qg_alloc_option *ops[] = {a, b};
  int no[] = {2, 2};
  qg_alloc_problem p = {2, no, ops, 0};
  real_cost c = {&p, 0.03, 0};
  qg_alloc_solution s;
  qg_alloc_repair_log log;
  assert_int_equal(qg_alloc_solve_repair(&p, 1100, 1, 4, measure, &c, &s, &log), QG_OK);
  assert_int_equal(log.rounds, 1);
  assert_int_equal(c.calls, 2);
  assert_true(log.measured[0] == 1133 && log.budget[1] == 1067);
  assert_true(log.fits && log.measured[1] == 927);
  qg_alloc_solution_free(&s);
  /* one option's real bytes far above its table bytes (as int8 over an int8 export
   * compresses worse than the table's marginal bytes say): group 0 {A0 1000 bytes, delta 0;
   * A1 1100, -1, really 1250}, group 1 {B0 1000, 0; B1 900, +2; B2 1050, -0.5, really 1100},
   * budget 2100. A1+B0 (2100) is 2250 real. Cutting the solver's budget by the 150 excess
   * would give A0+B1 (delta +2); charging the excess to A1 instead gives A0+B2 (real 2100,
   * delta -0.5), the real optimum, at the same budget. */
  qg_alloc_option g0[] = {{1000, 0.0}, {1100, -1.0}}, g1[] = {{1000, 0.0}, {900, 2.0}, {1050, -0.5}};
  qg_alloc_option *ops2[] = {g0, g1};
  int no2[] = {2, 3};
  qg_alloc_problem p2 = {2, no2, ops2, 0};
  per_option_cost pc = {{{1000, 1250}, {1000, 900, 1100}}, 0};
  assert_int_equal(qg_alloc_solve_repair(&p2, 2100, 1, QG_ALLOC_REPAIR_MAX, measure_per_option, &pc, &s, &log), QG_OK);
  assert_true(log.fits && s.best.delta == -0.5);
  assert_int_equal(s.best.choice[0], 0);
  assert_int_equal(s.best.choice[1], 2);
  assert_int_equal(log.rounds, 1);
  assert_true(log.measured[0] == 2250 && log.budget[1] == 2100 && log.measured[1] == 2100);
  assert_true(s.best.bytes == 2050); /* the table's prediction, not the corrected one */
  qg_alloc_solution_free(&s);
  /* the same with B2 really 1110: A0+B2 is 2110, over; charged to B2, the next solve is
   * A0+B0 (2000, delta 0), which fits: three measurements */
  per_option_cost pc3 = {{{1000, 1250}, {1000, 900, 1110}}, 0};
  assert_int_equal(qg_alloc_solve_repair(&p2, 2100, 1, QG_ALLOC_REPAIR_MAX, measure_per_option, &pc3, &s, &log), QG_OK);
  assert_true(log.fits && s.best.delta == 0.0);
  assert_int_equal(s.best.choice[0], 0);
  assert_int_equal(s.best.choice[1], 0);
  assert_int_equal(pc3.calls, 3);
  assert_true(log.measured[2] == 2000);
  qg_alloc_solution_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_exact_vs_brute), cmocka_unit_test(test_granularity_bound),
                                     cmocka_unit_test(test_known), cmocka_unit_test(test_auto_granularity),
                                     cmocka_unit_test(test_errors), cmocka_unit_test(test_repair)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
