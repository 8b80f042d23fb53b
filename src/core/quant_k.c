/*
 * quant_k.c - reference dequantization and quantization of the 256-element
 * "K" super-block formats: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K.
 *
 * DESIGN
 * ------
 * Dequantizers are bit-exact with gguf.quants.dequantize (and ggml's
 * dequantize_row_*): the per-sub-block scale is formed first (d * sc), then
 * multiplied by the code, then the min is subtracted, each a float32 rounding.
 *
 * Quantizers follow ggml's quantize_row_*_ref (no importance matrix): the same
 * search (make_qkx2_quants, make_qx_quants, make_q3_quants), the same float32
 * expressions in the same order, and contraction off (quant_int.h). The gguf
 * package cannot quantize K formats, so they are verified by round-trip error
 * and by decoding their blocks with gguf (tests/py/test_quant_oracle.py). The
 * one deliberate difference: ggml asserts |v| < 2^22 in nearest_int, we clamp
 * (quant_nearest_int), which only matters for rows no real tensor contains.
 *
 * Threads: pure functions, any thread; all scratch lives on the stack.
 */
#include <string.h>

#include "core/quant_int.h"

/* Below this a group of weights counts as all zero (ggml's GROUP_MAX_EPS). */
#define QUANT_GROUP_EPS 1e-15f

/* ---- block layouts (byte offsets) ------------------------------------------ */
enum {
    /* Q2_K: 16 x (4-bit scale | 4-bit min), 2-bit codes, f16 d, f16 dmin */
    Q2K_SCALES = 0,
    Q2K_QS = 16,
    Q2K_D = 80,
    Q2K_DMIN = 82,
    Q2K_BYTES = 84,
    /* Q3_K: high-bit mask, 2-bit low codes, 16 packed 6-bit scales, f16 d */
    Q3K_HMASK = 0,
    Q3K_QS = 32,
    Q3K_SCALES = 96,
    Q3K_D = 108,
    Q3K_BYTES = 110,
    /* Q4_K: f16 d, f16 dmin, 8 packed 6-bit (scale, min), 4-bit codes */
    Q4K_D = 0,
    Q4K_DMIN = 2,
    Q4K_SCALES = 4,
    Q4K_QS = 16,
    Q4K_BYTES = 144,
    /* Q5_K: as Q4_K plus a 32-byte plane of fifth bits before the nibbles */
    Q5K_D = 0,
    Q5K_DMIN = 2,
    Q5K_SCALES = 4,
    Q5K_QH = 16,
    Q5K_QS = 48,
    Q5K_BYTES = 176,
    /* Q6_K: low nibbles, 2-bit high parts, 16 int8 scales, f16 d */
    Q6K_QL = 0,
    Q6K_QH = 128,
    Q6K_SCALES = 192,
    Q6K_D = 208,
    Q6K_BYTES = 210,
};

/* ---- shared code layouts ------------------------------------------------------
 * Q2_K and Q3_K store 2-bit codes as: byte j*32 + l, bits 2s..2s+1 hold element
 * j*128 + s*32 + l. Q4_K/Q5_K nibbles: byte j*32 + l, nibble s holds element
 * j*64 + s*32 + l. */

static inline int quant_q2_code(const uint8_t *qs, int e) {
    return (qs[(e / 128) * 32 + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

static void quant_pack_q2(const uint8_t L[QK_K], uint8_t *qs) {
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                      (L[j + l + 96] << 6));
}

static inline int quant_q4_code(const uint8_t *qs, int e) {
    return (qs[(e / 64) * 32 + e % 32] >> (4 * ((e % 64) / 32))) & 0x0F;
}

/* Q3_K's 16 six-bit scales: low nibbles in bytes 0..7 (element i in byte i % 8,
 * nibble i / 8), high 2-bit parts in bytes 8..11 (byte 8 + i % 4, bits
 * 2 * (i / 4)). Returns the signed scale (stored with a +32 bias). */
static inline int quant_q3_scale(const uint8_t *sc, int i) {
    int lo = (sc[i % 8] >> (4 * (i / 8))) & 0x0F;
    int hi = (sc[8 + i % 4] >> (2 * (i / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* Q4_K / Q5_K: 8 six-bit scales and 8 six-bit mins in 12 bytes (ggml's
 * get_scale_min_k4). Sub-blocks 0..3 use the low 6 bits of bytes 0..3 (scale)
 * and 4..7 (min); sub-blocks 4..7 use the nibbles of bytes 8..11 plus the top 2
 * bits of bytes 0..3 (scale) and 4..7 (min). */
static inline void quant_k4_scale_min(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

static void quant_k4_pack_scales(const uint8_t ls[8], const uint8_t lm[8], uint8_t *q) {
    memset(q, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] = ls[j];
            q[j + 4] = lm[j];
        } else {
            q[j + 4] = (uint8_t)((ls[j] & 0x0F) | ((lm[j] & 0x0F) << 4));
            q[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            q[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

/* ---- dequantization -------------------------------------------------------- */

void tm__dequantize_q2_k(const uint8_t *src, float *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * Q2K_BYTES;
        const float    d = quant_load_f16(b + Q2K_D);
        const float    dmin = quant_load_f16(b + Q2K_DMIN);
        float         *y = dst + i * QK_K;
        for (int e = 0; e < QK_K; e++) {
            const uint8_t sc = b[Q2K_SCALES + e / 16];
            const float   dl = d * (float)(sc & 0x0F);
            const float   ml = dmin * (float)(sc >> 4);
            y[e] = dl * (float)quant_q2_code(b + Q2K_QS, e) - ml;
        }
    }
}

void tm__dequantize_q3_k(const uint8_t *src, float *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * Q3K_BYTES;
        const float    d = quant_load_f16(b + Q3K_D);
        float         *y = dst + i * QK_K;
        for (int e = 0; e < QK_K; e++) {
            const float dl = d * (float)quant_q3_scale(b + Q3K_SCALES, e / 16);
            /* The high bit is stored inverted: a set bit means "no -4". */
            const int hbit = (b[Q3K_HMASK + e % 32] >> (e / 32)) & 1;
            const int q = quant_q2_code(b + Q3K_QS, e) - (hbit ? 0 : 4);
            y[e] = dl * (float)q;
        }
    }
}

void tm__dequantize_q4_k(const uint8_t *src, float *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * Q4K_BYTES;
        const float    d = quant_load_f16(b + Q4K_D);
        const float    dmin = quant_load_f16(b + Q4K_DMIN);
        float         *y = dst + i * QK_K;
        for (int j = 0; j < QK_K / 32; j++) {
            int sc, m;
            quant_k4_scale_min(b + Q4K_SCALES, j, &sc, &m);
            const float dl = d * (float)sc;
            const float ml = dmin * (float)m;
            for (int e = 32 * j; e < 32 * j + 32; e++)
                y[e] = dl * (float)quant_q4_code(b + Q4K_QS, e) - ml;
        }
    }
}

void tm__dequantize_q5_k(const uint8_t *src, float *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * Q5K_BYTES;
        const float    d = quant_load_f16(b + Q5K_D);
        const float    dmin = quant_load_f16(b + Q5K_DMIN);
        float         *y = dst + i * QK_K;
        for (int j = 0; j < QK_K / 32; j++) {
            int sc, m;
            quant_k4_scale_min(b + Q5K_SCALES, j, &sc, &m);
            const float dl = d * (float)sc;
            const float ml = dmin * (float)m;
            for (int e = 32 * j; e < 32 * j + 32; e++) {
                /* Fifth bit of element e: byte e % 32 of the qh plane, bit e / 32. */
                const int h = (b[Q5K_QH + e % 32] >> j) & 1;
                y[e] = dl * (float)(quant_q4_code(b + Q5K_QS, e) | (h << 4)) - ml;
            }
        }
    }
}

/* Q6_K element e = j*128 + r (r < 128): low nibble from ql byte j*64 + r % 64
 * (nibble r / 64), high 2 bits from qh byte j*32 + r % 32 (bits 2 * (r / 32)). */
void tm__dequantize_q6_k(const uint8_t *src, float *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const uint8_t *b = src + i * Q6K_BYTES;
        const float    d = quant_load_f16(b + Q6K_D);
        float         *y = dst + i * QK_K;
        for (int e = 0; e < QK_K; e++) {
            const int   j = e / 128, r = e % 128;
            const int   lo = (b[Q6K_QL + j * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
            const int   hi = (b[Q6K_QH + j * 32 + r % 32] >> (2 * (r / 32))) & 3;
            const float dl = d * (float)(int8_t)b[Q6K_SCALES + e / 16];
            y[e] = dl * (float)((lo | (hi << 4)) - 32);
        }
    }
}

/* ---- scale searches (ggml's make_*_quants, same arithmetic) ---------------- */

/* Fits x ~ scale * L - min with L in [0, nmax] and min >= 0, minimizing the
 * weighted error over nstep + 1 candidate scales around nmax / (max - min), each
 * refined by weighted least squares (make_qkx2_quants). Returns the scale and
 * stores the min (as a positive offset) in *the_min. */
static float quant_make_qkx2(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                             float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                             bool use_mad) {
    float min = x[0];
    float max = x[0];
    float sum_w = weights[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; ++i) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0)
        min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *the_min = -min;
        return 0.f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; ++i) {
        int l = quant_nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)quant_clamp_int(l, 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    if (nstep < 1) {
        *the_min = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; ++is) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; ++i) {
            int l = quant_clamp_int(quant_nearest_int(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; ++i) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Symmetric fit x ~ scale * (L - nmax), L in [0, 2*nmax), weights x^2: tries 19
 * scales around -nmax / max and keeps the best least-squares one
 * (make_qx_quants with rmse_type 1 and no importance weights). */
static float quant_make_qx(int n, int nmax, const float *x, int8_t *L) {
    float max = 0;
    float amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < QUANT_GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)(-nmax) / max;
    float sumlx = 0;
    float suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = quant_clamp_int(quant_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; ++is) {
        if (is == 0)
            continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; ++i) {
            int   l = quant_clamp_int(quant_nearest_int(iscale * x[i]), -nmax, nmax - 1);
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; ++i) {
                int l = quant_clamp_int(quant_nearest_int(iscale * x[i]), -nmax, nmax - 1);
                L[i] = (int8_t)(l + nmax);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Symmetric fit for Q3_K: start from -nmax / max, then up to five passes of
 * coordinate descent on each code (make_q3_quants with do_rmse). L gets codes
 * biased by +nmax. */
static float quant_make_q3(int n, int nmax, const float *x, int8_t *L) {
    float max = 0;
    float amax = 0;
    for (int i = 0; i < n; ++i) {
        float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < QUANT_GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = (float)(-nmax) / max;
    float sumlx = 0;
    float suml2 = 0;
    for (int i = 0; i < n; ++i) {
        int l = quant_clamp_int(quant_nearest_int(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; ++itry) {
        int n_changed = 0;
        for (int i = 0; i < n; ++i) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int   new_l = quant_nearest_int(x[i] * sl2 / slx);
                new_l = quant_clamp_int(new_l, -nmax, nmax - 1);
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        ++n_changed;
                    }
                }
            }
        }
        if (!n_changed)
            break;
    }
    for (int i = 0; i < n; ++i)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ---- quantization ---------------------------------------------------------- */

/* Q2_K: 16 sub-blocks of 16 with a 4-bit scale and a 4-bit min each, both
 * relative to f16 super-scales (quantize_row_q2_K_ref). */
void tm__quantize_q2_k(const float *src, uint8_t *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * QK_K;
        uint8_t     *b = dst + i * Q2K_BYTES;
        uint8_t      L[QK_K], Laux[16];
        float        weights[16], mins[QK_K / 16], scales[QK_K / 16];
        const float  q4scale = 15.f;

        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            for (int l = 0; l < 16; ++l)
                weights[l] = fabsf(x[16 * j + l]);
            scales[j] = quant_make_qkx2(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux,
                                        -0.5f, 0.1f, 15, true);
            if (scales[j] > max_scale)
                max_scale = scales[j];
            if (mins[j] > max_min)
                max_min = mins[j];
        }

        uint8_t *sc = b + Q2K_SCALES;
        memset(sc, 0, QK_K / 16);
        if (max_scale > 0) {
            float iscale = q4scale / max_scale;
            for (int j = 0; j < QK_K / 16; ++j)
                sc[j] = (uint8_t)quant_nearest_int(iscale * scales[j]);
            quant_store_f16(b + Q2K_D, max_scale / q4scale);
        } else {
            quant_store_f16(b + Q2K_D, 0.f);
        }
        if (max_min > 0) {
            float iscale = q4scale / max_min;
            for (int j = 0; j < QK_K / 16; ++j)
                sc[j] |= (uint8_t)(quant_nearest_int(iscale * mins[j]) << 4);
            quant_store_f16(b + Q2K_DMIN, max_min / q4scale);
        } else {
            quant_store_f16(b + Q2K_DMIN, 0.f);
        }

        /* Requantize against the rounded scales actually stored. */
        const float d_all = quant_load_f16(b + Q2K_D);
        const float m_all = quant_load_f16(b + Q2K_DMIN);
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = d_all * (float)(sc[j] & 0x0F);
            if (d == 0.0f)
                continue;
            const float dm = m_all * (float)(sc[j] >> 4);
            for (int ii = 0; ii < 16; ++ii) {
                int l = quant_nearest_int((x[16 * j + ii] + dm) / d);
                L[16 * j + ii] = (uint8_t)quant_clamp_int(l, 0, 3);
            }
        }
        quant_pack_q2(L, b + Q2K_QS);
    }
}

/* Q3_K: 16 sub-blocks of 16, symmetric 3-bit codes, signed 6-bit scales
 * relative to one f16 d (quantize_row_q3_K_ref). */
void tm__quantize_q3_k(const float *src, uint8_t *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * QK_K;
        uint8_t     *b = dst + i * Q3K_BYTES;
        int8_t       L[QK_K];
        float        scales[QK_K / 16];

        float max_scale = 0, amax = 0;
        for (int j = 0; j < QK_K / 16; ++j) {
            scales[j] = quant_make_q3(16, 4, x + 16 * j, L + 16 * j);
            float scale = fabsf(scales[j]);
            if (scale > amax) {
                amax = scale;
                max_scale = scales[j];
            }
        }

        uint8_t *sc = b + Q3K_SCALES;
        memset(sc, 0, 12);
        if (max_scale != 0.0f) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < QK_K / 16; ++j) {
                int l = quant_clamp_int(quant_nearest_int(iscale * scales[j]), -32, 31) + 32;
                if (j < 8)
                    sc[j] = (uint8_t)(l & 0x0F);
                else
                    sc[j - 8] |= (uint8_t)((l & 0x0F) << 4);
                sc[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            quant_store_f16(b + Q3K_D, 1 / iscale);
        } else {
            quant_store_f16(b + Q3K_D, 0.f);
        }

        const float d_all = quant_load_f16(b + Q3K_D);
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = d_all * (float)quant_q3_scale(sc, j);
            if (d == 0.0f)
                continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = quant_clamp_int(quant_nearest_int(x[16 * j + ii] / d), -4, 3);
                L[16 * j + ii] = (int8_t)(l + 4);
            }
        }

        /* Bit 2 of each code goes to the mask (element e: byte e % 32, bit e / 32). */
        uint8_t *hmask = b + Q3K_HMASK;
        uint8_t  L2[QK_K];
        memset(hmask, 0, QK_K / 8);
        for (int e = 0; e < QK_K; ++e) {
            int l = L[e];
            if (l > 3) {
                hmask[e % 32] |= (uint8_t)(1u << (e / 32));
                l -= 4;
            }
            L2[e] = (uint8_t)l;
        }
        quant_pack_q2(L2, b + Q3K_QS);
    }
}

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): 8 sub-blocks of 32, each with a
 * scale and a min quantized to 6 bits against f16 super-scales. Fills the
 * header (d, dmin, scales) at b and the unpacked codes in L. */
static void quant_k4_block(const float *x, int nmax, float rmin, float rdelta, int nstep,
                           uint8_t *b, uint8_t L[QK_K]) {
    uint8_t Laux[32];
    float   weights[32], mins[QK_K / 32], scales[QK_K / 32];

    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; ++l)
            sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; ++l)
            weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = quant_make_qkx2(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin,
                                    rdelta, nstep, false);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }

    float   inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float   inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < QK_K / 32; ++j) {
        /* ggml stores nearest_int() into a uint8_t before MIN(63, .): keep the wrap. */
        uint8_t s = (uint8_t)quant_nearest_int(inv_scale * scales[j]);
        uint8_t m = (uint8_t)quant_nearest_int(inv_min * mins[j]);
        ls[j] = s < 63 ? s : 63;
        lm[j] = m < 63 ? m : 63;
    }
    quant_k4_pack_scales(ls, lm, b + Q4K_SCALES);
    quant_store_f16(b + Q4K_D, max_scale / 63.f);
    quant_store_f16(b + Q4K_DMIN, max_min / 63.f);

    const float d_all = quant_load_f16(b + Q4K_D);
    const float m_all = quant_load_f16(b + Q4K_DMIN);
    for (int j = 0; j < QK_K / 32; ++j) {
        int sc, m;
        quant_k4_scale_min(b + Q4K_SCALES, j, &sc, &m);
        const float d = d_all * (float)sc;
        if (d == 0.0f)
            continue;
        const float dm = m_all * (float)m;
        for (int ii = 0; ii < 32; ++ii) {
            int l = quant_nearest_int((x[32 * j + ii] + dm) / d);
            L[32 * j + ii] = (uint8_t)quant_clamp_int(l, 0, nmax);
        }
    }
}

/* quantize_row_q4_K_ref */
void tm__quantize_q4_k(const float *src, uint8_t *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *b = dst + i * Q4K_BYTES;
        uint8_t  L[QK_K];
        quant_k4_block(src + i * QK_K, 15, -1.f, 0.1f, 20, b, L);
        uint8_t *q = b + Q4K_QS;
        for (int j = 0; j < QK_K; j += 64)
            for (int l = 0; l < 32; ++l)
                q[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

/* quantize_row_q5_K_ref */
void tm__quantize_q5_k(const float *src, uint8_t *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *b = dst + i * Q5K_BYTES;
        uint8_t  L[QK_K];
        quant_k4_block(src + i * QK_K, 31, -0.5f, 0.1f, 15, b, L);
        uint8_t *qh = b + Q5K_QH;
        uint8_t *ql = b + Q5K_QS;
        memset(qh, 0, QK_K / 8);
        for (int e = 0; e < QK_K; e++)
            qh[e % 32] |= (uint8_t)((L[e] >> 4) << (e / 32));
        for (int j = 0; j < QK_K; j += 64)
            for (int l = 0; l < 32; ++l)
                ql[j / 2 + l] = (uint8_t)((L[j + l] & 0x0F) | ((L[j + l + 32] & 0x0F) << 4));
    }
}

/* Q6_K: 16 sub-blocks of 16, symmetric 6-bit codes, int8 scales relative to
 * one f16 d (quantize_row_q6_K_ref). */
void tm__quantize_q6_k(const float *src, uint8_t *dst, int64_t nb) {
    for (int64_t i = 0; i < nb; i++) {
        const float *x = src + i * QK_K;
        uint8_t     *b = dst + i * Q6K_BYTES;
        int8_t       L[QK_K];
        float        scales[QK_K / 16];

        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ++ib) {
            const float scale = quant_make_qx(16, 32, x + 16 * ib, L + 16 * ib);
            scales[ib] = scale;
            if (fabsf(scale) > max_abs_scale) {
                max_abs_scale = fabsf(scale);
                max_scale = scale;
            }
        }

        memset(b, 0, Q6K_BYTES);
        if (max_abs_scale < QUANT_GROUP_EPS)
            continue; /* all zero: d = 0, every code 0 */

        float iscale = -128.f / max_scale;
        quant_store_f16(b + Q6K_D, 1 / iscale);
        int8_t *sc = (int8_t *)(b + Q6K_SCALES);
        for (int ib = 0; ib < QK_K / 16; ++ib)
            sc[ib] = (int8_t)quant_clamp_int(quant_nearest_int(iscale * scales[ib]), -128, 127);

        const float d_all = quant_load_f16(b + Q6K_D);
        for (int j = 0; j < QK_K / 16; ++j) {
            const float d = d_all * (float)sc[j];
            if (d == 0.0f)
                continue;
            for (int ii = 0; ii < 16; ++ii) {
                int l = quant_clamp_int(quant_nearest_int(x[16 * j + ii] / d), -32, 31);
                L[16 * j + ii] = (int8_t)(l + 32);
            }
        }

        uint8_t *ql = b + Q6K_QL;
        uint8_t *qh = b + Q6K_QH;
        for (int j = 0; j < QK_K; j += 128) {
            for (int l = 0; l < 32; ++l) {
                const int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l] = (uint8_t)((q1 & 0x0F) | ((q3 & 0x0F) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0x0F) | ((q4 & 0x0F) << 4));
                qh[l] =
                    (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
            ql += 64;
            qh += 32;
        }
    }
}
