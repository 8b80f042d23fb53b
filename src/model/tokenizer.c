/*
 * tokenizer.c - public tokenizer API: init (source dispatch), the encode driver
 * (added tokens, normalizer, pre-tokenizer, model, post-processor template),
 * decode through the decoder steps, the streaming detokenizer, lookups, info.
 *
 * DESIGN
 * ------
 * Encoding follows HF tokenizers' order: added tokens are split out of the raw
 * text first (leftmost-longest over a byte trie; special ones only when
 * parse_special), each remaining segment is normalized and pre-tokenized on its
 * own, each piece goes through the model, and add_special applies the template.
 * Decoding runs the decoder steps per token with the token's index (Metaspace
 * and WordPiece treat the first token differently; Fuse is a concatenation),
 * which lets the streaming detokenizer share the code with decode().
 * All per-call state (word cache, buffers) lives on the call: the tokenizer is
 * immutable after init and safe to share between threads.
 */
#include <stdio.h>
#include <string.h>

#include "model/tokenizer_int.h"
#include "tm/tm_gguf.h"
#include "tm/tm_io.h"

/* ---- small containers -------------------------------------------------------- */
tm_status tm__tk_buf_reserve(tk_buf *b, size_t extra) {
    size_t need;
    if (!tm_size_add(b->n, extra, &need))
        return tm_fail(TM_ERR_NOMEM, "tokenizer: buffer size overflow");
    if (need <= b->cap)
        return TM_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *p = tm_realloc(b->p, cap);
    if (p == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (%zu bytes)", cap);
    b->p = p;
    b->cap = cap;
    return TM_OK;
}

tm_status tm__tk_buf_put(tk_buf *b, const void *s, size_t n) {
    if (n == 0)
        return TM_OK;
    TM_TRY(tm__tk_buf_reserve(b, n));
    memcpy(b->p + b->n, s, n);
    b->n += n;
    return TM_OK;
}

void tm__tk_buf_free(tk_buf *b) {
    tm_free(b->p);
    *b = (tk_buf){0};
}

tm_status tm__tk_ids_push(tk_ids *a, int32_t id) {
    if (a->n == a->cap) {
        size_t   cap = a->cap ? a->cap * 2 : 64;
        int32_t *v = tm_realloc(a->v, cap * sizeof *v);
        if (v == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (ids)");
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = id;
    return TM_OK;
}

static uint32_t str_hash(const char *s, size_t n) {
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 16777619u;
    }
    return h;
}

/* ---- merges map ------------------------------------------------------------------ */
static uint64_t mix64(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

tm_status tm__tk_merges_init(tk_mergemap *m, size_t n_expected) {
    size_t cap = 16;
    while (cap < n_expected * 2 + 16)
        cap *= 2;
    m->slots = tm_malloc(cap * sizeof *m->slots);
    if (m->slots == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (merges)");
    for (size_t i = 0; i < cap; i++)
        m->slots[i].key = UINT64_MAX;
    m->mask = cap - 1;
    m->n = 0;
    return TM_OK;
}

tm_status tm__tk_merges_add(tk_mergemap *m, int32_t a, int32_t b, int32_t rank, int32_t new_id) {
    if ((size_t)(m->n + 1) * 2 > m->mask + 1) {
        tk_mergemap g = {0};
        TM_TRY(tm__tk_merges_init(&g, (size_t)m->n * 2));
        for (size_t i = 0; i <= m->mask; i++)
            if (m->slots[i].key != UINT64_MAX) {
                tk_merge e = m->slots[i];
                TM_TRY(tm__tk_merges_add(&g, (int32_t)(e.key >> 32), (int32_t)(uint32_t)e.key,
                                         e.rank, e.new_id));
            }
        tm_free(m->slots);
        *m = g;
    }
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->slots[i].key == key) { /* HF builds a map: a later duplicate wins */
            m->slots[i].rank = rank;
            m->slots[i].new_id = new_id;
            return TM_OK;
        }
        if (m->slots[i].key == UINT64_MAX) {
            m->slots[i] = (tk_merge){key, rank, new_id};
            m->n++;
            return TM_OK;
        }
    }
}

const tk_merge *tm__tk_merges_find(const tk_mergemap *m, int32_t a, int32_t b) {
    if (m->slots == NULL)
        return NULL;
    uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
    for (size_t i = mix64(key) & m->mask;; i = (i + 1) & m->mask) {
        if (m->slots[i].key == key)
            return &m->slots[i];
        if (m->slots[i].key == UINT64_MAX)
            return NULL;
    }
}

void tm__tk_merges_free(tk_mergemap *m) {
    tm_free(m->slots);
    *m = (tk_mergemap){0};
}

/* ---- vocabulary -------------------------------------------------------------------- */
tm_status tm__tk_vocab_alloc(tm_tokenizer *t, int32_t n) {
    if (n <= 0 || n > (1 << 30))
        return tm_fail(TM_ERR_FORMAT, "tokenizer: vocabulary size %d out of range", n);
    t->n_vocab = n;
    t->text_off = tm_calloc((size_t)n, sizeof *t->text_off);
    t->text_len = tm_calloc((size_t)n, sizeof *t->text_len);
    t->attr = tm_calloc((size_t)n, 1);
    if (!t->text_off || !t->text_len || !t->attr)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (vocabulary of %d)", n);
    for (int32_t i = 0; i < n; i++)
        t->attr[i] = TK_ATTR_UNUSED; /* a hole until set */
    t->blob.n = 0;
    return tm__tk_buf_put(&t->blob, "", 1);
}

tm_status tm__tk_vocab_set(tm_tokenizer *t, int32_t id, const char *s, size_t n) {
    TM_ASSERT(id >= 0 && id < t->n_vocab); /* loaders range-check ids from files */
    if (n > UINT32_MAX - 1)
        return tm_fail(TM_ERR_FORMAT, "tokenizer: token %d too long", id);
    t->text_off[id] = t->blob.n;
    t->text_len[id] = (uint32_t)n;
    t->attr[id] &= (uint8_t)~TK_ATTR_UNUSED;
    TM_TRY(tm__tk_buf_put(&t->blob, s, n));
    return tm__tk_buf_put(&t->blob, "", 1);
}

static tm_status build_map(tm_tokenizer *t) {
    size_t cap = 16;
    while (cap < (size_t)t->n_vocab * 2)
        cap *= 2;
    t->map.slots = tm_malloc(cap * sizeof *t->map.slots);
    t->map.hash = tm_malloc(cap * sizeof *t->map.hash);
    if (!t->map.slots || !t->map.hash)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (vocabulary map)");
    for (size_t i = 0; i < cap; i++)
        t->map.slots[i] = -1;
    t->map.mask = cap - 1;
    t->max_token_len = 0;
    for (int32_t id = 0; id < t->n_vocab; id++) {
        if (t->attr[id] & TK_ATTR_UNUSED && t->text_len[id] == 0)
            continue;
        const char *s = tm__tk_text(t, id);
        size_t      n = t->text_len[id];
        if (n > t->max_token_len)
            t->max_token_len = n;
        uint32_t h = str_hash(s, n);
        for (size_t i = h & t->map.mask;; i = (i + 1) & t->map.mask) {
            int32_t o = t->map.slots[i];
            if (o < 0) {
                t->map.slots[i] = id;
                t->map.hash[i] = h;
                break;
            }
            if (t->map.hash[i] == h && t->text_len[o] == n &&
                memcmp(tm__tk_text(t, o), s, n) == 0) {
                t->map.slots[i] = id; /* duplicate string: the later id wins (HF, llama.cpp) */
                break;
            }
        }
    }
    return TM_OK;
}

int32_t tm__tk_lookup(const tm_tokenizer *t, const char *s, size_t n) {
    if (t->map.slots == NULL)
        return -1;
    uint32_t h = str_hash(s, n);
    for (size_t i = h & t->map.mask;; i = (i + 1) & t->map.mask) {
        int32_t o = t->map.slots[i];
        if (o < 0)
            return -1;
        if (t->map.hash[i] == h && t->text_len[o] == n && memcmp(tm__tk_text(t, o), s, n) == 0)
            return o;
    }
}

/* ---- added tokens and their trie ------------------------------------------------------ */
tm_status tm__tk_add_added(tm_tokenizer *t, const tk_added *a) {
    if (a->id < 0 || a->id >= t->n_vocab)
        return tm_fail(TM_ERR_FORMAT, "tokenizer: added token id %d outside the vocabulary (%d)",
                       a->id, t->n_vocab);
    if (a->len == 0)
        return tm_fail(TM_ERR_FORMAT, "tokenizer: added token %d has empty content", a->id);
    tk_added *v = tm_realloc(t->added, (size_t)(t->n_added + 1) * sizeof *v);
    if (v == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (added tokens)");
    t->added = v;
    tk_added *d = &t->added[t->n_added];
    *d = *a;
    d->text = tm_strndup(a->text, a->len);
    if (d->text == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (added tokens)");
    t->n_added++;
    t->attr[a->id] |= TK_ATTR_ADDED | (a->special ? TK_ATTR_SPECIAL : 0);
    if (t->text_len[a->id] == 0 || (t->attr[a->id] & TK_ATTR_UNUSED))
        TM_TRY(tm__tk_vocab_set(t, a->id, a->text, a->len));
    return TM_OK;
}

static tm_status trie_node(tm_tokenizer *t, uint8_t byte, int32_t *out) {
    if (t->n_trie == t->cap_trie) {
        int32_t       cap = t->cap_trie ? t->cap_trie * 2 : 256;
        tk_trie_node *v = tm_realloc(t->trie, (size_t)cap * sizeof *v);
        if (v == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (added-token trie)");
        t->trie = v;
        t->cap_trie = cap;
    }
    t->trie[t->n_trie] = (tk_trie_node){-1, -1, -1, byte};
    *out = t->n_trie++;
    return TM_OK;
}

static tm_status build_trie(tm_tokenizer *t) {
    for (int i = 0; i < 256; i++)
        t->trie_root[i] = -1;
    for (int32_t k = 0; k < t->n_added; k++) {
        const tk_added *a = &t->added[k];
        const uint8_t  *s = (const uint8_t *)a->text;
        int32_t         node = t->trie_root[s[0]];
        if (node < 0) {
            TM_TRY(trie_node(t, s[0], &node));
            t->trie_root[s[0]] = node;
        }
        for (size_t i = 1; i < a->len; i++) {
            int32_t c = t->trie[node].first_child;
            while (c >= 0 && t->trie[c].byte != s[i])
                c = t->trie[c].next_sibling;
            if (c < 0) {
                TM_TRY(trie_node(t, s[i], &c));
                t->trie[c].next_sibling = t->trie[node].first_child;
                t->trie[node].first_child = c;
            }
            node = c;
        }
        t->trie[node].added = k; /* a later duplicate wins */
    }
    return TM_OK;
}

tm_status tm__tk_finish(tm_tokenizer *t) {
    TM_TRY(build_map(t));
    TM_TRY(build_trie(t));
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->byte_ids[b] = tm__tk_lookup(t, name, 6);
        if (t->byte_ids[b] >= 0)
            t->attr[t->byte_ids[b]] |= TK_ATTR_BYTE;
        char   u[4];
        size_t l = tm__utf8_encode(tm__bytelevel_cp((uint8_t)b), u);
        TM_ASSERT(l <= 2); /* the GPT-2 alphabet ends below U+0800 */
        memcpy(t->bl_utf8[b], u, l);
        t->bl_len[b] = (uint8_t)l;
    }
    return TM_OK;
}

tm_status tm__tk_set_tmpl_bos_eos(tm_tokenizer *t, bool add_bos, bool add_eos) {
    for (int32_t i = 0; i < t->n_tmpl; i++)
        tm_free(t->tmpl[i].ids);
    tm_free(t->tmpl);
    t->tmpl = NULL;
    t->n_tmpl = 0;
    add_bos = add_bos && t->bos_id >= 0;
    add_eos = add_eos && t->eos_id >= 0;
    t->add_bos = add_bos;
    t->add_eos = add_eos;
    t->tmpl = tm_calloc(3, sizeof *t->tmpl);
    if (t->tmpl == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (template)");
    int32_t specs[2] = {add_bos ? t->bos_id : -1, add_eos ? t->eos_id : -1};
    for (int k = 0; k < 3; k++) {
        int32_t id = k == 0 ? specs[0] : k == 2 ? specs[1] : -1;
        if (k == 1) {
            t->tmpl[t->n_tmpl++].is_sequence = true;
            continue;
        }
        if (id < 0)
            continue;
        tk_tmpl_item *it = &t->tmpl[t->n_tmpl++];
        it->ids = tm_malloc(sizeof(int32_t));
        if (it->ids == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (template)");
        it->ids[0] = id;
        it->n_ids = 1;
    }
    return TM_OK;
}

void tm__tk_free_contents(tm_tokenizer *t) {
    tm__tk_buf_free(&t->blob);
    tm_free(t->text_off);
    tm_free(t->text_len);
    tm_free(t->scores);
    tm_free(t->attr);
    tm_free(t->map.slots);
    tm_free(t->map.hash);
    tm__tk_merges_free(&t->merges);
    tm_free(t->cont_prefix);
    tm_free(t->eow_suffix);
    for (int i = 0; i < t->n_norm; i++) {
        tm_free(t->norm[i].s1);
        tm_free(t->norm[i].s2);
        pcre2_code_free(t->norm[i].re);
    }
    tm_free(t->norm);
    for (int i = 0; i < t->n_pre; i++)
        pcre2_code_free(t->pre[i].re);
    tm_free(t->pre);
    for (int i = 0; i < t->n_dec; i++) {
        tm_free(t->dec[i].s1);
        tm_free(t->dec[i].s2);
    }
    tm_free(t->dec);
    for (int32_t i = 0; i < t->n_added; i++)
        tm_free(t->added[i].text);
    tm_free(t->added);
    tm_free(t->trie);
    for (int32_t i = 0; i < t->n_tmpl; i++)
        tm_free(t->tmpl[i].ids);
    tm_free(t->tmpl);
}

/* ---- init ------------------------------------------------------------------------------ */
tm_tokenizer_params tm_tokenizer_params_default(void) {
    return (tm_tokenizer_params){.source = TM_TOKENIZER_SOURCE_AUTO};
}

static tm_tokenizer *tk_new(void) {
    tm_tokenizer *t = tm_calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->unk_id = t->bos_id = t->eos_id = t->pad_id = -1;
    snprintf(t->norm_desc, sizeof t->norm_desc, "none");
    snprintf(t->pre_desc, sizeof t->pre_desc, "none");
    snprintf(t->dec_desc, sizeof t->dec_desc, "none");
    return t;
}

static bool ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

static tm_status load_json_path(tm_tokenizer *t, const char *path) {
    char  *data = NULL;
    size_t len = 0;
    TM_TRY(tm_file_read_all(path, (size_t)1 << 30, &data, &len));
    tm_status st = tm__tk_load_json(t, data, len, path);
    tm_free(data);
    return st;
}

static tm_status load_dir(tm_tokenizer *t, const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if (!tm_path_is_file(path))
        return tm_fail(TM_ERR_NOT_FOUND,
                       "%s: no tokenizer.json in this folder (a Hugging Face folder needs one; "
                       "pass a GGUF or tokenizer.bin path instead)",
                       dir);
    TM_TRY(load_json_path(t, path));
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (tm_path_is_file(path))
        TM_TRY(tm__tk_apply_hf_config(t, path));
    return TM_OK;
}

static tm_status load_gguf_path(tm_tokenizer *t, const char *path) {
    tm_gguf *g = NULL;
    TM_TRY(tm_gguf_open(path, &g));
    tm_status st = tm__tk_load_gguf(t, g, path);
    tm_gguf_close(g);
    return st;
}

static tm_status load_llama2c_path(tm_tokenizer *t, const char *path, int32_t n_vocab) {
    tm_mmap m = {0};
    TM_TRY(tm_mmap_open(path, &m));
    tm_status st = tm__tk_load_llama2c(t, m.data, m.size, n_vocab, path);
    tm_mmap_close(&m);
    return st;
}

static tm_status load_auto(tm_tokenizer *t, const char *path) {
    if (tm_path_is_dir(path))
        return load_dir(t, path);
    if (!tm_path_is_file(path))
        return tm_fail(TM_ERR_NOT_FOUND, "%s: no such file or folder", path);
    if (ends_with(path, ".json"))
        return load_json_path(t, path);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return tm_fail(TM_ERR_IO, "%s: cannot open", path);
    unsigned char magic[4] = {0};
    size_t        got = fread(magic, 1, 4, f);
    fclose(f);
    if (got == 4 && memcmp(magic, "GGUF", 4) == 0)
        return load_gguf_path(t, path);
    if (got >= 1 && magic[0] == '{')
        return load_json_path(t, path);
    return load_llama2c_path(t, path, 0);
}

tm_status tm_tokenizer_init(const tm_tokenizer_params *p, tm_tokenizer **out) {
    *out = NULL;
    if (p == NULL)
        return tm_fail(TM_ERR_INVALID, "tm_tokenizer_init: params is NULL");
    tm_tokenizer *t = tk_new();
    if (t == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    tm_status st;
    if (p->json_data != NULL) {
        st = tm__tk_load_json(t, p->json_data, p->json_len, "tokenizer.json (memory)");
    } else if (p->gguf != NULL) {
        st = tm__tk_load_gguf(t, p->gguf, "gguf");
    } else if (p->path == NULL) {
        st = tm_fail(TM_ERR_INVALID, "tm_tokenizer_init: no source (set path, gguf or json_data)");
    } else {
        switch (p->source) {
        case TM_TOKENIZER_SOURCE_JSON: st = load_json_path(t, p->path); break;
        case TM_TOKENIZER_SOURCE_HF_DIR: st = load_dir(t, p->path); break;
        case TM_TOKENIZER_SOURCE_GGUF: st = load_gguf_path(t, p->path); break;
        case TM_TOKENIZER_SOURCE_LLAMA2C:
            st = load_llama2c_path(t, p->path, p->llama2c_n_vocab);
            break;
        default: st = load_auto(t, p->path); break;
        }
    }
    if (st != TM_OK) {
        tm_tokenizer_free(t);
        return st;
    }
    *out = t;
    return TM_OK;
}

void tm_tokenizer_free(tm_tokenizer *tok) {
    if (tok == NULL)
        return;
    tm__tk_free_contents(tok);
    tm_free(tok);
}

/* ---- encode --------------------------------------------------------------------------- */
typedef struct enc_state {
    tk_bpe_work *work;
    tk_buf       norm;
    tk_pieces    pieces, scratch;
} enc_state;

static bool is_ws_at(const uint8_t *p, size_t n, size_t i, size_t *len) {
    uint32_t cp;
    *len = tm__utf8_decode(p + i, n - i, &cp);
    return tm__uni_is_whitespace(cp);
}

/* True when [b, e) overlaps one of the literal spans (sorted or not; few of them). */
static bool in_literal(const tm_text_span *lit, size_t n_lit, size_t b, size_t e) {
    for (size_t i = 0; i < n_lit; i++)
        if (b < lit[i].off + lit[i].len && lit[i].off < e)
            return true;
    return false;
}

/* Finds the leftmost-longest added token in text[from..n) that may be matched: special
 * tokens only with parse_special, and never inside a literal span. */
static bool find_added(const tm_tokenizer *t, const char *text, size_t n, size_t from,
                       bool parse_special, const tm_text_span *lit, size_t n_lit, size_t *mb,
                       size_t *me, int32_t *which) {
    const uint8_t *p = (const uint8_t *)text;
    for (size_t i = from; i < n; i++) {
        int32_t node = t->trie_root[p[i]];
        int32_t best = -1;
        size_t  best_end = 0;
        for (size_t j = i; node >= 0;) {
            int32_t k = t->trie[node].added;
            if (k >= 0 && (parse_special || !t->added[k].special)) {
                const tk_added *a = &t->added[k];
                bool            ok = !(a->special && n_lit > 0 && in_literal(lit, n_lit, i, j + 1));
                if (a->single_word) {
                    /* HF: the match must not touch word characters on either side. */
                    if (i > 0) {
                        size_t s = i - 1;
                        while (s > 0 && (p[s] & 0xC0) == 0x80)
                            s--;
                        uint32_t cp;
                        tm__utf8_decode(p + s, n - s, &cp);
                        ok = ok && !tm__uni_is_alnum_word(cp);
                    }
                    if (j + 1 < n) {
                        uint32_t cp;
                        tm__utf8_decode(p + j + 1, n - j - 1, &cp);
                        ok = ok && !tm__uni_is_alnum_word(cp);
                    }
                }
                if (ok) {
                    best = k;
                    best_end = j + 1;
                }
            }
            if (++j >= n)
                break;
            int32_t c = t->trie[node].first_child;
            while (c >= 0 && t->trie[c].byte != p[j])
                c = t->trie[c].next_sibling;
            node = c;
        }
        if (best >= 0) {
            *mb = i;
            *me = best_end;
            *which = best;
            return true;
        }
    }
    return false;
}

static tm_status encode_segment(const tm_tokenizer *t, enc_state *es, const char *s, size_t n,
                                bool first, tk_ids *out) {
    if (n == 0)
        return TM_OK;
    TM_TRY(tm__tk_normalize(t, s, n, &es->norm));
    TM_TRY(tm__tk_pretokenize(t, es->norm.p, es->norm.n, first, &es->pieces, &es->scratch));
    for (size_t i = 0; i < es->pieces.n; i++) {
        const char *ps = es->pieces.arena.p + es->pieces.v[i].off;
        size_t      pn = es->pieces.v[i].len;
        switch (t->model) {
        case TK_MODEL_BPE: TM_TRY(tm__tk_bpe_piece(t, es->work, ps, pn, out)); break;
        case TK_MODEL_SPM: TM_TRY(tm__tk_spm_piece(t, es->work, ps, pn, out)); break;
        case TK_MODEL_WORDPIECE: TM_TRY(tm__tk_wordpiece_piece(t, ps, pn, out)); break;
        }
    }
    return TM_OK;
}

static tm_status encode_all(const tm_tokenizer *t, const char *text, size_t len, bool add_special,
                            bool parse_special, const tm_text_span *lit, size_t n_lit,
                            tk_ids *out) {
    if (len > 0 && text == NULL)
        return tm_fail(TM_ERR_INVALID, "tokenizer: text is NULL");
    size_t bad = tm__utf8_check(text, len);
    if (bad != SIZE_MAX)
        return tm_fail(TM_ERR_INVALID,
                       "invalid UTF-8 at byte offset %zu (byte 0x%02X): convert the text to UTF-8 "
                       "first",
                       bad, (unsigned)(uint8_t)text[bad]);
    tk_ids    body = {0};
    enc_state es = {0};
    tm_status st = tm__tk_bpe_work_init(&es.work);
    if (st != TM_OK)
        return st;

    const uint8_t *p = (const uint8_t *)text;
    size_t         pos = 0;
    while (st == TM_OK && pos <= len) {
        size_t  mb = len, me = len;
        int32_t k = -1;
        bool    hit = t->n_added > 0 &&
                   find_added(t, text, len, pos, parse_special, lit, n_lit, &mb, &me, &k);
        size_t seg_end = hit ? mb : len;
        if (hit) {
            const tk_added *a = &t->added[k];
            size_t          l;
            if (a->lstrip) /* eat whitespace before the token */
                while (seg_end > pos) {
                    size_t s = seg_end - 1;
                    while (s > pos && (p[s] & 0xC0) == 0x80)
                        s--;
                    if (!is_ws_at(p, len, s, &l))
                        break;
                    seg_end = s;
                }
            if (a->rstrip)
                while (me < len && is_ws_at(p, len, me, &l))
                    me += l;
        }
        st = encode_segment(t, &es, text + pos, seg_end - pos, pos == 0, &body);
        if (st != TM_OK || !hit)
            break;
        st = tm__tk_ids_push(&body, t->added[k].id);
        pos = me;
        if (pos == len)
            break;
    }
    if (st == TM_OK) {
        if (add_special && t->tmpl != NULL) {
            for (int32_t i = 0; st == TM_OK && i < t->n_tmpl; i++) {
                const tk_tmpl_item *it = &t->tmpl[i];
                if (it->is_sequence)
                    for (size_t j = 0; st == TM_OK && j < body.n; j++)
                        st = tm__tk_ids_push(out, body.v[j]);
                else
                    for (size_t j = 0; st == TM_OK && j < it->n_ids; j++)
                        st = tm__tk_ids_push(out, it->ids[j]);
            }
        } else {
            for (size_t j = 0; st == TM_OK && j < body.n; j++)
                st = tm__tk_ids_push(out, body.v[j]);
        }
    }
    tm_free(body.v);
    tm__tk_bpe_work_free(es.work);
    tm__tk_buf_free(&es.norm);
    tm__tk_pieces_free(&es.pieces);
    tm__tk_pieces_free(&es.scratch);
    return st;
}

tm_status tm_tokenizer_encode(const tm_tokenizer *tok, const char *text, size_t len,
                              bool add_special, bool parse_special, int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    tk_ids    out = {0};
    tm_status st = encode_all(tok, text, len, add_special, parse_special, NULL, 0, &out);
    if (st != TM_OK) {
        tm_free(out.v);
        return st;
    }
    if (out.n == 0) {
        tm_free(out.v);
        return TM_OK;
    }
    *ids = out.v;
    *n_ids = out.n;
    return TM_OK;
}

tm_status tm_tokenizer_encode_spans(const tm_tokenizer *tok, const char *text, size_t len,
                                    bool add_special, const tm_text_span *literal, size_t n_literal,
                                    int32_t **ids, size_t *n_ids) {
    *ids = NULL;
    *n_ids = 0;
    for (size_t i = 0; i < n_literal; i++)
        if (literal[i].off > len || literal[i].len > len - literal[i].off)
            return tm_fail(TM_ERR_INVALID,
                           "tokenizer: literal span %zu [%zu, +%zu) is past the "
                           "%zu-byte text",
                           i, literal[i].off, literal[i].len, len);
    tk_ids    out = {0};
    tm_status st = encode_all(tok, text, len, add_special, true, literal, n_literal, &out);
    if (st != TM_OK || out.n == 0) {
        tm_free(out.v);
        return st;
    }
    *ids = out.v;
    *n_ids = out.n;
    return TM_OK;
}

tm_status tm_tokenizer_encode_into(const tm_tokenizer *tok, const char *text, size_t len,
                                   bool add_special, bool parse_special, int32_t *buf, size_t cap,
                                   size_t *n_ids) {
    *n_ids = 0;
    tk_ids    out = {0};
    tm_status st = encode_all(tok, text, len, add_special, parse_special, NULL, 0, &out);
    if (st == TM_OK) {
        *n_ids = out.n;
        if (out.n > cap)
            st = tm_fail(TM_ERR_FULL, "tokenizer: %zu ids do not fit a buffer of %zu", out.n, cap);
        else if (out.n)
            memcpy(buf, out.v, out.n * sizeof *buf);
    }
    tm_free(out.v);
    return st;
}

/* ---- decode ------------------------------------------------------------------------------ */
static tm_status replace_all(const char *s, size_t n, const char *a, size_t an, const char *b,
                             size_t bn, tk_buf *out) {
    out->n = 0;
    if (an == 0)
        return tm__tk_buf_put(out, s, n);
    for (size_t i = 0; i < n;) {
        if (n - i >= an && memcmp(s + i, a, an) == 0) {
            TM_TRY(tm__tk_buf_put(out, b, bn));
            i += an;
        } else {
            TM_TRY(tm__tk_buf_put(out, s + i, 1));
            i++;
        }
    }
    return TM_OK;
}

static int parse_byte_token(const char *s, size_t n) {
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        char c = s[i];
        int  d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* HF WordPiece decoder's cleanup (clean_up_tokenization). */
static tm_status wp_cleanup(tk_buf *a, tk_buf *b) {
    static const char *const pairs[][2] = {
        {" .", "."},   {" ?", "?"},     {" !", "!"},     {" ,", ","},
        {" ' ", "'"},  {" n't", "n't"}, {" 'm", "'m"},   {" do not", " don't"},
        {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"},
    };
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        TM_TRY(replace_all(a->p, a->n, pairs[k][0], strlen(pairs[k][0]), pairs[k][1],
                           strlen(pairs[k][1]), b));
        tk_buf sw = *a;
        *a = *b;
        *b = sw;
    }
    return TM_OK;
}

/* Runs the decoder steps on one token at position index (0 = first decoded). */
static tm_status dec_token(const tm_tokenizer *t, int32_t id, size_t index, tk_buf *a, tk_buf *b,
                           tk_buf *out) {
    a->n = 0;
    TM_TRY(tm__tk_buf_put(a, tm__tk_text(t, id), t->text_len[id]));
    if (t->n_dec == 0 && index > 0) /* HF with no decoder joins tokens with spaces */
        TM_TRY(tm__tk_buf_put(out, " ", 1));
    for (int k = 0; k < t->n_dec; k++) {
        const tk_dec *d = &t->dec[k];
        b->n = 0;
        switch (d->kind) {
        case TK_DEC_BYTELEVEL: {
            const uint8_t *p = (const uint8_t *)a->p;
            bool           ok = true;
            for (size_t i = 0; i < a->n && ok;) {
                uint32_t cp;
                i += tm__utf8_decode(p + i, a->n - i, &cp);
                int byte = tm__bytelevel_byte(cp);
                if (byte < 0) {
                    ok = false;
                    break;
                }
                char c = (char)byte;
                TM_TRY(tm__tk_buf_put(b, &c, 1));
            }
            if (!ok) { /* HF keeps such a token's own bytes */
                b->n = 0;
                TM_TRY(tm__tk_buf_put(b, a->p, a->n));
            }
            break;
        }
        case TK_DEC_METASPACE: {
            for (size_t i = 0; i < a->n;) {
                if (a->n - i >= d->n1 && d->n1 > 0 && memcmp(a->p + i, d->s1, d->n1) == 0) {
                    if (!(index == 0 && d->prepend))
                        TM_TRY(tm__tk_buf_put(b, " ", 1));
                    i += d->n1;
                } else {
                    TM_TRY(tm__tk_buf_put(b, a->p + i, 1));
                    i++;
                }
            }
            break;
        }
        case TK_DEC_REPLACE: TM_TRY(replace_all(a->p, a->n, d->s1, d->n1, d->s2, d->n2, b)); break;
        case TK_DEC_BYTEFALLBACK: {
            int v = parse_byte_token(a->p, a->n);
            if (v >= 0) {
                char c = (char)v;
                TM_TRY(tm__tk_buf_put(b, &c, 1));
            } else {
                TM_TRY(tm__tk_buf_put(b, a->p, a->n));
            }
            break;
        }
        case TK_DEC_FUSE: TM_TRY(tm__tk_buf_put(b, a->p, a->n)); break;
        case TK_DEC_STRIP: {
            size_t s = 0, e = a->n;
            bool   apply_start = !d->after_fuse || index == 0;
            for (int32_t i = 0; apply_start && i < d->start && d->n2 > 0; i++) {
                if (e - s >= d->n2 && memcmp(a->p + s, d->s2, d->n2) == 0)
                    s += d->n2;
                else
                    break;
            }
            for (int32_t i = 0; !d->after_fuse && i < d->stop && d->n2 > 0; i++) {
                if (e - s >= d->n2 && memcmp(a->p + e - d->n2, d->s2, d->n2) == 0)
                    e -= d->n2;
                else
                    break;
            }
            TM_TRY(tm__tk_buf_put(b, a->p + s, e - s));
            break;
        }
        case TK_DEC_WORDPIECE: {
            if (index > 0) {
                if (a->n >= d->n1 && memcmp(a->p, d->s1, d->n1) == 0) {
                    TM_TRY(tm__tk_buf_put(b, a->p + d->n1, a->n - d->n1));
                } else {
                    TM_TRY(tm__tk_buf_put(b, " ", 1));
                    TM_TRY(tm__tk_buf_put(b, a->p, a->n));
                }
            } else {
                TM_TRY(tm__tk_buf_put(b, a->p, a->n));
            }
            if (d->cleanup) {
                tk_buf sw = *a;
                *a = *b;
                *b = sw;
                TM_TRY(wp_cleanup(a, b));
                sw = *a;
                *a = *b;
                *b = sw;
            }
            break;
        }
        case TK_DEC_BPE: TM_TRY(replace_all(a->p, a->n, d->s1, d->n1, " ", 1, b)); break;
        }
        tk_buf sw = *a;
        *a = *b;
        *b = sw;
    }
    return tm__tk_buf_put(out, a->p, a->n);
}

static tm_status check_id(const tm_tokenizer *t, int32_t id) {
    if (id < 0 || id >= t->n_vocab)
        return tm_fail(TM_ERR_INVALID, "token id %d out of range [0, %d)", id, t->n_vocab);
    return TM_OK;
}

tm_status tm_tokenizer_decode(const tm_tokenizer *tok, const int32_t *ids, size_t n_ids,
                              bool skip_special, char **text, size_t *len) {
    *text = NULL;
    *len = 0;
    tk_buf    out = {0}, a = {0}, b = {0};
    tm_status st = TM_OK;
    size_t    index = 0;
    for (size_t i = 0; i < n_ids && st == TM_OK; i++) {
        if ((st = check_id(tok, ids[i])) != TM_OK)
            break;
        if (skip_special && (tok->attr[ids[i]] & TK_ATTR_SPECIAL))
            continue;
        st = dec_token(tok, ids[i], index++, &a, &b, &out);
    }
    if (st == TM_OK)
        st = tm__tk_buf_put(&out, "", 1);
    tm__tk_buf_free(&a);
    tm__tk_buf_free(&b);
    if (st != TM_OK) {
        tm__tk_buf_free(&out);
        return st;
    }
    *text = out.p;
    *len = out.n - 1;
    return TM_OK;
}

tm_status tm_tokenizer_token_to_piece(const tm_tokenizer *tok, int32_t id, char *buf, size_t cap,
                                      size_t *len) {
    *len = 0;
    TM_TRY(check_id(tok, id));
    tk_buf    out = {0}, a = {0}, b = {0};
    tm_status st = dec_token(tok, id, 1, &a, &b, &out);
    if (st == TM_OK) {
        *len = out.n;
        if (out.n > cap)
            st = tm_fail(TM_ERR_FULL, "token %d needs %zu bytes, buffer has %zu", id, out.n, cap);
        else if (out.n)
            memcpy(buf, out.p, out.n);
    }
    tm__tk_buf_free(&out);
    tm__tk_buf_free(&a);
    tm__tk_buf_free(&b);
    return st;
}

/* ---- streaming detokenizer -------------------------------------------------------------- */
struct tm_detokenizer {
    const tm_tokenizer *tok;
    bool                skip_special;
    size_t              index;   /* tokens decoded so far (first-token rules) */
    tk_buf              pending; /* decoded bytes not yet returned */
    tk_buf              out;     /* what the last call returned */
    tk_buf              a, b;
};

tm_status tm_detokenizer_init(const tm_tokenizer *tok, bool skip_special, tm_detokenizer **out) {
    *out = tm_calloc(1, sizeof **out);
    if (*out == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (detokenizer)");
    (*out)->tok = tok;
    (*out)->skip_special = skip_special;
    return TM_OK;
}

void tm_detokenizer_free(tm_detokenizer *d) {
    if (d == NULL)
        return;
    tm__tk_buf_free(&d->pending);
    tm__tk_buf_free(&d->out);
    tm__tk_buf_free(&d->a);
    tm__tk_buf_free(&d->b);
    tm_free(d);
}

void tm_detokenizer_reset(tm_detokenizer *d) {
    d->index = 0;
    d->pending.n = 0;
    d->out.n = 0;
}

void tm_detokenizer_continue(tm_detokenizer *d) {
    tm_detokenizer_reset(d);
    d->index = 1; /* dec_token's first-token rules apply at index 0 only */
}

/* True when p[0..n) (n >= 1) is a proper prefix of some valid UTF-8 sequence. */
static bool utf8_incomplete(const uint8_t *p, size_t n) {
    uint8_t c = p[0];
    size_t  need = c >= 0xC2 && c <= 0xDF   ? 2
                   : c >= 0xE0 && c <= 0xEF ? 3
                   : c >= 0xF0 && c <= 0xF4 ? 4
                                            : 0;
    if (need == 0 || n >= need)
        return false;
    for (size_t i = 1; i < n; i++) {
        uint8_t lo = 0x80, hi = 0xBF;
        if (i == 1) {
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
            else if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        }
        if (p[i] < lo || p[i] > hi)
            return false;
    }
    return true;
}

/* Moves complete characters from pending to out; invalid bytes become U+FFFD. */
static tm_status detok_drain(tm_detokenizer *d, bool final) {
    d->out.n = 0;
    const uint8_t *p = (const uint8_t *)d->pending.p;
    size_t         n = d->pending.n, i = 0;
    while (i < n) {
        size_t l = tm__utf8_valid_len(p + i, n - i);
        if (l > 0) {
            TM_TRY(tm__tk_buf_put(&d->out, p + i, l));
            i += l;
            continue;
        }
        if (!final && utf8_incomplete(p + i, n - i))
            break; /* wait for the rest of the character */
        TM_TRY(tm__tk_buf_put(&d->out, "\xEF\xBF\xBD", 3));
        i++;
        if (final)
            while (i < n && (p[i] & 0xC0) == 0x80 && !tm__utf8_valid_len(p + i, n - i))
                i++; /* one replacement per broken tail */
    }
    memmove(d->pending.p, d->pending.p + i, n - i);
    d->pending.n = n - i;
    return TM_OK;
}

tm_status tm_detokenizer_feed(tm_detokenizer *d, int32_t id, const char **bytes, size_t *len) {
    *bytes = "";
    *len = 0;
    TM_TRY(check_id(d->tok, id));
    if (!(d->skip_special && (d->tok->attr[id] & TK_ATTR_SPECIAL)))
        TM_TRY(dec_token(d->tok, id, d->index++, &d->a, &d->b, &d->pending));
    TM_TRY(detok_drain(d, false));
    *bytes = d->out.n ? d->out.p : "";
    *len = d->out.n;
    return TM_OK;
}

tm_status tm_detokenizer_flush(tm_detokenizer *d, const char **bytes, size_t *len) {
    TM_TRY(detok_drain(d, true));
    *bytes = d->out.n ? d->out.p : "";
    *len = d->out.n;
    d->index = 0;
    return TM_OK;
}

/* ---- lookups and info ---------------------------------------------------------------------- */
const char *tm_tokenizer_token_text(const tm_tokenizer *tok, int32_t id, size_t *len) {
    if (id < 0 || id >= tok->n_vocab)
        return NULL;
    if (len)
        *len = tok->text_len[id];
    return tm__tk_text(tok, id);
}

int32_t tm_tokenizer_token_id(const tm_tokenizer *tok, const char *text, size_t len) {
    return tm__tk_lookup(tok, text, len);
}

bool tm_tokenizer_is_special(const tm_tokenizer *tok, int32_t id) {
    return id >= 0 && id < tok->n_vocab && (tok->attr[id] & TK_ATTR_SPECIAL);
}

int32_t     tm_tokenizer_n_vocab(const tm_tokenizer *tok) { return tok->n_vocab; }
int32_t     tm_tokenizer_bos_id(const tm_tokenizer *tok) { return tok->bos_id; }
int32_t     tm_tokenizer_eos_id(const tm_tokenizer *tok) { return tok->eos_id; }
const char *tm_tokenizer_type_name(const tm_tokenizer *tok) { return tok->type_name; }

void tm_tokenizer_get_info(const tm_tokenizer *tok, tm_tokenizer_info *info) {
    *info = (tm_tokenizer_info){
        .type_name = tok->type_name,
        .source = tok->source_name,
        .normalizer = tok->norm_desc,
        .pre_tokenizer = tok->pre_desc,
        .decoder = tok->dec_desc,
        .n_vocab = tok->n_vocab,
        .n_merges = tok->merges.n,
        .n_added = tok->n_added,
        .bos_id = tok->bos_id,
        .eos_id = tok->eos_id,
        .unk_id = tok->unk_id,
        .pad_id = tok->pad_id,
        .add_bos = tok->add_bos,
        .add_eos = tok->add_eos,
    };
}

static tm_status put_fmt(tk_buf *b, const char *fmt, ...) TM_PRINTF_FMT(2, 3);
#include <stdarg.h>
static tm_status put_fmt(tk_buf *b, const char *fmt, ...) {
    char    tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return TM_OK;
    return tm__tk_buf_put(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

static tm_status put_tok(tk_buf *b, const tm_tokenizer *t, const char *label, int32_t id) {
    if (id < 0)
        return put_fmt(b, "  %-14s none\n", label);
    return put_fmt(b, "  %-14s %d '%.*s'\n", label, id,
                   (int)(t->text_len[id] > 64 ? 64 : t->text_len[id]), tm__tk_text(t, id));
}

tm_status tm_tokenizer_summary(const tm_tokenizer *tok, char **text) {
    *text = NULL;
    tk_buf    b = {0};
    tm_status st = put_fmt(&b,
                           "tokenizer:\n  %-14s %s\n  %-14s %s\n  %-14s %d\n  %-14s %d\n"
                           "  %-14s %s\n  %-14s %s\n  %-14s %s\n",
                           "model", tok->type_name, "source", tok->source_name, "vocab size",
                           tok->n_vocab, "merges", tok->merges.n, "normalizer", tok->norm_desc,
                           "pre-tokenizer", tok->pre_desc, "decoder", tok->dec_desc);
    if (st == TM_OK)
        st = put_tok(&b, tok, "bos", tok->bos_id);
    if (st == TM_OK)
        st = put_tok(&b, tok, "eos", tok->eos_id);
    if (st == TM_OK)
        st = put_tok(&b, tok, "unk", tok->unk_id);
    if (st == TM_OK)
        st = put_tok(&b, tok, "pad", tok->pad_id);
    int32_t n_special = 0;
    for (int32_t i = 0; i < tok->n_added; i++)
        n_special += tok->added[i].special;
    if (st == TM_OK)
        st = put_fmt(&b, "  %-14s %d (%d special)\n  %-14s %s\n  %-14s %s\n", "added tokens",
                     tok->n_added, n_special, "add_bos", tok->add_bos ? "true" : "false", "add_eos",
                     tok->add_eos ? "true" : "false");
    if (st == TM_OK)
        st = tm__tk_buf_put(&b, "", 1);
    if (st != TM_OK) {
        tm__tk_buf_free(&b);
        return st;
    }
    *text = b.p;
    return TM_OK;
}
