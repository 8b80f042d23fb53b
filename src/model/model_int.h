/*
 * model_int.h - private structures of the model module: recipes (recipe.c,
 * recipe_json.c), the loaded model (model.c: GGUF and llama2.c; model_hf.c:
 * Hugging Face folders), the graph builder (graph_build.c) and the context
 * (context.c).
 */
#ifndef TM_MODEL_INT_H
#define TM_MODEL_INT_H

#include <stddef.h>

#include "tm/tm_gguf.h"
#include "tm/tm_graph.h"
#include "tm/tm_io.h"
#include "tm/tm_model.h"

typedef enum tm_mlp_kind {
    TM_MLP_SWIGLU = 0,   /* down(silu(gate(x)) * up(x)): llama, qwen, mistral, phi3 */
    TM_MLP_GEGLU = 1,    /* down(gelu_tanh(gate(x)) * up(x)): gemma */
    TM_MLP_GELU = 2,     /* down(gelu_tanh(up(x))): gpt2 ("gelu_new") */
    TM_MLP_GELU_ERF = 3, /* down(gelu_erf(up(x))): bert ("gelu") */
} tm_mlp_kind;

typedef enum tm_norm_kind {
    TM_NORM_RMS = 0,   /* x / rms(x) * w */
    TM_NORM_LAYER = 1, /* (x - mean) / std * w + b */
} tm_norm_kind;

typedef enum tm_swa_kind {
    TM_SWA_NONE = 0,     /* the model's window, if any, is ignored */
    TM_SWA_ALL = 1,      /* every layer uses the window (mistral, phi3) */
    TM_SWA_PERIODIC = 2, /* layer il is global iff (il + 1) % swa_period == 0 (gemma3) */
} tm_swa_kind;

typedef enum tm_pos_kind {
    TM_POS_ROPE = 0,    /* rotary on q and k */
    TM_POS_LEARNED = 1, /* position_embd rows added to the token embeddings */
} tm_pos_kind;

typedef enum tm_pool_kind {
    TM_POOL_NONE = 0, /* a language model: logits */
    TM_POOL_MEAN = 1, /* an embedding model: mean over tokens, L2-normalized */
} tm_pool_kind;

/* Tensor slots: id, GGUF base name (llama.cpp), default HF base name (llama layout).
 * A file name is the base name with {N} replaced by the layer and ".weight" or
 * ".bias" appended. Per-layer slots come after TM_SLOT_FIRST_LAYER. */
#define TM_SLOTS(X)                                                                                \
    X(TOKEN_EMBD, "token_embd", "token_embd", "model.embed_tokens")                                \
    X(POS_EMBD, "position_embd", "position_embd", NULL)                                            \
    X(TOKEN_TYPES, "token_types", "token_types", NULL)                                             \
    X(EMBD_NORM, "token_embd_norm", "token_embd_norm", NULL)                                       \
    X(OUTPUT_NORM, "output_norm", "output_norm", "model.norm")                                     \
    X(OUTPUT, "output", "output", "lm_head")                                                       \
    X(ROPE_FREQS, "rope_freqs", "rope_freqs", NULL)                                                \
    X(ATTN_NORM, "attn_norm", "blk.{N}.attn_norm", "model.layers.{N}.input_layernorm")             \
    X(ATTN_Q, "attn_q", "blk.{N}.attn_q", "model.layers.{N}.self_attn.q_proj")                     \
    X(ATTN_K, "attn_k", "blk.{N}.attn_k", "model.layers.{N}.self_attn.k_proj")                     \
    X(ATTN_V, "attn_v", "blk.{N}.attn_v", "model.layers.{N}.self_attn.v_proj")                     \
    X(ATTN_QKV, "attn_qkv", "blk.{N}.attn_qkv", "model.layers.{N}.self_attn.qkv_proj")             \
    X(ATTN_OUT, "attn_output", "blk.{N}.attn_output", "model.layers.{N}.self_attn.o_proj")         \
    X(ATTN_Q_NORM, "attn_q_norm", "blk.{N}.attn_q_norm", "model.layers.{N}.self_attn.q_norm")      \
    X(ATTN_K_NORM, "attn_k_norm", "blk.{N}.attn_k_norm", "model.layers.{N}.self_attn.k_norm")      \
    X(POST_ATTN_NORM, "post_attention_norm", "blk.{N}.post_attention_norm",                        \
      "model.layers.{N}.post_attention_layernorm")                                                 \
    X(FFN_NORM, "ffn_norm", "blk.{N}.ffn_norm", "model.layers.{N}.post_attention_layernorm")       \
    X(FFN_GATE, "ffn_gate", "blk.{N}.ffn_gate", "model.layers.{N}.mlp.gate_proj")                  \
    X(FFN_UP, "ffn_up", "blk.{N}.ffn_up", "model.layers.{N}.mlp.up_proj")                          \
    X(FFN_DOWN, "ffn_down", "blk.{N}.ffn_down", "model.layers.{N}.mlp.down_proj")                  \
    X(POST_FFN_NORM, "post_ffw_norm", "blk.{N}.post_ffw_norm",                                     \
      "model.layers.{N}.post_feedforward_layernorm")

typedef enum tm_slot {
#define TM_SLOT_ENUM(id, key, gguf, hf) TM_SLOT_##id,
    TM_SLOTS(TM_SLOT_ENUM)
#undef TM_SLOT_ENUM
        TM_SLOT_COUNT
} tm_slot;

#define TM_SLOT_FIRST_LAYER TM_SLOT_ATTN_NORM
#define TM_RECIPE_MAX_NAME 192 /* bytes of a tensor name pattern, NUL included */

/* An architecture as data (docs/recipes.md). Built-ins are static (recipe.c); a JSON
 * recipe (recipe_json.c) is one allocation that owns its strings. */
typedef struct tm_recipe {
    const char  *arch;           /* GGUF general.architecture */
    const char  *hf_model_types; /* config.json model_type values, comma-separated; or NULL */
    tm_norm_kind norm;
    bool         norm_post;    /* x = norm(x + f(x)) (BERT) instead of x = x + f(norm(x)) */
    tm_pos_kind  pos;          /* rope or learned positions */
    tm_rope_mode rope_mode;    /* GGUF weights (llama: q/k rows permuted -> norm) */
    tm_rope_mode hf_rope_mode; /* HF weights: rotate_half layout -> neox */
    tm_mlp_kind  mlp;
    bool         causal;          /* false: bidirectional attention (encoders) */
    tm_pool_kind pooling;         /* TM_POOL_MEAN: embedding model, no output head */
    bool         qkv_bias;        /* attn_{q,k,v}.bias required */
    bool         bias;            /* every linear and LayerNorm has a bias (required) */
    bool         qk_norm;         /* RMSNorm over head_dim of q and k before RoPE */
    bool         post_norms;      /* norm of the attention and FFN outputs (gemma) */
    bool         embd_scale;      /* embeddings times sqrt(n_embd) */
    bool         embd_norm;       /* norm of the embeddings (BERT) */
    bool         token_types;     /* add token-type row 0 to the embeddings (BERT) */
    bool         tied_output;     /* output.weight may be absent: reuse token_embd */
    bool         fused_qkv;       /* one attn_qkv [E, Q + 2 KV] instead of q, k, v */
    bool         fused_gate_up;   /* ffn_up holds [gate; up] rows, [E, 2F] (phi3) */
    bool         hf_norm_add_one; /* HF norm weights are w in x * (1 + w) (gemma) */
    bool         hf_conv1d;       /* HF per-layer matrices are Conv1D [in, out] (gpt2) */
    tm_swa_kind  swa;
    int32_t      swa_period;              /* TM_SWA_PERIODIC */
    float        rope_theta_swa;          /* theta of sliding layers; 0 = the global theta */
    float        attn_softcap;            /* 0 = none */
    float        final_softcap;           /* 0 = none */
    const char  *names[TM_SLOT_COUNT];    /* GGUF base names; NULL = default, "" = none */
    const char  *hf_names[TM_SLOT_COUNT]; /* HF base names; NULL = llama layout default */
} tm_recipe;

const tm_recipe *tm__recipe_find(const char *arch, size_t len);
/* The built-in recipe whose hf_model_types lists model_type; NULL when none. */
const tm_recipe *tm__recipe_find_hf(const char *model_type);
/* "llama, qwen2, ..." for error messages; static storage. */
const char *tm__recipe_list(void);
const char *tm__slot_key(tm_slot s); /* "attn_q": the JSON key */
/* Base name of slot s for GGUF (hf = false) or HF weights; NULL when the slot has none. */
const char *tm__recipe_name(const tm_recipe *r, tm_slot s, bool hf);

/* Parses a JSON recipe (docs/recipes.md). *out is one tm_malloc'd block owning
 * its strings (free with tm_free). Errors name the key. */
tm_status tm__recipe_parse(const char *json, size_t len, tm_recipe **out);

typedef struct tm_layer {
    tm_tensor w[TM_SLOT_COUNT]; /* weights by slot; data == NULL when absent */
    tm_tensor b[TM_SLOT_COUNT]; /* biases by slot */
    bool      swa;              /* uses the sliding window */
} tm_layer;

/* A block of model-owned memory: 1-D tensors converted to F32, transposed Conv1D
 * weights, computed RoPE factors. Everything else points into a mapping. */
typedef struct tm_owned {
    struct tm_owned *next;
    _Alignas(max_align_t) unsigned char data[]; /* malloc alignment */
} tm_owned;

typedef struct tm_st_file   tm_st_file;
typedef struct tm_hf_config tm_hf_config;

/* Tensors with data == NULL are absent. */
struct tm_model {
    tm_recipe     recipe;
    tm_recipe    *recipe_owned; /* JSON recipe block, or NULL */
    tm_hparams    hp;
    char          arch[32];
    tm_gguf      *gguf; /* GGUF source, or NULL */
    tm_st_file   *st;   /* HF safetensors source, or NULL */
    tm_hf_config *hf;   /* HF config.json, or NULL */
    tm_mmap       map;  /* llama2.c source mapping */
    tm_owned     *owned;
    tm_rope_mode  rope_mode;              /* of the loaded weights */
    tm_tensor     w[TM_SLOT_FIRST_LAYER]; /* global weights by slot */
    tm_tensor     b[TM_SLOT_FIRST_LAYER]; /* global biases */
    tm_tensor     tt0;                    /* token-type row 0 as F32 [E] (BERT) */
    tm_layer     *layers;                 /* [n_layer] */
};

/* model.c: shared loading steps used by both sources. */
void     *tm__model_alloc(tm_model *m, size_t bytes); /* model-owned, freed with the model */
tm_status tm__model_check_hparams(const tm_hparams *hp);
/* Resolves every tensor the recipe needs through the source (GGUF or HF), checks
 * shapes and dtypes, splits fused tensors. hp must be complete except n_vocab. */
tm_status tm__model_load_tensors(tm_model *m);
/* model_hf.c: hyperparameters, recipe choice and weights from an HF folder. */
tm_status tm__model_load_hf(tm_model *m, const char *dir, const tm_recipe *user);

/* Inputs of one step: n_tokens ids and positions (buffers the context owns). */
typedef struct tm_build_params {
    int32_t    n_tokens;
    int32_t   *ids;     /* [n_tokens] */
    int32_t   *pos;     /* [n_tokens] */
    tm_tensor *kc, *vc; /* [n_layer] cache tensors, [hd * n_head_kv, n_rows] */
    bool       logits_all;
    /* paged cache (NULL slots: contiguous, row = position) */
    int32_t *slots;      /* [n_tokens] cache row each token's K/V goes to */
    int32_t *tables;     /* [n_tokens * n_tbl] each token's sequence block table */
    int32_t  n_tbl;      /* entries per table */
    int32_t  block_size; /* positions per block (power of two) */
    /* outputs when !logits_all: n_out rows, out_ids [n_out] token indices; n_out
     * == 1 with out_ids NULL means the last token (the single-sequence case) */
    int32_t  n_out;
    int32_t *out_ids;
} tm_build_params;

/* Builds the forward graph of one step; *logits is [n_vocab, n_out] (or the pooled
 * embedding [n_embd, 1] for TM_POOL_MEAN recipes). */
void tm__graph_build(const tm_model *m, tm_graph *g, const tm_build_params *bp, tm_tensor **logits);
/* Tensors a step's graph needs at most (pool capacity). */
int32_t tm__graph_capacity(const tm_model *m);

#endif /* TM_MODEL_INT_H */
