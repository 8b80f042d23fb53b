/*
 * chat_tokenize.c - tokenizes a rendered chat template with message contents
 * kept literal (see tm_chat.h).
 *
 * DESIGN
 * ------
 * The template is rendered from the real contents (so templates that inspect or
 * transform content behave exactly as in Hugging Face); afterwards each content
 * string is searched for in the rendered text, left to right, starting where the
 * previous one ended. The spans found are passed to tm_tokenizer_encode_spans(),
 * which matches special tokens everywhere except inside them. Tokenization is
 * that of the whole text, so the ids equal HF's wherever no content holds
 * special-token text. An occurrence that starts or ends strictly inside the text
 * of a special token is not a content ("x" inside "<|begin_of_text|>"): the
 * search moves on.
 *
 * A content not found verbatim (a template that trims or rewrites it) is only
 * dangerous when it contains the text of a special token: then the call fails
 * instead of guessing where that text went.
 */
#include <jansson.h>
#include <string.h>

#include "tm/tm_chat.h"

typedef struct span_list {
    tm_text_span *v;
    size_t        n, cap;
} span_list;

static tm_status span_push(span_list *l, size_t off, size_t len) {
    if (l->n == l->cap) {
        size_t        cap = l->cap ? l->cap * 2 : 16;
        tm_text_span *nv = tm_realloc(l->v, cap * sizeof *nv);
        if (nv == NULL)
            return tm_fail(TM_ERR_NOMEM, "chat tokenize: out of memory");
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = (tm_text_span){off, len};
    return TM_OK;
}

static const char *find_bytes(const char *hay, size_t hn, const char *needle, size_t nn) {
    if (nn == 0 || nn > hn)
        return NULL;
    for (size_t i = 0; i + nn <= hn; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, nn) == 0)
            return hay + i;
    return NULL;
}

/* The texts of tok's special tokens, to tell a content occurrence from a piece of a
 * template special token ("x" inside "<|begin_of_text|>"). */
typedef struct special_set {
    const char **s;
    size_t      *len;
    size_t       n;
} special_set;

static tm_status specials_collect(const tm_tokenizer *tok, special_set *out) {
    *out = (special_set){0};
    int32_t nv = tm_tokenizer_n_vocab(tok);
    size_t  n = 0;
    for (int32_t id = 0; id < nv; id++)
        n += tm_tokenizer_is_special(tok, id);
    out->s = tm_calloc(n ? n : 1, sizeof *out->s);
    out->len = tm_calloc(n ? n : 1, sizeof *out->len);
    if (out->s == NULL || out->len == NULL)
        return tm_fail(TM_ERR_NOMEM, "chat tokenize: out of memory");
    for (int32_t id = 0; id < nv; id++) {
        size_t      l = 0;
        const char *t =
            tm_tokenizer_is_special(tok, id) ? tm_tokenizer_token_text(tok, id, &l) : NULL;
        if (t != NULL && l > 1) {
            out->s[out->n] = t;
            out->len[out->n++] = l;
        }
    }
    return TM_OK;
}

/* True when byte offset k of text lies strictly inside an occurrence of a special
 * token's text (the occurrence starts before k and ends after it). */
static bool inside_special(const special_set *sp, const char *text, size_t len, size_t k) {
    for (size_t i = 0; i < sp->n; i++) {
        size_t l = sp->len[i];
        for (size_t b = k >= l - 1 ? k - (l - 1) : 0; b < k; b++)
            if (b + l <= len && memcmp(text + b, sp->s[i], l) == 0)
                return true;
    }
    return false;
}

/* True when text holds the text of a special token of tok. */
static bool has_special_text(const tm_tokenizer *tok, const char *s, size_t n) {
    int32_t *ids = NULL;
    size_t   n_ids = 0;
    bool     found = false;
    if (tm_tokenizer_encode(tok, s, n, false, true, &ids, &n_ids) != TM_OK)
        return true; /* cannot tell: treat as dangerous */
    for (size_t i = 0; i < n_ids && !found; i++)
        found = tm_tokenizer_is_special(tok, ids[i]);
    tm_free(ids);
    return found;
}

/* Marks one content string: the next verbatim occurrence at or after *pos that
 * neither starts nor ends inside a template special token. */
static tm_status mark(const tm_tokenizer *tok, const special_set *sp, const char *text, size_t len,
                      size_t *pos, const char *c, size_t cn, size_t msg, span_list *spans) {
    if (cn == 0)
        return TM_OK;
    for (size_t from = *pos; from < len;) {
        const char *hit = find_bytes(text + from, len - from, c, cn);
        if (hit == NULL)
            break;
        size_t off = (size_t)(hit - text);
        if (!inside_special(sp, text, len, off) && !inside_special(sp, text, len, off + cn)) {
            TM_TRY(span_push(spans, off, cn));
            *pos = off + cn;
            return TM_OK;
        }
        from = off + 1;
    }
    if (has_special_text(tok, c, cn))
        return tm_fail(TM_ERR_INVALID,
                       "chat: message %zu contains special-token text and the chat template "
                       "changed the content, so it cannot be kept literal; remove the "
                       "special-token text from the message",
                       msg);
    return TM_OK;
}

tm_status tm_chat_tokenize(const tm_tokenizer *tok, const char *rendered, size_t len,
                           const char *messages_json, int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    json_error_t jerr;
    json_t      *msgs = json_loads(messages_json ? messages_json : "[]", 0, &jerr);
    if (msgs == NULL || !json_is_array(msgs)) {
        json_decref(msgs);
        return tm_fail(TM_ERR_INVALID, "chat: messages are not a JSON array");
    }
    span_list   spans = {0};
    special_set sp;
    size_t      pos = 0;
    tm_status   st = specials_collect(tok, &sp);
    for (size_t i = 0; st == TM_OK && i < json_array_size(msgs); i++) {
        json_t *content = json_object_get(json_array_get(msgs, i), "content");
        if (json_is_string(content)) {
            st = mark(tok, &sp, rendered, len, &pos, json_string_value(content),
                      json_string_length(content), i, &spans);
        } else if (json_is_array(content)) { /* [{"type": "text", "text": ...}, ...] */
            for (size_t j = 0; st == TM_OK && j < json_array_size(content); j++) {
                json_t *t = json_object_get(json_array_get(content, j), "text");
                if (json_is_string(t))
                    st = mark(tok, &sp, rendered, len, &pos, json_string_value(t),
                              json_string_length(t), i, &spans);
            }
        }
    }
    if (st == TM_OK)
        st = tm_tokenizer_encode_spans(tok, rendered, len, false, spans.v, spans.n, ids, n_ids);
    tm_free(spans.v);
    tm_free(sp.s);
    tm_free(sp.len);
    json_decref(msgs);
    return st;
}
