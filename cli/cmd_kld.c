#include <stdio.h>
#include "cli/commands.h"
void qg_cmd_kld_help(void) { printf("usage: quantgolf kld (in progress)\n"); }
int qg_cmd_kld(int argc, char **argv) { (void)argc; (void)argv; return qg_cli_usage_error("kld", "not available yet"); }
