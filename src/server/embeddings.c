/*
 * embeddings.c - POST /v1/embeddings over an embedding model (--embedding-model,
 * e.g. the all-MiniLM-L6-v2 Hugging Face folder): OpenAI's request and response
 * shapes (input as a string, strings, token ids or arrays of token ids;
 * encoding_format float or base64; usage.prompt_tokens).
 *
 * DESIGN
 * ------
 * The embedding model has its own tm_ctx, which only the embedding worker
 * thread touches (a tm_ctx is one thread at a time). The service thread
 * validates the body and queues a job; the worker tokenizes, embeds every
 * input, serializes the whole response (or an error) into the job, marks it
 * done under emb_mu and wakes the loop, which answers on the service thread.
 * A job whose connection closed first is marked dropped and freed by whichever
 * side sees it last (both under emb_mu). The generation scheduler is not
 * involved: an embedding never waits behind a long completion.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "server_int.h"

#define EMB_MAX_INPUTS 2048

struct tm__emb_job {
    tm__emb_job *next;  /* queue link, under emb_mu */
    size_t       n_in;  /* inputs */
    char       **text;  /* [n_in] UTF-8 text or NULL when ids are given; owned */
    size_t      *tlen;  /* [n_in] */
    int32_t    **ids;   /* [n_in] token ids (or NULL); owned */
    int32_t     *n_ids; /* [n_in] */
    bool         base64;
    /* result, written by the worker before done */
    char        *json;          /* 200 body */
    tm_api_error err;           /* when json == NULL */
    bool         done, dropped; /* under emb_mu */
};

static void emb_job_free(tm__emb_job *j) {
    if (j == NULL)
        return;
    for (size_t i = 0; i < j->n_in; i++) {
        if (j->text)
            tm_free(j->text[i]);
        if (j->ids)
            tm_free(j->ids[i]);
    }
    tm_free(j->text);
    tm_free(j->tlen);
    tm_free(j->ids);
    tm_free(j->n_ids);
    tm_free(j->json);
    tm_free(j);
}

/* ---- worker ---------------------------------------------------------------------- */

static char *emb_base64(const float *v, int32_t n) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t            nb = (size_t)n * sizeof(float);
    char             *o = tm_malloc((nb + 2) / 3 * 4 + 1);
    if (o == NULL)
        return NULL;
    unsigned char *b = tm_malloc(nb);
    if (b == NULL) {
        tm_free(o);
        return NULL;
    }
    for (int32_t i = 0; i < n; i++) { /* little-endian float32, as numpy's "<f4" */
        uint32_t u;
        memcpy(&u, &v[i], 4);
        for (int k = 0; k < 4; k++)
            b[(size_t)i * 4 + (size_t)k] = (unsigned char)(u >> (8 * k));
    }
    size_t j = 0;
    for (size_t i = 0; i < nb; i += 3) {
        uint32_t x = (uint32_t)b[i] << 16;
        if (i + 1 < nb)
            x |= (uint32_t)b[i + 1] << 8;
        if (i + 2 < nb)
            x |= b[i + 2];
        o[j++] = tab[(x >> 18) & 63];
        o[j++] = tab[(x >> 12) & 63];
        o[j++] = i + 1 < nb ? tab[(x >> 6) & 63] : '=';
        o[j++] = i + 2 < nb ? tab[x & 63] : '=';
    }
    o[j] = '\0';
    tm_free(b);
    return o;
}

/* Runs one job on the worker thread: fills j->json or j->err. */
static void emb_run(tm_server *srv, tm__emb_job *j) {
    float  *v = tm_calloc((size_t)srv->emb_n_out, sizeof *v);
    json_t *data = json_array();
    int64_t n_tokens = 0;
    if (v == NULL || data == NULL) {
        tm_api_error_set(&j->err, 500, "server_error", NULL, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < j->n_in; i++) {
        int32_t *ids = j->ids[i];
        size_t   n = (size_t)j->n_ids[i];
        int32_t *own = NULL;
        if (ids == NULL) {
            /* [CLS] text [SEP], as sentence-transformers does; text stays literal. */
            if (tm_tokenizer_encode(srv->emb_tok, j->text[i], j->tlen[i], true, false, &own, &n) !=
                TM_OK) {
                tm_api_error_set(&j->err, 400, NULL, "input", NULL,
                                 "cannot tokenize input[%zu]: %s", i, tm_last_error());
                goto done;
            }
            ids = own;
        }
        if (n == 0 || n > (size_t)srv->emb_n_ctx) {
            tm_free(own);
            tm_api_error_set(&j->err, 400, NULL, "input", "context_length_exceeded",
                             "input[%zu] has %zu tokens; the model '%s' takes 1 to %d tokens", i, n,
                             srv->emb_id, srv->emb_n_ctx);
            goto done;
        }
        tm_status st =
            tm_ctx_embed(srv->emb_ctx, srv->emb_model, ids, (int32_t)n, v, srv->emb_n_out);
        tm_free(own);
        if (st != TM_OK) {
            tm_api_error_set(&j->err, 500, "server_error", NULL, NULL, "embedding failed: %s",
                             tm_last_error());
            goto done;
        }
        n_tokens += (int64_t)n;
        json_t *e = json_object();
        json_object_set_new(e, "object", json_string("embedding"));
        json_object_set_new(e, "index", json_integer((json_int_t)i));
        if (j->base64) {
            char *b = emb_base64(v, srv->emb_n_out);
            json_object_set_new(e, "embedding", b ? json_string(b) : json_null());
            tm_free(b);
        } else {
            json_t *arr = json_array();
            for (int32_t k = 0; k < srv->emb_n_out; k++)
                json_array_append_new(arr, json_real((double)v[k]));
            json_object_set_new(e, "embedding", arr);
        }
        json_array_append_new(data, e);
    }
    json_t *root = json_object();
    json_object_set_new(root, "object", json_string("list"));
    json_object_set_new(root, "data", data);
    data = NULL;
    json_object_set_new(root, "model", json_string(srv->emb_id));
    json_t *u = json_object();
    json_object_set_new(u, "prompt_tokens", json_integer(n_tokens));
    json_object_set_new(u, "total_tokens", json_integer(n_tokens));
    json_object_set_new(root, "usage", u);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    j->json = s ? tm_strdup(s) : NULL;
    free(s);
    if (j->json == NULL)
        tm_api_error_set(&j->err, 500, "server_error", NULL, NULL, "out of memory");
done:
    json_decref(data);
    tm_free(v);
}

static void *emb_worker_main(void *arg) {
    tm_server *srv = arg;
    pthread_mutex_lock(&srv->emb_mu);
    for (;;) {
        while (srv->emb_head == NULL && !srv->emb_stop)
            pthread_cond_wait(&srv->emb_cv, &srv->emb_mu);
        if (srv->emb_stop)
            break;
        tm__emb_job *j = srv->emb_head;
        srv->emb_head = j->next;
        if (srv->emb_head == NULL)
            srv->emb_tail = NULL;
        bool dropped = j->dropped;
        pthread_mutex_unlock(&srv->emb_mu);
        if (!dropped)
            emb_run(srv, j);
        pthread_mutex_lock(&srv->emb_mu);
        j->done = true;
        if (j->dropped)
            emb_job_free(j);
        pthread_mutex_unlock(&srv->emb_mu);
        lws_cancel_service(srv->lws);
        pthread_mutex_lock(&srv->emb_mu);
    }
    pthread_mutex_unlock(&srv->emb_mu);
    return NULL;
}

tm_status tm__emb_load(tm_server *srv) {
    if (srv->emb_path == NULL)
        return TM_OK;
    tm_model_params mp = tm_model_params_default();
    mp.path = srv->emb_path;
    TM_TRY(tm_model_load(&mp, &srv->emb_model));
    srv->emb_n_out = tm_model_n_embd_out(srv->emb_model);
    if (srv->emb_n_out <= 0)
        return tm_fail(TM_ERR_INVALID,
                       "--embedding-model %s is a language model, not an embedding model",
                       srv->emb_path);
    const tm_hparams   *hp = tm_model_get_hparams(srv->emb_model);
    tm_tokenizer_params tp = tm_tokenizer_params_default();
    tp.gguf = tm_model_gguf(srv->emb_model);
    tp.path = tp.gguf ? NULL : srv->emb_path;
    TM_TRY(tm_tokenizer_init(&tp, &srv->emb_tok));
    srv->emb_n_vocab = hp->n_vocab;
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_threads = srv->p.n_threads;
    cp.kv_dtype = srv->p.kv_dtype;
    cp.act_type = srv->p.act_type;
    cp.n_ctx = hp->n_ctx_train > 0 && hp->n_ctx_train < 512 ? hp->n_ctx_train : 512;
    cp.n_batch = cp.n_ctx;
    TM_TRY(tm_ctx_init(srv->emb_model, &cp, &srv->emb_ctx));
    srv->emb_n_ctx = cp.n_ctx;
    if (pthread_create(&srv->emb_thread, NULL, emb_worker_main, srv) != 0)
        return tm_fail(TM_ERR_NOMEM, "server: cannot start the embedding worker");
    srv->emb_started = true;
    fprintf(stderr, "tensor-mesh-api: embedding model %s loaded (%d dimensions, %d tokens)\n",
            srv->emb_id, srv->emb_n_out, srv->emb_n_ctx);
    return TM_OK;
}

void tm__emb_free(tm_server *srv) {
    if (srv->emb_started) {
        pthread_mutex_lock(&srv->emb_mu);
        srv->emb_stop = true;
        pthread_cond_signal(&srv->emb_cv);
        pthread_mutex_unlock(&srv->emb_mu);
        pthread_join(srv->emb_thread, NULL);
        srv->emb_started = false;
    }
    /* Jobs never run: finish them as errors so their txns can free them. */
    pthread_mutex_lock(&srv->emb_mu);
    for (tm__emb_job *j = srv->emb_head, *nx; j != NULL; j = nx) {
        nx = j->next;
        tm_api_error_set(&j->err, 503, "unavailable_error", NULL, NULL, "shutting down");
        j->done = true;
        if (j->dropped)
            emb_job_free(j);
    }
    srv->emb_head = srv->emb_tail = NULL;
    pthread_mutex_unlock(&srv->emb_mu);
    tm_ctx_free(srv->emb_ctx);
    tm_tokenizer_free(srv->emb_tok);
    tm_model_free(srv->emb_model);
    srv->emb_ctx = NULL;
    srv->emb_tok = NULL;
    srv->emb_model = NULL;
}

void tm__emb_job_drop(tm_server *srv, tm__emb_job *j) {
    pthread_mutex_lock(&srv->emb_mu);
    if (j->done)
        emb_job_free(j);
    else
        j->dropped = true; /* the worker (or tm__emb_free) frees it */
    pthread_mutex_unlock(&srv->emb_mu);
}

/* ---- service thread ---------------------------------------------------------------- */

/* Reads one input: a string or an array of token ids. */
static tm_status emb_take_input(tm_server *srv, json_t *v, size_t i, tm__emb_job *j,
                                tm_api_error *err) {
    if (json_is_string(v)) {
        if (json_string_length(v) == 0)
            return tm_api_error_set(err, 400, NULL, "input", NULL,
                                    "input[%zu] is empty: every input must hold some text", i);
        j->text[i] = tm_strndup(json_string_value(v), json_string_length(v));
        j->tlen[i] = json_string_length(v);
        return j->text[i] ? TM_OK : tm_api_error_set(err, 500, "server_error", NULL, NULL, "oom");
    }
    if (!json_is_array(v) || json_array_size(v) == 0)
        return tm_api_error_set(err, 400, NULL, "input", NULL,
                                "'input' must be a string, an array of strings, an array of token "
                                "ids or an array of such arrays (input[%zu] is not)",
                                i);
    size_t n = json_array_size(v);
    if (n > (size_t)srv->emb_n_ctx)
        return tm_api_error_set(err, 400, NULL, "input", "context_length_exceeded",
                                "input[%zu] has %zu tokens; the model '%s' takes at most %d", i, n,
                                srv->emb_id, srv->emb_n_ctx);
    j->ids[i] = tm_malloc(n * sizeof *j->ids[i]);
    if (j->ids[i] == NULL)
        return tm_api_error_set(err, 500, "server_error", NULL, NULL, "oom");
    j->n_ids[i] = (int32_t)n;
    for (size_t k = 0; k < n; k++) {
        json_t *x = json_array_get(v, k);
        if (!json_is_integer(x) || json_integer_value(x) < 0 ||
            json_integer_value(x) >= srv->emb_n_vocab)
            return tm_api_error_set(err, 400, NULL, "input", NULL,
                                    "input[%zu][%zu] must be a token id in [0, %d)", i, k,
                                    srv->emb_n_vocab);
        j->ids[i][k] = (int32_t)json_integer_value(x);
    }
    return TM_OK;
}

static tm_status emb_parse(tm_server *srv, json_t *root, tm__emb_job **out, tm_api_error *err) {
    *out = NULL;
    if (!json_is_object(root))
        return tm_api_error_set(err, 400, NULL, NULL, "invalid_json",
                                "request body must be a JSON object");
    json_t *model = json_object_get(root, "model");
    if (!json_is_string(model))
        return tm_api_error_set(err, 400, NULL, "model", "missing_required_parameter",
                                "'model' (a string) is required");
    const char *m = json_string_value(model);
    if (srv->emb_id == NULL || strcmp(m, srv->emb_id) != 0) {
        if (strcmp(m, srv->model_id) == 0 || strcmp(m, srv->model_path) == 0)
            return tm_api_error_set(
                err, 400, NULL, "model", "model_not_supported",
                "The model '%s' is a generative model without an embedding mode; %s", m,
                srv->emb_id ? "use the embedding model listed in /v1/models"
                            : "start the server with --embedding-model PATH");
        return tm_api_error_set(
            err, 404, NULL, "model", "model_not_found", "The model '%s' does not exist%s%s", m,
            srv->emb_id ? "; the embedding model is " : "", srv->emb_id ? srv->emb_id : "");
    }
    json_t *fmt = json_object_get(root, "encoding_format");
    bool    b64 = false;
    if (fmt != NULL && !json_is_null(fmt)) {
        const char *f = json_is_string(fmt) ? json_string_value(fmt) : "";
        if (strcmp(f, "base64") == 0)
            b64 = true;
        else if (strcmp(f, "float") != 0)
            return tm_api_error_set(err, 400, NULL, "encoding_format", NULL,
                                    "'encoding_format' must be \"float\" or \"base64\"");
    }
    json_t *dims = json_object_get(root, "dimensions");
    if (dims != NULL && !json_is_null(dims) &&
        !(json_is_integer(dims) && json_integer_value(dims) == srv->emb_n_out))
        return tm_api_error_set(err, 400, NULL, "dimensions", "unsupported_parameter",
                                "'dimensions': the model '%s' has %d dimensions and cannot "
                                "shorten them",
                                m, srv->emb_n_out);
    json_t *in = json_object_get(root, "input");
    if (in == NULL)
        return tm_api_error_set(err, 400, NULL, "input", "missing_required_parameter",
                                "missing required parameter 'input'");
    /* One input: a string or a flat array of ids. Several: an array of those. */
    bool   single = json_is_string(in) || (json_is_array(in) && json_array_size(in) > 0 &&
                                         json_is_integer(json_array_get(in, 0)));
    size_t n = single ? 1 : json_is_array(in) ? json_array_size(in) : 0;
    if (n == 0)
        return tm_api_error_set(err, 400, NULL, "input", NULL,
                                "'input' must be a string or a non-empty array");
    if (n > EMB_MAX_INPUTS)
        return tm_api_error_set(err, 400, NULL, "input", NULL,
                                "'input' holds %zu items; at most %d per request", n,
                                EMB_MAX_INPUTS);
    tm__emb_job *j = tm_calloc(1, sizeof *j);
    if (j == NULL)
        return tm_api_error_set(err, 500, "server_error", NULL, NULL, "oom");
    j->n_in = n;
    j->base64 = b64;
    j->text = tm_calloc(n, sizeof *j->text);
    j->tlen = tm_calloc(n, sizeof *j->tlen);
    j->ids = tm_calloc(n, sizeof *j->ids);
    j->n_ids = tm_calloc(n, sizeof *j->n_ids);
    if (!j->text || !j->tlen || !j->ids || !j->n_ids) {
        emb_job_free(j);
        return tm_api_error_set(err, 500, "server_error", NULL, NULL, "oom");
    }
    for (size_t i = 0; i < n; i++)
        if (emb_take_input(srv, single ? in : json_array_get(in, i), i, j, err) != TM_OK) {
            emb_job_free(j);
            return TM_ERR_INVALID;
        }
    *out = j;
    return TM_OK;
}

void tm__emb_start(tm_server *srv, txn *t) {
    tm_api_error err;
    json_error_t jerr;
    tm__emb_job *j = NULL;
    json_t      *root = t->body_len ? json_loadb(t->body, t->body_len, 0, &jerr) : NULL;
    if (root == NULL) {
        tm_api_error_set(&err, 400, NULL, NULL, "invalid_json",
                         "request body is not valid JSON: %s",
                         t->body_len ? jerr.text : "empty body");
        tm__txn_respond_error(srv, t, &err);
        return;
    }
    tm_status st = emb_parse(srv, root, &j, &err);
    json_decref(root);
    if (st != TM_OK) {
        tm__txn_respond_error(srv, t, &err);
        return;
    }
    t->emb = j;
    tm__txn_link(srv, t);
    pthread_mutex_lock(&srv->emb_mu);
    if (srv->emb_tail)
        srv->emb_tail->next = j;
    else
        srv->emb_head = j;
    srv->emb_tail = j;
    pthread_cond_signal(&srv->emb_cv);
    pthread_mutex_unlock(&srv->emb_mu);
}

void tm__emb_pump(tm_server *srv, txn *t) {
    tm__emb_job *j = t->emb;
    pthread_mutex_lock(&srv->emb_mu);
    bool done = j->done;
    pthread_mutex_unlock(&srv->emb_mu);
    if (!done)
        return;
    t->emb = NULL;
    tm__txn_unlink(srv, t);
    if (j->json != NULL) {
        tm__txn_respond(srv, t, 200, "application/json", j->json, strlen(j->json));
    } else {
        tm__txn_respond_error(srv, t, &j->err);
    }
    emb_job_free(j);
}
