/*
 * tok_bpe.c - the two merge-based models.
 *
 * BPE (tokenizer.json "BPE", GGUF "gpt2"): a word starts as its characters (with
 * byte fallback to <0xXX> tokens or an unknown token, HF `BPE::merge_word`), then
 * the adjacent pair with the lowest merge rank is merged, leftmost first on ties,
 * until no pair has a merge (HF `Word::merge_all`). ignore_merges (Llama-3) maps a
 * word that is itself in the vocabulary straight to its id.
 *
 * SPM (GGUF "llama", llama2.c): SentencePiece-style merging over vocabulary
 * strings: the adjacent pair whose concatenation is a token with the highest
 * score merges first, leftmost on ties (llama.cpp `llm_tokenizer_spm`, llama2.c
 * `encode`); characters left that are not tokens fall back to byte tokens.
 *
 * DESIGN
 * ------
 * Both use a doubly linked symbol list and a binary heap of candidate merges, so
 * a word costs O(n log n). Results are cached per call (tk_bpe_work) by word
 * bytes: natural text repeats words, so a 3 MB text runs mostly from the cache.
 * The cache is per call, never shared, which keeps the tokenizer immutable.
 */
#include <string.h>

#include "model/tokenizer_int.h"

typedef struct sym {
    int32_t  id;
    int32_t  prev, next;
    uint32_t b, n; /* byte range in the word (SPM); n == 0: merged away */
} sym;

typedef struct cand {
    float    score; /* SPM: higher first */
    int32_t  rank;  /* BPE: lower first */
    int32_t  pos;   /* left symbol; lower first on ties */
    int32_t  new_id;
    uint32_t size; /* SPM: bytes of the merged text, to detect stale entries */
} cand;

typedef struct cache_ent {
    uint64_t h;
    size_t   key_off, ids_off;
    uint32_t key_len, n_ids; /* key_len == UINT32_MAX: empty slot */
} cache_ent;

struct tk_bpe_work {
    sym       *syms;
    size_t     n_syms, cap_syms;
    cand      *heap;
    size_t     n_heap, cap_heap;
    cache_ent *cache;
    size_t     cache_mask, cache_used;
    tk_buf     keys;
    tk_ids     ids;
    tk_ids     word; /* ids of the word being built */
};

#define CACHE_MAX_ENTRIES (1u << 20)

tm_status tm__tk_bpe_work_init(tk_bpe_work **w) {
    *w = tm_calloc(1, sizeof **w);
    return *w ? TM_OK : tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (bpe state)");
}

void tm__tk_bpe_work_free(tk_bpe_work *w) {
    if (w == NULL)
        return;
    tm_free(w->syms);
    tm_free(w->heap);
    tm_free(w->cache);
    tm__tk_buf_free(&w->keys);
    tm_free(w->ids.v);
    tm_free(w->word.v);
    tm_free(w);
}

static uint64_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (uint8_t)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static const cache_ent *cache_find(const tk_bpe_work *w, const char *s, size_t n, uint64_t h) {
    if (w->cache == NULL)
        return NULL;
    for (size_t i = h & w->cache_mask;; i = (i + 1) & w->cache_mask) {
        const cache_ent *e = &w->cache[i];
        if (e->key_len == UINT32_MAX)
            return NULL;
        if (e->h == h && e->key_len == n && memcmp(w->keys.p + e->key_off, s, n) == 0)
            return e;
    }
}

static tm_status cache_grow(tk_bpe_work *w) {
    size_t     cap = w->cache ? (w->cache_mask + 1) * 2 : 4096;
    cache_ent *c = tm_malloc(cap * sizeof *c);
    if (c == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (word cache)");
    for (size_t i = 0; i < cap; i++)
        c[i].key_len = UINT32_MAX;
    if (w->cache) {
        for (size_t i = 0; i <= w->cache_mask; i++) {
            cache_ent e = w->cache[i];
            if (e.key_len == UINT32_MAX)
                continue;
            size_t j = e.h & (cap - 1);
            while (c[j].key_len != UINT32_MAX)
                j = (j + 1) & (cap - 1);
            c[j] = e;
        }
        tm_free(w->cache);
    }
    w->cache = c;
    w->cache_mask = cap - 1;
    return TM_OK;
}

static tm_status cache_put(tk_bpe_work *w, const char *s, size_t n, uint64_t h, const int32_t *ids,
                           size_t n_ids) {
    if (w->cache_used >= CACHE_MAX_ENTRIES || n > 256)
        return TM_OK; /* bounded: long words and huge vocabularies of words go uncached */
    if (w->cache == NULL || (w->cache_used + 1) * 2 > w->cache_mask + 1)
        TM_TRY(cache_grow(w));
    cache_ent e = {.h = h,
                   .key_off = w->keys.n,
                   .key_len = (uint32_t)n,
                   .ids_off = w->ids.n,
                   .n_ids = (uint32_t)n_ids};
    TM_TRY(tm__tk_buf_put(&w->keys, s, n));
    for (size_t i = 0; i < n_ids; i++)
        TM_TRY(tm__tk_ids_push(&w->ids, ids[i]));
    size_t j = h & w->cache_mask;
    while (w->cache[j].key_len != UINT32_MAX)
        j = (j + 1) & w->cache_mask;
    w->cache[j] = e;
    w->cache_used++;
    return TM_OK;
}

static tm_status sym_push(tk_bpe_work *w, int32_t id, uint32_t b, uint32_t n) {
    if (w->n_syms == w->cap_syms) {
        size_t cap = w->cap_syms ? w->cap_syms * 2 : 64;
        sym   *v = tm_realloc(w->syms, cap * sizeof *v);
        if (v == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (symbols)");
        w->syms = v;
        w->cap_syms = cap;
    }
    int32_t i = (int32_t)w->n_syms;
    w->syms[i] = (sym){id, i - 1, -1, b, n};
    if (i > 0)
        w->syms[i - 1].next = i;
    w->n_syms++;
    return TM_OK;
}

/* Heap order: for BPE lower rank first; for SPM higher score first; then lower pos. */
static bool cand_before(const cand *a, const cand *b, bool spm) {
    if (spm) {
        if (a->score != b->score)
            return a->score > b->score;
    } else if (a->rank != b->rank) {
        return a->rank < b->rank;
    }
    return a->pos < b->pos;
}

static tm_status heap_push(tk_bpe_work *w, cand c, bool spm) {
    if (w->n_heap == w->cap_heap) {
        size_t cap = w->cap_heap ? w->cap_heap * 2 : 64;
        cand  *v = tm_realloc(w->heap, cap * sizeof *v);
        if (v == NULL)
            return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (merge queue)");
        w->heap = v;
        w->cap_heap = cap;
    }
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_before(&c, &w->heap[p], spm))
            break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = c;
    return TM_OK;
}

static cand heap_pop(tk_bpe_work *w, bool spm) {
    cand   top = w->heap[0];
    cand   last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t      l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < n && cand_before(&w->heap[l], best, spm)) {
            m = l;
            best = &w->heap[l];
        }
        if (r < n && cand_before(&w->heap[r], best, spm))
            m = r;
        if (m == i)
            break;
        w->heap[i] = w->heap[m];
        i = m;
    }
    if (n > 0)
        w->heap[i] = last;
    return top;
}

/* ---- BPE -------------------------------------------------------------------- */
static tm_status bpe_try_pair(const tm_tokenizer *t, tk_bpe_work *w, int32_t left) {
    if (left < 0)
        return TM_OK;
    int32_t right = w->syms[left].next;
    if (right < 0)
        return TM_OK;
    const tk_merge *m = tm__tk_merges_find(&t->merges, w->syms[left].id, w->syms[right].id);
    if (m == NULL)
        return TM_OK;
    return heap_push(w, (cand){.rank = m->rank, .pos = left, .new_id = m->new_id}, false);
}

static tm_status bpe_initial(const tm_tokenizer *t, tk_bpe_work *w, const char *s, size_t n) {
    const uint8_t *p = (const uint8_t *)s;
    char           tmp[512];
    int32_t        unk = -1;
    uint32_t       unk_len = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t   l = tm__utf8_decode(p + i, n - i, &cp);
        bool     first = i == 0, last = i + l == n;
        size_t   k = 0;
        /* A prefix or suffix makes the lookup key longer than the character. */
        if (t->cont_prefix_len + l + t->eow_suffix_len > sizeof tmp)
            return tm_fail(TM_ERR_INVALID, "tokenizer: subword prefix/suffix too long");
        if (!first && t->cont_prefix_len) {
            memcpy(tmp, t->cont_prefix, t->cont_prefix_len);
            k = t->cont_prefix_len;
        }
        memcpy(tmp + k, s + i, l);
        k += l;
        if (last && t->eow_suffix_len) {
            memcpy(tmp + k, t->eow_suffix, t->eow_suffix_len);
            k += t->eow_suffix_len;
        }
        int32_t id = tm__tk_lookup(t, tmp, k);
        if (id >= 0) {
            if (unk >= 0) {
                TM_TRY(sym_push(w, unk, 0, unk_len));
                unk = -1;
            }
            TM_TRY(sym_push(w, id, (uint32_t)i, (uint32_t)l));
        } else {
            bool done = false;
            if (t->byte_fallback) {
                bool all = true;
                for (size_t j = 0; j < k; j++)
                    all = all && t->byte_ids[(uint8_t)tmp[j]] >= 0;
                if (all) {
                    for (size_t j = 0; j < k; j++)
                        TM_TRY(sym_push(w, t->byte_ids[(uint8_t)tmp[j]], (uint32_t)i, 1));
                    done = true;
                }
            }
            if (!done && t->unk_id >= 0) {
                if (unk >= 0 && t->fuse_unk) {
                    unk_len += (uint32_t)l;
                } else {
                    if (unk >= 0)
                        TM_TRY(sym_push(w, unk, 0, unk_len));
                    unk = t->unk_id;
                    unk_len = (uint32_t)l;
                }
            }
            /* Neither: HF drops the character. */
        }
        i += l;
    }
    if (unk >= 0)
        TM_TRY(sym_push(w, unk, 0, unk_len));
    return TM_OK;
}

static tm_status bpe_word(const tm_tokenizer *t, tk_bpe_work *w, const char *s, size_t n) {
    w->n_syms = 0;
    w->n_heap = 0;
    w->word.n = 0;
    TM_TRY(bpe_initial(t, w, s, n));
    for (int32_t i = 0; i + 1 < (int32_t)w->n_syms; i++)
        TM_TRY(bpe_try_pair(t, w, i));
    while (w->n_heap > 0) {
        cand c = heap_pop(w, false);
        sym *a = &w->syms[c.pos];
        if (a->n == 0 || a->next < 0)
            continue;
        sym            *b = &w->syms[a->next];
        const tk_merge *m = tm__tk_merges_find(&t->merges, a->id, b->id);
        if (m == NULL || m->new_id != c.new_id)
            continue; /* stale entry */
        a->id = c.new_id;
        a->n += b->n;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0)
            w->syms[b->next].prev = c.pos;
        TM_TRY(bpe_try_pair(t, w, a->prev));
        TM_TRY(bpe_try_pair(t, w, c.pos));
    }
    for (int32_t i = w->n_syms ? 0 : -1; i >= 0; i = w->syms[i].next)
        TM_TRY(tm__tk_ids_push(&w->word, w->syms[i].id));
    return TM_OK;
}

tm_status tm__tk_bpe_piece(const tm_tokenizer *t, tk_bpe_work *w, const char *s, size_t n,
                           tk_ids *out) {
    if (n == 0)
        return TM_OK;
    if (t->ignore_merges) {
        int32_t id = tm__tk_lookup(t, s, n);
        if (id >= 0)
            return tm__tk_ids_push(out, id);
    }
    uint64_t         h = hash_bytes(s, n);
    const cache_ent *e = cache_find(w, s, n, h);
    if (e != NULL) {
        for (uint32_t i = 0; i < e->n_ids; i++)
            TM_TRY(tm__tk_ids_push(out, w->ids.v[e->ids_off + i]));
        return TM_OK;
    }
    TM_TRY(bpe_word(t, w, s, n));
    for (size_t i = 0; i < w->word.n; i++)
        TM_TRY(tm__tk_ids_push(out, w->word.v[i]));
    return cache_put(w, s, n, h, w->word.v, w->word.n);
}

/* ---- SPM --------------------------------------------------------------------- */
static tm_status spm_try_pair(const tm_tokenizer *t, tk_bpe_work *w, const char *s, int32_t left) {
    if (left < 0)
        return TM_OK;
    int32_t right = w->syms[left].next;
    if (right < 0)
        return TM_OK;
    const sym *a = &w->syms[left], *b = &w->syms[right];
    int32_t    id = tm__tk_lookup(t, s + a->b, a->n + b->n);
    if (id < 0)
        return TM_OK;
    return heap_push(w,
                     (cand){.score = t->scores ? t->scores[id] : 0.0f,
                            .pos = left,
                            .new_id = id,
                            .size = a->n + b->n},
                     true);
}

static tm_status spm_word(const tm_tokenizer *t, tk_bpe_work *w, const char *s, size_t n) {
    w->n_syms = 0;
    w->n_heap = 0;
    w->word.n = 0;
    const uint8_t *p = (const uint8_t *)s;
    for (size_t i = 0; i < n;) {
        size_t l = tm__utf8_valid_len(p + i, n - i);
        if (l == 0)
            l = 1;
        TM_TRY(sym_push(w, -1, (uint32_t)i, (uint32_t)l));
        i += l;
    }
    for (int32_t i = 0; i + 1 < (int32_t)w->n_syms; i++)
        TM_TRY(spm_try_pair(t, w, s, i));
    while (w->n_heap > 0) {
        cand c = heap_pop(w, true);
        sym *a = &w->syms[c.pos];
        if (a->n == 0 || a->next < 0)
            continue;
        sym *b = &w->syms[a->next];
        if (b->n == 0 || a->n + b->n != c.size)
            continue; /* one side changed since the entry was queued */
        a->n += b->n;
        a->id = c.new_id;
        b->n = 0;
        a->next = b->next;
        if (b->next >= 0)
            w->syms[b->next].prev = c.pos;
        TM_TRY(spm_try_pair(t, w, s, a->prev));
        TM_TRY(spm_try_pair(t, w, s, c.pos));
    }
    for (int32_t i = w->n_syms ? 0 : -1; i >= 0; i = w->syms[i].next) {
        const sym *a = &w->syms[i];
        int32_t    id = a->id >= 0 ? a->id : tm__tk_lookup(t, s + a->b, a->n);
        if (id >= 0) {
            TM_TRY(tm__tk_ids_push(&w->word, id));
            continue;
        }
        /* Not a token: its bytes as <0xXX> tokens, else the unknown token. */
        for (uint32_t j = 0; j < a->n; j++) {
            int32_t bid = t->byte_ids[(uint8_t)s[a->b + j]];
            if (bid < 0)
                bid = t->unk_id;
            if (bid >= 0)
                TM_TRY(tm__tk_ids_push(&w->word, bid));
        }
    }
    return TM_OK;
}

tm_status tm__tk_spm_piece(const tm_tokenizer *t, tk_bpe_work *w, const char *s, size_t n,
                           tk_ids *out) {
    if (n == 0)
        return TM_OK;
    /* SPM merges across the whole segment (no pre-tokenizer), so cache only short
     * segments; long ones are merged directly. */
    uint64_t         h = hash_bytes(s, n);
    const cache_ent *e = n <= 256 ? cache_find(w, s, n, h) : NULL;
    if (e != NULL) {
        for (uint32_t i = 0; i < e->n_ids; i++)
            TM_TRY(tm__tk_ids_push(out, w->ids.v[e->ids_off + i]));
        return TM_OK;
    }
    TM_TRY(spm_word(t, w, s, n));
    for (size_t i = 0; i < w->word.n; i++)
        TM_TRY(tm__tk_ids_push(out, w->word.v[i]));
    return cache_put(w, s, n, h, w->word.v, w->word.n);
}
