/* The host encoder's AVX2 build (quant/e8_host_avx2.c), which quant/e8.c calls where the
 * CPU has AVX2: quant/e8_core.h's qg_e8c_encode and qg_e8c_encode_search with the host's
 * search, the same results bit for bit. */
#ifndef QG_QUANT_E8_HOST_H
#define QG_QUANT_E8_HOST_H

#include <stdint.h>

#include "quant/e8_tables.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define QG_E8_HOST_AVX2 1
uint32_t qg_e8_host_encode_avx2(const qg_e8_tables *cb, const float *x, float *d2);
uint32_t qg_e8_host_encode_search_avx2(const qg_e8_tables *cb, const float *v, float *d2); /* v sanitised */
#else
#define QG_E8_HOST_AVX2 0
#endif

#endif
