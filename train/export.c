/* The end of a training run: the final float weights through a quantize spec into a real
 * artifact (DIR/final_model.qgz), exactly as `quantgolf quantize` would write it from
 * DIR/final_model.safetensors, so the post-quantization figures the trainer prints are
 * the figures of the file on disk, not of an in-memory approximation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "quant/job.h"
#include "train/train.h"

qg_status qg_train_spec_load(const char *text, qg_spec *out) {
  /* a spec is a YAML file when such a file exists, else inline rules (as --qat always took
   * it); a regular file only, so a directory named like a rule is not mistaken for one */
  struct stat sb;
  if (stat(text, &sb) == 0 && S_ISREG(sb.st_mode)) return qg_spec_load_yaml(text, out);
  return qg_spec_parse_inline(text, out);
}

/* GPTQ's Hessians come from the training shards: seeded random non-overlapping sequences
 * of the training stream (the data the model saw, never the validation text), one forward
 * pass of the float model per batch, on the trainer's backend at fp32 (a bf16 run's
 * Hessians are not rounded). As many sequences as asked for, as long as the stream holds
 * them without overlap. */
qg_status qg_train_export(const qg_trainer *t, const qg_train_export_opts *o, qg_train_export_info *info) {
  memset(info, 0, sizeof *info);
  qg_spec spec;
  qg_status s = qg_train_spec_load(o->spec, &spec);
  if (s) return qg_fail_prefix(s, "--export");
  int calib = qg_spec_needs_hessians(&spec);
  int len = o->calib_len > 0 ? o->calib_len : t->cfg.seq_len;
  int64_t total = qg_shards_count(&t->data.shards);
  int n = o->calib_seqs > 0 ? o->calib_seqs : 128;
  if ((int64_t)n * len > total) n = (int)(total / len);
  if (calib && n < 1) {
    qg_spec_free(&spec);
    return qg_fail(QG_ERR_INPUT,
                   "--export: the training shards hold %lld tokens, fewer than one calibration sequence of %d",
                   (long long)total, len);
  }
  const qg_ops *ops;
  if ((s = qg_ops_with_precision(t->ops, QG_PRECISION_FP32, &ops))) {
    qg_spec_free(&spec);
    return s;
  }
  qg_state w;
  if ((s = qg_trainer_weights(t, 0, &w))) {
    qg_spec_free(&spec);
    return s;
  }
  /* written atomically (temp + rename): a failure leaves no partial artifact */
  qg_qjob_opts jo = {.state = &w, .spec = &spec, .out = o->path, .compressor = QG_COMP_DEFAULT,
                     .layout = QG_LAYOUT_AUTO, .calib_shards = calib ? &t->data.shards : NULL, .calib_seqs = n,
                     .calib_len = len, .calib_seed = o->calib_seed, .mlp_power = t->cfg.mlp_power,
                     .calib_ops = ops};
  qg_qjob_result r;
  s = qg_quantize_job(&jo, &r);
  if (s) s = qg_fail_prefix(s, "--export");
  if (!s) {
    info->calib_seqs = r.calib_seqs;
    info->calib_len = r.calibrated ? r.calib_len : 0;
    info->hessians = r.hessians;
    info->calib_seconds = r.calib_seconds;
    info->quant_seconds = r.quant_seconds;
    info->packed_bytes = r.packed_bytes;
    info->params = r.params;
    info->file_bytes = (int64_t)r.info.file_bytes;
    info->raw_bytes = (int64_t)r.info.raw_bytes;
    info->tensors = r.qm.n;
    info->compressor = qg_compressor_name(r.info.comp);
    qg_qjob_result_free(&r);
  }
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
