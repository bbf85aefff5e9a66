/* Quantized tensors: a tensor's name, quantizer, canonical options and shape plus a list of
 * named sections (codes with their significant bit width, fp16 scales, norms, codebook
 * ids, seeds, raw bytes) held as plain arrays. Quantizers (quant/) produce and read them;
 * the artifact container (io/qgz.c) stores them generically, so a new quantizer needs no
 * format change, and the exact packed size of a qg_qtensor follows from its sections. It
 * lives in io/ because the container is the lowest layer that holds one.
 *
 * Conventions: functions return qg_status and leave a message via qg_fail naming the
 * tensor; sections own their memory (malloc'd). */
#ifndef QG_IO_QTENSOR_H
#define QG_IO_QTENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"

/* ---- quantized tensors: named sections ---------------------------------------------- */

typedef enum {
  QG_SEC_CODES = 0, /* unsigned integers < 2^bits, held as uint32_t (bits 1..32). Stored
                     * bit-packed or ceil(bits/8) bytes each, whichever the artifact picks */
  QG_SEC_F16,       /* IEEE half, held as uint16_t */
  QG_SEC_BF16,      /* bfloat16, held as uint16_t */
  QG_SEC_F32,       /* float */
  QG_SEC_RAW,       /* opaque bytes (count = bytes), e.g. a passthrough tensor's storage */
  QG_SEC_KIND_COUNT
} qg_sec_kind;

#define QG_SEC_NAME_MAX 16 /* including the NUL */
#define QG_QT_MAX_SECTIONS 8

typedef struct {
  char name[QG_SEC_NAME_MAX]; /* "codes", "scales", "norms", "cbid", "seeds", "data", ... */
  qg_sec_kind kind;
  int bits;      /* significant bits per element for CODES (1..32); 0 otherwise */
  int64_t count; /* elements (bytes for RAW) */
  void *data;    /* owned; uint32_t / uint16_t / float / uint8_t per kind */
} qg_qsection;

typedef struct {
  char *name;    /* tensor name (owned, may be NULL) */
  char *method;  /* quantizer name, e.g. "rowwise" (owned; set by qg_quantize) */
  char *options; /* canonical options, e.g. "bits=6 range=sym group=0 ..." (owned) */
  qg_dtype orig_dtype;              /* the source tensor's dtype (informational) */
  int ndim;                         /* the source tensor's shape */
  int64_t shape[QG_MAX_DIMS];
  int64_t rows, cols;               /* the matrix view quantized (see qg_matrix_view) */
  int nsec;
  qg_qsection sec[QG_QT_MAX_SECTIONS];
  char *note; /* optional one-line remark from the quantizer for reports (owned, may be
               * NULL), e.g. "damping raised to 0.1 after a Cholesky failure; 3 dead
               * columns". Not stored in artifacts. */
} qg_qtensor;

void qg_qtensor_init(qg_qtensor *q);
void qg_qtensor_free(qg_qtensor *q);
/* Adds a zeroed section of `count` elements; *data points to it (owned by q). */
qg_status qg_qtensor_add(qg_qtensor *q, const char *name, qg_sec_kind kind, int bits, int64_t count, void **data);
/* The section `name`, or NULL. */
const qg_qsection *qg_qtensor_find(const qg_qtensor *q, const char *name);
/* The section `name` checked to have this kind and count (count < 0: any); otherwise
 * QG_ERR_INPUT naming tensor, quantizer and section. Dequantizers call this for every
 * section they read, because the qg_qtensor may come from an untrusted file. */
qg_status qg_qtensor_need(const qg_qtensor *q, const char *name, qg_sec_kind kind, int64_t count,
                          const qg_qsection **out);
/* Exact bytes of all sections bit-packed (codes: ceil(count*bits/8) each section; f16/bf16
 * 2 per element; f32 4; raw 1), before any general-purpose compression. */
int64_t qg_qsection_packed_bytes(const qg_qsection *s);
int64_t qg_qtensor_packed_bytes(const qg_qtensor *q);
/* Bytes of the same sections with one byte per code (ceil(bits/8) per code). */
int64_t qg_qtensor_bytewise_bytes(const qg_qtensor *q);
/* Order-0 (empirical) entropy, in bits, of all values of the CODES sections named "codes"
 * (summed over such sections); 0 when there are none. */
double qg_qtensor_code_entropy_bits(const qg_qtensor *q);

/* The matrix view of a shape: rows = shape[0], cols = product of the rest; a 1-D tensor
 * is 1 x n, a scalar 1 x 1. */
void qg_matrix_view(int ndim, const int64_t *shape, int64_t *rows, int64_t *cols);

#endif
