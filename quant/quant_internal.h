/* Shared internals of quant/: the built-in quantizers' tables and helpers that more than
 * one quantizer uses. Not part of the plug-in interface (quant/quantizer.h). */
#ifndef QG_QUANT_INTERNAL_H
#define QG_QUANT_INTERNAL_H

#include "io/contest.h"
#include "quant/quantizer.h"

/* The built-in quantizers, one file each: quant/<name>.c, except e8 (quant/e8_quantizer.c,
 * beside the lattice in quant/e8.c), lloydmax (quant/lloydmax_quantizer.c, beside its
 * codebooks in quant/lloydmax.c), contest-int8 (quant/contest_int8.c) and the four trivial
 * passthroughs fp16, bf16, fp32, raw (quant/passthrough.c). */
extern const qg_quantizer qg_quantizer_rowwise;
extern const qg_quantizer qg_quantizer_gptq;
extern const qg_quantizer qg_quantizer_lloydmax;
extern const qg_quantizer qg_quantizer_turbo;
extern const qg_quantizer qg_quantizer_e8;
extern const qg_quantizer qg_quantizer_contest_int8;
extern const qg_quantizer qg_quantizer_fp16;
extern const qg_quantizer qg_quantizer_bf16;
extern const qg_quantizer qg_quantizer_fp32;
extern const qg_quantizer qg_quantizer_raw;

/* The words of the search objectives (index 0 mse, 1 hessian), NULL-terminated, shared by
 * every quantizer with a clip or scale search. */
extern const char *const qg_objective_names[];

/* v as a stored fp16 scale: fp16-representable, finite (at most 65504), and 0 for v <= 0
 * or NaN, so what is stored is what the rounding used. */
float qg_f16r(double v);

/* Round-to-nearest through a grid: every scale from W (importance: in->importance, else
 * diag of in->hessian, else none), every column rounded, sections into out. */
qg_status qg_grid_rtn(const qg_grid *g, const void *cfg, const qg_qinput *in, qg_qtensor *out);

/* A grid's block width for this config: width_of(cfg) when the grid has one, else width. */
int qg_grid_width(const qg_grid *g, const void *cfg);

/* Per-row work of the grids runs on the thread pool (core/threadpool.h): fn(ctx, task,
 * thread) over [0, n), thread < qg_quant_threads() indexing per-thread scratch. Rows are
 * independent, so results are bitwise those of a sequential loop. With qg_quant_serial
 * set (tests compare the two) the loop runs on the calling thread with thread = 0. Not
 * reentrant: never call from inside a pool task. */
extern int qg_quant_serial;
int qg_quant_threads(void);
void qg_quant_parallel_for(int64_t n, void (*fn)(void *ctx, int64_t task, int thread), void *ctx);

#endif
