/*
 * jinja_eval.c - tree-walking evaluator for the Jinja AST.
 *
 * DESIGN
 * ------
 * Scopes follow Jinja's rules as chat templates observe them: "if" opens no
 * scope, each for-loop iteration opens a child scope (assignments inside a
 * loop body do not survive the iteration; reads fall back to the outer
 * scope), a macro call runs in a child of the template's root scope, and a
 * call block's caller() runs in a child of the scope around the call block.
 * namespace() objects are the only way to carry state out of a loop.
 *
 * Every node evaluation counts one step; steps, output bytes, call depth and
 * arena bytes are capped (jj_limits) so a hostile template ends in an error.
 * Errors name the template, line and column of the node being evaluated.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "jinja_int.h"

static tm_status eval(jj_ctx *c, jj_scope *s, const jj_node *n, jv *out);
static tm_status exec(jj_ctx *c, jj_scope *s, const jj_node *n);

static tm_status step(jj_ctx *c, const jj_node *n) {
    c->node = n;
    if (++c->steps > c->lim.max_steps)
        return tm__jj_err(c, "template exceeded the limit of %lld evaluation steps",
                          (long long)c->lim.max_steps);
    return TM_OK;
}

static jj_scope *scope_new(jj_ctx *c, jj_scope *parent) {
    jj_scope *s = tm__jj_alloc(&c->arena, sizeof *s);
    if (s != NULL)
        s->parent = parent;
    return s;
}

static bool lookup(jj_scope *s, const char *name, jv *out) {
    jv k = jv_strn(name, strlen(name));
    for (; s != NULL; s = s->parent)
        if (tm__jj_dict_get(&s->vars, k, out))
            return true;
    return false;
}

static tm_status assign(jj_ctx *c, jj_scope *s, const char *name, jv v) {
    return tm__jj_dict_set(c, &s->vars, jv_strn(name, strlen(name)), v);
}

static tm_status undef_err(jj_ctx *c, jv v) {
    if (v.u.undef != NULL)
        return tm__jj_err(c, "%s is undefined", v.u.undef);
    return tm__jj_err(c, "value is undefined");
}

/* ---- attribute and item access ---------------------------------------------- */
static jv undef_attr(jj_ctx *c, jv obj, const char *name, size_t n) {
    char *msg = tm__jj_alloc(&c->arena, n + 64);
    if (msg != NULL)
        snprintf(msg, n + 64, "'%s object' has no attribute '%.*s'", tm__jj_type_name(obj), (int)n,
                 name);
    return jv_undef(msg);
}

tm_status tm__jj_getattr(jj_ctx *c, jv obj, const char *name, size_t n, jv *out) {
    if (obj.type == JV_UNDEF)
        return undef_err(c, obj);
    /* Python getattr first (methods), then the item, as Jinja's getattr. */
    if (obj.type == JV_NS) {
        if (!tm__jj_dict_get(obj.u.d, jv_strn(name, n), out))
            *out = undef_attr(c, obj, name, n);
        return TM_OK;
    }
    if (tm__jj_method(c, obj, name, n, out))
        return out->type == JV_UNDEF ? tm__jj_nomem(c) : TM_OK;
    if (obj.type == JV_DICT && tm__jj_dict_get(obj.u.d, jv_strn(name, n), out))
        return TM_OK;
    *out = undef_attr(c, obj, name, n);
    return TM_OK;
}

static bool norm_index(int64_t i, size_t len, size_t *out) {
    if (i < 0)
        i += (int64_t)len;
    if (i < 0 || (uint64_t)i >= len)
        return false;
    *out = (size_t)i;
    return true;
}

tm_status tm__jj_getitem(jj_ctx *c, jv obj, jv key, jv *out) {
    if (obj.type == JV_UNDEF)
        return undef_err(c, obj);
    if (obj.type == JV_DICT || obj.type == JV_NS) {
        if (tm__jj_dict_get(obj.u.d, key, out))
            return TM_OK;
        if (key.type == JV_STR && obj.type == JV_DICT &&
            tm__jj_method(c, obj, key.u.s.p, key.u.s.n, out))
            return TM_OK;
        if (key.type == JV_STR)
            *out = undef_attr(c, obj, key.u.s.p, key.u.s.n);
        else
            *out = jv_undef("dict key");
        return TM_OK;
    }
    if ((jv_is_seq(obj) || obj.type == JV_STR) && (key.type == JV_INT || key.type == JV_BOOL)) {
        int64_t i = key.type == JV_INT ? key.u.i : key.u.b;
        size_t  k;
        if (obj.type == JV_STR) {
            size_t len = tm__jj_utf8_len(obj.u.s.p, obj.u.s.n);
            if (!norm_index(i, len, &k)) {
                *out = jv_undef("string index out of range");
                return TM_OK;
            }
            size_t   p = 0;
            uint32_t cp;
            for (size_t j = 0; j < k; j++)
                p = tm__jj_utf8_next(obj.u.s.p, obj.u.s.n, p, &cp);
            size_t e = tm__jj_utf8_next(obj.u.s.p, obj.u.s.n, p, &cp);
            *out = jv_strn(obj.u.s.p + p, e - p);
            return TM_OK;
        }
        if (!norm_index(i, obj.u.l->n, &k)) {
            *out = jv_undef("list index out of range");
            return TM_OK;
        }
        *out = obj.u.l->v[k];
        return TM_OK;
    }
    if (key.type == JV_STR)
        return tm__jj_getattr(c, obj, key.u.s.p, key.u.s.n, out);
    *out = jv_undef("item");
    return TM_OK;
}

/* Python slice semantics over a sequence of len items. */
static tm_status slice_indices(jj_ctx *c, jv a, jv b, jv st, size_t len, int64_t *start,
                               int64_t *stop, int64_t *stepv) {
    jv      parts[3] = {a, b, st};
    int64_t v[3] = {0, 0, 1};
    bool    have[3] = {false, false, false};
    for (int k = 0; k < 3; k++) {
        if (parts[k].type == JV_NONE || parts[k].type == JV_UNDEF)
            continue;
        if (parts[k].type != JV_INT && parts[k].type != JV_BOOL)
            return tm__jj_err(c, "slice indices must be integers or None");
        v[k] = parts[k].type == JV_INT ? parts[k].u.i : parts[k].u.b;
        have[k] = true;
    }
    if (v[2] == 0)
        return tm__jj_err(c, "slice step cannot be zero");
    int64_t L = (int64_t)len, s = v[2];
    int64_t lo = s > 0 ? 0 : -1, hi = s > 0 ? L : L - 1;
    int64_t x = have[0] ? v[0] : (s > 0 ? 0 : hi);
    int64_t y = have[1] ? v[1] : (s > 0 ? L : lo);
    if (have[0]) {
        if (x < 0)
            x = x + L < lo ? lo : x + L;
        else if (x > hi)
            x = hi;
    }
    if (have[1]) {
        if (y < 0)
            y = y + L < lo ? lo : y + L;
        else if (y > hi)
            y = hi;
    }
    *start = x;
    *stop = y;
    *stepv = s;
    return TM_OK;
}

static tm_status do_slice(jj_ctx *c, jv obj, jv a, jv b, jv st, jv *out) {
    if (obj.type == JV_UNDEF)
        return undef_err(c, obj);
    if (obj.type == JV_STR) {
        /* Work on code points. */
        size_t   len = tm__jj_utf8_len(obj.u.s.p, obj.u.s.n);
        size_t  *off = tm__jj_alloc(&c->arena, (len + 1) * sizeof(size_t));
        char    *buf = tm__jj_alloc(&c->arena, obj.u.s.n + 1);
        uint32_t cp;
        if (off == NULL || buf == NULL)
            return tm__jj_nomem(c);
        size_t p = 0;
        for (size_t k = 0; k < len; k++) {
            off[k] = p;
            p = tm__jj_utf8_next(obj.u.s.p, obj.u.s.n, p, &cp);
        }
        off[len] = p;
        int64_t x, y, s;
        TM_TRY(slice_indices(c, a, b, st, len, &x, &y, &s));
        size_t o = 0;
        for (int64_t k = x; s > 0 ? k < y : k > y; k += s) {
            size_t w = off[k + 1] - off[k];
            memcpy(buf + o, obj.u.s.p + off[k], w);
            o += w;
        }
        *out = jv_strn(buf, o);
        return TM_OK;
    }
    if (!jv_is_seq(obj))
        return tm__jj_err(c, "'%s' object is not subscriptable", tm__jj_type_name(obj));
    int64_t x, y, s;
    TM_TRY(slice_indices(c, a, b, st, obj.u.l->n, &x, &y, &s));
    jj_list *l = tm__jj_list_new(c, 0);
    if (l == NULL)
        return tm__jj_nomem(c);
    for (int64_t k = x; s > 0 ? k < y : k > y; k += s)
        TM_TRY(tm__jj_list_push(c, l, obj.u.l->v[k]));
    out->type = obj.type;
    out->u.l = l;
    return TM_OK;
}

tm_status tm__jj_iterate(jj_ctx *c, jv v, jj_list **out) {
    jj_list *l;
    switch (v.type) {
    case JV_LIST:
    case JV_TUPLE: *out = v.u.l; return TM_OK;
    case JV_UNDEF:
        if ((l = tm__jj_list_new(c, 0)) == NULL)
            return tm__jj_nomem(c);
        *out = l;
        return TM_OK;
    case JV_DICT:
        if ((l = tm__jj_list_new(c, v.u.d->n)) == NULL)
            return tm__jj_nomem(c);
        for (size_t i = 0; i < v.u.d->n; i++)
            l->v[l->n++] = v.u.d->k[i];
        *out = l;
        return TM_OK;
    case JV_STR: {
        if ((l = tm__jj_list_new(c, v.u.s.n)) == NULL)
            return tm__jj_nomem(c);
        size_t   i = 0;
        uint32_t cp;
        while (i < v.u.s.n) {
            size_t j = tm__jj_utf8_next(v.u.s.p, v.u.s.n, i, &cp);
            l->v[l->n++] = jv_strn(v.u.s.p + i, j - i);
            i = j;
        }
        *out = l;
        return TM_OK;
    }
    default: return tm__jj_err(c, "'%s' object is not iterable", tm__jj_type_name(v));
    }
}

/* ---- operators -------------------------------------------------------------- */
static double as_f(jv v) {
    return v.type == JV_FLOAT ? v.u.f : v.type == JV_INT ? (double)v.u.i : (double)v.u.b;
}
static int64_t as_i(jv v) { return v.type == JV_INT ? v.u.i : (int64_t)v.u.b; }

static tm_status type_err(jj_ctx *c, const char *op, jv a, jv b) {
    if (a.type == JV_UNDEF)
        return undef_err(c, a);
    if (b.type == JV_UNDEF)
        return undef_err(c, b);
    return tm__jj_err(c, "unsupported operand type(s) for %s: '%s' and '%s'", op,
                      tm__jj_type_name(a), tm__jj_type_name(b));
}

static tm_status repeat(jj_ctx *c, jv seq, int64_t times, jv *out) {
    if (times < 0)
        times = 0;
    if (seq.type == JV_STR) {
        size_t total;
        if (!tm_size_mul(seq.u.s.n, (size_t)times, &total) || total > c->lim.max_output_bytes)
            return tm__jj_err(c, "string repetition too large");
        char *p = tm__jj_alloc(&c->arena, total + 1);
        if (p == NULL)
            return tm__jj_nomem(c);
        for (int64_t k = 0; k < times; k++)
            memcpy(p + (size_t)k * seq.u.s.n, seq.u.s.p, seq.u.s.n);
        *out = jv_strn(p, total);
        return TM_OK;
    }
    size_t total;
    if (!tm_size_mul(seq.u.l->n, (size_t)times, &total) || total > 10000000)
        return tm__jj_err(c, "list repetition too large");
    jj_list *l = tm__jj_list_new(c, total);
    if (l == NULL)
        return tm__jj_nomem(c);
    for (int64_t k = 0; k < times; k++)
        for (size_t i = 0; i < seq.u.l->n; i++)
            l->v[l->n++] = seq.u.l->v[i];
    out->type = seq.type;
    out->u.l = l;
    return TM_OK;
}

static tm_status binop(jj_ctx *c, int32_t op, jv a, jv b, jv *out) {
    bool num = jv_is_num(a) && jv_is_num(b);
    bool ints = num && a.type != JV_FLOAT && b.type != JV_FLOAT;
    switch (op) {
    case '~': {
        jv sa, sb;
        TM_TRY(tm__jj_to_str(c, a, &sa));
        TM_TRY(tm__jj_to_str(c, b, &sb));
        return tm__jj_str_cat(c, sa, sb, out);
    }
    case '+':
        if (ints) {
            int64_t r;
            if (__builtin_add_overflow(as_i(a), as_i(b), &r))
                return tm__jj_err(c, "integer overflow");
            *out = jv_int(r);
        } else if (num) {
            *out = jv_float(as_f(a) + as_f(b));
        } else if (a.type == JV_STR && b.type == JV_STR) {
            return tm__jj_str_cat(c, a, b, out);
        } else if (jv_is_seq(a) && a.type == b.type) {
            jj_list *l = tm__jj_list_new(c, a.u.l->n + b.u.l->n);
            if (l == NULL)
                return tm__jj_nomem(c);
            for (size_t i = 0; i < a.u.l->n; i++)
                l->v[l->n++] = a.u.l->v[i];
            for (size_t i = 0; i < b.u.l->n; i++)
                l->v[l->n++] = b.u.l->v[i];
            out->type = a.type;
            out->u.l = l;
        } else {
            return type_err(c, "+", a, b);
        }
        return TM_OK;
    case '-':
        if (ints) {
            int64_t r;
            if (__builtin_sub_overflow(as_i(a), as_i(b), &r))
                return tm__jj_err(c, "integer overflow");
            *out = jv_int(r);
        } else if (num) {
            *out = jv_float(as_f(a) - as_f(b));
        } else {
            return type_err(c, "-", a, b);
        }
        return TM_OK;
    case '*':
        if (ints) {
            int64_t r;
            if (__builtin_mul_overflow(as_i(a), as_i(b), &r))
                return tm__jj_err(c, "integer overflow");
            *out = jv_int(r);
        } else if (num) {
            *out = jv_float(as_f(a) * as_f(b));
        } else if ((a.type == JV_STR || jv_is_seq(a)) && (b.type == JV_INT || b.type == JV_BOOL)) {
            return repeat(c, a, as_i(b), out);
        } else if ((b.type == JV_STR || jv_is_seq(b)) && (a.type == JV_INT || a.type == JV_BOOL)) {
            return repeat(c, b, as_i(a), out);
        } else {
            return type_err(c, "*", a, b);
        }
        return TM_OK;
    case '/':
        if (!num)
            return type_err(c, "/", a, b);
        if (as_f(b) == 0.0)
            return tm__jj_err(c, "division by zero");
        *out = jv_float(as_f(a) / as_f(b));
        return TM_OK;
    case JJ_OP_FLOORDIV:
    case '%':
        if (op == '%' && a.type == JV_STR)
            return tm__jj_percent_format(c, a, b, out);
        if (!num)
            return type_err(c, op == '%' ? "%" : "//", a, b);
        if (ints) {
            int64_t x = as_i(a), y = as_i(b);
            if (y == 0)
                return tm__jj_err(c, "integer division or modulo by zero");
            if (x == INT64_MIN && y == -1)
                return tm__jj_err(c, "integer overflow");
            int64_t q = x / y, r = x % y;
            if (r != 0 && ((r < 0) != (y < 0))) { /* Python floors */
                q--;
                r += y;
            }
            *out = jv_int(op == '%' ? r : q);
        } else {
            double x = as_f(a), y = as_f(b);
            if (y == 0.0)
                return tm__jj_err(c, "float division by zero");
            double r = fmod(x, y);
            if (r != 0 && ((r < 0) != (y < 0)))
                r += y;
            *out = jv_float(op == '%' ? r : floor(x / y));
        }
        return TM_OK;
    case JJ_OP_POW:
        if (!num)
            return type_err(c, "**", a, b);
        if (ints && as_i(b) >= 0) {
            int64_t base = as_i(a), e = as_i(b), r = 1;
            while (e > 0) {
                if (e & 1) {
                    if (__builtin_mul_overflow(r, base, &r))
                        return tm__jj_err(c, "integer overflow");
                }
                e >>= 1;
                if (e > 0 && __builtin_mul_overflow(base, base, &base))
                    return tm__jj_err(c, "integer overflow");
            }
            *out = jv_int(r);
        } else {
            if (as_f(a) == 0.0 && as_f(b) < 0)
                return tm__jj_err(c, "zero cannot be raised to a negative power");
            *out = jv_float(pow(as_f(a), as_f(b)));
        }
        return TM_OK;
    }
    return tm__jj_err(c, "unknown operator");
}

static tm_status contains(jj_ctx *c, jv hay, jv needle, bool *out) {
    switch (hay.type) {
    case JV_STR:
        if (needle.type != JV_STR)
            return tm__jj_err(c, "'in <string>' requires string as left operand, not %s",
                              tm__jj_type_name(needle));
        if (needle.u.s.n == 0) {
            *out = true;
            return TM_OK;
        }
        *out = false;
        for (size_t i = 0; i + needle.u.s.n <= hay.u.s.n; i++)
            if (memcmp(hay.u.s.p + i, needle.u.s.p, needle.u.s.n) == 0) {
                *out = true;
                break;
            }
        return TM_OK;
    case JV_LIST:
    case JV_TUPLE:
        *out = false;
        for (size_t i = 0; i < hay.u.l->n; i++)
            if (tm__jj_equal(hay.u.l->v[i], needle)) {
                *out = true;
                break;
            }
        return TM_OK;
    case JV_DICT:
    case JV_NS: {
        jv tmp;
        *out = tm__jj_dict_get(hay.u.d, needle, &tmp);
        return TM_OK;
    }
    case JV_UNDEF: *out = false; return TM_OK;
    default: return tm__jj_err(c, "argument of type '%s' is not iterable", tm__jj_type_name(hay));
    }
}

static tm_status compare_op(jj_ctx *c, int32_t op, jv a, jv b, bool *out) {
    int r;
    switch (op) {
    case JJ_OP_EQ: *out = tm__jj_equal(a, b); return TM_OK;
    case JJ_OP_NE: *out = !tm__jj_equal(a, b); return TM_OK;
    case JJ_OP_IN: return contains(c, b, a, out);
    case JJ_OP_NOTIN:
        TM_TRY(contains(c, b, a, out));
        *out = !*out;
        return TM_OK;
    }
    TM_TRY(tm__jj_compare(c, a, b, &r));
    *out = op == '<' ? r < 0 : op == '>' ? r > 0 : op == JJ_OP_LE ? r <= 0 : r >= 0;
    return TM_OK;
}

/* ---- calls ------------------------------------------------------------------ */
typedef struct argv_buf {
    jv          *pos;
    size_t       n_pos;
    const char **kw_names;
    jv          *kw;
    size_t       n_kw;
} argv_buf;

static tm_status eval_args(jj_ctx *c, jj_scope *s, const jj_node *n, size_t extra_kw, argv_buf *a) {
    a->pos = tm__jj_alloc(&c->arena, (n->n_items + 1) * sizeof(jv));
    a->kw = tm__jj_alloc(&c->arena, (n->n_kw + extra_kw + 1) * sizeof(jv));
    a->kw_names = tm__jj_alloc(&c->arena, (n->n_kw + extra_kw + 1) * sizeof(char *));
    if (a->pos == NULL || a->kw == NULL || a->kw_names == NULL)
        return tm__jj_nomem(c);
    for (size_t i = 0; i < n->n_items; i++)
        TM_TRY(eval(c, s, n->items[i], &a->pos[i]));
    for (size_t i = 0; i < n->n_kw; i++) {
        TM_TRY(eval(c, s, n->kwv[i], &a->kw[i]));
        a->kw_names[i] = n->kw_names[i];
    }
    a->n_pos = n->n_items;
    a->n_kw = n->n_kw;
    c->node = n;
    return TM_OK;
}

/* Runs body in scope s, capturing its output as a string. */
static tm_status capture(jj_ctx *c, jj_scope *s, const jj_node *body, jv *out) {
    jj_buf  b = {.limit = c->lim.max_output_bytes};
    jj_buf *saved = c->out;
    c->out = &b;
    tm_status st = exec(c, s, body);
    c->out = saved;
    if (st == TM_OK)
        st = tm__jj_str_dup(c, b.p ? b.p : "", b.n, out);
    tm__jj_buf_free(&b);
    return st;
}

static tm_status call_macro(jj_ctx *c, const jj_func *f, const jj_args *a, jv *out) {
    const jj_node *m = f->node;
    jj_scope      *s = scope_new(c, f->kind == JJ_FN_CALLER ? f->scope : c->root);
    if (s == NULL)
        return tm__jj_nomem(c);
    if (c->depth >= c->lim.max_depth)
        return tm__jj_err(c, "recursion deeper than %d calls", c->lim.max_depth);
    jj_list *varargs = tm__jj_list_new(c, 0);
    jj_dict *kwargs = tm__jj_dict_new(c, 0);
    if (varargs == NULL || kwargs == NULL)
        return tm__jj_nomem(c);
    for (size_t i = 0; i < m->n_items; i++) {
        jv v = jv_undef(m->items[i]->name);
        if (i < a->n_pos)
            v = a->pos[i];
        else if (m->kwv[i] != NULL)
            TM_TRY(eval(c, s, m->kwv[i], &v));
        TM_TRY(assign(c, s, m->items[i]->name, v));
    }
    for (size_t i = m->n_items; i < a->n_pos; i++)
        TM_TRY(tm__jj_list_push(c, varargs, a->pos[i]));
    for (size_t k = 0; k < a->n_kw; k++) {
        bool bound = false;
        for (size_t i = 0; i < m->n_items; i++)
            if (strcmp(m->items[i]->name, a->kw_names[k]) == 0) {
                if (i < a->n_pos)
                    return tm__jj_err(c, "macro '%s' got multiple values for argument '%s'",
                                      f->name, a->kw_names[k]);
                TM_TRY(assign(c, s, a->kw_names[k], a->kw[k]));
                bound = true;
            }
        if (!bound && strcmp(a->kw_names[k], "caller") == 0) {
            TM_TRY(assign(c, s, "caller", a->kw[k]));
            bound = true;
        }
        if (!bound)
            TM_TRY(tm__jj_dict_set(c, kwargs, jv_strn(a->kw_names[k], strlen(a->kw_names[k])),
                                   a->kw[k]));
    }
    jv vl = {.type = JV_TUPLE, .u.l = varargs}, vk = {.type = JV_DICT, .u.d = kwargs};
    TM_TRY(assign(c, s, "varargs", vl));
    TM_TRY(assign(c, s, "kwargs", vk));
    c->depth++;
    int32_t   saved_flow = c->flow;
    tm_status st = capture(c, s, m->d, out);
    c->flow = saved_flow;
    c->depth--;
    return st;
}

tm_status tm__jj_call(jj_ctx *c, jv fn, const jj_args *a, jv *out) {
    if (fn.type == JV_UNDEF)
        return undef_err(c, fn);
    if (fn.type != JV_FUNC)
        return tm__jj_err(c, "'%s' object is not callable", tm__jj_type_name(fn));
    const jj_func *f = fn.u.fn;
    if (f->kind == JJ_FN_NATIVE)
        return f->native(c, f->self, a, out);
    return call_macro(c, f, a, out);
}

/* ---- expressions ------------------------------------------------------------ */
static tm_status eval(jj_ctx *c, jj_scope *s, const jj_node *n, jv *out) {
    TM_TRY(step(c, n));
    switch (n->kind) {
    case JN_CONST: *out = n->val; return TM_OK;
    case JN_NAME:
        if (lookup(s, n->name, out) || tm__jj_global(n->name, out))
            return TM_OK;
        {
            size_t len = strlen(n->name) + 3;
            char  *msg = tm__jj_alloc(&c->arena, len);
            if (msg != NULL)
                snprintf(msg, len, "'%s'", n->name);
            *out = jv_undef(msg);
        }
        return TM_OK;
    case JN_BLOCKVAL: *out = c->blockval; return TM_OK;
    case JN_LIST:
    case JN_TUPLE: {
        jj_list *l = tm__jj_list_new(c, n->n_items);
        if (l == NULL)
            return tm__jj_nomem(c);
        for (size_t i = 0; i < n->n_items; i++)
            TM_TRY(eval(c, s, n->items[i], &l->v[l->n++]));
        out->type = n->kind == JN_LIST ? JV_LIST : JV_TUPLE;
        out->u.l = l;
        return TM_OK;
    }
    case JN_DICT: {
        jj_dict *d = tm__jj_dict_new(c, n->n_items / 2);
        if (d == NULL)
            return tm__jj_nomem(c);
        for (size_t i = 0; i + 1 < n->n_items; i += 2) {
            jv k, v;
            TM_TRY(eval(c, s, n->items[i], &k));
            TM_TRY(eval(c, s, n->items[i + 1], &v));
            if (k.type == JV_LIST || k.type == JV_DICT || k.type == JV_UNDEF) {
                c->node = n;
                return tm__jj_err(c, "unhashable type: '%s'", tm__jj_type_name(k));
            }
            TM_TRY(tm__jj_dict_set(c, d, k, v));
        }
        out->type = JV_DICT;
        out->u.d = d;
        return TM_OK;
    }
    case JN_GETATTR: {
        jv obj;
        TM_TRY(eval(c, s, n->a, &obj));
        c->node = n;
        return tm__jj_getattr(c, obj, n->name, strlen(n->name), out);
    }
    case JN_GETITEM: {
        jv obj, key;
        TM_TRY(eval(c, s, n->a, &obj));
        TM_TRY(eval(c, s, n->b, &key));
        c->node = n;
        return tm__jj_getitem(c, obj, key, out);
    }
    case JN_SLICE: {
        jv             obj, p[3] = {jv_none(), jv_none(), jv_none()};
        const jj_node *parts[3] = {n->b, n->c, n->d};
        TM_TRY(eval(c, s, n->a, &obj));
        for (int k = 0; k < 3; k++)
            if (parts[k] != NULL)
                TM_TRY(eval(c, s, parts[k], &p[k]));
        c->node = n;
        return do_slice(c, obj, p[0], p[1], p[2], out);
    }
    case JN_CALL: {
        jv       fn;
        argv_buf a;
        TM_TRY(eval(c, s, n->a, &fn));
        TM_TRY(eval_args(c, s, n, 0, &a));
        jj_args args = {a.n_pos, a.pos, a.n_kw, a.kw_names, a.kw};
        return tm__jj_call(c, fn, &args, out);
    }
    case JN_FILTER: {
        jv       v;
        argv_buf a;
        if (n->a != NULL)
            TM_TRY(eval(c, s, n->a, &v));
        else
            v = c->blockval;
        TM_TRY(eval_args(c, s, n, 0, &a));
        jj_args args = {a.n_pos, a.pos, a.n_kw, a.kw_names, a.kw};
        return tm__jj_filter(c, n->name, v, &args, out);
    }
    case JN_TEST: {
        jv       v;
        argv_buf a;
        bool     r;
        TM_TRY(eval(c, s, n->a, &v));
        TM_TRY(eval_args(c, s, n, 0, &a));
        jj_args args = {a.n_pos, a.pos, a.n_kw, a.kw_names, a.kw};
        TM_TRY(tm__jj_test(c, n->name, v, &args, &r));
        *out = jv_bool(n->op ? !r : r);
        return TM_OK;
    }
    case JN_UNARY: {
        jv v;
        TM_TRY(eval(c, s, n->a, &v));
        c->node = n;
        if (n->op == JJ_OP_NOT) {
            *out = jv_bool(!tm__jj_truthy(v));
        } else if (v.type == JV_FLOAT) {
            *out = jv_float(n->op == JJ_OP_NEG ? -v.u.f : v.u.f);
        } else if (v.type == JV_INT || v.type == JV_BOOL) {
            int64_t i = as_i(v);
            if (n->op == JJ_OP_NEG && i == INT64_MIN)
                return tm__jj_err(c, "integer overflow");
            *out = jv_int(n->op == JJ_OP_NEG ? -i : i);
        } else if (v.type == JV_UNDEF) {
            return undef_err(c, v);
        } else {
            return tm__jj_err(c, "bad operand type for unary %s: '%s'",
                              n->op == JJ_OP_NEG ? "-" : "+", tm__jj_type_name(v));
        }
        return TM_OK;
    }
    case JN_BINOP: {
        jv a, b;
        TM_TRY(eval(c, s, n->a, &a));
        TM_TRY(eval(c, s, n->b, &b));
        c->node = n;
        return binop(c, n->op, a, b, out);
    }
    case JN_CMP: {
        jv   a, b;
        bool r;
        TM_TRY(eval(c, s, n->a, &a));
        TM_TRY(eval(c, s, n->b, &b));
        c->node = n;
        TM_TRY(compare_op(c, n->op, a, b, &r));
        *out = jv_bool(r);
        return TM_OK;
    }
    case JN_AND:
    case JN_OR: {
        /* Python: returns the deciding operand, not a bool. */
        TM_TRY(eval(c, s, n->a, out));
        bool t = tm__jj_truthy(*out);
        if (n->kind == JN_AND ? !t : t)
            return TM_OK;
        return eval(c, s, n->b, out);
    }
    case JN_COND: {
        jv cond;
        TM_TRY(eval(c, s, n->b, &cond));
        if (tm__jj_truthy(cond))
            return eval(c, s, n->a, out);
        if (n->c != NULL)
            return eval(c, s, n->c, out);
        *out = jv_undef("the conditional expression's missing else branch");
        return TM_OK;
    }
    default: return tm__jj_err(c, "statement used as an expression");
    }
}

/* ---- statements ------------------------------------------------------------- */
static tm_status assign_target(jj_ctx *c, jj_scope *s, const jj_node *t, jv v) {
    if (t->kind == JN_NAME)
        return assign(c, s, t->name, v);
    if (t->kind == JN_GETATTR) {
        jv obj;
        if (!lookup(s, t->a->name, &obj) || obj.type != JV_NS) {
            c->node = t;
            return tm__jj_err(c, "cannot assign attribute on non-namespace object");
        }
        return tm__jj_dict_set(c, obj.u.d, jv_strn(t->name, strlen(t->name)), v);
    }
    /* tuple unpacking */
    jj_list *l;
    c->node = t;
    if (v.type == JV_UNDEF)
        return undef_err(c, v);
    TM_TRY(tm__jj_iterate(c, v, &l));
    if (l->n != t->n_items)
        return tm__jj_err(c, "cannot unpack %zu values into %zu names", l->n, t->n_items);
    for (size_t i = 0; i < t->n_items; i++)
        TM_TRY(assign_target(c, s, t->items[i], l->v[i]));
    return TM_OK;
}

static tm_status loop_cycle(jj_ctx *c, jv self, const jj_args *a, jv *out) {
    jv idx;
    if (a->n_pos == 0)
        return tm__jj_err(c, "no items for cycling given");
    if (!tm__jj_dict_gets(self.u.d, "index0", &idx))
        return tm__jj_err(c, "loop.cycle outside a loop");
    *out = a->pos[(size_t)idx.u.i % a->n_pos];
    return TM_OK;
}

static tm_status exec_for(jj_ctx *c, jj_scope *s, const jj_node *n) {
    jv       seqv;
    jj_list *items;
    TM_TRY(eval(c, s, n->b, &seqv));
    c->node = n;
    TM_TRY(tm__jj_iterate(c, seqv, &items));
    if (n->c != NULL) { /* "for x in y if cond": filter first, loop.length counts kept items */
        jj_list *kept = tm__jj_list_new(c, 0);
        if (kept == NULL)
            return tm__jj_nomem(c);
        for (size_t i = 0; i < items->n; i++) {
            jj_scope *fs = scope_new(c, s);
            jv        cond;
            if (fs == NULL)
                return tm__jj_nomem(c);
            TM_TRY(assign_target(c, fs, n->a, items->v[i]));
            TM_TRY(eval(c, fs, n->c, &cond));
            if (tm__jj_truthy(cond))
                TM_TRY(tm__jj_list_push(c, kept, items->v[i]));
        }
        items = kept;
    }
    if (items->n == 0)
        return n->e != NULL ? exec(c, s, n->e) : TM_OK;
    jv   outer_loop;
    bool has_outer = lookup(s, "loop", &outer_loop) && outer_loop.type == JV_DICT;
    jv   depthv = jv_int(1);
    if (has_outer && tm__jj_dict_gets(outer_loop.u.d, "depth", &depthv))
        depthv = jv_int(depthv.u.i + 1);
    jj_func *cyc = tm__jj_alloc(&c->arena, sizeof *cyc);
    if (cyc == NULL)
        return tm__jj_nomem(c);
    cyc->kind = JJ_FN_NATIVE;
    cyc->name = "cycle";
    cyc->native = loop_cycle;
    size_t len = items->n;
    for (size_t i = 0; i < len; i++) {
        jj_scope *is = scope_new(c, s);
        jj_dict  *loop = tm__jj_dict_new(c, 16);
        if (is == NULL || loop == NULL)
            return tm__jj_nomem(c);
        jv lv = {.type = JV_DICT, .u.d = loop};
        cyc = tm__jj_alloc(&c->arena, sizeof *cyc);
        if (cyc == NULL)
            return tm__jj_nomem(c);
        *cyc = (jj_func){.kind = JJ_FN_NATIVE, .name = "cycle", .native = loop_cycle, .self = lv};
        jv fv = {.type = JV_FUNC, .u.fn = cyc};
        struct {
            const char *k;
            jv          v;
        } f[] = {
            {"index", jv_int((int64_t)i + 1)},
            {"index0", jv_int((int64_t)i)},
            {"revindex", jv_int((int64_t)(len - i))},
            {"revindex0", jv_int((int64_t)(len - i - 1))},
            {"first", jv_bool(i == 0)},
            {"last", jv_bool(i + 1 == len)},
            {"length", jv_int((int64_t)len)},
            {"depth", depthv},
            {"depth0", jv_int(depthv.u.i - 1)},
            {"previtem", i > 0 ? items->v[i - 1] : jv_undef("'loop.previtem'")},
            {"nextitem", i + 1 < len ? items->v[i + 1] : jv_undef("'loop.nextitem'")},
            {"cycle", fv},
        };
        for (size_t k = 0; k < sizeof f / sizeof f[0]; k++)
            TM_TRY(tm__jj_dict_set(c, loop, jv_strn(f[k].k, strlen(f[k].k)), f[k].v));
        TM_TRY(assign(c, is, "loop", lv));
        c->node = n;
        TM_TRY(assign_target(c, is, n->a, items->v[i]));
        TM_TRY(exec(c, is, n->d));
        if (c->flow == 1) {
            c->flow = 0;
            break;
        }
        c->flow = 0;
    }
    return TM_OK;
}

static tm_status exec(jj_ctx *c, jj_scope *s, const jj_node *n) {
    TM_TRY(step(c, n));
    switch (n->kind) {
    case JN_BODY:
        for (size_t i = 0; i < n->n_items && c->flow == 0; i++)
            TM_TRY(exec(c, s, n->items[i]));
        return TM_OK;
    case JN_TEXT: return tm__jj_buf_put(c->out, n->val.u.s.p, n->val.u.s.n);
    case JN_OUTPUT: {
        jv v;
        TM_TRY(eval(c, s, n->a, &v));
        c->node = n;
        tm_status st = tm__jj_to_str_buf(c, v, c->out);
        if (st != TM_OK && st != TM_ERR_NOMEM)
            return tm__jj_err(c, "%s", tm_last_error());
        return st;
    }
    case JN_IF: {
        jv cond;
        TM_TRY(eval(c, s, n->a, &cond));
        if (tm__jj_truthy(cond))
            return exec(c, s, n->b);
        return n->c != NULL ? exec(c, s, n->c) : TM_OK;
    }
    case JN_FOR: return exec_for(c, s, n);
    case JN_SET: {
        jv v;
        TM_TRY(eval(c, s, n->b, &v));
        return assign_target(c, s, n->a, v);
    }
    case JN_SETBLOCK: {
        jv v;
        TM_TRY(capture(c, s, n->d, &v));
        if (n->c != NULL) {
            jv saved = c->blockval;
            c->blockval = v;
            tm_status st = eval(c, s, n->c, &v);
            c->blockval = saved;
            TM_TRY(st);
        }
        return assign_target(c, s, n->a, v);
    }
    case JN_FILTERBLOCK: {
        jv v, r;
        TM_TRY(capture(c, s, n->d, &v));
        jv saved = c->blockval;
        c->blockval = v;
        tm_status st = eval(c, s, n->c, &r);
        c->blockval = saved;
        TM_TRY(st);
        c->node = n;
        return tm__jj_to_str_buf(c, r, c->out);
    }
    case JN_MACRO: {
        jj_func *f = tm__jj_alloc(&c->arena, sizeof *f);
        if (f == NULL)
            return tm__jj_nomem(c);
        *f = (jj_func){.kind = JJ_FN_MACRO, .name = n->name, .node = n};
        return assign(c, s, n->name, (jv){.type = JV_FUNC, .u.fn = f});
    }
    case JN_CALLBLOCK: {
        jj_func *f = tm__jj_alloc(&c->arena, sizeof *f);
        if (f == NULL)
            return tm__jj_nomem(c);
        /* The caller is a macro whose params are the call block's signature. */
        *f = (jj_func){.kind = JJ_FN_CALLER, .name = "caller", .node = n, .scope = s};
        const jj_node *call = n->a;
        jv             fn, r;
        argv_buf       a;
        TM_TRY(eval(c, s, call->a, &fn));
        TM_TRY(eval_args(c, s, call, 1, &a));
        a.kw_names[a.n_kw] = "caller";
        a.kw[a.n_kw++] = (jv){.type = JV_FUNC, .u.fn = f};
        jj_args args = {a.n_pos, a.pos, a.n_kw, a.kw_names, a.kw};
        TM_TRY(tm__jj_call(c, fn, &args, &r));
        return tm__jj_to_str_buf(c, r, c->out);
    }
    case JN_BREAK: c->flow = 1; return TM_OK;
    case JN_CONTINUE: c->flow = 2; return TM_OK;
    default: {
        jv v;
        return eval(c, s, n, &v);
    }
    }
}

tm_status tm__jj_render(jj_ctx *c, const jj_node *root) {
    c->flow = 0;
    return exec(c, c->root, root);
}
