/* Contest token shards: validation, a memory-mapped multi-file token stream, and an
 * atomic writer. See shards.h for the format. */
#include "io/shards.h"

#include <stdlib.h>
#include <string.h>

#include "core/util.h"

/* Tokens are stored little-endian; on little-endian hosts they copy straight through. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define QG_SHARD_HOST_LE 1
#else
#define QG_SHARD_HOST_LE 0
#endif

qg_status qg_shard_parse(const uint8_t *data, size_t len, const char *name,
                         const uint8_t **tokens, int64_t *count) {
  *tokens = NULL;
  *count = 0;
  if (len < QG_SHARD_HEADER_BYTES)
    return qg_fail(QG_ERR_INPUT,
                   "%s: offset %zu: truncated header: %d header bytes expected, the file has %zu",
                   name, len, QG_SHARD_HEADER_BYTES, len);
  int32_t magic = (int32_t)qg_rd_u32le(data), version = (int32_t)qg_rd_u32le(data + 4);
  int32_t n = (int32_t)qg_rd_u32le(data + 8);
  if (magic != QG_SHARD_MAGIC)
    return qg_fail(QG_ERR_INPUT, "%s: offset 0: magic %d expected, found %d (not a token shard)",
                   name, QG_SHARD_MAGIC, magic);
  if (version != QG_SHARD_VERSION)
    return qg_fail(QG_ERR_UNSUPPORTED, "%s: offset 4: version %d expected, found %d", name,
                   QG_SHARD_VERSION, version);
  if (n < 0)
    return qg_fail(QG_ERR_INPUT, "%s: offset 8: token count is negative (%d)", name, n);
  /* The contest reader insists on the exact size; so do we (no trailing bytes either). */
  uint64_t want = QG_SHARD_HEADER_BYTES + 2 * (uint64_t)n; /* n < 2^31: cannot overflow */
  if ((uint64_t)len != want)
    return qg_fail(QG_ERR_INPUT,
                   "%s: offset 8: header counts %d tokens, so %llu bytes expected, the file has %zu",
                   name, n, (unsigned long long)want, len);
  *tokens = data + QG_SHARD_HEADER_BYTES;
  *count = n;
  return QG_OK;
}

void qg_shards_init(qg_shards *s) { memset(s, 0, sizeof *s); }

void qg_shards_close(qg_shards *s) {
  for (int i = 0; i < s->n_files; i++) {
    qg_mmap_close(&s->files[i].map);
    free(s->files[i].name);
  }
  free(s->files);
  memset(s, 0, sizeof *s);
}

/* Appends a validated shard; takes the map (closed on failure). */
static qg_status shards_push(qg_shards *s, const char *name, const uint8_t *tokens,
                             int64_t count, qg_mmap *map) {
  qg_status st = QG_OK;
  char *nm = qg_strdup(name);
  if (!nm) st = qg_fail(QG_ERR_NOMEM, "out of memory");
  if (!st && s->n_files == s->cap) {
    int cap = s->cap ? s->cap * 2 : 8;
    qg_shard_file *f = realloc(s->files, sizeof *f * (size_t)cap);
    if (!f) st = qg_fail(QG_ERR_NOMEM, "out of memory");
    else {
      s->files = f;
      s->cap = cap;
    }
  }
  if (st) {
    free(nm);
    if (map) qg_mmap_close(map);
    return st;
  }
  qg_shard_file *f = &s->files[s->n_files++];
  memset(f, 0, sizeof *f);
  f->name = nm;
  f->tokens = tokens;
  f->count = count;
  f->first = s->total;
  if (map) f->map = *map;
  s->total += count; /* at most INT32_MAX per file and INT_MAX files: no overflow */
  return QG_OK;
}

qg_status qg_shards_add_memory(qg_shards *s, const uint8_t *data, size_t len, const char *name) {
  const uint8_t *tokens;
  int64_t count;
  QG_TRY(qg_shard_parse(data, len, name, &tokens, &count));
  return shards_push(s, name, tokens, count, NULL);
}

qg_status qg_shards_add_file(qg_shards *s, const char *path) {
  qg_mmap m;
  QG_TRY(qg_mmap_open(path, &m));
  const uint8_t *tokens;
  int64_t count;
  qg_status st = qg_shard_parse(m.data, m.len, path, &tokens, &count);
  if (st) {
    qg_mmap_close(&m);
    return st;
  }
  return shards_push(s, path, tokens, count, &m);
}

qg_status qg_shards_open(const char *pattern_or_path, qg_shards *out) {
  qg_shards_init(out);
  /* A plain path opens directly, so its message says why (missing, not a file, ...). */
  if (!strpbrk(pattern_or_path, "*?[")) return qg_shards_add_file(out, pattern_or_path);
  char **paths;
  int n;
  QG_TRY(qg_glob_sorted(pattern_or_path, &paths, &n));
  qg_status st = QG_OK;
  for (int i = 0; i < n && !st; i++) st = qg_shards_add_file(out, paths[i]);
  qg_free_strings(paths, n);
  if (st) qg_shards_close(out);
  return st;
}

int64_t qg_shards_count(const qg_shards *s) { return s->total; }

int qg_shards_locate(const qg_shards *s, int64_t i) {
  if (i < 0 || i >= s->total) return -1;
  /* The last file whose first token is <= i holds i: the next file starts after i, and
   * empty files share their first index with a later file, so they are passed over. */
  int lo = 0, hi = s->n_files - 1;
  while (lo < hi) {
    int mid = lo + (hi - lo + 1) / 2;
    if (s->files[mid].first <= i) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

static void copy_tokens(uint16_t *out, const uint8_t *src, int64_t n) {
#if QG_SHARD_HOST_LE
  memcpy(out, src, (size_t)n * 2);
#else
  for (int64_t k = 0; k < n; k++) out[k] = qg_rd_u16le(src + 2 * k);
#endif
}

qg_status qg_shards_read(const qg_shards *s, int64_t start, int64_t n, uint16_t *out) {
  if (start < 0 || n < 0 || start > s->total || n > s->total - start)
    return qg_fail(QG_ERR_INPUT, "token range [%lld, %lld + %lld) is outside the %lld-token stream%s%s",
                   (long long)start, (long long)start, (long long)n, (long long)s->total,
                   s->n_files ? " starting at " : "", s->n_files ? s->files[0].name : "");
  if (n == 0) return QG_OK;
  int f = qg_shards_locate(s, start);
  int64_t done = 0;
  while (done < n) {
    const qg_shard_file *sf = &s->files[f++];
    int64_t off = start + done - sf->first;
    int64_t take = sf->count - off;
    if (take > n - done) take = n - done;
    if (take > 0) copy_tokens(out + done, sf->tokens + 2 * off, take);
    done += take;
  }
  return QG_OK;
}

qg_status qg_shards_check_vocab(const qg_shards *s, int vocab_size) {
  if (vocab_size < 1 || vocab_size > 65536)
    return qg_fail(QG_ERR_INPUT, "vocabulary size %d is outside 1..65536", vocab_size);
  for (int f = 0; f < s->n_files; f++) {
    const qg_shard_file *sf = &s->files[f];
    for (int64_t k = 0; k < sf->count; k++) {
      uint16_t t = qg_rd_u16le(sf->tokens + 2 * k);
      if (t >= vocab_size)
        return qg_fail(QG_ERR_INPUT,
                       "%s: token %lld (stream index %lld, offset %lld) is %u, outside the vocabulary of %d",
                       sf->name, (long long)k, (long long)(sf->first + k),
                       (long long)(QG_SHARD_HEADER_BYTES + 2 * k), t, vocab_size);
    }
  }
  return QG_OK;
}

qg_status qg_shard_write(const char *path, const uint16_t *tokens, size_t n) {
  if (n > INT32_MAX)
    return qg_fail(QG_ERR_INPUT, "%s: %zu tokens do not fit the int32 count of a shard header (max %d)",
                   path, n, INT32_MAX);
  uint8_t header[QG_SHARD_HEADER_BYTES] = {0};
  qg_wr_u32le(header, QG_SHARD_MAGIC);
  qg_wr_u32le(header + 4, QG_SHARD_VERSION);
  qg_wr_u32le(header + 8, (uint32_t)n);
  qg_atomic_file a;
  QG_TRY(qg_atomic_open(&a, path));
  qg_status st = qg_atomic_write(&a, header, sizeof header);
#if QG_SHARD_HOST_LE
  if (!st && n) st = qg_atomic_write(&a, tokens, n * 2);
#else
  uint8_t buf[8192];
  for (size_t k = 0; k < n && !st;) {
    size_t m = 0;
    for (; m < sizeof buf / 2 && k < n; m++, k++) qg_wr_u16le(buf + 2 * m, tokens[k]);
    st = qg_atomic_write(&a, buf, 2 * m);
  }
#endif
  if (st) {
    qg_atomic_abort(&a);
    return st;
  }
  return qg_atomic_commit(&a);
}
