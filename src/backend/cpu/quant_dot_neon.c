/*
 * quant_dot_neon.c - NEON dot products and activation quantizers for mul_mat
 * on arm64 (elsewhere the getters return NULL and the reference is used).
 *
 * DESIGN
 * - One source, two translation units. Compiled as itself it uses only the
 *   base ASIMD every arm64 CPU has: a signed byte dot is vmull_s8 (int16
 *   products, |a * b| <= 2^14) widened pairwise into int32 with vpadalq_s16.
 *   quant_dot_neon_dotprod.c includes it again with TM_NEON_DOTPROD defined:
 *   that unit alone is compiled for armv8.2-a + dotprod (GCC: the pragma below;
 *   clang: CMake adds the flag to that file) and does the same dots with sdot
 *   (vdotq_s32). tm__cpu_isa() hands the second out only when the kernel
 *   reports asimddp (getauxval, cpu_info_linux.c). No global -march.
 * - Integer sums are those of quant_dot_ref.c, block by block; integer addition
 *   is associative, so the different lane groupings of sdot and vmull/vpadal
 *   give the same int32. Codes are made signed bytes (Q3_K's - 4, Q6_K's - 32
 *   folded in, so isum - ioff comes out directly); unsigned codes are at most
 *   31, so signed bytes hold them.
 * - 32-element formats scale each block's int32 lanes by w_d * x_d into a
 *   float vector (as the AVX2 dots do); K formats form the reference's scalar
 *   per-super-block expression and add it in the reference's order.
 * - Little-endian only: weight bytes are reinterpreted as f16 / bf16 lanes.
 */
#include "backend/cpu/simd_dot.h"

/* No contraction of a * b + c into an FMA: the scalar block expressions must
 * round the same way in every variant (GCC does not contract in ISO C mode;
 * clang does by default). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(__aarch64__) && defined(__ARM_NEON) && defined(__ORDER_LITTLE_ENDIAN__) &&             \
    __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__

#if defined(TM_NEON_DOTPROD) && defined(__GNUC__) && !defined(__clang__)
/* GCC's arm_neon.h declares vdotq_s32 for armv8.2-a + dotprod; a caller must
 * be compiled for at least that to inline it. */
#pragma GCC target("arch=armv8.2-a+dotprod")
#endif

#include <arm_neon.h>
#include <string.h>

/* The dotprod unit without the extension (a compiler that could not turn it
 * on): it builds nothing and the plain NEON dots are used. */
#if !defined(TM_NEON_DOTPROD) || defined(__ARM_FEATURE_DOTPROD)
#define NX_BUILD 1
#endif

#if defined(NX_BUILD)

static inline float nx_f16(const uint8_t *p) {
    __fp16 h;
    memcpy(&h, p, 2);
    return (float)h;
}

/* acc + the products of 16 signed bytes, in four int32 lanes. */
static inline int32x4_t nx_dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(TM_NEON_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    const int16x8_t hi = vmull_high_s8(a, b);
    return vpadalq_s16(vpadalq_s16(acc, lo), hi);
#endif
}

/* 32 signed codes (a0: elements 0..15, a1: 16..31) times 32 activations. */
static inline int32x4_t nx_dot32(int8x16_t a0, int8x16_t a1, const int8_t *y) {
    const int32x4_t z = vdupq_n_s32(0);
    return nx_dot16(nx_dot16(z, a0, vld1q_s8(y)), a1, vld1q_s8(y + 16));
}

static inline int8x16_t nx_s8(uint8x16_t v) { return vreinterpretq_s8_u8(v); }

/* 16 bits (bit j for byte j) -> 16 bytes, 0xFF where the bit is set. */
static inline uint8x16_t nx_bits16(uint32_t bits) {
    static const uint8_t sel[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t     v =
        vcombine_u8(vdup_n_u8((uint8_t)(bits & 0xFF)), vdup_n_u8((uint8_t)((bits >> 8) & 0xFF)));
    return vtstq_u8(v, vld1q_u8(sel));
}

/* ---- float weights --------------------------------------------------------------- */

static void nx_dot_f32(int64_t n, float *s, const void *w, const void *x) {
    const float *a = w, *b = x;
    float32x4_t  acc0 = vdupq_n_f32(0.0f), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    int64_t      i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
        acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
        acc2 = vfmaq_f32(acc2, vld1q_f32(a + i + 8), vld1q_f32(b + i + 8));
        acc3 = vfmaq_f32(acc3, vld1q_f32(a + i + 12), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4)
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
    float r = vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)));
    for (; i < n; i++)
        r += a[i] * b[i];
    *s = r;
}

static void nx_dot_f16(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *a = w;
    const float   *b = x;
    float32x4_t    acc0 = vdupq_n_f32(0.0f), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    int64_t        i = 0;
    for (; i + 16 <= n; i += 16) {
        const float16x8_t h0 = vreinterpretq_f16_u8(vld1q_u8(a + 2 * i));
        const float16x8_t h1 = vreinterpretq_f16_u8(vld1q_u8(a + 2 * i + 16));
        acc0 = vfmaq_f32(acc0, vcvt_f32_f16(vget_low_f16(h0)), vld1q_f32(b + i));
        acc1 = vfmaq_f32(acc1, vcvt_high_f32_f16(h0), vld1q_f32(b + i + 4));
        acc2 = vfmaq_f32(acc2, vcvt_f32_f16(vget_low_f16(h1)), vld1q_f32(b + i + 8));
        acc3 = vfmaq_f32(acc3, vcvt_high_f32_f16(h1), vld1q_f32(b + i + 12));
    }
    for (; i + 4 <= n; i += 4)
        acc0 = vfmaq_f32(acc0, vcvt_f32_f16(vreinterpret_f16_u8(vld1_u8(a + 2 * i))),
                         vld1q_f32(b + i));
    float r = vaddvq_f32(vaddq_f32(vaddq_f32(acc0, acc1), vaddq_f32(acc2, acc3)));
    for (; i < n; i++)
        r += nx_f16(a + 2 * i) * b[i];
    *s = r;
}

/* bf16 is the high half of an f32: widen by shifting left 16. */
static void nx_dot_bf16(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *a = w;
    const float   *b = x;
    float32x4_t    acc0 = vdupq_n_f32(0.0f), acc1 = acc0;
    int64_t        i = 0;
    for (; i + 8 <= n; i += 8) {
        const uint16x8_t h = vreinterpretq_u16_u8(vld1q_u8(a + 2 * i));
        acc0 = vfmaq_f32(acc0, vreinterpretq_f32_u32(vshll_n_u16(vget_low_u16(h), 16)),
                         vld1q_f32(b + i));
        acc1 =
            vfmaq_f32(acc1, vreinterpretq_f32_u32(vshll_high_n_u16(h, 16)), vld1q_f32(b + i + 4));
    }
    float r = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++) {
        const uint32_t u = (uint32_t)(a[2 * i] | (a[2 * i + 1] << 8)) << 16;
        float          f;
        memcpy(&f, &u, 4);
        r += f * b[i];
    }
    *s = r;
}

/* ---- 32-element formats ---------------------------------------------------------
 * Byte j of the nibbles holds element j (low) and element j + 16 (high); the Q5
 * fifth bits are a u32, bit j for element j. */

static void nx_dot_q4_0(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t   *b = w;
    const tm_q8_32  *y = x;
    float32x4_t      acc = vdupq_n_f32(0.0f);
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t  off = vdupq_n_s8(8);
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 18) {
        const uint8x16_t qs = vld1q_u8(b + 2);
        const int8x16_t  lo = vsubq_s8(nx_s8(vandq_u8(qs, m4)), off);
        const int8x16_t  hi = vsubq_s8(nx_s8(vshrq_n_u8(qs, 4)), off);
        const int32x4_t  p = nx_dot32(lo, hi, y[i].q);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), nx_f16(b) * y[i].d);
    }
    *s = vaddvq_f32(acc);
}

static void nx_dot_q5_0(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t   *b = w;
    const tm_q8_32  *y = x;
    float32x4_t      acc = vdupq_n_f32(0.0f);
    const uint8x16_t m4 = vdupq_n_u8(0x0F), b16 = vdupq_n_u8(16);
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 22) {
        uint32_t qh;
        memcpy(&qh, b + 2, 4);
        const uint8x16_t qs = vld1q_u8(b + 6);
        /* code - 16 = nibble - (fifth bit clear ? 16 : 0) */
        const int8x16_t lo =
            vsubq_s8(nx_s8(vandq_u8(qs, m4)), nx_s8(vbicq_u8(b16, nx_bits16(qh & 0xFFFF))));
        const int8x16_t hi =
            vsubq_s8(nx_s8(vshrq_n_u8(qs, 4)), nx_s8(vbicq_u8(b16, nx_bits16(qh >> 16))));
        const int32x4_t p = nx_dot32(lo, hi, y[i].q);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), nx_f16(b) * y[i].d);
    }
    *s = vaddvq_f32(acc);
}

static void nx_dot_q8_0(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t  *b = w;
    const tm_q8_32 *y = x;
    float32x4_t     acc = vdupq_n_f32(0.0f);
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 34) {
        const int8x16_t q0 = vld1q_s8((const int8_t *)(b + 2));
        const int8x16_t q1 = vld1q_s8((const int8_t *)(b + 18));
        const int32x4_t p = nx_dot32(q0, q1, y[i].q);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), nx_f16(b) * y[i].d);
    }
    *s = vaddvq_f32(acc);
}

/* Q4_1 / Q5_1: unsigned codes (<= 31) times signed activations, plus m * x_s per block. */
static void nx_dot_q4_1(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t   *b = w;
    const tm_q8_32  *y = x;
    float32x4_t      acc = vdupq_n_f32(0.0f);
    float            summ = 0.0f;
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 20) {
        const uint8x16_t qs = vld1q_u8(b + 4);
        const int32x4_t  p = nx_dot32(nx_s8(vandq_u8(qs, m4)), nx_s8(vshrq_n_u8(qs, 4)), y[i].q);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), nx_f16(b) * y[i].d);
        summ += nx_f16(b + 2) * y[i].s;
    }
    *s = vaddvq_f32(acc) + summ;
}

static void nx_dot_q5_1(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t   *b = w;
    const tm_q8_32  *y = x;
    float32x4_t      acc = vdupq_n_f32(0.0f);
    float            summ = 0.0f;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), b16 = vdupq_n_u8(16);
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 24) {
        uint32_t qh;
        memcpy(&qh, b + 4, 4);
        const uint8x16_t qs = vld1q_u8(b + 8);
        const uint8x16_t lo = vorrq_u8(vandq_u8(qs, m4), vandq_u8(nx_bits16(qh & 0xFFFF), b16));
        const uint8x16_t hi = vorrq_u8(vshrq_n_u8(qs, 4), vandq_u8(nx_bits16(qh >> 16), b16));
        const int32x4_t  p = nx_dot32(nx_s8(lo), nx_s8(hi), y[i].q);
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), nx_f16(b) * y[i].d);
        summ += nx_f16(b + 2) * y[i].s;
    }
    *s = vaddvq_f32(acc) + summ;
}

/* ---- K formats: per super-block int32 isum / imin as in quant_dot_ref.c ----------- */

/* sum over g of coef[g] * bsums[g] (16 int16 coefficients), in int32. */
static inline int32_t nx_bsums_dot(const int16_t coef[16], const int16_t *bsums) {
    const int16x8_t c0 = vld1q_s16(coef), c1 = vld1q_s16(coef + 8);
    const int16x8_t s0 = vld1q_s16(bsums), s1 = vld1q_s16(bsums + 8);
    int32x4_t       p = vmull_s16(vget_low_s16(c0), vget_low_s16(s0));
    p = vmlal_high_s16(p, c0, s0);
    p = vmlal_s16(p, vget_low_s16(c1), vget_low_s16(s1));
    p = vmlal_high_s16(p, c1, s1);
    return vaddvq_s32(p);
}

static void nx_dot_q2_k(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t   *b = w;
    const tm_q8_k   *y = x;
    float            sum = 0.0f;
    const uint8x16_t m3 = vdupq_n_u8(3);
    for (int64_t i = 0; i < n / TM_QKK; i++, b += 84) {
        int16_t mins[16];
        for (int g = 0; g < 16; g++)
            mins[g] = (int16_t)(b[g] >> 4);
        const int32_t imin = nx_bsums_dot(mins, y[i].bsums);
        int32x4_t     acc = vdupq_n_s32(0);
        for (int j = 0; j < 2; j++) {
            const uint8x16_t q0 = vld1q_u8(b + 16 + 32 * j), q1 = vld1q_u8(b + 32 + 32 * j);
            for (int h = 0; h < 4; h++) {
                /* elements 128j + 32h + l: bits 2h of byte 32j + l; groups g, g + 1 */
                const int8x16_t u0 =
                    nx_s8(vandq_u8(vshlq_u8(q0, vdupq_n_s8((int8_t)(-2 * h))), m3));
                const int8x16_t u1 =
                    nx_s8(vandq_u8(vshlq_u8(q1, vdupq_n_s8((int8_t)(-2 * h))), m3));
                const int8_t   *q8 = y[i].q + 128 * j + 32 * h;
                const int       g = 8 * j + 2 * h;
                const int32x4_t z = vdupq_n_s32(0);
                acc = vmlaq_n_s32(acc, nx_dot16(z, u0, vld1q_s8(q8)), b[g] & 0x0F);
                acc = vmlaq_n_s32(acc, nx_dot16(z, u1, vld1q_s8(q8 + 16)), b[g + 1] & 0x0F);
            }
        }
        const int32_t isum = vaddvq_s32(acc);
        sum += nx_f16(b + 80) * y[i].d * (float)isum - nx_f16(b + 82) * y[i].d * (float)imin;
    }
    *s = sum;
}

/* Q3_K's 16 six-bit scales (stored +32): low nibbles in bytes 0..7, high pairs in 8..11. */
static inline int nx_q3_scale(const uint8_t *sc, int g) {
    const int lo = (sc[g % 8] >> (4 * (g / 8))) & 0x0F;
    const int hi = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

static void nx_dot_q3_k(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t   *b = w;
    const tm_q8_k   *y = x;
    float            sum = 0.0f;
    const uint8x16_t m3 = vdupq_n_u8(3), b4 = vdupq_n_u8(4);
    const int8x16_t  off = vdupq_n_s8(4);
    for (int64_t i = 0; i < n / TM_QKK; i++, b += 110) {
        int sc[16];
        for (int g = 0; g < 16; g++)
            sc[g] = nx_q3_scale(b + 96, g);
        const uint8x16_t hm0 = vld1q_u8(b), hm1 = vld1q_u8(b + 16);
        int32x4_t        acc = vdupq_n_s32(0);
        for (int j = 0; j < 2; j++) {
            const uint8x16_t q0 = vld1q_u8(b + 32 + 32 * j), q1 = vld1q_u8(b + 48 + 32 * j);
            for (int h = 0; h < 4; h++) {
                /* code = (2-bit part | high bit << 2) - 4; the high bit of element
                 * 128j + 32h + l is bit 4j + h of hmask byte l */
                const int8x16_t  sh = vdupq_n_s8((int8_t)(-2 * h));
                const uint8x16_t hb = vdupq_n_u8((uint8_t)(1u << (4 * j + h)));
                const uint8x16_t l0 = vandq_u8(vshlq_u8(q0, sh), m3);
                const uint8x16_t l1 = vandq_u8(vshlq_u8(q1, sh), m3);
                const int8x16_t  u0 =
                    vsubq_s8(nx_s8(vorrq_u8(l0, vandq_u8(vtstq_u8(hm0, hb), b4))), off);
                const int8x16_t u1 =
                    vsubq_s8(nx_s8(vorrq_u8(l1, vandq_u8(vtstq_u8(hm1, hb), b4))), off);
                const int8_t   *q8 = y[i].q + 128 * j + 32 * h;
                const int       g = 8 * j + 2 * h;
                const int32x4_t z = vdupq_n_s32(0);
                acc = vmlaq_n_s32(acc, nx_dot16(z, u0, vld1q_s8(q8)), sc[g]);
                acc = vmlaq_n_s32(acc, nx_dot16(z, u1, vld1q_s8(q8 + 16)), sc[g + 1]);
            }
        }
        /* the reference's isum - imin, with imin = 4 * sum sc * bsums folded into the codes */
        sum += nx_f16(b + 108) * y[i].d * (float)vaddvq_s32(acc);
    }
    *s = sum;
}

/* Q4_K / Q5_K: 8 six-bit (scale, min) pairs packed in 12 bytes. */
static inline void nx_k4_scales(const uint8_t *q, int sc[8], int16_t mins16[16]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        sc[j + 4] = (q[j + 8] & 0x0F) | ((q[j] >> 6) << 4);
        const int m = q[j + 4] & 63, m4 = (q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4);
        mins16[2 * j] = mins16[2 * j + 1] = (int16_t)m;
        mins16[2 * j + 8] = mins16[2 * j + 9] = (int16_t)m4;
    }
}

static void nx_dot_q45_k(int64_t n, float *s, const void *w, const void *x, bool five) {
    const uint8_t   *b = w;
    const tm_q8_k   *y = x;
    const int        bytes = five ? 176 : 144;
    float            sum = 0.0f;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), b16 = vdupq_n_u8(16);
    for (int64_t i = 0; i < n / TM_QKK; i++, b += bytes) {
        int     sc[8];
        int16_t mins[16]; /* min j for block sums 2j and 2j + 1 */
        nx_k4_scales(b + 4, sc, mins);
        const int32_t    imin = nx_bsums_dot(mins, y[i].bsums);
        const uint8_t   *qs = b + (five ? 48 : 16);
        const uint8x16_t qh0 = vld1q_u8(b + 16), qh1 = vld1q_u8(b + 32); /* Q5_K only */
        int32x4_t        acc = vdupq_n_s32(0);
        for (int j = 0; j < 4; j++) {
            /* element 64j + 32h + l: nibble h of byte 32j + l (+ bit 2j + h of qh[l]) */
            const uint8x16_t q0 = vld1q_u8(qs + 32 * j), q1 = vld1q_u8(qs + 32 * j + 16);
            uint8x16_t       l0 = vandq_u8(q0, m4), l1 = vandq_u8(q1, m4);
            uint8x16_t       h0 = vshrq_n_u8(q0, 4), h1 = vshrq_n_u8(q1, 4);
            if (five) {
                const uint8x16_t bl = vdupq_n_u8((uint8_t)(1u << (2 * j)));
                const uint8x16_t bh = vdupq_n_u8((uint8_t)(2u << (2 * j)));
                l0 = vorrq_u8(l0, vandq_u8(vtstq_u8(qh0, bl), b16));
                l1 = vorrq_u8(l1, vandq_u8(vtstq_u8(qh1, bl), b16));
                h0 = vorrq_u8(h0, vandq_u8(vtstq_u8(qh0, bh), b16));
                h1 = vorrq_u8(h1, vandq_u8(vtstq_u8(qh1, bh), b16));
            }
            const int8_t *q8 = y[i].q + 64 * j;
            acc = vmlaq_n_s32(acc, nx_dot32(nx_s8(l0), nx_s8(l1), q8), sc[2 * j]);
            acc = vmlaq_n_s32(acc, nx_dot32(nx_s8(h0), nx_s8(h1), q8 + 32), sc[2 * j + 1]);
        }
        const int32_t isum = vaddvq_s32(acc);
        sum += nx_f16(b) * y[i].d * (float)isum - nx_f16(b + 2) * y[i].d * (float)imin;
    }
    *s = sum;
}

static void nx_dot_q4_k(int64_t n, float *s, const void *w, const void *x) {
    nx_dot_q45_k(n, s, w, x, false);
}

static void nx_dot_q5_k(int64_t n, float *s, const void *w, const void *x) {
    nx_dot_q45_k(n, s, w, x, true);
}

static void nx_dot_q6_k(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t   *b = w;
    const tm_q8_k   *y = x;
    float            sum = 0.0f;
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m3 = vdupq_n_u8(3);
    const int8x16_t  off = vdupq_n_s8(32);
    for (int64_t i = 0; i < n / TM_QKK; i++, b += 210) {
        const int8_t *sc = (const int8_t *)(b + 192);
        int32x4_t     acc = vdupq_n_s32(0);
        for (int j = 0; j < 2; j++) {
            /* element 128j + r: low nibble (r / 64) of ql[64j + r % 64], high bits
             * 2 (r / 32) of qh[32j + r % 32]; 16-element group k = r / 16 */
            const uint8_t   *ql = b + 64 * j, *qh = b + 128 + 32 * j;
            const uint8x16_t l[4] = {vld1q_u8(ql), vld1q_u8(ql + 16), vld1q_u8(ql + 32),
                                     vld1q_u8(ql + 48)};
            const uint8x16_t h[2] = {vld1q_u8(qh), vld1q_u8(qh + 16)};
            for (int k = 0; k < 8; k++) {
                const uint8x16_t lb = l[k % 4];
                const uint8x16_t lo = k < 4 ? vandq_u8(lb, m4) : vshrq_n_u8(lb, 4);
                const uint8x16_t hi =
                    vandq_u8(vshlq_u8(h[k % 2], vdupq_n_s8((int8_t)(-2 * (k / 2)))), m3);
                const int8x16_t u = vsubq_s8(nx_s8(vorrq_u8(lo, vshlq_n_u8(hi, 4))), off);
                const int8x16_t q8 = vld1q_s8(y[i].q + 128 * j + 16 * k);
                acc = vmlaq_n_s32(acc, nx_dot16(vdupq_n_s32(0), u, q8), sc[8 * j + k]);
            }
        }
        /* the reference's isum - imin, with imin = 32 * sum sc * bsums folded into the codes */
        sum += nx_f16(b + 208) * y[i].d * (float)vaddvq_s32(acc);
    }
    *s = sum;
}

static tm_cpu_vec_dot nx_dot_table(tm_dtype t) {
    switch (t) {
    case TM_DTYPE_F32: return nx_dot_f32;
    case TM_DTYPE_F16: return nx_dot_f16;
    case TM_DTYPE_BF16: return nx_dot_bf16;
    case TM_DTYPE_Q4_0: return nx_dot_q4_0;
    case TM_DTYPE_Q4_1: return nx_dot_q4_1;
    case TM_DTYPE_Q5_0: return nx_dot_q5_0;
    case TM_DTYPE_Q5_1: return nx_dot_q5_1;
    case TM_DTYPE_Q8_0: return nx_dot_q8_0;
    case TM_DTYPE_Q2_K: return nx_dot_q2_k;
    case TM_DTYPE_Q3_K: return nx_dot_q3_k;
    case TM_DTYPE_Q4_K: return nx_dot_q4_k;
    case TM_DTYPE_Q5_K: return nx_dot_q5_k;
    case TM_DTYPE_Q6_K: return nx_dot_q6_k;
    default: return NULL;
    }
}

#endif /* NX_BUILD */

#if defined(TM_NEON_DOTPROD)

tm_cpu_vec_dot tm__cpu_dot_neon_dotprod(tm_dtype t) {
#if defined(NX_BUILD)
    return nx_dot_table(t);
#else
    (void)t;
    return NULL;
#endif
}

#else /* plain NEON: the dots and the activation quantizers */

tm_cpu_vec_dot tm__cpu_dot_neon(tm_dtype t) { return nx_dot_table(t); }

/* ---- activation quantizers: the bytes of quant_dot_ref.c's ----------------------------
 * max is exact and fmaxnm treats NaN as fmaxf does; d and 1/d are the same
 * scalar expressions, x * id is one rounding either way, and vcvtnq rounds to
 * nearest even as lrintf does in the default rounding mode. */

static inline float nx_amax(const float *x, int n) {
    float32x4_t m = vdupq_n_f32(0.0f);
    for (int i = 0; i < n; i += 4)
        m = vmaxnmq_f32(m, vabsq_f32(vld1q_f32(x + i)));
    return vmaxnmvq_f32(m);
}

/* 16 floats -> 16 int8 (x * id rounded); returns their sum. */
static inline int nx_quant16(const float *x, float id, int8_t *q) {
    int32x4_t v[4];
    for (int k = 0; k < 4; k++)
        v[k] = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(x + 4 * k), id));
    const int16x8_t h0 = vcombine_s16(vqmovn_s32(v[0]), vqmovn_s32(v[1]));
    const int16x8_t h1 = vcombine_s16(vqmovn_s32(v[2]), vqmovn_s32(v[3]));
    const int8x16_t b = vcombine_s8(vqmovn_s16(h0), vqmovn_s16(h1));
    vst1q_s8(q, b);
    return vaddlvq_s8(b);
}

void tm__cpu_quantize_q8_32_neon(const float *x, tm_q8_32 *out, int64_t n) {
    for (int64_t b = 0; b < n / TM_QK32; b++) {
        const float *xb = x + b * TM_QK32;
        const float  d = nx_amax(xb, TM_QK32) / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        const int    sum = nx_quant16(xb, id, out[b].q) + nx_quant16(xb + 16, id, out[b].q + 16);
        out[b].d = d;
        out[b].s = d * (float)sum;
    }
}

void tm__cpu_quantize_q8_k_neon(const float *x, tm_q8_k *out, int64_t n) {
    for (int64_t b = 0; b < n / TM_QKK; b++) {
        const float *xb = x + b * TM_QKK;
        const float  d = nx_amax(xb, TM_QKK) / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        out[b].d = d;
        for (int g = 0; g < TM_QKK / 16; g++)
            out[b].bsums[g] = (int16_t)nx_quant16(xb + 16 * g, id, out[b].q + 16 * g);
    }
}

#endif /* TM_NEON_DOTPROD */

#else /* not little-endian arm64 */

#if defined(TM_NEON_DOTPROD)

tm_cpu_vec_dot tm__cpu_dot_neon_dotprod(tm_dtype t) {
    (void)t;
    return NULL;
}

#else

tm_cpu_vec_dot tm__cpu_dot_neon(tm_dtype t) {
    (void)t;
    return NULL;
}

void tm__cpu_quantize_q8_32_neon(const float *x, tm_q8_32 *out, int64_t n) {
    tm__cpu_quantize_q8_32_ref(x, out, n);
}

void tm__cpu_quantize_q8_k_neon(const float *x, tm_q8_k *out, int64_t n) {
    tm__cpu_quantize_q8_k_ref(x, out, n);
}

#endif

#endif
