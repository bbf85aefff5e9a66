/* The MPI backend: byte movement by MPI_Allgatherv / MPI_Alltoallv / MPI_Bcast on a
 * duplicate of MPI_COMM_WORLD, errors returned (MPI_ERRORS_RETURN) and turned into
 * messages. MPI is initialised once per process and finalised at exit. Without MPI in the
 * build every entry point says so. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_internal.h"

#ifdef QG_HAVE_MPI
#include <mpi.h>

typedef struct {
  MPI_Comm comm;
} mpi_impl;

static void finalize_at_exit(void) {
  int fin = 0;
  MPI_Finalized(&fin);
  if (!fin) MPI_Finalize();
}

static qg_status mpi_err(int rc, const char *what) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  return qg_fail(QG_ERR_IO, "%s: %.*s", what, len, msg);
}

static MPI_Comm comm_of(qg_comm *c) { return ((mpi_impl *)c->impl)->comm; }

/* MPI counts are ints: sizes beyond 2 GiB per block are refused rather than truncated. */
static qg_status int_counts(int W, const size_t *in, int *out) {
  for (int r = 0; r < W; r++) {
    if (in[r] > (size_t)INT_MAX) return qg_fail(QG_ERR_UNSUPPORTED, "MPI: a block of %zu bytes exceeds 2 GiB", in[r]);
    out[r] = (int)in[r];
  }
  return QG_OK;
}

static qg_status mpi_allgatherv(qg_comm *c, const void *send, size_t bytes, void *recv, const size_t *counts,
                                const size_t *displs) {
  int W = c->world, *rc = malloc(sizeof(int) * 2 * (size_t)W);
  if (!rc) return qg_fail(QG_ERR_NOMEM, "out of memory");
  int *rd = rc + W;
  qg_status s = int_counts(W, counts, rc);
  if (!s) s = int_counts(W, displs, rd);
  if (!s) {
    const void *sb = send == (const char *)recv + displs[c->rank] ? MPI_IN_PLACE : send;
    int rcode = MPI_Allgatherv(sb, (int)bytes, MPI_BYTE, recv, rc, rd, MPI_BYTE, comm_of(c));
    if (rcode != MPI_SUCCESS) s = mpi_err(rcode, "MPI_Allgatherv");
  }
  free(rc);
  return s;
}

static qg_status mpi_alltoallv(qg_comm *c, const void *send, const size_t *scounts, const size_t *sdispls, void *recv,
                               const size_t *rcounts, const size_t *rdispls) {
  int W = c->world, *a = malloc(sizeof(int) * 4 * (size_t)W);
  if (!a) return qg_fail(QG_ERR_NOMEM, "out of memory");
  qg_status s = int_counts(W, scounts, a);
  if (!s) s = int_counts(W, sdispls, a + W);
  if (!s) s = int_counts(W, rcounts, a + 2 * W);
  if (!s) s = int_counts(W, rdispls, a + 3 * W);
  if (!s) {
    int rcode = MPI_Alltoallv(send, a, a + W, MPI_BYTE, recv, a + 2 * W, a + 3 * W, MPI_BYTE, comm_of(c));
    if (rcode != MPI_SUCCESS) s = mpi_err(rcode, "MPI_Alltoallv");
  }
  free(a);
  return s;
}

static qg_status mpi_broadcast(qg_comm *c, void *buf, size_t bytes, int root) {
  size_t off = 0;
  while (off < bytes) { /* int counts: in pieces */
    int k = bytes - off > (size_t)(1 << 30) ? 1 << 30 : (int)(bytes - off);
    int rc = MPI_Bcast((char *)buf + off, k, MPI_BYTE, root, comm_of(c));
    if (rc != MPI_SUCCESS) return mpi_err(rc, "MPI_Bcast");
    off += (size_t)k;
  }
  return QG_OK;
}

static qg_status mpi_barrier(qg_comm *c) {
  int rc = MPI_Barrier(comm_of(c));
  return rc == MPI_SUCCESS ? QG_OK : mpi_err(rc, "MPI_Barrier");
}

static void mpi_abort(qg_comm *c, int code) { MPI_Abort(c && c->impl ? comm_of(c) : MPI_COMM_WORLD, code); }

static void mpi_close(qg_comm *c) {
  mpi_impl *m = c->impl;
  if (m) {
    MPI_Comm_free(&m->comm);
    free(m);
  }
}

static const qg_comm_backend mpi_backend = {
    .name = "mpi", .on_device = 0, .allgatherv = mpi_allgatherv, .alltoallv = mpi_alltoallv,
    .broadcast = mpi_broadcast, .barrier = mpi_barrier, .alloc = qg_comm_host_alloc, .free = qg_comm_host_free,
    .add = qg_comm_host_add, .divide = qg_comm_host_divide, .copy = qg_comm_host_copy,
    .to_backend = qg_comm_host_copy, .to_host = qg_comm_host_copy, .abort = mpi_abort, .close = mpi_close};

int qg_comm_mpi_built(void) { return 1; }

qg_status qg_comm_mpi_init(int *rank, int *world) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    /* the watchdog thread may call MPI_Abort while the main thread is in a collective */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      return qg_fail(QG_ERR_IO, "MPI_Init failed (is this an MPI launcher's environment?)");
    atexit(finalize_at_exit);
  }
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, rank);
  MPI_Comm_size(MPI_COMM_WORLD, world);
  return QG_OK;
}

qg_status qg_comm_mpi_bcast_world(void *buf, size_t bytes, int root) {
  int rc = MPI_Bcast(buf, (int)bytes, MPI_BYTE, root, MPI_COMM_WORLD);
  return rc == MPI_SUCCESS ? QG_OK : mpi_err(rc, "MPI_Bcast");
}

qg_status qg_comm_mpi_open(qg_comm *c) {
  QG_TRY(qg_comm_mpi_init(&c->rank, &c->world));
  mpi_impl *m = calloc(1, sizeof *m);
  if (!m) return qg_fail(QG_ERR_NOMEM, "out of memory");
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &m->comm);
  if (rc != MPI_SUCCESS) {
    free(m);
    return mpi_err(rc, "MPI_Comm_dup");
  }
  MPI_Comm_set_errhandler(m->comm, MPI_ERRORS_RETURN);
  c->impl = m;
  c->be = &mpi_backend;
  return QG_OK;
}

#else

int qg_comm_mpi_built(void) { return 0; }

static qg_status no_mpi(void) {
  return qg_fail(QG_ERR_UNSUPPORTED,
                 "--comm mpi: this build has no MPI (install libopenmpi-dev, e.g. scripts/install-deps.sh, and "
                 "rebuild); it has %s",
                 qg_comm_available());
}

qg_status qg_comm_mpi_open(qg_comm *c) {
  (void)c;
  return no_mpi();
}
qg_status qg_comm_mpi_init(int *rank, int *world) {
  *rank = 0, *world = 1;
  return no_mpi();
}
qg_status qg_comm_mpi_bcast_world(void *buf, size_t bytes, int root) {
  (void)buf, (void)bytes, (void)root;
  return no_mpi();
}

#endif
