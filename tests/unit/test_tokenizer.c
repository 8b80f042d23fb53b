/*
 * test_tokenizer.c - tokenizer table tests: text -> ids on the committed fixtures
 * (tests/golden/tokenizers/cases.json, produced by HF tokenizers through
 * scripts/gen_tokenizer_fixtures.py), round trips, byte fallback, the streaming
 * detokenizer on emoji/CJK, invalid UTF-8, and corrupt tokenizer.json inputs.
 */
#include <jansson.h>

#include "harness.h"
#include "tm/tm_status.h"
#include "tm/tm_tokenizer.h"

#define FIX TM_SOURCE_DIR "/tests/golden/tokenizers"

static tm_tokenizer *load(const char *name) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/tokenizer.json", FIX, name);
    tm_tokenizer_params tp = tm_tokenizer_params_default();
    tp.path = path;
    tm_tokenizer *t = NULL;
    if (tm_tokenizer_init(&tp, &t) != TM_OK)
        fprintf(stderr, "  load %s: %s\n", path, tm_last_error());
    return t;
}

static tm_status load_mem(const char *json, tm_tokenizer **t) {
    tm_tokenizer_params tp = tm_tokenizer_params_default();
    tp.json_data = json;
    tp.json_len = strlen(json);
    return tm_tokenizer_init(&tp, t);
}

TEST(golden_cases) {
    json_error_t err;
    json_t      *cases = json_load_file(FIX "/cases.json", 0, &err);
    ASSERT_TRUE(cases != NULL && json_is_array(cases));
    const char   *names[] = {"gpt2-bpe", "spm-llama2", "spm-metaspace"};
    tm_tokenizer *toks[3] = {0};
    for (int i = 0; i < 3; i++)
        toks[i] = load(names[i]);
    size_t  i;
    json_t *c;
    int     n_checked = 0;
    json_array_foreach(cases, i, c) {
        const char   *name = json_string_value(json_object_get(c, "tokenizer"));
        tm_tokenizer *t = NULL;
        for (int k = 0; k < 3; k++)
            if (strcmp(name, names[k]) == 0)
                t = toks[k];
        if (t == NULL)
            continue;
        const char *text = json_string_value(json_object_get(c, "text"));
        bool        special = json_is_true(json_object_get(c, "special"));
        json_t     *exp = json_object_get(c, "ids");
        int32_t    *ids = NULL;
        size_t      n = 0;
        EXPECT_OK(tm_tokenizer_encode(t, text, strlen(text), special, special, &ids, &n));
        bool same = n == json_array_size(exp);
        for (size_t k = 0; same && k < n; k++)
            same = ids[k] == json_integer_value(json_array_get(exp, k));
        if (!same)
            TM__FAIL_AT("%s special=%d text '%s': %zu ids, expected %zu", name, special, text, n,
                        json_array_size(exp));
        n_checked++;
        /* Round trip without specials: decode(encode(x)) == x for these fixtures. */
        if (!special) {
            char  *back = NULL;
            size_t len = 0;
            EXPECT_OK(tm_tokenizer_decode(t, ids, n, false, &back, &len));
            if (strcmp(name, "gpt2-bpe") == 0 || text[0] != ' ')
                EXPECT_EQ_STR(back, text);
            tm_free(back);
        }
        tm_free(ids);
    }
    EXPECT_TRUE(n_checked >= 60);
    for (int k = 0; k < 3; k++)
        tm_tokenizer_free(toks[k]);
    json_decref(cases);
}

TEST(empty_string) {
    tm_tokenizer *t = load("spm-llama2");
    ASSERT_TRUE(t != NULL);
    int32_t *ids = (int32_t *)1;
    size_t   n = 99;
    EXPECT_OK(tm_tokenizer_encode(t, "", 0, false, false, &ids, &n));
    EXPECT_EQ_INT(n, 0);
    EXPECT_TRUE(ids == NULL);
    EXPECT_OK(tm_tokenizer_encode(t, "", 0, true, true, &ids, &n));
    EXPECT_EQ_INT(n, 1); /* just <s> */
    EXPECT_EQ_INT(ids[0], tm_tokenizer_bos_id(t));
    tm_free(ids);
    tm_tokenizer_free(t);
}

TEST(byte_fallback) {
    tm_tokenizer *t = load("spm-llama2");
    ASSERT_TRUE(t != NULL);
    /* U+4E2D is not in the small vocabulary: it must come out as its 3 UTF-8 bytes. */
    const char *s = "\xE4\xB8\xAD";
    int32_t    *ids = NULL;
    size_t      n = 0;
    ASSERT_OK(tm_tokenizer_encode(t, s, 3, false, false, &ids, &n));
    ASSERT_TRUE(n == 4); /* "▁" then <0xE4> <0xB8> <0xAD> */
    EXPECT_EQ_INT(ids[1], tm_tokenizer_token_id(t, "<0xE4>", 6));
    EXPECT_EQ_INT(ids[2], tm_tokenizer_token_id(t, "<0xB8>", 6));
    EXPECT_EQ_INT(ids[3], tm_tokenizer_token_id(t, "<0xAD>", 6));
    char  *back = NULL;
    size_t len = 0;
    EXPECT_OK(tm_tokenizer_decode(t, ids, n, true, &back, &len));
    EXPECT_EQ_STR(back, s);
    tm_free(back);
    tm_free(ids);
    tm_tokenizer_free(t);
}

static bool valid_utf8(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t l = p[i] < 0x80         ? 1
                   : (p[i] >> 5) == 6  ? 2
                   : (p[i] >> 4) == 14 ? 3
                   : (p[i] >> 3) == 30 ? 4
                                       : 0;
        if (l == 0 || i + l > n)
            return false;
        for (size_t k = 1; k < l; k++)
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
        i += l;
    }
    return true;
}

TEST(streaming_detokenizer) {
    const char *names[] = {"gpt2-bpe", "spm-llama2"};
    const char *text = "Emoji 😀👨\u200d👩\u200d👧 and CJK 日本語のテキスト 中文 and é";
    for (int k = 0; k < 2; k++) {
        tm_tokenizer *t = load(names[k]);
        ASSERT_TRUE(t != NULL);
        int32_t *ids = NULL;
        size_t   n = 0;
        ASSERT_OK(tm_tokenizer_encode(t, text, strlen(text), false, false, &ids, &n));
        tm_detokenizer *d = NULL;
        ASSERT_OK(tm_detokenizer_init(t, true, &d));
        char        all[512] = {0};
        size_t      used = 0;
        const char *chunk;
        size_t      len;
        for (size_t i = 0; i < n; i++) {
            ASSERT_OK(tm_detokenizer_feed(d, ids[i], &chunk, &len));
            EXPECT_TRUE(valid_utf8(chunk, len));
            ASSERT_TRUE(used + len < sizeof all);
            memcpy(all + used, chunk, len);
            used += len;
        }
        ASSERT_OK(tm_detokenizer_flush(d, &chunk, &len));
        memcpy(all + used, chunk, len);
        used += len;
        all[used] = '\0';
        EXPECT_EQ_STR(all, text);
        tm_detokenizer_free(d);
        tm_free(ids);
        tm_tokenizer_free(t);
    }
}

/* tm_detokenizer_continue: an answer decoded after its prompt joins it as one text
 * ("Once upon" + " a time", not "upona time"), for every split point where the prompt
 * ends on a whole character (a prompt text always does). */
TEST(detokenizer_continue) {
    const char *names[] = {"gpt2-bpe", "spm-llama2"};
    const char *text = "Once upon a time there was a tiny 日本 cat";
    for (int k = 0; k < 2; k++) {
        tm_tokenizer *t = load(names[k]);
        ASSERT_TRUE(t != NULL);
        int32_t *ids = NULL;
        size_t   n = 0;
        ASSERT_OK(tm_tokenizer_encode(t, text, strlen(text), false, false, &ids, &n));
        tm_detokenizer *d = NULL;
        ASSERT_OK(tm_detokenizer_init(t, true, &d));
        for (size_t cut = 1; cut < n; cut++) {
            char  *head = NULL;
            size_t hl = 0;
            ASSERT_OK(tm_tokenizer_decode(t, ids, cut, true, &head, &hl));
            if (!valid_utf8(head, hl)) { /* cut inside a character */
                tm_free(head);
                continue;
            }
            char all[512];
            ASSERT_TRUE(hl < sizeof all);
            memcpy(all, head, hl);
            size_t used = hl;
            tm_free(head);
            tm_detokenizer_continue(d);
            const char *chunk;
            size_t      len;
            for (size_t i = cut; i <= n; i++) {
                if (i < n)
                    ASSERT_OK(tm_detokenizer_feed(d, ids[i], &chunk, &len));
                else
                    ASSERT_OK(tm_detokenizer_flush(d, &chunk, &len));
                ASSERT_TRUE(used + len < sizeof all);
                memcpy(all + used, chunk, len);
                used += len;
            }
            all[used] = '\0';
            EXPECT_EQ_STR(all, text);
        }
        tm_detokenizer_free(d);
        tm_free(ids);
        tm_tokenizer_free(t);
    }
}

TEST(invalid_utf8) {
    tm_tokenizer *t = load("gpt2-bpe");
    ASSERT_TRUE(t != NULL);
    int32_t *ids = NULL;
    size_t   n = 0;
    EXPECT_EQ_INT(tm_tokenizer_encode(t, "ab\xC3(", 4, false, false, &ids, &n), TM_ERR_INVALID);
    EXPECT_TRUE(strstr(tm_last_error(), "byte offset 2") != NULL);
    EXPECT_EQ_INT(tm_tokenizer_encode(t, "\xED\xA0\x80", 3, false, false, &ids, &n),
                  TM_ERR_INVALID); /* surrogate */
    EXPECT_TRUE(ids == NULL);
    tm_tokenizer_free(t);
}

TEST(special_tokens) {
    tm_tokenizer *t = load("gpt2-bpe");
    ASSERT_TRUE(t != NULL);
    int32_t  eot = tm_tokenizer_token_id(t, "<|endoftext|>", 13);
    int32_t *ids = NULL;
    size_t   n = 0;
    ASSERT_TRUE(eot >= 0);
    ASSERT_OK(tm_tokenizer_encode(t, "a<|endoftext|>", 14, true, true, &ids, &n));
    EXPECT_EQ_INT(ids[n - 1], eot);
    tm_free(ids);
    ASSERT_OK(tm_tokenizer_encode(t, "a<|endoftext|>", 14, false, false, &ids, &n));
    for (size_t i = 0; i < n; i++)
        EXPECT_TRUE(ids[i] != eot);
    tm_free(ids);
    char *sum = NULL;
    ASSERT_OK(tm_tokenizer_summary(t, &sum));
    EXPECT_TRUE(strstr(sum, "bpe-bytelevel") != NULL);
    tm_free(sum);
    tm_tokenizer_free(t);
}

TEST(unknown_types_and_corrupt_json) {
    static const struct {
        const char *json;
        tm_status   st;
        const char *needle;
    } cases[] = {
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", TM_ERR_UNSUPPORTED, "Unigram"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"Bogus\"}}",
         TM_ERR_UNSUPPORTED, "Bogus"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a b\"]}}",
         TM_ERR_FORMAT, "not in the vocabulary"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -5}, \"merges\": []}}", TM_ERR_FORMAT,
         "bad id"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", TM_ERR_FORMAT, "empty"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}", TM_ERR_FORMAT, "invalid JSON"},
        {"[1, 2]", TM_ERR_FORMAT, "not an object"},
        {"{}", TM_ERR_FORMAT, "no \"model\""},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"added_tokens\": [{\"id\": 7}]}",
         TM_ERR_FORMAT, "added_tokens"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"},"
         " \"behavior\": \"Isolated\"}}",
         TM_ERR_FORMAT, "regex"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"post_processor\": {\"type\": \"BertProcessing\", \"cls\": [\"x\", 99], \"sep\": "
         "[\"y\", 0]}}",
         TM_ERR_FORMAT, "out of range"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        tm_tokenizer *t = (tm_tokenizer *)1;
        tm_status     st = load_mem(cases[i].json, &t);
        EXPECT_EQ_INT(st, cases[i].st);
        EXPECT_TRUE(t == NULL);
        if (strstr(tm_last_error(), cases[i].needle) == NULL)
            TM__FAIL_AT("case %zu: message '%s' lacks '%s'", i, tm_last_error(), cases[i].needle);
    }
}

TEST(token_lookups) {
    tm_tokenizer *t = load("spm-llama2");
    ASSERT_TRUE(t != NULL);
    size_t len = 0;
    EXPECT_EQ_STR(tm_tokenizer_token_text(t, 1, &len), "<s>");
    EXPECT_TRUE(tm_tokenizer_token_text(t, -1, NULL) == NULL);
    EXPECT_TRUE(tm_tokenizer_token_text(t, tm_tokenizer_n_vocab(t), NULL) == NULL);
    EXPECT_EQ_STR(tm_tokenizer_type_name(t), "spm-bpe");
    int32_t id = tm_tokenizer_token_id(t, "\xE2\x96\x81the", 6);
    ASSERT_TRUE(id >= 0);
    char buf[16];
    ASSERT_OK(tm_tokenizer_token_to_piece(t, id, buf, sizeof buf, &len));
    EXPECT_EQ_INT(len, 4);
    EXPECT_TRUE(memcmp(buf, " the", 4) == 0);
    int32_t bad = 1 << 20;
    char   *text = NULL;
    EXPECT_EQ_INT(tm_tokenizer_decode(t, &bad, 1, false, &text, &len), TM_ERR_INVALID);
    tm_tokenizer_info info;
    tm_tokenizer_get_info(t, &info);
    EXPECT_TRUE(info.add_bos);
    EXPECT_TRUE(!info.add_eos);
    tm_tokenizer_free(t);
}

TEST(llama2c_bin) {
    const char *shared = tm_test_shared_data();
    if (shared == NULL) {
        printf("SKIPPED: ../shared/data absent\n");
        return;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/tok512.bin", shared);
    tm_tokenizer_params tp = tm_tokenizer_params_default();
    tp.path = path;
    tm_tokenizer *t = NULL;
    ASSERT_OK(tm_tokenizer_init(&tp, &t));
    EXPECT_EQ_INT(tm_tokenizer_n_vocab(t), 512);
    int32_t *ids = NULL;
    size_t   n = 0;
    ASSERT_OK(tm_tokenizer_encode(t, "Hello world", 11, true, true, &ids, &n));
    EXPECT_EQ_INT(ids[0], 1);
    char  *back = NULL;
    size_t len = 0;
    EXPECT_OK(tm_tokenizer_decode(t, ids, n, true, &back, &len));
    EXPECT_EQ_STR(back, "Hello world");
    tm_free(back);
    tm_free(ids);
    tm_tokenizer_free(t);
}

TM_TEST_MAIN()
