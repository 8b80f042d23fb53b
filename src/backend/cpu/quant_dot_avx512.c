/*
 * quant_dot_avx512.c - AVX-512 (F/BW/VL + VNNI) dot products for mul_mat
 * (x86-64 only; elsewhere, and for dtypes without a variant here,
 * tm__cpu_dot_avx512 returns NULL and tm__cpu_dot_get falls back to AVX2).
 *
 * DESIGN
 * - Two 32-element blocks per 512-bit register. Weight codes are taken as
 *   unsigned bytes (Q4_0: the raw nibble, Q8_0: code + 128) so one vpdpbusd
 *   does 4 byte products per int32 lane; the offset times the activation sum
 *   (a second vpdpbusd against a constant) is subtracted, giving exactly the
 *   int32 sums of quant_dot_ref.c, 8 lanes per block.
 * - Each block's float scale multiplies its int32 sums with one FMA into a
 *   vector accumulator, as in the AVX2 file; only the float order differs.
 * - Compiled per function with __attribute__((target)); handed out only when
 *   the CPU reports avx512f/bw/vl/vnni (tm__cpu_isa_supported).
 */
#include "backend/cpu/simd_dot.h"

/* No contraction of a * b + c into an FMA: the scalar block expressions must
 * round the same way in every variant (GCC does not contract in ISO C mode;
 * clang does by default). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(__x86_64__)

#include <immintrin.h>
#include <string.h>

#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

AVX512 static inline float x5_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* Scales of two blocks: lanes 0..7 = a, 8..15 = b. */
AVX512 static inline __m512 x5_scale2(float a, float b) {
    return _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_set1_ps(a)),
                                               _mm256_castps_pd(_mm256_set1_ps(b)), 1));
}

/* Activations of blocks i and i + 1 in one register. */
AVX512 static inline __m512i x5_load_y2(const tm_q8_32 *y) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)y[0].q)),
                              _mm256_loadu_si256((const __m256i *)y[1].q), 1);
}

/* Sum over u8 u and s8 y of (u - off) * y, per 4-byte group (int32 lanes). */
AVX512 static inline __m512i x5_dot_off(__m512i u, __m512i y, __m512i off) {
    const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), u, y);
    return _mm512_sub_epi32(p, _mm512_dpbusd_epi32(_mm512_setzero_si512(), off, y));
}

AVX512 static inline float x5_hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

AVX512 static void x5_dot_q8_0(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t  *b = w;
    const tm_q8_32 *y = x;
    const int64_t   nb = n / TM_QK32;
    const __m512i   flip = _mm512_set1_epi8((char)0x80);
    __m512          acc = _mm512_setzero_ps();
    int64_t         i = 0;
    for (; i + 2 <= nb; i += 2, b += 68) {
        /* code + 128 as unsigned = code xor 0x80 */
        const __m512i q =
            _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 2))),
                               _mm256_loadu_si256((const __m256i *)(b + 36)), 1);
        const __m512i p = x5_dot_off(_mm512_xor_si512(q, flip), x5_load_y2(y + i), flip);
        acc = _mm512_fmadd_ps(x5_scale2(x5_f16(b) * y[i].d, x5_f16(b + 34) * y[i + 1].d),
                              _mm512_cvtepi32_ps(p), acc);
    }
    float r = x5_hsum(acc);
    if (i < nb) {
        /* The odd last block through the plain C dot (another translation unit): GCC 12
         * auto-vectorizes an s8 x s8 sum written here with the VNNI target into
         * vpdpbusd, which is u8 x s8, and gets it wrong (test_quant_dot, Release, odd
         * block counts). Same integer sum and scale order as before. */
        float t = 0.0f;
        tm__cpu_dot_ref(TM_DTYPE_Q8_0)(TM_QK32, &t, b, y + i);
        r += t;
    }
    *s = r;
}

AVX512 static void x5_dot_q4_0(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t  *b = w;
    const tm_q8_32 *y = x;
    const int64_t   nb = n / TM_QK32;
    const __m512i   m4 = _mm512_set1_epi8(0x0F), eight = _mm512_set1_epi8(8);
    __m512          acc = _mm512_setzero_ps();
    int64_t         i = 0;
    for (; i + 2 <= nb; i += 2, b += 36) {
        /* bytes: nibbles of block i (lo, hi), then of block i + 1 (lo, hi) */
        const __m128i a0 = _mm_loadu_si128((const __m128i *)(b + 2));
        const __m128i a1 = _mm_loadu_si128((const __m128i *)(b + 20));
        const __m256i t0 =
            _mm256_inserti128_si256(_mm256_castsi128_si256(a0), _mm_srli_epi16(a0, 4), 1);
        const __m256i t1 =
            _mm256_inserti128_si256(_mm256_castsi128_si256(a1), _mm_srli_epi16(a1, 4), 1);
        const __m512i u =
            _mm512_and_si512(_mm512_inserti64x4(_mm512_castsi256_si512(t0), t1, 1), m4);
        const __m512i p = x5_dot_off(u, x5_load_y2(y + i), eight);
        acc = _mm512_fmadd_ps(x5_scale2(x5_f16(b) * y[i].d, x5_f16(b + 18) * y[i + 1].d),
                              _mm512_cvtepi32_ps(p), acc);
    }
    float r = x5_hsum(acc);
    for (; i < nb; i++, b += 18) {
        int32_t isum = 0;
        for (int k = 0; k < 16; k++)
            isum += ((b[2 + k] & 0x0F) - 8) * y[i].q[k] + ((b[2 + k] >> 4) - 8) * y[i].q[k + 16];
        r += x5_f16(b) * y[i].d * (float)isum;
    }
    *s = r;
}

tm_cpu_vec_dot tm__cpu_dot_avx512(tm_dtype t) {
    switch (t) {
    case TM_DTYPE_Q4_0: return x5_dot_q4_0;
    case TM_DTYPE_Q8_0: return x5_dot_q8_0;
    default: return NULL;
    }
}

#else /* not x86-64 */

tm_cpu_vec_dot tm__cpu_dot_avx512(tm_dtype t) {
    (void)t;
    return NULL;
}

#endif
