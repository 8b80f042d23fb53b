/*
 * dtype.c - dtype traits (block size and bytes per block, matching GGUF's
 * GGML_QUANT_SIZES) and half-precision conversions.
 */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "tm/tm_dtype.h"

#define T(id, nm, bs, ts, dq, q) [id] = {nm, bs, ts, dq, q}

static const tm_dtype_traits dtype_traits[TM_DTYPE_COUNT] = {
    T(TM_DTYPE_F32, "f32", 1, 4, true, true),
    T(TM_DTYPE_F16, "f16", 1, 2, true, true),
    T(TM_DTYPE_Q4_0, "q4_0", 32, 18, true, true),
    T(TM_DTYPE_Q4_1, "q4_1", 32, 20, true, true),
    T(TM_DTYPE_Q5_0, "q5_0", 32, 22, true, true),
    T(TM_DTYPE_Q5_1, "q5_1", 32, 24, true, true),
    T(TM_DTYPE_Q8_0, "q8_0", 32, 34, true, true),
    T(TM_DTYPE_Q8_1, "q8_1", 32, 36, false, false),
    T(TM_DTYPE_Q2_K, "q2_K", 256, 84, true, true),
    T(TM_DTYPE_Q3_K, "q3_K", 256, 110, true, true),
    T(TM_DTYPE_Q4_K, "q4_K", 256, 144, true, true),
    T(TM_DTYPE_Q5_K, "q5_K", 256, 176, true, true),
    T(TM_DTYPE_Q6_K, "q6_K", 256, 210, true, true),
    T(TM_DTYPE_Q8_K, "q8_K", 256, 292, false, false),
    T(TM_DTYPE_IQ2_XXS, "iq2_xxs", 256, 66, false, false),
    T(TM_DTYPE_IQ2_XS, "iq2_xs", 256, 74, false, false),
    T(TM_DTYPE_IQ3_XXS, "iq3_xxs", 256, 98, false, false),
    T(TM_DTYPE_IQ1_S, "iq1_s", 256, 50, false, false),
    T(TM_DTYPE_IQ4_NL, "iq4_nl", 32, 18, false, false),
    T(TM_DTYPE_IQ3_S, "iq3_s", 256, 110, false, false),
    T(TM_DTYPE_IQ2_S, "iq2_s", 256, 82, false, false),
    T(TM_DTYPE_IQ4_XS, "iq4_xs", 256, 136, false, false),
    T(TM_DTYPE_I8, "i8", 1, 1, false, false),
    T(TM_DTYPE_I16, "i16", 1, 2, false, false),
    T(TM_DTYPE_I32, "i32", 1, 4, false, false),
    T(TM_DTYPE_I64, "i64", 1, 8, false, false),
    T(TM_DTYPE_F64, "f64", 1, 8, false, false),
    T(TM_DTYPE_IQ1_M, "iq1_m", 256, 56, false, false),
    T(TM_DTYPE_BF16, "bf16", 1, 2, true, true),
    T(TM_DTYPE_TQ1_0, "tq1_0", 256, 54, false, false),
    T(TM_DTYPE_TQ2_0, "tq2_0", 256, 66, false, false),
    T(TM_DTYPE_MXFP4, "mxfp4", 32, 17, false, false),
};

#undef T

bool tm_dtype_is_valid(uint32_t v) { return v < TM_DTYPE_COUNT && dtype_traits[v].name != NULL; }

const tm_dtype_traits *tm_dtype_get_traits(uint32_t v) {
    return tm_dtype_is_valid(v) ? &dtype_traits[v] : NULL;
}

const char *tm_dtype_name(tm_dtype t) {
    return tm_dtype_is_valid((uint32_t)t) ? dtype_traits[t].name : "?";
}

tm_status tm_dtype_from_name(const char *name, tm_dtype *out) {
    for (uint32_t i = 0; name != NULL && i < TM_DTYPE_COUNT; i++) {
        const char *n = dtype_traits[i].name;
        if (n != NULL && strcasecmp(n, name) == 0) { /* "Q8_0" as "q8_0" */
            *out = (tm_dtype)i;
            return TM_OK;
        }
    }
    return tm_fail(TM_ERR_NOT_FOUND, "unknown dtype '%s'", name != NULL ? name : "(null)");
}

tm_status tm_dtype_row_bytes(tm_dtype t, int64_t n, size_t *out) {
    const tm_dtype_traits *tr = tm_dtype_get_traits((uint32_t)t);
    if (tr == NULL)
        return tm_fail(TM_ERR_FORMAT, "invalid dtype %d", (int)t);
    if (n < 0 || n % tr->blck_size != 0)
        return tm_fail(TM_ERR_FORMAT, "%s: %lld elements is not a multiple of the block size %d",
                       tr->name, (long long)n, tr->blck_size);
    if (!tm_size_mul((size_t)(n / tr->blck_size), (size_t)tr->type_size, out))
        return tm_fail(TM_ERR_FORMAT, "%s: row of %lld elements overflows", tr->name, (long long)n);
    return TM_OK;
}

/* IEEE half <-> single, bit-exact with numpy's float16 casts. */
float tm_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t tm_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) { /* inf or nan */
        if (absx == 0x7f800000u)
            return (uint16_t)(sign | 0x7c00u);
        uint32_t m = (absx >> 13) & 0x3ffu;
        return (uint16_t)(sign | 0x7c00u | (m ? m : 0x200u));
    }
    if (absx >= 0x477ff000u) /* rounds to >= 65520: overflow to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (absx < 0x38800000u) { /* result is subnormal or zero */
        if (absx < 0x33000000u)
            return (uint16_t)sign; /* below half the smallest subnormal */
        uint32_t e = absx >> 23;
        uint32_t m = (absx & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1u)))
            r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = absx - 0x38000000u; /* rebias exponent 127 -> 15 */
    uint32_t lo = r & 0x1fffu;
    r >>= 13;
    if (lo > 0x1000u || (lo == 0x1000u && (r & 1u)))
        r++;
    return (uint16_t)(sign | r);
}

float tm_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float    f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t tm_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u); /* quiet NaN */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}
