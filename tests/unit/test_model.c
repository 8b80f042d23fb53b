/*
 * test_model.c - model loading, golden logits against Hugging Face transformers,
 * greedy decoding, the llama2.c checkpoint path, and the no-allocation decode step.
 *
 * Fixtures: tests/golden/models/<family>.{gguf,json,logits.f32}, made by
 * scripts/gen_golden.py (transformers float32 eager on CPU). Tolerance: max
 * |ours - HF| / max |HF| < rel_tol (1e-4) over every position of every prompt.
 */
#include <jansson.h>

#include "harness.h"
#include "tm/tm_gguf.h"
#include "tm/tm_model.h"

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

static float *load_logits(const char *family, size_t n) {
    char path[1024];
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

static void run_golden(const char *family, tm_dtype kv_dtype, double tol_scale) {
    json_t *meta = load_meta(family);
    ASSERT_TRUE(meta != NULL);
    char path[1024];
    snprintf(path, sizeof path, GOLDEN_DIR "%s.gguf", family);
    tm_model_params mp = tm_model_params_default();
    mp.path = path;
    tm_model *m = NULL;
    ASSERT_OK(tm_model_load(&mp, &m));
    const int     V = tm_model_get_hparams(m)->n_vocab;
    json_t       *prompts = json_object_get(meta, "prompts");
    json_t       *greedy = json_object_get(meta, "greedy");
    const double  tol = json_real_value(json_object_get(meta, "rel_tol")) * tol_scale;
    size_t        total = 0;
    for (size_t i = 0; i < json_array_size(prompts); i++)
        total += json_array_size(json_array_get(prompts, i)) * (size_t)V;
    float *ref = load_logits(family, total);
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
        /* greedy continuation, one token per step through the KV cache */
        json_t *want = json_array_get(greedy, pi);
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
    printf("  %s (kv %s): max relative logit error %.3g (tol %.3g)\n", family,
           tm_dtype_name(kv_dtype), worst, tol);
    EXPECT_TRUE(worst < tol);
    free(ref);
    tm_ctx_free(ctx);
    tm_model_free(m);
    json_decref(meta);
}

TEST(golden_llama) { run_golden("llama", TM_DTYPE_F32, 1.0); }
TEST(golden_llama3_rope_scaling) { run_golden("llama3", TM_DTYPE_F32, 1.0); }
TEST(golden_qwen2) { run_golden("qwen2", TM_DTYPE_F32, 1.0); }
TEST(golden_qwen3) { run_golden("qwen3", TM_DTYPE_F32, 1.0); }
TEST(golden_gemma3) { run_golden("gemma3", TM_DTYPE_F32, 1.0); }
/* F16 cache: rounding of K and V to half precision costs about 1e-3 relative. */
TEST(golden_llama_kv_f16) { run_golden("llama", TM_DTYPE_F16, 30.0); }

TM_TEST_MAIN()
