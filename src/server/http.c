/*
 * http.c - the tensor-mesh-api service loop: libwebsockets HTTP/1.1, routing,
 * auth, body cap, the OpenAI endpoints' glue to the scheduler, SSE output.
 *
 * DESIGN
 * ------
 * One service thread (tm_server_run) runs lws. Per HTTP transaction it keeps a
 * `txn`: the request body (capped: 413 above max_body_bytes), the response
 * bytes not yet written, and for generation requests up to n scheduler
 * requests (tm_sched.h). The service thread only parses, tokenizes, renders
 * chat templates and serializes; the scheduler thread owns the model contexts.
 *
 * Output path: the scheduler calls srv_wakeup() -> lws_cancel_service(), lws
 * delivers LWS_CALLBACK_EVENT_WAIT_CANCELLED on this thread, which polls every
 * txn with live requests (srv->active list, service thread only), appends SSE
 * events or accumulates text, and asks for WRITEABLE. A closed connection
 * (LWS_CALLBACK_CLOSED_HTTP) releases its requests, which cancels them; the
 * scheduler drops them at its next step.
 *
 * Every client error is found before the status line goes out (400/401/404/
 * 413/429/503 with OpenAI's error body); an error after a stream started is
 * sent as data: {"error":...} followed by data: [DONE].
 *
 * Model loading runs on a helper thread; it publishes the engine with a
 * release store of load_state and wakes the loop. /health is 503 until then.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <libwebsockets.h>

#include "tm/tm_chat.h"
#include "tm/tm_chat_template.h"
#include "tm/tm_model.h"
#include "tm/tm_sched.h"
#include "tm/tm_server.h"
#include "tm/tm_tokenizer.h"

#include "server_int.h"

double tm__srv_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

tm_server_params tm_server_params_default(void) {
    return (tm_server_params){.host = "127.0.0.1",
                              .port = 8080,
                              .n_parallel = 4,
                              .n_batch = 128,
                              .max_queue = 64,
                              .max_stored_responses = 256,
                              .max_body_bytes = 8u << 20,
                              .kv_dtype = TM_DTYPE_F16,
                              .act_type = TM_ACT_DEFAULT};
}

/* ---- transactions ------------------------------------------------------------------ */

void tm__txn_unlink(tm_server *srv, txn *t) {
    if (!t->in_active)
        return;
    if (t->prev)
        t->prev->next = t->next;
    else
        srv->active = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->next = t->prev = NULL;
    t->in_active = false;
}

void tm__txn_free(tm_server *srv, txn *t) {
    if (t == NULL)
        return;
    tm__txn_unlink(srv, t);
    for (int32_t i = 0; i < TM_API_MAX_N; i++) {
        tm_sched_req_release(t->reqs[i]); /* cancels a request still running */
        tm_free(t->text[i]);
        tm_free(t->lp[i]);
        tm_free(t->plp[i]);
    }
    if (t->emb != NULL)
        tm__emb_job_drop(srv, t->emb);
    tm__resp_free(t->resp);
    tm_free(t->body);
    tm_free(t->out);
    tm_free(t->echo);
    tm_free(t);
}

void tm__srv_count(tm_server *srv, int route, int status) {
    int c = TM_METRICS_N_CODES - 1;
    for (int i = 0; i < TM_METRICS_N_CODES - 1; i++)
        if (tm_metrics_codes[i] == status)
            c = i;
    srv->requests[route][c]++;
}

bool tm__txn_append(txn *t, const char *s, size_t n) {
    size_t need;
    if (!tm_size_add(t->out_len, n, &need) || !tm_size_add(need, 1, &need))
        return false;
    if (need > t->out_cap) {
        size_t nc = t->out_cap ? t->out_cap : 1024;
        while (nc < need)
            nc *= 2;
        char *nb = tm_realloc(t->out, nc);
        if (nb == NULL)
            return false;
        t->out = nb;
        t->out_cap = nc;
    }
    memcpy(t->out + t->out_len, s, n);
    t->out_len += n;
    t->out[t->out_len] = '\0';
    return true;
}

/* Queues a complete response; body is copied. */
void tm__txn_respond(tm_server *srv, txn *t, int status, const char *ctype, const char *body,
                     size_t len) {
    t->status = status;
    t->ctype = ctype;
    t->responding = true;
    t->final = true;
    t->out_len = t->out_off = 0;
    if (body != NULL && !tm__txn_append(t, body, len)) {
        t->status = 500;
        t->out_len = 0;
        t->close_after = true;
    }
    tm__srv_count(srv, t->route, t->status);
    lws_callback_on_writable(t->wsi);
}

void tm__txn_respond_json(tm_server *srv, txn *t, int status, char *json /* taken */) {
    if (json == NULL) {
        static const char oom[] = "{\"error\":{\"message\":\"out of memory\",\"type\":"
                                  "\"server_error\",\"param\":null,\"code\":null}}";
        tm__txn_respond(srv, t, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    tm__txn_respond(srv, t, status, "application/json", json, strlen(json));
    tm_free(json);
}

void tm__txn_respond_error(tm_server *srv, txn *t, const tm_api_error *e) {
    t->retry_after = e->http_status == 429 || e->http_status == 503;
    tm__txn_respond_json(srv, t, e->http_status, tm_api_error_json(e));
}

/* ---- engine loading (helper thread) ----------------------------------------------- */

static void srv_wakeup(void *user) {
    tm_server *srv = user;
    lws_cancel_service(srv->lws);
}

static tm_status srv_load_template(tm_server *srv) {
    const char *text = NULL;
    char        origin[600];
    tm_status   st;
    if (srv->tmpl_arg != NULL) {
        tm_chat_builtin b;
        if (tm_chat_builtin_from_name(srv->tmpl_arg, &b) == TM_OK) {
            text = tm_chat_builtin_text(b);
            snprintf(origin, sizeof origin, "builtin:%s", srv->tmpl_arg);
        } else {
            TM_TRY(tm_chat_template_source_load(srv->tmpl_arg, false, &srv->tsrc));
        }
    } else {
        /* Only a GGUF carries a template; any other file would be read as template text. */
        st = tm_model_gguf(srv->model) != NULL
                 ? tm_chat_template_source_load(srv->model_path, false, &srv->tsrc)
                 : tm_fail(TM_ERR_NOT_FOUND, "not a GGUF");
        if (st != TM_OK) {
            fprintf(stderr, "tensor-mesh-api: %s has no chat template (%s); using chatml\n",
                    srv->model_path, tm_last_error());
            text = tm_chat_builtin_text(TM_CHAT_BUILTIN_CHATML);
            snprintf(origin, sizeof origin, "builtin:chatml");
        }
    }
    tm_chat_template_params tp = tm_chat_template_params_default();
    tp.source = text ? text : srv->tsrc.text;
    tp.name = text ? origin : srv->tsrc.origin;
    TM_TRY(tm_chat_template_init(&tp, &srv->tmpl));
    /* bos/eos for the template: beside the template, else the tokenizer's own tokens. */
    const char *b = srv->tsrc.bos_token, *e = srv->tsrc.eos_token;
    size_t      bl = 0, el = 0;
    if (b == NULL && srv->tok && tm_tokenizer_bos_id(srv->tok) >= 0)
        b = tm_tokenizer_token_text(srv->tok, tm_tokenizer_bos_id(srv->tok), &bl);
    else if (b != NULL)
        bl = strlen(b);
    if (e == NULL && srv->tok && tm_tokenizer_eos_id(srv->tok) >= 0)
        e = tm_tokenizer_token_text(srv->tok, tm_tokenizer_eos_id(srv->tok), &el);
    else if (e != NULL)
        el = strlen(e);
    srv->bos_text = b ? tm_strndup(b, bl) : NULL;
    srv->eos_text = e ? tm_strndup(e, el) : NULL;
    return TM_OK;
}

static void *srv_loader_main(void *arg) {
    tm_server *srv = arg;
    double     t0 = tm__srv_now();
    tm_status  st;

    tm_model_params mp = tm_model_params_default();
    mp.path = srv->model_path;
    st = tm_model_load(&mp, &srv->model);
    if (st == TM_OK) {
        const tm_hparams *hp = tm_model_get_hparams(srv->model);
        srv->n_vocab = hp->n_vocab;
        tm_tokenizer_params tp = tm_tokenizer_params_default();
        tp.path = srv->tok_path;
        tp.gguf = srv->tok_path ? NULL : tm_model_gguf(srv->model);
        tp.llama2c_n_vocab = hp->n_vocab;
        if (tp.path == NULL && tp.gguf == NULL)
            st = tm_fail(TM_ERR_INVALID, "%s has no tokenizer: pass --tokenizer PATH",
                         srv->model_path);
        else
            st = tm_tokenizer_init(&tp, &srv->tok);
    }
    if (st == TM_OK)
        st = srv_load_template(srv);
    if (st == TM_OK) {
        tm_sched_params sp = tm_sched_params_default();
        sp.model = srv->model;
        sp.tokenizer = srv->tok;
        sp.n_parallel = srv->p.n_parallel;
        sp.n_ctx = srv->p.n_ctx;
        sp.n_batch = srv->p.n_batch;
        sp.n_threads = srv->p.n_threads;
        sp.kv_dtype = srv->p.kv_dtype;
        sp.act_type = srv->p.act_type;
        sp.max_queue = srv->p.max_queue;
        sp.wakeup = srv_wakeup;
        sp.wakeup_user = srv;
        st = tm_sched_init(&sp, &srv->sched);
    }
    if (st == TM_OK)
        st = tm__emb_load(srv);
    if (st == TM_OK) {
        tm_model_prefault(srv->model); /* the first request does not pay the page faults */
        srv->n_ctx = tm_sched_n_ctx(srv->sched);
        fprintf(stderr, "tensor-mesh-api: model %s loaded in %.2f s (%d slots x %d positions)\n",
                srv->model_id, tm__srv_now() - t0, srv->p.n_parallel, srv->n_ctx);
        /* release: the engine fields above are visible to whoever acquires READY. */
        atomic_store_explicit(&srv->load_state, LOAD_READY, memory_order_release);
    } else {
        snprintf(srv->load_error, sizeof srv->load_error, "%s", tm_last_error());
        fprintf(stderr, "tensor-mesh-api: loading %s failed: %s\n", srv->model_path,
                srv->load_error);
        atomic_store_explicit(&srv->load_state, LOAD_FAILED, memory_order_release);
        atomic_store_explicit(&srv->stop, true, memory_order_relaxed);
    }
    lws_cancel_service(srv->lws);
    return NULL;
}

bool tm__srv_ready(tm_server *srv) {
    /* acquire: pairs with the loader's release store. */
    return atomic_load_explicit(&srv->load_state, memory_order_acquire) == LOAD_READY;
}

/* ---- generation ---------------------------------------------------------------------- */

uint64_t tm__srv_splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Turns a validated request into prompt token ids, or an error. */
tm_status tm__srv_prompt_ids(tm_server *srv, const tm_api_request *rq, int32_t **ids, size_t *n,
                             tm_api_error *err) {
    *ids = NULL;
    *n = 0;
    if (rq->prompt_ids != NULL) {
        for (int32_t i = 0; i < rq->n_prompt_ids; i++)
            if (rq->prompt_ids[i] >= srv->n_vocab)
                return tm_api_error_set(err, 400, NULL, "prompt", NULL,
                                        "token id %d at prompt[%d] is outside the vocabulary of "
                                        "%d",
                                        rq->prompt_ids[i], i, srv->n_vocab);
        *ids = tm_malloc((size_t)rq->n_prompt_ids * sizeof **ids);
        if (*ids == NULL)
            return tm_api_error_set(err, 500, "server_error", NULL, NULL, "out of memory");
        memcpy(*ids, rq->prompt_ids, (size_t)rq->n_prompt_ids * sizeof **ids);
        *n = (size_t)rq->n_prompt_ids;
        return TM_OK;
    }
    if (rq->kind == TM_API_COMPLETION) {
        if (tm_tokenizer_encode(srv->tok, rq->prompt, rq->prompt_len, true, true, ids, n) != TM_OK)
            return tm_api_error_set(err, 400, NULL, "prompt", NULL,
                                    "cannot tokenize the prompt: %s", tm_last_error());
        return TM_OK;
    }
    tm_chat_render_params rp = tm_chat_render_params_default();
    rp.messages_json = rq->messages_json;
    rp.add_generation_prompt = rq->add_generation_prompt;
    rp.bos_token = srv->bos_text;
    rp.eos_token = srv->eos_text;
    char  *text = NULL;
    size_t len = 0;
    if (tm_chat_template_render(srv->tmpl, &rp, &text, &len) != TM_OK)
        return tm_api_error_set(err, 400, NULL, "messages", NULL,
                                "the chat template refused the messages: %s", tm_last_error());
    /* Special tokens only where the template put them: message text stays literal. */
    tm_status st = tm_chat_tokenize(srv->tok, text, len, rq->messages_json, ids, n);
    tm_free(text);
    if (st != TM_OK)
        return tm_api_error_set(err, 400, NULL, "messages", NULL,
                                "cannot tokenize the rendered chat: %s", tm_last_error());
    return TM_OK;
}

void tm__txn_link(tm_server *srv, txn *t) {
    if (t->in_active)
        return;
    t->prev = NULL;
    t->next = srv->active;
    if (srv->active)
        srv->active->prev = t;
    srv->active = t;
    t->in_active = true;
}

/* true when model names the served generation model; otherwise err says why (400 for
 * the embedding model, 404 for anything else). */
bool tm__srv_check_model(const tm_server *srv, const char *model, tm_api_error *err) {
    if (strcmp(model, srv->model_id) == 0 || strcmp(model, srv->model_path) == 0)
        return true;
    if (srv->emb_id != NULL && strcmp(model, srv->emb_id) == 0)
        tm_api_error_set(err, 400, NULL, "model", "model_not_supported",
                         "The model '%s' is an embedding model: it serves /v1/embeddings only",
                         model);
    else
        tm_api_error_set(err, 404, NULL, "model", "model_not_found",
                         "The model '%s' does not exist; this server serves '%s'", model,
                         srv->model_id);
    return false;
}

tm_status tm__srv_submit(tm_server *srv, txn *t, const tm_api_request *rq, const tm__api_ext *ext,
                         tm_api_error *err) {
    int32_t *ids = NULL;
    size_t   n_ids = 0;
    if (tm__srv_prompt_ids(srv, rq, &ids, &n_ids, err) != TM_OK)
        goto fail;
    const char *what = rq->kind == TM_API_COMPLETION ? "prompt" : "messages";
    if (rq->kind == TM_API_RESPONSES)
        what = "input";
    if (n_ids == 0) {
        tm_api_error_set(err, 400, NULL, what, NULL, "the prompt is empty");
        goto fail;
    }
    if (n_ids >= (size_t)srv->n_ctx) {
        srv->rejected_long++;
        tm_api_error_set(err, 400, NULL, what, "context_length_exceeded",
                         "This model's maximum context length is %d tokens. However, your prompt "
                         "has %zu tokens (at least one position must be left to generate).",
                         srv->n_ctx, n_ids);
        goto fail;
    }
    tm_gen_params gp = tm_gen_params_default();
    gp.sampler = rq->sampler;
    gp.max_tokens = rq->max_tokens;
    gp.ignore_eos = rq->ignore_eos;
    gp.n_stop = rq->n_stop;
    for (int32_t i = 0; i < rq->n_stop; i++)
        gp.stop[i] = rq->stop[i];
    if (!rq->has_seed)
        gp.sampler.seed = tm__srv_splitmix(&srv->seed_state);
    t->logprobs = -1;
    if (ext != NULL) { /* both copied by tm_sched_req_init */
        gp.sampler.bias_id = ext->bias_id;
        gp.sampler.bias = ext->bias;
        gp.sampler.n_bias = ext->n_bias;
        gp.n_logprobs = ext->logprobs;
        t->logprobs = ext->logprobs;
    }
    /* completions with echo: max_tokens 0 scores the prompt alone (vLLM's and the
     * old OpenAI "echo, max_tokens 0, logprobs" call); with logprobs the prompt's
     * tokens get records too */
    t->echo_lp = false;
    if (rq->kind == TM_API_COMPLETION && rq->echo) {
        gp.prefill_only = rq->max_tokens == 0;
        gp.continue_text = true; /* "Once upon" + " a time", not "Once upona time" */
        if (t->logprobs >= 0) {
            gp.n_prompt_logprobs = t->logprobs;
            t->echo_lp = true;
        }
    }
    t->prompt_first = ids[0];
    t->n = rq->n;
    t->n_prompt = (int32_t)n_ids;
    t->n_cached = 0;
    t->include_usage = rq->include_usage;
    for (int32_t i = 0; i < TM_API_MAX_N; i++) {
        t->fin[i] = TM_FINISH_NONE;
        t->n_completion[i] = 0;
        t->role_sent[i] = false;
        t->text_len[i] = 0;
        t->n_lp[i] = 0;
        tm_free(t->plp[i]);
        t->plp[i] = NULL;
        t->n_plp[i] = 0;
        t->lp_off[i] = 0;
        t->lp_started[i] = false;
    }
    for (int32_t i = 0; i < rq->n; i++) {
        tm_gen_params g = gp;
        g.sampler.seed = gp.sampler.seed + (uint64_t)i; /* n > 1: distinct, reproducible */
        tm_status st = tm_sched_req_init(&g, ids, (int32_t)n_ids, &t->reqs[i]);
        if (st == TM_OK)
            st = tm_sched_submit(srv->sched, t->reqs[i]);
        if (st == TM_ERR_FULL) {
            tm_api_error_set(err, 429, "server_overloaded", NULL, "queue_full",
                             "The server is busy (%s); retry shortly", tm_last_error());
            goto fail_reqs;
        } else if (st != TM_OK) {
            tm_api_error_set(err, st == TM_ERR_INVALID ? 400 : 500,
                             st == TM_ERR_INVALID ? "invalid_request_error" : "server_error", NULL,
                             NULL, "%s", tm_last_error());
            goto fail_reqs;
        }
    }
    tm_free(ids);
    t->created = (int64_t)time(NULL);
    t->t_start_s = tm__srv_now();
    tm__txn_link(srv, t);
    if (!t->ws)
        lws_set_timeout(t->wsi, NO_PENDING_TIMEOUT, 0); /* generation may take minutes */
    return TM_OK;
fail_reqs:
    for (int32_t i = 0; i < TM_API_MAX_N; i++) {
        tm_sched_req_release(t->reqs[i]);
        t->reqs[i] = NULL;
    }
fail:
    tm_free(ids);
    return TM_ERR_INVALID;
}

static void srv_generate(tm_server *srv, txn *t) {
    tm_api_error   err;
    tm_api_request rq;
    t->kind = t->route == R_CHAT ? TM_API_CHAT : TM_API_COMPLETION;
    if (tm_api_request_parse(t->kind, t->body, t->body_len, &rq, &err) != TM_OK) {
        tm__txn_respond_error(srv, t, &err);
        return;
    }
    if (!tm__srv_check_model(srv, rq.model, &err))
        goto fail;
    if (rq.echo) {
        tm_status st = TM_OK;
        if (rq.prompt != NULL) {
            t->echo = tm_strndup(rq.prompt, rq.prompt_len);
            t->echo_len = rq.prompt_len;
        } else {
            st = tm_tokenizer_decode(srv->tok, rq.prompt_ids, (size_t)rq.n_prompt_ids, true,
                                     &t->echo, &t->echo_len);
        }
        if (st != TM_OK || t->echo == NULL) {
            tm_api_error_set(&err, 400, NULL, "prompt", NULL, "cannot echo the prompt: %s",
                             tm_last_error());
            goto fail;
        }
    }
    tm__api_ext *ext = tm_malloc(sizeof *ext);
    if (ext == NULL) {
        tm_api_error_set(&err, 500, "server_error", NULL, NULL, "out of memory");
        goto fail;
    }
    tm_status sst = tm__api_parse_ext(t->kind, t->body, t->body_len, srv->n_vocab, ext, &err);
    if (sst == TM_OK)
        sst = tm__srv_submit(srv, t, &rq, ext, &err);
    tm_free(ext);
    if (sst != TM_OK)
        goto fail;
    snprintf(t->id, sizeof t->id, "%s-%016llx", t->kind == TM_API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)tm__srv_splitmix(&srv->seed_state));
    if (rq.stream) {
        t->status = 200;
        t->ctype = "text/event-stream";
        t->streaming = true;
        t->responding = true;
        tm__srv_count(srv, t->route, 200);
        lws_callback_on_writable(t->wsi);
    }
    tm_api_request_free(&rq);
    return;
fail:
    tm_api_request_free(&rq);
    tm__txn_respond_error(srv, t, &err);
}

static const char *srv_model_name(tm_server *srv) { return srv->model_id; }

/* Appends one SSE event built from json (taken); false on out-of-memory. */
bool tm__txn_sse(txn *t, char *json) {
    if (json == NULL)
        return false;
    bool ok = tm_sse_append_data(&t->out, &t->out_len, &t->out_cap, json, strlen(json));
    tm_free(json);
    return ok;
}

/* Non-streaming: appends the polled log-probability records to choice i's. */
static bool srv_keep_lp(txn *t, int32_t i, const tm_sched_out *o) {
    if (t->n_lp[i] + o->n_logprobs > t->lp_cap[i]) {
        int32_t           nc = (t->n_lp[i] + o->n_logprobs) * 2;
        tm_sched_logprob *nb = tm_realloc(t->lp[i], (size_t)nc * sizeof *nb);
        if (nb == NULL)
            return false;
        t->lp[i] = nb;
        t->lp_cap[i] = nc;
    }
    memcpy(t->lp[i] + t->n_lp[i], o->logprobs, (size_t)o->n_logprobs * sizeof *o->logprobs);
    t->n_lp[i] += o->n_logprobs;
    return true;
}

/* Moves new scheduler output into the transaction. Returns true when there is
 * something new to write. */
static bool txn_pump(tm_server *srv, txn *t) {
    bool        news = false, all_done = true, failed = false;
    const char *model = srv_model_name(srv);
    char        errmsg[160] = "";
    for (int32_t i = 0; i < t->n; i++) {
        if (t->fin[i] != TM_FINISH_NONE)
            continue;
        tm_sched_out o;
        tm_sched_req_poll(t->reqs[i], &o);
        t->n_completion[i] = o.n_completion;
        if (i == 0)
            t->n_cached = o.n_cached;
        bool ok = true;
        if (t->streaming) {
            if (t->kind == TM_API_CHAT && !t->role_sent[i] && (o.started || o.len > 0)) {
                ok &= tm__txn_sse(t, tm_api_chunk_json(t->kind, t->id, t->created, model, i, true,
                                                       "", 0, TM_FINISH_NONE, t->include_usage));
                t->role_sent[i] = true;
                news = true;
            }
            /* completions: the prompt first, as its own chunk; with logprobs once its
             * records are in (they come no later than the first generated text) */
            if (t->echo != NULL && !t->role_sent[i] && (!t->echo_lp || o.prompt_done)) {
                tm__api_lp lp = {.text_offset = &t->lp_off[i],
                                 .echo = t->echo,
                                 .echo_len = t->echo_len,
                                 .prompt_first = t->prompt_first,
                                 .prompt = o.prompt_logprobs,
                                 .n_prompt = o.n_prompt_logprobs};
                ok &= tm__txn_sse(t, tm__api_chunk_json_lp(t->kind, t->id, t->created, model, i,
                                                           false, t->echo, t->echo_len,
                                                           TM_FINISH_NONE, t->include_usage,
                                                           t->echo_lp ? &lp : NULL, srv->tok));
                t->role_sent[i] = true;
                news = true;
            }
            if (o.len > 0 || o.n_logprobs > 0) {
                tm__api_lp lp = {
                    .rec = o.logprobs, .n = o.n_logprobs, .text_offset = &t->lp_off[i]};
                ok &= tm__txn_sse(
                    t, tm__api_chunk_json_lp(t->kind, t->id, t->created, model, i, false, o.text,
                                             o.len, TM_FINISH_NONE, t->include_usage,
                                             t->logprobs >= 0 ? &lp : NULL, srv->tok));
                news = true;
            }
            if (o.finish == TM_FINISH_STOP || o.finish == TM_FINISH_LENGTH) {
                ok &= tm__txn_sse(t, tm_api_chunk_json(t->kind, t->id, t->created, model, i, false,
                                                       NULL, 0, o.finish, t->include_usage));
                news = true;
            }
        } else {
            if (o.n_logprobs > 0 && !srv_keep_lp(t, i, &o))
                ok = false;
            if (o.prompt_logprobs != NULL) { /* kept for the response */
                tm_free(t->plp[i]);
                t->plp[i] = o.prompt_logprobs;
                t->n_plp[i] = o.n_prompt_logprobs;
                o.prompt_logprobs = NULL;
            }
        }
        if (!t->streaming && ok && (o.len > 0 || (t->echo != NULL && !t->role_sent[i]))) {
            if (t->echo != NULL && !t->role_sent[i]) { /* the prompt precedes the text */
                t->role_sent[i] = true;
                char *joined = tm_malloc(t->echo_len + o.len + 1);
                if (joined != NULL) {
                    memcpy(joined, t->echo, t->echo_len);
                    if (o.len)
                        memcpy(joined + t->echo_len, o.text, o.len);
                    joined[t->echo_len + o.len] = '\0';
                }
                tm_free(o.text);
                o.text = joined;
                o.len = joined ? t->echo_len + o.len : 0;
                ok = joined != NULL;
            }
            size_t need = t->text_len[i] + o.len + 1;
            if (need > t->text_cap[i]) {
                char *nb = tm_realloc(t->text[i], need * 2);
                if (nb == NULL) {
                    ok = false;
                } else {
                    t->text[i] = nb;
                    t->text_cap[i] = need * 2;
                }
            }
            if (ok) {
                memcpy(t->text[i] + t->text_len[i], o.text, o.len);
                t->text_len[i] += o.len;
                t->text[i][t->text_len[i]] = '\0';
            }
        }
        tm_free(o.text);
        tm_free(o.logprobs);
        tm_free(o.prompt_logprobs);
        t->fin[i] = o.finish;
        if (!ok) {
            t->fin[i] = TM_FINISH_ERROR;
            snprintf(errmsg, sizeof errmsg, "out of memory");
        }
        if (t->fin[i] == TM_FINISH_ERROR || t->fin[i] == TM_FINISH_CANCELLED) {
            failed = true;
            if (errmsg[0] == '\0')
                snprintf(errmsg, sizeof errmsg, "%s",
                         t->fin[i] == TM_FINISH_CANCELLED ? "the server is shutting down"
                                                          : o.error);
        }
        all_done &= t->fin[i] != TM_FINISH_NONE;
    }
    for (int32_t i = 0; i < t->n; i++)
        all_done &= t->fin[i] != TM_FINISH_NONE;
    if (failed) {
        /* One choice failed: stop the others too, and report. */
        for (int32_t i = 0; i < t->n; i++)
            tm_sched_req_cancel(t->reqs[i]);
        all_done = true;
    }
    if (!all_done)
        return news;

    tm_api_usage usage = {.prompt_tokens = t->n_prompt, .cached_tokens = t->n_cached};
    for (int32_t i = 0; i < t->n; i++)
        usage.completion_tokens += t->n_completion[i];
    tm__txn_unlink(srv, t);
    for (int32_t i = 0; i < TM_API_MAX_N; i++) {
        tm_sched_req_release(t->reqs[i]);
        t->reqs[i] = NULL;
    }
    if (t->streaming) {
        if (failed) {
            tm_api_error e;
            tm_api_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s", errmsg);
            tm__txn_sse(t, tm_api_error_json(&e));
        } else if (t->include_usage) {
            tm__txn_sse(t, tm_api_usage_chunk_json(t->kind, t->id, t->created, model, &usage));
        }
        tm_sse_append_done(&t->out, &t->out_len, &t->out_cap);
        t->final = true;
        return true;
    }
    if (failed) {
        tm_api_error e;
        tm_api_error_set(&e, 500, "server_error", NULL, NULL, "generation failed: %s", errmsg);
        tm__txn_respond_error(srv, t, &e);
        return true;
    }
    tm_api_choice ch[TM_API_MAX_N];
    tm__api_lp    lp[TM_API_MAX_N];
    for (int32_t i = 0; i < t->n; i++) {
        ch[i] = (tm_api_choice){.text = t->text[i], .len = t->text_len[i], .finish = t->fin[i]};
        lp[i] = (tm__api_lp){.rec = t->lp[i],
                             .n = t->n_lp[i],
                             .text_offset = &t->lp_off[i],
                             .first = t->echo == NULL, /* else it continues the prompt */
                             .echo = t->echo_lp ? t->echo : NULL,
                             .echo_len = t->echo_len,
                             .prompt_first = t->prompt_first,
                             .prompt = t->plp[i],
                             .n_prompt = t->n_plp[i]};
    }
    tm__txn_respond_json(srv, t, 200,
                         tm__api_response_json_lp(t->kind, t->id, t->created, model, ch, t->n,
                                                  &usage, t->logprobs >= 0 ? lp : NULL, srv->tok));
    if (!srv->p.quiet)
        fprintf(stderr, "tensor-mesh-api: %s %d prompt + %d completion tokens in %.2f s\n", t->id,
                usage.prompt_tokens, usage.completion_tokens, tm__srv_now() - t->t_start_s);
    return true;
}

/* ---- small endpoints ---------------------------------------------------------------- */

static json_t *srv_model_json(tm_server *srv, const char *id, int32_t max_len) {
    json_t *m = json_object();
    json_object_set_new(m, "id", json_string(id));
    json_object_set_new(m, "object", json_string("model"));
    json_object_set_new(m, "created", json_integer(srv->created));
    json_object_set_new(m, "owned_by", json_string("tensormesh"));
    if (tm__srv_ready(srv))
        json_object_set_new(m, "max_model_len", json_integer(max_len));
    return m;
}

static void srv_models(tm_server *srv, txn *t) {
    json_t *data = json_array();
    json_array_append_new(data, srv_model_json(srv, srv->model_id, srv->n_ctx));
    if (srv->emb_id != NULL) {
        json_t *m = srv_model_json(srv, srv->emb_id, srv->emb_n_ctx);
        json_object_set_new(m, "task", json_string("embedding")); /* extension */
        json_array_append_new(data, m);
    }
    json_t *root = json_object();
    json_object_set_new(root, "object", json_string("list"));
    json_object_set_new(root, "data", data);
    char *s = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    tm__txn_respond(srv, t, 200, "application/json", s, s ? strlen(s) : 0);
    free(s);
}

static void srv_health(tm_server *srv, txn *t) {
    int st = atomic_load_explicit(&srv->load_state, memory_order_acquire);
    if (st == LOAD_READY) {
        static const char ok[] = "{\"status\":\"ok\"}";
        tm__txn_respond(srv, t, 200, "application/json", ok, sizeof ok - 1);
        return;
    }
    tm_api_error e;
    tm_api_error_set(&e, 503, "unavailable_error", NULL, NULL,
                     st == LOAD_LOADING ? "Loading model" : "Model failed to load");
    tm__txn_respond_error(srv, t, &e);
}

static void srv_metrics(tm_server *srv, txn *t) {
    tm_metrics_input *in = tm_calloc(1, sizeof *in);
    if (in == NULL) {
        tm__txn_respond_json(srv, t, 500, NULL);
        return;
    }
    in->model_id = srv->model_id;
    in->loaded = tm__srv_ready(srv);
    if (in->loaded)
        tm_sched_get_stats(srv->sched, &in->sched);
    memcpy(in->requests, srv->requests, sizeof in->requests);
    in->requests[R_METRICS][0]++; /* this scrape, counted by tm__txn_respond below */
    in->prompt_tokens_rejected = srv->rejected_long;
    in->uptime_s = tm__srv_now() - srv->t_start_s;
    char *s = tm_metrics_render(in);
    tm_free(in);
    if (s == NULL) {
        tm__txn_respond_json(srv, t, 500, NULL);
        return;
    }
    tm__txn_respond(srv, t, 200, "text/plain; version=0.0.4; charset=utf-8", s, strlen(s));
    tm_free(s);
}

/* POST /tokenize {"prompt": str, "add_special_tokens": bool} or {"messages": [...]}
 * -> {"count", "max_model_len", "tokens"} (vLLM's shape). */
static void srv_tokenize(tm_server *srv, txn *t) {
    tm_api_error   err;
    json_error_t   jerr;
    tm_api_request rq = {0};
    int32_t       *ids = NULL;
    size_t         n = 0;
    json_t        *root = json_loadb(t->body, t->body_len, 0, &jerr);
    if (!json_is_object(root)) {
        tm_api_error_set(&err, 400, NULL, NULL, "invalid_json",
                         "request body must be a JSON object");
        goto fail;
    }
    json_t *p = json_object_get(root, "prompt"), *add = json_object_get(root, "add_special_tokens");
    if (add != NULL && !json_is_boolean(add)) {
        tm_api_error_set(&err, 400, NULL, "add_special_tokens", NULL,
                         "'add_special_tokens' must be a boolean");
        goto fail;
    }
    if (json_is_string(p)) {
        if (tm_tokenizer_encode(srv->tok, json_string_value(p), json_string_length(p),
                                add == NULL || json_is_true(add), true, &ids, &n) != TM_OK) {
            tm_api_error_set(&err, 400, NULL, "prompt", NULL, "%s", tm_last_error());
            goto fail;
        }
    } else if (json_object_get(root, "messages") != NULL) {
        /* Same path as chat completions (model is optional here). */
        json_t *body = json_deep_copy(root);
        if (json_object_get(body, "model") == NULL)
            json_object_set_new(body, "model", json_string(srv->model_id));
        char *s = json_dumps(body, JSON_COMPACT);
        json_decref(body);
        tm_status st = s ? tm_api_request_parse(TM_API_CHAT, s, strlen(s), &rq, &err)
                         : tm_api_error_set(&err, 500, "server_error", NULL, NULL, "oom");
        free(s);
        if (st != TM_OK || tm__srv_prompt_ids(srv, &rq, &ids, &n, &err) != TM_OK)
            goto fail;
    } else {
        tm_api_error_set(&err, 400, NULL, "prompt", "missing_required_parameter",
                         "'prompt' (a string) or 'messages' is required");
        goto fail;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_integer(ids[i]));
    json_t *o = json_object();
    json_object_set_new(o, "count", json_integer((json_int_t)n));
    json_object_set_new(o, "max_model_len", json_integer(srv->n_ctx));
    json_object_set_new(o, "tokens", arr);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    tm__txn_respond(srv, t, 200, "application/json", s, s ? strlen(s) : 0);
    free(s);
    tm_free(ids);
    tm_api_request_free(&rq);
    json_decref(root);
    return;
fail:
    tm_free(ids);
    tm_api_request_free(&rq);
    json_decref(root);
    tm__txn_respond_error(srv, t, &err);
}

/* POST /detokenize {"tokens": [ids]} -> {"prompt": text}. */
static void srv_detokenize(tm_server *srv, txn *t) {
    tm_api_error err;
    json_error_t jerr;
    int32_t     *ids = NULL;
    json_t      *root = json_loadb(t->body, t->body_len, 0, &jerr);
    json_t      *tokens = json_object_get(root, "tokens");
    if (!json_is_array(tokens)) {
        tm_api_error_set(&err, 400, NULL, "tokens", NULL,
                         "request body must be an object with an array 'tokens'");
        goto fail;
    }
    size_t n = json_array_size(tokens);
    ids = tm_calloc(n ? n : 1, sizeof *ids);
    if (ids == NULL) {
        tm_api_error_set(&err, 500, "server_error", NULL, NULL, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(tokens, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= srv->n_vocab) {
            tm_api_error_set(&err, 400, NULL, "tokens", NULL,
                             "'tokens[%zu]' must be a token id in [0, %d)", i, srv->n_vocab);
            goto fail;
        }
        ids[i] = (int32_t)json_integer_value(v);
    }
    char  *text = NULL;
    size_t len = 0;
    if (tm_tokenizer_decode(srv->tok, ids, n, false, &text, &len) != TM_OK) {
        tm_api_error_set(&err, 400, NULL, "tokens", NULL, "%s", tm_last_error());
        goto fail;
    }
    json_t *o = json_object();
    json_t *js = json_stringn(text, len);
    json_object_set_new(o, "prompt", js ? js : json_string("\xef\xbf\xbd"));
    tm_free(text);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    tm__txn_respond(srv, t, 200, "application/json", s, s ? strlen(s) : 0);
    free(s);
    tm_free(ids);
    json_decref(root);
    return;
fail:
    tm_free(ids);
    json_decref(root);
    tm__txn_respond_error(srv, t, &err);
}

/* ---- routing ---------------------------------------------------------------------------- */

typedef struct srv_route {
    const char *path;
    int         route;
    bool        post;
    bool        auth;
} srv_route;

static const srv_route srv_routes[] = {
    {"/v1/models", R_MODELS, false, true},
    {"/v1/chat/completions", R_CHAT, true, true},
    {"/v1/completions", R_COMPLETIONS, true, true},
    {"/tokenize", R_TOKENIZE, true, true},
    {"/v1/tokenize", R_TOKENIZE, true, true},
    {"/detokenize", R_DETOKENIZE, true, true},
    {"/v1/detokenize", R_DETOKENIZE, true, true},
    {"/health", R_HEALTH, false, false},
    {"/v1/health", R_HEALTH, false, false},
    {"/metrics", R_METRICS, false, false},
    {"/v1/embeddings", R_EMBEDDINGS, true, true},
    {"/v1/responses", R_RESPONSES, true, true},
    {"/", R_PAGE, false, false},
};

/* Constant-time comparison of the presented key with ours (true without --api-key). */
bool tm__srv_auth_ok(tm_server *srv, struct lws *wsi) {
    if (srv->api_key == NULL)
        return true;
    char hdr[1024];
    int  n = lws_hdr_copy(wsi, hdr, sizeof hdr, WSI_TOKEN_HTTP_AUTHORIZATION);
    if (n <= 7 || strncasecmp(hdr, "Bearer ", 7) != 0)
        return false;
    const char *key = hdr + 7;
    size_t      kl = strlen(key), ol = strlen(srv->api_key);
    unsigned    diff = (unsigned)(kl ^ ol);
    for (size_t i = 0; i < kl && i < ol; i++)
        diff |= (unsigned)(key[i] ^ srv->api_key[i]);
    return diff == 0;
}

static void srv_dispatch(tm_server *srv, txn *t) {
    if (t->has_pending_err) {
        tm__txn_respond_error(srv, t, &t->pending_err);
        return;
    }
    if (t->route == R_HEALTH) {
        srv_health(srv, t);
        return;
    }
    if (t->route == R_METRICS) {
        srv_metrics(srv, t);
        return;
    }
    if (t->route == R_MODELS) {
        srv_models(srv, t);
        return;
    }
    if (t->route == R_PAGE) {
        tm__txn_respond(srv, t, 200, "text/html; charset=utf-8", tm__chat_page_html,
                        tm__chat_page_len);
        return;
    }
    if (!tm__srv_ready(srv)) {
        tm_api_error e;
        tm_api_error_set(&e, 503, "unavailable_error", NULL, NULL, "Loading model");
        tm__txn_respond_error(srv, t, &e);
        return;
    }
    switch (t->route) {
    case R_CHAT:
    case R_COMPLETIONS: srv_generate(srv, t); break;
    case R_TOKENIZE: srv_tokenize(srv, t); break;
    case R_DETOKENIZE: srv_detokenize(srv, t); break;
    case R_EMBEDDINGS: tm__emb_start(srv, t); break;
    case R_RESPONSES:
        if (t->is_post)
            tm__resp_start(srv, t, t->body, t->body_len);
        else
            tm__resp_get(srv, t, t->resp_get_id);
        break;
    default: TM_ASSERT(!"unrouted");
    }
}

/* A new request line: find the route, check auth and the declared body size. */
static int srv_on_http(tm_server *srv, struct lws *wsi, pss *ps, const char *uri) {
    txn *t = tm_calloc(1, sizeof *t);
    if (t == NULL)
        return -1;
    ps->t = t;
    t->wsi = wsi;
    t->route = R_OTHER;
    t->is_post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    bool             is_get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    const srv_route *r = NULL;
    for (size_t i = 0; i < sizeof srv_routes / sizeof srv_routes[0]; i++)
        if (strcmp(uri, srv_routes[i].path) == 0)
            r = &srv_routes[i];
    tm_api_error *e = &t->pending_err;
    /* GET /v1/responses/{id}: the id is letters, digits and '_' only. */
    static const char rp[] = "/v1/responses/";
    if (r == NULL && strncmp(uri, rp, sizeof rp - 1) == 0 && is_get &&
        strlen(uri + sizeof rp - 1) < sizeof t->resp_get_id &&
        strspn(uri + sizeof rp - 1,
               "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") ==
            strlen(uri + sizeof rp - 1)) {
        static const srv_route get_resp = {"/v1/responses/", R_RESPONSES, false, true};
        r = &get_resp;
        snprintf(t->resp_get_id, sizeof t->resp_get_id, "%s", uri + sizeof rp - 1);
    }
    if (r == NULL) {
        tm_api_error_set(e, 404, NULL, NULL, "not_found", "Unknown route %s %s",
                         t->is_post ? "POST" : "GET", uri);
        t->has_pending_err = true;
    } else {
        t->route = r->route;
        if (r->post ? !t->is_post : !is_get) {
            tm_api_error_set(e, 405, NULL, NULL, "method_not_allowed", "%s only accepts %s", uri,
                             r->post ? "POST" : "GET");
            t->has_pending_err = true;
        } else if (r->auth && !tm__srv_auth_ok(srv, wsi)) {
            tm_api_error_set(e, 401, "invalid_request_error", NULL, "invalid_api_key",
                             "Incorrect or missing API key: send 'Authorization: Bearer <key>'");
            t->has_pending_err = true;
        }
    }
    if (!t->is_post) {
        srv_dispatch(srv, t);
        return 0;
    }
    char cl[32];
    if (lws_hdr_copy(wsi, cl, sizeof cl, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0) {
        unsigned long long v = strtoull(cl, NULL, 10);
        if (v > srv->p.max_body_bytes) {
            tm_api_error e413;
            tm_api_error_set(&e413, 413, NULL, NULL, "request_too_large",
                             "Request body of %llu bytes exceeds the limit of %zu bytes", v,
                             srv->p.max_body_bytes);
            t->body_refused = true;
            t->close_after = true;
            tm__txn_respond_error(srv, t, &e413);
        }
    }
    return 0;
}

static int srv_on_body(tm_server *srv, txn *t, const char *in, size_t len) {
    if (t->body_refused)
        return 0;
    if (t->body_len + len > srv->p.max_body_bytes) {
        tm_api_error e;
        tm_api_error_set(&e, 413, NULL, NULL, "request_too_large",
                         "Request body exceeds the limit of %zu bytes", srv->p.max_body_bytes);
        t->body_refused = true;
        t->close_after = true;
        tm_free(t->body);
        t->body = NULL;
        t->body_len = t->body_cap = 0;
        tm__txn_respond_error(srv, t, &e);
        return 0;
    }
    if (t->body_len + len + 1 > t->body_cap) {
        size_t nc = t->body_cap ? t->body_cap : 4096;
        while (nc < t->body_len + len + 1)
            nc *= 2;
        char *nb = tm_realloc(t->body, nc);
        if (nb == NULL)
            return -1;
        t->body = nb;
        t->body_cap = nc;
    }
    memcpy(t->body + t->body_len, in, len);
    t->body_len += len;
    t->body[t->body_len] = '\0';
    return 0;
}

/* WRITEABLE: headers first, then body slices of at most SRV_WRITE_CHUNK bytes. */
static int srv_on_writeable(tm_server *srv, struct lws *wsi, pss *ps) {
    txn *t = ps->t;
    if (t == NULL || !t->responding)
        return 0;
    if (!t->headers_sent) {
        unsigned char *start = srv->scratch + LWS_PRE, *p = start, *end = start + 1024;
        lws_filepos_t  len = t->streaming ? LWS_ILLEGAL_HTTP_CONTENT_LEN : t->out_len;
        if (lws_add_http_common_headers(wsi, (unsigned)t->status, t->ctype, len, &p, end))
            return -1;
        if (t->streaming &&
            lws_add_http_header_by_name(wsi, (const unsigned char *)"cache-control:",
                                        (const unsigned char *)"no-cache", 8, &p, end))
            return -1;
        if (t->retry_after &&
            lws_add_http_header_by_name(
                wsi, (const unsigned char *)"retry-after:", (const unsigned char *)"1", 1, &p, end))
            return -1;
        if (t->close_after && !t->streaming &&
            lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION, (const unsigned char *)"close",
                                         5, &p, end))
            return -1;
        if (lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        t->headers_sent = true;
        if (t->out_len > t->out_off || t->final)
            lws_callback_on_writable(wsi);
        return 0;
    }
    size_t left = t->out_len - t->out_off;
    size_t n = left < SRV_WRITE_CHUNK ? left : SRV_WRITE_CHUNK;
    bool   last = t->final && n == left;
    if (n > 0 || last) {
        memcpy(srv->scratch + LWS_PRE, t->out + t->out_off, n);
        if (lws_write(wsi, srv->scratch + LWS_PRE, n,
                      last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < (int)n)
            return -1;
        t->out_off += n;
        if (t->out_off == t->out_len && !last)
            t->out_off = t->out_len = 0; /* streaming: reuse the buffer */
    }
    if (!last) {
        if (t->out_len > t->out_off)
            lws_callback_on_writable(wsi);
        return 0;
    }
    bool close = t->close_after || t->streaming;
    tm__txn_free(srv, t);
    ps->t = NULL;
    if (close)
        return -1;
    return lws_http_transaction_completed(wsi) ? -1 : 0;
}

static int srv_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                        size_t len) {
    struct lws_context *ctx = lws_get_context(wsi);
    tm_server          *srv = ctx ? lws_context_user(ctx) : NULL;
    pss                *ps = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        if (ps->t != NULL) { /* keep-alive: the previous transaction is over */
            tm__txn_free(srv, ps->t);
            ps->t = NULL;
        }
        return srv_on_http(srv, wsi, ps, (const char *)in);
    case LWS_CALLBACK_HTTP_BODY: return ps->t ? srv_on_body(srv, ps->t, in, len) : 0;
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        if (ps->t != NULL && !ps->t->body_refused && !ps->t->responding)
            srv_dispatch(srv, ps->t);
        return 0;
    case LWS_CALLBACK_HTTP_WRITEABLE: return srv_on_writeable(srv, wsi, ps);
    case LWS_CALLBACK_CLOSED_HTTP:
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        if (ps != NULL && ps->t != NULL) {
            tm__txn_free(srv, ps->t); /* releases (cancels) its scheduler requests */
            ps->t = NULL;
        }
        return 0;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (srv == NULL)
            return 0;
        if (!srv->announced && tm__srv_ready(srv))
            srv->announced = true;
        for (txn *t = srv->active, *nx; t != NULL; t = nx) {
            nx = t->next;
            if (t->emb != NULL) {
                tm__emb_pump(srv, t);
                continue;
            }
            bool news = t->resp != NULL ? tm__resp_pump(srv, t) : txn_pump(srv, t);
            if (news && (t->responding || t->ws))
                lws_callback_on_writable(t->wsi);
        }
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
    case LWS_CALLBACK_ESTABLISHED:
    case LWS_CALLBACK_RECEIVE:
    case LWS_CALLBACK_SERVER_WRITEABLE:
    case LWS_CALLBACK_CLOSED: return tm__ws_callback(srv, wsi, ps, reason, in, len);
    default: return lws_callback_http_dummy(wsi, reason, user, in, len);
    }
}

static const struct lws_protocols srv_protocols[] = {
    {"http", srv_callback, sizeof(pss), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- lifetime ------------------------------------------------------------------------- */

static char *srv_default_id(const char *path) {
    size_t pl = strlen(path);
    while (pl > 1 && path[pl - 1] == '/') /* a folder given as "models/x/" */
        pl--;
    const char *b = path;
    for (size_t i = 0; i < pl; i++)
        if (path[i] == '/' && i + 1 < pl)
            b = path + i + 1;
    size_t n = pl - (size_t)(b - path);
    if (n > 5 && strncmp(b + n - 5, ".gguf", 5) == 0)
        n -= 5;
    else if (n > 4 && strncmp(b + n - 4, ".bin", 4) == 0)
        n -= 4;
    return tm_strndup(b, n);
}

tm_status tm_server_init(const tm_server_params *params, tm_server **out) {
    *out = NULL;
    if (params->model_path == NULL)
        return tm_fail(TM_ERR_INVALID, "server: no model path");
    if (params->port < 0 || params->port > 65535)
        return tm_fail(TM_ERR_INVALID, "server: port %d outside [0, 65535]", params->port);
    tm_server *srv = tm_calloc(1, sizeof *srv);
    if (srv == NULL)
        return TM_ERR_NOMEM;
    tm_status st = TM_OK;
    srv->p = *params;
    if (srv->p.max_body_bytes == 0)
        srv->p.max_body_bytes = 8u << 20;
    srv->host = tm_strdup(params->host ? params->host : "127.0.0.1");
    srv->model_path = tm_strdup(params->model_path);
    srv->api_key = params->api_key && params->api_key[0] ? tm_strdup(params->api_key) : NULL;
    srv->tok_path = params->tokenizer_path ? tm_strdup(params->tokenizer_path) : NULL;
    srv->tmpl_arg = params->chat_template ? tm_strdup(params->chat_template) : NULL;
    srv->model_id =
        params->model_id ? tm_strdup(params->model_id) : srv_default_id(params->model_path);
    pthread_mutex_init(&srv->emb_mu, NULL);
    pthread_cond_init(&srv->emb_cv, NULL);
    if (params->embedding_model_path != NULL) {
        srv->emb_path = tm_strdup(params->embedding_model_path);
        srv->emb_id = params->embedding_model_id ? tm_strdup(params->embedding_model_id)
                                                 : srv_default_id(params->embedding_model_path);
        if (!srv->emb_path || !srv->emb_id) {
            st = TM_ERR_NOMEM;
            goto fail;
        }
    }
    if (!srv->host || !srv->model_path || !srv->model_id) {
        st = TM_ERR_NOMEM;
        goto fail;
    }
    st = tm__resp_store_init(params->max_stored_responses > 0 ? params->max_stored_responses : 256,
                             &srv->store);
    if (st != TM_OK)
        goto fail;
    srv->t_start_s = tm__srv_now();
    srv->created = (int64_t)time(NULL);
    srv->seed_state = (uint64_t)time(NULL) ^ ((uint64_t)(uintptr_t)srv << 16);
    atomic_init(&srv->stop, false);
    atomic_init(&srv->load_state, LOAD_LOADING);

    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = params->port;
    info.iface = srv->host;
    info.protocols = srv_protocols;
    info.user = srv;
    info.max_http_header_data = 8192;
    info.options = LWS_SERVER_OPTION_DISABLE_IPV6;
    info.timeout_secs = 30;
    srv->lws = lws_create_context(&info);
    if (srv->lws == NULL) {
        st = tm_fail(TM_ERR_IO, "server: cannot listen on %s:%d (port in use?)", srv->host,
                     params->port);
        goto fail;
    }
    struct lws_vhost *vh = lws_get_vhost_by_name(srv->lws, "default");
    srv->port = vh ? lws_get_vhost_listen_port(vh) : params->port;
    if (pthread_create(&srv->loader, NULL, srv_loader_main, srv) != 0) {
        st = tm_fail(TM_ERR_NOMEM, "server: cannot start the loader thread");
        goto fail;
    }
    srv->loader_started = true;
    *out = srv;
    return TM_OK;
fail:
    tm_server_free(srv);
    return st;
}

int32_t tm_server_port(const tm_server *srv) { return srv->port; }

void tm_server_stop(tm_server *srv) {
    atomic_store_explicit(&srv->stop, true, memory_order_relaxed);
    if (srv->lws)
        lws_cancel_service(srv->lws);
}

tm_status tm_server_run(tm_server *srv) {
    while (!atomic_load_explicit(&srv->stop, memory_order_relaxed))
        if (lws_service(srv->lws, 0) < 0)
            break;
    if (atomic_load_explicit(&srv->load_state, memory_order_acquire) == LOAD_FAILED)
        return tm_fail(TM_ERR_IO, "%s", srv->load_error);
    return TM_OK;
}

void tm_server_free(tm_server *srv) {
    if (srv == NULL)
        return;
    if (srv->loader_started)
        pthread_join(srv->loader, NULL);
    /* Stop generating before the connections (and their txns) go away. */
    tm_sched_free(srv->sched);
    srv->sched = NULL;
    tm__emb_free(srv); /* stops the embedding worker; jobs left are dropped below */
    if (srv->lws)
        lws_context_destroy(srv->lws); /* closes connections: CLOSED_HTTP frees their txns */
    while (srv->active != NULL)
        tm__txn_free(srv, srv->active);
    tm_chat_template_free(srv->tmpl);
    tm_chat_template_source_free(&srv->tsrc);
    tm_tokenizer_free(srv->tok);
    tm_model_free(srv->model);
    tm_free(srv->bos_text);
    tm_free(srv->eos_text);
    tm_free(srv->host);
    tm_free(srv->model_path);
    tm_free(srv->api_key);
    tm_free(srv->tok_path);
    tm_free(srv->tmpl_arg);
    tm_free(srv->model_id);
    tm__resp_store_free(srv->store);
    pthread_mutex_destroy(&srv->emb_mu);
    pthread_cond_destroy(&srv->emb_cv);
    tm_free(srv->emb_path);
    tm_free(srv->emb_id);
    tm_free(srv);
}
