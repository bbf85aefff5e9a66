/* BPE encoding and decoding (see tok.h, steps 2 and 3), after bpe_model.cc and
 * sentencepiece_processor.cc.
 *
 * Speed: when no piece holds "▁" past its first character (true of every model
 * spm_train writes with split_by_whitespace, the default and the contest's setting), no
 * merge can cross the start of a "▁word", so each word's pieces do not depend on its
 * neighbours and a per-thread cache maps words to ids. Merge order inside a word is still
 * the library's (highest score, leftmost), so the result is identical. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "tok/tok.h"

#define CACHE_MAX_WORD 64           /* longer words are not cached */
#define CACHE_MAX_ENTRIES (1 << 20) /* then the cache starts over */
#define RESEGMENT_MAX_DEPTH 100     /* kMaxBpeResegmentDepth */

/* ---- hashing -------------------------------------------------------------------------- */
static inline uint64_t hash_bytes(const uint8_t *p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0x100000001B3ull);
  while (n >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    h = (h ^ w) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    p += 8;
    n -= 8;
  }
  uint64_t w = 0;
  for (size_t i = 0; i < n; i++) w |= (uint64_t)p[i] << (8 * i);
  h = (h ^ w) * 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 29;
  return h | 1; /* 0 marks an empty slot */
}

/* id of a mergeable piece (NORMAL, USER_DEFINED, UNUSED) equal to p[0..n), or -1: what
 * PieceToIdNoReserved answers, with -1 for its unk_id. */
static int piece_id(const qg_tok *t, const uint8_t *p, size_t n) {
  uint64_t h = hash_bytes(p, n);
  size_t mask = t->ptab_cap - 1;
  for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
    if (t->ptab_hash[i] == 0) return -1;
    if (t->ptab_hash[i] == h) {
      const qg_spm_piece *q = &t->spm.pieces[t->ptab[i]];
      if (q->len == n && memcmp(q->piece, p, n) == 0) return t->ptab[i];
    }
  }
}

static int mergeable(int type) {
  return type == QG_SPM_NORMAL || type == QG_SPM_USER_DEFINED || type == QG_SPM_UNUSED;
}

/* ---- init ------------------------------------------------------------------------------- */

qg_status qg_tok_copy_normalizer(qg_spm_normalizer *dst, const qg_spm_normalizer *src) {
  char *name = qg_strdup(src->name ? src->name : "");
  char *tsv = qg_strdup(src->normalization_rule_tsv ? src->normalization_rule_tsv : "");
  uint8_t *cm = NULL;
  if (src->charsmap_len) {
    cm = malloc(src->charsmap_len);
    if (cm) memcpy(cm, src->charsmap, src->charsmap_len);
  }
  if (!name || !tsv || (src->charsmap_len && !cm)) {
    free(name);
    free(tsv);
    free(cm);
    return qg_fail(QG_ERR_NOMEM, "out of memory copying a normalizer spec");
  }
  free(dst->name);
  free(dst->normalization_rule_tsv);
  free(dst->charsmap);
  *dst = *src;
  dst->name = name;
  dst->normalization_rule_tsv = tsv;
  dst->charsmap = cm;
  if (cm) { /* re-point the views into our copy */
    dst->trie = cm + (src->trie - src->charsmap);
    dst->normalized = cm + (src->normalized - src->charsmap);
  }
  return QG_OK;
}

qg_status qg_tok_init_normalizer(qg_tok *t, const qg_spm_normalizer *n, int ws_suffix) {
  t->add_dummy_prefix = n->add_dummy_prefix;
  t->remove_extra_ws = n->remove_extra_whitespaces;
  t->escape_ws = n->escape_whitespaces;
  t->ws_suffix = ws_suffix;
  if (!n->charsmap_len) return QG_OK;
  /* DecodePrecompiledCharsMap: the trie is whole 1024-byte blocks and a string pool
   * follows it. The units are copied: the charsmap need not be 4-byte aligned. */
  if (n->trie_len < 1024 || n->trie_len % 1024 != 0 || n->normalized_len == 0)
    return qg_fail(QG_ERR_INPUT, "precompiled_charsmap: trie of %zu bytes (must be a positive "
                   "multiple of 1024 followed by normalized strings)", n->trie_len);
  uint32_t *units = malloc(n->trie_len);
  if (!units) return qg_fail(QG_ERR_NOMEM, "out of memory for the charsmap trie");
  for (size_t i = 0; i < n->trie_len / 4; i++) units[i] = qg_rd_u32le(n->trie + 4 * i);
  t->trie = units;
  t->trie_units = n->trie_len / 4;
  t->norm_pool = (const char *)n->normalized;
  t->norm_pool_len = n->normalized_len;
  /* Which first bytes can start a key: the root's children. Byte 0 always takes the
   * exact walk, since an empty unit also carries label 0. */
  size_t root = (units[0] >> 10) << ((units[0] & (1u << 9)) >> 6);
  for (int b = 0; b < 256; b++) {
    size_t pos = root ^ (size_t)b;
    t->first_byte_has_rule[b] =
        b == 0 || (pos < t->trie_units && (units[pos] & 0x800000FFu) == (uint32_t)b);
  }
  return QG_OK;
}

size_t qg_tok_user_match(const qg_tok *t, const uint8_t *s, size_t n) {
  size_t best = 0;
  for (int i = 0; i < t->n_ud; i++) {
    const qg_spm_piece *q = &t->spm.pieces[t->ud_ids[i]];
    if (q->len > best && q->len <= n && memcmp(q->piece, s, q->len) == 0) best = q->len;
  }
  return best;
}

static qg_status init_pieces(qg_tok *t) {
  const qg_spm *s = &t->spm;
  size_t cap = 16;
  while (cap < (size_t)s->n_pieces * 2) cap *= 2;
  t->ptab = malloc(cap * sizeof *t->ptab);
  t->ptab_hash = calloc(cap, sizeof *t->ptab_hash);
  t->ud_ids = malloc(((size_t)s->n_pieces + 1) * sizeof *t->ud_ids);
  if (!t->ptab || !t->ptab_hash || !t->ud_ids)
    return qg_fail(QG_ERR_NOMEM, "out of memory for a %d-piece table", s->n_pieces);
  t->ptab_cap = cap;
  t->unk_id = -1;
  for (int b = 0; b < 256; b++) t->byte_id[b] = -1;
  t->word_cache_ok = 1;
  for (int id = 0; id < s->n_pieces; id++) {
    const qg_spm_piece *q = &s->pieces[id];
    if (q->type == QG_SPM_UNKNOWN && t->unk_id < 0) t->unk_id = id;
    if (q->type == QG_SPM_BYTE) {
      int hi = q->piece[3] <= '9' ? q->piece[3] - '0' : q->piece[3] - 'A' + 10;
      int lo = q->piece[4] <= '9' ? q->piece[4] - '0' : q->piece[4] - 'A' + 10;
      if (t->byte_id[hi * 16 + lo] < 0) t->byte_id[hi * 16 + lo] = id;
    }
    if (!mergeable(q->type)) continue;
    if (q->type == QG_SPM_USER_DEFINED) t->ud_ids[t->n_ud++] = id;
    /* "▁" past the first byte: merges may cross word starts, so no per-word cache */
    for (size_t i = 1; i + 3 <= q->len; i++)
      if (memcmp(q->piece + i, QG_TOK_SPACE, 3) == 0) t->word_cache_ok = 0;
    uint64_t h = hash_bytes((const uint8_t *)q->piece, q->len);
    size_t i = (size_t)h & (cap - 1);
    int dup = 0;
    for (; t->ptab_hash[i]; i = (i + 1) & (cap - 1)) {
      const qg_spm_piece *o = &s->pieces[t->ptab[i]];
      if (t->ptab_hash[i] == h && o->len == q->len && !memcmp(o->piece, q->piece, q->len)) dup = 1;
    }
    if (dup) continue; /* the loader refuses these; keep the first as it would */
    t->ptab_hash[i] = h;
    t->ptab[i] = id;
  }
  if (t->unk_id < 0)
    return qg_fail(QG_ERR_INPUT, "the tokenizer has no <unk> piece (SentencePiece requires one)");
  t->byte_fallback = s->trainer.byte_fallback && s->n_byte_pieces > 0;
  if (t->byte_fallback)
    for (int b = 0; b < 256; b++)
      if (t->byte_id[b] < 0)
        return qg_fail(QG_ERR_INPUT, "byte_fallback without the byte piece <0x%02X>", b);
  if (t->n_ud > 0 || t->ws_suffix || !t->escape_ws) t->word_cache_ok = 0;
  return QG_OK;
}

qg_status qg_tok_init(qg_tok *t, qg_spm *spm) {
  memset(t, 0, sizeof *t);
  t->spm = *spm;
  memset(spm, 0, sizeof *spm);
  qg_status st = QG_OK;
  if (t->spm.trainer.model_type != QG_SPM_BPE)
    st = qg_fail(QG_ERR_UNSUPPORTED, "model_type %d is not BPE (2); only BPE tokenizers are "
                 "supported", t->spm.trainer.model_type);
  if (!st) st = qg_tok_init_normalizer(t, &t->spm.normalizer, t->spm.trainer.treat_whitespace_as_suffix);
  if (!st) st = init_pieces(t);
  if (!st && t->spm.has_denormalizer && t->spm.denormalizer.charsmap_len)
    st = qg_fail(QG_ERR_UNSUPPORTED, "denormalizer rules are not supported");
  if (!st) {
    const char *u = t->spm.trainer.unk_surface ? t->spm.trainer.unk_surface : " \xE2\x81\x87 ";
    snprintf(t->unk_surface, sizeof t->unk_surface, "%s", u);
  }
  if (st) qg_tok_free(t);
  return st;
}

qg_status qg_tok_load(qg_tok *t, const char *path, const char *normalizer_from) {
  memset(t, 0, sizeof *t);
  qg_spm s, donor;
  QG_TRY(qg_spm_load(path, &s));
  if (normalizer_from) {
    qg_status st = qg_spm_load(normalizer_from, &donor);
    if (!st && donor.specs_assumed)
      st = qg_fail(QG_ERR_INPUT, "%s: --normalizer-from needs a .model (a .vocab carries no "
                   "normalizer)", normalizer_from);
    if (!st) st = qg_tok_copy_normalizer(&s.normalizer, &donor.normalizer);
    qg_spm_free(&donor);
    if (st) {
      qg_spm_free(&s);
      return st;
    }
  }
  qg_status st = qg_tok_init(t, &s);
  if (st) qg_fail_prefix(st, "%s", path);
  return st;
}

void qg_tok_free(qg_tok *t) {
  if (!t) return;
  qg_spm_free(&t->spm);
  free((void *)t->trie);
  free(t->ptab);
  free(t->ptab_hash);
  free(t->ud_ids);
  memset(t, 0, sizeof *t);
}

/* ---- ids ---------------------------------------------------------------------------------- */
qg_status qg_tok_ids_push(qg_tok_ids *ids, int32_t id) {
  if (ids->n == ids->cap) {
    size_t cap = ids->cap ? ids->cap * 2 : 256;
    int32_t *v = realloc(ids->v, cap * sizeof *v);
    if (!v) return qg_fail(QG_ERR_NOMEM, "out of memory for %zu token ids", cap);
    ids->v = v;
    ids->cap = cap;
  }
  ids->v[ids->n++] = id;
  return QG_OK;
}

void qg_tok_ids_free(qg_tok_ids *ids) {
  free(ids->v);
  memset(ids, 0, sizeof *ids);
}

/* ---- the encoder context --------------------------------------------------------------- */
typedef struct {
  uint32_t off, len; /* bytes of the piece in the segment; len 0 = merged away */
  int32_t prev, next;
  int freeze;
} sym;

typedef struct {
  float score;
  uint32_t left, right, size;
} pair;

typedef struct { /* rev_merge: piece -> the two pieces it was made of (UNUSED pieces) */
  uint32_t off, len, loff, llen, roff, rlen;
} revrec;

typedef struct {
  uint64_t hash; /* 0 = empty */
  uint32_t key_off, ids_off;
  uint16_t key_len, n_ids;
} centry;

struct qg_tok_ctx {
  const qg_tok *t;
  qg_buf norm;
  sym *syms;
  size_t syms_cap;
  pair *heap;
  size_t heap_n, heap_cap;
  revrec *rev;
  size_t rev_n, rev_cap;
  qg_tok_ids word; /* one segment's raw ids */
  int prev_unk;
  /* word cache */
  centry *ce;
  size_t ce_cap, ce_n;
  qg_buf keys;
  qg_tok_ids ids;
};

qg_status qg_tok_ctx_new(const qg_tok *t, qg_tok_ctx **out) {
  qg_tok_ctx *c = calloc(1, sizeof *c);
  if (!c) return qg_fail(QG_ERR_NOMEM, "out of memory for an encoder context");
  c->t = t;
  qg_buf_init(&c->norm);
  qg_buf_init(&c->keys);
  *out = c;
  return QG_OK;
}

void qg_tok_ctx_free(qg_tok_ctx *c) {
  if (!c) return;
  qg_buf_free(&c->norm);
  qg_buf_free(&c->keys);
  free(c->syms);
  free(c->heap);
  free(c->rev);
  free(c->ce);
  qg_tok_ids_free(&c->word);
  qg_tok_ids_free(&c->ids);
  free(c);
}

/* ---- the agenda: a binary max-heap by (score, then smaller left) ---------------------- */
static inline int pair_before(const pair *a, const pair *b) {
  return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static qg_status heap_push(qg_tok_ctx *c, pair p) {
  if (c->heap_n == c->heap_cap) {
    size_t cap = c->heap_cap ? c->heap_cap * 2 : 256;
    pair *h = realloc(c->heap, cap * sizeof *h);
    if (!h) return qg_fail(QG_ERR_NOMEM, "out of memory for the BPE agenda");
    c->heap = h;
    c->heap_cap = cap;
  }
  size_t i = c->heap_n++;
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (!pair_before(&p, &c->heap[up])) break;
    c->heap[i] = c->heap[up];
    i = up;
  }
  c->heap[i] = p;
  return QG_OK;
}

static pair heap_pop(qg_tok_ctx *c) {
  pair top = c->heap[0], last = c->heap[--c->heap_n];
  size_t i = 0, n = c->heap_n;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const pair *best = &last;
    if (l < n && pair_before(&c->heap[l], best)) m = l, best = &c->heap[l];
    if (r < n && pair_before(&c->heap[r], best)) m = r;
    if (m == i) break;
    c->heap[i] = c->heap[m];
    i = m;
  }
  if (n) c->heap[i] = last;
  return top;
}

/* MaybeAddNewSymbolPair */
static qg_status maybe_add(qg_tok_ctx *c, const uint8_t *s, int32_t l, int32_t r) {
  if (l < 0 || r < 0) return QG_OK;
  const sym *a = &c->syms[l], *b = &c->syms[r];
  if (a->freeze || b->freeze) return QG_OK;
  uint32_t size = a->len + b->len;
  int id = piece_id(c->t, s + a->off, size);
  if (id < 0) return QG_OK;
  const qg_spm_piece *q = &c->t->spm.pieces[id];
  QG_TRY(heap_push(c, (pair){q->score, (uint32_t)l, (uint32_t)r, size}));
  if (q->type == QG_SPM_UNUSED) {
    if (c->rev_n == c->rev_cap) {
      size_t cap = c->rev_cap ? c->rev_cap * 2 : 32;
      revrec *v = realloc(c->rev, cap * sizeof *v);
      if (!v) return qg_fail(QG_ERR_NOMEM, "out of memory for BPE resegmentation");
      c->rev = v;
      c->rev_cap = cap;
    }
    c->rev[c->rev_n++] = (revrec){a->off, size, a->off, a->len, b->off, b->len};
  }
  return QG_OK;
}

/* Appends the ids of one final symbol (resegment + byte fallback). */
static qg_status emit(qg_tok_ctx *c, const uint8_t *s, uint32_t off, uint32_t len, int depth) {
  const qg_tok *t = c->t;
  int id = piece_id(t, s + off, len);
  if (id >= 0 && t->spm.pieces[id].type == QG_SPM_UNUSED && depth <= RESEGMENT_MAX_DEPTH) {
    for (size_t k = c->rev_n; k-- > 0;) { /* the latest record wins, as the map's overwrite */
      const revrec *r = &c->rev[k];
      if (r->len == len && memcmp(s + r->off, s + off, len) == 0) {
        revrec rr = *r;
        QG_TRY(emit(c, s, rr.loff, rr.llen, depth + 1));
        return emit(c, s, rr.roff, rr.rlen, depth + 1);
      }
    }
    id = -1;
  }
  if (id >= 0) return qg_tok_ids_push(&c->word, id);
  if (!t->byte_fallback) return qg_tok_ids_push(&c->word, t->unk_id);
  for (uint32_t i = 0; i < len; i++) QG_TRY(qg_tok_ids_push(&c->word, t->byte_id[s[off + i]]));
  return QG_OK;
}

/* BPE over s[0..n) (part of the normalized text); raw ids go to c->word. */
static qg_status bpe_segment(qg_tok_ctx *c, const uint8_t *s, size_t n) {
  const qg_tok *t = c->t;
  c->word.n = 0;
  if (n == 0) return QG_OK;
  if (n > 0x7FFFFFFF) return qg_fail(QG_ERR_INPUT, "a text of %zu bytes is too long to encode", n);
  if (c->syms_cap < n) {
    sym *v = realloc(c->syms, n * sizeof *v);
    if (!v) return qg_fail(QG_ERR_NOMEM, "out of memory for %zu BPE symbols", n);
    c->syms = v;
    c->syms_cap = n;
  }
  /* characters, or whole user-defined pieces (frozen) */
  int32_t ns = 0;
  for (size_t i = 0; i < n;) {
    size_t len = 0;
    int freeze = 0;
    if (t->n_ud) {
      len = qg_tok_user_match(t, s + i, n - i);
      freeze = len > 0;
    }
    if (!len) {
      static const uint8_t one_char_len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
      len = one_char_len[s[i] >> 4];
      if (len > n - i) len = n - i;
    }
    c->syms[ns] = (sym){(uint32_t)i, (uint32_t)len, ns - 1, ns + 1, freeze};
    ns++;
    i += len;
  }
  c->syms[ns - 1].next = -1;
  c->heap_n = 0;
  c->rev_n = 0;
  for (int32_t i = 1; i < ns; i++) QG_TRY(maybe_add(c, s, i - 1, i));
  while (c->heap_n) {
    pair p = heap_pop(c);
    sym *l = &c->syms[p.left], *r = &c->syms[p.right];
    if (l->len == 0 || r->len == 0 || l->len + r->len != p.size) continue; /* stale */
    l->len += r->len;
    l->next = r->next;
    if (r->next >= 0) c->syms[r->next].prev = (int32_t)p.left;
    r->len = 0;
    QG_TRY(maybe_add(c, s, l->prev, (int32_t)p.left));
    QG_TRY(maybe_add(c, s, (int32_t)p.left, l->next));
  }
  for (int32_t i = 0; i >= 0; i = c->syms[i].next)
    QG_TRY(emit(c, s, c->syms[i].off, c->syms[i].len, 0));
  return QG_OK;
}

/* Appends raw ids to out, folding runs of <unk> into one (only without byte fallback,
 * where unknown symbols stay <unk>). */
static qg_status append_ids(qg_tok_ctx *c, const int32_t *v, size_t n, qg_tok_ids *out) {
  const qg_tok *t = c->t;
  for (size_t i = 0; i < n; i++) {
    int unk = v[i] == t->unk_id;
    if (!(unk && c->prev_unk && !t->byte_fallback)) QG_TRY(qg_tok_ids_push(out, v[i]));
    c->prev_unk = unk;
  }
  return QG_OK;
}

static qg_status cache_grow(qg_tok_ctx *c) {
  size_t cap = c->ce_cap ? c->ce_cap * 2 : 4096;
  if (cap > CACHE_MAX_ENTRIES * 2) { /* full: start over */
    memset(c->ce, 0, c->ce_cap * sizeof *c->ce);
    c->ce_n = 0;
    c->keys.n = 0;
    c->ids.n = 0;
    return QG_OK;
  }
  centry *ne = calloc(cap, sizeof *ne);
  if (!ne) return qg_fail(QG_ERR_NOMEM, "out of memory for the word cache");
  for (size_t i = 0; i < c->ce_cap; i++) {
    if (!c->ce[i].hash) continue;
    size_t j = (size_t)c->ce[i].hash & (cap - 1);
    while (ne[j].hash) j = (j + 1) & (cap - 1);
    ne[j] = c->ce[i];
  }
  free(c->ce);
  c->ce = ne;
  c->ce_cap = cap;
  return QG_OK;
}

/* One "▁word" through the cache. */
static qg_status encode_word(qg_tok_ctx *c, const uint8_t *w, size_t n, qg_tok_ids *out) {
  if (n > CACHE_MAX_WORD) {
    QG_TRY(bpe_segment(c, w, n));
    return append_ids(c, c->word.v, c->word.n, out);
  }
  if (c->ce_n * 2 >= c->ce_cap) QG_TRY(cache_grow(c));
  uint64_t h = hash_bytes(w, n);
  size_t mask = c->ce_cap - 1, j = (size_t)h & mask;
  for (; c->ce[j].hash; j = (j + 1) & mask) {
    const centry *e = &c->ce[j];
    if (e->hash == h && e->key_len == n && memcmp(c->keys.p + e->key_off, w, n) == 0)
      return append_ids(c, c->ids.v + e->ids_off, e->n_ids, out);
  }
  QG_TRY(bpe_segment(c, w, n));
  if (c->keys.n + n < UINT32_MAX && c->ids.n + c->word.n < UINT32_MAX && c->word.n < UINT16_MAX) {
    centry e = {h, (uint32_t)c->keys.n, (uint32_t)c->ids.n, (uint16_t)n, (uint16_t)c->word.n};
    qg_buf_append(&c->keys, w, n);
    QG_TRY(qg_buf_status(&c->keys));
    for (size_t i = 0; i < c->word.n; i++) QG_TRY(qg_tok_ids_push(&c->ids, c->word.v[i]));
    c->ce[j] = e;
    c->ce_n++;
  }
  return append_ids(c, c->word.v, c->word.n, out);
}

qg_status qg_tok_encode(qg_tok_ctx *c, const uint8_t *text, size_t len, qg_tok_ids *out) {
  const qg_tok *t = c->t;
  c->norm.n = 0;
  QG_TRY(qg_tok_normalize(t, text, len, &c->norm));
  const uint8_t *s = c->norm.p;
  size_t n = c->norm.n;
  c->prev_unk = 0;
  if (!t->word_cache_ok) {
    QG_TRY(bpe_segment(c, s, n));
    return append_ids(c, c->word.v, c->word.n, out);
  }
  size_t start = 0;
  for (size_t i = 1; i + 3 <= n; i++) {
    if (s[i] != 0xE2 || s[i + 1] != 0x96 || s[i + 2] != 0x81) continue;
    QG_TRY(encode_word(c, s + start, i - start, out));
    start = i;
    i += 2;
  }
  if (start < n) QG_TRY(encode_word(c, s + start, n - start, out));
  return QG_OK;
}

/* ---- decoding ------------------------------------------------------------------------------ */

static void flush_bytes(qg_buf *out, const uint8_t *q, size_t n) {
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int l = qg_tok_utf8_decode(q + i, n - i, &cp);
    if (l == 0) {
      qg_buf_append(out, "\xEF\xBF\xBD", 3);
      i++;
    } else {
      qg_buf_append(out, q + i, (size_t)l);
      i += (size_t)l;
    }
  }
}

qg_status qg_tok_decode(const qg_tok *t, const int32_t *ids, size_t n, qg_buf *out) {
  const qg_spm *s = &t->spm;
  size_t start = out->n;
  uint8_t *q = NULL; /* pending byte pieces */
  size_t qn = 0, qcap = 0;
  int bos_ws = 1;
  qg_status st = QG_OK;
  for (size_t k = 0; k < n && !st; k++) {
    int id = ids[k];
    if (id < 0 || id >= s->n_pieces) {
      st = qg_fail(QG_ERR_INPUT, "id %d at position %zu is outside the %d-piece vocabulary",
                   id, k, s->n_pieces);
      break;
    }
    const qg_spm_piece *p = &s->pieces[id];
    if (p->type == QG_SPM_BYTE) {
      if (qn == qcap) {
        qcap = qcap ? qcap * 2 : 64;
        uint8_t *nq = realloc(q, qcap);
        if (!nq) {
          st = qg_fail(QG_ERR_NOMEM, "out of memory decoding");
          break;
        }
        q = nq;
      }
      int hi = p->piece[3] <= '9' ? p->piece[3] - '0' : p->piece[3] - 'A' + 10;
      int lo = p->piece[4] <= '9' ? p->piece[4] - '0' : p->piece[4] - 'A' + 10;
      q[qn++] = (uint8_t)(hi * 16 + lo);
      continue;
    }
    flush_bytes(out, q, qn);
    qn = 0;
    if (out->n > start) bos_ws = 0;
    if (p->type == QG_SPM_CONTROL) continue;
    const char *w = p->piece;
    size_t wl = p->len;
    int has_bos_ws = 0;
    if (bos_ws && (t->add_dummy_prefix || t->remove_extra_ws) && wl >= 3 &&
        memcmp(w, QG_TOK_SPACE, 3) == 0) {
      w += 3;
      wl -= 3;
      has_bos_ws = !t->remove_extra_ws;
    }
    if (id == t->unk_id) {
      qg_buf_str(out, t->unk_surface);
    } else {
      for (size_t i = 0; i < wl;) {
        if (i + 3 <= wl && memcmp(w + i, QG_TOK_SPACE, 3) == 0) {
          qg_buf_byte(out, ' ');
          i += 3;
        } else {
          qg_buf_byte(out, (uint8_t)w[i++]);
        }
      }
    }
    if (has_bos_ws || out->n > start) bos_ws = 0;
  }
  if (!st) flush_bytes(out, q, qn);
  free(q);
  if (st) {
    out->n = start;
    return st;
  }
  return qg_buf_status(out);
}
