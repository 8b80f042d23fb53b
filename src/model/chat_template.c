/*
 * chat_template.c - public chat template API: compile, build the render
 * context from JSON (messages, tools, extra variables, special tokens) the way
 * transformers' apply_chat_template does, render, find a model's template, and
 * the built-in fallback templates.
 *
 * DESIGN
 * ------
 * The compiled template (tokens + AST + constants) lives in one arena and is
 * read-only afterwards, so renders from many threads may share it. A render
 * builds its whole state (context values, scopes, temporaries) in a private
 * arena that is dropped when it returns; only the output string is handed to
 * the caller. Context variables match transformers: messages, tools (None when
 * absent), documents (None), add_generation_prompt, bos_token / eos_token when
 * known, then the caller's extra variables.
 */
#include <jansson.h>
#include <string.h>

#include "jinja_int.h"
#include "tm/tm_chat_template.h"
#include "tm/tm_gguf.h"
#include "tm/tm_io.h"

#define CT_MAX_TEMPLATE_BYTES ((size_t)4 << 20)
#define CT_MAX_CONFIG_BYTES ((size_t)64 << 20)

struct tm_chat_template {
    jj_template t;
};

tm_chat_template_params tm_chat_template_params_default(void) {
    return (tm_chat_template_params){.source = NULL, .source_len = 0, .name = "template"};
}

tm_chat_render_params tm_chat_render_params_default(void) {
    return (tm_chat_render_params){
        .max_output_bytes = (size_t)16 << 20,
        .max_steps = 10000000,
        .max_depth = 200,
        .max_memory_bytes = (size_t)256 << 20,
    };
}

void tm_chat_template_free(tm_chat_template *t) {
    if (t == NULL)
        return;
    tm__jj_arena_free(&t->t.arena);
    tm_free(t->t.name);
    tm_free(t);
}

tm_status tm_chat_template_init(const tm_chat_template_params *params, tm_chat_template **out) {
    tm_status         st;
    tm_chat_template *t = NULL;
    jj_tokens         toks = {0};
    *out = NULL;
    if (params == NULL || params->source == NULL)
        return tm_fail(TM_ERR_INVALID, "chat template: no source text");
    size_t len = params->source_len ? params->source_len : strlen(params->source);
    if (len > CT_MAX_TEMPLATE_BYTES)
        return tm_fail(TM_ERR_FORMAT, "chat template: %zu bytes exceeds the %zu byte limit", len,
                       CT_MAX_TEMPLATE_BYTES);
    t = tm_calloc(1, sizeof *t);
    if (t == NULL)
        return tm_fail(TM_ERR_NOMEM, "chat template: out of memory");
    t->t.name = tm_strdup(params->name ? params->name : "template");
    if (t->t.name == NULL) {
        st = tm_fail(TM_ERR_NOMEM, "chat template: out of memory");
        goto fail;
    }
    t->t.arena.limit_bytes = (size_t)256 << 20;
    st = tm__jj_lex(&t->t.arena, t->t.name, params->source, len, &toks);
    if (st != TM_OK)
        goto fail;
    st = tm__jj_parse(&t->t.arena, t->t.name, &toks, &t->t.root);
    if (st != TM_OK)
        goto fail;
    *out = t;
    return TM_OK;
fail:
    tm_chat_template_free(t);
    return st;
}

/* ---- JSON to values --------------------------------------------------------- */
static tm_status from_json(jj_ctx *c, json_t *j, int depth, jv *out) {
    if (depth > 256)
        return tm_fail(TM_ERR_FORMAT, "chat template: JSON nested too deeply");
    switch (json_typeof(j)) {
    case JSON_NULL: *out = jv_none(); return TM_OK;
    case JSON_TRUE: *out = jv_bool(true); return TM_OK;
    case JSON_FALSE: *out = jv_bool(false); return TM_OK;
    case JSON_INTEGER: *out = jv_int((int64_t)json_integer_value(j)); return TM_OK;
    case JSON_REAL: *out = jv_float(json_real_value(j)); return TM_OK;
    case JSON_STRING: return tm__jj_str_dup(c, json_string_value(j), json_string_length(j), out);
    case JSON_ARRAY: {
        jj_list *l = tm__jj_list_new(c, json_array_size(j));
        if (l == NULL)
            return tm__jj_nomem(c);
        for (size_t i = 0; i < json_array_size(j); i++)
            TM_TRY(from_json(c, json_array_get(j, i), depth + 1, &l->v[l->n++]));
        *out = (jv){.type = JV_LIST, .u.l = l};
        return TM_OK;
    }
    case JSON_OBJECT: {
        jj_dict    *d = tm__jj_dict_new(c, json_object_size(j));
        const char *k;
        json_t     *v;
        if (d == NULL)
            return tm__jj_nomem(c);
        /* jansson iterates objects in insertion order: the template sees the
         * keys in file order, as Python's json.loads gives them. */
        json_object_foreach(j, k, v) {
            jv kv, vv;
            TM_TRY(tm__jj_str_dup(c, k, strlen(k), &kv));
            TM_TRY(from_json(c, v, depth + 1, &vv));
            TM_TRY(tm__jj_dict_set(c, d, kv, vv));
        }
        *out = (jv){.type = JV_DICT, .u.d = d};
        return TM_OK;
    }
    }
    return tm_fail(TM_ERR_FORMAT, "chat template: unsupported JSON value");
}

static tm_status parse_json_var(jj_ctx *c, const char *what, const char *text, json_type want,
                                jv *out) {
    json_error_t err;
    json_t      *j = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
    if (j == NULL)
        return tm_fail(TM_ERR_FORMAT, "chat template: %s JSON: %s at line %d column %d", what,
                       err.text, err.line, err.column);
    if (json_typeof(j) != want) {
        json_decref(j);
        return tm_fail(TM_ERR_FORMAT, "chat template: %s must be a JSON %s", what,
                       want == JSON_ARRAY ? "array" : "object");
    }
    tm_status st = from_json(c, j, 0, out);
    json_decref(j);
    return st;
}

static tm_status set_var(jj_ctx *c, const char *name, jv v) {
    return tm__jj_dict_set(c, &c->root->vars, jv_strn(name, strlen(name)), v);
}

tm_status tm_chat_template_render(const tm_chat_template *t, const tm_chat_render_params *p,
                                  char **out, size_t *out_len) {
    tm_status st;
    jj_buf    buf = {0};
    jj_ctx    c = {0};
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (t == NULL || p == NULL || p->messages_json == NULL)
        return tm_fail(TM_ERR_INVALID, "chat template render: template and messages required");
    tm_chat_render_params d = tm_chat_render_params_default();
    c.lim.max_output_bytes = p->max_output_bytes ? p->max_output_bytes : d.max_output_bytes;
    c.lim.max_steps = p->max_steps > 0 ? p->max_steps : d.max_steps;
    c.lim.max_depth = p->max_depth > 0 ? p->max_depth : d.max_depth;
    c.lim.max_memory_bytes = p->max_memory_bytes ? p->max_memory_bytes : d.max_memory_bytes;
    c.arena.limit_bytes = c.lim.max_memory_bytes;
    c.name = t->t.name;
    buf.limit = c.lim.max_output_bytes;
    c.out = &buf;
    c.root = tm__jj_alloc(&c.arena, sizeof *c.root);
    if (c.root == NULL) {
        st = tm_fail(TM_ERR_NOMEM, "chat template: out of memory");
        goto done;
    }

    jv v;
    if ((st = parse_json_var(&c, "messages", p->messages_json, JSON_ARRAY, &v)) != TM_OK ||
        (st = set_var(&c, "messages", v)) != TM_OK)
        goto done;
    v = jv_none();
    if (p->tools_json != NULL &&
        (st = parse_json_var(&c, "tools", p->tools_json, JSON_ARRAY, &v)) != TM_OK)
        goto done;
    if ((st = set_var(&c, "tools", v)) != TM_OK ||
        (st = set_var(&c, "documents", jv_none())) != TM_OK ||
        (st = set_var(&c, "add_generation_prompt", jv_bool(p->add_generation_prompt))) != TM_OK)
        goto done;
    const char *tok_names[2] = {"bos_token", "eos_token"};
    const char *tok_vals[2] = {p->bos_token, p->eos_token};
    for (int i = 0; i < 2; i++) {
        if (tok_vals[i] == NULL)
            continue;
        if ((st = tm__jj_str_dup(&c, tok_vals[i], strlen(tok_vals[i]), &v)) != TM_OK ||
            (st = set_var(&c, tok_names[i], v)) != TM_OK)
            goto done;
    }
    if (p->extra_json != NULL) {
        if ((st = parse_json_var(&c, "extra variables", p->extra_json, JSON_OBJECT, &v)) != TM_OK)
            goto done;
        for (size_t i = 0; i < v.u.d->n; i++)
            if ((st = tm__jj_dict_set(&c, &c.root->vars, v.u.d->k[i], v.u.d->v[i])) != TM_OK)
                goto done;
    }

    st = tm__jj_render(&c, t->t.root);
    if (st != TM_OK)
        goto done;
    if (buf.p == NULL && (st = tm__jj_buf_put(&buf, "", 0)) == TM_OK) {
        buf.p = tm_malloc(1);
        if (buf.p == NULL) {
            st = tm_fail(TM_ERR_NOMEM, "chat template: out of memory");
            goto done;
        }
        buf.p[0] = '\0';
    }
    *out = buf.p;
    if (out_len)
        *out_len = buf.n;
    buf.p = NULL;
done:
    tm__jj_buf_free(&buf);
    tm__jj_arena_free(&c.arena);
    return st;
}

/* ---- sources ---------------------------------------------------------------- */
void tm_chat_template_source_free(tm_chat_template_source *s) {
    if (s == NULL)
        return;
    tm_free(s->text);
    tm_free(s->bos_token);
    tm_free(s->eos_token);
    tm_free(s->origin);
    *s = (tm_chat_template_source){0};
}

static char *join_path(const char *dir, const char *file) {
    size_t a = strlen(dir), b = strlen(file);
    char  *p = tm_malloc(a + b + 2);
    if (p != NULL)
        snprintf(p, a + b + 2, "%s/%s", dir, file);
    return p;
}

static char *fmt_origin(const char *path, const char *what) {
    size_t n = strlen(path) + strlen(what) + 2;
    char  *p = tm_malloc(n);
    if (p != NULL)
        snprintf(p, n, "%s:%s", path, what);
    return p;
}

/* A special token in tokenizer_config.json: a string or {"content": ...}. */
static char *config_token(json_t *cfg, const char *key) {
    json_t *v = json_object_get(cfg, key);
    if (json_is_object(v))
        v = json_object_get(v, "content");
    return json_is_string(v) ? tm_strdup(json_string_value(v)) : NULL;
}

static tm_status load_config(const char *path, bool want_tool_use, tm_chat_template_source *out) {
    char        *text = NULL;
    size_t       len = 0;
    json_error_t err;
    TM_TRY(tm_file_read_all(path, CT_MAX_CONFIG_BYTES, &text, &len));
    json_t *cfg = json_loadb(text, len, JSON_DECODE_INT_AS_REAL, &err);
    tm_free(text);
    if (cfg == NULL)
        return tm_fail(TM_ERR_FORMAT, "%s: JSON error at line %d: %s", path, err.line, err.text);
    tm_status   st = TM_OK;
    json_t     *ct = json_object_get(cfg, "chat_template");
    const char *chosen = NULL, *which = "chat_template";
    if (json_is_string(ct)) {
        chosen = json_string_value(ct);
    } else if (json_is_array(ct)) {
        /* [{name, template}]: tool_use when tools are given and it exists, else default. */
        const char *dflt = NULL, *tool = NULL;
        size_t      i;
        json_t     *e;
        json_array_foreach(ct, i, e) {
            const char *n = json_string_value(json_object_get(e, "name"));
            const char *tx = json_string_value(json_object_get(e, "template"));
            if (n == NULL || tx == NULL)
                continue;
            if (strcmp(n, "default") == 0)
                dflt = tx;
            if (strcmp(n, "tool_use") == 0)
                tool = tx;
        }
        if (want_tool_use && tool != NULL) {
            chosen = tool;
            which = "chat_template[tool_use]";
        } else {
            chosen = dflt;
            which = "chat_template[default]";
        }
    }
    if (chosen == NULL) {
        st = tm_fail(TM_ERR_NOT_FOUND, "%s: no chat_template", path);
        goto done;
    }
    out->text = tm_strdup(chosen);
    out->origin = fmt_origin(path, which);
    out->bos_token = config_token(cfg, "bos_token");
    out->eos_token = config_token(cfg, "eos_token");
    if (out->text == NULL || out->origin == NULL)
        st = tm_fail(TM_ERR_NOMEM, "out of memory");
done:
    json_decref(cfg);
    if (st != TM_OK)
        tm_chat_template_source_free(out);
    return st;
}

static tm_status load_text(const char *path, tm_chat_template_source *out) {
    size_t len;
    TM_TRY(tm_file_read_all(path, CT_MAX_TEMPLATE_BYTES, &out->text, &len));
    out->origin = tm_strdup(path);
    if (out->origin == NULL) {
        tm_chat_template_source_free(out);
        return tm_fail(TM_ERR_NOMEM, "out of memory");
    }
    return TM_OK;
}

static char *gguf_token(const tm_gguf *g, const char *id_key) {
    int64_t id;
    if (tm_gguf_get_int(g, id_key, &id) != TM_OK)
        return NULL;
    int64_t k = tm_gguf_find_key(g, "tokenizer.ggml.tokens");
    if (k < 0 || tm_gguf_kv_type(g, k) != TM_GGUF_TYPE_ARRAY ||
        tm_gguf_kv_arr_type(g, k) != TM_GGUF_TYPE_STRING || id < 0 ||
        (uint64_t)id >= tm_gguf_kv_arr_n(g, k))
        return NULL;
    tm_strview s = tm_gguf_kv_arr_str(g, k, (uint64_t)id);
    return tm_strndup(s.ptr, s.len);
}

static tm_status load_gguf(const char *path, bool want_tool_use, tm_chat_template_source *out) {
    tm_gguf    *g = NULL;
    tm_strview  sv;
    const char *key = "tokenizer.chat_template";
    TM_TRY(tm_gguf_open(path, &g));
    tm_status st = TM_ERR_NOT_FOUND;
    if (want_tool_use && tm_gguf_get_str(g, "tokenizer.chat_template.tool_use", &sv) == TM_OK) {
        key = "tokenizer.chat_template.tool_use";
        st = TM_OK;
    }
    if (st != TM_OK)
        st = tm_gguf_get_str(g, key, &sv);
    if (st != TM_OK) {
        st = tm_fail(TM_ERR_NOT_FOUND, "%s: no %s", path, key);
        goto done;
    }
    out->text = tm_strndup(sv.ptr, sv.len);
    out->origin = fmt_origin(path, key);
    out->bos_token = gguf_token(g, "tokenizer.ggml.bos_token_id");
    out->eos_token = gguf_token(g, "tokenizer.ggml.eos_token_id");
    if (out->text == NULL || out->origin == NULL)
        st = tm_fail(TM_ERR_NOMEM, "out of memory");
done:
    tm_gguf_close(g);
    if (st != TM_OK)
        tm_chat_template_source_free(out);
    return st;
}

static bool ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

tm_status tm_chat_template_source_load(const char *path, bool want_tool_use,
                                       tm_chat_template_source *out) {
    *out = (tm_chat_template_source){0};
    if (path == NULL)
        return tm_fail(TM_ERR_INVALID, "chat template source: no path");
    if (tm_path_is_dir(path)) {
        char     *cfg = join_path(path, "tokenizer_config.json");
        char     *jin = join_path(path, "chat_template.jinja");
        tm_status st;
        if (cfg == NULL || jin == NULL) {
            st = tm_fail(TM_ERR_NOMEM, "out of memory");
        } else if (tm_path_is_file(jin)) {
            /* Newer transformers save the template beside the config; it wins. */
            st = load_text(jin, out);
            if (st == TM_OK && tm_path_is_file(cfg)) {
                tm_chat_template_source tmp = {0};
                if (load_config(cfg, false, &tmp) == TM_OK || tmp.text == NULL) {
                    out->bos_token = tmp.bos_token;
                    out->eos_token = tmp.eos_token;
                    tmp.bos_token = tmp.eos_token = NULL;
                }
                tm_chat_template_source_free(&tmp);
                tm_clear_error();
            }
        } else if (tm_path_is_file(cfg)) {
            st = load_config(cfg, want_tool_use, out);
        } else {
            st = tm_fail(TM_ERR_NOT_FOUND, "%s: no tokenizer_config.json or chat_template.jinja",
                         path);
        }
        tm_free(cfg);
        tm_free(jin);
        return st;
    }
    if (!tm_path_is_file(path))
        return tm_fail(TM_ERR_NOT_FOUND, "%s: no such file", path);
    if (ends_with(path, ".gguf"))
        return load_gguf(path, want_tool_use, out);
    if (ends_with(path, ".json"))
        return load_config(path, want_tool_use, out);
    /* Sniff: GGUF magic, JSON object, else template text. */
    char     *head = NULL;
    size_t    n = 0;
    tm_status st = tm_file_read_all(path, CT_MAX_CONFIG_BYTES, &head, &n);
    if (st != TM_OK)
        return st;
    bool   is_gguf = n >= 4 && memcmp(head, "GGUF", 4) == 0;
    size_t i = 0;
    while (i < n && (head[i] == ' ' || head[i] == '\n' || head[i] == '\t' || head[i] == '\r'))
        i++;
    bool is_json = i < n && head[i] == '{' && strstr(head, "\"chat_template\"") != NULL;
    tm_free(head);
    if (is_gguf)
        return load_gguf(path, want_tool_use, out);
    if (is_json)
        return load_config(path, want_tool_use, out);
    return load_text(path, out);
}

/* ---- built-in templates ----------------------------------------------------- */
static const char *const builtin_names[TM_CHAT_BUILTIN_COUNT] = {"chatml", "llama2", "llama3",
                                                                 "zephyr"};

static const char *const builtin_texts[TM_CHAT_BUILTIN_COUNT] = {
    /* ChatML, as OpenHermes / Qwen-1.5 style models ship it. */
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}",
    /* Llama-2-chat: system folded into the first user turn. */
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    "{% set system_message = messages[0]['content'] %}{% else %}"
    "{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + "
    "message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
    "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}"
    "{% endif %}{% endfor %}",
    /* Llama-3-instruct. */
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
    "message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{% endif %}",
    /* Zephyr. */
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n"
    "{{ '<|user|>\\n' + message['content'] + eos_token }}\n"
    "{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + "
    "eos_token }}\n{% elif message['role'] == 'assistant' %}\n"
    "{{ '<|assistant|>\\n' + message['content'] + eos_token }}\n{% endif %}\n"
    "{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
    "{% endfor %}",
};

const char *tm_chat_builtin_text(tm_chat_builtin which) {
    if ((int)which < 0 || which >= TM_CHAT_BUILTIN_COUNT)
        return NULL;
    return builtin_texts[which];
}

tm_status tm_chat_builtin_from_name(const char *name, tm_chat_builtin *out) {
    for (int i = 0; i < TM_CHAT_BUILTIN_COUNT; i++)
        if (name != NULL && strcmp(name, builtin_names[i]) == 0) {
            *out = (tm_chat_builtin)i;
            return TM_OK;
        }
    return tm_fail(TM_ERR_NOT_FOUND, "no built-in chat template named '%s'",
                   name ? name : "(null)");
}
