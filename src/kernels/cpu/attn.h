/* attn.h - internal interface between attn_paged.c (the work split, OpenMP, the
 * ISA choice) and the per-ISA page kernels (attn_avx512.c, attn_avx2.c,
 * attn_scalar.c). Not part of kernels.h.
 *
 * A page kernel advances the online softmax of nr <= 4 query rows (heads of one
 * query position sharing one kv head) by one page of nk <= ATTN_PAGE keys:
 *   s_k   = (q . key_k) * scale                          k < nk
 *   m'    = max(m, max_k s_k)
 *   l'    = l * exp(m - m') + sum_k exp(s_k - m')
 *   acc'  = acc * exp(m - m') + sum_k exp(s_k - m') value_k
 * Starting from m = -inf, l = 0, acc = 0 and dividing acc by l after the last
 * page gives softmax attention. A row's arithmetic depends only on its own q,
 * the pages and nk: never on the other rows of the call (batch invariance).
 */
#ifndef HERD_KERNELS_CPU_ATTN_H
#define HERD_KERNELS_CPU_ATTN_H

#include <stdint.h>

#include "herd.h"

#include "kernels/kernels.h"

/* The next page's K / V tiles of the kv head (bytes each), for a page kernel to
 * fetch while it computes this one. */
typedef struct {
    const uint8_t *k, *v;
    size_t bytes;
} attn_next;

/* Lines [i per, (i + 1) per) of the n 64-byte lines at p. A page kernel fetches
 * the next page's tiles a few lines per step of its loops (per: the lines over
 * the steps, rounded up, computed once outside the loop): asked for all at once
 * before the page, they held back that page's own loads (decode attention at 8K
 * positions, F16, 16 layers, 2 threads, bench/attn_decode.c: AVX-512 13.5-13.8
 * -> 8.0-9.5 ms a token, AVX2 18.4-18.6 -> 13.8). */
static inline void attn_prefetch_lines(const uint8_t *p, size_t n, size_t i, size_t per) {
    const size_t b1 = (i + 1) * per < n ? (i + 1) * per : n;
    for (size_t b = i * per; b < b1; b++) __builtin_prefetch(p + 64 * b);
}

/* All of them at once (the kernels without a finer schedule). */
static inline void attn_prefetch_next(const attn_next *nx) {
    if (!nx) return;
    for (size_t b = 0; b < nx->bytes; b += 64) {
        __builtin_prefetch(nx->k + b);
        __builtin_prefetch(nx->v + b);
    }
}

/* acc (nr, HS), m (nr), l (nr), q (nr, HS); kt / vt: the page's K / V tiles of
 * the kv head (layouts in kernels.h); nx: the next page's, to prefetch (NULL:
 * none, or already asked for). */
typedef void (*attn_page_fn)(float *acc, float *m, float *l, const float *q, const uint8_t *kt,
                             const uint8_t *vt, const attn_next *nx, int nr, int nk, int HS, float scale);

typedef struct {
    const char *name;
    int (*supports)(int type, int HS);
    attn_page_fn page[3]; /* by attn_type_index: F32, F16, Q8_0 */
    /* NULL, or: kw (HS, ATTN_PAGE) / vw (ATTN_PAGE, HS) = the F16 or Q8_0 tiles kt /
     * vt as f32, in the F32 tiles' layout, each value exactly as page[1] / page[2]
     * widen it, so page[0] on them gives bitwise what page[1] / page[2] give */
    void (*widen)(float *kw, float *vw, const uint8_t *kt, const uint8_t *vt, int type, int HS);
} attn_isa;

static inline int attn_type_index(int type) {
    return type == HERD_F16 ? 1 : type == HERD_Q8_0 ? 2 : 0;
}

extern const attn_isa attn_isa_scalar, attn_isa_avx2, attn_isa_avx512;

#endif
