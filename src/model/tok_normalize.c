/*
 * tok_normalize.c - normalizer steps (HF tokenizers `normalizers`): NFC, NFKC, NFD,
 * NFKD (utf8proc), Lowercase, StripAccents, BertNormalizer, Prepend, Replace
 * (literal or regex) and Strip. Each step reads one buffer and writes the other;
 * the input is valid UTF-8 (checked by the encode driver) and so is every output.
 */
#include <string.h>
#include <utf8proc.h>

#include "model/tokenizer_int.h"

static tm_status norm_unicode(const char *in, size_t n, utf8proc_option_t opt, tk_buf *out) {
    out->n = 0;
    if (n == 0)
        return TM_OK;
    /* Decompose into UTF-32 through our allocator, then recompose and re-encode in
     * place (utf8proc_map would allocate with malloc). */
    utf8proc_ssize_t need =
        utf8proc_decompose((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)n, NULL, 0, opt);
    if (need < 0)
        return tm_fail(TM_ERR_INVALID, "tokenizer: unicode normalization failed: %s",
                       utf8proc_errmsg(need));
    size_t bytes;
    if (!tm_size_mul((size_t)need + 1, sizeof(utf8proc_int32_t), &bytes))
        return tm_fail(TM_ERR_NOMEM, "tokenizer: normalization size overflow");
    utf8proc_int32_t *buf = tm_malloc(bytes);
    if (buf == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory normalizing %zu bytes", n);
    utf8proc_ssize_t got =
        utf8proc_decompose((const utf8proc_uint8_t *)in, (utf8proc_ssize_t)n, buf, need, opt);
    if (got < 0 || got > need) {
        tm_free(buf);
        return tm_fail(TM_ERR_INVALID, "tokenizer: unicode normalization failed");
    }
    utf8proc_ssize_t len = utf8proc_reencode(buf, got, opt);
    tm_status        st = TM_OK;
    if (len < 0)
        st = tm_fail(TM_ERR_INVALID, "tokenizer: unicode normalization failed");
    else
        st = tm__tk_buf_put(out, buf, (size_t)len);
    tm_free(buf);
    return st;
}

static tm_status put_cp(tk_buf *out, uint32_t cp) {
    char   tmp[4];
    size_t l = tm__utf8_encode(cp, tmp);
    return tm__tk_buf_put(out, tmp, l);
}

/* Rust str::to_lowercase per code point; utf8proc gives the simple mapping,
 * and U+0130 is the one code point whose full lowercase is two characters. */
static tm_status put_lower(tk_buf *out, uint32_t cp) {
    if (cp == 0x130) {
        TM_TRY(put_cp(out, 'i'));
        return put_cp(out, 0x307);
    }
    return put_cp(out, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
}

static tm_status norm_lowercase(const char *in, size_t n, tk_buf *out) {
    out->n = 0;
    const uint8_t *p = (const uint8_t *)in;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += tm__utf8_decode(p + i, n - i, &cp);
        TM_TRY(put_lower(out, cp));
    }
    return TM_OK;
}

static tm_status norm_strip_accents(const char *in, size_t n, tk_buf *out) {
    out->n = 0;
    const uint8_t *p = (const uint8_t *)in;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t   l = tm__utf8_decode(p + i, n - i, &cp);
        if (!tm__uni_is_mark_nonspacing(cp))
            TM_TRY(tm__tk_buf_put(out, in + i, l));
        i += l;
    }
    return TM_OK;
}

/* HF BertNormalizer: clean_text, handle_chinese_chars, strip_accents (NFD then
 * drop Mn), lowercase, in that order. */
static tm_status norm_bert(const tk_norm *s, const char *in, size_t n, tk_buf *out, tk_buf *tmp) {
    out->n = 0;
    const uint8_t *p = (const uint8_t *)in;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t   l = tm__utf8_decode(p + i, n - i, &cp);
        i += l;
        if (s->clean_text) {
            if (cp == 0 || cp == 0xFFFD || tm__uni_is_control(cp))
                continue;
            if (cp == '\t' || cp == '\n' || cp == '\r' || tm__uni_is_whitespace(cp))
                cp = ' ';
        }
        if (s->handle_chinese && tm__uni_is_cjk(cp)) {
            TM_TRY(put_cp(out, ' '));
            TM_TRY(put_cp(out, cp));
            TM_TRY(put_cp(out, ' '));
            continue;
        }
        TM_TRY(put_cp(out, cp));
    }
    if (s->strip_accents) {
        TM_TRY(norm_unicode(out->p, out->n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, tmp));
        TM_TRY(norm_strip_accents(tmp->p, tmp->n, out));
    }
    if (s->lowercase) {
        TM_TRY(norm_lowercase(out->p, out->n, tmp));
        out->n = 0;
        TM_TRY(tm__tk_buf_put(out, tmp->p, tmp->n));
    }
    return TM_OK;
}

static tm_status norm_replace(const tk_norm *s, const char *in, size_t n, tk_buf *out) {
    out->n = 0;
    if (s->re == NULL) {
        if (s->n1 == 0)
            return tm__tk_buf_put(out, in, n);
        size_t i = 0;
        while (i < n) {
            if (n - i >= s->n1 && memcmp(in + i, s->s1, s->n1) == 0) {
                TM_TRY(tm__tk_buf_put(out, s->s2, s->n2));
                i += s->n1;
            } else {
                TM_TRY(tm__tk_buf_put(out, in + i, 1));
                i++;
            }
        }
        return TM_OK;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(s->re, NULL);
    if (md == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory for a regex match");
    size_t    pos = 0, last = 0;
    tm_status st = TM_OK;
    while (pos <= n) {
        int rc = pcre2_match(s->re, (PCRE2_SPTR)in, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
        if (rc < 0)
            break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (ov[1] == ov[0]) { /* empty match: step one character */
            size_t l = pos < n ? tm__utf8_valid_len((const uint8_t *)in + pos, n - pos) : 1;
            pos += l ? l : 1;
            continue;
        }
        if ((st = tm__tk_buf_put(out, in + last, ov[0] - last)) != TM_OK ||
            (st = tm__tk_buf_put(out, s->s2, s->n2)) != TM_OK)
            break;
        last = pos = ov[1];
    }
    pcre2_match_data_free(md);
    if (st == TM_OK && last < n)
        st = tm__tk_buf_put(out, in + last, n - last);
    return st;
}

static tm_status norm_strip(const tk_norm *s, const char *in, size_t n, tk_buf *out) {
    out->n = 0;
    const uint8_t *p = (const uint8_t *)in;
    size_t         b = 0, e = n;
    if (s->left) {
        while (b < e) {
            uint32_t cp;
            size_t   l = tm__utf8_decode(p + b, e - b, &cp);
            if (!tm__uni_is_whitespace(cp))
                break;
            b += l;
        }
    }
    if (s->right) {
        while (e > b) {
            size_t k = e - 1;
            while (k > b && (p[k] & 0xC0) == 0x80)
                k--;
            uint32_t cp;
            tm__utf8_decode(p + k, e - k, &cp);
            if (!tm__uni_is_whitespace(cp))
                break;
            e = k;
        }
    }
    return tm__tk_buf_put(out, in + b, e - b);
}

static tm_status norm_step(const tk_norm *s, const char *in, size_t n, tk_buf *out, tk_buf *tmp) {
    switch (s->kind) {
    case TK_NORM_NFC: return norm_unicode(in, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE, out);
    case TK_NORM_NFD: return norm_unicode(in, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE, out);
    case TK_NORM_NFKC:
        return norm_unicode(in, n, UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case TK_NORM_NFKD:
        return norm_unicode(in, n, UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case TK_NORM_LOWERCASE: return norm_lowercase(in, n, out);
    case TK_NORM_STRIP_ACCENTS: return norm_strip_accents(in, n, out);
    case TK_NORM_BERT: return norm_bert(s, in, n, out, tmp);
    case TK_NORM_PREPEND:
        out->n = 0;
        if (n > 0) /* HF Prepend leaves an empty string empty */
            TM_TRY(tm__tk_buf_put(out, s->s1, s->n1));
        return tm__tk_buf_put(out, in, n);
    case TK_NORM_REPLACE: return norm_replace(s, in, n, out);
    case TK_NORM_STRIP: return norm_strip(s, in, n, out);
    }
    TM_ASSERT(!"unknown normalizer kind"); /* loaders only store the kinds above */
    return TM_ERR_INVALID;
}

tm_status tm__tk_normalize(const tm_tokenizer *t, const char *in, size_t n, tk_buf *out) {
    out->n = 0;
    if (t->n_norm == 0)
        return tm__tk_buf_put(out, in, n);
    tk_buf    a = {0}, tmp = {0};
    tm_status st = tm__tk_buf_put(&a, in, n);
    for (int i = 0; st == TM_OK && i < t->n_norm; i++) {
        st = norm_step(&t->norm[i], a.p, a.n, out, &tmp);
        if (st == TM_OK && i + 1 < t->n_norm) {
            tk_buf sw = a;
            a = *out;
            *out = sw;
        }
    }
    tm__tk_buf_free(&a);
    tm__tk_buf_free(&tmp);
    return st;
}
