/*
 * cmd_devices.c - `lctl devices`: the CPU and GPUs this build can use.
 */
#include <stdio.h>
#include <string.h>

#include "lctl.h"
#include "tm/tm_devices.h"

int lctl_devices(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            printf("usage: lctl devices\n\n"
                   "Lists the compute devices this build can use: the CPU with the SIMD\n"
                   "features found at run time, and every CUDA GPU when the CUDA backend is\n"
                   "compiled in (cmake finds nvcc) and a driver is present.\n");
            return 0;
        }
        fprintf(stderr, "lctl devices: unexpected argument '%s' (see --help)\n", argv[i]);
        return 2;
    }
    tm_device_info devs[64];
    int            n = 0;
    if (tm_devices_list(devs, 64, &n) != TM_OK) {
        fprintf(stderr, "lctl devices: %s\n", tm_last_error());
        return 1;
    }
    for (int i = 0; i < n; i++)
        printf("%s:%d  %s  [%s]  %d %s, %.1f GiB total, %.1f GiB free\n", devs[i].backend,
               devs[i].index, devs[i].name, devs[i].features, devs[i].n_cores,
               strcmp(devs[i].backend, "cpu") == 0 ? "threads" : "SMs",
               (double)devs[i].mem_total_bytes / (1 << 30),
               (double)devs[i].mem_free_bytes / (1 << 30));
    if (!tm_devices_have_cuda_backend())
        printf("(CUDA backend not compiled in: nvcc was not found at configure time)\n");
    return 0;
}
