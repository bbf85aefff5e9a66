/* Wide code streams of a rANS .qgz (format version 3): CODES sections of 13..16 bits, such
 * as E8P's 16-bit codebook indices, coded as io/rans.h wide symbols (a high part and a low
 * byte). Internal to the code block (io/qgz_rans.h).
 *
 * In the code block, after the narrow shared tables: varint count, then the wide shared
 * tables (io/rans.h format, <= 256 symbols each). A wide section's stream is either mode 2
 * (brotli-11 over its bit-packed codes, as for narrow codes) or
 *   mode 6: u8 hk (1, or 4: high parts by column class of the code matrix, then varint
 *           code columns and 2 bits a column), hk table refs for the high parts;
 *           u8 lk (1..8 low-byte classes), when lk > 1 the class of each of the 2^(bits-8)
 *           high values (3 bits each, LSB first, padded to a byte), lk table refs for the
 *           low bytes; varint payload bytes, the wide rANS payload.
 *   table ref: varint 0 = a table follows; 1 = uniform over the part's alphabet
 *           (2^(bits-8) high values or 256 low bytes) at 12 bits; r >= 2 = wide shared
 *           table r - 2.
 * Each stream picks by bytes (tables, class maps and refs counted) the high-part contexts,
 * the low-byte classes and for each table its own, uniform or a shared one (shared by the
 * stream's role across layers, or by every wide stream of its width), and falls back to
 * brotli when that is smaller. */
#ifndef QG_IO_QGZ_WIDE_H
#define QG_IO_QGZ_WIDE_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"
#include "io/qtensor.h"
#include "io/rans.h"

#define QG_QGZ_WIDE_MIN_BITS 13
#define QG_QGZ_WIDE_MAX_BITS 16

typedef struct qg_wide_set qg_wide_set;

typedef struct {
  size_t tables, code_payload, stream_headers;
  int wide, brotli, shared_tables;
} qg_wide_stats;

int qg_qgz_wide_section(const qg_qsection *s);
/* Plans every wide section of q[0..n) (payload order) but those inl marks inline. */
qg_status qg_wide_plan(const qg_qtensor *const *q, int n, const uint8_t *inl, qg_wide_set **ws);
void qg_wide_free(qg_wide_set *ws);
/* The shared-table list, then (one call per wide section, in payload order) its stream. */
void qg_wide_write_tables(const qg_wide_set *ws, qg_buf *out, qg_wide_stats *st);
qg_status qg_wide_write_stream(const qg_wide_set *ws, int k, qg_buf *out, qg_wide_stats *st, int *fell_back);

/* Reads the shared-table list at p[*pos..len). */
qg_status qg_wide_read_tables(const uint8_t *p, size_t len, size_t *pos, qg_rans_table **tabs, uint64_t *nt);
/* Reads a mode-6 stream (the mode byte already read) into sec->data; messages name what is
 * wrong only (the caller prefixes file, offset, tensor and section). */
qg_status qg_wide_read_stream(const uint8_t *p, size_t len, size_t *pos, const qg_rans_table *tabs, uint64_t nt,
                              const qg_qtensor *t, qg_qsection *sec);

#endif
