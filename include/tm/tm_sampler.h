/*
 * tm_sampler.h - choose the next token from logits: penalties, temperature,
 * top-k, top-p, min-p, then a seeded draw (or greedy).
 *
 * Order (llama.cpp's default chain): logit bias (OpenAI logit_bias, added to
 * the raw logits), then repetition / presence / frequency
 * penalties over the last penalty_last_n accepted tokens, then temperature;
 * temp <= 0 is greedy (argmax, lowest id on ties). Otherwise top-k, softmax,
 * top-p (smallest set with cumulative probability >= top_p), min-p (drop tokens
 * below min_p * p_max), renormalize and draw with the sampler's own RNG. The
 * same seed, logits and history give the same token on any machine.
 *
 *     tm_sampler_params sp = tm_sampler_params_default();
 *     sp.temp = 0.8f; sp.top_p = 0.95f; sp.seed = 42;
 *     tm_sampler *s = NULL;
 *     if (tm_sampler_init(&sp, n_vocab, &s) != TM_OK) die(tm_last_error());
 *     int32_t tok = tm_sampler_sample(s, logits);   // no heap allocation
 *     tm_sampler_accept(s, tok);                    // feeds the penalties
 *     tm_sampler_free(s);
 *
 * Threads: a tm_sampler is used by one thread at a time.
 */
#ifndef TM_SAMPLER_H
#define TM_SAMPLER_H

#include <stdint.h>

#include "tm/tm_status.h"

typedef struct tm_sampler tm_sampler; /* opaque */

typedef struct tm_sampler_params {
    float    temp;              /* <= 0: greedy. Default 0.8 */
    int32_t  top_k;             /* <= 0: off. Default 40 */
    float    top_p;             /* >= 1: off. Default 0.95 */
    float    min_p;             /* <= 0: off. Default 0.05 */
    float    repeat_penalty;    /* 1: off. Positive logits divided, negative multiplied */
    float    presence_penalty;  /* subtracted once per seen token. Default 0 */
    float    frequency_penalty; /* subtracted per occurrence. Default 0 */
    int32_t  penalty_last_n;    /* history window for penalties. Default 64 */
    uint64_t seed;              /* RNG seed. Default 0x5eed */
    /* logit_bias: bias[i] is added to the logit of token bias_id[i] before the
     * penalties. Borrowed; tm_sampler_init copies them. Default none. */
    const int32_t *bias_id;
    const float   *bias;
    int32_t        n_bias;
} tm_sampler_params;

#define TM_SAMPLER_MAX_LOGPROBS 20 /* alternatives per position (OpenAI top_logprobs) */

tm_sampler_params tm_sampler_params_default(void);

tm_status tm_sampler_init(const tm_sampler_params *p, int32_t n_vocab, tm_sampler **out);
void      tm_sampler_free(tm_sampler *s); /* NULL is a no-op */

/* Samples from n_vocab logits (not modified). Never allocates. */
int32_t tm_sampler_sample(tm_sampler *s, const float *logits);
/* Records a token (prompt or generated) in the penalty history. */
void tm_sampler_accept(tm_sampler *s, int32_t token);
/* Forgets the history and re-seeds the RNG. */
void tm_sampler_reset(tm_sampler *s);

/* Log-probabilities under the model's own distribution: log-softmax of the raw
 * logits (no bias, penalties or temperature). *token_lp gets token's; top_id
 * and top_lp get the k (<= TM_SAMPLER_MAX_LOGPROBS) most likely tokens,
 * descending (ties: lower id first). Pure; never allocates; any thread. */
void tm_sampler_logprobs(const float *logits, int32_t n_vocab, int32_t token, int32_t k,
                         float *token_lp, int32_t *top_id, float *top_lp);

#endif /* TM_SAMPLER_H */
