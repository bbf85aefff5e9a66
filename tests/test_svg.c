/* lab/svg: the figures are well-formed XML with escaped text, the geometry goes the right
 * way (larger x to the right, larger y higher, log decades equally spaced, a budget line
 * between the points that straddle it, negative bars left of zero), a 1e6-value ECDF
 * stays small and monotone, number formatting, and degenerate or bad inputs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lab/svg.h"
#include "tests/testlib.h"

/* ---- a tiny XML checker ------------------------------------------------------------ */

static int name_char(char c) { return isalnum((unsigned char)c) || c == '-' || c == '_' || c == ':' || c == '.'; }

/* A valid entity reference at s ('&' ...)? */
static int entity_ok(const char *s) {
  static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
  for (int i = 0; i < 5; i++)
    if (!strncmp(s, ents[i], strlen(ents[i]))) return 1;
  if (s[1] == '#') {
    const char *p = s + 2;
    while (isxdigit((unsigned char)*p) || *p == 'x') p++;
    return p > s + 2 && *p == ';';
  }
  return 0;
}

/* Balanced tags, one root, quoted attributes without raw '<' or stray '&', no raw '<' or
 * stray '&' in text, and no "nan" / "inf" numbers. Prints why on failure. */
static int xml_ok(const char *s) {
  const char *stack[64];
  size_t len[64];
  int depth = 0, roots = 0;
  for (const char *p = s; *p;) {
    if (*p == '&') {
      if (!entity_ok(p)) return print_message("raw '&' in text at %ld\n", (long)(p - s)), 0;
      p++;
    } else if (*p != '<') {
      if (*p == '>') return print_message("raw '>' in text at %ld\n", (long)(p - s)), 0;
      if (depth == 0 && !isspace((unsigned char)*p)) return print_message("text outside the root\n"), 0;
      p++;
    } else if (p[1] == '/') {
      const char *n = p + 2, *e = n;
      while (name_char(*e)) e++;
      if (depth == 0 || (size_t)(e - n) != len[depth - 1] || strncmp(n, stack[depth - 1], len[depth - 1]) ||
          *e != '>')
        return print_message("unbalanced </%.*s> at %ld\n", (int)(e - n), n, (long)(p - s)), 0;
      depth--;
      p = e + 1;
    } else {
      const char *n = p + 1, *e = n;
      while (name_char(*e)) e++;
      if (e == n) return print_message("raw '<' at %ld\n", (long)(p - s)), 0;
      const char *q = e;
      for (;;) { /* attributes */
        while (isspace((unsigned char)*q)) q++;
        if (*q == '>' || (q[0] == '/' && q[1] == '>')) break;
        const char *an = q;
        while (name_char(*q)) q++;
        if (q == an || *q != '=' || (q[1] != '"' && q[1] != '\''))
          return print_message("bad attribute at %ld\n", (long)(q - s)), 0;
        char quote = q[1];
        q += 2;
        const char *vs = q;
        for (; *q && *q != quote; q++) {
          if (*q == '<') return print_message("raw '<' in attribute at %ld\n", (long)(q - s)), 0;
          if (*q == '&' && !entity_ok(q)) return print_message("raw '&' in attribute at %ld\n", (long)(q - s)), 0;
        }
        if (!*q) return print_message("unterminated attribute\n"), 0;
        if ((strstr(vs, "nan") && strstr(vs, "nan") < q) || (strstr(vs, "inf") && strstr(vs, "inf") < q))
          return print_message("non-finite number in attribute at %ld\n", (long)(vs - s)), 0;
        q++;
      }
      if (depth == 0 && ++roots > 1) return print_message("more than one root element\n"), 0;
      if (*q == '/') {
        p = q + 2;
      } else {
        if (depth == 64) return print_message("too deep\n"), 0;
        stack[depth] = n, len[depth] = (size_t)(e - n), depth++;
        p = q + 1;
      }
    }
  }
  if (depth != 0) return print_message("%d unclosed elements\n", depth), 0;
  return roots == 1;
}

/* The buffer as a string (appends a NUL that is not counted). */
static const char *str(qg_buf *b) {
  qg_buf_byte(b, 0);
  b->n--;
  return (const char *)b->p;
}

static void check_svg(qg_buf *b) {
  const char *s = str(b);
  assert_true(b->n > 0);
  assert_memory_equal(s, "<svg", 4);
  assert_non_null(strstr(s, "xmlns=\"http://www.w3.org/2000/svg\""));
  assert_non_null(strstr(s, "viewBox=\"0 0 "));
  assert_non_null(strstr(s, "font-family=\"sans-serif\""));
  assert_null(strstr(s, "<script"));
  assert_true(xml_ok(s));
}

/* The value of attribute `name` in the element starting at el (NAN if absent). */
static double attr(const char *el, const char *name) {
  const char *end = strchr(el, '>');
  char pat[32];
  snprintf(pat, sizeof pat, " %s=\"", name);
  const char *a = strstr(el, pat);
  return a && a < end ? strtod(a + strlen(pat), NULL) : NAN;
}

/* Attribute `name` of every <tag ...> (in document order), at most max. */
static int collect(const char *s, const char *tag, const char *name, double *out, int max) {
  char pat[32];
  snprintf(pat, sizeof pat, "<%s ", tag);
  int n = 0;
  for (const char *p = strstr(s, pat); p && n < max; p = strstr(p + 1, pat)) out[n++] = attr(p, name);
  return n;
}

/* The x1 of the dashed vertical line (the budget line). */
static double vline_x(const char *s) {
  for (const char *p = strstr(s, "<line "); p; p = strstr(p + 1, "<line ")) {
    const char *end = strchr(p, '>'), *d = strstr(p, "stroke-dasharray");
    if (d && d < end && attr(p, "x1") == attr(p, "x2")) return attr(p, "x1");
  }
  return NAN;
}

static qg_svg_point pt(const char *label, double x, double y, double ylo, double yhi) {
  qg_svg_point p = {label, x, y, ylo, yhi, NAN, NAN};
  return p;
}

static qg_svg_axes axes(const char *title) {
  qg_svg_axes a = {title, "artifact bytes", "KLD", 0, 0, NAN, NULL, NAN, NULL};
  return a;
}

/* ---- tests ------------------------------------------------------------------------- */

static void test_fmt(void **st) {
  (void)st;
  static const struct {
    double v;
    int sig;
    const char *want;
  } c[] = {{0, 10, "0"},          {1.2e-4, 10, "1.2e-4"}, {15.3e6, 10, "15.3M"}, {15345678, 3, "15.3M"},
           {1e6, 10, "1M"},       {12345, 3, "12.3k"},    {1500, 10, "1500"},    {0.25, 10, "0.25"},
           {-2.5, 10, "-2.5"},    {0.1 + 0.2, 10, "0.3"}, {0.0012, 10, "0.0012"}, {100, 10, "100"},
           {2e-7, 3, "2e-7"},     {-4.5e9, 10, "-4.5G"},  {999.96, 3, "1000"},   {1e25, 10, "1e25"}};
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
    char buf[32];
    qg_svg_fmt(buf, sizeof buf, c[i].v, c[i].sig);
    if (strcmp(buf, c[i].want)) {
      print_message("fmt(%.17g, %d) = %s, want %s\n", c[i].v, c[i].sig, buf, c[i].want);
      fail();
    }
  }
}

static void test_escape(void **st) {
  (void)st;
  qg_buf b;
  qg_buf_init(&b);
  qg_svg_escape(&b, "a<&>\"'b \x01 \xff \xC3\xA9");
  assert_string_equal(str(&b), "a&lt;&amp;&gt;&quot;&apos;b   \xEF\xBF\xBD \xC3\xA9");
  qg_buf_free(&b);

  /* every text path of every figure goes through the escaper */
  const char *evil = "<&>\"' arm";
  qg_svg_axes a = {evil, evil, evil, 0, 0, 2.0, evil, 0.5, evil};
  qg_svg_point p[2] = {pt(evil, 1, 0.2, 0.1, 0.3), pt("b", 3, 0.6, NAN, NAN)};
  qg_buf_init(&b);
  assert_int_equal(qg_svg_scatter(&b, &a, p, 2), QG_OK);
  check_svg(&b);
  assert_null(strstr(str(&b), "<&>"));
  assert_non_null(strstr(str(&b), "&lt;&amp;&gt;&quot;&apos; arm"));
  qg_buf_free(&b);

  const double s0[3] = {1, 2, 3};
  const double *series[1] = {s0};
  const size_t cnt[1] = {3};
  const char *names[1] = {evil};
  qg_buf_init(&b);
  assert_int_equal(qg_svg_ecdf(&b, &a, names, series, cnt, 1), QG_OK);
  check_svg(&b);
  assert_null(strstr(str(&b), "<&>"));
  qg_buf_free(&b);

  const char *groups[1] = {evil};
  const double val[1] = {1};
  a.hline_y = NAN;
  qg_buf_init(&b);
  assert_int_equal(qg_svg_bars(&b, &a, groups, 1, names, 1, val, NULL), QG_OK);
  check_svg(&b);
  assert_null(strstr(str(&b), "<&>"));
  assert_non_null(strstr(str(&b), "&lt;&amp;&gt;&quot;&apos; arm"));
  qg_buf_free(&b);
}

static void test_scatter_geometry(void **st) {
  (void)st;
  qg_svg_axes a = axes("KLD vs bytes");
  a.vline_x = 1.5e6, a.vline_label = "budget 1.5M";
  qg_svg_point p[3] = {pt("q4", 1e6, 0.30, 0.25, 0.35), pt("q5", 2e6, 0.10, 0.08, 0.12),
                       pt("q6", 3e6, 0.20, NAN, NAN)};
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_svg_scatter(&b, &a, p, 3), QG_OK);
  check_svg(&b);
  const char *s = str(&b);
  double cx[8], cy[8];
  assert_int_equal(collect(s, "circle", "cx", cx, 8), 3);
  assert_int_equal(collect(s, "circle", "cy", cy, 8), 3);
  assert_true(cx[0] < cx[1] && cx[1] < cx[2]);
  assert_true(cy[1] > cy[2] && cy[2] > cy[0]); /* y 0.1 < 0.2 < 0.3: lower on the page */
  double vx = vline_x(s);
  assert_true(cx[0] < vx && vx < cx[1]);
  assert_non_null(strstr(s, "budget 1.5M"));
  assert_non_null(strstr(s, "M</text>")); /* byte ticks in SI form */
  qg_buf_free(&b);
}

static void test_log_spacing(void **st) {
  (void)st;
  qg_svg_axes a = axes(NULL);
  a.log_x = a.log_y = 1;
  qg_svg_point p[3] = {pt("a", 10, 1000, NAN, NAN), pt("b", 100, 100, NAN, NAN), pt("c", 1000, 10, NAN, NAN)};
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_svg_scatter(&b, &a, p, 3), QG_OK);
  check_svg(&b);
  const char *s = str(&b);
  double cx[3], cy[3];
  collect(s, "circle", "cx", cx, 3);
  collect(s, "circle", "cy", cy, 3);
  assert_true(cx[1] - cx[0] > 50);
  assert_true(fabs((cx[1] - cx[0]) - (cx[2] - cx[1])) < 0.02);
  assert_true(cy[1] - cy[0] > 50);
  assert_true(fabs((cy[1] - cy[0]) - (cy[2] - cy[1])) < 0.02);
  assert_non_null(strstr(s, ">100</text>"));
  assert_non_null(strstr(s, ">1000</text>"));
  /* an ECDF over decades labels them too */
  const double v[3] = {10, 100, 1000};
  const double *series[1] = {v};
  const size_t cnt[1] = {3};
  qg_buf_free(&b);
  qg_buf_init(&b);
  assert_int_equal(qg_svg_ecdf(&b, &a, NULL, series, cnt, 1), QG_OK);
  check_svg(&b);
  assert_non_null(strstr(str(&b), ">10</text>"));
  assert_non_null(strstr(str(&b), ">1000</text>"));
  qg_buf_free(&b);
}

/* Walks the M/H/V path; checks x never decreases and SVG y never increases. Returns the
 * vertex count (-1 when not monotone); *y0 and *y1 get the first and last y. */
static int path_monotone(const char *d, double *y0, double *y1) {
  double x = 0, y = 0, px = -1e300, py = 1e300;
  int n = 0;
  for (const char *p = d; *p && *p != '"';) {
    char c = *p++;
    char *e;
    if (c == 'M') {
      x = strtod(p, &e);
      y = strtod(e, &e);
      *y0 = y;
    } else if (c == 'H') {
      x = strtod(p, &e);
    } else if (c == 'V') {
      y = strtod(p, &e);
    } else {
      return print_message("unexpected path command %c\n", c), -1;
    }
    p = e;
    if (x < px - 1e-9 || y > py + 1e-9) return print_message("not monotone at vertex %d\n", n), -1;
    px = x, py = y, n++;
  }
  *y1 = y;
  return n;
}

static void test_ecdf_big(void **st) {
  (void)st;
  enum { N = 1000000 };
  double *v[2] = {malloc(sizeof(double) * N), malloc(sizeof(double) * N)};
  assert_non_null(v[0]);
  assert_non_null(v[1]);
  uint64_t rng = 7;
  for (size_t i = 0; i < N; i++) { /* log-normal-ish per-token KLD, a few exact zeros */
    double u = (qg_test_randf(&rng) + 1) / 2, w = (qg_test_randf(&rng) + 1) / 2;
    v[0][i] = exp(-6 + 2.5 * sqrt(-2 * log(u + 1e-300)) * cos(6.283185307 * w));
    v[1][i] = i % 1000 == 0 ? 0 : v[0][i] * 0.6;
  }
  double keep = v[0][12345];
  qg_svg_axes a = axes("per-token KLD");
  a.x_label = "KLD (nats)";
  a.log_x = 1;
  a.hline_y = 0.99, a.hline_label = "p99";
  const char *names[2] = {"q4_k", "q5_k"};
  const double *series[2] = {v[0], v[1]};
  const size_t cnt[2] = {N, N};
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_svg_ecdf(&b, &a, names, series, cnt, 2), QG_OK);
  check_svg(&b);
  assert_true(b.n < 200 * 1024);
  assert_true(v[0][12345] == keep);
  const char *s = str(&b);
  assert_non_null(strstr(s, "clamped")); /* the zeros of the second series */
  int paths = 0;
  for (const char *p = strstr(s, "<path "); p; p = strstr(p + 1, "<path ")) {
    const char *d = strstr(p, " d=\"M");
    if (!strstr(p, "stroke-width=\"1.8\"") || strstr(p, "stroke-width=\"1.8\"") > strchr(p, '>')) continue;
    double y0, y1;
    int nv = path_monotone(d + 4, &y0, &y1);
    assert_true(nv > 50 && nv <= 410);
    assert_true(y0 > y1 + 100); /* from 0 at the bottom up to 1 */
    paths++;
  }
  assert_int_equal(paths, 2);
  qg_buf_free(&b);
  free(v[0]);
  free(v[1]);
}

/* A small ECDF is exact: one riser per distinct value, ties in one step. */
static void test_ecdf_small(void **st) {
  (void)st;
  const double v[5] = {3, 1, 2, 2, 5};
  const double *series[1] = {v};
  const size_t cnt[1] = {5};
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_svg_ecdf(&b, NULL, NULL, series, cnt, 1), QG_OK);
  check_svg(&b);
  const char *d = strstr(strstr(str(&b), "stroke-width=\"1.8\""), " d=\"M") + 4;
  double y0, y1;
  assert_int_equal(path_monotone(d, &y0, &y1), 1 + 2 * 4 + 1); /* M, 4 x (H V), H */
  qg_buf_free(&b);
}

static void test_bars(void **st) {
  (void)st;
  const char *groups[2] = {"attn_q", "ffn_down"};
  const char *series[2] = {"neg", "pos"};
  const double val[4] = {-0.5, 1.0, 0.25, NAN}, err[4] = {0.1, NAN, 0.05, NAN};
  qg_svg_axes a = axes("error by role");
  a.x_label = "relative error";
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_svg_bars(&b, &a, groups, 2, series, 2, val, err), QG_OK);
  check_svg(&b);
  const char *s = str(&b);
  const char *zero = strstr(s, ">0</text>");
  assert_non_null(zero);
  while (strncmp(zero, "<text", 5)) zero--;
  double zx = attr(zero, "x");
  const char *neg = strstr(s, "attn_q / neg");
  const char *pos = strstr(s, "attn_q / pos");
  assert_non_null(neg);
  assert_non_null(pos);
  while (strncmp(neg, "<rect", 5)) neg--;
  while (strncmp(pos, "<rect", 5)) pos--;
  double nx = attr(neg, "x"), nw = attr(neg, "width"), px = attr(pos, "x"), pw = attr(pos, "width");
  assert_true(nx < zx && fabs(nx + nw - zx) < 0.02);
  assert_true(fabs(px - zx) < 0.02 && pw > 1.9 * nw);
  assert_non_null(strstr(s, "n/a"));
  qg_buf_free(&b);
}

static void expect_input_error(qg_status st, qg_buf *b, const char *msg_part) {
  assert_int_equal(st, QG_ERR_INPUT);
  assert_int_equal(b->n, 0);
  if (!strstr(qg_last_error(), msg_part)) {
    print_message("message \"%s\" lacks \"%s\"\n", qg_last_error(), msg_part);
    fail();
  }
}

static void test_degenerate(void **st) {
  (void)st;
  qg_buf b;
  qg_buf_init(&b);
  qg_svg_axes a = axes("degenerate");
  qg_svg_point one = pt("only", 5, 5, NAN, NAN);
  assert_int_equal(qg_svg_scatter(&b, &a, &one, 1), QG_OK);
  check_svg(&b);
  size_t paths_none = 0, paths_bar = 0;
  for (const char *p = strstr(str(&b), "<path"); p; p = strstr(p + 1, "<path")) paths_none++;
  qg_buf_free(&b);
  qg_buf_init(&b);
  one.y_lo = 4, one.y_hi = 6;
  assert_int_equal(qg_svg_scatter(&b, &a, &one, 1), QG_OK);
  for (const char *p = strstr(str(&b), "<path"); p; p = strstr(p + 1, "<path")) paths_bar++;
  assert_int_equal(paths_bar, paths_none + 1); /* the NaN bar was omitted, this one drawn */
  qg_buf_free(&b);

  qg_buf_init(&b); /* all equal, on both kinds of axis */
  qg_svg_point same[3] = {pt("a", 2, 0, NAN, NAN), pt("b", 2, 0, NAN, NAN), pt("c", 2, 0, NAN, NAN)};
  assert_int_equal(qg_svg_scatter(&b, &a, same, 3), QG_OK);
  check_svg(&b);
  qg_buf_free(&b);
  qg_buf_init(&b);
  a.log_x = 1;
  assert_int_equal(qg_svg_scatter(&b, &a, same, 3), QG_OK);
  check_svg(&b);
  qg_buf_free(&b);
  const double eq[4] = {0.5, 0.5, 0.5, 0.5};
  const double *series[1] = {eq};
  size_t cnt[1] = {4};
  qg_buf_init(&b);
  assert_int_equal(qg_svg_ecdf(&b, &a, NULL, series, cnt, 1), QG_OK);
  check_svg(&b);
  qg_buf_free(&b);
  const double zeros[2] = {0, 0};
  qg_buf_init(&b);
  assert_int_equal(qg_svg_bars(&b, NULL, NULL, 1, NULL, 2, zeros, NULL), QG_OK);
  check_svg(&b);
  qg_buf_free(&b);

  /* bad input: an error with a message, nothing appended */
  qg_buf_init(&b);
  a.log_x = 0;
  expect_input_error(qg_svg_scatter(&b, &a, &one, 0), &b, "no points");
  expect_input_error(qg_svg_scatter(&b, &a, NULL, 2), &b, "no points");
  qg_svg_point bad = pt("neg", -1, 0.1, NAN, NAN);
  a.log_x = 1;
  expect_input_error(qg_svg_scatter(&b, &a, &bad, 1), &b, "log axis");
  a.log_x = 0;
  bad.x = NAN;
  expect_input_error(qg_svg_scatter(&b, &a, &bad, 1), &b, "non-finite");
  a.log_x = 1, a.vline_x = 0;
  expect_input_error(qg_svg_scatter(&b, &a, &one, 1), &b, "vline_x");
  a.vline_x = NAN;
  expect_input_error(qg_svg_ecdf(&b, &a, NULL, series, cnt, 0), &b, "no series");
  cnt[0] = 0;
  expect_input_error(qg_svg_ecdf(&b, &a, NULL, series, cnt, 1), &b, "no values");
  series[0] = zeros, cnt[0] = 2;
  expect_input_error(qg_svg_ecdf(&b, &a, NULL, series, cnt, 1), &b, "no value > 0");
  const double nonfinite[2] = {1, INFINITY};
  series[0] = nonfinite;
  expect_input_error(qg_svg_ecdf(&b, &a, NULL, series, cnt, 1), &b, "not finite");
  expect_input_error(qg_svg_bars(&b, &a, NULL, 0, NULL, 1, zeros, NULL), &b, "nothing to draw");
  expect_input_error(qg_svg_bars(&b, &a, NULL, 1, NULL, 2, zeros, NULL), &b, "log");

  /* an error leaves earlier content alone */
  qg_buf_str(&b, "keep");
  assert_int_equal(qg_svg_scatter(&b, &a, &bad, 1), QG_ERR_INPUT);
  assert_int_equal(b.n, 4);
  qg_buf_free(&b);
}

/* Many arms with long names: legend and labels stay inside the canvas. */
static void test_many_long_labels(void **st) {
  (void)st;
  qg_svg_point p[20];
  char names[20][80];
  for (int i = 0; i < 20; i++) {
    snprintf(names[i], sizeof names[i], "arm %d with a very long descriptive name that goes on", i);
    p[i] = pt(names[i], 1e6 + 1e4 * i, 0.1 + 0.001 * i, NAN, NAN);
  }
  qg_svg_axes a = axes("crowded");
  qg_buf b;
  qg_buf_init(&b);
  assert_int_equal(qg_svg_scatter(&b, &a, p, 20), QG_OK);
  check_svg(&b);
  const char *s = str(&b);
  double w = attr(s, "width"), h = attr(s, "height"), tx[200], ty[200];
  int n = collect(s, "text", "x", tx, 200);
  collect(s, "text", "y", ty, 200);
  for (int i = 0; i < n; i++) assert_true(tx[i] >= 0 && tx[i] <= w && ty[i] >= 0 && ty[i] <= h);
  qg_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fmt),         cmocka_unit_test(test_escape),
      cmocka_unit_test(test_scatter_geometry), cmocka_unit_test(test_log_spacing),
      cmocka_unit_test(test_ecdf_big),    cmocka_unit_test(test_ecdf_small),
      cmocka_unit_test(test_bars),        cmocka_unit_test(test_degenerate),
      cmocka_unit_test(test_many_long_labels),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
