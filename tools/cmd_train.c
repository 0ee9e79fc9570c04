/* cmd_train.c - placeholder until the train command lands: says so and exits 1. */
#include <stdio.h>

#include "cli.h"

int cmd_train(int argc, char **argv) {
    (void)argc; (void)argv;
    fputs("herd: this command is not built yet\n", stderr);
    return 1;
}
