/* The experiment runner: a hypothesis file's arms x seeds, each (trained) -> quantized ->
 * its artifact's real bytes -> one paired pass over the validation windows against the
 * reference model, keeping per-token KLD, NLL and bytes; then paired block-bootstrap
 * statistics against the baseline and a computed verdict (lab/analysis.c), written as a
 * report (lab/report.c).
 *
 * Everything expensive is cached under a key that hashes what produced it (input file
 * SHA-256s, canonical spec, calibration settings, seed where it matters, training options,
 * quantgolf version), written atomically, so a re-run reuses it and a run killed at any
 * point and restarted ends with the same report. */
#ifndef QG_LAB_RUNNER_H
#define QG_LAB_RUNNER_H

#include <stddef.h>
#include <stdint.h>

#include "lab/alloc_arm.h"
#include "lab/hypothesis.h"
#include "lab/stats.h"

/* Per-token records of one arm against the reference on the evaluation windows. */
typedef struct {
  size_t n, n_windows;
  size_t *win_start;  /* n_windows + 1 */
  double *kld;        /* KL(reference || arm), nats */
  double *nll_ref, *nll; /* reference's and arm's NLL of the target, nats */
  double *bytes;      /* the target's byte count (contest LUTs) */
  uint8_t *same_top;
} qg_lab_tokens;

typedef struct {
  char name[96], method[32], options[160];
  int64_t numel, bytes;
  double bits_per_weight, mse, herr;
} qg_lab_tensor;

/* One arm in one reproduction. */
typedef struct {
  int arm;
  uint64_t seed;
  int is_float;
  char *fit_value;            /* the value fit chose, or NULL */
  int n_trials;               /* fit: values tried, their artifact bytes */
  char **trial_values;
  int64_t *trial_bytes;
  int64_t artifact_bytes;     /* the file on disk (0 for float arms) */
  int64_t params;
  double bits_per_weight;     /* artifact bytes * 8 / params */
  qg_lab_tensor *tensors;
  int n_tensors;
  qg_lab_tokens tok;
  char train_key[17], artifact_key[17], eval_key[17];
  int reused;                 /* bit 0: training, 1: artifact, 2: evaluation came from the cache */
  char *artifact_path, *float_path;
  double seconds;
  /* summaries (lab/analysis.c) */
  qg_boot_result kld, nll, bpb;   /* the arm's own means with block intervals */
  qg_boot_result ln_ppl_ratio;    /* mean NLL(arm) - NLL(reference) */
  double kld_p99, same_top;
  /* against the baseline (not for the baseline itself) */
  qg_boot_result d[4];            /* indexed by qg_metric (bytes: a point, no resampling) */
  double p_holm;
  qg_verdict verdict;
} qg_lab_cell;

typedef struct {
  qg_verdict verdict;
  int agree;                  /* reproductions whose verdict equals the arm's */
  double confidence;          /* pooled fraction of resamples beyond margin */
  double est, lo, hi;         /* primary-metric difference averaged over seeds, pooled CI */
  double ttest_p;             /* rule: contest, over seeds */
} qg_lab_armsum;

typedef struct {
  char model_sha[65], tokenizer_sha[65], val_sha[65], calib_sha[65];
  int64_t tokens, windows;
  int seq_len, stride;
  char version[32], commit[48], machine[160], device[16];
  char started[32];
  double wall_seconds;
  int reused_all;             /* every cell came from the cache */
} qg_lab_setup;

typedef struct {
  const qg_lab_hypothesis *h;
  int n_seeds;                /* seeds used (--seeds may cut the list) */
  qg_lab_cell *cells;         /* [arm * n_seeds + seed] */
  qg_lab_armsum *arms;        /* per arm (the baseline's is unused) */
  qg_lab_alloc *alloc;        /* per arm: an allocate arm's choice (zero for the others) */
  qg_verdict verdict;
  int agree, n_repro;         /* reproductions agreeing with the verdict (min over arms) */
  double confidence;          /* min over compared arms */
  int headline;               /* arm whose effect heads the report */
  qg_lab_setup setup;
  double mean_ratio_kld;      /* mean over cells of the block/iid interval inflation */
} qg_lab_result;

typedef enum { QG_LAB_EV_STAGE = 0, QG_LAB_EV_DONE } qg_lab_event;
typedef struct {
  const char *arm, *stage;    /* "train", "quantize", "fit bits=5", "eval", "cached" */
  uint64_t seed;
  int step, steps;            /* this unit of work, of all units */
  double elapsed_s, eta_s;
} qg_lab_progress;
typedef void (*qg_lab_cb)(void *ctx, const qg_lab_progress *p);

typedef struct {
  const char *cache_dir;      /* where artifacts, trained models and per-token files live */
  const char *device;         /* overrides the file's device when set */
  int max_seeds;              /* 0: all */
  int force;                  /* recompute everything */
  const char *git_commit;     /* for the report (NULL: unknown) */
  qg_lab_cb cb;
  void *cb_ctx;
} qg_lab_opts;

qg_status qg_lab_run(const qg_lab_hypothesis *h, const qg_lab_opts *o, qg_lab_result *r);
void qg_lab_result_free(qg_lab_result *r);

/* lab/analysis.c: the statistics and the verdict from the cells' per-token records. */
qg_status qg_lab_analyze(qg_lab_result *r);

/* Per-token records of one evaluation (cache files). */
void qg_lab_tokens_free(qg_lab_tokens *t);
qg_status qg_lab_tokens_write(const char *path, const qg_lab_tokens *t);
qg_status qg_lab_tokens_read(const char *path, qg_lab_tokens *t);

#endif
