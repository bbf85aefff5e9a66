/* STE fake quantization for QAT through the quantizers' own specs (quant/spec.h): every
 * parameter a rule assigns (or that falls to the contest's default int8 export) is
 * replaced in the forward by dequantize(quantize(w)) with that rule's quantizer, so the
 * training sees exactly the grid the export will write (fp16 scales included). The
 * gradient w.r.t. the fake-quantized weight is applied to the float master weight
 * (straight-through); optionally it is zeroed where the weight lies beyond its row's
 * reconstructed range (the clip-range STE). Passthrough tensors (small/control, fp16 or
 * fp32) are left in float. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant/cuda/cuda_quant.h"
#include "train/cuda/cuda_optim.h"
#include "train/train.h"

/* Whether the device's rowwise fake quantization (quant/cuda/cuda_quant.h) takes assignment a
 * over parameter p: a rowwise rule whose canonical options make a device grid that fits
 * the tensor. Host code in every build; the grid is parsed from the same canonical string
 * the CPU quantizer parsed, so both round on the same grid. */
static int device_takes(const qg_spec_assign *a, const qg_gpt_param *p, qg_cuq_grid *g) {
  if (!a->cfg || !a->cfg->q || strcmp(a->cfg->q->name, "rowwise") != 0) return 0;
  int64_t rows, cols;
  qg_matrix_view(p->ndim, p->shape, &rows, &cols);
  return qg_cuq_grid_from_canon("rowwise", a->cfg->canon ? a->cfg->canon : "", g) == QG_OK &&
         qg_cuq_grid_fits(g, rows, cols) == QG_OK;
}

qg_status qg_qat_init(qg_qat *q, const char *spec_text, const qg_gpt_layout *l) {
  memset(q, 0, sizeof *q);
  qg_state_init(&q->names);
  qg_status s = qg_train_spec_load(spec_text, &q->spec);
  if (s) return qg_fail_prefix(s, "--qat");
  /* the plan needs names, shapes and dtypes; one float per tensor keeps it cheap */
  for (int i = 0; !s && i < l->n; i++) {
    qg_tensor *t;
    s = qg_state_add(&q->names, l->p[i].name, QG_F32, l->p[i].ndim, l->p[i].shape, &t);
  }
  if (!s) s = qg_spec_plan_make(&q->spec, &q->names, &q->plan);
  if (!s) {
    q->quantized = calloc((size_t)l->n, sizeof *q->quantized);
    if (!q->quantized) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; !s && i < q->plan.n; i++)
    q->quantized[q->plan.a[i].index] = q->plan.a[i].kind != QG_ASSIGN_PASSTHROUGH;
  /* which of them the device path could fake-quantize itself (used only on the GPU) */
  if (!s) {
    q->on_device = calloc((size_t)l->n, sizeof *q->on_device);
    q->grid = malloc(sizeof(qg_cuq_grid));
    if (!q->on_device || !q->grid) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  for (int i = 0; !s && i < q->plan.n; i++) {
    const qg_spec_assign *a = &q->plan.a[i];
    if (!q->quantized[a->index]) continue;
    q->on_device[a->index] = device_takes(a, &l->p[a->index], q->grid);
    if (q->on_device[a->index]) q->n_device++;
    else q->n_host++;
  }
  if (!s) qg_clear_error(); /* a grid the device declines is not an error */
  if (s) {
    qg_qat_free(q);
    return qg_fail_prefix(s, "--qat");
  }
  return QG_OK;
}

void qg_qat_free(qg_qat *q) {
  qg_spec_plan_free(&q->plan);
  qg_spec_free(&q->spec);
  qg_state_free(&q->names);
  free(q->quantized);
  free(q->on_device);
  free(q->grid);
  memset(q, 0, sizeof *q);
}

/* dequantize(quantize(w)) of one parameter on the host: w and out point at its values. */
static qg_status fake_quant_host(const qg_qat *q, const qg_spec_assign *a, const qg_gpt_param *p, const float *w,
                                 float *out) {
  qg_qinput in;
  memset(&in, 0, sizeof in);
  in.name = p->name;
  in.w = w;
  in.ndim = p->ndim;
  in.shape[0] = p->shape[0];
  in.shape[1] = p->shape[1];
  qg_matrix_view(p->ndim, p->shape, &in.rows, &in.cols);
  in.dtype = QG_F32;
  in.seed = q->spec.seed;
  qg_qtensor qt;
  QG_TRY(qg_quantize(a->cfg, &in, &qt));
  qg_status s = qg_dequantize(a->cfg, &qt, out);
  qg_qtensor_free(&qt);
  if (s) return qg_fail_prefix(s, "QAT on '%s'", p->name);
  return QG_OK;
}

qg_status qg_qat_apply(const qg_qat *q, const qg_gpt_layout *l, const float *w, float *weff) {
  memcpy(weff, w, sizeof(float) * (size_t)l->total);
  for (int i = 0; i < q->plan.n; i++) {
    const qg_spec_assign *a = &q->plan.a[i];
    if (!q->quantized[a->index]) continue;
    const qg_gpt_param *p = &l->p[a->index];
    QG_TRY(fake_quant_host(q, a, p, w + p->offset, weff + p->offset));
  }
  return QG_OK;
}

void qg_qat_mask(const qg_qat *q, const qg_gpt_layout *l, const float *w, const float *weff, float *g) {
  for (int i = 0; i < l->n; i++) {
    if (!q->quantized[i]) continue;
    const qg_gpt_param *p = &l->p[i];
    int64_t rows, cols;
    qg_matrix_view(p->ndim, p->shape, &rows, &cols);
    for (int64_t r = 0; r < rows; r++) {
      const float *wr = w + p->offset + r * cols, *qr = weff + p->offset + r * cols;
      float *gr = g + p->offset + r * cols;
      float mx = 0;
      for (int64_t j = 0; j < cols; j++) mx = fabsf(qr[j]) > mx ? fabsf(qr[j]) : mx;
      for (int64_t j = 0; j < cols; j++)
        if (fabsf(wr[j]) > mx) gr[j] = 0.0f;
    }
  }
}

/* ---- on a CUDA op table's memory ---------------------------------------------------- */

qg_status qg_qat_apply_device(const qg_qat *q, const qg_gpt_layout *l, const qg_ops *o, const float *dw, float *dweff) {
  QG_TRY(o->copy(o, dweff, dw, sizeof(float) * (size_t)l->total));
  float *hw = NULL, *hq = NULL; /* host staging for the round-trip tensors, grown on demand */
  int64_t cap = 0;
  qg_status s = QG_OK;
  for (int i = 0; !s && i < q->plan.n; i++) {
    const qg_spec_assign *a = &q->plan.a[i];
    if (!q->quantized[a->index]) continue;
    const qg_gpt_param *p = &l->p[a->index];
    int64_t rows, cols;
    qg_matrix_view(p->ndim, p->shape, &rows, &cols);
    if (q->on_device[a->index] && device_takes(a, p, q->grid)) {
      s = qg_cuq_fakequant(q->grid, dw + p->offset, dweff + p->offset, rows, cols);
      if (s) s = qg_fail_prefix(s, "QAT on '%s' (cuda)", p->name);
      continue;
    }
    /* a quantizer the device does not run: down, through the CPU quantizer, and up */
    if (p->numel > cap) {
      free(hw), free(hq);
      hw = malloc(sizeof(float) * (size_t)p->numel);
      hq = malloc(sizeof(float) * (size_t)p->numel);
      cap = p->numel;
      if (!hw || !hq) {
        s = qg_fail(QG_ERR_NOMEM, "out of memory staging '%s' for QAT", p->name);
        break;
      }
    }
    s = o->download(o, hw, dw + p->offset, sizeof(float) * (size_t)p->numel);
    if (!s) s = fake_quant_host(q, a, p, hw, hq);
    if (!s) s = o->upload(o, dweff + p->offset, hq, sizeof(float) * (size_t)p->numel);
  }
  free(hw), free(hq);
  return s;
}

qg_status qg_qat_mask_device(const qg_qat *q, const qg_gpt_layout *l, const float *dw, const float *dweff, float *dg) {
  for (int i = 0; i < l->n; i++) {
    if (!q->quantized[i]) continue;
    const qg_gpt_param *p = &l->p[i];
    int64_t rows, cols;
    qg_matrix_view(p->ndim, p->shape, &rows, &cols);
    QG_TRY(qg_cuda_qat_mask(dw + p->offset, dweff + p->offset, dg + p->offset, rows, cols));
  }
  return QG_OK;
}
