/* Code streams of a rANS .qgz (see io/qgz_rans.h). */
#include "io/qgz_rans.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <sys/types.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "io/qgz.h"
#include "io/qgz_cols.h"
#include "io/qgz_rows.h"
#include "io/qgz_wide.h"
#include "io/rans.h"

static int narrow(const qg_qsection *s) { return s->kind == QG_SEC_CODES && s->bits >= 1 && s->bits <= QG_QGZ_RANS_MAX_BITS; }

int qg_qgz_rans_external(const qg_qsection *s, int version) {
  return narrow(s) || (version >= QG_QGZ_VERSION_WIDE && qg_qgz_wide_section(s));
}

/* "blocks.12.mlp.fc.weight" + "codes" + 6 -> "blocks.#.mlp.fc.weight/codes/6" */
static char *role_key(const qg_qtensor *t, const qg_qsection *s) {
  const char *n = t->name ? t->name : "";
  size_t len = strlen(n);
  char *k = malloc(len + QG_SEC_NAME_MAX + 16);
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
  snprintf(k + j, QG_SEC_NAME_MAX + 16, "/%s/%d", s->name, s->bits);
  return k;
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

typedef struct {
  const qg_qtensor *t;
  const qg_qsection *s;
  uint64_t *counts;  /* of its codes */
  int group;
  int mode;          /* 0 own, 1 shared, 2 brotli, 3 previous-code contexts */
  qg_rans_table ctx[QG_RANS_NCTX];
  size_t ctx_pay, ctx_total;
  int ctx_mode;      /* 3 previous code, 4 column classes, 7 previous row */
  size_t lag;        /* modes 3 and 7: the context's distance back */
  uint32_t *order, *psym; /* rows coded in this order (NULL: as they are), the codes so */
  size_t order_bytes;
  int64_t cols;
  uint8_t *cls, *cv; /* mode 4: class per column, context per code */
  qg_rans_table own; /* the stream's own table */
  size_t own_pay, shared_pay, own_total, shared_total, brotli_total;
  uint8_t *z; /* brotli bytes */
  int brotli_bytes; /* z holds one byte per code (mode 5) rather than packed codes (mode 2) */
  size_t zn;
  uint8_t *tz;       /* mode 8: brotli over the codes column-major, of the rows in order torder */
  size_t tzn, cols_total; /* cols_total: with the order's bytes (SIZE_MAX: not a candidate) */
  uint32_t *torder;
} stream;

typedef struct {
  char *key;
  int bits;
  uint64_t *counts;
  qg_rans_table table;
  int used;  /* streams choosing it */
  int index; /* in the file */
} group;

/* Context tables of a stream for the contexts cv (NULL: previous code): per context the
 * precision with the smallest table plus ideal payload, then the exact payload; *total
 * = tables + payload length varint + payload. */
static qg_status ctx_tables(const qg_qsection *sec, const uint32_t *sym, const uint8_t *cv, size_t lag, qg_rans_table *tab,
                            size_t *pay, size_t *total) {
  const int nsym = 1 << sec->bits;
  const uint32_t mid = (uint32_t)nsym / 2;
  uint64_t *c = calloc((size_t)QG_RANS_NCTX * (size_t)nsym, sizeof *c);
  if (!c) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = QG_OK;
  if (cv) for (int64_t i = 0; i < sec->count; i++) c[(size_t)cv[i] * nsym + (sym[i] & (nsym - 1))]++;
  else s = qg_rans_lag_count(sym, (size_t)sec->count, nsym, mid, lag, c);
  size_t tb = 0;
  for (int k = 0; !s && k < QG_RANS_NCTX; k++) {
    double best = INFINITY;
    int used = 0; /* an unused context is the empty table at any precision: build it once */
    for (int v = 0; v < nsym && !used; v++) used = c[(size_t)k * nsym + v] != 0;
    for (int pb = QG_RANS_MIN_BITS; !s && pb <= (used ? QG_RANS_MAX_BITS : QG_RANS_MIN_BITS); pb += 2) {
      qg_rans_table t;
      s = qg_rans_table_build(c + (size_t)k * nsym, nsym, pb, &t);
      if (s) break;
      double v = qg_rans_cross_entropy_bits(&t, c + (size_t)k * nsym, nsym) / 8 + (double)qg_rans_table_bytes(&t);
      if (v < best) best = v, qg_rans_table_free(&tab[k]), tab[k] = t;
      else qg_rans_table_free(&t);
    }
    tb += qg_rans_table_bytes(&tab[k]);
  }
  free(c);
  if (!s) s = cv ? qg_rans_ctx_payload_cost(tab, mid, cv, sym, (size_t)sec->count, pay)
                 : qg_rans_lag_payload_cost(tab, mid, lag, sym, (size_t)sec->count, pay);
  *total = s ? SIZE_MAX : tb + qg_varint_len(*pay) + *pay;
  return s;
}

/* Previous-row contexts (mode 7), and the previous-code and previous-row contexts over
 * the rows reordered by spread or by greedy nearest neighbour, each order paying for
 * its bytes: the stream keeps whichever is smallest with its current context choice. */
static qg_status row_candidates(const qg_qsection *sec, int64_t rows, int64_t cols, void *xv, const uint32_t *gord);


/* Column classes: columns ranked by their mean |code - mid| and cut into four equal
 * groups, so outlier input features get their own tables. */
static qg_status column_classes(const qg_qsection *sec, int64_t cols, uint8_t **cls, uint8_t **cv) {
  const uint32_t *sym = sec->data, mid = 1u << (sec->bits - 1);
  double *m = calloc((size_t)cols, sizeof *m);
  int64_t *ord = malloc((size_t)cols * sizeof *ord);
  *cls = calloc((size_t)cols, 1), *cv = malloc((size_t)sec->count + 1);
  if (!m || !ord || !*cls || !*cv) {
    free(m), free(ord), free(*cls), free(*cv), *cls = *cv = NULL;
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  for (int64_t i = 0; i < sec->count; i++) m[i % cols] += sym[i] > mid ? sym[i] - mid : mid - sym[i];
  for (int64_t j = 0; j < cols; j++) ord[j] = j;
  for (int64_t j = 1; j < cols; j++) /* insertion sort: cols is at most a few thousand */
    for (int64_t k = j; k > 0 && m[ord[k - 1]] > m[ord[k]]; k--) {
      int64_t tmp = ord[k];
      ord[k] = ord[k - 1], ord[k - 1] = tmp;
    }
  for (int64_t r = 0; r < cols; r++) (*cls)[ord[r]] = (uint8_t)(r * 4 / cols);
  for (int64_t i = 0; i < sec->count; i++) (*cv)[i] = (*cls)[i % cols];
  free(m), free(ord);
  return QG_OK;
}

static size_t class_bytes(int64_t cols) { return qg_varint_len((uint64_t)cols) + (size_t)(cols + 3) / 4; }

static int g_row_orders = 1, g_force_cols = 0;
void qg_qgz_rans_set_row_orders(int on) { g_row_orders = on; }
void qg_qgz_rans_force_transposed(int how) { g_force_cols = how; }

/* The greedy order is quadratic in rows: tried only up to this much work. */
static int greedy_ok(int64_t rows, int64_t cols) {
  return rows >= 2 && rows <= QG_ROWS_MAX && rows * rows * cols <= ((int64_t)1 << 32);
}

/* Mode 8 (io/qgz_cols.h) over the rows as they are and in the greedy order gord (NULL:
 * none), each paying for its bytes; the smaller is the stream's transposed candidate. */
static qg_status cols_candidate(stream *x, const qg_qsection *sec, int64_t rows, int64_t cols, const uint32_t *gord) {
  x->cols_total = SIZE_MAX;
  for (int how = 0; how < 2; how++) {
    const uint32_t *ord = how ? gord : NULL;
    if ((how && !gord) || (g_force_cols == 2 && gord && !how) || (g_force_cols == 1 && how)) continue;
    uint8_t *z = NULL;
    size_t zn = 0;
    QG_TRY(qg_cols_compress(sec->data, rows, cols, ord, &z, &zn));
    size_t tot = zn + qg_varint_len(zn) + (ord ? qg_rows_order_bytes(rows) : 0);
    uint32_t *keep = NULL;
    if (tot < x->cols_total && ord && !(keep = malloc((size_t)rows * sizeof *keep)))
      return free(z), qg_fail(QG_ERR_NOMEM, "out of memory (row order)");
    if (tot >= x->cols_total) {
      free(z);
      continue;
    }
    if (keep) memcpy(keep, ord, (size_t)rows * sizeof *keep);
    free(x->tz), free(x->torder);
    x->tz = z, x->tzn = zn, x->torder = keep, x->cols_total = tot;
  }
  return QG_OK;
}

/* The cheapest mode of a stream that does not use its group's shared table. */
static void pick_unshared(stream *x) {
  size_t best = x->own_total;
  x->mode = 0;
  if (x->brotli_total < best) x->mode = 2, best = x->brotli_total;
  if (x->cols_total < best) x->mode = QG_QGZ_MODE_COLS, best = x->cols_total;
  if (x->ctx_total < best) x->mode = x->ctx_mode;
  if (g_force_cols > 0 && x->cols_total != SIZE_MAX) x->mode = QG_QGZ_MODE_COLS;
}

/* Takes ctx tables ct (total tot) over codes in order ord (NULL: as they are) when smaller. */
static void take_ctx(stream *x, qg_rans_table *ct, size_t pay, size_t tot, int mode, size_t lag, uint32_t *ord,
                     uint32_t *psym, size_t ob) {
  if (tot == SIZE_MAX || tot + ob >= x->ctx_total) {
    for (int k = 0; k < QG_RANS_NCTX; k++) qg_rans_table_free(&ct[k]);
    return;
  }
  for (int k = 0; k < QG_RANS_NCTX; k++) qg_rans_table_free(&x->ctx[k]), x->ctx[k] = ct[k];
  x->ctx_pay = pay, x->ctx_total = tot + ob, x->ctx_mode = mode, x->lag = lag;
  if (x->order != ord) free(x->order), free(x->psym), x->order = ord, x->psym = psym;
  x->order_bytes = ob;
}

static qg_status row_candidates(const qg_qsection *sec, int64_t rows, int64_t cols, void *xv, const uint32_t *gord) {
  stream *x = xv;
  qg_rans_table ct[QG_RANS_NCTX] = {{0}};
  size_t pay = 0, tot = SIZE_MAX;
  QG_TRY(ctx_tables(sec, sec->data, NULL, (size_t)cols, ct, &pay, &tot));
  take_ctx(x, ct, pay, tot, 7, (size_t)cols, NULL, NULL, 0);
  if (rows > QG_ROWS_MAX) return QG_OK;
  const uint32_t mid = 1u << (sec->bits - 1);
  const size_t ob = qg_rows_order_bytes(rows);
  for (int how = 0; how < 2; how++) {
    if (how && !gord) break;
    uint32_t *ord = malloc((size_t)rows * sizeof *ord), *ps = malloc((size_t)sec->count * sizeof *ps + 1);
    if (!ord || !ps) return free(ord), free(ps), qg_fail(QG_ERR_NOMEM, "out of memory (row order)");
    qg_status s = QG_OK;
    if (how) memcpy(ord, gord, (size_t)rows * sizeof *ord);
    else s = qg_rows_by_spread(sec->data, rows, cols, mid, ord);
    if (!s) qg_rows_apply(sec->data, rows, cols, ord, ps, 0);
    int kept = 0;
    for (int m = 0; !s && m < 2; m++) {
      size_t lag = m ? (size_t)cols : 1;
      memset(ct, 0, sizeof ct), tot = SIZE_MAX;
      s = ctx_tables(sec, ps, NULL, lag, ct, &pay, &tot);
      if (!s && tot != SIZE_MAX && tot + ob < x->ctx_total) kept = 1;
      if (!s) take_ctx(x, ct, pay, tot, m ? 7 : 3, lag, ord, ps, ob);
    }
    if (!kept || x->order != ord) free(ord), free(ps);
    QG_TRY(s);
  }
  return QG_OK;
}

/* One stream's candidates: its counts, own table, context tables (previous code, column
 * classes, previous row, row orders), brotli over its packed codes, its bytes and its
 * columns. Reads only the stream's own codes and writes only x. */
static qg_status analyse_stream(stream *x) {
  const qg_qsection *sec = x->s;
  qg_status s = QG_OK;
  uint64_t *c = x->counts = calloc((size_t)1 << sec->bits, sizeof *c);
  if (!c) return qg_fail(QG_ERR_NOMEM, "out of memory");
  if (qg_rans_count(sec->data, (size_t)sec->count, 1 << sec->bits, c))
    return qg_fail_prefix(QG_ERR_INPUT, "tensor '%s' section '%s'", x->t->name, sec->name);
  /* own table: the best precision by total bytes */
  x->own_total = SIZE_MAX;
  for (int pb = QG_RANS_MIN_BITS; !s && pb <= QG_RANS_MAX_BITS; pb += 2) {
    qg_rans_table t;
    size_t pay;
    s = qg_rans_table_build(c, 1 << sec->bits, pb, &t);
    if (!s) s = qg_rans_payload_cost(&t, sec->data, (size_t)sec->count, &pay);
    if (s) break;
    size_t tot = qg_rans_table_bytes(&t) + qg_varint_len(pay) + pay;
    if (tot < x->own_total) qg_rans_table_free(&x->own), x->own = t, x->own_total = tot, x->own_pay = pay;
    else qg_rans_table_free(&t);
  }
  if (!s) s = ctx_tables(sec, sec->data, NULL, 1, x->ctx, &x->ctx_pay, &x->ctx_total);
  x->ctx_mode = 3, x->lag = 1;
  int64_t cols = x->t->cols, rows = x->t->rows;
  uint32_t *gord = NULL; /* the greedy row order, for the context and transposed modes */
  if (!s && g_row_orders && rows > 1 && cols >= 1 && sec->count == rows * cols && greedy_ok(rows, cols)) {
    gord = malloc((size_t)rows * sizeof *gord);
    s = gord ? qg_rows_greedy(sec->data, rows, cols, 1u << (sec->bits - 1), gord)
             : qg_fail(QG_ERR_NOMEM, "out of memory (row order)");
  }
  if (!s && cols >= 8 && cols <= 65536 && rows > 1 && sec->count == rows * cols) {
    qg_rans_table ct[QG_RANS_NCTX] = {{0}};
    size_t cp = 0, ctot = SIZE_MAX;
    s = column_classes(sec, cols, &x->cls, &x->cv);
    if (!s) s = ctx_tables(sec, sec->data, x->cv, 0, ct, &cp, &ctot);
    if (!s && ctot + class_bytes(cols) < x->ctx_total) {
      for (int k = 0; k < QG_RANS_NCTX; k++) qg_rans_table_free(&x->ctx[k]), x->ctx[k] = ct[k];
      x->ctx_pay = cp, x->ctx_total = ctot + class_bytes(cols), x->ctx_mode = 4, x->cols = cols;
    } else {
      for (int k = 0; k < QG_RANS_NCTX; k++) qg_rans_table_free(&ct[k]);
    }
    if (!s && g_row_orders) s = row_candidates(sec, rows, cols, x, gord);
  }
  /* brotli over the bit-packed codes: the fallback when it is smaller */
  qg_buf pk;
  qg_buf_init(&pk);
  if (!s) pack_codes(sec, &pk), s = qg_buf_status(&pk);
  if (!s) s = qg_compress(QG_COMP_BROTLI, pk.p ? pk.p : (const uint8_t *)"", pk.n, &x->z, &x->zn);
  qg_buf_free(&pk);
  /* and over one byte per code, which brotli's byte contexts often model better */
  x->brotli_bytes = 0;
  if (!s && sec->bits <= 8 && sec->count > 0) {
    uint8_t *by = malloc((size_t)sec->count), *z2 = NULL;
    size_t z2n = 0;
    if (!by) s = qg_fail(QG_ERR_NOMEM, "out of memory");
    for (int64_t j = 0; !s && j < sec->count; j++) by[j] = (uint8_t)((const uint32_t *)sec->data)[j];
    if (!s) s = qg_compress(QG_COMP_BROTLI, by, (size_t)sec->count, &z2, &z2n);
    if (!s && z2n < x->zn) free(x->z), x->z = z2, x->zn = z2n, x->brotli_bytes = 1;
    else free(z2);
    free(by);
  }
  x->brotli_total = x->zn + qg_varint_len(x->zn);
  /* and over one byte per code column-major, of the rows as they are or reordered */
  if (!s && g_force_cols >= 0 && qg_cols_eligible(sec->bits, sec->count, rows, cols))
    s = cols_candidate(x, sec, rows, cols, gord);
  free(gord);
  return s;
}

typedef struct {
  stream *sv;
  const int *order; /* task k analyses stream order[k] */
} analysis;

static qg_status analyse_task(void *v, int64_t k) {
  const analysis *a = v;
  return analyse_stream(&a->sv[a->order[k]]);
}

qg_status qg_qgz_rans_encode(const qg_qtensor *const *q, int n, const uint8_t *inl, qg_buf *out, qg_qgz_rans_stats *stp,
                             uint8_t *fell_back) {
  qg_qgz_rans_stats st = {0};
  int ns = 0, ng = 0, idx = 0;
  for (int i = 0; i < n; i++)
    for (int k = 0; k < q[i]->nsec; k++, idx++) ns += narrow(&q[i]->sec[k]) && !(inl && inl[idx]);
  idx = 0;
  stream *sv = calloc((size_t)ns + 1, sizeof *sv);
  group *gv = calloc((size_t)ns + 1, sizeof *gv);
  qg_wide_set *ws = NULL;
  qg_status s = sv && gv ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory (code streams)");
  if (!s) s = qg_wide_plan(q, n, inl, &ws);
  int si = 0;
  for (int i = 0; !s && i < n; i++)
    for (int k = 0; !s && k < q[i]->nsec; k++, idx++) {
      const qg_qsection *sec = &q[i]->sec[k];
      if (!narrow(sec) || (inl && inl[idx])) continue;
      char *key = role_key(q[i], sec);
      if (!key) {
        s = qg_fail(QG_ERR_NOMEM, "out of memory");
        break;
      }
      int g = 0;
      while (g < ng && strcmp(gv[g].key, key)) g++;
      if (g == ng) {
        gv[g].key = key, gv[g].bits = sec->bits, ng++;
        gv[g].counts = calloc((size_t)1 << sec->bits, sizeof *gv[g].counts);
        if (!gv[g].counts) s = qg_fail(QG_ERR_NOMEM, "out of memory");
      } else {
        free(key);
      }
      stream *x = &sv[si++];
      x->t = q[i], x->s = sec, x->group = g, x->cols_total = SIZE_MAX;
    }
  /* every stream's candidates, on the pool (each depends on its own codes only), the
   * largest first; then the groups' counts, summed in stream order */
  int *by_size = s ? NULL : malloc(((size_t)ns + 1) * sizeof *by_size);
  if (!s && !by_size) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  if (!s) {
    for (int i = 0; i < ns; i++) by_size[i] = i;
    for (int i = 1; i < ns; i++) /* insertion sort, stable: a model has at most a few hundred streams */
      for (int k = i; k > 0 && sv[by_size[k - 1]].s->count < sv[by_size[k]].s->count; k--) {
        int tmp = by_size[k];
        by_size[k] = by_size[k - 1], by_size[k - 1] = tmp;
      }
    analysis an = {sv, by_size};
    s = qg_parallel_try(ns, analyse_task, &an);
  }
  free(by_size);
  for (int i = 0; !s && i < ns; i++)
    for (int v = 0; v < 1 << sv[i].s->bits; v++) gv[sv[i].group].counts[v] += sv[i].counts[v];
  for (int g = 0; !s && g < ng; g++) {
    s = qg_rans_table_build(gv[g].counts, 1 << gv[g].bits, QG_RANS_MAX_BITS, &gv[g].table);
    gv[g].index = -1;
  }
  /* choose per stream; a shared table is paid once, so a stream picks it when its payload
   * under it plus an index beats its own total; groups nobody picks are dropped */
  for (int i = 0; !s && i < ns; i++) {
    stream *x = &sv[i];
    s = qg_rans_payload_cost(&gv[x->group].table, x->s->data, (size_t)x->s->count, &x->shared_pay);
    x->shared_total = x->shared_pay + qg_varint_len(x->shared_pay) + 1;
    pick_unshared(x);
    if (x->shared_total < x->own_total && x->shared_total <= x->brotli_total && x->shared_total <= x->cols_total &&
        x->shared_total <= x->ctx_total && !(g_force_cols > 0 && x->cols_total != SIZE_MAX))
      x->mode = 1, gv[x->group].used++;
  }
  /* a shared table used by one stream costs more than that stream's own table would save */
  for (int i = 0; !s && i < ns; i++) {
    stream *x = &sv[i];
    group *g = &gv[x->group];
    if (x->mode == 1 && g->used == 1 && x->shared_total + qg_rans_table_bytes(&g->table) > x->own_total) {
      g->used = 0;
      pick_unshared(x);
    }
  }
  int nt = 0;
  for (int g = 0; g < ng; g++)
    if (gv[g].used) gv[g].index = nt++;
  if (!s) {
    size_t before = out->n;
    qg_varint_put(out, (uint64_t)nt);
    for (int g = 0; g < ng; g++)
      if (gv[g].used) qg_rans_table_write(&gv[g].table, out), st.tables += qg_rans_table_bytes(&gv[g].table);
    st.shared_tables = nt;
    qg_wide_stats wst = {0};
    qg_wide_write_tables(ws, out, &wst);
    /* the streams in payload order: narrow ones here, wide ones by io/qgz_wide.c */
    int si = 0, wi = 0;
    idx = 0;
    for (int ti = 0; !s && ti < n; ti++)
      for (int k = 0; !s && k < q[ti]->nsec; k++, idx++) {
      if (inl && inl[idx]) continue;
      if (qg_qgz_wide_section(&q[ti]->sec[k])) {
        int fb = 0;
        s = qg_wide_write_stream(ws, wi++, out, &wst, &fb);
        if (fell_back) fell_back[idx] = (uint8_t)fb;
        continue;
      }
      if (!narrow(&q[ti]->sec[k])) continue;
      stream *x = &sv[si++];
      if (fell_back) fell_back[idx] = x->mode == 2 ? 1 : x->mode == QG_QGZ_MODE_COLS ? 2 : 0;
      const uint32_t *po = x->mode == QG_QGZ_MODE_COLS ? x->torder : x->mode >= 3 ? x->order : NULL;
      qg_buf_byte(out, (uint8_t)((x->mode == 2 && x->brotli_bytes ? 5 : x->mode) | (po ? QG_QGZ_ROWS_PERMUTED : 0)));
      if (po) {
        s = qg_rows_order_write(po, q[ti]->rows, out);
        st.tables += qg_rows_order_bytes(q[ti]->rows), st.permuted++;
      }
      st.stream_headers++;
      if (x->mode == QG_QGZ_MODE_COLS) {
        qg_varint_put(out, x->tzn);
        qg_buf_append(out, x->tz, x->tzn);
        st.stream_headers += qg_varint_len(x->tzn), st.code_payload += x->tzn, st.transposed++;
        continue;
      }
      if (x->mode == 2) {
        qg_varint_put(out, x->zn);
        qg_buf_append(out, x->z, x->zn);
        st.stream_headers += qg_varint_len(x->zn), st.code_payload += x->zn, st.brotli++;
        continue;
      }
      if (x->mode >= 3) {
        if (x->mode == 4) {
          qg_varint_put(out, (uint64_t)x->cols);
          for (int64_t j = 0; j < x->cols; j += 4) {
            uint8_t b = 0;
            for (int64_t k = 0; k < 4 && j + k < x->cols; k++) b |= (uint8_t)(x->cls[j + k] << (2 * k));
            qg_buf_byte(out, b);
          }
          st.tables += class_bytes(x->cols);
        }
        for (int k = 0; k < QG_RANS_NCTX; k++) qg_rans_table_write(&x->ctx[k], out), st.tables += qg_rans_table_bytes(&x->ctx[k]);
        qg_varint_put(out, x->ctx_pay);
        st.stream_headers += qg_varint_len(x->ctx_pay), st.code_payload += x->ctx_pay, st.ctx++;
        const uint32_t *sy = x->order ? x->psym : x->s->data, mid = 1u << (x->s->bits - 1);
        s = x->mode == 4 ? qg_rans_ctx_encode(x->ctx, mid, x->cv, sy, (size_t)x->s->count, out)
                         : qg_rans_lag_encode(x->ctx, mid, x->lag, sy, (size_t)x->s->count, out);
        continue;
      }
      const qg_rans_table *t = x->mode ? &gv[x->group].table : &x->own;
      size_t pay = x->mode ? x->shared_pay : x->own_pay;
      if (x->mode) qg_varint_put(out, (uint64_t)gv[x->group].index), st.stream_headers += qg_varint_len(gv[x->group].index), st.shared++;
      else qg_rans_table_write(t, out), st.tables += qg_rans_table_bytes(t), st.own++;
      qg_varint_put(out, pay);
      st.stream_headers += qg_varint_len(pay), st.code_payload += pay;
      s = qg_rans_encode(t, x->s->data, (size_t)x->s->count, out);
      }
    st.stream_headers += qg_varint_len((uint64_t)nt) + wst.stream_headers;
    st.tables += wst.tables, st.code_payload += wst.code_payload;
    st.brotli += wst.brotli, st.wide = wst.wide, st.shared_tables += wst.shared_tables;
    if (!s) s = qg_buf_status(out);
    if (!s && out->n - before != st.tables + st.code_payload + st.stream_headers)
      s = qg_fail(QG_ERR_INTERNAL, "code block accounting is off by %zd bytes",
                  (ssize_t)(out->n - before) - (ssize_t)(st.tables + st.code_payload + st.stream_headers));
  }
  for (int i = 0; sv && i < ns; i++) {
    qg_rans_table_free(&sv[i].own), free(sv[i].z), free(sv[i].counts), free(sv[i].cls), free(sv[i].cv), free(sv[i].order), free(sv[i].psym);
    free(sv[i].tz), free(sv[i].torder);
    for (int k = 0; k < QG_RANS_NCTX; k++) qg_rans_table_free(&sv[i].ctx[k]);
  }
  for (int g = 0; gv && g < ng; g++) free(gv[g].key), free(gv[g].counts), qg_rans_table_free(&gv[g].table);
  free(sv), free(gv);
  qg_wide_free(ws);
  if (!s && stp) *stp = st;
  return s;
}

#define PREFIX_AT()                                                                                           \
  qg_fail_prefix(QG_ERR_INPUT, "%s: code block offset %zu (tensor '%s', section '%s')", fname, pos,             \
                 t[i].name ? t[i].name : "?", sec->name)
#define FAIL_AT(what, ...)                                                                                      \
  qg_fail(QG_ERR_INPUT, "%s: code block offset %zu (tensor '%s', section '%s'): " what, fname, pos,            \
          t[i].name ? t[i].name : "?", sec->name, __VA_ARGS__)

static qg_status read_stream(const uint8_t *p, size_t len, size_t *posp, uint8_t mode, const qg_rans_table *tab, uint64_t nt,
                             const qg_rans_table *wtab, uint64_t nw, qg_qtensor *ti, qg_qsection *sec, const char *fname,
                             int version);

qg_status qg_qgz_rans_decode(const uint8_t *p, size_t len, qg_qtensor *t, int n, const char *fname, int version,
                             const uint8_t *ext) {
  size_t pos = 0;
  uint64_t nt;
  if (qg_varint_get(p, len, &pos, &nt) || nt > (uint64_t)len)
    return qg_fail(QG_ERR_INPUT, "%s: code block offset 0: bad shared-table count", fname);
  qg_rans_table *tab = calloc((size_t)nt + 1, sizeof *tab);
  if (!tab) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = QG_OK;
  uint64_t made = 0;
  for (; made < nt; made++) {
    size_t used;
    s = qg_rans_table_read(p + pos, len - pos, &used, &tab[made]);
    if (s) {
      s = qg_fail_prefix(QG_ERR_INPUT, "%s: code block offset %zu: shared table %llu", fname, pos,
                         (unsigned long long)made);
      break;
    }
    pos += used;
  }
  qg_rans_table *wtab = NULL;
  uint64_t nw = 0;
  if (!s && version >= QG_QGZ_VERSION_WIDE && (s = qg_wide_read_tables(p, len, &pos, &wtab, &nw)))
    s = qg_fail_prefix(QG_ERR_INPUT, "%s: code block offset %zu", fname, pos);
  int idx = 0;
  for (int i = 0; !s && i < n; i++)
    for (int k = 0; !s && k < t[i].nsec; k++, idx++) {
      qg_qsection *sec = &t[i].sec[k];
      if (ext ? !ext[idx] : !qg_qgz_rans_external(sec, version)) continue;
      if (pos >= len) {
        s = FAIL_AT("%s", "the code block ends before this section");
        break;
      }
      uint8_t mode = p[pos++];
      uint32_t *order = NULL;
      if (mode & QG_QGZ_ROWS_PERMUTED) {
        mode &= (uint8_t)~QG_QGZ_ROWS_PERMUTED;
        if (version < QG_QGZ_VERSION_WIDE || t[i].rows < 2 || t[i].cols < 1 || sec->count != t[i].rows * t[i].cols ||
            t[i].rows > QG_ROWS_MAX) {
          s = FAIL_AT("%s", "a row order for a section that is not a code matrix");
          break;
        }
        if (!(order = malloc((size_t)t[i].rows * sizeof *order))) {
          s = qg_fail(QG_ERR_NOMEM, "out of memory");
          break;
        }
        if ((s = qg_rows_order_read(p, len, &pos, t[i].rows, order))) {
          free(order);
          s = PREFIX_AT();
          break;
        }
      }
      s = read_stream(p, len, &pos, mode, tab, nt, wtab, nw, &t[i], sec, fname, version);
      if (!s && order) {
        uint32_t *tmp = malloc((size_t)sec->count * sizeof *tmp + 1);
        if (!tmp) s = qg_fail(QG_ERR_NOMEM, "out of memory");
        else qg_rows_apply(sec->data, t[i].rows, t[i].cols, order, tmp, 1), memcpy(sec->data, tmp, (size_t)sec->count * sizeof *tmp);
        free(tmp);
      }
      free(order);
    }
  for (uint64_t j = 0; j < made; j++) qg_rans_table_free(&tab[j]);
  for (uint64_t j = 0; j < nw; j++) qg_rans_table_free(&wtab[j]);
  free(tab), free(wtab);
  if (!s && pos != len)
    s = qg_fail(QG_ERR_INPUT, "%s: code block offset %zu: %zu trailing bytes after the last stream", fname, pos, len - pos);
  return s;
}

/* One stream's body after its mode byte, into sec->data. */
static qg_status read_stream(const uint8_t *p, size_t len, size_t *posp, uint8_t mode, const qg_rans_table *tab, uint64_t nt,
                             const qg_rans_table *wtab, uint64_t nw, qg_qtensor *ti, qg_qsection *sec, const char *fname,
                             int version) {
  size_t pos = *posp;
  qg_status s = QG_OK;
  uint64_t v;
  const int i = 0;
  qg_qtensor *t = ti;
  do {
      if (mode > QG_QGZ_MODE_COLS) {
        s = FAIL_AT("unknown stream mode %u", mode);
        break;
      }
      if (mode == 6) {
        if (version < QG_QGZ_VERSION_WIDE) {
          s = FAIL_AT("%s", "wide stream mode in a format-2 file");
          break;
        }
        s = qg_wide_read_stream(p, len, &pos, wtab, nw, &t[i], sec);
        if (s) s = PREFIX_AT();
        continue;
      }
      if (mode == QG_QGZ_MODE_COLS) {
        if (version < QG_QGZ_VERSION_WIDE || !qg_cols_eligible(sec->bits, sec->count, t[i].rows, t[i].cols)) {
          s = FAIL_AT("%s", "transposed stream for a section that is not a code matrix of <= 8 bits");
          break;
        }
        s = qg_cols_read(p, len, &pos, t[i].rows, t[i].cols, sec->bits, sec->data);
        if (s) s = PREFIX_AT();
        continue;
      }
      if (mode == 5 && sec->bits > 8) {
        s = FAIL_AT("%s", "byte-per-code brotli stream for codes over 8 bits");
        break;
      }
      if (mode == 2 || mode == 5) {
        if (qg_varint_get(p, len, &pos, &v) || v > len - pos) {
          s = FAIL_AT("%s", "brotli stream length runs past the block");
          break;
        }
        size_t pn = mode == 5 ? (size_t)sec->count : (size_t)((sec->count * sec->bits + 7) / 8);
        uint8_t *pk = malloc(pn + 8);
        if (!pk) {
          s = qg_fail(QG_ERR_NOMEM, "out of memory");
          break;
        }
        memset(pk, 0, pn + 8);
        s = qg_decompress(QG_COMP_BROTLI, p + pos, (size_t)v, pk, pn, fname);
        if (s) s = PREFIX_AT();
        uint32_t *c = sec->data;
        uint64_t acc = 0, mask = ((uint64_t)1 << sec->bits) - 1;
        int have = 0;
        size_t b = 0;
        for (int64_t j = 0; !s && mode == 5 && j < sec->count; j++) {
          c[j] = pk[j];
          if (c[j] >> sec->bits) s = FAIL_AT("code %u at %lld: a symbol outside the %d-bit alphabet", c[j], (long long)j, sec->bits);
        }
        for (int64_t j = 0; !s && mode == 2 && j < sec->count; j++) {
          while (have < sec->bits) acc |= (uint64_t)pk[b++] << have, have += 8;
          c[j] = (uint32_t)(acc & mask), acc >>= sec->bits, have -= sec->bits;
        }
        free(pk);
        pos += (size_t)v;
        continue;
      }
      if (mode == 7 && (version < QG_QGZ_VERSION_WIDE || t[i].cols < 1 || sec->count != t[i].rows * t[i].cols)) {
        s = FAIL_AT("%s", "previous-row contexts for a section that is not a code matrix");
        break;
      }
      if (mode >= 3) {
        qg_rans_table ct[QG_RANS_NCTX] = {{0}};
        uint8_t *cv = NULL;
        if (mode == 4) {
          int64_t cols = t[i].cols;
          if (qg_varint_get(p, len, &pos, &v) || (int64_t)v != cols || cols < 1 || sec->count != t[i].rows * cols) {
            s = FAIL_AT("%s", "column classes do not match the tensor's shape");
            break;
          }
          if ((size_t)(cols + 3) / 4 > len - pos) {
            s = FAIL_AT("%s", "column classes run past the block");
            break;
          }
          cv = malloc((size_t)sec->count + 1);
          if (!cv) {
            s = qg_fail(QG_ERR_NOMEM, "out of memory");
            break;
          }
          for (int64_t j = 0; j < sec->count; j++) {
            int64_t c = j % cols;
            cv[j] = (uint8_t)((p[pos + (size_t)(c / 4)] >> (2 * (c % 4))) & 3);
          }
          pos += (size_t)(cols + 3) / 4;
        }
        for (int c = 0; !s && c < QG_RANS_NCTX; c++) {
          size_t used;
          s = qg_rans_table_read(p + pos, len - pos, &used, &ct[c]);
          if (s) s = PREFIX_AT();
          else if (ct[c].nsym > 1 << sec->bits)
            s = FAIL_AT("context table alphabet of %d symbols: a symbol outside the %d-bit alphabet", ct[c].nsym,
                        sec->bits);
          pos += s ? 0 : used;
        }
        if (!s && (qg_varint_get(p, len, &pos, &v) || v > len - pos)) s = FAIL_AT("%s", "rANS payload length runs past the block");
        if (!s) {
          s = mode == 7 ? qg_rans_lag_decode(ct, 1u << (sec->bits - 1), (size_t)t[i].cols, p + pos, (size_t)v, sec->data,
                                             (size_t)sec->count)
                        : qg_rans_ctx_decode(ct, 1u << (sec->bits - 1), cv, p + pos, (size_t)v, sec->data, (size_t)sec->count);
          if (s) s = PREFIX_AT();
          pos += (size_t)v;
        }
        for (int c = 0; c < QG_RANS_NCTX; c++) qg_rans_table_free(&ct[c]);
        free(cv);
        continue;
      }
      qg_rans_table own = {0};
      const qg_rans_table *tb = &own;
      if (mode == 1) {
        if (qg_varint_get(p, len, &pos, &v) || v >= nt) {
          s = FAIL_AT("%s", "shared table index missing or out of range");
          break;
        }
        tb = &tab[v];
      } else {
        size_t used;
        s = qg_rans_table_read(p + pos, len - pos, &used, &own);
        if (s) {
          s = PREFIX_AT();
          break;
        }
        pos += used;
      }
      if (tb->nsym > 1 << sec->bits) {
        s = FAIL_AT("table alphabet of %d symbols: a symbol outside the %d-bit alphabet", tb->nsym, sec->bits);
      } else if (qg_varint_get(p, len, &pos, &v) || v > len - pos) {
        s = FAIL_AT("%s", "rANS payload length runs past the block");
      } else {
        s = qg_rans_decode(tb, p + pos, (size_t)v, sec->data, (size_t)sec->count);
        if (s) s = PREFIX_AT();
        pos += (size_t)v;
      }
      qg_rans_table_free(&own);
  } while (0);
  *posp = pos;
  return s;
}
