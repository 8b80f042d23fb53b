/*
 * model.c - load a model: hyperparameters and weights from a GGUF file or a
 * llama2.c checkpoint (an HF folder: model_hf.c), checked against the recipe; the
 * tensor lookup shared by every source.
 *
 * DESIGN
 * - Zero copy: every weight tensor points into the read-only mapping (the
 *   tm_gguf's, or our own for llama2.c). The model is immutable afterwards.
 * - Every tensor the recipe needs is looked up by slot (recipe.c names it for GGUF
 *   and for HF) and its shape checked against the hyperparameters; errors name
 *   the tensor, the expected and the found shape. Dtypes must have a reference
 *   dequantizer. 1-D tensors (norms, biases) are read as F32 by the elementwise
 *   kernels: F16/BF16 ones are converted into model memory (tiny), as are HF
 *   Conv1D matrices (transposed) and misaligned safetensors data. Fused tensors
 *   (qkv, gate_up) are split into zero-copy row views.
 * - Hyperparameters are validated (positive, divisible, bounded) before any
 *   size is computed from them.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <sys/stat.h>

#include "model/model_int.h"
#include "tm/tm_bytes.h"
#include "tm/tm_hf.h"
#include "tm/tm_io.h"
#include "tm/tm_safetensors.h"

tm_model_params tm_model_params_default(void) {
    return (tm_model_params){.path = NULL, .recipe_path = NULL, .recipe_json = NULL};
}

const tm_hparams *tm_model_get_hparams(const tm_model *m) { return &m->hp; }
const char       *tm_model_arch(const tm_model *m) { return m->arch; }
const tm_gguf    *tm_model_gguf(const tm_model *m) { return m->gguf; }

int32_t tm_model_n_embd_out(const tm_model *m) {
    return m->recipe.pooling == TM_POOL_NONE ? 0 : m->hp.n_embd;
}

tm_status tm_ctx_embed(tm_ctx *ctx, const tm_model *m, const int32_t *tokens, int32_t n_tokens,
                       float *out, int32_t n_out) {
    if (m->recipe.pooling == TM_POOL_NONE)
        return tm_fail(TM_ERR_INVALID, "embed: '%s' is a language model, not an embedding model",
                       m->arch);
    if (n_out != m->hp.n_embd)
        return tm_fail(TM_ERR_INVALID, "embed: output holds %d floats, the model gives %d", n_out,
                       m->hp.n_embd);
    tm_ctx_clear(ctx);
    TM_TRY(tm_ctx_decode(ctx, tokens, n_tokens));
    /* the graph's output is the pooled [n_embd, 1] vector (graph_build.c) */
    memcpy(out, tm_ctx_logits(ctx, -1), (size_t)n_out * sizeof(float));
    return TM_OK;
}

void tm_model_prefault(const tm_model *m) {
    if (m == NULL)
        return;
    for (int s = 0; s < TM_SLOT_FIRST_LAYER; s++) {
        tm_mem_prefault(m->w[s].data, m->w[s].data ? tm_tensor_nbytes(&m->w[s]) : 0);
        tm_mem_prefault(m->b[s].data, m->b[s].data ? tm_tensor_nbytes(&m->b[s]) : 0);
    }
    for (int32_t l = 0; l < m->hp.n_layer; l++)
        for (int s = TM_SLOT_FIRST_LAYER; s < TM_SLOT_COUNT; s++) {
            const tm_tensor *w = &m->layers[l].w[s], *b = &m->layers[l].b[s];
            tm_mem_prefault(w->data, w->data ? tm_tensor_nbytes(w) : 0);
            tm_mem_prefault(b->data, b->data ? tm_tensor_nbytes(b) : 0);
        }
}

void tm_model_free(tm_model *m) {
    if (m == NULL)
        return;
    tm_gguf_close(m->gguf);
    tm_st_close(m->st);
    tm_hf_config_free(m->hf);
    tm_mmap_close(&m->map);
    tm_free(m->layers);
    while (m->owned != NULL) {
        tm_owned *next = m->owned->next;
        tm_free(m->owned);
        m->owned = next;
    }
    tm_free(m->recipe_owned);
    tm_free(m);
}

/* ---- hyperparameters ------------------------------------------------------------ */

static tm_status model_get_int(const tm_gguf *g, const char *arch, const char *key, bool required,
                               int64_t def, int32_t *out) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    int64_t v = def;
    if (tm_gguf_find_key(g, name) >= 0)
        TM_TRY(tm_gguf_get_int(g, name, &v));
    else if (required)
        return tm_fail(TM_ERR_NOT_FOUND, "model: metadata key '%s' is missing", name);
    if (v < 0 || v > INT32_MAX)
        return tm_fail(TM_ERR_FORMAT, "model: %s = %" PRId64 " out of range", name, v);
    *out = (int32_t)v;
    return TM_OK;
}

static tm_status model_get_float(const tm_gguf *g, const char *arch, const char *key, double def,
                                 float *out) {
    char name[128];
    snprintf(name, sizeof name, "%s.%s", arch, key);
    double v = def;
    if (tm_gguf_find_key(g, name) >= 0)
        TM_TRY(tm_gguf_get_float(g, name, &v));
    if (!isfinite(v) || v < 0)
        return tm_fail(TM_ERR_FORMAT, "model: %s = %g out of range", name, v);
    *out = (float)v;
    return TM_OK;
}

tm_status tm__model_check_hparams(const tm_hparams *hp) {
    if (hp->n_layer < 1 || hp->n_layer > 4096 || hp->n_embd < 1 || hp->n_embd > (1 << 20) ||
        hp->n_head < 1 || hp->n_head > 4096 || hp->n_head_kv < 1 ||
        hp->n_head % hp->n_head_kv != 0 || hp->head_dim < 2 || hp->head_dim > 4096 ||
        hp->n_rot < 2 || hp->n_rot % 2 != 0 || hp->n_rot > hp->head_dim || hp->n_ff < 1 ||
        hp->n_ff > (1 << 22) || !(hp->rms_eps > 0.0f) || !(hp->rope_theta > 0.0f))
        return tm_fail(TM_ERR_FORMAT,
                       "model: bad hyperparameters (n_layer %d, n_embd %d, n_head %d, "
                       "n_head_kv %d, head_dim %d, n_rot %d, n_ff %d, eps %g, theta %g)",
                       hp->n_layer, hp->n_embd, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_rot,
                       hp->n_ff, (double)hp->rms_eps, (double)hp->rope_theta);
    return TM_OK;
}

/* ---- tensors --------------------------------------------------------------------- */

static void model_shape_str(char *buf, size_t cap, int n, const int64_t *ne) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, i ? ", %" PRId64 : "%" PRId64, ne[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

void *tm__model_alloc(tm_model *m, size_t bytes) {
    size_t total;
    if (bytes > SIZE_MAX - sizeof(tm_owned) - 64)
        return NULL;
    total = sizeof(tm_owned) + bytes;
    tm_owned *o = tm_malloc(total);
    if (o == NULL)
        return NULL;
    o->next = m->owned;
    m->owned = o;
    return o->data;
}

/* One tensor as a source holds it (GGUF or safetensors), ne in ggml order. */
typedef struct model_src_tensor {
    tm_dtype    dtype;
    int         n_dims;
    int64_t     ne[4];
    const void *data;
} model_src_tensor;

/* Finds name in the model's source. HF: when absent, retries without the first dotted
 * segment, so "transformer.h.0.ln_1" also finds a bare GPT2Model's "h.0.ln_1". */
static tm_status model_find(const tm_model *m, const char *name, model_src_tensor *out,
                            bool *found) {
    *found = false;
    memset(out, 0, sizeof *out);
    if (m->gguf != NULL) {
        const tm_gguf_tensor *gt = tm_gguf_find_tensor(m->gguf, name);
        if (gt == NULL)
            return TM_OK;
        out->dtype = gt->dtype;
        out->n_dims = (int)gt->n_dims;
        for (int i = 0; i < 4; i++)
            out->ne[i] = gt->ne[i];
        out->data = gt->data;
        *found = true;
        return TM_OK;
    }
    const tm_st_tensor *st = tm_st_find(m->st, name);
    if (st == NULL && strchr(name, '.') != NULL)
        st = tm_st_find(m->st, strchr(name, '.') + 1);
    if (st == NULL)
        return TM_OK;
    if (st->dtype == TM_DTYPE_COUNT || st->n_dims > 4)
        return tm_fail(TM_ERR_UNSUPPORTED,
                       "model: tensor '%s' has dtype %s and %d dims: not a weight", st->name,
                       tm_st_dtype_name(st->st_dtype), (int)st->n_dims);
    out->dtype = st->dtype;
    out->n_dims = (int)st->n_dims;
    for (int i = 0; i < 4; i++)
        out->ne[i] = st->ne[i];
    out->data = st->data;
    *found = true;
    return TM_OK;
}

static bool model_is_norm(tm_slot s) {
    return s == TM_SLOT_EMBD_NORM || s == TM_SLOT_OUTPUT_NORM || s == TM_SLOT_ATTN_NORM ||
           s == TM_SLOT_ATTN_Q_NORM || s == TM_SLOT_ATTN_K_NORM || s == TM_SLOT_POST_ATTN_NORM ||
           s == TM_SLOT_FFN_NORM || s == TM_SLOT_POST_FFN_NORM;
}

/* Builds the file name of slot s for layer il ("{N}" -> il) plus ".weight" or ".bias". */
static void model_name(char *buf, size_t cap, const char *pat, int32_t il, bool bias) {
    const char *n = strstr(pat, "{N}");
    if (n == NULL)
        snprintf(buf, cap, "%s.%s", pat, bias ? "bias" : "weight");
    else
        snprintf(buf, cap, "%.*s%d%s.%s", (int)(n - pat), pat, (int)il, n + 3,
                 bias ? "bias" : "weight");
}

/* A 1-D tensor the elementwise kernels read as F32: converted into model memory when
 * the source holds it as F16/BF16 or unaligned, or when the recipe wants 1 + w
 * (Gemma's HF norms). These are < 0.1% of the bytes; matrices are never copied
 * except Conv1D transposes. */
static tm_status model_f32_copy(tm_model *m, tm_tensor *t, const model_src_tensor *src, int64_t n,
                                float add, const char *name) {
    float *buf = tm__model_alloc(m, (size_t)n * sizeof(float));
    if (buf == NULL)
        return tm_fail(TM_ERR_NOMEM, "model: %s", name);
    const size_t esz = (size_t)tm_dtype_get_traits(src->dtype)->type_size;
    for (int64_t i = 0; i < n; i++) {
        const unsigned char *p = (const unsigned char *)src->data + (size_t)i * esz;
        float                v;
        if (src->dtype == TM_DTYPE_F32) {
            memcpy(&v, p, 4);
        } else {
            uint16_t h;
            memcpy(&h, p, 2);
            v = src->dtype == TM_DTYPE_F16 ? tm_f16_to_f32(h) : tm_bf16_to_f32(h);
        }
        buf[i] = v + add;
    }
    tm_tensor_init(t, TM_DTYPE_F32, 1, (int64_t[]){n}, buf);
    return TM_OK;
}

/* HF Conv1D stores [in, out] (ne = {out, in}); the matmul wants rows per output. */
static tm_status model_transpose(tm_model *m, tm_tensor *t, const model_src_tensor *src,
                                 const char *name) {
    const int64_t n_out = src->ne[0], n_in = src->ne[1];
    size_t        bytes;
    if (!tm_size_mul((size_t)n_out * sizeof(float), (size_t)n_in, &bytes))
        return tm_fail(TM_ERR_NOMEM, "model: %s too large", name);
    float *buf = tm__model_alloc(m, bytes);
    if (buf == NULL)
        return tm_fail(TM_ERR_NOMEM, "model: %s", name);
    const size_t esz = (size_t)tm_dtype_get_traits(src->dtype)->type_size;
    for (int64_t i = 0; i < n_in; i++)
        for (int64_t o = 0; o < n_out; o++) {
            const unsigned char *p =
                (const unsigned char *)src->data + ((size_t)i * (size_t)n_out + (size_t)o) * esz;
            float v;
            if (src->dtype == TM_DTYPE_F32) {
                memcpy(&v, p, 4);
            } else {
                uint16_t h;
                memcpy(&h, p, 2);
                v = src->dtype == TM_DTYPE_F16 ? tm_f16_to_f32(h) : tm_bf16_to_f32(h);
            }
            buf[(size_t)o * (size_t)n_in + (size_t)i] = v;
        }
    tm_tensor_init(t, TM_DTYPE_F32, 2, (int64_t[]){n_in, n_out}, buf);
    return TM_OK;
}

/* Looks up slot s (layer il, weight or bias) and checks its shape: n_dims 1 wants
 * [ne0], 2 wants [ne0, ne1] (ne1 < 0: any row count). Absent + !required leaves t
 * zeroed. */
static tm_status model_tensor(tm_model *m, tm_tensor *t, tm_slot s, int32_t il, bool bias,
                              bool required, int n_dims, int64_t ne0, int64_t ne1) {
    memset(t, 0, sizeof *t);
    const bool  hf = m->st != NULL;
    const char *pat = tm__recipe_name(&m->recipe, s, hf);
    if (pat == NULL) {
        if (!required)
            return TM_OK;
        return tm_fail(TM_ERR_NOT_FOUND, "model: recipe '%s' names no %s tensor for '%s'",
                       m->recipe.arch, hf ? "Hugging Face" : "GGUF", tm__slot_key(s));
    }
    char name[TM_RECIPE_MAX_NAME + 32];
    model_name(name, sizeof name, pat, il, bias);
    model_src_tensor src;
    bool             found;
    TM_TRY(model_find(m, name, &src, &found));
    if (!found) {
        if (!required)
            return TM_OK;
        return tm_fail(TM_ERR_NOT_FOUND, "model: tensor '%s' required by recipe '%s' is missing",
                       name, m->recipe.arch);
    }
    const bool conv1d = hf && m->recipe.hf_conv1d && n_dims == 2 && s >= TM_SLOT_FIRST_LAYER;
    int64_t    have[4] = {src.ne[0], src.ne[1], src.ne[2], src.ne[3]};
    if (conv1d) {
        have[0] = src.ne[1];
        have[1] = src.ne[0];
    }
    const int64_t want[2] = {ne0, ne1 < 0 ? have[1] : ne1};
    bool          ok = have[2] == 1 && have[3] == 1 && have[0] == ne0 &&
              (n_dims == 1 ? have[1] == 1 : have[1] == want[1] && have[1] >= 1);
    if (!ok) {
        char a[96], b[96];
        model_shape_str(a, sizeof a, src.n_dims, src.ne);
        model_shape_str(b, sizeof b, n_dims, want);
        return tm_fail(TM_ERR_FORMAT, "model: tensor '%s' has shape %s, recipe '%s' expects %s%s",
                       name, a, m->recipe.arch, b, conv1d ? " (Conv1D, transposed)" : "");
    }
    const tm_dtype_traits *tr = tm_dtype_get_traits(src.dtype);
    if (tr == NULL || !tr->can_dequant)
        return tm_fail(TM_ERR_UNSUPPORTED,
                       "model: tensor '%s' has dtype %s, which has no CPU kernel yet", name,
                       tm_dtype_name(src.dtype));
    const bool plain =
        src.dtype == TM_DTYPE_F32 || src.dtype == TM_DTYPE_F16 || src.dtype == TM_DTYPE_BF16;
    /* What the kernels need: plain types their element size; quantized blocks the
     * alignment of their widest scale field (f16: 2, or 4 when blocks are 4-byte
     * multiples). GGUF data is 32-byte aligned, so only safetensors can miss. */
    const uintptr_t need =
        tr->blck_size == 1 ? (uintptr_t)tr->type_size : (tr->type_size % 4 == 0 ? 4u : 2u);
    const bool aligned = ((uintptr_t)src.data % need) == 0;
    if (n_dims == 1) {
        if (!plain)
            return tm_fail(TM_ERR_UNSUPPORTED,
                           "model: 1-D tensor '%s' must be f32/f16/bf16, not %s", name,
                           tm_dtype_name(src.dtype));
        const float add =
            hf && m->recipe.hf_norm_add_one && !bias && model_is_norm(s) ? 1.0f : 0.0f;
        if (src.dtype != TM_DTYPE_F32 || !aligned || add != 0.0f)
            return model_f32_copy(m, t, &src, ne0, add, name);
        tm_tensor_init(t, src.dtype, 1, want, (void *)src.data);
        return TM_OK;
    }
    if (conv1d) {
        if (!plain)
            return tm_fail(TM_ERR_UNSUPPORTED, "model: Conv1D tensor '%s' has dtype %s", name,
                           tm_dtype_name(src.dtype));
        return model_transpose(m, t, &src, name);
    }
    if (!aligned) { /* safetensors only aligns data when the writer pads its header */
        if (!plain)
            return tm_fail(TM_ERR_FORMAT, "model: tensor '%s' is misaligned", name);
        size_t bytes;
        if (!tm_size_mul((size_t)want[0] * (size_t)tr->type_size, (size_t)want[1], &bytes))
            return tm_fail(TM_ERR_NOMEM, "model: %s too large", name);
        void *buf = tm__model_alloc(m, bytes);
        if (buf == NULL)
            return tm_fail(TM_ERR_NOMEM, "model: %s", name);
        memcpy(buf, src.data, bytes);
        tm_tensor_init(t, src.dtype, 2, want, buf);
        return TM_OK;
    }
    tm_tensor_init(t, src.dtype, 2, want, (void *)src.data);
    return TM_OK;
}

/* Rows [r0, r0 + n) of a fused 2-D weight (any dtype: whole rows), or elements
 * [r0, r0 + n) of a fused F32 bias: zero-copy views. An absent source stays absent. */
static void model_slice(tm_tensor *dst, const tm_tensor *src, int64_t r0, int64_t n) {
    memset(dst, 0, sizeof *dst);
    if (src->data == NULL)
        return;
    if (src->ne[1] > 1)
        tm_tensor_init(dst, src->dtype, 2, (int64_t[]){src->ne[0], n},
                       (char *)src->data + (size_t)r0 * src->nb[1]);
    else
        tm_tensor_init(dst, TM_DTYPE_F32, 1, (int64_t[]){n}, (float *)src->data + r0);
}

static tm_status model_layer_tensors(tm_model *m, int32_t il) {
    const tm_hparams *hp = &m->hp;
    const tm_recipe  *r = &m->recipe;
    tm_layer         *L = &m->layers[il];
    const int64_t     E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim;
    const int64_t     KV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    const bool        ln = r->norm == TM_NORM_LAYER, gated = r->mlp <= TM_MLP_GEGLU;
    const bool        qb = r->qkv_bias || r->bias;
#define W(slot, req, nd, n0, n1)                                                                   \
    TM_TRY(model_tensor(m, &L->w[TM_SLOT_##slot], TM_SLOT_##slot, il, false, req, nd, n0, n1))
#define B(slot, req, n0)                                                                           \
    TM_TRY(model_tensor(m, &L->b[TM_SLOT_##slot], TM_SLOT_##slot, il, true, req, 1, n0, 1))
    W(ATTN_NORM, true, 1, E, 1);
    B(ATTN_NORM, ln && r->bias, E);
    if (r->fused_qkv) {
        W(ATTN_QKV, true, 2, E, Q + 2 * KV);
        B(ATTN_QKV, qb, Q + 2 * KV);
        const tm_tensor wqkv = L->w[TM_SLOT_ATTN_QKV], bqkv = L->b[TM_SLOT_ATTN_QKV];
        model_slice(&L->w[TM_SLOT_ATTN_Q], &wqkv, 0, Q);
        model_slice(&L->w[TM_SLOT_ATTN_K], &wqkv, Q, KV);
        model_slice(&L->w[TM_SLOT_ATTN_V], &wqkv, Q + KV, KV);
        model_slice(&L->b[TM_SLOT_ATTN_Q], &bqkv, 0, Q);
        model_slice(&L->b[TM_SLOT_ATTN_K], &bqkv, Q, KV);
        model_slice(&L->b[TM_SLOT_ATTN_V], &bqkv, Q + KV, KV);
    } else {
        W(ATTN_Q, true, 2, E, Q);
        W(ATTN_K, true, 2, E, KV);
        W(ATTN_V, true, 2, E, KV);
        B(ATTN_Q, qb, Q);
        B(ATTN_K, qb, KV);
        B(ATTN_V, qb, KV);
    }
    W(ATTN_OUT, true, 2, Q, E);
    B(ATTN_OUT, r->bias, E);
    W(ATTN_Q_NORM, r->qk_norm, 1, hp->head_dim, 1);
    W(ATTN_K_NORM, r->qk_norm, 1, hp->head_dim, 1);
    W(POST_ATTN_NORM, r->post_norms, 1, E, 1);
    W(FFN_NORM, true, 1, E, 1);
    B(FFN_NORM, ln && r->bias, E);
    if (gated && r->fused_gate_up) {
        /* phi3: gate_up_proj rows are [gate; up] (HF chunk(2): gate first) */
        W(FFN_UP, true, 2, E, 2 * F);
        const tm_tensor wgu = L->w[TM_SLOT_FFN_UP];
        model_slice(&L->w[TM_SLOT_FFN_GATE], &wgu, 0, F);
        model_slice(&L->w[TM_SLOT_FFN_UP], &wgu, F, F);
    } else {
        if (gated)
            W(FFN_GATE, true, 2, E, F);
        W(FFN_UP, true, 2, E, F);
        B(FFN_UP, r->bias && !gated, F);
    }
    W(FFN_DOWN, true, 2, F, E);
    B(FFN_DOWN, r->bias, E);
    W(POST_FFN_NORM, r->post_norms, 1, E, 1);
#undef W
#undef B
    L->swa = hp->n_swa > 0 &&
             (r->swa == TM_SWA_ALL ||
              (r->swa == TM_SWA_PERIODIC && r->swa_period > 0 && (il + 1) % r->swa_period != 0));
    return TM_OK;
}

tm_status tm__model_load_tensors(tm_model *m) {
    tm_hparams      *hp = &m->hp;
    const tm_recipe *r = &m->recipe;
    const bool       hf = m->st != NULL;
    const bool       ln = r->norm == TM_NORM_LAYER;
    m->rope_mode = hf ? r->hf_rope_mode : r->rope_mode;

    /* n_vocab is the embedding's row count */
    char        name[TM_RECIPE_MAX_NAME + 32];
    const char *pat = tm__recipe_name(r, TM_SLOT_TOKEN_EMBD, hf);
    if (pat == NULL)
        return tm_fail(TM_ERR_NOT_FOUND, "model: recipe '%s' names no token_embd tensor", r->arch);
    model_name(name, sizeof name, pat, 0, false);
    model_src_tensor te;
    bool             found;
    TM_TRY(model_find(m, name, &te, &found));
    if (!found)
        return tm_fail(TM_ERR_NOT_FOUND, "model: tensor '%s' required by recipe '%s' is missing",
                       name, r->arch);
    if (te.ne[1] < 1 || te.ne[1] > INT32_MAX)
        return tm_fail(TM_ERR_FORMAT, "model: %s has %" PRId64 " rows", name, te.ne[1]);
    hp->n_vocab = (int32_t)te.ne[1];
    const int64_t E = hp->n_embd;
#define G(slot, is_b, req, nd, n0, n1)                                                             \
    TM_TRY(model_tensor(m, is_b ? &m->b[TM_SLOT_##slot] : &m->w[TM_SLOT_##slot], TM_SLOT_##slot,   \
                        0, is_b, req, nd, n0, n1))
    G(TOKEN_EMBD, false, true, 2, E, hp->n_vocab);
    if (r->pos == TM_POS_LEARNED)
        G(POS_EMBD, false, true, 2, E, -1);
    if (r->token_types) {
        G(TOKEN_TYPES, false, true, 2, E, -1);
        /* token type 0 for every token: its row, as an F32 bias */
        const tm_tensor *tt = &m->w[TM_SLOT_TOKEN_TYPES];
        model_src_tensor row = {
            .dtype = tt->dtype, .n_dims = 1, .ne = {E, 1, 1, 1}, .data = tt->data};
        if (tt->dtype != TM_DTYPE_F32 && tt->dtype != TM_DTYPE_F16 && tt->dtype != TM_DTYPE_BF16)
            return tm_fail(TM_ERR_UNSUPPORTED, "model: token types must be f32/f16/bf16");
        TM_TRY(model_f32_copy(m, &m->tt0, &row, E, 0.0f, "token types"));
    }
    if (r->embd_norm) {
        G(EMBD_NORM, false, true, 1, E, 1);
        G(EMBD_NORM, true, ln && r->bias, 1, E, 1);
    }
    if (r->pooling == TM_POOL_NONE) {
        G(OUTPUT_NORM, false, true, 1, E, 1);
        G(OUTPUT_NORM, true, ln && r->bias, 1, E, 1);
        G(OUTPUT, false, !r->tied_output, 2, E, hp->n_vocab);
    }
    if (r->pos == TM_POS_ROPE && m->w[TM_SLOT_ROPE_FREQS].data == NULL)
        G(ROPE_FREQS, false, false, 1, hp->n_rot / 2, 1);
#undef G
    m->layers = tm_calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (m->layers == NULL)
        return tm_fail(TM_ERR_NOMEM, "model: layers");
    for (int32_t il = 0; il < hp->n_layer; il++)
        TM_TRY(model_layer_tensors(m, il));
    return TM_OK;
}

/* GGUF: an explicit per-layer sliding-window array wins over the recipe's layout. */
static tm_status model_gguf_swa_pattern(tm_model *m) {
    char key[96];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", m->arch);
    int64_t k = tm_gguf_find_key(m->gguf, key);
    if (k < 0 || tm_gguf_kv_type(m->gguf, k) != TM_GGUF_TYPE_ARRAY)
        return TM_OK;
    const tm_hparams *hp = &m->hp;
    if (tm_gguf_kv_arr_n(m->gguf, k) != (uint64_t)hp->n_layer ||
        tm_gguf_kv_arr_type(m->gguf, k) == TM_GGUF_TYPE_STRING ||
        tm_gguf_kv_arr_type(m->gguf, k) == TM_GGUF_TYPE_ARRAY)
        return tm_fail(TM_ERR_FORMAT, "model: %s must hold %d numbers", key, hp->n_layer);
    tm_gguf_type   et = tm_gguf_kv_arr_type(m->gguf, k);
    const uint8_t *d = tm_gguf_kv_arr_data(m->gguf, k);
    for (int32_t il = 0; il < hp->n_layer; il++) {
        bool v;
        if (et == TM_GGUF_TYPE_BOOL || et == TM_GGUF_TYPE_UINT8 || et == TM_GGUF_TYPE_INT8)
            v = d[il] != 0;
        else if (et == TM_GGUF_TYPE_INT32 || et == TM_GGUF_TYPE_UINT32)
            v = tm_load_u32_le(d + 4 * (size_t)il) != 0;
        else
            return tm_fail(TM_ERR_FORMAT, "model: %s has element type %s", key,
                           tm_gguf_type_name(et));
        m->layers[il].swa = v && hp->n_swa > 0;
    }
    return TM_OK;
}

/* GGUF RoPE scaling as llama.cpp reads it: <arch>.rope.scaling.factor (or the older
 * rope.scale_linear) divides every position unless the type names another scheme. Linear
 * scaling becomes the rope_freqs divisors, as config.json's does (model_hf.c): global layers
 * only, as llama.cpp keeps sliding layers unscaled (Gemma 3 4B and up). What we do not
 * implement is refused rather than run unscaled: YaRN, Phi-3's LongRoPE (rope_factors_long /
 * rope_factors_short tensors and an attention factor). */
static tm_status model_gguf_rope_scaling(tm_model *m) {
    const tm_gguf *g = m->gguf;
    const char    *a = m->arch;
    char           key[96];
    if (m->recipe.pos != TM_POS_ROPE)
        return TM_OK;
    static const char *const longrope[] = {"rope_factors_long.weight", "rope_factors_short.weight"};
    for (size_t i = 0; i < 2; i++)
        if (tm_gguf_find_tensor(g, longrope[i]) != NULL)
            return tm_fail(TM_ERR_UNSUPPORTED,
                           "model: tensor '%s': LongRoPE (Phi-3 long context) is not supported",
                           longrope[i]);
    snprintf(key, sizeof key, "%s.rope.scaling.type", a);
    if (tm_gguf_find_key(g, key) >= 0) {
        tm_strview t;
        TM_TRY(tm_gguf_get_str(g, key, &t));
        const bool none = t.len == 4 && memcmp(t.ptr, "none", 4) == 0;
        if (!none && !(t.len == 6 && memcmp(t.ptr, "linear", 6) == 0))
            return tm_fail(TM_ERR_UNSUPPORTED, "model: %s = '%.*s' is not supported (none, linear)",
                           key, (int)(t.len > 32 ? 32 : t.len), t.ptr);
    }
    float attn = 1.0f, factor = 0.0f;
    TM_TRY(model_get_float(g, a, "rope.scaling.attn_factor", 1.0, &attn));
    if (attn != 1.0f)
        return tm_fail(TM_ERR_UNSUPPORTED,
                       "model: %s.rope.scaling.attn_factor = %g is not supported", a, (double)attn);
    snprintf(key, sizeof key, "%s.rope.scaling.factor", a);
    const char *fk = tm_gguf_find_key(g, key) >= 0 ? "rope.scaling.factor" : "rope.scale_linear";
    TM_TRY(model_get_float(g, a, fk, 0.0, &factor));
    if (factor == 0.0f || factor == 1.0f) /* llama.cpp: 0 means unscaled */
        return TM_OK;
    if (!(factor > 1.0f && factor < 1e6f))
        return tm_fail(TM_ERR_FORMAT, "model: %s.%s = %g out of range", a, fk, (double)factor);
    char        name[TM_RECIPE_MAX_NAME + 32];
    const char *pat = tm__recipe_name(&m->recipe, TM_SLOT_ROPE_FREQS, false);
    if (pat != NULL) {
        model_name(name, sizeof name, pat, 0, false);
        if (tm_gguf_find_tensor(g, name) != NULL)
            return tm_fail(TM_ERR_UNSUPPORTED, "model: both tensor '%s' and %s.%s scale RoPE", name,
                           a, fk);
    }
    const int32_t n = m->hp.n_rot / 2;
    float        *ff = tm__model_alloc(m, (size_t)n * sizeof(float));
    if (ff == NULL)
        return tm_fail(TM_ERR_NOMEM, "model: rope factors");
    for (int32_t i = 0; i < n; i++)
        ff[i] = factor;
    tm_tensor_init(&m->w[TM_SLOT_ROPE_FREQS], TM_DTYPE_F32, 1, (int64_t[]){n}, ff);
    return TM_OK;
}

/* llama.cpp's <arch>.pooling_type (taken from sentence-transformers' modules.json): the
 * graph pools by mean only, so another pooling would give wrong vectors without a word. */
static tm_status model_gguf_pooling(const tm_model *m) {
    char key[96];
    snprintf(key, sizeof key, "%s.pooling_type", m->arch);
    if (m->recipe.pooling == TM_POOL_NONE || tm_gguf_find_key(m->gguf, key) < 0)
        return TM_OK;
    int64_t v;
    TM_TRY(tm_gguf_get_int(m->gguf, key, &v));
    static const char *const kinds[] = {"none", "mean", "cls", "last", "rank"}; /* llama.h */
    if (v != 1)
        return tm_fail(TM_ERR_UNSUPPORTED,
                       "model: %s = %" PRId64 " (%s): only mean pooling (1) is supported", key, v,
                       v >= 0 && v < 5 ? kinds[v] : "unknown");
    return TM_OK;
}

static tm_status model_load_gguf(tm_model *m, const char *path, const tm_recipe *user) {
    TM_TRY(tm_gguf_open(path, &m->gguf));
    tm_strview arch;
    TM_TRY(tm_gguf_get_str(m->gguf, "general.architecture", &arch));
    const tm_recipe *r = user != NULL ? user : tm__recipe_find(arch.ptr, arch.len);
    if (r == NULL)
        return tm_fail(TM_ERR_UNSUPPORTED,
                       "model: %s: unknown architecture '%.*s' (known: %s; or pass a JSON "
                       "recipe)",
                       path, (int)(arch.len > 64 ? 64 : arch.len), arch.ptr, tm__recipe_list());
    m->recipe = *r;
    /* metadata keys carry the file's architecture prefix, whichever recipe reads them */
    snprintf(m->arch, sizeof m->arch, "%.*s", (int)(arch.len > 31 ? 31 : arch.len), arch.ptr);

    tm_hparams *hp = &m->hp;
    const char *a = m->arch;
    tm_gguf    *g = m->gguf;
    TM_TRY(model_get_int(g, a, "block_count", true, 0, &hp->n_layer));
    TM_TRY(model_get_int(g, a, "embedding_length", true, 0, &hp->n_embd));
    TM_TRY(model_get_int(g, a, "feed_forward_length", true, 0, &hp->n_ff));
    TM_TRY(model_get_int(g, a, "attention.head_count", true, 0, &hp->n_head));
    TM_TRY(model_get_int(g, a, "attention.head_count_kv", false, hp->n_head, &hp->n_head_kv));
    TM_TRY(model_get_int(g, a, "context_length", false, 2048, &hp->n_ctx_train));
    int32_t hd_def = hp->n_head > 0 ? hp->n_embd / hp->n_head : 0;
    TM_TRY(model_get_int(g, a, "attention.key_length", false, hd_def, &hp->head_dim));
    int32_t vlen = 0;
    TM_TRY(model_get_int(g, a, "attention.value_length", false, hp->head_dim, &vlen));
    if (vlen != hp->head_dim)
        return tm_fail(TM_ERR_UNSUPPORTED, "model: key_length %d != value_length %d", hp->head_dim,
                       vlen);
    TM_TRY(model_get_int(g, a, "rope.dimension_count", false, hp->head_dim, &hp->n_rot));
    TM_TRY(model_get_int(g, a, "attention.sliding_window", false, 0, &hp->n_swa));
    TM_TRY(model_get_float(g, a, "rope.freq_base", 10000.0, &hp->rope_theta));
    if (r->norm == TM_NORM_LAYER)
        TM_TRY(model_get_float(g, a, "attention.layer_norm_epsilon", 1e-5, &hp->rms_eps));
    else
        TM_TRY(model_get_float(g, a, "attention.layer_norm_rms_epsilon", 1e-5, &hp->rms_eps));
    float swa_def = r->rope_theta_swa > 0 ? r->rope_theta_swa : hp->rope_theta;
    TM_TRY(model_get_float(g, a, "rope.local_freq_base", swa_def, &hp->rope_theta_swa));
    TM_TRY(tm__model_check_hparams(hp));
    int64_t v;
    hp->bos_id = tm_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &v) == TM_OK ? (int32_t)v : -1;
    hp->eos_id = tm_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &v) == TM_OK ? (int32_t)v : -1;
    tm_clear_error();
    TM_TRY(model_gguf_pooling(m));
    TM_TRY(model_gguf_rope_scaling(m));
    TM_TRY(tm__model_load_tensors(m));
    return model_gguf_swa_pattern(m);
}

/* ---- llama2.c checkpoints ----------------------------------------------------------
 * Header: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len);
 * a negative vocab_size means the classifier is stored after the weights. Then float32
 * arrays in llama2.c's run.c order (memory_map_weights), PyTorch [out, in] layouts,
 * which are ne = {in, out} here. Its RoPE rotates adjacent pairs (NORM), theta 10000. */
static tm_status model_load_llama2c(tm_model *m, const char *path) {
    TM_TRY(tm_mmap_open(path, &m->map));
    if (m->map.size < 28)
        return tm_fail(TM_ERR_FORMAT,
                       "model: %s: not GGUF and too small for a llama2.c "
                       "checkpoint",
                       path);
    const uint8_t *b = m->map.data;
    int32_t        h[7];
    for (int i = 0; i < 7; i++)
        h[i] = (int32_t)tm_load_u32_le(b + 4 * i);
    const bool  shared = h[5] > 0;
    tm_hparams *hp = &m->hp;
    *hp = (tm_hparams){.n_embd = h[0],
                       .n_ff = h[1],
                       .n_layer = h[2],
                       .n_head = h[3],
                       .n_head_kv = h[4],
                       .n_vocab = h[5] < 0 ? -h[5] : h[5],
                       .n_ctx_train = h[6],
                       .rope_theta = 10000.0f,
                       .rms_eps = 1e-5f,
                       .bos_id = 1,
                       .eos_id = 2};
    if (h[3] > 0)
        hp->head_dim = hp->n_rot = h[0] / h[3];
    hp->rope_theta_swa = hp->rope_theta;
    if (h[5] == INT32_MIN || hp->n_vocab < 1 || hp->n_ctx_train < 1 || h[3] < 1 || h[0] % h[3] != 0)
        return tm_fail(TM_ERR_FORMAT, "model: %s: bad llama2.c header", path);
    TM_TRY(tm__model_check_hparams(hp));
    m->recipe = *tm__recipe_find("llama", 5);
    m->rope_mode = TM_ROPE_NORM;
    snprintf(m->arch, sizeof m->arch, "llama");

    const int64_t E = hp->n_embd, F = hp->n_ff, L = hp->n_layer, V = hp->n_vocab;
    const int64_t KV = (int64_t)hp->n_head_kv * hp->head_dim, hs = hp->head_dim;
    /* float counts, in file order; all factors are bounded above so int64 cannot overflow */
    const int64_t counts[] = {V * E,
                              L * E,
                              L * E * E,
                              L * E * KV,
                              L * E * KV,
                              L * E * E,
                              L * E,
                              L * F * E,
                              L * E * F,
                              L * F * E,
                              E,
                              hp->n_ctx_train * hs / 2,
                              hp->n_ctx_train * hs / 2,
                              shared ? 0 : V * E};
    uint64_t      total = 28;
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++)
        total += (uint64_t)counts[i] * 4u;
    if (total > m->map.size)
        return tm_fail(TM_ERR_FORMAT,
                       "model: %s: llama2.c checkpoint needs %" PRIu64 " bytes, file has %zu", path,
                       total, m->map.size);
    const float *p = (const float *)(b + 28); /* mapping is page aligned: 4-byte aligned */
    const float *base[14];
    for (size_t i = 0; i < 14; i++) {
        base[i] = p;
        p += counts[i];
    }
    m->layers = tm_calloc((size_t)L, sizeof *m->layers);
    if (m->layers == NULL)
        return tm_fail(TM_ERR_NOMEM, "model: layers");
#define W2(t, ptr, a, bb) tm_tensor_init(&(t), TM_DTYPE_F32, 2, (int64_t[]){a, bb}, (void *)(ptr))
#define W1(t, ptr, a) tm_tensor_init(&(t), TM_DTYPE_F32, 1, (int64_t[]){a}, (void *)(ptr))
    W2(m->w[TM_SLOT_TOKEN_EMBD], base[0], E, V);
    W1(m->w[TM_SLOT_OUTPUT_NORM], base[10], E);
    if (!shared)
        W2(m->w[TM_SLOT_OUTPUT], base[13], E, V);
    for (int64_t il = 0; il < L; il++) {
        tm_tensor *w = m->layers[il].w;
        W1(w[TM_SLOT_ATTN_NORM], base[1] + il * E, E);
        W2(w[TM_SLOT_ATTN_Q], base[2] + il * E * E, E, E);
        W2(w[TM_SLOT_ATTN_K], base[3] + il * E * KV, E, KV);
        W2(w[TM_SLOT_ATTN_V], base[4] + il * E * KV, E, KV);
        W2(w[TM_SLOT_ATTN_OUT], base[5] + il * E * E, E, E);
        W1(w[TM_SLOT_FFN_NORM], base[6] + il * E, E);
        W2(w[TM_SLOT_FFN_GATE], base[7] + il * F * E, E, F);
        W2(w[TM_SLOT_FFN_DOWN], base[8] + il * E * F, F, E);
        W2(w[TM_SLOT_FFN_UP], base[9] + il * F * E, E, F);
    }
#undef W1
#undef W2
    return TM_OK;
}

static bool model_is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static tm_status model_read_recipe(const tm_model_params *p, tm_model *m) {
    if (p->recipe_json != NULL)
        return tm__recipe_parse(p->recipe_json, p->recipe_json_len, &m->recipe_owned);
    if (p->recipe_path == NULL)
        return TM_OK;
    FILE *f = fopen(p->recipe_path, "rb");
    if (f == NULL)
        return tm_fail(TM_ERR_IO, "recipe: cannot open %s", p->recipe_path);
    enum { MAX = 1 << 20 };
    char  *buf = tm_malloc(MAX);
    size_t n = buf != NULL ? fread(buf, 1, MAX, f) : 0;
    bool   big = buf != NULL && n == MAX;
    fclose(f);
    if (buf == NULL)
        return tm_fail(TM_ERR_NOMEM, "recipe");
    tm_status st = big ? tm_fail(TM_ERR_FORMAT, "recipe: %s is larger than 1 MiB", p->recipe_path)
                       : tm__recipe_parse(buf, n, &m->recipe_owned);
    tm_free(buf);
    if (st != TM_OK)
        return tm_fail(st, "%s: %s", p->recipe_path, tm_last_error());
    return TM_OK;
}

tm_status tm_model_load(const tm_model_params *params, tm_model **out) {
    *out = NULL;
    if (params == NULL || params->path == NULL)
        return tm_fail(TM_ERR_INVALID, "model: no path");
    tm_model *m = tm_calloc(1, sizeof *m);
    if (m == NULL)
        return tm_fail(TM_ERR_NOMEM, "model");
    tm_status st = model_read_recipe(params, m);
    if (st == TM_OK && model_is_dir(params->path)) {
        st = tm__model_load_hf(m, params->path, m->recipe_owned);
    } else if (st == TM_OK) {
        uint8_t magic[4] = {0};
        FILE   *f = fopen(params->path, "rb");
        if (f == NULL) {
            st = tm_fail(TM_ERR_IO, "model: cannot open %s", params->path);
        } else {
            size_t got = fread(magic, 1, 4, f);
            fclose(f);
            if (got == 4 && tm_load_u32_le(magic) == TM_GGUF_MAGIC)
                st = model_load_gguf(m, params->path, m->recipe_owned);
            else if (m->recipe_owned != NULL)
                st = tm_fail(TM_ERR_UNSUPPORTED,
                             "model: %s: a JSON recipe needs GGUF or HF-folder weights",
                             params->path);
            else
                st = model_load_llama2c(m, params->path);
        }
    }
    if (st != TM_OK) {
        tm_model_free(m);
        return st;
    }
    *out = m;
    return TM_OK;
}

tm_status tm_recipe_check(const char *json, size_t len) {
    tm_recipe *r = NULL;
    TM_TRY(tm__recipe_parse(json, len, &r));
    tm_free(r);
    return TM_OK;
}
