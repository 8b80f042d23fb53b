/* lctl.h - subcommand table shared by the lctl mains. Each returns the exit code:
 * 0 success, 1 runtime failure (bad file...), 2 usage error. */
#ifndef LCTL_H
#define LCTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_dtype.h"
#include "tm/tm_model.h"

typedef struct lctl_cmd {
    const char *name;
    const char *help;
    int (*fn)(int argc, char **argv); /* argv[0] is the subcommand name */
} lctl_cmd;

int lctl_inspect(int argc, char **argv);
int lctl_tokenize(int argc, char **argv);
int lctl_detokenize(int argc, char **argv);
int lctl_template(int argc, char **argv);
int lctl_run(int argc, char **argv);
int lctl_chat(int argc, char **argv);
int lctl_embed(int argc, char **argv);
int lctl_eval(int argc, char **argv);
int lctl_bench(int argc, char **argv);
int lctl_quantize(int argc, char **argv);
int lctl_devices(int argc, char **argv);

/* args.c: seconds on a monotonic clock; a number in [lo, hi] (integer: no fraction),
 * printing "cmd: opt needs ..." and returning -1 when s is not one; token ids separated
 * by spaces or commas into a new array (caller frees with tm_free, also on failure). */
double lctl_now(void);
int    lctl_parse_num(const char *cmd, const char *opt, const char *s, double lo, double hi,
                      bool integer, double *out);
int    lctl_parse_ids(const char *cmd, const char *what, const char *s, int32_t **ids, size_t *n);

/* The default model (scripts/fetch_models.sh default puts it there), relative to the
 * working directory; $TM_DEFAULT_MODEL overrides it. */
#define LCTL_DEFAULT_MODEL "models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"

/* args.c: the KV cache options of the commands that create a context: "--kv-type f16|f32"
 * and its aliases "--kv-f16" / "--kv-f32" (the default: tm_ctx_params_default).
 * a is the option, val the next argument or NULL. Returns how many arguments it took
 * (1 or 2) after storing the type in *kv, 0 when a is not a KV option, or -1 after
 * printing "cmd: --kv-type needs f16 or f32, got 'x'" (a usage error: exit code 2). */
int lctl_parse_kv_option(const char *cmd, const char *a, const char *val, tm_dtype *kv);

/* args.c: the matmul activation option of the same commands: "--act-type q8|q16|f32" (any
 * case) and its alias "--exact" (= f32; the default: tm_ctx_params_default). Same contract
 * as lctl_parse_kv_option: returns 1 or 2 after storing *act, 0 when a is not this option,
 * or -1 after printing "cmd: --act-type needs q8, q16 or f32, got 'x'" (exit code 2). */
int lctl_parse_act_option(const char *cmd, const char *a, const char *val, tm_act_type *act);

/* The default model's path, or NULL after printing (as prog) how to fetch it. */
const char *lctl_default_model(const char *prog);

/* Reads a large model file or folder through the page cache with a progress bar on
 * stderr (only when stderr is a terminal); see progress.c. */
void lctl_model_prefetch(const char *path);

#endif
