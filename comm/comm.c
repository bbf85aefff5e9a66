/* The collectives of comm/comm.h over any backend: reductions gather the contributions
 * (all-to-all of the blocks) and fold them in rank order, so the sum never depends on the
 * transport's algorithm; plus the self backend, the counters and the watchdog. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm/comm_internal.h"
#include "core/sha256.h"

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

size_t qg_comm_dtype_size(qg_comm_dtype t) {
  switch (t) {
    case QG_COMM_F32: return 4;
    case QG_COMM_F64: return 8;
    case QG_COMM_I64: return 8;
    case QG_COMM_U8: return 1;
  }
  return 1;
}

const char *qg_comm_op_name(qg_comm_opkind k) {
  static const char *n[QG_COMM_OP_COUNT] = {"all-reduce", "reduce-scatter", "all-gather", "broadcast", "barrier"};
  return k >= 0 && k < QG_COMM_OP_COUNT ? n[k] : "?";
}

/* ---- host arithmetic (self, mpi) -------------------------------------------------------- */

qg_status qg_comm_host_alloc(qg_comm *c, void **p, size_t bytes) {
  (void)c;
  *p = malloc(bytes ? bytes : 1);
  return *p ? QG_OK : qg_fail(QG_ERR_NOMEM, "communication scratch: out of memory for %zu bytes", bytes);
}
void qg_comm_host_free(qg_comm *c, void *p) {
  (void)c;
  free(p);
}
qg_status qg_comm_host_copy(qg_comm *c, void *dst, const void *src, size_t bytes) {
  (void)c;
  if (bytes && dst != src) memmove(dst, src, bytes);
  return QG_OK;
}

qg_status qg_comm_host_add(qg_comm *c, void *out, const void *a, const void *b, int64_t n, qg_comm_dtype t) {
  (void)c;
  switch (t) {
    case QG_COMM_F32: {
      float *o = out;
      const float *x = a, *y = b;
      for (int64_t i = 0; i < n; i++) o[i] = x[i] + y[i];
      return QG_OK;
    }
    case QG_COMM_F64: {
      double *o = out;
      const double *x = a, *y = b;
      for (int64_t i = 0; i < n; i++) o[i] = x[i] + y[i];
      return QG_OK;
    }
    case QG_COMM_I64: {
      int64_t *o = out;
      const int64_t *x = a, *y = b;
      for (int64_t i = 0; i < n; i++) o[i] = (int64_t)((uint64_t)x[i] + (uint64_t)y[i]);
      return QG_OK;
    }
    case QG_COMM_U8: break;
  }
  return qg_fail(QG_ERR_UNSUPPORTED, "communication: bytes cannot be summed");
}

qg_status qg_comm_host_divide(qg_comm *c, void *out, int64_t n, qg_comm_dtype t, int world) {
  (void)c;
  if (t == QG_COMM_F32) {
    float *o = out, w = (float)world;
    for (int64_t i = 0; i < n; i++) o[i] /= w;
  } else if (t == QG_COMM_F64) {
    double *o = out, w = (double)world;
    for (int64_t i = 0; i < n; i++) o[i] /= w;
  } else {
    return qg_fail(QG_ERR_UNSUPPORTED, "communication: an average needs a floating type");
  }
  return QG_OK;
}

/* ---- self ------------------------------------------------------------------------------- */

static qg_status self_allgatherv(qg_comm *c, const void *send, size_t bytes, void *recv, const size_t *counts,
                                 const size_t *displs) {
  (void)counts;
  return qg_comm_host_copy(c, (char *)recv + displs[0], send, bytes);
}
static qg_status self_alltoallv(qg_comm *c, const void *send, const size_t *scounts, const size_t *sdispls, void *recv,
                                const size_t *rcounts, const size_t *rdispls) {
  (void)rcounts;
  return qg_comm_host_copy(c, (char *)recv + rdispls[0], (const char *)send + sdispls[0], scounts[0]);
}
static qg_status self_broadcast(qg_comm *c, void *buf, size_t bytes, int root) {
  (void)c, (void)buf, (void)bytes, (void)root;
  return QG_OK;
}
static qg_status self_barrier(qg_comm *c) {
  (void)c;
  return QG_OK;
}
static void self_abort(qg_comm *c, int code) { (void)c, (void)code; }
static void self_close(qg_comm *c) { (void)c; }

static const qg_comm_backend self_backend = {
    .name = "self", .on_device = 0, .allgatherv = self_allgatherv, .alltoallv = self_alltoallv,
    .broadcast = self_broadcast, .barrier = self_barrier, .alloc = qg_comm_host_alloc, .free = qg_comm_host_free,
    .add = qg_comm_host_add, .divide = qg_comm_host_divide, .copy = qg_comm_host_copy,
    .to_backend = qg_comm_host_copy, .to_host = qg_comm_host_copy, .abort = self_abort, .close = self_close};

/* ---- the watchdog ----------------------------------------------------------------------- */

static qg_comm_timeout_handler g_handler;
static void *g_handler_ctx;

void qg_comm_set_timeout_handler(qg_comm_timeout_handler h, void *ctx) {
  g_handler = h;
  g_handler_ctx = ctx;
}

static void *watchdog_main(void *arg) {
  qg_comm *c = arg;
  while (!atomic_load(&c->stop)) {
    usleep(100000);
    int64_t t0 = atomic_load(&c->op_start_ns), lim = atomic_load(&c->timeout_ns);
    if (!t0 || lim <= 0 || now_ns() - t0 <= lim) continue;
    char msg[256];
    snprintf(msg, sizeof msg,
             "rank %d of %d: %s did not complete within %.0f s; another rank has probably died or stopped "
             "(QG_COMM_TIMEOUT sets the limit)",
             c->rank, c->world, qg_comm_op_name((qg_comm_opkind)atomic_load(&c->op_kind)), (double)lim / 1e9);
    if (g_handler) g_handler(g_handler_ctx, msg);
    c->be->abort(c, 3);
    _exit(3);
  }
  return NULL;
}

void qg_comm_set_timeout(qg_comm *c, double seconds) {
  atomic_store(&c->timeout_ns, (int64_t)(seconds * 1e9));
}

const char *qg_comm_current_op(const qg_comm *c) {
  if (!c || !atomic_load(&((qg_comm *)c)->op_start_ns)) return NULL;
  return qg_comm_op_name((qg_comm_opkind)atomic_load(&((qg_comm *)c)->op_kind));
}

/* Brackets a collective: the watchdog watches it, the counters count it. */
static int64_t op_begin(qg_comm *c, qg_comm_opkind k) {
  int64_t t = now_ns();
  atomic_store(&c->op_kind, (int)k);
  atomic_store(&c->op_start_ns, t);
  return t;
}
static qg_status op_end(qg_comm *c, qg_comm_opkind k, int64_t t0, size_t bytes, qg_status s) {
  atomic_store(&c->op_start_ns, 0);
  c->stats.calls[k]++;
  c->stats.bytes[k] += (int64_t)bytes;
  c->stats.seconds[k] += (double)(now_ns() - t0) / 1e9;
  if (s) return qg_fail_prefix(s, "rank %d of %d: %s", c->rank, c->world, qg_comm_op_name(k));
  return QG_OK;
}

/* ---- open / close ----------------------------------------------------------------------- */

int qg_comm_launcher_world(void) {
  const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
    const char *v = getenv(vars[i]);
    if (v && *v) return atoi(v);
  }
  return 0;
}

const char *qg_comm_available(void) {
  if (qg_comm_mpi_built() && qg_comm_nccl_built()) return "self,mpi,nccl";
  if (qg_comm_mpi_built()) return "self,mpi";
  if (qg_comm_nccl_built()) return "self,nccl";
  return "self";
}

qg_status qg_comm_open(const char *name, qg_comm **out) {
  *out = NULL;
  if (!name || !strcmp(name, "auto")) name = qg_comm_launcher_world() > 1 ? "mpi" : "self";
  qg_comm *c = calloc(1, sizeof *c);
  if (!c) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = QG_OK;
  if (!strcmp(name, "self")) {
    c->be = &self_backend, c->kind = QG_COMM_SELF, c->rank = 0, c->world = 1;
    if (qg_comm_launcher_world() > 1)
      s = qg_fail(QG_ERR_INPUT, "--comm self under a launcher of %d ranks: every rank would train alone (use --comm mpi)",
                  qg_comm_launcher_world());
  } else if (!strcmp(name, "mpi")) {
    c->kind = QG_COMM_MPI;
    s = qg_comm_mpi_open(c);
  } else if (!strcmp(name, "nccl")) {
    c->kind = QG_COMM_NCCL;
    s = qg_comm_nccl_open(c);
  } else {
    s = qg_fail(QG_ERR_INPUT, "--comm '%s': unknown backend (self, mpi, nccl, auto; this build has %s)", name,
                qg_comm_available());
  }
  if (s) {
    free(c);
    return s;
  }
  const char *to = getenv("QG_COMM_TIMEOUT");
  double sec = to && *to ? atof(to) : 300.0;
  atomic_store(&c->timeout_ns, (int64_t)(sec * 1e9));
  if (c->world > 1 && pthread_create(&c->watchdog, NULL, watchdog_main, c) == 0) c->have_watchdog = 1;
  *out = c;
  return QG_OK;
}

qg_status qg_comm_open_self(qg_comm **out) {
  qg_comm *c = calloc(1, sizeof *c);
  if (!(*out = c)) return qg_fail(QG_ERR_NOMEM, "out of memory");
  c->be = &self_backend, c->kind = QG_COMM_SELF, c->rank = 0, c->world = 1;
  return QG_OK;
}

void qg_comm_close(qg_comm *c) {
  if (!c) return;
  if (c->have_watchdog) {
    atomic_store(&c->stop, 1);
    pthread_join(c->watchdog, NULL);
  }
  if (c->scratch) c->be->free(c, c->scratch);
  c->be->close(c);
  free(c);
}

void qg_comm_abort(qg_comm *c, int code) {
  if (c && c->world > 1) c->be->abort(c, code);
}

int qg_comm_rank(const qg_comm *c) { return c ? c->rank : 0; }
int qg_comm_world(const qg_comm *c) { return c ? c->world : 1; }
qg_comm_kind qg_comm_kind_of(const qg_comm *c) { return c ? c->kind : QG_COMM_SELF; }
const char *qg_comm_name(const qg_comm *c) { return c ? c->be->name : "self"; }
int qg_comm_on_device(const qg_comm *c) { return c ? c->be->on_device : 0; }

static qg_status scratch(qg_comm *c, size_t bytes, void **out) {
  if (bytes > c->scratch_cap) {
    if (c->scratch) c->be->free(c, c->scratch);
    c->scratch = NULL, c->scratch_cap = 0;
    QG_TRY(c->be->alloc(c, &c->scratch, bytes));
    c->scratch_cap = bytes;
  }
  *out = c->scratch;
  return QG_OK;
}

/* ---- the collectives -------------------------------------------------------------------- */

/* The reduce-scatter proper (no counters): gather this rank's block from every rank into
 * scratch, then fold them in rank order into recv. */
static qg_status reduce_scatter_raw(qg_comm *c, const void *send, void *recv, const int64_t *counts, qg_comm_dtype t,
                                    int mode) {
  int W = c->world, me = c->rank;
  size_t es = qg_comm_dtype_size(t), mine = (size_t)counts[me] * es;
  size_t *sc = malloc(sizeof(size_t) * 4 * (size_t)W);
  if (!sc) return qg_fail(QG_ERR_NOMEM, "out of memory");
  size_t *sd = sc + W, *rc = sd + W, *rd = rc + W, off = 0;
  for (int r = 0; r < W; r++) {
    sc[r] = (size_t)counts[r] * es, sd[r] = off, off += sc[r];
    rc[r] = mine, rd[r] = (size_t)r * mine;
  }
  void *buf;
  qg_status s = scratch(c, mine * (size_t)W, &buf);
  if (!s) s = c->be->alltoallv(c, send, sc, sd, buf, rc, rd);
  free(sc);
  if (s) return s;
  int r0 = 0;
  if (mode == QG_COMM_OVERWRITE) {
    QG_TRY(c->be->copy(c, recv, buf, mine));
    r0 = 1;
  }
  for (int r = r0; r < W; r++) QG_TRY(c->be->add(c, recv, recv, (char *)buf + (size_t)r * mine, counts[me], t));
  return QG_OK;
}

static qg_status allgather_raw(qg_comm *c, const void *send, void *recv, const int64_t *counts, qg_comm_dtype t) {
  int W = c->world;
  size_t es = qg_comm_dtype_size(t);
  size_t *rc = malloc(sizeof(size_t) * 2 * (size_t)W);
  if (!rc) return qg_fail(QG_ERR_NOMEM, "out of memory");
  size_t *rd = rc + W, off = 0;
  for (int r = 0; r < W; r++) rc[r] = (size_t)counts[r] * es, rd[r] = off, off += rc[r];
  qg_status s = c->be->allgatherv(c, send, rc[c->rank], recv, rc, rd);
  free(rc);
  return s;
}

/* counts of n elements over W blocks, or the caller's */
static qg_status block_counts(qg_comm *c, int64_t n, const int64_t *given, int64_t **out, int64_t *total) {
  int W = c->world;
  int64_t *k = malloc(sizeof(int64_t) * (size_t)W);
  if (!k) return qg_fail(QG_ERR_NOMEM, "out of memory");
  *total = 0;
  for (int r = 0; r < W; r++) {
    k[r] = given ? given[r] : n;
    if (k[r] < 0) {
      free(k);
      return qg_fail(QG_ERR_INTERNAL, "communication: negative block size");
    }
    *total += k[r];
  }
  *out = k;
  return QG_OK;
}

qg_status qg_comm_allreduce(qg_comm *c, void *buf, int64_t n, qg_comm_dtype t, qg_comm_op op) {
  int W = c->world;
  size_t es = qg_comm_dtype_size(t);
  int64_t t0 = op_begin(c, QG_COMM_OP_ALLREDUCE);
  qg_status s = QG_OK;
  if (op == QG_COMM_AVG && t != QG_COMM_F32 && t != QG_COMM_F64)
    s = qg_fail(QG_ERR_UNSUPPORTED, "an average needs a floating type");
  if (!s && W > 1 && n > 0) {
    /* element-wise, so how the blocks are cut does not change any sum */
    int64_t *k = malloc(sizeof(int64_t) * (size_t)W), off = 0, mine_off = 0;
    void *mine = NULL;
    if (!k) s = qg_fail(QG_ERR_NOMEM, "out of memory");
    for (int r = 0; r < W && !s; r++) {
      k[r] = n / W + (r < n % W);
      if (r == c->rank) mine_off = off;
      off += k[r];
    }
    if (!s) s = c->be->alloc(c, &mine, (size_t)k[c->rank] * es);
    if (!s) s = reduce_scatter_raw(c, buf, mine, k, t, QG_COMM_OVERWRITE);
    if (!s && op == QG_COMM_AVG) s = c->be->divide(c, mine, k[c->rank], t, W);
    if (!s) s = c->be->copy(c, (char *)buf + (size_t)mine_off * es, mine, (size_t)k[c->rank] * es);
    if (!s) s = allgather_raw(c, (char *)buf + (size_t)mine_off * es, buf, k, t);
    if (mine) c->be->free(c, mine);
    free(k);
  }
  return op_end(c, QG_COMM_OP_ALLREDUCE, t0, (size_t)n * es, s);
}

qg_status qg_comm_reduce_scatter(qg_comm *c, const void *send, void *recv, int64_t n, const int64_t *counts,
                                 qg_comm_dtype t, int mode) {
  int64_t t0 = op_begin(c, QG_COMM_OP_REDUCE_SCATTER), *k = NULL, total = 0;
  qg_status s = block_counts(c, n, counts, &k, &total);
  if (!s && t == QG_COMM_U8) s = qg_fail(QG_ERR_UNSUPPORTED, "bytes cannot be summed");
  if (!s) s = reduce_scatter_raw(c, send, recv, k, t, mode);
  free(k);
  return op_end(c, QG_COMM_OP_REDUCE_SCATTER, t0, (size_t)total * qg_comm_dtype_size(t), s);
}

qg_status qg_comm_allgather(qg_comm *c, const void *send, void *recv, int64_t n, const int64_t *counts,
                            qg_comm_dtype t) {
  int64_t t0 = op_begin(c, QG_COMM_OP_ALLGATHER), *k = NULL, total = 0;
  qg_status s = block_counts(c, n, counts, &k, &total);
  if (!s) s = allgather_raw(c, send, recv, k, t);
  free(k);
  return op_end(c, QG_COMM_OP_ALLGATHER, t0, (size_t)total * qg_comm_dtype_size(t), s);
}

qg_status qg_comm_broadcast(qg_comm *c, void *buf, size_t bytes, int root) {
  int64_t t0 = op_begin(c, QG_COMM_OP_BROADCAST);
  qg_status s = root < 0 || root >= c->world ? qg_fail(QG_ERR_INTERNAL, "broadcast from rank %d", root) : QG_OK;
  if (!s && c->world > 1) s = c->be->broadcast(c, buf, bytes, root);
  return op_end(c, QG_COMM_OP_BROADCAST, t0, bytes, s);
}

qg_status qg_comm_barrier(qg_comm *c) {
  int64_t t0 = op_begin(c, QG_COMM_OP_BARRIER);
  qg_status s = c->world > 1 ? c->be->barrier(c) : QG_OK;
  return op_end(c, QG_COMM_OP_BARRIER, t0, 0, s);
}

/* ---- agreement ---------------------------------------------------------------------------- */

/* The small exchanges below from host memory: staged through backend memory when that is
 * the device. */
static qg_status gather_host(qg_comm *c, const void *mine, size_t bytes, void *all) {
  if (!c->be->on_device) return qg_comm_allgather(c, mine, all, (int64_t)bytes, NULL, QG_COMM_U8);
  void *d = NULL;
  size_t total = bytes * (size_t)c->world;
  QG_TRY(c->be->alloc(c, &d, total));
  char *at = (char *)d + bytes * (size_t)c->rank;
  qg_status s = c->be->to_backend(c, at, mine, bytes);
  if (!s) s = qg_comm_allgather(c, at, d, (int64_t)bytes, NULL, QG_COMM_U8);
  if (!s) s = c->be->to_host(c, all, d, total);
  c->be->free(c, d);
  return s;
}

qg_status qg_comm_check_same(qg_comm *c, const char *label, const void *data, size_t n) {
  uint8_t d[32];
  qg_sha256 h;
  qg_sha256_init(&h);
  qg_sha256_update(&h, data, n);
  qg_sha256_final(&h, d);
  if (c->world == 1) return QG_OK;
  uint8_t *all = malloc(32 * (size_t)c->world);
  if (!all) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = gather_host(c, d, 32, all);
  for (int r = 1; r < c->world && !s; r++)
    if (memcmp(all + 32 * r, all, 32)) {
      char a[65], b[65];
      qg_sha256_hex(all + 32 * r, a);
      qg_sha256_hex(all, b);
      s = qg_fail(QG_ERR_INPUT, "%s differs on rank %d of %d (its sha256 %.12s..., rank 0's %.12s...)", label, r,
                  c->world, a, b);
    }
  free(all);
  return s;
}

qg_status qg_comm_check_same_i64(qg_comm *c, const char *label, int64_t v) {
  if (c->world == 1) return QG_OK;
  int64_t *all = malloc(sizeof(int64_t) * (size_t)c->world);
  if (!all) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = gather_host(c, &v, sizeof v, all);
  for (int r = 1; r < c->world && !s; r++)
    if (all[r] != all[0])
      s = qg_fail(QG_ERR_INPUT, "%s differs on rank %d of %d: %lld there, %lld on rank 0", label, r, c->world,
                  (long long)all[r], (long long)all[0]);
  free(all);
  return s;
}

/* ---- counters ----------------------------------------------------------------------------- */

void qg_comm_get_stats(const qg_comm *c, qg_comm_stats *out) {
  if (c) *out = c->stats;
  else memset(out, 0, sizeof *out);
}
void qg_comm_reset_stats(qg_comm *c) { memset(&c->stats, 0, sizeof c->stats); }

int64_t qg_comm_stats_bytes(const qg_comm_stats *s) {
  int64_t b = 0;
  for (int k = 0; k < QG_COMM_OP_COUNT; k++) b += s->bytes[k];
  return b;
}
double qg_comm_stats_seconds(const qg_comm_stats *s) {
  double t = 0;
  for (int k = 0; k < QG_COMM_OP_COUNT; k++) t += s->seconds[k];
  return t;
}

double qg_comm_busbw_gbs(qg_comm_opkind k, int world, double bytes, double seconds) {
  if (seconds <= 0 || world < 1) return 0;
  double f = 1.0;
  if (k == QG_COMM_OP_ALLREDUCE) f = 2.0 * (world - 1) / world;
  else if (k == QG_COMM_OP_REDUCE_SCATTER || k == QG_COMM_OP_ALLGATHER) f = (double)(world - 1) / world;
  else if (k == QG_COMM_OP_BARRIER) f = 0;
  return bytes / seconds * f / 1e9;
}
