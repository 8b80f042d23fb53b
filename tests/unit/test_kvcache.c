/*
 * test_kvcache.c - the paged KV block manager (tm_kvcache.h): block accounting,
 * sharing by copy-prefix and truncation, prefix-cache hits, verification of
 * tokens behind a hash, LRU eviction order, no allocation after init, and a
 * randomized churn that checks the accounting invariant after every call.
 */
#include "harness.h"
#include "tm/tm_kvcache.h"

static tm_kvcache *mk(int32_t n_blocks, int32_t bs, int32_t n_seq, int32_t n_pos) {
    tm_kvcache_params p = {
        .n_blocks = n_blocks, .block_size = bs, .n_seq_max = n_seq, .n_pos_max = n_pos};
    tm_kvcache *kv = NULL;
    return tm_kvcache_init(&p, &kv) == TM_OK ? kv : NULL;
}

/* Blocks referenced by the tables equal n_blocks - n_free (counting distinct ids). */
static int32_t used_blocks(const tm_kvcache *kv, int32_t n_seq) {
    static unsigned char seen[4096];
    memset(seen, 0, sizeof seen);
    int32_t n = 0, bs = tm_kvcache_block_size(kv);
    for (int32_t s = 0; s < n_seq; s++) {
        const int32_t *t = tm_kvcache_seq_table(kv, s);
        for (int32_t i = 0; i < (tm_kvcache_seq_len(kv, s) + bs - 1) / bs; i++)
            if (!seen[t[i]]++)
                n++;
    }
    return n;
}

TEST(params_are_checked) {
    EXPECT_TRUE(mk(0, 16, 1, 64) == NULL);
    EXPECT_TRUE(mk(8, 12, 1, 64) == NULL); /* not a power of two */
    EXPECT_TRUE(mk(8, 16, 0, 64) == NULL);
    tm_kvcache *kv = mk(8, 16, 2, 64);
    ASSERT_TRUE(kv != NULL);
    EXPECT_EQ_INT(tm_kvcache_max_blocks(kv), 4);
    EXPECT_EQ_INT(tm_kvcache_seq_append(kv, 2, 1), TM_ERR_INVALID);
    EXPECT_EQ_INT(tm_kvcache_seq_append(kv, 0, 65), TM_ERR_FULL);
    tm_kvcache_free(kv);
}

TEST(append_remove_and_pool_short) {
    tm_kvcache *kv = mk(4, 4, 3, 64);
    ASSERT_TRUE(kv != NULL);
    EXPECT_EQ_INT(tm_kvcache_blocks_needed(kv, 0, 5), 2);
    EXPECT_OK(tm_kvcache_seq_append(kv, 0, 5));
    EXPECT_EQ_INT(tm_kvcache_blocks_needed(kv, 0, 3), 0); /* fits the partial block */
    EXPECT_OK(tm_kvcache_seq_append(kv, 1, 8));
    EXPECT_EQ_INT(tm_kvcache_n_free(kv), 0);
    EXPECT_EQ_INT(tm_kvcache_seq_append(kv, 2, 1), TM_ERR_FULL);
    EXPECT_EQ_INT(tm_kvcache_seq_len(kv, 2), 0); /* nothing changed */
    EXPECT_OK(tm_kvcache_seq_append(kv, 0, 3));  /* no new block needed */
    tm_kvcache_seq_remove(kv, 1);
    EXPECT_EQ_INT(tm_kvcache_n_free(kv), 2);
    EXPECT_OK(tm_kvcache_seq_append(kv, 2, 1));
    EXPECT_EQ_INT(used_blocks(kv, 3), 4 - tm_kvcache_n_free(kv));
    tm_kvcache_seq_remove(kv, 0);
    tm_kvcache_seq_remove(kv, 2);
    EXPECT_EQ_INT(tm_kvcache_n_free(kv), 4);
    tm_kvcache_free(kv);
}

TEST(copy_prefix_shares_and_truncate_copies) {
    tm_kvcache *kv = mk(16, 4, 3, 64);
    ASSERT_TRUE(kv != NULL);
    int32_t cs, cd;
    EXPECT_OK(tm_kvcache_seq_append(kv, 0, 10)); /* blocks 0, 1, 2 (2 partial) */
    EXPECT_OK(tm_kvcache_seq_copy_prefix(kv, 0, 1, 10, &cs, &cd));
    const int32_t *t0 = tm_kvcache_seq_table(kv, 0), *t1 = tm_kvcache_seq_table(kv, 1);
    EXPECT_EQ_INT(t1[0], t0[0]);
    EXPECT_EQ_INT(t1[1], t0[1]);
    EXPECT_EQ_INT(cs, t0[2]); /* the partial block is copied, not shared */
    EXPECT_EQ_INT(cd, t1[2]);
    EXPECT_TRUE(t1[2] != t0[2]);
    EXPECT_EQ_INT(tm_kvcache_n_free(kv), 12);
    EXPECT_EQ_INT(tm_kvcache_seq_copy_prefix(kv, 0, 1, 4, &cs, &cd), TM_ERR_INVALID); /* dst busy */
    /* truncating 1 into the shared block 1 gives it a private copy */
    EXPECT_OK(tm_kvcache_seq_truncate(kv, 1, 6, &cs, &cd));
    EXPECT_EQ_INT(cs, t0[1]);
    EXPECT_EQ_INT(cd, t1[1]);
    EXPECT_TRUE(t1[1] != t0[1]);
    EXPECT_EQ_INT(tm_kvcache_seq_len(kv, 1), 6);
    /* to a block boundary: no copy */
    EXPECT_OK(tm_kvcache_seq_truncate(kv, 1, 4, &cs, &cd));
    EXPECT_EQ_INT(cs, -1);
    EXPECT_EQ_INT(tm_kvcache_seq_truncate(kv, 1, 5, &cs, &cd), TM_ERR_INVALID);
    EXPECT_EQ_INT(used_blocks(kv, 3), 16 - tm_kvcache_n_free(kv));
    tm_kvcache_seq_remove(kv, 0);
    tm_kvcache_seq_remove(kv, 1);
    EXPECT_EQ_INT(tm_kvcache_n_free(kv), 16);
    tm_kvcache_free(kv);
}

TEST(prefix_hits_and_token_check) {
    tm_kvcache *kv = mk(16, 4, 3, 64);
    ASSERT_TRUE(kv != NULL);
    int32_t a[11] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    EXPECT_OK(tm_kvcache_seq_append(kv, 0, 11));
    tm_kvcache_seq_register(kv, 0, a, 11, 0); /* blocks 0 and 1 (the third is partial) */
    /* a running sequence's blocks are shared right away */
    EXPECT_EQ_INT(tm_kvcache_seq_attach_prefix(kv, 1, a, 11, 0), 8);
    EXPECT_EQ_INT(tm_kvcache_seq_table(kv, 1)[1], tm_kvcache_seq_table(kv, 0)[1]);
    /* another salt (adapter) or a different first block: no hit */
    EXPECT_EQ_INT(tm_kvcache_seq_attach_prefix(kv, 2, a, 11, 7), 0);
    int32_t b[8] = {1, 2, 3, 99, 5, 6, 7, 8};
    EXPECT_EQ_INT(tm_kvcache_seq_attach_prefix(kv, 2, b, 8, 0), 0);
    /* same second block after a different first one: the chain stops the match */
    int32_t c[8] = {1, 2, 3, 4, 5, 6, 7, 99};
    EXPECT_EQ_INT(tm_kvcache_seq_attach_prefix(kv, 2, c, 8, 0), 4);
    tm_kvcache_seq_remove(kv, 2);
    tm_kvcache_seq_remove(kv, 0);
    tm_kvcache_seq_remove(kv, 1);
    /* unreferenced but cached: free for allocation, still hit-able */
    EXPECT_EQ_INT(tm_kvcache_n_free(kv), 16);
    EXPECT_EQ_INT(tm_kvcache_n_cached_free(kv), 2);
    EXPECT_EQ_INT(tm_kvcache_seq_attach_prefix(kv, 0, a, 11, 0), 8);
    EXPECT_EQ_INT(tm_kvcache_n_cached_free(kv), 0);
    EXPECT_EQ_INT(tm_kvcache_n_free(kv), 14);
    tm_kvcache_seq_remove(kv, 0);
    tm_kvcache_free(kv);
}

/* The head of a cached block that continues the prefix: the longest match wins, a
 * fresh private block takes the copy, the source is held until released (so the
 * allocation cannot evict it) and stays cached afterwards. */
TEST(attach_partial_block_head) {
    tm_kvcache *kv = mk(6, 4, 3, 64);
    ASSERT_TRUE(kv != NULL);
    int32_t a[8] = {1, 2, 3, 4, 5, 6, 7, 8}, b[8] = {1, 2, 3, 4, 5, 6, 9, 9};
    EXPECT_OK(tm_kvcache_seq_append(kv, 0, 8));
    tm_kvcache_seq_register(kv, 0, a, 8, 0);
    const int32_t a1 = tm_kvcache_seq_table(kv, 0)[1];
    tm_kvcache_seq_remove(kv, 0); /* both blocks cached, unreferenced */
    int32_t cs, cd;
    EXPECT_EQ_INT(tm_kvcache_seq_attach_prefix(kv, 1, b, 7, 0), 4);
    EXPECT_EQ_INT(tm_kvcache_seq_attach_partial(kv, 1, b, 7, 0, &cs, &cd), 2); /* 5, 6 */
    EXPECT_EQ_INT(cs, a1);
    EXPECT_TRUE(cd >= 0 && cd != a1);
    EXPECT_EQ_INT(tm_kvcache_seq_len(kv, 1), 6);
    EXPECT_EQ_INT(tm_kvcache_seq_table(kv, 1)[1], cd);
    EXPECT_EQ_INT(tm_kvcache_n_cached_free(kv), 0); /* a1 held */
    tm_kvcache_block_release(kv, cs);
    EXPECT_EQ_INT(tm_kvcache_n_cached_free(kv), 1); /* a1 cached again */
    EXPECT_EQ_INT(used_blocks(kv, 3), 2);
    /* at most block_size - 1 positions (a whole block is attach_prefix's to share) */
    EXPECT_EQ_INT(tm_kvcache_seq_attach_partial(kv, 2, b, 7, 0, &cs, &cd), 3);
    tm_kvcache_block_release(kv, cs);
    tm_kvcache_seq_remove(kv, 2);
    /* nothing after a partial block, before a mismatching first block */
    EXPECT_EQ_INT(tm_kvcache_seq_attach_partial(kv, 1, b, 7, 0, &cs, &cd), 0); /* len 6 */
    EXPECT_EQ_INT(cs, -1);
    int32_t c[8] = {9, 2, 3, 4, 5, 6, 7, 8};
    EXPECT_EQ_INT(tm_kvcache_seq_attach_prefix(kv, 2, c, 7, 0), 0);
    EXPECT_EQ_INT(tm_kvcache_seq_attach_partial(kv, 2, c, 7, 0, &cs, &cd), 0);
    tm_kvcache_seq_remove(kv, 1);
    tm_kvcache_seq_remove(kv, 2);
    EXPECT_EQ_INT(tm_kvcache_n_free(kv), 6);
    tm_kvcache_free(kv);
}

TEST(lru_eviction_when_short) {
    tm_kvcache *kv = mk(4, 2, 2, 64);
    ASSERT_TRUE(kv != NULL);
    int32_t p[4] = {5, 6, 7, 8}, q[4] = {9, 10, 11, 12};
    EXPECT_OK(tm_kvcache_seq_append(kv, 0, 4));
    tm_kvcache_seq_register(kv, 0, p, 4, 0);
    tm_kvcache_seq_remove(kv, 0); /* p's blocks cached (older) */
    EXPECT_OK(tm_kvcache_seq_append(kv, 0, 4));
    tm_kvcache_seq_register(kv, 0, q, 4, 0);
    tm_kvcache_seq_remove(kv, 0); /* q's blocks cached (newer) */
    EXPECT_EQ_INT(tm_kvcache_n_cached_free(kv), 4);
    /* taking two blocks evicts p's (least recently used) */
    EXPECT_OK(tm_kvcache_seq_append(kv, 1, 4));
    EXPECT_EQ_INT(tm_kvcache_n_cached_free(kv), 2);
    tm_kvcache_seq_remove(kv, 1);
    EXPECT_EQ_INT(tm_kvcache_seq_attach_prefix(kv, 0, p, 4, 0), 0);
    EXPECT_EQ_INT(tm_kvcache_seq_attach_prefix(kv, 0, q, 4, 0), 4);
    tm_kvcache_seq_remove(kv, 0);
    EXPECT_EQ_INT(tm_kvcache_n_free(kv), 4);
    tm_kvcache_free(kv);
}

/* Random appends, removes, truncates, copies, registers and attaches; after each
 * call the blocks in tables equal the blocks not free, and no call allocates. */
TEST(random_churn_keeps_accounting) {
    enum { NS = 6, NB = 40, BS = 4 };
    tm_kvcache *kv = mk(NB, BS, NS, 48);
    ASSERT_TRUE(kv != NULL);
    int32_t  toks[NS][48];
    uint32_t rng = 99;
    uint64_t before = tm_alloc_count();
    int      bad = 0;
    for (int it = 0; it < 20000; it++) {
        rng = rng * 1664525u + 1013904223u;
        int32_t s = (int32_t)((rng >> 8) % NS), op = (int32_t)((rng >> 16) % 6), cs, cd;
        int32_t len = tm_kvcache_seq_len(kv, s);
        switch (op) {
        case 0: {
            int32_t n = 1 + (int32_t)((rng >> 20) % 9);
            if (tm_kvcache_seq_append(kv, s, n) == TM_OK)
                for (int32_t i = len; i < len + n; i++)
                    toks[s][i] = (int32_t)((rng >> 24) % 3); /* few values: many hits */
            break;
        }
        case 1: tm_kvcache_seq_remove(kv, s); break;
        case 2: (void)tm_kvcache_seq_truncate(kv, s, len / 2, &cs, &cd); break;
        case 3: tm_kvcache_seq_register(kv, s, toks[s], len, 0); break;
        case 4: {
            int32_t d = (s + 1) % NS;
            if (tm_kvcache_seq_len(kv, d) == 0 &&
                tm_kvcache_seq_copy_prefix(kv, s, d, len, &cs, &cd) == TM_OK)
                memcpy(toks[d], toks[s], sizeof toks[s]);
            break;
        }
        default: {
            int32_t src = (s + 2) % NS;
            if (len == 0) {
                int32_t n =
                    tm_kvcache_seq_attach_prefix(kv, s, toks[src], tm_kvcache_seq_len(kv, src), 0);
                memcpy(toks[s], toks[src], (size_t)n * sizeof(int32_t));
            }
            break;
        }
        }
        bad += used_blocks(kv, NS) != NB - tm_kvcache_n_free(kv);
    }
    EXPECT_EQ_INT(bad, 0);
    EXPECT_EQ_INT(tm_alloc_count() - before, 0);
    for (int32_t s = 0; s < NS; s++)
        tm_kvcache_seq_remove(kv, s);
    EXPECT_EQ_INT(tm_kvcache_n_free(kv), NB);
    tm_kvcache_free(kv);
}

TM_TEST_MAIN()
