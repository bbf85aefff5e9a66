/* quantgolf encode / decode: text lines to token ids and back, as sp.encode / sp.decode. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "tok/tok.h"

void qg_cmd_encode_help(void) {
  printf("usage: quantgolf encode --tokenizer T.model|T.vocab [--normalizer-from M.model] [--json] [FILE]\n\n"
         "Encodes each line of FILE (or standard input) exactly as the sentencepiece library's\n"
         "sp.encode(line) does, and prints its ids space-separated, one output line per input\n"
         "line (--json: a JSON array per line). The line's LF is not part of the text.\n\n"
         "With only a .vocab the contest's settings are assumed (remove_extra_whitespaces on,\n"
         "add_dummy_prefix off, byte fallback when byte pieces exist) with no character\n"
         "normalization; --normalizer-from takes the normalizer (precompiled charsmap) of\n"
         "another .model, which exact encoding of non-ASCII text needs.\n");
}

void qg_cmd_decode_help(void) {
  printf("usage: quantgolf decode --tokenizer T.model|T.vocab [--normalizer-from M.model] [FILE]\n\n"
         "The reverse of encode: each line of FILE (or standard input) holds ids separated by\n"
         "spaces or commas (brackets allowed, so encode --json output works too); prints the\n"
         "text sp.decode(ids) gives, one line each.\n");
}

/* Shared option parsing for encode, decode and prepare-like commands. */
typedef struct {
  const char *tokenizer, *normalizer_from, *file;
  int json;
} enc_opts;

static int parse_opts(const char *cmd, int *argc, char **argv, enc_opts *o, int allow_json) {
  memset(o, 0, sizeof *o);
  qg_arg_list file = {&o->file, 0, 1};
  const qg_arg args[] = {{.name = "--tokenizer", .kind = QG_ARG_STR, .dst = &o->tokenizer, .flags = QG_ARG_REQUIRED},
                         {.name = "--normalizer-from", .kind = QG_ARG_STR, .dst = &o->normalizer_from},
                         {.name = allow_json ? "--json" : NULL, .kind = allow_json ? QG_ARG_FLAG : QG_ARG_END, .dst = &o->json},
                         {0}};
  const qg_args_spec spec = {.cmd = cmd, .args = args, .flags = QG_ARGS_DASH_WORD,
                             .unknown = "unknown or incomplete option '{arg}'", .words = &file,
                             .too_many = "more than one input file ('{arg}')"};
  return qg_cli_parse(&spec, argc, argv);
}

/* Loads the tokenizer (reporting a failure). */
int qg_cli_load_tokenizer(const char *cmd, const char *path, const char *normalizer_from,
                          qg_tok *t) {
  qg_status st = qg_tok_load(t, path, normalizer_from);
  if (st) return qg_cli_report(cmd, st);
  return 0;
}

/* Says once, after a successful run, when encoding with only a .vocab is not exact; a
 * failing run prints its error line alone. */
void qg_cli_tokenizer_note(const char *cmd, const char *path, const char *normalizer_from, int specs_assumed) {
  if (specs_assumed && !normalizer_from)
    fprintf(stderr, "quantgolf %s: note: %s is a .vocab: contest settings assumed, no character "
            "normalization; exact encoding of non-ASCII text (and of tabs, newlines and other "
            "control characters) needs the .model or --normalizer-from M.model\n", cmd, path);
}

static FILE *open_input(const char *cmd, const char *file, int *rc) {
  *rc = 0;
  if (!file || !strcmp(file, "-")) return stdin;
  FILE *f = fopen(file, "rb");
  if (!f) *rc = qg_cli_report(cmd, qg_fail(QG_ERR_INPUT, "%s: cannot open: %s", file, strerror(errno)));
  return f;
}

int qg_cmd_encode(int argc, char **argv) {
  enc_opts o;
  int rc = parse_opts("encode", &argc, argv, &o, 1);
  if (rc) return rc;
  qg_tok t;
  if ((rc = qg_cli_load_tokenizer("encode", o.tokenizer, o.normalizer_from, &t))) return rc;
  FILE *in = open_input("encode", o.file, &rc);
  if (!in) {
    qg_tok_free(&t);
    return rc;
  }
  qg_tok_ctx *c = NULL;
  qg_tok_ids ids = {0};
  qg_status st = qg_tok_ctx_new(&t, &c);
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  while (!st && (n = getline(&line, &cap, in)) >= 0) {
    if (n > 0 && line[n - 1] == '\n') n--;
    ids.n = 0;
    st = qg_tok_encode(c, (const uint8_t *)line, (size_t)n, &ids);
    if (st) break;
    if (o.json) putchar('[');
    for (size_t i = 0; i < ids.n; i++) printf(i ? (o.json ? ", %d" : " %d") : "%d", ids.v[i]);
    fputs(o.json ? "]\n" : "\n", stdout);
  }
  if (!st && ferror(in)) st = qg_fail(QG_ERR_IO, "%s: read error", o.file ? o.file : "<stdin>");
  free(line);
  qg_tok_ids_free(&ids);
  qg_tok_ctx_free(c);
  if (in != stdin) fclose(in);
  int assumed = t.spm.specs_assumed;
  qg_tok_free(&t);
  if (fflush(stdout) != 0 && !st) st = qg_fail(QG_ERR_IO, "writing standard output failed");
  if (!st) qg_cli_tokenizer_note("encode", o.tokenizer, o.normalizer_from, assumed);
  return st ? qg_cli_report("encode", st) : 0;
}

int qg_cmd_decode(int argc, char **argv) {
  enc_opts o;
  int rc = parse_opts("decode", &argc, argv, &o, 0);
  if (rc) return rc;
  qg_tok t;
  if ((rc = qg_cli_load_tokenizer("decode", o.tokenizer, o.normalizer_from, &t))) return rc;
  FILE *in = open_input("decode", o.file, &rc);
  if (!in) {
    qg_tok_free(&t);
    return rc;
  }
  qg_tok_ids ids = {0};
  qg_buf text;
  qg_buf_init(&text);
  char *line = NULL;
  size_t cap = 0;
  ssize_t n;
  long lineno = 0;
  qg_status st = QG_OK;
  while (!st && (n = getline(&line, &cap, in)) >= 0) {
    lineno++;
    ids.n = 0;
    for (char *p = line; *p && !st;) {
      if (*p == ' ' || *p == ',' || *p == '[' || *p == ']' || *p == '\t' || *p == '\n' || *p == '\r') {
        p++;
        continue;
      }
      char *end;
      errno = 0;
      long v = strtol(p, &end, 10);
      if (end == p || errno || v < 0 || v > INT32_MAX)
        st = qg_fail(QG_ERR_INPUT, "%s: line %ld: expected a token id, found \"%.20s\"",
                     o.file ? o.file : "<stdin>", lineno, p);
      else
        st = qg_tok_ids_push(&ids, (int32_t)v);
      p = end;
    }
    text.n = 0;
    if (!st) st = qg_tok_decode(&t, ids.v, ids.n, &text);
    if (st) {
      qg_fail_prefix(st, "%s: line %ld", o.file ? o.file : "<stdin>", lineno);
      break;
    }
    fwrite(text.p, 1, text.n, stdout);
    putchar('\n');
  }
  free(line);
  qg_buf_free(&text);
  qg_tok_ids_free(&ids);
  if (in != stdin) fclose(in);
  int assumed = t.spm.specs_assumed;
  qg_tok_free(&t);
  if (fflush(stdout) != 0 && !st) st = qg_fail(QG_ERR_IO, "writing standard output failed");
  if (!st) qg_cli_tokenizer_note("decode", o.tokenizer, o.normalizer_from, assumed);
  return st ? qg_cli_report("decode", st) : 0;
}
