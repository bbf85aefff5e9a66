/* The backends' side of comm/comm.h, private to comm/. A backend supplies byte-level
 * movement (all-gather-v, all-to-all-v, broadcast, barrier) and where its buffers live;
 * comm.c builds the reductions on top, folding in rank order, so every backend reduces
 * the same way. */
#ifndef QG_COMM_INTERNAL_H
#define QG_COMM_INTERNAL_H

#include <stdatomic.h>
#include <pthread.h>

#include "comm/comm.h"

typedef struct {
  const char *name;
  int on_device;
  /* recv <- concatenation over ranks r of their send (counts[r] bytes, at displs[r]) */
  qg_status (*allgatherv)(qg_comm *c, const void *send, size_t bytes, void *recv, const size_t *counts,
                          const size_t *displs);
  /* rank r gets scounts[r] bytes from sdispls[r] of this rank's send; this rank gets
   * rcounts[s] bytes from rank s, placed at rdispls[s] */
  qg_status (*alltoallv)(qg_comm *c, const void *send, const size_t *scounts, const size_t *sdispls, void *recv,
                         const size_t *rcounts, const size_t *rdispls);
  qg_status (*broadcast)(qg_comm *c, void *buf, size_t bytes, int root);
  qg_status (*barrier)(qg_comm *c);
  /* memory where collectives' buffers live (host malloc for self and mpi) */
  qg_status (*alloc)(qg_comm *c, void **p, size_t bytes);
  void (*free)(qg_comm *c, void *p);
  /* out[i] = a[i] + b[i] for n elements of t (in backend memory); out may be a */
  qg_status (*add)(qg_comm *c, void *out, const void *a, const void *b, int64_t n, qg_comm_dtype t);
  /* out[i] = out[i] / world */
  qg_status (*divide)(qg_comm *c, void *out, int64_t n, qg_comm_dtype t, int world);
  /* copies within backend memory, and between it and the host */
  qg_status (*copy)(qg_comm *c, void *dst, const void *src, size_t bytes);
  qg_status (*to_backend)(qg_comm *c, void *dst, const void *host, size_t bytes);
  qg_status (*to_host)(qg_comm *c, void *host, const void *src, size_t bytes);
  void (*abort)(qg_comm *c, int code);
  void (*close)(qg_comm *c);
} qg_comm_backend;

struct qg_comm {
  const qg_comm_backend *be;
  qg_comm_kind kind;
  int rank, world;
  void *impl; /* the backend's own state */
  /* scratch in backend memory, grown on demand */
  void *scratch;
  size_t scratch_cap;
  qg_comm_stats stats;
  /* the watchdog: the running collective's start (ns, 0 when none) and its name */
  _Atomic int64_t op_start_ns;
  _Atomic int op_kind;
  _Atomic int64_t timeout_ns;
  _Atomic int stop;
  pthread_t watchdog;
  int have_watchdog;
};

/* Host implementations shared by self and mpi. */
qg_status qg_comm_host_alloc(qg_comm *c, void **p, size_t bytes);
void qg_comm_host_free(qg_comm *c, void *p);
qg_status qg_comm_host_add(qg_comm *c, void *out, const void *a, const void *b, int64_t n, qg_comm_dtype t);
qg_status qg_comm_host_divide(qg_comm *c, void *out, int64_t n, qg_comm_dtype t, int world);
qg_status qg_comm_host_copy(qg_comm *c, void *dst, const void *src, size_t bytes);

/* Backend constructors: fill c->be, rank, world, impl. */
qg_status qg_comm_mpi_open(qg_comm *c);
qg_status qg_comm_nccl_open(qg_comm *c);
int qg_comm_mpi_built(void);
/* MPI_Init once per process (finalised at exit) and this process's place in MPI_COMM_WORLD;
 * a broadcast on MPI_COMM_WORLD (the NCCL unique id). Unsupported without MPI. */
qg_status qg_comm_mpi_init(int *rank, int *world);
qg_status qg_comm_mpi_bcast_world(void *buf, size_t bytes, int root);
int qg_comm_nccl_built(void);

#endif
