/*
 * test_ops.c - CPU reference kernels against direct double-precision formulas,
 * the graph planner (buffer reuse, views) and multi-threaded execution.
 */
#include "harness.h"
#include "../../src/backend/cpu/cpu_int.h" /* private: tests drive the kernels directly */
#include "../../src/backend/cpu/simd_dot.h"
#include "tm/tm_graph.h"

static float frand(uint32_t *s) {
    *s = *s * 1664525u + 1013904223u;
    return (float)((*s >> 8) & 0xffff) / 32768.0f - 1.0f;
}

static void fill(float *x, int64_t n, uint32_t seed) {
    for (int64_t i = 0; i < n; i++)
        x[i] = frand(&seed);
}

/* Runs g with n_threads through the pool. */
static void compute(tm_graph *g, int n_threads, void **scratch_out) {
    size_t need = tm_graph_plan(g);
    void  *buf = malloc(need + 64);
    EXPECT_OK(tm_graph_place(g, buf, need));
    tm_cpu_pool *p = NULL;
    EXPECT_OK(tm__cpu_pool_init(n_threads, tm__cpu_graph_scratch_bytes(g) + 64, &p));
    tm__cpu_graph_compute(p, g);
    tm__cpu_pool_free(p);
    *scratch_out = buf;
}

TEST(rms_norm_mul_add) {
    enum { N = 96, R = 5 };
    float x[N * R], w[N], b[N];
    fill(x, N * R, 1);
    fill(w, N, 2);
    fill(b, N, 3);
    tm_graph *g = NULL;
    ASSERT_OK(tm_graph_init(64, &g));
    tm_tensor *tx = tm_graph_leaf(g, TM_DTYPE_F32, 2, (int64_t[]){N, R}, x);
    tm_tensor *tw = tm_graph_leaf(g, TM_DTYPE_F32, 1, (int64_t[]){N}, w);
    tm_tensor *tb = tm_graph_leaf(g, TM_DTYPE_F32, 1, (int64_t[]){N}, b);
    tm_tensor *y = tm_add(g, tm_mul(g, tm_rms_norm(g, tx, 1e-5f), tw), tb);
    tm_graph_set_output(y);
    void *buf;
    compute(g, 2, &buf);
    for (int r = 0; r < R; r++) {
        double ss = 0;
        for (int i = 0; i < N; i++)
            ss += (double)x[r * N + i] * x[r * N + i];
        double s = 1.0 / sqrt(ss / N + 1e-5);
        for (int i = 0; i < N; i++)
            EXPECT_NEAR(((float *)y->data)[r * N + i], x[r * N + i] * s * w[i] + b[i], 1e-5);
    }
    free(buf);
    tm_graph_free(g);
}

static void check_mul_mat(tm_dtype dt, int K, int N, int T, double tol) {
    float *w = malloc(sizeof(float) * K * N), *x = malloc(sizeof(float) * K * T);
    float *wd = malloc(sizeof(float) * K * N);
    fill(w, (int64_t)K * N, 7);
    fill(x, (int64_t)K * T, 8);
    size_t rb;
    ASSERT_OK(tm_dtype_row_bytes(dt, K, &rb));
    uint8_t *wq = malloc(rb * N);
    for (int n = 0; n < N; n++) {
        ASSERT_OK(tm_quantize_row(dt, w + (size_t)n * K, wq + (size_t)n * rb, K));
        ASSERT_OK(tm_dequantize_row(dt, wq + (size_t)n * rb, wd + (size_t)n * K, K));
    }
    tm_graph *g = NULL;
    ASSERT_OK(tm_graph_init(16, &g));
    tm_tensor *tw = tm_graph_leaf(g, dt, 2, (int64_t[]){K, N}, wq);
    tm_tensor *tx = tm_graph_leaf(g, TM_DTYPE_F32, 2, (int64_t[]){K, T}, x);
    tm_tensor *y = tm_mul_mat(g, tw, tx);
    tm_graph_set_output(y);
    void *buf;
    compute(g, 2, &buf);
    double worst = 0;
    for (int t = 0; t < T; t++)
        for (int n = 0; n < N; n++) {
            double ref = 0;
            for (int k = 0; k < K; k++)
                ref += (double)wd[(size_t)n * K + k] * x[(size_t)t * K + k];
            worst = fmax(worst, fabs(((float *)y->data)[(size_t)t * N + n] - ref));
        }
    if (!(worst < tol))
        TM__FAIL_AT("mul_mat %s: max error %g (tol %g)", tm_dtype_name(dt), worst, tol);
    free(buf);
    free(w);
    free(x);
    free(wd);
    free(wq);
    tm_graph_free(g);
}

TEST(mul_mat_dtypes) {
    tm__cpu_set_use_ref(true);
    check_mul_mat(TM_DTYPE_F32, 256, 33, 3, 1e-4);
    check_mul_mat(TM_DTYPE_F16, 256, 17, 2, 1e-4);
    check_mul_mat(TM_DTYPE_Q8_0, 256, 9, 1, 1e-4);
    check_mul_mat(TM_DTYPE_Q4_0, 512, 9, 4, 1e-4);
    check_mul_mat(TM_DTYPE_Q5_0, 256, 9, 2, 1e-4);
    check_mul_mat(TM_DTYPE_Q4_K, 512, 9, 2, 1e-4);
    check_mul_mat(TM_DTYPE_Q6_K, 256, 9, 3, 1e-4);
}

/* Integer (8-bit activation) path against the float reference: ~1e-3 relative. */
TEST(mul_mat_int_path) {
    tm__cpu_set_use_ref(false);
    check_mul_mat(TM_DTYPE_Q8_0, 256, 9, 3, 0.1); /* |dot| ~ 5: ~1% */
    check_mul_mat(TM_DTYPE_Q5_0, 512, 9, 2, 0.1);
    check_mul_mat(TM_DTYPE_Q4_0, 256, 9, 1, 0.1);
    tm__cpu_set_use_ref(true);
}

TEST(rope_modes) {
    enum { HD = 8, NH = 2, T = 3 };
    float   x[HD * NH * T];
    int32_t pos[T] = {0, 5, 17};
    fill(x, HD * NH * T, 4);
    for (int mode = 0; mode <= 2; mode += 2) {
        tm_graph *g = NULL;
        ASSERT_OK(tm_graph_init(16, &g));
        tm_tensor *tx = tm_graph_leaf(g, TM_DTYPE_F32, 3, (int64_t[]){HD, NH, T}, x);
        tm_tensor *tp = tm_graph_leaf(g, TM_DTYPE_I32, 1, (int64_t[]){T}, pos);
        tm_tensor *y = tm_rope(g, tx, tp, NULL, HD, (tm_rope_mode)mode, 10000.0f);
        tm_graph_set_output(y);
        void *buf;
        compute(g, 1, &buf);
        const float *o = y->data;
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++)
                for (int i = 0; i < HD / 2; i++) {
                    int          i0 = mode ? i : 2 * i, i1 = mode ? i + HD / 2 : 2 * i + 1;
                    double       a = pos[t] * pow(10000.0, -2.0 * i / HD);
                    const float *xr = x + (t * NH + h) * HD;
                    const float *yr = o + (t * NH + h) * HD;
                    EXPECT_NEAR(yr[i0], xr[i0] * cos(a) - xr[i1] * sin(a), 1e-5);
                    EXPECT_NEAR(yr[i1], xr[i0] * sin(a) + xr[i1] * cos(a), 1e-5);
                }
        free(buf);
        tm_graph_free(g);
    }
}

TEST(softmax_and_unary) {
    enum { N = 37 };
    float x[N * 2];
    fill(x, N * 2, 9);
    tm_graph *g = NULL;
    ASSERT_OK(tm_graph_init(16, &g));
    tm_tensor *tx = tm_graph_leaf(g, TM_DTYPE_F32, 2, (int64_t[]){N, 2}, x);
    tm_tensor *sm = tm_softmax(g, tx, 2.0f);
    tm_tensor *si = tm_silu(g, tx);
    tm_tensor *ge = tm_gelu(g, tx);
    tm_graph_set_output(sm);
    tm_graph_set_output(si);
    tm_graph_set_output(ge);
    void *buf;
    compute(g, 2, &buf);
    for (int r = 0; r < 2; r++) {
        double mx = -1e30, sum = 0;
        for (int i = 0; i < N; i++)
            mx = fmax(mx, 2.0 * x[r * N + i]);
        for (int i = 0; i < N; i++)
            sum += exp(2.0 * x[r * N + i] - mx);
        for (int i = 0; i < N; i++) {
            double v = x[r * N + i];
            EXPECT_NEAR(((float *)sm->data)[r * N + i], exp(2.0 * v - mx) / sum, 1e-6);
            EXPECT_NEAR(((float *)si->data)[r * N + i], v / (1 + exp(-v)), 1e-6);
            EXPECT_NEAR(((float *)ge->data)[r * N + i],
                        0.5 * v * (1 + tanh(sqrt(2 / M_PI) * (v + 0.044715 * v * v * v))), 1e-6);
        }
    }
    free(buf);
    tm_graph_free(g);
}

/* Attention through the KV cache, GQA 4:2, against a direct computation. */
TEST(attention_gqa_swa) {
    enum { HD = 8, NH = 4, NKV = 2, T = 6, NCTX = 8 };
    float   q[HD * NH * T], k[HD * NKV * T], v[HD * NKV * T];
    float   kc[HD * NKV * NCTX] = {0}, vc[HD * NKV * NCTX] = {0};
    int32_t pos[T];
    fill(q, HD * NH * T, 11);
    fill(k, HD * NKV * T, 12);
    fill(v, HD * NKV * T, 13);
    for (int t = 0; t < T; t++)
        pos[t] = t;
    for (int swa = 0; swa <= 3; swa += 3) {
        tm_graph *g = NULL;
        ASSERT_OK(tm_graph_init(16, &g));
        tm_tensor *tq = tm_graph_leaf(g, TM_DTYPE_F32, 3, (int64_t[]){HD, NH, T}, q);
        tm_tensor *tk = tm_graph_leaf(g, TM_DTYPE_F32, 3, (int64_t[]){HD, NKV, T}, k);
        tm_tensor *tv = tm_graph_leaf(g, TM_DTYPE_F32, 3, (int64_t[]){HD, NKV, T}, v);
        tm_tensor *tkc = tm_graph_leaf(g, TM_DTYPE_F32, 2, (int64_t[]){HD * NKV, NCTX}, kc);
        tm_tensor *tvc = tm_graph_leaf(g, TM_DTYPE_F32, 2, (int64_t[]){HD * NKV, NCTX}, vc);
        tm_tensor *tp = tm_graph_leaf(g, TM_DTYPE_I32, 1, (int64_t[]){T}, pos);
        tm_tensor *st = tm_kv_store(g, tk, tv, tkc, tvc, tp);
        tm_tensor *y = tm_attn(g, tq, tkc, tvc, tp, st, NKV, swa, 0.35f, 0.0f);
        tm_graph_set_output(y);
        void *buf;
        compute(g, 2, &buf);
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                int    kh = h / (NH / NKV), lo = swa ? (t - swa + 1 > 0 ? t - swa + 1 : 0) : 0;
                double s[T], mx = -1e30, sum = 0;
                for (int j = lo; j <= t; j++) {
                    s[j] = 0;
                    for (int i = 0; i < HD; i++)
                        s[j] += (double)q[(t * NH + h) * HD + i] * k[(j * NKV + kh) * HD + i];
                    s[j] *= 0.35;
                    mx = fmax(mx, s[j]);
                }
                for (int j = lo; j <= t; j++)
                    sum += exp(s[j] - mx);
                for (int i = 0; i < HD; i++) {
                    double o = 0;
                    for (int j = lo; j <= t; j++)
                        o += exp(s[j] - mx) / sum * v[(j * NKV + kh) * HD + i];
                    EXPECT_NEAR(((float *)y->data)[t * NH * HD + h * HD + i], o, 1e-5);
                }
            }
        free(buf);
        tm_graph_free(g);
    }
}

/* One attention configuration for the SIMD-vs-reference comparison. */
typedef struct attn_case {
    int   hd, nh, nkv, swa, bs; /* bs 0: contiguous cache, else paged with this block size */
    bool  bidir, f16;
    float cap;
    int   n_threads;
} attn_case;

/* Runs the SIMD attention kernel and the plain C reference on the same random
 * cache (paged through shuffled block tables, or contiguous) and compares. */
static void check_attn_simd(const attn_case *c) {
    enum { T = 5 };
    const int32_t  pos_paged[T] = {0, 9, 40, 71, 72}, pos_contig[T] = {66, 67, 68, 69, 70};
    const int32_t *pos = c->bs > 0 ? pos_paged : pos_contig;
    const int      bs = c->bs > 0 ? c->bs : 1;
    const int      n_blk = (73 + bs - 1) / bs; /* table entries per token */
    const int      n_rows = c->bs > 0 ? T * n_blk * bs : 80;
    const int      kw = c->hd * c->nkv;
    float         *q = malloc(sizeof(float) * c->hd * c->nh * T);
    float         *k = malloc(sizeof(float) * kw * T), *v = malloc(sizeof(float) * kw * T);
    float    *kf = malloc(sizeof(float) * kw * n_rows), *vf = malloc(sizeof(float) * kw * n_rows);
    uint16_t *kh = malloc(2 * (size_t)kw * n_rows), *vh = malloc(2 * (size_t)kw * n_rows);
    int32_t  *tab = malloc(sizeof(int32_t) * n_blk * T), *slots = malloc(sizeof(int32_t) * T);
    fill(q, (int64_t)c->hd * c->nh * T, 21);
    fill(k, (int64_t)kw * T, 22);
    fill(v, (int64_t)kw * T, 23);
    fill(kf, (int64_t)kw * n_rows, 24);
    fill(vf, (int64_t)kw * n_rows, 25);
    for (int64_t i = 0; i < (int64_t)kw * n_rows; i++) {
        kf[i] *= 3.0f; /* a wider score range than [-1, 1] */
        kh[i] = tm_f32_to_f16(kf[i]);
        vh[i] = tm_f32_to_f16(vf[i]);
    }
    /* token t owns blocks perm[t * n_blk ..]: a shuffle of the whole pool */
    int32_t *perm = malloc(sizeof(int32_t) * n_blk * T);
    uint32_t seed = 26;
    for (int i = 0; i < n_blk * T; i++)
        perm[i] = i;
    for (int i = n_blk * T - 1; i > 0; i--) {
        seed = seed * 1664525u + 1013904223u;
        int j = (int)((seed >> 8) % (uint32_t)(i + 1)), x = perm[i];
        perm[i] = perm[j];
        perm[j] = x;
    }
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < n_blk; b++)
            tab[t * n_blk + b] = perm[t * n_blk + b];
        slots[t] = tab[t * n_blk + pos[t] / bs] * bs + pos[t] % bs;
    }
    tm_graph *g = NULL;
    ASSERT_OK(tm_graph_init(16, &g));
    const tm_dtype kd = c->f16 ? TM_DTYPE_F16 : TM_DTYPE_F32;
    tm_tensor     *tq = tm_graph_leaf(g, TM_DTYPE_F32, 3, (int64_t[]){c->hd, c->nh, T}, q);
    tm_tensor     *tk = tm_graph_leaf(g, TM_DTYPE_F32, 3, (int64_t[]){c->hd, c->nkv, T}, k);
    tm_tensor     *tv = tm_graph_leaf(g, TM_DTYPE_F32, 3, (int64_t[]){c->hd, c->nkv, T}, v);
    tm_tensor     *tkc = tm_graph_leaf(g, kd, 2, (int64_t[]){kw, n_rows}, c->f16 ? (void *)kh : kf);
    tm_tensor     *tvc = tm_graph_leaf(g, kd, 2, (int64_t[]){kw, n_rows}, c->f16 ? (void *)vh : vf);
    tm_tensor     *tp = tm_graph_leaf(g, TM_DTYPE_I32, 1, (int64_t[]){T}, (void *)pos);
    tm_tensor     *st = tm_kv_store(g, tk, tv, tkc, tvc, tp);
    tm_tensor     *y = tm_attn(g, tq, tkc, tvc, tp, st, c->nkv, c->swa, 0.3f, c->cap);
    if (c->bs > 0) {
        tm_kv_store_set_slots(st, tm_graph_leaf(g, TM_DTYPE_I32, 1, (int64_t[]){T}, slots));
        tm_attn_set_blocks(y, tm_graph_leaf(g, TM_DTYPE_I32, 2, (int64_t[]){n_blk, T}, tab), bs);
    }
    if (c->bidir)
        tm_attn_set_bidirectional(y);
    tm_graph_set_output(y);
    size_t need = tm_graph_plan(g);
    void  *buf = malloc(need + 64);
    ASSERT_OK(tm_graph_place(g, buf, need));
    tm_cpu_pool *pool = NULL;
    ASSERT_OK(tm__cpu_pool_init(c->n_threads, tm__cpu_graph_scratch_bytes(g) + 64, &pool));
    const size_t n_out = (size_t)c->hd * c->nh * T;
    float       *ref = malloc(sizeof(float) * n_out);
    tm__cpu_set_isa(TM_CPU_ISA_REF);
    tm__cpu_graph_compute(pool, g);
    memcpy(ref, y->data, sizeof(float) * n_out);
    tm__cpu_set_isa(tm__cpu_isa_supported());
    memset(y->data, 0, sizeof(float) * n_out);
    tm__cpu_graph_compute(pool, g);
    /* relative to the largest output of the (token, head) row: outputs are
     * convex combinations of V rows and single elements may be near 0 */
    double worst = 0;
    for (size_t r = 0; r < n_out / (size_t)c->hd; r++) {
        double mx = 1e-30;
        for (int i = 0; i < c->hd; i++)
            mx = fmax(mx, fabs(ref[r * c->hd + i]));
        for (int i = 0; i < c->hd; i++)
            worst = fmax(worst, fabs(((float *)y->data)[r * c->hd + i] - ref[r * c->hd + i]) / mx);
    }
    if (!(worst < 1e-5))
        TM__FAIL_AT("attn hd %d nh %d nkv %d swa %d bs %d bidir %d f16 %d cap %g: rel error %g",
                    c->hd, c->nh, c->nkv, c->swa, c->bs, c->bidir, c->f16, c->cap, worst);
    tm__cpu_pool_free(pool);
    free(buf);
    free(ref);
    free(perm);
    free(q);
    free(k);
    free(v);
    free(kf);
    free(vf);
    free(kh);
    free(vh);
    free(tab);
    free(slots);
    tm_graph_free(g);
}

/* SIMD attention against the reference: GQA, sliding window, bidirectional,
 * F16 / F32 KV, block sizes 2..16, head sizes on and off the 32-wide path. */
TEST(attention_simd_vs_ref) {
    const tm_cpu_isa saved = tm__cpu_isa();
    const attn_case  cases[] = {
         {.hd = 64, .nh = 14, .nkv = 2, .bs = 16, .n_threads = 2},
         {.hd = 64, .nh = 14, .nkv = 2, .bs = 16, .f16 = true, .n_threads = 3},
         {.hd = 64, .nh = 14, .nkv = 2, .bs = 0, .n_threads = 1},
         {.hd = 64, .nh = 14, .nkv = 2, .bs = 0, .f16 = true, .n_threads = 2},
         {.hd = 40, .nh = 8, .nkv = 2, .bs = 2, .swa = 7, .n_threads = 2},
         {.hd = 40, .nh = 8, .nkv = 2, .bs = 4, .swa = 33, .f16 = true, .n_threads = 2},
         {.hd = 8, .nh = 4, .nkv = 4, .bs = 8, .bidir = true, .n_threads = 2},
         {.hd = 96, .nh = 6, .nkv = 1, .bs = 8, .bidir = true, .f16 = true, .n_threads = 1},
         {.hd = 32, .nh = 40, .nkv = 2, .bs = 4, .n_threads = 3}, /* group 20 > 16 heads */
         {.hd = 64, .nh = 4, .nkv = 1, .bs = 2, .swa = 5, .cap = 2.0f, .n_threads = 2},
         {.hd = 12, .nh = 4, .nkv = 2, .bs = 8, .n_threads = 2}, /* no SIMD path: both ref */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_attn_simd(&cases[i]);
    tm__cpu_set_isa(saved);
}

/* The planner reuses dead buffers: a chain of 20 unary ops needs two buffers. */
TEST(planner_reuses_buffers) {
    float x[256];
    fill(x, 256, 5);
    tm_graph *g = NULL;
    ASSERT_OK(tm_graph_init(64, &g));
    tm_tensor *t = tm_graph_leaf(g, TM_DTYPE_F32, 1, (int64_t[]){256}, x);
    for (int i = 0; i < 20; i++)
        t = tm_scale(g, t, 1.0f);
    tm_graph_set_output(tm_view_cols(g, tm_reshape(g, t, 2, (int64_t[]){64, 4}), 3, 1));
    size_t need = tm_graph_plan(g);
    EXPECT_EQ_INT(need, 2 * 1024);
    tm_graph_free(g);
}

TM_TEST_MAIN()
