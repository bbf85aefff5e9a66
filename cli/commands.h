/* The subcommands of the quantgolf CLI: one file each (cli/cmd_*.c). Each returns the
 * process exit code: 0 success, 1 runtime failure, 2 bad usage or bad input. */
#ifndef QG_CLI_COMMANDS_H
#define QG_CLI_COMMANDS_H

#include "cli/args.h"
#include "core/status.h"

typedef struct {
  const char *name;
  const char *summary;
  int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
  void (*help)(void);
  int ranks; /* runs across ranks: takes --nproc N (cli/launch.c) */
} qg_command;

int qg_cmd_inspect(int argc, char **argv);
void qg_cmd_inspect_help(void);
int qg_cmd_convert(int argc, char **argv);
void qg_cmd_convert_help(void);
int qg_cmd_export_int8(int argc, char **argv);
void qg_cmd_export_int8_help(void);
int qg_cmd_info(int argc, char **argv);
void qg_cmd_info_help(void);
int qg_cmd_quantize(int argc, char **argv);
void qg_cmd_quantize_help(void);
int qg_cmd_quantizers(int argc, char **argv);
void qg_cmd_quantizers_help(void);
int qg_cmd_tokenizer(int argc, char **argv);
void qg_cmd_tokenizer_help(void);
int qg_cmd_encode(int argc, char **argv);
void qg_cmd_encode_help(void);
int qg_cmd_decode(int argc, char **argv);
void qg_cmd_decode_help(void);
int qg_cmd_prepare(int argc, char **argv);
void qg_cmd_prepare_help(void);
int qg_cmd_train(int argc, char **argv);
void qg_cmd_train_help(void);

int qg_cmd_sensitivity(int argc, char **argv);
void qg_cmd_sensitivity_help(void);
int qg_cmd_allocate(int argc, char **argv);
void qg_cmd_allocate_help(void);
int qg_cmd_run(int argc, char **argv);
void qg_cmd_run_help(void);

int qg_cmd_eval(int argc, char **argv);
void qg_cmd_eval_help(void);
int qg_cmd_kld(int argc, char **argv);
void qg_cmd_kld_help(void);

/* Options shared by eval and kld (cli/cmd_eval.c). */
#include "eval/eval.h"
typedef struct {
  const char *val, *tokenizer, *device;
  qg_eval_opts opts;
  qg_gpt_options gopt;
  int json;
  int allow_tok_mismatch; /* --allow-tokenizer-mismatch: a manifest mismatch only warns */
  const char *cmd;        /* for warnings (set by qg_cli_eval_args; NULL: none) */
} qg_eval_cli;
/* The shared options' table (data, windows, model options, --json, --threads) into
 * tab, for a command's table to include (QG_ARG_TABLE); cmd names warnings. */
#define QG_CLI_EVAL_NARGS 13
void qg_cli_eval_args(const char *cmd, qg_eval_cli *c, qg_arg tab[QG_CLI_EVAL_NARGS]);
qg_status qg_cli_open_eval_data(const qg_eval_cli *c, int vocab, qg_shards *val, qg_spm_luts *luts);
/* The shards' tokenizer manifest (io/shard_manifest.h) against tok; with allow a mismatch
 * is a warning on stderr instead of the error. */
qg_status qg_cli_check_tokenizer(const char *cmd, const qg_shards *sh, const qg_spm *tok, const char *tok_path,
                                 int allow);

/* Prints "quantgolf CMD: <message>" on stderr and returns the exit code for st. */
int qg_cli_report(const char *cmd, qg_status st);
/* Parses argv by spec (cli/args.h): 0, or 2 after printing the usage error. */
int qg_cli_parse(const qg_args_spec *spec, int *argc, char **argv);
/* Prints p's usage error and returns 2. */
int qg_cli_args_error(const qg_args *p);
/* A QG_ARG_FN parser for an artifact compressor's name into a qg_compressor (none is
 * refused: byte costs are always compressed bytes). */
int qg_cli_artifact_compressor(const char *v, void *dst, char *err, size_t cap);
/* --threads N (the thread pool's size), for the tables of the commands that run it. */
extern const qg_arg qg_cli_threads_args[];
/* Prints a usage error on stderr and returns 2. */
int qg_cli_usage_error(const char *cmd, const char *fmt, ...) QG_PRINTF(2, 3);
struct qg_comm;
/* --nproc N for the commands that run across ranks (argv[0] the command): without it, or
 * with N = 1, removes it and returns -1 (run here); with N > 1 re-executes the command line
 * without it under `mpirun -np N` from PATH and does not return; a bad N, no launcher, no
 * MPI in the build or an MPI launcher already around: one line and 2. */
int qg_cli_nproc(const char *cmd, int *argc, char **argv);
/* --comm NAME for the commands that run across ranks (cli/comm.c): removes it from argv
 * and opens the communicator (auto when absent: mpi under an MPI launcher with more than
 * one rank, else self); installs the watchdog's handler (one line on stderr, then the job
 * ends). 0 done, 2 after printing why not (a backend this build lacks, ...). */
int qg_cli_take_comm(const char *cmd, int *argc, char **argv, struct qg_comm **out);
/* Closes the communicator qg_cli_take_comm opened (main calls it after every command). */
void qg_cli_comm_close(void);
/* The error report of a rank: rank 0 prints it, other ranks too (prefixed) unless it is an
 * input error found before any rank could diverge (same_everywhere: the configuration and
 * data every rank checked alike). Other errors with more than one rank abort the job, so
 * no rank waits for this one. Returns the exit code. */
int qg_cli_comm_report(const char *cmd, struct qg_comm *c, qg_status st, int same_everywhere);

#endif
