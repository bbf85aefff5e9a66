/* Backend selection by name. */
#include <string.h>

#include "kernels/cuda_device.h"
#include "kernels/ops.h"

#ifndef QG_HAVE_CUDA
qg_status qg_ops_cuda(const qg_ops **out) {
  *out = NULL;
  return qg_fail(QG_ERR_UNSUPPORTED, "the CUDA backend is not compiled in (configured with -DQG_CUDA=OFF or no nvcc)");
}
#endif

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
