/*
 * ops_basic.c - reference CPU kernels: get_rows, rms_norm, add/mul, unary
 * activations, softmax and rope. Plain C, float32 arithmetic, rows split over
 * threads. Each cites the reference it matches.
 */
#include <math.h>
#include <string.h>

#include "backend/cpu/cpu_int.h"

static inline float *ops_row_f32(const tm_tensor *t, int64_t r) {
    return (float *)((char *)t->data + (size_t)r * t->nb[1]);
}

/* Embedding lookup: dequantizes row ids[t] of any dtype (token ids were range
 * checked by tm_ctx_decode). */
/* Mean of the rows of an F32 tensor (sentence-transformers mean pooling over every
 * token of the batch); sums in double, elements split over threads. */
static void ops_mean_rows(const tm_tensor *dst, int ith, int nth) {
    const tm_tensor *x = dst->src[0];
    const int64_t    n = x->ne[1];
    int64_t          e0, e1;
    tm__cpu_split(dst->ne[0], ith, nth, &e0, &e1);
    float *y = dst->data;
    for (int64_t e = e0; e < e1; e++) {
        double s = 0.0;
        for (int64_t t = 0; t < n; t++)
            s += ops_row_f32(x, t)[e];
        y[e] = (float)(s / (double)n);
    }
}

void tm__cpu_get_rows(const tm_tensor *dst, int ith, int nth, void *scratch) {
    if (dst->ip[0] == 1) {
        ops_mean_rows(dst, ith, nth);
        return;
    }
    const tm_tensor *w = dst->src[0], *ids = dst->src[1];
    const int32_t   *id = ids->data;
    int64_t          r0, r1;
    tm__cpu_split(dst->ne[1], ith, nth, &r0, &r1);
    for (int64_t t = r0; t < r1; t++) {
        if (id[t] < 0 || id[t] >= w->ne[1]) {
            /* Token ids are checked by tm_ctx_decode; positions into a learned position
             * table (GPT-2, BERT) can pass its end when a context is made longer than
             * the model was trained for: no position signal there rather than a crash. */
            memset(ops_row_f32(dst, t), 0, (size_t)dst->ne[0] * sizeof(float));
            continue;
        }
        const void *row = (const char *)w->data + (size_t)id[t] * w->nb[1];
        tm_status   st = tm_dequantize_row(w->dtype, row, ops_row_f32(dst, t), w->ne[0]);
        TM_ASSERT(st == TM_OK); /* dtype checked at model load */
    }
}

/* HF LlamaRMSNorm: x * rsqrt(mean(x^2) + eps), accumulated in float32 as torch does
 * (torch reduces pairwise; we accumulate in double to stay within its error).
 * ip[0] = 1: torch LayerNorm without the affine part, (x - mean) * rsqrt(var + eps)
 * with the biased variance; mean and variance in double. */
void tm__cpu_rms_norm(const tm_tensor *dst, int ith, int nth, void *scratch) {
    const tm_tensor *x = dst->src[0];
    const int64_t    n = x->ne[0];
    int64_t          r0, r1;
    tm__cpu_split(tm_tensor_nrows(dst), ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = ops_row_f32(x, r);
        float       *yr = ops_row_f32(dst, r);
        double       ss = 0.0;
        if (dst->ip[0] == 1) {
            double mean = 0.0;
            for (int64_t i = 0; i < n; i++)
                mean += xr[i];
            mean /= (double)n;
            for (int64_t i = 0; i < n; i++)
                ss += ((double)xr[i] - mean) * ((double)xr[i] - mean);
            const double s = 1.0 / sqrt(ss / (double)n + (double)dst->fp[0]);
            for (int64_t i = 0; i < n; i++)
                yr[i] = (float)(((double)xr[i] - mean) * s);
            continue;
        }
        for (int64_t i = 0; i < n; i++)
            ss += (double)xr[i] * xr[i];
        float s = 1.0f / sqrtf((float)(ss / (double)n) + dst->fp[0]);
        for (int64_t i = 0; i < n; i++)
            yr[i] = xr[i] * s;
    }
}

void tm__cpu_binary(const tm_tensor *dst, int ith, int nth, void *scratch) {
    const tm_tensor *a = dst->src[0], *b = dst->src[1];
    const int64_t    n = a->ne[0], nrb = tm_tensor_nrows(b);
    int64_t          r0, r1;
    tm__cpu_split(tm_tensor_nrows(dst), ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *ar = ops_row_f32(a, r), *br = ops_row_f32(b, r % nrb);
        float       *yr = ops_row_f32(dst, r);
        if (dst->op == TM_OP_ADD)
            for (int64_t i = 0; i < n; i++)
                yr[i] = ar[i] + br[i];
        else
            for (int64_t i = 0; i < n; i++)
                yr[i] = ar[i] * br[i];
    }
}

static inline float ops_gelu_tanh(float x) {
    /* HF gelu_pytorch_tanh / ggml gelu: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    const float c = 0.7978845608028654f;
    return 0.5f * x * (1.0f + tanhf(c * (x + 0.044715f * x * x * x)));
}

void tm__cpu_unary(const tm_tensor *dst, int ith, int nth, void *scratch) {
    const tm_tensor *x = dst->src[0];
    const int64_t    n = x->ne[0];
    const float      p = dst->fp[0];
    int64_t          r0, r1;
    tm__cpu_split(tm_tensor_nrows(dst), ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = ops_row_f32(x, r);
        float       *yr = ops_row_f32(dst, r);
        switch (dst->op) {
        case TM_OP_SCALE:
            for (int64_t i = 0; i < n; i++)
                yr[i] = xr[i] * p;
            break;
        case TM_OP_SILU:
            for (int64_t i = 0; i < n; i++)
                yr[i] = xr[i] / (1.0f + expf(-xr[i]));
            break;
        case TM_OP_GELU:
            if (dst->ip[0] == 1) /* HF "gelu": 0.5 x (1 + erf(x / sqrt(2))) */
                for (int64_t i = 0; i < n; i++)
                    yr[i] = 0.5f * xr[i] * (1.0f + erff(xr[i] * 0.70710678118654752f));
            else
                for (int64_t i = 0; i < n; i++)
                    yr[i] = ops_gelu_tanh(xr[i]);
            break;
        case TM_OP_SOFTCAP:
            for (int64_t i = 0; i < n; i++)
                yr[i] = p * tanhf(xr[i] / p);
            break;
        default: TM_ASSERT(!"not a unary op");
        }
    }
}

void tm__cpu_softmax(const tm_tensor *dst, int ith, int nth, void *scratch) {
    const tm_tensor *x = dst->src[0];
    const int64_t    n = x->ne[0];
    int64_t          r0, r1;
    tm__cpu_split(tm_tensor_nrows(dst), ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = ops_row_f32(x, r);
        float       *yr = ops_row_f32(dst, r);
        float        mx = -INFINITY;
        for (int64_t i = 0; i < n; i++)
            mx = fmaxf(mx, xr[i] * dst->fp[0]);
        double sum = 0.0;
        for (int64_t i = 0; i < n; i++) {
            yr[i] = expf(xr[i] * dst->fp[0] - mx);
            sum += yr[i];
        }
        float inv = (float)(1.0 / sum);
        for (int64_t i = 0; i < n; i++)
            yr[i] *= inv;
    }
}

/* Rotary embedding on [hd, nh, T]. Angle of pair i at position p:
 * p * theta^(-2i/n_rot) / ff[i], computed in double (HF computes the frequency in
 * float32; the difference is below float rounding of the result). NORM rotates
 * (x[2i], x[2i+1]); NEOX rotates (x[i], x[i + n_rot/2]) (HF rotate_half).
 * Dimensions past n_rot pass through. */
void tm__cpu_rope(const tm_tensor *dst, int ith, int nth, void *scratch) {
    const tm_tensor *x = dst->src[0];
    const int32_t   *pos = dst->src[1]->data;
    const float     *ff = dst->src[2] ? dst->src[2]->data : NULL;
    const int64_t    hd = x->ne[0], nh = x->ne[1], T = x->ne[2];
    const int32_t    n_rot = dst->ip[0];
    const bool       neox = dst->ip[1] == TM_ROPE_NEOX;
    const double     theta = dst->fp[0];
    int64_t          r0, r1;
    tm__cpu_split(nh * T, ith, nth, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t t = r / nh;
        const float  *xr = ops_row_f32(x, r);
        float        *yr = ops_row_f32(dst, r);
        memcpy(yr, xr, (size_t)hd * sizeof(float));
        for (int32_t i = 0; i < n_rot / 2; i++) {
            double ang = (double)pos[t] * pow(theta, -2.0 * i / n_rot);
            if (ff != NULL)
                ang /= ff[i];
            const float   c = (float)cos(ang), s = (float)sin(ang);
            const int64_t i0 = neox ? i : 2 * i, i1 = neox ? i + n_rot / 2 : 2 * i + 1;
            const float   x0 = xr[i0], x1 = xr[i1];
            yr[i0] = x0 * c - x1 * s;
            yr[i1] = x0 * s + x1 * c;
        }
    }
}
