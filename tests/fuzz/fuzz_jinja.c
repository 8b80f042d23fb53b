/* fuzz_jinja.c - libFuzzer harness for the chat template interpreter: the input
 * is template text, compiled and rendered with a fixed conversation (system,
 * user, assistant with a tool call, tool result) and tools. Tight limits keep
 * each run fast; any status is fine, crashes, leaks and sanitizer reports are not. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tm/tm_chat_template.h"

static const char *const MESSAGES =
    "[{\"role\": \"system\", \"content\": \"Be brief.\"},"
    " {\"role\": \"user\", \"content\": \"Weather in Z\\u00fcrich? \\ud83c\\udf89\"},"
    " {\"role\": \"assistant\", \"content\": \"\", \"tool_calls\": [{\"type\": \"function\","
    "   \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Z\\u00fcrich\"}}}]},"
    " {\"role\": \"tool\", \"content\": \"{\\\"t\\\": 21}\"},"
    " {\"role\": \"assistant\", \"content\": \"<think>\\nok\\n</think>\\n\\n21 C\"}]";
static const char *const TOOLS =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\":"
    " {\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}}}}}]";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0 || size > 64 * 1024)
        return 0;
    tm_chat_template_params tp = tm_chat_template_params_default();
    tp.source = (const char *)data;
    tp.source_len = size;
    tp.name = "fuzz";
    tm_chat_template *t = NULL;
    if (tm_chat_template_init(&tp, &t) != TM_OK)
        return 0;
    tm_chat_render_params rp = tm_chat_render_params_default();
    rp.messages_json = MESSAGES;
    rp.tools_json = TOOLS;
    rp.add_generation_prompt = (size & 1) != 0;
    rp.bos_token = "<s>";
    rp.eos_token = "</s>";
    rp.max_steps = 200000;
    rp.max_output_bytes = (size_t)1 << 20;
    rp.max_memory_bytes = (size_t)64 << 20;
    char  *out = NULL;
    size_t n = 0;
    if (tm_chat_template_render(t, &rp, &out, &n) == TM_OK && n > 0)
        (void)memchr(out, 0, n);
    tm_free(out);
    tm_chat_template_free(t);
    return 0;
}
