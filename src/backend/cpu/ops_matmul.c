/*
 * ops_matmul.c - matrix product W[K, N] x X[K, T] -> Y[N, T] for weights of any
 * dtype with a reference dequantizer.
 *
 * DESIGN
 * - Dot path (default; ARCHITECTURE decision 3): every column of X is quantized
 *   once to the 8-bit activation blocks the weight dtype pairs with (tm_q8_32 /
 *   tm_q8_k, simd_dot.h), or kept f32 for F32 / F16 / BF16 weights, and each
 *   output is one call of the dtype's dot (plain C, AVX2, AVX-512, chosen at
 *   run time by tm__cpu_isa(); TM_CPU_REF=1 forces plain C). Batches of 4+
 *   columns use four-column dots (one weight unpack per 4 columns) with the
 *   same per-column bits (tm__cpu_mm_kernels). Where the ISA has a four-row dot
 *   (AVX-512 VNNI: Q4_0, Q5_0, Q8_0, Q4_K, Q6_K), 4-aligned groups of rows take it for every
 *   column count instead (weights unpacked once per block for up to 4 columns,
 *   one activation load per 4 rows), and the other rows the best one-column dot,
 *   so an output's bits never depend on the batch. Error: about 1e-2 relative from
 *   the 8-bit activations for quantized weights; float weights stay within
 *   float rounding.
 * - Tiling for T > 1 (prefill): the N weight rows are cut into chunks of
 *   MM_TILE_N rows that threads claim dynamically (tm__cpu_chunk_claim: a
 *   thread the OS deschedules does not stall the node); a chunk walks the
 *   columns in tiles of MM_TILE_T, so its weights are read from memory once and
 *   then reused from cache for every column of the batch.
 * - Reference path (tm__cpu_set_use_ref(true), tests): each weight row is
 *   dequantized to f32 in thread scratch and dotted with 8 partial sums.
 * - Every thread quantizes all columns into its own scratch, so no barrier is
 *   needed inside the node; it costs K * T element operations per thread,
 *   small next to the K * N * T of the product.
 * - Each output element is computed by exactly one thread in a fixed order, so
 *   results do not depend on the thread count.
 */
#include <stdatomic.h>
#include <string.h>

#include "backend/cpu/cpu_int.h"
#include "backend/cpu/simd_dot.h"

enum {
    MM_TILE_N = 16, /* weight rows per tile: 16 rows of 2048 Q4_0 = 18 KiB, fits L1 */
    MM_TILE_T = 32, /* activation columns per tile: 32 x 2.5 KiB of Q8 fits L2 */
};

static atomic_bool mm_use_ref = false;

void tm__cpu_set_use_ref(bool on) { atomic_store_explicit(&mm_use_ref, on, memory_order_relaxed); }

/* The activation kind mul_mat uses for dst's weights, or NONE for the dequantize path
 * (also taken for exact nodes, ip[0] = 1, whose activations must stay f32). */
static tm_cpu_vec_kind mm_vec_kind(const tm_tensor *dst) {
    const tm_tensor *w = dst->src[0];
    if (atomic_load_explicit(&mm_use_ref, memory_order_relaxed) || dst->ip[0] == 1)
        return TM_CPU_VEC_NONE;
    tm_cpu_vec_kind k = tm__cpu_vec_kind(w->dtype);
    if ((k == TM_CPU_VEC_Q8_32 && w->ne[0] % TM_QK32 != 0) ||
        (k == TM_CPU_VEC_Q8_K && w->ne[0] % TM_QKK != 0))
        return TM_CPU_VEC_NONE;
    return k;
}

size_t tm__cpu_mul_mat_scratch(const tm_tensor *dst) {
    const tm_tensor *w = dst->src[0];
    const int64_t    K = w->ne[0], T = tm_tensor_nrows(dst->src[1]);
    size_t           s = (size_t)K * sizeof(float); /* one dequantized row */
    tm_cpu_vec_kind  k = tm__cpu_vec_kind(w->dtype);
    /* room for the quantized columns whichever path runs (use_ref may change) */
    if ((k == TM_CPU_VEC_Q8_32 && K % TM_QK32 == 0) || (k == TM_CPU_VEC_Q8_K && K % TM_QKK == 0))
        s += tm__cpu_vec_row_bytes(k, K) * (size_t)T;
    /* and for their four-column interleaved copy (tile dots) */
    if (k == TM_CPU_VEC_Q8_32 && K % TM_QK32 == 0)
        s += (size_t)(T / 4) * (size_t)(K / TM_QK32) * sizeof(tm_q8_32x4);
    return s;
}

typedef struct mm_rows_args {
    tm_cpu_vec_dot_t4 t4;    /* optional, with r4: 4 rows x groups of 4 interleaved columns */
    const char       *xi;    /* the interleaved groups (tm_q8_32x4 rows) */
    size_t            xirow; /* bytes per group */
    tm_cpu_vec_dot_r4 r4;    /* optional: 4 rows x many columns (then dot4 is unused) */
    tm_cpu_vec_dot    dot;
    tm_cpu_vec_dot4   dot4; /* optional: 4 columns per weight row */
    const char       *w;    /* weight rows */
    size_t            wrow; /* bytes per weight row */
    const char       *x;    /* activation columns (quantized or f32) */
    size_t            xrow; /* bytes per activation column */
    char             *y;
    size_t            yrow; /* bytes per output column */
    int64_t           K, T;
} mm_rows_args;

/* Outputs of weight rows [n0, n1) for every column, in tiles (see DESIGN). */
static void mm_rows(const mm_rows_args *a, int64_t n0, int64_t n1) {
    for (int64_t m0 = n0; m0 < n1; m0 += MM_TILE_N) {
        const int64_t m1 = m0 + MM_TILE_N < n1 ? m0 + MM_TILE_N : n1;
        for (int64_t t0 = 0; t0 < a->T; t0 += MM_TILE_T) {
            const int64_t t1 = t0 + MM_TILE_T < a->T ? t0 + MM_TILE_T : a->T;
            int64_t       t = t0;
            if (a->r4 != NULL) {
                /* groups of 4 rows (4-aligned: chunks are multiples of MM_TILE_N): whole
                 * groups of 4 columns through the tile dot where there is one (t0 is a
                 * multiple of 4), the other columns through the four-row dot; a row
                 * outside a group uses the one-column dot */
                const int64_t tg = a->t4 != NULL ? t0 + (t1 - t0) / 4 * 4 : t0;
                int64_t       n = m0;
                for (; n + 4 <= m1; n += 4) {
                    const char *wn = a->w + (size_t)n * a->wrow;
                    if (tg > t0)
                        a->t4(a->K, (float *)(a->y + (size_t)t0 * a->yrow) + n,
                              a->yrow / sizeof(float), wn, a->wrow,
                              a->xi + (size_t)(t0 / 4) * a->xirow, a->xirow, (int)((tg - t0) / 4));
                    if (tg < t1)
                        a->r4(a->K, (float *)(a->y + (size_t)tg * a->yrow) + n,
                              a->yrow / sizeof(float), wn, a->wrow, a->x + (size_t)tg * a->xrow,
                              a->xrow, (int)(t1 - tg));
                }
                for (; n < m1; n++)
                    for (t = t0; t < t1; t++)
                        a->dot(a->K, (float *)(a->y + (size_t)t * a->yrow) + n,
                               a->w + (size_t)n * a->wrow, a->x + (size_t)t * a->xrow);
                continue;
            }
            if (a->dot4 != NULL)
                for (; t + 4 <= t1; t += 4) {
                    const void *xt = a->x + (size_t)t * a->xrow;
                    for (int64_t n = m0; n < m1; n++) {
                        float s4[4];
                        a->dot4(a->K, s4, a->w + (size_t)n * a->wrow, xt, a->xrow);
                        for (int c = 0; c < 4; c++)
                            ((float *)(a->y + (size_t)(t + c) * a->yrow))[n] = s4[c];
                    }
                }
            for (; t < t1; t++) {
                const void *xt = a->x + (size_t)t * a->xrow;
                float      *yt = (float *)(a->y + (size_t)t * a->yrow);
                for (int64_t n = m0; n < m1; n++)
                    a->dot(a->K, &yt[n], a->w + (size_t)n * a->wrow, xt);
            }
        }
    }
}

static void mm_mul_mat_dot(const tm_tensor *dst, tm_cpu_vec_kind kind, int ith, int nth,
                           void *scratch) {
    const tm_tensor *w = dst->src[0], *x = dst->src[1];
    const int64_t    K = w->ne[0], N = w->ne[1], T = tm_tensor_nrows(x);
    tm_cpu_vec_dot   dot;
    tm_cpu_vec_dot4  dot4;
    tm__cpu_mm_kernels(w->dtype, tm__cpu_isa(), T, &dot, &dot4);
    const char *xq = x->data;
    size_t      xrow = x->nb[1];
    TM_ASSERT(dot != NULL && x->dtype == TM_DTYPE_F32); /* graph builder invariant */
    if (kind != TM_CPU_VEC_F32) {
        xrow = tm__cpu_vec_row_bytes(kind, K);
        for (int64_t t = 0; t < T; t++) {
            const float *xt = (const float *)((const char *)x->data + (size_t)t * x->nb[1]);
            void        *out = (char *)scratch + (size_t)t * xrow;
            if (kind == TM_CPU_VEC_Q8_32)
                tm__cpu_quantize_q8_32(xt, out, K);
            else
                tm__cpu_quantize_q8_k(xt, out, K);
        }
        xq = scratch;
    }
    const tm_cpu_vec_dot_t4 t4 =
        kind == TM_CPU_VEC_Q8_32 && T >= 4 ? tm__cpu_dot_t4_get(w->dtype, tm__cpu_isa()) : NULL;
    const size_t xirow = (size_t)(K / TM_QK32) * sizeof(tm_q8_32x4);
    char        *xi = (char *)scratch + (size_t)T * xrow;
    if (t4 != NULL)
        for (int64_t g = 0; g < T / 4; g++)
            tm__cpu_q8_32_interleave4(xq + (size_t)(4 * g) * xrow, xrow, K / TM_QK32,
                                      (tm_q8_32x4 *)(xi + (size_t)g * xirow));
    const tm_cpu_vec_dot_r4 r4 = tm__cpu_dot_r4_get(w->dtype, tm__cpu_isa());
    if (r4 != NULL) { /* rows outside a 4-row group: the same dot for every batch size */
        dot = tm__cpu_dot_get(w->dtype, tm__cpu_isa());
        dot4 = NULL;
    }
    const mm_rows_args a = {t4,       xi, xirow, r4,        dot,        dot4, w->data,
                            w->nb[1], xq, xrow,  dst->data, dst->nb[1], K,    T};
    int64_t            c = tm__cpu_chunk_claim();
    if (c < 0) { /* no pool (single-node call): a fixed split */
        int64_t r0, r1;
        tm__cpu_split(N, ith, nth, &r0, &r1);
        mm_rows(&a, r0, r1);
        return;
    }
    /* chunks handed out dynamically (cpu_backend.c): MM_TILE_N rows for a batch; for
     * decode (few columns) about four chunks per thread, so each thread streams long
     * runs of contiguous weight rows and claims less often (docs/perf.md, log row 10) */
    int64_t cn = MM_TILE_N;
    if (T < 4) {
        const int64_t want = (N + 4 * nth - 1) / (4 * nth);
        cn = (want + MM_TILE_N - 1) / MM_TILE_N * MM_TILE_N;
    }
    for (; c * cn < N; c = tm__cpu_chunk_claim())
        mm_rows(&a, c * cn, (c + 1) * cn < N ? (c + 1) * cn : N);
}

static float mm_dot_ref(const float *a, const float *b, int64_t n) {
    float   s[8] = {0};
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += a[i + j] * b[i + j];
    float r = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; i < n; i++)
        r += a[i] * b[i];
    return r;
}

void tm__cpu_mul_mat(const tm_tensor *dst, int ith, int nth, void *scratch) {
    const tm_tensor      *w = dst->src[0], *x = dst->src[1];
    const tm_cpu_vec_kind kind = mm_vec_kind(dst);
    if (kind != TM_CPU_VEC_NONE) {
        mm_mul_mat_dot(dst, kind, ith, nth, scratch);
        return;
    }
    const int64_t K = w->ne[0], N = w->ne[1], T = tm_tensor_nrows(x);
    float        *row = scratch;
    int64_t       r0, r1;
    tm__cpu_split(N, ith, nth, &r0, &r1);
    for (int64_t n = r0; n < r1; n++) {
        const void  *wr = (const char *)w->data + (size_t)n * w->nb[1];
        const float *a;
        if (w->dtype == TM_DTYPE_F32) {
            a = wr;
        } else {
            tm_status st = tm_dequantize_row(w->dtype, wr, row, K);
            TM_ASSERT(st == TM_OK); /* dtype checked at model load */
            a = row;
        }
        for (int64_t t = 0; t < T; t++) {
            const float *b = (const float *)((const char *)x->data + (size_t)t * x->nb[1]);
            float       *y = (float *)((char *)dst->data + (size_t)t * dst->nb[1]);
            y[n] = mm_dot_ref(a, b, K);
        }
    }
}
