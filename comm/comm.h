/* One communication interface for data parallelism: a group of `world` ranks, this
 * process being `rank`, and the collectives the trainer, calibration and evaluation use.
 * Backends, chosen at run time by name:
 *  - self: one rank, no dependency, always built; every collective is a copy.
 *  - mpi:  CPU ranks over MPI (OpenMPI or MPICH; built when CMake finds MPI). Buffers are
 *          host memory.
 *  - nccl: CUDA ranks over NCCL (built when nccl.h and libnccl are found next to CUDA).
 *          Buffers are device memory; the NCCL unique id goes from rank 0 to the others by
 *          MPI when launched under mpirun, else through a file (QG_NCCL_ID_FILE, written
 *          atomically with rename) with the rank and world from QG_RANK / QG_WORLD.
 *
 * Determinism: every sum is folded in a FIXED RANK ORDER: out = c_0 + c_1 + ... + c_{W-1},
 * left to right, in the element's own type (mpi and self), whatever the network topology.
 * A caller that splits a sequential sum x_0 + x_1 + ... + x_{K-1} over ranks so that rank r
 * holds the terms k = j*W + r gets the single-rank result bit for bit by folding round by
 * round with QG_COMM_ACCUMULATE (the running sum is the fold's first term). The nccl
 * backend folds in rank order too, on the device, from gathered contributions.
 *
 * Every collective counts its calls, its size in bytes and its wall time (qg_comm_stats), so callers can log exposed communication time and bus bandwidth.
 * A collective that does not complete within the timeout (QG_COMM_TIMEOUT seconds, default
 * 300; 0 disables) is reported by the watchdog: the handler installed with
 * qg_comm_set_timeout_handler runs (the CLI prints one line and exits), and the job is
 * aborted, so a rank that died mid-step never leaves the others waiting forever. */
#ifndef QG_COMM_COMM_H
#define QG_COMM_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"

typedef enum { QG_COMM_SELF = 0, QG_COMM_MPI, QG_COMM_NCCL } qg_comm_kind;
typedef enum { QG_COMM_F32 = 0, QG_COMM_F64, QG_COMM_I64, QG_COMM_U8 } qg_comm_dtype;
typedef enum { QG_COMM_SUM = 0, QG_COMM_AVG } qg_comm_op;
/* reduce-scatter: overwrite the output with the fold, or fold onto what it holds */
enum { QG_COMM_OVERWRITE = 0, QG_COMM_ACCUMULATE = 1 };

typedef enum {
  QG_COMM_OP_ALLREDUCE = 0,
  QG_COMM_OP_REDUCE_SCATTER,
  QG_COMM_OP_ALLGATHER,
  QG_COMM_OP_BROADCAST,
  QG_COMM_OP_BARRIER,
  QG_COMM_OP_COUNT
} qg_comm_opkind;

typedef struct {
  int64_t calls[QG_COMM_OP_COUNT];
  /* the collective's size as nccl-tests counts it: all-reduce and broadcast the buffer,
   * reduce-scatter the send buffer, all-gather the receive buffer (all ranks' blocks) */
  int64_t bytes[QG_COMM_OP_COUNT];
  double seconds[QG_COMM_OP_COUNT];
} qg_comm_stats;

typedef struct qg_comm qg_comm;

/* Opens a communicator. name: "self", "mpi", "nccl", or NULL/"auto": mpi when this process
 * was started by an MPI launcher with more than one rank, else self. A backend this build
 * lacks, or mpi outside a launcher that cannot start, is QG_ERR_UNSUPPORTED with a line
 * saying what to install. nccl binds rank r to GPU (local rank mod device count) and
 * refuses two ranks on one GPU. */
qg_status qg_comm_open(const char *name, qg_comm **out);
/* A one-rank communicator whatever launched the process (a library caller that was given
 * none: every collective is a copy). */
qg_status qg_comm_open_self(qg_comm **out);
/* Finalizes the backend (MPI_Finalize for mpi). NULL is a no-op. */
void qg_comm_close(qg_comm *c);
/* Ends every rank of the job now (MPI_Abort); for a rank that failed while others may be
 * waiting in a collective. With self (or NULL) it returns. */
void qg_comm_abort(qg_comm *c, int code);

int qg_comm_rank(const qg_comm *c);
int qg_comm_world(const qg_comm *c);
qg_comm_kind qg_comm_kind_of(const qg_comm *c);
const char *qg_comm_name(const qg_comm *c);
/* 1 when the buffers of collectives are device memory (nccl). */
int qg_comm_on_device(const qg_comm *c);
/* Which backends this build has: "self", "self,mpi", "self,mpi,nccl", ... */
const char *qg_comm_available(void);
/* Whether the environment says an MPI launcher started this process, and its world. */
int qg_comm_launcher_world(void);

size_t qg_comm_dtype_size(qg_comm_dtype t);

/* buf[0..n) <- fold over ranks of every rank's buf (sum), or that divided by world (avg,
 * floating types only), on every rank. */
qg_status qg_comm_allreduce(qg_comm *c, void *buf, int64_t n, qg_comm_dtype t, qg_comm_op op);
/* send holds sum(counts) elements, rank r's block first at offset counts[0]+...+counts[r-1];
 * recv (counts[rank] elements) <- fold over ranks of their block for this rank, onto recv's
 * own values when mode is QG_COMM_ACCUMULATE (recv + c_0 + c_1 + ...). counts NULL: every
 * block has n elements (send holds n * world). Sum only. */
qg_status qg_comm_reduce_scatter(qg_comm *c, const void *send, void *recv, int64_t n, const int64_t *counts,
                                 qg_comm_dtype t, int mode);
/* recv (sum(counts) elements) <- every rank's send block (counts[r] elements), in rank
 * order. counts NULL: n elements each. send may point into recv at this rank's block. */
qg_status qg_comm_allgather(qg_comm *c, const void *send, void *recv, int64_t n, const int64_t *counts,
                            qg_comm_dtype t);
/* bytes of buf from root to every rank. */
qg_status qg_comm_broadcast(qg_comm *c, void *buf, size_t bytes, int root);
qg_status qg_comm_barrier(qg_comm *c);

/* Every rank hashes `what` (SHA-256 of data[0..n)) and all-gathers the digests; a rank whose
 * digest differs from rank 0's gets QG_ERR_INPUT on every rank naming it: "<label> differs
 * on rank 2 of 4 (its hash 1f3a..., rank 0's 9b2c...)". */
qg_status qg_comm_check_same(qg_comm *c, const char *label, const void *data, size_t n);
/* The same for a 64-bit value (a size, a count): names the rank and both values. */
qg_status qg_comm_check_same_i64(qg_comm *c, const char *label, int64_t v);

void qg_comm_get_stats(const qg_comm *c, qg_comm_stats *out);
void qg_comm_reset_stats(qg_comm *c);
/* Totals over every kind of collective. */
int64_t qg_comm_stats_bytes(const qg_comm_stats *s);
double qg_comm_stats_seconds(const qg_comm_stats *s);
const char *qg_comm_op_name(qg_comm_opkind k);
/* Bus bandwidth in GB/s as nccl-tests defines it: the bytes a collective must move per
 * rank over the link (algorithm bytes x 2(W-1)/W for all-reduce, (W-1)/W for
 * reduce-scatter and all-gather, 1 for broadcast) divided by its time. */
double qg_comm_busbw_gbs(qg_comm_opkind k, int world, double bytes, double seconds);

/* The watchdog's handler: called from the watchdog thread with a one-line message
 * ("rank 1 of 2: all-gather did not complete within 300 s; another rank has probably
 * died"); after it returns the job is aborted. Process-wide; set once at start. */
typedef void (*qg_comm_timeout_handler)(void *ctx, const char *msg);
void qg_comm_set_timeout_handler(qg_comm_timeout_handler h, void *ctx);
/* Overrides QG_COMM_TIMEOUT for this communicator (seconds; 0 disables). */
void qg_comm_set_timeout(qg_comm *c, double seconds);
/* The collective this communicator is inside now ("reduce-scatter", ...), or NULL between
 * collectives. Async-signal-safe (atomic loads, static strings): a SIGTERM handler can say
 * where the launcher ended a rank whose peer died. */
const char *qg_comm_current_op(const qg_comm *c);

#endif
