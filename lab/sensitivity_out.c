/* Sensitivity output (lab/sensitivity.h): Spearman, sensitivity.json, the bar chart and
 * the ranked table. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/json.h"
#include "lab/sensitivity.h"
#include "lab/svg.h"

typedef struct {
  double v;
  int i;
} ranked;

static int cmp_ranked(const void *a, const void *b) {
  double x = ((const ranked *)a)->v, y = ((const ranked *)b)->v;
  return x < y ? -1 : x > y;
}

/* Average ranks (1-based) of x; ties share the mean of their positions. */
static int ranks(const double *x, int n, double *out) {
  ranked *r = malloc(sizeof *r * (size_t)n);
  if (!r) return -1;
  for (int i = 0; i < n; i++) r[i].v = x[i], r[i].i = i;
  qsort(r, (size_t)n, sizeof *r, cmp_ranked);
  for (int a = 0; a < n;) {
    int b = a;
    while (b + 1 < n && r[b + 1].v == r[a].v) b++;
    for (int k = a; k <= b; k++) out[r[k].i] = (a + b) / 2.0 + 1;
    a = b + 1;
  }
  free(r);
  return 0;
}

double qg_spearman(const double *a, const double *b, int n) {
  if (n < 2) return NAN;
  for (int i = 0; i < n; i++)
    if (!isfinite(a[i]) || !isfinite(b[i])) return NAN;
  double *ra = malloc(sizeof *ra * (size_t)n), *rb = malloc(sizeof *rb * (size_t)n);
  double rho = NAN;
  if (ra && rb && !ranks(a, n, ra) && !ranks(b, n, rb)) {
    double ma = 0, mb = 0;
    for (int i = 0; i < n; i++) ma += ra[i], mb += rb[i];
    ma /= n, mb /= n;
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < n; i++) {
      sab += (ra[i] - ma) * (rb[i] - mb);
      saa += (ra[i] - ma) * (ra[i] - ma);
      sbb += (rb[i] - mb) * (rb[i] - mb);
    }
    rho = saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN;
  }
  free(ra), free(rb);
  return rho;
}

static void num_or_null(qg_json *j, double v) {
  if (isfinite(v)) qg_json_num(j, v);
  else qg_json_null(j);
}

static void pair(qg_json *j, const char *key, const double v[2]) {
  qg_json_key(j, key);
  qg_json_arr_begin(j);
  num_or_null(j, v[0]), num_or_null(j, v[1]);
  qg_json_arr_end(j);
}

/* An estimator may prune candidates only where it ranks like the measurement. */
static const char *prune_word(double rho) { return isfinite(rho) && rho >= 0.8 ? "yes" : "no"; }

qg_status qg_sens_json(const qg_sens_opts *o, const qg_sens_result *r, qg_buf *out) {
  qg_json j;
  qg_json_init(&j, out, 1);
  qg_json_obj_begin(&j);
  qg_json_key(&j, "schema_version"), qg_json_int(&j, 1);
  qg_json_key(&j, "command"), qg_json_str(&j, "sensitivity");
  qg_json_key(&j, "quantgolf_version"), qg_json_str(&j, QG_VERSION);
  qg_json_key(&j, "model");
  qg_json_obj_begin(&j);
  qg_json_key(&j, "path"), qg_json_str(&j, o->model);
  qg_json_key(&j, "sha256"), qg_json_str(&j, r->model_sha256);
  qg_json_obj_end(&j);
  qg_json_key(&j, "tokens"), qg_json_int(&j, r->tokens);
  qg_json_key(&j, "windows"), qg_json_int(&j, r->windows);
  qg_json_key(&j, "metric"), qg_json_str(&j, "kld");
  qg_json_key(&j, "base_spec"), qg_json_str(&j, o->base);
  qg_json_key(&j, "base_kld"), qg_json_num(&j, r->base_kld);
  qg_json_key(&j, "base_nll"), qg_json_num(&j, r->base_nll);
  qg_json_key(&j, "base_artifact_bytes"), qg_json_int(&j, r->base_artifact_bytes);
  qg_json_key(&j, "fixed_bytes"), qg_json_int(&j, r->fixed_bytes);
  qg_json_key(&j, "compressor"), qg_json_str(&j, qg_compressor_name(o->comp ? o->comp : QG_COMP_DEFAULT));
  qg_json_key(&j, "groups");
  qg_json_arr_begin(&j);
  for (int g = 0; g < r->ng; g++) {
    qg_json_obj_begin(&j);
    qg_json_key(&j, "name"), qg_json_str(&j, r->g[g].name);
    qg_json_key(&j, "tensors");
    qg_json_arr_begin(&j);
    for (int t = 0; t < r->g[g].n; t++) qg_json_str(&j, r->g[g].tensors[t]);
    qg_json_arr_end(&j);
    qg_json_obj_end(&j);
  }
  qg_json_arr_end(&j);
  qg_json_key(&j, "candidates");
  qg_json_arr_begin(&j);
  for (int c = 0; c < r->nc; c++) qg_json_str(&j, r->cand[c]);
  qg_json_arr_end(&j);
  qg_json_key(&j, "cells");
  qg_json_arr_begin(&j);
  for (int i = 0; i < r->ng * r->nc; i++) {
    const qg_sens_cell *c = &r->cells[i];
    qg_json_obj_begin(&j);
    qg_json_key(&j, "group"), qg_json_str(&j, r->g[c->group].name);
    qg_json_key(&j, "candidate"), qg_json_str(&j, r->cand[c->cand]);
    qg_json_key(&j, "delta_kld"), qg_json_num(&j, c->delta_kld);
    qg_json_key(&j, "ci95");
    qg_json_arr_begin(&j);
    qg_json_num(&j, c->lo), qg_json_num(&j, c->hi);
    qg_json_arr_end(&j);
    qg_json_key(&j, "delta_nll"), qg_json_num(&j, c->delta_nll);
    qg_json_key(&j, "bytes"), qg_json_int(&j, c->bytes);
    qg_json_key(&j, "base_bytes"), qg_json_int(&j, c->base_bytes);
    qg_json_key(&j, "bytes_saved"), qg_json_int(&j, c->base_bytes - c->bytes);
    qg_json_key(&j, "roi"), num_or_null(&j, c->roi);
    /* extra keys beside the fixed schema */
    qg_json_key(&j, "kld_mean"), qg_json_num(&j, c->kld);
    qg_json_key(&j, "nll_ci95");
    qg_json_arr_begin(&j);
    qg_json_num(&j, c->nll_lo), qg_json_num(&j, c->nll_hi);
    qg_json_arr_end(&j);
    qg_json_key(&j, "est_output"), num_or_null(&j, c->est_output);
    qg_json_key(&j, "est_trace"), num_or_null(&j, c->est_trace);
    if (r->loss_est) {
      pair(&j, "est_fisher", c->est_fisher);
      pair(&j, "est_hutchinson", c->est_hutch);
      pair(&j, "est_hutchinson_se", c->est_hutch_se);
    }
    qg_json_obj_end(&j);
  }
  qg_json_arr_end(&j);
  qg_json_key(&j, "interval"), qg_json_str(&j, "95% percentile, paired block bootstrap over evaluation windows, "
                                            "2000 resamples, seed 1");
  qg_json_key(&j, "bytes_note"),
      qg_json_str(&j, "per tensor: a one-tensor .qgz (same compressor and code layout as the base artifact) "
                      "minus its 32-byte header; fixed_bytes = base_artifact_bytes - sum of the groups' base_bytes");
  qg_json_key(&j, "tensor_bytes_sum"), qg_json_int(&j, r->tensor_bytes_sum);
  qg_json_key(&j, "estimators");
  qg_json_obj_begin(&j);
  qg_json_key(&j, "output_error_spearman"), num_or_null(&j, r->rho_output);
  qg_json_key(&j, "output_error_prunes"), qg_json_str(&j, prune_word(r->rho_output));
  qg_json_key(&j, "trace_spearman"), num_or_null(&j, r->rho_trace);
  qg_json_key(&j, "trace_prunes"), qg_json_str(&j, prune_word(r->rho_trace));
  qg_json_key(&j, "stand_ins_note"),
      qg_json_str(&j, "output_error and trace are layer-local stand-ins (calibration input Hessians, no loss "
                      "gradient); fisher and hutchinson use the float model's loss gradients");
  if (r->loss_est) {
    qg_json_key(&j, "output_error_stability_ab"), num_or_null(&j, r->stab_output);
    qg_json_key(&j, "trace_stability_ab"), num_or_null(&j, r->stab_trace);
    qg_json_key(&j, "calibration_subsets");
    qg_json_obj_begin(&j);
    qg_json_key(&j, "seqs_each"), qg_json_int(&j, r->est_seqs);
    qg_json_key(&j, "tokens_per_seq"), qg_json_int(&j, r->est_len);
    qg_json_key(&j, "note"), qg_json_str(&j, "A and B: 2 x seqs_each non-overlapping windows of the calibration "
                                             "shards, alternately assigned; a draw separate from GPTQ's");
    qg_json_obj_end(&j);
    qg_json_key(&j, "fisher");
    qg_json_obj_begin(&j);
    qg_json_key(&j, "formula"), qg_json_str(&j, "(1/N) sum_t,i (g_ti dY_ti)^2, g = d(sum NLL)/dY, dY = X (Q(W)-W)^T, "
                                                "candidate minus base, summed over the group");
    pair(&j, "spearman_ab", r->rho_fisher);
    qg_json_key(&j, "stability_ab"), num_or_null(&j, r->stab_fisher);
    qg_json_key(&j, "prunes"), qg_json_str(&j, prune_word(r->rho_fisher[0]));
    qg_json_obj_end(&j);
    qg_json_key(&j, "hutchinson");
    qg_json_obj_begin(&j);
    qg_json_key(&j, "formula"), qg_json_str(&j, "tr(H_WW)/n x (||Q(W)-W||^2 - ||base-W||^2), summed over the group; "
                                                "H of the mean token NLL");
    qg_json_key(&j, "probes"), qg_json_int(&j, r->probes);
    qg_json_key(&j, "probe_seqs"), qg_json_int(&j, r->probe_seqs);
    qg_json_key(&j, "eps_rel"), qg_json_num(&j, r->probe_eps_rel);
    qg_json_key(&j, "method"), qg_json_str(&j, "Rademacher probes over all group tensors at once, Hv by central "
                                               "differences of gradients at eps = eps_rel x rms(probed weights); "
                                               "est_hutchinson_se = sd over probes / sqrt(probes)");
    pair(&j, "spearman_ab", r->rho_hutch);
    qg_json_key(&j, "stability_ab"), num_or_null(&j, r->stab_hutch);
    qg_json_key(&j, "prunes"), qg_json_str(&j, prune_word(r->rho_hutch[0]));
    qg_json_obj_end(&j);
  }
  qg_json_obj_end(&j);
  qg_json_key(&j, "measured_calibration_stability"),
      qg_json_str(&j, "not measured: the measured deltas depend on calibration only through GPTQ's Hessians");
  qg_json_key(&j, "split_half_spearman"), num_or_null(&j, r->rho_split);
  qg_json_key(&j, "calibrated"), qg_json_bool(&j, r->calibrated);
  qg_json_key(&j, "stage_seconds");
  qg_json_obj_begin(&j);
  qg_json_key(&j, "calibrate"), qg_json_num(&j, r->seconds_calib);
  qg_json_key(&j, "quantize"), qg_json_num(&j, r->seconds_quant);
  qg_json_key(&j, "evaluate"), qg_json_num(&j, r->seconds_eval);
  qg_json_key(&j, "estimation"), qg_json_num(&j, r->seconds_est);
  qg_json_key(&j, "total"), qg_json_num(&j, r->seconds_total);
  qg_json_obj_end(&j);
  qg_json_obj_end(&j);
  qg_buf_byte(out, '\n');
  return qg_buf_status(out);
}

qg_status qg_sens_svg(const qg_sens_result *r, qg_buf *out) {
  int ng = r->ng, nc = r->nc;
  const char **gn = malloc(sizeof *gn * (size_t)ng), **cn = malloc(sizeof *cn * (size_t)nc);
  double *v = malloc(sizeof *v * (size_t)(ng * nc)), *e = malloc(sizeof *e * (size_t)(ng * nc));
  qg_status s = gn && cn && v && e ? QG_OK : qg_fail(QG_ERR_NOMEM, "out of memory");
  if (!s) {
    for (int g = 0; g < ng; g++) gn[g] = r->g[g].name;
    for (int c = 0; c < nc; c++) cn[c] = r->cand[c];
    for (int i = 0; i < ng * nc; i++) {
      v[i] = r->cells[i].delta_kld;
      /* symmetric whisker: the larger half-width of the percentile interval */
      double a = r->cells[i].delta_kld - r->cells[i].lo, b = r->cells[i].hi - r->cells[i].delta_kld;
      e[i] = a > b ? a : b;
    }
    qg_svg_axes ax = {.title = "KLD added when one group moves from the base to a candidate",
                      .x_label = "delta KLD (nats/token), 95% block-bootstrap whiskers",
                      .y_label = "group", .vline_x = NAN, .hline_y = NAN};
    s = qg_svg_bars(out, &ax, gn, ng, cn, nc, v, e);
  }
  free(gn), free(cn), free(v), free(e);
  return s;
}

static int cmp_roi(const void *a, const void *b) {
  const qg_sens_cell *x = *(const qg_sens_cell *const *)a, *y = *(const qg_sens_cell *const *)b;
  int fx = isfinite(x->roi), fy = isfinite(y->roi);
  if (fx != fy) return fy - fx;
  if (fx && x->roi != y->roi) return x->roi > y->roi ? -1 : 1;
  return x->delta_kld < y->delta_kld ? -1 : x->delta_kld > y->delta_kld;
}

static const char *prune_line(double rho) {
  return isfinite(rho) && rho >= 0.8 ? "rho >= 0.8: may prune candidates" : "below 0.8: not used to prune";
}

void qg_sens_table(const qg_sens_result *r, qg_buf *b) {
  int n = r->ng * r->nc;
  const qg_sens_cell **p = malloc(sizeof *p * (size_t)(n ? n : 1));
  if (!p) return;
  for (int i = 0; i < n; i++) p[i] = &r->cells[i];
  qsort(p, (size_t)n, sizeof *p, cmp_roi);
  qg_buf_printf(b, "base KLD %.6g, NLL %.6g over %lld tokens (%lld windows); base artifact %lld bytes, fixed %lld\n",
                r->base_kld, r->base_nll, (long long)r->tokens, (long long)r->windows,
                (long long)r->base_artifact_bytes, (long long)r->fixed_bytes);
  qg_buf_printf(b, "%4s  %-12s %-22s %12s %26s %12s %12s %12s %14s\n", "rank", "group", "candidate", "dKLD",
                "95% CI (block bootstrap)", "dNLL", "bytes", "saved", "ROI B/nat");
  for (int i = 0; i < n; i++) {
    const qg_sens_cell *c = p[i];
    char roi[32];
    if (isfinite(c->roi)) snprintf(roi, sizeof roi, "%.4g", c->roi);
    else snprintf(roi, sizeof roi, "-");
    qg_buf_printf(b, "%4d  %-12s %-22s %12.5g [%11.5g, %11.5g] %12.5g %12lld %12lld %14s\n", i + 1,
                  r->g[c->group].name, r->cand[c->cand], c->delta_kld, c->lo, c->hi, c->delta_nll,
                  (long long)c->bytes, (long long)(c->base_bytes - c->bytes), roi);
  }
  free(p);
  if (r->calibrated) {
    qg_buf_printf(b, "layer-local stand-ins (Spearman with measured dKLD over %d cells): output error %.3f (%s), "
                  "input-Hessian trace x weight error %.3f (%s)\n", n, r->rho_output,
                  isfinite(r->rho_output) && r->rho_output >= 0.8 ? "good enough to prune candidates"
                                                                  : "below 0.8: not used to prune",
                  r->rho_trace,
                  isfinite(r->rho_trace) && r->rho_trace >= 0.8 ? "good enough to prune candidates"
                                                                : "below 0.8: not used to prune");
    if (r->loss_est) {
      qg_buf_printf(b, "loss-based estimators on calibration subsets A | B (%d x %d tokens each; Spearman with "
                    "measured dKLD; stability = Spearman A vs B):\n", r->est_seqs, r->est_len);
      qg_buf_printf(b, "  Fisher sum (g dY)^2          %.3f | %.3f, stability %.3f (%s)\n", r->rho_fisher[0],
                    r->rho_fisher[1], r->stab_fisher, prune_line(r->rho_fisher[0]));
      qg_buf_printf(b, "  Hutchinson tr(H)/n ||dW||^2  %.3f | %.3f, stability %.3f (%s; %d probes on %d seqs)\n",
                    r->rho_hutch[0], r->rho_hutch[1], r->stab_hutch, prune_line(r->rho_hutch[0]), r->probes,
                    r->probe_seqs);
      qg_buf_printf(b, "  stand-ins' stability A vs B: output error %.3f, input-Hessian trace %.3f\n", r->stab_output,
                    r->stab_trace);
    }
  } else {
    qg_buf_printf(b, "estimators: need calibration Hessians (--calib); none computed, none used to prune\n");
  }
  qg_buf_printf(b, "split-half stability (even vs odd windows, Spearman of dKLD over cells): %.3f\n", r->rho_split);
}

qg_status qg_sens_write(const qg_sens_opts *o, const qg_sens_result *r, const char *dir) {
  QG_TRY(qg_mkdir_p(dir));
  char path[4200];
  qg_buf b;
  qg_buf_init(&b);
  qg_status s = qg_sens_json(o, r, &b);
  snprintf(path, sizeof path, "%s/sensitivity.json", dir);
  if (!s) s = qg_write_file_atomic(path, b.p, b.n);
  qg_buf_free(&b);
  if (s) return s;
  qg_buf_init(&b);
  s = qg_sens_svg(r, &b);
  snprintf(path, sizeof path, "%s/sensitivity.svg", dir);
  if (!s) s = qg_buf_status(&b);
  if (!s) s = qg_write_file_atomic(path, b.p, b.n);
  qg_buf_free(&b);
  return s;
}
