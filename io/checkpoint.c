#include "io/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/util.h"
#include "io/ptz.h"
#include "io/qgz.h"
#include "io/safetensors.h"
#include "io/torchfile.h"

const char *qg_format_name(qg_format f) {
  switch (f) {
    case QG_FMT_SAFETENSORS: return "safetensors";
    case QG_FMT_PT: return "torch .pt state dict";
    case QG_FMT_PTZ: return "contest int8+zlib artifact (.ptz)";
    case QG_FMT_SHARD: return "contest token shard";
    case QG_FMT_SPM_MODEL: return "SentencePiece .model";
    case QG_FMT_SPM_VOCAB: return "SentencePiece .vocab";
    case QG_FMT_QGZ: return "quantgolf artifact (.qgz)";
    default: return "unknown";
  }
}

qg_format qg_detect_format(const uint8_t *head, size_t n, const char *path) {
  if (n >= 4 && qg_rd_u32le(head) == 20240520u) return QG_FMT_SHARD;
  if (qg_qgz_sniff(head, n)) return QG_FMT_QGZ;
  if (n >= 4 && !memcmp(head, "PK\3\4", 4)) return QG_FMT_PT;
  if (n >= 2 && head[0] == 0x78 && ((head[0] << 8) | head[1]) % 31 == 0) return QG_FMT_PTZ;
  if (n >= 9 && head[8] == '{' && qg_rd_u64le(head) >= 2) return QG_FMT_SAFETENSORS;
  if (path && qg_ends_with(path, ".vocab")) return QG_FMT_SPM_VOCAB;
  if (path && qg_ends_with(path, ".model")) return QG_FMT_SPM_MODEL;
  /* a ModelProto starts with its first piece: field 1, length-delimited */
  if (n >= 1 && head[0] == 0x0a) return QG_FMT_SPM_MODEL;
  /* a .vocab is printable text with a TAB on its first line */
  const uint8_t *tab = n ? memchr(head, '\t', n) : NULL;
  const uint8_t *nl = n ? memchr(head, '\n', n) : NULL;
  if (tab && (!nl || tab < nl)) return QG_FMT_SPM_VOCAB;
  return QG_FMT_UNKNOWN;
}

qg_status qg_detect_file_format(const char *path, qg_format *out) {
  *out = QG_FMT_UNKNOWN;
  FILE *f;
  QG_TRY(qg_open_regular(path, &f));
  uint8_t head[16];
  size_t n = fread(head, 1, sizeof head, f);
  fclose(f);
  *out = qg_detect_format(head, n, path);
  if (*out == QG_FMT_UNKNOWN)
    return qg_fail(QG_ERR_INPUT, "%s: offset 0: unrecognised format (expected safetensors, torch .pt, contest .ptz, "
                   "token shard, or SentencePiece .model/.vocab)", path);
  return QG_OK;
}

/* A torch zip is either a state dict or a bare (uncompressed) int8 artifact. */
static int zip_is_int8_artifact(const uint8_t *d, size_t n, const char *path) {
  qg_torchfile tf;
  if (qg_torchfile_open_mem(d, n, path, &tf) != QG_OK) return 0;
  int r = qg_py_dict_get(tf.pkl.root, "__quant_format__") != NULL;
  qg_torchfile_close(&tf);
  return r;
}

qg_status qg_checkpoint_read(const char *path, qg_state *out, qg_format *fmt) {
  qg_state_init(out);
  qg_format f;
  QG_TRY(qg_detect_file_format(path, &f));
  if (fmt) *fmt = f;
  if (f == QG_FMT_SAFETENSORS) return qg_safetensors_read(path, out);
  if (f == QG_FMT_QGZ)
    return qg_fail(QG_ERR_UNSUPPORTED, "%s: a %s is loaded by qg_checkpoint_load (quant/artifact.h)", path,
                   qg_format_name(f));
  if (f != QG_FMT_PT && f != QG_FMT_PTZ)
    return qg_fail(QG_ERR_INPUT, "%s: a %s, not a checkpoint", path, qg_format_name(f));
  uint8_t *d;
  size_t n;
  QG_TRY(qg_read_file(path, &d, &n, 0));
  qg_status s;
  if (f == QG_FMT_PT && !zip_is_int8_artifact(d, n, path)) {
    s = qg_pt_load_mem(d, n, path, out);
  } else {
    if (fmt) *fmt = QG_FMT_PTZ;
    qg_int8_artifact a;
    s = qg_ptz_read_mem(d, n, path, &a);
    if (!s) {
      s = qg_int8_dequantize(&a, out);
      qg_int8_artifact_free(&a);
    }
  }
  free(d);
  return s;
}
