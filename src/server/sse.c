/*
 * sse.c - Server-Sent Events framing as OpenAI sends it: each event is one
 * "data: <compact JSON>\n\n" (the JSON never holds a raw newline, so one data
 * line suffices), and the stream ends with "data: [DONE]\n\n". No comment
 * pings: they broke some clients (docs/api.md). The Responses API names each
 * event as well ("event: response.created\ndata: {...}\n\n") and sends no
 * [DONE].
 *
 * Pure functions over the caller's buffer: any thread.
 */
#include <string.h>

#include "tm/tm_server.h"

static bool sse_put(char **buf, size_t *len, size_t *cap, const char *s, size_t n) {
    size_t need;
    if (!tm_size_add(*len, n, &need) || !tm_size_add(need, 1, &need))
        return false;
    if (need > *cap) {
        size_t nc = *cap ? *cap : 256;
        while (nc < need)
            nc *= 2;
        char *nb = tm_realloc(*buf, nc);
        if (nb == NULL)
            return false;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, s, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

bool tm_sse_append_data(char **buf, size_t *len, size_t *cap, const char *json, size_t json_len) {
    /* A JSON text from jansson's compact dump has no newline; assert the framing holds. */
    TM_ASSERT(memchr(json, '\n', json_len) == NULL);
    return sse_put(buf, len, cap, "data: ", 6) && sse_put(buf, len, cap, json, json_len) &&
           sse_put(buf, len, cap, "\n\n", 2);
}

bool tm_sse_append_done(char **buf, size_t *len, size_t *cap) {
    return sse_put(buf, len, cap, "data: [DONE]\n\n", 14);
}

bool tm_sse_append_event(char **buf, size_t *len, size_t *cap, const char *event, const char *json,
                         size_t json_len) {
    TM_ASSERT(memchr(json, '\n', json_len) == NULL);
    TM_ASSERT(strchr(event, '\n') == NULL);
    return sse_put(buf, len, cap, "event: ", 7) && sse_put(buf, len, cap, event, strlen(event)) &&
           sse_put(buf, len, cap, "\ndata: ", 7) && sse_put(buf, len, cap, json, json_len) &&
           sse_put(buf, len, cap, "\n\n", 2);
}
