/* test_sampler.c - greedy, filters, penalties and seeded determinism of tm_sampler. */
#include <math.h>

#include "harness.h"
#include "tm/tm_sampler.h"

TEST(greedy_and_ties) {
    tm_sampler_params p = tm_sampler_params_default();
    p.temp = 0;
    tm_sampler *s = NULL;
    ASSERT_OK(tm_sampler_init(&p, 5, &s));
    float l[5] = {0.1f, 3.0f, -1.0f, 3.0f, 2.0f};
    EXPECT_EQ_INT(tm_sampler_sample(s, l), 1); /* lowest id wins a tie */
    tm_sampler_free(s);
}

TEST(top_k_1_is_greedy) {
    tm_sampler_params p = tm_sampler_params_default();
    p.temp = 1.5f;
    p.top_k = 1;
    tm_sampler *s = NULL;
    ASSERT_OK(tm_sampler_init(&p, 4, &s));
    float l[4] = {0.0f, 0.1f, 0.2f, 0.15f};
    for (int i = 0; i < 50; i++)
        EXPECT_EQ_INT(tm_sampler_sample(s, l), 2);
    tm_sampler_free(s);
}

TEST(top_p_and_min_p_filter) {
    /* probabilities ~ 0.64, 0.24, 0.09, 0.03: top_p 0.5 keeps only token 0 */
    float             l[4] = {3.0f, 2.0f, 1.0f, 0.0f};
    tm_sampler_params p = tm_sampler_params_default();
    p.temp = 1.0f;
    p.top_k = 0;
    p.min_p = 0;
    p.top_p = 0.5f;
    tm_sampler *s = NULL;
    ASSERT_OK(tm_sampler_init(&p, 4, &s));
    for (int i = 0; i < 100; i++)
        EXPECT_EQ_INT(tm_sampler_sample(s, l), 0);
    tm_sampler_free(s);
    p.top_p = 1.0f;
    p.min_p = 0.3f; /* keeps p >= 0.3 * 0.64: tokens 0 and 1 */
    ASSERT_OK(tm_sampler_init(&p, 4, &s));
    int seen[4] = {0};
    for (int i = 0; i < 400; i++)
        seen[tm_sampler_sample(s, l)]++;
    EXPECT_TRUE(seen[0] > 0 && seen[1] > 0 && seen[2] == 0 && seen[3] == 0);
    tm_sampler_free(s);
}

TEST(seed_is_deterministic) {
    float l[64];
    for (int i = 0; i < 64; i++)
        l[i] = (float)((i * 37) % 11) * 0.3f;
    tm_sampler_params p = tm_sampler_params_default();
    p.temp = 1.0f;
    p.seed = 1234;
    int a[32], b[32];
    for (int run = 0; run < 2; run++) {
        tm_sampler *s = NULL;
        ASSERT_OK(tm_sampler_init(&p, 64, &s));
        for (int i = 0; i < 32; i++)
            (run ? b : a)[i] = tm_sampler_sample(s, l);
        tm_sampler_free(s);
    }
    for (int i = 0; i < 32; i++)
        EXPECT_EQ_INT(a[i], b[i]);
}

TEST(penalties) {
    tm_sampler_params p = tm_sampler_params_default();
    p.temp = 0;
    p.repeat_penalty = 2.0f;
    tm_sampler *s = NULL;
    ASSERT_OK(tm_sampler_init(&p, 3, &s));
    float l[3] = {2.0f, 1.5f, -1.0f};
    EXPECT_EQ_INT(tm_sampler_sample(s, l), 0);
    tm_sampler_accept(s, 0); /* 2.0 / 2 = 1.0 < 1.5 */
    EXPECT_EQ_INT(tm_sampler_sample(s, l), 1);
    tm_sampler_free(s);
    p.repeat_penalty = 1.0f;
    p.frequency_penalty = 0.3f;
    ASSERT_OK(tm_sampler_init(&p, 3, &s));
    tm_sampler_accept(s, 0);
    EXPECT_EQ_INT(tm_sampler_sample(s, l), 0); /* 1.7 > 1.5 */
    tm_sampler_accept(s, 0);
    EXPECT_EQ_INT(tm_sampler_sample(s, l), 1); /* 1.4 < 1.5 */
    tm_sampler_free(s);
    p.frequency_penalty = 0;
    p.presence_penalty = 1.0f;
    ASSERT_OK(tm_sampler_init(&p, 3, &s));
    tm_sampler_accept(s, 0);
    tm_sampler_accept(s, 0);
    EXPECT_EQ_INT(tm_sampler_sample(s, l), 1); /* 1.0 < 1.5, once */
    tm_sampler_free(s);
}

TEST(sample_does_not_allocate) {
    tm_sampler_params p = tm_sampler_params_default();
    tm_sampler       *s = NULL;
    ASSERT_OK(tm_sampler_init(&p, 1000, &s));
    float l[1000];
    for (int i = 0; i < 1000; i++)
        l[i] = (float)(i % 17);
    uint64_t before = tm_alloc_count();
    for (int i = 0; i < 10; i++)
        tm_sampler_accept(s, tm_sampler_sample(s, l));
    EXPECT_EQ_INT(tm_alloc_count() - before, 0);
    tm_sampler_free(s);
}

TEST(logit_bias_forces_and_bans) {
    float             l[5] = {0.1f, 3.0f, -1.0f, 2.5f, 2.0f};
    int32_t           ids[2] = {2, 1};
    float             bias[2] = {100.0f, 0.0f};
    tm_sampler_params p = tm_sampler_params_default();
    p.temp = 0;
    p.bias_id = ids;
    p.bias = bias;
    p.n_bias = 1;
    tm_sampler *s = NULL;
    ASSERT_OK(tm_sampler_init(&p, 5, &s));
    EXPECT_EQ_INT(tm_sampler_sample(s, l), 2); /* +100 makes greedy pick it */
    tm_sampler_free(s);
    ids[0] = 1; /* -100 bans the argmax: next best is 3 */
    bias[0] = -100.0f;
    ASSERT_OK(tm_sampler_init(&p, 5, &s));
    ids[0] = 4; /* the sampler copied the bias */
    EXPECT_EQ_INT(tm_sampler_sample(s, l), 3);
    tm_sampler_free(s);
    ids[0] = 5; /* outside the vocabulary */
    EXPECT_EQ_INT(tm_sampler_init(&p, 5, &s), TM_ERR_INVALID);
    EXPECT_TRUE(s == NULL);
}

TEST(logprobs_are_log_softmax_of_raw_logits) {
    float   l[5] = {0.1f, 3.0f, -1.0f, 3.0f, 2.0f};
    double  z = 0;
    int32_t top[3];
    float   lp[3], tok_lp;
    for (int i = 0; i < 5; i++)
        z += exp((double)l[i]);
    uint64_t before = tm_alloc_count();
    tm_sampler_logprobs(l, 5, 4, 3, &tok_lp, top, lp);
    EXPECT_EQ_INT(tm_alloc_count() - before, 0);
    EXPECT_TRUE(fabs(tok_lp - (2.0 - log(z))) < 1e-6);
    EXPECT_EQ_INT(top[0], 1); /* ties: lower id first */
    EXPECT_EQ_INT(top[1], 3);
    EXPECT_EQ_INT(top[2], 4);
    EXPECT_TRUE(fabs(lp[0] - (3.0 - log(z))) < 1e-6);
    EXPECT_TRUE(fabs(lp[2] - tok_lp) < 1e-7);
}

TM_TEST_MAIN()
