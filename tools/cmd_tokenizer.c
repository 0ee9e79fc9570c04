/* cmd_tokenizer.c - placeholder until the tokenizer command lands: says so and exits 1. */
#include <stdio.h>

#include "cli.h"

int cmd_tokenizer(int argc, char **argv) {
    (void)argc; (void)argv;
    fputs("herd: this command is not built yet\n", stderr);
    return 1;
}
