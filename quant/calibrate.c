#include "quant/calibrate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/progress.h"

static uint64_t splitmix(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

qg_status qg_calib_from_shards(const qg_shards *s, int n, int len, uint64_t seed, int64_t skip, int32_t *out) {
  int64_t total = qg_shards_count(s) - skip;
  if (n <= 0 || len <= 0) return qg_fail(QG_ERR_INPUT, "calibration needs at least one sequence of one token");
  int64_t slots = total / len; /* non-overlapping slots of len tokens */
  if (skip < 0 || slots < n)
    return qg_fail(QG_ERR_INPUT, "calibration: %lld tokens hold only %lld sequences of %d, %d asked", (long long)total,
                   (long long)(slots > 0 ? slots : 0), len, n);
  /* choose n distinct slots (partial Fisher-Yates over slot indices, seeded) */
  int64_t *pick = malloc(sizeof *pick * (size_t)n);
  uint16_t *buf = malloc(sizeof *buf * (size_t)len);
  if (!pick || !buf) {
    free(pick);
    free(buf);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  uint64_t st = seed;
  for (int i = 0; i < n; i++) {
    int64_t r;
    int dup;
    do { /* rejection keeps the draw uniform over unused slots without an O(slots) array */
      r = (int64_t)(splitmix(&st) % (uint64_t)slots);
      dup = 0;
      for (int j = 0; j < i; j++) dup |= pick[j] == r;
    } while (dup);
    pick[i] = r;
  }
  qsort(pick, (size_t)n, sizeof *pick, cmp_i64);
  qg_status e = QG_OK;
  for (int i = 0; i < n && !e; i++) {
    e = qg_shards_read(s, skip + pick[i] * len, len, buf);
    for (int t = 0; t < len && !e; t++) out[(int64_t)i * len + t] = buf[t];
  }
  free(pick);
  free(buf);
  return e;
}

qg_status qg_calib_generate(qg_gpt *m, int n, int len, float temperature, uint64_t seed, int bos, int32_t *out) {
  if (n <= 0 || len <= 0) return qg_fail(QG_ERR_INPUT, "calibration needs at least one sequence of one token");
  if (!(temperature > 0)) return qg_fail(QG_ERR_INPUT, "sampling temperature must be positive");
  int V = m->cfg.vocab;
  if (bos < 0 || bos >= V) return qg_fail(QG_ERR_INPUT, "start token %d outside the vocabulary", bos);
  float *row = malloc(sizeof *row * (size_t)V);
  int32_t *cur = malloc(sizeof *cur * (size_t)n * len);
  if (!row || !cur) {
    free(row);
    free(cur);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  uint64_t st = seed;
  for (int i = 0; i < n; i++) cur[(int64_t)i * len] = bos;
  qg_status e = QG_OK;
  qg_progress pr;
  qg_progress_start(&pr, "calibration sampling", "tokens", (int64_t)n * len);
  /* step t: run the prefixes of length t, sample token t from position t-1 */
  for (int t = 1; t < len && !e; t++) {
    int32_t *pre = malloc(sizeof *pre * (size_t)n * t);
    if (!pre) {
      e = qg_fail(QG_ERR_NOMEM, "out of memory");
      break;
    }
    for (int i = 0; i < n; i++) memcpy(pre + (int64_t)i * t, cur + (int64_t)i * len, sizeof *pre * (size_t)t);
    e = qg_gpt_forward(m, pre, n, t);
    free(pre);
    for (int i = 0; i < n && !e; i++) {
      const float *lg = m->logits + ((int64_t)i * t + t - 1) * V;
      if ((e = m->ops->download(m->ops, row, lg, sizeof *row * (size_t)V))) break;
      /* softcapped logits / temperature, softmax in double, inverse-CDF sampling */
      double mx = -INFINITY, sum = 0;
      for (int v = 0; v < V; v++) {
        double z = m->cfg.softcap * tanh(row[v] / m->cfg.softcap) / temperature;
        row[v] = (float)z;
        mx = z > mx ? z : mx;
      }
      for (int v = 0; v < V; v++) sum += exp(row[v] - mx);
      double u = (double)(splitmix(&st) >> 11) * (1.0 / 9007199254740992.0) * sum, acc = 0;
      int pick = V - 1;
      for (int v = 0; v < V; v++) {
        acc += exp(row[v] - mx);
        if (acc > u) {
          pick = v;
          break;
        }
      }
      cur[(int64_t)i * len + t] = pick;
    }
    qg_progress_update(&pr, (int64_t)n * (t + 1));
  }
  qg_progress_finish(&pr, (int64_t)n * len);
  if (!e) memcpy(out, cur, sizeof *cur * (size_t)n * len);
  free(row);
  free(cur);
  return e;
}

/* One backend accumulator per distinct input (kernels/ops.h hacc_*): the activations
 * never leave the backend's memory during the pass. */
typedef struct {
  qg_hessian_map *map;
  const qg_ops *ops;
  struct tap_sum {
    const char *name; /* the map's key (owned by the map) */
    int64_t k;
    qg_hacc *h;
  } *v;
  int n, cap;
} tap_ctx;

/* Accumulates the input once, for the first weight that reads it; the others that read
 * the same input (c_k, c_v beside c_q) are reserved in the map and get a copy at the end. */
static qg_status hessian_tap(void *c, const char *const *names, int n_names, const float *x, int64_t rows, int K) {
  tap_ctx *t = c;
  qg_hessian *h;
  QG_TRY(qg_hessian_map_get(t->map, names[0], K, &h));
  for (int i = 1; i < n_names; i++) QG_TRY(qg_hessian_map_get(t->map, names[i], K, &h)); /* reserve */
  int e = 0;
  while (e < t->n && strcmp(t->v[e].name, names[0])) e++;
  if (e == t->n) {
    if (t->n == t->cap) {
      int cap = t->cap ? 2 * t->cap : 64;
      struct tap_sum *v = realloc(t->v, sizeof *v * (size_t)cap);
      if (!v) return qg_fail(QG_ERR_NOMEM, "out of memory");
      t->v = v, t->cap = cap;
    }
    for (int i = 0; i < t->map->n; i++)
      if (!strcmp(t->map->names[i], names[0])) t->v[e].name = t->map->names[i];
    t->v[e].k = K;
    QG_TRY(t->ops->hacc_create(t->ops, K, &t->v[e].h));
    t->n++;
  }
  return t->ops->hacc_add(t->ops, t->v[e].h, x, rows);
}

/* Weights sharing an input (c_q, c_k, c_v) were reserved empty: they get c_q's sum; then
 * every sum is scaled and symmetrised. */
static qg_status share_and_finalize(qg_hessian_map *map) {
  for (int i = 0; i < map->n; i++) {
    if (map->h[i].n > 0) continue;
    const char *nm = map->names[i];
    const char *dot = strstr(nm, ".attn.c_");
    if (!dot) continue;
    char src[128];
    snprintf(src, sizeof src, "%.*s.attn.c_q.weight", (int)(dot - nm), nm);
    const qg_hessian *q = qg_hessian_map_find(map, src);
    if (!q || q->n == 0) continue;
    memcpy(map->h[i].H, q->H, sizeof(double) * (size_t)(q->k * q->k));
    map->h[i].n = q->n;
  }
  return qg_hessian_map_finalize(map);
}

qg_status qg_calib_hessians(qg_gpt *m, const int32_t *seqs, int n, int len, int batch, qg_hessian_map *map) {
  if (batch <= 0) batch = len >= 8192 ? 1 : 8192 / len;
  tap_ctx t = {map, m->ops, NULL, 0, 0};
  m->tap = hessian_tap;
  m->tap_ctx = &t;
  m->taps_only = 1; /* the logits are not needed */
  qg_status e = QG_OK;
  qg_progress pr;
  qg_progress_start(&pr, "calibration", "tokens", (int64_t)n * len);
  for (int i = 0; i < n && !e; i += batch) {
    int nb = n - i < batch ? n - i : batch;
    e = qg_gpt_forward(m, seqs + (int64_t)i * len, nb, len);
    qg_progress_update(&pr, (int64_t)(i + nb) * len);
  }
  qg_progress_finish(&pr, (int64_t)n * len);
  m->tap = NULL;
  m->tap_ctx = NULL;
  m->taps_only = 0;
  for (int i = 0; i < t.n && !e; i++) { /* the sums into the map (names stay the map's) */
    qg_hessian *h;
    int64_t rows = 0;
    if (!(e = qg_hessian_map_get(map, t.v[i].name, t.v[i].k, &h))) e = m->ops->hacc_read(m->ops, t.v[i].h, h->H, &rows);
    if (!e) h->n = rows;
  }
  for (int i = 0; i < t.n; i++) m->ops->hacc_free(m->ops, t.v[i].h);
  free(t.v);
  if (e) return e;
  return share_and_finalize(map);
}

/* Across ranks: batch b runs on rank b % world; each batch's sums go into fresh
 * accumulators and are folded onto the running sums in batch order (rank-order
 * reduce-scatter, fp64, QG_COMM_ACCUMULATE), so the Hessians are the same bits on any
 * world size, one rank included. A rank without a batch in a round adds zeros; one that
 * has not yet seen the model's taps runs batch 0 to learn them. */
qg_status qg_calib_hessians_comm(qg_gpt *m, const int32_t *seqs, int n, int len, int batch, qg_comm *comm,
                                 qg_hessian_map *map) {
  if (batch <= 0) batch = len >= 8192 ? 1 : 8192 / len;
  int W = qg_comm_world(comm), me = qg_comm_rank(comm);
  int64_t nbatch = (n + batch - 1) / batch;
  tap_ctx t = {map, m->ops, NULL, 0, 0};
  m->tap = hessian_tap;
  m->tap_ctx = &t;
  m->taps_only = 1;
  qg_status e = QG_OK;
  /* the layout of the folded vector: per tap (in first-call order) k*k sums and a row count */
  int ntap = 0;
  int64_t total = 0, *off = NULL, *kk = NULL, *counts = NULL, mine_off = 0;
  const char **names = NULL;
  double *buf = NULL, *acc = NULL;
  qg_progress pr;
  qg_progress_start(&pr, "calibration", "tokens", (int64_t)n * len);
  for (int64_t round = 0; round * W < nbatch && !e; round++) {
    int64_t b = round * W + me;
    int have = b < nbatch;
    if (have || !ntap) {
      int64_t bb = have ? b : 0, i = bb * batch;
      int nb = n - i < batch ? (int)(n - i) : batch;
      e = qg_gpt_forward(m, seqs + i * len, nb, len);
    }
    if (!e && !ntap) { /* first round: the taps are known now; the same on every rank */
      ntap = t.n;
      off = calloc((size_t)ntap + 1, sizeof *off), kk = calloc((size_t)ntap + 1, sizeof *kk);
      names = calloc((size_t)ntap + 1, sizeof *names), counts = calloc((size_t)W, sizeof *counts);
      if (!off || !kk || !names || !counts) e = qg_fail(QG_ERR_NOMEM, "out of memory");
      for (int j = 0; j < ntap && !e; j++) off[j] = total, kk[j] = t.v[j].k, names[j] = t.v[j].name, total += kk[j] * kk[j] + 1;
      if (!e) e = qg_comm_check_same_i64(comm, "the calibration model's Hessian layout", total);
      for (int r = 0; r < W && !e; r++) {
        counts[r] = total / W + (r < total % W);
        if (r < me) mine_off += counts[r];
      }
      if (!e && (!(buf = malloc(sizeof *buf * (size_t)total)) || !(acc = calloc((size_t)counts[me] + 1, sizeof *acc))))
        e = qg_fail(QG_ERR_NOMEM, "out of memory for %lld Hessian sums", (long long)total);
    }
    if (!e && (have || round == 0) && t.n != ntap) e = qg_fail(QG_ERR_INTERNAL, "calibration: the model's taps changed between batches");
    for (int j = 0; j < ntap && !e; j++) {
      int64_t rows = 0;
      if (have) {
        e = m->ops->hacc_read(m->ops, t.v[j].h, buf + off[j], &rows);
        buf[off[j] + kk[j] * kk[j]] = (double)rows;
      } else {
        memset(buf + off[j], 0, sizeof *buf * (size_t)(kk[j] * kk[j] + 1));
      }
    }
    /* fresh accumulators for the next batch */
    for (int j = 0; j < t.n; j++) m->ops->hacc_free(m->ops, t.v[j].h);
    t.n = 0;
    if (!e) e = qg_comm_reduce_scatter(comm, buf, acc, 0, counts, QG_COMM_F64, QG_COMM_ACCUMULATE);
    int64_t done = (round + 1) * W * batch;
    qg_progress_update(&pr, (int64_t)(done < n ? done : n) * len);
  }
  qg_progress_finish(&pr, (int64_t)n * len);
  m->tap = NULL;
  m->tap_ctx = NULL;
  m->taps_only = 0;
  if (!e && ntap) e = qg_comm_allgather(comm, acc, buf, 0, counts, QG_COMM_F64);
  for (int j = 0; j < ntap && !e; j++) {
    qg_hessian *h;
    if (!(e = qg_hessian_map_get(map, names[j], kk[j], &h))) {
      memcpy(h->H, buf + off[j], sizeof(double) * (size_t)(kk[j] * kk[j]));
      h->n = (int64_t)buf[off[j] + kk[j] * kk[j]];
    }
  }
  for (int j = 0; j < t.n; j++) m->ops->hacc_free(m->ops, t.v[j].h);
  free(t.v), free(off), free(kk), free(names), free(counts), free(buf), free(acc);
  if (e) return e;
  return share_and_finalize(map);
}
