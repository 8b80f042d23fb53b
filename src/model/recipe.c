/*
 * recipe.c - the built-in architecture recipes (docs/recipes.md).
 *
 * A recipe says how the shared decoder block is wired for one family; the
 * tensor names are GGUF's (llama.cpp's tensor naming), identical across
 * families, so a new family is one row here, not a new forward function.
 * Sources: llama.cpp's src/llama-model.cpp graph builders and Hugging Face's
 * modeling_<family>.py, read for understanding.
 */
#include <string.h>

#include "model/model_int.h"

static const tm_recipe recipe_table[] = {
    /* Llama 1/2/3, TinyLlama, llama2.c checkpoints. GGUF stores q/k rows permuted
     * for the adjacent-pair ("normal") RoPE; Llama-3 RoPE scaling arrives as the
     * rope_freqs.weight tensor of frequency divisors. */
    {.arch = "llama", .rope_mode = TM_ROPE_NORM, .mlp = TM_MLP_SWIGLU, .tied_output = true},
    /* Qwen2 / Qwen2.5: biases on q, k, v. */
    {.arch = "qwen2",
     .rope_mode = TM_ROPE_NEOX,
     .mlp = TM_MLP_SWIGLU,
     .qkv_bias = true,
     .tied_output = true},
    /* Qwen3: RMSNorm of q and k per head before RoPE, no biases. */
    {.arch = "qwen3",
     .rope_mode = TM_ROPE_NEOX,
     .mlp = TM_MLP_SWIGLU,
     .qk_norm = true,
     .tied_output = true},
    /* Gemma 3: (1 + w) RMSNorm (GGUF stores 1 + w, so a plain multiply here), four
     * norms per block, GeGLU, embeddings scaled by sqrt(n_embd), five sliding-window
     * layers per global one with a local RoPE base of 10000 (llama.cpp's values). */
    {.arch = "gemma3",
     .rope_mode = TM_ROPE_NEOX,
     .mlp = TM_MLP_GEGLU,
     .qk_norm = true,
     .post_norms = true,
     .embd_scale = true,
     .tied_output = true,
     .swa_period = 6,
     .rope_theta_swa = 10000.0f},
};

const tm_recipe *tm__recipe_find(const char *arch, size_t len) {
    for (size_t i = 0; i < sizeof recipe_table / sizeof recipe_table[0]; i++)
        if (strlen(recipe_table[i].arch) == len && memcmp(recipe_table[i].arch, arch, len) == 0)
            return &recipe_table[i];
    return NULL;
}

const char *tm__recipe_list(void) { return "llama, qwen2, qwen3, gemma3"; }
