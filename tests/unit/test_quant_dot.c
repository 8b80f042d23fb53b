/*
 * test_quant_dot.c - the CPU dot kernels of mul_mat (src/backend/cpu/quant_dot_*.c):
 * every SIMD dot against the plain C reference dot, the reference against the
 * f32 dot of the dequantized row, and mul_mat's tiled dot path (odd shapes,
 * thread counts) against both.
 *
 * Tolerances (stated, not tuned):
 * - SIMD vs reference, integer-valued scales (f16 scales = 1, activation scale
 *   1, sums below 2^24): every float operation is exact, so equal bits.
 * - SIMD vs reference, real data: only the float accumulation order across
 *   blocks differs: |a - b| <= 1e-5 * sum |w_i x_i| + 1e-6.
 * - reference (8-bit activations) vs f32 dequantized dot: rounding each
 *   activation to its block's step d = amax / 127 moves it by at most d / 2, so
 *   |err| <= sum |w_i| * d_block(i) / 2 (x 1.001, + 1e-5 * sum |w_i x_i| for
 *   float rounding). Float weights: 1e-5 * sum |w_i x_i|.
 */
#include "harness.h"
#include "../../src/backend/cpu/cpu_int.h"
#include "../../src/backend/cpu/simd_dot.h"
#include "tm/tm_graph.h"

static const tm_dtype qd_types[] = {
    TM_DTYPE_F32,  TM_DTYPE_F16,  TM_DTYPE_BF16, TM_DTYPE_Q4_0, TM_DTYPE_Q4_1,
    TM_DTYPE_Q5_0, TM_DTYPE_Q5_1, TM_DTYPE_Q8_0, TM_DTYPE_Q2_K, TM_DTYPE_Q3_K,
    TM_DTYPE_Q4_K, TM_DTYPE_Q5_K, TM_DTYPE_Q6_K,
};
#define QD_N_TYPES ((int)(sizeof qd_types / sizeof qd_types[0]))

static uint32_t qd_next(uint32_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static float qd_frand(uint32_t *s) { return (float)(qd_next(s) >> 8) / 8388608.0f - 1.0f; }

/* Weights with a spread of magnitudes per block, as trained weights have. */
static void qd_fill(float *x, int64_t n, uint32_t seed) {
    for (int64_t i = 0; i < n; i++)
        x[i] = qd_frand(&seed) * (1.0f + 3.0f * (float)((i / 16) % 3));
}

/* Quantizes x as the dtype's activation kind into buf; returns buf. */
static void *qd_vec(tm_dtype t, const float *x, int64_t n, void *buf) {
    tm_cpu_vec_kind k = tm__cpu_vec_kind(t);
    if (k == TM_CPU_VEC_Q8_32)
        tm__cpu_quantize_q8_32(x, buf, n);
    else if (k == TM_CPU_VEC_Q8_K)
        tm__cpu_quantize_q8_k(x, buf, n);
    else
        memcpy(buf, x, (size_t)n * sizeof(float));
    return buf;
}

/* Step of the activation block that element i falls in. */
static double qd_step(tm_dtype t, const void *xv, int64_t i) {
    tm_cpu_vec_kind k = tm__cpu_vec_kind(t);
    if (k == TM_CPU_VEC_Q8_32)
        return ((const tm_q8_32 *)xv)[i / TM_QK32].d;
    if (k == TM_CPU_VEC_Q8_K)
        return ((const tm_q8_k *)xv)[i / TM_QKK].d;
    return 0.0;
}

/* The one-column dot of exactly that ISA; NULL when it has none for t or was
 * not built for this architecture (the other family's getters return NULL). */
static tm_cpu_vec_dot qd_dot_of(tm_dtype t, tm_cpu_isa isa) {
    switch (isa) {
    case TM_CPU_ISA_AVX2: return tm__cpu_dot_avx2(t);
    case TM_CPU_ISA_AVX512: return tm__cpu_dot_avx512(t);
    case TM_CPU_ISA_NEON: return tm__cpu_dot_neon(t);
    case TM_CPU_ISA_NEON_DOTPROD: return tm__cpu_dot_neon_dotprod(t);
    default: return NULL;
    }
}

/* TM_TEST_EXPECT_ISA=<name> (scripts/cross_arm64.sh) fails the run unless the
 * detected ISA is that one, so an emulated CPU model really tests its path. */
TEST(isa_is_chosen) {
    tm_cpu_isa isa = tm__cpu_isa();
    printf("  dot ISA: %s (supported: %s)\n", tm__cpu_isa_name(isa),
           tm__cpu_isa_name(tm__cpu_isa_supported()));
    EXPECT_TRUE(isa <= tm__cpu_isa_supported());
    const char *want = getenv("TM_TEST_EXPECT_ISA");
    if (want != NULL && want[0] != '\0')
        EXPECT_EQ_STR(tm__cpu_isa_name(tm__cpu_isa_supported()), want);
    for (int i = 0; i < QD_N_TYPES; i++) {
        EXPECT_TRUE(tm__cpu_dot_ref(qd_types[i]) != NULL);
        EXPECT_TRUE(tm__cpu_vec_kind(qd_types[i]) != TM_CPU_VEC_NONE);
    }
    EXPECT_TRUE(tm__cpu_vec_kind(TM_DTYPE_IQ2_XXS) == TM_CPU_VEC_NONE);
}

/* Reference dot of real-valued rows against the f32 dot of the dequantized row. */
TEST(ref_dot_vs_dequantized) {
    const int64_t n = 1024;
    float        *w = malloc(sizeof(float) * n), *wd = malloc(sizeof(float) * n);
    float        *x = malloc(sizeof(float) * n);
    void         *wq = malloc(4 * (size_t)n), *xv = malloc(4 * (size_t)n + 1024);
    for (int ti = 0; ti < QD_N_TYPES; ti++) {
        const tm_dtype t = qd_types[ti];
        for (uint32_t seed = 1; seed <= 3; seed++) {
            qd_fill(w, n, seed * 77);
            qd_fill(x, n, seed * 1234567);
            ASSERT_OK(tm_quantize_row(t, w, wq, n));
            ASSERT_OK(tm_dequantize_row(t, wq, wd, n));
            qd_vec(t, x, n, xv);
            double exact = 0, mag = 0, bound = 0;
            for (int64_t i = 0; i < n; i++) {
                exact += (double)wd[i] * x[i];
                mag += fabs((double)wd[i] * x[i]);
                bound += fabs((double)wd[i]) * qd_step(t, xv, i) / 2;
            }
            const double tol = bound * 1.001 + 1e-5 * mag + 1e-6;
            float        got;
            tm__cpu_dot_ref(t)(n, &got, wq, xv);
            if (!(fabs(got - exact) <= tol))
                TM__FAIL_AT("%s seed %u: ref %.9g vs f32 %.9g (tol %.3g)", tm_dtype_name(t), seed,
                            got, exact, tol);
        }
    }
    free(w);
    free(wd);
    free(x);
    free(wq);
    free(xv);
}

/* Every ISA's dot against the reference on realistic rows. */
TEST(simd_dot_vs_ref_real) {
    const int64_t n = 2048;
    float        *w = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * n);
    float        *wd = malloc(sizeof(float) * n);
    void         *wq = malloc(4 * (size_t)n), *xv = malloc(4 * (size_t)n + 1024);
    int           n_checked = 0;
    for (int isa = TM_CPU_ISA_AVX2; isa <= (int)tm__cpu_isa_supported(); isa++)
        for (int ti = 0; ti < QD_N_TYPES; ti++) {
            const tm_dtype t = qd_types[ti];
            tm_cpu_vec_dot f = qd_dot_of(t, (tm_cpu_isa)isa);
            if (f == NULL)
                continue;
            qd_fill(w, n, 99u + (uint32_t)ti);
            qd_fill(x, n, 4242u + (uint32_t)ti);
            ASSERT_OK(tm_quantize_row(t, w, wq, n));
            ASSERT_OK(tm_dequantize_row(t, wq, wd, n));
            qd_vec(t, x, n, xv);
            double mag = 0;
            for (int64_t i = 0; i < n; i++)
                mag += fabs((double)wd[i] * x[i]);
            /* also odd lengths (float tails, odd block counts) */
            const tm_cpu_vec_kind k = tm__cpu_vec_kind(t);
            const int64_t         lens[2] = {n, k == TM_CPU_VEC_F32     ? n - 13
                                                : k == TM_CPU_VEC_Q8_32 ? n - 32 /* odd block count */
                                                                        : n - 256};
            for (int li = 0; li < 2; li++) {
                float a, b;
                f(lens[li], &a, wq, xv);
                tm__cpu_dot_ref(t)(lens[li], &b, wq, xv);
                if (!(fabs(a - b) <= 1e-5 * mag + 1e-6))
                    TM__FAIL_AT("%s %s n=%lld: %.9g vs ref %.9g", tm__cpu_isa_name((tm_cpu_isa)isa),
                                tm_dtype_name(t), (long long)lens[li], a, b);
            }
            n_checked++;
        }
    printf("  %d SIMD dots checked\n", n_checked);
    free(w);
    free(x);
    free(wd);
    free(wq);
    free(xv);
}

/* Offsets of the f16 scale fields to set to 1.0 per block (-1 ends). */
static const int *qd_scale_fields(tm_dtype t) {
    static const int q4_0[] = {0, -1}, q4_1[] = {0, 2, -1}, q5_0[] = {0, -1}, q5_1[] = {0, 2, -1},
                     q8_0[] = {0, -1}, q2_k[] = {80, 82, -1}, q3_k[] = {108, -1},
                     q4_k[] = {0, 2, -1}, q5_k[] = {0, 2, -1}, q6_k[] = {208, -1};
    switch (t) {
    case TM_DTYPE_Q4_0: return q4_0;
    case TM_DTYPE_Q4_1: return q4_1;
    case TM_DTYPE_Q5_0: return q5_0;
    case TM_DTYPE_Q5_1: return q5_1;
    case TM_DTYPE_Q8_0: return q8_0;
    case TM_DTYPE_Q2_K: return q2_k;
    case TM_DTYPE_Q3_K: return q3_k;
    case TM_DTYPE_Q4_K: return q4_k;
    case TM_DTYPE_Q5_K: return q5_k;
    case TM_DTYPE_Q6_K: return q6_k;
    default: return NULL;
    }
}

/* Random block bytes with f16 scales 1.0 and activations with d = 1: every
 * product and sum is an integer below 2^24, so SIMD and reference agree bit
 * for bit whatever the summation order. (A single K super-block may exceed 2^24
 * but is one identical float expression on both sides.) */
TEST(simd_dot_exact_integer) {
    uint8_t *wq = malloc(8192);
    void    *xv = malloc(8192);
    int      n_checked = 0;
    for (int isa = TM_CPU_ISA_AVX2; isa <= (int)tm__cpu_isa_supported(); isa++)
        for (int ti = 0; ti < QD_N_TYPES; ti++) {
            const tm_dtype t = qd_types[ti];
            const int     *fields = qd_scale_fields(t);
            tm_cpu_vec_dot f = qd_dot_of(t, (tm_cpu_isa)isa);
            if (f == NULL || fields == NULL)
                continue;
            const tm_dtype_traits *tr = tm_dtype_get_traits(t);
            const bool             kq = tm__cpu_vec_kind(t) == TM_CPU_VEC_Q8_K;
            /* one super-block with full-range activations; four with small ones */
            for (int rep = 0; rep < 2; rep++) {
                const int64_t n = rep == 0 ? 256 : 1024;
                const int     xr = rep == 0 ? 127 : 3;
                uint32_t      seed = 0x9e3779b9u + (uint32_t)(ti * 7 + rep);
                const int64_t nb = n / tr->blck_size;
                for (int64_t i = 0; i < nb * tr->type_size; i++)
                    wq[i] = (uint8_t)qd_next(&seed);
                for (int64_t b = 0; b < nb; b++)
                    for (const int *fo = fields; *fo >= 0; fo++) {
                        wq[b * tr->type_size + *fo] = 0x00; /* f16 1.0 = 0x3C00 */
                        wq[b * tr->type_size + *fo + 1] = 0x3C;
                    }
                if (kq) {
                    tm_q8_k *y = xv;
                    for (int64_t b = 0; b < n / TM_QKK; b++) {
                        y[b].d = 1.0f;
                        for (int g = 0; g < 16; g++) {
                            int s = 0;
                            for (int l = 0; l < 16; l++) {
                                int v = (int)(qd_next(&seed) % (uint32_t)(2 * xr + 1)) - xr;
                                y[b].q[16 * g + l] = (int8_t)v;
                                s += v;
                            }
                            y[b].bsums[g] = (int16_t)s;
                        }
                    }
                } else {
                    tm_q8_32 *y = xv;
                    for (int64_t b = 0; b < n / TM_QK32; b++) {
                        int s = 0;
                        for (int l = 0; l < TM_QK32; l++) {
                            int v = (int)(qd_next(&seed) % (uint32_t)(2 * xr + 1)) - xr;
                            y[b].q[l] = (int8_t)v;
                            s += v;
                        }
                        y[b].d = 1.0f;
                        y[b].s = (float)s;
                    }
                }
                float a, r;
                f(n, &a, wq, xv);
                tm__cpu_dot_ref(t)(n, &r, wq, xv);
                if (a != r)
                    TM__FAIL_AT("%s %s n=%lld: %.9g != ref %.9g", tm__cpu_isa_name((tm_cpu_isa)isa),
                                tm_dtype_name(t), (long long)n, a, r);
                if ((rep == 1 || !kq) && !(fabsf(r) < 16777216.0f))
                    TM__FAIL_AT("%s: test sum %g leaves the exact range", tm_dtype_name(t), r);
                n_checked++;
            }
        }
    printf("  %d exact cases checked\n", n_checked);
    free(wq);
    free(xv);
}

/* Every activation quantizer writes the reference bytes (ties, zeros, extremes). */
TEST(quantize_activations_same_bytes) {
    if (tm__cpu_isa_supported() < TM_CPU_ISA_AVX2) {
        printf("  SKIPPED: no AVX2\n");
        return;
    }
    const int64_t n = 1024;
    float        *x = malloc(sizeof(float) * n);
    qd_fill(x, n, 3);
    for (int i = 0; i < 32; i++)
        x[256 + i] = 0.0f; /* an all-zero block */
    for (int i = 0; i < 32; i++)
        x[512 + i] = (float)(i - 16) * 0.5f; /* exact halves: ties after scaling */
    x[700] = 1e30f;
    x[701] = -1e30f;
    size_t b32 = (size_t)(n / TM_QK32) * sizeof(tm_q8_32),
           bk = (size_t)(n / TM_QKK) * sizeof(tm_q8_k);
    tm_q8_32 *a = calloc(1, b32), *b = calloc(1, b32);
    tm_q8_k  *c = calloc(1, bk), *d = calloc(1, bk);
    tm__cpu_quantize_q8_32_ref(x, a, n);
    tm__cpu_quantize_q8_32_avx2(x, b, n);
    tm__cpu_quantize_q8_k_ref(x, c, n);
    tm__cpu_quantize_q8_k_avx2(x, d, n);
    EXPECT_TRUE(memcmp(a, b, b32) == 0);
    EXPECT_TRUE(memcmp(c, d, bk) == 0);
    /* NEON (the reference where not arm64) */
    memset(b, 0x55, b32);
    memset(d, 0x55, bk);
    tm__cpu_quantize_q8_32_neon(x, b, n);
    tm__cpu_quantize_q8_k_neon(x, d, n);
    EXPECT_TRUE(memcmp(a, b, b32) == 0);
    EXPECT_TRUE(memcmp(c, d, bk) == 0);
    free(x);
    free(a);
    free(b);
    free(c);
    free(d);
}

/* The four-column dots give each column the bits of the one-column dot. */
TEST(dot4_matches_dot) {
    const int64_t n = 1024;
    float        *w = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * n * 4);
    void         *wq = malloc(4 * (size_t)n);
    const size_t  xs = 4 * (size_t)n + 64;
    char         *xv = malloc(4 * xs);
    int           n_checked = 0;
    for (int isa = TM_CPU_ISA_AVX2; isa <= (int)tm__cpu_isa_supported(); isa++)
        for (int ti = 0; ti < QD_N_TYPES; ti++) {
            const tm_dtype  t = qd_types[ti];
            tm_cpu_vec_dot4 f4 = tm__cpu_dot4_get(t, (tm_cpu_isa)isa);
            tm_cpu_vec_dot  f = tm__cpu_dot_avx2(t);
            if (f4 == NULL)
                continue;
            qd_fill(w, n, 31u + (uint32_t)ti);
            qd_fill(x, n * 4, 77u + (uint32_t)ti);
            ASSERT_OK(tm_quantize_row(t, w, wq, n));
            for (int c = 0; c < 4; c++)
                qd_vec(t, x + c * n, n, xv + (size_t)c * xs);
            float s4[4];
            f4(n, s4, wq, xv, xs);
            for (int c = 0; c < 4; c++) {
                float s1;
                f(n, &s1, wq, xv + (size_t)c * xs);
                if (s1 != s4[c])
                    TM__FAIL_AT("%s %s column %d: dot4 %.9g != dot %.9g",
                                tm__cpu_isa_name((tm_cpu_isa)isa), tm_dtype_name(t), c, s4[c], s1);
            }
            n_checked++;
        }
    printf("  %d four-column dots checked\n", n_checked);
    free(w);
    free(x);
    free(wq);
    free(xv);
}

/* Four-row dots: each (row, column) equals the reference dot within float-order
 * rounding, has the same bits whatever the column count of the call, and is exact
 * (equal to the reference) with f16 scales 1.0 and activations with d = 1. */
TEST(r4_dots) {
    const int64_t n = 1024;
    enum { NC = 6 };
    float       *w = malloc(sizeof(float) * n * 4), *x = malloc(sizeof(float) * n * NC);
    size_t       rb = 0;
    uint8_t     *wq = malloc(16 * (size_t)n); /* 4 rows of up to 4 bytes per weight */
    const size_t xs = 4 * (size_t)n + 64;
    char        *xv = malloc(NC * xs);
    int          n_checked = 0;
    for (int ti = 0; ti < QD_N_TYPES; ti++) {
        const tm_dtype    t = qd_types[ti];
        tm_cpu_vec_dot_r4 r4 = tm__cpu_dot_r4_get(t, tm__cpu_isa_supported());
        if (r4 == NULL)
            continue;
        ASSERT_OK(tm_dtype_row_bytes(t, n, &rb));
        const bool fl = tm__cpu_vec_kind(t) == TM_CPU_VEC_F32; /* float weights */
        for (int exact = 0; exact < 2; exact++) {
            qd_fill(w, n * 4, 41u + (uint32_t)ti);
            qd_fill(x, n * NC, 43u + (uint32_t)ti);
            if (fl && exact) /* small integers: every product and sum exact in f32 */
                for (int64_t i = 0; i < n * NC; i++) {
                    x[i] = roundf(x[i] * 2.0f);
                    if (i < n * 4)
                        w[i] = roundf(w[i] * 2.0f);
                }
            for (int r = 0; r < 4; r++)
                ASSERT_OK(tm_quantize_row(t, w + r * n, wq + (size_t)r * rb, n));
            for (int c = 0; c < NC; c++)
                qd_vec(t, x + c * n, n, xv + (size_t)c * xs);
            if (exact && !fl) { /* f16 scales 1.0, small integer activations with d = 1 */
                const tm_dtype_traits *tr = tm_dtype_get_traits(t);
                for (int r = 0; r < 4; r++)
                    for (int64_t b = 0; b < n / tr->blck_size; b++)
                        for (const int *fo = qd_scale_fields(t); *fo >= 0; fo++) {
                            uint8_t *blk = wq + (size_t)r * rb + (size_t)b * tr->type_size;
                            blk[*fo] = 0x00;
                            blk[*fo + 1] = 0x3C;
                        }
                for (int c = 0; c < NC; c++) {
                    if (tm__cpu_vec_kind(t) == TM_CPU_VEC_Q8_K) {
                        tm_q8_k *y = (tm_q8_k *)(xv + (size_t)c * xs);
                        for (int64_t b = 0; b < n / TM_QKK; b++) {
                            y[b].d = 1.0f;
                            for (int g = 0; g < 16; g++) {
                                int sum = 0;
                                for (int l = 16 * g; l < 16 * g + 16; l++)
                                    sum += y[b].q[l] = (int8_t)(y[b].q[l] / 16);
                                y[b].bsums[g] = (int16_t)sum;
                            }
                        }
                        continue;
                    }
                    tm_q8_32 *y = (tm_q8_32 *)(xv + (size_t)c * xs);
                    for (int64_t b = 0; b < n / TM_QK32; b++) {
                        int sum = 0;
                        for (int l = 0; l < TM_QK32; l++)
                            sum += y[b].q[l] = (int8_t)(y[b].q[l] / 16);
                        y[b].d = 1.0f;
                        y[b].s = (float)sum; /* the tm_q8_32 invariant: d * sum of q */
                    }
                }
            }
            float             all[NC * 4], one[4], tile[16];
            tm_cpu_vec_dot_t4 t4 = tm__cpu_dot_t4_get(t, tm__cpu_isa_supported());
            if (t4 != NULL) { /* columns 0..3 interleaved, against the reference */
                tm_q8_32x4 *xi = malloc((size_t)(n / TM_QK32) * sizeof(tm_q8_32x4));
                tm__cpu_q8_32_interleave4(xv, xs, n / TM_QK32, xi);
                t4(n, tile, 4, wq, rb, xi, 0, 1);
                for (int c = 0; c < 4; c++)
                    for (int r = 0; r < 4; r++) {
                        float ref;
                        tm__cpu_dot_ref(t)(n, &ref, wq + (size_t)r * rb, xv + (size_t)c * xs);
                        const double tol = exact ? 0.0 : 1e-5 * (fabs(ref) + 1.0);
                        if (fabs((double)tile[4 * c + r] - ref) > tol)
                            TM__FAIL_AT("%s%s tile row %d col %d: %.9g vs ref %.9g",
                                        tm_dtype_name(t), exact ? " (exact)" : "", r, c,
                                        tile[4 * c + r], ref);
                        n_checked++;
                    }
                free(xi);
            }
            r4(n, all, 4, wq, rb, xv, xs, NC);
            for (int c = 0; c < NC; c++) {
                r4(n, one, 4, wq, rb, xv + (size_t)c * xs, xs, 1);
                for (int r = 0; r < 4; r++) {
                    float ref;
                    tm__cpu_dot_ref(t)(n, &ref, wq + (size_t)r * rb, xv + (size_t)c * xs);
                    if (one[r] != all[c * 4 + r])
                        TM__FAIL_AT("%s row %d col %d: nc=%d %.9g != nc=1 %.9g", tm_dtype_name(t),
                                    r, c, NC, all[c * 4 + r], one[r]);
                    double tol = exact ? 0.0 : 1e-5 * (fabs(ref) + 1.0);
                    if (fl && !exact) { /* float order: relative to the sum of |products| */
                        double mag = 0;
                        for (int64_t i = 0; i < n; i++)
                            mag += fabs((double)w[r * n + i] * x[c * n + i]);
                        tol = 1e-6 * mag;
                    }
                    if (fabs((double)one[r] - ref) > tol)
                        TM__FAIL_AT("%s%s row %d col %d: r4 %.9g vs ref %.9g", tm_dtype_name(t),
                                    exact ? " (exact)" : "", r, c, one[r], ref);
                    n_checked++;
                }
            }
        }
    }
    printf("  %d four-row results checked\n", n_checked);
    free(w);
    free(x);
    free(wq);
    free(xv);
}

/* ---- mul_mat through the pool: tiling, odd shapes, thread counts ---------------- */

static float *qd_mul_mat_act(tm_dtype t, const void *wq, const float *x, int K, int N, int T,
                             int n_threads, int act) {
    tm_graph *g = NULL;
    if (tm_graph_init(16, &g) != TM_OK)
        return NULL;
    tm_tensor *tw = tm_graph_leaf(g, t, 2, (int64_t[]){K, N}, (void *)wq);
    tm_tensor *tx = tm_graph_leaf(g, TM_DTYPE_F32, 2, (int64_t[]){K, T}, (void *)x);
    tm_tensor *y = tm_mul_mat(g, tw, tx);
    y->ip[0] = act;
    tm_graph_set_output(y);
    size_t need = tm_graph_plan(g);
    void  *buf = malloc(need + 64);
    float *out = malloc(sizeof(float) * (size_t)N * (size_t)T);
    EXPECT_OK(tm_graph_place(g, buf, need));
    tm_cpu_pool *p = NULL;
    EXPECT_OK(tm__cpu_pool_init(n_threads, tm__cpu_graph_scratch_bytes(g) + 64, &p));
    tm__cpu_graph_compute(p, g);
    tm__cpu_pool_free(p);
    memcpy(out, y->data, sizeof(float) * (size_t)N * (size_t)T);
    free(buf);
    tm_graph_free(g);
    return out;
}

static float *qd_mul_mat(tm_dtype t, const void *wq, const float *x, int K, int N, int T,
                         int n_threads) {
    return qd_mul_mat_act(t, wq, x, K, N, T, n_threads, TM_MM_ACT8);
}

static void qd_check_mul_mat(tm_dtype t, int K, int N, int T) {
    size_t rb;
    ASSERT_OK(tm_dtype_row_bytes(t, K, &rb));
    float   *w = malloc(sizeof(float) * (size_t)K * (size_t)N);
    float   *x = malloc(sizeof(float) * (size_t)K * (size_t)T);
    uint8_t *wq = malloc(rb * (size_t)N);
    void    *xv = malloc(4 * (size_t)K + 1024);
    qd_fill(w, (int64_t)K * N, 5);
    qd_fill(x, (int64_t)K * T, 6);
    for (int n = 0; n < N; n++)
        ASSERT_OK(tm_quantize_row(t, w + (size_t)n * K, wq + (size_t)n * rb, K));
    float *y1 = qd_mul_mat(t, wq, x, K, N, T, 1);
    float *y2 = qd_mul_mat(t, wq, x, K, N, T, 2);
    ASSERT_TRUE(y1 != NULL && y2 != NULL);
    if (memcmp(y1, y2, sizeof(float) * (size_t)N * (size_t)T) != 0)
        TM__FAIL_AT("%s K=%d N=%d T=%d: 1 and 2 threads differ", tm_dtype_name(t), K, N, T);
    /* each output equals the one-column dot mul_mat chose, bit for bit (a
     * four-column dot must agree with it) */
    tm_cpu_vec_dot  dot;
    tm_cpu_vec_dot4 dot4;
    tm__cpu_mm_kernels(t, tm__cpu_isa(), T, &dot, &dot4);
    /* with a four-row dot: rows in 4-aligned groups take it, the others the best dot */
    tm_cpu_vec_dot_r4 r4 = tm__cpu_dot_r4_get(t, tm__cpu_isa());
    if (r4 != NULL)
        dot = tm__cpu_dot_get(t, tm__cpu_isa());
    /* with a tile dot too: whole groups of 4 columns of each 32-column tile take it */
    tm_cpu_vec_dot_t4 t4 = T >= 4 ? tm__cpu_dot_t4_get(t, tm__cpu_isa()) : NULL;
    for (int tt = 0; tt < T; tt++) {
        qd_vec(t, x + (size_t)tt * K, K, xv);
        for (int n = 0; n < N; n++) {
            float         r;
            const int64_t t0 = tt / 32 * 32, t1 = t0 + 32 < T ? t0 + 32 : T;
            const bool    tiled = t4 != NULL && tt < t0 + (t1 - t0) / 4 * 4;
            if (r4 != NULL && n / 4 * 4 + 4 <= N && tiled) { /* its group of 4 columns */
                const int64_t nb = K / TM_QK32, c0 = tt / 4 * 4;
                char         *x4 = malloc(4 * (size_t)K + 1024);
                tm_q8_32x4   *xi = malloc((size_t)nb * sizeof(tm_q8_32x4));
                const size_t  xs4 = tm__cpu_vec_row_bytes(TM_CPU_VEC_Q8_32, K);
                for (int c = 0; c < 4; c++)
                    qd_vec(t, x + (size_t)(c0 + c) * K, K, x4 + (size_t)c * xs4);
                tm__cpu_q8_32_interleave4(x4, xs4, nb, xi);
                float o[16];
                t4(K, o, 4, wq + (size_t)(n / 4 * 4) * rb, rb, xi, 0, 1);
                r = o[(tt - c0) * 4 + n % 4];
                free(x4);
                free(xi);
            } else if (r4 != NULL && n / 4 * 4 + 4 <= N) {
                float r4s[4];
                r4(K, r4s, 4, wq + (size_t)(n / 4 * 4) * rb, rb, xv, 0, 1);
                r = r4s[n % 4];
            } else {
                dot(K, &r, wq + (size_t)n * rb, xv);
            }
            if (r != y1[(size_t)tt * N + n]) {
                TM__FAIL_AT("%s K=%d N=%d T=%d: y[%d][%d] %.9g != dot %.9g", tm_dtype_name(t), K, N,
                            T, tt, n, y1[(size_t)tt * N + n], r);
                tt = T;
                break;
            }
        }
    }
    free(y1);
    free(y2);
    free(w);
    free(x);
    free(wq);
    free(xv);
}

TEST(mul_mat_tiles_odd_shapes_threads) {
    tm__cpu_set_use_ref(false);
    for (int ti = 0; ti < QD_N_TYPES; ti++) {
        const tm_dtype t = qd_types[ti];
        const int      K = tm__cpu_vec_kind(t) == TM_CPU_VEC_Q8_K ? 512 : 96;
        qd_check_mul_mat(t, K, 7, 1);   /* decode, odd row count */
        qd_check_mul_mat(t, K, 33, 3);  /* rows cross a tile */
        qd_check_mul_mat(t, K, 19, 37); /* columns cross a tile */
        qd_check_mul_mat(t, K, 70, 6);  /* 4-row groups across chunks, a 2-row tail */
    }
    qd_check_mul_mat(TM_DTYPE_F32, 37, 5, 2); /* K not a multiple of 8 */
    qd_check_mul_mat(TM_DTYPE_F16, 37, 5, 9); /* four-column float tails */
    qd_check_mul_mat(TM_DTYPE_F16, 40, 5, 9);
}

/* The plain C reference ISA (TM_CPU_REF=1) runs the same graph to within the
 * float-order tolerance of the SIMD one. */
TEST(mul_mat_ref_isa_matches_simd) {
    const tm_cpu_isa saved = tm__cpu_isa();
    const int        K = 512, N = 21, T = 5;
    for (int ti = 0; ti < QD_N_TYPES; ti++) {
        const tm_dtype t = qd_types[ti];
        size_t         rb;
        ASSERT_OK(tm_dtype_row_bytes(t, K, &rb));
        float   *w = malloc(sizeof(float) * K * N), *x = malloc(sizeof(float) * K * T);
        uint8_t *wq = malloc(rb * N);
        qd_fill(w, (int64_t)K * N, 11);
        qd_fill(x, (int64_t)K * T, 12);
        for (int n = 0; n < N; n++)
            ASSERT_OK(tm_quantize_row(t, w + (size_t)n * K, wq + (size_t)n * rb, K));
        tm__cpu_set_isa(TM_CPU_ISA_REF);
        float *yr = qd_mul_mat(t, wq, x, K, N, T, 2);
        tm__cpu_set_isa(saved);
        float *ys = qd_mul_mat(t, wq, x, K, N, T, 2);
        double worst = 0, mag = 0;
        for (int i = 0; i < N * T; i++) {
            worst = fmax(worst, fabs((double)yr[i] - ys[i]));
            mag = fmax(mag, fabs((double)yr[i]));
        }
        if (!(worst <= 1e-5 * (mag + 1) * 8))
            TM__FAIL_AT("%s: ref ISA vs %s differ by %g", tm_dtype_name(t), tm__cpu_isa_name(saved),
                        worst);
        free(yr);
        free(ys);
        free(w);
        free(x);
        free(wq);
    }
}

/* 16-bit activations (8-bit blocks plus their 8-bit residual) against the float
 * path on the same quantized weights: about 1e-4 of the output scale, where 8-bit
 * activations alone are about 1e-2; thread counts give the same bits. */
TEST(mul_mat_act16_vs_f32) {
    tm__cpu_set_use_ref(false);
    for (int ti = 0; ti < QD_N_TYPES; ti++) {
        const tm_dtype t = qd_types[ti];
        const int      K = 512, N = 38, Ts[] = {1, 3, 37};
        size_t         rb;
        ASSERT_OK(tm_dtype_row_bytes(t, K, &rb));
        for (int ci = 0; ci < 3; ci++) {
            const int T = Ts[ci];
            float    *w = malloc(sizeof(float) * K * N), *x = malloc(sizeof(float) * K * T);
            uint8_t  *wq = malloc(rb * N);
            qd_fill(w, (int64_t)K * N, 21);
            qd_fill(x, (int64_t)K * T, 22);
            x[7] = 40.0f; /* an outlier: its block's 8-bit step is coarse */
            for (int n = 0; n < N; n++)
                ASSERT_OK(tm_quantize_row(t, w + (size_t)n * K, wq + (size_t)n * rb, K));
            float *yf = qd_mul_mat_act(t, wq, x, K, N, T, 2, TM_MM_ACT_F32);
            float *y8 = qd_mul_mat_act(t, wq, x, K, N, T, 2, TM_MM_ACT8);
            float *y16 = qd_mul_mat_act(t, wq, x, K, N, T, 2, TM_MM_ACT16);
            float *y16b = qd_mul_mat_act(t, wq, x, K, N, T, 1, TM_MM_ACT16);
            double e8 = 0, e16 = 0, mag = 0;
            for (int i = 0; i < N * T; i++) {
                e8 = fmax(e8, fabs((double)y8[i] - yf[i]));
                e16 = fmax(e16, fabs((double)y16[i] - yf[i]));
                mag = fmax(mag, fabs((double)yf[i]));
            }
            const bool f = tm__cpu_vec_kind(t) == TM_CPU_VEC_F32;
            if (!(e16 <= (f ? 1e-5 : 3e-4) * mag) || (!f && !(e16 * 20 < e8)))
                TM__FAIL_AT("%s T=%d: act16 error %g, act8 %g, scale %g", tm_dtype_name(t), T, e16,
                            e8, mag);
            if (memcmp(y16, y16b, sizeof(float) * (size_t)N * (size_t)T) != 0)
                TM__FAIL_AT("%s T=%d: act16 differs between 1 and 2 threads", tm_dtype_name(t), T);
            free(yf);
            free(y8);
            free(y16);
            free(y16b);
            free(w);
            free(x);
            free(wq);
        }
    }
}

TM_TEST_MAIN()
