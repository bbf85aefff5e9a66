/* --nproc N: a single-node launch without typing mpirun. The process re-executes its own
 * command line (minus --nproc) as `mpirun -np N <this executable> <command> <args>`, with
 * the launcher found on PATH, so the ranks are started and wired by MPI itself (no
 * home-made transport) and the job's exit status is mpirun's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "comm/comm.h"

/* dir/name on PATH that is an executable regular file, into out */
static int on_path(const char *name, char *out, size_t cap) {
  const char *path = getenv("PATH");
  if (!path || !*path) return 0;
  while (*path) {
    size_t n = strcspn(path, ":");
    snprintf(out, cap, "%.*s/%s", (int)(n ? n : 1), n ? path : ".", name);
    struct stat sb;
    if (stat(out, &sb) == 0 && S_ISREG(sb.st_mode) && access(out, X_OK) == 0) return 1;
    path += n;
    if (*path == ':') path++;
  }
  return 0;
}

int qg_cli_nproc(const char *cmd, int *argc, char **argv) {
  int at = -1;
  for (int i = 1; i < *argc; i++)
    if (!strcmp(argv[i], "--nproc")) {
      if (at >= 0) return qg_cli_usage_error(cmd, "--nproc given twice");
      at = i;
    }
  if (at < 0) return -1;
  if (at + 1 >= *argc) return qg_cli_usage_error(cmd, "--nproc needs a number of ranks");
  const char *v = argv[at + 1];
  char *end;
  long n = strtol(v, &end, 10);
  if (end == v || *end || n < 1 || n > 1024)
    return qg_cli_usage_error(cmd, "--nproc %s: expected a number of ranks in [1, 1024]", v);
  /* take it out of argv: what runs (here or under mpirun) never sees it */
  for (int i = at; i + 2 <= *argc; i++) argv[i] = argv[i + 2];
  *argc -= 2;
  argv[*argc] = NULL;
  int world = qg_comm_launcher_world();
  if (world > 0)
    return qg_cli_usage_error(cmd, "--nproc %ld under an MPI launcher (already %d ranks): use one or the other", n,
                              world);
  if (n == 1) return -1; /* one rank: this process is the job */
  if (!strstr(qg_comm_available(), "mpi"))
    return qg_cli_usage_error(cmd, "--nproc %ld: this build has no MPI (install libopenmpi-dev and rebuild; it has %s)",
                              n, qg_comm_available());
  char launcher[4096], self[4096];
  if (!on_path("mpirun", launcher, sizeof launcher) && !on_path("mpiexec", launcher, sizeof launcher))
    return qg_cli_usage_error(cmd, "--nproc %ld: no mpirun or mpiexec on PATH (install openmpi-bin)", n);
  ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
  if (k <= 0 || (size_t)k >= sizeof self - 1) {
    fprintf(stderr, "quantgolf %s: --nproc: cannot find this executable's path\n", cmd);
    return 1;
  }
  self[k] = 0;
  /* OpenMPI refuses root without these, and more ranks than cores without
   * oversubscription; the caller's own settings win */
  if (geteuid() == 0) {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
  }
  setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);
  char np[16];
  snprintf(np, sizeof np, "%ld", n);
  char **av = calloc((size_t)*argc + 5, sizeof *av);
  if (!av) {
    fprintf(stderr, "quantgolf %s: out of memory\n", cmd);
    return 1;
  }
  av[0] = launcher, av[1] = "-np", av[2] = np, av[3] = self;
  for (int i = 0; i < *argc; i++) av[4 + i] = argv[i];
  fflush(stdout);
  fflush(stderr);
  execv(launcher, av);
  fprintf(stderr, "quantgolf %s: --nproc: cannot run %s: %s\n", cmd, launcher, strerror(errno));
  free(av);
  return 1;
}
