/*
 * tokenizer_gguf.c - loads the tokenizer.ggml.* metadata of a GGUF file (llama.cpp's
 * vocabulary format) into the internal pipeline.
 *
 *   model "llama": SentencePiece-style score merges with <0xXX> byte fallback;
 *                  add_space_prefix (default true) prepends "▁", spaces become "▁".
 *   model "gpt2":  byte-level BPE with ranked merges; the pre-tokenizer regexes come
 *                  from tokenizer.ggml.pre (the table below is llama.cpp's, per name).
 *   model "bert":  WordPiece over llama.cpp's converted vocabulary, where word-initial
 *                  pieces carry "▁" and continuations carry no prefix.
 * Token types: 2 unknown and 3 control are special (matched in text only with
 * parse_special); 4 user-defined are matched always; 6 byte are the fallback bytes.
 * Any other model, or an unknown pre name, is TM_ERR_UNSUPPORTED naming it.
 */
#include <stdio.h>
#include <string.h>

#include "model/tokenizer_int.h"
#include "tm/tm_bytes.h"
#include "tm/tm_gguf.h"

/* ---- llama.cpp pre-tokenizer regexes (llama-vocab.cpp, by LLAMA_VOCAB_PRE_TYPE) ---- */
#define RX_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RX_LLAMA3                                                                                  \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"     \
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_QWEN2                                                                                   \
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"     \
    "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_BLOOM " ?[^(\\s|.,!?…。，、।۔،)]+"

typedef struct pre_def {
    const char *names; /* '|'-separated GGUF tokenizer.ggml.pre values */
    const char *rx[6]; /* applied in order, each as Split(Isolated) */
    bool        ignore_merges;
} pre_def;

/* The long UTF-8 class literals below do not format stably: keep them as written. */
// clang-format off
static const pre_def PRE_DEFS[] = {
    {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RX_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"}, false},
    {"llama3|llama-v3|llama-bpe|falcon3|falcon-h1|pixtral|dbrx|smaug-bpe|chatglm-bpe",
     {RX_LLAMA3},
     true},
    {"qwen2|qwen2.5|deepseek-r1-qwen|stablelm2", {RX_QWEN2}, false},
    {"deepseek-llm",
     {"[\r\n]",
      "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-"
      "ᲺᲽ-"
      "Ჿᴀ-"
      "ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-"
      "Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-"
      "ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-"
      "𐳲𑢠-"
      "𑣟𞤀-"
      "𞥃]+",
      "\\s?[!-/:-~！-／：-～‘-‟　-。]+", "\\s+$", "[一-龥ࠀ-一가-퟿]+", "\\p{N}+"},
     false},
    {"deepseek-coder",
     {"[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"},
     false},
    {"deepseek-v3",
     {"\\p{N}{1,3}", "[一-龥぀-ゟ゠-ヿ]+",
      "[!\"#$%&'()*+,\\-./"
      ":;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
      " ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+"},
     false},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RX_GPT2, "[0-9][0-9][0-9]"}, false},
    {"starcoder|refact|command-r|smollm|codeshell|exaone", {"\\p{N}", RX_GPT2}, false},
    {"gpt2|gpt-2|phi-2|mpt|olmo|jais|jina-es|jina-de|gigachat|jina-v1-en|jina-v2-es|jina-v2-de|"
     "jina-v2-code|roberta-bpe",
     {RX_GPT2},
     false},
    {"poro-chat|bloom|gpt3-finnish", {RX_BLOOM}, false},
    {"viking", {RX_BLOOM, "\\p{N}"}, false},
    {"tekken",
     {"[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"
      "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|"
      "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
     false},
}; // clang-format on

static const pre_def *find_pre(const char *name, size_t n) {
    for (size_t i = 0; i < sizeof PRE_DEFS / sizeof PRE_DEFS[0]; i++) {
        const char *s = PRE_DEFS[i].names;
        while (*s) {
            const char *e = strchr(s, '|');
            size_t      l = e ? (size_t)(e - s) : strlen(s);
            if (l == n && memcmp(s, name, n) == 0)
                return &PRE_DEFS[i];
            s += l + (e ? 1 : 0);
        }
    }
    return NULL;
}

/* ---- metadata helpers ------------------------------------------------------------- */
static int64_t get_int(const tm_gguf *g, const char *key, int64_t def) {
    int64_t v;
    return tm_gguf_get_int(g, key, &v) == TM_OK ? v : def;
}

static bool get_bool(const tm_gguf *g, const char *key, bool def) {
    bool v;
    return tm_gguf_get_bool(g, key, &v) == TM_OK ? v : def;
}

static tm_status array_key(const tm_gguf *g, const char *name, const char *key, tm_gguf_type type,
                           uint64_t n_expect, int64_t *out) {
    *out = tm_gguf_find_key(g, key);
    if (*out < 0)
        return TM_OK;
    if (tm_gguf_kv_type(g, *out) != TM_GGUF_TYPE_ARRAY || tm_gguf_kv_arr_type(g, *out) != type)
        return tm_fail(TM_ERR_FORMAT, "%s: %s must be an array of %s", name, key,
                       tm_gguf_type_name(type));
    if (n_expect != UINT64_MAX && tm_gguf_kv_arr_n(g, *out) != n_expect)
        return tm_fail(TM_ERR_FORMAT, "%s: %s has %llu entries, tokenizer.ggml.tokens has %llu",
                       name, key, (unsigned long long)tm_gguf_kv_arr_n(g, *out),
                       (unsigned long long)n_expect);
    return TM_OK;
}

static tm_status set_special_id(const tm_tokenizer *t, const tm_gguf *g, const char *name,
                                const char *key, int32_t *id) {
    int64_t v = get_int(g, key, INT64_MIN);
    if (v == INT64_MIN)
        return TM_OK;
    if (v < 0 || v >= t->n_vocab) {
        /* llama.cpp warns and keeps the default: follow it, the file is otherwise usable. */
        if (*id >= t->n_vocab)
            *id = -1;
        return TM_OK;
    }
    (void)name;
    *id = (int32_t)v;
    return TM_OK;
}

static tm_status push_norm(tm_tokenizer *t, tk_norm n) {
    tk_norm *v = tm_realloc(t->norm, (size_t)(t->n_norm + 1) * sizeof *v);
    if (v == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    t->norm = v;
    t->norm[t->n_norm++] = n;
    return TM_OK;
}

static tm_status push_pre(tm_tokenizer *t, tk_pre p) {
    tk_pre *v = tm_realloc(t->pre, (size_t)(t->n_pre + 1) * sizeof *v);
    if (v == NULL) {
        pcre2_code_free(p.re);
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    }
    t->pre = v;
    t->pre[t->n_pre++] = p;
    return TM_OK;
}

static tm_status push_dec(tm_tokenizer *t, tk_dec d) {
    tk_dec *v = tm_realloc(t->dec, (size_t)(t->n_dec + 1) * sizeof *v);
    if (v == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    t->dec = v;
    t->dec[t->n_dec++] = d;
    return TM_OK;
}

#define SPACE_MARK "\xE2\x96\x81" /* U+2581, SentencePiece's space */

static char *dupn(const char *s, size_t n) { return tm_strndup(s, n); }

/* Replace(a -> b) normalizer or decoder step. */
static tm_status spm_norm(tm_tokenizer *t, bool prefix) {
    if (prefix) {
        tk_norm n = {.kind = TK_NORM_PREPEND, .s1 = dupn(SPACE_MARK, 3), .n1 = 3};
        if (n.s1 == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
        TM_TRY(push_norm(t, n));
    }
    tk_norm r = {
        .kind = TK_NORM_REPLACE, .s1 = dupn(" ", 1), .n1 = 1, .s2 = dupn(SPACE_MARK, 3), .n2 = 3};
    if (r.s1 == NULL || r.s2 == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    TM_TRY(push_norm(t, r));
    snprintf(t->norm_desc, sizeof t->norm_desc, "%s",
             prefix ? "Prepend(▁),Replace( →▁)" : "Replace( →▁)");
    return TM_OK;
}

static tm_status spm_dec(tm_tokenizer *t, bool strip) {
    tk_dec r = {
        .kind = TK_DEC_REPLACE, .s1 = dupn(SPACE_MARK, 3), .n1 = 3, .s2 = dupn(" ", 1), .n2 = 1};
    if (r.s1 == NULL || r.s2 == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    TM_TRY(push_dec(t, r));
    TM_TRY(push_dec(t, (tk_dec){.kind = TK_DEC_BYTEFALLBACK}));
    TM_TRY(push_dec(t, (tk_dec){.kind = TK_DEC_FUSE}));
    if (strip) {
        tk_dec s = {
            .kind = TK_DEC_STRIP, .s2 = dupn(" ", 1), .n2 = 1, .start = 1, .after_fuse = true};
        if (s.s2 == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
        TM_TRY(push_dec(t, s));
    }
    snprintf(t->dec_desc, sizeof t->dec_desc, "Replace,ByteFallback,Fuse%s", strip ? ",Strip" : "");
    return TM_OK;
}

static tm_status load_merges(tm_tokenizer *t, const tm_gguf *g, const char *name) {
    int64_t k;
    TM_TRY(array_key(g, name, "tokenizer.ggml.merges", TM_GGUF_TYPE_STRING, UINT64_MAX, &k));
    if (k < 0)
        return tm_fail(TM_ERR_FORMAT, "%s: model gpt2 needs tokenizer.ggml.merges", name);
    uint64_t n = tm_gguf_kv_arr_n(g, k);
    if (n > (1u << 30))
        return tm_fail(TM_ERR_FORMAT, "%s: too many merges (%llu)", name, (unsigned long long)n);
    TM_TRY(tm__tk_merges_init(&t->merges, (size_t)n));
    tk_buf    cat = {0};
    tm_status st = TM_OK;
    for (uint64_t i = 0; i < n && st == TM_OK; i++) {
        tm_strview  m = tm_gguf_kv_arr_str(g, k, i);
        const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;
        if (sp == NULL) {
            st = tm_fail(TM_ERR_FORMAT, "%s: merge %llu '%.*s' has no space", name,
                         (unsigned long long)i, (int)(m.len > 60 ? 60 : m.len), m.ptr);
            break;
        }
        size_t  an = (size_t)(sp - m.ptr), bn = m.len - an - 1;
        int32_t a = tm__tk_lookup(t, m.ptr, an), b = tm__tk_lookup(t, sp + 1, bn);
        cat.n = 0;
        if ((st = tm__tk_buf_put(&cat, m.ptr, an)) != TM_OK ||
            (st = tm__tk_buf_put(&cat, sp + 1, bn)) != TM_OK)
            break;
        int32_t c = tm__tk_lookup(t, cat.p, cat.n);
        if (a < 0 || b < 0 || c < 0)
            continue; /* llama.cpp can never apply such a merge either */
        st = tm__tk_merges_add(&t->merges, a, b, (int32_t)i, c);
    }
    tm__tk_buf_free(&cat);
    return st;
}

tm_status tm__tk_load_gguf(tm_tokenizer *t, const tm_gguf *g, const char *name) {
    tm_strview model = {0}, pre = {0};
    if (tm_gguf_get_str(g, "tokenizer.ggml.model", &model) != TM_OK)
        return tm_fail(TM_ERR_FORMAT,
                       "%s: no tokenizer.ggml.model key: this GGUF has no vocabulary", name);
    bool has_pre = tm_gguf_get_str(g, "tokenizer.ggml.pre", &pre) == TM_OK;
    bool is_spm = model.len == 5 && memcmp(model.ptr, "llama", 5) == 0;
    bool is_bpe = model.len == 4 && memcmp(model.ptr, "gpt2", 4) == 0;
    bool is_wpm = model.len == 4 && memcmp(model.ptr, "bert", 4) == 0;
    if (!is_spm && !is_bpe && !is_wpm)
        return tm_fail(
            TM_ERR_UNSUPPORTED,
            "%s: tokenizer.ggml.model '%.*s' is not supported (llama, gpt2 and bert are)", name,
            (int)model.len, model.ptr);

    int64_t kt;
    TM_TRY(array_key(g, name, "tokenizer.ggml.tokens", TM_GGUF_TYPE_STRING, UINT64_MAX, &kt));
    if (kt < 0)
        return tm_fail(TM_ERR_FORMAT, "%s: no tokenizer.ggml.tokens", name);
    uint64_t n = tm_gguf_kv_arr_n(g, kt);
    if (n == 0 || n > (1u << 30))
        return tm_fail(TM_ERR_FORMAT, "%s: vocabulary of %llu tokens", name, (unsigned long long)n);
    int64_t ks, ky;
    TM_TRY(array_key(g, name, "tokenizer.ggml.scores", TM_GGUF_TYPE_FLOAT32, n, &ks));
    TM_TRY(array_key(g, name, "tokenizer.ggml.token_type", TM_GGUF_TYPE_INT32, n, &ky));

    TM_TRY(tm__tk_vocab_alloc(t, (int32_t)n));
    for (uint64_t i = 0; i < n; i++) {
        tm_strview s = tm_gguf_kv_arr_str(g, kt, i);
        TM_TRY(tm__tk_vocab_set(t, (int32_t)i, s.ptr, s.len));
    }
    if (ks >= 0) {
        t->scores = tm_malloc((size_t)n * sizeof *t->scores);
        if (t->scores == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (scores)");
        const uint8_t *p = tm_gguf_kv_arr_data(g, ks);
        for (uint64_t i = 0; i < n; i++)
            t->scores[i] = tm_load_f32_le(p + 4 * i);
    }
    /* Added tokens from the token types. */
    if (ky >= 0) {
        const uint8_t *p = tm_gguf_kv_arr_data(g, ky);
        for (uint64_t i = 0; i < n; i++) {
            int32_t type = (int32_t)tm_load_u32_le(p + 4 * i);
            if (type == 5)
                t->attr[i] |= TK_ATTR_UNUSED;
            if ((type == 2 || type == 3 || type == 4) && t->text_len[i] > 0) {
                tk_added a = {.id = (int32_t)i,
                              .text = (char *)tm__tk_text(t, (int32_t)i),
                              .len = t->text_len[i],
                              .special = type != 4};
                TM_TRY(tm__tk_add_added(t, &a));
            }
        }
    }
    TM_TRY(tm__tk_finish(t));
    t->source_name = "gguf";

    int32_t sep_id = -1;
    if (is_spm) {
        t->model = TK_MODEL_SPM;
        t->type_name = "spm-bpe";
        t->bos_id = 1;
        t->eos_id = 2;
        t->unk_id = 0;
        bool prefix = get_bool(g, "tokenizer.ggml.add_space_prefix", true);
        TM_TRY(spm_norm(t, prefix));
        TM_TRY(spm_dec(t, prefix));
        snprintf(t->pre_desc, sizeof t->pre_desc, "none (SentencePiece)");
    } else if (is_bpe) {
        t->model = TK_MODEL_BPE;
        t->type_name = "bpe-bytelevel";
        t->byte_level = true;
        char pname[64] = "default";
        if (has_pre && pre.len > 0 && pre.len < sizeof pname) {
            memcpy(pname, pre.ptr, pre.len);
            pname[pre.len] = '\0';
        } else if (has_pre && pre.len >= sizeof pname) {
            return tm_fail(TM_ERR_UNSUPPORTED, "%s: tokenizer.ggml.pre '%.*s...' is not supported",
                           name, 40, pre.ptr);
        }
        const pre_def *pd = find_pre(pname, strlen(pname));
        if (pd == NULL)
            return tm_fail(TM_ERR_UNSUPPORTED,
                           "%s: tokenizer.ggml.pre '%s' is not supported (see docs/tokenizer.md "
                           "for the list; llama.cpp's name is needed)",
                           name, pname);
        for (int i = 0; i < 6 && pd->rx[i]; i++) {
            tk_pre p = {.kind = TK_PRE_SPLIT, .behavior = TK_SPLIT_ISOLATED};
            TM_TRY(tm__tk_regex_compile(pd->rx[i], strlen(pd->rx[i]), false, &p.re));
            TM_TRY(push_pre(t, p));
        }
        TM_TRY(push_pre(t, (tk_pre){.kind = TK_PRE_BYTELEVEL}));
        t->ignore_merges = pd->ignore_merges;
        snprintf(t->pre_desc, sizeof t->pre_desc, "gguf:%s", pname);
        TM_TRY(load_merges(t, g, name));
        TM_TRY(push_dec(t, (tk_dec){.kind = TK_DEC_BYTELEVEL}));
        snprintf(t->dec_desc, sizeof t->dec_desc, "ByteLevel");
    } else {
        t->model = TK_MODEL_WORDPIECE;
        t->type_name = "wordpiece";
        t->bos_id = 101;
        t->eos_id = 102;
        t->unk_id = 100;
        t->wp_max_chars = 100;
        /* llama.cpp's BERT vocabulary: "▁word" starts a word, continuations are bare. */
        t->wp_word_prefix = true;
        tk_norm bn = {.kind = TK_NORM_BERT,
                      .clean_text = true,
                      .handle_chinese = true,
                      .strip_accents = true,
                      .lowercase = true};
        TM_TRY(push_norm(t, bn));
        TM_TRY(push_pre(t, (tk_pre){.kind = TK_PRE_BERT}));
        tk_dec r = {.kind = TK_DEC_REPLACE,
                    .s1 = dupn(SPACE_MARK, 3),
                    .n1 = 3,
                    .s2 = dupn(" ", 1),
                    .n2 = 1};
        if (r.s1 == NULL || r.s2 == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
        TM_TRY(push_dec(t, r));
        tk_dec s = {
            .kind = TK_DEC_STRIP, .s2 = dupn(" ", 1), .n2 = 1, .start = 1, .after_fuse = true};
        if (s.s2 == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
        TM_TRY(push_dec(t, s));
        snprintf(t->norm_desc, sizeof t->norm_desc, "BertNormalizer");
        snprintf(t->pre_desc, sizeof t->pre_desc, "BertPreTokenizer");
        snprintf(t->dec_desc, sizeof t->dec_desc, "Replace,Strip");
    }
    if (t->bos_id >= t->n_vocab)
        t->bos_id = -1;
    if (t->eos_id >= t->n_vocab)
        t->eos_id = -1;
    if (t->unk_id >= t->n_vocab)
        t->unk_id = -1;
    TM_TRY(set_special_id(t, g, name, "tokenizer.ggml.bos_token_id", &t->bos_id));
    TM_TRY(set_special_id(t, g, name, "tokenizer.ggml.eos_token_id", &t->eos_id));
    TM_TRY(set_special_id(t, g, name, "tokenizer.ggml.unknown_token_id", &t->unk_id));
    TM_TRY(set_special_id(t, g, name, "tokenizer.ggml.padding_token_id", &t->pad_id));
    TM_TRY(set_special_id(t, g, name, "tokenizer.ggml.seperator_token_id", &sep_id));
    if (is_wpm && sep_id >= 0)
        t->eos_id = sep_id;
    bool add_bos = get_bool(g, "tokenizer.ggml.add_bos_token",
                            is_spm || is_wpm || (is_bpe && t->ignore_merges));
    bool add_eos = get_bool(g, "tokenizer.ggml.add_eos_token", is_wpm);
    if (is_wpm)
        add_eos = add_eos || get_bool(g, "tokenizer.ggml.add_sep_token", true);
    return tm__tk_set_tmpl_bos_eos(t, add_bos, add_eos);
}
