/* The sensitivity table: strict reader, model check, knapsack instance, spec writer (see
 * lab/alloc_table.h). */
#include "lab/alloc_table.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/sha256.h"
#include "core/util.h"
#include "io/json_parse.h"
#include "quant/spec.h"

typedef struct {
  const char *name;
  const char *text; /* the input: non-integer numbers are read from it at their offset */
} rd;

static qg_status bad(const rd *r, const qg_jnode *n, const char *key, const char *what) {
  return qg_fail(QG_ERR_INPUT, "%s: offset %zu: '%s' %s", r->name, n ? n->offset : (size_t)0, key, what);
}

static qg_status need(const rd *r, const qg_jnode *obj, const char *key, qg_jtype ty, const qg_jnode **out) {
  const qg_jnode *v = qg_jobj_get(obj, key);
  if (!v) return qg_fail(QG_ERR_INPUT, "%s: offset %zu: missing key '%s'", r->name, obj->offset, key);
  if (v->type != ty) {
    char m[96];
    snprintf(m, sizeof m, "must be %s %s, not %s", ty == QG_JARR || ty == QG_JOBJ ? "an" : "a", qg_jtype_name(ty),
             qg_jtype_name(v->type));
    return bad(r, v, key, m);
  }
  *out = v;
  return QG_OK;
}

static qg_status need_int(const rd *r, const qg_jnode *obj, const char *key, int64_t min, int64_t *out) {
  const qg_jnode *v = NULL; /* set by need() whenever it succeeds */
  QG_TRY(need(r, obj, key, QG_JNUM, &v));
  if (!v->is_int) return bad(r, v, key, "must be an integer");
  if (v->i < min) return bad(r, v, key, min ? "must be >= 1" : "must be >= 0");
  *out = v->i;
  return QG_OK;
}

static qg_status no_dups(const rd *r, const qg_jnode *obj) {
  const qg_jnode *dup;
  QG_TRY(qg_jobj_duplicate(obj, &dup));
  if (dup) return qg_fail(QG_ERR_INPUT, "%s: offset %zu: duplicate key '%s'", r->name, dup->key_offset, dup->key);
  return QG_OK;
}

static double num_of(const rd *r, const qg_jnode *v) { return v->is_int ? (double)v->i : strtod(r->text + v->offset, NULL); }

static qg_status need_num(const rd *r, const qg_jnode *obj, const char *key, double *out) {
  const qg_jnode *v = NULL; /* set by need() whenever it succeeds */
  QG_TRY(need(r, obj, key, QG_JNUM, &v));
  *out = num_of(r, v);
  if (!isfinite(*out)) return bad(r, v, key, "must be finite");
  return QG_OK;
}

static qg_status need_str(const rd *r, const qg_jnode *obj, const char *key, char **out) {
  const qg_jnode *v = NULL; /* set by need() whenever it succeeds */
  QG_TRY(need(r, obj, key, QG_JSTR, &v));
  if (!*v->s) return bad(r, v, key, "must not be empty");
  *out = qg_strdup(v->s);
  return *out ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
}

void qg_alloc_table_free(qg_alloc_table *t) {
  free(t->path), free(t->model_path), free(t->metric), free(t->base);
  for (int g = 0; g < t->n_groups; g++) {
    free(t->groups[g].name);
    for (int i = 0; i < t->groups[g].n_tensors; i++) free(t->groups[g].tensors[i]);
    free(t->groups[g].tensors);
  }
  free(t->groups);
  for (int c = 0; c < t->n_cands; c++) free(t->cands[c]);
  free(t->cands), free(t->cells);
  memset(t, 0, sizeof *t);
}

static int find_group(const qg_alloc_table *t, const char *s) {
  for (int g = 0; g < t->n_groups; g++)
    if (!strcmp(t->groups[g].name, s)) return g;
  return -1;
}
static int find_cand(const qg_alloc_table *t, const char *s) {
  for (int c = 0; c < t->n_cands; c++)
    if (!strcmp(t->cands[c], s)) return c;
  return -1;
}

static qg_status parse_root(const rd *r, const qg_jnode *root, qg_alloc_table *t) {
  if (root->type != QG_JOBJ) return qg_fail(QG_ERR_INPUT, "%s: a sensitivity table is a JSON object", r->name);
  const qg_jnode *v, *m;
  QG_TRY(no_dups(r, root));
  int64_t ver;
  QG_TRY(need_int(r, root, "schema_version", 0, &ver));
  if (ver != 1) return bad(r, qg_jobj_get(root, "schema_version"), "schema_version", "must be 1 (the version this build reads)");
  QG_TRY(need(r, root, "command", QG_JSTR, &v));
  if (strcmp(v->s, "sensitivity")) return bad(r, v, "command", "must be \"sensitivity\"");
  QG_TRY(need(r, root, "model", QG_JOBJ, &m));
  QG_TRY(no_dups(r, m));
  QG_TRY(need_str(r, m, "path", &t->model_path));
  QG_TRY(need(r, m, "sha256", QG_JSTR, &v));
  if (v->len != 64 || strspn(v->s, "0123456789abcdef") != 64) return bad(r, v, "model.sha256", "must be 64 lowercase hex digits");
  memcpy(t->model_sha, v->s, 65);
  QG_TRY(need_int(r, root, "tokens", 1, &t->tokens));
  QG_TRY(need_int(r, root, "windows", 1, &t->windows));
  QG_TRY(need_str(r, root, "metric", &t->metric));
  if (strcmp(t->metric, "kld") && strcmp(t->metric, "nll")) return bad(r, qg_jobj_get(root, "metric"), "metric", "must be kld or nll");
  /* tables written before the JSON vocabulary named the base spec "base" */
  QG_TRY(need_str(r, root, qg_jobj_get(root, "base_spec") || !qg_jobj_get(root, "base") ? "base_spec" : "base", &t->base));
  QG_TRY(need_num(r, root, "base_kld", &t->base_kld));
  QG_TRY(need_num(r, root, "base_nll", &t->base_nll));
  QG_TRY(need_int(r, root, "base_artifact_bytes", 1, &t->base_artifact_bytes));
  /* negative when the whole artifact compresses better than its tensors one by one */
  QG_TRY(need_int(r, root, "fixed_bytes", -((int64_t)1 << 50), &t->fixed_bytes));
  t->comp = QG_COMP_BROTLI;
  if ((v = qg_jobj_get(root, "compressor"))) {
    if (v->type != QG_JSTR) return bad(r, v, "compressor", "must be a string");
    if (qg_compressor_from_name(v->s, &t->comp) || t->comp == QG_COMP_NONE)
      return bad(r, v, "compressor", "must name a compressor (rans, brotli, zstd, xz or zlib)");
  }
  const qg_jnode *ga, *ca, *cl;
  QG_TRY(need(r, root, "groups", QG_JARR, &ga));
  QG_TRY(need(r, root, "candidates", QG_JARR, &ca));
  QG_TRY(need(r, root, "cells", QG_JARR, &cl));
  if (!ga->len) return bad(r, ga, "groups", "is empty");
  t->groups = calloc(ga->len, sizeof *t->groups);
  t->cands = calloc(ca->len ? ca->len : 1, sizeof *t->cands);
  t->cells = calloc(cl->len ? cl->len : 1, sizeof *t->cells);
  if (!t->groups || !t->cands || !t->cells) return qg_fail(QG_ERR_NOMEM, "out of memory");
  for (const qg_jnode *g = ga->child; g; g = g->next) {
    if (g->type != QG_JOBJ) return bad(r, g, "groups[]", "must be an object {name, tensors}");
    QG_TRY(no_dups(r, g));
    qg_alloc_tgroup *G = &t->groups[t->n_groups];
    char *name;
    QG_TRY(need_str(r, g, "name", &name));
    if (find_group(t, name) >= 0) {
      free(name);
      return bad(r, g, "groups[].name", "repeats an earlier group's name");
    }
    G->name = name, G->base_bytes = -1;
    t->n_groups++;
    const qg_jnode *ta;
    QG_TRY(need(r, g, "tensors", QG_JARR, &ta));
    if (!ta->len) return bad(r, ta, "groups[].tensors", "is empty");
    G->tensors = calloc(ta->len, sizeof *G->tensors);
    if (!G->tensors) return qg_fail(QG_ERR_NOMEM, "out of memory");
    for (const qg_jnode *x = ta->child; x; x = x->next) {
      if (x->type != QG_JSTR || !*x->s) return bad(r, x, "groups[].tensors[]", "must be a tensor name");
      if (!(G->tensors[G->n_tensors++] = qg_strdup(x->s))) return qg_fail(QG_ERR_NOMEM, "out of memory");
    }
  }
  for (const qg_jnode *c = ca->child; c; c = c->next) {
    if (c->type != QG_JSTR || !*c->s) return bad(r, c, "candidates[]", "must be a spec right-hand side (\"METHOD k=v\")");
    if (find_cand(t, c->s) >= 0) return bad(r, c, "candidates[]", "repeats an earlier candidate");
    if (!(t->cands[t->n_cands++] = qg_strdup(c->s))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  for (const qg_jnode *c = cl->child; c; c = c->next) {
    if (c->type != QG_JOBJ) return bad(r, c, "cells[]", "must be an object");
    QG_TRY(no_dups(r, c));
    qg_alloc_tcell *C = &t->cells[t->n_cells];
    const qg_jnode *gn, *cn, *ci, *roi;
    QG_TRY(need(r, c, "group", QG_JSTR, &gn));
    QG_TRY(need(r, c, "candidate", QG_JSTR, &cn));
    if ((C->group = find_group(t, gn->s)) < 0) return bad(r, gn, "cells[].group", "names no group in 'groups'");
    if ((C->cand = find_cand(t, cn->s)) < 0) return bad(r, cn, "cells[].candidate", "names no entry of 'candidates'");
    for (int k = 0; k < t->n_cells; k++)
      if (t->cells[k].group == C->group && t->cells[k].cand == C->cand) return bad(r, c, "cells[]", "repeats an earlier (group, candidate) cell");
    QG_TRY(need_num(r, c, "delta_kld", &C->delta_kld));
    QG_TRY(need(r, c, "ci95", QG_JARR, &ci));
    if (ci->len != 2 || ci->child->type != QG_JNUM || ci->child->next->type != QG_JNUM)
      return bad(r, ci, "cells[].ci95", "must be [lo, hi]");
    C->ci_lo = num_of(r, ci->child), C->ci_hi = num_of(r, ci->child->next);
    if (!(C->ci_lo <= C->ci_hi)) return bad(r, ci, "cells[].ci95", "must have lo <= hi");
    QG_TRY(need_num(r, c, "delta_nll", &C->delta_nll));
    QG_TRY(need_int(r, c, "bytes", 0, &C->bytes));
    QG_TRY(need_int(r, c, "base_bytes", 0, &C->base_bytes));
    const qg_jnode *bs;
    QG_TRY(need(r, c, "bytes_saved", QG_JNUM, &bs));
    if (!bs->is_int) return bad(r, bs, "cells[].bytes_saved", "must be an integer");
    C->bytes_saved = bs->i;
    if (C->bytes_saved != C->base_bytes - C->bytes) return bad(r, bs, "cells[].bytes_saved", "is not base_bytes - bytes");
    roi = qg_jobj_get(c, "roi");
    if (!roi) return qg_fail(QG_ERR_INPUT, "%s: offset %zu: missing key 'roi'", r->name, c->offset);
    if (roi->type != QG_JNULL && roi->type != QG_JNUM) return bad(r, roi, "cells[].roi", "must be a number or null");
    C->roi = roi->type == QG_JNUM ? num_of(r, roi) : NAN;
    qg_alloc_tgroup *G = &t->groups[C->group];
    if (G->base_bytes >= 0 && G->base_bytes != C->base_bytes) return bad(r, c, "cells[].base_bytes", "differs from another cell of the same group");
    G->base_bytes = C->base_bytes;
    t->n_cells++;
  }
  for (int g = 0; g < t->n_groups; g++)
    if (t->groups[g].base_bytes < 0)
      return qg_fail(QG_ERR_INPUT, "%s: group '%s' has no cells (its base bytes are unknown)", r->name, t->groups[g].name);
  return QG_OK;
}

qg_status qg_alloc_table_parse(const char *text, size_t len, const char *name, qg_alloc_table *t) {
  memset(t, 0, sizeof *t);
  qg_jdoc doc;
  const qg_jnode *root;
  qg_jopts jo = {.name = name};
  QG_TRY(qg_jparse(text, len, &jo, &doc, &root));
  rd r = {name, text};
  qg_status s = parse_root(&r, root, t);
  qg_jdoc_free(&doc);
  if (!s && !(t->path = qg_strdup(name))) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  if (s) qg_alloc_table_free(t);
  return s;
}

qg_status qg_alloc_table_load(const char *path, qg_alloc_table *t) {
  uint8_t *d;
  size_t len;
  memset(t, 0, sizeof *t);
  QG_TRY(qg_read_file(path, &d, &len, (size_t)1 << 28));
  qg_status s = qg_alloc_table_parse((const char *)d, len, path, t);
  free(d);
  return s;
}

/* Spec text that moves one group to a candidate: one rule per tensor, exact names. */
static char *group_rules(const qg_alloc_tgroup *G, const char *cand) {
  qg_buf b;
  qg_buf_init(&b);
  for (int i = 0; i < G->n_tensors; i++) qg_buf_printf(&b, "%s%s: %s", i ? "; " : "", G->tensors[i], cand);
  qg_buf_byte(&b, 0);
  if (qg_buf_status(&b)) {
    qg_buf_free(&b);
    return NULL;
  }
  return (char *)b.p;
}

qg_status qg_alloc_table_check(const qg_alloc_table *t, const qg_state *st, const char *model_sha) {
  if (model_sha && strcmp(model_sha, t->model_sha))
    return qg_fail(QG_ERR_INPUT, "%s: measured on model sha256 %.12s… (%s), not this model (sha256 %.12s…)", t->path,
                   t->model_sha, t->model_path, model_sha);
  for (int g = 0; g < t->n_groups; g++)
    for (int i = 0; i < t->groups[g].n_tensors; i++) {
      const char *n = t->groups[g].tensors[i];
      if (!qg_state_find(st, n))
        return qg_fail(QG_ERR_INPUT, "%s: group '%s': tensor '%s' is not in the model", t->path, t->groups[g].name, n);
      for (int h = 0; h <= g; h++)
        for (int k = 0; k < (h == g ? i : t->groups[h].n_tensors); k++)
          if (!strcmp(t->groups[h].tensors[k], n))
            return qg_fail(QG_ERR_INPUT, "%s: tensor '%s' is in groups '%s' and '%s'", t->path, n, t->groups[h].name,
                           t->groups[g].name);
    }
  qg_spec sp;
  qg_spec_plan pl;
  qg_status s = qg_spec_parse_inline(t->base, &sp);
  if (!s) {
    s = qg_spec_plan_make(&sp, st, &pl);
    if (!s) qg_spec_plan_free(&pl);
    qg_spec_free(&sp);
  }
  if (s) return qg_fail_prefix(s, "%s: base spec", t->path);
  for (int c = 0; c < t->n_cells; c++) {
    const qg_alloc_tcell *C = &t->cells[c];
    char *text = group_rules(&t->groups[C->group], t->cands[C->cand]);
    if (!text) return qg_fail(QG_ERR_NOMEM, "out of memory");
    s = qg_spec_parse_inline(text, &sp);
    free(text);
    if (!s) {
      s = qg_spec_plan_make(&sp, st, &pl);
      if (!s) qg_spec_plan_free(&pl);
      qg_spec_free(&sp);
    }
    if (s) return qg_fail_prefix(s, "%s: group '%s' at candidate '%s'", t->path, t->groups[C->group].name, t->cands[C->cand]);
  }
  return QG_OK;
}

void qg_alloc_tproblem_free(qg_alloc_tproblem *sp) {
  for (int g = 0; g < sp->p.n_groups; g++) {
    free(sp->p.opts ? sp->p.opts[g] : NULL);
    free(sp->opt_cell ? sp->opt_cell[g] : NULL);
  }
  free(sp->p.opts), free(sp->p.n_opts), free(sp->opt_cell);
  memset(sp, 0, sizeof *sp);
}

qg_status qg_alloc_tproblem_make(const qg_alloc_table *t, const char *objective, const char *const *only, int n_only,
                               int64_t code_bytes, qg_alloc_tproblem *out) {
  memset(out, 0, sizeof *out);
  int nll;
  if (!strcmp(objective, "kld")) nll = 0;
  else if (!strcmp(objective, "nll")) nll = 1;
  else return qg_fail(QG_ERR_INPUT, "objective '%s': expected kld or nll", objective);
  for (int k = 0; k < n_only; k++)
    if (find_cand(t, only[k]) < 0)
      return qg_fail(QG_ERR_INPUT, "%s: candidate '%s' was not measured (the table has: %s%s)", t->path, only[k],
                     t->n_cands ? t->cands[0] : "none", t->n_cands > 1 ? ", ..." : "");
  int n = t->n_groups;
  out->p.n_groups = n;
  out->p.fixed_bytes = t->fixed_bytes + code_bytes;
  out->p.n_opts = calloc((size_t)n, sizeof *out->p.n_opts);
  out->p.opts = calloc((size_t)n, sizeof *out->p.opts);
  out->opt_cell = calloc((size_t)n, sizeof *out->opt_cell);
  if (!out->p.n_opts || !out->p.opts || !out->opt_cell) {
    qg_alloc_tproblem_free(out);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  for (int g = 0; g < n; g++) {
    out->p.opts[g] = calloc((size_t)t->n_cells + 1, sizeof **out->p.opts);
    out->opt_cell[g] = calloc((size_t)t->n_cells + 1, sizeof **out->opt_cell);
    if (!out->p.opts[g] || !out->opt_cell[g]) {
      qg_alloc_tproblem_free(out);
      return qg_fail(QG_ERR_NOMEM, "out of memory");
    }
    out->p.opts[g][0] = (qg_alloc_option){t->groups[g].base_bytes, 0.0};
    out->opt_cell[g][0] = -1;
    int m = 1;
    for (int c = 0; c < t->n_cells; c++) {
      const qg_alloc_tcell *C = &t->cells[c];
      if (C->group != g) continue;
      int ok = !n_only;
      for (int k = 0; k < n_only && !ok; k++) ok = !strcmp(only[k], t->cands[C->cand]);
      if (!ok) continue;
      out->p.opts[g][m] = (qg_alloc_option){C->bytes, nll ? C->delta_nll : C->delta_kld};
      out->opt_cell[g][m++] = c;
    }
    out->p.n_opts[g] = m;
  }
  return QG_OK;
}

static void quoted(qg_buf *b, const char *s) {
  qg_buf_byte(b, '"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') qg_buf_byte(b, '\\');
    qg_buf_byte(b, (uint8_t)*s);
  }
  qg_buf_byte(b, '"');
}

qg_status qg_alloc_table_spec(const qg_alloc_table *t, const qg_alloc_tproblem *sp, const int *choice,
                             const qg_state *st, int yaml, const char *header, char **text, int *contest_passthrough) {
  *text = NULL;
  qg_spec base;
  QG_TRY(qg_spec_parse_inline(t->base, &base));
  qg_spec_plan pl;
  qg_status s = qg_spec_plan_make(&base, st, &pl);
  if (s) {
    qg_spec_free(&base);
    return qg_fail_prefix(s, "%s: base spec", t->path);
  }
  /* the tensors the allocation assigns explicitly */
  char *taken = calloc((size_t)st->n + 1, 1);
  int *used = calloc((size_t)base.n + 1, sizeof *used);
  qg_buf b;
  qg_buf_init(&b);
  if (!taken || !used) s = qg_fail(QG_ERR_NOMEM, "out of memory");
  if (!s && yaml) {
    for (const char *h = header; h && *h;) {
      const char *e = strchr(h, '\n');
      size_t l = e ? (size_t)(e - h) : strlen(h);
      qg_buf_printf(&b, "# %.*s\n", (int)l, h);
      h += l + (e != NULL);
    }
    if (base.contest_passthrough) qg_buf_printf(&b, "contest_passthrough: true\n");
    qg_buf_printf(&b, "rules:\n");
  }
  int nr = 0;
  for (int g = 0; !s && g < t->n_groups; g++) {
    int cell = sp->opt_cell[g][choice[g]];
    const qg_alloc_tgroup *G = &t->groups[g];
    for (int i = 0; i < G->n_tensors; i++) {
      for (int k = 0; k < st->n; k++)
        if (st->t[k].name && !strcmp(st->t[k].name, G->tensors[i])) taken[k] = 1;
      if (cell < 0) continue;
      const char *cand = t->cands[t->cells[cell].cand];
      if (yaml) {
        qg_buf_printf(&b, "  - ");
        quoted(&b, G->tensors[i]);
        qg_buf_printf(&b, ": ");
        quoted(&b, cand);
        qg_buf_printf(&b, "\n");
      } else {
        qg_buf_printf(&b, "%s%s: %s", nr ? "; " : "", G->tensors[i], cand);
      }
      nr++;
    }
  }
  /* base rules still in use: a tensor outside the explicit ones that the base assigns by
   * them (a rule left with no tensor would be refused by the planner) */
  for (int k = 0; !s && k < pl.n; k++)
    if (!taken[pl.a[k].index] && pl.a[k].kind == QG_ASSIGN_RULE) used[pl.a[k].rule] = 1;
  /* tensors of groups at their base choice are not "taken": they keep the base rule */
  for (int g = 0; !s && g < t->n_groups; g++)
    if (sp->opt_cell[g][choice[g]] < 0)
      for (int i = 0; i < t->groups[g].n_tensors; i++)
        for (int k = 0; k < pl.n; k++) {
          const char *nm = st->t[pl.a[k].index].name;
          if (nm && !strcmp(nm, t->groups[g].tensors[i]) && pl.a[k].kind == QG_ASSIGN_RULE) used[pl.a[k].rule] = 1;
        }
  for (int r = 0; !s && r < base.n; r++) {
    if (!used[r]) continue;
    const qg_spec_rule *R = &base.rules[r];
    if (yaml) {
      qg_buf_printf(&b, "  - ");
      quoted(&b, R->glob);
      qg_buf_printf(&b, ": ");
      char rhs[512];
      snprintf(rhs, sizeof rhs, "%s%s%s", R->method, *R->options ? " " : "", R->options);
      quoted(&b, rhs);
      qg_buf_printf(&b, "\n");
    } else {
      qg_buf_printf(&b, "%s%s: %s%s%s", nr ? "; " : "", R->glob, R->method, *R->options ? " " : "", R->options);
    }
    nr++;
  }
  if (!s && !nr)
    s = qg_fail(QG_ERR_INPUT, "%s: the allocation assigns no tensor by a rule (the base spec has no rules in use)", t->path);
  qg_buf_byte(&b, 0);
  if (!s) s = qg_buf_status(&b);
  if (contest_passthrough) *contest_passthrough = base.contest_passthrough;
  free(taken), free(used);
  qg_spec_plan_free(&pl);
  qg_spec_free(&base);
  if (s) {
    qg_buf_free(&b);
    return s;
  }
  *text = (char *)b.p;
  return QG_OK;
}
