/*
 * tm_gguf.h - GGUF reader (versions 2 and 3) over a read-only mmap, and a writer.
 *
 * The reader validates the whole header at open: every string length, array
 * count, tensor shape, offset and size is checked against the file size with
 * overflow-safe arithmetic before any pointer is formed. After a successful
 * open, every accessor is a plain lookup; tensor data pointers point into the
 * mapping (zero copy) and stay valid until tm_gguf_close().
 *
 *     tm_gguf *g = NULL;
 *     if (tm_gguf_open("model.gguf", &g) != TM_OK) die(tm_last_error());
 *     int64_t k = tm_gguf_find_key(g, "general.architecture");
 *     if (k >= 0 && tm_gguf_kv_type(g, k) == TM_GGUF_TYPE_STRING)
 *         printf("%.*s\n", (int)tm_gguf_kv_str(g, k).len, tm_gguf_kv_str(g, k).ptr);
 *     for (int64_t i = 0; i < tm_gguf_n_tensors(g); i++) {
 *         const tm_gguf_tensor *t = tm_gguf_tensor_at(g, i);
 *         ...t->name, t->dtype, t->ne, t->data, t->n_bytes...
 *     }
 *     tm_gguf_close(g);
 *
 * Threads: a tm_gguf is immutable after open; any number of threads may read
 * it. A tm_gguf_writer is used by one thread at a time.
 */
#ifndef TM_GGUF_H
#define TM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_dtype.h"
#include "tm/tm_status.h"

#define TM_GGUF_MAGIC 0x46554747u /* "GGUF" little-endian */
#define TM_GGUF_DEFAULT_ALIGNMENT 32
#define TM_GGUF_MAX_DIMS 4
#define TM_GGUF_MAX_ALIGNMENT (1u << 24) /* general.alignment cap: 16 MiB */
#define TM_GGUF_MAX_DEPTH 8              /* array nesting levels; 1 = a plain array */
#define TM_GGUF_MAX_NAME 65535           /* bytes of a key or tensor name */

/* Metadata value types: GGUF's gguf_type numbers (on-disk, append-only). */
typedef enum tm_gguf_type {
    TM_GGUF_TYPE_UINT8 = 0,
    TM_GGUF_TYPE_INT8 = 1,
    TM_GGUF_TYPE_UINT16 = 2,
    TM_GGUF_TYPE_INT16 = 3,
    TM_GGUF_TYPE_UINT32 = 4,
    TM_GGUF_TYPE_INT32 = 5,
    TM_GGUF_TYPE_FLOAT32 = 6,
    TM_GGUF_TYPE_BOOL = 7,
    TM_GGUF_TYPE_STRING = 8,
    TM_GGUF_TYPE_ARRAY = 9,
    TM_GGUF_TYPE_UINT64 = 10,
    TM_GGUF_TYPE_INT64 = 11,
    TM_GGUF_TYPE_FLOAT64 = 12,
} tm_gguf_type;

/* A byte string inside the mapping: not NUL-terminated, may hold any bytes. */
typedef struct tm_strview {
    const char *ptr;
    size_t      len;
} tm_strview;

typedef struct tm_gguf_tensor {
    tm_strview  name; /* points into the mapping */
    tm_dtype    dtype;
    int32_t     n_dims;               /* 1..4 */
    int64_t     ne[TM_GGUF_MAX_DIMS]; /* elements per dim, ne[0] fastest; unused dims are 1 */
    uint64_t    offset;               /* from the start of the data section */
    size_t      n_bytes;              /* bytes of the tensor data */
    const void *data;                 /* inside the mapping; valid until tm_gguf_close() */
} tm_gguf_tensor;

typedef struct tm_gguf tm_gguf; /* opaque */

/* Opens and validates path. On failure *out stays NULL and the message names the
 * file and the problem. */
tm_status tm_gguf_open(const char *path, tm_gguf **out);

/* Same, over caller memory (fuzzers, tests); buf must outlive the handle. */
tm_status tm_gguf_open_memory(const void *buf, size_t size, tm_gguf **out);

void tm_gguf_close(tm_gguf *g); /* NULL is a no-op */

uint32_t tm_gguf_version(const tm_gguf *g);
size_t   tm_gguf_alignment(const tm_gguf *g);
size_t   tm_gguf_data_offset(const tm_gguf *g); /* start of the data section in the file */
size_t   tm_gguf_file_size(const tm_gguf *g);

/* ---- metadata ---------------------------------------------------------------
 * Keys are addressed by index 0..n_kv-1. Getters of the wrong type are
 * invariant violations (TM_ASSERT): check tm_gguf_kv_type() first, or use the
 * tm_gguf_get_* conveniences which return TM_ERR_FORMAT on a type mismatch. */
int64_t      tm_gguf_n_kv(const tm_gguf *g);
int64_t      tm_gguf_find_key(const tm_gguf *g, const char *key); /* -1 when absent */
tm_strview   tm_gguf_kv_key(const tm_gguf *g, int64_t i);
tm_gguf_type tm_gguf_kv_type(const tm_gguf *g, int64_t i);

uint8_t    tm_gguf_kv_u8(const tm_gguf *g, int64_t i);
int8_t     tm_gguf_kv_i8(const tm_gguf *g, int64_t i);
uint16_t   tm_gguf_kv_u16(const tm_gguf *g, int64_t i);
int16_t    tm_gguf_kv_i16(const tm_gguf *g, int64_t i);
uint32_t   tm_gguf_kv_u32(const tm_gguf *g, int64_t i);
int32_t    tm_gguf_kv_i32(const tm_gguf *g, int64_t i);
uint64_t   tm_gguf_kv_u64(const tm_gguf *g, int64_t i);
int64_t    tm_gguf_kv_i64(const tm_gguf *g, int64_t i);
float      tm_gguf_kv_f32(const tm_gguf *g, int64_t i);
double     tm_gguf_kv_f64(const tm_gguf *g, int64_t i);
bool       tm_gguf_kv_bool(const tm_gguf *g, int64_t i);
tm_strview tm_gguf_kv_str(const tm_gguf *g, int64_t i);

/* Arrays: element type, count and elements. i is either a kv index (its
 * value must be an array) or a nested-array handle from tm_gguf_kv_arr_sub().
 * Handles of nested arrays are negative, so they never alias a kv index; the
 * array accessors and tm_gguf_kv_type() take both, tm_gguf_kv_key() only kv
 * indices. Every handle stays valid until tm_gguf_close().
 *
 *     int64_t k = tm_gguf_find_key(g, "example.nested"); // [[1, 2], [3]]
 *     for (uint64_t j = 0; j < tm_gguf_kv_arr_n(g, k); j++) {
 *         int64_t sub = tm_gguf_kv_arr_sub(g, k, j);   // element j, itself an array
 *         ...tm_gguf_kv_arr_type(g, sub), tm_gguf_kv_arr_n(g, sub)...
 *     }
 */
tm_gguf_type tm_gguf_kv_arr_type(const tm_gguf *g, int64_t i);
uint64_t     tm_gguf_kv_arr_n(const tm_gguf *g, int64_t i);
/* Element 0 of an array of fixed-size elements (any type but STRING and ARRAY):
 * a pointer to n little-endian elements inside the mapping, possibly
 * unaligned (read them with tm_bytes.h). Bool elements are validated 0 or 1. */
const void *tm_gguf_kv_arr_data(const tm_gguf *g, int64_t i);
tm_strview  tm_gguf_kv_arr_str(const tm_gguf *g, int64_t i, uint64_t j); /* string arrays */
int64_t     tm_gguf_kv_arr_sub(const tm_gguf *g, int64_t i, uint64_t j); /* arrays of arrays */

/* Integer value of any integer or bool kv, widened; TM_ERR_FORMAT on other types,
 * TM_ERR_NOT_FOUND when the key is absent (message names the key). */
tm_status tm_gguf_get_int(const tm_gguf *g, const char *key, int64_t *out);
tm_status tm_gguf_get_float(const tm_gguf *g, const char *key, double *out); /* ints too */
tm_status tm_gguf_get_str(const tm_gguf *g, const char *key, tm_strview *out);
tm_status tm_gguf_get_bool(const tm_gguf *g, const char *key, bool *out);

/* ---- tensors ---------------------------------------------------------------- */
int64_t               tm_gguf_n_tensors(const tm_gguf *g);
const tm_gguf_tensor *tm_gguf_tensor_at(const tm_gguf *g, int64_t i);
const tm_gguf_tensor *tm_gguf_find_tensor(const tm_gguf *g, const char *name); /* NULL: absent */

const char *tm_gguf_type_name(tm_gguf_type t); /* "uint32", "array", ...; "?" if invalid */

/* ---- writer -----------------------------------------------------------------
 * Builds a GGUF v3 file in memory-light fashion: metadata and tensor infos are
 * collected, then tm_gguf_writer_write() streams header, padding and tensor data
 * to the path. Tensor data is borrowed until write returns.
 *
 *     tm_gguf_writer *w = NULL;
 *     tm_gguf_writer_init(&w);
 *     tm_gguf_writer_set_str(w, "general.architecture", "llama");
 *     tm_gguf_writer_set_u32(w, "llama.block_count", 2);
 *     int64_t ne[2] = {64, 32};
 *     tm_gguf_writer_add_tensor(w, "token_embd.weight", TM_DTYPE_F32, 2, ne, data, nbytes);
 *     tm_gguf_writer_write(w, "out.gguf");
 *     tm_gguf_writer_free(w);
 */
typedef struct tm_gguf_writer tm_gguf_writer;

tm_status tm_gguf_writer_init(tm_gguf_writer **out);
void      tm_gguf_writer_free(tm_gguf_writer *w);

/* Setting an existing key replaces it. Strings are copied. */
tm_status tm_gguf_writer_set_u8(tm_gguf_writer *w, const char *key, uint8_t v);
tm_status tm_gguf_writer_set_i8(tm_gguf_writer *w, const char *key, int8_t v);
tm_status tm_gguf_writer_set_u16(tm_gguf_writer *w, const char *key, uint16_t v);
tm_status tm_gguf_writer_set_i16(tm_gguf_writer *w, const char *key, int16_t v);
tm_status tm_gguf_writer_set_u32(tm_gguf_writer *w, const char *key, uint32_t v);
tm_status tm_gguf_writer_set_i32(tm_gguf_writer *w, const char *key, int32_t v);
tm_status tm_gguf_writer_set_u64(tm_gguf_writer *w, const char *key, uint64_t v);
tm_status tm_gguf_writer_set_i64(tm_gguf_writer *w, const char *key, int64_t v);
tm_status tm_gguf_writer_set_f32(tm_gguf_writer *w, const char *key, float v);
tm_status tm_gguf_writer_set_f64(tm_gguf_writer *w, const char *key, double v);
tm_status tm_gguf_writer_set_bool(tm_gguf_writer *w, const char *key, bool v);
tm_status tm_gguf_writer_set_str(tm_gguf_writer *w, const char *key, const char *v);
tm_status tm_gguf_writer_set_strn(tm_gguf_writer *w, const char *key, const char *v, size_t len);
/* Array of fixed-size elements (type must not be STRING or ARRAY): data holds n
 * host-order elements of the C type matching type (bool for BOOL, float for
 * FLOAT32, ...); they are converted to little-endian and copied. Empty arrays
 * are allowed (n == 0, data may be NULL). */
tm_status tm_gguf_writer_set_arr(tm_gguf_writer *w, const char *key, tm_gguf_type type,
                                 const void *data, uint64_t n);
tm_status tm_gguf_writer_set_arr_str(tm_gguf_writer *w, const char *key, const char *const *v,
                                     uint64_t n);
/* Copies every kv of src (nested arrays included), e.g. to requantize a model.
 * Keys already set are replaced; src is only read during the call. */
tm_status tm_gguf_writer_copy_kv(tm_gguf_writer *w, const tm_gguf *src);

/* ne[0..n_dims) as in tm_gguf_tensor; n_bytes must equal the size the shape
 * needs, else TM_ERR_INVALID (also for duplicate names). data is borrowed: it
 * must stay valid and unchanged until the last write call. */
tm_status tm_gguf_writer_add_tensor(tm_gguf_writer *w, const char *name, tm_dtype dtype,
                                    int32_t n_dims, const int64_t *ne, const void *data,
                                    size_t n_bytes);
/* Writes the file (TM_ERR_IO on failure; a partial file may remain). Fails with
 * TM_ERR_INVALID when general.alignment is set but is not a uint32 power of
 * two <= TM_GGUF_MAX_ALIGNMENT. */
tm_status tm_gguf_writer_write(tm_gguf_writer *w, const char *path);
/* Same bytes into a new buffer; the caller frees *out with tm_free(). */
tm_status tm_gguf_writer_write_memory(tm_gguf_writer *w, uint8_t **out, size_t *out_size);

#endif /* TM_GGUF_H */
