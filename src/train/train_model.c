/* train_model.c - the model for training: float32 master parameters and their
 * gradients (one allocation each, laid out tensor after tensor in checkpoint
 * order), the activations one (B, T) batch saves (one allocation), and the forward
 * and backward passes over a batch. train_backward is train_forward read backwards,
 * one op a line.
 *
 * Invariants: sizes are fixed at train_model_new; forward and backward never
 * allocate. A backward must follow the forward of the same batch (it consumes the
 * logits, turning them into dlogits). Tied output: w.output == w.tok_embd, and
 * both gradients land in dw.tok_embd.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train.h"

/* Lays out params (or grads) at base: the parameter order of checkpoints. */
static size_t layout(train_params *p, float *base, const herd_config *c) {
    size_t C = c->dim, V = c->vocab_size, F = c->ffn_dim;
    size_t QD = (size_t)c->n_heads * c->head_dim, KVD = (size_t)c->n_kv_heads * c->head_dim;
    size_t off = 0;
#define TAKE(ptr, n) do { if (base) (ptr) = base + off; off += (n); } while (0)
    TAKE(p->tok_embd, V * C);
    for (int l = 0; l < c->n_layers; l++) {
        train_layer *L = &p->layers[l];
        TAKE(L->attn_norm, C);
        TAKE(L->wq, QD * C);
        TAKE(L->wk, KVD * C);
        TAKE(L->wv, KVD * C);
        TAKE(L->wo, C * QD);
        TAKE(L->ffn_norm, C);
        TAKE(L->w1, F * C);
        TAKE(L->w2, C * F);
        TAKE(L->w3, F * C);
    }
    TAKE(p->out_norm, C);
    if (c->tie_embeddings) { if (base) p->output = p->tok_embd; }
    else TAKE(p->output, V * C);
#undef TAKE
    return off;
}

/* Lays out activations at base (NULL: just count floats). */
static size_t layout_acts(train_model *tm, float *base) {
    const herd_config *c = &tm->c;
    size_t N = (size_t)tm->B * tm->T, C = c->dim, V = c->vocab_size, F = c->ffn_dim;
    size_t QD = (size_t)c->n_heads * c->head_dim, KVD = (size_t)c->n_kv_heads * c->head_dim;
    size_t ATT = (size_t)tm->B * c->n_heads * tm->T * tm->T, HALF = c->head_dim / 2;
    size_t off = 0;
    /* 16-float (64-byte) aligned pieces */
#define TAKE(ptr, n) do { if (base) (ptr) = base + off; off += ((size_t)(n) + 15) & ~(size_t)15; } while (0)
    for (int l = 0; l < c->n_layers; l++) {
        train_acts_layer *A = &tm->acts[l];
        TAKE(A->x, N * C); TAKE(A->xn1, N * C); TAKE(A->rstd1, N);
        TAKE(A->q, N * QD); TAKE(A->k, N * KVD); TAKE(A->v, N * KVD);
        TAKE(A->att, ATT); TAKE(A->atty, N * QD);
        TAKE(A->xmid, N * C); TAKE(A->xn2, N * C); TAKE(A->rstd2, N);
        TAKE(A->h1, N * F); TAKE(A->h3, N * F); TAKE(A->hs, N * F);
    }
    TAKE(tm->xf, N * C); TAKE(tm->xnf, N * C); TAKE(tm->rstdf, N);
    TAKE(tm->logits, N * V); TAKE(tm->losses, N);
    TAKE(tm->dx, N * C); TAKE(tm->dxn, N * C);
    TAKE(tm->dq, N * QD); TAKE(tm->dk, N * KVD); TAKE(tm->dv, N * KVD); TAKE(tm->datty, N * QD);
    TAKE(tm->dh1, N * F); TAKE(tm->dh3, N * F); TAKE(tm->dhs, N * F);
    TAKE(tm->att_scratch, (size_t)tm->B * c->n_kv_heads * tm->T);
    TAKE(tm->rope_cos, tm->T * HALF); TAKE(tm->rope_sin, tm->T * HALF);
#undef TAKE
    return off;
}

void train_model_free(train_model *tm) {
    free(tm->params); free(tm->grads); free(tm->mem);
    free(tm->w.layers); free(tm->dw.layers); free(tm->acts);
    memset(tm, 0, sizeof *tm);
}

herd_status train_model_new(train_model *tm, const herd_config *c, const float *freqs,
                            int rope_interleaved, int B, int T, herd_error *err) {
    memset(tm, 0, sizeof *tm);
    if (B < 1 || T < 1)
        return herd_errf(err, HERD_ERR_ARG, "train: batch %d and sequence %d must be positive", B, T);
    if ((double)B * T > (1 << 24) || (double)B * c->n_heads * T * T > 1e10)
        return herd_errf(err, HERD_ERR_ARG, "train: batch %d x sequence %d is too large", B, T);
    tm->c = *c;
    tm->rope_interleaved = rope_interleaved;
    tm->B = B;
    tm->T = T;
    tm->w.layers = calloc((size_t)c->n_layers, sizeof(train_layer));
    tm->dw.layers = calloc((size_t)c->n_layers, sizeof(train_layer));
    tm->acts = calloc((size_t)c->n_layers, sizeof(train_acts_layer));
    tm->n_params = layout(&tm->w, NULL, c);
    size_t n_act = layout_acts(tm, NULL);
    size_t pbytes = (tm->n_params * sizeof(float) + 63) / 64 * 64;
    if (tm->w.layers && tm->dw.layers && tm->acts) {
        tm->params = aligned_alloc(64, pbytes);
        tm->grads = aligned_alloc(64, pbytes);
        tm->mem = aligned_alloc(64, (n_act * sizeof(float) + 63) / 64 * 64);
    }
    if (!tm->params || !tm->grads || !tm->mem) {
        train_model_free(tm);
        return herd_errf(err, HERD_ERR_NOMEM, "train: out of memory for %zu parameters and %.1f "
                         "MiB of activations; try a smaller --batch or --seq", pbytes / 4,
                         n_act * 4.0 / 1048576.0);
    }
    memset(tm->params, 0, tm->n_params * sizeof(float));
    memset(tm->grads, 0, tm->n_params * sizeof(float));
    memset(tm->mem, 0, n_act * sizeof(float));
    layout(&tm->w, tm->params, c);
    layout(&tm->dw, tm->grads, c);
    layout_acts(tm, tm->mem);
    rope_tables(tm->rope_cos, tm->rope_sin, freqs, T, c->head_dim);
    return HERD_OK;
}

static void dequant_weight(float *dst, const herd_weight *w) {
    size_t row = herd_type_row_size(w->type, w->ic);
    for (int64_t o = 0; o < w->oc; o++)
        dequant_row(dst + (size_t)o * w->ic, (const uint8_t *)w->data + (size_t)o * row, w->type, w->ic);
}

herd_status train_model_load(train_model *tm, const herd_model *m, herd_error *err) {
    const herd_config *c = &tm->c;
    if (m->config.dim != c->dim || m->config.n_layers != c->n_layers ||
        m->config.vocab_size != c->vocab_size || m->config.ffn_dim != c->ffn_dim)
        return herd_errf(err, HERD_ERR_ARG, "train: model shape does not match the training model");
    size_t C = c->dim;
    dequant_weight(tm->w.tok_embd, &m->tok_embd);
    for (int l = 0; l < c->n_layers; l++) {
        const herd_layer *S = &m->layers[l];
        train_layer *L = &tm->w.layers[l];
        memcpy(L->attn_norm, S->attn_norm, C * sizeof(float));
        memcpy(L->ffn_norm, S->ffn_norm, C * sizeof(float));
        dequant_weight(L->wq, &S->wq); dequant_weight(L->wk, &S->wk);
        dequant_weight(L->wv, &S->wv); dequant_weight(L->wo, &S->wo);
        dequant_weight(L->w1, &S->w1); dequant_weight(L->w2, &S->w2);
        dequant_weight(L->w3, &S->w3);
    }
    memcpy(tm->w.out_norm, m->out_norm, C * sizeof(float));
    if (!c->tie_embeddings) dequant_weight(tm->w.output, &m->output);
    return HERD_OK;
}

static void residual_add(float *out, const float *a, const float *b, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

double train_forward(train_model *tm, const int32_t *ids, const int32_t *targets) {
    const herd_config *c = &tm->c;
    const int B = tm->B, T = tm->T, N = B * T, C = c->dim, NH = c->n_heads, NKV = c->n_kv_heads;
    const int HS = c->head_dim, F = c->ffn_dim, V = c->vocab_size, QD = NH * HS, KVD = NKV * HS;
    const float eps = c->norm_eps;
    const train_params *w = &tm->w;

    embedding_forward(tm->acts[0].x, ids, w->tok_embd, N, C);
    for (int l = 0; l < c->n_layers; l++) {
        const train_layer *L = &w->layers[l];
        train_acts_layer *A = &tm->acts[l];
        float *xnext = l + 1 < c->n_layers ? tm->acts[l + 1].x : tm->xf;
        /* attention */
        rmsnorm_train_forward(A->xn1, A->rstd1, A->x, L->attn_norm, N, C, eps);
        matmul_train_forward(A->q, A->xn1, L->wq, N, C, QD);
        matmul_train_forward(A->k, A->xn1, L->wk, N, C, KVD);
        matmul_train_forward(A->v, A->xn1, L->wv, N, C, KVD);
        rope_train_forward(A->q, tm->rope_cos, tm->rope_sin, B, T, NH, HS, tm->rope_interleaved);
        rope_train_forward(A->k, tm->rope_cos, tm->rope_sin, B, T, NKV, HS, tm->rope_interleaved);
        attention_train_forward(A->atty, A->att, A->q, A->k, A->v, B, T, NH, NKV, HS);
        matmul_train_forward(A->xmid, A->atty, L->wo, N, QD, C);
        residual_add(A->xmid, A->xmid, A->x, (size_t)N * C);
        /* feed_forward */
        rmsnorm_train_forward(A->xn2, A->rstd2, A->xmid, L->ffn_norm, N, C, eps);
        matmul_train_forward(A->h1, A->xn2, L->w1, N, C, F);
        matmul_train_forward(A->h3, A->xn2, L->w3, N, C, F);
        swiglu_train_forward(A->hs, A->h1, A->h3, N, F);
        matmul_train_forward(xnext, A->hs, L->w2, N, F, C);
        residual_add(xnext, xnext, A->xmid, (size_t)N * C);
    }
    rmsnorm_train_forward(tm->xnf, tm->rstdf, tm->xf, w->out_norm, N, C, eps);
    matmul_train_forward(tm->logits, tm->xnf, w->output, N, C, V);
    return crossentropy_forward(tm->losses, tm->logits, targets, N, V);
}

void train_backward(train_model *tm, const int32_t *ids, const int32_t *targets, float dloss) {
    const herd_config *c = &tm->c;
    const int B = tm->B, T = tm->T, N = B * T, C = c->dim, NH = c->n_heads, NKV = c->n_kv_heads;
    const int HS = c->head_dim, F = c->ffn_dim, V = c->vocab_size, QD = NH * HS, KVD = NKV * HS;
    const train_params *w = &tm->w, *dw = &tm->dw;

    crossentropy_backward(tm->logits, tm->logits, targets, dloss / (float)N, N, V);
    matmul_backward(tm->dxn, dw->output, tm->logits, tm->xnf, w->output, N, C, V, 0);
    memset(tm->dx, 0, (size_t)N * C * sizeof(float));
    rmsnorm_backward(tm->dx, dw->out_norm, tm->dxn, tm->xf, tm->rstdf, w->out_norm, N, C);
    for (int l = c->n_layers - 1; l >= 0; l--) {
        const train_layer *L = &w->layers[l], *dL = &dw->layers[l];
        const train_acts_layer *A = &tm->acts[l];
        /* feed_forward; tm->dx is the gradient of the layer output */
        matmul_backward(tm->dhs, dL->w2, tm->dx, A->hs, L->w2, N, F, C, 0);
        swiglu_backward(tm->dh1, tm->dh3, tm->dhs, A->h1, A->h3, N, F);
        matmul_backward(tm->dxn, dL->w1, tm->dh1, A->xn2, L->w1, N, C, F, 0);
        matmul_backward(tm->dxn, dL->w3, tm->dh3, A->xn2, L->w3, N, C, F, 1);
        rmsnorm_backward(tm->dx, dL->ffn_norm, tm->dxn, A->xmid, A->rstd2, L->ffn_norm, N, C);
        /* attention; tm->dx is now the gradient of xmid */
        matmul_backward(tm->datty, dL->wo, tm->dx, A->atty, L->wo, N, QD, C, 0);
        attention_backward(tm->dq, tm->dk, tm->dv, tm->datty, A->att, A->q, A->k, A->v, B, T, NH,
                           NKV, HS, tm->att_scratch);
        rope_backward(tm->dq, tm->rope_cos, tm->rope_sin, B, T, NH, HS, tm->rope_interleaved);
        rope_backward(tm->dk, tm->rope_cos, tm->rope_sin, B, T, NKV, HS, tm->rope_interleaved);
        matmul_backward(tm->dxn, dL->wq, tm->dq, A->xn1, L->wq, N, C, QD, 0);
        matmul_backward(tm->dxn, dL->wk, tm->dk, A->xn1, L->wk, N, C, KVD, 1);
        matmul_backward(tm->dxn, dL->wv, tm->dv, A->xn1, L->wv, N, C, KVD, 1);
        rmsnorm_backward(tm->dx, dL->attn_norm, tm->dxn, A->x, A->rstd1, L->attn_norm, N, C);
    }
    embedding_backward(dw->tok_embd, tm->dx, ids, N, C);
}

void train_model_each_tensor(const train_model *tm, train_tensor_fn fn, void *ctx) {
    const herd_config *c = &tm->c;
    int64_t C = c->dim, V = c->vocab_size, F = c->ffn_dim;
    int64_t QD = (int64_t)c->n_heads * c->head_dim, KVD = (int64_t)c->n_kv_heads * c->head_dim;
    char h[128], g[128];
    fn(ctx, "model.embed_tokens.weight", "token_embd.weight", 2, V, C, tm->w.tok_embd, 0);
    for (int l = 0; l < c->n_layers; l++) {
        const train_layer *L = &tm->w.layers[l];
#define T_(HN, GN, ND, R, CO, P, QK) do { \
        snprintf(h, sizeof h, "model.layers.%d.%s.weight", l, HN); \
        snprintf(g, sizeof g, "blk.%d.%s.weight", l, GN); \
        fn(ctx, h, g, ND, R, CO, P, QK); } while (0)
        T_("input_layernorm", "attn_norm", 1, 1, C, L->attn_norm, 0);
        T_("self_attn.q_proj", "attn_q", 2, QD, C, L->wq, c->n_heads);
        T_("self_attn.k_proj", "attn_k", 2, KVD, C, L->wk, c->n_kv_heads);
        T_("self_attn.v_proj", "attn_v", 2, KVD, C, L->wv, 0);
        T_("self_attn.o_proj", "attn_output", 2, C, QD, L->wo, 0);
        T_("post_attention_layernorm", "ffn_norm", 1, 1, C, L->ffn_norm, 0);
        T_("mlp.gate_proj", "ffn_gate", 2, F, C, L->w1, 0);
        T_("mlp.up_proj", "ffn_up", 2, F, C, L->w3, 0);
        T_("mlp.down_proj", "ffn_down", 2, C, F, L->w2, 0);
#undef T_
    }
    fn(ctx, "model.norm.weight", "output_norm.weight", 1, 1, C, tm->w.out_norm, 0);
    if (!c->tie_embeddings)
        fn(ctx, "lm_head.weight", "output.weight", 2, V, C, tm->w.output, 0);
}

/* GPT-2 / llm.c style initialisation for training from scratch: 2-D weights
 * N(0, 0.02^2), the projections onto the residual stream (o_proj, down_proj) scaled
 * by 1/sqrt(2L) so the stream's variance does not grow with depth, norm gains 1.
 * Tensors are filled in checkpoint order from one RNG, so a seed gives one model. */
typedef struct { herd_rng rng; int n_layers; } scratch_ctx;

static void scratch_tensor(void *vctx, const char *hf, const char *gg, int n_dims, int64_t rows,
                           int64_t cols, float *data, int qk) {
    scratch_ctx *s = vctx;
    size_t n = (size_t)rows * (size_t)cols;
    if (n_dims == 1) {
        for (size_t i = 0; i < n; i++) data[i] = 1.0f;
        return;
    }
    double std = 0.02;
    if (strstr(hf, "o_proj") || strstr(hf, "down_proj")) std /= sqrt(2.0 * s->n_layers);
    for (size_t i = 0; i < n; i++) data[i] = (float)(herd_rng_normal(&s->rng) * std);
}

void train_model_init_scratch(train_model *tm, uint64_t seed) {
    scratch_ctx s;
    herd_rng_seed(&s.rng, seed);
    s.n_layers = tm->c.n_layers;
    train_model_each_tensor(tm, scratch_tensor, &s);
}
