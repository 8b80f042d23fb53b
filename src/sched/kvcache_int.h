/*
 * kvcache_int.h - private state of the paged KV block manager, shared by
 * kvcache.c (pool, block tables, refcounts) and prefix_cache.c (hash table,
 * LRU of unreferenced cached blocks).
 */
#ifndef TM_KVCACHE_INT_H
#define TM_KVCACHE_INT_H

#include <stdbool.h>

#include "tm/tm_kvcache.h"

typedef struct kv_block {
    int32_t  ref;        /* sequences holding the block */
    bool     hashed;     /* registered in the prefix cache */
    uint64_t hash;       /* chained hash (when hashed) */
    uint64_t parent;     /* hash of the previous block, or the salt */
    int32_t  hnext;      /* next block in the same hash bucket, -1 = end */
    int32_t  prev, next; /* LRU links while ref == 0 && hashed; -1 = none */
} kv_block;

struct tm_kvcache {
    tm_kvcache_params p;
    int32_t           max_blk;    /* blocks per sequence table */
    kv_block         *blocks;     /* [n_blocks] */
    int32_t          *tokens;     /* [n_blocks * block_size]: tokens of hashed blocks */
    int32_t          *free_stack; /* [n_blocks] free (unhashed, ref 0) block ids */
    int32_t           n_free;
    int32_t           lru_head, lru_tail; /* oldest .. newest cached unreferenced block */
    int32_t           n_lru;
    int32_t          *buckets;   /* [n_buckets] head block ids, -1 = empty */
    int32_t           n_buckets; /* power of two */
    int32_t          *tables;    /* [n_seq_max * max_blk] physical block ids, -1 = none */
    int32_t          *len;       /* [n_seq_max] positions held */
};

/* kvcache.c */
int32_t kv_alloc(tm_kvcache *kv);            /* a block with ref 1, or -1 when none is free */
void    kv_unref(tm_kvcache *kv, int32_t b); /* unreferenced: cached (hashed) or free */

/* prefix_cache.c */
void kv_lru_remove(tm_kvcache *kv, int32_t b);
void kv_lru_push(tm_kvcache *kv, int32_t b);
void kv_unhash(tm_kvcache *kv, int32_t b);

#endif /* TM_KVCACHE_INT_H */
