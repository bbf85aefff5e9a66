#include "core/dtype.h"

#include <math.h>
#include <string.h>

static const struct {
  const char *name;
  size_t size;
  int is_float;
} qg_dtype_info[QG_DTYPE_COUNT] = {
    [QG_F32] = {"float32", 4, 1}, [QG_F16] = {"float16", 2, 1}, [QG_BF16] = {"bfloat16", 2, 1},
    [QG_F64] = {"float64", 8, 1}, [QG_I8] = {"int8", 1, 0},     [QG_U8] = {"uint8", 1, 0},
    [QG_I16] = {"int16", 2, 0},   [QG_I32] = {"int32", 4, 0},   [QG_I64] = {"int64", 8, 0},
    [QG_BOOL] = {"bool", 1, 0},
};

size_t qg_dtype_size(qg_dtype t) { return (unsigned)t < QG_DTYPE_COUNT ? qg_dtype_info[t].size : 0; }
const char *qg_dtype_name(qg_dtype t) {
  return (unsigned)t < QG_DTYPE_COUNT ? qg_dtype_info[t].name : "invalid";
}
int qg_dtype_is_float(qg_dtype t) { return (unsigned)t < QG_DTYPE_COUNT && qg_dtype_info[t].is_float; }

int qg_dtype_from_name(const char *name, qg_dtype *out) {
  if (strncmp(name, "torch.", 6) == 0) name += 6;
  static const struct {
    const char *alias;
    qg_dtype t;
  } aliases[] = {{"float", QG_F32}, {"half", QG_F16}, {"double", QG_F64},
                 {"short", QG_I16}, {"int", QG_I32},  {"long", QG_I64}};
  for (int t = 0; t < QG_DTYPE_COUNT; t++)
    if (strcmp(name, qg_dtype_info[t].name) == 0) {
      *out = (qg_dtype)t;
      return 0;
    }
  for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
    if (strcmp(name, aliases[i].alias) == 0) {
      *out = aliases[i].t;
      return 0;
    }
  return -1;
}

static uint32_t f2u(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float u2f(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float qg_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0) {
    /* zero or subnormal: man * 2^-24, exact in float */
    float v = (float)man * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  if (exp == 31) return u2f(sign | 0x7f800000u | (man << 13));
  return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t qg_f32_to_f16(float f) {
  uint32_t u = f2u(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
  uint32_t a = u & 0x7fffffffu;
  if (a >= 0x7f800000u) /* inf or NaN (keep a quiet NaN payload bit) */
    return sign | 0x7c00 | (a > 0x7f800000u ? 0x200 : 0);
  if (a >= 0x477ff000u) return sign | 0x7c00; /* rounds to >= 65520: overflow to inf */
  if (a < 0x38800000u) {
    /* result is subnormal or zero: value / 2^-24, rounded half to even */
    float v = u2f(a) * 16777216.0f; /* exact scaling by 2^24 */
    return sign | (uint16_t)lrintf(v); /* lrintf rounds half-even in the default mode */
  }
  /* normal: drop 13 mantissa bits with round-half-even */
  uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
  return sign | (uint16_t)((r - 0x38000000u) >> 13);
}

float qg_bf16_to_f32(uint16_t b) { return u2f((uint32_t)b << 16); }

uint16_t qg_f32_to_bf16(float f) {
  uint32_t u = f2u(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

double qg_read_elem(const void *data, qg_dtype t, size_t i) {
  const unsigned char *p = (const unsigned char *)data;
  switch (t) {
    case QG_F32: { float v; memcpy(&v, p + 4 * i, 4); return v; }
    case QG_F64: { double v; memcpy(&v, p + 8 * i, 8); return v; }
    case QG_F16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return qg_f16_to_f32(v); }
    case QG_BF16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return qg_bf16_to_f32(v); }
    case QG_I8: return (double)(int8_t)p[i];
    case QG_U8: return (double)p[i];
    case QG_BOOL: return p[i] ? 1.0 : 0.0;
    case QG_I16: { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case QG_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case QG_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    default: return NAN;
  }
}
