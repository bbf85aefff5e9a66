/* Small shared utilities: strings, a growable byte buffer, little-endian access. */
#ifndef QG_CORE_UTIL_H
#define QG_CORE_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/status.h"

char *qg_strdup(const char *s);
char *qg_strndup(const char *s, size_t n);

/* Growable byte buffer used by every writer. On allocation failure `failed` is set and
 * later appends are no-ops, so writers check once at the end with qg_buf_status(). */
typedef struct {
  uint8_t *p;
  size_t n, cap;
  int failed;
} qg_buf;

void qg_buf_init(qg_buf *b);
void qg_buf_free(qg_buf *b);
void qg_buf_append(qg_buf *b, const void *data, size_t n);
void qg_buf_byte(qg_buf *b, uint8_t v);
void qg_buf_zeros(qg_buf *b, size_t n);
void qg_buf_u16le(qg_buf *b, uint16_t v);
void qg_buf_u32le(qg_buf *b, uint32_t v);
void qg_buf_u64le(qg_buf *b, uint64_t v);
void qg_buf_str(qg_buf *b, const char *s);
void qg_buf_printf(qg_buf *b, const char *fmt, ...) QG_PRINTF(2, 3);
qg_status qg_buf_status(const qg_buf *b);

static inline uint16_t qg_rd_u16le(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static inline uint32_t qg_rd_u32le(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static inline uint64_t qg_rd_u64le(const uint8_t *p) {
  return (uint64_t)qg_rd_u32le(p) | ((uint64_t)qg_rd_u32le(p + 4) << 32);
}
static inline void qg_wr_u16le(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static inline void qg_wr_u32le(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Overflow-checked arithmetic for every size, count and shape product that file data
 * determines: each stores a*b (a+b) in *r and returns 1 when the exact result does not fit
 * (then *r must not be used), 0 otherwise. Signed overflow is undefined behaviour and
 * unsigned wrap-around silently passes a bound check, so readers never multiply file
 * numbers with a plain `*`. */
static inline int qg_mul_overflow_i64(int64_t a, int64_t b, int64_t *r) { return __builtin_mul_overflow(a, b, r); }
static inline int qg_add_overflow_i64(int64_t a, int64_t b, int64_t *r) { return __builtin_add_overflow(a, b, r); }
static inline int qg_mul_overflow_u64(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_mul_overflow(a, b, r); }
static inline int qg_add_overflow_u64(uint64_t a, uint64_t b, uint64_t *r) { return __builtin_add_overflow(a, b, r); }

/* x in the fewest significant digits (%.1g .. %.17g) that strtod reads back exactly:
 * 99.99984 rather than 99.999840000000006. Canonical option strings use it, so they
 * stay readable and still parse back to the same double. buf holds >= 32 chars. */
char *qg_num_str(double x, char *buf);
#define QG_NUMSTR(x) qg_num_str((x), (char[32]){0})

/* True when the path ends with suffix (case-sensitive). */
int qg_ends_with(const char *s, const char *suffix);

#endif
