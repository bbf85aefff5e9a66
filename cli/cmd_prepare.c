/* quantgolf prepare: documents to contest token shards. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/commands.h"
#include "io/shard_manifest.h"
#include "io/spm.h"
#include "tok/prepare.h"

/* cli/cmd_encode.c */
int qg_cli_load_tokenizer(const char *cmd, const char *path, const char *normalizer_from, qg_tok *t);
void qg_cli_tokenizer_note(const char *cmd, const char *path, const char *normalizer_from, int specs_assumed);

void qg_cmd_prepare_help(void) {
  printf("usage: quantgolf prepare --tokenizer T.model|T.vocab --input FILE [--input FILE ...] --out DIR\n"
         "                         [--name fineweb] [--val-docs N] [--shard-tokens N] [--threads N]\n"
         "                         [--normalizer-from M.model]\n\n"
         "Tokenizes documents into contest token shards, laid out as the contest's\n"
         "download_hf_docs_and_tokenize.py does: each document is BOS + its tokens; the first\n"
         "N documents (--val-docs, default 50000) go to DIR/{name}_val_000000.bin, ..., the rest\n"
         "to DIR/{name}_train_000000.bin, ...; every shard but the last of its split holds\n"
         "--shard-tokens tokens (default 100000000).\n\n"
         "Inputs: plain text, documents separated by blank lines; or JSONL (.jsonl/.json), one\n"
         "object per line with a \"text\" string. Encodes with --threads threads (default 2);\n"
         "progress on stderr; shards appear only when everything succeeded.\n\n"
         "Also writes DIR/{name}_tokenizer.json (the tokenizer's path, SHA-256, piece count and\n"
         "a hash of its pieces): eval, kld and train refuse another tokenizer for these shards\n"
         "(--allow-tokenizer-mismatch overrides), since bytes per token come from the tokenizer.\n"
         "Per split it reports the documents' text bytes and the bytes the contest's tables\n"
         "count (val_bpb's denominator); they differ because the normalizer rewrites text\n"
         "(whitespace runs, NFKC) and the dummy-prefix space after BOS is not counted.\n");
}

typedef struct {
  struct timespec t0;
  time_t last;
  int shown;
} prog;

static double now_s(const struct timespec *t0) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)(t.tv_sec - t0->tv_sec) + 1e-9 * (double)(t.tv_nsec - t0->tv_nsec);
}

static void progress(void *user, int64_t docs, int64_t done, int64_t total) {
  prog *p = user;
  time_t now = time(NULL);
  if (now == p->last && done < total) return;
  p->last = now;
  p->shown = 1;
  double el = now_s(&p->t0), mbs = el > 0 ? (double)done / 1e6 / el : 0;
  double eta = mbs > 0 ? (double)(total - done) / 1e6 / mbs : 0;
  fprintf(stderr, "\rquantgolf prepare: %lld documents, %.1f / %.1f MB, %.2f MB/s, ETA %.0f s   ",
          (long long)docs, (double)done / 1e6, (double)total / 1e6, mbs, eta);
}

/* The bytes the contest's tables count over a split's written shards, as eval sums them
 * over the whole stream (every token after the first, with its predecessor): val_bpb's
 * denominator, which differs from the documents' text bytes (see README, prepare). */
static qg_status lut_bytes(const char *dir, const char *name, const char *split, const qg_spm *spm, int64_t *out) {
  *out = 0;
  char glob[4200];
  snprintf(glob, sizeof glob, "%s/%s_%s_*.bin", dir, name, split);
  qg_shards sh;
  QG_TRY(qg_shards_open(glob, &sh));
  qg_spm_luts l;
  qg_status s = qg_spm_luts_init(&l, spm, spm->n_pieces);
  int have = !s, prev = -1;
  for (int i = 0; !s && i < sh.n_files; i++) {
    const uint16_t *t = (const uint16_t *)sh.files[i].tokens;
    int64_t n = sh.files[i].count, b = 0;
    if (n == 0) continue;
    if (prev >= 0 && t[0] < l.size) *out += qg_spm_token_bytes(&l, prev, t[0]);
    if (!(s = qg_spm_count_bytes(&l, t, (size_t)n, &b))) *out += b;
    prev = t[n - 1] < l.size ? t[n - 1] : -1;
  }
  if (have) qg_spm_luts_free(&l);
  qg_shards_close(&sh);
  return s;
}

static void summary(const char *split, const qg_tok_split_stats *s, int64_t lut) {
  fprintf(stderr, "quantgolf prepare: %-5s %lld documents, %lld tokens (BOS included), %lld text "
          "bytes (%.3f bytes/token), %lld bytes by the contest's tables (val_bpb's count), %d shard%s\n", split,
          (long long)s->docs, (long long)s->tokens, (long long)s->text_bytes,
          s->tokens ? (double)s->text_bytes / (double)s->tokens : 0.0, (long long)lut, s->shards,
          s->shards == 1 ? "" : "s");
}

int qg_cmd_prepare(int argc, char **argv) {
  qg_tok_prepare_opts o;
  qg_tok_prepare_defaults(&o);
  const char *tokp = NULL, *nfrom = NULL;
  const char **inputs = calloc((size_t)argc, sizeof *inputs);
  if (!inputs) return qg_cli_report("prepare", qg_fail(QG_ERR_NOMEM, "out of memory"));
  qg_arg_list in = {inputs, 0, argc};
  /* each number says its own range, so a bad value is named, not just "invalid" */
#define RANGE(nm, field, l, h)                                                                        \
  {.name = nm, .kind = QG_ARG_I64, .dst = &field, .lo = l, .hi = h, .missing = "{opt} needs a value", \
   .bad = "{opt} {val}: expected an integer in [{lo}, {hi}]"}
  const qg_arg args[] = {
      {.name = "--tokenizer", .kind = QG_ARG_STR, .dst = &tokp},
      {.name = "--normalizer-from", .kind = QG_ARG_STR, .dst = &nfrom},
      {.name = "--input", .kind = QG_ARG_LIST, .dst = &in},
      {.name = "--out", .kind = QG_ARG_STR, .dst = &o.out_dir},
      {.name = "--name", .kind = QG_ARG_STR, .dst = &o.name},
      {.name = "--val-docs", .kind = QG_ARG_I64, .dst = &o.val_docs, .lo = 0, .hi = INT64_MAX,
       .missing = "{opt} needs a value", .bad = "{opt} {val}: expected a non-negative integer"},
      RANGE("--shard-tokens", o.shard_tokens, 1, INT32_MAX),
      {.name = "--threads", .kind = QG_ARG_INT, .dst = &o.threads, .lo = 1, .hi = 64, .missing = "{opt} needs a value",
       .bad = "{opt} {val}: expected an integer in [{lo}, {hi}]"},
      {0}};
#undef RANGE
  const qg_args_spec spec = {.cmd = "prepare", .args = args, .flags = QG_ARGS_GLOB_HINT,
                             .unknown = "unexpected or invalid argument '{arg}'"};
  int rc = qg_cli_parse(&spec, &argc, argv);
  int n_in = in.n;
  if (!rc && (!tokp || !n_in || !o.out_dir))
    rc = qg_cli_usage_error("prepare", "--tokenizer, --input and --out are required");
  if (!rc && (!*o.name || strchr(o.name, '/')))
    rc = qg_cli_usage_error("prepare", "--name must be a plain file-name prefix");
  if (rc) {
    free(inputs);
    return rc;
  }
  struct stat sb;
  /* a folder made here is removed again when prepare fails: nothing left behind */
  int made = stat(o.out_dir, &sb) != 0 && mkdir(o.out_dir, 0777) == 0;
  if (stat(o.out_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
    free(inputs);
    return qg_cli_report("prepare", qg_fail(QG_ERR_INPUT, "%s: not a directory and cannot be "
                                            "created", o.out_dir));
  }
  qg_tok t;
  if ((rc = qg_cli_load_tokenizer("prepare", tokp, nfrom, &t))) {
    if (made) rmdir(o.out_dir);
    free(inputs);
    return rc;
  }
  prog p = {{0, 0}, 0, 0};
  clock_gettime(CLOCK_MONOTONIC, &p.t0);
  o.progress = progress;
  o.progress_user = &p;
  qg_tok_prepare_stats s;
  qg_status st = qg_tok_prepare(&t, inputs, n_in, &o, &s);
  if (p.shown) fputc('\n', stderr);
  int64_t lut_val = 0, lut_train = 0;
  if (!st && s.val.shards) st = lut_bytes(o.out_dir, o.name, "val", &t.spm, &lut_val);
  if (!st && s.train.shards) st = lut_bytes(o.out_dir, o.name, "train", &t.spm, &lut_train);
  /* which tokenizer these ids belong to: eval, kld and train check it */
  if (!st) st = qg_shard_manifest_write(o.out_dir, o.name, tokp, &t.spm);
  if (!st) {
    summary("val", &s.val, lut_val);
    summary("train", &s.train, lut_train);
    fprintf(stderr, "quantgolf prepare: tokenizer recorded in %s/%s_tokenizer.json\n", o.out_dir, o.name);
    fprintf(stderr, "quantgolf prepare: %.1f s; shards in %s as %s_{val,train}_NNNNNN.bin\n",
            now_s(&p.t0), o.out_dir, o.name);
    qg_cli_tokenizer_note("prepare", tokp, nfrom, t.spm.specs_assumed);
  } else if (made) {
    rmdir(o.out_dir); /* only succeeds when empty: shards appear only on success */
  }
  qg_tok_free(&t);
  free(inputs);
  return st ? qg_cli_report("prepare", st) : 0;
}
