/*
 * cmd_embed.c - `lctl embed MODEL --text T`: the sentence embedding of an
 * embedding model (recipe pooling "mean": BERT, all-MiniLM-L6-v2), printed as a
 * JSON array of floats, one line per text. `--ids 1,2,3` embeds token ids as given
 * (fixtures without a vocabulary need no tokenizer).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lctl.h"
#include "tm/tm_io.h"
#include "tm/tm_model.h"
#include "tm/tm_tokenizer.h"

static void embed_usage(FILE *f) {
    fprintf(f, "usage: lctl embed MODEL (--text T | --ids LIST)... [options]\n\n"
               "Prints the mean-pooled, L2-normalized embedding of each text as a JSON array on\n"
               "its own line. MODEL is an embedding model: a Hugging Face folder or GGUF of a\n"
               "BERT-style encoder (e.g. models/all-MiniLM-L6-v2 from scripts/fetch_models.sh).\n\n"
               "options:\n"
               "  --text T           a text to embed (repeatable)\n"
               "  --ids LIST         token ids to embed as given, comma-separated (repeatable;\n"
               "                     no tokenizer needed)\n"
               "  -t, --threads N    compute threads (default: online CPUs)\n"
               "  --kv-type f16|f32  KV cache precision (default f16; f32 stores K and V\n"
               "                     unrounded); also --kv-f16, --kv-f32\n"
               "  --act-type q8|q16|f32\n"
               "                     activation precision in matmuls (default q8; q16 ~1e-4\n"
               "                     error, matches a float reference; f32 exact, slowest);\n"
               "                     also --exact (= f32)\n"
               "  -h, --help         this text\n");
}

int lctl_embed(int argc, char **argv) {
    const char *model_path = NULL;
    const char *texts[64];
    bool        is_ids[64]; /* texts[i] is a token id list (--ids) */
    int         n_texts = 0, n_threads = 0, n_words = 0;
    tm_dtype    kv = tm_ctx_params_default().kv_dtype;
    tm_act_type act = tm_ctx_params_default().act_type;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int         n_opt = lctl_parse_kv_option("lctl embed", a, val, &kv);
        if (n_opt == 0)
            n_opt = lctl_parse_act_option("lctl embed", a, val, &act);
        if (n_opt != 0) {
            if (n_opt < 0)
                return 2;
            i += n_opt - 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            embed_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--text") || !strcmp(a, "--ids") || !strcmp(a, "-t") ||
                   !strcmp(a, "--threads")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "lctl embed: %s needs a value\n", a);
                return 2;
            }
            if (!strcmp(a, "--text") || !strcmp(a, "--ids")) {
                if (n_texts == 64) {
                    fprintf(stderr, "lctl embed: at most 64 texts per call\n");
                    return 2;
                }
                is_ids[n_texts] = !strcmp(a, "--ids");
                n_words += !is_ids[n_texts];
                texts[n_texts++] = argv[++i];
            } else {
                n_threads = atoi(argv[++i]);
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "lctl embed: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (model_path == NULL) {
            model_path = a;
        } else {
            fprintf(stderr, "lctl embed: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (model_path == NULL || n_texts == 0 || n_threads < 0) {
        embed_usage(stderr);
        return 2;
    }
    int             rc = 1;
    tm_model       *model = NULL;
    tm_tokenizer   *tok = NULL;
    tm_ctx         *ctx = NULL;
    float          *v = NULL;
    tm_model_params mp = tm_model_params_default();
    lctl_model_prefetch(model_path);
    mp.path = model_path;
    if (tm_model_load(&mp, &model) != TM_OK)
        goto fail;
    int32_t n_out = tm_model_n_embd_out(model);
    if (n_out <= 0) {
        fprintf(stderr, "lctl embed: %s is a language model, not an embedding model\n", model_path);
        goto done;
    }
    tm_tokenizer_params tp = tm_tokenizer_params_default();
    tp.gguf = tm_model_gguf(model);
    tp.path = tp.gguf ? NULL : model_path;
    if (n_words > 0 && tm_tokenizer_init(&tp, &tok) != TM_OK)
        goto fail;
    const tm_hparams *hp = tm_model_get_hparams(model);
    tm_ctx_params     cp = tm_ctx_params_default();
    cp.n_threads = n_threads;
    cp.n_ctx = hp->n_ctx_train < 512 ? hp->n_ctx_train : 512;
    cp.n_batch = cp.n_ctx;
    cp.kv_dtype = kv;
    cp.act_type = act;
    v = tm_calloc((size_t)n_out, sizeof *v);
    if (v == NULL || tm_ctx_init(model, &cp, &ctx) != TM_OK)
        goto fail;
    for (int i = 0; i < n_texts; i++) {
        int32_t *ids = NULL;
        size_t   n = 0;
        if (is_ids[i]) {
            if (lctl_parse_ids("lctl embed", "--ids", texts[i], &ids, &n) != 0) {
                tm_free(ids);
                goto done;
            }
            if (n == 0) {
                fprintf(stderr, "lctl embed: --ids %d is empty\n", i + 1);
                tm_free(ids);
                goto done;
            }
        } else if (tm_tokenizer_encode(tok, texts[i], strlen(texts[i]), true, false, &ids, &n) !=
                   TM_OK) {
            goto fail;
        }
        if (n > (size_t)cp.n_batch) {
            fprintf(stderr, "lctl embed: text %d has %zu tokens; the model takes at most %d\n",
                    i + 1, n, cp.n_batch);
            tm_free(ids);
            goto done;
        }
        tm_status st = tm_ctx_embed(ctx, model, ids, (int32_t)n, v, n_out);
        tm_free(ids);
        if (st != TM_OK)
            goto fail;
        putchar('[');
        for (int32_t j = 0; j < n_out; j++)
            printf(j ? ", %.9g" : "%.9g", (double)v[j]);
        printf("]\n");
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "lctl embed: %s\n", tm_last_error());
done:
    tm_free(v);
    tm_ctx_free(ctx);
    tm_tokenizer_free(tok);
    tm_model_free(model);
    return rc;
}
