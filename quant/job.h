/* The quantize job: one checkpoint through a spec into a real artifact on disk, the
 * workflow `quantgolf quantize`, the trainer's --export and the experiment runner share:
 *   load (or take a state) -> calibrate (GPTQ's Hessians, when asked) -> quantize every
 *   tensor -> write the artifact atomically (.qgz, or the contest's .int8.ptz) -> measure
 *   (per-tensor figures, the file's real bytes, optionally the same payload under every
 *   compressor and the codes' order-0 entropy).
 * The library never prints: each stage is reported through the event callback. */
#ifndef QG_QUANT_JOB_H
#define QG_QUANT_JOB_H

#include <stdint.h>

#include "comm/comm.h"
#include "core/tensor.h"
#include "io/qgz.h"
#include "io/shards.h"
#include "kernels/ops.h"
#include "quant/pipeline.h"
#include "quant/spec.h"

typedef enum {
  QG_QJOB_LOADED = 0,  /* the float state is in memory: n = its tensor count */
  QG_QJOB_CALIBRATED,  /* Hessians collected (result's calib_* fields are set) */
  QG_QJOB_TENSOR,      /* about to quantize tensor i of n (name) */
  QG_QJOB_QUANTIZED,   /* every tensor quantized: n tensors */
  QG_QJOB_WRITTEN,     /* the artifact is on disk (result's artifact_bytes is set) */
  QG_QJOB_COMPARED     /* the payload's size under every compressor is known */
} qg_qjob_stage;

typedef struct qg_qjob_result qg_qjob_result;
typedef void (*qg_qjob_cb)(void *ctx, qg_qjob_stage stage, int i, int n, const char *name, const qg_qjob_result *r);

typedef struct {
  /* the float weights: a checkpoint path, or a state already in memory (not modified) */
  const char *model;
  const qg_state *state;
  const qg_spec *spec;
  const char *out;             /* .qgz or .ptz (the contest's container, zlib) */
  qg_compressor compressor;    /* for .qgz, as given (QG_COMP_NONE writes it uncompressed) */
  int best_compressor;         /* try zstd, brotli, xz and zlib; keep the smallest file */
  qg_code_layout layout;       /* for .qgz */
  int compare_compressors;     /* also measure the payload under every compressor */
  /* calibration: NULL = none; "self" = sampled from the model; else a shard glob. Or
   * calib_shards, an already open stream (then calib is ignored). */
  const char *calib;
  const qg_shards *calib_shards;
  int calib_seqs;              /* 128 when 0 */
  int calib_len;               /* 1024 from shards, 128 for self, when 0 */
  uint64_t calib_seed;
  int64_t calib_skip;
  double calib_temp;           /* 1.0 when 0 */
  float mlp_power;             /* the model's MLP power (2 when 0) */
  /* where calibration and the quantizers run: "cpu", "cuda" or "auto" (NULL: "cpu"); a
   * cuda run without a usable GPU is an error, never a silent CPU run. calib_ops, when
   * set, is the backend calibration runs on instead (e.g. the trainer's). */
  const char *device;
  const qg_ops *calib_ops;
  /* Plan only: every tensor is quantized for its exact packed size (quantizers that need
   * a Hessian get the identity, so no calibration runs) and nothing is written. */
  int dry_run;
  /* Calibration files (quant/hessian_file.h): save the Hessians this run collects, or
   * load them instead of calibrating. A loaded file must come from the same checkpoint
   * file (SHA-256) and, when calib is also given, from the same calibration tokens. */
  const char *save_hessians, *load_hessians;
  /* calibration across ranks (quant/calibrate.h qg_calib_hessians_comm; NULL: this process
   * alone). Every rank collects the same Hessians; rank 0 alone then saves them, quantizes
   * and writes, the others return after calibrating (result's helper_rank set). */
  qg_comm *comm;
  qg_qjob_cb cb;
  void *cb_ctx;
} qg_qjob_opts;

struct qg_qjob_result {
  qg_qmodel qm;                /* per-tensor results (owned) */
  const char *quantize_device; /* where the quantizers ran: "cpu" or "cuda" */
  int ptz;                     /* written as the contest's .int8.ptz */
  qg_qgz_info info;            /* .qgz only */
  const char *compressor;      /* name of the one written */
  int64_t artifact_bytes;      /* the file's size on disk */
  int64_t params, packed_bytes;
  size_t raw_bytes;            /* uncompressed payload (compare_compressors, or .ptz) */
  size_t compressed[QG_COMP_COUNT]; /* the payload under each compressor (compare only) */
  double entropy_bytes;        /* order-0 entropy of the codes + packed side data (not a
                                * bound: context-modelling compressors go below it) */
  int calibrated;
  int helper_rank;             /* a rank other than 0 of o->comm: calibrated, nothing written */
  int dry_run;                 /* nothing was written (artifact_bytes is 0) */
  int hessians_loaded;         /* from load_hessians rather than a forward pass */
  /* the model file is itself a quantized artifact (.int8.ptz or .qgz): its weights are
   * dequantized codes, so requantizing compounds errors and saves little */
  int source_quantized;
  const char *source_format;   /* qg_format_name of the model file; NULL for a state */
  char tokens_sha256[65];      /* of the calibration tokens, when calibrated */
  int calib_seqs, calib_len, hessians;
  double calib_seconds, quant_seconds;
};

/* Runs the job. Checks everything cheap first (device, compressor/container, output
 * name) before loading or computing. On failure nothing is left at out. */
qg_status qg_quantize_job(const qg_qjob_opts *o, qg_qjob_result *r);
void qg_qjob_result_free(qg_qjob_result *r);
#endif
