/* The E8 lattice: exact nearest-point decoding and vector-quantization codebooks.
 *
 * E8 = D8 ∪ (D8 + ½), where D8 is the integer vectors with an even coordinate sum. Its
 * nearest point is found exactly (Conway & Sloane, "Fast quantizing and decoding
 * algorithms for lattice quantizers", 1982): the nearest point of D8 is the coordinatewise
 * rounding, with the worst-rounded coordinate rounded the other way when the sum is odd;
 * the nearest of E8 is the closer of that and the same on the coset D8 + ½.
 *
 * Codebooks. Both kinds below are unions of "sign orbits": an *absolute pattern* a (8
 * non-negative coordinates) with every sign vector s allowed for it (integer patterns:
 * any signs of the non-zero coordinates, since flipping signs keeps the sum's parity;
 * half-integer patterns: only the sign vectors whose count of minus signs has the parity
 * that keeps the coordinate sum even). The nearest entry to x is then found exactly
 * without visiting all entries: for each pattern the best signs are sign(x) (one
 * coordinate flipped, the cheapest, when the parity is wrong), so a search costs one pass
 * over the patterns, and in the common case (the nearest lattice point lies inside the
 * codebook) a single lattice decode.
 *  - ball: every E8 point with |v|^2 <= r2 (r2 even), e.g. r2 = 2: 241 points (1 bit per
 *    weight with 8-bit indices), r2 = 4: 2401, r2 = 10: 56,881 (16-bit indices, 2 bits).
 *  - e8p: QuIP#'s 2-bit "E8P" construction (Tseng et al. 2024), 65,536 entries: 256
 *    absolute patterns of D8 + ½ (the 227 with |a|^2 <= 10, plus 29 of the 56 with five
 *    3/2's and three ½'s at |a|^2 = 12: here the 29 whose ½ positions come first in
 *    lexicographic order), each with 2^7 parity-valid sign vectors, each shifted by +¼ or
 *    -¼ along (1, ..., 1). Every entry lies in E8 + ¼. Index: pattern << 8 | the minus
 *    signs of coordinates 1..7 << 1 | (shift is +¼); coordinate 0's sign follows from
 *    the parity. */
#ifndef QG_QUANT_E8_H
#define QG_QUANT_E8_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "quant/e8_tables.h"

/* Nearest point of D8 / E8 to x (ties broken arbitrarily but deterministically). */
void qg_d8_nearest(const float x[8], float y[8]);
void qg_e8_nearest(const float x[8], float y[8]);

typedef enum { QG_E8CB_BALL = 0, QG_E8CB_E8P = 1 } qg_e8cb_kind;

#define QG_E8CB_MAX_INDEX_BITS 20

typedef struct {
  qg_e8cb_kind kind;
  uint32_t size;     /* entries; indices are 0 .. size-1 */
  int index_bits;    /* bits of one index (one index per 8 weights) */
  double r2;         /* ball: the radius^2; e8p: 12 (the largest pattern norm) */
  int n_pat;
  uint8_t (*pat)[8]; /* doubled absolute coordinates 2|a_j| (odd = half-integer pattern) */
  int n_pad;         /* n_pat rounded up to the search chunk (32) */
  float *pat_at;     /* |a_j| transposed: pat_at[j * n_pad + p] (vectorises the search) */
  float *pat_norm;   /* |a|^2 */
  uint8_t *pat_half; /* 1 for a half-integer pattern */
  uint8_t *pat_par;  /* half patterns: parity required of the count of minus signs */
  uint8_t *pat_nnz;  /* non-zero coordinates (8 for half patterns) */
  uint32_t *pat_off; /* ball: index of the pattern's first entry */
  uint32_t *keys;    /* packed patterns (4 bits per doubled coordinate), sorted */
  int32_t *key_pat;  /* the pattern of keys[i] */
  int8_t *entries;   /* size x 8 coordinates in quarter units (value = q / 4) */
  struct qg_e8_host *host; /* the host search's tables (quant/e8_search.h) */
  qg_e8_tables t;    /* the same tables as the shared encoder reads them */
} qg_e8_codebook;

/* Every E8 point with |v|^2 <= r2 (2 <= r2 <= 30; at most 2^QG_E8CB_MAX_INDEX_BITS points). */
qg_status qg_e8_codebook_ball(double r2, qg_e8_codebook *cb);
/* The largest ball whose index fits 8*bits bits: size <= 2^floor(8*bits) (bits >= 1). */
qg_status qg_e8_codebook_for_bits(double bits, qg_e8_codebook *cb);
qg_status qg_e8_codebook_e8p(qg_e8_codebook *cb);
void qg_e8_codebook_free(qg_e8_codebook *cb);
/* Shared read-only instances built once per process (thread-safe): "e8p" and the balls
 * for 1 and 2 bits ("ball1": r2 = 2, "ball2": r2 = 10). NULL on failure (out of memory)
 * or an unknown name. */
const qg_e8_codebook *qg_e8_codebook_get(const char *name);

/* Index of the entry nearest to x (exact; *d2 = its squared distance when non-NULL). */
uint32_t qg_e8_encode(const qg_e8_codebook *cb, const float x[8], float *d2);
/* The same by a search over the patterns, without the lattice-decoding fast path (tests
 * and benchmarks compare the two). */
uint32_t qg_e8_encode_search(const qg_e8_codebook *cb, const float x[8], float *d2);
/* Both again with the reference search (quant/e8_core.h as the device runs it: a scalar
 * pass over every pattern, the key lookup by binary search) instead of the host's
 * (quant/e8_search.c): the same index and distance, bit for bit; for tests and
 * benchmarks (quant/e8_ref.c). */
uint32_t qg_e8_encode_ref(const qg_e8_codebook *cb, const float x[8], float *d2);
uint32_t qg_e8_encode_search_ref(const qg_e8_codebook *cb, const float x[8], float *d2);
/* Entry idx (idx < size) into y. */
static inline void qg_e8_decode(const qg_e8_codebook *cb, uint32_t idx, float y[8]) {
  const int8_t *e = cb->entries + (size_t)idx * 8;
  for (int j = 0; j < 8; j++) y[j] = 0.25f * (float)e[j];
}

#endif
