// Causal scaled-dot-product attention with GQA, flash-style: scores never leave the chip.
//
// A block owns QB = 128 consecutive queries of one (sequence, query head); each thread owns
// one query, its q row and its output accumulator in registers (HD floats each, HD a
// compile-time head dim so the arrays stay in registers). Keys and values stream through
// shared memory in tiles of BK rows; per tile each thread computes its BK scores, then
// the online-softmax update: a running maximum m and sum l, the accumulator rescaled by
// exp(m_old - m_new) once per tile, then the tile's probabilities times V added in. So no
// T x T (or QB x T) matrix exists anywhere, in global or shared memory.
//
// Every thread of a warp reads the same K/V element at the same time (their queries share
// the tile), so the shared-memory reads are broadcasts: no bank conflicts, 16-byte loads.
// Causality makes late query tiles costlier; blocks are numbered so the costliest tiles
// start first and the cheap ones fill in the tail.
//
// Precision: fp32 throughout, expf (not __expf), scores scaled by 1/sqrt(hd) after the dot
// product as the CPU twin's sgemm alpha does. It differs from the CPU only in summation
// order (within ~1e-6 relative).
//
// Head dims: multiples of 8 up to 128 (the contest's are 32, 48 and 64). Beyond 64 the
// register arrays spill; correct, but a split-head or tensor-core variant would be faster.
#include <math.h>

#include "kernels/cuda/cuda_common.h"

#define QB 128

template <int HD>
struct att_tile {
  static const int BK = HD <= 64 ? 32 : 16;
};

template <int HD>
__global__ void __launch_bounds__(QB) k_attention(float *y, const float *q, const float *k, const float *v, int B, int T,
                                                  int H, int KVH, int n_qt, float scale) {
  const int BK = att_tile<HD>::BK;
  __shared__ __align__(16) float Ks[BK][HD];
  __shared__ __align__(16) float Vs[BK][HD];
  // heaviest query tiles (the last ones) first: blockIdx.x = qi * (B*H) + (b*H + h)
  int bh = blockIdx.x % (B * H), qi = blockIdx.x / (B * H);
  int qt = n_qt - 1 - qi, h = bh % H, b = bh / H;
  int kvh = h / (H / KVH);
  int q0 = qt * QB, t = q0 + threadIdx.x;
  int q_end = q0 + QB < T ? q0 + QB : T; // keys 0 .. q_end-1 may be seen by this block
  int64_t qs = (int64_t)H * HD, ks = (int64_t)KVH * HD;
  const float *kb = k + (int64_t)b * T * ks + kvh * HD, *vb = v + (int64_t)b * T * ks + kvh * HD;
  bool active = t < T;

  float qr[HD], acc[HD];
  const float *qp = q + ((int64_t)b * T + (active ? t : 0)) * qs + h * HD;
#pragma unroll
  for (int d = 0; d < HD; d++) {
    qr[d] = active ? qp[d] : 0.0f;
    acc[d] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;

  for (int k0 = 0; k0 < q_end; k0 += BK) {
    __syncthreads(); // the previous tile is no longer read
    for (int i = threadIdx.x; i < BK * HD; i += QB) {
      int r = i / HD, c = i % HD, key = k0 + r;
      bool ok = key < q_end;
      Ks[r][c] = ok ? kb[(int64_t)key * ks + c] : 0.0f;
      Vs[r][c] = ok ? vb[(int64_t)key * ks + c] : 0.0f;
    }
    __syncthreads();
    if (!active || k0 > t) continue; // this query sees none of the tile (still syncs above)
    float s[BK];
    float mt = m;
#pragma unroll
    for (int j = 0; j < BK; j++) {
      float dot = 0.0f;
#pragma unroll
      for (int d = 0; d < HD; d += 4) {
        float4 kk = *reinterpret_cast<const float4 *>(&Ks[j][d]);
        dot += qr[d] * kk.x + qr[d + 1] * kk.y + qr[d + 2] * kk.z + qr[d + 3] * kk.w;
      }
      s[j] = k0 + j <= t ? dot * scale : -INFINITY; // causal mask
      mt = fmaxf(mt, s[j]);
    }
    float corr = expf(m - mt); // 0 on the first tile (m = -inf, mt finite)
    l *= corr;
#pragma unroll
    for (int d = 0; d < HD; d++) acc[d] *= corr;
#pragma unroll
    for (int j = 0; j < BK; j++) {
      float p = expf(s[j] - mt); // masked keys: exp(-inf) = 0
      l += p;
#pragma unroll
      for (int d = 0; d < HD; d += 4) {
        float4 vv = *reinterpret_cast<const float4 *>(&Vs[j][d]);
        acc[d] += p * vv.x;
        acc[d + 1] += p * vv.y;
        acc[d + 2] += p * vv.z;
        acc[d + 3] += p * vv.w;
      }
    }
    m = mt;
  }
  if (!active) return;
  float inv = 1.0f / l;
  float *yp = y + ((int64_t)b * T + t) * qs + h * HD;
#pragma unroll
  for (int d = 0; d < HD; d++) yp[d] = acc[d] * inv;
}

template <int HD>
static qg_status launch(float *y, const float *q, const float *k, const float *v, int64_t B, int T, int H, int KVH) {
  int n_qt = (T + QB - 1) / QB;
  int64_t blocks = B * H * n_qt;
  if (blocks > 0x7fffffff) return qg_fail(QG_ERR_UNSUPPORTED, "cuda attention: %lld blocks exceed the grid", (long long)blocks);
  k_attention<HD><<<(unsigned)blocks, QB>>>(y, q, k, v, (int)B, T, H, KVH, n_qt, 1.0f / sqrtf((float)HD));
  return qg_cu_launched("k_attention");
}

qg_status qg_cu_attention(float *y, const float *q, const float *k, const float *v, int64_t B, int T, int H, int KVH,
                          int hd) {
  if (B <= 0 || T <= 0 || H <= 0) return QG_OK;
  if (B * H > 0x7fffffff) return qg_fail(QG_ERR_UNSUPPORTED, "cuda attention: batch too large");
  switch (hd) {
#define QG_ATT_CASE(n) \
  case n:              \
    return launch<n>(y, q, k, v, B, T, H, KVH);
    QG_ATT_CASE(8)
    QG_ATT_CASE(16)
    QG_ATT_CASE(24)
    QG_ATT_CASE(32)
    QG_ATT_CASE(40)
    QG_ATT_CASE(48)
    QG_ATT_CASE(56)
    QG_ATT_CASE(64)
    QG_ATT_CASE(72)
    QG_ATT_CASE(80)
    QG_ATT_CASE(88)
    QG_ATT_CASE(96)
    QG_ATT_CASE(104)
    QG_ATT_CASE(112)
    QG_ATT_CASE(120)
    QG_ATT_CASE(128)
#undef QG_ATT_CASE
    default:
      return qg_fail(QG_ERR_UNSUPPORTED, "cuda attention: head dim %d not built (multiples of 8 up to 128 are)", hd);
  }
}
