// The CUDA backend's calibration sums (kernels/ops.h hacc_*), in fp64: activation rows
// (fp32, device memory, straight from the model's tap) are widened to fp64 a chunk at a
// time and summed by cublasDsyrk into a k x k fp64 accumulator. The CPU twin is
// kernels/cpu/cpu_hessian.c (fp32 blocks added into fp64). fp64 rather than
// fp32-with-compensation because it is exact enough to need no argument and cheap on an
// H100 (fp64 tensor cores): the whole 9 x 512 model at 128 x 1024 tokens is ~1 TFLOP.
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/cuda_common.h"

#define CHUNK_ROWS 8192 // rows widened at a time (64 MiB of fp64 at k = 1024)

struct qg_hacc {
  int64_t k, n;
  double *H;   // column-major lower = row-major upper sum (mirrored on read)
  double *buf; // CHUNK_ROWS x k fp64
};

void qg_cu_hacc_free(const qg_ops *o, qg_hacc *h) {
  (void)o;
  if (!h) return;
  cudaFree(h->H), cudaFree(h->buf);
  free(h);
}

qg_status qg_cu_hacc_create(const qg_ops *o, int64_t k, qg_hacc **out) {
  *out = NULL;
  if (k <= 0 || k > 65536) return qg_fail(QG_ERR_INPUT, "Hessian size %lld out of range", (long long)k);
  QG_TRY(qg_cu_init());
  qg_hacc *h = (qg_hacc *)calloc(1, sizeof *h);
  if (!h) return qg_fail(QG_ERR_NOMEM, "out of memory");
  h->k = k;
  qg_status s = qg_cu_fail_if(cudaMalloc((void **)&h->H, sizeof(double) * (size_t)(k * k)), "cudaMalloc (Hessian)");
  if (!s) s = qg_cu_fail_if(cudaMalloc((void **)&h->buf, sizeof(double) * (size_t)(CHUNK_ROWS * k)), "cudaMalloc (Hessian rows)");
  if (!s) s = qg_cu_fail_if(cudaMemset(h->H, 0, sizeof(double) * (size_t)(k * k)), "cudaMemset (Hessian)");
  if (s) {
    qg_cu_hacc_free(o, h);
    return s;
  }
  *out = h;
  return QG_OK;
}

__global__ void k_widen(const float *x, double *y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = x[i];
}

qg_status qg_cu_hacc_add(const qg_ops *o, qg_hacc *h, const float *dX, int64_t rows) {
  (void)o;
  const double one = 1.0;
  int64_t k = h->k;
  for (int64_t r0 = 0; r0 < rows; r0 += CHUNK_ROWS) {
    int64_t nr = rows - r0 < CHUNK_ROWS ? rows - r0 : CHUNK_ROWS, n = nr * k;
    k_widen<<<qg_cu_blocks(n, 256), 256>>>(dX + r0 * k, h->buf, n);
    QG_TRY(qg_cu_launched("k_widen"));
    // X row-major (nr x k) is column-major X^T (k x nr, ld k): H += X^T X = (X^T)(X^T)^T,
    // i.e. syrk with op N on the column-major view; lower (column-major) = upper row-major
    QG_CUBLAS(cublasDsyrk(qg_cu_blas(), CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, (int)k, (int)nr, &one, h->buf, (int)k,
                          &one, h->H, (int)k));
  }
  h->n += rows > 0 ? rows : 0;
  return QG_OK;
}

qg_status qg_cu_hacc_read(const qg_ops *o, const qg_hacc *h, double *H, int64_t *rows) {
  (void)o;
  int64_t k = h->k;
  QG_CU(cudaMemcpy(H, h->H, sizeof(double) * (size_t)(k * k), cudaMemcpyDeviceToHost));
  // column-major lower = row-major upper: mirror it into the row-major lower triangle
  for (int64_t i = 0; i < k; i++)
    for (int64_t j = 0; j < i; j++) H[i * k + j] = H[j * k + i];
  *rows = h->n;
  return QG_OK;
}
