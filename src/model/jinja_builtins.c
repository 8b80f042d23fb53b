/*
 * jinja_builtins.c - filters, tests, Python string/dict methods and globals.
 *
 * Each behaves as its Jinja 3.1 / CPython counterpart does for the values a
 * chat template sees (strings, numbers, None, booleans, lists, dicts), with
 * Hugging Face's overrides: tojson is json.dumps(ensure_ascii=False, ...)
 * (no HTML escaping, key order kept), raise_exception fails the render with
 * the template's message, strftime_now formats the local time. Mutating
 * methods (list.append, dict.update...) are absent, as in Jinja's
 * ImmutableSandboxedEnvironment: reaching one gives an undefined value.
 */
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#include "jinja_int.h"

/* ---- argument helpers ------------------------------------------------------- */
static bool arg(const jj_args *a, size_t pos, const char *kw, jv *out) {
    for (size_t i = 0; i < a->n_kw; i++)
        if (kw != NULL && strcmp(a->kw_names[i], kw) == 0) {
            *out = a->kw[i];
            return true;
        }
    if (pos < a->n_pos) {
        *out = a->pos[pos];
        return true;
    }
    return false;
}

static tm_status arg_int(jj_ctx *c, const jj_args *a, size_t pos, const char *kw, int64_t def,
                         int64_t *out) {
    jv v;
    *out = def;
    if (!arg(a, pos, kw, &v) || v.type == JV_NONE)
        return TM_OK;
    if (v.type == JV_INT || v.type == JV_BOOL) {
        *out = v.type == JV_INT ? v.u.i : v.u.b;
        return TM_OK;
    }
    return tm__jj_err(c, "argument '%s' must be an integer, not %s", kw ? kw : "?",
                      tm__jj_type_name(v));
}

static bool arg_bool(const jj_args *a, size_t pos, const char *kw, bool def) {
    jv v;
    return arg(a, pos, kw, &v) ? tm__jj_truthy(v) : def;
}

static tm_status need_str(jj_ctx *c, jv v, const char *what) {
    if (v.type == JV_STR)
        return TM_OK;
    if (v.type == JV_UNDEF && v.u.undef)
        return tm__jj_err(c, "%s is undefined", v.u.undef);
    return tm__jj_err(c, "%s: expected a string, got %s", what, tm__jj_type_name(v));
}

static tm_status buf_to_str(jj_ctx *c, jj_buf *b, tm_status st, jv *out) {
    if (st == TM_OK)
        st = tm__jj_str_dup(c, b->p ? b->p : "", b->n, out);
    tm__jj_buf_free(b);
    return st;
}

static jv mk_list(jj_list *l) { return (jv){.type = JV_LIST, .u.l = l}; }

static bool affix_match(jv s, jv x, bool end) {
    if (x.u.s.n > s.u.s.n)
        return false;
    return memcmp(s.u.s.p + (end ? s.u.s.n - x.u.s.n : 0), x.u.s.p, x.u.s.n) == 0;
}

static tm_status str_affix(jj_ctx *c, jv s, const jj_args *a, bool end, jv *out) {
    jv x;
    if (!arg(a, 0, NULL, &x))
        return tm__jj_err(c, "%s() takes at least 1 argument", end ? "endswith" : "startswith");
    bool r = false;
    if (x.type == JV_STR) {
        r = affix_match(s, x, end);
    } else if (jv_is_seq(x)) {
        for (size_t i = 0; i < x.u.l->n; i++) {
            TM_TRY(need_str(c, x.u.l->v[i], end ? "endswith" : "startswith"));
            r = r || affix_match(s, x.u.l->v[i], end);
        }
    } else {
        return tm__jj_err(c, "%s first arg must be str or a tuple of str, not %s",
                          end ? "endswith" : "startswith", tm__jj_type_name(x));
    }
    *out = jv_bool(r);
    return TM_OK;
}

/* ---- methods ---------------------------------------------------------------- */
static tm_status m_strip_common(jj_ctx *c, jv self, const jj_args *a, bool l, bool r, jv *out) {
    jv chars;
    if (arg(a, 0, "chars", &chars) && chars.type != JV_NONE) {
        TM_TRY(need_str(c, chars, "strip"));
        *out = tm__jj_str_strip(self, &chars, l, r);
    } else {
        *out = tm__jj_str_strip(self, NULL, l, r);
    }
    return TM_OK;
}
static tm_status m_strip(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_strip_common(c, s, a, true, true, o);
}
static tm_status m_lstrip(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_strip_common(c, s, a, true, false, o);
}
static tm_status m_rstrip(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_strip_common(c, s, a, false, true, o);
}
static tm_status m_upper(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return tm__jj_str_case(c, s, JJ_CASE_UPPER, o);
}
static tm_status m_lower(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return tm__jj_str_case(c, s, JJ_CASE_LOWER, o);
}
static tm_status m_title(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return tm__jj_str_case(c, s, JJ_CASE_TITLE_PY, o);
}
static tm_status m_capitalize(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return tm__jj_str_case(c, s, JJ_CASE_CAPITALIZE, o);
}
static tm_status m_startswith(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return str_affix(c, s, a, false, o);
}
static tm_status m_endswith(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return str_affix(c, s, a, true, o);
}

static tm_status m_split_common(jj_ctx *c, jv s, const jj_args *a, bool right, jv *out) {
    jv      sep;
    int64_t maxsplit;
    bool    has_sep = arg(a, 0, "sep", &sep) && sep.type != JV_NONE;
    if (has_sep)
        TM_TRY(need_str(c, sep, "split"));
    TM_TRY(arg_int(c, a, 1, "maxsplit", -1, &maxsplit));
    return tm__jj_str_split(c, s, has_sep ? &sep : NULL, maxsplit, right, out);
}
static tm_status m_split(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_split_common(c, s, a, false, o);
}
static tm_status m_rsplit(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_split_common(c, s, a, true, o);
}

static tm_status m_replace(jj_ctx *c, jv s, const jj_args *a, jv *out) {
    jv      old, nw;
    int64_t count;
    if (!arg(a, 0, NULL, &old) || !arg(a, 1, NULL, &nw))
        return tm__jj_err(c, "replace() takes at least 2 arguments");
    TM_TRY(need_str(c, old, "replace"));
    TM_TRY(need_str(c, nw, "replace"));
    TM_TRY(arg_int(c, a, 2, "count", -1, &count));
    return tm__jj_str_replace(c, s, old, nw, count, out);
}

static tm_status m_find_common(jj_ctx *c, jv s, const jj_args *a, bool right, bool count, jv *out) {
    jv x;
    if (!arg(a, 0, NULL, &x))
        return tm__jj_err(c, "find() takes at least 1 argument");
    TM_TRY(need_str(c, x, "find"));
    int64_t found = -1, n = 0;
    size_t  i = 0;
    while (i + x.u.s.n <= s.u.s.n) {
        if (memcmp(s.u.s.p + i, x.u.s.p, x.u.s.n) == 0) {
            if (found < 0 || right)
                found = (int64_t)i;
            n++;
            if (!right && !count)
                break;
            i += x.u.s.n ? x.u.s.n : 1;
        } else {
            i++;
        }
    }
    if (count) {
        *out = jv_int(x.u.s.n == 0 ? (int64_t)tm__jj_utf8_len(s.u.s.p, s.u.s.n) + 1 : n);
        return TM_OK;
    }
    /* Byte offset to code point index. */
    *out = jv_int(found < 0 ? -1 : (int64_t)tm__jj_utf8_len(s.u.s.p, (size_t)found));
    return TM_OK;
}
static tm_status m_find(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_find_common(c, s, a, false, false, o);
}
static tm_status m_rfind(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_find_common(c, s, a, true, false, o);
}
static tm_status m_count(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_find_common(c, s, a, false, true, o);
}

static tm_status m_join(jj_ctx *c, jv s, const jj_args *a, jv *out) {
    jv       x;
    jj_list *l;
    if (!arg(a, 0, NULL, &x))
        return tm__jj_err(c, "join() takes exactly one argument");
    TM_TRY(tm__jj_iterate(c, x, &l));
    jj_buf    b = {0};
    tm_status st = TM_OK;
    for (size_t i = 0; i < l->n && st == TM_OK; i++) {
        if (l->v[i].type != JV_STR) {
            st = tm__jj_err(c, "sequence item %zu: expected str instance, %s found", i,
                            tm__jj_type_name(l->v[i]));
            break;
        }
        if (i)
            st = tm__jj_buf_put(&b, s.u.s.p, s.u.s.n);
        if (st == TM_OK)
            st = tm__jj_buf_put(&b, l->v[i].u.s.p, l->v[i].u.s.n);
    }
    return buf_to_str(c, &b, st, out);
}

static tm_status m_isclass(jj_ctx *c, jv s, int kind, jv *out) {
    bool     r = s.u.s.n > 0, any_cased = false;
    size_t   i = 0;
    uint32_t cp;
    while (i < s.u.s.n) {
        i = tm__jj_utf8_next(s.u.s.p, s.u.s.n, i, &cp);
        utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
        bool                letter = k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO;
        bool                digit = k == UTF8PROC_CATEGORY_ND;
        switch (kind) {
        case 0: r = r && digit; break;
        case 1: r = r && letter; break;
        case 2: r = r && (letter || digit); break;
        case 3: r = r && tm__jj_is_space(cp); break;
        case 4:
        case 5:
            if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) {
                any_cased = true;
                if (kind == 5)
                    r = false;
            } else if (k == UTF8PROC_CATEGORY_LL) {
                any_cased = true;
                if (kind == 4)
                    r = false;
            }
            break;
        }
    }
    if (kind >= 4)
        r = r && any_cased;
    *out = jv_bool(r);
    return TM_OK;
}
static tm_status m_isdigit(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_isclass(c, s, 0, o);
}
static tm_status m_isalpha(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_isclass(c, s, 1, o);
}
static tm_status m_isalnum(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_isclass(c, s, 2, o);
}
static tm_status m_isspace(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_isclass(c, s, 3, o);
}
static tm_status m_isupper(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_isclass(c, s, 4, o);
}
static tm_status m_islower(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return m_isclass(c, s, 5, o);
}

static tm_status m_splitlines(jj_ctx *c, jv s, const jj_args *a, jv *out) {
    jj_list *l = tm__jj_list_new(c, 0);
    bool     keep = arg_bool(a, 0, "keepends", false);
    if (l == NULL)
        return tm__jj_nomem(c);
    size_t i = 0, st = 0;
    while (i < s.u.s.n) {
        char ch = s.u.s.p[i];
        if (ch == '\n' || ch == '\r') {
            size_t e = i + ((ch == '\r' && i + 1 < s.u.s.n && s.u.s.p[i + 1] == '\n') ? 2 : 1);
            TM_TRY(tm__jj_list_push(c, l, jv_strn(s.u.s.p + st, (keep ? e : i) - st)));
            st = i = e;
        } else {
            i++;
        }
    }
    if (st < s.u.s.n)
        TM_TRY(tm__jj_list_push(c, l, jv_strn(s.u.s.p + st, s.u.s.n - st)));
    *out = mk_list(l);
    return TM_OK;
}

/* str.format with {} / {0} / {name} fields; format specs are not supported. */
static tm_status m_format(jj_ctx *c, jv s, const jj_args *a, jv *out) {
    jj_buf      b = {0};
    tm_status   st = TM_OK;
    size_t      auto_idx = 0, i = 0;
    const char *p = s.u.s.p;
    while (i < s.u.s.n && st == TM_OK) {
        if (p[i] == '{' && i + 1 < s.u.s.n && p[i + 1] == '{') {
            st = tm__jj_buf_put(&b, "{", 1);
            i += 2;
        } else if (p[i] == '}' && i + 1 < s.u.s.n && p[i + 1] == '}') {
            st = tm__jj_buf_put(&b, "}", 1);
            i += 2;
        } else if (p[i] == '{') {
            const char *e = memchr(p + i, '}', s.u.s.n - i);
            if (e == NULL) {
                st = tm__jj_err(c, "Single '{' encountered in format string");
                break;
            }
            size_t fl = (size_t)(e - (p + i + 1));
            jv     v;
            bool   ok;
            if (fl == 0) {
                ok = arg(a, auto_idx++, NULL, &v);
            } else if (p[i + 1] >= '0' && p[i + 1] <= '9') {
                ok = arg(a, (size_t)atoi(p + i + 1), NULL, &v);
            } else {
                char name[128];
                snprintf(name, sizeof name, "%.*s", (int)(fl < 127 ? fl : 127), p + i + 1);
                ok = false;
                for (size_t k = 0; k < a->n_kw; k++)
                    if (strcmp(a->kw_names[k], name) == 0) {
                        v = a->kw[k];
                        ok = true;
                    }
            }
            if (!ok) {
                st = tm__jj_err(c, "format: replacement index out of range");
                break;
            }
            st = tm__jj_to_str_buf(c, v, &b);
            i = (size_t)(e - p) + 1;
        } else {
            st = tm__jj_buf_put(&b, p + i, 1);
            i++;
        }
    }
    return buf_to_str(c, &b, st, out);
}

static tm_status m_dict_get(jj_ctx *c, jv self, const jj_args *a, jv *out) {
    jv k;
    if (!arg(a, 0, NULL, &k))
        return tm__jj_err(c, "get expected at least 1 argument");
    if (!tm__jj_dict_get(self.u.d, k, out) && !arg(a, 1, "default", out))
        *out = jv_none();
    return TM_OK;
}

static tm_status dict_view(jj_ctx *c, jv self, int what, jv *out) {
    jj_list *l = tm__jj_list_new(c, self.u.d->n);
    if (l == NULL)
        return tm__jj_nomem(c);
    for (size_t i = 0; i < self.u.d->n; i++) {
        if (what == 0) {
            jj_list *t = tm__jj_list_new(c, 2);
            if (t == NULL)
                return tm__jj_nomem(c);
            t->v[0] = self.u.d->k[i];
            t->v[1] = self.u.d->v[i];
            t->n = 2;
            l->v[l->n++] = (jv){.type = JV_TUPLE, .u.l = t};
        } else {
            l->v[l->n++] = what == 1 ? self.u.d->k[i] : self.u.d->v[i];
        }
    }
    *out = mk_list(l);
    return TM_OK;
}
static tm_status m_items(jj_ctx *c, jv s, const jj_args *a, jv *o) { return dict_view(c, s, 0, o); }
static tm_status m_keys(jj_ctx *c, jv s, const jj_args *a, jv *o) { return dict_view(c, s, 1, o); }
static tm_status m_values(jj_ctx *c, jv s, const jj_args *a, jv *o) {
    return dict_view(c, s, 2, o);
}

static tm_status m_list_index(jj_ctx *c, jv s, const jj_args *a, jv *out) {
    jv x;
    if (!arg(a, 0, NULL, &x))
        return tm__jj_err(c, "index expected 1 argument");
    for (size_t i = 0; i < s.u.l->n; i++)
        if (tm__jj_equal(s.u.l->v[i], x)) {
            *out = jv_int((int64_t)i);
            return TM_OK;
        }
    return tm__jj_err(c, "value is not in list");
}

static tm_status m_list_count(jj_ctx *c, jv s, const jj_args *a, jv *out) {
    jv      x;
    int64_t n = 0;
    if (!arg(a, 0, NULL, &x))
        return tm__jj_err(c, "count expected 1 argument");
    for (size_t i = 0; i < s.u.l->n; i++)
        n += tm__jj_equal(s.u.l->v[i], x);
    *out = jv_int(n);
    return TM_OK;
}

typedef struct method_entry {
    const char  *name;
    jj_native_fn fn;
} method_entry;

static const method_entry str_methods[] = {
    {"strip", m_strip},       {"lstrip", m_lstrip},         {"rstrip", m_rstrip},
    {"split", m_split},       {"rsplit", m_rsplit},         {"startswith", m_startswith},
    {"endswith", m_endswith}, {"upper", m_upper},           {"lower", m_lower},
    {"title", m_title},       {"capitalize", m_capitalize}, {"replace", m_replace},
    {"find", m_find},         {"rfind", m_rfind},           {"count", m_count},
    {"join", m_join},         {"format", m_format},         {"isdigit", m_isdigit},
    {"isalpha", m_isalpha},   {"isalnum", m_isalnum},       {"isspace", m_isspace},
    {"isupper", m_isupper},   {"islower", m_islower},       {"splitlines", m_splitlines},
};
static const method_entry dict_methods[] = {
    {"get", m_dict_get}, {"items", m_items}, {"keys", m_keys}, {"values", m_values}};
static const method_entry list_methods[] = {{"index", m_list_index}, {"count", m_list_count}};

bool tm__jj_method(jj_ctx *c, jv self, const char *name, size_t n, jv *out) {
    const method_entry *t = NULL;
    size_t              nt = 0;
    if (self.type == JV_STR) {
        t = str_methods;
        nt = sizeof str_methods / sizeof str_methods[0];
    } else if (self.type == JV_DICT) {
        t = dict_methods;
        nt = sizeof dict_methods / sizeof dict_methods[0];
    } else if (jv_is_seq(self)) {
        t = list_methods;
        nt = sizeof list_methods / sizeof list_methods[0];
    }
    for (size_t i = 0; i < nt; i++)
        if (strlen(t[i].name) == n && memcmp(t[i].name, name, n) == 0) {
            jj_func *f = tm__jj_alloc(&c->arena, sizeof *f);
            if (f == NULL) {
                *out = jv_undef(NULL); /* caller reports out of memory */
                return true;
            }
            *f =
                (jj_func){.kind = JJ_FN_NATIVE, .name = t[i].name, .self = self, .native = t[i].fn};
            *out = (jv){.type = JV_FUNC, .u.fn = f};
            return true;
        }
    return false;
}

/* ---- globals ---------------------------------------------------------------- */
static tm_status g_range(jj_ctx *c, jv self, const jj_args *a, jv *out) {
    int64_t v[3] = {0, 0, 1};
    if (a->n_pos == 0 || a->n_pos > 3)
        return tm__jj_err(c, "range expected 1 to 3 arguments");
    for (size_t i = 0; i < a->n_pos; i++) {
        if (a->pos[i].type != JV_INT && a->pos[i].type != JV_BOOL)
            return tm__jj_err(c, "'%s' object cannot be interpreted as an integer",
                              tm__jj_type_name(a->pos[i]));
        v[i] = a->pos[i].type == JV_INT ? a->pos[i].u.i : a->pos[i].u.b;
    }
    int64_t start = a->n_pos == 1 ? 0 : v[0], stop = a->n_pos == 1 ? v[0] : v[1];
    int64_t stp = a->n_pos == 3 ? v[2] : 1;
    if (stp == 0)
        return tm__jj_err(c, "range() arg 3 must not be zero");
    /* Jinja's sandbox refuses ranges over MAX_RANGE (100000) items. */
    double count = ceil(((double)stop - (double)start) / (double)stp);
    if (count > 100000)
        return tm__jj_err(
            c, "range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
    jj_list *l = tm__jj_list_new(c, count > 0 ? (size_t)count : 0);
    if (l == NULL)
        return tm__jj_nomem(c);
    for (int64_t x = start; stp > 0 ? x < stop : x > stop; x += stp)
        l->v[l->n++] = jv_int(x);
    *out = mk_list(l);
    return TM_OK;
}

static tm_status make_dict(jj_ctx *c, const jj_args *a, jv_type type, jv *out) {
    jj_dict *d = tm__jj_dict_new(c, a->n_kw);
    if (d == NULL)
        return tm__jj_nomem(c);
    for (size_t i = 0; i < a->n_pos; i++) {
        if (!jv_is_map(a->pos[i]))
            return tm__jj_err(c, "expected a mapping argument, got %s",
                              tm__jj_type_name(a->pos[i]));
        for (size_t k = 0; k < a->pos[i].u.d->n; k++)
            TM_TRY(tm__jj_dict_set(c, d, a->pos[i].u.d->k[k], a->pos[i].u.d->v[k]));
    }
    for (size_t i = 0; i < a->n_kw; i++)
        TM_TRY(tm__jj_dict_set(c, d, jv_strn(a->kw_names[i], strlen(a->kw_names[i])), a->kw[i]));
    out->type = type;
    out->u.d = d;
    return TM_OK;
}

static tm_status g_namespace(jj_ctx *c, jv self, const jj_args *a, jv *out) {
    return make_dict(c, a, JV_NS, out);
}
static tm_status g_dict(jj_ctx *c, jv self, const jj_args *a, jv *out) {
    return make_dict(c, a, JV_DICT, out);
}

static tm_status g_raise_exception(jj_ctx *c, jv self, const jj_args *a, jv *out) {
    jv     msg = jv_strn("", 0);
    jj_buf b = {0};
    if (a->n_pos > 0)
        msg = a->pos[0];
    tm_status st = tm__jj_to_str_buf(c, msg, &b);
    if (st != TM_OK) {
        tm__jj_buf_free(&b);
        return st;
    }
    c->raised = true;
    int line = c->node ? c->node->line : 0, col = c->node ? c->node->col : 0;
    st = tm_fail(TM_ERR_INVALID, "%s:%d:%d: raise_exception: %s", c->name, line, col,
                 b.p ? b.p : "");
    tm__jj_buf_free(&b);
    return st;
}

static tm_status g_strftime_now(jj_ctx *c, jv self, const jj_args *a, jv *out) {
    jv fmt;
    if (!arg(a, 0, NULL, &fmt))
        return tm__jj_err(c, "strftime_now() takes one argument");
    TM_TRY(need_str(c, fmt, "strftime_now"));
    char *f = tm__jj_alloc(&c->arena, fmt.u.s.n + 1);
    char  buf[512];
    if (f == NULL)
        return tm__jj_nomem(c);
    memcpy(f, fmt.u.s.p, fmt.u.s.n);
    time_t    now = time(NULL);
    struct tm tmv;
    localtime_r(&now, &tmv);
    size_t n = strftime(buf, sizeof buf, f, &tmv);
    return tm__jj_str_dup(c, buf, n, out);
}

bool tm__jj_global(const char *name, jv *out) {
    /* Constant function objects: globals need no allocation and are never mutated,
     * so every thread may share them. */
    static const jj_func fns[] = {
        {.kind = JJ_FN_NATIVE, .name = "range", .native = g_range},
        {.kind = JJ_FN_NATIVE, .name = "namespace", .native = g_namespace},
        {.kind = JJ_FN_NATIVE, .name = "dict", .native = g_dict},
        {.kind = JJ_FN_NATIVE, .name = "raise_exception", .native = g_raise_exception},
        {.kind = JJ_FN_NATIVE, .name = "strftime_now", .native = g_strftime_now},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++)
        if (strcmp(fns[i].name, name) == 0) {
            *out = (jv){.type = JV_FUNC, .u.fn = (jj_func *)&fns[i]};
            return true;
        }
    return false;
}

/* ---- filters ---------------------------------------------------------------- */
/* Dotted attribute path ("a.b.0") as Jinja's make_attrgetter resolves it. */
static tm_status attr_path(jj_ctx *c, jv v, jv path, jv *out) {
    if (path.type == JV_INT)
        return tm__jj_getitem(c, v, path, out);
    TM_TRY(need_str(c, path, "attribute"));
    size_t i = 0;
    while (i <= path.u.s.n) {
        const char *dot = memchr(path.u.s.p + i, '.', path.u.s.n - i);
        size_t      e = dot ? (size_t)(dot - path.u.s.p) : path.u.s.n;
        jv          part = jv_strn(path.u.s.p + i, e - i);
        bool        digits = e > i;
        for (size_t k = i; k < e; k++)
            digits = digits && path.u.s.p[k] >= '0' && path.u.s.p[k] <= '9';
        if (digits)
            part = jv_int(strtoll(path.u.s.p + i, NULL, 10));
        TM_TRY(tm__jj_getitem(c, v, part, &v));
        i = e + 1;
        if (dot == NULL)
            break;
    }
    *out = v;
    return TM_OK;
}

/* Sort key: lowercased strings unless case_sensitive. */
static tm_status sort_key(jj_ctx *c, jv v, bool case_sensitive, jv *out) {
    if (!case_sensitive && v.type == JV_STR)
        return tm__jj_str_case(c, v, JJ_CASE_LOWER, out);
    *out = v;
    return TM_OK;
}

/* Stable merge sort of idx[] by keys[]; compare errors propagate. */
static tm_status merge_sort(jj_ctx *c, size_t *idx, size_t *tmp, size_t n, const jv *keys,
                            bool reverse) {
    if (n < 2)
        return TM_OK;
    size_t h = n / 2;
    TM_TRY(merge_sort(c, idx, tmp, h, keys, reverse));
    TM_TRY(merge_sort(c, idx + h, tmp, n - h, keys, reverse));
    size_t i = 0, j = h, o = 0;
    while (i < h && j < n) {
        int r;
        TM_TRY(tm__jj_compare(c, keys[idx[j]], keys[idx[i]], &r));
        /* take right only when strictly before left: keeps equal items in order */
        bool take_right = reverse ? r > 0 : r < 0;
        tmp[o++] = take_right ? idx[j++] : idx[i++];
    }
    while (i < h)
        tmp[o++] = idx[i++];
    while (j < n)
        tmp[o++] = idx[j++];
    memcpy(idx, tmp, n * sizeof *idx);
    return TM_OK;
}

static tm_status sorted(jj_ctx *c, jj_list *items, const jv *keys, bool reverse, jj_list **out) {
    size_t  *idx = tm__jj_alloc(&c->arena, (items->n + 1) * sizeof(size_t));
    size_t  *tmp = tm__jj_alloc(&c->arena, (items->n + 1) * sizeof(size_t));
    jj_list *l = tm__jj_list_new(c, items->n);
    if (idx == NULL || tmp == NULL || l == NULL)
        return tm__jj_nomem(c);
    for (size_t i = 0; i < items->n; i++)
        idx[i] = i;
    TM_TRY(merge_sort(c, idx, tmp, items->n, keys, reverse));
    for (size_t i = 0; i < items->n; i++)
        l->v[l->n++] = items->v[idx[i]];
    *out = l;
    return TM_OK;
}

static tm_status f_sort(jj_ctx *c, jv v, const jj_args *a, jv *out) {
    jj_list *items, *res;
    jv       attr;
    bool     has_attr = arg(a, 2, "attribute", &attr) && attr.type != JV_NONE;
    bool     cs = arg_bool(a, 1, "case_sensitive", false);
    TM_TRY(tm__jj_iterate(c, v, &items));
    jv *keys = tm__jj_alloc(&c->arena, (items->n + 1) * sizeof(jv));
    if (keys == NULL)
        return tm__jj_nomem(c);
    for (size_t i = 0; i < items->n; i++) {
        jv k = items->v[i];
        if (has_attr)
            TM_TRY(attr_path(c, k, attr, &k));
        TM_TRY(sort_key(c, k, cs, &keys[i]));
    }
    TM_TRY(sorted(c, items, keys, arg_bool(a, 0, "reverse", false), &res));
    *out = mk_list(res);
    return TM_OK;
}

static tm_status f_dictsort(jj_ctx *c, jv v, const jj_args *a, jv *out) {
    jv items, by, res;
    if (v.type != JV_DICT)
        return tm__jj_err(c, "dictsort: expected a dict, got %s", tm__jj_type_name(v));
    TM_TRY(dict_view(c, v, 0, &items));
    bool by_value = arg(a, 1, "by", &by) && by.type == JV_STR && by.u.s.n == 5 &&
                    memcmp(by.u.s.p, "value", 5) == 0;
    jv *keys = tm__jj_alloc(&c->arena, (items.u.l->n + 1) * sizeof(jv));
    if (keys == NULL)
        return tm__jj_nomem(c);
    for (size_t i = 0; i < items.u.l->n; i++)
        TM_TRY(sort_key(c, items.u.l->v[i].u.l->v[by_value ? 1 : 0],
                        arg_bool(a, 0, "case_sensitive", false), &keys[i]));
    jj_list *l;
    TM_TRY(sorted(c, items.u.l, keys, arg_bool(a, 2, "reverse", false), &l));
    res = mk_list(l);
    *out = res;
    return TM_OK;
}

static tm_status f_unique(jj_ctx *c, jv v, const jj_args *a, jv *out) {
    jj_list *items;
    jv       attr;
    bool     has_attr = arg(a, 1, "attribute", &attr) && attr.type != JV_NONE;
    bool     cs = arg_bool(a, 0, "case_sensitive", false);
    TM_TRY(tm__jj_iterate(c, v, &items));
    jj_list *l = tm__jj_list_new(c, 0), *seen = tm__jj_list_new(c, 0);
    if (l == NULL || seen == NULL)
        return tm__jj_nomem(c);
    for (size_t i = 0; i < items->n; i++) {
        jv k = items->v[i];
        if (has_attr)
            TM_TRY(attr_path(c, k, attr, &k));
        TM_TRY(sort_key(c, k, cs, &k));
        bool dup = false;
        for (size_t j = 0; j < seen->n && !dup; j++)
            dup = tm__jj_equal(seen->v[j], k);
        if (!dup) {
            TM_TRY(tm__jj_list_push(c, seen, k));
            TM_TRY(tm__jj_list_push(c, l, items->v[i]));
        }
    }
    *out = mk_list(l);
    return TM_OK;
}

static tm_status f_tojson(jj_ctx *c, jv v, const jj_args *a, jv *out) {
    /* transformers: tojson(x, ensure_ascii=False, indent=None, separators=None,
     * sort_keys=False) -> json.dumps(...) */
    jj_json_opts o = {.indent = -1};
    jv           x;
    int64_t      ind;
    o.ensure_ascii = arg_bool(a, 0, "ensure_ascii", false);
    TM_TRY(arg_int(c, a, 1, "indent", -1, &ind));
    o.indent = ind < 0 ? -1 : ind > 64 ? 64 : (int32_t)ind;
    if (arg(a, 2, "separators", &x) && x.type != JV_NONE) {
        if (!jv_is_seq(x) || x.u.l->n != 2 || x.u.l->v[0].type != JV_STR ||
            x.u.l->v[1].type != JV_STR)
            return tm__jj_err(c, "tojson: separators must be a pair of strings");
        char *s0 = tm__jj_alloc(&c->arena, x.u.l->v[0].u.s.n + 1);
        char *s1 = tm__jj_alloc(&c->arena, x.u.l->v[1].u.s.n + 1);
        if (s0 == NULL || s1 == NULL)
            return tm__jj_nomem(c);
        memcpy(s0, x.u.l->v[0].u.s.p, x.u.l->v[0].u.s.n);
        memcpy(s1, x.u.l->v[1].u.s.p, x.u.l->v[1].u.s.n);
        o.item_sep = s0;
        o.key_sep = s1;
    }
    o.sort_keys = arg_bool(a, 3, "sort_keys", false);
    jj_buf b = {0};
    return buf_to_str(c, &b, tm__jj_to_json_buf(c, v, &o, &b), out);
}

static tm_status f_length(jj_ctx *c, jv v, const jj_args *a, jv *out) {
    switch (v.type) {
    case JV_STR: *out = jv_int((int64_t)tm__jj_utf8_len(v.u.s.p, v.u.s.n)); return TM_OK;
    case JV_LIST:
    case JV_TUPLE: *out = jv_int((int64_t)v.u.l->n); return TM_OK;
    case JV_DICT: *out = jv_int((int64_t)v.u.d->n); return TM_OK;
    case JV_UNDEF: *out = jv_int(0); return TM_OK;
    default: return tm__jj_err(c, "object of type '%s' has no len()", tm__jj_type_name(v));
    }
}

static tm_status f_join(jj_ctx *c, jv v, const jj_args *a, jv *out) {
    jj_list *items;
    jv       sep = jv_strn("", 0), attr;
    bool     has_attr = arg(a, 1, "attribute", &attr) && attr.type != JV_NONE;
    if (arg(a, 0, "d", &sep))
        TM_TRY(tm__jj_to_str(c, sep, &sep));
    TM_TRY(tm__jj_iterate(c, v, &items));
    jj_buf    b = {0};
    tm_status st = TM_OK;
    for (size_t i = 0; i < items->n && st == TM_OK; i++) {
        jv x = items->v[i];
        if (i)
            st = tm__jj_buf_put(&b, sep.u.s.p, sep.u.s.n);
        if (st == TM_OK && has_attr)
            st = attr_path(c, x, attr, &x);
        if (st == TM_OK)
            st = tm__jj_to_str_buf(c, x, &b);
    }
    return buf_to_str(c, &b, st, out);
}

static tm_status f_first_last(jj_ctx *c, jv v, bool last, jv *out) {
    jj_list *items;
    TM_TRY(tm__jj_iterate(c, v, &items));
    if (items->n == 0)
        *out = jv_undef(last ? "'last' of an empty sequence" : "'first' of an empty sequence");
    else
        *out = items->v[last ? items->n - 1 : 0];
    return TM_OK;
}

static tm_status f_list(jj_ctx *c, jv v, jv *out) {
    jj_list *items;
    TM_TRY(tm__jj_iterate(c, v, &items));
    jj_list *l = tm__jj_list_new(c, items->n);
    if (l == NULL)
        return tm__jj_nomem(c);
    if (items->n)
        memcpy(l->v, items->v, items->n * sizeof(jv));
    l->n = items->n;
    *out = mk_list(l);
    return TM_OK;
}

static tm_status f_reverse(jj_ctx *c, jv v, jv *out) {
    jj_list *items;
    TM_TRY(tm__jj_iterate(c, v, &items));
    if (v.type == JV_STR) {
        char  *p = tm__jj_alloc(&c->arena, v.u.s.n + 1);
        size_t o = v.u.s.n;
        if (p == NULL)
            return tm__jj_nomem(c);
        for (size_t i = 0; i < items->n; i++) {
            o -= items->v[i].u.s.n;
            memcpy(p + o, items->v[i].u.s.p, items->v[i].u.s.n);
        }
        *out = jv_strn(p, v.u.s.n);
        return TM_OK;
    }
    jj_list *l = tm__jj_list_new(c, items->n);
    if (l == NULL)
        return tm__jj_nomem(c);
    for (size_t i = items->n; i-- > 0;)
        l->v[l->n++] = items->v[i];
    *out = mk_list(l);
    return TM_OK;
}

/* map / select / reject / selectattr / rejectattr. mode: 0 map, 1 select, 2 reject,
 * 3 selectattr, 4 rejectattr. */
static tm_status f_seqop(jj_ctx *c, jv v, const jj_args *a, int mode, jv *out) {
    jj_list *items;
    TM_TRY(tm__jj_iterate(c, v, &items));
    jj_list *l = tm__jj_list_new(c, 0);
    if (l == NULL)
        return tm__jj_nomem(c);
    jv     attr, name, dflt;
    size_t first_extra;
    bool   by_attr = false, has_name = false;
    if (mode == 0) {
        if (arg(a, SIZE_MAX, "attribute", &attr)) {
            by_attr = true;
        } else if (a->n_pos > 0) {
            name = a->pos[0];
            has_name = true;
        } else {
            return tm__jj_err(c, "map: expected a filter name or attribute=");
        }
        first_extra = 1;
    } else if (mode >= 3) {
        if (a->n_pos == 0)
            return tm__jj_err(c, "missing parameter for attribute name");
        attr = a->pos[0];
        by_attr = true;
        has_name = a->n_pos > 1;
        if (has_name)
            name = a->pos[1];
        first_extra = 2;
    } else {
        has_name = a->n_pos > 0;
        if (has_name)
            name = a->pos[0];
        first_extra = 1;
    }
    if (has_name)
        TM_TRY(need_str(c, name, "filter or test name"));
    char nm[64] = "";
    if (has_name)
        snprintf(nm, sizeof nm, "%.*s", (int)(name.u.s.n < 63 ? name.u.s.n : 63), name.u.s.p);
    jj_args extra = {0};
    if (a->n_pos > first_extra) {
        extra.n_pos = a->n_pos - first_extra;
        extra.pos = a->pos + first_extra;
    }
    if (mode == 0 && !by_attr) { /* kwargs go to the filter */
        extra.n_kw = a->n_kw;
        extra.kw_names = a->kw_names;
        extra.kw = a->kw;
    }
    bool has_default = mode == 0 && arg(a, SIZE_MAX, "default", &dflt);
    for (size_t i = 0; i < items->n; i++) {
        jv x = items->v[i], y = x;
        if (by_attr)
            TM_TRY(attr_path(c, x, attr, &y));
        if (mode == 0) {
            if (by_attr) {
                if (y.type == JV_UNDEF && has_default)
                    y = dflt;
            } else {
                TM_TRY(tm__jj_filter(c, nm, x, &extra, &y));
            }
            TM_TRY(tm__jj_list_push(c, l, y));
            continue;
        }
        bool keep;
        if (has_name)
            TM_TRY(tm__jj_test(c, nm, y, &extra, &keep));
        else
            keep = tm__jj_truthy(y);
        if (mode == 2 || mode == 4)
            keep = !keep;
        if (keep)
            TM_TRY(tm__jj_list_push(c, l, x));
    }
    *out = mk_list(l);
    return TM_OK;
}

static tm_status f_indent(jj_ctx *c, jv v, const jj_args *a, jv *out) {
    jv   w;
    jv   ind = jv_strn("    ", 4);
    bool first = arg_bool(a, 1, "first", false), blank = arg_bool(a, 2, "blank", false);
    TM_TRY(tm__jj_to_str(c, v, &v));
    if (arg(a, 0, "width", &w)) {
        if (w.type == JV_STR) {
            ind = w;
        } else if (w.type == JV_INT) {
            int64_t n = w.u.i < 0 ? 0 : w.u.i > 4096 ? 4096 : w.u.i;
            char   *p = tm__jj_alloc(&c->arena, (size_t)n + 1);
            if (p == NULL)
                return tm__jj_nomem(c);
            memset(p, ' ', (size_t)n);
            ind = jv_strn(p, (size_t)n);
        }
    }
    jv lines;
    jv s2;
    TM_TRY(tm__jj_str_cat(c, v, jv_strn("\n", 1), &s2));
    jj_args none = {0};
    TM_TRY(m_splitlines(c, s2, &none, &lines));
    jj_buf    b = {0};
    tm_status st = TM_OK;
    if (first)
        st = tm__jj_buf_put(&b, ind.u.s.p, ind.u.s.n);
    for (size_t i = 0; i < lines.u.l->n && st == TM_OK; i++) {
        jv ln = lines.u.l->v[i];
        if (i > 0) {
            st = tm__jj_buf_put(&b, "\n", 1);
            if (st == TM_OK && (blank || ln.u.s.n > 0))
                st = tm__jj_buf_put(&b, ind.u.s.p, ind.u.s.n);
        }
        if (st == TM_OK)
            st = tm__jj_buf_put(&b, ln.u.s.p, ln.u.s.n);
    }
    return buf_to_str(c, &b, st, out);
}

static tm_status f_int(jj_ctx *c, jv v, const jj_args *a, jv *out) {
    jv dflt = jv_int(0);
    arg(a, 0, "default", &dflt);
    switch (v.type) {
    case JV_INT: *out = v; return TM_OK;
    case JV_BOOL: *out = jv_int(v.u.b); return TM_OK;
    case JV_FLOAT:
        if (isfinite(v.u.f) && fabs(v.u.f) < 9.2e18) {
            *out = jv_int((int64_t)v.u.f);
            return TM_OK;
        }
        break;
    case JV_STR: {
        char buf[128];
        if (v.u.s.n >= sizeof buf)
            break;
        memcpy(buf, v.u.s.p, v.u.s.n);
        buf[v.u.s.n] = '\0';
        char     *e;
        long long i = strtoll(buf, &e, 10);
        while (*e == ' ' || *e == '\t' || *e == '\n')
            e++;
        if (e != buf && *e == '\0') {
            *out = jv_int(i);
            return TM_OK;
        }
        double f = strtod(buf, &e);
        while (*e == ' ' || *e == '\t' || *e == '\n')
            e++;
        if (e != buf && *e == '\0' && isfinite(f) && fabs(f) < 9.2e18) {
            *out = jv_int((int64_t)f);
            return TM_OK;
        }
        break;
    }
    default: break;
    }
    *out = dflt;
    return TM_OK;
}

static tm_status f_float(jj_ctx *c, jv v, const jj_args *a, jv *out) {
    jv dflt = jv_float(0.0);
    arg(a, 0, "default", &dflt);
    if (v.type == JV_FLOAT || v.type == JV_INT || v.type == JV_BOOL) {
        *out = jv_float(v.type == JV_FLOAT ? v.u.f : v.type == JV_INT ? (double)v.u.i : v.u.b);
        return TM_OK;
    }
    if (v.type == JV_STR && v.u.s.n < 128) {
        char buf[128], *e;
        memcpy(buf, v.u.s.p, v.u.s.n);
        buf[v.u.s.n] = '\0';
        double f = strtod(buf, &e);
        while (*e == ' ' || *e == '\t' || *e == '\n')
            e++;
        if (e != buf && *e == '\0') {
            *out = jv_float(f);
            return TM_OK;
        }
    }
    *out = dflt;
    return TM_OK;
}

static tm_status f_round(jj_ctx *c, jv v, const jj_args *a, jv *out) {
    int64_t prec;
    jv      method = jv_strn("common", 6);
    TM_TRY(arg_int(c, a, 0, "precision", 0, &prec));
    arg(a, 1, "method", &method);
    if (!jv_is_num(v))
        return tm__jj_err(c, "round: expected a number, got %s", tm__jj_type_name(v));
    double x = v.type == JV_FLOAT ? v.u.f : v.type == JV_INT ? (double)v.u.i : v.u.b;
    double m = pow(10.0, (double)(prec < -300 ? -300 : prec > 300 ? 300 : prec));
    double y = x * m;
    if (method.type == JV_STR && method.u.s.n == 4 && memcmp(method.u.s.p, "ceil", 4) == 0) {
        y = ceil(y) / m;
    } else if (method.type == JV_STR && method.u.s.n == 5 &&
               memcmp(method.u.s.p, "floor", 5) == 0) {
        y = floor(y) / m;
    } else if (prec >= 0 && prec <= 300 && isfinite(x)) {
        /* Python's round(x, n) rounds the exact binary value half to even, which
         * is what printf's correctly rounded %.*f does: 2.675 -> 2.67. */
        char buf[400];
        snprintf(buf, sizeof buf, "%.*f", (int)prec, x);
        y = strtod(buf, NULL);
    } else {
        y = nearbyint(y) / m;
    }
    *out = jv_float(y);
    return TM_OK;
}

static tm_status f_center(jj_ctx *c, jv v, const jj_args *a, jv *out) {
    int64_t width;
    TM_TRY(arg_int(c, a, 0, "width", 80, &width));
    TM_TRY(tm__jj_to_str(c, v, &v));
    int64_t len = (int64_t)tm__jj_utf8_len(v.u.s.p, v.u.s.n);
    if (width > 1 << 20)
        width = 1 << 20;
    if (width <= len) {
        *out = v;
        return TM_OK;
    }
    int64_t marg = width - len, left = marg / 2 + (marg & width & 1);
    char   *p = tm__jj_alloc(&c->arena, (size_t)marg + v.u.s.n + 1);
    if (p == NULL)
        return tm__jj_nomem(c);
    memset(p, ' ', (size_t)left);
    memcpy(p + left, v.u.s.p, v.u.s.n);
    memset(p + left + (int64_t)v.u.s.n, ' ', (size_t)(marg - left));
    *out = jv_strn(p, (size_t)marg + v.u.s.n);
    return TM_OK;
}

static tm_status f_escape(jj_ctx *c, jv v, jv *out) {
    TM_TRY(tm__jj_to_str(c, v, &v));
    jj_buf    b = {0};
    tm_status st = TM_OK;
    for (size_t i = 0; i < v.u.s.n && st == TM_OK; i++) {
        const char *r = NULL;
        switch (v.u.s.p[i]) {
        case '&': r = "&amp;"; break;
        case '<': r = "&lt;"; break;
        case '>': r = "&gt;"; break;
        case '\'': r = "&#39;"; break;
        case '"': r = "&#34;"; break;
        }
        st = r ? tm__jj_buf_put(&b, r, strlen(r)) : tm__jj_buf_put(&b, v.u.s.p + i, 1);
    }
    return buf_to_str(c, &b, st, out);
}

static tm_status f_batch(jj_ctx *c, jv v, const jj_args *a, jv *out) {
    int64_t  n;
    jv       fill;
    bool     has_fill = arg(a, 1, "fill_with", &fill) && fill.type != JV_NONE;
    jj_list *items;
    TM_TRY(arg_int(c, a, 0, "linecount", 1, &n));
    if (n <= 0)
        return tm__jj_err(c, "batch: linecount must be positive");
    TM_TRY(tm__jj_iterate(c, v, &items));
    jj_list *l = tm__jj_list_new(c, 0), *cur = NULL;
    if (l == NULL)
        return tm__jj_nomem(c);
    for (size_t i = 0; i < items->n; i++) {
        if (cur == NULL || (int64_t)cur->n == n) {
            if ((cur = tm__jj_list_new(c, 0)) == NULL)
                return tm__jj_nomem(c);
            TM_TRY(tm__jj_list_push(c, l, mk_list(cur)));
        }
        TM_TRY(tm__jj_list_push(c, cur, items->v[i]));
    }
    while (has_fill && cur != NULL && (int64_t)cur->n < n)
        TM_TRY(tm__jj_list_push(c, cur, fill));
    *out = mk_list(l);
    return TM_OK;
}

static tm_status f_wordcount(jj_ctx *c, jv v, jv *out) {
    TM_TRY(tm__jj_to_str(c, v, &v));
    int64_t  n = 0;
    bool     in_word = false;
    size_t   i = 0;
    uint32_t cp;
    while (i < v.u.s.n) {
        i = tm__jj_utf8_next(v.u.s.p, v.u.s.n, i, &cp);
        utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
        bool w = cp == '_' || (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_NO);
        if (w && !in_word)
            n++;
        in_word = w;
    }
    *out = jv_int(n);
    return TM_OK;
}

static tm_status f_sum_min_max(jj_ctx *c, jv v, const jj_args *a, int mode, jv *out) {
    jj_list *items;
    jv       attr;
    bool     has_attr = arg(a, mode == 0 ? 0 : 1, "attribute", &attr) && attr.type != JV_NONE;
    TM_TRY(tm__jj_iterate(c, v, &items));
    if (mode == 0) {
        jv acc = jv_int(0);
        arg(a, 1, "start", &acc);
        for (size_t i = 0; i < items->n; i++) {
            jv x = items->v[i];
            if (has_attr)
                TM_TRY(attr_path(c, x, attr, &x));
            if (!jv_is_num(x) || !jv_is_num(acc))
                return tm__jj_err(c, "sum: unsupported operand %s", tm__jj_type_name(x));
            if (acc.type == JV_FLOAT || x.type == JV_FLOAT)
                acc = jv_float(
                    (acc.type == JV_FLOAT ? acc.u.f
                                          : (double)(acc.type == JV_INT ? acc.u.i : acc.u.b)) +
                    (x.type == JV_FLOAT ? x.u.f : (double)(x.type == JV_INT ? x.u.i : x.u.b)));
            else
                acc = jv_int((acc.type == JV_INT ? acc.u.i : acc.u.b) +
                             (x.type == JV_INT ? x.u.i : x.u.b));
        }
        *out = acc;
        return TM_OK;
    }
    bool cs = arg_bool(a, 0, "case_sensitive", false);
    if (items->n == 0) {
        *out = jv_undef("'min/max' of an empty sequence");
        return TM_OK;
    }
    jv best = items->v[0], bestk;
    if (has_attr)
        TM_TRY(attr_path(c, best, attr, &bestk));
    else
        bestk = best;
    TM_TRY(sort_key(c, bestk, cs, &bestk));
    for (size_t i = 1; i < items->n; i++) {
        jv  k = items->v[i];
        int r;
        if (has_attr)
            TM_TRY(attr_path(c, k, attr, &k));
        TM_TRY(sort_key(c, k, cs, &k));
        TM_TRY(tm__jj_compare(c, k, bestk, &r));
        if (mode == 1 ? r < 0 : r > 0) {
            best = items->v[i];
            bestk = k;
        }
    }
    *out = best;
    return TM_OK;
}

/* "%s" formatting for the format filter. */
static tm_status f_format(jj_ctx *c, jv v, const jj_args *a, jv *out) {
    TM_TRY(need_str(c, v, "format"));
    jj_buf    b = {0};
    tm_status st = TM_OK;
    size_t    k = 0;
    for (size_t i = 0; i < v.u.s.n && st == TM_OK; i++) {
        char ch = v.u.s.p[i];
        if (ch != '%' || i + 1 >= v.u.s.n) {
            st = tm__jj_buf_put(&b, &ch, 1);
            continue;
        }
        char f = v.u.s.p[++i];
        if (f == '%') {
            st = tm__jj_buf_put(&b, "%", 1);
        } else if (k >= a->n_pos) {
            st = tm__jj_err(c, "not enough arguments for format string");
        } else if (f == 's') {
            st = tm__jj_to_str_buf(c, a->pos[k++], &b);
        } else if (f == 'r') {
            st = tm__jj_repr_buf(c, a->pos[k++], &b);
        } else if (f == 'd' || f == 'i') {
            jv x = a->pos[k++], y;
            st = f_int(c, x, &(jj_args){0}, &y);
            if (st == TM_OK)
                st = tm__jj_to_str_buf(c, y, &b);
        } else {
            st = tm__jj_err(c, "unsupported format character '%c'", f);
        }
    }
    return buf_to_str(c, &b, st, out);
}

tm_status tm__jj_percent_format(jj_ctx *c, jv fmt, jv args, jv *out) {
    jj_args a = {0};
    if (args.type == JV_TUPLE) {
        a.n_pos = args.u.l->n;
        a.pos = args.u.l->v;
    } else {
        a.n_pos = 1;
        a.pos = &args;
    }
    return f_format(c, fmt, &a, out);
}

static bool name_is(const char *name, const char *a) { return strcmp(name, a) == 0; }

tm_status tm__jj_filter(jj_ctx *c, const char *name, jv v, const jj_args *a, jv *out) {
    if (name_is(name, "default") || name_is(name, "d")) {
        jv dflt = jv_strn("", 0);
        arg(a, 0, "default_value", &dflt);
        bool use = v.type == JV_UNDEF || (arg_bool(a, 1, "boolean", false) && !tm__jj_truthy(v));
        *out = use ? dflt : v;
        return TM_OK;
    }
    /* Most filters take str(undefined) == "" or iterate it as empty, as Jinja's
     * Undefined allows; arithmetic and mapping filters refuse it. */
    if (v.type == JV_UNDEF && (name_is(name, "abs") || name_is(name, "round") ||
                               name_is(name, "dictsort") || name_is(name, "format")))
        return tm__jj_err(c, "%s is undefined", v.u.undef ? v.u.undef : "value");
    if (name_is(name, "tojson"))
        return f_tojson(c, v, a, out);
    if (name_is(name, "trim")) {
        jv chars;
        TM_TRY(tm__jj_to_str(c, v, &v));
        bool has = arg(a, 0, "chars", &chars) && chars.type != JV_NONE;
        if (has)
            TM_TRY(need_str(c, chars, "trim"));
        *out = tm__jj_str_strip(v, has ? &chars : NULL, true, true);
        return TM_OK;
    }
    if (name_is(name, "length") || name_is(name, "count"))
        return f_length(c, v, a, out);
    if (name_is(name, "upper") || name_is(name, "lower") || name_is(name, "capitalize") ||
        name_is(name, "title")) {
        TM_TRY(tm__jj_to_str(c, v, &v));
        jj_case_op op = name_is(name, "upper")        ? JJ_CASE_UPPER
                        : name_is(name, "lower")      ? JJ_CASE_LOWER
                        : name_is(name, "capitalize") ? JJ_CASE_CAPITALIZE
                                                      : JJ_CASE_TITLE_JINJA;
        return tm__jj_str_case(c, v, op, out);
    }
    if (name_is(name, "replace")) {
        TM_TRY(tm__jj_to_str(c, v, &v));
        jv      old, nw;
        int64_t count;
        if (!arg(a, 0, "old", &old) || !arg(a, 1, "new", &nw))
            return tm__jj_err(c, "replace: expected old and new");
        TM_TRY(tm__jj_to_str(c, old, &old));
        TM_TRY(tm__jj_to_str(c, nw, &nw));
        TM_TRY(arg_int(c, a, 2, "count", -1, &count));
        return tm__jj_str_replace(c, v, old, nw, count, out);
    }
    if (name_is(name, "join"))
        return f_join(c, v, a, out);
    if (name_is(name, "first") || name_is(name, "last"))
        return f_first_last(c, v, name_is(name, "last"), out);
    if (name_is(name, "list"))
        return f_list(c, v, out);
    if (name_is(name, "items")) {
        if (v.type == JV_UNDEF)
            return f_list(c, v, out);
        if (!jv_is_map(v))
            return tm__jj_err(c, "items: expected a mapping, got %s", tm__jj_type_name(v));
        return dict_view(c, v, 0, out);
    }
    if (name_is(name, "map"))
        return f_seqop(c, v, a, 0, out);
    if (name_is(name, "select"))
        return f_seqop(c, v, a, 1, out);
    if (name_is(name, "reject"))
        return f_seqop(c, v, a, 2, out);
    if (name_is(name, "selectattr"))
        return f_seqop(c, v, a, 3, out);
    if (name_is(name, "rejectattr"))
        return f_seqop(c, v, a, 4, out);
    if (name_is(name, "string"))
        return tm__jj_to_str(c, v, out);
    if (name_is(name, "safe")) {
        *out = v;
        return TM_OK;
    }
    if (name_is(name, "int"))
        return f_int(c, v, a, out);
    if (name_is(name, "float"))
        return f_float(c, v, a, out);
    if (name_is(name, "abs")) {
        if (v.type == JV_INT && v.u.i != INT64_MIN)
            *out = jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
        else if (v.type == JV_FLOAT)
            *out = jv_float(fabs(v.u.f));
        else if (v.type == JV_BOOL)
            *out = jv_int(v.u.b);
        else
            return tm__jj_err(c, "bad operand type for abs(): '%s'", tm__jj_type_name(v));
        return TM_OK;
    }
    if (name_is(name, "round"))
        return f_round(c, v, a, out);
    if (name_is(name, "indent"))
        return f_indent(c, v, a, out);
    if (name_is(name, "unique"))
        return f_unique(c, v, a, out);
    if (name_is(name, "sort"))
        return f_sort(c, v, a, out);
    if (name_is(name, "reverse"))
        return f_reverse(c, v, out);
    if (name_is(name, "dictsort"))
        return f_dictsort(c, v, a, out);
    if (name_is(name, "batch"))
        return f_batch(c, v, a, out);
    if (name_is(name, "wordcount"))
        return f_wordcount(c, v, out);
    if (name_is(name, "center"))
        return f_center(c, v, a, out);
    if (name_is(name, "escape") || name_is(name, "e") || name_is(name, "forceescape"))
        return f_escape(c, v, out);
    if (name_is(name, "sum"))
        return f_sum_min_max(c, v, a, 0, out);
    if (name_is(name, "min"))
        return f_sum_min_max(c, v, a, 1, out);
    if (name_is(name, "max"))
        return f_sum_min_max(c, v, a, 2, out);
    if (name_is(name, "format"))
        return f_format(c, v, a, out);
    if (name_is(name, "attr")) {
        jv n;
        if (!arg(a, 0, "name", &n) || n.type != JV_STR)
            return tm__jj_err(c, "attr: expected a name");
        return tm__jj_getattr(c, v, n.u.s.p, n.u.s.n, out);
    }
    return tm__jj_err(c, "no filter named '%s'", name);
}

/* ---- tests ------------------------------------------------------------------ */
tm_status tm__jj_test(jj_ctx *c, const char *name, jv v, const jj_args *a, bool *out) {
    jv   x;
    bool has_x = arg(a, 0, NULL, &x);
    if (name_is(name, "defined")) {
        *out = v.type != JV_UNDEF;
        return TM_OK;
    }
    if (name_is(name, "undefined")) {
        *out = v.type == JV_UNDEF;
        return TM_OK;
    }
    if (name_is(name, "none")) {
        *out = v.type == JV_NONE;
        return TM_OK;
    }
    if (name_is(name, "string")) {
        *out = v.type == JV_STR;
        return TM_OK;
    }
    if (name_is(name, "number")) {
        *out = jv_is_num(v);
        return TM_OK;
    }
    if (name_is(name, "integer")) {
        *out = v.type == JV_INT;
        return TM_OK;
    }
    if (name_is(name, "float")) {
        *out = v.type == JV_FLOAT;
        return TM_OK;
    }
    if (name_is(name, "boolean")) {
        *out = v.type == JV_BOOL;
        return TM_OK;
    }
    if (name_is(name, "true")) {
        *out = v.type == JV_BOOL && v.u.b;
        return TM_OK;
    }
    if (name_is(name, "false")) {
        *out = v.type == JV_BOOL && !v.u.b;
        return TM_OK;
    }
    if (name_is(name, "mapping")) {
        *out = v.type == JV_DICT;
        return TM_OK;
    }
    if (name_is(name, "callable")) {
        *out = v.type == JV_FUNC;
        return TM_OK;
    }
    if (name_is(name, "iterable")) {
        *out = v.type == JV_STR || jv_is_seq(v) || v.type == JV_DICT || v.type == JV_UNDEF;
        return TM_OK;
    }
    if (name_is(name, "sequence")) {
        *out = v.type == JV_STR || jv_is_seq(v) || v.type == JV_DICT || v.type == JV_UNDEF;
        return TM_OK;
    }
    if (name_is(name, "escaped")) {
        *out = false;
        return TM_OK;
    }
    if (name_is(name, "lower") || name_is(name, "upper")) {
        jv r;
        if (v.type != JV_STR)
            return tm__jj_err(c, "'%s' object has no attribute 'is%s'", tm__jj_type_name(v), name);
        TM_TRY(m_isclass(c, v, name_is(name, "upper") ? 4 : 5, &r));
        *out = r.u.b;
        return TM_OK;
    }
    if (name_is(name, "odd") || name_is(name, "even") || name_is(name, "divisibleby")) {
        int64_t d = 2;
        if (name_is(name, "divisibleby")) {
            if (!has_x || (x.type != JV_INT && x.type != JV_BOOL))
                return tm__jj_err(c, "divisibleby: expected an integer argument");
            d = x.type == JV_INT ? x.u.i : x.u.b;
        }
        if (v.type != JV_INT && v.type != JV_BOOL)
            return tm__jj_err(c, "%s: expected an integer, got %s", name, tm__jj_type_name(v));
        if (d == 0)
            return tm__jj_err(c, "integer division or modulo by zero");
        int64_t i = v.type == JV_INT ? v.u.i : v.u.b;
        int64_t r = d == -1 ? 0 : i % d;
        *out = name_is(name, "odd") ? r != 0 : r == 0;
        return TM_OK;
    }
    if (name_is(name, "filter") || name_is(name, "test")) {
        *out = false;
        if (v.type == JV_STR && v.u.s.n < 32) {
            static const char *const filters[] = {
                "tojson",     "trim",        "length",  "count",     "upper",  "lower",
                "capitalize", "title",       "replace", "join",      "first",  "last",
                "list",       "items",       "map",     "select",    "reject", "selectattr",
                "rejectattr", "default",     "d",       "string",    "int",    "float",
                "abs",        "round",       "indent",  "safe",      "unique", "sort",
                "reverse",    "dictsort",    "batch",   "wordcount", "center", "escape",
                "e",          "forceescape", "sum",     "min",       "max",    "format",
                "attr",       NULL};
            static const char *const tests[] = {
                "defined",  "undefined",   "none",    "string", "number",      "integer",
                "float",    "boolean",     "true",    "false",  "mapping",     "callable",
                "iterable", "sequence",    "escaped", "lower",  "upper",       "odd",
                "even",     "divisibleby", "filter",  "test",   "eq",          "equalto",
                "==",       "ne",          "!=",      "lt",     "<",           "lessthan",
                "le",       "<=",          "gt",      ">",      "greaterthan", "ge",
                ">=",       "in",          "sameas",  NULL};
            const char *const *t = name_is(name, "filter") ? filters : tests;
            for (size_t i = 0; t[i] != NULL; i++)
                if (strlen(t[i]) == v.u.s.n && memcmp(t[i], v.u.s.p, v.u.s.n) == 0)
                    *out = true;
        }
        return TM_OK;
    }
    if (!has_x)
        return tm__jj_err(c, "no test named '%s' (or it needs an argument)", name);
    if (name_is(name, "eq") || name_is(name, "equalto") || name_is(name, "==")) {
        *out = tm__jj_equal(v, x);
        return TM_OK;
    }
    if (name_is(name, "ne") || name_is(name, "!=")) {
        *out = !tm__jj_equal(v, x);
        return TM_OK;
    }
    if (name_is(name, "sameas")) {
        bool scalar = v.type == JV_NONE || v.type == JV_BOOL || v.type == JV_UNDEF;
        *out = v.type == x.type && (scalar             ? tm__jj_equal(v, x)
                                    : v.type == JV_STR ? v.u.s.p == x.u.s.p
                                                       : tm__jj_equal(v, x));
        return TM_OK;
    }
    if (name_is(name, "in")) {
        jv r;
        if (x.type == JV_STR) {
            TM_TRY(need_str(c, v, "in"));
            *out = tm__jj_memfind(x.u.s.p, x.u.s.n, v.u.s.p, v.u.s.n) != NULL;
            return TM_OK;
        }
        if (jv_is_map(x)) {
            *out = tm__jj_dict_get(x.u.d, v, &r);
            return TM_OK;
        }
        jj_list *l;
        TM_TRY(tm__jj_iterate(c, x, &l));
        *out = false;
        for (size_t i = 0; i < l->n; i++)
            if (tm__jj_equal(l->v[i], v))
                *out = true;
        return TM_OK;
    }
    int r;
    int kind = name_is(name, "lt") || name_is(name, "<") || name_is(name, "lessthan")      ? 1
               : name_is(name, "le") || name_is(name, "<=")                                ? 2
               : name_is(name, "gt") || name_is(name, ">") || name_is(name, "greaterthan") ? 3
               : name_is(name, "ge") || name_is(name, ">=")                                ? 4
                                                                                           : 0;
    if (kind == 0)
        return tm__jj_err(c, "no test named '%s'", name);
    TM_TRY(tm__jj_compare(c, v, x, &r));
    *out = kind == 1 ? r < 0 : kind == 2 ? r <= 0 : kind == 3 ? r > 0 : r >= 0;
    return TM_OK;
}
