/*
 * fuzz_tokenizer_json.c - libFuzzer harness: the input is split at the first NUL
 * byte into a tokenizer.json and a text; the tokenizer is loaded from memory,
 * the text encoded (both special modes) and the ids decoded and streamed back.
 * Any status is fine; crashes, leaks and sanitizer reports are not.
 */
#include <stdint.h>
#include <string.h>

#include "tm/tm_status.h"
#include "tm/tm_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t         jlen = nul ? (size_t)(nul - data) : size;
    const char    *text = nul ? (const char *)nul + 1 : "";
    size_t         tlen = nul ? size - jlen - 1 : 0;

    tm_tokenizer_params tp = tm_tokenizer_params_default();
    tp.json_data = (const char *)data;
    tp.json_len = jlen;
    tm_tokenizer *tok = NULL;
    if (tm_tokenizer_init(&tp, &tok) != TM_OK)
        return 0;
    for (int mode = 0; mode < 2; mode++) {
        int32_t *ids = NULL;
        size_t   n = 0;
        if (tm_tokenizer_encode(tok, text, tlen, mode, mode, &ids, &n) == TM_OK) {
            char  *out = NULL;
            size_t len = 0;
            if (tm_tokenizer_decode(tok, ids, n, mode, &out, &len) == TM_OK)
                tm_free(out);
            tm_detokenizer *d = NULL;
            if (tm_detokenizer_init(tok, mode, &d) == TM_OK) {
                const char *p;
                size_t      l;
                for (size_t i = 0; i < n; i++)
                    (void)tm_detokenizer_feed(d, ids[i], &p, &l);
                (void)tm_detokenizer_flush(d, &p, &l);
                tm_detokenizer_free(d);
            }
        }
        tm_free(ids);
    }
    tm_tokenizer_free(tok);
    return 0;
}
