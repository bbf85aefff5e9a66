/* Safetensors (huggingface/safetensors) reader and writer.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON
 *   {"__metadata__": {"k": "v", ...},
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * (the header starts with '{' and may be padded with trailing spaces), then the data
 * buffer; offsets are relative to the start of the data buffer.
 *
 * Reading is strict, as strict as the reference implementation and in places stricter:
 * N in 2..100,000,000 and within the file; the header one valid JSON object with no
 * duplicate keys; each tensor entry exactly {dtype, shape, data_offsets} (the reference
 * ignores unknown keys; we refuse them); begin <= end <= data size; end - begin equal to
 * numel x dtype size; and the tensors tile the data buffer exactly (no overlap, no gap, no
 * trailing bytes). Every failure names the file, the byte offset or the tensor, and what
 * was expected.
 *
 * Tensor order: the returned state lists tensors in the order of their data in the file
 * (by data_offsets, ties kept in header order), as the reference implementation does.
 * For files written by the safetensors library and by us, that is also header order, and
 * reading then writing reproduces the file byte for byte (metadata order aside: the
 * reference keeps it in a hash map).
 *
 * Dtypes: F32 F16 BF16 F64 I8 U8 I16 I32 I64 BOOL. Other reference dtypes (U16, U32,
 * U64, F8_*, F6_*, F4, C64) fail with QG_ERR_UNSUPPORTED; unknown names with
 * QG_ERR_INPUT. Data are assumed little-endian on a little-endian host. */
#ifndef QG_IO_SAFETENSORS_H
#define QG_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"
#include "core/util.h"

#define QG_SAFETENSORS_MAX_HEADER 100000000u

/* Reads a file (memory-mapped, tensors copied into owned host memory). *out is
 * initialised by the call and left empty on failure. */
qg_status qg_safetensors_read(const char *path, qg_state *out);
/* The same from memory; name is used in messages only. */
qg_status qg_safetensors_parse(const uint8_t *data, size_t len, const char *name, qg_state *out);

/* Writes s atomically (temp + rename): metadata first as "__metadata__", tensors in state
 * order with contiguous data_offsets from 0, the header padded with spaces to a multiple
 * of 8 bytes as the reference writer does. The state must hold named, contiguous host
 * tensors with distinct names (none called "__metadata__") and valid UTF-8 strings. */
qg_status qg_safetensors_write(const char *path, const qg_state *s);
/* The same bytes appended to out. */
qg_status qg_safetensors_serialize(const qg_state *s, qg_buf *out);

/* "F32", "BF16", ... for a qg_dtype; and back (0 on success, -1 when not one of ours). */
const char *qg_safetensors_dtype_name(qg_dtype t);
int qg_safetensors_dtype_from_name(const char *name, qg_dtype *out);

#endif
