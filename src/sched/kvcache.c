/*
 * kvcache.c - the paged KV block manager: block pool, per-sequence block
 * tables and reference counts (tm_kvcache.h). The prefix cache's hash table
 * and LRU are in prefix_cache.c.
 *
 * DESIGN
 * - Everything is reserved by tm_kvcache_init: block records, the free stack,
 *   the hash buckets, every sequence's table (max_blk entries). Later calls
 *   only move block ids between lists.
 * - Invariants (checked by tests/unit/test_kvcache.c through the public API):
 *   n_free + n_lru + (blocks with ref > 0) == n_blocks; a block is on the free
 *   stack iff ref == 0 && !hashed, on the LRU iff ref == 0 && hashed; a
 *   block's ref equals the number of table entries naming it.
 * - Sequences grow only at their end; positions [0, len) of seq s live in
 *   blocks tables[s][0 .. ceil(len / bs)).
 */
#include <string.h>

#include "sched/kvcache_int.h"

tm_status tm_kvcache_init(const tm_kvcache_params *params, tm_kvcache **out) {
    *out = NULL;
    const tm_kvcache_params p = *params;
    if (p.n_blocks < 1 || p.n_blocks > (1 << 24) || p.block_size < 1 || p.block_size > 1024 ||
        (p.block_size & (p.block_size - 1)) != 0 || p.n_seq_max < 1 || p.n_seq_max > 4096 ||
        p.n_pos_max < 1 || p.n_pos_max > (1 << 24))
        return tm_fail(TM_ERR_INVALID,
                       "kvcache: %d blocks of %d positions, %d sequences of %d positions: out "
                       "of range (block size a power of two <= 1024)",
                       p.n_blocks, p.block_size, p.n_seq_max, p.n_pos_max);
    tm_kvcache *kv = tm_calloc(1, sizeof *kv);
    if (kv == NULL)
        return tm_fail(TM_ERR_NOMEM, "kvcache");
    kv->p = p;
    kv->max_blk = (p.n_pos_max + p.block_size - 1) / p.block_size;
    kv->n_buckets = 1;
    while (kv->n_buckets < p.n_blocks)
        kv->n_buckets *= 2;
    size_t n_tok, n_tab;
    bool   ok = tm_size_mul((size_t)p.n_blocks, (size_t)p.block_size, &n_tok) &&
              tm_size_mul((size_t)p.n_seq_max, (size_t)kv->max_blk, &n_tab);
    if (ok) {
        kv->blocks = tm_calloc((size_t)p.n_blocks, sizeof *kv->blocks);
        kv->tokens = tm_calloc(n_tok, sizeof *kv->tokens);
        kv->free_stack = tm_calloc((size_t)p.n_blocks, sizeof *kv->free_stack);
        kv->buckets = tm_calloc((size_t)kv->n_buckets, sizeof *kv->buckets);
        kv->tables = tm_calloc(n_tab, sizeof *kv->tables);
        kv->len = tm_calloc((size_t)p.n_seq_max, sizeof *kv->len);
    }
    if (!ok || kv->blocks == NULL || kv->tokens == NULL || kv->free_stack == NULL ||
        kv->buckets == NULL || kv->tables == NULL || kv->len == NULL) {
        tm_kvcache_free(kv);
        return tm_fail(TM_ERR_NOMEM, "kvcache: %d blocks", p.n_blocks);
    }
    /* Free stack top = lowest id, so a fresh pool hands out blocks 0, 1, 2, ... */
    for (int32_t i = 0; i < p.n_blocks; i++) {
        kv->blocks[i] = (kv_block){.hnext = -1, .prev = -1, .next = -1};
        kv->free_stack[i] = p.n_blocks - 1 - i;
    }
    kv->n_free = p.n_blocks;
    kv->lru_head = kv->lru_tail = -1;
    for (int32_t i = 0; i < kv->n_buckets; i++)
        kv->buckets[i] = -1;
    for (size_t i = 0; i < n_tab; i++)
        kv->tables[i] = -1;
    *out = kv;
    return TM_OK;
}

void tm_kvcache_free(tm_kvcache *kv) {
    if (kv == NULL)
        return;
    tm_free(kv->blocks);
    tm_free(kv->tokens);
    tm_free(kv->free_stack);
    tm_free(kv->buckets);
    tm_free(kv->tables);
    tm_free(kv->len);
    tm_free(kv);
}

int32_t tm_kvcache_block_size(const tm_kvcache *kv) { return kv->p.block_size; }
int32_t tm_kvcache_n_blocks(const tm_kvcache *kv) { return kv->p.n_blocks; }
int32_t tm_kvcache_max_blocks(const tm_kvcache *kv) { return kv->max_blk; }
int32_t tm_kvcache_n_free(const tm_kvcache *kv) { return kv->n_free + kv->n_lru; }
int32_t tm_kvcache_n_cached_free(const tm_kvcache *kv) { return kv->n_lru; }

static bool kv_seq_ok(const tm_kvcache *kv, int32_t seq) {
    return seq >= 0 && seq < kv->p.n_seq_max;
}

int32_t tm_kvcache_seq_len(const tm_kvcache *kv, int32_t seq) {
    return kv_seq_ok(kv, seq) ? kv->len[seq] : 0;
}

const int32_t *tm_kvcache_seq_table(const tm_kvcache *kv, int32_t seq) {
    TM_ASSERT(kv_seq_ok(kv, seq));
    return kv->tables + (size_t)seq * (size_t)kv->max_blk;
}

static int32_t *kv_table(tm_kvcache *kv, int32_t seq) {
    return kv->tables + (size_t)seq * (size_t)kv->max_blk;
}

static int32_t kv_n_blk(const tm_kvcache *kv, int32_t len) {
    return (len + kv->p.block_size - 1) / kv->p.block_size;
}

int32_t tm_kvcache_blocks_needed(const tm_kvcache *kv, int32_t seq, int32_t n) {
    if (!kv_seq_ok(kv, seq) || n <= 0)
        return 0;
    return kv_n_blk(kv, kv->len[seq] + n) - kv_n_blk(kv, kv->len[seq]);
}

/* Takes a block with ref 1: the free stack first, else evicts the oldest cached one. */
int32_t kv_alloc(tm_kvcache *kv) {
    int32_t b;
    if (kv->n_free > 0) {
        b = kv->free_stack[--kv->n_free];
    } else if (kv->lru_head >= 0) {
        b = kv->lru_head;
        kv_lru_remove(kv, b);
        kv_unhash(kv, b);
    } else {
        return -1;
    }
    kv->blocks[b].ref = 1;
    return b;
}

/* Drops one reference; an unreferenced block becomes cached (hashed) or free. */
void kv_unref(tm_kvcache *kv, int32_t b) {
    kv_block *k = &kv->blocks[b];
    TM_ASSERT(k->ref > 0);
    if (--k->ref > 0)
        return;
    if (k->hashed)
        kv_lru_push(kv, b);
    else
        kv->free_stack[kv->n_free++] = b;
}

tm_status tm_kvcache_seq_append(tm_kvcache *kv, int32_t seq, int32_t n) {
    if (!kv_seq_ok(kv, seq) || n < 0)
        return tm_fail(TM_ERR_INVALID, "kvcache: sequence %d / %d positions", seq, n);
    if (n > kv->p.n_pos_max - kv->len[seq])
        return tm_fail(TM_ERR_FULL, "kvcache: sequence %d full (%d + %d > %d positions)", seq,
                       kv->len[seq], n, kv->p.n_pos_max);
    const int32_t have = kv_n_blk(kv, kv->len[seq]), need = kv_n_blk(kv, kv->len[seq] + n);
    if (need - have > tm_kvcache_n_free(kv))
        return tm_fail(TM_ERR_FULL, "kvcache: %d blocks needed, %d free", need - have,
                       tm_kvcache_n_free(kv));
    int32_t *tab = kv_table(kv, seq);
    for (int32_t i = have; i < need; i++) {
        tab[i] = kv_alloc(kv);
        TM_ASSERT(tab[i] >= 0); /* counted above */
    }
    kv->len[seq] += n;
    return TM_OK;
}

void tm_kvcache_seq_remove(tm_kvcache *kv, int32_t seq) {
    if (!kv_seq_ok(kv, seq))
        return;
    int32_t *tab = kv_table(kv, seq);
    /* Release from the last block to the first: with an LRU, a prompt's later
     * blocks are then evicted before its earlier ones, which keeps a shorter
     * reusable prefix alive longer. */
    for (int32_t i = kv_n_blk(kv, kv->len[seq]) - 1; i >= 0; i--) {
        kv_unref(kv, tab[i]);
        tab[i] = -1;
    }
    kv->len[seq] = 0;
}

tm_status tm_kvcache_seq_truncate(tm_kvcache *kv, int32_t seq, int32_t n, int32_t *cow_src,
                                  int32_t *cow_dst) {
    *cow_src = *cow_dst = -1;
    if (!kv_seq_ok(kv, seq) || n < 0 || n > kv->len[seq])
        return tm_fail(TM_ERR_INVALID, "truncate: %d positions requested, sequence %d holds %d", n,
                       seq, tm_kvcache_seq_len(kv, seq));
    int32_t      *tab = kv_table(kv, seq);
    const int32_t bs = kv->p.block_size, keep = kv_n_blk(kv, n);
    if (n % bs != 0) {
        /* The tail block will be written again: it must be private and unhashed. */
        const int32_t b = tab[keep - 1];
        if (kv->blocks[b].ref > 1) {
            const int32_t nb = kv_alloc(kv);
            if (nb < 0)
                return tm_fail(TM_ERR_FULL, "truncate: no free block for the copy");
            kv->blocks[b].ref--; /* still referenced by others: stays in use */
            tab[keep - 1] = nb;
            *cow_src = b;
            *cow_dst = nb;
        } else if (kv->blocks[b].hashed) {
            kv_unhash(kv, b);
        }
    }
    for (int32_t i = kv_n_blk(kv, kv->len[seq]) - 1; i >= keep; i--) {
        kv_unref(kv, tab[i]);
        tab[i] = -1;
    }
    kv->len[seq] = n;
    return TM_OK;
}

void tm_kvcache_block_release(tm_kvcache *kv, int32_t b) {
    if (b >= 0 && b < kv->p.n_blocks)
        kv_unref(kv, b);
}

tm_status tm_kvcache_seq_copy_prefix(tm_kvcache *kv, int32_t src, int32_t dst, int32_t n,
                                     int32_t *cow_src, int32_t *cow_dst) {
    *cow_src = *cow_dst = -1;
    if (!kv_seq_ok(kv, src) || !kv_seq_ok(kv, dst) || src == dst || kv->len[dst] != 0 || n < 0 ||
        n > kv->len[src])
        return tm_fail(TM_ERR_INVALID, "copy prefix: sequences %d -> %d, %d positions", src, dst,
                       n);
    const int32_t bs = kv->p.block_size, full = n / bs;
    int32_t      *ts = kv_table(kv, src), *td = kv_table(kv, dst);
    if (n % bs != 0) {
        const int32_t nb = kv_alloc(kv);
        if (nb < 0)
            return tm_fail(TM_ERR_FULL, "copy prefix: no free block for the partial block");
        td[full] = nb;
        *cow_src = ts[full];
        *cow_dst = nb;
    }
    for (int32_t i = 0; i < full; i++) {
        td[i] = ts[i];
        kv->blocks[ts[i]].ref++;
    }
    kv->len[dst] = n;
    return TM_OK;
}
