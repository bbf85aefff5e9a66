/* quantgolf's own artifact (.qgz): self-describing quantized tensors, compressed.
 *
 * File = 32-byte header + compressed payload:
 *   0  magic "QGZA"            4  u16 format version (1)   6  u8 compressor
 *   7  u8 code layout           8  u32 tensor count         12 u32 CRC-32 of the payload
 *   16 u64 payload bytes        24 u64 compressed bytes (= file size - 32)
 * Payload, per tensor (varint = unsigned LEB128):
 *   varint+bytes name, method, canonical options; u8 source dtype; u8 ndim; varint dims;
 *   u8 section count; per section: u8 name length + name, u8 kind, u8 bits, varint count,
 *   then the data: codes bit-packed (LSB first) or ceil(bits/8) bytes each (the header's
 *   layout), f16/bf16 as u16 LE, f32 LE, raw bytes as they are.
 * Every length is checked before use; a corrupt or truncated file is QG_ERR_INPUT naming
 * the file and the header field or payload offset and tensor. This is the container only:
 * loading the dequantized weights and converting to the contest's int8 container need the
 * quantizers and live in quant/artifact.h. */
#ifndef QG_IO_QGZ_H
#define QG_IO_QGZ_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"
#include "core/util.h"
#include "io/ptz.h"
#include "io/qtensor.h"

#define QG_QGZ_MAGIC "QGZA"
#define QG_QGZ_VERSION 1      /* every compressor but rans */
#define QG_QGZ_VERSION_RANS 2 /* compressor rans; body = varint meta bytes, brotli meta, code block */
/* As 2, but the code block opens with an options byte (bit 0: the meta's f16/bf16
 * sections as delta byte planes, else as they are), then varint N and N placement bits
 * (LSB first, padded to a byte), one per code section of <= 16 bits in payload order (1:
 * its codes are in the code block, 0: inline in the meta), and codes of 13..16 bits may be
 * in the block (io/qgz_wide.h). */
#define QG_QGZ_VERSION_WIDE 3
#define QG_QGZ_META_PLANES 1
#define QG_QGZ_HEADER 32
#define QG_QGZ_MAX_PAYLOAD ((uint64_t)1 << 31)

typedef enum { QG_COMP_NONE = 0, QG_COMP_ZSTD, QG_COMP_BROTLI, QG_COMP_XZ, QG_COMP_ZLIB, QG_COMP_RANS, QG_COMP_COUNT } qg_compressor;
/* The artifact's compressor when none is named (quantize, the runner, sensitivity's byte
 * costs, allocate, train --export): rans, the smallest on every code set measured
 * (README, Bytes); its loader reads every other version too. */
#define QG_COMP_DEFAULT QG_COMP_RANS
typedef enum { QG_LAYOUT_PACKED = 0, QG_LAYOUT_BYTES = 1, QG_LAYOUT_AUTO = -1 } qg_code_layout;

/* "zstd-22", "brotli-11", "xz-9e", "zlib-9", "rans", "none". As a byte compressor "rans"
 * is an order-0 rANS stream over bytes; as the artifact's compressor it selects format
 * version 2: codes entropy-coded per stream (io/qgz_rans.h), the rest of the payload
 * ("meta": names, shapes, scales) brotli-11 with f16/bf16 sections delta-coded (their
 * bit patterns are monotone in the value, so a delta is a log-domain step) and split into
 * low and high byte planes. */
const char *qg_compressor_name(qg_compressor c);
/* "zstd", "brotli", "xz", "zlib", "rans", "none" */
qg_status qg_compressor_from_name(const char *name, qg_compressor *out);
/* brotli's quality for every brotli stream written (11 unless changed; 0..11). Readers
 * and the format do not depend on it: fuzzers lower it so that encoding stays fast. */
void qg_qgz_set_brotli_quality(int q);
/* Whether the rans writer may leave code sections inline in its brotli meta when that is
 * smaller (on unless turned off): tests turn it off to get every stream in the code block. */
void qg_qgz_rans_set_inline(int on);
/* One-shot compression at the artifact's levels (malloc'd output). */
qg_status qg_compress(qg_compressor c, const uint8_t *in, size_t n, uint8_t **out, size_t *out_len);
/* Decompresses into out, which must receive exactly expect bytes; fname for messages. */
qg_status qg_decompress(qg_compressor c, const uint8_t *in, size_t n, uint8_t *out, size_t expect, const char *fname);

/* The uncompressed payload of tensors q[0..n) in a layout (not AUTO). */
qg_status qg_qgz_payload(const qg_qtensor *const *q, int n, qg_code_layout layout, qg_buf *out);

typedef struct {
  qg_compressor comp;
  qg_code_layout layout;     /* the one written */
  size_t raw_bytes;          /* payload bytes of the written layout */
  size_t packed_raw, bytes_raw;            /* payload bytes of each layout */
  size_t packed_compressed, bytes_compressed; /* compressed size of each layout (0 = not tried) */
  size_t file_bytes;         /* header + compressed payload */
  /* rans only: the split of file_bytes - header */
  size_t meta_compressed;    /* varint + brotli meta (names, shapes, scales, wide codes) */
  size_t scale_raw;          /* raw bytes of the f16/bf16/f32 sections inside meta */
  size_t code_payload, code_tables, code_stream_headers;
  int streams_own, streams_shared, streams_brotli, streams_ctx, streams_wide, shared_tables;
  int streams_permuted; /* of those, streams whose rows are coded in a stored order */
  int streams_transposed; /* brotli over the codes column-major (mode 8), not in streams_brotli */
  int streams_inline;   /* code sections left inline in the brotli meta */
} qg_qgz_info;

/* The whole file image; layout AUTO compresses both layouts and keeps the smaller. */
qg_status qg_qgz_encode(const qg_qtensor *const *q, int n, qg_compressor comp, qg_code_layout layout, uint8_t **file,
                        size_t *len, qg_qgz_info *info);
/* Encodes and writes atomically. */
qg_status qg_qgz_write(const char *path, const qg_qtensor *const *q, int n, qg_compressor comp,
                       qg_code_layout layout, qg_qgz_info *info);

typedef struct {
  qg_qtensor *t;
  int n;
  qg_compressor comp;
  qg_code_layout layout;
  uint64_t raw_bytes;
} qg_qgz;

void qg_qgz_free(qg_qgz *a);
/* True when the first bytes are a .qgz header. */
int qg_qgz_sniff(const uint8_t *head, size_t n);
qg_status qg_qgz_read_mem(const uint8_t *data, size_t len, const char *fname, qg_qgz *out);
qg_status qg_qgz_read(const char *path, qg_qgz *out);
#endif
