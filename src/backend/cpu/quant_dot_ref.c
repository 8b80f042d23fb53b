/*
 * quant_dot_ref.c - plain C reference dot products of weight rows with 8-bit
 * activation blocks (and f32 dots for float weights), the activation
 * quantizers, and the run-time choice of instruction set.
 *
 * DESIGN
 * - Each block's products are summed in int32 (K formats: the sub-block sums are
 *   multiplied by their integer scales and summed over the super-block in
 *   int32), then scaled once in float: w_d * x_d * isum [- w_dmin * x_d * isum_min]
 *   [+ w_m * x_s]. The SIMD files compute the same int32 values and the same
 *   per-block float expression; only the float accumulation order across blocks
 *   differs.
 * - Layouts are those of src/core/quant.c and quant_k.c (docs/quant.md).
 * - Error against the f32 dequantized dot comes only from rounding activations
 *   to 8 bits: about 0.5 / 127 of each block's largest |x|, relative.
 *
 * Threads: pure functions; the ISA override is a relaxed atomic.
 */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/simd_dot.h"
#include "tm/tm_bytes.h"
#include "tm/tm_devices.h"

/* No contraction of a * b + c into an FMA: the scalar block expressions must
 * round the same way in every variant (GCC does not contract in ISO C mode;
 * clang does by default). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

static inline float ref_f16(const uint8_t *p) { return tm_f16_to_f32(tm_load_u16_le(p)); }

/* ---- activation quantizers ----------------------------------------------------- */

void tm__cpu_quantize_q8_32_ref(const float *x, tm_q8_32 *out, int64_t n) {
    for (int64_t b = 0; b < n / TM_QK32; b++) {
        const float *xb = x + b * TM_QK32;
        float        amax = 0.0f;
        for (int i = 0; i < TM_QK32; i++)
            amax = fmaxf(amax, fabsf(xb[i]));
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        int         sum = 0;
        for (int i = 0; i < TM_QK32; i++) {
            out[b].q[i] = (int8_t)lrintf(xb[i] * id);
            sum += out[b].q[i];
        }
        out[b].d = d;
        out[b].s = d * (float)sum;
    }
}

void tm__cpu_quantize_q8_k_ref(const float *x, tm_q8_k *out, int64_t n) {
    for (int64_t b = 0; b < n / TM_QKK; b++) {
        const float *xb = x + b * TM_QKK;
        float        amax = 0.0f;
        for (int i = 0; i < TM_QKK; i++)
            amax = fmaxf(amax, fabsf(xb[i]));
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        out[b].d = d;
        for (int g = 0; g < TM_QKK / 16; g++) {
            int sum = 0;
            for (int i = 16 * g; i < 16 * g + 16; i++) {
                out[b].q[i] = (int8_t)lrintf(xb[i] * id);
                sum += out[b].q[i];
            }
            out[b].bsums[g] = (int16_t)sum;
        }
    }
}

void tm__cpu_quantize_q8_32(const float *x, tm_q8_32 *out, int64_t n) {
    if (tm__cpu_isa() >= TM_CPU_ISA_NEON)
        tm__cpu_quantize_q8_32_neon(x, out, n);
    else if (tm__cpu_isa() >= TM_CPU_ISA_AVX2)
        tm__cpu_quantize_q8_32_avx2(x, out, n);
    else
        tm__cpu_quantize_q8_32_ref(x, out, n);
}

void tm__cpu_quantize_q8_k(const float *x, tm_q8_k *out, int64_t n) {
    if (tm__cpu_isa() >= TM_CPU_ISA_NEON)
        tm__cpu_quantize_q8_k_neon(x, out, n);
    else if (tm__cpu_isa() >= TM_CPU_ISA_AVX2)
        tm__cpu_quantize_q8_k_avx2(x, out, n);
    else
        tm__cpu_quantize_q8_k_ref(x, out, n);
}

/* ---- float weights ------------------------------------------------------------- */

/* Eight partial sums, as the dequantize reference path (ops_matmul.c). */
static float ref_sum8(const float s[8]) {
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

static void ref_dot_f32(int64_t n, float *s, const void *w, const void *x) {
    const float *a = w, *b = x;
    float        acc[8] = {0};
    int64_t      i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += a[i + j] * b[i + j];
    float r = ref_sum8(acc);
    for (; i < n; i++)
        r += a[i] * b[i];
    *s = r;
}

static void ref_dot_f16(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *a = w;
    const float   *b = x;
    float          acc[8] = {0};
    int64_t        i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += ref_f16(a + 2 * (i + j)) * b[i + j];
    float r = ref_sum8(acc);
    for (; i < n; i++)
        r += ref_f16(a + 2 * i) * b[i];
    *s = r;
}

static void ref_dot_bf16(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *a = w;
    const float   *b = x;
    float          acc[8] = {0};
    int64_t        i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            acc[j] += tm_bf16_to_f32(tm_load_u16_le(a + 2 * (i + j))) * b[i + j];
    float r = ref_sum8(acc);
    for (; i < n; i++)
        r += tm_bf16_to_f32(tm_load_u16_le(a + 2 * i)) * b[i];
    *s = r;
}

/* ---- 32-element formats ---------------------------------------------------------
 * Byte j of the nibbles holds element j (low) and element j + 16 (high); the
 * Q5 fifth bits are a u32, bit j for element j. */

static inline int32_t ref_idot32(const int8_t *a, const int8_t *b) {
    int32_t s = 0;
    for (int i = 0; i < TM_QK32; i++)
        s += (int32_t)a[i] * (int32_t)b[i];
    return s;
}

static inline void ref_nibbles(const uint8_t *qs, int8_t *q, int off) {
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)((qs[j] & 0x0F) - off);
        q[j + 16] = (int8_t)((qs[j] >> 4) - off);
    }
}

static inline void ref_fifth_bits(const uint8_t *qh4, int8_t *q, int off) {
    const uint32_t qh = tm_load_u32_le(qh4);
    for (int j = 0; j < TM_QK32; j++)
        q[j] = (int8_t)(q[j] + (int)((qh >> j) & 1u) * 16 - off);
}

static void ref_dot_q4_0(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t  *b = w;
    const tm_q8_32 *y = x;
    float           sum = 0.0f;
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 18) {
        int8_t q[TM_QK32];
        ref_nibbles(b + 2, q, 8);
        sum += ref_f16(b) * y[i].d * (float)ref_idot32(q, y[i].q);
    }
    *s = sum;
}

static void ref_dot_q4_1(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t  *b = w;
    const tm_q8_32 *y = x;
    float           sum = 0.0f;
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 20) {
        int8_t q[TM_QK32];
        ref_nibbles(b + 4, q, 0);
        sum += ref_f16(b) * y[i].d * (float)ref_idot32(q, y[i].q) + ref_f16(b + 2) * y[i].s;
    }
    *s = sum;
}

static void ref_dot_q5_0(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t  *b = w;
    const tm_q8_32 *y = x;
    float           sum = 0.0f;
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 22) {
        int8_t q[TM_QK32];
        ref_nibbles(b + 6, q, 0);
        ref_fifth_bits(b + 2, q, 16);
        sum += ref_f16(b) * y[i].d * (float)ref_idot32(q, y[i].q);
    }
    *s = sum;
}

static void ref_dot_q5_1(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t  *b = w;
    const tm_q8_32 *y = x;
    float           sum = 0.0f;
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 24) {
        int8_t q[TM_QK32];
        ref_nibbles(b + 8, q, 0);
        ref_fifth_bits(b + 4, q, 0);
        sum += ref_f16(b) * y[i].d * (float)ref_idot32(q, y[i].q) + ref_f16(b + 2) * y[i].s;
    }
    *s = sum;
}

static void ref_dot_q8_0(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t  *b = w;
    const tm_q8_32 *y = x;
    float           sum = 0.0f;
    for (int64_t i = 0; i < n / TM_QK32; i++, b += 34)
        sum += ref_f16(b) * y[i].d * (float)ref_idot32((const int8_t *)(b + 2), y[i].q);
    *s = sum;
}

/* ---- K formats -------------------------------------------------------------------
 * Per super-block: isum = sum over sub-blocks of scale * (codes . q) in int32,
 * imin = sum of min * (sum of q) in int32 from the block sums; the result is
 * d * x_d * isum - dmin * x_d * imin. Codes are the unsigned stored values; a
 * constant offset (Q3_K's 4, Q6_K's 32) goes into imin. */

static inline int32_t ref_idot_u(const int8_t *q8, const uint8_t *u, int n) {
    int32_t s = 0;
    for (int i = 0; i < n; i++)
        s += (int32_t)u[i] * (int32_t)q8[i];
    return s;
}

/* Q2_K / Q3_K 2-bit code of element e: byte (e/128)*32 + e%32, bits 2*((e%128)/32). */
static inline uint8_t ref_q2(const uint8_t *qs, int e) {
    return (uint8_t)((qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3);
}

static void ref_dot_q2_k(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *b = w;
    const tm_q8_k *y = x;
    float          sum = 0.0f;
    for (int64_t i = 0; i < n / TM_QKK; i++, b += 84) {
        uint8_t u[TM_QKK];
        for (int e = 0; e < TM_QKK; e++)
            u[e] = ref_q2(b + 16, e);
        int32_t isum = 0, imin = 0;
        for (int g = 0; g < 16; g++) {
            isum += (b[g] & 0x0F) * ref_idot_u(y[i].q + 16 * g, u + 16 * g, 16);
            imin += (b[g] >> 4) * y[i].bsums[g];
        }
        sum += ref_f16(b + 80) * y[i].d * (float)isum - ref_f16(b + 82) * y[i].d * (float)imin;
    }
    *s = sum;
}

/* Q3_K's 16 six-bit scales (stored +32): low nibbles in bytes 0..7, high pairs in 8..11. */
static inline int ref_q3_scale(const uint8_t *sc, int g) {
    int lo = (sc[g % 8] >> (4 * (g / 8))) & 0x0F;
    int hi = (sc[8 + g % 4] >> (2 * (g / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

static void ref_dot_q3_k(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *b = w;
    const tm_q8_k *y = x;
    float          sum = 0.0f;
    for (int64_t i = 0; i < n / TM_QKK; i++, b += 110) {
        uint8_t u[TM_QKK]; /* code + 4 = 2-bit part | (high bit << 2), in 0..7 */
        for (int e = 0; e < TM_QKK; e++)
            u[e] = (uint8_t)(ref_q2(b + 32, e) | (((b[e % 32] >> (e / 32)) & 1) << 2));
        int32_t isum = 0, imin = 0;
        for (int g = 0; g < 16; g++) {
            const int sc = ref_q3_scale(b + 96, g);
            isum += sc * ref_idot_u(y[i].q + 16 * g, u + 16 * g, 16);
            imin += 4 * sc * y[i].bsums[g];
        }
        sum += ref_f16(b + 108) * y[i].d * (float)(isum - imin);
    }
    *s = sum;
}

/* Q4_K / Q5_K: 8 six-bit (scale, min) pairs packed in 12 bytes (ggml get_scale_min_k4). */
static inline void ref_k4_scale_min(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void ref_dot_q45_k(int64_t n, float *s, const void *w, const void *x, bool five) {
    const uint8_t *b = w;
    const tm_q8_k *y = x;
    const int      bytes = five ? 176 : 144;
    const uint8_t *qs_off = b + (five ? 48 : 16);
    float          sum = 0.0f;
    for (int64_t i = 0; i < n / TM_QKK; i++, b += bytes, qs_off += bytes) {
        uint8_t u[TM_QKK]; /* element 64j + 32h + l: nibble h of byte 32j + l */
        for (int e = 0; e < TM_QKK; e++) {
            u[e] = (uint8_t)((qs_off[(e / 64) * 32 + e % 32] >> (4 * ((e % 64) / 32))) & 0x0F);
            if (five)
                u[e] = (uint8_t)(u[e] | (((b[16 + e % 32] >> (e / 32)) & 1) << 4));
        }
        int32_t isum = 0, imin = 0;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            ref_k4_scale_min(b + 4, j, &sc, &m);
            isum += sc * ref_idot_u(y[i].q + 32 * j, u + 32 * j, 32);
            imin += m * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
        }
        sum += ref_f16(b) * y[i].d * (float)isum - ref_f16(b + 2) * y[i].d * (float)imin;
    }
    *s = sum;
}

static void ref_dot_q4_k(int64_t n, float *s, const void *w, const void *x) {
    ref_dot_q45_k(n, s, w, x, false);
}

static void ref_dot_q5_k(int64_t n, float *s, const void *w, const void *x) {
    ref_dot_q45_k(n, s, w, x, true);
}

static void ref_dot_q6_k(int64_t n, float *s, const void *w, const void *x) {
    const uint8_t *b = w;
    const tm_q8_k *y = x;
    float          sum = 0.0f;
    for (int64_t i = 0; i < n / TM_QKK; i++, b += 210) {
        uint8_t u[TM_QKK]; /* code + 32, in 0..63 */
        for (int e = 0; e < TM_QKK; e++) {
            const int j = e / 128, r = e % 128;
            const int lo = (b[j * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
            const int hi = (b[128 + j * 32 + r % 32] >> (2 * (r / 32))) & 3;
            u[e] = (uint8_t)(lo | (hi << 4));
        }
        int32_t isum = 0, imin = 0;
        for (int g = 0; g < 16; g++) {
            const int sc = (int8_t)b[192 + g];
            isum += sc * ref_idot_u(y[i].q + 16 * g, u + 16 * g, 16);
            imin += 32 * sc * y[i].bsums[g];
        }
        sum += ref_f16(b + 208) * y[i].d * (float)(isum - imin);
    }
    *s = sum;
}

/* ---- tables and ISA choice --------------------------------------------------------- */

tm_cpu_vec_kind tm__cpu_vec_kind(tm_dtype t) {
    switch (t) {
    case TM_DTYPE_F32:
    case TM_DTYPE_F16:
    case TM_DTYPE_BF16: return TM_CPU_VEC_F32;
    case TM_DTYPE_Q4_0:
    case TM_DTYPE_Q4_1:
    case TM_DTYPE_Q5_0:
    case TM_DTYPE_Q5_1:
    case TM_DTYPE_Q8_0: return TM_CPU_VEC_Q8_32;
    case TM_DTYPE_Q2_K:
    case TM_DTYPE_Q3_K:
    case TM_DTYPE_Q4_K:
    case TM_DTYPE_Q5_K:
    case TM_DTYPE_Q6_K: return TM_CPU_VEC_Q8_K;
    default: return TM_CPU_VEC_NONE;
    }
}

size_t tm__cpu_vec_row_bytes(tm_cpu_vec_kind k, int64_t n) {
    switch (k) {
    case TM_CPU_VEC_F32: return (size_t)n * sizeof(float);
    case TM_CPU_VEC_Q8_32: return (size_t)(n / TM_QK32) * sizeof(tm_q8_32);
    case TM_CPU_VEC_Q8_K: return (size_t)(n / TM_QKK) * sizeof(tm_q8_k);
    default: return 0;
    }
}

tm_cpu_vec_dot tm__cpu_dot_ref(tm_dtype t) {
    switch (t) {
    case TM_DTYPE_F32: return ref_dot_f32;
    case TM_DTYPE_F16: return ref_dot_f16;
    case TM_DTYPE_BF16: return ref_dot_bf16;
    case TM_DTYPE_Q4_0: return ref_dot_q4_0;
    case TM_DTYPE_Q4_1: return ref_dot_q4_1;
    case TM_DTYPE_Q5_0: return ref_dot_q5_0;
    case TM_DTYPE_Q5_1: return ref_dot_q5_1;
    case TM_DTYPE_Q8_0: return ref_dot_q8_0;
    case TM_DTYPE_Q2_K: return ref_dot_q2_k;
    case TM_DTYPE_Q3_K: return ref_dot_q3_k;
    case TM_DTYPE_Q4_K: return ref_dot_q4_k;
    case TM_DTYPE_Q5_K: return ref_dot_q5_k;
    case TM_DTYPE_Q6_K: return ref_dot_q6_k;
    default: return NULL;
    }
}

tm_cpu_vec_dot tm__cpu_dot_get(tm_dtype t, tm_cpu_isa isa) {
    tm_cpu_vec_dot f = NULL;
    if (isa >= TM_CPU_ISA_NEON_DOTPROD)
        f = tm__cpu_dot_neon_dotprod(t);
    if (f == NULL && isa >= TM_CPU_ISA_NEON)
        f = tm__cpu_dot_neon(t);
    if (f == NULL && isa >= TM_CPU_ISA_AVX512)
        f = tm__cpu_dot_avx512(t);
    if (f == NULL && isa >= TM_CPU_ISA_AVX2)
        f = tm__cpu_dot_avx2(t);
    return f != NULL ? f : tm__cpu_dot_ref(t);
}

tm_cpu_vec_dot_r4 tm__cpu_dot_r4_get(tm_dtype t, tm_cpu_isa isa) {
    return isa >= TM_CPU_ISA_AVX512 ? tm__cpu_dot_r4_avx512(t) : NULL;
}

tm_cpu_vec_dot_t4 tm__cpu_dot_t4_get(tm_dtype t, tm_cpu_isa isa) {
    return isa >= TM_CPU_ISA_AVX512 ? tm__cpu_dot_t4_avx512(t) : NULL;
}

void tm__cpu_q8_32_interleave4(const void *x, size_t x_stride, int64_t nb, tm_q8_32x4 *out) {
    for (int c = 0; c < 4; c++) {
        const tm_q8_32 *y = (const tm_q8_32 *)((const char *)x + (size_t)c * x_stride);
        for (int64_t b = 0; b < nb; b++) {
            out[b].d[c] = y[b].d;
            out[b].s[c] = y[b].s;
            for (int g = 0; g < 8; g++)
                memcpy(&out[b].q[16 * g + 4 * c], &y[b].q[4 * g], 4);
        }
    }
}

tm_cpu_vec_dot4 tm__cpu_dot4_get(tm_dtype t, tm_cpu_isa isa) {
    return isa >= TM_CPU_ISA_AVX2 ? tm__cpu_dot4_avx2(t) : NULL;
}

void tm__cpu_mm_kernels(tm_dtype t, tm_cpu_isa isa, int64_t n_cols, tm_cpu_vec_dot *dot,
                        tm_cpu_vec_dot4 *dot4) {
    *dot4 = n_cols >= 4 ? tm__cpu_dot4_get(t, isa) : NULL;
    /* a column left over from the groups of four uses the dot of the same ISA */
    *dot = *dot4 != NULL ? tm__cpu_dot_avx2(t) : tm__cpu_dot_get(t, isa);
}

tm_cpu_isa tm__cpu_isa_supported(void) {
    const tm_cpu_features *f = tm_cpu_features_get();
    if (f->neon)
        return f->dotprod ? TM_CPU_ISA_NEON_DOTPROD : TM_CPU_ISA_NEON;
    if (f->avx512f && f->avx512bw && f->avx512vl && f->avx512vnni && f->avx2 && f->fma && f->f16c)
        return TM_CPU_ISA_AVX512;
    if (f->avx2 && f->fma && f->f16c)
        return TM_CPU_ISA_AVX2;
    return TM_CPU_ISA_REF;
}

/* -1: not chosen yet (first use reads the CPU and TM_CPU_REF). */
static atomic_int ref_isa = -1;

tm_cpu_isa tm__cpu_isa(void) {
    int v = atomic_load_explicit(&ref_isa, memory_order_relaxed);
    if (v < 0) {
        const char *e = getenv("TM_CPU_REF");
        v = (e != NULL && e[0] != '\0' && strcmp(e, "0") != 0) ? TM_CPU_ISA_REF
                                                               : tm__cpu_isa_supported();
        atomic_store_explicit(&ref_isa, v, memory_order_relaxed);
    }
    return (tm_cpu_isa)v;
}

void tm__cpu_set_isa(tm_cpu_isa isa) {
    tm_cpu_isa top = tm__cpu_isa_supported();
    atomic_store_explicit(&ref_isa, (int)(isa < top ? isa : top), memory_order_relaxed);
}

const char *tm__cpu_isa_name(tm_cpu_isa isa) {
    static const char *const names[TM_CPU_ISA_COUNT] = {"ref", "avx2", "avx512", "neon",
                                                        "neon-dotprod"};
    return (unsigned)isa < TM_CPU_ISA_COUNT ? names[isa] : "?";
}
