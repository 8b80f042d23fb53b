/* tokenizer_llama2c.c - placeholder */
#include "model/tokenizer_int.h"
tm_status tm__tk_load_llama2c(tm_tokenizer *t, const void *data, size_t len, int32_t n_vocab,
                              const char *name) {
    (void)t;
    (void)data;
    (void)len;
    (void)n_vocab;
    return tm_fail(TM_ERR_UNSUPPORTED, "%s: llama2.c not yet", name);
}
