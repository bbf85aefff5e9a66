/* Hypothesis files (lab/hypothesis.h): libyaml's document tree walked key by key, every
 * value checked where it is read, so an error carries the file, line and key path. */
#include "lab/hypothesis.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <yaml.h>

#include "core/file.h"
#include "core/util.h"
#include "io/qgz.h"
#include "io/qgz_loader.h"
#include "io/yaml_guard.h"
#include "lab/alloc_arm.h"
#include "quant/pipeline.h"
#include "quant/spec.h"
#include "train/train.h"

const char *qg_metric_name(qg_metric m) {
  return m == QG_METRIC_KLD ? "kld" : m == QG_METRIC_NLL ? "nll" : m == QG_METRIC_BPB ? "bpb" : "bytes";
}

int qg_lab_arm_compared(const qg_lab_hypothesis *h, int arm) {
  return strcmp(h->arms[arm].name, h->baseline) && strcmp(h->arms[arm].name, h->reference);
}

int qg_lab_arm_expect(const qg_lab_hypothesis *h, int arm) { return h->arms[arm].expect ? h->arms[arm].expect : h->expect; }

typedef struct {
  yaml_document_t *doc;
  const char *path;
} ctx;

#define LINE(n) ((int)(n)->start_mark.line + 1)

static qg_status bad(const ctx *c, const yaml_node_t *n, const char *key, const char *fmt, const char *detail) {
  char msg[1024];
  snprintf(msg, sizeof msg, fmt, detail ? detail : "");
  return qg_fail(QG_ERR_INPUT, "%s: line %d: %s: %s", c->path, n ? LINE(n) : 0, key, msg);
}

static const char *scalar(const yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static qg_status need_scalar(const ctx *c, const yaml_node_t *n, const char *key, const char **out) {
  *out = scalar(n);
  if (!*out) return bad(c, n, key, "expected a single value, not a %s", n->type == YAML_MAPPING_NODE ? "mapping" : "list");
  if (!**out && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) return bad(c, n, key, "has no value%s", NULL);
  return QG_OK;
}

static qg_status get_str(const ctx *c, const yaml_node_t *n, const char *key, char **out) {
  const char *v;
  QG_TRY(need_scalar(c, n, key, &v));
  free(*out);
  *out = qg_strdup(v);
  return *out ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
}

static qg_status get_i64(const ctx *c, const yaml_node_t *n, const char *key, int64_t lo, int64_t hi, int64_t *out) {
  const char *v;
  QG_TRY(need_scalar(c, n, key, &v));
  char *end;
  long long x = strtoll(v, &end, 10);
  if (end == v || *end || x < lo || x > hi) {
    char d[160];
    snprintf(d, sizeof d, "expected an integer in [%lld, %lld], got '%.60s'", (long long)lo, (long long)hi, v);
    return bad(c, n, key, "%s", d);
  }
  *out = x;
  return QG_OK;
}

static qg_status get_int(const ctx *c, const yaml_node_t *n, const char *key, int lo, int hi, int *out) {
  int64_t x;
  QG_TRY(get_i64(c, n, key, lo, hi, &x));
  *out = (int)x;
  return QG_OK;
}

static qg_status get_num(const ctx *c, const yaml_node_t *n, const char *key, double lo, double hi, double *out) {
  const char *v;
  QG_TRY(need_scalar(c, n, key, &v));
  char *end;
  double x = strtod(v, &end);
  if (end == v || *end || !(x >= lo && x <= hi)) {
    char d[160];
    snprintf(d, sizeof d, "expected a number in [%g, %g], got '%.60s'", lo, hi, v);
    return bad(c, n, key, "%s", d);
  }
  *out = x;
  return QG_OK;
}

/* Paths in the file are relative to its folder (absolute ones stay). */
static char *resolve(const char *dir, const char *p) {
  if (p[0] == '/' || !dir || !*dir) return qg_strdup(p);
  size_t n = strlen(dir) + strlen(p) + 2;
  char *r = malloc(n);
  if (r) snprintf(r, n, "%s/%s", dir, p);
  return r;
}

static qg_status get_path(const ctx *c, const char *dir, const yaml_node_t *n, const char *key, int glob, char **out) {
  const char *v;
  QG_TRY(need_scalar(c, n, key, &v));
  free(*out);
  if (!(*out = resolve(dir, v))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  if (glob) {
    char **paths;
    int k;
    if (qg_glob_sorted(*out, &paths, &k)) return bad(c, n, key, "no file matches '%s'", *out);
    qg_free_strings(paths, k);
  } else if (access(*out, R_OK)) {
    return bad(c, n, key, "cannot read '%s'", *out);
  }
  return QG_OK;
}

/* Walks a mapping: for each key, calls fn; unknown keys are the callee's to refuse. */
typedef qg_status (*member_fn)(const ctx *c, void *obj, const char *key, const char *path, yaml_node_t *v);

static qg_status each_member(const ctx *c, yaml_node_t *m, const char *path, member_fn fn, void *obj) {
  if (m->type != YAML_MAPPING_NODE) return bad(c, m, path, "expected a mapping%s", NULL);
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
    yaml_node_t *k = yaml_document_get_node(c->doc, p->key), *v = yaml_document_get_node(c->doc, p->value);
    const char *key = scalar(k);
    if (!key) return bad(c, k, path, "keys must be plain words%s", NULL);
    for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++)
      if (!strcmp(scalar(yaml_document_get_node(c->doc, q->key)) ? scalar(yaml_document_get_node(c->doc, q->key)) : "",
                  key))
        return bad(c, k, path, "'%s' is given twice", key);
    char full[512];
    snprintf(full, sizeof full, "%s%s%s", path, *path ? "." : "", key);
    QG_TRY(fn(c, obj, key, full, v));
  }
  return QG_OK;
}

static qg_status unknown(const ctx *c, yaml_node_t *v, const char *full, const char *valid) {
  return qg_fail(QG_ERR_INPUT, "%s: line %d: %s: unknown key (valid here: %s)", c->path, LINE(v), full, valid);
}

/* ---- parts ---------------------------------------------------------------------------- */

typedef struct {
  qg_lab_hypothesis *h;
  qg_lab_arm *arm;
} pctx;

static qg_status data_member(const ctx *c, void *obj, const char *key, const char *full, yaml_node_t *v) {
  qg_lab_hypothesis *h = obj;
  if (!strcmp(key, "val")) return get_path(c, h->dir, v, full, 1, &h->val);
  if (!strcmp(key, "calib")) return get_path(c, h->dir, v, full, 1, &h->calib);
  if (!strcmp(key, "seq_len")) return get_int(c, v, full, 2, 1 << 20, &h->seq_len);
  if (!strcmp(key, "stride")) return get_int(c, v, full, 0, 1 << 20, &h->stride);
  if (!strcmp(key, "max_tokens")) return get_i64(c, v, full, 0, (int64_t)1 << 40, &h->max_tokens);
  return unknown(c, v, full, "val, calib, seq_len, max_tokens, stride");
}

typedef struct {
  char **source;
  int *seqs, *len;
  int64_t *skip;
  const char *dir;
} calib_target;

static qg_status calib_member(const ctx *c, void *obj, const char *key, const char *full, yaml_node_t *v) {
  calib_target *t = obj;
  if (!strcmp(key, "seqs")) return get_int(c, v, full, 1, 1000000, t->seqs);
  if (!strcmp(key, "len")) return get_int(c, v, full, 2, 1 << 20, t->len);
  if (!strcmp(key, "skip")) return get_i64(c, v, full, 0, (int64_t)1 << 50, t->skip);
  if (t->source && !strcmp(key, "source")) {
    const char *s = scalar(v);
    if (s && !strcmp(s, "self")) return get_str(c, v, full, t->source);
    return get_path(c, t->dir, v, full, 1, t->source);
  }
  return unknown(c, v, full, t->source ? "source, seqs, len, skip" : "seqs, len, skip");
}

static qg_status published_member(const ctx *c, void *obj, const char *key, const char *full, yaml_node_t *v) {
  qg_lab_hypothesis *h = obj;
  if (!strcmp(key, "text")) return get_str(c, v, full, &h->published);
  if (!strcmp(key, "arm")) return get_str(c, v, full, &h->published_arm);
  if (!strcmp(key, "value")) return get_num(c, v, full, -1e15, 1e15, &h->published_value);
  return unknown(c, v, full, "text, arm, value");
}

static qg_status budget_member(const ctx *c, void *obj, const char *key, const char *full, yaml_node_t *v) {
  qg_lab_hypothesis *h = obj;
  if (!strcmp(key, "bytes")) return get_i64(c, v, full, 1, (int64_t)1 << 50, &h->budget_bytes);
  if (!strcmp(key, "equal")) return get_num(c, v, full, 0, 0.99, &h->budget_equal);
  if (!strcmp(key, "code_bytes")) { /* auto: the loader an entrant ships, as quantize --code-bytes auto */
    const char *s = scalar(v);
    if (s && !strcmp(s, "auto")) {
      h->budget_code_bytes = qg_qgz_loader_bytes();
      return QG_OK;
    }
    return get_i64(c, v, full, 0, (int64_t)1 << 40, &h->budget_code_bytes);
  }
  return unknown(c, v, full, "bytes, equal, code_bytes");
}

/* Training options: the train command's own names, checked against the library's table on
 * a scratch configuration (values that do not parse fail here, before any work). */
static const char *const train_refused[] = {"out", "resume", "stop-at", "save-every", "seed", "device", "export", NULL};

static qg_status train_options(const ctx *c, const char *dir, yaml_node_t *m, const char *path, qg_lab_kv **kv, int *n) {
  if (m->type != YAML_MAPPING_NODE) return bad(c, m, path, "expected a mapping of train options%s", NULL);
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = yaml_document_get_node(c->doc, p->key), *vn = yaml_document_get_node(c->doc, p->value);
    const char *key = scalar(kn), *val;
    char full[512];
    snprintf(full, sizeof full, "%s.%s", path, key ? key : "?");
    if (!key) return bad(c, kn, path, "keys must be plain words%s", NULL);
    QG_TRY(need_scalar(c, vn, full, &val));
    for (int i = 0; train_refused[i]; i++)
      if (!strcmp(key, train_refused[i]))
        return bad(c, kn, full, "is set by the runner (seeds come from seeds:, the device from device:)%s", NULL);
    qg_train_config scratch;
    qg_train_config_defaults(&scratch);
    int known;
    if (qg_train_config_set(&scratch, key, full, val, &known)) return qg_fail_prefix(QG_ERR_INPUT, "%s: line %d", c->path, LINE(vn));
    if (!known) return bad(c, kn, full, "not an option of quantgolf train%s", NULL);
    char *value = !strcmp(key, "train") || !strcmp(key, "init") ? resolve(dir, val) : qg_strdup(val);
    if (!value) return qg_fail(QG_ERR_NOMEM, "out of memory");
    if (!strcmp(key, "qat")) {
      qg_spec sp;
      qg_status s = qg_train_spec_load(value, &sp);
      if (s) {
        free(value);
        return qg_fail_prefix(s, "%s: line %d: %s", c->path, LINE(vn), full);
      }
      qg_spec_free(&sp);
    }
    int at = -1;
    for (int i = 0; i < *n; i++)
      if (!strcmp((*kv)[i].key, key)) at = i;
    if (at < 0) {
      qg_lab_kv *g = realloc(*kv, sizeof *g * (size_t)(*n + 1));
      if (!g) return free(value), qg_fail(QG_ERR_NOMEM, "out of memory");
      *kv = g;
      at = (*n)++;
      g[at].key = qg_strdup(key);
    } else {
      free((*kv)[at].value);
    }
    (*kv)[at].value = value;
    (*kv)[at].line = LINE(vn);
  }
  return QG_OK;
}

static qg_status fit_member(const ctx *c, void *obj, const char *key, const char *full, yaml_node_t *v) {
  qg_lab_arm *a = obj;
  if (!strcmp(key, "param")) {
    QG_TRY(get_str(c, v, full, &a->fit_param));
    if (strcmp(a->fit_param, "bits") && strcmp(a->fit_param, "k") && strcmp(a->fit_param, "clip") &&
        strcmp(a->fit_param, "dim"))
      return bad(c, v, full, "expected bits, k, clip or dim, got '%s'", a->fit_param);
    return QG_OK;
  }
  if (!strcmp(key, "to")) return get_str(c, v, full, &a->fit_to);
  if (!strcmp(key, "values")) {
    if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top == v->data.sequence.items.start)
      return bad(c, v, full, "expected a non-empty list of values%s", NULL);
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
      const char *s;
      QG_TRY(need_scalar(c, yaml_document_get_node(c->doc, *it), full, &s));
      char **g = realloc(a->fit_values, sizeof *g * (size_t)(a->n_fit + 1));
      if (!g) return qg_fail(QG_ERR_NOMEM, "out of memory");
      a->fit_values = g;
      if (!(g[a->n_fit++] = qg_strdup(s))) return qg_fail(QG_ERR_NOMEM, "out of memory");
    }
    return QG_OK;
  }
  return unknown(c, v, full, "param, values, to");
}

static qg_status alloc_member(const ctx *c, void *obj, const char *key, const char *full, yaml_node_t *v) {
  pctx *p = obj;
  qg_lab_arm *a = p->arm;
  if (!strcmp(key, "budget")) return get_i64(c, v, full, 1, INT64_MAX, &a->alloc_budget);
  if (!strcmp(key, "candidates")) return get_str(c, v, full, &a->alloc_candidates);
  if (!strcmp(key, "groups")) return get_str(c, v, full, &a->alloc_groups);
  if (!strcmp(key, "base")) return get_str(c, v, full, &a->alloc_base);
  if (!strcmp(key, "sensitivity")) return get_path(c, p->h->dir, v, full, 0, &a->alloc_sensitivity);
  return unknown(c, v, full, "budget, candidates, groups, base, sensitivity");
}

static qg_status arm_member(const ctx *c, void *obj, const char *key, const char *full, yaml_node_t *v) {
  pctx *p = obj;
  qg_lab_arm *a = p->arm;
  if (!strcmp(key, "spec")) return get_str(c, v, full, &a->spec);
  if (!strcmp(key, "spec_file")) return get_path(c, p->h->dir, v, full, 0, &a->spec_file);
  if (!strcmp(key, "label")) return get_str(c, v, full, &a->label);
  if (!strcmp(key, "compress")) return get_str(c, v, full, &a->compress);
  if (!strcmp(key, "expect")) {
    const char *b;
    QG_TRY(need_scalar(c, v, full, &b));
    if (strcmp(b, "lower") && strcmp(b, "higher")) return bad(c, v, full, "expected lower or higher, got '%s'", b);
    a->expect = !strcmp(b, "lower") ? -1 : 1;
    return QG_OK;
  }
  if (!strcmp(key, "contest_passthrough")) {
    const char *b;
    QG_TRY(need_scalar(c, v, full, &b));
    if (strcmp(b, "true") && strcmp(b, "false")) return bad(c, v, full, "expected true or false, got '%s'", b);
    a->contest_passthrough = !strcmp(b, "true");
    return QG_OK;
  }
  if (!strcmp(key, "train")) {
    a->trains = 1;
    return train_options(c, p->h->dir, v, full, &a->train, &a->n_train);
  }
  if (!strcmp(key, "fit")) return each_member(c, v, full, fit_member, a);
  if (!strcmp(key, "allocate")) {
    a->allocates = 1;
    return each_member(c, v, full, alloc_member, p);
  }
  if (!strcmp(key, "calibration")) {
    calib_target t = {&a->calib, &a->calib_seqs, &a->calib_len, &a->calib_skip, p->h->dir};
    return each_member(c, v, full, calib_member, &t);
  }
  return unknown(c, v, full, "spec, spec_file, allocate, train, fit, calibration, compress, label, contest_passthrough, expect");
}

/* The experiment-level train defaults, kept aside until the arms are read. */
typedef struct {
  qg_lab_hypothesis *h;
  qg_lab_kv *train;
  int n_train, has_train;
  yaml_node_t *arms;
  int metric_set, margin_set, alpha_set, expect_set;
} top_ctx;

static qg_status top_member(const ctx *c, void *obj, const char *key, const char *full, yaml_node_t *v) {
  top_ctx *t = obj;
  qg_lab_hypothesis *h = t->h;
  if (!strcmp(key, "id")) {
    QG_TRY(get_str(c, v, full, &h->id));
    for (const char *s = h->id; *s; s++)
      if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_' && *s != '.')
        return bad(c, v, full, "'%s': letters, digits, '-', '_' and '.' only (it names a folder)", h->id);
    return QG_OK;
  }
  if (!strcmp(key, "hypothesis")) return get_str(c, v, full, &h->hypothesis);
  if (!strcmp(key, "notes")) return get_str(c, v, full, &h->notes);
  if (!strcmp(key, "published")) {
    if (v->type != YAML_MAPPING_NODE) return get_str(c, v, full, &h->published);
    h->published_value = NAN;
    return each_member(c, v, full, published_member, h);
  }
  if (!strcmp(key, "model")) return get_path(c, h->dir, v, full, 0, &h->model);
  if (!strcmp(key, "tokenizer")) return get_path(c, h->dir, v, full, 0, &h->tokenizer);
  if (!strcmp(key, "data")) return each_member(c, v, full, data_member, h);
  if (!strcmp(key, "reference")) return get_str(c, v, full, &h->reference);
  if (!strcmp(key, "baseline")) return get_str(c, v, full, &h->baseline);
  if (!strcmp(key, "compress")) return get_str(c, v, full, &h->compress);
  if (!strcmp(key, "device")) {
    QG_TRY(get_str(c, v, full, &h->device));
    if (strcmp(h->device, "cpu") && strcmp(h->device, "cuda") && strcmp(h->device, "auto"))
      return bad(c, v, full, "expected cpu, cuda or auto, got '%s'", h->device);
    return QG_OK;
  }
  if (!strcmp(key, "metric")) {
    const char *s;
    QG_TRY(need_scalar(c, v, full, &s));
    if (!strcmp(s, "kld")) h->metric = QG_METRIC_KLD;
    else if (!strcmp(s, "nll")) h->metric = QG_METRIC_NLL;
    else if (!strcmp(s, "bpb")) h->metric = QG_METRIC_BPB;
    else if (!strcmp(s, "bytes")) h->metric = QG_METRIC_BYTES;
    else return bad(c, v, full, "expected kld, nll, bpb or bytes, got '%s'", s);
    t->metric_set = 1;
    return QG_OK;
  }
  if (!strcmp(key, "expect")) {
    const char *s;
    QG_TRY(need_scalar(c, v, full, &s));
    if (!strcmp(s, "lower")) h->expect = -1;
    else if (!strcmp(s, "higher")) h->expect = 1;
    else return bad(c, v, full, "expected lower or higher, got '%s'", s);
    t->expect_set = 1;
    return QG_OK;
  }
  if (!strcmp(key, "margin")) return t->margin_set = 1, get_num(c, v, full, 0, 1e6, &h->margin);
  if (!strcmp(key, "alpha")) return t->alpha_set = 1, get_num(c, v, full, 1e-6, 0.5, &h->alpha);
  if (!strcmp(key, "resamples")) return get_int(c, v, full, 2000, 1000000, &h->resamples);
  if (!strcmp(key, "bootstrap_seed")) {
    int64_t x;
    QG_TRY(get_i64(c, v, full, 0, INT64_MAX, &x));
    h->bootstrap_seed = (uint64_t)x;
    return QG_OK;
  }
  if (!strcmp(key, "rule")) {
    const char *s;
    QG_TRY(need_scalar(c, v, full, &s));
    if (strcmp(s, "contest")) return bad(c, v, full, "the only named rule is 'contest', got '%s'", s);
    h->rule_contest = 1;
    return QG_OK;
  }
  if (!strcmp(key, "seeds")) {
    if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top == v->data.sequence.items.start)
      return bad(c, v, full, "expected a non-empty list of seeds%s", NULL);
    int n = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
    free(h->seeds);
    if (!(h->seeds = malloc(sizeof *h->seeds * (size_t)n))) return qg_fail(QG_ERR_NOMEM, "out of memory");
    h->n_seeds = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++) {
      int64_t x;
      QG_TRY(get_i64(c, yaml_document_get_node(c->doc, *it), full, 0, INT64_MAX, &x));
      for (int i = 0; i < h->n_seeds; i++)
        if (h->seeds[i] == (uint64_t)x) return bad(c, v, full, "seed %s is listed twice", scalar(yaml_document_get_node(c->doc, *it)));
      h->seeds[h->n_seeds++] = (uint64_t)x;
    }
    return QG_OK;
  }
  if (!strcmp(key, "budget")) {
    h->has_budget = 1;
    return each_member(c, v, full, budget_member, h);
  }
  if (!strcmp(key, "calibration")) {
    calib_target ct = {NULL, &h->calib_seqs, &h->calib_len, &h->calib_skip, h->dir};
    return each_member(c, v, full, calib_member, &ct);
  }
  if (!strcmp(key, "train")) {
    t->has_train = 1;
    return train_options(c, h->dir, v, full, &t->train, &t->n_train);
  }
  if (!strcmp(key, "arms")) {
    if (v->type != YAML_MAPPING_NODE) return bad(c, v, full, "expected a mapping of arm names to arms%s", NULL);
    t->arms = v;
    return QG_OK;
  }
  return unknown(c, v, full,
                 "id, hypothesis, model, tokenizer, data, reference, baseline, arms, metric, expect, margin, alpha, "
                 "seeds, budget, rule, resamples, bootstrap_seed, compress, calibration, train, published, notes, device");
}

/* Checks a spec text (after {param} substitution when the arm fits). */
static qg_status check_spec(const ctx *c, const qg_lab_arm *a, const char *text) {
  qg_spec sp;
  qg_status s = qg_spec_parse_inline(text, &sp);
  if (s) return qg_fail_prefix(s, "%s: line %d: arms.%s.spec", c->path, a->line, a->name);
  qg_spec_free(&sp);
  return QG_OK;
}

/* An allocate arm: its options and inputs checked now (cheap); the solver chooses its spec
 * when the experiment runs (lab/alloc_arm.h). */
static qg_status check_allocation(const ctx *c, const qg_lab_hypothesis *h, yaml_node_t *vn, const char *path,
                                  qg_lab_arm *a) {
  if (a->spec || a->spec_file) return bad(c, vn, path, "allocate chooses the spec: give no spec or spec_file%s", NULL);
  if (a->fit_param || a->trains) return bad(c, vn, path, "allocate arms take no fit or train%s", NULL);
  if (!a->alloc_budget) return bad(c, vn, path, "allocate needs budget (bytes)%s", NULL);
  /* a table file has its own groups; only the engine, measuring in place, can regroup */
  if (a->alloc_sensitivity && a->alloc_groups && strcmp(a->alloc_groups, "roles"))
    return bad(c, vn, path, "allocate.groups: with a sensitivity file only roles (the table's groups), got '%s'",
               a->alloc_groups);
  if (!a->alloc_sensitivity && !a->alloc_candidates)
    return bad(c, vn, path, "allocate without sensitivity measures the table in place: it needs candidates%s", NULL);
  if (!h->model) return bad(c, vn, path, "allocate needs the experiment's model%s", NULL);
  qg_status s = qg_lab_alloc_check(h, a);
  if (s) return qg_fail_prefix(s, "%s: line %d: %s.allocate", c->path, a->line, path);
  return QG_OK;
}

static qg_status read_arm(const ctx *c, top_ctx *t, yaml_node_t *kn, yaml_node_t *vn, qg_lab_arm *a) {
  qg_lab_hypothesis *h = t->h;
  a->name = qg_strdup(scalar(kn));
  a->line = LINE(kn);
  if (!a->name) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (const char *s = a->name; *s; s++)
    if (!isalnum((unsigned char)*s) && *s != '-' && *s != '_')
      return bad(c, kn, "arms", "arm name '%s': letters, digits, '-' and '_' only", a->name);
  char path[300];
  snprintf(path, sizeof path, "arms.%s", a->name);
  /* the experiment's train defaults first, then the arm's own over them */
  pctx p = {h, a};
  if (vn->type == YAML_MAPPING_NODE)
    for (yaml_node_pair_t *q = vn->data.mapping.pairs.start; q < vn->data.mapping.pairs.top; q++)
      if (!strcmp(scalar(yaml_document_get_node(c->doc, q->key)) ? scalar(yaml_document_get_node(c->doc, q->key)) : "",
                  "train") && t->has_train)
        for (int i = 0; i < t->n_train; i++) {
          qg_lab_kv *g = realloc(a->train, sizeof *g * (size_t)(a->n_train + 1));
          if (!g) return qg_fail(QG_ERR_NOMEM, "out of memory");
          a->train = g;
          g[a->n_train].key = qg_strdup(t->train[i].key);
          g[a->n_train].value = qg_strdup(t->train[i].value);
          g[a->n_train].line = t->train[i].line;
          a->n_train++;
        }
  QG_TRY(each_member(c, vn, path, arm_member, &p));
  if (a->allocates) QG_TRY(check_allocation(c, h, vn, path, a));
  else if (!a->spec == !a->spec_file) return bad(c, vn, path, "give exactly one of spec, spec_file and allocate%s", NULL);
  a->is_float = a->spec && !strcmp(a->spec, "none");
  if (a->compress) {
    qg_compressor comp;
    if (qg_compressor_from_name(a->compress, &comp)) return bad(c, vn, path, "compress: %s", qg_last_error());
  }
  if (a->fit_param) {
    if (!a->n_fit || !a->fit_to) return bad(c, vn, path, "fit needs param, values and to%s", NULL);
    if (!strcmp(a->fit_param, "dim")) {
      if (!a->trains) return bad(c, vn, path, "fit param dim needs a trained arm (train:)%s", NULL);
    } else {
      char ph[16];
      snprintf(ph, sizeof ph, "{%s}", a->fit_param);
      if (!a->spec || !strstr(a->spec, ph)) return bad(c, vn, path, "fit: the spec must contain %s", ph);
    }
  }
  if (a->spec && !a->is_float) {
    if (a->fit_param && strcmp(a->fit_param, "dim")) {
      for (int i = 0; i < a->n_fit; i++) {
        char *text = qg_lab_spec_with(a->spec, a->fit_param, a->fit_values[i]);
        if (!text) return qg_fail(QG_ERR_NOMEM, "out of memory");
        qg_status s = check_spec(c, a, text);
        free(text);
        QG_TRY(s);
      }
    } else {
      QG_TRY(check_spec(c, a, a->spec));
    }
  } else if (a->spec_file) {
    qg_spec sp;
    qg_status s = qg_spec_load_yaml(a->spec_file, &sp);
    if (s) return qg_fail_prefix(s, "%s: line %d: %s.spec_file", c->path, a->line, path);
    qg_spec_free(&sp);
  }
  if (a->trains) {
    int has_data = 0;
    for (int i = 0; i < a->n_train; i++) has_data |= !strcmp(a->train[i].key, "train");
    if (!has_data) return bad(c, vn, path, "train: needs 'train' (the training shard glob) here or in the top-level train:%s", NULL);
  }
  return QG_OK;
}

static qg_status validate(const ctx *c, top_ctx *t, yaml_node_t *root) {
  qg_lab_hypothesis *h = t->h;
  if (!h->hypothesis) return bad(c, root, "hypothesis", "is required (one sentence: what should hold)%s", NULL);
  if (!h->tokenizer) return bad(c, root, "tokenizer", "is required%s", NULL);
  if (!h->val) return bad(c, root, "data.val", "is required (the validation shard glob)%s", NULL);
  if (!t->arms) return bad(c, root, "arms", "is required%s", NULL);
  int n = (int)(t->arms->data.mapping.pairs.top - t->arms->data.mapping.pairs.start);
  if (n < 2) return bad(c, t->arms, "arms", "needs at least two arms (a baseline and one to compare)%s", NULL);
  if (!(h->arms = calloc((size_t)n, sizeof *h->arms))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (yaml_node_pair_t *p = t->arms->data.mapping.pairs.start; p < t->arms->data.mapping.pairs.top; p++) {
    yaml_node_t *kn = yaml_document_get_node(c->doc, p->key), *vn = yaml_document_get_node(c->doc, p->value);
    if (!scalar(kn)) return bad(c, kn, "arms", "arm names must be plain words%s", NULL);
    if (qg_lab_arm_index(h, scalar(kn)) >= 0) return bad(c, kn, "arms", "arm '%s' is given twice", scalar(kn));
    h->n_arms++;
    QG_TRY(read_arm(c, t, kn, vn, &h->arms[h->n_arms - 1]));
  }
  int any_train = 0, all_train = 1;
  for (int i = 0; i < h->n_arms; i++) any_train |= h->arms[i].trains, all_train &= h->arms[i].trains;
  if (!all_train && !h->model)
    return bad(c, root, "model", "is required unless every arm trains (arm '%s' does not)", h->arms[0].name);
  if (!h->baseline) return bad(c, root, "baseline", "is required (the arm every other arm is compared with)%s", NULL);
  if (qg_lab_arm_index(h, h->baseline) < 0) return bad(c, root, "baseline", "'%s' is not an arm", h->baseline);
  if (!h->reference && !(h->reference = qg_strdup("float"))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  if (strcmp(h->reference, "float")) {
    int r = qg_lab_arm_index(h, h->reference);
    if (r < 0) return bad(c, root, "reference", "'%s' is neither float nor an arm", h->reference);
  } else if (any_train) {
    return bad(c, root, "reference",
               "is 'float' but arms train: name the arm whose float model every KLD is measured against (e.g. a "
               "plain arm with spec: none)%s", NULL);
  }
  if (h->budget_code_bytes && !h->budget_bytes)
    return bad(c, root, "budget.code_bytes", "counts against budget.bytes, which is not given%s", NULL);
  if (h->budget_bytes && h->budget_code_bytes >= h->budget_bytes)
    return bad(c, root, "budget.code_bytes", "leaves no bytes of budget.bytes for the artifact%s", NULL);
  for (int i = 0; i < h->n_arms; i++) {
    qg_lab_arm *a = &h->arms[i];
    if (!a->fit_to) continue;
    if (!strcmp(a->fit_to, "budget")) {
      if (!h->budget_bytes) return bad(c, root, "budget.bytes", "is required by arm '%s' (fit to: budget)", a->name);
    } else {
      int j = qg_lab_arm_index(h, a->fit_to);
      if (j < 0 || j == i) return bad(c, root, "arms", "fit to: '%s' is neither budget nor another arm", a->fit_to);
      if (h->arms[j].fit_param) return bad(c, root, "arms", "fit to: arm '%s' itself fits: fit to budget instead", a->fit_to);
    }
    if (a->is_float) return bad(c, root, "arms", "arm '%s' is float (spec: none): nothing to fit", a->name);
  }
  if (h->rule_contest) {
    /* the contest's record rule: at least 0.005 nats better at p < 0.01 */
    if ((t->metric_set && h->metric != QG_METRIC_NLL) || (t->expect_set && h->expect != -1) ||
        (t->margin_set && h->margin != 0.005) || (t->alpha_set && h->alpha != 0.01))
      return bad(c, root, "rule", "contest fixes metric nll, expect lower, margin 0.005, alpha 0.01; remove the "
                 "conflicting keys%s", NULL);
    h->metric = QG_METRIC_NLL, h->expect = -1, h->margin = 0.005, h->alpha = 0.01;
  }
  qg_compressor comp;
  if (qg_compressor_from_name(h->compress, &comp)) return bad(c, root, "compress", "%s", qg_last_error());
  if (h->published_arm && qg_lab_arm_index(h, h->published_arm) < 0)
    return bad(c, root, "published.arm", "'%s' is not an arm", h->published_arm);
  if (h->published_arm && (isnan(h->published_value) || !strcmp(h->published_arm, h->baseline)))
    return bad(c, root, "published", "needs a value and an arm other than the baseline (the figure is arm - baseline)%s", NULL);
  if (h->metric == QG_METRIC_BYTES)
    for (int i = 0; i < h->n_arms; i++)
      if (h->arms[i].is_float) return bad(c, root, "metric", "bytes needs every arm quantized (arm '%s' is float)", h->arms[i].name);
  return QG_OK;
}

static char *stem(const char *path) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  const char *dot = strrchr(b, '.');
  return qg_strndup(b, dot && dot != b ? (size_t)(dot - b) : strlen(b));
}

qg_status qg_lab_hypothesis_parse(const char *text, size_t len, const char *path, qg_lab_hypothesis *h) {
  memset(h, 0, sizeof *h);
  h->path = qg_strdup(path);
  const char *slash = strrchr(path, '/');
  h->dir = slash ? qg_strndup(path, (size_t)(slash - path)) : qg_strdup(".");
  h->source_text = qg_strndup(text, len);
  h->seq_len = 1024, h->expect = -1, h->alpha = 0.01, h->resamples = 2000;
  h->compress = qg_strdup(qg_compressor_name(QG_COMP_DEFAULT));
  h->device = qg_strdup("cpu");
  h->calib_seqs = 128;
  h->published_value = NAN;
  if (!h->path || !h->dir || !h->source_text || !h->compress || !h->device) {
    qg_lab_hypothesis_free(h);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  /* refuse absurd nesting before libyaml builds the tree (it is slow on deep documents) */
  qg_status ds = qg_yaml_check_depth((const uint8_t *)text, len, path, 64);
  if (ds) {
    qg_lab_hypothesis_free(h);
    return ds;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) {
    qg_lab_hypothesis_free(h);
    return qg_fail(QG_ERR_NOMEM, "out of memory (YAML parser)");
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  qg_status s = QG_OK;
  top_ctx t = {.h = h};
  if (!yaml_parser_load(&parser, &doc)) {
    s = qg_fail(QG_ERR_INPUT, "%s: line %d column %d: malformed YAML: %s", path, (int)parser.problem_mark.line + 1,
                (int)parser.problem_mark.column + 1, parser.problem ? parser.problem : "parse error");
    yaml_parser_delete(&parser);
    qg_lab_hypothesis_free(h);
    return s;
  }
  ctx c = {&doc, path};
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  if (!root) s = qg_fail(QG_ERR_INPUT, "%s: empty file: an experiment needs hypothesis, model, data, arms", path);
  if (!s) s = each_member(&c, root, "", top_member, &t);
  if (!s) s = validate(&c, &t, root);
  if (!s && !h->id && !(h->id = stem(path))) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  if (!s && !h->seeds) {
    if (!(h->seeds = malloc(sizeof *h->seeds))) s = qg_fail(QG_ERR_NOMEM, "out of memory");
    else h->seeds[0] = 1, h->n_seeds = 1;
  }
  if (!s && !h->bootstrap_seed) h->bootstrap_seed = qg_tensor_seed(0, h->id); /* a fixed stream per experiment */
  for (int i = 0; i < t.n_train; i++) free(t.train[i].key), free(t.train[i].value);
  free(t.train);
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  if (s) qg_lab_hypothesis_free(h);
  return s;
}

qg_status qg_lab_hypothesis_load(const char *path, qg_lab_hypothesis *out) {
  uint8_t *data;
  size_t len;
  QG_TRY(qg_read_file(path, &data, &len, 1 << 20));
  qg_status s = qg_lab_hypothesis_parse((const char *)data, len, path, out);
  free(data);
  return s;
}

static void arm_free(qg_lab_arm *a) {
  free(a->name), free(a->label), free(a->spec), free(a->spec_file), free(a->fit_param), free(a->fit_to);
  free(a->calib), free(a->compress);
  free(a->alloc_candidates), free(a->alloc_groups), free(a->alloc_sensitivity), free(a->alloc_base);
  for (int i = 0; i < a->n_train; i++) free(a->train[i].key), free(a->train[i].value);
  free(a->train);
  for (int i = 0; i < a->n_fit; i++) free(a->fit_values[i]);
  free(a->fit_values);
}

void qg_lab_hypothesis_free(qg_lab_hypothesis *h) {
  for (int i = 0; i < h->n_arms; i++) arm_free(&h->arms[i]);
  free(h->arms);
  free(h->path), free(h->dir), free(h->id), free(h->hypothesis), free(h->published), free(h->model);
  free(h->tokenizer), free(h->val), free(h->calib), free(h->reference), free(h->baseline), free(h->seeds);
  free(h->compress), free(h->device), free(h->source_text), free(h->published_arm), free(h->notes);
  memset(h, 0, sizeof *h);
}

int qg_lab_arm_index(const qg_lab_hypothesis *h, const char *name) {
  for (int i = 0; i < h->n_arms; i++)
    if (h->arms[i].name && !strcmp(h->arms[i].name, name)) return i;
  return -1;
}

char *qg_lab_spec_with(const char *spec, const char *param, const char *value) {
  char ph[32];
  snprintf(ph, sizeof ph, "{%s}", param);
  qg_buf b;
  qg_buf_init(&b);
  for (const char *p = spec; *p;) {
    const char *q = strstr(p, ph);
    if (!q) {
      qg_buf_str(&b, p);
      break;
    }
    qg_buf_append(&b, p, (size_t)(q - p));
    qg_buf_str(&b, value);
    p = q + strlen(ph);
  }
  qg_buf_byte(&b, 0);
  if (b.failed) {
    qg_buf_free(&b);
    return NULL;
  }
  return (char *)b.p;
}
