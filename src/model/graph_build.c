/*
 * graph_build.c - recipe -> compute graph for one step of a batch of tokens.
 *
 * One transformer block serves every family; the recipe's flags switch its
 * optional parts (LayerNorm or RMSNorm, pre- or post-norm, biases, QK-norm,
 * post-norms, gated or plain MLP, RoPE or learned positions, sliding window,
 * embedding scale, causal or bidirectional attention, mean pooling).
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

int32_t tm__graph_capacity(const tm_model *m) { return 64 * m->hp.n_layer + 64; }

/* norm(x) * w [+ b]: RMSNorm or LayerNorm by the recipe. */
static tm_tensor *gb_norm(tm_graph *g, const tm_model *m, tm_tensor *x, const tm_tensor *w,
                          const tm_tensor *b) {
    const float eps = m->hp.rms_eps;
    x = m->recipe.norm == TM_NORM_LAYER ? tm_layer_norm(g, x, eps) : tm_rms_norm(g, x, eps);
    x = tm_mul(g, x, (tm_tensor *)w);
    if (b != NULL && b->data != NULL)
        x = tm_add(g, x, (tm_tensor *)b);
    return x;
}

/* W x [+ b] */
static tm_tensor *gb_linear(tm_graph *g, const tm_tensor *w, const tm_tensor *b, tm_tensor *x) {
    x = tm_mul_mat(g, (tm_tensor *)w, x);
    if (b->data != NULL)
        x = tm_add(g, x, (tm_tensor *)b);
    return x;
}

void tm__graph_build(const tm_model *m, tm_graph *g, const tm_build_params *bp,
                     tm_tensor **logits) {
    const tm_hparams *hp = &m->hp;
    const tm_recipe  *r = &m->recipe;
    const int64_t     T = bp->n_tokens, hd = hp->head_dim;
    const bool        post = r->norm_post;

    tm_tensor *ids = tm_graph_leaf(g, TM_DTYPE_I32, 1, (int64_t[]){T}, bp->ids);
    tm_tensor *pos = tm_graph_leaf(g, TM_DTYPE_I32, 1, (int64_t[]){T}, bp->pos);
    tm_tensor *ff = m->w[TM_SLOT_ROPE_FREQS].data ? (tm_tensor *)&m->w[TM_SLOT_ROPE_FREQS] : NULL;
    /* paged KV: one slot per token and a copy of its sequence's block table */
    tm_tensor *slots = NULL, *tabs = NULL;
    if (bp->slots != NULL) {
        slots = tm_graph_leaf(g, TM_DTYPE_I32, 1, (int64_t[]){T}, bp->slots);
        tabs = tm_graph_leaf(g, TM_DTYPE_I32, 2, (int64_t[]){bp->n_tbl, T}, bp->tables);
    }

    tm_tensor *x = tm_get_rows(g, (tm_tensor *)&m->w[TM_SLOT_TOKEN_EMBD], ids);
    if (r->embd_scale)
        x = tm_scale(g, x, sqrtf((float)hp->n_embd));
    if (r->pos == TM_POS_LEARNED)
        x = tm_add(g, x, tm_get_rows(g, (tm_tensor *)&m->w[TM_SLOT_POS_EMBD], pos));
    if (r->token_types)
        x = tm_add(g, x, (tm_tensor *)&m->tt0);
    if (r->embd_norm)
        x = gb_norm(g, m, x, &m->w[TM_SLOT_EMBD_NORM], &m->b[TM_SLOT_EMBD_NORM]);

    for (int32_t il = 0; il < hp->n_layer; il++) {
        const tm_layer  *L = &m->layers[il];
        const tm_tensor *w = L->w, *b = L->b;
        tm_tensor *h = post ? x : gb_norm(g, m, x, &w[TM_SLOT_ATTN_NORM], &b[TM_SLOT_ATTN_NORM]);
        tm_tensor *q = gb_linear(g, &w[TM_SLOT_ATTN_Q], &b[TM_SLOT_ATTN_Q], h);
        tm_tensor *k = gb_linear(g, &w[TM_SLOT_ATTN_K], &b[TM_SLOT_ATTN_K], h);
        tm_tensor *v = gb_linear(g, &w[TM_SLOT_ATTN_V], &b[TM_SLOT_ATTN_V], h);
        q = tm_reshape(g, q, 3, (int64_t[]){hd, hp->n_head, T});
        k = tm_reshape(g, k, 3, (int64_t[]){hd, hp->n_head_kv, T});
        v = tm_reshape(g, v, 3, (int64_t[]){hd, hp->n_head_kv, T});
        if (r->qk_norm) {
            q = gb_norm(g, m, q, &w[TM_SLOT_ATTN_Q_NORM], NULL);
            k = gb_norm(g, m, k, &w[TM_SLOT_ATTN_K_NORM], NULL);
        }
        if (r->pos == TM_POS_ROPE) {
            const float theta = L->swa ? hp->rope_theta_swa : hp->rope_theta;
            q = tm_rope(g, q, pos, L->swa ? NULL : ff, hp->n_rot, m->rope_mode, theta);
            k = tm_rope(g, k, pos, L->swa ? NULL : ff, hp->n_rot, m->rope_mode, theta);
        }
        tm_tensor *st = tm_kv_store(g, k, v, &bp->kc[il], &bp->vc[il], pos);
        tm_tensor *a = tm_attn(g, q, &bp->kc[il], &bp->vc[il], pos, st, hp->n_head_kv,
                               L->swa ? hp->n_swa : 0, 1.0f / sqrtf((float)hd), r->attn_softcap);
        if (slots != NULL) {
            tm_kv_store_set_slots(st, slots);
            tm_attn_set_blocks(a, tabs, bp->block_size);
        }
        if (!r->causal)
            tm_attn_set_bidirectional(a);
        tm_tensor *o = gb_linear(g, &w[TM_SLOT_ATTN_OUT], &b[TM_SLOT_ATTN_OUT], a);
        if (r->post_norms)
            o = gb_norm(g, m, o, &w[TM_SLOT_POST_ATTN_NORM], NULL);
        x = tm_add(g, x, o);
        if (post)
            x = gb_norm(g, m, x, &w[TM_SLOT_ATTN_NORM], &b[TM_SLOT_ATTN_NORM]);

        h = post ? x : gb_norm(g, m, x, &w[TM_SLOT_FFN_NORM], &b[TM_SLOT_FFN_NORM]);
        tm_tensor *up = gb_linear(g, &w[TM_SLOT_FFN_UP], &b[TM_SLOT_FFN_UP], h);
        tm_tensor *act;
        switch (r->mlp) {
        case TM_MLP_SWIGLU:
            act = tm_mul(g, tm_silu(g, gb_linear(g, &w[TM_SLOT_FFN_GATE], &b[TM_SLOT_FFN_GATE], h)),
                         up);
            break;
        case TM_MLP_GEGLU:
            act = tm_mul(g, tm_gelu(g, gb_linear(g, &w[TM_SLOT_FFN_GATE], &b[TM_SLOT_FFN_GATE], h)),
                         up);
            break;
        case TM_MLP_GELU: act = tm_gelu(g, up); break;
        default: act = tm_gelu_erf(g, up); break;
        }
        tm_tensor *mo = gb_linear(g, &w[TM_SLOT_FFN_DOWN], &b[TM_SLOT_FFN_DOWN], act);
        if (r->post_norms)
            mo = gb_norm(g, m, mo, &w[TM_SLOT_POST_FFN_NORM], NULL);
        x = tm_add(g, x, mo);
        if (post)
            x = gb_norm(g, m, x, &w[TM_SLOT_FFN_NORM], &b[TM_SLOT_FFN_NORM]);
    }
    if (r->pooling == TM_POOL_MEAN) {
        /* sentence-transformers: mean over the tokens (all of them: one unpadded
         * sequence per call), then F.normalize: x / ||x||, as rms_norm(x) / sqrt(E)
         * with an eps far below any real norm. */
        tm_tensor *p = tm_mean_rows(g, x);
        p = tm_rms_norm(g, p, 1e-30f);
        p = tm_scale(g, p, 1.0f / sqrtf((float)hp->n_embd));
        tm_graph_set_output(p);
        *logits = p;
        return;
    }
    if (!bp->logits_all && bp->n_out == 0) {
        /* nothing to read out (a prefill chunk): the step only fills the cache */
        tm_graph_set_output(x);
        *logits = NULL;
        return;
    }
    if (!bp->logits_all && bp->out_ids == NULL && T > 1) {
        x = tm_view_cols(g, x, T - 1, 1);
    } else if (!bp->logits_all && bp->out_ids != NULL && bp->n_out < T) {
        /* the requested tokens' hidden states only (a copy: exact) */
        tm_tensor *oi = tm_graph_leaf(g, TM_DTYPE_I32, 1, (int64_t[]){bp->n_out}, bp->out_ids);
        x = tm_get_rows(g, x, oi);
    }
    x = gb_norm(g, m, x, &m->w[TM_SLOT_OUTPUT_NORM], &m->b[TM_SLOT_OUTPUT_NORM]);
    const tm_tensor *wout =
        m->w[TM_SLOT_OUTPUT].data != NULL ? &m->w[TM_SLOT_OUTPUT] : &m->w[TM_SLOT_TOKEN_EMBD];
    tm_tensor *out = tm_mul_mat(g, (tm_tensor *)wout, x);
    if (r->final_softcap > 0.0f)
        out = tm_softcap(g, out, r->final_softcap);
    tm_graph_set_output(out);
    *logits = out;
}
