/* Per-group quantization sensitivity: for each group of tensors (roles, layers, single
 * tensors or globs) and each candidate quantizer, the change in KLD to the float model
 * when that group alone moves from the base spec to the candidate, with a paired block
 * bootstrap over evaluation windows, and the compressed bytes it saves or spends.
 *
 * Work is shared: the calibration Hessians are collected once; every (tensor, candidate)
 * is quantized once and its codes cached; a cell's model is assembled from the cached
 * codes of its group and the base codes of every other tensor (no whole-model
 * requantization per cell); the float model's forward pass runs once per chunk of cell
 * models over the same windows (eval/qg_eval_run_many).
 *
 * Bytes: a tensor's cost is the compressed size of a one-tensor .qgz of it (same
 * compressor and code layout as the whole base artifact) minus the 32-byte header. The
 * whole artifact's one compressor stream is not the sum of its tensors' costs (shared
 * context across tensors can help or hurt: on 7L384d at int8 it is 2.2 % larger);
 * fixed_bytes absorbs that difference with the header and the tensors in no group (base
 * artifact bytes minus the sum of every group's base bytes), and tensor_bytes_sum lets a
 * reader measure it. */
#ifndef QG_LAB_SENSITIVITY_H
#define QG_LAB_SENSITIVITY_H

#include <stdint.h>

#include "core/util.h"
#include "eval/eval.h"
#include "io/qgz.h"

typedef void (*qg_sens_progress)(void *ctx, const char *stage, int i, int n);

typedef struct {
  const char *model, *val, *tokenizer;
  const char *base;       /* spec text every group starts from */
  const char *candidates; /* "rowwise bits=4|5; gptq bits=4": ';'-separated, '|' alternatives */
  const char *groups;     /* roles (NULL), layers, tensors, or GLOB[,GLOB...] */
  const char *calib;      /* token shard glob for Hessians (needed by gptq; enables estimators) */
  int calib_seqs, calib_len; /* 64 x 1024 when 0 */
  uint64_t calib_seed;
  qg_eval_opts eval;
  const char *device;     /* cpu (NULL), cuda, auto */
  float mlp_power;
  int allow_tokenizer_mismatch;
  qg_compressor comp;     /* 0 (QG_COMP_NONE) means QG_COMP_DEFAULT: costs are always compressed bytes */
  int chunk;              /* cell models evaluated per float pass (8 when 0) */
  /* loss-based estimators (lab/sensitivity_est.h), with --calib: est_seqs sequences of
   * calib_len per calibration subset (8 when 0, none when < 0), two disjoint subsets A
   * and B; Hutchinson with `probes` probes (8 when 0, none when < 0) on the first
   * probe_seqs of each subset (2 when 0) */
  int est_seqs, probes, probe_seqs;
  qg_sens_progress progress;
  void *progress_ctx;
} qg_sens_opts;

typedef struct {
  char *name;
  char **tensors;
  int n;
} qg_sens_group;

typedef struct {
  int group, cand;
  double kld, nll;              /* means over tokens of the assembled model */
  double delta_kld, lo, hi;     /* minus the base model, paired per token; 95 % block bootstrap */
  double delta_nll, nll_lo, nll_hi;
  int64_t bytes, base_bytes;
  double roi;                   /* (base_bytes - bytes) / delta_kld; NAN when delta_kld <= 0 */
  /* layer-local estimators (NAN without calibration Hessians), see qg_sens_result */
  double est_output, est_trace;
  /* loss-based estimators on calibration subsets A [0] and B [1] (NAN when not run), each
   * the candidate's value minus the base's, summed over the group's tensors: Fisher
   * (1/N) sum (g dY)^2; Hutchinson tr(H)/n x ||dW||^2 with its standard error over
   * probes; and the layer-local stand-ins above recomputed with each subset's Hessians */
  double est_fisher[2], est_hutch[2], est_hutch_se[2], est_output_ab[2], est_trace_ab[2];
} qg_sens_cell;

typedef struct {
  char model_sha256[65];
  int64_t tokens, windows;
  double base_kld, base_nll;
  int64_t base_artifact_bytes, fixed_bytes;
  int64_t tensor_bytes_sum;     /* sum of every tensor's own cost under the base spec */
  qg_sens_group *g;
  int ng;
  char **cand;
  int nc;
  qg_sens_cell *cells;          /* ng * nc, group-major */
  /* Spearman rank correlation with delta_kld over all cells (NAN when not computed):
   * est_output = sum over the group's tensors of tr(D H D^T) * (n/2) = sum ||dW X||^2 over
   * the calibration rows (D = Q(W) - W, H = 2/n X^T X the GPTQ Hessian); est_trace =
   * tr(H)/k * ||D||^2, HAWQ's form with the layer-local Hessian in place of the loss's. */
  double rho_output, rho_trace;
  /* the loss-based estimators' Spearman with delta_kld, per subset, and each ranking's
   * stability: Spearman between its cell values on subset A and on subset B */
  double rho_fisher[2], rho_hutch[2];
  double stab_fisher, stab_hutch, stab_output, stab_trace;
  int loss_est, est_seqs, est_len, probes, probe_seqs;
  double probe_eps_rel;         /* Hutchinson's step: this times the rms of the probed weights */
  double seconds_est;
  /* split-half stability: delta_kld recomputed on the even and the odd windows, Spearman
   * between the two (cells) */
  double rho_split;
  int calibrated;
  double seconds_calib, seconds_quant, seconds_eval, seconds_total;
} qg_sens_result;

/* Everything cheap is checked first (specs, candidates against every group tensor, globs,
 * data, calibration present when needed): bad input is QG_ERR_INPUT before any
 * quantization or evaluation. */
qg_status qg_sensitivity_run(const qg_sens_opts *o, qg_sens_result *r);
/* Only those checks (a caller that runs the engine later, e.g. the runner's allocate arm
 * while its file is read). */
qg_status qg_sensitivity_check(const qg_sens_opts *o);
void qg_sens_result_free(qg_sens_result *r);

/* Expands "rowwise bits=4|5; gptq bits=6" into "rowwise bits=4", "rowwise bits=5",
 * "gptq bits=6" (each '|' alternative of a k=v token, cartesian over tokens). */
qg_status qg_sens_expand_candidates(const char *text, char ***out, int *n);

/* Spearman rank correlation (average ranks for ties); NAN when n < 2 or a side is constant. */
double qg_spearman(const double *a, const double *b, int n);

/* DIR/sensitivity.json (schema_version 1) and a bar chart of delta_kld by group. */
qg_status qg_sens_json(const qg_sens_opts *o, const qg_sens_result *r, qg_buf *out);
qg_status qg_sens_svg(const qg_sens_result *r, qg_buf *out);
/* The ranked table (cells by ROI, best first), as text. */
void qg_sens_table(const qg_sens_result *r, qg_buf *out);
/* Writes sensitivity.json and sensitivity.svg into dir (created), each atomically. */
qg_status qg_sens_write(const qg_sens_opts *o, const qg_sens_result *r, const char *dir);

#endif
