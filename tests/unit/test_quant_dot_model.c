/*
 * test_quant_dot_model.c - mul_mat's dot kernels inside a whole model: the
 * golden llama fixture requantized to several dtypes gives the same logits, bit
 * for bit, with 1 and 2 threads (prefill batch: the four-column dots; decode:
 * the one-column and four-row dots). The kernels themselves are checked against
 * the reference in test_quant_dot.c, which needs only core + backend (the arm64
 * cross build runs it); this test needs the model loader.
 */
#include <unistd.h>

#include "harness.h"
#include "tm/tm_gguf.h"
#include "tm/tm_model.h"

/* Writes the golden llama fixture with every matrix in t; false on failure. */
static bool qd_requant(const char *in_path, const char *out_path, tm_dtype t) {
    tm_gguf        *in = NULL;
    tm_gguf_writer *w = NULL;
    void           *bufs[64];
    int             n_bufs = 0;
    bool            ok = tm_gguf_open(in_path, &in) == TM_OK && tm_gguf_writer_init(&w) == TM_OK &&
              tm_gguf_writer_copy_kv(w, in) == TM_OK;
    for (int64_t i = 0; ok && i < tm_gguf_n_tensors(in); i++) {
        const tm_gguf_tensor *tt = tm_gguf_tensor_at(in, i);
        char                  name[128];
        snprintf(name, sizeof name, "%.*s", (int)tt->name.len, tt->name.ptr);
        if (tt->n_dims != 2 || tt->dtype != TM_DTYPE_F32 || n_bufs == 64) {
            ok = tm_gguf_writer_add_tensor(w, name, tt->dtype, tt->n_dims, tt->ne, tt->data,
                                           tt->n_bytes) == TM_OK;
            continue;
        }
        size_t rb;
        ok = tm_dtype_row_bytes(t, tt->ne[0], &rb) == TM_OK;
        uint8_t *q = malloc(rb * (size_t)tt->ne[1]);
        bufs[n_bufs++] = q;
        for (int64_t r = 0; ok && r < tt->ne[1]; r++)
            ok = tm_quantize_row(t, (const float *)tt->data + r * tt->ne[0], q + (size_t)r * rb,
                                 tt->ne[0]) == TM_OK;
        ok = ok &&
             tm_gguf_writer_add_tensor(w, name, t, 2, tt->ne, q, rb * (size_t)tt->ne[1]) == TM_OK;
    }
    ok = ok && tm_gguf_writer_write(w, out_path) == TM_OK;
    for (int i = 0; i < n_bufs; i++)
        free(bufs[i]);
    tm_gguf_writer_free(w);
    tm_gguf_close(in);
    return ok;
}

/* Logits of 7 prompt tokens (one batch: the four-column dots) and 3 decoded ones. */
static float *qd_model_logits(const char *path, int n_threads, int32_t *n_vocab) {
    tm_model_params mp = tm_model_params_default();
    mp.path = path;
    tm_model *m = NULL;
    tm_ctx   *c = NULL;
    if (tm_model_load(&mp, &m) != TM_OK)
        return NULL;
    const int32_t V = tm_model_get_hparams(m)->n_vocab;
    tm_ctx_params cp = tm_ctx_params_default();
    cp.n_ctx = 16;
    cp.n_threads = n_threads;
    cp.logits_all = true;
    float  *out = malloc(sizeof(float) * (size_t)V * 10);
    int32_t ids[10] = {1, 17, 42, 99, 3, 250, 8, 5, 77, 120};
    bool    ok = tm_ctx_init(m, &cp, &c) == TM_OK && tm_ctx_decode(c, ids, 7) == TM_OK;
    for (int t = 0; ok && t < 7; t++)
        memcpy(out + (size_t)t * V, tm_ctx_logits(c, t), sizeof(float) * (size_t)V);
    for (int t = 7; ok && t < 10; t++) {
        ok = tm_ctx_decode(c, &ids[t], 1) == TM_OK;
        if (ok)
            memcpy(out + (size_t)t * V, tm_ctx_logits(c, 0), sizeof(float) * (size_t)V);
    }
    tm_ctx_free(c);
    tm_model_free(m);
    if (!ok) {
        free(out);
        return NULL;
    }
    *n_vocab = V;
    return out;
}

TEST(model_logits_same_for_1_and_2_threads) {
    const char    *in = TM_SOURCE_DIR "/tests/golden/models/llama.gguf";
    const tm_dtype types[] = {TM_DTYPE_Q8_0, TM_DTYPE_Q4_0, TM_DTYPE_Q5_1, TM_DTYPE_F16};
    char           path[64];
    snprintf(path, sizeof path, "/tmp/tm_test_quant_dot_%d.gguf", (int)getpid());
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        ASSERT_TRUE(qd_requant(in, path, types[k]));
        int32_t V1 = 0, V2 = 0;
        float  *a = qd_model_logits(path, 1, &V1), *b = qd_model_logits(path, 2, &V2);
        ASSERT_TRUE(a != NULL && b != NULL && V1 == V2);
        if (memcmp(a, b, sizeof(float) * (size_t)V1 * 10) != 0)
            TM__FAIL_AT("%s: logits differ between 1 and 2 threads", tm_dtype_name(types[k]));
        free(a);
        free(b);
    }
    remove(path);
}

TM_TEST_MAIN()
