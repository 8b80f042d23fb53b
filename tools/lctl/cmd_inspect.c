/* cmd_inspect.c - placeholder until the loaders land (replaced in this session). */
#include <stdio.h>

#include "lctl.h"

int lctl_inspect(int argc, char **argv) {
    (void)argc;
    (void)argv;
    fprintf(stderr, "lctl inspect: not built yet\n");
    return 1;
}
