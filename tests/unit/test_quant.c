/*
 * test_quant.c - reference (de)quantization: bit-exactness against the gguf
 * package (fixtures from scripts/gen_quant_fixtures.py), round-trip error
 * bounds on Gaussian and edge rows, and argument errors.
 *
 *     test_quant                       all tests, fixtures from tests/golden/quant
 *     test_quant --fixtures DIR [NAME] fixtures from DIR (tests/py regenerates them)
 *     test_quant NAME                  one test
 *     test_quant --quantize TYPE IN OUT    raw f32 file -> row bytes   (oracle helper
 *     test_quant --dequantize TYPE IN OUT  row bytes -> raw f32 file    for tests/py)
 *
 * The fixture format is documented in scripts/gen_quant_fixtures.py.
 */
#include <stdbool.h>

#include "harness.h"
#include "tm/tm_bytes.h"
#include "tm/tm_dtype.h"

static const char *g_fixtures_dir = TM_SOURCE_DIR "/tests/golden/quant";

/* Every type TensorMesh (de)quantizes; each has a fixture file. */
static const tm_dtype k_types[] = {
    TM_DTYPE_F32,  TM_DTYPE_F16,  TM_DTYPE_BF16, TM_DTYPE_Q4_0, TM_DTYPE_Q4_1,
    TM_DTYPE_Q5_0, TM_DTYPE_Q5_1, TM_DTYPE_Q8_0, TM_DTYPE_Q2_K, TM_DTYPE_Q3_K,
    TM_DTYPE_Q4_K, TM_DTYPE_Q5_K, TM_DTYPE_Q6_K,
};
#define N_TYPES (sizeof k_types / sizeof k_types[0])

/* Types whose quantizer the gguf package implements: their fixtures must carry
 * a quantize case (the K formats are checked by round trip and tests/py). */
static bool gguf_quantizes(tm_dtype t) {
    switch (t) {
    case TM_DTYPE_F32:
    case TM_DTYPE_F16:
    case TM_DTYPE_BF16:
    case TM_DTYPE_Q4_0:
    case TM_DTYPE_Q4_1:
    case TM_DTYPE_Q5_0:
    case TM_DTYPE_Q5_1:
    case TM_DTYPE_Q8_0: return true;
    default: return false;
    }
}

/* ---- helpers ------------------------------------------------------------------ */

static size_t row_bytes(tm_dtype t, int64_t n) {
    size_t b = 0;
    if (tm_dtype_row_bytes(t, n, &b) != TM_OK)
        return 0;
    return b;
}

static uint8_t *read_whole(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    uint8_t *buf = NULL;
    size_t   cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 65536;
            uint8_t *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    fclose(f);
    *len = n;
    return buf;
}

static bool write_whole(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return false;
    bool ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

static void lower_name(tm_dtype t, char *out, size_t cap) {
    const char *n = tm_dtype_name(t);
    size_t      i = 0;
    for (; n[i] && i + 1 < cap; i++)
        out[i] = (char)((n[i] >= 'A' && n[i] <= 'Z') ? n[i] - 'A' + 'a' : n[i]);
    out[i] = '\0';
}

/* Deterministic Gaussian source (splitmix64 + Box-Muller): no libc rand. */
typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r) {
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rng_gauss(rng *r) {
    double u1 = ((double)(rng_next(r) >> 11) + 1.0) / 9007199254740993.0;
    double u2 = (double)(rng_next(r) >> 11) / 9007199254740992.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* ---- fixtures: bit-exact against gguf ---------------------------------------- */

static void report_float_mismatch(const float *got, const float *want, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        uint32_t a, b;
        memcpy(&a, &got[i], 4);
        memcpy(&b, &want[i], 4);
        if (a != b) {
            TM__FAIL_AT("element %lld: got %.9g (0x%08x), gguf %.9g (0x%08x)", (long long)i,
                        (double)got[i], a, (double)want[i], b);
            return;
        }
    }
}

static void report_byte_mismatch(const uint8_t *got, const uint8_t *want, size_t n, size_t tsize) {
    for (size_t i = 0; i < n; i++) {
        if (got[i] != want[i]) {
            TM__FAIL_AT("byte %zu (block %zu, offset %zu): got 0x%02x, gguf 0x%02x", i, i / tsize,
                        i % tsize, got[i], want[i]);
            return;
        }
    }
}

static void check_fixture(tm_dtype t) {
    char name[32], path[4096];
    lower_name(t, name, sizeof name);
    snprintf(path, sizeof path, "%s/%s.bin", g_fixtures_dir, name);
    size_t   len = 0;
    uint8_t *buf = read_whole(path, &len);
    if (buf == NULL) {
        TM__FAIL_AT("cannot read %s (run scripts/gen_quant_fixtures.py)", path);
        return;
    }
    const tm_dtype_traits *tr = tm_dtype_get_traits((uint32_t)t);
    bool                   saw_dequant = false, saw_quant = false;
    if (len < 16 || memcmp(buf, "TMQF", 4) != 0 || tm_load_u32_le(buf + 4) != 1 ||
        tm_load_u32_le(buf + 8) != (uint32_t)t) {
        TM__FAIL_AT("%s: bad header", path);
        goto done;
    }
    uint32_t n_cases = tm_load_u32_le(buf + 12);
    size_t   off = 16;
    for (uint32_t c = 0; c < n_cases; c++) {
        if (len - off < 16) {
            TM__FAIL_AT("%s: truncated case %u", path, c);
            goto done;
        }
        uint32_t kind = tm_load_u32_le(buf + off);
        uint64_t n = tm_load_u64_le(buf + off + 8);
        off += 16;
        size_t nbytes = row_bytes(t, (int64_t)n), nfloat = (size_t)n * 4;
        if (nbytes == 0 || n > (1u << 24) || len - off < nbytes + nfloat) {
            TM__FAIL_AT("%s: case %u of %llu elements does not fit", path, c,
                        (unsigned long long)n);
            goto done;
        }
        float   *f = malloc(nfloat);
        uint8_t *q = malloc(nbytes);
        if (f == NULL || q == NULL) {
            free(f);
            free(q);
            TM__FAIL_AT("out of memory");
            goto done;
        }
        if (kind == 1) { /* raw bytes -> gguf's float32 */
            saw_dequant = true;
            const uint8_t *raw = buf + off, *want = buf + off + nbytes;
            EXPECT_OK(tm_dequantize_row(t, raw, f, (int64_t)n));
            if (memcmp(f, want, nfloat) != 0) {
                float *w = malloc(nfloat);
                if (w != NULL) {
                    memcpy(w, want, nfloat);
                    report_float_mismatch(f, w, (int64_t)n);
                }
                free(w);
                TM__FAIL_AT("%s: dequantize differs from gguf", name);
            }
            off += nbytes + nfloat;
        } else if (kind == 2) { /* float32 -> gguf's row bytes */
            saw_quant = true;
            memcpy(f, buf + off, nfloat);
            const uint8_t *want = buf + off + nfloat;
            memset(q, 0xA5, nbytes);
            EXPECT_OK(tm_quantize_row(t, f, q, (int64_t)n));
            if (memcmp(q, want, nbytes) != 0) {
                report_byte_mismatch(q, want, nbytes, (size_t)tr->type_size);
                TM__FAIL_AT("%s: quantize differs from gguf", name);
            }
            off += nbytes + nfloat;
        } else {
            TM__FAIL_AT("%s: unknown case kind %u", path, kind);
            free(f);
            free(q);
            goto done;
        }
        free(f);
        free(q);
    }
    EXPECT_TRUE(off == len);
    EXPECT_TRUE(saw_dequant);
    if (gguf_quantizes(t))
        EXPECT_TRUE(saw_quant);
done:
    free(buf);
}

#define FIXTURE_TEST(lname, T)                                                                     \
    TEST(gguf_exact_##lname) { check_fixture(T); }

FIXTURE_TEST(f32, TM_DTYPE_F32)
FIXTURE_TEST(f16, TM_DTYPE_F16)
FIXTURE_TEST(bf16, TM_DTYPE_BF16)
FIXTURE_TEST(q4_0, TM_DTYPE_Q4_0)
FIXTURE_TEST(q4_1, TM_DTYPE_Q4_1)
FIXTURE_TEST(q5_0, TM_DTYPE_Q5_0)
FIXTURE_TEST(q5_1, TM_DTYPE_Q5_1)
FIXTURE_TEST(q8_0, TM_DTYPE_Q8_0)
FIXTURE_TEST(q2_k, TM_DTYPE_Q2_K)
FIXTURE_TEST(q3_k, TM_DTYPE_Q3_K)
FIXTURE_TEST(q4_k, TM_DTYPE_Q4_K)
FIXTURE_TEST(q5_k, TM_DTYPE_Q5_K)
FIXTURE_TEST(q6_k, TM_DTYPE_Q6_K)

/* ---- round trips ---------------------------------------------------------------- */

/* Bound on RMS(dequant(quant(x)) - x) / RMS(x) for N(0,1) rows; measured values
 * (printed by the test, recorded in docs/quant.md) sit well below these. */
static double rt_bound(tm_dtype t) {
    switch (t) {
    case TM_DTYPE_F32: return 0.0;
    case TM_DTYPE_F16: return 0.0005;
    case TM_DTYPE_BF16: return 0.004;
    case TM_DTYPE_Q8_0: return 0.006;
    case TM_DTYPE_Q6_K: return 0.02;
    case TM_DTYPE_Q5_0: return 0.05;
    case TM_DTYPE_Q5_1:
    case TM_DTYPE_Q5_K: return 0.045;
    case TM_DTYPE_Q4_K: return 0.08;
    case TM_DTYPE_Q4_1: return 0.09;
    case TM_DTYPE_Q4_0: return 0.10;
    case TM_DTYPE_Q3_K: return 0.18;
    case TM_DTYPE_Q2_K: return 0.35;
    default: return 0.0;
    }
}

/* Quantizes and dequantizes x; returns the relative RMSE, or -1 on failure. */
static double round_trip(tm_dtype t, const float *x, float *y, int64_t n) {
    uint8_t *q = malloc(row_bytes(t, n));
    if (q == NULL)
        return -1;
    double err = -1;
    if (tm_quantize_row(t, x, q, n) == TM_OK && tm_dequantize_row(t, q, y, n) == TM_OK) {
        double se = 0, sx = 0;
        for (int64_t i = 0; i < n; i++) {
            double d = (double)y[i] - (double)x[i];
            se += d * d;
            sx += (double)x[i] * (double)x[i];
        }
        err = sx > 0 ? sqrt(se / sx) : sqrt(se / (double)n);
    }
    free(q);
    return err;
}

TEST(round_trip_gaussian) {
    enum { N = 64 * 256 };
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y);
    ASSERT_TRUE(x != NULL && y != NULL);
    rng r = {42};
    for (int i = 0; i < N; i++)
        x[i] = rng_gauss(&r);
    for (size_t k = 0; k < N_TYPES; k++) {
        tm_dtype t = k_types[k];
        double   e = round_trip(t, x, y, N);
        printf("  %-5s rel rmse %.5f%% (bound %.2f%%)\n", tm_dtype_name(t), 100 * e,
               100 * rt_bound(t));
        if (!(e >= 0 && e <= rt_bound(t)))
            TM__FAIL_AT("%s: round-trip error %g above bound %g", tm_dtype_name(t), e, rt_bound(t));
    }
    free(x);
    free(y);
}

/* Zeros stay exactly zero; constants, a huge outlier and a tiny scale survive. */
TEST(round_trip_edges) {
    enum { N = 256 };
    float x[N], y[N];
    for (size_t k = 0; k < N_TYPES; k++) {
        tm_dtype    t = k_types[k];
        const char *nm = tm_dtype_name(t);

        memset(x, 0, sizeof x);
        EXPECT_TRUE(round_trip(t, x, y, N) == 0.0);
        for (int i = 0; i < N; i++)
            if (y[i] != 0.0f) {
                TM__FAIL_AT("%s: zero row gave %g at %d", nm, (double)y[i], i);
                break;
            }

        for (int i = 0; i < N; i++)
            x[i] = -3.25f;
        double e = round_trip(t, x, y, N);
        if (!(e >= 0 && e <= 0.01))
            TM__FAIL_AT("%s: constant row error %g", nm, e);

        rng r = {7 + k};
        for (int i = 0; i < N; i++)
            x[i] = rng_gauss(&r);
        x[77] = 1e4f;
        e = round_trip(t, x, y, N);
        EXPECT_TRUE(e >= 0);
        if (!(fabs((double)y[77] - 1e4) <= 1e4 * 0.01))
            TM__FAIL_AT("%s: outlier 1e4 came back as %g", nm, (double)y[77]);
        for (int i = 0; i < N; i++)
            if (!isfinite(y[i])) {
                TM__FAIL_AT("%s: non-finite output at %d", nm, i);
                break;
            }

        for (int i = 0; i < N; i++)
            x[i] = rng_gauss(&r) * 1e-3f;
        e = round_trip(t, x, y, N);
        if (!(e >= 0 && e <= rt_bound(t) * 1.5 + 1e-3))
            TM__FAIL_AT("%s: small-scale row error %g", nm, e);
    }
}

/* Blocks at odd addresses work the same (no aligned loads are assumed). */
TEST(unaligned_buffers) {
    enum { N = 512 };
    float    x[N], y0[N], y1[N];
    uint8_t *q0 = malloc(2 * 1024 + 1), *q1 = malloc(2 * 1024 + 1);
    ASSERT_TRUE(q0 != NULL && q1 != NULL);
    rng r = {3};
    for (int i = 0; i < N; i++)
        x[i] = rng_gauss(&r);
    for (size_t k = 0; k < N_TYPES; k++) {
        tm_dtype t = k_types[k];
        size_t   nb = row_bytes(t, N);
        ASSERT_TRUE(nb <= 2048);
        EXPECT_OK(tm_quantize_row(t, x, q0, N));
        EXPECT_OK(tm_quantize_row(t, x, q1 + 1, N));
        EXPECT_TRUE(memcmp(q0, q1 + 1, nb) == 0);
        EXPECT_OK(tm_dequantize_row(t, q0, y0, N));
        EXPECT_OK(tm_dequantize_row(t, q1 + 1, y1, N));
        EXPECT_TRUE(memcmp(y0, y1, sizeof y0) == 0);
    }
    free(q0);
    free(q1);
}

/* ---- errors ------------------------------------------------------------------------ */

TEST(n_not_multiple_of_block) {
    float   x[256] = {0};
    uint8_t q[1024];
    EXPECT_EQ_INT(tm_quantize_row(TM_DTYPE_Q4_0, x, q, 33), TM_ERR_INVALID);
    EXPECT_TRUE(strstr(tm_last_error(), "block size 32") != NULL);
    EXPECT_EQ_INT(tm_dequantize_row(TM_DTYPE_Q6_K, q, x, 128), TM_ERR_INVALID);
    EXPECT_TRUE(strstr(tm_last_error(), "q6_K") != NULL);
    EXPECT_EQ_INT(tm_dequantize_row(TM_DTYPE_Q8_0, q, x, -32), TM_ERR_INVALID);
    EXPECT_OK(tm_dequantize_row(TM_DTYPE_Q8_0, NULL, NULL, 0));
    EXPECT_EQ_INT(tm_dequantize_row(TM_DTYPE_Q8_0, NULL, x, 32), TM_ERR_INVALID);
}

TEST(unsupported_and_invalid_types) {
    float   x[256] = {0};
    uint8_t q[1024] = {0};
    EXPECT_EQ_INT(tm_dequantize_row(TM_DTYPE_IQ2_XXS, q, x, 256), TM_ERR_UNSUPPORTED);
    EXPECT_TRUE(strstr(tm_last_error(), "iq2_xxs") != NULL);
    EXPECT_EQ_INT(tm_quantize_row(TM_DTYPE_Q8_K, x, q, 256), TM_ERR_UNSUPPORTED);
    EXPECT_TRUE(strstr(tm_last_error(), "q8_K") != NULL);
    EXPECT_EQ_INT(tm_quantize_row(TM_DTYPE_I32, x, q, 4), TM_ERR_UNSUPPORTED);
    EXPECT_EQ_INT(tm_dequantize_row((tm_dtype)4, q, x, 32), TM_ERR_INVALID);
    EXPECT_EQ_INT(tm_dequantize_row((tm_dtype)999, q, x, 32), TM_ERR_INVALID);
}

/* dtype.c's can_dequant / can_quant flags must tell the truth. */
TEST(traits_flags_match_kernels) {
    float   x[256] = {0};
    uint8_t q[512] = {0};
    for (uint32_t v = 0; v < TM_DTYPE_COUNT; v++) {
        const tm_dtype_traits *tr = tm_dtype_get_traits(v);
        if (tr == NULL)
            continue;
        int64_t   n = tr->blck_size;
        tm_status sd = tm_dequantize_row((tm_dtype)v, q, x, n);
        tm_status sq = tm_quantize_row((tm_dtype)v, x, q, n);
        if ((sd == TM_OK) != tr->can_dequant || (sq == TM_OK) != tr->can_quant)
            TM__FAIL_AT("%s: flags (%d,%d) but calls (%d,%d)", tr->name, tr->can_dequant,
                        tr->can_quant, (int)sd, (int)sq);
    }
}

/* ---- main: the harness's runner plus --fixtures and the oracle helpers --------- */

static int tool_mode(const char *mode, const char *type, const char *in, const char *out) {
    tm_dtype t;
    if (tm_dtype_from_name(type, &t) != TM_OK) {
        fprintf(stderr, "%s\n", tm_last_error());
        return 2;
    }
    const tm_dtype_traits *tr = tm_dtype_get_traits((uint32_t)t);
    size_t                 len = 0;
    uint8_t               *buf = read_whole(in, &len);
    if (buf == NULL) {
        fprintf(stderr, "cannot read %s\n", in);
        return 2;
    }
    bool    quantize = strcmp(mode, "--quantize") == 0;
    int64_t n =
        quantize ? (int64_t)(len / 4) : (int64_t)(len / (size_t)tr->type_size) * tr->blck_size;
    size_t    nb = row_bytes(t, n);
    size_t    out_len = quantize ? nb : (size_t)n * 4;
    void     *dst = malloc(out_len ? out_len : 1);
    float    *src_f = quantize ? malloc(len ? len : 1) : NULL;
    int       rc = 2;
    tm_status st;
    if (dst == NULL || (quantize && src_f == NULL))
        goto out;
    if (quantize) {
        memcpy(src_f, buf, len);
        st = tm_quantize_row(t, src_f, dst, n);
    } else {
        st = tm_dequantize_row(t, buf, dst, n);
    }
    if (st != TM_OK)
        fprintf(stderr, "%s: %s\n", tm_status_str(st), tm_last_error());
    else if (!write_whole(out, dst, out_len))
        fprintf(stderr, "cannot write %s\n", out);
    else
        rc = 0;
out:
    free(dst);
    free(src_f);
    free(buf);
    return rc;
}

int main(int argc, char **argv) {
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--quantize") == 0 || strcmp(argv[i], "--dequantize") == 0) &&
            i + 3 < argc)
            return tool_mode(argv[i], argv[i + 1], argv[i + 2], argv[i + 3]);
        if (strcmp(argv[i], "--fixtures") == 0 && i + 1 < argc)
            g_fixtures_dir = argv[++i];
        else
            only = argv[i];
    }
    int passed = 0, failed = 0;
    for (int i = 0; i < tm_n_tests; i++) {
        if (only != NULL && strcmp(only, tm_tests[i].name) != 0)
            continue;
        tm_cur_failed = 0;
        tm_tests[i].fn();
        printf("%s %s\n", tm_cur_failed ? "FAIL" : "ok  ", tm_tests[i].name);
        if (tm_cur_failed)
            failed++;
        else
            passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
