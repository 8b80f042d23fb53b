/*
 * model.c - load a model: hyperparameters and weights from a GGUF file or a
 * llama2.c checkpoint, checked against the recipe.
 *
 * DESIGN
 * - Zero copy: every weight tensor points into the read-only mapping (the
 *   tm_gguf's, or our own for llama2.c). The model is immutable afterwards.
 * - Every tensor the recipe needs is looked up by its GGUF name and its shape
 *   checked against the hyperparameters; errors name the tensor, the expected
 *   and the found shape. Dtypes must have a reference dequantizer; 1-D tensors
 *   (norms, biases) must be F32 because the elementwise kernels read F32.
 * - Hyperparameters are validated (positive, divisible, bounded) before any
 *   size is computed from them.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/model_int.h"
#include "tm/tm_bytes.h"

tm_model_params tm_model_params_default(void) { return (tm_model_params){.path = NULL}; }

const tm_hparams *tm_model_get_hparams(const tm_model *m) { return &m->hp; }
const char       *tm_model_arch(const tm_model *m) { return m->arch; }
const tm_gguf    *tm_model_gguf(const tm_model *m) { return m->gguf; }

void tm_model_free(tm_model *m) {
    if (m == NULL)
        return;
    tm_gguf_close(m->gguf);
    tm_mmap_close(&m->map);
    tm_free(m->layers);
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

static tm_status model_check_hparams(const tm_hparams *hp) {
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

/* Looks up name and checks its shape; absent + !required leaves t zeroed. */
static tm_status model_tensor(tm_model *m, tm_tensor *t, const char *name, bool required,
                              int n_dims, int64_t ne0, int64_t ne1) {
    memset(t, 0, sizeof *t);
    const tm_gguf_tensor *gt = tm_gguf_find_tensor(m->gguf, name);
    if (gt == NULL) {
        if (!required)
            return TM_OK;
        return tm_fail(TM_ERR_NOT_FOUND, "model: tensor '%s' required by recipe '%s' is missing",
                       name, m->recipe.arch);
    }
    const int64_t want[2] = {ne0, ne1};
    bool          ok = gt->ne[2] == 1 && gt->ne[3] == 1 && gt->ne[0] == ne0 &&
              (n_dims == 1 ? gt->ne[1] == 1 : gt->ne[1] == ne1);
    if (!ok) {
        char a[96], b[96];
        model_shape_str(a, sizeof a, gt->n_dims, gt->ne);
        model_shape_str(b, sizeof b, n_dims, want);
        return tm_fail(TM_ERR_FORMAT, "model: tensor '%s' has shape %s, recipe '%s' expects %s",
                       name, a, m->recipe.arch, b);
    }
    const tm_dtype_traits *tr = tm_dtype_get_traits(gt->dtype);
    if (tr == NULL || !tr->can_dequant)
        return tm_fail(TM_ERR_UNSUPPORTED,
                       "model: tensor '%s' has dtype %s, which has no CPU "
                       "kernel yet",
                       name, tm_dtype_name(gt->dtype));
    if (n_dims == 1 && gt->dtype != TM_DTYPE_F32)
        return tm_fail(TM_ERR_UNSUPPORTED, "model: 1-D tensor '%s' must be f32, not %s", name,
                       tm_dtype_name(gt->dtype));
    tm_tensor_init(t, gt->dtype, n_dims, want, (void *)gt->data);
    t->name = NULL; /* gt->name is not NUL-terminated */
    return TM_OK;
}

static tm_status model_layer_tensors(tm_model *m, int32_t il) {
    const tm_hparams *hp = &m->hp;
    const tm_recipe  *r = &m->recipe;
    tm_layer         *L = &m->layers[il];
    const int64_t     E = hp->n_embd, Q = (int64_t)hp->n_head * hp->head_dim;
    const int64_t     KV = (int64_t)hp->n_head_kv * hp->head_dim, F = hp->n_ff;
    char              n[96];
#define MT(field, sfx, req, nd, a, b)                                                              \
    do {                                                                                           \
        snprintf(n, sizeof n, "blk.%d." sfx, (int)il);                                             \
        TM_TRY(model_tensor(m, &L->field, n, req, nd, a, b));                                      \
    } while (0)
    MT(attn_norm, "attn_norm.weight", true, 1, E, 1);
    MT(wq, "attn_q.weight", true, 2, E, Q);
    MT(wk, "attn_k.weight", true, 2, E, KV);
    MT(wv, "attn_v.weight", true, 2, E, KV);
    MT(wo, "attn_output.weight", true, 2, Q, E);
    MT(bq, "attn_q.bias", r->qkv_bias, 1, Q, 1);
    MT(bk, "attn_k.bias", r->qkv_bias, 1, KV, 1);
    MT(bv, "attn_v.bias", r->qkv_bias, 1, KV, 1);
    MT(q_norm, "attn_q_norm.weight", r->qk_norm, 1, hp->head_dim, 1);
    MT(k_norm, "attn_k_norm.weight", r->qk_norm, 1, hp->head_dim, 1);
    MT(post_attn_norm, "post_attention_norm.weight", r->post_norms, 1, E, 1);
    MT(ffn_norm, "ffn_norm.weight", true, 1, E, 1);
    MT(w_gate, "ffn_gate.weight", true, 2, E, F);
    MT(w_up, "ffn_up.weight", true, 2, E, F);
    MT(w_down, "ffn_down.weight", true, 2, F, E);
    MT(post_ffn_norm, "post_ffw_norm.weight", r->post_norms, 1, E, 1);
#undef MT
    /* Layer pattern: an explicit per-layer array wins over the recipe's period. */
    L->swa = hp->n_swa > 0 && r->swa_period > 0 && (il + 1) % r->swa_period != 0;
    char key[96];
    snprintf(key, sizeof key, "%s.attention.sliding_window_pattern", m->arch);
    int64_t k = tm_gguf_find_key(m->gguf, key);
    if (k >= 0 && tm_gguf_kv_type(m->gguf, k) == TM_GGUF_TYPE_ARRAY) {
        if (tm_gguf_kv_arr_n(m->gguf, k) != (uint64_t)hp->n_layer ||
            tm_gguf_kv_arr_type(m->gguf, k) == TM_GGUF_TYPE_STRING ||
            tm_gguf_kv_arr_type(m->gguf, k) == TM_GGUF_TYPE_ARRAY)
            return tm_fail(TM_ERR_FORMAT, "model: %s must hold %d numbers", key, hp->n_layer);
        tm_gguf_type   et = tm_gguf_kv_arr_type(m->gguf, k);
        const uint8_t *d = tm_gguf_kv_arr_data(m->gguf, k);
        bool           v;
        if (et == TM_GGUF_TYPE_BOOL || et == TM_GGUF_TYPE_UINT8 || et == TM_GGUF_TYPE_INT8)
            v = d[il] != 0;
        else if (et == TM_GGUF_TYPE_INT32 || et == TM_GGUF_TYPE_UINT32)
            v = tm_load_u32_le(d + 4 * (size_t)il) != 0;
        else
            return tm_fail(TM_ERR_FORMAT, "model: %s has element type %s", key,
                           tm_gguf_type_name(et));
        L->swa = v && hp->n_swa > 0;
    }
    return TM_OK;
}

static tm_status model_load_gguf(tm_model *m, const char *path) {
    TM_TRY(tm_gguf_open(path, &m->gguf));
    tm_strview arch;
    TM_TRY(tm_gguf_get_str(m->gguf, "general.architecture", &arch));
    const tm_recipe *r = tm__recipe_find(arch.ptr, arch.len);
    if (r == NULL)
        return tm_fail(TM_ERR_UNSUPPORTED, "model: %s: unknown architecture '%.*s' (known: %s)",
                       path, (int)(arch.len > 64 ? 64 : arch.len), arch.ptr, tm__recipe_list());
    m->recipe = *r;
    snprintf(m->arch, sizeof m->arch, "%s", r->arch);

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
    TM_TRY(model_get_float(g, a, "attention.layer_norm_rms_epsilon", 1e-5, &hp->rms_eps));
    float swa_def = r->rope_theta_swa > 0 ? r->rope_theta_swa : hp->rope_theta;
    TM_TRY(model_get_float(g, a, "rope.local_freq_base", swa_def, &hp->rope_theta_swa));
    TM_TRY(model_check_hparams(hp));
    int64_t v;
    hp->bos_id = tm_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &v) == TM_OK ? (int32_t)v : -1;
    hp->eos_id = tm_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &v) == TM_OK ? (int32_t)v : -1;
    tm_clear_error();

    const tm_gguf_tensor *te = tm_gguf_find_tensor(g, "token_embd.weight");
    if (te == NULL)
        return tm_fail(TM_ERR_NOT_FOUND, "model: tensor 'token_embd.weight' is missing");
    if (te->ne[1] < 1 || te->ne[1] > INT32_MAX)
        return tm_fail(TM_ERR_FORMAT, "model: token_embd.weight has %" PRId64 " rows", te->ne[1]);
    hp->n_vocab = (int32_t)te->ne[1];
    const int64_t E = hp->n_embd;
    TM_TRY(model_tensor(m, &m->tok_embd, "token_embd.weight", true, 2, E, hp->n_vocab));
    TM_TRY(model_tensor(m, &m->output_norm, "output_norm.weight", true, 1, E, 1));
    TM_TRY(model_tensor(m, &m->output, "output.weight", !r->tied_output, 2, E, hp->n_vocab));
    TM_TRY(model_tensor(m, &m->rope_freqs, "rope_freqs.weight", false, 1, hp->n_rot / 2, 1));
    m->layers = tm_calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (m->layers == NULL)
        return tm_fail(TM_ERR_NOMEM, "model: layers");
    for (int32_t il = 0; il < hp->n_layer; il++)
        TM_TRY(model_layer_tensors(m, il));
    return TM_OK;
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
    TM_TRY(model_check_hparams(hp));
    m->recipe = *tm__recipe_find("llama", 5);
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
    W2(m->tok_embd, base[0], E, V);
    W1(m->output_norm, base[10], E);
    if (!shared)
        W2(m->output, base[13], E, V);
    for (int64_t il = 0; il < L; il++) {
        tm_layer *ly = &m->layers[il];
        W1(ly->attn_norm, base[1] + il * E, E);
        W2(ly->wq, base[2] + il * E * E, E, E);
        W2(ly->wk, base[3] + il * E * KV, E, KV);
        W2(ly->wv, base[4] + il * E * KV, E, KV);
        W2(ly->wo, base[5] + il * E * E, E, E);
        W1(ly->ffn_norm, base[6] + il * E, E);
        W2(ly->w_gate, base[7] + il * F * E, E, F);
        W2(ly->w_down, base[8] + il * E * F, F, E);
        W2(ly->w_up, base[9] + il * F * E, E, F);
    }
#undef W1
#undef W2
    return TM_OK;
}

tm_status tm_model_load(const tm_model_params *params, tm_model **out) {
    *out = NULL;
    if (params == NULL || params->path == NULL)
        return tm_fail(TM_ERR_INVALID, "model: no path");
    tm_model *m = tm_calloc(1, sizeof *m);
    if (m == NULL)
        return tm_fail(TM_ERR_NOMEM, "model");
    uint8_t magic[4] = {0};
    FILE   *f = fopen(params->path, "rb");
    if (f == NULL) {
        tm_free(m);
        return tm_fail(TM_ERR_IO, "model: cannot open %s", params->path);
    }
    size_t got = fread(magic, 1, 4, f);
    fclose(f);
    tm_status st = (got == 4 && tm_load_u32_le(magic) == TM_GGUF_MAGIC)
                       ? model_load_gguf(m, params->path)
                       : model_load_llama2c(m, params->path);
    if (st != TM_OK) {
        tm_model_free(m);
        return st;
    }
    *out = m;
    return TM_OK;
}
