/* Corpus preparation (see prepare.h). The calling thread cuts documents out of the inputs
 * in batches of a few MB; `threads` workers encode contiguous slices of each batch; the
 * calling thread appends the ids in document order to the current shard. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/file.h"
#include "io/json_parse.h"
#include "io/shards.h"
#include "tok/prepare.h"

#define BATCH_BYTES (4u << 20)

void qg_tok_prepare_defaults(qg_tok_prepare_opts *o) {
  memset(o, 0, sizeof *o);
  o->name = "fineweb";
  o->val_docs = 50000;
  o->shard_tokens = 100000000;
  o->threads = 2;
}

typedef struct {
  const uint8_t *text; /* into the mapped file, or into the batch's decoded-JSON arena */
  size_t len, arena_off;
  int in_arena;
} doc;

typedef struct {
  const qg_tok *t;
  qg_tok_ctx *ctx;
  const doc *docs;
  size_t first, n;
  const uint8_t *arena;
  qg_tok_ids ids;
  size_t *counts; /* ids per document */
  size_t counts_cap;
  qg_status st;
  char err[512];
} worker;

static void *work(void *arg) {
  worker *w = arg;
  w->ids.n = 0;
  w->st = QG_OK;
  if (w->counts_cap < w->n) {
    free(w->counts);
    w->counts = malloc((w->n ? w->n : 1) * sizeof *w->counts);
    w->counts_cap = w->counts ? w->n : 0;
    if (!w->counts) w->st = qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  for (size_t i = 0; i < w->n && !w->st; i++) {
    const doc *d = &w->docs[w->first + i];
    const uint8_t *p = d->in_arena ? w->arena + d->arena_off : d->text;
    size_t before = w->ids.n;
    w->st = qg_tok_encode(w->ctx, p, d->len, &w->ids);
    w->counts[i] = w->ids.n - before;
  }
  /* the message is thread-local: carry it to the calling thread */
  if (w->st) snprintf(w->err, sizeof w->err, "%s", qg_last_error());
  return NULL;
}

/* ---- shards under temporary names, renamed at the end ---------------------------------- */
typedef struct {
  const qg_tok_prepare_opts *o;
  const char *split;
  uint16_t *buf;
  size_t n;
  qg_tok_split_stats *stats;
  char **tmp, **final; /* written shards */
  int n_files;
} shard_out;

static qg_status shard_flush(shard_out *s) {
  if (s->n == 0) return QG_OK;
  char **nt = realloc(s->tmp, (size_t)(s->n_files + 1) * sizeof *nt);
  if (nt) s->tmp = nt;
  char **nf = realloc(s->final, (size_t)(s->n_files + 1) * sizeof *nf);
  if (nf) s->final = nf;
  if (!nt || !nf) return qg_fail(QG_ERR_NOMEM, "out of memory");
  size_t plen = strlen(s->o->out_dir) + strlen(s->o->name) + 64;
  char *fin = malloc(plen), *tmp = malloc(plen + 32);
  if (!fin || !tmp) {
    free(fin), free(tmp);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  snprintf(fin, plen, "%s/%s_%s_%06d.bin", s->o->out_dir, s->o->name, s->split, s->n_files);
  snprintf(tmp, plen + 32, "%s/.%s_%s_%06d.bin.partial.%ld", s->o->out_dir, s->o->name, s->split,
           s->n_files, (long)getpid());
  s->tmp[s->n_files] = tmp;
  s->final[s->n_files] = fin;
  s->n_files++;
  qg_status st = qg_shard_write(tmp, s->buf, s->n);
  if (!st) {
    s->stats->shards++;
    s->n = 0;
  }
  return st;
}

static qg_status shard_append(shard_out *s, const int32_t *ids, size_t n) {
  size_t cap = (size_t)s->o->shard_tokens;
  if (!s->buf) {
    s->buf = malloc(cap * sizeof *s->buf);
    if (!s->buf) return qg_fail(QG_ERR_NOMEM, "out of memory for a %zu-token shard", cap);
  }
  for (size_t i = 0; i < n; i++) {
    if (s->n == cap) QG_TRY(shard_flush(s));
    s->buf[s->n++] = (uint16_t)ids[i];
  }
  return QG_OK;
}

static void shard_cleanup(shard_out *s, int commit, qg_status *st) {
  for (int i = 0; i < s->n_files; i++) {
    if (commit && !*st && rename(s->tmp[i], s->final[i]) != 0)
      *st = qg_fail(QG_ERR_IO, "%s: cannot rename into place", s->final[i]);
    if (!commit || *st) unlink(s->tmp[i]);
    free(s->tmp[i]);
    free(s->final[i]);
  }
  free(s->tmp);
  free(s->final);
  free(s->buf);
}

/* ---- reading documents ---------------------------------------------------------------- */
typedef struct {
  const char *path;
  qg_mmap m;
  size_t pos;
  long line;
  int jsonl;
} reader;

static int blank_line(const uint8_t *p, size_t n) { return n == 0 || (n == 1 && p[0] == '\r'); }

/* Next document of a plain-text file: lines up to the next blank line. */
static int next_text_doc(reader *r, doc *d) {
  const uint8_t *b = r->m.data;
  size_t n = r->m.len;
  for (;;) { /* skip blank lines */
    if (r->pos >= n) return 0;
    const uint8_t *nl = memchr(b + r->pos, '\n', n - r->pos);
    size_t end = nl ? (size_t)(nl - b) : n;
    if (!blank_line(b + r->pos, end - r->pos)) break;
    r->pos = nl ? end + 1 : n;
  }
  size_t start = r->pos, last_end = start;
  while (r->pos < n) {
    const uint8_t *nl = memchr(b + r->pos, '\n', n - r->pos);
    size_t end = nl ? (size_t)(nl - b) : n;
    if (blank_line(b + r->pos, end - r->pos)) break;
    last_end = end;
    r->pos = nl ? end + 1 : n;
  }
  if (last_end > start && b[last_end - 1] == '\r') last_end--;
  d->text = b + start;
  d->len = last_end - start;
  d->in_arena = 0;
  return 1;
}

/* Next document of a JSONL file: its "text" string, decoded into arena. */
static qg_status next_json_doc(reader *r, doc *d, qg_buf *arena, int *got) {
  const uint8_t *b = r->m.data;
  size_t n = r->m.len;
  *got = 0;
  while (r->pos < n) {
    const uint8_t *nl = memchr(b + r->pos, '\n', n - r->pos);
    size_t start = r->pos, end = nl ? (size_t)(nl - b) : n;
    r->pos = nl ? end + 1 : n;
    r->line++;
    size_t k = start;
    while (k < end && (b[k] == ' ' || b[k] == '\t' || b[k] == '\r')) k++;
    if (k == end) continue; /* empty line */
    char name[512];
    snprintf(name, sizeof name, "%s: line %ld", r->path, r->line);
    qg_jopts jo = {name, start, 0, 0};
    qg_jdoc jd;
    const qg_jnode *root;
    QG_TRY(qg_jparse((const char *)b + start, end - start, &jo, &jd, &root));
    const qg_jnode *txt = root->type == QG_JOBJ ? qg_jobj_get(root, "text") : NULL;
    if (!txt || txt->type != QG_JSTR) {
      qg_jdoc_free(&jd);
      return qg_fail(QG_ERR_INPUT, "%s: line %ld: expected an object with a \"text\" string%s",
                     r->path, r->line, txt ? " (\"text\" is not a string)" : "");
    }
    d->arena_off = arena->n;
    d->len = txt->len;
    d->in_arena = 1;
    qg_buf_append(arena, txt->s, txt->len);
    qg_jdoc_free(&jd);
    *got = 1;
    return qg_buf_status(arena);
  }
  return QG_OK;
}

/* ---- the driver ------------------------------------------------------------------------- */
qg_status qg_tok_prepare(const qg_tok *t, const char *const *inputs, int n_inputs,
                         const qg_tok_prepare_opts *o, qg_tok_prepare_stats *stats) {
  memset(stats, 0, sizeof *stats);
  if (t->spm.n_pieces > 65536)
    return qg_fail(QG_ERR_INPUT, "the tokenizer has %d pieces: contest shards hold uint16 ids "
                   "(at most 65,536 pieces)", t->spm.n_pieces);
  int bos = t->spm.trainer.bos_id;
  if (bos < 0 || bos >= t->spm.n_pieces)
    return qg_fail(QG_ERR_INPUT, "the tokenizer has no BOS piece (bos_id %d) to start documents",
                   bos);
  if (o->shard_tokens < 1 || o->shard_tokens > INT32_MAX || o->val_docs < 0 || o->threads < 1 ||
      o->threads > 64)
    return qg_fail(QG_ERR_INPUT, "prepare: shard_tokens must be 1..2^31-1, val_docs >= 0, "
                   "threads 1..64");
  reader *rd = calloc((size_t)n_inputs, sizeof *rd);
  if (!rd) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status st = QG_OK;
  int64_t total = 0, done = 0;
  for (int i = 0; i < n_inputs && !st; i++) { /* every input must open before anything */
    rd[i].path = inputs[i];
    rd[i].jsonl = qg_ends_with(inputs[i], ".jsonl") || qg_ends_with(inputs[i], ".json");
    st = qg_mmap_open(inputs[i], &rd[i].m);
    /* documents are UTF-8 text: a binary file would be tokenized as byte soup */
    size_t ok = st ? 0 : qg_utf8_valid_prefix(rd[i].m.data, rd[i].m.len);
    if (!st && ok != rd[i].m.len)
      st = qg_fail(QG_ERR_INPUT, "%s: offset %zu: byte 0x%02X is not valid UTF-8 (a binary file?); prepare takes "
                   "UTF-8 text or JSONL", inputs[i], ok, rd[i].m.data[ok]);
    if (!st) total += (int64_t)rd[i].m.len;
  }
  int nt = o->threads;
  worker *w = calloc((size_t)nt, sizeof *w);
  doc *docs = NULL;
  size_t docs_cap = 0;
  qg_buf arena;
  qg_buf_init(&arena);
  shard_out val = {o, "val", NULL, 0, &stats->val, NULL, NULL, 0};
  shard_out train = {o, "train", NULL, 0, &stats->train, NULL, NULL, 0};
  if (!st && !w) st = qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int i = 0; i < nt && !st; i++) {
    w[i].t = t;
    st = qg_tok_ctx_new(t, &w[i].ctx);
  }
  int64_t ndoc = 0;
  int cur = 0;
  while (!st && cur < n_inputs) {
    /* a batch of documents */
    size_t nb = 0, bytes = 0;
    arena.n = 0;
    size_t pos0 = rd[cur].pos;
    while (!st && cur < n_inputs && bytes < BATCH_BYTES) {
      if (nb == docs_cap) {
        docs_cap = docs_cap ? docs_cap * 2 : 1024;
        doc *nd = realloc(docs, docs_cap * sizeof *nd);
        if (!nd) {
          st = qg_fail(QG_ERR_NOMEM, "out of memory");
          break;
        }
        docs = nd;
      }
      int got = 0;
      if (rd[cur].jsonl) st = next_json_doc(&rd[cur], &docs[nb], &arena, &got);
      else got = next_text_doc(&rd[cur], &docs[nb]);
      if (st) break;
      if (!got) {
        done += (int64_t)(rd[cur].m.len - pos0); /* stays mapped: the batch points into it */
        if (++cur < n_inputs) pos0 = rd[cur].pos;
        continue;
      }
      bytes += docs[nb].len;
      nb++;
    }
    if (st || nb == 0) break;
    if (cur < n_inputs) {
      done += (int64_t)(rd[cur].pos - pos0);
    }
    /* encode: worker i takes a contiguous slice */
    pthread_t th[64];
    int started[64] = {0};
    for (int i = 0; i < nt; i++) {
      w[i].docs = docs;
      w[i].arena = arena.p;
      w[i].first = nb * (size_t)i / (size_t)nt;
      w[i].n = nb * (size_t)(i + 1) / (size_t)nt - w[i].first;
      if (i == 0) continue;
      started[i] = pthread_create(&th[i], NULL, work, &w[i]) == 0;
      if (!started[i]) work(&w[i]);
    }
    work(&w[0]);
    for (int i = 1; i < nt; i++)
      if (started[i]) pthread_join(th[i], NULL);
    for (int i = 0; i < nt && !st; i++)
      if (w[i].st) st = qg_fail(w[i].st, "%s", w[i].err);
    /* in document order: BOS + ids, to the split the document belongs to */
    for (int i = 0; i < nt && !st; i++) {
      size_t at = 0;
      for (size_t k = 0; k < w[i].n && !st; k++, ndoc++) {
        shard_out *so = ndoc < o->val_docs ? &val : &train;
        int32_t b = bos;
        st = shard_append(so, &b, 1);
        if (!st) st = shard_append(so, w[i].ids.v + at, w[i].counts[k]);
        so->stats->docs++;
        so->stats->tokens += 1 + (int64_t)w[i].counts[k];
        so->stats->text_bytes += (int64_t)docs[w[i].first + k].len;
        at += w[i].counts[k];
      }
    }
    if (!st && o->progress) o->progress(o->progress_user, ndoc, done, total);
  }
  if (!st) st = shard_flush(&val);
  if (!st) st = shard_flush(&train);
  if (!st && ndoc == 0) st = qg_fail(QG_ERR_INPUT, "no documents in the input");
  shard_cleanup(&val, 1, &st);
  shard_cleanup(&train, 1, &st);
  for (int i = 0; i < n_inputs; i++) qg_mmap_close(&rd[i].m);
  free(rd);
  for (int i = 0; w && i < nt; i++) {
    qg_tok_ctx_free(w[i].ctx);
    qg_tok_ids_free(&w[i].ids);
    free(w[i].counts);
  }
  free(w);
  free(docs);
  qg_buf_free(&arena);
  return st;
}
