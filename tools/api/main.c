/*
 * main.c - tensor-mesh-api: the OpenAI-compatible HTTP + SSE server (docs/api.md).
 *
 * A thin main over tm_server: parses flags, checks the model file exists
 * (saying how to fetch the default one), installs SIGINT/SIGTERM handlers and
 * runs the service loop.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tm/tm_dtype.h"
#include "tm/tm_server.h"

#define DEFAULT_MODEL "models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"

static tm_server *g_srv; /* for the signal handler only */

static void on_signal(int sig) {
    (void)sig;
    if (g_srv != NULL)
        tm_server_stop(g_srv);
}

static void usage(FILE *f) {
    fprintf(f, "usage: tensor-mesh-api [--model PATH] [options]\n\n"
               "Serves MODEL over an OpenAI-compatible HTTP API: /v1/chat/completions,\n"
               "/v1/completions (streaming with SSE), /v1/responses (SSE and WebSocket),\n"
               "/v1/embeddings, /v1/models, /tokenize, /detokenize, /health, /metrics and a\n"
               "chat page at / (docs/api.md).\n\n"
               "options:\n"
               "  --model PATH         GGUF or llama2.c .bin (default " DEFAULT_MODEL ")\n"
               "  --tokenizer PATH     tokenizer file/folder (default: the GGUF's own)\n"
               "  --chat-template T    builtin name (chatml, llama2, llama3, zephyr) or a .jinja\n"
               "                       file (default: the model's; chatml when it has none)\n"
               "  --model-id NAME      name in /v1/models (default: the file name)\n"
               "  --embedding-model P  also serve /v1/embeddings with this embedding model (e.g.\n"
               "                       models/all-MiniLM-L6-v2, a Hugging Face BERT folder)\n"
               "  --embedding-model-id NAME  its name in /v1/models (default: the folder name)\n"
               "  --max-stored-responses N  finished /v1/responses kept for previous_response_id\n"
               "                       and GET /v1/responses/{id} (default 256)\n"
               "  --host ADDR          interface to bind (default 127.0.0.1)\n"
               "  --port N             TCP port (default 8080; 0 = any free port)\n"
               "  --api-key KEY        require 'Authorization: Bearer KEY' on /v1/* and /tokenize\n"
               "  --parallel N         concurrent sequences, one context each (default 4)\n"
               "  --ctx-size N         positions per sequence (default min(trained, 2048))\n"
               "  --max-batch N        tokens one scheduler step may process (default 128)\n"
               "  --max-queue N        waiting requests before 429 (default 64)\n"
               "  --threads N          compute threads (default: online CPUs)\n"
               "  --kv-type f16|f32    KV cache precision (default f16; f32 stores K and V\n"
               "                       unrounded, at twice the memory); also --kv-f16, --kv-f32\n"
               "  --act-type q8|q16|f32\n"
               "                       activation precision in matmuls (default q8; q16 ~1e-4\n"
               "                       error, matches a float reference; f32 exact, slowest)\n"
               "  --max-body-bytes N   request body cap, 413 above (default 8388608)\n"
               "  --quiet              no per-request log lines\n"
               "  -h, --help           this text\n");
}

static int parse_int(const char *opt, const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "tensor-mesh-api: %s needs an integer in [%ld, %ld], got '%s'\n", opt, lo,
                hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

int main(int argc, char **argv) {
    tm_server_params sp = tm_server_params_default();
    sp.model_path = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        long        v;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--quiet")) {
            sp.quiet = true;
            continue;
        }
        if (!strcmp(a, "--kv-f16") || !strcmp(a, "--kv-f32")) {
            sp.kv_dtype = !strcmp(a, "--kv-f16") ? TM_DTYPE_F16 : TM_DTYPE_F32;
            continue;
        }
        if (a[0] != '-' || val == NULL) {
            fprintf(stderr, "tensor-mesh-api: %s '%s'\n\n",
                    a[0] != '-' ? "unexpected argument" : "missing value for", a);
            usage(stderr);
            return 2;
        }
        i++;
#define INTOPT(name, lo, hi, dst)                                                                  \
    if (!strcmp(a, name)) {                                                                        \
        if (parse_int(a, val, lo, hi, &v) != 0)                                                    \
            return 2;                                                                              \
        dst = v;                                                                                   \
        continue;                                                                                  \
    }
        INTOPT("--port", 0, 65535, sp.port)
        INTOPT("--parallel", 1, 256, sp.n_parallel)
        INTOPT("--ctx-size", 0, 1 << 24, sp.n_ctx)
        INTOPT("--max-batch", 1, 1 << 16, sp.n_batch)
        INTOPT("--max-queue", 0, 1 << 20, sp.max_queue)
        INTOPT("--threads", 0, 512, sp.n_threads)
        INTOPT("--max-body-bytes", 1024, 1L << 30, sp.max_body_bytes)
        INTOPT("--max-stored-responses", 1, 1 << 20, sp.max_stored_responses)
#undef INTOPT
        if (!strcmp(a, "--model"))
            sp.model_path = val;
        else if (!strcmp(a, "--tokenizer"))
            sp.tokenizer_path = val;
        else if (!strcmp(a, "--chat-template"))
            sp.chat_template = val;
        else if (!strcmp(a, "--model-id"))
            sp.model_id = val;
        else if (!strcmp(a, "--embedding-model"))
            sp.embedding_model_path = val;
        else if (!strcmp(a, "--embedding-model-id"))
            sp.embedding_model_id = val;
        else if (!strcmp(a, "--host"))
            sp.host = val;
        else if (!strcmp(a, "--api-key"))
            sp.api_key = val;
        else if (!strcmp(a, "--kv-type")) {
            /* tm_dtype_from_name knows every GGUF type; the cache takes these two */
            tm_dtype t;
            if (tm_dtype_from_name(val, &t) != TM_OK || (t != TM_DTYPE_F16 && t != TM_DTYPE_F32)) {
                fprintf(stderr, "tensor-mesh-api: --kv-type needs f16 or f32, got '%s'\n", val);
                return 2;
            }
            sp.kv_dtype = t;
        } else if (!strcmp(a, "--act-type")) {
            if (tm_act_type_from_name(val, &sp.act_type) != TM_OK) {
                fprintf(stderr, "tensor-mesh-api: --act-type needs q8, q16 or f32, got '%s'\n",
                        val);
                return 2;
            }
        } else {
            fprintf(stderr, "tensor-mesh-api: unknown option '%s'\n\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (sp.model_path == NULL)
        sp.model_path = DEFAULT_MODEL;
    struct stat stbuf;
    if (stat(sp.model_path, &stbuf) != 0) {
        fprintf(stderr, "tensor-mesh-api: model %s not found\n", sp.model_path);
        if (!strcmp(sp.model_path, DEFAULT_MODEL))
            fprintf(stderr, "fetch the default model with: scripts/fetch_models.sh default\n");
        return 1;
    }
    if (sp.api_key == NULL)
        sp.api_key = getenv("TM_API_KEY");

    signal(SIGPIPE, SIG_IGN);
    tm_server *srv = NULL;
    if (tm_server_init(&sp, &srv) != TM_OK) {
        fprintf(stderr, "tensor-mesh-api: %s\n", tm_last_error());
        return 1;
    }
    g_srv = srv;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fprintf(stderr, "tensor-mesh-api: listening on http://%s:%d (model %s loading)\n",
            sp.host ? sp.host : "127.0.0.1", tm_server_port(srv), sp.model_path);
    tm_status st = tm_server_run(srv);
    if (st != TM_OK)
        fprintf(stderr, "tensor-mesh-api: %s\n", tm_last_error());
    g_srv = NULL;
    tm_server_free(srv);
    return st == TM_OK ? 0 : 1;
}
