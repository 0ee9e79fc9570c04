/* batch.c - the forward pass (Meta's model.py Transformer.forward) over the new
 * tokens of many sequences at once: herd_session_eval_batch, and herd_session_eval
 * as its batch of one.
 *
 * The rows of every sequence are concatenated (at most pool->max_rows per round;
 * longer batches are split into rounds, a sequence's tokens possibly spanning
 * two), so each weight matrix is read once per round for all of them. Only RoPE,
 * the KV store and attention are done per sequence, at that sequence's positions.
 * The output projection runs on each sequence's last row (or on all its rows when
 * the caller wants every logit).
 *
 * Batch invariance: every op here computes a row from that row alone (embedding,
 * rmsnorm, RoPE, swiglu, residual) or relies on the kernels' promise that a row
 * of matmul_forward and of attention does not depend on the other rows or T, so
 * a sequence gets bitwise the same logits alone or in any batch
 * (tests/test_batch.c checks it).
 * Not here: sessions and pools (forward.c), sampling, scheduling.
 */
#include <omp.h>
#include <string.h>

#include "lora.h"
#include "session.h"

/* Final norm and output projection of rows x (T, C) into out (T, V). */
static void project(herd_kv_pool *P, float *out, const float *x, int T) {
    const herd_model *m = P->m;
    const herd_config *c = &m->config;
    rmsnorm_forward(P->xb, x, m->out_norm, T, c->dim, c->norm_eps);
    matmul_forward(out, P->xb, &m->output, T, P->mm_scratch);
}

/* The logits of segments segs[0 .. n_seg) of a round: all rows of segments that
 * want them, the last row of each sequence's last segment, max_out rows per
 * projection. */
static void round_logits(herd_kv_pool *P, const fwd_seg *segs, int n_seg) {
    const herd_config *c = &P->m->config;
    int C = c->dim, V = c->vocab_size;
    for (int i = 0; i < n_seg; i++) { /* hidden states wanted: the final norm alone, no logits */
        const fwd_seg *g = &segs[i];
        if (g->hidden) rmsnorm_forward(g->hidden, P->x + (size_t)g->row0 * C, P->m->out_norm, g->n, C, c->norm_eps);
    }
    for (int i = 0; i < n_seg; i++) {
        const fwd_seg *g = &segs[i];
        if (!g->all_logits || g->hidden) continue;
        for (int r = 0; r < g->n; r += P->max_rows) /* max_rows bounds the xb rows */
            project(P, g->all_logits + (size_t)r * V, P->x + (size_t)(g->row0 + r) * C,
                    g->n - r < P->max_rows ? g->n - r : P->max_rows);
        if (g->last) memcpy(g->s->logits, g->all_logits + (size_t)(g->n - 1) * V, (size_t)V * sizeof(float));
    }
    int who[P->max_out], k = 0;
    for (int i = 0; i <= n_seg; i++) {
        if (k == P->max_out || (i == n_seg && k > 0)) {
            project(P, P->logits, P->xo, k);
            for (int j = 0; j < k; j++)
                memcpy(segs[who[j]].s->logits, P->logits + (size_t)j * V, (size_t)V * sizeof(float));
            k = 0;
        }
        if (i == n_seg) break;
        const fwd_seg *g = &segs[i];
        if (!g->last || g->all_logits || g->hidden) continue;
        memcpy(P->xo + (size_t)k * C, P->x + (size_t)(g->row0 + g->n - 1) * C, (size_t)C * sizeof(float));
        who[k++] = i;
    }
}

enum { SMALL_SEG = 4 }; /* rows of a segment whose attention runs on one thread */

/* Rope on a segment's queries and keys, its keys and values into its KV pages,
 * and its attention. Rows of different segments touch disjoint memory (the
 * attention scratch too: 2 NH floats per row), so segments may run at once. */
static void attend(herd_kv_pool *P, const fwd_seg *g, int l) {
    const herd_model *m = P->m;
    const herd_config *c = &m->config;
    const int NH = c->n_heads, NKV = c->n_kv_heads, HS = c->head_dim, QD = NH * HS, KVD = NKV * HS;
    float *q = P->q + (size_t)g->row0 * QD, *k = P->k + (size_t)g->row0 * KVD;
    rope_forward(q, m->rope_freqs, g->pos0, g->n, NH, HS, m->rope_interleaved);
    rope_forward(k, m->rope_freqs, g->pos0, g->n, NKV, HS, m->rope_interleaved);
    kv_attend(&g->s->kv, l, g->pos0, g->n, q, k, P->v + (size_t)g->row0 * KVD, P->att + (size_t)g->row0 * QD,
              NH, P->att_scratch + kv_attend_scratch_size(g->row0, NH, HS));
}

/* The rows of segments segs[0 .. n) from the token embeddings. */
static void embed(herd_kv_pool *P, const fwd_seg *segs, int n) {
    const herd_model *m = P->m;
    const int C = m->config.dim;
    const size_t erow = herd_type_row_size(m->tok_embd.type, C);
    for (int i = 0; i < n; i++)
        for (int t = 0; t < segs[i].n; t++)
            dequant_row(P->x + (size_t)(segs[i].row0 + t) * C,
                        (const uint8_t *)m->tok_embd.data + (size_t)segs[i].ids[t] * erow, m->tok_embd.type, C);
}

/* Layer l over segments segs[0 .. n), whose rows are r0 .. r0+T-1 of the workspace
 * (a round's, or those after them of sequences evaluated while it waits:
 * herd_batch_eval_now). lora: some segment carries an adapter. */
static void layer_forward(herd_kv_pool *P, const fwd_seg *segs, int n, int r0, int T, int l, int lora) {
    const herd_model *m = P->m;
    const herd_config *c = &m->config;
    const herd_layer *L = &m->layers[l];
    const size_t C = c->dim, F = c->ffn_dim, QD = (size_t)c->n_heads * c->head_dim,
                 KVD = (size_t)c->n_kv_heads * c->head_dim, R = (size_t)r0;
    void *scr = P->mm_scratch;
    float *x = P->x + R * C, *xb = P->xb + R * C, *xb2 = P->xb2 + R * C;
    /* attention (the adapters and attend index the workspace by absolute row) */
    rmsnorm_forward(xb, x, L->attn_norm, T, C, c->norm_eps);
    float *const qkv_out[3] = { P->q + R * QD, P->k + R * KVD, P->v + R * KVD };
    const herd_weight *const qkv[3] = { &L->wq, &L->wk, &L->wv };
    matmul_forward_n(qkv_out, xb, qkv, 3, T, scr);
    static const int QKV[3] = { LORA_Q, LORA_K, LORA_V }, GU[2] = { LORA_GATE, LORA_UP },
                     O[1] = { LORA_O }, DOWN[1] = { LORA_DOWN };
    float *const qkv_base[3] = { P->q, P->k, P->v };
    if (lora) lora_apply(P, segs, n, l, QKV, 3, P->xb, qkv_base);
    /* segments of a few rows (decode) go to the threads one each, in one
     * parallel region (their own calls then run on one thread); longer ones
     * (prompt chunks) use every thread inside kv_attend */
    int n_small = 0;
    for (int i = 0; i < n; i++) n_small += segs[i].n <= SMALL_SEG;
    if (n_small > 1) { /* (not an if clause: nested in a team of one, kv_attend lost its threads) */
#pragma omp parallel for schedule(dynamic, 1)
        for (int i = 0; i < n; i++)
            if (segs[i].n <= SMALL_SEG) attend(P, &segs[i], l);
    }
    for (int i = 0; i < n; i++)
        if (segs[i].n > SMALL_SEG || n_small <= 1) attend(P, &segs[i], l);
    matmul_forward(xb2, P->att + R * QD, &L->wo, T, scr);
    if (lora) lora_apply(P, segs, n, l, O, 1, P->att, &P->xb2);
    add_forward(x, xb2, (int64_t)T * C);
    /* feed_forward */
    rmsnorm_forward(xb, x, L->ffn_norm, T, C, c->norm_eps);
    float *const gu_out[2] = { P->hb + R * F, P->hb2 + R * F };
    const herd_weight *const gu[2] = { &L->w1, &L->w3 };
    matmul_forward_n(gu_out, xb, gu, 2, T, scr);
    float *const gu_base[2] = { P->hb, P->hb2 };
    if (lora) lora_apply(P, segs, n, l, GU, 2, P->xb, gu_base);
    swiglu_forward(gu_out[0], gu_out[0], gu_out[1], T, F);
    matmul_forward(xb2, gu_out[0], &L->w2, T, scr);
    if (lora) lora_apply(P, segs, n, l, DOWN, 1, P->hb, &P->xb2);
    add_forward(x, xb2, (int64_t)T * C);
}

static int any_lora(const fwd_seg *segs, int n) {
    for (int i = 0; i < n; i++)
        if (segs[i].s->lora) return 1;
    return 0;
}

/* A round waiting between two layers, as a yield callback sees it. */
struct herd_batch {
    herd_kv_pool *P;
    int n_seg, T;  /* its segments (P->segs[0 .. n_seg)) and rows */
};

/* One round: T rows in n_seg segments (P->segs). Before each layer, yield (when
 * given) may evaluate other sequences whole (herd_batch_eval_now) in the
 * workspace's rows after the round's, which stay as they are. */
static void forward_round(herd_kv_pool *P, int n_seg, int T, herd_batch_yield_fn yield, void *ctx) {
    const int n_layers = P->m->config.n_layers;
    embed(P, P->segs, n_seg);
    const int lora = any_lora(P->segs, n_seg);
    for (int l = 0; l < n_layers; l++) {
        if (yield) {
            herd_batch b = { P, n_seg, T };
            yield(ctx, &b, l);
        }
        layer_forward(P, P->segs, n_seg, 0, T, l, lora);
    }
    round_logits(P, P->segs, n_seg);
    for (int i = 0; i < n_seg; i++) P->segs[i].s->pos += P->segs[i].n;
}

static herd_status validate(herd_session *const *s, const int32_t *const *ids, const int *n_ids,
                            int n_seq, herd_error *err) {
    herd_kv_pool *P = s[0]->pool;
    const herd_config *c = &P->m->config;
    herd_status st = HERD_OK;
    for (int j = 0; j < n_seq && !st; j++) {
        int n = n_ids[j];
        if (!s[j] || !ids[j]) st = herd_errf(err, HERD_ERR_ARG, "batch sequence %d: NULL session or ids", j);
        else if (s[j]->m != P->m)
            st = herd_errf(err, HERD_ERR_ARG, "batch sequence %d belongs to another model; a batch "
                           "evaluates sessions of one model", j);
        else if (s[j]->mark)
            st = herd_errf(err, HERD_ERR_ARG, "batch sequence %d: the session appears twice in the batch", j);
        else if (n <= 0) st = herd_errf(err, HERD_ERR_ARG, "eval of %d tokens; need at least one", n);
        else if (n > s[j]->n_ctx - s[j]->pos)
            st = herd_errf(err, HERD_ERR_RANGE, "%d tokens do not fit: %d of the %d-token context "
                           "are used; pass a larger -c (the model allows %d) or a shorter prompt",
                           n, s[j]->pos, s[j]->n_ctx, c->max_seq_len);
        for (int i = 0; i < n && !st; i++)
            if (ids[j][i] < 0 || ids[j][i] >= c->vocab_size)
                st = herd_errf(err, HERD_ERR_RANGE, "token id %d at position %d is out of range; "
                               "the vocabulary has ids 0 .. %d", ids[j][i], i, c->vocab_size - 1);
        if (s[j] && !st) s[j]->mark = 1;
    }
    for (int j = 0; j < n_seq; j++)
        if (s[j]) s[j]->mark = 0;
    return st;
}

/* KV pages for every new position of the (validated) sequences first, so a full
 * pool changes nothing: on failure the pages taken are given back. */
static herd_status reserve(herd_session *const *s, const int *n_ids, int n_seq, herd_error *err) {
    for (int j = 0; j < n_seq; j++) {
        herd_status st = kv_seq_reserve(&s[j]->kv, s[j]->pos + n_ids[j], err);
        if (st) {
            for (int i = 0; i < j; i++) kv_seq_truncate(&s[i]->kv, s[i]->pos);
            return st;
        }
    }
    return HERD_OK;
}

herd_status forward_batch(herd_session *const *s, const int32_t *const *ids, const int *n_ids,
                          float *const *all_logits, float *const *hidden, int n_seq,
                          herd_batch_yield_fn yield, void *ctx, herd_error *err) {
    if (n_seq < 1) return herd_errf(err, HERD_ERR_ARG, "batch of %d sequences; need at least one", n_seq);
    if (!s || !ids || !n_ids || !s[0]) return herd_errf(err, HERD_ERR_ARG, "batch: NULL argument");
    herd_status st = validate(s, ids, n_ids, n_seq, err);
    if (st) return st;
    st = reserve(s, n_ids, n_seq, err);
    if (st) return st;
    int64_t total = 0;
    for (int j = 0; j < n_seq; j++) total += n_ids[j];
    herd_kv_pool *P = s[0]->pool;
    if (total >= P->max_rows) yield = NULL; /* a batch of one round yields, with rows to spare */
    int saved = omp_get_max_threads();
    omp_set_num_threads(P->n_threads);
    int j = 0, off = 0;
    while (j < n_seq) {
        int rows = 0, n_seg = 0;
        while (j < n_seq && rows < P->max_rows) {
            int take = n_ids[j] - off < P->max_rows - rows ? n_ids[j] - off : P->max_rows - rows;
            float *al = all_logits && all_logits[j] ? all_logits[j] + (size_t)off * P->m->config.vocab_size : NULL;
            float *hs = hidden && hidden[j] ? hidden[j] + (size_t)off * P->m->config.dim : NULL;
            P->segs[n_seg++] = (fwd_seg){ s[j], ids[j] + off, take, rows, s[j]->pos, al, hs,
                                          off + take == n_ids[j] };
            rows += take;
            off += take;
            if (off == n_ids[j]) j++, off = 0;
        }
        forward_round(P, n_seg, rows, yield, ctx);
    }
    omp_set_num_threads(saved);
    return HERD_OK;
}

int herd_batch_room(const herd_batch *b) { return b->P->max_rows - b->T; }

herd_status herd_batch_eval_now(herd_batch *b, herd_session *const *s, const int32_t *const *ids,
                                const int *n_ids, float *const *all_logits, float *const *hidden, int n_seq,
                                herd_error *err) {
    herd_kv_pool *P = b->P;
    if (n_seq < 1) return herd_errf(err, HERD_ERR_ARG, "eval_now of %d sequences; need at least one", n_seq);
    if (!s || !ids || !n_ids) return herd_errf(err, HERD_ERR_ARG, "eval_now: NULL argument");
    int64_t rows = 0;
    for (int j = 0; j < n_seq; j++) {
        if (!s[j] || s[j]->pool != P)
            return herd_errf(err, HERD_ERR_ARG, "eval_now sequence %d: NULL, or on another KV pool than the "
                             "batch's", j);
        for (int i = 0; i < b->n_seg; i++)
            if (P->segs[i].s == s[j])
                return herd_errf(err, HERD_ERR_ARG, "eval_now sequence %d is in the batch already", j);
        rows += n_ids[j] > 0 ? n_ids[j] : 0;
    }
    if (rows > herd_batch_room(b))
        return herd_errf(err, HERD_ERR_RANGE, "eval_now of %lld tokens; the batch has room for %d more rows",
                         (long long)rows, herd_batch_room(b));
    herd_status st = validate(s, ids, n_ids, n_seq, err);
    if (!st) st = reserve(s, n_ids, n_seq, err);
    if (st) return st;
    /* the rows after the batch's, segments after its own */
    fwd_seg *segs = P->segs + b->n_seg;
    for (int j = 0, r = b->T; j < n_seq; r += n_ids[j++])
        segs[j] = (fwd_seg){ s[j], ids[j], n_ids[j], r, s[j]->pos, all_logits ? all_logits[j] : NULL,
                             hidden ? hidden[j] : NULL, 1 };
    const int lora = any_lora(segs, n_seq);
    embed(P, segs, n_seq);
    for (int l = 0; l < P->m->config.n_layers; l++) layer_forward(P, segs, n_seq, b->T, (int)rows, l, lora);
    round_logits(P, segs, n_seq);
    for (int j = 0; j < n_seq; j++) s[j]->pos += n_ids[j];
    return HERD_OK;
}

herd_status herd_session_eval_batch(herd_session *const *s, const int32_t *const *ids,
                                    const int *n_ids, int n_seq, herd_error *err) {
    return forward_batch(s, ids, n_ids, NULL, NULL, n_seq, NULL, NULL, err);
}

herd_status herd_session_eval_batch_logits(herd_session *const *s, const int32_t *const *ids,
                                           const int *n_ids, float *const *all_logits, int n_seq,
                                           herd_error *err) {
    return forward_batch(s, ids, n_ids, all_logits, NULL, n_seq, NULL, NULL, err);
}

herd_status herd_session_eval_batch_out(herd_session *const *s, const int32_t *const *ids, const int *n_ids,
                                        float *const *all_logits, float *const *hidden, int n_seq,
                                        herd_error *err) {
    return forward_batch(s, ids, n_ids, all_logits, hidden, n_seq, NULL, NULL, err);
}

herd_status herd_session_eval_batch_yield(herd_session *const *s, const int32_t *const *ids, const int *n_ids,
                                          float *const *all_logits, float *const *hidden, int n_seq,
                                          herd_batch_yield_fn yield, void *ctx, herd_error *err) {
    return forward_batch(s, ids, n_ids, all_logits, hidden, n_seq, yield, ctx, err);
}
