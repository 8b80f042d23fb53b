/*
 * tok_wordpiece.c - the WordPiece model (BERT): greedy longest-match-first over
 * the word, continuation pieces carry the prefix ("##"); a word with a
 * character run that no piece covers, or longer than max_input_chars_per_word
 * characters, becomes the unknown token (HF `WordPiece::tokenize`).
 */
#include <string.h>

#include "model/tokenizer_int.h"

static tm_status wp_core(const tm_tokenizer *t, const char *s, size_t n, size_t n_chars,
                         tk_ids *out) {
    const uint8_t *p = (const uint8_t *)s;
    size_t         mark = out->n;
    if (t->wp_max_chars > 0 && n_chars > (size_t)t->wp_max_chars)
        goto unk;

    char  *key = NULL;
    size_t pre = t->cont_prefix_len;
    key = tm_malloc(pre + n + 1);
    if (key == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (wordpiece)");
    if (pre)
        memcpy(key, t->cont_prefix, pre);
    size_t start = 0;
    while (start < n) {
        size_t end = n;
        /* No token is longer than max_token_len bytes: start the search there. */
        size_t  lim = t->max_token_len; /* bytes; a piece is never longer than a token */
        int32_t found = -1;
        if (end - start > lim) {
            end = start + lim;
            while (end > start && (p[end] & 0xC0) == 0x80)
                end--;
        }
        while (start < end) {
            size_t klen;
            if (start > 0) {
                memcpy(key + pre, s + start, end - start);
                klen = pre + end - start;
                found = tm__tk_lookup(t, key, klen);
            } else {
                found = tm__tk_lookup(t, s, end);
            }
            if (found >= 0)
                break;
            end--;
            while (end > start && (p[end] & 0xC0) == 0x80)
                end--;
        }
        if (found < 0) {
            tm_free(key);
            out->n = mark;
            goto unk;
        }
        tm_status st = tm__tk_ids_push(out, found);
        if (st != TM_OK) {
            tm_free(key);
            return st;
        }
        start = end;
    }
    tm_free(key);
    return TM_OK;
unk:
    if (t->unk_id < 0)
        return tm_fail(TM_ERR_INVALID, "tokenizer: WordPiece word has no pieces and no unk_token");
    return tm__tk_ids_push(out, t->unk_id);
}

tm_status tm__tk_wordpiece_piece(const tm_tokenizer *t, const char *s, size_t n, tk_ids *out) {
    if (n == 0)
        return TM_OK;
    size_t n_chars = 0;
    for (size_t i = 0; i < n; i++)
        n_chars += ((uint8_t)s[i] & 0xC0) != 0x80;
    if (!t->wp_word_prefix)
        return wp_core(t, s, n, n_chars, out);
    /* llama.cpp's converted BERT vocabulary marks word starts with U+2581. */
    char *w = tm_malloc(n + 3);
    if (w == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (wordpiece)");
    memcpy(w, "\xE2\x96\x81", 3);
    memcpy(w + 3, s, n);
    tm_status st = wp_core(t, w, n + 3, n_chars, out);
    tm_free(w);
    return st;
}
