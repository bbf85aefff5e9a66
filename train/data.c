/* The contest's TokenStream for world size 1: sorted shards read in order as one stream
 * that wraps around forever. A position is all the state it has, so resuming is exact. */
#include <stdlib.h>

#include "train/train.h"

qg_status qg_loader_open(qg_token_loader *l, const char *glob, int vocab) {
  l->pos = 0;
  QG_TRY(qg_shards_open(glob, &l->shards));
  qg_status s = QG_OK;
  if (qg_shards_count(&l->shards) < 2)
    s = qg_fail(QG_ERR_INPUT, "%s: training data holds %lld tokens; at least 2 are needed", glob,
                (long long)qg_shards_count(&l->shards));
  if (!s) s = qg_shards_check_vocab(&l->shards, vocab);
  if (s) qg_shards_close(&l->shards);
  return s;
}

qg_status qg_loader_take(qg_token_loader *l, int64_t n, int32_t *out) {
  int64_t total = qg_shards_count(&l->shards);
  uint16_t buf[4096];
  while (n > 0) {
    int64_t k = total - l->pos;
    if (k > n) k = n;
    if (k > 4096) k = 4096;
    QG_TRY(qg_shards_read(&l->shards, l->pos, k, buf));
    for (int64_t i = 0; i < k; i++) out[i] = buf[i];
    out += k;
    n -= k;
    l->pos += k;
    if (l->pos == total) l->pos = 0;
  }
  return QG_OK;
}

void qg_loader_close(qg_token_loader *l) { qg_shards_close(&l->shards); }
