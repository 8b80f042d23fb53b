/*
 * graph_build.c - recipe -> compute graph for one step of a batch of tokens.
 *
 * One decoder block serves every family; the recipe's flags switch its optional
 * parts (biases, QK-norm, post-norms, GeGLU, sliding window, embedding scale).
 * The order of operations follows Hugging Face's modeling_<family>.py so the
 * float32 results match them within rounding:
 *
 *   x = embed(ids) [* sqrt(n_embd)]
 *   per layer:  h = norm(x) * w;  q,k,v = W h [+ b];  [q,k = norm(q,k) * w]
 *               q,k = rope(q,k);  a = attn(q, K, V);  o = Wo a;  [o = norm(o) * w]
 *               x = x + o;  h = norm(x) * w;  m = down(act(gate h) * up h);
 *               [m = norm(m) * w];  x = x + m
 *   logits = out(norm(x) * w)        (only the last token unless logits_all)
 */
#include <math.h>

#include "model/model_int.h"

int32_t tm__graph_capacity(const tm_model *m) { return 48 * m->hp.n_layer + 64; }

static tm_tensor *gb_norm(tm_graph *g, tm_tensor *x, const tm_tensor *w, float eps) {
    return tm_mul(g, tm_rms_norm(g, x, eps), (tm_tensor *)w);
}

void tm__graph_build(const tm_model *m, tm_graph *g, const tm_build_params *bp,
                     tm_tensor **logits) {
    const tm_hparams *hp = &m->hp;
    const tm_recipe  *r = &m->recipe;
    const int64_t     T = bp->n_tokens, hd = hp->head_dim;
    const float       eps = hp->rms_eps;

    tm_tensor *ids = tm_graph_leaf(g, TM_DTYPE_I32, 1, (int64_t[]){T}, bp->ids);
    tm_tensor *pos = tm_graph_leaf(g, TM_DTYPE_I32, 1, (int64_t[]){T}, bp->pos);
    tm_tensor *ff = m->rope_freqs.data ? (tm_tensor *)&m->rope_freqs : NULL;

    tm_tensor *x = tm_get_rows(g, (tm_tensor *)&m->tok_embd, ids);
    if (r->embd_scale)
        x = tm_scale(g, x, sqrtf((float)hp->n_embd));

    for (int32_t il = 0; il < hp->n_layer; il++) {
        const tm_layer *L = &m->layers[il];
        tm_tensor      *h = gb_norm(g, x, &L->attn_norm, eps);
        tm_tensor      *q = tm_mul_mat(g, (tm_tensor *)&L->wq, h);
        tm_tensor      *k = tm_mul_mat(g, (tm_tensor *)&L->wk, h);
        tm_tensor      *v = tm_mul_mat(g, (tm_tensor *)&L->wv, h);
        if (L->bq.data != NULL)
            q = tm_add(g, q, (tm_tensor *)&L->bq);
        if (L->bk.data != NULL)
            k = tm_add(g, k, (tm_tensor *)&L->bk);
        if (L->bv.data != NULL)
            v = tm_add(g, v, (tm_tensor *)&L->bv);
        q = tm_reshape(g, q, 3, (int64_t[]){hd, hp->n_head, T});
        k = tm_reshape(g, k, 3, (int64_t[]){hd, hp->n_head_kv, T});
        v = tm_reshape(g, v, 3, (int64_t[]){hd, hp->n_head_kv, T});
        if (r->qk_norm) {
            q = gb_norm(g, q, &L->q_norm, eps);
            k = gb_norm(g, k, &L->k_norm, eps);
        }
        const float theta = L->swa ? hp->rope_theta_swa : hp->rope_theta;
        q = tm_rope(g, q, pos, L->swa ? NULL : ff, hp->n_rot, r->rope_mode, theta);
        k = tm_rope(g, k, pos, L->swa ? NULL : ff, hp->n_rot, r->rope_mode, theta);
        tm_tensor *st = tm_kv_store(g, k, v, &bp->kc[il], &bp->vc[il], pos);
        tm_tensor *a = tm_attn(g, q, &bp->kc[il], &bp->vc[il], pos, st, hp->n_head_kv,
                               L->swa ? hp->n_swa : 0, 1.0f / sqrtf((float)hd), r->attn_softcap);
        tm_tensor *o = tm_mul_mat(g, (tm_tensor *)&L->wo, a);
        if (r->post_norms)
            o = gb_norm(g, o, &L->post_attn_norm, eps);
        x = tm_add(g, x, o);

        h = gb_norm(g, x, &L->ffn_norm, eps);
        tm_tensor *gate = tm_mul_mat(g, (tm_tensor *)&L->w_gate, h);
        tm_tensor *up = tm_mul_mat(g, (tm_tensor *)&L->w_up, h);
        gate = r->mlp == TM_MLP_GEGLU ? tm_gelu(g, gate) : tm_silu(g, gate);
        tm_tensor *mo = tm_mul_mat(g, (tm_tensor *)&L->w_down, tm_mul(g, gate, up));
        if (r->post_norms)
            mo = gb_norm(g, mo, &L->post_ffn_norm, eps);
        x = tm_add(g, x, mo);
    }
    if (!bp->logits_all && T > 1)
        x = tm_view_cols(g, x, T - 1, 1);
    x = gb_norm(g, x, &m->output_norm, eps);
    const tm_tensor *wout = m->output.data != NULL ? &m->output : &m->tok_embd;
    tm_tensor       *out = tm_mul_mat(g, (tm_tensor *)wout, x);
    if (r->final_softcap > 0.0f)
        out = tm_softcap(g, out, r->final_softcap);
    tm_graph_set_output(out);
    *logits = out;
}
