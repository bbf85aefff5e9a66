/* Reading results back: `run --check` (the verdicts recomputed from a result.json's stored
 * numbers) and reports/INDEX.md (one row per result.json). */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "io/json_parse.h"
#include "lab/report.h"

typedef struct {
  const char *text;
  const char *path;
} jctx;

static double jnum(const jctx *c, const qg_jnode *n) {
  if (!n || n->type != QG_JNUM) return NAN;
  if (n->is_int) return (double)n->i;
  return strtod(c->text + n->offset, NULL);
}

static const qg_jnode *jpath(const qg_jnode *n, const char *a, const char *b, const char *d) {
  const char *k[3] = {a, b, d};
  for (int i = 0; i < 3 && k[i] && n; i++) n = n->type == QG_JOBJ ? qg_jobj_get(n, k[i]) : NULL;
  return n;
}

static const char *jstr(const qg_jnode *n) { return n && n->type == QG_JSTR ? n->s : NULL; }

static qg_status load(const char *path, char **text, qg_jdoc *doc, const qg_jnode **root) {
  uint8_t *d;
  size_t len;
  QG_TRY(qg_read_file(path, &d, &len, 1 << 28));
  *text = (char *)d;
  qg_jopts o = {.name = path};
  qg_status s = qg_jparse(*text, len, &o, doc, root);
  if (s) free(d);
  return s;
}

static qg_verdict verdict_of(const char *s) {
  return !s ? (qg_verdict)-1
         : !strcmp(s, "success") ? QG_VERDICT_SUCCESS
         : !strcmp(s, "failure") ? QG_VERDICT_FAILURE
         : !strcmp(s, "inconclusive") ? QG_VERDICT_INCONCLUSIVE
                                     : (qg_verdict)-1;
}

qg_status qg_lab_check(const char *path, int *matches, qg_buf *sum) {
  char *text;
  qg_jdoc doc;
  const qg_jnode *root;
  *matches = 0;
  QG_TRY(load(path, &text, &doc, &root));
  jctx c = {text, path};
  qg_status s = QG_OK;
  const qg_jnode *dec = jpath(root, "decision", NULL, NULL), *arms = jpath(root, "arms", NULL, NULL);
  const char *metric = jstr(jpath(dec, "metric", NULL, NULL)), *expect_s = jstr(jpath(dec, "expect", NULL, NULL));
  double margin = jnum(&c, jpath(dec, "margin", NULL, NULL)), alpha = jnum(&c, jpath(dec, "alpha", NULL, NULL));
  int contest = jstr(jpath(dec, "rule", NULL, NULL)) != NULL;
  if (jnum(&c, jpath(root, "schema_version", NULL, NULL)) != QG_LAB_SCHEMA_VERSION || !metric || !expect_s ||
      !isfinite(margin) || !isfinite(alpha) || !arms || arms->type != QG_JARR) {
    s = qg_fail(QG_ERR_INPUT, "%s: not a quantgolf result.json of schema version %d", path, QG_LAB_SCHEMA_VERSION);
    goto done;
  }
  int expect_all = !strcmp(expect_s, "lower") ? -1 : 1, mismatches = 0;
  /* the compared arms and their seeds */
  int na = 0, ns = -1;
  const qg_jnode *cmp[64];
  int ex[64];
  for (const qg_jnode *a = arms->child; a; a = a->next)
    if (jpath(a, "summary", NULL, NULL) && na < 64) {
      const char *e = jstr(jpath(a, "expect", NULL, NULL));
      ex[na] = e ? (!strcmp(e, "lower") ? -1 : 1) : expect_all;
      cmp[na++] = a;
    }
  qg_verdict arm_v[64];
  int agree_total = -1;
  double pv[64][64], adj[64];
  qg_verdict cv[64][64];
  for (int i = 0; i < na; i++) {
    const qg_jnode *seeds = jpath(cmp[i], "seeds", NULL, NULL);
    int k = 0;
    for (const qg_jnode *e = seeds ? seeds->child : NULL; e && k < 64; e = e->next, k++)
      pv[i][k] = jnum(&c, jpath(e, "vs_baseline", metric, "p_one_sided"));
    if (ns < 0 || k < ns) ns = k;
  }
  if (ns < 1 || na < 1) {
    s = qg_fail(QG_ERR_INPUT, "%s: no compared arms or no seeds", path);
    goto done;
  }
  /* Holm again per seed, then each reproduction's verdict */
  for (int si = 0; si < ns; si++) {
    double p[64];
    for (int i = 0; i < na; i++) p[i] = pv[i][si];
    qg_holm_adjust(p, na, adj);
    for (int i = 0; i < na; i++) {
      const qg_jnode *e = jpath(cmp[i], "seeds", NULL, NULL)->child;
      for (int k = 0; k < si; k++) e = e->next;
      const qg_jnode *d = jpath(e, "vs_baseline", metric, NULL);
      double lo = jnum(&c, jpath(d, "lo", NULL, NULL)), hi = jnum(&c, jpath(d, "hi", NULL, NULL));
      double stored_adj = jnum(&c, jpath(e, "vs_baseline", "p_holm", NULL));
      if (fabs(stored_adj - adj[i]) > 1e-12 * (1 + adj[i])) {
        qg_buf_printf(sum, "arm %s seed %d: stored Holm p %.17g, recomputed %.17g\n", jstr(jpath(cmp[i], "name", NULL, NULL)),
                      si, stored_adj, adj[i]);
        mismatches++;
      }
      cv[i][si] = qg_verdict_one(lo, hi, ex[i], margin, adj[i], alpha);
      if (verdict_of(jstr(jpath(e, "vs_baseline", "verdict", NULL))) != cv[i][si]) {
        qg_buf_printf(sum, "arm %s seed %d: stored verdict %s, recomputed %s\n", jstr(jpath(cmp[i], "name", NULL, NULL)), si,
                      jstr(jpath(e, "vs_baseline", "verdict", NULL)), qg_verdict_name(cv[i][si]));
        mismatches++;
      }
    }
  }
  for (int i = 0; i < na; i++) {
    int agree;
    arm_v[i] = qg_verdict_combine(cv[i], ns, &agree);
    if (contest && arm_v[i] == QG_VERDICT_SUCCESS && ns >= 2) {
      double est[64];
      const qg_jnode *e = jpath(cmp[i], "seeds", NULL, NULL)->child;
      for (int k = 0; k < ns; k++, e = e->next) est[k] = jnum(&c, jpath(e, "vs_baseline", metric, "estimate"));
      double tp = qg_ttest_one_sided(est, ns, ex[i], margin);
      if (!isnan(tp) && tp >= alpha) arm_v[i] = QG_VERDICT_INCONCLUSIVE;
    }
    const char *stored = jstr(jpath(cmp[i], "summary", "verdict", NULL));
    if (verdict_of(stored) != arm_v[i]) {
      qg_buf_printf(sum, "arm %s: stored verdict %s, recomputed %s\n", jstr(jpath(cmp[i], "name", NULL, NULL)),
                    stored ? stored : "(none)", qg_verdict_name(arm_v[i]));
      mismatches++;
    }
  }
  qg_verdict all = qg_verdict_all(arm_v, na);
  agree_total = 0;
  for (int si = 0; si < ns; si++) {
    qg_verdict v[64];
    for (int i = 0; i < na; i++) v[i] = cv[i][si];
    agree_total += qg_verdict_all(v, na) == all;
  }
  const char *stored = jstr(jpath(root, "verdict", "result", NULL));
  if (verdict_of(stored) != all) {
    qg_buf_printf(sum, "experiment: stored verdict %s, recomputed %s\n", stored ? stored : "(none)", qg_verdict_name(all));
    mismatches++;
  }
  if (jnum(&c, jpath(root, "verdict", "reproductions_agree", NULL)) != agree_total) {
    qg_buf_printf(sum, "experiment: stored reproductions %g, recomputed %d\n",
                  jnum(&c, jpath(root, "verdict", "reproductions_agree", NULL)), agree_total);
    mismatches++;
  }
  if (!mismatches)
    qg_buf_printf(sum, "%s: verdict %s, reproductions %d/%d: matches the stored numbers\n", path, qg_verdict_name(all),
                  agree_total, ns);
  *matches = !mismatches;
done:
  qg_jdoc_free(&doc);
  free(text);
  return s;
}

/* ---- INDEX.md ------------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void md_cell(qg_buf *b, const char *s) {
  for (; s && *s; s++)
    if (*s == '|') qg_buf_str(b, "\\|");
    else if (*s == '\n') qg_buf_byte(b, ' ');
    else qg_buf_byte(b, (uint8_t)*s);
}

qg_status qg_lab_write_index(const char *out_dir) {
  DIR *d = opendir(out_dir);
  if (!d) return qg_fail(QG_ERR_IO, "%s: cannot list", out_dir);
  char **ids = NULL;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char p[4400];
    snprintf(p, sizeof p, "%s/%s/result.json", out_dir, e->d_name);
    FILE *f = fopen(p, "rb");
    if (!f) continue;
    fclose(f);
    char **g = realloc(ids, sizeof *g * (size_t)(n + 1));
    if (!g) break;
    ids = g;
    ids[n++] = strdup(e->d_name);
  }
  closedir(d);
  if (n) qsort(ids, (size_t)n, sizeof *ids, cmp_str);
  qg_buf b;
  qg_buf_init(&b);
  qg_buf_printf(&b, "# Experiment reports\n\nOne row per experiment, regenerated by every `quantgolf run`. The headline "
                "is the primary metric's difference (arm − baseline, averaged over seeds) with its block-bootstrap "
                "interval; the verdict is computed, never typed in.\n\n"
                "| id | hypothesis | result | confidence | reproductions | headline | artifact bytes | report |\n"
                "|---|---|---|---:|---:|---|---:|---|\n");
  qg_status s = QG_OK;
  for (int i = 0; i < n && !s; i++) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s/result.json", out_dir, ids[i]);
    char *text;
    qg_jdoc doc;
    const qg_jnode *root;
    if (load(p, &text, &doc, &root)) {
      qg_buf_printf(&b, "| %s | (unreadable result.json: %s) | | | | | | |\n", ids[i], qg_last_error());
      continue;
    }
    jctx c = {text, p};
    const qg_jnode *v = jpath(root, "verdict", NULL, NULL), *hl = jpath(v, "headline", NULL, NULL);
    qg_buf_printf(&b, "| %s | ", ids[i]);
    md_cell(&b, jstr(jpath(root, "hypothesis", NULL, NULL)));
    qg_buf_printf(&b, " | **%s** | %.3f | %g/%g | Δ%s %s = %.4g [%.4g, %.4g] | %.0f | [report](%s/report.md) |\n",
                  jstr(jpath(v, "result", NULL, NULL)) ? jstr(jpath(v, "result", NULL, NULL)) : "?",
                  jnum(&c, jpath(v, "confidence", NULL, NULL)), jnum(&c, jpath(v, "reproductions_agree", NULL, NULL)),
                  jnum(&c, jpath(v, "reproductions", NULL, NULL)), jstr(jpath(hl, "metric", NULL, NULL)),
                  jstr(jpath(hl, "arm", NULL, NULL)), jnum(&c, jpath(hl, "estimate", NULL, NULL)),
                  jnum(&c, jpath(hl, "lo", NULL, NULL)), jnum(&c, jpath(hl, "hi", NULL, NULL)),
                  jnum(&c, jpath(hl, "artifact_bytes", NULL, NULL)), ids[i]);
    qg_jdoc_free(&doc);
    free(text);
  }
  for (int i = 0; i < n; i++) free(ids[i]);
  free(ids);
  char path[4300];
  snprintf(path, sizeof path, "%s/INDEX.md", out_dir);
  if (!s) s = qg_buf_status(&b);
  if (!s) s = qg_write_file_atomic(path, b.p, b.n);
  qg_buf_free(&b);
  return s;
}
