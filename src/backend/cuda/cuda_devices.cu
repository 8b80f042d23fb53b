/*
 * cuda_devices.cu - CUDA device discovery for the backend registry.
 *
 * A machine without a driver or GPU is not an error: the list is just empty
 * (cudaErrorNoDevice, cudaErrorInsufficientDriver). Other runtime errors are
 * reported as TM_ERR_BACKEND with the CUDA message, never abort (STYLE.md 4).
 */
#include <cuda_runtime.h>
#include <stdio.h>
#include <string.h>

#include "backend/backend_int.h"

extern "C" tm_status tm__cuda_device_list(tm_device_info *out, int cap, int *n) {
    *n = 0;
    int         count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver ||
        err == cudaErrorInitializationError || err == cudaErrorCompatNotSupportedOnDevice) {
        (void)cudaGetLastError(); /* clear the sticky-free error state */
        return TM_OK;
    }
    if (err != cudaSuccess)
        return tm_fail(TM_ERR_BACKEND, "cudaGetDeviceCount: %s", cudaGetErrorString(err));
    for (int i = 0; i < count && *n < cap; i++) {
        cudaDeviceProp prop;
        err = cudaGetDeviceProperties(&prop, i);
        if (err != cudaSuccess)
            return tm_fail(TM_ERR_BACKEND, "cudaGetDeviceProperties(%d): %s", i,
                           cudaGetErrorString(err));
        tm_device_info *d = &out[*n];
        memset(d, 0, sizeof *d);
        snprintf(d->backend, sizeof d->backend, "cuda");
        d->index = i;
        snprintf(d->name, sizeof d->name, "%s", prop.name);
        snprintf(d->features, sizeof d->features, "sm_%d%d", prop.major, prop.minor);
        d->n_cores = prop.multiProcessorCount;
        d->mem_total_bytes = prop.totalGlobalMem;
        size_t free_b = 0, total_b = 0;
        if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_b, &total_b) == cudaSuccess)
            d->mem_free_bytes = free_b;
        (void)cudaGetLastError();
        (*n)++;
    }
    return TM_OK;
}
