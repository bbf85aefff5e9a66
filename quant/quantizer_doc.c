/* The spec language described from the parsers themselves: qg_quantizer_describe runs a
 * quantizer's parse() in describe mode, so each option's type, range and default in the
 * listing are the ones parse() enforces; meanings come from the quantizer's option_docs. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/util.h"
#include "quant/quantizer.h"
#include "quant/spec.h"

qg_status qg_quantizer_describe(const qg_quantizer *q, qg_opts *o) {
  memset(o, 0, sizeof *o);
  o->describe = 1;
  void *cfg = NULL;
  qg_status s = q->parse(o, &cfg); /* no options: every key asked for with its default */
  if (!s && cfg) q->free_cfg(cfg);
  return s;
}

static const char *doc_in(const char *const *d, const char *key) {
  for (int i = 0; d && d[i]; i += 2)
    if (!strcmp(d[i], key)) return d[i + 1];
  return NULL;
}

const char *qg_quantizer_option_doc(const qg_quantizer *q, const char *key) {
  const char *m = doc_in(q->option_docs, key);
  /* a composite (gptq) asks its inner grid's options too: the grids document them */
  for (int i = 0; !m && q->grid == NULL && qg_quantizers[i]; i++)
    if (qg_quantizers[i]->grid && qg_quantizers[i] != q && !strcmp(qg_quantizers[i]->name, "rowwise"))
      m = doc_in(qg_quantizers[i]->option_docs, key);
  return m;
}

static void int_or_num(qg_buf *b, double x, int is_int) {
  char t[32];
  if (is_int && fabs(x) >= 1e6 && x == ldexp(1.0, (int)log2(x))) qg_buf_printf(b, "2^%d", (int)log2(x));
  else if (is_int) qg_buf_printf(b, "%.0f", x);
  else qg_buf_str(b, qg_num_str(x, t));
}

static void describe_one(qg_buf *b, const qg_opt_desc *d, const char *meaning) {
  qg_buf c;
  qg_buf_init(&c);
  int is_int = d->type == QG_OPT_INT;
  if (d->type == QG_OPT_INT || d->type == QG_OPT_NUM) {
    qg_buf_str(&c, is_int ? "int [" : "number [");
    int_or_num(&c, d->lo, is_int);
    qg_buf_str(&c, ", ");
    int_or_num(&c, d->hi, is_int);
    qg_buf_str(&c, "] = ");
    int_or_num(&c, d->def, is_int);
  } else if (d->type == QG_OPT_CHOICE) {
    for (int i = 0; d->choices[i]; i++) qg_buf_printf(&c, "%s%s", i ? "|" : "", d->choices[i]);
    qg_buf_printf(&c, " = %s", d->choices[(int)d->def]);
  } else {
    qg_buf_printf(&c, "word = %s", d->sdef ? d->sdef : "(none)");
  }
  qg_buf_byte(&c, 0);
  qg_buf_printf(b, "    %-14s %-28s %s\n", d->key, c.failed ? "?" : (char *)c.p, meaning ? meaning : "");
  qg_buf_free(&c);
}

qg_status qg_quantizers_help(qg_buf *b) {
  qg_buf_str(b, "Quantizers and their options (key=value words; type [range] = default):\n");
  for (int i = 0; qg_quantizers[i]; i++) {
    const qg_quantizer *q = qg_quantizers[i];
    qg_opts o;
    QG_TRY(qg_quantizer_describe(q, &o));
    qg_buf_printf(b, "\n  %s: %s%s\n", q->name, q->summary, q->needs_hessian ? " (needs --calib)" : "");
    if (!o.n_desc) qg_buf_str(b, "    (no options)\n");
    for (int k = 0; k < o.n_desc; k++) describe_one(b, &o.desc[k], qg_quantizer_option_doc(q, o.desc[k].key));
    qg_opts_free(&o);
  }
  qg_buf_str(b, "\nPresets (--preset NAME, or a rule 'preset: NAME' in a spec):\n");
  for (int i = 0; qg_spec_presets[i].name; i++)
    qg_buf_printf(b, "  %-26s %s\n  %-26s   = %s%s\n", qg_spec_presets[i].name, qg_spec_presets[i].summary, "",
                  qg_spec_presets[i].rules, qg_spec_presets[i].contest_passthrough ? " (+ contest passthrough)" : "");
  return qg_buf_status(b);
}
