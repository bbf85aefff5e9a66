#include "eval/eval.h"

/* models scored by one token_stats_many call */
#define QG_EVAL_MANY_MAX 64

#include <stdlib.h>
#include <string.h>

#include "core/progress.h"

qg_status qg_eval_plan_make(int64_t n_stream, const qg_eval_opts *o, qg_eval_plan *p) {
  memset(p, 0, sizeof *p);
  if (o->max_tokens > 0 && o->max_tokens < n_stream) n_stream = o->max_tokens;
  if (o->seq_len < 1) return qg_fail(QG_ERR_INPUT, "seq_len must be positive (got %d)", o->seq_len);
  if (o->stride < 0 || o->stride > o->seq_len)
    return qg_fail(QG_ERR_INPUT, "stride must be between 1 and seq_len=%d (got %d)", o->seq_len, o->stride);
  int64_t targets = n_stream - 1;
  int seq = o->seq_len;
  if (o->stride == 0) {
    int64_t n = targets / seq;
    if (n < 1)
      return qg_fail(QG_ERR_INPUT, "too few tokens for one window: %lld tokens, need at least seq_len + 1 = %d",
                     (long long)n_stream, seq + 1);
    p->w = calloc((size_t)n, sizeof *p->w);
    if (!p->w) return qg_fail(QG_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; i < n; i++) p->w[i].start = i * seq;
    p->n = n;
    p->seq = seq;
    p->n_scored = n * seq;
    p->n_stream = n * seq + 1;
    return QG_OK;
  }
  if (targets < 1) return qg_fail(QG_ERR_INPUT, "too few tokens to evaluate: %lld", (long long)n_stream);
  if (targets < seq) seq = (int)targets; /* one window over everything */
  int S = o->stride < seq ? o->stride : seq;
  int64_t n = (targets - seq + S - 1) / S + 1; /* starts 0, S, ... < targets - seq, then the final one */
  p->w = calloc((size_t)n, sizeof *p->w);
  if (!p->w) return qg_fail(QG_ERR_NOMEM, "out of memory");
  int64_t scored_to = 0; /* targets [0, scored_to) are done (target j is token j+1) */
  int64_t k = 0;
  for (int64_t start = 0;; start += S) {
    int final = start + seq >= targets;
    if (final) start = targets - seq;
    p->w[k].start = start;
    p->w[k].score_from = (int)(scored_to - start);
    scored_to = start + seq;
    k++;
    if (final) break;
  }
  p->n = k;
  p->seq = seq;
  p->n_scored = targets;
  p->n_stream = n_stream;
  return QG_OK;
}

void qg_eval_plan_free(qg_eval_plan *p) {
  free(p->w);
  memset(p, 0, sizeof *p);
}

qg_status qg_eval_run_many(qg_gpt *a, qg_gpt *const *bs, int nb, const qg_shards *val, const qg_spm_luts *luts,
                           const qg_eval_opts *o, qg_eval_sink_many sink, void *ctx, qg_eval_totals *out) {
  int nstat = nb > 0 ? nb : 1; /* without models to compare, one pass of a's own statistics */
  memset(out, 0, sizeof *out * (size_t)nstat);
  for (int k = 0; k < nb; k++)
    if (bs[k]->ops != a->ops || bs[k]->cfg.vocab != a->cfg.vocab)
      return qg_fail(QG_ERR_INPUT, "the two models differ in %s (vocab %d vs %d)",
                     bs[k]->ops != a->ops ? "backend" : "vocabulary", a->cfg.vocab, bs[k]->cfg.vocab);
  if (luts->size < a->cfg.vocab)
    return qg_fail(QG_ERR_INPUT, "tokenizer has %d pieces but the model's vocabulary is %d", luts->size, a->cfg.vocab);
  qg_eval_plan plan;
  QG_TRY(qg_eval_plan_make(qg_shards_count(val), o, &plan));
  int T = plan.seq;
  int64_t B = o->batch > 0 ? o->batch : (8192 + T - 1) / T;
  if (B > plan.n) B = plan.n;
  int W = qg_comm_world(o->comm), me = qg_comm_rank(o->comm);
  int64_t nbatch = (plan.n + B - 1) / B, blk = (int64_t)nstat * B * T; /* stats per batch */
  int32_t *seqs = malloc(sizeof *seqs * (size_t)(B * (T + 1)));
  uint16_t *raw = malloc(sizeof *raw * (size_t)(T + 1));
  qg_token_stat *st = malloc(sizeof *st * (size_t)(blk * W)), *mine = st + blk * me;
  int32_t *in = malloc(sizeof *in * (size_t)(B * T) * 2);
  qg_status s = QG_OK;
  if (!seqs || !raw || !st || !in) {
    s = qg_fail(QG_ERR_NOMEM, "out of memory for a batch of %lld windows", (long long)B);
    goto done;
  }
  int32_t *tg = in + B * T;
  qg_progress pr;
  qg_progress_start(&pr, nb ? "kld" : "eval", "tokens", plan.n_scored);
  double t0 = qg_now();
  /* round j: rank r computes batch j * W + r; then every rank consumes batches j * W ..
   * j * W + W - 1 in order (one rank: compute, consume) */
  for (int64_t round = 0; round * W < nbatch; round++) {
    for (int pass = 0; pass < 2; pass++) {
      for (int r = 0; r < W; r++) {
        int64_t bi = round * W + r;
        if (bi >= nbatch || (pass == 0 && r != me)) continue;
        int64_t w0 = bi * B, nw = plan.n - w0 < B ? plan.n - w0 : B;
        for (int64_t i = 0; i < nw; i++) {
          if ((s = qg_shards_read(val, plan.w[w0 + i].start, T + 1, raw))) goto done;
          for (int t = 0; t <= T; t++) {
            if (raw[t] >= a->cfg.vocab) {
              s = qg_fail(QG_ERR_INPUT,
                          "validation token %u at stream position %lld is outside the model's vocabulary of %d", raw[t],
                          (long long)(plan.w[w0 + i].start + t), a->cfg.vocab);
              goto done;
            }
            seqs[i * (T + 1) + t] = raw[t];
          }
          for (int t = 0; t < T; t++) {
            in[i * T + t] = raw[t];
            tg[i * T + t] = raw[t + 1];
          }
        }
        if (pass == 0) {
          /* the base once per batch; each compared model against its logits in turn */
          if ((s = qg_gpt_forward(a, in, nw, T))) goto done;
          if ((s = a->ops->upload(a->ops, a->targets, tg, sizeof *tg * (size_t)(nw * T)))) goto done;
          if (nb > 1 && a->ops->token_stats_many) {
            /* every model's logits first (each keeps its own), then a's log-softmax once a row */
            const float *bl[QG_EVAL_MANY_MAX];
            for (int k0 = 0; k0 < nb; k0 += QG_EVAL_MANY_MAX) {
              int m = nb - k0 < QG_EVAL_MANY_MAX ? nb - k0 : QG_EVAL_MANY_MAX;
              for (int k = 0; k < m; k++) {
                if ((s = qg_gpt_forward(bs[k0 + k], in, nw, T))) goto done;
                bl[k] = bs[k0 + k]->logits;
              }
              if ((s = a->ops->token_stats_many(a->ops, a->logits, bl, m, a->targets, nw * T, a->cfg.vocab,
                                                a->cfg.softcap, mine + (int64_t)k0 * B * T, B * T)))
                goto done;
            }
            continue;
          }
          for (int k = 0; k < nstat; k++) {
            qg_gpt *b = nb ? bs[k] : NULL;
            if (b && (s = qg_gpt_forward(b, in, nw, T))) goto done;
            if ((s = a->ops->token_stats(a->ops, a->logits, b ? b->logits : NULL, a->targets, nw * T, a->cfg.vocab,
                                         a->cfg.softcap, mine + (int64_t)k * B * T)))
              goto done;
          }
          continue;
        }
        const qg_token_stat *bst = st + blk * r;
        for (int k = 0; k < nstat; k++)
          for (int64_t i = 0; i < nw; i++)
            for (int t = plan.w[w0 + i].score_from; t < T; t++) {
              const qg_token_stat *x = &bst[(int64_t)k * B * T + i * T + t];
              int32_t prev = seqs[i * (T + 1) + t], tgt = seqs[i * (T + 1) + t + 1];
              int bytes = qg_spm_token_bytes(luts, prev, tgt);
              out[k].nll_a += x->nll_a;
              out[k].nll_b += x->nll_b;
              out[k].tokens++;
              out[k].bytes += bytes;
              if (sink) sink(ctx, k, x, prev, tgt, bytes);
            }
        qg_progress_update(&pr, out[0].tokens);
      }
      if (pass == 0 && W > 1 &&
          (s = qg_comm_allgather(o->comm, mine, st, (int64_t)(sizeof *st * (size_t)blk), NULL, QG_COMM_U8)))
        goto done;
    }
  }
  qg_progress_finish(&pr, out[0].tokens);
  for (int k = 0; k < nstat; k++) out[k].seconds = qg_now() - t0;
done:
  free(seqs);
  free(raw);
  free(st);
  free(in);
  qg_eval_plan_free(&plan);
  return s;
}

typedef struct {
  qg_eval_sink sink;
  void *ctx;
} one_sink;

static void forward_one(void *ctx, int model, const qg_token_stat *st, int32_t prev, int32_t tgt, int bytes) {
  (void)model;
  one_sink *o = ctx;
  if (o->sink) o->sink(o->ctx, st, prev, tgt, bytes);
}

qg_status qg_eval_run(qg_gpt *a, qg_gpt *b, const qg_shards *val, const qg_spm_luts *luts, const qg_eval_opts *o,
                      qg_eval_sink sink, void *ctx, qg_eval_totals *out) {
  one_sink os = {sink, ctx};
  return qg_eval_run_many(a, b ? &b : NULL, b ? 1 : 0, val, luts, o, forward_one, &os, out);
}
