#include <stdio.h>
#include "cli/commands.h"
void qg_cmd_convert_help(void) { printf("not yet\n"); }
int qg_cmd_convert(int argc, char **argv) { (void)argc; (void)argv; return 1; }
