/*
 * sched.c - the generation scheduler (STYLE.md snippet 8).
 *
 * DESIGN
 * ------
 * One scheduler thread owns every tm_ctx, sampler and streaming detokenizer;
 * no other thread touches them. Requests enter through the inbox
 * (tm_sched_submit, any thread, a mutex-guarded intrusive list plus a condition
 * variable the scheduler sleeps on when idle) and leave through a per-request
 * output buffer (a mutex held only for a memcpy) plus the wakeup callback,
 * which the server turns into lws_cancel_service().
 *
 * Each iteration ("step"):
 *   1. move the inbox into the private waiting list;
 *   2. retire cancelled sequences (client gone), admit waiting requests into
 *      free slots (one slot = one tm_ctx = one sequence);
 *   3. run every active slot once: a generating slot decodes its last token,
 *      a prefilling slot decodes a chunk of its prompt, within a token budget
 *      of n_batch per step;
 *   4. sample, detokenize, match stop strings, publish text, retire finished
 *      slots, wake the server once.
 * A cancelled request is therefore dropped within one step and its context is
 * free for the next waiting request.
 *
 * Batching: today step 3 calls tm_ctx_decode once per slot, because a
 * tm_ctx holds one sequence. When a multi-sequence context exists, only
 * sched_run_step() changes: it gathers (slot, tokens) pairs into one batch,
 * runs one forward pass and hands each slot its logits row; admission,
 * sampling, stop handling and retirement stay as they are.
 *
 * Threads: pthreads directly (there is no tm_thread.h yet). The stats block
 * and the inbox share s->mu. Requests are reference counted (server + scheduler).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tm/tm_sched.h"

const double tm_sched_ttft_bounds_s[TM_SCHED_TTFT_BUCKETS] = {0.01, 0.025, 0.05, 0.1,  0.25, 0.5,
                                                              1.0,  2.5,   5.0,  10.0, 30.0, 60.0};

struct tm_sched_req {
    struct tm_sched_req *next; /* inbox / waiting link; owned by the scheduler while queued */
    atomic_int           refs;
    atomic_bool          cancelled; /* set by any thread; read by the scheduler each step */
    tm_gen_params        gen;       /* gen.stop[] point into stop[] below */
    char                *stop[TM_SCHED_MAX_STOP];
    size_t               stop_len[TM_SCHED_MAX_STOP];
    int32_t             *prompt; /* n_prompt ids, owned */
    int32_t              n_prompt;
    double               t_submit_s; /* monotonic */
    void                *user;

    /* output, guarded by mu: scheduler appends, poller takes */
    pthread_mutex_t mu;
    char           *out;
    size_t          out_len, out_cap;
    int32_t         n_completion;
    bool            started;
    tm_finish       finish;
    char            error[160];
};

typedef struct sched_slot {
    tm_ctx         *ctx;
    tm_detokenizer *detok; /* NULL without a tokenizer */
    tm_sampler     *smp;   /* per request */
    tm_sched_req   *req;   /* NULL when free */
    int32_t         n_prefilled;
    int32_t         n_gen;
    int32_t         last; /* last sampled token, decoded next step */
    char           *hold; /* text held back while it may start a stop string */
    size_t          hold_len, hold_cap;
    char           *emit; /* text to publish this step */
    size_t          emit_len, emit_cap;
    tm_finish       finish;
} sched_slot;

struct tm_sched {
    tm_sched_params p;
    int32_t         n_ctx;
    int32_t         n_vocab;
    int32_t         eos_id;
    sched_slot     *slots; /* p.n_parallel */
    pthread_t       thread;
    bool            thread_started;

    pthread_mutex_t mu; /* inbox, stop flag, stats */
    pthread_cond_t  cv;
    tm_sched_req   *inbox_head, *inbox_tail;
    bool            stopping;
    tm_sched_stats  stats;

    tm_sched_req *wait_head, *wait_tail; /* scheduler thread only */
};

static double sched_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

tm_sched_params tm_sched_params_default(void) {
    return (tm_sched_params){.n_parallel = 1, .n_batch = 128, .max_queue = 64};
}

tm_gen_params tm_gen_params_default(void) {
    tm_gen_params g = {0};
    g.sampler = tm_sampler_params_default();
    g.max_tokens = 16;
    return g;
}

/* ---- requests ------------------------------------------------------------------ */

static void req_destroy(tm_sched_req *r) {
    for (int i = 0; i < TM_SCHED_MAX_STOP; i++)
        tm_free(r->stop[i]);
    tm_free(r->prompt);
    tm_free(r->out);
    pthread_mutex_destroy(&r->mu);
    tm_free(r);
}

tm_status tm_sched_req_init(const tm_gen_params *gen, const int32_t *prompt, int32_t n_prompt,
                            tm_sched_req **out) {
    *out = NULL;
    if (n_prompt < 1 || prompt == NULL)
        return tm_fail(TM_ERR_INVALID, "sched: a request needs at least one prompt token");
    if (gen->n_stop < 0 || gen->n_stop > TM_SCHED_MAX_STOP)
        return tm_fail(TM_ERR_INVALID, "sched: at most %d stop strings", TM_SCHED_MAX_STOP);
    tm_sched_req *r = tm_calloc(1, sizeof *r);
    if (r == NULL)
        return TM_ERR_NOMEM;
    pthread_mutex_init(&r->mu, NULL);
    atomic_init(&r->refs, 1);
    atomic_init(&r->cancelled, false);
    r->gen = *gen;
    for (int i = 0; i < gen->n_stop; i++) {
        r->stop[i] = tm_strdup(gen->stop[i] ? gen->stop[i] : "");
        if (r->stop[i] == NULL)
            goto nomem;
        r->stop_len[i] = strlen(r->stop[i]);
        r->gen.stop[i] = r->stop[i];
    }
    for (int i = gen->n_stop; i < TM_SCHED_MAX_STOP; i++)
        r->gen.stop[i] = NULL;
    r->prompt = tm_malloc((size_t)n_prompt * sizeof *r->prompt);
    if (r->prompt == NULL)
        goto nomem;
    memcpy(r->prompt, prompt, (size_t)n_prompt * sizeof *r->prompt);
    r->n_prompt = n_prompt;
    *out = r;
    return TM_OK;
nomem:
    req_destroy(r);
    return TM_ERR_NOMEM;
}

static void req_unref(tm_sched_req *r) {
    /* acq_rel: the last owner must see every write the other owner made before
     * dropping its reference. */
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) == 1)
        req_destroy(r);
}

void tm_sched_req_cancel(tm_sched_req *r) {
    atomic_store_explicit(&r->cancelled, true, memory_order_relaxed);
}

void tm_sched_req_release(tm_sched_req *r) {
    if (r == NULL)
        return;
    tm_sched_req_cancel(r);
    req_unref(r);
}

void tm_sched_req_set_user(tm_sched_req *r, void *user) { r->user = user; }

void *tm_sched_req_user(const tm_sched_req *r) { return r->user; }

void tm_sched_req_poll(tm_sched_req *r, tm_sched_out *out) {
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&r->mu);
    if (r->out_len > 0) {
        out->text = r->out;
        out->len = r->out_len;
        r->out = NULL;
        r->out_len = r->out_cap = 0;
    }
    out->n_prompt = r->n_prompt;
    out->n_completion = r->n_completion;
    out->started = r->started;
    out->finish = r->finish;
    memcpy(out->error, r->error, sizeof out->error);
    pthread_mutex_unlock(&r->mu);
}

/* Appends n bytes to a growable NUL-terminated buffer. */
static bool buf_append(char **buf, size_t *len, size_t *cap, const char *src, size_t n) {
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 64;
        while (nc < *len + n + 1)
            nc *= 2;
        char *nb = tm_realloc(*buf, nc);
        if (nb == NULL)
            return false;
        *buf = nb;
        *cap = nc;
    }
    memcpy(*buf + *len, src, n);
    *len += n;
    (*buf)[*len] = '\0';
    return true;
}

/* ---- submit and stats ------------------------------------------------------------ */

tm_status tm_sched_submit(tm_sched *s, tm_sched_req *r) {
    if (r->n_prompt >= s->n_ctx)
        return tm_fail(TM_ERR_INVALID, "prompt has %d tokens, the context holds %d", r->n_prompt,
                       s->n_ctx);
    pthread_mutex_lock(&s->mu);
    if (s->stopping || s->stats.n_waiting >= s->p.max_queue) {
        int32_t n = s->stats.n_waiting;
        pthread_mutex_unlock(&s->mu);
        return tm_fail(TM_ERR_FULL, "sched: %d requests already waiting", n);
    }
    atomic_fetch_add_explicit(&r->refs, 1, memory_order_relaxed);
    r->t_submit_s = sched_now();
    r->next = NULL;
    if (s->inbox_tail != NULL)
        s->inbox_tail->next = r;
    else
        s->inbox_head = r;
    s->inbox_tail = r;
    s->stats.n_waiting++;
    pthread_mutex_unlock(&s->mu);
    pthread_cond_signal(&s->cv);
    return TM_OK;
}

void tm_sched_get_stats(tm_sched *s, tm_sched_stats *out) {
    pthread_mutex_lock(&s->mu);
    *out = s->stats;
    pthread_mutex_unlock(&s->mu);
}

int32_t tm_sched_n_ctx(const tm_sched *s) { return s->n_ctx; }

/* ---- the scheduler thread -------------------------------------------------------- */

/* Publishes a request's end (and any last text) and drops the scheduler's reference. */
static void sched_finish_req(tm_sched *s, tm_sched_req *r, tm_finish why, const char *error,
                             const char *text, size_t len, int32_t n_gen) {
    pthread_mutex_lock(&r->mu);
    if (len > 0 && !buf_append(&r->out, &r->out_len, &r->out_cap, text, len)) {
        why = TM_FINISH_ERROR;
        error = "out of memory";
    }
    r->n_completion = n_gen;
    r->started |= why == TM_FINISH_STOP || why == TM_FINISH_LENGTH;
    r->finish = why;
    if (error != NULL)
        snprintf(r->error, sizeof r->error, "%s", error);
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&s->mu);
    s->stats.n_finished++;
    if (why == TM_FINISH_CANCELLED)
        s->stats.n_cancelled++;
    pthread_mutex_unlock(&s->mu);
    req_unref(r);
}

static void slot_retire(tm_sched *s, sched_slot *sl, tm_finish why, const char *error) {
    sched_finish_req(s, sl->req, why, error, sl->emit, sl->emit_len, sl->n_gen);
    sl->req = NULL;
    sl->emit_len = 0;
    sl->hold_len = 0;
    tm_sampler_free(sl->smp);
    sl->smp = NULL;
    tm_ctx_clear(sl->ctx);
    pthread_mutex_lock(&s->mu);
    s->stats.n_running--;
    pthread_mutex_unlock(&s->mu);
}

static tm_status slot_start(tm_sched *s, sched_slot *sl, tm_sched_req *r) {
    TM_TRY(tm_sampler_init(&r->gen.sampler, s->n_vocab, &sl->smp));
    sl->req = r;
    sl->n_prefilled = 0;
    sl->n_gen = 0;
    sl->hold_len = sl->emit_len = 0;
    sl->finish = TM_FINISH_NONE;
    tm_ctx_clear(sl->ctx);
    if (sl->detok != NULL)
        tm_detokenizer_reset(sl->detok);
    for (int32_t i = 0; i < r->n_prompt; i++)
        tm_sampler_accept(sl->smp, r->prompt[i]);
    pthread_mutex_lock(&s->mu);
    s->stats.n_running++;
    pthread_mutex_unlock(&s->mu);
    return TM_OK;
}

/* Length of the longest proper suffix of h that is a prefix of some stop string. */
static size_t stop_partial(const tm_sched_req *r, const char *h, size_t n) {
    size_t best = 0;
    for (int i = 0; i < r->gen.n_stop; i++) {
        size_t sl = r->stop_len[i];
        for (size_t k = (sl - 1 < n ? sl - 1 : n); k > best; k--) {
            if (memcmp(h + n - k, r->stop[i], k) == 0) {
                best = k;
                break;
            }
        }
    }
    return best;
}

/* Moves text from hold to emit, keeping back a possible stop-string start
 * unless final. Returns true when a stop string matched (text after it is dropped). */
static bool slot_release_text(sched_slot *sl, bool final) {
    const tm_sched_req *r = sl->req;
    size_t              cut = SIZE_MAX;
    for (int i = 0; i < r->gen.n_stop; i++) {
        if (r->stop_len[i] == 0 || r->stop_len[i] > sl->hold_len)
            continue;
        for (size_t j = 0; j + r->stop_len[i] <= sl->hold_len && j < cut; j++) {
            if (memcmp(sl->hold + j, r->stop[i], r->stop_len[i]) == 0) {
                cut = j;
                break;
            }
        }
    }
    bool   matched = cut != SIZE_MAX;
    size_t n = matched ? cut : sl->hold_len - (final ? 0 : stop_partial(r, sl->hold, sl->hold_len));
    if (n > 0 && !buf_append(&sl->emit, &sl->emit_len, &sl->emit_cap, sl->hold, n))
        sl->finish = TM_FINISH_ERROR;
    if (matched) {
        sl->hold_len = 0;
    } else if (n > 0) {
        memmove(sl->hold, sl->hold + n, sl->hold_len - n);
        sl->hold_len -= n;
    }
    return matched;
}

static void slot_hold_bytes(sched_slot *sl, const char *b, size_t n) {
    if (n > 0 && !buf_append(&sl->hold, &sl->hold_len, &sl->hold_cap, b, n))
        sl->finish = TM_FINISH_ERROR;
}

/* Samples the next token of a slot whose logits are ready and decides whether
 * the sequence goes on. Sets sl->finish when it ends. */
static void slot_sample(tm_sched *s, sched_slot *sl, double now) {
    tm_sched_req *r = sl->req;
    int32_t       tok = tm_sampler_sample(sl->smp, tm_ctx_logits(sl->ctx, -1));
    tm_sampler_accept(sl->smp, tok);
    if (sl->n_gen == 0) {
        double ttft = now - r->t_submit_s;
        pthread_mutex_lock(&s->mu);
        s->stats.ttft_count++;
        s->stats.ttft_sum_s += ttft;
        for (int i = 0; i < TM_SCHED_TTFT_BUCKETS; i++)
            if (ttft <= tm_sched_ttft_bounds_s[i])
                s->stats.ttft_bucket[i]++;
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_lock(&s->mu);
    s->stats.generation_tokens++;
    pthread_mutex_unlock(&s->mu);
    bool eos = tok == s->eos_id && !r->gen.ignore_eos;
    if (!eos) {
        sl->n_gen++;
        sl->last = tok;
        if (sl->detok != NULL) {
            const char *b;
            size_t      n;
            if (tm_detokenizer_feed(sl->detok, tok, &b, &n) == TM_OK)
                slot_hold_bytes(sl, b, n);
        }
    }
    bool length = !eos && ((r->gen.max_tokens > 0 && sl->n_gen >= r->gen.max_tokens) ||
                           tm_ctx_n_past(sl->ctx) >= s->n_ctx);
    if ((eos || length) && sl->detok != NULL) {
        const char *b;
        size_t      n;
        if (tm_detokenizer_flush(sl->detok, &b, &n) == TM_OK)
            slot_hold_bytes(sl, b, n);
    }
    bool stopped = slot_release_text(sl, eos || length);
    if (sl->finish == TM_FINISH_ERROR)
        return;
    if (stopped || eos)
        sl->finish = TM_FINISH_STOP;
    else if (length)
        sl->finish = TM_FINISH_LENGTH;
}

/* Runs every active slot once (see DESIGN: the one place batching will change). */
static void sched_run_step(tm_sched *s) {
    int32_t budget = s->p.n_batch;
    for (int32_t i = 0; i < s->p.n_parallel; i++) {
        sched_slot *sl = &s->slots[i];
        if (sl->req == NULL || sl->n_prefilled < sl->req->n_prompt)
            continue;
        if (tm_ctx_decode(sl->ctx, &sl->last, 1) != TM_OK) {
            slot_retire(s, sl, TM_FINISH_ERROR, tm_last_error());
            continue;
        }
        budget--;
        slot_sample(s, sl, sched_now());
    }
    for (int32_t i = 0; i < s->p.n_parallel; i++) {
        sched_slot   *sl = &s->slots[i];
        tm_sched_req *r = sl->req;
        if (r == NULL || sl->n_prefilled >= r->n_prompt || sl->n_gen > 0)
            continue;
        int32_t left = r->n_prompt - sl->n_prefilled;
        int32_t n = left < (budget > 1 ? budget : 1) ? left : (budget > 1 ? budget : 1);
        if (tm_ctx_decode(sl->ctx, r->prompt + sl->n_prefilled, n) != TM_OK) {
            slot_retire(s, sl, TM_FINISH_ERROR, tm_last_error());
            continue;
        }
        budget -= n;
        sl->n_prefilled += n;
        pthread_mutex_lock(&s->mu);
        s->stats.prompt_tokens += (uint64_t)n;
        pthread_mutex_unlock(&s->mu);
        if (sl->n_prefilled == r->n_prompt)
            slot_sample(s, sl, sched_now());
    }
}

/* Publishes each slot's new text; retires finished slots. Returns true if anything changed. */
static bool sched_publish(tm_sched *s) {
    bool any = false;
    for (int32_t i = 0; i < s->p.n_parallel; i++) {
        sched_slot   *sl = &s->slots[i];
        tm_sched_req *r = sl->req;
        if (r == NULL)
            continue;
        if (sl->finish != TM_FINISH_NONE) {
            slot_retire(s, sl, sl->finish, sl->finish == TM_FINISH_ERROR ? "out of memory" : NULL);
            any = true;
            continue;
        }
        bool started = sl->n_prefilled == r->n_prompt;
        if (sl->emit_len == 0 && (!started || r->started))
            continue;
        pthread_mutex_lock(&r->mu);
        bool ok = sl->emit_len == 0 ||
                  buf_append(&r->out, &r->out_len, &r->out_cap, sl->emit, sl->emit_len);
        r->n_completion = sl->n_gen;
        r->started = started;
        pthread_mutex_unlock(&r->mu);
        sl->emit_len = 0;
        if (!ok)
            slot_retire(s, sl, TM_FINISH_ERROR, "out of memory");
        any = true;
    }
    return any;
}

static void *sched_main(void *arg) {
    tm_sched *s = arg;
    for (;;) {
        bool active = false;
        for (int32_t i = 0; i < s->p.n_parallel; i++)
            active |= s->slots[i].req != NULL;
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->inbox_head == NULL && s->wait_head == NULL && !active)
            pthread_cond_wait(&s->cv, &s->mu);
        bool stopping = s->stopping;
        if (s->inbox_head != NULL) {
            if (s->wait_tail != NULL)
                s->wait_tail->next = s->inbox_head;
            else
                s->wait_head = s->inbox_head;
            s->wait_tail = s->inbox_tail;
            s->inbox_head = s->inbox_tail = NULL;
        }
        pthread_mutex_unlock(&s->mu);

        bool changed = false;
        /* Cancelled running sequences free their slot before admission. */
        for (int32_t i = 0; i < s->p.n_parallel; i++) {
            sched_slot *sl = &s->slots[i];
            if (sl->req != NULL &&
                (stopping || atomic_load_explicit(&sl->req->cancelled, memory_order_relaxed))) {
                sl->emit_len = 0;
                slot_retire(s, sl, TM_FINISH_CANCELLED, NULL);
                changed = true;
            }
        }
        /* Admit in arrival order; cancelled waiting requests are dropped here. */
        while (s->wait_head != NULL) {
            tm_sched_req *r = s->wait_head;
            bool drop = stopping || atomic_load_explicit(&r->cancelled, memory_order_relaxed);
            sched_slot *free_slot = NULL;
            for (int32_t j = 0; j < s->p.n_parallel && free_slot == NULL; j++)
                if (s->slots[j].req == NULL)
                    free_slot = &s->slots[j];
            if (!drop && free_slot == NULL)
                break;
            s->wait_head = r->next;
            if (s->wait_head == NULL)
                s->wait_tail = NULL;
            r->next = NULL;
            pthread_mutex_lock(&s->mu);
            s->stats.n_waiting--;
            pthread_mutex_unlock(&s->mu);
            if (drop) {
                sched_finish_req(s, r, TM_FINISH_CANCELLED, NULL, NULL, 0, 0);
                changed = true;
            } else if (slot_start(s, free_slot, r) != TM_OK) {
                sched_finish_req(s, r, TM_FINISH_ERROR, tm_last_error(), NULL, 0, 0);
                changed = true;
            }
        }
        if (stopping && s->wait_head == NULL) {
            if (changed && s->p.wakeup != NULL)
                s->p.wakeup(s->p.wakeup_user);
            break;
        }
        sched_run_step(s);
        pthread_mutex_lock(&s->mu);
        s->stats.n_steps++;
        int64_t used = 0;
        for (int32_t i = 0; i < s->p.n_parallel; i++)
            used += s->slots[i].req != NULL ? tm_ctx_n_past(s->slots[i].ctx) : 0;
        s->stats.kv_used = used;
        pthread_mutex_unlock(&s->mu);
        changed |= sched_publish(s);
        if (changed && s->p.wakeup != NULL)
            s->p.wakeup(s->p.wakeup_user);
    }
    return NULL;
}

/* ---- lifetime --------------------------------------------------------------------- */

tm_status tm_sched_init(const tm_sched_params *params, tm_sched **out) {
    *out = NULL;
    if (params->model == NULL)
        return tm_fail(TM_ERR_INVALID, "sched: no model");
    if (params->n_parallel < 1 || params->n_parallel > 256)
        return tm_fail(TM_ERR_INVALID, "sched: n_parallel %d outside [1, 256]", params->n_parallel);
    if (params->max_queue < 0)
        return tm_fail(TM_ERR_INVALID, "sched: negative max_queue");
    tm_status st = TM_OK;
    tm_sched *s = tm_calloc(1, sizeof *s);
    if (s == NULL)
        return TM_ERR_NOMEM;
    s->p = *params;
    if (s->p.n_batch <= 0)
        s->p.n_batch = 128;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    const tm_hparams *hp = tm_model_get_hparams(params->model);
    s->n_vocab = hp->n_vocab;
    s->eos_id = params->tokenizer ? tm_tokenizer_eos_id(params->tokenizer) : hp->eos_id;
    s->slots = tm_calloc((size_t)params->n_parallel, sizeof *s->slots);
    if (s->slots == NULL) {
        st = TM_ERR_NOMEM;
        goto fail;
    }
    s->n_ctx =
        params->n_ctx > 0 ? params->n_ctx : (hp->n_ctx_train < 2048 ? hp->n_ctx_train : 2048);
    if (s->p.n_batch > s->n_ctx)
        s->p.n_batch = s->n_ctx;
    for (int32_t i = 0; i < params->n_parallel; i++) {
        tm_ctx_params cp = tm_ctx_params_default();
        cp.n_ctx = s->n_ctx;
        cp.n_batch = s->p.n_batch;
        cp.n_threads = params->n_threads;
        st = tm_ctx_init(params->model, &cp, &s->slots[i].ctx);
        if (st != TM_OK)
            goto fail;
        if (params->tokenizer != NULL) {
            st = tm_detokenizer_init(params->tokenizer, true, &s->slots[i].detok);
            if (st != TM_OK)
                goto fail;
        }
    }
    s->stats.n_parallel = params->n_parallel;
    s->stats.kv_total = (int64_t)s->n_ctx * params->n_parallel;
    if (pthread_create(&s->thread, NULL, sched_main, s) != 0) {
        st = tm_fail(TM_ERR_NOMEM, "sched: cannot start the scheduler thread");
        goto fail;
    }
    s->thread_started = true;
    *out = s;
    return TM_OK;
fail:
    tm_sched_free(s);
    return st;
}

void tm_sched_free(tm_sched *s) {
    if (s == NULL)
        return;
    if (s->thread_started) {
        pthread_mutex_lock(&s->mu);
        s->stopping = true;
        pthread_mutex_unlock(&s->mu);
        pthread_cond_signal(&s->cv);
        pthread_join(s->thread, NULL);
    }
    /* Whatever was submitted after the thread's last look at the inbox. */
    for (tm_sched_req *r = s->inbox_head, *nx; r != NULL; r = nx) {
        nx = r->next;
        sched_finish_req(s, r, TM_FINISH_CANCELLED, NULL, NULL, 0, 0);
    }
    if (s->slots != NULL) {
        for (int32_t i = 0; i < s->p.n_parallel; i++) {
            tm_ctx_free(s->slots[i].ctx);
            tm_detokenizer_free(s->slots[i].detok);
            tm_sampler_free(s->slots[i].smp);
            tm_free(s->slots[i].hold);
            tm_free(s->slots[i].emit);
        }
        tm_free(s->slots);
    }
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    tm_free(s);
}
