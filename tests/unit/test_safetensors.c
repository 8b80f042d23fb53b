/*
 * test_safetensors.c - the safetensors reader: valid images, one handcrafted
 * corruption per enum value, sharded folders (fixture from
 * scripts/gen_hf_fixtures.py), path escapes, the real all-MiniLM-L6-v2 folder
 * (TM_MINILM_DIR or the project .venv; SKIPPED when absent), OOM injection.
 *
 * `test_safetensors --dump PATH` prints every tensor of PATH, one per line:
 *     name <TAB> dtype <TAB> d0,d1,... <TAB> fnv1a64(raw bytes) <TAB> v0 v1 ...
 * for tests/py/test_safetensors_oracle.py. Otherwise it behaves like TM_TEST_MAIN.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "tm/tm_bytes.h"
#include "tm/tm_dtype.h"
#include "tm/tm_io.h"
#include "tm/tm_safetensors.h"

/* ---- building images ------------------------------------------------------------ */

typedef struct img {
    uint8_t *p;
    size_t   n;
} img;

/* 8-byte length + header + data_len bytes of data (value i & 0xff). hdr_len_override
 * replaces the length field when non-zero. */
static img make_img(const char *header, size_t data_len, uint64_t hdr_len_override) {
    size_t h = strlen(header);
    img    r = {malloc(8 + h + data_len + 1), 8 + h + data_len};
    tm_store_u64_le(r.p, hdr_len_override ? hdr_len_override : (uint64_t)h);
    memcpy(r.p + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        r.p[8 + h + i] = (uint8_t)i;
    return r;
}

static void write_file(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    TM_ASSERT(f != NULL);
    TM_ASSERT(fwrite(p, 1, n, f) == n);
    fclose(f);
}

static char        tmpdir_buf[256];
static const char *make_tmpdir(void) {
    snprintf(tmpdir_buf, sizeof tmpdir_buf, "/tmp/tm_st_XXXXXX");
    TM_ASSERT(mkdtemp(tmpdir_buf) != NULL);
    return tmpdir_buf;
}

static void rm_tree(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "  could not remove %s\n", dir);
}

/* ---- valid images ----------------------------------------------------------------- */

TEST(open_memory_basic) {
    const char *h = "{\"__metadata__\":{\"format\":\"pt\",\"k\":\"v\"},"
                    "\"w\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                    "\"ids\":{\"dtype\":\"I64\",\"shape\":[4],\"data_offsets\":[24,56]},"
                    "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[1,2,2],\"data_offsets\":[56,60]}}";
    img         m = make_img(h, 60, 0);
    tm_st_file *f = NULL;
    ASSERT_OK(tm_st_open_memory(m.p, m.n, &f));
    EXPECT_EQ_INT(tm_st_n_tensors(f), 3);
    EXPECT_EQ_INT(tm_st_n_shards(f), 1);
    EXPECT_EQ_STR(tm_st_shard_path(f, 0), "<memory>");
    /* Sorted by name. */
    EXPECT_EQ_STR(tm_st_tensor_at(f, 0)->name, "ids");
    EXPECT_EQ_STR(tm_st_tensor_at(f, 1)->name, "mask");
    EXPECT_EQ_STR(tm_st_tensor_at(f, 2)->name, "w");
    const tm_st_tensor *w = tm_st_find(f, "w");
    ASSERT_TRUE(w != NULL);
    EXPECT_EQ_INT(w->st_dtype, TM_ST_DTYPE_F32);
    EXPECT_EQ_INT(w->dtype, TM_DTYPE_F32);
    EXPECT_EQ_INT(w->n_dims, 2);
    EXPECT_EQ_INT(w->ne[0], 3);
    EXPECT_EQ_INT(w->ne[1], 2);
    EXPECT_EQ_INT(w->ne[2], 1);
    EXPECT_EQ_INT(w->shape[0], 2);
    EXPECT_EQ_INT(w->shape[1], 3);
    EXPECT_EQ_INT(w->n_elements, 6);
    EXPECT_EQ_INT(w->n_bytes, 24);
    EXPECT_TRUE(w->data == m.p + m.n - 60);
    const tm_st_tensor *mask = tm_st_find(f, "mask");
    ASSERT_TRUE(mask != NULL);
    EXPECT_EQ_INT(mask->dtype, TM_DTYPE_COUNT);
    EXPECT_EQ_INT(mask->ne[0], 2);
    EXPECT_EQ_INT(mask->ne[2], 1);
    EXPECT_EQ_INT(mask->offset, 56);
    EXPECT_TRUE(tm_st_find(f, "nope") == NULL);
    EXPECT_EQ_INT(tm_st_n_metadata(f), 2);
    EXPECT_EQ_STR(tm_st_metadata_get(f, "format"), "pt");
    EXPECT_EQ_STR(tm_st_metadata_get(f, "k"), "v");
    EXPECT_TRUE(tm_st_metadata_get(f, "x") == NULL);
    tm_st_close(f);
    free(m.p);
}

TEST(open_memory_edge_shapes) {
    /* Scalar, empty tensors (two at the same offset, one inside another's range),
     * rank 8, padding spaces after the JSON, a trailing hole in the data. */
    const char *h = "{\"s\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]},"
                    "\"e1\":{\"dtype\":\"F16\",\"shape\":[0,5],\"data_offsets\":[8,8]},"
                    "\"e2\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,8]},"
                    "\"e3\":{\"dtype\":\"I8\",\"shape\":[3,0],\"data_offsets\":[10,10]},"
                    "\"r8\":{\"dtype\":\"I8\",\"shape\":[1,1,1,1,1,1,2,3],"
                    "\"data_offsets\":[8,14]}}        ";
    img         m = make_img(h, 20, 0);
    tm_st_file *f = NULL;
    ASSERT_OK(tm_st_open_memory(m.p, m.n, &f));
    const tm_st_tensor *s = tm_st_find(f, "s");
    ASSERT_TRUE(s != NULL);
    EXPECT_EQ_INT(s->n_dims, 0);
    EXPECT_EQ_INT(s->n_elements, 1);
    EXPECT_EQ_INT(s->ne[0], 1);
    const tm_st_tensor *e1 = tm_st_find(f, "e1");
    ASSERT_TRUE(e1 != NULL);
    EXPECT_EQ_INT(e1->n_elements, 0);
    EXPECT_EQ_INT(e1->ne[0], 5);
    EXPECT_EQ_INT(e1->ne[1], 0);
    const tm_st_tensor *r8 = tm_st_find(f, "r8");
    ASSERT_TRUE(r8 != NULL);
    EXPECT_EQ_INT(r8->n_dims, 8);
    EXPECT_EQ_INT(r8->ne[0], 3);
    EXPECT_EQ_INT(r8->ne[1], 2);
    EXPECT_EQ_INT(r8->ne[7], 1);
    tm_st_close(f);
    free(m.p);

    /* Empty header object: no tensors is valid. */
    m = make_img("{}", 0, 0);
    ASSERT_OK(tm_st_open_memory(m.p, m.n, &f));
    EXPECT_EQ_INT(tm_st_n_tensors(f), 0);
    tm_st_close(f);
    free(m.p);
}

TEST(dtype_names) {
    static const char  *names[] = {"BOOL", "U8",  "I8",  "I16", "U16", "F16", "BF16",
                                   "I32",  "U32", "F32", "I64", "U64", "F64"};
    static const size_t sizes[] = {1, 1, 1, 2, 2, 2, 2, 4, 4, 4, 8, 8, 8};
    for (int i = 0; i < TM_ST_DTYPE_COUNT; i++) {
        tm_st_dtype d;
        EXPECT_OK(tm_st_dtype_from_name(names[i], &d));
        EXPECT_EQ_INT(d, i);
        EXPECT_EQ_STR(tm_st_dtype_name(d), names[i]);
        EXPECT_EQ_INT(tm_st_dtype_size(d), sizes[i]);
    }
    tm_st_dtype d;
    EXPECT_EQ_INT(tm_st_dtype_from_name("F8_E4M3", &d), TM_ERR_UNSUPPORTED);
    EXPECT_TRUE(strstr(tm_last_error(), "F8_E4M3") != NULL);
    EXPECT_EQ_INT(tm_st_dtype_from_name("F8_E5M2", &d), TM_ERR_UNSUPPORTED);
    EXPECT_EQ_INT(tm_st_dtype_from_name("f32", &d), TM_ERR_FORMAT);
    EXPECT_EQ_STR(tm_st_dtype_name(TM_ST_DTYPE_COUNT), "?");
    EXPECT_EQ_INT(tm_st_dtype_size((tm_st_dtype)99), 0);
}

/* ---- corruptions: one enum value each ------------------------------------------- */

typedef enum st_corruption {
    C_TOO_SMALL,
    C_HDR_LEN_PAST_END,
    C_HDR_LEN_HUGE,
    C_HDR_NOT_JSON,
    C_HDR_TRUNCATED_JSON,
    C_HDR_NOT_OBJECT,
    C_HDR_TRAILING_GARBAGE,
    C_ENTRY_NOT_OBJECT,
    C_DTYPE_MISSING,
    C_DTYPE_NOT_STRING,
    C_DTYPE_UNKNOWN,
    C_DTYPE_F8_E4M3,
    C_DTYPE_F8_E5M2,
    C_SHAPE_MISSING,
    C_SHAPE_NOT_ARRAY,
    C_SHAPE_NEGATIVE,
    C_SHAPE_FLOAT,
    C_SHAPE_RANK_9,
    C_SHAPE_ELEMS_OVERFLOW,
    C_SHAPE_BYTES_OVERFLOW,
    C_OFFSETS_MISSING,
    C_OFFSETS_ONE,
    C_OFFSETS_THREE,
    C_OFFSETS_NOT_INT,
    C_OFFSETS_NEGATIVE,
    C_OFFSETS_HUGE_INT,
    C_BEGIN_GT_END,
    C_END_PAST_DATA,
    C_SIZE_MISMATCH,
    C_OVERLAP,
    C_OVERLAP_CONTAINED,
    C_DUPLICATE_NAME,
    C_METADATA_NOT_OBJECT,
    C_METADATA_NOT_STRING,
    C_NUL_IN_NAME,
    C_COUNT
} st_corruption;

typedef struct st_case {
    st_corruption which;
    const char   *header;   /* NULL: special-cased below */
    size_t        data_len; /* bytes after the header */
    tm_status     want;
    const char   *want_msg; /* substring of tm_last_error() */
} st_case;

#define T1(dtype, shape, offs)                                                                     \
    "{\"t\":{\"dtype\":" dtype ",\"shape\":" shape ",\"data_offsets\":" offs "}}"

static const st_case st_cases[C_COUNT] = {
    {C_TOO_SMALL, NULL, 0, TM_ERR_FORMAT, "too small"},
    {C_HDR_LEN_PAST_END, NULL, 0, TM_ERR_FORMAT, "past the end"},
    {C_HDR_LEN_HUGE, NULL, 0, TM_ERR_FORMAT, "past the end"},
    {C_HDR_NOT_JSON, "hello world", 0, TM_ERR_FORMAT, "not valid JSON"},
    {C_HDR_TRUNCATED_JSON, "{\"t\":{\"dtype\":\"F32\"", 0, TM_ERR_FORMAT, "not valid JSON"},
    {C_HDR_NOT_OBJECT, "[1,2,3]", 0, TM_ERR_FORMAT, "not a JSON object"},
    {C_HDR_TRAILING_GARBAGE, "{} x", 0, TM_ERR_FORMAT, "not valid JSON"},
    {C_ENTRY_NOT_OBJECT, "{\"t\":[1]}", 0, TM_ERR_FORMAT, "not an object"},
    {C_DTYPE_MISSING, "{\"t\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, TM_ERR_FORMAT,
     "dtype missing"},
    {C_DTYPE_NOT_STRING, T1("7", "[1]", "[0,4]"), 4, TM_ERR_FORMAT, "dtype missing"},
    {C_DTYPE_UNKNOWN, T1("\"Q4_0\"", "[1]", "[0,4]"), 4, TM_ERR_FORMAT, "unknown"},
    {C_DTYPE_F8_E4M3, T1("\"F8_E4M3\"", "[4]", "[0,4]"), 4, TM_ERR_UNSUPPORTED, "F8_E4M3"},
    {C_DTYPE_F8_E5M2, T1("\"F8_E5M2\"", "[4]", "[0,4]"), 4, TM_ERR_UNSUPPORTED, "not supported"},
    {C_SHAPE_MISSING, "{\"t\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, TM_ERR_FORMAT,
     "shape missing"},
    {C_SHAPE_NOT_ARRAY, T1("\"F32\"", "4", "[0,4]"), 4, TM_ERR_FORMAT, "shape missing"},
    {C_SHAPE_NEGATIVE, T1("\"F32\"", "[-1]", "[0,4]"), 4, TM_ERR_FORMAT, "non-negative"},
    {C_SHAPE_FLOAT, T1("\"F32\"", "[1.0]", "[0,4]"), 4, TM_ERR_FORMAT, "non-negative"},
    {C_SHAPE_RANK_9, T1("\"I8\"", "[1,1,1,1,1,1,1,1,1]", "[0,1]"), 1, TM_ERR_FORMAT, "rank 9"},
    {C_SHAPE_ELEMS_OVERFLOW, T1("\"I8\"", "[4294967296,4294967296]", "[0,1]"), 1, TM_ERR_FORMAT,
     "overflow"},
    {C_SHAPE_BYTES_OVERFLOW, T1("\"F64\"", "[4611686018427387904]", "[0,1]"), 1, TM_ERR_FORMAT,
     "overflow"},
    {C_OFFSETS_MISSING, "{\"t\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, TM_ERR_FORMAT,
     "data_offsets"},
    {C_OFFSETS_ONE, T1("\"F32\"", "[1]", "[4]"), 4, TM_ERR_FORMAT, "data_offsets"},
    {C_OFFSETS_THREE, T1("\"F32\"", "[1]", "[0,4,8]"), 8, TM_ERR_FORMAT, "data_offsets"},
    {C_OFFSETS_NOT_INT, T1("\"F32\"", "[1]", "[0,\"4\"]"), 4, TM_ERR_FORMAT, "data_offsets"},
    {C_OFFSETS_NEGATIVE, T1("\"F32\"", "[1]", "[-4,0]"), 4, TM_ERR_FORMAT, "data_offsets"},
    {C_OFFSETS_HUGE_INT, T1("\"F32\"", "[1]", "[0,100000000000000000000000]"), 4, TM_ERR_FORMAT,
     "not valid JSON"},
    {C_BEGIN_GT_END, T1("\"F32\"", "[0]", "[4,0]"), 4, TM_ERR_FORMAT, "begin 4 > end 0"},
    {C_END_PAST_DATA, T1("\"F32\"", "[2]", "[0,8]"), 4, TM_ERR_FORMAT, "past the data section"},
    {C_SIZE_MISMATCH, T1("\"F32\"", "[2]", "[0,4]"), 8, TM_ERR_FORMAT, "need 8"},
    {C_OVERLAP,
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, TM_ERR_FORMAT, "overlap"},
    {C_OVERLAP_CONTAINED,
     "{\"a\":{\"dtype\":\"I8\",\"shape\":[12],\"data_offsets\":[0,12]},"
     "\"b\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[11,12]}}",
     12, TM_ERR_FORMAT, "overlap"},
    {C_DUPLICATE_NAME,
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
     8, TM_ERR_FORMAT, "duplicate"},
    {C_METADATA_NOT_OBJECT, "{\"__metadata__\":[\"x\"]}", 0, TM_ERR_FORMAT,
     "__metadata__ is not an object"},
    {C_METADATA_NOT_STRING, "{\"__metadata__\":{\"n\":1}}", 0, TM_ERR_FORMAT, "not a string"},
    {C_NUL_IN_NAME, "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     TM_ERR_FORMAT, "not valid JSON"},
};

TEST(corruptions_table) {
    for (int i = 0; i < C_COUNT; i++) {
        const st_case *c = &st_cases[i];
        EXPECT_EQ_INT(c->which, i); /* the table stays in enum order */
        img m;
        switch (c->which) {
        case C_TOO_SMALL:
            m = (img){malloc(5), 5};
            memset(m.p, 0, 5);
            break;
        case C_HDR_LEN_PAST_END: m = make_img("{}", 0, 3); break;
        case C_HDR_LEN_HUGE: m = make_img("{}", 0, UINT64_MAX); break;
        default: m = make_img(c->header, c->data_len, 0); break;
        }
        tm_clear_error();
        tm_st_file *f = (tm_st_file *)&m; /* must be reset to NULL on failure */
        tm_status   st = tm_st_open_memory(m.p, m.n, &f);
        if (st != c->want || f != NULL || strstr(tm_last_error(), c->want_msg) == NULL)
            TM__FAIL_AT("case %d: got %s \"%s\", want %s containing \"%s\"", i, tm_status_str(st),
                        tm_last_error(), tm_status_str(c->want), c->want_msg);
        tm_st_close(f == (tm_st_file *)&m ? NULL : f);
        free(m.p);
    }
}

/* Every truncation of a valid image fails cleanly (or still parses when the cut only
 * removes trailing data bytes, which a shorter data section could not: it must fail). */
TEST(truncations) {
    const char *h = "{\"__metadata__\":{\"format\":\"pt\"},"
                    "\"w\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,6]}}";
    img         m = make_img(h, 6, 0);
    for (size_t n = 0; n < m.n; n++) {
        uint8_t *cut = malloc(n ? n : 1);
        memcpy(cut, m.p, n);
        tm_st_file *f = NULL;
        tm_status   st = tm_st_open_memory(cut, n, &f);
        if (st != TM_ERR_FORMAT || f != NULL)
            TM__FAIL_AT("truncated to %zu: %s", n, tm_status_str(st));
        tm_st_close(f);
        free(cut);
    }
    tm_st_file *f = NULL;
    EXPECT_OK(tm_st_open_memory(m.p, m.n, &f));
    tm_st_close(f);
    free(m.p);
}

/* ---- files and folders --------------------------------------------------------------- */

static void write_img(const char *dir, const char *name, const char *header, size_t data_len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    img m = make_img(header, data_len, 0);
    write_file(path, m.p, m.n);
    free(m.p);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    write_file(path, text, strlen(text));
}

TEST(open_file_and_folder) {
    const char *dir = make_tmpdir();
    write_img(dir, "model.safetensors",
              "{\"x\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8);
    char path[512];
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    tm_st_file *f = NULL;
    EXPECT_OK(tm_st_open(path, &f));
    if (f != NULL) {
        const tm_st_tensor *x = tm_st_find(f, "x");
        EXPECT_TRUE(x != NULL && tm_load_u32_le(x->data) == 0x03020100u);
        EXPECT_EQ_STR(tm_st_shard_path(f, 0), path);
    }
    tm_st_close(f);
    f = NULL;
    EXPECT_OK(tm_st_open(dir, &f)); /* folder without an index: model.safetensors */
    EXPECT_TRUE(f != NULL && tm_st_n_tensors(f) == 1);
    tm_st_close(f);

    f = (tm_st_file *)path;
    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    EXPECT_EQ_INT(tm_st_open(path, &f), TM_ERR_IO);
    EXPECT_TRUE(f == NULL);
    EXPECT_TRUE(strstr(tm_last_error(), "missing.safetensors") != NULL);
    rm_tree(dir);

    dir = make_tmpdir();
    EXPECT_EQ_INT(tm_st_open(dir, &f), TM_ERR_NOT_FOUND);
    EXPECT_TRUE(strstr(tm_last_error(), "model.safetensors") != NULL);
    write_text(dir, "model.safetensors", ""); /* empty file: too small */
    EXPECT_EQ_INT(tm_st_open(dir, &f), TM_ERR_FORMAT);
    rm_tree(dir);
}

static const char *const shard_a =
    "{\"__metadata__\":{\"format\":\"pt\",\"who\":\"a\"},"
    "\"a.w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
static const char *const shard_b =
    "{\"__metadata__\":{\"format\":\"np\",\"extra\":\"b\"},"
    "\"b.w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}";

static tm_status open_index_case(const char *index_json, const char *b_header, tm_st_file **out) {
    const char *dir = make_tmpdir();
    write_img(dir, "a.safetensors", shard_a, 8);
    write_img(dir, "b.safetensors", b_header, 8);
    write_text(dir, "model.safetensors.index.json", index_json);
    tm_status st = tm_st_open(dir, out);
    rm_tree(dir);
    return st;
}

TEST(sharded_handcrafted) {
    tm_st_file *f = NULL;
    ASSERT_OK(open_index_case("{\"metadata\":{},\"weight_map\":{\"a.w\":\"a.safetensors\","
                              "\"b.w\":\"b.safetensors\"}}",
                              shard_b, &f));
    EXPECT_EQ_INT(tm_st_n_shards(f), 2);
    EXPECT_EQ_INT(tm_st_n_tensors(f), 2);
    const tm_st_tensor *b = tm_st_find(f, "b.w");
    ASSERT_TRUE(b != NULL);
    EXPECT_EQ_INT(b->shard, 1);
    EXPECT_TRUE(strstr(tm_st_shard_path(f, b->shard), "/b.safetensors") != NULL);
    /* First shard wins on shared metadata keys; others are merged in. */
    EXPECT_EQ_STR(tm_st_metadata_get(f, "format"), "pt");
    EXPECT_EQ_STR(tm_st_metadata_get(f, "extra"), "b");
    EXPECT_EQ_INT(tm_st_n_metadata(f), 3);
    tm_st_close(f);

    struct {
        const char *index;
        const char *b_header;
        tm_status   want;
        const char *msg;
    } bad[] = {
        {"{\"weight_map\":{\"a.w\":\"../a.safetensors\"}}", shard_b, TM_ERR_FORMAT,
         "not a plain file name"},
        {"{\"weight_map\":{\"a.w\":\"/etc/passwd\"}}", shard_b, TM_ERR_FORMAT, "plain file"},
        {"{\"weight_map\":{\"a.w\":\"..\"}}", shard_b, TM_ERR_FORMAT, "plain file"},
        {"{\"weight_map\":{\"a.w\":\"sub\\\\a.safetensors\"}}", shard_b, TM_ERR_FORMAT,
         "plain file"},
        {"{\"weight_map\":{\"a.w\":\"\"}}", shard_b, TM_ERR_FORMAT, "plain file"},
        {"{\"weight_map\":{\"a.w\":\"a.safetensors\",\"c.w\":\"c.safetensors\"}}", shard_b,
         TM_ERR_NOT_FOUND, "shard c.safetensors is missing"},
        {"{\"weight_map\":{\"a.w\":\"a.safetensors\",\"x\":\"b.safetensors\"}}", shard_b,
         TM_ERR_FORMAT, "\"x\" is not in shard b.safetensors"},
        {"{\"weight_map\":{\"a.w\":\"b.safetensors\",\"b.w\":\"a.safetensors\"}}", shard_b,
         TM_ERR_FORMAT, "is listed in"},
        {"{\"weight_map\":{\"a.w\":\"a.safetensors\",\"b.w\":\"b.safetensors\"}}",
         "{\"a.w\":{\"dtype\":\"F16\",\"shape\":[2,2],\"data_offsets\":[0,8]}}", TM_ERR_FORMAT,
         "is in both"},
        {"{\"weight_map\":{}}", shard_b, TM_ERR_FORMAT, "empty"},
        {"{\"weight_map\":[]}", shard_b, TM_ERR_FORMAT, "weight_map"},
        {"{\"weight_map\":{\"a.w\":3}}", shard_b, TM_ERR_FORMAT, "not a string"},
        {"[]", shard_b, TM_ERR_FORMAT, "weight_map"},
        {"{\"weight_map\":{\"a.w\":\"a.safetensors\",\"a.w\":\"a.safetensors\"}}", shard_b,
         TM_ERR_FORMAT, "duplicate"},
        {"not json", shard_b, TM_ERR_FORMAT, "not valid JSON"},
        {"{\"weight_map\":{\"a.w\":\"a.safetensors\",\"b.w\":\"b.safetensors\"}}",
         "{\"b.w\":{\"dtype\":\"F8_E5M2\",\"shape\":[8],\"data_offsets\":[0,8]}}",
         TM_ERR_UNSUPPORTED, "b.safetensors: tensor \"b.w\""},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = (tm_st_file *)&bad[i];
        tm_status st = open_index_case(bad[i].index, bad[i].b_header, &f);
        if (st != bad[i].want || f != NULL || strstr(tm_last_error(), bad[i].msg) == NULL)
            TM__FAIL_AT("index case %zu: got %s \"%s\", want %s containing \"%s\"", i,
                        tm_status_str(st), tm_last_error(), tm_status_str(bad[i].want), bad[i].msg);
    }
}

/* The committed fixture written by the reference `safetensors` package. */
TEST(sharded_fixture) {
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/tests/golden/hf/tiny_sharded", TM_SOURCE_DIR);
    tm_st_file *f = NULL;
    ASSERT_OK(tm_st_open(dir, &f));
    snprintf(path, sizeof path, "%s/expected.json", dir);
    json_error_t jerr;
    json_t      *exp = json_load_file(path, 0, &jerr);
    ASSERT_TRUE(exp != NULL);
    EXPECT_EQ_INT(tm_st_n_tensors(f), (long long)json_object_size(exp));
    EXPECT_EQ_INT(tm_st_n_shards(f), 2);
    EXPECT_EQ_STR(tm_st_metadata_get(f, "shard"), "1");
    const char *name;
    json_t     *e;
    json_object_foreach(exp, name, e) {
        const tm_st_tensor *t = tm_st_find(f, name);
        if (t == NULL) {
            TM__FAIL_AT("tensor %s missing", name);
            continue;
        }
        EXPECT_EQ_STR(tm_st_dtype_name(t->st_dtype),
                      json_string_value(json_object_get(e, "dtype")));
        json_t *shape = json_object_get(e, "shape");
        EXPECT_EQ_INT(t->n_dims, (long long)json_array_size(shape));
        for (int d = 0; d < t->n_dims; d++) {
            EXPECT_EQ_INT(t->shape[d], json_integer_value(json_array_get(shape, (size_t)d)));
            EXPECT_EQ_INT(t->ne[t->n_dims - 1 - d], t->shape[d]);
        }
        json_t *vals = json_object_get(e, "values");
        EXPECT_EQ_INT(t->n_elements, (long long)json_array_size(vals));
        const uint8_t *p = t->data;
        for (int64_t i = 0; i < t->n_elements; i++) {
            json_t *v = json_array_get(vals, (size_t)i);
            switch (t->st_dtype) {
            case TM_ST_DTYPE_F32:
                EXPECT_NEAR(tm_load_f32_le(p + 4 * i), json_real_value(v), 0);
                break;
            case TM_ST_DTYPE_F16:
                EXPECT_NEAR(tm_f16_to_f32(tm_load_u16_le(p + 2 * i)), json_real_value(v), 0);
                break;
            case TM_ST_DTYPE_BF16:
                EXPECT_NEAR(tm_bf16_to_f32(tm_load_u16_le(p + 2 * i)), json_real_value(v), 0);
                break;
            case TM_ST_DTYPE_I32:
                EXPECT_EQ_INT((int32_t)tm_load_u32_le(p + 4 * i), json_integer_value(v));
                break;
            case TM_ST_DTYPE_I64:
                EXPECT_EQ_INT((int64_t)tm_load_u64_le(p + 8 * i), json_integer_value(v));
                break;
            default: TM__FAIL_AT("unexpected dtype in fixture"); break;
            }
        }
    }
    json_decref(exp);
    tm_st_close(f);

    /* The index path itself opens the same set. */
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    ASSERT_OK(tm_st_open(path, &f));
    EXPECT_EQ_INT(tm_st_n_tensors(f), 7);
    tm_st_close(f);
}

/* ---- the real all-MiniLM-L6-v2 folder ------------------------------------------------ */

TEST(real_minilm_folder) {
    const char *dir = tm_test_minilm_dir();
    if (dir == NULL || !tm_path_is_dir(dir)) {
        printf("SKIPPED real_minilm_folder: set TM_MINILM_DIR or run "
               "scripts/fetch_models.sh minilm\n");
        return;
    }
    tm_st_file *f = NULL;
    ASSERT_OK(tm_st_open(dir, &f));
    EXPECT_EQ_INT(tm_st_n_tensors(f), 104);
    EXPECT_EQ_STR(tm_st_metadata_get(f, "format"), "pt");
    const tm_st_tensor *we = tm_st_find(f, "embeddings.word_embeddings.weight");
    ASSERT_TRUE(we != NULL);
    EXPECT_EQ_INT(we->st_dtype, TM_ST_DTYPE_F32);
    EXPECT_EQ_INT(we->ne[0], 384);
    EXPECT_EQ_INT(we->ne[1], 30522);
    EXPECT_EQ_INT(we->n_bytes, 30522ll * 384 * 4);
    const tm_st_tensor *pos = tm_st_find(f, "embeddings.position_ids");
    ASSERT_TRUE(pos != NULL);
    EXPECT_EQ_INT(pos->dtype, TM_DTYPE_I64);
    EXPECT_EQ_INT(pos->n_dims, 2);
    EXPECT_EQ_INT(pos->ne[0], 512);
    /* position_ids is arange(512). */
    for (int i = 0; i < 512; i++) {
        if ((int64_t)tm_load_u64_le((const uint8_t *)pos->data + 8 * i) != i) {
            TM__FAIL_AT("position_ids[%d] != %d", i, i);
            break;
        }
    }
    size_t total = 0;
    for (int64_t i = 0; i < tm_st_n_tensors(f); i++)
        total += tm_st_tensor_at(f, i)->n_bytes;
    EXPECT_TRUE(total > 90000000 && total < 90868376);
    tm_st_close(f);
}

/* ---- allocation failure ---------------------------------------------------------------- */

static int   inj_left;
static void *inj_malloc(size_t n, void *u) {
    (void)u;
    return inj_left-- > 0 ? malloc(n) : NULL;
}
static void *inj_realloc(void *p, size_t n, void *u) {
    (void)u;
    return inj_left-- > 0 ? realloc(p, n) : NULL;
}
static void inj_free(void *p, void *u) {
    (void)u;
    free(p);
}

TEST(oom_injection) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/golden/hf/tiny_sharded", TM_SOURCE_DIR);
    tm_allocator a = {inj_malloc, inj_realloc, inj_free, NULL};
    int          ok_at = -1;
    for (int n = 0; n < 200 && ok_at < 0; n++) {
        tm_set_allocator(&a);
        inj_left = n;
        tm_st_file *f = NULL;
        tm_status   st = tm_st_open(dir, &f);
        tm_set_allocator(NULL);
        if (st == TM_OK)
            ok_at = n;
        else if (f != NULL)
            TM__FAIL_AT("failure with *out set at %d", n);
        tm_st_close(f);
    }
    EXPECT_TRUE(ok_at > 0);
}

/* ---- dump mode for the Python oracle ----------------------------------------------------- */

static int dump(const char *path) {
    tm_st_file *f = NULL;
    if (tm_st_open(path, &f) != TM_OK) {
        fprintf(stderr, "error: %s\n", tm_last_error());
        return 1;
    }
    for (int64_t i = 0; i < tm_st_n_tensors(f); i++) {
        const tm_st_tensor *t = tm_st_tensor_at(f, i);
        printf("%s\t%s\t", t->name, tm_st_dtype_name(t->st_dtype));
        for (int d = 0; d < t->n_dims; d++)
            printf("%s%lld", d ? "," : "", (long long)t->shape[d]);
        uint64_t       h = 0xcbf29ce484222325ull;
        const uint8_t *p = t->data;
        for (size_t b = 0; b < t->n_bytes; b++)
            h = (h ^ p[b]) * 0x100000001b3ull;
        printf("\t%016llx\t", (unsigned long long)h);
        size_t es = tm_st_dtype_size(t->st_dtype);
        for (int64_t k = 0; k < t->n_elements; k++) {
            const uint8_t *e = p + (size_t)k * es;
            if (k)
                putchar(' ');
            switch (t->st_dtype) {
            case TM_ST_DTYPE_F64: printf("%.17g", tm_load_f64_le(e)); break;
            case TM_ST_DTYPE_F32: printf("%.9g", (double)tm_load_f32_le(e)); break;
            case TM_ST_DTYPE_F16: printf("%.9g", (double)tm_f16_to_f32(tm_load_u16_le(e))); break;
            case TM_ST_DTYPE_BF16: printf("%.9g", (double)tm_bf16_to_f32(tm_load_u16_le(e))); break;
            case TM_ST_DTYPE_I64: printf("%lld", (long long)(int64_t)tm_load_u64_le(e)); break;
            case TM_ST_DTYPE_U64: printf("%llu", (unsigned long long)tm_load_u64_le(e)); break;
            case TM_ST_DTYPE_I32: printf("%d", (int32_t)tm_load_u32_le(e)); break;
            case TM_ST_DTYPE_U32: printf("%u", tm_load_u32_le(e)); break;
            case TM_ST_DTYPE_I16: printf("%d", (int16_t)tm_load_u16_le(e)); break;
            case TM_ST_DTYPE_U16: printf("%u", tm_load_u16_le(e)); break;
            case TM_ST_DTYPE_I8: printf("%d", (int8_t)e[0]); break;
            case TM_ST_DTYPE_U8:
            case TM_ST_DTYPE_BOOL: printf("%u", e[0]); break;
            case TM_ST_DTYPE_COUNT: break;
            }
        }
        putchar('\n');
    }
    tm_st_close(f);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--dump") == 0)
        return dump(argv[2]);
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
