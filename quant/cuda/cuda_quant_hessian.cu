// GPTQ Hessians on the device, in fp64: activation rows (fp32, device memory, straight from
// the model's tap) are widened to fp64 a chunk at a time and summed by cublasDsyrk into a
// k x k fp64 accumulator. The CPU twin is qg_hessian_accumulate (fp64 dsyrk). fp64 rather
// than fp32-with-compensation because it is exact enough to need no argument and cheap on
// an H100 (fp64 tensor cores): the whole 9 x 512 model at 128 x 1024 tokens is ~1 TFLOP.
#include <stdlib.h>
#include <string.h>

#include "quant/cuda/cuda_quant_dev.h"

#define CHUNK_ROWS 8192 // rows widened at a time (64 MiB of fp64 at k = 1024)

struct qg_cuq_hacc {
  int64_t k, n;
  double *H;   // column-major lower = row-major upper sum (mirrored on download)
  double *buf; // CHUNK_ROWS x k fp64
  float *stage; // host-upload staging, CHUNK_ROWS x k fp32 (allocated on first use)
};

extern "C" qg_status qg_cuq_hacc_create(int64_t k, qg_cuq_hacc **out) {
  *out = NULL;
  if (k <= 0 || k > 65536) return qg_fail(QG_ERR_INPUT, "Hessian size %lld out of range", (long long)k);
  qg_cuq_hacc *h = (qg_cuq_hacc *)calloc(1, sizeof *h);
  if (!h) return qg_fail(QG_ERR_NOMEM, "out of memory");
  h->k = k;
  qg_status s = qg_cuq_alloc((void **)&h->H, sizeof(double) * (size_t)(k * k));
  if (!s) s = qg_cuq_alloc((void **)&h->buf, sizeof(double) * (size_t)(CHUNK_ROWS * k));
  if (!s) {
    cudaError_t e = cudaMemset(h->H, 0, sizeof(double) * (size_t)(k * k));
    if (e != cudaSuccess) s = qgq_cu_fail(e, "cudaMemset (Hessian)");
  }
  if (s) {
    qg_cuq_hacc_free(h);
    return s;
  }
  *out = h;
  return QG_OK;
}

extern "C" void qg_cuq_hacc_free(qg_cuq_hacc *h) {
  if (!h) return;
  qg_cuq_free(h->H), qg_cuq_free(h->buf), qg_cuq_free(h->stage);
  free(h);
}

extern "C" int64_t qg_cuq_hacc_rows(const qg_cuq_hacc *h) { return h->n; }
extern "C" int64_t qg_cuq_hacc_k(const qg_cuq_hacc *h) { return h->k; }

__global__ void k_widen(const float *x, double *y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = x[i];
}

extern "C" qg_status qg_cuq_hacc_add(qg_cuq_hacc *h, const float *dX, int64_t rows) {
  cublasHandle_t blas;
  QG_TRY(qgq_ctx(&blas, NULL));
  const double one = 1.0;
  int64_t k = h->k;
  for (int64_t r0 = 0; r0 < rows; r0 += CHUNK_ROWS) {
    int64_t nr = rows - r0 < CHUNK_ROWS ? rows - r0 : CHUNK_ROWS, n = nr * k;
    int64_t b = (n + 255) / 256;
    k_widen<<<(unsigned)(b > 65535 ? 65535 : b), 256>>>(dX + r0 * k, h->buf, n);
    QG_TRY(qgq_launched("k_widen"));
    // X row-major (nr x k) is column-major X^T (k x nr, ld k): H += X^T X = (X^T)(X^T)^T,
    // i.e. syrk with op N on the column-major view; lower (column-major) = upper row-major
    QGQ_BLAS(cublasDsyrk(blas, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N, (int)k, (int)nr, &one, h->buf, (int)k, &one, h->H,
                         (int)k));
  }
  h->n += rows > 0 ? rows : 0;
  return QG_OK;
}

extern "C" qg_status qg_cuq_hacc_add_host(qg_cuq_hacc *h, const float *X, int64_t rows) {
  int64_t k = h->k;
  if (!h->stage) QG_TRY(qg_cuq_alloc((void **)&h->stage, sizeof(float) * (size_t)(CHUNK_ROWS * k)));
  for (int64_t r0 = 0; r0 < rows; r0 += CHUNK_ROWS) {
    int64_t nr = rows - r0 < CHUNK_ROWS ? rows - r0 : CHUNK_ROWS;
    QG_TRY(qg_cuq_upload(h->stage, X + r0 * k, sizeof(float) * (size_t)(nr * k)));
    QG_TRY(qg_cuq_hacc_add(h, h->stage, nr));
  }
  return QG_OK;
}

extern "C" qg_status qg_cuq_hacc_download(const qg_cuq_hacc *h, double *H) {
  int64_t k = h->k;
  QG_TRY(qg_cuq_download(H, h->H, sizeof(double) * (size_t)(k * k)));
  // column-major lower = row-major upper: mirror it into the row-major lower triangle
  for (int64_t i = 0; i < k; i++)
    for (int64_t j = 0; j < i; j++) H[i * k + j] = H[j * k + i];
  return QG_OK;
}
