/* The communicator of the commands that run across ranks: --comm, the watchdog's line,
 * and error reports that end the whole job rather than leave the other ranks waiting. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "comm/comm.h"

static char g_cmd[32];
static qg_comm *g_comm; /* the command's communicator, closed once when the command returns */

void qg_cli_comm_close(void) {
  if (g_comm) qg_comm_close(g_comm);
  g_comm = NULL;
}

static void on_timeout(void *ctx, const char *msg) {
  (void)ctx;
  fprintf(stderr, "quantgolf %s: %s\n", g_cmd, msg);
}

/* When one rank dies, OpenMPI's launcher ends the others with SIGTERM (then SIGKILL): each
 * says in one line where it was, so the job's stderr names the collective the survivors
 * were waiting in and not only the launcher's report of the dead rank. Async-signal-safe
 * only: the line's start is formatted when the communicator opens. */
static char g_term_prefix[128];

static size_t put(char *dst, size_t n, size_t cap, const char *s) {
  while (*s && n + 1 < cap) dst[n++] = *s++;
  return n;
}

static void on_term(int sig) {
  char line[320];
  size_t n = put(line, 0, sizeof line, g_term_prefix);
  const char *op = qg_comm_current_op(g_comm);
  n = put(line, n, sizeof line, "ended by the launcher (SIGTERM) ");
  n = put(line, n, sizeof line, op ? "while waiting in " : "between collectives");
  if (op) n = put(line, n, sizeof line, op);
  n = put(line, n, sizeof line, ": another rank has probably died (or the job was interrupted)\n");
  ssize_t w = write(STDERR_FILENO, line, n);
  (void)w;
  raise(sig); /* SA_RESETHAND: the default action, once this handler returns */
}

static void catch_term(qg_comm *c) {
  snprintf(g_term_prefix, sizeof g_term_prefix, "quantgolf %s: rank %d of %d: ", g_cmd, qg_comm_rank(c),
           qg_comm_world(c));
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sa.sa_flags = SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
}

int qg_cli_take_comm(const char *cmd, int *argc, char **argv, qg_comm **out) {
  const char *name = NULL;
  int n = 0;
  for (int i = 0; i < *argc; i++) {
    if (!strcmp(argv[i], "--comm")) {
      if (i + 1 >= *argc) return qg_cli_usage_error(cmd, "--comm needs self, mpi, nccl or auto");
      name = argv[++i];
      continue;
    }
    argv[n++] = argv[i];
  }
  *argc = n;
  snprintf(g_cmd, sizeof g_cmd, "%s", cmd);
  qg_comm_set_timeout_handler(on_timeout, NULL);
  qg_status s = qg_comm_open(name, out);
  if (s) {
    fprintf(stderr, "quantgolf %s: %s\n", cmd, qg_last_error());
    return 2;
  }
  g_comm = *out;
  if (qg_comm_world(g_comm) > 1) catch_term(g_comm);
  return 0;
}

int qg_cli_comm_report(const char *cmd, qg_comm *c, qg_status st, int same_everywhere) {
  int rank = qg_comm_rank(c), world = qg_comm_world(c);
  const char *msg = qg_last_error();
  int shared = same_everywhere && st == QG_ERR_INPUT;
  if (rank == 0 || !shared) {
    if (world > 1) fprintf(stderr, "quantgolf %s: rank %d of %d: %s\n", cmd, rank, world, *msg ? msg : qg_status_name(st));
    else fprintf(stderr, "quantgolf %s: %s\n", cmd, *msg ? msg : qg_status_name(st));
  }
  int code = qg_status_exit_code(st);
  if (world > 1) {
    /* an input error every rank found (the same configuration is checked) ends each rank
     * alone; any other may be this rank's only, and the others would wait for it */
    if (!shared) {
      fflush(stderr);
      qg_comm_abort(c, code);
    }
  }
  return code;
}
