/*
 * gguf.c - GGUF reader (versions 2 and 3): validates the whole header at open,
 * then answers every lookup from tables carved out of one allocation.
 *
 * DESIGN
 * ------
 * The header is parsed twice by the same bounded-cursor code. Pass 1 checks
 * every length, count, type and shape and counts how many nested-array nodes
 * and string-array elements the file holds; pass 2, run only after pass 1
 * succeeded, fills the tables sized from those counts. Counts read from the
 * file are first bounded by what the remaining bytes could possibly encode,
 * so a hostile count fails before any allocation. After the tensor infos, the
 * data section offset is known and each tensor's [begin, end) is checked
 * against the file size, the alignment and its neighbours (no overlaps);
 * duplicate keys and tensor names are found with two hash tables that then
 * serve tm_gguf_find_key() and tm_gguf_find_tensor().
 *
 * Value handles: kv i is node kvs[i].node. A nested array (an element of an
 * array of arrays) is node subs[k] with public handle -(k + 1).
 *
 * Invariants after open: every pointer in the tables lies inside the mapping;
 * every string length prefix they point at was checked against the bytes left.
 * Threads: immutable after open.
 */
#include <inttypes.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tm/tm_bytes.h"
#include "tm/tm_gguf.h"
#include "tm/tm_io.h"

/* Smallest encodings, used to bound counts by the bytes left:
 * kv = key length 8 + key 1 + type 4 + value 1;
 * tensor info = name length 8 + name 1 + n_dims 4 + one ne 8 + dtype 4 + offset 8. */
#define GGUF_N_TYPES 13
#define GGUF_MIN_KV_BYTES 14
#define GGUF_MIN_TENSOR_BYTES 33
#define GGUF_MSG_NAME 96 /* bytes of a key or tensor name quoted in messages */

typedef struct gguf_node {
    const uint8_t *data;     /* scalar: value bytes; string: length prefix; array: element 0 */
    uint64_t       n;        /* array: element count */
    uint64_t       first;    /* string array: index into strs; array of arrays: into subs */
    uint32_t       type;     /* tm_gguf_type of the value */
    uint32_t       arr_type; /* array: element type */
} gguf_node;

typedef struct gguf_kv {
    tm_strview key; /* inside the mapping */
    gguf_node  node;
} gguf_kv;

struct tm_gguf {
    tm_mmap        map;  /* owned when opened from a path; zeroed for memory */
    const uint8_t *base; /* file bytes */
    size_t         size; /* file bytes */
    const char    *name; /* file name for messages; inside this allocation */
    uint32_t       version;
    size_t         alignment;   /* bytes; power of two */
    size_t         data_offset; /* start of the data section; may equal size */

    int64_t         n_kv;
    gguf_kv        *kvs;
    uint64_t        n_sub;
    gguf_node      *subs;
    uint64_t        n_str;
    const uint8_t **strs; /* length prefixes of every string-array element */
    int64_t         n_tensors;
    tm_gguf_tensor *tensors;
    size_t          cap_kv_hash; /* slots, power of two or 0 */
    int64_t        *kv_hash;     /* kv index or -1 */
    size_t          cap_t_hash;
    int64_t        *t_hash; /* tensor index or -1 */
};

/* One parse pass. With fill false the tables are NULL and only counted. */
typedef struct gguf_parser {
    const char    *name;
    const uint8_t *base;
    const uint8_t *p;
    const uint8_t *end;
    bool           fill;
    tm_gguf       *g; /* tables to fill in pass 2 */
    uint64_t       n_sub;
    uint64_t       n_str;
    size_t         alignment;
    tm_strview     what; /* key or tensor name being parsed, for messages */
    bool           what_is_tensor;
} gguf_parser;

static const uint8_t gguf_type_size[GGUF_N_TYPES] = {
    [TM_GGUF_TYPE_UINT8] = 1,   [TM_GGUF_TYPE_INT8] = 1,   [TM_GGUF_TYPE_UINT16] = 2,
    [TM_GGUF_TYPE_INT16] = 2,   [TM_GGUF_TYPE_UINT32] = 4, [TM_GGUF_TYPE_INT32] = 4,
    [TM_GGUF_TYPE_FLOAT32] = 4, [TM_GGUF_TYPE_BOOL] = 1,   [TM_GGUF_TYPE_STRING] = 0,
    [TM_GGUF_TYPE_ARRAY] = 0,   [TM_GGUF_TYPE_UINT64] = 8, [TM_GGUF_TYPE_INT64] = 8,
    [TM_GGUF_TYPE_FLOAT64] = 8,
};

static const char *const gguf_type_names[GGUF_N_TYPES] = {
    "uint8", "int8",   "uint16", "int16",  "uint32", "int32",   "float32",
    "bool",  "string", "array",  "uint64", "int64",  "float64",
};

const char *tm_gguf_type_name(tm_gguf_type t) {
    return (unsigned)t < GGUF_N_TYPES ? gguf_type_names[t] : "?";
}

/* ---- cursor ----------------------------------------------------------------- */

static size_t cur_left(const gguf_parser *P) { return (size_t)(P->end - P->p); }
static size_t cur_pos(const gguf_parser *P) { return (size_t)(P->p - P->base); }

static int msg_len(tm_strview s) { return (int)(s.len < GGUF_MSG_NAME ? s.len : GGUF_MSG_NAME); }

/* Prefix for messages: "file: key 'x': " or "file: tensor 'x': " or "file: ". */
static tm_status gguf_failv(const gguf_parser *P, const char *detail) {
    if (P->what.ptr == NULL)
        return tm_fail(TM_ERR_FORMAT, "%s: %s", P->name, detail);
    return tm_fail(TM_ERR_FORMAT, "%s: %s '%.*s': %s", P->name,
                   P->what_is_tensor ? "tensor" : "key", msg_len(P->what), P->what.ptr, detail);
}

#define GGUF_FAIL(P, ...)                                                                          \
    do {                                                                                           \
        char gguf_msg_[512];                                                                       \
        snprintf(gguf_msg_, sizeof gguf_msg_, __VA_ARGS__);                                        \
        return gguf_failv((P), gguf_msg_);                                                         \
    } while (0)

static tm_status cur_take(gguf_parser *P, size_t n, const char *what, const uint8_t **out) {
    if (cur_left(P) < n)
        GGUF_FAIL(P, "truncated at offset %zu: %s needs %zu bytes, %zu left", cur_pos(P), what, n,
                  cur_left(P));
    *out = P->p;
    P->p += n;
    return TM_OK;
}

static tm_status cur_u32(gguf_parser *P, const char *what, uint32_t *v) {
    const uint8_t *b = NULL;
    TM_TRY(cur_take(P, 4, what, &b));
    *v = tm_load_u32_le(b);
    return TM_OK;
}

static tm_status cur_u64(gguf_parser *P, const char *what, uint64_t *v) {
    const uint8_t *b = NULL;
    TM_TRY(cur_take(P, 8, what, &b));
    *v = tm_load_u64_le(b);
    return TM_OK;
}

/* A length-prefixed string; *prefix points at its 8-byte length. */
static tm_status cur_str(gguf_parser *P, const char *what, const uint8_t **prefix, tm_strview *s) {
    const uint8_t *b = NULL;
    uint64_t       len;
    TM_TRY(cur_take(P, 8, what, &b));
    len = tm_load_u64_le(b);
    if (len > cur_left(P))
        GGUF_FAIL(P, "%s: string length %" PRIu64 " at offset %zu exceeds the %zu bytes left", what,
                  len, cur_pos(P) - 8, cur_left(P));
    *prefix = b;
    *s = (tm_strview){.ptr = (const char *)P->p, .len = (size_t)len};
    P->p += len;
    return TM_OK;
}

/* ---- metadata values ---------------------------------------------------------- */

static size_t gguf_min_value_bytes(uint32_t type) {
    if (type == TM_GGUF_TYPE_STRING)
        return 8;
    if (type == TM_GGUF_TYPE_ARRAY)
        return 12;
    return gguf_type_size[type];
}

static tm_status gguf_read_value(gguf_parser *P, uint32_t type, int depth, gguf_node *out);

static tm_status gguf_read_array(gguf_parser *P, int depth, gguf_node *out) {
    uint32_t       et;
    uint64_t       n;
    const uint8_t *b = NULL;

    if (depth > TM_GGUF_MAX_DEPTH)
        GGUF_FAIL(P, "array nesting depth exceeds %d at offset %zu", TM_GGUF_MAX_DEPTH, cur_pos(P));
    TM_TRY(cur_u32(P, "array element type", &et));
    if (et >= GGUF_N_TYPES)
        GGUF_FAIL(P, "unknown value type %" PRIu32 " for array elements", et);
    TM_TRY(cur_u64(P, "array count", &n));
    /* Bound the count by the bytes left before touching any element. */
    if (n > cur_left(P) / gguf_min_value_bytes(et))
        GGUF_FAIL(P, "array count %" PRIu64 " of %s exceeds what the %zu bytes left can hold", n,
                  gguf_type_names[et], cur_left(P));
    out->type = TM_GGUF_TYPE_ARRAY;
    out->arr_type = et;
    out->n = n;
    out->data = P->p;
    out->first = 0;

    if (et == TM_GGUF_TYPE_STRING) {
        out->first = P->n_str;
        for (uint64_t j = 0; j < n; j++) {
            const uint8_t *prefix = NULL;
            tm_strview     s;
            TM_TRY(cur_str(P, "array string", &prefix, &s));
            if (P->fill)
                P->g->strs[P->n_str] = prefix;
            P->n_str++;
        }
    } else if (et == TM_GGUF_TYPE_ARRAY) {
        /* Children take a contiguous range; their own children come after it. */
        out->first = P->n_sub;
        P->n_sub += n;
        for (uint64_t j = 0; j < n; j++) {
            gguf_node  tmp;
            gguf_node *child = P->fill ? &P->g->subs[out->first + j] : &tmp;
            TM_TRY(gguf_read_array(P, depth + 1, child));
        }
    } else {
        size_t sz = gguf_type_size[et];
        TM_TRY(cur_take(P, (size_t)n * sz, "array data", &b)); /* n * sz <= left: no overflow */
        if (et == TM_GGUF_TYPE_BOOL) {
            for (uint64_t j = 0; j < n; j++)
                if (b[j] > 1)
                    GGUF_FAIL(P, "invalid bool value %u in array element %" PRIu64, b[j], j);
        }
    }
    return TM_OK;
}

static tm_status gguf_read_value(gguf_parser *P, uint32_t type, int depth, gguf_node *out) {
    const uint8_t *b = NULL;
    tm_strview     s;

    *out = (gguf_node){.type = type};
    switch (type) {
    case TM_GGUF_TYPE_STRING:
        TM_TRY(cur_str(P, "string value", &b, &s));
        out->data = b;
        return TM_OK;
    case TM_GGUF_TYPE_ARRAY: return gguf_read_array(P, depth + 1, out);
    default:
        TM_ASSERT(type < GGUF_N_TYPES && gguf_type_size[type] > 0); /* caller checked type */
        TM_TRY(cur_take(P, gguf_type_size[type], gguf_type_names[type], &b));
        if (type == TM_GGUF_TYPE_BOOL && b[0] > 1)
            GGUF_FAIL(P, "invalid bool value %u", b[0]);
        out->data = b;
        return TM_OK;
    }
}

static bool sv_eq(tm_strview s, const char *c, size_t n) {
    return s.len == n && memcmp(s.ptr, c, n) == 0;
}

static tm_status gguf_read_kv(gguf_parser *P, int64_t i) {
    const uint8_t *prefix = NULL;
    tm_strview     key;
    uint32_t       type;
    gguf_node      node;

    P->what = (tm_strview){0};
    TM_TRY(cur_str(P, "key", &prefix, &key));
    if (key.len == 0)
        GGUF_FAIL(P, "kv #%" PRId64 " at offset %zu has an empty key", i,
                  (size_t)(prefix - P->base));
    if (key.len > TM_GGUF_MAX_NAME)
        GGUF_FAIL(P, "kv #%" PRId64 ": key of %zu bytes exceeds the limit %d", i, key.len,
                  TM_GGUF_MAX_NAME);
    P->what = key;
    P->what_is_tensor = false;
    TM_TRY(cur_u32(P, "value type", &type));
    if (type >= GGUF_N_TYPES)
        GGUF_FAIL(P, "unknown value type %" PRIu32, type);
    TM_TRY(gguf_read_value(P, type, 0, &node));

    if (sv_eq(key, "general.alignment", 17)) {
        if (type != TM_GGUF_TYPE_UINT32)
            GGUF_FAIL(P, "general.alignment has type %s, expected uint32", gguf_type_names[type]);
        uint32_t a = tm_load_u32_le(node.data);
        if (a == 0 || (a & (a - 1)) != 0 || a > TM_GGUF_MAX_ALIGNMENT)
            GGUF_FAIL(P, "general.alignment %" PRIu32 " is not a power of two in 1..%u", a,
                      TM_GGUF_MAX_ALIGNMENT);
        P->alignment = a;
    }
    if (P->fill)
        P->g->kvs[i] = (gguf_kv){.key = key, .node = node};
    P->what = (tm_strview){0};
    return TM_OK;
}

/* ---- tensor infos ----------------------------------------------------------- */

static tm_status gguf_read_tensor_info(gguf_parser *P, int64_t i) {
    const uint8_t *prefix = NULL;
    tm_strview     name;
    uint32_t       n_dims, dt;
    uint64_t       off;
    int64_t        ne[TM_GGUF_MAX_DIMS] = {1, 1, 1, 1};

    P->what = (tm_strview){0};
    TM_TRY(cur_str(P, "tensor name", &prefix, &name));
    if (name.len == 0)
        GGUF_FAIL(P, "tensor #%" PRId64 " at offset %zu has an empty name", i,
                  (size_t)(prefix - P->base));
    if (name.len > TM_GGUF_MAX_NAME)
        GGUF_FAIL(P, "tensor #%" PRId64 ": name of %zu bytes exceeds the limit %d", i, name.len,
                  TM_GGUF_MAX_NAME);
    P->what = name;
    P->what_is_tensor = true;
    TM_TRY(cur_u32(P, "n_dims", &n_dims));
    if (n_dims < 1 || n_dims > TM_GGUF_MAX_DIMS)
        GGUF_FAIL(P, "n_dims %" PRIu32 " is not in 1..%d", n_dims, TM_GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t v = 0;
        TM_TRY(cur_u64(P, "dimension", &v));
        if (v > (uint64_t)INT64_MAX)
            GGUF_FAIL(P, "ne[%" PRIu32 "] = %" PRIu64 " overflows int64", d, v);
        ne[d] = (int64_t)v;
    }
    TM_TRY(cur_u32(P, "dtype", &dt));
    if (!tm_dtype_is_valid(dt))
        GGUF_FAIL(P, "unknown dtype %" PRIu32, dt);
    TM_TRY(cur_u64(P, "data offset", &off));

    /* Element count must fit int64 (ggml's invariant), bytes must fit size_t. */
    int64_t n_el = 1;
    for (int d = 0; d < TM_GGUF_MAX_DIMS; d++) {
        if (ne[d] != 0 && n_el > INT64_MAX / ne[d])
            GGUF_FAIL(P,
                      "shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64
                      "] overflows: element count exceeds int64",
                      ne[0], ne[1], ne[2], ne[3]);
        n_el *= ne[d];
    }
    const tm_dtype_traits *tr = tm_dtype_get_traits(dt);
    if (ne[0] % tr->blck_size != 0)
        GGUF_FAIL(P, "ne[0] = %" PRId64 " is not a multiple of the %s block size %" PRId32, ne[0],
                  tr->name, tr->blck_size);
    size_t n_bytes = (size_t)(ne[0] / tr->blck_size);
    bool   ok = tm_size_mul(n_bytes, (size_t)tr->type_size, &n_bytes);
    for (int d = 1; d < TM_GGUF_MAX_DIMS && ok; d++)
        ok = tm_size_mul(n_bytes, (size_t)ne[d], &n_bytes);
    if (!ok)
        GGUF_FAIL(
            P, "byte size of shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "] overflows",
            ne[0], ne[1], ne[2], ne[3]);

    if (P->fill) {
        tm_gguf_tensor *t = &P->g->tensors[i];
        *t = (tm_gguf_tensor){.name = name,
                              .dtype = (tm_dtype)dt,
                              .n_dims = (int32_t)n_dims,
                              .offset = off,
                              .n_bytes = n_bytes,
                              .data = NULL};
        memcpy(t->ne, ne, sizeof ne);
    }
    P->what = (tm_strview){0};
    return TM_OK;
}

/* ---- header ----------------------------------------------------------------- */

typedef struct gguf_header {
    uint32_t version;
    uint64_t n_tensors;
    uint64_t n_kv;
    size_t   header_end; /* end of the tensor infos */
} gguf_header;

static tm_status gguf_parse(gguf_parser *P, gguf_header *h) {
    const uint8_t *b = NULL;
    TM_TRY(cur_take(P, 4, "magic", &b));
    if (tm_load_u32_le(b) != TM_GGUF_MAGIC)
        GGUF_FAIL(P, "bad magic %02x %02x %02x %02x: not a GGUF file", b[0], b[1], b[2], b[3]);
    TM_TRY(cur_u32(P, "version", &h->version));
    if (h->version == 1)
        GGUF_FAIL(P, "GGUF version 1 is not supported (only versions 2 and 3); reconvert the "
                     "model with a current converter");
    if (h->version != 2 && h->version != 3) {
        uint32_t v = h->version;
        uint32_t sw = (v >> 24) | ((v >> 8) & 0xff00u) | ((v << 8) & 0xff0000u) | (v << 24);
        if (sw == 2 || sw == 3)
            GGUF_FAIL(P, "big-endian GGUF (version %" PRIu32 " byte-swapped) is not supported", sw);
        GGUF_FAIL(P, "unsupported GGUF version %" PRIu32 " (only versions 2 and 3)", h->version);
    }
    TM_TRY(cur_u64(P, "tensor count", &h->n_tensors));
    TM_TRY(cur_u64(P, "kv count", &h->n_kv));
    size_t left = cur_left(P);
    if (h->n_kv > left / GGUF_MIN_KV_BYTES)
        GGUF_FAIL(P, "kv count %" PRIu64 " exceeds what the %zu bytes left can hold", h->n_kv,
                  left);
    left -= (size_t)h->n_kv * GGUF_MIN_KV_BYTES;
    if (h->n_tensors > left / GGUF_MIN_TENSOR_BYTES)
        GGUF_FAIL(P, "tensor count %" PRIu64 " exceeds what the %zu bytes left can hold",
                  h->n_tensors, cur_left(P));

    P->alignment = TM_GGUF_DEFAULT_ALIGNMENT;
    for (uint64_t i = 0; i < h->n_kv; i++)
        TM_TRY(gguf_read_kv(P, (int64_t)i));
    for (uint64_t i = 0; i < h->n_tensors; i++)
        TM_TRY(gguf_read_tensor_info(P, (int64_t)i));
    h->header_end = cur_pos(P);
    return TM_OK;
}

/* ---- lookups ------------------------------------------------------------------ */

static uint64_t gguf_hash(const char *p, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

static size_t gguf_hash_cap(uint64_t n) {
    if (n == 0)
        return 0;
    size_t cap = 4;
    while (cap < 2 * n) /* n is bounded by the file size / 14: no overflow */
        cap <<= 1;
    return cap;
}

/* Inserts index i under name; returns the index already there, or -1. */
static int64_t gguf_hash_insert(int64_t *slots, size_t cap, tm_strview name, int64_t i,
                                tm_strview (*name_of)(const tm_gguf *, int64_t), const tm_gguf *g) {
    size_t mask = cap - 1;
    for (size_t s = (size_t)gguf_hash(name.ptr, name.len) & mask;; s = (s + 1) & mask) {
        if (slots[s] < 0) {
            slots[s] = i;
            return -1;
        }
        tm_strview o = name_of(g, slots[s]);
        if (o.len == name.len && memcmp(o.ptr, name.ptr, name.len) == 0)
            return slots[s];
    }
}

static int64_t gguf_hash_find(const int64_t *slots, size_t cap, const char *name,
                              tm_strview (*name_of)(const tm_gguf *, int64_t), const tm_gguf *g) {
    if (cap == 0)
        return -1;
    size_t n = strlen(name), mask = cap - 1;
    for (size_t s = (size_t)gguf_hash(name, n) & mask;; s = (s + 1) & mask) {
        if (slots[s] < 0)
            return -1;
        tm_strview o = name_of(g, slots[s]);
        if (o.len == n && memcmp(o.ptr, name, n) == 0)
            return slots[s];
    }
}

static tm_strview gguf_kv_name(const tm_gguf *g, int64_t i) { return g->kvs[i].key; }
static tm_strview gguf_tensor_name(const tm_gguf *g, int64_t i) { return g->tensors[i].name; }

static int gguf_cmp_tensor_off(const void *a, const void *b) {
    const tm_gguf_tensor *x = *(const tm_gguf_tensor *const *)a;
    const tm_gguf_tensor *y = *(const tm_gguf_tensor *const *)b;
    if (x->offset != y->offset)
        return x->offset < y->offset ? -1 : 1;
    return x->n_bytes < y->n_bytes ? -1 : x->n_bytes > y->n_bytes;
}

/* Offsets, bounds and overlaps of every tensor; duplicate names and keys. */
static tm_status gguf_check_tables(tm_gguf *g) {
    const char *nm = g->name;

    for (int64_t i = 0; i < g->n_kv; i++) {
        int64_t o = gguf_hash_insert(g->kv_hash, g->cap_kv_hash, g->kvs[i].key, i, gguf_kv_name, g);
        if (o >= 0)
            return tm_fail(TM_ERR_FORMAT,
                           "%s: duplicate key '%.*s' (kv #%" PRId64 " and #%" PRId64 ")", nm,
                           msg_len(g->kvs[i].key), g->kvs[i].key.ptr, o, i);
    }
    for (int64_t i = 0; i < g->n_tensors; i++) {
        tm_gguf_tensor *t = &g->tensors[i];
        int64_t o = gguf_hash_insert(g->t_hash, g->cap_t_hash, t->name, i, gguf_tensor_name, g);
        if (o >= 0)
            return tm_fail(TM_ERR_FORMAT,
                           "%s: duplicate tensor name '%.*s' (tensor #%" PRId64 " and #%" PRId64
                           ")",
                           nm, msg_len(t->name), t->name.ptr, o, i);
        if (t->offset % g->alignment != 0)
            return tm_fail(TM_ERR_FORMAT,
                           "%s: tensor '%.*s': data offset %" PRIu64
                           " is misaligned (alignment %zu)",
                           nm, msg_len(t->name), t->name.ptr, t->offset, g->alignment);
        /* begin = data_offset + offset and end = begin + n_bytes, both checked <= size. */
        bool in = g->data_offset <= g->size && t->offset <= g->size - g->data_offset &&
                  t->n_bytes <= g->size - g->data_offset - (size_t)t->offset;
        if (!in) {
            uint64_t begin = (uint64_t)g->data_offset + t->offset; /* for the message only */
            uint64_t end = begin + t->n_bytes;
            if (begin < t->offset || end < begin)
                end = UINT64_MAX;
            return tm_fail(TM_ERR_FORMAT,
                           "%s: tensor '%.*s': data [%" PRIu64 ", %" PRIu64
                           ") past end of file (size %zu)",
                           nm, msg_len(t->name), t->name.ptr, begin, end, g->size);
        }
        t->data = g->base + g->data_offset + (size_t)t->offset;
    }

    if (g->n_tensors < 2)
        return TM_OK;
    const tm_gguf_tensor **order = tm_malloc((size_t)g->n_tensors * sizeof *order);
    if (order == NULL)
        return tm_fail(TM_ERR_NOMEM, "%s: out of memory sorting %" PRId64 " tensors", nm,
                       g->n_tensors);
    for (int64_t i = 0; i < g->n_tensors; i++)
        order[i] = &g->tensors[i];
    qsort(order, (size_t)g->n_tensors, sizeof *order, gguf_cmp_tensor_off);
    tm_status             st = TM_OK;
    const tm_gguf_tensor *prev = NULL; /* the tensor with the largest end so far */
    for (int64_t i = 0; i < g->n_tensors; i++) {
        const tm_gguf_tensor *t = order[i];
        if (t->n_bytes == 0)
            continue; /* empty tensors share offsets freely */
        if (prev != NULL && prev->offset + prev->n_bytes > t->offset) {
            st = tm_fail(TM_ERR_FORMAT,
                         "%s: tensors '%.*s' [%" PRIu64 ", +%zu) and '%.*s' [%" PRIu64
                         ", +%zu) overlap",
                         nm, msg_len(prev->name), prev->name.ptr, prev->offset, prev->n_bytes,
                         msg_len(t->name), t->name.ptr, t->offset, t->n_bytes);
            break;
        }
        if (prev == NULL || t->offset + t->n_bytes > prev->offset + prev->n_bytes)
            prev = t;
    }
    tm_free(order);
    return st;
}

/* ---- open / close ------------------------------------------------------------- */

#define GGUF_SEG_ALIGN alignof(max_align_t)

/* Adds a segment of n * elem bytes to *total, returning its offset. */
static bool gguf_seg(size_t *total, size_t n, size_t elem, size_t *off) {
    size_t bytes, start;
    if (!tm_size_add(*total, GGUF_SEG_ALIGN - 1, &start))
        return false;
    start &= ~(GGUF_SEG_ALIGN - 1);
    if (!tm_size_mul(n, elem, &bytes) || !tm_size_add(start, bytes, total))
        return false;
    *off = start;
    return true;
}

static tm_status gguf_open_bytes(const char *name, const uint8_t *base, size_t size,
                                 tm_gguf **out) {
    gguf_header h = {0};
    tm_gguf    *g = NULL;
    tm_status   st;

    *out = NULL;
    if (size == 0) /* also keeps NULL + 0 out of the cursor */
        return tm_fail(TM_ERR_FORMAT, "%s: file is empty", name);
    gguf_parser P = {.name = name, .base = base, .p = base, .end = base + size};
    TM_TRY(gguf_parse(&P, &h));

    /* Pass 1 succeeded: every count below is bounded by the file size. */
    size_t total = sizeof(tm_gguf), o_name, o_kv, o_sub, o_str, o_t, o_kh, o_th;
    size_t cap_kh = gguf_hash_cap(h.n_kv), cap_th = gguf_hash_cap(h.n_tensors);
    size_t name_len = strlen(name);
    bool   ok = gguf_seg(&total, name_len + 1, 1, &o_name) &&
              gguf_seg(&total, (size_t)h.n_kv, sizeof(gguf_kv), &o_kv) &&
              gguf_seg(&total, (size_t)P.n_sub, sizeof(gguf_node), &o_sub) &&
              gguf_seg(&total, (size_t)P.n_str, sizeof(const uint8_t *), &o_str) &&
              gguf_seg(&total, (size_t)h.n_tensors, sizeof(tm_gguf_tensor), &o_t) &&
              gguf_seg(&total, cap_kh, sizeof(int64_t), &o_kh) &&
              gguf_seg(&total, cap_th, sizeof(int64_t), &o_th);
    if (!ok)
        return tm_fail(TM_ERR_NOMEM, "%s: header tables overflow size_t", name);
    uint8_t *mem = tm_malloc(total);
    if (mem == NULL)
        return tm_fail(TM_ERR_NOMEM, "%s: out of memory for %zu bytes of header tables", name,
                       total);
    g = (tm_gguf *)mem;
    *g = (tm_gguf){
        .base = base,
        .size = size,
        .name = (const char *)memcpy(mem + o_name, name, name_len + 1),
        .version = h.version,
        .alignment = P.alignment,
        .n_kv = (int64_t)h.n_kv,
        .kvs = (gguf_kv *)(mem + o_kv),
        .n_sub = P.n_sub,
        .subs = (gguf_node *)(mem + o_sub),
        .n_str = P.n_str,
        .strs = (const uint8_t **)(mem + o_str),
        .n_tensors = (int64_t)h.n_tensors,
        .tensors = (tm_gguf_tensor *)(mem + o_t),
        .cap_kv_hash = cap_kh,
        .kv_hash = (int64_t *)(mem + o_kh),
        .cap_t_hash = cap_th,
        .t_hash = (int64_t *)(mem + o_th),
    };
    memset(g->kv_hash, 0xff, cap_kh * sizeof(int64_t)); /* all -1 */
    memset(g->t_hash, 0xff, cap_th * sizeof(int64_t));

    /* Pass 2 revisits bytes pass 1 accepted; failing now is a bug. */
    gguf_parser P2 = {
        .name = name, .base = base, .p = base, .end = base + size, .fill = true, .g = g};
    gguf_header h2 = {0};
    st = gguf_parse(&P2, &h2);
    TM_ASSERT(st == TM_OK && P2.n_sub == P.n_sub && P2.n_str == P.n_str);

    /* Data section: header end rounded up to the alignment (<= 16 MiB: no overflow). */
    g->data_offset = (h.header_end + g->alignment - 1) & ~(g->alignment - 1);
    st = gguf_check_tables(g);
    if (st != TM_OK)
        goto fail;
    *out = g;
    return TM_OK;

fail:
    tm_free(g);
    return st;
}

tm_status tm_gguf_open(const char *path, tm_gguf **out) {
    tm_mmap   map = {0};
    tm_status st;

    *out = NULL;
    TM_TRY(tm_mmap_open(path, &map));
    st = gguf_open_bytes(path, map.data, map.size, out);
    if (st != TM_OK) {
        tm_mmap_close(&map);
        return st;
    }
    (*out)->map = map; /* ownership moved into the handle */
    return TM_OK;
}

tm_status tm_gguf_open_memory(const void *buf, size_t size, tm_gguf **out) {
    *out = NULL;
    if (buf == NULL && size != 0)
        return tm_fail(TM_ERR_INVALID, "tm_gguf_open_memory: NULL buffer of %zu bytes", size);
    return gguf_open_bytes("<memory>", buf, size, out);
}

void tm_gguf_close(tm_gguf *g) {
    if (g == NULL)
        return;
    tm_mmap_close(&g->map);
    tm_free(g); /* the tables live in the same allocation */
}

uint32_t tm_gguf_version(const tm_gguf *g) { return g->version; }
size_t   tm_gguf_alignment(const tm_gguf *g) { return g->alignment; }
size_t   tm_gguf_data_offset(const tm_gguf *g) { return g->data_offset; }
size_t   tm_gguf_file_size(const tm_gguf *g) { return g->size; }

/* ---- metadata accessors ------------------------------------------------------- */

int64_t tm_gguf_n_kv(const tm_gguf *g) { return g->n_kv; }

int64_t tm_gguf_find_key(const tm_gguf *g, const char *key) {
    return gguf_hash_find(g->kv_hash, g->cap_kv_hash, key, gguf_kv_name, g);
}

tm_strview tm_gguf_kv_key(const tm_gguf *g, int64_t i) {
    TM_ASSERT(i >= 0 && i < g->n_kv);
    return g->kvs[i].key;
}

static const gguf_node *gguf_node_at(const tm_gguf *g, int64_t h) {
    if (h >= 0) {
        TM_ASSERT(h < g->n_kv);
        return &g->kvs[h].node;
    }
    uint64_t k = (uint64_t)(-(h + 1));
    TM_ASSERT(k < g->n_sub);
    return &g->subs[k];
}

tm_gguf_type tm_gguf_kv_type(const tm_gguf *g, int64_t i) {
    return (tm_gguf_type)gguf_node_at(g, i)->type;
}

static const uint8_t *gguf_scalar(const tm_gguf *g, int64_t i, tm_gguf_type t) {
    const gguf_node *n = gguf_node_at(g, i);
    TM_ASSERT(n->type == (uint32_t)t); /* caller must check tm_gguf_kv_type() first */
    return n->data;
}

uint8_t tm_gguf_kv_u8(const tm_gguf *g, int64_t i) {
    return *gguf_scalar(g, i, TM_GGUF_TYPE_UINT8);
}
int8_t tm_gguf_kv_i8(const tm_gguf *g, int64_t i) {
    return (int8_t)*gguf_scalar(g, i, TM_GGUF_TYPE_INT8);
}
uint16_t tm_gguf_kv_u16(const tm_gguf *g, int64_t i) {
    return tm_load_u16_le(gguf_scalar(g, i, TM_GGUF_TYPE_UINT16));
}
int16_t tm_gguf_kv_i16(const tm_gguf *g, int64_t i) {
    return (int16_t)tm_load_u16_le(gguf_scalar(g, i, TM_GGUF_TYPE_INT16));
}
uint32_t tm_gguf_kv_u32(const tm_gguf *g, int64_t i) {
    return tm_load_u32_le(gguf_scalar(g, i, TM_GGUF_TYPE_UINT32));
}
int32_t tm_gguf_kv_i32(const tm_gguf *g, int64_t i) {
    return (int32_t)tm_load_u32_le(gguf_scalar(g, i, TM_GGUF_TYPE_INT32));
}
uint64_t tm_gguf_kv_u64(const tm_gguf *g, int64_t i) {
    return tm_load_u64_le(gguf_scalar(g, i, TM_GGUF_TYPE_UINT64));
}
int64_t tm_gguf_kv_i64(const tm_gguf *g, int64_t i) {
    return (int64_t)tm_load_u64_le(gguf_scalar(g, i, TM_GGUF_TYPE_INT64));
}
float tm_gguf_kv_f32(const tm_gguf *g, int64_t i) {
    return tm_load_f32_le(gguf_scalar(g, i, TM_GGUF_TYPE_FLOAT32));
}
double tm_gguf_kv_f64(const tm_gguf *g, int64_t i) {
    return tm_load_f64_le(gguf_scalar(g, i, TM_GGUF_TYPE_FLOAT64));
}
bool tm_gguf_kv_bool(const tm_gguf *g, int64_t i) {
    return *gguf_scalar(g, i, TM_GGUF_TYPE_BOOL) != 0;
}

static tm_strview gguf_str_at(const uint8_t *prefix) {
    return (tm_strview){.ptr = (const char *)prefix + 8, .len = (size_t)tm_load_u64_le(prefix)};
}

tm_strview tm_gguf_kv_str(const tm_gguf *g, int64_t i) {
    return gguf_str_at(gguf_scalar(g, i, TM_GGUF_TYPE_STRING));
}

static const gguf_node *gguf_array(const tm_gguf *g, int64_t i) {
    const gguf_node *n = gguf_node_at(g, i);
    TM_ASSERT(n->type == TM_GGUF_TYPE_ARRAY); /* caller must check tm_gguf_kv_type() first */
    return n;
}

tm_gguf_type tm_gguf_kv_arr_type(const tm_gguf *g, int64_t i) {
    return (tm_gguf_type)gguf_array(g, i)->arr_type;
}

uint64_t tm_gguf_kv_arr_n(const tm_gguf *g, int64_t i) { return gguf_array(g, i)->n; }

const void *tm_gguf_kv_arr_data(const tm_gguf *g, int64_t i) {
    const gguf_node *n = gguf_array(g, i);
    TM_ASSERT(n->arr_type != TM_GGUF_TYPE_STRING && n->arr_type != TM_GGUF_TYPE_ARRAY);
    return n->data;
}

tm_strview tm_gguf_kv_arr_str(const tm_gguf *g, int64_t i, uint64_t j) {
    const gguf_node *n = gguf_array(g, i);
    TM_ASSERT(n->arr_type == TM_GGUF_TYPE_STRING && j < n->n);
    return gguf_str_at(g->strs[n->first + j]);
}

int64_t tm_gguf_kv_arr_sub(const tm_gguf *g, int64_t i, uint64_t j) {
    const gguf_node *n = gguf_array(g, i);
    TM_ASSERT(n->arr_type == TM_GGUF_TYPE_ARRAY && j < n->n);
    return -(int64_t)(n->first + j) - 1;
}

static tm_status gguf_lookup(const tm_gguf *g, const char *key, int64_t *i) {
    *i = tm_gguf_find_key(g, key);
    if (*i < 0)
        return tm_fail(TM_ERR_NOT_FOUND, "%s: key '%s' not found", g->name, key);
    return TM_OK;
}

static tm_status gguf_wrong_type(const tm_gguf *g, const char *key, int64_t i, const char *want) {
    return tm_fail(TM_ERR_FORMAT, "%s: key '%s' has type %s, expected %s", g->name, key,
                   tm_gguf_type_name(tm_gguf_kv_type(g, i)), want);
}

tm_status tm_gguf_get_int(const tm_gguf *g, const char *key, int64_t *out) {
    int64_t i;
    TM_TRY(gguf_lookup(g, key, &i));
    switch (tm_gguf_kv_type(g, i)) {
    case TM_GGUF_TYPE_UINT8: *out = tm_gguf_kv_u8(g, i); return TM_OK;
    case TM_GGUF_TYPE_INT8: *out = tm_gguf_kv_i8(g, i); return TM_OK;
    case TM_GGUF_TYPE_UINT16: *out = tm_gguf_kv_u16(g, i); return TM_OK;
    case TM_GGUF_TYPE_INT16: *out = tm_gguf_kv_i16(g, i); return TM_OK;
    case TM_GGUF_TYPE_UINT32: *out = tm_gguf_kv_u32(g, i); return TM_OK;
    case TM_GGUF_TYPE_INT32: *out = tm_gguf_kv_i32(g, i); return TM_OK;
    case TM_GGUF_TYPE_INT64: *out = tm_gguf_kv_i64(g, i); return TM_OK;
    case TM_GGUF_TYPE_BOOL: *out = tm_gguf_kv_bool(g, i); return TM_OK;
    case TM_GGUF_TYPE_UINT64: {
        uint64_t v = tm_gguf_kv_u64(g, i);
        if (v > (uint64_t)INT64_MAX)
            return tm_fail(TM_ERR_FORMAT, "%s: key '%s': uint64 value %" PRIu64 " exceeds int64",
                           g->name, key, v);
        *out = (int64_t)v;
        return TM_OK;
    }
    default: return gguf_wrong_type(g, key, i, "an integer");
    }
}

tm_status tm_gguf_get_float(const tm_gguf *g, const char *key, double *out) {
    int64_t i;
    TM_TRY(gguf_lookup(g, key, &i));
    switch (tm_gguf_kv_type(g, i)) {
    case TM_GGUF_TYPE_FLOAT32: *out = tm_gguf_kv_f32(g, i); return TM_OK;
    case TM_GGUF_TYPE_FLOAT64: *out = tm_gguf_kv_f64(g, i); return TM_OK;
    case TM_GGUF_TYPE_UINT64: *out = (double)tm_gguf_kv_u64(g, i); return TM_OK;
    case TM_GGUF_TYPE_BOOL:
    case TM_GGUF_TYPE_STRING:
    case TM_GGUF_TYPE_ARRAY: return gguf_wrong_type(g, key, i, "a number");
    default: {
        int64_t v;
        TM_TRY(tm_gguf_get_int(g, key, &v));
        *out = (double)v;
        return TM_OK;
    }
    }
}

tm_status tm_gguf_get_str(const tm_gguf *g, const char *key, tm_strview *out) {
    int64_t i;
    TM_TRY(gguf_lookup(g, key, &i));
    if (tm_gguf_kv_type(g, i) != TM_GGUF_TYPE_STRING)
        return gguf_wrong_type(g, key, i, "string");
    *out = tm_gguf_kv_str(g, i);
    return TM_OK;
}

tm_status tm_gguf_get_bool(const tm_gguf *g, const char *key, bool *out) {
    int64_t i;
    TM_TRY(gguf_lookup(g, key, &i));
    if (tm_gguf_kv_type(g, i) != TM_GGUF_TYPE_BOOL)
        return gguf_wrong_type(g, key, i, "bool");
    *out = tm_gguf_kv_bool(g, i);
    return TM_OK;
}

/* ---- tensors ------------------------------------------------------------------ */

int64_t tm_gguf_n_tensors(const tm_gguf *g) { return g->n_tensors; }

const tm_gguf_tensor *tm_gguf_tensor_at(const tm_gguf *g, int64_t i) {
    TM_ASSERT(i >= 0 && i < g->n_tensors);
    return &g->tensors[i];
}

const tm_gguf_tensor *tm_gguf_find_tensor(const tm_gguf *g, const char *name) {
    int64_t i = gguf_hash_find(g->t_hash, g->cap_t_hash, name, gguf_tensor_name, g);
    return i < 0 ? NULL : &g->tensors[i];
}
