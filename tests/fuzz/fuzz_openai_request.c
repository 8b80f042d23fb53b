/*
 * fuzz_openai_request.c - libFuzzer harness for the OpenAI request parser:
 * any bytes as a /v1/chat/completions and a /v1/completions body. Either the
 * parse succeeds and every field is in range, or it fails with an error in
 * OpenAI's shape (an HTTP status, a type and a message); never a crash.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tm/tm_server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int k = 0; k < 2; k++) {
        tm_api_request r;
        tm_api_error   e;
        tm_api_kind    kind = k == 0 ? TM_API_CHAT : TM_API_COMPLETION;
        if (tm_api_request_parse(kind, (const char *)data, size, &r, &e) == TM_OK) {
            TM_ASSERT(r.model != NULL);
            TM_ASSERT(r.n >= 1 && r.n <= TM_API_MAX_N);
            TM_ASSERT(r.n_stop >= 0 && r.n_stop <= TM_SCHED_MAX_STOP);
            TM_ASSERT(kind == TM_API_CHAT ? r.messages_json != NULL
                                          : (r.prompt != NULL) != (r.prompt_ids != NULL));
            /* 0: completions with echo only (score the prompt) */
            TM_ASSERT(r.max_tokens == -1 || r.max_tokens >= 1 ||
                      (r.max_tokens == 0 && kind == TM_API_COMPLETION && r.echo));
            tm_api_request_free(&r);
        } else {
            TM_ASSERT(e.http_status >= 400 && e.http_status < 600);
            TM_ASSERT(e.message[0] != '\0');
            char *j = tm_api_error_json(&e);
            TM_ASSERT(j != NULL);
            tm_free(j);
        }
    }
    return 0;
}
