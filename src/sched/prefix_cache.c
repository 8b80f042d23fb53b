/*
 * prefix_cache.c - automatic prefix caching over the paged KV pool
 * (tm_kvcache.h): chained block hashes, a hash table of registered blocks and
 * an LRU list of the unreferenced ones.
 *
 * DESIGN
 * - A full block of a prompt is registered under h = XXH64(its tokens, seed =
 *   the previous block's hash); the first block's seed is the salt. So a hash
 *   names a whole prefix, not just one block's tokens (vLLM's scheme).
 * - The table is chained through kv_block.hnext with n_buckets >= n_blocks
 *   heads: no allocation, O(1) expected lookups.
 * - A hit checks hash, parent hash and the stored tokens: the answer never
 *   depends on the hash being collision-free.
 * - An unreferenced registered block stays on the LRU list (newest at the
 *   tail) until kv_alloc needs it; then it is unhashed and reused.
 */
#include <string.h>
#include <xxhash.h>

#include "sched/kvcache_int.h"

uint64_t tm_kvcache_hash_block(uint64_t seed, const int32_t *tokens, int32_t n) {
    return (uint64_t)XXH64(tokens, (size_t)n * sizeof *tokens, (XXH64_hash_t)seed);
}

void kv_lru_remove(tm_kvcache *kv, int32_t b) {
    kv_block *k = &kv->blocks[b];
    if (k->prev >= 0)
        kv->blocks[k->prev].next = k->next;
    else
        kv->lru_head = k->next;
    if (k->next >= 0)
        kv->blocks[k->next].prev = k->prev;
    else
        kv->lru_tail = k->prev;
    k->prev = k->next = -1;
    kv->n_lru--;
}

void kv_lru_push(tm_kvcache *kv, int32_t b) {
    kv_block *k = &kv->blocks[b];
    k->prev = kv->lru_tail;
    k->next = -1;
    if (kv->lru_tail >= 0)
        kv->blocks[kv->lru_tail].next = b;
    else
        kv->lru_head = b;
    kv->lru_tail = b;
    kv->n_lru++;
}

static int32_t *kv_bucket(tm_kvcache *kv, uint64_t h) {
    return &kv->buckets[h & (uint64_t)(kv->n_buckets - 1)];
}

void kv_unhash(tm_kvcache *kv, int32_t b) {
    kv_block *k = &kv->blocks[b];
    TM_ASSERT(k->hashed);
    for (int32_t *link = kv_bucket(kv, k->hash); *link >= 0; link = &kv->blocks[*link].hnext) {
        if (*link == b) {
            *link = k->hnext;
            break;
        }
    }
    k->hnext = -1;
    k->hashed = false;
}

static const int32_t *kv_block_tokens(const tm_kvcache *kv, int32_t b) {
    return kv->tokens + (size_t)b * (size_t)kv->p.block_size;
}

/* The registered block holding exactly this prefix block, or -1. */
static int32_t kv_lookup(tm_kvcache *kv, uint64_t h, uint64_t parent, const int32_t *tokens) {
    const size_t bytes = (size_t)kv->p.block_size * sizeof *tokens;
    for (int32_t b = *kv_bucket(kv, h); b >= 0; b = kv->blocks[b].hnext) {
        const kv_block *k = &kv->blocks[b];
        if (k->hash == h && k->parent == parent &&
            memcmp(kv_block_tokens(kv, b), tokens, bytes) == 0)
            return b;
    }
    return -1;
}

void tm_kvcache_seq_register(tm_kvcache *kv, int32_t seq, const int32_t *tokens, int32_t n,
                             uint64_t salt) {
    if (seq < 0 || seq >= kv->p.n_seq_max)
        return;
    const int32_t  bs = kv->p.block_size;
    const int32_t  full = (n < kv->len[seq] ? n : kv->len[seq]) / bs;
    const int32_t *tab = tm_kvcache_seq_table(kv, seq);
    uint64_t       parent = salt;
    for (int32_t i = 0; i < full; i++) {
        const int32_t *tk = tokens + (size_t)i * (size_t)bs;
        const uint64_t h = tm_kvcache_hash_block(parent, tk, bs);
        kv_block      *k = &kv->blocks[tab[i]];
        if (!k->hashed && kv_lookup(kv, h, parent, tk) < 0) {
            k->hashed = true;
            k->hash = h;
            k->parent = parent;
            memcpy(kv->tokens + (size_t)tab[i] * (size_t)bs, tk, (size_t)bs * sizeof *tk);
            int32_t *head = kv_bucket(kv, h);
            k->hnext = *head;
            *head = tab[i];
        }
        parent = h;
    }
}

int32_t tm_kvcache_seq_attach_prefix(tm_kvcache *kv, int32_t seq, const int32_t *tokens, int32_t n,
                                     uint64_t salt) {
    if (seq < 0 || seq >= kv->p.n_seq_max || kv->len[seq] != 0 || n <= 0)
        return 0;
    const int32_t bs = kv->p.block_size;
    int32_t       full = n / bs;
    if (full > kv->max_blk)
        full = kv->max_blk;
    int32_t *tab = kv->tables + (size_t)seq * (size_t)kv->max_blk;
    uint64_t parent = salt;
    int32_t  i = 0;
    for (; i < full; i++) {
        const int32_t *tk = tokens + (size_t)i * (size_t)bs;
        const uint64_t h = tm_kvcache_hash_block(parent, tk, bs);
        const int32_t  b = kv_lookup(kv, h, parent, tk);
        if (b < 0)
            break;
        if (kv->blocks[b].ref++ == 0)
            kv_lru_remove(kv, b); /* revived: no longer evictable */
        tab[i] = b;
        parent = h;
    }
    kv->len[seq] = i * bs;
    return i * bs;
}

int32_t tm_kvcache_seq_attach_partial(tm_kvcache *kv, int32_t seq, const int32_t *tokens, int32_t n,
                                      uint64_t salt, int32_t *cow_src, int32_t *cow_dst) {
    *cow_src = *cow_dst = -1;
    if (seq < 0 || seq >= kv->p.n_seq_max)
        return 0;
    const int32_t bs = kv->p.block_size, len = kv->len[seq], full = len / bs;
    if (len % bs != 0 || n <= len || full >= kv->max_blk)
        return 0;
    uint64_t parent = salt; /* the hash naming tokens[0 .. len) */
    for (int32_t i = 0; i < full; i++)
        parent = tm_kvcache_hash_block(parent, tokens + (size_t)i * (size_t)bs, bs);
    /* a whole matching block is tm_kvcache_seq_attach_prefix's: shared, not copied */
    const int32_t  lim = n - len < bs - 1 ? n - len : bs - 1;
    const int32_t *want = tokens + len;
    int32_t        best = -1, best_m = 0;
    for (int32_t b = 0; b < kv->p.n_blocks; b++) {
        const kv_block *k = &kv->blocks[b];
        if (!k->hashed || k->parent != parent)
            continue;
        const int32_t *have = kv_block_tokens(kv, b);
        int32_t        m = 0;
        while (m < lim && have[m] == want[m])
            m++;
        if (m > best_m) {
            best = b;
            best_m = m;
        }
    }
    if (best < 0)
        return 0;
    if (kv->blocks[best].ref++ == 0) /* held until the rows are copied */
        kv_lru_remove(kv, best);
    const int32_t d = kv_alloc(kv);
    if (d < 0) {
        kv_unref(kv, best);
        return 0;
    }
    kv->tables[(size_t)seq * (size_t)kv->max_blk + (size_t)full] = d;
    kv->len[seq] = len + best_m;
    *cow_src = best;
    *cow_dst = d;
    return best_m;
}
