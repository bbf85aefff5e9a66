/* The contest's optimizers and LR schedule, on host fp32 arrays. */
#include <math.h>
#include <string.h>

#include "kernels/cpu/cpu_gemm.h"
#include "train/train.h"

/* Newton-Schulz's row blocks: a 128 x 128 or 128 x 256 update splits into four tasks */
#define NS_ROWS 32

/* torch.optim.Adam (no weight decay, no amsgrad), the same arithmetic as its
 * single-tensor/fused paths: step_size = lr / (1 - b1^t), denom = sqrt(v) / sqrt(1 - b2^t)
 * + eps. Bias corrections in double, as torch computes them from Python floats. */
void qg_adam_step(float *p, const float *g, float *m, float *v, int64_t n, double lr, double b1, double b2, double eps,
                  int64_t t) {
  double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
  float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2);
  float fb1 = (float)b1, fb2 = (float)b2, feps = (float)eps;
  for (int64_t i = 0; i < n; i++) {
    m[i] += (1.0f - fb1) * (g[i] - m[i]); /* exp_avg.lerp_(grad, 1 - beta1) */
    v[i] = fb2 * v[i] + (1.0f - fb2) * g[i] * g[i];
    float denom = sqrtf(v[i]) / bc2_sqrt + feps;
    p[i] -= step_size * m[i] / denom;
  }
}

/* zeropower_via_newtonschulz5 in fp32: X = G / (||G|| + 1e-7), work on the wide
 * orientation (rows <= cols), then 5 x { A = X X^T; B = b A + c A A; X = a X + B X }. */
void qg_newton_schulz5(float *out, const float *G, int rows, int cols, int steps, float *scratch) {
  const float a = 3.4445f, b = -4.7750f, c = 2.0315f;
  int tr = rows > cols, r = tr ? cols : rows, k = tr ? rows : cols; /* X is r x k, r <= k */
  float *X = scratch, *Y = X + (size_t)r * k, *A = Y + (size_t)r * k, *B = A + (size_t)r * r;
  double ss = 0;
  for (int64_t i = 0; i < (int64_t)rows * cols; i++) ss += (double)G[i] * G[i];
  float inv = 1.0f / ((float)sqrt(ss) + 1e-7f);
  if (tr) {
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++) X[(size_t)j * k + i] = G[(size_t)i * cols + j] * inv;
  } else {
    for (int64_t i = 0; i < (int64_t)rows * cols; i++) X[i] = G[i] * inv;
  }
  /* the products on the core pool in fixed blocks of NS_ROWS rows (kernels/cpu/cpu_gemm.h:
   * threaded OpenBLAS would leave its workers spinning into the next step's forward) */
  for (int s = 0; s < steps; s++) {
    qg_cpu_sgemm_blocked(0, 1, r, r, k, 1.0f, X, k, X, k, 0.0f, A, r, NS_ROWS, 0);
    /* B = b A + c A A */
    memcpy(B, A, sizeof(float) * (size_t)r * r);
    qg_cpu_sgemm_blocked(0, 0, r, r, r, c, A, r, A, r, b, B, r, NS_ROWS, 0);
    /* Y = a X + B X */
    memcpy(Y, X, sizeof(float) * (size_t)r * k);
    qg_cpu_sgemm_blocked(0, 0, r, k, r, 1.0f, B, r, X, k, a, Y, k, NS_ROWS, 0);
    float *t = X;
    X = Y;
    Y = t;
  }
  if (tr) {
    for (int i = 0; i < rows; i++)
      for (int j = 0; j < cols; j++) out[(size_t)i * cols + j] = X[(size_t)j * k + i];
  } else {
    memcpy(out, X, sizeof(float) * (size_t)rows * cols);
  }
}

void qg_muon_step(float *p, const float *g, float *buf, int rows, int cols, double lr, double momentum, int steps,
                  float *scratch) {
  int64_t n = (int64_t)rows * cols;
  float mom = (float)momentum;
  float *u = scratch, *o = u + n, *ns = o + n;
  for (int64_t i = 0; i < n; i++) {
    buf[i] = buf[i] * mom + g[i];
    u[i] = g[i] + buf[i] * mom; /* nesterov: g.add(buf, alpha=momentum) */
  }
  qg_newton_schulz5(o, u, rows, cols, steps, ns);
  float scale = (float)sqrt(rows > cols ? (double)rows / cols : 1.0);
  float flr = (float)lr;
  for (int64_t i = 0; i < n; i++) p[i] -= flr * (o[i] * scale);
}

double qg_lr_mul(int step, double elapsed_ms, int iterations, int warmdown_iters, double max_seconds) {
  if (warmdown_iters <= 0) return 1.0;
  if (max_seconds <= 0) {
    int start = iterations - warmdown_iters > 0 ? iterations - warmdown_iters : 0;
    if (start <= step && step < iterations) {
      double r = (double)(iterations - step) / (double)(warmdown_iters > 1 ? warmdown_iters : 1);
      return r > 0 ? r : 0.0;
    }
    return 1.0;
  }
  double max_ms = 1000.0 * max_seconds;
  double step_ms = elapsed_ms / (double)(step > 1 ? step : 1);
  double warmdown_ms = warmdown_iters * step_ms;
  double remaining = max_ms - elapsed_ms > 0 ? max_ms - elapsed_ms : 0.0;
  return remaining <= warmdown_ms ? remaining / (warmdown_ms > 1e-9 ? warmdown_ms : 1e-9) : 1.0;
}
