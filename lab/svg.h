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
/* Note: a zero-initialised qg_svg_axes draws reference lines at 0 (and fails on a log
 * axis); set vline_x / hline_y to NAN for none. Each writer accepts ax == NULL for no
 * title, no labels, linear axes and no lines. Inputs that cannot be drawn (n = 0,
 * non-finite values, values <= 0 on a log axis where not said otherwise) fail with
 * QG_ERR_INPUT and leave out as it was; on success the figure is appended to out. */

/* Scatter of n points with error bars, labelled, one colour each. Error-bar ends may be
 * NaN (that end omitted); an end <= 0 on a log axis is drawn to the axis edge. */
qg_status qg_svg_scatter(qg_buf *out, const qg_svg_axes *ax, const qg_svg_point *p, int n);

/* Distributions: series[i] has counts[i] values (unsorted, any order; copied, not
 * modified). Drawn as an empirical CDF per series (step line, one colour each) over a
 * log x axis when ax->log_x (values <= 0 clamped to the smallest positive value shown and
 * said so in the legend), with a legend of names. Huge series are drawn from at most
 * ~200 samples of the exact ECDF (quantiles and x positions), so files stay small. A
 * horizontal line hline_y must lie in [0, 1]. */
qg_status qg_svg_ecdf(qg_buf *out, const qg_svg_axes *ax, const char *const *names, const double *const *series,
                      const size_t *counts, int n_series);

/* Grouped horizontal bars: n_groups category rows (group_names), n_series bars in each
 * (series_names, one colour each); value[g * n_series + s], optional err (NaN or NULL:
 * none) as ± whiskers. Negative values grow left of the zero line. A NaN value is drawn
 * as "n/a". With log_x, values must be > 0 and bars start at the decade below the
 * smallest. hline_y must be NaN. */
qg_status qg_svg_bars(qg_buf *out, const qg_svg_axes *ax, const char *const *group_names, int n_groups,
                      const char *const *series_names, int n_series, const double *value, const double *err);

/* XML-escapes s into out (&, <, >, ", '). Control characters become spaces and invalid
 * UTF-8 bytes U+FFFD, since XML rejects a document with either. */
void qg_svg_escape(qg_buf *out, const char *s);

/* Compact number text as used for tick and value labels: the fewest significant digits
 * (at most max_sig) that give v back, SI suffixes k M G T P E from 1e4 (15.3M),
 * e-notation below 1e-3 (1.2e-4). Returns what snprintf returns. */
int qg_svg_fmt(char *buf, size_t cap, double v, int max_sig);

#endif
