/* A static (two-pass) rANS entropy coder for quantized codes.
 *
 * 32-bit state, byte-wise renormalisation (state kept in [2^23, 2^31)), four states
 * interleaved over one byte stream (symbol i uses state i mod 4, so a decoder's four
 * multiply/shift chains overlap), probability scale 2^prob_bits with prob_bits 12..16.
 *
 * Frequencies come from counts by an exact minimiser of the coded size: every present
 * symbol gets >= 1 and sum(-count_s * log2(freq_s / 2^prob_bits)) is minimal over all
 * integer tables summing to 2^prob_bits (a separable concave problem: start from
 * proportional rounding, then move single units while a move lowers the cost).
 *
 * Formats (all byte-aligned, little-endian varints = unsigned LEB128):
 *   table   = varint alphabet (max present symbol + 1; 0 = empty stream), then if > 0:
 *             u8 prob_bits, then a bit stream (LSB first, padded to a byte) holding for
 *             each symbol but the last a 5-bit length k (0 = absent, else the freq has k
 *             significant bits) followed by its k-1 low bits; the last symbol's freq is
 *             the remainder, so it is implied.
 *   payload = the interleaved rANS bytes: 16 flush bytes (states 0..3, u32 LE) then the
 *             renormalisation bytes in decode order. A table with one present symbol
 *             codes its stream in 0 bytes.
 * The decoder checks every read against the payload's end, that the payload is consumed
 * exactly and that every state returns to its initial value, so a truncated, extended or
 * altered payload is an error rather than wrong symbols (barring a 2^-124 coincidence).
 *
 * Errors are QG_ERR_INPUT with a message naming what: the caller prefixes tensor and
 * section. */
#ifndef QG_IO_RANS_H
#define QG_IO_RANS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/util.h"

#define QG_RANS_MIN_BITS 12
#define QG_RANS_MAX_BITS 16
#define QG_RANS_MAX_ALPHABET 4096
#define QG_RANS_FLUSH_BYTES 16

typedef struct {
  int nsym;      /* alphabet size (max present symbol + 1); 0 = empty */
  int prob_bits; /* 12..16 */
  uint32_t *freq; /* nsym entries, sum 2^prob_bits, 0 = absent */
  uint32_t *cum;  /* nsym + 1 entries */
  int present;   /* symbols with freq > 0 */
} qg_rans_table;

void qg_rans_table_free(qg_rans_table *t);
/* counts[0..nsym) -> the minimal-cross-entropy table at prob_bits (nsym <= 4096; trailing
 * zero counts are dropped from the alphabet). All-zero counts give the empty table. */
qg_status qg_rans_table_build(const uint64_t *counts, int nsym, int prob_bits, qg_rans_table *t);
/* Histogram of sym[0..n) into counts[0..nsym) (zeroed first); a symbol >= nsym fails. */
qg_status qg_rans_count(const uint32_t *sym, size_t n, int nsym, uint64_t *counts);
/* sum(-counts_s * log2(freq_s / 2^prob_bits)) in bits; +inf when a counted symbol has
 * freq 0. The ideal payload size of those counts under t. */
double qg_rans_cross_entropy_bits(const qg_rans_table *t, const uint64_t *counts, int nsym);
/* Order-0 empirical entropy of the counts, in bits (sum, not per symbol). */
double qg_entropy_bits(const uint64_t *counts, int nsym);

/* Exact bytes of the table's serialised form. */
size_t qg_rans_table_bytes(const qg_rans_table *t);
void qg_rans_table_write(const qg_rans_table *t, qg_buf *out);
/* Reads a table from p[0..len); *used = its bytes. Corrupt tables (lengths past 16 bits,
 * freqs not summing to 2^prob_bits, bad prob_bits, alphabet over the limit) fail. */
qg_status qg_rans_table_read(const uint8_t *p, size_t len, size_t *used, qg_rans_table *t);

/* Exact payload bytes of sym[0..n) under t, without writing it. A symbol outside the
 * table (>= nsym or freq 0) fails. */
qg_status qg_rans_payload_cost(const qg_rans_table *t, const uint32_t *sym, size_t n, size_t *bytes);
/* Appends the payload of sym[0..n) under t to out. */
qg_status qg_rans_encode(const qg_rans_table *t, const uint32_t *sym, size_t n, qg_buf *out);
/* Decodes exactly n symbols from p[0..len) (the whole payload) into sym. */
qg_status qg_rans_decode(const qg_rans_table *t, const uint8_t *p, size_t len, uint32_t *sym, size_t n);

/* A self-contained stream: table + varint payload bytes + payload, with the table built
 * from sym's own counts at prob_bits (0 = the best of 12..16 by total bytes).
 * qg_rans_cost gives its exact size without writing anything. */
qg_status qg_rans_cost(const uint32_t *sym, size_t n, int nsym, int prob_bits, size_t *bytes);
qg_status qg_rans_compress(const uint32_t *sym, size_t n, int nsym, int prob_bits, qg_buf *out);
/* Reads one self-contained stream of n symbols from p[0..len); *used = its bytes; symbols
 * must be < max_sym (the alphabet the caller expects). */
qg_status qg_rans_decompress(const uint8_t *p, size_t len, size_t *used, uint32_t *sym, size_t n, uint32_t max_sym);

/* Previous-symbol contexts: symbol i is coded with table ctx(sym[i-1]) (ctx(mid) for the
 * first), ctx = a bucket of |prev - mid| (0, 1, 2, 3, 4-5, 6-8, 9-13, 14+), so a stream
 * whose rows differ in spread gets a sharper table where neighbours are small. t is an
 * array of QG_RANS_NCTX tables (an unused context's table may be empty). The payload
 * always carries its 16 flush bytes. */
#define QG_RANS_NCTX 8
int qg_rans_ctx_of(uint32_t prev, uint32_t mid);
/* counts[ctx * nsym + s], zeroed first */
qg_status qg_rans_ctx_count(const uint32_t *sym, size_t n, int nsym, uint32_t mid, uint64_t *counts);
/* cv: the context of each symbol (< QG_RANS_NCTX), known to both sides (e.g. a column
 * class); NULL = the previous-symbol rule above. */
qg_status qg_rans_ctx_payload_cost(const qg_rans_table *t, uint32_t mid, const uint8_t *cv, const uint32_t *sym, size_t n,
                                   size_t *bytes);
qg_status qg_rans_ctx_encode(const qg_rans_table *t, uint32_t mid, const uint8_t *cv, const uint32_t *sym, size_t n,
                             qg_buf *out);
qg_status qg_rans_ctx_decode(const qg_rans_table *t, uint32_t mid, const uint8_t *cv, const uint8_t *p, size_t len,
                             uint32_t *sym, size_t n);

/* Lagged contexts: symbol i is coded with table ctx(sym[i - lag]) (ctx(mid) for i < lag);
 * lag 1 is the previous-symbol rule above, lag = the row length a previous-row rule (the
 * code above in a matrix). counts as qg_rans_ctx_count. */
qg_status qg_rans_lag_count(const uint32_t *sym, size_t n, int nsym, uint32_t mid, size_t lag, uint64_t *counts);
qg_status qg_rans_lag_payload_cost(const qg_rans_table *t, uint32_t mid, size_t lag, const uint32_t *sym, size_t n,
                                   size_t *bytes);
qg_status qg_rans_lag_encode(const qg_rans_table *t, uint32_t mid, size_t lag, const uint32_t *sym, size_t n, qg_buf *out);
qg_status qg_rans_lag_decode(const qg_rans_table *t, uint32_t mid, size_t lag, const uint8_t *p, size_t len, uint32_t *sym,
                             size_t n);

/* Wide symbols (up to 16 bits, e.g. E8P's codebook indices): symbol s is two rANS symbols
 * of one payload, its high part s >> 8 and then its low byte s & 255; the high part is
 * coded with table hi[hc[i]] (hc NULL: hi[0]), the low byte with lo[lc[s >> 8]] (lc NULL:
 * lo[0]), so the low byte's table may depend on the high part. A two-table split costs
 * two tables of <= 256 symbols where one 2^16-symbol table would cost ~100 KB. The
 * payload always carries its 16 flush bytes (0 bytes for 0 symbols). The self-contained
 * streams above (qg_rans_cost, _compress, _decompress) take alphabets over
 * QG_RANS_MAX_ALPHABET (up to 2^16) in this form: high table, low table, varint payload
 * bytes, payload. */
typedef struct {
  const qg_rans_table *hi[QG_RANS_NCTX], *lo[QG_RANS_NCTX];
  const uint8_t *hc; /* per symbol, or NULL */
  const uint8_t *lc; /* per high part (256 entries), or NULL */
} qg_rans_wide;
qg_status qg_rans_wide_payload_cost(const qg_rans_wide *w, const uint32_t *sym, size_t n, size_t *bytes);
qg_status qg_rans_wide_encode(const qg_rans_wide *w, const uint32_t *sym, size_t n, qg_buf *out);
/* Fails cleanly on a missing table or a part over 8 bits; sym < 2^16. */
qg_status qg_rans_wide_decode(const qg_rans_wide *w, const uint8_t *p, size_t len, uint32_t *sym, size_t n);

/* Unsigned LEB128 helpers shared with the container. */
void qg_varint_put(qg_buf *b, uint64_t v);
size_t qg_varint_len(uint64_t v);
/* Reads a varint at p[*pos..len); 0 on success, -1 when truncated or over 64 bits. */
int qg_varint_get(const uint8_t *p, size_t len, size_t *pos, uint64_t *v);

#endif
