/*
 * responses.c - POST /v1/responses and GET /v1/responses/{id}: OpenAI's
 * Responses API over the chat path (input items and instructions become chat
 * messages, the chat template renders them, the scheduler generates), with
 * the response.* streaming events over SSE (HTTP) or text frames (ws.c).
 *
 * DESIGN
 * ------
 * A request is translated into a chat-completions body and validated by
 * tm_api_request_parse, so sampling fields behave exactly as in chat. The
 * conversation of a response (the previous response's conversation, then this
 * input, then the assistant's output; instructions are not carried over, as
 * in OpenAI's API) is kept with the finished response in a bounded FIFO store
 * (max_stored_responses; the oldest goes first), which previous_response_id
 * and GET read. Only finished responses are stored. Everything here runs on
 * the service thread.
 *
 * Events of one response, in order: response.created, response.in_progress,
 * response.output_item.added, response.content_part.added,
 * response.output_text.delta..., response.output_text.done,
 * response.content_part.done, response.output_item.done, then one of
 * response.completed / response.incomplete (max_output_tokens or the context
 * filled) / response.cancelled (ws response.cancel) / response.failed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "server_int.h"

struct tm__resp {
    char    id[48];      /* resp_<hex> */
    char    item_id[48]; /* msg_<hex> */
    json_t *conv;        /* messages without instructions: previous + this input */
    json_t *echo;        /* request fields echoed in the response object */
    bool    store;
    bool    stream;    /* events (SSE or ws) rather than one body */
    bool    cancelled; /* ws response.cancel */
    int64_t seq;       /* sequence_number of the next event */
    int64_t created_at;
    char   *text; /* output so far */
    size_t  len, cap;
};

typedef struct resp_entry {
    char    id[48];
    char   *json; /* the response object */
    json_t *conv; /* the conversation including the assistant's output */
} resp_entry;

struct tm__resp_store {
    resp_entry *e;            /* [cap] ring */
    int32_t     cap, n, head; /* head: the oldest */
};

tm_status tm__resp_store_init(int32_t cap, tm__resp_store **out) {
    *out = NULL;
    tm__resp_store *s = tm_calloc(1, sizeof *s);
    if (s == NULL)
        return TM_ERR_NOMEM;
    s->e = tm_calloc((size_t)cap, sizeof *s->e);
    if (s->e == NULL) {
        tm_free(s);
        return TM_ERR_NOMEM;
    }
    s->cap = cap;
    *out = s;
    return TM_OK;
}

void tm__resp_store_free(tm__resp_store *s) {
    if (s == NULL)
        return;
    for (int32_t i = 0; i < s->cap; i++) {
        tm_free(s->e[i].json);
        json_decref(s->e[i].conv);
    }
    tm_free(s->e);
    tm_free(s);
}

static resp_entry *store_find(tm__resp_store *s, const char *id) {
    for (int32_t i = 0; i < s->n; i++) {
        resp_entry *e = &s->e[(s->head + i) % s->cap];
        if (strcmp(e->id, id) == 0)
            return e;
    }
    return NULL;
}

/* Takes json and conv. */
static void store_put(tm__resp_store *s, const char *id, char *json, json_t *conv) {
    resp_entry *e;
    if (s->n == s->cap) { /* full: drop the oldest */
        e = &s->e[s->head];
        tm_free(e->json);
        json_decref(e->conv);
        s->head = (s->head + 1) % s->cap;
        s->n--;
    }
    e = &s->e[(s->head + s->n) % s->cap];
    snprintf(e->id, sizeof e->id, "%s", id);
    e->json = json;
    e->conv = conv;
    s->n++;
}

void tm__resp_free(tm__resp *r) {
    if (r == NULL)
        return;
    json_decref(r->conv);
    json_decref(r->echo);
    tm_free(r->text);
    tm_free(r);
}

/* ---- request -> chat messages ------------------------------------------------------ */

static tm_status resp_err_oom(tm_api_error *err) {
    return tm_api_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
}

/* One input item's content (a string or input_text/output_text parts) as a string. */
static tm_status resp_content(json_t *c, size_t idx, json_t **out, tm_api_error *err) {
    if (json_is_string(c)) {
        *out = json_incref(c);
        return TM_OK;
    }
    if (!json_is_array(c))
        return tm_api_error_set(err, 400, NULL, "input", NULL,
                                "input[%zu].content must be a string or an array of parts", idx);
    json_t *joined = json_string("");
    size_t  i;
    json_t *part;
    json_array_foreach(c, i, part) {
        json_t     *type = json_object_get(part, "type"), *text = json_object_get(part, "text");
        const char *ty = json_is_string(type) ? json_string_value(type) : "";
        if (strcmp(ty, "input_text") != 0 && strcmp(ty, "output_text") != 0 &&
            strcmp(ty, "text") != 0) {
            json_decref(joined);
            return tm_api_error_set(err, 400, NULL, "input", "unsupported_parameter",
                                    "input[%zu].content[%zu]: only input_text/output_text parts "
                                    "are supported (got '%s')",
                                    idx, i, ty);
        }
        if (!json_is_string(text)) {
            json_decref(joined);
            return tm_api_error_set(err, 400, NULL, "input", NULL,
                                    "input[%zu].content[%zu].text must be a string", idx, i);
        }
        size_t a = json_string_length(joined), b = json_string_length(text);
        char  *buf = tm_malloc(a + b + 1);
        if (buf == NULL) {
            json_decref(joined);
            return resp_err_oom(err);
        }
        memcpy(buf, json_string_value(joined), a);
        memcpy(buf + a, json_string_value(text), b);
        json_string_setn(joined, buf, a + b);
        tm_free(buf);
    }
    *out = joined;
    return TM_OK;
}

/* Appends the request's input to conv as chat messages. */
static tm_status resp_input(json_t *in, json_t *conv, tm_api_error *err) {
    if (json_is_string(in)) {
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string("user"));
        json_object_set(m, "content", in);
        json_array_append_new(conv, m);
        return TM_OK;
    }
    if (!json_is_array(in) || json_array_size(in) == 0)
        return tm_api_error_set(err, 400, NULL, "input", NULL,
                                "'input' must be a string or a non-empty array of messages");
    size_t  i;
    json_t *item;
    json_array_foreach(in, i, item) {
        json_t *type = json_object_get(item, "type"), *role = json_object_get(item, "role");
        if (!json_is_object(item))
            return tm_api_error_set(err, 400, NULL, "input", NULL, "input[%zu] must be an object",
                                    i);
        if (type != NULL && !(json_is_string(type) && !strcmp(json_string_value(type), "message")))
            return tm_api_error_set(err, 400, NULL, "input", "unsupported_parameter",
                                    "input[%zu]: only items of type 'message' are supported", i);
        const char *r = json_is_string(role) ? json_string_value(role) : "";
        if (strcmp(r, "user") && strcmp(r, "assistant") && strcmp(r, "system") &&
            strcmp(r, "developer"))
            return tm_api_error_set(err, 400, NULL, "input", NULL,
                                    "input[%zu].role must be user, assistant, system or developer",
                                    i);
        json_t *text = NULL;
        TM_TRY(resp_content(json_object_get(item, "content"), i, &text, err));
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string(r));
        json_object_set_new(m, "content", text);
        json_array_append_new(conv, m);
    }
    return TM_OK;
}

/* Validates the Responses fields and builds r->conv, r->echo and a chat body. */
static tm_status resp_parse(tm_server *srv, json_t *root, tm__resp *r, bool ws, char **chat_body,
                            tm_api_error *err) {
    *chat_body = NULL;
    if (!json_is_object(root))
        return tm_api_error_set(err, 400, NULL, NULL, "invalid_json",
                                "request body must be a JSON object");
    json_t *model = json_object_get(root, "model");
    if (!json_is_string(model))
        return tm_api_error_set(err, 400, NULL, "model", "missing_required_parameter",
                                "'model' (a string) is required");
    json_t *in = json_object_get(root, "input");
    if (in == NULL)
        return tm_api_error_set(err, 400, NULL, "input", "missing_required_parameter",
                                "missing required parameter 'input'");
    json_t *ins = json_object_get(root, "instructions");
    if (ins != NULL && !json_is_null(ins) && !json_is_string(ins))
        return tm_api_error_set(err, 400, NULL, "instructions", NULL,
                                "'instructions' must be a string");
    json_t *prev = json_object_get(root, "previous_response_id");
    if (prev != NULL && !json_is_null(prev) && !json_is_string(prev))
        return tm_api_error_set(err, 400, NULL, "previous_response_id", NULL,
                                "'previous_response_id' must be a string");
    json_t *store = json_object_get(root, "store");
    if (store != NULL && !json_is_null(store) && !json_is_boolean(store))
        return tm_api_error_set(err, 400, NULL, "store", NULL, "'store' must be a boolean");
    r->store = store == NULL || !json_is_false(store);
    json_t *stream = json_object_get(root, "stream");
    if (stream != NULL && !json_is_null(stream) && !json_is_boolean(stream))
        return tm_api_error_set(err, 400, NULL, "stream", NULL, "'stream' must be a boolean");
    r->stream = ws || json_is_true(stream);
    json_t *tools = json_object_get(root, "tools");
    if (tools != NULL && !json_is_null(tools) && !(json_is_array(tools) && !json_array_size(tools)))
        return tm_api_error_set(err, 400, NULL, "tools", "unsupported_parameter",
                                "'tools': tool calling is not supported by this server yet");
    json_t *text = json_object_get(root, "text");
    json_t *fmt = json_is_object(text) ? json_object_get(text, "format") : NULL;
    json_t *fty = json_is_object(fmt) ? json_object_get(fmt, "type") : NULL;
    if (json_is_string(fty) && strcmp(json_string_value(fty), "text") != 0)
        return tm_api_error_set(err, 400, NULL, "text.format", "unsupported_parameter",
                                "'text.format': structured output is not supported yet");
    json_t *mot = json_object_get(root, "max_output_tokens");
    if (mot != NULL && !json_is_null(mot) &&
        !(json_is_integer(mot) && json_integer_value(mot) >= 1 &&
          json_integer_value(mot) <= INT32_MAX))
        return tm_api_error_set(err, 400, NULL, "max_output_tokens", NULL,
                                "'max_output_tokens' must be a positive integer");

    r->conv = json_array();
    if (r->conv == NULL)
        return resp_err_oom(err);
    if (json_is_string(prev)) {
        resp_entry *e = store_find(srv->store, json_string_value(prev));
        if (e == NULL)
            return tm_api_error_set(err, 400, NULL, "previous_response_id", "not_found",
                                    "Previous response with id '%s' not found (this server keeps "
                                    "the last %d finished responses)",
                                    json_string_value(prev), srv->store->cap);
        json_array_extend(r->conv, e->conv);
    }
    TM_TRY(resp_input(in, r->conv, err));

    json_t *msgs = json_array();
    if (json_is_string(ins)) {
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string("system"));
        json_object_set(m, "content", ins);
        json_array_append_new(msgs, m);
    }
    json_array_extend(msgs, r->conv);
    json_t *chat = json_object();
    json_object_set(chat, "model", model);
    json_object_set_new(chat, "messages", msgs);
    static const char *const pass[] = {
        "temperature", "top_p", "seed", "top_k", "min_p", "presence_penalty", "frequency_penalty"};
    for (size_t i = 0; i < sizeof pass / sizeof pass[0]; i++) {
        json_t *v = json_object_get(root, pass[i]);
        if (v != NULL)
            json_object_set(chat, pass[i], v);
    }
    if (mot != NULL)
        json_object_set(chat, "max_tokens", mot);
    char *s = json_dumps(chat, JSON_COMPACT);
    json_decref(chat);
    if (s == NULL)
        return resp_err_oom(err);
    *chat_body = s;

    r->echo = json_object();
    json_object_set(r->echo, "model", model);
    json_object_set_new(r->echo, "instructions", ins ? json_incref(ins) : json_null());
    json_object_set_new(r->echo, "max_output_tokens", mot ? json_incref(mot) : json_null());
    json_object_set_new(r->echo, "previous_response_id", prev ? json_incref(prev) : json_null());
    json_t *temp = json_object_get(root, "temperature"), *top_p = json_object_get(root, "top_p");
    json_object_set_new(r->echo, "temperature",
                        json_is_number(temp) ? json_incref(temp) : json_real(1.0));
    json_object_set_new(r->echo, "top_p",
                        json_is_number(top_p) ? json_incref(top_p) : json_real(1.0));
    json_t *meta = json_object_get(root, "metadata");
    json_object_set_new(r->echo, "metadata",
                        json_is_object(meta) ? json_incref(meta) : json_object());
    json_object_set_new(r->echo, "store", json_boolean(r->store));
    return TM_OK;
}

/* ---- objects and events --------------------------------------------------------------- */

static json_t *resp_jstr(const char *s, size_t n) {
    json_t *j = json_stringn(s ? s : "", s ? n : 0);
    return j ? j : json_string("\xef\xbf\xbd"); /* cannot happen: output is valid UTF-8 */
}

static json_t *resp_part(const tm__resp *r) {
    json_t *p = json_object();
    json_object_set_new(p, "type", json_string("output_text"));
    json_object_set_new(p, "text", resp_jstr(r->text, r->len));
    json_object_set_new(p, "annotations", json_array());
    json_object_set_new(p, "logprobs", json_array());
    return p;
}

static json_t *resp_item(const tm__resp *r, const char *status, bool with_part) {
    json_t *it = json_object();
    json_object_set_new(it, "id", json_string(r->item_id));
    json_object_set_new(it, "type", json_string("message"));
    json_object_set_new(it, "status", json_string(status));
    json_object_set_new(it, "role", json_string("assistant"));
    json_t *c = json_array();
    if (with_part)
        json_array_append_new(c, resp_part(r));
    json_object_set_new(it, "content", c);
    return it;
}

/* The response object; status "in_progress" has no output yet. */
static json_t *resp_object(const txn *t, const tm__resp *r, const char *status,
                           const char *incomplete_reason, const char *error_msg) {
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(r->id));
    json_object_set_new(o, "object", json_string("response"));
    json_object_set_new(o, "created_at", json_integer(r->created_at));
    json_object_set_new(o, "status", json_string(status));
    json_object_set_new(o, "background", json_false());
    if (error_msg != NULL) {
        json_t *e = json_object();
        json_object_set_new(e, "code", json_string("server_error"));
        json_object_set_new(e, "message", json_string(error_msg));
        json_object_set_new(o, "error", e);
    } else {
        json_object_set_new(o, "error", json_null());
    }
    if (incomplete_reason != NULL) {
        json_t *d = json_object();
        json_object_set_new(d, "reason", json_string(incomplete_reason));
        json_object_set_new(o, "incomplete_details", d);
    } else {
        json_object_set_new(o, "incomplete_details", json_null());
    }
    json_object_update(o, r->echo);
    json_t *out = json_array();
    if (strcmp(status, "in_progress") != 0 && strcmp(status, "failed") != 0)
        json_array_append_new(
            out, resp_item(r, strcmp(status, "completed") == 0 ? "completed" : "incomplete", true));
    json_object_set_new(o, "output", out);
    json_object_set_new(o, "parallel_tool_calls", json_true());
    json_object_set_new(o, "tool_choice", json_string("auto"));
    json_object_set_new(o, "tools", json_array());
    json_t *fmt = json_object();
    json_object_set_new(fmt, "type", json_string("text"));
    json_t *text = json_object();
    json_object_set_new(text, "format", fmt);
    json_object_set_new(o, "text", text);
    json_object_set_new(o, "truncation", json_string("disabled"));
    if (strcmp(status, "in_progress") == 0) {
        json_object_set_new(o, "usage", json_null());
    } else {
        json_t *u = json_object();
        int32_t in = t->n_prompt, outn = t->n_completion[0];
        json_object_set_new(u, "input_tokens", json_integer(in));
        json_t *d = json_object();
        json_object_set_new(d, "cached_tokens", json_integer(t->n_cached));
        json_object_set_new(u, "input_tokens_details", d);
        json_object_set_new(u, "output_tokens", json_integer(outn));
        d = json_object();
        json_object_set_new(d, "reasoning_tokens", json_integer(0));
        json_object_set_new(u, "output_tokens_details", d);
        json_object_set_new(u, "total_tokens", json_integer((json_int_t)in + outn));
        json_object_set_new(o, "usage", u);
    }
    return o;
}

static char *resp_dump(json_t *j) {
    if (j == NULL)
        return NULL;
    char *s = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (s == NULL)
        return NULL;
    char *o = tm_strdup(s);
    free(s);
    return o;
}

/* Sends one event (ev taken) over SSE or the WebSocket. */
static bool resp_emit(txn *t, const char *type, json_t *ev) {
    tm__resp *r = t->resp;
    if (ev == NULL)
        return false;
    json_object_set_new(ev, "type", json_string(type));
    json_object_set_new(ev, "sequence_number", json_integer(r->seq++));
    char *s = resp_dump(ev);
    if (s == NULL)
        return false;
    if (t->ws)
        return tm__ws_send(t, s);
    bool ok = tm_sse_append_event(&t->out, &t->out_len, &t->out_cap, type, s, strlen(s));
    tm_free(s);
    return ok;
}

static json_t *resp_ev_item(const tm__resp *r) {
    json_t *e = json_object();
    json_object_set_new(e, "item_id", json_string(r->item_id));
    json_object_set_new(e, "output_index", json_integer(0));
    json_object_set_new(e, "content_index", json_integer(0));
    return e;
}

static json_t *resp_ev_response(json_t *obj) {
    json_t *e = json_object();
    json_object_set_new(e, "response", obj);
    return e;
}

/* ---- entry points ------------------------------------------------------------------- */

static void resp_fail(tm_server *srv, txn *t, const tm_api_error *err) {
    if (t->ws) {
        json_t *e = json_object();
        json_object_set_new(e, "type", json_string("error"));
        json_object_set_new(e, "status", json_integer(err->http_status));
        char   *ej = tm_api_error_json(err);
        json_t *parsed = ej ? json_loads(ej, 0, NULL) : NULL;
        tm_free(ej);
        json_object_set_new(e, "error",
                            parsed ? json_incref(json_object_get(parsed, "error")) : json_null());
        json_decref(parsed);
        tm__ws_send(t, resp_dump(e));
        return;
    }
    tm__txn_respond_error(srv, t, err);
}

void tm__resp_start(tm_server *srv, txn *t, const char *body, size_t len) {
    tm_api_error   err;
    tm_api_request rq = {0};
    json_error_t   jerr;
    char          *chat = NULL;
    tm__resp      *r = tm_calloc(1, sizeof *r);
    json_t        *root = len ? json_loadb(body, len, 0, &jerr) : NULL;
    if (r == NULL) {
        resp_err_oom(&err);
        goto fail;
    }
    if (root == NULL) {
        tm_api_error_set(&err, 400, NULL, NULL, "invalid_json",
                         "request body is not valid JSON: %s", len ? jerr.text : "empty body");
        goto fail;
    }
    if (resp_parse(srv, root, r, t->ws, &chat, &err) != TM_OK)
        goto fail;
    if (tm_api_request_parse(TM_API_CHAT, chat, strlen(chat), &rq, &err) != TM_OK) {
        if (strcmp(err.param, "messages") == 0 || strncmp(err.param, "messages[", 9) == 0)
            snprintf(err.param, sizeof err.param, "input");
        if (strcmp(err.param, "max_tokens") == 0)
            snprintf(err.param, sizeof err.param, "max_output_tokens");
        goto fail;
    }
    rq.kind = TM_API_RESPONSES;
    if (!tm__srv_check_model(srv, rq.model, &err))
        goto fail;
    t->kind = TM_API_RESPONSES;
    if (tm__srv_submit(srv, t, &rq, NULL, &err) != TM_OK)
        goto fail;
    snprintf(r->id, sizeof r->id, "resp_%016llx%08llx",
             (unsigned long long)tm__srv_splitmix(&srv->seed_state),
             (unsigned long long)(tm__srv_splitmix(&srv->seed_state) & 0xffffffffu));
    snprintf(r->item_id, sizeof r->item_id, "msg_%016llx",
             (unsigned long long)tm__srv_splitmix(&srv->seed_state));
    r->created_at = (int64_t)time(NULL);
    t->resp = r;
    if (r->stream) {
        if (!t->ws) {
            t->status = 200;
            t->ctype = "text/event-stream";
            t->streaming = true;
            t->responding = true;
            tm__srv_count(srv, t->route, 200);
            lws_callback_on_writable(t->wsi);
        }
        resp_emit(t, "response.created",
                  resp_ev_response(resp_object(t, r, "in_progress", NULL, NULL)));
        resp_emit(t, "response.in_progress",
                  resp_ev_response(resp_object(t, r, "in_progress", NULL, NULL)));
        json_t *e = json_object();
        json_object_set_new(e, "output_index", json_integer(0));
        json_object_set_new(e, "item", resp_item(r, "in_progress", false));
        resp_emit(t, "response.output_item.added", e);
        e = resp_ev_item(r);
        json_t *part = json_object();
        json_object_set_new(part, "type", json_string("output_text"));
        json_object_set_new(part, "text", json_string(""));
        json_object_set_new(part, "annotations", json_array());
        json_object_set_new(e, "part", part);
        resp_emit(t, "response.content_part.added", e);
    }
    tm_api_request_free(&rq);
    json_decref(root);
    free(chat);
    return;
fail:
    tm_api_request_free(&rq);
    json_decref(root);
    free(chat);
    tm__resp_free(r);
    resp_fail(srv, t, &err);
}

void tm__resp_cancel(tm_server *srv, txn *t) {
    (void)srv;
    if (t->resp == NULL)
        return;
    t->resp->cancelled = true;
    tm_sched_req_cancel(t->reqs[0]);
}

void tm__resp_get(tm_server *srv, txn *t, const char *id) {
    resp_entry *e = store_find(srv->store, id);
    if (e == NULL) {
        tm_api_error err;
        tm_api_error_set(&err, 404, NULL, NULL, "not_found",
                         "Response with id '%s' not found (only finished, stored responses are "
                         "kept; the last %d)",
                         id, srv->store->cap);
        tm__txn_respond_error(srv, t, &err);
        return;
    }
    tm__txn_respond(srv, t, 200, "application/json", e->json, strlen(e->json));
}

static bool resp_add_text(tm__resp *r, const char *s, size_t n) {
    if (r->len + n + 1 > r->cap) {
        size_t nc = (r->len + n + 1) * 2;
        char  *nb = tm_realloc(r->text, nc);
        if (nb == NULL)
            return false;
        r->text = nb;
        r->cap = nc;
    }
    memcpy(r->text + r->len, s, n);
    r->len += n;
    r->text[r->len] = '\0';
    return true;
}

bool tm__resp_pump(tm_server *srv, txn *t) {
    tm__resp    *r = t->resp;
    tm_sched_out o;
    tm_sched_req_poll(t->reqs[0], &o);
    t->n_completion[0] = o.n_completion;
    t->n_cached = o.n_cached;
    bool news = false, ok = true;
    if (o.len > 0) {
        ok = resp_add_text(r, o.text, o.len);
        if (ok && r->stream) {
            json_t *e = resp_ev_item(r);
            json_object_set_new(e, "delta", resp_jstr(o.text, o.len));
            json_object_set_new(e, "logprobs", json_array());
            resp_emit(t, "response.output_text.delta", e);
            news = true;
        }
    }
    tm_free(o.text);
    if (!ok) {
        o.finish = TM_FINISH_ERROR;
        snprintf(o.error, sizeof o.error, "out of memory");
    }
    if (o.finish == TM_FINISH_NONE)
        return news;

    /* Finished: the final events or body, then store. */
    tm__txn_unlink(srv, t);
    tm_sched_req_release(t->reqs[0]);
    t->reqs[0] = NULL;
    const char *status = "completed", *reason = NULL, *final_ev = "response.completed";
    const char *errmsg = NULL;
    if (o.finish == TM_FINISH_LENGTH) {
        status = "incomplete";
        reason = "max_output_tokens";
        final_ev = "response.incomplete";
    } else if (o.finish == TM_FINISH_CANCELLED && r->cancelled) {
        status = "cancelled";
        final_ev = "response.cancelled";
    } else if (o.finish == TM_FINISH_CANCELLED || o.finish == TM_FINISH_ERROR) {
        status = "failed";
        final_ev = "response.failed";
        errmsg = o.finish == TM_FINISH_ERROR ? o.error : "the server is shutting down";
    }
    if (r->stream && errmsg == NULL) {
        json_t *e = resp_ev_item(r);
        json_object_set_new(e, "text", resp_jstr(r->text, r->len));
        json_object_set_new(e, "logprobs", json_array());
        resp_emit(t, "response.output_text.done", e);
        e = resp_ev_item(r);
        json_object_set_new(e, "part", resp_part(r));
        resp_emit(t, "response.content_part.done", e);
        e = json_object();
        json_object_set_new(e, "output_index", json_integer(0));
        json_object_set_new(
            e, "item",
            resp_item(r, strcmp(status, "completed") == 0 ? "completed" : "incomplete", true));
        resp_emit(t, "response.output_item.done", e);
    }
    json_t *obj = resp_object(t, r, status, reason, errmsg);
    if (errmsg == NULL && r->store) {
        json_t *conv = json_deep_copy(r->conv);
        json_t *m = json_object();
        json_object_set_new(m, "role", json_string("assistant"));
        json_object_set_new(m, "content", resp_jstr(r->text, r->len));
        json_array_append_new(conv, m);
        char *s = json_dumps(obj, JSON_COMPACT);
        char *own = s ? tm_strdup(s) : NULL;
        free(s);
        if (own != NULL)
            store_put(srv->store, r->id, own, conv);
        else
            json_decref(conv);
    }
    if (r->stream) {
        resp_emit(t, final_ev, resp_ev_response(obj));
        if (!t->ws)
            t->final = true;
    } else if (errmsg != NULL) {
        json_decref(obj);
        tm_api_error e;
        tm_api_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s", errmsg);
        tm__txn_respond_error(srv, t, &e);
    } else {
        tm__txn_respond_json(srv, t, 200, resp_dump(obj));
    }
    if (!srv->p.quiet)
        fprintf(stderr, "tensor-mesh-api: %s %s, %d input + %d output tokens in %.2f s\n", r->id,
                status, t->n_prompt, t->n_completion[0], tm__srv_now() - t->t_start_s);
    tm__resp_free(r);
    t->resp = NULL;
    return true;
}
