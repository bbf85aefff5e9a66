/* Helpers shared by the cmocka tests: locating ../shared/contest, temp dirs, running the
 * CLI. Include after <cmocka.h>'s prerequisites (stdarg, stddef, setjmp, stdint). */
#ifndef QG_TESTS_TESTLIB_H
#define QG_TESTS_TESTLIB_H

#include <stddef.h>
#include <stdint.h>

/* Path of a file in the contest folder (QG_CONTEST_DIR or <source>/../shared/contest), or
 * NULL when absent. The returned string is static storage, overwritten by the next call. */
const char *qg_test_contest_file(const char *name);

/* Skips the current cmocka test with a visible message unless the contest file exists;
 * otherwise sets `var` to its path. */
#define QG_REQUIRE_CONTEST_FILE(var, name)                                           \
  do {                                                                               \
    var = qg_test_contest_file(name);                                                \
    if (!var) {                                                                      \
      print_message("SKIP: %s not found (needs ../shared/contest beside the "       \
                    "checkout, or QG_CONTEST_DIR)\n", name);                         \
      skip();                                                                        \
    }                                                                                \
  } while (0)

/* A fresh temporary directory (malloc'd path), removed with qg_test_rmdir. */
char *qg_test_tmpdir(void);
void qg_test_rmdir(char *dir);
/* "<dir>/<name>" in static storage (overwritten by the next call). */
const char *qg_test_path(const char *dir, const char *name);

/* Runs the quantgolf CLI with a shell-quoted argument string; captures stderr and stdout
 * (each truncated to cap-1 bytes) and returns the exit code (-1 if it died by signal). */
int qg_test_run_cli(const char *args, char *out, size_t out_cap, char *err, size_t err_cap);
/* The file at path into buf, NUL-terminated (empty when it cannot be read). */
void qg_test_slurp(const char *path, char *buf, size_t cap);

/* Path of a file in tests/data (static storage, overwritten by the next call). */
const char *qg_test_data_file(const char *name);
/* Asserts that a state equals a manifest written by the tests/reference scripts (per
 * tensor a line "name dtype ndim dims... nbytes" then the raw bytes), tensor for tensor
 * and byte for byte, and that both hold `expected_count` tensors. */
void qg_test_check_manifest(const void *state, const char *manifest_path, int expected_count);

/* Normwise relative error ||got - ref|| / ||ref|| (||got - ref|| when ref is all zero),
 * NaN as soon as got holds a NaN (outputs are poisoned with NaN before device runs, so an
 * unwritten element fails). */
double qg_test_rel_err(const float *got, const float *ref, int64_t n);
/* Prints the relative error (and whether got is bit-identical) and fails the test when it
 * exceeds tol. */
void qg_test_expect_close(const char *what, const float *got, const float *ref, int64_t n, double tol);

/* Quantizes the input twice, the per-row work on the thread pool and then sequentially
 * (qg_quant_serial), and asserts that every section is bitwise the same. `in` is a
 * const qg_qinput *. */
void qg_test_threaded_equals_serial(const char *method, const char *opts, const void *in);

/* Writes bytes to a file (test helper; aborts the test on failure). */
void qg_test_write(const char *path, const void *data, size_t n);
int qg_test_exists(const char *path);
/* Number of directory entries (excluding . and ..), to check no temp files are left. */
int qg_test_count_entries(const char *dir);
/* Deterministic pseudo-random generator for tests (splitmix64). */
uint64_t qg_test_rand(uint64_t *state);
float qg_test_randf(uint64_t *state); /* uniform in [-1, 1) */

#endif
