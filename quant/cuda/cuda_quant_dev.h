// Internal to the quantizer kernels (quant/cuda/cuda_quant_*.cu, quant/cuda/cuda_gptq.cu; C++):
// checked-call macros, the device-side grid description, and the __device__ functions
// that round exactly as the CPU grids do. The device, its cuBLAS and cuSOLVER handles are
// the CUDA backend's one context (kernels/cuda/cuda_context.h), reached through qgq_ctx.
//
// Exactness: these files are compiled with --fmad=false, so a*b+c is two roundings as in
// the CPU build (C11 mode: no contraction, no FMA on baseline x86-64); every sum that
// decides a code or a scale runs sequentially in the CPU's order in one thread.
#ifndef QG_QUANT_CUDA_QUANT_DEV_H
#define QG_QUANT_CUDA_QUANT_DEV_H

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>
#include <stdint.h>

#include "kernels/cuda/cuda_context.h"
#include "quant/cuda/cuda_quant.h"
#include "quant/e8_tables.h"

// ---- checked calls ----------------------------------------------------------------------
static inline qg_status qgq_cu_fail(cudaError_t e, const char *call) { return qg_cu_fail(e, call); }
qg_status qgq_blas_fail(cublasStatus_t e, const char *call);
qg_status qgq_solver_fail(cusolverStatus_t e, const char *call);
qg_status qgq_launched(const char *kernel);

#define QGQ_CU(call)                                                              \
  do {                                                                            \
    cudaError_t qgq_e_ = (call);                                                  \
    if (qgq_e_ != cudaSuccess) return qgq_cu_fail(qgq_e_, #call);                 \
  } while (0)
#define QGQ_BLAS(call)                                                            \
  do {                                                                            \
    cublasStatus_t qgq_e_ = (call);                                               \
    if (qgq_e_ != CUBLAS_STATUS_SUCCESS) return qgq_blas_fail(qgq_e_, #call);     \
  } while (0)
#define QGQ_SOLVER(call)                                                          \
  do {                                                                            \
    cusolverStatus_t qgq_e_ = (call);                                             \
    if (qgq_e_ != CUSOLVER_STATUS_SUCCESS) return qgq_solver_fail(qgq_e_, #call); \
  } while (0)
// Inside functions that clean up on the way out: set s and jump to `done`.
#define QGQ_GO(expr)          \
  do {                        \
    if ((s = (expr))) goto done; \
  } while (0)

// The context's handles (device 0, legacy default stream), created on first use.
qg_status qgq_ctx(cublasHandle_t *blas, cusolverDnHandle_t *solver);

// ---- the device-side grid ----------------------------------------------------------------
// An E8 codebook's tables in device memory: the shared encoder's view (quant/e8_tables.h).
typedef qg_e8_tables qgq_dcb;

struct qgq_dgrid {
  int kind, width, bits, objective, steps, steps2, full, qmin, qmax, clip, lm_search, nstages, levels;
  int64_t rows, cols, group, ngroups, nvec; // group resolved (cols when per row)
  double pct, k, maxshrink;
  double up[2][2], dn[2][2];
  const double *mult0, *mult1; // device copies of qg_cuq_grid.mult
  const float *lm_cf, *lm_tf;  // Lloyd-Max levels and interior edges (device)
  qgq_dcb cb[2];
  float unit[2];
  float *scales;   // stages x rows x ngroups (device)
  uint32_t *codes; // rowwise/lloydmax: rows x cols; e8: stages x rows x nvec (device)
};

// Device state for one tensor: uploads the grid's tables and allocates codes and scales.
struct qgq_state {
  qgq_dgrid d;
  double *mult;     // 2 x QG_CUQ_MAX_MULT
  float *lm;        // levels + levels-1
};
qg_status qgq_state_init(qgq_state *st, const qg_cuq_grid *g, int64_t rows, int64_t cols);
void qgq_state_free(qgq_state *st);
// Codes and scales back to the host (qg_cuq_result).
qg_status qgq_state_download(const qgq_state *st, qg_cuq_result *out);

// Sets the scales of groups gi0 .. gi0+ng-1 for all rows from X (device, fp64): group gi
// of row r is X[r * ldx + (gi - gi0) * group + 0 .. group); imp (device, may be NULL) is
// indexed the same way without the row term. The CPU twin is the grid's set_scale.
qg_status qgq_set_scales(const qgq_state *st, const double *X, int64_t ldx, int64_t gi0, int64_t ng, const double *imp);
// Rounds every column of X (device, rows x cols, row stride cols) in place to its
// dequantized value and records the codes (qg_grid_rtn's rounding pass).
qg_status qgq_round_all(const qgq_state *st, double *X);

// ---- exact rounding helpers --------------------------------------------------------------
// float -> fp16 -> float, round to nearest even (cuda_fp16's conversion is IEEE, as core/).
__device__ __forceinline__ float qgq_f16r_f(float x) { return __half2float(__float2half_rn(x)); }

// quant/rowwise.c scale_for().
__device__ __forceinline__ float qgq_rw_scale_for(const qgq_dgrid &g, double clip) {
  double den = g.full ? (double)-g.qmin : (double)g.qmax;
  if (!(clip > 0)) return 1.0f;
  float s = qgq_f16r_f((float)(clip / den));
  if (s == 0.0f) s = 5.9604644775390625e-08f; // the smallest fp16 subnormal
  if (isinf(s)) s = 65504.0f;
  return s;
}

// turbo.c / e8_quantizer.c f16r(): fp16-representable, finite, non-negative.
__device__ __forceinline__ float qgq_f16r(double v) {
  if (!(v > 0)) return 0.0f;
  if (v > 65504.0) v = 65504.0;
  return qgq_f16r_f((float)v);
}

// quant/lloydmax.h qg_lloydmax_index().
__device__ __forceinline__ int qgq_lm_index(const float *tf, int levels, float x) {
  int lo = 0, hi = levels - 1;
  while (lo < hi) {
    int mid = (lo + hi) >> 1;
    if (x > tf[mid]) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

// qg_e8_encode() and qg_e8_nearest() on the device: quant/e8_core.h through
// cuda_quant_e8.h, included by the .cu files that need them.
#endif
