/* Matrix-product precision, a property of a backend table: the CUDA backend has two
 * tables that differ only in matmul (fp32 with TF32 off, the reference path; bf16 inputs
 * with fp32 accumulation, for speed), so model code keeps calling o->matmul and never
 * learns which. The CPU backend has fp32 only. Plain C: safe to include anywhere. */
#ifndef QG_KERNELS_CUDA_PRECISION_H
#define QG_KERNELS_CUDA_PRECISION_H

#include "kernels/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { QG_PRECISION_FP32 = 0, QG_PRECISION_BF16 = 1 } qg_precision;

/* "fp32" or "bf16". */
qg_status qg_precision_parse(const char *name, qg_precision *out);
const char *qg_precision_name(qg_precision p);
/* The backend `base` with its matrix products at precision p: fp32 gives base itself; bf16
 * gives the CUDA bf16 table when base is a CUDA table, else an error saying why. */
qg_status qg_ops_with_precision(const qg_ops *base, qg_precision p, const qg_ops **out);
/* The CUDA bf16 table (or an error where CUDA is not compiled in or no GPU is present). */
qg_status qg_ops_cuda_bf16(const qg_ops **out);

#ifdef __cplusplus
}
#endif

#endif
