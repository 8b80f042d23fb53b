/*
 * tm_safetensors.h - safetensors reader (single file, sharded folder, memory).
 *
 * The whole header of every shard is validated at open: header length, JSON
 * syntax (duplicate keys rejected), dtypes, shapes, data offsets, sizes
 * (overflow-checked), overlaps and names across shards. After a successful
 * open every accessor is a plain lookup; tensor data points into the read-only
 * mappings (zero copy) and stays valid until tm_st_close().
 *
 *     tm_st_file *st = NULL;
 *     // a .safetensors file, a model.safetensors.index.json, or an HF folder
 *     if (tm_st_open("models/qwen2-0.5b", &st) != TM_OK) die(tm_last_error());
 *     const tm_st_tensor *t = tm_st_find(st, "model.embed_tokens.weight");
 *     if (t != NULL)
 *         printf("%s %s ne=[%lld, %lld] %zu bytes\n", t->name,
 *                tm_st_dtype_name(t->st_dtype), (long long)t->ne[0],
 *                (long long)t->ne[1], t->n_bytes);
 *     for (int64_t i = 0; i < tm_st_n_tensors(st); i++)
 *         use(tm_st_tensor_at(st, i));          // sorted by name
 *     tm_st_close(st);
 *
 * Threads: a tm_st_file is immutable after open; any number of threads may read
 * it. Data pointers may be unaligned (safetensors only aligns the data section
 * to 8 bytes when the writer pads the header): copy or check before vector loads.
 */
#ifndef TM_SAFETENSORS_H
#define TM_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_dtype.h"
#include "tm/tm_status.h"

#define TM_ST_MAX_DIMS 8
#define TM_ST_MAX_HEADER_BYTES ((uint64_t)100 << 20) /* same cap as the Rust reference */
#define TM_ST_MAX_INDEX_BYTES ((size_t)64 << 20)     /* model.safetensors.index.json */

/* safetensors element types. Not an on-disk number: the file spells the name. */
typedef enum tm_st_dtype {
    TM_ST_DTYPE_BOOL = 0,
    TM_ST_DTYPE_U8 = 1,
    TM_ST_DTYPE_I8 = 2,
    TM_ST_DTYPE_I16 = 3,
    TM_ST_DTYPE_U16 = 4,
    TM_ST_DTYPE_F16 = 5,
    TM_ST_DTYPE_BF16 = 6,
    TM_ST_DTYPE_I32 = 7,
    TM_ST_DTYPE_U32 = 8,
    TM_ST_DTYPE_F32 = 9,
    TM_ST_DTYPE_I64 = 10,
    TM_ST_DTYPE_U64 = 11,
    TM_ST_DTYPE_F64 = 12,
    TM_ST_DTYPE_COUNT = 13, /* not a type */
} tm_st_dtype;

typedef struct tm_st_tensor {
    const char *name;     /* NUL-terminated; owned by the file, valid until tm_st_close() */
    tm_st_dtype st_dtype; /* as spelled in the file */
    tm_dtype    dtype;    /* matching tm_dtype; TM_DTYPE_COUNT when none (BOOL, U8, U16..U64) */
    int32_t     n_dims;   /* 0..TM_ST_MAX_DIMS; 0 is a scalar */
    int64_t     ne[TM_ST_MAX_DIMS];    /* elements per dim, ne[0] fastest (ggml order); unused: 1 */
    int64_t     shape[TM_ST_MAX_DIMS]; /* as in the file (row-major, last fastest); unused: 0 */
    int64_t     n_elements;            /* product of shape; 1 for a scalar */
    uint64_t    offset;                /* bytes from the start of its shard's data section */
    size_t      n_bytes;               /* n_elements * element size */
    int32_t     shard;                 /* index for tm_st_shard_path() */
    const void *data; /* inside the read-only mapping; may be unaligned; until tm_st_close() */
} tm_st_tensor;

typedef struct tm_st_file tm_st_file; /* opaque: one file or a set of shards */

/* Opens path, which is one of:
 *   - a directory: model.safetensors.index.json when present, else model.safetensors;
 *   - a file whose name ends in ".index.json": every shard listed in weight_map,
 *     resolved next to the index (shard names may not contain '/', '\' or be "..");
 *   - any other file: a single safetensors file.
 * On failure *out stays NULL and tm_last_error() names the file and the problem:
 * TM_ERR_FORMAT for a malformed file, TM_ERR_UNSUPPORTED for a recognized dtype
 * TensorMesh does not read (F8_E4M3, F8_E5M2, ...), TM_ERR_NOT_FOUND for a missing
 * shard or an HF folder without weights, TM_ERR_IO / TM_ERR_NOMEM. */
tm_status tm_st_open(const char *path, tm_st_file **out);

/* Same checks over one safetensors image in caller memory (fuzzers, tests). The
 * buffer is borrowed and must outlive the handle. */
tm_status tm_st_open_memory(const void *buf, size_t size, tm_st_file **out);

void tm_st_close(tm_st_file *f); /* NULL is a no-op */

int64_t             tm_st_n_tensors(const tm_st_file *f);
const tm_st_tensor *tm_st_tensor_at(const tm_st_file *f, int64_t i); /* sorted by name */

/* Tensor named name across all shards; NULL when there is none. */
const tm_st_tensor *tm_st_find(const tm_st_file *f, const char *name);

/* Shards in the order first listed by the index (a single file is shard 0).
 * Paths are owned by the file; "<memory>" for tm_st_open_memory(). */
int32_t     tm_st_n_shards(const tm_st_file *f);
const char *tm_st_shard_path(const tm_st_file *f, int32_t i);

/* "__metadata__" string map. For shards: the union, the first shard winning on a
 * key present in several. Strings owned by the file. */
int64_t     tm_st_n_metadata(const tm_st_file *f);
void        tm_st_metadata_at(const tm_st_file *f, int64_t i, const char **key, const char **value);
const char *tm_st_metadata_get(const tm_st_file *f, const char *key); /* NULL when absent */

/* ---- dtypes ------------------------------------------------------------------ */
const char *tm_st_dtype_name(tm_st_dtype t); /* "F32"; "?" for invalid values */
size_t      tm_st_dtype_size(tm_st_dtype t); /* bytes per element; 0 for invalid values */

/* Parses a safetensors dtype name (case-sensitive, as the format spells it).
 * TM_ERR_UNSUPPORTED for names of the format that TensorMesh does not read
 * (F8_E4M3, F8_E5M2, F8_E8M0, F6_*, F4), TM_ERR_FORMAT for unknown names. */
tm_status tm_st_dtype_from_name(const char *name, tm_st_dtype *out);

#endif /* TM_SAFETENSORS_H */
