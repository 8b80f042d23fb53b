/*
 * cmd_run.c - `lctl run MODEL -p PROMPT`: one-shot generation on the CPU, no server.
 *
 * Streams only the continuation to stdout (UTF-8 safe, through the streaming
 * detokenizer) and prints prompt / generation speed to stderr. `--ids 1,2,3`
 * bypasses the tokenizer (fixtures without a vocabulary); `--print-ids` prints
 * token ids instead of text.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lctl.h"
#include "tm/tm_io.h"
#include "tm/tm_model.h"
#include "tm/tm_sampler.h"
#include "tm/tm_tokenizer.h"

static void run_usage(FILE *f) {
    fprintf(f,
            "usage: lctl run [MODEL] [-p PROMPT | --ids 1,2,3] [options]\n\n"
            "Generates a continuation of PROMPT with MODEL (GGUF, Hugging Face folder or llama2.c\n"
            ".bin) on the CPU. Without MODEL: the default model, " LCTL_DEFAULT_MODEL "\n"
            "(scripts/fetch_models.sh default fetches it).\n\n"
            "options:\n"
            "  -p, --prompt TEXT      prompt text\n"
            "  --ids LIST             prompt as comma-separated token ids (no tokenizer needed)\n"
            "  -n, --n-predict N      tokens to generate (default 128)\n"
            "  -t, --threads N        compute threads (default: online CPUs)\n"
            "  -c, --ctx-size N       context positions (default min(trained, 2048))\n"
            "  --temp T               temperature; 0 = greedy (default 0.8)\n"
            "  --top-k K              (default 40; 0 = off)\n"
            "  --top-p P              (default 0.95; 1 = off)\n"
            "  --min-p P              (default 0.05; 0 = off)\n"
            "  --repeat-penalty R     (default 1 = off)\n"
            "  --presence-penalty R   (default 0)\n"
            "  --frequency-penalty R  (default 0)\n"
            "  --seed S               sampling seed (default 0x5eed)\n"
            "  --tokenizer PATH       tokenizer file/folder (default: the model's own)\n"
            "  --recipe FILE          JSON architecture recipe (docs/recipes.md) instead of the\n"
            "                         built-in one chosen by the file\n"
            "  --print-ids            print generated token ids instead of text\n"
            "  --kv-type f16|f32      KV cache precision (default f16; f32 stores K and V\n"
            "                         unrounded, at twice the memory); also --kv-f16, --kv-f32\n"
            "  --act-type q8|q16|f32  activation precision in matmuls (default q8; q16 ~1e-4\n"
            "                         error, matches a float reference; f32 exact, slowest);\n"
            "                         also --exact (= f32, docs/accuracy.md)\n"
            "  --ignore-eos           keep generating past end-of-sequence\n"
            "  -h, --help             this text\n");
}

int lctl_run(int argc, char **argv) {
    const char       *model_path = NULL, *prompt = NULL, *ids_arg = NULL, *tok_path = NULL;
    const char       *recipe = NULL;
    double            n_predict = 128, n_threads = 0, n_ctx = 0, v;
    bool              print_ids = false, ignore_eos = false;
    tm_dtype          kv = tm_ctx_params_default().kv_dtype;
    tm_act_type       act = tm_ctx_params_default().act_type;
    int               n_kv, n_act;
    tm_sampler_params sp = tm_sampler_params_default();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDVAL()                                                                                  \
    do {                                                                                           \
        if (val == NULL) {                                                                         \
            fprintf(stderr, "lctl run: %s needs a value\n", a);                                    \
            return 2;                                                                              \
        }                                                                                          \
        i++;                                                                                       \
    } while (0)
#define NUM(lo, hi, dst)                                                                           \
    do {                                                                                           \
        NEEDVAL();                                                                                 \
        if (lctl_parse_num("lctl run", a, val, lo, hi, false, &v) != 0)                            \
            return 2;                                                                              \
        dst = v;                                                                                   \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            run_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            NEEDVAL();
            prompt = val;
        } else if (!strcmp(a, "--ids")) {
            NEEDVAL();
            ids_arg = val;
        } else if (!strcmp(a, "--tokenizer")) {
            NEEDVAL();
            tok_path = val;
        } else if (!strcmp(a, "--recipe")) {
            NEEDVAL();
            recipe = val;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) {
            NUM(0, 1 << 24, n_predict);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            NUM(1, 512, n_threads);
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            NUM(1, 1 << 24, n_ctx);
        } else if (!strcmp(a, "--temp")) {
            NUM(0, 100, sp.temp);
        } else if (!strcmp(a, "--top-k")) {
            NUM(0, 1 << 30, sp.top_k);
        } else if (!strcmp(a, "--top-p")) {
            NUM(0, 1, sp.top_p);
        } else if (!strcmp(a, "--min-p")) {
            NUM(0, 1, sp.min_p);
        } else if (!strcmp(a, "--repeat-penalty")) {
            NUM(0.01, 100, sp.repeat_penalty);
        } else if (!strcmp(a, "--presence-penalty")) {
            NUM(-100, 100, sp.presence_penalty);
        } else if (!strcmp(a, "--frequency-penalty")) {
            NUM(-100, 100, sp.frequency_penalty);
        } else if (!strcmp(a, "--seed")) {
            NEEDVAL();
            sp.seed = strtoull(val, NULL, 0);
        } else if (!strcmp(a, "--print-ids")) {
            print_ids = true;
        } else if ((n_kv = lctl_parse_kv_option("lctl run", a, val, &kv)) != 0) {
            if (n_kv < 0)
                return 2;
            i += n_kv - 1;
        } else if ((n_act = lctl_parse_act_option("lctl run", a, val, &act)) != 0) {
            if (n_act < 0)
                return 2;
            i += n_act - 1;
        } else if (!strcmp(a, "--ignore-eos")) {
            ignore_eos = true;
        } else if (a[0] == '-') {
            fprintf(stderr, "lctl run: unknown option '%s'\n\n", a);
            run_usage(stderr);
            return 2;
        } else if (model_path == NULL) {
            model_path = a;
        } else {
            fprintf(stderr, "lctl run: unexpected argument '%s'\n", a);
            return 2;
        }
#undef NUM
#undef NEEDVAL
    }
    if (prompt == NULL && ids_arg == NULL) {
        run_usage(stderr);
        return 2;
    }
    if (model_path == NULL && (model_path = lctl_default_model("lctl run")) == NULL)
        return 1;

    int             rc = 1;
    tm_model       *model = NULL;
    tm_tokenizer   *tok = NULL;
    tm_detokenizer *detok = NULL;
    tm_ctx         *ctx = NULL;
    tm_sampler     *smp = NULL;
    int32_t        *ids = NULL;
    size_t          n_ids = 0;

    tm_model_params mp = tm_model_params_default();
    lctl_model_prefetch(model_path);
    mp.path = model_path;
    mp.recipe_path = recipe;
    if (tm_model_load(&mp, &model) != TM_OK) {
        fprintf(stderr, "lctl run: %s\n", tm_last_error());
        goto done;
    }
    const tm_hparams *hp = tm_model_get_hparams(model);
    bool hf_dir = tm_path_is_dir(model_path); /* a Hugging Face folder: its tokenizer.json */
    if (tok_path != NULL || tm_model_gguf(model) != NULL || hf_dir) {
        tm_tokenizer_params tp = tm_tokenizer_params_default();
        tp.gguf = tok_path ? NULL : tm_model_gguf(model);
        tp.path = tok_path ? tok_path : (tp.gguf ? NULL : model_path);
        tp.llama2c_n_vocab = hp->n_vocab;
        if (tm_tokenizer_init(&tp, &tok) != TM_OK) {
            if (prompt != NULL || !print_ids) {
                fprintf(stderr, "lctl run: tokenizer: %s\n", tm_last_error());
                goto done;
            }
            tok = NULL; /* ids in, ids out: no tokenizer needed */
        }
    }
    if (ids_arg != NULL) {
        if (lctl_parse_ids("lctl run", "--ids", ids_arg, &ids, &n_ids) != 0)
            goto done;
    } else if (tok == NULL) {
        fprintf(stderr, "lctl run: %s has no tokenizer: pass --tokenizer PATH or --ids\n",
                model_path);
        goto done;
    } else if (tm_tokenizer_encode(tok, prompt, strlen(prompt), true, true, &ids, &n_ids) !=
               TM_OK) {
        fprintf(stderr, "lctl run: encode: %s\n", tm_last_error());
        goto done;
    }
    if (n_ids == 0) {
        fprintf(stderr, "lctl run: empty prompt\n");
        goto done;
    }
    if (tok != NULL && !print_ids && tm_detokenizer_init(tok, true, &detok) != TM_OK) {
        fprintf(stderr, "lctl run: %s\n", tm_last_error());
        goto done;
    }

    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_threads = (int32_t)n_threads;
    cp.n_ctx = (int32_t)n_ctx;
    if (cp.n_ctx == 0) {
        int64_t want = (int64_t)n_ids + (int64_t)n_predict;
        int64_t lim = hp->n_ctx_train < 2048 ? hp->n_ctx_train : 2048;
        cp.n_ctx = (int32_t)(want < lim ? (want < 16 ? 16 : want) : lim);
    }
    cp.kv_dtype = kv;
    cp.act_type = act;
    if (tm_ctx_init(model, &cp, &ctx) != TM_OK ||
        tm_sampler_init(&sp, hp->n_vocab, &smp) != TM_OK) {
        fprintf(stderr, "lctl run: %s\n", tm_last_error());
        goto done;
    }
    if ((int64_t)n_ids >= tm_ctx_n_ctx(ctx)) {
        fprintf(stderr, "lctl run: prompt of %zu tokens does not fit a context of %d\n", n_ids,
                tm_ctx_n_ctx(ctx));
        goto done;
    }
    const int32_t n_batch = tm_ctx_n_ctx(ctx) < 128 ? tm_ctx_n_ctx(ctx) : 128; /* ctx default */
    double        t0 = lctl_now();
    for (size_t i = 0; i < n_ids; i += (size_t)n_batch) {
        size_t n = n_ids - i < (size_t)n_batch ? n_ids - i : (size_t)n_batch;
        if (tm_ctx_decode(ctx, ids + i, (int32_t)n) != TM_OK) {
            fprintf(stderr, "lctl run: %s\n", tm_last_error());
            goto done;
        }
    }
    for (size_t i = 0; i < n_ids; i++)
        tm_sampler_accept(smp, ids[i]);
    double  t1 = lctl_now(), t2 = t1;
    int32_t eos = tok ? tm_tokenizer_eos_id(tok) : hp->eos_id;
    int64_t n_gen = 0, n_dec = 0;
    while (n_gen < (int64_t)n_predict) {
        int32_t next = tm_sampler_sample(smp, tm_ctx_logits(ctx, -1));
        tm_sampler_accept(smp, next);
        if (next == eos && !ignore_eos)
            break;
        if (print_ids || detok == NULL) {
            printf("%s%d", n_gen ? " " : "", next);
        } else {
            const char *b;
            size_t      len;
            if (tm_detokenizer_feed(detok, next, &b, &len) == TM_OK)
                fwrite(b, 1, len, stdout);
        }
        fflush(stdout);
        n_gen++;
        if (n_gen == (int64_t)n_predict)
            break; /* the last token needs no decode */
        if (tm_ctx_n_past(ctx) >= tm_ctx_n_ctx(ctx)) {
            fprintf(stderr, "\nlctl run: context full\n");
            break;
        }
        if (tm_ctx_decode(ctx, &next, 1) != TM_OK) {
            fprintf(stderr, "\nlctl run: %s\n", tm_last_error());
            goto done;
        }
        n_dec++;
    }
    t2 = lctl_now();
    if (detok != NULL) {
        const char *b;
        size_t      len;
        if (tm_detokenizer_flush(detok, &b, &len) == TM_OK)
            fwrite(b, 1, len, stdout);
    }
    printf("\n");
    fflush(stdout);
    fprintf(stderr,
            "prompt: %zu tokens in %.3f s (%.2f tokens/s); generation: %lld tokens, "
            "%lld decode steps in %.3f s (%.2f tokens/s)\n",
            n_ids, t1 - t0, (double)n_ids / (t1 - t0), (long long)n_gen, (long long)n_dec, t2 - t1,
            n_dec > 0 ? (double)n_dec / (t2 - t1) : 0.0);
    rc = 0;
done:
    tm_free(ids);
    tm_sampler_free(smp);
    tm_ctx_free(ctx);
    tm_detokenizer_free(detok);
    tm_tokenizer_free(tok);
    tm_model_free(model);
    return rc;
}
