/* Loss-based estimators: the Fisher score at layer outputs against a brute-force
 * computation (output gradients recovered from finite differences of the loss through the
 * inference forward, never the backward), and Hutchinson's trace against the exact trace
 * of a quadratic and the explicit Hessian diagonal of a tiny model's layer. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lab/sensitivity_est.h"
#include "tests/testlib.h"

static uint64_t rng = 7;

/* ---- Hutchinson on a quadratic 0.5 x^T A x: gradient A x, Hessian A ------------------- */

typedef struct {
  const double *A;
  int n;
  int calls;
} quad;

static qg_status quad_grad(void *ctx, const float *x, float *g) {
  quad *q = ctx;
  for (int i = 0; i < q->n; i++) {
    double s = 0;
    for (int j = 0; j < q->n; j++) s += q->A[i * q->n + j] * x[j];
    g[i] = (float)s;
  }
  q->calls++;
  return QG_OK;
}

static void test_hutchinson_quadratic(void **st) {
  (void)st;
  enum { N = 30, P = 4000 };
  double A[N * N];
  for (int i = 0; i < N; i++)
    for (int j = 0; j <= i; j++) A[i * N + j] = A[j * N + i] = qg_test_randf(&rng) + (i == j ? 2.0 : 0.0);
  float x[N], x0[N];
  for (int i = 0; i < N; i++) x[i] = x0[i] = qg_test_randf(&rng);
  const int64_t off[2] = {0, 10}, len[2] = {10, 15}; /* [25, 30) is outside every segment */
  double *z = malloc(sizeof *z * P * 2);
  quad q = {A, N, 0};
  assert_int_equal(qg_hutchinson(quad_grad, &q, x, N, off, len, 2, P, 1e-2, 11, z), QG_OK);
  assert_int_equal(q.calls, 2 * P);
  assert_memory_equal(x, x0, sizeof x); /* restored bitwise */
  for (int s = 0; s < 2; s++) {
    double tr = 0, mean, se;
    for (int64_t i = off[s]; i < off[s] + len[s]; i++) tr += A[i * N + i];
    qg_mean_se(z + s, P, 2, &mean, &se);
    print_message("  segment %d: exact trace %.4f, Hutchinson %.4f +- %.4f (%d probes)\n", s, tr, mean, se, P);
    assert_true(fabs(mean - tr) < 4 * se);
    assert_true(se > 0 && se < 0.1 * fabs(tr));
  }
  free(z);
}

static void test_mean_se(void **st) {
  (void)st;
  const double x[8] = {1, 9, 2, 9, 3, 9, 6, 9}; /* every other one: 1, 2, 3, 6 */
  double m, se;
  qg_mean_se(x, 4, 2, &m, &se);
  assert_true(fabs(m - 3.0) < 1e-15);
  /* sample variance of 1,2,3,6 = 14/3; se = sqrt(14/3/4) */
  assert_true(fabs(se - sqrt(14.0 / 12.0)) < 1e-15);
}

/* ---- a tiny model with random weights --------------------------------------------- */

static void tiny_state(int tied, qg_state *st, qg_gpt_config *cfg) {
  assert_int_equal(qg_gpt_config_make(24, 2, 16, 4, 2, 32, tied, 2.0f, cfg), QG_OK);
  qg_gpt_layout l;
  assert_int_equal(qg_gpt_layout_make(cfg, &l), QG_OK);
  qg_state_init(st);
  for (int i = 0; i < l.n; i++) {
    const qg_gpt_param *p = &l.p[i];
    qg_tensor *t;
    assert_int_equal(qg_state_add(st, p->name, QG_F32, p->ndim, p->shape, &t), QG_OK);
    float *f = (float *)t->data, scale = p->role == QG_PARAM_CONTROL ? 0.3f : 0.4f, off = 0;
    if (strstr(p->name, "q_gain")) off = 1.5f;
    else if (strstr(p->name, "scale") || strstr(p->name, "skip")) off = 1.0f;
    for (int64_t k = 0; k < p->numel; k++) f[k] = off + scale * qg_test_randf(&rng);
  }
  qg_gpt_layout_free(&l);
}

typedef struct {
  qg_grad_model *gm;
  const int32_t *seqs;
  int n, len;
} grad_ctx;

static qg_status model_grad(void *ctx, const float *theta, float *g) {
  grad_ctx *c = ctx;
  int64_t n;
  float *w = qg_grad_model_params(c->gm, &n);
  if (w != theta) memcpy(w, theta, sizeof *w * (size_t)n);
  double loss;
  return qg_grad_model_grad(c->gm, c->seqs, c->n, c->len, 0, g, &loss);
}

static void test_hutchinson_tiny_layer(void **st) {
  (void)st;
  qg_state s;
  qg_gpt_config cfg;
  tiny_state(1, &s, &cfg);
  qg_grad_model *gm;
  assert_int_equal(qg_grad_model_new(&s, 2.0f, &gm), QG_OK);
  enum { B = 2, T = 6 };
  int32_t seqs[B * (T + 1)];
  for (int i = 0; i < B * (T + 1); i++) seqs[i] = (int32_t)(qg_test_rand(&rng) % 24);
  grad_ctx c = {gm, seqs, B, T};
  int64_t n, off[2], len[2];
  float *w = qg_grad_model_params(gm, &n);
  assert_int_equal(qg_grad_model_find(gm, "blocks.1.attn.c_k.weight", &off[0], &len[0]), QG_OK);
  assert_int_equal(qg_grad_model_find(gm, "blocks.0.mlp.fc.weight", &off[1], &len[1]), QG_OK);
  /* the explicit Hessian diagonal of c_k, one coordinate at a time */
  /* a small step: with every probed weight moved at once, relu^2's kinks bias larger ones */
  const double h = 1e-3;
  float *gp = malloc(sizeof *gp * (size_t)n), *gn = malloc(sizeof *gn * (size_t)n);
  double tr = 0;
  for (int64_t i = off[0]; i < off[0] + len[0]; i++) {
    float keep = w[i];
    w[i] = keep + (float)h;
    assert_int_equal(model_grad(&c, w, gp), QG_OK);
    w[i] = keep - (float)h;
    assert_int_equal(model_grad(&c, w, gn), QG_OK);
    w[i] = keep;
    tr += ((double)gp[i] - (double)gn[i]) / (2 * h);
  }
  /* probes over c_k and fc at once: the cross terms must average out */
  enum { P = 4000 };
  double *z = malloc(sizeof *z * (size_t)P * 2), mean, se;
  assert_int_equal(qg_hutchinson(model_grad, &c, w, n, off, len, 2, P, h, 3, z), QG_OK);
  qg_mean_se(z, P, 2, &mean, &se);
  print_message("  c_k: explicit trace %.5f, Hutchinson %.5f +- %.5f (%d probes)\n", tr, mean, se, P);
  assert_true(fabs(mean - tr) < 4 * se);
  assert_true(se < 0.05 * fabs(tr));
  free(z), free(gp), free(gn);
  qg_grad_model_free(gm);
  qg_state_free(&s);
}

/* ---- Fisher against brute force ------------------------------------------------------ */

typedef struct {
  const char *name;
  float *x; /* T x K inputs seen by the inference forward */
  int K;
} tap_want;

static qg_status tap_cb(void *ctx, const char *const *names, int n, const float *x, int64_t rows, int K) {
  tap_want *w = ctx;
  for (int i = 0; i < n; i++)
    if (!strcmp(names[i], w->name)) {
      w->x = malloc(sizeof *w->x * (size_t)rows * (size_t)K);
      memcpy(w->x, x, sizeof *w->x * (size_t)rows * (size_t)K);
      w->K = K;
    }
  return QG_OK;
}

static double seq_loss(qg_gpt *m, const int32_t *seq, int T) {
  qg_token_stat ts[16];
  assert_int_equal(qg_gpt_score(m, seq, 1, T, ts), QG_OK);
  double s = 0;
  for (int t = 0; t < T; t++) s += ts[t].nll_a;
  return s;
}

/* Solves the small dense system M y = b in place (Gaussian elimination, partial pivot). */
static void solve(double *M, double *b, int n) {
  for (int c = 0; c < n; c++) {
    int p = c;
    for (int r = c + 1; r < n; r++)
      if (fabs(M[r * n + c]) > fabs(M[p * n + c])) p = r;
    for (int k = 0; k < n; k++) {
      double t = M[c * n + k];
      M[c * n + k] = M[p * n + k], M[p * n + k] = t;
    }
    double t = b[c];
    b[c] = b[p], b[p] = t;
    for (int r = c + 1; r < n; r++) {
      double f = M[r * n + c] / M[c * n + c];
      for (int k = c; k < n; k++) M[r * n + k] -= f * M[c * n + k];
      b[r] -= f * b[c];
    }
  }
  for (int c = n - 1; c >= 0; c--) {
    for (int k = c + 1; k < n; k++) b[c] -= M[c * n + k] * b[k];
    b[c] /= M[c * n + c];
  }
}

static float *weight_ptr(qg_gpt *m, const char *name) {
  if (!strcmp(name, "lm_head.weight")) return m->lm_head;
  if (!strcmp(name, "tok_emb.weight")) return m->tok_emb;
  int b = name[7] - '0';
  const char *r = name + 9;
  if (!strcmp(r, "attn.c_q.weight")) return m->blocks[b].c_q;
  if (!strcmp(r, "attn.c_k.weight")) return m->blocks[b].c_k;
  if (!strcmp(r, "attn.c_v.weight")) return m->blocks[b].c_v;
  if (!strcmp(r, "attn.proj.weight")) return m->blocks[b].proj;
  if (!strcmp(r, "mlp.fc.weight")) return m->blocks[b].fc;
  if (!strcmp(r, "mlp.proj.weight")) return m->blocks[b].mlp_proj;
  return NULL;
}

/* The brute-force Fisher score of one tensor: dL/dW by central differences of the summed
 * NLL through the inference forward; the output gradients g (T x N) recovered from
 * dL/dW = g^T X by least squares (exact: X has full row rank, T <= K); then
 * (1/T) sum (g * X D^T)^2. The embedding's input term reads g_t as row tok_t of dL/dE
 * (distinct tokens). */
static double brute_fisher(qg_gpt *m, const int32_t *seq, int T, const char *name, int64_t N, int64_t K,
                           const float *D) {
  float *W = weight_ptr(m, name);
  assert_non_null(W);
  const double h = 1e-2;
  double *G = calloc((size_t)(N * K), sizeof *G);
  for (int64_t i = 0; i < N * K; i++) {
    float keep = W[i];
    W[i] = keep + (float)h;
    double lp = seq_loss(m, seq, T);
    W[i] = keep - (float)h;
    double ln = seq_loss(m, seq, T);
    W[i] = keep;
    G[i] = (lp - ln) / (2 * h);
  }
  double score = 0;
  if (!strcmp(name, "tok_emb.weight")) {
    for (int t = 0; t < T; t++)
      for (int64_t j = 0; j < K; j++) {
        double v = G[seq[t] * K + j] * D[seq[t] * K + j];
        score += v * v;
      }
  } else {
    tap_want tw = {name, NULL, 0};
    m->tap = tap_cb, m->tap_ctx = &tw;
    seq_loss(m, seq, T);
    m->tap = NULL;
    assert_non_null(tw.x);
    assert_int_equal(tw.K, K);
    const float *X = tw.x;
    double XXt[16 * 16];
    for (int a = 0; a < T; a++)
      for (int b = 0; b < T; b++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += (double)X[a * K + k] * X[b * K + k];
        XXt[a * T + b] = s;
      }
    for (int64_t i = 0; i < N; i++) {
      /* g[:, i] solves (X X^T) g = X G[i, :]^T */
      double rhs[16], M[16 * 16];
      memcpy(M, XXt, sizeof(double) * (size_t)(T * T));
      for (int a = 0; a < T; a++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += (double)X[a * K + k] * G[i * K + k];
        rhs[a] = s;
      }
      solve(M, rhs, T);
      for (int t = 0; t < T; t++) {
        double dy = 0;
        for (int64_t k = 0; k < K; k++) dy += (double)X[t * K + k] * D[i * K + k];
        double v = rhs[t] * dy;
        score += v * v;
      }
    }
    free(tw.x);
  }
  free(G);
  return score / T;
}

static void test_fisher_brute_force(void **st) {
  (void)st;
  qg_state s;
  qg_gpt_config cfg;
  tiny_state(0, &s, &cfg); /* untied: the head and the embedding are separate tensors */
  enum { T = 5 };
  const int32_t seq[T + 1] = {3, 17, 8, 21, 5, 12}; /* distinct inputs */
  const char *names[] = {"blocks.0.attn.c_q.weight", "blocks.0.attn.c_k.weight", "blocks.1.attn.c_v.weight",
                         "blocks.0.attn.proj.weight", "blocks.1.mlp.fc.weight",   "blocks.0.mlp.proj.weight",
                         "lm_head.weight",            "tok_emb.weight"};
  enum { NT = 8, ND = 2 };
  float *D[NT * ND];
  int64_t Ns[NT], Ks[NT];
  for (int t = 0; t < NT; t++) {
    const qg_tensor *w = qg_state_find_c(&s, names[t]);
    assert_non_null(w);
    Ns[t] = w->shape[0], Ks[t] = w->shape[1];
    for (int d = 0; d < ND; d++) {
      /* quantization-error-like deltas, two sizes */
      D[t * ND + d] = malloc(sizeof(float) * (size_t)(Ns[t] * Ks[t]));
      for (int64_t i = 0; i < Ns[t] * Ks[t]; i++) D[t * ND + d][i] = (d ? 0.05f : 0.01f) * qg_test_randf(&rng);
    }
  }
  qg_grad_model *gm;
  assert_int_equal(qg_grad_model_new(&s, 2.0f, &gm), QG_OK);
  double score[NT * ND];
  assert_int_equal(qg_sens_fisher(gm, seq, 1, T, 0, NT, names, ND, (const float *const *)D, score), QG_OK);
  qg_gpt m;
  qg_gpt_options go = {.mlp_power = 2.0f};
  assert_int_equal(qg_gpt_init(&m, &s, &go, qg_ops_cpu()), QG_OK);
  for (int t = 0; t < NT; t++)
    for (int d = 0; d < ND; d++) {
      double ref = brute_fisher(&m, seq, T, names[t], Ns[t], Ks[t], D[t * ND + d]);
      double got = score[t * ND + d], rel = fabs(got - ref) / ref;
      print_message("  %-26s delta %d: Fisher %.6e, brute force %.6e (rel %.1e)\n", names[t], d, got, ref, rel);
      assert_true(ref > 0);
      assert_true(rel < 2e-2);
    }
  /* twice the delta, four times the score (exactly quadratic in D) */
  for (int64_t i = 0; i < Ns[2] * Ks[2]; i++) D[2 * ND][i] *= 2;
  double s2[NT * ND];
  assert_int_equal(qg_sens_fisher(gm, seq, 1, T, 0, NT, names, ND, (const float *const *)D, s2), QG_OK);
  assert_true(fabs(s2[2 * ND] - 4 * score[2 * ND]) < 1e-9 * score[2 * ND]);
  qg_gpt_free(&m);
  qg_grad_model_free(gm);
  for (int i = 0; i < NT * ND; i++) free(D[i]);
  qg_state_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mean_se),
      cmocka_unit_test(test_hutchinson_quadratic),
      cmocka_unit_test(test_hutchinson_tiny_layer),
      cmocka_unit_test(test_fisher_brute_force),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
