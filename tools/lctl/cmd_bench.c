/*
 * cmd_bench.c - `lctl bench MODEL -t T -p NP -n NG`: CPU prompt-processing and
 * generation speed, measured as llama.cpp's llama-bench measures them so the
 * two can be compared side by side (bench/cpu/run.sh):
 * - pp: NP prompt tokens decoded in one batch into an empty context;
 * - tg: NG tokens decoded one at a time into an empty context;
 * - token ids are fixed pseudo-random values (speed does not depend on them);
 * - one warm-up run of each, then -r repetitions; the median is reported.
 * The last line of stdout is exactly `prompt_tps=<float> gen_tps=<float>`.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lctl.h"
#include "tm/tm_model.h"

static void bench_usage(FILE *f) {
    fprintf(f, "usage: lctl bench MODEL [-t T] [-p NP] [-n NG] [-r R] [--kv-type f16|f32]\n"
               "                  [--act-type q8|q16|f32]\n\n"
               "Measures CPU prompt processing (NP tokens in one batch) and generation (NG\n"
               "tokens, one per step) on MODEL, each from an empty context, as llama-bench\n"
               "does. Prints the median of R repetitions after one warm-up run, then the line\n"
               "'prompt_tps=<float> gen_tps=<float>'.\n\n"
               "options:\n"
               "  -t, --threads T      compute threads (default: online CPUs)\n"
               "  -p, --n-prompt NP    prompt tokens (default 128; 0 = skip)\n"
               "  -n, --n-gen NG       generated tokens (default 64; 0 = skip)\n"
               "  -r, --repetitions R  timed repetitions (default 3)\n"
               "  --kv-type f16|f32    KV cache precision (default f16, as llama-bench's default\n"
               "                       -ctk/-ctv f16); also --kv-f16, --kv-f32\n"
               "  --act-type q8|q16|f32\n"
               "                       activation precision in matmuls (default q8, as\n"
               "                       llama.cpp; q16 ~1e-4 error, matches a float reference;\n"
               "                       f32 exact, slowest); also --exact (= f32)\n"
               "  -h, --help           this text\n\n"
               "TM_CPU_REF=1 in the environment selects the plain C reference dot kernels.\n");
}

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int bench_parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "lctl bench: %s needs an integer in [%ld, %ld], got '%s'\n", opt, lo, hi,
                s);
        return -1;
    }
    *out = v;
    return 0;
}

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* One run: tokens/s of decoding ids[0..n) in batches of `batch` from an empty context. */
static tm_status bench_run(tm_ctx *ctx, const int32_t *ids, int32_t n, int32_t batch, double *tps) {
    tm_ctx_clear(ctx);
    double t0 = bench_now();
    for (int32_t i = 0; i < n; i += batch) {
        int32_t   m = n - i < batch ? n - i : batch;
        tm_status st = tm_ctx_decode(ctx, ids + i, m);
        if (st != TM_OK)
            return st;
    }
    *tps = (double)n / (bench_now() - t0);
    return TM_OK;
}

int lctl_bench(int argc, char **argv) {
    const char *model_path = NULL;
    long        n_threads = 0, n_prompt = 128, n_gen = 64, reps = 3;
    tm_dtype    kv = tm_ctx_params_default().kv_dtype;
    tm_act_type act = tm_ctx_params_default().act_type;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        long       *dst = NULL, lo = 0, hi = 1 << 16;
        int         n_opt = lctl_parse_kv_option("lctl bench", a, val, &kv);
        if (n_opt == 0)
            n_opt = lctl_parse_act_option("lctl bench", a, val, &act);
        if (n_opt != 0) {
            if (n_opt < 0)
                return 2;
            i += n_opt - 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            bench_usage(stdout);
            return 0;
        } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
            dst = &n_threads, lo = 1, hi = 512;
        } else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) {
            dst = &n_prompt;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) {
            dst = &n_gen;
        } else if (!strcmp(a, "-r") || !strcmp(a, "--repetitions")) {
            dst = &reps, lo = 1, hi = 1000;
        } else if (a[0] == '-') {
            fprintf(stderr, "lctl bench: unknown option '%s'\n\n", a);
            bench_usage(stderr);
            return 2;
        } else if (model_path == NULL) {
            model_path = a;
            continue;
        } else {
            fprintf(stderr, "lctl bench: unexpected argument '%s'\n", a);
            return 2;
        }
        if (val == NULL) {
            fprintf(stderr, "lctl bench: %s needs a value\n", a);
            return 2;
        }
        if (bench_parse_int(a, val, lo, hi, dst) != 0)
            return 2;
        i++;
    }
    if (model_path == NULL) {
        bench_usage(stderr);
        return 2;
    }

    int       rc = 1;
    tm_model *model = NULL;
    tm_ctx   *ctx = NULL;
    int32_t  *ids = NULL;
    double   *t_pp = NULL, *t_tg = NULL;

    tm_model_params mp = tm_model_params_default();
    mp.path = model_path;
    if (tm_model_load(&mp, &model) != TM_OK) {
        fprintf(stderr, "lctl bench: %s\n", tm_last_error());
        goto done;
    }
    const tm_hparams *hp = tm_model_get_hparams(model);
    const long        n_max = n_prompt > n_gen ? n_prompt : n_gen;
    tm_ctx_params     cp = tm_ctx_params_default();
    cp.n_threads = (int32_t)n_threads;
    cp.n_ctx = (int32_t)(n_max < 16 ? 16 : n_max);
    cp.n_batch = (int32_t)(n_prompt > 0 ? n_prompt : 1);
    cp.kv_dtype = kv;
    cp.act_type = act;
    if (tm_ctx_init(model, &cp, &ctx) != TM_OK) {
        fprintf(stderr, "lctl bench: %s\n", tm_last_error());
        goto done;
    }
    ids = tm_calloc((size_t)n_max + 1, sizeof *ids);
    t_pp = tm_calloc((size_t)reps, sizeof *t_pp);
    t_tg = tm_calloc((size_t)reps, sizeof *t_tg);
    if (ids == NULL || t_pp == NULL || t_tg == NULL) {
        fprintf(stderr, "lctl bench: out of memory\n");
        goto done;
    }
    uint32_t s = 0x5eedu;
    for (long i = 0; i < n_max; i++) {
        s = s * 1664525u + 1013904223u;
        ids[i] = (int32_t)((s >> 8) % (uint32_t)hp->n_vocab);
    }
    printf("model: %s (%s, %d layers, n_embd %d, vocab %d)\n", model_path, tm_model_arch(model),
           hp->n_layer, hp->n_embd, hp->n_vocab);
    if (n_threads > 0)
        printf("threads: %ld, repetitions: %ld\n", n_threads, reps);
    else
        printf("threads: online CPUs, repetitions: %ld\n", reps);
    printf("kv cache: %s\n", tm_dtype_name(kv));
    printf("activations: %s\n", tm_act_type_name(act));
    printf("%-8s %8s %14s %14s\n", "test", "tokens", "tokens/s", "ms/token");
    double pp = 0, tg = 0, tmp;
    for (int phase = 0; phase < 2; phase++) {
        const long n = phase == 0 ? n_prompt : n_gen;
        double    *t = phase == 0 ? t_pp : t_tg;
        if (n == 0)
            continue;
        const int32_t batch = phase == 0 ? (int32_t)n : 1;
        if (bench_run(ctx, ids, (int32_t)n, batch, &tmp) != TM_OK) { /* warm-up */
            fprintf(stderr, "lctl bench: %s\n", tm_last_error());
            goto done;
        }
        for (long r = 0; r < reps; r++)
            if (bench_run(ctx, ids, (int32_t)n, batch, &t[r]) != TM_OK) {
                fprintf(stderr, "lctl bench: %s\n", tm_last_error());
                goto done;
            }
        const double med = bench_median(t, (int)reps);
        printf("%-8s %8ld %14.2f %14.2f\n", phase == 0 ? "pp" : "tg", n, med, 1000.0 / med);
        if (phase == 0)
            pp = med;
        else
            tg = med;
    }
    printf("prompt_tps=%.3f gen_tps=%.3f\n", pp, tg);
    rc = 0;
done:
    tm_free(ids);
    tm_free(t_pp);
    tm_free(t_tg);
    tm_ctx_free(ctx);
    tm_model_free(model);
    return rc;
}
