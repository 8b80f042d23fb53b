/*
 * fuzz_gguf.c - libFuzzer harness for the GGUF reader: opens the input from
 * memory, then walks every kv (nested arrays included) and every tensor through
 * the public accessors and touches each tensor's first and last data byte, so
 * ASAN sees any pointer the reader formed outside the input. A file that opens
 * is also re-encoded with tm_gguf_writer_copy_kv and must open again.
 *
 * Seeds: tests/fuzz/corpus/gguf/. Run: fuzz_gguf -max_total_time=60 CORPUS_DIR
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tm/tm_gguf.h"

static volatile uint64_t fz_sink;

static void fz_walk_array(const tm_gguf *g, int64_t h, int depth) {
    tm_gguf_type et = tm_gguf_kv_arr_type(g, h);
    uint64_t     n = tm_gguf_kv_arr_n(g, h);
    TM_ASSERT(depth <= TM_GGUF_MAX_DEPTH);
    for (uint64_t j = 0; j < n; j++) {
        if (et == TM_GGUF_TYPE_STRING) {
            tm_strview s = tm_gguf_kv_arr_str(g, h, j);
            if (s.len > 0)
                fz_sink += (uint8_t)s.ptr[0] + (uint8_t)s.ptr[s.len - 1];
        } else if (et == TM_GGUF_TYPE_ARRAY) {
            int64_t sub = tm_gguf_kv_arr_sub(g, h, j);
            TM_ASSERT(sub < 0 && tm_gguf_kv_type(g, sub) == TM_GGUF_TYPE_ARRAY);
            fz_walk_array(g, sub, depth + 1);
        }
    }
    if (n > 0 && et != TM_GGUF_TYPE_STRING && et != TM_GGUF_TYPE_ARRAY)
        fz_sink += *(const uint8_t *)tm_gguf_kv_arr_data(g, h);
}

static void fz_walk(const tm_gguf *g) {
    for (int64_t i = 0; i < tm_gguf_n_kv(g); i++) {
        tm_strview k = tm_gguf_kv_key(g, i);
        TM_ASSERT(k.len > 0);
        fz_sink += (uint8_t)k.ptr[k.len - 1];
        switch (tm_gguf_kv_type(g, i)) {
        case TM_GGUF_TYPE_UINT8: fz_sink += tm_gguf_kv_u8(g, i); break;
        case TM_GGUF_TYPE_INT8: fz_sink += (uint64_t)tm_gguf_kv_i8(g, i); break;
        case TM_GGUF_TYPE_UINT16: fz_sink += tm_gguf_kv_u16(g, i); break;
        case TM_GGUF_TYPE_INT16: fz_sink += (uint64_t)tm_gguf_kv_i16(g, i); break;
        case TM_GGUF_TYPE_UINT32: fz_sink += tm_gguf_kv_u32(g, i); break;
        case TM_GGUF_TYPE_INT32: fz_sink += (uint64_t)tm_gguf_kv_i32(g, i); break;
        case TM_GGUF_TYPE_UINT64: fz_sink += tm_gguf_kv_u64(g, i); break;
        case TM_GGUF_TYPE_INT64: fz_sink += (uint64_t)tm_gguf_kv_i64(g, i); break;
        case TM_GGUF_TYPE_FLOAT32: fz_sink += tm_gguf_kv_f32(g, i) > 0; break;
        case TM_GGUF_TYPE_FLOAT64: fz_sink += tm_gguf_kv_f64(g, i) > 0; break;
        case TM_GGUF_TYPE_BOOL: fz_sink += tm_gguf_kv_bool(g, i); break;
        case TM_GGUF_TYPE_STRING: fz_sink += tm_gguf_kv_str(g, i).len; break;
        case TM_GGUF_TYPE_ARRAY: fz_walk_array(g, i, 1); break;
        default: TM_ASSERT(false); /* the reader admitted an unknown value type */
        }
        /* The key must be found again by name unless it holds a NUL byte. */
        char name[TM_GGUF_MAX_NAME + 1];
        memcpy(name, k.ptr, k.len);
        name[k.len] = '\0';
        if (strlen(name) == k.len)
            TM_ASSERT(tm_gguf_find_key(g, name) == i);
    }
    for (int64_t i = 0; i < tm_gguf_n_tensors(g); i++) {
        const tm_gguf_tensor *t = tm_gguf_tensor_at(g, i);
        TM_ASSERT(t->n_dims >= 1 && t->n_dims <= TM_GGUF_MAX_DIMS);
        TM_ASSERT(tm_dtype_is_valid((uint32_t)t->dtype));
        TM_ASSERT(t->offset % tm_gguf_alignment(g) == 0);
        if (t->n_bytes > 0)
            fz_sink += ((const uint8_t *)t->data)[0] + ((const uint8_t *)t->data)[t->n_bytes - 1];
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tm_gguf *g = NULL;
    if (tm_gguf_open_memory(data, size, &g) != TM_OK) {
        TM_ASSERT(g == NULL);
        return 0;
    }
    fz_walk(g);

    /* The metadata must survive a copy through the writer and read back. */
    tm_gguf_writer *w = NULL;
    uint8_t        *buf = NULL;
    size_t          n = 0;
    if (tm_gguf_writer_init(&w) == TM_OK && tm_gguf_writer_copy_kv(w, g) == TM_OK &&
        tm_gguf_writer_write_memory(w, &buf, &n) == TM_OK) {
        tm_gguf *g2 = NULL;
        TM_ASSERT(tm_gguf_open_memory(buf, n, &g2) == TM_OK);
        TM_ASSERT(tm_gguf_n_kv(g2) == tm_gguf_n_kv(g));
        tm_gguf_close(g2);
    }
    tm_free(buf);
    tm_gguf_writer_free(w);
    tm_gguf_close(g);
    return 0;
}
