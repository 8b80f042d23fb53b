/*
 * test_gguf.c - GGUF reader and writer: round trips of every value type, one
 * handcrafted corruption per enum value (llama.cpp test-gguf style), truncation
 * at every header byte, and the shared tiny llama file.
 *
 * Besides the tests, two modes serve tests/py/test_gguf_oracle.py:
 *   test_gguf --dump FILE          prints FILE as canonical JSON on stdout
 *   test_gguf --write-sample FILE  writes the fixed sample with every type
 */
#include <stdbool.h>
#include <unistd.h>

#include "harness.h"
#include "tm/tm_bytes.h"
#include "tm/tm_gguf.h"

/* ---- a byte builder for handcrafted files -------------------------------------- */

typedef struct bb {
    uint8_t *p;
    size_t   n, cap;
} bb;

static void bb_put(bb *b, const void *src, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (b->p == NULL)
            abort();
    }
    if (n)
        memcpy(b->p + b->n, src, n);
    b->n += n;
}
static void bb_u8(bb *b, uint8_t v) { bb_put(b, &v, 1); }
static void bb_u32(bb *b, uint32_t v) {
    uint8_t t[4];
    tm_store_u32_le(t, v);
    bb_put(b, t, 4);
}
static void bb_u64(bb *b, uint64_t v) {
    uint8_t t[8];
    tm_store_u64_le(t, v);
    bb_put(b, t, 8);
}
static void bb_str(bb *b, const char *s) {
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}

static bool has(const char *hay, const char *needle) { return strstr(hay, needle) != NULL; }

static bool sv_is(tm_strview s, const char *c) {
    return s.len == strlen(c) && memcmp(s.ptr, c, s.len) == 0;
}

/* ---- the handcrafted file and its corruptions ------------------------------------ */

typedef enum corrupt {
    C_NONE,
    C_BAD_MAGIC,
    C_VERSION_1,
    C_VERSION_99,
    C_BIG_ENDIAN,
    C_HUGE_TENSOR_COUNT,
    C_HUGE_KV_COUNT,
    C_LYING_STRING,
    C_EMPTY_KEY,
    C_HUGE_ARRAY,
    C_DEPTH_BOMB,
    C_BAD_BOOL,
    C_BAD_BOOL_ARRAY,
    C_UNKNOWN_KV_TYPE,
    C_UNKNOWN_ARR_TYPE,
    C_UNKNOWN_DTYPE,
    C_NDIMS_0,
    C_NDIMS_5,
    C_NE_TOO_BIG,
    C_NOT_BLOCK_MULTIPLE,
    C_SHAPE_OVERFLOW,
    C_MISALIGNED,
    C_PAST_END,
    C_OVERLAP,
    C_DUP_KEY,
    C_DUP_TENSOR,
    C_BAD_ALIGNMENT,
    C_ZERO_ALIGNMENT,
    C_HUGE_ALIGNMENT,
    C_ALIGNMENT_TYPE,
    C_COUNT
} corrupt;

static const struct {
    corrupt     c;
    const char *expect; /* substring of the error message */
} corrupt_cases[] = {
    {C_BAD_MAGIC, "bad magic"},
    {C_VERSION_1, "version 1 is not supported"},
    {C_VERSION_99, "unsupported GGUF version 99"},
    {C_BIG_ENDIAN, "big-endian"},
    {C_HUGE_TENSOR_COUNT, "tensor count 1152921504606846976 exceeds"},
    {C_HUGE_KV_COUNT, "kv count 1152921504606846976 exceeds"},
    {C_LYING_STRING, "string length 1099511627776"},
    {C_EMPTY_KEY, "empty key"},
    {C_HUGE_ARRAY, "array count 2305843009213693952"},
    {C_DEPTH_BOMB, "nesting depth exceeds"},
    {C_BAD_BOOL, "key 'flag': invalid bool value 2"},
    {C_BAD_BOOL_ARRAY, "key 'bools': invalid bool value 7"},
    {C_UNKNOWN_KV_TYPE, "key 'flag': unknown value type 13"},
    {C_UNKNOWN_ARR_TYPE, "unknown value type 77"},
    {C_UNKNOWN_DTYPE, "tensor 'b': unknown dtype 4"},
    {C_NDIMS_0, "tensor 'a': n_dims 0"},
    {C_NDIMS_5, "tensor 'a': n_dims 5"},
    {C_NE_TOO_BIG, "overflows int64"},
    {C_NOT_BLOCK_MULTIPLE, "ne[0] = 33 is not a multiple of the q8_0 block size 32"},
    {C_SHAPE_OVERFLOW, "overflows"},
    {C_MISALIGNED, "tensor 'b': data offset 80 is misaligned"},
    {C_PAST_END, "tensor 'c': data [4480, 4488) past end of file (size 520)"},
    {C_OVERLAP, "overlap"},
    {C_DUP_KEY, "duplicate key 'flag'"},
    {C_DUP_TENSOR, "duplicate tensor name 'a'"},
    {C_BAD_ALIGNMENT, "general.alignment 48 is not a power of two"},
    {C_ZERO_ALIGNMENT, "general.alignment 0 is not a power of two"},
    {C_HUGE_ALIGNMENT, "general.alignment 2147483648"},
    {C_ALIGNMENT_TYPE, "general.alignment has type uint64"},
};

#define HAND_DATA_BYTES 136

/* A valid v3 file with 6 kvs (string, alignment, bool, string array, nested
 * int32 array, bool array) and 3 tensors; c applies one corruption. */
static void build_hand(corrupt c, bb *b, size_t *header_end) {
    bb_u32(b, c == C_BAD_MAGIC ? 0x46554746u : TM_GGUF_MAGIC);
    bb_u32(b, c == C_VERSION_1 ? 1 : c == C_VERSION_99 ? 99 : c == C_BIG_ENDIAN ? 0x03000000u : 3);
    bb_u64(b, c == C_HUGE_TENSOR_COUNT ? 1ull << 60 : 3);
    bb_u64(b, c == C_HUGE_KV_COUNT ? 1ull << 60 : 6);

    bb_str(b, "general.architecture");
    bb_u32(b, TM_GGUF_TYPE_STRING);
    if (c == C_LYING_STRING) {
        bb_u64(b, 1ull << 40);
        bb_put(b, "llama", 5);
    } else {
        bb_str(b, "llama");
    }

    bb_str(b, "general.alignment");
    if (c == C_ALIGNMENT_TYPE) {
        bb_u32(b, TM_GGUF_TYPE_UINT64);
        bb_u64(b, 32);
    } else {
        bb_u32(b, TM_GGUF_TYPE_UINT32);
        bb_u32(b, c == C_BAD_ALIGNMENT    ? 48
                  : c == C_ZERO_ALIGNMENT ? 0
                  : c == C_HUGE_ALIGNMENT ? 0x80000000u
                                          : 32);
    }

    bb_str(b, "flag");
    bb_u32(b, c == C_UNKNOWN_KV_TYPE ? 13 : TM_GGUF_TYPE_BOOL);
    bb_u8(b, c == C_BAD_BOOL ? 2 : 1);

    bb_str(b, c == C_DUP_KEY ? "flag" : "tokens");
    bb_u32(b, TM_GGUF_TYPE_ARRAY);
    bb_u32(b, c == C_UNKNOWN_ARR_TYPE ? 77 : TM_GGUF_TYPE_STRING);
    bb_u64(b, c == C_HUGE_ARRAY ? 1ull << 61 : 2);
    bb_str(b, "a");
    bb_str(b, "bc");

    bb_str(b, "nested");
    bb_u32(b, TM_GGUF_TYPE_ARRAY);
    if (c == C_DEPTH_BOMB) {
        for (int i = 0; i < 40; i++) {
            bb_u32(b, TM_GGUF_TYPE_ARRAY);
            bb_u64(b, 1);
        }
        bb_u32(b, TM_GGUF_TYPE_INT32);
        bb_u64(b, 0);
    } else { /* [[1, 2], [3]] */
        bb_u32(b, TM_GGUF_TYPE_ARRAY);
        bb_u64(b, 2);
        bb_u32(b, TM_GGUF_TYPE_INT32);
        bb_u64(b, 2);
        bb_u32(b, 1);
        bb_u32(b, 2);
        bb_u32(b, TM_GGUF_TYPE_INT32);
        bb_u64(b, 1);
        bb_u32(b, 3);
    }

    bb_str(b, c == C_EMPTY_KEY ? "" : "bools");
    bb_u32(b, TM_GGUF_TYPE_ARRAY);
    bb_u32(b, TM_GGUF_TYPE_BOOL);
    bb_u64(b, 3);
    bb_u8(b, 1);
    bb_u8(b, 0);
    bb_u8(b, c == C_BAD_BOOL_ARRAY ? 7 : 1);

    /* a: f32 [8, 2] at 0 (64 bytes) */
    bb_str(b, "a");
    uint32_t nd = c == C_NDIMS_0 ? 0 : c == C_NDIMS_5 ? 5 : 2;
    bb_u32(b, nd);
    uint64_t ne_a[5] = {8, 2, 1, 1, 1};
    if (c == C_SHAPE_OVERFLOW)
        ne_a[0] = ne_a[1] = 1ull << 40;
    if (c == C_NE_TOO_BIG)
        ne_a[1] = 1ull << 63;
    for (uint32_t d = 0; d < nd; d++)
        bb_u64(b, ne_a[d]);
    bb_u32(b, TM_DTYPE_F32);
    bb_u64(b, 0);

    /* b: q8_0 [32] at 64 (34 bytes) */
    bb_str(b, "b");
    bb_u32(b, 1);
    bb_u64(b, c == C_NOT_BLOCK_MULTIPLE ? 33 : 32);
    bb_u32(b, c == C_UNKNOWN_DTYPE ? 4 : TM_DTYPE_Q8_0);
    bb_u64(b, c == C_MISALIGNED ? 80 : c == C_OVERLAP ? 32 : 64);

    /* c: f16 [4] at 128 (8 bytes) */
    bb_str(b, c == C_DUP_TENSOR ? "a" : "c");
    bb_u32(b, 1);
    bb_u64(b, 4);
    bb_u32(b, TM_DTYPE_F16);
    bb_u64(b, c == C_PAST_END ? 4096 : 128);

    *header_end = b->n;
    while (b->n % 32 != 0)
        bb_u8(b, 0);
    for (int i = 0; i < HAND_DATA_BYTES; i++)
        bb_u8(b, (uint8_t)(i * 7 + 1));
}

/* Opens a private heap copy of exactly n bytes, so ASAN sees any over-read. */
static tm_status open_copy(const uint8_t *p, size_t n, tm_gguf **g) {
    uint8_t  *copy = malloc(n ? n : 1);
    tm_status st;
    if (copy == NULL)
        abort();
    memcpy(copy, p, n);
    st = tm_gguf_open_memory(copy, n, g);
    if (st == TM_OK) { /* reopen over p, which outlives the handle, so the copy can go */
        tm_gguf_close(*g);
        *g = NULL;
        st = tm_gguf_open_memory(p, n, g);
    }
    free(copy);
    return st;
}

TEST(hand_file_valid) {
    bb     b = {0};
    size_t header_end;
    build_hand(C_NONE, &b, &header_end);
    tm_gguf *g = NULL;
    ASSERT_OK(open_copy(b.p, b.n, &g));
    EXPECT_EQ_INT(tm_gguf_version(g), 3);
    EXPECT_EQ_INT(tm_gguf_alignment(g), 32);
    EXPECT_EQ_INT(tm_gguf_data_offset(g), (header_end + 31) / 32 * 32);
    EXPECT_EQ_INT(tm_gguf_n_kv(g), 6);
    EXPECT_EQ_INT(tm_gguf_n_tensors(g), 3);

    tm_strview s;
    EXPECT_OK(tm_gguf_get_str(g, "general.architecture", &s));
    EXPECT_TRUE(sv_is(s, "llama"));
    bool flag = false;
    EXPECT_OK(tm_gguf_get_bool(g, "flag", &flag));
    EXPECT_TRUE(flag);
    EXPECT_EQ_INT(tm_gguf_get_str(g, "flag", &s), TM_ERR_FORMAT);
    EXPECT_TRUE(has(tm_last_error(), "key 'flag' has type bool, expected string"));
    EXPECT_EQ_INT(tm_gguf_get_str(g, "absent", &s), TM_ERR_NOT_FOUND);
    EXPECT_TRUE(has(tm_last_error(), "absent"));

    int64_t k = tm_gguf_find_key(g, "tokens");
    ASSERT_TRUE(k >= 0);
    EXPECT_EQ_INT(tm_gguf_kv_type(g, k), TM_GGUF_TYPE_ARRAY);
    EXPECT_EQ_INT(tm_gguf_kv_arr_type(g, k), TM_GGUF_TYPE_STRING);
    EXPECT_EQ_INT(tm_gguf_kv_arr_n(g, k), 2);
    EXPECT_TRUE(sv_is(tm_gguf_kv_arr_str(g, k, 1), "bc"));

    k = tm_gguf_find_key(g, "nested");
    ASSERT_TRUE(k >= 0);
    EXPECT_EQ_INT(tm_gguf_kv_arr_type(g, k), TM_GGUF_TYPE_ARRAY);
    ASSERT_TRUE(tm_gguf_kv_arr_n(g, k) == 2);
    int64_t s0 = tm_gguf_kv_arr_sub(g, k, 0), s1 = tm_gguf_kv_arr_sub(g, k, 1);
    EXPECT_TRUE(s0 < 0 && s1 < 0 && s0 != s1);
    EXPECT_EQ_INT(tm_gguf_kv_type(g, s0), TM_GGUF_TYPE_ARRAY);
    EXPECT_EQ_INT(tm_gguf_kv_arr_type(g, s0), TM_GGUF_TYPE_INT32);
    EXPECT_EQ_INT(tm_gguf_kv_arr_n(g, s0), 2);
    EXPECT_EQ_INT(tm_gguf_kv_arr_n(g, s1), 1);
    const uint8_t *d0 = tm_gguf_kv_arr_data(g, s0);
    EXPECT_EQ_INT(tm_load_u32_le(d0 + 4), 2);
    EXPECT_EQ_INT(tm_load_u32_le(tm_gguf_kv_arr_data(g, s1)), 3);

    const tm_gguf_tensor *t = tm_gguf_find_tensor(g, "b");
    ASSERT_TRUE(t != NULL);
    EXPECT_EQ_INT(t->dtype, TM_DTYPE_Q8_0);
    EXPECT_EQ_INT(t->n_dims, 1);
    EXPECT_EQ_INT(t->ne[0], 32);
    EXPECT_EQ_INT(t->ne[1], 1);
    EXPECT_EQ_INT(t->n_bytes, 34);
    EXPECT_EQ_INT(t->offset, 64);
    EXPECT_EQ_INT(*(const uint8_t *)t->data, (uint8_t)(64 * 7 + 1));
    EXPECT_TRUE(tm_gguf_find_tensor(g, "zz") == NULL);
    EXPECT_EQ_INT(tm_gguf_find_key(g, "zz"), -1);
    tm_gguf_close(g);
    free(b.p);
}

TEST(corrupt_table) {
    bool seen[C_COUNT] = {false};
    for (size_t i = 0; i < sizeof corrupt_cases / sizeof corrupt_cases[0]; i++) {
        bb     b = {0};
        size_t header_end;
        build_hand(corrupt_cases[i].c, &b, &header_end);
        seen[corrupt_cases[i].c] = true;
        tm_gguf  *g = NULL;
        tm_status st = open_copy(b.p, b.n, &g);
        if (st != TM_ERR_FORMAT || g != NULL || !has(tm_last_error(), corrupt_cases[i].expect) ||
            !has(tm_last_error(), "<memory>: "))
            TM__FAIL_AT("case %zu: status %s, message \"%s\", expected \"%s\"", i,
                        tm_status_str(st), tm_last_error(), corrupt_cases[i].expect);
        tm_gguf_close(g);
        free(b.p);
    }
    for (int c = 1; c < C_COUNT; c++)
        if (!seen[c])
            TM__FAIL_AT("corruption %d has no table row", c);
}

TEST(truncated_everywhere) {
    bb     b = {0};
    size_t header_end;
    build_hand(C_NONE, &b, &header_end);
    for (size_t n = 0; n < b.n; n++) {
        tm_gguf  *g = NULL;
        tm_status st = open_copy(b.p, n, &g);
        /* A cut header reads as truncated, or as a count the bytes left cannot hold. */
        const char *want = n == 0 ? "file is empty" : n < header_end ? "truncated" : "past end";
        bool        ok =
            has(tm_last_error(), want) || (n < header_end && has(tm_last_error(), "bytes left"));
        if (st != TM_ERR_FORMAT || !ok) {
            TM__FAIL_AT("cut at %zu: %s \"%s\", expected \"%s\"", n, tm_status_str(st),
                        tm_last_error(), want);
            tm_gguf_close(g);
            break;
        }
    }
    free(b.p);
}

TEST(error_names_the_file) {
    bb     b = {0};
    size_t header_end;
    char   path[256];
    build_hand(C_DUP_TENSOR, &b, &header_end);
    snprintf(path, sizeof path, "/tmp/tm_test_gguf_%d.gguf", (int)getpid());
    FILE *f = fopen(path, "wb");
    ASSERT_TRUE(f != NULL);
    fwrite(b.p, 1, b.n, f);
    fclose(f);
    tm_gguf *g = NULL;
    EXPECT_EQ_INT(tm_gguf_open(path, &g), TM_ERR_FORMAT);
    EXPECT_TRUE(has(tm_last_error(), path) && has(tm_last_error(), "duplicate tensor name"));
    EXPECT_TRUE(g == NULL);
    remove(path);
    EXPECT_EQ_INT(tm_gguf_open(path, &g), TM_ERR_IO);
    free(b.p);
}

/* ---- the writer sample: every value type, nested arrays, several dtypes ------------ */

/* Nested arrays enter the writer through copy_kv from this handcrafted source:
 * nested.int = [[1, 2], [3]] (int32), nested.str = [["x", "yz"], []] (string),
 * nested.deep = [[[7, 8]]] (uint16). */
static void build_nested_src(bb *b) {
    bb_u32(b, TM_GGUF_MAGIC);
    bb_u32(b, 3);
    bb_u64(b, 0);
    bb_u64(b, 3);
    bb_str(b, "nested.int");
    bb_u32(b, TM_GGUF_TYPE_ARRAY);
    bb_u32(b, TM_GGUF_TYPE_ARRAY);
    bb_u64(b, 2);
    bb_u32(b, TM_GGUF_TYPE_INT32);
    bb_u64(b, 2);
    bb_u32(b, 1);
    bb_u32(b, 2);
    bb_u32(b, TM_GGUF_TYPE_INT32);
    bb_u64(b, 1);
    bb_u32(b, 3);
    bb_str(b, "nested.str");
    bb_u32(b, TM_GGUF_TYPE_ARRAY);
    bb_u32(b, TM_GGUF_TYPE_ARRAY);
    bb_u64(b, 2);
    bb_u32(b, TM_GGUF_TYPE_STRING);
    bb_u64(b, 2);
    bb_str(b, "x");
    bb_str(b, "yz");
    bb_u32(b, TM_GGUF_TYPE_STRING);
    bb_u64(b, 0);
    bb_str(b, "nested.deep");
    bb_u32(b, TM_GGUF_TYPE_ARRAY);
    bb_u32(b, TM_GGUF_TYPE_ARRAY);
    bb_u64(b, 1);
    bb_u32(b, TM_GGUF_TYPE_ARRAY);
    bb_u64(b, 1);
    bb_u32(b, TM_GGUF_TYPE_UINT16);
    bb_u64(b, 2);
    uint8_t v[2];
    tm_store_u16_le(v, 7);
    bb_put(b, v, 2);
    tm_store_u16_le(v, 8);
    bb_put(b, v, 2);
}

#define SAMPLE_Q8_BYTES (2 * 2 * 34) /* q8_0 [64, 2] */

typedef struct sample_data {
    float    f32[12]; /* t.f32 [4, 3] */
    uint16_t f16[8];  /* t.f16 [8] */
    uint8_t  q8[SAMPLE_Q8_BYTES];
    int32_t  i32[5]; /* t.i32 [5] */
    bb       nested;
} sample_data;

static tm_status make_sample(tm_gguf_writer *w, sample_data *sd) {
    for (int i = 0; i < 12; i++)
        sd->f32[i] = (float)i * 0.5f - 2.0f;
    for (int i = 0; i < 8; i++)
        sd->f16[i] = tm_f32_to_f16((float)i - 3.5f);
    for (int i = 0; i < SAMPLE_Q8_BYTES; i++)
        sd->q8[i] = (uint8_t)(i * 13 + 5);
    for (int i = 0; i < 5; i++)
        sd->i32[i] = -1000 * i + 7;

    TM_TRY(tm_gguf_writer_set_str(w, "general.architecture", "llama"));
    TM_TRY(tm_gguf_writer_set_u32(w, "general.alignment", 64));
    TM_TRY(tm_gguf_writer_set_u8(w, "v.u8", 200));
    TM_TRY(tm_gguf_writer_set_i8(w, "v.i8", -100));
    TM_TRY(tm_gguf_writer_set_u16(w, "v.u16", 60000));
    TM_TRY(tm_gguf_writer_set_i16(w, "v.i16", -30000));
    TM_TRY(tm_gguf_writer_set_u32(w, "v.u32", 4000000000u));
    TM_TRY(tm_gguf_writer_set_i32(w, "v.i32", -2000000000));
    TM_TRY(tm_gguf_writer_set_u64(w, "v.u64", 18000000000000000000ull));
    TM_TRY(tm_gguf_writer_set_i64(w, "v.i64", -9000000000000000000ll));
    TM_TRY(tm_gguf_writer_set_f32(w, "v.f32", 3.25f));
    TM_TRY(tm_gguf_writer_set_f64(w, "v.f64", -1.0e300));
    TM_TRY(tm_gguf_writer_set_bool(w, "v.true", true));
    TM_TRY(tm_gguf_writer_set_bool(w, "v.false", false));
    TM_TRY(tm_gguf_writer_set_str(w, "v.str", "hello, w\xc3\xb6rld"));
    TM_TRY(tm_gguf_writer_set_strn(w, "v.empty", "", 0));
    TM_TRY(tm_gguf_writer_set_str(w, "v.replaced", "first"));
    TM_TRY(tm_gguf_writer_set_i32(w, "v.replaced", 42)); /* replaces, keeps position */

    static const uint8_t  a_u8[] = {1, 2, 255};
    static const int8_t   a_i8[] = {-1, 5};
    static const uint16_t a_u16[] = {0, 65535};
    static const int16_t  a_i16[] = {-32768, 32767};
    static const uint32_t a_u32[] = {7, 4294967295u};
    static const int32_t  a_i32[] = {-1, 2, -3};
    static const uint64_t a_u64[] = {18446744073709551615ull};
    static const int64_t  a_i64[] = {-9223372036854775807ll - 1, 1};
    static const float    a_f32[] = {0.5f, -1.5f, 1e30f};
    static const double   a_f64[] = {3.141592653589793};
    static const bool     a_bool[] = {true, false, true};
    static const char    *a_str[] = {"a", "", "\xce\xb6"};
    TM_TRY(tm_gguf_writer_set_arr(w, "a.u8", TM_GGUF_TYPE_UINT8, a_u8, 3));
    TM_TRY(tm_gguf_writer_set_arr(w, "a.i8", TM_GGUF_TYPE_INT8, a_i8, 2));
    TM_TRY(tm_gguf_writer_set_arr(w, "a.u16", TM_GGUF_TYPE_UINT16, a_u16, 2));
    TM_TRY(tm_gguf_writer_set_arr(w, "a.i16", TM_GGUF_TYPE_INT16, a_i16, 2));
    TM_TRY(tm_gguf_writer_set_arr(w, "a.u32", TM_GGUF_TYPE_UINT32, a_u32, 2));
    TM_TRY(tm_gguf_writer_set_arr(w, "a.i32", TM_GGUF_TYPE_INT32, a_i32, 3));
    TM_TRY(tm_gguf_writer_set_arr(w, "a.u64", TM_GGUF_TYPE_UINT64, a_u64, 1));
    TM_TRY(tm_gguf_writer_set_arr(w, "a.i64", TM_GGUF_TYPE_INT64, a_i64, 2));
    TM_TRY(tm_gguf_writer_set_arr(w, "a.f32", TM_GGUF_TYPE_FLOAT32, a_f32, 3));
    TM_TRY(tm_gguf_writer_set_arr(w, "a.f64", TM_GGUF_TYPE_FLOAT64, a_f64, 1));
    TM_TRY(tm_gguf_writer_set_arr(w, "a.bool", TM_GGUF_TYPE_BOOL, a_bool, 3));
    TM_TRY(tm_gguf_writer_set_arr_str(w, "a.str", a_str, 3));
    TM_TRY(tm_gguf_writer_set_arr(w, "a.empty", TM_GGUF_TYPE_INT32, NULL, 0));

    build_nested_src(&sd->nested);
    tm_gguf *src = NULL;
    TM_TRY(tm_gguf_open_memory(sd->nested.p, sd->nested.n, &src));
    tm_status st = tm_gguf_writer_copy_kv(w, src);
    tm_gguf_close(src);
    TM_TRY(st);

    int64_t ne_f32[2] = {4, 3}, ne_f16[1] = {8}, ne_q8[2] = {64, 2}, ne_i32[1] = {5};
    TM_TRY(tm_gguf_writer_add_tensor(w, "t.f32", TM_DTYPE_F32, 2, ne_f32, sd->f32, sizeof sd->f32));
    TM_TRY(tm_gguf_writer_add_tensor(w, "t.f16", TM_DTYPE_F16, 1, ne_f16, sd->f16, sizeof sd->f16));
    TM_TRY(tm_gguf_writer_add_tensor(w, "t.q8_0", TM_DTYPE_Q8_0, 2, ne_q8, sd->q8, sizeof sd->q8));
    TM_TRY(tm_gguf_writer_add_tensor(w, "t.i32", TM_DTYPE_I32, 1, ne_i32, sd->i32, sizeof sd->i32));
    return TM_OK;
}

static void check_sample(const tm_gguf *g, const sample_data *sd) {
    int64_t i;
    double  d;
    EXPECT_EQ_INT(tm_gguf_version(g), 3);
    EXPECT_EQ_INT(tm_gguf_alignment(g), 64);
    EXPECT_EQ_INT(tm_gguf_data_offset(g) % 64, 0);
    EXPECT_EQ_INT(tm_gguf_n_kv(g), 2 + 15 + 13 + 3);
    EXPECT_EQ_INT(tm_gguf_kv_u8(g, tm_gguf_find_key(g, "v.u8")), 200);
    EXPECT_EQ_INT(tm_gguf_kv_i8(g, tm_gguf_find_key(g, "v.i8")), -100);
    EXPECT_EQ_INT(tm_gguf_kv_u16(g, tm_gguf_find_key(g, "v.u16")), 60000);
    EXPECT_EQ_INT(tm_gguf_kv_i16(g, tm_gguf_find_key(g, "v.i16")), -30000);
    EXPECT_EQ_INT(tm_gguf_kv_u32(g, tm_gguf_find_key(g, "v.u32")), 4000000000u);
    EXPECT_EQ_INT(tm_gguf_kv_i32(g, tm_gguf_find_key(g, "v.i32")), -2000000000);
    EXPECT_TRUE(tm_gguf_kv_u64(g, tm_gguf_find_key(g, "v.u64")) == 18000000000000000000ull);
    EXPECT_EQ_INT(tm_gguf_kv_i64(g, tm_gguf_find_key(g, "v.i64")), -9000000000000000000ll);
    EXPECT_TRUE(tm_gguf_kv_f32(g, tm_gguf_find_key(g, "v.f32")) == 3.25f);
    EXPECT_TRUE(tm_gguf_kv_f64(g, tm_gguf_find_key(g, "v.f64")) == -1.0e300);
    EXPECT_TRUE(tm_gguf_kv_bool(g, tm_gguf_find_key(g, "v.true")));
    EXPECT_TRUE(!tm_gguf_kv_bool(g, tm_gguf_find_key(g, "v.false")));
    EXPECT_TRUE(sv_is(tm_gguf_kv_str(g, tm_gguf_find_key(g, "v.str")), "hello, w\xc3\xb6rld"));
    EXPECT_TRUE(sv_is(tm_gguf_kv_str(g, tm_gguf_find_key(g, "v.empty")), ""));
    ASSERT_TRUE(tm_gguf_find_key(g, "v.replaced") == 16); /* replacing kept its position */
    EXPECT_EQ_INT(tm_gguf_kv_type(g, 16), TM_GGUF_TYPE_INT32);
    EXPECT_EQ_INT(tm_gguf_kv_i32(g, 16), 42);

    EXPECT_OK(tm_gguf_get_int(g, "v.i16", &i));
    EXPECT_EQ_INT(i, -30000);
    EXPECT_OK(tm_gguf_get_int(g, "v.true", &i));
    EXPECT_EQ_INT(i, 1);
    EXPECT_EQ_INT(tm_gguf_get_int(g, "v.u64", &i), TM_ERR_FORMAT); /* > INT64_MAX */
    EXPECT_OK(tm_gguf_get_float(g, "v.f32", &d));
    EXPECT_NEAR(d, 3.25, 0);
    EXPECT_OK(tm_gguf_get_float(g, "v.u32", &d));
    EXPECT_NEAR(d, 4e9, 0);

    int64_t k = tm_gguf_find_key(g, "a.i16");
    ASSERT_TRUE(k >= 0);
    EXPECT_EQ_INT(tm_gguf_kv_arr_type(g, k), TM_GGUF_TYPE_INT16);
    EXPECT_EQ_INT((int16_t)tm_load_u16_le(tm_gguf_kv_arr_data(g, k)), -32768);
    k = tm_gguf_find_key(g, "a.i64");
    EXPECT_TRUE((int64_t)tm_load_u64_le(tm_gguf_kv_arr_data(g, k)) == INT64_MIN);
    k = tm_gguf_find_key(g, "a.f32");
    EXPECT_TRUE(tm_load_f32_le((const uint8_t *)tm_gguf_kv_arr_data(g, k) + 8) == 1e30f);
    k = tm_gguf_find_key(g, "a.f64");
    EXPECT_TRUE(tm_load_f64_le(tm_gguf_kv_arr_data(g, k)) == 3.141592653589793);
    k = tm_gguf_find_key(g, "a.bool");
    EXPECT_EQ_INT(((const uint8_t *)tm_gguf_kv_arr_data(g, k))[2], 1);
    k = tm_gguf_find_key(g, "a.str");
    EXPECT_EQ_INT(tm_gguf_kv_arr_n(g, k), 3);
    EXPECT_TRUE(sv_is(tm_gguf_kv_arr_str(g, k, 1), ""));
    EXPECT_TRUE(sv_is(tm_gguf_kv_arr_str(g, k, 2), "\xce\xb6"));
    k = tm_gguf_find_key(g, "a.empty");
    EXPECT_EQ_INT(tm_gguf_kv_arr_n(g, k), 0);

    k = tm_gguf_find_key(g, "nested.str");
    ASSERT_TRUE(k >= 0 && tm_gguf_kv_arr_n(g, k) == 2);
    int64_t s0 = tm_gguf_kv_arr_sub(g, k, 0);
    EXPECT_TRUE(sv_is(tm_gguf_kv_arr_str(g, s0, 1), "yz"));
    EXPECT_EQ_INT(tm_gguf_kv_arr_n(g, tm_gguf_kv_arr_sub(g, k, 1)), 0);
    k = tm_gguf_find_key(g, "nested.deep");
    ASSERT_TRUE(k >= 0);
    int64_t inner = tm_gguf_kv_arr_sub(g, tm_gguf_kv_arr_sub(g, k, 0), 0);
    EXPECT_EQ_INT(tm_gguf_kv_arr_type(g, inner), TM_GGUF_TYPE_UINT16);
    EXPECT_EQ_INT(tm_load_u16_le((const uint8_t *)tm_gguf_kv_arr_data(g, inner) + 2), 8);

    ASSERT_TRUE(tm_gguf_n_tensors(g) == 4);
    const tm_gguf_tensor *t = tm_gguf_find_tensor(g, "t.q8_0");
    ASSERT_TRUE(t != NULL);
    EXPECT_EQ_INT(t->ne[0], 64);
    EXPECT_EQ_INT(t->ne[1], 2);
    EXPECT_EQ_INT(t->n_bytes, SAMPLE_Q8_BYTES);
    EXPECT_TRUE(memcmp(t->data, sd->q8, SAMPLE_Q8_BYTES) == 0);
    t = tm_gguf_find_tensor(g, "t.f32");
    ASSERT_TRUE(t != NULL);
    EXPECT_EQ_INT(t->offset, 0);
    EXPECT_TRUE(memcmp(t->data, sd->f32, sizeof sd->f32) == 0);
    for (int64_t j = 0; j < tm_gguf_n_tensors(g); j++)
        EXPECT_EQ_INT(tm_gguf_tensor_at(g, j)->offset % 64, 0);
    t = tm_gguf_find_tensor(g, "t.i32");
    ASSERT_TRUE(t != NULL);
    EXPECT_TRUE(memcmp(t->data, sd->i32, sizeof sd->i32) == 0);
}

TEST(round_trip_memory_and_file) {
    tm_gguf_writer *w = NULL;
    sample_data     sd = {0};
    ASSERT_OK(tm_gguf_writer_init(&w));
    EXPECT_OK(make_sample(w, &sd));
    uint8_t *buf = NULL;
    size_t   n = 0;
    EXPECT_OK(tm_gguf_writer_write_memory(w, &buf, &n));
    tm_gguf *g = NULL;
    EXPECT_OK(tm_gguf_open_memory(buf, n, &g));
    if (g != NULL)
        check_sample(g, &sd);

    /* copy_kv from the result, same tensors: byte-identical output. */
    tm_gguf_writer *w2 = NULL;
    EXPECT_OK(tm_gguf_writer_init(&w2));
    if (g != NULL) {
        EXPECT_OK(tm_gguf_writer_copy_kv(w2, g));
        for (int64_t j = 0; j < tm_gguf_n_tensors(g); j++) {
            const tm_gguf_tensor *t = tm_gguf_tensor_at(g, j);
            char                  name[64];
            snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
            EXPECT_OK(tm_gguf_writer_add_tensor(w2, name, t->dtype, t->n_dims, t->ne, t->data,
                                                t->n_bytes));
        }
        uint8_t *buf2 = NULL;
        size_t   n2 = 0;
        EXPECT_OK(tm_gguf_writer_write_memory(w2, &buf2, &n2));
        EXPECT_TRUE(n2 == n && buf2 != NULL && memcmp(buf, buf2, n) == 0);
        tm_free(buf2);
    }
    tm_gguf_writer_free(w2);
    tm_gguf_close(g);

    char path[256];
    snprintf(path, sizeof path, "/tmp/tm_test_gguf_rt_%d.gguf", (int)getpid());
    EXPECT_OK(tm_gguf_writer_write(w, path));
    g = NULL;
    EXPECT_OK(tm_gguf_open(path, &g));
    if (g != NULL) {
        check_sample(g, &sd);
        EXPECT_EQ_INT(tm_gguf_file_size(g), n);
    }
    tm_gguf_close(g);
    remove(path);
    tm_free(buf);
    tm_gguf_writer_free(w);
    free(sd.nested.p);
}

TEST(writer_rejects_bad_input) {
    tm_gguf_writer *w = NULL;
    ASSERT_OK(tm_gguf_writer_init(&w));
    float   x[4] = {0};
    int64_t ne[2] = {4, 1}, bad[1] = {33};
    EXPECT_EQ_INT(tm_gguf_writer_set_u32(w, "", 1), TM_ERR_INVALID);
    EXPECT_EQ_INT(tm_gguf_writer_set_arr(w, "k", TM_GGUF_TYPE_STRING, x, 1), TM_ERR_INVALID);
    EXPECT_OK(tm_gguf_writer_add_tensor(w, "x", TM_DTYPE_F32, 2, ne, x, sizeof x));
    EXPECT_EQ_INT(tm_gguf_writer_add_tensor(w, "x", TM_DTYPE_F32, 2, ne, x, sizeof x),
                  TM_ERR_INVALID);
    EXPECT_TRUE(has(tm_last_error(), "duplicate tensor name 'x'"));
    EXPECT_EQ_INT(tm_gguf_writer_add_tensor(w, "y", TM_DTYPE_F32, 2, ne, x, 12), TM_ERR_INVALID);
    EXPECT_EQ_INT(tm_gguf_writer_add_tensor(w, "y", TM_DTYPE_F32, 0, ne, x, 16), TM_ERR_INVALID);
    EXPECT_EQ_INT(tm_gguf_writer_add_tensor(w, "y", TM_DTYPE_Q8_0, 1, bad, x, 16), TM_ERR_INVALID);
    EXPECT_EQ_INT(tm_gguf_writer_add_tensor(w, "y", (tm_dtype)4, 1, ne, x, 16), TM_ERR_INVALID);
    EXPECT_OK(tm_gguf_writer_set_u32(w, "general.alignment", 48));
    uint8_t *buf = NULL;
    size_t   n = 0;
    EXPECT_EQ_INT(tm_gguf_writer_write_memory(w, &buf, &n), TM_ERR_INVALID);
    EXPECT_TRUE(has(tm_last_error(), "general.alignment"));
    EXPECT_OK(tm_gguf_writer_set_u32(w, "general.alignment", 8));
    EXPECT_OK(tm_gguf_writer_write_memory(w, &buf, &n));
    tm_gguf *g = NULL;
    EXPECT_OK(tm_gguf_open_memory(buf, n, &g));
    if (g != NULL)
        EXPECT_EQ_INT(tm_gguf_data_offset(g) % 8, 0);
    tm_gguf_close(g);
    tm_free(buf);
    EXPECT_EQ_INT(tm_gguf_writer_write(w, "/nonexistent-dir/x.gguf"), TM_ERR_IO);
    tm_gguf_writer_free(w);
    tm_gguf_writer_free(NULL);
    tm_gguf_close(NULL);
}

TEST(empty_and_zero_size) {
    /* No kvs, no tensors; then a zero-size tensor. Both valid. */
    tm_gguf_writer *w = NULL;
    ASSERT_OK(tm_gguf_writer_init(&w));
    uint8_t *buf = NULL;
    size_t   n = 0;
    EXPECT_OK(tm_gguf_writer_write_memory(w, &buf, &n));
    tm_gguf *g = NULL;
    EXPECT_OK(tm_gguf_open_memory(buf, n, &g));
    EXPECT_TRUE(g != NULL && tm_gguf_n_kv(g) == 0 && tm_gguf_n_tensors(g) == 0);
    tm_gguf_close(g);
    tm_free(buf);
    int64_t ne[2] = {0, 5};
    EXPECT_OK(tm_gguf_writer_add_tensor(w, "z", TM_DTYPE_Q4_0, 2, ne, NULL, 0));
    EXPECT_OK(tm_gguf_writer_write_memory(w, &buf, &n));
    g = NULL;
    EXPECT_OK(tm_gguf_open_memory(buf, n, &g));
    if (g != NULL) {
        const tm_gguf_tensor *t = tm_gguf_find_tensor(g, "z");
        EXPECT_TRUE(t != NULL && t->n_bytes == 0 && t->ne[1] == 5);
    }
    tm_gguf_close(g);
    tm_free(buf);
    tm_gguf_writer_free(w);
}

TEST(version_2_reads) {
    bb     b = {0};
    size_t header_end;
    build_hand(C_NONE, &b, &header_end);
    tm_store_u32_le(b.p + 4, 2);
    tm_gguf *g = NULL;
    EXPECT_OK(tm_gguf_open_memory(b.p, b.n, &g));
    EXPECT_TRUE(g != NULL && tm_gguf_version(g) == 2);
    tm_gguf_close(g);
    free(b.p);
}

TEST(shared_tiny_llama) {
    const char *dir = tm_test_shared_data();
    char        path[4200];
    if (dir == NULL) {
        printf("SKIPPED: shared data folder absent\n");
        return;
    }
    snprintf(path, sizeof path, "%s/llama-2-tiny-random.gguf", dir);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        printf("SKIPPED: %s absent\n", path);
        return;
    }
    fclose(f);
    tm_gguf *g = NULL;
    ASSERT_OK(tm_gguf_open(path, &g));
    tm_strview s;
    EXPECT_OK(tm_gguf_get_str(g, "general.architecture", &s));
    EXPECT_TRUE(sv_is(s, "llama"));
    EXPECT_EQ_INT(tm_gguf_n_tensors(g), 12);
    int64_t k = tm_gguf_find_key(g, "tokenizer.ggml.tokens");
    ASSERT_TRUE(k >= 0);
    EXPECT_EQ_INT(tm_gguf_kv_arr_type(g, k), TM_GGUF_TYPE_STRING);
    EXPECT_EQ_INT(tm_gguf_kv_arr_n(g, k), 32000);
    int64_t v;
    EXPECT_OK(tm_gguf_get_int(g, "llama.block_count", &v));
    EXPECT_TRUE(v >= 1);
    const tm_gguf_tensor *t = tm_gguf_find_tensor(g, "token_embd.weight");
    ASSERT_TRUE(t != NULL);
    EXPECT_EQ_INT(t->dtype, TM_DTYPE_F16);
    EXPECT_EQ_INT(t->ne[0], 8);
    EXPECT_EQ_INT(t->ne[1], 32000);
    EXPECT_EQ_INT(tm_gguf_data_offset(g) + t->offset, 724416);
    tm_gguf_close(g);
}

/* ---- --dump: canonical JSON for the python oracle ---------------------------------- */

static void json_str(FILE *o, const char *p, size_t n) {
    fputc('"', o);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '"' || c == '\\')
            fprintf(o, "\\%c", c);
        else if (c < 0x20)
            fprintf(o, "\\u%04x", c);
        else
            fputc(c, o);
    }
    fputc('"', o);
}

static void json_double(FILE *o, double v, int digits) {
    if (v != v)
        fputs("\"nan\"", o);
    else if (v > 1.7976931348623157e308)
        fputs("\"inf\"", o);
    else if (v < -1.7976931348623157e308)
        fputs("\"-inf\"", o);
    else
        fprintf(o, "%.*g", digits, v);
}

/* One element of fixed type t at p. */
static void json_scalar(FILE *o, tm_gguf_type t, const uint8_t *p) {
    switch (t) {
    case TM_GGUF_TYPE_UINT8: fprintf(o, "%u", p[0]); break;
    case TM_GGUF_TYPE_INT8: fprintf(o, "%d", (int8_t)p[0]); break;
    case TM_GGUF_TYPE_BOOL: fputs(p[0] ? "true" : "false", o); break;
    case TM_GGUF_TYPE_UINT16: fprintf(o, "%u", tm_load_u16_le(p)); break;
    case TM_GGUF_TYPE_INT16: fprintf(o, "%d", (int16_t)tm_load_u16_le(p)); break;
    case TM_GGUF_TYPE_UINT32: fprintf(o, "%" PRIu32, tm_load_u32_le(p)); break;
    case TM_GGUF_TYPE_INT32: fprintf(o, "%" PRId32, (int32_t)tm_load_u32_le(p)); break;
    case TM_GGUF_TYPE_UINT64: fprintf(o, "%" PRIu64, tm_load_u64_le(p)); break;
    case TM_GGUF_TYPE_INT64: fprintf(o, "%" PRId64, (int64_t)tm_load_u64_le(p)); break;
    case TM_GGUF_TYPE_FLOAT32: json_double(o, tm_load_f32_le(p), 9); break;
    case TM_GGUF_TYPE_FLOAT64: json_double(o, tm_load_f64_le(p), 17); break;
    default: fputs("null", o); break;
    }
}

static size_t fixed_size(tm_gguf_type t) {
    switch (t) {
    case TM_GGUF_TYPE_UINT8:
    case TM_GGUF_TYPE_INT8:
    case TM_GGUF_TYPE_BOOL: return 1;
    case TM_GGUF_TYPE_UINT16:
    case TM_GGUF_TYPE_INT16: return 2;
    case TM_GGUF_TYPE_UINT32:
    case TM_GGUF_TYPE_INT32:
    case TM_GGUF_TYPE_FLOAT32: return 4;
    default: return 8;
    }
}

/* {"elem": type, "items": [...]} with nested arrays as the same objects. */
static void json_array(FILE *o, const tm_gguf *g, int64_t h) {
    tm_gguf_type et = tm_gguf_kv_arr_type(g, h);
    uint64_t     n = tm_gguf_kv_arr_n(g, h);
    fprintf(o, "{\"elem\": \"%s\", \"items\": [", tm_gguf_type_name(et));
    for (uint64_t j = 0; j < n; j++) {
        if (j)
            fputs(", ", o);
        if (et == TM_GGUF_TYPE_STRING) {
            tm_strview s = tm_gguf_kv_arr_str(g, h, j);
            json_str(o, s.ptr, s.len);
        } else if (et == TM_GGUF_TYPE_ARRAY) {
            json_array(o, g, tm_gguf_kv_arr_sub(g, h, j));
        } else {
            json_scalar(o, et, (const uint8_t *)tm_gguf_kv_arr_data(g, h) + j * fixed_size(et));
        }
    }
    fputs("]}", o);
}

static uint64_t fnv1a(const void *p, size_t n) {
    const uint8_t *b = p;
    uint64_t       h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static void dump_json(FILE *o, const tm_gguf *g) {
    fprintf(o, "{\"version\": %" PRIu32 ", \"alignment\": %zu, \"data_offset\": %zu,\n",
            tm_gguf_version(g), tm_gguf_alignment(g), tm_gguf_data_offset(g));
    fputs(" \"kv\": [\n", o);
    for (int64_t i = 0; i < tm_gguf_n_kv(g); i++) {
        tm_strview   k = tm_gguf_kv_key(g, i);
        tm_gguf_type t = tm_gguf_kv_type(g, i);
        fputs(i ? ",\n  {\"key\": " : "  {\"key\": ", o);
        json_str(o, k.ptr, k.len);
        fprintf(o, ", \"type\": \"%s\", \"value\": ", tm_gguf_type_name(t));
        if (t == TM_GGUF_TYPE_STRING) {
            tm_strview s = tm_gguf_kv_str(g, i);
            json_str(o, s.ptr, s.len);
        } else if (t == TM_GGUF_TYPE_ARRAY) {
            json_array(o, g, i);
        } else {
            uint8_t v[8];
            switch (t) { /* through the typed getters, re-encoded */
            case TM_GGUF_TYPE_UINT8: v[0] = tm_gguf_kv_u8(g, i); break;
            case TM_GGUF_TYPE_INT8: v[0] = (uint8_t)tm_gguf_kv_i8(g, i); break;
            case TM_GGUF_TYPE_BOOL: v[0] = tm_gguf_kv_bool(g, i); break;
            case TM_GGUF_TYPE_UINT16: tm_store_u16_le(v, tm_gguf_kv_u16(g, i)); break;
            case TM_GGUF_TYPE_INT16: tm_store_u16_le(v, (uint16_t)tm_gguf_kv_i16(g, i)); break;
            case TM_GGUF_TYPE_UINT32: tm_store_u32_le(v, tm_gguf_kv_u32(g, i)); break;
            case TM_GGUF_TYPE_INT32: tm_store_u32_le(v, (uint32_t)tm_gguf_kv_i32(g, i)); break;
            case TM_GGUF_TYPE_UINT64: tm_store_u64_le(v, tm_gguf_kv_u64(g, i)); break;
            case TM_GGUF_TYPE_INT64: tm_store_u64_le(v, (uint64_t)tm_gguf_kv_i64(g, i)); break;
            case TM_GGUF_TYPE_FLOAT32: {
                float f = tm_gguf_kv_f32(g, i);
                memcpy(v, &f, 4); /* little-endian host assumed by this test tool */
                break;
            }
            default: {
                double d = tm_gguf_kv_f64(g, i);
                memcpy(v, &d, 8);
                break;
            }
            }
            json_scalar(o, t, v);
        }
        fputc('}', o);
    }
    fputs("],\n \"tensors\": [\n", o);
    for (int64_t i = 0; i < tm_gguf_n_tensors(g); i++) {
        const tm_gguf_tensor *t = tm_gguf_tensor_at(g, i);
        fputs(i ? ",\n  {\"name\": " : "  {\"name\": ", o);
        json_str(o, t->name.ptr, t->name.len);
        fprintf(o, ", \"dtype\": %d, \"ne\": [", (int)t->dtype);
        for (int d = 0; d < t->n_dims; d++)
            fprintf(o, "%s%" PRId64, d ? ", " : "", t->ne[d]);
        fprintf(o, "], \"offset\": %" PRIu64 ", \"n_bytes\": %zu, \"fnv1a\": \"%016" PRIx64 "\"}",
                t->offset, t->n_bytes, fnv1a(t->data, t->n_bytes));
    }
    fputs("]}\n", o);
}

static int tool_main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--dump") == 0) {
        tm_gguf *g = NULL;
        if (tm_gguf_open(argv[2], &g) != TM_OK) {
            fprintf(stderr, "error: %s\n", tm_last_error());
            return 1;
        }
        dump_json(stdout, g);
        tm_gguf_close(g);
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--write-sample") == 0) {
        tm_gguf_writer *w = NULL;
        sample_data     sd = {0};
        tm_status       st = tm_gguf_writer_init(&w);
        if (st == TM_OK)
            st = make_sample(w, &sd);
        if (st == TM_OK)
            st = tm_gguf_writer_write(w, argv[2]);
        tm_gguf_writer_free(w);
        free(sd.nested.p);
        if (st != TM_OK)
            fprintf(stderr, "error: %s\n", tm_last_error());
        return st == TM_OK ? 0 : 1;
    }
    fprintf(stderr, "usage: %s [TEST | --dump FILE | --write-sample FILE]\n", argv[0]);
    return 2;
}

/* TM_TEST_MAIN, plus the tool modes. */
int main(int argc, char **argv) {
    if (argc > 1 && strncmp(argv[1], "--", 2) == 0)
        return tool_main(argc, argv);
    int passed = 0, failed = 0;
    for (int i = 0; i < tm_n_tests; i++) {
        if (argc > 1 && strcmp(argv[1], tm_tests[i].name) != 0)
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
