/* libFuzzer harness for token shards, in two parts.
 * 1. The whole input is parsed as one shard image (header checks, exact size).
 * 2. The input also drives a multi-shard stream: byte 0 picks 1..5 shards, the next bytes
 *    their token counts (0..63, so empty shards occur), then token bytes; the rest are read
 *    requests and a vocabulary size. Reads are checked against a plain concatenation and
 *    the vocabulary check against a linear scan; any disagreement aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "io/shards.h"

static uint8_t next_byte(const uint8_t *data, size_t size, size_t *pos) {
  return *pos < size ? data[(*pos)++] : 0;
}

static void stream_checks(const uint8_t *data, size_t size) {
  size_t pos = 0;
  int nf = next_byte(data, size, &pos) % 5 + 1;
  int counts[5];
  int total = 0;
  for (int i = 0; i < nf; i++) total += counts[i] = next_byte(data, size, &pos) % 64;
  uint16_t *all = malloc(sizeof *all * (size_t)(total + 1));
  uint8_t *img[5] = {NULL};
  qg_shards s;
  qg_shards_init(&s);
  int k = 0;
  for (int i = 0; i < nf; i++) {
    /* exact-size images, so an overread is an ASan report */
    size_t len = QG_SHARD_HEADER_BYTES + 2 * (size_t)counts[i];
    img[i] = calloc(1, len);
    qg_wr_u32le(img[i], QG_SHARD_MAGIC);
    qg_wr_u32le(img[i] + 4, QG_SHARD_VERSION);
    qg_wr_u32le(img[i] + 8, (uint32_t)counts[i]);
    for (int j = 0; j < counts[i]; j++, k++) {
      all[k] = (uint16_t)(next_byte(data, size, &pos) | next_byte(data, size, &pos) << 8);
      qg_wr_u16le(img[i] + QG_SHARD_HEADER_BYTES + 2 * j, all[k]);
    }
    if (qg_shards_add_memory(&s, img[i], len, "mem") != QG_OK) abort();
  }
  if (qg_shards_count(&s) != total) abort();
  uint16_t *out = malloc(sizeof *out * (size_t)(total + 2));
  while (pos + 2 <= size) {
    int64_t start = (int64_t)(data[pos] % (total + 3)) - 1; /* -1 .. total + 1 */
    int64_t n = (int64_t)(data[pos + 1] % (total + 3)) - 1;
    pos += 2;
    int valid = start >= 0 && n >= 0 && start + n <= total;
    qg_status st = qg_shards_read(&s, start, n, out);
    if (valid != (st == QG_OK)) abort();
    if (valid && n && memcmp(out, all + start, (size_t)n * 2)) abort();
    for (int64_t i = 0; valid && i < n; i++) {
      int f = qg_shards_locate(&s, start + i);
      if (f < 0 || start + i < s.files[f].first || start + i >= s.files[f].first + s.files[f].count)
        abort();
    }
  }
  int vocab = (int)(next_byte(data, size, &pos) | next_byte(data, size, &pos) << 8) + 1;
  int first_bad = -1;
  for (int i = 0; i < total && first_bad < 0; i++)
    if (all[i] >= vocab) first_bad = i;
  if ((qg_shards_check_vocab(&s, vocab) == QG_OK) != (first_bad < 0)) abort();
  qg_shards_close(&s);
  for (int i = 0; i < nf; i++) free(img[i]);
  free(all);
  free(out);
}

/* Keeps the loop that touches every token from being optimised away. */
volatile unsigned fuzz_shards_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *tok;
  int64_t n;
  if (qg_shard_parse(data, size, "fuzz", &tok, &n) == QG_OK) {
    if ((uint64_t)size != QG_SHARD_HEADER_BYTES + 2 * (uint64_t)n) abort();
    unsigned sum = 0;
    for (int64_t i = 0; i < n; i++) sum += qg_rd_u16le(tok + 2 * i);
    fuzz_shards_sink = sum;
  }
  stream_checks(data, size);
  return 0;
}
