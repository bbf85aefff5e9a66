/* Calibration files (quant/hessian_file.h). */
#include "quant/hessian_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/tensor.h"
#include "io/safetensors.h"

#define HF_FORMAT "quantgolf-hessians-v1"

qg_status qg_hessians_save(const char *path, const qg_hessian_map *map, const qg_hessian_meta *meta) {
  qg_state st;
  qg_state_init(&st);
  qg_status s = QG_OK;
  for (int i = 0; !s && i < map->n; i++) {
    const qg_hessian *h = &map->h[i];
    if (!h->finalized) s = qg_fail(QG_ERR_INTERNAL, "Hessian '%s' is not finalized", map->names[i]);
    int64_t shape[2] = {h->k, h->k};
    qg_tensor *t;
    if (!s) s = qg_state_add(&st, map->names[i], QG_F64, 2, shape, &t);
    if (!s) memcpy(t->data, h->H, sizeof(double) * (size_t)(h->k * h->k));
  }
  char num[32];
  if (!s) s = qg_state_set_meta(&st, "format", HF_FORMAT);
  if (!s) s = qg_state_set_meta(&st, "model_sha256", meta->model_sha256);
  if (!s) s = qg_state_set_meta(&st, "tokens_sha256", meta->tokens_sha256);
  snprintf(num, sizeof num, "%d", meta->sequences);
  if (!s) s = qg_state_set_meta(&st, "sequences", num);
  snprintf(num, sizeof num, "%d", meta->length);
  if (!s) s = qg_state_set_meta(&st, "length", num);
  if (!s) s = qg_state_set_meta(&st, "source", meta->source);
  if (!s) s = qg_safetensors_write(path, &st);
  qg_state_free(&st);
  return s;
}

static void copy_meta(char *dst, size_t cap, const char *v) { snprintf(dst, cap, "%s", v ? v : ""); }

qg_status qg_hessians_load(const char *path, qg_hessian_map *map, qg_hessian_meta *meta) {
  qg_hessian_map_init(map);
  memset(meta, 0, sizeof *meta);
  qg_state st;
  QG_TRY(qg_safetensors_read(path, &st));
  qg_status s = QG_OK;
  const char *fmt = qg_state_get_meta(&st, "format");
  if (!fmt || strcmp(fmt, HF_FORMAT))
    s = qg_fail(QG_ERR_INPUT, "%s: not a calibration file (its metadata lacks format=%s; write one with "
                "quantize --save-hessians)", path, HF_FORMAT);
  for (int i = 0; !s && i < st.n; i++) {
    const qg_tensor *t = &st.t[i];
    if (t->dtype != QG_F64 || t->ndim != 2 || t->shape[0] != t->shape[1] || t->shape[0] < 1) {
      s = qg_fail(QG_ERR_INPUT, "%s: tensor '%s' is not a square F64 Hessian", path, t->name);
      break;
    }
    qg_hessian *h;
    if (!(s = qg_hessian_map_get(map, t->name, t->shape[0], &h))) {
      memcpy(h->H, t->data, sizeof(double) * (size_t)(h->k * h->k));
      h->n = 1, h->finalized = 1; /* already (2/n) sum x x^T */
    }
  }
  if (!s) {
    copy_meta(meta->model_sha256, sizeof meta->model_sha256, qg_state_get_meta(&st, "model_sha256"));
    copy_meta(meta->tokens_sha256, sizeof meta->tokens_sha256, qg_state_get_meta(&st, "tokens_sha256"));
    copy_meta(meta->source, sizeof meta->source, qg_state_get_meta(&st, "source"));
    const char *v = qg_state_get_meta(&st, "sequences");
    meta->sequences = v ? atoi(v) : 0;
    v = qg_state_get_meta(&st, "length");
    meta->length = v ? atoi(v) : 0;
  }
  qg_state_free(&st);
  if (s) qg_hessian_map_free(map);
  return s;
}
