// GPTQ on the device: quant/gptq.c's algorithm with the linear algebra on the GPU.
//
//  - H^-1's upper Cholesky factor by cuSOLVER: potrf, potri, mirror, potrf (fp64). The
//    CPU works on row-major upper triangles; the same buffer read column-major is the
//    lower triangle, so every cuSOLVER call here uses CUBLAS_FILL_MODE_LOWER.
//  - Damping retried tenfold up to three times when a factorisation fails, as on the CPU.
//  - The lazy-block sweep: GPTQ's update never mixes rows (scales are per row, H^-1 is
//    shared), so one warp owns one row; the block's columns (<= 256) live in the warp's
//    registers, 8 per lane, and column i's value is broadcast by a shuffle, rounded by the
//    inner grid, and its error spread over the block's later columns, in the CPU's
//    arithmetic order. The update of the columns after the block is one cuBLAS DGEMM per
//    block (all rows at once).
//  - Dynamic groups (static_groups=0 with group > 0) end a sweep segment at each group
//    boundary, take the group's current values (with the open block's pending update
//    applied, as group_values() does) and set the group's scales with the grid's scale
//    kernel before the sweep continues.
//  - Dead columns, act_order's permutation and the damping mean are host work (O(n^2)).
#include <stdlib.h>
#include <string.h>

#include "quant/cuda/cuda_quant_e8.h"

#define SLOTS 8 // columns per lane: blocks of up to 256 columns
#define ROWS_PER_CTA 8

// Value of block column o (0-based in the block) from the lanes' registers.
__device__ __forceinline__ double pick(const double *w, int64_t o) {
  int sl = (int)(o >> 5);
  double v = 0;
#pragma unroll
  for (int s = 0; s < SLOTS; s++)
    if (s == sl) v = w[s];
  return __shfl_sync(0xffffffffu, v, (int)(o & 31));
}

// Columns [c0, c1) of the open block [i1, i2): rows are warps.
__global__ void __launch_bounds__(32 * ROWS_PER_CTA) k_sweep(qgq_dgrid g, double *W, const double *U, double *Err,
                                                             const int64_t *perm, int64_t n, int64_t bs, int64_t i1,
                                                             int64_t i2, int64_t c0, int64_t c1) {
  int lane = threadIdx.x & 31;
  int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  if (r >= g.rows) return; // whole warps leave together
  double w[SLOTS];
  double *wr = W + r * n;
#pragma unroll
  for (int s = 0; s < SLOTS; s++) {
    int64_t j = i1 + s * 32 + lane;
    w[s] = j < i2 ? wr[j] : 0.0;
  }
  for (int64_t i = c0; i < c1; i += g.width) {
    if (g.width == 1) {
      double x = pick(w, i - i1);
      double q = qgq_round1(g, r, perm[i], x, lane == 0);
      const double *ui = U + i * n;
      double e = (x - q) / ui[i];
      if (lane == 0) Err[r * bs + (i - i1)] = e;
#pragma unroll
      for (int s = 0; s < SLOTS; s++) {
        int64_t j = i1 + s * 32 + lane;
        if (j == i) w[s] = q;
        else if (j > i && j < i2) w[s] -= e * ui[j];
      }
    } else { // E8: 8 columns jointly; E = (W_b - Q_b) U_bb^-1 by forward substitution
      double x[8], q[8], E[8];
      for (int a = 0; a < 8; a++) x[a] = pick(w, i - i1 + a);
      qgq_round8(g, r, i, x, q, lane == 0);
      for (int a = 0; a < 8; a++) {
        double d = x[a] - q[a];
        for (int b = 0; b < a; b++) d -= E[b] * U[(i + b) * n + i + a];
        E[a] = d / U[(i + a) * n + i + a];
        if (lane == 0) Err[r * bs + (i - i1) + a] = E[a];
      }
#pragma unroll
      for (int s = 0; s < SLOTS; s++) {
        int64_t j = i1 + s * 32 + lane;
        if (j >= i && j < i + 8) {
          w[s] = q[j - i];
        } else if (j >= i + 8 && j < i2) {
          for (int a = 0; a < 8; a++) w[s] -= E[a] * U[(i + a) * n + j];
        }
      }
    }
  }
#pragma unroll
  for (int s = 0; s < SLOTS; s++) {
    int64_t j = i1 + s * 32 + lane;
    if (j < i2) wr[j] = w[s];
  }
}

// gptq.c group_values(): G (rows x gsz) = group columns [c, c + gsz), with the open
// block's pending update applied to those at or after i2.
__global__ void k_group_values(const double *W, const double *U, const double *Err, double *G, int64_t m, int64_t n,
                               int64_t bs, int64_t gsz, int64_t i1, int64_t i2, int64_t c) {
  for (int64_t id = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; id < m * gsz;
       id += (int64_t)gridDim.x * blockDim.x) {
    int64_t r = id / gsz, j = c + id % gsz;
    double v = W[r * n + j];
    if (j >= i2)
      for (int64_t t = i1; t < c; t++) v -= Err[r * bs + (t - i1)] * U[t * n + j];
    G[id] = v;
  }
}

__global__ void k_add_diag(double *A, int64_t n, double d) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    A[i * n + i] += d;
}

// mode 0: row-major lower = row-major upper (mirror); mode 1: row-major lower = 0.
__global__ void k_tri(double *A, int64_t n, int mode) {
  for (int64_t id = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; id < n * n; id += (int64_t)gridDim.x * blockDim.x) {
    int64_t i = id / n, j = id % n;
    if (j < i) A[id] = mode ? 0.0 : A[j * n + i];
  }
}

static unsigned nblk(int64_t n, int t) {
  int64_t b = (n + t - 1) / t;
  return (unsigned)(b < 1 ? 1 : b > 65535 ? 65535 : b);
}

// One potrf or potri on the device; *info gets LAPACK's info.
static qg_status factor(cusolverDnHandle_t sv, int inverse, double *A, int n, double *work, int lwork, int *dinfo,
                        int *info) {
  if (inverse) QGQ_SOLVER(cusolverDnDpotri(sv, CUBLAS_FILL_MODE_LOWER, n, A, n, work, lwork, dinfo));
  else QGQ_SOLVER(cusolverDnDpotrf(sv, CUBLAS_FILL_MODE_LOWER, n, A, n, work, lwork, dinfo));
  QGQ_CU(cudaMemcpy(info, dinfo, sizeof *info, cudaMemcpyDeviceToHost));
  return QG_OK;
}

// gptq.c inverse_cholesky_upper() on the device: U (row-major upper) with U^T U =
// (H + damp I)^-1 from dH; *info = the failing call's info (0 on success).
static qg_status inverse_cholesky_upper(cusolverDnHandle_t sv, const double *dH, int64_t n, double damp, double *dU,
                                        double *work, int lwork, int *dinfo, int *info) {
  QGQ_CU(cudaMemcpy(dU, dH, sizeof(double) * (size_t)(n * n), cudaMemcpyDeviceToDevice));
  k_add_diag<<<nblk(n, 256), 256>>>(dU, n, damp);
  QG_TRY(qgq_launched("k_add_diag"));
  QG_TRY(factor(sv, 0, dU, (int)n, work, lwork, dinfo, info));
  if (*info) return QG_OK;
  QG_TRY(factor(sv, 1, dU, (int)n, work, lwork, dinfo, info));
  if (*info) return QG_OK;
  k_tri<<<nblk(n * n, 256), 256>>>(dU, n, 0);
  QG_TRY(qgq_launched("k_tri"));
  QG_TRY(factor(sv, 0, dU, (int)n, work, lwork, dinfo, info));
  if (*info) return QG_OK;
  k_tri<<<nblk(n * n, 256), 256>>>(dU, n, 1);
  return qgq_launched("k_tri");
}

typedef struct {
  double d;
  int64_t i;
} diag_idx;
static int cmp_diag_desc(const void *a, const void *b) { // gptq.c's order: descending, ties by index
  const diag_idx *x = (const diag_idx *)a, *y = (const diag_idx *)b;
  if (x->d != y->d) return x->d > y->d ? -1 : 1;
  return (x->i > y->i) - (x->i < y->i);
}

extern "C" qg_status qg_cuq_gptq(const qg_cuq_grid *g, const qg_cuq_gptq_opts *o, const float *W, const double *H,
                                 int64_t rows, int64_t cols, qg_cuq_result *out) {
  memset(out, 0, sizeof *out);
  QG_TRY(qg_cuq_grid_fits(g, rows, cols));
  cublasHandle_t blas;
  cusolverDnHandle_t sv;
  QG_TRY(qgq_ctx(&blas, &sv));
  int64_t m = rows, n = cols, w = g->width;
  int64_t bs = o->blocksize < n ? o->blocksize : n;
  bs = (bs + w - 1) / w * w;
  if (bs > 32 * SLOTS) bs = 32 * SLOTS; // a larger lazy block only reorders rounding
  int64_t gsz = g->group ? g->group : n;
  int dynamic = g->group && !o->static_groups;
  if (o->act_order && (w != 1 || dynamic))
    return qg_fail(QG_ERR_INPUT, "gptq: act_order needs a scalar grid and static groups");

  qgq_state st;
  memset(&st, 0, sizeof st);
  double *hW = (double *)malloc(sizeof(double) * (size_t)(m * n));
  double *hH = (double *)malloc(sizeof(double) * (size_t)(n * n));
  double *hT = (double *)malloc(sizeof(double) * (size_t)(n * n > m * n ? n * n : m * n));
  double *imp = (double *)malloc(sizeof(double) * (size_t)n), *work = NULL;
  int64_t *perm = (int64_t *)malloc(sizeof(int64_t) * (size_t)n), *dperm = NULL;
  diag_idx *di = (diag_idx *)malloc(sizeof(diag_idx) * (size_t)n);
  double *dW = NULL, *dH = NULL, *dU = NULL, *dErr = NULL, *dG = NULL, *dimp = NULL;
  int *dinfo = NULL, lwork = 0, lw2 = 0, info = 0, tries = 0;
  double pd = o->percdamp, mean = 0;
  qg_status s = QG_OK;
  if (!hW || !hH || !hT || !imp || !perm || !di) {
    s = qg_fail(QG_ERR_NOMEM, "out of memory (%lld x %lld)", (long long)m, (long long)n);
    goto done;
  }
  // dead columns: H_ii = 1, W = 0 (inputs that never fire carry no information)
  for (int64_t i = 0; i < m * n; i++) hW[i] = W[i];
  memcpy(hH, H, sizeof(double) * (size_t)(n * n));
  for (int64_t j = 0; j < n; j++)
    if (hH[j * n + j] == 0.0) {
      out->dead++;
      hH[j * n + j] = 1.0;
      for (int64_t r = 0; r < m; r++) hW[r * n + j] = 0.0;
    }
  for (int64_t j = 0; j < n; j++) imp[j] = hH[j * n + j], perm[j] = j;
  QGQ_GO(qgq_state_init(&st, g, m, n));
  QGQ_GO(qg_cuq_alloc((void **)&dW, sizeof(double) * (size_t)(m * n)));
  QGQ_GO(qg_cuq_alloc((void **)&dH, sizeof(double) * (size_t)(n * n)));
  QGQ_GO(qg_cuq_alloc((void **)&dU, sizeof(double) * (size_t)(n * n)));
  QGQ_GO(qg_cuq_alloc((void **)&dErr, sizeof(double) * (size_t)(m * bs)));
  QGQ_GO(qg_cuq_alloc((void **)&dG, sizeof(double) * (size_t)(m * gsz)));
  QGQ_GO(qg_cuq_alloc((void **)&dimp, sizeof(double) * (size_t)n));
  QGQ_GO(qg_cuq_alloc((void **)&dperm, sizeof(int64_t) * (size_t)n));
  QGQ_GO(qg_cuq_alloc((void **)&dinfo, sizeof(int)));
  QGQ_GO(qg_cuq_upload(dW, hW, sizeof(double) * (size_t)(m * n)));
  QGQ_GO(qg_cuq_upload(dimp, imp, sizeof(double) * (size_t)n));
  // per-row and static group scales from the dead-fixed original weights
  if (!dynamic) QGQ_GO(qgq_set_scales(&st, dW, n, 0, n / gsz, dimp));
  if (o->act_order) {
    for (int64_t j = 0; j < n; j++) di[j].d = imp[j], di[j].i = j;
    qsort(di, (size_t)n, sizeof *di, cmp_diag_desc);
    for (int64_t j = 0; j < n; j++) perm[j] = di[j].i;
    for (int64_t r = 0; r < m; r++)
      for (int64_t j = 0; j < n; j++) hT[r * n + j] = hW[r * n + perm[j]];
    memcpy(hW, hT, sizeof(double) * (size_t)(m * n));
    for (int64_t i = 0; i < n; i++)
      for (int64_t j = 0; j < n; j++) hT[i * n + j] = hH[perm[i] * n + perm[j]];
    memcpy(hH, hT, sizeof(double) * (size_t)(n * n));
    for (int64_t j = 0; j < n; j++) imp[j] = hH[j * n + j];
    QGQ_GO(qg_cuq_upload(dW, hW, sizeof(double) * (size_t)(m * n)));
    QGQ_GO(qg_cuq_upload(dimp, imp, sizeof(double) * (size_t)n));
  }
  QGQ_GO(qg_cuq_upload(dperm, perm, sizeof(int64_t) * (size_t)n));
  QGQ_GO(qg_cuq_upload(dH, hH, sizeof(double) * (size_t)(n * n)));
  for (int64_t j = 0; j < n; j++) mean += hH[j * n + j];
  mean /= (double)n;
  {
    cusolverStatus_t e1 = cusolverDnDpotrf_bufferSize(sv, CUBLAS_FILL_MODE_LOWER, (int)n, dU, (int)n, &lwork);
    if (e1 != CUSOLVER_STATUS_SUCCESS) {
      s = qgq_solver_fail(e1, "cusolverDnDpotrf_bufferSize");
      goto done;
    }
    e1 = cusolverDnDpotri_bufferSize(sv, CUBLAS_FILL_MODE_LOWER, (int)n, dU, (int)n, &lw2);
    if (e1 != CUSOLVER_STATUS_SUCCESS) {
      s = qgq_solver_fail(e1, "cusolverDnDpotri_bufferSize");
      goto done;
    }
    if (lw2 > lwork) lwork = lw2;
    QGQ_GO(qg_cuq_alloc((void **)&work, sizeof(double) * (size_t)(lwork > 0 ? lwork : 1)));
  }
  for (; tries < 4; tries++, pd = pd > 0 ? pd * 10 : 0.01) {
    QGQ_GO(inverse_cholesky_upper(sv, dH, n, pd * mean, dU, work, lwork, dinfo, &info));
    if (!info) break;
  }
  if (info) {
    s = qg_fail(QG_ERR_INPUT, "gptq: Hessian is not positive definite even with percdamp=%g (cuSOLVER info %d)",
                pd / 10, info);
    goto done;
  }
  out->damp_tries = tries, out->damp_used = pd;
  // the lazy-block sweep
  for (int64_t i1 = 0; i1 < n; i1 += bs) {
    int64_t i2 = i1 + bs < n ? i1 + bs : n, nb = i2 - i1;
    for (int64_t c = i1; c < i2;) {
      int64_t cend = i2;
      if (dynamic) {
        if (c % gsz == 0) {
          k_group_values<<<nblk(m * gsz, 256), 256>>>(dW, dU, dErr, dG, m, n, bs, gsz, i1, i2, c);
          QGQ_GO(qgq_launched("k_group_values"));
          QGQ_GO(qgq_set_scales(&st, dG, gsz, c / gsz, 1, dimp + c));
        }
        int64_t next = (c / gsz + 1) * gsz;
        if (next < cend) cend = next;
      }
      k_sweep<<<(unsigned)((m + ROWS_PER_CTA - 1) / ROWS_PER_CTA), 32 * ROWS_PER_CTA>>>(st.d, dW, dU, dErr, dperm, n,
                                                                                       bs, i1, i2, c, cend);
      QGQ_GO(qgq_launched("k_sweep"));
      c = cend;
    }
    if (i2 < n) { // W[:, i2:] -= Err (m x nb) @ U[i1:i2, i2:], in column-major terms
      const double alpha = -1.0, beta = 1.0;
      cublasStatus_t e2 = cublasDgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)(n - i2), (int)m, (int)nb, &alpha,
                                      dU + i1 * n + i2, (int)n, dErr, (int)bs, &beta, dW + i2, (int)n);
      if (e2 != CUBLAS_STATUS_SUCCESS) {
        s = qgq_blas_fail(e2, "cublasDgemm (lazy-block update)");
        goto done;
      }
    }
  }
  s = qgq_state_download(&st, out);
done:
  if (s) qg_cuq_result_free(out);
  qgq_state_free(&st);
  qg_cuq_free(dW), qg_cuq_free(dH), qg_cuq_free(dU), qg_cuq_free(dErr), qg_cuq_free(dG), qg_cuq_free(dimp);
  qg_cuq_free(dperm), qg_cuq_free(dinfo), qg_cuq_free(work);
  free(hW), free(hH), free(hT), free(imp), free(perm), free(di);
  return s;
}
