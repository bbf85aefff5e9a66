/* Static interleaved rANS (see io/rans.h). */
#include "io/rans.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define RANS_L (1u << 23) /* lower bound of the normalised state */
#define NSTATE 4

/* ---- varints ------------------------------------------------------------------------ */

void qg_varint_put(qg_buf *b, uint64_t v) {
  while (v >= 0x80) qg_buf_byte(b, (uint8_t)(v | 0x80)), v >>= 7;
  qg_buf_byte(b, (uint8_t)v);
}

size_t qg_varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) v >>= 7, n++;
  return n;
}

int qg_varint_get(const uint8_t *p, size_t len, size_t *pos, uint64_t *v) {
  uint64_t r = 0;
  for (int sh = 0; sh < 64; sh += 7) {
    if (*pos >= len) return -1;
    uint8_t c = p[(*pos)++];
    if (sh == 63 && (c & 0x7e)) return -1;
    r |= (uint64_t)(c & 0x7f) << sh;
    if (!(c & 0x80)) return *v = r, 0;
  }
  return -1;
}

/* ---- tables ------------------------------------------------------------------------- */

void qg_rans_table_free(qg_rans_table *t) {
  free(t->freq), free(t->cum);
  memset(t, 0, sizeof *t);
}

static qg_status table_alloc(qg_rans_table *t, int nsym, int prob_bits) {
  memset(t, 0, sizeof *t);
  t->nsym = nsym, t->prob_bits = prob_bits;
  t->freq = calloc((size_t)nsym + 1, sizeof *t->freq);
  t->cum = calloc((size_t)nsym + 1, sizeof *t->cum);
  if (!t->freq || !t->cum) {
    qg_rans_table_free(t);
    return qg_fail(QG_ERR_NOMEM, "out of memory (rANS table of %d symbols)", nsym);
  }
  return QG_OK;
}

static void table_finish(qg_rans_table *t) {
  t->present = 0;
  t->cum[0] = 0;
  for (int s = 0; s < t->nsym; s++) t->cum[s + 1] = t->cum[s] + t->freq[s], t->present += t->freq[s] > 0;
}

qg_status qg_rans_count(const uint32_t *sym, size_t n, int nsym, uint64_t *counts) {
  memset(counts, 0, (size_t)nsym * sizeof *counts);
  for (size_t i = 0; i < n; i++) {
    if (sym[i] >= (uint32_t)nsym)
      return qg_fail(QG_ERR_INPUT, "symbol %u at index %zu is outside the alphabet of %d", sym[i], i, nsym);
    counts[sym[i]]++;
  }
  return QG_OK;
}

/* Cost change of freq f -> f+1 (gain, positive) and f -> f-1 (loss), for count c. */
static double gain_up(uint64_t c, uint32_t f) { return (double)c * log2((double)(f + 1) / f); }
static double loss_down(uint64_t c, uint32_t f) { return f > 1 ? (double)c * log2((double)f / (f - 1)) : INFINITY; }

/* An indexed binary heap of symbols keyed by key[s]: the top is the largest key (sign +1)
 * or the smallest (sign -1), the lowest symbol among equal keys, so it picks exactly the
 * symbol a first-to-last scan keeping the first strict best would. */
typedef struct {
  int *h, *pos, n, sign;
  double *key;
} sym_heap;

static int heap_before(const sym_heap *q, int a, int b) {
  double ka = q->sign * q->key[a], kb = q->sign * q->key[b];
  return ka > kb || (ka == kb && a < b);
}

static void heap_swap(sym_heap *q, int i, int j) {
  int t = q->h[i];
  q->h[i] = q->h[j], q->h[j] = t;
  q->pos[q->h[i]] = i, q->pos[q->h[j]] = j;
}

static void heap_down(sym_heap *q, int i) {
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    if (l < q->n && heap_before(q, q->h[l], q->h[m])) m = l;
    if (r < q->n && heap_before(q, q->h[r], q->h[m])) m = r;
    if (m == i) return;
    heap_swap(q, i, m), i = m;
  }
}

/* Restores the order around symbol s after its key changed either way. */
static void heap_fix(sym_heap *q, int s) {
  int i = q->pos[s];
  while (i > 0 && heap_before(q, q->h[i], q->h[(i - 1) / 2])) heap_swap(q, i, (i - 1) / 2), i = (i - 1) / 2;
  heap_down(q, i);
}

static void heap_build(sym_heap *q) {
  for (int i = 0; i < q->n; i++) q->h[i] = i, q->pos[i] = i;
  for (int i = q->n / 2; i-- > 0;) heap_down(q, i);
}

qg_status qg_rans_table_build(const uint64_t *counts, int nsym, int prob_bits, qg_rans_table *t) {
  if (prob_bits < QG_RANS_MIN_BITS || prob_bits > QG_RANS_MAX_BITS)
    return qg_fail(QG_ERR_INPUT, "rANS precision %d bits is outside %d..%d", prob_bits, QG_RANS_MIN_BITS,
                   QG_RANS_MAX_BITS);
  while (nsym > 0 && counts[nsym - 1] == 0) nsym--;
  if (nsym > QG_RANS_MAX_ALPHABET)
    return qg_fail(QG_ERR_INPUT, "rANS alphabet of %d symbols exceeds %d", nsym, QG_RANS_MAX_ALPHABET);
  const uint32_t M = 1u << prob_bits;
  uint64_t total = 0;
  int present = 0;
  for (int s = 0; s < nsym; s++) total += counts[s], present += counts[s] > 0;
  if ((uint32_t)present > M)
    return qg_fail(QG_ERR_INPUT, "%d present symbols do not fit a %d-bit rANS table", present, prob_bits);
  QG_TRY(table_alloc(t, nsym, prob_bits));
  if (!nsym) return QG_OK;
  /* proportional start, every present symbol >= 1 */
  int64_t total_f = 0;
  for (int s = 0; s < nsym; s++) {
    if (!counts[s]) continue;
    uint64_t f = (uint64_t)((double)counts[s] * M / (double)total);
    t->freq[s] = (uint32_t)(f < 1 ? 1 : f > M ? M : f);
    total_f += t->freq[s];
  }
  /* Reach the exact sum by the cheapest single-unit moves, then move units from the symbol
   * that loses least to the one that gains most while that lowers the cost. The objective
   * is separable and concave in each freq, so a table where no single move of one unit
   * helps is the global minimum. Heaps of the present symbols keyed by those marginal
   * costs make each move O(log k), O(k log k) in all. */
  /* small alphabets (every code width up to 8 bits) need no heap allocation */
  int mem_s[4 * 256], sym_s[256];
  double key_s[2 * 256];
  int small = present <= 256;
  int *mem = small ? mem_s : malloc(4 * (size_t)present * sizeof *mem);
  double *key = small ? key_s : malloc(2 * (size_t)present * sizeof *key);
  int *sym_of = small ? sym_s : malloc((size_t)present * sizeof *sym_of);
  if (!mem || !key || !sym_of) {
    if (!small) free(mem), free(key), free(sym_of);
    qg_rans_table_free(t);
    return qg_fail(QG_ERR_NOMEM, "out of memory (rANS normaliser, %d symbols)", present);
  }
  /* heap entries are ranks 0..present-1 of the present symbols, in symbol order, so the
   * lowest-rank tie-break is the lowest symbol */
  for (int s = 0, r = 0; s < nsym; s++)
    if (counts[s]) sym_of[r++] = s;
  sym_heap up = {mem, mem + present, present, 1, key}, dn = {mem + 2 * present, mem + 3 * present, present, -1,
                                                                   key + present};
  if (total_f != (int64_t)M) {
    int add = total_f < (int64_t)M;
    for (int r = 0; r < present; r++) {
      int s = sym_of[r];
      up.key[r] = add ? gain_up(counts[s], t->freq[s]) : -loss_down(counts[s], t->freq[s]);
    }
    heap_build(&up);
    while (total_f != (int64_t)M) {
      int r = up.h[0], s = sym_of[r];
      if (add) t->freq[s]++, total_f++;
      else t->freq[s]--, total_f--;
      up.key[r] = add ? gain_up(counts[s], t->freq[s]) : -loss_down(counts[s], t->freq[s]);
      heap_fix(&up, r);
    }
  }
  for (int r = 0; r < present; r++) {
    int s = sym_of[r];
    up.key[r] = gain_up(counts[s], t->freq[s]), dn.key[r] = loss_down(counts[s], t->freq[s]);
  }
  heap_build(&up), heap_build(&dn);
  for (int iter = 0; iter < 4 * nsym + 16; iter++) {
    int ru = up.h[0], rd = dn.h[0];
    double gu = up.key[ru], ld = dn.key[rd];
    if (ru == rd || !(gu > ld * (1 + 1e-12))) break;
    int su = sym_of[ru], sd = sym_of[rd];
    t->freq[su]++, t->freq[sd]--;
    up.key[ru] = gain_up(counts[su], t->freq[su]), dn.key[ru] = loss_down(counts[su], t->freq[su]);
    up.key[rd] = gain_up(counts[sd], t->freq[sd]), dn.key[rd] = loss_down(counts[sd], t->freq[sd]);
    heap_fix(&up, ru), heap_fix(&up, rd), heap_fix(&dn, ru), heap_fix(&dn, rd);
  }
  if (!small) free(mem), free(key), free(sym_of);
  table_finish(t);
  return QG_OK;
}

double qg_rans_cross_entropy_bits(const qg_rans_table *t, const uint64_t *counts, int nsym) {
  double bits = 0;
  for (int s = 0; s < nsym; s++) {
    if (!counts[s]) continue;
    if (s >= t->nsym || !t->freq[s]) return INFINITY;
    bits -= (double)counts[s] * (log2((double)t->freq[s]) - t->prob_bits);
  }
  return bits;
}

double qg_entropy_bits(const uint64_t *counts, int nsym) {
  uint64_t n = 0;
  for (int s = 0; s < nsym; s++) n += counts[s];
  double bits = 0;
  for (int s = 0; s < nsym; s++)
    if (counts[s]) bits -= (double)counts[s] * log2((double)counts[s] / (double)n);
  return bits;
}

/* ---- table serialisation ------------------------------------------------------------ */

static int bitlen(uint32_t v) { return v ? 32 - __builtin_clz(v) : 0; }

static size_t table_body_bits(const qg_rans_table *t) {
  size_t bits = 0;
  for (int s = 0; s + 1 < t->nsym; s++) bits += 5 + (t->freq[s] ? (size_t)bitlen(t->freq[s]) - 1 : 0);
  return bits;
}

size_t qg_rans_table_bytes(const qg_rans_table *t) {
  if (!t->nsym) return 1;
  return qg_varint_len((uint64_t)t->nsym) + 1 + (table_body_bits(t) + 7) / 8;
}

void qg_rans_table_write(const qg_rans_table *t, qg_buf *out) {
  qg_varint_put(out, (uint64_t)t->nsym);
  if (!t->nsym) return;
  qg_buf_byte(out, (uint8_t)t->prob_bits);
  uint64_t acc = 0;
  int na = 0;
  for (int s = 0; s + 1 < t->nsym; s++) {
    uint32_t f = t->freq[s];
    int k = bitlen(f);
    acc |= (uint64_t)k << na, na += 5;
    if (k > 1) acc |= (uint64_t)(f & ((1u << (k - 1)) - 1)) << na, na += k - 1;
    while (na >= 8) qg_buf_byte(out, (uint8_t)acc), acc >>= 8, na -= 8;
  }
  if (na) qg_buf_byte(out, (uint8_t)acc);
}

qg_status qg_rans_table_read(const uint8_t *p, size_t len, size_t *used, qg_rans_table *t) {
  memset(t, 0, sizeof *t);
  size_t pos = 0;
  uint64_t nsym;
  if (qg_varint_get(p, len, &pos, &nsym)) return qg_fail(QG_ERR_INPUT, "rANS table: truncated alphabet size");
  if (nsym > QG_RANS_MAX_ALPHABET)
    return qg_fail(QG_ERR_INPUT, "rANS table: alphabet of %llu symbols exceeds %d", (unsigned long long)nsym,
                   QG_RANS_MAX_ALPHABET);
  if (!nsym) {
    QG_TRY(table_alloc(t, 0, QG_RANS_MIN_BITS));
    *used = pos;
    return QG_OK;
  }
  if (pos >= len) return qg_fail(QG_ERR_INPUT, "rANS table: truncated precision byte");
  int pb = p[pos++];
  if (pb < QG_RANS_MIN_BITS || pb > QG_RANS_MAX_BITS)
    return qg_fail(QG_ERR_INPUT, "rANS table: precision %d bits is outside %d..%d", pb, QG_RANS_MIN_BITS,
                   QG_RANS_MAX_BITS);
  QG_TRY(table_alloc(t, (int)nsym, pb));
  const uint64_t M = 1u << pb;
  uint64_t acc = 0, sum = 0;
  int na = 0;
  for (int s = 0; s + 1 < t->nsym; s++) {
    /* 5-bit length k, then k-1 low bits below the implicit top bit */
    int k = -1;
    for (int need = 5; need;) {
      while (na < need) {
        if (pos >= len) {
          qg_rans_table_free(t);
          return qg_fail(QG_ERR_INPUT, "rANS table: truncated at symbol %d of %llu", s, (unsigned long long)nsym);
        }
        acc |= (uint64_t)p[pos++] << na, na += 8;
      }
      uint32_t v = (uint32_t)(acc & ((1u << need) - 1));
      acc >>= need, na -= need;
      if (k >= 0) {
        t->freq[s] |= v;
        break;
      }
      k = (int)v;
      if (k > pb + 1) {
        qg_rans_table_free(t);
        return qg_fail(QG_ERR_INPUT, "rANS table: symbol %d has a %d-bit frequency (precision %d)", s, k, pb);
      }
      t->freq[s] = k ? 1u << (k - 1) : 0;
      need = k > 1 ? k - 1 : 0;
    }
    sum += t->freq[s];
    if (sum >= M) {
      qg_rans_table_free(t);
      return qg_fail(QG_ERR_INPUT, "rANS table: frequencies reach 2^%d by symbol %d", pb, s);
    }
  }
  t->freq[t->nsym - 1] = (uint32_t)(M - sum);
  table_finish(t);
  *used = pos;
  return QG_OK;
}

/* ---- coding ------------------------------------------------------------------------- */

static qg_status bad_symbol(const qg_rans_table *t, uint32_t s, size_t i) {
  return qg_fail(QG_ERR_INPUT, "symbol %u at index %zu is outside the rANS table (alphabet %d%s)", s, i, t->nsym,
                 s < (uint32_t)t->nsym ? ", frequency 0" : "");
}

qg_status qg_rans_payload_cost(const qg_rans_table *t, const uint32_t *sym, size_t n, size_t *bytes) {
  *bytes = 0;
  if (!n) return QG_OK;
  if (!t->nsym) return qg_fail(QG_ERR_INPUT, "%zu symbols under an empty rANS table", n);
  const int pb = t->prob_bits;
  uint32_t x[NSTATE] = {RANS_L, RANS_L, RANS_L, RANS_L};
  size_t out = 0;
  for (size_t i = n; i-- > 0;) {
    uint32_t s = sym[i];
    if (s >= (uint32_t)t->nsym || !t->freq[s]) return bad_symbol(t, s, i);
    uint32_t f = t->freq[s], *xs = &x[i & 3];
    uint32_t xmax = ((RANS_L >> pb) << 8) * f;
    while (*xs >= xmax) *xs >>= 8, out++;
    *xs = ((*xs / f) << pb) + (*xs % f) + t->cum[s];
  }
  *bytes = t->present == 1 ? 0 : out + QG_RANS_FLUSH_BYTES;
  return QG_OK;
}

qg_status qg_rans_encode(const qg_rans_table *t, const uint32_t *sym, size_t n, qg_buf *out) {
  size_t bytes;
  QG_TRY(qg_rans_payload_cost(t, sym, n, &bytes));
  if (!bytes) return QG_OK;
  size_t base = out->n;
  qg_buf_zeros(out, bytes);
  QG_TRY(qg_buf_status(out));
  uint8_t *beg = out->p + base, *p = beg + bytes;
  const int pb = t->prob_bits;
  uint32_t x[NSTATE] = {RANS_L, RANS_L, RANS_L, RANS_L};
  for (size_t i = n; i-- > 0;) {
    uint32_t s = sym[i], f = t->freq[s], *xs = &x[i & 3];
    uint32_t xmax = ((RANS_L >> pb) << 8) * f;
    while (*xs >= xmax) *--p = (uint8_t)*xs, *xs >>= 8;
    *xs = ((*xs / f) << pb) + (*xs % f) + t->cum[s];
  }
  for (int k = NSTATE; k-- > 0;) p -= 4, qg_wr_u32le(p, x[k]);
  if (p != beg) return qg_fail(QG_ERR_INTERNAL, "rANS encoder wrote %td bytes more than its cost", beg - p);
  return QG_OK;
}

typedef struct {
  uint16_t sym, freq_m1, cum;
} slot_t;

/* The slot of value v < 2^prob_bits: the last symbol with cum <= v, which has freq > 0
 * because cum[nsym] = 2^prob_bits > v. */
static slot_t find_slot(const qg_rans_table *t, uint32_t v) {
  int lo = 0, hi = t->nsym - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) >> 1;
    if (t->cum[mid] <= v) lo = mid; else hi = mid - 1;
  }
  return (slot_t){(uint16_t)lo, (uint16_t)(t->freq[lo] - 1), (uint16_t)t->cum[lo]};
}

/* The flushed states that start every payload, each checked to lie in the normalised range. */
static qg_status read_states(const uint8_t *p, size_t len, uint32_t x[NSTATE]) {
  if (len < QG_RANS_FLUSH_BYTES) return qg_fail(QG_ERR_INPUT, "rANS payload of %zu bytes lacks its 16 state bytes", len);
  for (int k = 0; k < NSTATE; k++) {
    x[k] = qg_rd_u32le(p + 4 * k);
    if (x[k] < RANS_L || x[k] >= RANS_L << 8)
      return qg_fail(QG_ERR_INPUT, "rANS payload: state %d (0x%08x) is outside the normalised range", k, x[k]);
  }
  return QG_OK;
}

qg_status qg_rans_decode(const qg_rans_table *t, const uint8_t *p, size_t len, uint32_t *sym, size_t n) {
  if (!n) {
    if (len) return qg_fail(QG_ERR_INPUT, "rANS payload of %zu bytes for 0 symbols", len);
    return QG_OK;
  }
  if (!t->nsym) return qg_fail(QG_ERR_INPUT, "%zu symbols under an empty rANS table", n);
  if (t->present == 1) {
    if (len) return qg_fail(QG_ERR_INPUT, "rANS payload of %zu bytes for a one-symbol table", len);
    uint32_t s = 0;
    while (!t->freq[s]) s++;
    for (size_t i = 0; i < n; i++) sym[i] = s;
    return QG_OK;
  }
  uint32_t x[NSTATE];
  QG_TRY(read_states(p, len, x));
  const int pb = t->prob_bits;
  const uint32_t M = 1u << pb, mask = M - 1;
  /* A slot table costs M entries to fill: for short streams finding the symbol by binary
   * search over cum is cheaper (same symbols either way). */
  slot_t *slot = NULL;
  if (n >= M / 8) {
    slot = malloc(M * sizeof *slot);
    if (!slot) return qg_fail(QG_ERR_NOMEM, "out of memory (rANS slots)");
    for (int s = 0; s < t->nsym; s++)
      for (uint32_t j = t->cum[s]; j < t->cum[s + 1]; j++)
        slot[j] = (slot_t){(uint16_t)s, (uint16_t)(t->freq[s] - 1), (uint16_t)t->cum[s]};
  }
  const uint8_t *q = p + QG_RANS_FLUSH_BYTES, *end = p + len;
  size_t i = 0;
  /* The hot loop: four symbols per round with one bounds check per round (at most
   * 2 renormalisation bytes per symbol at <= 16-bit precision, so 8 bytes per round). */
  for (; slot && i + NSTATE <= n && end - q >= 2 * NSTATE; i += NSTATE) {
    for (int k = 0; k < NSTATE; k++) {
      slot_t e = slot[x[k] & mask];
      sym[i + k] = e.sym;
      x[k] = ((uint32_t)e.freq_m1 + 1) * (x[k] >> pb) + (x[k] & mask) - e.cum;
      while (x[k] < RANS_L) x[k] = (x[k] << 8) | *q++;
    }
  }
  for (; i < n; i++) {
    uint32_t *xs = &x[i & 3];
    slot_t e = slot ? slot[*xs & mask] : find_slot(t, *xs & mask);
    sym[i] = e.sym;
    *xs = ((uint32_t)e.freq_m1 + 1) * (*xs >> pb) + (*xs & mask) - e.cum;
    while (*xs < RANS_L) {
      if (q >= end) {
        free(slot);
        return qg_fail(QG_ERR_INPUT, "rANS payload: stream decodes past its end at symbol %zu of %zu", i, n);
      }
      *xs = (*xs << 8) | *q++;
    }
  }
  free(slot);
  if (q != end) return qg_fail(QG_ERR_INPUT, "rANS payload: %td trailing bytes after %zu symbols", end - q, n);
  for (int k = 0; k < NSTATE; k++)
    if (x[k] != RANS_L) return qg_fail(QG_ERR_INPUT, "rANS payload: state %d does not return to its start (corrupt)", k);
  return QG_OK;
}

/* ---- self-contained streams --------------------------------------------------------- */

static qg_status best_table(const uint32_t *sym, size_t n, int nsym, int prob_bits, qg_rans_table *t, size_t *total,
                            size_t *payload) {
  uint64_t *counts = malloc(((size_t)nsym + 1) * sizeof *counts);
  if (!counts) return qg_fail(QG_ERR_NOMEM, "out of memory (rANS counts)");
  qg_status st = qg_rans_count(sym, n, nsym, counts);
  int lo = prob_bits ? prob_bits : QG_RANS_MIN_BITS, hi = prob_bits ? prob_bits : QG_RANS_MAX_BITS;
  memset(t, 0, sizeof *t);
  *total = SIZE_MAX;
  for (int pb = lo; st == QG_OK && pb <= hi; pb++) {
    qg_rans_table c;
    st = qg_rans_table_build(counts, nsym, pb, &c);
    if (st != QG_OK) break;
    size_t pay;
    st = qg_rans_payload_cost(&c, sym, n, &pay);
    size_t tot = qg_rans_table_bytes(&c) + qg_varint_len(pay) + pay;
    if (st == QG_OK && tot < *total) {
      qg_rans_table_free(t);
      *t = c, *total = tot, *payload = pay;
    } else {
      qg_rans_table_free(&c);
    }
  }
  free(counts);
  if (st != QG_OK) qg_rans_table_free(t);
  return st;
}

/* A part's table at prob_bits (0: the precision with the least table bytes + ideal payload). */
static qg_status part_table(const uint64_t *c, int nsym, int prob_bits, qg_rans_table *t) {
  double best = INFINITY;
  memset(t, 0, sizeof *t);
  for (int pb = prob_bits ? prob_bits : QG_RANS_MIN_BITS; pb <= (prob_bits ? prob_bits : QG_RANS_MAX_BITS); pb++) {
    qg_rans_table u;
    qg_status st = qg_rans_table_build(c, nsym, pb, &u);
    if (st) return qg_rans_table_free(t), st;
    double v = qg_rans_cross_entropy_bits(&u, c, nsym) / 8 + (double)qg_rans_table_bytes(&u);
    if (v < best) best = v, qg_rans_table_free(t), *t = u;
    else qg_rans_table_free(&u);
  }
  return QG_OK;
}

/* Alphabets over QG_RANS_MAX_ALPHABET (up to 2^16): the high parts' table and the low
 * bytes' table from the symbols' own counts, *total = both tables + varint + payload. */
static qg_status wide_tables(const uint32_t *sym, size_t n, int nsym, int prob_bits, qg_rans_table *hi, qg_rans_table *lo,
                             size_t *total, size_t *payload) {
  memset(hi, 0, sizeof *hi), memset(lo, 0, sizeof *lo);
  if (nsym > 1 << 16) return qg_fail(QG_ERR_INPUT, "rANS alphabet of %d symbols exceeds 2^16", nsym);
  uint64_t ch[256] = {0}, cl[256] = {0};
  for (size_t i = 0; i < n; i++) {
    if (sym[i] >= (uint32_t)nsym)
      return qg_fail(QG_ERR_INPUT, "symbol %u at index %zu is outside the alphabet of %d", sym[i], i, nsym);
    ch[sym[i] >> 8]++, cl[sym[i] & 0xff]++;
  }
  qg_status st = part_table(ch, 256, prob_bits, hi);
  if (!st) st = part_table(cl, 256, prob_bits, lo);
  qg_rans_wide w = {.hi = {hi}, .lo = {lo}};
  if (!st) st = qg_rans_wide_payload_cost(&w, sym, n, payload);
  if (st) return qg_rans_table_free(hi), qg_rans_table_free(lo), st;
  *total = qg_rans_table_bytes(hi) + qg_rans_table_bytes(lo) + qg_varint_len(*payload) + *payload;
  return QG_OK;
}

qg_status qg_rans_cost(const uint32_t *sym, size_t n, int nsym, int prob_bits, size_t *bytes) {
  qg_rans_table t, lo;
  size_t pay;
  if (nsym > QG_RANS_MAX_ALPHABET) {
    QG_TRY(wide_tables(sym, n, nsym, prob_bits, &t, &lo, bytes, &pay));
    qg_rans_table_free(&lo);
  } else {
    QG_TRY(best_table(sym, n, nsym, prob_bits, &t, bytes, &pay));
  }
  qg_rans_table_free(&t);
  return QG_OK;
}

qg_status qg_rans_compress(const uint32_t *sym, size_t n, int nsym, int prob_bits, qg_buf *out) {
  qg_rans_table t;
  size_t total, pay;
  if (nsym > QG_RANS_MAX_ALPHABET) {
    qg_rans_table lo;
    QG_TRY(wide_tables(sym, n, nsym, prob_bits, &t, &lo, &total, &pay));
    qg_rans_table_write(&t, out), qg_rans_table_write(&lo, out);
    qg_varint_put(out, pay);
    qg_rans_wide w = {.hi = {&t}, .lo = {&lo}};
    qg_status st = qg_rans_wide_encode(&w, sym, n, out);
    qg_rans_table_free(&t), qg_rans_table_free(&lo);
    return st != QG_OK ? st : qg_buf_status(out);
  }
  QG_TRY(best_table(sym, n, nsym, prob_bits, &t, &total, &pay));
  qg_rans_table_write(&t, out);
  qg_varint_put(out, pay);
  qg_status st = qg_rans_encode(&t, sym, n, out);
  qg_rans_table_free(&t);
  return st != QG_OK ? st : qg_buf_status(out);
}

static qg_status wide_decompress(const uint8_t *p, size_t len, size_t *used, uint32_t *sym, size_t n, uint32_t max_sym) {
  qg_rans_table hi, lo = {0};
  size_t pos, u = 0;
  QG_TRY(qg_rans_table_read(p, len, &pos, &hi));
  qg_status st = qg_rans_table_read(p + pos, len - pos, &u, &lo);
  pos += u;
  uint64_t pay = 0;
  if (!st && (hi.nsym > 256 || lo.nsym > 256))
    st = qg_fail(QG_ERR_INPUT, "rANS wide stream: a part's table has %d symbols (at most 256)",
                 hi.nsym > lo.nsym ? hi.nsym : lo.nsym);
  if (!st && (qg_varint_get(p, len, &pos, &pay) || pay > len - pos))
    st = qg_fail(QG_ERR_INPUT, "rANS stream: payload length missing or past the end (%zu bytes left)", len - pos);
  qg_rans_wide w = {.hi = {&hi}, .lo = {&lo}};
  if (!st) st = qg_rans_wide_decode(&w, p + pos, (size_t)pay, sym, n);
  for (size_t i = 0; !st && i < n; i++)
    if (sym[i] >= max_sym) st = qg_fail(QG_ERR_INPUT, "rANS stream: symbol %u at %zu is outside the alphabet of %u", sym[i], i, max_sym);
  qg_rans_table_free(&hi), qg_rans_table_free(&lo);
  if (!st) *used = pos + (size_t)pay;
  return st;
}

qg_status qg_rans_decompress(const uint8_t *p, size_t len, size_t *used, uint32_t *sym, size_t n, uint32_t max_sym) {
  qg_rans_table t;
  size_t pos;
  if (max_sym > QG_RANS_MAX_ALPHABET) return wide_decompress(p, len, used, sym, n, max_sym);
  QG_TRY(qg_rans_table_read(p, len, &pos, &t));
  if ((uint32_t)t.nsym > max_sym) {
    int ns = t.nsym;
    qg_rans_table_free(&t);
    return qg_fail(QG_ERR_INPUT, "rANS table: alphabet of %d symbols exceeds the %u the section allows", ns, max_sym);
  }
  uint64_t pay;
  if (qg_varint_get(p, len, &pos, &pay) || pay > len - pos) {
    qg_rans_table_free(&t);
    return qg_fail(QG_ERR_INPUT, "rANS stream: payload length missing or past the end (%zu bytes left)", len - pos);
  }
  qg_status st = qg_rans_decode(&t, p + pos, (size_t)pay, sym, n);
  qg_rans_table_free(&t);
  if (st == QG_OK) *used = pos + (size_t)pay;
  return st;
}

/* ---- previous-symbol contexts ------------------------------------------------------- */

int qg_rans_ctx_of(uint32_t prev, uint32_t mid) {
  uint32_t d = prev > mid ? prev - mid : mid - prev;
  static const uint8_t b[16] = {0, 1, 2, 3, 4, 4, 5, 5, 5, 6, 6, 6, 6, 6, 7, 7};
  return d < 16 ? b[d] : 7;
}

qg_status qg_rans_ctx_count(const uint32_t *sym, size_t n, int nsym, uint32_t mid, uint64_t *counts) {
  memset(counts, 0, (size_t)QG_RANS_NCTX * (size_t)nsym * sizeof *counts);
  uint32_t prev = mid;
  for (size_t i = 0; i < n; i++) {
    if (sym[i] >= (uint32_t)nsym)
      return qg_fail(QG_ERR_INPUT, "symbol %u at index %zu is outside the alphabet of %d", sym[i], i, nsym);
    counts[(size_t)qg_rans_ctx_of(prev, mid) * (size_t)nsym + sym[i]]++;
    prev = sym[i];
  }
  return QG_OK;
}

/* The context of symbol i: cv[i] when given, else the bucket of the symbol lag places back. */
#define CTX_AT(i) (cv ? cv[i] % QG_RANS_NCTX : qg_rans_ctx_of((i) >= lag ? sym[(i) - lag] : mid, mid))

static qg_status lag_cost(const qg_rans_table *t, uint32_t mid, const uint8_t *cv, size_t lag, const uint32_t *sym, size_t n,
                          size_t *bytes) {
  *bytes = 0;
  if (!n) return QG_OK;
  uint32_t x[NSTATE] = {RANS_L, RANS_L, RANS_L, RANS_L};
  size_t out = 0;
  for (size_t i = n; i-- > 0;) {
    const qg_rans_table *tc = &t[CTX_AT(i)];
    uint32_t s = sym[i];
    if (s >= (uint32_t)tc->nsym || !tc->freq[s]) return bad_symbol(tc, s, i);
    uint32_t f = tc->freq[s], *xs = &x[i & 3];
    uint32_t xmax = ((RANS_L >> tc->prob_bits) << 8) * f;
    while (*xs >= xmax) *xs >>= 8, out++;
    *xs = ((*xs / f) << tc->prob_bits) + (*xs % f) + tc->cum[s];
  }
  *bytes = out + QG_RANS_FLUSH_BYTES;
  return QG_OK;
}

static qg_status lag_encode(const qg_rans_table *t, uint32_t mid, const uint8_t *cv, size_t lag, const uint32_t *sym,
                            size_t n, qg_buf *out) {
  size_t bytes;
  QG_TRY(lag_cost(t, mid, cv, lag, sym, n, &bytes));
  if (!bytes) return QG_OK;
  size_t base = out->n;
  qg_buf_zeros(out, bytes);
  QG_TRY(qg_buf_status(out));
  uint8_t *beg = out->p + base, *p = beg + bytes;
  uint32_t x[NSTATE] = {RANS_L, RANS_L, RANS_L, RANS_L};
  for (size_t i = n; i-- > 0;) {
    const qg_rans_table *tc = &t[CTX_AT(i)];
    uint32_t s = sym[i], f = tc->freq[s], *xs = &x[i & 3];
    uint32_t xmax = ((RANS_L >> tc->prob_bits) << 8) * f;
    while (*xs >= xmax) *--p = (uint8_t)*xs, *xs >>= 8;
    *xs = ((*xs / f) << tc->prob_bits) + (*xs % f) + tc->cum[s];
  }
  for (int k = NSTATE; k-- > 0;) p -= 4, qg_wr_u32le(p, x[k]);
  if (p != beg) return qg_fail(QG_ERR_INTERNAL, "rANS encoder wrote %td bytes more than its cost", beg - p);
  return QG_OK;
}

static qg_status lag_decode(const qg_rans_table *t, uint32_t mid, const uint8_t *cv, size_t lag, const uint8_t *p,
                            size_t len, uint32_t *sym, size_t n) {
  if (!n) {
    if (len) return qg_fail(QG_ERR_INPUT, "rANS payload of %zu bytes for 0 symbols", len);
    return QG_OK;
  }
  uint32_t x[NSTATE];
  QG_TRY(read_states(p, len, x));
  slot_t *slot[QG_RANS_NCTX] = {0};
  qg_status st = QG_OK;
  size_t cells = 0; /* slot tables only when the stream is long enough to repay filling them */
  for (int c = 0; c < QG_RANS_NCTX; c++) cells += t[c].nsym ? (size_t)1 << t[c].prob_bits : 0;
  int use_slots = n >= cells / 8;
  for (int c = 0; c < QG_RANS_NCTX && !st && use_slots; c++) {
    if (!t[c].nsym) continue; /* a context never seen; reaching it is an error below */
    slot[c] = malloc(((size_t)1 << t[c].prob_bits) * sizeof **slot);
    if (!slot[c]) st = qg_fail(QG_ERR_NOMEM, "out of memory (rANS slots)");
    for (int s = 0; !st && s < t[c].nsym; s++)
      for (uint32_t j = t[c].cum[s]; j < t[c].cum[s + 1]; j++)
        slot[c][j] = (slot_t){(uint16_t)s, (uint16_t)(t[c].freq[s] - 1), (uint16_t)t[c].cum[s]};
  }
  const uint8_t *q = p + QG_RANS_FLUSH_BYTES, *end = p + len;
  for (size_t i = 0; !st && i < n; i++) {
    int c = CTX_AT(i);
    if (!t[c].nsym) {
      st = qg_fail(QG_ERR_INPUT, "rANS payload: symbol %zu falls in context %d, which has no table", i, c);
      break;
    }
    const int pb = t[c].prob_bits;
    const uint32_t mask = (1u << pb) - 1;
    uint32_t *xs = &x[i & 3];
    slot_t e = use_slots ? slot[c][*xs & mask] : find_slot(&t[c], *xs & mask);
    sym[i] = e.sym;
    *xs = ((uint32_t)e.freq_m1 + 1) * (*xs >> pb) + (*xs & mask) - e.cum;
    while (*xs < RANS_L) {
      if (q >= end) {
        st = qg_fail(QG_ERR_INPUT, "rANS payload: stream decodes past its end at symbol %zu of %zu", i, n);
        break;
      }
      *xs = (*xs << 8) | *q++;
    }
  }
  for (int c = 0; c < QG_RANS_NCTX; c++) free(slot[c]);
  if (st) return st;
  if (q != end) return qg_fail(QG_ERR_INPUT, "rANS payload: %td trailing bytes after %zu symbols", end - q, n);
  for (int k = 0; k < NSTATE; k++)
    if (x[k] != RANS_L) return qg_fail(QG_ERR_INPUT, "rANS payload: state %d does not return to its start (corrupt)", k);
  return QG_OK;
}

qg_status qg_rans_ctx_payload_cost(const qg_rans_table *t, uint32_t mid, const uint8_t *cv, const uint32_t *sym, size_t n,
                                   size_t *bytes) {
  return lag_cost(t, mid, cv, 1, sym, n, bytes);
}

qg_status qg_rans_ctx_encode(const qg_rans_table *t, uint32_t mid, const uint8_t *cv, const uint32_t *sym, size_t n,
                             qg_buf *out) {
  return lag_encode(t, mid, cv, 1, sym, n, out);
}

qg_status qg_rans_ctx_decode(const qg_rans_table *t, uint32_t mid, const uint8_t *cv, const uint8_t *p, size_t len,
                             uint32_t *sym, size_t n) {
  return lag_decode(t, mid, cv, 1, p, len, sym, n);
}

qg_status qg_rans_lag_count(const uint32_t *sym, size_t n, int nsym, uint32_t mid, size_t lag, uint64_t *counts) {
  memset(counts, 0, (size_t)QG_RANS_NCTX * (size_t)nsym * sizeof *counts);
  for (size_t i = 0; i < n; i++) {
    if (sym[i] >= (uint32_t)nsym)
      return qg_fail(QG_ERR_INPUT, "symbol %u at index %zu is outside the alphabet of %d", sym[i], i, nsym);
    counts[(size_t)qg_rans_ctx_of(i >= lag ? sym[i - lag] : mid, mid) * (size_t)nsym + sym[i]]++;
  }
  return QG_OK;
}

qg_status qg_rans_lag_payload_cost(const qg_rans_table *t, uint32_t mid, size_t lag, const uint32_t *sym, size_t n,
                                   size_t *bytes) {
  return lag_cost(t, mid, NULL, lag ? lag : 1, sym, n, bytes);
}

qg_status qg_rans_lag_encode(const qg_rans_table *t, uint32_t mid, size_t lag, const uint32_t *sym, size_t n, qg_buf *out) {
  return lag_encode(t, mid, NULL, lag ? lag : 1, sym, n, out);
}

qg_status qg_rans_lag_decode(const qg_rans_table *t, uint32_t mid, size_t lag, const uint8_t *p, size_t len, uint32_t *sym,
                             size_t n) {
  return lag_decode(t, mid, NULL, lag ? lag : 1, p, len, sym, n);
}

/* ---- wide symbols ------------------------------------------------------------------- */

/* The table of rANS symbol j of a wide stream: j = 2i is the high part of symbol i, j = 2i + 1
 * its low byte. NULL when the table is missing. */
static const qg_rans_table *wide_table(const qg_rans_wide *w, const uint32_t *sym, size_t j) {
  size_t i = j >> 1;
  if (!(j & 1)) return w->hi[w->hc ? w->hc[i] % QG_RANS_NCTX : 0];
  return w->lo[w->lc ? w->lc[(sym[i] >> 8) & 0xff] % QG_RANS_NCTX : 0];
}

static uint32_t wide_part(const uint32_t *sym, size_t j) { return j & 1 ? sym[j >> 1] & 0xff : sym[j >> 1] >> 8; }

qg_status qg_rans_wide_payload_cost(const qg_rans_wide *w, const uint32_t *sym, size_t n, size_t *bytes) {
  *bytes = 0;
  if (!n) return QG_OK;
  uint32_t x[NSTATE] = {RANS_L, RANS_L, RANS_L, RANS_L};
  size_t out = 0;
  for (size_t j = 2 * n; j-- > 0;) {
    const qg_rans_table *tc = wide_table(w, sym, j);
    uint32_t s = wide_part(sym, j);
    if (sym[j >> 1] > 0xffff) return qg_fail(QG_ERR_INPUT, "symbol %u at index %zu is wider than 16 bits", sym[j >> 1], j >> 1);
    if (!tc) return qg_fail(QG_ERR_INPUT, "wide symbol %zu has no %s table", j >> 1, j & 1 ? "low-byte" : "high-part");
    if (s >= (uint32_t)tc->nsym || !tc->freq[s]) return bad_symbol(tc, s, j >> 1);
    uint32_t f = tc->freq[s], *xs = &x[j & 3];
    uint32_t xmax = ((RANS_L >> tc->prob_bits) << 8) * f;
    while (*xs >= xmax) *xs >>= 8, out++;
    *xs = ((*xs / f) << tc->prob_bits) + (*xs % f) + tc->cum[s];
  }
  *bytes = out + QG_RANS_FLUSH_BYTES;
  return QG_OK;
}

qg_status qg_rans_wide_encode(const qg_rans_wide *w, const uint32_t *sym, size_t n, qg_buf *out) {
  size_t bytes;
  QG_TRY(qg_rans_wide_payload_cost(w, sym, n, &bytes));
  if (!bytes) return QG_OK;
  size_t base = out->n;
  qg_buf_zeros(out, bytes);
  QG_TRY(qg_buf_status(out));
  uint8_t *beg = out->p + base, *p = beg + bytes;
  uint32_t x[NSTATE] = {RANS_L, RANS_L, RANS_L, RANS_L};
  for (size_t j = 2 * n; j-- > 0;) {
    const qg_rans_table *tc = wide_table(w, sym, j);
    uint32_t s = wide_part(sym, j), f = tc->freq[s], *xs = &x[j & 3];
    uint32_t xmax = ((RANS_L >> tc->prob_bits) << 8) * f;
    while (*xs >= xmax) *--p = (uint8_t)*xs, *xs >>= 8;
    *xs = ((*xs / f) << tc->prob_bits) + (*xs % f) + tc->cum[s];
  }
  for (int k = NSTATE; k-- > 0;) p -= 4, qg_wr_u32le(p, x[k]);
  if (p != beg) return qg_fail(QG_ERR_INTERNAL, "rANS encoder wrote %td bytes more than its cost", beg - p);
  return QG_OK;
}

qg_status qg_rans_wide_decode(const qg_rans_wide *w, const uint8_t *p, size_t len, uint32_t *sym, size_t n) {
  if (!n) {
    if (len) return qg_fail(QG_ERR_INPUT, "rANS payload of %zu bytes for 0 symbols", len);
    return QG_OK;
  }
  uint32_t x[NSTATE];
  QG_TRY(read_states(p, len, x));
  /* slot arrays for the distinct tables, when the stream repays filling them */
  const qg_rans_table *tab[2 * QG_RANS_NCTX];
  slot_t *slot[2 * QG_RANS_NCTX] = {0};
  int nt = 0;
  size_t cells = 0;
  for (int k = 0; k < 2 * QG_RANS_NCTX; k++) {
    const qg_rans_table *t = k < QG_RANS_NCTX ? w->hi[k] : w->lo[k - QG_RANS_NCTX];
    int seen = !t || !t->nsym;
    for (int m = 0; m < nt && !seen; m++) seen = tab[m] == t;
    if (!seen) tab[nt++] = t, cells += (size_t)1 << t->prob_bits;
  }
  qg_status st = QG_OK;
  int use_slots = 2 * n >= cells / 8;
  for (int m = 0; m < nt && use_slots && !st; m++) {
    slot[m] = malloc(((size_t)1 << tab[m]->prob_bits) * sizeof **slot);
    if (!slot[m]) st = qg_fail(QG_ERR_NOMEM, "out of memory (rANS slots)");
    for (int s = 0; !st && s < tab[m]->nsym; s++)
      for (uint32_t v = tab[m]->cum[s]; v < tab[m]->cum[s + 1]; v++)
        slot[m][v] = (slot_t){(uint16_t)s, (uint16_t)(tab[m]->freq[s] - 1), (uint16_t)tab[m]->cum[s]};
  }
  const uint8_t *q = p + QG_RANS_FLUSH_BYTES, *end = p + len;
  for (size_t j = 0; !st && j < 2 * n; j++) {
    const qg_rans_table *tc = wide_table(w, sym, j);
    if (!tc || !tc->nsym) {
      st = qg_fail(QG_ERR_INPUT, "rANS payload: wide symbol %zu needs a %s table that is missing", j >> 1,
                   j & 1 ? "low-byte" : "high-part");
      break;
    }
    int m = 0;
    while (m < nt && tab[m] != tc) m++;
    const int pb = tc->prob_bits;
    const uint32_t mask = (1u << pb) - 1;
    uint32_t *xs = &x[j & 3];
    slot_t e = use_slots ? slot[m][*xs & mask] : find_slot(tc, *xs & mask);
    if (e.sym > 0xff) { /* tables of wider alphabets are the caller's error; never write past 16 bits */
      st = qg_fail(QG_ERR_INPUT, "rANS payload: part %u of wide symbol %zu is over 8 bits", e.sym, j >> 1);
      break;
    }
    if (j & 1) sym[j >> 1] |= e.sym;
    else sym[j >> 1] = (uint32_t)e.sym << 8;
    *xs = ((uint32_t)e.freq_m1 + 1) * (*xs >> pb) + (*xs & mask) - e.cum;
    while (*xs < RANS_L) {
      if (q >= end) {
        st = qg_fail(QG_ERR_INPUT, "rANS payload: stream decodes past its end at wide symbol %zu of %zu", j >> 1, n);
        break;
      }
      *xs = (*xs << 8) | *q++;
    }
  }
  for (int m = 0; m < nt; m++) free(slot[m]);
  if (st) return st;
  if (q != end) return qg_fail(QG_ERR_INPUT, "rANS payload: %td trailing bytes after %zu symbols", end - q, n);
  for (int k = 0; k < NSTATE; k++)
    if (x[k] != RANS_L) return qg_fail(QG_ERR_INPUT, "rANS payload: state %d does not return to its start (corrupt)", k);
  return QG_OK;
}
