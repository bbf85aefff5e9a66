/* The quantizer plug-in interface (DESIGN.md: "Quantizers are plug-ins").
 *
 * A quantizer turns one weight matrix W (rows = output channels, cols = inputs, fp32,
 * row-major) plus an optional fp64 Hessian (cols x cols) or per-column importance into a
 * qg_qtensor: a list of named *sections* (codes with their significant bit width, fp16
 * scales, norms, codebook ids, seeds, raw bytes) held as plain arrays. The artifact writer
 * (io/qgz.c) stores sections generically, so a new quantizer needs no format change; the
 * exact packed size of a qg_qtensor follows from its sections alone.
 *
 * Life of a tensor:
 *   qg_qconfig c;  qg_qconfig_parse("rowwise", "bits=6 group=64", &c);   // validated
 *   qg_qconfig_can_take(&c, name, ndim, shape);                         // rows/cols fit?
 *   qg_qinput in = {.name = name, .w = W, .rows = r, .cols = k, ...};
 *   qg_qtensor q;  qg_quantize(&c, &in, &q);                             // codes + side data
 *   qg_dequantize(&c, &q, Wq);                                           // rows*cols floats
 *   qg_qtensor_packed_bytes(&q);                                         // exact bytes
 *
 * A quantizer implements `struct qg_quantizer` (one file each under quant/, the table written
 * with designated initializers) and is listed in the registry table in quant/registry.c
 * (add one line there). A grid quantizer's parsed options are a public struct in its
 * header (quant/rowwise.h, ...), which other engines such as the GPU path read directly. Options are "key=value"
 * words; a quantizer's parse() reads them through qg_opt_*() below, which remember every key
 * asked for, so an unknown key is reported with the list of valid ones automatically (also
 * for composites such as gptq + its inner grid).
 *
 * GPTQ (quant/gptq.c) drives column order and error feedback and delegates the rounding to
 * an *inner grid* (struct qg_grid): any quantizer whose `grid` member is non-NULL can serve,
 * e.g. "gptq grid=rowwise bits=6" or "gptq grid=lloydmax bits=3". See qg_grid below.
 *
 * Conventions: all functions return qg_status and leave a message via qg_fail naming the
 * tensor and quantizer; nothing prints. Sections own their memory (malloc'd). */
#ifndef QG_QUANT_QUANTIZER_H
#define QG_QUANT_QUANTIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/status.h"
#include "core/tensor.h"
#include "core/util.h"
#include "io/qtensor.h"

/* ---- options ------------------------------------------------------------------------ */

/* Parsed "k=v" words. Separators: spaces, tabs or commas. A bare word "k" means "k=1". */
typedef struct {
  char *key, *val;
  int used; /* set when a qg_opt_*() call consumed it */
} qg_opt;

/* What one qg_opt_*() call declares about its key: the parser's own type, range and
 * default, recorded in describe mode (qg_quantizer_describe) so the listing cannot drift
 * from what parse() accepts. */
typedef enum { QG_OPT_INT = 0, QG_OPT_NUM, QG_OPT_CHOICE, QG_OPT_STR } qg_opt_type;
typedef struct {
  char *key;
  qg_opt_type type;
  double lo, hi, def;          /* INT and NUM (INT values are exact below 2^53) */
  const char *const *choices;  /* CHOICE: the words (static); def is the default's index */
  const char *sdef;            /* STR: the default (static, may be NULL) */
} qg_opt_desc;

typedef struct {
  qg_opt *v;
  int n;
  char **asked; /* every key a parser asked for, in order (for "valid options: ...") */
  int n_asked;
  int describe;       /* set by the caller: record each key's declaration in desc */
  qg_opt_desc *desc;  /* one per distinct key, in the order parse() asked */
  int n_desc;
} qg_opts;

qg_status qg_opts_parse(const char *text, qg_opts *o); /* duplicate keys are an error */
void qg_opts_free(qg_opts *o);
/* Readers: when the key is absent *out = def and QG_OK. A present but malformed or
 * out-of-range value is QG_ERR_INPUT naming quantizer `who`, key, value and valid range. */
qg_status qg_opt_int(qg_opts *o, const char *who, const char *key, int64_t lo, int64_t hi, int64_t def,
                     int64_t *out);
qg_status qg_opt_num(qg_opts *o, const char *who, const char *key, double lo, double hi, double def, double *out);
/* One of a NULL-terminated list of words; *out is its index. */
qg_status qg_opt_choice(qg_opts *o, const char *who, const char *key, const char *const *choices, int def, int *out);
/* Raw string value (or def, may be NULL); the pointer lives as long as o. */
qg_status qg_opt_str(qg_opts *o, const char *who, const char *key, const char *def, const char **out);
/* After parse: a key nobody consumed is QG_ERR_INPUT "who: unknown option 'k' (valid: a, b, c)". */
qg_status qg_opts_check_unused(const qg_opts *o, const char *who);

/* ---- the input of one quantization ---------------------------------------------------- */

typedef struct {
  const char *name;        /* tensor name, for messages (may be NULL in tests) */
  const float *w;          /* rows x cols, row-major */
  int64_t rows, cols;
  int ndim;                /* the source shape (rows/cols are its matrix view); ndim 0 =  */
  int64_t shape[QG_MAX_DIMS]; /*   "same as [rows, cols]" */
  qg_dtype dtype;          /* the source dtype (QG_F32 when w is the data itself) */
  const qg_tensor *src;    /* the source tensor, or NULL; passthrough of non-float data */
  const double *hessian;   /* cols x cols, symmetric, fp64 (H = 2/n sum x x^T), or NULL */
  const double *importance; /* cols per-column importance (e.g. diag H), or NULL. When only
                             * hessian is given, quantizers may use its diagonal */
  uint64_t seed;           /* for randomised quantizers (sign flips...); the pipeline derives
                            * it from the spec's seed and the tensor name */
} qg_qinput;

/* ---- the inner grid GPTQ rounds with ------------------------------------------------ */

/* A grid rounds columns of a weight matrix onto its code points, a block of `width`
 * columns at a time (1 for scalar grids such as rowwise and Lloyd-Max, 8 for E8, the
 * rotation group for turbo: see width_of), with per-row or per-group scales that GPTQ
 * asks it to set. It works on fp64 copies of the (error-updated) weights. Column indices are always *original* column indices, so codes
 * land in the layout the quantizer's own dequantize() reads, whatever order GPTQ visits
 * columns in (act_order). Call order for one tensor:
 *   begin → set_scale(gi) for every group before its first round → round(col) for every
 *   block of width columns → finish (adds sections to the qg_qtensor) → free.
 * Round-to-nearest with the same grid is exactly: set every scale from W, round every
 * column of W (rowwise's own quantize() works this way). */
typedef struct qg_grid {
  int width; /* columns rounded together; cols must be a multiple of it (see width_of) */
  /* Group size in input columns that one scale covers (0 = one per row); a multiple of
   * width. GPTQ sets the scale of group gi before rounding its first column. */
  int64_t (*group)(const void *cfg);
  /* Creates the rounding state for the tensor described by in (rows, cols, name, seed;
   * in->w may be read for global statistics but GPTQ passes the original weights). */
  qg_status (*begin)(const void *cfg, const qg_qinput *in, void **st);
  /* Sets the scale(s) of group gi for all rows (gi = 0 and the whole row when group = 0)
   * from x: rows x n values with row stride ldx (the group's current weights, in the
   * column order GPTQ holds them), with optional per-column importance imp (n values, in
   * the same order) for clip searches. */
  qg_status (*set_scale)(void *st, int64_t gi, const double *x, int64_t ldx, int64_t n, const double *imp);
  /* Rounds original columns col .. col+width-1 of every row: x holds them (rows x width,
   * row stride ldx); writes the dequantized values to q (row stride ldq; q may equal x)
   * and keeps the codes. */
  void (*round)(void *st, int64_t col, const double *x, int64_t ldx, double *q, int64_t ldq);
  /* Moves codes, scales and side data into out as sections. */
  qg_status (*finish)(void *st, qg_qtensor *out);
  void (*free)(void *st);
  /* Optional: the width for a config, when it is an option (turbo: its rotation group);
   * NULL means the constant `width`. The width in force is width_of ? width_of(cfg) : width. */
  int (*width_of)(const void *cfg);
} qg_grid;

/* ---- the plug-in ------------------------------------------------------------------- */

typedef struct qg_quantizer {
  const char *name;    /* registry key, e.g. "rowwise" */
  const char *summary; /* one line for help */
  /* Reads options through qg_opt_*() into a malloc'd config (validated: every later call
   * may trust it). Unconsumed keys are reported by the caller (qg_qconfig_parse). */
  qg_status (*parse)(qg_opts *o, void **cfg);
  void (*free_cfg)(void *cfg);
  /* Appends the canonical option string (every option, defaults included, fixed order),
   * which parses back to the same config. The artifact records it. */
  void (*canon)(const void *cfg, qg_buf *out);
  /* Whether the tensor fits (e.g. cols divisible by the group, 2-D only); otherwise
   * QG_ERR_INPUT "quantizer 'q' cannot take 'name' [r, c]: why". */
  qg_status (*can_take)(const void *cfg, const char *name, int ndim, const int64_t *shape);
  /* Quantizes in (rows x cols) into out: sections only; qg_quantize fills name, method,
   * options and shape around it. */
  qg_status (*quantize)(const void *cfg, const qg_qinput *in, qg_qtensor *out);
  /* Reconstructs rows*cols floats from out's sections (validating every section it reads:
   * kinds, counts, code ranges). */
  qg_status (*dequantize)(const void *cfg, const qg_qtensor *q, float *w);
  /* Optional: reconstruct in the tensor's own dtype (non-float passthrough); when NULL the
   * loaded tensor is float32 from dequantize(). out is allocated by the callee. */
  qg_status (*dequantize_native)(const void *cfg, const qg_qtensor *q, qg_tensor *out);
  /* What each option means: pairs {"key", "meaning", ..., NULL}, one for every key
   * parse() asks for (tests/test_cli_usab.c checks both ways). Type, range and default
   * come from parse() itself (qg_quantizer_describe). */
  const char *const *option_docs;
  /* Optional: non-NULL when this quantizer can be GPTQ's inner grid. */
  const qg_grid *grid;
  /* 1 when quantize() cannot run without a calibration Hessian (in->hessian), for every
   * config: callers collect Hessians when some rule's quantizer sets it. Quantizers that
   * merely use one when given (search objectives, turbo's eq) leave it 0. */
  int needs_hessian;
} qg_quantizer;

/* ---- registry (quant/registry.c) -------------------------------------------------- */

/* The table, NULL-terminated. */
extern const qg_quantizer *const qg_quantizers[];
/* By name; NULL when unknown. */
const qg_quantizer *qg_quantizer_find(const char *name);
/* By name; unknown is QG_ERR_INPUT "unknown quantizer 'x' (valid: rowwise, gptq, ...)". */
qg_status qg_quantizer_lookup(const char *name, const qg_quantizer **out);

/* The options of q as parse() declares them, with meanings from option_docs (and, for a
 * composite such as gptq, its default inner grid's): runs parse() on no options in
 * describe mode. *desc (n entries, owned: qg_opts_free of *o) lives in o. */
qg_status qg_quantizer_describe(const qg_quantizer *q, qg_opts *o);
/* The meaning of key for q (or its inner grids), or NULL. */
const char *qg_quantizer_option_doc(const qg_quantizer *q, const char *key);
/* The listing `quantgolf quantizers` prints: every quantizer, every option with its type,
 * range, default and meaning. */
qg_status qg_quantizers_help(qg_buf *out);

/* ---- a parsed, validated configuration ---------------------------------------------- */

typedef struct {
  const qg_quantizer *q;
  void *cfg;
  char *canon; /* canonical options (owned) */
} qg_qconfig;

/* Looks the method up, parses the options ("" or NULL for defaults), rejects unknown keys
 * listing the valid ones, and records the canonical string. */
qg_status qg_qconfig_parse(const char *method, const char *options, qg_qconfig *out);
void qg_qconfig_free(qg_qconfig *c);
qg_status qg_qconfig_can_take(const qg_qconfig *c, const char *name, int ndim, const int64_t *shape);

/* quantize() plus bookkeeping: checks rows/cols against the input, fills out's name,
 * method, canonical options and shape. out is initialised here. */
qg_status qg_quantize(const qg_qconfig *c, const qg_qinput *in, qg_qtensor *out);
/* qg_quantize's bookkeeping without the quantizing: checks the matrix view and can_take,
 * fills name, method, options, shape and dtype of out (for other engines, e.g. the GPU). */
qg_status qg_qtensor_begin(const qg_qconfig *c, const qg_qinput *in, qg_qtensor *out);
/* Dequantizes q (rows*cols floats) with the config parsed from its method and options. */
qg_status qg_dequantize(const qg_qconfig *c, const qg_qtensor *q, float *w);

/* ---- helpers for implementers ------------------------------------------------------- */

/* "quantizer 'q' cannot take 'name' [shape]: <why>" as QG_ERR_INPUT. */
qg_status qg_cannot_take(const char *quant, const char *name, int ndim, const int64_t *shape, const char *fmt, ...)
    QG_PRINTF(5, 6);
/* Bits for a code in [0, n): ceil(log2 n), at least 1. */
int qg_bits_for(uint64_t n);

#endif
