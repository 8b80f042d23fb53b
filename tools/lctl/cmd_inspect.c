/*
 * cmd_inspect.c - `lctl inspect PATH`: what a model file holds.
 *
 * GGUF: format version, architecture and hyperparameters (the "<arch>." keys),
 * every other metadata key (long arrays summarized), the tensor table (dtype,
 * shape, bytes), the tokenizer summary and whether a chat template is present.
 * Hugging Face folder or safetensors file: config.json hyperparameters, the
 * tensor table across shards, the tokenizer and the chat template.
 * Works on vocabulary-only GGUF files (no tensors).
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "lctl.h"
#include "tm/tm_bytes.h"
#include "tm/tm_gguf.h"
#include "tm/tm_hf.h"
#include "tm/tm_io.h"
#include "tm/tm_safetensors.h"
#include "tm/tm_tokenizer.h"

typedef struct inspect_opts {
    bool all_tensors; /* print every tensor, not the first and last few */
    bool all_kv;      /* print long arrays in full */
} inspect_opts;

static void inspect_usage(FILE *f) {
    fprintf(f,
            "usage: lctl inspect [options] PATH\n\n"
            "Shows what a model holds: architecture, hyperparameters, metadata, the tensor\n"
            "table (dtype, shape, bytes), the tokenizer and whether a chat template is present.\n"
            "PATH is a GGUF file (also vocabulary-only), a Hugging Face folder, a safetensors\n"
            "file or a model.safetensors.index.json.\n\n"
            "options:\n"
            "  --tensors   list every tensor (default: first and last 16)\n"
            "  --all       print arrays in full (default: first 8 elements)\n"
            "  -h, --help  this text\n");
}

/* Prints a byte string with control characters and quotes escaped, at most max bytes. */
static void print_escaped(const char *s, size_t len, size_t max) {
    putchar('"');
    size_t n = len < max ? len : max;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
    if (n < len)
        printf("... (%zu bytes)", len);
}

static void human_bytes(char *buf, size_t cap, double b) {
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int         i = 0;
    while (b >= 1024 && i < 4) {
        b /= 1024;
        i++;
    }
    snprintf(buf, cap, i == 0 ? "%.0f %s" : "%.2f %s", b, u[i]);
}

static size_t gguf_type_size(tm_gguf_type t) {
    switch (t) {
    case TM_GGUF_TYPE_UINT8:
    case TM_GGUF_TYPE_INT8:
    case TM_GGUF_TYPE_BOOL: return 1;
    case TM_GGUF_TYPE_UINT16:
    case TM_GGUF_TYPE_INT16: return 2;
    case TM_GGUF_TYPE_UINT32:
    case TM_GGUF_TYPE_INT32:
    case TM_GGUF_TYPE_FLOAT32: return 4;
    case TM_GGUF_TYPE_UINT64:
    case TM_GGUF_TYPE_INT64:
    case TM_GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* One element of a fixed-size array, printed as its value. */
static void print_arr_elem(tm_gguf_type t, const uint8_t *p) {
    switch (t) {
    case TM_GGUF_TYPE_UINT8: printf("%u", p[0]); break;
    case TM_GGUF_TYPE_INT8: printf("%d", (int8_t)p[0]); break;
    case TM_GGUF_TYPE_BOOL: printf("%s", p[0] ? "true" : "false"); break;
    case TM_GGUF_TYPE_UINT16: printf("%u", tm_load_u16_le(p)); break;
    case TM_GGUF_TYPE_INT16: printf("%d", (int16_t)tm_load_u16_le(p)); break;
    case TM_GGUF_TYPE_UINT32: printf("%" PRIu32, tm_load_u32_le(p)); break;
    case TM_GGUF_TYPE_INT32: printf("%" PRId32, (int32_t)tm_load_u32_le(p)); break;
    case TM_GGUF_TYPE_FLOAT32: printf("%g", tm_load_f32_le(p)); break;
    case TM_GGUF_TYPE_UINT64: printf("%" PRIu64, tm_load_u64_le(p)); break;
    case TM_GGUF_TYPE_INT64: printf("%" PRId64, (int64_t)tm_load_u64_le(p)); break;
    case TM_GGUF_TYPE_FLOAT64: printf("%g", tm_load_f64_le(p)); break;
    default: printf("?"); break;
    }
}

static void print_array(const tm_gguf *g, int64_t i, const inspect_opts *o, int depth) {
    tm_gguf_type et = tm_gguf_kv_arr_type(g, i);
    uint64_t     n = tm_gguf_kv_arr_n(g, i);
    uint64_t     show = (o->all_kv || n <= 8) ? n : 8;
    printf("[%" PRIu64 " x %s] [", n, tm_gguf_type_name(et));
    for (uint64_t j = 0; j < show; j++) {
        if (j)
            fputs(", ", stdout);
        if (et == TM_GGUF_TYPE_STRING) {
            tm_strview s = tm_gguf_kv_arr_str(g, i, j);
            print_escaped(s.ptr, s.len, 64);
        } else if (et == TM_GGUF_TYPE_ARRAY) {
            if (depth < 4)
                print_array(g, tm_gguf_kv_arr_sub(g, i, j), o, depth + 1);
            else
                fputs("[...]", stdout);
        } else {
            const uint8_t *d = tm_gguf_kv_arr_data(g, i);
            print_arr_elem(et, d + j * gguf_type_size(et));
        }
    }
    if (show < n)
        fputs(", ...", stdout);
    putchar(']');
}

static void print_kv_value(const tm_gguf *g, int64_t i, const inspect_opts *o) {
    switch (tm_gguf_kv_type(g, i)) {
    case TM_GGUF_TYPE_UINT8: printf("%u", tm_gguf_kv_u8(g, i)); break;
    case TM_GGUF_TYPE_INT8: printf("%d", tm_gguf_kv_i8(g, i)); break;
    case TM_GGUF_TYPE_UINT16: printf("%u", tm_gguf_kv_u16(g, i)); break;
    case TM_GGUF_TYPE_INT16: printf("%d", tm_gguf_kv_i16(g, i)); break;
    case TM_GGUF_TYPE_UINT32: printf("%" PRIu32, tm_gguf_kv_u32(g, i)); break;
    case TM_GGUF_TYPE_INT32: printf("%" PRId32, tm_gguf_kv_i32(g, i)); break;
    case TM_GGUF_TYPE_UINT64: printf("%" PRIu64, tm_gguf_kv_u64(g, i)); break;
    case TM_GGUF_TYPE_INT64: printf("%" PRId64, tm_gguf_kv_i64(g, i)); break;
    case TM_GGUF_TYPE_FLOAT32: printf("%g", tm_gguf_kv_f32(g, i)); break;
    case TM_GGUF_TYPE_FLOAT64: printf("%g", tm_gguf_kv_f64(g, i)); break;
    case TM_GGUF_TYPE_BOOL: printf("%s", tm_gguf_kv_bool(g, i) ? "true" : "false"); break;
    case TM_GGUF_TYPE_STRING: {
        tm_strview s = tm_gguf_kv_str(g, i);
        print_escaped(s.ptr, s.len, 96);
        break;
    }
    case TM_GGUF_TYPE_ARRAY: print_array(g, i, o, 0); break;
    }
}

static void print_shape(int32_t n_dims, const int64_t *ne, char *buf, size_t cap) {
    size_t off = (size_t)snprintf(buf, cap, "[");
    for (int32_t d = 0; d < n_dims && off < cap; d++)
        off += (size_t)snprintf(buf + off, cap - off, d ? ", %" PRId64 : "%" PRId64, ne[d]);
    if (off < cap)
        snprintf(buf + off, cap - off, "]");
}

static bool show_row(int64_t i, int64_t n, const inspect_opts *o) {
    return o->all_tensors || n <= 32 || i < 16 || i >= n - 16;
}

static void print_tokenizer(tm_tokenizer_params *tp) {
    tm_tokenizer *tok = NULL;
    if (tm_tokenizer_init(tp, &tok) != TM_OK) {
        printf("\ntokenizer: none usable (%s)\n", tm_last_error());
        return;
    }
    char *summary = NULL;
    if (tm_tokenizer_summary(tok, &summary) == TM_OK) {
        printf("\n%s", summary);
        size_t n = strlen(summary);
        if (n == 0 || summary[n - 1] != '\n')
            putchar('\n');
    }
    tm_free(summary);
    tm_tokenizer_free(tok);
}

static int inspect_gguf(const char *path, const inspect_opts *o) {
    tm_gguf *g = NULL;
    if (tm_gguf_open(path, &g) != TM_OK) {
        fprintf(stderr, "lctl inspect: %s\n", tm_last_error());
        return 1;
    }
    char sz[32];
    human_bytes(sz, sizeof sz, (double)tm_gguf_file_size(g));
    printf("file:          %s (%s)\n", path, sz);
    printf("format:        GGUF v%" PRIu32 ", alignment %zu, %" PRId64 " metadata keys, %" PRId64
           " tensors\n",
           tm_gguf_version(g), tm_gguf_alignment(g), tm_gguf_n_kv(g), tm_gguf_n_tensors(g));

    tm_strview arch = {"", 0};
    if (tm_gguf_get_str(g, "general.architecture", &arch) == TM_OK) {
        printf("architecture:  %.*s\n", (int)arch.len, arch.ptr);
    } else {
        printf("architecture:  (none: general.architecture is missing)\n");
    }
    tm_strview name;
    if (tm_gguf_get_str(g, "general.name", &name) == TM_OK)
        printf("name:          %.*s\n", (int)name.len, name.ptr);

    /* Hyperparameters: the keys under "<arch>.". */
    printf("\nhyperparameters:\n");
    int n_hp = 0;
    for (int64_t i = 0; i < tm_gguf_n_kv(g); i++) {
        tm_strview k = tm_gguf_kv_key(g, i);
        if (arch.len == 0 || k.len <= arch.len || memcmp(k.ptr, arch.ptr, arch.len) != 0 ||
            k.ptr[arch.len] != '.')
            continue;
        printf("  %-44.*s ", (int)(k.len - arch.len - 1), k.ptr + arch.len + 1);
        print_kv_value(g, i, o);
        putchar('\n');
        n_hp++;
    }
    if (n_hp == 0)
        printf("  (none)\n");

    printf("\nmetadata:\n");
    for (int64_t i = 0; i < tm_gguf_n_kv(g); i++) {
        tm_strview k = tm_gguf_kv_key(g, i);
        if (arch.len && k.len > arch.len && memcmp(k.ptr, arch.ptr, arch.len) == 0 &&
            k.ptr[arch.len] == '.')
            continue;
        printf("  %-44.*s %-8s ", (int)k.len, k.ptr, tm_gguf_type_name(tm_gguf_kv_type(g, i)));
        print_kv_value(g, i, o);
        putchar('\n');
    }

    int64_t n_t = tm_gguf_n_tensors(g);
    double  total = 0, n_params = 0;
    for (int64_t i = 0; i < n_t; i++) {
        const tm_gguf_tensor *t = tm_gguf_tensor_at(g, i);
        double                ne = 1;
        for (int d = 0; d < t->n_dims; d++)
            ne *= (double)t->ne[d];
        n_params += ne;
        total += (double)t->n_bytes;
    }
    human_bytes(sz, sizeof sz, total);
    printf("\ntensors: %" PRId64 ", %.3g parameters, %s\n", n_t, n_params, sz);
    if (n_t > 0)
        printf("  %-48s %-8s %-24s %s\n", "name", "dtype", "shape (ne[0] first)", "bytes");
    for (int64_t i = 0; i < n_t; i++) {
        if (!show_row(i, n_t, o)) {
            if (i == 16)
                printf("  ... %" PRId64 " more (--tensors lists all)\n", n_t - 32);
            continue;
        }
        const tm_gguf_tensor *t = tm_gguf_tensor_at(g, i);
        char                  shape[96];
        print_shape(t->n_dims, t->ne, shape, sizeof shape);
        printf("  %-48.*s %-8s %-24s %zu\n", (int)t->name.len, t->name.ptr, tm_dtype_name(t->dtype),
               shape, t->n_bytes);
    }

    tm_tokenizer_params tp = tm_tokenizer_params_default();
    tp.source = TM_TOKENIZER_SOURCE_GGUF;
    tp.gguf = g;
    if (tm_gguf_find_key(g, "tokenizer.ggml.model") >= 0)
        print_tokenizer(&tp);
    else
        printf("\ntokenizer: none (no tokenizer.ggml.* metadata)\n");

    tm_strview tmpl;
    if (tm_gguf_get_str(g, "tokenizer.chat_template", &tmpl) == TM_OK)
        printf("\nchat template: present (%zu bytes, tokenizer.chat_template)\n", tmpl.len);
    else
        printf("\nchat template: absent\n");
    tm_gguf_close(g);
    return 0;
}

static void print_st_tensors(const tm_st_file *st, const inspect_opts *o) {
    int64_t n_t = tm_st_n_tensors(st);
    double  total = 0, n_params = 0;
    for (int64_t i = 0; i < n_t; i++) {
        const tm_st_tensor *t = tm_st_tensor_at(st, i);
        total += (double)t->n_bytes;
        n_params += (double)t->n_elements;
    }
    char sz[32];
    human_bytes(sz, sizeof sz, total);
    printf("\ntensors: %" PRId64 " in %d shard(s), %.3g parameters, %s\n", n_t, tm_st_n_shards(st),
           n_params, sz);
    if (n_t > 0)
        printf("  %-56s %-6s %-24s %s\n", "name", "dtype", "shape (as stored)", "bytes");
    for (int64_t i = 0; i < n_t; i++) {
        if (!show_row(i, n_t, o)) {
            if (i == 16)
                printf("  ... %" PRId64 " more (--tensors lists all)\n", n_t - 32);
            continue;
        }
        const tm_st_tensor *t = tm_st_tensor_at(st, i);
        char                shape[128];
        print_shape(t->n_dims, t->shape, shape, sizeof shape);
        printf("  %-56s %-6s %-24s %zu\n", t->name, tm_st_dtype_name(t->st_dtype), shape,
               t->n_bytes);
    }
}

static void print_i64(const char *name, int64_t v) {
    if (v >= 0)
        printf("  %-30s %lld\n", name, (long long)v);
}

static void print_f64(const char *name, double v) {
    if (v >= 0)
        printf("  %-30s %g\n", name, v);
}

static void print_hf_config(const tm_hf_config *hf) {
    const tm_hf_model_info *m = tm_hf_config_model(hf);
    printf("architecture:  %s\n", m->architecture ? m->architecture : "(none)");
    printf("model_type:    %s\n", m->model_type ? m->model_type : "(none)");
    if (m->torch_dtype)
        printf("dtype:         %s\n", m->torch_dtype);
    printf("\nhyperparameters (config.json):\n");
    print_i64("hidden_size", m->hidden_size);
    print_i64("num_hidden_layers", m->num_hidden_layers);
    print_i64("num_attention_heads", m->num_attention_heads);
    print_i64("num_key_value_heads", m->num_key_value_heads);
    print_i64("head_dim", m->head_dim);
    print_i64("intermediate_size", m->intermediate_size);
    print_i64("vocab_size", m->vocab_size);
    print_i64("max_position_embeddings", m->max_position_embeddings);
    print_f64("rms_norm_eps", m->rms_norm_eps);
    print_f64("layer_norm_eps", m->layer_norm_eps);
    print_f64("rope_theta", m->rope_theta);
    if (m->rope_scaling.rope_type)
        printf("  %-30s %s (factor %g)\n", "rope_scaling", m->rope_scaling.rope_type,
               m->rope_scaling.factor);
    if (m->tie_word_embeddings >= 0)
        printf("  %-30s %s\n", "tie_word_embeddings", m->tie_word_embeddings ? "true" : "false");
    const tm_hf_generation *gen = tm_hf_config_generation(hf);
    if (gen->present) {
        printf("\ngeneration_config.json:\n");
        print_i64("bos_token_id", gen->bos_token_id);
        for (int32_t i = 0; i < gen->n_eos_token_ids; i++)
            print_i64("eos_token_id", gen->eos_token_ids[i]);
        print_f64("temperature", gen->temperature);
        print_f64("top_p", gen->top_p);
        print_i64("top_k", gen->top_k);
    }
}

static int inspect_hf(const char *path, const inspect_opts *o) {
    bool          is_dir = tm_path_is_dir(path);
    tm_hf_config *hf = NULL;
    if (is_dir) {
        tm_hf_params hp = tm_hf_params_default();
        hp.dir = path;
        if (tm_hf_config_load(&hp, &hf) != TM_OK) {
            fprintf(stderr, "lctl inspect: %s\n", tm_last_error());
            return 1;
        }
    }
    tm_st_file *st = NULL;
    tm_status   st_status = tm_st_open(path, &st);
    if (st_status != TM_OK && !(is_dir && st_status == TM_ERR_NOT_FOUND)) {
        fprintf(stderr, "lctl inspect: %s\n", tm_last_error());
        tm_hf_config_free(hf);
        return 1;
    }
    printf("file:          %s (%s)\n", path, is_dir ? "Hugging Face folder" : "safetensors");
    if (hf != NULL)
        print_hf_config(hf);
    if (st != NULL)
        print_st_tensors(st, o);
    else
        printf("\ntensors: none (no safetensors weights in the folder)\n");

    if (hf != NULL) {
        const tm_hf_tokenizer_info *ti = tm_hf_config_tokenizer(hf);
        if (ti->tokenizer_json_path != NULL) {
            tm_tokenizer_params tp = tm_tokenizer_params_default();
            tp.source = TM_TOKENIZER_SOURCE_HF_DIR;
            tp.path = path;
            print_tokenizer(&tp);
        } else {
            printf("\ntokenizer: none (no tokenizer.json in the folder)\n");
        }
        if (ti->n_chat_templates > 0) {
            printf("\nchat template: present (%s):", ti->chat_template_origin);
            for (int32_t i = 0; i < ti->n_chat_templates; i++)
                printf(" %s (%zu bytes)", ti->chat_templates[i].name,
                       strlen(ti->chat_templates[i].source));
            putchar('\n');
        } else {
            printf("\nchat template: absent\n");
        }
    }
    tm_st_close(st);
    tm_hf_config_free(hf);
    return 0;
}

static bool is_gguf_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return false;
    unsigned char m[4] = {0};
    size_t        n = fread(m, 1, 4, f);
    fclose(f);
    return n == 4 && tm_load_u32_le(m) == TM_GGUF_MAGIC;
}

int lctl_inspect(int argc, char **argv) {
    inspect_opts         o = {0};
    static struct option longopts[] = {{"tensors", no_argument, NULL, 't'},
                                       {"all", no_argument, NULL, 'a'},
                                       {"help", no_argument, NULL, 'h'},
                                       {NULL, 0, NULL, 0}};
    int                  c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 't': o.all_tensors = true; break;
        case 'a': o.all_kv = true; break;
        case 'h': inspect_usage(stdout); return 0;
        default: inspect_usage(stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        inspect_usage(stderr);
        return 2;
    }
    const char *path = argv[optind];
    if (!tm_path_is_dir(path) && !tm_path_is_file(path)) {
        fprintf(stderr, "lctl inspect: %s: no such file or folder\n", path);
        return 1;
    }
    if (tm_path_is_file(path) && is_gguf_file(path))
        return inspect_gguf(path, &o);
    return inspect_hf(path, &o);
}
