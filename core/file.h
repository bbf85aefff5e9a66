/* Files: whole-file reads, read-only memory maps, and atomic writes (temp + rename), so a
 * failed write never leaves a partial output file behind. */
#ifndef QG_CORE_FILE_H
#define QG_CORE_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

/* Reads the whole file into a malloc'd buffer (with a trailing NUL not counted in *len).
 * max_len guards against absurd sizes (0 = no limit). */
qg_status qg_read_file(const char *path, uint8_t **data, size_t *len, size_t max_len);

/* Opens a regular file for reading; anything else (a FIFO, a device, a directory) is
 * refused without blocking. Every reader opens input files through this or the two
 * functions around it. */
qg_status qg_open_regular(const char *path, FILE **out);

/* A read-only memory map of a whole file. */
typedef struct {
  const uint8_t *data;
  size_t len;
  int mapped; /* 0 when the file was empty (data points to a static empty byte) */
} qg_mmap;

qg_status qg_mmap_open(const char *path, qg_mmap *m);
void qg_mmap_close(qg_mmap *m);

/* Atomic writer: bytes go to "<path>.tmp.<pid>.<n>" in the same directory; commit fsyncs
 * and renames over path; abort unlinks the temporary. Either commit or abort must be
 * called exactly once. */
typedef struct {
  FILE *f;
  char *path;
  char *tmp;
  int failed;
} qg_atomic_file;

qg_status qg_atomic_open(qg_atomic_file *a, const char *path);
qg_status qg_atomic_write(qg_atomic_file *a, const void *data, size_t n);
qg_status qg_atomic_commit(qg_atomic_file *a);
void qg_atomic_abort(qg_atomic_file *a);

/* Writes a whole buffer atomically. */
qg_status qg_write_file_atomic(const char *path, const void *data, size_t n);

/* Creates a folder and its missing parents (an existing one is fine). */
qg_status qg_mkdir_p(const char *path);

/* Lists files matching a glob pattern in sorted order (malloc'd array of malloc'd
 * strings). No match is an error naming the pattern. */
qg_status qg_glob_sorted(const char *pattern, char ***paths, int *count);
void qg_free_strings(char **v, int n);

#endif
