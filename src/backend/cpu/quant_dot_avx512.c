/*
 * quant_dot_avx512.c - AVX-512 (F/BW/VL + VNNI) dot products for mul_mat.
 *
 * TODO(perf): no AVX-512 variant yet. tm__cpu_dot_get() falls back to the AVX2
 * dots on AVX-512 machines, so this returns NULL for every dtype; the file
 * holds the entry point so that adding a kernel touches only this file.
 */
#include "backend/cpu/simd_dot.h"

tm_cpu_vec_dot tm__cpu_dot_avx512(tm_dtype t) {
    (void)t;
    return NULL;
}
