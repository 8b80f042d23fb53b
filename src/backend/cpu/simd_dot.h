/*
 * simd_dot.h - private interface of the CPU dot-product kernels used by mul_mat:
 * 8-bit activation blocks, one dot per weight dtype and instruction set, and the
 * run-time choice between them.
 *
 * DESIGN
 * - Activations are quantized once per mul_mat column to the "vec" type the
 *   weight dtype pairs with (ARCHITECTURE decision 3, as ggml's vec_dot_type):
 *   tm_q8_32 for the 32-element formats (Q4_0 .. Q8_0), tm_q8_k (with 16-element
 *   block sums) for the K formats, and plain f32 for F32 / F16 / BF16 weights.
 * - Every dtype has a plain C reference dot (quant_dot_ref.c). The SIMD variants
 *   (quant_dot_avx2.c, ...) compute the same integer sums per block and combine
 *   them with the same float scales; only the order of the float accumulation
 *   across blocks differs, so with integer-valued scales both give the same bits
 *   (tests/unit/test_quant_dot.c).
 * - The instruction set is chosen at run time from tm_cpu_features_get(); the
 *   environment variable TM_CPU_REF=1 (or tm__cpu_set_isa) forces the reference.
 *   SIMD files compile per function with __attribute__((target(...))), so the
 *   library needs no global -march.
 *
 * Threads: pure functions; the ISA choice is a relaxed atomic, set by tests only.
 */
#ifndef TM_SIMD_DOT_H
#define TM_SIMD_DOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_dtype.h"

#define TM_QK32 32 /* elements per block of Q4_0 .. Q8_0 and of tm_q8_32 */
#define TM_QKK 256 /* elements per super-block of the K formats and of tm_q8_k */

/* 32 activations: x ~ d * q, q in [-127, 127]; s = d * sum(q) (for Q4_1 / Q5_1). */
typedef struct tm_q8_32 {
    float  d;
    float  s;
    int8_t q[TM_QK32];
} tm_q8_32;

/* 256 activations: x ~ d * q; bsums[g] = sum of q[16g .. 16g+15] (K-format mins). */
typedef struct tm_q8_k {
    float   d;
    int16_t bsums[TM_QKK / 16];
    int8_t  q[TM_QKK];
} tm_q8_k;

typedef enum tm_cpu_vec_kind {
    TM_CPU_VEC_NONE = 0, /* no dot for this dtype: mul_mat dequantizes (reference path) */
    TM_CPU_VEC_F32,      /* activations stay f32 */
    TM_CPU_VEC_Q8_32,
    TM_CPU_VEC_Q8_K,
} tm_cpu_vec_kind;

typedef enum tm_cpu_isa {
    TM_CPU_ISA_REF = 0,    /* plain C */
    TM_CPU_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    TM_CPU_ISA_AVX512 = 2, /* AVX-512 F/BW/VL + VNNI */
    /* arm64, numbered above the x86 sets: a CPU supports one family only and the
     * other family's getters return NULL there, so "at or below" still holds. */
    TM_CPU_ISA_NEON = 3,         /* ASIMD (every arm64 CPU) */
    TM_CPU_ISA_NEON_DOTPROD = 4, /* ASIMD + dotprod (sdot) */
    TM_CPU_ISA_COUNT
} tm_cpu_isa;

/* *s = dot(weight row w of n elements, activation row x of the dtype's vec kind). */
typedef void (*tm_cpu_vec_dot)(int64_t n, float *s, const void *w, const void *x);

/* s[0..4) = dot(w, column c) for the 4 activation rows at x + c * x_stride: the
 * weight row is unpacked once for all four (prefill). Each s[c] has the same
 * bits as the one-column dot of the same ISA gives. */
typedef void (*tm_cpu_vec_dot4)(int64_t n, float *s, const void *w, const void *x, size_t x_stride);

/* Four weight rows (at w, w + w_stride, ...) times nc activation columns (at x,
 * x + x_stride, ...): s[c * s_stride + r] = dot(row r, column c). Each weight block
 * is unpacked once for all the columns; a column's four results have the same bits
 * whatever nc is (batching never changes an answer). */
typedef void (*tm_cpu_vec_dot_r4)(int64_t n, float *s, size_t s_stride, const void *w,
                                  size_t w_stride, const void *x, size_t x_stride, int nc);

/* Four tm_q8_32 columns interleaved for the tile dots: block b of columns c0..c0+3;
 * q[16 g + 4 c + j] = column c's q[4 g + j] (g = 0..7 four-byte groups). */
typedef struct tm_q8_32x4 {
    float  d[4];
    float  s[4];
    int8_t q[4 * TM_QK32];
} tm_q8_32x4;

/* Four weight rows times ng groups of four interleaved columns (group k at
 * x + k * x_stride, each a row of tm_q8_32x4 blocks): s[c * s_stride + r] for the
 * 4 * ng columns c. For batches; within float-order rounding of the four-row dot. */
typedef void (*tm_cpu_vec_dot_t4)(int64_t n, float *s, size_t s_stride, const void *w,
                                  size_t w_stride, const void *x, size_t x_stride, int ng);

/* Interleaves 4 activation rows of nb tm_q8_32 blocks (row c at x + c * x_stride). */
void tm__cpu_q8_32_interleave4(const void *x, size_t x_stride, int64_t nb, tm_q8_32x4 *out);

/* Activation kind a weight dtype pairs with; NONE when no dot exists. */
tm_cpu_vec_kind tm__cpu_vec_kind(tm_dtype t);

/* Bytes of one quantized activation row of n elements (n a multiple of the block). */
size_t tm__cpu_vec_row_bytes(tm_cpu_vec_kind k, int64_t n);

/* Quantizes n floats (a multiple of the block) to tm_q8_32 / tm_q8_k blocks with
 * the ISA tm__cpu_isa() chose; every variant writes the same bytes. */
void tm__cpu_quantize_q8_32(const float *x, tm_q8_32 *out, int64_t n);
void tm__cpu_quantize_q8_k(const float *x, tm_q8_k *out, int64_t n);
void tm__cpu_quantize_q8_32_ref(const float *x, tm_q8_32 *out, int64_t n);
void tm__cpu_quantize_q8_k_ref(const float *x, tm_q8_k *out, int64_t n);
void tm__cpu_quantize_q8_32_avx2(const float *x, tm_q8_32 *out, int64_t n); /* x86 + AVX2 */
void tm__cpu_quantize_q8_k_avx2(const float *x, tm_q8_k *out, int64_t n);
void tm__cpu_quantize_q8_32_neon(const float *x, tm_q8_32 *out, int64_t n); /* arm64 */
void tm__cpu_quantize_q8_k_neon(const float *x, tm_q8_k *out, int64_t n);

/* The dot of one ISA; NULL when that ISA has no variant for t (or was not built). */
tm_cpu_vec_dot tm__cpu_dot_ref(tm_dtype t);
tm_cpu_vec_dot tm__cpu_dot_avx2(tm_dtype t);
tm_cpu_vec_dot tm__cpu_dot_avx512(tm_dtype t);
tm_cpu_vec_dot tm__cpu_dot_neon(tm_dtype t);
tm_cpu_vec_dot tm__cpu_dot_neon_dotprod(tm_dtype t);

/* Four-row dots (AVX-512 VNNI: Q4_0, Q5_0, Q8_0, Q4_K, Q6_K); NULL where there is none. */
tm_cpu_vec_dot_r4 tm__cpu_dot_r4_avx512(tm_dtype t);
tm_cpu_vec_dot_r4 tm__cpu_dot_r4_get(tm_dtype t, tm_cpu_isa isa);
/* Four-row, four-column tile dots (AVX-512 VNNI: Q4_0, Q5_0, Q8_0); NULL otherwise. */
tm_cpu_vec_dot_t4 tm__cpu_dot_t4_avx512(tm_dtype t);
tm_cpu_vec_dot_t4 tm__cpu_dot_t4_get(tm_dtype t, tm_cpu_isa isa);

/* Four-column dots (AVX2 only so far); NULL where there is none. */
tm_cpu_vec_dot4 tm__cpu_dot4_avx2(tm_dtype t);
tm_cpu_vec_dot4 tm__cpu_dot4_get(tm_dtype t, tm_cpu_isa isa);

/* The kernels mul_mat uses for n_cols activation columns: for a batch (>= 4
 * columns) the four-column dot when one exists, with the one-column dot of the
 * same ISA for the remaining columns (same bits per column); otherwise the best
 * one-column dot (e.g. AVX-512 for decode). Results depend on n_cols, never on
 * the thread count. */
void tm__cpu_mm_kernels(tm_dtype t, tm_cpu_isa isa, int64_t n_cols, tm_cpu_vec_dot *dot,
                        tm_cpu_vec_dot4 *dot4);

/* Best dot available at or below isa (falls back to AVX2, then the reference). */
tm_cpu_vec_dot tm__cpu_dot_get(tm_dtype t, tm_cpu_isa isa);

/* The ISA mul_mat uses: the best the CPU supports, or REF under TM_CPU_REF=1,
 * or what tm__cpu_set_isa() last chose (tests, benchmarks). */
tm_cpu_isa  tm__cpu_isa(void);
void        tm__cpu_set_isa(tm_cpu_isa isa); /* clamped to what the CPU supports */
tm_cpu_isa  tm__cpu_isa_supported(void);
const char *tm__cpu_isa_name(tm_cpu_isa isa);

/* ---- work sharing (cpu_backend.c) ----------------------------------------------
 * Inside a graph computed by the pool: the next chunk index of the current node,
 * 0, 1, 2, ... across all threads (each index is handed out once; the counter
 * restarts at the barrier after the node). -1 outside a pool (single-node test
 * calls): the caller falls back to a fixed split. A kernel that uses it must
 * claim until it gets an index past its last chunk. */
int64_t tm__cpu_chunk_claim(void);

#endif /* TM_SIMD_DOT_H */
