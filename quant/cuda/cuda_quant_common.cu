// The quantizer kernels' plumbing: checked-call failures, the cuBLAS/cuSOLVER handles,
// device memory wrappers, the per-tensor device grid state (codebooks uploaded once and
// cached), and the raw ops of cuda_quant.h (FWHT rotation, Lloyd-Max index, E8 nearest
// point and codebook search), each one thread per vector or per element.
#include <mutex>
#include <stdlib.h>
#include <string.h>

#include "quant/cuda/cuda_quant_e8.h"
extern "C" {
#include "quant/lloydmax.h"
}

// ---- errors and handles ------------------------------------------------------------------

qg_status qgq_blas_fail(cublasStatus_t e, const char *call) {
  return qg_fail(QG_ERR_DEVICE, "cublas: %s failed: %s", call, cublasGetStatusString(e));
}

qg_status qgq_solver_fail(cusolverStatus_t e, const char *call) {
  return qg_fail(QG_ERR_DEVICE, "cusolver: %s failed: status %d", call, (int)e);
}

qg_status qgq_launched(const char *kernel) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return qg_fail(QG_ERR_DEVICE, "cuda: launch of %s failed: %s", kernel, cudaGetErrorString(e));
  return QG_OK;
}

// The handles are the CUDA backend's one context (kernels/cuda/cuda_context.h); only the
// message for a machine without a GPU is the quantizer kernels' own.
qg_status qgq_ctx(cublasHandle_t *blas, cusolverDnHandle_t *solver) {
  if (!qg_cu_ready()) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
      cudaGetLastError();
      return qg_fail(QG_ERR_DEVICE, "cuda: no usable CUDA GPU for the quantizer kernels");
    }
  }
  QG_TRY(qg_cu_init());
  if (blas) *blas = qg_cu_blas();
  if (solver) QG_TRY(qg_cu_solver(solver));
  return QG_OK;
}

// ---- memory ---------------------------------------------------------------------------------

extern "C" qg_status qg_cuq_alloc(void **p, size_t bytes) {
  QG_TRY(qgq_ctx(NULL, NULL));
  *p = NULL;
  cudaError_t e = cudaMalloc(p, bytes ? bytes : 16);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    return qg_fail(QG_ERR_NOMEM, "cuda: cudaMalloc(%zu bytes) failed: out of device memory", bytes);
  }
  if (e != cudaSuccess) return qgq_cu_fail(e, "cudaMalloc");
  return QG_OK;
}

extern "C" void qg_cuq_free(void *p) {
  if (p && cudaFree(p) != cudaSuccess) cudaGetLastError();
}

extern "C" qg_status qg_cuq_upload(void *dst, const void *src, size_t bytes) {
  if (bytes) QGQ_CU(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
  return QG_OK;
}

extern "C" qg_status qg_cuq_download(void *dst, const void *src, size_t bytes) {
  if (bytes) QGQ_CU(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  return QG_OK;
}

extern "C" qg_status qg_cuq_sync(void) {
  QGQ_CU(cudaDeviceSynchronize());
  return QG_OK;
}

// Uploads n bytes into a fresh device buffer.
static qg_status upload_new(const void *src, size_t n, void **dst) {
  QG_TRY(qg_cuq_alloc(dst, n));
  return qg_cuq_upload(*dst, src, n);
}

// ---- E8 codebooks on the device (process lifetime, keyed by the host codebook) ----------

static std::mutex cb_lock;
static struct {
  const qg_e8_codebook *host;
  qgq_dcb dev;
} cb_cache[8];

static qg_status codebook_device(const qg_e8_codebook *cb, qgq_dcb *out) {
  std::lock_guard<std::mutex> g(cb_lock);
  int slot = -1;
  for (int i = 0; i < 8; i++) {
    if (cb_cache[i].host == cb) {
      *out = cb_cache[i].dev;
      return QG_OK;
    }
    if (!cb_cache[i].host && slot < 0) slot = i;
  }
  if (slot < 0) return qg_fail(QG_ERR_UNSUPPORTED, "cuda quant: more than 8 E8 codebooks in one process");
  qgq_dcb d;
  memset(&d, 0, sizeof d);
  d.kind = (int)cb->kind, d.n_pat = cb->n_pat, d.n_pad = cb->n_pad, d.size = cb->size;
  size_t np = (size_t)cb->n_pat;
  void *p[9] = {0};
  qg_status s = upload_new(cb->pat_at, sizeof(float) * 8 * (size_t)cb->n_pad, &p[0]);
  if (!s) s = upload_new(cb->pat_norm, sizeof(float) * np, &p[1]);
  if (!s) s = upload_new(cb->pat_half, np, &p[2]);
  if (!s) s = upload_new(cb->pat_par, np, &p[3]);
  if (!s) s = upload_new(cb->pat, 8 * np, &p[4]);
  if (!s) s = upload_new(cb->pat_off, sizeof(uint32_t) * np, &p[5]);
  if (!s) s = upload_new(cb->keys, sizeof(uint32_t) * np, &p[6]);
  if (!s) s = upload_new(cb->key_pat, sizeof(int32_t) * np, &p[7]);
  if (!s) s = upload_new(cb->entries, 8 * (size_t)cb->size, &p[8]);
  if (s) {
    for (int i = 0; i < 9; i++) qg_cuq_free(p[i]);
    return s;
  }
  d.pat_at = (const float *)p[0], d.pat_norm = (const float *)p[1];
  d.pat_half = (const uint8_t *)p[2], d.pat_par = (const uint8_t *)p[3], d.pat = (const uint8_t *)p[4];
  d.pat_off = (const uint32_t *)p[5], d.keys = (const uint32_t *)p[6], d.key_pat = (const int32_t *)p[7];
  d.entries = (const int8_t *)p[8];
  cb_cache[slot].host = cb, cb_cache[slot].dev = d;
  *out = d;
  return QG_OK;
}

// ---- per-tensor grid state ------------------------------------------------------------------

qg_status qgq_state_init(qgq_state *st, const qg_cuq_grid *g, int64_t rows, int64_t cols) {
  memset(st, 0, sizeof *st);
  qgq_dgrid &d = st->d;
  d.kind = (int)g->kind, d.width = g->width, d.bits = g->bits, d.objective = g->objective;
  d.steps = g->steps, d.steps2 = g->steps2, d.full = g->full, d.qmin = g->qmin, d.qmax = g->qmax;
  d.clip = g->clip, d.lm_search = g->lm_search, d.nstages = g->kind == QG_CUQ_E8 ? g->nstages : 1;
  d.rows = rows, d.cols = cols, d.group = g->group ? g->group : cols, d.ngroups = cols / d.group;
  d.nvec = cols / 8, d.pct = g->pct, d.k = g->k, d.maxshrink = g->maxshrink;
  memcpy(d.up, g->up, sizeof d.up);
  memcpy(d.dn, g->dn, sizeof d.dn);
  if (cols % d.group || cols % g->width)
    return qg_fail(QG_ERR_INTERNAL, "cuda quant: %lld columns do not split into groups of %lld", (long long)cols,
                   (long long)d.group);
  qg_status s = upload_new(g->mult, sizeof g->mult, (void **)&st->mult);
  if (s) return s;
  d.mult0 = st->mult, d.mult1 = st->mult + QG_CUQ_MAX_MULT;
  if (g->kind == QG_CUQ_LLOYDMAX) {
    const qg_lloydmax *lm = qg_lloydmax_gaussian_cached(g->bits);
    if (!lm) return qg_fail(QG_ERR_INPUT, "cuda quant: no Lloyd-Max codebook for %d bits", g->bits);
    float t[2 * (1 << QG_LLOYDMAX_MAX_BITS)];
    memcpy(t, lm->cf, sizeof(float) * (size_t)lm->levels);
    memcpy(t + lm->levels, lm->tf, sizeof(float) * (size_t)(lm->levels - 1));
    if ((s = upload_new(t, sizeof(float) * (size_t)(2 * lm->levels - 1), (void **)&st->lm))) return s;
    d.levels = lm->levels, d.lm_cf = st->lm, d.lm_tf = st->lm + lm->levels;
  }
  if (g->kind == QG_CUQ_E8)
    for (int k = 0; k < d.nstages; k++) {
      if ((s = codebook_device(g->cb[k], &d.cb[k]))) return s;
      d.unit[k] = g->unit[k];
    }
  int64_t ncodes = g->kind == QG_CUQ_E8 ? d.nstages * rows * d.nvec : rows * cols;
  if ((s = qg_cuq_alloc((void **)&d.codes, sizeof(uint32_t) * (size_t)ncodes))) return s;
  if ((s = qg_cuq_alloc((void **)&d.scales, sizeof(float) * (size_t)(d.nstages * rows * d.ngroups)))) return s;
  return QG_OK;
}

void qgq_state_free(qgq_state *st) {
  qg_cuq_free(st->mult), qg_cuq_free(st->lm), qg_cuq_free(st->d.codes), qg_cuq_free(st->d.scales);
  memset(st, 0, sizeof *st);
}

extern "C" void qg_cuq_result_free(qg_cuq_result *r) {
  free(r->codes), free(r->scales);
  memset(r, 0, sizeof *r);
}

qg_status qgq_state_download(const qgq_state *st, qg_cuq_result *out) {
  const qgq_dgrid &d = st->d;
  out->n_codes = d.kind == QG_CUQ_E8 ? d.nstages * d.rows * d.nvec : d.rows * d.cols;
  out->n_scales = d.nstages * d.rows * d.ngroups;
  out->codes = (uint32_t *)malloc(sizeof(uint32_t) * (size_t)out->n_codes);
  out->scales = (float *)malloc(sizeof(float) * (size_t)out->n_scales);
  if (!out->codes || !out->scales) return qg_fail(QG_ERR_NOMEM, "out of memory (codes of %lld x %lld)",
                                                  (long long)d.rows, (long long)d.cols);
  QG_TRY(qg_cuq_download(out->codes, d.codes, sizeof(uint32_t) * (size_t)out->n_codes));
  return qg_cuq_download(out->scales, d.scales, sizeof(float) * (size_t)out->n_scales);
}

// ---- raw ops ---------------------------------------------------------------------------------

// One rotation of n = 2^k values per block, in shared memory: signs, butterflies of doubling
// span, then the single 1/sqrt(n) scale (quant/fwht.c's order, so results match the CPU's
// to the last bit).
__global__ void k_rotate(float *x, const float *s, int64_t n, int inverse, float scale) {
  extern __shared__ float v[];
  float *row = x + blockIdx.x * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) v[i] = inverse ? row[i] : row[i] * s[i];
  __syncthreads();
  for (int64_t h = 1; h < n; h <<= 1) {
    for (int64_t t = threadIdx.x; t < n / 2; t += blockDim.x) {
      int64_t j = (t / h) * 2 * h + t % h; // the t-th pair (j, j + h) of this pass
      float a = v[j], b = v[j + h];
      v[j] = a + b;
      v[j + h] = a - b;
    }
    __syncthreads();
  }
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) row[i] = inverse ? v[i] * scale * s[i] : v[i] * scale;
}

extern "C" qg_status qg_cuq_rotate(float *x, const float *s, int64_t n, int64_t m, int inverse) {
  if (n < 1 || (n & (n - 1)) || n > 8192)
    return qg_fail(QG_ERR_INPUT, "cuda rotate: length %lld is not a power of two <= 8192", (long long)n);
  if (m <= 0) return QG_OK;
  float *dx = NULL, *ds = NULL;
  qg_status s2 = upload_new(x, sizeof(float) * (size_t)(n * m), (void **)&dx);
  if (!s2) s2 = upload_new(s, sizeof(float) * (size_t)n, (void **)&ds);
  if (!s2) {
    // the CPU computes (T)(1.0 / sqrt((double)n)) once and multiplies: the same float here
    float scale = (float)(1.0 / sqrt((double)n));
    k_rotate<<<(unsigned)m, 256, sizeof(float) * (size_t)n>>>(dx, ds, n, inverse, scale);
    s2 = qgq_launched("k_rotate");
  }
  if (!s2) s2 = qg_cuq_download(x, dx, sizeof(float) * (size_t)(n * m));
  qg_cuq_free(dx), qg_cuq_free(ds);
  return s2;
}

__global__ void k_lm_index(const float *tf, int levels, const float *x, int64_t n, uint32_t *idx) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    idx[i] = (uint32_t)qgq_lm_index(tf, levels, x[i]);
}

static unsigned blocks_for(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  return (unsigned)(b < 1 ? 1 : b > 65535 ? 65535 : b);
}

extern "C" qg_status qg_cuq_lloydmax_index(int bits, const float *x, int64_t n, uint32_t *idx) {
  const qg_lloydmax *lm = qg_lloydmax_gaussian_cached(bits);
  if (!lm) return qg_fail(QG_ERR_INPUT, "cuda lloydmax: bits %d out of range", bits);
  if (n <= 0) return QG_OK;
  float *dtf = NULL, *dx = NULL;
  uint32_t *di = NULL;
  qg_status s = upload_new(lm->tf, sizeof(float) * (size_t)(lm->levels > 1 ? lm->levels - 1 : 1), (void **)&dtf);
  if (!s) s = upload_new(x, sizeof(float) * (size_t)n, (void **)&dx);
  if (!s) s = qg_cuq_alloc((void **)&di, sizeof(uint32_t) * (size_t)n);
  if (!s) {
    k_lm_index<<<blocks_for(n, 256), 256>>>(dtf, lm->levels, dx, n, di);
    s = qgq_launched("k_lm_index");
  }
  if (!s) s = qg_cuq_download(idx, di, sizeof(uint32_t) * (size_t)n);
  qg_cuq_free(dtf), qg_cuq_free(dx), qg_cuq_free(di);
  return s;
}

__global__ void k_e8_nearest(const float *x, int64_t nvec, float *y) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < nvec; i += (int64_t)gridDim.x * blockDim.x)
    qgq_e8_nearest(x + 8 * i, y + 8 * i);
}

__global__ void k_e8_encode(qgq_dcb cb, const float *x, int64_t nvec, uint32_t *idx, float *d2) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < nvec; i += (int64_t)gridDim.x * blockDim.x) {
    float d;
    idx[i] = qgq_e8_encode(cb, x + 8 * i, &d);
    d2[i] = d;
  }
}

extern "C" qg_status qg_cuq_e8_nearest(const float *x, int64_t nvec, float *y) {
  if (nvec <= 0) return QG_OK;
  float *dx = NULL, *dy = NULL;
  size_t bytes = sizeof(float) * 8 * (size_t)nvec;
  qg_status s = upload_new(x, bytes, (void **)&dx);
  if (!s) s = qg_cuq_alloc((void **)&dy, bytes);
  if (!s) {
    k_e8_nearest<<<blocks_for(nvec, 128), 128>>>(dx, nvec, dy);
    s = qgq_launched("k_e8_nearest");
  }
  if (!s) s = qg_cuq_download(y, dy, bytes);
  qg_cuq_free(dx), qg_cuq_free(dy);
  return s;
}

extern "C" qg_status qg_cuq_e8_encode(const qg_e8_codebook *cb, const float *x, int64_t nvec, uint32_t *idx,
                                      float *d2) {
  if (nvec <= 0) return QG_OK;
  qgq_dcb dcb;
  QG_TRY(qgq_ctx(NULL, NULL));
  QG_TRY(codebook_device(cb, &dcb));
  float *dx = NULL, *dd = NULL;
  uint32_t *di = NULL;
  qg_status s = upload_new(x, sizeof(float) * 8 * (size_t)nvec, (void **)&dx);
  if (!s) s = qg_cuq_alloc((void **)&di, sizeof(uint32_t) * (size_t)nvec);
  if (!s) s = qg_cuq_alloc((void **)&dd, sizeof(float) * (size_t)nvec);
  if (!s) {
    k_e8_encode<<<blocks_for(nvec, 128), 128>>>(dcb, dx, nvec, di, dd);
    s = qgq_launched("k_e8_encode");
  }
  if (!s) s = qg_cuq_download(idx, di, sizeof(uint32_t) * (size_t)nvec);
  if (!s && d2) s = qg_cuq_download(d2, dd, sizeof(float) * (size_t)nvec);
  qg_cuq_free(dx), qg_cuq_free(di), qg_cuq_free(dd);
  return s;
}
