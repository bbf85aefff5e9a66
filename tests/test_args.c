/* The CLI's option parser (cli/args.c) on its own: every kind, ranges and their
 * messages, duplicates, repeatable options, --opt=value, missing values, unknown options,
 * words, early options, config-file settings and the help listing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "cli/args.h"

/* One parse of a NULL-terminated word list (argv[0] = "cmd"); the words stay alive. */
static char *words[64];
static int nwords;
static int parse(const qg_args_spec *spec, qg_args *p, ...) {
  va_list ap;
  va_start(ap, p);
  nwords = 0;
  words[nwords++] = "cmd";
  for (char *w; (w = va_arg(ap, char *));) words[nwords++] = w;
  va_end(ap);
  int rc = qg_args_begin(p, spec, &nwords, words);
  return rc ? rc : qg_args_finish(p);
}

typedef struct {
  int flag, off, n, e;
  const char *s;
  int64_t big;
  double x;
  float f;
  const char *lv[4];
  qg_arg_list list;
  qg_arg_list multi;
} dest;

static int double_it(const char *v, void *dst, char *err, size_t cap) {
  (void)err, (void)cap;
  if (strcmp(v, "two")) return 1;
  *(int *)dst = 2;
  return 0;
}

static const char *const colours[] = {"red", "green", "blue", NULL};

/* A table over every kind, with the message styles the commands use. */
static void table(dest *d, qg_arg t[16]) {
  memset(d, 0, sizeof *d);
  d->off = 1;
  d->list = (qg_arg_list){d->lv, 0, 2};
  const qg_arg a[16] = {
      {.name = "--flag", .kind = QG_ARG_FLAG, .dst = &d->flag},
      {.name = "--no-off", .kind = QG_ARG_FLAG, .dst = &d->off, .flags = QG_ARG_CLEAR},
      {.name = "--n", .kind = QG_ARG_INT, .dst = &d->n, .lo = 1, .hi = 100, .bad = "{opt} expects [{lo}, {hi}], got '{val}'",
       .high = "{opt} {val}: at most {hi}", .missing = "{opt} needs a value"},
      {.name = "--s", .kind = QG_ARG_STR, .dst = &d->s},
      {.name = "--big", .kind = QG_ARG_I64, .dst = &d->big, .lo = 0, .hi = INT64_MAX},
      {.name = "--x", .kind = QG_ARG_NUM, .dst = &d->x, .min = 0, .max = 16, .flags = QG_ARG_OPEN_MIN,
       .bad = "{opt} expects (0, 16], got '{val}'"},
      {.name = "--f", .kind = QG_ARG_F32, .dst = &d->f},
      {.name = "--colour", .kind = QG_ARG_ENUM, .dst = &d->e, .choices = colours},
      {.name = "--item", .kind = QG_ARG_LIST, .dst = &d->list, .high = "at most 2 --item"},
      {.name = "--files", .kind = QG_ARG_MULTI, .dst = &d->multi},
      {.name = "--two", .kind = QG_ARG_FN, .dst = &d->n, .fn = double_it, .bad = "{opt}: only 'two'"},
      {0}};
  memcpy(t, a, sizeof a);
}

#define SETUP                                                                   \
  dest d;                                                                       \
  qg_arg t[16];                                                                 \
  table(&d, t);                                                                 \
  qg_args_spec spec = {.cmd = "cmd", .args = t, .unknown = "unknown option '{arg}'"}; \
  qg_args p

static void test_kinds(void **state) {
  (void)state;
  SETUP;
  assert_int_equal(parse(&spec, &p, "--flag", "--no-off", "--n", "7", "--s", "--looks-like-an-option", "--big",
                         "9000000000", "--x", "16", "--f", "0.5", "--colour", "blue", "--files", "a", "b", "--two", "two",
                         NULL), 0);
  assert_int_equal(d.flag, 1);
  assert_int_equal(d.off, 0);
  assert_int_equal(d.n, 2); /* --two ran after --n */
  assert_string_equal(d.s, "--looks-like-an-option");
  assert_true(d.big == 9000000000LL);
  assert_true(d.x == 16.0);
  assert_true(d.f == 0.5f);
  assert_int_equal(d.e, 2);
  assert_int_equal(d.multi.n, 2);
  assert_string_equal(d.multi.v[0], "a");
  assert_string_equal(d.multi.v[1], "b");
  assert_int_equal(qg_args_given(&p, "--n"), 1);
  assert_int_equal(qg_args_given(&p, "--item"), 0);
}

static void test_ranges(void **state) {
  (void)state;
  SETUP;
  assert_int_equal(parse(&spec, &p, "--n", "0", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--n expects [1, 100], got '0'");
  assert_int_equal(parse(&spec, &p, "--n", "101", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--n 101: at most 100");
  assert_int_equal(parse(&spec, &p, "--n", "99999999999999999999", NULL), QG_ARGS_USAGE); /* overflow: above */
  assert_string_equal(p.err, "--n 99999999999999999999: at most 100");
  assert_int_equal(parse(&spec, &p, "--n", "5x", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--n expects [1, 100], got '5x'");
  assert_int_equal(parse(&spec, &p, "--n", "", NULL), QG_ARGS_USAGE);
  assert_int_equal(parse(&spec, &p, "--n", "100", NULL), 0);
  assert_int_equal(d.n, 100);
  assert_int_equal(parse(&spec, &p, "--n", "1", NULL), 0);
  assert_int_equal(d.n, 1);
  assert_int_equal(parse(&spec, &p, "--big", "-1", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--big expects an integer in [0, 9223372036854775807], got '-1'");
  assert_int_equal(parse(&spec, &p, "--big", "9223372036854775808", NULL), QG_ARGS_USAGE);
  /* an open lower bound excludes it; the upper is closed */
  assert_int_equal(parse(&spec, &p, "--x", "0", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--x expects (0, 16], got '0'");
  assert_int_equal(parse(&spec, &p, "--x", "16.0001", NULL), QG_ARGS_USAGE);
  assert_int_equal(parse(&spec, &p, "--x", "nan", NULL), QG_ARGS_USAGE);
  assert_int_equal(parse(&spec, &p, "--x", "1e-300", NULL), 0);
  assert_int_equal(parse(&spec, &p, "--f", "inf", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--f expects a number, got 'inf'");
  /* no range: the destination type's, said in the default message */
  int u = 0;
  const qg_arg any[] = {{.name = "--u", .kind = QG_ARG_INT, .dst = &u}, {0}};
  qg_args_spec any_spec = {.cmd = "cmd", .args = any};
  assert_int_equal(parse(&any_spec, &p, "--u", "-2147483648", NULL), 0);
  assert_int_equal(u, INT32_MIN);
  assert_int_equal(parse(&any_spec, &p, "--u", "2147483648", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--u expects an integer in [-2147483648, 2147483647], got '2147483648'");
  assert_int_equal(parse(&spec, &p, "--colour", "pink", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--colour expects red, green or blue, got 'pink'");
  assert_int_equal(parse(&spec, &p, "--two", "three", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--two: only 'two'");
}

static void test_duplicates(void **state) {
  (void)state;
  SETUP;
  assert_int_equal(parse(&spec, &p, "--s", "a", "--s", "b", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "option '--s' is given twice (each option at most once)");
  /* by name, whatever the syntax, and before any value is read */
  assert_int_equal(parse(&spec, &p, "--n=oops", "--n", "5", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "option '--n' is given twice (each option at most once)");
  assert_int_equal(parse(&spec, &p, "--flag", "--flag", NULL), QG_ARGS_USAGE);
  /* an option nobody takes, given twice, is still a repetition */
  assert_int_equal(parse(&spec, &p, "--nope", "--nope", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "option '--nope' is given twice (each option at most once)");
}

static void test_repeatable(void **state) {
  (void)state;
  SETUP;
  assert_int_equal(parse(&spec, &p, "--item", "a", "--s", "x", "--item", "b", NULL), 0);
  assert_int_equal(d.list.n, 2);
  assert_string_equal(d.lv[0], "a");
  assert_string_equal(d.lv[1], "b");
  assert_int_equal(qg_args_given(&p, "--item"), 2);
  table(&d, t);
  assert_int_equal(parse(&spec, &p, "--item", "a", "--item", "b", "--item", "c", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "at most 2 --item");
}

static void test_equals(void **state) {
  (void)state;
  SETUP;
  assert_int_equal(parse(&spec, &p, "--n=42", "--s=a=b", "--item=q", NULL), 0);
  assert_int_equal(d.n, 42);
  assert_string_equal(d.s, "a=b");
  assert_string_equal(d.lv[0], "q");
  assert_int_equal(parse(&spec, &p, "--s=", NULL), 0);
  assert_string_equal(d.s, "");
  /* a flag takes no value, so --flag=1 is nobody's option */
  assert_int_equal(parse(&spec, &p, "--flag=1", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "unknown option '--flag=1'");
  assert_int_equal(parse(&spec, &p, "--n=0", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--n expects [1, 100], got '0'");
}

static void test_missing_value(void **state) {
  (void)state;
  SETUP;
  assert_int_equal(parse(&spec, &p, "--n", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--n needs a value"); /* its own template */
  assert_int_equal(parse(&spec, &p, "--s", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "unknown option '--s'"); /* no template: the unknown one */
  spec.missing = "{opt} wants one";
  assert_int_equal(parse(&spec, &p, "--s", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--s wants one");
  assert_int_equal(parse(&spec, &p, "--files", NULL), QG_ARGS_USAGE);
  /* MULTI stops at the next option; a value that follows is taken whatever it is */
  assert_int_equal(parse(&spec, &p, "--files", "a", "--flag", NULL), 0);
  assert_int_equal(d.multi.n, 1);
  assert_int_equal(d.flag, 1);
}

static void test_unknown_and_words(void **state) {
  (void)state;
  SETUP;
  assert_int_equal(parse(&spec, &p, "--bogus", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "unknown option '--bogus'");
  assert_int_equal(parse(&spec, &p, "-x", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "unknown option '-x'");
  assert_int_equal(parse(&spec, &p, "word", NULL), QG_ARGS_USAGE); /* no words taken */
  assert_string_equal(p.err, "unknown option 'word'");
  spec.unexpected = "unexpected '{arg}'";
  assert_int_equal(parse(&spec, &p, "word", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "unexpected 'word'");
  /* a file's name gets the unquoted-glob hint */
  spec.flags = QG_ARGS_GLOB_HINT;
  assert_int_equal(parse(&spec, &p, QG_SOURCE_DIR "/README.md", NULL), QG_ARGS_USAGE);
  assert_non_null(strstr(p.err, "': it is an existing file, so an unquoted glob"));
  const char *w[2];
  qg_arg_list wl = {w, 0, 2};
  spec.words = &wl, spec.too_many = "two at most ('{arg}')", spec.flags = QG_ARGS_DASH_WORD;
  assert_int_equal(parse(&spec, &p, "a", "--flag", "-", NULL), 0);
  assert_int_equal(wl.n, 2);
  assert_string_equal(w[1], "-");
  wl.n = 0;
  assert_int_equal(parse(&spec, &p, "a", "b", "c", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "two at most ('c')");
  wl.n = 0, spec.flags = 0;
  assert_int_equal(parse(&spec, &p, "-", NULL), QG_ARGS_USAGE); /* "-" is an option unless DASH_WORD */
  wl.n = 0, spec.flags = QG_ARGS_WORDS_ONLY, d.flag = 0;
  assert_int_equal(parse(&spec, &p, "--flag", "-x", NULL), 0);
  assert_int_equal(wl.n, 2);
  assert_int_equal(d.flag, 0);
  wl.n = 0;
  assert_int_equal(parse(&spec, &p, "--help", NULL), 0); /* words only: even this */
  spec.flags = 0, wl.n = 0;
  assert_int_equal(parse(&spec, &p, "-h", NULL), QG_ARGS_HELP);
  assert_int_equal(qg_args_wants_help(3, (char *[]){"cmd", "x", "--help"}), 1);
  assert_int_equal(qg_args_wants_help(2, (char *[]){"cmd", "--helpful"}), 0);
}

static void test_required(void **state) {
  (void)state;
  dest d;
  qg_arg t[16];
  table(&d, t);
  t[3].flags = QG_ARG_REQUIRED; /* --s */
  qg_args_spec spec = {.cmd = "cmd", .args = t};
  qg_args p;
  assert_int_equal(parse(&spec, &p, "--flag", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--s is required");
  spec.required = "--s and more are required";
  assert_int_equal(parse(&spec, &p, NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--s and more are required");
  assert_int_equal(parse(&spec, &p, "--s", "v", NULL), 0);
}

/* EARLY options leave argv before the rest is read, in table order, and a sub-table is
 * spliced in where it stands. */
static int early_seen;
static int note_early(const char *v, void *dst, char *err, size_t cap) {
  (void)v, (void)dst;
  early_seen++;
  if (*(int *)dst == 13) snprintf(err, cap, "13 is unlucky");
  return *(int *)dst == 13;
}

static void test_early_and_subtable(void **state) {
  (void)state;
  int th = 0, json = 0;
  const char *model = NULL;
  const qg_arg shared[] = {{.name = "--threads", .kind = QG_ARG_INT, .dst = &th, .lo = 1, .hi = 64, .fn = note_early,
                            .flags = QG_ARG_EARLY},
                           {.name = "--json", .kind = QG_ARG_FLAG, .dst = &json},
                           {0}};
  const qg_arg args[] = {{.name = "--model", .kind = QG_ARG_STR, .dst = &model},
                         {.kind = QG_ARG_TABLE, .table = shared},
                         {0}};
  qg_args_spec spec = {.cmd = "cmd", .args = args};
  qg_args p;
  early_seen = 0;
  /* --model's value would be "--threads" if --threads were read in order */
  assert_int_equal(parse(&spec, &p, "--model", "--threads", "4", "m.pt", "--json", NULL), 0);
  assert_int_equal(early_seen, 1);
  assert_int_equal(th, 4);
  assert_string_equal(model, "m.pt");
  early_seen = 0;
  assert_int_equal(parse(&spec, &p, "--json", "--threads=8", "--model", "m", NULL), 0);
  assert_int_equal(nwords, 4); /* taken out */
  assert_int_equal(th, 8);
  assert_int_equal(json, 1);
  assert_string_equal(model, "m");
  /* KEEP: parsed first, left in argv, stepped over */
  const qg_arg kept[] = {{.name = "--config", .kind = QG_ARG_STR, .dst = &model, .flags = QG_ARG_EARLY | QG_ARG_KEEP},
                         {.name = "--json", .kind = QG_ARG_FLAG, .dst = &json},
                         {0}};
  qg_args_spec kspec = {.cmd = "cmd", .args = kept};
  json = 0;
  assert_int_equal(parse(&kspec, &p, "--json", "--config", "f.yaml", NULL), 0);
  assert_int_equal(nwords, 4);
  assert_string_equal(words[2], "--config");
  assert_string_equal(model, "f.yaml");
  assert_int_equal(json, 1);
  assert_int_equal(qg_args_given(&p, "--config"), 1); /* not read a second time */
  assert_int_equal(parse(&spec, &p, "--threads", "13", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "13 is unlucky");
  /* an EARLY error comes first, whatever precedes it */
  assert_int_equal(parse(&spec, &p, "--bogus", "--threads", "0", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--threads expects an integer in [1, 64], got '0'");
}

/* A config file's keys, and options the table leaves to a library setter. */
static int other_calls;
static int is_lib_flag(const char *name) { return !strcmp(name, "resume"); }
static int lib_set(void *ctx, const char *name, const char *label, const char *value, char *err, size_t cap) {
  int *layers = ctx;
  other_calls++;
  if (!strcmp(name, "resume")) return value && strcmp(value, "true") ? 1 : 0;
  if (strcmp(name, "layers")) return 1;
  if (strcmp(value, "4")) {
    snprintf(err, cap, "%s: only 4", label);
    return 2;
  }
  *layers = 4;
  return 0;
}

static void test_set_and_other(void **state) {
  (void)state;
  int json = 0, layers = 0, n = 0, th = 0;
  const qg_arg args[] = {{.name = "--json", .kind = QG_ARG_FLAG, .dst = &json},
                         {.name = "--n", .kind = QG_ARG_INT, .dst = &n, .lo = 1, .hi = 9},
                         {.name = "--threads", .kind = QG_ARG_INT, .dst = &th, .lo = 1, .hi = 9, .flags = QG_ARG_EARLY},
                         {0}};
  qg_args_spec spec = {.cmd = "cmd", .args = args, .unknown = "unknown option '{arg}'",
                       .unexpected = "unexpected argument '{arg}'", .missing = "unknown or incomplete option '{arg}'",
                       .flags = QG_ARGS_LONG_ONLY, .other_is_flag = is_lib_flag, .other = lib_set, .other_ctx = &layers};
  qg_args p;
  nwords = 1;
  words[0] = "cmd";
  assert_int_equal(qg_args_begin(&p, &spec, &nwords, words), 0);
  assert_int_equal(qg_args_set(&p, "json", "f: line 1: json", "true"), 0);
  assert_int_equal(json, 1);
  assert_int_equal(qg_args_set(&p, "json", "f: line 1: json", "false"), 0);
  assert_int_equal(json, 0);
  assert_int_equal(qg_args_set(&p, "json", "f: line 1: json", "maybe"), QG_ARGS_USAGE);
  assert_string_equal(p.err, "f: line 1: json expects true or false, got 'maybe'");
  assert_int_equal(qg_args_set(&p, "n", "f: line 2: n", "10"), QG_ARGS_USAGE);
  assert_string_equal(p.err, "f: line 2: n expects an integer in [1, 9], got '10'");
  assert_int_equal(qg_args_set(&p, "layers", "f: line 3: layers", "4"), 0);
  assert_int_equal(layers, 4);
  assert_int_equal(qg_args_set(&p, "threads", "f: line 4: threads", "2"), QG_ARGS_USAGE); /* not from a file */
  assert_string_equal(p.err, "unknown option 'f: line 4: threads'");
  assert_int_equal(th, 0);
  other_calls = 0, layers = 0;
  assert_int_equal(parse(&spec, &p, "--layers", "4", "--resume", "--n", "3", NULL), 0);
  assert_int_equal(layers, 4);
  assert_int_equal(other_calls, 2);
  assert_int_equal(parse(&spec, &p, "--layers=5", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "--layers: only 4");
  assert_int_equal(parse(&spec, &p, "--width=3", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "unknown option '--width=3'");
  assert_int_equal(parse(&spec, &p, "--width", "3", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "unknown option '--width'");
  assert_int_equal(parse(&spec, &p, "--width", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "unknown or incomplete option '--width'");
  assert_int_equal(parse(&spec, &p, "-x", NULL), QG_ARGS_USAGE);
  assert_string_equal(p.err, "unexpected argument '-x'");
}

static void test_help_listing(void **state) {
  (void)state;
  int a = 0;
  const qg_arg sub[] = {{.name = "--allow-something-long", .kind = QG_ARG_FLAG, .dst = &a, .help = "long names\nwrap"},
                        {0}};
  const qg_arg args[] = {{.name = "--model", .kind = QG_ARG_STR, .dst = &a, .help = "any checkpoint\nof any kind"},
                         {.name = "--hidden", .kind = QG_ARG_FLAG, .dst = &a},
                         {.kind = QG_ARG_TABLE, .table = sub},
                         {0}};
  char buf[512];
  size_t n = qg_args_help(args, 9, buf, sizeof buf);
  const char *want = "  --model   any checkpoint\n"
                     "            of any kind\n"
                     "  --allow-something-long  long names\n"
                     "            wrap\n";
  assert_string_equal(buf, want);
  assert_int_equal(n, strlen(want));
  char small[8];
  assert_int_equal(qg_args_help(args, 9, small, sizeof small), strlen(want)); /* the length it needed */
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kinds),          cmocka_unit_test(test_ranges),
      cmocka_unit_test(test_duplicates),     cmocka_unit_test(test_repeatable),
      cmocka_unit_test(test_equals),         cmocka_unit_test(test_missing_value),
      cmocka_unit_test(test_unknown_and_words), cmocka_unit_test(test_required),
      cmocka_unit_test(test_early_and_subtable), cmocka_unit_test(test_set_and_other),
      cmocka_unit_test(test_help_listing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
