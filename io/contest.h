/* The contest's constants and rules, in one place for both users: the int8 export
 * (io/contest_int8.c, train_gpt.py's quantize_state_dict_int8) and the spec planner's
 * passthrough (quant/spec.c), plus ATen's quantile, which the export's clip and rowwise's
 * clip=pct both compute. */
#ifndef QG_IO_CONTEST_H
#define QG_IO_CONTEST_H

#include <stdint.h>

/* INT8_KEEP_FLOAT_MAX_NUMEL: float tensors of at most this many elements are kept float. */
#define QG_CONTEST_KEEP_FLOAT_MAX_NUMEL 65536
/* INT8_CLIP_PERCENTILE, and the same as the quantile level torch.quantile is given. */
#define QG_CONTEST_CLIP_PERCENTILE 99.99984
#define QG_CONTEST_CLIP_Q 0.9999984 /* INT8_CLIP_PERCENTILE / 100 */

/* 1 when name matches CONTROL_TENSOR_NAME_PATTERNS (substrings, as the contest matches
 * them): such tensors are kept as fp32. */
int qg_contest_is_control(const char *name);

/* torch.quantile(v, q) with linear interpolation as ATen computes it: q converted to
 * float32, rank = q * (n - 1) in float32, below = floor, above = ceil, weight = rank -
 * below, then ATen's vectorised CPU lerp, which evaluates base + coeff*(hi-lo) as one fused
 * multiply-add with (coeff, base) = (w, lo) for w < 0.5 and (w - 1, hi) otherwise. v (n
 * values) is reordered; 0 for n <= 0. */
float qg_quantile_f32(float *v, int64_t n, double q);
/* The contest's per-row (or per-tensor) clip: qg_quantile_f32 at QG_CONTEST_CLIP_Q. */
float qg_contest_clip(float *v, int64_t n);

#endif
