/*
 * ops_matmul.c - matrix product W[K, N] x X[K, T] -> Y[N, T] for weights of any
 * dtype with a reference dequantizer.
 *
 * Reference path: threads split the N output rows; each weight row is dequantized
 * once into thread scratch (K floats) and dotted with every column of X, so a
 * prefill batch amortizes the dequantization. F32 weights are read in place.
 * The dot product keeps 8 partial sums (a fixed, vectorizable summation order).
 */
#include <string.h>

#include "backend/cpu/cpu_int.h"

size_t tm__cpu_mul_mat_scratch(const tm_tensor *dst) {
    return (size_t)dst->src[0]->ne[0] * sizeof(float);
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
