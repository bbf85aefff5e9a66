/* The bridge between quant/'s plug-ins and the quantizer kernels (quant/cuda/cuda_quant.h):
 * the quantize step and the calibration pass of `quantgolf quantize --device cuda`. Plain
 * C, in every build: without CUDA compiled in, or without a GPU, the functions that need
 * one return QG_ERR_UNSUPPORTED / QG_ERR_DEVICE saying so, and qg_cuq_quantize_hook is
 * never installed (cli/cmd_quantize.c asks qg_cuq_available() first).
 *
 * This is the one file under kernels/ that knows quant/ and model/ types; it sits here
 * because it is the CUDA path's entry point, and it keeps quant/ free of CUDA. */
#ifndef QG_QUANT_CUDA_QUANT_BRIDGE_H
#define QG_QUANT_CUDA_QUANT_BRIDGE_H

#include "model/gpt.h"
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
/* The same with the signature of qg_quantize_opts.quantize (quant/pipeline.h). */
qg_status qg_cuq_quantize_hook(void *ctx, const qg_qconfig *c, const qg_qinput *in, qg_qtensor *out);

/* qg_calib_hessians with the Hessians accumulated on the device (fp64, see
 * quant/cuda/cuda_quant.h) straight from the CUDA model's activations: no activation ever
 * crosses to the host. m must run on a CUDA op table. Fills and finalizes map. When
 * seconds is non-NULL, seconds[0] gets the forward time and seconds[1] the Hessian time
 * (each step synchronised, for the benchmark). */
qg_status qg_cuq_calib_hessians(qg_gpt *m, const int32_t *seqs, int n, int len, int batch, qg_hessian_map *map,
                                double *seconds);

#endif
