/* libFuzzer harness: the sensitivity table reader on raw bytes, and the knapsack instance
 * and solve on whatever it accepts. */
#include <stddef.h>
#include <stdint.h>

#include "lab/alloc_table.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  qg_alloc_table t;
  if (qg_alloc_table_parse((const char *)data, size, "fuzz.json", &t) != QG_OK) return 0;
  qg_alloc_tproblem sp;
  if (qg_alloc_tproblem_make(&t, "kld", NULL, 0, 0, &sp) == QG_OK) {
    qg_alloc_solution s;
    /* a capped table keeps each run fast; a refusal is a valid outcome */
    if (qg_alloc_solve(&sp.p, t.base_artifact_bytes, 64, 1 << 20, &s) == QG_OK) qg_alloc_solution_free(&s);
    qg_alloc_tproblem_free(&sp);
  }
  qg_alloc_table_free(&t);
  return 0;
}
