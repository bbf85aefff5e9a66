/* The CLI's one option parser: each command declares its options as a table of
 * descriptors (name, kind, destination, range, message templates, help) and the parser
 * does the rest, so every command refuses the same mistakes the same way.
 *
 * Syntax: `--name VALUE` or `--name=VALUE` for options that take a value (a value is the
 * next word whatever it looks like, so `--spec '--odd'` works), `--name` for flags, words
 * (positional arguments) where a command declares them. Every option may be given once
 * unless declared repeatable; the check is by name over every word that starts with "--",
 * before anything is parsed, so it answers first.
 *
 * Messages are templates, so each command keeps its own wording: {opt} is the option as
 * the user wrote it (or a config file's "F: line 3: key"), {val} the value, {arg} the
 * offending word, {lo} and {hi} the range, {choices} an enum's names ("a, b or c"). */
#ifndef QG_CLI_ARGS_H
#define QG_CLI_ARGS_H

#include <stddef.h>

typedef enum {
  QG_ARG_END = 0, /* ends a table */
  QG_ARG_FLAG,    /* int *: set to 1, or 0 with QG_ARG_CLEAR (a config file may say true/false) */
  QG_ARG_STR,     /* const char **: the value itself (points into argv) */
  QG_ARG_INT,     /* int *: integer in [lo, hi] */
  QG_ARG_I64,     /* int64_t *: integer in [lo, hi] (a number that overflows is above every range) */
  QG_ARG_NUM,     /* double *: number in [min, max] (QG_ARG_OPEN_MIN: (min, max]) */
  QG_ARG_F32,     /* float *: as NUM, rounded to float after parsing */
  QG_ARG_ENUM,    /* int *: the index of the value in choices */
  QG_ARG_LIST,    /* qg_arg_list *: each occurrence appends its value (repeatable) */
  QG_ARG_MULTI,   /* qg_arg_list *: the following words up to the next "--..." (points into argv) */
  QG_ARG_FN,      /* any: fn parses the value into dst */
  QG_ARG_TABLE    /* a shared sub-table, spliced in here */
} qg_arg_kind;

enum {
  QG_ARG_REQUIRED = 1, /* absent: the spec's `required` message */
  QG_ARG_REPEAT = 2,   /* may be given more than once (LIST is always) */
  QG_ARG_EARLY = 4,    /* taken out of argv before anything else is parsed (--threads, --config) */
  QG_ARG_OPEN_MIN = 8, /* NUM/F32: min itself is out of range */
  QG_ARG_CLEAR = 16,   /* FLAG: the option turns it off (--no-x) */
  QG_ARG_KEEP = 32     /* EARLY, but left in argv (the rest of the parse steps over it) */
};

/* Words collected by LIST, MULTI and a spec's positional arguments. v and cap are the
 * caller's storage (MULTI points v into argv and needs none). */
typedef struct {
  const char **v;
  int n, cap;
} qg_arg_list;

typedef struct qg_arg {
  const char *name; /* with its dashes: "--seq-len" */
  qg_arg_kind kind;
  void *dst;
  long long lo, hi;           /* INT/I64: the inclusive range (both 0: any int / int64_t) */
  double min, max;            /* NUM/F32: the range (both 0: any finite number) */
  const char *const *choices; /* ENUM: NULL-terminated */
  /* FN: parses value into dst; other kinds: runs after the value was stored (value NULL
   * for a flag). 0 accepted; otherwise the message is err, or the `bad` template if err
   * was left empty. */
  int (*fn)(const char *value, void *dst, char *err, size_t cap);
  const struct qg_arg *table; /* TABLE */
  const char *bad;            /* a value that does not parse or is below the range */
  const char *high;           /* a value above the range, a LIST past cap (NULL: bad) */
  const char *missing;        /* no value follows (NULL: the spec's) */
  const char *help;           /* for qg_args_help; "\n" continues on an indented line */
  unsigned flags;
} qg_arg;

enum {
  QG_ARGS_DASH_WORD = 1,  /* a lone "-" is a word (standard input), not an option */
  QG_ARGS_LONG_ONLY = 2,  /* only "--name" words are options; "-x" is an unexpected word */
  QG_ARGS_WORDS_ONLY = 4, /* no options at all: every word is positional */
  QG_ARGS_GLOB_HINT = 8   /* an unexpected word naming an existing file gets the unquoted-glob hint */
};

typedef struct {
  const char *cmd;
  const qg_arg *args;
  const char *unknown;    /* an option nobody takes: "unknown option '{arg}'" */
  const char *unexpected; /* a word where none is taken (NULL: unknown) */
  const char *missing;    /* default for an option without its value (NULL: unknown with {arg} = the option) */
  const char *required;   /* a REQUIRED option absent (NULL: "{opt} is required") */
  qg_arg_list *words;     /* positional arguments (NULL: none) */
  const char *too_many;   /* words full (NULL: unexpected) */
  unsigned flags;
  /* Options the table does not name, for a command whose options live in a library
   * (train): `other_is_flag(name)` says whether it takes no value; `other` sets it (name
   * without dashes, label for messages, value NULL for a flag): 0 done, 1 not an option
   * (the unknown message), 2 error in err. */
  int (*other_is_flag)(const char *name);
  int (*other)(void *ctx, const char *name, const char *label, const char *value, char *err, size_t cap);
  void *other_ctx;
} qg_args_spec;

#define QG_ARGS_MAX 160

typedef struct {
  const qg_args_spec *spec;
  int *argc;
  char **argv;
  int n;
  const qg_arg *flat[QG_ARGS_MAX]; /* the table with its sub-tables spliced in */
  int count[QG_ARGS_MAX];          /* how often each was given */
  int skip[8], n_skip;             /* argv positions of KEEP options and their values */
  char err[2048];                  /* the message of a usage error */
} qg_args;

enum { QG_ARGS_OK = 0, QG_ARGS_HELP = 1, QG_ARGS_USAGE = 2 };

/* The parse in two steps, so a command can apply a config file between them: begin
 * checks for repeated options and parses the EARLY ones, taking them out of argv
 * (updating *argc) unless KEEP;
 * finish parses the rest and checks REQUIRED. Each returns a QG_ARGS_ code; on
 * QG_ARGS_USAGE the message is in p->err. argv[0] is the command (or subcommand) name. */
int qg_args_begin(qg_args *p, const qg_args_spec *spec, int *argc, char **argv);
int qg_args_finish(qg_args *p);
/* Sets an option by its name without dashes (a config file's key) as if given, with
 * label in messages; a flag takes true/yes/1 or false/no/0. Names the table lacks go to
 * spec->other. EARLY options are not settable this way. */
int qg_args_set(qg_args *p, const char *name, const char *label, const char *value);
/* Times option `name` (with dashes) was given, 0 if not in the table. */
int qg_args_given(const qg_args *p, const char *name);

/* True when argv[1..] holds -h or --help. */
int qg_args_wants_help(int argc, char **argv);
/* "  --name  help" per option with help text, names padded to width columns (a longer
 * name gets two spaces), continuation lines indented to the text; into buf. Returns the
 * length it needed (as snprintf). */
size_t qg_args_help(const qg_arg *args, int width, char *buf, size_t cap);

#endif
