/* Passthrough quantizers (fp16, bf16, fp32; raw for non-float tensors) and contest-int8,
 * the contest's own export applied to one tensor (io/contest_int8.c, bit-exact). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/ptz.h"
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

const qg_quantizer qg_quantizer_fp16 = {"fp16", "IEEE half passthrough", none_parse, none_free, none_canon,
                                        fp16_can_take, fp16_quantize, fp16_dequantize, NULL, NULL};
const qg_quantizer qg_quantizer_bf16 = {"bf16", "bfloat16 passthrough", none_parse, none_free, none_canon,
                                        bf16_can_take, bf16_quantize, bf16_dequantize, NULL, NULL};
const qg_quantizer qg_quantizer_fp32 = {"fp32", "float32 passthrough (exact)", none_parse, none_free, none_canon,
                                        fp32_can_take, fp32_quantize, fp32_dequantize, NULL, NULL};

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

const qg_quantizer qg_quantizer_raw = {"raw", "exact bytes in the tensor's own dtype (non-float tensors)",
                                       none_parse, none_free, none_canon, raw_can_take, raw_quantize,
                                       raw_dequantize, raw_native, NULL};

/* ---- contest-int8 --------------------------------------------------------------------- */

/* The value the contest's loader sees: f32 rounded through the original dtype. */
static float to_orig(float v, qg_dtype d) {
  if (d == QG_BF16) return qg_bf16_to_f32(qg_f32_to_bf16(v));
  if (d == QG_F16) return qg_f16_to_f32(qg_f32_to_f16(v));
  return v;
}

static qg_status ci8_can_take(const void *c, const char *n, int d, const int64_t *s) {
  (void)c;
  if (numel_of(d, s) < 0) return qg_cannot_take("contest-int8", n, d, s, "bad shape");
  return QG_OK;
}

/* Runs qg_int8_quantize on a one-tensor state so every rule (keep-float size limit,
 * control names, per-row vs per-tensor, quantile, floors) is the contest's. */
static qg_status ci8_quantize(const void *cfg, const qg_qinput *in, qg_qtensor *out) {
  (void)cfg;
  qg_state one;
  qg_state_init(&one);
  qg_tensor *t;
  int64_t shape2[2] = {in->rows, in->cols};
  int ndim = in->ndim > 0 ? in->ndim : 2;
  const int64_t *shape = in->ndim > 0 ? in->shape : shape2;
  qg_dtype dt = in->src && qg_dtype_is_float(in->src->dtype) ? in->src->dtype : QG_F32;
  qg_status s = qg_state_add(&one, in->name ? in->name : "tensor", dt, ndim, shape, &t);
  if (s) return s;
  if (dt == QG_F32) memcpy(t->data, in->w, t->nbytes);
  else memcpy(t->data, in->src->data, t->nbytes);
  out->orig_dtype = dt;
  qg_int8_artifact a;
  s = qg_int8_quantize(&one, &a);
  qg_state_free(&one);
  if (s) return s;
  int64_t n = in->rows * in->cols;
  if (a.quantized.n == 1) {
    uint32_t *codes;
    const int8_t *q = a.quantized.t[0].data;
    s = qg_qtensor_add(out, "codes", QG_SEC_CODES, 8, n, (void **)&codes);
    for (int64_t i = 0; !s && i < n; i++) codes[i] = (uint32_t)(q[i] + 127);
    const qg_tensor *sc = &a.scales.t[0];
    if (!s && sc->dtype == QG_F16) {
      uint16_t *h;
      if (!(s = qg_qtensor_add(out, "scales", QG_SEC_F16, 0, in->rows, (void **)&h))) memcpy(h, sc->data, sc->nbytes);
    } else if (!s) {
      float *f;
      if (!(s = qg_qtensor_add(out, "scale", QG_SEC_F32, 0, 1, (void **)&f))) memcpy(f, sc->data, sizeof *f);
    }
  } else if (a.passthrough.n == 1) {
    const qg_tensor *p = &a.passthrough.t[0];
    void *d;
    qg_sec_kind k = p->dtype == QG_F16 ? QG_SEC_F16 : p->dtype == QG_BF16 ? QG_SEC_BF16 : QG_SEC_F32;
    if (!(s = qg_qtensor_add(out, "data", k, 0, n, &d))) memcpy(d, p->data, p->nbytes);
  } else {
    s = qg_fail(QG_ERR_INTERNAL, "contest int8 export produced nothing");
  }
  qg_int8_artifact_free(&a);
  return s;
}

static qg_status ci8_dequantize(const void *cfg, const qg_qtensor *q, float *w) {
  (void)cfg;
  int64_t n = q->rows * q->cols;
  qg_dtype od = q->orig_dtype;
  const qg_qsection *cs = qg_qtensor_find(q, "codes"), *ss;
  if (!cs) { /* kept float (fp16 for most, fp32 for control tensors), as keep_float_tensor */
    const qg_qsection *d = qg_qtensor_find(q, "data");
    if (!d) return qg_fail(QG_ERR_INPUT, "tensor '%s' (contest-int8): neither 'codes' nor 'data'", q->name);
    if (d->kind == QG_SEC_F32) return fp32_dequantize(cfg, q, w);
    QG_TRY(half_dequantize(q, w, d->kind == QG_SEC_BF16 ? QG_SEC_BF16 : QG_SEC_F16));
    for (int64_t i = 0; i < n; i++) w[i] = to_orig(w[i], od);
    return QG_OK;
  }
  QG_TRY(qg_qtensor_need(q, "codes", QG_SEC_CODES, n, &cs));
  if (cs->bits != 8) return qg_fail(QG_ERR_INPUT, "tensor '%s' (contest-int8): codes must be 8-bit", q->name);
  const uint32_t *c = cs->data;
  for (int64_t i = 0; i < n; i++)
    if (c[i] > 254) return qg_fail(QG_ERR_INPUT, "tensor '%s' (contest-int8): code %u outside 0..254", q->name, c[i]);
  if (qg_qtensor_find(q, "scales")) {
    QG_TRY(qg_qtensor_need(q, "scales", QG_SEC_F16, q->rows, &ss));
    const uint16_t *h = ss->data;
    for (int64_t i = 0; i < n; i++)
      w[i] = to_orig((float)((int)c[i] - 127) * qg_f16_to_f32(h[i / q->cols]), od);
  } else {
    QG_TRY(qg_qtensor_need(q, "scale", QG_SEC_F32, 1, &ss));
    float sc = *(const float *)ss->data;
    for (int64_t i = 0; i < n; i++) w[i] = to_orig((float)((int)c[i] - 127) * sc, od);
  }
  return QG_OK;
}

const qg_quantizer qg_quantizer_contest_int8 = {
    "contest-int8", "the contest's int8 export (quantize_state_dict_int8) for one tensor, bit-exact",
    none_parse, none_free, none_canon, ci8_can_take, ci8_quantize, ci8_dequantize, NULL, NULL};
