/*
 * registry.c - which backends exist in this build. The only file allowed an
 * #ifdef on TM_USE_CUDA (STYLE.md section 7): everything else asks here.
 */
#include <stdio.h>
#include <string.h>

#include "backend/backend_int.h"
#include "tm/tm_devices.h"

bool tm_devices_have_cuda_backend(void) {
#ifdef TM_USE_CUDA
    return true;
#else
    return false;
#endif
}

tm_status tm_devices_list(tm_device_info *out, int cap, int *n) {
    *n = 0;
    if (cap <= 0)
        return tm_fail(TM_ERR_INVALID, "tm_devices_list: capacity %d", cap);
    memset(out, 0, sizeof *out * (size_t)cap);
    TM_TRY(tm__cpu_device_info(&out[0]));
    *n = 1;
#ifdef TM_USE_CUDA
    int n_cuda = 0;
    TM_TRY(tm__cuda_device_list(out + 1, cap - 1, &n_cuda));
    *n += n_cuda;
#endif
    return TM_OK;
}
