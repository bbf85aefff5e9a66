/* Loading and converting what quantgolf writes, where the quantizers are needed: a .qgz
 * artifact's dequantized weights (exactly the writer's), .qgz tensors to the contest's int8
 * container, and the loaders that take any checkpoint, .qgz included. The container itself
 * (encode, compress, read) is io/qgz.h; the formats io/ reads alone are io/checkpoint.h. */
#ifndef QG_QUANT_ARTIFACT_H
#define QG_QUANT_ARTIFACT_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"
#include "io/checkpoint.h"
#include "io/ptz.h"
#include "io/qgz.h"
#include "model/gpt.h"

/* Read + dequantize every tensor (exactly the writer's dequantized weights). */
qg_status qg_qgz_load_state_mem(const uint8_t *data, size_t len, const char *fname, qg_state *out);
qg_status qg_qgz_load_state(const char *path, qg_state *out);

/* The contest's int8 container from quantized tensors: every quantized tensor must be
 * codes of <= 8 bits with one fp16 scale per row (rowwise or gptq-rowwise per row,
 * contest-int8) or a passthrough (fp16, bf16, fp32, raw); the container then reproduces
 * the same weights (checked value for value). Otherwise QG_ERR_INPUT naming the tensor. */
qg_status qg_qtensors_to_int8(const qg_qtensor *const *q, int n, qg_int8_artifact *out);

/* Loads a checkpoint of any readable format: a .qgz dequantized, the rest as
 * qg_checkpoint_read. *fmt (may be NULL) receives the format. */
qg_status qg_checkpoint_load(const char *path, qg_state *out, qg_format *fmt);

/* Loads any checkpoint quantgolf reads (dequantizing where needed) and builds the model. */
qg_status qg_gpt_load(qg_gpt *m, const char *path, const qg_gpt_options *opt, const qg_ops *ops);

#endif
