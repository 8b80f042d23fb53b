/*
 * tm_devices.h - the compute devices this process can use: the CPU (with the
 * SIMD features found at run time) and, when the CUDA backend is compiled in and
 * a driver and GPU are present, every CUDA device.
 *
 *     tm_device_info devs[16];
 *     int n = 0;
 *     if (tm_devices_list(devs, 16, &n) == TM_OK)
 *         for (int i = 0; i < n; i++) printf("%s: %s\n", devs[i].backend, devs[i].name);
 *
 * Threads: any thread. Listing CUDA devices initializes the CUDA runtime.
 */
#ifndef TM_DEVICES_H
#define TM_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_status.h"

typedef struct tm_cpu_features {
    bool sse3, ssse3, avx, avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512vnni, avx_vnni;
    bool neon, dotprod; /* arm64 */
} tm_cpu_features;

/* Features of the CPU this process runs on (detected once, then cached). */
const tm_cpu_features *tm_cpu_features_get(void);

typedef struct tm_device_info {
    char    backend[16];     /* "cpu", "cuda" */
    int32_t index;           /* index within its backend */
    char    name[128];       /* "AMD EPYC ...", "NVIDIA H100 80GB HBM3" */
    char    features[160];   /* "avx2 fma f16c", "sm_90" */
    size_t  mem_total_bytes; /* host RAM or device memory */
    size_t  mem_free_bytes;  /* available now */
    int32_t n_cores;         /* CPU threads online, or CUDA multiprocessors */
} tm_device_info;

/* Fills up to cap entries (CPU first) and stores the count in *n. A missing CUDA
 * driver or GPU is not an error: those devices are just absent. */
tm_status tm_devices_list(tm_device_info *out, int cap, int *n);

/* True when this build includes the CUDA backend. */
bool tm_devices_have_cuda_backend(void);

#endif /* TM_DEVICES_H */
