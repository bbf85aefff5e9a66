/* The four trivial passthroughs, together because each is a few lines around one shared
 * section layout ("data", the whole tensor): fp16, bf16, fp32 (stored as that float type)
 * and raw (the tensor's own bytes in its own dtype, for non-float tensors). */
#include <stdlib.h>
#include <string.h>

#include "quant/quant_internal.h"

static qg_status none_parse(qg_opts *o, void **cfg) {
  (void)o;
  *cfg = NULL;
  return QG_OK;
}
static void none_free(void *cfg) { (void)cfg; }
static void none_canon(const void *cfg, qg_buf *b) { (void)cfg, (void)b; }

static int64_t numel_of(int ndim, const int64_t *shape) { return qg_shape_numel(ndim, shape); }

/* ---- fp16 / bf16 / fp32 --------------------------------------------------------------- */

static qg_status float_can_take(const char *who, const char *name, int ndim, const int64_t *shape) {
  if (numel_of(ndim, shape) < 0) return qg_cannot_take(who, name, ndim, shape, "bad shape");
  return QG_OK;
}
static qg_status fp16_can_take(const void *c, const char *n, int d, const int64_t *s) {
  (void)c;
  return float_can_take("fp16", n, d, s);
}
static qg_status bf16_can_take(const void *c, const char *n, int d, const int64_t *s) {
  (void)c;
  return float_can_take("bf16", n, d, s);
}
static qg_status fp32_can_take(const void *c, const char *n, int d, const int64_t *s) {
  (void)c;
  return float_can_take("fp32", n, d, s);
}

static qg_status half_quantize(const qg_qinput *in, qg_qtensor *out, qg_sec_kind kind) {
  int64_t n = in->rows * in->cols;
  uint16_t *h;
  QG_TRY(qg_qtensor_add(out, "data", kind, 0, n, (void **)&h));
  for (int64_t i = 0; i < n; i++) h[i] = kind == QG_SEC_F16 ? qg_f32_to_f16(in->w[i]) : qg_f32_to_bf16(in->w[i]);
  return QG_OK;
}
static qg_status fp16_quantize(const void *c, const qg_qinput *in, qg_qtensor *out) {
  (void)c;
  return half_quantize(in, out, QG_SEC_F16);
}
static qg_status bf16_quantize(const void *c, const qg_qinput *in, qg_qtensor *out) {
  (void)c;
  return half_quantize(in, out, QG_SEC_BF16);
}
static qg_status fp32_quantize(const void *c, const qg_qinput *in, qg_qtensor *out) {
  (void)c;
  float *f;
  QG_TRY(qg_qtensor_add(out, "data", QG_SEC_F32, 0, in->rows * in->cols, (void **)&f));
  memcpy(f, in->w, (size_t)(in->rows * in->cols) * sizeof *f);
  return QG_OK;
}

static qg_status half_dequantize(const qg_qtensor *q, float *w, qg_sec_kind kind) {
  const qg_qsection *s;
  QG_TRY(qg_qtensor_need(q, "data", kind, q->rows * q->cols, &s));
  const uint16_t *h = s->data;
  for (int64_t i = 0; i < s->count; i++) w[i] = kind == QG_SEC_F16 ? qg_f16_to_f32(h[i]) : qg_bf16_to_f32(h[i]);
  return QG_OK;
}
static qg_status fp16_dequantize(const void *c, const qg_qtensor *q, float *w) {
  (void)c;
  return half_dequantize(q, w, QG_SEC_F16);
}
static qg_status bf16_dequantize(const void *c, const qg_qtensor *q, float *w) {
  (void)c;
  return half_dequantize(q, w, QG_SEC_BF16);
}
static qg_status fp32_dequantize(const void *c, const qg_qtensor *q, float *w) {
  (void)c;
  const qg_qsection *s;
  QG_TRY(qg_qtensor_need(q, "data", QG_SEC_F32, q->rows * q->cols, &s));
  memcpy(w, s->data, (size_t)s->count * sizeof *w);
  return QG_OK;
}

const qg_quantizer qg_quantizer_fp16 = {
    .name = "fp16",
    .summary = "IEEE half passthrough",
    .parse = none_parse,
    .free_cfg = none_free,
    .canon = none_canon,
    .can_take = fp16_can_take,
    .quantize = fp16_quantize,
    .dequantize = fp16_dequantize,
};

const qg_quantizer qg_quantizer_bf16 = {
    .name = "bf16",
    .summary = "bfloat16 passthrough",
    .parse = none_parse,
    .free_cfg = none_free,
    .canon = none_canon,
    .can_take = bf16_can_take,
    .quantize = bf16_quantize,
    .dequantize = bf16_dequantize,
};

const qg_quantizer qg_quantizer_fp32 = {
    .name = "fp32",
    .summary = "float32 passthrough (exact)",
    .parse = none_parse,
    .free_cfg = none_free,
    .canon = none_canon,
    .can_take = fp32_can_take,
    .quantize = fp32_quantize,
    .dequantize = fp32_dequantize,
};

/* ---- raw: any dtype, bytes kept exactly (non-float tensors) --------------------------- */

static qg_status raw_can_take(const void *c, const char *n, int d, const int64_t *s) {
  (void)c;
  if (numel_of(d, s) < 0) return qg_cannot_take("raw", n, d, s, "bad shape");
  return QG_OK;
}

static qg_status raw_quantize(const void *c, const qg_qinput *in, qg_qtensor *out) {
  (void)c;
  size_t n;
  const void *src;
  if (in->src) {
    n = in->src->nbytes, src = in->src->data;
    out->orig_dtype = in->src->dtype;
  } else {
    n = (size_t)(in->rows * in->cols) * sizeof(float), src = in->w;
    out->orig_dtype = QG_F32;
  }
  uint8_t *d;
  QG_TRY(qg_qtensor_add(out, "data", QG_SEC_RAW, 0, (int64_t)n, (void **)&d));
  memcpy(d, src, n);
  return QG_OK;
}

static qg_status raw_check(const qg_qtensor *q, const qg_qsection **s) {
  if ((unsigned)q->orig_dtype >= QG_DTYPE_COUNT)
    return qg_fail(QG_ERR_INPUT, "tensor '%s' (raw): bad dtype", q->name ? q->name : "?");
  return qg_qtensor_need(q, "data", QG_SEC_RAW, q->rows * q->cols * (int64_t)qg_dtype_size(q->orig_dtype), s);
}

static qg_status raw_dequantize(const void *c, const qg_qtensor *q, float *w) {
  (void)c;
  const qg_qsection *s;
  QG_TRY(raw_check(q, &s));
  for (int64_t i = 0; i < q->rows * q->cols; i++) w[i] = (float)qg_read_elem(s->data, q->orig_dtype, (size_t)i);
  return QG_OK;
}

static qg_status raw_native(const void *c, const qg_qtensor *q, qg_tensor *out) {
  (void)c;
  const qg_qsection *s;
  QG_TRY(raw_check(q, &s));
  QG_TRY(qg_tensor_alloc(out, q->name, q->orig_dtype, q->ndim, q->shape));
  memcpy(out->data, s->data, (size_t)s->count);
  return QG_OK;
}

const qg_quantizer qg_quantizer_raw = {
    .name = "raw",
    .summary = "exact bytes in the tensor's own dtype (non-float tensors)",
    .parse = none_parse,
    .free_cfg = none_free,
    .canon = none_canon,
    .can_take = raw_can_take,
    .quantize = raw_quantize,
    .dequantize = raw_dequantize,
    .dequantize_native = raw_native,
};
