/* A minimal reader for the protobuf wire format (enough for SentencePiece's ModelProto).
 *
 * There is no schema here: qg_pb_next() walks one message field by field and hands back
 * each field whole (tag, wire type, value or payload bounds), after checking every length
 * against the end of the enclosing message. Unknown fields are skipped by simply ignoring
 * what qg_pb_next() returns; a nested message is read with a sub-reader over the payload.
 * Offsets are absolute (from the start of the buffer given to qg_pb_init), so error
 * messages point at the byte in the file. Groups (wire types 3 and 4, deprecated since
 * proto2's early days) are refused as unsupported rather than skipped. */
#ifndef QG_IO_PROTOBUF_H
#define QG_IO_PROTOBUF_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum {
  QG_PB_VARINT = 0,
  QG_PB_I64 = 1,
  QG_PB_LEN = 2,
  QG_PB_SGROUP = 3,
  QG_PB_EGROUP = 4,
  QG_PB_I32 = 5
} qg_pb_wire;

typedef struct {
  const uint8_t *buf; /* start of the whole buffer (offsets count from here) */
  size_t pos;         /* next byte to read */
  size_t end;         /* one past the last byte of this message */
  const char *name;   /* file name for messages */
} qg_pb_reader;

typedef struct {
  uint32_t number;     /* field number, >= 1 */
  qg_pb_wire wire;
  size_t offset;       /* offset of the tag */
  size_t value_offset; /* offset of the value (for LEN: of the payload, after its length) */
  uint64_t u;          /* VARINT value; I64 / I32 raw little-endian bits */
  size_t len;          /* LEN payload length (payload = buf + value_offset) */
} qg_pb_field;

/* Reads a base-128 varint at *pos (< end). More than 10 bytes, or a 10th byte carrying
 * bits beyond 64, is an overflow error. *pos advances past it on success. */
qg_status qg_pb_varint(const uint8_t *buf, size_t *pos, size_t end, uint64_t *v,
                       const char *name);

void qg_pb_init(qg_pb_reader *r, const uint8_t *buf, size_t len, const char *name);
/* A reader over a LEN field's payload (offsets stay absolute). */
qg_pb_reader qg_pb_sub(const qg_pb_reader *r, const qg_pb_field *f);
/* Reads the next field into *f. Returns QG_OK with *more = 1 when a field was read,
 * QG_OK with *more = 0 at the end of the message, or an error (truncated tag or value,
 * length past the end, field number 0, wire type 3/4/6/7). */
qg_status qg_pb_next(qg_pb_reader *r, qg_pb_field *f, int *more);

/* Typed views of a field. Each checks the wire type and fails naming the file, the
 * field's offset and `what` (e.g. "TrainerSpec.vocab_size") when it does not match. */
static inline const uint8_t *qg_pb_bytes(const qg_pb_reader *r, const qg_pb_field *f) {
  return r->buf + f->value_offset;
}
qg_status qg_pb_get_len(const qg_pb_reader *r, const qg_pb_field *f, const char *what);
qg_status qg_pb_get_u64(const qg_pb_reader *r, const qg_pb_field *f, const char *what,
                        uint64_t *v);
/* int32 as protobuf encodes it: a varint whose low 32 bits are the two's complement value
 * (negative numbers arrive sign-extended to 10 bytes). */
qg_status qg_pb_get_i32(const qg_pb_reader *r, const qg_pb_field *f, const char *what,
                        int32_t *v);
qg_status qg_pb_get_bool(const qg_pb_reader *r, const qg_pb_field *f, const char *what,
                         int *v);
qg_status qg_pb_get_float(const qg_pb_reader *r, const qg_pb_field *f, const char *what,
                          float *v);
/* A LEN field copied into a malloc'd NUL-terminated string (*len gets the byte count,
 * which may include embedded NULs; len may be NULL). Replaces and frees *out. */
qg_status qg_pb_get_string(const qg_pb_reader *r, const qg_pb_field *f, const char *what,
                           char **out, size_t *len);

#endif
