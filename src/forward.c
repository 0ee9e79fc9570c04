/* forward.c - a session: one sequence's KV cache and activations, and the forward
 * pass of the model over a batch of new tokens (as Meta's model.py Transformer.forward).
 *
 * Invariants: every buffer is allocated once in herd_session_new, sized for
 * n_ctx positions and chunks of at most CHUNK tokens; eval never allocates. The
 * cache holds keys (after RoPE) and values for positions 0 .. pos-1. Prompts
 * longer than CHUNK are processed in CHUNK-sized pieces.
 * Not here: batching several sequences (the server's scheduler), sampling.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

enum { CHUNK = 128 };

struct herd_session {
    const herd_model *m;
    int n_ctx, pos, n_threads;
    void *kc, *vc;           /* (L, S, NKV, HS) of kv_type (f32 or f16) */
    int kv_type;
    size_t kv_es;            /* bytes per cache element */
    float *x, *xb, *xb2;     /* (CHUNK, C) */
    float *q;                /* (CHUNK, NH*HS) */
    float *k, *v;            /* (CHUNK, NKV*HS) */
    float *att;              /* (CHUNK, NH*HS) */
    float *hb, *hb2;         /* (CHUNK, F) */
    float *logits;           /* (V) last token */
    float *att_scratch;
    void *mm_scratch;
};

herd_session_params herd_session_default_params(void) {
    herd_session_params p = { 0, 0, HERD_F32 };
    return p;
}

int herd_session_n_ctx(const herd_session *s) { return s->n_ctx; }
int herd_session_pos(const herd_session *s) { return s->pos; }
void herd_session_reset(herd_session *s) { s->pos = 0; }
void herd_session_rewind(herd_session *s, int pos) {
    if (pos >= 0 && pos < s->pos) s->pos = pos;
}
const float *herd_session_logits(const herd_session *s) { return s->logits; }

static void *alloc_floats(size_t n) { return aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64); }

void herd_session_free(herd_session *s) {
    if (!s) return;
    free(s->kc); free(s->vc); free(s->x); free(s->xb); free(s->xb2); free(s->q); free(s->k);
    free(s->v); free(s->att); free(s->hb); free(s->hb2); free(s->logits); free(s->att_scratch);
    free(s->mm_scratch);
    free(s);
}

static size_t max_scratch(const herd_model *m) {
    const herd_config *c = &m->config;
    size_t best = matmul_scratch_size(m->output.type, 1, c->dim);
    size_t e = matmul_scratch_size(m->output.type, CHUNK, c->dim);
    if (e > best) best = e;
    for (int l = 0; l < c->n_layers; l++) {
        const herd_layer *L = &m->layers[l];
        const herd_weight *ws[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3 };
        for (int i = 0; i < 7; i++) {
            size_t n = matmul_scratch_size(ws[i]->type, CHUNK, ws[i]->ic);
            if (n > best) best = n;
        }
    }
    return best;
}

herd_status herd_session_new(herd_session **out, const herd_model *m, herd_session_params p,
                             herd_error *err) {
    *out = NULL;
    const herd_config *c = &m->config;
    int n_ctx = p.n_ctx;
    if (n_ctx <= 0) n_ctx = c->max_seq_len < 8192 ? c->max_seq_len : 8192;
    if (n_ctx > c->max_seq_len)
        return herd_errf(err, HERD_ERR_ARG, "context %d is longer than the model's maximum %d; "
                         "pass a smaller -c", n_ctx, c->max_seq_len);
    if (n_ctx < 1 || n_ctx > (1 << 22))
        return herd_errf(err, HERD_ERR_ARG, "context %d is out of range (1 .. %d)", n_ctx, 1 << 22);
    if (p.kv_type != HERD_F32 && p.kv_type != HERD_F16)
        return herd_errf(err, HERD_ERR_ARG, "KV cache type %s (%d) is not supported; use F32 or F16",
                         herd_type_name(p.kv_type), p.kv_type);
    herd_session *s = calloc(1, sizeof *s);
    if (!s) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    s->m = m;
    s->n_ctx = n_ctx;
    s->n_threads = p.n_threads > 0 ? p.n_threads : omp_get_num_procs();
    size_t C = c->dim, QD = (size_t)c->n_heads * c->head_dim, KVD = (size_t)c->n_kv_heads * c->head_dim;
    size_t F = c->ffn_dim, cache = (size_t)c->n_layers * n_ctx * KVD;
    s->kv_type = p.kv_type;
    s->kv_es = p.kv_type == HERD_F16 ? 2 : 4;
    s->kc = alloc_floats((cache * s->kv_es + 3) / 4);
    s->vc = alloc_floats((cache * s->kv_es + 3) / 4);
    s->x = alloc_floats(CHUNK * C);
    s->xb = alloc_floats(CHUNK * C);
    s->xb2 = alloc_floats(CHUNK * C);
    s->q = alloc_floats(CHUNK * QD);
    s->k = alloc_floats(CHUNK * KVD);
    s->v = alloc_floats(CHUNK * KVD);
    s->att = alloc_floats(CHUNK * QD);
    s->hb = alloc_floats(CHUNK * F);
    s->hb2 = alloc_floats(CHUNK * F);
    s->logits = alloc_floats((size_t)c->vocab_size);
    s->att_scratch = alloc_floats(attention_scratch_size(CHUNK, n_ctx, c->n_heads) + 1);
    s->mm_scratch = aligned_alloc(64, (max_scratch(m) + 127) / 64 * 64);
    if (!s->kc || !s->vc || !s->x || !s->xb || !s->xb2 || !s->q || !s->k || !s->v || !s->att ||
        !s->hb || !s->hb2 || !s->logits || !s->att_scratch || !s->mm_scratch) {
        herd_session_free(s);
        return herd_errf(err, HERD_ERR_NOMEM, "out of memory allocating a %d-token context "
                         "(KV cache %.1f MiB); pass a smaller -c", n_ctx,
                         2.0 * cache * s->kv_es / 1048576.0);
    }
    *out = s;
    return HERD_OK;
}

static void add_inplace(float *x, const float *y, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* One chunk of T <= CHUNK tokens at positions pos .. pos+T-1. Writes logits for
 * every token into all_logits (T, V) when non-NULL, else for the last one only. */
static void forward_chunk(herd_session *s, const int32_t *ids, int T, float *all_logits) {
    const herd_model *m = s->m;
    const herd_config *c = &m->config;
    int C = c->dim, NH = c->n_heads, NKV = c->n_kv_heads, HS = c->head_dim, F = c->ffn_dim;
    int KVD = NKV * HS, pos = s->pos;
    size_t layer_stride = (size_t)s->n_ctx * KVD;
    void *scr = s->mm_scratch;

    for (int t = 0; t < T; t++)
        dequant_row(s->x + (size_t)t * C,
                    (const uint8_t *)m->tok_embd.data + (size_t)ids[t] * herd_type_row_size(m->tok_embd.type, C),
                    m->tok_embd.type, C);
    for (int l = 0; l < c->n_layers; l++) {
        const herd_layer *L = &m->layers[l];
        uint8_t *kc = (uint8_t *)s->kc + l * layer_stride * s->kv_es;
        uint8_t *vc = (uint8_t *)s->vc + l * layer_stride * s->kv_es;
        /* attention */
        rmsnorm_forward(s->xb, s->x, L->attn_norm, T, C, c->norm_eps);
        matmul_forward(s->q, s->xb, &L->wq, T, scr);
        matmul_forward(s->k, s->xb, &L->wk, T, scr);
        matmul_forward(s->v, s->xb, &L->wv, T, scr);
        rope_forward(s->q, m->rope_freqs, pos, T, NH, HS, m->rope_interleaved);
        rope_forward(s->k, m->rope_freqs, pos, T, NKV, HS, m->rope_interleaved);
        if (s->kv_type == HERD_F16) {
            uint16_t *k16 = (uint16_t *)kc, *v16 = (uint16_t *)vc;
            f32_to_f16_row(k16 + (size_t)pos * KVD, s->k, (int64_t)T * KVD);
            f32_to_f16_row(v16 + (size_t)pos * KVD, s->v, (int64_t)T * KVD);
            attention_forward_f16(s->att, s->q, k16, v16, pos, T, NH, NKV, HS, s->att_scratch);
        } else {
            memcpy(kc + (size_t)pos * KVD * 4, s->k, (size_t)T * KVD * sizeof(float));
            memcpy(vc + (size_t)pos * KVD * 4, s->v, (size_t)T * KVD * sizeof(float));
            attention_forward(s->att, s->q, (const float *)kc, (const float *)vc, pos, T, NH, NKV, HS,
                              s->att_scratch);
        }
        matmul_forward(s->xb2, s->att, &L->wo, T, scr);
        add_inplace(s->x, s->xb2, (size_t)T * C);
        /* feed_forward */
        rmsnorm_forward(s->xb, s->x, L->ffn_norm, T, C, c->norm_eps);
        matmul_forward(s->hb, s->xb, &L->w1, T, scr);
        matmul_forward(s->hb2, s->xb, &L->w3, T, scr);
        swiglu_forward(s->hb, s->hb, s->hb2, T, F);
        matmul_forward(s->xb2, s->hb, &L->w2, T, scr);
        add_inplace(s->x, s->xb2, (size_t)T * C);
    }
    if (all_logits) {
        rmsnorm_forward(s->xb, s->x, m->out_norm, T, C, c->norm_eps);
        matmul_forward(all_logits, s->xb, &m->output, T, scr);
        memcpy(s->logits, all_logits + (size_t)(T - 1) * c->vocab_size,
               (size_t)c->vocab_size * sizeof(float));
    } else {
        float *last = s->x + (size_t)(T - 1) * C;
        rmsnorm_forward(s->xb, last, m->out_norm, 1, C, c->norm_eps);
        matmul_forward(s->logits, s->xb, &m->output, 1, scr);
    }
    s->pos += T;
}

herd_status herd_session_eval(herd_session *s, const int32_t *ids, int n, float *all_logits,
                              herd_error *err) {
    const herd_config *c = &s->m->config;
    if (n <= 0) return herd_errf(err, HERD_ERR_ARG, "eval of %d tokens; need at least one", n);
    if (n > s->n_ctx - s->pos)
        return herd_errf(err, HERD_ERR_RANGE, "%d tokens do not fit: %d of the %d-token context "
                         "are used; pass a larger -c (the model allows %d) or a shorter prompt",
                         n, s->pos, s->n_ctx, c->max_seq_len);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return herd_errf(err, HERD_ERR_RANGE, "token id %d at position %d is out of range; "
                             "the vocabulary has ids 0 .. %d", ids[i], i, c->vocab_size - 1);
    int saved = omp_get_max_threads();
    omp_set_num_threads(s->n_threads);
    for (int i = 0; i < n; i += CHUNK) {
        int T = n - i < CHUNK ? n - i : CHUNK;
        forward_chunk(s, ids + i, T, all_logits ? all_logits + (size_t)i * c->vocab_size : NULL);
    }
    omp_set_num_threads(saved);
    return HERD_OK;
}
