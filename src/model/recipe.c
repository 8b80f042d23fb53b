/*
 * recipe.c - the built-in architecture recipes (docs/recipes.md).
 *
 * A recipe says how the shared transformer block is wired for one family and
 * where its tensors live: GGUF names (llama.cpp's naming, shared across
 * families) and Hugging Face names (the llama layout unless a row overrides a
 * slot). A new family is one row here, not a new forward function; a custom
 * checkpoint is the same struct parsed from JSON (recipe_json.c).
 * Sources: llama.cpp's src/llama-model.cpp graph builders and convert_hf_to_gguf.py,
 * Hugging Face's modeling_<family>.py, read for understanding.
 */
#include <string.h>

#include "model/model_int.h"

#define HF_L "model.layers.{N}."

static const tm_recipe recipe_table[] = {
    /* Llama 1/2/3, TinyLlama, llama2.c checkpoints. GGUF stores q/k rows permuted
     * for the adjacent-pair ("normal") RoPE, HF keeps rotate_half halves (neox);
     * Llama-3 RoPE scaling arrives as rope_freqs.weight (GGUF) or rope_scaling
     * (config.json). */
    {.arch = "llama",
     .hf_model_types = "llama",
     .rope_mode = TM_ROPE_NORM,
     .hf_rope_mode = TM_ROPE_NEOX,
     .mlp = TM_MLP_SWIGLU,
     .causal = true,
     .tied_output = true},
    /* Mistral: llama with a sliding window on every layer. */
    {.arch = "mistral",
     .hf_model_types = "mistral",
     .rope_mode = TM_ROPE_NORM,
     .hf_rope_mode = TM_ROPE_NEOX,
     .mlp = TM_MLP_SWIGLU,
     .causal = true,
     .tied_output = true,
     .swa = TM_SWA_ALL},
    /* Qwen2 / Qwen2.5: biases on q, k, v. */
    {.arch = "qwen2",
     .hf_model_types = "qwen2",
     .rope_mode = TM_ROPE_NEOX,
     .hf_rope_mode = TM_ROPE_NEOX,
     .mlp = TM_MLP_SWIGLU,
     .causal = true,
     .qkv_bias = true,
     .tied_output = true},
    /* Qwen3: RMSNorm of q and k per head before RoPE, no biases. */
    {.arch = "qwen3",
     .hf_model_types = "qwen3",
     .rope_mode = TM_ROPE_NEOX,
     .hf_rope_mode = TM_ROPE_NEOX,
     .mlp = TM_MLP_SWIGLU,
     .causal = true,
     .qk_norm = true,
     .tied_output = true},
    /* Gemma 3: (1 + w) RMSNorm (GGUF stores 1 + w, so a plain multiply; HF stores w),
     * four norms per block, GeGLU, embeddings scaled by sqrt(n_embd), five
     * sliding-window layers per global one with a local RoPE base of 10000. */
    {.arch = "gemma3",
     .hf_model_types = "gemma3_text",
     .rope_mode = TM_ROPE_NEOX,
     .hf_rope_mode = TM_ROPE_NEOX,
     .mlp = TM_MLP_GEGLU,
     .causal = true,
     .qk_norm = true,
     .post_norms = true,
     .embd_scale = true,
     .tied_output = true,
     .hf_norm_add_one = true,
     .swa = TM_SWA_PERIODIC,
     .swa_period = 6,
     .rope_theta_swa = 10000.0f,
     .hf_names = {[TM_SLOT_FFN_NORM] = HF_L "pre_feedforward_layernorm"}},
    /* Phi-3: fused qkv_proj and gate_up_proj (split at load into views: zero copy),
     * a sliding window on every layer when the config sets one. */
    {.arch = "phi3",
     .hf_model_types = "phi3",
     .rope_mode = TM_ROPE_NEOX,
     .hf_rope_mode = TM_ROPE_NEOX,
     .mlp = TM_MLP_SWIGLU,
     .causal = true,
     .fused_qkv = true,
     .fused_gate_up = true,
     .swa = TM_SWA_ALL,
     .hf_names = {[TM_SLOT_FFN_UP] = HF_L "mlp.gate_up_proj"}},
    /* GPT-2: LayerNorm with biases, learned positions, biases everywhere, GELU (tanh
     * form, "gelu_new"), tied output. HF stores its matrices as Conv1D [in, out]:
     * transposed at load (the one copy of a matrix; llama.cpp's converter does it
     * once into the GGUF). */
    {.arch = "gpt2",
     .hf_model_types = "gpt2",
     .norm = TM_NORM_LAYER,
     .pos = TM_POS_LEARNED,
     .mlp = TM_MLP_GELU,
     .causal = true,
     .bias = true,
     .tied_output = true,
     .fused_qkv = true,
     .hf_conv1d = true,
     .hf_names = {[TM_SLOT_TOKEN_EMBD] = "transformer.wte",
                  [TM_SLOT_POS_EMBD] = "transformer.wpe",
                  [TM_SLOT_OUTPUT_NORM] = "transformer.ln_f",
                  [TM_SLOT_ATTN_NORM] = "transformer.h.{N}.ln_1",
                  [TM_SLOT_ATTN_QKV] = "transformer.h.{N}.attn.c_attn",
                  [TM_SLOT_ATTN_OUT] = "transformer.h.{N}.attn.c_proj",
                  [TM_SLOT_FFN_NORM] = "transformer.h.{N}.ln_2",
                  [TM_SLOT_FFN_UP] = "transformer.h.{N}.mlp.c_fc",
                  [TM_SLOT_FFN_DOWN] = "transformer.h.{N}.mlp.c_proj"}},
    /* BERT (sentence embeddings, e.g. all-MiniLM-L6-v2): an encoder. Embeddings =
     * word + position + token type 0, then LayerNorm; post-norm blocks, biases
     * everywhere, exact GELU; output = mean over tokens, L2-normalized
     * (sentence-transformers' Pooling + Normalize). GGUF names as llama.cpp's bert. */
    {.arch = "bert",
     .hf_model_types = "bert",
     .norm = TM_NORM_LAYER,
     .norm_post = true,
     .pos = TM_POS_LEARNED,
     .mlp = TM_MLP_GELU_ERF,
     .causal = false,
     .pooling = TM_POOL_MEAN,
     .bias = true,
     .embd_norm = true,
     .token_types = true,
     .names = {[TM_SLOT_ATTN_NORM] = "blk.{N}.attn_output_norm",
               [TM_SLOT_FFN_NORM] = "blk.{N}.layer_output_norm"},
     .hf_names = {[TM_SLOT_TOKEN_EMBD] = "embeddings.word_embeddings",
                  [TM_SLOT_POS_EMBD] = "embeddings.position_embeddings",
                  [TM_SLOT_TOKEN_TYPES] = "embeddings.token_type_embeddings",
                  [TM_SLOT_EMBD_NORM] = "embeddings.LayerNorm",
                  [TM_SLOT_OUTPUT_NORM] = NULL,
                  [TM_SLOT_ATTN_Q] = "encoder.layer.{N}.attention.self.query",
                  [TM_SLOT_ATTN_K] = "encoder.layer.{N}.attention.self.key",
                  [TM_SLOT_ATTN_V] = "encoder.layer.{N}.attention.self.value",
                  [TM_SLOT_ATTN_OUT] = "encoder.layer.{N}.attention.output.dense",
                  [TM_SLOT_ATTN_NORM] = "encoder.layer.{N}.attention.output.LayerNorm",
                  [TM_SLOT_FFN_UP] = "encoder.layer.{N}.intermediate.dense",
                  [TM_SLOT_FFN_DOWN] = "encoder.layer.{N}.output.dense",
                  [TM_SLOT_FFN_NORM] = "encoder.layer.{N}.output.LayerNorm"}},
};

#define RECIPE_N (sizeof recipe_table / sizeof recipe_table[0])

static const char *const slot_keys[TM_SLOT_COUNT] = {
#define X(id, key, gguf, hf) [TM_SLOT_##id] = key,
    TM_SLOTS(X)
#undef X
};
static const char *const slot_gguf[TM_SLOT_COUNT] = {
#define X(id, key, gguf, hf) [TM_SLOT_##id] = gguf,
    TM_SLOTS(X)
#undef X
};
static const char *const slot_hf[TM_SLOT_COUNT] = {
#define X(id, key, gguf, hf) [TM_SLOT_##id] = hf,
    TM_SLOTS(X)
#undef X
};

const char *tm__slot_key(tm_slot s) { return slot_keys[s]; }

const char *tm__recipe_name(const tm_recipe *r, tm_slot s, bool hf) {
    const char *n = hf ? r->hf_names[s] : r->names[s];
    if (n != NULL && n[0] == '\0')
        return NULL; /* JSON null: the source has no such tensor */
    if (hf) {
        if (n != NULL)
            return n;
        /* Encoders and learned-position models name their own embeddings; they do not
         * inherit the llama layout's output head or final norm. */
        if (r->pooling != TM_POOL_NONE && (s == TM_SLOT_OUTPUT_NORM || s == TM_SLOT_OUTPUT))
            return NULL;
        return slot_hf[s];
    }
    return r->names[s] != NULL ? r->names[s] : slot_gguf[s];
}

const tm_recipe *tm__recipe_find(const char *arch, size_t len) {
    for (size_t i = 0; i < RECIPE_N; i++)
        if (strlen(recipe_table[i].arch) == len && memcmp(recipe_table[i].arch, arch, len) == 0)
            return &recipe_table[i];
    return NULL;
}

const tm_recipe *tm__recipe_find_hf(const char *model_type) {
    const size_t n = strlen(model_type);
    for (size_t i = 0; i < RECIPE_N; i++) {
        const char *p = recipe_table[i].hf_model_types;
        while (p != NULL && *p) {
            size_t k = strcspn(p, ",");
            if (k == n && memcmp(p, model_type, n) == 0)
                return &recipe_table[i];
            p += k + (p[k] == ',');
        }
    }
    return NULL;
}

const char *tm__recipe_list(void) {
    return "llama, mistral, qwen2, qwen3, gemma3, phi3, gpt2, bert";
}
