/*
 * sched.c - the continuous-batching generation scheduler (STYLE.md snippet 8;
 * docs/scheduler.md has the whole design).
 *
 * DESIGN
 * ------
 * One scheduler thread owns the multi-sequence tm_ctx (its paged KV pool and
 * prefix cache), every sampler and streaming detokenizer; no other thread
 * touches them. Requests enter through the inbox (tm_sched_submit, any thread,
 * a mutex-guarded intrusive list plus a condition variable the scheduler
 * sleeps on when idle) and leave through a per-request output buffer (a mutex
 * held only for a memcpy) plus the wakeup callback, which the server turns
 * into lws_cancel_service().
 *
 * Each iteration ("step"):
 *   1. move the inbox into the private waiting list;
 *   2. retire cancelled sequences (their KV blocks go back at once), admit
 *      waiting requests in arrival order while a slot (= sequence id) is free
 *      and the pool has blocks for the uncached part of the prompt; a prompt
 *      starting with cached full blocks attaches them and skips their prefill;
 *   3. build ONE batch: the next token of every generating sequence, then
 *      prefill chunks of prompts (chunked prefill) within the n_batch token
 *      budget and the free blocks; run tm_ctx_decode_batch once;
 *   4. sample each sequence that got logits, detokenize, match stop strings,
 *      register newly prefilled full prompt blocks in the prefix cache, publish
 *      text, retire finished sequences, wake the server once.
 *
 * Prompt log-probabilities (gen.n_prompt_logprobs >= 0, legacy completions'
 * echo + logprobs): such a prompt is prefilled in full (no prefix-cache attach)
 * with logits wanted at every position; the row of position p scores prompt
 * token p + 1 into the request's record array (allocated at admission: bounded
 * by the context). Those rows come from a per-step budget (n_prompt_logits) on
 * top of one row per sequence, which is what the context reserves; other
 * requests' batches are unchanged. The records are handed to the poller once
 * the whole prompt is in the cache.
 *
 * Invariants: a slot's sequence id is its index; a free slot's sequence holds
 * no blocks; after tm_sched_init() a step allocates only for request output
 * (text buffers), never for the model or the KV pool.
 *
 * Threads: pthreads directly (there is no tm_thread.h yet). The stats block
 * and the inbox share s->mu. Requests are reference counted (server + scheduler).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "tm/tm_kvcache.h"
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
    int32_t             *bias_id; /* gen.sampler.bias_id/bias point here; owned */
    float               *bias;
    int32_t             *prompt; /* n_prompt ids, owned */
    int32_t              n_prompt;
    double               t_submit_s; /* monotonic */
    void                *user;

    /* output, guarded by mu: scheduler appends, poller takes */
    pthread_mutex_t   mu;
    char             *out;
    size_t            out_len, out_cap;
    int32_t           n_completion;
    int32_t           n_cached; /* prompt tokens from the prefix cache */
    tm_sched_logprob *lp;       /* records not yet polled */
    int32_t           n_lp, lp_cap;
    /* prompt records [n_prompt - 1] (gen.n_prompt_logprobs >= 0): allocated and
     * written by the scheduler thread before it sets prefilled; after that only
     * the poller touches them (it takes the array once) */
    tm_sched_logprob *plp;
    bool              prefilled; /* the whole prompt is in the cache (plp complete) */
    bool              plp_taken; /* plp was handed to the poller */
    bool              started;
    tm_finish         finish;
    char              error[160];
};

typedef struct sched_slot {
    tm_detokenizer  *detok;       /* NULL without a tokenizer */
    tm_sampler      *smp;         /* per request */
    tm_sched_req    *req;         /* NULL when free */
    int32_t          n_prefilled; /* prompt positions in the KV cache (cached ones included) */
    int32_t          n_gen;
    int32_t          last;     /* last sampled token, decoded next step */
    int32_t          chunk;    /* prompt tokens in this step's batch */
    uint64_t         admitted; /* admission order (older first when the pool is short) */
    char            *hold;     /* text held back while it may start a stop string */
    size_t           hold_len, hold_cap;
    char            *emit; /* text to publish this step */
    size_t           emit_len, emit_cap;
    tm_sched_logprob lp;   /* this step's token's log-probabilities (no allocation) */
    int32_t         *hist; /* [n_ctx]: the prompt, then the generated tokens (for the
                              prefix cache: a finished sequence registers its blocks) */
    bool      has_lp;      /* lp waits to be published */
    bool      plp;         /* the request wants prompt log-probabilities */
    tm_finish finish;
} sched_slot;

struct tm_sched {
    tm_sched_params p;
    int32_t         n_ctx;
    int32_t         n_vocab;
    int32_t         eos_id;
    tm_ctx         *ctx;           /* n_seq_max = n_parallel; sequence i belongs to slots[i] */
    tm_kvcache     *kv;            /* ctx's block manager */
    sched_slot     *slots;         /* p.n_parallel */
    int32_t         n_cap;         /* tokens per batch (ctx n_batch) */
    int32_t         n_plp_rows;    /* logits rows per step for prompt log-probabilities */
    int32_t        *b_tok, *b_seq; /* [n_cap] the step's batch */
    int32_t        *b_pos;         /* [n_cap] prompt position of a prefill token, else -1 */
    bool           *b_want;        /* [n_cap] */
    uint64_t        n_admitted;
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
    return (tm_sched_params){.n_parallel = 1,
                             .n_batch = 128,
                             .max_queue = 64,
                             .kv_dtype = TM_DTYPE_F16,
                             .act_type = TM_ACT_DEFAULT};
}

tm_gen_params tm_gen_params_default(void) {
    tm_gen_params g = {0};
    g.sampler = tm_sampler_params_default();
    g.max_tokens = 16;
    g.n_logprobs = -1;
    g.n_prompt_logprobs = -1;
    return g;
}

/* ---- requests ------------------------------------------------------------------ */

static void req_destroy(tm_sched_req *r) {
    for (int i = 0; i < TM_SCHED_MAX_STOP; i++)
        tm_free(r->stop[i]);
    tm_free(r->prompt);
    tm_free(r->bias_id);
    tm_free(r->bias);
    tm_free(r->lp);
    tm_free(r->plp);
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
    if (gen->n_logprobs < -1 || gen->n_logprobs > TM_SAMPLER_MAX_LOGPROBS)
        return tm_fail(TM_ERR_INVALID, "sched: n_logprobs %d outside [-1, %d]", gen->n_logprobs,
                       TM_SAMPLER_MAX_LOGPROBS);
    if (gen->n_prompt_logprobs < -1 || gen->n_prompt_logprobs > TM_SAMPLER_MAX_LOGPROBS)
        return tm_fail(TM_ERR_INVALID, "sched: n_prompt_logprobs %d outside [-1, %d]",
                       gen->n_prompt_logprobs, TM_SAMPLER_MAX_LOGPROBS);
    if (gen->sampler.n_bias < 0 ||
        (gen->sampler.n_bias > 0 && (gen->sampler.bias_id == NULL || gen->sampler.bias == NULL)))
        return tm_fail(TM_ERR_INVALID, "sched: bad logit bias");
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
    r->gen.sampler.bias_id = NULL;
    r->gen.sampler.bias = NULL;
    if (gen->sampler.n_bias > 0) { /* the sampler is made at admission: keep a copy */
        const size_t nb = (size_t)gen->sampler.n_bias;
        r->bias_id = tm_malloc(nb * sizeof *r->bias_id);
        r->bias = tm_malloc(nb * sizeof *r->bias);
        if (r->bias_id == NULL || r->bias == NULL)
            goto nomem;
        memcpy(r->bias_id, gen->sampler.bias_id, nb * sizeof *r->bias_id);
        memcpy(r->bias, gen->sampler.bias, nb * sizeof *r->bias);
        r->gen.sampler.bias_id = r->bias_id;
        r->gen.sampler.bias = r->bias;
    }
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
    if (r->n_lp > 0) {
        out->logprobs = r->lp;
        out->n_logprobs = r->n_lp;
        r->lp = NULL;
        r->n_lp = r->lp_cap = 0;
    }
    if (r->prefilled && r->gen.n_prompt_logprobs >= 0 && !r->plp_taken) {
        out->prompt_logprobs = r->plp; /* NULL for a one-token prompt */
        out->n_prompt_logprobs = r->plp != NULL ? r->n_prompt - 1 : 0;
        r->plp = NULL;
        r->plp_taken = true;
    }
    out->prompt_done = r->gen.n_prompt_logprobs >= 0 ? r->plp_taken : r->prefilled;
    out->n_prompt = r->n_prompt;
    out->n_completion = r->n_completion;
    out->n_cached = r->n_cached;
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

/* Appends the slot's pending log-probability record to r's queue; caller holds
 * r->mu. False on out-of-memory. */
static bool req_push_lp(tm_sched_req *r, const tm_sched_logprob *lp) {
    if (r->n_lp == r->lp_cap) {
        int32_t           nc = r->lp_cap ? r->lp_cap * 2 : 16;
        tm_sched_logprob *nb = tm_realloc(r->lp, (size_t)nc * sizeof *nb);
        if (nb == NULL)
            return false;
        r->lp = nb;
        r->lp_cap = nc;
    }
    r->lp[r->n_lp++] = *lp;
    return true;
}

/* ---- submit and stats ------------------------------------------------------------ */

tm_status tm_sched_submit(tm_sched *s, tm_sched_req *r) {
    if (r->n_prompt >= s->n_ctx)
        return tm_fail(TM_ERR_INVALID, "prompt has %d tokens, the context holds %d", r->n_prompt,
                       s->n_ctx);
    if (r->gen.n_prompt_logprobs >= 0 && s->n_plp_rows == 0)
        return tm_fail(TM_ERR_INVALID, "sched: prompt log-probabilities are turned off "
                                       "(n_prompt_logits -1)");
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
                             const char *text, size_t len, int32_t n_gen,
                             const tm_sched_logprob *lp, bool prefilled) {
    pthread_mutex_lock(&r->mu);
    r->prefilled |= prefilled;
    if ((len > 0 && !buf_append(&r->out, &r->out_len, &r->out_cap, text, len)) ||
        (lp != NULL && !req_push_lp(r, lp))) {
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

static int32_t slot_seq(const tm_sched *s, const sched_slot *sl) {
    return (int32_t)(sl - s->slots);
}

static void slot_retire(tm_sched *s, sched_slot *sl, tm_finish why, const char *error) {
    /* A finished sequence's full blocks, generated tokens included, become reusable: the
     * same prompt again then attaches all but its last token (the head of the block its
     * answer filled, tm_ctx_seq_attach_partial). Only positions whose rows the cache
     * holds count (the last sampled token was never run). */
    if (!s->p.no_prefix_cache && (why == TM_FINISH_STOP || why == TM_FINISH_LENGTH) &&
        sl->n_prefilled == sl->req->n_prompt && sl->req->n_prompt + sl->n_gen <= s->n_ctx)
        tm_kvcache_seq_register(s->kv, slot_seq(s, sl), sl->hist, sl->req->n_prompt + sl->n_gen, 0);
    sched_finish_req(s, sl->req, why, error, sl->emit, sl->emit_len, sl->n_gen,
                     sl->has_lp ? &sl->lp : NULL, sl->n_prefilled == sl->req->n_prompt);
    sl->req = NULL;
    sl->has_lp = false;
    sl->emit_len = 0;
    sl->hold_len = 0;
    sl->chunk = 0;
    tm_sampler_free(sl->smp);
    sl->smp = NULL;
    tm_ctx_seq_remove(s->ctx, slot_seq(s, sl)); /* blocks back now (registered ones cached) */
    pthread_mutex_lock(&s->mu);
    s->stats.n_running--;
    pthread_mutex_unlock(&s->mu);
}

/* Admits r into the free slot sl when the pool has room for the uncached part
 * of its prompt plus its first generated token, keeping `reserve` blocks for
 * the running sequences' next tokens. Returns TM_ERR_FULL (nothing changed)
 * when it must wait. */
static tm_status slot_start(tm_sched *s, sched_slot *sl, tm_sched_req *r, int32_t reserve) {
    const int32_t seq = slot_seq(s, sl);
    const bool    plp = r->gen.n_prompt_logprobs >= 0;
    int32_t       cached = 0;
    /* At least one prompt token is run: its logits start the answer. Prompt
     * log-probabilities need every position's logits: no cached rows then. */
    if (!s->p.no_prefix_cache && !plp) {
        cached = tm_kvcache_seq_attach_prefix(s->kv, seq, r->prompt, r->n_prompt - 1, 0);
        /* and the head of a cached block that continues it (a repeated or extended
         * prompt then recomputes only its last token, not up to a block of them) */
        cached += tm_ctx_seq_attach_partial(s->ctx, seq, r->prompt, r->n_prompt - 1, 0);
    }
    const int32_t need = tm_kvcache_blocks_needed(s->kv, seq, r->n_prompt - cached + 1);
    if (need + reserve > tm_kvcache_n_free(s->kv)) {
        tm_ctx_seq_remove(s->ctx, seq); /* attached blocks back to the cache */
        return TM_ERR_FULL;
    }
    if (plp && r->n_prompt > 1 && r->plp == NULL) {
        /* n_prompt < n_ctx (checked at submit): bounded by the context */
        r->plp = tm_malloc((size_t)(r->n_prompt - 1) * sizeof *r->plp);
        if (r->plp == NULL)
            return tm_fail(TM_ERR_NOMEM, "sched: prompt log-probabilities of %d tokens",
                           r->n_prompt);
    }
    TM_TRY(tm_sampler_init(&r->gen.sampler, s->n_vocab, &sl->smp));
    sl->req = r;
    sl->n_prefilled = cached;
    sl->n_gen = 0;
    sl->chunk = 0;
    sl->admitted = s->n_admitted++;
    sl->hold_len = sl->emit_len = 0;
    sl->has_lp = false;
    sl->plp = plp;
    sl->finish = TM_FINISH_NONE;
    if (sl->detok != NULL && r->gen.continue_text)
        tm_detokenizer_continue(sl->detok);
    else if (sl->detok != NULL)
        tm_detokenizer_reset(sl->detok);
    for (int32_t i = 0; i < r->n_prompt; i++)
        tm_sampler_accept(sl->smp, r->prompt[i]);
    memcpy(sl->hist, r->prompt, (size_t)r->n_prompt * sizeof *sl->hist); /* < n_ctx (submit) */
    pthread_mutex_lock(&r->mu);
    r->n_cached = cached;
    pthread_mutex_unlock(&r->mu);
    pthread_mutex_lock(&s->mu);
    s->stats.n_running++;
    if (cached > 0) {
        s->stats.prefix_hits++;
        s->stats.prefix_cached_tokens += (uint64_t)cached;
    }
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
static void slot_sample(tm_sched *s, sched_slot *sl, const float *logits, double now) {
    tm_sched_req *r = sl->req;
    int32_t       tok = tm_sampler_sample(sl->smp, logits);
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
    if (!eos && r->gen.n_logprobs >= 0) {
        sl->lp.token = tok;
        sl->lp.n_top = r->gen.n_logprobs;
        tm_sampler_logprobs(logits, s->n_vocab, tok, r->gen.n_logprobs, &sl->lp.logprob,
                            sl->lp.top_token, sl->lp.top_logprob);
        sl->has_lp = true;
    }
    if (!eos) {
        if (r->n_prompt + sl->n_gen < s->n_ctx)
            sl->hist[r->n_prompt + sl->n_gen] = tok;
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
                           tm_ctx_seq_n_past(s->ctx, slot_seq(s, sl)) >= s->n_ctx);
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

/* Takes logits row `logits` of batch token i: the next token of a generating
 * sequence or of a prompt that is now complete (sampled), or a prompt position
 * p whose row scores prompt token p + 1 (prompt log-probabilities). */
static void sched_take_row(tm_sched *s, int32_t i, const float *logits, double now) {
    sched_slot   *sl = &s->slots[s->b_seq[i]];
    tm_sched_req *r = sl->req;
    const int32_t p = s->b_pos[i];
    TM_ASSERT(r != NULL && logits != NULL); /* every wanted row comes back */
    if (p >= 0 && p + 1 < r->n_prompt) {
        TM_ASSERT(sl->plp && r->plp != NULL); /* only such prompts want inner rows */
        tm_sched_logprob *rec = &r->plp[p];
        rec->token = r->prompt[p + 1];
        rec->n_top = r->gen.n_prompt_logprobs;
        tm_sampler_logprobs(logits, s->n_vocab, rec->token, rec->n_top, &rec->logprob,
                            rec->top_token, rec->top_logprob);
        return;
    }
    if (r->gen.prefill_only) { /* the prompt is scored: nothing is generated */
        sl->finish = TM_FINISH_LENGTH;
        return;
    }
    slot_sample(s, sl, logits, now);
}

/* Runs tokens [a, e) of the step's batch (whole sequences' segments) and
 * samples the sequences that got logits; on a scratch shortfall it halves the
 * range at a segment boundary. A single segment that still fails ends its
 * request with an error. */
static void sched_run_split(tm_sched *s, int32_t a, int32_t e) {
    tm_batch  b = {.n_tokens = e - a,
                   .token = s->b_tok + a,
                   .seq_id = s->b_seq + a,
                   .want_logits = s->b_want + a};
    tm_status st = tm_ctx_decode_batch(s->ctx, &b);
    if (st == TM_OK) {
        const double now = sched_now();
        for (int32_t i = a, k = 0; i < e; i++)
            if (s->b_want[i])
                sched_take_row(s, i, tm_ctx_logits(s->ctx, k++), now);
        return;
    }
    /* the segment boundary nearest the middle: a < m < e, b_seq[m - 1] != b_seq[m] */
    int32_t m = -1;
    if (st == TM_ERR_FULL) {
        const int32_t mid = a + (e - a) / 2;
        for (int32_t d = 0; m < 0 && (mid - d > a || mid + d < e); d++) {
            if (mid - d > a && s->b_seq[mid - d - 1] != s->b_seq[mid - d])
                m = mid - d;
            else if (mid + d < e && mid + d > a && s->b_seq[mid + d - 1] != s->b_seq[mid + d])
                m = mid + d;
        }
    }
    if (m < 0) { /* one segment that cannot run: its request ends with the error */
        sched_slot *sl = &s->slots[s->b_seq[a]];
        if (sl->req != NULL)
            slot_retire(s, sl, TM_FINISH_ERROR, tm_last_error());
        return;
    }
    sched_run_split(s, a, m);
    sched_run_split(s, m, e);
}

/* Builds one batch of every generating sequence's next token and prefill
 * chunks, runs it, and samples the sequences that got logits. */
static void sched_run_step(tm_sched *s) {
    int32_t       n = 0;
    int32_t       plp_left = s->n_plp_rows; /* rows left for prompt log-probabilities */
    int32_t       free_blk = tm_kvcache_n_free(s->kv);
    const int32_t bs = tm_kvcache_block_size(s->kv);
    sched_slot   *starved = NULL; /* youngest generating sequence that found no block */
    /* decode tokens first: running streams keep flowing whatever is prefilling */
    for (int32_t i = 0; i < s->p.n_parallel; i++) {
        sched_slot *sl = &s->slots[i];
        sl->chunk = 0;
        if (sl->req == NULL || sl->n_prefilled < sl->req->n_prompt)
            continue;
        int32_t need = tm_kvcache_blocks_needed(s->kv, i, 1);
        if (need > free_blk) {
            if (starved == NULL || sl->admitted > starved->admitted)
                starved = sl;
            continue;
        }
        free_blk -= need;
        s->b_tok[n] = sl->last;
        s->b_seq[n] = i;
        s->b_pos[n] = -1;
        s->b_want[n] = true;
        n++;
    }
    /* then prompt chunks, oldest admission first, within the token budget and the
     * blocks left */
    for (;;) {
        sched_slot *sl = NULL;
        for (int32_t i = 0; i < s->p.n_parallel; i++) {
            sched_slot *c = &s->slots[i];
            if (c->req != NULL && c->chunk == 0 && c->n_prefilled < c->req->n_prompt &&
                (sl == NULL || c->admitted < sl->admitted))
                sl = c;
        }
        if (sl == NULL || n >= s->p.n_batch)
            break;
        const int32_t seq = slot_seq(s, sl), len = tm_ctx_seq_n_past(s->ctx, seq);
        const int32_t room = (len + bs - 1) / bs * bs - len; /* in the last block */
        int32_t       c = sl->req->n_prompt - sl->n_prefilled;
        if (c > s->p.n_batch - n)
            c = s->p.n_batch - n;
        if ((int64_t)c > (int64_t)room + (int64_t)free_blk * bs)
            c = room + free_blk * bs;
        if (sl->plp && c > plp_left) /* every position wants its logits row */
            c = plp_left;
        if (c <= 0) {
            sl->chunk = -1; /* waits for blocks (or logits rows) this step */
            continue;
        }
        free_blk -= tm_kvcache_blocks_needed(s->kv, seq, c);
        if (sl->plp)
            plp_left -= c;
        for (int32_t k = 0; k < c; k++, n++) {
            s->b_tok[n] = sl->req->prompt[sl->n_prefilled + k];
            s->b_seq[n] = seq;
            s->b_pos[n] = sl->n_prefilled + k;
            s->b_want[n] = sl->plp;
        }
        sl->chunk = c;
        if (sl->n_prefilled + c == sl->req->n_prompt)
            s->b_want[n - 1] = true; /* the prompt's last token starts the answer */
    }
    if (n == 0) {
        /* Nothing could run: the pool is exhausted by generating sequences. The
         * youngest ends (as if its context were full) so the others go on. */
        if (starved == NULL) /* only stuck prompts: the youngest gives way */
            for (int32_t i = 0; i < s->p.n_parallel; i++)
                if (s->slots[i].req != NULL &&
                    (starved == NULL || s->slots[i].admitted > starved->admitted))
                    starved = &s->slots[i];
        if (starved != NULL) {
            starved->finish = TM_FINISH_LENGTH;
            slot_release_text(starved, true);
        }
        return;
    }
    tm_batch  b = {.n_tokens = n, .token = s->b_tok, .seq_id = s->b_seq, .want_logits = s->b_want};
    tm_status st = tm_ctx_decode_batch(s->ctx, &b);
    bool      split = false;
    if (st == TM_ERR_FULL) {
        /* The context reserved its scratch by measuring a few batch shapes, and a
         * batch of another shape can need more (the plan's peak is not monotone
         * in the shape; see docs/scheduler.md). decode_batch changed nothing: run
         * the batch again in halves, split at sequence boundaries. */
        split = true;
        pthread_mutex_lock(&s->mu);
        s->stats.n_split_steps++;
        pthread_mutex_unlock(&s->mu);
        sched_run_split(s, 0, n);
    } else if (st != TM_OK) {
        for (int32_t i = 0; i < n; i++) {
            sched_slot *sl = &s->slots[s->b_seq[i]];
            if (sl->req != NULL && (i == 0 || s->b_seq[i - 1] != s->b_seq[i]))
                slot_retire(s, sl, TM_FINISH_ERROR, tm_last_error());
        }
        return;
    }
    uint64_t n_prompt_tok = 0;
    for (int32_t i = 0; i < s->p.n_parallel; i++) {
        sched_slot *sl = &s->slots[i];
        if (sl->req == NULL || sl->chunk <= 0)
            continue;
        sl->n_prefilled += sl->chunk;
        n_prompt_tok += (uint64_t)sl->chunk;
        if (!s->p.no_prefix_cache) /* full prompt blocks computed so far become reusable */
            tm_kvcache_seq_register(s->kv, i, sl->req->prompt, sl->n_prefilled, 0);
    }
    pthread_mutex_lock(&s->mu);
    s->stats.prompt_tokens += n_prompt_tok;
    s->stats.n_batch_tokens += (uint64_t)n;
    pthread_mutex_unlock(&s->mu);
    if (split) /* sampled by sched_run_split */
        return;
    const double now = sched_now();
    for (int32_t i = 0, k = 0; i < n; i++) /* rows come back in batch order */
        if (s->b_want[i])
            sched_take_row(s, i, tm_ctx_logits(s->ctx, k++), now);
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
        if (sl->emit_len == 0 && !sl->has_lp && (!started || r->started))
            continue;
        pthread_mutex_lock(&r->mu);
        bool ok = sl->emit_len == 0 ||
                  buf_append(&r->out, &r->out_len, &r->out_cap, sl->emit, sl->emit_len);
        if (ok && sl->has_lp)
            ok = req_push_lp(r, &sl->lp);
        sl->has_lp = false;
        r->n_completion = sl->n_gen;
        r->started = started;
        r->prefilled |= started; /* prompt records (if any) were written in run_step */
        pthread_mutex_unlock(&r->mu);
        sl->emit_len = 0;
        if (!ok)
            slot_retire(s, sl, TM_FINISH_ERROR, "out of memory");
        any = true;
    }
    return any;
}

/* KV pool counters into stats; caller holds s->mu. */
static void sched_pool_stats(tm_sched *s) {
    const int32_t nb = tm_kvcache_n_blocks(s->kv), fr = tm_kvcache_n_free(s->kv);
    const int64_t bs = tm_kvcache_block_size(s->kv);
    s->stats.kv_blocks_total = nb;
    s->stats.kv_blocks_free = fr;
    s->stats.kv_blocks_cached = tm_kvcache_n_cached_free(s->kv);
    s->stats.kv_used = (int64_t)(nb - fr) * bs;
    s->stats.kv_total = (int64_t)nb * bs;
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
                sl->has_lp = false;
                slot_retire(s, sl, TM_FINISH_CANCELLED, NULL);
                changed = true;
            }
        }
        /* Admit in arrival order while a slot and KV blocks are free; cancelled
         * waiting requests are dropped here. Each running sequence keeps one block
         * in reserve for its next token. */
        int32_t n_run = 0, promised = 0; /* blocks admitted prompts will still take */
        for (int32_t i = 0; i < s->p.n_parallel; i++) {
            const sched_slot *sl = &s->slots[i];
            if (sl->req == NULL)
                continue;
            n_run++;
            promised += tm_kvcache_blocks_needed(s->kv, i, sl->req->n_prompt - sl->n_prefilled);
        }
        while (s->wait_head != NULL) {
            tm_sched_req *r = s->wait_head;
            bool drop = stopping || atomic_load_explicit(&r->cancelled, memory_order_relaxed);
            sched_slot *free_slot = NULL;
            for (int32_t j = 0; j < s->p.n_parallel && free_slot == NULL; j++)
                if (s->slots[j].req == NULL)
                    free_slot = &s->slots[j];
            if (!drop && free_slot == NULL)
                break;
            tm_status st = TM_OK;
            if (!drop) {
                st = slot_start(s, free_slot, r, n_run + promised);
                if (st == TM_ERR_FULL && n_run > 0)
                    break; /* the pool is short: wait for running sequences to finish */
                if (st == TM_ERR_FULL)
                    st = tm_fail(TM_ERR_FULL,
                                 "sched: the KV pool (%d blocks) cannot hold a "
                                 "prompt of %d tokens",
                                 tm_kvcache_n_blocks(s->kv), r->n_prompt);
                else if (st == TM_OK) {
                    n_run++;
                    promised += tm_kvcache_blocks_needed(s->kv, slot_seq(s, free_slot),
                                                         r->n_prompt - free_slot->n_prefilled);
                }
            }
            s->wait_head = r->next;
            if (s->wait_head == NULL)
                s->wait_tail = NULL;
            r->next = NULL;
            pthread_mutex_lock(&s->mu);
            s->stats.n_waiting--;
            pthread_mutex_unlock(&s->mu);
            if (drop) {
                sched_finish_req(s, r, TM_FINISH_CANCELLED, NULL, NULL, 0, 0, NULL, false);
                changed = true;
            } else if (st != TM_OK) {
                sched_finish_req(s, r, TM_FINISH_ERROR, tm_last_error(), NULL, 0, 0, NULL, false);
                changed = true;
            }
        }
        if (stopping && s->wait_head == NULL) {
            if (changed && s->p.wakeup != NULL)
                s->p.wakeup(s->p.wakeup_user);
            break;
        }
        sched_run_step(s);
        changed |= sched_publish(s); /* finished sequences return their blocks here */
        pthread_mutex_lock(&s->mu);
        s->stats.n_steps++;
        sched_pool_stats(s);
        pthread_mutex_unlock(&s->mu);
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
    if (params->n_prompt_logits < -1)
        return tm_fail(TM_ERR_INVALID, "sched: n_prompt_logits %d (-1: none, 0: default)",
                       params->n_prompt_logits);
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
    /* every generating sequence's token fits one batch */
    s->n_cap = s->p.n_batch > params->n_parallel ? s->p.n_batch : params->n_parallel;
    s->p.n_batch = s->n_cap;
    /* Prompt log-probability rows per step: at most a batch. The context returns
     * one row per sequence plus these (at most n_cap). */
    s->n_plp_rows = params->n_prompt_logits == 0 ? 64 : params->n_prompt_logits;
    if (s->n_plp_rows < 0)
        s->n_plp_rows = 0;
    if (s->n_plp_rows > s->n_cap)
        s->n_plp_rows = s->n_cap;
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = s->n_ctx;
    cp.n_batch = s->n_cap;
    cp.n_threads = params->n_threads;
    cp.n_seq_max = params->n_parallel;
    cp.kv_block_size = params->kv_block_size;
    cp.n_kv_blocks = params->n_kv_blocks;
    cp.kv_dtype = params->kv_dtype;
    cp.act_type = params->act_type;
    const int64_t n_out = (int64_t)params->n_parallel + s->n_plp_rows;
    cp.n_out_max = n_out < s->n_cap ? (int32_t)n_out : s->n_cap;
    if ((st = tm_ctx_init(params->model, &cp, &s->ctx)) != TM_OK)
        goto fail;
    s->kv = tm_ctx_kvcache(s->ctx);
    s->b_tok = tm_calloc((size_t)s->n_cap, sizeof *s->b_tok);
    s->b_seq = tm_calloc((size_t)s->n_cap, sizeof *s->b_seq);
    s->b_want = tm_calloc((size_t)s->n_cap, sizeof *s->b_want);
    s->b_pos = tm_calloc((size_t)s->n_cap, sizeof *s->b_pos);
    if (s->b_tok == NULL || s->b_seq == NULL || s->b_want == NULL || s->b_pos == NULL) {
        st = TM_ERR_NOMEM;
        goto fail;
    }
    for (int32_t i = 0; i < params->n_parallel; i++) {
        if (params->tokenizer != NULL) {
            st = tm_detokenizer_init(params->tokenizer, true, &s->slots[i].detok);
            if (st != TM_OK)
                goto fail;
        }
        s->slots[i].hist = tm_calloc((size_t)s->n_ctx, sizeof *s->slots[i].hist);
        if (s->slots[i].hist == NULL) {
            st = TM_ERR_NOMEM;
            goto fail;
        }
    }
    s->stats.n_parallel = params->n_parallel;
    sched_pool_stats(s);
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
        sched_finish_req(s, r, TM_FINISH_CANCELLED, NULL, NULL, 0, 0, NULL, false);
    }
    if (s->slots != NULL) {
        for (int32_t i = 0; i < s->p.n_parallel; i++) {
            tm_detokenizer_free(s->slots[i].detok);
            tm_sampler_free(s->slots[i].smp);
            tm_free(s->slots[i].hold);
            tm_free(s->slots[i].emit);
            tm_free(s->slots[i].hist);
        }
        tm_free(s->slots);
    }
    tm_ctx_free(s->ctx);
    tm_free(s->b_tok);
    tm_free(s->b_seq);
    tm_free(s->b_want);
    tm_free(s->b_pos);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    tm_free(s);
}
