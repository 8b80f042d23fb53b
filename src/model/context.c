/*
 * context.c - tm_ctx: the KV cache (a paged pool of one or several sequences),
 * graph and scratch, and the decode step that runs the recipe's graph on the
 * CPU backend.
 *
 * DESIGN (measure, reserve, run)
 * - tm_ctx_init builds the worst-case graphs (n_batch tokens with the most
 *   logits rows, n_batch tokens with one, a single token), plans them, and
 *   reserves: the KV pool (one allocation for every layer: n_kv_blocks *
 *   block_size rows per layer), the block manager (tm_kvcache.h), the graph's
 *   tensor pool, the node scratch buffer (the largest plan), the per-token
 *   input buffers (ids, positions, slots, block tables, output ids), the
 *   kernels' per-thread scratch and the thread pool.
 * - tm_ctx_decode_batch validates its input (ids, sequences, positions, room
 *   per sequence, free blocks) before changing anything, takes the blocks,
 *   fills each token's slot and a copy of its sequence's block table, rebuilds
 *   the graph into the reserved pool, re-plans it into the reserved scratch and
 *   runs it: no heap allocation (tests/unit/test_model.c counts).
 * - tm_ctx_decode is tm_ctx_decode_batch of sequence 0 with the old output
 *   rule (the last token, or all with logits_all). Attention sums keys in the
 *   same order whatever the layout, so the results are bit-identical to the
 *   former contiguous cache.
 */
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "backend/cpu/cpu_int.h"
#include "model/model_int.h"
#include "tm/tm_kvcache.h"

struct tm_ctx {
    const tm_model *model;
    tm_ctx_params   p;
    void           *kv;        /* every layer's K and V rows: [n_layer][2][n_rows * row] */
    tm_tensor      *kc, *vc;   /* [n_layer] cache tensors over kv, [hd * n_head_kv, n_rows] */
    tm_kvcache     *blocks;    /* which rows belong to which sequence */
    int32_t         n_out_max; /* logits rows one decode may return */
    tm_graph       *graph;
    void           *scratch; /* node buffers */
    size_t          scratch_bytes;
    int32_t        *ids, *pos, *slots; /* [n_batch] */
    int32_t        *tables;            /* [n_batch * max_blk] per-token block tables */
    int32_t        *out_ids;           /* [n_out_max] */
    int32_t        *seq_cnt;           /* [n_seq_max] tokens per sequence in a batch */
    int32_t        *seq0;              /* [n_batch] zeros: tm_ctx_decode's sequence ids */
    tm_cpu_pool    *pool;
    const float    *logits; /* [n_out, n_vocab], inside scratch */
    int32_t         n_out;
};

tm_ctx_params tm_ctx_params_default(void) {
    return (tm_ctx_params){.n_ctx = 0,
                           .n_batch = 0,
                           .n_threads = 0,
                           .kv_dtype = TM_DTYPE_F16,
                           .logits_all = false,
                           .act_type = TM_ACT_DEFAULT,
                           .n_seq_max = 0,
                           .kv_block_size = 0,
                           .n_kv_blocks = 0};
}

static const char *const ctx_act_names[] = {
    [TM_ACT_Q8] = "q8", [TM_ACT_Q16] = "q16", [TM_ACT_F32] = "f32"};
#define CTX_N_ACT ((int)(sizeof ctx_act_names / sizeof ctx_act_names[0]))

/* Names match in any case, as tm_dtype_from_name's ("F32" as "f32"). */
tm_status tm_act_type_from_name(const char *s, tm_act_type *out) {
    for (int i = 0; s != NULL && i < CTX_N_ACT; i++)
        if (strcasecmp(ctx_act_names[i], s) == 0) {
            *out = (tm_act_type)i;
            return TM_OK;
        }
    return tm_fail(TM_ERR_INVALID, "activation type must be q8, q16 or f32, not '%.60s'",
                   s != NULL ? s : "(null)");
}

const char *tm_act_type_name(tm_act_type t) {
    return (int)t >= 0 && (int)t < CTX_N_ACT ? ctx_act_names[t] : "?";
}

void tm_ctx_free(tm_ctx *c) {
    if (c == NULL)
        return;
    tm__cpu_pool_free(c->pool);
    tm_graph_free(c->graph);
    tm_free(c->kv);
    tm_free(c->kc);
    tm_free(c->vc);
    tm_free(c->scratch);
    tm_free(c->ids);
    tm_free(c->pos);
    tm_free(c->slots);
    tm_free(c->tables);
    tm_free(c->out_ids);
    tm_free(c->seq_cnt);
    tm_free(c->seq0);
    tm_kvcache_free(c->blocks);
    tm_free(c);
}

/* n_out rows of logits: the tokens out_ids[0 .. n_out) (NULL with n_out 1: the
 * last token); logits_all overrides. */
static void ctx_build(tm_ctx *c, int32_t n_tokens, int32_t n_out, int32_t *out_ids,
                      tm_tensor **logits) {
    tm_graph_reset(c->graph);
    tm_build_params bp = {.n_tokens = n_tokens,
                          .ids = c->ids,
                          .pos = c->pos,
                          .kc = c->kc,
                          .vc = c->vc,
                          .logits_all = c->p.logits_all,
                          .slots = c->slots,
                          .tables = c->tables,
                          .n_tbl = tm_kvcache_max_blocks(c->blocks),
                          .block_size = c->p.kv_block_size,
                          .n_out = n_out,
                          .out_ids = out_ids};
    tm__graph_build(c->model, c->graph, &bp, logits);
    /* The builder leaves every matmul at TM_MM_ACT8; act_type (see tm_ctx_params) picks the
     * precision of all of them. The two enums differ on purpose: tm_act_type is public and
     * ordered by cost, tm_mm_act is the kernels' node parameter. */
    if (c->p.act_type == TM_ACT_Q8)
        return;
    const int32_t act = c->p.act_type == TM_ACT_Q16 ? TM_MM_ACT16 : TM_MM_ACT_F32;
    for (int32_t i = 0; i < tm_graph_n_nodes(c->graph); i++) {
        tm_tensor *t = tm_graph_node(c->graph, i);
        if (t->op == TM_OP_MUL_MAT)
            t->ip[0] = act;
    }
}

tm_status tm_ctx_init(const tm_model *model, const tm_ctx_params *params, tm_ctx **out) {
    *out = NULL;
    const tm_hparams *hp = tm_model_get_hparams(model);
    tm_ctx_params     p = params ? *params : tm_ctx_params_default();
    if (p.n_ctx == 0)
        p.n_ctx = hp->n_ctx_train < 2048 ? hp->n_ctx_train : 2048;
    /* Learned position tables (gpt2, bert) have n_ctx_train rows: no position past them. */
    if (model->recipe.pos == TM_POS_LEARNED && p.n_ctx > hp->n_ctx_train)
        return tm_fail(TM_ERR_INVALID,
                       "context of %d positions: this model (%s) has learned positions for %d; "
                       "use a context of at most %d",
                       p.n_ctx, model->arch, hp->n_ctx_train, hp->n_ctx_train);
    if (p.n_batch == 0)
        p.n_batch = p.n_ctx < 128 ? p.n_ctx : 128;
    if (p.n_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = n < 1 ? 1 : n > 64 ? 64 : (int32_t)n;
    }
    if (p.n_seq_max == 0)
        p.n_seq_max = 1;
    if (p.kv_block_size == 0)
        p.kv_block_size = 16;
    if (p.n_ctx < 1 || p.n_ctx > (1 << 24) || p.n_batch < 1 || p.n_batch > (1 << 20))
        return tm_fail(TM_ERR_INVALID, "ctx: n_ctx %d / n_batch %d out of range", p.n_ctx,
                       p.n_batch);
    if (p.n_seq_max < 1 || p.n_seq_max > 4096 || p.kv_block_size < 1 || p.kv_block_size > 1024 ||
        (p.kv_block_size & (p.kv_block_size - 1)) != 0 || p.n_kv_blocks < 0 || p.n_out_max < 0)
        return tm_fail(TM_ERR_INVALID,
                       "ctx: n_seq_max %d (1..4096), kv_block_size %d (a power of two <= 1024), "
                       "n_kv_blocks %d, n_out_max %d",
                       p.n_seq_max, p.kv_block_size, p.n_kv_blocks, p.n_out_max);
    /* One sequence's batch cannot pass its context; several sequences' can. */
    if (p.n_seq_max == 1 && p.n_batch > p.n_ctx)
        return tm_fail(TM_ERR_INVALID, "ctx: n_batch %d > n_ctx %d", p.n_batch, p.n_ctx);
    const int32_t max_blk = (p.n_ctx + p.kv_block_size - 1) / p.kv_block_size;
    if (p.n_kv_blocks == 0) {
        if ((int64_t)max_blk * p.n_seq_max > (1 << 24))
            return tm_fail(TM_ERR_INVALID, "ctx: KV pool of %d x %d blocks is too large",
                           p.n_seq_max, max_blk);
        p.n_kv_blocks = max_blk * p.n_seq_max;
    }
    if (p.kv_dtype != TM_DTYPE_F32 && p.kv_dtype != TM_DTYPE_F16)
        return tm_fail(TM_ERR_INVALID, "ctx: KV cache dtype must be f32 or f16, not %s",
                       tm_dtype_name(p.kv_dtype));
    if ((int)p.act_type < 0 || (int)p.act_type >= CTX_N_ACT)
        return tm_fail(TM_ERR_INVALID,
                       "ctx: act_type %d is not TM_ACT_Q8 (0), TM_ACT_Q16 (1) or TM_ACT_F32 (2)",
                       (int)p.act_type);

    tm_ctx *c = tm_calloc(1, sizeof *c);
    if (c == NULL)
        return tm_fail(TM_ERR_NOMEM, "ctx");
    c->model = model;
    c->p = p;
    const int32_t n_out = p.logits_all ? p.n_batch : p.n_out_max > 0 ? p.n_out_max : p.n_seq_max;
    c->n_out_max = n_out < p.n_batch ? n_out : p.n_batch;
    tm_status         st = TM_OK;
    tm_kvcache_params kp = {.n_blocks = p.n_kv_blocks,
                            .block_size = p.kv_block_size,
                            .n_seq_max = p.n_seq_max,
                            .n_pos_max = p.n_ctx};
    if ((st = tm_kvcache_init(&kp, &c->blocks)) != TM_OK)
        goto fail;
    const int64_t row = (int64_t)hp->n_head_kv * hp->head_dim;
    const int64_t n_rows = (int64_t)p.n_kv_blocks * p.kv_block_size;
    size_t        layer_bytes, kv_bytes, n_tab;
    const size_t  esz = p.kv_dtype == TM_DTYPE_F32 ? 4 : 2;
    if (!tm_size_mul((size_t)row * esz, (size_t)n_rows, &layer_bytes) ||
        !tm_size_mul(layer_bytes, 2 * (size_t)hp->n_layer, &kv_bytes) ||
        !tm_size_mul((size_t)p.n_batch, (size_t)max_blk, &n_tab)) {
        st = tm_fail(TM_ERR_NOMEM, "ctx: KV cache size overflows");
        goto fail;
    }
    c->kv = tm_calloc(1, kv_bytes);
    c->kc = tm_calloc((size_t)hp->n_layer, sizeof *c->kc);
    c->vc = tm_calloc((size_t)hp->n_layer, sizeof *c->vc);
    c->ids = tm_calloc((size_t)p.n_batch, sizeof *c->ids);
    c->pos = tm_calloc((size_t)p.n_batch, sizeof *c->pos);
    c->slots = tm_calloc((size_t)p.n_batch, sizeof *c->slots);
    c->tables = tm_calloc(n_tab, sizeof *c->tables);
    c->out_ids = tm_calloc((size_t)c->n_out_max, sizeof *c->out_ids);
    c->seq_cnt = tm_calloc((size_t)p.n_seq_max, sizeof *c->seq_cnt);
    c->seq0 = tm_calloc((size_t)p.n_batch, sizeof *c->seq0);
    if (c->kv == NULL || c->kc == NULL || c->vc == NULL || c->ids == NULL || c->pos == NULL ||
        c->slots == NULL || c->tables == NULL || c->out_ids == NULL || c->seq_cnt == NULL ||
        c->seq0 == NULL) {
        st = tm_fail(TM_ERR_NOMEM, "ctx: KV cache of %zu bytes", kv_bytes);
        goto fail;
    }
    for (int32_t il = 0; il < hp->n_layer; il++) {
        char *base = (char *)c->kv + 2 * (size_t)il * layer_bytes;
        tm_tensor_init(&c->kc[il], p.kv_dtype, 2, (int64_t[]){row, n_rows}, base);
        tm_tensor_init(&c->vc[il], p.kv_dtype, 2, (int64_t[]){row, n_rows}, base + layer_bytes);
    }
    if ((st = tm_graph_init(tm__graph_capacity(model), &c->graph)) != TM_OK)
        goto fail;

    /* measure: every batch size that is a power of two, plus n_seq_b and n_batch, each
     * with one logits row (as the last-token view and as a gathered row) and with as
     * many rows as it may return. The planner's first fit is not monotonic in the
     * batch size, so a sweep (not only the largest shape) bounds the scratch; the
     * scheduler still splits a batch that would not fit (TM_ERR_FULL). */
    size_t  need = 0, kscratch = 0;
    int32_t n_seq_b = p.n_seq_max < p.n_batch ? p.n_seq_max : p.n_batch;
    for (int32_t i = 0; i < c->n_out_max; i++)
        c->out_ids[i] = i; /* any valid rows: only the shapes matter here */
    for (int32_t nt = 1;; nt = nt * 2 > p.n_batch ? p.n_batch : nt * 2) {
        for (int32_t pass = 0; pass < 2; pass++) {
            const int32_t t = pass == 0 ? nt : (n_seq_b < nt ? n_seq_b : nt);
            const int32_t most = t < c->n_out_max ? t : c->n_out_max;
            const int32_t outs[3][2] = {{1, 0}, {1, 1}, {most, 1}}; /* n_out, gathered */
            for (int k = 0; k < 3; k++) {
                tm_tensor *lg;
                ctx_build(c, t, outs[k][0], outs[k][1] ? c->out_ids : NULL, &lg);
                size_t sz = tm_graph_plan(c->graph);
                need = sz > need ? sz : need;
                sz = tm__cpu_graph_scratch_bytes(c->graph);
                kscratch = sz > kscratch ? sz : kscratch;
            }
        }
        if (nt == p.n_batch)
            break;
    }
    c->scratch_bytes = need;
    c->scratch = tm_malloc(need > 0 ? need : 1);
    if (c->scratch == NULL) {
        st = tm_fail(TM_ERR_NOMEM, "ctx: %zu bytes of scratch", need);
        goto fail;
    }
    if ((st = tm__cpu_pool_init(p.n_threads, kscratch, &c->pool)) != TM_OK)
        goto fail;
    *out = c;
    return TM_OK;
fail:
    tm_ctx_free(c);
    return st;
}

/* Checks a batch against the context without changing anything; fills seq_cnt. */
static tm_status ctx_check_batch(tm_ctx *c, const tm_batch *b, int32_t *n_out) {
    const tm_hparams *hp = tm_model_get_hparams(c->model);
    const int32_t     n = b->n_tokens;
    if (n < 1 || n > c->p.n_batch || b->token == NULL || b->seq_id == NULL)
        return tm_fail(TM_ERR_INVALID, "decode: %d tokens, batch holds 1..%d", n, c->p.n_batch);
    memset(c->seq_cnt, 0, (size_t)c->p.n_seq_max * sizeof *c->seq_cnt);
    *n_out = 0;
    for (int32_t i = 0; i < n; i++) {
        const int32_t s = b->seq_id[i];
        if (b->token[i] < 0 || b->token[i] >= hp->n_vocab)
            return tm_fail(TM_ERR_INVALID, "decode: token id %d outside [0, %d)", b->token[i],
                           hp->n_vocab);
        if (s < 0 || s >= c->p.n_seq_max)
            return tm_fail(TM_ERR_INVALID, "decode: sequence id %d outside [0, %d)", s,
                           c->p.n_seq_max);
        const int32_t want = tm_kvcache_seq_len(c->blocks, s) + c->seq_cnt[s];
        if (b->pos != NULL && b->pos[i] != want)
            return tm_fail(TM_ERR_INVALID,
                           "decode: token %d has position %d, sequence %d continues at %d", i,
                           b->pos[i], s, want);
        c->seq_cnt[s]++;
    }
    for (int32_t i = 0; i < n; i++) {
        bool w = c->p.logits_all;
        if (!w && b->want_logits != NULL) {
            w = b->want_logits[i];
        } else if (!w) { /* the last token of its sequence */
            w = true;
            for (int32_t j = i + 1; j < n && w; j++)
                w = b->seq_id[j] != b->seq_id[i];
        }
        if (w)
            (*n_out)++;
    }
    if (*n_out > c->n_out_max)
        return tm_fail(TM_ERR_INVALID, "decode: %d logits rows requested, the context holds %d",
                       *n_out, c->n_out_max);
    int32_t need = 0;
    for (int32_t s = 0; s < c->p.n_seq_max; s++) {
        if (c->seq_cnt[s] == 0)
            continue;
        const int32_t len = tm_kvcache_seq_len(c->blocks, s);
        if (c->seq_cnt[s] > c->p.n_ctx - len)
            return tm_fail(TM_ERR_FULL, "decode: context full (%d + %d > %d positions)", len,
                           c->seq_cnt[s], c->p.n_ctx);
        need += tm_kvcache_blocks_needed(c->blocks, s, c->seq_cnt[s]);
    }
    if (need > tm_kvcache_n_free(c->blocks))
        return tm_fail(TM_ERR_FULL, "decode: KV pool short (%d blocks needed, %d free)", need,
                       tm_kvcache_n_free(c->blocks));
    return TM_OK;
}

tm_status tm_ctx_decode_batch(tm_ctx *c, const tm_batch *b) {
    int32_t n_out = 0;
    TM_TRY(ctx_check_batch(c, b, &n_out));
    const int32_t n = b->n_tokens, bs = c->p.kv_block_size;
    const int32_t max_blk = tm_kvcache_max_blocks(c->blocks);
    /* First position of each sequence in this batch, then take the blocks (counted
     * by ctx_check_batch, so appending cannot fail). */
    for (int32_t i = 0; i < n; i++)
        c->pos[i] = tm_kvcache_seq_len(c->blocks, b->seq_id[i]);
    for (int32_t s = 0; s < c->p.n_seq_max; s++)
        if (c->seq_cnt[s] > 0)
            TM_ASSERT(tm_kvcache_seq_append(c->blocks, s, c->seq_cnt[s]) == TM_OK);
    memset(c->seq_cnt, 0, (size_t)c->p.n_seq_max * sizeof *c->seq_cnt);
    int32_t k = 0;
    for (int32_t i = 0; i < n; i++) {
        const int32_t  s = b->seq_id[i];
        const int32_t *tab = tm_kvcache_seq_table(c->blocks, s);
        const int32_t  p = c->pos[i] + c->seq_cnt[s]++;
        const int32_t  nb = (tm_kvcache_seq_len(c->blocks, s) + bs - 1) / bs;
        c->ids[i] = b->token[i];
        c->pos[i] = p;
        c->slots[i] = tab[p / bs] * bs + p % bs;
        memcpy(c->tables + (size_t)i * (size_t)max_blk, tab, (size_t)nb * sizeof *tab);
        bool w = c->p.logits_all;
        if (!w && b->want_logits != NULL) {
            w = b->want_logits[i];
        } else if (!w) {
            w = true;
            for (int32_t j = i + 1; j < n && w; j++)
                w = b->seq_id[j] != s;
        }
        if (w && !c->p.logits_all)
            c->out_ids[k++] = i;
    }
    tm_tensor *lg;
    /* only the last token: a view, no gather (the single-sequence case) */
    const bool last = !c->p.logits_all && n_out == 1 && c->out_ids[0] == n - 1;
    ctx_build(c, n, n_out, last ? NULL : c->out_ids, &lg);
    tm_graph_plan(c->graph);
    tm_status st = tm_graph_place(c->graph, c->scratch, c->scratch_bytes);
    if (st != TM_OK) { /* a measurement bug; give the positions back */
        for (int32_t i = n - 1; i >= 0; i--) {
            int32_t cs, cd;
            if (c->pos[i] < tm_kvcache_seq_len(c->blocks, b->seq_id[i]))
                (void)tm_kvcache_seq_truncate(c->blocks, b->seq_id[i], c->pos[i], &cs, &cd);
        }
        return st;
    }
    tm__cpu_graph_compute(c->pool, c->graph);
    c->logits = lg != NULL ? lg->data : NULL;
    c->n_out = lg != NULL ? (int32_t)lg->ne[1] : 0;
    return TM_OK;
}

tm_status tm_ctx_decode(tm_ctx *c, const int32_t *tokens, int32_t n) {
    if (n < 1 || n > c->p.n_batch)
        return tm_fail(TM_ERR_INVALID, "decode: %d tokens, batch holds 1..%d", n, c->p.n_batch);
    tm_batch b = {.n_tokens = n, .token = tokens, .seq_id = c->seq0, .want_logits = NULL};
    return tm_ctx_decode_batch(c, &b); /* NULL want_logits: the last token */
}

const float *tm_ctx_logits(const tm_ctx *c, int32_t i) {
    if (c->logits == NULL)
        return NULL;
    if (i < 0)
        i = c->n_out - 1;
    if (i >= c->n_out)
        return NULL;
    return c->logits + (size_t)i * (size_t)tm_model_get_hparams(c->model)->n_vocab;
}

int32_t tm_ctx_n_outputs(const tm_ctx *c) { return c->logits != NULL ? c->n_out : 0; }
int32_t tm_ctx_n_past(const tm_ctx *c) { return tm_kvcache_seq_len(c->blocks, 0); }
int32_t tm_ctx_n_ctx(const tm_ctx *c) { return c->p.n_ctx; }
int32_t tm_ctx_n_seq_max(const tm_ctx *c) { return c->p.n_seq_max; }
int32_t tm_ctx_seq_n_past(const tm_ctx *c, int32_t seq) {
    return tm_kvcache_seq_len(c->blocks, seq);
}
tm_kvcache *tm_ctx_kvcache(tm_ctx *c) { return c->blocks; }

/* Copies every layer's K and V rows of block src to block dst (copy-on-write). */
static void ctx_copy_block(tm_ctx *c, int32_t src, int32_t dst) {
    if (src < 0)
        return;
    const size_t bytes = (size_t)c->p.kv_block_size * c->kc[0].nb[1];
    for (int32_t il = 0; il < tm_model_get_hparams(c->model)->n_layer; il++) {
        tm_tensor *t[2] = {&c->kc[il], &c->vc[il]};
        for (int i = 0; i < 2; i++)
            memcpy((char *)t[i]->data + (size_t)dst * bytes,
                   (const char *)t[i]->data + (size_t)src * bytes, bytes);
    }
}

tm_status tm_ctx_seq_truncate(tm_ctx *c, int32_t seq, int32_t n) {
    int32_t cs, cd;
    TM_TRY(tm_kvcache_seq_truncate(c->blocks, seq, n, &cs, &cd));
    ctx_copy_block(c, cs, cd);
    return TM_OK;
}

tm_status tm_ctx_seq_copy_prefix(tm_ctx *c, int32_t src, int32_t dst, int32_t n) {
    int32_t cs, cd;
    TM_TRY(tm_kvcache_seq_copy_prefix(c->blocks, src, dst, n, &cs, &cd));
    ctx_copy_block(c, cs, cd);
    return TM_OK;
}

int32_t tm_ctx_seq_attach_partial(tm_ctx *c, int32_t seq, const int32_t *tokens, int32_t n,
                                  uint64_t salt) {
    int32_t       cs, cd;
    const int32_t m = tm_kvcache_seq_attach_partial(c->blocks, seq, tokens, n, salt, &cs, &cd);
    if (m > 0) {
        ctx_copy_block(c, cs, cd);
        tm_kvcache_block_release(c->blocks, cs);
    }
    return m;
}

void tm_ctx_seq_remove(tm_ctx *c, int32_t seq) { tm_kvcache_seq_remove(c->blocks, seq); }

tm_status tm_ctx_truncate(tm_ctx *c, int32_t n_past) { return tm_ctx_seq_truncate(c, 0, n_past); }

void tm_ctx_clear(tm_ctx *c) {
    for (int32_t s = 0; s < c->p.n_seq_max; s++)
        tm_kvcache_seq_remove(c->blocks, s);
    c->logits = NULL;
    c->n_out = 0;
}
