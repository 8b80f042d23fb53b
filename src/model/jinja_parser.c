/*
 * jinja_parser.c - recursive-descent parser from tokens to the jj_node AST.
 *
 * Precedence follows Jinja's parser (lowest first): conditional expression
 * (a if b else c), or, and, not, comparisons (== != < > <= >= in, not in,
 * chained), + -, ~, * / // %, **, unary - +, then primaries with postfix
 * .attr, [item], [a:b:c] and (call), then filters (|f) and tests (is f).
 *
 * Statements: if/elif/else, for (with "if" filter, else, recursive is
 * refused), set (expression, tuple and namespace-attribute targets, block
 * set with filters), macro, call blocks, filter blocks, break/continue and
 * the generation tag (its body renders as is). Nesting is bounded so hostile
 * templates cannot exhaust the stack.
 */
#include <stdio.h>
#include <string.h>

#include "jinja_int.h"

#define JJ_PARSE_MAX_DEPTH 200

typedef struct parser {
    jj_arena        *arena;
    const char      *name;
    const jj_tokens *toks;
    size_t           i;
    int              depth;
} parser;

static const jj_tok *cur(parser *P) { return &P->toks->v[P->i]; }
static const jj_tok *peek(parser *P, size_t k) {
    size_t j = P->i + k;
    return &P->toks->v[j < P->toks->n ? j : P->toks->n - 1];
}
static void next(parser *P) {
    if (P->i + 1 < P->toks->n)
        P->i++;
}

static tm_status perr(parser *P, const jj_tok *t, const char *fmt, const char *arg) {
    char msg[256];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    return tm_fail(TM_ERR_FORMAT, "%s:%d:%d: %s", P->name, t->line, t->col, msg);
}

static tm_status nomem(parser *P) {
    return tm_fail(TM_ERR_NOMEM, "%s: out of memory parsing", P->name);
}

static bool is_name(const jj_tok *t, const char *s) {
    return t->type == JT_NAME && t->n == strlen(s) && memcmp(t->s, s, t->n) == 0;
}
static bool is_op(const jj_tok *t, int32_t op) { return t->type == JT_OP && t->op == op; }

static jj_node *mk(parser *P, jj_node_kind k, const jj_tok *t) {
    jj_node *n = tm__jj_alloc(P->arena, sizeof *n);
    if (n != NULL) {
        n->kind = k;
        n->line = t->line;
        n->col = t->col;
    }
    return n;
}

static const char *tok_str(parser *P, const jj_tok *t) {
    char *s = tm__jj_alloc(P->arena, t->n + 1);
    if (s != NULL)
        memcpy(s, t->s, t->n);
    return s;
}

static const char *tok_desc(const jj_tok *t) {
    switch (t->type) {
    case JT_EOF: return "end of template";
    case JT_TEXT: return "template data";
    case JT_VAR_BEGIN: return "'{{'";
    case JT_VAR_END: return "'}}'";
    case JT_BLOCK_BEGIN: return "'{%'";
    case JT_BLOCK_END: return "'%}'";
    case JT_NAME: return "name";
    case JT_STRING: return "string";
    case JT_INT: return "integer";
    case JT_FLOAT: return "float";
    case JT_OP: return "operator";
    }
    return "token";
}

static tm_status expect_op(parser *P, int32_t op, const char *what) {
    if (!is_op(cur(P), op))
        return perr(P, cur(P), "expected '%s'", what);
    next(P);
    return TM_OK;
}

/* Node arrays grow in the arena; small counts, so doubling copies are cheap. */
typedef struct nvec {
    jj_node **v;
    size_t    n, cap;
} nvec;

static tm_status nvec_push(parser *P, nvec *a, jj_node *x) {
    if (a->n == a->cap) {
        size_t    cap = a->cap ? a->cap * 2 : 4;
        jj_node **v = tm__jj_alloc(P->arena, cap * sizeof *v);
        if (v == NULL)
            return nomem(P);
        if (a->n)
            memcpy(v, a->v, a->n * sizeof *v);
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = x;
    return TM_OK;
}

static tm_status parse_expr(parser *P, jj_node **out);
static tm_status parse_or(parser *P, jj_node **out);
static tm_status parse_unary(parser *P, bool with_filter, jj_node **out);
static tm_status parse_primary(parser *P, jj_node **out);
static tm_status parse_postfix(parser *P, jj_node **node);

static tm_status enter(parser *P) {
    if (++P->depth > JJ_PARSE_MAX_DEPTH)
        return perr(P, cur(P), "expression or block nesting deeper than %s", "200");
    return TM_OK;
}

/* Call arguments after '(': positional then keyword (name=value). */
static tm_status parse_call_args(parser *P, jj_node *call) {
    nvec         pos = {0}, kwv = {0};
    nvec         kwn = {0}; /* names stored as jj_node* casts would be ugly: keep a char* array */
    const char **names = NULL;
    size_t       n_names = 0, cap_names = 0;
    (void)kwn;
    next(P); /* '(' */
    while (!is_op(cur(P), ')')) {
        if (pos.n + kwv.n > 0)
            TM_TRY(expect_op(P, ',', ","));
        if (is_op(cur(P), ')'))
            break;
        if (cur(P)->type == JT_NAME && is_op(peek(P, 1), '=')) {
            if (n_names == cap_names) {
                size_t       cap = cap_names ? cap_names * 2 : 4;
                const char **v = tm__jj_alloc(P->arena, cap * sizeof *v);
                if (v == NULL)
                    return nomem(P);
                if (n_names)
                    memcpy(v, names, n_names * sizeof *v);
                names = v;
                cap_names = cap;
            }
            if ((names[n_names++] = tok_str(P, cur(P))) == NULL)
                return nomem(P);
            next(P);
            next(P);
            jj_node *v;
            TM_TRY(parse_expr(P, &v));
            TM_TRY(nvec_push(P, &kwv, v));
        } else {
            if (kwv.n > 0)
                return perr(P, cur(P), "positional argument follows keyword argument%s", "");
            jj_node *v;
            TM_TRY(parse_expr(P, &v));
            TM_TRY(nvec_push(P, &pos, v));
        }
    }
    next(P); /* ')' */
    call->items = pos.v;
    call->n_items = pos.n;
    call->kwv = kwv.v;
    call->kw_names = names;
    call->n_kw = kwv.n;
    return TM_OK;
}

static tm_status parse_filter_chain(parser *P, jj_node **node) {
    while (is_op(cur(P), '|')) {
        next(P);
        if (cur(P)->type != JT_NAME)
            return perr(P, cur(P), "expected a filter name after '|'%s", "");
        jj_node *f = mk(P, JN_FILTER, cur(P));
        if (f == NULL || (f->name = tok_str(P, cur(P))) == NULL)
            return nomem(P);
        next(P);
        /* Dotted filter names (a.b) are joined as Jinja does. */
        while (is_op(cur(P), '.') && peek(P, 1)->type == JT_NAME) {
            next(P);
            size_t        la = strlen(f->name);
            const jj_tok *t = cur(P);
            char         *s = tm__jj_alloc(P->arena, la + 1 + t->n + 1);
            if (s == NULL)
                return nomem(P);
            memcpy(s, f->name, la);
            s[la] = '.';
            memcpy(s + la + 1, t->s, t->n);
            f->name = s;
            next(P);
        }
        if (is_op(cur(P), '('))
            TM_TRY(parse_call_args(P, f));
        f->a = *node;
        *node = f;
    }
    return TM_OK;
}

static tm_status parse_filter_expr(parser *P, jj_node **node) {
    for (;;) {
        if (is_op(cur(P), '|')) {
            TM_TRY(parse_filter_chain(P, node));
        } else if (is_name(cur(P), "is")) {
            jj_node *t = mk(P, JN_TEST, cur(P));
            if (t == NULL)
                return nomem(P);
            next(P);
            if (is_name(cur(P), "not")) {
                t->op = 1;
                next(P);
            }
            if (cur(P)->type != JT_NAME)
                return perr(P, cur(P), "expected a test name after 'is'%s", "");
            if ((t->name = tok_str(P, cur(P))) == NULL)
                return nomem(P);
            next(P);
            const jj_tok *c = cur(P);
            if (is_op(c, '(')) {
                TM_TRY(parse_call_args(P, t));
            } else if ((c->type == JT_NAME || c->type == JT_STRING || c->type == JT_INT ||
                        c->type == JT_FLOAT || is_op(c, '(') || is_op(c, '[') || is_op(c, '{')) &&
                       !is_name(c, "else") && !is_name(c, "or") && !is_name(c, "and")) {
                if (is_name(c, "is"))
                    return perr(P, c, "cannot chain multiple tests with 'is'%s", "");
                jj_node *arg;
                TM_TRY(parse_primary(P, &arg));
                TM_TRY(parse_postfix(P, &arg));
                jj_node **items = tm__jj_alloc(P->arena, sizeof *items);
                if (items == NULL)
                    return nomem(P);
                items[0] = arg;
                t->items = items;
                t->n_items = 1;
            }
            t->a = *node;
            *node = t;
        } else if (is_op(cur(P), '(')) {
            jj_node *call = mk(P, JN_CALL, cur(P));
            if (call == NULL)
                return nomem(P);
            TM_TRY(parse_call_args(P, call));
            call->a = *node;
            call->line = (*node)->line; /* errors point at the callee, not at '(' */
            call->col = (*node)->col;
            *node = call;
        } else {
            return TM_OK;
        }
    }
}

static tm_status parse_subscript(parser *P, jj_node *target, jj_node **out) {
    const jj_tok *t0 = cur(P);
    next(P); /* '[' */
    jj_node *parts[3] = {NULL, NULL, NULL};
    int      n_colon = 0;
    for (;;) {
        if (is_op(cur(P), ']'))
            break;
        if (is_op(cur(P), ':')) {
            if (++n_colon > 2)
                return perr(P, cur(P), "too many ':' in slice%s", "");
            next(P);
            continue;
        }
        if (parts[n_colon] != NULL)
            return perr(P, cur(P), "expected ']'%s", "");
        TM_TRY(parse_expr(P, &parts[n_colon]));
        if (n_colon == 0 && is_op(cur(P), ',')) {
            /* a[x, y]: a tuple key */
            jj_node *tup = mk(P, JN_TUPLE, cur(P));
            nvec     v = {0};
            if (tup == NULL)
                return nomem(P);
            TM_TRY(nvec_push(P, &v, parts[0]));
            while (is_op(cur(P), ',')) {
                next(P);
                if (is_op(cur(P), ']'))
                    break;
                jj_node *e;
                TM_TRY(parse_expr(P, &e));
                TM_TRY(nvec_push(P, &v, e));
            }
            tup->items = v.v;
            tup->n_items = v.n;
            parts[0] = tup;
        }
    }
    next(P); /* ']' */
    jj_node *n = mk(P, n_colon ? JN_SLICE : JN_GETITEM, t0);
    if (n == NULL)
        return nomem(P);
    if (n_colon == 0 && parts[0] == NULL)
        return perr(P, t0, "empty subscript%s", "");
    n->a = target;
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    *out = n;
    return TM_OK;
}

static tm_status parse_postfix(parser *P, jj_node **node) {
    for (;;) {
        const jj_tok *t = cur(P);
        if (is_op(t, '.')) {
            next(P);
            const jj_tok *a = cur(P);
            jj_node      *g;
            if (a->type == JT_NAME) {
                g = mk(P, JN_GETATTR, t);
                if (g == NULL || (g->name = tok_str(P, a)) == NULL)
                    return nomem(P);
            } else if (a->type == JT_INT) {
                g = mk(P, JN_GETITEM, t);
                jj_node *k = mk(P, JN_CONST, a);
                if (g == NULL || k == NULL)
                    return nomem(P);
                k->val = jv_int(a->ival);
                g->b = k;
            } else {
                return perr(P, a, "expected an attribute name after '.'%s", "");
            }
            next(P);
            g->a = *node;
            *node = g;
        } else if (is_op(t, '[')) {
            TM_TRY(parse_subscript(P, *node, node));
        } else if (is_op(t, '(')) {
            jj_node *call = mk(P, JN_CALL, t);
            if (call == NULL)
                return nomem(P);
            TM_TRY(parse_call_args(P, call));
            call->a = *node;
            call->line = (*node)->line; /* errors point at the callee, not at '(' */
            call->col = (*node)->col;
            *node = call;
        } else {
            return TM_OK;
        }
    }
}

/* Comma-separated expressions up to a closer; *trailing_comma tells "(a,)". */
static tm_status parse_seq(parser *P, int32_t closer, nvec *v, bool *trailing_comma) {
    *trailing_comma = false;
    while (!is_op(cur(P), closer)) {
        if (v->n > 0) {
            TM_TRY(expect_op(P, ',', ","));
            if (is_op(cur(P), closer)) {
                *trailing_comma = true;
                break;
            }
        }
        jj_node *e;
        TM_TRY(parse_expr(P, &e));
        TM_TRY(nvec_push(P, v, e));
    }
    next(P);
    return TM_OK;
}

static tm_status parse_primary(parser *P, jj_node **out) {
    const jj_tok *t = cur(P);
    jj_node      *n = NULL;
    TM_TRY(enter(P));
    switch (t->type) {
    case JT_NAME:
        n = mk(P, JN_CONST, t);
        if (n == NULL)
            return nomem(P);
        if (is_name(t, "true") || is_name(t, "True")) {
            n->val = jv_bool(true);
        } else if (is_name(t, "false") || is_name(t, "False")) {
            n->val = jv_bool(false);
        } else if (is_name(t, "none") || is_name(t, "None")) {
            n->val = jv_none();
        } else {
            n->kind = JN_NAME;
            if ((n->name = tok_str(P, t)) == NULL)
                return nomem(P);
        }
        next(P);
        break;
    case JT_STRING: {
        /* Adjacent string literals concatenate. */
        size_t total = 0;
        size_t j = P->i;
        while (P->toks->v[j].type == JT_STRING)
            total += P->toks->v[j++].n;
        char *s = tm__jj_alloc(P->arena, total + 1);
        n = mk(P, JN_CONST, t);
        if (s == NULL || n == NULL)
            return nomem(P);
        size_t o = 0;
        while (cur(P)->type == JT_STRING) {
            memcpy(s + o, cur(P)->s, cur(P)->n);
            o += cur(P)->n;
            next(P);
        }
        n->val = jv_strn(s, total);
        break;
    }
    case JT_INT:
    case JT_FLOAT:
        n = mk(P, JN_CONST, t);
        if (n == NULL)
            return nomem(P);
        n->val = t->type == JT_INT ? jv_int(t->ival) : jv_float(t->fval);
        next(P);
        break;
    case JT_OP:
        if (t->op == '(') {
            next(P);
            nvec v = {0};
            bool trailing;
            TM_TRY(parse_seq(P, ')', &v, &trailing));
            if (v.n == 1 && !trailing) {
                n = v.v[0];
            } else {
                n = mk(P, JN_TUPLE, t);
                if (n == NULL)
                    return nomem(P);
                n->items = v.v;
                n->n_items = v.n;
            }
            break;
        }
        if (t->op == '[') {
            next(P);
            nvec v = {0};
            bool trailing;
            TM_TRY(parse_seq(P, ']', &v, &trailing));
            n = mk(P, JN_LIST, t);
            if (n == NULL)
                return nomem(P);
            n->items = v.v;
            n->n_items = v.n;
            break;
        }
        if (t->op == '{') {
            next(P);
            nvec v = {0};
            while (!is_op(cur(P), '}')) {
                if (v.n > 0) {
                    TM_TRY(expect_op(P, ',', ","));
                    if (is_op(cur(P), '}'))
                        break;
                }
                jj_node *k, *val;
                TM_TRY(parse_expr(P, &k));
                TM_TRY(expect_op(P, ':', ":"));
                TM_TRY(parse_expr(P, &val));
                TM_TRY(nvec_push(P, &v, k));
                TM_TRY(nvec_push(P, &v, val));
            }
            next(P);
            n = mk(P, JN_DICT, t);
            if (n == NULL)
                return nomem(P);
            n->items = v.v;
            n->n_items = v.n;
            break;
        }
        /* fallthrough */
    default: return perr(P, t, "unexpected %s", tok_desc(t));
    }
    P->depth--;
    *out = n;
    return TM_OK;
}

static tm_status parse_unary(parser *P, bool with_filter, jj_node **out) {
    const jj_tok *t = cur(P);
    jj_node      *n;
    TM_TRY(enter(P));
    if (is_op(t, '-') || is_op(t, '+')) {
        next(P);
        n = mk(P, JN_UNARY, t);
        if (n == NULL)
            return nomem(P);
        n->op = t->op == '-' ? JJ_OP_NEG : JJ_OP_POS;
        TM_TRY(parse_unary(P, false, &n->a));
    } else {
        TM_TRY(parse_primary(P, &n));
    }
    TM_TRY(parse_postfix(P, &n));
    if (with_filter)
        TM_TRY(parse_filter_expr(P, &n));
    P->depth--;
    *out = n;
    return TM_OK;
}

static tm_status binop(parser *P, jj_node_kind k, int32_t op, const jj_tok *t, jj_node *a,
                       jj_node *b, jj_node **out) {
    jj_node *n = mk(P, k, t);
    if (n == NULL)
        return nomem(P);
    n->op = op;
    n->a = a;
    n->b = b;
    *out = n;
    return TM_OK;
}

static tm_status parse_pow(parser *P, jj_node **out) {
    TM_TRY(parse_unary(P, true, out));
    while (is_op(cur(P), JJ_OP_POW)) {
        const jj_tok *t = cur(P);
        next(P);
        jj_node *r;
        TM_TRY(parse_unary(P, true, &r));
        TM_TRY(binop(P, JN_BINOP, JJ_OP_POW, t, *out, r, out));
    }
    return TM_OK;
}

static tm_status parse_math2(parser *P, jj_node **out) {
    TM_TRY(parse_pow(P, out));
    for (;;) {
        const jj_tok *t = cur(P);
        if (!(is_op(t, '*') || is_op(t, '/') || is_op(t, JJ_OP_FLOORDIV) || is_op(t, '%')))
            return TM_OK;
        next(P);
        jj_node *r;
        TM_TRY(parse_pow(P, &r));
        TM_TRY(binop(P, JN_BINOP, t->op, t, *out, r, out));
    }
}

static tm_status parse_concat(parser *P, jj_node **out) {
    TM_TRY(parse_math2(P, out));
    while (is_op(cur(P), '~')) {
        const jj_tok *t = cur(P);
        next(P);
        jj_node *r;
        TM_TRY(parse_math2(P, &r));
        TM_TRY(binop(P, JN_BINOP, '~', t, *out, r, out));
    }
    return TM_OK;
}

static tm_status parse_math1(parser *P, jj_node **out) {
    TM_TRY(parse_concat(P, out));
    for (;;) {
        const jj_tok *t = cur(P);
        if (!(is_op(t, '+') || is_op(t, '-')))
            return TM_OK;
        next(P);
        jj_node *r;
        TM_TRY(parse_concat(P, &r));
        TM_TRY(binop(P, JN_BINOP, t->op, t, *out, r, out));
    }
}

static tm_status parse_compare(parser *P, jj_node **out) {
    jj_node *left, *result = NULL;
    TM_TRY(parse_math1(P, &left));
    for (;;) {
        const jj_tok *t = cur(P);
        int32_t       op;
        if (t->type == JT_OP && (t->op == JJ_OP_EQ || t->op == JJ_OP_NE || t->op == '<' ||
                                 t->op == '>' || t->op == JJ_OP_LE || t->op == JJ_OP_GE)) {
            op = t->op;
            next(P);
        } else if (is_name(t, "in")) {
            op = JJ_OP_IN;
            next(P);
        } else if (is_name(t, "not") && is_name(peek(P, 1), "in")) {
            op = JJ_OP_NOTIN;
            next(P);
            next(P);
        } else {
            break;
        }
        jj_node *right = NULL, *cmp = NULL;
        TM_TRY(parse_math1(P, &right));
        TM_TRY(binop(P, JN_CMP, op, t, left, right, &cmp));
        /* a < b < c is (a < b) and (b < c), as in Python. */
        if (result == NULL)
            result = cmp;
        else
            TM_TRY(binop(P, JN_AND, 0, t, result, cmp, &result));
        left = right;
    }
    *out = result ? result : left;
    return TM_OK;
}

static tm_status parse_not(parser *P, jj_node **out) {
    if (is_name(cur(P), "not")) {
        const jj_tok *t = cur(P);
        next(P);
        TM_TRY(enter(P));
        jj_node *n = mk(P, JN_UNARY, t);
        if (n == NULL)
            return nomem(P);
        n->op = JJ_OP_NOT;
        TM_TRY(parse_not(P, &n->a));
        P->depth--;
        *out = n;
        return TM_OK;
    }
    return parse_compare(P, out);
}

static tm_status parse_and(parser *P, jj_node **out) {
    TM_TRY(parse_not(P, out));
    while (is_name(cur(P), "and")) {
        const jj_tok *t = cur(P);
        next(P);
        jj_node *r;
        TM_TRY(parse_not(P, &r));
        TM_TRY(binop(P, JN_AND, 0, t, *out, r, out));
    }
    return TM_OK;
}

static tm_status parse_or(parser *P, jj_node **out) {
    TM_TRY(parse_and(P, out));
    while (is_name(cur(P), "or")) {
        const jj_tok *t = cur(P);
        next(P);
        jj_node *r;
        TM_TRY(parse_and(P, &r));
        TM_TRY(binop(P, JN_OR, 0, t, *out, r, out));
    }
    return TM_OK;
}

static tm_status parse_expr(parser *P, jj_node **out) {
    TM_TRY(enter(P));
    TM_TRY(parse_or(P, out));
    while (is_name(cur(P), "if")) {
        const jj_tok *t = cur(P);
        next(P);
        jj_node *n = mk(P, JN_COND, t);
        if (n == NULL)
            return nomem(P);
        n->a = *out;
        TM_TRY(parse_or(P, &n->b));
        if (is_name(cur(P), "else")) {
            next(P);
            TM_TRY(parse_expr(P, &n->c));
        }
        *out = n;
    }
    P->depth--;
    return TM_OK;
}

/* Tuple without parentheses (set a, b = ...). */
static tm_status parse_tuple_expr(parser *P, jj_node **out) {
    const jj_tok *t = cur(P);
    jj_node      *first;
    TM_TRY(parse_expr(P, &first));
    if (!is_op(cur(P), ','))
        return *out = first, TM_OK;
    nvec v = {0};
    TM_TRY(nvec_push(P, &v, first));
    while (is_op(cur(P), ',')) {
        next(P);
        if (cur(P)->type == JT_BLOCK_END || cur(P)->type == JT_VAR_END)
            break;
        jj_node *e;
        TM_TRY(parse_expr(P, &e));
        TM_TRY(nvec_push(P, &v, e));
    }
    jj_node *n = mk(P, JN_TUPLE, t);
    if (n == NULL)
        return nomem(P);
    n->items = v.v;
    n->n_items = v.n;
    *out = n;
    return TM_OK;
}

/* Assignment target: name, name.attr, or names separated by commas. */
static tm_status parse_target(parser *P, bool allow_attr, jj_node **out) {
    nvec          v = {0};
    const jj_tok *t0 = cur(P);
    bool          paren = is_op(t0, '(');
    if (paren)
        next(P);
    for (;;) {
        const jj_tok *t = cur(P);
        if (t->type != JT_NAME)
            return perr(P, t, "expected a variable name, got %s", tok_desc(t));
        jj_node *n = mk(P, JN_NAME, t);
        if (n == NULL || (n->name = tok_str(P, t)) == NULL)
            return nomem(P);
        next(P);
        if (allow_attr && is_op(cur(P), '.') && peek(P, 1)->type == JT_NAME) {
            next(P);
            jj_node *g = mk(P, JN_GETATTR, cur(P));
            if (g == NULL || (g->name = tok_str(P, cur(P))) == NULL)
                return nomem(P);
            g->a = n;
            n = g;
            next(P);
        }
        TM_TRY(nvec_push(P, &v, n));
        if (!is_op(cur(P), ','))
            break;
        next(P);
    }
    if (paren)
        TM_TRY(expect_op(P, ')', ")"));
    if (v.n == 1 && !paren) {
        *out = v.v[0];
        return TM_OK;
    }
    jj_node *tup = mk(P, JN_TUPLE, t0);
    if (tup == NULL)
        return nomem(P);
    tup->items = v.v;
    tup->n_items = v.n;
    *out = tup;
    return TM_OK;
}

static tm_status expect_block_end(parser *P) {
    if (cur(P)->type != JT_BLOCK_END)
        return perr(P, cur(P), "expected '%%}', got %s", tok_desc(cur(P)));
    next(P);
    return TM_OK;
}

static tm_status parse_body(parser *P, const char *const *enders, jj_node **out);

/* Parses "{% end<word> %}" after the body stopped at it. */
static tm_status expect_end(parser *P, const char *word) {
    if (!is_name(cur(P), word))
        return perr(P, cur(P), "expected '%s'", word);
    next(P);
    return expect_block_end(P);
}

static tm_status parse_if(parser *P, const jj_tok *t, jj_node **out) {
    static const char *const enders[] = {"elif", "else", "endif", NULL};
    jj_node                 *n = mk(P, JN_IF, t);
    if (n == NULL)
        return nomem(P);
    TM_TRY(parse_tuple_expr(P, &n->a));
    TM_TRY(expect_block_end(P));
    TM_TRY(parse_body(P, enders, &n->b));
    const jj_tok *e = cur(P);
    if (is_name(e, "elif")) {
        next(P);
        TM_TRY(parse_if(P, e, &n->c));
        *out = n;
        return TM_OK; /* the nested if consumed endif */
    }
    if (is_name(e, "else")) {
        static const char *const end_only[] = {"endif", NULL};
        next(P);
        TM_TRY(expect_block_end(P));
        TM_TRY(parse_body(P, end_only, &n->c));
    }
    TM_TRY(expect_end(P, "endif"));
    *out = n;
    return TM_OK;
}

static tm_status parse_for(parser *P, const jj_tok *t, jj_node **out) {
    static const char *const enders[] = {"else", "endfor", NULL};
    static const char *const end_only[] = {"endfor", NULL};
    jj_node                 *n = mk(P, JN_FOR, t);
    if (n == NULL)
        return nomem(P);
    TM_TRY(parse_target(P, false, &n->a));
    if (!is_name(cur(P), "in"))
        return perr(P, cur(P), "expected 'in' in for loop%s", "");
    next(P);
    /* The iterable is parsed without the conditional expression so that the
     * trailing "if" is the loop filter, as Jinja does. */
    TM_TRY(parse_or(P, &n->b));
    if (is_name(cur(P), "if")) {
        next(P);
        TM_TRY(parse_expr(P, &n->c));
    }
    if (is_name(cur(P), "recursive"))
        return perr(P, cur(P), "recursive for loops are not supported%s", "");
    TM_TRY(expect_block_end(P));
    TM_TRY(parse_body(P, enders, &n->d));
    if (is_name(cur(P), "else")) {
        next(P);
        TM_TRY(expect_block_end(P));
        TM_TRY(parse_body(P, end_only, &n->e));
    }
    TM_TRY(expect_end(P, "endfor"));
    *out = n;
    return TM_OK;
}

/* Filters of "{% set x | f %}" and "{% filter f %}" applied to a JN_BLOCKVAL. */
static tm_status parse_block_filters(parser *P, const jj_tok *t, bool need_pipe, jj_node **out) {
    jj_node *base = mk(P, JN_BLOCKVAL, t);
    if (base == NULL)
        return nomem(P);
    if (need_pipe) {
        TM_TRY(parse_filter_chain(P, &base));
    } else {
        /* "{% filter upper | trim %}": first name without a pipe. */
        if (cur(P)->type != JT_NAME)
            return perr(P, cur(P), "expected a filter name%s", "");
        jj_node *f = mk(P, JN_FILTER, cur(P));
        if (f == NULL || (f->name = tok_str(P, cur(P))) == NULL)
            return nomem(P);
        next(P);
        if (is_op(cur(P), '('))
            TM_TRY(parse_call_args(P, f));
        f->a = base;
        base = f;
        TM_TRY(parse_filter_chain(P, &base));
    }
    *out = base;
    return TM_OK;
}

static tm_status parse_set(parser *P, const jj_tok *t, jj_node **out) {
    jj_node *target;
    TM_TRY(parse_target(P, true, &target));
    if (is_op(cur(P), '=')) {
        next(P);
        jj_node *n = mk(P, JN_SET, t);
        if (n == NULL)
            return nomem(P);
        n->a = target;
        TM_TRY(parse_tuple_expr(P, &n->b));
        TM_TRY(expect_block_end(P));
        *out = n;
        return TM_OK;
    }
    static const char *const enders[] = {"endset", NULL};
    jj_node                 *n = mk(P, JN_SETBLOCK, t);
    if (n == NULL)
        return nomem(P);
    n->a = target;
    if (is_op(cur(P), '|'))
        TM_TRY(parse_block_filters(P, t, true, &n->c));
    TM_TRY(expect_block_end(P));
    TM_TRY(parse_body(P, enders, &n->d));
    TM_TRY(expect_end(P, "endset"));
    *out = n;
    return TM_OK;
}

/* Macro or caller signature: (a, b=default, ...). */
static tm_status parse_signature(parser *P, jj_node *n) {
    nvec params = {0}, defs = {0};
    TM_TRY(expect_op(P, '(', "("));
    while (!is_op(cur(P), ')')) {
        if (params.n > 0)
            TM_TRY(expect_op(P, ',', ","));
        if (is_op(cur(P), ')'))
            break;
        const jj_tok *t = cur(P);
        if (t->type != JT_NAME)
            return perr(P, t, "expected a parameter name%s", "");
        jj_node *p = mk(P, JN_NAME, t);
        if (p == NULL || (p->name = tok_str(P, t)) == NULL)
            return nomem(P);
        next(P);
        jj_node *d = NULL;
        if (is_op(cur(P), '=')) {
            next(P);
            TM_TRY(parse_expr(P, &d));
        }
        TM_TRY(nvec_push(P, &params, p));
        TM_TRY(nvec_push(P, &defs, d));
    }
    next(P);
    n->items = params.v;
    n->n_items = params.n;
    n->kwv = defs.v;
    return TM_OK;
}

static tm_status parse_stmt(parser *P, jj_node **out) {
    const jj_tok *t = cur(P);
    if (t->type != JT_NAME)
        return perr(P, t, "expected a statement name, got %s", tok_desc(t));
    next(P);
    if (is_name(t, "if"))
        return parse_if(P, t, out);
    if (is_name(t, "for"))
        return parse_for(P, t, out);
    if (is_name(t, "set"))
        return parse_set(P, t, out);
    if (is_name(t, "break") || is_name(t, "continue")) {
        jj_node *n = mk(P, is_name(t, "break") ? JN_BREAK : JN_CONTINUE, t);
        if (n == NULL)
            return nomem(P);
        TM_TRY(expect_block_end(P));
        *out = n;
        return TM_OK;
    }
    if (is_name(t, "macro")) {
        static const char *const enders[] = {"endmacro", NULL};
        jj_node                 *n = mk(P, JN_MACRO, t);
        if (n == NULL)
            return nomem(P);
        if (cur(P)->type != JT_NAME)
            return perr(P, cur(P), "expected a macro name%s", "");
        if ((n->name = tok_str(P, cur(P))) == NULL)
            return nomem(P);
        next(P);
        TM_TRY(parse_signature(P, n));
        TM_TRY(expect_block_end(P));
        TM_TRY(parse_body(P, enders, &n->d));
        TM_TRY(expect_end(P, "endmacro"));
        *out = n;
        return TM_OK;
    }
    if (is_name(t, "call")) {
        static const char *const enders[] = {"endcall", NULL};
        jj_node                 *n = mk(P, JN_CALLBLOCK, t);
        if (n == NULL)
            return nomem(P);
        if (is_op(cur(P), '('))
            TM_TRY(parse_signature(P, n));
        TM_TRY(parse_expr(P, &n->a));
        if (n->a->kind != JN_CALL)
            return perr(P, t, "expected a call after 'call'%s", "");
        TM_TRY(expect_block_end(P));
        TM_TRY(parse_body(P, enders, &n->d));
        TM_TRY(expect_end(P, "endcall"));
        *out = n;
        return TM_OK;
    }
    if (is_name(t, "filter")) {
        static const char *const enders[] = {"endfilter", NULL};
        jj_node                 *n = mk(P, JN_FILTERBLOCK, t);
        if (n == NULL)
            return nomem(P);
        TM_TRY(parse_block_filters(P, t, false, &n->c));
        TM_TRY(expect_block_end(P));
        TM_TRY(parse_body(P, enders, &n->d));
        TM_TRY(expect_end(P, "endfilter"));
        *out = n;
        return TM_OK;
    }
    if (is_name(t, "generation")) {
        /* transformers' AssistantTracker: the body renders unchanged. */
        static const char *const enders[] = {"endgeneration", NULL};
        TM_TRY(expect_block_end(P));
        TM_TRY(parse_body(P, enders, out));
        return expect_end(P, "endgeneration");
    }
    char word[64];
    snprintf(word, sizeof word, "%.*s", (int)(t->n < 60 ? t->n : 60), t->s);
    return perr(P, t, "unknown or unsupported statement '%s'", word);
}

static tm_status parse_body(parser *P, const char *const *enders, jj_node **out) {
    const jj_tok *t0 = cur(P);
    nvec          v = {0};
    TM_TRY(enter(P));
    for (;;) {
        const jj_tok *t = cur(P);
        if (t->type == JT_EOF) {
            if (enders != NULL)
                return perr(P, t, "unexpected end of template: missing '%s'",
                            enders[0][0] == 'e' && enders[1] == NULL ? enders[0]
                            : enders[1] && enders[2] == NULL         ? enders[1]
                                                                     : enders[2]);
            break;
        }
        jj_node *n = NULL;
        if (t->type == JT_TEXT) {
            n = mk(P, JN_TEXT, t);
            if (n == NULL)
                return nomem(P);
            n->val = jv_strn(t->s, t->n);
            next(P);
        } else if (t->type == JT_VAR_BEGIN) {
            next(P);
            n = mk(P, JN_OUTPUT, t);
            if (n == NULL)
                return nomem(P);
            TM_TRY(parse_tuple_expr(P, &n->a));
            if (cur(P)->type != JT_VAR_END)
                return perr(P, cur(P), "expected '}}', got %s", tok_desc(cur(P)));
            next(P);
        } else if (t->type == JT_BLOCK_BEGIN) {
            next(P);
            const jj_tok *w = cur(P);
            bool          stop = false;
            for (size_t k = 0; enders != NULL && enders[k] != NULL; k++)
                if (is_name(w, enders[k]))
                    stop = true;
            if (stop)
                break;
            if (w->type == JT_NAME && w->n > 3 && memcmp(w->s, "end", 3) == 0) {
                char word[64];
                snprintf(word, sizeof word, "%.*s", (int)(w->n < 60 ? w->n : 60), w->s);
                return perr(P, w, "unexpected '%s'", word);
            }
            if (is_name(w, "else") || is_name(w, "elif"))
                return perr(P, w, "unexpected '%s'", is_name(w, "else") ? "else" : "elif");
            TM_TRY(parse_stmt(P, &n));
        } else {
            return perr(P, t, "unexpected %s", tok_desc(t));
        }
        TM_TRY(nvec_push(P, &v, n));
    }
    jj_node *body = mk(P, JN_BODY, t0);
    if (body == NULL)
        return nomem(P);
    body->items = v.v;
    body->n_items = v.n;
    P->depth--;
    *out = body;
    return TM_OK;
}

tm_status tm__jj_parse(jj_arena *arena, const char *name, const jj_tokens *toks, jj_node **out) {
    parser P = {.arena = arena, .name = name, .toks = toks};
    TM_ASSERT(toks->n > 0 && toks->v[toks->n - 1].type == JT_EOF);
    return parse_body(&P, NULL, out);
}
