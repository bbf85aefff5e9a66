// Backward of the causal GQA attention (kernels/ops.h: attention_bwd), flash-style in two
// kernels so that no T x T matrix exists and no gradient needs an atomic:
//
//  1. query side, a thread per query (blocks of QB queries of one (sequence, head), K/V
//     streamed through shared memory as in the forward): the softmax statistics are
//     recomputed online (running max m, sum l), then a second sweep forms
//     p = exp(s - m) / l, dP = dy . v, dS = p (dP - D) with D = dy . y, and accumulates
//     dq = scale * sum dS k. It leaves (m, 1/l, D) per (row, head) for kernel 2.
//  2. key side, a thread per key (blocks of KB keys of one (sequence, kv head)): it owns
//     dk and dv of its key in registers and sweeps every later query of every query head
//     of its group (Q, dY and the statistics streamed through shared memory), adding
//     scale * dS q and p dy. One owner per output element: deterministic.
//
// Precision: fp32 with expf (not __expf); D in double then rounded, as the CPU twin. The
// probabilities are the forward's up to summation order, so the gradients match the CPU
// within ~1e-6 relative. Head dims: multiples of 8 up to 128, as the forward.
//
// Cost: 2x the forward's score work (kernel 2 recomputes scores) on CUDA cores, no tensor
// cores yet; a tensor-core (mma) version is the next step once it has been timed on a GPU.
#include <math.h>

#include "kernels/cuda/cuda_backward.h"
#include "kernels/cuda/cuda_common.h"

#define AQB 64 // queries per block (kernel 1)
#define AKB 64 // keys per block (kernel 2)
#define ABK 16 // rows per shared-memory tile

// ---- kernel 1: dq and the per-row statistics ---------------------------------------------

template <int HD>
__global__ void __launch_bounds__(AQB) k_att_bwd_q(float *dq, float3 *stats, const float *dy, const float *q,
                                                   const float *k, const float *v, const float *y, int B, int T,
                                                   int H, int KVH, int n_qt, float scale) {
  __shared__ __align__(16) float Ks[ABK][HD];
  __shared__ __align__(16) float Vs[ABK][HD];
  int bh = blockIdx.x % (B * H), qi = blockIdx.x / (B * H);
  int qt = n_qt - 1 - qi, h = bh % H, b = bh / H; // the costliest (latest) tiles first
  int kvh = h / (H / KVH);
  int q0 = qt * AQB, t = q0 + threadIdx.x;
  int q_end = q0 + AQB < T ? q0 + AQB : T;
  int64_t qs = (int64_t)H * HD, ks = (int64_t)KVH * HD;
  const float *kb = k + (int64_t)b * T * ks + kvh * HD, *vb = v + (int64_t)b * T * ks + kvh * HD;
  bool active = t < T;
  int64_t row = ((int64_t)b * T + (active ? t : 0)) * qs + h * HD;
  float qr[HD], gr[HD], acc[HD];
  double D = 0; // in order over the head dim, in double: the CPU twin's very sum
#pragma unroll
  for (int d = 0; d < HD; d++) {
    qr[d] = active ? q[row + d] : 0.0f;
    gr[d] = active ? dy[row + d] : 0.0f;
    acc[d] = 0.0f;
    if (active) D += (double)gr[d] * y[row + d];
  }
  float Df = (float)D;
  float m = -INFINITY, l = 0.0f;
  // sweep 1: the softmax statistics (the forward's online recurrence)
  for (int k0 = 0; k0 < q_end; k0 += ABK) {
    __syncthreads();
    for (int i = threadIdx.x; i < ABK * HD; i += AQB) {
      int r = i / HD, c = i % HD, key = k0 + r;
      Ks[r][c] = key < q_end ? kb[(int64_t)key * ks + c] : 0.0f;
    }
    __syncthreads();
    if (!active || k0 > t) continue;
    float s[ABK], mt = m;
#pragma unroll
    for (int j = 0; j < ABK; j++) {
      float dot = 0.0f;
#pragma unroll
      for (int d = 0; d < HD; d++) dot += qr[d] * Ks[j][d];
      s[j] = k0 + j <= t ? dot * scale : -INFINITY;
      mt = fmaxf(mt, s[j]);
    }
    l *= expf(m - mt);
#pragma unroll
    for (int j = 0; j < ABK; j++) l += expf(s[j] - mt);
    m = mt;
  }
  float inv_l = active ? 1.0f / l : 0.0f;
  // sweep 2: dS and dq
  for (int k0 = 0; k0 < q_end; k0 += ABK) {
    __syncthreads();
    for (int i = threadIdx.x; i < ABK * HD; i += AQB) {
      int r = i / HD, c = i % HD, key = k0 + r;
      bool ok = key < q_end;
      Ks[r][c] = ok ? kb[(int64_t)key * ks + c] : 0.0f;
      Vs[r][c] = ok ? vb[(int64_t)key * ks + c] : 0.0f;
    }
    __syncthreads();
    if (!active || k0 > t) continue;
#pragma unroll 1
    for (int j = 0; j < ABK; j++) {
      if (k0 + j > t) break;
      float dot = 0.0f, dp = 0.0f;
#pragma unroll
      for (int d = 0; d < HD; d++) {
        dot += qr[d] * Ks[j][d];
        dp += gr[d] * Vs[j][d];
      }
      float p = expf(dot * scale - m) * inv_l;
      float ds = p * (dp - Df) * scale;
#pragma unroll
      for (int d = 0; d < HD; d++) acc[d] += ds * Ks[j][d];
    }
  }
  if (!active) return;
#pragma unroll
  for (int d = 0; d < HD; d++) dq[row + d] = acc[d];
  stats[((int64_t)b * T + t) * H + h] = make_float3(m, inv_l, Df);
}

// ---- kernel 2: dk and dv, a thread per key ------------------------------------------------

template <int HD>
__global__ void __launch_bounds__(AKB) k_att_bwd_kv(float *dk, float *dv, const float3 *stats, const float *dy,
                                                    const float *q, const float *k, const float *v, int B, int T,
                                                    int H, int KVH, float scale) {
  __shared__ __align__(16) float Qs[ABK][HD];
  __shared__ __align__(16) float Gs[ABK][HD]; // dy rows
  __shared__ float3 Ss[ABK];
  // keys early in the sequence see the most queries: those tiles first
  int bk = blockIdx.x % (B * KVH), ki = blockIdx.x / (B * KVH);
  int kvh = bk % KVH, b = bk / KVH, group = H / KVH;
  int k0 = ki * AKB, key = k0 + threadIdx.x;
  bool active = key < T;
  int64_t qs = (int64_t)H * HD, ks = (int64_t)KVH * HD;
  int64_t krow = ((int64_t)b * T + (active ? key : 0)) * ks + kvh * HD;
  float kr[HD], vr[HD], gk[HD], gv[HD];
#pragma unroll
  for (int d = 0; d < HD; d++) {
    kr[d] = active ? k[krow + d] : 0.0f;
    vr[d] = active ? v[krow + d] : 0.0f;
    gk[d] = gv[d] = 0.0f;
  }
  for (int hh = 0; hh < group; hh++) {
    int h = kvh * group + hh;
    const float *qb = q + (int64_t)b * T * qs + h * HD, *gb = dy + (int64_t)b * T * qs + h * HD;
    for (int t0 = k0; t0 < T; t0 += ABK) { // queries before k0 see none of these keys
      __syncthreads();
      for (int i = threadIdx.x; i < ABK * HD; i += AKB) {
        int r = i / HD, c = i % HD, t = t0 + r;
        bool ok = t < T;
        Qs[r][c] = ok ? qb[(int64_t)t * qs + c] : 0.0f;
        Gs[r][c] = ok ? gb[(int64_t)t * qs + c] : 0.0f;
      }
      for (int r = threadIdx.x; r < ABK; r += AKB)
        Ss[r] = t0 + r < T ? stats[((int64_t)b * T + t0 + r) * H + h] : make_float3(0.0f, 0.0f, 0.0f);
      __syncthreads();
      if (!active) continue;
#pragma unroll 1
      for (int j = 0; j < ABK; j++) {
        int t = t0 + j;
        if (t >= T) break;
        if (t < key) continue; // causal: query t sees keys <= t
        float dot = 0.0f, dp = 0.0f;
#pragma unroll
        for (int d = 0; d < HD; d++) {
          dot += Qs[j][d] * kr[d];
          dp += Gs[j][d] * vr[d];
        }
        float3 st = Ss[j];
        float p = expf(dot * scale - st.x) * st.y;
        float ds = p * (dp - st.z) * scale;
#pragma unroll
        for (int d = 0; d < HD; d++) {
          gv[d] += p * Gs[j][d];
          gk[d] += ds * Qs[j][d];
        }
      }
    }
  }
  if (!active) return;
#pragma unroll
  for (int d = 0; d < HD; d++) {
    dk[krow + d] = gk[d];
    dv[krow + d] = gv[d];
  }
}

template <int HD>
static qg_status launch(float *dq, float *dk, float *dv, const float *dy, const float *q, const float *k,
                        const float *v, const float *y, int64_t B, int T, int H, int KVH) {
  int n_qt = (T + AQB - 1) / AQB, n_kt = (T + AKB - 1) / AKB;
  int64_t b1 = B * H * n_qt, b2 = B * KVH * n_kt;
  if (b1 > 0x7fffffff || b2 > 0x7fffffff)
    return qg_fail(QG_ERR_UNSUPPORTED, "cuda attention_bwd: %lld blocks exceed the grid", (long long)b1);
  void *stats;
  QG_TRY(qg_cu_bw_scratch(QG_BWS_ATT, sizeof(float3) * (size_t)(B * T * H), &stats));
  float scale = 1.0f / sqrtf((float)HD);
  k_att_bwd_q<HD><<<(unsigned)b1, AQB>>>(dq, (float3 *)stats, dy, q, k, v, y, (int)B, T, H, KVH, n_qt, scale);
  QG_TRY(qg_cu_launched("k_att_bwd_q"));
  k_att_bwd_kv<HD><<<(unsigned)b2, AKB>>>(dk, dv, (const float3 *)stats, dy, q, k, v, (int)B, T, H, KVH, scale);
  return qg_cu_launched("k_att_bwd_kv");
}

qg_status qg_cu_attention_bwd(const qg_ops *o, float *dq, float *dk, float *dv, const float *dy, const float *q,
                              const float *k, const float *v, const float *y, int64_t B, int T, int H, int KVH,
                              int hd) {
  (void)o;
  if (KVH <= 0 || H % KVH != 0)
    return qg_fail(QG_ERR_INPUT, "attention_bwd: %d heads not a multiple of %d kv heads", H, KVH);
  if (B <= 0 || T <= 0 || H <= 0) return QG_OK;
  if (B * H > 0x7fffffff) return qg_fail(QG_ERR_UNSUPPORTED, "cuda attention_bwd: batch too large");
  switch (hd) {
#define QG_ATTB_CASE(n) \
  case n:               \
    return launch<n>(dq, dk, dv, dy, q, k, v, y, B, T, H, KVH);
    QG_ATTB_CASE(8)
    QG_ATTB_CASE(16)
    QG_ATTB_CASE(24)
    QG_ATTB_CASE(32)
    QG_ATTB_CASE(40)
    QG_ATTB_CASE(48)
    QG_ATTB_CASE(56)
    QG_ATTB_CASE(64)
    QG_ATTB_CASE(72)
    QG_ATTB_CASE(80)
    QG_ATTB_CASE(88)
    QG_ATTB_CASE(96)
    QG_ATTB_CASE(104)
    QG_ATTB_CASE(112)
    QG_ATTB_CASE(120)
    QG_ATTB_CASE(128)
#undef QG_ATTB_CASE
    default:
      return qg_fail(QG_ERR_UNSUPPORTED, "cuda attention_bwd: head dim %d not built (multiples of 8 up to 128 are)", hd);
  }
}
