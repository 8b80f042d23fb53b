/*
 * jinja_lexer.c - turns template text into tokens, applying whitespace control
 * the way Jinja's lexer does with Hugging Face's settings:
 *
 *   - newlines are normalized to "\n" and one trailing newline is dropped
 *     (keep_trailing_newline=False);
 *   - "{%-" / "{{-" / "{#-" strip all whitespace before the tag, "-%}" / "-}}"
 *     / "-#}" all whitespace after it;
 *   - trim_blocks: the first newline after a block or comment tag is removed
 *     (not after "+%}");
 *   - lstrip_blocks: spaces and tabs between the start of a line and a block
 *     or comment tag are removed (not for "{%+"), where "start of a line" means
 *     after a newline in the text, or the text follows a tag that ended a line,
 *     or the template starts there.
 *
 * {% raw %}...{% endraw %} becomes one text token.
 */
#include <errno.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "jinja_int.h"

typedef struct lexer {
    jj_arena   *arena;
    const char *name;
    const char *s; /* normalized source */
    size_t      n, i;
    int32_t     line, col;
    jj_tokens  *toks;
} lexer;

static tm_status lex_err(lexer *L, int32_t line, int32_t col, const char *msg) {
    return tm_fail(TM_ERR_FORMAT, "%s:%d:%d: %s", L->name, line, col, msg);
}

static tm_status push(lexer *L, jj_tok t) {
    jj_tokens *T = L->toks;
    if (T->n == T->cap) {
        size_t  cap = T->cap ? T->cap * 2 : 64;
        jj_tok *v = tm__jj_alloc(L->arena, cap * sizeof(jj_tok));
        if (v == NULL)
            return tm_fail(TM_ERR_NOMEM, "%s: out of memory lexing", L->name);
        if (T->n)
            memcpy(v, T->v, T->n * sizeof(jj_tok));
        T->v = v;
        T->cap = cap;
    }
    T->v[T->n++] = t;
    return TM_OK;
}

/* Advances to position j, keeping line/col in step. */
static void adv_to(lexer *L, size_t j) {
    for (; L->i < j; L->i++) {
        if (L->s[L->i] == '\n') {
            L->line++;
            L->col = 1;
        } else if (((unsigned char)L->s[L->i] & 0xc0) != 0x80) {
            L->col++;
        }
    }
}

static bool is_ws(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool starts(const lexer *L, size_t i, const char *lit) {
    size_t k = strlen(lit);
    return i + k <= L->n && memcmp(L->s + i, lit, k) == 0;
}

/* Finds the next tag opener at or after i: returns its position or n. */
static size_t find_open(const lexer *L, size_t i) {
    for (; i + 1 < L->n; i++)
        if (L->s[i] == '{' && (L->s[i + 1] == '{' || L->s[i + 1] == '%' || L->s[i + 1] == '#'))
            return i;
    return L->n;
}

/* Is the tag at i "{% raw %}" (with optional -/+ controls)? Sets *end past it. */
static bool is_raw_tag(const lexer *L, size_t i, const char *word, size_t *end, bool *strip_after) {
    size_t j = i + 2;
    if (j < L->n && (L->s[j] == '-' || L->s[j] == '+'))
        j++;
    while (j < L->n && is_ws(L->s[j]))
        j++;
    size_t k = strlen(word);
    if (j + k > L->n || memcmp(L->s + j, word, k) != 0)
        return false;
    j += k;
    while (j < L->n && is_ws(L->s[j]))
        j++;
    *strip_after = false;
    if (j < L->n && (L->s[j] == '-' || L->s[j] == '+')) {
        *strip_after = L->s[j] == '-';
        j++;
    }
    if (!starts(L, j, "%}"))
        return false;
    *end = j + 2;
    return true;
}

static tm_status push_text(lexer *L, const char *p, size_t n, int32_t line, int32_t col) {
    if (n == 0)
        return TM_OK;
    return push(L, (jj_tok){.type = JT_TEXT, .s = p, .n = n, .line = line, .col = col});
}

static tm_status lex_string(lexer *L, jj_tok *t) {
    char   q = L->s[L->i];
    size_t j = L->i + 1;
    char  *out = tm__jj_alloc(L->arena, L->n - L->i + 1);
    size_t o = 0;
    if (out == NULL)
        return tm_fail(TM_ERR_NOMEM, "%s: out of memory lexing", L->name);
    while (j < L->n && L->s[j] != q) {
        char ch = L->s[j];
        if (ch != '\\' || j + 1 >= L->n) {
            out[o++] = ch;
            j++;
            continue;
        }
        char e = L->s[j + 1];
        j += 2;
        switch (e) {
        case 'n': out[o++] = '\n'; break;
        case 't': out[o++] = '\t'; break;
        case 'r': out[o++] = '\r'; break;
        case 'b': out[o++] = '\b'; break;
        case 'f': out[o++] = '\f'; break;
        case 'v': out[o++] = '\v'; break;
        case 'a': out[o++] = '\a'; break;
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7': {
            /* octal: up to three digits, as Python */
            uint32_t cp = (uint32_t)(e - '0');
            for (int k = 0; k < 2 && j < L->n && L->s[j] >= '0' && L->s[j] <= '7'; k++)
                cp = cp * 8 + (uint32_t)(L->s[j++] - '0');
            o += tm__jj_utf8_put(cp, out + o);
            break;
        }
        case '\\': out[o++] = '\\'; break;
        case '\'': out[o++] = '\''; break;
        case '"': out[o++] = '"'; break;
        case '\n': break; /* line continuation */
        case 'x':
        case 'u':
        case 'U': {
            size_t   nd = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            size_t   k;
            for (k = 0; k < nd && j + k < L->n; k++) {
                char h = L->s[j + k];
                int  d = h >= '0' && h <= '9'   ? h - '0'
                         : h >= 'a' && h <= 'f' ? h - 'a' + 10
                         : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                : -1;
                if (d < 0)
                    break;
                cp = cp * 16 + (uint32_t)d;
            }
            if (k != nd || cp > 0x10ffff)
                return lex_err(L, t->line, t->col, "bad escape in string literal");
            j += nd;
            o += tm__jj_utf8_put(cp, out + o);
            break;
        }
        default:
            /* Python keeps unknown escapes verbatim. */
            out[o++] = '\\';
            out[o++] = e;
        }
    }
    if (j >= L->n)
        return lex_err(L, t->line, t->col, "unterminated string literal");
    t->type = JT_STRING;
    t->s = out;
    t->n = o;
    adv_to(L, j + 1);
    return TM_OK;
}

static tm_status lex_number(lexer *L, jj_tok *t, bool after_dot) {
    size_t j = L->i;
    char   buf[128];
    size_t o = 0;
    bool   is_float = false;
    while (j < L->n && ((L->s[j] >= '0' && L->s[j] <= '9') || L->s[j] == '_')) {
        if (L->s[j] != '_' && o < sizeof buf - 1)
            buf[o++] = L->s[j];
        j++;
    }
    /* Jinja's float rule does not fire right after a '.', so x.0.1 is two lookups. */
    if (!after_dot && j + 1 < L->n && L->s[j] == '.' && L->s[j + 1] >= '0' && L->s[j + 1] <= '9') {
        is_float = true;
        if (o < sizeof buf - 1)
            buf[o++] = '.';
        else
            o = sizeof buf; /* marks "too long" (checked below) */
        j++;
        while (j < L->n && ((L->s[j] >= '0' && L->s[j] <= '9') || L->s[j] == '_')) {
            if (L->s[j] != '_' && o < sizeof buf - 1)
                buf[o++] = L->s[j];
            j++;
        }
    }
    if (!after_dot && j < L->n && (L->s[j] == 'e' || L->s[j] == 'E')) {
        size_t k = j + 1;
        if (k < L->n && (L->s[k] == '+' || L->s[k] == '-'))
            k++;
        if (k < L->n && L->s[k] >= '0' && L->s[k] <= '9') {
            is_float = true;
            while (j < k && o < sizeof buf - 1)
                buf[o++] = L->s[j++];
            while (j < L->n && L->s[j] >= '0' && L->s[j] <= '9') {
                if (o < sizeof buf - 1)
                    buf[o++] = L->s[j];
                j++;
            }
        }
    }
    if (o >= sizeof buf - 1) /* digits were dropped: never parse a truncated literal */
        return lex_err(L, t->line, t->col, "number literal longer than 126 characters");
    buf[o] = '\0';
    if (is_float) {
        t->type = JT_FLOAT;
        t->fval = strtod(buf, NULL);
    } else {
        t->type = JT_INT;
        errno = 0;
        t->ival = strtoll(buf, NULL, 10);
        if (errno == ERANGE) /* Python has big integers; we refuse rather than clamp */
            return lex_err(L, t->line, t->col, "integer literal too large");
    }
    adv_to(L, j);
    return TM_OK;
}

/* Lexes the inside of a {{ }} or {% %} tag. On return L->i is past the closer;
 * *strip_after and *keep_after tell the closer's - / + control. */
static tm_status lex_tag(lexer *L, bool is_var, bool *strip_after, bool *keep_after) {
    int32_t line0 = L->line, col0 = L->col;
    int     depth = 0; /* brackets: a "}}" inside {...} literals is not the closer */
    for (;;) {
        while (L->i < L->n && is_ws(L->s[L->i]))
            adv_to(L, L->i + 1);
        if (L->i >= L->n)
            return lex_err(L, line0, col0,
                           is_var ? "unexpected end of template: missing '}}'"
                                  : "unexpected end of template: missing '%}'");
        const char *close = is_var ? "}}" : "%}";
        size_t      i = L->i;
        jj_tok      t = {.line = L->line, .col = L->col};
        char        ch = L->s[i]; /* before the "goto op" below, which lands past this point */
        if ((L->s[i] == '-' || L->s[i] == '+') && starts(L, i + 1, close) &&
            (depth == 0 || !is_var)) {
            if (L->s[i] == '+' && is_var)
                goto op; /* "+}}" is not a control in variables */
            *strip_after = L->s[i] == '-';
            *keep_after = L->s[i] == '+';
            adv_to(L, i + 3);
            return push(
                L,
                (jj_tok){.type = is_var ? JT_VAR_END : JT_BLOCK_END, .line = t.line, .col = t.col});
        }
        if (starts(L, i, close) && (depth == 0 || !is_var)) {
            *strip_after = *keep_after = false;
            adv_to(L, i + 2);
            return push(
                L,
                (jj_tok){.type = is_var ? JT_VAR_END : JT_BLOCK_END, .line = t.line, .col = t.col});
        }
        if (ch == '\'' || ch == '"') {
            TM_TRY(lex_string(L, &t));
        } else if (ch >= '0' && ch <= '9') {
            bool after_dot = i > 0 && L->s[i - 1] == '.';
            TM_TRY(lex_number(L, &t, after_dot));
        } else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_') {
            size_t j = i;
            while (j < L->n &&
                   ((L->s[j] >= 'a' && L->s[j] <= 'z') || (L->s[j] >= 'A' && L->s[j] <= 'Z') ||
                    (L->s[j] >= '0' && L->s[j] <= '9') || L->s[j] == '_'))
                j++;
            t.type = JT_NAME;
            t.s = L->s + i;
            t.n = j - i;
            adv_to(L, j);
        } else {
        op:
            t.type = JT_OP;
            static const struct {
                const char *s;
                int32_t     op;
            } two[] = {{"//", JJ_OP_FLOORDIV}, {"**", JJ_OP_POW}, {"==", JJ_OP_EQ},
                       {"!=", JJ_OP_NE},       {"<=", JJ_OP_LE},  {">=", JJ_OP_GE}};
            size_t w = 0;
            for (size_t k = 0; k < sizeof two / sizeof two[0]; k++)
                if (starts(L, i, two[k].s)) {
                    t.op = two[k].op;
                    w = 2;
                    break;
                }
            if (w == 0) {
                if (strchr("+-*/%~[](){}<>=.:|,;", ch) == NULL || ch == '\0') {
                    char msg[64];
                    snprintf(msg, sizeof msg, "unexpected character '%c'",
                             ch >= 0x20 && ch < 0x7f ? ch : '?');
                    return lex_err(L, t.line, t.col, msg);
                }
                t.op = ch;
                w = 1;
                if (ch == '(' || ch == '[' || ch == '{')
                    depth++;
                else if ((ch == ')' || ch == ']' || ch == '}') && depth > 0)
                    depth--;
            }
            adv_to(L, i + w);
        }
        TM_TRY(push(L, t));
    }
}

tm_status tm__jj_lex(jj_arena *arena, const char *name, const char *src, size_t len,
                     jj_tokens *toks) {
    /* Normalize newlines (\r\n and \r become \n) and drop one trailing newline. */
    char *s = tm__jj_alloc(arena, len + 1);
    if (s == NULL)
        return tm_fail(TM_ERR_NOMEM, "%s: out of memory lexing", name);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            s[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n')
                i++;
        } else {
            s[n++] = src[i];
        }
    }
    if (n > 0 && s[n - 1] == '\n')
        n--;
    s[n] = '\0';

    lexer L = {.arena = arena, .name = name, .s = s, .n = n, .line = 1, .col = 1, .toks = toks};
    bool  line_starting = true; /* the previous tag ended a line, or this is the start */
    bool  strip_next = false;   /* the previous tag ended with '-' */
    while (L.i < L.n) {
        size_t  text_start = L.i;
        int32_t tline = L.line, tcol = L.col;
        if (strip_next) {
            while (text_start < L.n && is_ws(L.s[text_start]))
                text_start++;
            adv_to(&L, text_start);
            tline = L.line;
            tcol = L.col;
            strip_next = false;
        }
        size_t open = find_open(&L, L.i);
        size_t tend = open; /* end of text that is kept */
        if (open < L.n) {
            char kind = L.s[open + 1];
            char ctl = open + 2 < L.n ? L.s[open + 2] : '\0';
            if (ctl == '-') {
                while (tend > text_start && is_ws(L.s[tend - 1]))
                    tend--;
            } else if (ctl != '+' && kind != '{') {
                /* lstrip_blocks */
                size_t ls = tend;
                while (ls > text_start && (L.s[ls - 1] == ' ' || L.s[ls - 1] == '\t'))
                    ls--;
                bool at_line = ls > text_start ? L.s[ls - 1] == '\n' : line_starting;
                if (at_line)
                    tend = ls;
            }
        }
        TM_TRY(push_text(&L, L.s + text_start, tend - text_start, tline, tcol));
        adv_to(&L, open);
        if (open >= L.n)
            break;

        char   kind = L.s[open + 1];
        bool   strip_after = false, keep_after = false;
        size_t raw_end;
        if (kind == '#') {
            size_t j = open + 2;
            while (j + 1 < L.n && !(L.s[j] == '#' && L.s[j + 1] == '}'))
                j++;
            if (j + 1 >= L.n)
                return lex_err(&L, L.line, L.col, "unterminated comment");
            strip_after = L.s[j - 1] == '-' && j - 1 >= open + 2;
            keep_after = L.s[j - 1] == '+' && j - 1 >= open + 2;
            adv_to(&L, j + 2);
        } else if (kind == '%' && is_raw_tag(&L, open, "raw", &raw_end, &strip_after)) {
            /* Raw body runs to the first {% endraw %}. */
            size_t j = raw_end;
            if (strip_after)
                while (j < L.n && is_ws(L.s[j]))
                    j++;
            size_t body = j, e, body_end;
            bool   s2 = false;
            for (;;) {
                j = find_open(&L, j);
                if (j >= L.n)
                    return lex_err(&L, L.line, L.col, "missing {% endraw %}");
                if (L.s[j + 1] == '%' && is_raw_tag(&L, j, "endraw", &e, &s2))
                    break;
                j++;
            }
            body_end = j;
            if (L.s[j + 2] == '-')
                while (body_end > body && is_ws(L.s[body_end - 1]))
                    body_end--;
            adv_to(&L, raw_end);
            TM_TRY(push_text(&L, L.s + body, body_end - body, L.line, L.col));
            adv_to(&L, e);
            strip_after = s2;
            keep_after = false;
        } else {
            bool is_var = kind == '{';
            TM_TRY(push(&L, (jj_tok){.type = is_var ? JT_VAR_BEGIN : JT_BLOCK_BEGIN,
                                     .line = L.line,
                                     .col = L.col}));
            size_t after = open + 2;
            if (after < L.n && (L.s[after] == '-' || L.s[after] == '+'))
                after++;
            adv_to(&L, after);
            TM_TRY(lex_tag(&L, is_var, &strip_after, &keep_after));
            if (is_var) {
                line_starting = false;
                if (strip_after) {
                    strip_next = true;
                    size_t j = L.i;
                    while (j < L.n && is_ws(L.s[j]))
                        j++;
                    line_starting = j > L.i && L.s[j - 1] == '\n';
                }
                continue;
            }
        }
        /* Block or comment end: trim_blocks unless '+', strip on '-'. */
        line_starting = false;
        if (strip_after) {
            strip_next = true;
            size_t j = L.i;
            while (j < L.n && is_ws(L.s[j]))
                j++;
            line_starting = j > L.i && L.s[j - 1] == '\n';
        } else if (!keep_after && L.i < L.n && L.s[L.i] == '\n') {
            adv_to(&L, L.i + 1);
            line_starting = true;
        }
    }
    return push(&L, (jj_tok){.type = JT_EOF, .line = L.line, .col = L.col});
}
