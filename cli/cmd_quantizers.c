/* quantgolf quantizers: the spec language, listed from the parsers' own declarations. */
#include <stdio.h>

#include "cli/commands.h"
#include "core/util.h"
#include "quant/quantizer.h"

void qg_cmd_quantizers_help(void) {
  printf("usage: quantgolf quantizers\n\n"
         "Lists every quantizer a spec can name, each option with its type, range, default and\n"
         "meaning (taken from the option parsers themselves), and the named presets.\n\n"
         "Spec rules: 'GLOB: METHOD k=v ...' separated by ';' or newlines (quantize --spec), or\n"
         "YAML (--spec-file): 'GLOB: METHOD k=v', 'GLOB: {quantizer: METHOD, k: v}', or\n"
         "'rules:' as a list of those or of {match: GLOB, quantizer: METHOD, k: v}, with\n"
         "optional 'seed:' and 'contest_passthrough:'. First matching rule wins.\n");
}

int qg_cmd_quantizers(int argc, char **argv) {
  const qg_args_spec spec = {.cmd = "quantizers", .flags = QG_ARGS_WORDS_ONLY | QG_ARGS_GLOB_HINT,
                             .unexpected = "unexpected argument '{arg}'"};
  if (qg_cli_parse(&spec, &argc, argv)) return 2;
  qg_buf b;
  qg_buf_init(&b);
  qg_status s = qg_quantizers_help(&b);
  if (!s) fwrite(b.p, 1, b.n, stdout);
  qg_buf_free(&b);
  return s ? qg_cli_report("quantizers", s) : 0;
}
