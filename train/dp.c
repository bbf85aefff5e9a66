/* Data parallelism of the CPU trainer: see train/dp.h for why results do not depend on the
 * world size. Buffers are packed in owner order (rank 0's tensors first, each rank's in
 * layout order), so one reduce-scatter and one all-gather move a step's gradients and
 * weights. */
#include <stdlib.h>
#include <string.h>

#include "train/dp.h"

typedef struct {
  int64_t cost;
  int index;
} cost_item;

static int by_cost_desc(const void *a, const void *b) {
  const cost_item *x = a, *y = b;
  if (x->cost != y->cost) return x->cost < y->cost ? 1 : -1;
  return x->index - y->index; /* ties: layout order, the same on every rank */
}

qg_status qg_dp_init(qg_trainer *t) {
  int W = qg_comm_world(t->comm), n = t->lay.n;
  t->rank = qg_comm_rank(t->comm), t->world = W;
  t->owner = calloc((size_t)n, sizeof *t->owner);
  t->pack_off = calloc((size_t)n, sizeof *t->pack_off);
  t->counts = calloc((size_t)W, sizeof *t->counts);
  int64_t *load = calloc((size_t)W, sizeof *load);
  cost_item *items = calloc((size_t)n, sizeof *items);
  qg_status s = QG_OK;
  if (!t->owner || !t->pack_off || !t->counts || !load || !items) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  if (!s) {
    /* Newton-Schulz costs about rows x cols x min(rows, cols) flops, but every rank also
     * moves its tensors' gradients: rows x cols balances both well enough for the
     * contest's near-square matrices. Adam tensors cost their size. */
    for (int i = 0; i < n; i++) items[i].cost = t->lay.p[i].numel, items[i].index = i;
    qsort(items, (size_t)n, sizeof *items, by_cost_desc);
    for (int k = 0; k < n; k++) {
      int best = 0;
      for (int r = 1; r < W; r++)
        if (load[r] < load[best]) best = r;
      t->owner[items[k].index] = best;
      load[best] += items[k].cost;
    }
    int64_t off = 0;
    for (int r = 0; r < W; r++)
      for (int i = 0; i < n; i++)
        if (t->owner[i] == r) t->pack_off[i] = off, off += t->lay.p[i].numel, t->counts[r] += t->lay.p[i].numel;
  }
  free(load), free(items);
  int64_t P = t->lay.total;
  if (!s) {
    t->gpack = malloc(sizeof(float) * (size_t)(P ? P : 1));
    t->wpack = malloc(sizeof(float) * (size_t)(P ? P : 1));
    t->gacc = malloc(sizeof(float) * (size_t)(t->counts[t->rank] + 1));
    if (!t->gpack || !t->wpack || !t->gacc) s = qg_fail(QG_ERR_NOMEM, "out of memory for the gradient exchange");
  }
  return s;
}

void qg_dp_free(qg_trainer *t) {
  free(t->owner), free(t->pack_off), free(t->counts), free(t->gpack), free(t->gacc), free(t->wpack);
  t->owner = NULL, t->pack_off = t->counts = NULL, t->gpack = t->gacc = t->wpack = NULL;
}

static int64_t my_start(const qg_trainer *t) {
  int64_t o = 0;
  for (int r = 0; r < t->rank; r++) o += t->counts[r];
  return o;
}

void qg_dp_begin(qg_trainer *t) { memset(t->gacc, 0, sizeof(float) * (size_t)t->counts[t->rank]); }

static void pack(const qg_trainer *t, const float *src, float *dst, int only_mine) {
  for (int i = 0; i < t->lay.n; i++) {
    const qg_gpt_param *p = &t->lay.p[i];
    if (!only_mine || t->owner[i] == t->rank)
      memcpy(dst + t->pack_off[i], src + p->offset, sizeof(float) * (size_t)p->numel);
  }
}

static void unpack(const qg_trainer *t, const float *src, float *dst, int only_mine) {
  for (int i = 0; i < t->lay.n; i++) {
    const qg_gpt_param *p = &t->lay.p[i];
    if (!only_mine || t->owner[i] == t->rank)
      memcpy(dst + p->offset, src + t->pack_off[i], sizeof(float) * (size_t)p->numel);
  }
}

qg_status qg_dp_fold_micro(qg_trainer *t) {
  pack(t, t->g, t->gpack, 0);
  return qg_comm_reduce_scatter(t->comm, t->gpack, t->gacc, 0, t->counts, QG_COMM_F32, QG_COMM_ACCUMULATE);
}

void qg_dp_grads_ready(qg_trainer *t) {
  int64_t o = my_start(t);
  for (int i = 0; i < t->lay.n; i++) {
    const qg_gpt_param *p = &t->lay.p[i];
    if (t->owner[i] == t->rank)
      memcpy(t->g + p->offset, t->gacc + (t->pack_off[i] - o), sizeof(float) * (size_t)p->numel);
  }
}

qg_status qg_dp_loss(qg_trainer *t, const double *losses, double *mean) {
  int W = t->world, la = t->cfg.grad_accum / W;
  double *all = malloc(sizeof(double) * (size_t)(W * la));
  if (!all) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = qg_comm_allgather(t->comm, losses, all, la, NULL, QG_COMM_F64);
  double sum = 0;
  for (int j = 0; j < la && !s; j++) /* global micro-batch order m = j * W + r */
    for (int r = 0; r < W; r++) sum += all[r * la + j];
  free(all);
  *mean = sum / t->cfg.grad_accum;
  return s;
}

/* One array's owned tensors to every rank. */
static qg_status gather_array(qg_trainer *t, float *a) {
  if (t->world == 1) return QG_OK; /* one rank owns everything: a is complete */
  pack(t, a, t->wpack, 1);
  int64_t o = my_start(t);
  QG_TRY(qg_comm_allgather(t->comm, t->wpack + o, t->wpack, 0, t->counts, QG_COMM_F32));
  unpack(t, t->wpack, a, 0);
  return QG_OK;
}

qg_status qg_dp_gather_weights(qg_trainer *t) { return gather_array(t, t->w); }

qg_status qg_dp_gather_state(qg_trainer *t) {
  QG_TRY(gather_array(t, t->muon_buf));
  QG_TRY(gather_array(t, t->adam_m));
  return gather_array(t, t->adam_v);
}

/* The stream moves by W x n on every rank; this rank reads only its span. */
qg_status qg_dp_take(qg_trainer *t, int64_t n, int32_t *out) {
  int64_t total = qg_shards_count(&t->data.shards);
  int64_t before = (int64_t)t->rank * n, after = (int64_t)(t->world - 1 - t->rank) * n;
  t->data.pos = (t->data.pos + before % total) % total;
  QG_TRY(qg_loader_take(&t->data, n, out));
  t->data.pos = (t->data.pos + after % total) % total;
  return QG_OK;
}
