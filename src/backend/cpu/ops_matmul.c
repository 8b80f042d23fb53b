/*
 * ops_matmul.c - matrix product W[K, N] x X[K, T] -> Y[N, T] for weights of any
 * dtype with a reference dequantizer.
 *
 * Reference path: threads split the N output rows; each weight row is dequantized
 * once into thread scratch (K floats) and dotted with every column of X, so a
 * prefill batch amortizes the dequantization. F32 weights are read in place.
 * The dot product keeps 8 partial sums (a fixed, vectorizable summation order).
 *
 * Integer path (ARCHITECTURE decision 3) for Q4_0 / Q5_0 / Q8_0 weights: every
 * column of X is quantized to 8-bit blocks of 32 (float scale, round to nearest)
 * and each weight block is dotted in int32, scaled once per block. Error: about
 * 1e-2 relative, from the 8-bit activations. Off until it has SIMD variants:
 * tm__cpu_set_use_ref(false) turns it on (tests compare the two).
 * TODO(infer): Q4_K / Q6_K integer dots and AVX2 variants.
 */
#include <math.h>
#include <stdatomic.h>
#include <string.h>

#include "backend/cpu/cpu_int.h"
#include "tm/tm_bytes.h"

#define MM_QK 32
typedef struct mm_q8 {
    float  d;          /* scale */
    int8_t q[MM_QK];   /* values / d, rounded */
} mm_q8;

/* Reference by default: in plain C the integer path measured no faster than
 * dequantize + float dot here; it becomes the default with its AVX2 variant. */
static atomic_bool mm_use_ref = true;

void tm__cpu_set_use_ref(bool on) { atomic_store_explicit(&mm_use_ref, on, memory_order_relaxed); }

static bool mm_int_path(const tm_tensor *w) {
    if (atomic_load_explicit(&mm_use_ref, memory_order_relaxed) || w->ne[0] % MM_QK != 0)
        return false;
    return w->dtype == TM_DTYPE_Q8_0 || w->dtype == TM_DTYPE_Q5_0 || w->dtype == TM_DTYPE_Q4_0;
}

size_t tm__cpu_mul_mat_scratch(const tm_tensor *dst) {
    const tm_tensor *w = dst->src[0];
    size_t           s = (size_t)w->ne[0] * sizeof(float);
    if (w->ne[0] % MM_QK == 0) /* room for quantized columns, whichever path runs */
        s += (size_t)(w->ne[0] / MM_QK) * sizeof(mm_q8) * (size_t)tm_tensor_nrows(dst->src[1]);
    return s;
}

static void mm_quantize_col(const float *x, mm_q8 *out, int64_t nblk) {
    for (int64_t b = 0; b < nblk; b++) {
        const float *xb = x + b * MM_QK;
        float        amax = 0.0f;
        for (int i = 0; i < MM_QK; i++)
            amax = fmaxf(amax, fabsf(xb[i]));
        const float d = amax / 127.0f, id = d > 0.0f ? 1.0f / d : 0.0f;
        out[b].d = d;
        for (int i = 0; i < MM_QK; i++)
            out[b].q[i] = (int8_t)lrintf(xb[i] * id);
    }
}

/* Unpacks one weight block to signed ints; returns its scale. */
static inline float mm_unpack(tm_dtype t, const uint8_t *b, int8_t *q) {
    const float d = tm_f16_to_f32(tm_load_u16_le(b));
    if (t == TM_DTYPE_Q8_0) {
        memcpy(q, b + 2, MM_QK);
    } else if (t == TM_DTYPE_Q4_0) {
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((b[2 + j] & 0xF) - 8);
            q[j + 16] = (int8_t)((b[2 + j] >> 4) - 8);
        }
    } else { /* Q5_0: d, qh (u32 LE), qs[16]; ggml dequantize_row_q5_0 */
        const uint32_t qh = tm_load_u32_le(b + 2);
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(((b[6 + j] & 0xF) | (((qh >> j) & 1u) << 4)) - 16);
            q[j + 16] = (int8_t)(((b[6 + j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - 16);
        }
    }
    return d;
}

static void mm_mul_mat_int(const tm_tensor *dst, int ith, int nth, void *scratch) {
    const tm_tensor *w = dst->src[0], *x = dst->src[1];
    const int64_t    K = w->ne[0], N = w->ne[1], T = tm_tensor_nrows(x), nblk = K / MM_QK;
    const size_t     bsz = (size_t)tm_dtype_get_traits(w->dtype)->type_size;
    mm_q8           *xq = (mm_q8 *)((char *)scratch + (size_t)K * sizeof(float));
    /* every thread quantizes all columns into its own scratch: no barrier needed */
    for (int64_t t = 0; t < T; t++)
        mm_quantize_col((const float *)((const char *)x->data + (size_t)t * x->nb[1]),
                        xq + t * nblk, nblk);
    int64_t r0, r1;
    tm__cpu_split(N, ith, nth, &r0, &r1);
    int8_t wq[MM_QK];
    for (int64_t n = r0; n < r1; n++) {
        const uint8_t *wr = (const uint8_t *)w->data + (size_t)n * w->nb[1];
        for (int64_t t = 0; t < T; t++) {
            const mm_q8 *xb = xq + t * nblk;
            float        sum = 0.0f;
            for (int64_t b = 0; b < nblk; b++) {
                const float d = mm_unpack(w->dtype, wr + (size_t)b * bsz, wq);
                int32_t     acc = 0;
                for (int i = 0; i < MM_QK; i++)
                    acc += (int32_t)wq[i] * (int32_t)xb[b].q[i];
                sum += d * xb[b].d * (float)acc;
            }
            ((float *)((char *)dst->data + (size_t)t * dst->nb[1]))[n] = sum;
        }
    }
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
    const tm_tensor *w = dst->src[0], *x = dst->src[1];
    if (mm_int_path(w)) {
        mm_mul_mat_int(dst, ith, nth, scratch);
        return;
    }
    const int64_t    K = w->ne[0], N = w->ne[1], T = tm_tensor_nrows(x);
    float           *row = scratch;
    int64_t          r0, r1;
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
