/*
 * tm_chat_template.h - chat templates: a small sandboxed Jinja interpreter that
 * renders a conversation to the prompt text byte for byte as Hugging Face
 * transformers' apply_chat_template(tokenize=False) does.
 *
 *     tm_chat_template_source src = {0};
 *     if (tm_chat_template_source_load("models/qwen3", false, &src) != TM_OK) die(tm_last_error());
 *     tm_chat_template_params tp = tm_chat_template_params_default();
 *     tp.source = src.text;
 *     tp.name = src.origin;
 *     tm_chat_template *t = NULL;
 *     if (tm_chat_template_init(&tp, &t) != TM_OK) die(tm_last_error()); // "name:3:7: ..."
 *     tm_chat_render_params rp = tm_chat_render_params_default();
 *     rp.messages_json = "[{\"role\":\"user\",\"content\":\"Hi\"}]";
 *     rp.add_generation_prompt = true;
 *     rp.bos_token = src.bos_token;
 *     rp.eos_token = src.eos_token;
 *     char *text = NULL;
 *     if (tm_chat_template_render(t, &rp, &text, NULL) == TM_OK) fputs(text, stdout);
 *     tm_free(text);
 *     tm_chat_template_free(t);
 *     tm_chat_template_source_free(&src);
 *
 * Semantics are Jinja2's ImmutableSandboxedEnvironment with trim_blocks and
 * lstrip_blocks on and the loopcontrols extension, plus transformers' tojson
 * (json.dumps with ensure_ascii=False), raise_exception, strftime_now and the
 * {% generation %} tag. Syntax and runtime errors come back as TM_ERR_FORMAT
 * with "name:line:col: message" in tm_last_error(); raise_exception() in the
 * template gives TM_ERR_INVALID with the template's message. Limits on steps,
 * output size, recursion and memory turn runaway templates into errors.
 *
 * Threads: a tm_chat_template is immutable after init; any number of threads
 * may render with it at once (each render has its own state).
 */
#ifndef TM_CHAT_TEMPLATE_H
#define TM_CHAT_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_status.h"

typedef struct tm_chat_template tm_chat_template; /* opaque */

typedef struct tm_chat_template_params {
    const char *source;     /* template text (UTF-8); borrowed during init only */
    size_t      source_len; /* bytes; 0 = strlen(source) */
    const char *name;       /* used in error messages; default "template"; copied */
} tm_chat_template_params;

tm_chat_template_params tm_chat_template_params_default(void);

/* Compiles a template. On failure *out stays NULL. */
tm_status tm_chat_template_init(const tm_chat_template_params *params, tm_chat_template **out);
void      tm_chat_template_free(tm_chat_template *t); /* NULL is a no-op */

typedef struct tm_chat_render_params {
    const char *messages_json; /* JSON array of {role, content, ...}; required; borrowed */
    const char *tools_json;    /* JSON array of tool schemas, or NULL (tools = None) */
    const char *extra_json;    /* JSON object of extra variables (e.g. {"enable_thinking":
                                  false}), or NULL; they may override the ones below */
    bool        add_generation_prompt;
    const char *bos_token; /* NULL: bos_token is undefined in the template */
    const char *eos_token; /* NULL: eos_token is undefined */
    /* limits */
    size_t  max_output_bytes; /* default 16 MiB */
    int64_t max_steps;        /* node evaluations; default 10,000,000 */
    int32_t max_depth;        /* macro/caller call depth; default 200 */
    size_t  max_memory_bytes; /* render arena; default 256 MiB */
} tm_chat_render_params;

tm_chat_render_params tm_chat_render_params_default(void);

/* Renders into *out (NUL-terminated; caller frees with tm_free). *out_len, when
 * not NULL, receives the byte length (the text may hold NUL bytes from the
 * input). On failure *out stays NULL. */
tm_status tm_chat_template_render(const tm_chat_template *t, const tm_chat_render_params *params,
                                  char **out, size_t *out_len);

/* ---- where templates come from ------------------------------------------- */
typedef struct tm_chat_template_source {
    char *text;      /* template text */
    char *bos_token; /* special tokens found beside the template, or NULL */
    char *eos_token;
    char *origin; /* "path:chat_template[tool_use]" etc., for messages */
} tm_chat_template_source;

/* Finds the chat template of a model. path may be a Hugging Face folder
 * (tokenizer_config.json, else chat_template.jinja), a tokenizer_config.json, a
 * .jinja file or a GGUF file (tokenizer.chat_template). When the config holds
 * a list of named templates, "tool_use" is chosen if want_tool_use and present,
 * else "default". Strings in *out are owned by it; free with
 * tm_chat_template_source_free. TM_ERR_NOT_FOUND when the model has none. */
tm_status tm_chat_template_source_load(const char *path, bool want_tool_use,
                                       tm_chat_template_source *out);
void      tm_chat_template_source_free(tm_chat_template_source *s); /* zeroed is a no-op */

/* Built-in fallback templates for models that ship none; chosen explicitly. */
typedef enum tm_chat_builtin {
    TM_CHAT_BUILTIN_CHATML = 0, /* <|im_start|>role\ncontent<|im_end|>\n */
    TM_CHAT_BUILTIN_LLAMA2 = 1, /* [INST] <<SYS>> ... [/INST] */
    TM_CHAT_BUILTIN_LLAMA3 = 2, /* <|start_header_id|>role<|end_header_id|> */
    TM_CHAT_BUILTIN_ZEPHYR = 3, /* <|user|>\n...</s> */
    TM_CHAT_BUILTIN_COUNT
} tm_chat_builtin;

/* Static template text; NULL for an unknown value. */
const char *tm_chat_builtin_text(tm_chat_builtin which);
/* "chatml", "llama2", "llama3", "zephyr" -> value; TM_ERR_NOT_FOUND otherwise. */
tm_status tm_chat_builtin_from_name(const char *name, tm_chat_builtin *out);

#endif /* TM_CHAT_TEMPLATE_H */
