/* A vectorised exp for the CPU backend's hot loops, and the attention rows' softmax
 * numerator built on it (shared by the forward pass and the backward pass that recomputes
 * it, so both see the same probabilities to the bit).
 *
 * The exp is a Cephes-style 2^k * p(r): k = round(x log2 e), r = x - k ln 2 (ln 2 split in
 * two so r is exact), p a degree-7 polynomial, every step a plain IEEE single-precision
 * multiply or add (no FMA). Each SIMD path (SSE2, present on every x86-64; AVX2, chosen
 * at run time where the CPU has it; a scalar loop elsewhere) performs the same operations
 * in the same order, so all of them give the same bits: a result depends on the input
 * only, never on the machine's vector width.
 *
 * Accuracy (tests/test_vexp.c measures it densely): relative error <= 1.2e-7 (one ulp;
 * 8.1e-8 is the worst of 37 million inputs) against the fp64 exp for x in [-87.33, 88.37];
 * exactly 0 below -87.3365 (where expf returns subnormals, < 1.2e-38), +inf above 88.376,
 * NaN for NaN. */
#ifndef QG_KERNELS_CPU_SOFTMAX_H
#define QG_KERNELS_CPU_SOFTMAX_H

#include <stdint.h>

/* Instruction set of a path; QG_ISA_BEST is what this CPU runs by default. */
typedef enum { QG_ISA_SCALAR = 0, QG_ISA_SSE2 = 1, QG_ISA_AVX2 = 2, QG_ISA_BEST = 3 } qg_cpu_isa;

/* The best path this CPU supports (never QG_ISA_BEST). */
qg_cpu_isa qg_cpu_isa_best(void);
/* Whether `isa` can run here. */
int qg_cpu_isa_available(qg_cpu_isa isa);

/* One exp, the polynomial every path computes (the scalar reference). */
float qg_cpu_expf(float x);

/* y[i] = exp(x[i]) for i < n; y may equal x. */
void qg_cpu_vexpf(qg_cpu_isa isa, float *y, const float *x, int64_t n);

/* row[0..n) <- exp(row - max row); returns 1 / their sum. The sum runs over eight
 * interleaved partial sums (element s into lane s % 8) combined in a fixed tree, on every
 * path alike. n >= 1. */
float qg_cpu_softmax_exp_isa(qg_cpu_isa isa, float *row, int n);
static inline float qg_cpu_softmax_exp(float *row, int n) { return qg_cpu_softmax_exp_isa(QG_ISA_BEST, row, n); }

#endif
