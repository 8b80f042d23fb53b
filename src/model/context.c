/*
 * context.c - tm_ctx: one sequence's KV cache, graph and scratch, and the decode
 * step that runs the recipe's graph on the CPU backend.
 *
 * DESIGN (measure, reserve, run)
 * - tm_ctx_init builds the worst-case graphs (n_batch tokens and 1 token, with
 *   the full cache), plans them, and reserves: the KV cache (one allocation for
 *   every layer), the graph's tensor pool, the node scratch buffer (the larger
 *   plan), the kernels' per-thread scratch and the thread pool.
 * - tm_ctx_decode validates its input (ids, counts, room), then rebuilds the
 *   graph into the reserved pool, re-plans it into the reserved scratch and runs
 *   it: no heap allocation (tests/unit/test_model.c counts).
 * - Single sequence, positions n_past .. n_past + n - 1. The paged multi-sequence
 *   KV pool belongs to the scheduler (ARCHITECTURE decision 5), later.
 */
#include <string.h>
#include <unistd.h>

#include "backend/cpu/cpu_int.h"
#include "model/model_int.h"

struct tm_ctx {
    const tm_model *model;
    tm_ctx_params   p;
    void           *kv;      /* every layer's K and V cache */
    tm_tensor      *kc, *vc; /* [n_layer] cache tensors over kv */
    tm_graph       *graph;
    void           *scratch; /* node buffers */
    size_t          scratch_bytes;
    int32_t        *ids, *pos; /* [n_batch] */
    tm_cpu_pool    *pool;
    int32_t         n_past;
    const float    *logits; /* [n_out, n_vocab], inside scratch */
    int32_t         n_out;
};

tm_ctx_params tm_ctx_params_default(void) {
    return (tm_ctx_params){
        .n_ctx = 0, .n_batch = 0, .n_threads = 0, .kv_dtype = TM_DTYPE_F32, .logits_all = false};
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
    tm_free(c);
}

static void ctx_build(tm_ctx *c, int32_t n_tokens, tm_tensor **logits) {
    tm_graph_reset(c->graph);
    tm_build_params bp = {.n_tokens = n_tokens,
                          .ids = c->ids,
                          .pos = c->pos,
                          .kc = c->kc,
                          .vc = c->vc,
                          .logits_all = c->p.logits_all};
    tm__graph_build(c->model, c->graph, &bp, logits);
}

tm_status tm_ctx_init(const tm_model *model, const tm_ctx_params *params, tm_ctx **out) {
    *out = NULL;
    const tm_hparams *hp = tm_model_get_hparams(model);
    tm_ctx_params     p = params ? *params : tm_ctx_params_default();
    if (p.n_ctx == 0)
        p.n_ctx = hp->n_ctx_train < 2048 ? hp->n_ctx_train : 2048;
    if (p.n_batch == 0)
        p.n_batch = p.n_ctx < 128 ? p.n_ctx : 128;
    if (p.n_threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        p.n_threads = n < 1 ? 1 : n > 64 ? 64 : (int32_t)n;
    }
    if (p.n_ctx < 1 || p.n_ctx > (1 << 24) || p.n_batch < 1 || p.n_batch > p.n_ctx)
        return tm_fail(TM_ERR_INVALID, "ctx: n_ctx %d / n_batch %d out of range", p.n_ctx,
                       p.n_batch);
    if (p.kv_dtype != TM_DTYPE_F32 && p.kv_dtype != TM_DTYPE_F16)
        return tm_fail(TM_ERR_INVALID, "ctx: KV cache dtype must be f32 or f16, not %s",
                       tm_dtype_name(p.kv_dtype));

    tm_ctx *c = tm_calloc(1, sizeof *c);
    if (c == NULL)
        return tm_fail(TM_ERR_NOMEM, "ctx");
    c->model = model;
    c->p = p;
    tm_status     st = TM_OK;
    const int64_t row = (int64_t)hp->n_head_kv * hp->head_dim;
    size_t        layer_bytes, kv_bytes;
    const size_t  esz = p.kv_dtype == TM_DTYPE_F32 ? 4 : 2;
    if (!tm_size_mul((size_t)row * esz, (size_t)p.n_ctx, &layer_bytes) ||
        !tm_size_mul(layer_bytes, 2 * (size_t)hp->n_layer, &kv_bytes)) {
        st = tm_fail(TM_ERR_NOMEM, "ctx: KV cache size overflows");
        goto fail;
    }
    c->kv = tm_calloc(1, kv_bytes);
    c->kc = tm_calloc((size_t)hp->n_layer, sizeof *c->kc);
    c->vc = tm_calloc((size_t)hp->n_layer, sizeof *c->vc);
    c->ids = tm_calloc((size_t)p.n_batch, sizeof *c->ids);
    c->pos = tm_calloc((size_t)p.n_batch, sizeof *c->pos);
    if (c->kv == NULL || c->kc == NULL || c->vc == NULL || c->ids == NULL || c->pos == NULL) {
        st = tm_fail(TM_ERR_NOMEM, "ctx: KV cache of %zu bytes", kv_bytes);
        goto fail;
    }
    for (int32_t il = 0; il < hp->n_layer; il++) {
        char *base = (char *)c->kv + 2 * (size_t)il * layer_bytes;
        tm_tensor_init(&c->kc[il], p.kv_dtype, 2, (int64_t[]){row, p.n_ctx}, base);
        tm_tensor_init(&c->vc[il], p.kv_dtype, 2, (int64_t[]){row, p.n_ctx}, base + layer_bytes);
    }
    if ((st = tm_graph_init(tm__graph_capacity(model), &c->graph)) != TM_OK)
        goto fail;

    /* measure: the largest batch and a single token */
    size_t  need = 0, kscratch = 0;
    int32_t sizes[2] = {p.n_batch, 1};
    for (int i = 0; i < 2; i++) {
        tm_tensor *lg;
        ctx_build(c, sizes[i], &lg);
        size_t s = tm_graph_plan(c->graph);
        need = s > need ? s : need;
        s = tm__cpu_graph_scratch_bytes(c->graph);
        kscratch = s > kscratch ? s : kscratch;
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

tm_status tm_ctx_decode(tm_ctx *c, const int32_t *tokens, int32_t n) {
    const tm_hparams *hp = tm_model_get_hparams(c->model);
    if (n < 1 || n > c->p.n_batch)
        return tm_fail(TM_ERR_INVALID, "decode: %d tokens, batch holds 1..%d", n, c->p.n_batch);
    if (n > c->p.n_ctx - c->n_past)
        return tm_fail(TM_ERR_FULL, "decode: context full (%d + %d > %d positions)", c->n_past, n,
                       c->p.n_ctx);
    for (int32_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= hp->n_vocab)
            return tm_fail(TM_ERR_INVALID, "decode: token id %d outside [0, %d)", tokens[i],
                           hp->n_vocab);
        c->ids[i] = tokens[i];
        c->pos[i] = c->n_past + i;
    }
    tm_tensor *lg;
    ctx_build(c, n, &lg);
    tm_graph_plan(c->graph);
    TM_TRY(tm_graph_place(c->graph, c->scratch, c->scratch_bytes));
    tm__cpu_graph_compute(c->pool, c->graph);
    c->n_past += n;
    c->logits = lg->data;
    c->n_out = (int32_t)lg->ne[1];
    return TM_OK;
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

int32_t tm_ctx_n_past(const tm_ctx *c) { return c->n_past; }
int32_t tm_ctx_n_ctx(const tm_ctx *c) { return c->p.n_ctx; }

tm_status tm_ctx_truncate(tm_ctx *c, int32_t n_past) {
    if (n_past < 0 || n_past > c->n_past)
        return tm_fail(TM_ERR_INVALID, "truncate: %d positions requested, the context holds %d",
                       n_past, c->n_past);
    c->n_past = n_past; /* positions >= n_past are masked until overwritten */
    return TM_OK;
}

void tm_ctx_clear(tm_ctx *c) {
    c->n_past = 0;
    c->logits = NULL;
    c->n_out = 0;
}
