/* Per-group sensitivity (lab/sensitivity.h): checks, calibration, the code cache, the
 * assembled cell models and their paired statistics. */
#include "lab/sensitivity.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/progress.h"
#include "core/sha256.h"
#include "io/shard_manifest.h"
#include "io/spm.h"
#include "lab/sensitivity_est.h"
#include "lab/stats.h"
#include "quant/artifact.h"
#include "quant/calibrate.h"
#include "quant/cuda/cuda_quant_bridge.h"
#include "quant/job.h"
#include "quant/pipeline.h"

/* ---- candidates --------------------------------------------------------------------- */

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t' || *s == '\n') s++;
  size_t n = strlen(s);
  while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n')) s[--n] = 0;
  return s;
}

/* Expands one candidate's tokens recursively: token k's alternatives times the rest. */
static qg_status expand_one(char **tok, int nt, int k, char *acc, size_t cap, char ***out, int *n, int *cap_out) {
  if (k == nt) {
    if (*n == *cap_out) {
      int nc = *cap_out ? *cap_out * 2 : 8;
      char **p = realloc(*out, sizeof *p * (size_t)nc);
      if (!p) return qg_fail(QG_ERR_NOMEM, "out of memory");
      *out = p, *cap_out = nc;
    }
    if (!((*out)[*n] = qg_strdup(acc))) return qg_fail(QG_ERR_NOMEM, "out of memory");
    (*n)++;
    return QG_OK;
  }
  char *eq = strchr(tok[k], '=');
  size_t base = strlen(acc);
  if (!eq || !strchr(eq, '|')) {
    snprintf(acc + base, cap - base, "%s%s", base ? " " : "", tok[k]);
    QG_TRY(expand_one(tok, nt, k + 1, acc, cap, out, n, cap_out));
    acc[base] = 0;
    return QG_OK;
  }
  const char *v = eq + 1;
  int klen = (int)(eq - tok[k]);
  while (1) {
    const char *bar = strchr(v, '|');
    int vlen = bar ? (int)(bar - v) : (int)strlen(v);
    if (!vlen) return qg_fail(QG_ERR_INPUT, "--candidates: empty alternative in '%s'", tok[k]);
    snprintf(acc + base, cap - base, "%s%.*s=%.*s", base ? " " : "", klen, tok[k], vlen, v);
    QG_TRY(expand_one(tok, nt, k + 1, acc, cap, out, n, cap_out));
    acc[base] = 0;
    if (!bar) break;
    v = bar + 1;
  }
  return QG_OK;
}

qg_status qg_sens_expand_candidates(const char *text, char ***out, int *n) {
  *out = NULL, *n = 0;
  int cap = 0;
  char *buf = qg_strdup(text ? text : "");
  if (!buf) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = QG_OK;
  char *save = NULL;
  for (char *part = strtok_r(buf, ";", &save); !s && part; part = strtok_r(NULL, ";", &save)) {
    char *p = trim(part);
    if (!*p) continue;
    char *tok[32];
    int nt = 0;
    char *s2 = NULL;
    for (char *t = strtok_r(p, " \t", &s2); t && nt < 32; t = strtok_r(NULL, " \t", &s2)) tok[nt++] = t;
    char acc[1024] = "";
    s = expand_one(tok, nt, 0, acc, sizeof acc, out, n, &cap);
  }
  free(buf);
  if (!s && *n == 0) s = qg_fail(QG_ERR_INPUT, "--candidates: no candidate given");
  /* each must be a quantizer with valid options: parse it as a one-rule spec */
  for (int i = 0; !s && i < *n; i++) {
    char rule[1100];
    snprintf(rule, sizeof rule, "x: %s", (*out)[i]);
    qg_spec sp;
    if ((s = qg_spec_parse_inline(rule, &sp))) s = qg_fail_prefix(s, "--candidates '%s'", (*out)[i]);
    else qg_spec_free(&sp);
  }
  if (s) {
    for (int i = 0; i < *n; i++) free((*out)[i]);
    free(*out);
    *out = NULL, *n = 0;
  }
  return s;
}

/* ---- groups ------------------------------------------------------------------------- */

static int is_matrix(const qg_tensor *t) { return qg_dtype_is_float(t->dtype) && t->ndim >= 2; }

static qg_status group_add(qg_sens_result *r, const char *name, const char *tensor) {
  int gi = -1;
  for (int i = 0; i < r->ng; i++)
    if (!strcmp(r->g[i].name, name)) gi = i;
  if (gi < 0) {
    qg_sens_group *g = realloc(r->g, sizeof *g * (size_t)(r->ng + 1));
    if (!g) return qg_fail(QG_ERR_NOMEM, "out of memory");
    r->g = g;
    gi = r->ng++;
    memset(&r->g[gi], 0, sizeof r->g[gi]);
    if (!(r->g[gi].name = qg_strdup(name))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  qg_sens_group *g = &r->g[gi];
  char **t = realloc(g->tensors, sizeof *t * (size_t)(g->n + 1));
  if (!t) return qg_fail(QG_ERR_NOMEM, "out of memory");
  g->tensors = t;
  if (!(g->tensors[g->n] = qg_strdup(tensor))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  g->n++;
  return QG_OK;
}

static const char *const role_names[] = {"attn.c_q", "attn.c_k", "attn.c_v", "attn.proj",
                                         "mlp.fc",   "mlp.proj", "tok_emb",  "lm_head"};

/* The role of a tensor name, or NULL (control tensors, skips, anything else). */
static const char *role_of(const char *name) {
  if (!strcmp(name, "tok_emb.weight")) return "tok_emb";
  if (!strcmp(name, "lm_head.weight")) return "lm_head";
  if (strncmp(name, "blocks.", 7)) return NULL;
  const char *p = strchr(name + 7, '.');
  if (!p) return NULL;
  for (int i = 0; i < 6; i++) {
    char want[64];
    snprintf(want, sizeof want, ".%s.weight", role_names[i]);
    if (!strcmp(p, want)) return role_names[i];
  }
  return NULL;
}

static qg_status make_groups(const char *spec, const qg_state *st, qg_sens_result *r) {
  const char *g = spec ? spec : "roles";
  if (!strcmp(g, "roles")) {
    for (int k = 0; k < 8; k++)
      for (int i = 0; i < st->n; i++) {
        const char *ro = role_of(st->t[i].name);
        if (ro && !strcmp(ro, role_names[k]) && is_matrix(&st->t[i])) QG_TRY(group_add(r, ro, st->t[i].name));
      }
  } else if (!strcmp(g, "layers")) {
    for (int i = 0; i < st->n; i++) {
      const char *nm = st->t[i].name;
      if (!is_matrix(&st->t[i]) || !role_of(nm)) continue;
      char gname[64];
      if (!strncmp(nm, "blocks.", 7)) {
        const char *p = strchr(nm + 7, '.');
        snprintf(gname, sizeof gname, "%.*s", (int)(p - nm), nm);
      } else {
        snprintf(gname, sizeof gname, "%s", role_of(nm));
      }
      QG_TRY(group_add(r, gname, nm));
    }
  } else if (!strcmp(g, "tensors")) {
    for (int i = 0; i < st->n; i++)
      if (is_matrix(&st->t[i]) && role_of(st->t[i].name)) QG_TRY(group_add(r, st->t[i].name, st->t[i].name));
  } else {
    char *buf = qg_strdup(g);
    if (!buf) return qg_fail(QG_ERR_NOMEM, "out of memory");
    qg_status s = QG_OK;
    char *save = NULL;
    for (char *p = strtok_r(buf, ",", &save); !s && p; p = strtok_r(NULL, ",", &save)) {
      char *glob = trim(p);
      if (!*glob) continue;
      int found = 0;
      for (int i = 0; !s && i < st->n; i++)
        if (is_matrix(&st->t[i]) && qg_glob_match(glob, st->t[i].name)) {
          /* a tensor belongs to the first glob that names it: groups are disjoint */
          int taken = 0;
          for (int a = 0; a < r->ng && !taken; a++)
            for (int b = 0; b < r->g[a].n && !taken; b++) taken = !strcmp(r->g[a].tensors[b], st->t[i].name);
          if (!taken) s = group_add(r, glob, st->t[i].name), found = 1;
        }
      if (!s && !found)
        s = qg_fail(QG_ERR_INPUT, "--groups: '%s' matches no weight matrix (besides those taken by earlier globs)%s",
                    glob, strchr(glob, '*') || strchr(glob, '.') ? "" : " (expected roles, layers, tensors or globs)");
    }
    free(buf);
    QG_TRY(s);
  }
  if (!r->ng) return qg_fail(QG_ERR_INPUT, "--groups %s: no group has a weight matrix", g);
  return QG_OK;
}

/* A one-tensor view of st (shares the tensor; never freed as a state). */
static qg_state one_tensor(const qg_state *st, const char *name) {
  qg_state v;
  memset(&v, 0, sizeof v);
  v.t = (qg_tensor *)qg_state_find_c(st, name);
  v.n = v.cap = v.t ? 1 : 0;
  return v;
}

static qg_status cand_spec(const char *tensor, const char *cand, qg_spec *sp) {
  char rule[1300];
  snprintf(rule, sizeof rule, "%s: %s", tensor, cand);
  return qg_spec_parse_inline(rule, sp);
}

/* ---- the code cache ----------------------------------------------------------------- */

typedef struct {
  qg_qtensor *q;    /* borrowed from a qmodel */
  int64_t bytes;    /* one-tensor .qgz minus its header */
  double est_output, est_trace;
} cached;

static qg_status tensor_bytes(const qg_qtensor *q, qg_compressor comp, qg_code_layout layout, int64_t *out) {
  uint8_t *f;
  size_t fn;
  qg_qgz_info info;
  const qg_qtensor *qp = q;
  QG_TRY(qg_qgz_encode(&qp, 1, comp, layout, &f, &fn, &info));
  free(f);
  *out = (int64_t)fn - QG_QGZ_HEADER;
  return QG_OK;
}

/* The layer-local estimators of one quantized tensor against its float weights. */
static qg_status estimators(const qg_tensor *w, const qg_qtensor *q, const qg_hessian_map *hm, double *e_out,
                            double *e_tr) {
  *e_out = *e_tr = NAN;
  const qg_hessian *h = hm ? qg_hessian_map_find(hm, w->name) : NULL;
  if (!h) return QG_OK;
  qg_state d;
  qg_state_init(&d);
  QG_TRY(qg_qtensor_to_state(q, &d));
  int64_t rows, cols, n = qg_tensor_numel(w);
  qg_matrix_view(w->ndim, w->shape, &rows, &cols);
  float *a = malloc(sizeof *a * (size_t)n), *b = malloc(sizeof *b * (size_t)n);
  double *dr = malloc(sizeof *dr * (size_t)cols);
  qg_status s = a && b && dr ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
  if (!s && cols != h->k) s = qg_fail(QG_ERR_INTERNAL, "Hessian of %s is %lld wide", w->name, (long long)h->k);
  if (!s) {
    qg_tensor_to_f32(w, a);
    qg_tensor_to_f32(&d.t[0], b);
    double tr = 0, dd = 0, quad = 0;
    for (int64_t j = 0; j < cols; j++) tr += h->H[j * cols + j];
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t j = 0; j < cols; j++) {
        dr[j] = (double)b[r * cols + j] - (double)a[r * cols + j];
        dd += dr[j] * dr[j];
      }
      for (int64_t j = 0; j < cols; j++) {
        if (dr[j] == 0) continue;
        const double *hj = h->H + j * cols;
        double acc = 0;
        for (int64_t k = 0; k < cols; k++) acc += hj[k] * dr[k];
        quad += dr[j] * acc;
      }
    }
    /* H = (2/n) X^T X, so tr(D H D^T) * n / 2 = ||D X^T||^2 over the calibration rows */
    *e_out = quad * (double)h->n / 2.0;
    *e_tr = tr / (double)cols * dd;
  }
  free(a), free(b), free(dr);
  qg_state_free(&d);
  return s;
}

/* ---- evaluation --------------------------------------------------------------------- */

typedef struct {
  size_t cap;
  int nm;
  double *kld, *nll; /* [model][token] */
  size_t *count;
  qg_status err;
} sens_sink;

static void sink(void *c, int model, const qg_token_stat *t, int32_t prev, int32_t tgt, int bytes) {
  (void)prev, (void)tgt, (void)bytes;
  sens_sink *k = c;
  if (k->err) return;
  size_t i = k->count[model]++;
  if (i >= k->cap) {
    k->err = qg_fail(QG_ERR_INTERNAL, "more scored tokens than the plan holds");
    return;
  }
  /* fp64 rounding can leave -1e-17 for identical rows, as kld does */
  k->kld[(size_t)model * k->cap + i] = t->kld < 0 ? 0 : t->kld;
  k->nll[(size_t)model * k->cap + i] = t->nll_b;
}

static void report(const qg_sens_opts *o, const char *stage, int i, int n) {
  if (o->progress) o->progress(o->progress_ctx, stage, i, n);
}

/* The model of one assignment: per tensor, the qtensor to use (cell: the group's cached
 * candidate codes, every other tensor the base's). */
static qg_status build_model(const qg_qtensor *const *qp, int n, const qg_sens_opts *o, const qg_ops *ops, qg_gpt *m) {
  qg_state st;
  qg_state_init(&st);
  QG_TRY(qg_qtensors_dequantize(qp, n, &st));
  qg_gpt_options go = {.mlp_power = o->mlp_power};
  qg_status s = qg_gpt_init(m, &st, &go, ops);
  qg_state_free(&st);
  return s;
}

static double mean_of(const double *x, size_t n) {
  double s = 0;
  for (size_t i = 0; i < n; i++) s += x[i];
  return n ? s / (double)n : NAN;
}

static qg_status paired(const double *a, const double *b, size_t n, const size_t *ws, size_t nw, qg_boot_result *out) {
  double *d = malloc(sizeof *d * (n ? n : 1));
  if (!d) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) d[i] = a[i] - b[i];
  qg_boot_data bd = {d, NULL, n, ws, nw};
  qg_boot_opts bo = {2000, 1, 0.05, 0, 0};
  qg_status s = qg_boot_ratio(&bd, &bo, out);
  free(d);
  return s;
}

void qg_sens_result_free(qg_sens_result *r) {
  for (int i = 0; i < r->ng; i++) {
    for (int j = 0; j < r->g[i].n; j++) free(r->g[i].tensors[j]);
    free(r->g[i].tensors);
    free(r->g[i].name);
  }
  free(r->g);
  for (int i = 0; i < r->nc; i++) free(r->cand[i]);
  free(r->cand);
  free(r->cells);
  memset(r, 0, sizeof *r);
}

typedef struct {
  const qg_sens_opts *o;
  qg_sens_result *r;
  qg_state st;
  qg_spec base;
  int base_ok, needs_h;
  qg_shards val;
  int val_open;
  qg_spm_luts luts;
  int luts_ok;
  qg_hessian_map hm;
  qg_qmodel bq;           /* the base quantization, one per state tensor */
  qg_qmodel *cq;          /* per (group tensor, candidate): [cand][flat tensor index] */
  cached *cache;          /* [cand * n_flat + flat] */
  int n_flat;
  int *flat_state;        /* flat group-tensor index -> state index */
  int *flat_of;           /* [group][j] prefix offsets: group g's tensors start at flat_of[g] */
  const qg_ops *ops;
} sens_run;

/* Cheap checks: specs, candidates, groups, every candidate planned on every group tensor,
 * the data and the tokenizer. */
static qg_status check_inputs(sens_run *R) {
  const qg_sens_opts *o = R->o;
  qg_sens_result *r = R->r;
  if (!o->model || !o->val || !o->tokenizer || !o->base)
    return qg_fail(QG_ERR_INPUT, "sensitivity: --model, --val, --tokenizer and --base are required");
  QG_TRY(qg_ops_by_name(o->device ? o->device : "cpu", &R->ops));
  qg_status s = qg_spec_parse_inline(o->base, &R->base);
  if (s) return qg_fail_prefix(s, "--base");
  R->base_ok = 1;
  QG_TRY(qg_sens_expand_candidates(o->candidates, &r->cand, &r->nc));
  QG_TRY(qg_checkpoint_load(o->model, &R->st, NULL));
  QG_TRY(qg_sha256_file(o->model, r->model_sha256));
  qg_spec_plan plan;
  if ((s = qg_spec_plan_make(&R->base, &R->st, &plan))) return qg_fail_prefix(s, "--base");
  qg_spec_plan_free(&plan);
  R->needs_h = qg_spec_needs_hessians(&R->base);
  QG_TRY(make_groups(o->groups, &R->st, r));
  for (int c = 0; c < r->nc; c++) {
    qg_spec sp;
    for (int g = 0; g < r->ng; g++)
      for (int j = 0; j < r->g[g].n; j++) {
        QG_TRY(cand_spec(r->g[g].tensors[j], r->cand[c], &sp));
        R->needs_h |= qg_spec_needs_hessians(&sp);
        qg_state one = one_tensor(&R->st, r->g[g].tensors[j]);
        s = qg_spec_plan_make(&sp, &one, &plan);
        qg_spec_free(&sp);
        if (s) return qg_fail_prefix(s, "candidate '%s' does not apply to group %s", r->cand[c], r->g[g].name);
        qg_spec_plan_free(&plan);
      }
  }
  if (R->needs_h && !o->calib)
    return qg_fail(QG_ERR_INPUT, "sensitivity: the base or a candidate needs calibration Hessians (gptq): give --calib");
  qg_spm tok;
  QG_TRY(qg_spm_load(o->tokenizer, &tok));
  s = qg_spm_luts_init(&R->luts, &tok, tok.n_pieces);
  R->luts_ok = !s;
  if (!s && !(s = qg_shards_open(o->val, &R->val))) R->val_open = 1;
  if (!s) s = qg_shards_check_vocab(&R->val, tok.n_pieces);
  if (!s) {
    s = qg_shards_check_tokenizer(&R->val, &tok, o->tokenizer, NULL);
    if (s && o->allow_tokenizer_mismatch) s = QG_OK;
  }
  qg_spm_free(&tok);
  if (!s && o->calib) {
    qg_shards cs;
    if (!(s = qg_shards_open(o->calib, &cs))) {
      /* the estimators' two subsets are drawn after the evaluation: check they fit now */
      int ns = o->est_seqs ? o->est_seqs : 8, len = o->calib_len > 0 ? o->calib_len : 1024;
      if (ns > 0 && qg_shards_count(&cs) < (int64_t)2 * ns * (len + 1))
        s = qg_fail(QG_ERR_INPUT, "--calib %s: %lld tokens, the estimators' two subsets need %lld (2 x --est-seqs %d x "
                    "%d); lower --est-seqs or give --est-seqs 0", o->calib, (long long)qg_shards_count(&cs),
                    (long long)2 * ns * (len + 1), ns, len + 1);
      qg_shards_close(&cs);
    }
    if (s && !strstr(qg_last_error(), "--calib")) s = qg_fail_prefix(s, "--calib");
  }
  return s;
}

static qg_status calibrate(sens_run *R) {
  const qg_sens_opts *o = R->o;
  qg_gpt m;
  qg_gpt_options go = {.mlp_power = o->mlp_power};
  QG_TRY(qg_gpt_init(&m, &R->st, &go, R->ops));
  int n = o->calib_seqs > 0 ? o->calib_seqs : 64, len = o->calib_len > 0 ? o->calib_len : 1024;
  int32_t *seqs = malloc(sizeof *seqs * (size_t)n * (size_t)len);
  qg_status s = seqs ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory for calibration tokens");
  qg_shards cs;
  if (!s && !(s = qg_shards_open(o->calib, &cs))) {
    s = qg_calib_from_shards(&cs, n, len, o->calib_seed, 0, seqs);
    qg_shards_close(&cs);
  }
  if (!s) s = qg_calib_hessians(&m, seqs, n, len, 0, &R->hm);
  free(seqs);
  qg_gpt_free(&m);
  R->r->calibrated = !s;
  return s;
}

static qg_status quantize_all(sens_run *R) {
  const qg_sens_opts *o = R->o;
  qg_sens_result *r = R->r;
  const qg_hessian_map *hm = r->calibrated ? &R->hm : NULL;
  qg_quantize_opts qo = {.hessians = hm};
  report(o, "quantize base", 0, 1);
  QG_TRY(qg_quantize_model(&R->st, &R->base, &qo, &R->bq));
  qg_compressor comp = o->comp ? o->comp : QG_COMP_DEFAULT;
  /* the whole base artifact fixes the code layout every per-tensor cost uses */
  const qg_qtensor **qp = malloc(sizeof *qp * (size_t)R->bq.n);
  if (!qp) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int i = 0; i < R->bq.n; i++) qp[i] = &R->bq.t[i].q;
  uint8_t *f;
  size_t fn;
  qg_qgz_info info;
  qg_status s = qg_qgz_encode(qp, R->bq.n, comp, QG_LAYOUT_AUTO, &f, &fn, &info);
  free(qp);
  QG_TRY(s);
  free(f);
  r->base_artifact_bytes = (int64_t)fn;
  R->n_flat = 0;
  R->flat_of = malloc(sizeof *R->flat_of * (size_t)(r->ng + 1));
  if (!R->flat_of) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int g = 0; g < r->ng; g++) R->flat_of[g] = R->n_flat, R->n_flat += r->g[g].n;
  R->flat_of[r->ng] = R->n_flat;
  R->flat_state = malloc(sizeof *R->flat_state * (size_t)R->n_flat);
  R->cache = calloc((size_t)(r->nc + 1) * (size_t)R->n_flat, sizeof *R->cache);
  R->cq = calloc((size_t)r->nc * (size_t)R->n_flat, sizeof *R->cq);
  if (!R->flat_state || !R->cache || !R->cq) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int g = 0; g < r->ng; g++)
    for (int j = 0; j < r->g[g].n; j++) {
      int fi = R->flat_of[g] + j, si = -1;
      for (int i = 0; i < R->st.n; i++)
        if (!strcmp(R->st.t[i].name, r->g[g].tensors[j])) si = i;
      R->flat_state[fi] = si;
    }
  /* the base's own entry, row nc of the cache */
  r->tensor_bytes_sum = 0;
  for (int i = 0; i < R->bq.n; i++) {
    int64_t b;
    QG_TRY(tensor_bytes(&R->bq.t[i].q, comp, info.layout, &b));
    r->tensor_bytes_sum += b;
    for (int fi = 0; fi < R->n_flat; fi++)
      if (R->flat_state[fi] == i) {
        cached *c = &R->cache[(size_t)r->nc * (size_t)R->n_flat + (size_t)fi];
        c->q = &R->bq.t[i].q, c->bytes = b;
        QG_TRY(estimators(&R->st.t[i], c->q, hm, &c->est_output, &c->est_trace));
      }
  }
  int done = 0, total = r->nc * R->n_flat;
  for (int c = 0; c < r->nc; c++)
    for (int fi = 0; fi < R->n_flat; fi++) {
      report(o, "quantize candidates", done++, total);
      const qg_tensor *t = &R->st.t[R->flat_state[fi]];
      qg_spec sp;
      QG_TRY(cand_spec(t->name, r->cand[c], &sp));
      qg_state one = one_tensor(&R->st, t->name);
      qg_qmodel *m = &R->cq[(size_t)c * (size_t)R->n_flat + (size_t)fi];
      s = qg_quantize_model(&one, &sp, &qo, m);
      qg_spec_free(&sp);
      QG_TRY(s);
      cached *ce = &R->cache[(size_t)c * (size_t)R->n_flat + (size_t)fi];
      ce->q = &m->t[0].q;
      QG_TRY(tensor_bytes(ce->q, comp, info.layout, &ce->bytes));
      QG_TRY(estimators(t, ce->q, hm, &ce->est_output, &ce->est_trace));
    }
  report(o, "quantize candidates", total, total);
  return QG_OK;
}

/* The qtensor list of a cell (g, c), or of the base (g < 0). */
static qg_status cell_tensors(const sens_run *R, int g, int c, const qg_qtensor **qp) {
  for (int i = 0; i < R->bq.n; i++) qp[i] = &R->bq.t[i].q;
  if (g < 0) return QG_OK;
  for (int fi = R->flat_of[g]; fi < R->flat_of[g + 1]; fi++)
    qp[R->flat_state[fi]] = R->cache[(size_t)c * (size_t)R->n_flat + (size_t)fi].q;
  return QG_OK;
}

static qg_status evaluate(sens_run *R) {
  const qg_sens_opts *o = R->o;
  qg_sens_result *r = R->r;
  qg_eval_plan plan = {0};
  QG_TRY(qg_eval_plan_make(qg_shards_count(&R->val), &o->eval, &plan));
  int ncell = r->ng * r->nc, nm = ncell + 1; /* model 0: the base */
  size_t cap = (size_t)plan.n_scored;
  sens_sink k = {.cap = cap, .nm = nm};
  k.kld = malloc(sizeof(double) * cap * (size_t)nm);
  k.nll = malloc(sizeof(double) * cap * (size_t)nm);
  k.count = calloc((size_t)nm, sizeof *k.count);
  size_t *ws = malloc(sizeof *ws * (size_t)(plan.n + 1));
  const qg_qtensor **qp = malloc(sizeof *qp * (size_t)R->bq.n);
  int chunk = o->chunk > 0 ? o->chunk : 8;
  qg_gpt *ms = calloc((size_t)chunk, sizeof *ms);
  qg_gpt **mp = calloc((size_t)chunk, sizeof *mp);
  qg_status s = k.kld && k.nll && k.count && ws && qp && ms && mp ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_gpt m0;
  int m0_ok = 0;
  qg_gpt_options go = {.mlp_power = o->mlp_power};
  if (!s && !(s = qg_gpt_init(&m0, &R->st, &go, R->ops))) m0_ok = 1;
  if (!s && m0.cfg.vocab != R->luts.size)
    s = qg_fail(QG_ERR_INPUT, "%s has a vocabulary of %d, the tokenizer %d", o->model, m0.cfg.vocab, R->luts.size);
  if (!s) {
    ws[0] = 0;
    for (int64_t w = 0; w < plan.n; w++) ws[w + 1] = ws[w] + (size_t)(plan.seq - plan.w[w].score_from);
  }
  /* models in chunks: each chunk shares one float forward pass over the same windows */
  for (int first = 0; !s && first < nm; first += chunk) {
    int nb = nm - first < chunk ? nm - first : chunk, built = 0;
    report(o, "evaluate", first, nm);
    for (; !s && built < nb; built++) {
      int id = first + built, g = id == 0 ? -1 : (id - 1) / r->nc, c = id == 0 ? 0 : (id - 1) % r->nc;
      if (!(s = cell_tensors(R, g, c, qp))) s = build_model(qp, R->bq.n, o, R->ops, &ms[built]);
      if (s) break;
      mp[built] = &ms[built];
    }
    qg_eval_totals *tot = calloc((size_t)nb, sizeof *tot);
    if (!s && !tot) s = qg_fail(QG_ERR_NOMEM, "out of memory");
    if (!s) {
      /* the sink indexes models by chunk position: point it at this chunk's rows */
      sens_sink kc = k;
      kc.kld = k.kld + (size_t)first * cap, kc.nll = k.nll + (size_t)first * cap, kc.count = k.count + first;
      s = qg_eval_run_many(&m0, mp, nb, &R->val, &R->luts, &o->eval, sink, &kc, tot);
      if (!s) s = kc.err;
    }
    free(tot);
    for (int i = 0; i < built; i++) qg_gpt_free(&ms[i]);
  }
  report(o, "evaluate", nm, nm);
  for (int i = 0; !s && i < nm; i++)
    if (k.count[i] != cap) s = qg_fail(QG_ERR_INTERNAL, "model %d scored %zu of %zu tokens", i, k.count[i], cap);
  if (!s) {
    r->tokens = (int64_t)cap, r->windows = plan.n;
    r->base_kld = mean_of(k.kld, cap), r->base_nll = mean_of(k.nll, cap);
    r->cells = calloc((size_t)ncell, sizeof *r->cells);
    if (!r->cells) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  /* split-half: even and odd windows as two disjoint evaluation sets */
  double *half[2] = {malloc(sizeof(double) * (size_t)(ncell ? ncell : 1)), malloc(sizeof(double) * (size_t)(ncell ? ncell : 1))};
  if (!s && (!half[0] || !half[1])) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int ci = 0; !s && ci < ncell; ci++) {
    qg_sens_cell *c = &r->cells[ci];
    c->group = ci / r->nc, c->cand = ci % r->nc;
    const double *kk = k.kld + (size_t)(ci + 1) * cap, *nn = k.nll + (size_t)(ci + 1) * cap;
    c->kld = mean_of(kk, cap), c->nll = mean_of(nn, cap);
    qg_boot_result b;
    if ((s = paired(kk, k.kld, cap, ws, (size_t)plan.n, &b))) break;
    c->delta_kld = b.estimate, c->lo = b.lo, c->hi = b.hi;
    if ((s = paired(nn, k.nll, cap, ws, (size_t)plan.n, &b))) break;
    c->delta_nll = b.estimate, c->nll_lo = b.lo, c->nll_hi = b.hi;
    c->bytes = c->base_bytes = 0;
    c->est_output = c->est_trace = 0;
    for (int h = 0; h < 2; h++)
      c->est_fisher[h] = c->est_hutch[h] = c->est_hutch_se[h] = c->est_output_ab[h] = c->est_trace_ab[h] = NAN;
    for (int fi = R->flat_of[c->group]; fi < R->flat_of[c->group + 1]; fi++) {
      const cached *cc = &R->cache[(size_t)c->cand * (size_t)R->n_flat + (size_t)fi];
      const cached *cb = &R->cache[(size_t)r->nc * (size_t)R->n_flat + (size_t)fi];
      c->bytes += cc->bytes, c->base_bytes += cb->bytes;
      c->est_output += cc->est_output, c->est_trace += cc->est_trace;
    }
    c->roi = c->delta_kld > 0 ? (double)(c->base_bytes - c->bytes) / c->delta_kld : NAN;
    for (int h = 0; h < 2; h++) {
      double sum = 0;
      size_t n = 0;
      for (int64_t w = h; w < plan.n; w += 2)
        for (size_t t = ws[w]; t < ws[w + 1]; t++) sum += kk[t] - k.kld[t], n++;
      half[h][ci] = n ? sum / (double)n : NAN;
    }
  }
  if (!s) {
    r->rho_split = plan.n >= 2 ? qg_spearman(half[0], half[1], ncell) : NAN;
    int64_t gb = 0;
    for (int g = 0; g < r->ng; g++) gb += r->cells[g * r->nc].base_bytes;
    r->fixed_bytes = r->base_artifact_bytes - gb;
    double *dk = malloc(sizeof *dk * (size_t)ncell), *e1 = malloc(sizeof *e1 * (size_t)ncell),
           *e2 = malloc(sizeof *e2 * (size_t)ncell);
    if (!dk || !e1 || !e2) s = qg_fail(QG_ERR_NOMEM, "out of memory");
    for (int ci = 0; !s && ci < ncell; ci++)
      dk[ci] = r->cells[ci].delta_kld, e1[ci] = r->cells[ci].est_output, e2[ci] = r->cells[ci].est_trace;
    r->rho_output = !s && r->calibrated ? qg_spearman(e1, dk, ncell) : NAN;
    r->rho_trace = !s && r->calibrated ? qg_spearman(e2, dk, ncell) : NAN;
    if (!r->calibrated)
      for (int ci = 0; ci < ncell; ci++) r->cells[ci].est_output = r->cells[ci].est_trace = NAN;
    free(dk), free(e1), free(e2);
  }
  free(half[0]), free(half[1]);
  if (m0_ok) qg_gpt_free(&m0);
  free(ms), free(mp), free(qp), free(ws);
  free(k.kld), free(k.nll), free(k.count);
  qg_eval_plan_free(&plan);
  return s;
}

/* ---- loss-based estimators on two disjoint calibration subsets ----------------------- */

typedef struct {
  qg_grad_model *gm;
  const int32_t *seqs;
  int n, len;
} hgrad_ctx;

/* Hutchinson's gradient: theta is the gradient model's own parameter buffer. */
static qg_status hgrad(void *ctx, const float *theta, float *g) {
  (void)theta;
  hgrad_ctx *c = ctx;
  double loss;
  return qg_grad_model_grad(c->gm, c->seqs, c->n, c->len, 1, g, &loss);
}

typedef struct {
  int nd, P;
  float **D;     /* [fi * nd + c]: dequantized minus float, c = nc is the base */
  double *dn;    /* ||D||^2, same index */
  double *F[2];  /* Fisher [fi * nd + c] per subset */
  double *z[2];  /* Hutchinson per probe [p * n_flat + fi] */
  double *tr[2]; /* mean trace per tensor */
  double *so[2], *st[2]; /* stand-ins with the subset's Hessians [fi * nd + c] */
  int64_t *numel;
} est_work;

static qg_status est_subset(sens_run *R, qg_grad_model *gm, est_work *E, int h, const int32_t *seqs, int ns, int len,
                            int ps, const char *const *names) {
  const qg_sens_opts *o = R->o;
  qg_sens_result *r = R->r;
  int nf = R->n_flat, nd = E->nd;
  char stage[48];
  snprintf(stage, sizeof stage, "estimators %c: Fisher", 'A' + h);
  report(o, stage, 0, 1);
  QG_TRY(qg_sens_fisher(gm, seqs, ns, len, 1, nf, names, nd, (const float *const *)E->D, E->F[h]));
  if (E->P > 0) {
    int64_t np, *off = malloc(sizeof *off * (size_t)nf), *ln = malloc(sizeof *ln * (size_t)nf);
    float *w = qg_grad_model_params(gm, &np);
    qg_status s = off && ln ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
    double ss = 0, cnt = 0;
    for (int fi = 0; !s && fi < nf; fi++) {
      s = qg_grad_model_find(gm, names[fi], &off[fi], &ln[fi]);
      for (int64_t i = 0; !s && i < ln[fi]; i++) ss += (double)w[off[fi] + i] * w[off[fi] + i], cnt++;
    }
    double eps = r->probe_eps_rel * sqrt(ss / (cnt > 0 ? cnt : 1));
    hgrad_ctx hc = {gm, seqs, ps, len};
    snprintf(stage, sizeof stage, "estimators %c: Hutchinson", 'A' + h);
    report(o, stage, 0, 1);
    if (!s) s = qg_hutchinson(hgrad, &hc, w, np, off, ln, nf, E->P, eps, o->calib_seed * 2654435761u + 17 + (uint64_t)h, E->z[h]);
    free(off), free(ln);
    QG_TRY(s);
    for (int fi = 0; fi < nf; fi++) {
      double se;
      qg_mean_se(E->z[h] + fi, E->P, nf, &E->tr[h][fi], &se);
    }
  }
  /* the layer-local stand-ins again, with this subset's input Hessians */
  snprintf(stage, sizeof stage, "estimators %c: stand-ins", 'A' + h);
  report(o, stage, 0, 1);
  qg_gpt m;
  qg_gpt_options go = {.mlp_power = o->mlp_power};
  QG_TRY(qg_gpt_init(&m, &R->st, &go, R->ops));
  qg_hessian_map hm;
  qg_hessian_map_init(&hm);
  qg_status s = qg_calib_hessians(&m, seqs, ns, len + 1, 1, &hm);
  qg_gpt_free(&m);
  for (int fi = 0; !s && fi < nf; fi++)
    for (int c = 0; !s && c < nd; c++) {
      const cached *ce = &R->cache[(size_t)c * (size_t)nf + (size_t)fi];
      s = estimators(&R->st.t[R->flat_state[fi]], ce->q, &hm, &E->so[h][fi * nd + c], &E->st[h][fi * nd + c]);
    }
  qg_hessian_map_free(&hm);
  return s;
}

static qg_status delta_of(const qg_tensor *w, const qg_qtensor *q, float **out, double *norm2) {
  int64_t n = qg_tensor_numel(w);
  qg_state d;
  qg_state_init(&d);
  QG_TRY(qg_qtensor_to_state(q, &d));
  float *a = malloc(sizeof *a * (size_t)n), *b = malloc(sizeof *b * (size_t)n);
  qg_status s = a && b ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
  double ss = 0;
  if (!s) {
    qg_tensor_to_f32(w, a);
    qg_tensor_to_f32(&d.t[0], b);
    for (int64_t i = 0; i < n; i++) b[i] -= a[i], ss += (double)b[i] * b[i];
  }
  qg_state_free(&d);
  free(a);
  if (s) free(b), b = NULL;
  *out = b, *norm2 = ss;
  return s;
}

static void est_free(est_work *E, int nf) {
  if (E->D)
    for (int i = 0; i < nf * E->nd; i++) free(E->D[i]);
  free(E->D), free(E->dn), free(E->numel);
  for (int h = 0; h < 2; h++) free(E->F[h]), free(E->z[h]), free(E->tr[h]), free(E->so[h]), free(E->st[h]);
}

/* Spearman of a per-subset cell field (a double[2] at byte offset off) with the measured
 * deltas dk, per subset, and between the two subsets. */
static void field_rho(const qg_sens_result *r, size_t off, const double *dk, double *v[2], double rho[2],
                      double *stab) {
  int n = r->ng * r->nc;
  for (int h = 0; h < 2; h++) {
    for (int ci = 0; ci < n; ci++) v[h][ci] = ((const double *)((const char *)&r->cells[ci] + off))[h];
    rho[h] = qg_spearman(v[h], dk, n);
  }
  *stab = qg_spearman(v[0], v[1], n);
}

/* Fills every cell's loss-based estimators and the Spearman figures (after evaluate). */
static qg_status loss_estimators(sens_run *R) {
  const qg_sens_opts *o = R->o;
  qg_sens_result *r = R->r;
  int ns = o->est_seqs ? o->est_seqs : 8, len = o->calib_len > 0 ? o->calib_len : 1024;
  if (ns < 0 || !o->calib || !r->cells) return QG_OK;
  int P = o->probes ? (o->probes < 0 ? 0 : o->probes) : 8, ps = o->probe_seqs > 0 ? o->probe_seqs : 2;
  if (ps > ns) ps = ns;
  r->est_seqs = ns, r->est_len = len, r->probes = P, r->probe_seqs = ps, r->probe_eps_rel = 1e-3;
  int nf = R->n_flat, nd = r->nc + 1, ncell = r->ng * r->nc;
  est_work E = {.nd = nd, .P = P};
  E.D = calloc((size_t)nf * (size_t)nd, sizeof *E.D);
  E.dn = calloc((size_t)nf * (size_t)nd, sizeof *E.dn);
  E.numel = calloc((size_t)nf, sizeof *E.numel);
  const char **names = calloc((size_t)nf, sizeof *names);
  int32_t *all = malloc(sizeof *all * (size_t)(2 * ns) * (size_t)(len + 1)),
          *sub = malloc(sizeof *sub * (size_t)(2 * ns) * (size_t)(len + 1));
  qg_status s = E.D && E.dn && E.numel && names && all && sub ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int h = 0; !s && h < 2; h++) {
    E.F[h] = calloc((size_t)nf * (size_t)nd, sizeof(double));
    E.z[h] = calloc((size_t)(P ? P : 1) * (size_t)nf, sizeof(double));
    E.tr[h] = calloc((size_t)nf, sizeof(double));
    E.so[h] = calloc((size_t)nf * (size_t)nd, sizeof(double));
    E.st[h] = calloc((size_t)nf * (size_t)nd, sizeof(double));
    if (!E.F[h] || !E.z[h] || !E.tr[h] || !E.so[h] || !E.st[h]) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  report(o, "estimators: weight errors", 0, 1);
  for (int fi = 0; !s && fi < nf; fi++) {
    const qg_tensor *w = &R->st.t[R->flat_state[fi]];
    names[fi] = w->name, E.numel[fi] = qg_tensor_numel(w);
    for (int c = 0; !s && c < nd; c++)
      s = delta_of(w, R->cache[(size_t)c * (size_t)nf + (size_t)fi].q, &E.D[fi * nd + c], &E.dn[fi * nd + c]);
  }
  /* 2 ns disjoint windows (a draw separate from GPTQ's), alternately to A and B */
  qg_shards cs;
  if (!s && !(s = qg_shards_open(o->calib, &cs))) {
    s = qg_calib_from_shards(&cs, 2 * ns, len + 1, o->calib_seed + 0x5e5e, 0, all);
    qg_shards_close(&cs);
  }
  if (s) s = qg_fail_prefix(s, "estimator calibration (%d sequences of %d tokens)", 2 * ns, len + 1);
  for (int i = 0; !s && i < 2 * ns; i++)
    memcpy(sub + (size_t)((i & 1) * ns + i / 2) * (size_t)(len + 1), all + (size_t)i * (size_t)(len + 1),
           sizeof *all * (size_t)(len + 1));
  qg_grad_model *gm = NULL;
  if (!s) s = qg_grad_model_new(&R->st, o->mlp_power, &gm);
  for (int h = 0; !s && h < 2; h++)
    s = est_subset(R, gm, &E, h, sub + (size_t)h * (size_t)ns * (size_t)(len + 1), ns, len, ps, names);
  qg_grad_model_free(gm);
  double *v[2] = {malloc(sizeof(double) * (size_t)ncell), malloc(sizeof(double) * (size_t)ncell)},
         *dk = malloc(sizeof(double) * (size_t)ncell), *y = malloc(sizeof(double) * (size_t)(P ? P : 1));
  if (!s && (!v[0] || !v[1] || !dk || !y)) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  for (int ci = 0; !s && ci < ncell; ci++) {
    qg_sens_cell *c = &r->cells[ci];
    dk[ci] = c->delta_kld;
    for (int h = 0; h < 2; h++) {
      double f = 0, so = 0, st = 0;
      for (int p = 0; p < P; p++) y[p] = 0;
      for (int fi = R->flat_of[c->group]; fi < R->flat_of[c->group + 1]; fi++) {
        int ic = fi * nd + c->cand, ib = fi * nd + r->nc;
        f += E.F[h][ic] - E.F[h][ib];
        so += E.so[h][ic], st += E.st[h][ic];
        for (int p = 0; p < P; p++)
          y[p] += E.z[h][(size_t)p * (size_t)nf + (size_t)fi] / (double)E.numel[fi] * (E.dn[ic] - E.dn[ib]);
      }
      c->est_fisher[h] = f, c->est_output_ab[h] = so, c->est_trace_ab[h] = st;
      if (P) qg_mean_se(y, P, 1, &c->est_hutch[h], &c->est_hutch_se[h]);
      else c->est_hutch[h] = c->est_hutch_se[h] = NAN;
    }
  }
  if (!s) {
    field_rho(r, offsetof(qg_sens_cell, est_fisher), dk, v, r->rho_fisher, &r->stab_fisher);
    field_rho(r, offsetof(qg_sens_cell, est_hutch), dk, v, r->rho_hutch, &r->stab_hutch);
    double unused[2];
    field_rho(r, offsetof(qg_sens_cell, est_output_ab), dk, v, unused, &r->stab_output);
    field_rho(r, offsetof(qg_sens_cell, est_trace_ab), dk, v, unused, &r->stab_trace);
    r->loss_est = 1;
  }
  free(v[0]), free(v[1]), free(dk), free(y);
  est_free(&E, nf);
  free(names), free(all), free(sub);
  return s;
}

static void run_init(sens_run *R, const qg_sens_opts *o, qg_sens_result *r) {
  memset(r, 0, sizeof *r);
  r->rho_output = r->rho_trace = r->rho_split = NAN;
  r->rho_fisher[0] = r->rho_fisher[1] = r->rho_hutch[0] = r->rho_hutch[1] = NAN;
  r->stab_fisher = r->stab_hutch = r->stab_output = r->stab_trace = NAN;
  memset(R, 0, sizeof *R);
  R->o = o, R->r = r;
  qg_state_init(&R->st);
  qg_hessian_map_init(&R->hm);
  qg_shards_init(&R->val);
}

static void run_free(sens_run *R) {
  qg_sens_result *r = R->r;
  if (R->cq)
    for (int i = 0; i < r->nc * R->n_flat; i++) qg_qmodel_free(&R->cq[i]);
  free(R->cq), free(R->cache), free(R->flat_state), free(R->flat_of);
  qg_qmodel_free(&R->bq);
  qg_hessian_map_free(&R->hm);
  if (R->val_open) qg_shards_close(&R->val);
  if (R->luts_ok) qg_spm_luts_free(&R->luts);
  if (R->base_ok) qg_spec_free(&R->base);
  qg_state_free(&R->st);
}

qg_status qg_sensitivity_check(const qg_sens_opts *o) {
  qg_sens_result r;
  sens_run R;
  run_init(&R, o, &r);
  qg_status s = check_inputs(&R);
  run_free(&R);
  qg_sens_result_free(&r);
  return s;
}

qg_status qg_sensitivity_run(const qg_sens_opts *o, qg_sens_result *r) {
  sens_run R;
  run_init(&R, o, r);
  double t0 = qg_now();
  qg_status s = check_inputs(&R);
  if (!s && o->calib) {
    report(o, "calibrate", 0, 1);
    double t1 = qg_now();
    s = calibrate(&R);
    r->seconds_calib = qg_now() - t1;
  }
  double t2 = qg_now();
  if (!s) s = quantize_all(&R);
  r->seconds_quant = qg_now() - t2;
  double t3 = qg_now();
  if (!s) s = evaluate(&R);
  r->seconds_eval = qg_now() - t3;
  double t4 = qg_now();
  if (!s) s = loss_estimators(&R);
  r->seconds_est = qg_now() - t4;
  r->seconds_total = qg_now() - t0;
  run_free(&R);
  if (s) qg_sens_result_free(r);
  return s;
}
