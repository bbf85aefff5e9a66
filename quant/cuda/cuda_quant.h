/* The quantizers on the GPU: Hessian accumulation, GPTQ with its H^-1 factored
 * by cuSOLVER, and the inner grids (rowwise, Lloyd-Max, E8) as device kernels, plus the
 * raw ops they are built from (FWHT with sign flips, Lloyd-Max rounding, E8 nearest point
 * and codebook search). Plain C: every function returns a qg_status; a failing CUDA,
 * cuBLAS or cuSOLVER call is QG_ERR_DEVICE naming the call. Without CUDA compiled in,
 * every function returns QG_ERR_UNSUPPORTED (stubs in quant/cuda/cuda_quant_none.c).
 *
 * CPU twins: quant/hessian.c (qg_hessian_accumulate, fp64), quant/gptq.c, quant/rowwise.c,
 * quant/lloydmax_quantizer.c, quant/e8_quantizer.c, quant/fwht.c, quant/lloydmax.h, quant/e8.c.
 *
 * Two layers:
 *  - qg_cuq_*: device ops on plain arrays, with a plain description of an inner grid
 *    (qg_cuq_grid). These know nothing of quant/'s plug-in types.
 *  - the bridge (quant/cuda/cuda_quant_bridge.c): qg_cuq_quantize() takes a parsed
 *    qg_qconfig, builds the qg_cuq_grid from the CPU plug-in's own parsed options (the
 *    public option structs of quant/rowwise.h etc., so the device reads exactly what the
 *    CPU parsed), runs the device path and assembles the qg_qtensor sections the CPU
 *    quantizer's own dequantize() reads. Methods it cannot run on the device go to the CPU
 *    (qg_quantize).
 *
 * Arithmetic: the kernels are compiled with -fmad=false (CMakeLists.txt) and every sum
 * that decides a code or a scale runs in the CPU twin's order, so round-to-nearest with
 * the rowwise, lloydmax and e8 grids gives codes and scales bit-identical to the CPU.
 * GPTQ agrees up to the order of the cross-block GEMM (cuBLAS vs OpenBLAS). */
#ifndef QG_QUANT_CUDA_QUANT_H
#define QG_QUANT_CUDA_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "quant/e8.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- device memory (thin checked wrappers, for tests and callers in C) ------------- */
qg_status qg_cuq_alloc(void **p, size_t bytes);
void qg_cuq_free(void *p);
qg_status qg_cuq_upload(void *dst, const void *src, size_t bytes);
qg_status qg_cuq_download(void *dst, const void *src, size_t bytes);
qg_status qg_cuq_sync(void);

/* Hessian accumulation is the backend's (kernels/ops.h hacc_*, kernels/cuda/cuda_hessian.cu). */

/* ---- inner grids ---------------------------------------------------------------------- */
typedef enum { QG_CUQ_ROWWISE = 1, QG_CUQ_LLOYDMAX = 2, QG_CUQ_E8 = 3 } qg_cuq_kind;
enum { QG_CUQ_CLIP_PCT = 0, QG_CUQ_CLIP_SD, QG_CUQ_CLIP_ABSMAX, QG_CUQ_CLIP_SEARCH };
#define QG_CUQ_MAX_MULT 1000
#define QG_CUQ_E8_JOINT 6
#define QG_CUQ_PCT_MAX 8192 /* largest group clip=pct sorts in shared memory (32 KiB) */
#define QG_CUQ_E8_MAX 2048  /* largest e8 group: two fp64 arrays of it in shared memory */

/* Everything a device grid needs, as plain data (filled by the bridge from the CPU
 * plug-in's parsed options: qg_cuq_plan, qg_cuq_grid_from_canon). */
typedef struct {
  qg_cuq_kind kind;
  int width;      /* columns rounded together: 1, or 8 for e8 */
  int64_t group;  /* columns per scale, 0 = the whole row */
  int bits;
  int objective;  /* 1: searches weight the error by the per-column importance (diag H) */
  int steps;      /* search candidates */
  /* rowwise */
  int full, qmin, qmax, clip;
  double pct, k, maxshrink;
  /* Search multipliers, computed on the host with the CPU's own pow() so that device and
   * CPU try exactly the same candidates. lloydmax: mult[0][0..steps) (times the RMS).
   * e8: per search kind t (0: a stage searched alone over [lo, hi] with `steps`;
   * 1: the second stage over [0.7, 1.4] with steps2), mult[t][0..n) and the refinement
   * factors up[t][round] = pow(ratio_r, 1), dn[t][round] = pow(ratio_r, -1), where
   * ratio_r is the grid spacing halved (square-rooted) r+1 times. */
  int lm_search;
  double mult[2][QG_CUQ_MAX_MULT];
  double up[2][2], dn[2][2];
  int steps2;
  /* e8: the codebooks (host; uploaded once and cached on the device) and their RMS
   * coordinate */
  int nstages;
  const qg_e8_codebook *cb[2];
  float unit[2];
  double lo, hi;
} qg_cuq_grid;

/* The grid of a grid quantizer's options ("bits=6 range=sym group=0 clip=pct" etc., any
 * form qg_qconfig_parse takes): parsed by the CPU plug-in, then read as qg_cuq_plan does.
 * method: "rowwise", "lloydmax" or "e8". Pure host code, runs everywhere (the CPU test
 * covers it). QG_ERR_UNSUPPORTED for other methods. */
qg_status qg_cuq_grid_from_canon(const char *method, const char *canon, qg_cuq_grid *g);
/* Whether a rows x cols tensor fits the device kernels' limits for this grid (shared
 * memory per row or group); otherwise QG_ERR_UNSUPPORTED saying why. Host code, runs
 * everywhere. */
qg_status qg_cuq_grid_fits(const qg_cuq_grid *g, int64_t rows, int64_t cols);

/* Codes and scales laid out as the CPU grid's finish() writes them:
 *   rowwise, lloydmax: codes rows x cols; scales rows x ngroups (fp16 values as float)
 *   e8: codes stages x rows x (cols/8); scales stages x rows x ngroups */
typedef struct {
  uint32_t *codes;
  float *scales;
  int64_t n_codes, n_scales;
  int damp_tries;   /* GPTQ: how often percdamp was raised (0 = as configured) */
  double damp_used; /* GPTQ: the percdamp that worked */
  int64_t dead;     /* GPTQ: dead columns */
} qg_cuq_result;
void qg_cuq_result_free(qg_cuq_result *r);

/* Round-to-nearest through a grid on the device: every scale from W (importance imp, cols
 * values, or NULL), every column rounded (qg_grid_rtn's twin). W host rows x cols. */
qg_status qg_cuq_rtn(const qg_cuq_grid *g, const float *W, int64_t rows, int64_t cols, const double *imp,
                     qg_cuq_result *out);

/* GPTQ on the device (quant/gptq.c's twin): W host rows x cols, H host cols x cols fp64
 * (finalised). Dead columns, act_order, damping with up to three tenfold retries, static
 * or dynamic groups, lazy blocks (blocksize <= 256 per kernel; larger sizes run as 256,
 * which only reorders rounding). On a factorisation that fails at every damping level:
 * QG_ERR_INPUT, as the CPU. */
typedef struct {
  double percdamp;
  int64_t blocksize;
  int act_order, static_groups;
} qg_cuq_gptq_opts;
qg_status qg_cuq_gptq(const qg_cuq_grid *g, const qg_cuq_gptq_opts *o, const float *W, const double *H, int64_t rows,
                      int64_t cols, qg_cuq_result *out);

/* Rowwise fake quantization on DEVICE memory (training's STE forward): out = dequantized
 * rowwise-quantized W (rows x cols), fp32. g must be a rowwise grid. */
qg_status qg_cuq_fakequant(const qg_cuq_grid *g, const float *dW, float *dOut, int64_t rows, int64_t cols);

/* ---- raw ops (host arrays in and out; tests and benchmarks) ---------------------------- */
/* m rotations of n = 2^k values in place: R x = H D x / sqrt(n) (inverse: D H y / sqrt(n)),
 * signs s (n values, +-1). Twin: qg_rotate_fwd / qg_rotate_inv. */
qg_status qg_cuq_rotate(float *x, const float *s, int64_t n, int64_t m, int inverse);
/* Index of the nearest level for each of n values (twin: qg_lloydmax_index). */
qg_status qg_cuq_lloydmax_index(int bits, const float *x, int64_t n, uint32_t *idx);
/* Nearest E8 point of each of nvec 8-vectors (twin: qg_e8_nearest). */
qg_status qg_cuq_e8_nearest(const float *x, int64_t nvec, float *y);
/* Nearest codebook entry of each 8-vector (twin: qg_e8_encode); d2 may be NULL. */
qg_status qg_cuq_e8_encode(const qg_e8_codebook *cb, const float *x, int64_t nvec, uint32_t *idx, float *d2);

#ifdef __cplusplus
}
#endif

#endif
