/* The twin harness: one table-driven runner for code that exists on two backends (the
 * model of ggml's test-backend-ops), shared by the GPU test programs.
 *
 *  - Preamble: qg_twin_need_gpu() skips the calling test with one visible line starting
 *    "SKIP" (the Makefile collects them) unless a CUDA GPU is present; a GPU that is
 *    present but whose backend fails to start is a failure, not a skip.
 *  - Twin rows (qg_twin_row): a name, shapes, a function running the op on a given
 *    backend and a tolerance with its reason. The runner calls the function once on the
 *    CPU and once on the GPU table, each time from the same freshly seeded stream, so
 *    both see the same random inputs; outputs the function reports (qg_twin_result) are
 *    compared in order by ||test - ref|| / ||ref|| (NaN never passes). Device outputs
 *    an op overwrites come from qg_twin_poison (NaN), so an element never written fails.
 *  - Finite-difference rows (qg_twin_fd_row): a backward op against central differences
 *    of its forward, L = sum(w * forward(x)) summed in fp64, on the CPU backend; the
 *    error ||g - fd|| / max(||fd||, 1) per variable (the weights w are O(1)).
 *  - qg_twin_main runs a program's tables plus its hand-written tests. Without a GPU the
 *    twin rows still run once, CPU against CPU, as a self-check of the rows themselves
 *    (every output written, the inputs reproducible): a harness that only ever skips
 *    would be untested. */
#ifndef QG_TESTS_TWIN_H
#define QG_TESTS_TWIN_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/cuda_precision.h"
#include "kernels/ops.h"

/* Fails the current test with the expression and the library's last error. */
#define QG_TEST_OK(expr)                                               \
  do {                                                                 \
    qg_status s_ = (expr);                                             \
    if (s_) fail_msg("%s: %s", #expr, qg_last_error());                \
  } while (0)

/* The CUDA fp32 table, or a visible skip of the calling test where there is no GPU. */
const qg_ops *qg_twin_need_gpu(void);
/* The CUDA table at a precision (after qg_twin_need_gpu); fails when it cannot start. */
const qg_ops *qg_twin_gpu(qg_precision p);

/* ---- one backend's run of a row --------------------------------------------------------- */

#define QG_TWIN_MAX_BUFS 96
#define QG_TWIN_MAX_RESULTS 32
#define QG_TWIN_MAX_SHAPES 20
#define QG_TWIN_MAX_DIMS 6
#define QG_TWIN_ROW_TOL (-1.0) /* a result compared at its row's tolerance */

typedef struct {
  char what[96];
  double *v;
  int64_t n;
  double tol;
} qg_twin_value;

typedef struct {
  const qg_ops *o;        /* the backend this run uses */
  qg_precision precision; /* of o: fp32 for the CPU */
  int on_cpu;             /* o is the CPU table: pointers are host memory */
  uint64_t rng;           /* the inputs' stream, seeded alike for both runs */
  void *host[QG_TWIN_MAX_BUFS], *dev[QG_TWIN_MAX_BUFS];
  int nh, nd;
  qg_twin_value res[QG_TWIN_MAX_RESULTS];
  int nres;
} qg_twin_io;

/* Host buffers (freed with the run): n uniform values in [-scale, scale) never exactly
 * zero, in [lo, hi), ids below `below`, or any malloc'd pointer to keep. */
float *qg_twin_randh(qg_twin_io *io, int64_t n, float scale);
float *qg_twin_rangeh(qg_twin_io *io, int64_t n, float lo, float hi);
int32_t *qg_twin_idsh(qg_twin_io *io, int64_t n, int below);
void *qg_twin_keep(qg_twin_io *io, void *p);
/* Backend buffers (freed with the run): a copy of host data, random values, ids, NaN
 * (outputs to be overwritten), zeros (gradients to be accumulated from nothing). */
void *qg_twin_up(qg_twin_io *io, const void *host, size_t bytes);
float *qg_twin_upf(qg_twin_io *io, const float *host, int64_t n);
float *qg_twin_rand(qg_twin_io *io, int64_t n, float scale);
int32_t *qg_twin_ids(qg_twin_io *io, int64_t n, int below);
float *qg_twin_poison(qg_twin_io *io, int64_t n);
float *qg_twin_zeros(qg_twin_io *io, int64_t n);
/* A host copy (freed with the run) of n floats of backend memory. */
float *qg_twin_down(qg_twin_io *io, const float *d, int64_t n);
/* Reports an output to compare: backend memory, host floats or host doubles; tol is
 * QG_TWIN_ROW_TOL or a tolerance of its own (0: bit-identical). */
void qg_twin_result(qg_twin_io *io, const char *what, const float *d, int64_t n, double tol);
void qg_twin_result_host(qg_twin_io *io, const char *what, const float *h, int64_t n, double tol);
void qg_twin_result_d(qg_twin_io *io, const char *what, const double *h, int64_t n, double tol);
/* Frees every buffer and result of the run. */
void qg_twin_io_release(qg_twin_io *io);

typedef struct {
  const char *name;
  const char *dims; /* the shape entries' names, blank-separated, for the messages */
  void (*run)(qg_twin_io *io, const int64_t *shape);
  int64_t shapes[QG_TWIN_MAX_SHAPES][QG_TWIN_MAX_DIMS]; /* up to the first whose entry 0 is 0 */
  double tol;
  const char *why;        /* the tolerance's reason (printed with a failure) */
  qg_precision precision; /* the GPU table the row runs on */
} qg_twin_row;

/* Runs a row on two backends (ref first) and compares; prints one line per result.
 * Returns the number of results over tolerance (or mismatched between the runs), the
 * first failure described in msg. Does not fail the test itself. */
int qg_twin_compare(const qg_twin_row *r, const qg_ops *ref, const qg_ops *test, qg_precision test_precision,
                    char *msg, size_t cap);

/* ---- finite differences ------------------------------------------------------------------ */

#define QG_TWIN_MAX_VARS 6

typedef struct {
  qg_twin_io io; /* setup's buffers persist; each loss/grad call's are freed after it */
  int keep_h, keep_d;
  int nvar;
  struct {
    char name[32];
    float *x, *g; /* host: the input, the backward's gradient */
    int64_t n;
  } var[QG_TWIN_MAX_VARS];
} qg_twin_fd;

/* A differentiable input (host, the loss reads it through qg_twin_upf): n values drawn
 * as qg_twin_randh, which setup may still adjust (e.g. away from a kink). */
float *qg_twin_fd_var(qg_twin_fd *f, const char *name, int64_t n, float scale);
/* From grad(): the gradient of a variable (backend memory, the variable's size). */
void qg_twin_fd_grad(qg_twin_fd *f, const char *name, const float *d);
/* sum(w * y) in fp64, w on the host, y backend memory (the usual loss). */
double qg_twin_dot(qg_twin_io *io, const float *w, const float *y, int64_t n);

typedef struct {
  const char *name;
  const char *dims;
  int64_t shapes[QG_TWIN_MAX_SHAPES][QG_TWIN_MAX_DIMS];
  /* draws the variables and constants (dy = w among them) */
  void (*setup)(qg_twin_fd *f, const int64_t *shape);
  /* the forward on f->io.o from the variables' current values: L in fp64 */
  double (*loss)(qg_twin_fd *f, const int64_t *shape);
  /* the backward with dy = w: every variable's gradient through qg_twin_fd_grad */
  void (*grad)(qg_twin_fd *f, const int64_t *shape);
  double tol;
  const char *why;
  double step;         /* relative step h = step * max(1, |x|); 0: 1e-3 */
  int64_t max_entries; /* per variable, a seeded sample beyond it; 0: 256 */
} qg_twin_fd_row;

/* Checks a row on a backend; returns the number of variables over tolerance (message in
 * msg) without failing the test. */
int qg_twin_fd_check(const qg_twin_fd_row *r, const qg_ops *o, char *msg, size_t cap);

/* ---- a program ------------------------------------------------------------------------- */

/* Runs, as cmocka tests: each twin row (CPU against the row's GPU table; skipped without
 * a GPU), one self-check running every twin row CPU against CPU (bit-identical, so each
 * row writes all it reports and draws its inputs reproducibly), each finite-difference
 * row on the CPU, then the hand-written tests. */
struct CMUnitTest;
int qg_twin_main(const char *group, const qg_twin_row *rows, size_t nrows, const qg_twin_fd_row *fd, size_t nfd,
                 const struct CMUnitTest *extra, size_t nextra);

#endif
