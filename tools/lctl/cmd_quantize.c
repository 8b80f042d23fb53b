/*
 * cmd_quantize.c - `lctl quantize IN OUT TYPE`: rewrite a GGUF with its matrices
 * in another block format, with the project's reference quantizers (bit-exact
 * with the gguf package where it has one). TYPE is a dtype name (f16, q8_0,
 * q4_0, q4_k, ...) or a llama.cpp-style mix: q4_k_m, q5_k_m, q6_k (mixes keep
 * attn_v / ffn_down of some layers and output.weight at higher precision, as
 * llama.cpp's llama_tensor_get_type does without an importance matrix). Learned
 * position embeddings and BERT's token-type rows stay as they are, as llama.cpp's
 * quantizer leaves them (the loader reads token types as float rows).
 *
 * `lctl quantize --random VOCAB.gguf OUT TYPE [--shape E,L,H,HKV,FF]` writes a
 * Llama-architecture model with random weights at real shapes (default
 * TinyLlama-1.1B: 2048,22,32,4,5632) and the vocabulary of VOCAB.gguf: random
 * weights run at the speed of trained ones (scripts/gen_bench_models.sh).
 *
 * Rows are quantized in parallel on all online CPUs.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lctl.h"
#include "tm/tm_dtype.h"
#include "tm/tm_gguf.h"

static void quant_usage(FILE *f) {
    fprintf(f, "usage: lctl quantize IN.gguf OUT.gguf TYPE\n"
               "       lctl quantize --random VOCAB.gguf OUT.gguf TYPE [--shape E,L,H,HKV,FF]\n\n"
               "Writes OUT with every matrix of IN (or random Llama weights with VOCAB's\n"
               "tokenizer) in TYPE: f32, f16, bf16, q4_0, q4_1, q5_0, q5_1, q8_0, q2_k .. q6_k,\n"
               "or the mixes q4_k_m, q5_k_m (llama.cpp's rules, no importance matrix).\n"
               "Norms and other vectors stay f32; K formats fall back to a 32-element type\n"
               "for rows not a multiple of 256.\n\n"
               "options:\n"
               "  --shape E,L,H,HKV,FF  random model: n_embd, layers, heads, kv heads, ffn\n"
               "                        (default 2048,22,32,4,5632 = TinyLlama-1.1B)\n"
               "  --seed S              random weights seed (default 1)\n"
               "  -h, --help            this text\n");
}

/* ---- type rules -------------------------------------------------------------------- */

typedef struct quant_plan {
    tm_dtype base;   /* most matrices */
    tm_dtype more;   /* attn_v / ffn_down of "more bits" layers, mixes only */
    tm_dtype output; /* output.weight */
    bool     mix;    /* *_k_m rules */
    uint32_t ftype;  /* general.file_type (llama_ftype) */
} quant_plan;

static int quant_plan_parse(const char *s, quant_plan *p) {
    if (!strcmp(s, "q4_k_m") || !strcmp(s, "Q4_K_M")) {
        *p = (quant_plan){TM_DTYPE_Q4_K, TM_DTYPE_Q6_K, TM_DTYPE_Q6_K, true, 15};
        return 0;
    }
    if (!strcmp(s, "q5_k_m") || !strcmp(s, "Q5_K_M")) {
        *p = (quant_plan){TM_DTYPE_Q5_K, TM_DTYPE_Q6_K, TM_DTYPE_Q6_K, true, 17};
        return 0;
    }
    tm_dtype t;
    if (tm_dtype_from_name(s, &t) != TM_OK || !tm_dtype_get_traits(t)->can_quant)
        return -1;
    static const struct {
        tm_dtype t;
        uint32_t ftype;
    } ft[] = {{TM_DTYPE_F32, 0},   {TM_DTYPE_F16, 1},   {TM_DTYPE_Q4_0, 2},  {TM_DTYPE_Q4_1, 3},
              {TM_DTYPE_Q8_0, 7},  {TM_DTYPE_Q5_0, 8},  {TM_DTYPE_Q5_1, 9},  {TM_DTYPE_Q2_K, 10},
              {TM_DTYPE_Q3_K, 12}, {TM_DTYPE_Q4_K, 14}, {TM_DTYPE_Q5_K, 16}, {TM_DTYPE_Q6_K, 18},
              {TM_DTYPE_BF16, 32}};
    *p = (quant_plan){t, t, t, false, 0};
    for (size_t i = 0; i < sizeof ft / sizeof ft[0]; i++)
        if (ft[i].t == t)
            p->ftype = ft[i].ftype;
    /* llama.cpp keeps output.weight at Q6_K for every 2..6-bit type */
    if (t != TM_DTYPE_F32 && t != TM_DTYPE_F16 && t != TM_DTYPE_BF16 && t != TM_DTYPE_Q8_0)
        p->output = TM_DTYPE_Q6_K;
    return 0;
}

/* llama.cpp's use_more_bits(i_layer, n_layer). */
static bool quant_more_bits(int i, int n) {
    return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

/* Type for a matrix called name (layer i of n, -1 if none) with rows of k elements. */
static tm_dtype quant_type_for(const quant_plan *p, const char *name, int i, int n, int64_t k) {
    tm_dtype t = p->base;
    if (strcmp(name, "output.weight") == 0)
        t = p->output;
    else if (p->mix && i >= 0 &&
             (strstr(name, "attn_v.weight") || strstr(name, "ffn_down.weight")) &&
             quant_more_bits(i, n))
        t = p->more;
    const int32_t blk = tm_dtype_get_traits(t)->blck_size;
    if (k % blk != 0) { /* llama.cpp's fallbacks for rows that do not fill 256-element blocks */
        t = t == TM_DTYPE_Q6_K                         ? TM_DTYPE_Q8_0
            : t == TM_DTYPE_Q4_K || t == TM_DTYPE_Q5_K ? TM_DTYPE_Q5_0
                                                       : TM_DTYPE_Q4_0;
        if (k % 32 != 0)
            t = TM_DTYPE_F16;
    }
    return t;
}

/* ---- parallel row conversion --------------------------------------------------------- */

typedef struct quant_job {
    const void *src; /* source rows (src_type) or NULL for random */
    tm_dtype    src_type;
    size_t      src_row; /* bytes */
    uint8_t    *dst;
    tm_dtype    dst_type;
    size_t      dst_row;
    int64_t     k, n_rows;
    float       fill; /* random: 0 = N(0, 0.02)-like; else constant */
    uint32_t    seed;
    int         ith, nth;
    tm_status   st;
} quant_job;

static void *quant_worker(void *arg) {
    quant_job *j = arg;
    float     *row = malloc(sizeof(float) * (size_t)j->k);
    if (row == NULL) {
        j->st = TM_ERR_NOMEM;
        return NULL;
    }
    for (int64_t r = j->ith; r < j->n_rows && j->st == TM_OK; r += j->nth) {
        if (j->src != NULL) {
            j->st = tm_dequantize_row(j->src_type, (const char *)j->src + (size_t)r * j->src_row,
                                      row, j->k);
        } else {
            uint32_t s = j->seed ^ (uint32_t)(r * 2654435761u) ^ 0x9e3779b9u;
            for (int64_t i = 0; i < j->k; i++) {
                if (j->fill != 0.0f) {
                    row[i] = j->fill;
                    continue;
                }
                /* sum of 4 uniforms: roughly normal, std 0.02 */
                float u = 0.0f;
                for (int m = 0; m < 4; m++) {
                    s ^= s << 13;
                    s ^= s >> 17;
                    s ^= s << 5;
                    u += (float)(s >> 8) / 16777216.0f - 0.5f;
                }
                row[i] = u * 0.0346f;
            }
        }
        if (j->st == TM_OK)
            j->st = tm_quantize_row(j->dst_type, row, j->dst + (size_t)r * j->dst_row, j->k);
    }
    free(row);
    return NULL;
}

/* Converts n_rows rows of k elements into a new buffer (caller frees). */
static tm_status quant_rows(const void *src, tm_dtype src_type, tm_dtype dst_type, int64_t k,
                            int64_t n_rows, float fill, uint32_t seed, uint8_t **out,
                            size_t *out_bytes) {
    size_t src_row = 0, dst_row;
    if (src != NULL)
        TM_TRY(tm_dtype_row_bytes(src_type, k, &src_row));
    TM_TRY(tm_dtype_row_bytes(dst_type, k, &dst_row));
    *out_bytes = dst_row * (size_t)n_rows;
    *out = malloc(*out_bytes ? *out_bytes : 1);
    if (*out == NULL)
        return tm_fail(TM_ERR_NOMEM, "%zu bytes", *out_bytes);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int  nth = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu;
    if (n_rows < 64)
        nth = 1;
    quant_job jobs[64];
    pthread_t th[64];
    for (int i = 0; i < nth; i++) {
        jobs[i] = (quant_job){src,    src_type, src_row, *out, dst_type, dst_row, k,
                              n_rows, fill,     seed,    i,    nth,      TM_OK};
        if (i > 0 && pthread_create(&th[i], NULL, quant_worker, &jobs[i]) != 0)
            return tm_fail(TM_ERR_NOMEM, "cannot start a thread");
    }
    quant_worker(&jobs[0]);
    tm_status st = jobs[0].st;
    for (int i = 1; i < nth; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].st != TM_OK)
            st = jobs[i].st;
    }
    return st;
}

/* ---- the two modes --------------------------------------------------------------------- */

#define QUANT_MAX_TENSORS 4096

typedef struct quant_out {
    tm_gguf_writer *w;
    uint8_t        *bufs[QUANT_MAX_TENSORS];
    int             n_bufs;
} quant_out;

static tm_status quant_add(quant_out *o, const char *name, tm_dtype dst, int32_t n_dims,
                           const int64_t *ne, const void *src, tm_dtype src_type, float fill,
                           uint32_t seed) {
    if (o->n_bufs == QUANT_MAX_TENSORS)
        return tm_fail(TM_ERR_INVALID, "more than %d tensors", QUANT_MAX_TENSORS);
    int64_t rows = 1;
    for (int d = 1; d < n_dims; d++)
        rows *= ne[d];
    uint8_t *buf;
    size_t   nb;
    TM_TRY(quant_rows(src, src_type, dst, ne[0], rows, fill, seed, &buf, &nb));
    o->bufs[o->n_bufs++] = buf;
    return tm_gguf_writer_add_tensor(o->w, name, dst, n_dims, ne, buf, nb);
}

/* Matrices llama.cpp's quantizer copies unchanged (llama-quant.cpp): learned positions
 * (gpt2, bert) and token types (bert). */
static bool quant_keeps(const char *name) {
    return strcmp(name, "position_embd.weight") == 0 || strcmp(name, "token_types.weight") == 0;
}

static int quant_layer_of(const char *name) {
    int i;
    return sscanf(name, "blk.%d.", &i) == 1 ? i : -1;
}

static tm_status quant_file(quant_out *o, const tm_gguf *in, const quant_plan *p) {
    int64_t n_layer = 0;
    for (int64_t i = 0; i < tm_gguf_n_tensors(in); i++) {
        char                  nm[256];
        const tm_gguf_tensor *t = tm_gguf_tensor_at(in, i);
        snprintf(nm, sizeof nm, "%.*s", (int)t->name.len, t->name.ptr);
        int l = quant_layer_of(nm);
        if (l + 1 > n_layer)
            n_layer = l + 1;
    }
    for (int64_t i = 0; i < tm_gguf_n_tensors(in); i++) {
        const tm_gguf_tensor *t = tm_gguf_tensor_at(in, i);
        char                  nm[256];
        if (t->name.len >= sizeof nm)
            return tm_fail(TM_ERR_FORMAT, "tensor name too long");
        snprintf(nm, sizeof nm, "%.*s", (int)t->name.len, t->name.ptr);
        const tm_dtype_traits *tr = tm_dtype_get_traits(t->dtype);
        const size_t           len = strlen(nm);
        const bool matrix = t->n_dims >= 2 && len > 7 && !strcmp(nm + len - 7, ".weight") &&
                            tr != NULL && tr->can_dequant && !quant_keeps(nm);
        if (!matrix) {
            TM_TRY(tm_gguf_writer_add_tensor(o->w, nm, t->dtype, t->n_dims, t->ne, t->data,
                                             t->n_bytes));
            continue;
        }
        tm_dtype dst = quant_type_for(p, nm, quant_layer_of(nm), (int)n_layer, t->ne[0]);
        fprintf(stderr, "  %-32s %-6s -> %s\n", nm, tm_dtype_name(t->dtype), tm_dtype_name(dst));
        TM_TRY(quant_add(o, nm, dst, t->n_dims, t->ne, t->data, t->dtype, 0.0f, 0));
    }
    return TM_OK;
}

static tm_status quant_random(quant_out *o, const quant_plan *p, const int64_t sh[5],
                              int64_t n_vocab, uint32_t seed) {
    const int64_t   E = sh[0], L = sh[1], H = sh[2], HKV = sh[3], FF = sh[4], hd = E / H;
    tm_gguf_writer *w = o->w;
    TM_TRY(tm_gguf_writer_set_str(w, "general.architecture", "llama"));
    TM_TRY(tm_gguf_writer_set_str(w, "general.name", "random-weights llama (bench)"));
    TM_TRY(tm_gguf_writer_set_u32(w, "llama.context_length", 2048));
    TM_TRY(tm_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)E));
    TM_TRY(tm_gguf_writer_set_u32(w, "llama.block_count", (uint32_t)L));
    TM_TRY(tm_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)FF));
    TM_TRY(tm_gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)hd));
    TM_TRY(tm_gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)H));
    TM_TRY(tm_gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)HKV));
    TM_TRY(tm_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f));
    TM_TRY(tm_gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f));
    uint32_t s = seed;
    TM_TRY(quant_add(o, "token_embd.weight", quant_type_for(p, "token_embd.weight", -1, (int)L, E),
                     2, (int64_t[]){E, n_vocab}, NULL, TM_DTYPE_F32, 0.0f, s++));
    for (int64_t l = 0; l < L; l++) {
        static const char *const names[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                            "ffn_gate", "ffn_up", "ffn_down"};
        const int64_t            shapes[][2] = {{E, E},  {E, HKV * hd}, {E, HKV * hd}, {E, E},
                                                {E, FF}, {E, FF},       {FF, E}};
        char                     nm[64];
        fprintf(stderr, "  layer %lld/%lld\n", (long long)l + 1, (long long)L);
        for (int k = 0; k < 7; k++) {
            snprintf(nm, sizeof nm, "blk.%lld.%s.weight", (long long)l, names[k]);
            TM_TRY(quant_add(o, nm, quant_type_for(p, nm, (int)l, (int)L, shapes[k][0]), 2,
                             shapes[k], NULL, TM_DTYPE_F32, 0.0f, s++));
        }
        snprintf(nm, sizeof nm, "blk.%lld.attn_norm.weight", (long long)l);
        TM_TRY(quant_add(o, nm, TM_DTYPE_F32, 1, (int64_t[]){E}, NULL, TM_DTYPE_F32, 1.0f, 0));
        snprintf(nm, sizeof nm, "blk.%lld.ffn_norm.weight", (long long)l);
        TM_TRY(quant_add(o, nm, TM_DTYPE_F32, 1, (int64_t[]){E}, NULL, TM_DTYPE_F32, 1.0f, 0));
    }
    TM_TRY(quant_add(o, "output_norm.weight", TM_DTYPE_F32, 1, (int64_t[]){E}, NULL, TM_DTYPE_F32,
                     1.0f, 0));
    TM_TRY(quant_add(o, "output.weight", quant_type_for(p, "output.weight", -1, (int)L, E), 2,
                     (int64_t[]){E, n_vocab}, NULL, TM_DTYPE_F32, 0.0f, s++));
    return TM_OK;
}

int lctl_quantize(int argc, char **argv) {
    const char   *pos[3] = {NULL, NULL, NULL}, *shape = "2048,22,32,4,5632";
    int           n_pos = 0;
    bool          random = false;
    unsigned long seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            quant_usage(stdout);
            return 0;
        } else if (!strcmp(a, "--random")) {
            random = true;
        } else if (!strcmp(a, "--shape") && i + 1 < argc) {
            shape = argv[++i];
        } else if (!strcmp(a, "--seed") && i + 1 < argc) {
            seed = strtoul(argv[++i], NULL, 0);
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "lctl quantize: unknown option '%s'\n\n", a);
            quant_usage(stderr);
            return 2;
        } else if (n_pos < 3) {
            pos[n_pos++] = a;
        } else {
            fprintf(stderr, "lctl quantize: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    quant_plan plan;
    if (n_pos != 3) {
        quant_usage(stderr);
        return 2;
    }
    if (quant_plan_parse(pos[2], &plan) != 0) {
        fprintf(stderr, "lctl quantize: unknown or unsupported type '%s'\n", pos[2]);
        return 2;
    }
    int64_t sh[5];
    if (random &&
        (sscanf(shape, "%" SCNd64 ",%" SCNd64 ",%" SCNd64 ",%" SCNd64 ",%" SCNd64, &sh[0], &sh[1],
                &sh[2], &sh[3], &sh[4]) != 5 ||
         sh[0] <= 0 || sh[1] <= 0 || sh[2] <= 0 || sh[3] <= 0 || sh[4] <= 0 || sh[0] % sh[2] != 0 ||
         sh[2] % sh[3] != 0 || sh[0] > (1 << 16) || sh[1] > 1024 || sh[4] > (1 << 18))) {
        fprintf(stderr, "lctl quantize: bad --shape '%s' (E,L,H,HKV,FF)\n", shape);
        return 2;
    }
    int       rc = 1;
    tm_gguf  *in = NULL;
    quant_out o = {0};
    if (tm_gguf_open(pos[0], &in) != TM_OK || tm_gguf_writer_init(&o.w) != TM_OK ||
        tm_gguf_writer_copy_kv(o.w, in) != TM_OK)
        goto fail;
    tm_status st;
    if (random) {
        int64_t idx = tm_gguf_find_key(in, "tokenizer.ggml.tokens");
        if (idx < 0) {
            fprintf(stderr, "lctl quantize: %s has no tokenizer.ggml.tokens\n", pos[0]);
            goto done;
        }
        st = quant_random(&o, &plan, sh, (int64_t)tm_gguf_kv_arr_n(in, idx), (uint32_t)seed);
    } else {
        st = quant_file(&o, in, &plan);
    }
    if (st != TM_OK || tm_gguf_writer_set_u32(o.w, "general.file_type", plan.ftype) != TM_OK ||
        tm_gguf_writer_write(o.w, pos[1]) != TM_OK)
        goto fail;
    fprintf(stderr, "lctl quantize: wrote %s (%s)\n", pos[1], pos[2]);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "lctl quantize: %s\n", tm_last_error());
done:
    for (int i = 0; i < o.n_bufs; i++)
        free(o.bufs[i]);
    tm_gguf_writer_free(o.w);
    tm_gguf_close(in);
    return rc;
}
