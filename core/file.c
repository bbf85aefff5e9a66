#define _POSIX_C_SOURCE 200809L
#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/util.h"

static qg_status qg_open_regular_fd(const char *path, int *fd_out, struct stat *st) {
  /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever,
   * before fstat could tell it is not a file */
  int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return qg_fail(QG_ERR_INPUT, "%s: cannot open: %s", path, strerror(errno));
  if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
    int dir = S_ISDIR(st->st_mode);
    close(fd);
    return qg_fail(QG_ERR_INPUT, "%s: %s", path, dir ? "is a directory, not a file" : "not a regular file");
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
  *fd_out = fd;
  return QG_OK;
}

qg_status qg_open_regular(const char *path, FILE **out) {
  int fd = -1; /* set on success; -O3 cannot see that */
  struct stat st;
  *out = NULL;
  QG_TRY(qg_open_regular_fd(path, &fd, &st));
  if (!(*out = fdopen(fd, "rb"))) {
    close(fd);
    return qg_fail(QG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
  }
  return QG_OK;
}

qg_status qg_read_file(const char *path, uint8_t **data, size_t *len, size_t max_len) {
  *data = NULL;
  *len = 0;
  FILE *f;
  QG_TRY(qg_open_regular(path, &f));
  struct stat st;
  if (fstat(fileno(f), &st) != 0) {
    fclose(f);
    return qg_fail(QG_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
  }
  size_t n = (size_t)st.st_size;
  if (max_len && n > max_len) {
    fclose(f);
    return qg_fail(QG_ERR_INPUT, "%s: %zu bytes, larger than the %zu-byte limit", path, n, max_len);
  }
  uint8_t *buf = malloc(n + 1);
  if (!buf) {
    fclose(f);
    return qg_fail(QG_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, n);
  }
  size_t got = n ? fread(buf, 1, n, f) : 0;
  fclose(f);
  if (got != n) {
    free(buf);
    return qg_fail(QG_ERR_IO, "%s: short read (%zu of %zu bytes)", path, got, n);
  }
  buf[n] = 0;
  *data = buf;
  *len = n;
  return QG_OK;
}

static const uint8_t qg_empty_byte = 0;

qg_status qg_mmap_open(const char *path, qg_mmap *m) {
  memset(m, 0, sizeof *m);
  int fd;
  struct stat st;
  QG_TRY(qg_open_regular_fd(path, &fd, &st));
  if (st.st_size == 0) {
    close(fd);
    m->data = &qg_empty_byte;
    return QG_OK;
  }
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return qg_fail(QG_ERR_IO, "%s: mmap failed: %s", path, strerror(errno));
  m->data = p;
  m->len = (size_t)st.st_size;
  m->mapped = 1;
  return QG_OK;
}

void qg_mmap_close(qg_mmap *m) {
  if (m->mapped) munmap((void *)m->data, m->len);
  memset(m, 0, sizeof *m);
}

static atomic_uint qg_tmp_counter;

qg_status qg_atomic_open(qg_atomic_file *a, const char *path) {
  memset(a, 0, sizeof *a);
  size_t n = strlen(path) + 64;
  a->tmp = malloc(n);
  a->path = qg_strdup(path);
  if (!a->tmp || !a->path) {
    free(a->tmp);
    free(a->path);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  snprintf(a->tmp, n, "%s.tmp.%ld.%u", path, (long)getpid(), atomic_fetch_add(&qg_tmp_counter, 1));
  /* A directory named as the output would only fail at the final rename, after all the
   * work; say so now. */
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    free(a->tmp);
    free(a->path);
    a->tmp = a->path = NULL;
    return qg_fail(QG_ERR_INPUT, "%s: is a directory; give a file name for the output", path);
  }
  a->f = fopen(a->tmp, "wb");
  if (!a->f) {
    /* a missing, read-only or non-directory parent is a bad output path (exit 2), not a
     * runtime failure */
    int e = errno;
    int usage = e == ENOENT || e == ENOTDIR || e == EACCES || e == EROFS || e == EPERM || e == ENAMETOOLONG;
    qg_status s = qg_fail(usage ? QG_ERR_INPUT : QG_ERR_IO, "%s: cannot create the output: %s", path, strerror(e));
    free(a->tmp);
    free(a->path);
    a->tmp = a->path = NULL;
    return s;
  }
  return QG_OK;
}

qg_status qg_atomic_write(qg_atomic_file *a, const void *data, size_t n) {
  if (a->failed) return QG_ERR_IO;
  if (n && fwrite(data, 1, n, a->f) != n) {
    a->failed = 1;
    return qg_fail(QG_ERR_IO, "%s: write failed: %s", a->tmp, strerror(errno));
  }
  return QG_OK;
}

qg_status qg_atomic_commit(qg_atomic_file *a) {
  qg_status s = QG_OK;
  if (a->failed) s = qg_fail(QG_ERR_IO, "%s: earlier write failed", a->path);
  if (!s && fflush(a->f) != 0) s = qg_fail(QG_ERR_IO, "%s: flush failed: %s", a->tmp, strerror(errno));
  if (!s && fsync(fileno(a->f)) != 0 && errno != EINVAL)
    s = qg_fail(QG_ERR_IO, "%s: fsync failed: %s", a->tmp, strerror(errno));
  if (fclose(a->f) != 0 && !s) s = qg_fail(QG_ERR_IO, "%s: close failed: %s", a->tmp, strerror(errno));
  a->f = NULL;
  if (!s && rename(a->tmp, a->path) != 0)
    s = qg_fail(QG_ERR_IO, "%s: rename to %s failed: %s", a->tmp, a->path, strerror(errno));
  if (s) unlink(a->tmp);
  free(a->tmp);
  free(a->path);
  a->tmp = a->path = NULL;
  return s;
}

void qg_atomic_abort(qg_atomic_file *a) {
  if (a->f) fclose(a->f);
  if (a->tmp) unlink(a->tmp);
  free(a->tmp);
  free(a->path);
  memset(a, 0, sizeof *a);
}

qg_status qg_write_file_atomic(const char *path, const void *data, size_t n) {
  qg_atomic_file a;
  QG_TRY(qg_atomic_open(&a, path));
  qg_status s = qg_atomic_write(&a, data, n);
  if (s) {
    qg_atomic_abort(&a);
    return s;
  }
  return qg_atomic_commit(&a);
}

qg_status qg_glob_sorted(const char *pattern, char ***paths, int *count) {
  *paths = NULL;
  *count = 0;
  glob_t g;
  int r = glob(pattern, 0, NULL, &g); /* glob() sorts by default (no GLOB_NOSORT) */
  if (r == GLOB_NOMATCH) return qg_fail(QG_ERR_INPUT, "%s: no file matches", pattern);
  if (r != 0) return qg_fail(QG_ERR_IO, "%s: glob failed", pattern);
  char **v = calloc(g.gl_pathc ? g.gl_pathc : 1, sizeof *v);
  if (!v) {
    globfree(&g);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  for (size_t i = 0; i < g.gl_pathc; i++) {
    v[i] = qg_strdup(g.gl_pathv[i]);
    if (!v[i]) {
      qg_free_strings(v, (int)i);
      globfree(&g);
      return qg_fail(QG_ERR_NOMEM, "out of memory");
    }
  }
  *count = (int)g.gl_pathc;
  *paths = v;
  globfree(&g);
  return QG_OK;
}

void qg_free_strings(char **v, int n) {
  if (!v) return;
  for (int i = 0; i < n; i++) free(v[i]);
  free(v);
}

qg_status qg_mkdir_p(const char *path) {
  size_t n = strlen(path);
  char *tmp = malloc(n + 1);
  if (!tmp) return qg_fail(QG_ERR_NOMEM, "out of memory");
  memcpy(tmp, path, n + 1);
  qg_status s = QG_OK;
  for (char *p = tmp + 1; !s; p++) {
    int end = !*p;
    if (*p != '/' && !end) continue;
    *p = 0;
    if (mkdir(tmp, 0777) && errno != EEXIST) s = qg_fail(QG_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    if (end) break;
    *p = '/';
  }
  free(tmp);
  return s;
}
