/* The zip container of torch.save files: a reader over an in-memory image (stored
 * entries only, as torch writes them; zip64 understood) and a writer that lays out
 * stored entries 64-byte aligned the way torch's own writer does. */
#ifndef QG_IO_ZIP_H
#define QG_IO_ZIP_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/util.h"

typedef struct {
  char *name;
  uint64_t data_offset; /* where the stored bytes begin in the image */
  uint64_t size;
  uint32_t crc32;
  int crc_checked; /* the CRC is verified the first time the entry is read */
} qg_zip_entry;

typedef struct {
  const uint8_t *data; /* not owned */
  size_t len;
  char *fname; /* for messages */
  qg_zip_entry *entries;
  int n;
} qg_zip;

/* Parses the central directory of a zip image held in memory. Every offset and length is
 * checked against the image; compressed or encrypted entries are unsupported. */
qg_status qg_zip_open_mem(const uint8_t *data, size_t len, const char *fname, qg_zip *z);
void qg_zip_close(qg_zip *z);
qg_zip_entry *qg_zip_find(const qg_zip *z, const char *name);
/* Points *p at an entry's bytes after checking its CRC-32. */
qg_status qg_zip_read(const qg_zip *z, qg_zip_entry *e, const uint8_t **p, size_t *n);

/* Writer: entries are appended to an in-memory image, then qg_zip_finish adds the central
 * directory. Data is stored (no compression) and starts on a 64-byte boundary, padded
 * through the local header's extra field as torch does. */
typedef struct {
  qg_buf out;
  struct qg_zip_wentry {
    char *name;
    uint64_t header_offset, size;
    uint32_t crc32;
  } *entries;
  int n, cap;
  int failed;
} qg_zip_writer;

void qg_zip_writer_init(qg_zip_writer *w);
qg_status qg_zip_writer_add(qg_zip_writer *w, const char *name, const void *data, size_t n);
/* Appends the central directory; on success the image is w->out (caller frees with
 * qg_zip_writer_free). */
qg_status qg_zip_writer_finish(qg_zip_writer *w);
void qg_zip_writer_free(qg_zip_writer *w);

#endif
