/*
 * tm_sampler.h - choose the next token from logits: penalties, temperature,
 * top-k, top-p, min-p, then a seeded draw (or greedy).
 *
 * Order (llama.cpp's default chain): repetition / presence / frequency
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
} tm_sampler_params;

tm_sampler_params tm_sampler_params_default(void);

tm_status tm_sampler_init(const tm_sampler_params *p, int32_t n_vocab, tm_sampler **out);
void      tm_sampler_free(tm_sampler *s); /* NULL is a no-op */

/* Samples from n_vocab logits (not modified). Never allocates. */
int32_t tm_sampler_sample(tm_sampler *s, const float *logits);
/* Records a token (prompt or generated) in the penalty history. */
void tm_sampler_accept(tm_sampler *s, int32_t token);
/* Forgets the history and re-seeds the RNG. */
void tm_sampler_reset(tm_sampler *s);

#endif /* TM_SAMPLER_H */
