/*
 * cmd_template.c - `lctl template render`: renders a conversation with a
 * model's chat template and prints exactly the rendered text (no newline is
 * added), so its output can be compared byte for byte with transformers'
 * apply_chat_template(tokenize=False).
 */
#include <stdio.h>
#include <string.h>

#include "lctl.h"
#include "tm/tm_chat.h"
#include "tm/tm_chat_template.h"
#include "tm/tm_io.h"
#include "tm/tm_tokenizer.h"

#define TEMPLATE_MAX_JSON_BYTES ((size_t)256 << 20)

static void template_usage(FILE *f) {
    fprintf(f, "usage: lctl template render (MODEL | --template FILE | --builtin NAME)\n"
               "                            --messages FILE.json [options]\n\n"
               "Renders a conversation with a chat template and prints the text exactly (no\n"
               "newline added). MODEL is a Hugging Face folder (tokenizer_config.json or\n"
               "chat_template.jinja), a tokenizer_config.json or a GGUF file.\n\n"
               "options:\n"
               "  --template FILE          template text from FILE (.jinja)\n"
               "  --builtin NAME           built-in template: chatml, llama2, llama3, zephyr\n"
               "  --messages FILE          JSON array of messages (required)\n"
               "  --tools FILE             JSON array of tool schemas\n"
               "  --vars FILE              JSON object of extra template variables\n"
               "  --add-generation-prompt  end with the assistant turn header\n"
               "  --bos-token T            bos_token (default: from the model, if any)\n"
               "  --eos-token T            eos_token (default: from the model, if any)\n"
               "  --ids TOKENIZER          print the token ids of the rendered text instead,\n"
               "                           as the engine feeds them: the template's special\n"
               "                           tokens count, message text is never parsed for them\n"
               "                           (TOKENIZER: tokenizer.json, HF folder or GGUF)\n"
               "  -h, --help               this text\n");
}

static int fail(const char *what) {
    fprintf(stderr, "lctl template: %s: %s\n", what, tm_last_error());
    return 1;
}

/* --ids: the ids the engine would feed for this rendered conversation (tm_chat.h). */
static int print_chat_ids(const char *tok_path, const char *text, size_t len, const char *msgs) {
    tm_tokenizer       *tok = NULL;
    tm_tokenizer_params tkp = tm_tokenizer_params_default();
    tkp.path = tok_path;
    if (tm_tokenizer_init(&tkp, &tok) != TM_OK)
        return fail(tok_path);
    int32_t *ids = NULL;
    size_t   n = 0;
    int      rc = 0;
    if (tm_chat_tokenize(tok, text, len, msgs, &ids, &n) != TM_OK) {
        rc = fail("tokenize");
    } else {
        for (size_t i = 0; i < n; i++)
            printf(i ? " %d" : "%d", ids[i]);
        printf("\n");
    }
    tm_free(ids);
    tm_tokenizer_free(tok);
    return rc;
}

int lctl_template(int argc, char **argv) {
    const char *model = NULL, *tmpl_file = NULL, *builtin = NULL, *messages = NULL;
    const char *tools = NULL, *vars = NULL, *bos = NULL, *eos = NULL, *ids_tok = NULL;
    bool        agp = false;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        template_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "render") != 0) {
        fprintf(stderr, "lctl template: unknown action '%s'\n\n", argv[1]);
        template_usage(stderr);
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char  *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            template_usage(stdout);
            return 0;
        } else if (strcmp(a, "--add-generation-prompt") == 0) {
            agp = true;
            continue;
        } else if (strcmp(a, "--template") == 0) {
            slot = &tmpl_file;
        } else if (strcmp(a, "--builtin") == 0) {
            slot = &builtin;
        } else if (strcmp(a, "--messages") == 0) {
            slot = &messages;
        } else if (strcmp(a, "--tools") == 0) {
            slot = &tools;
        } else if (strcmp(a, "--vars") == 0) {
            slot = &vars;
        } else if (strcmp(a, "--bos-token") == 0) {
            slot = &bos;
        } else if (strcmp(a, "--eos-token") == 0) {
            slot = &eos;
        } else if (strcmp(a, "--ids") == 0) {
            slot = &ids_tok;
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "lctl template: unknown option '%s'\n", a);
            return 2;
        } else if (model == NULL) {
            model = a;
            continue;
        } else {
            fprintf(stderr, "lctl template: unexpected argument '%s'\n", a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "lctl template: %s needs a value\n", a);
            return 2;
        }
        *slot = argv[++i];
    }
    if (messages == NULL || (model != NULL) + (tmpl_file != NULL) + (builtin != NULL) != 1) {
        fprintf(stderr, "lctl template: need --messages and exactly one of MODEL, --template, "
                        "--builtin\n");
        return 2;
    }

    int                     rc = 1;
    tm_chat_template_source src = {0};
    tm_chat_template       *t = NULL;
    char                   *msg_text = NULL, *tools_text = NULL, *vars_text = NULL, *out = NULL;
    size_t                  n = 0, out_len = 0;
    tm_chat_template_params tp = tm_chat_template_params_default();
    tm_chat_render_params   rp = tm_chat_render_params_default();

    if (tm_file_read_all(messages, TEMPLATE_MAX_JSON_BYTES, &msg_text, &n) != TM_OK) {
        rc = fail(messages);
        goto done;
    }
    if (tools != NULL &&
        tm_file_read_all(tools, TEMPLATE_MAX_JSON_BYTES, &tools_text, &n) != TM_OK) {
        rc = fail(tools);
        goto done;
    }
    if (vars != NULL && tm_file_read_all(vars, TEMPLATE_MAX_JSON_BYTES, &vars_text, &n) != TM_OK) {
        rc = fail(vars);
        goto done;
    }
    if (builtin != NULL) {
        tm_chat_builtin b;
        if (tm_chat_builtin_from_name(builtin, &b) != TM_OK) {
            rc = fail("--builtin");
            goto done;
        }
        tp.source = tm_chat_builtin_text(b);
        tp.name = builtin;
    } else {
        const char *path = model ? model : tmpl_file;
        tm_status   st = model ? tm_chat_template_source_load(path, tools != NULL, &src)
                               : tm_file_read_all(path, (size_t)4 << 20, &src.text, &n);
        if (st != TM_OK) {
            rc = fail("source");
            goto done;
        }
        tp.source = src.text;
        tp.name = src.origin ? src.origin : path;
    }
    if (tm_chat_template_init(&tp, &t) != TM_OK) {
        rc = fail("compile");
        goto done;
    }
    rp.messages_json = msg_text;
    rp.tools_json = tools_text;
    rp.extra_json = vars_text;
    rp.add_generation_prompt = agp;
    rp.bos_token = bos ? bos : src.bos_token;
    rp.eos_token = eos ? eos : src.eos_token;
    if (tm_chat_template_render(t, &rp, &out, &out_len) != TM_OK) {
        rc = fail("render");
        goto done;
    }
    if (ids_tok != NULL) {
        rc = print_chat_ids(ids_tok, out, out_len, msg_text);
        goto done;
    }
    if (fwrite(out, 1, out_len, stdout) != out_len || fflush(stdout) != 0) {
        fprintf(stderr, "lctl template: write error\n");
        goto done;
    }
    rc = 0;
done:
    tm_free(out);
    tm_free(msg_text);
    tm_free(tools_text);
    tm_free(vars_text);
    tm_chat_template_free(t);
    tm_chat_template_source_free(&src);
    return rc;
}
