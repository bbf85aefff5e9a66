/* Quantization specs (see quant/spec.h): inline and YAML parsing, glob matching, and the
 * plan that assigns every tensor of a checkpoint to a quantizer. */
#include "quant/spec.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/file.h"
#include "io/contest.h"
#include "io/yaml_guard.h"

int qg_glob_match(const char *p, const char *s) {
  /* iterative matcher with one backtrack point: linear-ish, no recursion blow-up */
  const char *star = NULL, *resume = NULL;
  while (*s) {
    if (*p == '*') {
      star = p++;
      resume = s;
    } else if (*p == *s) {
      p++, s++;
    } else if (star) {
      p = star + 1;
      s = ++resume;
    } else {
      return 0;
    }
  }
  while (*p == '*') p++;
  return *p == 0;
}

int qg_spec_pattern_explicit(const char *pat) {
  const char *last = strrchr(pat, '.');
  return strchr(last ? last + 1 : pat, '*') == NULL;
}

void qg_spec_free(qg_spec *s) {
  for (int i = 0; i < s->n; i++) {
    free(s->rules[i].glob), free(s->rules[i].method), free(s->rules[i].options);
    qg_qconfig_free(&s->rules[i].cfg);
  }
  free(s->rules);
  free(s->source);
  memset(s, 0, sizeof *s);
}

static char *trim_dup(const char *a, const char *b) {
  while (a < b && isspace((unsigned char)*a)) a++;
  while (b > a && isspace((unsigned char)b[-1])) b--;
  return qg_strndup(a, (size_t)(b - a));
}

/* The contest's common mixes (shared/contest/mixes.md): int6 with int8 embeddings is the
 * most used; int5 MLP / int6 attention / fp16 embeddings is the trade-off chart's
 * "Mixed (SOTA)". Control and 1-D tensors keep the contest's passthrough. contest-int8
 * names only the embedding: every other tensor then gets the contest's own export (the
 * default for unmatched tensors), so the preset equals export-int8 on any model. */
const qg_spec_preset qg_spec_presets[] = {
    {"contest-int8", "the contest's int8 export (as export-int8)", "tok_emb.weight: contest-int8", 0},
    {"int8", "every matrix rowwise int8 (pct clip)", "*: rowwise bits=8", 0},
    {"int6", "block matrices int6, embeddings int8", "tok_emb.weight: rowwise bits=8; *: rowwise bits=6", 0},
    {"int5mlp-int6attn-fp16emb", "MLP int5, attention int6, embeddings fp16",
     "tok_emb.weight: fp16; blocks.*.mlp.*: rowwise bits=5; blocks.*.attn.*: rowwise bits=6", 0},
    {"gptq-int6", "int6 by GPTQ (needs --calib), embeddings int8", "tok_emb.weight: rowwise bits=8; *: gptq bits=6", 0},
    {NULL, NULL, NULL, 0},
};

const qg_spec_preset *qg_spec_preset_find(const char *name) {
  for (int i = 0; qg_spec_presets[i].name; i++)
    if (!strcmp(qg_spec_presets[i].name, name)) return &qg_spec_presets[i];
  return NULL;
}

static qg_status add_rule_text(qg_spec *s, const char *a, const char *b, int line);

/* "preset: NAME": the preset's rules in this rule's place. */
static qg_status add_preset(qg_spec *s, const char *name, const char *options, int line) {
  const char *where = line > 0 ? "line" : "rule";
  int at = line < 0 ? -line : line;
  const qg_spec_preset *p = qg_spec_preset_find(name);
  if (!p) {
    qg_buf b;
    qg_buf_init(&b);
    for (int i = 0; qg_spec_presets[i].name; i++) qg_buf_printf(&b, "%s%s", i ? ", " : "", qg_spec_presets[i].name);
    qg_buf_byte(&b, 0);
    qg_status st = qg_fail(QG_ERR_INPUT, "%s: %s %d: unknown preset '%s' (valid: %s)", s->source, where, at, name,
                           b.failed ? "?" : (char *)b.p);
    qg_buf_free(&b);
    return st;
  }
  if (options && *options)
    return qg_fail(QG_ERR_INPUT, "%s: %s %d: preset '%s' takes no options (write its rules out to change them: "
                   "%s)", s->source, where, at, name, p->rules);
  if (p->contest_passthrough) s->contest_passthrough = 1;
  for (const char *q = p->rules; *q;) {
    const char *e = strchr(q, ';');
    if (!e) e = q + strlen(q);
    QG_TRY(add_rule_text(s, q, e, line));
    q = *e ? e + 1 : e;
  }
  return QG_OK;
}

/* Adds a rule: glob, then "METHOD [options]" in text (or method + options separately). */
static qg_status add_rule(qg_spec *s, const char *glob, const char *method, const char *options, int line) {
  const char *where = line > 0 ? "line" : "rule";
  int at = line < 0 ? -line : line;
  if (!strcmp(glob, "preset") && *method) return add_preset(s, method, options, line);
  if (!*glob) return qg_fail(QG_ERR_INPUT, "%s: %s %d: empty pattern", s->source, where, at);
  if (!*method) return qg_fail(QG_ERR_INPUT, "%s: %s %d ('%s'): no quantizer given", s->source, where, at, glob);
  qg_spec_rule *nr = realloc(s->rules, sizeof *nr * (size_t)(s->n + 1));
  if (!nr) return qg_fail(QG_ERR_NOMEM, "out of memory");
  s->rules = nr;
  qg_spec_rule *r = &s->rules[s->n];
  memset(r, 0, sizeof *r);
  r->line = line;
  r->glob = qg_strdup(glob), r->method = qg_strdup(method), r->options = qg_strdup(options ? options : "");
  if (!r->glob || !r->method || !r->options) {
    free(r->glob), free(r->method), free(r->options);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  s->n++;
  qg_status st = qg_qconfig_parse(method, r->options, &r->cfg);
  if (st) return qg_fail_prefix(st, "%s: %s %d ('%s')", s->source, where, at, glob);
  return QG_OK;
}

/* "GLOB: METHOD opts" */
static qg_status add_rule_text(qg_spec *s, const char *a, const char *b, int line) {
  const char *colon = memchr(a, ':', (size_t)(b - a));
  char *whole = trim_dup(a, b);
  if (!whole) return qg_fail(QG_ERR_NOMEM, "out of memory");
  if (!colon) {
    qg_status st = qg_fail(QG_ERR_INPUT, "%s: rule %d '%s': expected 'GLOB: METHOD [options]'", s->source,
                           line < 0 ? -line : line, whole);
    free(whole);
    return st;
  }
  free(whole);
  char *glob = trim_dup(a, colon), *rest = trim_dup(colon + 1, b);
  if (!glob || !rest) {
    free(glob), free(rest);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  /* quoted globs are allowed ('*': ...) */
  size_t gl = strlen(glob);
  if (gl >= 2 && (glob[0] == '\'' || glob[0] == '"') && glob[gl - 1] == glob[0]) {
    memmove(glob, glob + 1, gl - 2);
    glob[gl - 2] = 0;
  }
  char *sp = rest;
  while (*sp && !isspace((unsigned char)*sp)) sp++;
  char *opts = *sp ? sp + 1 : sp;
  *sp = 0;
  qg_status st = add_rule(s, glob, rest, opts, line);
  free(glob), free(rest);
  return st;
}

qg_status qg_spec_parse_inline(const char *text, qg_spec *out) {
  memset(out, 0, sizeof *out);
  if (!(out->source = qg_strdup("inline spec"))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  const char *p = text;
  int k = 0;
  while (*p) {
    const char *e = p;
    while (*e && *e != ';' && *e != '\n') e++;
    const char *a = p;
    while (a < e && isspace((unsigned char)*a)) a++;
    if (a < e) {
      qg_status st = add_rule_text(out, a, e, -(++k)); /* negative: a rule number, not a line */
      if (st) {
        qg_spec_free(out);
        return st;
      }
    }
    p = *e ? e + 1 : e;
  }
  if (!out->n) {
    qg_spec_free(out);
    return qg_fail(QG_ERR_INPUT, "inline spec: no rules (expected 'GLOB: METHOD [options]; ...')");
  }
  return QG_OK;
}

/* ---- YAML ---------------------------------------------------------------------------- */

typedef struct {
  yaml_document_t *doc;
  qg_spec *s;
} ydoc;

static yaml_node_t *ynode(ydoc *y, int i) { return yaml_document_get_node(y->doc, i); }
static const char *yscalar(yaml_node_t *n) {
  return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}
static int yline(yaml_node_t *n) { return (int)n->start_mark.line + 1; }

static qg_status yerr(ydoc *y, yaml_node_t *n, const char *what) {
  return qg_fail(QG_ERR_INPUT, "%s: line %d: %s", y->s->source, n ? yline(n) : 0, what);
}

/* One rule from key node k (the glob) and value node v: a scalar "METHOD opts", or a
 * mapping {quantizer: M, option: value...}; `match` inside the mapping overrides k. */
static qg_status yrule(ydoc *y, yaml_node_t *k, yaml_node_t *v) {
  const char *glob = yscalar(k);
  if (k && !glob) return yerr(y, k, "a rule's pattern must be a string");
  if (yscalar(v)) {
    const char *t = yscalar(v);
    const char *sp = t;
    while (*sp && !isspace((unsigned char)*sp)) sp++;
    char *m = qg_strndup(t, (size_t)(sp - t));
    if (!m) return qg_fail(QG_ERR_NOMEM, "out of memory");
    while (*sp && isspace((unsigned char)*sp)) sp++;
    qg_status st = glob ? add_rule(y->s, glob, m, sp, yline(v)) : yerr(y, v, "rule without a pattern");
    free(m);
    return st;
  }
  if (!v || v->type != YAML_MAPPING_NODE)
    return yerr(y, v ? v : k, "a rule is 'GLOB: METHOD options' or 'GLOB: {quantizer: METHOD, option: value}'");
  const char *method = NULL;
  qg_buf opts;
  qg_buf_init(&opts);
  for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
    yaml_node_t *pk = ynode(y, p->key), *pv = ynode(y, p->value);
    const char *ks = yscalar(pk), *vs = yscalar(pv);
    if (!ks || !vs) {
      qg_buf_free(&opts);
      return yerr(y, pk, "rule fields must be 'name: value' scalars");
    }
    if (!strcmp(ks, "quantizer") || !strcmp(ks, "method")) method = vs;
    else if (!strcmp(ks, "match")) glob = vs;
    else if (!strcmp(ks, "options")) qg_buf_printf(&opts, "%s ", vs);
    else qg_buf_printf(&opts, "%s=%s ", ks, vs);
  }
  qg_buf_byte(&opts, 0);
  qg_status st;
  if (!glob) st = yerr(y, v, "rule without a pattern ('match:')");
  else if (!method) st = yerr(y, v, "rule without 'quantizer:'");
  else if ((st = qg_buf_status(&opts)) == QG_OK) st = add_rule(y->s, glob, method, (char *)opts.p, yline(v));
  qg_buf_free(&opts);
  return st;
}

static qg_status yrules_mapping(ydoc *y, yaml_node_t *m) {
  for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++)
    QG_TRY(yrule(y, ynode(y, p->key), ynode(y, p->value)));
  return QG_OK;
}

static qg_status yrules(ydoc *y, yaml_node_t *n) {
  if (n->type == YAML_MAPPING_NODE) return yrules_mapping(y, n);
  if (n->type != YAML_SEQUENCE_NODE) return yerr(y, n, "'rules' must be a list or a mapping");
  for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
    yaml_node_t *e = ynode(y, *it);
    if (!e || e->type != YAML_MAPPING_NODE) return yerr(y, e, "each rule must be a mapping");
    int has_match = 0;
    for (yaml_node_pair_t *p = e->data.mapping.pairs.start; p < e->data.mapping.pairs.top; p++)
      if (yscalar(ynode(y, p->key)) && !strcmp(yscalar(ynode(y, p->key)), "match")) has_match = 1;
    if (has_match) QG_TRY(yrule(y, NULL, e));
    else QG_TRY(yrules_mapping(y, e));
  }
  return QG_OK;
}

qg_status qg_spec_parse_yaml(const uint8_t *data, size_t len, const char *fname, qg_spec *out) {
  memset(out, 0, sizeof *out);
  if (!(out->source = qg_strdup(fname))) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status dst = qg_yaml_check_depth(data, len, fname, QG_YAML_MAX_DEPTH);
  if (dst) {
    qg_spec_free(out);
    return dst;
  }
  yaml_parser_t parser;
  yaml_document_t doc;
  if (!yaml_parser_initialize(&parser)) {
    qg_spec_free(out);
    return qg_fail(QG_ERR_NOMEM, "out of memory (YAML parser)");
  }
  yaml_parser_set_input_string(&parser, data, len);
  if (!yaml_parser_load(&parser, &doc)) {
    qg_status st = qg_fail(QG_ERR_INPUT, "%s: line %d column %d: malformed YAML: %s", fname,
                           (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1,
                           parser.problem ? parser.problem : "parse error");
    yaml_parser_delete(&parser);
    qg_spec_free(out);
    return st;
  }
  ydoc y = {&doc, out};
  yaml_node_t *root = yaml_document_get_root_node(&doc);
  qg_status st = QG_OK;
  if (!root) {
    st = qg_fail(QG_ERR_INPUT, "%s: empty spec", fname);
  } else if (root->type != YAML_MAPPING_NODE) {
    st = yerr(&y, root, "a spec is a mapping of 'GLOB: METHOD options' rules (or 'rules:' and 'seed:')");
  } else {
    yaml_node_t *rules = NULL;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
      const char *k = yscalar(ynode(&y, p->key));
      if (k && !strcmp(k, "rules")) rules = ynode(&y, p->value);
    }
    if (rules) {
      for (yaml_node_pair_t *p = root->data.mapping.pairs.start; !st && p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = ynode(&y, p->key), *vn = ynode(&y, p->value);
        const char *k = yscalar(kn);
        if (k && !strcmp(k, "rules")) {
          st = yrules(&y, vn);
        } else if (k && !strcmp(k, "contest_passthrough")) {
          const char *v = yscalar(vn);
          if (v && (!strcmp(v, "true") || !strcmp(v, "false"))) out->contest_passthrough = !strcmp(v, "true");
          else st = yerr(&y, vn, "contest_passthrough must be true or false");
        } else if (k && !strcmp(k, "seed")) {
          const char *v = yscalar(vn);
          char *end;
          /* digits only: strtoull would take "-1" as 2^64 - 1; the bound is --seed's */
          errno = 0;
          unsigned long long sd = v && *v >= '0' && *v <= '9' ? strtoull(v, &end, 10) : 0;
          if (!v || *v < '0' || *v > '9' || *end || errno || sd > INT64_MAX)
            st = yerr(&y, vn, "seed must be a non-negative integer");
          else out->seed = sd;
        } else {
          st = yerr(&y, kn, "unknown top-level key (expected 'rules', 'seed' or 'contest_passthrough')");
        }
      }
    } else {
      st = yrules_mapping(&y, root);
    }
    if (!st && !out->n) st = qg_fail(QG_ERR_INPUT, "%s: no rules", fname);
  }
  yaml_document_delete(&doc);
  yaml_parser_delete(&parser);
  if (st) qg_spec_free(out);
  return st;
}

qg_status qg_spec_load_yaml(const char *path, qg_spec *out) {
  uint8_t *d;
  size_t n;
  memset(out, 0, sizeof *out);
  QG_TRY(qg_read_file(path, &d, &n, (size_t)1 << 24));
  qg_status s = qg_spec_parse_yaml(d, n, path, out);
  free(d);
  return s;
}

/* ---- the plan ------------------------------------------------------------------------ */

void qg_spec_plan_free(qg_spec_plan *plan) {
  free(plan->a);
  for (int i = 0; i < 4; i++) qg_qconfig_free(&plan->builtin[i]);
  memset(plan, 0, sizeof *plan);
}

enum { B_FP16 = 0, B_FP32, B_RAW, B_INT8 };

const char *qg_spec_assign_why(const qg_spec *s, const qg_state *st, const qg_spec_assign *a, char *buf,
                               size_t cap) {
  const qg_tensor *t = &st->t[a->index];
  if (a->kind == QG_ASSIGN_RULE)
    snprintf(buf, cap, "rule %d (%s)", a->rule + 1, s->rules[a->rule].glob);
  else if (a->kind == QG_ASSIGN_DEFAULT)
    snprintf(buf, cap, "default (no rule matches)");
  else
    snprintf(buf, cap, "contest passthrough (%s)",
             !qg_dtype_is_float(t->dtype) ? "not float" : qg_contest_is_control(t->name) ? "control" : "small");
  return buf;
}

qg_status qg_spec_plan_make(const qg_spec *s, const qg_state *st, qg_spec_plan *plan) {
  memset(plan, 0, sizeof *plan);
  static const char *bnames[4] = {"fp16", "fp32", "raw", "contest-int8"};
  for (int i = 0; i < 4; i++)
    if (qg_qconfig_parse(bnames[i], "", &plan->builtin[i])) {
      qg_spec_plan_free(plan);
      return qg_fail(QG_ERR_INTERNAL, "built-in quantizer %s missing", bnames[i]);
    }
  plan->a = calloc((size_t)(st->n ? st->n : 1), sizeof *plan->a);
  int *taken = calloc((size_t)(s->n ? s->n : 1), sizeof *taken), *matched = calloc((size_t)(s->n ? s->n : 1), sizeof *matched);
  qg_status rc = QG_OK;
  if (!plan->a || !taken || !matched) {
    rc = qg_fail(QG_ERR_NOMEM, "out of memory");
    goto done;
  }
  plan->n = st->n;
  for (int i = 0; i < st->n && !rc; i++) {
    const qg_tensor *t = &st->t[i];
    qg_spec_assign *a = &plan->a[i];
    a->index = i, a->rule = -1;
    int64_t numel = qg_tensor_numel(t);
    int small = !qg_dtype_is_float(t->dtype) || numel <= QG_CONTEST_KEEP_FLOAT_MAX_NUMEL;
    /* what a glob rule leaves alone: non-float, control and 1-D tensors, and with the
     * contest's passthrough also every small float tensor */
    int guarded = !qg_dtype_is_float(t->dtype) || qg_contest_is_control(t->name) || t->ndim < 2 ||
                  (s->contest_passthrough && small);
    for (int r = 0; r < s->n; r++) {
      if (!qg_glob_match(s->rules[r].glob, t->name)) continue;
      matched[r]++;
      if (a->rule >= 0) continue;
      if (guarded && !qg_spec_pattern_explicit(s->rules[r].glob)) continue;
      a->rule = r;
    }
    if (a->rule >= 0) {
      a->kind = QG_ASSIGN_RULE;
      a->cfg = &s->rules[a->rule].cfg;
      taken[a->rule]++;
      rc = qg_qconfig_can_take(a->cfg, t->name, t->ndim, t->shape);
      if (rc) qg_fail_prefix(rc, "%s: rule %d ('%s: %s')", s->source, a->rule + 1, s->rules[a->rule].glob,
                             s->rules[a->rule].method);
    } else if (small) {
      a->kind = QG_ASSIGN_PASSTHROUGH;
      a->cfg = !qg_dtype_is_float(t->dtype)    ? &plan->builtin[B_RAW]
               : qg_contest_is_control(t->name) ? &plan->builtin[B_FP32]
                                                : &plan->builtin[B_FP16];
    } else {
      a->kind = QG_ASSIGN_DEFAULT;
      a->cfg = qg_dtype_is_float(t->dtype) ? &plan->builtin[B_INT8] : &plan->builtin[B_RAW];
    }
  }
  for (int r = 0; r < s->n && !rc; r++) {
    if (taken[r]) continue;
    if (!matched[r])
      rc = qg_fail(QG_ERR_INPUT, "%s: rule %d ('%s: %s') matches no tensor", s->source, r + 1, s->rules[r].glob,
                   s->rules[r].method);
    else
      rc = qg_fail(QG_ERR_INPUT, "%s: rule %d ('%s: %s') matches %d tensors, all taken by earlier rules or "
                   "passthrough rules (non-float, control and 1-D tensors, and small ones with contest_passthrough)", s->source, r + 1, s->rules[r].glob,
                   s->rules[r].method, matched[r]);
  }
done:
  free(taken);
  free(matched);
  if (rc) qg_spec_plan_free(plan);
  return rc;
}

int qg_spec_needs_hessians(const qg_spec *s) {
  for (int i = 0; i < s->n; i++)
    if (s->rules[i].cfg.q && s->rules[i].cfg.q->needs_hessian) return 1;
  return 0;
}
