/* Protobuf wire-format reader: see protobuf.h. Every length is compared with the bytes
 * left in the enclosing message before anything is read, so a hostile length can never
 * move the cursor outside the buffer. */
#include "io/protobuf.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

static const char *wire_name(int w) {
  switch (w) {
    case QG_PB_VARINT: return "varint";
    case QG_PB_I64: return "fixed64";
    case QG_PB_LEN: return "length-delimited";
    case QG_PB_SGROUP: return "start-group";
    case QG_PB_EGROUP: return "end-group";
    case QG_PB_I32: return "fixed32";
  }
  return "invalid";
}

qg_status qg_pb_varint(const uint8_t *buf, size_t *pos, size_t end, uint64_t *v,
                       const char *name) {
  size_t p = *pos;
  uint64_t x = 0;
  for (int i = 0; i < 10; i++) {
    if (p >= end)
      return qg_fail(QG_ERR_INPUT, "%s: offset %zu: truncated varint (message ends at %zu)",
                     name, *pos, end);
    uint8_t b = buf[p++];
    /* The 10th byte holds bit 63 only; anything more does not fit in 64 bits. */
    if (i == 9 && b > 1)
      return qg_fail(QG_ERR_INPUT, "%s: offset %zu: varint overflows 64 bits", name, *pos);
    x |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      *v = x;
      *pos = p;
      return QG_OK;
    }
  }
  return qg_fail(QG_ERR_INPUT, "%s: offset %zu: varint longer than 10 bytes", name, *pos);
}

void qg_pb_init(qg_pb_reader *r, const uint8_t *buf, size_t len, const char *name) {
  r->buf = buf;
  r->pos = 0;
  r->end = len;
  r->name = name ? name : "<buffer>";
}

qg_pb_reader qg_pb_sub(const qg_pb_reader *r, const qg_pb_field *f) {
  qg_pb_reader s = *r;
  s.pos = f->value_offset;
  s.end = f->value_offset + f->len; /* qg_pb_next checked this fits inside r */
  return s;
}

qg_status qg_pb_next(qg_pb_reader *r, qg_pb_field *f, int *more) {
  *more = 0;
  if (r->pos >= r->end) return QG_OK;
  memset(f, 0, sizeof *f);
  f->offset = r->pos;
  uint64_t tag;
  QG_TRY(qg_pb_varint(r->buf, &r->pos, r->end, &tag, r->name));
  uint64_t number = tag >> 3;
  int wire = (int)(tag & 7);
  /* Field numbers are at most 2^29 - 1; 0 is reserved and marks a corrupt stream. */
  if (number == 0 || number > 0x1fffffff)
    return qg_fail(QG_ERR_INPUT, "%s: offset %zu: invalid field number %llu (tag 0x%llx)",
                   r->name, f->offset, (unsigned long long)number, (unsigned long long)tag);
  f->number = (uint32_t)number;
  f->wire = (qg_pb_wire)wire;
  size_t left;
  switch (wire) {
    case QG_PB_VARINT:
      f->value_offset = r->pos;
      QG_TRY(qg_pb_varint(r->buf, &r->pos, r->end, &f->u, r->name));
      break;
    case QG_PB_I64:
    case QG_PB_I32: {
      size_t n = wire == QG_PB_I64 ? 8 : 4;
      f->value_offset = r->pos;
      if (r->end - r->pos < n)
        return qg_fail(QG_ERR_INPUT,
                       "%s: offset %zu: field %u: truncated %s value (%zu bytes left, need %zu)",
                       r->name, r->pos, f->number, wire_name(wire), r->end - r->pos, n);
      f->u = n == 8 ? qg_rd_u64le(r->buf + r->pos) : qg_rd_u32le(r->buf + r->pos);
      r->pos += n;
      break;
    }
    case QG_PB_LEN: {
      uint64_t n;
      size_t at = r->pos;
      QG_TRY(qg_pb_varint(r->buf, &r->pos, r->end, &n, r->name));
      left = r->end - r->pos;
      if (n > left)
        return qg_fail(QG_ERR_INPUT,
                       "%s: offset %zu: field %u: length %llu runs past the end of the "
                       "message (%zu bytes left)",
                       r->name, at, f->number, (unsigned long long)n, left);
      f->value_offset = r->pos;
      f->len = (size_t)n;
      r->pos += (size_t)n;
      break;
    }
    case QG_PB_SGROUP:
    case QG_PB_EGROUP:
      return qg_fail(QG_ERR_UNSUPPORTED, "%s: offset %zu: field %u: %s wire type (groups are "
                     "not supported)", r->name, f->offset, f->number, wire_name(wire));
    default:
      return qg_fail(QG_ERR_INPUT, "%s: offset %zu: field %u: invalid wire type %d", r->name,
                     f->offset, f->number, wire);
  }
  *more = 1;
  return QG_OK;
}

static qg_status want(const qg_pb_reader *r, const qg_pb_field *f, qg_pb_wire w,
                      const char *what) {
  if (f->wire == w) return QG_OK;
  return qg_fail(QG_ERR_INPUT, "%s: offset %zu: %s (field %u): expected %s wire type, got %s",
                 r->name, f->offset, what, f->number, wire_name(w), wire_name(f->wire));
}

qg_status qg_pb_get_len(const qg_pb_reader *r, const qg_pb_field *f, const char *what) {
  return want(r, f, QG_PB_LEN, what);
}

qg_status qg_pb_get_u64(const qg_pb_reader *r, const qg_pb_field *f, const char *what,
                        uint64_t *v) {
  QG_TRY(want(r, f, QG_PB_VARINT, what));
  *v = f->u;
  return QG_OK;
}

qg_status qg_pb_get_i32(const qg_pb_reader *r, const qg_pb_field *f, const char *what,
                        int32_t *v) {
  QG_TRY(want(r, f, QG_PB_VARINT, what));
  /* Truncation to the low 32 bits, as every protobuf runtime does for int32. */
  uint32_t lo = (uint32_t)f->u;
  int32_t x;
  memcpy(&x, &lo, sizeof x);
  *v = x;
  return QG_OK;
}

qg_status qg_pb_get_bool(const qg_pb_reader *r, const qg_pb_field *f, const char *what,
                         int *v) {
  QG_TRY(want(r, f, QG_PB_VARINT, what));
  *v = f->u != 0;
  return QG_OK;
}

qg_status qg_pb_get_float(const qg_pb_reader *r, const qg_pb_field *f, const char *what,
                          float *v) {
  QG_TRY(want(r, f, QG_PB_I32, what));
  uint32_t bits = (uint32_t)f->u;
  memcpy(v, &bits, sizeof *v);
  return QG_OK;
}

qg_status qg_pb_get_string(const qg_pb_reader *r, const qg_pb_field *f, const char *what,
                           char **out, size_t *len) {
  QG_TRY(want(r, f, QG_PB_LEN, what));
  char *s = malloc(f->len + 1);
  if (!s)
    return qg_fail(QG_ERR_NOMEM, "%s: offset %zu: %s: cannot allocate %zu bytes", r->name,
                   f->offset, what, f->len + 1);
  if (f->len) memcpy(s, r->buf + f->value_offset, f->len);
  s[f->len] = 0;
  free(*out);
  *out = s;
  if (len) *len = f->len;
  return QG_OK;
}
