/* Backend selection by name, and matmul precision (kernels/cuda_precision.h). */
#include <string.h>

#include "kernels/cuda/cuda_device.h"
#include "kernels/cuda_precision.h"
#include "kernels/ops.h"

qg_status qg_ops_by_name(const char *name, const qg_ops **out) {
  if (!strcmp(name, "cpu")) {
    *out = qg_ops_cpu();
    return QG_OK;
  }
  if (!strcmp(name, "cuda")) return qg_ops_cuda(out);
  if (!strcmp(name, "auto")) {
    if (qg_cuda_device_count() > 0 && qg_ops_cuda(out) == QG_OK) return QG_OK;
    *out = qg_ops_cpu();
    return QG_OK;
  }
  return qg_fail(QG_ERR_INPUT, "unknown device '%s' (expected cpu, cuda or auto)", name);
}

qg_status qg_precision_parse(const char *name, qg_precision *out) {
  if (!strcmp(name, "fp32")) *out = QG_PRECISION_FP32;
  else if (!strcmp(name, "bf16")) *out = QG_PRECISION_BF16;
  else return qg_fail(QG_ERR_INPUT, "unknown precision '%s' (expected fp32 or bf16)", name);
  return QG_OK;
}

const char *qg_precision_name(qg_precision p) { return p == QG_PRECISION_BF16 ? "bf16" : "fp32"; }

qg_status qg_ops_with_precision(const qg_ops *base, qg_precision p, const qg_ops **out) {
  *out = base;
  if (p == QG_PRECISION_FP32) {
    /* the fp32 twin of a bf16 table is the plain CUDA table */
    if (base->bf16) return qg_ops_cuda(out);
    return QG_OK;
  }
  if (base->kind != QG_BACKEND_CUDA)
    return qg_fail(QG_ERR_UNSUPPORTED, "precision bf16 needs the CUDA backend (the %s backend computes in fp32)",
                   base->name);
  return qg_ops_cuda_bf16(out);
}
