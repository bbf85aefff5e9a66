/* The evaluator's windows and its streaming loop: token stream -> windows -> batched
 * forward passes of one model (eval) or two models over the same windows (kld) -> per-token
 * statistics handed to a sink, plus the contest's token and byte totals for BPB. */
#ifndef QG_EVAL_EVAL_H
#define QG_EVAL_EVAL_H

#include "comm/comm.h"
#include "io/shards.h"
#include "io/spm.h"
#include "kernels/ops.h"
#include "model/gpt.h"

typedef struct {
  int seq_len;        /* window length in tokens (default 1024) */
  int stride;         /* 0: the contest's eval_val (non-overlapping windows); S: sliding */
  int64_t max_tokens; /* 0: the whole stream; else its first N tokens */
  int batch;          /* windows per forward pass (0: about 8192 rows) */
  /* ranks sharing the work (NULL: one): batch b runs on rank b % world, its per-token
   * statistics are all-gathered, and every rank then consumes every batch in stream order,
   * so totals, the sink's calls and everything computed from them are the single-rank
   * run's, bit for bit, on every rank */
  qg_comm *comm;
} qg_eval_opts;

/* A window covers tokens [start, start + seq] (seq + 1 tokens: seq inputs, seq targets)
 * and scores targets score_from .. seq-1 (indices into the window's targets). */
typedef struct {
  int64_t start;
  int score_from;
} qg_window;

typedef struct {
  int seq;            /* window length actually used */
  int64_t n_stream;   /* tokens of the stream considered (after max_tokens / truncation) */
  int64_t n_scored;   /* targets scored, each exactly once */
  qg_window *w;
  int64_t n;
} qg_eval_plan;

/* Default (stride 0), exactly the contest's eval_val: the stream is truncated to
 * ((n-1)/seq)*seq + 1 tokens and cut into non-overlapping windows, all targets scored.
 * Sliding (stride S, 0 < S <= seq): windows start at 0, S, 2S, ... while they end before
 * the stream does, plus one final window ending at the last token; each window scores
 * only the targets no earlier window scored, so every target is scored exactly once, the
 * first window's all of them, later ones with at least seq - S tokens of context. */
qg_status qg_eval_plan_make(int64_t n_stream, const qg_eval_opts *o, qg_eval_plan *p);
void qg_eval_plan_free(qg_eval_plan *p);

/* Called for each scored target, in stream order: its statistics, the previous token and
 * the target (for byte counting), and the target's byte count. */
typedef void (*qg_eval_sink)(void *ctx, const qg_token_stat *st, int32_t prev, int32_t tgt, int bytes);

typedef struct {
  double nll_a, nll_b; /* sums in nats */
  int64_t tokens;
  int64_t bytes;
  double seconds;
} qg_eval_totals;

/* Runs model a (and b, when not NULL, on the same windows) over the plan. Both models
 * must share a backend and vocabulary; luts give the contest's bytes per target. */
qg_status qg_eval_run(qg_gpt *a, qg_gpt *b, const qg_shards *val, const qg_spm_luts *luts, const qg_eval_opts *o,
                      qg_eval_sink sink, void *ctx, qg_eval_totals *out);

/* The same with several models against one base: a's forward pass runs once per batch
 * and each of bs[0..nb) is scored against it in turn; the sink gets the model's index;
 * out has nb entries (one when nb = 0: a alone, as qg_eval_run with b = NULL). */
typedef void (*qg_eval_sink_many)(void *ctx, int model, const qg_token_stat *st, int32_t prev, int32_t tgt,
                                  int bytes);
qg_status qg_eval_run_many(qg_gpt *a, qg_gpt *const *bs, int nb, const qg_shards *val, const qg_spm_luts *luts,
                           const qg_eval_opts *o, qg_eval_sink_many sink, void *ctx, qg_eval_totals *out);

static inline double qg_bpb(double nll_nats, int64_t bytes) {
  return bytes > 0 ? nll_nats / 0.69314718055994530942 / (double)bytes : 0.0;
}

#endif
