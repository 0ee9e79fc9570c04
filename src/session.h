/* session.h - the insides of a session and of a KV pool, shared by forward.c
 * (their lifetimes, the public calls) and batch.c (the batched forward pass).
 * Not public: herd.h has the opaque handles.
 *
 * Invariants:
 *   - Every session lives on a pool; a standalone session (herd_session_new)
 *     owns a private pool sized for its context, others share one
 *     (herd_kv_pool_new + herd_session_new_on_pool).
 *   - The pool owns the batch workspace: activations for max_rows token rows,
 *     allocated once; a forward never calls malloc (KV pages come off the pool's
 *     free list). One thread at a time evaluates the sessions of a pool.
 *   - s->pos == s->kv.n_pos between calls: the KV pages hold keys (after RoPE)
 *     and values for positions 0 .. pos-1.
 */
#ifndef HERD_SESSION_H
#define HERD_SESSION_H

#include "kvcache.h"
#include "model.h"

/* One piece of one sequence inside a forward round: rows row0 .. row0+n-1 of the
 * workspace hold its tokens ids[0 .. n) at positions pos0 .. pos0+n-1. */
typedef struct {
    herd_session *s;
    const int32_t *ids;
    int n, row0, pos0;
    float *all_logits;       /* (n, V) or NULL */
    float *hidden;           /* (n, C) the final-normed hidden states instead of logits, or NULL */
    int last;                /* the sequence's last piece: its logits are wanted */
} fwd_seg;

struct herd_kv_pool {
    const herd_model *m;
    kv_pool *kv;             /* the pages */
    int n_ctx, n_threads, kv_type;
    int max_rows, max_out;   /* rows per round; rows per output projection */
    /* workspace (max_rows rows unless noted) */
    float *x, *xb, *xb2;     /* (R, C) */
    float *q, *att;          /* (R, NH*HS) */
    float *k, *v;            /* (R, NKV*HS) */
    float *hb, *hb2;         /* (R, F) */
    float *xo;               /* (max_out, C) last rows, normed */
    float *logits;           /* (max_out, V) */
    float *att_scratch;      /* kv_attend_scratch_size(R, NH, HS) */
    void *mm_scratch;
    fwd_seg *segs;           /* (R) */
    /* adapters (lora.c), allocated when a session first takes one */
    int lora_rank;           /* the largest rank lora_t holds */
    int32_t *lora_rows;      /* (R) one adapter's rows in a round */
    float *lora_t;           /* (R, LORA_N * lora_rank) their A x */
};

struct herd_session {
    const herd_model *m;
    herd_kv_pool *pool;
    int owns_pool;
    int n_ctx, pos;          /* pos: positions evaluated */
    kv_seq kv;               /* its pages; kv.n_pos == pos outside forward_batch */
    float *logits;           /* (V) the last evaluated token's */
    const herd_lora *lora;   /* the adapter its forward applies, or NULL */
    int mark;                /* batch.c: set while the session is in a batch */
};

/* batch.c: evaluates n sequences' new tokens together (validated, chunked into
 * rounds of at most pool->max_rows rows). all_logits and hidden may be NULL or
 * hold one pointer (or NULL) per sequence. yield (or NULL) is called before each
 * layer when the batch is one round (herd_session_eval_batch_yield). */
herd_status forward_batch(herd_session *const *s, const int32_t *const *ids, const int *n_ids,
                          float *const *all_logits, float *const *hidden, int n_seq,
                          herd_batch_yield_fn yield, void *ctx, herd_error *err);

#endif
