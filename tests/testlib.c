#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tests/testlib.h"

#include "core/file.h"
#include "core/tensor.h"
#include "quant/quant_internal.h"
#include "quant/quantizer.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

const char *qg_test_contest_file(const char *name) {
  static char path[4096];
  const char *dir = getenv("QG_CONTEST_DIR");
  if (dir && *dir)
    snprintf(path, sizeof path, "%s/%s", dir, name);
  else
    snprintf(path, sizeof path, "%s/../shared/contest/%s", QG_SOURCE_DIR, name);
  return access(path, R_OK) == 0 ? path : NULL;
}

char *qg_test_tmpdir(void) {
  char tmpl[] = "/tmp/qgtest.XXXXXX";
  char *d = mkdtemp(tmpl);
  assert_non_null(d);
  return strdup(d);
}

void qg_test_rmdir(char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(dir);
  free(dir);
}

const char *qg_test_path(const char *dir, const char *name) {
  static char p[4096];
  snprintf(p, sizeof p, "%s/%s", dir, name);
  return p;
}

void qg_test_slurp(const char *path, char *buf, size_t cap) {
  if (!buf || !cap) return;
  buf[0] = 0;
  FILE *f = fopen(path, "rb");
  if (!f) return;
  size_t n = fread(buf, 1, cap - 1, f);
  buf[n] = 0;
  fclose(f);
}

int qg_test_run_cli(const char *args, char *out, size_t out_cap, char *err, size_t err_cap) {
  char *dir = qg_test_tmpdir();
  char o[4200], e[4200], cmd[16384];
  snprintf(o, sizeof o, "%s/stdout", dir);
  snprintf(e, sizeof e, "%s/stderr", dir);
  snprintf(cmd, sizeof cmd, "'%s' %s >'%s' 2>'%s'", QG_CLI_PATH, args, o, e);
  int r = system(cmd);
  qg_test_slurp(o, out, out_cap);
  qg_test_slurp(e, err, err_cap);
  qg_test_rmdir(dir);
  if (r == -1 || !WIFEXITED(r)) return -1;
  return WEXITSTATUS(r);
}

void qg_test_write(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, n, f), n);
  assert_int_equal(fclose(f), 0);
}

int qg_test_exists(const char *path) { return access(path, F_OK) == 0; }

int qg_test_count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return -1;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

uint64_t qg_test_rand(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

float qg_test_randf(uint64_t *s) { return (float)((qg_test_rand(s) >> 40) * (1.0 / 8388608.0)) - 1.0f; }

const char *qg_test_data_file(const char *name) {
  static char p[4096];
  snprintf(p, sizeof p, "%s/tests/data/%s", QG_SOURCE_DIR, name);
  return p;
}

void qg_test_check_manifest(const void *state, const char *manifest_path, int expected_count) {
  const qg_state *s = state;
  uint8_t *m;
  size_t len;
  assert_int_equal(qg_read_file(manifest_path, &m, &len, 0), QG_OK);
  size_t pos = 0;
  int count = 0;
  while (pos < len) {
    char line[512];
    const uint8_t *nl = memchr(m + pos, '\n', len - pos);
    assert_non_null(nl);
    size_t ll = (size_t)(nl - (m + pos));
    assert_true(ll < sizeof line);
    memcpy(line, m + pos, ll);
    line[ll] = 0;
    pos += ll + 1;
    char name[128], dtype[32];
    int ndim, off;
    assert_int_equal(sscanf(line, "%127s %31s %d%n", name, dtype, &ndim, &off), 3);
    long long dims[8], nbytes;
    char *p = line + off;
    for (int i = 0; i < ndim; i++) dims[i] = strtoll(p, &p, 10);
    nbytes = strtoll(p, &p, 10);
    const qg_tensor *t = qg_state_find_c(s, name);
    if (!t) fail_msg("tensor '%s' missing", name);
    assert_string_equal(qg_dtype_name(t->dtype), dtype);
    assert_int_equal(t->ndim, ndim);
    for (int i = 0; i < ndim; i++) assert_int_equal(t->shape[i], dims[i]);
    assert_int_equal(t->nbytes, (size_t)nbytes);
    assert_memory_equal(t->data, m + pos, (size_t)nbytes);
    pos += (size_t)nbytes;
    count++;
  }
  assert_int_equal(count, s->n);
  assert_int_equal(count, expected_count);
  free(m);
}

double qg_test_rel_err(const float *got, const float *ref, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isnan(got[i])) return NAN;
    double e = (double)got[i] - ref[i];
    num += e * e;
    den += (double)ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

void qg_test_expect_close(const char *what, const float *got, const float *ref, int64_t n, double tol) {
  double e = qg_test_rel_err(got, ref, n);
  int same = memcmp(got, ref, sizeof(float) * (size_t)n) == 0;
  print_message("  %-52s rel err %.2e%s\n", what, e, same ? " (bit-identical)" : "");
  if (!(e <= tol)) fail_msg("%s: relative error %.3e exceeds %.0e", what, e, tol);
}

/* qg_quantize twice, the per-row grid work on the thread pool and then sequentially on
 * the calling thread (qg_quant_serial): every section must be bitwise the same. */
void qg_test_threaded_equals_serial(const char *method, const char *opts, const void *input) {
  const qg_qinput *in = input;
  qg_qconfig c;
  qg_qtensor a, b;
  assert_int_equal(qg_qconfig_parse(method, opts, &c), QG_OK);
  qg_quant_serial = 0;
  assert_int_equal(qg_quantize(&c, in, &a), QG_OK);
  qg_quant_serial = 1;
  assert_int_equal(qg_quantize(&c, in, &b), QG_OK);
  qg_quant_serial = 0;
  assert_int_equal(a.nsec, b.nsec);
  for (int i = 0; i < a.nsec; i++) {
    const qg_qsection *x = &a.sec[i], *y = &b.sec[i];
    static const size_t elem[QG_SEC_KIND_COUNT] = {4, 2, 2, 4, 1};
    assert_string_equal(x->name, y->name);
    assert_int_equal(x->kind, y->kind);
    assert_int_equal(x->bits, y->bits);
    assert_int_equal(x->count, y->count);
    if (memcmp(x->data, y->data, (size_t)x->count * elem[x->kind]))
      fail_msg("%s %s: section '%s' differs between the thread pool and a sequential run", method, opts, x->name);
  }
  qg_qtensor_free(&a);
  qg_qtensor_free(&b);
  qg_qconfig_free(&c);
}

