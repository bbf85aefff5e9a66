#include "core/util.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

char *qg_strdup(const char *s) { return qg_strndup(s, strlen(s)); }

char *qg_strndup(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

void qg_buf_init(qg_buf *b) { memset(b, 0, sizeof *b); }
void qg_buf_free(qg_buf *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}

static int buf_grow(qg_buf *b, size_t extra) {
  if (b->failed) return 0;
  if (extra > SIZE_MAX - b->n) {
    b->failed = 1;
    return 0;
  }
  size_t need = b->n + extra;
  if (need <= b->cap) return 1;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
  uint8_t *p = realloc(b->p, cap);
  if (!p) {
    b->failed = 1;
    return 0;
  }
  b->p = p;
  b->cap = cap;
  return 1;
}

void qg_buf_append(qg_buf *b, const void *data, size_t n) {
  if (n == 0 || !buf_grow(b, n)) return;
  memcpy(b->p + b->n, data, n);
  b->n += n;
}
void qg_buf_byte(qg_buf *b, uint8_t v) { qg_buf_append(b, &v, 1); }
void qg_buf_zeros(qg_buf *b, size_t n) {
  if (n == 0 || !buf_grow(b, n)) return;
  memset(b->p + b->n, 0, n);
  b->n += n;
}
void qg_buf_u16le(qg_buf *b, uint16_t v) {
  uint8_t t[2];
  qg_wr_u16le(t, v);
  qg_buf_append(b, t, 2);
}
void qg_buf_u32le(qg_buf *b, uint32_t v) {
  uint8_t t[4];
  qg_wr_u32le(t, v);
  qg_buf_append(b, t, 4);
}
void qg_buf_u64le(qg_buf *b, uint64_t v) {
  qg_buf_u32le(b, (uint32_t)v);
  qg_buf_u32le(b, (uint32_t)(v >> 32));
}
void qg_buf_str(qg_buf *b, const char *s) { qg_buf_append(b, s, strlen(s)); }

void qg_buf_printf(qg_buf *b, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || !buf_grow(b, (size_t)n + 1)) {
    if (n < 0) b->failed = 1;
    va_end(ap2);
    return;
  }
  vsnprintf((char *)b->p + b->n, (size_t)n + 1, fmt, ap2);
  va_end(ap2);
  b->n += (size_t)n;
}

qg_status qg_buf_status(const qg_buf *b) {
  return b->failed ? qg_fail(QG_ERR_NOMEM, "out of memory while building output") : QG_OK;
}

int qg_ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

char *qg_num_str(double x, char *buf) {
  /* at least as many digits as the integer part has, so 20 prints as "20", not "2e+01" */
  int lead = 1;
  for (double a = fabs(x); a >= 10 && lead < 17; a /= 10) lead++;
  for (int prec = lead; prec <= 17; prec++) {
    snprintf(buf, 32, "%.*g", prec, x);
    if (strtod(buf, NULL) == x) return buf;
  }
  return buf; /* NaN: %.17g already printed "nan" */
}
