/*
 * test_model.c - model loading, golden logits against Hugging Face transformers,
 * greedy decoding, the llama2.c checkpoint path, and the no-allocation decode step.
 *
 * Fixtures: tests/golden/models/<family>.{gguf,json,logits.f32}, made by
 * scripts/gen_golden.py (transformers float32 eager on CPU). Tolerance: max
 * |ours - HF| / max |HF| < rel_tol (1e-4) over every position of every prompt.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "tm/tm_gguf.h"
#include "tm/tm_model.h"
#include "tm/tm_sched.h"
#include "tm/tm_server.h"

#define GOLDEN_DIR TM_SOURCE_DIR "/tests/golden/models/"

static json_t *load_meta(const char *family) {
    char path[1024];
    snprintf(path, sizeof path, GOLDEN_DIR "%s.json", family);
    json_error_t err;
    json_t      *j = json_load_file(path, 0, &err);
    if (j == NULL)
        fprintf(stderr, "  cannot read %s: %s\n", path, err.text);
    return j;
}

static float *load_logits(const char *family, const char *ref, size_t n) {
    char path[1024];
    if (ref != NULL)
        snprintf(path, sizeof path, GOLDEN_DIR "%s", ref);
    else
        snprintf(path, sizeof path, GOLDEN_DIR "%s.logits.f32", family);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    float *buf = malloc(n * sizeof(float));
    size_t got = fread(buf, sizeof(float), n, f);
    fclose(f);
    if (got != n) {
        free(buf);
        return NULL;
    }
    return buf;
}

static int argmax(const float *x, int n) {
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

/* source: "%s.gguf" (default) or e.g. "%s-hf" (an HF folder); recipe: optional JSON
 * recipe file under tests/golden/recipes/; abs_tol > 0 replaces the fixture's rel_tol;
 * greedy_check: also check the greedy continuation token by token (false where a near tie in
 * the reference flips under a coarser format, stated at the caller). */
static void run_golden_full(const char *family, const char *source, const char *recipe,
                            const char *ref_logits, tm_dtype kv_dtype, double tol_scale,
                            bool greedy_check) {
    json_t *meta = load_meta(family);
    ASSERT_TRUE(meta != NULL);
    char path[1024], fmt[64], rpath[1024];
    snprintf(fmt, sizeof fmt, GOLDEN_DIR "%s", source ? source : "%s.gguf");
    snprintf(path, sizeof path, fmt, family);
    tm_model_params mp = tm_model_params_default();
    mp.path = path;
    if (recipe != NULL) {
        snprintf(rpath, sizeof rpath, TM_SOURCE_DIR "/tests/golden/recipes/%s", recipe);
        mp.recipe_path = rpath;
    }
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    const int    V = tm_model_get_hparams(m)->n_vocab;
    json_t      *prompts = json_object_get(meta, "prompts");
    json_t      *greedy = json_object_get(meta, "greedy");
    const double tol = json_real_value(json_object_get(meta, "rel_tol")) * tol_scale;
    size_t       total = 0;
    for (size_t i = 0; i < json_array_size(prompts); i++)
        total += json_array_size(json_array_get(prompts, i)) * (size_t)V;
    float *ref = load_logits(family, ref_logits, total);
    ASSERT_TRUE(ref != NULL);

    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = 64;
    cp.n_batch = 32;
    cp.n_threads = 2;
    cp.logits_all = true;
    cp.kv_dtype = kv_dtype;
    tm_ctx *ctx = NULL;
    ASSERT_OK(tm_ctx_init(m, &cp, &ctx));
    size_t off = 0;
    double worst = 0.0;
    for (size_t pi = 0; pi < json_array_size(prompts); pi++) {
        json_t *pr = json_array_get(prompts, pi);
        int32_t n = (int32_t)json_array_size(pr), ids[64];
        for (int32_t i = 0; i < n; i++)
            ids[i] = (int32_t)json_integer_value(json_array_get(pr, (size_t)i));
        tm_ctx_clear(ctx);
        EXPECT_OK(tm_ctx_decode(ctx, ids, n));
        for (int32_t t = 0; t < n; t++) {
            const float *ours = tm_ctx_logits(ctx, t), *hf = ref + off + (size_t)t * V;
            double       mx = 0, md = 0;
            for (int v = 0; v < V; v++) {
                mx = fmax(mx, fabs(hf[v]));
                md = fmax(md, fabs((double)ours[v] - hf[v]));
            }
            worst = fmax(worst, md / mx);
        }
        off += (size_t)n * V;
        /* greedy continuation, one token per step through the KV cache (the greedy
         * tokens are the float32 model's: not checked against other references) */
        json_t *want = ref_logits == NULL && greedy_check ? json_array_get(greedy, pi) : NULL;
        int32_t tok = argmax(tm_ctx_logits(ctx, -1), V);
        for (size_t s = 0; s < json_array_size(want); s++) {
            int32_t w = (int32_t)json_integer_value(json_array_get(want, s));
            if (tok != w) {
                TM__FAIL_AT("%s prompt %zu step %zu: greedy %d, HF %d", family, pi, s, tok, w);
                break;
            }
            EXPECT_OK(tm_ctx_decode(ctx, &tok, 1));
            tok = argmax(tm_ctx_logits(ctx, -1), V);
        }
    }
    printf("  %s from %s (kv %s): max relative logit error %.3g (tol %.3g)\n", family, path,
           tm_dtype_name(kv_dtype), worst, tol);
    EXPECT_TRUE(worst < tol);
    free(ref);
    tm_ctx_free(ctx);
    tm_model_free(m);
    json_decref(meta);
}

static void run_golden_ref(const char *family, const char *source, const char *recipe,
                           const char *ref_logits, tm_dtype kv_dtype, double tol_scale) {
    run_golden_full(family, source, recipe, ref_logits, kv_dtype, tol_scale, true);
}

static void run_golden_src(const char *family, const char *source, const char *recipe,
                           tm_dtype kv_dtype, double tol_scale) {
    run_golden_ref(family, source, recipe, NULL, kv_dtype, tol_scale);
}

static void run_golden(const char *family, tm_dtype kv_dtype, double tol_scale) {
    run_golden_src(family, NULL, NULL, kv_dtype, tol_scale);
}

TEST(golden_llama) { run_golden("llama", TM_DTYPE_F32, 1.0); }
TEST(golden_llama3_rope_scaling) { run_golden("llama3", TM_DTYPE_F32, 1.0); }
TEST(golden_qwen2) { run_golden("qwen2", TM_DTYPE_F32, 1.0); }
TEST(golden_qwen3) { run_golden("qwen3", TM_DTYPE_F32, 1.0); }
TEST(golden_gemma3) { run_golden("gemma3", TM_DTYPE_F32, 1.0); }
/* hidden 256, one layer: the fixture for K-format quantization (tests/py/test_quant_golden.py) */
TEST(golden_llama256) { run_golden("llama256", TM_DTYPE_F32, 1.0); }
/* GGUF files written from the HF folders the way llama.cpp's converter lays them out
 * (scripts/gen_golden.py gguf-hf): mistral (q/k rows permuted, window 4 on every layer),
 * phi3 (fused attn_qkv, ffn_up holding gate then up), gpt2 (learned position_embd, biases,
 * LayerNorm, output.weight written beside token_embd). */
TEST(golden_mistral) { run_golden("mistral", TM_DTYPE_F32, 1.0); }
TEST(golden_phi3) { run_golden("phi3", TM_DTYPE_F32, 1.0); }
TEST(golden_gpt2) { run_golden("gpt2", TM_DTYPE_F32, 1.0); }
/* F16 cache (the tests above ask for F32 to measure the engine, not the cache format): rounding K
 * and V to half precision costs 2.4e-4 .. 8.0e-4 relative (measured on the trained fixtures:
 * llama 8.0e-4, llama256 4.4e-4, llama3 7.3e-4, qwen2 5.6e-4, qwen3 4.1e-4, gemma3 2.4e-4,
 * mistral 5.2e-4, phi3 4.8e-4, gpt2 2.8e-4). Bound 3e-3 (30 x the fixtures' 1e-4). qwen2 checks
 * logits only: on the earlier random fixture its third prompt's greedy run flipped at a near tie
 * (HF top-2 margin 6.4e-4); on the trained one every greedy run matches with F16 too. */
TEST(golden_llama_kv_f16) { run_golden("llama", TM_DTYPE_F16, 30.0); }
TEST(golden_llama256_kv_f16) { run_golden("llama256", TM_DTYPE_F16, 30.0); }
TEST(golden_llama3_kv_f16) { run_golden("llama3", TM_DTYPE_F16, 30.0); }
TEST(golden_qwen2_kv_f16) { run_golden_full("qwen2", NULL, NULL, NULL, TM_DTYPE_F16, 30.0, false); }
TEST(golden_qwen3_kv_f16) { run_golden("qwen3", TM_DTYPE_F16, 30.0); }
TEST(golden_gemma3_kv_f16) { run_golden("gemma3", TM_DTYPE_F16, 30.0); }
TEST(golden_hf_mistral_kv_f16) { run_golden_src("mistral", "%s-hf", NULL, TM_DTYPE_F16, 30.0); }
TEST(golden_hf_phi3_kv_f16) { run_golden_src("phi3", "%s-hf", NULL, TM_DTYPE_F16, 30.0); }
TEST(golden_hf_gpt2_kv_f16) { run_golden_src("gpt2", "%s-hf", NULL, TM_DTYPE_F16, 30.0); }

/* The same weights from the HF folders (config.json + safetensors, as save_pretrained
 * writes them): HF q/k rows are not permuted, so llama runs with neox RoPE; Gemma's
 * norms get their 1 + w; Llama-3 scaling comes from rope_parameters. */
TEST(golden_hf_llama) { run_golden_src("llama", "%s-hf", NULL, TM_DTYPE_F32, 1.0); }
TEST(golden_hf_llama3) { run_golden_src("llama3", "%s-hf", NULL, TM_DTYPE_F32, 1.0); }
TEST(golden_hf_qwen2) { run_golden_src("qwen2", "%s-hf", NULL, TM_DTYPE_F32, 1.0); }
TEST(golden_hf_qwen3) { run_golden_src("qwen3", "%s-hf", NULL, TM_DTYPE_F32, 1.0); }
TEST(golden_hf_gemma3) { run_golden_src("gemma3", "%s-hf", NULL, TM_DTYPE_F32, 1.0); }
/* Families fixtured from HF folders only: mistral (sliding window 4 on every layer),
 * phi3 (fused qkv_proj and gate_up_proj, window 6), gpt2 (LayerNorm, learned positions,
 * biases, GELU, tied output, Conv1D weights). */
TEST(golden_hf_mistral) { run_golden_src("mistral", "%s-hf", NULL, TM_DTYPE_F32, 1.0); }
TEST(golden_hf_phi3) { run_golden_src("phi3", "%s-hf", NULL, TM_DTYPE_F32, 1.0); }
TEST(golden_hf_gpt2) { run_golden_src("gpt2", "%s-hf", NULL, TM_DTYPE_F32, 1.0); }

/* A learned position table has n_ctx_train rows: a longer context is refused up front. */
TEST(learned_positions_cap_the_context) {
    tm_model_params mp = tm_model_params_default();
    mp.path = TM_SOURCE_DIR "/tests/golden/models/gpt2-hf";
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = tm_model_get_hparams(m)->n_ctx_train + 1;
    tm_ctx *c = NULL;
    EXPECT_EQ_INT(tm_ctx_init(m, &cp, &c), TM_ERR_INVALID);
    EXPECT_TRUE(c == NULL);
    EXPECT_TRUE(strstr(tm_last_error(), "learned positions") != NULL);
    cp.n_ctx = tm_model_get_hparams(m)->n_ctx_train;
    EXPECT_OK(tm_ctx_init(m, &cp, &c));
    tm_ctx_free(c);
    tm_model_free(m);
}

/* Half-precision weights: against transformers run on the same rounded weights in
 * float32 (reference.logits.f32 in the folder) at the float32 tolerance, and against
 * the float32 model: F16 measures 1.4e-3, bound 1e-2; BF16 (8-bit mantissa) 1.0e-2, bound 3e-2.
 * llama-hf-f16 is sharded (model.safetensors.index.json). */
TEST(golden_hf_llama_f16_sharded) {
    run_golden_ref("llama", "%s-hf-f16", NULL, "llama-hf-f16/reference.logits.f32", TM_DTYPE_F32,
                   1.0);
    run_golden_src("llama", "%s-hf-f16", NULL, TM_DTYPE_F32, 100.0);
}
TEST(golden_hf_qwen2_bf16) {
    run_golden_ref("qwen2", "%s-hf-bf16", NULL, "qwen2-hf-bf16/reference.logits.f32", TM_DTYPE_F32,
                   1.0);
    run_golden_src("qwen2", "%s-hf-bf16", NULL, TM_DTYPE_F32, 300.0);
}

/* A JSON recipe equal to the built-in llama gives bit-identical logits, from GGUF
 * and from the HF folder. */
static void compare_recipe_logits(const char *path, const char *recipe) {
    float  *out[2] = {NULL, NULL};
    int32_t V = 0, ids[7] = {1, 17, 42, 99, 3, 250, 8};
    for (int k = 0; k < 2; k++) {
        tm_model_params mp = tm_model_params_default();
        mp.path = path;
        mp.recipe_path = k ? recipe : NULL;
        tm_model *m = NULL;
        ASSERT_OK(tm_model_load(&mp, &m));
        V = tm_model_get_hparams(m)->n_vocab;
        tm_ctx_params cp = tm_ctx_params_default();
        cp.n_ctx = 16;
        cp.n_threads = 2;
        cp.logits_all = true;
        tm_ctx *ctx = NULL;
        ASSERT_OK(tm_ctx_init(m, &cp, &ctx));
        ASSERT_OK(tm_ctx_decode(ctx, ids, 7));
        out[k] = malloc((size_t)V * 7 * sizeof(float));
        for (int t = 0; t < 7; t++)
            memcpy(out[k] + (size_t)t * V, tm_ctx_logits(ctx, t), (size_t)V * sizeof(float));
        tm_ctx_free(ctx);
        tm_model_free(m);
    }
    EXPECT_TRUE(memcmp(out[0], out[1], (size_t)V * 7 * sizeof(float)) == 0);
    free(out[0]);
    free(out[1]);
}

#define RECIPE_DIR TM_SOURCE_DIR "/tests/golden/recipes/"
TEST(json_recipe_equals_builtin) {
    compare_recipe_logits(GOLDEN_DIR "llama.gguf", RECIPE_DIR "llama.json");
    compare_recipe_logits(GOLDEN_DIR "llama-hf", RECIPE_DIR "llama.json");
    compare_recipe_logits(GOLDEN_DIR "gemma3.gguf", RECIPE_DIR "gemma3-base.json");
    compare_recipe_logits(GOLDEN_DIR "gemma3-hf", RECIPE_DIR "gemma3-base.json");
}
TEST(golden_json_recipe_llama) {
    run_golden_src("llama", "%s-hf", "llama.json", TM_DTYPE_F32, 1.0);
}

static void expect_recipe_load_error(const char *path, const char *json, tm_status want,
                                     const char *needle) {
    tm_model_params mp = tm_model_params_default();
    mp.path = path;
    mp.recipe_json = json;
    mp.recipe_json_len = strlen(json);
    tm_model *m = NULL;
    EXPECT_EQ_INT(tm_model_load(&mp, &m), want);
    EXPECT_TRUE(m == NULL);
    if (strstr(tm_last_error(), needle) == NULL)
        TM__FAIL_AT("error '%s' does not name '%s'", tm_last_error(), needle);
}

/* Bad recipes and recipes that do not fit the weights fail naming the problem. */
TEST(json_recipe_errors) {
    expect_recipe_load_error(GOLDEN_DIR "llama.gguf", "{\"arch\": \"x\", \"norm\": \"l2\"}",
                             TM_ERR_FORMAT, "'norm'");
    /* qk_norm wants tensors the llama file lacks */
    expect_recipe_load_error(GOLDEN_DIR "llama.gguf", "{\"base\": \"llama\", \"qk_norm\": true}",
                             TM_ERR_NOT_FOUND, "blk.0.attn_q_norm.weight");
    /* a recipe that names no HF tensor for a slot it needs */
    expect_recipe_load_error(GOLDEN_DIR "llama-hf",
                             "{\"arch\": \"x\", \"hf_tensors\": {\"ffn_gate\": null}}",
                             TM_ERR_NOT_FOUND, "ffn_gate");
    /* a wrong name pattern: the tensor it names is missing */
    expect_recipe_load_error(
        GOLDEN_DIR "llama-hf",
        "{\"base\": \"llama\", \"hf_tensors\": {\"attn_q\": \"layers.{N}.wq\"}}", TM_ERR_NOT_FOUND,
        "layers.0.wq.weight");
    /* a fused layout on unfused weights: shape mismatch names the tensor */
    expect_recipe_load_error(GOLDEN_DIR "llama.gguf",
                             "{\"base\": \"llama\", \"fused_gate_up\": true}", TM_ERR_FORMAT,
                             "blk.0.ffn_up.weight");
    tm_model_params mp = tm_model_params_default();
    mp.path = GOLDEN_DIR "llama.gguf";
    mp.recipe_path = "/nonexistent/recipe.json";
    tm_model *m = NULL;
    EXPECT_EQ_INT(tm_model_load(&mp, &m), TM_ERR_IO);
    EXPECT_TRUE(strstr(tm_last_error(), "/nonexistent/recipe.json") != NULL);
}

/* HF folders: unknown model_type, missing tensor. */
TEST(hf_load_errors) {
    char dir[] = "/tmp/tm_test_hf_XXXXXX";
    ASSERT_TRUE(mkdtemp(dir) != NULL);
    char cfg[512], st[512], cmd[2048];
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    FILE *f = fopen(cfg, "w");
    fputs("{\"model_type\": \"mamba9\", \"hidden_size\": 64}", f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "cp " GOLDEN_DIR "llama-hf/model.safetensors %s", st);
    ASSERT_TRUE(system(cmd) == 0);
    tm_model_params mp = tm_model_params_default();
    mp.path = dir;
    tm_model *m = NULL;
    EXPECT_EQ_INT(tm_model_load(&mp, &m), TM_ERR_UNSUPPORTED);
    EXPECT_TRUE(strstr(tm_last_error(), "mamba9") != NULL);
    /* the qwen2 recipe on llama weights: the q/k/v biases are missing */
    snprintf(cmd, sizeof cmd,
             "sed 's/\"model_type\": \"llama\"/\"model_type\": \"qwen2\"/' " GOLDEN_DIR
             "llama-hf/config.json > %s",
             cfg);
    ASSERT_TRUE(system(cmd) == 0);
    EXPECT_EQ_INT(tm_model_load(&mp, &m), TM_ERR_NOT_FOUND);
    EXPECT_TRUE(strstr(tm_last_error(), "model.layers.0.self_attn.q_proj.bias") != NULL);
    unlink(cfg);
    unlink(st);
    rmdir(dir);
}

/* The KV cache is F16 unless the caller asks for F32 (docs/decisions.md), in the context,
 * scheduler and server defaults alike; other element types are refused by name. */
TEST(kv_dtype_default_f16_and_checked) {
    EXPECT_EQ_INT(tm_ctx_params_default().kv_dtype, TM_DTYPE_F16);
    EXPECT_EQ_INT(tm_sched_params_default().kv_dtype, TM_DTYPE_F16);
    EXPECT_EQ_INT(tm_server_params_default().kv_dtype, TM_DTYPE_F16);
    tm_model_params mp = tm_model_params_default();
    mp.path = GOLDEN_DIR "llama.gguf";
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    const tm_dtype bad[] = {TM_DTYPE_BF16, TM_DTYPE_Q8_0, TM_DTYPE_I32};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tm_ctx_params cp = tm_ctx_params_default();
        cp.n_ctx = 16;
        cp.n_threads = 1;
        cp.kv_dtype = bad[i];
        tm_ctx *ctx = NULL;
        EXPECT_EQ_INT(tm_ctx_init(m, &cp, &ctx), TM_ERR_INVALID);
        EXPECT_TRUE(ctx == NULL);
        EXPECT_TRUE(strstr(tm_last_error(), tm_dtype_name(bad[i])) != NULL);
    }
    tm_model_free(m);
}

/* Matmul activation precision: names round-trip (any case), anything else is refused by
 * listing the allowed names; q8 is the default of the context, scheduler and server alike
 * (TM_ACT_DEFAULT); tm_ctx_init refuses a value outside the enum and accepts each one. */
TEST(act_type_names_default_and_checked) {
    const tm_act_type all[] = {TM_ACT_Q8, TM_ACT_Q16, TM_ACT_F32};
    const char       *names[] = {"q8", "q16", "f32"};
    for (size_t i = 0; i < 3; i++) {
        tm_act_type t = (tm_act_type)-1;
        EXPECT_EQ_STR(tm_act_type_name(all[i]), names[i]);
        EXPECT_OK(tm_act_type_from_name(names[i], &t));
        EXPECT_EQ_INT(t, all[i]);
        t = (tm_act_type)-1;
        EXPECT_OK(tm_act_type_from_name(i == 1 ? "Q16" : i == 2 ? "F32" : "Q8", &t));
        EXPECT_EQ_INT(t, all[i]);
    }
    const char *bad[] = {"q4", "", "q", "q8 ", "q16x", "f16", "fp32", "8", NULL};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tm_act_type t = TM_ACT_F32;
        EXPECT_EQ_INT(tm_act_type_from_name(bad[i], &t), TM_ERR_INVALID);
        EXPECT_EQ_INT(t, TM_ACT_F32); /* untouched on failure */
        EXPECT_TRUE(strstr(tm_last_error(), "q8, q16 or f32") != NULL);
    }
    EXPECT_EQ_STR(tm_act_type_name((tm_act_type)3), "?");
    EXPECT_EQ_STR(tm_act_type_name((tm_act_type)-1), "?");
    EXPECT_EQ_INT(TM_ACT_DEFAULT, TM_ACT_Q8);
    EXPECT_EQ_INT(tm_ctx_params_default().act_type, TM_ACT_DEFAULT);
    EXPECT_EQ_INT(tm_sched_params_default().act_type, TM_ACT_DEFAULT);
    EXPECT_EQ_INT(tm_server_params_default().act_type, TM_ACT_DEFAULT);

    tm_model_params mp = tm_model_params_default();
    mp.path = GOLDEN_DIR "llama.gguf";
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    const int bad_vals[] = {-1, 3, 100};
    for (size_t i = 0; i < sizeof bad_vals / sizeof bad_vals[0]; i++) {
        tm_ctx_params cp = tm_ctx_params_default();
        cp.n_ctx = 16;
        cp.n_threads = 1;
        cp.act_type = (tm_act_type)bad_vals[i];
        tm_ctx *ctx = NULL;
        EXPECT_EQ_INT(tm_ctx_init(m, &cp, &ctx), TM_ERR_INVALID);
        EXPECT_TRUE(ctx == NULL);
        EXPECT_TRUE(strstr(tm_last_error(), "act_type") != NULL);
    }
    const int32_t ids[4] = {1, 17, 42, 99};
    for (size_t i = 0; i < 3; i++) {
        tm_ctx_params cp = tm_ctx_params_default();
        cp.n_ctx = 16;
        cp.n_threads = 1;
        cp.act_type = all[i];
        tm_ctx *ctx = NULL;
        ASSERT_OK(tm_ctx_init(m, &cp, &ctx));
        EXPECT_OK(tm_ctx_decode(ctx, ids, 4));
        tm_ctx_free(ctx);
    }
    tm_model_free(m);
}

/* A prompt longer than the context is refused with both numbers. */
TEST(prompt_longer_than_context) {
    tm_model_params mp = tm_model_params_default();
    mp.path = GOLDEN_DIR "llama.gguf";
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = 16;
    cp.n_batch = 16;
    cp.n_threads = 1;
    tm_ctx *ctx = NULL;
    ASSERT_OK(tm_ctx_init(m, &cp, &ctx));
    int32_t ids[20] = {0};
    EXPECT_EQ_INT(tm_ctx_decode(ctx, ids, 20), TM_ERR_INVALID);
    EXPECT_TRUE(strstr(tm_last_error(), "20 tokens") != NULL);
    EXPECT_OK(tm_ctx_decode(ctx, ids, 10));
    EXPECT_EQ_INT(tm_ctx_decode(ctx, ids, 10), TM_ERR_FULL);
    EXPECT_TRUE(strstr(tm_last_error(), "context full") != NULL);
    float v[64];
    EXPECT_EQ_INT(tm_ctx_embed(ctx, m, ids, 4, v, 64), TM_ERR_INVALID); /* not an embedder */
    tm_ctx_free(ctx);
    tm_model_free(m);
}

/* all-MiniLM-L6-v2 (BERT recipe from its HF folder): mean-pooled, normalized
 * sentence embeddings equal sentence-transformers' (tests/golden/minilm_embeddings.json,
 * scripts/gen_golden.py embed) within 1e-4 absolute and 1e-4 in cosine. */
TEST(embed_minilm) {
    const char *dir = tm_test_minilm_dir();
    if (dir == NULL) {
        printf("  SKIPPED: models/all-MiniLM-L6-v2 is absent (scripts/fetch_models.sh minilm)\n");
        return;
    }
    json_error_t err;
    json_t *meta = json_load_file(TM_SOURCE_DIR "/tests/golden/minilm_embeddings.json", 0, &err);
    ASSERT_TRUE(meta != NULL);
    tm_model_params mp = tm_model_params_default();
    mp.path = dir;
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    const int32_t E = tm_model_n_embd_out(m);
    EXPECT_EQ_INT(E, 384);
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    cp.kv_dtype = TM_DTYPE_F32; /* the engine against a float32 reference, not the cache */
    tm_ctx *ctx = NULL;
    ASSERT_OK(tm_ctx_init(m, &cp, &ctx));
    json_t *cases = json_object_get(meta, "cases");
    double  worst_abs = 0, worst_cos = 0;
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *cs = json_array_get(cases, c), *jids = json_object_get(cs, "ids");
        json_t *want = json_object_get(cs, "embedding");
        int32_t ids[64], n = (int32_t)json_array_size(jids);
        ASSERT_TRUE(n <= 64 && json_array_size(want) == (size_t)E);
        for (int32_t i = 0; i < n; i++)
            ids[i] = (int32_t)json_integer_value(json_array_get(jids, (size_t)i));
        float v[384];
        ASSERT_OK(tm_ctx_embed(ctx, m, ids, n, v, E));
        double dot = 0, n1 = 0, n2 = 0;
        for (int32_t i = 0; i < E; i++) {
            double w = json_real_value(json_array_get(want, (size_t)i));
            worst_abs = fmax(worst_abs, fabs(v[i] - w));
            dot += v[i] * w;
            n1 += (double)v[i] * v[i];
            n2 += w * w;
        }
        worst_cos = fmax(worst_cos, 1.0 - dot / sqrt(n1 * n2));
    }
    printf("  MiniLM: max abs error %.3g, max 1 - cos %.3g\n", worst_abs, worst_cos);
    EXPECT_TRUE(worst_abs < 1e-4);
    EXPECT_TRUE(worst_cos < 1e-4);
    /* more tokens than the context holds: an error, not a crash */
    int32_t many[80] = {0};
    EXPECT_TRUE(tm_ctx_embed(ctx, m, many, 80, (float[384]){0}, E) != TM_OK);
    tm_ctx_free(ctx);
    tm_model_free(m);
    json_decref(meta);
}

/* Tiny random BertModel (BertConfig, scripts/gen_golden.py): pooled embeddings of the
 * three prompts within 1e-4 of transformers, from the HF folder and from its GGUF
 * (llama.cpp's bert layout: token_types, token_embd_norm, attn_output_norm,
 * layer_output_norm, biases as .bias tensors). */
static void bert_embed_golden(const char *path) {
    json_error_t err;
    json_t      *meta = json_load_file(GOLDEN_DIR "bert-hf/reference.embed.json", 0, &err);
    ASSERT_TRUE(meta != NULL);
    tm_model_params mp = tm_model_params_default();
    mp.path = path;
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    const int32_t E = tm_model_n_embd_out(m);
    EXPECT_EQ_INT(E, 64);
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = 32;
    cp.n_threads = 2;
    cp.kv_dtype = TM_DTYPE_F32; /* the engine against a float32 reference, not the cache */
    tm_ctx *ctx = NULL;
    ASSERT_OK(tm_ctx_init(m, &cp, &ctx));
    json_t *prompts = json_object_get(meta, "prompts"), *embs = json_object_get(meta, "embeddings");
    double  worst = 0;
    for (size_t p = 0; p < json_array_size(prompts); p++) {
        json_t *pr = json_array_get(prompts, p), *want = json_array_get(embs, p);
        int32_t ids[32], n = (int32_t)json_array_size(pr);
        for (int32_t i = 0; i < n; i++)
            ids[i] = (int32_t)json_integer_value(json_array_get(pr, (size_t)i));
        float v[64];
        ASSERT_OK(tm_ctx_embed(ctx, m, ids, n, v, E));
        for (int32_t i = 0; i < E; i++)
            worst = fmax(worst, fabs(v[i] - json_real_value(json_array_get(want, (size_t)i))));
    }
    printf("  bert from %s: max abs embedding error %.3g\n", path, worst);
    EXPECT_TRUE(worst < 1e-4);
    tm_ctx_free(ctx);
    tm_model_free(m);
    json_decref(meta);
}
TEST(golden_hf_bert_embed) { bert_embed_golden(GOLDEN_DIR "bert-hf"); }
TEST(golden_bert_embed) { bert_embed_golden(GOLDEN_DIR "bert.gguf"); }

/* The decode step must not allocate: measure, reserve, run. */
TEST(decode_does_not_allocate) {
    tm_model_params mp = tm_model_params_default();
    mp.path = GOLDEN_DIR "qwen2.gguf";
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = 48;
    cp.n_batch = 16;
    cp.n_threads = 2;
    tm_ctx *ctx = NULL;
    ASSERT_OK(tm_ctx_init(m, &cp, &ctx));
    int32_t  prompt[5] = {1, 2, 3, 4, 5};
    uint64_t before = tm_alloc_count();
    EXPECT_OK(tm_ctx_decode(ctx, prompt, 5));
    for (int i = 0; i < 40; i++) {
        int32_t tok = argmax(tm_ctx_logits(ctx, -1), 256);
        EXPECT_OK(tm_ctx_decode(ctx, &tok, 1));
    }
    EXPECT_EQ_INT(tm_alloc_count() - before, 0);
    /* a full cache and bad ids are errors, not crashes */
    int32_t tok = 1;
    EXPECT_EQ_INT(tm_ctx_decode(ctx, &tok, 1), TM_OK);
    EXPECT_EQ_INT(tm_ctx_n_past(ctx), 46);
    EXPECT_EQ_INT(tm_ctx_decode(ctx, prompt, 5), TM_ERR_FULL);
    tok = 256;
    EXPECT_EQ_INT(tm_ctx_decode(ctx, &tok, 1), TM_ERR_INVALID);
    tok = -1;
    EXPECT_EQ_INT(tm_ctx_decode(ctx, &tok, 1), TM_ERR_INVALID);
    tm_ctx_free(ctx);
    tm_model_free(m);
}

/* A copy of a golden GGUF with a few changes, for load tests. */
typedef struct gguf_edit {
    const char  *arch;         /* respell: general.architecture and every "<old arch>." key */
    const char  *drop_key;     /* a kv left out */
    const char  *u32_key;      /* a uint32 kv added or replaced... */
    uint32_t     u32_val;      /* ...with this value */
    const char  *str_key;      /* a string kv added or replaced... */
    const char  *str_val;      /* ...with this value */
    const char  *f32_key;      /* a float32 kv added or replaced... */
    float        f32_val;      /* ...with this value */
    const char  *drop_tensor;  /* a tensor left out */
    const char  *half_tensor;  /* a tensor with half its rows: a shape mismatch */
    const char  *extra_tensor; /* an F32 tensor added... */
    int64_t      extra_n;      /* ...of this many elements... */
    const float *extra_data;   /* ...with these values */
} gguf_edit;

/* Writes GOLDEN_DIR src with the changes of e to a temporary file named in path. */
static void gguf_copy_edited(const char *src, const gguf_edit *e, char path[32]) {
    char in[1024];
    snprintf(in, sizeof in, GOLDEN_DIR "%s", src);
    tm_gguf *g = NULL;
    ASSERT_OK(tm_gguf_open(in, &g));
    tm_strview old_arch;
    ASSERT_OK(tm_gguf_get_str(g, "general.architecture", &old_arch));
    tm_gguf_writer *w = NULL;
    ASSERT_OK(tm_gguf_writer_init(&w));
    for (int64_t i = 0; i < tm_gguf_n_kv(g); i++) {
        tm_strview k = tm_gguf_kv_key(g, i);
        char       key[256];
        snprintf(key, sizeof key, "%.*s", (int)k.len, k.ptr);
        if (e->drop_key != NULL && strcmp(key, e->drop_key) == 0)
            continue;
        if (e->arch != NULL && k.len > old_arch.len &&
            memcmp(k.ptr, old_arch.ptr, old_arch.len) == 0 && k.ptr[old_arch.len] == '.')
            snprintf(key, sizeof key, "%s%.*s", e->arch, (int)(k.len - old_arch.len),
                     k.ptr + old_arch.len);
        switch (tm_gguf_kv_type(g, i)) {
        case TM_GGUF_TYPE_UINT32:
            ASSERT_OK(tm_gguf_writer_set_u32(w, key, tm_gguf_kv_u32(g, i)));
            break;
        case TM_GGUF_TYPE_FLOAT32:
            ASSERT_OK(tm_gguf_writer_set_f32(w, key, tm_gguf_kv_f32(g, i)));
            break;
        case TM_GGUF_TYPE_BOOL:
            ASSERT_OK(tm_gguf_writer_set_bool(w, key, tm_gguf_kv_bool(g, i)));
            break;
        case TM_GGUF_TYPE_STRING: {
            tm_strview v = tm_gguf_kv_str(g, i);
            ASSERT_OK(tm_gguf_writer_set_strn(w, key, v.ptr, v.len));
            break;
        }
        default: /* the golden fixtures hold no other kv types */
            TM__FAIL_AT("%s: kv %s has a type this helper does not copy", src, key);
            return;
        }
    }
    if (e->arch != NULL)
        ASSERT_OK(tm_gguf_writer_set_str(w, "general.architecture", e->arch));
    if (e->u32_key != NULL)
        ASSERT_OK(tm_gguf_writer_set_u32(w, e->u32_key, e->u32_val));
    if (e->str_key != NULL)
        ASSERT_OK(tm_gguf_writer_set_str(w, e->str_key, e->str_val));
    if (e->f32_key != NULL)
        ASSERT_OK(tm_gguf_writer_set_f32(w, e->f32_key, e->f32_val));
    for (int64_t i = 0; i < tm_gguf_n_tensors(g); i++) {
        const tm_gguf_tensor *t = tm_gguf_tensor_at(g, i);
        char                  name[128];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (e->drop_tensor != NULL && strcmp(name, e->drop_tensor) == 0)
            continue;
        int64_t ne[4] = {t->ne[0], t->ne[1], t->ne[2], t->ne[3]};
        size_t  nb = t->n_bytes;
        if (e->half_tensor != NULL && strcmp(name, e->half_tensor) == 0) {
            ne[1] = ne[1] / 2;
            nb /= 2;
        }
        ASSERT_OK(tm_gguf_writer_add_tensor(w, name, t->dtype, t->n_dims, ne, t->data, nb));
    }
    if (e->extra_tensor != NULL)
        ASSERT_OK(tm_gguf_writer_add_tensor(w, e->extra_tensor, TM_DTYPE_F32, 1,
                                            (int64_t[]){e->extra_n}, e->extra_data,
                                            (size_t)e->extra_n * sizeof(float)));
    snprintf(path, 32, "/tmp/tm_test_model_XXXXXX");
    int fd = mkstemp(path);
    ASSERT_TRUE(fd >= 0);
    close(fd);
    ASSERT_OK(tm_gguf_writer_write(w, path));
    tm_gguf_writer_free(w);
    tm_gguf_close(g);
}

/* Loads an edited copy of a golden GGUF and expects the failure to name needle. */
static void expect_edit_error(const char *src, const gguf_edit *e, tm_status want,
                              const char *needle) {
    char path[32];
    gguf_copy_edited(src, e, path);
    tm_model_params mp = tm_model_params_default();
    mp.path = path;
    tm_model *m = NULL;
    EXPECT_EQ_INT(tm_model_load(&mp, &m), want);
    EXPECT_TRUE(m == NULL);
    if (strstr(tm_last_error(), needle) == NULL)
        TM__FAIL_AT("error '%s' does not name '%s'", tm_last_error(), needle);
    tm_model_free(m);
    unlink(path);
}

TEST(load_unknown_arch) {
    expect_edit_error("llama.gguf", &(gguf_edit){.arch = "mamba9"}, TM_ERR_UNSUPPORTED, "mamba9");
}
TEST(load_missing_tensor) {
    expect_edit_error("llama.gguf", &(gguf_edit){.drop_tensor = "blk.1.ffn_up.weight"},
                      TM_ERR_NOT_FOUND, "blk.1.ffn_up.weight");
}
TEST(load_shape_mismatch) { /* half the rows: a GQA mismatch */
    expect_edit_error("llama.gguf", &(gguf_edit){.half_tensor = "blk.0.attn_k.weight"},
                      TM_ERR_FORMAT, "blk.0.attn_k.weight");
}

/* Settings of llama.cpp's GGUF keys the graph does not implement are refused, not
 * ignored: pooling other than mean (BERT, from modules.json), Phi-3's LongRoPE factors,
 * YaRN, an attention factor, and linear scaling given twice. */
TEST(load_refuses_unimplemented_settings) {
    expect_edit_error("bert.gguf", &(gguf_edit){.u32_key = "bert.pooling_type", .u32_val = 2},
                      TM_ERR_UNSUPPORTED, "bert.pooling_type = 2 (cls)");
    expect_edit_error("bert.gguf", &(gguf_edit){.u32_key = "bert.pooling_type", .u32_val = 0},
                      TM_ERR_UNSUPPORTED, "(none)");
    static const float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    expect_edit_error(
        "phi3.gguf",
        &(gguf_edit){.extra_tensor = "rope_factors_long.weight", .extra_n = 8, .extra_data = ones},
        TM_ERR_UNSUPPORTED, "LongRoPE");
    expect_edit_error("phi3.gguf",
                      &(gguf_edit){.f32_key = "phi3.rope.scaling.attn_factor", .f32_val = 1.19f},
                      TM_ERR_UNSUPPORTED, "attn_factor");
    expect_edit_error("llama.gguf",
                      &(gguf_edit){.str_key = "llama.rope.scaling.type", .str_val = "yarn"},
                      TM_ERR_UNSUPPORTED, "'yarn'");
    expect_edit_error("llama.gguf",
                      &(gguf_edit){.f32_key = "llama.rope.scaling.factor",
                                   .f32_val = 4.0f,
                                   .extra_tensor = "rope_freqs.weight",
                                   .extra_n = 8,
                                   .extra_data = ones},
                      TM_ERR_UNSUPPORTED, "rope_freqs.weight");
    expect_edit_error("llama.gguf",
                      &(gguf_edit){.f32_key = "llama.rope.scaling.factor", .f32_val = 0.5f},
                      TM_ERR_FORMAT, "out of range");
}

/* Logits of the first prompt of a golden GGUF edited by e (all positions). */
static float *edited_logits(const char *src, const gguf_edit *e, int32_t *n_vocab) {
    char path[32];
    gguf_copy_edited(src, e, path);
    tm_model_params mp = tm_model_params_default();
    mp.path = path;
    tm_model *m = NULL;
    float    *out = NULL;
    tm_ctx   *ctx = NULL;
    int32_t   ids[7] = {1, 17, 42, 99, 3, 250, 8};
    if (tm_model_load(&mp, &m) != TM_OK) {
        TM__FAIL_AT("%s edited: %s", src, tm_last_error());
        goto done;
    }
    *n_vocab = tm_model_get_hparams(m)->n_vocab;
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = 16;
    cp.n_threads = 2;
    cp.logits_all = true;
    if (tm_ctx_init(m, &cp, &ctx) != TM_OK || tm_ctx_decode(ctx, ids, 7) != TM_OK) {
        TM__FAIL_AT("%s edited: %s", src, tm_last_error());
        goto done;
    }
    out = malloc((size_t)*n_vocab * 7 * sizeof(float));
    for (int t = 0; t < 7; t++)
        memcpy(out + (size_t)t * *n_vocab, tm_ctx_logits(ctx, t), (size_t)*n_vocab * sizeof(float));
done:
    tm_ctx_free(ctx);
    tm_model_free(m);
    unlink(path);
    return out;
}

/* Linear RoPE scaling in llama.cpp's keys (rope.scaling.type "linear", rope.scaling.factor;
 * or the older rope.scale_linear) divides every rotation angle by the factor: the same
 * logits as rope_freqs.weight holding the factor for every pair, and not those of the
 * unscaled model. */
TEST(gguf_linear_rope_scaling) {
    static const float fours[8] = {4, 4, 4, 4, 4, 4, 4, 4};
    int32_t            V = 0;
    float             *freqs = edited_logits(
                    "llama.gguf",
                    &(gguf_edit){.extra_tensor = "rope_freqs.weight", .extra_n = 8, .extra_data = fours}, &V);
    float *linear = edited_logits("llama.gguf",
                                  &(gguf_edit){.str_key = "llama.rope.scaling.type",
                                               .str_val = "linear",
                                               .f32_key = "llama.rope.scaling.factor",
                                               .f32_val = 4.0f},
                                  &V);
    float *legacy = edited_logits(
        "llama.gguf", &(gguf_edit){.f32_key = "llama.rope.scale_linear", .f32_val = 4.0f}, &V);
    float *plain = edited_logits("llama.gguf", &(gguf_edit){0}, &V);
    ASSERT_TRUE(freqs && linear && legacy && plain);
    const size_t bytes = (size_t)V * 7 * sizeof(float);
    EXPECT_TRUE(memcmp(freqs, linear, bytes) == 0);
    EXPECT_TRUE(memcmp(freqs, legacy, bytes) == 0);
    EXPECT_TRUE(memcmp(freqs, plain, bytes) != 0);
    /* position 0 has no rotation: equal there */
    EXPECT_TRUE(memcmp(freqs, plain, (size_t)V * sizeof(float)) == 0);
    free(freqs);
    free(linear);
    free(legacy);
    free(plain);
}

/* mistral.gguf respelled the way llama.cpp's converter writes a Mistral: general.architecture
 * "llama", llama.* keys, no sliding window (llama.cpp has none for llama). It loads as llama
 * with full attention: the logits equal the reference (window 4) while a position sees no
 * more than the window, and differ once it sees more. */
TEST(mistral_as_llama_cpp_writes_it) {
    char path[32];
    gguf_copy_edited("mistral.gguf",
                     &(gguf_edit){.arch = "llama", .drop_key = "mistral.attention.sliding_window"},
                     path);
    json_t *meta = load_meta("mistral");
    ASSERT_TRUE(meta != NULL);
    tm_model_params mp = tm_model_params_default();
    mp.path = path;
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    EXPECT_EQ_STR(tm_model_arch(m), "llama");
    EXPECT_EQ_INT(tm_model_get_hparams(m)->n_swa, 0);
    const int V = tm_model_get_hparams(m)->n_vocab, window = 4;
    json_t   *prompts = json_object_get(meta, "prompts");
    size_t    total = 0;
    for (size_t i = 0; i < json_array_size(prompts); i++)
        total += json_array_size(json_array_get(prompts, i)) * (size_t)V;
    float *ref = load_logits("mistral", NULL, total);
    ASSERT_TRUE(ref != NULL);
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = 64;
    cp.n_threads = 2;
    cp.logits_all = true;
    cp.kv_dtype = TM_DTYPE_F32;
    tm_ctx *ctx = NULL;
    ASSERT_OK(tm_ctx_init(m, &cp, &ctx));
    double in_window = 0, beyond = 0;
    size_t off = 0;
    for (size_t pi = 0; pi < json_array_size(prompts); pi++) {
        json_t *pr = json_array_get(prompts, pi);
        int32_t n = (int32_t)json_array_size(pr), ids[64];
        for (int32_t i = 0; i < n; i++)
            ids[i] = (int32_t)json_integer_value(json_array_get(pr, (size_t)i));
        tm_ctx_clear(ctx);
        ASSERT_OK(tm_ctx_decode(ctx, ids, n));
        for (int32_t t = 0; t < n; t++) {
            const float *ours = tm_ctx_logits(ctx, t), *hf = ref + off + (size_t)t * V;
            double       mx = 0, md = 0;
            for (int v = 0; v < V; v++) {
                mx = fmax(mx, fabs(hf[v]));
                md = fmax(md, fabs((double)ours[v] - hf[v]));
            }
            if (t < window)
                in_window = fmax(in_window, md / mx);
            else
                beyond = fmax(beyond, md / mx);
        }
        off += (size_t)n * V;
    }
    printf("  mistral as llama: max relative error %.3g within the window, %.3g beyond\n",
           in_window, beyond);
    EXPECT_TRUE(in_window < 1e-4);
    EXPECT_TRUE(beyond > 1e-2);
    free(ref);
    tm_ctx_free(ctx);
    tm_model_free(m);
    json_decref(meta);
    unlink(path);
}

/* llama2.c checkpoint: loads as the llama recipe; the greedy story is checked
 * against a numpy reimplementation in tests/py/test_golden.py. Here: it runs,
 * is deterministic across thread counts, and starts with the known tokens. */
TEST(llama2c_stories260k) {
    const char *dir = tm_test_shared_data();
    if (dir == NULL) {
        printf("  SKIPPED: ../shared/data is absent\n");
        return;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/stories260K.bin", dir);
    tm_model_params mp = tm_model_params_default();
    mp.path = path;
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    const tm_hparams *hp = tm_model_get_hparams(m);
    EXPECT_EQ_INT(hp->n_vocab, 512);
    EXPECT_EQ_INT(hp->n_embd, 64);
    int32_t out[2][24];
    for (int th = 1; th <= 2; th++) {
        tm_ctx_params cp = tm_ctx_params_default();
        cp.n_threads = th;
        cp.n_ctx = 64;
        tm_ctx *ctx = NULL;
        ASSERT_OK(tm_ctx_init(m, &cp, &ctx));
        int32_t tok = 1; /* BOS */
        for (int i = 0; i < 24; i++) {
            ASSERT_OK(tm_ctx_decode(ctx, &tok, 1));
            tok = argmax(tm_ctx_logits(ctx, -1), hp->n_vocab);
            out[th - 1][i] = tok;
        }
        tm_ctx_free(ctx);
    }
    for (int i = 0; i < 24; i++)
        EXPECT_EQ_INT(out[0][i], out[1][i]);
    tm_model_free(m);
}

/* ---- multi-sequence batches (tm_ctx_decode_batch) over the paged KV pool ------- */

#define BT_SEQ 4
#define BT_GEN 8

static double rel_err(const float *a, const float *b, int n) {
    double md = 0.0, mb = 0.0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        md = d > md ? d : md;
        mb = fabs((double)b[i]) > mb ? fabs((double)b[i]) : mb;
    }
    return md / (mb > 0.0 ? mb : 1.0);
}

/* Four sequences with different prompt lengths, start steps and prefill chunk
 * sizes run through one context, one batch per step (decode tokens mixed with
 * prefill chunks, sequences in varying order); every logits row must equal the
 * same sequence decoded alone within 1e-5 relative, and greedy tokens match. */
static void batch_equals_single(const char *path, int32_t block_size) {
    tm_model_params mp = tm_model_params_default();
    mp.path = path;
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    const int32_t        nv = tm_model_get_hparams(m)->n_vocab;
    static const int32_t plen[BT_SEQ] = {7, 13, 4, 19}, start[BT_SEQ] = {0, 0, 2, 3},
                         chunk[BT_SEQ] = {7, 5, 4, 6};
    int32_t  prompt[BT_SEQ][32], ref_tok[BT_SEQ][BT_GEN];
    float   *ref = malloc((size_t)BT_SEQ * BT_GEN * (size_t)nv * sizeof(float));
    uint32_t rng = 12345;
    for (int s = 0; s < BT_SEQ; s++)
        for (int i = 0; i < plen[s]; i++) {
            rng = rng * 1664525u + 1013904223u;
            prompt[s][i] = (int32_t)((rng >> 8) % (uint32_t)nv);
        }
    /* reference: each sequence alone in a single-sequence context */
    for (int s = 0; s < BT_SEQ; s++) {
        tm_ctx_params cp = tm_ctx_params_default();
        cp.n_ctx = 64;
        cp.n_batch = 32;
        cp.n_threads = 2;
        tm_ctx *ctx = NULL;
        ASSERT_OK(tm_ctx_init(m, &cp, &ctx));
        ASSERT_OK(tm_ctx_decode(ctx, prompt[s], plen[s]));
        for (int g = 0; g < BT_GEN; g++) {
            const float *lg = tm_ctx_logits(ctx, -1);
            memcpy(ref + ((size_t)s * BT_GEN + (size_t)g) * (size_t)nv, lg,
                   (size_t)nv * sizeof(float));
            ref_tok[s][g] = argmax(lg, nv);
            if (g + 1 < BT_GEN)
                ASSERT_OK(tm_ctx_decode(ctx, &ref_tok[s][g], 1));
        }
        tm_ctx_free(ctx);
    }
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = 64;
    cp.n_batch = 32;
    cp.n_threads = 2;
    cp.n_seq_max = BT_SEQ;
    cp.kv_block_size = block_size;
    tm_ctx *ctx = NULL;
    ASSERT_OK(tm_ctx_init(m, &cp, &ctx));
    int32_t fed[BT_SEQ] = {0}, gen[BT_SEQ] = {0}, last[BT_SEQ] = {0};
    double  worst = 0.0;
    int     mismatches = 0;
    for (int step = 0; step < 64; step++) {
        int32_t tok[32], seq[32], pos[32], who[BT_SEQ];
        bool    want[32];
        int32_t n = 0, n_out = 0;
        for (int k = 0; k < BT_SEQ; k++) {
            const int s = (k + step) % BT_SEQ; /* rotate the order */
            if (step < start[s] || gen[s] >= BT_GEN ||
                (fed[s] == plen[s] && gen[s] == 0 && step == start[s] - 1))
                continue;
            if (fed[s] < plen[s]) {
                int32_t c = plen[s] - fed[s] < chunk[s] ? plen[s] - fed[s] : chunk[s];
                for (int32_t i = 0; i < c; i++, n++) {
                    tok[n] = prompt[s][fed[s] + i];
                    seq[n] = s;
                    pos[n] = fed[s] + i;
                    want[n] = fed[s] + i == plen[s] - 1;
                }
                fed[s] += c;
            } else {
                tok[n] = last[s];
                seq[n] = s;
                pos[n] = plen[s] + gen[s] - 1;
                want[n] = true;
                n++;
            }
            if (want[n - 1])
                who[n_out++] = s;
        }
        if (n == 0)
            break;
        tm_batch b = {.n_tokens = n, .token = tok, .pos = pos, .seq_id = seq, .want_logits = want};
        ASSERT_OK(tm_ctx_decode_batch(ctx, &b));
        EXPECT_EQ_INT(tm_ctx_n_outputs(ctx), n_out);
        for (int o = 0; o < n_out; o++) {
            const int    s = who[o];
            const float *lg = tm_ctx_logits(ctx, o);
            double e = rel_err(lg, ref + ((size_t)s * BT_GEN + (size_t)gen[s]) * (size_t)nv, nv);
            worst = e > worst ? e : worst;
            last[s] = argmax(lg, nv);
            mismatches += last[s] != ref_tok[s][gen[s]];
            gen[s]++;
        }
    }
    for (int s = 0; s < BT_SEQ; s++) {
        EXPECT_EQ_INT(gen[s], BT_GEN);
        EXPECT_EQ_INT(tm_ctx_seq_n_past(ctx, s), plen[s] + BT_GEN - 1);
    }
    printf("  %s (block %d): max rel. logit difference batched vs alone %.2e\n", path, block_size,
           worst);
    EXPECT_TRUE(worst < 1e-5);
    EXPECT_EQ_INT(mismatches, 0);
    tm_ctx_free(ctx);
    tm_model_free(m);
    free(ref);
}

TEST(batch_equals_single_llama) { batch_equals_single(GOLDEN_DIR "llama.gguf", 4); }
TEST(batch_equals_single_qwen2) { batch_equals_single(GOLDEN_DIR "qwen2.gguf", 16); }
TEST(batch_equals_single_qwen3) { batch_equals_single(GOLDEN_DIR "qwen3.gguf", 8); }
/* sliding window 4 on some layers, two RoPE bases */
TEST(batch_equals_single_gemma3) { batch_equals_single(GOLDEN_DIR "gemma3.gguf", 4); }
TEST(batch_equals_single_mistral_swa) { batch_equals_single(GOLDEN_DIR "mistral-hf", 2); }

/* The batched step must not allocate either; sequences come and go. */
TEST(decode_batch_does_not_allocate) {
    tm_model_params mp = tm_model_params_default();
    mp.path = GOLDEN_DIR "qwen2.gguf";
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = 48;
    cp.n_batch = 16;
    cp.n_threads = 2;
    cp.n_seq_max = 4;
    cp.kv_block_size = 8;
    tm_ctx *ctx = NULL;
    ASSERT_OK(tm_ctx_init(m, &cp, &ctx));
    int32_t  tok[16], seq[16];
    uint64_t before = tm_alloc_count();
    for (int step = 0; step < 60; step++) {
        int32_t n = 0;
        for (int32_t s = 0; s < 4; s++) {
            if (tm_ctx_seq_n_past(ctx, s) >= 40 - 4 * s)
                tm_ctx_seq_remove(ctx, s); /* finished: blocks back, starts again */
            int32_t c = tm_ctx_seq_n_past(ctx, s) == 0 ? 3 : 1;
            for (int32_t i = 0; i < c; i++, n++) {
                tok[n] = (step * 7 + s * 13 + i) % 256;
                seq[n] = s;
            }
        }
        tm_batch b = {.n_tokens = n, .token = tok, .seq_id = seq};
        EXPECT_OK(tm_ctx_decode_batch(ctx, &b));
        EXPECT_EQ_INT(tm_ctx_n_outputs(ctx), 4);
    }
    EXPECT_EQ_INT(tm_alloc_count() - before, 0);
    /* errors: bad sequence, wrong position, too many logits rows, full sequence */
    int32_t  bad_seq = 4, p = 99;
    tm_batch b = {.n_tokens = 1, .token = tok, .seq_id = &bad_seq};
    EXPECT_EQ_INT(tm_ctx_decode_batch(ctx, &b), TM_ERR_INVALID);
    int32_t s0 = 0;
    b = (tm_batch){.n_tokens = 1, .token = tok, .seq_id = &s0, .pos = &p};
    EXPECT_EQ_INT(tm_ctx_decode_batch(ctx, &b), TM_ERR_INVALID);
    bool all[16];
    for (int i = 0; i < 16; i++) {
        all[i] = true;
        seq[i] = i % 4;
    }
    b = (tm_batch){.n_tokens = 5, .token = tok, .seq_id = seq, .want_logits = all};
    EXPECT_EQ_INT(tm_ctx_decode_batch(ctx, &b), TM_ERR_INVALID);
    tm_ctx_clear(ctx);
    for (int i = 0; i < 16; i++) {
        seq[i] = 1;
        tok[i] = i;
    }
    for (int k = 0; k < 3; k++) {
        b = (tm_batch){.n_tokens = 16, .token = tok, .seq_id = seq};
        EXPECT_OK(tm_ctx_decode_batch(ctx, &b));
    }
    EXPECT_EQ_INT(tm_ctx_decode_batch(ctx, &b), TM_ERR_FULL);
    EXPECT_EQ_INT(tm_ctx_seq_n_past(ctx, 1), 48);
    tm_ctx_free(ctx);
    tm_model_free(m);
}

/* copy_prefix shares blocks (a partial one is copied) and truncate copies a
 * shared tail: both continue exactly like the original sequence. */
TEST(seq_copy_prefix_and_truncate) {
    tm_model_params mp = tm_model_params_default();
    mp.path = GOLDEN_DIR "llama.gguf";
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    const int32_t nv = tm_model_get_hparams(m)->n_vocab;
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = 32;
    cp.n_batch = 16;
    cp.n_threads = 1;
    cp.n_seq_max = 3;
    cp.kv_block_size = 4;
    tm_ctx *ctx = NULL;
    ASSERT_OK(tm_ctx_init(m, &cp, &ctx));
    int32_t  tok[10] = {1, 5, 9, 33, 2, 7, 100, 64, 3, 11}, seq[10] = {0};
    tm_batch b = {.n_tokens = 10, .token = tok, .seq_id = seq};
    ASSERT_OK(tm_ctx_decode_batch(ctx, &b));
    float  *want = malloc((size_t)nv * sizeof(float));
    int32_t nxt = 42;
    b = (tm_batch){.n_tokens = 1, .token = &nxt, .seq_id = seq};
    ASSERT_OK(tm_ctx_decode_batch(ctx, &b)); /* seq 0 at 11 positions */
    memcpy(want, tm_ctx_logits(ctx, 0), (size_t)nv * sizeof(float));
    /* seq 1 = first 10 positions of seq 0 (2 shared blocks + a copied partial one) */
    ASSERT_OK(tm_ctx_seq_copy_prefix(ctx, 0, 1, 10));
    int32_t s1 = 1;
    b = (tm_batch){.n_tokens = 1, .token = &nxt, .seq_id = &s1};
    ASSERT_OK(tm_ctx_decode_batch(ctx, &b));
    EXPECT_TRUE(rel_err(tm_ctx_logits(ctx, 0), want, nv) < 1e-6);
    /* seq 2 = first 8 (2 shared full blocks), then truncated into a shared block */
    ASSERT_OK(tm_ctx_seq_copy_prefix(ctx, 0, 2, 8));
    ASSERT_OK(tm_ctx_seq_truncate(ctx, 2, 6)); /* block 1 is shared: copied */
    int32_t s2[5] = {2, 2, 2, 2, 2};
    b = (tm_batch){.n_tokens = 4, .token = tok + 6, .seq_id = s2};
    ASSERT_OK(tm_ctx_decode_batch(ctx, &b));
    b = (tm_batch){.n_tokens = 1, .token = &nxt, .seq_id = s2};
    ASSERT_OK(tm_ctx_decode_batch(ctx, &b));
    EXPECT_TRUE(rel_err(tm_ctx_logits(ctx, 0), want, nv) < 1e-6);
    /* seq 0 is untouched by the writes of 1 and 2 */
    ASSERT_OK(tm_ctx_seq_truncate(ctx, 0, 10));
    b = (tm_batch){.n_tokens = 1, .token = &nxt, .seq_id = seq};
    ASSERT_OK(tm_ctx_decode_batch(ctx, &b));
    EXPECT_TRUE(rel_err(tm_ctx_logits(ctx, 0), want, nv) < 1e-6);
    free(want);
    tm_ctx_free(ctx);
    tm_model_free(m);
}

TM_TEST_MAIN()
