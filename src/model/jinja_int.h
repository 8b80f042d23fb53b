/*
 * jinja_int.h - private interface of the Jinja interpreter behind tm_chat_template.
 *
 * DESIGN
 * ------
 * Pipeline: jinja_lexer.c turns the template text into tokens (whitespace
 * control, trim_blocks and lstrip_blocks are applied there, as in Jinja's own
 * lexer), jinja_parser.c builds an AST of jj_node, jinja_eval.c walks it, and
 * jinja_builtins.c holds filters, tests, methods and globals. jinja_value.c has
 * the value model (Python semantics: str(), repr(), ==, <, truthiness, JSON).
 *
 * Memory: everything lives in arenas. The compiled template (tokens, AST,
 * constants) owns one arena; each render owns another that is dropped whole
 * when the render returns. Values are small structs passed by value; strings,
 * lists and dicts point into an arena and are never mutated once published,
 * which is exactly what ImmutableSandboxedEnvironment allows (namespace()
 * attributes are the one mutable object).
 *
 * Errors: every failure is a tm_status with a "name:line:col: message" detail.
 * Limits (steps, output bytes, recursion depth, arena bytes) turn runaway
 * templates into errors instead of hangs or crashes.
 */
#ifndef TM_JINJA_INT_H
#define TM_JINJA_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_status.h"

/* ---- arena ------------------------------------------------------------------ */
typedef struct jj_chunk jj_chunk;
typedef struct jj_arena {
    jj_chunk *head;
    size_t    total_bytes; /* bytes obtained from tm_malloc so far */
    size_t    limit_bytes; /* jj_alloc fails past this; 0 = no limit */
} jj_arena;

void *tm__jj_alloc(jj_arena *a, size_t n); /* 16-byte aligned, zeroed; NULL on OOM/limit */
void  tm__jj_arena_free(jj_arena *a);

/* ---- values ----------------------------------------------------------------- */
typedef enum jv_type {
    JV_UNDEF = 0,
    JV_NONE,
    JV_BOOL,
    JV_INT,
    JV_FLOAT,
    JV_STR,
    JV_LIST,
    JV_TUPLE,
    JV_DICT,
    JV_NS,   /* namespace(): a dict whose attributes may be assigned */
    JV_FUNC, /* macro, global function, bound method, caller, loop.cycle */
} jv_type;

typedef struct jj_list jj_list;
typedef struct jj_dict jj_dict;
typedef struct jj_func jj_func;

typedef struct jv {
    jv_type type;
    union {
        bool    b;
        int64_t i;
        double  f;
        struct {
            const char *p; /* UTF-8 bytes, not NUL-terminated; may hold NULs */
            size_t      n; /* bytes */
        } s;
        jj_list    *l;     /* JV_LIST, JV_TUPLE */
        jj_dict    *d;     /* JV_DICT, JV_NS */
        jj_func    *fn;    /* JV_FUNC */
        const char *undef; /* JV_UNDEF: name for messages, may be NULL */
    } u;
} jv;

struct jj_list {
    size_t n, cap;
    jv    *v;
};

/* Insertion-ordered, linear lookup: chat contexts hold small dicts. */
struct jj_dict {
    size_t n, cap;
    jv    *k;
    jv    *v;
};

typedef struct jj_args {
    size_t       n_pos;
    const jv    *pos;
    size_t       n_kw;
    const char **kw_names;
    const jv    *kw;
} jj_args;

typedef struct jj_ctx  jj_ctx;
typedef struct jj_node jj_node;

typedef tm_status (*jj_native_fn)(jj_ctx *c, jv self, const jj_args *a, jv *out);

typedef enum jj_func_kind { JJ_FN_NATIVE, JJ_FN_MACRO, JJ_FN_CALLER } jj_func_kind;

struct jj_func {
    jj_func_kind     kind;
    const char      *name;
    jv               self;   /* bound object for methods */
    jj_native_fn     native; /* JJ_FN_NATIVE */
    const jj_node   *node;   /* JJ_FN_MACRO: the macro; JJ_FN_CALLER: the call block */
    struct jj_scope *scope;  /* JJ_FN_CALLER: scope the call block body runs in */
};

static inline jv jv_undef(const char *name) { return (jv){.type = JV_UNDEF, .u.undef = name}; }
static inline jv jv_none(void) { return (jv){.type = JV_NONE}; }
static inline jv jv_bool(bool b) { return (jv){.type = JV_BOOL, .u.b = b}; }
static inline jv jv_int(int64_t i) { return (jv){.type = JV_INT, .u.i = i}; }
static inline jv jv_float(double f) { return (jv){.type = JV_FLOAT, .u.f = f}; }
static inline jv jv_strn(const char *p, size_t n) {
    jv v = {.type = JV_STR};
    v.u.s.p = p;
    v.u.s.n = n;
    return v;
}
static inline bool jv_is_num(jv v) {
    return v.type == JV_INT || v.type == JV_FLOAT || v.type == JV_BOOL;
}
static inline bool jv_is_seq(jv v) { return v.type == JV_LIST || v.type == JV_TUPLE; }
static inline bool jv_is_map(jv v) { return v.type == JV_DICT || v.type == JV_NS; }

/* Growable byte buffer on tm_realloc (output and captures). */
typedef struct jj_buf {
    char  *p;
    size_t n, cap;
    size_t limit; /* bytes; appending past it fails */
} jj_buf;

tm_status tm__jj_buf_put(jj_buf *b, const char *p, size_t n);
void      tm__jj_buf_free(jj_buf *b);

/* Value helpers (jinja_value.c). Functions taking a ctx report errors with its
 * current position and allocate in its arena. */
tm_status   tm__jj_list_push(jj_ctx *c, jj_list *l, jv v);
jj_list    *tm__jj_list_new(jj_ctx *c, size_t cap);
jj_dict    *tm__jj_dict_new(jj_ctx *c, size_t cap);
tm_status   tm__jj_dict_set(jj_ctx *c, jj_dict *d, jv k, jv v); /* replaces an equal key */
bool        tm__jj_dict_get(const jj_dict *d, jv k, jv *out);
bool        tm__jj_dict_gets(const jj_dict *d, const char *key, jv *out);
tm_status   tm__jj_str_dup(jj_ctx *c, const char *p, size_t n, jv *out);
tm_status   tm__jj_str_cat(jj_ctx *c, jv a, jv b, jv *out); /* both JV_STR */
bool        tm__jj_truthy(jv v);
bool        tm__jj_equal(jv a, jv b);
tm_status   tm__jj_compare(jj_ctx *c, jv a, jv b, int *out); /* <0, 0, >0; error if unorderable */
const char *tm__jj_type_name(jv v);                          /* Python's: "str", "dict"... */
/* str(v) appended to b; Python semantics (None, True, repr of containers). */
tm_status tm__jj_to_str_buf(jj_ctx *c, jv v, jj_buf *b);
tm_status tm__jj_to_str(jj_ctx *c, jv v, jv *out); /* returns v itself for strings */
tm_status tm__jj_repr_buf(jj_ctx *c, jv v, jj_buf *b);
void      tm__jj_float_repr(double f, char *buf, size_t cap); /* Python float repr */

/* Python string operations over UTF-8 (jinja_value.c). */
typedef enum jj_case_op {
    JJ_CASE_UPPER,
    JJ_CASE_LOWER,
    JJ_CASE_CAPITALIZE,
    JJ_CASE_TITLE_PY,   /* str.title() */
    JJ_CASE_TITLE_JINJA /* the title filter: words start after [-\s({\[<] */
} jj_case_op;
tm_status   tm__jj_str_case(jj_ctx *c, jv s, jj_case_op op, jv *out);
jv          tm__jj_str_strip(jv s, const jv *chars, bool left, bool right); /* chars NULL: spaces */
const char *tm__jj_memfind(const char *h, size_t hn, const char *n, size_t nn);
tm_status   tm__jj_str_replace(jj_ctx *c, jv s, jv old, jv new_, int64_t count, jv *out);
tm_status   tm__jj_str_split(jj_ctx *c, jv s, const jv *sep, int64_t maxsplit, bool from_right,
                             jv *out);

typedef struct jj_json_opts {
    int32_t     indent;       /* < 0: none */
    const char *item_sep;     /* NULL: ", " without indent, "," with */
    const char *key_sep;      /* NULL: ": " */
    bool        ensure_ascii; /* HF passes False */
    bool        sort_keys;
} jj_json_opts;
tm_status tm__jj_to_json_buf(jj_ctx *c, jv v, const jj_json_opts *o, jj_buf *b);

/* UTF-8 (tolerant: an invalid byte decodes as itself, one unit). */
size_t tm__jj_utf8_next(const char *p, size_t n, size_t i, uint32_t *cp); /* returns new i */
size_t tm__jj_utf8_len(const char *p, size_t n);                          /* code points */
size_t tm__jj_utf8_put(uint32_t cp, char out[4]);
bool   tm__jj_is_space(uint32_t cp); /* Python str.isspace() */

/* ---- tokens ----------------------------------------------------------------- */
typedef enum jj_tok_type {
    JT_EOF = 0,
    JT_TEXT,        /* template data; s/n hold the (already whitespace-controlled) bytes */
    JT_VAR_BEGIN,   /* {{ */
    JT_VAR_END,     /* }} */
    JT_BLOCK_BEGIN, /* {% */
    JT_BLOCK_END,   /* %} */
    JT_NAME,
    JT_STRING, /* s/n: decoded value */
    JT_INT,
    JT_FLOAT,
    JT_OP, /* op: one of the JJ_OP_ codes below or a single ASCII char */
} jj_tok_type;

enum {
    JJ_OP_FLOORDIV = 256, /* // */
    JJ_OP_POW,            /* ** */
    JJ_OP_EQ,             /* == */
    JJ_OP_NE,             /* != */
    JJ_OP_LE,             /* <= */
    JJ_OP_GE,             /* >= */
    /* parser-only codes */
    JJ_OP_IN,
    JJ_OP_NOTIN,
    JJ_OP_NOT,
    JJ_OP_NEG,
    JJ_OP_POS,
};

typedef struct jj_tok {
    jj_tok_type type;
    int32_t     op;
    int32_t     line, col; /* 1-based */
    const char *s;         /* JT_NAME, JT_STRING, JT_TEXT */
    size_t      n;
    int64_t     ival;
    double      fval;
} jj_tok;

typedef struct jj_tokens {
    jj_tok *v;
    size_t  n, cap;
} jj_tokens;

/* Lexes src (normalized newlines, single trailing newline dropped, as Jinja's
 * defaults) into toks, allocated in arena. */
tm_status tm__jj_lex(jj_arena *arena, const char *name, const char *src, size_t len,
                     jj_tokens *toks);

/* ---- AST -------------------------------------------------------------------- */
typedef enum jj_node_kind {
    /* expressions */
    JN_CONST,    /* val */
    JN_NAME,     /* name */
    JN_LIST,     /* items */
    JN_TUPLE,    /* items */
    JN_DICT,     /* items: key0, val0, key1, val1... */
    JN_GETATTR,  /* a.name */
    JN_GETITEM,  /* a[b] */
    JN_SLICE,    /* a[b:c:d]; absent parts NULL */
    JN_CALL,     /* a(items, kw) */
    JN_FILTER,   /* a|name(items, kw); a NULL in filter blocks: the block body */
    JN_TEST,     /* a is [not] name(items); op = 1 when negated */
    JN_UNARY,    /* op: JJ_OP_NOT / JJ_OP_NEG / JJ_OP_POS, operand a */
    JN_BINOP,    /* a op b: + - * / // % ** ~ */
    JN_CMP,      /* a op b: == != < > <= >= in not-in */
    JN_AND,      /* a and b */
    JN_OR,       /* a or b */
    JN_COND,     /* a if b else c (c may be NULL) */
    JN_BLOCKVAL, /* the captured body in set blocks and filter blocks */
    /* statements */
    JN_BODY,        /* items: statements */
    JN_TEXT,        /* val: string */
    JN_OUTPUT,      /* {{ a }} */
    JN_IF,          /* if a: b else c (c: body, nested JN_IF for elif, or NULL) */
    JN_FOR,         /* for a in b if c: d else e; op = 1 when recursive */
    JN_SET,         /* a = b; a is JN_NAME, JN_TUPLE of names or JN_GETATTR on a name */
    JN_SETBLOCK,    /* a = filters(c) applied to body d; c may be NULL */
    JN_MACRO,       /* name(items: JN_NAME params, kwv: defaults or NULL) body d */
    JN_CALLBLOCK,   /* a: the JN_CALL; items/kwv: caller params; d: body */
    JN_FILTERBLOCK, /* c: filter chain over JN_BLOCKVAL; d: body */
    JN_BREAK,
    JN_CONTINUE,
} jj_node_kind;

struct jj_node {
    jj_node_kind kind;
    int32_t      op;
    int32_t      line, col;
    jv           val;
    const char  *name;
    jj_node     *a, *b, *c, *d, *e;
    jj_node    **items;
    size_t       n_items;
    const char **kw_names; /* call keyword names */
    jj_node    **kwv;      /* call keyword values / macro defaults (n_items long) */
    size_t       n_kw;
};

typedef struct jj_template {
    jj_arena arena;
    char    *name; /* for messages */
    jj_node *root; /* JN_BODY */
} jj_template;

/* Parses toks into an AST allocated in arena. */
tm_status tm__jj_parse(jj_arena *arena, const char *name, const jj_tokens *toks, jj_node **out);

/* ---- evaluation ------------------------------------------------------------- */
typedef struct jj_scope {
    struct jj_scope *parent;
    jj_dict          vars;
} jj_scope;

typedef struct jj_limits {
    size_t  max_output_bytes;
    int64_t max_steps;
    int32_t max_depth;
    size_t  max_memory_bytes;
} jj_limits;

struct jj_ctx {
    jj_arena       arena;
    const char    *name;
    jj_scope      *root;
    jj_buf        *out; /* where output goes now (captures swap it) */
    jj_limits      lim;
    int64_t        steps;
    int32_t        depth;
    int32_t        flow;         /* 0 normal, 1 break, 2 continue */
    const jj_node *node;         /* node being evaluated: error position */
    jj_scope      *caller_scope; /* innermost call block's caller, for caller() */
    const jj_node *caller_node;
    jv             blockval; /* value of JN_BLOCKVAL while a filter block runs */
    bool           raised;   /* set by raise_exception */
};

/* Formats "name:line:col: msg" at c->node and returns TM_ERR_FORMAT. */
tm_status tm__jj_err(jj_ctx *c, const char *fmt, ...) TM_PRINTF_FMT(2, 3);
tm_status tm__jj_nomem(jj_ctx *c);

tm_status tm__jj_render(jj_ctx *c, const jj_node *root); /* output into c->out */
tm_status tm__jj_call(jj_ctx *c, jv fn, const jj_args *a, jv *out);
tm_status tm__jj_getattr(jj_ctx *c, jv obj, const char *name, size_t n, jv *out);
tm_status tm__jj_getitem(jj_ctx *c, jv obj, jv key, jv *out);
tm_status tm__jj_iterate(jj_ctx *c, jv v, jj_list **out); /* materializes any iterable */

/* Builtins (jinja_builtins.c). */
tm_status tm__jj_filter(jj_ctx *c, const char *name, jv v, const jj_args *a, jv *out);
tm_status tm__jj_test(jj_ctx *c, const char *name, jv v, const jj_args *a, bool *out);
/* Python's fmt % args for the % operator on strings (%s, %d, %r). */
tm_status tm__jj_percent_format(jj_ctx *c, jv fmt, jv args, jv *out);
/* Bound method name of self (strings, dicts, lists); false when none. */
bool tm__jj_method(jj_ctx *c, jv self, const char *name, size_t n, jv *out);
/* Global function by name (range, namespace, dict, raise_exception, strftime_now). */
bool tm__jj_global(const char *name, jv *out);

#endif /* TM_JINJA_INT_H */
