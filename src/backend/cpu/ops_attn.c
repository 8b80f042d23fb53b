/*
 * ops_attn.c - KV cache store and causal (optionally sliding-window) attention,
 * reference CPU kernels.
 *
 * Cache layout: one tensor per layer for K and one for V, [hd * n_head_kv, n_rows]
 * (F32 or F16). Contiguous: row p holds position p. Paged (a multi-sequence
 * block pool, tm_kvcache.h): the store writes token t to row slot[t] and token t
 * finds its sequence's position j in row tab[t][j >> log2(bs)] * bs + (j & (bs - 1)),
 * so a token never sees another sequence's rows. Query head h reads KV head
 * h / (n_head / n_head_kv) (grouped-query attention, HF repeat_kv). The summation
 * order does not depend on the layout: paged and contiguous results are identical.
 */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_int.h"

static void attn_put_row(const tm_tensor *cache, int64_t p, const float *src) {
    char *row = (char *)cache->data + (size_t)p * cache->nb[1];
    if (cache->dtype == TM_DTYPE_F32) {
        memcpy(row, src, (size_t)cache->ne[0] * sizeof(float));
    } else {
        uint16_t *h = (uint16_t *)row;
        for (int64_t i = 0; i < cache->ne[0]; i++)
            h[i] = tm_f32_to_f16(src[i]);
    }
}

void tm__cpu_kv_store(const tm_tensor *dst, int ith, int nth, void *scratch) {
    const tm_tensor *k = dst->src[0], *v = dst->src[1], *kc = dst->src[2], *vc = dst->src[3];
    /* paged: the slot of each token; contiguous: its position */
    const int32_t *row = dst->src[5] != NULL ? dst->src[5]->data : dst->src[4]->data;
    int64_t        r0, r1;
    tm__cpu_split(k->ne[2], ith, nth, &r0, &r1);
    for (int64_t t = r0; t < r1; t++) {
        /* rows were checked against the cache by tm_ctx_decode_batch */
        TM_ASSERT(row[t] >= 0 && row[t] < kc->ne[1]);
        attn_put_row(kc, row[t], (const float *)((char *)k->data + (size_t)t * k->nb[2]));
        attn_put_row(vc, row[t], (const float *)((char *)v->data + (size_t)t * v->nb[2]));
    }
}

size_t tm__cpu_attn_scratch(const tm_tensor *dst) {
    const tm_tensor *kc = dst->src[1], *tab = dst->src[5];
    /* scores of one sequence's positions at most */
    const size_t n_pos = tab != NULL ? (size_t)tab->ne[0] * (size_t)dst->ip[3] : (size_t)kc->ne[1];
    return (n_pos + 2 * (size_t)dst->src[0]->ne[0]) * sizeof(float);
}

static inline void attn_load(const tm_tensor *cache, int64_t p, int64_t off, int64_t n, float *out,
                             const float **view) {
    const char *row = (const char *)cache->data + (size_t)p * cache->nb[1];
    if (cache->dtype == TM_DTYPE_F32) {
        *view = (const float *)row + off;
        return;
    }
    const uint16_t *h = (const uint16_t *)row + off;
    for (int64_t i = 0; i < n; i++)
        out[i] = tm_f16_to_f32(h[i]);
    *view = out;
}

/* softmax(scale * q k^T) v per (token, head); matches HF eager attention
 * (scores in float32, softmax in float32) with an exact causal / sliding mask. */
void tm__cpu_attn(const tm_tensor *dst, int ith, int nth, void *scratch) {
    const tm_tensor *q = dst->src[0], *kc = dst->src[1], *vc = dst->src[2];
    const int32_t   *pos = dst->src[3]->data;
    const int64_t    hd = q->ne[0], nh = q->ne[1], T = q->ne[2];
    const int64_t    group = nh / dst->ip[1];
    const int32_t    swa = dst->ip[0];
    const bool       bidir = dst->ip[2] == 1;
    const float      scale = dst->fp[0], cap = dst->fp[1];
    const tm_tensor *tab = dst->src[5]; /* paged: block tables [n_blk, T], or NULL */
    const int64_t    bs = tab != NULL ? dst->ip[3] : 1;
    const int64_t    n_pos = tab != NULL ? tab->ne[0] * bs : kc->ne[1];
    int              shift = 0;
    while (((int64_t)1 << shift) < bs)
        shift++;
    float  *sc = scratch;     /* [n_pos] scores */
    float  *tmp = sc + n_pos; /* [hd] f16 -> f32 row */
    float  *acc = tmp + hd;   /* [hd] */
    int64_t r0, r1;
    tm__cpu_split(nh * T, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t t = r / nh, h = r % nh, g = h / group;
        const float  *qr =
            (const float *)((char *)q->data + (size_t)t * q->nb[2] + (size_t)h * q->nb[1]);
        const int64_t  hi = bidir ? pos[T - 1] : pos[t];
        const int64_t  lo = (swa > 0 && hi - swa + 1 > 0) ? hi - swa + 1 : 0;
        const int32_t *bt =
            tab != NULL ? (const int32_t *)((const char *)tab->data + (size_t)t * tab->nb[1])
                        : NULL;
        TM_ASSERT(hi < n_pos);
        float mx = -INFINITY;
        for (int64_t j = lo; j <= hi; j++) {
            const float  *kr;
            const int64_t p = bt != NULL ? (int64_t)bt[j >> shift] * bs + (j & (bs - 1)) : j;
            attn_load(kc, p, g * hd, hd, tmp, &kr);
            float s = 0.0f;
            for (int64_t i = 0; i < hd; i++)
                s += qr[i] * kr[i];
            s *= scale;
            if (cap > 0.0f)
                s = cap * tanhf(s / cap);
            sc[j - lo] = s;
            mx = fmaxf(mx, s);
        }
        double sum = 0.0;
        for (int64_t j = lo; j <= hi; j++) {
            sc[j - lo] = expf(sc[j - lo] - mx);
            sum += sc[j - lo];
        }
        const float inv = (float)(1.0 / sum);
        memset(acc, 0, (size_t)hd * sizeof(float));
        for (int64_t j = lo; j <= hi; j++) {
            const float  *vr;
            const int64_t p = bt != NULL ? (int64_t)bt[j >> shift] * bs + (j & (bs - 1)) : j;
            attn_load(vc, p, g * hd, hd, tmp, &vr);
            const float w = sc[j - lo] * inv;
            for (int64_t i = 0; i < hd; i++)
                acc[i] += w * vr[i];
        }
        float *yr = (float *)((char *)dst->data + (size_t)t * dst->nb[1]) + h * hd;
        memcpy(yr, acc, (size_t)hd * sizeof(float));
    }
}
