/*
 * tm_model.h - load a decoder-only transformer (weights + recipe) and run it on
 * the CPU: tm_model holds the immutable weights, tm_ctx the KV cache (a paged
 * pool of one or several sequences) and scratch.
 *
 * A model is a recipe (docs/recipes.md: the transformer block as data, chosen by
 * the GGUF general.architecture or config.json model_type, or given as a JSON
 * recipe file) plus weights. Sources: a GGUF file (tensors point into the
 * read-only mapping, zero copy), a Hugging Face folder (config.json + safetensors,
 * one file or shards, F32/F16/BF16; also zero copy) or a llama2.c checkpoint
 * (.bin, loaded as the llama recipe).
 *
 * Embedding models (recipe pooling "mean", e.g. BERT / all-MiniLM-L6-v2):
 *
 *     float v[384];   // tm_model_n_embd_out(model) floats
 *     tm_ctx_embed(ctx, model, ids, n_ids, v, 384);  // mean-pooled, L2-normalized
 *
 *     tm_model_params mp = tm_model_params_default();
 *     mp.path = "models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
 *     tm_model *model = NULL;
 *     if (tm_model_load(&mp, &model) != TM_OK) die(tm_last_error());
 *     tm_ctx_params cp = tm_ctx_params_default();
 *     tm_ctx *ctx = NULL;
 *     if (tm_ctx_init(model, &cp, &ctx) != TM_OK) die(tm_last_error());
 *     tm_ctx_decode(ctx, ids, n_ids);                 // prompt (n_ids <= cp.n_batch)
 *     const float *logits = tm_ctx_logits(ctx, -1);  // last token, n_vocab floats
 *     tm_ctx_decode(ctx, &next, 1);                   // one step: no heap allocation
 *     tm_ctx_free(ctx);
 *
 * Several sequences in one pass (cp.n_seq_max = 4): tokens carry their sequence
 *
 *     int32_t tok[3] = {a, b, c}, seq[3] = {0, 1, 1};
 *     bool want[3] = {true, false, true};
 *     tm_batch b = {.n_tokens = 3, .token = tok, .seq_id = seq, .want_logits = want};
 *     tm_ctx_decode_batch(ctx, &b);  // tm_ctx_logits(ctx, 0): seq 0, (ctx, 1): seq 1
 *     tm_ctx_seq_remove(ctx, 1);     // blocks back to the pool
 *     tm_model_free(model);
 *
 * Threads: a tm_model is immutable after tm_model_load() returns; any number of
 * threads and contexts may share it. A tm_ctx is used by one thread at a time
 * (it owns a pool of n_threads - 1 compute threads of its own).
 */
#ifndef TM_MODEL_H
#define TM_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_dtype.h"
#include "tm/tm_status.h"

typedef struct tm_model tm_model; /* opaque */
typedef struct tm_ctx   tm_ctx;   /* opaque */
typedef struct tm_gguf  tm_gguf;  /* tm_gguf.h */

typedef struct tm_model_params {
    const char *path; /* GGUF file, HF folder or llama2.c checkpoint; borrowed during the call */
    /* Optional JSON recipe (docs/recipes.md) used instead of the built-in one chosen by
     * the file: a path, or the text itself (recipe_json wins). Borrowed during the call. */
    const char *recipe_path;
    const char *recipe_json;
    size_t      recipe_json_len;
} tm_model_params;

/* Hyperparameters read from the file (validated at load). */
typedef struct tm_hparams {
    int32_t n_vocab;
    int32_t n_ctx_train; /* positions the model was trained for */
    int32_t n_embd;
    int32_t n_layer;
    int32_t n_head;
    int32_t n_head_kv;
    int32_t head_dim; /* per head, for q, k and v */
    int32_t n_rot;    /* rotated dims per head (<= head_dim) */
    int32_t n_ff;
    int32_t n_swa; /* sliding window in tokens, 0 = none */
    float   rope_theta;
    float   rope_theta_swa; /* theta of sliding-window layers */
    float   rms_eps;
    int32_t bos_id, eos_id; /* -1 when unknown */
} tm_hparams;

tm_model_params tm_model_params_default(void);

/* On success stores a new model in *out (release with tm_model_free). Errors
 * name the problem: unknown architecture, missing tensor, shape mismatch,
 * unsupported dtype, bad hyperparameter. *out stays NULL on failure. */
tm_status tm_model_load(const tm_model_params *params, tm_model **out);
void      tm_model_free(tm_model *model); /* NULL is a no-op */
/* Maps in every weight's pages now (tm_mem_prefault), so the first forward pass does
 * not pay the page-table faults (what llama.cpp's MAP_POPULATE does at load). The
 * server calls it before it reports the model ready; one-shot commands need not. */
void tm_model_prefault(const tm_model *model);

/* Parses and validates a JSON recipe without loading weights (lctl, fuzzing):
 * TM_ERR_FORMAT naming the key on any error. */
tm_status tm_recipe_check(const char *json, size_t len);

const tm_hparams *tm_model_get_hparams(const tm_model *model); /* owned by model */
/* Length of an embedding model's output vector (n_embd); 0 for language models. */
int32_t     tm_model_n_embd_out(const tm_model *model);
const char *tm_model_arch(const tm_model *model); /* owned by model */
/* The open GGUF (e.g. for its tokenizer); NULL for other sources. Owned by model. */
const tm_gguf *tm_model_gguf(const tm_model *model);

/* ---- context ------------------------------------------------------------------ */

/* Activation precision of the matmuls with quantized weights (tm_ctx_params.act_type;
 * float weights always run in float). Names: "q8", "q16", "f32". */
typedef enum tm_act_type {
    /* q8: activations quantized to 8-bit blocks, integer dots (as llama.cpp); fastest */
    TM_ACT_Q8 = 0,
    /* q16: the 8-bit blocks plus their 8-bit residual, about 1e-4 relative error; matches
     * a float reference's top-1 on real models at ~1.3x decode / ~1.8x prefill time */
    TM_ACT_Q16 = 1,
    /* f32: float activations, weights dequantized row by row: equal to a float reference
     * (transformers) up to float rounding; slowest */
    TM_ACT_F32 = 2,
} tm_act_type;

/* The default of tm_ctx_params, tm_sched_params and tm_server_params (this one place). */
#define TM_ACT_DEFAULT TM_ACT_Q8

/* "q8" / "q16" / "f32" (any case) to *out; TM_ERR_INVALID naming the allowed values for
 * anything else (NULL included), *out unchanged then. */
tm_status tm_act_type_from_name(const char *s, tm_act_type *out);
/* "q8", "q16" or "f32"; "?" for a value outside the enum. Static storage. */
const char *tm_act_type_name(tm_act_type t);

typedef struct tm_ctx_params {
    int32_t  n_ctx;      /* positions one sequence may hold; 0 = min(n_ctx_train, 2048) */
    int32_t  n_batch;    /* most tokens per decode call; 0 = min(n_ctx, 128) */
    int32_t  n_threads;  /* compute threads; 0 = online CPUs */
    tm_dtype kv_dtype;   /* TM_DTYPE_F16 (default) or TM_DTYPE_F32; docs/decisions.md */
    bool     logits_all; /* logits for every token of a batch, not just the last */
    /* Activation precision of every matmul with quantized weights; default TM_ACT_DEFAULT
     * (q8). TM_ACT_F32 gives a float reference's results up to rounding; docs/accuracy.md
     * measures the difference. */
    tm_act_type act_type;
    /* Multi-sequence contexts (tm_ctx_decode_batch); the defaults give one sequence. */
    int32_t n_seq_max;     /* sequence ids 0 .. n_seq_max - 1; 0 = 1 */
    int32_t kv_block_size; /* positions per KV block, a power of two; 0 = 16 */
    int32_t n_kv_blocks;   /* blocks in the KV pool; 0 = n_seq_max * ceil(n_ctx / block) */
    /* Logits rows one tm_ctx_decode_batch may return (capped at n_batch); 0 = n_seq_max
     * (one per sequence). More rows cost scratch (n_vocab floats each), reserved at init:
     * the scheduler adds rows for prompt log-probabilities. Ignored with logits_all. */
    int32_t n_out_max;
} tm_ctx_params;

tm_ctx_params tm_ctx_params_default(void);

/* Reserves everything a decode step needs (KV cache, graph, scratch, threads):
 * measure, reserve, run. The model must outlive the context. */
tm_status tm_ctx_init(const tm_model *model, const tm_ctx_params *params, tm_ctx **out);
void      tm_ctx_free(tm_ctx *ctx); /* NULL is a no-op */

/* Appends n_tokens (1..n_batch) at position tm_ctx_n_past() and computes logits.
 * TM_ERR_INVALID for a token id outside [0, n_vocab) or a bad count, TM_ERR_FULL
 * when the cache has no room. Does no heap allocation. */
tm_status tm_ctx_decode(tm_ctx *ctx, const int32_t *tokens, int32_t n_tokens);

/* Several sequences in one forward pass (continuous batching). Token i is
 * token[i] of sequence seq_id[i] at position pos[i]; a sequence's tokens in a
 * batch must be its next positions, in order (pos may be NULL to mean exactly
 * that). Attention reads only the token's own sequence (causal, sliding
 * window), so each sequence's logits equal those of decoding it alone. */
typedef struct tm_batch {
    int32_t        n_tokens;    /* 1 .. n_batch */
    const int32_t *token;       /* [n_tokens] ids in [0, n_vocab) */
    const int32_t *pos;         /* [n_tokens] positions, or NULL: each sequence's next ones */
    const int32_t *seq_id;      /* [n_tokens] in [0, n_seq_max) */
    const bool    *want_logits; /* [n_tokens], or NULL: the last token of each sequence */
} tm_batch;

/* Runs one batch. Logits of the tokens with want_logits come back in batch
 * order: tm_ctx_logits(ctx, k) is the k-th of them. At most n_batch tokens and
 * (unless logits_all) min(n_batch, n_out_max or n_seq_max) logits rows per call.
 * TM_ERR_INVALID for a bad id, sequence, position or count; TM_ERR_FULL when a
 * sequence would pass n_ctx or the KV pool lacks blocks (nothing changes then).
 * Does no heap allocation. */
tm_status tm_ctx_decode_batch(tm_ctx *ctx, const tm_batch *batch);

/* Logits (n_vocab floats) of output i of the last decode (tm_ctx_decode: token i
 * with logits_all; else output 0 is the last token), or of the last output for
 * i = -1. Owned by ctx, valid until the next decode. */
const float *tm_ctx_logits(const tm_ctx *ctx, int32_t i);
int32_t      tm_ctx_n_outputs(const tm_ctx *ctx); /* logits rows of the last decode */
/* Embedding models: clears ctx, runs tokens (1..n_batch, a whole sequence) and
 * writes the mean-pooled, L2-normalized vector to out[0..n_out). model must be the
 * model ctx was made from, n_out == tm_model_n_embd_out(model). TM_ERR_INVALID for a
 * language model or a wrong n_out; decode errors as tm_ctx_decode (too many tokens:
 * TM_ERR_INVALID / TM_ERR_FULL). */
tm_status tm_ctx_embed(tm_ctx *ctx, const tm_model *model, const int32_t *tokens, int32_t n_tokens,
                       float *out, int32_t n_out);
int32_t   tm_ctx_n_past(const tm_ctx *ctx); /* of sequence 0 */
int32_t   tm_ctx_n_ctx(const tm_ctx *ctx);  /* positions per sequence */
void      tm_ctx_clear(tm_ctx *ctx);        /* forget every sequence */
/* Keeps the first n_past positions of sequence 0 and forgets the rest (e.g. to
 * reuse a cached prompt prefix). TM_ERR_INVALID when n_past is negative or beyond
 * tm_ctx_n_past(). */
tm_status tm_ctx_truncate(tm_ctx *ctx, int32_t n_past);

/* ---- sequences of a multi-sequence context (paged KV pool, tm_kvcache.h) ------- */
int32_t tm_ctx_n_seq_max(const tm_ctx *ctx);
int32_t tm_ctx_seq_n_past(const tm_ctx *ctx, int32_t seq); /* 0 for a bad id */
/* Forgets seq; its KV blocks go back to the pool (registered ones stay cached). */
void tm_ctx_seq_remove(tm_ctx *ctx, int32_t seq);
/* Keeps seq's first n positions (a shared last block is copied first).
 * TM_ERR_INVALID for a bad id or n; TM_ERR_FULL when the copy finds no block. */
tm_status tm_ctx_seq_truncate(tm_ctx *ctx, int32_t seq, int32_t n);
/* The empty sequence dst starts as src's first n positions, sharing src's full
 * blocks (no copy) and copying a partial last one. Errors as tm_kvcache.h. */
tm_status tm_ctx_seq_copy_prefix(tm_ctx *ctx, int32_t src, int32_t dst, int32_t n);
/* After tm_kvcache_seq_attach_prefix on seq: reuses the head of a cached block that
 * continues the prompt (tm_kvcache_seq_attach_partial), copying its rows into a
 * private block; returns the positions added (0 when none match). */
int32_t tm_ctx_seq_attach_partial(tm_ctx *ctx, int32_t seq, const int32_t *tokens, int32_t n,
                                  uint64_t salt);
/* The context's block manager, for the prefix cache (tm_kvcache_seq_attach_prefix /
 * _register) and pool statistics. Owned by ctx; same thread rule as ctx. Do not
 * append to or remove sequences through it: use the tm_ctx_seq_* calls. */
struct tm_kvcache *tm_ctx_kvcache(tm_ctx *ctx);

#endif /* TM_MODEL_H */
