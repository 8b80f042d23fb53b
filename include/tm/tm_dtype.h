/*
 * tm_dtype.h - element types and GGUF's quantized block formats.
 *
 * Values equal GGUF's ggml_type numbers (on-disk enum: explicit and
 * append-only). A row of n elements of a block type occupies
 * n / blck_size * type_size bytes; n must be a multiple of blck_size.
 *
 *     size_t row;
 *     if (tm_dtype_row_bytes(TM_DTYPE_Q4_K, 4096, &row) != TM_OK) ...
 *     float out[4096];
 *     tm_dequantize_row(TM_DTYPE_Q4_K, src, out, 4096);
 *
 * Threads: pure functions, any thread.
 */
#ifndef TM_DTYPE_H
#define TM_DTYPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_status.h"

typedef enum tm_dtype {
    TM_DTYPE_F32 = 0,
    TM_DTYPE_F16 = 1,
    TM_DTYPE_Q4_0 = 2,
    TM_DTYPE_Q4_1 = 3,
    TM_DTYPE_Q5_0 = 6,
    TM_DTYPE_Q5_1 = 7,
    TM_DTYPE_Q8_0 = 8,
    TM_DTYPE_Q8_1 = 9,
    TM_DTYPE_Q2_K = 10,
    TM_DTYPE_Q3_K = 11,
    TM_DTYPE_Q4_K = 12,
    TM_DTYPE_Q5_K = 13,
    TM_DTYPE_Q6_K = 14,
    TM_DTYPE_Q8_K = 15,
    TM_DTYPE_IQ2_XXS = 16,
    TM_DTYPE_IQ2_XS = 17,
    TM_DTYPE_IQ3_XXS = 18,
    TM_DTYPE_IQ1_S = 19,
    TM_DTYPE_IQ4_NL = 20,
    TM_DTYPE_IQ3_S = 21,
    TM_DTYPE_IQ2_S = 22,
    TM_DTYPE_IQ4_XS = 23,
    TM_DTYPE_I8 = 24,
    TM_DTYPE_I16 = 25,
    TM_DTYPE_I32 = 26,
    TM_DTYPE_I64 = 27,
    TM_DTYPE_F64 = 28,
    TM_DTYPE_IQ1_M = 29,
    TM_DTYPE_BF16 = 30,
    TM_DTYPE_TQ1_0 = 34,
    TM_DTYPE_TQ2_0 = 35,
    TM_DTYPE_MXFP4 = 39,
    TM_DTYPE_COUNT = 40, /* one past the largest value; not a type */
} tm_dtype;

typedef struct tm_dtype_traits {
    const char *name;        /* "q4_K", as GGUF and llama.cpp print it */
    int32_t     blck_size;   /* elements per block; 1 for plain types */
    int32_t     type_size;   /* bytes per block */
    bool        can_dequant; /* TensorMesh has a reference dequantizer */
    bool        can_quant;   /* TensorMesh has a reference quantizer */
} tm_dtype_traits;

/* False for values GGUF does not define (4, 5, 31..33, 36..38, >= COUNT). */
bool tm_dtype_is_valid(uint32_t v);

/* Traits of a valid dtype; NULL for an invalid value. Static storage. */
const tm_dtype_traits *tm_dtype_get_traits(uint32_t v);

const char *tm_dtype_name(tm_dtype t); /* "?" for invalid values */

/* Looks a dtype up by name, case-insensitively ("Q4_K", "f16"). */
tm_status tm_dtype_from_name(const char *name, tm_dtype *out);

/* Bytes of a row of n elements; TM_ERR_FORMAT when n is not a multiple of the
 * block size, the type is invalid, or the size overflows. */
tm_status tm_dtype_row_bytes(tm_dtype t, int64_t n, size_t *out);

/* ---- half precision -------------------------------------------------------- */
float    tm_f16_to_f32(uint16_t h);
uint16_t tm_f32_to_f16(float f); /* round to nearest even, as numpy */
float    tm_bf16_to_f32(uint16_t h);
uint16_t tm_f32_to_bf16(float f); /* round to nearest even; NaN stays NaN */

/* ---- reference quantization (plain C, bit-exact with the gguf package) ------
 * n is the number of elements and must be a multiple of the block size. */
tm_status tm_dequantize_row(tm_dtype t, const void *src, float *dst, int64_t n);
tm_status tm_quantize_row(tm_dtype t, const float *src, void *dst, int64_t n);

#endif /* TM_DTYPE_H */
