/* quantgolf info: version, build options and GPU availability. */
#include <stdio.h>

#include "cli/commands.h"
#include "kernels/cpu/cpu_gemm.h"
#include "kernels/cuda/cuda_device.h"

void qg_cmd_info_help(void) {
  printf("usage: quantgolf info\n\nPrints the version, whether the CUDA backend was compiled "
         "in, and the GPU found (if any); the CPU's BLAS and the kernels it runs.\n");
}

int qg_cmd_info(int argc, char **argv) {
  const qg_args_spec spec = {.cmd = "info", .flags = QG_ARGS_WORDS_ONLY, .unexpected = "takes no arguments"};
  if (qg_cli_parse(&spec, &argc, argv)) return 2;
  char desc[512];
  qg_cuda_describe(desc, sizeof desc);
  char blas[512];
  qg_cpu_blas_describe(blas, sizeof blas);
  printf("quantgolf %s\n%s\ncuda backend: %s\n%s\n", QG_VERSION, blas, qg_cuda_compiled() ? "compiled" : "not compiled",
         desc);
  return 0;
}
