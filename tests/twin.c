/* The twin harness (tests/twin.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/twin.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_device.h"
#include "tests/testlib.h"

/* ---- preamble ------------------------------------------------------------------------- */

const qg_ops *qg_twin_need_gpu(void) {
  if (!qg_cuda_compiled() || qg_cuda_device_count() == 0) {
    char why[256];
    qg_cuda_describe(why, sizeof why);
    print_message("SKIP: no CUDA GPU (%s)\n", why);
    skip();
  }
  return qg_twin_gpu(QG_PRECISION_FP32);
}

const qg_ops *qg_twin_gpu(qg_precision p) {
  const qg_ops *g, *o;
  QG_TEST_OK(qg_ops_cuda(&g));
  QG_TEST_OK(qg_ops_with_precision(g, p, &o));
  return o;
}

/* ---- buffers ---------------------------------------------------------------------------- */

void *qg_twin_keep(qg_twin_io *io, void *p) {
  assert_non_null(p);
  assert_true(io->nh < QG_TWIN_MAX_BUFS);
  return io->host[io->nh++] = p;
}

static void *halloc(qg_twin_io *io, size_t bytes) { return qg_twin_keep(io, malloc(bytes ? bytes : 1)); }

float *qg_twin_randh(qg_twin_io *io, int64_t n, float scale) {
  float *p = halloc(io, sizeof *p * (size_t)n);
  for (int64_t i = 0; i < n; i++) {
    float v = qg_test_randf(&io->rng);
    p[i] = (v != 0.0f ? v : 0.5f) * scale; /* exact zeros would hide a missing term */
  }
  return p;
}

float *qg_twin_rangeh(qg_twin_io *io, int64_t n, float lo, float hi) {
  float *p = halloc(io, sizeof *p * (size_t)n);
  for (int64_t i = 0; i < n; i++) p[i] = lo + (hi - lo) * 0.5f * (qg_test_randf(&io->rng) + 1.0f);
  return p;
}

int32_t *qg_twin_idsh(qg_twin_io *io, int64_t n, int below) {
  int32_t *p = halloc(io, sizeof *p * (size_t)n);
  for (int64_t i = 0; i < n; i++) p[i] = (int32_t)(qg_test_rand(&io->rng) % (uint64_t)below);
  return p;
}

void *qg_twin_up(qg_twin_io *io, const void *host, size_t bytes) {
  void *d;
  QG_TEST_OK(io->o->alloc(io->o, &d, bytes ? bytes : 1));
  assert_true(io->nd < QG_TWIN_MAX_BUFS);
  io->dev[io->nd++] = d;
  if (bytes) QG_TEST_OK(io->o->upload(io->o, d, host, bytes));
  return d;
}

float *qg_twin_upf(qg_twin_io *io, const float *host, int64_t n) { return qg_twin_up(io, host, sizeof(float) * (size_t)n); }
float *qg_twin_rand(qg_twin_io *io, int64_t n, float scale) { return qg_twin_upf(io, qg_twin_randh(io, n, scale), n); }
int32_t *qg_twin_ids(qg_twin_io *io, int64_t n, int below) {
  return qg_twin_up(io, qg_twin_idsh(io, n, below), sizeof(int32_t) * (size_t)n);
}

static float *filled(qg_twin_io *io, int64_t n, float v) {
  float *h = malloc(sizeof *h * (size_t)(n ? n : 1));
  assert_non_null(h);
  for (int64_t i = 0; i < n; i++) h[i] = v;
  float *d = qg_twin_upf(io, h, n);
  free(h);
  return d;
}

float *qg_twin_poison(qg_twin_io *io, int64_t n) { return filled(io, n, NAN); }
float *qg_twin_zeros(qg_twin_io *io, int64_t n) { return filled(io, n, 0.0f); }

float *qg_twin_down(qg_twin_io *io, const float *d, int64_t n) {
  float *h = halloc(io, sizeof *h * (size_t)n);
  if (n) QG_TEST_OK(io->o->download(io->o, h, d, sizeof *h * (size_t)n));
  return h;
}

void qg_twin_result_d(qg_twin_io *io, const char *what, const double *h, int64_t n, double tol) {
  assert_true(io->nres < QG_TWIN_MAX_RESULTS);
  qg_twin_value *v = &io->res[io->nres++];
  snprintf(v->what, sizeof v->what, "%s", what);
  v->v = malloc(sizeof *v->v * (size_t)(n ? n : 1));
  assert_non_null(v->v);
  memcpy(v->v, h, sizeof *v->v * (size_t)n);
  v->n = n;
  v->tol = tol;
}

void qg_twin_result_host(qg_twin_io *io, const char *what, const float *h, int64_t n, double tol) {
  double *d = malloc(sizeof *d * (size_t)(n ? n : 1));
  assert_non_null(d);
  for (int64_t i = 0; i < n; i++) d[i] = h[i];
  qg_twin_result_d(io, what, d, n, tol);
  free(d);
}

void qg_twin_result(qg_twin_io *io, const char *what, const float *d, int64_t n, double tol) {
  qg_twin_result_host(io, what, qg_twin_down(io, d, n), n, tol);
}

static void release_to(qg_twin_io *io, int nh, int nd) {
  while (io->nh > nh) free(io->host[--io->nh]);
  while (io->nd > nd) io->o->free(io->o, io->dev[--io->nd]);
}

void qg_twin_io_release(qg_twin_io *io) {
  release_to(io, 0, 0);
  while (io->nres) free(io->res[--io->nres].v);
}

/* ---- twin rows ---------------------------------------------------------------------------- */

/* The inputs' seed: from the row's name and the shape's index, so every row and shape
 * draws its own inputs, the same on both backends and from run to run. */
static uint64_t row_seed(const char *name, int shape) {
  uint64_t h = 1469598103934665603ull;
  for (const char *c = name; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
  return h ^ ((uint64_t)shape * 0x9e3779b97f4a7c15ull);
}

static int nshapes(const int64_t (*shapes)[QG_TWIN_MAX_DIMS]) {
  int n = 0;
  while (n < QG_TWIN_MAX_SHAPES && shapes[n][0] != 0) n++;
  return n;
}

/* "name d0=.. d1=.." from the row's dims legend. */
static void label(char *buf, size_t cap, const char *name, const char *dims, const int64_t *shape) {
  size_t k = (size_t)snprintf(buf, cap, "%s", name);
  const char *p = dims ? dims : "";
  for (int i = 0; i < QG_TWIN_MAX_DIMS && *p && k < cap; i++) {
    while (*p == ' ') p++;
    size_t l = strcspn(p, " ");
    if (!l) break;
    k += (size_t)snprintf(buf + k, cap - k, " %.*s=%lld", (int)l, p, (long long)shape[i]);
    p += l;
  }
}

/* ||got - ref|| / ||ref|| (||got - ref|| for an all-zero ref); NaN on either side is NaN. */
static double rel_err_d(const double *got, const double *ref, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(got[i]) || isnan(ref[i])) return NAN;
    double e = got[i] - ref[i];
    num += e * e;
    den += ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static void run_on(const qg_twin_row *r, int s, const qg_ops *o, qg_precision p, qg_twin_io *io) {
  memset(io, 0, sizeof *io);
  io->o = o;
  io->precision = p;
  io->on_cpu = strcmp(o->name, "cpu") == 0;
  io->rng = row_seed(r->name, s);
  r->run(io, r->shapes[s]);
}

int qg_twin_compare(const qg_twin_row *r, const qg_ops *ref, const qg_ops *test, qg_precision test_precision,
                    char *msg, size_t cap) {
  int fails = 0, ns = nshapes(r->shapes);
  if (cap) msg[0] = 0;
  for (int s = 0; s < ns; s++) {
    qg_twin_io a, b;
    char lab[160];
    label(lab, sizeof lab, r->name, r->dims, r->shapes[s]);
    run_on(r, s, ref, QG_PRECISION_FP32, &a);
    run_on(r, s, test, test_precision, &b);
    if (a.nres != b.nres || a.nres == 0) {
      fails++;
      if (cap && !msg[0]) snprintf(msg, cap, "%s: %d results on %s, %d on %s", lab, a.nres, ref->name, b.nres, test->name);
    }
    for (int i = 0; i < a.nres && i < b.nres; i++) {
      const qg_twin_value *x = &a.res[i], *y = &b.res[i];
      double tol = x->tol >= 0 ? x->tol : r->tol;
      char what[300];
      snprintf(what, sizeof what, "%s: %s", lab, x->what);
      if (strcmp(x->what, y->what) || x->n != y->n) {
        fails++;
        if (cap && !msg[0]) snprintf(msg, cap, "%s: the runs report different results (%s)", what, y->what);
        continue;
      }
      double e = rel_err_d(y->v, x->v, x->n);
      int same = memcmp(x->v, y->v, sizeof(double) * (size_t)x->n) == 0;
      print_message("  %-70s rel err %.2e%s\n", what, e, same ? " (bit-identical)" : "");
      if (!(e <= tol)) {
        fails++;
        if (cap && !msg[0])
          snprintf(msg, cap, "%s: %s vs %s relative error %.3e exceeds %.0e (%s)", what, test->name, ref->name, e, tol,
                   x->tol >= 0 ? "this result's own tolerance" : r->why);
      }
    }
    qg_twin_io_release(&a);
    qg_twin_io_release(&b);
  }
  return fails;
}

static void twin_test(void **state) {
  const qg_twin_row *r = *state;
  qg_twin_need_gpu();
  char msg[512];
  if (qg_twin_compare(r, qg_ops_cpu(), qg_twin_gpu(r->precision), r->precision, msg, sizeof msg)) fail_msg("%s", msg);
}

/* ---- finite differences ------------------------------------------------------------------- */

float *qg_twin_fd_var(qg_twin_fd *f, const char *name, int64_t n, float scale) {
  assert_true(f->nvar < QG_TWIN_MAX_VARS);
  float *x = qg_twin_randh(&f->io, n, scale);
  f->var[f->nvar].x = x;
  f->var[f->nvar].g = NULL;
  f->var[f->nvar].n = n;
  snprintf(f->var[f->nvar].name, sizeof f->var[0].name, "%s", name);
  f->nvar++;
  return x;
}

void qg_twin_fd_grad(qg_twin_fd *f, const char *name, const float *d) {
  for (int i = 0; i < f->nvar; i++)
    if (!strcmp(f->var[i].name, name)) {
      float *g = malloc(sizeof *g * (size_t)f->var[i].n);
      assert_non_null(g);
      if (f->var[i].n) QG_TEST_OK(f->io.o->download(f->io.o, g, d, sizeof *g * (size_t)f->var[i].n));
      free(f->var[i].g);
      f->var[i].g = g;
      return;
    }
  fail_msg("gradient of '%s', which is not a variable", name);
}

double qg_twin_dot(qg_twin_io *io, const float *w, const float *y, int64_t n) {
  const float *h = qg_twin_down(io, y, n);
  double s = 0;
  for (int64_t i = 0; i < n; i++) s += (double)w[i] * h[i];
  return s;
}

static double fd_loss(const qg_twin_fd_row *r, qg_twin_fd *f, const int64_t *shape) {
  double l = r->loss(f, shape);
  release_to(&f->io, f->keep_h, f->keep_d);
  return l;
}

int qg_twin_fd_check(const qg_twin_fd_row *r, const qg_ops *o, char *msg, size_t cap) {
  int fails = 0, ns = nshapes(r->shapes);
  double step = r->step > 0 ? r->step : 1e-3;
  int64_t maxe = r->max_entries > 0 ? r->max_entries : 256;
  if (cap) msg[0] = 0;
  for (int s = 0; s < ns; s++) {
    const int64_t *shape = r->shapes[s];
    char lab[160];
    label(lab, sizeof lab, r->name, r->dims, shape);
    qg_twin_fd f;
    memset(&f, 0, sizeof f);
    f.io.o = o;
    f.io.precision = QG_PRECISION_FP32;
    f.io.on_cpu = strcmp(o->name, "cpu") == 0;
    f.io.rng = row_seed(r->name, s);
    r->setup(&f, shape);
    f.keep_h = f.io.nh, f.keep_d = f.io.nd;
    r->grad(&f, shape);
    release_to(&f.io, f.keep_h, f.keep_d);
    for (int v = 0; v < f.nvar; v++) {
      float *x = f.var[v].x, *g = f.var[v].g;
      int64_t n = f.var[v].n, m = n < maxe ? n : maxe;
      char what[300];
      snprintf(what, sizeof what, "%s: d%s", lab, f.var[v].name);
      if (!g) {
        fails++;
        if (cap && !msg[0]) snprintf(msg, cap, "%s: grad() reported no gradient", what);
        continue;
      }
      uint64_t pick = row_seed(f.var[v].name, s);
      double num = 0, den = 0;
      for (int64_t k = 0; k < m; k++) {
        int64_t i = m < n ? (int64_t)(qg_test_rand(&pick) % (uint64_t)n) : k;
        float x0 = x[i];
        double h = step * fmax(1.0, fabs((double)x0));
        /* the step actually taken is between the two fp32 inputs the forward sees */
        float xp = (float)(x0 + h), xm = (float)(x0 - h);
        x[i] = xp;
        double lp = fd_loss(r, &f, shape);
        x[i] = xm;
        double lm = fd_loss(r, &f, shape);
        x[i] = x0;
        double fd = (lp - lm) / ((double)xp - (double)xm);
        num += (g[i] - fd) * (g[i] - fd);
        den += fd * fd;
      }
      /* relative to max(||fd||, 1): the losses' weights are O(1), so a gradient that is
       * rightly (near) zero, e.g. attention over a single position, is held to the
       * tolerance absolutely instead of dividing noise by nothing */
      double e = sqrt(num) / fmax(sqrt(den), 1.0);
      print_message("  %-62s %5lld entries  rel err %.2e\n", what, (long long)m, e);
      if (!(e <= r->tol)) {
        fails++;
        if (cap && !msg[0])
          snprintf(msg, cap, "%s: backward vs central differences of the forward on %s: relative error %.3e exceeds "
                   "%.0e (%s)", what, o->name, e, r->tol, r->why);
      }
    }
    for (int v = 0; v < f.nvar; v++) free(f.var[v].g);
    qg_twin_io_release(&f.io);
  }
  return fails;
}

static void fd_test(void **state) {
  const qg_twin_fd_row *r = *state;
  char msg[512];
  if (qg_twin_fd_check(r, qg_ops_cpu(), msg, sizeof msg)) fail_msg("%s", msg);
}

/* ---- a program ---------------------------------------------------------------------------- */

static const qg_twin_row *self_rows;
static size_t self_n;

/* Every twin row twice on the CPU: bit-identical (the rows are deterministic and write
 * everything they report), in every build. */
static void self_check(void **state) {
  (void)state;
  int fails = 0;
  char msg[512], first[512] = "";
  for (size_t i = 0; i < self_n; i++)
    if (qg_twin_compare(&self_rows[i], qg_ops_cpu(), qg_ops_cpu(), QG_PRECISION_FP32, msg, sizeof msg) && !fails++)
      snprintf(first, sizeof first, "%s", msg);
  if (fails) fail_msg("CPU against CPU, %d failures; the first: %s", fails, first);
}

/* Bit-identical self-check: the tolerance is 0 whatever the row says. */
static const qg_twin_row *exact_rows(const qg_twin_row *rows, size_t n) {
  qg_twin_row *e = malloc(sizeof *e * (n ? n : 1));
  assert_non_null(e);
  memcpy(e, rows, sizeof *e * n);
  for (size_t i = 0; i < n; i++) e[i].tol = 0, e[i].why = "the same backend twice must agree bit for bit";
  return e;
}

int qg_twin_main(const char *group, const qg_twin_row *rows, size_t nrows, const qg_twin_fd_row *fd, size_t nfd,
                 const struct CMUnitTest *extra, size_t nextra) {
  size_t n = nrows + (nrows ? 1 : 0) + nfd + nextra;
  struct CMUnitTest *t = calloc(n ? n : 1, sizeof *t);
  char **names = calloc(nfd ? nfd : 1, sizeof *names);
  if (!t || !names) return 1;
  size_t k = 0;
  for (size_t i = 0; i < nrows; i++) t[k].name = rows[i].name, t[k].test_func = twin_test, t[k++].initial_state = (void *)&rows[i];
  if (nrows) {
    self_rows = exact_rows(rows, nrows), self_n = nrows;
    t[k].name = "twin rows, CPU against CPU", t[k++].test_func = self_check;
  }
  for (size_t i = 0; i < nfd; i++) {
    names[i] = malloc(strlen(fd[i].name) + 32);
    if (!names[i]) return 1;
    sprintf(names[i], "%s (finite differences)", fd[i].name);
    t[k].name = names[i], t[k].test_func = fd_test, t[k++].initial_state = (void *)&fd[i];
  }
  for (size_t i = 0; i < nextra; i++) t[k++] = extra[i];
  int rc = _cmocka_run_group_tests(group, t, k, NULL, NULL);
  for (size_t i = 0; i < nfd; i++) free(names[i]);
  free(names), free(t), free((void *)self_rows);
  return rc;
}
