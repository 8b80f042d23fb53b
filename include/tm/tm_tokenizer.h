/*
 * tm_tokenizer.h - text <-> token ids, matching Hugging Face `tokenizers` token for token.
 *
 * One constructor loads any of four sources into the same internal pipeline
 * (normalizer -> pre-tokenizer -> model -> post-processor, and a decoder):
 * a tokenizer.json file, a Hugging Face folder (tokenizer.json +
 * tokenizer_config.json), a GGUF file or open tm_gguf (tokenizer.ggml.*), or a
 * llama2.c tokenizer.bin. See docs/tokenizer.md for the supported components.
 *
 *     tm_tokenizer_params tp = tm_tokenizer_params_default();
 *     tp.path = "models/qwen3";                  // folder, .json, .gguf or .bin
 *     tm_tokenizer *tok = NULL;
 *     if (tm_tokenizer_init(&tp, &tok) != TM_OK) die(tm_last_error());
 *     int32_t *ids = NULL;
 *     size_t   n   = 0;
 *     tm_tokenizer_encode(tok, "Hello", 5, true, true, &ids, &n);   // caller frees ids
 *     char  *text = NULL;
 *     size_t len  = 0;
 *     tm_tokenizer_decode(tok, ids, n, true, &text, &len);          // caller frees text
 *     tm_free(ids);
 *     tm_free(text);
 *     tm_tokenizer_free(tok);
 *
 * Threads: a tm_tokenizer is immutable after tm_tokenizer_init(); any number of
 * threads may encode and decode with it at once (per-call state lives on the
 * call). A tm_detokenizer is used by one thread at a time.
 */
#ifndef TM_TOKENIZER_H
#define TM_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_status.h"

typedef struct tm_tokenizer   tm_tokenizer;   /* opaque */
typedef struct tm_detokenizer tm_detokenizer; /* opaque streaming decoder */
typedef struct tm_gguf        tm_gguf;        /* tm_gguf.h */

typedef enum tm_tokenizer_source {
    TM_TOKENIZER_SOURCE_AUTO = 0,    /* path: folder, *.json, GGUF magic, else llama2.c .bin */
    TM_TOKENIZER_SOURCE_JSON = 1,    /* tokenizer.json (path, or json_data/json_len) */
    TM_TOKENIZER_SOURCE_HF_DIR = 2,  /* folder with tokenizer.json [+ tokenizer_config.json] */
    TM_TOKENIZER_SOURCE_GGUF = 3,    /* path, or the open file in gguf */
    TM_TOKENIZER_SOURCE_LLAMA2C = 4, /* llama2.c tokenizer.bin */
} tm_tokenizer_source;

typedef struct tm_tokenizer_params {
    tm_tokenizer_source source;    /* default AUTO */
    const char         *path;      /* borrowed during the call only */
    const tm_gguf      *gguf;      /* open GGUF (borrowed during the call); wins over path */
    const char         *json_data; /* tokenizer.json bytes in memory (borrowed); wins over path */
    size_t              json_len;  /* bytes of json_data */
    int32_t             llama2c_n_vocab; /* llama2.c: tokens to read; 0 = until end of file */
} tm_tokenizer_params;

tm_tokenizer_params tm_tokenizer_params_default(void);

/* On success stores a new tokenizer in *out (release with tm_tokenizer_free).
 * On failure *out stays NULL; the message names the file and the problem
 * (an unknown component type is named, e.g. "model type 'Unigram'"). */
tm_status tm_tokenizer_init(const tm_tokenizer_params *params, tm_tokenizer **out);
void      tm_tokenizer_free(tm_tokenizer *tok); /* NULL is a no-op */

/* Encodes len bytes of UTF-8 text (need not be NUL-terminated).
 *   add_special:   add what the post-processor / add_bos/add_eos flags ask for
 *                  (BOS, EOS, [CLS] ... [SEP]), like HF encode(add_special_tokens=True);
 *   parse_special: match special (control) tokens written in the text, like HF
 *                  encode(); when false they are encoded as plain text, like HF with
 *                  encode_special_tokens=True. Non-special added tokens are always matched.
 * Invalid UTF-8 is refused with TM_ERR_INVALID naming the byte offset.
 * *ids is a new array the caller frees with tm_free(); NULL when *n_ids == 0. */
tm_status tm_tokenizer_encode(const tm_tokenizer *tok, const char *text, size_t len,
                              bool add_special, bool parse_special, int32_t **ids, size_t *n_ids);

/* A byte range [off, off + len) of a text. */
typedef struct tm_text_span {
    size_t off;
    size_t len;
} tm_text_span;

/* Like tm_tokenizer_encode with parse_special = true, except that special tokens
 * are never matched inside the literal spans: text there is encoded as plain text
 * (non-special added tokens still match). Used for rendered chat templates, where
 * the template's own special tokens count but user message contents must never be
 * parsed for them. Tokenization is otherwise that of the whole text (spans do not
 * cut pre-tokenization). A span past the end of the text is TM_ERR_INVALID. */
tm_status tm_tokenizer_encode_spans(const tm_tokenizer *tok, const char *text, size_t len,
                                    bool add_special, const tm_text_span *literal, size_t n_literal,
                                    int32_t **ids, size_t *n_ids);

/* Same into a caller buffer of cap ids. When cap is too small returns
 * TM_ERR_FULL with the needed count in *n_ids and buf contents unspecified. */
tm_status tm_tokenizer_encode_into(const tm_tokenizer *tok, const char *text, size_t len,
                                   bool add_special, bool parse_special, int32_t *buf, size_t cap,
                                   size_t *n_ids);

/* Decodes ids to bytes through the decoder chain. skip_special drops special
 * tokens (HF skip_special_tokens). *text is NUL-terminated, caller frees with
 * tm_free(); *len excludes the NUL. Byte-fallback / byte-level tokens that do not
 * form valid UTF-8 are passed through as raw bytes (HF would print U+FFFD).
 * An id outside [0, n_vocab) is TM_ERR_INVALID. */
tm_status tm_tokenizer_decode(const tm_tokenizer *tok, const int32_t *ids, size_t n_ids,
                              bool skip_special, char **text, size_t *len);

/* The bytes one token decodes to when it is not the first token of a text
 * (so a SentencePiece "▁the" gives " the"). Writes up to cap bytes to buf and
 * the full length to *len; TM_ERR_FULL when cap is too small. */
tm_status tm_tokenizer_token_to_piece(const tm_tokenizer *tok, int32_t id, char *buf, size_t cap,
                                      size_t *len);

/* Vocabulary string of id as stored (e.g. "Ġthe", "▁the", "##ing"); NULL when
 * out of range. Owned by tok, valid until tm_tokenizer_free(); not NUL-safe:
 * use *len (may be NULL). */
const char *tm_tokenizer_token_text(const tm_tokenizer *tok, int32_t id, size_t *len);
/* Id of an exact vocabulary or added-token string; -1 when absent. */
int32_t tm_tokenizer_token_id(const tm_tokenizer *tok, const char *text, size_t len);
bool    tm_tokenizer_is_special(const tm_tokenizer *tok, int32_t id);

int32_t     tm_tokenizer_n_vocab(const tm_tokenizer *tok);   /* highest id + 1, added included */
int32_t     tm_tokenizer_bos_id(const tm_tokenizer *tok);    /* -1 when none */
int32_t     tm_tokenizer_eos_id(const tm_tokenizer *tok);    /* -1 when none */
const char *tm_tokenizer_type_name(const tm_tokenizer *tok); /* static: "bpe-bytelevel", ... */

typedef struct tm_tokenizer_info {
    const char *type_name;     /* "bpe-bytelevel", "bpe", "spm-bpe", "wordpiece" */
    const char *source;        /* "tokenizer.json", "gguf", "llama2.c" */
    const char *normalizer;    /* e.g. "NFC", "Sequence[Prepend,Replace]", "none" */
    const char *pre_tokenizer; /* e.g. "Sequence[Split,ByteLevel]", "gguf:llama-bpe" */
    const char *decoder;       /* e.g. "ByteLevel" */
    int32_t     n_vocab;
    int32_t     n_merges;
    int32_t     n_added;                        /* added tokens (special or not) */
    int32_t     bos_id, eos_id, unk_id, pad_id; /* -1 when none */
    bool        add_bos, add_eos;               /* what add_special adds (template or flags) */
} tm_tokenizer_info;

/* Strings in *info are owned by tok, valid until tm_tokenizer_free(). */
void tm_tokenizer_get_info(const tm_tokenizer *tok, tm_tokenizer_info *info);

/* Multi-line human summary for `lctl inspect` (model kind, vocab size,
 * normalizer, pre-tokenizer, special tokens, add_bos/add_eos). Caller frees
 * *text with tm_free(). */
tm_status tm_tokenizer_summary(const tm_tokenizer *tok, char **text);

/* ---- streaming detokenizer ---------------------------------------------------
 * Feed ids one at a time; each call returns only bytes that end on a complete
 * UTF-8 character, so a client never sees a broken character mid-stream. A
 * byte that can never start or continue a valid character is replaced by
 * U+FFFD. tm_detokenizer_flush() returns what is left (an incomplete tail
 * becomes U+FFFD). The returned pointer is owned by the detokenizer and valid
 * until the next call on it.
 *
 *     tm_detokenizer *d = NULL;
 *     tm_detokenizer_init(tok, true, &d);
 *     for each id: tm_detokenizer_feed(d, id, &p, &n); fwrite(p, 1, n, stdout);
 *     tm_detokenizer_flush(d, &p, &n); fwrite(p, 1, n, stdout);
 *     tm_detokenizer_free(d);
 */
tm_status tm_detokenizer_init(const tm_tokenizer *tok, bool skip_special, tm_detokenizer **out);
void      tm_detokenizer_free(tm_detokenizer *d); /* NULL is a no-op */
tm_status tm_detokenizer_feed(tm_detokenizer *d, int32_t id, const char **bytes, size_t *len);
tm_status tm_detokenizer_flush(tm_detokenizer *d, const char **bytes, size_t *len);
void      tm_detokenizer_reset(tm_detokenizer *d); /* start a new text */
/* Like reset, for a text that continues one shown before it (an answer after its
 * echoed prompt): the first id fed is decoded as a token inside a text, so a
 * SentencePiece "▁a" gives " a", as decoding prompt and answer together does. */
void tm_detokenizer_continue(tm_detokenizer *d);

#endif /* TM_TOKENIZER_H */
