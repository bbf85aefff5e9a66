/* The CPU-only build's answers to quant/cuda/cuda_quant.h: every device entry point says
 * why it cannot run. CMake compiles this file in place of quant/cuda's .cu files when
 * QG_CUDA is off (the host-side bridge, cuda_quant_bridge.c, is built either way). */
#include <stdlib.h>
#include <string.h>

#include "quant/cuda/cuda_quant.h"

static qg_status no_cuda(void) {
  return qg_fail(QG_ERR_UNSUPPORTED, "the CUDA quantizer kernels are not compiled in (configured with -DQG_CUDA=OFF "
                 "or no nvcc)");
}
qg_status qg_cuq_alloc(void **p, size_t bytes) { (void)bytes, *p = NULL; return no_cuda(); }
void qg_cuq_free(void *p) { (void)p; }
qg_status qg_cuq_upload(void *dst, const void *src, size_t bytes) { (void)dst, (void)src, (void)bytes; return no_cuda(); }
qg_status qg_cuq_download(void *dst, const void *src, size_t bytes) { (void)dst, (void)src, (void)bytes; return no_cuda(); }
qg_status qg_cuq_sync(void) { return no_cuda(); }
void qg_cuq_result_free(qg_cuq_result *r) {
  free(r->codes), free(r->scales);
  memset(r, 0, sizeof *r);
}
qg_status qg_cuq_rtn(const qg_cuq_grid *g, const float *W, int64_t rows, int64_t cols, const double *imp,
                     qg_cuq_result *out) {
  (void)g, (void)W, (void)rows, (void)cols, (void)imp;
  memset(out, 0, sizeof *out);
  return no_cuda();
}
qg_status qg_cuq_gptq(const qg_cuq_grid *g, const qg_cuq_gptq_opts *o, const float *W, const double *H, int64_t rows,
                      int64_t cols, qg_cuq_result *out) {
  (void)g, (void)o, (void)W, (void)H, (void)rows, (void)cols;
  memset(out, 0, sizeof *out);
  return no_cuda();
}
qg_status qg_cuq_fakequant(const qg_cuq_grid *g, const float *dW, float *dOut, int64_t rows, int64_t cols) {
  (void)g, (void)dW, (void)dOut, (void)rows, (void)cols;
  return no_cuda();
}
qg_status qg_cuq_rotate(float *x, const float *s, int64_t n, int64_t m, int inverse) {
  (void)x, (void)s, (void)n, (void)m, (void)inverse;
  return no_cuda();
}
qg_status qg_cuq_lloydmax_index(int bits, const float *x, int64_t n, uint32_t *idx) {
  (void)bits, (void)x, (void)n, (void)idx;
  return no_cuda();
}
qg_status qg_cuq_e8_nearest(const float *x, int64_t nvec, float *y) { (void)x, (void)nvec, (void)y; return no_cuda(); }
qg_status qg_cuq_e8_encode(const qg_e8_codebook *cb, const float *x, int64_t nvec, uint32_t *idx, float *d2) {
  (void)cb, (void)x, (void)nvec, (void)idx, (void)d2;
  return no_cuda();
}
