/*
 * model_hf.c - a model from a Hugging Face folder: config.json picks the recipe
 * (model_type) and gives the hyperparameters; the safetensors weights (one file
 * or shards, F32/F16/BF16) are mapped read-only and looked up by the recipe's
 * HF tensor names (model.c does the lookup and the shape checks).
 *
 * DESIGN
 * - Zero copy as for GGUF: matrices point into the safetensors mappings. HF q/k
 *   rows are in rotate_half order (not permuted as llama.cpp's converter does for
 *   llama), so HF weights run with the recipe's hf_rope_mode (neox) instead.
 * - What HF expresses in config.json rather than in tensors is derived here:
 *   Llama-3 / linear RoPE scaling become the rope_freqs divisors (as llama.cpp's
 *   converter stores them), Gemma 3's layer_types the sliding-window layers.
 * - Every value read from config.json is validated (tm__model_check_hparams);
 *   unsupported settings (yarn, dynamic RoPE scaling) are refused by name.
 */
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/model_int.h"
#include "tm/tm_hf.h"
#include "tm/tm_safetensors.h"

/* First present integer among keys (config.json spellings differ by family: GPT-2
 * says n_embd, n_layer, n_head, n_positions, n_inner). */
static tm_status hf_int(const tm_hf_config *c, int64_t typed, const char *k1, const char *k2,
                        int64_t def, int32_t *out, const char *what) {
    int64_t v = typed;
    if (v < 0 && k1 != NULL && tm_hf_config_get_int(c, TM_HF_FILE_CONFIG, k1, &v) != TM_OK)
        v = -1;
    if (v < 0 && k2 != NULL && tm_hf_config_get_int(c, TM_HF_FILE_CONFIG, k2, &v) != TM_OK)
        v = -1;
    tm_clear_error();
    if (v < 0)
        v = def;
    if (v < 0)
        return tm_fail(TM_ERR_NOT_FOUND, "model: config.json has no %s", what);
    if (v > INT32_MAX)
        return tm_fail(TM_ERR_FORMAT, "model: config.json %s = %" PRId64 " out of range", what, v);
    *out = (int32_t)v;
    return TM_OK;
}

static double hf_float(const tm_hf_config *c, const char *key, double def) {
    double v;
    if (tm_hf_config_get_float(c, TM_HF_FILE_CONFIG, key, &v) != TM_OK)
        v = def;
    tm_clear_error();
    return v;
}

/* rope_scaling / rope_parameters -> frequency divisors per rotated pair (llama.cpp's
 * rope_freqs.weight): Llama 3 (transformers _compute_llama3_parameters) and linear. */
static tm_status hf_rope_freqs(tm_model *m, const tm_hf_model_info *mi) {
    const tm_hf_rope_scaling *rs = &mi->rope_scaling;
    if (rs->rope_type == NULL || strcmp(rs->rope_type, "default") == 0)
        return TM_OK;
    const tm_hparams *hp = &m->hp;
    const int32_t     n = hp->n_rot / 2;
    const bool        llama3 = strcmp(rs->rope_type, "llama3") == 0;
    if (!llama3 && strcmp(rs->rope_type, "linear") != 0)
        return tm_fail(TM_ERR_UNSUPPORTED, "model: config.json rope scaling '%s' is not supported",
                       rs->rope_type);
    const double factor = rs->factor;
    if (!(factor >= 1.0 && factor < 1e6))
        return tm_fail(TM_ERR_FORMAT, "model: config.json rope scaling factor %g", factor);
    double lo = rs->low_freq_factor, hi = rs->high_freq_factor;
    double old = (double)rs->original_max_position_embeddings;
    if (llama3 && !(lo > 0 && hi > lo && old > 0))
        return tm_fail(TM_ERR_FORMAT, "model: config.json llama3 rope scaling needs "
                                      "low_freq_factor < high_freq_factor and "
                                      "original_max_position_embeddings");
    float *ff = tm__model_alloc(m, (size_t)n * sizeof(float));
    if (ff == NULL)
        return tm_fail(TM_ERR_NOMEM, "model: rope factors");
    for (int32_t i = 0; i < n; i++) {
        if (!llama3) {
            ff[i] = (float)factor;
            continue;
        }
        const double freq = pow((double)hp->rope_theta, -2.0 * i / hp->n_rot);
        const double wl = 2.0 * M_PI / freq;
        if (wl < old / hi)
            ff[i] = 1.0f;
        else if (wl > old / lo)
            ff[i] = (float)factor;
        else {
            const double smooth = (old / wl - lo) / (hi - lo);
            ff[i] = (float)(1.0 / ((1.0 - smooth) / factor + smooth));
        }
    }
    tm_tensor_init(&m->w[TM_SLOT_ROPE_FREQS], TM_DTYPE_F32, 1, (int64_t[]){n}, ff);
    return TM_OK;
}

/* Gemma 3 style "layer_types": ["sliding_attention", "full_attention", ...]. */
static tm_status hf_layer_types(tm_model *m) {
    const json_t *doc = tm_hf_config_json(m->hf, TM_HF_FILE_CONFIG);
    const json_t *lt = json_object_get(doc, "layer_types");
    if (lt == NULL || json_is_null(lt))
        return TM_OK;
    if (!json_is_array(lt) || json_array_size(lt) != (size_t)m->hp.n_layer)
        return tm_fail(TM_ERR_FORMAT, "model: config.json layer_types must list %d strings",
                       m->hp.n_layer);
    for (int32_t il = 0; il < m->hp.n_layer; il++) {
        const char *s = json_string_value(json_array_get(lt, (size_t)il));
        if (s == NULL)
            return tm_fail(TM_ERR_FORMAT, "model: config.json layer_types[%d] is not a string", il);
        m->layers[il].swa = strcmp(s, "sliding_attention") == 0 && m->hp.n_swa > 0;
    }
    return TM_OK;
}

tm_status tm__model_load_hf(tm_model *m, const char *dir, const tm_recipe *user) {
    tm_hf_params p = tm_hf_params_default();
    p.dir = dir;
    TM_TRY(tm_hf_config_load(&p, &m->hf));
    const tm_hf_model_info *mi = tm_hf_config_model(m->hf);
    const tm_recipe        *r = user;
    if (r == NULL) {
        if (mi->model_type == NULL)
            return tm_fail(TM_ERR_FORMAT, "model: %s/config.json has no model_type", dir);
        r = tm__recipe_find_hf(mi->model_type);
        if (r == NULL)
            return tm_fail(TM_ERR_UNSUPPORTED,
                           "model: %s: unknown model_type '%.64s' (known: %s; or pass a JSON "
                           "recipe)",
                           dir, mi->model_type, tm__recipe_list());
    }
    m->recipe = *r;
    snprintf(m->arch, sizeof m->arch, "%s", r->arch);
    TM_TRY(tm_st_open(dir, &m->st));

    tm_hparams *hp = &m->hp;
    TM_TRY(hf_int(m->hf, mi->hidden_size, "n_embd", NULL, -1, &hp->n_embd, "hidden_size"));
    TM_TRY(hf_int(m->hf, mi->num_hidden_layers, "n_layer", NULL, -1, &hp->n_layer,
                  "num_hidden_layers"));
    TM_TRY(hf_int(m->hf, mi->num_attention_heads, "n_head", NULL, -1, &hp->n_head,
                  "num_attention_heads"));
    int64_t kv = mi->num_key_value_heads >= 0 ? mi->num_key_value_heads : hp->n_head;
    TM_TRY(hf_int(m->hf, kv, NULL, NULL, -1, &hp->n_head_kv, "num_key_value_heads"));
    TM_TRY(hf_int(m->hf, mi->intermediate_size, "n_inner", NULL, 4 * (int64_t)hp->n_embd, &hp->n_ff,
                  "intermediate_size"));
    int64_t hd = mi->head_dim >= 0 ? mi->head_dim : (hp->n_head > 0 ? hp->n_embd / hp->n_head : 0);
    TM_TRY(hf_int(m->hf, hd, NULL, NULL, -1, &hp->head_dim, "head_dim"));
    TM_TRY(hf_int(m->hf, mi->max_position_embeddings, "n_positions", NULL, 2048, &hp->n_ctx_train,
                  "max_position_embeddings"));
    const double prf = hf_float(m->hf, "partial_rotary_factor", 1.0);
    if (!(prf > 0.0 && prf <= 1.0))
        return tm_fail(TM_ERR_FORMAT, "model: config.json partial_rotary_factor %g", prf);
    hp->n_rot = (int32_t)((double)hp->head_dim * prf);
    double eps = r->norm == TM_NORM_LAYER ? mi->layer_norm_eps : mi->rms_norm_eps;
    if (eps < 0)
        eps = hf_float(m->hf, "layer_norm_epsilon", r->norm == TM_NORM_LAYER ? 1e-12 : 1e-6);
    hp->rms_eps = (float)eps;
    double theta = mi->rope_theta;
    if (theta < 0)
        theta = hf_float(m->hf, "rope_parameters.full_attention.rope_theta", 10000.0);
    hp->rope_theta = (float)theta;
    double theta_swa = hf_float(m->hf, "rope_parameters.sliding_attention.rope_theta", -1.0);
    if (theta_swa < 0)
        theta_swa = hf_float(m->hf, "rope_local_base_freq",
                             r->rope_theta_swa > 0 ? r->rope_theta_swa : theta);
    hp->rope_theta_swa = (float)theta_swa;
    hp->n_swa = 0;
    if (r->swa != TM_SWA_NONE) {
        int64_t w = -1;
        if (tm_hf_config_get_int(m->hf, TM_HF_FILE_CONFIG, "sliding_window", &w) != TM_OK)
            w = 0;
        tm_clear_error();
        if (w < 0 || w > INT32_MAX)
            return tm_fail(TM_ERR_FORMAT, "model: config.json sliding_window %" PRId64, w);
        hp->n_swa = (int32_t)w;
    }
    if (!isfinite(theta) || !isfinite(theta_swa) || !isfinite(eps))
        return tm_fail(TM_ERR_FORMAT, "model: config.json rope_theta / eps not finite");
    TM_TRY(tm__model_check_hparams(hp));
    const tm_hf_generation *gen = tm_hf_config_generation(m->hf);
    hp->bos_id = gen->bos_token_id;
    hp->eos_id = gen->n_eos_token_ids > 0 ? gen->eos_token_ids[0] : -1;
    if (r->pos == TM_POS_ROPE)
        TM_TRY(hf_rope_freqs(m, mi));
    TM_TRY(tm__model_load_tensors(m));
    return hf_layer_types(m);
}
