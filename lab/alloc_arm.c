/* The runner's allocate arms (see lab/alloc_arm.h). */
#include "lab/alloc_arm.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/sha256.h"
#include "core/util.h"
#include "lab/allocate_run.h"

/* The arm's artifact compressor (arm, else experiment; both were checked when read). */
static qg_compressor arm_comp(const qg_lab_hypothesis *h, const qg_lab_arm *a) {
  qg_compressor c = QG_COMP_DEFAULT;
  (void)qg_compressor_from_name(a->compress ? a->compress : h->compress, &c);
  return c;
}

/* The arm as `quantgolf allocate` options: exact (1-byte) solve, repair on (the real
 * artifact is quantized once, not evaluated, and an over-budget choice re-solved), the
 * table's bytes those of the compressor the arm's artifact is written with. */
static qg_allocate_opts opts_of(const qg_lab_hypothesis *h, const qg_lab_arm *a) {
  qg_allocate_opts o = {.model = h->model, .sensitivity = a->alloc_sensitivity, .budget = a->alloc_budget,
                        .candidates = a->alloc_candidates, .granularity = 1, .repair = 1,
                        .base = a->alloc_base ? a->alloc_base : "*: rowwise bits=8", .groups = a->alloc_groups,
                        .val = h->val, .tokenizer = h->tokenizer, .calib = h->calib, .seq_len = h->seq_len,
                        .max_tokens = h->max_tokens, .calib_seqs = h->calib_seqs, .calib_len = h->calib_len,
                        .code_bytes = h->budget_code_bytes, .comp = arm_comp(h, a)};
  return o;
}

qg_status qg_lab_alloc_check(const qg_lab_hypothesis *h, const qg_lab_arm *a) {
  qg_allocate_opts o = opts_of(h, a);
  return qg_allocate_check(&o);
}

/* Every input that determines the choice, one per line, hashed. */
static qg_status key_of(const qg_lab_hypothesis *h, const qg_lab_arm *a, const qg_lab_alloc_ids *ids, char key[17]) {
  qg_buf b;
  qg_buf_init(&b);
  qg_buf_printf(&b, "quantgolf %s allocate\nmodel %s\nbudget %lld\ngranularity 1\nrepair learnt-costs\n", QG_VERSION, ids->model_sha,
                (long long)a->alloc_budget);
  if (h->budget_code_bytes) qg_buf_printf(&b, "code bytes %lld\n", (long long)h->budget_code_bytes);
  qg_buf_printf(&b, "compress %s\n", qg_compressor_name(arm_comp(h, a)));
  qg_buf_printf(&b, "candidates %s\n", a->alloc_candidates ? a->alloc_candidates : "(the table's)");
  qg_status s = QG_OK;
  if (a->alloc_sensitivity) {
    char hex[65];
    if (!(s = qg_sha256_file(a->alloc_sensitivity, hex))) qg_buf_printf(&b, "table sha256:%s\n", hex);
  } else {
    qg_buf_printf(&b, "in place\nbase %s\ngroups %s\ntokenizer %s\nval %s\nseq_len %d\nmax_tokens %lld\n",
                  a->alloc_base ? a->alloc_base : "*: rowwise bits=8", a->alloc_groups ? a->alloc_groups : "roles",
                  ids->tokenizer_sha, ids->val_sha, h->seq_len, (long long)h->max_tokens);
    if (h->calib) qg_buf_printf(&b, "calib %s seqs %d len %d\n", ids->calib_sha, h->calib_seqs, h->calib_len);
  }
  if (!s) s = qg_buf_status(&b);
  if (!s) {
    char hex[65];
    qg_sha256_buf(b.p, b.n, hex);
    memcpy(key, hex, 16);
    key[16] = 0;
  }
  qg_buf_free(&b);
  return s;
}

static qg_status write_cache(const char *path, const qg_lab_alloc *r) {
  if (strpbrk(r->spec, "\t\n")) return qg_fail(QG_ERR_INTERNAL, "allocate: the chosen spec has a tab or a newline");
  qg_buf b;
  qg_buf_init(&b);
  qg_buf_printf(&b, "spec\t%s\ncontest_passthrough\t%d\npredicted_kld\t%.17g\npredicted_bytes\t%lld\nrepair_rounds\t%d\n"
                "measured_bytes\t%lld\nmeasured_in_place\t%d\nseconds\t%.17g\n", r->spec, r->contest_passthrough,
                r->predicted_kld, (long long)r->predicted_bytes, r->repair_rounds, (long long)r->measured_bytes,
                r->measured_in_place, r->seconds);
  qg_status s = qg_buf_status(&b);
  if (!s) s = qg_write_file_atomic(path, b.p, b.n);
  qg_buf_free(&b);
  return s;
}

/* A cache file, strictly: every field once, nothing else (a damaged file is recomputed). */
static int read_cache(const char *path, qg_lab_alloc *r) {
  uint8_t *d;
  size_t n;
  if (qg_read_file(path, &d, &n, 1 << 20)) return 0;
  char *text = (char *)d;
  int seen = 0, ok = n > 0 && text[n - 1] == '\n' && !memchr(text, 0, n);
  for (char *line = text; ok && line < text + n;) {
    char *nl = memchr(line, '\n', (size_t)(text + n - line));
    *nl = 0;
    char *tab = strchr(line, '\t');
    if (!tab) {
      ok = 0;
      break;
    }
    *tab = 0;
    const char *k = line, *v = tab + 1;
    char *end = NULL;
    static const char *const keys[] = {"spec", "contest_passthrough", "predicted_kld", "predicted_bytes",
                                       "repair_rounds", "measured_bytes", "measured_in_place", "seconds"};
    int i = 0;
    while (i < 8 && strcmp(k, keys[i])) i++;
    if (i == 8 || (seen & (1 << i))) ok = 0;
    seen |= 1 << i;
    if (ok) switch (i) {
        case 0: ok = *v && (r->spec = qg_strdup(v)) != NULL; end = (char *)""; break;
        case 1: r->contest_passthrough = (int)strtol(v, &end, 10); break;
        case 2: r->predicted_kld = strtod(v, &end); break;
        case 3: r->predicted_bytes = strtoll(v, &end, 10); break;
        case 4: r->repair_rounds = (int)strtol(v, &end, 10); break;
        case 5: r->measured_bytes = strtoll(v, &end, 10); break;
        case 6: r->measured_in_place = (int)strtol(v, &end, 10); break;
        default: r->seconds = strtod(v, &end); break;
      }
    if (ok && (end == v || *end)) ok = 0;
    line = nl + 1;
  }
  free(d);
  if (!ok || seen != 0xff) {
    qg_lab_alloc_free(r);
    return 0;
  }
  return 1;
}

qg_status qg_lab_alloc_resolve(const qg_lab_hypothesis *h, const qg_lab_arm *a, const qg_lab_alloc_ids *ids,
                               const char *cache_dir, int force, qg_sens_progress cb, void *cb_ctx,
                               qg_lab_alloc *out) {
  memset(out, 0, sizeof *out);
  char key[17], dir[4200], path[4300];
  QG_TRY(key_of(h, a, ids, key));
  snprintf(dir, sizeof dir, "%s/alloc", cache_dir);
  snprintf(path, sizeof path, "%s/%s.tsv", dir, key);
  if (!force && read_cache(path, out)) {
    out->reused = 1;
    return QG_OK;
  }
  qg_allocate_opts o = opts_of(h, a);
  o.progress = cb, o.progress_ctx = cb_ctx;
  qg_allocate_result r;
  QG_TRY(qg_allocate_run(&o, &r));
  out->spec = r.spec_inline;
  r.spec_inline = NULL;
  out->contest_passthrough = r.contest_passthrough;
  out->predicted_kld = r.predicted;
  out->predicted_bytes = r.sol.best.bytes;
  out->repair_rounds = r.repair.rounds;
  out->measured_bytes = r.measured_bytes;
  out->measured_in_place = r.measured_in_place;
  out->seconds = r.seconds;
  qg_allocate_result_free(&r);
  qg_status s = qg_mkdir_p(dir);
  if (!s) s = write_cache(path, out);
  if (s) qg_lab_alloc_free(out);
  return s;
}

void qg_lab_alloc_free(qg_lab_alloc *a) {
  free(a->spec);
  memset(a, 0, sizeof *a);
}
