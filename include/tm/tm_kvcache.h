/*
 * tm_kvcache.h - the paged KV block manager: a fixed pool of blocks of
 * block_size positions, per-sequence block tables, reference counts, and the
 * automatic prefix cache (chained block hashes, LRU eviction).
 *
 * This module only does the bookkeeping (which physical block holds which
 * positions of which sequence); the K/V rows themselves live in the tm_ctx
 * that owns the manager (tm_model.h: tm_ctx_params.n_seq_max, n_kv_blocks),
 * row b * block_size + i of every layer's cache holding slot i of block b.
 *
 *     tm_kvcache_params kp = {.n_blocks = 256, .block_size = 16, .n_seq_max = 4,
 *                             .n_pos_max = 2048};
 *     tm_kvcache *kv = NULL;
 *     tm_kvcache_init(&kp, &kv);
 *     int32_t hit = tm_kvcache_seq_attach_prefix(kv, 0, prompt, n - 1, 0); // cached positions
 *     tm_kvcache_seq_append(kv, 0, n - hit);          // blocks for the rest (TM_ERR_FULL)
 *     ... compute K/V rows of positions hit .. n - 1 ...
 *     tm_kvcache_seq_register(kv, 0, prompt, n, 0);   // full blocks become reusable
 *     tm_kvcache_seq_remove(kv, 0);                   // blocks back (cached ones stay, LRU)
 *
 * Block states: free (ref 0, no hash: on the free stack), in use (ref >= 1,
 * maybe hashed), cached (ref 0, hashed: on the LRU list, revived by a prefix
 * hit, evicted oldest first when the free stack is empty). Only full blocks
 * are hashed and shared, and a sequence only writes at positions >= its length,
 * so a shared block is never written (truncation into one asks the caller
 * for a copy: copy-on-write at block granularity).
 *
 * Hashes: h(block i) = XXH64(tokens of block i, seed = h(block i - 1)), seed of
 * block 0 = salt (e.g. a LoRA adapter id; 0 for the base model). A hit also
 * compares the parent hash and the block's tokens, so a 64-bit collision cannot
 * hand a sequence the wrong rows.
 *
 * No call allocates after tm_kvcache_init (measure, reserve, run).
 *
 * Threads: not thread-safe; the thread that owns the tm_ctx (the scheduler)
 * makes every call.
 */
#ifndef TM_KVCACHE_H
#define TM_KVCACHE_H

#include <stdint.h>

#include "tm/tm_status.h"

typedef struct tm_kvcache tm_kvcache; /* opaque */

typedef struct tm_kvcache_params {
    int32_t n_blocks;   /* blocks in the pool, >= 1 */
    int32_t block_size; /* positions per block: a power of two in [1, 1024] */
    int32_t n_seq_max;  /* sequence ids 0 .. n_seq_max - 1 */
    int32_t n_pos_max;  /* positions one sequence may hold (the context length) */
} tm_kvcache_params;

/* The bookkeeping of a pool (no K/V rows). *out stays NULL on failure. */
tm_status tm_kvcache_init(const tm_kvcache_params *params, tm_kvcache **out);
void      tm_kvcache_free(tm_kvcache *kv); /* NULL is a no-op */

int32_t tm_kvcache_block_size(const tm_kvcache *kv);
int32_t tm_kvcache_n_blocks(const tm_kvcache *kv);
/* Blocks per sequence table: ceil(n_pos_max / block_size). */
int32_t tm_kvcache_max_blocks(const tm_kvcache *kv);
/* Blocks a sequence can still get: free ones plus unreferenced cached ones. */
int32_t tm_kvcache_n_free(const tm_kvcache *kv);
/* Unreferenced blocks kept for the prefix cache (a subset of tm_kvcache_n_free). */
int32_t tm_kvcache_n_cached_free(const tm_kvcache *kv);

/* Positions seq holds; 0 for an id out of range. */
int32_t tm_kvcache_seq_len(const tm_kvcache *kv, int32_t seq);
/* seq's physical block ids [tm_kvcache_max_blocks] (entries past its length are -1). */
const int32_t *tm_kvcache_seq_table(const tm_kvcache *kv, int32_t seq);
/* Blocks appending n positions to seq would take from the pool. */
int32_t tm_kvcache_blocks_needed(const tm_kvcache *kv, int32_t seq, int32_t n);

/* Appends n >= 0 positions to seq, taking blocks from the pool (free first, then
 * the least recently used cached block). TM_ERR_FULL, with nothing changed, when
 * the pool is short or seq would pass n_pos_max; TM_ERR_INVALID for a bad id. */
tm_status tm_kvcache_seq_append(tm_kvcache *kv, int32_t seq, int32_t n);
/* Forgets seq and drops its references (blocks become free or cached). */
void tm_kvcache_seq_remove(tm_kvcache *kv, int32_t seq);
/* Keeps seq's first n positions. When the block that will receive position n is
 * shared, it is replaced by a fresh one and *cow_src / *cow_dst name the block
 * whose first n % block_size rows the caller must copy (else both are -1).
 * TM_ERR_INVALID for n outside [0, len]; TM_ERR_FULL when no block is free for
 * the copy (nothing changed). */
tm_status tm_kvcache_seq_truncate(tm_kvcache *kv, int32_t seq, int32_t n, int32_t *cow_src,
                                  int32_t *cow_dst);
/* Makes the empty sequence dst hold src's first n positions: full blocks are
 * shared (refcounts), a partial last block is a fresh copy (*cow_src / *cow_dst
 * as for truncate, else -1). TM_ERR_INVALID for bad ids, dst not empty or n >
 * len(src); TM_ERR_FULL when no block is free for the copy. */
tm_status tm_kvcache_seq_copy_prefix(tm_kvcache *kv, int32_t src, int32_t dst, int32_t n,
                                     int32_t *cow_src, int32_t *cow_dst);

/* ---- automatic prefix caching (prefix_cache.c) --------------------------------- */
/* Chained hash of one block: seed is the previous block's hash (or the salt). */
uint64_t tm_kvcache_hash_block(uint64_t seed, const int32_t *tokens, int32_t n);
/* Registers the full blocks among seq's first n positions, whose tokens are
 * tokens[0 .. n), so later prompts starting with them reuse the rows. Blocks
 * already registered (or whose hash another block holds) are left as they are.
 * The rows of those positions must be computed before the next step reads them. */
void tm_kvcache_seq_register(tm_kvcache *kv, int32_t seq, const int32_t *tokens, int32_t n,
                             uint64_t salt);
/* For an empty seq: attaches the longest run of cached full blocks that equals
 * the start of tokens[0 .. n) and returns the positions attached (a multiple of
 * block_size, <= n); 0 when seq is not empty or nothing matches. */
int32_t tm_kvcache_seq_attach_prefix(tm_kvcache *kv, int32_t seq, const int32_t *tokens, int32_t n,
                                     uint64_t salt);
/* After tm_kvcache_seq_attach_prefix (seq holds a whole number of blocks, the first
 * len of tokens): finds the cached block that continues the same prefix and whose
 * first m tokens equal tokens[len .. len + m), m >= 1 as large as possible (<= n -
 * len, < block_size), gives seq a fresh private block for positions [len, len + m) and returns m,
 * with *cow_src = the cached block and *cow_dst = the fresh one: the caller copies
 * the rows and then calls tm_kvcache_block_release(kv, *cow_src), which holds a
 * reference meanwhile so no allocation evicts it. 0 (and -1s) when nothing matches or
 * no block is free. One scan of the pool's blocks. */
int32_t tm_kvcache_seq_attach_partial(tm_kvcache *kv, int32_t seq, const int32_t *tokens, int32_t n,
                                      uint64_t salt, int32_t *cow_src, int32_t *cow_dst);
/* Drops the reference tm_kvcache_seq_attach_partial took on block b. */
void tm_kvcache_block_release(tm_kvcache *kv, int32_t b);

#endif /* TM_KVCACHE_H */
