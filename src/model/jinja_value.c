/*
 * jinja_value.c - the value model of the Jinja interpreter: arena, buffers,
 * lists and dicts, and the Python semantics templates rely on (str() and
 * repr() of values, float repr, ==, ordering, truthiness, json.dumps).
 *
 * The text forms follow CPython exactly where chat templates can observe them:
 * str(None) is "None", str([1, 'a']) is "[1, 'a']", floats print with the
 * shortest round-trip repr ("1e-05", "1e+16", "0.1"), json.dumps uses ", " and
 * ": " unless an indent is given.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <utf8proc.h>

#include "jinja_int.h"

/* ---- arena ------------------------------------------------------------------ */
struct jj_chunk {
    jj_chunk *next;
    size_t    used, cap;
    _Alignas(16) unsigned char data[];
};

#define JJ_CHUNK_MIN ((size_t)64 * 1024)

void *tm__jj_alloc(jj_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0)
        n = 16;
    jj_chunk *h = a->head;
    if (h == NULL || h->cap - h->used < n) {
        size_t cap = n > JJ_CHUNK_MIN ? n : JJ_CHUNK_MIN;
        if (a->limit_bytes != 0 && (cap > a->limit_bytes || a->total_bytes > a->limit_bytes - cap))
            return NULL;
        h = tm_malloc(sizeof *h + cap);
        if (h == NULL)
            return NULL;
        h->used = 0;
        h->cap = cap;
        h->next = a->head;
        a->head = h;
        a->total_bytes += cap;
    }
    void *p = h->data + h->used;
    h->used += n;
    memset(p, 0, n);
    return p;
}

void tm__jj_arena_free(jj_arena *a) {
    jj_chunk *h = a->head;
    while (h != NULL) {
        jj_chunk *nx = h->next;
        tm_free(h);
        h = nx;
    }
    a->head = NULL;
    a->total_bytes = 0;
}

/* ---- byte buffer ------------------------------------------------------------ */
tm_status tm__jj_buf_put(jj_buf *b, const char *p, size_t n) {
    if (n == 0)
        return TM_OK;
    if (b->limit != 0 && (n > b->limit || b->n > b->limit - n))
        return tm_fail(TM_ERR_FORMAT, "output exceeds the limit of %zu bytes", b->limit);
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *q = tm_realloc(b->p, cap);
        if (q == NULL)
            return tm_fail(TM_ERR_NOMEM, "out of memory growing the output");
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = '\0';
    return TM_OK;
}

static tm_status buf_puts(jj_buf *b, const char *s) { return tm__jj_buf_put(b, s, strlen(s)); }

void tm__jj_buf_free(jj_buf *b) {
    tm_free(b->p);
    b->p = NULL;
    b->n = b->cap = 0;
}

/* ---- errors ----------------------------------------------------------------- */
tm_status tm__jj_err(jj_ctx *c, const char *fmt, ...) {
    char    msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line = c->node ? c->node->line : 0, col = c->node ? c->node->col : 0;
    return tm_fail(TM_ERR_FORMAT, "%s:%d:%d: %s", c->name, line, col, msg);
}

tm_status tm__jj_nomem(jj_ctx *c) {
    if (c->arena.limit_bytes != 0 && c->arena.total_bytes + JJ_CHUNK_MIN > c->arena.limit_bytes)
        return tm__jj_err(c, "template uses more than the memory limit of %zu bytes",
                          c->arena.limit_bytes);
    return tm_fail(TM_ERR_NOMEM, "%s: out of memory", c->name);
}

/* ---- lists and dicts -------------------------------------------------------- */
jj_list *tm__jj_list_new(jj_ctx *c, size_t cap) {
    jj_list *l = tm__jj_alloc(&c->arena, sizeof *l);
    if (l == NULL)
        return NULL;
    if (cap > 0) {
        size_t bytes;
        if (!tm_size_mul(cap, sizeof(jv), &bytes) ||
            (l->v = tm__jj_alloc(&c->arena, bytes)) == NULL)
            return NULL;
        l->cap = cap;
    }
    return l;
}

tm_status tm__jj_list_push(jj_ctx *c, jj_list *l, jv v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4, bytes;
        jv    *nv;
        if (!tm_size_mul(cap, sizeof(jv), &bytes) || (nv = tm__jj_alloc(&c->arena, bytes)) == NULL)
            return tm__jj_nomem(c);
        if (l->n)
            memcpy(nv, l->v, l->n * sizeof(jv));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return TM_OK;
}

jj_dict *tm__jj_dict_new(jj_ctx *c, size_t cap) {
    jj_dict *d = tm__jj_alloc(&c->arena, sizeof *d);
    (void)cap;
    return d;
}

static bool dict_find(const jj_dict *d, jv k, size_t *idx) {
    for (size_t i = 0; i < d->n; i++)
        if (tm__jj_equal(d->k[i], k)) {
            *idx = i;
            return true;
        }
    return false;
}

tm_status tm__jj_dict_set(jj_ctx *c, jj_dict *d, jv k, jv v) {
    size_t i;
    if (dict_find(d, k, &i)) {
        d->v[i] = v;
        return TM_OK;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8, bytes;
        jv    *nk, *nv;
        if (!tm_size_mul(cap, sizeof(jv), &bytes) ||
            (nk = tm__jj_alloc(&c->arena, bytes)) == NULL ||
            (nv = tm__jj_alloc(&c->arena, bytes)) == NULL)
            return tm__jj_nomem(c);
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof(jv));
            memcpy(nv, d->v, d->n * sizeof(jv));
        }
        d->k = nk;
        d->v = nv;
        d->cap = cap;
    }
    d->k[d->n] = k;
    d->v[d->n] = v;
    d->n++;
    return TM_OK;
}

bool tm__jj_dict_get(const jj_dict *d, jv k, jv *out) {
    size_t i;
    if (!dict_find(d, k, &i))
        return false;
    *out = d->v[i];
    return true;
}

bool tm__jj_dict_gets(const jj_dict *d, const char *key, jv *out) {
    return tm__jj_dict_get(d, jv_strn(key, strlen(key)), out);
}

tm_status tm__jj_str_dup(jj_ctx *c, const char *p, size_t n, jv *out) {
    char *q = tm__jj_alloc(&c->arena, n + 1);
    if (q == NULL)
        return tm__jj_nomem(c);
    if (n)
        memcpy(q, p, n);
    *out = jv_strn(q, n);
    return TM_OK;
}

tm_status tm__jj_str_cat(jj_ctx *c, jv a, jv b, jv *out) {
    size_t n;
    if (!tm_size_add(a.u.s.n, b.u.s.n, &n))
        return tm__jj_nomem(c);
    char *q = tm__jj_alloc(&c->arena, n + 1);
    if (q == NULL)
        return tm__jj_nomem(c);
    if (a.u.s.n)
        memcpy(q, a.u.s.p, a.u.s.n);
    if (b.u.s.n)
        memcpy(q + a.u.s.n, b.u.s.p, b.u.s.n);
    *out = jv_strn(q, n);
    return TM_OK;
}

/* ---- semantics -------------------------------------------------------------- */
bool tm__jj_truthy(jv v) {
    switch (v.type) {
    case JV_UNDEF:
    case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STR: return v.u.s.n != 0;
    case JV_LIST:
    case JV_TUPLE: return v.u.l->n != 0;
    case JV_DICT: return v.u.d->n != 0;
    case JV_NS:
    case JV_FUNC: return true;
    }
    return false;
}

static double num_f(jv v) {
    return v.type == JV_FLOAT ? v.u.f : v.type == JV_INT ? (double)v.u.i : (double)v.u.b;
}

/* Containers built by a template can nest arbitrarily deep ([[[...]]] in a loop);
 * recursion over values stops at this depth so the C stack stays bounded. */
#define JJ_VALUE_MAX_DEPTH 500

static bool equal_d(jv a, jv b, int depth) {
    if (depth > JJ_VALUE_MAX_DEPTH)
        return false;
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.type != JV_FLOAT && b.type != JV_FLOAT) {
            int64_t x = a.type == JV_INT ? a.u.i : a.u.b, y = b.type == JV_INT ? b.u.i : b.u.b;
            return x == y;
        }
        return num_f(a) == num_f(b);
    }
    if (a.type != b.type) {
        /* Python: a list never equals a tuple; None only equals None. */
        return false;
    }
    switch (a.type) {
    case JV_UNDEF:
    case JV_NONE: return true;
    case JV_STR: return a.u.s.n == b.u.s.n && memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0;
    case JV_LIST:
    case JV_TUPLE:
        if (a.u.l->n != b.u.l->n)
            return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!equal_d(a.u.l->v[i], b.u.l->v[i], depth + 1))
                return false;
        return true;
    case JV_DICT:
        if (a.u.d->n != b.u.d->n)
            return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv o;
            if (!tm__jj_dict_get(b.u.d, a.u.d->k[i], &o) || !equal_d(a.u.d->v[i], o, depth + 1))
                return false;
        }
        return true;
    case JV_NS: return a.u.d == b.u.d;
    case JV_FUNC: return a.u.fn == b.u.fn;
    default: return false;
    }
}

bool tm__jj_equal(jv a, jv b) { return equal_d(a, b, 0); }

const char *tm__jj_type_name(jv v) {
    switch (v.type) {
    case JV_UNDEF: return "Undefined";
    case JV_NONE: return "NoneType";
    case JV_BOOL: return "bool";
    case JV_INT: return "int";
    case JV_FLOAT: return "float";
    case JV_STR: return "str";
    case JV_LIST: return "list";
    case JV_TUPLE: return "tuple";
    case JV_DICT: return "dict";
    case JV_NS: return "Namespace";
    case JV_FUNC: return "function";
    }
    return "?";
}

static tm_status compare_d(jj_ctx *c, jv a, jv b, int depth, int *out) {
    if (depth > JJ_VALUE_MAX_DEPTH)
        return tm__jj_err(c, "values nested too deeply to compare");
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.type != JV_FLOAT && b.type != JV_FLOAT) {
            int64_t x = a.type == JV_INT ? a.u.i : a.u.b, y = b.type == JV_INT ? b.u.i : b.u.b;
            *out = x < y ? -1 : x > y;
        } else {
            double x = num_f(a), y = num_f(b);
            *out = x < y ? -1 : x > y;
        }
        return TM_OK;
    }
    if (a.type == JV_STR && b.type == JV_STR) {
        /* Byte order of UTF-8 equals code point order, as Python compares. */
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int    r = n ? memcmp(a.u.s.p, b.u.s.p, n) : 0;
        *out = r != 0 ? (r < 0 ? -1 : 1) : (a.u.s.n < b.u.s.n ? -1 : a.u.s.n > b.u.s.n);
        return TM_OK;
    }
    if (jv_is_seq(a) && a.type == b.type) {
        size_t n = a.u.l->n < b.u.l->n ? a.u.l->n : b.u.l->n;
        for (size_t i = 0; i < n; i++) {
            if (tm__jj_equal(a.u.l->v[i], b.u.l->v[i]))
                continue;
            return compare_d(c, a.u.l->v[i], b.u.l->v[i], depth + 1, out);
        }
        *out = a.u.l->n < b.u.l->n ? -1 : a.u.l->n > b.u.l->n;
        return TM_OK;
    }
    if (a.type == JV_UNDEF || b.type == JV_UNDEF)
        return tm__jj_err(c, "'%s' is undefined",
                          a.type == JV_UNDEF && a.u.undef ? a.u.undef
                          : b.u.undef                     ? b.u.undef
                                                          : "value");
    return tm__jj_err(c, "'<' not supported between instances of '%s' and '%s'",
                      tm__jj_type_name(a), tm__jj_type_name(b));
}

tm_status tm__jj_compare(jj_ctx *c, jv a, jv b, int *out) { return compare_d(c, a, b, 0, out); }

/* ---- UTF-8 ------------------------------------------------------------------ */
size_t tm__jj_utf8_next(const char *p, size_t n, size_t i, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)p;
    unsigned char        c0 = s[i];
    size_t len = c0 < 0x80 ? 1 : (c0 >> 5) == 6 ? 2 : (c0 >> 4) == 14 ? 3 : (c0 >> 3) == 30 ? 4 : 0;
    if (len <= 1 || i + len > n) {
        *cp = c0;
        return i + 1;
    }
    uint32_t v = c0 & (0x7f >> len);
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xc0) != 0x80) {
            *cp = c0;
            return i + 1;
        }
        v = (v << 6) | (s[i + k] & 0x3f);
    }
    *cp = v;
    return i + len;
}

size_t tm__jj_utf8_len(const char *p, size_t n) {
    size_t   i = 0, k = 0;
    uint32_t cp;
    while (i < n) {
        i = tm__jj_utf8_next(p, n, i, &cp);
        k++;
    }
    return k;
}

size_t tm__jj_utf8_put(uint32_t cp, char out[4]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xe0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

bool tm__jj_is_space(uint32_t cp) {
    /* Python's str.isspace(): ASCII whitespace, the information separators
     * 0x1c-0x1f, NEL and the Unicode space separators. */
    return (cp >= 9 && cp <= 13) || cp == ' ' || (cp >= 0x1c && cp <= 0x1f) || cp == 0x85 ||
           cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

/* ---- str() and repr() ------------------------------------------------------- */
void tm__jj_float_repr(double f, char *buf, size_t cap) {
    if (isnan(f)) {
        snprintf(buf, cap, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, cap, f < 0 ? "-inf" : "inf");
        return;
    }
    if (f == 0.0) {
        snprintf(buf, cap, signbit(f) ? "-0.0" : "0.0");
        return;
    }
    /* Shortest digits that round-trip (Python's repr), then Python's layout:
     * exponent form when exp < -4 or exp >= 16. */
    char tmp[40];
    int  prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f)
            break;
    }
    char  digits[24];
    int   nd = 0;
    bool  neg = tmp[0] == '-';
    char *q = tmp + (neg ? 1 : 0);
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9')
            digits[nd++] = *q;
    int exp = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    char  out[64];
    char *o = out;
    if (neg)
        *o++ = '-';
    if (exp < -4 || exp >= 16) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        snprintf(o, sizeof out - (size_t)(o - out), "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
    } else if (exp < 0) {
        *o++ = '0';
        *o++ = '.';
        for (int k = 0; k < -exp - 1; k++)
            *o++ = '0';
        memcpy(o, digits, (size_t)nd);
        o[nd] = '\0';
    } else {
        for (int k = 0; k <= exp; k++)
            *o++ = k < nd ? digits[k] : '0';
        *o++ = '.';
        if (nd > exp + 1) {
            memcpy(o, digits + exp + 1, (size_t)(nd - exp - 1));
            o += nd - exp - 1;
        } else {
            *o++ = '0';
        }
        *o = '\0';
    }
    snprintf(buf, cap, "%s", out);
}

/* Python's str.isprintable() as repr() uses it: control, format, surrogate,
 * private-use, unassigned and separator characters (but ' ') are escaped. */
static bool repr_printable(uint32_t cp) {
    if (cp == ' ')
        return true;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_ZS:
    case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: return false;
    default: return true;
    }
}

static tm_status repr_str(jv v, jj_buf *b) {
    const char *p = v.u.s.p;
    size_t      n = v.u.s.n;
    bool        has_sq = memchr(p, '\'', n) != NULL, has_dq = memchr(p, '"', n) != NULL;
    char        q = (has_sq && !has_dq) ? '"' : '\'';
    TM_TRY(tm__jj_buf_put(b, &q, 1));
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        size_t   j = tm__jj_utf8_next(p, n, i, &cp);
        char     esc[12];
        if (cp == (uint32_t)q || cp == '\\') {
            esc[0] = '\\';
            esc[1] = (char)cp;
            TM_TRY(tm__jj_buf_put(b, esc, 2));
        } else if (cp == '\n') {
            TM_TRY(buf_puts(b, "\\n"));
        } else if (cp == '\r') {
            TM_TRY(buf_puts(b, "\\r"));
        } else if (cp == '\t') {
            TM_TRY(buf_puts(b, "\\t"));
        } else if (j - i == 1 && cp >= 0x80) {
            snprintf(esc, sizeof esc, "\\x%02x", cp & 0xff); /* invalid UTF-8 byte */
            TM_TRY(buf_puts(b, esc));
        } else if (!repr_printable(cp)) {
            if (cp < 0x100)
                snprintf(esc, sizeof esc, "\\x%02x", cp);
            else if (cp < 0x10000)
                snprintf(esc, sizeof esc, "\\u%04x", cp);
            else
                snprintf(esc, sizeof esc, "\\U%08x", cp);
            TM_TRY(buf_puts(b, esc));
        } else {
            TM_TRY(tm__jj_buf_put(b, p + i, j - i));
        }
        i = j;
    }
    return tm__jj_buf_put(b, &q, 1);
}

static tm_status repr_d(jj_ctx *c, jv v, int depth, jj_buf *b) {
    if (depth > JJ_VALUE_MAX_DEPTH)
        return tm__jj_err(c, "values nested too deeply to print");
    switch (v.type) {
    case JV_STR: return repr_str(v, b);
    case JV_LIST:
    case JV_TUPLE: {
        TM_TRY(buf_puts(b, v.type == JV_LIST ? "[" : "("));
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                TM_TRY(buf_puts(b, ", "));
            TM_TRY(repr_d(c, v.u.l->v[i], depth + 1, b));
        }
        if (v.type == JV_TUPLE && v.u.l->n == 1)
            TM_TRY(buf_puts(b, ","));
        return buf_puts(b, v.type == JV_LIST ? "]" : ")");
    }
    case JV_DICT:
    case JV_NS: {
        TM_TRY(buf_puts(b, v.type == JV_NS ? "<Namespace {" : "{"));
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i)
                TM_TRY(buf_puts(b, ", "));
            TM_TRY(repr_d(c, v.u.d->k[i], depth + 1, b));
            TM_TRY(buf_puts(b, ": "));
            TM_TRY(repr_d(c, v.u.d->v[i], depth + 1, b));
        }
        return buf_puts(b, v.type == JV_NS ? "}>" : "}");
    }
    case JV_UNDEF: return buf_puts(b, "Undefined"); /* repr() of jinja2.Undefined */
    default: return tm__jj_to_str_buf(c, v, b);
    }
}

tm_status tm__jj_repr_buf(jj_ctx *c, jv v, jj_buf *b) { return repr_d(c, v, 0, b); }

tm_status tm__jj_to_str_buf(jj_ctx *c, jv v, jj_buf *b) {
    char tmp[64];
    switch (v.type) {
    case JV_UNDEF: return TM_OK;
    case JV_NONE: return buf_puts(b, "None");
    case JV_BOOL: return buf_puts(b, v.u.b ? "True" : "False");
    case JV_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i); return buf_puts(b, tmp);
    case JV_FLOAT: tm__jj_float_repr(v.u.f, tmp, sizeof tmp); return buf_puts(b, tmp);
    case JV_STR: return tm__jj_buf_put(b, v.u.s.p, v.u.s.n);
    case JV_FUNC:
        snprintf(tmp, sizeof tmp, "<function %.40s>", v.u.fn->name ? v.u.fn->name : "?");
        return buf_puts(b, tmp);
    default: return tm__jj_repr_buf(c, v, b);
    }
}

tm_status tm__jj_to_str(jj_ctx *c, jv v, jv *out) {
    if (v.type == JV_STR) {
        *out = v;
        return TM_OK;
    }
    jj_buf    b = {0};
    tm_status st = tm__jj_to_str_buf(c, v, &b);
    if (st == TM_OK)
        st = tm__jj_str_dup(c, b.p ? b.p : "", b.n, out);
    tm__jj_buf_free(&b);
    return st;
}

/* ---- json.dumps ------------------------------------------------------------- */
static tm_status json_str(const char *p, size_t n, bool ascii, jj_buf *b) {
    TM_TRY(buf_puts(b, "\""));
    size_t i = 0, run = 0;
    while (i < n) {
        uint32_t      cp = 0;
        unsigned char ch = (unsigned char)p[i];
        size_t        j = ch < 0x80 ? i + 1 : tm__jj_utf8_next(p, n, i, &cp);
        if (ch >= 0x80 && !ascii) {
            i = j;
            continue;
        }
        if (ch >= 0x20 && ch < 0x80 && ch != '"' && ch != '\\') {
            i = j;
            continue;
        }
        TM_TRY(tm__jj_buf_put(b, p + run, i - run));
        char esc[16];
        switch (ch) {
        case '"': TM_TRY(buf_puts(b, "\\\"")); break;
        case '\\': TM_TRY(buf_puts(b, "\\\\")); break;
        case '\n': TM_TRY(buf_puts(b, "\\n")); break;
        case '\r': TM_TRY(buf_puts(b, "\\r")); break;
        case '\t': TM_TRY(buf_puts(b, "\\t")); break;
        case '\b': TM_TRY(buf_puts(b, "\\b")); break;
        case '\f': TM_TRY(buf_puts(b, "\\f")); break;
        default:
            if (ch < 0x80) {
                snprintf(esc, sizeof esc, "\\u%04x", ch);
            } else if (cp >= 0x10000) {
                uint32_t v = cp - 0x10000;
                snprintf(esc, sizeof esc, "\\u%04x\\u%04x", 0xd800 + (v >> 10),
                         0xdc00 + (v & 0x3ff));
            } else {
                snprintf(esc, sizeof esc, "\\u%04x", cp);
            }
            TM_TRY(buf_puts(b, esc));
        }
        i = j;
        run = i;
    }
    TM_TRY(tm__jj_buf_put(b, p + run, n - run));
    return buf_puts(b, "\"");
}

static tm_status json_nl(const jj_json_opts *o, int level, jj_buf *b) {
    TM_TRY(buf_puts(b, "\n"));
    for (int i = 0; i < o->indent * level; i++)
        TM_TRY(buf_puts(b, " "));
    return TM_OK;
}

static tm_status json_val(jj_ctx *c, jv v, const jj_json_opts *o, int level, jj_buf *b) {
    char tmp[64];
    if (level > 200)
        return tm__jj_err(c, "tojson: nesting too deep");
    const char *isep = o->item_sep ? o->item_sep : (o->indent >= 0 ? "," : ", ");
    const char *ksep = o->key_sep ? o->key_sep : ": ";
    switch (v.type) {
    case JV_NONE: return buf_puts(b, "null");
    case JV_BOOL: return buf_puts(b, v.u.b ? "true" : "false");
    case JV_INT: snprintf(tmp, sizeof tmp, "%lld", (long long)v.u.i); return buf_puts(b, tmp);
    case JV_FLOAT:
        if (isnan(v.u.f))
            return buf_puts(b, "NaN");
        if (isinf(v.u.f))
            return buf_puts(b, v.u.f < 0 ? "-Infinity" : "Infinity");
        tm__jj_float_repr(v.u.f, tmp, sizeof tmp);
        return buf_puts(b, tmp);
    case JV_STR: return json_str(v.u.s.p, v.u.s.n, o->ensure_ascii, b);
    case JV_LIST:
    case JV_TUPLE:
        if (v.u.l->n == 0)
            return buf_puts(b, "[]");
        TM_TRY(buf_puts(b, "["));
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i)
                TM_TRY(buf_puts(b, isep));
            if (o->indent >= 0)
                TM_TRY(json_nl(o, level + 1, b));
            TM_TRY(json_val(c, v.u.l->v[i], o, level + 1, b));
        }
        if (o->indent >= 0)
            TM_TRY(json_nl(o, level, b));
        return buf_puts(b, "]");
    case JV_DICT: {
        const jj_dict *d = v.u.d;
        if (d->n == 0)
            return buf_puts(b, "{}");
        size_t *order = tm__jj_alloc(&c->arena, d->n * sizeof(size_t));
        if (order == NULL)
            return tm__jj_nomem(c);
        for (size_t i = 0; i < d->n; i++)
            order[i] = i;
        if (o->sort_keys) /* insertion sort: dicts here are small */
            for (size_t i = 1; i < d->n; i++)
                for (size_t j = i; j > 0; j--) {
                    int r;
                    TM_TRY(tm__jj_compare(c, d->k[order[j - 1]], d->k[order[j]], &r));
                    if (r <= 0)
                        break;
                    size_t t = order[j];
                    order[j] = order[j - 1];
                    order[j - 1] = t;
                }
        TM_TRY(buf_puts(b, "{"));
        for (size_t i = 0; i < d->n; i++) {
            jv k = d->k[order[i]];
            if (i)
                TM_TRY(buf_puts(b, isep));
            if (o->indent >= 0)
                TM_TRY(json_nl(o, level + 1, b));
            /* json.dumps turns int/float/bool/None keys into strings. */
            if (k.type == JV_STR) {
                TM_TRY(json_str(k.u.s.p, k.u.s.n, o->ensure_ascii, b));
            } else if (k.type == JV_INT || k.type == JV_FLOAT || k.type == JV_BOOL ||
                       k.type == JV_NONE) {
                jj_buf    kb = {0};
                tm_status st = json_val(c, k, o, level + 1, &kb);
                if (st == TM_OK)
                    st = json_str(kb.p, kb.n, false, b);
                tm__jj_buf_free(&kb);
                TM_TRY(st);
            } else {
                return tm__jj_err(c, "keys must be str, int, float, bool or None, not %s",
                                  tm__jj_type_name(k));
            }
            TM_TRY(buf_puts(b, ksep));
            TM_TRY(json_val(c, d->v[order[i]], o, level + 1, b));
        }
        if (o->indent >= 0)
            TM_TRY(json_nl(o, level, b));
        return buf_puts(b, "}");
    }
    default:
        return tm__jj_err(c, "Object of type %s is not JSON serializable", tm__jj_type_name(v));
    }
}

tm_status tm__jj_to_json_buf(jj_ctx *c, jv v, const jj_json_opts *o, jj_buf *b) {
    return json_val(c, v, o, 0, b);
}

/* ---- Python string operations (str methods and filters share them)
 * ------------------------------------------------------ */
static tm_status str_from_buf(jj_ctx *c, jj_buf *b, tm_status st, jv *out) {
    if (st == TM_OK)
        st = tm__jj_str_dup(c, b->p ? b->p : "", b->n, out);
    tm__jj_buf_free(b);
    return st;
}

static bool is_cased(uint32_t cp) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

tm_status tm__jj_str_case(jj_ctx *c, jv s, jj_case_op op, jv *out) {
    jj_buf    b = {0};
    size_t    i = 0;
    bool      first = true, prev_cased = false;
    uint32_t  cp;
    tm_status st = TM_OK;
    while (i < s.u.s.n && st == TM_OK) {
        size_t  j = tm__jj_utf8_next(s.u.s.p, s.u.s.n, i, &cp);
        int32_t r = (int32_t)cp;
        if (j - i == 1 && cp >= 0x80) {
            st = tm__jj_buf_put(&b, s.u.s.p + i, 1); /* invalid byte: copy */
            i = j;
            continue;
        }
        switch (op) {
        case JJ_CASE_UPPER:
            if (cp == 0xdf) { /* Python's full mapping: sharp s uppercases to "SS" */
                st = tm__jj_buf_put(&b, "SS", 2);
                first = false;
                i = j;
                continue;
            }
            r = utf8proc_toupper(r);
            break;
        case JJ_CASE_LOWER: r = utf8proc_tolower(r); break;
        case JJ_CASE_CAPITALIZE: r = first ? utf8proc_totitle(r) : utf8proc_tolower(r); break;
        case JJ_CASE_TITLE_PY:
            r = prev_cased ? utf8proc_tolower(r) : utf8proc_totitle(r);
            prev_cased = is_cased(cp);
            break;
        case JJ_CASE_TITLE_JINJA: {
            /* Jinja: words start after runs of [-\s({\[<]. */
            bool sep = tm__jj_is_space(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' ||
                       cp == '<';
            r = sep ? r : prev_cased ? utf8proc_tolower(r) : utf8proc_totitle(r);
            prev_cased = !sep;
            break;
        }
        }
        char enc[4];
        st = tm__jj_buf_put(&b, enc, tm__jj_utf8_put((uint32_t)r, enc));
        first = false;
        i = j;
    }
    return str_from_buf(c, &b, st, out);
}

/* Strips chars (a set of code points; NULL = whitespace) from the ends. */
jv tm__jj_str_strip(jv s, const jv *chars, bool left, bool right) {
    const char *p = s.u.s.p;
    size_t      lo = 0, hi = s.u.s.n;
    uint32_t    cp;
    for (;;) {
        bool hit = false;
        if (left && lo < hi) {
            size_t j = tm__jj_utf8_next(p, hi, lo, &cp);
            bool   m = false;
            if (chars == NULL) {
                m = tm__jj_is_space(cp);
            } else {
                for (size_t k = 0; k < chars->u.s.n;) {
                    uint32_t cc;
                    k = tm__jj_utf8_next(chars->u.s.p, chars->u.s.n, k, &cc);
                    if (cc == cp)
                        m = true;
                }
            }
            if (m) {
                lo = j;
                hit = true;
            }
        }
        if (right && lo < hi) {
            size_t k0 = hi - 1;
            while (k0 > lo && ((unsigned char)p[k0] & 0xc0) == 0x80)
                k0--;
            tm__jj_utf8_next(p, hi, k0, &cp);
            bool m = false;
            if (chars == NULL) {
                m = tm__jj_is_space(cp);
            } else {
                for (size_t k = 0; k < chars->u.s.n;) {
                    uint32_t cc;
                    k = tm__jj_utf8_next(chars->u.s.p, chars->u.s.n, k, &cc);
                    if (cc == cp)
                        m = true;
                }
            }
            if (m) {
                hi = k0;
                hit = true;
            }
        }
        if (!hit)
            break;
    }
    return jv_strn(p + lo, hi - lo);
}

const char *tm__jj_memfind(const char *h, size_t hn, const char *n, size_t nn) {
    if (nn == 0)
        return h;
    for (size_t i = 0; i + nn <= hn; i++)
        if (memcmp(h + i, n, nn) == 0)
            return h + i;
    return NULL;
}

tm_status tm__jj_str_replace(jj_ctx *c, jv s, jv old, jv new_, int64_t count, jv *out) {
    jj_buf    b = {0};
    tm_status st = TM_OK;
    size_t    i = 0;
    int64_t   done = 0;
    if (old.u.s.n == 0) {
        /* Python inserts new_ before every code point and at the end. */
        uint32_t cp;
        while (st == TM_OK && (count < 0 || done < count)) {
            st = tm__jj_buf_put(&b, new_.u.s.p, new_.u.s.n);
            done++;
            if (i >= s.u.s.n)
                break;
            size_t j = tm__jj_utf8_next(s.u.s.p, s.u.s.n, i, &cp);
            if (st == TM_OK)
                st = tm__jj_buf_put(&b, s.u.s.p + i, j - i);
            i = j;
        }
        if (st == TM_OK && i < s.u.s.n)
            st = tm__jj_buf_put(&b, s.u.s.p + i, s.u.s.n - i);
        return str_from_buf(c, &b, st, out);
    }
    while (st == TM_OK && i <= s.u.s.n) {
        const char *f = (count < 0 || done < count)
                            ? tm__jj_memfind(s.u.s.p + i, s.u.s.n - i, old.u.s.p, old.u.s.n)
                            : NULL;
        if (f == NULL) {
            st = tm__jj_buf_put(&b, s.u.s.p + i, s.u.s.n - i);
            break;
        }
        size_t k = (size_t)(f - s.u.s.p);
        st = tm__jj_buf_put(&b, s.u.s.p + i, k - i);
        if (st == TM_OK)
            st = tm__jj_buf_put(&b, new_.u.s.p, new_.u.s.n);
        i = k + old.u.s.n;
        done++;
    }
    return str_from_buf(c, &b, st, out);
}

/* Python str.split / rsplit. sep NULL splits on whitespace runs. */
tm_status tm__jj_str_split(jj_ctx *c, jv s, const jv *sep, int64_t maxsplit, bool from_right,
                           jv *out) {
    jj_list *l = tm__jj_list_new(c, 0);
    if (l == NULL)
        return tm__jj_nomem(c);
    const char *p = s.u.s.p;
    size_t      n = s.u.s.n;
    if (sep != NULL) {
        if (sep->u.s.n == 0)
            return tm__jj_err(c, "empty separator");
        if (!from_right) {
            size_t  i = 0;
            int64_t k = 0;
            for (;;) {
                const char *f = (maxsplit < 0 || k < maxsplit)
                                    ? tm__jj_memfind(p + i, n - i, sep->u.s.p, sep->u.s.n)
                                    : NULL;
                if (f == NULL) {
                    TM_TRY(tm__jj_list_push(c, l, jv_strn(p + i, n - i)));
                    break;
                }
                TM_TRY(tm__jj_list_push(c, l, jv_strn(p + i, (size_t)(f - (p + i)))));
                i = (size_t)(f - p) + sep->u.s.n;
                k++;
            }
        } else {
            /* Collect from the right, then reverse. */
            size_t  hi = n;
            int64_t k = 0;
            for (;;) {
                const char *f = NULL;
                if ((maxsplit < 0 || k < maxsplit) && hi >= sep->u.s.n)
                    for (size_t j = hi - sep->u.s.n + 1; j-- > 0;)
                        if (memcmp(p + j, sep->u.s.p, sep->u.s.n) == 0) {
                            f = p + j;
                            break;
                        }
                if (f == NULL) {
                    TM_TRY(tm__jj_list_push(c, l, jv_strn(p, hi)));
                    break;
                }
                size_t e = (size_t)(f - p) + sep->u.s.n;
                TM_TRY(tm__jj_list_push(c, l, jv_strn(p + e, hi - e)));
                hi = (size_t)(f - p);
                k++;
            }
            for (size_t a = 0, b = l->n ? l->n - 1 : 0; a < b; a++, b--) {
                jv t = l->v[a];
                l->v[a] = l->v[b];
                l->v[b] = t;
            }
        }
    } else {
        size_t   i = 0;
        int64_t  k = 0;
        uint32_t cp;
        (void)from_right; /* whitespace rsplit with maxsplit is rare; split from the left */
        for (;;) {
            while (i < n) { /* skip whitespace */
                size_t j = tm__jj_utf8_next(p, n, i, &cp);
                if (!tm__jj_is_space(cp))
                    break;
                i = j;
            }
            if (i >= n)
                break;
            if (maxsplit >= 0 && k >= maxsplit) {
                jv rest = tm__jj_str_strip(jv_strn(p + i, n - i), NULL, false, true);
                TM_TRY(tm__jj_list_push(c, l, rest));
                break;
            }
            size_t st0 = i;
            while (i < n) {
                size_t j = tm__jj_utf8_next(p, n, i, &cp);
                if (tm__jj_is_space(cp))
                    break;
                i = j;
            }
            TM_TRY(tm__jj_list_push(c, l, jv_strn(p + st0, i - st0)));
            k++;
        }
    }
    *out = (jv){.type = JV_LIST, .u.l = l};
    return TM_OK;
}
