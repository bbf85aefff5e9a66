/* Row orders of a code matrix for the rANS .qgz (format version 3): a stream may code the
 * rows of its matrix in another order, so that rows alike are neighbours and the
 * previous-row contexts (io/rans.h lagged contexts) are sharper. The order is stored with
 * the stream as a Lehmer code: entry k (0-based) of rows - k choices in
 * ceil(log2(rows - k)) bits, LSB first, padded to a byte (within ~1 bit a row of
 * log2(rows!)). Coded row j is the tensor's row order[j]. */
#ifndef QG_IO_QGZ_ROWS_H
#define QG_IO_QGZ_ROWS_H

#include <stddef.h>
#include <stdint.h>

#include "core/util.h"

#define QG_ROWS_MAX (1 << 20)

/* Rows by their mean |code - mid| (a proxy for the row's scale), ties by index. */
qg_status qg_rows_by_spread(const uint32_t *sym, int64_t rows, int64_t cols, uint32_t mid, uint32_t *order);
/* Greedy nearest neighbour from the row of least spread: each next row is the unused one
 * nearest (L1 over its codes) to the last. O(rows^2 cols). */
qg_status qg_rows_greedy(const uint32_t *sym, int64_t rows, int64_t cols, uint32_t mid, uint32_t *order);
size_t qg_rows_order_bytes(int64_t rows);
qg_status qg_rows_order_write(const uint32_t *order, int64_t rows, qg_buf *out);
/* Reads an order of rows rows at p[*pos..len); fails on truncation or an entry out of range. */
qg_status qg_rows_order_read(const uint8_t *p, size_t len, size_t *pos, int64_t rows, uint32_t *order);
/* out row j = in row order[j] (apply), or in row j -> out row order[j] (undo). */
void qg_rows_apply(const uint32_t *in, int64_t rows, int64_t cols, const uint32_t *order, uint32_t *out, int undo);

#endif
