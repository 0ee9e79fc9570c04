/* cmd_data.c - placeholder until the data command lands: says so and exits 1. */
#include <stdio.h>

#include "cli.h"

int cmd_data(int argc, char **argv) {
    (void)argc; (void)argv;
    fputs("herd: this command is not built yet\n", stderr);
    return 1;
}
