/* The CPU reference backend: readable fp32 loops over the core thread pool, OpenBLAS for
 * matrix products. Every CUDA op is checked against these. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "core/threadpool.h"
#include "kernels/cpu/cpu_hessian.h"
#include "kernels/cpu/cpu_ops_bwd.h"
#include "kernels/cpu/cpu_xent.h"
#include "kernels/cpu/cpu_rows.h"
#include "kernels/cpu/cpu_softmax.h"
#include "kernels/ops.h"
#include "kernels/rope_table.h"

static qg_status cpu_alloc(const qg_ops *o, void **p, size_t bytes) {
  (void)o;
  *p = malloc(bytes ? bytes : 1);
  return *p ? QG_OK : qg_fail(QG_ERR_NOMEM, "cpu: cannot allocate %zu bytes", bytes);
}
static void cpu_free(const qg_ops *o, void *p) {
  (void)o;
  free(p);
}
static qg_status cpu_copy(const qg_ops *o, void *dst, const void *src, size_t bytes) {
  (void)o;
  if (bytes) memmove(dst, src, bytes);
  return QG_OK;
}

static qg_status cpu_embed(const qg_ops *o, float *x, const float *emb, const int32_t *tok, int64_t n, int d) {
  (void)o;
  for (int64_t i = 0; i < n; i++) memcpy(x + i * d, emb + (int64_t)tok[i] * d, (size_t)d * sizeof *x);
  return QG_OK;
}

/* ---- row-wise ops over the thread pool ---------------------------------------------- */

typedef struct {
  float *y;
  const float *x;
  int dim;
  float eps;
  int64_t rows, chunk;
} rms_ctx;

static void rms_task(void *c, int64_t task, int thread) {
  (void)thread;
  rms_ctx *r = c;
  int64_t lo = task * r->chunk, hi = lo + r->chunk < r->rows ? lo + r->chunk : r->rows;
  for (int64_t i = lo; i < hi; i++) {
    const float *x = r->x + i * r->dim;
    float *y = r->y + i * r->dim;
    float inv = qg_cpu_rms_inv(x, r->dim, r->eps);
    for (int j = 0; j < r->dim; j++) y[j] = x[j] * inv;
  }
}

static int64_t n_chunks(int64_t rows, int64_t *chunk) {
  int64_t t = qg_threads() * 4;
  *chunk = (rows + t - 1) / t;
  if (*chunk < 1) *chunk = 1;
  return (rows + *chunk - 1) / *chunk;
}

static qg_status cpu_rmsnorm(const qg_ops *o, float *y, const float *x, int64_t rows, int dim, float eps) {
  (void)o;
  rms_ctx c = {y, x, dim, eps, rows, 0};
  qg_parallel_for(n_chunks(rows, &c.chunk), rms_task, &c);
  return QG_OK;
}

typedef struct {
  float *y;
  const float *x, *w;
  int64_t M, chunk;
  int K, N;
} mm_ctx;

static void mm_task(void *c, int64_t task, int thread) {
  (void)thread;
  mm_ctx *m = c;
  int64_t lo = task * m->chunk, hi = lo + m->chunk < m->M ? lo + m->chunk : m->M;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(hi - lo), m->N, m->K, 1.0f, m->x + lo * m->K, m->K, m->w,
              m->K, 0.0f, m->y + lo * m->N, m->N);
}

/* Rows are split over the core pool and each block runs single-threaded BLAS: OpenBLAS's
 * own workers would otherwise spin (sched_yield) while the pool runs the other ops,
 * stealing a core from them. Each output row is computed by exactly one sgemm call whose
 * blocking over K does not depend on the split, so results do not depend on it either. */
static qg_status cpu_matmul(const qg_ops *o, float *y, const float *x, const float *w, int64_t M, int K, int N) {
  (void)o;
  if (M <= 0 || N <= 0) return QG_OK;
  if (M > INT32_MAX) return qg_fail(QG_ERR_UNSUPPORTED, "cpu matmul: %lld rows exceed BLAS int range", (long long)M);
  int T = qg_threads();
  mm_ctx c = {y, x, w, M, 0, K, N};
  /* blocks of at least 64 rows, a multiple of 16 so every block takes the same kernel path */
  c.chunk = ((M + T - 1) / T + 15) / 16 * 16;
  if (c.chunk < 64) c.chunk = 64;
  int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  qg_parallel_for((M + c.chunk - 1) / c.chunk, mm_task, &c);
  openblas_set_num_threads(blas_threads);
  return QG_OK;
}

typedef struct {
  float *x;
  int T, H, hd;
  const float *cos_t, *sin_t; /* [T, hd/2] */
  int64_t rows, chunk;
} rope_ctx;

static void rope_task(void *c, int64_t task, int thread) {
  (void)thread;
  rope_ctx *r = c;
  int half = r->hd / 2;
  int64_t lo = task * r->chunk, hi = lo + r->chunk < r->rows ? lo + r->chunk : r->rows;
  for (int64_t i = lo; i < hi; i++) {
    int t = (int)(i % r->T);
    const float *cs = r->cos_t + (int64_t)t * half, *sn = r->sin_t + (int64_t)t * half;
    for (int h = 0; h < r->H; h++) {
      float *v = r->x + (i * r->H + h) * r->hd;
      for (int j = 0; j < half; j++) {
        float x1 = v[j], x2 = v[j + half];
        v[j] = x1 * cs[j] + x2 * sn[j];
        v[j + half] = x1 * (-sn[j]) + x2 * cs[j];
      }
    }
  }
}

static qg_status cpu_rope(const qg_ops *o, float *x, int64_t B, int T, int H, int hd, float base) {
  (void)o;
  int half = hd / 2;
  float *tab = malloc(sizeof *tab * (size_t)T * (size_t)half * 2);
  if (!tab) return qg_fail(QG_ERR_NOMEM, "cpu rope: out of memory");
  qg_rope_table_fill(tab, T, hd, base);
  rope_ctx c = {x, T, H, hd, tab, tab + (int64_t)T * half, B * T, 0};
  qg_parallel_for(n_chunks(B * T, &c.chunk), rope_task, &c);
  free(tab);
  return QG_OK;
}


/* ---- attention: one task per (sequence, head, block of queries) ---------------------- */

#define QG_ATT_QBLOCK 64

typedef struct {
  float *y;
  const float *q, *k, *v;
  int T, H, KVH, hd;
  int n_qblocks;
  float *scratch; /* per thread: scores [QBLOCK, T] */
} att_ctx;

/* Scores for a block of queries against every key it may see, by one small sgemm; the
 * causal mask and softmax numerators row by row; then the weighted sum of values by a
 * second sgemm, normalised afterwards.
 * Only QBLOCK x T scores exist per thread at any time. */
static void att_task(void *c, int64_t task, int thread) {
  att_ctx *a = c;
  int qb = (int)(task % a->n_qblocks);
  int64_t bh = task / a->n_qblocks;
  int h = (int)(bh % a->H);
  int64_t b = bh / a->H;
  int kvh = h / (a->H / a->KVH), hd = a->hd, T = a->T;
  int t0 = qb * QG_ATT_QBLOCK, t1 = t0 + QG_ATT_QBLOCK < T ? t0 + QG_ATT_QBLOCK : T;
  int nq = t1 - t0, nk = t1; /* keys 0 .. t1-1 are visible to some query of this block */
  int qs = a->H * hd, ks = a->KVH * hd;
  float *S = a->scratch + (size_t)QG_ATT_QBLOCK * T * (size_t)thread;
  const float *qp = a->q + (b * T + t0) * qs + h * hd;
  const float *kp = a->k + b * T * ks + kvh * hd, *vp = a->v + b * T * ks + kvh * hd;
  float *yp = a->y + (b * T + t0) * qs + h * hd;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, 1.0f / sqrtf((float)hd), qp, qs, kp, ks, 0.0f, S,
              nk);
  float inv[QG_ATT_QBLOCK];
  for (int i = 0; i < nq; i++) {
    float *row = S + (size_t)i * nk;
    int n = t0 + i + 1; /* causal: keys 0 .. t0+i */
    inv[i] = qg_cpu_softmax_exp(row, n);
    for (int s = n; s < nk; s++) row[s] = 0.0f;
  }
  /* the unnormalised weights times the values, then each output row times 1 / its sum:
   * hd multiplies a row instead of one per visible key */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, 1.0f, S, nk, vp, ks, 0.0f, yp, qs);
  for (int i = 0; i < nq; i++)
    for (int d = 0; d < hd; d++) yp[(size_t)i * qs + d] *= inv[i];
}

static qg_status cpu_attention(const qg_ops *o, float *y, const float *q, const float *k, const float *v, int64_t B,
                               int T, int H, int KVH, int hd) {
  (void)o;
  if (KVH <= 0 || H % KVH != 0) return qg_fail(QG_ERR_INPUT, "attention: %d heads not a multiple of %d kv heads", H, KVH);
  att_ctx c = {y, q, k, v, T, H, KVH, hd, (T + QG_ATT_QBLOCK - 1) / QG_ATT_QBLOCK, NULL};
  c.scratch = malloc(sizeof(float) * (size_t)QG_ATT_QBLOCK * T * (size_t)qg_threads());
  if (!c.scratch) return qg_fail(QG_ERR_NOMEM, "attention: out of memory for scores");
  /* the pool supplies the parallelism here; BLAS runs single-threaded inside each task */
  int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  qg_parallel_for(B * H * c.n_qblocks, att_task, &c);
  openblas_set_num_threads(blas_threads);
  free(c.scratch);
  return QG_OK;
}

/* ---- elementwise, split into row chunks over the pool -------------------------------- */

typedef struct {
  int kind;
  float *x;
  const float *y, *a, *b;
  int d;
  float p;
  int64_t rows, chunk;
} ew_ctx;

enum { EW_RELU_POW, EW_RESID_MIX, EW_ADD_SCALED, EW_AFFINE, EW_HEAD_SCALE };

static void ew_task(void *c, int64_t task, int thread) {
  (void)thread;
  ew_ctx *e = c;
  int64_t lo = task * e->chunk, hi = lo + e->chunk < e->rows ? lo + e->chunk : e->rows;
  int d = e->d;
  for (int64_t i = lo; i < hi; i++) {
    float *x = e->x + i * d;
    switch (e->kind) {
      case EW_RELU_POW:
        if (e->p == 2.0f) {
          int c2 = 0;
#ifdef __SSE2__
          /* max(x, 0) is x > 0 ? x : 0 exactly (NaN and -0 give 0), which the compiler
           * does not vectorise from the comparison by itself */
          for (; c2 + 4 <= d; c2 += 4) {
            __m128 r = _mm_max_ps(_mm_loadu_ps(x + c2), _mm_setzero_ps());
            _mm_storeu_ps(x + c2, _mm_mul_ps(r, r));
          }
#endif
          for (; c2 < d; c2++) {
            float r = x[c2] > 0.0f ? x[c2] : 0.0f;
            x[c2] = r * r;
          }
        } else {
          for (int c2 = 0; c2 < d; c2++) x[c2] = x[c2] > 0.0f ? powf(x[c2], e->p) : 0.0f;
        }
        break;
      case EW_RESID_MIX: {
        const float *x0 = e->y + i * d;
        for (int c2 = 0; c2 < d; c2++) x[c2] = e->a[c2] * x[c2] + e->a[d + c2] * x0[c2];
        break;
      }
      case EW_ADD_SCALED: {
        const float *y = e->y + i * d;
        for (int c2 = 0; c2 < d; c2++) x[c2] += e->a[c2] * y[c2];
        break;
      }
      case EW_AFFINE:
        for (int c2 = 0; c2 < d; c2++) x[c2] = x[c2] * e->a[c2] + e->b[c2];
        break;
      case EW_HEAD_SCALE: { /* d = H * hd here; a = gain per head; p = hd */
        int hd = (int)e->p;
        for (int h = 0; h < d / hd; h++) {
          float g = e->a[h], *xh = x + h * hd;
          for (int j = 0; j < hd; j++) xh[j] *= g;
        }
        break;
      }
    }
  }
}

static void ew_run(ew_ctx *e) { qg_parallel_for(n_chunks(e->rows, &e->chunk), ew_task, e); }

static qg_status cpu_head_scale(const qg_ops *o, float *x, int64_t rows, int H, int hd, const float *gain) {
  (void)o;
  ew_ctx e = {EW_HEAD_SCALE, x, NULL, gain, NULL, H * hd, (float)hd, rows, 0};
  ew_run(&e);
  return QG_OK;
}

static qg_status cpu_relu_pow(const qg_ops *o, float *x, int64_t n, float p) {
  (void)o;
  /* viewed as rows of 1024 (and a tail row) so the pool can split it */
  int64_t d = 1024, rows = n / d;
  ew_ctx e = {EW_RELU_POW, x, NULL, NULL, NULL, (int)d, p, rows, 0};
  ew_run(&e);
  if (n % d) {
    ew_ctx t = {EW_RELU_POW, x + rows * d, NULL, NULL, NULL, (int)(n % d), p, 1, 1};
    ew_task(&t, 0, 0);
  }
  return QG_OK;
}

static qg_status cpu_resid_mix(const qg_ops *o, float *x, const float *x0, const float *mix, int64_t rows, int d) {
  (void)o;
  ew_ctx e = {EW_RESID_MIX, x, x0, mix, NULL, d, 0, rows, 0};
  ew_run(&e);
  return QG_OK;
}

static qg_status cpu_add_scaled(const qg_ops *o, float *x, const float *y, const float *s, int64_t rows, int d) {
  (void)o;
  ew_ctx e = {EW_ADD_SCALED, x, y, s, NULL, d, 0, rows, 0};
  ew_run(&e);
  return QG_OK;
}

static qg_status cpu_affine(const qg_ops *o, float *x, const float *scale, const float *shift, int64_t rows, int d) {
  (void)o;
  ew_ctx e = {EW_AFFINE, x, NULL, scale, shift, d, 0, rows, 0};
  ew_run(&e);
  return QG_OK;
}

/* ---- logits -> per-token statistics -------------------------------------------------- */

typedef struct {
  const float *a, *b;
  const int32_t *targets;
  int V;
  float cap;
  qg_token_stat *out;
  double *scratch; /* per thread: 2 * V doubles */
} stats_ctx;

/* log-softmax of softcapped logits into lp (fp64); returns the argmax. */
static int32_t log_softmax_capped(const float *z, int V, float cap, double *lp) {
  double mx = -INFINITY;
  int32_t arg = 0;
  for (int i = 0; i < V; i++) {
    float c = cap * tanhf(z[i] / cap);
    lp[i] = c;
    if (lp[i] > mx) {
      mx = lp[i];
      arg = i;
    }
  }
  double sum = 0;
  for (int i = 0; i < V; i++) sum += exp(lp[i] - mx);
  double lse = mx + log(sum);
  for (int i = 0; i < V; i++) lp[i] -= lse;
  return arg;
}

/* Row r of b against a's log-softmax la (row r of a, already in la): o's b fields. */
static void stats_against(const stats_ctx *s, int64_t r, const float *b, const double *la, double *lb, qg_token_stat *o) {
  int32_t tgt = s->targets[r];
  o->top_b = log_softmax_capped(b + r * s->V, s->V, s->cap, lb);
  o->nll_b = -lb[tgt];
  o->p_b = exp(lb[tgt]);
  double k = 0;
  for (int i = 0; i < s->V; i++) k += exp(la[i]) * (la[i] - lb[i]);
  o->kld = k;
}

static void stats_own(const stats_ctx *s, int64_t r, double *la, qg_token_stat *o) {
  int32_t tgt = s->targets[r];
  o->top_a = log_softmax_capped(s->a + r * s->V, s->V, s->cap, la);
  o->nll_a = -la[tgt];
  o->p_a = exp(la[tgt]);
}

static void stats_task(void *c, int64_t r, int thread) {
  stats_ctx *s = c;
  double *la = s->scratch + (size_t)thread * 2 * s->V, *lb = la + s->V;
  qg_token_stat *o = &s->out[r];
  stats_own(s, r, la, o);
  if (!s->b) {
    o->nll_b = o->kld = o->p_b = 0;
    o->top_b = -1;
    return;
  }
  stats_against(s, r, s->b, la, lb, o);
}

typedef struct {
  stats_ctx s;
  const float *const *bs;
  int nb;
  int64_t stride;
} stats_many_ctx;

static void stats_many_task(void *c, int64_t r, int thread) {
  stats_many_ctx *m = c;
  double *la = m->s.scratch + (size_t)thread * 2 * m->s.V, *lb = la + m->s.V;
  qg_token_stat own;
  stats_own(&m->s, r, la, &own);
  for (int k = 0; k < m->nb; k++) {
    qg_token_stat *o = &m->s.out[k * m->stride + r];
    o->top_a = own.top_a, o->nll_a = own.nll_a, o->p_a = own.p_a;
    stats_against(&m->s, r, m->bs[k], la, lb, o);
  }
}

static qg_status cpu_token_stats_many(const qg_ops *o, const float *a, const float *const *bs, int nb,
                                      const int32_t *targets, int64_t rows, int V, float softcap, qg_token_stat *out,
                                      int64_t stride) {
  (void)o;
  stats_many_ctx c = {{a, NULL, targets, V, softcap, out, malloc(sizeof(double) * 2 * (size_t)V * (size_t)qg_threads())},
                      bs, nb, stride};
  if (!c.s.scratch) return qg_fail(QG_ERR_NOMEM, "token stats: out of memory");
  qg_parallel_for(rows, stats_many_task, &c);
  free(c.s.scratch);
  return QG_OK;
}

static qg_status cpu_token_stats(const qg_ops *o, const float *a, const float *b, const int32_t *targets, int64_t rows,
                                 int V, float softcap, qg_token_stat *out) {
  (void)o;
  stats_ctx c = {a, b, targets, V, softcap, out, malloc(sizeof(double) * 2 * (size_t)V * (size_t)qg_threads())};
  if (!c.scratch) return qg_fail(QG_ERR_NOMEM, "token stats: out of memory");
  qg_parallel_for(rows, stats_task, &c);
  free(c.scratch);
  return QG_OK;
}

static const qg_ops cpu_ops = {
    .name = "cpu",
    .kind = QG_BACKEND_CPU,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .upload = cpu_copy,
    .download = cpu_copy,
    .copy = cpu_copy,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .rope = cpu_rope,
    .head_scale = cpu_head_scale,
    .attention = cpu_attention,
    .relu_pow = cpu_relu_pow,
    .resid_mix = cpu_resid_mix,
    .add_scaled = cpu_add_scaled,
    .affine = cpu_affine,
    .token_stats = cpu_token_stats,
    .token_stats_many = cpu_token_stats_many,
    /* calibration sums: kernels/cpu/cpu_hessian.c */
    .hacc_create = qg_cpu_hacc_create,
    .hacc_add = qg_cpu_hacc_add,
    .hacc_read = qg_cpu_hacc_read,
    .hacc_free = qg_cpu_hacc_free,
    /* backward twins: kernels/cpu/cpu_ops_bwd.c */
    .embed_bwd = qg_cpu_embed_bwd,
    .rmsnorm_bwd = qg_cpu_rmsnorm_bwd,
    .matmul_bwd_x = qg_cpu_matmul_bwd_x,
    .matmul_bwd_w = qg_cpu_matmul_bwd_w,
    .rope_bwd = qg_cpu_rope_bwd,
    .head_scale_bwd = qg_cpu_head_scale_bwd,
    .attention_bwd = qg_cpu_attention_bwd,
    .relu_pow_bwd = qg_cpu_relu_pow_bwd,
    .resid_mix_bwd = qg_cpu_resid_mix_bwd,
    .add_scaled_bwd = qg_cpu_add_scaled_bwd,
    .affine_bwd = qg_cpu_affine_bwd,
    .xent_fwd_bwd = qg_cpu_xent_fwd_bwd,
};

const qg_ops *qg_ops_cpu(void) { return &cpu_ops; }
