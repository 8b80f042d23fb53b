/*
 * safetensors.c - safetensors reader: single files, sharded folders, memory images.
 *
 * DESIGN
 * ------
 * Format: 8-byte little-endian header length N, N bytes of JSON (an object of
 * tensor name -> {dtype, shape, data_offsets} plus an optional "__metadata__"
 * string map), then the data section; data_offsets are relative to it.
 *
 * Every shard is mapped read-only and its header fully validated before any
 * tensor pointer is formed: offsets and sizes are checked against the data
 * section with overflow-safe arithmetic, and the byte ranges of one shard must
 * not overlap (holes and trailing bytes are tolerated, as in most readers).
 * Names and metadata strings are copied into one pool per shard, so jansson's
 * tree is freed as soon as the header is parsed. After open the tensor table is
 * sorted by name; lookups are binary searches and the handle is immutable.
 *
 * Shards: the index's weight_map decides which files are opened (each once, in
 * order of first mention); a shard name is a bare file name next to the index.
 * Each weight_map entry must be found in the shard it names, and a name present
 * in two shards is an error.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "tm/tm_bytes.h"
#include "tm/tm_io.h"
#include "tm/tm_safetensors.h"

typedef struct st_shard {
    char   *path; /* owned; "<memory>" for a memory image */
    tm_mmap map;  /* empty for a memory image */
    char   *pool; /* tensor names and metadata strings of this shard */
} st_shard;

typedef struct st_meta {
    const char *key;   /* in a shard pool */
    const char *value; /* in a shard pool */
} st_meta;

struct tm_st_file {
    st_shard     *shards; /* n_shards */
    int32_t       n_shards;
    int32_t       cap_shards;
    tm_st_tensor *tensors; /* n_tensors, sorted by name once open returns */
    int64_t       n_tensors;
    int64_t       cap_tensors;
    st_meta      *meta; /* n_meta */
    int64_t       n_meta;
    int64_t       cap_meta;
};

/* ---- dtypes ------------------------------------------------------------------ */

typedef struct st_dtype_info {
    const char *name;
    size_t      size;  /* bytes per element */
    tm_dtype    dtype; /* TM_DTYPE_COUNT when TensorMesh has no such type */
} st_dtype_info;

static const st_dtype_info st_dtypes[TM_ST_DTYPE_COUNT] = {
    [TM_ST_DTYPE_BOOL] = {"BOOL", 1, TM_DTYPE_COUNT},
    [TM_ST_DTYPE_U8] = {"U8", 1, TM_DTYPE_COUNT},
    [TM_ST_DTYPE_I8] = {"I8", 1, TM_DTYPE_I8},
    [TM_ST_DTYPE_I16] = {"I16", 2, TM_DTYPE_I16},
    [TM_ST_DTYPE_U16] = {"U16", 2, TM_DTYPE_COUNT},
    [TM_ST_DTYPE_F16] = {"F16", 2, TM_DTYPE_F16},
    [TM_ST_DTYPE_BF16] = {"BF16", 2, TM_DTYPE_BF16},
    [TM_ST_DTYPE_I32] = {"I32", 4, TM_DTYPE_I32},
    [TM_ST_DTYPE_U32] = {"U32", 4, TM_DTYPE_COUNT},
    [TM_ST_DTYPE_F32] = {"F32", 4, TM_DTYPE_F32},
    [TM_ST_DTYPE_I64] = {"I64", 8, TM_DTYPE_I64},
    [TM_ST_DTYPE_U64] = {"U64", 8, TM_DTYPE_COUNT},
    [TM_ST_DTYPE_F64] = {"F64", 8, TM_DTYPE_F64},
};

/* Names the format defines that TensorMesh recognizes but does not read. */
static const char *const st_unsupported_dtypes[] = {
    "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64",
};

const char *tm_st_dtype_name(tm_st_dtype t) {
    return ((unsigned)t < TM_ST_DTYPE_COUNT) ? st_dtypes[t].name : "?";
}

size_t tm_st_dtype_size(tm_st_dtype t) {
    return ((unsigned)t < TM_ST_DTYPE_COUNT) ? st_dtypes[t].size : 0;
}

tm_status tm_st_dtype_from_name(const char *name, tm_st_dtype *out) {
    for (int i = 0; i < TM_ST_DTYPE_COUNT; i++) {
        if (strcmp(name, st_dtypes[i].name) == 0) {
            *out = (tm_st_dtype)i;
            return TM_OK;
        }
    }
    for (size_t i = 0; i < sizeof st_unsupported_dtypes / sizeof st_unsupported_dtypes[0]; i++) {
        if (strcmp(name, st_unsupported_dtypes[i]) == 0)
            return tm_fail(TM_ERR_UNSUPPORTED, "safetensors dtype %s is not supported", name);
    }
    return tm_fail(TM_ERR_FORMAT, "unknown safetensors dtype \"%.64s\"", name);
}

/* ---- growth helpers (load time only) -------------------------------------------- */

static tm_status st_grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap)
        return TM_OK;
    int64_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    size_t bytes;
    if (!tm_size_mul((size_t)ncap, elem, &bytes))
        return tm_fail(TM_ERR_NOMEM, "safetensors: table too large");
    void *np = tm_realloc(*p, bytes);
    if (np == NULL)
        return tm_fail(TM_ERR_NOMEM, "safetensors: out of memory");
    *p = np;
    *cap = ncap;
    return TM_OK;
}

static tm_status st_add_shard(tm_st_file *f, const char *path, int32_t *idx) {
    int64_t cap = f->cap_shards;
    TM_TRY(st_grow((void **)&f->shards, &cap, (int64_t)f->n_shards + 1, sizeof(st_shard)));
    f->cap_shards = (int32_t)cap;
    st_shard *s = &f->shards[f->n_shards];
    *s = (st_shard){0};
    s->path = tm_strdup(path);
    if (s->path == NULL)
        return tm_fail(TM_ERR_NOMEM, "safetensors: out of memory");
    *idx = f->n_shards++;
    return TM_OK;
}

/* ---- header parsing ------------------------------------------------------------- */

static int st_cmp_offset(const void *a, const void *b) {
    const tm_st_tensor *x = a, *y = b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : (x->n_bytes > y->n_bytes);
}

static int st_cmp_name(const void *a, const void *b) {
    return strcmp(((const tm_st_tensor *)a)->name, ((const tm_st_tensor *)b)->name);
}

/* Reads a non-negative JSON integer. */
static bool st_json_u64(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return false;
    *out = (uint64_t)json_integer_value(v);
    return true;
}

/* Validates one tensor entry and fills t (name still points into the JSON tree). */
static tm_status st_parse_tensor(const char *label, const char *name, json_t *obj,
                                 uint64_t data_size, tm_st_tensor *t) {
    if (!json_is_object(obj))
        return tm_fail(TM_ERR_FORMAT, "%s: tensor \"%.200s\": entry is not an object", label, name);
    json_t *jd = json_object_get(obj, "dtype");
    json_t *js = json_object_get(obj, "shape");
    json_t *jo = json_object_get(obj, "data_offsets");
    if (!json_is_string(jd))
        return tm_fail(TM_ERR_FORMAT, "%s: tensor \"%.200s\": dtype missing or not a string", label,
                       name);
    if (!json_is_array(js))
        return tm_fail(TM_ERR_FORMAT, "%s: tensor \"%.200s\": shape missing or not an array", label,
                       name);
    if (!json_is_array(jo) || json_array_size(jo) != 2)
        return tm_fail(TM_ERR_FORMAT, "%s: tensor \"%.200s\": data_offsets is not 2 integers",
                       label, name);

    *t = (tm_st_tensor){.name = name};
    tm_status st = tm_st_dtype_from_name(json_string_value(jd), &t->st_dtype);
    if (st != TM_OK) {
        char why[256]; /* tm_last_error() is the buffer tm_fail writes: copy it first */
        snprintf(why, sizeof why, "%s", tm_last_error());
        return tm_fail(st, "%s: tensor \"%.200s\": %s", label, name, why);
    }
    t->dtype = st_dtypes[t->st_dtype].dtype;

    size_t rank = json_array_size(js);
    if (rank > TM_ST_MAX_DIMS)
        return tm_fail(TM_ERR_FORMAT, "%s: tensor \"%.200s\": rank %zu exceeds %d", label, name,
                       rank, TM_ST_MAX_DIMS);
    t->n_dims = (int32_t)rank;
    for (int i = 0; i < TM_ST_MAX_DIMS; i++)
        t->ne[i] = 1;
    size_t n_el = 1;
    for (size_t i = 0; i < rank; i++) {
        json_t *d = json_array_get(js, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return tm_fail(TM_ERR_FORMAT,
                           "%s: tensor \"%.200s\": shape[%zu] is not a non-negative integer", label,
                           name, i);
        int64_t dim = (int64_t)json_integer_value(d);
        if ((uint64_t)dim > SIZE_MAX || !tm_size_mul(n_el, (size_t)dim, &n_el) ||
            n_el > (size_t)INT64_MAX)
            return tm_fail(TM_ERR_FORMAT, "%s: tensor \"%.200s\": element count overflows", label,
                           name);
        t->shape[i] = dim;
        t->ne[rank - 1 - i] = dim; /* row-major last dim is the fastest: ne[0] */
    }
    t->n_elements = (int64_t)n_el;
    size_t n_bytes;
    if (!tm_size_mul(n_el, st_dtypes[t->st_dtype].size, &n_bytes))
        return tm_fail(TM_ERR_FORMAT, "%s: tensor \"%.200s\": byte size overflows", label, name);

    uint64_t begin, end;
    if (!st_json_u64(json_array_get(jo, 0), &begin) || !st_json_u64(json_array_get(jo, 1), &end))
        return tm_fail(TM_ERR_FORMAT,
                       "%s: tensor \"%.200s\": data_offsets are not non-negative integers", label,
                       name);
    if (begin > end)
        return tm_fail(TM_ERR_FORMAT,
                       "%s: tensor \"%.200s\": data_offsets begin %" PRIu64 " > end %" PRIu64,
                       label, name, begin, end);
    if (end > data_size)
        return tm_fail(TM_ERR_FORMAT,
                       "%s: tensor \"%.200s\": data end %" PRIu64
                       " is past the data section (%" PRIu64 " bytes)",
                       label, name, end, data_size);
    if (end - begin != (uint64_t)n_bytes)
        return tm_fail(TM_ERR_FORMAT,
                       "%s: tensor \"%.200s\": %" PRIu64 " data bytes but shape and dtype %s "
                       "need %zu",
                       label, name, end - begin, st_dtypes[t->st_dtype].name, n_bytes);
    t->offset = begin;
    t->n_bytes = n_bytes;
    return TM_OK;
}

static tm_status st_add_meta(tm_st_file *f, const char *key, const char *value) {
    for (int64_t i = 0; i < f->n_meta; i++) {
        if (strcmp(f->meta[i].key, key) == 0)
            return TM_OK; /* an earlier shard wins */
    }
    TM_TRY(st_grow((void **)&f->meta, &f->cap_meta, f->n_meta + 1, sizeof(st_meta)));
    f->meta[f->n_meta++] = (st_meta){key, value};
    return TM_OK;
}

/* Copies s into the pool at *pos and returns the copy. */
static const char *st_pool_put(char *pool, size_t *pos, const char *s) {
    size_t n = strlen(s) + 1;
    memcpy(pool + *pos, s, n);
    const char *r = pool + *pos;
    *pos += n;
    return r;
}

/* Parses the image buf[0, size) as shard number `shard` of f. */
static tm_status st_parse(tm_st_file *f, int32_t shard, const uint8_t *buf, size_t size) {
    const char *label = f->shards[shard].path;
    tm_status   st = TM_OK;
    json_t     *root = NULL;
    int64_t     first = f->n_tensors; /* this shard's entries start here */

    if (size < 8)
        return tm_fail(TM_ERR_FORMAT, "%s: %zu bytes is too small for a safetensors header", label,
                       size);
    uint64_t hdr_len = tm_load_u64_le(buf);
    if (hdr_len > size - 8)
        return tm_fail(TM_ERR_FORMAT, "%s: header length %" PRIu64 " is past the end of the file",
                       label, hdr_len);
    if (hdr_len > TM_ST_MAX_HEADER_BYTES)
        return tm_fail(TM_ERR_FORMAT, "%s: header of %" PRIu64 " bytes exceeds the limit", label,
                       hdr_len);
    const uint8_t *data = buf + 8 + hdr_len;
    uint64_t       data_size = size - 8 - hdr_len;

    json_error_t jerr;
    root = json_loadb((const char *)buf + 8, (size_t)hdr_len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return tm_fail(TM_ERR_FORMAT, "%s: header is not valid JSON: %s (line %d, column %d)",
                       label, jerr.text, jerr.line, jerr.column);
    if (!json_is_object(root)) {
        st = tm_fail(TM_ERR_FORMAT, "%s: header is not a JSON object", label);
        goto done;
    }

    json_t     *meta = NULL;
    const char *key;
    json_t     *val;
    size_t      pool_bytes = 0;
    json_object_foreach(root, key, val) {
        if (strcmp(key, "__metadata__") == 0) {
            if (!json_is_object(val)) {
                st = tm_fail(TM_ERR_FORMAT, "%s: __metadata__ is not an object", label);
                goto done;
            }
            const char *mk;
            json_t     *mv;
            json_object_foreach(val, mk, mv) {
                if (!json_is_string(mv)) {
                    st = tm_fail(TM_ERR_FORMAT, "%s: __metadata__[\"%.200s\"] is not a string",
                                 label, mk);
                    goto done;
                }
                pool_bytes += strlen(mk) + 1 + json_string_length(mv) + 1;
            }
            meta = val;
            continue;
        }
        st = st_grow((void **)&f->tensors, &f->cap_tensors, f->n_tensors + 1, sizeof(tm_st_tensor));
        if (st != TM_OK)
            goto done;
        tm_st_tensor *t = &f->tensors[f->n_tensors];
        st = st_parse_tensor(label, key, val, data_size, t);
        if (st != TM_OK)
            goto done;
        t->shard = shard;
        t->data = data + t->offset;
        f->n_tensors++;
        pool_bytes += strlen(key) + 1;
    }

    /* Overlap check within this shard: sort its tensors by offset. Empty tensors
     * occupy no bytes and cannot overlap anything. */
    int64_t n_here = f->n_tensors - first;
    if (n_here > 1)
        qsort(f->tensors + first, (size_t)n_here, sizeof(tm_st_tensor), st_cmp_offset);
    uint64_t      prev_end = 0;
    tm_st_tensor *prev = NULL;
    for (int64_t i = first; i < f->n_tensors; i++) {
        tm_st_tensor *t = &f->tensors[i];
        if (t->n_bytes == 0)
            continue;
        if (prev != NULL && t->offset < prev_end) {
            st = tm_fail(TM_ERR_FORMAT, "%s: tensors \"%.200s\" and \"%.200s\" overlap", label,
                         prev->name, t->name);
            goto done;
        }
        prev = t;
        prev_end = t->offset + t->n_bytes;
    }

    /* Move names and metadata out of the JSON tree into one pool. */
    char *pool = tm_malloc(pool_bytes ? pool_bytes : 1);
    if (pool == NULL) {
        st = tm_fail(TM_ERR_NOMEM, "%s: out of memory", label);
        goto done;
    }
    f->shards[shard].pool = pool;
    size_t pos = 0;
    for (int64_t i = first; i < f->n_tensors; i++)
        f->tensors[i].name = st_pool_put(pool, &pos, f->tensors[i].name);
    if (meta != NULL) {
        const char *mk;
        json_t     *mv;
        json_object_foreach(meta, mk, mv) {
            const char *k = st_pool_put(pool, &pos, mk);
            const char *v = st_pool_put(pool, &pos, json_string_value(mv));
            st = st_add_meta(f, k, v);
            if (st != TM_OK)
                goto done;
        }
    }
    TM_ASSERT(pos == pool_bytes);

done:
    if (st != TM_OK) {
        /* Names of this shard still point into root: drop its half-built entries. */
        if (f->shards[shard].pool == NULL)
            f->n_tensors = first;
    }
    json_decref(root);
    return st;
}

/* Sorts the table by name and rejects names present twice (only possible across shards:
 * JSON_REJECT_DUPLICATES catches them within one header). */
static tm_status st_finish(tm_st_file *f) {
    if (f->n_tensors > 1)
        qsort(f->tensors, (size_t)f->n_tensors, sizeof(tm_st_tensor), st_cmp_name);
    for (int64_t i = 1; i < f->n_tensors; i++) {
        const tm_st_tensor *a = &f->tensors[i - 1], *b = &f->tensors[i];
        if (strcmp(a->name, b->name) == 0)
            return tm_fail(TM_ERR_FORMAT, "tensor \"%.200s\" is in both %s and %s", a->name,
                           f->shards[a->shard].path, f->shards[b->shard].path);
    }
    return TM_OK;
}

static tm_status st_open_shard(tm_st_file *f, const char *path) {
    int32_t idx = -1;
    TM_TRY(st_add_shard(f, path, &idx));
    TM_TRY(tm_mmap_open(path, &f->shards[idx].map));
    return st_parse(f, idx, f->shards[idx].map.data, f->shards[idx].map.size);
}

/* ---- sharded index ---------------------------------------------------------------- */

static bool st_shard_name_ok(const char *s) {
    if (s[0] == '\0' || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p == '/' || *p == '\\')
            return false;
    }
    return strlen(s) < 1024;
}

static char *st_join(const char *dir, size_t dir_len, const char *name) {
    size_t n = dir_len + 1 + strlen(name) + 1;
    char  *p = tm_malloc(n);
    if (p == NULL)
        return NULL;
    if (dir_len == 0)
        snprintf(p, n, "%s", name);
    else
        snprintf(p, n, "%.*s/%s", (int)dir_len, dir, name);
    return p;
}

static tm_status st_open_index(tm_st_file *f, const char *index_path) {
    tm_status st = TM_OK;
    char     *text = NULL;
    size_t    len = 0;
    json_t   *root = NULL;
    char     *shard_path = NULL;
    /* Distinct shard names in order of first mention; point into root. */
    const char **names = NULL;
    int64_t      n_names = 0, cap_names = 0;

    TM_TRY(tm_file_read_all(index_path, TM_ST_MAX_INDEX_BYTES, &text, &len));
    json_error_t jerr;
    root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        st = tm_fail(TM_ERR_FORMAT, "%s: not valid JSON: %s (line %d, column %d)", index_path,
                     jerr.text, jerr.line, jerr.column);
        goto done;
    }
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(root) || !json_is_object(wm)) {
        st = tm_fail(TM_ERR_FORMAT, "%s: weight_map missing or not an object", index_path);
        goto done;
    }
    if (json_object_size(wm) == 0) {
        st = tm_fail(TM_ERR_FORMAT, "%s: weight_map is empty", index_path);
        goto done;
    }
    const char *key;
    json_t     *val;
    json_object_foreach(wm, key, val) {
        if (!json_is_string(val)) {
            st = tm_fail(TM_ERR_FORMAT, "%s: weight_map[\"%.200s\"] is not a string", index_path,
                         key);
            goto done;
        }
        const char *sn = json_string_value(val);
        if (!st_shard_name_ok(sn)) {
            st = tm_fail(TM_ERR_FORMAT,
                         "%s: weight_map[\"%.200s\"]: shard name \"%.200s\" is not a plain "
                         "file name",
                         index_path, key, sn);
            goto done;
        }
        bool seen = false;
        for (int64_t i = 0; i < n_names && !seen; i++)
            seen = strcmp(names[i], sn) == 0;
        if (!seen) {
            st = st_grow((void **)&names, &cap_names, n_names + 1, sizeof(char *));
            if (st != TM_OK)
                goto done;
            names[n_names++] = sn;
        }
    }

    const char *slash = strrchr(index_path, '/');
    size_t      dir_len = slash ? (size_t)(slash - index_path) : 0;
    if (slash == index_path)
        dir_len = 1; /* index in "/" */
    for (int64_t i = 0; i < n_names; i++) {
        shard_path = st_join(index_path, dir_len, names[i]);
        if (shard_path == NULL) {
            st = tm_fail(TM_ERR_NOMEM, "%s: out of memory", index_path);
            goto done;
        }
        if (!tm_path_is_file(shard_path)) {
            st = tm_fail(TM_ERR_NOT_FOUND, "%s: shard %s is missing (%s)", index_path, names[i],
                         shard_path);
            goto done;
        }
        st = st_open_shard(f, shard_path);
        if (st != TM_OK)
            goto done;
        tm_free(shard_path);
        shard_path = NULL;
    }
    st = st_finish(f);
    if (st != TM_OK)
        goto done;

    /* Every weight_map entry must live in the shard it names. */
    json_object_foreach(wm, key, val) {
        const tm_st_tensor *t = tm_st_find(f, key);
        const char         *sn = json_string_value(val);
        if (t == NULL) {
            st = tm_fail(TM_ERR_FORMAT, "%s: tensor \"%.200s\" is not in shard %s", index_path, key,
                         sn);
            goto done;
        }
        const char *sp = f->shards[t->shard].path;
        size_t      sl = strlen(sp), nl = strlen(sn);
        if (sl < nl || strcmp(sp + sl - nl, sn) != 0 || (sl > nl && sp[sl - nl - 1] != '/')) {
            st = tm_fail(TM_ERR_FORMAT, "%s: tensor \"%.200s\" is listed in %s but found in %s",
                         index_path, key, sn, sp);
            goto done;
        }
    }

done:
    tm_free(shard_path);
    tm_free(names);
    json_decref(root);
    tm_free(text);
    return st;
}

static bool st_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* ---- public ------------------------------------------------------------------------- */

tm_status tm_st_open(const char *path, tm_st_file **out) {
    tm_status   st = TM_OK;
    tm_st_file *f = NULL;
    char       *p = NULL;

    *out = NULL;
    if (path == NULL)
        return tm_fail(TM_ERR_INVALID, "tm_st_open: path is NULL");
    f = tm_calloc(1, sizeof *f);
    if (f == NULL)
        return tm_fail(TM_ERR_NOMEM, "%s: out of memory", path);

    if (tm_path_is_dir(path)) {
        p = st_join(path, strlen(path), "model.safetensors.index.json");
        if (p == NULL) {
            st = tm_fail(TM_ERR_NOMEM, "%s: out of memory", path);
            goto fail;
        }
        if (tm_path_is_file(p)) {
            st = st_open_index(f, p);
        } else {
            tm_free(p);
            p = st_join(path, strlen(path), "model.safetensors");
            if (p == NULL) {
                st = tm_fail(TM_ERR_NOMEM, "%s: out of memory", path);
                goto fail;
            }
            if (!tm_path_is_file(p)) {
                st =
                    tm_fail(TM_ERR_NOT_FOUND,
                            "%s: neither model.safetensors.index.json nor model.safetensors", path);
                goto fail;
            }
            st = st_open_shard(f, p);
            if (st == TM_OK)
                st = st_finish(f);
        }
    } else if (st_ends_with(path, ".index.json")) {
        st = st_open_index(f, path);
    } else {
        st = st_open_shard(f, path);
        if (st == TM_OK)
            st = st_finish(f);
    }
    if (st != TM_OK)
        goto fail;
    tm_free(p);
    *out = f;
    return TM_OK;

fail:
    tm_free(p);
    tm_st_close(f);
    return st;
}

tm_status tm_st_open_memory(const void *buf, size_t size, tm_st_file **out) {
    *out = NULL;
    if (buf == NULL && size != 0)
        return tm_fail(TM_ERR_INVALID, "tm_st_open_memory: buf is NULL");
    tm_st_file *f = tm_calloc(1, sizeof *f);
    if (f == NULL)
        return tm_fail(TM_ERR_NOMEM, "safetensors: out of memory");
    int32_t   idx = -1;
    tm_status st = st_add_shard(f, "<memory>", &idx);
    if (st == TM_OK)
        st = st_parse(f, idx, buf, size);
    if (st == TM_OK)
        st = st_finish(f);
    if (st != TM_OK) {
        tm_st_close(f);
        return st;
    }
    *out = f;
    return TM_OK;
}

void tm_st_close(tm_st_file *f) {
    if (f == NULL)
        return;
    for (int32_t i = 0; i < f->n_shards; i++) {
        tm_mmap_close(&f->shards[i].map);
        tm_free(f->shards[i].pool);
        tm_free(f->shards[i].path);
    }
    tm_free(f->shards);
    tm_free(f->tensors);
    tm_free(f->meta);
    tm_free(f);
}

int64_t tm_st_n_tensors(const tm_st_file *f) { return f->n_tensors; }

const tm_st_tensor *tm_st_tensor_at(const tm_st_file *f, int64_t i) {
    TM_ASSERT(i >= 0 && i < f->n_tensors); /* caller bug, not input */
    return &f->tensors[i];
}

const tm_st_tensor *tm_st_find(const tm_st_file *f, const char *name) {
    int64_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int     c = strcmp(f->tensors[mid].name, name);
        if (c == 0)
            return &f->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

int32_t tm_st_n_shards(const tm_st_file *f) { return f->n_shards; }

const char *tm_st_shard_path(const tm_st_file *f, int32_t i) {
    TM_ASSERT(i >= 0 && i < f->n_shards);
    return f->shards[i].path;
}

int64_t tm_st_n_metadata(const tm_st_file *f) { return f->n_meta; }

void tm_st_metadata_at(const tm_st_file *f, int64_t i, const char **key, const char **value) {
    TM_ASSERT(i >= 0 && i < f->n_meta);
    *key = f->meta[i].key;
    *value = f->meta[i].value;
}

const char *tm_st_metadata_get(const tm_st_file *f, const char *key) {
    for (int64_t i = 0; i < f->n_meta; i++) {
        if (strcmp(f->meta[i].key, key) == 0)
            return f->meta[i].value;
    }
    return NULL;
}
