/* The BPE trainer (see train.h). Names follow sentencepiece's trainer where the logic is
 * theirs: GetPairSymbol, AddNewPair, ResetFreq, AcceptSymbol. Frequencies are uint64 and
 * wrap as theirs do (ResetFreq on a pair that was never counted). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "tok/train.h"
#include "tok/train_internal.h"

#include "tok/unicode_scripts.inc"

#define WS_CHAR 0x2581u
#define UNK_CHAR 0x2585u      /* kUNKChar: rare characters become this */
#define BOUNDARY_CHAR 0x1Fu   /* kPretokenizationBoundaryChar: meta pieces become this */
#define N_CODEPOINTS 0x110000u

int qg_tok_script(uint32_t cp) {
  size_t lo = 0, hi = sizeof qg_script_start / sizeof qg_script_start[0];
  while (hi - lo > 1) { /* last range start <= cp */
    size_t mid = (lo + hi) / 2;
    if (qg_script_start[mid] <= cp) lo = mid;
    else hi = mid;
  }
  return qg_script_id[lo];
}

void qg_tok_train_defaults(qg_tok_train_opts *o) {
  memset(o, 0, sizeof *o);
  o->vocab_size = 1024;
  o->byte_fallback = 1;
  o->character_coverage = 0.999f;
  o->split_digits = 1;
  o->split_by_whitespace = 1;
  o->split_by_unicode_script = 1;
  o->split_by_number = 1;
  o->max_sentencepiece_length = 16;
  o->max_sentence_length = 4192;
  o->pad_id = 0;
  o->bos_id = 1;
  o->eos_id = 2;
  o->unk_id = 3;
}

/* ---- small containers ------------------------------------------------------------------ */
static qg_status grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return QG_OK;
  size_t c = *cap ? *cap : 64;
  while (c < need) c *= 2;
  void *np = realloc(*p, c * elem);
  if (!np) return qg_fail(QG_ERR_NOMEM, "trainer: out of memory (%zu x %zu bytes)", c, elem);
  *p = np;
  *cap = c;
  return QG_OK;
}

/* string -> count map for words (open addressing; keys in a byte pool) */
typedef struct {
  uint64_t *h;
  uint32_t *off, *len;
  int64_t *count;
  size_t cap, n;
  qg_buf pool;
} wordmap;

static uint64_t hash_str(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
  return h | 1;
}

static qg_status wordmap_add(wordmap *m, const uint8_t *w, size_t n, int64_t c) {
  if (m->n * 2 >= m->cap) {
    size_t cap = m->cap ? m->cap * 2 : 1 << 14;
    uint64_t *h = calloc(cap, sizeof *h);
    uint32_t *off = malloc(cap * sizeof *off), *len = malloc(cap * sizeof *len);
    int64_t *cnt = malloc(cap * sizeof *cnt);
    if (!h || !off || !len || !cnt) {
      free(h), free(off), free(len), free(cnt);
      return qg_fail(QG_ERR_NOMEM, "trainer: out of memory for the word table");
    }
    for (size_t i = 0; i < m->cap; i++) {
      if (!m->h[i]) continue;
      size_t j = m->h[i] & (cap - 1);
      while (h[j]) j = (j + 1) & (cap - 1);
      h[j] = m->h[i], off[j] = m->off[i], len[j] = m->len[i], cnt[j] = m->count[i];
    }
    free(m->h), free(m->off), free(m->len), free(m->count);
    m->h = h, m->off = off, m->len = len, m->count = cnt, m->cap = cap;
  }
  uint64_t hv = hash_str(w, n);
  size_t j = hv & (m->cap - 1);
  for (; m->h[j]; j = (j + 1) & (m->cap - 1))
    if (m->h[j] == hv && m->len[j] == n && !memcmp(m->pool.p + m->off[j], w, n)) {
      m->count[j] += c;
      return QG_OK;
    }
  if (m->pool.n + n > UINT32_MAX) return qg_fail(QG_ERR_NOMEM, "trainer: more than 4 GiB of words");
  m->h[j] = hv, m->off[j] = (uint32_t)m->pool.n, m->len[j] = (uint32_t)n, m->count[j] = c;
  qg_buf_append(&m->pool, w, n);
  m->n++;
  return qg_buf_status(&m->pool);
}

static void wordmap_free(wordmap *m) {
  free(m->h), free(m->off), free(m->len), free(m->count);
  qg_buf_free(&m->pool);
}

/* ---- trainer state ---------------------------------------------------------------------- */
typedef struct {
  int32_t sid, left, right;
} tpos;

typedef struct {
  int32_t left, right; /* pair symbols: their halves; characters: -1 */
  uint32_t cp;         /* characters */
  uint32_t off, len;   /* UTF-8 piece in the pool */
  uint32_t char_len, gen;
  uint64_t freq;
  tpos *pos;
  size_t npos, cappos;
  uint8_t active, needs_recomputation, pending, is_unk;
} tsym;

typedef struct {
  uint64_t freq;
  int32_t sym;
  uint32_t gen;
} qentry;

typedef struct {
  const qg_tok_train_opts *o;
  qg_buf pool; /* symbol pieces */
  tsym *sym;
  size_t nsym, capsym;
  int32_t *char_sym; /* code point -> symbol, or -1 */
  /* (left, right) -> symbol, -2 = not a valid piece */
  uint64_t *pk;
  int32_t *pv;
  size_t pcap, pn;
  /* words */
  size_t nwords;
  uint32_t *w_off, *w_len; /* into words pool */
  int64_t *w_count;
  qg_buf words;
  size_t *w_sym;   /* first index in syms of each word */
  int32_t *syms;   /* symbols_[sid][i], -1 = merged away */
  size_t *w_nsym;
  /* queues */
  qentry *heap;
  size_t heap_n, heap_cap;
  int32_t *pending;
  size_t npending, cappending;
} trainer;

static uint32_t get_char_symbol(trainer *T, uint32_t cp, qg_status *st) {
  if (T->char_sym[cp] >= 0) return (uint32_t)T->char_sym[cp];
  if ((*st = grow((void **)&T->sym, &T->capsym, T->nsym + 1, sizeof *T->sym))) return 0;
  tsym *s = &T->sym[T->nsym];
  memset(s, 0, sizeof *s);
  uint8_t u[4];
  size_t l = qg_tok_utf8_encode(cp, u);
  s->left = s->right = -1;
  s->cp = cp;
  s->off = (uint32_t)T->pool.n;
  s->len = (uint32_t)l;
  s->char_len = 1;
  s->freq = 1;
  s->active = 1;
  s->is_unk = cp == UNK_CHAR;
  qg_buf_append(&T->pool, u, l);
  T->char_sym[cp] = (int32_t)T->nsym;
  return (uint32_t)T->nsym++;
}

/* TrainerInterface::IsValidSentencePiece over the code points of a candidate piece. */
static int valid_piece(const trainer *T, const uint8_t *p, size_t n) {
  const qg_tok_train_opts *o = T->o;
  uint32_t cps[512];
  size_t nc = 0;
  for (size_t i = 0; i < n;) {
    uint32_t cp;
    int l = qg_tok_utf8_decode(p + i, n - i, &cp);
    if (!l) return 0;
    if (nc == (size_t)o->max_sentencepiece_length || nc == 512) return 0;
    cps[nc++] = cp;
    i += (size_t)l;
  }
  if (nc == 0) return 0;
  const int any = -1;
  int prev = any;
  for (size_t k = 0; k < nc; k++) {
    uint32_t c = cps[k];
    if (c == UNK_CHAR || c == 0 || c == BOUNDARY_CHAR || c == ' ') return 0;
    if (c == WS_CHAR) {
      /* all-whitespace pieces need allow_whitespace_only_pieces, which is off here:
       * "▁" only as the first character */
      if ((o->split_by_whitespace && k > 0) ||
          (!o->split_by_whitespace && k > 0 && k == nc - 1))
        return 0;
      continue;
    }
    int s = qg_tok_script(c);
    if (s == QG_SCRIPT_HIRAGANA || s == QG_SCRIPT_KATAKANA || c == 0x30FC) s = QG_SCRIPT_HAN;
    else if (s == QG_SCRIPT_INHERITED) s = prev;
    int digit = (c >= 0x30 && c <= 0x39) || (c >= 0xFF10 && c <= 0xFF19);
    if (!o->split_by_number && digit) s = any;
    if (o->split_digits && digit && nc > 1) return 0;
    if (o->split_by_unicode_script && s != any && prev != any && prev != s) return 0;
    prev = s;
  }
  return 1;
}

static qg_status pairmap_grow(trainer *T) {
  size_t cap = T->pcap ? T->pcap * 2 : 1 << 16;
  uint64_t *k = malloc(cap * sizeof *k);
  int32_t *v = malloc(cap * sizeof *v);
  if (!k || !v) {
    free(k), free(v);
    return qg_fail(QG_ERR_NOMEM, "trainer: out of memory for the pair table");
  }
  for (size_t i = 0; i < cap; i++) k[i] = UINT64_MAX;
  for (size_t i = 0; i < T->pcap; i++) {
    if (T->pk[i] == UINT64_MAX) continue;
    size_t j = (size_t)((T->pk[i] * 0x9E3779B97F4A7C15ull) >> 20) & (cap - 1);
    while (k[j] != UINT64_MAX) j = (j + 1) & (cap - 1);
    k[j] = T->pk[i], v[j] = T->pv[i];
  }
  free(T->pk), free(T->pv);
  T->pk = k, T->pv = v, T->pcap = cap;
  return QG_OK;
}

/* GetPairSymbol: the symbol for (left, right), created on first use; -1 when it cannot be
 * a piece. An accepted (inactive) pair starts afresh, as the library's cache forgets it. */
static int32_t get_pair_symbol(trainer *T, int32_t l, int32_t r, qg_status *st) {
  if (l < 0 || r < 0 || T->sym[l].is_unk || T->sym[r].is_unk) return -1;
  if (T->pn * 2 >= T->pcap && (*st = pairmap_grow(T))) return -1;
  uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
  size_t j = (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & (T->pcap - 1);
  for (; T->pk[j] != UINT64_MAX; j = (j + 1) & (T->pcap - 1)) {
    if (T->pk[j] != key) continue;
    int32_t id = T->pv[j];
    if (id >= 0 && !T->sym[id].active) { /* re-created: fresh counts */
      tsym *s = &T->sym[id];
      s->active = 1;
      s->gen++;
      s->freq = 0;
      s->npos = 0;
      s->needs_recomputation = s->pending = 0;
    }
    return id < 0 ? -1 : id;
  }
  /* new pair: its piece is left + right */
  const tsym *a = &T->sym[l], *b = &T->sym[r];
  size_t n = (size_t)a->len + b->len, off = T->pool.n;
  uint8_t piece[4096]; /* valid pieces are at most 512 characters */
  int32_t id = -2;
  int ok = n <= sizeof piece;
  if (ok) {
    memcpy(piece, T->pool.p + a->off, a->len);
    memcpy(piece + a->len, T->pool.p + b->off, b->len);
    ok = valid_piece(T, piece, n);
  }
  if (ok) {
    qg_buf_append(&T->pool, piece, n);
    if ((*st = qg_buf_status(&T->pool))) return -1;
    if ((*st = grow((void **)&T->sym, &T->capsym, T->nsym + 1, sizeof *T->sym))) return -1;
    tsym *s = &T->sym[T->nsym];
    memset(s, 0, sizeof *s);
    s->left = l, s->right = r;
    s->off = (uint32_t)off, s->len = (uint32_t)n;
    s->char_len = T->sym[l].char_len + T->sym[r].char_len;
    s->active = 1;
    id = (int32_t)T->nsym++;
  }
  T->pk[j] = key;
  T->pv[j] = id;
  T->pn++;
  return id < 0 ? -1 : id;
}

/* entry a ranks below b (std::priority_queue's less): lower freq, longer, larger piece */
static int q_less(const trainer *T, const qentry *a, const qentry *b) {
  if (a->freq != b->freq) return a->freq < b->freq;
  const tsym *x = &T->sym[a->sym], *y = &T->sym[b->sym];
  if (x->char_len != y->char_len) return x->char_len > y->char_len;
  size_t n = x->len < y->len ? x->len : y->len;
  int c = memcmp(T->pool.p + x->off, T->pool.p + y->off, n);
  if (c) return c > 0;
  return x->len > y->len;
}

static qg_status q_push(trainer *T, int32_t sym) {
  QG_TRY(grow((void **)&T->heap, &T->heap_cap, T->heap_n + 1, sizeof *T->heap));
  qentry e = {T->sym[sym].freq, sym, T->sym[sym].gen};
  size_t i = T->heap_n++;
  while (i > 0) {
    size_t up = (i - 1) / 2;
    if (!q_less(T, &T->heap[up], &e)) break;
    T->heap[i] = T->heap[up];
    i = up;
  }
  T->heap[i] = e;
  return QG_OK;
}

static void q_pop(trainer *T) {
  qentry last = T->heap[--T->heap_n];
  size_t i = 0, n = T->heap_n;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    const qentry *best = &last;
    if (l < n && q_less(T, best, &T->heap[l])) m = l, best = &T->heap[l];
    if (r < n && q_less(T, best, &T->heap[r])) m = r;
    if (m == i) break;
    T->heap[i] = T->heap[m];
    i = m;
  }
  if (n) T->heap[i] = last;
}

static qg_status add_pos(trainer *T, int32_t id, int32_t sid, int32_t l, int32_t r) {
  tsym *s = &T->sym[id];
  QG_TRY(grow((void **)&s->pos, &s->cappos, s->npos + 1, sizeof *s->pos));
  s->pos[s->npos++] = (tpos){sid, l, r};
  return QG_OK;
}

static qg_status mark_pending(trainer *T, int32_t id) {
  if (T->sym[id].pending) return QG_OK;
  T->sym[id].pending = 1;
  QG_TRY(grow((void **)&T->pending, &T->cappending, T->npending + 1, sizeof *T->pending));
  T->pending[T->npending++] = id;
  return QG_OK;
}

static inline int32_t *word_syms(trainer *T, int32_t sid) { return T->syms + T->w_sym[sid]; }

static qg_status add_new_pair(trainer *T, int32_t sid, int32_t l, int32_t r) {
  if (l < 0 || r < 0) return QG_OK;
  int32_t *ws = word_syms(T, sid);
  qg_status st = QG_OK;
  int32_t id = get_pair_symbol(T, ws[l], ws[r], &st);
  QG_TRY(st);
  if (id < 0) return QG_OK;
  QG_TRY(add_pos(T, id, sid, l, r));
  T->sym[id].freq += (uint64_t)T->w_count[sid];
  return mark_pending(T, id);
}

static qg_status reset_freq(trainer *T, int32_t sid, int32_t l, int32_t r, int32_t best) {
  if (l < 0 || r < 0) return QG_OK;
  int32_t *ws = word_syms(T, sid);
  qg_status st = QG_OK;
  int32_t id = get_pair_symbol(T, ws[l], ws[r], &st);
  QG_TRY(st);
  if (id >= 0 && id != best) {
    T->sym[id].freq -= (uint64_t)T->w_count[sid];
    T->sym[id].needs_recomputation = 1;
  }
  return QG_OK;
}

static void compute_freq(trainer *T, int32_t id) {
  tsym *s = &T->sym[id];
  if (!s->needs_recomputation) return;
  if (s->freq == 0) s->npos = 0;
  s->needs_recomputation = 0;
}

static int32_t next_index(trainer *T, int32_t sid, int32_t i) {
  const int32_t *ws = word_syms(T, sid);
  for (size_t k = (size_t)i + 1; k < T->w_nsym[sid]; k++)
    if (ws[k] >= 0) return (int32_t)k;
  return -1;
}

static int32_t prev_index(trainer *T, int32_t sid, int32_t i) {
  const int32_t *ws = word_syms(T, sid);
  for (int32_t k = i - 1; k >= 0; k--)
    if (ws[k] >= 0) return k;
  return -1;
}

static qg_status accept_symbol(trainer *T, int32_t best) {
  /* T->sym may move while pairs are created: index, never hold pointers */
  for (size_t k = 0; k < T->sym[best].npos; k++) {
    tpos p = T->sym[best].pos[k];
    int32_t *ws = word_syms(T, p.sid);
    if (ws[p.left] != T->sym[best].left || ws[p.right] != T->sym[best].right) continue;
    int32_t next = next_index(T, p.sid, p.right), prev = prev_index(T, p.sid, p.left);
    QG_TRY(reset_freq(T, p.sid, prev, p.left, best));
    QG_TRY(reset_freq(T, p.sid, p.right, next, best));
    ws[p.left] = best;
    ws[p.right] = -1;
    QG_TRY(add_new_pair(T, p.sid, prev, p.left));
    QG_TRY(add_new_pair(T, p.sid, p.left, next));
  }
  T->sym[best].active = 0;
  T->sym[best].npos = 0;
  return QG_OK;
}

static qg_status flush_pending(trainer *T) {
  for (size_t i = 0; i < T->npending; i++) {
    int32_t id = T->pending[i];
    T->sym[id].pending = 0;
    if (!T->sym[id].active) continue;
    compute_freq(T, id);
    QG_TRY(q_push(T, id));
  }
  T->npending = 0;
  return QG_OK;
}

/* ---- loading sentences (TrainerInterface::LoadSentences) ------------------------------- */

static int wordmap_has(const wordmap *m, const uint8_t *w, size_t n) {
  if (!m->cap) return 0;
  uint64_t hv = hash_str(w, n);
  for (size_t j = hv & (m->cap - 1); m->h[j]; j = (j + 1) & (m->cap - 1))
    if (m->h[j] == hv && m->len[j] == n && !memcmp(m->pool.p + m->off[j], w, n)) return 1;
  return 0;
}

typedef struct {
  const char *s;
  size_t n;
} meta_str;

static int holds_unk_char(const uint8_t *p, size_t n) { /* U+2585 = E2 96 85 */
  for (size_t i = 0; i + 3 <= n; i++)
    if (p[i] == 0xE2 && p[i + 1] == 0x96 && p[i + 2] == 0x85) return 1;
  return 0;
}

/* PrefixMatcher::GlobalReplace: the longest meta piece at each position becomes 0x1F. */
static void replace_meta(const meta_str *meta, int n_meta, const uint8_t *s, size_t n, qg_buf *out) {
  for (size_t i = 0; i < n;) {
    size_t best = 0;
    if (s[i] == '<')
      for (int k = 0; k < n_meta; k++)
        if (meta[k].n > best && meta[k].n <= n - i && !memcmp(meta[k].s, s + i, meta[k].n))
          best = meta[k].n;
    if (best) {
      qg_buf_byte(out, (uint8_t)BOUNDARY_CHAR);
      i += best;
    } else {
      qg_buf_byte(out, s[i++]);
    }
  }
}

typedef struct {
  uint32_t off, len;
} span;

typedef struct {
  qg_buf text; /* normalized sentences, back to back */
  span *sp;
  size_t n, cap;
  long skipped_long, skipped_reserved;
} sentences;

static qg_status load_sentences(const char *const *files, int n_files, const qg_tok_train_opts *o,
                                const qg_tok *norm, const meta_str *meta, int n_meta,
                                sentences *S) {
  int64_t total = 0, done = 0;
  for (int f = 0; f < n_files; f++) {
    qg_mmap m;
    QG_TRY(qg_mmap_open(files[f], &m));
    total += (int64_t)m.len;
    qg_mmap_close(&m);
  }
  qg_buf nb;
  qg_buf_init(&nb);
  qg_status st = QG_OK;
  for (int f = 0; f < n_files && !st; f++) {
    qg_mmap m;
    if ((st = qg_mmap_open(files[f], &m))) break;
    const uint8_t *p = m.data, *end = m.data + m.len;
    size_t since = 0;
    while (p < end && !st) {
      const uint8_t *nl = memchr(p, '\n', (size_t)(end - p));
      size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
      const uint8_t *line = p;
      p += n + (nl != NULL);
      since += n + 1;
      if (since > (1 << 20) && o->progress) {
        done += (int64_t)since;
        since = 0;
        o->progress(o->progress_user, "reading", (double)done, (double)total);
      }
      if (n == 0) continue;
      if (n > (size_t)o->max_sentence_length) {
        S->skipped_long++;
        continue;
      }
      if (holds_unk_char(line, n)) {
        S->skipped_reserved++;
        continue;
      }
      nb.n = 0;
      if ((st = qg_tok_normalize(norm, line, n, &nb))) break;
      size_t at = S->text.n;
      replace_meta(meta, n_meta, nb.p, nb.n, &S->text);
      if ((st = qg_buf_status(&S->text))) break;
      if (S->text.n == at) continue; /* normalized to nothing */
      if (S->text.n > UINT32_MAX) {
        st = qg_fail(QG_ERR_NOMEM, "trainer: more than 4 GiB of training text");
        break;
      }
      if ((st = grow((void **)&S->sp, &S->cap, S->n + 1, sizeof *S->sp))) break;
      S->sp[S->n++] = (span){(uint32_t)at, (uint32_t)(S->text.n - at)};
    }
    done += (int64_t)since;
    qg_mmap_close(&m);
  }
  qg_buf_free(&nb);
  return st;
}

typedef struct {
  uint32_t cp;
  int64_t count;
} charcount;

static int cmp_charcount(const void *a, const void *b) {
  const charcount *x = a, *y = b;
  if (x->count != y->count) return x->count > y->count ? -1 : 1;
  return x->cp < y->cp ? -1 : x->cp > y->cp;
}

static const wordmap *g_sort_words; /* qsort has no user pointer in C11 */
static int cmp_words(const void *a, const void *b) {
  const wordmap *m = g_sort_words;
  size_t i = *(const size_t *)a, j = *(const size_t *)b;
  if (m->count[i] != m->count[j]) return m->count[i] > m->count[j] ? -1 : 1;
  size_t n = m->len[i] < m->len[j] ? m->len[i] : m->len[j];
  int c = memcmp(m->pool.p + m->off[i], m->pool.p + m->off[j], n);
  if (c) return c;
  return m->len[i] < m->len[j] ? -1 : m->len[i] > m->len[j];
}

/* ---- training ------------------------------------------------------------------------------- */

static void trainer_free(trainer *T) {
  for (size_t i = 0; i < T->nsym; i++) free(T->sym[i].pos);
  free(T->sym);
  free(T->char_sym);
  free(T->pk), free(T->pv);
  free(T->w_off), free(T->w_len), free(T->w_count), free(T->w_sym), free(T->w_nsym);
  free(T->syms);
  free(T->heap);
  free(T->pending);
  qg_buf_free(&T->pool);
  qg_buf_free(&T->words);
}

/* Required characters (character_coverage), rare ones replaced, words counted. */
static qg_status count_chars_and_words(trainer *T, const sentences *S, charcount **req_out,
                                       size_t *n_req, uint8_t *required, wordmap *wm) {
  const qg_tok_train_opts *o = T->o;
  int64_t *cnt = calloc(N_CODEPOINTS, sizeof *cnt);
  if (!cnt) return qg_fail(QG_ERR_NOMEM, "trainer: out of memory for character counts");
  int64_t all = 0;
  for (size_t i = 0; i < S->n; i++) {
    const uint8_t *p = S->text.p + S->sp[i].off;
    size_t n = S->sp[i].len;
    for (size_t k = 0; k < n;) {
      uint32_t cp = 0xFFFD;
      int l = qg_tok_utf8_decode(p + k, n - k, &cp);
      k += l ? (size_t)l : 1;
      if (!l) cp = 0xFFFD;
      if (cp == 0) continue;
      if (cp == ' ') {
        free(cnt);
        return qg_fail(QG_ERR_INPUT, "trainer: a normalized sentence holds a space "
                       "(escape_whitespaces must be on)");
      }
      cnt[cp]++;
      all++;
    }
  }
  if (all == 0) {
    free(cnt);
    return qg_fail(QG_ERR_INPUT, "trainer: the input holds no characters to train on");
  }
  size_t nc = 0;
  for (uint32_t c = 0; c < N_CODEPOINTS; c++) nc += cnt[c] > 0;
  charcount *cc = malloc((nc ? nc : 1) * sizeof *cc);
  if (!cc) {
    free(cnt);
    return qg_fail(QG_ERR_NOMEM, "trainer: out of memory");
  }
  nc = 0;
  for (uint32_t c = 0; c < N_CODEPOINTS; c++)
    if (cnt[c] > 0) cc[nc++] = (charcount){c, cnt[c]};
  free(cnt);
  qsort(cc, nc, sizeof *cc, cmp_charcount);
  int64_t acc = 0;
  size_t nr = 0;
  for (size_t i = 0; i < nc; i++) {
    const float coverage = (float)(1.0 * (double)acc / (double)all);
    if (coverage >= o->character_coverage) break;
    acc += cc[i].count;
    if (cc[i].cp == BOUNDARY_CHAR) continue;
    required[cc[i].cp] = 1;
    cc[nr++] = cc[i];
  }
  *req_out = cc;
  *n_req = nr;
  /* rare characters -> U+2585, then words: a new word before every "▁" */
  qg_buf w;
  qg_buf_init(&w);
  qg_status st = QG_OK;
  for (size_t i = 0; i < S->n && !st; i++) {
    const uint8_t *p = S->text.p + S->sp[i].off;
    size_t n = S->sp[i].len;
    w.n = 0;
    for (size_t k = 0; k < n && !st;) {
      uint32_t cp;
      int l = qg_tok_utf8_decode(p + k, n - k, &cp);
      if (!l) cp = 0xFFFD;
      k += l ? (size_t)l : 1;
      if (cp == 0 || !required[cp]) cp = UNK_CHAR; /* NUL is never required */
      if (cp == WS_CHAR && w.n > 0) {
        st = wordmap_add(wm, w.p, w.n, 1);
        w.n = 0;
      }
      uint8_t u[4];
      qg_buf_append(&w, u, qg_tok_utf8_encode(cp, u));
    }
    if (!st && w.n) st = wordmap_add(wm, w.p, w.n, 1);
  }
  if (!st) st = qg_buf_status(&w);
  qg_buf_free(&w);
  return st;
}

qg_status qg_tok_train(const char *const *files, int n_files, const qg_tok_train_opts *o,
                       qg_spm *out) {
  memset(out, 0, sizeof *out);
  if (n_files < 1) return qg_fail(QG_ERR_INPUT, "trainer: no input files");
  if (o->vocab_size < 1 || o->vocab_size > (1 << 24))
    return qg_fail(QG_ERR_INPUT, "trainer: vocab_size %d out of range", o->vocab_size);
  if (!(o->character_coverage >= 0.98f && o->character_coverage <= 1.0f))
    return qg_fail(QG_ERR_INPUT, "trainer: character_coverage %g must be in [0.98, 1]",
                   (double)o->character_coverage);
  if (o->max_sentencepiece_length < 1 || o->max_sentencepiece_length > 512 ||
      o->max_sentence_length < 10)
    return qg_fail(QG_ERR_INPUT, "trainer: max_sentencepiece_length must be 1..512 and "
                   "max_sentence_length at least 10");
  if (!o->split_by_whitespace)
    return qg_fail(QG_ERR_UNSUPPORTED, "trainer: split_by_whitespace off is not supported");
  if (o->normalizer && !o->normalizer->escape_whitespaces)
    return qg_fail(QG_ERR_INPUT, "trainer: BPE training needs escape_whitespaces");

  int V = o->vocab_size;
  char (*names)[8] = calloc((size_t)V, sizeof *names);
  int *types = calloc((size_t)V, sizeof *types);
  if (!names || !types) {
    free(names), free(types);
    return qg_fail(QG_ERR_NOMEM, "trainer: out of memory");
  }
  qg_status st = qg_tok__meta_layout(o, names, types, V);
  int n_meta = 0;
  meta_str meta[260];
  for (int id = 0; id < V; id++)
    if (names[id][0]) meta[n_meta++] = (meta_str){names[id], strlen(names[id])};

  /* the normalizer the model will carry normalizes the training text too */
  qg_spm_normalizer ident;
  memset(&ident, 0, sizeof ident);
  qg_tok norm;
  memset(&norm, 0, sizeof norm);
  if (!st && !o->normalizer) st = qg_tok__identity_normalizer(&ident);
  if (!st) st = qg_tok_init_normalizer(&norm, o->normalizer ? o->normalizer : &ident, 0);

  sentences S;
  memset(&S, 0, sizeof S);
  qg_buf_init(&S.text);
  if (!st) st = load_sentences(files, n_files, o, &norm, meta, n_meta, &S);

  trainer T;
  memset(&T, 0, sizeof T);
  T.o = o;
  qg_buf_init(&T.pool);
  qg_buf_init(&T.words);
  wordmap wm, dup;
  memset(&wm, 0, sizeof wm), memset(&dup, 0, sizeof dup);
  qg_buf_init(&wm.pool), qg_buf_init(&dup.pool);
  charcount *req = NULL;
  size_t n_req = 0;
  uint8_t *required = calloc(N_CODEPOINTS, 1);
  T.char_sym = malloc(N_CODEPOINTS * sizeof *T.char_sym);
  if (!st && (!required || !T.char_sym)) st = qg_fail(QG_ERR_NOMEM, "trainer: out of memory");
  if (!st && S.n == 0) st = qg_fail(QG_ERR_INPUT, "trainer: no sentences to train on (all "
                                    "lines empty, too long or skipped)");
  if (!st) {
    for (uint32_t c = 0; c < N_CODEPOINTS; c++) T.char_sym[c] = -1;
    st = count_chars_and_words(&T, &S, &req, &n_req, required, &wm);
  }
  qg_buf_free(&S.text);
  free(S.sp);
  if (!st && (int64_t)n_req + n_meta > V)
    st = qg_fail(QG_ERR_INPUT, "trainer: vocab_size %d is smaller than the %zu required "
                 "characters plus %d meta pieces (lower character_coverage or raise vocab_size)",
                 V, n_req, n_meta);

  /* words in Sorted() order: count descending, then bytes */
  size_t *order = NULL;
  if (!st) {
    T.nwords = wm.n;
    order = malloc((wm.n ? wm.n : 1) * sizeof *order);
    T.w_count = malloc((wm.n ? wm.n : 1) * sizeof *T.w_count);
    T.w_sym = malloc((wm.n ? wm.n : 1) * sizeof *T.w_sym);
    T.w_nsym = malloc((wm.n ? wm.n : 1) * sizeof *T.w_nsym);
    if (!order || !T.w_count || !T.w_sym || !T.w_nsym) st = qg_fail(QG_ERR_NOMEM, "trainer: out of memory");
  }
  if (!st) {
    size_t k = 0, nchars = 0;
    for (size_t i = 0; i < wm.cap; i++)
      if (wm.h[i]) order[k++] = i;
    g_sort_words = &wm;
    qsort(order, k, sizeof *order, cmp_words);
    for (size_t i = 0; i < k; i++) nchars += wm.len[order[i]]; /* bytes >= characters */
    T.syms = malloc((nchars ? nchars : 1) * sizeof *T.syms);
    if (!T.syms) st = qg_fail(QG_ERR_NOMEM, "trainer: out of memory for %zu symbols", nchars);
    size_t at = 0;
    for (size_t sid = 0; sid < k && !st; sid++) { /* InitSymbolsAndBigrams */
      size_t i = order[sid];
      const uint8_t *p = wm.pool.p + wm.off[i];
      size_t n = wm.len[i];
      T.w_count[sid] = wm.count[i];
      T.w_sym[sid] = at;
      for (size_t b = 0; b < n && !st;) {
        uint32_t cp;
        int l = qg_tok_utf8_decode(p + b, n - b, &cp);
        b += (size_t)l;
        T.syms[at++] = (int32_t)get_char_symbol(&T, cp, &st);
      }
      T.w_nsym[sid] = at - T.w_sym[sid];
      for (size_t j = 1; j < T.w_nsym[sid] && !st; j++)
        st = add_new_pair(&T, (int32_t)sid, (int32_t)j - 1, (int32_t)j);
    }
  }
  free(order);
  if (!st) st = flush_pending(&T);

  /* the merges */
  size_t max_merges = st ? 0 : (size_t)(V - n_meta) - n_req, n_merges = 0;
  uint32_t *m_off = malloc((max_merges + n_req + 1) * sizeof *m_off);
  uint32_t *m_len = malloc((max_merges + n_req + 1) * sizeof *m_len);
  if (!st && (!m_off || !m_len)) st = qg_fail(QG_ERR_NOMEM, "trainer: out of memory");
  while (!st && n_merges < max_merges) {
    int32_t best = -1;
    while (T.heap_n && !st) {
      qentry e = T.heap[0];
      tsym *s = &T.sym[e.sym];
      if (e.gen != s->gen || !s->active) {
        q_pop(&T);
        continue;
      }
      if (s->needs_recomputation) {
        q_pop(&T);
        compute_freq(&T, e.sym);
        st = q_push(&T, e.sym);
        continue;
      }
      q_pop(&T);
      if (e.freq != s->freq) continue;
      best = e.sym;
      break;
    }
    if (st || best < 0) break;
    const uint8_t *piece = T.pool.p + T.sym[best].off;
    if (wordmap_has(&dup, piece, T.sym[best].len)) { /* same piece by another path */
      T.sym[best].active = 0;
      T.sym[best].npos = 0;
      continue;
    }
    if ((st = wordmap_add(&dup, piece, T.sym[best].len, 1))) break;
    m_off[n_merges] = T.sym[best].off;
    m_len[n_merges] = T.sym[best].len;
    n_merges++;
    if (o->progress && (n_merges % 32 == 0 || n_merges == max_merges))
      o->progress(o->progress_user, "merging", (double)n_merges, (double)max_merges);
    if ((st = accept_symbol(&T, best))) break;
    st = flush_pending(&T);
  }
  /* then the required characters, most frequent first */
  for (size_t i = 0; i < n_req && !st; i++) {
    int32_t cs = (int32_t)get_char_symbol(&T, req[i].cp, &st);
    if (st) break;
    m_off[n_merges + i] = T.sym[cs].off;
    m_len[n_merges + i] = T.sym[cs].len;
  }
  if (!st)
    st = qg_tok__build_model(o, files, n_files, names, types, V, &T.pool, m_off, m_len, n_merges + n_req, out);
  free(m_off), free(m_len);
  free(req);
  free(required);
  free(names), free(types);
  wordmap_free(&wm), wordmap_free(&dup);
  trainer_free(&T);
  qg_tok_free(&norm);
  free(ident.name), free(ident.normalization_rule_tsv);
  return st;
}
