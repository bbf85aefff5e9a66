/* The CPU-only build's answers to train/cuda/cuda_optim.h: CMake compiles this file in
 * place of train/cuda's .cu files when QG_CUDA is off. */
#include "train/cuda/cuda_optim.h"

static qg_status no_cuda(void) {
  return qg_fail(QG_ERR_UNSUPPORTED, "the CUDA optimizer kernels are not compiled in (configured with -DQG_CUDA=OFF "
                                     "or no nvcc)");
}
qg_status qg_cuda_optim_zero(float *p, int64_t n) {
  (void)p, (void)n;
  return no_cuda();
}
qg_status qg_cuda_adam_step(float *p, const float *g, float *m, float *v, int64_t n, double lr, double b1, double b2,
                            double eps, int64_t t) {
  (void)p, (void)g, (void)m, (void)v, (void)n, (void)lr, (void)b1, (void)b2, (void)eps, (void)t;
  return no_cuda();
}
qg_status qg_cuda_newton_schulz5(float *out, const float *G, int rows, int cols, int steps, qg_precision prec) {
  (void)out, (void)G, (void)rows, (void)cols, (void)steps, (void)prec;
  return no_cuda();
}
qg_status qg_cuda_muon_step(float *p, const float *g, float *buf, int rows, int cols, double lr, double momentum,
                            int steps, qg_precision prec) {
  (void)p, (void)g, (void)buf, (void)rows, (void)cols, (void)lr, (void)momentum, (void)steps, (void)prec;
  return no_cuda();
}
qg_status qg_cuda_qat_mask(const float *w, const float *weff, float *g, int64_t rows, int64_t cols) {
  (void)w, (void)weff, (void)g, (void)rows, (void)cols;
  return no_cuda();
}
qg_status qg_cuda_optim_sync(void) { return no_cuda(); }
void qg_cuda_optim_release(void) {}
