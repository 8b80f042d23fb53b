/* cmd_tokenize.c - placeholder until the tokenizer lands (replaced in this session). */
#include <stdio.h>

#include "lctl.h"

int lctl_tokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "lctl tokenize: not built yet\n");
    return 1;
}

int lctl_detokenize(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "lctl detokenize: not built yet\n");
    return 1;
}
