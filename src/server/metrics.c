/*
 * metrics.c - GET /metrics: Prometheus text exposition (format 0.0.4) of the
 * server's request counters and the scheduler's statistics.
 *
 * Names are tensormesh_*; the two series Kubernetes' inference gateway scrapes
 * are also exported under vLLM's names (vllm:num_requests_waiting,
 * vllm:kv_cache_usage_perc), as are vllm:num_requests_running and the
 * token counters, so dashboards built for vLLM work unchanged.
 *
 * Pure function of its input: any thread.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "tm/tm_server.h"

const char *const tm_metrics_route_names[TM_METRICS_N_ROUTES] = {"/v1/models",
                                                                 "/v1/chat/completions",
                                                                 "/v1/completions",
                                                                 "/tokenize",
                                                                 "/detokenize",
                                                                 "/health",
                                                                 "/metrics",
                                                                 "other",
                                                                 "/v1/embeddings",
                                                                 "/v1/responses",
                                                                 "/"};
const int tm_metrics_codes[TM_METRICS_N_CODES] = {200, 400, 401, 404, 405, 413, 429, 500, 503, 0};

typedef struct mbuf {
    char  *p;
    size_t len, cap;
    bool   oom;
} mbuf;

static void mb_printf(mbuf *b, const char *fmt, ...) TM_PRINTF_FMT(2, 3);
static void mb_printf(mbuf *b, const char *fmt, ...) {
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = b->cap * 2 + (size_t)n;
        char  *np = tm_realloc(b->p, nc);
        if (np == NULL) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
}

static void mb_gauge(mbuf *b, const char *name, const char *help, const char *model, double v) {
    mb_printf(b, "# HELP %s %s\n# TYPE %s gauge\n%s{model_name=\"%s\"} %.17g\n", name, help, name,
              name, model, v);
}

static void mb_counter(mbuf *b, const char *name, const char *help, const char *model, double v) {
    mb_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s{model_name=\"%s\"} %.17g\n", name, help, name,
              name, model, v);
}

char *tm_metrics_render(const tm_metrics_input *in) {
    mbuf b = {.cap = 4096};
    b.p = tm_malloc(b.cap);
    if (b.p == NULL)
        return NULL;
    b.p[0] = '\0';
    /* The model id comes from a file name: keep label values free of quotes and backslashes. */
    char   model[128];
    size_t j = 0;
    for (const char *s = in->model_id ? in->model_id : ""; *s && j + 1 < sizeof model; s++)
        model[j++] = (*s == '"' || *s == '\\' || *s == '\n') ? '_' : *s;
    model[j] = '\0';
    const tm_sched_stats *st = &in->sched;
    double kv_perc = st->kv_total > 0 ? (double)st->kv_used / (double)st->kv_total : 0.0;

    mb_printf(&b, "# HELP tensormesh_http_requests_total HTTP requests by route and status.\n"
                  "# TYPE tensormesh_http_requests_total counter\n");
    for (int r = 0; r < TM_METRICS_N_ROUTES; r++)
        for (int c = 0; c < TM_METRICS_N_CODES; c++)
            if (in->requests[r][c] > 0)
                mb_printf(&b, "tensormesh_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n",
                          tm_metrics_route_names[r], tm_metrics_codes[c],
                          (unsigned long long)in->requests[r][c]);
    mb_gauge(&b, "tensormesh_model_loaded", "1 once the model is loaded.", model,
             in->loaded ? 1 : 0);
    mb_gauge(&b, "tensormesh_uptime_seconds", "Seconds since the server started.", model,
             in->uptime_s);
    mb_gauge(&b, "tensormesh_num_requests_waiting", "Requests waiting for a sequence slot.", model,
             st->n_waiting);
    mb_gauge(&b, "tensormesh_num_requests_running", "Requests holding a sequence slot.", model,
             st->n_running);
    mb_gauge(&b, "tensormesh_num_slots", "Sequence slots (contexts).", model, st->n_parallel);
    mb_gauge(&b, "tensormesh_kv_cache_usage_perc", "Fraction of KV positions in use (0..1).", model,
             kv_perc);
    mb_counter(&b, "tensormesh_prompt_tokens_total", "Prompt tokens prefilled.", model,
               (double)st->prompt_tokens);
    mb_counter(&b, "tensormesh_generation_tokens_total", "Tokens generated.", model,
               (double)st->generation_tokens);
    mb_counter(&b, "tensormesh_requests_finished_total", "Generation requests retired.", model,
               (double)st->n_finished);
    mb_counter(&b, "tensormesh_requests_cancelled_total",
               "Generation requests cancelled (client gone).", model, (double)st->n_cancelled);
    mb_counter(&b, "tensormesh_scheduler_steps_total", "Scheduler iterations that ran the model.",
               model, (double)st->n_steps);
    mb_counter(&b, "tensormesh_prompts_rejected_too_long_total",
               "Prompts refused for not fitting the context.", model,
               (double)in->prompt_tokens_rejected);
    mb_printf(&b, "# HELP tensormesh_time_to_first_token_seconds Time from submit to first token.\n"
                  "# TYPE tensormesh_time_to_first_token_seconds histogram\n");
    for (int i = 0; i < TM_SCHED_TTFT_BUCKETS; i++)
        mb_printf(&b,
                  "tensormesh_time_to_first_token_seconds_bucket{model_name=\"%s\",le=\"%g\"} "
                  "%llu\n",
                  model, tm_sched_ttft_bounds_s[i], (unsigned long long)st->ttft_bucket[i]);
    mb_printf(&b,
              "tensormesh_time_to_first_token_seconds_bucket{model_name=\"%s\",le=\"+Inf\"} "
              "%llu\n"
              "tensormesh_time_to_first_token_seconds_sum{model_name=\"%s\"} %.9g\n"
              "tensormesh_time_to_first_token_seconds_count{model_name=\"%s\"} %llu\n",
              model, (unsigned long long)st->ttft_count, model, st->ttft_sum_s, model,
              (unsigned long long)st->ttft_count);
    /* vLLM-compatible aliases (the names the inference gateway's endpoint picker reads). */
    mb_gauge(&b, "vllm:num_requests_waiting", "Alias of tensormesh_num_requests_waiting.", model,
             st->n_waiting);
    mb_gauge(&b, "vllm:num_requests_running", "Alias of tensormesh_num_requests_running.", model,
             st->n_running);
    mb_gauge(&b, "vllm:kv_cache_usage_perc", "Alias of tensormesh_kv_cache_usage_perc.", model,
             kv_perc);
    mb_counter(&b, "vllm:prompt_tokens_total", "Alias of tensormesh_prompt_tokens_total.", model,
               (double)st->prompt_tokens);
    mb_counter(&b, "vllm:generation_tokens_total", "Alias of tensormesh_generation_tokens_total.",
               model, (double)st->generation_tokens);
    if (b.oom) {
        tm_free(b.p);
        return NULL;
    }
    return b.p;
}
