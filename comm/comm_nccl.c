/* The NCCL backend: CUDA ranks, buffers in device memory, one stream per communicator.
 * Byte movement by NCCL (all-gather-v as one broadcast per rank, all-to-all-v as grouped
 * send/recv), the rank-order fold by comm/cuda/comm_fold.cu, every collective waited for
 * on its stream (honest timings; a fault is reported by the collective that caused it).
 * The unique id reaches the ranks by MPI under an MPI launcher, else through the file
 * QG_NCCL_ID_FILE (rank 0 writes it under a temporary name and renames it; the others
 * wait for it), with QG_RANK / QG_WORLD giving the ranks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm_internal.h"

#ifdef QG_HAVE_NCCL
#include <cuda_runtime.h>
#include <nccl.h>

#include "comm/cuda/comm_fold.h"

typedef struct {
  ncclComm_t comm;
  cudaStream_t stream;
  int device;
  int mpi; /* bootstrapped by MPI (abort through it) */
} nccl_impl;

static nccl_impl *impl_of(qg_comm *c) { return c->impl; }

static qg_status nccl_err(ncclResult_t r, const char *what) {
  return qg_fail(QG_ERR_DEVICE, "%s: %s", what, ncclGetErrorString(r));
}
static qg_status cuda_err(cudaError_t e, const char *what) {
  return qg_fail(QG_ERR_DEVICE, "%s: %s", what, cudaGetErrorString(e));
}
static qg_status wait_stream(qg_comm *c, const char *what) {
  cudaError_t e = cudaStreamSynchronize(impl_of(c)->stream);
  return e == cudaSuccess ? QG_OK : cuda_err(e, what);
}

static qg_status nccl_allgatherv(qg_comm *c, const void *send, size_t bytes, void *recv, const size_t *counts,
                                 const size_t *displs) {
  nccl_impl *m = impl_of(c);
  (void)bytes;
  ncclResult_t r = ncclGroupStart();
  for (int q = 0; q < c->world && r == ncclSuccess; q++)
    r = ncclBroadcast(q == c->rank ? send : (char *)recv + displs[q], (char *)recv + displs[q], counts[q], ncclChar,
                      q, m->comm, m->stream);
  ncclResult_t e = ncclGroupEnd();
  if (r != ncclSuccess || e != ncclSuccess) return nccl_err(r != ncclSuccess ? r : e, "ncclBroadcast (all-gather)");
  return wait_stream(c, "all-gather");
}

static qg_status nccl_alltoallv(qg_comm *c, const void *send, const size_t *scounts, const size_t *sdispls, void *recv,
                                const size_t *rcounts, const size_t *rdispls) {
  nccl_impl *m = impl_of(c);
  ncclResult_t r = ncclGroupStart();
  for (int q = 0; q < c->world && r == ncclSuccess; q++) {
    if (q == c->rank) continue;
    if (scounts[q]) r = ncclSend((const char *)send + sdispls[q], scounts[q], ncclChar, q, m->comm, m->stream);
    if (r == ncclSuccess && rcounts[q])
      r = ncclRecv((char *)recv + rdispls[q], rcounts[q], ncclChar, q, m->comm, m->stream);
  }
  ncclResult_t e = ncclGroupEnd();
  if (r != ncclSuccess || e != ncclSuccess) return nccl_err(r != ncclSuccess ? r : e, "ncclSend/ncclRecv");
  cudaError_t ce = cudaMemcpyAsync((char *)recv + rdispls[c->rank], (const char *)send + sdispls[c->rank],
                                   scounts[c->rank], cudaMemcpyDeviceToDevice, m->stream);
  if (ce != cudaSuccess) return cuda_err(ce, "all-to-all (own block)");
  return wait_stream(c, "all-to-all");
}

static qg_status nccl_broadcast(qg_comm *c, void *buf, size_t bytes, int root) {
  nccl_impl *m = impl_of(c);
  ncclResult_t r = ncclBroadcast(buf, buf, bytes, ncclChar, root, m->comm, m->stream);
  if (r != ncclSuccess) return nccl_err(r, "ncclBroadcast");
  return wait_stream(c, "broadcast");
}

static qg_status nccl_barrier(qg_comm *c) {
  nccl_impl *m = impl_of(c);
  void *one;
  cudaError_t e = cudaMalloc(&one, sizeof(float));
  if (e != cudaSuccess) return cuda_err(e, "barrier");
  cudaMemsetAsync(one, 0, sizeof(float), m->stream);
  ncclResult_t r = ncclAllReduce(one, one, 1, ncclFloat, ncclSum, m->comm, m->stream);
  qg_status s = r == ncclSuccess ? wait_stream(c, "barrier") : nccl_err(r, "ncclAllReduce (barrier)");
  cudaFree(one);
  return s;
}

static qg_status nccl_alloc(qg_comm *c, void **p, size_t bytes) {
  (void)c;
  cudaError_t e = cudaMalloc(p, bytes ? bytes : 1);
  return e == cudaSuccess ? QG_OK : cuda_err(e, "communication scratch on the GPU");
}
static void nccl_free(qg_comm *c, void *p) {
  (void)c;
  cudaFree(p);
}
static qg_status nccl_add(qg_comm *c, void *out, const void *a, const void *b, int64_t n, qg_comm_dtype t) {
  QG_TRY(qg_comm_cuda_add(out, a, b, n, t, impl_of(c)->stream));
  return wait_stream(c, "fold");
}
static qg_status nccl_divide(qg_comm *c, void *out, int64_t n, qg_comm_dtype t, int world) {
  QG_TRY(qg_comm_cuda_divide(out, n, t, world, impl_of(c)->stream));
  return wait_stream(c, "average");
}
static qg_status nccl_copy(qg_comm *c, void *dst, const void *src, size_t bytes) {
  if (!bytes || dst == src) return QG_OK;
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, impl_of(c)->stream);
  if (e != cudaSuccess) return cuda_err(e, "copy");
  return wait_stream(c, "copy");
}

static qg_status nccl_to_device(qg_comm *c, void *dst, const void *host, size_t bytes) {
  (void)c;
  cudaError_t e = bytes ? cudaMemcpy(dst, host, bytes, cudaMemcpyHostToDevice) : cudaSuccess;
  return e == cudaSuccess ? QG_OK : cuda_err(e, "host to GPU");
}
static qg_status nccl_to_host(qg_comm *c, void *host, const void *src, size_t bytes) {
  (void)c;
  cudaError_t e = bytes ? cudaMemcpy(host, src, bytes, cudaMemcpyDeviceToHost) : cudaSuccess;
  return e == cudaSuccess ? QG_OK : cuda_err(e, "GPU to host");
}

static void nccl_abort(qg_comm *c, int code) {
  nccl_impl *m = impl_of(c);
  if (m && m->comm) ncclCommAbort(m->comm);
  _exit(code);
}

static void nccl_close(qg_comm *c) {
  nccl_impl *m = impl_of(c);
  if (!m) return;
  if (m->comm) ncclCommDestroy(m->comm);
  if (m->stream) cudaStreamDestroy(m->stream);
  free(m);
}

static const qg_comm_backend nccl_backend = {
    .name = "nccl", .on_device = 1, .allgatherv = nccl_allgatherv, .alltoallv = nccl_alltoallv,
    .broadcast = nccl_broadcast, .barrier = nccl_barrier, .alloc = nccl_alloc, .free = nccl_free, .add = nccl_add,
    .divide = nccl_divide, .copy = nccl_copy, .to_backend = nccl_to_device, .to_host = nccl_to_host,
    .abort = nccl_abort, .close = nccl_close};

int qg_comm_nccl_built(void) { return 1; }

static int env_int(const char *const *names, int n, int fallback) {
  for (int i = 0; i < n; i++) {
    const char *v = getenv(names[i]);
    if (v && *v) return atoi(v);
  }
  return fallback;
}

/* Rank 0 writes the id to path.tmp.<pid> and renames it into place (readers never see a
 * partial id); the others wait up to 60 s for it. */
static qg_status id_by_file(int rank, ncclUniqueId *id) {
  const char *path = getenv("QG_NCCL_ID_FILE");
  if (!path || !*path)
    return qg_fail(QG_ERR_INPUT, "--comm nccl with %s ranks outside an MPI launcher needs QG_NCCL_ID_FILE (a path every "
                   "rank sees) for the NCCL unique id", getenv("QG_WORLD"));
  if (rank == 0) {
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return qg_fail(QG_ERR_IO, "%s: cannot write the NCCL id", tmp);
    size_t w = fwrite(id, sizeof *id, 1, f);
    if (fclose(f) != 0 || w != 1 || rename(tmp, path) != 0) {
      remove(tmp);
      return qg_fail(QG_ERR_IO, "%s: cannot write the NCCL id", path);
    }
    return QG_OK;
  }
  for (int tries = 0; tries < 600; tries++) {
    FILE *f = fopen(path, "rb");
    if (f) {
      size_t r = fread(id, sizeof *id, 1, f);
      fclose(f);
      if (r == 1) return QG_OK;
    }
    usleep(100000);
  }
  return qg_fail(QG_ERR_IO, "%s: no NCCL id from rank 0 within 60 s", path);
}

qg_status qg_comm_nccl_open(qg_comm *c) {
  int rank = 0, world = 1, mpi = 0;
  if (qg_comm_launcher_world() > 0 && qg_comm_mpi_built()) {
    QG_TRY(qg_comm_mpi_init(&rank, &world));
    mpi = 1;
  } else {
    const char *rv[] = {"QG_RANK"}, *wv[] = {"QG_WORLD"};
    rank = env_int(rv, 1, 0), world = env_int(wv, 1, 1);
    if (world < 1 || rank < 0 || rank >= world)
      return qg_fail(QG_ERR_INPUT, "--comm nccl: QG_RANK %d is not in 0..QG_WORLD-1 (QG_WORLD %d)", rank, world);
  }
  int ndev = 0;
  cudaError_t ce = cudaGetDeviceCount(&ndev);
  if (ce != cudaSuccess || ndev < 1)
    return qg_fail(QG_ERR_DEVICE, "--comm nccl: no CUDA GPU (%s)", ce != cudaSuccess ? cudaGetErrorString(ce) : "0 devices");
  const char *lr[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "QG_LOCAL_RANK"};
  const char *ls[] = {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "QG_LOCAL_WORLD"};
  int local = env_int(lr, 3, rank), local_n = env_int(ls, 3, world);
  if (local_n > ndev)
    return qg_fail(QG_ERR_INPUT,
                   "--comm nccl: rank %d (local rank %d) maps to GPU %d, which local rank %d already uses: %d ranks on "
                   "this node, %d GPUs (NCCL needs one GPU per rank)",
                   rank, local, local % ndev, local % ndev, local_n, ndev);
  nccl_impl *m = calloc(1, sizeof *m);
  if (!m) return qg_fail(QG_ERR_NOMEM, "out of memory");
  m->device = local % ndev, m->mpi = mpi;
  qg_status s = QG_OK;
  if ((ce = cudaSetDevice(m->device)) != cudaSuccess || (ce = cudaStreamCreate(&m->stream)) != cudaSuccess)
    s = cuda_err(ce, "--comm nccl: GPU set-up");
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  if (!s && rank == 0) {
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess) s = nccl_err(r, "ncclGetUniqueId");
  }
  if (!s && world > 1) s = mpi ? qg_comm_mpi_bcast_world(&id, sizeof id, 0) : id_by_file(rank, &id);
  if (!s) {
    ncclResult_t r = ncclCommInitRank(&m->comm, world, id, rank);
    if (r != ncclSuccess) s = nccl_err(r, "ncclCommInitRank");
  }
  if (s) {
    if (m->stream) cudaStreamDestroy(m->stream);
    free(m);
    return s;
  }
  c->impl = m, c->rank = rank, c->world = world, c->be = &nccl_backend;
  return QG_OK;
}

#else

int qg_comm_nccl_built(void) { return 0; }

qg_status qg_comm_nccl_open(qg_comm *c) {
  (void)c;
  return qg_fail(QG_ERR_UNSUPPORTED,
                 "--comm nccl: this build has no NCCL (it needs CUDA and nccl.h + libnccl.so.2 under the CUDA "
                 "toolkit); it has %s",
                 qg_comm_available());
}

#endif
