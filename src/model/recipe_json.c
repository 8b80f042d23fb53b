/*
 * recipe_json.c - a recipe from a JSON file (docs/recipes.md "JSON recipes"): a
 * custom architecture without C code.
 *
 * DESIGN
 * - The schema is the tm_recipe struct: one key per field, enum values spelled
 *   as in the docs, and two name maps ("tensors" for GGUF, "hf_tensors" for HF
 *   folders) keyed by slot ("attn_q", ...). "base" starts from a built-in recipe.
 * - Every error names the key: unknown keys, wrong types, unknown enum values,
 *   out-of-range numbers, bad name patterns ({N} exactly once in per-layer
 *   names, never in global ones). Input is untrusted (fuzzed:
 *   tests/fuzz/fuzz_recipe.c); nothing here asserts on it.
 * - The result is one tm_malloc'd block: the struct followed by its strings.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "model/model_int.h"

#define RJ_MAX_BYTES ((size_t)1 << 20)

typedef struct rj_enum {
    const char *name;
    int         value;
} rj_enum;

static const rj_enum rj_norm[] = {{"rms", TM_NORM_RMS}, {"layer", TM_NORM_LAYER}, {NULL, 0}};
static const rj_enum rj_place[] = {{"pre", 0}, {"post", 1}, {NULL, 0}};
static const rj_enum rj_pos[] = {{"rope", TM_POS_ROPE}, {"learned", TM_POS_LEARNED}, {NULL, 0}};
static const rj_enum rj_rope[] = {{"norm", TM_ROPE_NORM}, {"neox", TM_ROPE_NEOX}, {NULL, 0}};
static const rj_enum rj_mlp[] = {{"swiglu", TM_MLP_SWIGLU},
                                 {"geglu", TM_MLP_GEGLU},
                                 {"gelu", TM_MLP_GELU},
                                 {"gelu_erf", TM_MLP_GELU_ERF},
                                 {NULL, 0}};
static const rj_enum rj_pool[] = {{"none", TM_POOL_NONE}, {"mean", TM_POOL_MEAN}, {NULL, 0}};
static const rj_enum rj_swa[] = {
    {"none", TM_SWA_NONE}, {"all", TM_SWA_ALL}, {"periodic", TM_SWA_PERIODIC}, {NULL, 0}};

static tm_status rj_get_enum(const char *key, const json_t *v, const rj_enum *e, int *out) {
    if (!json_is_string(v))
        return tm_fail(TM_ERR_FORMAT, "recipe: key '%s' must be a string", key);
    const char *s = json_string_value(v);
    char        allowed[128] = "";
    for (int i = 0; e[i].name != NULL; i++) {
        if (strcmp(s, e[i].name) == 0) {
            *out = e[i].value;
            return TM_OK;
        }
        size_t o = strlen(allowed);
        snprintf(allowed + o, sizeof allowed - o, "%s%s", i ? ", " : "", e[i].name);
    }
    return tm_fail(TM_ERR_FORMAT, "recipe: key '%s': unknown value '%.40s' (one of: %s)", key, s,
                   allowed);
}

static tm_status rj_get_float(const char *key, const json_t *v, float *out) {
    if (!json_is_number(v))
        return tm_fail(TM_ERR_FORMAT, "recipe: key '%s' must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < 0 || d > 1e9)
        return tm_fail(TM_ERR_FORMAT, "recipe: key '%s' = %g out of range [0, 1e9]", key, d);
    *out = (float)d;
    return TM_OK;
}

/* Name pattern check: {N} exactly once in per-layer slots, absent in global ones. */
static tm_status rj_check_name(const char *map, const char *key, tm_slot s, const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n >= TM_RECIPE_MAX_NAME)
        return tm_fail(TM_ERR_FORMAT, "recipe: %s.%s: name must have 1..%d bytes", map, key,
                       TM_RECIPE_MAX_NAME - 1);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == 0x7f || name[i] == '%')
            return tm_fail(TM_ERR_FORMAT, "recipe: %s.%s: name has a control character or '%%'",
                           map, key);
    const char *p = strstr(name, "{N}");
    const bool  layer = s >= TM_SLOT_FIRST_LAYER;
    if (layer && (p == NULL || strstr(p + 3, "{N}") != NULL))
        return tm_fail(
            TM_ERR_FORMAT,
            "recipe: %s.%s: a per-layer name needs {N} (the layer) exactly once: '%.60s'", map, key,
            name);
    if (!layer && p != NULL)
        return tm_fail(TM_ERR_FORMAT, "recipe: %s.%s: a model-level name cannot hold {N}", map,
                       key);
    return TM_OK;
}

static tm_status rj_names(const char *map, const json_t *obj, const char **names, size_t *bytes) {
    if (!json_is_object(obj))
        return tm_fail(TM_ERR_FORMAT, "recipe: key '%s' must be an object of slot -> name", map);
    const char *k;
    json_t     *v;
    json_object_foreach((json_t *)obj, k, v) {
        int s = -1;
        for (int i = 0; i < TM_SLOT_COUNT; i++)
            if (strcmp(k, tm__slot_key((tm_slot)i)) == 0)
                s = i;
        if (s < 0)
            return tm_fail(TM_ERR_FORMAT, "recipe: %s: unknown tensor slot '%.40s'", map, k);
        if (json_is_null(v)) {
            names[s] = ""; /* "" = this source has no such tensor (NULL = the default) */
            continue;
        }
        if (!json_is_string(v))
            return tm_fail(TM_ERR_FORMAT, "recipe: %s.%s must be a string or null", map, k);
        TM_TRY(rj_check_name(map, k, (tm_slot)s, json_string_value(v)));
        names[s] = json_string_value(v);
        *bytes += strlen(names[s]) + 1;
    }
    return TM_OK;
}

typedef struct rj_bool_key {
    const char *key;
    size_t      off;
} rj_bool_key;

#define RJ_B(f)                                                                                    \
    { #f, offsetof(tm_recipe, f) }
static const rj_bool_key rj_bools[] = {
    RJ_B(causal),      RJ_B(qkv_bias),   RJ_B(bias),          RJ_B(qk_norm),
    RJ_B(post_norms),  RJ_B(embd_scale), RJ_B(embd_norm),     RJ_B(token_types),
    RJ_B(tied_output), RJ_B(fused_qkv),  RJ_B(fused_gate_up), RJ_B(hf_norm_add_one),
    RJ_B(hf_conv1d),
};
#undef RJ_B

static tm_status rj_parse(const json_t *root, tm_recipe *r, size_t *bytes) {
    if (!json_is_object(root))
        return tm_fail(TM_ERR_FORMAT, "recipe: the top level must be a JSON object");
    /* defaults, or a built-in recipe to start from */
    *r = (tm_recipe){.rope_mode = TM_ROPE_NEOX, .hf_rope_mode = TM_ROPE_NEOX, .causal = true};
    const json_t *base = json_object_get(root, "base");
    if (base != NULL) {
        if (!json_is_string(base))
            return tm_fail(TM_ERR_FORMAT, "recipe: key 'base' must be a string");
        const tm_recipe *b =
            tm__recipe_find(json_string_value(base), strlen(json_string_value(base)));
        if (b == NULL)
            return tm_fail(TM_ERR_FORMAT, "recipe: key 'base': unknown recipe '%.40s' (known: %s)",
                           json_string_value(base), tm__recipe_list());
        *r = *b;
        r->hf_model_types = NULL;
        for (int i = 0; i < TM_SLOT_COUNT; i++) {
            if (r->names[i] != NULL)
                *bytes += strlen(r->names[i]) + 1;
            if (r->hf_names[i] != NULL)
                *bytes += strlen(r->hf_names[i]) + 1;
        }
    }
    const json_t *arch = json_object_get(root, "arch");
    if (arch == NULL && base == NULL)
        return tm_fail(TM_ERR_FORMAT, "recipe: key 'arch' is required");
    const char *k;
    json_t     *v;
    int         e;
    json_object_foreach((json_t *)root, k, v) {
        if (strcmp(k, "base") == 0)
            continue;
        if (strcmp(k, "arch") == 0 || strcmp(k, "hf_model_types") == 0) {
            if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) > 31)
                return tm_fail(TM_ERR_FORMAT, "recipe: key '%s' must be a string of 1..31 bytes",
                               k);
            *bytes += json_string_length(v) + 1;
            if (strcmp(k, "arch") == 0)
                r->arch = json_string_value(v);
            else
                r->hf_model_types = json_string_value(v);
        } else if (strcmp(k, "norm") == 0) {
            TM_TRY(rj_get_enum(k, v, rj_norm, &e));
            r->norm = (tm_norm_kind)e;
        } else if (strcmp(k, "norm_placement") == 0) {
            TM_TRY(rj_get_enum(k, v, rj_place, &e));
            r->norm_post = e == 1;
        } else if (strcmp(k, "position") == 0) {
            TM_TRY(rj_get_enum(k, v, rj_pos, &e));
            r->pos = (tm_pos_kind)e;
        } else if (strcmp(k, "rope_mode") == 0) {
            TM_TRY(rj_get_enum(k, v, rj_rope, &e));
            r->rope_mode = (tm_rope_mode)e;
        } else if (strcmp(k, "hf_rope_mode") == 0) {
            TM_TRY(rj_get_enum(k, v, rj_rope, &e));
            r->hf_rope_mode = (tm_rope_mode)e;
        } else if (strcmp(k, "mlp") == 0) {
            TM_TRY(rj_get_enum(k, v, rj_mlp, &e));
            r->mlp = (tm_mlp_kind)e;
        } else if (strcmp(k, "pooling") == 0) {
            TM_TRY(rj_get_enum(k, v, rj_pool, &e));
            r->pooling = (tm_pool_kind)e;
        } else if (strcmp(k, "sliding_window") == 0) {
            TM_TRY(rj_get_enum(k, v, rj_swa, &e));
            r->swa = (tm_swa_kind)e;
        } else if (strcmp(k, "swa_period") == 0) {
            if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 4096)
                return tm_fail(TM_ERR_FORMAT,
                               "recipe: key 'swa_period' must be an integer in 1..4096");
            r->swa_period = (int32_t)json_integer_value(v);
        } else if (strcmp(k, "rope_theta_swa") == 0) {
            TM_TRY(rj_get_float(k, v, &r->rope_theta_swa));
        } else if (strcmp(k, "attn_softcap") == 0) {
            TM_TRY(rj_get_float(k, v, &r->attn_softcap));
        } else if (strcmp(k, "final_softcap") == 0) {
            TM_TRY(rj_get_float(k, v, &r->final_softcap));
        } else if (strcmp(k, "tensors") == 0) {
            TM_TRY(rj_names(k, v, r->names, bytes));
        } else if (strcmp(k, "hf_tensors") == 0) {
            TM_TRY(rj_names(k, v, r->hf_names, bytes));
        } else {
            size_t i = 0, n = sizeof rj_bools / sizeof rj_bools[0];
            while (i < n && strcmp(k, rj_bools[i].key) != 0)
                i++;
            if (i == n)
                return tm_fail(TM_ERR_FORMAT, "recipe: unknown key '%.40s' (see docs/recipes.md)",
                               k);
            if (!json_is_boolean(v))
                return tm_fail(TM_ERR_FORMAT, "recipe: key '%s' must be true or false", k);
            *(bool *)((char *)r + rj_bools[i].off) = json_is_true(v);
        }
    }
    if (r->arch == NULL)
        return tm_fail(TM_ERR_FORMAT, "recipe: key 'arch' is required");
    if (r->swa == TM_SWA_PERIODIC && r->swa_period < 1)
        return tm_fail(TM_ERR_FORMAT,
                       "recipe: key 'swa_period' is required with sliding_window \"periodic\"");
    if (r->fused_gate_up && r->mlp > TM_MLP_GEGLU)
        return tm_fail(TM_ERR_FORMAT,
                       "recipe: key 'fused_gate_up' needs a gated mlp (swiglu, geglu)");
    return TM_OK;
}

static const char *rj_dup(char **pool, const char *s) {
    if (s == NULL)
        return NULL;
    size_t n = strlen(s) + 1;
    memcpy(*pool, s, n);
    const char *out = *pool;
    *pool += n;
    return out;
}

tm_status tm__recipe_parse(const char *json, size_t len, tm_recipe **out) {
    *out = NULL;
    if (json == NULL)
        return tm_fail(TM_ERR_INVALID, "recipe: no text");
    if (len > RJ_MAX_BYTES)
        return tm_fail(TM_ERR_FORMAT, "recipe: %zu bytes, more than 1 MiB", len);
    json_error_t jerr;
    json_t      *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return tm_fail(TM_ERR_FORMAT, "recipe: JSON error at line %d column %d: %s", jerr.line,
                       jerr.column, jerr.text);
    tm_recipe r;
    size_t    bytes = 0;
    tm_status st = rj_parse(root, &r, &bytes);
    if (st == TM_OK) {
        /* exact size of the strings to copy (the parse's count is only an estimate) */
        bytes = (r.arch ? strlen(r.arch) + 1 : 0) +
                (r.hf_model_types ? strlen(r.hf_model_types) + 1 : 0);
        for (int i = 0; i < TM_SLOT_COUNT; i++)
            bytes += (r.names[i] ? strlen(r.names[i]) + 1 : 0) +
                     (r.hf_names[i] ? strlen(r.hf_names[i]) + 1 : 0);
        tm_recipe *blk = tm_malloc(sizeof *blk + bytes);
        if (blk == NULL) {
            st = tm_fail(TM_ERR_NOMEM, "recipe");
        } else {
            char *pool = (char *)(blk + 1);
            *blk = r;
            blk->arch = rj_dup(&pool, r.arch);
            blk->hf_model_types = rj_dup(&pool, r.hf_model_types);
            for (int i = 0; i < TM_SLOT_COUNT; i++) {
                blk->names[i] = rj_dup(&pool, r.names[i]);
                blk->hf_names[i] = rj_dup(&pool, r.hf_names[i]);
            }
            *out = blk;
        }
    }
    json_decref(root);
    return st;
}
