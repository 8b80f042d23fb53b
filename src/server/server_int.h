/*
 * server_int.h - private to src/server: the service loop's transaction and
 * server structs, shared by http.c (HTTP routing and the chat/completions
 * glue), embeddings.c, responses.c and ws.c.
 *
 * Threads: everything here belongs to the lws service thread unless a field
 * says otherwise (the embedding queue is guarded by emb_mu).
 */
#ifndef TM_SERVER_INT_H
#define TM_SERVER_INT_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <libwebsockets.h>

#include "tm/tm_chat_template.h"
#include "tm/tm_model.h"
#include "tm/tm_sched.h"
#include "tm/tm_server.h"
#include "tm/tm_tokenizer.h"

typedef struct tm__emb_job    tm__emb_job;    /* embeddings.c */
typedef struct tm__resp       tm__resp;       /* responses.c */
typedef struct tm__resp_store tm__resp_store; /* responses.c */

enum { LOAD_LOADING = 0, LOAD_READY = 1, LOAD_FAILED = 2 };

enum {
    R_MODELS = 0,
    R_CHAT,
    R_COMPLETIONS,
    R_TOKENIZE,
    R_DETOKENIZE,
    R_HEALTH,
    R_METRICS,
    R_OTHER,
    R_EMBEDDINGS,
    R_RESPONSES,
    R_PAGE,
};

#define SRV_WRITE_CHUNK 65536

typedef struct txn {
    struct txn  *next, *prev; /* srv->active, while generation requests are live */
    bool         in_active;
    struct lws  *wsi;
    int          route;
    bool         is_post;
    tm_api_error pending_err; /* found before the body arrived (401/404/405) */
    bool         has_pending_err;
    char         resp_get_id[64]; /* GET /v1/responses/{id} */
    char        *body;
    size_t       body_len, body_cap;
    bool         body_refused; /* 413 sent; ignore the rest */

    /* response */
    int         status;
    const char *ctype;
    bool        retry_after;
    bool        responding; /* status chosen, headers queued */
    bool        headers_sent;
    bool        streaming; /* SSE: no content-length, connection closes at the end */
    bool        final;     /* nothing more will be appended to out */
    bool        close_after;
    char       *out;
    size_t      out_len, out_cap, out_off;

    /* generation */
    tm_api_kind       kind;
    bool              include_usage;
    int32_t           n;
    tm_sched_req     *reqs[TM_API_MAX_N];
    char             *text[TM_API_MAX_N];
    size_t            text_len[TM_API_MAX_N], text_cap[TM_API_MAX_N];
    tm_finish         fin[TM_API_MAX_N];
    bool              role_sent[TM_API_MAX_N];
    int32_t           n_completion[TM_API_MAX_N];
    int32_t           n_prompt;
    int32_t           n_cached; /* prompt tokens from the prefix cache (choice 0's) */
    char             *echo;     /* completions with echo: the prompt text, sent before the output */
    size_t            echo_len;
    int32_t           logprobs; /* -1: off; else alternatives per token (top_logprobs / logprobs) */
    tm_sched_logprob *lp[TM_API_MAX_N]; /* non-streaming: every token's record */
    int32_t           n_lp[TM_API_MAX_N], lp_cap[TM_API_MAX_N];
    size_t            lp_off[TM_API_MAX_N];     /* completions: text_offset of the next token */
    bool              lp_started[TM_API_MAX_N]; /* streaming: a token's logprobs went out */
    bool              echo_lp;                  /* completions echo + logprobs: prompt records */
    int32_t           prompt_first;             /* the prompt's first token (logprob null) */
    tm_sched_logprob *plp[TM_API_MAX_N];        /* non-streaming echo_lp: prompt records, owned */
    int32_t           n_plp[TM_API_MAX_N];
    char              id[48];
    int64_t           created;
    double            t_start_s;

    tm__emb_job *emb;  /* /v1/embeddings: the job on the embedding worker (embeddings.c) */
    tm__resp    *resp; /* /v1/responses: response state (responses.c); owned */
    bool         ws;   /* a WebSocket connection at /v1/responses (ws.c): out holds
                          one event per line, each sent as one text frame */
} txn;

typedef struct pss {
    txn *t;
} pss;

struct tm_server {
    tm_server_params    p;
    char               *host, *api_key, *model_path, *tok_path, *tmpl_arg, *model_id;
    struct lws_context *lws;
    int32_t             port;
    atomic_bool         stop;

    pthread_t  loader;
    bool       loader_started;
    atomic_int load_state; /* release store by the loader, acquire loads elsewhere */
    char       load_error[512];
    bool       announced;

    /* engine: written by the loader before LOAD_READY, then read-only */
    tm_model               *model;
    tm_tokenizer           *tok;
    tm_chat_template       *tmpl;
    tm_chat_template_source tsrc;
    char                   *bos_text, *eos_text;
    tm_sched               *sched;
    int32_t                 n_ctx;
    int32_t                 n_vocab;

    /* embedding model (embeddings.c): loaded before LOAD_READY, then used only
       by the embedding worker thread */
    char           *emb_path, *emb_id;
    tm_model       *emb_model;
    tm_tokenizer   *emb_tok;
    tm_ctx         *emb_ctx;
    int32_t         emb_n_out, emb_n_ctx, emb_n_vocab;
    pthread_t       emb_thread;
    bool            emb_started;
    pthread_mutex_t emb_mu; /* guards the job queue, each job's state and emb_stop */
    pthread_cond_t  emb_cv;
    tm__emb_job    *emb_head, *emb_tail;
    bool            emb_stop;

    /* finished responses for previous_response_id and GET (responses.c; service thread) */
    tm__resp_store *store;

    /* service thread only */
    txn          *active;
    uint64_t      requests[TM_METRICS_N_ROUTES][TM_METRICS_N_CODES];
    uint64_t      rejected_long;
    uint64_t      seed_state;
    uint64_t      next_id;
    double        t_start_s;
    int64_t       created;
    unsigned char scratch[LWS_PRE + SRV_WRITE_CHUNK];
};

/* ---- openai.c: parameters that tm_api_request does not carry ---- */
#define TM__API_MAX_BIAS 300 /* logit_bias entries (OpenAI's limit) */

typedef struct tm__api_ext {
    int32_t n_bias;
    int32_t bias_id[TM__API_MAX_BIAS];
    float   bias[TM__API_MAX_BIAS];
    int32_t logprobs; /* -1: off; chat: top_logprobs (0..20); completions: logprobs (0..5) */
} tm__api_ext;

/* Reads logit_bias, logprobs and top_logprobs from a body that
 * tm_api_request_parse accepted; token ids are checked against n_vocab. */
tm_status tm__api_parse_ext(tm_api_kind kind, const char *body, size_t len, int32_t n_vocab,
                            tm__api_ext *ext, tm_api_error *err);

/* One choice's log-probability records, for serialization (tokens' text from tok). */
typedef struct tm__api_lp {
    const tm_sched_logprob *rec;
    int32_t                 n;
    size_t                 *text_offset; /* completions: running offset, advanced */
    bool                    first;       /* rec[0] is the choice's first token: its text is
                                            decoded as the start of a text (a SentencePiece
                                            "▁upon" gives "upon"), as the answer's text is */
    /* completions with echo and logprobs: the prompt's tokens come before rec, each
     * token's text aligned to the echoed text (its offset is where it starts there),
     * then rec's offsets start at echo_len. The first prompt token (prompt_first) has
     * null logprob and top_logprobs: nothing precedes it. NULL echo: no prompt part. */
    const char             *echo; /* borrowed, echo_len bytes */
    size_t                  echo_len;
    int32_t                 prompt_first;
    const tm_sched_logprob *prompt; /* [n_prompt]: prompt tokens 1 .. */
    int32_t                 n_prompt;
} tm__api_lp;

/* tm_api_response_json / tm_api_chunk_json with choices[].logprobs filled from
 * lp ([n_choices], or one for the chunk; NULL: "logprobs": null). */
char *tm__api_response_json_lp(tm_api_kind kind, const char *id, int64_t created, const char *model,
                               const tm_api_choice *choices, int32_t n_choices,
                               const tm_api_usage *usage, const tm__api_lp *lp,
                               const tm_tokenizer *tok);
char *tm__api_chunk_json_lp(tm_api_kind kind, const char *id, int64_t created, const char *model,
                            int32_t index, bool role, const char *text, size_t len,
                            tm_finish finish, bool with_usage_null, const tm__api_lp *lp,
                            const tm_tokenizer *tok);

/* true when model names the served generation model; otherwise err is the OpenAI
 * error (400 model_not_supported for the embedding model, 404 model_not_found). */
bool tm__srv_check_model(const tm_server *srv, const char *model, tm_api_error *err);

/* 'Authorization: Bearer KEY' matches --api-key (constant time); true without a key. Used
 * by HTTP routes and the WebSocket upgrade. */
bool tm__srv_auth_ok(tm_server *srv, struct lws *wsi);

/* ---- http.c ---- */
double    tm__srv_now(void);
bool      tm__srv_ready(tm_server *srv);
uint64_t  tm__srv_splitmix(uint64_t *x);
void      tm__srv_count(tm_server *srv, int route, int status);
void      tm__txn_unlink(tm_server *srv, txn *t);
void      tm__txn_link(tm_server *srv, txn *t); /* onto srv->active */
void      tm__txn_free(tm_server *srv, txn *t);
bool      tm__txn_append(txn *t, const char *s, size_t n);
bool      tm__txn_sse(txn *t, char *json /* taken */);
void      tm__txn_respond(tm_server *srv, txn *t, int status, const char *ctype, const char *body,
                          size_t len);
void      tm__txn_respond_json(tm_server *srv, txn *t, int status, char *json /* taken */);
void      tm__txn_respond_error(tm_server *srv, txn *t, const tm_api_error *e);
tm_status tm__srv_prompt_ids(tm_server *srv, const tm_api_request *rq, int32_t **ids, size_t *n,
                             tm_api_error *err);
/* Submits rq's n sequences for t (prompt from rq; ext: logit bias and logprobs,
 * or NULL); on failure *err is set. */
tm_status tm__srv_submit(tm_server *srv, txn *t, const tm_api_request *rq, const tm__api_ext *ext,
                         tm_api_error *err);

/* ---- embeddings.c ---- */
tm_status tm__emb_load(tm_server *srv);          /* loader thread; no-op without emb_path */
void      tm__emb_free(tm_server *srv);          /* stops the worker, frees the model */
void      tm__emb_start(tm_server *srv, txn *t); /* POST /v1/embeddings */
void      tm__emb_pump(tm_server *srv, txn *t);  /* the job finished? respond */
void      tm__emb_job_drop(tm_server *srv, tm__emb_job *j); /* txn gone */

/* ---- responses.c ---- */
tm_status tm__resp_store_init(int32_t cap, tm__resp_store **out);
void      tm__resp_store_free(tm__resp_store *s);
void      tm__resp_free(tm__resp *r);
/* POST /v1/responses (HTTP) or a response.create message (ws): body is the JSON request. */
void tm__resp_start(tm_server *srv, txn *t, const char *body, size_t len);
void tm__resp_get(tm_server *srv, txn *t, const char *id); /* GET /v1/responses/{id} */
bool tm__resp_pump(tm_server *srv, txn *t);                /* true when there is news to write */
void tm__resp_cancel(tm_server *srv, txn *t);              /* ws response.cancel */

/* ---- ws.c ---- */
int tm__ws_callback(tm_server *srv, struct lws *wsi, pss *ps, enum lws_callback_reasons reason,
                    void *in, size_t len);
/* Appends one event (taken) to a ws txn's outgoing queue and asks for WRITEABLE. */
bool tm__ws_send(txn *t, char *json);

/* ---- page.c ---- */
extern const char   tm__chat_page_html[];
extern const size_t tm__chat_page_len;

#endif /* TM_SERVER_INT_H */
