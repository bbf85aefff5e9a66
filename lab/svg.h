/* Hand-written SVG figures for reports: a scatter with error bars (KLD vs artifact bytes,
 * with a budget line), per-arm distributions of per-token values (log-x histogram drawn
 * as step lines, or box summaries), and grouped horizontal bar charts (per-tensor error by
 * role, sensitivity by role). Plain SVG 1.1 with inline attributes only (no CSS files, no
 * scripts, no fonts beyond the generic family), so GitHub and browsers render it. Output
 * goes to a qg_buf; the caller writes the file atomically. */
#ifndef QG_LAB_SVG_H
#define QG_LAB_SVG_H

#include <stddef.h>

#include "core/util.h" /* qg_buf */
#include "core/status.h"

typedef struct {
  const char *label;        /* legend / point label (escaped by the writer) */
  double x, y;              /* the point */
  double y_lo, y_hi;        /* error bar (NaN: none) */
  double x_lo, x_hi;        /* horizontal error bar (NaN: none) */
} qg_svg_point;

typedef struct {
  const char *title, *x_label, *y_label;
  int log_x, log_y;         /* logarithmic axes (values must be > 0) */
  double vline_x;           /* a vertical reference line (e.g. the byte budget); NaN: none */
  const char *vline_label;
  double hline_y;           /* a horizontal reference line; NaN: none */
  const char *hline_label;
} qg_svg_axes;

/* Scatter of n points with error bars, labelled, one colour each. */
qg_status qg_svg_scatter(qg_buf *out, const qg_svg_axes *ax, const qg_svg_point *p, int n);

/* Distributions: series[i] has counts[i] values (unsorted, any order; copied, not
 * modified). Drawn as an empirical CDF per series (step line, one colour each) over a
 * log x axis when ax->log_x (values <= 0 clamped to the smallest positive value shown and
 * said so in the legend), with a legend of names. */
qg_status qg_svg_ecdf(qg_buf *out, const qg_svg_axes *ax, const char *const *names, const double *const *series,
                      const size_t *counts, int n_series);

/* Grouped horizontal bars: n_groups category rows (group_names), n_series bars in each
 * (series_names, one colour each); value[g * n_series + s], optional err (NaN or NULL:
 * none) as ± whiskers. Negative values grow left of the zero line. */
qg_status qg_svg_bars(qg_buf *out, const qg_svg_axes *ax, const char *const *group_names, int n_groups,
                      const char *const *series_names, int n_series, const double *value, const double *err);

/* XML-escapes s into out (&, <, >, ", '). */
void qg_svg_escape(qg_buf *out, const char *s);

#endif
