/* Row orders of a code matrix (see io/qgz_rows.h). */
#include "io/qgz_rows.h"

#include <stdlib.h>
#include <string.h>

static double *row_spread(const uint32_t *sym, int64_t rows, int64_t cols, uint32_t mid) {
  double *m = calloc((size_t)rows + 1, sizeof *m);
  if (!m) return NULL;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) {
      uint32_t v = sym[r * cols + c];
      m[r] += v > mid ? v - mid : mid - v;
    }
  return m;
}

/* the comparator's keys: qsort has no context argument, and encoders run on several
 * threads at once */
static _Thread_local const double *g_key;
static int by_key(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  if (g_key[x] != g_key[y]) return g_key[x] < g_key[y] ? -1 : 1;
  return x < y ? -1 : x > y;
}

qg_status qg_rows_by_spread(const uint32_t *sym, int64_t rows, int64_t cols, uint32_t mid, uint32_t *order) {
  double *m = row_spread(sym, rows, cols, mid);
  if (!m) return qg_fail(QG_ERR_NOMEM, "out of memory (row order)");
  for (int64_t r = 0; r < rows; r++) order[r] = (uint32_t)r;
  g_key = m;
  qsort(order, (size_t)rows, sizeof *order, by_key);
  free(m);
  return QG_OK;
}

qg_status qg_rows_greedy(const uint32_t *sym, int64_t rows, int64_t cols, uint32_t mid, uint32_t *order) {
  double *m = row_spread(sym, rows, cols, mid);
  uint8_t *used = calloc((size_t)rows + 1, 1);
  if (!m || !used) return free(m), free(used), qg_fail(QG_ERR_NOMEM, "out of memory (row order)");
  int64_t cur = 0;
  for (int64_t r = 1; r < rows; r++)
    if (m[r] < m[cur]) cur = r;
  for (int64_t k = 0; k < rows; k++) {
    order[k] = (uint32_t)cur, used[cur] = 1;
    int64_t best = -1;
    uint64_t bd = UINT64_MAX;
    const uint32_t *a = sym + cur * cols;
    for (int64_t r = 0; r < rows; r++) {
      if (used[r]) continue;
      const uint32_t *b = sym + r * cols;
      uint64_t d = 0;
      for (int64_t c = 0; c < cols && d < bd; c++) d += a[c] > b[c] ? a[c] - b[c] : b[c] - a[c];
      if (d < bd) bd = d, best = r;
    }
    cur = best;
  }
  free(m), free(used);
  return QG_OK;
}

static int ceil_log2(uint64_t n) {
  int b = 0;
  while (((uint64_t)1 << b) < n) b++;
  return b;
}

size_t qg_rows_order_bytes(int64_t rows) {
  uint64_t bits = 0;
  for (int64_t k = 0; k < rows; k++) bits += (uint64_t)ceil_log2((uint64_t)(rows - k));
  return (size_t)((bits + 7) / 8);
}

/* A Fenwick tree over row presence: rank of a row among the unused, and the inverse. */
typedef struct {
  int32_t *t;
  int64_t n;
} fenwick;

static int fw_init(fenwick *f, int64_t n) {
  f->n = n, f->t = calloc((size_t)n + 1, sizeof *f->t);
  if (!f->t) return -1;
  for (int64_t i = 1; i <= n; i++) {
    f->t[i] += 1;
    int64_t j = i + (i & -i);
    if (j <= n) f->t[j] += f->t[i];
  }
  return 0;
}
static void fw_remove(fenwick *f, int64_t i) {
  for (i++; i <= f->n; i += i & -i) f->t[i]--;
}
static int64_t fw_rank(const fenwick *f, int64_t i) { /* unused rows before i */
  int64_t s = 0;
  for (; i > 0; i -= i & -i) s += f->t[i];
  return s;
}
static int64_t fw_select(const fenwick *f, int64_t k) { /* the unused row of rank k */
  int64_t pos = 0, step = 1;
  while (step * 2 <= f->n) step *= 2;
  for (; step; step /= 2)
    if (pos + step <= f->n && f->t[pos + step] <= k) pos += step, k -= f->t[pos];
  return pos;
}

qg_status qg_rows_order_write(const uint32_t *order, int64_t rows, qg_buf *out) {
  fenwick f;
  if (fw_init(&f, rows)) return qg_fail(QG_ERR_NOMEM, "out of memory (row order)");
  uint64_t acc = 0;
  int na = 0;
  for (int64_t k = 0; k < rows; k++) {
    int b = ceil_log2((uint64_t)(rows - k));
    uint64_t v = (uint64_t)fw_rank(&f, order[k]);
    fw_remove(&f, order[k]);
    acc |= v << na, na += b;
    while (na >= 8) qg_buf_byte(out, (uint8_t)acc), acc >>= 8, na -= 8;
  }
  if (na) qg_buf_byte(out, (uint8_t)acc);
  free(f.t);
  return qg_buf_status(out);
}

qg_status qg_rows_order_read(const uint8_t *p, size_t len, size_t *pos, int64_t rows, uint32_t *order) {
  if (rows < 1 || rows > QG_ROWS_MAX) return qg_fail(QG_ERR_INPUT, "row order of %lld rows", (long long)rows);
  size_t nb = qg_rows_order_bytes(rows);
  if (nb > len - *pos) return qg_fail(QG_ERR_INPUT, "row order runs past the block");
  fenwick f;
  if (fw_init(&f, rows)) return qg_fail(QG_ERR_NOMEM, "out of memory (row order)");
  const uint8_t *q = p + *pos;
  uint64_t bit = 0;
  for (int64_t k = 0; k < rows; k++) {
    int b = ceil_log2((uint64_t)(rows - k));
    uint64_t v = 0;
    for (int j = 0; j < b; j++, bit++) v |= (uint64_t)((q[bit / 8] >> (bit % 8)) & 1) << j;
    if (v >= (uint64_t)(rows - k)) {
      free(f.t);
      return qg_fail(QG_ERR_INPUT, "row order entry %lld is %llu of %lld choices", (long long)k, (unsigned long long)v,
                     (long long)(rows - k));
    }
    int64_t r = fw_select(&f, (int64_t)v);
    order[k] = (uint32_t)r;
    fw_remove(&f, r);
  }
  free(f.t);
  *pos += nb;
  return QG_OK;
}

void qg_rows_apply(const uint32_t *in, int64_t rows, int64_t cols, const uint32_t *order, uint32_t *out, int undo) {
  for (int64_t j = 0; j < rows; j++) {
    if (undo) memcpy(out + (size_t)order[j] * cols, in + j * cols, (size_t)cols * sizeof *in);
    else memcpy(out + j * cols, in + (size_t)order[j] * cols, (size_t)cols * sizeof *in);
  }
}
