// Logits -> per-token statistics, fused: softcap, fp64 log-softmax, the target's NLL and
// probability, the argmax, and against a second model's logits the full-vocabulary KLD.
// One block per row, two passes over the row's V logits (re-read from L2 rather than
// kept): nothing vocab-sized is written anywhere, only one qg_token_stat per row, and those
// only for the current batch.
//
// Pass 1: the soft-capped maxima and argmaxes (first index on ties, as the CPU's strict >).
// Pass 2: in fp64, S = sum exp(c_i - max) for each model and W = sum exp(ca_i - max_a) *
// (ca_i - cb_i). Then lse = max + log S, and
//   KLD = sum_i p_a,i (la_i - lb_i) = W / S_a - (lse_a - lse_b)
// (la_i - lb_i = ca_i - cb_i - (lse_a - lse_b), and the p_a,i sum to one), the same sum the
// CPU twin takes, in another order; fp64 makes the difference ~1e-15.
//
// The soft cap c = cap * tanh(z / cap) is rounded as the CPU's tanhf would be: tanh in
// double, rounded once to float (glibc's tanhf is correctly rounded nearly always, CUDA's
// tanhf is not), so the two backends see the same capped logits.
#include <math.h>

#include "kernels/cuda/cuda_common.h"

#define TS_THREADS 256

__device__ __forceinline__ float softcap(float z, float cap) { return cap * (float)tanh((double)(z / cap)); }

// (value, index) maximum with the lower index winning ties.
__device__ __forceinline__ void arg_max_merge(float &v, int &i, float v2, int i2) {
  if (v2 > v || (v2 == v && i2 < i)) {
    v = v2;
    i = i2;
  }
}

__device__ void block_argmax(float &v, int &i, float *sv, int *si) {
  for (int off = 16; off; off >>= 1) {
    float v2 = __shfl_xor_sync(0xffffffffu, v, off);
    int i2 = __shfl_xor_sync(0xffffffffu, i, off);
    arg_max_merge(v, i, v2, i2);
  }
  int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads(); // the scratch may still be read from a previous reduction
  if ((threadIdx.x & 31) == 0) {
    sv[w] = v;
    si[w] = i;
  }
  __syncthreads();
  v = sv[0];
  i = si[0];
  for (int k = 1; k < nw; k++) arg_max_merge(v, i, sv[k], si[k]);
}

__device__ double block_sum(double x, double *sd) {
  for (int off = 16; off; off >>= 1) x += __shfl_xor_sync(0xffffffffu, x, off);
  int w = threadIdx.x >> 5, nw = blockDim.x >> 5;
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sd[w] = x;
  __syncthreads();
  double s = 0;
  for (int k = 0; k < nw; k++) s += sd[k]; // same order in every thread: all agree exactly
  return s;
}

__global__ void __launch_bounds__(TS_THREADS) k_token_stats(const float *a, const float *b, const int32_t *targets,
                                                            int64_t rows, int V, float cap, qg_token_stat *out) {
  __shared__ float sv[TS_THREADS / 32];
  __shared__ int si[TS_THREADS / 32];
  __shared__ double sd[TS_THREADS / 32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const float *ar = a + r * V, *br = b ? b + r * V : NULL;
    float ma = -INFINITY, mb = -INFINITY;
    int ia = V, ib = V;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      arg_max_merge(ma, ia, softcap(ar[i], cap), i);
      if (br) arg_max_merge(mb, ib, softcap(br[i], cap), i);
    }
    block_argmax(ma, ia, sv, si);
    if (br) block_argmax(mb, ib, sv, si);
    double sa = 0, sb = 0, w = 0;
    for (int i = threadIdx.x; i < V; i += blockDim.x) {
      double ca = softcap(ar[i], cap), ea = exp(ca - (double)ma);
      sa += ea;
      if (br) {
        double cb = softcap(br[i], cap);
        sb += exp(cb - (double)mb);
        w += ea * (ca - cb);
      }
    }
    sa = block_sum(sa, sd);
    if (br) {
      sb = block_sum(sb, sd);
      w = block_sum(w, sd);
    }
    if (threadIdx.x == 0) {
      int32_t tg = targets[r];
      qg_token_stat o;
      double lse_a = (double)ma + log(sa), la = (double)softcap(ar[tg], cap) - lse_a;
      o.nll_a = -la;
      o.p_a = exp(la);
      o.top_a = ia;
      if (br) {
        double lse_b = (double)mb + log(sb), lb = (double)softcap(br[tg], cap) - lse_b;
        o.nll_b = -lb;
        o.p_b = exp(lb);
        o.top_b = ib;
        o.kld = w / sa - (lse_a - lse_b);
      } else {
        o.nll_b = o.kld = o.p_b = 0;
        o.top_b = -1;
      }
      out[r] = o;
    }
  }
}

qg_status qg_cu_token_stats(const float *a, const float *b, const int32_t *targets, int64_t rows, int V, float cap,
                            qg_token_stat *out) {
  void *d = NULL;
  size_t bytes = sizeof(qg_token_stat) * (size_t)rows;
  QG_TRY(qg_cu_scratch(QG_SCRATCH_STATS, bytes, &d));
  k_token_stats<<<(unsigned)(rows < 65535 ? rows : 65535), TS_THREADS>>>(a, b, targets, rows, V, cap,
                                                                          (qg_token_stat *)d);
  QG_TRY(qg_cu_launched("k_token_stats"));
  // synchronous: waits for the forward passes and the kernel; a fault in any of them
  // surfaces here
  QG_CU(cudaMemcpy(out, d, bytes, cudaMemcpyDeviceToHost));
  return QG_OK;
}
