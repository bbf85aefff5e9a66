/* Quantizing a whole checkpoint: the spec's plan applied tensor by tensor, with metrics,
 * and the way back to a qg_state of exactly the dequantized weights.
 *
 * Calibration hook: GPTQ (and any quantizer that uses a Hessian or importance) gets the
 * Hessian of a tensor from qg_quantize_opts.hessians, a map keyed by the weight's name
 * (quant/hessian.h) that the calibration code fills by running the model forward. When a
 * tensor's rule needs one and none is there, the error says so. */
#ifndef QG_QUANT_PIPELINE_H
#define QG_QUANT_PIPELINE_H

#include "core/tensor.h"
#include "quant/backend.h"
#include "quant/hessian.h"
#include "quant/quantizer.h"
#include "quant/spec.h"

typedef struct {
  const qg_hessian_map *hessians; /* NULL: no calibration data */
  /* Optional progress callback, called before each tensor (cli prints; library doesn't). */
  void (*progress)(void *ctx, int i, int n, const char *name);
  void *progress_ctx;
  /* Where the quantizers run (quant/backend.h); NULL: the CPU's. */
  const qg_quant_backend *backend;
} qg_quantize_opts;

typedef struct {
  qg_qtensor q;         /* the quantized tensor (name, method, options, sections) */
  char why[96];         /* how it was assigned: "rule 2 (blocks.*.mlp.*)", ... */
  int64_t numel;
  int64_t packed_bytes; /* exact, bit-packed, before compression */
  double bits_per_weight; /* packed_bytes * 8 / numel */
  double mse;           /* mean (w - dequantized)^2 */
  double herr;          /* relative Hessian-weighted error tr(D H D^T) / tr(W H W^T), NAN
                         * without a Hessian */
  double entropy_bits;  /* order-0 entropy of the codes (0 for passthrough) */
  double seconds;       /* quantize time */
} qg_qresult;

typedef struct {
  qg_qresult *t;
  int n;
} qg_qmodel;

void qg_qmodel_free(qg_qmodel *m);

/* Quantizes every tensor of st as the spec says. */
qg_status qg_quantize_model(const qg_state *st, const qg_spec *spec, const qg_quantize_opts *opts, qg_qmodel *out);

/* Dequantizes one tensor into a state (float32 unless its quantizer has
 * dequantize_native, e.g. raw). */
qg_status qg_qtensor_to_state(const qg_qtensor *q, qg_state *out);
/* The whole model. */
qg_status qg_qtensors_dequantize(const qg_qtensor *const *q, int n, qg_state *out);

/* Per-tensor seed for randomised quantizers: FNV-1a of the name mixed with the spec seed. */
uint64_t qg_tensor_seed(uint64_t spec_seed, const char *name);

#endif
