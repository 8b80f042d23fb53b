/*
 * sampler.c - token sampling (tm_sampler.h).
 *
 * DESIGN
 * - Every buffer is sized at init ([n_vocab] candidates, [n_vocab] counts, the
 *   history ring); sampling never allocates.
 * - Determinism: a splitmix64-seeded xoshiro256** RNG of our own, uniform
 *   doubles from its top 53 bits; candidate order is fully defined (sort by
 *   logit descending, then id ascending), so results do not depend on qsort's
 *   stability or the platform's libm beyond expf.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tm/tm_sampler.h"

typedef struct smp_cand {
    int32_t id;
    float   logit;
    float   p;
} smp_cand;

struct tm_sampler {
    tm_sampler_params p;
    int32_t           n_vocab;
    smp_cand         *cand;  /* [n_vocab] */
    int32_t          *count; /* [n_vocab] occurrences in the history window */
    float            *bias;  /* [n_vocab] logit_bias, or NULL when none */
    int32_t          *hist;  /* ring of penalty_last_n tokens */
    int32_t           n_hist, hist_pos;
    uint64_t          rng[4];
};

tm_sampler_params tm_sampler_params_default(void) {
    return (tm_sampler_params){.temp = 0.8f,
                               .top_k = 40,
                               .top_p = 0.95f,
                               .min_p = 0.05f,
                               .repeat_penalty = 1.0f,
                               .presence_penalty = 0.0f,
                               .frequency_penalty = 0.0f,
                               .penalty_last_n = 64,
                               .seed = 0x5eed};
}

static uint64_t smp_splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t smp_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t smp_next(tm_sampler *s) {
    uint64_t *r = s->rng;
    uint64_t  out = smp_rotl(r[1] * 5, 7) * 9, t = r[1] << 17;
    r[2] ^= r[0];
    r[3] ^= r[1];
    r[1] ^= r[2];
    r[0] ^= r[3];
    r[2] ^= t;
    r[3] = smp_rotl(r[3], 45);
    return out;
}

static double smp_uniform(tm_sampler *s) { return (double)(smp_next(s) >> 11) * 0x1.0p-53; }

void tm_sampler_reset(tm_sampler *s) {
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = smp_splitmix(&x);
    memset(s->count, 0, (size_t)s->n_vocab * sizeof *s->count);
    s->n_hist = s->hist_pos = 0;
}

tm_status tm_sampler_init(const tm_sampler_params *p, int32_t n_vocab, tm_sampler **out) {
    *out = NULL;
    if (n_vocab < 1)
        return tm_fail(TM_ERR_INVALID, "sampler: n_vocab %d", n_vocab);
    if (p->penalty_last_n < 0 || p->penalty_last_n > (1 << 20) || !isfinite(p->temp) ||
        !(p->repeat_penalty > 0.0f) || !isfinite(p->top_p) || !isfinite(p->min_p))
        return tm_fail(TM_ERR_INVALID, "sampler: bad parameters");
    if (p->n_bias < 0 || (p->n_bias > 0 && (p->bias_id == NULL || p->bias == NULL)))
        return tm_fail(TM_ERR_INVALID, "sampler: bad logit bias");
    for (int32_t i = 0; i < p->n_bias; i++)
        if (p->bias_id[i] < 0 || p->bias_id[i] >= n_vocab || !isfinite(p->bias[i]))
            return tm_fail(TM_ERR_INVALID, "sampler: logit bias for token %d", p->bias_id[i]);
    tm_sampler *s = tm_calloc(1, sizeof *s);
    if (s == NULL)
        return tm_fail(TM_ERR_NOMEM, "sampler");
    s->p = *p;
    s->p.bias_id = NULL; /* borrowed pointers are not kept */
    s->p.bias = NULL;
    s->n_vocab = n_vocab;
    if (p->n_bias > 0) {
        s->bias = tm_calloc((size_t)n_vocab, sizeof *s->bias);
        if (s->bias == NULL) {
            tm_free(s);
            return tm_fail(TM_ERR_NOMEM, "sampler bias for %d tokens", n_vocab);
        }
        for (int32_t i = 0; i < p->n_bias; i++)
            s->bias[p->bias_id[i]] += p->bias[i];
    }
    s->cand = tm_calloc((size_t)n_vocab, sizeof *s->cand);
    s->count = tm_calloc((size_t)n_vocab, sizeof *s->count);
    s->hist = tm_calloc((size_t)(p->penalty_last_n > 0 ? p->penalty_last_n : 1), sizeof *s->hist);
    if (s->cand == NULL || s->count == NULL || s->hist == NULL) {
        tm_sampler_free(s);
        return tm_fail(TM_ERR_NOMEM, "sampler buffers for %d tokens", n_vocab);
    }
    tm_sampler_reset(s);
    *out = s;
    return TM_OK;
}

void tm_sampler_free(tm_sampler *s) {
    if (s == NULL)
        return;
    tm_free(s->cand);
    tm_free(s->count);
    tm_free(s->bias);
    tm_free(s->hist);
    tm_free(s);
}

void tm_sampler_accept(tm_sampler *s, int32_t tok) {
    if (tok < 0 || tok >= s->n_vocab || s->p.penalty_last_n == 0)
        return;
    if (s->n_hist == s->p.penalty_last_n) {
        s->count[s->hist[s->hist_pos]]--;
    } else {
        s->n_hist++;
    }
    s->hist[s->hist_pos] = tok;
    s->count[tok]++;
    s->hist_pos = (s->hist_pos + 1) % s->p.penalty_last_n;
}

static int smp_cmp(const void *a, const void *b) {
    const smp_cand *x = a, *y = b;
    if (x->logit != y->logit)
        return x->logit > y->logit ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Moves the k best candidates to the front, sorted (partial selection, then sort). */
static void smp_top(smp_cand *c, int32_t n, int32_t k) {
    if (k < n) {
        /* quickselect-free approach: a bounded insertion over the first k slots */
        qsort(c, (size_t)k, sizeof *c, smp_cmp);
        for (int32_t i = k; i < n; i++) {
            if (smp_cmp(&c[i], &c[k - 1]) >= 0)
                continue;
            int32_t  j = k - 1;
            smp_cand v = c[i];
            c[i] = c[k - 1];
            while (j > 0 && smp_cmp(&v, &c[j - 1]) < 0) {
                c[j] = c[j - 1];
                j--;
            }
            c[j] = v;
        }
    } else {
        qsort(c, (size_t)n, sizeof *c, smp_cmp);
    }
}

int32_t tm_sampler_sample(tm_sampler *s, const float *logits) {
    const tm_sampler_params *p = &s->p;
    const int32_t            V = s->n_vocab;
    smp_cand                *c = s->cand;
    for (int32_t i = 0; i < V; i++) {
        float l = s->bias != NULL ? logits[i] + s->bias[i] : logits[i];
        if (s->count[i] > 0) {
            if (p->repeat_penalty != 1.0f)
                l = l > 0 ? l / p->repeat_penalty : l * p->repeat_penalty;
            l -= p->presence_penalty + p->frequency_penalty * (float)s->count[i];
        }
        c[i] = (smp_cand){.id = i, .logit = isnan(l) ? -INFINITY : l};
    }
    if (!(p->temp > 0.0f)) {
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++)
            if (c[i].logit > c[best].logit)
                best = i;
        return best;
    }
    int32_t n = (p->top_k > 0 && p->top_k < V) ? p->top_k : V;
    smp_top(c, V, n);
    /* softmax with temperature over the n candidates, highest first */
    const float mx = c[0].logit;
    double      sum = 0.0;
    for (int32_t i = 0; i < n; i++) {
        c[i].p = expf((c[i].logit - mx) / p->temp);
        sum += c[i].p;
    }
    for (int32_t i = 0; i < n; i++)
        c[i].p = (float)(c[i].p / sum);
    if (p->top_p < 1.0f) {
        double  cum = 0.0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            cum += c[i].p;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (p->min_p > 0.0f) {
        const float thr = p->min_p * c[0].p;
        int32_t     keep = 1;
        while (keep < n && c[keep].p >= thr)
            keep++;
        n = keep;
    }
    double total = 0.0;
    for (int32_t i = 0; i < n; i++)
        total += c[i].p;
    double r = smp_uniform(s) * total, acc = 0.0;
    for (int32_t i = 0; i < n; i++) {
        acc += c[i].p;
        if (r < acc)
            return c[i].id;
    }
    return c[n - 1].id;
}

void tm_sampler_logprobs(const float *logits, int32_t n_vocab, int32_t token, int32_t k,
                         float *token_lp, int32_t *top_id, float *top_lp) {
    if (k > TM_SAMPLER_MAX_LOGPROBS)
        k = TM_SAMPLER_MAX_LOGPROBS;
    if (k > n_vocab)
        k = n_vocab;
    if (k < 0)
        k = 0;
    float mx = -INFINITY;
    for (int32_t i = 0; i < n_vocab; i++)
        if (logits[i] > mx)
            mx = logits[i];
    double sum = 0.0;
    for (int32_t i = 0; i < n_vocab; i++)
        sum += exp((double)logits[i] - (double)mx);
    const double lse = (double)mx + log(sum);
    *token_lp = (token >= 0 && token < n_vocab) ? (float)((double)logits[token] - lse) : -INFINITY;
    /* bounded insertion of the k best (logit descending, id ascending) */
    int32_t n = 0;
    for (int32_t i = 0; i < n_vocab && k > 0; i++) {
        const float l = isnan(logits[i]) ? -INFINITY : logits[i];
        if (n == k && !(l > top_lp[k - 1]))
            continue;
        int32_t j = n < k ? n++ : k - 1;
        while (j > 0 && l > top_lp[j - 1]) {
            top_lp[j] = top_lp[j - 1];
            top_id[j] = top_id[j - 1];
            j--;
        }
        top_lp[j] = l;
        top_id[j] = i;
    }
    for (int32_t j = 0; j < n; j++)
        top_lp[j] = (float)((double)top_lp[j] - lse);
}
