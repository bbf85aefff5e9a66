/* quantgolf convert IN OUT.safetensors|OUT.pt: any readable checkpoint to safetensors or a
 * torch.save state dict. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "io/torchfile.h"
#include "quant/artifact.h"

void qg_cmd_convert_help(void) {
  printf("usage: quantgolf convert IN OUT.safetensors|OUT.pt\n\n"
         "Reads any checkpoint quantgolf understands (safetensors, torch .pt, contest .int8.ptz,\n"
         "quantgolf .qgz) and writes it as safetensors or as a torch.save state dict (an\n"
         "OrderedDict that torch.load(..., weights_only=True) reads) with the contest's tensor\n"
         "names. Each tensor keeps the dtype the contest's loader would see: a .ptz is\n"
         "dequantized exactly as train_gpt.py's dequantize_state_dict_int8 does (bf16 rounding\n"
         "included); a .qgz gives exactly quantgolf's dequantized weights (float32, passthrough\n"
         "tensors in their stored dtype). The output is written to a temporary name and renamed,\n"
         "so a failure leaves no partial file.\n");
}

int qg_cmd_convert(int argc, char **argv) {
  const char *words[2] = {0};
  qg_arg_list io = {words, 0, 2};
  const qg_args_spec spec = {.cmd = "convert", .flags = QG_ARGS_WORDS_ONLY, .words = &io,
                             .too_many = "expected IN and OUT.safetensors or OUT.pt"};
  if (qg_cli_parse(&spec, &argc, argv)) return 2;
  if (io.n != 2) return qg_cli_usage_error("convert", "expected IN and OUT.safetensors or OUT.pt");
  const char *in = words[0], *out = words[1];
  int pt = qg_ends_with(out, ".pt");
  if (!pt && !qg_ends_with(out, ".safetensors"))
    return qg_cli_usage_error("convert", "output '%s' must end in .safetensors or .pt", out);
  qg_state s;
  qg_format f;
  qg_status st = qg_checkpoint_load(in, &s, &f);
  if (st) return qg_cli_report("convert", st);
  if ((st = qg_state_set_meta(&s, "source_format", qg_format_name(f))) ||
      (st = qg_state_set_meta(&s, "converted_by", "quantgolf " QG_VERSION))) {
    qg_state_free(&s);
    return qg_cli_report("convert", st);
  }
  st = pt ? qg_pt_save(out, &s) : qg_safetensors_write(out, &s);
  if (!st) fprintf(stderr, "quantgolf convert: %s (%s) -> %s: %d tensors, %lld parameters\n", in, qg_format_name(f), out,
                   s.n, (long long)qg_state_numel(&s));
  qg_state_free(&s);
  return st ? qg_cli_report("convert", st) : 0;
}
