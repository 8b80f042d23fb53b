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

/* ---- four weight rows x columns (Q4_0 / Q5_0 / Q8_0) ------------------------------
 * Two rows per 512-bit register, one block (32 codes as unsigned bytes) per 256-bit
 * half; a column's 32 activations are broadcast to both halves, so one vpdpbusd
 * gives 8 int32 partial sums for each of two rows. The code offset (8, 16 or 128)
 * is taken out once at the end: offset * sum over blocks of d_w * s_y (tm_q8_32.s =
 * d_y * sum of the block's codes), one 4-lane FMA per column and block. The rows' f16 scales are
 * converted together and spread to the halves with one permute each. Weights are unpacked once per
 * block for up to 4 columns. */

/* Block codes of two rows (block pointers b0, b1) as unsigned bytes, element order. */
AVX512 static inline __m512i x5_codes2(tm_dtype t, const uint8_t *b0, const uint8_t *b1) {
    if (t == TM_DTYPE_Q8_0) {
        const __m512i q = _mm512_inserti64x4(
            _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b0 + 2))),
            _mm256_loadu_si256((const __m256i *)(b1 + 2)), 1);
        return _mm512_xor_si512(q, _mm512_set1_epi8((char)0x80));
    }
    const int     qo = t == TM_DTYPE_Q4_0 ? 2 : 6; /* nibbles after d (and qh) */
    const __m128i n0 = _mm_loadu_si128((const __m128i *)(b0 + qo));
    const __m128i n1 = _mm_loadu_si128((const __m128i *)(b1 + qo));
    const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_broadcastsi128_si256(n0)),
                                         _mm256_broadcastsi128_si256(n1), 1);
    /* 128-bit lanes: low nibbles (elements 0..15), high nibbles (16..31), per row */
    __m512i u = _mm512_and_si512(_mm512_mask_blend_epi64(0xCC, v, _mm512_srli_epi16(v, 4)),
                                 _mm512_set1_epi8(0x0F));
    if (t == TM_DTYPE_Q5_0) { /* fifth bit j of qh -> + 16 on element j */
        uint32_t h0, h1;
        memcpy(&h0, b0 + 2, 4);
        memcpy(&h1, b1 + 2, 4);
        const __mmask64 m = _cvtu64_mask64((uint64_t)h0 | ((uint64_t)h1 << 32));
        u = _mm512_mask_add_epi8(u, m, u, _mm512_set1_epi8(16));
    }
    return u;
}

/* Bytes per block and the offset the unsigned codes carry (Q4_0 / Q5_0 / Q8_0). */
__attribute__((always_inline)) AVX512 static inline int x5_block_bytes(tm_dtype t) {
    return t == TM_DTYPE_Q8_0 ? 34 : t == TM_DTYPE_Q5_0 ? 22 : 18;
}

__attribute__((always_inline)) AVX512 static inline float x5_code_offset(tm_dtype t) {
    return t == TM_DTYPE_Q8_0 ? 128.0f : t == TM_DTYPE_Q5_0 ? 16.0f : 8.0f;
}

/* The f16 scales at the start of four blocks, as floats. */
__attribute__((always_inline)) AVX512 static inline __m128
x5_scales4(const uint8_t *b0, const uint8_t *b1, const uint8_t *b2, const uint8_t *b3) {
    uint16_t h[4];
    memcpy(&h[0], b0, 2);
    memcpy(&h[1], b1, 2);
    memcpy(&h[2], b2, 2);
    memcpy(&h[3], b3, 2);
    uint64_t h64;
    memcpy(&h64, h, 8);
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)h64));
}

/* Prefetches n bytes at p into L1 (the next row group of a four-row dot). */
__attribute__((always_inline)) AVX512 static inline void x5_prefetch(const char *p, int n) {
    for (int o = 0; o < n; o += 64)
        _mm_prefetch(p + o, _MM_HINT_T0);
}

/* {sum of a's low half, of a's high half, of b's low, of b's high}. */
AVX512 static inline __m128 x5_hsum4(__m512 a, __m512 b) {
    const __m256 h01 =
        _mm256_hadd_ps(_mm512_castps512_ps256(a),
                       _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)));
    const __m256 h23 =
        _mm256_hadd_ps(_mm512_castps512_ps256(b),
                       _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(b), 1)));
    const __m256 h = _mm256_hadd_ps(h01, h23);
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

__attribute__((always_inline)) AVX512 static inline void x5_r4_body(tm_dtype t, int nc, int64_t n,
                                                                    float *s, size_t ss,
                                                                    const uint8_t *w, size_t ws,
                                                                    const char *x, size_t xs) {
    const int     bs = x5_block_bytes(t);
    const float   off = x5_code_offset(t);
    const __m512i i01 = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
    const __m512i i23 = _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2);
    __m512        a01[4], a23[4];
    __m128        corr[4]; /* per row: sum over blocks of d_w * s_y (the offset term) */
    for (int c = 0; c < nc; c++) {
        a01[c] = a23[c] = _mm512_setzero_ps();
        corr[c] = _mm_setzero_ps();
    }
    const uint8_t *b0 = w, *b1 = w + ws, *b2 = w + 2 * ws, *b3 = w + 3 * ws;
    /* The 4 rows are 4 short interleaved streams the hardware prefetcher barely
     * learns; the next group of rows (contiguous, right after these) is prefetched
     * in step, 4 * bs bytes per block. */
    const char *pf = (const char *)w + 4 * ws;
    for (int64_t i = 0; i < n / TM_QK32; i++, b0 += bs, b1 += bs, b2 += bs, b3 += bs) {
        x5_prefetch(pf + i * 4 * bs, 4 * bs);
        const __m512i u01 = x5_codes2(t, b0, b1), u23 = x5_codes2(t, b2, b3);
        const __m128  dw = x5_scales4(b0, b1, b2, b3);
        const __m512  dw01 = _mm512_permutexvar_ps(i01, _mm512_castps128_ps512(dw));
        const __m512  dw23 = _mm512_permutexvar_ps(i23, _mm512_castps128_ps512(dw));
        for (int c = 0; c < nc; c++) {
            const tm_q8_32 *y = (const tm_q8_32 *)(x + (size_t)c * xs) + i;
            const __m512i   yb = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)y->q));
            const __m512i   z = _mm512_setzero_si512();
            const __m512    p01 =
                _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, u01, yb)), dw01);
            const __m512 p23 =
                _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_dpbusd_epi32(z, u23, yb)), dw23);
            const __m512 dy = _mm512_set1_ps(y->d);
            a01[c] = _mm512_fmadd_ps(p01, dy, a01[c]);
            a23[c] = _mm512_fmadd_ps(p23, dy, a23[c]);
            corr[c] = _mm_fmadd_ps(dw, _mm_set1_ps(y->s), corr[c]);
        }
    }
    for (int c = 0; c < nc; c++)
        _mm_storeu_ps(s + (size_t)c * ss,
                      _mm_fnmadd_ps(_mm_set1_ps(off), corr[c], x5_hsum4(a01[c], a23[c])));
}

#define X5_R4(name, T)                                                                             \
    AVX512 static void name(int64_t n, float *s, size_t ss, const void *w, size_t ws,              \
                            const void *x, size_t xs, int nc) {                                    \
        for (; nc >= 4; nc -= 4, s += 4 * ss, x = (const char *)x + 4 * xs)                        \
            x5_r4_body(T, 4, n, s, ss, w, ws, x, xs);                                              \
        if (nc >= 2) { /* e.g. a column and its residual (16-bit activations) */                   \
            x5_r4_body(T, 2, n, s, ss, w, ws, x, xs);                                              \
            nc -= 2, s += 2 * ss, x = (const char *)x + 2 * xs;                                    \
        }                                                                                          \
        for (; nc > 0; nc--, s += ss, x = (const char *)x + xs)                                    \
            x5_r4_body(T, 1, n, s, ss, w, ws, x, xs);                                              \
    }
X5_R4(x5_r4_q4_0, TM_DTYPE_Q4_0)
X5_R4(x5_r4_q5_0, TM_DTYPE_Q5_0)
X5_R4(x5_r4_q8_0, TM_DTYPE_Q8_0)

/* ---- four weight rows x groups of four columns (Q4_0 / Q5_0 / Q8_0), batches -------
 * int32 lane 4r + c holds the block dot of row r and column c: for each 4-byte group
 * g of the block, a two-source permute places row r's 4 codes in lanes 4r .. 4r + 3
 * and the interleaved activations (tm_q8_32x4) put column c's 4 bytes in lane c of
 * every 128-bit lane, so one vpdpbusd does 64 multiply-adds for 16 (row, column)
 * pairs. Per block the 16 exact int32 sums get one convert and one FMA with the
 * outer product of the row and column scales; the code offset is taken out at the
 * end, as in the four-row dots. Two column groups share each permute. */

__attribute__((always_inline)) AVX512 static inline void x5_t4_body(tm_dtype t, int ng, int64_t n,
                                                                    float *s, size_t ss,
                                                                    const uint8_t *w, size_t ws,
                                                                    const char *x, size_t xs) {
    const int     bs = x5_block_bytes(t);
    const float   off = x5_code_offset(t);
    const __m512i rep = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
    __m512        acc[4], corr[4];
    for (int k = 0; k < ng; k++)
        acc[k] = corr[k] = _mm512_setzero_ps();
    const uint8_t *b0 = w, *b1 = w + ws, *b2 = w + 2 * ws, *b3 = w + 3 * ws;
    const char    *pf = (const char *)w + 4 * ws;
    for (int64_t i = 0; i < n / TM_QK32; i++, b0 += bs, b1 += bs, b2 += bs, b3 += bs) {
        x5_prefetch(pf + i * 4 * bs, 4 * bs);
        const __m512i u01 = x5_codes2(t, b0, b1), u23 = x5_codes2(t, b2, b3);
        const __m512  dw =
            _mm512_permutexvar_ps(rep, _mm512_castps128_ps512(x5_scales4(b0, b1, b2, b3)));
        const tm_q8_32x4 *y[4];
        __m512i           is[4];
        for (int k = 0; k < ng; k++) {
            y[k] = (const tm_q8_32x4 *)(x + (size_t)k * xs) + i;
            is[k] = _mm512_setzero_si512();
        }
        for (int g = 0; g < 8; g++) {
            /* lanes 4r .. 4r + 3: dword g of row r (u01 rows 0, 1; u23 rows 2, 3) */
            const __m512i a = _mm512_permutex2var_epi32(
                u01, _mm512_add_epi32(_mm512_slli_epi32(rep, 3), _mm512_set1_epi32(g)), u23);
            for (int k = 0; k < ng; k++)
                is[k] = _mm512_dpbusd_epi32(
                    is[k], a,
                    _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)(y[k]->q + 16 * g))));
        }
        for (int k = 0; k < ng; k++) {
            const __m512 dy = _mm512_broadcast_f32x4(_mm_loadu_ps(y[k]->d));
            const __m512 sy = _mm512_broadcast_f32x4(_mm_loadu_ps(y[k]->s));
            acc[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(is[k]), _mm512_mul_ps(dw, dy), acc[k]);
            corr[k] = _mm512_fmadd_ps(dw, sy, corr[k]);
        }
    }
    for (int k = 0; k < ng; k++) {
        float o[16];
        _mm512_storeu_ps(o, _mm512_fnmadd_ps(_mm512_set1_ps(off), corr[k], acc[k]));
        for (int c = 0; c < 4; c++)
            for (int r = 0; r < 4; r++)
                s[(size_t)(4 * k + c) * ss + r] = o[4 * r + c];
    }
}

#define X5_T4(name, T)                                                                             \
    AVX512 static void name(int64_t n, float *s, size_t ss, const void *w, size_t ws,              \
                            const void *x, size_t xs, int ng) {                                    \
        for (; ng >= 4; ng -= 4, s += 16 * ss, x = (const char *)x + 4 * xs)                       \
            x5_t4_body(T, 4, n, s, ss, w, ws, x, xs);                                              \
        for (; ng >= 2; ng -= 2, s += 8 * ss, x = (const char *)x + 2 * xs)                        \
            x5_t4_body(T, 2, n, s, ss, w, ws, x, xs);                                              \
        if (ng > 0)                                                                                \
            x5_t4_body(T, 1, n, s, ss, w, ws, x, xs);                                              \
    }
X5_T4(x5_t4_q4_0, TM_DTYPE_Q4_0)
X5_T4(x5_t4_q5_0, TM_DTYPE_Q5_0)
X5_T4(x5_t4_q8_0, TM_DTYPE_Q8_0)

tm_cpu_vec_dot_t4 tm__cpu_dot_t4_avx512(tm_dtype t) {
    switch (t) {
    case TM_DTYPE_Q4_0: return x5_t4_q4_0;
    case TM_DTYPE_Q5_0: return x5_t4_q5_0;
    case TM_DTYPE_Q8_0: return x5_t4_q8_0;
    default: return NULL;
    }
}

/* ---- K formats, one weight row x up to four columns (Q4_K / Q6_K) -------------------
 * Each 64-element run of codes is built in one 512-bit register in element order
 * (Q4_K: 32 bytes broadcast, the upper copy shifted to its high nibbles; Q6_K: 64
 * low-nibble bytes plus the 2-bit high parts), so the column's activations are one
 * plain 64-byte load. vpmaddubsw makes int16 pair sums and vpdpwssd multiplies them
 * by the sub-block scales (spread with vpermw) into int32 lanes; the min / offset
 * term is one 256-bit vpdpwssd of the scales or mins against the block sums. One
 * float FMA per super-block and column. The row's codes and scales are built once
 * for up to four columns; rows run one after another (one contiguous stream). */

/* Q4_K / Q5_K 6-bit scales and mins of one super-block: bytes 0..7 scales, 8..15 mins. */
AVX512 static inline __m128i x5_k4_scales(const uint8_t *q) {
    uint32_t u[4];
    memcpy(u, q, 12);
    u[3] = ((u[2] >> 4) & 0x0f0f0f0fu) | (((u[1] >> 6) & 0x03030303u) << 4);
    const uint32_t m03 = u[1] & 0x3f3f3f3fu;
    u[1] = (u[2] & 0x0f0f0f0fu) | (((u[0] >> 6) & 0x03030303u) << 4);
    u[2] = m03;
    u[0] &= 0x3f3f3f3fu;
    return _mm_loadu_si128((const __m128i *)u);
}

/* Word w of the result = word idx(w) of v, for the four 64-element runs g: Q4_K run g
 * holds sub-blocks 2g, 2g + 1 (32 elements each); Q6_K run g sub-blocks 4g .. 4g + 3. */
AVX512 static inline __m512i x5_spread(__m512i v, int per, int first) {
    int16_t idx[32];
    for (int w = 0; w < 32; w++)
        idx[w] = (int16_t)(first + w / per);
    return _mm512_permutexvar_epi16(_mm512_loadu_si512(idx), v);
}

__attribute__((always_inline)) AVX512 static inline void x5_k_row(tm_dtype t, int nc, int64_t n,
                                                                  float *s, size_t ss,
                                                                  const uint8_t *b, const char *x,
                                                                  size_t xs) {
    const __m512i   m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    const __mmask32 up = 0xFFFF0000u; /* upper 256 bits, in 16-bit lanes */
    __m256          acc[8];
    for (int c = 0; c < nc; c++)
        acc[c] = _mm256_setzero_ps();
    const int bs = t == TM_DTYPE_Q4_K ? 144 : 210;
    for (int64_t i = 0; i < n / TM_QKK; i++, b += bs) {
        __m512i u[4], sc[4];
        __m256i sm; /* Q4_K: mins, each twice (pairs of block sums); Q6_K: scales */
        float   d, dm = 0.0f;
        if (t == TM_DTYPE_Q4_K) {
            const __m128i v = x5_k4_scales(b + 4);
            const __m512i s16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(v));
            const __m512i m16 = _mm512_castsi128_si512(_mm_cvtepu8_epi16(_mm_srli_si128(v, 8)));
            for (int g = 0; g < 4; g++) {
                const __m512i z =
                    _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + 16 + 32 * g)));
                u[g] = _mm512_and_si512(_mm512_mask_srli_epi16(z, up, z, 4), m4);
                sc[g] = x5_spread(s16, 16, 2 * g);
            }
            sm = _mm512_castsi512_si256(x5_spread(m16, 2, 0));
            d = x5_f16(b);
            dm = x5_f16(b + 2);
        } else {
            const __m256i s16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(b + 192)));
            for (int h = 0; h < 2; h++) {
                const __m512i l = _mm512_loadu_si512(b + 64 * h);
                const __m512i q =
                    _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + 128 + 32 * h)));
                const __m512i q2 = _mm512_srli_epi16(q, 4);
                const __m512i ha = _mm512_and_si512(
                    _mm512_slli_epi16(_mm512_mask_srli_epi16(q, up, q, 2), 4), m30);
                const __m512i hb = _mm512_and_si512(
                    _mm512_slli_epi16(_mm512_mask_srli_epi16(q2, up, q2, 2), 4), m30);
                u[2 * h] = _mm512_or_si512(_mm512_and_si512(l, m4), ha);
                u[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4), hb);
                sc[2 * h] = x5_spread(_mm512_castsi256_si512(s16), 8, 8 * h);
                sc[2 * h + 1] = x5_spread(_mm512_castsi256_si512(s16), 8, 8 * h + 4);
            }
            sm = s16;
            d = x5_f16(b + 208);
        }
        for (int c = 0; c < nc; c++) {
            const tm_q8_k *y = (const tm_q8_k *)(x + (size_t)c * xs) + i;
            __m512i        a = _mm512_setzero_si512();
            for (int g = 0; g < 4; g++)
                a = _mm512_dpwssd_epi32(
                    a, _mm512_maddubs_epi16(u[g], _mm512_loadu_si512(y->q + 64 * g)), sc[g]);
            const __m256i bsum = _mm256_loadu_si256((const __m256i *)y->bsums);
            const __m256i mi = _mm256_dpwssd_epi32(_mm256_setzero_si256(), sm, bsum);
            __m256i       is =
                _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
            if (t == TM_DTYPE_Q6_K) { /* codes carry +32: subtract 32 * scale * block sum */
                is = _mm256_sub_epi32(is, _mm256_slli_epi32(mi, 5));
                acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * y->d), _mm256_cvtepi32_ps(is), acc[c]);
            } else {
                acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(d * y->d), _mm256_cvtepi32_ps(is), acc[c]);
                acc[c] =
                    _mm256_fnmadd_ps(_mm256_set1_ps(dm * y->d), _mm256_cvtepi32_ps(mi), acc[c]);
            }
        }
    }
    for (int c = 0; c < nc; c++) {
        __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[c]), _mm256_extractf128_ps(acc[c], 1));
        h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        h = _mm_add_ss(h, _mm_movehdup_ps(h));
        s[(size_t)c * ss] = _mm_cvtss_f32(h);
    }
}

#define X5_KR4(name, T)                                                                            \
    AVX512 static void name(int64_t n, float *s, size_t ss, const void *w, size_t ws,              \
                            const void *x, size_t xs, int nc) {                                    \
        for (int r = 0; r < 4; r++) {                                                              \
            const uint8_t *wr = (const uint8_t *)w + (size_t)r * ws;                               \
            int            c = 0;                                                                  \
            for (; c + 8 <= nc; c += 8)                                                            \
                x5_k_row(T, 8, n, s + (size_t)c * ss + r, ss, wr, (const char *)x + c * xs, xs);   \
            for (; c + 4 <= nc; c += 4)                                                            \
                x5_k_row(T, 4, n, s + (size_t)c * ss + r, ss, wr, (const char *)x + c * xs, xs);   \
            for (; c + 2 <= nc; c += 2)                                                            \
                x5_k_row(T, 2, n, s + (size_t)c * ss + r, ss, wr, (const char *)x + c * xs, xs);   \
            for (; c < nc; c++)                                                                    \
                x5_k_row(T, 1, n, s + (size_t)c * ss + r, ss, wr, (const char *)x + c * xs, xs);   \
        }                                                                                          \
    }
X5_KR4(x5_r4_q4_k, TM_DTYPE_Q4_K)
X5_KR4(x5_r4_q6_k, TM_DTYPE_Q6_K)

/* ---- float weights (F16 / F32), four rows x columns ----------------------------------
 * A register tile of 4 rows x up to 4 f32 activation columns: per 16 elements, 4 weight
 * loads (F16 converted with vcvtph2ps), one load per column and 16 FMAs, so the FMA
 * units rather than the loads set the pace (the one-row float dots do one FMA per
 * activation load). Each (row, column) has its own 16-lane accumulator, reduced at the
 * end, so its bits do not depend on how many columns a call takes. The tail of a row
 * (n not a multiple of 16) is a masked, zero-filled load. The next row group is
 * prefetched as in the quantized four-row dots. */
__attribute__((always_inline)) AVX512 static inline void x5_f_r4_body(bool f16, int nc, int64_t n,
                                                                      float *s, size_t ss,
                                                                      const uint8_t *w, size_t ws,
                                                                      const char *x, size_t xs) {
    __m512       acc[4][4];
    const size_t es = f16 ? 2 : 4; /* bytes per weight */
    for (int r = 0; r < 4; r++)
        for (int c = 0; c < nc; c++)
            acc[r][c] = _mm512_setzero_ps();
    const char *pf = (const char *)w + 4 * ws;
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512          wv[4];
        for (int r = 0; r < 4; r++) {
            const uint8_t *wr = w + (size_t)r * ws + (size_t)i * es;
            wv[r] = f16 ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, wr))
                        : _mm512_maskz_loadu_ps(m, wr);
            if ((i * (int64_t)es) % 64 == 0)
                _mm_prefetch(pf + (size_t)r * ws + (size_t)i * es, _MM_HINT_T0);
        }
        for (int c = 0; c < nc; c++) {
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + (size_t)c * xs + (size_t)i * 4);
            for (int r = 0; r < 4; r++)
                acc[r][c] = _mm512_fmadd_ps(wv[r], xv, acc[r][c]);
        }
    }
    for (int c = 0; c < nc; c++)
        for (int r = 0; r < 4; r++)
            s[(size_t)c * ss + r] = _mm512_reduce_add_ps(acc[r][c]);
}

/* One row x one column with the tile's accumulation (one 16-lane FMA chain, reduced at
 * the end): the same bits as the tile, on one contiguous weight stream (decode: two or
 * four concurrent row streams per thread measured slower here, docs/perf.md). */
__attribute__((always_inline)) AVX512 static inline float
x5_f_row1(bool f16, int64_t n, const uint8_t *w, const float *x) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512    wv = f16 ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, w + 2 * i))
                                 : _mm512_maskz_loadu_ps(m, w + 4 * i);
        acc = _mm512_fmadd_ps(wv, _mm512_maskz_loadu_ps(m, x + i), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

#define X5_FR4(name, F16)                                                                          \
    AVX512 static void name(int64_t n, float *s, size_t ss, const void *w, size_t ws,              \
                            const void *x, size_t xs, int nc) {                                    \
        for (; nc >= 4; nc -= 4, s += 4 * ss, x = (const char *)x + 4 * xs)                        \
            x5_f_r4_body(F16, 4, n, s, ss, w, ws, x, xs);                                          \
        for (int r = 0; r < 4; r++) /* the last 0..3 columns: row by row */                        \
            for (int c = 0; c < nc; c++)                                                           \
                s[(size_t)c * ss + r] =                                                            \
                    x5_f_row1(F16, n, (const uint8_t *)w + (size_t)r * ws,                         \
                              (const float *)((const char *)x + (size_t)c * xs));                  \
    }
X5_FR4(x5_r4_f16, true)
X5_FR4(x5_r4_f32, false)

tm_cpu_vec_dot_r4 tm__cpu_dot_r4_avx512(tm_dtype t) {
    switch (t) {
    case TM_DTYPE_Q4_0: return x5_r4_q4_0;
    case TM_DTYPE_Q5_0: return x5_r4_q5_0;
    case TM_DTYPE_Q8_0: return x5_r4_q8_0;
    case TM_DTYPE_Q4_K: return x5_r4_q4_k;
    case TM_DTYPE_Q6_K: return x5_r4_q6_k;
    case TM_DTYPE_F16: return x5_r4_f16;
    case TM_DTYPE_F32: return x5_r4_f32;
    default: return NULL;
    }
}

tm_cpu_vec_dot tm__cpu_dot_avx512(tm_dtype t) {
    switch (t) {
    case TM_DTYPE_Q4_0: return x5_dot_q4_0;
    case TM_DTYPE_Q8_0: return x5_dot_q8_0;
    default: return NULL;
    }
}

#else /* not x86-64 */

tm_cpu_vec_dot_t4 tm__cpu_dot_t4_avx512(tm_dtype t) {
    (void)t;
    return NULL;
}

tm_cpu_vec_dot_r4 tm__cpu_dot_r4_avx512(tm_dtype t) {
    (void)t;
    return NULL;
}

tm_cpu_vec_dot tm__cpu_dot_avx512(tm_dtype t) {
    (void)t;
    return NULL;
}

#endif
