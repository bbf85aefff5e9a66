/* Hypothesis files (experiments/NAME.yaml): what an experiment compares and how the verdict
 * is decided. The parser checks everything it can before any work starts: unknown keys, a
 * baseline or reference that is not an arm, specs that do not parse, unreadable paths,
 * train options that do not exist, fit parameters without their placeholder. Every error
 * names the file, the key and the problem (and the line).
 *
 * Schema (README "Experiments" has a complete example):
 *   id, hypothesis, model, tokenizer, data: {val, calib, seq_len, max_tokens, stride},
 *   reference: float | ARM, baseline: ARM, arms: {NAME: ARM...}, metric: kld|nll|bpb,
 *   expect: lower|higher, margin, alpha, seeds: [...], budget: {bytes, equal, code_bytes: N|auto},
 *   rule: contest, resamples, bootstrap_seed, compress, calib: {seqs, len, skip},
 *   train: {defaults for every trained arm}, published: "text", device: cpu|cuda|auto
 * An arm: {spec | spec_file | allocate: {budget, candidates, groups, sensitivity}, train: {...},
 *   fit: {param, values, to}, calib: {...}, compress, label, contest_passthrough, expect}. */
#ifndef QG_LAB_HYPOTHESIS_H
#define QG_LAB_HYPOTHESIS_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

/* bytes: the artifact's size, deterministic (its interval is a point) */
typedef enum { QG_METRIC_KLD = 0, QG_METRIC_NLL, QG_METRIC_BPB, QG_METRIC_BYTES } qg_metric;
const char *qg_metric_name(qg_metric m);

/* A training option as written (key without dashes, value text). */
typedef struct {
  char *key, *value;
  int line;
} qg_lab_kv;

typedef struct {
  char *name;
  char *label;            /* display text (default: name) */
  char *spec;             /* inline spec text; "none" keeps the model float; NULL when spec_file */
  char *spec_file;        /* resolved path, or NULL */
  int is_float;           /* spec: none */
  /* training: the experiment's train defaults overlaid by the arm's own (NULL/0: none) */
  int trains;
  qg_lab_kv *train;
  int n_train;
  /* fit: try each value in place of {param} and keep the artifact largest within the
   * budget (to: budget) or the one closest in bytes to another arm's (to: ARM) */
  char *fit_param;        /* bits | k | clip | dim, or NULL */
  char **fit_values;
  int n_fit;
  char *fit_to;           /* "budget" or an arm name */
  /* calibration for GPTQ: source glob ("self" for AR self-generated), sequences, length */
  char *calib;
  int calib_seqs, calib_len;
  int64_t calib_skip;
  char *compress;         /* zstd | brotli | xz | zlib (default: the experiment's) */
  int contest_passthrough; /* the spec leaves small float tensors to the contest's passthrough */
  int expect;             /* this arm's direction against the baseline (default: the experiment's) */
  /* allocate: {budget, candidates, groups, base, sensitivity}: the spec is the allocation
   * solver's choice, made when the experiment runs (qg_lab_result.alloc holds it) */
  int allocates;
  int64_t alloc_budget;
  char *alloc_candidates, *alloc_groups, *alloc_sensitivity; /* sensitivity NULL: measured in place */
  char *alloc_base;                                          /* the engine's base spec (rowwise bits=8) */
  int line;
} qg_lab_arm;

typedef struct {
  char *path, *dir;       /* the file and its folder (relative paths resolve against it) */
  char *id, *hypothesis, *published;
  char *notes;            /* free text the report prints (what the setup implies) */
  char *published_arm;    /* published: {text, arm, value}: the figure the report compares with */
  double published_value;
  char *model, *tokenizer;
  char *val, *calib;      /* resolved globs */
  int seq_len, stride;
  int64_t max_tokens;
  char *reference;        /* "float" or an arm name */
  char *baseline;
  qg_lab_arm *arms;
  int n_arms;
  qg_metric metric;
  int expect;             /* -1 lower, +1 higher */
  double margin, alpha;
  uint64_t *seeds;
  int n_seeds;
  int has_budget;
  int64_t budget_bytes;   /* 0: no byte cap */
  double budget_equal;    /* 0: not required; else max spread (max - min) / max */
  int64_t budget_code_bytes; /* the shipped code's bytes, counted with every artifact against budget.bytes */
  int rule_contest;       /* the contest's record rule: 0.005 nats at p < 0.01 */
  int resamples;
  uint64_t bootstrap_seed;
  char *compress;         /* default compressor */
  int calib_seqs, calib_len;
  int64_t calib_skip;
  char *device;           /* cpu | cuda | auto (default cpu) */
  char *source_text;      /* the file's bytes, for hashing and the report */
} qg_lab_hypothesis;

/* Parses and validates; on failure nothing is allocated. */
qg_status qg_lab_hypothesis_load(const char *path, qg_lab_hypothesis *out);
qg_status qg_lab_hypothesis_parse(const char *text, size_t len, const char *path, qg_lab_hypothesis *out);
void qg_lab_hypothesis_free(qg_lab_hypothesis *h);
/* Whether an arm is compared with the baseline (not the baseline, not the reference arm). */
int qg_lab_arm_compared(const qg_lab_hypothesis *h, int arm);
/* The direction an arm is expected to move against the baseline. */
int qg_lab_arm_expect(const qg_lab_hypothesis *h, int arm);
/* Index of an arm by name, or -1. */
int qg_lab_arm_index(const qg_lab_hypothesis *h, const char *name);
/* The arm's spec text with {param} replaced by value (caller frees). */
char *qg_lab_spec_with(const char *spec, const char *param, const char *value);

#endif
