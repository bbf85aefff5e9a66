/* The quantizer registry: one table, looked up by name. To add a quantizer, define its
 * `const qg_quantizer` in its own file and add one line here. */
#include "quant/quant_internal.h"

const qg_quantizer *const qg_quantizers[] = {
    &qg_quantizer_rowwise,
    &qg_quantizer_gptq,
    &qg_quantizer_lloydmax,
    &qg_quantizer_turbo,
    &qg_quantizer_e8,
    &qg_quantizer_contest_int8,
    &qg_quantizer_fp16,
    &qg_quantizer_bf16,
    &qg_quantizer_fp32,
    &qg_quantizer_raw,
    NULL,
};
