/* The end of a training run: the final float weights through a quantize spec into a real
 * artifact (DIR/final_model.qgz), exactly as `quantgolf quantize` would write it from
 * DIR/final_model.safetensors, so the post-quantization figures the trainer prints are
 * the figures of the file on disk, not of an in-memory approximation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/progress.h"
#include "io/qgz.h"
#include "quant/calibrate.h"
#include "quant/pipeline.h"
#include "train/train.h"

qg_status qg_train_spec_load(const char *text, qg_spec *out) {
  /* a spec is a YAML file when such a file exists, else inline rules (as --qat always took
   * it); a regular file only, so a directory named like a rule is not mistaken for one */
  struct stat sb;
  if (stat(text, &sb) == 0 && S_ISREG(sb.st_mode)) return qg_spec_load_yaml(text, out);
  return qg_spec_parse_inline(text, out);
}

/* Whether any rule asks for a quantizer that needs calibration Hessians (GPTQ). */
static int needs_hessians(const qg_spec *s) {
  for (int i = 0; i < s->n; i++)
    if (s->rules[i].cfg.q && !strcmp(s->rules[i].cfg.q->name, "gptq")) return 1;
  return 0;
}

/* GPTQ's Hessians from the training shards: seeded random non-overlapping sequences of the
 * training stream (the data the model saw, never the validation text), one forward pass of
 * the float model per batch, on the trainer's backend. */
static qg_status calibrate(const qg_trainer *t, const qg_state *w, const qg_train_export_opts *o,
                           qg_hessian_map *map, int *nseq_out) {
  qg_gpt m;
  qg_gpt_options go = {.mlp_power = t->cfg.mlp_power};
  /* the trainer's backend with fp32 products (a bf16 run's Hessians are not rounded) */
  const qg_ops *ops;
  QG_TRY(qg_ops_with_precision(t->ops, QG_PRECISION_FP32, &ops));
  QG_TRY(qg_gpt_init(&m, w, &go, ops));
  int len = o->calib_len > 0 ? o->calib_len : t->cfg.seq_len;
  int64_t total = qg_shards_count(&t->data.shards);
  /* as many sequences as asked for, as long as the stream holds them without overlap */
  int n = o->calib_seqs > 0 ? o->calib_seqs : 128;
  if ((int64_t)n * len > total) n = (int)(total / len);
  qg_status s = QG_OK;
  int32_t *seqs = NULL;
  if (n < 1)
    s = qg_fail(QG_ERR_INPUT, "--export: the training shards hold %lld tokens, fewer than one calibration sequence of %d",
                (long long)total, len);
  else if (!(seqs = malloc(sizeof *seqs * (size_t)n * (size_t)len)))
    s = qg_fail(QG_ERR_NOMEM, "out of memory for calibration tokens");
  if (!s) s = qg_calib_from_shards(&t->data.shards, n, len, o->calib_seed, 0, seqs);
  if (!s) s = qg_calib_hessians(&m, seqs, n, len, 0, map);
  free(seqs);
  qg_gpt_free(&m);
  *nseq_out = n;
  return s;
}

qg_status qg_train_export(const qg_trainer *t, const qg_train_export_opts *o, qg_train_export_info *info) {
  memset(info, 0, sizeof *info);
  qg_spec spec;
  qg_status s = qg_train_spec_load(o->spec, &spec);
  if (s) return qg_fail_prefix(s, "--export");
  qg_state w;
  if ((s = qg_trainer_weights(t, 0, &w))) {
    qg_spec_free(&spec);
    return s;
  }
  qg_hessian_map map;
  qg_hessian_map_init(&map);
  double t0 = qg_now();
  if (needs_hessians(&spec)) {
    s = calibrate(t, &w, o, &map, &info->calib_seqs);
    info->calib_len = o->calib_len > 0 ? o->calib_len : t->cfg.seq_len;
    info->hessians = map.n;
    info->calib_seconds = qg_now() - t0;
  }
  qg_qmodel qm = {0};
  const qg_qtensor **qp = NULL;
  qg_qgz_info qi = {0};
  t0 = qg_now();
  if (!s) {
    qg_quantize_opts qo = {.hessians = info->hessians ? &map : NULL};
    s = qg_quantize_model(&w, &spec, &qo, &qm);
    if (s) s = qg_fail_prefix(s, "--export");
  }
  if (!s && !(qp = malloc(sizeof *qp * (size_t)(qm.n ? qm.n : 1)))) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int i = 0; !s && i < qm.n; i++) {
    qp[i] = &qm.t[i].q;
    info->packed_bytes += qm.t[i].packed_bytes;
    info->params += qm.t[i].numel;
  }
  /* written atomically (temp + rename): a failure leaves no partial artifact */
  if (!s) s = qg_qgz_write(o->path, qp, qm.n, QG_COMP_ZSTD, QG_LAYOUT_AUTO, &qi);
  info->quant_seconds = qg_now() - t0;
  if (!s) {
    info->file_bytes = (int64_t)qi.file_bytes;
    info->raw_bytes = (int64_t)qi.raw_bytes;
    info->tensors = qm.n;
    info->compressor = qg_compressor_name(qi.comp);
  }
  free(qp);
  qg_qmodel_free(&qm);
  qg_hessian_map_free(&map);
  qg_state_free(&w);
  qg_spec_free(&spec);
  return s;
}

qg_status qg_train_export_check(const qg_train_config *c, const char *spec_text) {
  qg_gpt_config mc;
  qg_gpt_layout l;
  QG_TRY(qg_gpt_config_make(c->vocab, c->layers, c->dim, c->heads, c->kv_heads, c->mlp_mult * c->dim, !c->untied,
                            c->mlp_power, &mc));
  QG_TRY(qg_gpt_layout_make(&mc, &l));
  qg_spec spec;
  qg_state names;
  qg_spec_plan plan;
  qg_state_init(&names);
  qg_status s = qg_train_spec_load(spec_text, &spec);
  if (s) {
    qg_gpt_layout_free(&l);
    return qg_fail_prefix(s, "--export");
  }
  /* the plan needs names, shapes and dtypes only: tensors without data */
  for (int i = 0; !s && i < l.n; i++) {
    qg_tensor *t;
    s = qg_state_add(&names, l.p[i].name, QG_F32, l.p[i].ndim, l.p[i].shape, &t);
  }
  if (!s && !(s = qg_spec_plan_make(&spec, &names, &plan))) qg_spec_plan_free(&plan);
  else if (s) s = qg_fail_prefix(s, "--export");
  qg_state_free(&names);
  qg_spec_free(&spec);
  qg_gpt_layout_free(&l);
  return s;
}
