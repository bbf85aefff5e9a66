/* An E8 codebook's search tables as plain pointers (host or device memory), the form the
 * shared encoder (quant/e8_core.h) reads; see quant/e8.h for what they hold. */
#ifndef QG_QUANT_E8_TABLES_H
#define QG_QUANT_E8_TABLES_H

#include <stdint.h>

struct qg_e8_host; /* quant/e8_search.h */

typedef struct {
  int kind;               /* qg_e8cb_kind */
  int n_pat, n_pad;       /* patterns; n_pat rounded up to the host search chunk */
  uint32_t size;          /* entries */
  const float *pat_at;    /* |a_j| coordinate-major: pat_at[j * n_pad + p] */
  const float *pat_norm;  /* |a|^2 */
  const uint8_t *pat_half, *pat_par;
  const uint8_t *pat;     /* n_pat x 8 doubled absolute coordinates */
  const uint32_t *pat_off, *keys;
  const int32_t *key_pat;
  const int8_t *entries;  /* size x 8, quarter units */
  const struct qg_e8_host *host; /* the host search's own tables; NULL on the device */
} qg_e8_tables;

#endif
