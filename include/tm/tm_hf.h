/*
 * tm_hf.h - a Hugging Face model folder's JSON side: config.json,
 * generation_config.json, tokenizer_config.json, chat_template.jinja.
 *
 * Every file is size-capped and parsed with duplicate keys rejected; every key
 * TensorMesh reads is type-checked at load, so a wrong type fails the load with
 * a message naming the file and the key. Weights are opened separately with
 * tm_st_open(dir) (tm_safetensors.h).
 *
 *     tm_hf_params hp = tm_hf_params_default();
 *     hp.dir = "models/Qwen2.5-0.5B-Instruct";
 *     tm_hf_config *hf = NULL;
 *     if (tm_hf_config_load(&hp, &hf) != TM_OK) die(tm_last_error());
 *     const tm_hf_model_info *m = tm_hf_config_model(hf);
 *     printf("%s: %lld layers\n", m->architecture, (long long)m->num_hidden_layers);
 *     const char *tpl = tm_hf_config_chat_template(hf, NULL);  // "default"; NULL if none
 *     int64_t window;
 *     if (tm_hf_config_get_int(hf, TM_HF_FILE_CONFIG, "sliding_window", &window) == TM_OK) ...
 *     tm_hf_config_free(hf);
 *
 * Conventions: a numeric field is -1 when its key is absent or null (every value
 * read here is non-negative when present); a tri-state bool is 1, 0, or -1 when
 * absent; a string is NULL when absent. Field names mirror the JSON keys.
 *
 * Threads: a tm_hf_config is immutable after load; any thread may read it.
 */
#ifndef TM_HF_H
#define TM_HF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "tm/tm_status.h"

#define TM_HF_MAX_FILE_BYTES ((size_t)64 << 20)

struct json_t; /* jansson's node type: include <jansson.h> to walk it */

typedef enum tm_hf_file {
    TM_HF_FILE_CONFIG = 0,            /* config.json */
    TM_HF_FILE_GENERATION_CONFIG = 1, /* generation_config.json */
    TM_HF_FILE_TOKENIZER_CONFIG = 2,  /* tokenizer_config.json */
    TM_HF_FILE_COUNT = 3,
} tm_hf_file;

typedef struct tm_hf_params {
    const char *dir; /* HF folder; borrowed during the call; NULL: memory texts only */
    /* Optional texts used instead of the file of the same name (tests, fuzzers); borrowed
     * during the call. NULL means "read the file from dir when present". */
    const char *config_json;
    size_t      config_json_len;
    const char *generation_config_json;
    size_t      generation_config_json_len;
    const char *tokenizer_config_json;
    size_t      tokenizer_config_json_len;
    const char *chat_template_jinja;
    size_t      chat_template_jinja_len;
    size_t      max_file_bytes;       /* per file; default TM_HF_MAX_FILE_BYTES */
    bool        allow_missing_config; /* default false: config.json must exist */
} tm_hf_params;

tm_hf_params tm_hf_params_default(void);

typedef struct tm_hf_rope_scaling {
    const char *rope_type;    /* "rope_type", or the older "type": "linear", "dynamic", "yarn",
                                 "llama3", ...; NULL when there is no rope_scaling object */
    double  factor;           /* -1 when absent */
    double  low_freq_factor;  /* llama3; -1 when absent */
    double  high_freq_factor; /* llama3; -1 when absent */
    int64_t original_max_position_embeddings; /* -1 when absent */
} tm_hf_rope_scaling;

/* config.json. Size fields absent at the top level are looked up in "text_config"
 * (multimodal configs nest the language model there, as HF get_text_config() does). */
typedef struct tm_hf_model_info {
    const char *model_type;   /* "llama", "bert", ... */
    const char *architecture; /* architectures[0]: "LlamaForCausalLM" */
    const char *torch_dtype;  /* "torch_dtype", or "dtype" (newer transformers): "bfloat16" */
    int64_t     hidden_size;
    int64_t     num_hidden_layers;
    int64_t     num_attention_heads;
    int64_t     num_key_value_heads; /* defaults to num_attention_heads (HF) */
    int64_t     intermediate_size;
    int64_t     vocab_size;
    int64_t     max_position_embeddings;
    int64_t     head_dim; /* defaults to hidden_size / num_attention_heads when it divides */
    double      rms_norm_eps;
    double      layer_norm_eps;      /* BERT-style models */
    double      rope_theta;          /* also read from rope_parameters.rope_theta */
    int32_t     tie_word_embeddings; /* 1, 0, -1 absent: HF's default depends on the model
                                        class (PretrainedConfig: true, LlamaConfig: false) */
    tm_hf_rope_scaling rope_scaling; /* "rope_scaling", or "rope_parameters" */
} tm_hf_model_info;

/* generation_config.json. When that file is absent, bos/eos/pad come from config.json
 * (HF GenerationConfig.from_model_config) and from_model_config is set. */
typedef struct tm_hf_generation {
    bool           present;           /* generation_config.json was read */
    bool           from_model_config; /* ids taken from config.json instead */
    int32_t        bos_token_id;      /* -1 when absent or negative */
    int32_t        pad_token_id;      /* -1 when absent or negative */
    const int32_t *eos_token_ids;     /* int or list in the file; owned by the config */
    int32_t        n_eos_token_ids;
    int32_t        do_sample; /* 1, 0, -1 absent */
    double         temperature;
    double         top_p;
    double         min_p;
    double         repetition_penalty;
    int64_t        top_k;
    int64_t        max_new_tokens;
    int64_t        max_length;
} tm_hf_generation;

typedef struct tm_hf_chat_template {
    const char *name;   /* "default" for a plain string template */
    const char *source; /* Jinja source; owned by the config */
} tm_hf_chat_template;

/* tokenizer_config.json, chat_template.jinja and the tokenizer file paths. */
typedef struct tm_hf_tokenizer_info {
    bool        present;         /* tokenizer_config.json was read */
    const char *tokenizer_class; /* "PreTrainedTokenizerFast" */
    /* Special tokens: a string or an AddedToken object {"content": ...} in the file. */
    const char *bos_token;
    const char *eos_token;
    const char *unk_token;
    const char *pad_token;
    int32_t     add_bos_token;    /* 1, 0, -1 absent */
    int32_t     add_eos_token;    /* 1, 0, -1 absent */
    int64_t     model_max_length; /* -1 absent; INT64_MAX for HF's "no limit" (int(1e30)) */
    /* chat_template.jinja when present (it replaces whatever tokenizer_config.json holds,
     * as transformers does); else tokenizer_config's chat_template: a string (one template
     * named "default") or a list of {"name", "template"} in file order. */
    const tm_hf_chat_template *chat_templates;
    int32_t                    n_chat_templates;
    const char *chat_template_origin; /* "chat_template.jinja", "tokenizer_config.json", NULL */
    const char *tokenizer_json_path;  /* dir/tokenizer.json when it exists; else NULL */
    const char *tokenizer_model_path; /* dir/tokenizer.model (SentencePiece) when it exists */
} tm_hf_tokenizer_info;

typedef struct tm_hf_config tm_hf_config; /* opaque */

/* Loads the folder or memory texts of params. On failure *out stays NULL and
 * tm_last_error() names the file and key: TM_ERR_NOT_FOUND when config.json is
 * missing, TM_ERR_FORMAT for malformed JSON, wrong types or bad values, TM_ERR_IO,
 * TM_ERR_NOMEM. */
tm_status tm_hf_config_load(const tm_hf_params *params, tm_hf_config **out);
void      tm_hf_config_free(tm_hf_config *cfg); /* NULL is a no-op */

/* Typed views; owned by cfg, valid until tm_hf_config_free(). */
const tm_hf_model_info     *tm_hf_config_model(const tm_hf_config *cfg);
const tm_hf_generation     *tm_hf_config_generation(const tm_hf_config *cfg);
const tm_hf_tokenizer_info *tm_hf_config_tokenizer(const tm_hf_config *cfg);

/* Chat template source by name (NULL means "default"); NULL when there is none. */
const char *tm_hf_config_chat_template(const tm_hf_config *cfg, const char *name);

/* Generic getters over one file. key is a dotted path ("rope_scaling.factor",
 * "text_config.hidden_size"). TM_ERR_NOT_FOUND when the file, a segment or the value
 * is absent or null; TM_ERR_FORMAT (message names file and key) on a wrong type.
 * get_int accepts integers and integral reals within int64; get_float any number.
 * Strings are owned by cfg. */
tm_status tm_hf_config_get_int(const tm_hf_config *cfg, tm_hf_file file, const char *key,
                               int64_t *out);
tm_status tm_hf_config_get_float(const tm_hf_config *cfg, tm_hf_file file, const char *key,
                                 double *out);
tm_status tm_hf_config_get_str(const tm_hf_config *cfg, tm_hf_file file, const char *key,
                               const char **out);
tm_status tm_hf_config_get_bool(const tm_hf_config *cfg, tm_hf_file file, const char *key,
                                bool *out);

/* The parsed document (jansson), borrowed from cfg; NULL when the file was absent. */
const struct json_t *tm_hf_config_json(const tm_hf_config *cfg, tm_hf_file file);

#endif /* TM_HF_H */
