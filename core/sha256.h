/* SHA-256 (FIPS 180-4): streaming context, hex helpers, one-shot buffer and file digests. */
#ifndef QG_CORE_SHA256_H
#define QG_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef struct {
  uint32_t h[8];    /* chaining state */
  uint64_t len;     /* bytes hashed so far */
  uint8_t buf[64];  /* partial block */
  size_t nbuf;      /* bytes in buf (< 64 between calls) */
} qg_sha256;

void qg_sha256_init(qg_sha256 *c);
void qg_sha256_update(qg_sha256 *c, const void *data, size_t n);
/* Pads, writes the 32-byte digest; the context must be re-initialised before reuse. */
void qg_sha256_final(qg_sha256 *c, uint8_t out[32]);
/* Lowercase hex of a digest, NUL-terminated. */
void qg_sha256_hex(const uint8_t d[32], char hex[65]);
/* One-shot hex digest of a buffer. */
void qg_sha256_buf(const void *data, size_t n, char hex[65]);
/* Hex digest of a file, read in 1 MiB chunks. QG_ERR_IO when it cannot be opened or read. */
qg_status qg_sha256_file(const char *path, char hex[65]);

#endif
