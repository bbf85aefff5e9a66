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

/* ---- sections ----------------------------------------------------------------------- */

void qg_qtensor_init(qg_qtensor *q) {
  memset(q, 0, sizeof *q);
  q->orig_dtype = QG_F32;
}

void qg_qtensor_free(qg_qtensor *q) {
  for (int i = 0; i < q->nsec; i++) free(q->sec[i].data);
  free(q->name);
  free(q->method);
  free(q->options);
  free(q->note);
  qg_qtensor_init(q);
}

static size_t kind_size(qg_sec_kind k) {
  switch (k) {
    case QG_SEC_CODES: return 4;
    case QG_SEC_F16:
    case QG_SEC_BF16: return 2;
    case QG_SEC_F32: return 4;
    default: return 1;
  }
}

qg_status qg_qtensor_add(qg_qtensor *q, const char *name, qg_sec_kind kind, int bits, int64_t count, void **data) {
  if (q->nsec >= QG_QT_MAX_SECTIONS) return qg_fail(QG_ERR_INTERNAL, "too many sections in a quantized tensor");
  if (strlen(name) >= QG_SEC_NAME_MAX) return qg_fail(QG_ERR_INTERNAL, "section name '%s' too long", name);
  if (kind == QG_SEC_CODES && (bits < 1 || bits > 32))
    return qg_fail(QG_ERR_INTERNAL, "section '%s': code width %d outside 1..32", name, bits);
  if (count < 0 || (uint64_t)count > ((uint64_t)1 << 40))
    return qg_fail(QG_ERR_NOMEM, "section '%s': %lld elements is beyond limits", name, (long long)count);
  if (qg_qtensor_find(q, name)) return qg_fail(QG_ERR_INTERNAL, "section '%s' added twice", name);
  void *p = calloc((size_t)(count ? count : 1), kind_size(kind));
  if (!p) return qg_fail(QG_ERR_NOMEM, "out of memory (section '%s', %lld elements)", name, (long long)count);
  qg_qsection *s = &q->sec[q->nsec++];
  memset(s, 0, sizeof *s);
  memcpy(s->name, name, strlen(name) + 1);
  s->kind = kind;
  s->bits = kind == QG_SEC_CODES ? bits : 0;
  s->count = count;
  s->data = p;
  if (data) *data = p;
  return QG_OK;
}

const qg_qsection *qg_qtensor_find(const qg_qtensor *q, const char *name) {
  for (int i = 0; i < q->nsec; i++)
    if (!strcmp(q->sec[i].name, name)) return &q->sec[i];
  return NULL;
}

static const char *kind_name(qg_sec_kind k) {
  static const char *n[] = {"codes", "f16", "bf16", "f32", "raw"};
  return (unsigned)k < QG_SEC_KIND_COUNT ? n[k] : "?";
}

qg_status qg_qtensor_need(const qg_qtensor *q, const char *name, qg_sec_kind kind, int64_t count,
                          const qg_qsection **out) {
  const qg_qsection *s = qg_qtensor_find(q, name);
  const char *tn = q->name ? q->name : "(tensor)", *m = q->method ? q->method : "?";
  if (!s) return qg_fail(QG_ERR_INPUT, "tensor '%s' (%s): section '%s' missing", tn, m, name);
  if (s->kind != kind)
    return qg_fail(QG_ERR_INPUT, "tensor '%s' (%s): section '%s' is %s, expected %s", tn, m, name,
                   kind_name(s->kind), kind_name(kind));
  if (count >= 0 && s->count != count)
    return qg_fail(QG_ERR_INPUT, "tensor '%s' (%s): section '%s' holds %lld values, expected %lld", tn, m, name,
                   (long long)s->count, (long long)count);
  *out = s;
  return QG_OK;
}

int64_t qg_qsection_packed_bytes(const qg_qsection *s) {
  if (s->kind == QG_SEC_CODES) return (s->count * s->bits + 7) / 8;
  return s->count * (int64_t)kind_size(s->kind);
}

int64_t qg_qtensor_packed_bytes(const qg_qtensor *q) {
  int64_t n = 0;
  for (int i = 0; i < q->nsec; i++) n += qg_qsection_packed_bytes(&q->sec[i]);
  return n;
}

int64_t qg_qtensor_bytewise_bytes(const qg_qtensor *q) {
  int64_t n = 0;
  for (int i = 0; i < q->nsec; i++) {
    const qg_qsection *s = &q->sec[i];
    n += s->kind == QG_SEC_CODES ? s->count * ((s->bits + 7) / 8) : qg_qsection_packed_bytes(s);
  }
  return n;
}

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return (x > y) - (x < y);
}

double qg_qtensor_code_entropy_bits(const qg_qtensor *q) {
  double total = 0;
  for (int i = 0; i < q->nsec; i++) {
    const qg_qsection *s = &q->sec[i];
    if (s->kind != QG_SEC_CODES || strcmp(s->name, "codes") || s->count == 0) continue;
    const uint32_t *c = s->data;
    double n = (double)s->count, h = 0;
    if (s->bits <= 16) { /* histogram */
      size_t m = (size_t)1 << s->bits;
      int64_t *hist = calloc(m, sizeof *hist);
      if (!hist) return NAN;
      for (int64_t j = 0; j < s->count; j++) hist[c[j] & (m - 1)]++;
      for (size_t v = 0; v < m; v++)
        if (hist[v]) h -= (double)hist[v] * log2((double)hist[v] / n);
      free(hist);
    } else { /* wide codes (vector codebooks): count runs in a sorted copy */
      uint32_t *t = malloc((size_t)s->count * sizeof *t);
      if (!t) return NAN;
      memcpy(t, c, (size_t)s->count * sizeof *t);
      qsort(t, (size_t)s->count, sizeof *t, cmp_u32);
      for (int64_t j = 0; j < s->count;) {
        int64_t k = j;
        while (k < s->count && t[k] == t[j]) k++;
        h -= (double)(k - j) * log2((double)(k - j) / n);
        j = k;
      }
      free(t);
    }
    total += h;
  }
  return total;
}

void qg_matrix_view(int ndim, const int64_t *shape, int64_t *rows, int64_t *cols) {
  if (ndim <= 0) {
    *rows = 1, *cols = 1;
    return;
  }
  if (ndim == 1) {
    *rows = 1, *cols = shape[0];
    return;
  }
  /* checked: a shape that qg_shape_numel rejects gives cols -1 rather than undefined
   * behaviour, and no caller accepts a negative view */
  int64_t c = 1;
  for (int i = 1; i < ndim; i++)
    if (qg_mul_overflow_i64(c, shape[i], &c)) {
      c = -1;
      break;
    }
  *rows = shape[0], *cols = c;
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
