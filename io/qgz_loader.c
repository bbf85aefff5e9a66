/* The loader's byte count (see io/qgz_loader.h): measured by CMake from the file itself. */
#include "io/qgz_loader.h"

#ifndef QG_QGZ_LOADER_BYTES
#error "QG_QGZ_LOADER_BYTES must be defined by the build (the size of python/qgz_load.py)"
#endif

int64_t qg_qgz_loader_bytes(void) { return (int64_t)QG_QGZ_LOADER_BYTES; }
