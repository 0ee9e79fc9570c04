/* forward.c - sessions and KV pools: their lifetimes and the public calls.
 * A session is one sequence's page table in a KV pool plus its last logits; the
 * pool owns the pages (kvcache.c) and the batch workspace (see session.h for the
 * invariants). A standalone session's private pool has ceil(n_ctx / KV_PAGE) + 1
 * pages; a shared pool by default n_seqs times that, so every sequence can fill
 * its context.
 * herd_session_eval is herd_session_eval_batch of one sequence: the forward pass
 * itself is in batch.c, one code path for both.
 * Not here: the arithmetic (batch.c, kernels), sampling.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"

enum { SESSION_ROWS = 128, POOL_ROWS = 512, SESSION_OUT = 4, POOL_OUT = 16 };

herd_session_params herd_session_default_params(void) {
    herd_session_params p = { 0, 0, HERD_F32 };
    return p;
}

int herd_session_n_ctx(const herd_session *s) { return s->n_ctx; }
int herd_session_pos(const herd_session *s) { return s->pos; }
void herd_session_reset(herd_session *s) {
    kv_seq_truncate(&s->kv, 0);
    s->pos = 0;
}
void herd_session_rewind(herd_session *s, int pos) {
    if (pos < 0 || pos >= s->pos) return;
    kv_seq_truncate(&s->kv, pos);
    s->pos = pos;
}
const float *herd_session_logits(const herd_session *s) { return s->logits; }

static void *alloc_floats(size_t n) { return aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64); }

static size_t max_scratch(const herd_model *m, int rows) {
    const herd_config *c = &m->config;
    size_t best = matmul_scratch_size(m->output.type, rows, c->dim);
    for (int l = 0; l < c->n_layers; l++) {
        const herd_layer *L = &m->layers[l];
        const herd_weight *ws[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3 };
        for (int i = 0; i < 7; i++) {
            size_t n = matmul_scratch_size(ws[i]->type, rows, ws[i]->ic);
            if (n > best) best = n;
        }
    }
    return best;
}

void herd_kv_pool_free(herd_kv_pool *p) {
    if (!p) return;
    free(p->x); free(p->xb); free(p->xb2); free(p->q); free(p->att); free(p->k); free(p->v);
    free(p->hb); free(p->hb2); free(p->xo); free(p->logits); free(p->att_scratch);
    free(p->mm_scratch); free(p->segs); free(p->lora_rows); free(p->lora_t);
    kv_pool_free(p->kv);
    free(p);
}

static herd_status check_params(const herd_model *m, herd_session_params *p, herd_error *err) {
    const herd_config *c = &m->config;
    if (p->n_ctx <= 0) p->n_ctx = c->max_seq_len < 8192 ? c->max_seq_len : 8192;
    if (p->n_ctx > c->max_seq_len)
        return herd_errf(err, HERD_ERR_ARG, "context %d is longer than the model's maximum %d; "
                         "pass a smaller -c", p->n_ctx, c->max_seq_len);
    if (p->n_ctx < 1 || p->n_ctx > (1 << 22))
        return herd_errf(err, HERD_ERR_ARG, "context %d is out of range (1 .. %d)", p->n_ctx, 1 << 22);
    if (p->kv_type != HERD_F32 && p->kv_type != HERD_F16 && p->kv_type != HERD_Q8_0)
        return herd_errf(err, HERD_ERR_ARG, "KV cache type %s (%d) is not supported; use F32, F16 "
                         "or Q8_0", herd_type_name(p->kv_type), p->kv_type);
    if (p->kv_type == HERD_Q8_0 && c->head_dim % 32)
        return herd_errf(err, HERD_ERR_ARG, "a Q8_0 KV cache needs a head size that is a multiple "
                         "of 32, the model's is %d; use F16", c->head_dim);
    if (p->n_threads <= 0) p->n_threads = omp_get_num_procs();
    return HERD_OK;
}

static int pages_per_seq(int n_ctx) { return (n_ctx + KV_PAGE - 1) / KV_PAGE + 1; }

static herd_status pool_new(herd_kv_pool **out, const herd_model *m, herd_session_params p, int rows,
                            int n_out, int n_seqs, int n_pages, herd_error *err) {
    *out = NULL;
    herd_status st = check_params(m, &p, err);
    if (st) return st;
    const herd_config *c = &m->config;
    herd_kv_pool *P = calloc(1, sizeof *P);
    if (!P) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    P->m = m;
    P->n_ctx = p.n_ctx;
    P->n_threads = p.n_threads;
    P->kv_type = p.kv_type;
    P->max_rows = rows;
    P->max_out = n_out;
    size_t R = (size_t)rows, C = c->dim, QD = (size_t)c->n_heads * c->head_dim;
    size_t KVD = (size_t)c->n_kv_heads * c->head_dim, F = c->ffn_dim;
    P->x = alloc_floats(R * C);
    P->xb = alloc_floats(R * C);
    P->xb2 = alloc_floats(R * C);
    P->q = alloc_floats(R * QD);
    P->att = alloc_floats(R * QD);
    P->k = alloc_floats(R * KVD);
    P->v = alloc_floats(R * KVD);
    P->hb = alloc_floats(R * F);
    P->hb2 = alloc_floats(R * F);
    P->xo = alloc_floats((size_t)n_out * C);
    P->logits = alloc_floats((size_t)n_out * c->vocab_size);
    P->att_scratch = alloc_floats(kv_attend_scratch_size(rows, c->n_heads, c->head_dim) + 1);
    P->mm_scratch = aligned_alloc(64, (max_scratch(m, rows > n_out ? rows : n_out) + 127) / 64 * 64);
    P->segs = calloc(R, sizeof *P->segs);
    if (!P->x || !P->xb || !P->xb2 || !P->q || !P->att || !P->k || !P->v || !P->hb || !P->hb2 ||
        !P->xo || !P->logits || !P->att_scratch || !P->mm_scratch || !P->segs) {
        herd_kv_pool_free(P);
        return herd_errf(err, HERD_ERR_NOMEM, "out of memory allocating the activations of a "
                         "%d-row batch", rows);
    }
    if (n_pages <= 0) {
        int64_t np = (int64_t)n_seqs * pages_per_seq(p.n_ctx);
        n_pages = np > (1 << 30) ? 1 << 30 : (int)np;
    }
    herd_status st2 = kv_pool_new(&P->kv, p.kv_type, c->n_layers, c->n_kv_heads, c->head_dim, n_pages, err);
    if (st2) {
        herd_kv_pool_free(P);
        return st2;
    }
    *out = P;
    return HERD_OK;
}

herd_status herd_kv_pool_new(herd_kv_pool **out, const herd_model *m, herd_session_params p,
                             int n_seqs, int n_pages, herd_error *err) {
    *out = NULL;
    if (n_seqs < 1 || n_seqs > 4096)
        return herd_errf(err, HERD_ERR_ARG, "a KV pool for %d sequences; expected 1 .. 4096", n_seqs);
    if (n_pages < 0)
        return herd_errf(err, HERD_ERR_ARG, "a KV pool of %d pages; expected 0 (automatic) or more", n_pages);
    return pool_new(out, m, p, POOL_ROWS, n_seqs < POOL_OUT ? n_seqs : POOL_OUT, n_seqs, n_pages, err);
}

int herd_kv_pool_pages_used(const herd_kv_pool *p) { return kv_pool_pages_used(p->kv); }
int herd_kv_pool_pages_total(const herd_kv_pool *p) {
    return kv_pool_pages_used(p->kv) + kv_pool_pages_free(p->kv);
}
int herd_kv_pool_batch_rows(const herd_kv_pool *p) { return p->max_rows; }
int herd_kv_page_size(void) { return KV_PAGE; }

void herd_session_free(herd_session *s) {
    if (!s) return;
    kv_seq_free(&s->kv);
    free(s->logits);
    if (s->owns_pool) herd_kv_pool_free(s->pool);
    free(s);
}

herd_status herd_session_new_on_pool(herd_session **out, herd_kv_pool *pool, herd_error *err) {
    *out = NULL;
    const herd_config *c = &pool->m->config;
    herd_session *s = calloc(1, sizeof *s);
    if (!s) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    s->m = pool->m;
    s->pool = pool;
    s->n_ctx = pool->n_ctx;
    herd_status st = kv_seq_init(&s->kv, pool->kv, s->n_ctx, err);
    if (st) {
        free(s);
        return st;
    }
    s->logits = alloc_floats((size_t)c->vocab_size);
    if (!s->logits) {
        herd_session_free(s);
        return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    }
    *out = s;
    return HERD_OK;
}

herd_status herd_session_new(herd_session **out, const herd_model *m, herd_session_params p,
                             herd_error *err) {
    *out = NULL;
    herd_kv_pool *pool;
    herd_status st = pool_new(&pool, m, p, SESSION_ROWS, SESSION_OUT, 1, 0, err);
    if (st) return st;
    st = herd_session_new_on_pool(out, pool, err);
    if (st) {
        herd_kv_pool_free(pool);
        return st;
    }
    (*out)->owns_pool = 1;
    return HERD_OK;
}

herd_status herd_session_eval(herd_session *s, const int32_t *ids, int n, float *all_logits,
                              herd_error *err) {
    return forward_batch(&s, &ids, &n, &all_logits, NULL, 1, NULL, NULL, err);
}

herd_status herd_session_share_prefix(herd_session *dst, const herd_session *src, int n_pos,
                                      herd_error *err) {
    if (dst == src) return herd_errf(err, HERD_ERR_ARG, "share_prefix: a session with itself");
    if (dst->pool != src->pool)
        return herd_errf(err, HERD_ERR_ARG, "share_prefix: the sessions are on different KV pools");
    if (dst->lora != src->lora)
        return herd_errf(err, HERD_ERR_ARG, "share_prefix: the sessions carry different LoRA adapters, "
                         "so their caches hold different keys and values");
    if (n_pos < 0 || n_pos > src->pos || n_pos > dst->n_ctx)
        return herd_errf(err, HERD_ERR_RANGE, "share_prefix of %d positions; the source holds %d, "
                         "the destination's context is %d", n_pos, src->pos, dst->n_ctx);
    herd_session_reset(dst);
    herd_status st = kv_seq_share_prefix(&dst->kv, &src->kv, n_pos, err);
    if (st) return st;
    dst->pos = n_pos;
    return HERD_OK;
}
