/*
 * tokenizer_llama2c.c - loads llama2.c's tokenizer.bin: int32 max_token_length,
 * then per token: float32 score, int32 byte length, bytes (little-endian).
 *
 * llama2.c's encode() is SentencePiece-style score merging with a dummy-prefix
 * space: the vocabulary stores spaces as ' ' (not U+2581), tokens 0..2 are
 * <unk>, <s>, </s> and 3..258 the byte tokens <0x00>..<0xFF>. So the pipeline is
 * Prepend(" ") on non-empty text, SPM merging by score with byte fallback, BOS
 * added by default (run.c encodes prompts with bos=1, eos=0), and a decoder that
 * maps <0xXX> to bytes and drops the dummy-prefix space of the first token.
 */
#include <stdio.h>
#include <string.h>

#include "model/tokenizer_int.h"
#include "tm/tm_bytes.h"

tm_status tm__tk_load_llama2c(tm_tokenizer *t, const void *data, size_t len, int32_t n_vocab,
                              const char *name) {
    const uint8_t *p = data, *end = p + len;
    if (len < 4)
        return tm_fail(TM_ERR_FORMAT, "%s: too small for a llama2.c tokenizer.bin", name);
    uint32_t max_len = tm_load_u32_le(p);
    p += 4;
    if (max_len == 0 || max_len > 4096)
        return tm_fail(TM_ERR_FORMAT,
                       "%s: not a llama2.c tokenizer.bin (max_token_length %u); expected "
                       "tokenizer.json, a Hugging Face folder, a GGUF or tokenizer.bin",
                       name, max_len);
    /* First pass: count and validate the records. */
    int32_t        n = 0;
    const uint8_t *q = p;
    while (q < end && (n_vocab <= 0 || n < n_vocab)) {
        if ((size_t)(end - q) < 8)
            return tm_fail(TM_ERR_FORMAT, "%s: token %d record truncated", name, n);
        uint32_t l = tm_load_u32_le(q + 4);
        if (l > max_len || l > (size_t)(end - q) - 8)
            return tm_fail(TM_ERR_FORMAT, "%s: token %d has length %u (max %u, %zu bytes left)",
                           name, n, l, max_len, (size_t)(end - q) - 8);
        q += 8 + l;
        n++;
    }
    if (n_vocab > 0 && n < n_vocab)
        return tm_fail(TM_ERR_FORMAT, "%s: has %d tokens, %d expected", name, n, n_vocab);
    if (n < 3)
        return tm_fail(TM_ERR_FORMAT, "%s: only %d tokens", name, n);
    TM_TRY(tm__tk_vocab_alloc(t, n));
    t->scores = tm_malloc((size_t)n * sizeof *t->scores);
    if (t->scores == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory (scores)");
    for (int32_t i = 0; i < n; i++) {
        uint32_t l = tm_load_u32_le(p + 4);
        t->scores[i] = tm_load_f32_le(p);
        TM_TRY(tm__tk_vocab_set(t, i, (const char *)p + 8, l));
        p += 8 + l;
    }
    TM_TRY(tm__tk_finish(t));
    for (int32_t i = 0; i < 3; i++)
        t->attr[i] |= TK_ATTR_SPECIAL; /* <unk> <s> </s>: never parsed from text (run.c) */
    t->model = TK_MODEL_SPM;
    t->type_name = "spm-bpe";
    t->source_name = "llama2.c";
    t->unk_id = 0;
    t->bos_id = 1;
    t->eos_id = 2;

    tk_norm pre = {.kind = TK_NORM_PREPEND, .s1 = tm_strndup(" ", 1), .n1 = 1};
    t->norm = tm_malloc(sizeof *t->norm);
    t->dec = tm_calloc(3, sizeof *t->dec);
    if (pre.s1 == NULL || t->norm == NULL || t->dec == NULL) {
        tm_free(pre.s1);
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    }
    t->norm[t->n_norm++] = pre;
    t->dec[t->n_dec++] = (tk_dec){.kind = TK_DEC_BYTEFALLBACK};
    t->dec[t->n_dec++] = (tk_dec){.kind = TK_DEC_FUSE};
    t->dec[t->n_dec] = (tk_dec){
        .kind = TK_DEC_STRIP, .s2 = tm_strndup(" ", 1), .n2 = 1, .start = 1, .after_fuse = true};
    if (t->dec[t->n_dec].s2 == NULL)
        return tm_fail(TM_ERR_NOMEM, "tokenizer: out of memory");
    t->n_dec++;
    snprintf(t->norm_desc, sizeof t->norm_desc, "Prepend( )");
    snprintf(t->pre_desc, sizeof t->pre_desc, "none (llama2.c)");
    snprintf(t->dec_desc, sizeof t->dec_desc, "ByteFallback,Fuse,Strip");
    return tm__tk_set_tmpl_bos_eos(t, true, false);
}
