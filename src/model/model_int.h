/*
 * model_int.h - private structures of the model module: recipes (recipe.c), the
 * loaded model (model.c), the graph builder (graph_build.c) and the context
 * (context.c).
 */
#ifndef TM_MODEL_INT_H
#define TM_MODEL_INT_H

#include "tm/tm_gguf.h"
#include "tm/tm_graph.h"
#include "tm/tm_io.h"
#include "tm/tm_model.h"

typedef enum tm_mlp_kind {
    TM_MLP_SWIGLU = 0, /* down(silu(gate(x)) * up(x)): llama, qwen */
    TM_MLP_GEGLU = 1,  /* down(gelu_tanh(gate(x)) * up(x)): gemma */
} tm_mlp_kind;

/* A decoder-only architecture as data (docs/recipes.md). */
typedef struct tm_recipe {
    const char  *arch; /* GGUF general.architecture */
    tm_rope_mode rope_mode;
    tm_mlp_kind  mlp;
    bool         qkv_bias;       /* attn_{q,k,v}.bias present (required) */
    bool         qk_norm;        /* RMSNorm over head_dim of q and k before RoPE */
    bool         post_norms;     /* RMSNorm of the attention and FFN outputs (gemma) */
    bool         embd_scale;     /* embeddings times sqrt(n_embd) */
    bool         tied_output;    /* output.weight may be absent: reuse token_embd */
    int32_t      swa_period;     /* >0: layer il is global iff (il+1) % period == 0 */
    float        rope_theta_swa; /* theta of sliding layers; 0 = the global theta */
    float        attn_softcap;   /* 0 = none */
    float        final_softcap;  /* 0 = none */
} tm_recipe;

const tm_recipe *tm__recipe_find(const char *arch, size_t len);
/* "llama, qwen2, ..." for error messages; static storage. */
const char *tm__recipe_list(void);

typedef struct tm_layer {
    tm_tensor attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm, post_attn_norm;
    tm_tensor ffn_norm, w_gate, w_up, w_down, post_ffn_norm;
    bool      swa; /* uses the sliding window */
} tm_layer;

/* Tensors with data == NULL are absent. */
struct tm_model {
    tm_recipe  recipe;
    tm_hparams hp;
    char       arch[32];
    tm_gguf   *gguf; /* GGUF source, or NULL */
    tm_mmap    map;  /* llama2.c source mapping */
    tm_tensor  tok_embd, output_norm, output, rope_freqs;
    tm_layer  *layers; /* [n_layer] */
};

/* Inputs of one step: n_tokens ids and positions (buffers the context owns). */
typedef struct tm_build_params {
    int32_t    n_tokens;
    int32_t   *ids;     /* [n_tokens] */
    int32_t   *pos;     /* [n_tokens] */
    tm_tensor *kc, *vc; /* [n_layer] cache tensors, [hd * n_head_kv, n_ctx] */
    bool       logits_all;
} tm_build_params;

/* Builds the forward graph of one step; *logits is [n_vocab, n_out]. */
void tm__graph_build(const tm_model *m, tm_graph *g, const tm_build_params *bp, tm_tensor **logits);
/* Tensors a step's graph needs at most (pool capacity). */
int32_t tm__graph_capacity(const tm_model *m);

#endif /* TM_MODEL_INT_H */
