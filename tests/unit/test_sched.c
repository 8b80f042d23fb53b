/*
 * test_sched.c - the scheduler thread over the tiny golden llama model (no
 * tokenizer: token counts only): lengths and finish reasons, several
 * sequences at once, cancellation freeing the slot, the bounded queue, a
 * prompt longer than the context, and shutdown with requests in flight.
 * Built with -DTM_SANITIZE_THREAD=ON this is the scheduler's TSAN test.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "harness.h"
#include "tm/tm_sched.h"

#define MODEL TM_SOURCE_DIR "/tests/golden/models/llama.gguf"

typedef struct waker {
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    uint64_t        n;
} waker;

static void on_wakeup(void *user) {
    waker *w = user;
    pthread_mutex_lock(&w->mu);
    w->n++;
    pthread_mutex_unlock(&w->mu);
    pthread_cond_broadcast(&w->cv);
}

/* Polls r until it finishes (10 s at most); returns the last poll. */
static tm_sched_out wait_done(waker *w, tm_sched_req *r) {
    tm_sched_out    o = {0};
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += 10;
    for (;;) {
        tm_sched_req_poll(r, &o);
        tm_free(o.text);
        if (o.finish != TM_FINISH_NONE)
            return o;
        pthread_mutex_lock(&w->mu);
        int rc = pthread_cond_timedwait(&w->cv, &w->mu, &dl);
        pthread_mutex_unlock(&w->mu);
        if (rc != 0) {
            tm_sched_req_poll(r, &o);
            return o;
        }
    }
}

typedef struct fixture {
    tm_model *model;
    tm_sched *sched;
    waker     w;
} fixture;

static int fx_init(fixture *f, int32_t n_parallel, int32_t max_queue) {
    memset(f, 0, sizeof *f);
    pthread_mutex_init(&f->w.mu, NULL);
    pthread_cond_init(&f->w.cv, NULL);
    tm_model_params mp = tm_model_params_default();
    mp.path = MODEL;
    if (tm_model_load(&mp, &f->model) != TM_OK)
        return -1;
    tm_sched_params sp = tm_sched_params_default();
    sp.model = f->model;
    sp.n_parallel = n_parallel;
    sp.n_ctx = 64;
    sp.n_batch = 16;
    sp.n_threads = 1;
    sp.max_queue = max_queue;
    sp.wakeup = on_wakeup;
    sp.wakeup_user = &f->w;
    return tm_sched_init(&sp, &f->sched) == TM_OK ? 0 : -1;
}

static void fx_free(fixture *f) {
    tm_sched_free(f->sched);
    tm_model_free(f->model);
    pthread_cond_destroy(&f->w.cv);
    pthread_mutex_destroy(&f->w.mu);
}

static const int32_t prompt[] = {1, 17, 42, 99, 3, 250, 8};

static tm_gen_params greedy(int32_t max_tokens) {
    tm_gen_params g = tm_gen_params_default();
    g.sampler.temp = 0;
    g.max_tokens = max_tokens;
    g.ignore_eos = true;
    return g;
}

TEST(max_tokens_and_usage) {
    fixture f;
    ASSERT_TRUE(fx_init(&f, 1, 8) == 0);
    tm_gen_params g = greedy(5);
    tm_sched_req *r = NULL;
    ASSERT_OK(tm_sched_req_init(&g, prompt, 7, &r));
    ASSERT_OK(tm_sched_submit(f.sched, r));
    tm_sched_out o = wait_done(&f.w, r);
    EXPECT_EQ_INT(o.finish, TM_FINISH_LENGTH);
    EXPECT_EQ_INT(o.n_completion, 5);
    EXPECT_EQ_INT(o.n_prompt, 7);
    EXPECT_TRUE(o.started);
    tm_sched_req_release(r);
    tm_sched_stats st;
    tm_sched_get_stats(f.sched, &st);
    EXPECT_EQ_INT(st.prompt_tokens, 7);
    EXPECT_EQ_INT(st.generation_tokens, 5);
    EXPECT_EQ_INT(st.ttft_count, 1);
    fx_free(&f);
}

TEST(context_full_is_length) {
    fixture f;
    ASSERT_TRUE(fx_init(&f, 1, 8) == 0);
    tm_gen_params g = greedy(0); /* until the context is full */
    tm_sched_req *r = NULL;
    ASSERT_OK(tm_sched_req_init(&g, prompt, 7, &r));
    ASSERT_OK(tm_sched_submit(f.sched, r));
    tm_sched_out o = wait_done(&f.w, r);
    EXPECT_EQ_INT(o.finish, TM_FINISH_LENGTH);
    EXPECT_EQ_INT(o.n_prompt + o.n_completion, 64 + 1); /* the last token needs no position */
    tm_sched_req_release(r);
    fx_free(&f);
}

TEST(many_sequences_share_slots) {
    fixture f;
    ASSERT_TRUE(fx_init(&f, 3, 16) == 0);
    tm_sched_req *r[10] = {0};
    for (int i = 0; i < 10; i++) {
        tm_gen_params g = greedy(3 + i);
        g.sampler.temp = 0.8f;
        g.sampler.seed = (uint64_t)i;
        ASSERT_OK(tm_sched_req_init(&g, prompt, 1 + i % 7, &r[i]));
        ASSERT_OK(tm_sched_submit(f.sched, r[i]));
    }
    for (int i = 0; i < 10; i++) {
        tm_sched_out o = wait_done(&f.w, r[i]);
        EXPECT_EQ_INT(o.finish, TM_FINISH_LENGTH);
        EXPECT_EQ_INT(o.n_completion, 3 + i);
        tm_sched_req_release(r[i]);
    }
    tm_sched_stats st;
    tm_sched_get_stats(f.sched, &st);
    EXPECT_EQ_INT(st.n_running, 0);
    EXPECT_EQ_INT(st.n_waiting, 0);
    EXPECT_EQ_INT(st.n_finished, 10);
    fx_free(&f);
}

TEST(cancel_frees_the_slot) {
    fixture f;
    ASSERT_TRUE(fx_init(&f, 1, 8) == 0);
    tm_gen_params g = greedy(0);
    tm_sched_req *a = NULL, *b = NULL;
    ASSERT_OK(tm_sched_req_init(&g, prompt, 7, &a));
    ASSERT_OK(tm_sched_submit(f.sched, a));
    tm_sched_req_cancel(a);
    tm_sched_out o = wait_done(&f.w, a);
    EXPECT_EQ_INT(o.finish, TM_FINISH_CANCELLED);
    tm_sched_req_release(a);
    g = greedy(4);
    ASSERT_OK(tm_sched_req_init(&g, prompt, 7, &b));
    ASSERT_OK(tm_sched_submit(f.sched, b));
    o = wait_done(&f.w, b);
    EXPECT_EQ_INT(o.finish, TM_FINISH_LENGTH);
    EXPECT_EQ_INT(o.n_completion, 4);
    tm_sched_req_release(b);
    /* releasing without waiting: the scheduler drops it, nothing leaks */
    tm_sched_req *c = NULL;
    g = greedy(0);
    ASSERT_OK(tm_sched_req_init(&g, prompt, 7, &c));
    ASSERT_OK(tm_sched_submit(f.sched, c));
    tm_sched_req_release(c);
    fx_free(&f);
}

TEST(queue_bound_and_prompt_too_long) {
    fixture f;
    ASSERT_TRUE(fx_init(&f, 1, 0) == 0);
    tm_gen_params g = greedy(2);
    tm_sched_req *r = NULL;
    ASSERT_OK(tm_sched_req_init(&g, prompt, 7, &r));
    EXPECT_EQ_INT(tm_sched_submit(f.sched, r), TM_ERR_FULL);
    tm_sched_req_release(r);
    fx_free(&f);

    ASSERT_TRUE(fx_init(&f, 1, 4) == 0);
    int32_t big[64] = {0};
    ASSERT_OK(tm_sched_req_init(&g, big, 64, &r));
    EXPECT_EQ_INT(tm_sched_submit(f.sched, r), TM_ERR_INVALID);
    EXPECT_TRUE(strstr(tm_last_error(), "64") != NULL);
    tm_sched_req_release(r);
    EXPECT_EQ_INT(tm_sched_req_init(&g, big, 0, &r), TM_ERR_INVALID);
    fx_free(&f);
}

TEST(shutdown_cancels_in_flight) {
    fixture f;
    ASSERT_TRUE(fx_init(&f, 1, 8) == 0);
    tm_sched_req *r[3] = {0};
    for (int i = 0; i < 3; i++) {
        tm_gen_params g = greedy(0);
        ASSERT_OK(tm_sched_req_init(&g, prompt, 7, &r[i]));
        ASSERT_OK(tm_sched_submit(f.sched, r[i]));
    }
    tm_sched_free(f.sched);
    f.sched = NULL;
    for (int i = 0; i < 3; i++) {
        tm_sched_out o;
        tm_sched_req_poll(r[i], &o);
        tm_free(o.text);
        EXPECT_TRUE(o.finish == TM_FINISH_CANCELLED || o.finish == TM_FINISH_LENGTH);
        tm_sched_req_release(r[i]);
    }
    fx_free(&f);
}

TM_TEST_MAIN()
