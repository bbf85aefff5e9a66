/* The quantize job (quant/job.h). */
#include "quant/job.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "core/sha256.h"
#include "core/progress.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/ptz.h"
#include "model/gpt.h"
#include "quant/artifact.h"
#include "quant/calibrate.h"
#include "quant/backend.h"
#include "quant/hessian_file.h"

void qg_qjob_result_free(qg_qjob_result *r) {
  qg_qmodel_free(&r->qm);
  memset(r, 0, sizeof *r);
}

static void emit(const qg_qjob_opts *o, qg_qjob_stage st, int i, int n, const char *name, const qg_qjob_result *r) {
  if (o->cb) o->cb(o->cb_ctx, st, i, n, name, r);
}

static int64_t file_size(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 ? (int64_t)sb.st_size : -1;
}

/* Order-0 entropy (not a bound on what a context-modelling compressor reaches): code entropy plus every non-code section at its packed size. */
static double entropy_bytes(const qg_qtensor *q, double code_entropy_bits) {
  double b = code_entropy_bits / 8.0;
  for (int i = 0; i < q->nsec; i++)
    if (!(q->sec[i].kind == QG_SEC_CODES && !strcmp(q->sec[i].name, "codes")))
      b += (double)qg_qsection_packed_bytes(&q->sec[i]);
  return b;
}


/* A non-finite weight is the checkpoint's fault, not a sign that it is no GPT: named on
 * its own before the model is built (whose failures mean the layout does not fit). */
static qg_status check_finite(const qg_state *st) {
  for (int k = 0; k < st->n; k++) {
    const qg_tensor *t = &st->t[k];
    if (!qg_dtype_is_float(t->dtype)) continue;
    int64_t n = qg_tensor_numel(t);
    float *f = malloc(sizeof *f * (size_t)(n ? n : 1));
    if (!f) return qg_fail(QG_ERR_NOMEM, "out of memory checking '%s'", t->name);
    qg_tensor_to_f32(t, f);
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++)
      if (!isfinite(f[i])) bad = i;
    float v = bad >= 0 ? f[bad] : 0;
    free(f);
    if (bad >= 0)
      return qg_fail(QG_ERR_INPUT, "tensor '%s': element %lld is %s; calibration needs finite weights", t->name,
                     (long long)bad, isnan(v) ? "NaN" : "infinite");
  }
  return QG_OK;
}

/* Builds the model from the float state, picks calibration sequences (shards or sampled
 * from the model itself) and collects every linear layer's input Hessian. */
/* With map NULL only the calibration tokens are drawn and hashed (checking a loaded
 * calibration file against --calib); self-generation needs the model's forward passes
 * either way. */
static qg_status calibrate(const qg_qjob_opts *o, const qg_state *st, qg_hessian_map *map, qg_qjob_result *r) {
  const qg_ops *ops = o->calib_ops;
  if (!ops) QG_TRY(qg_ops_by_name(o->device ? o->device : "cpu", &ops));
  int self = !o->calib_shards && !strcmp(o->calib, "self");
  int n = o->calib_seqs > 0 ? o->calib_seqs : 128;
  int len = o->calib_len > 0 ? o->calib_len : self ? 128 : 1024;
  qg_gpt m;
  qg_gpt_options go = {.mlp_power = o->mlp_power};
  QG_TRY(check_finite(st));
  qg_status gs = qg_gpt_init(&m, st, &go, ops);
  if (gs) return qg_fail_prefix(gs, "--calib needs a contest GPT checkpoint");
  int32_t *seqs = malloc(sizeof *seqs * (size_t)n * (size_t)len);
  qg_status s = seqs ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory for calibration tokens");
  if (!s && self) {
    s = qg_calib_generate(&m, n, len, (float)(o->calib_temp > 0 ? o->calib_temp : 1.0), o->calib_seed, 1, seqs);
  } else if (!s && o->calib_shards) {
    s = qg_calib_from_shards(o->calib_shards, n, len, o->calib_seed, o->calib_skip, seqs);
  } else if (!s) {
    qg_shards sh;
    if (!(s = qg_shards_open(o->calib, &sh))) {
      if (!(s = qg_shards_check_vocab(&sh, m.cfg.vocab)))
        s = qg_calib_from_shards(&sh, n, len, o->calib_seed, o->calib_skip, seqs);
      qg_shards_close(&sh);
    }
  }
  if (!s) qg_sha256_buf(seqs, sizeof *seqs * (size_t)n * (size_t)len, r->tokens_sha256);
  if (!s && map)
    s = o->comm ? qg_calib_hessians_comm(&m, seqs, n, len, 0, o->comm, map) : qg_calib_hessians(&m, seqs, n, len, 0, map);
  free(seqs);
  qg_gpt_free(&m);
  r->calib_seqs = n, r->calib_len = len;
  if (map) r->hessians = map->n;
  return s;
}

/* A calibration file in place of a forward pass, refused when it was collected on
 * another checkpoint file or (with calib given too) on other calibration tokens. */
static qg_status load_hessians(const qg_qjob_opts *o, const qg_state *st, qg_hessian_map *map, qg_qjob_result *r) {
  qg_hessian_meta hm;
  QG_TRY(qg_hessians_load(o->load_hessians, map, &hm));
  qg_status s = QG_OK;
  if (o->model) {
    char sha[65];
    s = qg_sha256_file(o->model, sha);
    if (!s && strcmp(sha, hm.model_sha256))
      s = qg_fail(QG_ERR_INPUT, "--load-hessians %s: collected on another model (sha256 %.12s..., %s is %.12s...); "
                  "calibrate this model once with --save-hessians", o->load_hessians, hm.model_sha256, o->model, sha);
  }
  if (!s && (o->calib || o->calib_shards)) {
    s = calibrate(o, st, NULL, r);
    if (!s && strcmp(r->tokens_sha256, hm.tokens_sha256))
      s = qg_fail(QG_ERR_INPUT, "--load-hessians %s: its calibration tokens (sha256 %.12s..., %d x %d from %s) differ "
                  "from this run's --calib (%.12s..., %d x %d)", o->load_hessians, hm.tokens_sha256, hm.sequences,
                  hm.length, hm.source, r->tokens_sha256, r->calib_seqs, r->calib_len);
  }
  if (s) {
    qg_hessian_map_free(map);
    return s;
  }
  memcpy(r->tokens_sha256, hm.tokens_sha256, sizeof r->tokens_sha256);
  r->calib_seqs = hm.sequences, r->calib_len = hm.length, r->hessians = map->n;
  return QG_OK;
}

/* The dry run's stand-in Hessians: packed sizes do not depend on the Hessian, so the
 * identity lets GPTQ-style quantizers report their exact sizes without calibration. */
static qg_status identity_hessians(const qg_spec *spec, const qg_state *st, qg_hessian_map *map) {
  qg_spec_plan plan;
  QG_TRY(qg_spec_plan_make(spec, st, &plan));
  qg_status s = QG_OK;
  for (int i = 0; !s && i < plan.n; i++) {
    const qg_tensor *t = &st->t[plan.a[i].index];
    if (!plan.a[i].cfg->q->needs_hessian) continue;
    int64_t rows, cols;
    qg_matrix_view(t->ndim, t->shape, &rows, &cols);
    qg_hessian *h;
    if ((s = qg_hessian_map_get(map, t->name, cols, &h))) break;
    for (int64_t j = 0; j < cols; j++) h->H[j * cols + j] = 1;
    h->n = 1, h->finalized = 1;
  }
  qg_spec_plan_free(&plan);
  return s;
}

typedef struct {
  const qg_qjob_opts *o;
  const qg_qjob_result *r;
} tensor_ctx;

static void on_tensor(void *ctx, int i, int n, const char *name) {
  tensor_ctx *t = ctx;
  emit(t->o, QG_QJOB_TENSOR, i, n, name, t->r);
}

/* Writes the artifact; *raw gets the uncompressed payload of the layout written. */
static qg_status write_artifact(const qg_qjob_opts *o, const qg_qtensor **qp, qg_qjob_result *r, uint8_t **raw,
                                size_t *raw_n) {
  int n = r->qm.n;
  qg_status s;
  if (r->ptz) {
    qg_int8_artifact ia;
    QG_TRY(qg_qtensors_to_int8(qp, n, &ia));
    uint8_t *blob;
    size_t blen;
    if (!(s = qg_ptz_encode(&ia, &blob, &blen, raw, raw_n))) {
      s = qg_write_file_atomic(o->out, blob, blen);
      free(blob);
    }
    qg_int8_artifact_free(&ia);
    return s;
  }
  if (o->best_compressor) {
    /* every compressor the loader reads, each with its best layout; the smallest file wins */
    uint8_t *best = NULL;
    size_t best_n = 0;
    for (int c = QG_COMP_ZSTD; c < QG_COMP_COUNT; c++) {
      uint8_t *f;
      size_t fn;
      qg_qgz_info info;
      QG_TRY(qg_qgz_encode(qp, n, (qg_compressor)c, o->layout, &f, &fn, &info));
      if (!best || fn < best_n) {
        free(best);
        best = f, best_n = fn, r->info = info;
      } else {
        free(f);
      }
    }
    s = qg_write_file_atomic(o->out, best, best_n);
    free(best);
    QG_TRY(s);
    r->compressor = qg_compressor_name(r->info.comp);
  } else {
    QG_TRY(qg_qgz_write(o->out, qp, n, o->compressor, o->layout, &r->info));
  }
  if (!o->compare_compressors) return QG_OK;
  qg_buf b;
  qg_buf_init(&b);
  if ((s = qg_qgz_payload(qp, n, r->info.layout, &b))) {
    qg_buf_free(&b);
    return s;
  }
  *raw = b.p, *raw_n = b.n;
  return QG_OK;
}

qg_status qg_quantize_job(const qg_qjob_opts *o, qg_qjob_result *r) {
  memset(r, 0, sizeof *r);
  if (!o->spec || (!o->out && !o->dry_run) || (!o->model && !o->state))
    return qg_fail(QG_ERR_INPUT, "quantize job: a model, a spec and an output path are required");
  const qg_quant_backend *qb;
  QG_TRY(qg_quant_backend_by_device(o->device, &qb));
  r->quantize_device = qb->name;
  qg_compressor comp = o->compressor;
  r->ptz = o->out && qg_ends_with(o->out, ".ptz");
  if (r->ptz && (o->best_compressor || (comp != QG_COMP_ZSTD && comp != QG_COMP_ZLIB)))
    return qg_fail(QG_ERR_INPUT, "a .int8.ptz is always zlib-compressed (the contest's container)");
  r->compressor = r->ptz ? "zlib-9" : qg_compressor_name(comp);

  qg_state own;
  const qg_state *st = o->state;
  if (!st) {
    qg_format fmt;
    QG_TRY(qg_checkpoint_load(o->model, &own, &fmt));
    st = &own;
    r->source_format = qg_format_name(fmt);
    r->source_quantized = fmt == QG_FMT_PTZ || fmt == QG_FMT_QGZ;
  }
  emit(o, QG_QJOB_LOADED, 0, st->n, NULL, r);
  qg_hessian_map hmap;
  qg_hessian_map_init(&hmap);
  qg_status s = QG_OK;
  if (o->dry_run) {
    r->dry_run = 1;
    s = identity_hessians(o->spec, st, &hmap);
  } else if (o->load_hessians) {
    double t0 = qg_now();
    s = load_hessians(o, st, &hmap, r);
    r->calib_seconds = qg_now() - t0;
    r->calibrated = r->hessians_loaded = !s;
    if (!s) emit(o, QG_QJOB_CALIBRATED, 0, hmap.n, NULL, r);
  } else if (o->calib || o->calib_shards) {
    double t0 = qg_now();
    s = calibrate(o, st, &hmap, r);
    r->calib_seconds = qg_now() - t0;
    r->calibrated = !s;
    if (!s && qg_comm_rank(o->comm) == 0) emit(o, QG_QJOB_CALIBRATED, 0, hmap.n, NULL, r);
    if (!s && qg_comm_rank(o->comm) != 0) { /* rank 0 quantizes and writes */
      r->helper_rank = 1;
      if (st == &own) qg_state_free(&own);
      qg_hessian_map_free(&hmap);
      return QG_OK;
    }
    if (!s && o->save_hessians) {
      qg_hessian_meta hm = {.sequences = r->calib_seqs, .length = r->calib_len};
      memcpy(hm.tokens_sha256, r->tokens_sha256, sizeof hm.tokens_sha256);
      snprintf(hm.source, sizeof hm.source, "%s", o->calib_shards ? "(shards)" : o->calib);
      if (o->model) s = qg_sha256_file(o->model, hm.model_sha256);
      if (!s) s = qg_hessians_save(o->save_hessians, &hmap, &hm);
    }
  }
  double t0 = qg_now();
  if (!s) {
    tensor_ctx tc = {o, r};
    qg_quantize_opts qo = {.hessians = r->calibrated || r->dry_run ? &hmap : NULL, .progress = on_tensor,
                           .progress_ctx = &tc, .backend = qb};
    s = qg_quantize_model(st, o->spec, &qo, &r->qm);
  }
  if (st == &own) qg_state_free(&own);
  qg_hessian_map_free(&hmap);
  if (s) return s;
  emit(o, QG_QJOB_QUANTIZED, 0, r->qm.n, NULL, r);

  const qg_qtensor **qp = malloc(sizeof *qp * (size_t)(r->qm.n ? r->qm.n : 1));
  uint8_t *raw = NULL;
  size_t raw_n = 0;
  if (!qp) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int i = 0; !s && i < r->qm.n; i++) qp[i] = &r->qm.t[i].q;
  if (!s && !r->dry_run) s = write_artifact(o, qp, r, &raw, &raw_n);
  r->quant_seconds = qg_now() - t0;
  if (!s) {
    r->artifact_bytes = r->dry_run ? 0 : file_size(o->out);
    for (int i = 0; i < r->qm.n; i++) {
      r->params += r->qm.t[i].numel, r->packed_bytes += r->qm.t[i].packed_bytes;
      r->entropy_bytes += entropy_bytes(&r->qm.t[i].q, r->qm.t[i].entropy_bits);
    }
    r->raw_bytes = r->ptz || o->compare_compressors ? raw_n : r->info.raw_bytes;
    if (!r->dry_run) emit(o, QG_QJOB_WRITTEN, 0, r->qm.n, o->out, r);
  }
  /* the same payload under every compressor, for comparison */
  if (!s && o->compare_compressors && !r->dry_run) {
    for (int c = QG_COMP_ZSTD; !s && c < QG_COMP_COUNT; c++) {
      uint8_t *z;
      if (!(s = qg_compress((qg_compressor)c, raw ? raw : (const uint8_t *)"", raw_n, &z, &r->compressed[c]))) free(z);
    }
    if (!s) emit(o, QG_QJOB_COMPARED, 0, r->qm.n, NULL, r);
  }
  free(qp);
  free(raw);
  if (s) {
    if (r->artifact_bytes > 0) remove(o->out); /* no partial output: the figures failed */
    qg_qjob_result_free(r);
  }
  return s;
}
