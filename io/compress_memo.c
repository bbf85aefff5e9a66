/* The compressor memo (see io/compress_memo.h): a hash of results by digest, dropped
 * oldest first. */
#include "io/compress_memo.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/sha256.h"

#define NBUCKET 4096

typedef struct entry {
  qg_memo_key k;
  uint8_t *out;
  size_t len;
  struct entry *chain; /* next in the bucket */
  struct entry *newer; /* next in insertion order */
} entry;

static struct {
  pthread_mutex_t mu;
  entry *bucket[NBUCKET];
  entry *oldest, *newest;
  size_t limit;
  int limit_set;
  qg_memo_stats st;
} M = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Called with the lock held. */
static void init_limit(void) {
  if (M.limit_set) return;
  M.limit_set = 1, M.limit = QG_MEMO_DEFAULT_LIMIT;
  const char *e = getenv("QG_COMPRESS_MEMO_MB");
  if (e && *e) {
    char *end;
    unsigned long long mb = strtoull(e, &end, 10);
    if (!*end) M.limit = (size_t)mb << 20;
  }
}

static size_t bucket_of(const qg_memo_key *k) {
  size_t h = 0;
  memcpy(&h, k->digest, sizeof h);
  return h % NBUCKET;
}

static int same(const qg_memo_key *a, const qg_memo_key *b) {
  return a->n == b->n && a->comp == b->comp && a->level == b->level && !memcmp(a->digest, b->digest, 32);
}

int qg_memo_key_of(int comp, int level, const uint8_t *in, size_t n, qg_memo_key *k) {
  pthread_mutex_lock(&M.mu);
  init_limit();
  size_t limit = M.limit;
  pthread_mutex_unlock(&M.mu);
  if (n < QG_MEMO_MIN_INPUT || !limit) return 0;
  memset(k, 0, sizeof *k);
  qg_sha256 c;
  qg_sha256_init(&c);
  qg_sha256_update(&c, in, n);
  qg_sha256_final(&c, k->digest);
  k->n = n, k->comp = comp, k->level = level;
  return 1;
}

int qg_memo_get(const qg_memo_key *k, uint8_t **out, size_t *len) {
  pthread_mutex_lock(&M.mu);
  entry *e = M.bucket[bucket_of(k)];
  while (e && !same(&e->k, k)) e = e->chain;
  uint8_t *o = e ? malloc(e->len ? e->len : 1) : NULL;
  if (o) memcpy(o, e->out, e->len), *out = o, *len = e->len, M.st.hits++;
  else M.st.misses++;
  pthread_mutex_unlock(&M.mu);
  return o != NULL;
}

/* Called with the lock held. */
static void drop_oldest(void) {
  entry *e = M.oldest, **p = &M.bucket[bucket_of(&e->k)];
  while (*p != e) p = &(*p)->chain;
  *p = e->chain;
  M.oldest = e->newer;
  if (!M.oldest) M.newest = NULL;
  M.st.bytes -= e->len, M.st.entries--, M.st.evictions++;
  free(e->out), free(e);
}

void qg_memo_put(const qg_memo_key *k, const uint8_t *out, size_t len) {
  pthread_mutex_lock(&M.mu);
  init_limit();
  entry *e = M.bucket[bucket_of(k)];
  while (e && !same(&e->k, k)) e = e->chain;
  if (!e && len <= M.limit) {
    while (M.oldest && M.st.bytes + len > M.limit) drop_oldest();
    e = calloc(1, sizeof *e);
    uint8_t *o = e ? malloc(len ? len : 1) : NULL;
    if (o) {
      memcpy(o, out, len);
      e->k = *k, e->out = o, e->len = len;
      size_t b = bucket_of(k);
      e->chain = M.bucket[b], M.bucket[b] = e;
      if (M.newest) M.newest->newer = e;
      else M.oldest = e;
      M.newest = e;
      M.st.bytes += len, M.st.entries++;
    } else {
      free(e); /* out of memory: the memo just does not remember this one */
    }
  }
  pthread_mutex_unlock(&M.mu);
}

void qg_memo_set_limit(size_t bytes) {
  pthread_mutex_lock(&M.mu);
  M.limit_set = 1, M.limit = bytes;
  while (M.oldest && M.st.bytes > M.limit) drop_oldest();
  pthread_mutex_unlock(&M.mu);
}

void qg_memo_clear(void) {
  pthread_mutex_lock(&M.mu);
  while (M.oldest) drop_oldest();
  M.st = (qg_memo_stats){0};
  pthread_mutex_unlock(&M.mu);
}

qg_memo_stats qg_memo_get_stats(void) {
  pthread_mutex_lock(&M.mu);
  qg_memo_stats s = M.st;
  pthread_mutex_unlock(&M.mu);
  return s;
}
