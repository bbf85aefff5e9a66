#include <stdio.h>
#include "cli/commands.h"
void qg_cmd_inspect_help(void) { printf("not yet\n"); }
int qg_cmd_inspect(int argc, char **argv) { (void)argc; (void)argv; return 1; }
