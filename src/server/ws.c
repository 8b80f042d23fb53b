/*
 * ws.c - WebSocket mode of the Responses API at ws://HOST/v1/responses
 * (docs/api.md, "WebSocket mode"): the client sends {"type":"response.create",
 * ...the POST /v1/responses fields...} and receives the same response.* events
 * as JSON text frames, one event per frame; {"type":"response.cancel"} stops
 * the response in flight (-> response.cancelled, status "cancelled"). Errors
 * are {"type":"error","status":N,"error":{...}} frames; the connection stays.
 *
 * DESIGN
 * ------
 * The upgrade arrives on the "http" protocol (lws picks the first protocol when
 * the client names none), so one callback serves both. Each connection holds
 * one txn (ws = true) for its lifetime: its body buffer gathers a fragmented
 * message, its out buffer queues events as newline-separated JSON lines (a
 * compact JSON text has no raw newline), and SERVER_WRITEABLE sends one line
 * per frame. One response at a time per connection; the generation state is
 * reset when a response finishes. A closed connection frees the txn, which
 * cancels its scheduler request. Service thread only.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server_int.h"

#define WS_MAX_MESSAGE (1u << 20) /* a response.create larger than 1 MiB is refused */

bool tm__ws_send(txn *t, char *json) {
    if (json == NULL)
        return false;
    bool ok = tm__txn_append(t, json, strlen(json)) && tm__txn_append(t, "\n", 1);
    tm_free(json);
    lws_callback_on_writable(t->wsi);
    return ok;
}

static void ws_error(txn *t, int status, const char *code, const char *fmt, const char *arg) {
    tm_api_error e;
    tm_api_error_set(&e, status, NULL, NULL, code, fmt, arg);
    char   *ej = tm_api_error_json(&e);
    json_t *parsed = ej ? json_loads(ej, 0, NULL) : NULL;
    tm_free(ej);
    json_t *o = json_object();
    json_object_set_new(o, "type", json_string("error"));
    json_object_set_new(o, "status", json_integer(status));
    json_object_set_new(o, "error",
                        parsed ? json_incref(json_object_get(parsed, "error")) : json_null());
    json_decref(parsed);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    tm__ws_send(t, s ? tm_strdup(s) : NULL);
    free(s);
}

static void ws_message(tm_server *srv, txn *t) {
    json_error_t jerr;
    json_t      *m = json_loadb(t->body, t->body_len, 0, &jerr);
    json_t      *type = json_object_get(m, "type");
    if (!json_is_object(m) || !json_is_string(type)) {
        ws_error(t, 400, "invalid_json", "%s", "each message must be a JSON object with a 'type'");
        goto done;
    }
    const char *ty = json_string_value(type);
    if (strcmp(ty, "response.cancel") == 0) {
        if (t->resp == NULL)
            ws_error(t, 400, "no_response", "%s", "there is no response in progress to cancel");
        else
            tm__resp_cancel(srv, t);
        goto done;
    }
    if (strcmp(ty, "response.create") != 0) {
        ws_error(t, 400, "unknown_event", "unknown message type '%s'", ty);
        goto done;
    }
    if (t->resp != NULL) {
        ws_error(t, 409, "response_in_progress", "%s",
                 "a response is already in progress on this connection");
        goto done;
    }
    if (!tm__srv_ready(srv)) {
        ws_error(t, 503, "model_loading", "%s", "Loading model");
        goto done;
    }
    /* Fields at the top level, or inside "response" as OpenAI's realtime events nest them. */
    json_t *fields = json_is_object(json_object_get(m, "response"))
                         ? json_deep_copy(json_object_get(m, "response"))
                         : json_deep_copy(m);
    json_object_del(fields, "type");
    char *s = json_dumps(fields, JSON_COMPACT);
    json_decref(fields);
    if (s == NULL) {
        ws_error(t, 500, NULL, "%s", "out of memory");
        goto done;
    }
    tm__resp_start(srv, t, s, strlen(s));
    free(s);
done:
    json_decref(m);
    t->body_len = 0;
}

static int ws_writeable(txn *t) {
    if (t->out_off >= t->out_len) {
        t->out_off = t->out_len = 0;
        return 0;
    }
    char          *line = t->out + t->out_off;
    char          *nl = memchr(line, '\n', t->out_len - t->out_off);
    size_t         n = nl ? (size_t)(nl - line) : t->out_len - t->out_off;
    unsigned char *buf = tm_malloc(LWS_PRE + n + 1);
    if (buf == NULL)
        return -1;
    memcpy(buf + LWS_PRE, line, n);
    int w = lws_write(t->wsi, buf + LWS_PRE, n, LWS_WRITE_TEXT);
    tm_free(buf);
    if (w < (int)n)
        return -1;
    t->out_off += n + (nl ? 1 : 0);
    if (t->out_off < t->out_len)
        lws_callback_on_writable(t->wsi);
    else
        t->out_off = t->out_len = 0;
    return 0;
}

int tm__ws_callback(tm_server *srv, struct lws *wsi, pss *ps, enum lws_callback_reasons reason,
                    void *in, size_t len) {
    switch (reason) {
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
        char uri[64];
        if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 ||
            strcmp(uri, "/v1/responses") != 0)
            return -1; /* WebSocket only at /v1/responses */
        return tm__srv_auth_ok(srv, wsi) ? 0 : -1;
    }
    case LWS_CALLBACK_ESTABLISHED: {
        txn *t = tm_calloc(1, sizeof *t);
        if (t == NULL)
            return -1;
        t->wsi = wsi;
        t->ws = true;
        t->route = R_RESPONSES;
        ps->t = t;
        tm__srv_count(srv, R_RESPONSES, 200);
        return 0;
    }
    case LWS_CALLBACK_RECEIVE: {
        txn *t = ps->t;
        if (t == NULL)
            return -1;
        if (t->body_len + len > WS_MAX_MESSAGE) {
            t->body_len = 0;
            ws_error(t, 413, "request_too_large", "%s", "message exceeds 1 MiB");
            return 0;
        }
        if (t->body_len + len + 1 > t->body_cap) {
            size_t nc = (t->body_len + len + 1) * 2;
            char  *nb = tm_realloc(t->body, nc);
            if (nb == NULL)
                return -1;
            t->body = nb;
            t->body_cap = nc;
        }
        memcpy(t->body + t->body_len, in, len);
        t->body_len += len;
        t->body[t->body_len] = '\0';
        if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0)
            ws_message(srv, t);
        return 0;
    }
    case LWS_CALLBACK_SERVER_WRITEABLE: return ps->t ? ws_writeable(ps->t) : 0;
    case LWS_CALLBACK_CLOSED:
        if (ps->t != NULL) {
            tm__txn_free(srv, ps->t); /* cancels a response in flight */
            ps->t = NULL;
        }
        return 0;
    default: return 0;
    }
}
