/*
 * openai.c - the OpenAI request and response shapes: parse and validate
 * /v1/chat/completions and /v1/completions bodies into tm_api_request, and
 * serialize responses, streaming chunks and errors.
 *
 * Validation happens here, before the server sends any status line, so that
 * every client error is a 400 with OpenAI's error body (never a 200 stream
 * that then fails). Unknown fields are ignored (vLLM, llama.cpp and Ollama do
 * the same); fields we know but do not implement yet (tools, chat echo,
 * non-text response_format, image parts) are refused by name so a client never
 * silently gets something else than it asked for.
 *
 * Pure functions over their arguments: any thread.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server_int.h"
#include "tm/tm_server.h"

tm_status tm_api_error_set(tm_api_error *err, int http_status, const char *type, const char *param,
                           const char *code, const char *fmt, ...) {
    err->http_status = http_status;
    snprintf(err->type, sizeof err->type, "%s", type ? type : "invalid_request_error");
    snprintf(err->param, sizeof err->param, "%s", param ? param : "");
    snprintf(err->code, sizeof err->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return TM_ERR_INVALID;
}

/* Replaces invalid UTF-8 (which jansson refuses to store) with U+FFFD. Returns
 * a new string; caller tm_free()s. */
static char *api_utf8_clean(const char *s, size_t n, size_t *out_len) {
    size_t cap;
    if (!tm_size_mul(n, 3, &cap) || !tm_size_add(cap, 1, &cap))
        return NULL;
    char *o = tm_malloc(cap);
    if (o == NULL)
        return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool   ok = k > 0 && i + k <= n && c != 0;
        for (size_t m = 1; ok && m < k; m++)
            ok = ((unsigned char)s[i + m] >> 6) == 2;
        if (ok && k == 2)
            ok = c >= 0xc2;
        if (ok && k == 3) {
            unsigned cp = ((c & 0xfu) << 12) | (((unsigned char)s[i + 1] & 0x3fu) << 6) |
                          ((unsigned char)s[i + 2] & 0x3fu);
            ok = cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff);
        }
        if (ok && k == 4) {
            unsigned cp = ((c & 0x7u) << 18) | (((unsigned char)s[i + 1] & 0x3fu) << 12);
            ok = cp >= 0x10000 && cp <= 0x10ffff;
        }
        if (ok) {
            memcpy(o + j, s + i, k);
            j += k;
            i += k;
        } else {
            memcpy(o + j, "\xef\xbf\xbd", 3);
            j += 3;
            i += 1;
        }
    }
    o[j] = '\0';
    *out_len = j;
    return o;
}

/* A JSON string from bytes that should be UTF-8; never fails on bad bytes. */
static json_t *api_jstr(const char *s, size_t n) {
    if (s == NULL)
        return json_string("");
    json_t *j = json_stringn(s, n);
    if (j != NULL)
        return j;
    size_t cl = 0;
    char  *c = api_utf8_clean(s, n, &cl);
    if (c == NULL)
        return NULL;
    j = json_stringn(c, cl);
    tm_free(c);
    return j;
}

static char *api_dump(json_t *j) {
    if (j == NULL)
        return NULL;
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (s == NULL)
        return NULL;
    char *o = tm_strdup(s); /* one allocator for every string we hand out */
    free(s);
    return o;
}

char *tm_api_error_json(const tm_api_error *err) {
    json_t *e = json_object();
    json_object_set_new(e, "message", api_jstr(err->message, strlen(err->message)));
    json_object_set_new(e, "type", json_string(err->type));
    json_object_set_new(e, "param", err->param[0] ? json_string(err->param) : json_null());
    json_object_set_new(e, "code", err->code[0] ? json_string(err->code) : json_null());
    json_t *root = json_object();
    json_object_set_new(root, "error", e);
    return api_dump(root);
}

void tm_api_request_free(tm_api_request *r) {
    tm_free(r->model);
    tm_free(r->messages_json);
    tm_free(r->prompt);
    tm_free(r->prompt_ids);
    for (int i = 0; i < TM_SCHED_MAX_STOP; i++)
        tm_free(r->stop[i]);
    memset(r, 0, sizeof *r);
}

/* ---- field readers: each returns TM_OK, or TM_ERR_INVALID with *err set ------- */

static bool api_absent(const json_t *v) { return v == NULL || json_is_null(v); }

static tm_status api_get_number(json_t *o, const char *key, double lo, double hi, float *dst,
                                tm_api_error *err) {
    json_t *v = json_object_get(o, key);
    if (api_absent(v))
        return TM_OK;
    double d = json_is_number(v) ? json_number_value(v) : NAN;
    if (!(d >= lo && d <= hi))
        return tm_api_error_set(err, 400, NULL, key, NULL, "'%s' must be a number in [%g, %g]", key,
                                lo, hi);
    *dst = (float)d;
    return TM_OK;
}

static tm_status api_get_int(json_t *o, const char *key, long long lo, long long hi, int32_t *dst,
                             tm_api_error *err) {
    json_t *v = json_object_get(o, key);
    if (api_absent(v))
        return TM_OK;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return tm_api_error_set(err, 400, NULL, key, NULL,
                                "'%s' must be an integer in [%lld, %lld]", key, lo, hi);
    *dst = (int32_t)json_integer_value(v);
    return TM_OK;
}

static tm_status api_get_bool(json_t *o, const char *key, bool *dst, tm_api_error *err) {
    json_t *v = json_object_get(o, key);
    if (api_absent(v))
        return TM_OK;
    if (!json_is_boolean(v))
        return tm_api_error_set(err, 400, NULL, key, NULL, "'%s' must be a boolean", key);
    *dst = json_is_true(v);
    return TM_OK;
}

static tm_status api_unsupported(tm_api_error *err, const char *key, const char *what) {
    return tm_api_error_set(err, 400, NULL, key, "unsupported_parameter",
                            "'%s': %s is not supported by this server yet", key, what);
}

/* Joins a message's content (string, null or text parts) into one string. */
static tm_status api_content_text(json_t *content, int idx, json_t **out, tm_api_error *err) {
    char param[48];
    snprintf(param, sizeof param, "messages[%d].content", idx);
    if (api_absent(content)) {
        *out = json_string("");
        return TM_OK;
    }
    if (json_is_string(content)) {
        *out = json_incref(content);
        return TM_OK;
    }
    if (!json_is_array(content))
        return tm_api_error_set(err, 400, NULL, param, NULL,
                                "'%s' must be a string or an array of content parts", param);
    size_t  total = 0, i;
    json_t *part;
    json_array_foreach(content, i, part) {
        json_t *type = json_object_get(part, "type");
        json_t *text = json_object_get(part, "text");
        if (!json_is_object(part) || !json_is_string(type))
            return tm_api_error_set(err, 400, NULL, param, NULL,
                                    "'%s[%zu]' must be an object with a 'type'", param, i);
        if (strcmp(json_string_value(type), "text") != 0)
            return api_unsupported(err, param, "a content part other than text");
        if (!json_is_string(text))
            return tm_api_error_set(err, 400, NULL, param, NULL, "'%s[%zu].text' must be a string",
                                    param, i);
        total += json_string_length(text);
    }
    char *joined = tm_malloc(total + 1);
    if (joined == NULL)
        return tm_api_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    size_t off = 0;
    json_array_foreach(content, i, part) {
        json_t *text = json_object_get(part, "text");
        memcpy(joined + off, json_string_value(text), json_string_length(text));
        off += json_string_length(text);
    }
    *out = json_stringn(joined, off);
    tm_free(joined);
    return *out ? TM_OK : tm_api_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
}

static tm_status api_parse_messages(json_t *root, tm_api_request *r, tm_api_error *err) {
    json_t *msgs = json_object_get(root, "messages");
    if (msgs == NULL)
        return tm_api_error_set(err, 400, NULL, "messages", "missing_required_parameter",
                                "missing required parameter 'messages'");
    if (!json_is_array(msgs) || json_array_size(msgs) == 0)
        return tm_api_error_set(err, 400, NULL, "messages", NULL,
                                "'messages' must be a non-empty array");
    static const char *const roles[] = {"system", "developer", "user", "assistant", "tool"};
    json_t                  *out = json_array();
    size_t                   i;
    json_t                  *m;
    json_array_foreach(msgs, i, m) {
        char param[40];
        snprintf(param, sizeof param, "messages[%zu]", i);
        json_t *role = json_object_get(m, "role");
        bool    known = false;
        if (!json_is_object(m) || !json_is_string(role)) {
            json_decref(out);
            return tm_api_error_set(err, 400, NULL, param, NULL,
                                    "'%s' must be an object with a string 'role'", param);
        }
        for (size_t k = 0; k < sizeof roles / sizeof roles[0]; k++)
            known |= strcmp(json_string_value(role), roles[k]) == 0;
        if (!known) {
            json_decref(out);
            return tm_api_error_set(err, 400, NULL, param, NULL,
                                    "'%s.role' must be one of system, developer, user, assistant, "
                                    "tool",
                                    param);
        }
        json_t *text = NULL;
        if (api_content_text(json_object_get(m, "content"), (int)i, &text, err) != TM_OK) {
            json_decref(out);
            return TM_ERR_INVALID;
        }
        json_t *nm = json_object();
        json_object_set(nm, "role", role);
        json_object_set_new(nm, "content", text);
        json_t *name = json_object_get(m, "name");
        if (json_is_string(name))
            json_object_set(nm, "name", name);
        json_array_append_new(out, nm);
    }
    char *s = api_dump(out);
    if (s == NULL)
        return tm_api_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    r->messages_json = s;
    return TM_OK;
}

static tm_status api_parse_prompt(json_t *root, tm_api_request *r, tm_api_error *err) {
    json_t *p = json_object_get(root, "prompt");
    if (p == NULL)
        return tm_api_error_set(err, 400, NULL, "prompt", "missing_required_parameter",
                                "missing required parameter 'prompt'");
    /* ["text"] and [[1,2,3]] are a batch of one prompt. */
    if (json_is_array(p) && json_array_size(p) == 1 &&
        (json_is_string(json_array_get(p, 0)) || json_is_array(json_array_get(p, 0))))
        p = json_array_get(p, 0);
    if (json_is_string(p)) {
        r->prompt = tm_strndup(json_string_value(p), json_string_length(p));
        r->prompt_len = json_string_length(p);
        if (r->prompt == NULL)
            return tm_api_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        return TM_OK;
    }
    if (!json_is_array(p) || json_array_size(p) == 0)
        return tm_api_error_set(err, 400, NULL, "prompt", NULL,
                                "'prompt' must be a string, an array of token ids, or a batch of "
                                "one of those");
    size_t n = json_array_size(p);
    if (n > INT32_MAX / 2)
        return tm_api_error_set(err, 400, NULL, "prompt", NULL, "'prompt' is too long");
    r->prompt_ids = tm_calloc(n, sizeof *r->prompt_ids);
    if (r->prompt_ids == NULL)
        return tm_api_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(p, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX) {
            if (json_is_string(v) || json_is_array(v))
                return api_unsupported(err, "prompt", "a batch of several prompts");
            return tm_api_error_set(err, 400, NULL, "prompt", NULL,
                                    "'prompt[%zu]' must be a non-negative token id", i);
        }
        r->prompt_ids[i] = (int32_t)json_integer_value(v);
    }
    r->n_prompt_ids = (int32_t)n;
    return TM_OK;
}

static tm_status api_parse_stop(json_t *root, tm_api_request *r, tm_api_error *err) {
    json_t *s = json_object_get(root, "stop");
    if (api_absent(s))
        return TM_OK;
    json_t *one = json_is_string(s) ? s : NULL;
    size_t  n = one ? 1 : json_is_array(s) ? json_array_size(s) : SIZE_MAX;
    if (n == SIZE_MAX || n > TM_SCHED_MAX_STOP)
        return tm_api_error_set(err, 400, NULL, "stop", NULL,
                                "'stop' must be a string or an array of at most %d strings",
                                TM_SCHED_MAX_STOP);
    for (size_t i = 0; i < n; i++) {
        json_t *v = one ? one : json_array_get(s, i);
        if (!json_is_string(v))
            return tm_api_error_set(err, 400, NULL, "stop", NULL, "'stop[%zu]' must be a string",
                                    i);
        if (json_string_length(v) == 0)
            continue; /* an empty stop string would stop before the first token */
        if (strlen(json_string_value(v)) != json_string_length(v))
            return tm_api_error_set(err, 400, NULL, "stop", NULL,
                                    "'stop[%zu]' must not contain NUL", i);
        r->stop[r->n_stop] = tm_strdup(json_string_value(v));
        if (r->stop[r->n_stop] == NULL)
            return tm_api_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        r->n_stop++;
    }
    return TM_OK;
}

/* logit_bias, logprobs, top_logprobs. Token ids are checked against n_vocab. */
static tm_status api_parse_ext(tm_api_kind kind, json_t *root, int32_t n_vocab, tm__api_ext *ext,
                               tm_api_error *err) {
    ext->n_bias = 0;
    ext->logprobs = -1;
    json_t *v = json_object_get(root, "logit_bias");
    if (!api_absent(v)) {
        if (!json_is_object(v))
            return tm_api_error_set(err, 400, NULL, "logit_bias", NULL,
                                    "'logit_bias' must be an object mapping token ids to biases");
        if (json_object_size(v) > TM__API_MAX_BIAS)
            return tm_api_error_set(err, 400, NULL, "logit_bias", NULL,
                                    "'logit_bias' has %zu entries; at most %d are allowed",
                                    json_object_size(v), TM__API_MAX_BIAS);
        const char *key;
        json_t     *b;
        json_object_foreach(v, key, b) {
            char     *end = NULL;
            long long id = strtoll(key, &end, 10);
            if (key[0] < '0' || key[0] > '9' || end == key || *end != '\0' || strlen(key) > 10)
                return tm_api_error_set(err, 400, NULL, "logit_bias", NULL,
                                        "'logit_bias' key '%.40s' is not a token id", key);
            if (id >= n_vocab)
                return tm_api_error_set(err, 400, NULL, "logit_bias", NULL,
                                        "'logit_bias' token id %lld is outside the vocabulary "
                                        "[0, %d)",
                                        id, n_vocab);
            double d = json_is_number(b) ? json_number_value(b) : NAN;
            if (!(d >= -100.0 && d <= 100.0))
                return tm_api_error_set(err, 400, NULL, "logit_bias", NULL,
                                        "'logit_bias[\"%s\"]' must be a number in [-100, 100]",
                                        key);
            ext->bias_id[ext->n_bias] = (int32_t)id;
            ext->bias[ext->n_bias++] = (float)d;
        }
    }
    v = json_object_get(root, "logprobs");
    json_t *top = json_object_get(root, "top_logprobs");
    if (kind == TM_API_COMPLETION) { /* OpenAI allows 0..5; vLLM 0..20 (its max_logprobs) */
        if (!api_absent(v)) {
            if (!json_is_integer(v) || json_integer_value(v) < 0 ||
                json_integer_value(v) > TM_SAMPLER_MAX_LOGPROBS)
                return tm_api_error_set(err, 400, NULL, "logprobs", NULL,
                                        "'logprobs' must be an integer in [0, %d]",
                                        TM_SAMPLER_MAX_LOGPROBS);
            ext->logprobs = (int32_t)json_integer_value(v);
        }
        return TM_OK;
    }
    bool on = false;
    TM_TRY(api_get_bool(root, "logprobs", &on, err));
    int32_t n_top = 0;
    TM_TRY(api_get_int(root, "top_logprobs", 0, TM_SAMPLER_MAX_LOGPROBS, &n_top, err));
    if (!api_absent(top) && !on)
        return tm_api_error_set(err, 400, NULL, "top_logprobs", NULL,
                                "'top_logprobs' requires 'logprobs' to be true");
    if (on)
        ext->logprobs = n_top;
    return TM_OK;
}

tm_status tm__api_parse_ext(tm_api_kind kind, const char *body, size_t len, int32_t n_vocab,
                            tm__api_ext *ext, tm_api_error *err) {
    json_error_t jerr;
    json_t      *root = json_loadb(body, len, 0, &jerr);
    if (root == NULL || !json_is_object(root)) {
        json_decref(root);
        return tm_api_error_set(err, 400, NULL, NULL, "invalid_json", "request body is not valid");
    }
    tm_status st = api_parse_ext(kind, root, n_vocab, ext, err);
    json_decref(root);
    return st;
}

static tm_status api_parse_fields(tm_api_kind kind, json_t *root, tm_api_request *r,
                                  tm_api_error *err) {
    json_t *model = json_object_get(root, "model");
    if (model == NULL)
        return tm_api_error_set(err, 400, NULL, "model", "missing_required_parameter",
                                "missing required parameter 'model'");
    if (!json_is_string(model))
        return tm_api_error_set(err, 400, NULL, "model", NULL, "'model' must be a string");
    r->model = tm_strdup(json_string_value(model));
    if (r->model == NULL)
        return tm_api_error_set(err, 500, "server_error", NULL, NULL, "out of memory");

    TM_TRY(kind == TM_API_CHAT ? api_parse_messages(root, r, err) : api_parse_prompt(root, r, err));

    TM_TRY(api_get_bool(root, "stream", &r->stream, err));
    json_t *so = json_object_get(root, "stream_options");
    if (!api_absent(so)) {
        if (!json_is_object(so))
            return tm_api_error_set(err, 400, NULL, "stream_options", NULL,
                                    "'stream_options' must be an object");
        TM_TRY(api_get_bool(so, "include_usage", &r->include_usage, err));
    }
    TM_TRY(api_get_int(root, "n", 1, TM_API_MAX_N, &r->n, err));
    /* completions: 0 scores the echoed prompt without generating (checked below) */
    TM_TRY(api_get_int(root, "max_tokens", kind == TM_API_COMPLETION ? 0 : 1, INT32_MAX,
                       &r->max_tokens, err));
    TM_TRY(api_get_int(root, "max_completion_tokens", 1, INT32_MAX, &r->max_tokens, err));
    TM_TRY(api_get_number(root, "temperature", 0, 2, &r->sampler.temp, err));
    TM_TRY(api_get_number(root, "top_p", 0, 1, &r->sampler.top_p, err));
    TM_TRY(api_get_int(root, "top_k", -1, INT32_MAX, &r->sampler.top_k, err));
    TM_TRY(api_get_number(root, "min_p", 0, 1, &r->sampler.min_p, err));
    TM_TRY(api_get_number(root, "presence_penalty", -2, 2, &r->sampler.presence_penalty, err));
    TM_TRY(api_get_number(root, "frequency_penalty", -2, 2, &r->sampler.frequency_penalty, err));
    TM_TRY(api_get_number(root, "repetition_penalty", 0.01, 10, &r->sampler.repeat_penalty, err));
    if (r->sampler.top_k < 0)
        r->sampler.top_k = 0;
    json_t *seed = json_object_get(root, "seed");
    if (!api_absent(seed)) {
        if (!json_is_integer(seed))
            return tm_api_error_set(err, 400, NULL, "seed", NULL, "'seed' must be an integer");
        r->sampler.seed = (uint64_t)json_integer_value(seed);
        r->has_seed = true;
    }
    TM_TRY(api_parse_stop(root, r, err));
    TM_TRY(api_get_bool(root, "ignore_eos", &r->ignore_eos, err));
    if (kind == TM_API_CHAT)
        TM_TRY(api_get_bool(root, "add_generation_prompt", &r->add_generation_prompt, err));

    {
        tm__api_ext ext; /* validated here (ids unchecked); read again by tm__api_parse_ext */
        TM_TRY(api_parse_ext(kind, root, INT32_MAX, &ext, err));
    }
    json_t *v = json_object_get(root, "echo");
    if (kind == TM_API_COMPLETION)
        TM_TRY(api_get_bool(root, "echo", &r->echo, err));
    else if (!api_absent(v) && !json_is_false(v))
        return api_unsupported(err, "echo", "echoing the prompt in chat");
    if (r->max_tokens == 0 && !r->echo) /* as vLLM: nothing to return otherwise */
        return tm_api_error_set(err, 400, NULL, "max_tokens", NULL,
                                "'max_tokens' must be at least 1 (0 is allowed with 'echo': true, "
                                "to score the prompt)");
    v = json_object_get(root, "tools");
    if (!api_absent(v) && !(json_is_array(v) && json_array_size(v) == 0))
        return api_unsupported(err, "tools", "tool calling");
    v = json_object_get(root, "best_of");
    if (!api_absent(v) && !(json_is_integer(v) && json_integer_value(v) == 1))
        return api_unsupported(err, "best_of", "best_of other than 1");
    v = json_object_get(root, "response_format");
    if (!api_absent(v)) {
        json_t *t = json_is_object(v) ? json_object_get(v, "type") : NULL;
        if (!json_is_string(t))
            return tm_api_error_set(err, 400, NULL, "response_format", NULL,
                                    "'response_format' must be an object with a 'type'");
        if (strcmp(json_string_value(t), "text") != 0)
            return api_unsupported(err, "response_format", "structured output");
    }
    return TM_OK;
}

tm_status tm_api_request_parse(tm_api_kind kind, const char *body, size_t len, tm_api_request *out,
                               tm_api_error *err) {
    memset(out, 0, sizeof *out);
    memset(err, 0, sizeof *err);
    out->kind = kind;
    out->n = 1;
    out->max_tokens = kind == TM_API_COMPLETION ? 16 : -1; /* OpenAI's defaults */
    out->add_generation_prompt = true;
    out->sampler = tm_sampler_params_default();
    out->sampler.temp = 1.0f;
    out->sampler.top_k = 0;
    out->sampler.top_p = 1.0f;
    out->sampler.min_p = 0.0f;
    out->sampler.repeat_penalty = 1.0f;
    out->sampler.presence_penalty = 0.0f;
    out->sampler.frequency_penalty = 0.0f;

    json_error_t jerr;
    json_t      *root = len > 0 ? json_loadb(body, len, 0, &jerr) : NULL;
    if (root == NULL) {
        tm_api_error_set(err, 400, NULL, NULL, "invalid_json", "request body is not valid JSON: %s",
                         len > 0 ? jerr.text : "empty body");
        return TM_ERR_INVALID;
    }
    tm_status st;
    if (!json_is_object(root))
        st = tm_api_error_set(err, 400, NULL, NULL, "invalid_json",
                              "request body must be a JSON object");
    else
        st = api_parse_fields(kind, root, out, err);
    json_decref(root);
    if (st != TM_OK)
        tm_api_request_free(out);
    return st;
}

/* ---- responses -------------------------------------------------------------------- */

const char *tm_api_finish_str(tm_finish f) {
    switch (f) {
    case TM_FINISH_STOP: return "stop";
    case TM_FINISH_LENGTH: return "length";
    default: return NULL;
    }
}

static json_t *api_envelope(tm_api_kind kind, const char *object, const char *id, int64_t created,
                            const char *model) {
    (void)kind;
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "object", json_string(object));
    json_object_set_new(o, "created", json_integer(created));
    json_object_set_new(o, "model", api_jstr(model, strlen(model)));
    json_object_set_new(o, "system_fingerprint", json_string("tensormesh-0.1"));
    return o;
}

static json_t *api_usage(const tm_api_usage *u) {
    json_t *o = json_object();
    json_object_set_new(o, "prompt_tokens", json_integer(u->prompt_tokens));
    json_object_set_new(o, "completion_tokens", json_integer(u->completion_tokens));
    json_object_set_new(o, "total_tokens",
                        json_integer((json_int_t)u->prompt_tokens + u->completion_tokens));
    json_t *d = json_object();
    json_object_set_new(d, "cached_tokens", json_integer(u->cached_tokens));
    json_object_set_new(o, "prompt_tokens_details", d);
    return o;
}

static json_t *api_finish_json(tm_finish f) {
    const char *s = tm_api_finish_str(f);
    return s ? json_string(s) : json_null();
}

/* A token's bytes as the tokenizer decodes it mid-text, or as the first token
 * of a text when first (n bytes into buf[cap]). */
static size_t api_piece(const tm_tokenizer *tok, int32_t id, bool first, char *buf, size_t cap) {
    size_t n = 0;
    if (tok == NULL)
        return 0;
    if (first) {
        char *t = NULL;
        if (tm_tokenizer_decode(tok, &id, 1, true, &t, &n) != TM_OK || t == NULL)
            return 0;
        n = n < cap ? n : cap;
        memcpy(buf, t, n);
        tm_free(t);
        return n;
    }
    if (tm_tokenizer_token_to_piece(tok, id, buf, cap, &n) != TM_OK)
        n = 0;
    return n < cap ? n : cap;
}

static json_t *api_bytes(const char *b, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_integer((unsigned char)b[i]));
    return a;
}

/* chat: {"content": [{token, logprob, bytes, top_logprobs: [...]}]} */
static json_t *api_chat_logprobs(const tm__api_lp *lp, const tm_tokenizer *tok) {
    json_t *content = json_array();
    char    buf[256];
    for (int32_t i = 0; i < lp->n; i++) {
        const tm_sched_logprob *r = &lp->rec[i];
        json_t                 *e = json_object();
        size_t                  n = api_piece(tok, r->token, lp->first && i == 0, buf, sizeof buf);
        json_object_set_new(e, "token", api_jstr(buf, n));
        json_object_set_new(e, "logprob", json_real(r->logprob));
        json_object_set_new(e, "bytes", api_bytes(buf, n));
        json_t *tops = json_array();
        for (int32_t k = 0; k < r->n_top; k++) {
            json_t *t = json_object();
            size_t  m = api_piece(tok, r->top_token[k], lp->first && i == 0, buf, sizeof buf);
            json_object_set_new(t, "token", api_jstr(buf, m));
            json_object_set_new(t, "logprob", json_real(r->top_logprob[k]));
            json_object_set_new(t, "bytes", api_bytes(buf, m));
            json_array_append_new(tops, t);
        }
        json_object_set_new(e, "top_logprobs", tops);
        json_array_append_new(content, e);
    }
    json_t *o = json_object();
    json_object_set_new(o, "content", content);
    return o;
}

/* Adds {piece: logprob} to a legacy top_logprobs object unless the piece is there. */
static void api_top_put(json_t *t, const char *piece, size_t n, float logprob) {
    json_t *key = api_jstr(piece, n);
    if (key != NULL && json_object_get(t, json_string_value(key)) == NULL)
        json_object_set_new(t, json_string_value(key), json_real(logprob));
    json_decref(key);
}

/* A legacy top_logprobs object: the record's alternatives, then the token
 * itself when it is not among them ("up to logprobs + 1 elements", as OpenAI
 * documents and vLLM does). */
static json_t *api_completion_top(const tm_sched_logprob *r, bool first, const char *piece,
                                  size_t n, const tm_tokenizer *tok) {
    json_t *t = json_object();
    char    buf[256];
    bool    has = false;
    for (int32_t k = 0; k < r->n_top; k++) {
        size_t m = api_piece(tok, r->top_token[k], first, buf, sizeof buf);
        api_top_put(t, buf, m, r->top_logprob[k]);
        has |= r->top_token[k] == r->token;
    }
    if (!has)
        api_top_put(t, piece, n, r->logprob);
    return t;
}

/* The bytes prompt token id stands for in the echoed text, which starts at
 * echo[*cur]: a special token the text does not spell out (an added BOS, or any
 * special token of an id prompt, whose echo skips them) stands for nothing; the
 * first text token decodes as the start of a text. Advances *cur past a match. */
static size_t api_echo_piece(const tm_tokenizer *tok, int32_t id, const char *echo, size_t echo_len,
                             size_t *cur, bool *at_start, char *buf, size_t cap) {
    const size_t left = echo_len - *cur;
    size_t       n = api_piece(tok, id, false, buf, cap);
    bool         hit = n <= left && memcmp(echo + *cur, buf, n) == 0;
    if (!hit && tok != NULL && tm_tokenizer_is_special(tok, id))
        return 0;
    if (!hit && *at_start) {
        size_t m = api_piece(tok, id, true, buf, cap);
        if (m <= left && memcmp(echo + *cur, buf, m) == 0)
            n = m, hit = true;
    }
    *at_start = false;
    *cur += n < left ? n : left; /* a piece the text does not match still moves on */
    return n;
}

/* The prompt part of an echoed completion: the first token with null logprob
 * and top_logprobs, then the scored prompt tokens; offsets into the echo. */
static void api_echo_logprobs(const tm__api_lp *lp, const tm_tokenizer *tok, json_t *toks,
                              json_t *lps, json_t *tops, json_t *offs) {
    char   buf[256];
    size_t cur = 0;
    bool   at_start = true;
    for (int32_t i = -1; i < lp->n_prompt; i++) {
        const tm_sched_logprob *r = i >= 0 ? &lp->prompt[i] : NULL;
        const size_t            at = cur;
        const bool              first = at_start;
        size_t n = api_echo_piece(tok, r ? r->token : lp->prompt_first, lp->echo, lp->echo_len,
                                  &cur, &at_start, buf, sizeof buf);
        json_array_append_new(toks, api_jstr(buf, n));
        json_array_append_new(offs, json_integer((json_int_t)at));
        json_array_append_new(lps, r ? json_real(r->logprob) : json_null());
        json_array_append_new(tops, r ? api_completion_top(r, first, buf, n, tok) : json_null());
    }
}

/* legacy completions: {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset} */
static json_t *api_completion_logprobs(const tm__api_lp *lp, const tm_tokenizer *tok) {
    json_t *toks = json_array(), *lps = json_array(), *tops = json_array(), *offs = json_array();
    char    buf[256];
    size_t  dummy = 0, *off = lp->text_offset ? lp->text_offset : &dummy;
    if (lp->echo != NULL) {
        api_echo_logprobs(lp, tok, toks, lps, tops, offs);
        *off = lp->echo_len; /* the generated text follows the echoed prompt */
    }
    for (int32_t i = 0; i < lp->n; i++) {
        const tm_sched_logprob *r = &lp->rec[i];
        size_t                  n = api_piece(tok, r->token, lp->first && i == 0, buf, sizeof buf);
        json_array_append_new(toks, api_jstr(buf, n));
        json_array_append_new(lps, json_real(r->logprob));
        json_array_append_new(offs, json_integer((json_int_t)*off));
        *off += n;
        json_array_append_new(tops, api_completion_top(r, lp->first && i == 0, buf, n, tok));
    }
    json_t *o = json_object();
    json_object_set_new(o, "tokens", toks);
    json_object_set_new(o, "token_logprobs", lps);
    json_object_set_new(o, "top_logprobs", tops);
    json_object_set_new(o, "text_offset", offs);
    return o;
}

static json_t *api_logprobs_json(tm_api_kind kind, const tm__api_lp *lp, const tm_tokenizer *tok) {
    if (lp == NULL)
        return json_null();
    return kind == TM_API_COMPLETION ? api_completion_logprobs(lp, tok)
                                     : api_chat_logprobs(lp, tok);
}

char *tm_api_response_json(tm_api_kind kind, const char *id, int64_t created, const char *model,
                           const tm_api_choice *choices, int32_t n_choices,
                           const tm_api_usage *usage) {
    return tm__api_response_json_lp(kind, id, created, model, choices, n_choices, usage, NULL,
                                    NULL);
}

char *tm__api_response_json_lp(tm_api_kind kind, const char *id, int64_t created, const char *model,
                               const tm_api_choice *choices, int32_t n_choices,
                               const tm_api_usage *usage, const tm__api_lp *lp,
                               const tm_tokenizer *tok) {
    json_t *o = api_envelope(kind, kind == TM_API_CHAT ? "chat.completion" : "text_completion", id,
                             created, model);
    json_t *arr = json_array();
    for (int32_t i = 0; i < n_choices; i++) {
        json_t *c = json_object();
        json_object_set_new(c, "index", json_integer(i));
        json_t *text = api_jstr(choices[i].text, choices[i].len);
        if (kind == TM_API_CHAT) {
            json_t *m = json_object();
            json_object_set_new(m, "role", json_string("assistant"));
            json_object_set_new(m, "content", text);
            json_object_set_new(c, "message", m);
        } else {
            json_object_set_new(c, "text", text);
        }
        json_object_set_new(c, "logprobs", api_logprobs_json(kind, lp ? &lp[i] : NULL, tok));
        json_object_set_new(c, "finish_reason", api_finish_json(choices[i].finish));
        json_array_append_new(arr, c);
    }
    json_object_set_new(o, "choices", arr);
    json_object_set_new(o, "usage", api_usage(usage));
    return api_dump(o);
}

char *tm_api_chunk_json(tm_api_kind kind, const char *id, int64_t created, const char *model,
                        int32_t index, bool role, const char *text, size_t len, tm_finish finish,
                        bool with_usage_null) {
    return tm__api_chunk_json_lp(kind, id, created, model, index, role, text, len, finish,
                                 with_usage_null, NULL, NULL);
}

char *tm__api_chunk_json_lp(tm_api_kind kind, const char *id, int64_t created, const char *model,
                            int32_t index, bool role, const char *text, size_t len,
                            tm_finish finish, bool with_usage_null, const tm__api_lp *lp,
                            const tm_tokenizer *tok) {
    json_t *o =
        api_envelope(kind, kind == TM_API_CHAT ? "chat.completion.chunk" : "text_completion", id,
                     created, model);
    json_t *c = json_object();
    json_object_set_new(c, "index", json_integer(index));
    if (kind == TM_API_CHAT) {
        json_t *d = json_object();
        if (role)
            json_object_set_new(d, "role", json_string("assistant"));
        if (role || len > 0)
            json_object_set_new(d, "content", api_jstr(text, len));
        json_object_set_new(c, "delta", d);
    } else {
        json_object_set_new(c, "text", api_jstr(text, len));
    }
    json_object_set_new(c, "logprobs", api_logprobs_json(kind, lp, tok));
    json_object_set_new(c, "finish_reason", api_finish_json(finish));
    json_t *arr = json_array();
    json_array_append_new(arr, c);
    json_object_set_new(o, "choices", arr);
    if (with_usage_null)
        json_object_set_new(o, "usage", json_null());
    return api_dump(o);
}

char *tm_api_usage_chunk_json(tm_api_kind kind, const char *id, int64_t created, const char *model,
                              const tm_api_usage *usage) {
    json_t *o =
        api_envelope(kind, kind == TM_API_CHAT ? "chat.completion.chunk" : "text_completion", id,
                     created, model);
    json_object_set_new(o, "choices", json_array());
    json_object_set_new(o, "usage", api_usage(usage));
    return api_dump(o);
}
