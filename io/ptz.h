/* The contest's int8+zlib artifact (.int8.ptz): a zlib stream holding a torch.save'd dict
 * {__quant_format__, quantized, scales, dtypes, passthrough, qmeta?,
 *  passthrough_orig_dtypes?}, exactly as train_gpt.py's quantize_state_dict_int8 builds it.
 * Read, dequantized as dequantize_state_dict_int8 does, produced from a float state dict
 * (io/contest_int8.c) and written back so the contest's own loader accepts it. */
#ifndef QG_IO_PTZ_H
#define QG_IO_PTZ_H

#include "core/tensor.h"

/* Inflated payloads larger than this are refused (a zlib bomb guard; a 16 MB artifact
 * inflates to well under 100 MB). */
#define QG_PTZ_MAX_INFLATED ((size_t)1 << 31)
/* No real artifact inflates by more than this factor (int8 codes and fp16 scales compress
 * by 1.1-4x); a stream that does is refused early instead of after 2 GiB of inflation.
 * The slack keeps tiny test files unaffected. */
#define QG_MAX_INFLATE_RATIO 64
#define QG_INFLATE_SLACK ((size_t)16 << 20)

typedef struct {
  char *format;         /* "__quant_format__", e.g. "int8_clean_per_row_v1" */
  qg_state quantized;   /* int8 codes, in the artifact's order */
  qg_state scales;      /* per quantized tensor (same order): fp16 [rows] or f32 scalar */
  char **orig_dtype;    /* per quantized tensor: "float32", "bfloat16", ... */
  int *per_row;         /* per quantized tensor: qmeta scheme == per_row */
  qg_state passthrough; /* kept tensors as stored */
  char **pass_orig;     /* per passthrough tensor: original dtype name, or NULL */
  int n_orig_dtype, n_per_row, n_pass_orig; /* allocated lengths of the arrays above */
} qg_int8_artifact;

void qg_int8_artifact_init(qg_int8_artifact *a);
void qg_int8_artifact_free(qg_int8_artifact *a);

/* Reads a .ptz file (zlib stream) or an already-inflated torch zip image. */
qg_status qg_ptz_read(const char *path, qg_int8_artifact *a);
qg_status qg_ptz_read_mem(const uint8_t *data, size_t len, const char *fname, qg_int8_artifact *a);
/* Inflates a zlib stream into a malloc'd buffer, refusing more than max_out bytes. */
qg_status qg_zlib_inflate(const uint8_t *data, size_t len, const char *fname, size_t max_out, uint8_t **out,
                          size_t *out_len);

/* dequantize_state_dict_int8: quantized tensors first, then passthrough, each in its
 * original dtype (bf16 rounding included). */
qg_status qg_int8_dequantize(const qg_int8_artifact *a, qg_state *out);

/* quantize_state_dict_int8, bit-exact (io/contest_int8.c). */
qg_status qg_int8_quantize(const qg_state *in, qg_int8_artifact *a);

/* Writes the artifact as the contest does: torch.save (a protocol-2 pickle in a torch
 * zip), then zlib level 9; atomic. qg_ptz_encode does the same into memory: the zlib blob
 * and, when raw is not NULL, the uncompressed zip image (caller frees both). */
qg_status qg_ptz_write(const char *path, const qg_int8_artifact *a, size_t *compressed_bytes);
qg_status qg_ptz_encode(const qg_int8_artifact *a, uint8_t **blob, size_t *blob_len, uint8_t **raw, size_t *raw_len);

#endif
