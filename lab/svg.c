/* SVG figures for reports (see lab/svg.h). Layout is computed in pixels from estimated
 * text widths (a sans-serif averages about 0.6 em per character), so no font metrics are
 * needed; coordinates are written with two decimals so output is deterministic. */
#include "lab/svg.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { FIG_W = 760, FIG_H = 480, MAX_TICKS = 48, LEGEND_MAX = 36, POINT_LABEL_MAX = 20 };

/* Okabe-Ito, reordered so that the low-contrast yellow comes last. */
static const char *const PAL[8] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7",
                                   "#E69F00", "#56B4E9", "#000000", "#F0E442"};
/* Past eight series the colours repeat; a dash pattern tells the cycles apart. */
static const char *const DASH[4] = {"", " stroke-dasharray=\"7,3\"", " stroke-dasharray=\"2,2\"",
                                    " stroke-dasharray=\"8,3,2,3\""};

static const char GRID[] = "stroke=\"#e6e6e6\"",
                  REF[] = "stroke=\"#555\" stroke-width=\"1.2\" stroke-dasharray=\"6,4\"";
static const qg_svg_axes NO_AXES = {NULL, NULL, NULL, 0, 0, NAN, NULL, NAN, NULL};

/* ---- text ------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at s (1..4), 0 when invalid (XML rejects the whole
 * document on one bad byte, so the escaper replaces those). */
static int utf8_len(const unsigned char *s) {
  unsigned c = s[0], min;
  int n;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) n = 2, min = 0x80;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, min = 0x800;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, min = 0x10000;
  else return 0;
  unsigned cp = c & (0x3Fu >> (n - 1));
  for (int i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF) || cp == 0xFFFE || cp == 0xFFFF) return 0;
  return n;
}

void qg_svg_escape(qg_buf *out, const char *s) {
  static const char special[] = "&<>\"'", *const ent[5] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
  for (const unsigned char *p = (const unsigned char *)s; p && *p;) {
    const char *k = strchr(special, *p);
    int n = k ? 1 : utf8_len(p);
    if (k) qg_buf_str(out, ent[k - special]);
    else if (*p < 0x20) qg_buf_byte(out, ' '); /* XML 1.0 has no control characters */
    else if (n) qg_buf_append(out, p, (size_t)n);
    else qg_buf_str(out, "\xEF\xBF\xBD"); /* U+FFFD for a byte that is not UTF-8 */
    p += n ? n : 1;
  }
}

/* s cut to at most max code points (the last an ellipsis when cut), in tmp. */
static const char *clip(const char *s, int max, char *tmp, size_t cap) {
  if (!s) return "";
  size_t i = 0;
  int cps = 0;
  for (; s[i]; i++)
    if (((unsigned char)s[i] & 0xC0) != 0x80 && ++cps > max) break;
  if (!s[i]) return s;
  size_t keep = i;
  /* back off one code point to make room for the ellipsis */
  while (keep > 0 && ((unsigned char)s[--keep] & 0xC0) == 0x80) {}
  if (keep + 4 > cap) keep = cap - 4;
  memcpy(tmp, s, keep);
  memcpy(tmp + keep, "\xE2\x80\xA6", 4);
  return tmp;
}

static double text_w(const char *s, double size) {
  int cps = 0;
  for (; s && *s; s++) cps += ((unsigned char)*s & 0xC0) != 0x80;
  return cps * size * 0.6;
}

/* Width of s clipped to max code points, at font size 11. */
static double clip_w(const char *s, int max) {
  char tmp[256];
  return text_w(clip(s, max, tmp, sizeof tmp), 11);
}

/* a[i], or "" when a or a[i] is NULL. */
static const char *at(const char *const *a, int i) { return a && a[i] ? a[i] : ""; }

/* <text> at (x, y); anchor "start" / "middle" / "end"; extra attributes verbatim. */
static void text(qg_buf *o, double x, double y, const char *anchor, double size, const char *extra,
                 const char *s) {
  qg_buf_printf(o, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"%s\" font-size=\"%g\"%s%s>", x, y, anchor, size,
                extra ? " " : "", extra ? extra : "");
  qg_svg_escape(o, s);
  qg_buf_str(o, "</text>\n");
}

/* <line> with the given stroke attributes. */
static void line(qg_buf *o, double x1, double y1, double x2, double y2, const char *attrs) {
  qg_buf_printf(o, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" %s/>\n", x1, y1, x2, y2, attrs);
}

static int imax(int a, int b) { return a > b ? a : b; }

static void strip_zeros(char *t) {
  if (!strchr(t, '.')) return;
  size_t n = strlen(t);
  while (n > 0 && t[n - 1] == '0') t[--n] = 0;
  if (n > 0 && t[n - 1] == '.') t[--n] = 0;
}

int qg_svg_fmt(char *buf, size_t cap, double v, int max_sig) {
  if (!isfinite(v)) return snprintf(buf, cap, "%s", isnan(v) ? "nan" : v > 0 ? "inf" : "-inf");
  if (v == 0) return snprintf(buf, cap, "0");
  max_sig = max_sig < 1 ? 1 : max_sig > 15 ? 15 : max_sig;
  char e[48];
  int s = 1;
  for (; s < max_sig; s++) { /* fewest digits that give v back (ticks like 0.30000000000000004) */
    snprintf(e, sizeof e, "%.*e", s - 1, v);
    if (fabs(strtod(e, NULL) - v) <= 1e-9 * fabs(v)) break;
  }
  snprintf(e, sizeof e, "%.*e", s - 1, v);
  const char *ep = strchr(e, 'e');
  int ex = atoi(ep + 1);
  char digits[24], t[64];
  int nd = 0;
  for (const char *q = e; q < ep; q++)
    if (*q >= '0' && *q <= '9') digits[nd++] = *q;
  digits[nd] = 0;
  /* Place the decimal point into the rounded digits: mantissa e exponent below 1e-3
   * (1.2e-4), plain up to 1e4, then scaled by k, M, G, ... (15.3M). */
  int sci = ex < -3 || ex >= 21, k = sci ? 0 : ex >= 4 ? ex / 3 : 0, p = sci ? 0 : ex - 3 * k;
  size_t n = 0; /* p + 1 digits go before the point */
  if (v < 0) t[n++] = '-';
  if (p < 0) {
    t[n++] = '0', t[n++] = '.';
    for (int i = -1; i > p; i--) t[n++] = '0';
  }
  for (int i = 0; i < nd || i <= p; i++) {
    t[n++] = i < nd ? digits[i] : '0';
    if (i == p && i + 1 < nd) t[n++] = '.';
  }
  t[n] = 0;
  strip_zeros(t);
  if (sci) return snprintf(buf, cap, "%se%d", t, ex);
  /* ex < 21 keeps k <= 6 (a string-literal subscript inside %.*s crashes GCC 12's format
   * checker at -O0, so the suffix is a plain char) */
  static const char suffix[] = "kMGTPE";
  char sfx[2] = {k ? suffix[k - 1] : 0, 0};
  return snprintf(buf, cap, "%s%s", t, sfx);
}

/* ---- axes ------------------------------------------------------------------------- */

typedef struct {
  double lo, hi, p0, p1; /* data range and the pixels it maps to */
  int log;
  double v[MAX_TICKS];   /* labelled ticks */
  char lab[MAX_TICKS][24];
  int n;
  double minor[2 * MAX_TICKS]; /* unlabelled ticks (log axes) */
  int n_minor;
} axis;

/* Pixel of v; values <= 0 on a log axis go to its low edge. */
static double amap(const axis *a, double v) {
  double t;
  if (a->log) t = v > 0 ? (log10(v) - log10(a->lo)) / (log10(a->hi) - log10(a->lo)) : 0;
  else t = (v - a->lo) / (a->hi - a->lo);
  return a->p0 + t * (a->p1 - a->p0);
}

static double nice_step(double raw) {
  double e = pow(10, floor(log10(raw))), f = raw / e;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * e;
}

/* Widens an empty range (all values equal) and pads by frac of the span (of log10 on a
 * log axis) so points do not sit on the frame. */
static void pad_range(double *lo, double *hi, int log, double frac) {
  double a = log ? log10(*lo) : *lo, b = log ? log10(*hi) : *hi;
  if (!(b - a > 1e-12 * fmax(fabs(a), fabs(b)))) {
    double d = log ? 0.5 : a == 0 ? 1 : fabs(a) * 0.1;
    a -= d, b += d;
  } else {
    double d = (b - a) * frac;
    a -= d, b += d;
  }
  *lo = log ? pow(10, a) : a;
  *hi = log ? pow(10, b) : b;
}

/* Extends the range to whole tick steps (linear) or decades (log spanning at least one). */
static void snap_range(double *lo, double *hi, int log) {
  if (log) {
    double a = log10(*lo), b = log10(*hi);
    if (b - a >= 1) *lo = pow(10, floor(a + 1e-9)), *hi = pow(10, ceil(b - 1e-9));
  } else {
    double st = nice_step((*hi - *lo) / 6);
    *lo = floor(*lo / st + 1e-9) * st;
    *hi = ceil(*hi / st - 1e-9) * st;
  }
}

static void lin_ticks(axis *a) {
  double st = nice_step((a->hi - a->lo) / 6);
  for (double k = ceil(a->lo / st - 1e-9); k <= floor(a->hi / st + 1e-9) && a->n < MAX_TICKS; k++) {
    double v = k * st;
    if (fabs(v) < st * 1e-9) v = 0;
    if (!a->log || v > 0) a->v[a->n++] = v;
  }
}

/* Linear axes: 1-2-5 steps. Log axes: decades (every k-th when there are many), with 2
 * and 5 labelled when fewer than three decades are in range; linear steps when that
 * still yields fewer than two labels. */
static void make_ticks(axis *a) {
  a->n = a->n_minor = 0;
  if (!a->log) {
    lin_ticks(a);
  } else {
    double la = log10(a->lo), lb = log10(a->hi), span = lb - la;
    int every = span > 7 ? (int)ceil(span / 6) : 1;
    int decades = (int)(floor(lb + 1e-9) - ceil(la - 1e-9)) + 1;
    for (int d = (int)floor(la); d <= (int)ceil(lb); d++)
      for (int m = 1; m <= 9; m++) {
        double v = m * pow(10, d);
        if (v < a->lo * (1 - 1e-9) || v > a->hi * (1 + 1e-9)) continue;
        int major = m == 1 ? ((d % every) + every) % every == 0 : decades < 3 && (m == 2 || m == 5);
        if (major && a->n < MAX_TICKS) a->v[a->n++] = v;
        else if (span <= 6 && a->n_minor < 2 * MAX_TICKS) a->minor[a->n_minor++] = v;
      }
    if (a->n < 2) {
      a->n = 0;
      lin_ticks(a);
    }
  }
  for (int i = 0; i < a->n; i++) qg_svg_fmt(a->lab[i], sizeof a->lab[i], a->v[i], 10);
}

static double max_label_w(const axis *a, double size) {
  double w = 0;
  for (int i = 0; i < a->n; i++) w = fmax(w, text_w(a->lab[i], size));
  return w;
}

/* ---- figure frame ----------------------------------------------------------------- */

typedef struct {
  qg_buf *o;
  const qg_svg_axes *ax;
  int W, H;
  double L, R, T, B; /* plot box */
  axis x, y;
} fig;

static void fig_open(fig *f) {
  qg_buf_printf(f->o,
                "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
                "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" fill=\"#222\">\n"
                "<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n",
                f->W, f->H, f->W, f->H, f->W, f->H);
  if (f->ax->title) {
    char tmp[512];
    text(f->o, f->W / 2.0, 24, "middle", 15, "font-weight=\"bold\"",
         clip(f->ax->title, (int)((f->W - 20) / 9.0), tmp, sizeof tmp));
  }
}

/* Top of the plot box: room for the title and for the vertical line's label above it. */
static double top_margin(const qg_svg_axes *ax) {
  return (ax->title ? 40 : 14) + (isfinite(ax->vline_x) && ax->vline_label ? 16 : 0);
}

/* Every stride-th label so that neighbours keep a gap (horizontal: by width). */
static int label_stride(const axis *a, int horizontal) {
  for (int s = 1; s < a->n; s++) {
    int ok = 1;
    for (int i = 0; i + s < a->n && ok; i += s) {
      double d = fabs(amap(a, a->v[i + s]) - amap(a, a->v[i]));
      double need = horizontal ? (text_w(a->lab[i], 11) + text_w(a->lab[i + s], 11)) / 2 + 8 : 15;
      ok = d >= need;
    }
    if (ok) return s;
  }
  return imax(a->n, 1);
}

/* Grid, ticks, labels, frame and the reference lines; the data go on top. */
static void draw_axes(fig *f, int x_grid, int y_grid) {
  qg_buf *o = f->o;
  const qg_svg_axes *ax = f->ax;
  const axis *x = &f->x, *y = &f->y;
  for (int i = 0; i < x->n && x_grid; i++) line(o, amap(x, x->v[i]), f->T, amap(x, x->v[i]), f->B, GRID);
  for (int i = 0; i < y->n && y_grid; i++) line(o, f->L, amap(y, y->v[i]), f->R, amap(y, y->v[i]), GRID);
  qg_buf_printf(o, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" stroke=\"#444\"/>\n",
                f->L, f->T, f->R - f->L, f->B - f->T);
  /* tick marks as one path per axis */
  qg_buf_str(o, "<path fill=\"none\" stroke=\"#444\" d=\"");
  for (int i = 0; i < x->n; i++) qg_buf_printf(o, "M%.2f %.2fv5", amap(x, x->v[i]), f->B);
  for (int i = 0; i < x->n_minor; i++) qg_buf_printf(o, "M%.2f %.2fv3", amap(x, x->minor[i]), f->B);
  for (int i = 0; i < y->n; i++) qg_buf_printf(o, "M%.2f %.2fh-5", f->L, amap(y, y->v[i]));
  for (int i = 0; i < y->n_minor; i++) qg_buf_printf(o, "M%.2f %.2fh-3", f->L, amap(y, y->minor[i]));
  qg_buf_str(o, "\"/>\n");
  int sx = label_stride(x, 1), sy = label_stride(y, 0);
  for (int i = 0; i < x->n; i += sx) text(o, amap(x, x->v[i]), f->B + 18, "middle", 11, NULL, x->lab[i]);
  for (int i = 0; i < y->n; i += sy) text(o, f->L - 8, amap(y, y->v[i]) + 4, "end", 11, NULL, y->lab[i]);
  char tmp[512];
  if (ax->x_label)
    text(o, (f->L + f->R) / 2, f->B + 40, "middle", 12, NULL,
         clip(ax->x_label, (int)((f->R - f->L) / 7.2), tmp, sizeof tmp));
  if (ax->y_label) {
    double cy = (f->T + f->B) / 2;
    char rot[64];
    snprintf(rot, sizeof rot, "transform=\"rotate(-90 16 %.2f)\"", cy);
    text(o, 16, cy, "middle", 12, rot, clip(ax->y_label, (int)((f->B - f->T) / 7.2), tmp, sizeof tmp));
  }
  if (isfinite(ax->vline_x)) {
    double px = amap(x, ax->vline_x);
    line(o, px, f->T, px, f->B, REF);
    if (ax->vline_label) {
      const char *s = clip(ax->vline_label, 40, tmp, sizeof tmp);
      double w = text_w(s, 11);
      const char *anchor = px - w / 2 < 4 ? "start" : px + w / 2 > f->W - 4 ? "end" : "middle";
      text(o, px, f->T - 6, anchor, 11, "fill=\"#555\"", s);
    }
  }
  if (isfinite(ax->hline_y)) {
    double py = amap(y, ax->hline_y);
    line(o, f->L, py, f->R, py, REF);
    if (ax->hline_label)
      text(o, f->R - 4, py - f->T < 16 ? py + 13 : py - 4, "end", 11, "fill=\"#555\"",
           clip(ax->hline_label, 40, tmp, sizeof tmp));
  }
}

/* Legend entry i at the right of the plot: a swatch (square, or a line with the series'
 * dash) and the clipped label. */
static void legend_entry(fig *f, int i, int is_line, const char *label) {
  double x = f->R + 14, y = f->T + 8 + 18 * i;
  char tmp[256];
  if (is_line) {
    snprintf(tmp, sizeof tmp, "stroke=\"%s\" stroke-width=\"2\"%s", PAL[i % 8], DASH[(i / 8) % 4]);
    line(f->o, x, y + 6, x + 16, y + 6, tmp);
  } else {
    qg_buf_printf(f->o, "<rect x=\"%.2f\" y=\"%.2f\" width=\"11\" height=\"11\" fill=\"%s\"/>\n", x + 2, y + 1,
                  PAL[i % 8]);
  }
  text(f->o, x + 22, y + 10.5, "start", 11, NULL, clip(label, LEGEND_MAX, tmp, sizeof tmp));
}

/* Horizontal layout shared by scatter and ECDF: y tick labels and y label at the left,
 * legend at the right, outside the data. */
static void layout_x(fig *f, double legend) {
  f->L = 10 + (f->ax->y_label ? 22 : 0) + max_label_w(&f->y, 11) + 10;
  f->R = f->W - 12 - legend;
  f->x.p0 = f->L, f->x.p1 = f->R;
}

static void layout_y(fig *f, int legend_rows) {
  double bottom = f->ax->x_label ? 52 : 32;
  f->T = top_margin(f->ax);
  f->H = imax(FIG_H, (int)ceil(f->T + 16 + 18 * legend_rows + bottom));
  f->B = f->H - bottom;
  f->y.p0 = f->B, f->y.p1 = f->T;
}

static qg_status finish(qg_buf *out, size_t n0, qg_status st) {
  if (st == QG_OK) {
    qg_buf_str(out, "</svg>\n");
    st = qg_buf_status(out);
  }
  if (st != QG_OK && !out->failed) out->n = n0; /* no half figure left behind */
  return st;
}

static void extend(double *lo, double *hi, double v) {
  if (v < *lo) *lo = v;
  if (v > *hi) *hi = v;
}

/* Checks a reference line against the axis; extends the range so it stays visible. */
static qg_status ref_line(const char *fn, const char *what, double v, int log, double *lo, double *hi) {
  if (isnan(v)) return QG_OK;
  if (!isfinite(v) || (log && v <= 0))
    return qg_fail(QG_ERR_INPUT, "%s: %s = %g cannot be drawn on a %s axis", fn, what, v, log ? "log" : "linear");
  extend(lo, hi, v);
  return QG_OK;
}

/* ---- scatter ---------------------------------------------------------------------- */

typedef struct { double x0, y0, x1, y1; } box;

static int overlaps(const box *a, const box *b) {
  return a->x0 < b->x1 && b->x0 < a->x1 && a->y0 < b->y1 && b->y0 < a->y1;
}

/* An error-bar end widens the range if it can be drawn (NaN: none; <= 0 on log: edge). */
static void bar_end(double v, int log, double *lo, double *hi) {
  if (isfinite(v) && (!log || v > 0)) extend(lo, hi, v);
}

qg_status qg_svg_scatter(qg_buf *out, const qg_svg_axes *ax, const qg_svg_point *p, int n) {
  static const char *fn = "qg_svg_scatter";
#define LABEL(i) (p[i].label ? p[i].label : "")
  if (!out) return qg_fail(QG_ERR_INPUT, "%s: no output buffer", fn);
  if (n <= 0 || !p) return qg_fail(QG_ERR_INPUT, "%s: no points to draw (n = %d)", fn, n);
  ax = ax ? ax : &NO_AXES;
  double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
  for (int i = 0; i < n; i++) {
    if (!isfinite(p[i].x) || !isfinite(p[i].y))
      return qg_fail(QG_ERR_INPUT, "%s: point %d (%s) has a non-finite coordinate (%g, %g)", fn, i, LABEL(i),
                     p[i].x, p[i].y);
    if ((ax->log_x && p[i].x <= 0) || (ax->log_y && p[i].y <= 0))
      return qg_fail(QG_ERR_INPUT, "%s: point %d (%s) at (%g, %g) has a value <= 0 on a log axis", fn, i,
                     LABEL(i), p[i].x, p[i].y);
    extend(&xlo, &xhi, p[i].x);
    extend(&ylo, &yhi, p[i].y);
    bar_end(p[i].x_lo, ax->log_x, &xlo, &xhi), bar_end(p[i].x_hi, ax->log_x, &xlo, &xhi);
    bar_end(p[i].y_lo, ax->log_y, &ylo, &yhi), bar_end(p[i].y_hi, ax->log_y, &ylo, &yhi);
  }
  QG_TRY(ref_line(fn, "vline_x", ax->vline_x, ax->log_x, &xlo, &xhi));
  QG_TRY(ref_line(fn, "hline_y", ax->hline_y, ax->log_y, &ylo, &yhi));
  box *boxes = malloc(sizeof(box) * 4 * (size_t)n); /* points, error bars, labels */
  if (!boxes) return qg_fail(QG_ERR_NOMEM, "%s: out of memory", fn);
  double lw = 0;
  for (int i = 0; i < n; i++) lw = fmax(lw, clip_w(LABEL(i), LEGEND_MAX));

  size_t n0 = out->n;
  fig f = {.o = out, .ax = ax, .W = FIG_W};
  f.x.lo = xlo, f.x.hi = xhi, f.x.log = ax->log_x;
  f.y.lo = ylo, f.y.hi = yhi, f.y.log = ax->log_y;
  pad_range(&f.x.lo, &f.x.hi, f.x.log, 0.06);
  pad_range(&f.y.lo, &f.y.hi, f.y.log, 0.08);
  make_ticks(&f.x);
  make_ticks(&f.y);
  layout_x(&f, lw + 36);
  layout_y(&f, n);
  fig_open(&f);
  draw_axes(&f, 1, 1);

  int placed = 0;
  for (int i = 0; i < n; i++) { /* error bars under the points, with caps */
    const qg_svg_point *q = &p[i];
    double px = amap(&f.x, q->x), py = amap(&f.y, q->y);
    int has_y = isfinite(q->y_lo) || isfinite(q->y_hi), has_x = isfinite(q->x_lo) || isfinite(q->x_hi);
    if (!has_y && !has_x) continue;
    qg_buf_printf(out, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" d=\"", PAL[i % 8]);
    if (has_y) {
      double a = isfinite(q->y_lo) ? amap(&f.y, q->y_lo) : py, b = isfinite(q->y_hi) ? amap(&f.y, q->y_hi) : py;
      qg_buf_printf(out, "M%.2f %.2fV%.2f", px, a, b);
      if (isfinite(q->y_lo)) qg_buf_printf(out, "M%.2f %.2fh8", px - 4, a);
      if (isfinite(q->y_hi)) qg_buf_printf(out, "M%.2f %.2fh8", px - 4, b);
      boxes[placed++] = (box){px - 4, fmin(a, b), px + 4, fmax(a, b)};
    }
    if (has_x) {
      double a = isfinite(q->x_lo) ? amap(&f.x, q->x_lo) : px, b = isfinite(q->x_hi) ? amap(&f.x, q->x_hi) : px;
      qg_buf_printf(out, "M%.2f %.2fH%.2f", a, py, b);
      if (isfinite(q->x_lo)) qg_buf_printf(out, "M%.2f %.2fv8", a, py - 4);
      if (isfinite(q->x_hi)) qg_buf_printf(out, "M%.2f %.2fv8", b, py - 4);
      boxes[placed++] = (box){fmin(a, b), py - 4, fmax(a, b), py + 4};
    }
    qg_buf_str(out, "\"/>\n");
  }
  for (int i = 0; i < n; i++) {
    double px = amap(&f.x, p[i].x), py = amap(&f.y, p[i].y);
    char xs[32], ys[32];
    qg_svg_fmt(xs, sizeof xs, p[i].x, 6);
    qg_svg_fmt(ys, sizeof ys, p[i].y, 6);
    qg_buf_printf(out, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"4.5\" fill=\"%s\" stroke=\"#ffffff\"><title>", px, py,
                  PAL[i % 8]);
    qg_svg_escape(out, LABEL(i));
    qg_buf_printf(out, ": x = %s, y = %s</title></circle>\n", xs, ys);
    boxes[placed++] = (box){px - 5, py - 5, px + 5, py + 5};
  }
  /* Point labels: the first free spot right or left of the point, nudged up or down, that
   * covers no point, error bar or earlier label; a point without room is named by the
   * legend. */
  for (int i = 0; i < n; i++) {
    char tmp[128];
    const char *s = clip(LABEL(i), POINT_LABEL_MAX, tmp, sizeof tmp);
    if (!*s) continue;
    double px = amap(&f.x, p[i].x), py = amap(&f.y, p[i].y), w = text_w(s, 11);
    double top = py - 5, bot = py + 5; /* the point with its vertical bar */
    if (isfinite(p[i].y_lo)) top = fmin(top, amap(&f.y, p[i].y_lo)), bot = fmax(bot, amap(&f.y, p[i].y_lo));
    if (isfinite(p[i].y_hi)) top = fmin(top, amap(&f.y, p[i].y_hi)), bot = fmax(bot, amap(&f.y, p[i].y_hi));
    static const double dy[5] = {0, -12, 12, -24, 24};
    for (int c = 0; c < 12; c++) { /* right, left (nudged), then above or below the bar */
      int left = c % 2;
      double x0 = left ? px - 8 - w : px + 8, y0 = py - 7 + dy[c / 2 % 5];
      if (c >= 10) x0 = px - w / 2, y0 = left ? bot + 2 : top - 15;
      box b = {x0, y0, x0 + w, y0 + 13};
      int ok = b.x0 >= f.L + 2 && b.x1 <= f.R - 2 && b.y0 >= f.T + 2 && b.y1 <= f.B - 2;
      for (int j = 0; j < placed && ok; j++) ok = !overlaps(&b, &boxes[j]);
      if (!ok) continue;
      boxes[placed++] = b;
      text(out, x0, y0 + 10, "start", 11, "fill=\"#333\"", s);
      break;
    }
  }
  for (int i = 0; i < n; i++) legend_entry(&f, i, 0, LABEL(i));
  free(boxes);
  return finish(out, n0, QG_OK);
#undef LABEL
}

/* ---- ECDF ------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static int cmp_size(const void *a, const void *b) {
  size_t x = *(const size_t *)a, y = *(const size_t *)b;
  return (x > y) - (x < y);
}

/* First index with v[i] > x (upper) or >= x (lower) in sorted v. */
static size_t bound(const double *v, size_t n, double x, int upper) {
  size_t lo = 0, hi = n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (upper ? v[mid] <= x : v[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

enum { ECDF_Q = 100, ECDF_P = 100 }; /* samples per series: by quantile and by x pixel */

/* The step line of sorted v: the exact ECDF evaluated at up to ECDF_Q quantiles and at
 * the first value past each of ECDF_P evenly spaced x pixels (so both the dense middle
 * and the sparse tails keep their shape), two vertices per sample. */
static void ecdf_path(fig *f, const double *v, size_t n, size_t *idx, int s) {
  size_t m = 0;
  if (n <= ECDF_Q + ECDF_P) {
    for (size_t i = 0; i < n; i++) idx[m++] = i;
  } else {
    for (size_t j = 0; j < ECDF_Q; j++) idx[m++] = (size_t)((double)j * (double)(n - 1) / (ECDF_Q - 1));
    for (int j = 0; j < ECDF_P; j++) {
      double t = (double)j / (ECDF_P - 1), a = f->x.lo, b = f->x.hi;
      size_t i = bound(v, n, f->x.log ? a * pow(b / a, t) : a + t * (b - a), 0);
      if (i < n) idx[m++] = i;
    }
    qsort(idx, m, sizeof *idx, cmp_size);
  }
  qg_buf_printf(f->o, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\"%s d=\"M%.2f %.2f", PAL[s % 8],
                DASH[(s / 8) % 4], f->L, amap(&f->y, 0));
  size_t done = 0; /* values below this index are already drawn */
  for (size_t k = 0; k < m; k++) {
    if (idx[k] < done) continue;
    size_t u = bound(v, n, v[idx[k]], 1); /* ties: F jumps past all of them */
    qg_buf_printf(f->o, "H%.2fV%.2f", amap(&f->x, v[idx[k]]), amap(&f->y, (double)u / (double)n));
    done = u;
  }
  qg_buf_printf(f->o, "H%.2f\"/>\n", f->R);
}

qg_status qg_svg_ecdf(qg_buf *out, const qg_svg_axes *ax, const char *const *names, const double *const *series,
                      const size_t *counts, int n_series) {
  static const char *fn = "qg_svg_ecdf";
  if (!out) return qg_fail(QG_ERR_INPUT, "%s: no output buffer", fn);
  if (n_series <= 0 || !series || !counts)
    return qg_fail(QG_ERR_INPUT, "%s: no series to draw (n_series = %d)", fn, n_series);
  ax = ax ? ax : &NO_AXES;
  double lo = INFINITY, hi = -INFINITY, minpos = INFINITY;
  size_t maxn = 0;
  for (int s = 0; s < n_series; s++) {
    const char *name = at(names, s);
    if (!series[s] || counts[s] == 0)
      return qg_fail(QG_ERR_INPUT, "%s: series %d (%s) has no values", fn, s, name);
    for (size_t i = 0; i < counts[s]; i++) {
      double v = series[s][i];
      if (!isfinite(v))
        return qg_fail(QG_ERR_INPUT, "%s: series %d (%s) value %zu is not finite (%g)", fn, s, name, i, v);
      extend(&lo, &hi, v);
      if (v > 0 && v < minpos) minpos = v;
    }
    if (counts[s] > maxn) maxn = counts[s];
  }
  if (ax->log_x) {
    if (!(minpos < INFINITY))
      return qg_fail(QG_ERR_INPUT, "%s: no value > 0 to place on the log x axis", fn);
    lo = minpos;
  }
  QG_TRY(ref_line(fn, "vline_x", ax->vline_x, ax->log_x, &lo, &hi));
  if (!isnan(ax->hline_y) && !(ax->hline_y >= 0 && ax->hline_y <= 1))
    return qg_fail(QG_ERR_INPUT, "%s: hline_y = %g is not a fraction in [0, 1]", fn, ax->hline_y);
  double *v = malloc(sizeof(double) * maxn);
  size_t *idx = malloc(sizeof(size_t) * (ECDF_Q + ECDF_P));
  char(*legend)[192] = malloc(sizeof *legend * (size_t)n_series);
  qg_status st = v && idx && legend ? QG_OK : qg_fail(QG_ERR_NOMEM, "%s: out of memory", fn);
  double lw = 0;
  for (int s = 0; s < n_series && st == QG_OK; s++) { /* legend texts, with the clamp count */
    char tmp[128], num[32];
    size_t neg = 0;
    for (size_t i = 0; ax->log_x && i < counts[s]; i++) neg += series[s][i] <= 0;
    const char *name = clip(at(names, s), LEGEND_MAX - 16, tmp, sizeof tmp);
    qg_svg_fmt(num, sizeof num, (double)neg, 3);
    if (neg) snprintf(legend[s], sizeof *legend, "%s (%s \xE2\x89\xA4 0 clamped)", name, num);
    else snprintf(legend[s], sizeof *legend, "%s", name);
    lw = fmax(lw, clip_w(legend[s], LEGEND_MAX));
  }
  size_t n0 = out->n;
  if (st == QG_OK) {
    fig f = {.o = out, .ax = ax, .W = FIG_W};
    f.x.lo = lo, f.x.hi = hi, f.x.log = ax->log_x;
    if (!(hi > lo) || !ax->log_x) pad_range(&f.x.lo, &f.x.hi, f.x.log, 0);
    snap_range(&f.x.lo, &f.x.hi, f.x.log);
    if (ax->log_x && log10(f.x.hi / f.x.lo) < 1) pad_range(&f.x.lo, &f.x.hi, 1, 0.04);
    f.y.lo = -0.02, f.y.hi = 1.02; /* the 0 and 1 levels stay clear of the frame */
    make_ticks(&f.x);
    make_ticks(&f.y);
    qg_svg_axes a2 = *ax;
    if (!a2.y_label) a2.y_label = "fraction \xE2\x89\xA4 x";
    f.ax = &a2;
    layout_x(&f, lw + 36);
    layout_y(&f, n_series);
    fig_open(&f);
    draw_axes(&f, 1, 1);
    for (int s = 0; s < n_series; s++) {
      memcpy(v, series[s], sizeof(double) * counts[s]);
      qsort(v, counts[s], sizeof(double), cmp_double);
      for (size_t i = 0; ax->log_x && i < counts[s] && v[i] <= 0; i++) v[i] = minpos;
      ecdf_path(&f, v, counts[s], idx, s);
    }
    for (int s = 0; s < n_series; s++) legend_entry(&f, s, 1, legend[s]);
  }
  free(legend);
  free(v);
  free(idx);
  return st == QG_OK ? finish(out, n0, st) : st;
}

/* ---- bars ------------------------------------------------------------------------- */

enum { BAR_H = 14, GROUP_PAD = 8, GROUP_LABEL_MAX = 32 };

qg_status qg_svg_bars(qg_buf *out, const qg_svg_axes *ax, const char *const *group_names, int n_groups,
                      const char *const *series_names, int n_series, const double *value, const double *err) {
  static const char *fn = "qg_svg_bars";
  if (!out) return qg_fail(QG_ERR_INPUT, "%s: no output buffer", fn);
  if (n_groups <= 0 || n_series <= 0 || !value)
    return qg_fail(QG_ERR_INPUT, "%s: nothing to draw (n_groups = %d, n_series = %d)", fn, n_groups, n_series);
  ax = ax ? ax : &NO_AXES;
  int lg = ax->log_x, nv = n_groups * n_series;
  double lo = lg ? INFINITY : 0, hi = lg ? -INFINITY : 0; /* linear bars grow from zero */
  for (int i = 0; i < nv; i++) {
    double v = value[i], e = err ? fabs(err[i]) : NAN;
    if (isnan(v)) continue; /* missing: drawn as "n/a" */
    if (!isfinite(v) || (lg && v <= 0))
      return qg_fail(QG_ERR_INPUT, "%s: value %g (group %d, series %d) cannot be drawn on a %s axis", fn, v,
                     i / n_series, i % n_series, lg ? "log" : "linear");
    extend(&lo, &hi, v);
    if (isfinite(e)) {
      if (!lg || v - e > 0) extend(&lo, &hi, v - e);
      extend(&lo, &hi, v + e);
    }
  }
  if (lg && !(lo < INFINITY)) lo = 1, hi = 10;
  QG_TRY(ref_line(fn, "vline_x", ax->vline_x, lg, &lo, &hi));
  if (!isnan(ax->hline_y)) return qg_fail(QG_ERR_INPUT, "%s: hline_y has no meaning for horizontal bars", fn);

  size_t n0 = out->n;
  fig f = {.o = out, .ax = ax, .W = FIG_W};
  axis *x = &f.x;
  x->log = lg;
  if (lg) { /* bars start at the decade below the smallest value */
    x->lo = pow(10, floor(log10(lo) - 1e-9)), x->hi = hi;
    pad_range(&x->lo, &x->hi, 1, 0);
    x->hi = pow(10, log10(x->hi) + 0.1 * log10(x->hi / x->lo));
  } else { /* room for the value labels past the bar ends */
    double span = hi - lo;
    if (!(span > 0)) hi = 1, span = 1;
    if (lo < 0) lo -= 0.12 * span;
    if (hi > 0) hi += 0.12 * span;
    x->lo = lo, x->hi = hi;
    snap_range(&x->lo, &x->hi, 0);
  }
  make_ticks(x);

  char tmp[256];
  double name_w = 0;
  for (int g = 0; g < n_groups; g++) name_w = fmax(name_w, clip_w(at(group_names, g), GROUP_LABEL_MAX));
  f.L = 12 + name_w + 10;
  double legend = 0;
  for (int s = 0; series_names && s < n_series; s++)
    legend = fmax(legend, clip_w(at(series_names, s), LEGEND_MAX) + 36);
  f.R = f.W - 12 - legend;
  if (f.R - f.L < 200) f.W += (int)(200 - (f.R - f.L)), f.R = f.W - 12 - legend;
  x->p0 = f.L, x->p1 = f.R;
  double group_h = n_series * BAR_H + 2 * GROUP_PAD, bottom = ax->x_label ? 52 : 32;
  f.T = top_margin(ax);
  f.B = f.T + n_groups * group_h;
  if (series_names && f.B < f.T + 16 + 18 * n_series) f.B = f.T + 16 + 18 * n_series;
  f.H = (int)ceil(f.B + bottom);
  /* the y axis is the group index; only its pixel range is used */
  f.y.lo = 0, f.y.hi = 1, f.y.p0 = f.B, f.y.p1 = f.T;
  qg_svg_axes a2 = *ax;
  a2.y_label = NULL; /* group names take the left margin */
  f.ax = &a2;
  fig_open(&f);
  for (int g = 1; g < n_groups; g += 2) /* banding keeps long rows readable */
    qg_buf_printf(out, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#f4f4f4\"/>\n", f.L,
                  f.T + g * group_h, f.R - f.L, group_h);
  draw_axes(&f, 1, 0);
  double x0 = lg ? f.L : amap(x, 0);
  for (int g = 0; g < n_groups; g++) {
    double gy = f.T + g * group_h;
    text(out, f.L - 8, gy + group_h / 2 + 4, "end", 11, NULL,
         clip(at(group_names, g), GROUP_LABEL_MAX, tmp, sizeof tmp));
    for (int s = 0; s < n_series; s++) {
      double v = value[g * n_series + s], e = err ? fabs(err[g * n_series + s]) : NAN;
      double by = gy + GROUP_PAD + s * BAR_H, cy = by + BAR_H / 2.0;
      char num[32], enm[32];
      if (isnan(v)) {
        text(out, x0 + 4, cy + 4, "start", 10, "fill=\"#888\"", "n/a");
        continue;
      }
      double xv = amap(x, v), left = fmin(x0, xv);
      qg_svg_fmt(num, sizeof num, v, 3);
      qg_buf_printf(out, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%d\" fill=\"%s\"><title>", left,
                    by + 1, fabs(xv - x0), BAR_H - 2, PAL[s % 8]);
      qg_svg_escape(out, at(group_names, g));
      qg_buf_str(out, " / ");
      qg_svg_escape(out, at(series_names, s));
      qg_svg_fmt(enm, sizeof enm, e, 3);
      qg_buf_printf(out, ": %s%s%s</title></rect>\n", num, isfinite(e) ? " \xC2\xB1 " : "", isfinite(e) ? enm : "");
      double end = xv; /* outer end of bar or whisker, where the value label goes */
      if (isfinite(e)) {
        double a = amap(x, v - e), b = amap(x, v + e);
        qg_buf_printf(out, "<path fill=\"none\" stroke=\"#333\" d=\"M%.2f %.2fH%.2fM%.2f %.2fv6M%.2f %.2fv6\"/>\n",
                      a, cy, b, a, cy - 3, b, cy - 3);
        end = v < 0 ? fmin(xv, a) : fmax(xv, b);
      }
      double w = text_w(num, 10);
      if (v >= 0 || lg) {
        if (end + 3 + w <= f.R - 2) text(out, end + 3, cy + 3.5, "start", 10, NULL, num);
        else text(out, fmax(f.L + w + 2, xv - 3), cy + 3.5, "end", 10, "fill=\"#ffffff\"", num);
      } else {
        if (end - 3 - w >= f.L + 2) text(out, end - 3, cy + 3.5, "end", 10, NULL, num);
        else text(out, fmin(f.R - w - 2, xv + 3), cy + 3.5, "start", 10, "fill=\"#ffffff\"", num);
      }
    }
  }
  if (!lg) line(out, x0, f.T, x0, f.B, "stroke=\"#000\" stroke-width=\"1.2\"");
  for (int s = 0; series_names && s < n_series; s++) legend_entry(&f, s, 0, series_names[s]);
  return finish(out, n0, QG_OK);
}
