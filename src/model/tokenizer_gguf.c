/* tokenizer_gguf.c - placeholder, filled below */
#include "model/tokenizer_int.h"
#include "tm/tm_gguf.h"
tm_status tm__tk_load_gguf(tm_tokenizer *t, const tm_gguf *g, const char *name) {
    (void)t;
    (void)g;
    return tm_fail(TM_ERR_UNSUPPORTED, "%s: GGUF tokenizers not yet", name);
}
