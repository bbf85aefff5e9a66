/* The training loss: softcap + log-softmax + cross-entropy and its gradient, per row of
 * logits (kernels/cpu/cpu_xent.h).
 *
 * The fast path (qg_cpu_xent_fwd_bwd) replaces the exact path's per-logit libm calls (one
 * tanhf and two fp64 exp per logit: a quarter of the quickstart model's training step) by
 * array passes: the softcap's tanh from one vectorised exp, the softmax numerators from
 * one more, each computed once and reused for the gradient. The sums stay in fp64. */
#include "kernels/cpu/cpu_xent.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "kernels/cpu/cpu_rows.h"
#include "kernels/cpu/cpu_softmax.h"

/* Below this |x| tanh is Cephes' odd polynomial (tanhf.c, S. Moshier): x + x^3 P(x^2);
 * above it 1 - 2 / (exp(2|x|) + 1) loses nothing to cancellation (tanh > 0.55). */
#define TANH_SPLIT 0.625f
#define TANH_P0 (-5.70498872745e-3f)
#define TANH_P1 2.06390887954e-2f
#define TANH_P2 (-5.37397155531e-2f)
#define TANH_P3 1.33314422036e-1f
#define TANH_P4 (-3.33332819422e-1f)

QG_CPU_CLONES void qg_cpu_vtanhf(float *t, const float *x, int64_t n, float *tmp) {
  for (int64_t i = 0; i < n; i++) tmp[i] = 2.0f * fabsf(x[i]);
  qg_cpu_vexpf(QG_ISA_BEST, tmp, tmp, n); /* +inf above 44.19: 1 - 2/inf = 1 below */
  /* both branches for every element, then a select: branch-free, so it vectorises */
  for (int64_t i = 0; i < n; i++) {
    float xi = x[i], s = xi * xi;
    float p = TANH_P0 * s + TANH_P1;
    p = p * s + TANH_P2;
    p = p * s + TANH_P3;
    p = p * s + TANH_P4;
    float small = p * s * xi + xi;
    /* in fp64 the only error left is exp's (<= 1.2e-7 relative, damped by 2e/(e+1)^2) */
    float big = (float)(1.0 - 2.0 / ((double)tmp[i] + 1.0));
    /* the select and the sign by bit masks (a ternary here stops GCC from vectorising) */
    uint32_t us, ub, ux, m;
    memcpy(&us, &small, 4), memcpy(&ub, &big, 4), memcpy(&ux, &xi, 4);
    m = 0u - (uint32_t)(fabsf(xi) < TANH_SPLIT);
    uint32_t r = (((us & m) | (ub & ~m)) & 0x7fffffffu) | (ux & 0x80000000u); /* -0 stays -0 */
    memcpy(&t[i], &r, 4); /* NaN in, NaN out: both branches are NaN */
  }
}

typedef struct {
  float *dl;
  const float *l;
  const int32_t *tgt;
  int V;
  float cap, scale;
  double *nll;    /* per row */
  void *scratch;  /* per thread: the exact path V doubles, the fast path 3 V floats */
} xent_ctx;

QG_CPU_CLONES static void xent_fast_task(void *c, int64_t r, int thread) {
  xent_ctx *x = c;
  int V = x->V;
  float *th = (float *)x->scratch + (size_t)thread * 3 * V, *e = th + V, *tmp = e + V;
  const float *l = x->l + r * V;
  float *dl = x->dl + r * V; /* may be l: l is read in full before dl is written */
  float cap = x->cap;
  for (int i = 0; i < V; i++) e[i] = l[i] / cap;
  qg_cpu_vtanhf(th, e, V, tmp);
  float mx = -INFINITY;
  for (int i = 0; i < V; i++) {
    e[i] = cap * th[i]; /* z, the softcapped logit */
    mx = e[i] > mx ? e[i] : mx;
  }
  int32_t t = x->tgt[r];
  float zt = e[t];
  for (int i = 0; i < V; i++) e[i] -= mx;
  qg_cpu_vexpf(QG_ISA_BEST, e, e, V);
  /* the sum without the target's term, so that p_t - 1 = -rest / sum has no cancellation
   * when the model is confident (p_t near 1) */
  float et = e[t];
  e[t] = 0.0f;
  double acc[4] = {0, 0, 0, 0}; /* four fixed lanes: the compiler may vectorise them */
  int i = 0;
  for (; i + 4 <= V; i += 4)
    for (int k = 0; k < 4; k++) acc[k] += e[i + k];
  for (; i < V; i++) acc[i & 3] += e[i];
  double rest = (acc[0] + acc[1]) + (acc[2] + acc[3]), sum = rest + (double)et;
  double lse = (double)mx + log(sum), inv = 1.0 / sum, sc = x->scale;
  x->nll[r] = lse - (double)zt;
  for (int j = 0; j < V; j++) {
    double h = th[j];
    dl[j] = (float)(sc * ((double)e[j] * inv) * (1.0 - h * h));
  }
  double h = th[t];
  dl[t] = (float)(sc * (-rest * inv) * (1.0 - h * h));
}

/* The exact path: libm per logit, fp64 throughout; the reference the fast path is tested
 * against (tests/test_xent.c). */
static void xent_exact_task(void *c, int64_t r, int thread) {
  xent_ctx *x = c;
  double *z = (double *)x->scratch + (size_t)thread * x->V;
  const float *l = x->l + r * x->V;
  float *dl = x->dl + r * x->V;
  double mx = -INFINITY;
  for (int i = 0; i < x->V; i++) {
    z[i] = x->cap * tanhf(l[i] / x->cap); /* as the forward and token_stats compute it */
    if (z[i] > mx) mx = z[i];
  }
  double sum = 0;
  for (int i = 0; i < x->V; i++) sum += exp(z[i] - mx);
  double lse = mx + log(sum);
  int32_t t = x->tgt[r];
  x->nll[r] = lse - z[t];
  for (int i = 0; i < x->V; i++) {
    double p = exp(z[i] - lse) - (i == t ? 1.0 : 0.0);
    double th = z[i] / x->cap;
    dl[i] = (float)(x->scale * p * (1.0 - th * th));
  }
}

static qg_status xent_run(int exact, float *dlogits, double *loss_sum, const float *logits, const int32_t *targets,
                          int64_t rows, int V, float softcap, float grad_scale) {
  size_t per = exact ? sizeof(double) * (size_t)V : sizeof(float) * 3 * (size_t)V;
  xent_ctx c = {dlogits, logits, targets, V, softcap, grad_scale, malloc(sizeof(double) * (size_t)(rows ? rows : 1)),
                malloc(per * (size_t)qg_threads())};
  if (!c.nll || !c.scratch) {
    free(c.nll);
    free(c.scratch);
    return qg_fail(QG_ERR_NOMEM, "xent: out of memory");
  }
  qg_parallel_for(rows, exact ? xent_exact_task : xent_fast_task, &c);
  double s = 0;
  for (int64_t r = 0; r < rows; r++) s += c.nll[r]; /* in row order: any thread count */
  *loss_sum = s;
  free(c.nll);
  free(c.scratch);
  return QG_OK;
}

qg_status qg_cpu_xent_fwd_bwd(const qg_ops *o, float *dlogits, double *loss_sum, const float *logits,
                              const int32_t *targets, int64_t rows, int V, float softcap, float grad_scale) {
  (void)o;
  return xent_run(0, dlogits, loss_sum, logits, targets, rows, V, softcap, grad_scale);
}

qg_status qg_cpu_xent_fwd_bwd_exact(float *dlogits, double *loss_sum, const float *logits, const int32_t *targets,
                                    int64_t rows, int V, float softcap, float grad_scale) {
  return xent_run(1, dlogits, loss_sum, logits, targets, rows, V, softcap, grad_scale);
}
