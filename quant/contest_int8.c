/* contest-int8: the contest's own int8 export (quantize_state_dict_int8, implemented in
 * io/contest_int8.c) applied to one tensor, bit-exact. Sections: "codes" (8-bit, int8 + 127)
 * with "scales" (fp16 per row) or "scale" (one fp32); or, for a tensor the contest keeps
 * in float, "data" (f16/bf16/f32) as the export stored it. */
#include <stdlib.h>
#include <string.h>

#include "io/ptz.h"
#include "quant/quant_internal.h"

static qg_status ci8_parse(qg_opts *o, void **cfg) {
  (void)o;
  *cfg = NULL;
  return QG_OK;
}
static void ci8_free_cfg(void *cfg) { (void)cfg; }
static void ci8_canon(const void *cfg, qg_buf *b) { (void)cfg, (void)b; }

/* The value the contest's loader sees: f32 rounded through the original dtype. */
static float to_orig(float v, qg_dtype d) {
  if (d == QG_BF16) return qg_bf16_to_f32(qg_f32_to_bf16(v));
  if (d == QG_F16) return qg_f16_to_f32(qg_f32_to_f16(v));
  return v;
}

static qg_status ci8_can_take(const void *c, const char *n, int d, const int64_t *s) {
  (void)c;
  if (qg_shape_numel(d, s) < 0) return qg_cannot_take("contest-int8", n, d, s, "bad shape");
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
    if (d->kind == QG_SEC_F32) {
      QG_TRY(qg_qtensor_need(q, "data", QG_SEC_F32, n, &d));
      memcpy(w, d->data, (size_t)n * sizeof *w);
      return QG_OK;
    }
    qg_sec_kind k = d->kind == QG_SEC_BF16 ? QG_SEC_BF16 : QG_SEC_F16;
    QG_TRY(qg_qtensor_need(q, "data", k, n, &d));
    const uint16_t *h = d->data;
    for (int64_t i = 0; i < n; i++) w[i] = to_orig(k == QG_SEC_F16 ? qg_f16_to_f32(h[i]) : qg_bf16_to_f32(h[i]), od);
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
    .name = "contest-int8",
    .summary = "the contest's int8 export (quantize_state_dict_int8) for one tensor, bit-exact",
    .parse = ci8_parse,
    .free_cfg = ci8_free_cfg,
    .canon = ci8_canon,
    .can_take = ci8_can_take,
    .quantize = ci8_quantize,
    .dequantize = ci8_dequantize,
};
