/* Contest token shards (.bin), as read by the contest's train_gpt.py `load_data_shard`:
 *
 *   256 little-endian int32 header: [0] magic 20240520, [1] version 1, [2] token count n
 *   (the other 253 are zero when we write them and ignored when we read), then n
 *   little-endian uint16 tokens. The file is exactly 1024 + 2n bytes.
 *
 * A qg_shards is a sorted list of such files (a glob such as
 * "data/fineweb_val_*.bin") seen as one logical token stream: token i of the stream is
 * token i - first of the shard that holds it. Files are memory-mapped, never copied. */
#ifndef QG_IO_SHARDS_H
#define QG_IO_SHARDS_H

#include <stddef.h>
#include <stdint.h>

#include "core/file.h"
#include "core/status.h"

#define QG_SHARD_MAGIC 20240520
#define QG_SHARD_VERSION 1
#define QG_SHARD_HEADER_INTS 256
#define QG_SHARD_HEADER_BYTES (QG_SHARD_HEADER_INTS * 4)

typedef struct {
  char *name;            /* the path, or the caller's name for a memory shard (owned) */
  const uint8_t *tokens; /* count little-endian uint16 tokens, inside map or caller memory */
  int64_t count;
  int64_t first; /* index of its first token in the logical stream */
  qg_mmap map;   /* the mapped file; all zero for memory shards */
} qg_shard_file;

typedef struct {
  qg_shard_file *files; /* in stream order */
  int n_files, cap;
  int64_t total; /* tokens over all files */
} qg_shards;

/* Checks a whole shard held in memory (data[0..len)) and returns a pointer to its tokens
 * and their count. name is used in messages only. Fails with QG_ERR_INPUT, naming the
 * byte offset and what was expected versus found. */
qg_status qg_shard_parse(const uint8_t *data, size_t len, const char *name,
                         const uint8_t **tokens, int64_t *count);

void qg_shards_init(qg_shards *s);
/* Opens one shard, or every file a glob pattern matches in sorted order (the contest
 * sorts glob results the same way). A string without glob characters (* ? [) is taken
 * as a plain path. On failure *out is left empty. */
qg_status qg_shards_open(const char *pattern_or_path, qg_shards *out);
/* Appends a file, or a shard held in caller memory that must outlive s (no copy). */
qg_status qg_shards_add_file(qg_shards *s, const char *path);
qg_status qg_shards_add_memory(qg_shards *s, const uint8_t *data, size_t len, const char *name);
void qg_shards_close(qg_shards *s);

int64_t qg_shards_count(const qg_shards *s);
/* Copies tokens [start, start + n) of the stream into out (host order), across shard
 * boundaries. A range outside [0, count) fails with QG_ERR_INPUT. */
qg_status qg_shards_read(const qg_shards *s, int64_t start, int64_t n, uint16_t *out);
/* Index of the shard holding stream token i (0 <= i < count), or -1. */
int qg_shards_locate(const qg_shards *s, int64_t i);
/* Fails with QG_ERR_INPUT at the first token >= vocab_size, naming the file, the token's
 * index in the file and in the stream, its byte offset and its value. vocab_size must be
 * in 1..65536 (65536 always passes). */
qg_status qg_shards_check_vocab(const qg_shards *s, int vocab_size);

/* Writes a shard atomically (temp file + rename: never a partial file). More tokens than
 * an int32 header field can count fail with QG_ERR_INPUT before anything is created. */
qg_status qg_shard_write(const char *path, const uint16_t *tokens, size_t n);

#endif
