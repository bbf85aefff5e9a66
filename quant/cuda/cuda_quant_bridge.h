/* The bridge between quant/'s plug-ins and the quantizer kernels (quant/cuda/cuda_quant.h):
 * the CUDA quantizers' table (quant/backend.h: qg_quant_backend_cuda). Plain C, in every
 * build: without CUDA compiled in, or without a GPU, the functions that need one return
 * QG_ERR_UNSUPPORTED / QG_ERR_DEVICE saying so; the table is only reached through an op
 * table of kind CUDA, which exists only where a GPU does. */
#ifndef QG_QUANT_CUDA_QUANT_BRIDGE_H
#define QG_QUANT_CUDA_QUANT_BRIDGE_H

#include "quant/cuda/cuda_quant.h"
#include "quant/hessian.h"
#include "quant/quantizer.h"

/* 1 when CUDA is compiled in and a GPU is present. */
int qg_cuq_available(void);

/* The device's reading of a config: its grid into g (for gptq, the inner grid's) and, when
 * go is non-NULL, gptq's options into *go (zeroed for other methods). Read from the CPU
 * plug-in's parsed options (quant/rowwise.h, lloydmax_quantizer.h, e8_quantizer.h,
 * gptq.h), so defaults and derived values are the CPU's. QG_ERR_UNSUPPORTED when the
 * device has no grid for it. No GPU needed. */
qg_status qg_cuq_plan(const qg_qconfig *c, qg_cuq_grid *g, qg_cuq_gptq_opts *go);

/* Which methods the device runs: rowwise, lloydmax, e8 (cb=e8p, or cb=ball bits=1|2)
 * round-to-nearest, and gptq over any of those grids. 1 when the device takes this config
 * for a rows x cols tensor (no GPU needed to answer). */
int qg_cuq_takes(const qg_qconfig *c, int64_t rows, int64_t cols);

/* qg_quantize on the device: same checks, same qg_qtensor (name, method, canonical
 * options, shape, sections with the CPU quantizer's names and layouts, GPTQ's note);
 * configs the device does not take go to qg_quantize on the CPU. */
qg_status qg_cuq_quantize(const qg_qconfig *c, const qg_qinput *in, qg_qtensor *out);

#endif
