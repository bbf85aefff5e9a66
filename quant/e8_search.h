/* The host's E8 pattern search: quant/e8_core.h's scoring pass (qg_e8c_search_scores,
 * which the device runs and the tests keep as the reference) and key lookup, replaced by
 * faster ones that give the same pattern, bit for bit (see quant/e8_search.c):
 *  - a pruned search: the patterns grouped into classes (permutations of one sorted
 *    pattern); a class's best member and a lower bound on all its members' scores
 *    follow from |y| sorted (the rearrangement inequality), so usually one or two
 *    patterns are scored instead of all, with a full pass wherever the bound cannot
 *    decide (ties, huge inputs);
 *  - the full pass with the running minimum kept per SIMD lane;
 *  - the key lookup by a hash instead of a binary search. */
#ifndef QG_QUANT_E8_SEARCH_H
#define QG_QUANT_E8_SEARCH_H

#include <stdint.h>

#include "core/status.h"
#include "quant/e8_tables.h"

/* Patterns are scored in blocks of this many (the host pads the tables to it). */
#define QG_E8_HOST_CHUNK 32

/* One class: the permutations of a pattern whose doubled coordinates, sorted in
 * descending order, are d[]. */
typedef struct {
  uint8_t d[8];
  uint8_t half, par;    /* as every member's pat_half, pat_par */
  uint8_t complete;     /* every distinct permutation is in the codebook */
  uint8_t steps;        /* bit t (t < 7): d[t] > d[t + 1] */
  int blk0, blk1;       /* blocks [blk0, blk1) hold every member (searched whole when incomplete) */
  double a[8], nrm;     /* d / 2 and |a|^2 */
} qg_e8_class;

typedef struct qg_e8_host {
  float *norm;          /* pat_norm padded to n_pad with +inf (padding never wins) */
  uint32_t *pen;        /* [negpar * n_pad + p]: all ones when p pays the sign flip */
  uint32_t *hash;       /* 2^hash_bits slots (key, pattern), pattern UINT32_MAX if empty */
  int hash_bits;
  int n_cls;
  qg_e8_class *cls;
} qg_e8_host;

/* The host tables of cb (cb->host is not read); free with qg_e8_host_free. */
qg_status qg_e8_host_build(const qg_e8_tables *cb, qg_e8_host **out);
void qg_e8_host_free(qg_e8_host *h);

static inline uint32_t qg_e8_hash_slot(uint32_t key, int bits) { return (key * 0x9E3779B1u) >> (32 - bits); }

/* qg_e8c_find_pattern by the hash (a quarter full at most: one probe, usually). */
static inline int qg_e8_host_find(const qg_e8_tables *cb, uint32_t key) {
  const qg_e8_host *h = cb->host;
  uint32_t mask = (1u << h->hash_bits) - 1;
  for (uint32_t s = qg_e8_hash_slot(key, h->hash_bits);; s = (s + 1) & mask) {
    uint32_t p = h->hash[2 * s + 1];
    if (p == UINT32_MAX) return -1;
    if (h->hash[2 * s] == key) return (int)p;
  }
}

/* qg_e8c_search_scores on the host: the least score over the patterns for |y| = ay
 * (+inf when none is below +inf) and the first pattern that has it (0 when none). */
float qg_e8_search_scores_host(const qg_e8_tables *cb, const float *ay, unsigned negpar, int *pbest);

/* The forms, for tests and benchmarks: the pruned search (with its full pass where it
 * cannot decide; *used_full says whether it did, when non-NULL) or a full pass alone, on
 * one instruction set; the mask of those this process can run is qg_e8_search_isas()
 * (bit 1 << isa). */
enum { QG_E8_ISA_SCALAR = 0, QG_E8_ISA_SSE2 = 1, QG_E8_ISA_AVX2 = 2 };
int qg_e8_search_isas(void);
float qg_e8_search_scores_isa(int isa, int pruned, const qg_e8_tables *cb, const float *ay, unsigned negpar,
                              int *pbest, int *used_full);
/* Which instruction set the host search uses: "avx2", "sse2" or "scalar". */
const char *qg_e8_search_isa(void);

#endif
