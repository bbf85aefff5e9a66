/* One JSON vocabulary: every command's --json document opens with the shared envelope and
 * uses only keys that README.md's "JSON output" table lists, each with the type listed
 * there, so a key means the same thing everywhere. The table is read from the README
 * itself: a key added to a command without documenting it, or a key whose type differs
 * between commands, fails here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"
#include "core/util.h"
#include "io/json_parse.h"
#include "io/shards.h"
#include "tests/testlib.h"

enum { T_NULL = 1, T_BOOL = 2, T_INT = 4, T_NUM = 8, T_STR = 16, T_ARR = 32, T_OBJ = 64 };

typedef struct {
  char key[64];
  unsigned types;
} vkey;

static vkey vocab[512];
static int n_vocab;
static int used[512];

static unsigned parse_types(const char *cell) {
  unsigned t = 0;
  if (strstr(cell, "or null")) t |= T_NULL;
  if (strstr(cell, "integer")) t |= T_INT;
  if (strstr(cell, "number")) t |= T_NUM | T_INT; /* a whole number is still a number */
  if (strstr(cell, "string")) t |= T_STR;
  if (strstr(cell, "boolean")) t |= T_BOOL;
  if (strstr(cell, "object")) t |= T_OBJ;
  if (strstr(cell, "array")) t |= T_ARR;
  return t;
}

/* Percentile keys ("p0.1", "p99") are one row of the table: "pN". */
static const char *canonical(const char *k, char *buf, size_t cap) {
  if (k[0] == 'p' && k[1] && strspn(k + 1, "0123456789.") == strlen(k + 1)) {
    snprintf(buf, cap, "pN");
    return buf;
  }
  return k;
}

static void load_vocab(void) {
  if (n_vocab) return;
  char path[4096];
  snprintf(path, sizeof path, "%s/README.md", QG_SOURCE_DIR);
  uint8_t *text;
  size_t len;
  assert_int_equal(qg_read_file(path, &text, &len, 1 << 24), QG_OK);
  char *t0 = realloc(text, len + 1);
  assert_non_null(t0);
  t0[len] = 0;
  const char *s = strstr(t0, "\n## JSON output\n");
  assert_non_null(s);
  const char *end = strstr(s + 5, "\n## ");
  assert_non_null(end);
  for (const char *line = s; line && line < end; line = strchr(line + 1, '\n')) {
    const char *l = line + 1;
    if (strncmp(l, "| `", 3)) continue;
    const char *c1 = strstr(l + 1, " | ");
    if (!c1 || c1 > end) continue;
    const char *c2 = strstr(c1 + 3, " | ");
    if (!c2) continue;
    char cell[128];
    size_t n = (size_t)(c2 - c1 - 3) < sizeof cell - 1 ? (size_t)(c2 - c1 - 3) : sizeof cell - 1;
    memcpy(cell, c1 + 3, n), cell[n] = 0;
    unsigned types = parse_types(cell);
    if (!types) fail_msg("README JSON table: no type in row %.60s", l);
    /* every `key` in the first cell */
    for (const char *k = l + 2; k < c1; k++) {
      if (*k != '`') continue;
      const char *ke = memchr(k + 1, '`', (size_t)(c1 - k - 1));
      if (!ke) break;
      assert_true(n_vocab < (int)(sizeof vocab / sizeof vocab[0]));
      vkey *v = &vocab[n_vocab];
      size_t kn = (size_t)(ke - k - 1);
      assert_true(kn < sizeof v->key);
      memcpy(v->key, k + 1, kn), v->key[kn] = 0;
      for (int i = 0; i < n_vocab; i++)
        if (!strcmp(vocab[i].key, v->key)) fail_msg("README JSON table lists '%s' twice", v->key);
      char cb[8];
      if (strcmp(canonical(v->key, cb, sizeof cb), v->key)) { /* p0.1 … p99.9: covered by pN */
        k = ke;
        continue;
      }
      v->types = types;
      n_vocab++;
      k = ke;
    }
  }
  free(t0);
  assert_true(n_vocab > 100);
}

static unsigned node_type(const qg_jnode *n) {
  switch (n->type) {
    case QG_JNULL: return T_NULL;
    case QG_JBOOL: return T_BOOL;
    case QG_JNUM: return n->is_int ? T_INT : T_NUM;
    case QG_JSTR: return T_STR;
    case QG_JARR: return T_ARR;
    default: return T_OBJ;
  }
}

static void walk(const char *doc, const qg_jnode *n) {
  if (n->type == QG_JOBJ) {
    const qg_jnode *dup = NULL;
    assert_int_equal(qg_jobj_duplicate(n, &dup), QG_OK);
    if (dup) fail_msg("%s: key '%s' appears twice in one object", doc, dup->key);
  }
  for (const qg_jnode *c = n->child; c; c = c->next) {
    if (n->type == QG_JOBJ) {
      char cb[8];
      const char *k = canonical(c->key, cb, sizeof cb);
      int i = 0;
      while (i < n_vocab && strcmp(vocab[i].key, k)) i++;
      if (i == n_vocab) fail_msg("%s: key '%s' is not in README.md's JSON vocabulary", doc, c->key);
      if (!(vocab[i].types & node_type(c)))
        fail_msg("%s: key '%s' is a %s here, but the vocabulary gives it another type", doc, c->key,
                 qg_jtype_name(c->type));
      used[i] = 1;
    }
    walk(doc, c);
  }
}

static char out[1 << 20], err[1 << 16];

/* Checks one document (in `out`): the envelope first, then every key against the table. */
static void check_text(const char *command, const char *what) {
  load_vocab();
  qg_jdoc d;
  const qg_jnode *root;
  if (qg_jparse(out, strlen(out), NULL, &d, &root)) fail_msg("%s: not JSON: %s", what, qg_last_error());
  assert_int_equal(root->type, QG_JOBJ);
  const qg_jnode *v = root->child;
  assert_non_null(v);
  assert_string_equal(v->key, "schema_version");
  assert_true(v->type == QG_JNUM && v->is_int && v->i == 1);
  v = v->next;
  assert_non_null(v);
  assert_string_equal(v->key, "command");
  assert_true(v->type == QG_JSTR);
  assert_string_equal(v->s, command);
  v = v->next;
  assert_non_null(v);
  assert_string_equal(v->key, "quantgolf_version");
  assert_true(v->type == QG_JSTR && v->len > 0);
  walk(what, root);
  qg_jdoc_free(&d);
}

/* Runs one command with --json and checks its document; the stdout stays in `out`. */
static void check_doc(const char *command, const char *fmt, ...) QG_PRINTF(2, 3);
static void check_doc(const char *command, const char *fmt, ...) {
  char args[16384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  int rc = qg_test_run_cli(args, out, sizeof out, err, sizeof err);
  if (rc) fail_msg("%s: exit %d: %s", args, rc, err);
  check_text(command, args);
}

/* The documents that need no contest file: quantize (plain, GPTQ with rANS and the
 * compressor comparison, dry run), inspect of every format, train. */
static void test_offline_commands(void **st) {
  (void)st;
  char *dir = qg_test_tmpdir();
  char model[2048], a8[4200], a4[4200];
  snprintf(model, sizeof model, "%s", qg_test_data_file("train_ref/init.safetensors"));
  snprintf(a8, sizeof a8, "%s/a8.qgz", dir);
  snprintf(a4, sizeof a4, "%s/a4.qgz", dir);
  check_doc("quantize", "quantize --model '%s' --spec '*: rowwise bits=8' --out '%s' --json", model, a8);
  check_doc("quantize",
            "quantize --model '%s' --spec '*: gptq bits=4' --calib self --calib-seqs 2 --calib-len 32 "
            "--save-hessians '%s/h.safetensors' --compress rans --compare-compressors --out '%s' --json",
            model, dir, a4);
  assert_non_null(strstr(out, "\"compressors_compared\": true"));
  check_doc("quantize", "quantize --model '%s' --spec '*: rowwise bits=5' --dry-run --json", model);
  const char *ins[] = {model, a8, a4, qg_test_data_file("small_artifact.int8.ptz")};
  for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++) {
    char p[4200];
    snprintf(p, sizeof p, "%s", ins[i]);
    check_doc("inspect", "inspect --json '%s'", p);
  }
  char p[4200];
  snprintf(p, sizeof p, "%s", qg_test_data_file("train_ref/train.bin"));
  check_doc("inspect", "inspect --json '%s'", p);
  snprintf(p, sizeof p, "%s", qg_test_data_file("tok_rules.model"));
  check_doc("inspect", "inspect --json '%s'", p);

  /* a two-step training run with an export (tok_rules.model has 600 pieces) */
  uint16_t *tok = malloc(6000 * sizeof *tok);
  assert_non_null(tok);
  uint64_t r = 5;
  for (int i = 0; i < 6000; i++) tok[i] = (uint16_t)(qg_test_rand(&r) % 600);
  assert_int_equal(qg_shard_write(qg_test_path(dir, "train.bin"), tok, 4000), QG_OK);
  assert_int_equal(qg_shard_write(qg_test_path(dir, "val.bin"), tok + 4000, 2000), QG_OK);
  free(tok);
  check_doc("train",
            "train --train '%s/train.bin' --val '%s/val.bin' --tokenizer '%s' --layers 2 --dim 32 --heads 2 "
            "--kv-heads 1 --seq-len 16 --batch-tokens 64 --grad-accum 2 --iterations 2 --warmup-steps 0 --warmdown 1 "
            "--qat '*: rowwise bits=6' --export '*: rowwise bits=6' --out '%s/run' --json",
            dir, dir, p, dir);
  qg_test_rmdir(dir);
}

/* eval, kld (one and several models), sensitivity and allocate: they need the contest's
 * 1024-piece tokenizer for the test model. */
static void test_eval_commands(void **st) {
  (void)st;
  const char *v;
  QG_REQUIRE_CONTEST_FILE(v, "fineweb_1024_bpe.vocab");
  char vocabf[2048];
  snprintf(vocabf, sizeof vocabf, "%s", v);
  char *dir = qg_test_tmpdir();
  char model[2048], val[2048], a8[4200], a4[4200];
  snprintf(model, sizeof model, "%s", qg_test_data_file("train_ref/init.safetensors"));
  snprintf(val, sizeof val, "%s", qg_test_data_file("train_ref/train.bin"));
  snprintf(a8, sizeof a8, "%s/a8.qgz", dir);
  snprintf(a4, sizeof a4, "%s/a4.qgz", dir);
  char args[8192];
  snprintf(args, sizeof args, "quantize --model '%s' --spec '*: rowwise bits=8' --out '%s'", model, a8);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 0);
  snprintf(args, sizeof args, "quantize --model '%s' --spec '*: rowwise bits=4' --out '%s'", model, a4);
  assert_int_equal(qg_test_run_cli(args, out, sizeof out, err, sizeof err), 0);
  const char *win = "--seq-len 64 --max-tokens 257 --device cpu";
  check_doc("eval", "eval --model '%s' --val '%s' --tokenizer '%s' %s --json", model, val, vocabf, win);
  check_doc("kld", "kld --base '%s' --model '%s' --val '%s' --tokenizer '%s' %s --json", model, a8, val, vocabf, win);
  check_doc("kld", "kld --base '%s' --model '%s' --model '%s' --val '%s' --tokenizer '%s' %s --json", model, a8, a4,
            val, vocabf, win);
  check_doc("sensitivity",
            "sensitivity --model '%s' --val '%s' --tokenizer '%s' --seq-len 64 --max-tokens 129 "
            "--base '*: rowwise bits=8' --candidates 'rowwise bits=4' --calib '%s' --calib-seqs 4 --calib-len 64 "
            "--est-seqs 2 --probes 2 --probe-seqs 1 --out '%s/s' --json",
            model, val, vocabf, val, dir);
  /* the file it wrote speaks the same vocabulary (and is what allocate reads) */
  char sp[4200];
  snprintf(sp, sizeof sp, "%s/s/sensitivity.json", dir);
  uint8_t *f;
  size_t fn;
  assert_int_equal(qg_read_file(sp, &f, &fn, sizeof out - 1), QG_OK);
  memcpy(out, f, fn), out[fn] = 0;
  free(f);
  check_text("sensitivity", sp);
  check_doc("allocate",
            "allocate --model '%s' --sensitivity '%s' --budget 100000000 --verify --val '%s' --tokenizer '%s' "
            "--seq-len 64 --max-tokens 129 --json",
            model, sp, val, vocabf);
  /* measured in place, re-measured around its choice */
  check_doc("allocate",
            "allocate --model '%s' --budget 90000 --base '*: rowwise bits=8' --candidates 'rowwise bits=4' --val '%s' "
            "--tokenizer '%s' --seq-len 64 --max-tokens 129 --iterate 2 --verify --json",
            model, val, vocabf);
  qg_test_rmdir(dir);
}

/* The table lists nothing that no command writes: every key was seen above, except those
 * that only appear on paths these runs do not take (named here, each with its path). */
static void test_no_dead_keys(void **st) {
  (void)st;
  if (!qg_test_contest_file("fineweb_1024_bpe.vocab")) skip(); /* the eval documents were skipped */
  static const char *const elsewhere[] = {
      "skip_tokens",     /* --calib from shards */
      "qat_val_loss", "qat_val_bpb", /* written only when QAT was active at the end */
  };
  for (int i = 0; i < n_vocab; i++) {
    if (used[i]) continue;
    size_t e = 0;
    while (e < sizeof elsewhere / sizeof elsewhere[0] && strcmp(elsewhere[e], vocab[i].key)) e++;
    if (e == sizeof elsewhere / sizeof elsewhere[0]) fail_msg("README's JSON table lists '%s', which no document used", vocab[i].key);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_offline_commands),
      cmocka_unit_test(test_eval_commands),
      cmocka_unit_test(test_no_dead_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
