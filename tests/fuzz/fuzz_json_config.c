/*
 * fuzz_json_config.c - libFuzzer harness for hf_config.c: the first input byte
 * picks which file the rest is (0 config.json, 1 generation_config.json,
 * 2 tokenizer_config.json, 3 all three at once), and the text goes through
 * tm_hf_config_load() as a memory text: the same parse and type checks as files.
 * On success the typed views and the generic getters are read.
 * Seeds: tests/fuzz/corpus/json/.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tm/tm_hf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    int          which = data[0] % 4;
    const char  *text = (const char *)data + 1;
    size_t       len = size - 1;
    tm_hf_params p = tm_hf_params_default();
    p.allow_missing_config = true;
    if (which == 0 || which == 3) {
        p.config_json = text;
        p.config_json_len = len;
    }
    if (which == 1 || which == 3) {
        p.generation_config_json = text;
        p.generation_config_json_len = len;
    }
    if (which == 2 || which == 3) {
        p.tokenizer_config_json = text;
        p.tokenizer_config_json_len = len;
    }
    tm_hf_config *hf = NULL;
    if (tm_hf_config_load(&p, &hf) != TM_OK) {
        TM_ASSERT(hf == NULL);
        return 0;
    }
    volatile size_t             sink = 0;
    const tm_hf_model_info     *m = tm_hf_config_model(hf);
    const tm_hf_generation     *g = tm_hf_config_generation(hf);
    const tm_hf_tokenizer_info *t = tm_hf_config_tokenizer(hf);
    if (m->architecture)
        sink += strlen(m->architecture);
    for (int32_t i = 0; i < g->n_eos_token_ids; i++)
        sink += (size_t)g->eos_token_ids[i];
    for (int32_t i = 0; i < t->n_chat_templates; i++)
        sink += strlen(t->chat_templates[i].name) + strlen(t->chat_templates[i].source);
    if (t->bos_token)
        sink += strlen(t->bos_token);
    static const char *const keys[] = {"hidden_size",  "rope_scaling.factor", "a.b.c", "",
                                       "eos_token_id", "chat_template"};
    for (int f = 0; f < TM_HF_FILE_COUNT; f++) {
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            int64_t     iv;
            double      dv;
            const char *sv;
            bool        bv;
            (void)tm_hf_config_get_int(hf, (tm_hf_file)f, keys[k], &iv);
            (void)tm_hf_config_get_float(hf, (tm_hf_file)f, keys[k], &dv);
            if (tm_hf_config_get_str(hf, (tm_hf_file)f, keys[k], &sv) == TM_OK)
                sink += strlen(sv);
            (void)tm_hf_config_get_bool(hf, (tm_hf_file)f, keys[k], &bv);
        }
    }
    (void)tm_hf_config_chat_template(hf, NULL);
    (void)sink;
    tm_hf_config_free(hf);
    return 0;
}
