/*
 * test_recipe.c - JSON recipes (docs/recipes.md): the example files parse, and
 * every kind of mistake (unknown key, wrong type, unknown enum value, bad tensor
 * name pattern, bad numbers, broken JSON) is a TM_ERR_FORMAT whose message names
 * the key. Loading weights through a recipe is tested in test_model.c.
 */
#include <string.h>

#include "harness.h"
#include "tm/tm_model.h"

#define RECIPES TM_SOURCE_DIR "/tests/golden/recipes/"

static char *read_text(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(1 << 16);
    *len = fread(buf, 1, 1 << 16, f);
    fclose(f);
    return buf;
}

static void expect_error(const char *json, const char *needle) {
    tm_status st = tm_recipe_check(json, strlen(json));
    EXPECT_EQ_INT(st, TM_ERR_FORMAT);
    if (strstr(tm_last_error(), needle) == NULL)
        TM__FAIL_AT("error '%s' does not name '%s'", tm_last_error(), needle);
}

TEST(examples_parse) {
    const char *files[] = {"llama.json", "gemma3-base.json", "bert.json"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[1024];
        snprintf(path, sizeof path, RECIPES "%s", files[i]);
        size_t len = 0;
        char  *text = read_text(path, &len);
        ASSERT_TRUE(text != NULL);
        tm_status st = tm_recipe_check(text, len);
        if (st != TM_OK)
            TM__FAIL_AT("%s: %s", files[i], tm_last_error());
        free(text);
    }
}

TEST(minimal_recipe) {
    EXPECT_EQ_INT(tm_recipe_check("{\"arch\": \"x\"}", 13), TM_OK);
    EXPECT_EQ_INT(tm_recipe_check("{\"base\": \"qwen2\"}", 17), TM_OK);
}

TEST(errors_name_the_key) {
    expect_error("{\"arch\": \"x\", \"nrom\": \"rms\"}", "nrom");
    expect_error("{\"arch\": \"x\", \"norm\": \"batch\"}", "norm");
    expect_error("{\"arch\": \"x\", \"norm\": \"batch\"}", "batch");
    expect_error("{\"arch\": \"x\", \"mlp\": 3}", "mlp");
    expect_error("{\"arch\": \"x\", \"qk_norm\": \"yes\"}", "qk_norm");
    expect_error("{\"arch\": \"x\", \"rope_mode\": \"gptj\"}", "rope_mode");
    expect_error("{\"arch\": \"x\", \"attn_softcap\": -1}", "attn_softcap");
    expect_error("{\"arch\": \"x\", \"final_softcap\": \"big\"}", "final_softcap");
    expect_error("{\"arch\": \"x\", \"sliding_window\": \"periodic\"}", "swa_period");
    expect_error("{\"arch\": \"x\", \"swa_period\": 0}", "swa_period");
    expect_error("{\"arch\": \"x\", \"swa_period\": 1.5}", "swa_period");
    expect_error("{\"arch\": 7}", "arch");
    expect_error("{\"arch\": \"\"}", "arch");
    expect_error("{\"norm\": \"rms\"}", "arch");
    expect_error("{\"base\": \"mamba\"}", "mamba");
    expect_error("{\"arch\": \"x\", \"tensors\": {\"attn_qq\": \"blk.{N}.q\"}}", "attn_qq");
    expect_error("{\"arch\": \"x\", \"tensors\": {\"attn_q\": \"blk.q\"}}", "tensors.attn_q");
    expect_error("{\"arch\": \"x\", \"tensors\": {\"attn_q\": \"b.{N}.{N}\"}}", "{N}");
    expect_error("{\"arch\": \"x\", \"hf_tensors\": {\"token_embd\": \"e.{N}\"}}",
                 "hf_tensors.token_embd");
    expect_error("{\"arch\": \"x\", \"hf_tensors\": {\"attn_k\": 5}}", "hf_tensors.attn_k");
    expect_error("{\"arch\": \"x\", \"tensors\": []}", "tensors");
    expect_error("{\"arch\": \"x\", \"mlp\": \"gelu\", \"fused_gate_up\": true}", "fused_gate_up");
    expect_error("{\"arch\": \"x\", \"arch\": \"y\"}", "JSON");
    expect_error("{\"arch\": \"x\",", "line 1");
    expect_error("[1, 2]", "object");
}

TM_TEST_MAIN()
