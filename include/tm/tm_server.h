/*
 * tm_server.h - tensor-mesh-api: an OpenAI-compatible HTTP + SSE server over
 * the scheduler (docs/api.md lists the endpoints and what is not done yet).
 *
 *     tm_server_params sp = tm_server_params_default();
 *     sp.model_path = "models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf";
 *     sp.port = 8080;
 *     tm_server *srv = NULL;
 *     if (tm_server_init(&sp, &srv) != TM_OK) die(tm_last_error()); // bound, model loading
 *     tm_server_run(srv);          // serves until tm_server_stop(); /health is 503 until loaded
 *     tm_server_free(srv);
 *
 * Threads: tm_server_run runs the libwebsockets service loop on the calling
 * thread; it only parses and serializes. The model loads on a helper thread
 * and the scheduler thread (tm_sched.h) owns every context. tm_server_stop may
 * be called from any thread or a signal handler. The tm_api_* building blocks
 * below are pure functions of their arguments and may run on any thread.
 */
#ifndef TM_SERVER_H
#define TM_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_sampler.h"
#include "tm/tm_sched.h"
#include "tm/tm_status.h"

typedef struct tm_server tm_server; /* opaque */

typedef struct tm_server_params {
    const char *host;                 /* interface to bind; default "127.0.0.1" */
    int32_t     port;                 /* default 8080; 0 = any free port (see tm_server_port) */
    const char *api_key;              /* NULL: no auth; else "Authorization: Bearer KEY" required */
    const char *model_path;           /* GGUF or llama2.c .bin; required; copied */
    const char *tokenizer_path;       /* NULL: the GGUF's own tokenizer; copied */
    const char *chat_template;        /* NULL: the model's; else a builtin name or a file; copied */
    const char *model_id;             /* name in /v1/models; NULL: file name without .gguf */
    const char *embedding_model_path; /* NULL: no /v1/embeddings; else an embedding model
                                         (e.g. a BERT HF folder); copied */
    const char *embedding_model_id;   /* NULL: the folder/file name */
    int32_t     max_stored_responses; /* finished /v1/responses kept for previous_response_id
                                         and GET; default 256 (oldest dropped first) */
    int32_t  n_parallel;              /* concurrent sequences (contexts); default 4 */
    int32_t  n_ctx;                   /* positions per sequence; 0 = min(n_ctx_train, 2048) */
    int32_t  n_batch;                 /* token budget per scheduler step; default 128 */
    int32_t  n_threads;               /* compute threads; 0 = online CPUs */
    tm_dtype kv_dtype;                /* KV cache of every context (generation, embeddings):
                                         TM_DTYPE_F16 (default) or TM_DTYPE_F32 */
    tm_act_type act_type;             /* matmul activation precision of every context;
                                         default TM_ACT_DEFAULT (tm_model.h) */
    int32_t max_queue;                /* waiting requests before 429; default 64 */
    size_t  max_body_bytes;           /* request body cap (413 above); default 8 MiB */
    bool    quiet;                    /* no per-request log lines */
} tm_server_params;

tm_server_params tm_server_params_default(void);

/* Binds the listening socket and starts loading the model in the background.
 * *out stays NULL on failure (e.g. the port is taken). */
tm_status tm_server_init(const tm_server_params *params, tm_server **out);
/* Serves until tm_server_stop(). Returns the model-load error if loading failed. */
tm_status tm_server_run(tm_server *srv);
void      tm_server_stop(tm_server *srv); /* any thread, async-signal-safe enough: one write */
int32_t   tm_server_port(const tm_server *srv);
void      tm_server_free(tm_server *srv); /* NULL is a no-op */

/* ---- building blocks (src/server/openai.c, sse.c, metrics.c) -------------------
 * Exposed for the service loop, the unit tests and the fuzz harness. */

typedef enum tm_api_kind {
    TM_API_CHAT = 0,       /* POST /v1/chat/completions */
    TM_API_COMPLETION = 1, /* POST /v1/completions */
    TM_API_RESPONSES = 2,  /* POST /v1/responses: a chat request underneath (responses.c) */
} tm_api_kind;

#define TM_API_MAX_N 8 /* choices per request (n) */

/* A validated generation request; every string is owned (tm_api_request_free). */
typedef struct tm_api_request {
    tm_api_kind       kind;
    char             *model;         /* as sent */
    char             *messages_json; /* chat: the messages array, content parts joined */
    char             *prompt;        /* completion: the prompt string (UTF-8), or NULL */
    size_t            prompt_len;
    int32_t          *prompt_ids; /* completion: the prompt as token ids, or NULL */
    int32_t           n_prompt_ids;
    bool              stream;
    bool              include_usage; /* stream_options.include_usage */
    int32_t           n;             /* choices, 1..TM_API_MAX_N */
    int32_t           max_tokens;    /* -1: not given (until EOS or context full); 0: echo only */
    tm_sampler_params sampler;       /* OpenAI defaults: temperature 1, top_p 1, no top_k */
    bool              has_seed;
    bool              add_generation_prompt; /* chat; default true */
    bool              ignore_eos;            /* vLLM extension: generate past EOS */
    bool              echo;                  /* completions: the prompt precedes the text */
    char             *stop[TM_SCHED_MAX_STOP];
    int32_t           n_stop;
} tm_api_request;

/* An error in OpenAI's shape: {"error":{"message","type","param","code"}}. */
typedef struct tm_api_error {
    int  http_status; /* 400, 401, 404, 413, 429, 500, 503 */
    char type[32];    /* "invalid_request_error", "authentication_error", ... */
    char param[64];   /* "" -> null */
    char code[48];    /* "" -> null */
    char message[512];
} tm_api_error;

/* Fills *err and returns TM_ERR_INVALID (status 400 unless said otherwise). */
tm_status tm_api_error_set(tm_api_error *err, int http_status, const char *type, const char *param,
                           const char *code, const char *fmt, ...) TM_PRINTF_FMT(6, 7);
/* The JSON body of err; caller frees with tm_free(). NULL on out-of-memory. */
char *tm_api_error_json(const tm_api_error *err);

/* Parses and validates a request body (any bytes: invalid JSON or UTF-8, wrong
 * types, missing fields and out-of-range values give TM_ERR_INVALID and *err).
 * Unknown fields are ignored, as OpenAI-compatible servers do. On success the
 * caller frees *out with tm_api_request_free(). */
tm_status tm_api_request_parse(tm_api_kind kind, const char *body, size_t len, tm_api_request *out,
                               tm_api_error *err);
void      tm_api_request_free(tm_api_request *r); /* zeroed is a no-op */

/* One finished (or streamed) choice, for serialization. */
typedef struct tm_api_choice {
    const char *text; /* UTF-8; may be NULL for "" */
    size_t      len;
    tm_finish   finish;
} tm_api_choice;

typedef struct tm_api_usage {
    int32_t prompt_tokens;
    int32_t completion_tokens;
    int32_t cached_tokens; /* of prompt_tokens, served from the prefix cache */
} tm_api_usage;

/* "stop", "length" or NULL (still running; cancelled and error map to NULL too). */
const char *tm_api_finish_str(tm_finish f);

/* Full non-streaming response body (chat.completion or text_completion). */
char *tm_api_response_json(tm_api_kind kind, const char *id, int64_t created, const char *model,
                           const tm_api_choice *choices, int32_t n_choices,
                           const tm_api_usage *usage);
/* One streaming chunk for choice `index`: role (chat, first chunk), text delta
 * and/or finish_reason. with_usage_null adds "usage":null (include_usage). */
char *tm_api_chunk_json(tm_api_kind kind, const char *id, int64_t created, const char *model,
                        int32_t index, bool role, const char *text, size_t len, tm_finish finish,
                        bool with_usage_null);
/* The final usage chunk: "choices":[] and "usage":{...}. */
char *tm_api_usage_chunk_json(tm_api_kind kind, const char *id, int64_t created, const char *model,
                              const tm_api_usage *usage);

/* ---- SSE (sse.c) -------------------------------------------------------------- */
/* Appends "data: <json>\n\n" to a growable buffer; false on out-of-memory. */
bool tm_sse_append_data(char **buf, size_t *len, size_t *cap, const char *json, size_t json_len);
/* Appends "data: [DONE]\n\n". */
bool tm_sse_append_done(char **buf, size_t *len, size_t *cap);
/* Appends "event: <event>\ndata: <json>\n\n" (the Responses API's framing). */
bool tm_sse_append_event(char **buf, size_t *len, size_t *cap, const char *event, const char *json,
                         size_t json_len);

/* ---- metrics (metrics.c) ------------------------------------------------------ */
#define TM_METRICS_N_ROUTES 11
#define TM_METRICS_N_CODES 10
extern const char *const tm_metrics_route_names[TM_METRICS_N_ROUTES]; /* "/v1/models", ... */
extern const int         tm_metrics_codes[TM_METRICS_N_CODES];        /* 200, 400, ... */

typedef struct tm_metrics_input {
    const char    *model_id;
    bool           loaded;
    tm_sched_stats sched;                                             /* zeroed while loading */
    uint64_t       requests[TM_METRICS_N_ROUTES][TM_METRICS_N_CODES]; /* by route and status */
    uint64_t       prompt_tokens_rejected; /* prompts refused for length */
    double         uptime_s;
} tm_metrics_input;

/* Prometheus text exposition (version 0.0.4) of in; caller frees with tm_free(). */
char *tm_metrics_render(const tm_metrics_input *in);

#endif /* TM_SERVER_H */
