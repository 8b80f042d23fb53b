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
 * - 16-bit activations (ip[0] = TM_MM_ACT16, tm_ctx_params.act_type): each column
 *   is quantized to 8-bit blocks, then its rounding error (at most half a step per
 *   element) is quantized again to 8-bit blocks of its own scale; the two are
 *   adjacent activation columns of the same kernels, so a weight block is unpacked
 *   once for both, and output = dot(first) + dot(residual). Error about 1e-4
 *   relative (docs/accuracy.md: top-1 agreement of real models as the float path),
 *   for about 1.3-1.8x the compute of 8-bit.
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
    if (atomic_load_explicit(&mm_use_ref, memory_order_relaxed) || dst->ip[0] == TM_MM_ACT_F32)
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
    /* one f32 row or column, and the residual plane's output tile */
    size_t          s = (size_t)K * sizeof(float) + MM_TILE_N * MM_TILE_T * sizeof(float);
    tm_cpu_vec_kind k = tm__cpu_vec_kind(w->dtype);
    const int64_t   TC = dst->ip[0] == TM_MM_ACT16 ? 2 * T : T; /* activation columns */
    /* room for the quantized columns whichever path runs (use_ref may change) */
    if ((k == TM_CPU_VEC_Q8_32 && K % TM_QK32 == 0) || (k == TM_CPU_VEC_Q8_K && K % TM_QKK == 0))
        s += tm__cpu_vec_row_bytes(k, K) * (size_t)TC;
    /* and for their four-column interleaved copy (tile dots) */
    if (k == TM_CPU_VEC_Q8_32 && K % TM_QK32 == 0)
        s += (size_t)(TC / 4) * (size_t)(K / TM_QK32) * sizeof(tm_q8_32x4);
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
    int64_t           K, T; /* T: activation columns (2 per output column with hi) */
    bool              hi;   /* columns 2t, 2t + 1: output t's 8-bit blocks and residual */
    float            *tmp;  /* with hi: MM_TILE_N x MM_TILE_T outputs, folded into y */
} mm_rows_args;

/* Dots of weight rows [m0, m1) x activation columns [t0, t1) into y, where y points
 * at the output of (m0, t0) and columns are yrow bytes apart. */
static void mm_tile(const mm_rows_args *a, int64_t m0, int64_t m1, int64_t t0, int64_t t1, char *y,
                    size_t yrow) {
    const char *x = a->x + (size_t)t0 * a->xrow;
    int64_t     t = t0;
    if (a->r4 != NULL) {
        /* groups of 4 rows (4-aligned: chunks are multiples of MM_TILE_N): whole
         * groups of 4 columns through the tile dot where there is one (t0 is a
         * multiple of 4), the other columns through the four-row dot; a row
         * outside a group uses the one-column dot */
        const int64_t tg = a->t4 != NULL ? t0 + (t1 - t0) / 4 * 4 : t0;
        const size_t  ys = yrow / sizeof(float);
        int64_t       n = m0;
        for (; n + 4 <= m1; n += 4) {
            const char *wn = a->w + (size_t)n * a->wrow;
            float      *yn = (float *)y + (n - m0);
            if (tg > t0)
                a->t4(a->K, yn, ys, wn, a->wrow, a->xi + (size_t)(t0 / 4) * a->xirow, a->xirow,
                      (int)((tg - t0) / 4));
            if (tg < t1)
                a->r4(a->K, yn + (size_t)(tg - t0) * ys, ys, wn, a->wrow,
                      x + (size_t)(tg - t0) * a->xrow, a->xrow, (int)(t1 - tg));
        }
        for (; n < m1; n++)
            for (t = t0; t < t1; t++)
                a->dot(a->K, (float *)(y + (size_t)(t - t0) * yrow) + (n - m0),
                       a->w + (size_t)n * a->wrow, x + (size_t)(t - t0) * a->xrow);
        return;
    }
    if (a->dot4 != NULL)
        for (; t + 4 <= t1; t += 4) {
            const void *xt = x + (size_t)(t - t0) * a->xrow;
            for (int64_t n = m0; n < m1; n++) {
                float s4[4];
                a->dot4(a->K, s4, a->w + (size_t)n * a->wrow, xt, a->xrow);
                for (int c = 0; c < 4; c++)
                    ((float *)(y + (size_t)(t - t0 + c) * yrow))[n - m0] = s4[c];
            }
        }
    for (; t < t1; t++) {
        const void *xt = x + (size_t)(t - t0) * a->xrow;
        float      *yt = (float *)(y + (size_t)(t - t0) * yrow);
        for (int64_t n = m0; n < m1; n++)
            a->dot(a->K, &yt[n - m0], a->w + (size_t)n * a->wrow, xt);
    }
}

/* Outputs of weight rows [n0, n1) for every column, in tiles (see DESIGN). */
static void mm_rows(const mm_rows_args *a, int64_t n0, int64_t n1) {
    for (int64_t m0 = n0; m0 < n1; m0 += MM_TILE_N) {
        const int64_t m1 = m0 + MM_TILE_N < n1 ? m0 + MM_TILE_N : n1;
        for (int64_t t0 = 0; t0 < a->T; t0 += MM_TILE_T) {
            const int64_t t1 = t0 + MM_TILE_T < a->T ? t0 + MM_TILE_T : a->T;
            if (!a->hi) {
                mm_tile(a, m0, m1, t0, t1, a->y + (size_t)t0 * a->yrow + (size_t)m0 * sizeof(float),
                        a->yrow);
                continue;
            }
            /* both planes of each column in one pass over the weights (the kernels
             * unpack a weight block once for all their columns), then summed */
            mm_tile(a, m0, m1, t0, t1, (char *)a->tmp, MM_TILE_N * sizeof(float));
            for (int64_t t = t0; t < t1; t += 2) {
                float       *yt = (float *)(a->y + (size_t)(t / 2) * a->yrow) + m0;
                const float *r = a->tmp + (size_t)(t - t0) * MM_TILE_N;
                for (int64_t n = 0; n < m1 - m0; n++)
                    yt[n] = r[n] + r[MM_TILE_N + n];
            }
        }
    }
}

/* In place: x -= the dequantized blocks q (x's 8-bit rounding error, at most half a
 * step per element), so quantizing it again carries about 8 more bits. */
static void mm_residual(float *x, const void *q, tm_cpu_vec_kind kind, int64_t K) {
    if (kind == TM_CPU_VEC_Q8_32) {
        const tm_q8_32 *b = q;
        for (int64_t i = 0; i < K; i++)
            x[i] -= b[i / TM_QK32].d * (float)b[i / TM_QK32].q[i % TM_QK32];
    } else {
        const tm_q8_k *b = q;
        for (int64_t i = 0; i < K; i++)
            x[i] -= b[i / TM_QKK].d * (float)b[i / TM_QKK].q[i % TM_QKK];
    }
}

static void mm_quantize(const float *x, void *out, tm_cpu_vec_kind kind, int64_t K) {
    if (kind == TM_CPU_VEC_Q8_32)
        tm__cpu_quantize_q8_32(x, out, K);
    else
        tm__cpu_quantize_q8_k(x, out, K);
}

static void mm_mul_mat_dot(const tm_tensor *dst, tm_cpu_vec_kind kind, int ith, int nth,
                           void *scratch) {
    const tm_tensor *w = dst->src[0], *x = dst->src[1];
    const int64_t    K = w->ne[0], N = w->ne[1], T = tm_tensor_nrows(x);
    const bool       hi = dst->ip[0] == TM_MM_ACT16 && kind != TM_CPU_VEC_F32;
    const int64_t    TC = hi ? 2 * T : T; /* activation columns */
    tm_cpu_vec_dot   dot;
    tm_cpu_vec_dot4  dot4;
    tm__cpu_mm_kernels(w->dtype, tm__cpu_isa(), TC, &dot, &dot4);
    TM_ASSERT(dot != NULL && x->dtype == TM_DTYPE_F32); /* graph builder invariant */
    /* scratch (tm__cpu_mul_mat_scratch): one f32 column, the folding tile, the
     * quantized columns, their interleaved groups */
    float      *col = scratch;
    float      *tmp = col + K;
    char       *xq = (char *)(tmp + MM_TILE_N * MM_TILE_T);
    const char *xa = x->data;
    size_t      xrow = x->nb[1];
    if (kind != TM_CPU_VEC_F32) {
        xrow = tm__cpu_vec_row_bytes(kind, K);
        for (int64_t t = 0; t < T; t++) {
            const float *xt = (const float *)((const char *)x->data + (size_t)t * x->nb[1]);
            char        *q0 = xq + (size_t)(hi ? 2 * t : t) * xrow;
            mm_quantize(xt, q0, kind, K);
            if (hi) {
                memcpy(col, xt, (size_t)K * sizeof(float));
                mm_residual(col, q0, kind, K);
                mm_quantize(col, q0 + xrow, kind, K);
            }
        }
        xa = xq;
    }
    const tm_cpu_vec_dot_t4 t4 =
        kind == TM_CPU_VEC_Q8_32 && TC >= 4 ? tm__cpu_dot_t4_get(w->dtype, tm__cpu_isa()) : NULL;
    const size_t xirow = (size_t)(K / TM_QK32) * sizeof(tm_q8_32x4);
    char        *xi = xq + (size_t)TC * xrow;
    if (t4 != NULL)
        for (int64_t g = 0; g < TC / 4; g++)
            tm__cpu_q8_32_interleave4(xa + (size_t)(4 * g) * xrow, xrow, K / TM_QK32,
                                      (tm_q8_32x4 *)(xi + (size_t)g * xirow));
    const tm_cpu_vec_dot_r4 r4 = tm__cpu_dot_r4_get(w->dtype, tm__cpu_isa());
    if (r4 != NULL) { /* rows outside a 4-row group: the same dot for every batch size */
        dot = tm__cpu_dot_get(w->dtype, tm__cpu_isa());
        dot4 = NULL;
    }
    const mm_rows_args a = {.t4 = t4,
                            .xi = xi,
                            .xirow = xirow,
                            .r4 = r4,
                            .dot = dot,
                            .dot4 = dot4,
                            .w = w->data,
                            .wrow = w->nb[1],
                            .x = xa,
                            .xrow = xrow,
                            .y = dst->data,
                            .yrow = dst->nb[1],
                            .K = K,
                            .T = TC,
                            .hi = hi,
                            .tmp = tmp};
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
