/*
 * tm_sched.h - the generation scheduler: one thread owns the multi-sequence
 * tm_ctx (paged KV pool, prefix cache) and runs every active sequence in one
 * batch per step (continuous batching, chunked prefill); other threads submit
 * requests and read text back. Design: docs/scheduler.md.
 *
 *     tm_sched_params sp = tm_sched_params_default();
 *     sp.model = model; sp.tokenizer = tok; sp.n_parallel = 4;
 *     sp.wakeup = on_output; sp.wakeup_user = loop;     // called on the scheduler thread
 *     tm_sched *s = NULL;
 *     if (tm_sched_init(&sp, &s) != TM_OK) die(tm_last_error());
 *     tm_gen_params gp = tm_gen_params_default();
 *     gp.max_tokens = 64;
 *     tm_sched_req *r = NULL;
 *     tm_sched_req_init(&gp, ids, n_ids, &r);            // copies ids and stop strings
 *     if (tm_sched_submit(s, r) == TM_ERR_FULL) ...     // queue full: answer 429
 *     ... on wakeup: tm_sched_req_poll(r, &out); send out.text; tm_free(out.text);
 *     tm_sched_req_release(r);                           // also cancels it if still running
 *     tm_sched_free(s);
 *
 * Threads: tm_sched_submit, tm_sched_get_stats and everything on a
 * tm_sched_req may be called from any thread. The wakeup callback runs on the
 * scheduler thread and must only signal (e.g. lws_cancel_service). The model
 * and tokenizer are borrowed and must outlive the scheduler.
 */
#ifndef TM_SCHED_H
#define TM_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_model.h"
#include "tm/tm_sampler.h"
#include "tm/tm_status.h"
#include "tm/tm_tokenizer.h"

typedef struct tm_sched     tm_sched;     /* opaque */
typedef struct tm_sched_req tm_sched_req; /* opaque, reference counted */

typedef void (*tm_sched_wakeup_fn)(void *user);

typedef struct tm_sched_params {
    const tm_model     *model;      /* borrowed; required */
    const tm_tokenizer *tokenizer;  /* borrowed; NULL: no text out, token counts only */
    int32_t             n_parallel; /* concurrent sequences; default 1 */
    int32_t             n_ctx;      /* positions per sequence; 0 = min(n_ctx_train, 2048) */
    int32_t             n_batch;    /* token budget of one step (decodes + prefill chunks);
                                       default 128; raised to n_parallel if smaller */
    int32_t            n_threads;   /* compute threads; 0 = online CPUs */
    int32_t            max_queue;   /* waiting requests before submit says FULL; default 64 */
    tm_sched_wakeup_fn wakeup;      /* optional: new output for some request */
    void              *wakeup_user;
    /* KV pool (paged, shared by all sequences; docs/scheduler.md) */
    int32_t     n_kv_blocks;     /* blocks; 0 = n_parallel * ceil(n_ctx / kv_block_size) */
    int32_t     kv_block_size;   /* positions per block, a power of two; 0 = 16 */
    tm_dtype    kv_dtype;        /* cache element type: TM_DTYPE_F16 (default) or TM_DTYPE_F32 */
    tm_act_type act_type;        /* matmul activation precision; default TM_ACT_DEFAULT */
    bool        no_prefix_cache; /* true: never reuse cached prompt blocks */
    /* Logits rows one step may spend on prompt log-probabilities (requests with
     * n_prompt_logprobs >= 0 prefill at most this many tokens per step): the
     * context reserves n_parallel + this many rows (n_vocab floats each, capped at
     * n_batch). 0 = 64; -1 = none, and such requests are refused at submit. */
    int32_t n_prompt_logits;
} tm_sched_params;

tm_sched_params tm_sched_params_default(void);

#define TM_SCHED_MAX_STOP 4 /* stop strings per request (OpenAI allows up to 4) */

typedef struct tm_gen_params {
    tm_sampler_params sampler;
    int32_t           max_tokens; /* <= 0: until EOS or the context is full */
    bool              ignore_eos;
    const char       *stop[TM_SCHED_MAX_STOP]; /* NUL-terminated; copied by req_init */
    int32_t           n_stop;
    /* -1 (default): no log-probabilities. 0..TM_SAMPLER_MAX_LOGPROBS: each
     * generated token's log-probability under the raw logits plus that many
     * most likely alternatives (tm_sched_out.logprobs). sampler.bias_id/bias
     * (logit_bias) are copied by req_init. */
    int32_t n_logprobs;
    /* -1 (default): none. 0..TM_SAMPLER_MAX_LOGPROBS: every prompt token after the
     * first gets a record too (its log-probability given the tokens before it,
     * plus that many alternatives; tm_sched_out.prompt_logprobs), as OpenAI's
     * legacy completions with echo. Such a prompt is always prefilled in full
     * (no prefix-cache reuse: every position's logits are needed). */
    int32_t n_prompt_logprobs;
    /* Prefill the prompt (for prompt_logprobs) and sample nothing: the request
     * ends with TM_FINISH_LENGTH and no tokens (completions max_tokens 0 + echo).
     * max_tokens is ignored. */
    bool prefill_only;
    /* The answer's text continues the prompt's (echo): its first token is not
     * decoded as the start of a text (tm_detokenizer_continue). */
    bool continue_text;
} tm_gen_params;

tm_gen_params tm_gen_params_default(void);

typedef enum tm_finish {
    TM_FINISH_NONE = 0,      /* still running */
    TM_FINISH_STOP = 1,      /* EOS or a stop string */
    TM_FINISH_LENGTH = 2,    /* max_tokens or the context is full */
    TM_FINISH_CANCELLED = 3, /* tm_sched_req_cancel, or the scheduler shut down */
    TM_FINISH_ERROR = 4,     /* a decode failed; see tm_sched_out.error */
} tm_finish;

/* One generated token's log-probabilities (log-softmax of the raw logits,
 * before bias, penalties and temperature). The EOS that ends a sequence has
 * none; tokens of a matched stop string do. */
typedef struct tm_sched_logprob {
    int32_t token;
    float   logprob;
    int32_t n_top; /* = the request's n_logprobs */
    int32_t top_token[TM_SAMPLER_MAX_LOGPROBS];
    float   top_logprob[TM_SAMPLER_MAX_LOGPROBS]; /* descending */
} tm_sched_logprob;

/* What tm_sched_req_poll hands over since the previous poll. */
typedef struct tm_sched_out {
    char     *text;             /* new UTF-8 bytes (NUL-terminated) or NULL; caller tm_free()s */
    size_t    len;              /* bytes of text */
    int32_t   n_prompt;         /* tokens of the prompt */
    int32_t   n_completion;     /* tokens generated so far (the stop string's tokens included) */
    bool      started;          /* the first token was sampled (prefill is over) */
    tm_finish finish;           /* TM_FINISH_NONE while running */
    char      error[160];       /* message when finish == TM_FINISH_ERROR */
    int32_t   n_cached;         /* prompt tokens served from the prefix cache, not prefilled
                                   (OpenAI usage.prompt_tokens_details.cached_tokens) */
    tm_sched_logprob *logprobs; /* n_logprobs >= 0: one per new token, or NULL; caller
                                   tm_free()s. A token's record may come one poll before
                                   its text (text held back for a stop string or an
                                   incomplete UTF-8 sequence) */
    int32_t n_logprobs;         /* records in logprobs */
    /* n_prompt_logprobs >= 0: the prompt's records, handed over once, at the
     * first poll after the whole prompt is in the cache (never for a request that
     * ended before); caller tm_free()s. prompt_logprobs[i] scores prompt token
     * i + 1; the first prompt token has no record (nothing precedes it). */
    tm_sched_logprob *prompt_logprobs;
    int32_t           n_prompt_logprobs; /* n_prompt - 1 when handed over, else 0 */
    bool              prompt_done;       /* prompt_logprobs were handed over (now or before)
                                            or none were asked for and prefill is over */
} tm_sched_out;

/* Snapshot of the scheduler's counters (for /metrics). */
#define TM_SCHED_TTFT_BUCKETS 12
extern const double tm_sched_ttft_bounds_s[TM_SCHED_TTFT_BUCKETS]; /* upper bounds, seconds */

typedef struct tm_sched_stats {
    int32_t  n_waiting;         /* submitted, not yet admitted */
    int32_t  n_running;         /* admitted (holding a sequence slot) */
    int32_t  n_parallel;        /* sequence slots */
    int64_t  kv_used;           /* positions of KV blocks in use (blocks * block size) */
    int64_t  kv_total;          /* positions of the KV pool (n_kv_blocks * block size) */
    uint64_t n_finished;        /* requests retired, any reason */
    uint64_t n_cancelled;       /* of those, cancelled */
    uint64_t prompt_tokens;     /* total prompt tokens prefilled */
    uint64_t generation_tokens; /* total tokens sampled */
    uint64_t n_steps;           /* scheduler iterations that ran the model */
    uint64_t ttft_count;        /* time to first token, from submit */
    double   ttft_sum_s;
    uint64_t ttft_bucket[TM_SCHED_TTFT_BUCKETS]; /* cumulative counts per upper bound */
    /* paged KV pool and prefix cache */
    int32_t  kv_blocks_total;      /* blocks in the pool */
    int32_t  kv_blocks_free;       /* free or cached-unreferenced (evictable) */
    int32_t  kv_blocks_cached;     /* of the free ones, kept for the prefix cache */
    uint64_t prefix_hits;          /* requests that reused at least one cached block */
    uint64_t prefix_cached_tokens; /* prompt tokens reused instead of prefilled */
    uint64_t n_batch_tokens;       /* tokens run through the model (all steps) */
    uint64_t n_split_steps;        /* steps whose batch exceeded the context's scratch
                                      (TM_ERR_FULL) and ran in halves instead */
} tm_sched_stats;

/* Creates the contexts and starts the scheduler thread. *out stays NULL on failure. */
tm_status tm_sched_init(const tm_sched_params *params, tm_sched **out);
/* Stops the thread; requests still queued or running finish as CANCELLED. NULL is a no-op. */
void tm_sched_free(tm_sched *s);

int32_t tm_sched_n_ctx(const tm_sched *s); /* positions per sequence */
void    tm_sched_get_stats(tm_sched *s, tm_sched_stats *out);

/* A request with one reference held by the caller. prompt (n_prompt >= 1 ids)
 * and gen's stop strings are copied. TM_ERR_INVALID for a bad count. Prompt
 * log-probability records (n_prompt_logprobs >= 0) are allocated at admission,
 * once the prompt is known to fit the context. */
tm_status tm_sched_req_init(const tm_gen_params *gen, const int32_t *prompt, int32_t n_prompt,
                            tm_sched_req **out);
/* Queues r (the scheduler takes its own reference). TM_ERR_FULL when max_queue
 * requests are already waiting; TM_ERR_INVALID when the prompt does not fit
 * the context, or r asks for prompt log-probabilities and n_prompt_logits is -1.
 * On error the scheduler holds no reference. */
tm_status tm_sched_submit(tm_sched *s, tm_sched_req *r);
/* Takes the output produced since the last poll (see tm_sched_out). */
void tm_sched_req_poll(tm_sched_req *r, tm_sched_out *out);
/* Asks the scheduler to drop r at its next step (client gone). Idempotent. */
void tm_sched_req_cancel(tm_sched_req *r);
/* Drops the caller's reference and cancels r; NULL is a no-op. */
void tm_sched_req_release(tm_sched_req *r);
/* Opaque caller tag (e.g. the connection); not touched by the scheduler. */
void  tm_sched_req_set_user(tm_sched_req *r, void *user);
void *tm_sched_req_user(const tm_sched_req *r);

#endif /* TM_SCHED_H */
