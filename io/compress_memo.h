/* Results of the slow byte compressors, remembered by content.
 *
 * The rans writer compresses the same images many times: each stream's brotli
 * candidates in every code-block image it tries, and every unchanged tensor again when a
 * fit loop, an allocation or a sensitivity sweep writes the next artifact of the same
 * model. brotli-11, zstd-22 and xz -9e are deterministic functions of (level, input), so
 * the memo keys each result by the compressor, its level, the length and the SHA-256 of
 * the input, and gives back the bytes it produced then: the same output, without
 * recomputing it. Only inputs of at least QG_MEMO_MIN_INPUT bytes are kept (smaller ones
 * compress in microseconds); the oldest results are dropped once the outputs held exceed
 * the limit. Thread-safe. */
#ifndef QG_IO_COMPRESS_MEMO_H
#define QG_IO_COMPRESS_MEMO_H

#include <stddef.h>
#include <stdint.h>

#define QG_MEMO_MIN_INPUT 4096
#define QG_MEMO_DEFAULT_LIMIT ((size_t)256 << 20) /* bytes of compressed outputs held */

typedef struct {
  uint8_t digest[32];
  size_t n;
  int comp, level;
} qg_memo_key;

typedef struct {
  uint64_t hits, misses, evictions;
  size_t entries, bytes; /* results held, their output bytes */
} qg_memo_stats;

/* Fills *k for an input; 0 when the input is not memoised (too small or memo off). */
int qg_memo_key_of(int comp, int level, const uint8_t *in, size_t n, qg_memo_key *k);
/* A malloc'd copy of the remembered output (1), or 0 when none is held. */
int qg_memo_get(const qg_memo_key *k, uint8_t **out, size_t *len);
/* Remembers out[0..len) for k (no-op when held already, or when it alone exceeds the limit). */
void qg_memo_put(const qg_memo_key *k, const uint8_t *out, size_t len);
/* Output bytes the memo may hold (0 turns it off and empties it). The environment's
 * QG_COMPRESS_MEMO_MB (whole MiB, digits only; anything else is ignored: the memo never
 * changes a result, only the time) sets the starting limit. */
void qg_memo_set_limit(size_t bytes);
void qg_memo_clear(void);
qg_memo_stats qg_memo_get_stats(void);

#endif
