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
 *
 * Two attention kernels: the plain C reference (attn_ref, one (token, head) row
 * at a time, scores then softmax then V) and an AVX2 + FMA + F16C one (below),
 * chosen at run time by tm__cpu_isa(); TM_CPU_REF=1 or tm__cpu_set_isa(REF)
 * selects the reference. Both give the same result to ~1e-6 relative
 * (tests/unit/test_ops.c compares them).
 */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_int.h"
#include "backend/cpu/simd_dot.h"

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
static void attn_ref(const tm_tensor *dst, int ith, int nth, void *scratch) {
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

/* ---- AVX2 + FMA + F16C kernel ------------------------------------------------
 * Work item: (token t, KV head g, up to ATTN_HMAX query heads of g's group), so
 * each K/V row is read from the cache once for all the query heads that share
 * it (GQA) and F16 rows are converted once. Positions go in tiles of ATTN_TILE
 * rows (row pointers resolved through the block table once per tile); each tile
 * is one pass: scores for every head, an online-softmax update (running max m,
 * running sum l in double, accumulator rescaled by exp(m_old - m_new)), then the
 * weighted V accumulation. exp is a Cephes-style polynomial (~2 ulp). Items are
 * claimed from the pool's shared counter (causal prefill rows differ in cost).
 * Results differ from the reference only in summation order (~1e-6 relative). */
#if defined(__x86_64__) || defined(__i386__)

#include <immintrin.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

enum { ATTN_TILE = 32, ATTN_HMAX = 16 };

static size_t attn_avx2_scratch(int64_t hd, int64_t group) {
    const size_t nh = (size_t)(group < ATTN_HMAX ? group : ATTN_HMAX);
    return 2 * ATTN_TILE * sizeof(float *) + nh * sizeof(double) +
           (2 * ATTN_TILE * (size_t)hd + nh * ATTN_TILE + nh * (size_t)hd + nh) * sizeof(float);
}

AVX2 static inline float ax_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* exp(x) for x <= 0 (Cephes expf); x below -87 gives ~1.6e-38 instead of 0 or a
 * denormal, which no sum of weights >= 1 can see. */
AVX2 static inline __m256 ax_exp(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
    const __m256 fx = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
    x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(fx), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

/* Row p of a cache at column off (hd elements) as f32: in place for F32, else
 * converted into buf. */
AVX2 static inline const float *ax_row(const tm_tensor *cache, int64_t p, int64_t off, int64_t hd,
                                       float *buf) {
    const char *row = (const char *)cache->data + (size_t)p * cache->nb[1];
    if (cache->dtype == TM_DTYPE_F32)
        return (const float *)row + off;
    const uint16_t *h = (const uint16_t *)row + off;
    for (int64_t i = 0; i < hd; i += 8)
        _mm256_storeu_ps(buf + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    return buf;
}

typedef struct attn_job {
    const tm_tensor *dst, *q, *kc, *vc, *tab;
    const int32_t   *pos;
    int64_t          hd, nh, T, nkv, group, nsub, bs;
    int              shift;
    int32_t          swa;
    bool             bidir;
    float            scale, cap;
} attn_job;

/* Query heads [h0, h0 + nq) of KV head g for token t. */
AVX2 static void attn_avx2_item(const attn_job *a, int64_t t, int64_t g, int64_t h0, int64_t nq,
                                void *scratch) {
    const int64_t  hd = a->hd;
    const float  **kp = scratch;                   /* [TILE] */
    const float  **vp = kp + ATTN_TILE;            /* [TILE] */
    double        *l = (double *)(vp + ATTN_TILE); /* [nq] running sums */
    float         *kbuf = (float *)(l + nq);
    float         *vbuf = kbuf + ATTN_TILE * hd;
    float         *sc = vbuf + ATTN_TILE * hd; /* [nq][TILE] scores, then weights */
    float         *acc = sc + nq * ATTN_TILE;  /* [nq][hd] */
    float         *m = acc + nq * hd;          /* [nq] running maxima */
    const int64_t  hi = a->bidir ? a->pos[a->T - 1] : a->pos[t];
    const int64_t  lo = (a->swa > 0 && hi - a->swa + 1 > 0) ? hi - a->swa + 1 : 0;
    const int32_t *bt =
        a->tab != NULL ? (const int32_t *)((const char *)a->tab->data + (size_t)t * a->tab->nb[1])
                       : NULL;
    TM_ASSERT(hi < (a->tab != NULL ? a->tab->ne[0] * a->bs : a->kc->ne[1]));
    const float *qt = (const float *)((const char *)a->q->data + (size_t)t * a->q->nb[2]);
    for (int64_t k = 0; k < nq; k++) {
        m[k] = -INFINITY;
        l[k] = 0.0;
    }
    memset(acc, 0, (size_t)(nq * hd) * sizeof(float));
    for (int64_t j0 = lo; j0 <= hi; j0 += ATTN_TILE) {
        const int64_t n = hi - j0 + 1 < ATTN_TILE ? hi - j0 + 1 : ATTN_TILE;
        for (int64_t jj = 0; jj < n; jj++) {
            const int64_t j = j0 + jj;
            const int64_t p =
                bt != NULL ? (int64_t)bt[j >> a->shift] * a->bs + (j & (a->bs - 1)) : j;
            kp[jj] = ax_row(a->kc, p, g * hd, hd, kbuf + jj * hd);
            vp[jj] = ax_row(a->vc, p, g * hd, hd, vbuf + jj * hd);
        }
        const int64_t n8 = (n + 7) & ~(int64_t)7;
        for (int64_t k = 0; k < nq; k++) {
            const float *qr = (const float *)((const char *)qt + (size_t)(h0 + k) * a->q->nb[1]);
            float       *s = sc + k * ATTN_TILE;
            int64_t      jj = 0;
            for (; jj + 4 <= n; jj += 4) {
                __m256 d0 = _mm256_setzero_ps(), d1 = d0, d2 = d0, d3 = d0;
                for (int64_t i = 0; i < hd; i += 8) {
                    const __m256 qv = _mm256_loadu_ps(qr + i);
                    d0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kp[jj] + i), d0);
                    d1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kp[jj + 1] + i), d1);
                    d2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kp[jj + 2] + i), d2);
                    d3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(kp[jj + 3] + i), d3);
                }
                s[jj] = ax_hsum(d0);
                s[jj + 1] = ax_hsum(d1);
                s[jj + 2] = ax_hsum(d2);
                s[jj + 3] = ax_hsum(d3);
            }
            for (; jj < n; jj++) {
                __m256 d0 = _mm256_setzero_ps();
                for (int64_t i = 0; i < hd; i += 8)
                    d0 = _mm256_fmadd_ps(_mm256_loadu_ps(qr + i), _mm256_loadu_ps(kp[jj] + i), d0);
                s[jj] = ax_hsum(d0);
            }
            float mt = -INFINITY;
            for (jj = 0; jj < n; jj++) {
                float v = s[jj] * a->scale;
                if (a->cap > 0.0f)
                    v = a->cap * tanhf(v / a->cap);
                s[jj] = v;
                mt = fmaxf(mt, v);
            }
            const float mn = fmaxf(m[k], mt);
            const float c = m[k] == -INFINITY ? 0.0f : expf(m[k] - mn);
            m[k] = mn;
            for (jj = n; jj < n8; jj++)
                s[jj] = mn; /* defined lanes past the tile; masked to 0 below */
            const __m256 mv = _mm256_set1_ps(mn);
            __m256       sum = _mm256_setzero_ps();
            for (jj = 0; jj < n8; jj += 8) {
                __m256 w = ax_exp(_mm256_sub_ps(_mm256_loadu_ps(s + jj), mv));
                if (jj + 8 > n) { /* lanes past the tile's last row weigh nothing */
                    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                    const __m256i lim = _mm256_set1_epi32((int)(n - jj));
                    w = _mm256_and_ps(w, _mm256_castsi256_ps(_mm256_cmpgt_epi32(lim, idx)));
                }
                _mm256_storeu_ps(s + jj, w);
                sum = _mm256_add_ps(sum, w);
            }
            l[k] = l[k] * c + ax_hsum(sum);
            float *ar = acc + k * hd;
            if (c != 1.0f) {
                const __m256 cv = _mm256_set1_ps(c);
                for (int64_t i = 0; i < hd; i += 8)
                    _mm256_storeu_ps(ar + i, _mm256_mul_ps(_mm256_loadu_ps(ar + i), cv));
            }
            int64_t i = 0;
            for (; i + 32 <= hd; i += 32) {
                __m256 a0 = _mm256_loadu_ps(ar + i), a1 = _mm256_loadu_ps(ar + i + 8);
                __m256 a2 = _mm256_loadu_ps(ar + i + 16), a3 = _mm256_loadu_ps(ar + i + 24);
                for (jj = 0; jj < n; jj++) {
                    const __m256 w = _mm256_set1_ps(s[jj]);
                    const float *vr = vp[jj] + i;
                    a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vr), a0);
                    a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vr + 8), a1);
                    a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vr + 16), a2);
                    a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(vr + 24), a3);
                }
                _mm256_storeu_ps(ar + i, a0);
                _mm256_storeu_ps(ar + i + 8, a1);
                _mm256_storeu_ps(ar + i + 16, a2);
                _mm256_storeu_ps(ar + i + 24, a3);
            }
            for (; i < hd; i += 8) {
                __m256 a0 = _mm256_loadu_ps(ar + i);
                for (jj = 0; jj < n; jj++)
                    a0 = _mm256_fmadd_ps(_mm256_set1_ps(s[jj]), _mm256_loadu_ps(vp[jj] + i), a0);
                _mm256_storeu_ps(ar + i, a0);
            }
        }
    }
    float *yt = (float *)((char *)a->dst->data + (size_t)t * a->dst->nb[1]);
    for (int64_t k = 0; k < nq; k++) {
        const __m256 inv = _mm256_set1_ps((float)(1.0 / l[k]));
        for (int64_t i = 0; i < hd; i += 8)
            _mm256_storeu_ps(yt + (h0 + k) * hd + i,
                             _mm256_mul_ps(_mm256_loadu_ps(acc + k * hd + i), inv));
    }
}

static void attn_avx2_run(const attn_job *a, int64_t i, void *scratch) {
    const int64_t sub = i % a->nsub, g = (i / a->nsub) % a->nkv, t = i / (a->nsub * a->nkv);
    const int64_t h0 = g * a->group + sub * ATTN_HMAX;
    const int64_t nq =
        a->group - sub * ATTN_HMAX < ATTN_HMAX ? a->group - sub * ATTN_HMAX : ATTN_HMAX;
    attn_avx2_item(a, t, g, h0, nq, scratch);
}

/* false: not applicable (head size not a multiple of 8); the caller runs the reference. */
static bool attn_avx2(const tm_tensor *dst, int ith, int nth, void *scratch) {
    const tm_tensor *q = dst->src[0];
    if (q->ne[0] % 8 != 0)
        return false;
    attn_job a = {.dst = dst,
                  .q = q,
                  .kc = dst->src[1],
                  .vc = dst->src[2],
                  .tab = dst->src[5],
                  .pos = dst->src[3]->data,
                  .hd = q->ne[0],
                  .nh = q->ne[1],
                  .T = q->ne[2],
                  .nkv = dst->ip[1],
                  .swa = dst->ip[0],
                  .bidir = dst->ip[2] == 1,
                  .scale = dst->fp[0],
                  .cap = dst->fp[1]};
    a.group = a.nh / a.nkv;
    a.nsub = (a.group + ATTN_HMAX - 1) / ATTN_HMAX;
    a.bs = a.tab != NULL ? dst->ip[3] : 1;
    while (((int64_t)1 << a.shift) < a.bs)
        a.shift++;
    const int64_t n_items = a.T * a.nkv * a.nsub;
    int64_t       i = tm__cpu_chunk_claim();
    if (i < 0) { /* outside a pool: fixed split */
        int64_t r0, r1;
        tm__cpu_split(n_items, ith, nth, &r0, &r1);
        for (i = r0; i < r1; i++)
            attn_avx2_run(&a, i, scratch);
        return true;
    }
    for (; i < n_items; i = tm__cpu_chunk_claim())
        attn_avx2_run(&a, i, scratch);
    return true;
}

#else

static size_t attn_avx2_scratch(int64_t hd, int64_t group) {
    (void)hd;
    (void)group;
    return 0;
}

static bool attn_avx2(const tm_tensor *dst, int ith, int nth, void *scratch) {
    (void)dst;
    (void)ith;
    (void)nth;
    (void)scratch;
    return false;
}

#endif

size_t tm__cpu_attn_scratch(const tm_tensor *dst) {
    const tm_tensor *q = dst->src[0], *kc = dst->src[1], *tab = dst->src[5];
    /* reference: scores of one sequence's positions at most */
    const size_t n_pos = tab != NULL ? (size_t)tab->ne[0] * (size_t)dst->ip[3] : (size_t)kc->ne[1];
    const size_t ref = (n_pos + 2 * (size_t)q->ne[0]) * sizeof(float);
    const size_t simd = attn_avx2_scratch(q->ne[0], q->ne[1] / dst->ip[1]);
    return ref > simd ? ref : simd; /* whichever path runs (the ISA may change) */
}

void tm__cpu_attn(const tm_tensor *dst, int ith, int nth, void *scratch) {
    if ((tm__cpu_isa() == TM_CPU_ISA_AVX2 || tm__cpu_isa() == TM_CPU_ISA_AVX512) &&
        attn_avx2(dst, ith, nth, scratch))
        return;
    attn_ref(dst, ith, nth, scratch);
}
