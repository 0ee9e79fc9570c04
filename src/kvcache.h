/* kvcache.h - the paged KV cache: a pool of fixed-size pages shared by every
 * sequence of a model (one session, or all of the server's slots), and per-sequence
 * page tables. Attention reads keys and values through the page table.
 *
 * Invariants:
 *   - A page holds KV_PAGE consecutive positions of every layer, keys and values,
 *     in the pool's element type (F32, F16 or Q8_0), as per-kv-head tiles (the
 *     layout is kernels.h's attn_paged_kv; only kvcache.c and the kernels read it).
 *   - A sequence's page i holds its positions i*KV_PAGE .. (i+1)*KV_PAGE-1;
 *     kv_seq.n_pos positions are valid.
 *   - Pages are reference-counted. A page referenced by more than one sequence is
 *     never written: kv_seq_share_prefix shares only whole pages, and a sequence
 *     that must write into a shared page (after a rewind into it) gets a private
 *     copy first (copy-on-write in kv_seq_reserve).
 *   - Page 0 of the pool is never handed out (0 means "no page" in a table).
 * Not here: the attention arithmetic (kernels), the choice of what to share (the
 * server's scheduler), the model's weights.
 */
#ifndef HERD_KVCACHE_H
#define HERD_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

enum { KV_PAGE = 64 };  /* positions per page */

typedef struct kv_pool kv_pool;

typedef struct {
    kv_pool *pool;
    int32_t *pages;      /* (max_pages) page ids; 0 = none */
    int max_pages;       /* ceil(n_ctx / KV_PAGE) */
    int n_pos;           /* valid positions */
} kv_seq;

/* A pool of n_pages pages for a model of n_layers layers, NKV kv heads of HS
 * (HS a multiple of 32 for Q8_0), of element type (HERD_F32, HERD_F16, HERD_Q8_0).
 * n_pages pages can be handed out (ids 1 .. n_pages). One allocation; never grows. */
herd_status kv_pool_new(kv_pool **out, int type, int n_layers, int NKV, int HS, int n_pages,
                        herd_error *err);
void kv_pool_free(kv_pool *p);
int kv_pool_type(const kv_pool *p);
int kv_pool_pages_free(const kv_pool *p);
int kv_pool_pages_used(const kv_pool *p);
size_t kv_pool_bytes(const kv_pool *p);

/* A sequence of at most n_ctx positions on pool p, holding no pages. */
herd_status kv_seq_init(kv_seq *s, kv_pool *p, int n_ctx, herd_error *err);
/* Releases every page and the table. */
void kv_seq_free(kv_seq *s);
/* Makes positions s->n_pos .. n_pos-1 writable and sets s->n_pos = n_pos (no-op
 * when n_pos <= s->n_pos): allocates pages up to n_pos, and copies a shared page
 * that positions >= s->n_pos fall in. HERD_ERR_NOMEM with a message when the
 * pool is out of pages, HERD_ERR_RANGE past the sequence's n_ctx; nothing
 * changes then. Call it before kv_attend of positions pos0 .. pos0+T-1 with
 * n_pos = pos0 + T. */
herd_status kv_seq_reserve(kv_seq *s, int n_pos, herd_error *err);
/* Forgets positions >= n_pos (rewind); releases pages no longer needed. */
void kv_seq_truncate(kv_seq *s, int n_pos);
/* dst (empty, same pool) takes src's first n_pos positions: whole pages shared
 * (refcount), the rest of a partial last page copied into a fresh page. */
herd_status kv_seq_share_prefix(kv_seq *dst, const kv_seq *src, int n_pos, herd_error *err);

/* Layer l: store T new keys / values k, v (T, NKV*HS) at positions pos0 .. pos0+T-1
 * (reserved), then causal GQA attention of the T queries q (T, NH*HS) over
 * positions 0 .. pos0+T-1: out (T, NH*HS). Each query row's result does not depend
 * on T or on which other rows are in the call (batch invariance).
 * scratch: kv_attend_scratch_size(T, NH, HS) floats. */
size_t kv_attend_scratch_size(int T, int NH, int HS);
/* Only the store half of kv_attend (benchmarks fill a long cache with it). */
void kv_store(const kv_seq *s, int l, int pos0, int T, const float *k, const float *v);
void kv_attend(const kv_seq *s, int l, int pos0, int T, const float *q, const float *k,
               const float *v, float *out, int NH, float *scratch);
/* The plain reference: the same result computed by dequantizing the pages to f32
 * and running attention_forward_ref (tests compare against it). */
void kv_attend_ref(const kv_seq *s, int l, int pos0, int T, const float *q, const float *k,
                   const float *v, float *out, int NH);

#endif
