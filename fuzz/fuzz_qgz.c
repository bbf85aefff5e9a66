/* libFuzzer harness for the .qgz reader and every dequantizer behind it. The first input
 * byte picks the mode: even -> the rest is a whole .qgz file; odd -> the rest is an
 * uncompressed payload, wrapped here in a valid header (layout from bit 1, tensor count
 * from the second byte, correct CRC), so the fuzzer spends its time in the payload parser
 * and the dequantizers rather than in the decompressors' checksums. Whole files claiming
 * more than 64 MiB of payload are skipped (the reader accepts up to 2 GiB by design). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/util.h"
#include "io/qgz.h"
#include "quant/artifact.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  uint8_t mode = data[0];
  qg_state s;
  if (!(mode & 1)) {
    if (size - 1 >= QG_QGZ_HEADER && qg_rd_u64le(data + 1 + 16) > ((uint64_t)64 << 20)) return 0;
    if (qg_qgz_load_state_mem(data + 1, size - 1, "fuzz.qgz", &s) == QG_OK) qg_state_free(&s);
    return 0;
  }
  size_t n = size - 2;
  uint8_t *f = malloc(QG_QGZ_HEADER + n + 1);
  if (!f) return 0;
  memcpy(f, QG_QGZ_MAGIC, 4);
  qg_wr_u16le(f + 4, QG_QGZ_VERSION);
  f[6] = QG_COMP_NONE;
  f[7] = (mode >> 1) & 1;
  qg_wr_u32le(f + 8, data[1]);
  qg_wr_u32le(f + 12, (uint32_t)crc32(0L, data + 2, (uInt)n));
  qg_wr_u32le(f + 16, (uint32_t)n), qg_wr_u32le(f + 20, 0);
  qg_wr_u32le(f + 24, (uint32_t)n), qg_wr_u32le(f + 28, 0);
  memcpy(f + QG_QGZ_HEADER, data + 2, n);
  if (qg_qgz_load_state_mem(f, QG_QGZ_HEADER + n, "fuzz.qgz", &s) == QG_OK) qg_state_free(&s);
  free(f);
  return 0;
}
