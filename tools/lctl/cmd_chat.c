/*
 * cmd_chat.c - `lctl chat MODEL`: a conversation on the terminal through the
 * model's own chat template.
 *
 * Each user line becomes a message; the whole conversation is rendered with the
 * template (GGUF tokenizer.chat_template, an HF folder's template, --template
 * FILE or --builtin NAME), tokenized with user text kept literal (tm_chat.h) and
 * only the tokens past the part already in the KV cache are decoded. The reply
 * streams to stdout and ends at end-of-sequence or any special token.
 * Without a terminal on stdin, every input line is one user turn (scripts, tests).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lctl.h"
#include "tm/tm_chat.h"
#include "tm/tm_chat_template.h"
#include "tm/tm_model.h"
#include "tm/tm_sampler.h"
#include "tm/tm_tokenizer.h"

static void chat_usage(FILE *f) {
    fprintf(f, "usage: lctl chat [MODEL] [options]\n\n"
               "Chats with MODEL through its chat template (default model: " LCTL_DEFAULT_MODEL
               ").\nType a message and press Enter; an empty line or end of input quits. Without\n"
               "a terminal, each input line is one user message.\n\n"
               "options:\n"
               "  --system TEXT        system message\n"
               "  --template FILE      Jinja chat template to use instead of the model's\n"
               "  --builtin NAME       built-in template: chatml, llama2, llama3, zephyr\n"
               "  -n, --n-predict N    most tokens per reply (default 512)\n"
               "  -t, --threads N      compute threads (default: online CPUs)\n"
               "  -c, --ctx-size N     context positions (default min(trained, 4096))\n"
               "  --temp T             temperature; 0 = greedy (default 0.7)\n"
               "  --top-k K            (default 40)\n"
               "  --top-p P            (default 0.9)\n"
               "  --seed S             sampling seed\n"
               "  --kv-type f16|f32    KV cache precision (default f16; f32 stores K and V\n"
               "                       unrounded, at twice the memory); also --kv-f16, --kv-f32\n"
               "  --act-type q8|q16|f32\n"
               "                       activation precision in matmuls (default q8; q16 ~1e-4\n"
               "                       error, matches a float reference; f32 exact, slowest);\n"
               "                       also --exact (= f32)\n"
               "  -h, --help           this text\n");
}

typedef struct chat_state {
    tm_model               *model;
    tm_tokenizer           *tok;
    tm_ctx                 *ctx;
    tm_sampler             *smp;
    tm_chat_template       *tmpl;
    tm_chat_template_source src;
    json_t                 *messages;
    int32_t                *cached; /* ids now in the KV cache */
    size_t                  n_cached, cap_cached;
} chat_state;

/* Decodes what the cache lacks of ids: the longest common prefix with the ids
 * already cached is kept (tm_ctx_truncate), the rest is decoded in batches. */
/* Records that id now sits in the KV cache at position n_cached. */
static tm_status chat_cache_push(chat_state *s, int32_t id) {
    if (s->n_cached == s->cap_cached) {
        size_t   cap = s->cap_cached ? s->cap_cached * 2 : 1024;
        int32_t *c = tm_realloc(s->cached, cap * sizeof *c);
        if (c == NULL)
            return tm_fail(TM_ERR_NOMEM, "out of memory");
        s->cached = c;
        s->cap_cached = cap;
    }
    s->cached[s->n_cached++] = id;
    return TM_OK;
}

static tm_status chat_feed(chat_state *s, const int32_t *ids, size_t n) {
    size_t same = 0;
    while (same < n && same < s->n_cached && ids[same] == s->cached[same])
        same++;
    if (same == n && same > 0)
        same--; /* the last token must be decoded again to get its logits */
    TM_TRY(tm_ctx_truncate(s->ctx, (int32_t)same));
    if (n >= (size_t)tm_ctx_n_ctx(s->ctx))
        return tm_fail(TM_ERR_FULL,
                       "the conversation (%zu tokens) no longer fits the context of "
                       "%d: start a new chat or raise --ctx-size",
                       n, tm_ctx_n_ctx(s->ctx));
    for (size_t i = same; i < n; i += 64) {
        size_t k = n - i < 64 ? n - i : 64;
        TM_TRY(tm_ctx_decode(s->ctx, ids + i, (int32_t)k));
    }
    s->n_cached = 0;
    for (size_t i = 0; i < n; i++)
        TM_TRY(chat_cache_push(s, ids[i]));
    return TM_OK;
}

/* Generates one reply; its text goes to stdout and into *reply (caller frees). */
static tm_status chat_reply(chat_state *s, int64_t n_predict, char **reply) {
    *reply = NULL;
    char *rendered = NULL, *msgs = json_dumps(s->messages, JSON_COMPACT);
    if (msgs == NULL)
        return tm_fail(TM_ERR_NOMEM, "out of memory");
    tm_chat_render_params rp = tm_chat_render_params_default();
    rp.messages_json = msgs;
    rp.add_generation_prompt = true;
    rp.bos_token = s->src.bos_token;
    rp.eos_token = s->src.eos_token;
    size_t    len = 0, n_ids = 0;
    int32_t  *ids = NULL;
    tm_status st = tm_chat_template_render(s->tmpl, &rp, &rendered, &len);
    if (st == TM_OK)
        st = tm_chat_tokenize(s->tok, rendered, len, msgs, &ids, &n_ids);
    if (st == TM_OK)
        st = chat_feed(s, ids, n_ids);
    tm_detokenizer *d = NULL;
    if (st == TM_OK)
        st = tm_detokenizer_init(s->tok, true, &d);
    size_t cap = 256, used = 0;
    char  *out = st == TM_OK ? tm_malloc(cap) : NULL;
    if (st == TM_OK && out == NULL)
        st = tm_fail(TM_ERR_NOMEM, "out of memory");
    int32_t eos = tm_tokenizer_eos_id(s->tok);
    for (int64_t i = 0; st == TM_OK && i < n_predict; i++) {
        int32_t next = tm_sampler_sample(s->smp, tm_ctx_logits(s->ctx, -1));
        tm_sampler_accept(s->smp, next);
        if (next == eos || tm_tokenizer_is_special(s->tok, next))
            break; /* end of turn: the next render writes the template's own closing */
        const char *b;
        size_t      bl;
        st = tm_detokenizer_feed(d, next, &b, &bl);
        if (st == TM_OK && bl > 0) {
            fwrite(b, 1, bl, stdout);
            fflush(stdout);
            if (used + bl + 1 > cap) {
                while (used + bl + 1 > cap)
                    cap *= 2;
                char *nb = tm_realloc(out, cap);
                if (nb == NULL) {
                    st = tm_fail(TM_ERR_NOMEM, "out of memory");
                    break;
                }
                out = nb;
            }
            memcpy(out + used, b, bl);
            used += bl;
        }
        if (st == TM_OK && tm_ctx_n_past(s->ctx) + 1 >= tm_ctx_n_ctx(s->ctx))
            break; /* context full: end the reply here */
        if (st == TM_OK)
            st = tm_ctx_decode(s->ctx, &next, 1);
        if (st == TM_OK)
            st = chat_cache_push(s, next);
    }
    if (st == TM_OK) {
        const char *b;
        size_t      bl;
        if (tm_detokenizer_flush(d, &b, &bl) == TM_OK && bl > 0 && used + bl + 1 <= cap) {
            fwrite(b, 1, bl, stdout);
            memcpy(out + used, b, bl);
            used += bl;
        }
        out[used] = '\0';
        *reply = out;
        out = NULL;
        printf("\n");
        fflush(stdout);
    }
    if (st != TM_OK) { /* the cache may be ahead of or behind n_cached: start over */
        tm_ctx_clear(s->ctx);
        s->n_cached = 0;
    }
    tm_detokenizer_free(d);
    tm_free(out);
    tm_free(ids);
    tm_free(rendered);
    free(msgs);
    return st;
}

static int add_message(json_t *msgs, const char *role, const char *content) {
    json_t *m = json_pack("{s:s, s:s}", "role", role, "content", content);
    return m == NULL ? -1 : json_array_append_new(msgs, m);
}

int lctl_chat(int argc, char **argv) {
    const char       *model_path = NULL, *system = NULL, *tmpl_file = NULL, *builtin = NULL;
    long              n_predict = 512, n_threads = 0, n_ctx = 0;
    tm_dtype          kv = tm_ctx_params_default().kv_dtype;
    tm_act_type       act = tm_ctx_params_default().act_type;
    tm_sampler_params sp = tm_sampler_params_default();
    sp.temp = 0.7f;
    sp.top_k = 40;
    sp.top_p = 0.9f;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        bool        takes =
            strcmp(a, "--system") == 0 || strcmp(a, "--template") == 0 ||
            strcmp(a, "--builtin") == 0 || strcmp(a, "-n") == 0 || strcmp(a, "--n-predict") == 0 ||
            strcmp(a, "-t") == 0 || strcmp(a, "--threads") == 0 || strcmp(a, "-c") == 0 ||
            strcmp(a, "--ctx-size") == 0 || strcmp(a, "--temp") == 0 || strcmp(a, "--top-k") == 0 ||
            strcmp(a, "--top-p") == 0 || strcmp(a, "--seed") == 0;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            chat_usage(stdout);
            return 0;
        }
        int n_opt = lctl_parse_kv_option("lctl chat", a, val, &kv);
        if (n_opt == 0)
            n_opt = lctl_parse_act_option("lctl chat", a, val, &act);
        if (n_opt != 0) {
            if (n_opt < 0)
                return 2;
            i += n_opt - 1;
            continue;
        }
        if (takes && val == NULL) {
            fprintf(stderr, "lctl chat: %s needs a value\n", a);
            return 2;
        }
        if (takes)
            i++;
        if (!strcmp(a, "--system"))
            system = val;
        else if (!strcmp(a, "--template"))
            tmpl_file = val;
        else if (!strcmp(a, "--builtin"))
            builtin = val;
        else if (a[0] == '-' && takes) { /* the numeric options */
            static const struct {
                const char *name, *alt;
                double      lo, hi;
                bool        integer;
            } nums[] = {
                {"-n", "--n-predict", 1, 1 << 24, true},      {"-t", "--threads", 1, 512, true},
                {"-c", "--ctx-size", 16, 1 << 24, true},      {"--temp", NULL, 0, 100, false},
                {"--top-k", NULL, 0, 1 << 30, true},          {"--top-p", NULL, 0, 1, false},
                {"--seed", NULL, 0, 9007199254740992.0, true}};
            double v = 0;
            size_t k = 0;
            while (k < sizeof nums / sizeof nums[0] && strcmp(a, nums[k].name) != 0 &&
                   (nums[k].alt == NULL || strcmp(a, nums[k].alt) != 0))
                k++;
            if (k == sizeof nums / sizeof nums[0] ||
                lctl_parse_num("lctl chat", a, val, nums[k].lo, nums[k].hi, nums[k].integer, &v) !=
                    0)
                return 2;
            switch (k) {
            case 0: n_predict = (long)v; break;
            case 1: n_threads = (long)v; break;
            case 2: n_ctx = (long)v; break;
            case 3: sp.temp = (float)v; break;
            case 4: sp.top_k = (int32_t)v; break;
            case 5: sp.top_p = (float)v; break;
            default: sp.seed = (uint64_t)v; break;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "lctl chat: unknown option '%s' (see --help)\n", a);
            return 2;
        } else if (model_path == NULL)
            model_path = a;
        else {
            fprintf(stderr, "lctl chat: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (model_path == NULL && (model_path = lctl_default_model("lctl chat")) == NULL)
        return 1;
    if (!(sp.top_p > 0)) {
        fprintf(stderr, "lctl chat: --top-p must be above 0\n");
        return 2;
    }

    int        rc = 1;
    chat_state s = {0};
    s.messages = json_array();
    tm_model_params mp = tm_model_params_default();
    lctl_model_prefetch(model_path);
    mp.path = model_path;
    if (s.messages == NULL || tm_model_load(&mp, &s.model) != TM_OK)
        goto fail;
    tm_tokenizer_params tp = tm_tokenizer_params_default();
    tp.gguf = tm_model_gguf(s.model);
    tp.path = tp.gguf ? NULL : model_path;
    if (tm_tokenizer_init(&tp, &s.tok) != TM_OK)
        goto fail;
    if (builtin != NULL) {
        tm_chat_builtin b;
        if (tm_chat_builtin_from_name(builtin, &b) != TM_OK)
            goto fail;
        s.src.text = tm_strdup(tm_chat_builtin_text(b));
        fprintf(stderr, "lctl chat: using the built-in '%s' template\n", builtin);
    } else if (tm_chat_template_source_load(tmpl_file ? tmpl_file : model_path, false, &s.src) !=
               TM_OK) {
        fprintf(stderr,
                "lctl chat: %s\n(the model ships no chat template: pick one with "
                "--builtin chatml or --template FILE)\n",
                tm_last_error());
        goto done;
    }
    if (s.src.bos_token == NULL && tm_tokenizer_bos_id(s.tok) >= 0) {
        size_t      bl;
        const char *b = tm_tokenizer_token_text(s.tok, tm_tokenizer_bos_id(s.tok), &bl);
        s.src.bos_token = b ? tm_strndup(b, bl) : NULL;
    }
    if (s.src.eos_token == NULL && tm_tokenizer_eos_id(s.tok) >= 0) {
        size_t      el;
        const char *e = tm_tokenizer_token_text(s.tok, tm_tokenizer_eos_id(s.tok), &el);
        s.src.eos_token = e ? tm_strndup(e, el) : NULL;
    }
    tm_chat_template_params ctp = tm_chat_template_params_default();
    ctp.source = s.src.text;
    ctp.name = s.src.origin ? s.src.origin : "template";
    if (s.src.text == NULL || tm_chat_template_init(&ctp, &s.tmpl) != TM_OK)
        goto fail;
    const tm_hparams *hp = tm_model_get_hparams(s.model);
    tm_ctx_params     cp = tm_ctx_params_default();
    cp.n_threads = (int32_t)n_threads;
    cp.n_ctx = n_ctx ? (int32_t)n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    cp.n_batch = 64;
    cp.kv_dtype = kv;
    cp.act_type = act;
    if (tm_ctx_init(s.model, &cp, &s.ctx) != TM_OK ||
        tm_sampler_init(&sp, hp->n_vocab, &s.smp) != TM_OK)
        goto fail;
    if (system != NULL && add_message(s.messages, "system", system) != 0)
        goto fail;

    bool tty = isatty(STDIN_FILENO);
    char line[16384];
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        if (fgets(line, sizeof line, stdin) == NULL)
            break;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '\0') {
            if (tty)
                break;
            continue;
        }
        if (add_message(s.messages, "user", line) != 0)
            goto fail;
        char *reply = NULL;
        if (chat_reply(&s, n_predict, &reply) != TM_OK) {
            fprintf(stderr, "lctl chat: %s\n", tm_last_error());
            json_array_remove(s.messages, json_array_size(s.messages) - 1);
            continue; /* the conversation goes on without that turn */
        }
        int r = add_message(s.messages, "assistant", reply);
        tm_free(reply);
        if (r != 0)
            goto fail;
    }
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "lctl chat: %s\n", tm_last_error());
done:
    tm_free(s.cached);
    tm_sampler_free(s.smp);
    tm_ctx_free(s.ctx);
    tm_chat_template_free(s.tmpl);
    tm_chat_template_source_free(&s.src);
    tm_tokenizer_free(s.tok);
    tm_model_free(s.model);
    json_decref(s.messages);
    return rc;
}
