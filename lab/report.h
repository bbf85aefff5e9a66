/* Experiment reports: reports/<id>/report.md (for GitHub), result.json (everything,
 * machine-readable, schema_version 1), figures/NAME.svg, and reports/INDEX.md over every
 * result.json present. Every file is written atomically; a report is never half-written. */
#ifndef QG_LAB_REPORT_H
#define QG_LAB_REPORT_H

#include "core/util.h"
#include "lab/runner.h"

#define QG_LAB_SCHEMA_VERSION 1

/* result.json into out. */
qg_status qg_lab_result_json(const qg_lab_result *r, qg_buf *out);
/* report.md into out. */
qg_status qg_lab_report_md(const qg_lab_result *r, const char *command, qg_buf *out);
/* reports/<id>/ (report.md, result.json, figures/) under out_dir; command is the line
 * that reproduces it. */
qg_status qg_lab_write_report(const qg_lab_result *r, const char *out_dir, const char *command);
/* reports/INDEX.md from every out_dir/<id>/result.json. */
qg_status qg_lab_write_index(const char *out_dir);

/* Recomputes the verdicts of a result.json from its stored per-seed intervals and p-values
 * (Holm again from the one-sided p's); *matches = 1 when every stored verdict agrees.
 * summary gets one line per disagreement, or one line saying it matches. */
qg_status qg_lab_check(const char *result_json, int *matches, qg_buf *summary);

#endif
