/*
 * kernels.c - microbenchmark of the CPU dot kernels mul_mat uses, one thread,
 * weights small enough to stay in L2 (compute, not memory bandwidth): nanoseconds
 * per multiply-add for each weight type and column count, through the same kernel
 * choice as ops_matmul.c (tile dots for groups of 4 columns where they exist, the
 * four-row dots otherwise). Thread CPU time, so a busy host slows it less than wall
 * time would. Numbers go to docs/perf.md (optimization log).
 *
 * usage: bench_kernels [K N]   (default K 2048, N 256)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "backend/cpu/simd_dot.h"
#include "tm/tm_dtype.h"

static double bk_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static float bk_rand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)(*s >> 8) / 16777216.0f - 0.5f;
}

int main(int argc, char **argv) {
    const int64_t  K = argc > 2 ? atoll(argv[1]) : 2048, N = argc > 2 ? atoll(argv[2]) : 256;
    const tm_dtype types[] = {TM_DTYPE_Q4_0, TM_DTYPE_Q5_0, TM_DTYPE_Q8_0, TM_DTYPE_Q4_K,
                              TM_DTYPE_Q6_K};
    const int      cols[] = {1, 4, 8, 32};
    enum { MAXC = 32 };
    if (K <= 0 || N <= 0 || K % 256 != 0 || N % 4 != 0) {
        fprintf(stderr, "bench_kernels: K must be a multiple of 256 and N of 4\n");
        return 2;
    }
    const tm_cpu_isa isa = tm__cpu_isa();
    float           *w = malloc(sizeof(float) * (size_t)(K * N));
    float           *x = malloc(sizeof(float) * (size_t)(K * MAXC));
    float           *y = malloc(sizeof(float) * (size_t)(N * MAXC));
    uint32_t         seed = 1;
    if (w == NULL || x == NULL || y == NULL)
        return 1;
    for (int64_t i = 0; i < K * N; i++)
        w[i] = bk_rand(&seed);
    for (int64_t i = 0; i < K * MAXC; i++)
        x[i] = bk_rand(&seed);
    printf("isa %s, K %lld, N %lld, one thread; ns per multiply-add (lower is better)\n",
           tm__cpu_isa_name(isa), (long long)K, (long long)N);
    printf("%-6s", "type");
    for (size_t c = 0; c < sizeof cols / sizeof cols[0]; c++)
        printf(" %9d col", cols[c]);
    printf("\n");
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const tm_dtype        t = types[ti];
        const tm_cpu_vec_kind k = tm__cpu_vec_kind(t);
        size_t                rb = 0;
        if (tm_dtype_row_bytes(t, K, &rb) != TM_OK)
            return 1;
        char        *wq = malloc(rb * (size_t)N);
        const size_t xs = tm__cpu_vec_row_bytes(k, K);
        char        *xq = malloc(xs * MAXC);
        const size_t gs = (size_t)(K / TM_QK32) * sizeof(tm_q8_32x4);
        char        *xi = malloc(gs * (MAXC / 4));
        if (wq == NULL || xq == NULL || xi == NULL)
            return 1;
        for (int64_t n = 0; n < N; n++)
            if (tm_quantize_row(t, w + n * K, wq + (size_t)n * rb, K) != TM_OK)
                return 1;
        for (int c = 0; c < MAXC; c++) {
            if (k == TM_CPU_VEC_Q8_32)
                tm__cpu_quantize_q8_32(x + c * K, (tm_q8_32 *)(xq + (size_t)c * xs), K);
            else
                tm__cpu_quantize_q8_k(x + c * K, (tm_q8_k *)(xq + (size_t)c * xs), K);
        }
        const tm_cpu_vec_dot_r4 r4 = tm__cpu_dot_r4_get(t, isa);
        const tm_cpu_vec_dot_t4 t4 = tm__cpu_dot_t4_get(t, isa);
        const tm_cpu_vec_dot    dot = tm__cpu_dot_get(t, isa);
        if (t4 != NULL)
            for (int g = 0; g < MAXC / 4; g++)
                tm__cpu_q8_32_interleave4(xq + (size_t)(4 * g) * xs, xs, K / TM_QK32,
                                          (tm_q8_32x4 *)(xi + (size_t)g * gs));
        printf("%-6s", tm_dtype_name(t));
        for (size_t ci = 0; ci < sizeof cols / sizeof cols[0]; ci++) {
            const int nc = cols[ci];
            const int reps = (int)(4000 / nc * 256 / N) > 0 ? (int)(4000 / nc * 256 / N) : 1;
            double    t0 = bk_now();
            for (int r = 0; r < reps; r++)
                for (int64_t n = 0; n < N; n += 4) {
                    const char *wn = wq + (size_t)n * rb;
                    if (t4 != NULL && nc >= 4)
                        t4(K, y + n, (size_t)N, wn, rb, xi, gs, nc / 4);
                    else if (r4 != NULL)
                        r4(K, y + n, (size_t)N, wn, rb, xq, xs, nc);
                    else
                        for (int c = 0; c < nc; c++)
                            for (int i = 0; i < 4; i++)
                                dot(K, y + c * N + n + i, wn + (size_t)i * rb, xq + (size_t)c * xs);
                }
            const double dt = bk_now() - t0;
            printf(" %13.4f", dt * 1e9 / ((double)reps * (double)(K * N) * nc));
        }
        printf("\n");
        free(wq);
        free(xq);
        free(xi);
    }
    free(w);
    free(x);
    free(y);
    return 0;
}
