/*
 * tok_pretok.c - pre-tokenizer steps (HF tokenizers `pre_tokenizers`): Split
 * (PCRE2 regex with UTF|UCP and JIT, all five delimiter behaviours, invert),
 * ByteLevel, Metaspace, BertPreTokenizer, Whitespace, WhitespaceSplit, Digits,
 * Punctuation; a Sequence is the list of steps itself.
 *
 * DESIGN
 * ------
 * A segment flows through the steps as a list of pieces. Each step turns every
 * piece into zero or more pieces in a second list (own byte arena), then the
 * lists swap. A step first marks the piece as runs of (match | gap) - regex
 * matches or single characters of a class - then applies the delimiter
 * behaviour exactly as HF's NormalizedString::split does; empty pieces are
 * dropped, as HF does.
 */
#include <string.h>

#include "model/tokenizer_int.h"

void tm__tk_pieces_free(tk_pieces *p) {
    tm_free(p->v);
    tm__tk_buf_free(&p->arena);
    *p = (tk_pieces){0};
}

tm_status tm__tk_pieces_add(tk_pieces *p, const char *s, size_t n) {
    if (n == 0)
        return TM_OK;
    if (p->n == p->cap) {
        size_t    cap = p->cap ? p->cap * 2 : 64;
        tk_piece *v = tm_realloc(p->v, cap * sizeof *v);
        if (v == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (pieces)");
        p->v = v;
        p->cap = cap;
    }
    size_t off = p->arena.n;
    TM_TRY(tm__tk_buf_put(&p->arena, s, n));
    p->v[p->n++] = (tk_piece){off, n};
    return TM_OK;
}

tm_status tm__tk_regex_compile(const char *pat, size_t len, bool literal, pcre2_code **out) {
    int         err = 0;
    PCRE2_SIZE  eoff = 0;
    uint32_t    opt = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0);
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, len, opt, &err, &eoff, NULL);
    if (re == NULL) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(err, msg, sizeof msg);
        return tm_fail(TM_ERR_FORMAT, "tokenizer: cannot compile regex '%.*s' at offset %zu: %s",
                       (int)(len > 200 ? 200 : len), pat, (size_t)eoff, (const char *)msg);
    }
    /* JIT is an optimization: when unavailable the interpreter gives the same matches. */
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    *out = re;
    return TM_OK;
}

/* ---- segment marking ------------------------------------------------------ */
typedef struct seg {
    size_t b, e;
    bool   m; /* delimiter (a match, or a non-match when inverted) */
} seg;

typedef struct segs {
    seg   *v;
    size_t n, cap;
} segs;

static tm_status segs_push(segs *s, size_t b, size_t e, bool m) {
    if (b == e)
        return TM_OK;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        seg   *v = tm_realloc(s->v, cap * sizeof *v);
        if (v == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (splits)");
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = (seg){b, e, m};
    return TM_OK;
}

typedef struct rx_ctx {
    pcre2_match_data    *md;
    pcre2_match_context *mc;
    pcre2_jit_stack     *js;
} rx_ctx;

static tm_status mark_regex(const pcre2_code *re, rx_ctx *rx, const char *s, size_t n, segs *out) {
    size_t pos = 0, prev = 0;
    while (pos <= n) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, rx->md, rx->mc);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0 && rc != 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return tm_fail(TM_ERR_INVALID, "tokenizer: regex match failed: %s", (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(rx->md);
        size_t      mb = ov[0], me = ov[1];
        if (me == mb) { /* empty match: contributes nothing; step one character */
            if (mb >= n)
                break;
            size_t l = tm__utf8_valid_len((const uint8_t *)s + mb, n - mb);
            pos = mb + (l ? l : 1);
            continue;
        }
        TM_TRY(segs_push(out, prev, mb, false));
        TM_TRY(segs_push(out, mb, me, true));
        prev = pos = me;
    }
    return segs_push(out, prev, n, false);
}

typedef bool (*cp_pred)(uint32_t cp);

/* Each character satisfying pred is its own match (HF char-predicate patterns). */
static tm_status mark_chars(cp_pred pred, const char *s, size_t n, segs *out) {
    const uint8_t *p = (const uint8_t *)s;
    size_t         prev = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t   l = tm__utf8_decode(p + i, n - i, &cp);
        if (pred(cp)) {
            TM_TRY(segs_push(out, prev, i, false));
            TM_TRY(segs_push(out, i, i + l, true));
            prev = i + l;
        }
        i += l;
    }
    return segs_push(out, prev, n, false);
}

/* HF NormalizedString::split: applies the delimiter behaviour to marked runs. */
static tm_status emit_split(const char *s, segs *sg, tk_split_beh beh, tk_pieces *out) {
    seg   *v = sg->v;
    size_t n = sg->n, k = 0;
    switch (beh) {
    case TK_SPLIT_REMOVED:
        for (size_t i = 0; i < n; i++)
            if (!v[i].m)
                TM_TRY(tm__tk_pieces_add(out, s + v[i].b, v[i].e - v[i].b));
        return TM_OK;
    case TK_SPLIT_ISOLATED:
        for (size_t i = 0; i < n; i++)
            TM_TRY(tm__tk_pieces_add(out, s + v[i].b, v[i].e - v[i].b));
        return TM_OK;
    case TK_SPLIT_MERGED_PREV: {
        bool prev_m = false;
        for (size_t i = 0; i < n; i++) {
            if (v[i].m && !prev_m && k > 0)
                v[k - 1].e = v[i].e;
            else
                v[k++] = (seg){v[i].b, v[i].e, false};
            prev_m = v[i].m;
        }
        break;
    }
    case TK_SPLIT_MERGED_NEXT: {
        /* Walk backwards so a delimiter joins the run that follows it. */
        bool   next_m = false;
        size_t w = n; /* output written backwards into v[w..n) */
        for (size_t i = n; i-- > 0;) {
            bool m = v[i].m;
            if (m && !next_m && w < n)
                v[w].b = v[i].b;
            else
                v[--w] = (seg){v[i].b, v[i].e, false};
            next_m = m;
        }
        for (size_t i = w; i < n; i++)
            TM_TRY(tm__tk_pieces_add(out, s + v[i].b, v[i].e - v[i].b));
        return TM_OK;
    }
    case TK_SPLIT_CONTIGUOUS: {
        bool prev_m = false;
        for (size_t i = 0; i < n; i++) {
            bool m = v[i].m;
            if (m == prev_m && k > 0)
                v[k - 1].e = v[i].e;
            else
                v[k++] = (seg){v[i].b, v[i].e, false};
            prev_m = m;
        }
        break;
    }
    }
    for (size_t i = 0; i < k; i++)
        TM_TRY(tm__tk_pieces_add(out, s + v[i].b, v[i].e - v[i].b));
    return TM_OK;
}

static bool is_ws(uint32_t cp) { return tm__uni_is_whitespace(cp); }
static bool is_punct(uint32_t cp) { return tm__uni_is_punct(cp); }
static bool is_digit(uint32_t cp) { return tm__uni_is_digit(cp); }

/* The GPT-2 pattern ByteLevel(use_regex=true) splits with. */
static const char BL_REGEX[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

static tm_status bytelevel_map(const tm_tokenizer *t, const char *s, size_t n, tk_pieces *out) {
    TM_TRY(tm__tk_buf_reserve(&out->arena, 2 * n));
    size_t start = out->arena.n;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        memcpy(out->arena.p + out->arena.n, t->bl_utf8[b], t->bl_len[b]);
        out->arena.n += t->bl_len[b];
    }
    size_t len = out->arena.n - start;
    out->arena.n = start; /* re-add through pieces_add so bookkeeping stays in one place */
    if (out->n == out->cap) {
        size_t    cap = out->cap ? out->cap * 2 : 64;
        tk_piece *v = tm_realloc(out->v, cap * sizeof *v);
        if (v == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (pieces)");
        out->v = v;
        out->cap = cap;
    }
    if (len == 0)
        return TM_OK;
    out->arena.n = start + len;
    out->v[out->n++] = (tk_piece){start, len};
    return TM_OK;
}

static tm_status step_piece(const tm_tokenizer *t, const tk_pre *p, rx_ctx *rx, const char *s,
                            size_t n, bool first_piece, tk_pieces *out, segs *sg, tk_buf *tmp,
                            tk_pieces *tmpp) {
    sg->n = 0;
    switch (p->kind) {
    case TK_PRE_SPLIT:
        TM_TRY(mark_regex(p->re, rx, s, n, sg));
        if (p->invert)
            for (size_t i = 0; i < sg->n; i++)
                sg->v[i].m = !sg->v[i].m;
        return emit_split(s, sg, p->behavior, out);
    case TK_PRE_WHITESPACE:
        TM_TRY(mark_regex(p->re, rx, s, n, sg));
        for (size_t i = 0; i < sg->n; i++)
            sg->v[i].m = !sg->v[i].m;
        return emit_split(s, sg, TK_SPLIT_REMOVED, out);
    case TK_PRE_WHITESPACE_SPLIT:
        TM_TRY(mark_chars(is_ws, s, n, sg));
        return emit_split(s, sg, TK_SPLIT_REMOVED, out);
    case TK_PRE_PUNCT:
        TM_TRY(mark_chars(is_punct, s, n, sg));
        return emit_split(s, sg, p->behavior, out);
    case TK_PRE_DIGITS:
        TM_TRY(mark_chars(is_digit, s, n, sg));
        return emit_split(s, sg, p->individual_digits ? TK_SPLIT_ISOLATED : TK_SPLIT_CONTIGUOUS,
                          out);
    case TK_PRE_BERT: {
        /* Whitespace removed, then every punctuation character isolated. */
        tmpp->n = 0;
        tmpp->arena.n = 0;
        TM_TRY(mark_chars(is_ws, s, n, sg));
        TM_TRY(emit_split(s, sg, TK_SPLIT_REMOVED, tmpp));
        for (size_t i = 0; i < tmpp->n; i++) {
            const char *ps = tmpp->arena.p + tmpp->v[i].off;
            sg->n = 0;
            TM_TRY(mark_chars(is_punct, ps, tmpp->v[i].len, sg));
            TM_TRY(emit_split(ps, sg, TK_SPLIT_ISOLATED, out));
        }
        return TM_OK;
    }
    case TK_PRE_BYTELEVEL: {
        tmp->n = 0;
        if (p->add_prefix_space && (n == 0 || s[0] != ' '))
            TM_TRY(tm__tk_buf_put(tmp, " ", 1));
        TM_TRY(tm__tk_buf_put(tmp, s, n));
        if (!p->use_regex)
            return bytelevel_map(t, tmp->p, tmp->n, out);
        TM_TRY(mark_regex(p->re, rx, tmp->p, tmp->n, sg));
        for (size_t i = 0; i < sg->n; i++)
            TM_TRY(bytelevel_map(t, tmp->p + sg->v[i].b, sg->v[i].e - sg->v[i].b, out));
        return TM_OK;
    }
    case TK_PRE_METASPACE: {
        tmp->n = 0;
        bool starts = n >= p->repl_len && memcmp(s, p->repl, p->repl_len) == 0;
        if (s[0] == ' ')
            starts = p->repl_len > 0; /* the space becomes the replacement */
        bool add = (p->prepend == TK_PREPEND_ALWAYS && !starts) ||
                   (p->prepend == TK_PREPEND_FIRST && first_piece && !starts);
        if (add)
            TM_TRY(tm__tk_buf_put(tmp, p->repl, p->repl_len));
        for (size_t i = 0; i < n; i++) {
            if (s[i] == ' ')
                TM_TRY(tm__tk_buf_put(tmp, p->repl, p->repl_len));
            else
                TM_TRY(tm__tk_buf_put(tmp, s + i, 1));
        }
        if (!p->split)
            return tm__tk_pieces_add(out, tmp->p, tmp->n);
        /* Split on the replacement character, merged with the following run. */
        size_t prev = 0;
        for (size_t i = 0; i + p->repl_len <= tmp->n;) {
            if (memcmp(tmp->p + i, p->repl, p->repl_len) == 0) {
                TM_TRY(segs_push(sg, prev, i, false));
                TM_TRY(segs_push(sg, i, i + p->repl_len, true));
                i += p->repl_len;
                prev = i;
            } else {
                i++;
            }
        }
        TM_TRY(segs_push(sg, prev, tmp->n, false));
        return emit_split(tmp->p, sg, TK_SPLIT_MERGED_NEXT, out);
    }
    }
    TM_ASSERT(!"unknown pre-tokenizer kind");
    return TM_ERR_INVALID;
}

tm_status tm__tk_pretokenize(const tm_tokenizer *t, const char *text, size_t n, bool first,
                             tk_pieces *out, tk_pieces *scratch) {
    out->n = 0;
    out->arena.n = 0;
    TM_TRY(tm__tk_pieces_add(out, text, n));
    if (t->n_pre == 0 || out->n == 0)
        return TM_OK;

    tm_status st = TM_OK;
    rx_ctx    rx = {0};
    segs      sg = {0};
    tk_buf    tmp = {0};
    tk_pieces tmpp = {0};
    rx.md = pcre2_match_data_create(1, NULL);
    rx.mc = pcre2_match_context_create(NULL);
    rx.js = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    if (rx.md == NULL || rx.mc == NULL || rx.js == NULL) {
        st = tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (regex state)");
        goto done;
    }
    pcre2_jit_stack_assign(rx.mc, NULL, rx.js);

    for (int k = 0; k < t->n_pre && st == TM_OK; k++) {
        scratch->n = 0;
        scratch->arena.n = 0;
        for (size_t i = 0; i < out->n && st == TM_OK; i++)
            st = step_piece(t, &t->pre[k], &rx, out->arena.p + out->v[i].off, out->v[i].len,
                            first && i == 0, scratch, &sg, &tmp, &tmpp);
        tk_pieces sw = *out;
        *out = *scratch;
        *scratch = sw;
    }
done:
    pcre2_match_data_free(rx.md);
    pcre2_match_context_free(rx.mc);
    pcre2_jit_stack_free(rx.js);
    tm_free(sg.v);
    tm__tk_buf_free(&tmp);
    tm__tk_pieces_free(&tmpp);
    return st;
}

/* Shared by the loaders: the GPT-2 pattern ByteLevel compiles when use_regex is on. */
tm_status tm__tk_bytelevel_regex(pcre2_code **out) {
    return tm__tk_regex_compile(BL_REGEX, sizeof BL_REGEX - 1, false, out);
}
