/* The trainer's optimizers on the GPU (train/cuda/cuda_optim.cu): Muon (Nesterov momentum,
 * Newton-Schulz by cuBLAS GEMMs, the shape scale, the update) and Adam as one fused
 * elementwise kernel per tensor, plus the small device helpers a device training step
 * needs (zeroing gradients, the clip-range STE mask, a synchronisation point).
 *
 * Plain C. Every pointer is DEVICE memory (from the CUDA op table's alloc). Every CUDA
 * runtime and cuBLAS call is checked: a failure is QG_ERR_DEVICE with a message naming
 * the call ("cuda: cublasGemmEx(NS A = X X^T) failed: ..."). Kernel faults are
 * asynchronous and surface at the next synchronising call (qg_cuda_optim_sync, a
 * download), as everywhere in the CUDA backend; QG_CUDA_SYNC=1 names the kernel instead.
 *
 * CPU twins (train/optim.c, train/qat.c): qg_adam_step, qg_newton_schulz5, qg_muon_step,
 * qg_qat_mask. Arithmetic:
 *  - Adam, the Muon momentum and the Muon update use __fmul_rn/__fadd_rn/__fdiv_rn/
 *    __fsqrt_rn in the CPU twin's order (no FMA contraction), with the bias corrections
 *    computed on the host exactly as the twin does: the same bits as the CPU given the
 *    same inputs.
 *  - Newton-Schulz: ||G|| summed in fp64 (a fixed two-pass reduction, so the same bits
 *    run after run), then 5 x {A = X X^T; B = b A + c A A; X = a X + B X} by cublasGemmEx.
 *    fp32: fp32 storage and CUBLAS_COMPUTE_32F with TF32 off (differs from OpenBLAS only
 *    in summation order). bf16 (the contest's zeropower_via_newtonschulz5, which runs in
 *    bfloat16): X, A, B stored in bf16 between GEMMs, fp32 accumulation inside each GEMM
 *    (alpha/beta applied in fp32 before the one rounding to bf16); the update then is
 *    bf16(NS * scale) as the contest's `g *= scale` on a bf16 tensor. One deliberate
 *    difference from the contest: the normalisation divides the fp32 G by its fp64 norm
 *    before the first rounding to bf16 (the contest rounds G to bf16 first and takes a
 *    bf16 norm), one rounding fewer.
 *
 * Without CUDA compiled in, every function below returns QG_ERR_UNSUPPORTED (stubs in
 * train/cuda/cuda_optim_none.c), so callers compile in every build. */
#ifndef QG_TRAIN_CUDA_OPTIM_H
#define QG_TRAIN_CUDA_OPTIM_H

#include <stdint.h>

#include "core/status.h"
#include "kernels/cuda_precision.h"

#ifdef __cplusplus
extern "C" {
#endif

/* p[0..n) = 0 (cudaMemsetAsync on the default stream). */
qg_status qg_cuda_optim_zero(float *p, int64_t n);

/* torch.optim.Adam step t (1-based) on n values: qg_adam_step's twin. */
qg_status qg_cuda_adam_step(float *p, const float *g, float *m, float *v, int64_t n, double lr, double b1, double b2,
                            double eps, int64_t t);

/* zeropower_via_newtonschulz5 of G [rows, cols] into out [rows, cols] (both fp32 device
 * memory, out may not alias G), `steps` iterations at precision prec: qg_newton_schulz5's
 * twin (fp32), or the contest's bf16 iteration. */
qg_status qg_cuda_newton_schulz5(float *out, const float *G, int rows, int cols, int steps, qg_precision prec);

/* Muon on one matrix: buf = mom * buf + g; u = g + mom * buf (Nesterov); p -= lr *
 * NS(u) * max(1, rows/cols)^0.5 (bf16: p -= lr * bf16(NS(u) * scale)). qg_muon_step's
 * twin. */
qg_status qg_cuda_muon_step(float *p, const float *g, float *buf, int rows, int cols, double lr, double momentum,
                            int steps, qg_precision prec);

/* The clip-range STE on one rows x cols tensor: g[r, j] = 0 where |w[r, j]| > max_j
 * |weff[r, j]| (qg_qat_mask's per-tensor twin). */
qg_status qg_cuda_qat_mask(const float *w, const float *weff, float *g, int64_t rows, int64_t cols);

/* Waits for all device work (cudaDeviceSynchronize): step timings, and where asynchronous
 * kernel faults are reported. */
qg_status qg_cuda_optim_sync(void);

/* Frees the optimizer's private device scratch (it grows to the largest matrix seen). */
void qg_cuda_optim_release(void);

#ifdef __cplusplus
}
#endif

#endif
