/* Element types and the scalar conversions every format needs (f16, bf16). */
#ifndef QG_CORE_DTYPE_H
#define QG_CORE_DTYPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  QG_F32 = 0,
  QG_F16,
  QG_BF16,
  QG_F64,
  QG_I8,
  QG_U8,
  QG_I16,
  QG_I32,
  QG_I64,
  QG_BOOL,
  QG_DTYPE_COUNT
} qg_dtype;

size_t qg_dtype_size(qg_dtype t);
/* Lower-case torch-style names: "float32", "float16", "bfloat16", "int8", ... */
const char *qg_dtype_name(qg_dtype t);
/* Parses a torch-style name (with or without "torch." prefix); returns 0 on success. */
int qg_dtype_from_name(const char *name, qg_dtype *out);
int qg_dtype_is_float(qg_dtype t);

/* IEEE half <-> float. f32 -> f16 rounds to nearest even, handles subnormals, inf, NaN. */
float qg_f16_to_f32(uint16_t h);
uint16_t qg_f32_to_f16(float f);
/* bfloat16 <-> float. f32 -> bf16 rounds to nearest even (as torch's .to(bfloat16)). */
float qg_bf16_to_f32(uint16_t b);
uint16_t qg_f32_to_bf16(float f);

/* Reads element i of a buffer of type t as double (for inspection and conversion). */
double qg_read_elem(const void *data, qg_dtype t, size_t i);

#ifdef __cplusplus
}
#endif

#endif
