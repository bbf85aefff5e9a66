/* Transposed code streams of a rANS .qgz (format version 3, stream mode 8): a code matrix
 * of at most 8 bits as brotli over one byte per code in column-major order, byte k being
 * the code of coded row k % rows in column k / rows. With QG_QGZ_ROWS_PERMUTED on the mode
 * byte the coded rows are the tensor's rows in a stored order (io/qgz_rows.h), which then
 * follows the mode byte as for the other modes. Body after the mode byte (and order):
 * varint compressed bytes, then the brotli stream, which must inflate to exactly rows x
 * cols bytes, each a code of the section's width.
 *
 * Why: a column of a weight matrix is one input feature, so its codes share a scale, and
 * after rows alike are made neighbours (the greedy L1 walk of io/qgz_rows.h) a column reads
 * as a slowly varying signal that brotli's matches and literal contexts model better than
 * rows do (tiny3L128d's 8-bit tok_emb: row-major 120,673 bytes, column-major 118,250, with
 * the greedy order 113,999 + a 1,096-byte order). Internal to the code block (io/qgz_rans.h). */
#ifndef QG_IO_QGZ_COLS_H
#define QG_IO_QGZ_COLS_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define QG_QGZ_MODE_COLS 8
#define QG_QGZ_COLS_MAX_BITS 8

/* Whether a section of count codes of that width over a rows x cols view can be coded so. */
int qg_cols_eligible(int bits, int64_t count, int64_t rows, int64_t cols);
/* The brotli stream (malloc'd) of sym (rows x cols, row-major), coded rows taken in order
 * (NULL: as they are). */
qg_status qg_cols_compress(const uint32_t *sym, int64_t rows, int64_t cols, const uint32_t *order, uint8_t **z,
                           size_t *zn);
/* Reads a mode-8 body at p[*pos..len) into out (rows x cols, row-major, in coded-row order);
 * fails on a length past the block, a stream that is corrupt or does not inflate to rows x
 * cols bytes, or a code outside the bits-wide alphabet. Messages name what is wrong only
 * (the caller prefixes file, offset, tensor and section). */
qg_status qg_cols_read(const uint8_t *p, size_t len, size_t *pos, int64_t rows, int64_t cols, int bits, uint32_t *out);

#endif
