/*
 * hf_config.c - Hugging Face folder JSON: config.json, generation_config.json,
 * tokenizer_config.json and chat_template.jinja.
 *
 * DESIGN
 * ------
 * Each file is read whole (size-capped) or taken from caller memory, parsed by
 * jansson with duplicate keys rejected, and must be an object. The documents are
 * kept for the generic dotted-path getters; the typed views are filled once at
 * load through the same getters, so a wrong type of any key TensorMesh reads
 * fails the load with "file: key ...". Strings in the views point into the kept
 * documents (or into owned buffers for chat_template.jinja and paths).
 *
 * jansson refuses integers beyond int64 ("too big integer"), and transformers
 * writes model_max_length = int(1e30) for "no limit". A document that overflows
 * is therefore re-parsed with JSON_DECODE_INT_AS_REAL; the getters accept
 * integral reals wherever an integer is expected, so both parses read the same.
 *
 * Chat template precedence follows transformers: chat_template.jinja, when
 * present, replaces the template(s) of tokenizer_config.json.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "tm/tm_hf.h"
#include "tm/tm_io.h"

static const char *const hf_file_names[TM_HF_FILE_COUNT] = {
    "config.json",
    "generation_config.json",
    "tokenizer_config.json",
};

struct tm_hf_config {
    json_t              *doc[TM_HF_FILE_COUNT];   /* NULL when absent */
    char                *label[TM_HF_FILE_COUNT]; /* path or bare name, for messages */
    tm_hf_model_info     model;
    tm_hf_generation     gen;
    tm_hf_tokenizer_info tok;
    int32_t             *eos_ids;        /* gen.eos_token_ids */
    tm_hf_chat_template *templates;      /* tok.chat_templates */
    char                *jinja;          /* chat_template.jinja text */
    char                *tokenizer_json; /* tok.tokenizer_json_path */
    char                *tokenizer_model;
};

tm_hf_params tm_hf_params_default(void) {
    return (tm_hf_params){.max_file_bytes = TM_HF_MAX_FILE_BYTES};
}

/* ---- reading ------------------------------------------------------------------------ */

static char *hf_join(const char *dir, const char *name) {
    size_t n = strlen(dir) + 1 + strlen(name) + 1;
    char  *p = tm_malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Reads dir/name or takes mem; *text NULL when neither exists. *label gets the path or
 * the bare name (owned). */
static tm_status hf_read(const tm_hf_params *p, const char *name, const char *mem, size_t mem_len,
                         char **text, size_t *len, char **label) {
    *text = NULL;
    *len = 0;
    *label = NULL;
    if (mem != NULL) {
        *label = tm_strdup(name);
        if (*label == NULL)
            return tm_fail(TM_ERR_NOMEM, "%s: out of memory", name);
        if (mem_len > p->max_file_bytes)
            return tm_fail(TM_ERR_FORMAT, "%s: larger than the %zu-byte limit", name,
                           p->max_file_bytes);
        *text = tm_strndup(mem, mem_len);
        if (*text == NULL)
            return tm_fail(TM_ERR_NOMEM, "%s: out of memory", name);
        *len = mem_len;
        return TM_OK;
    }
    if (p->dir == NULL)
        return TM_OK;
    *label = hf_join(p->dir, name);
    if (*label == NULL)
        return tm_fail(TM_ERR_NOMEM, "%s: out of memory", name);
    if (!tm_path_is_file(*label))
        return TM_OK;
    return tm_file_read_all(*label, p->max_file_bytes, text, len);
}

static tm_status hf_parse(const char *label, const char *text, size_t len, json_t **out) {
    json_error_t err;
    json_t      *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &err);
    if (root == NULL && json_error_code(&err) == json_error_numeric_overflow)
        root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &err);
    if (root == NULL)
        return tm_fail(TM_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", label,
                       err.text, err.line, err.column);
    if (!json_is_object(root)) {
        json_decref(root);
        return tm_fail(TM_ERR_FORMAT, "%s: not a JSON object", label);
    }
    *out = root;
    return TM_OK;
}

/* ---- generic getters -------------------------------------------------------------- */

/* Walks a dotted path; NULL when a segment is missing, not an object, or null. */
static json_t *hf_lookup(const json_t *root, const char *key) {
    const json_t *cur = root;
    const char   *s = key;
    for (;;) {
        const char *dot = strchr(s, '.');
        size_t      n = dot ? (size_t)(dot - s) : strlen(s);
        if (!json_is_object(cur))
            return NULL;
        cur = json_object_getn(cur, s, n);
        if (cur == NULL || json_is_null(cur))
            return NULL;
        if (dot == NULL)
            return (json_t *)cur;
        s = dot + 1;
    }
}

static const char *hf_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

static tm_status hf_wrong(const tm_hf_config *c, tm_hf_file f, const char *key, const char *want,
                          const json_t *v) {
    return tm_fail(TM_ERR_FORMAT, "%s: key \"%.200s\" must be %s, got %s", c->label[f], key, want,
                   hf_type_name(v));
}

static tm_status hf_find(const tm_hf_config *c, tm_hf_file f, const char *key, json_t **v) {
    if ((unsigned)f >= TM_HF_FILE_COUNT)
        return tm_fail(TM_ERR_INVALID, "tm_hf_config: bad file selector %d", (int)f);
    *v = c->doc[f] ? hf_lookup(c->doc[f], key) : NULL;
    if (*v == NULL)
        return tm_fail(TM_ERR_NOT_FOUND, "%s: no key \"%.200s\"", hf_file_names[f], key);
    return TM_OK;
}

/* Integer value of v, accepting integral reals (see DESIGN); false otherwise. */
static bool hf_as_int(const json_t *v, int64_t *out) {
    if (json_is_integer(v)) {
        *out = (int64_t)json_integer_value(v);
        return true;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0)
            return false;
        *out = (int64_t)d;
        return true;
    }
    return false;
}

tm_status tm_hf_config_get_int(const tm_hf_config *c, tm_hf_file f, const char *key, int64_t *out) {
    json_t *v = NULL;
    TM_TRY(hf_find(c, f, key, &v));
    if (!hf_as_int(v, out))
        return hf_wrong(c, f, key, "an integer", v);
    return TM_OK;
}

tm_status tm_hf_config_get_float(const tm_hf_config *c, tm_hf_file f, const char *key,
                                 double *out) {
    json_t *v = NULL;
    TM_TRY(hf_find(c, f, key, &v));
    if (!json_is_number(v))
        return hf_wrong(c, f, key, "a number", v);
    *out = json_number_value(v);
    return TM_OK;
}

tm_status tm_hf_config_get_str(const tm_hf_config *c, tm_hf_file f, const char *key,
                               const char **out) {
    json_t *v = NULL;
    TM_TRY(hf_find(c, f, key, &v));
    if (!json_is_string(v))
        return hf_wrong(c, f, key, "a string", v);
    *out = json_string_value(v);
    return TM_OK;
}

tm_status tm_hf_config_get_bool(const tm_hf_config *c, tm_hf_file f, const char *key, bool *out) {
    json_t *v = NULL;
    TM_TRY(hf_find(c, f, key, &v));
    if (!json_is_boolean(v))
        return hf_wrong(c, f, key, "a boolean", v);
    *out = json_is_true(v);
    return TM_OK;
}

/* ---- typed extraction: absent keys keep the caller's default ------------------------ */

static tm_status hf_opt_int(const tm_hf_config *c, tm_hf_file f, const char *key, int64_t *out) {
    int64_t   v = 0;
    tm_status st = tm_hf_config_get_int(c, f, key, &v);
    if (st == TM_ERR_NOT_FOUND)
        return TM_OK;
    TM_TRY(st);
    if (v < 0)
        return tm_fail(TM_ERR_FORMAT, "%s: key \"%s\" must be non-negative, got %" PRId64,
                       c->label[f], key, v);
    *out = v;
    return TM_OK;
}

/* A size: positive when present. */
static tm_status hf_opt_size(const tm_hf_config *c, tm_hf_file f, const char *key, int64_t *out) {
    int64_t v = -1;
    TM_TRY(hf_opt_int(c, f, key, &v));
    if (v == 0)
        return tm_fail(TM_ERR_FORMAT, "%s: key \"%s\" must be positive, got 0", c->label[f], key);
    if (v > 0)
        *out = v;
    return TM_OK;
}

/* Model sizes: top level first, then text_config (see tm_hf_model_info). */
static tm_status hf_model_size(const tm_hf_config *c, const char *key, int64_t *out) {
    TM_TRY(hf_opt_size(c, TM_HF_FILE_CONFIG, key, out));
    if (*out < 0 && json_is_object(json_object_get(c->doc[TM_HF_FILE_CONFIG], "text_config"))) {
        char path[128];
        snprintf(path, sizeof path, "text_config.%s", key);
        TM_TRY(hf_opt_size(c, TM_HF_FILE_CONFIG, path, out));
    }
    return TM_OK;
}

static tm_status hf_opt_float(const tm_hf_config *c, tm_hf_file f, const char *key, double *out) {
    double    v = 0;
    tm_status st = tm_hf_config_get_float(c, f, key, &v);
    if (st == TM_ERR_NOT_FOUND)
        return TM_OK;
    TM_TRY(st);
    if (!(v >= 0.0) || !isfinite(v))
        return tm_fail(TM_ERR_FORMAT, "%s: key \"%s\" must be a non-negative number, got %g",
                       c->label[f], key, v);
    *out = v;
    return TM_OK;
}

static tm_status hf_model_float(const tm_hf_config *c, const char *key, double *out) {
    TM_TRY(hf_opt_float(c, TM_HF_FILE_CONFIG, key, out));
    if (*out < 0 && json_is_object(json_object_get(c->doc[TM_HF_FILE_CONFIG], "text_config"))) {
        char path[128];
        snprintf(path, sizeof path, "text_config.%s", key);
        TM_TRY(hf_opt_float(c, TM_HF_FILE_CONFIG, path, out));
    }
    return TM_OK;
}

static tm_status hf_opt_str(const tm_hf_config *c, tm_hf_file f, const char *key,
                            const char **out) {
    tm_status st = tm_hf_config_get_str(c, f, key, out);
    return st == TM_ERR_NOT_FOUND ? TM_OK : st;
}

static tm_status hf_opt_tristate(const tm_hf_config *c, tm_hf_file f, const char *key,
                                 int32_t *out) {
    bool      b;
    tm_status st = tm_hf_config_get_bool(c, f, key, &b);
    if (st == TM_ERR_NOT_FOUND)
        return TM_OK;
    TM_TRY(st);
    *out = b ? 1 : 0;
    return TM_OK;
}

/* Token id: an integer; negative values (some configs write -1) mean "none". */
static tm_status hf_token_id(const tm_hf_config *c, tm_hf_file f, const char *key, const json_t *v,
                             int32_t *out) {
    int64_t id;
    if (!hf_as_int(v, &id))
        return hf_wrong(c, f, key, "an integer token id", v);
    if (id > INT32_MAX)
        return tm_fail(TM_ERR_FORMAT, "%s: key \"%s\": token id %" PRId64 " out of range",
                       c->label[f], key, id);
    *out = id < 0 ? -1 : (int32_t)id;
    return TM_OK;
}

static tm_status hf_opt_token_id(const tm_hf_config *c, tm_hf_file f, const char *key,
                                 int32_t *out) {
    json_t *v = c->doc[f] ? hf_lookup(c->doc[f], key) : NULL;
    return v == NULL ? TM_OK : hf_token_id(c, f, key, v, out);
}

/* ---- config.json -------------------------------------------------------------------- */

static tm_status hf_fill_rope(tm_hf_config *c) {
    const tm_hf_file  f = TM_HF_FILE_CONFIG;
    tm_hf_model_info *m = &c->model;
    m->rope_scaling = (tm_hf_rope_scaling){NULL, -1, -1, -1, -1};
    const char *obj = NULL;
    json_t     *v = NULL;
    if ((v = hf_lookup(c->doc[f], "rope_scaling")) != NULL)
        obj = "rope_scaling";
    else if ((v = hf_lookup(c->doc[f], "rope_parameters")) != NULL)
        obj = "rope_parameters"; /* transformers 5 */
    if (obj == NULL)
        return TM_OK;
    if (!json_is_object(v))
        return hf_wrong(c, f, obj, "an object", v);
    char key[64];
    snprintf(key, sizeof key, "%s.rope_type", obj);
    TM_TRY(hf_opt_str(c, f, key, &m->rope_scaling.rope_type));
    if (m->rope_scaling.rope_type == NULL) {
        snprintf(key, sizeof key, "%s.type", obj);
        TM_TRY(hf_opt_str(c, f, key, &m->rope_scaling.rope_type));
    }
    snprintf(key, sizeof key, "%s.factor", obj);
    TM_TRY(hf_opt_float(c, f, key, &m->rope_scaling.factor));
    snprintf(key, sizeof key, "%s.low_freq_factor", obj);
    TM_TRY(hf_opt_float(c, f, key, &m->rope_scaling.low_freq_factor));
    snprintf(key, sizeof key, "%s.high_freq_factor", obj);
    TM_TRY(hf_opt_float(c, f, key, &m->rope_scaling.high_freq_factor));
    snprintf(key, sizeof key, "%s.original_max_position_embeddings", obj);
    TM_TRY(hf_opt_size(c, f, key, &m->rope_scaling.original_max_position_embeddings));
    if (m->rope_theta < 0) {
        snprintf(key, sizeof key, "%s.rope_theta", obj);
        TM_TRY(hf_opt_float(c, f, key, &m->rope_theta));
    }
    return TM_OK;
}

static tm_status hf_fill_model(tm_hf_config *c) {
    const tm_hf_file  f = TM_HF_FILE_CONFIG;
    tm_hf_model_info *m = &c->model;
    *m = (tm_hf_model_info){
        .hidden_size = -1,
        .num_hidden_layers = -1,
        .num_attention_heads = -1,
        .num_key_value_heads = -1,
        .intermediate_size = -1,
        .vocab_size = -1,
        .max_position_embeddings = -1,
        .head_dim = -1,
        .rms_norm_eps = -1,
        .layer_norm_eps = -1,
        .rope_theta = -1,
        .tie_word_embeddings = -1,
        .rope_scaling = {NULL, -1, -1, -1, -1},
    };
    if (c->doc[f] == NULL)
        return TM_OK;
    TM_TRY(hf_opt_str(c, f, "model_type", &m->model_type));
    json_t *arch = hf_lookup(c->doc[f], "architectures");
    if (arch != NULL) {
        if (!json_is_array(arch))
            return hf_wrong(c, f, "architectures", "an array of strings", arch);
        if (json_array_size(arch) > 0) {
            json_t *a0 = json_array_get(arch, 0);
            if (!json_is_string(a0))
                return hf_wrong(c, f, "architectures[0]", "a string", a0);
            m->architecture = json_string_value(a0);
        }
    }
    TM_TRY(hf_opt_str(c, f, "torch_dtype", &m->torch_dtype));
    if (m->torch_dtype == NULL)
        TM_TRY(hf_opt_str(c, f, "dtype", &m->torch_dtype));
    TM_TRY(hf_model_size(c, "hidden_size", &m->hidden_size));
    TM_TRY(hf_model_size(c, "num_hidden_layers", &m->num_hidden_layers));
    TM_TRY(hf_model_size(c, "num_attention_heads", &m->num_attention_heads));
    TM_TRY(hf_model_size(c, "num_key_value_heads", &m->num_key_value_heads));
    TM_TRY(hf_model_size(c, "intermediate_size", &m->intermediate_size));
    TM_TRY(hf_model_size(c, "vocab_size", &m->vocab_size));
    TM_TRY(hf_model_size(c, "max_position_embeddings", &m->max_position_embeddings));
    TM_TRY(hf_model_size(c, "head_dim", &m->head_dim));
    TM_TRY(hf_model_float(c, "rms_norm_eps", &m->rms_norm_eps));
    TM_TRY(hf_model_float(c, "layer_norm_eps", &m->layer_norm_eps));
    TM_TRY(hf_model_float(c, "rope_theta", &m->rope_theta));
    TM_TRY(hf_opt_tristate(c, f, "tie_word_embeddings", &m->tie_word_embeddings));
    TM_TRY(hf_fill_rope(c));
    /* HF defaults (LlamaConfig and most decoder configs). */
    if (m->num_key_value_heads < 0)
        m->num_key_value_heads = m->num_attention_heads;
    if (m->head_dim < 0 && m->hidden_size > 0 && m->num_attention_heads > 0 &&
        m->hidden_size % m->num_attention_heads == 0)
        m->head_dim = m->hidden_size / m->num_attention_heads;
    return TM_OK;
}

/* ---- generation_config.json --------------------------------------------------------- */

/* eos_token_id: an integer or a list of integers, from file f. */
static tm_status hf_fill_eos(tm_hf_config *c, tm_hf_file f) {
    json_t *v = c->doc[f] ? hf_lookup(c->doc[f], "eos_token_id") : NULL;
    if (v == NULL)
        return TM_OK;
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (n > 4096)
        return tm_fail(TM_ERR_FORMAT, "%s: key \"eos_token_id\": %zu ids is too many", c->label[f],
                       n);
    c->eos_ids = tm_calloc(n ? n : 1, sizeof(int32_t));
    if (c->eos_ids == NULL)
        return tm_fail(TM_ERR_NOMEM, "%s: out of memory", c->label[f]);
    int32_t k = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = -1;
        TM_TRY(hf_token_id(c, f, "eos_token_id", json_is_array(v) ? json_array_get(v, i) : v, &id));
        if (id >= 0)
            c->eos_ids[k++] = id;
    }
    c->gen.eos_token_ids = c->eos_ids;
    c->gen.n_eos_token_ids = k;
    return TM_OK;
}

static tm_status hf_fill_generation(tm_hf_config *c) {
    tm_hf_generation *g = &c->gen;
    *g = (tm_hf_generation){
        .bos_token_id = -1,
        .pad_token_id = -1,
        .do_sample = -1,
        .temperature = -1,
        .top_p = -1,
        .min_p = -1,
        .repetition_penalty = -1,
        .top_k = -1,
        .max_new_tokens = -1,
        .max_length = -1,
    };
    tm_hf_file f = TM_HF_FILE_GENERATION_CONFIG;
    if (c->doc[f] == NULL) {
        if (c->doc[TM_HF_FILE_CONFIG] == NULL)
            return TM_OK;
        f = TM_HF_FILE_CONFIG;
        g->from_model_config = true;
    } else {
        g->present = true;
    }
    TM_TRY(hf_opt_token_id(c, f, "bos_token_id", &g->bos_token_id));
    TM_TRY(hf_opt_token_id(c, f, "pad_token_id", &g->pad_token_id));
    TM_TRY(hf_fill_eos(c, f));
    if (!g->present)
        return TM_OK;
    TM_TRY(hf_opt_tristate(c, f, "do_sample", &g->do_sample));
    TM_TRY(hf_opt_float(c, f, "temperature", &g->temperature));
    TM_TRY(hf_opt_float(c, f, "top_p", &g->top_p));
    TM_TRY(hf_opt_float(c, f, "min_p", &g->min_p));
    TM_TRY(hf_opt_float(c, f, "repetition_penalty", &g->repetition_penalty));
    TM_TRY(hf_opt_int(c, f, "top_k", &g->top_k));
    TM_TRY(hf_opt_int(c, f, "max_new_tokens", &g->max_new_tokens));
    TM_TRY(hf_opt_int(c, f, "max_length", &g->max_length));
    return TM_OK;
}

/* ---- tokenizer_config.json + chat_template.jinja ------------------------------------ */

/* A special token: a string, or an AddedToken object whose "content" is a string. */
static tm_status hf_special_token(tm_hf_config *c, const char *key, const char **out) {
    const tm_hf_file f = TM_HF_FILE_TOKENIZER_CONFIG;
    json_t          *v = hf_lookup(c->doc[f], key);
    if (v == NULL)
        return TM_OK;
    if (json_is_string(v)) {
        *out = json_string_value(v);
        return TM_OK;
    }
    if (json_is_object(v)) {
        json_t *content = json_object_get(v, "content");
        if (json_is_string(content)) {
            *out = json_string_value(content);
            return TM_OK;
        }
        char path[64];
        snprintf(path, sizeof path, "%s.content", key);
        return content ? hf_wrong(c, f, path, "a string", content)
                       : tm_fail(TM_ERR_FORMAT, "%s: key \"%s\": AddedToken without \"content\"",
                                 c->label[f], key);
    }
    return hf_wrong(c, f, key, "a string or an AddedToken object", v);
}

static tm_status hf_fill_templates(tm_hf_config *c) {
    const tm_hf_file      f = TM_HF_FILE_TOKENIZER_CONFIG;
    tm_hf_tokenizer_info *t = &c->tok;
    if (c->jinja != NULL) {
        c->templates = tm_calloc(1, sizeof *c->templates);
        if (c->templates == NULL)
            return tm_fail(TM_ERR_NOMEM, "chat_template.jinja: out of memory");
        c->templates[0] = (tm_hf_chat_template){"default", c->jinja};
        t->chat_templates = c->templates;
        t->n_chat_templates = 1;
        t->chat_template_origin = "chat_template.jinja";
        return TM_OK;
    }
    json_t *v = c->doc[f] ? hf_lookup(c->doc[f], "chat_template") : NULL;
    if (v == NULL)
        return TM_OK;
    if (!json_is_string(v) && !json_is_array(v))
        return hf_wrong(c, f, "chat_template", "a string or a list of {name, template}", v);
    size_t n = json_is_string(v) ? 1 : json_array_size(v);
    if (n > 1024)
        return tm_fail(TM_ERR_FORMAT, "%s: key \"chat_template\": %zu templates is too many",
                       c->label[f], n);
    c->templates = tm_calloc(n ? n : 1, sizeof *c->templates);
    if (c->templates == NULL)
        return tm_fail(TM_ERR_NOMEM, "%s: out of memory", c->label[f]);
    if (json_is_string(v)) {
        c->templates[0] = (tm_hf_chat_template){"default", json_string_value(v)};
    } else {
        for (size_t i = 0; i < n; i++) {
            json_t *e = json_array_get(v, i);
            json_t *name = json_object_get(e, "name");
            json_t *tpl = json_object_get(e, "template");
            if (!json_is_object(e) || !json_is_string(name) || !json_is_string(tpl))
                return tm_fail(TM_ERR_FORMAT,
                               "%s: key \"chat_template[%zu]\" must be an object with string "
                               "\"name\" and \"template\"",
                               c->label[f], i);
            for (size_t j = 0; j < i; j++) {
                if (strcmp(c->templates[j].name, json_string_value(name)) == 0)
                    return tm_fail(TM_ERR_FORMAT,
                                   "%s: key \"chat_template\": name \"%.100s\" appears twice",
                                   c->label[f], json_string_value(name));
            }
            c->templates[i] =
                (tm_hf_chat_template){json_string_value(name), json_string_value(tpl)};
        }
    }
    t->chat_templates = c->templates;
    t->n_chat_templates = (int32_t)n;
    t->chat_template_origin = "tokenizer_config.json";
    return TM_OK;
}

static tm_status hf_fill_tokenizer(tm_hf_config *c) {
    const tm_hf_file      f = TM_HF_FILE_TOKENIZER_CONFIG;
    tm_hf_tokenizer_info *t = &c->tok;
    t->add_bos_token = -1;
    t->add_eos_token = -1;
    t->model_max_length = -1;
    t->tokenizer_json_path = c->tokenizer_json;
    t->tokenizer_model_path = c->tokenizer_model;
    if (c->doc[f] != NULL) {
        t->present = true;
        TM_TRY(hf_opt_str(c, f, "tokenizer_class", &t->tokenizer_class));
        TM_TRY(hf_special_token(c, "bos_token", &t->bos_token));
        TM_TRY(hf_special_token(c, "eos_token", &t->eos_token));
        TM_TRY(hf_special_token(c, "unk_token", &t->unk_token));
        TM_TRY(hf_special_token(c, "pad_token", &t->pad_token));
        TM_TRY(hf_opt_tristate(c, f, "add_bos_token", &t->add_bos_token));
        TM_TRY(hf_opt_tristate(c, f, "add_eos_token", &t->add_eos_token));
        json_t *v = hf_lookup(c->doc[f], "model_max_length");
        if (v != NULL) {
            if (!json_is_number(v))
                return hf_wrong(c, f, "model_max_length", "a number", v);
            double d = json_number_value(v);
            if (d < 0)
                return tm_fail(TM_ERR_FORMAT,
                               "%s: key \"model_max_length\" must be "
                               "non-negative",
                               c->label[f]);
            if (json_is_integer(v))
                t->model_max_length = (int64_t)json_integer_value(v);
            else
                t->model_max_length = d >= 9223372036854775807.0 ? INT64_MAX : (int64_t)d;
        }
    }
    return hf_fill_templates(c);
}

/* ---- load / free -------------------------------------------------------------------- */

static tm_status hf_opt_path(const char *dir, const char *name, char **out) {
    if (dir == NULL)
        return TM_OK;
    char *p = hf_join(dir, name);
    if (p == NULL)
        return tm_fail(TM_ERR_NOMEM, "%s: out of memory", dir);
    if (tm_path_is_file(p))
        *out = p;
    else
        tm_free(p);
    return TM_OK;
}

static tm_status hf_load(tm_hf_config *c, const tm_hf_params *p) {
    const char *mem[TM_HF_FILE_COUNT] = {p->config_json, p->generation_config_json,
                                         p->tokenizer_config_json};
    size_t      mem_len[TM_HF_FILE_COUNT] = {p->config_json_len, p->generation_config_json_len,
                                             p->tokenizer_config_json_len};
    for (int i = 0; i < TM_HF_FILE_COUNT; i++) {
        char     *text = NULL;
        size_t    len = 0;
        tm_status st = hf_read(p, hf_file_names[i], mem[i], mem_len[i], &text, &len, &c->label[i]);
        if (st == TM_OK && text != NULL)
            st = hf_parse(c->label[i], text, len, &c->doc[i]);
        tm_free(text);
        TM_TRY(st);
    }
    if (c->doc[TM_HF_FILE_CONFIG] == NULL && !p->allow_missing_config)
        return tm_fail(TM_ERR_NOT_FOUND, "%s: config.json not found", p->dir ? p->dir : "(memory)");

    char     *label = NULL;
    size_t    len = 0;
    tm_status st = hf_read(p, "chat_template.jinja", p->chat_template_jinja,
                           p->chat_template_jinja_len, &c->jinja, &len, &label);
    if (st == TM_OK && c->jinja != NULL && memchr(c->jinja, '\0', len) != NULL)
        st = tm_fail(TM_ERR_FORMAT, "%s: contains a NUL byte", label);
    tm_free(label);
    TM_TRY(st);

    TM_TRY(hf_opt_path(p->dir, "tokenizer.json", &c->tokenizer_json));
    TM_TRY(hf_opt_path(p->dir, "tokenizer.model", &c->tokenizer_model));
    TM_TRY(hf_fill_model(c));
    TM_TRY(hf_fill_generation(c));
    TM_TRY(hf_fill_tokenizer(c));
    return TM_OK;
}

tm_status tm_hf_config_load(const tm_hf_params *params, tm_hf_config **out) {
    *out = NULL;
    if (params == NULL)
        return tm_fail(TM_ERR_INVALID, "tm_hf_config_load: params is NULL");
    tm_hf_params p = *params;
    if (p.max_file_bytes == 0)
        p.max_file_bytes = TM_HF_MAX_FILE_BYTES;
    tm_hf_config *c = tm_calloc(1, sizeof *c);
    if (c == NULL)
        return tm_fail(TM_ERR_NOMEM, "tm_hf_config_load: out of memory");
    tm_status st = hf_load(c, &p);
    if (st != TM_OK) {
        tm_hf_config_free(c);
        return st;
    }
    *out = c;
    return TM_OK;
}

void tm_hf_config_free(tm_hf_config *c) {
    if (c == NULL)
        return;
    for (int i = 0; i < TM_HF_FILE_COUNT; i++) {
        json_decref(c->doc[i]);
        tm_free(c->label[i]);
    }
    tm_free(c->eos_ids);
    tm_free(c->templates);
    tm_free(c->jinja);
    tm_free(c->tokenizer_json);
    tm_free(c->tokenizer_model);
    tm_free(c);
}

const tm_hf_model_info     *tm_hf_config_model(const tm_hf_config *c) { return &c->model; }
const tm_hf_generation     *tm_hf_config_generation(const tm_hf_config *c) { return &c->gen; }
const tm_hf_tokenizer_info *tm_hf_config_tokenizer(const tm_hf_config *c) { return &c->tok; }

const char *tm_hf_config_chat_template(const tm_hf_config *c, const char *name) {
    if (name == NULL)
        name = "default";
    for (int32_t i = 0; i < c->tok.n_chat_templates; i++) {
        if (strcmp(c->tok.chat_templates[i].name, name) == 0)
            return c->tok.chat_templates[i].source;
    }
    return NULL;
}

const struct json_t *tm_hf_config_json(const tm_hf_config *c, tm_hf_file f) {
    return (unsigned)f < TM_HF_FILE_COUNT ? c->doc[f] : NULL;
}
