/*
 * tm_graph.h - a small device-agnostic compute graph: tensors and op nodes.
 *
 * Shapes follow ggml: ne[0] is the fastest (contiguous) dimension and nb[i] is
 * the byte stride of dimension i, so a weight matrix of n_out rows of n_in
 * elements has ne = {n_in, n_out}. A graph is built by calling the op
 * constructors in order; creation order is a topological order, so the
 * executor runs nodes as they were created. Leaves (TM_OP_NONE) carry data the
 * caller owns (weights in a mapping, KV cache, inputs); every other node gets
 * its data from tm_graph_place(), which reuses a buffer by liveness.
 *
 *     tm_graph *g = NULL;
 *     tm_graph_init(1024, &g);                         // capacity: tensors
 *     tm_tensor *x = tm_graph_leaf(g, TM_DTYPE_F32, 2, (int64_t[]){64, 7}, xbuf);
 *     tm_tensor *y = tm_rms_norm(g, x, 1e-5f);
 *     tm_graph_set_output(y);
 *     size_t need = tm_graph_plan(g);                   // bytes of scratch
 *     tm_graph_place(g, scratch, scratch_bytes);        // TM_ERR_FULL when too small
 *     ...a backend computes g...
 *     tm_graph_reset(g);                                // rebuild for the next step
 *
 * Building, planning and placing never allocate: the tensor pool is reserved
 * by tm_graph_init() (measure, reserve, run). Running out of pool is a bug of
 * the caller's measurement and asserts.
 *
 * Threads: a tm_graph is used by one thread at a time; a backend may read it
 * from its worker threads while it computes.
 */
#ifndef TM_GRAPH_H
#define TM_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_dtype.h"
#include "tm/tm_status.h"

#define TM_MAX_DIMS 4
#define TM_MAX_SRC 6
#define TM_GRAPH_ALIGN 64 /* bytes: every placed node starts on a cache line */

/* Activation precision of a TM_OP_MUL_MAT node (its ip[0]) for quantized weights. */
enum tm_mm_act {
    TM_MM_ACT8 = 0,    /* 8-bit blocks, integer dots (fastest; ~1e-2 relative) */
    TM_MM_ACT_F32 = 1, /* f32: weights dequantized, float dots (exact; slowest) */
    TM_MM_ACT16 = 2,   /* 8-bit blocks plus their 8-bit residual: two integer dots */
};

typedef enum tm_op {
    TM_OP_NONE = 0, /* leaf: data owned by the caller */
    TM_OP_VIEW,     /* view of src0 at ip[0] bytes (+ ip[1] << 31); no compute */
    TM_OP_GET_ROWS, /* src0 [E, V] any dtype, src1 ids [T] I32 -> [E, T] F32. ip[0] = 1:
                       mean of all rows of an F32 src0 [E, n] instead, no src1 -> [E, 1]
                       (mean pooling of hidden states) */
    TM_OP_RMS_NORM, /* x / sqrt(mean(x^2) + fp[0]) over ne[0]; ip[0] = 1: LayerNorm
                       without affine, (x - mean) / sqrt(var + fp[0]) */
    TM_OP_MUL_MAT,  /* src0 W [K, N] any dtype, src1 X [K, T..] F32 -> [N, T..] F32;
                       ip[0]: activation precision, enum tm_mm_act */
    TM_OP_ADD,      /* src0 + src1; src1 rows repeat over src0 rows */
    TM_OP_MUL,      /* src0 * src1; src1 rows repeat over src0 rows */
    TM_OP_SCALE,    /* src0 * fp[0] */
    TM_OP_SILU,     /* x * sigmoid(x) */
    TM_OP_GELU,     /* tanh approximation (HF gelu_pytorch_tanh); ip[0] = 1: exact
                       erf form (HF "gelu", BERT) */
    TM_OP_SOFTCAP,  /* fp[0] * tanh(x / fp[0]) */
    TM_OP_SOFTMAX,  /* softmax(fp[0] * x) over ne[0] */
    TM_OP_ROPE,     /* src0 [hd, nh, T], src1 pos [T] I32, src2 freq factors [n_rot/2] F32
                       or NULL; ip[0] n_rot, ip[1] tm_rope_mode; fp[0] theta base */
    TM_OP_KV_STORE, /* src0 k [hd, nkv, T], src1 v [hd, nkv, T], src2 K cache, src3 V cache
                       ([hd*nkv, n_rows] F32/F16 leaves), src4 pos [T]; writes row pos[t]
                       of each cache, or row slot[t] when src5 (slots [T] I32, a paged
                       cache: tm_kv_store_set_slots) is set. Result has no data: later
                       nodes list it as a source to order themselves after the write. */
    TM_OP_ATTN,     /* src0 q [hd, nh, T], src1 K cache, src2 V cache, src3 pos [T],
                       src4 the KV_STORE node; causal attention over cache rows
                       [lo, pos[t]], lo = pos[t] - ip[0] + 1 when ip[0] (sliding window)
                       > 0 else 0; fp[0] scale, fp[1] logit soft-cap (0 = none).
                       ip[2] = 1: bidirectional (encoders): every token sees rows
                       [lo, pos[T-1]] of its batch. Paged cache (tm_attn_set_blocks):
                       src5 block tables [n_blk, T] I32, ip[3] block size (a power of
                       two); logical position j of token t lives in cache row
                       src5[t][j / ip[3]] * ip[3] + j % ip[3], so each token reads only
                       its own sequence's blocks. -> [hd * nh, T] F32 */
    TM_OP_COUNT
} tm_op;

typedef enum tm_rope_mode {
    TM_ROPE_NORM = 0, /* rotate pairs (2i, 2i+1): llama2.c, GGUF llama (q/k rows permuted) */
    TM_ROPE_NEOX = 2, /* rotate pairs (i, i + n_rot/2): HF rotate_half, GGUF qwen2/gemma */
} tm_rope_mode;

typedef struct tm_tensor tm_tensor;
struct tm_tensor {
    tm_dtype    dtype;
    int64_t     ne[TM_MAX_DIMS]; /* elements per dimension, ne[0] fastest; unused = 1 */
    size_t      nb[TM_MAX_DIMS]; /* byte strides */
    tm_op       op;
    tm_tensor  *src[TM_MAX_SRC];
    int32_t     ip[4];     /* integer op parameters (see tm_op) */
    float       fp[4];     /* float op parameters (see tm_op) */
    void       *data;      /* leaves: caller's; nodes: set by tm_graph_place() */
    const char *name;      /* static string or NULL; borrowed */
    bool        is_output; /* kept alive to the end of the graph */
    /* planner state (tm_graph_plan) */
    int32_t idx;      /* creation index in the graph; -1 for foreign leaves */
    int32_t last_use; /* index of the last node reading this buffer */
    size_t  offs;     /* byte offset in the scratch buffer */
};

typedef struct tm_graph tm_graph; /* opaque */

/* Reserves room for cap tensors (leaves and nodes). */
tm_status tm_graph_init(int32_t cap, tm_graph **out);
void      tm_graph_free(tm_graph *g); /* NULL is a no-op */
void      tm_graph_reset(tm_graph *g);

int32_t    tm_graph_n_nodes(const tm_graph *g);
tm_tensor *tm_graph_node(const tm_graph *g, int32_t i); /* in creation order */

/* Computes every node's offset with buffer reuse and returns the bytes of
 * scratch the graph needs. */
size_t tm_graph_plan(tm_graph *g);
/* Sets node data pointers into buf; TM_ERR_FULL when the plan needs more than
 * buf_bytes. Call tm_graph_plan() first. */
tm_status tm_graph_place(tm_graph *g, void *buf, size_t buf_bytes);

/* ---- tensors ------------------------------------------------------------------ */
/* A leaf of n_dims dims with contiguous strides over caller data (may be NULL
 * until computed). */
tm_tensor *tm_graph_leaf(tm_graph *g, tm_dtype dtype, int n_dims, const int64_t *ne, void *data);
/* Fills ne/nb of a standalone tensor (weights the model owns). */
void tm_tensor_init(tm_tensor *t, tm_dtype dtype, int n_dims, const int64_t *ne, void *data);

int64_t     tm_tensor_nelements(const tm_tensor *t);
size_t      tm_tensor_nbytes(const tm_tensor *t); /* contiguous size */
bool        tm_tensor_is_contiguous(const tm_tensor *t);
int64_t     tm_tensor_nrows(const tm_tensor *t); /* ne[1] * ne[2] * ne[3] */
void        tm_graph_set_output(tm_tensor *t);
const char *tm_op_name(tm_op op);

/* ---- op constructors (shapes are checked with TM_ASSERT: callers are graph
 * builders that validated the model first) ---------------------------------- */
tm_tensor *tm_get_rows(tm_graph *g, tm_tensor *w, tm_tensor *ids);
/* Mean of the rows of x (F32 [E, n]) -> [E, 1] (TM_OP_GET_ROWS, ip[0] = 1, no src1). */
tm_tensor *tm_mean_rows(tm_graph *g, tm_tensor *x);
tm_tensor *tm_rms_norm(tm_graph *g, tm_tensor *x, float eps);
/* (x - mean) / sqrt(var + eps) over ne[0] (TM_OP_RMS_NORM, ip[0] = 1). */
tm_tensor *tm_layer_norm(tm_graph *g, tm_tensor *x, float eps);
tm_tensor *tm_mul_mat(tm_graph *g, tm_tensor *w, tm_tensor *x);
tm_tensor *tm_add(tm_graph *g, tm_tensor *a, tm_tensor *b);
tm_tensor *tm_mul(tm_graph *g, tm_tensor *a, tm_tensor *b);
tm_tensor *tm_scale(tm_graph *g, tm_tensor *x, float s);
tm_tensor *tm_silu(tm_graph *g, tm_tensor *x);
tm_tensor *tm_gelu(tm_graph *g, tm_tensor *x);
tm_tensor *tm_gelu_erf(tm_graph *g, tm_tensor *x); /* TM_OP_GELU, ip[0] = 1 */
tm_tensor *tm_softcap(tm_graph *g, tm_tensor *x, float cap);
tm_tensor *tm_softmax(tm_graph *g, tm_tensor *x, float scale);
tm_tensor *tm_rope(tm_graph *g, tm_tensor *x, tm_tensor *pos, tm_tensor *freq_factors,
                   int32_t n_rot, tm_rope_mode mode, float theta);
tm_tensor *tm_kv_store(tm_graph *g, tm_tensor *k, tm_tensor *v, tm_tensor *kc, tm_tensor *vc,
                       tm_tensor *pos);
tm_tensor *tm_attn(tm_graph *g, tm_tensor *q, tm_tensor *kc, tm_tensor *vc, tm_tensor *pos,
                   tm_tensor *store, int32_t n_head_kv, int32_t swa, float scale, float softcap);
/* Makes an attn node bidirectional (ip[2] = 1): encoders. */
void tm_attn_set_bidirectional(tm_tensor *attn);
/* Paged KV cache: the store writes token t to cache row slots[t] (I32 [T]) instead
 * of pos[t]. */
void tm_kv_store_set_slots(tm_tensor *store, tm_tensor *slots);
/* Paged KV cache: token t reads logical position j from cache row
 * tables[t][j / block_size] * block_size + j % block_size (tables I32 [n_blk, T];
 * block_size a power of two; n_blk * block_size bounds a sequence's positions). */
void tm_attn_set_blocks(tm_tensor *attn, tm_tensor *tables, int32_t block_size);
/* Contiguous reshape (a view with new ne); x must be contiguous. */
tm_tensor *tm_reshape(tm_graph *g, tm_tensor *x, int n_dims, const int64_t *ne);
/* View of ne[1]-columns [c0, c0 + n) of a contiguous 2-D tensor. */
tm_tensor *tm_view_cols(tm_graph *g, tm_tensor *x, int64_t c0, int64_t n);

#endif /* TM_GRAPH_H */
