/*
 * tokenizer_json.c - loads a Hugging Face tokenizer.json (and tokenizer_config.json)
 * into the internal pipeline.
 *
 * Supported (HF tokenizers names): normalizers NFC, NFKC, NFD, NFKD, Lowercase,
 * StripAccents, BertNormalizer, Prepend, Replace, Strip, Sequence; pre-tokenizers
 * Split, ByteLevel, Metaspace, BertPreTokenizer, Whitespace, WhitespaceSplit,
 * Digits, Punctuation, Sequence; models BPE, WordPiece; post-processors
 * TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel, Sequence;
 * decoders ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip, WordPiece,
 * BPEDecoder, Sequence. Anything else is TM_ERR_UNSUPPORTED naming the type and
 * the file. Every id read from the file is range-checked before use.
 */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "model/tokenizer_int.h"

typedef struct jctx {
    tm_tokenizer *t;
    const char   *name; /* file name for messages */
    bool          after_fuse;
} jctx;

static const char *jstr(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static bool jbool(const json_t *o, const char *key, bool def) {
    const json_t *v = json_object_get(o, key);
    return json_is_boolean(v) ? json_is_true(v) : def;
}

static tm_status jtype(const jctx *c, const json_t *o, const char *what, const char **out) {
    *out = json_is_object(o) ? jstr(o, "type") : NULL;
    if (*out == NULL)
        return tm_fail(TM_ERR_FORMAT, "%s: %s has no \"type\"", c->name, what);
    return TM_OK;
}

static tm_status unsupported(const jctx *c, const char *what, const char *type) {
    return tm_fail(TM_ERR_UNSUPPORTED,
                   "%s: %s type '%s' is not supported (see docs/tokenizer.md for the list)",
                   c->name, what, type);
}

static void desc_add(char *desc, size_t cap, const char *s) {
    size_t n = strlen(desc);
    if (strcmp(desc, "none") == 0)
        n = 0;
    snprintf(desc + n, cap - n, "%s%s", n ? "," : "", s);
}

static char *dup_str(const char *s, size_t *len) {
    size_t n = s ? strlen(s) : 0;
    if (len)
        *len = n;
    return tm_strndup(s ? s : "", n);
}

/* {"String": "x"} or {"Regex": "x"} */
static tm_status jpattern(const jctx *c, const json_t *o, const char **pat, bool *is_regex) {
    *pat = jstr(o, "String");
    *is_regex = false;
    if (*pat == NULL) {
        *pat = jstr(o, "Regex");
        *is_regex = true;
    }
    if (*pat == NULL)
        return tm_fail(TM_ERR_FORMAT, "%s: pattern must be {\"String\": ...} or {\"Regex\": ...}",
                       c->name);
    return TM_OK;
}

/* ---- normalizers ------------------------------------------------------------------ */
static tm_status add_norm(tm_tokenizer *t, tk_norm n) {
    tk_norm *v = tm_realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *v);
    if (v == NULL) {
        tm_free(n.s1);
        tm_free(n.s2);
        pcre2_code_free(n.re);
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    }
    t->norm = v;
    t->norm[t->n_norm++] = n;
    return TM_OK;
}

static tm_status parse_norm(jctx *c, const json_t *o) {
    tm_tokenizer *t = c->t;
    const char   *type;
    TM_TRY(jtype(c, o, "normalizer", &type));
    if (strcmp(type, "Sequence") == 0) {
        const json_t *arr = json_object_get(o, "normalizers");
        if (!json_is_array(arr))
            return tm_fail(TM_ERR_FORMAT, "%s: Sequence normalizer without a list", c->name);
        size_t        i;
        const json_t *e;
        json_array_foreach(arr, i, e) TM_TRY(parse_norm(c, e));
        return TM_OK;
    }
    tk_norm n = {0};
    if (strcmp(type, "NFC") == 0)
        n.kind = TK_NORM_NFC;
    else if (strcmp(type, "NFKC") == 0)
        n.kind = TK_NORM_NFKC;
    else if (strcmp(type, "NFD") == 0)
        n.kind = TK_NORM_NFD;
    else if (strcmp(type, "NFKD") == 0)
        n.kind = TK_NORM_NFKD;
    else if (strcmp(type, "Lowercase") == 0)
        n.kind = TK_NORM_LOWERCASE;
    else if (strcmp(type, "StripAccents") == 0)
        n.kind = TK_NORM_STRIP_ACCENTS;
    else if (strcmp(type, "BertNormalizer") == 0) {
        n.kind = TK_NORM_BERT;
        n.clean_text = jbool(o, "clean_text", true);
        n.handle_chinese = jbool(o, "handle_chinese_chars", true);
        n.lowercase = jbool(o, "lowercase", true);
        /* strip_accents: null follows lowercase (HF BertNormalizer) */
        n.strip_accents = jbool(o, "strip_accents", n.lowercase);
    } else if (strcmp(type, "Prepend") == 0) {
        n.kind = TK_NORM_PREPEND;
        n.s1 = dup_str(jstr(o, "prepend"), &n.n1);
    } else if (strcmp(type, "Replace") == 0) {
        n.kind = TK_NORM_REPLACE;
        const char *pat;
        bool        rx;
        TM_TRY(jpattern(c, json_object_get(o, "pattern"), &pat, &rx));
        if (rx)
            TM_TRY(tm__tk_regex_compile(pat, strlen(pat), false, &n.re));
        n.s1 = dup_str(pat, &n.n1);
        n.s2 = dup_str(jstr(o, "content"), &n.n2);
    } else if (strcmp(type, "Strip") == 0) {
        n.kind = TK_NORM_STRIP;
        n.left = jbool(o, "strip_left", true);
        n.right = jbool(o, "strip_right", true);
    } else {
        return unsupported(c, "normalizer", type);
    }
    if ((n.kind == TK_NORM_PREPEND && n.s1 == NULL) ||
        (n.kind == TK_NORM_REPLACE && (n.s1 == NULL || n.s2 == NULL)))
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    desc_add(t->norm_desc, sizeof t->norm_desc, type);
    return add_norm(t, n);
}

/* ---- pre-tokenizers ------------------------------------------------------------------ */
static tm_status add_pre(tm_tokenizer *t, tk_pre p) {
    tk_pre *v = tm_realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *v);
    if (v == NULL) {
        pcre2_code_free(p.re);
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    }
    t->pre = v;
    t->pre[t->n_pre++] = p;
    return TM_OK;
}

static tm_status parse_behavior(const jctx *c, const char *s, tk_split_beh *out) {
    static const struct {
        const char  *name;
        tk_split_beh beh;
    } tab[] = {{"Removed", TK_SPLIT_REMOVED},
               {"Isolated", TK_SPLIT_ISOLATED},
               {"MergedWithPrevious", TK_SPLIT_MERGED_PREV},
               {"MergedWithNext", TK_SPLIT_MERGED_NEXT},
               {"Contiguous", TK_SPLIT_CONTIGUOUS}};
    if (s == NULL) {
        *out = TK_SPLIT_ISOLATED;
        return TM_OK;
    }
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++)
        if (strcmp(s, tab[i].name) == 0) {
            *out = tab[i].beh;
            return TM_OK;
        }
    return unsupported(c, "split behavior", s);
}

static tm_status parse_metaspace_common(const json_t *o, char *repl, size_t *repl_len,
                                        tk_prepend *scheme) {
    const char *r = jstr(o, "replacement");
    if (r == NULL)
        r = "\xE2\x96\x81"; /* U+2581 */
    size_t n = strlen(r);
    if (n == 0 || n > 7)
        return tm_fail(TM_ERR_FORMAT, "tokenizer: Metaspace replacement must be one character");
    memcpy(repl, r, n);
    *repl_len = n;
    const char *ps = jstr(o, "prepend_scheme");
    if (ps != NULL)
        *scheme = strcmp(ps, "first") == 0   ? TK_PREPEND_FIRST
                  : strcmp(ps, "never") == 0 ? TK_PREPEND_NEVER
                                             : TK_PREPEND_ALWAYS;
    else
        *scheme = jbool(o, "add_prefix_space", true) ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
    return TM_OK;
}

static tm_status parse_pre(jctx *c, const json_t *o) {
    tm_tokenizer *t = c->t;
    const char   *type;
    TM_TRY(jtype(c, o, "pre_tokenizer", &type));
    if (strcmp(type, "Sequence") == 0) {
        const json_t *arr = json_object_get(o, "pretokenizers");
        if (!json_is_array(arr))
            return tm_fail(TM_ERR_FORMAT, "%s: Sequence pre_tokenizer without a list", c->name);
        size_t        i;
        const json_t *e;
        json_array_foreach(arr, i, e) TM_TRY(parse_pre(c, e));
        return TM_OK;
    }
    tk_pre p = {0};
    if (strcmp(type, "Split") == 0) {
        p.kind = TK_PRE_SPLIT;
        const char *pat;
        bool        rx;
        TM_TRY(jpattern(c, json_object_get(o, "pattern"), &pat, &rx));
        TM_TRY(parse_behavior(c, jstr(o, "behavior"), &p.behavior));
        p.invert = jbool(o, "invert", false);
        TM_TRY(tm__tk_regex_compile(pat, strlen(pat), !rx, &p.re));
    } else if (strcmp(type, "ByteLevel") == 0) {
        p.kind = TK_PRE_BYTELEVEL;
        p.add_prefix_space = jbool(o, "add_prefix_space", true);
        p.use_regex = jbool(o, "use_regex", true);
        if (p.use_regex)
            TM_TRY(tm__tk_bytelevel_regex(&p.re));
        t->byte_level = true;
    } else if (strcmp(type, "Metaspace") == 0) {
        p.kind = TK_PRE_METASPACE;
        TM_TRY(parse_metaspace_common(o, p.repl, &p.repl_len, &p.prepend));
        p.split = jbool(o, "split", true);
    } else if (strcmp(type, "BertPreTokenizer") == 0) {
        p.kind = TK_PRE_BERT;
    } else if (strcmp(type, "Whitespace") == 0) {
        p.kind = TK_PRE_WHITESPACE;
        static const char ws[] = "\\w+|[^\\w\\s]+";
        TM_TRY(tm__tk_regex_compile(ws, sizeof ws - 1, false, &p.re));
    } else if (strcmp(type, "WhitespaceSplit") == 0) {
        p.kind = TK_PRE_WHITESPACE_SPLIT;
    } else if (strcmp(type, "Digits") == 0) {
        p.kind = TK_PRE_DIGITS;
        p.individual_digits = jbool(o, "individual_digits", false);
    } else if (strcmp(type, "Punctuation") == 0) {
        p.kind = TK_PRE_PUNCT;
        TM_TRY(parse_behavior(c, jstr(o, "behavior"), &p.behavior));
    } else {
        return unsupported(c, "pre_tokenizer", type);
    }
    desc_add(t->pre_desc, sizeof t->pre_desc, type);
    return add_pre(t, p);
}

/* ---- decoders ------------------------------------------------------------------------ */
static tm_status add_dec(tm_tokenizer *t, tk_dec d) {
    tk_dec *v = tm_realloc(t->dec, (size_t)(t->n_dec + 1) * sizeof *v);
    if (v == NULL) {
        tm_free(d.s1);
        tm_free(d.s2);
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    }
    t->dec = v;
    t->dec[t->n_dec++] = d;
    return TM_OK;
}

static tm_status parse_dec(jctx *c, const json_t *o) {
    tm_tokenizer *t = c->t;
    const char   *type;
    TM_TRY(jtype(c, o, "decoder", &type));
    if (strcmp(type, "Sequence") == 0) {
        const json_t *arr = json_object_get(o, "decoders");
        if (!json_is_array(arr))
            return tm_fail(TM_ERR_FORMAT, "%s: Sequence decoder without a list", c->name);
        size_t        i;
        const json_t *e;
        json_array_foreach(arr, i, e) TM_TRY(parse_dec(c, e));
        return TM_OK;
    }
    tk_dec d = {0};
    if (strcmp(type, "ByteLevel") == 0) {
        d.kind = TK_DEC_BYTELEVEL;
    } else if (strcmp(type, "Metaspace") == 0) {
        d.kind = TK_DEC_METASPACE;
        char       repl[8];
        size_t     rl;
        tk_prepend ps;
        TM_TRY(parse_metaspace_common(o, repl, &rl, &ps));
        d.s1 = tm_strndup(repl, rl);
        d.n1 = rl;
        d.prepend = ps != TK_PREPEND_NEVER;
    } else if (strcmp(type, "Replace") == 0) {
        d.kind = TK_DEC_REPLACE;
        const char *pat;
        bool        rx;
        TM_TRY(jpattern(c, json_object_get(o, "pattern"), &pat, &rx));
        if (rx)
            return unsupported(c, "decoder", "Replace with a Regex pattern");
        d.s1 = dup_str(pat, &d.n1);
        d.s2 = dup_str(jstr(o, "content"), &d.n2);
    } else if (strcmp(type, "ByteFallback") == 0) {
        d.kind = TK_DEC_BYTEFALLBACK;
    } else if (strcmp(type, "Fuse") == 0) {
        d.kind = TK_DEC_FUSE;
        c->after_fuse = true;
    } else if (strcmp(type, "Strip") == 0) {
        d.kind = TK_DEC_STRIP;
        d.s2 = dup_str(jstr(o, "content"), &d.n2);
        const json_t *s = json_object_get(o, "start"), *e = json_object_get(o, "stop");
        d.start = json_is_integer(s) ? (int32_t)json_integer_value(s) : 0;
        d.stop = json_is_integer(e) ? (int32_t)json_integer_value(e) : 0;
        if (d.start < 0 || d.start > 64 || d.stop < 0 || d.stop > 64)
            return tm_fail(TM_ERR_FORMAT, "%s: Strip decoder start/stop out of range", c->name);
        d.after_fuse = c->after_fuse;
    } else if (strcmp(type, "WordPiece") == 0) {
        d.kind = TK_DEC_WORDPIECE;
        const char *pre = jstr(o, "prefix");
        d.s1 = dup_str(pre ? pre : "##", &d.n1);
        d.cleanup = jbool(o, "cleanup", true);
    } else if (strcmp(type, "BPEDecoder") == 0) {
        d.kind = TK_DEC_BPE;
        const char *suf = jstr(o, "suffix");
        d.s1 = dup_str(suf ? suf : "</w>", &d.n1);
    } else {
        return unsupported(c, "decoder", type);
    }
    desc_add(t->dec_desc, sizeof t->dec_desc, type);
    return add_dec(t, d);
}

/* ---- post-processors ------------------------------------------------------------------ */
static tm_status tmpl_add(tm_tokenizer *t, bool seq, const int32_t *ids, size_t n) {
    tk_tmpl_item *v = tm_realloc(t->tmpl, (size_t)(t->n_tmpl + 1) * sizeof *v);
    if (v == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    t->tmpl = v;
    tk_tmpl_item *it = &t->tmpl[t->n_tmpl];
    *it = (tk_tmpl_item){.is_sequence = seq};
    if (n) {
        it->ids = tm_malloc(n * sizeof *ids);
        if (it->ids == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
        memcpy(it->ids, ids, n * sizeof *ids);
        it->n_ids = n;
    }
    t->n_tmpl++;
    return TM_OK;
}

static tm_status jid(const jctx *c, const json_t *v, int32_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= c->t->n_vocab)
        return tm_fail(TM_ERR_FORMAT, "%s: token id out of range [0, %d) in post_processor",
                       c->name, c->t->n_vocab);
    *out = (int32_t)json_integer_value(v);
    return TM_OK;
}

/* BertProcessing / RobertaProcessing: "cls": ["[CLS]", 101], "sep": ["[SEP]", 102]. */
static tm_status pair_id(const jctx *c, const json_t *o, const char *key, int32_t *out) {
    const json_t *a = json_object_get(o, key);
    if (!json_is_array(a) || json_array_size(a) != 2)
        return tm_fail(TM_ERR_FORMAT, "%s: post_processor \"%s\" must be [token, id]", c->name,
                       key);
    return jid(c, json_array_get(a, 1), out);
}

static tm_status parse_post(jctx *c, const json_t *o) {
    tm_tokenizer *t = c->t;
    const char   *type;
    TM_TRY(jtype(c, o, "post_processor", &type));
    if (strcmp(type, "Sequence") == 0) {
        const json_t *arr = json_object_get(o, "processors");
        if (!json_is_array(arr))
            return tm_fail(TM_ERR_FORMAT, "%s: Sequence post_processor without a list", c->name);
        size_t        i;
        const json_t *e;
        json_array_foreach(arr, i, e) TM_TRY(parse_post(c, e));
        return TM_OK;
    }
    if (strcmp(type, "ByteLevel") == 0)
        return TM_OK; /* offsets only */
    if (t->tmpl != NULL)
        return unsupported(c, "post_processor", "two templates in a Sequence");
    if (strcmp(type, "BertProcessing") == 0 || strcmp(type, "RobertaProcessing") == 0) {
        int32_t cls, sep;
        TM_TRY(pair_id(c, o, "cls", &cls));
        TM_TRY(pair_id(c, o, "sep", &sep));
        TM_TRY(tmpl_add(t, false, &cls, 1));
        TM_TRY(tmpl_add(t, true, NULL, 0));
        return tmpl_add(t, false, &sep, 1);
    }
    if (strcmp(type, "TemplateProcessing") != 0)
        return unsupported(c, "post_processor", type);
    const json_t *single = json_object_get(o, "single");
    const json_t *specials = json_object_get(o, "special_tokens");
    if (!json_is_array(single))
        return tm_fail(TM_ERR_FORMAT, "%s: TemplateProcessing without \"single\"", c->name);
    size_t        i;
    const json_t *e;
    json_array_foreach(single, i, e) {
        const json_t *sp = json_object_get(e, "SpecialToken");
        if (json_object_get(e, "Sequence") != NULL) {
            TM_TRY(tmpl_add(t, true, NULL, 0));
            continue;
        }
        const char *name = sp ? jstr(sp, "id") : NULL;
        if (name == NULL)
            return tm_fail(TM_ERR_FORMAT, "%s: bad TemplateProcessing item", c->name);
        const json_t *def = json_object_get(specials, name);
        const json_t *ids = json_object_get(def, "ids");
        if (!json_is_array(ids))
            return tm_fail(TM_ERR_FORMAT, "%s: template special token '%s' has no ids", c->name,
                           name);
        size_t  n = json_array_size(ids);
        int32_t buf[16];
        if (n > 16)
            return tm_fail(TM_ERR_FORMAT, "%s: template token '%s' has too many ids", c->name,
                           name);
        for (size_t k = 0; k < n; k++)
            TM_TRY(jid(c, json_array_get(ids, k), &buf[k]));
        TM_TRY(tmpl_add(t, false, buf, n));
    }
    return TM_OK;
}

/* ---- model ---------------------------------------------------------------------------- */
static tm_status jvocab_ids(const jctx *c, const json_t *vocab, int32_t *max_id) {
    const char   *k;
    const json_t *v;
    json_object_foreach((json_t *)vocab, k, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (1 << 30))
            return tm_fail(TM_ERR_FORMAT, "%s: vocab entry '%.40s' has a bad id", c->name, k);
        if (json_integer_value(v) > *max_id)
            *max_id = (int32_t)json_integer_value(v);
    }
    return TM_OK;
}

static tm_status find_id(const jctx *c, const char *s, size_t n, const char *what, int32_t *out) {
    *out = tm__tk_lookup(c->t, s, n);
    if (*out < 0)
        return tm_fail(TM_ERR_FORMAT, "%s: %s '%.*s' is not in the vocabulary", c->name, what,
                       (int)(n > 60 ? 60 : n), s);
    return TM_OK;
}

static tm_status parse_merges(jctx *c, const json_t *merges) {
    tm_tokenizer *t = c->t;
    size_t        n = json_array_size(merges);
    TM_TRY(tm__tk_merges_init(&t->merges, n));
    tk_buf        cat = {0};
    tm_status     st = TM_OK;
    size_t        i;
    const json_t *e;
    json_array_foreach(merges, i, e) {
        const char *a, *b;
        size_t      an, bn;
        if (json_is_string(e)) { /* "a b" */
            const char *s = json_string_value(e);
            const char *sp = strchr(s + (s[0] ? 1 : 0), ' ');
            if (sp == NULL) {
                st = tm_fail(TM_ERR_FORMAT, "%s: merge %zu '%.60s' has no space", c->name, i, s);
                break;
            }
            a = s;
            an = (size_t)(sp - s);
            b = sp + 1;
            bn = strlen(b);
        } else if (json_is_array(e) && json_array_size(e) == 2 &&
                   json_is_string(json_array_get(e, 0)) && json_is_string(json_array_get(e, 1))) {
            a = json_string_value(json_array_get(e, 0));
            b = json_string_value(json_array_get(e, 1));
            an = strlen(a);
            bn = strlen(b);
        } else {
            st = tm_fail(TM_ERR_FORMAT, "%s: merge %zu is neither \"a b\" nor [a, b]", c->name, i);
            break;
        }
        int32_t ia, ib, inew;
        if ((st = find_id(c, a, an, "merge token", &ia)) != TM_OK ||
            (st = find_id(c, b, bn, "merge token", &ib)) != TM_OK)
            break;
        /* The merged token drops b's continuation prefix (HF BPE builder). */
        size_t skip = 0;
        if (t->cont_prefix_len && bn >= t->cont_prefix_len &&
            memcmp(b, t->cont_prefix, t->cont_prefix_len) == 0)
            skip = t->cont_prefix_len;
        cat.n = 0;
        if ((st = tm__tk_buf_put(&cat, a, an)) != TM_OK ||
            (st = tm__tk_buf_put(&cat, b + skip, bn - skip)) != TM_OK)
            break;
        if ((st = find_id(c, cat.p, cat.n, "merge result", &inew)) != TM_OK)
            break;
        if ((st = tm__tk_merges_add(&t->merges, ia, ib, (int32_t)i, inew)) != TM_OK)
            break;
    }
    tm__tk_buf_free(&cat);
    return st;
}

static const char *guess_name(const tm_tokenizer *t, const char *const *names, int32_t *out) {
    for (size_t i = 0; names[i]; i++) {
        int32_t id = tm__tk_lookup(t, names[i], strlen(names[i]));
        if (id >= 0) {
            *out = id;
            return names[i];
        }
    }
    return NULL;
}

static tm_status parse_tokenizer(jctx *c, const json_t *root) {
    tm_tokenizer *t = c->t;
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model))
        return tm_fail(TM_ERR_FORMAT, "%s: no \"model\" object (is this a tokenizer.json?)",
                       c->name);
    const char   *mtype = jstr(model, "type");
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    if (mtype == NULL) /* old files omit the type: infer it as HF does */
        mtype = merges ? "BPE" : "WordPiece";
    bool is_bpe = strcmp(mtype, "BPE") == 0, is_wp = strcmp(mtype, "WordPiece") == 0;
    if (!is_bpe && !is_wp)
        return unsupported(c, "model", mtype);
    if (!json_is_object(vocab))
        return tm_fail(TM_ERR_FORMAT, "%s: model.vocab must be an object of token: id", c->name);
    if (is_bpe && !json_is_array(merges))
        return tm_fail(TM_ERR_FORMAT, "%s: BPE model.merges must be a list", c->name);

    const json_t *added = json_object_get(root, "added_tokens");
    int32_t       max_id = -1;
    TM_TRY(jvocab_ids(c, vocab, &max_id));
    size_t        i;
    const json_t *e;
    if (added != NULL && !json_is_array(added))
        return tm_fail(TM_ERR_FORMAT, "%s: added_tokens must be a list", c->name);
    json_array_foreach(added, i, e) {
        const json_t *id = json_object_get(e, "id");
        if (!json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= (1 << 30) || jstr(e, "content") == NULL)
            return tm_fail(TM_ERR_FORMAT, "%s: added_tokens[%zu] needs an id and content", c->name,
                           i);
        if (json_integer_value(id) > max_id)
            max_id = (int32_t)json_integer_value(id);
    }
    if (max_id < 0)
        return tm_fail(TM_ERR_FORMAT, "%s: empty vocabulary", c->name);
    TM_TRY(tm__tk_vocab_alloc(t, max_id + 1));
    const char *k;
    size_t      klen;
    json_object_keylen_foreach((json_t *)vocab, k, klen, e) {
        TM_TRY(tm__tk_vocab_set(t, (int32_t)json_integer_value(e), k, klen));
    }
    json_array_foreach(added, i, e) {
        const char *s = jstr(e, "content");
        tk_added    a = {
               .id = (int32_t)json_integer_value(json_object_get(e, "id")),
               .text = (char *)s,
               .len = strlen(s),
               .special = jbool(e, "special", false),
               .lstrip = jbool(e, "lstrip", false),
               .rstrip = jbool(e, "rstrip", false),
               .single_word = jbool(e, "single_word", false),
               .normalized = jbool(e, "normalized", false),
        };
        TM_TRY(tm__tk_add_added(t, &a));
    }
    TM_TRY(tm__tk_finish(t)); /* map + trie; merges need the map */

    const char *unk = jstr(model, "unk_token");
    if (unk != NULL)
        TM_TRY(find_id(c, unk, strlen(unk), "unk_token", &t->unk_id));
    const char *pre = jstr(model, "continuing_subword_prefix");
    if (pre != NULL && pre[0]) {
        t->cont_prefix = dup_str(pre, &t->cont_prefix_len);
        if (t->cont_prefix == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    }
    if (is_bpe) {
        t->model = TK_MODEL_BPE;
        const char *suf = jstr(model, "end_of_word_suffix");
        if (suf != NULL && suf[0]) {
            t->eow_suffix = dup_str(suf, &t->eow_suffix_len);
            if (t->eow_suffix == NULL)
                return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
        }
        t->byte_fallback = jbool(model, "byte_fallback", false);
        t->ignore_merges = jbool(model, "ignore_merges", false);
        t->fuse_unk = jbool(model, "fuse_unk", false);
        TM_TRY(parse_merges(c, merges));
    } else {
        t->model = TK_MODEL_WORDPIECE;
        if (t->cont_prefix == NULL) {
            t->cont_prefix = dup_str(pre ? pre : "##", &t->cont_prefix_len);
            if (t->cont_prefix == NULL)
                return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
        }
        const json_t *mx = json_object_get(model, "max_input_chars_per_word");
        t->wp_max_chars = json_is_integer(mx) ? (int32_t)json_integer_value(mx) : 100;
    }

    const json_t *o;
    if ((o = json_object_get(root, "normalizer")) != NULL && !json_is_null(o))
        TM_TRY(parse_norm(c, o));
    if ((o = json_object_get(root, "pre_tokenizer")) != NULL && !json_is_null(o))
        TM_TRY(parse_pre(c, o));
    if ((o = json_object_get(root, "post_processor")) != NULL && !json_is_null(o))
        TM_TRY(parse_post(c, o));
    if ((o = json_object_get(root, "decoder")) != NULL && !json_is_null(o))
        TM_TRY(parse_dec(c, o));

    t->type_name = is_wp              ? "wordpiece"
                   : t->byte_level    ? "bpe-bytelevel"
                   : t->byte_fallback ? "spm-bpe"
                                      : "bpe";
    t->source_name = "tokenizer.json";
    if (t->tmpl != NULL && t->n_tmpl > 0) {
        if (!t->tmpl[0].is_sequence && t->tmpl[0].n_ids > 0) {
            t->add_bos = true;
            t->bos_id = t->tmpl[0].ids[0];
        }
        const tk_tmpl_item *last = &t->tmpl[t->n_tmpl - 1];
        if (!last->is_sequence && last->n_ids > 0) {
            t->add_eos = true;
            t->eos_id = last->ids[0];
        }
    }
    static const char *const bos_names[] = {"<|begin_of_text|>", "<s>", "<bos>", "[CLS]",
                                            "<|startoftext|>",   NULL};
    static const char *const eos_names[] = {"<|end_of_text|>", "</s>",  "<eos>",
                                            "<|endoftext|>",   "[SEP]", NULL};
    static const char *const pad_names[] = {"<pad>", "[PAD]", "<|pad|>", NULL};
    if (t->bos_id < 0)
        guess_name(t, bos_names, &t->bos_id);
    if (t->eos_id < 0)
        guess_name(t, eos_names, &t->eos_id);
    guess_name(t, pad_names, &t->pad_id);
    return TM_OK;
}

tm_status tm__tk_load_json(tm_tokenizer *t, const char *data, size_t len, const char *name) {
    json_error_t err;
    json_t      *root = json_loadb(data, len, 0, &err);
    if (root == NULL)
        return tm_fail(TM_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", name, err.line,
                       err.column, err.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return tm_fail(TM_ERR_FORMAT, "%s: top level is not an object", name);
    }
    jctx      c = {.t = t, .name = name};
    tm_status st = parse_tokenizer(&c, root);
    json_decref(root);
    return st;
}

/* tokenizer_config.json: the token named by bos_token/eos_token, and add_bos_token /
 * add_eos_token as transformers applies them on top of the post-processor. */
static const char *cfg_token(const json_t *root, const char *key) {
    const json_t *v = json_object_get(root, key);
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_object(v))
        return jstr(v, "content");
    return NULL;
}

tm_status tm__tk_apply_hf_config(tm_tokenizer *t, const char *cfg_path) {
    json_error_t err;
    /* Ints as reals: model_max_length is often 1e30, past int64. */
    json_t *root = json_load_file(cfg_path, JSON_DECODE_INT_AS_REAL, &err);
    if (root == NULL)
        return tm_fail(TM_ERR_FORMAT, "%s: invalid JSON at line %d: %s", cfg_path, err.line,
                       err.text);
    const char *bos = cfg_token(root, "bos_token"), *eos = cfg_token(root, "eos_token");
    int32_t     id;
    if (bos && (id = tm__tk_lookup(t, bos, strlen(bos))) >= 0)
        t->bos_id = id;
    if (eos && (id = tm__tk_lookup(t, eos, strlen(eos))) >= 0)
        t->eos_id = id;
    const json_t *ab = json_object_get(root, "add_bos_token");
    const json_t *ae = json_object_get(root, "add_eos_token");
    tm_status     st = TM_OK;
    /* Only when the post-processor adds nothing itself; otherwise it already encodes
     * the intent (transformers rebuilds it from these flags the same way). */
    bool tmpl_has_special = false;
    for (int32_t i = 0; i < t->n_tmpl; i++)
        tmpl_has_special |= !t->tmpl[i].is_sequence;
    if (!tmpl_has_special && (json_is_true(ab) || json_is_true(ae)))
        st = tm__tk_set_tmpl_bos_eos(t, json_is_true(ab), json_is_true(ae));
    json_decref(root);
    return st;
}
