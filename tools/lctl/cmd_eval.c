/*
 * cmd_eval.c - `lctl eval MODEL (--file F | --ids-file F)`: teacher-forced evaluation.
 *
 * Runs the model over a token sequence in batches of -b tokens with logits for every
 * token (tm_ctx_params.logits_all), and for each position i < n - 1 scores the true
 * next token ids[i + 1]: log-softmax in double, negative log-likelihood, top-1 id.
 * Prints the mean NLL and the perplexity exp(mean NLL) to stdout; optionally writes the
 * per-position top-1 ids (--top1-out) and a per-position table of logits (--logits-out).
 *
 * Sequences longer than the context (-c) are cut into independent windows of -c tokens
 * (the cache is cleared between windows; each window's first token is context only).
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lctl.h"
#include "tm/tm_io.h"
#include "tm/tm_model.h"
#include "tm/tm_tokenizer.h"

#define EVAL_MAX_INPUT ((size_t)1 << 30)
#define EVAL_MAX_TOPK 64

static void eval_usage(FILE *f) {
    fprintf(f,
            "usage: lctl eval MODEL (--file F | --ids-file F) [options]\n\n"
            "Teacher-forced evaluation: runs MODEL over the tokens and scores every next token.\n"
            "Prints the number of scored positions, the mean negative log-likelihood (nats)\n"
            "and the perplexity exp(mean NLL).\n\n"
            "options:\n"
            "  --file F            text (UTF-8) tokenized with the model's tokenizer, special\n"
            "                      tokens added as the tokenizer says (e.g. BOS), special-token\n"
            "                      strings in the text treated as plain text\n"
            "  --ids-file F        token ids (separated by spaces, commas or newlines)\n"
            "  -n, --n-tokens N    use only the first N tokens (N - 1 scored positions)\n"
            "  -c, --ctx-size N    window of positions (default min(tokens, trained context));\n"
            "                      longer inputs are cut into independent windows\n"
            "  -b, --batch-size N  tokens per forward pass (default min(window, 128))\n"
            "  -t, --threads N     compute threads (default: online CPUs)\n"
            "  --kv-type f16|f32   KV cache precision (default f16; f32 stores K and V\n"
            "                      unrounded, at twice the memory); also --kv-f16, --kv-f32\n"
            "  --act-type q8|q16|f32\n"
            "                      activation precision in matmuls (default q8; q16 ~1e-4\n"
            "                      error, matches a float reference; f32 exact, slowest);\n"
            "                      also --exact (= f32, docs/accuracy.md)\n"
            "  --tokenizer PATH    tokenizer for --file (default: the GGUF's own)\n"
            "  --top1-out FILE     write the top-1 (argmax) id of every scored position, one\n"
            "                      per line\n"
            "  --logits-out FILE   write one line per scored position: pos, target id, target\n"
            "                      logit, target log-probability, then --top-k pairs id:logit\n"
            "                      (highest first), tab-separated\n"
            "  --top-k K           pairs per line in --logits-out (default 5, at most 64)\n"
            "  -h, --help          this text\n");
}

/* Top-k of a row (k small): ids and values, highest first; ties keep the lower id first. */
static void eval_topk(const float *row, int32_t n_vocab, int k, int32_t *ids, float *vals) {
    int have = 0;
    for (int32_t v = 0; v < n_vocab; v++) {
        float x = row[v];
        if (have == k && !(x > vals[k - 1]))
            continue;
        int j = have < k ? have++ : k - 1;
        while (j > 0 && x > vals[j - 1]) {
            vals[j] = vals[j - 1];
            ids[j] = ids[j - 1];
            j--;
        }
        vals[j] = x;
        ids[j] = v;
    }
}

int lctl_eval(int argc, char **argv) {
    const char *model_path = NULL, *text_path = NULL, *ids_path = NULL, *tok_path = NULL;
    const char *top1_path = NULL, *logits_path = NULL;
    long        n_tokens = 0, n_ctx = 0, n_batch = 0, n_threads = 0, top_k = 5;
    tm_dtype    kv = tm_ctx_params_default().kv_dtype;
    tm_act_type act = tm_ctx_params_default().act_type;
    int         n_kv, n_act;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
#define NEEDVAL()                                                                                  \
    do {                                                                                           \
        if (val == NULL) {                                                                         \
            fprintf(stderr, "lctl eval: %s needs a value\n", a);                                   \
            return 2;                                                                              \
        }                                                                                          \
        i++;                                                                                       \
    } while (0)
#define INT(lo, hi, dst)                                                                           \
    do {                                                                                           \
        NEEDVAL();                                                                                 \
        double tm_v;                                                                               \
        if (lctl_parse_num("lctl eval", a, val, lo, hi, true, &tm_v) != 0)                         \
            return 2;                                                                              \
        dst = (long)tm_v;                                                                          \
    } while (0)
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            eval_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--file")) {
            NEEDVAL();
            text_path = val;
        } else if (!strcmp(a, "--ids-file")) {
            NEEDVAL();
            ids_path = val;
        } else if (!strcmp(a, "--tokenizer")) {
            NEEDVAL();
            tok_path = val;
        } else if (!strcmp(a, "--top1-out")) {
            NEEDVAL();
            top1_path = val;
        } else if (!strcmp(a, "--logits-out")) {
            NEEDVAL();
            logits_path = val;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-tokens")) {
            INT(2, 1L << 30, n_tokens);
        } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) {
            INT(2, 1L << 24, n_ctx);
        } else if (!strcmp(a, "-b") || !strcmp(a, "--batch-size")) {
            INT(1, 1L << 24, n_batch);
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            INT(1, 512, n_threads);
        } else if (!strcmp(a, "--top-k")) {
            INT(1, EVAL_MAX_TOPK, top_k);
        } else if ((n_kv = lctl_parse_kv_option("lctl eval", a, val, &kv)) != 0) {
            if (n_kv < 0)
                return 2;
            i += n_kv - 1;
        } else if ((n_act = lctl_parse_act_option("lctl eval", a, val, &act)) != 0) {
            if (n_act < 0)
                return 2;
            i += n_act - 1;
        } else if (a[0] == '-') {
            fprintf(stderr, "lctl eval: unknown option '%s'\n\n", a);
            eval_usage(stderr);
            return 2;
        } else if (model_path == NULL) {
            model_path = a;
        } else {
            fprintf(stderr, "lctl eval: unexpected argument '%s'\n", a);
            return 2;
        }
#undef INT
#undef NEEDVAL
    }
    if (model_path == NULL || (text_path == NULL) == (ids_path == NULL)) {
        eval_usage(stderr);
        return 2;
    }

    int           rc = 1;
    tm_model     *model = NULL;
    tm_tokenizer *tok = NULL;
    tm_ctx       *ctx = NULL;
    int32_t      *ids = NULL;
    size_t        n_ids = 0;
    char         *buf = NULL;
    size_t        buf_len = 0;
    FILE         *f_top1 = NULL, *f_logits = NULL;

    tm_model_params mp = tm_model_params_default();
    mp.path = model_path;
    if (tm_model_load(&mp, &model) != TM_OK) {
        fprintf(stderr, "lctl eval: %s\n", tm_last_error());
        goto done;
    }
    const tm_hparams *hp = tm_model_get_hparams(model);
    if (tm_file_read_all(text_path ? text_path : ids_path, EVAL_MAX_INPUT, &buf, &buf_len) !=
        TM_OK) {
        fprintf(stderr, "lctl eval: %s\n", tm_last_error());
        goto done;
    }
    if (ids_path != NULL) {
        if (lctl_parse_ids("lctl eval", ids_path, buf, &ids, &n_ids) != 0)
            goto done;
    } else {
        if (tok_path == NULL && tm_model_gguf(model) == NULL) {
            fprintf(stderr, "lctl eval: %s has no tokenizer: pass --tokenizer PATH or --ids-file\n",
                    model_path);
            goto done;
        }
        tm_tokenizer_params tp = tm_tokenizer_params_default();
        tp.path = tok_path;
        tp.gguf = tok_path ? NULL : tm_model_gguf(model);
        tp.llama2c_n_vocab = hp->n_vocab;
        if (tm_tokenizer_init(&tp, &tok) != TM_OK ||
            tm_tokenizer_encode(tok, buf, buf_len, true, false, &ids, &n_ids) != TM_OK) {
            fprintf(stderr, "lctl eval: tokenizer: %s\n", tm_last_error());
            goto done;
        }
    }
    if (n_tokens > 0 && (size_t)n_tokens < n_ids)
        n_ids = (size_t)n_tokens;
    if (n_ids < 2) {
        fprintf(stderr, "lctl eval: need at least 2 tokens, got %zu\n", n_ids);
        goto done;
    }
    for (size_t i = 0; i < n_ids; i++)
        if (ids[i] >= hp->n_vocab) {
            fprintf(stderr, "lctl eval: token id %d at %zu outside [0, %d)\n", ids[i], i,
                    hp->n_vocab);
            goto done;
        }

    tm_ctx_params cp = tm_ctx_params_default();
    if (n_ctx == 0)
        n_ctx = (long)n_ids < hp->n_ctx_train ? (long)n_ids : hp->n_ctx_train;
    if (n_ctx < 2) {
        fprintf(stderr, "lctl eval: a window needs at least 2 positions\n");
        goto done;
    }
    if (n_batch == 0)
        n_batch = n_ctx < 128 ? n_ctx : 128;
    if (n_batch > n_ctx)
        n_batch = n_ctx;
    cp.n_ctx = (int32_t)n_ctx;
    cp.n_batch = (int32_t)n_batch;
    cp.n_threads = (int32_t)n_threads;
    cp.logits_all = true;
    cp.kv_dtype = kv;
    cp.act_type = act;
    if (tm_ctx_init(model, &cp, &ctx) != TM_OK) {
        fprintf(stderr, "lctl eval: %s\n", tm_last_error());
        goto done;
    }
    if (top1_path && (f_top1 = fopen(top1_path, "w")) == NULL) {
        fprintf(stderr, "lctl eval: cannot write %s: %s\n", top1_path, strerror(errno));
        goto done;
    }
    if (logits_path && (f_logits = fopen(logits_path, "w")) == NULL) {
        fprintf(stderr, "lctl eval: cannot write %s: %s\n", logits_path, strerror(errno));
        goto done;
    }

    const int32_t n_vocab = hp->n_vocab;
    double        nll_sum = 0.0, t0 = lctl_now();
    size_t        n_scored = 0;
    int32_t       tk_ids[EVAL_MAX_TOPK];
    float         tk_vals[EVAL_MAX_TOPK];
    for (size_t w0 = 0; w0 + 1 < n_ids; w0 += (size_t)n_ctx) {
        size_t w_len = n_ids - w0 < (size_t)n_ctx ? n_ids - w0 : (size_t)n_ctx;
        if (w_len < 2)
            break; /* a lone trailing token predicts nothing */
        tm_ctx_clear(ctx);
        for (size_t b0 = 0; b0 < w_len; b0 += (size_t)n_batch) {
            size_t nb = w_len - b0 < (size_t)n_batch ? w_len - b0 : (size_t)n_batch;
            if (tm_ctx_decode(ctx, ids + w0 + b0, (int32_t)nb) != TM_OK) {
                fprintf(stderr, "lctl eval: %s\n", tm_last_error());
                goto done;
            }
            for (size_t j = 0; j < nb; j++) {
                size_t pos = w0 + b0 + j; /* scores ids[pos + 1] */
                if (b0 + j + 1 >= w_len)
                    break;
                const float *row = tm_ctx_logits(ctx, (int32_t)j);
                if (row == NULL) {
                    fprintf(stderr, "lctl eval: no logits for token %zu of a batch\n", j);
                    goto done;
                }
                double mx = -INFINITY;
                for (int32_t v = 0; v < n_vocab; v++)
                    mx = row[v] > mx ? row[v] : mx;
                double s = 0.0;
                for (int32_t v = 0; v < n_vocab; v++)
                    s += exp((double)row[v] - mx);
                const int32_t tgt = ids[pos + 1];
                const double  logp = (double)row[tgt] - mx - log(s);
                if (!isfinite(logp)) {
                    fprintf(stderr, "lctl eval: non-finite log-probability at position %zu\n", pos);
                    goto done;
                }
                nll_sum -= logp;
                n_scored++;
                eval_topk(row, n_vocab, (int)top_k, tk_ids, tk_vals);
                if (f_top1)
                    fprintf(f_top1, "%d\n", tk_ids[0]);
                if (f_logits) {
                    fprintf(f_logits, "%zu\t%d\t%.6g\t%.6g", pos, tgt, (double)row[tgt], logp);
                    for (long k = 0; k < top_k; k++)
                        fprintf(f_logits, "\t%d:%.6g", tk_ids[k], (double)tk_vals[k]);
                    fputc('\n', f_logits);
                }
            }
        }
    }
    double t1 = lctl_now();
    double mean = nll_sum / (double)n_scored;
    printf("tokens: %zu\npositions: %zu\nnll: %.6f\nperplexity: %.6f\n", n_ids, n_scored, mean,
           exp(mean));
    fprintf(stderr, "eval: %zu tokens in %.3f s (%.2f tokens/s), window %ld, batch %ld\n", n_ids,
            t1 - t0, (double)n_ids / (t1 - t0), n_ctx, n_batch);
    rc = 0;
done:
    if (f_top1 && fclose(f_top1) != 0 && rc == 0) {
        fprintf(stderr, "lctl eval: writing %s failed\n", top1_path);
        rc = 1;
    }
    if (f_logits && fclose(f_logits) != 0 && rc == 0) {
        fprintf(stderr, "lctl eval: writing %s failed\n", logits_path);
        rc = 1;
    }
    tm_free(buf);
    tm_free(ids);
    tm_ctx_free(ctx);
    tm_tokenizer_free(tok);
    tm_model_free(model);
    return rc;
}
