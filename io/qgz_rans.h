/* The code streams of a rANS-compressed .qgz (format versions 2 and 3, compressor "rans").
 *
 * Format 2: every CODES section of at most 12 bits is coded here instead of inline in the
 * payload ("external" codes); wider codes stay in the payload. Format 3 (io/qgz.h): the
 * block's placement bits say which sections of <= 16 bits are here; after the narrow
 * shared tables come the wide ones, and sections of 13..16 bits use mode 6 (or 2) of
 * io/qgz_wide.h. Sections are grouped by role: the
 * tensor name with its digit runs replaced by '#' (blocks.3.attn.c_q.weight and
 * blocks.7.attn.c_q.weight share "blocks.#.attn.c_q.weight"), plus section name and bit
 * width. Each group may carry one shared table, built from the group's summed counts;
 * each stream then picks by exact bytes the cheapest of: its own table, the group's
 * table, its own previous-code or column-class context tables, or brotli-11 over its bit-packed codes. A shared table is kept only when some
 * stream picks it.
 *
 * Block = varint table count, the tables (io/rans.h format), then per external section
 * in payload order: u8 mode (0 own table, 1 shared table, 2 brotli, 3 previous-code
 * contexts: QG_RANS_NCTX own tables, io/rans.h; 4 column classes: varint cols, 2 bits a
 * column, then QG_RANS_NCTX tables, class c coded with table c), mode 0: table;
 * modes 3/4: as said;
 * mode 5: as mode 2 over one byte per code (codes <= 8 bits);
 * mode 1: varint table index; modes 0/1/3/4: varint payload bytes + rANS payload;
 * mode 2: varint compressed bytes + brotli stream of the bit-packed codes.
 * Format 3 adds mode 7: as mode 3 with the code one row above as the context (lagged
 * contexts, io/rans.h), for code matrices; and the flag QG_QGZ_ROWS_PERMUTED on the mode
 * byte of a code matrix's stream: the rows' order (io/qgz_rows.h) follows the mode byte
 * and the stream codes the rows in that order. Mode 8 (io/qgz_cols.h): brotli over one
 * byte per code of a code matrix of <= 8 bits in column-major order, its rows as they are
 * or (QG_QGZ_ROWS_PERMUTED) in the stored order. */
#ifndef QG_IO_QGZ_RANS_H
#define QG_IO_QGZ_RANS_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"
#include "io/qtensor.h"

#define QG_QGZ_RANS_MAX_BITS 12
#define QG_QGZ_ROWS_PERMUTED 0x80 /* on a stream's mode byte: its rows coded in a stored order */

typedef struct {
  size_t tables;        /* bytes of all tables (shared and own) */
  size_t code_payload;  /* rANS payload bytes and brotli stream bytes */
  size_t stream_headers; /* mode bytes, indices, lengths */
  int own, shared, brotli, ctx, wide, shared_tables; /* streams per mode; shared tables kept */
  int permuted; /* streams whose rows are coded in a stored order */
  int transposed; /* mode-8 streams (not counted in brotli) */
} qg_qgz_rans_stats;

/* True when a section's codes live in the code block of a file of that format version. */
int qg_qgz_rans_external(const qg_qsection *s, int version);
/* Whether encoders try row orders (on unless turned off; a reader needs no setting). */
void qg_qgz_rans_set_row_orders(int on);
/* Tests and fuzzers: 1 = every stream that can be transposed (mode 8) is, its rows as they
 * are; 2 = the same in the greedy row order where rows allow one (and row orders are on);
 * -1 = never; 0 = by bytes, as always otherwise. */
void qg_qgz_rans_force_transposed(int how);
/* Appends the code block of q[0..n) to out. inl (NULL: none): per section of q in payload
 * order, 1 = its codes stay inline in the meta (format 3), not in the block; fell_back
 * (optional, same indexing): set to 1 for the streams that fell back to brotli over their
 * codes in order (modes 2, 5), 2 for those transposed (mode 8), else 0. */
qg_status qg_qgz_rans_encode(const qg_qtensor *const *q, int n, const uint8_t *inl, qg_buf *out, qg_qgz_rans_stats *st,
                             uint8_t *fell_back);
/* Fills the external sections of t[0..n) (allocated, zeroed) from p[0..len), which must
 * be consumed exactly; ext (format 3): per section in payload order, 1 = in the block
 * (NULL: by qg_qgz_rans_external). Errors name the file, tensor and section. */
qg_status qg_qgz_rans_decode(const uint8_t *p, size_t len, qg_qtensor *t, int n, const char *fname, int version,
                             const uint8_t *ext);

#endif
