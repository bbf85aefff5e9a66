/* The CPU quantizers' table and the selection by kind (quant/backend.h). */
#include "quant/backend.h"

static int cpu_supports(const qg_quant_backend *b, const qg_qconfig *c, int64_t rows, int64_t cols) {
  (void)b, (void)c, (void)rows, (void)cols;
  return 1;
}

static qg_status cpu_quantize(const qg_quant_backend *b, const qg_qconfig *c, const qg_qinput *in, qg_qtensor *out) {
  (void)b;
  return qg_quantize(c, in, out);
}

static const qg_quant_backend cpu_backend = {
    .kind = QG_BACKEND_CPU, .name = "cpu", .supports = cpu_supports, .quantize = cpu_quantize};

const qg_quant_backend *qg_quant_backend_for(qg_backend_kind kind) {
  static const qg_quant_backend *(*const table[QG_BACKEND_COUNT])(void) = {
      [QG_BACKEND_CUDA] = qg_quant_backend_cuda,
  };
  return kind > QG_BACKEND_CPU && kind < QG_BACKEND_COUNT && table[kind] ? table[kind]() : &cpu_backend;
}

qg_status qg_quant_backend_by_device(const char *device, const qg_quant_backend **out) {
  const qg_ops *ops;
  *out = &cpu_backend;
  QG_TRY(qg_ops_by_name(device ? device : "cpu", &ops));
  *out = qg_quant_backend_for(ops->kind);
  return QG_OK;
}
