/* Calibration files: the Hessians of one calibration run saved once (quantize
 * --save-hessians) and loaded by later runs (--load-hessians), so trying twenty specs on
 * one model costs one calibration.
 *
 * Format: safetensors, one F64 [k, k] tensor per weight name (the map's keys), and
 * __metadata__ {"format": "quantgolf-hessians-v1", "model_sha256": SHA-256 of the
 * checkpoint file the Hessians were collected on, "tokens_sha256": SHA-256 of the
 * calibration tokens (int32 little-endian, sequence after sequence), "sequences", "length",
 * "source" (the --calib value)}. fp64 keeps the Hessians exactly as GPTQ received them:
 * an fp32 copy would change GPTQ's codes. */
#ifndef QG_QUANT_HESSIAN_FILE_H
#define QG_QUANT_HESSIAN_FILE_H

#include "quant/hessian.h"

typedef struct {
  char model_sha256[65];
  char tokens_sha256[65];
  int sequences, length;
  char source[256];
} qg_hessian_meta;

/* Writes every (finalized) Hessian of map with meta, atomically. */
qg_status qg_hessians_save(const char *path, const qg_hessian_map *map, const qg_hessian_meta *meta);
/* Reads a file written by qg_hessians_save into map (initialised here) and meta. A file
 * that is no calibration file, or has a non-square or non-F64 tensor, is QG_ERR_INPUT. */
qg_status qg_hessians_load(const char *path, qg_hessian_map *map, qg_hessian_meta *meta);

#endif
