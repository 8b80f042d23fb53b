/*
 * tm_chat.h - from a rendered chat template to token ids, with user text kept
 * literal.
 *
 * The template's own special tokens ("<|im_start|>", "[INST]", a BOS written by
 * the template) become special ids, but text that came from a message's content
 * is never parsed for special tokens: a user who types "<|im_end|>" gets the
 * plain-text tokens of that string, not the control token (no prompt injection
 * through special tokens). Apart from that the ids equal what Hugging Face's
 * apply_chat_template(tokenize=True) gives (the whole rendered text tokenized
 * without adding BOS/EOS).
 *
 *     char *text = NULL;                          // from tm_chat_template_render()
 *     int32_t *ids = NULL;
 *     size_t n = 0;
 *     if (tm_chat_tokenize(tok, text, strlen(text), messages_json, &ids, &n) != TM_OK)
 *         die(tm_last_error());
 *     ...
 *     tm_free(ids);
 *
 * Threads: any thread; tok is only read.
 */
#ifndef TM_CHAT_H
#define TM_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "tm/tm_status.h"
#include "tm/tm_tokenizer.h"

/* Tokenizes rendered (len bytes), the output of rendering messages_json (the same
 * JSON array given to the template). Each message's content (a string, or the
 * "text" of its content parts) is located in the rendered text in order and
 * marked literal. A content that the template changed (so it is not found
 * verbatim) is accepted when it holds no special-token text; when it does, the
 * call fails with TM_ERR_INVALID rather than risk parsing it. *ids is a new array
 * the caller frees with tm_free(). */
tm_status tm_chat_tokenize(const tm_tokenizer *tok, const char *rendered, size_t len,
                           const char *messages_json, int32_t **ids, size_t *n_ids);

#endif /* TM_CHAT_H */
