/* quantgolf run: hypothesis files through the experiment runner (lab/) into reports. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "core/util.h"
#include "lab/report.h"
#include "lab/runner.h"

void qg_cmd_run_help(void) {
  printf("usage: quantgolf run experiments/X.yaml|experiments/ [--out reports] [--cache DIR]\n"
         "                     [--device cpu|cuda|auto] [--seeds N] [--force] [--json]\n"
         "       quantgolf run --check reports/ID/result.json\n\n"
         "Runs every arm of the hypothesis file for every seed: (train) -> quantize -> the artifact's\n"
         "real bytes -> one paired pass over the same validation windows against the reference\n"
         "model, keeping per-token KLD, NLL and bytes. Then, for each arm against the baseline, the\n"
         "mean difference of KLD, NLL and BPB with a (1 - alpha) paired block-bootstrap interval\n"
         "(blocks = evaluation windows), a one-sided p-value (Holm-corrected over the arms) and a\n"
         "computed verdict: success, failure or inconclusive, with its confidence and the\n"
         "reproductions that agree.\n\n"
         "Writes OUT/ID/report.md, OUT/ID/result.json, OUT/ID/figures/*.svg and OUT/INDEX.md.\n"
         "A directory runs every *.yaml in it, in name order.\n\n"
         "  --out DIR     reports folder (default: reports)\n"
         "  --cache DIR   artifacts, trained models and per-token records, keyed by a hash of what\n"
         "                produced them (default: OUT/.cache); a re-run reuses them\n"
         "  --device D    overrides the file's device\n"
         "  --seeds N     only the first N seeds of the file\n"
         "  --force       recompute everything\n"
         "  --json        print result.json on stdout\n"
         "  --check F     recompute the verdict of a stored result.json and say whether it matches\n"
         "                (exit 0 when it does, 1 when not)\n\n"
         "The file format: README.md, section \"Experiments\".\n");
}

typedef struct {
  const char *id;
  double last;
} view;

static void on_progress(void *ctx, const qg_lab_progress *p) {
  view *v = ctx;
  char eta[32] = "";
  if (p->eta_s >= 0) snprintf(eta, sizeof eta, ", ETA %d:%02d", (int)p->eta_s / 60, (int)p->eta_s % 60);
  if (*p->arm)
    fprintf(stderr, "run %s: [%d/%d] arm %s seed %llu: %s (%.0f s%s)\n", v->id, p->step, p->steps, p->arm,
            (unsigned long long)p->seed, p->stage, p->elapsed_s, eta);
  else
    fprintf(stderr, "run %s: %s\n", v->id, p->stage);
}

/* The commit of the checkout the command runs in, when there is one. */
static void git_commit(char *out, size_t cap) {
  snprintf(out, cap, "unknown");
  FILE *f = popen("git rev-parse --short=12 HEAD 2>/dev/null", "r");
  if (!f) return;
  char line[64];
  if (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = 0;
    if (*line) snprintf(out, cap, "%s", line);
  }
  if (pclose(f) != 0) snprintf(out, cap, "unknown");
}

static int run_one(const char *path, const char *out, const char *cache, const qg_lab_opts *base, int json,
                   const char *command) {
  qg_lab_hypothesis h;
  qg_status s = qg_lab_hypothesis_load(path, &h);
  if (s) return qg_cli_report("run", s);
  char cache_dir[4096];
  if (cache) snprintf(cache_dir, sizeof cache_dir, "%s", cache);
  else snprintf(cache_dir, sizeof cache_dir, "%s/.cache", out);
  qg_lab_opts o = *base;
  o.cache_dir = cache_dir;
  view v = {h.id, 0};
  o.cb = on_progress, o.cb_ctx = &v;
  qg_lab_result r;
  s = qg_lab_run(&h, &o, &r);
  if (!s) {
    s = qg_lab_write_report(&r, out, command);
    if (!s) s = qg_lab_write_index(out);
    if (!s) {
      const qg_lab_armsum *a = &r.arms[r.headline];
      printf("%s: %s (confidence %.3f, reproductions %d/%d): d%s %s-%s = %.6g [%.6g, %.6g]; %s/%s/report.md%s\n", h.id,
             qg_verdict_name(r.verdict), r.confidence, r.agree, r.n_repro, qg_metric_name(h.metric),
             h.arms[r.headline].name, h.baseline, a->est, a->lo, a->hi, out, h.id,
             r.setup.reused_all ? " (all from the cache)" : "");
      if (json) {
        qg_buf b;
        qg_buf_init(&b);
        if (!qg_lab_result_json(&r, &b)) fwrite(b.p, 1, b.n, stdout);
        qg_buf_free(&b);
      }
    }
    qg_lab_result_free(&r);
  }
  qg_lab_hypothesis_free(&h);
  return s ? qg_cli_report("run", s) : 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int qg_cmd_run(int argc, char **argv) {
  const char *out = "reports", *cache = NULL, *check = NULL, *device = NULL;
  const char *inputs[256];
  int force = 0, json = 0, dev = -1, seeds_n = 0;
  static const char *const devices[] = {"cpu", "cuda", "auto", NULL};
  qg_arg_list in = {inputs, 0, 256};
  const qg_arg args[] = {
      {.name = "--out", .kind = QG_ARG_STR, .dst = &out},
      {.name = "--cache", .kind = QG_ARG_STR, .dst = &cache},
      {.name = "--check", .kind = QG_ARG_STR, .dst = &check},
      {.name = "--device", .kind = QG_ARG_ENUM, .dst = &dev, .choices = devices, .bad = "{opt} {val}: expected {choices}"},
      {.name = "--seeds", .kind = QG_ARG_INT, .dst = &seeds_n, .lo = 1, .hi = 1000, .bad = "{opt} {val}: expected a count >= 1"},
      {.name = "--force", .kind = QG_ARG_FLAG, .dst = &force},
      {.name = "--json", .kind = QG_ARG_FLAG, .dst = &json},
      {0}};
  const qg_args_spec spec = {.cmd = "run", .args = args, .unknown = "unknown or incomplete option '{arg}'", .words = &in,
                             .too_many = "at most 256 hypothesis files or folders ('{arg}')"};
  if (qg_cli_parse(&spec, &argc, argv)) return 2;
  int n_in = in.n;
  long seeds = seeds_n;
  if (dev >= 0) device = devices[dev];
  if (check) {
    if (n_in) return qg_cli_usage_error("run", "--check takes a result.json and nothing else");
    int matches;
    qg_buf b;
    qg_buf_init(&b);
    qg_status s = qg_lab_check(check, &matches, &b);
    if (!s) fwrite(b.p, 1, b.n, stdout);
    qg_buf_free(&b);
    if (s) return qg_cli_report("run", s);
    return matches ? 0 : 1;
  }
  if (!n_in) return qg_cli_usage_error("run", "give a hypothesis file or a folder of them");
  /* every file first (a folder's *.yaml in name order), each parsed before any runs */
  char *files[512];
  int nf = 0;
  for (int i = 0; i < n_in; i++) {
    struct stat sb;
    if (stat(inputs[i], &sb)) return qg_cli_usage_error("run", "%s: no such file or folder", inputs[i]);
    if (!S_ISDIR(sb.st_mode)) {
      if (nf < 512) files[nf++] = strdup(inputs[i]);
      continue;
    }
    DIR *d = opendir(inputs[i]);
    struct dirent *e;
    int first = nf;
    while (d && (e = readdir(d)) && nf < 512)
      if (qg_ends_with(e->d_name, ".yaml") && e->d_name[0] != '.') {
        size_t n = strlen(inputs[i]) + strlen(e->d_name) + 2;
        files[nf] = malloc(n);
        snprintf(files[nf++], n, "%s/%s", inputs[i], e->d_name);
      }
    if (d) closedir(d);
    qsort(files + first, (size_t)(nf - first), sizeof *files, cmp_str);
  }
  int rc = 0;
  for (int i = 0; i < nf && !rc; i++) {
    qg_lab_hypothesis h;
    qg_status s = qg_lab_hypothesis_load(files[i], &h);
    if (s) rc = qg_cli_report("run", s);
    else qg_lab_hypothesis_free(&h);
  }
  char commit[64];
  git_commit(commit, sizeof commit);
  qg_lab_opts base = {.device = device, .max_seeds = (int)seeds, .force = force, .git_commit = commit};
  for (int i = 0; i < nf && !rc; i++) {
    char command[8192];
    snprintf(command, sizeof command, "quantgolf run %s%s%s%s%s", files[i], device ? " --device " : "",
             device ? device : "", strcmp(out, "reports") ? " --out " : "", strcmp(out, "reports") ? out : "");
    rc = run_one(files[i], out, cache, &base, json, command);
  }
  for (int i = 0; i < nf; i++) free(files[i]);
  return rc;
}
