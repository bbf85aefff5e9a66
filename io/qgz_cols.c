/* Transposed code streams (see io/qgz_cols.h). */
#include "io/qgz_cols.h"

#include <brotli/decode.h>
#include <stdlib.h>

#include "io/qgz.h"
#include "io/qgz_rows.h"
#include "io/rans.h"

int qg_cols_eligible(int bits, int64_t count, int64_t rows, int64_t cols) {
  return bits >= 1 && bits <= QG_QGZ_COLS_MAX_BITS && rows >= 2 && cols >= 1 && rows <= QG_ROWS_MAX &&
         count == rows * cols;
}

qg_status qg_cols_compress(const uint32_t *sym, int64_t rows, int64_t cols, const uint32_t *order, uint8_t **z,
                           size_t *zn) {
  size_t n = (size_t)(rows * cols);
  uint8_t *t = malloc(n + 1);
  if (!t) return qg_fail(QG_ERR_NOMEM, "out of memory (transposed codes)");
  for (int64_t r = 0; r < rows; r++) {
    const uint32_t *row = sym + (size_t)(order ? order[r] : (uint32_t)r) * (size_t)cols;
    for (int64_t c = 0; c < cols; c++) t[(size_t)(c * rows + r)] = (uint8_t)row[c];
  }
  qg_status s = qg_compress(QG_COMP_BROTLI, t, n, z, zn);
  free(t);
  return s;
}

qg_status qg_cols_read(const uint8_t *p, size_t len, size_t *pos, int64_t rows, int64_t cols, int bits, uint32_t *out) {
  uint64_t zn;
  if (qg_varint_get(p, len, pos, &zn) || zn > len - *pos)
    return qg_fail(QG_ERR_INPUT, "transposed brotli stream length runs past the block");
  size_t n = (size_t)(rows * cols), got = n + 1;
  /* one byte of room more than the matrix needs, so that a longer stream is told apart */
  uint8_t *t = malloc(n + 1);
  if (!t) return qg_fail(QG_ERR_NOMEM, "out of memory (transposed codes)");
  BrotliDecoderResult r = BrotliDecoderDecompress((size_t)zn, p + *pos, &got, t);
  qg_status s = QG_OK;
  if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT || (r == BROTLI_DECODER_RESULT_SUCCESS && got > n))
    s = qg_fail(QG_ERR_INPUT, "transposed brotli stream inflates to more than rows x cols = %lld x %lld bytes",
                (long long)rows, (long long)cols);
  else if (r != BROTLI_DECODER_RESULT_SUCCESS)
    s = qg_fail(QG_ERR_INPUT, "transposed brotli stream is corrupt");
  else if (got != n)
    s = qg_fail(QG_ERR_INPUT, "transposed brotli stream inflates to %zu bytes, not rows x cols = %lld x %lld", got,
                (long long)rows, (long long)cols);
  for (size_t k = 0; !s && k < n; k++) {
    if (t[k] >> bits) {
      s = qg_fail(QG_ERR_INPUT, "code %u at row %lld, column %lld: a symbol outside the %d-bit alphabet", t[k],
                  (long long)(k % (size_t)rows), (long long)(k / (size_t)rows), bits);
      break;
    }
    out[(k % (size_t)rows) * (size_t)cols + k / (size_t)rows] = t[k];
  }
  free(t);
  if (!s) *pos += (size_t)zn;
  return s;
}
