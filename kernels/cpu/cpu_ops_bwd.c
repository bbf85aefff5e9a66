/* The CPU backend's backward ops: the reference the trainer runs on and the twin every
 * future CUDA backward kernel is checked against.
 *
 * Determinism: every reduction (parameter gradients summed over rows) is owned by one
 * task that walks the rows in order, with tasks split over COLUMNS in fixed-width chunks.
 * The result is therefore bitwise the same for any thread count, which is what makes
 * `train --resume` continue a run bitwise. Column sums are accumulated in double. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "kernels/cpu/cpu_gemm.h"
#include "kernels/cpu/cpu_ops_bwd.h"
#include "kernels/cpu/cpu_rows.h"
#include "kernels/cpu/cpu_softmax.h"
#include "kernels/rope_table.h"

/* Columns per reduction task: small enough to feed 16 threads at d = 512. */
#define COL_CHUNK 32
/* Rows per task for row-independent ops (a fixed size, not derived from the pool). */
#define ROW_CHUNK 64

/* ---- row-independent ops ------------------------------------------------------------- */

typedef struct {
  int kind;
  float *dx;
  const float *dy, *x;
  int64_t rows, n; /* rows of `dim` (rmsnorm) or n elements (relu_pow) */
  int dim, accumulate;
  float eps, p;
} row_ctx;

enum { ROW_RMSNORM, ROW_RELU_POW };

QG_CPU_CLONES static void row_task(void *c, int64_t task, int thread) {
  (void)thread;
  row_ctx *r = c;
  if (r->kind == ROW_RMSNORM) {
    int64_t lo = task * ROW_CHUNK, hi = lo + ROW_CHUNK < r->rows ? lo + ROW_CHUNK : r->rows;
    int n = r->dim;
    for (int64_t i = lo; i < hi; i++) {
      const float *x = r->x + i * n, *dy = r->dy + i * n;
      float *dx = r->dx + i * n;
      float inv = qg_cpu_rms_inv(x, n, r->eps); /* the same 1/rms the forward computed */
      /* eight interleaved fp64 partial sums in a fixed tree, as qg_cpu_rms_inv: a single
       * running sum is one long dependency chain the compiler may not split */
      double dl[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int j = 0;
      for (; j + 8 <= n; j += 8)
        for (int l = 0; l < 8; l++) dl[l] += (double)dy[j + l] * ((double)x[j + l] * inv);
      for (; j < n; j++) dl[j & 7] += (double)dy[j] * ((double)x[j] * inv);
      double dot = ((dl[0] + dl[1]) + (dl[2] + dl[3])) + ((dl[4] + dl[5]) + (dl[6] + dl[7]));
      float m = (float)(dot / n);
      if (r->accumulate)
        for (int j = 0; j < n; j++) dx[j] += inv * (dy[j] - x[j] * inv * m);
      else
        for (int j = 0; j < n; j++) dx[j] = inv * (dy[j] - x[j] * inv * m);
    }
  } else {
    int64_t chunk = (int64_t)ROW_CHUNK * 1024;
    int64_t lo = task * chunk, hi = lo + chunk < r->n ? lo + chunk : r->n;
    if (r->p == 2.0f) {
      for (int64_t i = lo; i < hi; i++) r->dx[i] = r->x[i] > 0.0f ? r->dy[i] * 2.0f * r->x[i] : 0.0f;
    } else {
      for (int64_t i = lo; i < hi; i++)
        r->dx[i] = r->x[i] > 0.0f ? r->dy[i] * r->p * powf(r->x[i], r->p - 1.0f) : 0.0f;
    }
  }
}

qg_status qg_cpu_rmsnorm_bwd(const qg_ops *o, float *dx, const float *dy, const float *x, int64_t rows, int dim,
                             float eps, int accumulate) {
  (void)o;
  row_ctx c = {ROW_RMSNORM, dx, dy, x, rows, 0, dim, accumulate, eps, 0};
  qg_parallel_for((rows + ROW_CHUNK - 1) / ROW_CHUNK, row_task, &c);
  return QG_OK;
}

qg_status qg_cpu_relu_pow_bwd(const qg_ops *o, float *dx, const float *dy, const float *u, int64_t n, float p) {
  (void)o;
  row_ctx c = {ROW_RELU_POW, dx, dy, u, 0, n, 0, 0, 0, p};
  int64_t chunk = (int64_t)ROW_CHUNK * 1024;
  qg_parallel_for((n + chunk - 1) / chunk, row_task, &c);
  return QG_OK;
}

/* ---- column-owned reductions ---------------------------------------------------------- */

typedef struct {
  int kind;
  float *out, *out2;    /* activation gradients written per element */
  float *acc, *acc2;    /* parameter gradients (+=), per column */
  const float *g;       /* incoming gradient */
  const float *a, *b;   /* saved inputs */
  const float *p1, *p2; /* parameters */
  int64_t rows;
  int d, accumulate, hd;
} col_ctx;

enum { COL_RESID_MIX, COL_ADD_SCALED, COL_AFFINE, COL_HEAD_SCALE };

QG_CPU_CLONES static void col_task(void *c, int64_t task, int thread) {
  (void)thread;
  col_ctx *e = c;
  int d = e->d;
  int c0, c1;
  if (e->kind == COL_HEAD_SCALE) { /* one task per head: its hd columns */
    c0 = (int)task * e->hd;
    c1 = c0 + e->hd;
  } else {
    c0 = (int)task * COL_CHUNK;
    c1 = c0 + COL_CHUNK < d ? c0 + COL_CHUNK : d;
  }
  double s1[COL_CHUNK] = {0}, s2[COL_CHUNK] = {0}, sh = 0;
  for (int64_t i = 0; i < e->rows; i++) {
    const float *g = e->g + i * d;
    switch (e->kind) {
      case COL_RESID_MIX: { /* out = dx, out2 = dx0 (+=), acc = dmix */
        const float *x = e->a + i * d, *x0 = e->b + i * d;
        float *dx = e->out + i * d, *dx0 = e->out2 + i * d;
        for (int j = c0; j < c1; j++) {
          float gj = g[j];
          s1[j - c0] += (double)gj * x[j];
          s2[j - c0] += (double)gj * x0[j];
          dx0[j] += e->p1[d + j] * gj;
          dx[j] = e->p1[j] * gj;
        }
        break;
      }
      case COL_ADD_SCALED: { /* out = dy, acc = ds */
        const float *y = e->a + i * d;
        float *dy = e->out + i * d;
        for (int j = c0; j < c1; j++) {
          s1[j - c0] += (double)g[j] * y[j];
          if (e->accumulate)
            dy[j] += e->p1[j] * g[j];
          else
            dy[j] = e->p1[j] * g[j];
        }
        break;
      }
      case COL_AFFINE: { /* out = dx, acc = dscale, acc2 = dshift */
        const float *x = e->a + i * d;
        float *dx = e->out + i * d;
        for (int j = c0; j < c1; j++) {
          float gj = g[j];
          s1[j - c0] += (double)gj * x[j];
          s2[j - c0] += gj;
          dx[j] = gj * e->p1[j];
        }
        break;
      }
      case COL_HEAD_SCALE: { /* out = dx, acc = dgain[task] */
        const float *x = e->a + i * d;
        float *dx = e->out + i * d;
        float gain = e->p1[task];
        for (int j = c0; j < c1; j++) {
          float gj = g[j];
          sh += (double)gj * x[j];
          dx[j] = gj * gain;
        }
        break;
      }
    }
  }
  switch (e->kind) {
    case COL_RESID_MIX:
      for (int j = c0; j < c1; j++) {
        e->acc[j] += (float)s1[j - c0];
        e->acc[d + j] += (float)s2[j - c0];
      }
      break;
    case COL_ADD_SCALED:
      for (int j = c0; j < c1; j++) e->acc[j] += (float)s1[j - c0];
      break;
    case COL_AFFINE:
      for (int j = c0; j < c1; j++) {
        e->acc[j] += (float)s1[j - c0];
        e->acc2[j] += (float)s2[j - c0];
      }
      break;
    case COL_HEAD_SCALE:
      e->acc[task] += (float)sh;
      break;
  }
}

static void col_run(col_ctx *e) {
  int64_t tasks = e->kind == COL_HEAD_SCALE ? e->d / e->hd : (e->d + COL_CHUNK - 1) / COL_CHUNK;
  qg_parallel_for(tasks, col_task, e);
}

qg_status qg_cpu_resid_mix_bwd(const qg_ops *o, float *dx, float *dx0, float *dmix, const float *dy, const float *x,
                               const float *x0, const float *mix, int64_t rows, int d) {
  (void)o;
  col_ctx e = {COL_RESID_MIX, dx, dx0, dmix, NULL, dy, x, x0, mix, NULL, rows, d, 0, 0};
  col_run(&e);
  return QG_OK;
}

qg_status qg_cpu_add_scaled_bwd(const qg_ops *o, float *dy, float *ds, const float *dx, const float *y,
                                const float *s, int64_t rows, int d, int accumulate) {
  (void)o;
  col_ctx e = {COL_ADD_SCALED, dy, NULL, ds, NULL, dx, y, NULL, s, NULL, rows, d, accumulate, 0};
  col_run(&e);
  return QG_OK;
}

qg_status qg_cpu_affine_bwd(const qg_ops *o, float *dx, float *dscale, float *dshift, const float *dy,
                            const float *x, const float *scale, int64_t rows, int d) {
  (void)o;
  col_ctx e = {COL_AFFINE, dx, NULL, dscale, dshift, dy, x, NULL, scale, NULL, rows, d, 0, 0};
  col_run(&e);
  return QG_OK;
}

qg_status qg_cpu_head_scale_bwd(const qg_ops *o, float *dx, float *dgain, const float *dy, const float *x,
                                int64_t rows, int H, int hd, const float *gain) {
  (void)o;
  col_ctx e = {COL_HEAD_SCALE, dx, NULL, dgain, NULL, dy, x, NULL, gain, NULL, rows, H * hd, 0, hd};
  col_run(&e);
  return QG_OK;
}

/* demb rows are shared between positions holding the same token, so tasks own column
 * ranges and walk positions in order. */
typedef struct {
  float *demb;
  const float *dx;
  const int32_t *tok;
  int64_t n;
  int d;
} emb_ctx;

QG_CPU_CLONES static void emb_task(void *c, int64_t task, int thread) {
  (void)thread;
  emb_ctx *e = c;
  int c0 = (int)task * COL_CHUNK, c1 = c0 + COL_CHUNK < e->d ? c0 + COL_CHUNK : e->d;
  for (int64_t i = 0; i < e->n; i++) {
    float *dst = e->demb + (int64_t)e->tok[i] * e->d;
    const float *src = e->dx + i * e->d;
    for (int j = c0; j < c1; j++) dst[j] += src[j];
  }
}

qg_status qg_cpu_embed_bwd(const qg_ops *o, float *demb, const float *dx, const int32_t *tok, int64_t n, int d) {
  (void)o;
  emb_ctx e = {demb, dx, tok, n, d};
  qg_parallel_for((d + COL_CHUNK - 1) / COL_CHUNK, emb_task, &e);
  return QG_OK;
}

/* ---- matrix products ------------------------------------------------------------------ */

/* Both on the pool in fixed blocks (kernels/cpu/cpu_gemm.h) whose sizes follow the shape
 * only, never the thread count: about four blocks per product, since every block packs
 * its own copy of the operand it shares with the others (w for dx; x for dw, whose
 * reduction runs over the M rows). A weight of 64 rows (c_k, c_v) splits over its
 * columns instead. */
static int four_blocks(int64_t n, int least) {
  int64_t b = ((n + 3) / 4 + 15) / 16 * 16; /* a multiple of 16: the same kernel path */
  return (int)(b < least ? least : b);
}

qg_status qg_cpu_matmul_bwd_x(const qg_ops *o, float *dx, const float *dy, const float *w, int64_t M, int K, int N,
                              int accumulate) {
  (void)o;
  if (M <= 0 || K <= 0) return QG_OK;
  if (M > INT32_MAX) return qg_fail(QG_ERR_UNSUPPORTED, "cpu matmul_bwd_x: %lld rows exceed BLAS int range", (long long)M);
  if (N <= 0) { /* an empty product: dx = 0 unless accumulating */
    if (!accumulate) memset(dx, 0, sizeof(float) * (size_t)M * (size_t)K);
    return QG_OK;
  }
  qg_cpu_sgemm_blocked(0, 0, (int)M, K, N, 1.0f, dy, N, w, K, accumulate ? 1.0f : 0.0f, dx, K, four_blocks(M, 256), 0);
  return QG_OK;
}

qg_status qg_cpu_matmul_bwd_w(const qg_ops *o, float *dw, const float *dy, const float *x, int64_t M, int K, int N) {
  (void)o;
  if (M <= 0 || K <= 0 || N <= 0) return QG_OK;
  if (M > INT32_MAX) return qg_fail(QG_ERR_UNSUPPORTED, "cpu matmul_bwd_w: %lld rows exceed BLAS int range", (long long)M);
  qg_cpu_sgemm_blocked(1, 0, N, K, (int)M, 1.0f, dy, N, x, K, 1.0f, dw, K, four_blocks(N, 64), N <= 64 ? 64 : 0);
  return QG_OK;
}

/* ---- rope: the transpose of a rotation is the rotation by the opposite angle ---------- */

typedef struct {
  float *x;
  int T, H, hd;
  const float *cos_t, *sin_t;
  int64_t rows;
} rope_ctx;

static void rope_task(void *c, int64_t task, int thread) {
  (void)thread;
  rope_ctx *r = c;
  int half = r->hd / 2;
  int64_t lo = task * ROW_CHUNK, hi = lo + ROW_CHUNK < r->rows ? lo + ROW_CHUNK : r->rows;
  for (int64_t i = lo; i < hi; i++) {
    int t = (int)(i % r->T);
    const float *cs = r->cos_t + (int64_t)t * half, *sn = r->sin_t + (int64_t)t * half;
    for (int h = 0; h < r->H; h++) {
      float *v = r->x + (i * r->H + h) * r->hd;
      for (int j = 0; j < half; j++) {
        float g1 = v[j], g2 = v[j + half];
        v[j] = g1 * cs[j] - g2 * sn[j];
        v[j + half] = g1 * sn[j] + g2 * cs[j];
      }
    }
  }
}

qg_status qg_cpu_rope_bwd(const qg_ops *o, float *dx, int64_t B, int T, int H, int hd, float base) {
  (void)o;
  int half = hd / 2;
  float *tab = malloc(sizeof *tab * (size_t)T * (size_t)half * 2);
  if (!tab) return qg_fail(QG_ERR_NOMEM, "cpu rope_bwd: out of memory");
  qg_rope_table_fill(tab, T, hd, base); /* the forward's table */
  rope_ctx c = {dx, T, H, hd, tab, tab + (int64_t)T * half, B * T};
  qg_parallel_for((B * T + ROW_CHUNK - 1) / ROW_CHUNK, rope_task, &c);
  free(tab);
  return QG_OK;
}

/* ---- attention ------------------------------------------------------------------------ */

#define ATT_QBLOCK 64

typedef struct {
  float *dq, *dk, *dv;
  const float *dy, *q, *k, *v, *y;
  int T, H, KVH, hd;
  float *scratch; /* per thread: P and dS, each [QBLOCK, T] */
} attb_ctx;

/* One task per (sequence b, kv head): every query head of the group, every block of
 * queries. Per block: P = softmax(scale q k^T) (recomputed, causal), dP = dy v^T,
 * dS = P * (dP - rowsum(dy * y)), dq = scale dS k, dk += scale dS^T q, dv += P^T dy. */
static void attb_task(void *c, int64_t task, int thread) {
  attb_ctx *a = c;
  int kvh = (int)(task % a->KVH);
  int64_t b = task / a->KVH;
  int T = a->T, hd = a->hd, group = a->H / a->KVH;
  int qs = a->H * hd, ks = a->KVH * hd;
  float scale = 1.0f / sqrtf((float)hd);
  float *P = a->scratch + (size_t)2 * ATT_QBLOCK * T * (size_t)thread, *dS = P + (size_t)ATT_QBLOCK * T;
  const float *kp = a->k + b * T * ks + kvh * hd, *vp = a->v + b * T * ks + kvh * hd;
  float *dkp = a->dk + b * T * ks + kvh * hd, *dvp = a->dv + b * T * ks + kvh * hd;
  for (int t = 0; t < T; t++) {
    memset(dkp + (int64_t)t * ks, 0, sizeof(float) * (size_t)hd);
    memset(dvp + (int64_t)t * ks, 0, sizeof(float) * (size_t)hd);
  }
  for (int hh = 0; hh < group; hh++) {
    int h = kvh * group + hh;
    for (int t0 = 0; t0 < T; t0 += ATT_QBLOCK) {
      int t1 = t0 + ATT_QBLOCK < T ? t0 + ATT_QBLOCK : T;
      int nq = t1 - t0, nk = t1;
      const float *qp = a->q + (b * T + t0) * qs + h * hd;
      const float *dyp = a->dy + (b * T + t0) * qs + h * hd, *yp = a->y + (b * T + t0) * qs + h * hd;
      float *dqp = a->dq + (b * T + t0) * qs + h * hd;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, scale, qp, qs, kp, ks, 0.0f, P, nk);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, nk, hd, 1.0f, dyp, qs, vp, ks, 0.0f, dS, nk);
      for (int i = 0; i < nq; i++) {
        float *pr = P + (size_t)i * nk, *sr = dS + (size_t)i * nk;
        int n = t0 + i + 1;
        float inv = qg_cpu_softmax_exp(pr, n); /* the forward's probabilities, recomputed */
        double D = 0;
        for (int j = 0; j < hd; j++) D += (double)dyp[(int64_t)i * qs + j] * yp[(int64_t)i * qs + j];
        for (int s = 0; s < n; s++) {
          pr[s] *= inv;
          sr[s] = pr[s] * (sr[s] - (float)D);
        }
        for (int s = n; s < nk; s++) pr[s] = sr[s] = 0.0f;
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nq, hd, nk, scale, dS, nk, kp, ks, 0.0f, dqp, qs);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, scale, dS, nk, qp, qs, 1.0f, dkp, ks);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, nk, hd, nq, 1.0f, P, nk, dyp, qs, 1.0f, dvp, ks);
    }
  }
}

qg_status qg_cpu_attention_bwd(const qg_ops *o, float *dq, float *dk, float *dv, const float *dy, const float *q,
                               const float *k, const float *v, const float *y, int64_t B, int T, int H, int KVH,
                               int hd) {
  (void)o;
  if (KVH <= 0 || H % KVH != 0)
    return qg_fail(QG_ERR_INPUT, "attention_bwd: %d heads not a multiple of %d kv heads", H, KVH);
  attb_ctx c = {dq, dk, dv, dy, q, k, v, y, T, H, KVH, hd, NULL};
  c.scratch = malloc(sizeof(float) * 2 * (size_t)ATT_QBLOCK * T * (size_t)qg_threads());
  if (!c.scratch) return qg_fail(QG_ERR_NOMEM, "attention_bwd: out of memory for scores");
  int blas_threads = openblas_get_num_threads();
  openblas_set_num_threads(1);
  qg_parallel_for(B * KVH, attb_task, &c);
  openblas_set_num_threads(blas_threads);
  free(c.scratch);
  return QG_OK;
}
