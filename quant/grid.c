/* Helpers shared by grids: fp16 scales, the thread pool, round-to-nearest through a grid
 * (ATen's quantile is the contest's, io/contest.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "quant/quant_internal.h"

int qg_quant_serial;

const char *const qg_objective_names[] = {"mse", "hessian", NULL};

float qg_f16r(double v) {
  if (!(v > 0)) return 0.0f;
  if (v > 65504.0) v = 65504.0;
  return qg_f16_to_f32(qg_f32_to_f16((float)v));
}

int qg_quant_threads(void) { return qg_threads(); }

void qg_quant_parallel_for(int64_t n, void (*fn)(void *ctx, int64_t task, int thread), void *ctx) {
  if (qg_quant_serial) {
    for (int64_t i = 0; i < n; i++) fn(ctx, i, 0);
    return;
  }
  qg_parallel_for(n, fn, ctx);
}

int qg_grid_width(const qg_grid *g, const void *cfg) { return g->width_of ? g->width_of(cfg) : g->width; }

qg_status qg_grid_rtn(const qg_grid *g, const void *cfg, const qg_qinput *in, qg_qtensor *out) {
  int64_t rows = in->rows, cols = in->cols;
  int width = qg_grid_width(g, cfg);
  if (width < 1 || cols % width)
    return qg_fail(QG_ERR_INPUT, "%lld columns are not a multiple of the grid width %d", (long long)cols, width);
  int64_t gs = g->group(cfg);
  if (gs == 0) gs = cols;
  double *x = malloc((size_t)(rows * cols) * sizeof *x);
  double *imp = NULL;
  if (!x) return qg_fail(QG_ERR_NOMEM, "out of memory (%lld x %lld)", (long long)rows, (long long)cols);
  for (int64_t i = 0; i < rows * cols; i++) x[i] = in->w[i];
  if (in->importance || in->hessian) {
    if (!(imp = malloc((size_t)cols * sizeof *imp))) {
      free(x);
      return qg_fail(QG_ERR_NOMEM, "out of memory");
    }
    for (int64_t j = 0; j < cols; j++) imp[j] = in->importance ? in->importance[j] : in->hessian[j * cols + j];
  }
  void *st = NULL;
  qg_status s = g->begin(cfg, in, &st);
  for (int64_t gi = 0; !s && gi * gs < cols; gi++)
    s = g->set_scale(st, gi, x + gi * gs, cols, gs, imp ? imp + gi * gs : NULL);
  for (int64_t c = 0; !s && c < cols; c += width) g->round(st, c, x + c, cols, x + c, cols);
  if (!s) s = g->finish(st, out);
  if (st) g->free(st);
  free(x);
  free(imp);
  return s;
}
