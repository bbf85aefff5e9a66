/* The declarative option parser (see args.h). */
#include "cli/args.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* What a template may name. */
typedef struct {
  const char *opt, *val, *arg;
  const qg_arg *d;
} tvars;

static void put(char **o, const char *end, const char *s, size_t n) {
  size_t room = (size_t)(end - *o);
  if (n > room) n = room;
  memcpy(*o, s, n);
  *o += n;
}

static void put_num(char **o, const char *end, const qg_arg *d, int hi) {
  char b[64];
  if (d->kind == QG_ARG_NUM || d->kind == QG_ARG_F32) snprintf(b, sizeof b, "%g", hi ? d->max : d->min);
  else if (d->lo || d->hi) snprintf(b, sizeof b, "%lld", hi ? d->hi : d->lo);
  else if (d->kind == QG_ARG_INT) snprintf(b, sizeof b, "%d", hi ? INT_MAX : INT_MIN);
  else snprintf(b, sizeof b, "%lld", hi ? LLONG_MAX : LLONG_MIN);
  put(o, end, b, strlen(b));
}

/* "a, b or c" */
static void put_choices(char **o, const char *end, const char *const *c) {
  int n = 0;
  while (c && c[n]) n++;
  for (int i = 0; i < n; i++) {
    if (i) put(o, end, i == n - 1 ? " or " : ", ", i == n - 1 ? 4 : 2);
    put(o, end, c[i], strlen(c[i]));
  }
}

/* Expands a template into p->err; returns QG_ARGS_USAGE. */
static int fail(qg_args *p, const char *tmpl, const tvars *v) {
  char *o = p->err, *end = p->err + sizeof p->err - 1;
  for (const char *s = tmpl; *s;) {
    const char *b = strchr(s, '{');
    if (!b) b = s + strlen(s);
    put(&o, end, s, (size_t)(b - s));
    if (!*b) break;
    const char *c = strchr(b, '}');
    size_t n = c ? (size_t)(c - b - 1) : 0;
#define IS(w) (c && n == strlen(w) && !strncmp(b + 1, w, n))
    if (IS("opt")) put(&o, end, v->opt ? v->opt : "", v->opt ? strlen(v->opt) : 0);
    else if (IS("val")) put(&o, end, v->val ? v->val : "", v->val ? strlen(v->val) : 0);
    else if (IS("arg")) put(&o, end, v->arg ? v->arg : "", v->arg ? strlen(v->arg) : 0);
    else if (IS("lo") && v->d) put_num(&o, end, v->d, 0);
    else if (IS("hi") && v->d) put_num(&o, end, v->d, 1);
    else if (IS("choices") && v->d) put_choices(&o, end, v->d->choices);
    else {
      put(&o, end, "{", 1); /* not a placeholder: literal */
      s = b + 1;
      continue;
    }
#undef IS
    s = c + 1;
  }
  *o = 0;
  return QG_ARGS_USAGE;
}

/* An unexpected word that names an existing file was most likely one of several files
 * an unquoted glob expanded into: the first reached its option, this one did not. */
static int fail_word(qg_args *p, const char *tmpl, const char *word) {
  tvars v = {.arg = word, .opt = word};
  fail(p, tmpl, &v);
  struct stat sb;
  if ((p->spec->flags & QG_ARGS_GLOB_HINT) && word[0] != '-' && stat(word, &sb) == 0) {
    size_t n = strlen(p->err);
    snprintf(p->err + n, sizeof p->err - n,
             ": it is an existing file, so an unquoted glob was probably expanded by the shell into several "
             "arguments; quote it, e.g. --val 'DIR/fineweb_val_*.bin'");
  }
  return QG_ARGS_USAGE;
}

static const char *unknown_tmpl(const qg_args_spec *s) { return s->unknown ? s->unknown : "unknown option '{arg}'"; }

static int flatten(qg_args *p, const qg_arg *t) {
  for (; t && t->kind != QG_ARG_END; t++) {
    if (t->kind == QG_ARG_TABLE) {
      if (flatten(p, t->table)) return -1;
      continue;
    }
    if (p->n == QG_ARGS_MAX) return -1;
    p->flat[p->n++] = t;
  }
  return 0;
}

/* The descriptor named by the first n characters of word (with dashes). */
static int find(const qg_args *p, const char *word, size_t n) {
  for (int k = 0; k < p->n; k++)
    if (strlen(p->flat[k]->name) == n && !strncmp(p->flat[k]->name, word, n)) return k;
  return -1;
}

static int takes_value(const qg_arg *d) { return d->kind != QG_ARG_FLAG; }

static int bool_word(const char *v, int *on) {
  if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1")) *on = 1;
  else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0")) *on = 0;
  else return -1;
  return 0;
}

/* -1: not an integer; 1: beyond every range (overflow), *x says which side. */
static int parse_ll(const char *v, long long *x) {
  char *end;
  errno = 0;
  *x = strtoll(v, &end, 10);
  if (!*v || *end) return -1;
  return errno == ERANGE ? 1 : 0;
}

/* Stores value (NULL for a flag from the command line) into k's destination. */
static int apply(qg_args *p, int k, const char *label, const char *value) {
  const qg_arg *d = p->flat[k];
  tvars tv = {.opt = label, .val = value, .arg = label, .d = d};
  const char *bad = d->bad ? d->bad : "{opt} expects a valid value, got '{val}'";
  p->count[k]++;
  switch (d->kind) {
    case QG_ARG_FLAG: {
      int on = 1;
      if (value && bool_word(value, &on))
        return fail(p, d->bad ? d->bad : "{opt} expects true or false, got '{val}'", &tv);
      *(int *)d->dst = (d->flags & QG_ARG_CLEAR) ? !on : on;
      break;
    }
    case QG_ARG_STR:
      *(const char **)d->dst = value;
      break;
    case QG_ARG_INT:
    case QG_ARG_I64: {
      long long lo = d->lo, hi = d->hi, x;
      if (!lo && !hi) /* no range: the destination's */
        lo = d->kind == QG_ARG_INT ? INT_MIN : LLONG_MIN, hi = d->kind == QG_ARG_INT ? INT_MAX : LLONG_MAX;
      if (!d->bad) bad = "{opt} expects an integer in [{lo}, {hi}], got '{val}'";
      int r = parse_ll(value, &x);
      if (r < 0 || x < lo || (r && x < 0)) return fail(p, bad, &tv);
      if (r || x > hi) return fail(p, d->high ? d->high : bad, &tv);
      if (d->kind == QG_ARG_INT) *(int *)d->dst = (int)x;
      else *(int64_t *)d->dst = x;
      break;
    }
    case QG_ARG_NUM:
    case QG_ARG_F32: {
      char *end;
      double x;
      x = strtod(value, &end);
      int ranged = d->min != 0 || d->max != 0;
      int low = ranged && ((d->flags & QG_ARG_OPEN_MIN) ? !(x > d->min) : !(x >= d->min));
      if (!d->bad)
        bad = ranged ? "{opt} expects a number in [{lo}, {hi}], got '{val}'" : "{opt} expects a number, got '{val}'";
      if (!*value || *end || low || (!ranged && !isfinite(x))) return fail(p, bad, &tv);
      if (ranged && !(x <= d->max)) return fail(p, d->high ? d->high : bad, &tv);
      if (d->kind == QG_ARG_F32) *(float *)d->dst = (float)x;
      else *(double *)d->dst = x;
      break;
    }
    case QG_ARG_ENUM: {
      int i = 0;
      while (d->choices[i] && strcmp(d->choices[i], value)) i++;
      if (!d->choices[i]) return fail(p, d->bad ? d->bad : "{opt} expects {choices}, got '{val}'", &tv);
      *(int *)d->dst = i;
      break;
    }
    case QG_ARG_LIST: {
      qg_arg_list *l = d->dst;
      if (l->n >= l->cap) return fail(p, d->high ? d->high : "{opt}: too many", &tv);
      l->v[l->n++] = value;
      break;
    }
    case QG_ARG_FN:
      p->err[0] = 0;
      if (d->fn(value, d->dst, p->err, sizeof p->err)) return p->err[0] ? QG_ARGS_USAGE : fail(p, bad, &tv);
      return QG_ARGS_OK;
    default:
      return fail(p, "{opt}: cannot be set this way", &tv);
  }
  if (d->fn) {
    p->err[0] = 0;
    if (d->fn(value, d->dst, p->err, sizeof p->err)) return p->err[0] ? QG_ARGS_USAGE : fail(p, bad, &tv);
  }
  return QG_ARGS_OK;
}

static int missing(qg_args *p, const qg_arg *d, const char *opt) {
  tvars tv = {.opt = opt, .arg = opt, .d = d};
  const char *t = d && d->missing ? d->missing : p->spec->missing ? p->spec->missing : unknown_tmpl(p->spec);
  return fail(p, t, &tv);
}

/* Removes argv[i .. i+n-1]. */
static void take_out(qg_args *p, int i, int n) {
  for (int j = i; j + n < *p->argc; j++) p->argv[j] = p->argv[j + n];
  *p->argc -= n;
}

int qg_args_begin(qg_args *p, const qg_args_spec *spec, int *argc, char **argv) {
  memset(p, 0, sizeof *p);
  p->spec = spec, p->argc = argc, p->argv = argv;
  if (flatten(p, spec->args)) {
    snprintf(p->err, sizeof p->err, "internal error: more than %d options", QG_ARGS_MAX);
    return QG_ARGS_USAGE;
  }
  /* every option at most once, checked by name before any value is read */
  for (int i = 1; i < *argc; i++) {
    const char *a = argv[i];
    if (strncmp(a, "--", 2) != 0 || !a[2]) continue;
    size_t n = strcspn(a, "=");
    int k = find(p, a, n);
    if (k >= 0 && (p->flat[k]->flags & QG_ARG_REPEAT || p->flat[k]->kind == QG_ARG_LIST)) continue;
    for (int j = 1; j < i; j++)
      if (strcspn(argv[j], "=") == n && !strncmp(argv[j], a, n)) {
        snprintf(p->err, sizeof p->err, "option '%.*s' is given twice (each option at most once)", (int)n, a);
        return QG_ARGS_USAGE;
      }
  }
  if (spec->flags & QG_ARGS_WORDS_ONLY) return QG_ARGS_OK;
  for (int k = 0; k < p->n; k++) {
    const qg_arg *d = p->flat[k];
    if (!(d->flags & QG_ARG_EARLY)) continue;
    size_t n = strlen(d->name);
    for (int i = 1; i < *argc; i++) {
      const char *a = argv[i];
      if (strncmp(a, d->name, n) || (a[n] && (a[n] != '=' || !takes_value(d)))) continue;
      const char *v = a[n] == '=' ? a + n + 1 : NULL;
      int used = 1;
      if (takes_value(d) && !v) {
        if (i + 1 >= *argc) return missing(p, d, d->name);
        v = argv[i + 1], used = 2;
      }
      int rc = apply(p, k, d->name, v);
      if (rc) return rc;
      if (!(d->flags & QG_ARG_KEEP)) take_out(p, i, used);
      else if (p->n_skip + used <= (int)(sizeof p->skip / sizeof p->skip[0]))
        for (int u = 0; u < used; u++) p->skip[p->n_skip++] = i + u;
      break;
    }
  }
  return QG_ARGS_OK;
}

static int is_help(const char *a) { return !strcmp(a, "-h") || !strcmp(a, "--help"); }

static int word(qg_args *p, const char *a) {
  const qg_args_spec *s = p->spec;
  const char *unexpected = s->unexpected ? s->unexpected : unknown_tmpl(s);
  if (!s->words) return fail_word(p, unexpected, a);
  if (s->words->n >= s->words->cap) return fail_word(p, s->too_many ? s->too_many : unexpected, a);
  s->words->v[s->words->n++] = a;
  return QG_ARGS_OK;
}

int qg_args_finish(qg_args *p) {
  const qg_args_spec *s = p->spec;
  int argc = *p->argc;
  char **argv = p->argv;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    int rc, kept = 0;
    for (int k = 0; k < p->n_skip; k++) kept |= p->skip[k] == i;
    if (kept) continue;
    if (s->flags & QG_ARGS_WORDS_ONLY) {
      if ((rc = word(p, a))) return rc;
      continue;
    }
    int optlike = a[0] == '-' && !((s->flags & QG_ARGS_DASH_WORD) && !a[1]);
    if ((s->flags & QG_ARGS_LONG_ONLY) && !(a[0] == '-' && a[1] == '-' && a[2])) optlike = 0;
    if (!optlike) {
      if ((rc = word(p, a))) return rc;
      continue;
    }
    if (is_help(a)) return QG_ARGS_HELP;
    size_t n = strcspn(a, "=");
    char opt[256];
    snprintf(opt, sizeof opt, "%.*s", (int)(n < 255 ? n : 255), a);
    const char *eq = a[n] == '=' ? a + n + 1 : NULL;
    int k = find(p, a, n);
    /* a flag has no value, so "--flag=x" is nobody's option */
    if (k >= 0 && eq && !takes_value(p->flat[k])) k = -1;
    if (k < 0) {
      if (!s->other || a[0] != '-' || a[1] != '-' || !a[2]) return fail_word(p, unknown_tmpl(s), a);
      const char *v = eq;
      if (!(s->other_is_flag && s->other_is_flag(opt + 2)) && !v) {
        if (i + 1 >= argc) return missing(p, NULL, a);
        v = argv[++i];
      }
      rc = s->other(s->other_ctx, opt + 2, opt, v, p->err, sizeof p->err);
      if (rc == 1) return fail(p, unknown_tmpl(s), &(tvars){.arg = a, .opt = a}); /* as written, "=..." too */
      if (rc) return QG_ARGS_USAGE;
      continue;
    }
    const qg_arg *d = p->flat[k];
    if (d->kind == QG_ARG_MULTI) {
      qg_arg_list *l = d->dst;
      if (!eq && i + 1 >= argc) return missing(p, d, opt);
      p->count[k]++;
      if (eq) l->v = (const char **)argv + i, argv[i] = (char *)eq, l->n = 1;
      else l->v = (const char **)argv + i + 1, l->n = 0;
      while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) i++, l->n++;
      continue;
    }
    const char *v = NULL;
    if (takes_value(d)) {
      if (eq) v = eq;
      else if (i + 1 < argc) v = argv[++i];
      else return missing(p, d, opt);
    }
    if ((rc = apply(p, k, opt, v))) return rc;
  }
  for (int k = 0; k < p->n; k++)
    if ((p->flat[k]->flags & QG_ARG_REQUIRED) && !p->count[k]) {
      tvars tv = {.opt = p->flat[k]->name, .arg = p->flat[k]->name, .d = p->flat[k]};
      return fail(p, s->required ? s->required : "{opt} is required", &tv);
    }
  return QG_ARGS_OK;
}

int qg_args_set(qg_args *p, const char *name, const char *label, const char *value) {
  for (int k = 0; k < p->n; k++) {
    const qg_arg *d = p->flat[k];
    if (d->flags & QG_ARG_EARLY || strncmp(d->name, "--", 2) || strcmp(d->name + 2, name)) continue;
    if (takes_value(d) && !value) return missing(p, d, label);
    return apply(p, k, label, value);
  }
  const qg_args_spec *s = p->spec;
  if (s->other) {
    int rc = s->other(s->other_ctx, name, label, value, p->err, sizeof p->err);
    if (rc != 1) return rc ? QG_ARGS_USAGE : QG_ARGS_OK;
  }
  return fail(p, unknown_tmpl(s), &(tvars){.arg = label, .opt = label});
}

int qg_args_given(const qg_args *p, const char *name) {
  int k = find(p, name, strlen(name));
  return k < 0 ? 0 : p->count[k];
}

int qg_args_wants_help(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (is_help(argv[i])) return 1;
  return 0;
}

static size_t help_rows(const qg_arg *t, int width, char *buf, size_t cap, size_t len) {
  for (; t && t->kind != QG_ARG_END; t++) {
    if (t->kind == QG_ARG_TABLE) {
      len = help_rows(t->table, width, buf, cap, len);
      continue;
    }
    if (!t->help) continue;
    int name = (int)strlen(t->name);
    int n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, "  %s%*s", t->name,
                     name < width ? width - name + 1 : 2, "");
    len += (size_t)n;
    for (const char *h = t->help; *h;) {
      size_t l = strcspn(h, "\n");
      n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, "%.*s\n", (int)l, h);
      len += (size_t)n;
      h += l;
      if (*h == '\n' && *++h) {
        n = snprintf(len < cap ? buf + len : NULL, len < cap ? cap - len : 0, "%*s", width + 3, "");
        len += (size_t)n;
      }
    }
  }
  return len;
}

size_t qg_args_help(const qg_arg *args, int width, char *buf, size_t cap) {
  if (cap) buf[0] = 0;
  return help_rows(args, width, buf, cap, 0);
}
