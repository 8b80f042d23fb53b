/*
 * quant_int.h - private helpers shared by quant.c (dispatch, plain and 32-element
 * formats) and quant_k.c (256-element K formats).
 *
 * Block kernels take raw bytes and a block count; they never see a tm_dtype and
 * never fail: tm_dequantize_row() / tm_quantize_row() validate arguments first.
 * Halves are read and written through tm_bytes.h, so no kernel dereferences an
 * unaligned pointer or depends on host byte order.
 *
 * Floating-point contraction must be off in every file that includes this
 * header: a fused multiply-add rounds once where numpy (the oracle) rounds
 * twice. GCC does not contract in ISO C mode (-std=c11, which CMake selects);
 * clang contracts by default, hence the pragma.
 */
#ifndef TM_QUANT_INT_H
#define TM_QUANT_INT_H

#include <math.h>
#include <stdint.h>

#include "tm/tm_bytes.h"
#include "tm/tm_dtype.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#define QK_LEGACY 32 /* elements per block of Q4_0 .. Q8_0 */
#define QK_K 256     /* elements per super-block of the K formats */

static inline float quant_load_f16(const uint8_t *p) { return tm_f16_to_f32(tm_load_u16_le(p)); }

static inline void quant_store_f16(uint8_t *p, float f) { tm_store_u16_le(p, tm_f32_to_f16(f)); }

/* Round to nearest, ties to even, as ggml's nearest_int() (the 1.5*2^23 trick)
 * does for |v| < 2^22. ggml asserts that range; here larger values clamp and
 * NaN gives 0, so a hostile row cannot reach an undefined float->int cast. */
static inline int quant_nearest_int(float v) {
    if (!(v == v))
        return 0;
    if (v > 4194303.0f)
        v = 4194303.0f;
    if (v < -4194303.0f)
        v = -4194303.0f;
    return (int)rintf(v);
}

static inline int quant_clamp_int(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ---- K formats (quant_k.c); nb counts 256-element blocks ------------------- */
void tm__dequantize_q2_k(const uint8_t *src, float *dst, int64_t nb);
void tm__dequantize_q3_k(const uint8_t *src, float *dst, int64_t nb);
void tm__dequantize_q4_k(const uint8_t *src, float *dst, int64_t nb);
void tm__dequantize_q5_k(const uint8_t *src, float *dst, int64_t nb);
void tm__dequantize_q6_k(const uint8_t *src, float *dst, int64_t nb);

void tm__quantize_q2_k(const float *src, uint8_t *dst, int64_t nb);
void tm__quantize_q3_k(const float *src, uint8_t *dst, int64_t nb);
void tm__quantize_q4_k(const float *src, uint8_t *dst, int64_t nb);
void tm__quantize_q5_k(const float *src, uint8_t *dst, int64_t nb);
void tm__quantize_q6_k(const float *src, uint8_t *dst, int64_t nb);

#endif /* TM_QUANT_INT_H */
