/*
 * graph.c - the compute graph IR: tensor pool, op constructors, liveness planner.
 *
 * DESIGN
 * - All tensors of a graph live in one pool reserved by tm_graph_init(); building
 *   a graph is bump allocation from it, tm_graph_reset() rewinds. No heap traffic
 *   after init (the decode step's zero-allocation rule).
 * - Nodes execute in creation order. The planner walks that order once to find
 *   each buffer's last reader, then assigns offsets with a best-fit free list
 *   (kept in the pool's spare arrays, not the heap): a node's buffer is taken
 *   before its dead inputs are released, so outputs never alias inputs.
 * - Views own no memory: their readers extend the life of the viewed buffer.
 */
#include <string.h>

#include "tm/tm_graph.h"

#define GRAPH_MAX_FREE 256

typedef struct graph_block {
    size_t offs, size;
} graph_block;

struct tm_graph {
    tm_tensor  *pool; /* [cap] */
    int32_t     cap;
    int32_t     n;    /* tensors used (leaves and nodes) */
    size_t      peak; /* bytes, from the last plan */
    graph_block free_list[GRAPH_MAX_FREE];
    int32_t     n_free;
};

static const char *const graph_op_names[TM_OP_COUNT] = {
    "none", "view", "get_rows", "rms_norm", "mul_mat", "add",      "mul",  "scale",
    "silu", "gelu", "softcap",  "softmax",  "rope",    "kv_store", "attn",
};

const char *tm_op_name(tm_op op) {
    return (op >= 0 && op < TM_OP_COUNT) ? graph_op_names[op] : "?";
}

tm_status tm_graph_init(int32_t cap, tm_graph **out) {
    *out = NULL;
    if (cap <= 0)
        return tm_fail(TM_ERR_INVALID, "graph capacity %d", cap);
    tm_graph *g = tm_calloc(1, sizeof *g);
    if (g == NULL)
        return tm_fail(TM_ERR_NOMEM, "graph");
    g->pool = tm_calloc((size_t)cap, sizeof *g->pool);
    if (g->pool == NULL) {
        tm_free(g);
        return tm_fail(TM_ERR_NOMEM, "graph pool of %d tensors", cap);
    }
    g->cap = cap;
    *out = g;
    return TM_OK;
}

void tm_graph_free(tm_graph *g) {
    if (g == NULL)
        return;
    tm_free(g->pool);
    tm_free(g);
}

void tm_graph_reset(tm_graph *g) { g->n = 0; }

int32_t tm_graph_n_nodes(const tm_graph *g) { return g->n; }

tm_tensor *tm_graph_node(const tm_graph *g, int32_t i) {
    TM_ASSERT(i >= 0 && i < g->n);
    return &g->pool[i];
}

/* ---- tensors ---------------------------------------------------------------------- */

void tm_tensor_init(tm_tensor *t, tm_dtype dtype, int n_dims, const int64_t *ne, void *data) {
    TM_ASSERT(n_dims >= 1 && n_dims <= TM_MAX_DIMS);
    memset(t, 0, sizeof *t);
    t->dtype = dtype;
    for (int i = 0; i < TM_MAX_DIMS; i++)
        t->ne[i] = i < n_dims ? ne[i] : 1;
    const tm_dtype_traits *tr = tm_dtype_get_traits(dtype);
    TM_ASSERT(tr != NULL && t->ne[0] % tr->blck_size == 0);
    t->nb[0] = (size_t)tr->type_size;
    t->nb[1] = (size_t)(t->ne[0] / tr->blck_size) * (size_t)tr->type_size;
    for (int i = 2; i < TM_MAX_DIMS; i++)
        t->nb[i] = t->nb[i - 1] * (size_t)t->ne[i - 1];
    t->data = data;
    t->idx = -1;
}

int64_t tm_tensor_nelements(const tm_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

int64_t tm_tensor_nrows(const tm_tensor *t) { return t->ne[1] * t->ne[2] * t->ne[3]; }

size_t tm_tensor_nbytes(const tm_tensor *t) { return t->nb[1] * (size_t)tm_tensor_nrows(t); }

bool tm_tensor_is_contiguous(const tm_tensor *t) {
    const tm_dtype_traits *tr = tm_dtype_get_traits(t->dtype);
    if (t->nb[0] != (size_t)tr->type_size)
        return false;
    if (t->nb[1] != (size_t)(t->ne[0] / tr->blck_size) * (size_t)tr->type_size)
        return false;
    for (int i = 2; i < TM_MAX_DIMS; i++)
        if (t->ne[i] > 1 && t->nb[i] != t->nb[i - 1] * (size_t)t->ne[i - 1])
            return false;
    return true;
}

void tm_graph_set_output(tm_tensor *t) { t->is_output = true; }

static tm_tensor *graph_new(tm_graph *g, tm_op op, tm_dtype dtype, int n_dims, const int64_t *ne) {
    /* The pool is sized by the graph builder's own count: overflow is a bug. */
    TM_ASSERT(g->n < g->cap);
    tm_tensor *t = &g->pool[g->n];
    tm_tensor_init(t, dtype, n_dims, ne, NULL);
    t->op = op;
    t->idx = g->n++;
    return t;
}

tm_tensor *tm_graph_leaf(tm_graph *g, tm_dtype dtype, int n_dims, const int64_t *ne, void *data) {
    tm_tensor *t = graph_new(g, TM_OP_NONE, dtype, n_dims, ne);
    t->data = data;
    return t;
}

static tm_tensor *graph_like(tm_graph *g, tm_op op, const tm_tensor *x) {
    return graph_new(g, op, TM_DTYPE_F32, TM_MAX_DIMS, x->ne);
}

static tm_tensor *graph_unary(tm_graph *g, tm_op op, tm_tensor *x) {
    TM_ASSERT(x->dtype == TM_DTYPE_F32 && tm_tensor_is_contiguous(x));
    tm_tensor *t = graph_like(g, op, x);
    t->src[0] = x;
    return t;
}

tm_tensor *tm_get_rows(tm_graph *g, tm_tensor *w, tm_tensor *ids) {
    TM_ASSERT(ids->dtype == TM_DTYPE_I32 && ids->ne[1] == 1);
    tm_tensor *t = graph_new(g, TM_OP_GET_ROWS, TM_DTYPE_F32, 2, (int64_t[]){w->ne[0], ids->ne[0]});
    t->src[0] = w;
    t->src[1] = ids;
    return t;
}

tm_tensor *tm_mean_rows(tm_graph *g, tm_tensor *x) {
    TM_ASSERT(x->dtype == TM_DTYPE_F32 && x->ne[2] == 1 && x->ne[3] == 1);
    tm_tensor *t = graph_new(g, TM_OP_GET_ROWS, TM_DTYPE_F32, 2, (int64_t[]){x->ne[0], 1});
    t->src[0] = x;
    t->ip[0] = 1;
    return t;
}

tm_tensor *tm_layer_norm(tm_graph *g, tm_tensor *x, float eps) {
    tm_tensor *t = tm_rms_norm(g, x, eps);
    t->ip[0] = 1;
    return t;
}

tm_tensor *tm_rms_norm(tm_graph *g, tm_tensor *x, float eps) {
    tm_tensor *t = graph_unary(g, TM_OP_RMS_NORM, x);
    t->fp[0] = eps;
    return t;
}

tm_tensor *tm_mul_mat(tm_graph *g, tm_tensor *w, tm_tensor *x) {
    TM_ASSERT(w->ne[0] == x->ne[0] && w->ne[2] == 1 && w->ne[3] == 1);
    TM_ASSERT(x->dtype == TM_DTYPE_F32 && tm_tensor_is_contiguous(x));
    tm_tensor *t = graph_new(g, TM_OP_MUL_MAT, TM_DTYPE_F32, 4,
                             (int64_t[]){w->ne[1], x->ne[1], x->ne[2], x->ne[3]});
    t->src[0] = w;
    t->src[1] = x;
    return t;
}

static tm_tensor *graph_binary(tm_graph *g, tm_op op, tm_tensor *a, tm_tensor *b) {
    TM_ASSERT(a->dtype == TM_DTYPE_F32 && b->dtype == TM_DTYPE_F32);
    TM_ASSERT(tm_tensor_is_contiguous(a) && tm_tensor_is_contiguous(b));
    TM_ASSERT(a->ne[0] == b->ne[0] && tm_tensor_nrows(a) % tm_tensor_nrows(b) == 0);
    tm_tensor *t = graph_like(g, op, a);
    t->src[0] = a;
    t->src[1] = b;
    return t;
}

tm_tensor *tm_add(tm_graph *g, tm_tensor *a, tm_tensor *b) {
    return graph_binary(g, TM_OP_ADD, a, b);
}
tm_tensor *tm_mul(tm_graph *g, tm_tensor *a, tm_tensor *b) {
    return graph_binary(g, TM_OP_MUL, a, b);
}

tm_tensor *tm_scale(tm_graph *g, tm_tensor *x, float s) {
    tm_tensor *t = graph_unary(g, TM_OP_SCALE, x);
    t->fp[0] = s;
    return t;
}

tm_tensor *tm_silu(tm_graph *g, tm_tensor *x) { return graph_unary(g, TM_OP_SILU, x); }
tm_tensor *tm_gelu(tm_graph *g, tm_tensor *x) { return graph_unary(g, TM_OP_GELU, x); }

tm_tensor *tm_gelu_erf(tm_graph *g, tm_tensor *x) {
    tm_tensor *t = graph_unary(g, TM_OP_GELU, x);
    t->ip[0] = 1;
    return t;
}

tm_tensor *tm_softcap(tm_graph *g, tm_tensor *x, float cap) {
    TM_ASSERT(cap > 0.0f);
    tm_tensor *t = graph_unary(g, TM_OP_SOFTCAP, x);
    t->fp[0] = cap;
    return t;
}

tm_tensor *tm_softmax(tm_graph *g, tm_tensor *x, float scale) {
    tm_tensor *t = graph_unary(g, TM_OP_SOFTMAX, x);
    t->fp[0] = scale;
    return t;
}

tm_tensor *tm_rope(tm_graph *g, tm_tensor *x, tm_tensor *pos, tm_tensor *freq_factors,
                   int32_t n_rot, tm_rope_mode mode, float theta) {
    TM_ASSERT(n_rot > 0 && n_rot % 2 == 0 && n_rot <= x->ne[0]);
    TM_ASSERT(pos->dtype == TM_DTYPE_I32 && pos->ne[0] == x->ne[2]);
    TM_ASSERT(freq_factors == NULL ||
              (freq_factors->dtype == TM_DTYPE_F32 && freq_factors->ne[0] >= n_rot / 2));
    tm_tensor *t = graph_unary(g, TM_OP_ROPE, x);
    t->src[1] = pos;
    t->src[2] = freq_factors;
    t->ip[0] = n_rot;
    t->ip[1] = (int32_t)mode;
    t->fp[0] = theta;
    return t;
}

tm_tensor *tm_kv_store(tm_graph *g, tm_tensor *k, tm_tensor *v, tm_tensor *kc, tm_tensor *vc,
                       tm_tensor *pos) {
    TM_ASSERT(k->ne[0] * k->ne[1] == kc->ne[0] && v->ne[0] * v->ne[1] == vc->ne[0]);
    TM_ASSERT(k->ne[2] == pos->ne[0] && v->ne[2] == pos->ne[0]);
    TM_ASSERT(kc->dtype == TM_DTYPE_F32 || kc->dtype == TM_DTYPE_F16);
    TM_ASSERT(vc->dtype == kc->dtype);
    tm_tensor *t = graph_new(g, TM_OP_KV_STORE, TM_DTYPE_F32, 1, (int64_t[]){0});
    t->src[0] = k;
    t->src[1] = v;
    t->src[2] = kc;
    t->src[3] = vc;
    t->src[4] = pos;
    return t;
}

tm_tensor *tm_attn(tm_graph *g, tm_tensor *q, tm_tensor *kc, tm_tensor *vc, tm_tensor *pos,
                   tm_tensor *store, int32_t n_head_kv, int32_t swa, float scale, float softcap) {
    const int64_t hd = q->ne[0], nh = q->ne[1], T = q->ne[2];
    TM_ASSERT(n_head_kv > 0 && nh % n_head_kv == 0 && kc->ne[0] == hd * n_head_kv);
    TM_ASSERT(pos->ne[0] == T && store->op == TM_OP_KV_STORE);
    tm_tensor *t = graph_new(g, TM_OP_ATTN, TM_DTYPE_F32, 2, (int64_t[]){hd * nh, T});
    t->src[0] = q;
    t->src[1] = kc;
    t->src[2] = vc;
    t->src[3] = pos;
    t->src[4] = store;
    t->ip[0] = swa;
    t->ip[1] = n_head_kv;
    t->fp[0] = scale;
    t->fp[1] = softcap;
    return t;
}

void tm_attn_set_bidirectional(tm_tensor *attn) {
    TM_ASSERT(attn->op == TM_OP_ATTN);
    attn->ip[2] = 1;
}

void tm_kv_store_set_slots(tm_tensor *store, tm_tensor *slots) {
    TM_ASSERT(store->op == TM_OP_KV_STORE && slots->dtype == TM_DTYPE_I32);
    TM_ASSERT(slots->ne[0] == store->src[4]->ne[0]);
    store->src[5] = slots;
}

void tm_attn_set_blocks(tm_tensor *attn, tm_tensor *tables, int32_t block_size) {
    TM_ASSERT(attn->op == TM_OP_ATTN && tables->dtype == TM_DTYPE_I32);
    TM_ASSERT(tables->ne[1] == attn->src[0]->ne[2]);
    TM_ASSERT(block_size > 0 && (block_size & (block_size - 1)) == 0);
    attn->src[5] = tables;
    attn->ip[3] = block_size;
}

static tm_tensor *graph_view(tm_graph *g, tm_tensor *x, int n_dims, const int64_t *ne,
                             size_t offs) {
    tm_tensor *t = graph_new(g, TM_OP_VIEW, x->dtype, n_dims, ne);
    t->src[0] = x;
    t->ip[0] = (int32_t)(offs & 0x7fffffff);
    t->ip[1] = (int32_t)(offs >> 31);
    return t;
}

tm_tensor *tm_reshape(tm_graph *g, tm_tensor *x, int n_dims, const int64_t *ne) {
    TM_ASSERT(tm_tensor_is_contiguous(x));
    int64_t n = 1;
    for (int i = 0; i < n_dims; i++)
        n *= ne[i];
    TM_ASSERT(n == tm_tensor_nelements(x));
    return graph_view(g, x, n_dims, ne, 0);
}

tm_tensor *tm_view_cols(tm_graph *g, tm_tensor *x, int64_t c0, int64_t n) {
    TM_ASSERT(tm_tensor_is_contiguous(x) && x->ne[2] == 1 && x->ne[3] == 1);
    TM_ASSERT(c0 >= 0 && n > 0 && c0 + n <= x->ne[1]);
    return graph_view(g, x, 2, (int64_t[]){x->ne[0], n}, (size_t)c0 * x->nb[1]);
}

/* ---- planner ------------------------------------------------------------------------ */

/* The tensor owning the memory a view reads. */
static tm_tensor *graph_base(tm_tensor *t) {
    while (t->op == TM_OP_VIEW)
        t = t->src[0];
    return t;
}

static bool graph_owns_buffer(const tm_graph *g, const tm_tensor *t) {
    return t->op != TM_OP_NONE && t->op != TM_OP_VIEW && t->op != TM_OP_KV_STORE && t->idx >= 0 &&
           t->idx < g->n && t == &g->pool[t->idx];
}

static size_t graph_round(size_t n) {
    return (n + TM_GRAPH_ALIGN - 1) & ~(size_t)(TM_GRAPH_ALIGN - 1);
}

static size_t graph_alloc(tm_graph *g, size_t size, size_t *top) {
    int32_t best = -1;
    for (int32_t i = 0; i < g->n_free; i++)
        if (g->free_list[i].size >= size &&
            (best < 0 || g->free_list[i].size < g->free_list[best].size))
            best = i;
    if (best < 0) {
        size_t o = *top;
        *top += size;
        if (*top > g->peak)
            g->peak = *top;
        return o;
    }
    size_t o = g->free_list[best].offs;
    g->free_list[best].offs += size;
    g->free_list[best].size -= size;
    if (g->free_list[best].size == 0) {
        memmove(&g->free_list[best], &g->free_list[best + 1],
                (size_t)(g->n_free - best - 1) * sizeof g->free_list[0]);
        g->n_free--;
    }
    return o;
}

static void graph_release(tm_graph *g, size_t offs, size_t size, size_t *top) {
    /* keep the list sorted by offset and merge neighbours */
    int32_t i = 0;
    while (i < g->n_free && g->free_list[i].offs < offs)
        i++;
    if (i > 0 && g->free_list[i - 1].offs + g->free_list[i - 1].size == offs) {
        g->free_list[i - 1].size += size;
        i--;
    } else {
        /* GRAPH_MAX_FREE bounds fragmentation; a graph of this IR never gets near it. */
        TM_ASSERT(g->n_free < GRAPH_MAX_FREE);
        memmove(&g->free_list[i + 1], &g->free_list[i],
                (size_t)(g->n_free - i) * sizeof g->free_list[0]);
        g->free_list[i] = (graph_block){offs, size};
        g->n_free++;
    }
    if (i + 1 < g->n_free &&
        g->free_list[i].offs + g->free_list[i].size == g->free_list[i + 1].offs) {
        g->free_list[i].size += g->free_list[i + 1].size;
        memmove(&g->free_list[i + 1], &g->free_list[i + 2],
                (size_t)(g->n_free - i - 2) * sizeof g->free_list[0]);
        g->n_free--;
    }
    if (g->free_list[i].offs + g->free_list[i].size == *top) {
        *top = g->free_list[i].offs;
        g->n_free--;
        TM_ASSERT(i == g->n_free);
    }
}

size_t tm_graph_plan(tm_graph *g) {
    for (int32_t i = 0; i < g->n; i++)
        g->pool[i].last_use = g->pool[i].idx;
    for (int32_t i = 0; i < g->n; i++) {
        tm_tensor *t = &g->pool[i];
        for (int s = 0; s < TM_MAX_SRC; s++) {
            if (t->src[s] == NULL)
                continue;
            tm_tensor *b = graph_base(t->src[s]);
            if (graph_owns_buffer(g, b) && b->last_use < i)
                b->last_use = i;
        }
        if (t->is_output) {
            tm_tensor *b = graph_base(t);
            if (graph_owns_buffer(g, b))
                b->last_use = INT32_MAX;
        }
    }
    g->n_free = 0;
    g->peak = 0;
    size_t top = 0;
    for (int32_t i = 0; i < g->n; i++) {
        tm_tensor *t = &g->pool[i];
        if (graph_owns_buffer(g, t))
            t->offs = graph_alloc(g, graph_round(tm_tensor_nbytes(t)), &top);
        for (int s = 0; s < TM_MAX_SRC; s++) {
            if (t->src[s] == NULL)
                continue;
            tm_tensor *b = graph_base(t->src[s]);
            if (graph_owns_buffer(g, b) && b->last_use == i) {
                graph_release(g, b->offs, graph_round(tm_tensor_nbytes(b)), &top);
                b->last_use = -1; /* released once even when read twice by this node */
            }
        }
    }
    return g->peak;
}

tm_status tm_graph_place(tm_graph *g, void *buf, size_t buf_bytes) {
    if (g->peak > buf_bytes)
        return tm_fail(TM_ERR_FULL, "graph needs %zu bytes of scratch, %zu reserved", g->peak,
                       buf_bytes);
    for (int32_t i = 0; i < g->n; i++) {
        tm_tensor *t = &g->pool[i];
        if (graph_owns_buffer(g, t))
            t->data = (char *)buf + t->offs;
        else if (t->op == TM_OP_VIEW)
            t->data = (char *)t->src[0]->data + ((size_t)t->ip[0] | ((size_t)t->ip[1] << 31));
    }
    return TM_OK;
}
