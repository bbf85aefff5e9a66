/* The generic half of the quantizer interface: option words, sections, configs. */
#include "quant/quantizer.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- options ------------------------------------------------------------------------ */

static int is_sep(char c) { return c == ' ' || c == '\t' || c == ',' || c == '\n' || c == '\r'; }

void qg_opts_free(qg_opts *o) {
  for (int i = 0; i < o->n; i++) free(o->v[i].key), free(o->v[i].val);
  for (int i = 0; i < o->n_asked; i++) free(o->asked[i]);
  for (int i = 0; i < o->n_desc; i++) free(o->desc[i].key);
  free(o->v);
  free(o->asked);
  free(o->desc);
  memset(o, 0, sizeof *o);
}

qg_status qg_opts_parse(const char *text, qg_opts *o) {
  memset(o, 0, sizeof *o);
  const char *p = text ? text : "";
  while (*p) {
    while (*p && is_sep(*p)) p++;
    if (!*p) break;
    const char *w = p;
    while (*p && !is_sep(*p)) p++;
    const char *eq = memchr(w, '=', (size_t)(p - w));
    size_t klen = eq ? (size_t)(eq - w) : (size_t)(p - w);
    if (klen == 0) {
      qg_opts_free(o);
      return qg_fail(QG_ERR_INPUT, "option '%.*s': missing name before '='", (int)(p - w), w);
    }
    if (eq && eq + 1 == p) {
      qg_opts_free(o);
      return qg_fail(QG_ERR_INPUT, "option '%.*s': missing value after '='", (int)klen, w);
    }
    for (int i = 0; i < o->n; i++)
      if (strlen(o->v[i].key) == klen && !memcmp(o->v[i].key, w, klen)) {
        qg_opts_free(o);
        return qg_fail(QG_ERR_INPUT, "option '%.*s' given twice", (int)klen, w);
      }
    qg_opt *nv = realloc(o->v, sizeof *nv * (size_t)(o->n + 1));
    if (!nv) {
      qg_opts_free(o);
      return qg_fail(QG_ERR_NOMEM, "out of memory");
    }
    o->v = nv;
    qg_opt *e = &o->v[o->n++];
    e->used = 0;
    e->key = qg_strndup(w, klen);
    e->val = eq ? qg_strndup(eq + 1, (size_t)(p - eq - 1)) : qg_strdup("1");
    if (!e->key || !e->val) {
      qg_opts_free(o);
      return qg_fail(QG_ERR_NOMEM, "out of memory");
    }
  }
  return QG_OK;
}

/* Describe mode: records a key's declaration (first one wins: a composite's inner
 * parser may ask again). */
static void declare(qg_opts *o, const char *key, qg_opt_desc d) {
  if (!o->describe) return;
  for (int i = 0; i < o->n_desc; i++)
    if (!strcmp(o->desc[i].key, key)) return;
  qg_opt_desc *nd = realloc(o->desc, sizeof *nd * (size_t)(o->n_desc + 1));
  if (!nd) return;
  o->desc = nd;
  d.key = qg_strdup(key);
  if (d.key) o->desc[o->n_desc++] = d;
}

/* Remembers that key is a valid option and returns its entry (or NULL when absent). */
static qg_opt *take(qg_opts *o, const char *key) {
  int known = 0;
  for (int i = 0; i < o->n_asked; i++)
    if (!strcmp(o->asked[i], key)) known = 1;
  if (!known) {
    char **na = realloc(o->asked, sizeof *na * (size_t)(o->n_asked + 1));
    if (na) {
      o->asked = na;
      if ((na[o->n_asked] = qg_strdup(key))) o->n_asked++;
    }
  }
  for (int i = 0; i < o->n; i++)
    if (!strcmp(o->v[i].key, key)) {
      o->v[i].used = 1;
      return &o->v[i];
    }
  return NULL;
}

qg_status qg_opt_int(qg_opts *o, const char *who, const char *key, int64_t lo, int64_t hi, int64_t def,
                     int64_t *out) {
  declare(o, key, (qg_opt_desc){.type = QG_OPT_INT, .lo = (double)lo, .hi = (double)hi, .def = (double)def});
  qg_opt *e = take(o, key);
  *out = def;
  if (!e) return QG_OK;
  char *end;
  errno = 0;
  long long v = strtoll(e->val, &end, 10);
  if (errno || end == e->val || *end)
    return qg_fail(QG_ERR_INPUT, "%s: option %s=%s: expected an integer", who, key, e->val);
  if (v < lo || v > hi)
    return qg_fail(QG_ERR_INPUT, "%s: option %s=%s: out of range [%lld, %lld]", who, key, e->val, (long long)lo,
                   (long long)hi);
  *out = v;
  return QG_OK;
}

qg_status qg_opt_num(qg_opts *o, const char *who, const char *key, double lo, double hi, double def, double *out) {
  declare(o, key, (qg_opt_desc){.type = QG_OPT_NUM, .lo = lo, .hi = hi, .def = def});
  qg_opt *e = take(o, key);
  *out = def;
  if (!e) return QG_OK;
  char *end;
  errno = 0;
  double v = strtod(e->val, &end);
  if (errno || end == e->val || *end || !isfinite(v))
    return qg_fail(QG_ERR_INPUT, "%s: option %s=%s: expected a number", who, key, e->val);
  if (v < lo || v > hi)
    return qg_fail(QG_ERR_INPUT, "%s: option %s=%s: out of range [%g, %g]", who, key, e->val, lo, hi);
  *out = v;
  return QG_OK;
}

qg_status qg_opt_choice(qg_opts *o, const char *who, const char *key, const char *const *choices, int def, int *out) {
  declare(o, key, (qg_opt_desc){.type = QG_OPT_CHOICE, .choices = choices, .def = def});
  qg_opt *e = take(o, key);
  *out = def;
  if (!e) return QG_OK;
  for (int i = 0; choices[i]; i++)
    if (!strcmp(choices[i], e->val)) {
      *out = i;
      return QG_OK;
    }
  qg_buf b;
  qg_buf_init(&b);
  for (int i = 0; choices[i]; i++) qg_buf_printf(&b, "%s%s", i ? ", " : "", choices[i]);
  qg_buf_byte(&b, 0);
  qg_status s = qg_fail(QG_ERR_INPUT, "%s: option %s=%s: expected one of %s", who, key, e->val,
                        b.failed ? "?" : (char *)b.p);
  qg_buf_free(&b);
  return s;
}

qg_status qg_opt_str(qg_opts *o, const char *who, const char *key, const char *def, const char **out) {
  (void)who;
  declare(o, key, (qg_opt_desc){.type = QG_OPT_STR, .sdef = def});
  qg_opt *e = take(o, key);
  *out = e ? e->val : def;
  return QG_OK;
}

qg_status qg_opts_check_unused(const qg_opts *o, const char *who) {
  for (int i = 0; i < o->n; i++) {
    if (o->v[i].used) continue;
    qg_buf b;
    qg_buf_init(&b);
    for (int j = 0; j < o->n_asked; j++) qg_buf_printf(&b, "%s%s", j ? ", " : "", o->asked[j]);
    if (!o->n_asked) qg_buf_str(&b, "none");
    qg_buf_byte(&b, 0);
    qg_status s = qg_fail(QG_ERR_INPUT, "%s: unknown option '%s' (valid: %s)", who, o->v[i].key,
                          b.failed ? "?" : (char *)b.p);
    qg_buf_free(&b);
    return s;
  }
  return QG_OK;
}

/* ---- configs ------------------------------------------------------------------------ */

qg_status qg_quantizer_lookup(const char *name, const qg_quantizer **out) {
  *out = qg_quantizer_find(name);
  if (*out) return QG_OK;
  qg_buf b;
  qg_buf_init(&b);
  for (int i = 0; qg_quantizers[i]; i++) qg_buf_printf(&b, "%s%s", i ? ", " : "", qg_quantizers[i]->name);
  qg_buf_byte(&b, 0);
  qg_status s = qg_fail(QG_ERR_INPUT, "unknown quantizer '%s' (valid: %s)", name, b.failed ? "?" : (char *)b.p);
  qg_buf_free(&b);
  return s;
}

const qg_quantizer *qg_quantizer_find(const char *name) {
  for (int i = 0; qg_quantizers[i]; i++)
    if (!strcmp(qg_quantizers[i]->name, name)) return qg_quantizers[i];
  return NULL;
}

void qg_qconfig_free(qg_qconfig *c) {
  if (c->q && c->cfg) c->q->free_cfg(c->cfg);
  free(c->canon);
  memset(c, 0, sizeof *c);
}

qg_status qg_qconfig_parse(const char *method, const char *options, qg_qconfig *out) {
  memset(out, 0, sizeof *out);
  QG_TRY(qg_quantizer_lookup(method, &out->q));
  qg_opts o;
  QG_TRY(qg_opts_parse(options, &o));
  qg_status s = out->q->parse(&o, &out->cfg);
  if (!s) s = qg_opts_check_unused(&o, method);
  qg_opts_free(&o);
  if (!s) {
    qg_buf b;
    qg_buf_init(&b);
    out->q->canon(out->cfg, &b);
    qg_buf_byte(&b, 0);
    if ((s = qg_buf_status(&b)) == QG_OK) {
      out->canon = (char *)b.p;
    } else {
      qg_buf_free(&b);
    }
  }
  if (s) qg_qconfig_free(out);
  return s;
}

qg_status qg_qconfig_can_take(const qg_qconfig *c, const char *name, int ndim, const int64_t *shape) {
  return c->q->can_take(c->cfg, name, ndim, shape);
}

qg_status qg_qtensor_begin(const qg_qconfig *c, const qg_qinput *in, qg_qtensor *out) {
  qg_qtensor_init(out);
  int ndim = in->ndim;
  int64_t shape[QG_MAX_DIMS] = {in->rows, in->cols};
  if (ndim > 0) {
    memcpy(shape, in->shape, sizeof(int64_t) * (size_t)ndim);
    int64_t r, k;
    qg_matrix_view(ndim, shape, &r, &k);
    if (r != in->rows || k != in->cols)
      return qg_fail(QG_ERR_INTERNAL, "tensor '%s': matrix view %lldx%lld does not match its shape",
                     in->name ? in->name : "?", (long long)in->rows, (long long)in->cols);
  } else {
    ndim = 2;
  }
  QG_TRY(c->q->can_take(c->cfg, in->name ? in->name : "(tensor)", ndim, shape));
  out->ndim = ndim;
  memcpy(out->shape, shape, sizeof shape);
  out->rows = in->rows, out->cols = in->cols;
  out->orig_dtype = in->dtype;
  out->name = qg_strdup(in->name ? in->name : "");
  out->method = qg_strdup(c->q->name);
  out->options = qg_strdup(c->canon ? c->canon : "");
  if (!out->name || !out->method || !out->options) {
    qg_qtensor_free(out);
    return qg_fail(QG_ERR_NOMEM, "out of memory");
  }
  return QG_OK;
}

qg_status qg_quantize(const qg_qconfig *c, const qg_qinput *in, qg_qtensor *out) {
  QG_TRY(qg_qtensor_begin(c, in, out));
  qg_status s = c->q->quantize(c->cfg, in, out);
  if (s) {
    qg_fail_prefix(s, "tensor '%s' (%s)", out->name, c->q->name);
    qg_qtensor_free(out);
  }
  return s;
}

qg_status qg_dequantize(const qg_qconfig *c, const qg_qtensor *q, float *w) { return c->q->dequantize(c->cfg, q, w); }

qg_status qg_cannot_take(const char *quant, const char *name, int ndim, const int64_t *shape, const char *fmt, ...) {
  char why[256], sh[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, sizeof why, fmt, ap);
  va_end(ap);
  qg_shape_str(ndim, shape, sh, sizeof sh);
  return qg_fail(QG_ERR_INPUT, "quantizer '%s' cannot take '%s' %s: %s", quant, name, sh, why);
}

int qg_bits_for(uint64_t n) {
  int b = 1;
  while (b < 64 && ((uint64_t)1 << b) < n) b++;
  return b;
}
