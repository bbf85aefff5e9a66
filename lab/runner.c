/* The experiment runner's execution (lab/runner.h): arms x seeds through the cache.
 *
 * Cache layout under opts.cache_dir, every file written atomically (temp + rename):
 *   train/KEY/final_model.safetensors   a trained arm's float weights (a folder renamed
 *                                       into place once training finished)
 *   art/KEY.qgz, art/KEY.tsv            an artifact and its per-tensor figures
 *   eval/KEY.tok                        per-token records against the reference
 *   alloc/KEY.tsv                       an allocate arm's choice (lab/alloc_arm.c)
 * KEY is the first 16 hex digits of a SHA-256 over a text that lists, one per line, every
 * input that determines the file (see the *_key functions). */
#include "lab/runner.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "core/file.h"
#include "core/progress.h"
#include "core/sha256.h"
#include "core/util.h"
#include "eval/eval.h"
#include "io/shard_manifest.h"
#include "io/spm.h"
#include "quant/artifact.h"
#include "quant/backend.h"
#include "quant/job.h"
#include "train/train.h"

/* ---- hashing ------------------------------------------------------------------------- */

/* SHA-256 of every file a glob matches, in sorted order (one file: its own digest). */
static qg_status glob_sha(const char *glob, char hex[65]) {
  char **paths;
  int n;
  QG_TRY(qg_glob_sorted(glob, &paths, &n));
  qg_status s = QG_OK;
  if (n == 1) {
    s = qg_sha256_file(paths[0], hex);
  } else {
    qg_sha256 c;
    qg_sha256_init(&c);
    for (int i = 0; i < n && !s; i++) {
      char one[65];
      if (!(s = qg_sha256_file(paths[i], one))) qg_sha256_update(&c, one, 64);
    }
    uint8_t d[32];
    qg_sha256_final(&c, d);
    qg_sha256_hex(d, hex);
  }
  qg_free_strings(paths, n);
  return s;
}

static void key_of(const qg_buf *text, char key[17]) {
  char hex[65];
  qg_sha256_buf(text->p, text->n, hex);
  memcpy(key, hex, 16);
  key[16] = 0;
}

/* ---- per-token files ----------------------------------------------------------------- */

void qg_lab_tokens_free(qg_lab_tokens *t) {
  free(t->win_start), free(t->kld), free(t->nll_ref), free(t->nll), free(t->bytes), free(t->same_top);
  memset(t, 0, sizeof *t);
}

static qg_status tokens_alloc(qg_lab_tokens *t, size_t n, size_t nw) {
  memset(t, 0, sizeof *t);
  t->n = n, t->n_windows = nw;
  t->win_start = malloc(sizeof *t->win_start * (nw + 1));
  t->kld = malloc(sizeof(double) * (n ? n : 1));
  t->nll_ref = malloc(sizeof(double) * (n ? n : 1));
  t->nll = malloc(sizeof(double) * (n ? n : 1));
  t->bytes = malloc(sizeof(double) * (n ? n : 1));
  t->same_top = malloc(n ? n : 1);
  if (!t->win_start || !t->kld || !t->nll_ref || !t->nll || !t->bytes || !t->same_top) {
    qg_lab_tokens_free(t);
    return qg_fail(QG_ERR_NOMEM, "out of memory for %zu per-token records", n);
  }
  return QG_OK;
}

#define TOK_MAGIC "QGLTOK01"

qg_status qg_lab_tokens_write(const char *path, const qg_lab_tokens *t) {
  qg_buf b;
  qg_buf_init(&b);
  qg_buf_append(&b, TOK_MAGIC, 8);
  qg_buf_u64le(&b, t->n);
  qg_buf_u64le(&b, t->n_windows);
  for (size_t w = 0; w <= t->n_windows; w++) qg_buf_u64le(&b, t->win_start[w]);
  const double *cols[4] = {t->kld, t->nll_ref, t->nll, t->bytes};
  for (int c = 0; c < 4; c++) qg_buf_append(&b, cols[c], sizeof(double) * t->n);
  qg_buf_append(&b, t->same_top, t->n);
  qg_status s = qg_buf_status(&b);
  if (!s) s = qg_write_file_atomic(path, b.p, b.n);
  qg_buf_free(&b);
  return s;
}

qg_status qg_lab_tokens_read(const char *path, qg_lab_tokens *t) {
  uint8_t *d;
  size_t len;
  QG_TRY(qg_read_file(path, &d, &len, (size_t)1 << 40));
  qg_status s = QG_OK;
  if (len < 24 || memcmp(d, TOK_MAGIC, 8)) s = qg_fail(QG_ERR_INPUT, "%s: not a per-token record file", path);
  uint64_t n = s ? 0 : qg_rd_u64le(d + 8), nw = s ? 0 : qg_rd_u64le(d + 16);
  if (!s && (nw > len / 8 || n > len / 33 || len != 24 + 8 * (nw + 1) + 33 * n))
    s = qg_fail(QG_ERR_INPUT, "%s: truncated or inconsistent (%zu bytes for %llu tokens)", path, len,
                (unsigned long long)n);
  if (!s) s = tokens_alloc(t, (size_t)n, (size_t)nw);
  if (!s) {
    const uint8_t *p = d + 24;
    for (size_t w = 0; w <= nw; w++, p += 8) t->win_start[w] = (size_t)qg_rd_u64le(p);
    double *cols[4] = {t->kld, t->nll_ref, t->nll, t->bytes};
    for (int c = 0; c < 4; c++, p += 8 * n) memcpy(cols[c], p, 8 * n);
    memcpy(t->same_top, p, n);
    if (t->win_start[0] != 0 || t->win_start[nw] != n) s = qg_fail(QG_ERR_INPUT, "%s: window offsets do not cover the tokens", path);
    if (s) qg_lab_tokens_free(t);
  }
  free(d);
  return s;
}

/* ---- the run's state ----------------------------------------------------------------- */

typedef struct {
  const qg_lab_hypothesis *h;
  const qg_lab_opts *o;
  qg_lab_result *r;
  const char *device;
  char dir_train[4096], dir_art[4096], dir_eval[4096];
  int vocab;
  int step, steps;
  double t0;
} run;

static void progress(run *R, const qg_lab_arm *a, uint64_t seed, const char *stage) {
  if (!R->o->cb) return;
  double el = qg_now() - R->t0;
  qg_lab_progress p = {a ? a->name : "", stage, seed, R->step, R->steps, el,
                       R->step > 0 ? el / R->step * (R->steps - R->step) : -1};
  R->o->cb(R->o->cb_ctx, &p);
}

static int file_exists(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0;
}


/* ---- training ------------------------------------------------------------------------ */


/* The training key: every option (sorted by name, so order in the file does not matter),
 * the seed, the data's and the initial weights' digests, the version. */
static qg_status train_key(const run *R, const qg_lab_arm *a, uint64_t seed, const char *dim, char key[17]) {
  qg_buf b;
  qg_buf_init(&b);
  qg_buf_printf(&b, "quantgolf %s train\nseed %llu\ndevice %s\n", QG_VERSION, (unsigned long long)seed, R->device);
  int *order = malloc(sizeof *order * (size_t)(a->n_train + 1));
  if (!order) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int i = 0; i < a->n_train; i++) order[i] = i;
  for (int i = 1; i < a->n_train; i++)
    for (int j = i; j > 0 && strcmp(a->train[order[j - 1]].key, a->train[order[j]].key) > 0; j--) {
      int t = order[j];
      order[j] = order[j - 1], order[j - 1] = t;
    }
  qg_status s = QG_OK;
  for (int k = 0; k < a->n_train && !s; k++) {
    const qg_lab_kv *kv = &a->train[order[k]];
    if (dim && !strcmp(kv->key, "dim")) continue;
    if (!strcmp(kv->key, "train") || !strcmp(kv->key, "init")) {
      char hex[65];
      if (!(s = glob_sha(kv->value, hex))) qg_buf_printf(&b, "%s sha256:%s\n", kv->key, hex);
    } else {
      qg_buf_printf(&b, "%s %s\n", kv->key, kv->value);
    }
  }
  if (dim) qg_buf_printf(&b, "dim %s\n", dim);
  free(order);
  if (!s) s = qg_buf_status(&b);
  if (!s) key_of(&b, key);
  qg_buf_free(&b);
  return s;
}

typedef struct {
  run *R;
  const qg_lab_arm *a;
  uint64_t seed;
  double last;
} train_view;

static void on_train(void *ctx, const qg_train_info *i) {
  train_view *v = ctx;
  double now = qg_now();
  if (i->ev != QG_TRAIN_EV_STEP || now - v->last < 5) return;
  v->last = now;
  char stage[96];
  snprintf(stage, sizeof stage, "train step %d (%.0f tokens/s, loss %.4f)", i->step, i->tokens_per_s, i->train_loss);
  progress(v->R, v->a, v->seed, stage);
}

/* Trains (or finds in the cache) the arm's float model; path gets final_model.safetensors. */
static qg_status train_arm(run *R, const qg_lab_arm *a, uint64_t seed, const char *dim, char key[17], char *path,
                           size_t cap, int *reused) {
  QG_TRY(train_key(R, a, seed, dim, key));
  char dir[4200], tmp[4300];
  snprintf(dir, sizeof dir, "%s/%s", R->dir_train, key);
  snprintf(path, cap, "%s/final_model.safetensors", dir);
  if (!R->o->force && file_exists(path)) {
    *reused = 1;
    return QG_OK;
  }
  *reused = 0;
  snprintf(tmp, sizeof tmp, "%s.tmp.%d", dir, (int)getpid());
  QG_TRY(qg_mkdir_p(tmp));
  qg_train_config c;
  qg_train_config_defaults(&c);
  for (int i = 0; i < a->n_train; i++) {
    int known;
    QG_TRY(qg_train_config_set(&c, a->train[i].key, a->train[i].key, a->train[i].value, &known));
  }
  if (dim) {
    int known;
    QG_TRY(qg_train_config_set(&c, "dim", "fit dim", dim, &known));
  }
  c.seed = seed, c.vocab = R->vocab, c.out_dir = tmp, c.device = R->device;
  qg_trainer t;
  train_view v = {R, a, seed, qg_now()};
  qg_status s = qg_trainer_init(&t, &c, on_train, &v);
  if (s) return qg_fail_prefix(s, "arm '%s': train", a->name);
  s = qg_trainer_run(&t, on_train, &v);
  qg_trainer_free(&t);
  if (s) return qg_fail_prefix(s, "arm '%s': train", a->name);
  /* a finished run replaces any stale folder of the same key (--force) */
  char old[4400];
  snprintf(old, sizeof old, "%s.old.%d", dir, (int)getpid());
  if (file_exists(dir) && rename(dir, old)) return qg_fail(QG_ERR_IO, "%s: cannot move aside: %s", dir, strerror(errno));
  if (rename(tmp, dir)) return qg_fail(QG_ERR_IO, "%s: cannot rename into place: %s", dir, strerror(errno));
  if (file_exists(old)) {
    char cmd_path[4500];
    snprintf(cmd_path, sizeof cmd_path, "%s/final_model.safetensors", old);
    remove(cmd_path);
    snprintf(cmd_path, sizeof cmd_path, "%s/train_state.safetensors", old);
    remove(cmd_path);
    snprintf(cmd_path, sizeof cmd_path, "%s/train.log", old);
    remove(cmd_path);
    rmdir(old);
  }
  return QG_OK;
}

/* ---- quantizing ---------------------------------------------------------------------- */

static int spec_randomised(const char *text) { return text && strstr(text, "turbo") != NULL; }

typedef struct {
  char *text;        /* inline spec (substituted), or NULL for spec_file */
  const char *file;
  int calib;         /* needs Hessians */
  const char *calib_src;
  int calib_seqs, calib_len;
  int64_t calib_skip;
  qg_compressor comp;
  int contest_passthrough;
} arm_plan;

static qg_status load_spec(const arm_plan *p, qg_spec *sp) {
  return p->text ? qg_spec_parse_inline(p->text, sp) : qg_spec_load_yaml(p->file, sp);
}

static qg_status plan_arm(const run *R, const qg_lab_arm *a, const char *fit_value, arm_plan *p) {
  const qg_lab_hypothesis *h = R->h;
  memset(p, 0, sizeof *p);
  if (a->spec_file) p->file = a->spec_file;
  else if (a->fit_param && strcmp(a->fit_param, "dim") && fit_value) p->text = qg_lab_spec_with(a->spec, a->fit_param, fit_value);
  else if (a->allocates) p->text = qg_strdup(R->r->alloc[a - h->arms].spec);
  else p->text = qg_strdup(a->spec);
  if (!p->text && !p->file) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_spec sp;
  qg_status s = load_spec(p, &sp);
  if (s) return qg_fail_prefix(s, "arm '%s'", a->name);
  p->calib = qg_spec_needs_hessians(&sp);
  qg_spec_free(&sp);
  p->calib_src = a->calib ? a->calib : h->calib;
  p->calib_seqs = a->calib_seqs ? a->calib_seqs : h->calib_seqs;
  p->calib_len = a->calib_len ? a->calib_len : h->calib_len;
  p->calib_skip = a->calib_skip ? a->calib_skip : h->calib_skip;
  if (p->calib && !p->calib_src)
    return qg_fail(QG_ERR_INPUT, "%s: arm '%s': its spec needs calibration (GPTQ): give data.calib or the arm's "
                   "calibration.source", h->path, a->name);
  QG_TRY(qg_compressor_from_name(a->compress ? a->compress : h->compress, &p->comp));
  p->contest_passthrough = a->contest_passthrough || (a->allocates && R->r->alloc[a - h->arms].contest_passthrough);
  return QG_OK;
}

static qg_status artifact_key(const arm_plan *p, const char *float_id, uint64_t seed, char key[17]) {
  qg_buf b;
  qg_buf_init(&b);
  qg_buf_printf(&b, "quantgolf %s quantize\nmodel %s\ncompress %s\nlayout auto\n", QG_VERSION, float_id,
                qg_compressor_name(p->comp));
  qg_status s = QG_OK;
  if (p->contest_passthrough) qg_buf_printf(&b, "contest_passthrough\n");
  if (p->text) {
    qg_buf_printf(&b, "spec %s\n", p->text);
  } else {
    char hex[65];
    if (!(s = qg_sha256_file(p->file, hex))) qg_buf_printf(&b, "spec_file sha256:%s\n", hex);
  }
  /* the seed matters only where something is sampled: calibration or a randomised grid */
  if (p->calib || spec_randomised(p->text) || p->file) qg_buf_printf(&b, "seed %llu\n", (unsigned long long)seed);
  if (!s && p->calib) {
    char hex[65] = "self";
    if (strcmp(p->calib_src, "self")) s = glob_sha(p->calib_src, hex);
    qg_buf_printf(&b, "calib %s seqs %d len %d skip %lld\n", hex, p->calib_seqs, p->calib_len, (long long)p->calib_skip);
  }
  if (!s) s = qg_buf_status(&b);
  if (!s) key_of(&b, key);
  qg_buf_free(&b);
  return s;
}

static qg_status write_tsv(const char *path, const qg_qjob_result *jr) {
  qg_buf b;
  qg_buf_init(&b);
  qg_buf_printf(&b, "artifact_bytes\t%lld\nparams\t%lld\n", (long long)jr->artifact_bytes, (long long)jr->params);
  for (int i = 0; i < jr->qm.n; i++) {
    const qg_qresult *t = &jr->qm.t[i];
    qg_buf_printf(&b, "tensor\t%s\t%s\t%s\t%lld\t%lld\t%.17g\t%.17g\t%.17g\n", t->q.name, t->q.method,
                  *t->q.options ? t->q.options : "-", (long long)t->numel, (long long)t->packed_bytes,
                  t->bits_per_weight, t->mse, t->herr);
  }
  qg_status s = qg_buf_status(&b);
  if (!s) s = qg_write_file_atomic(path, b.p, b.n);
  qg_buf_free(&b);
  return s;
}

static qg_status read_tsv(const char *path, qg_lab_cell *c) {
  uint8_t *d;
  size_t len;
  QG_TRY(qg_read_file(path, &d, &len, 1 << 26));
  char *text = qg_strndup((const char *)d, len);
  free(d);
  if (!text) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = QG_OK;
  int n = 0;
  for (char *p = text; *p; p++) n += *p == '\n';
  c->tensors = calloc((size_t)(n ? n : 1), sizeof *c->tensors);
  if (!c->tensors) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  char *save = NULL;
  for (char *line = strtok_r(text, "\n", &save); line && !s; line = strtok_r(NULL, "\n", &save)) {
    long long x, y;
    if (sscanf(line, "artifact_bytes\t%lld", &x) == 1) c->artifact_bytes = x;
    else if (sscanf(line, "params\t%lld", &x) == 1) c->params = x;
    else if (!strncmp(line, "tensor\t", 7)) {
      qg_lab_tensor *t = &c->tensors[c->n_tensors];
      if (sscanf(line + 7, "%95[^\t]\t%31[^\t]\t%159[^\t]\t%lld\t%lld\t%lf\t%lf\t%lf", t->name, t->method, t->options,
                 &x, &y, &t->bits_per_weight, &t->mse, &t->herr) != 8)
        s = qg_fail(QG_ERR_INPUT, "%s: malformed tensor line", path);
      t->numel = x, t->bytes = y;
      c->n_tensors++;
    } else {
      s = qg_fail(QG_ERR_INPUT, "%s: unexpected line '%.40s'", path, line);
    }
  }
  free(text);
  return s;
}

/* Quantizes (or finds) one candidate; fills the cell's artifact fields. */
static qg_status quantize_arm(run *R, const qg_lab_arm *a, const char *fit_value, const char *float_path,
                              const char *float_id, uint64_t seed, qg_lab_cell *c) {
  arm_plan p;
  qg_status s = plan_arm(R, a, fit_value, &p);
  char key[17];
  if (!s) s = artifact_key(&p, float_id, seed, key);
  if (s) {
    free(p.text);
    return s;
  }
  char art[4200], tsv[4200];
  snprintf(art, sizeof art, "%s/%s.qgz", R->dir_art, key);
  snprintf(tsv, sizeof tsv, "%s/%s.tsv", R->dir_art, key);
  free(c->tensors);
  c->tensors = NULL, c->n_tensors = 0;
  if (!R->o->force && file_exists(art) && file_exists(tsv) && !read_tsv(tsv, c)) {
    c->reused |= 2;
  } else {
    free(c->tensors);
    c->tensors = NULL, c->n_tensors = 0;
    c->reused &= ~2;
    qg_spec sp;
    if (!(s = load_spec(&p, &sp))) {
      sp.seed = seed;
      if (p.contest_passthrough) sp.contest_passthrough = 1;
      qg_qjob_opts jo = {.model = float_path, .spec = &sp, .out = art, .compressor = p.comp, .layout = QG_LAYOUT_AUTO,
                         .calib = p.calib ? p.calib_src : NULL, .calib_seqs = p.calib_seqs, .calib_len = p.calib_len,
                         .calib_seed = seed, .calib_skip = p.calib_skip, .device = R->device};
      qg_qjob_result jr;
      if (!(s = qg_quantize_job(&jo, &jr))) {
        s = write_tsv(tsv, &jr);
        qg_qjob_result_free(&jr);
      }
      qg_spec_free(&sp);
      if (s) s = qg_fail_prefix(s, "arm '%s'", a->name);
    }
    if (!s) s = read_tsv(tsv, c);
  }
  free(p.text);
  if (s) return s;
  memcpy(c->artifact_key, key, sizeof key);
  free(c->artifact_path);
  c->artifact_path = qg_strdup(art);
  c->bits_per_weight = c->params ? 8.0 * (double)c->artifact_bytes / (double)c->params : 0;
  return c->artifact_path ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
}

/* ---- evaluation ---------------------------------------------------------------------- */

typedef struct {
  qg_lab_tokens *t;
  size_t i;
} sink_ctx;

static void sink(void *ctx, const qg_token_stat *st, int32_t prev, int32_t tgt, int bytes) {
  (void)prev, (void)tgt;
  sink_ctx *k = ctx;
  if (k->i >= k->t->n) return;
  size_t i = k->i++;
  k->t->kld[i] = st->kld < 0 ? 0 : st->kld; /* fp64 rounding leaves -1e-17 for identical rows */
  k->t->nll_ref[i] = st->nll_a;
  k->t->nll[i] = st->nll_b;
  k->t->bytes[i] = bytes;
  k->t->same_top[i] = st->top_a == st->top_b;
}

/* The cell's evaluation key (its .tok file), and the file when it is cached (1). */
static int eval_cached(run *R, const char *ref_id, qg_lab_cell *c, char *path, size_t cap, qg_status *st) {
  const qg_lab_hypothesis *h = R->h;
  qg_buf b;
  qg_buf_init(&b);
  qg_buf_printf(&b, "quantgolf %s eval\nreference %s\nmodel %s\nval %s\ntokenizer %s\nseq %d stride %d max %lld\ndevice %s\n",
                QG_VERSION, ref_id, c->is_float ? (c->train_key[0] ? c->train_key : R->r->setup.model_sha) : c->artifact_key,
                R->r->setup.val_sha, R->r->setup.tokenizer_sha, h->seq_len, h->stride, (long long)h->max_tokens,
                R->device);
  char key[17];
  *st = qg_buf_status(&b);
  if (!*st) key_of(&b, key);
  qg_buf_free(&b);
  if (*st) return 0;
  memcpy(c->eval_key, key, sizeof key);
  snprintf(path, cap, "%s/%s.tok", R->dir_eval, key);
  if (!R->o->force && file_exists(path) && !qg_lab_tokens_read(path, &c->tok)) {
    c->reused |= 4;
    return 1;
  }
  c->reused &= ~4;
  return 0;
}

static void sink_many(void *ctx, int model, const qg_token_stat *st, int32_t prev, int32_t tgt, int bytes) {
  sink(&((sink_ctx *)ctx)[model], st, prev, tgt, bytes);
}

/* Models evaluated in one pass: each holds its weights and a batch of activations. */
#define EVAL_PASS_MODELS 8

/* Evaluates the cells c[0..n) of one seed against the reference: those cached are read,
 * those that share another's artifact read its records once written, the others scored
 * in passes of up to EVAL_PASS_MODELS models, the reference's forward
 * pass once per batch for all of them (each model's statistics are the ones a pass of its
 * own gives: the same forward passes, the same batches). A pass's time is shared equally
 * by its cells. */
static qg_status eval_cells(run *R, const char *ref_path, const char *ref_id, const qg_shards *val,
                            const qg_spm_luts *luts, const qg_eval_opts *eo, qg_lab_cell **c, int n) {
  const qg_lab_hypothesis *h = R->h;
  char (*paths)[4200] = malloc(sizeof *paths * (size_t)(n + 1));
  int *todo = malloc(sizeof *todo * (size_t)(n + 1)), nt = 0, *dup = malloc(sizeof *dup * (size_t)(n + 1)), nd = 0;
  if (!paths || !todo || !dup) return free(paths), free(todo), free(dup), qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = QG_OK;
  for (int i = 0; !s && i < n; i++) {
    if (eval_cached(R, ref_id, c[i], paths[i], sizeof paths[i], &s) || s) {
      if (!s) progress(R, &h->arms[c[i]->arm], c[i]->seed, "eval (cached)"), R->step++;
      continue;
    }
    /* arms that share an artifact share its evaluation: scored once, read by the others */
    int same = 0;
    for (int j = 0; j < nt && !same; j++) same = !strcmp(c[todo[j]]->eval_key, c[i]->eval_key);
    if (same) dup[nd++] = i;
    else todo[nt++] = i;
  }
  const qg_ops *ops = NULL;
  if (!s && nt) s = qg_ops_by_name(R->device, &ops);
  for (int first = 0; !s && first < nt; first += EVAL_PASS_MODELS) {
    int m = nt - first < EVAL_PASS_MODELS ? nt - first : EVAL_PASS_MODELS;
    qg_gpt m0, ms[EVAL_PASS_MODELS], *mp[EVAL_PASS_MODELS];
    sink_ctx k[EVAL_PASS_MODELS];
    int loaded = 0, ref_loaded = 0;
    double t0 = qg_now();
    progress(R, &h->arms[c[todo[first]]->arm], c[todo[first]]->seed, m > 1 ? "eval (with the next arms)" : "eval");
    for (int j = 0; !s && j < m; j++) {
      qg_lab_cell *x = c[todo[first + j]];
      qg_eval_plan plan;
      if (!(s = qg_eval_plan_make(qg_shards_count(val), eo, &plan))) {
        qg_lab_tokens *t = &x->tok;
        if (!(s = tokens_alloc(t, (size_t)plan.n_scored, (size_t)plan.n))) {
          t->win_start[0] = 0;
          for (int64_t w = 0; w < plan.n; w++)
            t->win_start[w + 1] = t->win_start[w] + (size_t)(plan.seq - plan.w[w].score_from);
        }
        qg_eval_plan_free(&plan);
      }
      k[j] = (sink_ctx){&x->tok, 0};
      if (!s && (s = qg_gpt_load(&ms[j], x->is_float ? x->float_path : x->artifact_path, NULL, ops)))
        s = qg_fail_prefix(s, "arm '%s' seed %llu: evaluation: arm", h->arms[x->arm].name, (unsigned long long)x->seed);
      if (!s) mp[j] = &ms[j], loaded++;
    }
    if (!s && (s = qg_gpt_load(&m0, ref_path, NULL, ops))) s = qg_fail_prefix(s, "evaluation: reference");
    else if (!s) ref_loaded = 1;
    qg_eval_totals tot[EVAL_PASS_MODELS];
    if (!s && (s = qg_eval_run_many(&m0, mp, m, val, luts, eo, sink_many, k, tot)))
      s = qg_fail_prefix(s, "arm '%s' seed %llu: evaluation", h->arms[c[todo[first]]->arm].name,
                         (unsigned long long)c[todo[first]]->seed);
    if (ref_loaded) qg_gpt_free(&m0);
    for (int j = 0; j < loaded; j++) qg_gpt_free(&ms[j]);
    double share = (qg_now() - t0) / m;
    for (int j = 0; !s && j < m; j++) {
      qg_lab_cell *x = c[todo[first + j]];
      if (k[j].i != x->tok.n || x->tok.win_start[x->tok.n_windows] != x->tok.n)
        s = qg_fail(QG_ERR_INTERNAL, "evaluation scored %zu tokens, the plan %zu", k[j].i, x->tok.n);
      if (!s) s = qg_lab_tokens_write(paths[todo[first + j]], &x->tok);
      x->seconds += share;
      R->step++;
    }
  }
  for (int i = 0; !s && i < nd; i++) {
    qg_lab_cell *x = c[dup[i]];
    progress(R, &h->arms[x->arm], x->seed, "eval (shared)");
    if (!(s = qg_lab_tokens_read(paths[dup[i]], &x->tok))) x->reused |= 4;
    R->step++;
  }
  free(paths), free(todo), free(dup);
  return s;
}

/* ---- the whole run ------------------------------------------------------------------- */

static void machine_line(char *out, size_t cap) {
  struct utsname u;
  char cpu[128] = "unknown CPU";
  FILE *f = fopen("/proc/cpuinfo", "r");
  if (f) {
    char line[256];
    while (fgets(line, sizeof line, f))
      if (!strncmp(line, "model name", 10)) {
        char *c = strchr(line, ':');
        if (c) snprintf(cpu, sizeof cpu, "%.*s", (int)strcspn(c + 2, "\n"), c + 2);
        break;
      }
    fclose(f);
  }
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (uname(&u)) snprintf(out, cap, "%s, %ld cores", cpu, ncpu);
  else snprintf(out, cap, "%s %s, %s, %ld cores", u.sysname, u.machine, cpu, ncpu);
}

/* Fit arms last, and those fitted to another arm after it. */
static int arm_order(const qg_lab_hypothesis *h, int k) {
  int n = 0;
  for (int pass = 0; pass < 2; pass++)
    for (int i = 0; i < h->n_arms; i++)
      if ((pass == 0) == !h->arms[i].fit_param && n++ == k) return i;
  return k;
}

static qg_status budget_check(const run *R, int si) {
  const qg_lab_hypothesis *h = R->h;
  const qg_lab_result *r = R->r;
  if (!h->has_budget) return QG_OK;
  int64_t lo = INT64_MAX, hi = 0;
  int ilo = -1, ihi = -1;
  for (int a = 0; a < h->n_arms; a++) {
    const qg_lab_cell *c = &r->cells[a * r->n_seeds + si];
    if (c->is_float) continue;
    if (h->budget_bytes && c->artifact_bytes + h->budget_code_bytes > h->budget_bytes)
      return qg_fail(QG_ERR_INPUT, "%s: budget.bytes: arm '%s' (seed %llu) has a %lld-byte artifact%s, over the %lld-byte "
                     "budget", h->path, h->arms[a].name, (unsigned long long)c->seed, (long long)c->artifact_bytes,
                     h->budget_code_bytes ? " (plus budget.code_bytes)" : "", (long long)h->budget_bytes);
    if (c->artifact_bytes < lo) lo = c->artifact_bytes, ilo = a;
    if (c->artifact_bytes > hi) hi = c->artifact_bytes, ihi = a;
  }
  if (h->budget_equal > 0 && ihi >= 0 && (double)(hi - lo) > h->budget_equal * (double)hi)
    return qg_fail(QG_ERR_INPUT, "%s: budget.equal: arms '%s' (%lld bytes) and '%s' (%lld bytes) differ by %.2f%%, more "
                   "than %.2f%% (use fit: to meet equal bytes)", h->path, h->arms[ihi].name, (long long)hi,
                   h->arms[ilo].name, (long long)lo, 100.0 * (double)(hi - lo) / (double)hi, 100 * h->budget_equal);
  return QG_OK;
}

/* Chooses the fit value: the largest artifact within the budget, or the one closest in
 * bytes to the target arm (ties: the smaller artifact). */
static qg_status fit_arm(run *R, const qg_lab_arm *a, int ai, int si, const char *float_path, const char *float_id,
                         qg_lab_cell *c) {
  const qg_lab_hypothesis *h = R->h;
  int to_arm = strcmp(a->fit_to, "budget") ? qg_lab_arm_index(h, a->fit_to) : -1;
  int64_t target = to_arm >= 0 ? R->r->cells[to_arm * R->r->n_seeds + si].artifact_bytes
                               : h->budget_bytes - h->budget_code_bytes;
  c->trial_values = calloc((size_t)a->n_fit, sizeof *c->trial_values);
  c->trial_bytes = calloc((size_t)a->n_fit, sizeof *c->trial_bytes);
  if (!c->trial_values || !c->trial_bytes) return qg_fail(QG_ERR_NOMEM, "out of memory");
  int best = -1;
  int64_t best_score = 0;
  for (int v = 0; v < a->n_fit; v++) {
    char stage[96];
    snprintf(stage, sizeof stage, "fit %s=%s", a->fit_param, a->fit_values[v]);
    progress(R, a, c->seed, stage);
    char fpath[4300];
    const char *fp = float_path, *fid = float_id;
    char tkey[17];
    if (!strcmp(a->fit_param, "dim")) {
      int reused;
      QG_TRY(train_arm(R, a, c->seed, a->fit_values[v], tkey, fpath, sizeof fpath, &reused));
      fp = fpath, fid = tkey;
    }
    QG_TRY(quantize_arm(R, a, a->fit_values[v], fp, fid, c->seed, c));
    c->trial_values[v] = qg_strdup(a->fit_values[v]);
    c->trial_bytes[v] = c->artifact_bytes;
    c->n_trials = v + 1;
    int64_t b = c->artifact_bytes;
    int ok = to_arm >= 0 || b <= target;
    int64_t score = to_arm >= 0 ? -llabs(b - target) * 2 - (b > target) : b;
    if (ok && (best < 0 || score > best_score)) best = v, best_score = score;
  }
  if (best < 0) {
    int64_t least = c->trial_bytes[0];
    for (int v = 1; v < a->n_fit; v++)
      if (c->trial_bytes[v] < least) least = c->trial_bytes[v];
    return qg_fail(QG_ERR_INPUT, "%s: arm '%s': no value of %s gives an artifact within budget.bytes (%lld bytes left for "
                   "the artifact; smallest tried: %lld bytes)", h->path, a->name, a->fit_param, (long long)target,
                   (long long)least);
  }
  (void)ai;
  c->fit_value = qg_strdup(a->fit_values[best]);
  /* redo the chosen one: a cache hit, which restores its figures in the cell */
  char fpath[4300];
  const char *fp = float_path, *fid = float_id;
  if (!strcmp(a->fit_param, "dim")) {
    int reused;
    QG_TRY(train_arm(R, a, c->seed, c->fit_value, c->train_key, fpath, sizeof fpath, &reused));
    fp = fpath, fid = c->train_key;
    free(c->float_path);
    c->float_path = qg_strdup(fpath);
  }
  return quantize_arm(R, a, c->fit_value, fp, fid, c->seed, c);
}

void qg_lab_result_free(qg_lab_result *r) {
  if (r->cells && r->h)
    for (int i = 0; i < r->h->n_arms * r->n_seeds; i++) {
      qg_lab_cell *c = &r->cells[i];
      free(c->fit_value), free(c->tensors), free(c->artifact_path), free(c->float_path);
      for (int v = 0; v < c->n_trials; v++) free(c->trial_values[v]);
      free(c->trial_values), free(c->trial_bytes);
      qg_lab_tokens_free(&c->tok);
    }
  free(r->cells);
  free(r->arms);
  if (r->alloc && r->h)
    for (int i = 0; i < r->h->n_arms; i++) qg_lab_alloc_free(&r->alloc[i]);
  free(r->alloc);
  memset(r, 0, sizeof *r);
}

/* Everything that can be checked without computing: every spec (each fit value), the
 * calibration source where GPTQ needs one, the device. Allocate arms have no spec before
 * they are solved: with allocated set, only they are checked (after solving). */
static qg_status preflight(run *R, int allocated) {
  const qg_lab_hypothesis *h = R->h;
  for (int i = 0; i < h->n_arms; i++) {
    const qg_lab_arm *a = &h->arms[i];
    if (a->is_float || a->allocates != allocated) continue;
    int nv = a->fit_param && strcmp(a->fit_param, "dim") ? a->n_fit : 1;
    for (int v = 0; v < nv; v++) {
      arm_plan p;
      qg_status s = plan_arm(R, a, a->fit_param ? a->fit_values[v] : NULL, &p);
      free(p.text);
      QG_TRY(s);
    }
  }
  const qg_quant_backend *qb; /* "cuda" without a GPU fails here, before any work */
  return qg_quant_backend_by_device(R->device, &qb);
}

/* The engine's stages as the runner's progress ("allocate: evaluate 3/6"). */
typedef struct {
  run *R;
  const qg_lab_arm *a;
} alloc_view;

static void alloc_progress(void *ctx, const char *stage, int i, int n) {
  alloc_view *v = ctx;
  char text[160];
  snprintf(text, sizeof text, "allocate: %s %d/%d", stage, i, n);
  progress(v->R, v->a, 0, text);
}

/* Every allocate arm solved (or read from the cache), then its spec checked like any other. */
static qg_status resolve_allocations(run *R) {
  const qg_lab_hypothesis *h = R->h;
  const qg_lab_setup *su = &R->r->setup;
  qg_lab_alloc_ids ids = {su->model_sha, su->tokenizer_sha, su->val_sha, su->calib_sha};
  for (int i = 0; i < h->n_arms; i++) {
    const qg_lab_arm *a = &h->arms[i];
    if (!a->allocates) continue;
    progress(R, a, 0, "allocate");
    alloc_view v = {R, a};
    qg_status s = qg_lab_alloc_resolve(h, a, &ids, R->o->cache_dir, R->o->force, alloc_progress, &v, &R->r->alloc[i]);
    if (s) return qg_fail_prefix(s, "arm '%s': allocate", a->name);
    R->step++;
  }
  return preflight(R, 1);
}

qg_status qg_lab_run(const qg_lab_hypothesis *h, const qg_lab_opts *o, qg_lab_result *r) {
  memset(r, 0, sizeof *r);
  run R = {.h = h, .o = o, .r = r, .device = o->device ? o->device : h->device, .t0 = qg_now()};
  r->h = h;
  r->n_seeds = o->max_seeds > 0 && o->max_seeds < h->n_seeds ? o->max_seeds : h->n_seeds;
  QG_TRY(preflight(&R, 0));
  qg_lab_setup *su = &r->setup;
  snprintf(su->version, sizeof su->version, "%s", QG_VERSION);
  snprintf(su->commit, sizeof su->commit, "%s", o->git_commit ? o->git_commit : "unknown");
  snprintf(su->device, sizeof su->device, "%s", R.device);
  machine_line(su->machine, sizeof su->machine);
  time_t now = time(NULL);
  strftime(su->started, sizeof su->started, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
  su->seq_len = h->seq_len, su->stride = h->stride;
  progress(&R, NULL, 0, "hashing inputs");
  if (h->model) QG_TRY(qg_sha256_file(h->model, su->model_sha));
  QG_TRY(qg_sha256_file(h->tokenizer, su->tokenizer_sha));
  QG_TRY(glob_sha(h->val, su->val_sha));
  if (h->calib) QG_TRY(glob_sha(h->calib, su->calib_sha));
  snprintf(R.dir_train, sizeof R.dir_train, "%s/train", o->cache_dir);
  snprintf(R.dir_art, sizeof R.dir_art, "%s/art", o->cache_dir);
  snprintf(R.dir_eval, sizeof R.dir_eval, "%s/eval", o->cache_dir);
  QG_TRY(qg_mkdir_p(R.dir_train));
  QG_TRY(qg_mkdir_p(R.dir_art));
  QG_TRY(qg_mkdir_p(R.dir_eval));

  qg_spm tok;
  QG_TRY(qg_spm_load(h->tokenizer, &tok));
  R.vocab = tok.n_pieces;
  qg_spm_luts luts;
  memset(&luts, 0, sizeof luts);
  qg_status s = qg_spm_luts_init(&luts, &tok, tok.n_pieces);
  qg_shards val;
  qg_shards_init(&val);
  /* the tokenizer must be the one the shards were prepared with (their manifest), or
   * every BPB would count the wrong bytes */
  if (!s && (s = qg_shards_open(h->val, &val))) qg_shards_init(&val);
  if (!s) s = qg_shards_check_vocab(&val, R.vocab);
  if (!s) s = qg_shards_check_tokenizer(&val, &tok, h->tokenizer, NULL);
  qg_spm_free(&tok);
  if (s) {
    qg_spm_luts_free(&luts);
    qg_shards_close(&val);
    return s;
  }
  int na = h->n_arms, ns = r->n_seeds;
  r->cells = calloc((size_t)(na * ns), sizeof *r->cells);
  r->arms = calloc((size_t)na, sizeof *r->arms);
  r->alloc = calloc((size_t)na, sizeof *r->alloc);
  if (!r->cells || !r->arms || !r->alloc) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int a = 0; a < na; a++)
    R.steps += ns * (1 + (h->arms[a].trains ? 1 : 0) + (h->arms[a].is_float ? 0 : 1)) + h->arms[a].allocates;
  if (!s) s = resolve_allocations(&R);
  qg_eval_opts eo = {.seq_len = h->seq_len, .stride = h->stride, .max_tokens = h->max_tokens};
  int ref_arm = strcmp(h->reference, "float") ? qg_lab_arm_index(h, h->reference) : -1;
  for (int si = 0; !s && si < ns; si++) {
    uint64_t seed = h->seeds[si];
    for (int k = 0; !s && k < na; k++) {
      int ai = arm_order(h, k);
      const qg_lab_arm *a = &h->arms[ai];
      qg_lab_cell *c = &r->cells[ai * ns + si];
      c->arm = ai, c->seed = seed, c->is_float = a->is_float;
      char fpath[4300];
      const char *float_id = su->model_sha;
      if (a->trains && !(a->fit_param && !strcmp(a->fit_param, "dim"))) {
        progress(&R, a, seed, "train");
        int reused;
        if ((s = train_arm(&R, a, seed, NULL, c->train_key, fpath, sizeof fpath, &reused))) break;
        c->reused |= reused;
        c->float_path = qg_strdup(fpath);
        float_id = c->train_key;
        R.step++;
      } else if (!a->trains) {
        c->float_path = qg_strdup(h->model);
      }
      if (a->is_float) continue;
      progress(&R, a, seed, "quantize");
      if (a->fit_param) s = fit_arm(&R, a, ai, si, c->float_path, float_id, c);
      else s = quantize_arm(&R, a, NULL, c->float_path, float_id, seed, c);
      if (!s && !strcmp(a->fit_param ? a->fit_param : "", "dim")) R.step++;
      R.step++;
    }
    if (!s) s = budget_check(&R, si);
    const char *ref_path = ref_arm >= 0 ? r->cells[ref_arm * ns + si].float_path : h->model;
    const qg_lab_cell *rc = ref_arm >= 0 ? &r->cells[ref_arm * ns + si] : NULL;
    const char *ref_id = rc && rc->train_key[0] ? rc->train_key : su->model_sha;
    qg_lab_cell **cs = s ? NULL : malloc(sizeof *cs * (size_t)na);
    if (!s && !cs) s = qg_fail(QG_ERR_NOMEM, "out of memory");
    for (int ai = 0; !s && ai < na; ai++) cs[ai] = &r->cells[ai * ns + si];
    if (!s) s = eval_cells(&R, ref_path, ref_id, &val, &luts, &eo, cs, na);
    free(cs);
  }
  qg_spm_luts_free(&luts);
  qg_shards_close(&val);
  if (!s) {
    su->tokens = (int64_t)r->cells[0].tok.n, su->windows = (int64_t)r->cells[0].tok.n_windows;
    su->reused_all = 1;
    for (int i = 0; i < na * ns; i++) {
      const qg_lab_cell *c = &r->cells[i];
      int want = 4 | (h->arms[c->arm].is_float ? 0 : 2) | (h->arms[c->arm].trains ? 1 : 0);
      if ((c->reused & want) != want) su->reused_all = 0;
    }
    for (int i = 0; i < na; i++)
      if (h->arms[i].allocates && !r->alloc[i].reused) su->reused_all = 0;
    progress(&R, NULL, 0, "statistics");
    s = qg_lab_analyze(r);
  }
  su->wall_seconds = qg_now() - R.t0;
  if (s) qg_lab_result_free(r);
  return s;
}
