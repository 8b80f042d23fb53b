/*
 * gguf_write.c - GGUF v3 writer: collects metadata and tensor infos, then
 * emits header, padding and tensor data to a file or a memory buffer.
 *
 * DESIGN
 * ------
 * Each kv is kept as its key plus its encoded value bytes (type field, then the
 * little-endian value exactly as it goes to disk), so setters, replacement and
 * tm_gguf_writer_copy_kv() (which re-encodes nested arrays through the reader's
 * public accessors) all meet in one representation. Tensor data is borrowed
 * and only read during write. Emission runs through a sink that either counts,
 * copies into a buffer sized by a counting run, or writes a FILE, so the memory
 * and file outputs are the same bytes by construction.
 *
 * Layout written: magic, version 3, tensor count, kv count, kvs, tensor infos,
 * zero padding to the alignment, then each tensor's data padded to the
 * alignment (offsets are relative to the data section), as GGUFWriter does.
 * Lookups are linear: writers hold tens of keys and at most thousands of
 * tensors. Threads: one thread at a time per writer.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "tm/tm_bytes.h"
#include "tm/tm_gguf.h"

typedef struct gw_kv {
    char    *key;       /* owned, NUL-terminated */
    uint8_t *val;       /* owned: type field + value, little-endian */
    size_t   val_bytes; /* bytes of val */
} gw_kv;

typedef struct gw_tensor {
    char       *name; /* owned, NUL-terminated */
    tm_dtype    dtype;
    int32_t     n_dims;
    int64_t     ne[TM_GGUF_MAX_DIMS]; /* unused dims are 1 */
    const void *data;                 /* borrowed until write returns */
    size_t      n_bytes;
} gw_tensor;

struct tm_gguf_writer {
    gw_kv     *kvs;
    size_t     n_kv, cap_kv;
    gw_tensor *tensors;
    size_t     n_tensors, cap_tensors;
};

/* ---- growable byte buffer for encoding one value -------------------------------- */

typedef struct gw_buf {
    uint8_t *p;
    size_t   n, cap;
    bool     oom; /* sticky: checked once at the end */
} gw_buf;

static void buf_put(gw_buf *b, const void *src, size_t n) {
    if (b->oom || n == 0)
        return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 64, need;
        if (!tm_size_add(b->n, n, &need)) {
            b->oom = true;
            return;
        }
        while (cap < need)
            if (!tm_size_mul(cap, 2, &cap)) {
                cap = need;
                break;
            }
        uint8_t *p = tm_realloc(b->p, cap);
        if (p == NULL) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void buf_u32(gw_buf *b, uint32_t v) {
    uint8_t t[4];
    tm_store_u32_le(t, v);
    buf_put(b, t, 4);
}

static void buf_u64(gw_buf *b, uint64_t v) {
    uint8_t t[8];
    tm_store_u64_le(t, v);
    buf_put(b, t, 8);
}

static void buf_str(gw_buf *b, const char *s, size_t n) {
    buf_u64(b, n);
    buf_put(b, s, n);
}

/* ---- kvs ------------------------------------------------------------------------ */

tm_status tm_gguf_writer_init(tm_gguf_writer **out) {
    *out = tm_calloc(1, sizeof **out);
    return *out ? TM_OK : tm_fail(TM_ERR_NOMEM, "gguf writer: out of memory");
}

void tm_gguf_writer_free(tm_gguf_writer *w) {
    if (w == NULL)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        tm_free(w->kvs[i].key);
        tm_free(w->kvs[i].val);
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        tm_free(w->tensors[i].name);
    tm_free(w->kvs);
    tm_free(w->tensors);
    tm_free(w);
}

static tm_status gw_check_name(const char *what, const char *name) {
    if (name == NULL || name[0] == '\0')
        return tm_fail(TM_ERR_INVALID, "gguf writer: empty %s", what);
    if (strlen(name) > TM_GGUF_MAX_NAME)
        return tm_fail(TM_ERR_INVALID, "gguf writer: %s longer than %d bytes", what,
                       TM_GGUF_MAX_NAME);
    return TM_OK;
}

/* Takes ownership of b->p in every case. */
static tm_status gw_set(tm_gguf_writer *w, const char *key, gw_buf *b) {
    tm_status st = gw_check_name("key", key);
    if (st == TM_OK && b->oom)
        st = tm_fail(TM_ERR_NOMEM, "gguf writer: out of memory encoding key '%s'", key);
    if (st != TM_OK) {
        tm_free(b->p);
        return st;
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, key) == 0) { /* replace in place, keeping the order */
            tm_free(w->kvs[i].val);
            w->kvs[i].val = b->p;
            w->kvs[i].val_bytes = b->n;
            return TM_OK;
        }
    }
    char *k = tm_strdup(key);
    if (k == NULL || (w->n_kv == w->cap_kv && w->cap_kv > SIZE_MAX / sizeof(gw_kv) / 2))
        goto oom;
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        gw_kv *kvs = tm_realloc(w->kvs, cap * sizeof *kvs);
        if (kvs == NULL)
            goto oom;
        w->kvs = kvs;
        w->cap_kv = cap;
    }
    w->kvs[w->n_kv++] = (gw_kv){.key = k, .val = b->p, .val_bytes = b->n};
    return TM_OK;

oom:
    tm_free(k);
    tm_free(b->p);
    return tm_fail(TM_ERR_NOMEM, "gguf writer: out of memory adding key '%s'", key);
}

static tm_status gw_set_scalar(tm_gguf_writer *w, const char *key, tm_gguf_type t, uint64_t bits,
                               size_t size) {
    gw_buf  b = {0};
    uint8_t v[8];
    tm_store_u64_le(v, bits); /* the low `size` bytes are the little-endian value */
    buf_u32(&b, (uint32_t)t);
    buf_put(&b, v, size);
    return gw_set(w, key, &b);
}

tm_status tm_gguf_writer_set_u8(tm_gguf_writer *w, const char *key, uint8_t v) {
    return gw_set_scalar(w, key, TM_GGUF_TYPE_UINT8, v, 1);
}
tm_status tm_gguf_writer_set_i8(tm_gguf_writer *w, const char *key, int8_t v) {
    return gw_set_scalar(w, key, TM_GGUF_TYPE_INT8, (uint8_t)v, 1);
}
tm_status tm_gguf_writer_set_u16(tm_gguf_writer *w, const char *key, uint16_t v) {
    return gw_set_scalar(w, key, TM_GGUF_TYPE_UINT16, v, 2);
}
tm_status tm_gguf_writer_set_i16(tm_gguf_writer *w, const char *key, int16_t v) {
    return gw_set_scalar(w, key, TM_GGUF_TYPE_INT16, (uint16_t)v, 2);
}
tm_status tm_gguf_writer_set_u32(tm_gguf_writer *w, const char *key, uint32_t v) {
    return gw_set_scalar(w, key, TM_GGUF_TYPE_UINT32, v, 4);
}
tm_status tm_gguf_writer_set_i32(tm_gguf_writer *w, const char *key, int32_t v) {
    return gw_set_scalar(w, key, TM_GGUF_TYPE_INT32, (uint32_t)v, 4);
}
tm_status tm_gguf_writer_set_u64(tm_gguf_writer *w, const char *key, uint64_t v) {
    return gw_set_scalar(w, key, TM_GGUF_TYPE_UINT64, v, 8);
}
tm_status tm_gguf_writer_set_i64(tm_gguf_writer *w, const char *key, int64_t v) {
    return gw_set_scalar(w, key, TM_GGUF_TYPE_INT64, (uint64_t)v, 8);
}
tm_status tm_gguf_writer_set_f32(tm_gguf_writer *w, const char *key, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    return gw_set_scalar(w, key, TM_GGUF_TYPE_FLOAT32, u, 4);
}
tm_status tm_gguf_writer_set_f64(tm_gguf_writer *w, const char *key, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    return gw_set_scalar(w, key, TM_GGUF_TYPE_FLOAT64, u, 8);
}
tm_status tm_gguf_writer_set_bool(tm_gguf_writer *w, const char *key, bool v) {
    return gw_set_scalar(w, key, TM_GGUF_TYPE_BOOL, v ? 1 : 0, 1);
}

tm_status tm_gguf_writer_set_strn(tm_gguf_writer *w, const char *key, const char *v, size_t len) {
    if (v == NULL && len != 0)
        return tm_fail(TM_ERR_INVALID, "gguf writer: key '%s': NULL string", key ? key : "");
    gw_buf b = {0};
    buf_u32(&b, TM_GGUF_TYPE_STRING);
    buf_str(&b, v, len);
    return gw_set(w, key, &b);
}

tm_status tm_gguf_writer_set_str(tm_gguf_writer *w, const char *key, const char *v) {
    if (v == NULL)
        return tm_fail(TM_ERR_INVALID, "gguf writer: key '%s': NULL string", key ? key : "");
    return tm_gguf_writer_set_strn(w, key, v, strlen(v));
}

static size_t gw_fixed_size(tm_gguf_type t) {
    switch (t) {
    case TM_GGUF_TYPE_UINT8:
    case TM_GGUF_TYPE_INT8:
    case TM_GGUF_TYPE_BOOL: return 1;
    case TM_GGUF_TYPE_UINT16:
    case TM_GGUF_TYPE_INT16: return 2;
    case TM_GGUF_TYPE_UINT32:
    case TM_GGUF_TYPE_INT32:
    case TM_GGUF_TYPE_FLOAT32: return 4;
    case TM_GGUF_TYPE_UINT64:
    case TM_GGUF_TYPE_INT64:
    case TM_GGUF_TYPE_FLOAT64: return 8;
    default: return 0; /* string, array, invalid */
    }
}

tm_status tm_gguf_writer_set_arr(tm_gguf_writer *w, const char *key, tm_gguf_type type,
                                 const void *data, uint64_t n) {
    size_t sz = gw_fixed_size(type), total;
    if (sz == 0)
        return tm_fail(TM_ERR_INVALID,
                       "gguf writer: key '%s': set_arr needs a fixed-size type, "
                       "not %s",
                       key ? key : "", tm_gguf_type_name(type));
    if (n > SIZE_MAX || !tm_size_mul((size_t)n, sz, &total) || (data == NULL && n != 0))
        return tm_fail(TM_ERR_INVALID, "gguf writer: key '%s': bad array of %" PRIu64 " elements",
                       key ? key : "", n);
    gw_buf b = {0};
    buf_u32(&b, TM_GGUF_TYPE_ARRAY);
    buf_u32(&b, (uint32_t)type);
    buf_u64(&b, n);
    const uint8_t *src = data;
    for (size_t j = 0; j < (size_t)n; j++) { /* host order to little-endian, one element */
        uint8_t v[8];
        if (type == TM_GGUF_TYPE_BOOL) {
            bool x;
            memcpy(&x, src + j * sizeof(bool), sizeof x);
            v[0] = x ? 1 : 0;
        } else if (sz == 1) {
            v[0] = src[j];
        } else if (sz == 2) {
            uint16_t x;
            memcpy(&x, src + j * 2, 2);
            tm_store_u16_le(v, x);
        } else if (sz == 4) {
            uint32_t x;
            memcpy(&x, src + j * 4, 4);
            tm_store_u32_le(v, x);
        } else {
            uint64_t x;
            memcpy(&x, src + j * 8, 8);
            tm_store_u64_le(v, x);
        }
        buf_put(&b, v, sz);
    }
    return gw_set(w, key, &b);
}

tm_status tm_gguf_writer_set_arr_str(tm_gguf_writer *w, const char *key, const char *const *v,
                                     uint64_t n) {
    if (v == NULL && n != 0)
        return tm_fail(TM_ERR_INVALID, "gguf writer: key '%s': NULL string array", key ? key : "");
    gw_buf b = {0};
    buf_u32(&b, TM_GGUF_TYPE_ARRAY);
    buf_u32(&b, TM_GGUF_TYPE_STRING);
    buf_u64(&b, n);
    for (uint64_t j = 0; j < n; j++) {
        if (v[j] == NULL) {
            tm_free(b.p);
            return tm_fail(TM_ERR_INVALID, "gguf writer: key '%s': string %" PRIu64 " is NULL",
                           key ? key : "", j);
        }
        buf_str(&b, v[j], strlen(v[j]));
    }
    return gw_set(w, key, &b);
}

/* Encodes array node h of src (without its leading type field). */
static void gw_encode_array(gw_buf *b, const tm_gguf *src, int64_t h) {
    tm_gguf_type et = tm_gguf_kv_arr_type(src, h);
    uint64_t     n = tm_gguf_kv_arr_n(src, h);
    buf_u32(b, (uint32_t)et);
    buf_u64(b, n);
    if (et == TM_GGUF_TYPE_STRING) {
        for (uint64_t j = 0; j < n; j++) {
            tm_strview s = tm_gguf_kv_arr_str(src, h, j);
            buf_str(b, s.ptr, s.len);
        }
    } else if (et == TM_GGUF_TYPE_ARRAY) {
        for (uint64_t j = 0; j < n; j++)
            gw_encode_array(b, src, tm_gguf_kv_arr_sub(src, h, j));
    } else {
        /* Already little-endian in the source; n * size was bounded by its file size. */
        buf_put(b, tm_gguf_kv_arr_data(src, h), (size_t)n * gw_fixed_size(et));
    }
}

tm_status tm_gguf_writer_copy_kv(tm_gguf_writer *w, const tm_gguf *src) {
    for (int64_t i = 0; i < tm_gguf_n_kv(src); i++) {
        tm_strview   k = tm_gguf_kv_key(src, i);
        tm_gguf_type t = tm_gguf_kv_type(src, i);
        char        *key = tm_strndup(k.ptr, k.len);
        gw_buf       b = {0};
        if (key == NULL)
            return tm_fail(TM_ERR_NOMEM, "gguf writer: out of memory copying keys");
        if (strlen(key) != k.len) {
            tm_free(key);
            return tm_fail(TM_ERR_INVALID, "gguf writer: key #%" PRId64 " holds a NUL byte", i);
        }
        buf_u32(&b, (uint32_t)t);
        if (t == TM_GGUF_TYPE_STRING) {
            tm_strview s = tm_gguf_kv_str(src, i);
            buf_str(&b, s.ptr, s.len);
        } else if (t == TM_GGUF_TYPE_ARRAY) {
            gw_encode_array(&b, src, i);
        } else {
            uint8_t v[8];
            switch (t) {
            case TM_GGUF_TYPE_UINT8: v[0] = tm_gguf_kv_u8(src, i); break;
            case TM_GGUF_TYPE_INT8: v[0] = (uint8_t)tm_gguf_kv_i8(src, i); break;
            case TM_GGUF_TYPE_BOOL: v[0] = tm_gguf_kv_bool(src, i) ? 1 : 0; break;
            case TM_GGUF_TYPE_UINT16: tm_store_u16_le(v, tm_gguf_kv_u16(src, i)); break;
            case TM_GGUF_TYPE_INT16: tm_store_u16_le(v, (uint16_t)tm_gguf_kv_i16(src, i)); break;
            case TM_GGUF_TYPE_UINT32: tm_store_u32_le(v, tm_gguf_kv_u32(src, i)); break;
            case TM_GGUF_TYPE_INT32: tm_store_u32_le(v, (uint32_t)tm_gguf_kv_i32(src, i)); break;
            case TM_GGUF_TYPE_FLOAT32: {
                float    f = tm_gguf_kv_f32(src, i);
                uint32_t u;
                memcpy(&u, &f, 4);
                tm_store_u32_le(v, u);
                break;
            }
            case TM_GGUF_TYPE_UINT64: tm_store_u64_le(v, tm_gguf_kv_u64(src, i)); break;
            case TM_GGUF_TYPE_INT64: tm_store_u64_le(v, (uint64_t)tm_gguf_kv_i64(src, i)); break;
            case TM_GGUF_TYPE_FLOAT64: {
                double   d = tm_gguf_kv_f64(src, i);
                uint64_t u;
                memcpy(&u, &d, 8);
                tm_store_u64_le(v, u);
                break;
            }
            default: TM_ASSERT(false); /* the reader admits only the 13 GGUF types */
            }
            buf_put(&b, v, gw_fixed_size(t));
        }
        tm_status st = gw_set(w, key, &b);
        tm_free(key);
        TM_TRY(st);
    }
    return TM_OK;
}

/* ---- tensors ---------------------------------------------------------------------- */

tm_status tm_gguf_writer_add_tensor(tm_gguf_writer *w, const char *name, tm_dtype dtype,
                                    int32_t n_dims, const int64_t *ne, const void *data,
                                    size_t n_bytes) {
    TM_TRY(gw_check_name("tensor name", name));
    const tm_dtype_traits *tr = tm_dtype_get_traits((uint32_t)dtype);
    if (tr == NULL)
        return tm_fail(TM_ERR_INVALID, "gguf writer: tensor '%s': invalid dtype %d", name,
                       (int)dtype);
    if (n_dims < 1 || n_dims > TM_GGUF_MAX_DIMS || ne == NULL)
        return tm_fail(TM_ERR_INVALID,
                       "gguf writer: tensor '%s': n_dims %" PRId32 " is not in 1..%d", name, n_dims,
                       TM_GGUF_MAX_DIMS);
    gw_tensor t = {
        .dtype = dtype, .n_dims = n_dims, .ne = {1, 1, 1, 1}, .data = data, .n_bytes = n_bytes};
    for (int32_t d = 0; d < n_dims; d++) {
        if (ne[d] < 0)
            return tm_fail(TM_ERR_INVALID, "gguf writer: tensor '%s': ne[%" PRId32 "] < 0", name,
                           d);
        t.ne[d] = ne[d];
    }
    size_t want;
    bool   ok = tm_dtype_row_bytes(dtype, t.ne[0], &want) == TM_OK;
    for (int d = 1; d < TM_GGUF_MAX_DIMS && ok; d++)
        ok = tm_size_mul(want, (size_t)t.ne[d], &want);
    if (!ok)
        return tm_fail(TM_ERR_INVALID,
                       "gguf writer: tensor '%s': shape does not fit %s (block size %" PRId32
                       ") or overflows",
                       name, tr->name, tr->blck_size);
    if (want != n_bytes || (data == NULL && n_bytes != 0))
        return tm_fail(TM_ERR_INVALID, "gguf writer: tensor '%s': %zu bytes given, shape needs %zu",
                       name, n_bytes, want);
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return tm_fail(TM_ERR_INVALID, "gguf writer: duplicate tensor name '%s'", name);
    if (w->n_tensors == w->cap_tensors) {
        size_t     cap = w->cap_tensors ? 2 * w->cap_tensors : 16;
        gw_tensor *ts = tm_realloc(w->tensors, cap * sizeof *ts);
        if (ts == NULL)
            return tm_fail(TM_ERR_NOMEM, "gguf writer: out of memory adding tensor '%s'", name);
        w->tensors = ts;
        w->cap_tensors = cap;
    }
    t.name = tm_strdup(name);
    if (t.name == NULL)
        return tm_fail(TM_ERR_NOMEM, "gguf writer: out of memory adding tensor '%s'", name);
    w->tensors[w->n_tensors++] = t;
    return TM_OK;
}

/* ---- emission --------------------------------------------------------------------- */

typedef struct gw_sink {
    FILE    *f;   /* file output, or NULL */
    uint8_t *buf; /* memory output, or NULL to only count */
    size_t   pos; /* bytes emitted so far */
    size_t   cap; /* bytes of buf */
    bool     err; /* a write failed (file) */
} gw_sink;

static void sink_put(gw_sink *s, const void *p, size_t n) {
    if (n == 0 || s->err)
        return;
    if (s->f != NULL) {
        if (fwrite(p, 1, n, s->f) != n)
            s->err = true;
    } else if (s->buf != NULL) {
        TM_ASSERT(n <= s->cap - s->pos); /* the counting run sized buf */
        memcpy(s->buf + s->pos, p, n);
    }
    s->pos += n;
}

static void sink_zeros(gw_sink *s, size_t n) {
    static const uint8_t zeros[64];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        sink_put(s, zeros, k);
        n -= k;
    }
}

static void sink_u32(gw_sink *s, uint32_t v) {
    uint8_t t[4];
    tm_store_u32_le(t, v);
    sink_put(s, t, 4);
}

static void sink_u64(gw_sink *s, uint64_t v) {
    uint8_t t[8];
    tm_store_u64_le(t, v);
    sink_put(s, t, 8);
}

static size_t gw_pad(size_t n, size_t align) { return (align - n % align) % align; }

/* The alignment from general.alignment, or the default; validates it. */
static tm_status gw_alignment(const tm_gguf_writer *w, size_t *align) {
    *align = TM_GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kvs[i].key, "general.alignment") != 0)
            continue;
        const gw_kv *kv = &w->kvs[i];
        uint32_t     a = kv->val_bytes == 8 ? tm_load_u32_le(kv->val + 4) : 0;
        if (tm_load_u32_le(kv->val) != TM_GGUF_TYPE_UINT32 || a == 0 || (a & (a - 1)) != 0 ||
            a > TM_GGUF_MAX_ALIGNMENT)
            return tm_fail(TM_ERR_INVALID,
                           "gguf writer: general.alignment must be a uint32 "
                           "power of two in 1..%u",
                           TM_GGUF_MAX_ALIGNMENT);
        *align = a;
    }
    return TM_OK;
}

static tm_status gw_emit(const tm_gguf_writer *w, size_t align, gw_sink *s) {
    sink_u32(s, TM_GGUF_MAGIC);
    sink_u32(s, 3);
    sink_u64(s, w->n_tensors);
    sink_u64(s, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        size_t n = strlen(w->kvs[i].key);
        sink_u64(s, n);
        sink_put(s, w->kvs[i].key, n);
        sink_put(s, w->kvs[i].val, w->kvs[i].val_bytes);
    }
    size_t off = 0; /* from the data section; every add checked */
    for (size_t i = 0; i < w->n_tensors; i++) {
        const gw_tensor *t = &w->tensors[i];
        size_t           n = strlen(t->name);
        sink_u64(s, n);
        sink_put(s, t->name, n);
        sink_u32(s, (uint32_t)t->n_dims);
        for (int32_t d = 0; d < t->n_dims; d++)
            sink_u64(s, (uint64_t)t->ne[d]);
        sink_u32(s, (uint32_t)t->dtype);
        sink_u64(s, off);
        if (!tm_size_add(off, t->n_bytes, &off) || !tm_size_add(off, gw_pad(off, align), &off))
            return tm_fail(TM_ERR_INVALID, "gguf writer: total tensor data overflows size_t");
    }
    sink_zeros(s, gw_pad(s->pos, align));
    for (size_t i = 0; i < w->n_tensors; i++) {
        sink_put(s, w->tensors[i].data, w->tensors[i].n_bytes);
        sink_zeros(s, gw_pad(w->tensors[i].n_bytes, align));
    }
    return TM_OK;
}

tm_status tm_gguf_writer_write_memory(tm_gguf_writer *w, uint8_t **out, size_t *out_size) {
    size_t  align;
    gw_sink count = {0};
    *out = NULL;
    *out_size = 0;
    TM_TRY(gw_alignment(w, &align));
    TM_TRY(gw_emit(w, align, &count));
    gw_sink s = {.buf = tm_malloc(count.pos ? count.pos : 1), .cap = count.pos};
    if (s.buf == NULL)
        return tm_fail(TM_ERR_NOMEM, "gguf writer: out of memory for %zu bytes", count.pos);
    tm_status st = gw_emit(w, align, &s); /* the counting run already passed every check */
    TM_ASSERT(st == TM_OK && s.pos == count.pos);
    *out = s.buf;
    *out_size = s.pos;
    return TM_OK;
}

tm_status tm_gguf_writer_write(tm_gguf_writer *w, const char *path) {
    size_t  align;
    gw_sink count = {0};
    TM_TRY(gw_alignment(w, &align));
    TM_TRY(gw_emit(w, align, &count)); /* validates sizes before creating the file */
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return tm_fail(TM_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    gw_sink   s = {.f = f};
    tm_status st = gw_emit(w, align, &s);
    int       e = errno;
    if (fclose(f) != 0 && !s.err) {
        e = errno;
        s.err = true;
    }
    if (st == TM_OK && s.err)
        st = tm_fail(TM_ERR_IO, "%s: write failed: %s", path, strerror(e));
    return st;
}
