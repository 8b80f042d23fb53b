/* backend_int.h - private interface between the backend registry and the backends. */
#ifndef TM_BACKEND_INT_H
#define TM_BACKEND_INT_H

#include "tm/tm_devices.h"

#ifdef __cplusplus
extern "C" {
#endif

/* cpu_info_linux.c: the host CPU as a device. */
tm_status tm__cpu_device_info(tm_device_info *out);

/* cuda/cuda_devices.cu: CUDA devices (0 when no driver or GPU). */
tm_status tm__cuda_device_list(tm_device_info *out, int cap, int *n);

#ifdef __cplusplus
}
#endif

#endif
