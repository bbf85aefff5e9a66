/* Content sniffing for every file format quantgolf reads, and loading the checkpoints io/
 * reads by itself (safetensors, torch .pt, contest .int8.ptz) into a qg_state with the
 * contest's tensor names and the dtypes its loader would see (.ptz dequantized). */
#ifndef QG_IO_CHECKPOINT_H
#define QG_IO_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "core/tensor.h"

typedef enum {
  QG_FMT_UNKNOWN = 0,
  QG_FMT_SAFETENSORS,
  QG_FMT_PT,        /* torch.save zip holding a state dict */
  QG_FMT_PTZ,       /* contest int8 artifact: zlib stream (or its bare torch zip) */
  QG_FMT_SHARD,     /* contest token shard */
  QG_FMT_SPM_MODEL, /* SentencePiece ModelProto */
  QG_FMT_SPM_VOCAB, /* SentencePiece .vocab text */
  QG_FMT_QGZ        /* quantgolf artifact (io/qgz.h), loaded as its dequantized weights */
} qg_format;

const char *qg_format_name(qg_format f);
/* Decides a file's format from its first bytes (head, n of them; 16 suffice) and, only
 * where content cannot tell (.model vs other binary), its extension. A torch zip is
 * reported as QG_FMT_PT; qg_checkpoint_load looks inside to tell a bare int8 artifact. */
qg_format qg_detect_format(const uint8_t *head, size_t n, const char *path);
qg_status qg_detect_file_format(const char *path, qg_format *out);

/* Loads a checkpoint of a format io/ reads by itself (safetensors, torch .pt, contest
 * .ptz). *fmt (may be NULL) receives the format. A .qgz needs its quantizers to
 * dequantize: qg_checkpoint_load (quant/artifact.h) takes every format, .qgz included. */
qg_status qg_checkpoint_read(const char *path, qg_state *out, qg_format *fmt);

#endif
