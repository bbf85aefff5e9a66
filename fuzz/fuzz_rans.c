/* libFuzzer harness for the rANS coder and the rANS .qgz code block. The first byte picks:
 *   0: the round-trip property: the rest, read as symbols under a width from the second
 *      byte (1..8 bits, or 13..16 bits from byte pairs: wide symbols), is compressed and
 *      decompressed, and must come back equal, with qg_rans_cost equal to the bytes
 *      written (abort otherwise);
 *   1: the same through a whole rANS .qgz (one tensor of those codes): encode, read back,
 *      compare; bits 2-3 of the first byte: 1 = every stream that can be is transposed
 *      (mode 8, io/qgz_cols.h) with its rows as they are, 2 = in the greedy row order,
 *      both kept in the code block; else the modes by bytes;
 *   2: the rest as a self-contained rANS stream handed to the decoder (must fail cleanly
 *      or decode within bounds);
 *   3: the rest as a rANS .qgz file for the reader.
 * brotli runs at quality 1 here (the format does not depend on the quality; at 11 each
 * encode would dominate the run). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/qgz.h"
#include "io/qgz_rans.h"
#include "io/rans.h"

/* One symbol a byte, or for widths over 8 bits one a byte pair (little-endian). */
static uint32_t *symbols(const uint8_t *d, size_t n, int bits, size_t *ns) {
  *ns = bits > 8 ? n / 2 : n;
  uint32_t *s = malloc((*ns + 1) * sizeof *s);
  if (!s) abort();
  for (size_t i = 0; i < *ns; i++)
    s[i] = (bits > 8 ? (uint32_t)d[2 * i] | (uint32_t)d[2 * i + 1] << 8 : d[i]) & ((1u << bits) - 1);
  return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static int init;
  if (!init) qg_qgz_set_brotli_quality(1), init = 1;
  if (size < 2) return 0;
  /* bit 3 of the second byte: wide codes (13..16 bits, io/qgz_wide.h) */
  int mode = data[0] & 3, bits = data[1] & 8 ? 13 + (data[1] & 3) : 1 + data[1] % 8;
  int pb = QG_RANS_MIN_BITS + (data[1] >> 4) % 5;
  const uint8_t *d = data + 2;
  size_t n = size - 2, ns;
  if (mode == 0) {
    uint32_t *s = symbols(d, n, bits, &ns), *r = malloc((ns + 1) * sizeof *r);
    qg_buf b;
    qg_buf_init(&b);
    size_t cost, used;
    if (qg_rans_compress(s, ns, 1 << bits, pb, &b) || qg_rans_cost(s, ns, 1 << bits, pb, &cost) || cost != b.n ||
        qg_rans_decompress(b.p, b.n, &used, r, ns, 1u << bits) || used != b.n || memcmp(r, s, ns * sizeof *s))
      abort();
    qg_buf_free(&b), free(s), free(r);
  } else if (mode == 1) {
    qg_qtensor t;
    qg_qtensor_init(&t);
    t.name = strdup("blocks.0.w"), t.method = strdup("rowwise"), t.options = strdup("");
    uint32_t *sy = symbols(d, n, bits, &ns);
    int64_t cols = bits > 8 ? 8 << (data[1] & 3) : 1 + (data[1] & 7);
    t.ndim = 2, t.shape[0] = (int64_t)ns / cols, t.shape[1] = cols, t.rows = t.shape[0], t.cols = cols;
    void *c;
    if (qg_qtensor_add(&t, "codes", QG_SEC_CODES, bits, t.rows * cols, &c)) abort();
    memcpy(c, sy, (size_t)(t.rows * cols) * sizeof *sy);
    free(sy);
    const qg_qtensor *p = &t;
    uint8_t *f;
    size_t fl;
    qg_qgz a;
    int force = (data[0] >> 2) & 3;
    force = force == 3 ? 0 : force;
    qg_qgz_rans_force_transposed(force), qg_qgz_rans_set_inline(!force);
    qg_status es = qg_qgz_encode(&p, 1, QG_COMP_RANS, QG_LAYOUT_PACKED, &f, &fl, NULL);
    qg_qgz_rans_force_transposed(0), qg_qgz_rans_set_inline(1);
    if (es || qg_qgz_read_mem(f, fl, "fuzz", &a) ||
        a.n != 1 || a.t[0].sec[0].count != t.rows * cols ||
        memcmp(a.t[0].sec[0].data, c, (size_t)(t.rows * cols) * sizeof(uint32_t)))
      abort();
    qg_qgz_free(&a), free(f), qg_qtensor_free(&t);
  } else if (mode == 2) {
    size_t want = (size_t)data[1] * 37, used;
    uint32_t *r = malloc((want + 1) * sizeof *r);
    if (qg_rans_decompress(d, n, &used, r, want, 1u << bits) == QG_OK) {
      if (used > n) abort();
      for (size_t i = 0; i < want; i++)
        if (r[i] >= 1u << bits) abort();
    }
    free(r);
  } else {
    if (n >= QG_QGZ_HEADER && qg_rd_u64le(d + 16) > ((uint64_t)64 << 20)) return 0;
    qg_qgz a;
    if (qg_qgz_read_mem(d, n, "fuzz.qgz", &a) == QG_OK) qg_qgz_free(&a);
  }
  return 0;
}
