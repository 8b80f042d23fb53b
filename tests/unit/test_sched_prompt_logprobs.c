/*
 * test_sched_prompt_logprobs.c - prompt log-probabilities in the scheduler
 * (tm_gen_params.n_prompt_logprobs, prefill_only: legacy completions' echo +
 * logprobs) over the tiny golden llama model.
 *
 * The oracle is independent of the scheduler's path: a one-sequence tm_ctx
 * with logits_all decodes the whole prompt in one batch, and the test takes the
 * log-softmax of each row in double itself. The scheduler prefills the same
 * prompt in chunks of a few rows per step, mixed with another request's decode
 * tokens; per-row logits do not depend on the batch (docs/scheduler.md), so the
 * bound is float rounding of the log-softmax (1e-5 absolute).
 */
#include <math.h>
#include <pthread.h>
#include <time.h>

#include "harness.h"
#include "tm/tm_sched.h"

#define MODEL TM_SOURCE_DIR "/tests/golden/models/llama.gguf"
#define N_PROMPT 40
#define TOL 1e-5

typedef struct fx {
    tm_model *model;
    tm_sched *sched;
    int32_t   n_vocab;
} fx;

static int fx_init(fx *f, int32_t n_parallel, int32_t n_prompt_logits) {
    memset(f, 0, sizeof *f);
    tm_model_params mp = tm_model_params_default();
    mp.path = MODEL;
    if (tm_model_load(&mp, &f->model) != TM_OK)
        return -1;
    f->n_vocab = tm_model_get_hparams(f->model)->n_vocab;
    tm_sched_params sp = tm_sched_params_default();
    sp.model = f->model;
    sp.n_parallel = n_parallel;
    sp.n_ctx = 64;
    sp.n_batch = 16;
    sp.n_threads = 1;
    sp.n_prompt_logits = n_prompt_logits;
    return tm_sched_init(&sp, &f->sched) == TM_OK ? 0 : -1;
}

static void fx_free(fx *f) {
    tm_sched_free(f->sched);
    tm_model_free(f->model);
}

static void make_prompt(int32_t *ids, int32_t n, uint32_t seed) {
    ids[0] = 1;
    for (int32_t i = 1; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        ids[i] = 2 + (int32_t)((seed >> 8) % 240u);
    }
}

static tm_gen_params greedy(int32_t max_tokens) {
    tm_gen_params g = tm_gen_params_default();
    g.sampler.temp = 0;
    g.max_tokens = max_tokens;
    g.ignore_eos = true;
    return g;
}

/* Everything one request produced: prompt records, generated records, tokens. */
typedef struct result {
    tm_sched_out      last;
    tm_sched_logprob *plp; /* owned */
    int32_t           n_plp;
    int               n_plp_polls;     /* polls that handed prompt records over */
    bool              done_before_gen; /* prompt_done came no later than the first text */
    tm_sched_logprob  gen[32];
    int32_t           n_gen;
} result;

/* Polls r to its end (20 s at most). */
static void run(tm_sched_req *r, result *res) {
    memset(res, 0, sizeof *res);
    res->done_before_gen = true;
    bool            done = false;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        tm_sched_out o;
        tm_sched_req_poll(r, &o);
        if (o.prompt_logprobs != NULL || o.n_prompt_logprobs > 0) {
            res->n_plp_polls++;
            tm_free(res->plp);
            res->plp = o.prompt_logprobs;
            res->n_plp = o.n_prompt_logprobs;
        }
        if ((o.len > 0 || o.n_logprobs > 0) && !done && !o.prompt_done)
            res->done_before_gen = false;
        done |= o.prompt_done;
        for (int32_t i = 0; i < o.n_logprobs && res->n_gen < 32; i++)
            res->gen[res->n_gen++] = o.logprobs[i];
        tm_free(o.logprobs);
        tm_free(o.text);
        res->last = o;
        res->last.text = NULL;
        res->last.logprobs = NULL;
        res->last.prompt_logprobs = NULL;
        if (o.finish != TM_FINISH_NONE)
            return;
        struct timespec now, ts = {0, 500000};
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec > 20)
            return;
        nanosleep(&ts, NULL);
    }
}

/* Stats after the last request ended: the scheduler refreshes its pool counters at
 * the end of the step that retired it, which may be just after the poll saw it. */
static tm_sched_stats settled_stats(tm_sched *s) {
    tm_sched_stats st;
    for (int i = 0; i < 2000; i++) {
        tm_sched_get_stats(s, &st);
        if (st.n_running == 0 && st.kv_blocks_free == st.kv_blocks_total)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    return st;
}

/* Oracle rows: log-softmax (double) of every position's logits from a
 * logits_all context over the whole prompt in one batch; lp[i * n_vocab + v]. */
static double *oracle(const tm_model *model, const int32_t *ids, int32_t n, int32_t n_vocab) {
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = 64;
    cp.n_batch = 64;
    cp.n_threads = 1;
    cp.logits_all = true;
    tm_ctx *ctx = NULL;
    double *lp = tm_malloc((size_t)n * (size_t)n_vocab * sizeof *lp);
    if (lp == NULL || tm_ctx_init(model, &cp, &ctx) != TM_OK || tm_ctx_decode(ctx, ids, n) != TM_OK)
        goto fail;
    for (int32_t i = 0; i < n; i++) {
        const float *row = tm_ctx_logits(ctx, i);
        if (row == NULL)
            goto fail;
        double mx = -INFINITY, s = 0;
        for (int32_t v = 0; v < n_vocab; v++)
            mx = row[v] > mx ? row[v] : mx;
        for (int32_t v = 0; v < n_vocab; v++)
            s += exp((double)row[v] - mx);
        for (int32_t v = 0; v < n_vocab; v++)
            lp[(size_t)i * (size_t)n_vocab + (size_t)v] = (double)row[v] - mx - log(s);
    }
    tm_ctx_free(ctx);
    return lp;
fail:
    tm_ctx_free(ctx);
    tm_free(lp);
    return NULL;
}

/* Checks prompt records against the oracle: token, its logprob, the top-k
 * values (descending, each equal to the oracle's value for that id) and that no
 * id outside the top-k scores higher. Returns the number of bad records. */
static int check_records(const tm_sched_logprob *rec, int32_t n_rec, const int32_t *ids,
                         const double *lp, int32_t n_vocab, int32_t k) {
    int bad = 0;
    for (int32_t i = 0; i < n_rec; i++) {
        const double *row = lp + (size_t)i * (size_t)n_vocab; /* position i scores ids[i + 1] */
        bool          ok = rec[i].token == ids[i + 1] && rec[i].n_top == k &&
                  fabs(rec[i].logprob - row[ids[i + 1]]) <= TOL;
        double kth = INFINITY;
        for (int32_t j = 0; j < k && ok; j++) {
            ok = fabs(rec[i].top_logprob[j] - row[rec[i].top_token[j]]) <= TOL &&
                 (j == 0 || rec[i].top_logprob[j] <= rec[i].top_logprob[j - 1]);
            kth = rec[i].top_logprob[j];
        }
        for (int32_t v = 0; v < n_vocab && ok && k > 0; v++) {
            bool in = false;
            for (int32_t j = 0; j < k; j++)
                in |= rec[i].top_token[j] == v;
            ok = in || row[v] <= kth + TOL;
        }
        if (!ok) {
            if (bad == 0)
                fprintf(stderr, "  record %d: token %d lp %.7f vs oracle %.7f\n", i, rec[i].token,
                        (double)rec[i].logprob, row[ids[i + 1]]);
            bad++;
        }
    }
    return bad;
}

/* 40 prompt tokens at 5 logits rows per step (8 steps), while another request
 * generates in the same batches: every record equals the oracle, the answer
 * after the prompt equals the same request without prompt log-probabilities,
 * and the records arrive before (or with) the first generated text. */
TEST(prompt_logprobs_match_logits_all_oracle) {
    fx f;
    ASSERT_TRUE(fx_init(&f, 2, 5) == 0);
    int32_t ids[N_PROMPT];
    make_prompt(ids, N_PROMPT, 7);
    double *lp = oracle(f.model, ids, N_PROMPT, f.n_vocab);
    ASSERT_TRUE(lp != NULL);

    tm_gen_params g_other = greedy(30), g = greedy(6);
    g.n_prompt_logprobs = 4;
    g.n_logprobs = 2;
    tm_sched_req *other = NULL, *r = NULL;
    int32_t       other_ids[5] = {1, 9, 8, 7, 6};
    ASSERT_OK(tm_sched_req_init(&g_other, other_ids, 5, &other));
    ASSERT_OK(tm_sched_submit(f.sched, other));
    ASSERT_OK(tm_sched_req_init(&g, ids, N_PROMPT, &r));
    ASSERT_OK(tm_sched_submit(f.sched, r));
    static result res, ref, res_other;
    run(r, &res);
    run(other, &res_other);
    tm_sched_req_release(r);
    tm_sched_req_release(other);
    EXPECT_EQ_INT(res.last.finish, TM_FINISH_LENGTH);
    EXPECT_EQ_INT(res.last.n_completion, 6);
    EXPECT_EQ_INT(res_other.last.n_completion, 30);
    EXPECT_EQ_INT(res.n_plp_polls, 1);
    EXPECT_EQ_INT(res.n_plp, N_PROMPT - 1);
    EXPECT_TRUE(res.last.prompt_done && res.done_before_gen);
    EXPECT_EQ_INT(check_records(res.plp, res.n_plp, ids, lp, f.n_vocab, 4), 0);
    double sum = 0, sum_oracle = 0;
    for (int32_t i = 0; i + 1 < N_PROMPT && res.plp != NULL; i++) {
        sum += res.plp[i].logprob;
        sum_oracle += lp[(size_t)i * (size_t)f.n_vocab + (size_t)ids[i + 1]];
    }
    EXPECT_NEAR(sum, sum_oracle, 1e-4);
    printf("  sum of %d prompt logprobs %.6f (oracle %.6f)\n", N_PROMPT - 1, sum, sum_oracle);

    /* the generated part equals the same request without prompt log-probabilities */
    g.n_prompt_logprobs = -1;
    ASSERT_OK(tm_sched_req_init(&g, ids, N_PROMPT, &r));
    ASSERT_OK(tm_sched_submit(f.sched, r));
    run(r, &ref);
    tm_sched_req_release(r);
    EXPECT_TRUE(ref.plp == NULL && ref.n_plp_polls == 0 && ref.last.prompt_done);
    EXPECT_EQ_INT(ref.n_gen, 6);
    EXPECT_EQ_INT(res.n_gen, 6);
    for (int32_t i = 0; i < 6 && i < res.n_gen; i++) {
        EXPECT_EQ_INT(res.gen[i].token, ref.gen[i].token);
        EXPECT_NEAR(res.gen[i].logprob, ref.gen[i].logprob, TOL);
    }
    tm_sched_stats st = settled_stats(f.sched);
    EXPECT_EQ_INT(st.kv_blocks_free, st.kv_blocks_total);
    tm_free(res.plp);
    tm_free(lp);
    fx_free(&f);
}

/* prefill_only (max_tokens 0 with echo): the prompt is scored, nothing is
 * generated, the request ends with LENGTH; a one-token prompt has no records. */
TEST(prefill_only_scores_and_stops) {
    fx f;
    ASSERT_TRUE(fx_init(&f, 1, 0) == 0);
    int32_t ids[N_PROMPT];
    make_prompt(ids, N_PROMPT, 11);
    double *lp = oracle(f.model, ids, N_PROMPT, f.n_vocab);
    ASSERT_TRUE(lp != NULL);
    tm_gen_params g = greedy(5);
    g.prefill_only = true;
    g.n_prompt_logprobs = 0;
    tm_sched_req *r = NULL;
    static result res;
    ASSERT_OK(tm_sched_req_init(&g, ids, N_PROMPT, &r));
    ASSERT_OK(tm_sched_submit(f.sched, r));
    run(r, &res);
    tm_sched_req_release(r);
    EXPECT_EQ_INT(res.last.finish, TM_FINISH_LENGTH);
    EXPECT_EQ_INT(res.last.n_completion, 0);
    EXPECT_EQ_INT(res.n_gen, 0);
    EXPECT_EQ_INT(res.n_plp, N_PROMPT - 1);
    EXPECT_EQ_INT(check_records(res.plp, res.n_plp, ids, lp, f.n_vocab, 0), 0);
    tm_free(res.plp);

    ASSERT_OK(tm_sched_req_init(&g, ids, 1, &r)); /* one token: nothing to score */
    ASSERT_OK(tm_sched_submit(f.sched, r));
    run(r, &res);
    tm_sched_req_release(r);
    EXPECT_EQ_INT(res.last.finish, TM_FINISH_LENGTH);
    EXPECT_TRUE(res.plp == NULL && res.n_plp == 0 && res.last.prompt_done);

    g.n_prompt_logprobs = -1; /* prefill_only without records: echo alone */
    ASSERT_OK(tm_sched_req_init(&g, ids, N_PROMPT, &r));
    ASSERT_OK(tm_sched_submit(f.sched, r));
    run(r, &res);
    tm_sched_req_release(r);
    EXPECT_EQ_INT(res.last.finish, TM_FINISH_LENGTH);
    EXPECT_EQ_INT(res.last.n_completion, 0);
    EXPECT_TRUE(res.plp == NULL && res.last.prompt_done);
    tm_sched_stats st = settled_stats(f.sched);
    EXPECT_EQ_INT(st.generation_tokens, 0);
    EXPECT_EQ_INT(st.kv_blocks_free, st.kv_blocks_total);
    tm_free(lp);
    fx_free(&f);
}

/* A prompt whose blocks are in the prefix cache: a request for its prompt
 * log-probabilities computes every position anyway (n_cached 0) and matches
 * the oracle; a plain request still reuses the cache. */
TEST(prompt_logprobs_skip_the_prefix_cache) {
    fx f;
    ASSERT_TRUE(fx_init(&f, 1, 0) == 0);
    int32_t ids[N_PROMPT];
    make_prompt(ids, N_PROMPT, 23);
    double *lp = oracle(f.model, ids, N_PROMPT, f.n_vocab);
    ASSERT_TRUE(lp != NULL);
    tm_gen_params g = greedy(2);
    tm_sched_req *r = NULL;
    static result res;
    ASSERT_OK(tm_sched_req_init(&g, ids, N_PROMPT, &r)); /* registers the prompt's blocks */
    ASSERT_OK(tm_sched_submit(f.sched, r));
    run(r, &res);
    tm_sched_req_release(r);
    EXPECT_EQ_INT(res.last.n_cached, 0);
    g.n_prompt_logprobs = 1;
    ASSERT_OK(tm_sched_req_init(&g, ids, N_PROMPT, &r));
    ASSERT_OK(tm_sched_submit(f.sched, r));
    run(r, &res);
    tm_sched_req_release(r);
    EXPECT_EQ_INT(res.last.n_cached, 0);
    EXPECT_EQ_INT(res.n_plp, N_PROMPT - 1);
    EXPECT_EQ_INT(check_records(res.plp, res.n_plp, ids, lp, f.n_vocab, 1), 0);
    tm_free(res.plp);
    g.n_prompt_logprobs = -1;
    ASSERT_OK(tm_sched_req_init(&g, ids, N_PROMPT, &r));
    ASSERT_OK(tm_sched_submit(f.sched, r));
    run(r, &res);
    tm_sched_req_release(r);
    EXPECT_TRUE(res.last.n_cached > 0);
    tm_free(lp);
    fx_free(&f);
}

/* Bad values are refused without crashing: an out-of-range count at init, any
 * prompt log-probabilities when the scheduler has none (n_prompt_logits -1);
 * a request cancelled mid-prefill frees its records (ASan). */
TEST(prompt_logprobs_refusals_and_cancel) {
    fx f;
    ASSERT_TRUE(fx_init(&f, 1, -1) == 0);
    int32_t ids[N_PROMPT];
    make_prompt(ids, N_PROMPT, 5);
    tm_gen_params g = greedy(2);
    tm_sched_req *r = NULL;
    g.n_prompt_logprobs = TM_SAMPLER_MAX_LOGPROBS + 1;
    EXPECT_EQ_INT(tm_sched_req_init(&g, ids, N_PROMPT, &r), TM_ERR_INVALID);
    g.n_prompt_logprobs = -2;
    EXPECT_EQ_INT(tm_sched_req_init(&g, ids, N_PROMPT, &r), TM_ERR_INVALID);
    g.n_prompt_logprobs = 3;
    ASSERT_OK(tm_sched_req_init(&g, ids, N_PROMPT, &r));
    EXPECT_EQ_INT(tm_sched_submit(f.sched, r), TM_ERR_INVALID);
    tm_sched_req_release(r);
    tm_sched_params sp = tm_sched_params_default();
    sp.model = f.model;
    sp.n_prompt_logits = -2;
    tm_sched *s = NULL;
    EXPECT_EQ_INT(tm_sched_init(&sp, &s), TM_ERR_INVALID);
    EXPECT_TRUE(s == NULL);
    fx_free(&f);

    ASSERT_TRUE(fx_init(&f, 1, 1) == 0); /* one row per step: a long prefill */
    g.max_tokens = 0;
    ASSERT_OK(tm_sched_req_init(&g, ids, N_PROMPT, &r));
    ASSERT_OK(tm_sched_submit(f.sched, r));
    struct timespec ts = {0, 2000000};
    nanosleep(&ts, NULL);
    tm_sched_req_release(r); /* cancels it, probably mid-prefill */
    fx_free(&f);
}

TM_TEST_MAIN()
