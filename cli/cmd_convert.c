/* quantgolf convert IN OUT.safetensors: any readable checkpoint to safetensors. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "quant/artifact.h"

void qg_cmd_convert_help(void) {
  printf("usage: quantgolf convert IN OUT.safetensors\n\n"
         "Reads any checkpoint quantgolf understands (safetensors, torch .pt, contest .int8.ptz)\n"
         "and writes it as safetensors with the contest's tensor names. Each tensor keeps the\n"
         "dtype the contest's loader would see: a .ptz is dequantized exactly as\n"
         "train_gpt.py's dequantize_state_dict_int8 does (bf16 rounding included). The output is\n"
         "written to a temporary name and renamed, so a failure leaves no partial file.\n");
}

int qg_cmd_convert(int argc, char **argv) {
  const char *words[2] = {0};
  qg_arg_list io = {words, 0, 2};
  const qg_args_spec spec = {.cmd = "convert", .flags = QG_ARGS_WORDS_ONLY, .words = &io,
                             .too_many = "expected IN and OUT.safetensors"};
  if (qg_cli_parse(&spec, &argc, argv)) return 2;
  if (io.n != 2) return qg_cli_usage_error("convert", "expected IN and OUT.safetensors");
  const char *in = words[0], *out = words[1];
  if (!qg_ends_with(out, ".safetensors"))
    return qg_cli_usage_error("convert", "output '%s' must end in .safetensors", out);
  qg_state s;
  qg_format f;
  qg_status st = qg_checkpoint_load(in, &s, &f);
  if (st) return qg_cli_report("convert", st);
  if ((st = qg_state_set_meta(&s, "source_format", qg_format_name(f))) ||
      (st = qg_state_set_meta(&s, "converted_by", "quantgolf " QG_VERSION))) {
    qg_state_free(&s);
    return qg_cli_report("convert", st);
  }
  st = qg_safetensors_write(out, &s);
  if (!st) fprintf(stderr, "quantgolf convert: %s (%s) -> %s: %d tensors, %lld parameters\n", in, qg_format_name(f), out,
                   s.n, (long long)qg_state_numel(&s));
  qg_state_free(&s);
  return st ? qg_cli_report("convert", st) : 0;
}
