/* The quantizers' backends, one table each, as ggml's backends say what they can run:
 * `supports` answers for a config and a tensor shape without running anything, `quantize`
 * has qg_quantize's contract (checks, bookkeeping, the CPU quantizer's sections) and hands
 * what it does not support to the CPU. The table is found from the op table's kind
 * (kernels/ops.h), the one place a backend is chosen; nothing compares backend names. */
#ifndef QG_QUANT_BACKEND_H
#define QG_QUANT_BACKEND_H

#include "kernels/ops.h"
#include "quant/quantizer.h"

typedef struct qg_quant_backend qg_quant_backend;
struct qg_quant_backend {
  qg_backend_kind kind;
  const char *name; /* for reports: "cpu", "cuda" */
  /* 1 when this backend (not the CPU fallback) quantizes c for a rows x cols tensor. */
  int (*supports)(const qg_quant_backend *b, const qg_qconfig *c, int64_t rows, int64_t cols);
  qg_status (*quantize)(const qg_quant_backend *b, const qg_qconfig *c, const qg_qinput *in, qg_qtensor *out);
  void *ctx; /* the backend's own (tests wrap a table around a counter) */
};

/* The table for a kind: the CPU's (quant/backend.c) or the CUDA one
 * (quant/cuda/cuda_quant_bridge.c; its quantize needs a GPU, which the op table that named
 * the kind already proved). */
const qg_quant_backend *qg_quant_backend_for(qg_backend_kind kind);
const qg_quant_backend *qg_quant_backend_cuda(void);

/* The quantizers' backend for a --device value ("cpu", "cuda", "auto"; NULL: "cpu"),
 * through the op table's selection: "cuda" without a GPU is an error saying why. */
qg_status qg_quant_backend_by_device(const char *device, const qg_quant_backend **out);

#endif
