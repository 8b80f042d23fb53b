/*
 * test_hf.c - Hugging Face folder JSON: the generated fixture
 * (tests/golden/hf/tiny_sharded), the real all-MiniLM-L6-v2 folder (TM_MINILM_DIR
 * or the project .venv; SKIPPED when absent), wrong types one case each,
 * chat_template.jinja precedence, size caps and OOM injection.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tm/tm_hf.h"
#include "tm/tm_io.h"

static void fixture_dir(char *buf, size_t n) {
    snprintf(buf, n, "%s/tests/golden/hf/tiny_sharded", TM_SOURCE_DIR);
}

static tm_status load_mem(const char *config, const char *gen, const char *tok, const char *jinja,
                          tm_hf_config **out) {
    tm_hf_params p = tm_hf_params_default();
    p.allow_missing_config = true;
    p.config_json = config;
    p.config_json_len = config ? strlen(config) : 0;
    p.generation_config_json = gen;
    p.generation_config_json_len = gen ? strlen(gen) : 0;
    p.tokenizer_config_json = tok;
    p.tokenizer_config_json_len = tok ? strlen(tok) : 0;
    p.chat_template_jinja = jinja;
    p.chat_template_jinja_len = jinja ? strlen(jinja) : 0;
    return tm_hf_config_load(&p, out);
}

TEST(fixture_folder) {
    char dir[1024];
    fixture_dir(dir, sizeof dir);
    tm_hf_params p = tm_hf_params_default();
    p.dir = dir;
    tm_hf_config *hf = NULL;
    ASSERT_OK(tm_hf_config_load(&p, &hf));

    const tm_hf_model_info *m = tm_hf_config_model(hf);
    EXPECT_EQ_STR(m->model_type, "llama");
    EXPECT_EQ_STR(m->architecture, "LlamaForCausalLM");
    EXPECT_EQ_STR(m->torch_dtype, "bfloat16");
    EXPECT_EQ_INT(m->hidden_size, 4);
    EXPECT_EQ_INT(m->num_hidden_layers, 2);
    EXPECT_EQ_INT(m->num_attention_heads, 2);
    EXPECT_EQ_INT(m->num_key_value_heads, 1);
    EXPECT_EQ_INT(m->intermediate_size, 16);
    EXPECT_EQ_INT(m->vocab_size, 6);
    EXPECT_EQ_INT(m->max_position_embeddings, 128);
    EXPECT_EQ_INT(m->head_dim, 2); /* default: hidden / heads */
    EXPECT_NEAR(m->rms_norm_eps, 1e-6, 0);
    EXPECT_NEAR(m->layer_norm_eps, -1, 0);
    EXPECT_NEAR(m->rope_theta, 500000.0, 0);
    EXPECT_EQ_INT(m->tie_word_embeddings, 0);
    EXPECT_EQ_STR(m->rope_scaling.rope_type, "llama3");
    EXPECT_NEAR(m->rope_scaling.factor, 8.0, 0);
    EXPECT_NEAR(m->rope_scaling.low_freq_factor, 1.0, 0);
    EXPECT_NEAR(m->rope_scaling.high_freq_factor, 4.0, 0);
    EXPECT_EQ_INT(m->rope_scaling.original_max_position_embeddings, 64);

    const tm_hf_generation *g = tm_hf_config_generation(hf);
    EXPECT_TRUE(g->present && !g->from_model_config);
    EXPECT_EQ_INT(g->bos_token_id, 1);
    EXPECT_EQ_INT(g->pad_token_id, 0);
    ASSERT_TRUE(g->n_eos_token_ids == 2);
    EXPECT_EQ_INT(g->eos_token_ids[0], 2);
    EXPECT_EQ_INT(g->eos_token_ids[1], 5);
    EXPECT_EQ_INT(g->do_sample, 1);
    EXPECT_NEAR(g->temperature, 0.6, 0);
    EXPECT_NEAR(g->top_p, 0.9, 0);
    EXPECT_NEAR(g->min_p, -1, 0);
    EXPECT_NEAR(g->repetition_penalty, 1.05, 0);
    EXPECT_EQ_INT(g->top_k, 20);
    EXPECT_EQ_INT(g->max_new_tokens, 64);
    EXPECT_EQ_INT(g->max_length, -1);

    const tm_hf_tokenizer_info *t = tm_hf_config_tokenizer(hf);
    EXPECT_TRUE(t->present);
    EXPECT_EQ_STR(t->tokenizer_class, "PreTrainedTokenizerFast");
    EXPECT_EQ_STR(t->bos_token, "<s>"); /* AddedToken object */
    EXPECT_EQ_STR(t->eos_token, "</s>");
    EXPECT_TRUE(t->unk_token == NULL); /* null */
    EXPECT_EQ_STR(t->pad_token, "<pad>");
    EXPECT_EQ_INT(t->add_bos_token, 1);
    EXPECT_EQ_INT(t->add_eos_token, 0);
    EXPECT_EQ_INT(t->model_max_length, INT64_MAX); /* int(1e30) */
    EXPECT_EQ_INT(t->n_chat_templates, 2);
    EXPECT_EQ_STR(t->chat_template_origin, "tokenizer_config.json");
    EXPECT_EQ_STR(t->chat_templates[1].name, "tool_use");
    EXPECT_EQ_STR(tm_hf_config_chat_template(hf, NULL),
                  "{% for m in messages %}{{ m['content'] }}{% endfor %}");
    EXPECT_EQ_STR(tm_hf_config_chat_template(hf, "tool_use"), "{{ tools | length }}");
    EXPECT_TRUE(tm_hf_config_chat_template(hf, "rag") == NULL);
    EXPECT_TRUE(t->tokenizer_json_path == NULL);
    EXPECT_TRUE(t->tokenizer_model_path == NULL);

    /* Generic getters: dotted paths, absent keys, wrong types, every file. */
    int64_t     iv = 0;
    double      dv = 0;
    const char *sv = NULL;
    bool        bv = true;
    EXPECT_OK(tm_hf_config_get_int(hf, TM_HF_FILE_CONFIG, "text_config.hidden_size", &iv));
    EXPECT_EQ_INT(iv, 8);
    EXPECT_OK(tm_hf_config_get_float(hf, TM_HF_FILE_CONFIG, "rope_scaling.factor", &dv));
    EXPECT_NEAR(dv, 8.0, 0);
    EXPECT_OK(tm_hf_config_get_float(hf, TM_HF_FILE_CONFIG, "hidden_size", &dv)); /* int ok */
    EXPECT_NEAR(dv, 4.0, 0);
    EXPECT_OK(tm_hf_config_get_str(hf, TM_HF_FILE_TOKENIZER_CONFIG, "bos_token.content", &sv));
    EXPECT_EQ_STR(sv, "<s>");
    EXPECT_OK(tm_hf_config_get_bool(hf, TM_HF_FILE_CONFIG, "tie_word_embeddings", &bv));
    EXPECT_TRUE(!bv);
    /* int(1e30) does not fit an int64: the typed view saturates, get_int refuses. */
    EXPECT_EQ_INT(tm_hf_config_get_int(hf, TM_HF_FILE_TOKENIZER_CONFIG, "model_max_length", &iv),
                  TM_ERR_FORMAT);
    EXPECT_OK(tm_hf_config_get_float(hf, TM_HF_FILE_TOKENIZER_CONFIG, "model_max_length", &dv));
    EXPECT_NEAR(dv, 1e30, 1e15);
    EXPECT_OK(tm_hf_config_get_int(hf, TM_HF_FILE_GENERATION_CONFIG, "top_k", &iv));
    EXPECT_EQ_INT(iv, 20);
    EXPECT_EQ_INT(tm_hf_config_get_int(hf, TM_HF_FILE_CONFIG, "sliding_window", &iv),
                  TM_ERR_NOT_FOUND);
    EXPECT_EQ_INT(tm_hf_config_get_int(hf, TM_HF_FILE_CONFIG, "hidden_size.x", &iv),
                  TM_ERR_NOT_FOUND);
    EXPECT_EQ_INT(tm_hf_config_get_int(hf, TM_HF_FILE_CONFIG, "model_type", &iv), TM_ERR_FORMAT);
    EXPECT_TRUE(strstr(tm_last_error(), "config.json: key \"model_type\" must be an integer, "
                                        "got a string") != NULL);
    EXPECT_EQ_INT(tm_hf_config_get_int(hf, TM_HF_FILE_CONFIG, "rms_norm_eps", &iv), TM_ERR_FORMAT);
    EXPECT_EQ_INT(tm_hf_config_get_str(hf, TM_HF_FILE_CONFIG, "hidden_size", &sv), TM_ERR_FORMAT);
    EXPECT_EQ_INT(tm_hf_config_get_bool(hf, TM_HF_FILE_CONFIG, "hidden_size", &bv), TM_ERR_FORMAT);
    EXPECT_EQ_INT(tm_hf_config_get_int(hf, (tm_hf_file)7, "x", &iv), TM_ERR_INVALID);
    const json_t *root = tm_hf_config_json(hf, TM_HF_FILE_CONFIG);
    EXPECT_TRUE(json_is_object(root));
    EXPECT_EQ_INT(json_integer_value(json_object_get(root, "vocab_size")), 6);
    tm_hf_config_free(hf);
}

TEST(real_minilm_folder) {
    const char *dir = tm_test_minilm_dir();
    if (dir == NULL || !tm_path_is_dir(dir)) {
        printf("SKIPPED real_minilm_folder: set TM_MINILM_DIR or run "
               "scripts/fetch_models.sh minilm\n");
        return;
    }
    tm_hf_params p = tm_hf_params_default();
    p.dir = dir;
    tm_hf_config *hf = NULL;
    ASSERT_OK(tm_hf_config_load(&p, &hf));
    const tm_hf_model_info *m = tm_hf_config_model(hf);
    EXPECT_EQ_STR(m->model_type, "bert");
    EXPECT_EQ_STR(m->architecture, "BertModel");
    EXPECT_EQ_INT(m->hidden_size, 384);
    EXPECT_EQ_INT(m->num_hidden_layers, 6);
    EXPECT_EQ_INT(m->num_attention_heads, 12);
    EXPECT_EQ_INT(m->num_key_value_heads, 12);
    EXPECT_EQ_INT(m->head_dim, 32);
    EXPECT_EQ_INT(m->intermediate_size, 1536);
    EXPECT_EQ_INT(m->vocab_size, 30522);
    EXPECT_EQ_INT(m->max_position_embeddings, 512);
    EXPECT_NEAR(m->layer_norm_eps, 1e-12, 0);
    EXPECT_NEAR(m->rms_norm_eps, -1, 0);
    EXPECT_TRUE(m->torch_dtype == NULL);
    EXPECT_TRUE(m->rope_scaling.rope_type == NULL);
    const tm_hf_generation *g = tm_hf_config_generation(hf);
    EXPECT_TRUE(!g->present && g->from_model_config);
    EXPECT_EQ_INT(g->pad_token_id, 0);
    EXPECT_EQ_INT(g->n_eos_token_ids, 0);
    const tm_hf_tokenizer_info *t = tm_hf_config_tokenizer(hf);
    EXPECT_EQ_STR(t->unk_token, "[UNK]");
    EXPECT_EQ_STR(t->pad_token, "[PAD]");
    EXPECT_EQ_STR(t->tokenizer_class, "BertTokenizer");
    EXPECT_EQ_INT(t->model_max_length, 512);
    EXPECT_EQ_INT(t->n_chat_templates, 0);
    EXPECT_TRUE(t->tokenizer_json_path != NULL &&
                strstr(t->tokenizer_json_path, "/tokenizer.json") != NULL);
    int64_t tv;
    EXPECT_OK(tm_hf_config_get_int(hf, TM_HF_FILE_CONFIG, "type_vocab_size", &tv));
    EXPECT_EQ_INT(tv, 2);
    tm_hf_config_free(hf);
}

/* One case per wrong type or bad value: the message names the file and the key. */
TEST(wrong_types_table) {
    static const struct {
        int         file; /* 0 config, 1 generation, 2 tokenizer */
        const char *text;
        const char *msg;
    } cases[] = {
        {0, "[1]", "config.json: not a JSON object"},
        {0, "{\"a\":1,\"a\":2}", "config.json: not valid JSON"},
        {0, "{\"hidden_size\":", "config.json: not valid JSON"},
        {0, "{\"hidden_size\":\"384\"}", "config.json: key \"hidden_size\" must be an integer"},
        {0, "{\"hidden_size\":384.5}", "key \"hidden_size\" must be an integer, got a real"},
        {0, "{\"hidden_size\":true}", "key \"hidden_size\" must be an integer, got a boolean"},
        {0, "{\"hidden_size\":-4}", "key \"hidden_size\" must be non-negative"},
        {0, "{\"num_hidden_layers\":0}", "key \"num_hidden_layers\" must be positive"},
        {0, "{\"vocab_size\":1e300}", "key \"vocab_size\" must be an integer"},
        {0, "{\"model_type\":5}", "key \"model_type\" must be a string"},
        {0, "{\"architectures\":\"Llama\"}", "key \"architectures\" must be an array"},
        {0, "{\"architectures\":[1]}", "key \"architectures[0]\" must be a string"},
        {0, "{\"rms_norm_eps\":\"1e-6\"}", "key \"rms_norm_eps\" must be a number"},
        {0, "{\"rope_theta\":-1.0}", "key \"rope_theta\" must be a non-negative number"},
        {0, "{\"tie_word_embeddings\":1}", "key \"tie_word_embeddings\" must be a boolean"},
        {0, "{\"rope_scaling\":\"linear\"}", "key \"rope_scaling\" must be an object"},
        {0, "{\"rope_scaling\":{\"factor\":\"8\"}}", "key \"rope_scaling.factor\" must be"},
        {0, "{\"rope_scaling\":{\"type\":1}}", "key \"rope_scaling.type\" must be a string"},
        {0, "{\"text_config\":{\"hidden_size\":\"x\"}}", "key \"text_config.hidden_size\""},
        {0, "{\"eos_token_id\":\"</s>\"}", "config.json: key \"eos_token_id\" must be an integer"},
        {1, "{\"eos_token_id\":[1,\"2\"]}",
         "generation_config.json: key \"eos_token_id\" must be an integer"},
        {1, "{\"eos_token_id\":4294967296}", "token id 4294967296 out of range"},
        {1, "{\"bos_token_id\":1.5}", "key \"bos_token_id\" must be an integer"},
        {1, "{\"temperature\":\"hot\"}", "key \"temperature\" must be a number"},
        {1, "{\"top_k\":1.5}", "key \"top_k\" must be an integer"},
        {1, "{\"do_sample\":\"yes\"}", "key \"do_sample\" must be a boolean"},
        {1, "7", "generation_config.json: not valid JSON"},
        {2, "{\"bos_token\":1}", "tokenizer_config.json: key \"bos_token\" must be a string or"},
        {2, "{\"eos_token\":{\"content\":3}}", "key \"eos_token.content\" must be a string"},
        {2, "{\"eos_token\":{\"lstrip\":false}}", "AddedToken without \"content\""},
        {2, "{\"add_bos_token\":\"true\"}", "key \"add_bos_token\" must be a boolean"},
        {2, "{\"model_max_length\":\"512\"}", "key \"model_max_length\" must be a number"},
        {2, "{\"model_max_length\":-1}", "model_max_length\" must be non-negative"},
        {2, "{\"chat_template\":5}", "key \"chat_template\" must be a string or a list"},
        {2, "{\"chat_template\":[{\"name\":\"a\"}]}", "key \"chat_template[0]\" must be"},
        {2, "{\"chat_template\":[\"x\"]}", "key \"chat_template[0]\" must be"},
        {2,
         "{\"chat_template\":[{\"name\":\"a\",\"template\":\"x\"},{\"name\":\"a\","
         "\"template\":\"y\"}]}",
         "name \"a\" appears twice"},
        {2, "{\"tokenizer_class\":[]}", "key \"tokenizer_class\" must be a string"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char   *t[3] = {NULL, NULL, NULL};
        tm_hf_config *hf = (tm_hf_config *)&t; /* must be reset to NULL */
        t[cases[i].file] = cases[i].text;
        tm_status st = load_mem(t[0], t[1], t[2], NULL, &hf);
        if (st != TM_ERR_FORMAT || hf != NULL || strstr(tm_last_error(), cases[i].msg) == NULL)
            TM__FAIL_AT("case %zu: got %s \"%s\", want format error containing \"%s\"", i,
                        tm_status_str(st), tm_last_error(), cases[i].msg);
        if (hf != (tm_hf_config *)&t)
            tm_hf_config_free(hf);
    }
}

TEST(values_and_defaults) {
    tm_hf_config *hf = NULL;
    /* Nulls are absent; negative token ids are "none"; text_config fallback; the huge
     * integer forces the real re-parse and integers still read back. */
    ASSERT_OK(load_mem("{\"hidden_size\":64,\"num_attention_heads\":3,\"head_dim\":null,"
                       "\"eos_token_id\":[7,-1],\"pad_token_id\":-1,\"bos_token_id\":null,"
                       "\"text_config\":{\"num_hidden_layers\":5,\"vocab_size\":99.0},"
                       "\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":1e6},"
                       "\"dtype\":\"float16\",\"huge\":100000000000000000000000}",
                       NULL, "{\"chat_template\":\"{{ x }}\",\"bos_token\":null}", NULL, &hf));
    const tm_hf_model_info *m = tm_hf_config_model(hf);
    EXPECT_EQ_INT(m->hidden_size, 64);
    EXPECT_EQ_INT(m->head_dim, -1); /* 64 % 3 != 0: no default */
    EXPECT_EQ_INT(m->num_key_value_heads, 3);
    EXPECT_EQ_INT(m->num_hidden_layers, 5);
    EXPECT_EQ_INT(m->vocab_size, 99);
    EXPECT_NEAR(m->rope_theta, 1e6, 0);
    EXPECT_EQ_STR(m->rope_scaling.rope_type, "default");
    EXPECT_EQ_STR(m->torch_dtype, "float16");
    const tm_hf_generation *g = tm_hf_config_generation(hf);
    EXPECT_TRUE(g->from_model_config);
    EXPECT_EQ_INT(g->n_eos_token_ids, 1);
    EXPECT_EQ_INT(g->eos_token_ids[0], 7);
    EXPECT_EQ_INT(g->pad_token_id, -1);
    EXPECT_EQ_INT(g->bos_token_id, -1);
    EXPECT_NEAR(g->temperature, -1, 0);
    const tm_hf_tokenizer_info *t = tm_hf_config_tokenizer(hf);
    EXPECT_EQ_INT(t->n_chat_templates, 1);
    EXPECT_EQ_STR(tm_hf_config_chat_template(hf, "default"), "{{ x }}");
    EXPECT_TRUE(t->bos_token == NULL);
    int64_t iv;
    EXPECT_EQ_INT(tm_hf_config_get_int(hf, TM_HF_FILE_CONFIG, "huge", &iv), TM_ERR_FORMAT);
    tm_hf_config_free(hf);

    /* Nothing at all (memory, config allowed to be missing). */
    ASSERT_OK(load_mem(NULL, NULL, NULL, NULL, &hf));
    EXPECT_EQ_INT(tm_hf_config_model(hf)->hidden_size, -1);
    EXPECT_TRUE(!tm_hf_config_tokenizer(hf)->present);
    EXPECT_TRUE(tm_hf_config_json(hf, TM_HF_FILE_CONFIG) == NULL);
    EXPECT_EQ_INT(tm_hf_config_get_int(hf, TM_HF_FILE_CONFIG, "x", &iv), TM_ERR_NOT_FOUND);
    tm_hf_config_free(hf);
}

static void write_text(const char *dir, const char *name, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    TM_ASSERT(f != NULL);
    fputs(text, f);
    fclose(f);
}

TEST(chat_template_jinja_wins) {
    char dir[] = "/tmp/tm_hf_XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    write_text(dir, "config.json", "{\"model_type\":\"qwen2\"}");
    write_text(dir, "tokenizer_config.json",
               "{\"chat_template\":[{\"name\":\"default\",\"template\":\"A\"},"
               "{\"name\":\"rag\",\"template\":\"R\"}]}");
    write_text(dir, "chat_template.jinja", "J{{ messages }}\n");
    write_text(dir, "tokenizer.json", "{}");
    write_text(dir, "tokenizer.model", "x");
    tm_hf_params p = tm_hf_params_default();
    p.dir = dir;
    tm_hf_config *hf = NULL;
    EXPECT_OK(tm_hf_config_load(&p, &hf));
    if (hf != NULL) {
        const tm_hf_tokenizer_info *t = tm_hf_config_tokenizer(hf);
        /* transformers: the .jinja file clobbers every template of the config. */
        EXPECT_EQ_STR(t->chat_template_origin, "chat_template.jinja");
        EXPECT_EQ_INT(t->n_chat_templates, 1);
        EXPECT_EQ_STR(tm_hf_config_chat_template(hf, NULL), "J{{ messages }}\n");
        EXPECT_TRUE(tm_hf_config_chat_template(hf, "rag") == NULL);
        EXPECT_TRUE(t->tokenizer_json_path != NULL && t->tokenizer_model_path != NULL);
    }
    tm_hf_config_free(hf);

    /* Size cap applies to every file, including the template. */
    p.max_file_bytes = 10;
    hf = NULL;
    EXPECT_EQ_INT(tm_hf_config_load(&p, &hf), TM_ERR_FORMAT);
    EXPECT_TRUE(hf == NULL);
    EXPECT_TRUE(strstr(tm_last_error(), "limit") != NULL);

    /* Missing config.json in a folder. */
    char cfg[512];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    remove(cfg);
    p.max_file_bytes = 0; /* 0 means the default cap */
    EXPECT_EQ_INT(tm_hf_config_load(&p, &hf), TM_ERR_NOT_FOUND);
    EXPECT_TRUE(strstr(tm_last_error(), "config.json not found") != NULL);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    EXPECT_EQ_INT(system(cmd), 0);

    /* A NUL byte inside the template text is refused. */
    tm_hf_params q = tm_hf_params_default();
    q.allow_missing_config = true;
    q.chat_template_jinja = "a\0b";
    q.chat_template_jinja_len = 3;
    EXPECT_EQ_INT(tm_hf_config_load(&q, &hf), TM_ERR_FORMAT);
}

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

/* jansson allocates with its own allocator; only TensorMesh's allocations fail here. */
TEST(oom_injection) {
    char dir[1024];
    fixture_dir(dir, sizeof dir);
    tm_hf_params p = tm_hf_params_default();
    p.dir = dir;
    tm_allocator a = {inj_malloc, inj_realloc, inj_free, NULL};
    int          ok_at = -1;
    for (int n = 0; n < 200 && ok_at < 0; n++) {
        tm_set_allocator(&a);
        inj_left = n;
        tm_hf_config *hf = NULL;
        tm_status     st = tm_hf_config_load(&p, &hf);
        tm_set_allocator(NULL);
        if (st == TM_OK)
            ok_at = n;
        else if (hf != NULL || st != TM_ERR_NOMEM)
            TM__FAIL_AT("at %d: %s (%s)", n, tm_status_str(st), tm_last_error());
        tm_hf_config_free(hf);
    }
    EXPECT_TRUE(ok_at > 0);
}

TM_TEST_MAIN()
