/* Wide code streams of a rANS .qgz (see io/qgz_wide.h). */
#include "io/qgz_wide.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/qgz.h"

#define NHC 4 /* high-part column classes */
#define REF_OWN 0
#define REF_UNIFORM 1
#define REF_SHARED 2

int qg_qgz_wide_section(const qg_qsection *s) {
  return s->kind == QG_SEC_CODES && s->bits >= QG_QGZ_WIDE_MIN_BITS && s->bits <= QG_QGZ_WIDE_MAX_BITS;
}

typedef struct {
  int ref;          /* REF_* */
  int g;            /* shared: group */
  qg_rans_table t;  /* own: the table */
  double est;       /* ideal bytes: payload share + table + ref */
} wref;

typedef struct {
  char *key;
  uint64_t c[256];
  int alpha;
  qg_rans_table t;
  int active, used, index;
} wgroup;

typedef struct {
  const qg_qtensor *q;
  const qg_qsection *s;
  int alpha;               /* high values: 2^(bits-8) */
  uint64_t ch[NHC][256];   /* high parts per column class */
  uint64_t *clh;           /* low bytes per high value: [alpha][256] */
  int64_t ccols;           /* code columns (0: no column classes) */
  uint8_t *cls, *cv;       /* class per code column, per code */
  int hk, lk;
  uint8_t lc[256];         /* low-byte class per high value */
  wref hr[NHC], lr[8];
  /* bytes of the own-only choices, kept while shared tables are decided */
  double hi_ns, lo_ns;
  int ghi[2], glo[2];      /* role and width groups */
  size_t pay, total;
  int brotli;
  uint8_t *z;
  size_t zn;
} wstream;

struct qg_wide_set {
  wstream *v;
  int n;
  wgroup *g;
  int ng, nt;
  qg_rans_table uni_hi[9], uni_lo; /* uniform tables by high alphabet bits */
};

static qg_status uniform_table(int alpha, qg_rans_table *t) {
  uint64_t c[256];
  for (int i = 0; i < alpha; i++) c[i] = 1;
  return qg_rans_table_build(c, alpha, QG_RANS_MIN_BITS, t);
}

/* The precision with the least table bytes + ideal payload bytes. */
static qg_status own_table(const uint64_t *c, int nsym, qg_rans_table *t, double *est) {
  memset(t, 0, sizeof *t);
  *est = INFINITY;
  for (int pb = QG_RANS_MIN_BITS; pb <= QG_RANS_MAX_BITS; pb += 2) {
    qg_rans_table u;
    QG_TRY(qg_rans_table_build(c, nsym, pb, &u));
    double v = qg_rans_cross_entropy_bits(&u, c, nsym) / 8 + (double)qg_rans_table_bytes(&u);
    if (v < *est) *est = v, qg_rans_table_free(t), *t = u;
    else qg_rans_table_free(&u);
  }
  *est += 1; /* its ref */
  return QG_OK;
}

static int empty_counts(const uint64_t *c, int nsym) {
  for (int i = 0; i < nsym; i++)
    if (c[i]) return 0;
  return 1;
}

/* The cheaper of an own table and the uniform one for counts c. */
static qg_status best_unshared(const uint64_t *c, int nsym, const qg_rans_table *uni, wref *r) {
  qg_rans_table_free(&r->t);
  memset(r, 0, sizeof *r);
  if (empty_counts(c, nsym)) { /* a class nobody falls in: the uniform ref costs one byte */
    r->ref = REF_UNIFORM, r->est = 1;
    return QG_OK;
  }
  QG_TRY(own_table(c, nsym, &r->t, &r->est));
  double u = qg_rans_cross_entropy_bits(uni, c, nsym) / 8 + 1;
  if (u <= r->est) qg_rans_table_free(&r->t), r->ref = REF_UNIFORM, r->est = u;
  else r->ref = REF_OWN;
  return QG_OK;
}

static void ref_free(wref *r) { qg_rans_table_free(&r->t); }

/* Column classes of the high parts: code columns ranked by mean high value, four groups. */
static qg_status high_classes(wstream *x) {
  const uint32_t *sym = x->s->data;
  int64_t cols = x->ccols;
  double *m = calloc((size_t)cols, sizeof *m);
  int64_t *ord = malloc((size_t)cols * sizeof *ord);
  x->cls = calloc((size_t)cols, 1), x->cv = malloc((size_t)x->s->count + 1);
  if (!m || !ord || !x->cls || !x->cv) {
    free(m), free(ord);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  for (int64_t i = 0; i < x->s->count; i++) m[i % cols] += sym[i] >> 8;
  for (int64_t j = 0; j < cols; j++) ord[j] = j;
  for (int64_t j = 1; j < cols; j++)
    for (int64_t k = j; k > 0 && m[ord[k - 1]] > m[ord[k]]; k--) {
      int64_t tmp = ord[k];
      ord[k] = ord[k - 1], ord[k - 1] = tmp;
    }
  for (int64_t r = 0; r < cols; r++) x->cls[ord[r]] = (uint8_t)(r * NHC / cols);
  for (int64_t i = 0; i < x->s->count; i++) x->cv[i] = x->cls[i % cols];
  free(m), free(ord);
  return QG_OK;
}

static size_t hclass_bytes(int64_t cols) { return qg_varint_len((uint64_t)cols) + (size_t)(cols + 3) / 4; }
static size_t lclass_bytes(int alpha) { return (size_t)(3 * alpha + 7) / 8; }

/* Own-only choices of a stream: high contexts (1 or column classes) and low classes (1, 2,
 * 4 or 8 contiguous ranges of high values of equal code mass). */
static qg_status plan_unshared(qg_wide_set *ws, wstream *x) {
  const qg_rans_table *uh = &ws->uni_hi[x->s->bits - 8], *ul = &ws->uni_lo;
  uint64_t h1[256] = {0};
  for (int k = 0; k < NHC; k++)
    for (int v = 0; v < x->alpha; v++) h1[v] += x->ch[k][v];
  wref a[NHC] = {{0}};
  QG_TRY(best_unshared(h1, x->alpha, uh, &a[0]));
  x->hk = 1, x->hr[0] = a[0], x->hi_ns = a[0].est;
  if (x->ccols) {
    double e = (double)hclass_bytes(x->ccols);
    memset(a, 0, sizeof a);
    qg_status s = QG_OK;
    for (int k = 0; k < NHC && !s; k++) s = best_unshared(x->ch[k], x->alpha, uh, &a[k]), e += a[k].est;
    if (!s && e < x->hi_ns) {
      ref_free(&x->hr[0]);
      for (int k = 0; k < NHC; k++) x->hr[k] = a[k];
      x->hk = NHC, x->hi_ns = e;
    } else {
      for (int k = 0; k < NHC; k++) ref_free(&a[k]);
    }
    QG_TRY(s);
  }
  uint64_t tot = 0, hv[256];
  for (int v = 0; v < x->alpha; v++) {
    hv[v] = 0;
    for (int b = 0; b < 256; b++) hv[v] += x->clh[(size_t)v * 256 + b];
    tot += hv[v];
  }
  x->lo_ns = INFINITY;
  for (int lk = 1; lk <= 8 && lk <= x->alpha; lk *= 2) {
    uint8_t lc[256];
    uint64_t run = 0;
    for (int v = 0; v < x->alpha; v++) {
      /* class by the cumulative mass before v, so each class holds about tot / lk codes */
      int c = tot ? (int)((double)run * lk / (double)tot) : 0;
      lc[v] = (uint8_t)(c < lk ? c : lk - 1), run += hv[v];
    }
    wref b[8] = {{0}};
    double e = lk > 1 ? (double)lclass_bytes(x->alpha) : 0;
    qg_status s = QG_OK;
    for (int c = 0; c < lk && !s; c++) {
      uint64_t cc[256] = {0};
      for (int v = 0; v < x->alpha; v++)
        if (lc[v] == c)
          for (int k = 0; k < 256; k++) cc[k] += x->clh[(size_t)v * 256 + k];
      s = best_unshared(cc, 256, ul, &b[c]), e += b[c].est;
    }
    if (!s && e < x->lo_ns) {
      for (int c = 0; c < 8; c++) ref_free(&x->lr[c]);
      memcpy(x->lr, b, sizeof b), memcpy(x->lc, lc, sizeof lc), x->lk = lk, x->lo_ns = e;
    } else {
      for (int c = 0; c < 8; c++) ref_free(&b[c]);
    }
    QG_TRY(s);
  }
  return QG_OK;
}

static char *group_key(const qg_qtensor *t, const qg_qsection *s, int role, const char *part) {
  const char *n = role && t->name ? t->name : "*";
  size_t len = strlen(n);
  char *k = malloc(len + QG_SEC_NAME_MAX + 24);
  if (!k) return NULL;
  size_t j = 0;
  for (size_t i = 0; i < len; i++) {
    if (isdigit((unsigned char)n[i])) {
      k[j++] = '#';
      while (i + 1 < len && isdigit((unsigned char)n[i + 1])) i++;
    } else {
      k[j++] = n[i];
    }
  }
  snprintf(k + j, QG_SEC_NAME_MAX + 24, "/%s/%d/%s", s->name, s->bits, part);
  return k;
}

static qg_status find_group(qg_wide_set *ws, char *key, int alpha, int *g) {
  if (!key) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (*g = 0; *g < ws->ng && strcmp(ws->g[*g].key, key); (*g)++) {}
  if (*g < ws->ng) {
    free(key);
    return QG_OK;
  }
  wgroup *ng = realloc(ws->g, sizeof *ng * (size_t)(ws->ng + 1));
  if (!ng) return free(key), qg_fail(QG_ERR_NOMEM, "out of memory");
  ws->g = ng;
  memset(&ws->g[ws->ng], 0, sizeof *ws->g);
  ws->g[ws->ng].key = key, ws->g[ws->ng].alpha = alpha, ws->g[ws->ng].active = 1;
  *g = ws->ng++;
  return QG_OK;
}

/* A stream's high (part 0) or low (part 1) choice given the active groups: its own-only
 * plan or one shared table (only where it has a single context). Returns the group or -1. */
static int pick_shared(const qg_wide_set *ws, const wstream *x, int part, double *best) {
  const int *gg = part ? x->glo : x->ghi;
  uint64_t h1[256] = {0};
  const uint64_t *c = h1;
  if (!part) {
    for (int k = 0; k < NHC; k++)
      for (int v = 0; v < x->alpha; v++) h1[v] += x->ch[k][v];
  } else {
    for (int v = 0; v < x->alpha; v++)
      for (int b = 0; b < 256; b++) h1[b] += x->clh[(size_t)v * 256 + b];
  }
  int pick = -1;
  *best = part ? x->lo_ns : x->hi_ns;
  for (int r = 0; r < 2; r++) {
    const wgroup *g = &ws->g[gg[r]];
    if (!g->active) continue;
    double e = qg_rans_cross_entropy_bits(&g->t, c, part ? 256 : x->alpha) / 8 + 2;
    if (e < *best) *best = e, pick = gg[r];
  }
  return pick;
}

static void pack_codes(const qg_qsection *s, qg_buf *b) {
  const uint32_t *c = s->data;
  uint64_t acc = 0, mask = ((uint64_t)1 << s->bits) - 1;
  int have = 0;
  for (int64_t i = 0; i < s->count; i++) {
    acc |= ((uint64_t)c[i] & mask) << have, have += s->bits;
    while (have >= 8) qg_buf_byte(b, (uint8_t)acc), acc >>= 8, have -= 8;
  }
  if (have) qg_buf_byte(b, (uint8_t)acc);
}

static size_t ref_bytes(const wref *r, const qg_wide_set *ws) {
  if (r->ref == REF_OWN) return 1 + qg_rans_table_bytes(&r->t);
  if (r->ref == REF_UNIFORM) return 1;
  return qg_varint_len((uint64_t)(REF_SHARED + ws->g[r->g].index));
}

static const qg_rans_table *ref_table(const wref *r, const qg_wide_set *ws, const qg_rans_table *uni) {
  return r->ref == REF_OWN ? &r->t : r->ref == REF_UNIFORM ? uni : &ws->g[r->g].t;
}

static void wide_of(const qg_wide_set *ws, const wstream *x, qg_rans_wide *w) {
  memset(w, 0, sizeof *w);
  for (int k = 0; k < x->hk; k++) w->hi[k] = ref_table(&x->hr[k], ws, &ws->uni_hi[x->s->bits - 8]);
  for (int c = 0; c < x->lk; c++) w->lo[c] = ref_table(&x->lr[c], ws, &ws->uni_lo);
  w->hc = x->hk > 1 ? x->cv : NULL, w->lc = x->lk > 1 ? x->lc : NULL;
}

/* Exact bytes of the stream as mode 6 with the current choices (shared refs at their
 * current index). */
static qg_status exact_total(const qg_wide_set *ws, wstream *x) {
  qg_rans_wide w;
  wide_of(ws, x, &w);
  QG_TRY(qg_rans_wide_payload_cost(&w, x->s->data, (size_t)x->s->count, &x->pay));
  size_t t = 3 + (x->hk > 1 ? hclass_bytes(x->ccols) : 0) + (x->lk > 1 ? lclass_bytes(x->alpha) : 0);
  for (int k = 0; k < x->hk; k++) t += ref_bytes(&x->hr[k], ws);
  for (int c = 0; c < x->lk; c++) t += ref_bytes(&x->lr[c], ws);
  x->total = t + qg_varint_len(x->pay) + x->pay;
  return QG_OK;
}

/* Applies the shared choice of a part: drops the own plan's tables for it. */
static void use_shared(wstream *x, int part, int g) {
  wref *r = part ? x->lr : x->hr;
  int n = part ? x->lk : x->hk;
  for (int k = 0; k < n; k++) ref_free(&r[k]);
  memset(r, 0, sizeof *r * (size_t)(part ? 8 : NHC));
  r[0].ref = REF_SHARED, r[0].g = g;
  if (part) x->lk = 1;
  else x->hk = 1;
}

qg_status qg_wide_plan(const qg_qtensor *const *q, int n, const uint8_t *inl, qg_wide_set **out) {
  qg_wide_set *ws = calloc(1, sizeof *ws);
  if (!ws) return qg_fail(QG_ERR_NOMEM, "out of memory");
  *out = ws;
  qg_status s = uniform_table(256, &ws->uni_lo);
  for (int b = 5; !s && b <= 8; b++) s = uniform_table(1 << b, &ws->uni_hi[b]);
  int idx = 0;
  for (int i = 0; !s && i < n; i++)
    for (int k = 0; k < q[i]->nsec; k++, idx++) ws->n += qg_qgz_wide_section(&q[i]->sec[k]) && !(inl && inl[idx]);
  idx = 0;
  ws->v = calloc((size_t)ws->n + 1, sizeof *ws->v);
  if (!s && !ws->v) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  int si = 0;
  for (int i = 0; !s && i < n; i++)
    for (int k = 0; !s && k < q[i]->nsec; k++, idx++) {
      const qg_qsection *sec = &q[i]->sec[k];
      if (!qg_qgz_wide_section(sec) || (inl && inl[idx])) continue;
      wstream *x = &ws->v[si++];
      x->q = q[i], x->s = sec, x->alpha = 1 << (sec->bits - 8);
      x->clh = calloc((size_t)x->alpha * 256, sizeof *x->clh);
      if (!x->clh) {
        s = qg_fail(QG_ERR_NOMEM, "out of memory");
        break;
      }
      const uint32_t *c = sec->data;
      int64_t rows = q[i]->rows;
      if (rows > 1 && sec->count % rows == 0 && sec->count / rows >= 8 && sec->count / rows <= 65536)
        x->ccols = sec->count / rows;
      if (x->ccols) s = high_classes(x);
      for (int64_t j = 0; !s && j < sec->count; j++) {
        if (c[j] >> sec->bits) {
          s = qg_fail(QG_ERR_INPUT, "tensor '%s' section '%s': code %u at %lld is wider than %d bits", q[i]->name,
                      sec->name, c[j], (long long)j, sec->bits);
          break;
        }
        x->ch[x->cv ? x->cv[j] : 0][c[j] >> 8]++, x->clh[(size_t)(c[j] >> 8) * 256 + (c[j] & 0xff)]++;
      }
      if (!s) s = plan_unshared(ws, x);
      for (int r = 0; !s && r < 2; r++) {
        s = find_group(ws, group_key(q[i], sec, !r, "hi"), x->alpha, &x->ghi[r]);
        if (!s) s = find_group(ws, group_key(q[i], sec, !r, "lo"), 256, &x->glo[r]);
      }
      for (int r = 0; !s && r < 2; r++) {
        wgroup *gh = &ws->g[x->ghi[r]], *gl = &ws->g[x->glo[r]];
        for (int kk = 0; kk < NHC; kk++)
          for (int v = 0; v < x->alpha; v++) gh->c[v] += x->ch[kk][v];
        for (int v = 0; v < x->alpha; v++)
          for (int b = 0; b < 256; b++) gl->c[b] += x->clh[(size_t)v * 256 + b];
      }
      /* brotli over the packed codes: the fallback */
      qg_buf pk;
      qg_buf_init(&pk);
      pack_codes(sec, &pk);
      if (!s) s = qg_buf_status(&pk);
      if (!s) s = qg_compress(QG_COMP_BROTLI, pk.p ? pk.p : (const uint8_t *)"", pk.n, &x->z, &x->zn);
      qg_buf_free(&pk);
    }
  for (int g = 0; !s && g < ws->ng; g++) {
    double e;
    s = own_table(ws->g[g].c, ws->g[g].alpha, &ws->g[g].t, &e);
  }
  /* Shared tables: each stream part takes the cheapest of its own plan and its groups'
   * tables; a group whose users together save less than its table costs is dropped (the
   * least useful first) and the choice repeats. */
  for (int round = 0; !s && round <= ws->ng; round++) {
    for (int g = 0; g < ws->ng; g++) ws->g[g].used = 0;
    double *save = calloc((size_t)ws->ng + 1, sizeof *save);
    if (!save) {
      s = qg_fail(QG_ERR_NOMEM, "out of memory");
      break;
    }
    for (int i = 0; i < ws->n; i++)
      for (int part = 0; part < 2; part++) {
        double e;
        int g = pick_shared(ws, &ws->v[i], part, &e);
        if (g >= 0) ws->g[g].used++, save[g] += (part ? ws->v[i].lo_ns : ws->v[i].hi_ns) - e;
      }
    int worst = -1;
    double wv = 0;
    for (int g = 0; g < ws->ng; g++) {
      if (!ws->g[g].active) continue;
      double v = save[g] - (double)qg_rans_table_bytes(&ws->g[g].t);
      if (!ws->g[g].used || v < wv) {
        if (!ws->g[g].used) ws->g[g].active = 0;
        else worst = g, wv = v;
      }
    }
    free(save);
    if (worst < 0) break;
    ws->g[worst].active = 0;
  }
  for (int i = 0; !s && i < ws->n; i++)
    for (int part = 0; part < 2; part++) {
      double e;
      int g = pick_shared(ws, &ws->v[i], part, &e);
      if (g >= 0) use_shared(&ws->v[i], part, g);
    }
  /* provisional indices (final ones are no larger) for the exact totals */
  for (int g = 0, k = 0; g < ws->ng; g++) ws->g[g].index = ws->g[g].active ? k++ : -1;
  for (int i = 0; !s && i < ws->n; i++) {
    wstream *x = &ws->v[i];
    s = exact_total(ws, x);
    x->brotli = !s && x->zn + qg_varint_len(x->zn) + 1 < x->total;
  }
  for (int g = 0; g < ws->ng; g++) ws->g[g].used = 0;
  for (int i = 0; i < ws->n; i++) {
    wstream *x = &ws->v[i];
    for (int k = 0; !x->brotli && k < x->hk; k++)
      if (x->hr[k].ref == REF_SHARED) ws->g[x->hr[k].g].used++;
    for (int c = 0; !x->brotli && c < x->lk; c++)
      if (x->lr[c].ref == REF_SHARED) ws->g[x->lr[c].g].used++;
  }
  ws->nt = 0;
  for (int g = 0; g < ws->ng; g++) ws->g[g].index = ws->g[g].used ? ws->nt++ : -1;
  for (int i = 0; !s && i < ws->n; i++)
    if (!ws->v[i].brotli) s = exact_total(ws, &ws->v[i]);
  return s;
}

void qg_wide_free(qg_wide_set *ws) {
  if (!ws) return;
  for (int i = 0; ws->v && i < ws->n; i++) {
    wstream *x = &ws->v[i];
    for (int k = 0; k < NHC; k++) ref_free(&x->hr[k]);
    for (int c = 0; c < 8; c++) ref_free(&x->lr[c]);
    free(x->clh), free(x->cls), free(x->cv), free(x->z);
  }
  for (int g = 0; g < ws->ng; g++) free(ws->g[g].key), qg_rans_table_free(&ws->g[g].t);
  for (int b = 0; b < 9; b++) qg_rans_table_free(&ws->uni_hi[b]);
  qg_rans_table_free(&ws->uni_lo);
  free(ws->v), free(ws->g), free(ws);
}

void qg_wide_write_tables(const qg_wide_set *ws, qg_buf *out, qg_wide_stats *st) {
  qg_varint_put(out, (uint64_t)ws->nt);
  st->stream_headers += qg_varint_len((uint64_t)ws->nt);
  for (int g = 0; g < ws->ng; g++)
    if (ws->g[g].used) qg_rans_table_write(&ws->g[g].t, out), st->tables += qg_rans_table_bytes(&ws->g[g].t);
  st->shared_tables += ws->nt;
}

static void write_ref(const qg_wide_set *ws, const wref *r, qg_buf *out, qg_wide_stats *st) {
  if (r->ref == REF_SHARED) {
    qg_varint_put(out, (uint64_t)(REF_SHARED + ws->g[r->g].index));
    st->stream_headers += qg_varint_len((uint64_t)(REF_SHARED + ws->g[r->g].index));
    return;
  }
  qg_buf_byte(out, (uint8_t)r->ref), st->stream_headers++;
  if (r->ref == REF_OWN) qg_rans_table_write(&r->t, out), st->tables += qg_rans_table_bytes(&r->t);
}

qg_status qg_wide_write_stream(const qg_wide_set *ws, int k, qg_buf *out, qg_wide_stats *st, int *fell_back) {
  if (k < 0 || k >= ws->n) return qg_fail(QG_ERR_INTERNAL, "wide stream %d of %d", k, ws->n);
  const wstream *x = &ws->v[k];
  *fell_back = x->brotli;
  if (x->brotli) {
    qg_buf_byte(out, 2);
    qg_varint_put(out, x->zn);
    qg_buf_append(out, x->z, x->zn);
    st->stream_headers += 1 + qg_varint_len(x->zn), st->code_payload += x->zn, st->brotli++;
    return QG_OK;
  }
  qg_buf_byte(out, 6), qg_buf_byte(out, (uint8_t)x->hk);
  st->stream_headers += 2;
  if (x->hk > 1) {
    qg_varint_put(out, (uint64_t)x->ccols);
    for (int64_t j = 0; j < x->ccols; j += 4) {
      uint8_t b = 0;
      for (int64_t m = 0; m < 4 && j + m < x->ccols; m++) b |= (uint8_t)(x->cls[j + m] << (2 * m));
      qg_buf_byte(out, b);
    }
    st->tables += hclass_bytes(x->ccols);
  }
  for (int h = 0; h < x->hk; h++) write_ref(ws, &x->hr[h], out, st);
  qg_buf_byte(out, (uint8_t)x->lk), st->stream_headers++;
  if (x->lk > 1) {
    uint64_t acc = 0;
    int na = 0;
    for (int v = 0; v < x->alpha; v++) {
      acc |= (uint64_t)x->lc[v] << na, na += 3;
      while (na >= 8) qg_buf_byte(out, (uint8_t)acc), acc >>= 8, na -= 8;
    }
    if (na) qg_buf_byte(out, (uint8_t)acc);
    st->tables += lclass_bytes(x->alpha);
  }
  for (int c = 0; c < x->lk; c++) write_ref(ws, &x->lr[c], out, st);
  qg_varint_put(out, x->pay);
  st->stream_headers += qg_varint_len(x->pay), st->code_payload += x->pay, st->wide++;
  qg_rans_wide w;
  wide_of(ws, x, &w);
  return qg_rans_wide_encode(&w, x->s->data, (size_t)x->s->count, out);
}

qg_status qg_wide_read_tables(const uint8_t *p, size_t len, size_t *pos, qg_rans_table **tabs, uint64_t *nt) {
  *tabs = NULL, *nt = 0;
  uint64_t n;
  if (qg_varint_get(p, len, pos, &n) || n > len - *pos) return qg_fail(QG_ERR_INPUT, "bad wide shared-table count");
  qg_rans_table *t = calloc((size_t)n + 1, sizeof *t);
  if (!t) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (uint64_t i = 0; i < n; i++) {
    size_t used;
    qg_status s = qg_rans_table_read(p + *pos, len - *pos, &used, &t[i]);
    if (!s && t[i].nsym > 256) s = qg_fail(QG_ERR_INPUT, "a table of %d symbols (at most 256)", t[i].nsym);
    if (s) {
      for (uint64_t j = 0; j <= i; j++) qg_rans_table_free(&t[j]);
      free(t);
      return qg_fail_prefix(QG_ERR_INPUT, "wide shared table %llu at offset %zu", (unsigned long long)i, *pos);
    }
    *pos += used;
  }
  *tabs = t, *nt = n;
  return QG_OK;
}

/* A table ref for a part of alpha symbols into *own (when inline) and *t. */
static qg_status read_ref(const uint8_t *p, size_t len, size_t *pos, const qg_rans_table *tabs, uint64_t nt, int alpha,
                          const qg_rans_table *uni, qg_rans_table *own, const qg_rans_table **t) {
  uint64_t r;
  if (qg_varint_get(p, len, pos, &r)) return qg_fail(QG_ERR_INPUT, "table ref missing");
  if (r == REF_UNIFORM) return *t = uni, QG_OK;
  if (r >= REF_SHARED) {
    if (r - REF_SHARED >= nt) return qg_fail(QG_ERR_INPUT, "wide shared table %llu of %llu", (unsigned long long)(r - REF_SHARED), (unsigned long long)nt);
    *t = &tabs[r - REF_SHARED];
  } else {
    size_t used;
    QG_TRY(qg_rans_table_read(p + *pos, len - *pos, &used, own));
    *pos += used, *t = own;
  }
  if ((*t)->nsym > alpha) return qg_fail(QG_ERR_INPUT, "table alphabet of %d symbols: a symbol outside the part's %d", (*t)->nsym, alpha);
  return QG_OK;
}

qg_status qg_wide_read_stream(const uint8_t *p, size_t len, size_t *pos, const qg_rans_table *tabs, uint64_t nt,
                              const qg_qtensor *t, qg_qsection *sec) {
  if (!qg_qgz_wide_section(sec)) return qg_fail(QG_ERR_INPUT, "wide stream mode for %d-bit codes", sec->bits);
  const int alpha = 1 << (sec->bits - 8);
  qg_rans_table own[NHC + 8] = {{0}}, uh = {0}, ul = {0};
  uint8_t *cv = NULL, lc[256] = {0};
  qg_rans_wide w = {0};
  qg_status s = uniform_table(alpha, &uh);
  if (!s) s = uniform_table(256, &ul);
  int hk = 0, lk = 0;
  if (!s && *pos >= len) s = qg_fail(QG_ERR_INPUT, "truncated wide stream header");
  if (!s) hk = p[(*pos)++];
  if (!s && hk != 1 && hk != NHC) s = qg_fail(QG_ERR_INPUT, "%d high-part contexts (1 or %d)", hk, NHC);
  if (!s && hk == NHC) {
    uint64_t cols;
    if (qg_varint_get(p, len, pos, &cols) || cols < 1 || cols > (uint64_t)sec->count || t->rows < 1 || (uint64_t)sec->count != (uint64_t)t->rows * cols)
      s = qg_fail(QG_ERR_INPUT, "%s", "column classes do not match the code matrix");
    else if ((size_t)(cols + 3) / 4 > len - *pos)
      s = qg_fail(QG_ERR_INPUT, "%s", "column classes run past the block");
    else if (!(cv = malloc((size_t)sec->count + 1)))
      s = qg_fail(QG_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; !s && j < sec->count; j++) {
      int64_t c = j % (int64_t)cols;
      cv[j] = (uint8_t)((p[*pos + (size_t)(c / 4)] >> (2 * (c % 4))) & 3);
    }
    if (!s) *pos += (size_t)(cols + 3) / 4;
  }
  for (int k = 0; !s && k < hk; k++) s = read_ref(p, len, pos, tabs, nt, alpha, &uh, &own[k], &w.hi[k]);
  if (!s && *pos >= len) s = qg_fail(QG_ERR_INPUT, "truncated wide stream header");
  if (!s) lk = p[(*pos)++];
  if (!s && (lk < 1 || lk > 8)) s = qg_fail(QG_ERR_INPUT, "%d low-byte classes (1..8)", lk);
  if (!s && lk > 1) {
    if (lclass_bytes(alpha) > len - *pos) s = qg_fail(QG_ERR_INPUT, "%s", "low-byte classes run past the block");
    for (int v = 0; !s && v < alpha; v++) {
      int bit = 3 * v;
      uint32_t b = p[*pos + (size_t)bit / 8] | (bit / 8 + 1 < (int)lclass_bytes(alpha) ? (uint32_t)p[*pos + (size_t)bit / 8 + 1] << 8 : 0);
      lc[v] = (uint8_t)((b >> (bit % 8)) & 7);
      if (lc[v] >= lk) s = qg_fail(QG_ERR_INPUT, "high value %d in low-byte class %d of %d", v, lc[v], lk);
    }
    if (!s) *pos += lclass_bytes(alpha);
  }
  for (int c = 0; !s && c < lk; c++) s = read_ref(p, len, pos, tabs, nt, 256, &ul, &own[NHC + c], &w.lo[c]);
  uint64_t v;
  if (!s && (qg_varint_get(p, len, pos, &v) || v > len - *pos)) s = qg_fail(QG_ERR_INPUT, "%s", "rANS payload length runs past the block");
  w.hc = cv, w.lc = lk > 1 ? lc : NULL;
  if (!s) s = qg_rans_wide_decode(&w, p + *pos, (size_t)v, sec->data, (size_t)sec->count);
  uint32_t *c = sec->data;
  for (int64_t j = 0; !s && j < sec->count; j++)
    if (c[j] >> sec->bits) s = qg_fail(QG_ERR_INPUT, "code %u at %lld: a symbol outside the %d-bit alphabet", c[j], (long long)j, sec->bits);
  if (!s) *pos += (size_t)v;
  for (int k = 0; k < NHC + 8; k++) qg_rans_table_free(&own[k]);
  qg_rans_table_free(&uh), qg_rans_table_free(&ul);
  free(cv);
  return s;
}
