/*
 * quant_dot_avx2.c - AVX2 + FMA + F16C dot products for mul_mat (x86-64 only;
 * elsewhere tm__cpu_dot_avx2 returns NULL and the reference is used).
 *
 * DESIGN
 * - Compiled per function with __attribute__((target)), no global -march:
 *   tm__cpu_isa() only hands these out when the CPU reports avx2, fma and f16c.
 * - Integer sums are those of quant_dot_ref.c, block by block: signed x signed
 *   bytes go through _mm256_sign_epi8 + _mm256_maddubs_epi16 (|a| <= 128 and
 *   |b| <= 127, so the int16 pair sums cannot saturate), unsigned codes
 *   (<= 63) x signed activations through maddubs directly, then
 *   _mm256_madd_epi16 widens (times the K-format scales) to int32. Each block's
 *   float scale multiplies its int32 sum with one FMA into a vector accumulator.
 * - Activation rows are tm_q8_32 / tm_q8_k (simd_dot.h); weight rows are read
 *   in place from the mapping with unaligned loads.
 */
#include "backend/cpu/simd_dot.h"

/* No contraction of a * b + c into an FMA: the scalar block expressions must
 * round the same way in every variant (GCC does not contract in ISO C mode;
 * clang does by default). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float x2_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

AVX2 static inline float x2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static inline int32_t x2_hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

/* 32 signed bytes times 32 signed bytes -> 8 int32 pair-of-pairs sums. */
AVX2 static inline __m256i x2_dot_i8(__m256i a, __m256i b) {
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* 32 unsigned bytes (<= 63) times 32 signed bytes, the first 16 products scaled
 * by sa and the last 16 by sb -> 8 int32. */
AVX2 static inline __m256i x2_dot_u8s(__m256i u, const int8_t *x, int sa, int sb) {
    const __m256i p = _mm256_maddubs_epi16(u, _mm256_loadu_si256((const __m256i *)x));
    const __m256i s = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)sa)),
                                              _mm_set1_epi16((short)sb), 1);
    return _mm256_madd_epi16(p, s);
}

/* 16 bytes of nibbles -> 32 bytes: low nibbles (elements 0..15), then high (16..31). */
AVX2 static inline __m256i x2_nibbles(const uint8_t *qs) {
    const __m128i t = _mm_loadu_si128((const __m128i *)qs);
    const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
}

/* Bit j of a u32 -> byte j = 0xFF when set, 0 when clear. */
AVX2 static inline __m256i x2_bits_to_bytes(const uint8_t *p) {
    uint32_t x;
    memcpy(&x, p, 4);
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202,
                                           0x0101010101010101, 0x0000000000000000);
    __m256i       r = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), shuf);
    r = _mm256_or_si256(r, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(r, _mm256_set1_epi64x(-1));
}

/* ---- activation quantizers: the bytes of quant_dot_ref.c's ----------------------------
 * max is exact, d and 1/d are the same scalar expressions, x * id is one
 * rounding either way and _mm256_cvtps_epi32 rounds to nearest even as lrintf
 * does in the default rounding mode. */

/* 32 floats -> 32 int8 (x * id rounded); returns their sum. */
AVX2 static inline int x2_quant32(const float *x, float id, int8_t *q) {
    const __m256  vid = _mm256_set1_ps(id);
    __m256i       i0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x), vid));
    __m256i       i1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 8), vid));
    __m256i       i2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 16), vid));
    __m256i       i3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + 24), vid));
    const __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
    /* pack 32-bit -> 16-bit -> 8-bit (values within [-127, 127]), then undo the lane interleave */
    const __m256i p01 = _mm256_packs_epi32(i0, i1), p23 = _mm256_packs_epi32(i2, i3);
    __m256i       p = _mm256_packs_epi16(p01, p23);
    p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)q, p);
    return x2_hsum_i32(sum);
}

AVX2 static inline float x2_amax(const float *x, int n) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256       m = _mm256_setzero_ps();
    for (int i = 0; i < n; i += 8)
        m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}

AVX2 void tm__cpu_quantize_q8_32_avx2(const float *x, tm_q8_32 *out, int64_t n) {
    for (int64_t b = 0; b < n / TM_QK32; b++) {
        const float *xb = x + b * TM_QK32;
        const float  d = x2_amax(xb, TM_QK32) / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        const int    sum = x2_quant32(xb, id, out[b].q);
        out[b].d = d;
        out[b].s = d * (float)sum;
    }
}

AVX2 void tm__cpu_quantize_q8_k_avx2(const float *x, tm_q8_k *out, int64_t n) {
    for (int64_t b = 0; b < n / TM_QKK; b++) {
        const float *xb = x + b * TM_QKK;
        const float  d = x2_amax(xb, TM_QKK) / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        out[b].d = d;
        for (int j = 0; j < TM_QKK / 32; j++) {
            x2_quant32(xb + 32 * j, id, out[b].q + 32 * j);
            for (int h = 0; h < 2; h++) {
                const __m128i v = _mm_loadu_si128((const __m128i *)(out[b].q + 32 * j + 16 * h));
                const __m256i w = _mm256_cvtepi8_epi16(v);
                const __m256i s32 = _mm256_madd_epi16(w, _mm256_set1_epi16(1));
                out[b].bsums[2 * j + h] = (int16_t)x2_hsum_i32(s32);
            }
        }
    }
}

/* ---- float weights --------------------------------------------------------------- */

AVX2 static void x2_dot_f32(int64_t n, float *s, const void *w, const void *x) {
    const float *a = w, *b = x;
    __m256       acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    __m256       acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
    int64_t      i = 0;
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
        acc2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), acc2);
        acc3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), acc3);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float r = x2_hsum(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
    for (; i < n; i++)
        r += a[i] * b[i];
    *s = r;
}

AVX2 static inline __m256 x2_load_f16x8(const uint8_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

/* Two accumulators over 16 elements, so that the four-column variant below
 * (8 accumulators) fits the 16 ymm registers and gives the same bits. */
AVX2 static void x2_dot_f16(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *a = w;
    const float   *b = x;
    __m256         acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t        i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(x2_load_f16x8(a + 2 * i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(x2_load_f16x8(a + 2 * i + 16), _mm256_loadu_ps(b + i + 8), acc1);
    }
    if (i + 8 <= n) {
        acc0 = _mm256_fmadd_ps(x2_load_f16x8(a + 2 * i), _mm256_loadu_ps(b + i), acc0);
        i += 8;
    }
    float r = x2_hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++)
        r += x2_f16(a + 2 * i) * b[i];
    *s = r;
}

AVX2 static void x2_dot4_f16(int64_t n, float *s, const void *w, const void *x, size_t xs) {
    const uint8_t *a = w;
    const float   *y[4];
    __m256         acc0[4], acc1[4];
    for (int c = 0; c < 4; c++) {
        y[c] = (const float *)((const char *)x + (size_t)c * xs);
        acc0[c] = acc1[c] = _mm256_setzero_ps();
    }
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 w0 = x2_load_f16x8(a + 2 * i), w1 = x2_load_f16x8(a + 2 * i + 16);
        for (int c = 0; c < 4; c++) {
            acc0[c] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(y[c] + i), acc0[c]);
            acc1[c] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(y[c] + i + 8), acc1[c]);
        }
    }
    if (i + 8 <= n) {
        const __m256 w0 = x2_load_f16x8(a + 2 * i);
        for (int c = 0; c < 4; c++)
            acc0[c] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(y[c] + i), acc0[c]);
        i += 8;
    }
    for (int c = 0; c < 4; c++) {
        float r = x2_hsum(_mm256_add_ps(acc0[c], acc1[c]));
        for (int64_t k = i; k < n; k++)
            r += x2_f16(a + 2 * k) * y[c][k];
        s[c] = r;
    }
}

AVX2 static inline __m256 x2_load_bf16x8(const uint8_t *p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

AVX2 static void x2_dot_bf16(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *a = w;
    const float   *b = x;
    __m256         acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t        i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(x2_load_bf16x8(a + 2 * i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(x2_load_bf16x8(a + 2 * i + 16), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(x2_load_bf16x8(a + 2 * i), _mm256_loadu_ps(b + i), acc0);
    float r = x2_hsum(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) {
        uint16_t h;
        memcpy(&h, a + 2 * i, 2);
        uint32_t u = (uint32_t)h << 16;
        float    f;
        memcpy(&f, &u, 4);
        r += f * b[i];
    }
    *s = r;
}

/* ---- 32-element formats ------------------------------------------------------------ */

AVX2 static void x2_dot_q4_0(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t  *b = w;
    const tm_q8_32 *y = x;
    __m256          acc = _mm256_setzero_ps();
    const __m256i   off = _mm256_set1_epi8(8);
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 18) {
        const __m256i q = _mm256_sub_epi8(x2_nibbles(b + 2), off);
        const __m256i p = x2_dot_i8(q, _mm256_loadu_si256((const __m256i *)y[i].q));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x2_f16(b) * y[i].d), _mm256_cvtepi32_ps(p), acc);
    }
    *s = x2_hsum(acc);
}

AVX2 static void x2_dot_q8_0(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t  *b = w;
    const tm_q8_32 *y = x;
    __m256          acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 34) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(b + 2));
        const __m256i p = x2_dot_i8(q, _mm256_loadu_si256((const __m256i *)y[i].q));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x2_f16(b) * y[i].d), _mm256_cvtepi32_ps(p), acc);
    }
    *s = x2_hsum(acc);
}

AVX2 static void x2_dot_q5_0(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t  *b = w;
    const tm_q8_32 *y = x;
    __m256          acc = _mm256_setzero_ps();
    const __m256i   b16 = _mm256_set1_epi8(16);
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 22) {
        /* code - 16 = nibble - (fifth bit clear ? 16 : 0) */
        const __m256i hi = _mm256_andnot_si256(x2_bits_to_bytes(b + 2), b16);
        const __m256i q = _mm256_sub_epi8(x2_nibbles(b + 6), hi);
        const __m256i p = x2_dot_i8(q, _mm256_loadu_si256((const __m256i *)y[i].q));
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x2_f16(b) * y[i].d), _mm256_cvtepi32_ps(p), acc);
    }
    *s = x2_hsum(acc);
}

/* Q4_1 / Q5_1: unsigned codes times signed activations, plus m * x_s per block. */
AVX2 static void x2_dot_q4_1(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t  *b = w;
    const tm_q8_32 *y = x;
    __m256          acc = _mm256_setzero_ps();
    float           summ = 0.0f;
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 20) {
        const __m256i p = x2_dot_u8s(x2_nibbles(b + 4), y[i].q, 1, 1);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x2_f16(b) * y[i].d), _mm256_cvtepi32_ps(p), acc);
        summ += x2_f16(b + 2) * y[i].s;
    }
    *s = x2_hsum(acc) + summ;
}

AVX2 static void x2_dot_q5_1(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t  *b = w;
    const tm_q8_32 *y = x;
    __m256          acc = _mm256_setzero_ps();
    float           summ = 0.0f;
    const __m256i   b16 = _mm256_set1_epi8(16);
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 24) {
        const __m256i hi = _mm256_and_si256(x2_bits_to_bytes(b + 4), b16);
        const __m256i q = _mm256_or_si256(x2_nibbles(b + 8), hi);
        const __m256i p = x2_dot_u8s(q, y[i].q, 1, 1);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(x2_f16(b) * y[i].d), _mm256_cvtepi32_ps(p), acc);
        summ += x2_f16(b + 2) * y[i].s;
    }
    *s = x2_hsum(acc) + summ;
}

/* ---- K formats: per super-block int32 isum / imin as in quant_dot_ref.c ----------- */

static inline int x2_q3_scale(const uint8_t *sc, int g) {
    int lo = (sc[g % 8] >> (4 * (g / 8))) & 0x0F;
    int hi = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

static inline void x2_k4_scales(const uint8_t *q, int sc[8], int m[8]) {
    for (int j = 0; j < 4; j++) {
        sc[j] = q[j] & 63;
        m[j] = q[j + 4] & 63;
        sc[j + 4] = (q[j + 8] & 0x0F) | ((q[j] >> 6) << 4);
        m[j + 4] = (q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4);
    }
}

/* Q4_K / Q5_K scales and mins of one super-block as vectors (the 6-bit fields
 * regrouped with 32-bit masks, as ggml's utmp trick does): *sc = 16 bytes whose
 * int16 lanes 0..7 hold scales 0..7 (both halves alike, for in-lane shuffles),
 * and the int32 min term sum_j m_j * (bsums[2j] + bsums[2j+1]). */
AVX2 static inline __m256i x2_k4_scales_vec(const uint8_t *q, const int16_t *bsums, int32_t *imin) {
    uint32_t u[4];
    memcpy(u, q, 12);
    u[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
    const uint32_t m03 = u[1] & 0x3f3f3f3fu;
    u[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
    u[2] = m03;
    u[0] &= 0x3f3f3f3fu;
    const __m128i v = _mm_loadu_si128((const __m128i *)u);
    const __m128i sc = _mm_cvtepu8_epi16(v), mn = _mm_cvtepu8_epi16(_mm_srli_si128(v, 8));
    const __m128i b0 = _mm_loadu_si128((const __m128i *)bsums);
    const __m128i b1 = _mm_loadu_si128((const __m128i *)(bsums + 8));
    __m128i       p = _mm_madd_epi16(mn, _mm_hadd_epi16(b0, b1));
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, _MM_SHUFFLE(1, 0, 3, 2)));
    p = _mm_add_epi32(p, _mm_shuffle_epi32(p, _MM_SHUFFLE(2, 3, 0, 1)));
    *imin = _mm_cvtsi128_si32(p);
    return _mm256_inserti128_si256(_mm256_castsi128_si256(sc), sc, 1);
}

/* int16 lanes all = scale k of x2_k4_scales_vec's vector. */
AVX2 static inline __m256i x2_k4_bcast(__m256i sc, int k) {
    return _mm256_shuffle_epi8(sc, _mm256_set1_epi16((short)(((2 * k + 1) << 8) | (2 * k))));
}

AVX2 static void x2_dot_q2_k(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *b = w;
    const tm_q8_k *y = x;
    float          sum = 0.0f;
    const __m256i  m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < n / TM_QKK; i++, b += 84) {
        __m256i acc = _mm256_setzero_si256();
        int32_t imin = 0;
        for (int g = 0; g < 16; g++)
            imin += (b[g] >> 4) * y[i].bsums[g];
        for (int j = 0; j < 2; j++) {
            const __m256i qs = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * j));
            for (int h = 0; h < 4; h++) {
                const __m256i u = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * h), m3);
                const int     g = 8 * j + 2 * h;
                acc = _mm256_add_epi32(
                    acc, x2_dot_u8s(u, y[i].q + 128 * j + 32 * h, b[g] & 0x0F, b[g + 1] & 0x0F));
            }
        }
        const int32_t isum = x2_hsum_i32(acc);
        sum += x2_f16(b + 80) * y[i].d * (float)isum - x2_f16(b + 82) * y[i].d * (float)imin;
    }
    *s = sum;
}

AVX2 static void x2_dot_q3_k(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *b = w;
    const tm_q8_k *y = x;
    float          sum = 0.0f;
    const __m256i  m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / TM_QKK; i++, b += 110) {
        int sc[16];
        for (int g = 0; g < 16; g++)
            sc[g] = x2_q3_scale(b + 96, g);
        int32_t imin = 0;
        for (int g = 0; g < 16; g++)
            imin += 4 * sc[g] * y[i].bsums[g];
        const __m256i hm = _mm256_loadu_si256((const __m256i *)b);
        __m256i       acc = _mm256_setzero_si256();
        for (int j = 0; j < 2; j++) {
            const __m256i qs = _mm256_loadu_si256((const __m256i *)(b + 32 + 32 * j));
            for (int h = 0; h < 4; h++) {
                const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * h), m3);
                const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * j + h), one);
                const __m256i u = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 2));
                const int     g = 8 * j + 2 * h;
                acc = _mm256_add_epi32(acc,
                                       x2_dot_u8s(u, y[i].q + 128 * j + 32 * h, sc[g], sc[g + 1]));
            }
        }
        sum += x2_f16(b + 108) * y[i].d * (float)(x2_hsum_i32(acc) - imin);
    }
    *s = sum;
}

AVX2 static void x2_dot_q4_k(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *b = w;
    const tm_q8_k *y = x;
    float          sum = 0.0f;
    const __m256i  m4 = _mm256_set1_epi8(0x0F);
    for (int64_t i = 0; i < n / TM_QKK; i++, b += 144) {
        int32_t       imin;
        const __m256i sc = x2_k4_scales_vec(b + 4, y[i].bsums, &imin);
        __m256i       acc = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i qs = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * j));
            const __m256i lo = _mm256_and_si256(qs, m4);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(qs, 4), m4);
            const __m256i pl =
                _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(y[i].q + 64 * j)));
            const __m256i ph = _mm256_maddubs_epi16(
                hi, _mm256_loadu_si256((const __m256i *)(y[i].q + 64 * j + 32)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pl, x2_k4_bcast(sc, 2 * j)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(ph, x2_k4_bcast(sc, 2 * j + 1)));
        }
        const int32_t isum = x2_hsum_i32(acc);
        sum += x2_f16(b) * y[i].d * (float)isum - x2_f16(b + 2) * y[i].d * (float)imin;
    }
    *s = sum;
}

AVX2 static void x2_dot_q5_k(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *b = w;
    const tm_q8_k *y = x;
    float          sum = 0.0f;
    const __m256i  m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    for (int64_t i = 0; i < n / TM_QKK; i++, b += 176) {
        int32_t       imin;
        const __m256i sc = x2_k4_scales_vec(b + 4, y[i].bsums, &imin);
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 16));
        __m256i       acc = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            const __m256i qs = _mm256_loadu_si256((const __m256i *)(b + 48 + 32 * j));
            const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), one);
            const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), one);
            const __m256i lo = _mm256_or_si256(_mm256_and_si256(qs, m4), _mm256_slli_epi16(h0, 4));
            const __m256i hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qs, 4), m4),
                                               _mm256_slli_epi16(h1, 4));
            const __m256i pl =
                _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(y[i].q + 64 * j)));
            const __m256i ph = _mm256_maddubs_epi16(
                hi, _mm256_loadu_si256((const __m256i *)(y[i].q + 64 * j + 32)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(pl, x2_k4_bcast(sc, 2 * j)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(ph, x2_k4_bcast(sc, 2 * j + 1)));
        }
        const int32_t isum = x2_hsum_i32(acc);
        sum += x2_f16(b) * y[i].d * (float)isum - x2_f16(b + 2) * y[i].d * (float)imin;
    }
    *s = sum;
}

AVX2 static void x2_dot_q6_k(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *b = w;
    const tm_q8_k *y = x;
    float          sum = 0.0f;
    const __m256i  m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    for (int64_t i = 0; i < n / TM_QKK; i++, b += 210) {
        /* 16 int8 scales -> int16; imin = 32 * sum_g sc_g * bsums_g */
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 192)));
        const int32_t imin =
            32 *
            x2_hsum_i32(_mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)y[i].bsums)));
        __m256i acc = _mm256_setzero_si256();
        for (int j = 0; j < 2; j++) {
            const __m128i s8 =
                j == 0 ? _mm256_castsi256_si128(sc16) : _mm256_extracti128_si256(sc16, 1);
            const __m256i s2 = _mm256_inserti128_si256(_mm256_castsi128_si256(s8), s8, 1);
            const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b + 64 * j));
            const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b + 64 * j + 32));
            const __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * j));
            const __m256i lo[4] = {_mm256_and_si256(ql0, m4), _mm256_and_si256(ql1, m4),
                                   _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                   _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4)};
            for (int h = 0; h < 4; h++) {
                const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * h), m3);
                const __m256i u = _mm256_or_si256(lo[h], _mm256_slli_epi16(hb, 4));
                /* scale 2h of this half in the first 8 lanes, 2h + 1 in the last 8 */
                const __m256i sv = _mm256_shuffle_epi8(
                    s2, _mm256_setr_epi8(4 * h, 4 * h + 1, 4 * h, 4 * h + 1, 4 * h, 4 * h + 1,
                                         4 * h, 4 * h + 1, 4 * h, 4 * h + 1, 4 * h, 4 * h + 1,
                                         4 * h, 4 * h + 1, 4 * h, 4 * h + 1, 4 * h + 2, 4 * h + 3,
                                         4 * h + 2, 4 * h + 3, 4 * h + 2, 4 * h + 3, 4 * h + 2,
                                         4 * h + 3, 4 * h + 2, 4 * h + 3, 4 * h + 2, 4 * h + 3,
                                         4 * h + 2, 4 * h + 3, 4 * h + 2, 4 * h + 3));
                const __m256i p = _mm256_maddubs_epi16(
                    u, _mm256_loadu_si256((const __m256i *)(y[i].q + 128 * j + 32 * h)));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, sv));
            }
        }
        sum += x2_f16(b + 208) * y[i].d * (float)(x2_hsum_i32(acc) - imin);
    }
    *s = sum;
}

/* ---- four activation columns per weight row (prefill) --------------------------------
 * Each weight block is unpacked once and dotted with four columns. Per column
 * the operations, their order and the accumulators are those of the one-column
 * dots above, so a column's result has the same bits either way (mul_mat's
 * output does not depend on how columns are grouped). */

/* 32-element formats: signed codes (Q4_0, Q5_0, Q8_0) or unsigned codes plus a
 * min (Q4_1, Q5_1). */
AVX2 static inline void x2_dot4_32(int64_t n, float *s, const uint8_t *b, const void *x, size_t xs,
                                   tm_dtype t) {
    const tm_q8_32 *y[4];
    for (int c = 0; c < 4; c++)
        y[c] = (const tm_q8_32 *)((const char *)x + (size_t)c * xs);
    __m256        acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(),
                            _mm256_setzero_ps()};
    float         summ[4] = {0, 0, 0, 0};
    const bool    has_m = t == TM_DTYPE_Q4_1 || t == TM_DTYPE_Q5_1;
    const int     bsz = t == TM_DTYPE_Q4_0   ? 18
                        : t == TM_DTYPE_Q4_1 ? 20
                        : t == TM_DTYPE_Q5_0 ? 22
                        : t == TM_DTYPE_Q5_1 ? 24
                                             : 34;
    const __m256i b16 = _mm256_set1_epi8(16), ones = _mm256_set1_epi16(1);
    for (int64_t i = 0; i < n / TM_QK32; i++, b += bsz) {
        __m256i q;
        float   mw = 0.0f;
        switch (t) {
        case TM_DTYPE_Q4_0: q = _mm256_sub_epi8(x2_nibbles(b + 2), _mm256_set1_epi8(8)); break;
        case TM_DTYPE_Q5_0:
            q = _mm256_sub_epi8(x2_nibbles(b + 6),
                                _mm256_andnot_si256(x2_bits_to_bytes(b + 2), b16));
            break;
        case TM_DTYPE_Q4_1:
            q = x2_nibbles(b + 4);
            mw = x2_f16(b + 2);
            break;
        case TM_DTYPE_Q5_1:
            q = _mm256_or_si256(x2_nibbles(b + 8), _mm256_and_si256(x2_bits_to_bytes(b + 4), b16));
            mw = x2_f16(b + 2);
            break;
        default: q = _mm256_loadu_si256((const __m256i *)(b + 2)); break;
        }
        const float   dw = x2_f16(b);
        const __m256i aq = has_m ? q : _mm256_sign_epi8(q, q);
        for (int c = 0; c < 4; c++) {
            const __m256i yv = _mm256_loadu_si256((const __m256i *)y[c][i].q);
            const __m256i p = _mm256_maddubs_epi16(aq, has_m ? yv : _mm256_sign_epi8(yv, q));
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(dw * y[c][i].d),
                                     _mm256_cvtepi32_ps(_mm256_madd_epi16(p, ones)), acc[c]);
            if (has_m)
                summ[c] += mw * y[c][i].s;
        }
    }
    for (int c = 0; c < 4; c++)
        s[c] = has_m ? x2_hsum(acc[c]) + summ[c] : x2_hsum(acc[c]);
}

AVX2 static void x2_dot4_q4_0(int64_t n, float *s, const void *w, const void *x, size_t xs) {
    x2_dot4_32(n, s, w, x, xs, TM_DTYPE_Q4_0);
}
AVX2 static void x2_dot4_q4_1(int64_t n, float *s, const void *w, const void *x, size_t xs) {
    x2_dot4_32(n, s, w, x, xs, TM_DTYPE_Q4_1);
}
AVX2 static void x2_dot4_q5_0(int64_t n, float *s, const void *w, const void *x, size_t xs) {
    x2_dot4_32(n, s, w, x, xs, TM_DTYPE_Q5_0);
}
AVX2 static void x2_dot4_q5_1(int64_t n, float *s, const void *w, const void *x, size_t xs) {
    x2_dot4_32(n, s, w, x, xs, TM_DTYPE_Q5_1);
}
AVX2 static void x2_dot4_q8_0(int64_t n, float *s, const void *w, const void *x, size_t xs) {
    x2_dot4_32(n, s, w, x, xs, TM_DTYPE_Q8_0);
}

/* A K super-block unpacked for reuse across columns: unsigned codes, the
 * madd scale vector of each 32-element chunk, and the per-16 coefficients of
 * the block sums (mins, or the constant offset times the scale). */
typedef struct x2_kblock {
    __m256i u[8];  /* codes of elements 32k .. 32k+31 */
    __m256i sv[8]; /* int16 scales: 8 x first 16 elements, 8 x last 16 */
    __m256i coef;  /* int16[16], dotted with the activation block sums */
    float   d, dmin;
    bool    off; /* coef is an offset inside the int sum (Q3_K, Q6_K), not a min */
} x2_kblock;

AVX2 static inline __m256i x2_sv(int sa, int sb) {
    return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16((short)sa)),
                                   _mm_set1_epi16((short)sb), 1);
}

AVX2 static inline void x2_unpack_q2_k(const uint8_t *b, x2_kblock *k) {
    const __m256i m3 = _mm256_set1_epi8(3);
    int16_t       cf[16];
    for (int g = 0; g < 16; g++)
        cf[g] = (int16_t)(b[g] >> 4);
    for (int j = 0; j < 2; j++) {
        const __m256i qs = _mm256_loadu_si256((const __m256i *)(b + 16 + 32 * j));
        for (int h = 0; h < 4; h++) {
            const int g = 8 * j + 2 * h;
            k->u[4 * j + h] = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * h), m3);
            k->sv[4 * j + h] = x2_sv(b[g] & 0x0F, b[g + 1] & 0x0F);
        }
    }
    k->coef = _mm256_loadu_si256((const __m256i *)cf);
    k->d = x2_f16(b + 80);
    k->dmin = x2_f16(b + 82);
    k->off = false;
}

AVX2 static inline void x2_unpack_q3_k(const uint8_t *b, x2_kblock *k) {
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    int           sc[16];
    int16_t       cf[16];
    for (int g = 0; g < 16; g++) {
        sc[g] = x2_q3_scale(b + 96, g);
        cf[g] = (int16_t)(4 * sc[g]);
    }
    const __m256i hm = _mm256_loadu_si256((const __m256i *)b);
    for (int j = 0; j < 2; j++) {
        const __m256i qs = _mm256_loadu_si256((const __m256i *)(b + 32 + 32 * j));
        for (int h = 0; h < 4; h++) {
            const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(qs, 2 * h), m3);
            const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, 4 * j + h), one);
            const int     g = 8 * j + 2 * h;
            k->u[4 * j + h] = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 2));
            k->sv[4 * j + h] = x2_sv(sc[g], sc[g + 1]);
        }
    }
    k->coef = _mm256_loadu_si256((const __m256i *)cf);
    k->d = x2_f16(b + 108);
    k->dmin = 0.0f;
    k->off = true;
}

AVX2 static inline void x2_unpack_q45_k(const uint8_t *b, x2_kblock *k, bool five) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    int           sc[8], m[8];
    int16_t       cf[16];
    x2_k4_scales(b + 4, sc, m);
    for (int j = 0; j < 8; j++)
        cf[2 * j] = cf[2 * j + 1] = (int16_t)m[j];
    const uint8_t *qsb = b + (five ? 48 : 16);
    const __m256i  qh =
        five ? _mm256_loadu_si256((const __m256i *)(b + 16)) : _mm256_setzero_si256();
    for (int j = 0; j < 4; j++) {
        const __m256i qs = _mm256_loadu_si256((const __m256i *)(qsb + 32 * j));
        __m256i       lo = _mm256_and_si256(qs, m4);
        __m256i       hi = _mm256_and_si256(_mm256_srli_epi16(qs, 4), m4);
        if (five) {
            lo = _mm256_or_si256(
                lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j), one), 4));
            hi = _mm256_or_si256(
                hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * j + 1), one), 4));
        }
        k->u[2 * j] = lo;
        k->u[2 * j + 1] = hi;
        k->sv[2 * j] = x2_sv(sc[2 * j], sc[2 * j]);
        k->sv[2 * j + 1] = x2_sv(sc[2 * j + 1], sc[2 * j + 1]);
    }
    k->coef = _mm256_loadu_si256((const __m256i *)cf);
    k->d = x2_f16(b);
    k->dmin = x2_f16(b + 2);
    k->off = false;
}

AVX2 static inline void x2_unpack_q6_k(const uint8_t *b, x2_kblock *k) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    const int8_t *sc = (const int8_t *)(b + 192);
    int16_t       cf[16];
    for (int g = 0; g < 16; g++)
        cf[g] = (int16_t)(32 * sc[g]);
    for (int j = 0; j < 2; j++) {
        const __m256i ql0 = _mm256_loadu_si256((const __m256i *)(b + 64 * j));
        const __m256i ql1 = _mm256_loadu_si256((const __m256i *)(b + 64 * j + 32));
        const __m256i qh = _mm256_loadu_si256((const __m256i *)(b + 128 + 32 * j));
        const __m256i lo[4] = {_mm256_and_si256(ql0, m4), _mm256_and_si256(ql1, m4),
                               _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                               _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4)};
        for (int h = 0; h < 4; h++) {
            const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * h), m3);
            const int     g = 8 * j + 2 * h;
            k->u[4 * j + h] = _mm256_or_si256(lo[h], _mm256_slli_epi16(hb, 4));
            k->sv[4 * j + h] = x2_sv(sc[g], sc[g + 1]);
        }
    }
    k->coef = _mm256_loadu_si256((const __m256i *)cf);
    k->d = x2_f16(b + 208);
    k->dmin = 0.0f;
    k->off = true;
}

/* One column of an unpacked super-block; the float expression of the
 * one-column dots: d*xd*isum - dmin*xd*imin (Q2/Q4/Q5_K) or d*xd*(isum - ioff)
 * (Q3/Q6_K). */
AVX2 static inline float x2_kblock_col(const x2_kblock *k, const tm_q8_k *y) {
    __m256i acc = _mm256_setzero_si256();
    for (int c = 0; c < 8; c++) {
        const __m256i p =
            _mm256_maddubs_epi16(k->u[c], _mm256_loadu_si256((const __m256i *)(y->q + 32 * c)));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, k->sv[c]));
    }
    const int32_t isum = x2_hsum_i32(acc);
    const int32_t icf =
        x2_hsum_i32(_mm256_madd_epi16(k->coef, _mm256_loadu_si256((const __m256i *)y->bsums)));
    if (k->off)
        return k->d * y->d * (float)(isum - icf);
    return k->d * y->d * (float)isum - k->dmin * y->d * (float)icf;
}

AVX2 static inline void x2_dot4_k(int64_t n, float *s, const uint8_t *b, const void *x, size_t xs,
                                  tm_dtype t) {
    const tm_q8_k *y[4];
    for (int c = 0; c < 4; c++)
        y[c] = (const tm_q8_k *)((const char *)x + (size_t)c * xs);
    const int bsz = t == TM_DTYPE_Q2_K   ? 84
                    : t == TM_DTYPE_Q3_K ? 110
                    : t == TM_DTYPE_Q4_K ? 144
                    : t == TM_DTYPE_Q5_K ? 176
                                         : 210;
    float     sum[4] = {0, 0, 0, 0};
    x2_kblock k;
    for (int64_t i = 0; i < n / TM_QKK; i++, b += bsz) {
        switch (t) {
        case TM_DTYPE_Q2_K: x2_unpack_q2_k(b, &k); break;
        case TM_DTYPE_Q3_K: x2_unpack_q3_k(b, &k); break;
        case TM_DTYPE_Q4_K: x2_unpack_q45_k(b, &k, false); break;
        case TM_DTYPE_Q5_K: x2_unpack_q45_k(b, &k, true); break;
        default: x2_unpack_q6_k(b, &k); break;
        }
        for (int c = 0; c < 4; c++)
            sum[c] += x2_kblock_col(&k, &y[c][i]);
    }
    for (int c = 0; c < 4; c++)
        s[c] = sum[c];
}

AVX2 static void x2_dot4_q2_k(int64_t n, float *s, const void *w, const void *x, size_t xs) {
    x2_dot4_k(n, s, w, x, xs, TM_DTYPE_Q2_K);
}
AVX2 static void x2_dot4_q3_k(int64_t n, float *s, const void *w, const void *x, size_t xs) {
    x2_dot4_k(n, s, w, x, xs, TM_DTYPE_Q3_K);
}
AVX2 static void x2_dot4_q4_k(int64_t n, float *s, const void *w, const void *x, size_t xs) {
    x2_dot4_k(n, s, w, x, xs, TM_DTYPE_Q4_K);
}
AVX2 static void x2_dot4_q5_k(int64_t n, float *s, const void *w, const void *x, size_t xs) {
    x2_dot4_k(n, s, w, x, xs, TM_DTYPE_Q5_K);
}
AVX2 static void x2_dot4_q6_k(int64_t n, float *s, const void *w, const void *x, size_t xs) {
    x2_dot4_k(n, s, w, x, xs, TM_DTYPE_Q6_K);
}

tm_cpu_vec_dot4 tm__cpu_dot4_avx2(tm_dtype t) {
    switch (t) {
    case TM_DTYPE_F16: return x2_dot4_f16;
    case TM_DTYPE_Q4_0: return x2_dot4_q4_0;
    case TM_DTYPE_Q4_1: return x2_dot4_q4_1;
    case TM_DTYPE_Q5_0: return x2_dot4_q5_0;
    case TM_DTYPE_Q5_1: return x2_dot4_q5_1;
    case TM_DTYPE_Q8_0: return x2_dot4_q8_0;
    case TM_DTYPE_Q2_K: return x2_dot4_q2_k;
    case TM_DTYPE_Q3_K: return x2_dot4_q3_k;
    case TM_DTYPE_Q4_K: return x2_dot4_q4_k;
    case TM_DTYPE_Q5_K: return x2_dot4_q5_k;
    case TM_DTYPE_Q6_K: return x2_dot4_q6_k;
    default: return NULL;
    }
}

tm_cpu_vec_dot tm__cpu_dot_avx2(tm_dtype t) {
    switch (t) {
    case TM_DTYPE_F32: return x2_dot_f32;
    case TM_DTYPE_F16: return x2_dot_f16;
    case TM_DTYPE_BF16: return x2_dot_bf16;
    case TM_DTYPE_Q4_0: return x2_dot_q4_0;
    case TM_DTYPE_Q4_1: return x2_dot_q4_1;
    case TM_DTYPE_Q5_0: return x2_dot_q5_0;
    case TM_DTYPE_Q5_1: return x2_dot_q5_1;
    case TM_DTYPE_Q8_0: return x2_dot_q8_0;
    case TM_DTYPE_Q2_K: return x2_dot_q2_k;
    case TM_DTYPE_Q3_K: return x2_dot_q3_k;
    case TM_DTYPE_Q4_K: return x2_dot_q4_k;
    case TM_DTYPE_Q5_K: return x2_dot_q5_k;
    case TM_DTYPE_Q6_K: return x2_dot_q6_k;
    default: return NULL;
    }
}

#else /* not x86 */

void tm__cpu_quantize_q8_32_avx2(const float *x, tm_q8_32 *out, int64_t n) {
    tm__cpu_quantize_q8_32_ref(x, out, n);
}

void tm__cpu_quantize_q8_k_avx2(const float *x, tm_q8_k *out, int64_t n) {
    tm__cpu_quantize_q8_k_ref(x, out, n);
}

tm_cpu_vec_dot tm__cpu_dot_avx2(tm_dtype t) {
    (void)t;
    return NULL;
}

tm_cpu_vec_dot4 tm__cpu_dot4_avx2(tm_dtype t) {
    (void)t;
    return NULL;
}

#endif
