/* The code an entrant ships to read a .qgz: python/qgz_load.py (numpy only), which
 * dequantizes every method quantgolf writes. The contest counts the UTF-8 bytes of the
 * code in the submission (train_gpt.py adds len(code.encode("utf-8")) to the compressed
 * weights; the contest README's MontySteele entry: artifact + the script's bytes), so the
 * loader adds its own file size, uncompressed. `quantize --code-bytes auto` and
 * `allocate --code-bytes auto` count it. */
#ifndef QG_IO_QGZ_LOADER_H
#define QG_IO_QGZ_LOADER_H

#include <stdint.h>

#define QG_QGZ_LOADER_NAME "python/qgz_load.py"

/* Bytes of python/qgz_load.py as built into this binary (the build re-reads the file
 * whenever it changes). */
int64_t qg_qgz_loader_bytes(void);

#endif
