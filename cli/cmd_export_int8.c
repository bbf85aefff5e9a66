/* quantgolf export-int8 IN OUT.int8.ptz: the contest's own int8+zlib export. */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/util.h"
#include "io/checkpoint.h"
#include "io/ptz.h"
#include "quant/artifact.h"

void qg_cmd_export_int8_help(void) {
  printf("usage: quantgolf export-int8 IN OUT.int8.ptz\n\n"
         "Quantizes a float checkpoint (safetensors or torch .pt) exactly as the contest's\n"
         "train_gpt.py quantize_state_dict_int8 does -- per-row int8 at the 99.99984th\n"
         "percentile clip, fp16 scales with a 1/127 floor, small tensors kept as fp16, control\n"
         "tensors as fp32 -- and writes torch.save + zlib level 9, the file the contest's own\n"
         "loader reads. Prints the artifact's size on stderr.\n");
}

int qg_cmd_export_int8(int argc, char **argv) {
  const char *words[2] = {0};
  qg_arg_list io = {words, 0, 2};
  const qg_args_spec spec = {.cmd = "export-int8", .flags = QG_ARGS_WORDS_ONLY, .words = &io,
                             .too_many = "expected IN and OUT.int8.ptz"};
  if (qg_cli_parse(&spec, &argc, argv)) return 2;
  if (io.n != 2) return qg_cli_usage_error("export-int8", "expected IN and OUT.int8.ptz");
  const char *in = words[0], *out = words[1];
  if (!qg_ends_with(out, ".ptz")) return qg_cli_usage_error("export-int8", "output '%s' must end in .ptz", out);
  qg_state s;
  qg_format f;
  qg_status st = qg_checkpoint_load(in, &s, &f);
  if (st) return qg_cli_report("export-int8", st);
  if (f == QG_FMT_PTZ) {
    qg_state_free(&s);
    return qg_cli_usage_error("export-int8", "'%s' is already an int8 artifact; export from the float checkpoint", in);
  }
  qg_int8_artifact a;
  st = qg_int8_quantize(&s, &a);
  size_t bytes = 0;
  if (!st) st = qg_ptz_write(out, &a, &bytes);
  if (!st) {
    long long payload = qg_state_nbytes(&a.quantized) + qg_state_nbytes(&a.scales) + qg_state_nbytes(&a.passthrough);
    fprintf(stderr, "quantgolf export-int8: %s -> %s: %zu bytes int8+zlib (payload %lld bytes; %d quantized, %d passthrough)\n",
            in, out, bytes, payload, a.quantized.n, a.passthrough.n);
    qg_int8_artifact_free(&a);
  }
  qg_state_free(&s);
  return st ? qg_cli_report("export-int8", st) : 0;
}
