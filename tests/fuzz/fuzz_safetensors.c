/*
 * fuzz_safetensors.c - libFuzzer harness for the safetensors reader: the input is
 * one safetensors image opened with tm_st_open_memory(); on success every tensor
 * is looked up by name and its first and last data bytes are read, so ASAN checks
 * that validated ranges really lie inside the image.
 * Seeds: tests/fuzz/corpus/safetensors/.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tm/tm_safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tm_st_file *f = NULL;
    if (tm_st_open_memory(data, size, &f) != TM_OK) {
        TM_ASSERT(f == NULL);
        return 0;
    }
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < tm_st_n_tensors(f); i++) {
        const tm_st_tensor *t = tm_st_tensor_at(f, i);
        TM_ASSERT(tm_st_find(f, t->name) == t);
        TM_ASSERT(t->n_dims >= 0 && t->n_dims <= TM_ST_MAX_DIMS);
        if (t->n_bytes > 0) {
            const uint8_t *p = t->data;
            sink ^= p[0];
            sink ^= p[t->n_bytes - 1];
        }
    }
    for (int64_t i = 0; i < tm_st_n_metadata(f); i++) {
        const char *k, *v;
        tm_st_metadata_at(f, i, &k, &v);
        TM_ASSERT(tm_st_metadata_get(f, k) != NULL);
        sink ^= (uint8_t)strlen(v);
    }
    (void)sink;
    tm_st_close(f);
    return 0;
}
