/* kvcache.c - the paged KV cache of kvcache.h: one pool of pages per model, page
 * tables per sequence, copy-on-write prefix sharing, and kv_attend (store the new
 * keys / values, then paged attention from kernels.h).
 *
 * Invariants (beyond kvcache.h's):
 *   - ref[i] is the number of page-table entries, over all sequences, that hold
 *     page i (1 .. n_pages); ref[i] == 0 exactly when i is on the free list.
 *   - free_ids[0 .. n_free-1] are the free pages; allocation pops the last one.
 *   - A sequence holds pages exactly for indices 0 .. ceil(n_pos / KV_PAGE) - 1.
 *   - Only kv_attend / kv_attend_ref write page data, and only into pages with
 *     ref == 1 (asserted: a violation is our bug, not the caller's input).
 * Page layout (the tiles of kernels.h's attn_paged_kv): for layer l, kv head g,
 * the K tile is at page + (l * 2 * NKV + g) * tile_bytes and the V tile at
 * page + (l * 2 * NKV + NKV + g) * tile_bytes.
 * Not here: the attention arithmetic (kernels/cpu/attn_*.c), what to share.
 */
#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/kernels.h"
#include "kvcache.h"

_Static_assert((int)KV_PAGE == (int)ATTN_PAGE, "kvcache pages are the kernels' attention pages");

struct kv_pool {
    int type, n_layers, NKV, HS, n_pages, n_free;
    size_t tile_bytes, page_bytes, data_bytes;
    uint8_t *data;      /* (n_pages, page_bytes): page id i at data + (i - 1) * page_bytes */
    int32_t *ref;       /* (n_pages + 1) reference counts; ref[0] unused */
    int32_t *free_ids;  /* (n_pages) */
};

static size_t elem_tile_bytes(int type, int HS) {
    switch (type) {
    case HERD_F32: return (size_t)KV_PAGE * HS * 4;
    case HERD_F16: return (size_t)KV_PAGE * HS * 2;
    case HERD_Q8_0: return (size_t)KV_PAGE * (HS / 32) * sizeof(block_q8_0);
    default: return 0;
    }
}

herd_status kv_pool_new(kv_pool **out, int type, int n_layers, int NKV, int HS, int n_pages,
                        herd_error *err) {
    *out = NULL;
    if (type != HERD_F32 && type != HERD_F16 && type != HERD_Q8_0)
        return herd_errf(err, HERD_ERR_ARG, "kv cache: element type %s (%d) is not supported; "
                         "use F32, F16 or Q8_0", herd_type_name(type), type);
    if (n_layers < 1 || NKV < 1 || HS < 1 || n_pages < 1)
        return herd_errf(err, HERD_ERR_ARG, "kv cache: %d layers, %d kv heads of %d, %d pages: "
                         "every count must be at least 1", n_layers, NKV, HS, n_pages);
    if (type == HERD_Q8_0 && HS % 32)
        return herd_errf(err, HERD_ERR_ARG, "kv cache: Q8_0 needs a head size that is a multiple "
                         "of 32, the model's is %d; use --kv f16", HS);
    kv_pool *p = calloc(1, sizeof *p);
    if (!p) return herd_errf(err, HERD_ERR_NOMEM, "kv cache: out of memory");
    p->type = type; p->n_layers = n_layers; p->NKV = NKV; p->HS = HS; p->n_pages = n_pages;
    p->tile_bytes = elem_tile_bytes(type, HS);
    size_t tiles;
    if (!herd_mul_size((size_t)n_layers * 2, (size_t)NKV, &tiles) ||
        !herd_mul_size(tiles, p->tile_bytes, &p->page_bytes) ||
        !herd_mul_size(p->page_bytes, (size_t)n_pages, &p->data_bytes)) {
        free(p);
        return herd_errf(err, HERD_ERR_ARG, "kv cache: %d pages of %d layers x %d kv heads x %d "
                         "overflow the address space", n_pages, n_layers, NKV, HS);
    }
    /* anonymous mapping: zeroed, page-aligned, and resident only once written */
    void *d = mmap(NULL, p->data_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    p->ref = calloc((size_t)n_pages + 1, sizeof *p->ref);
    p->free_ids = malloc((size_t)n_pages * sizeof *p->free_ids);
    if (d == MAP_FAILED || !p->ref || !p->free_ids) {
        if (d != MAP_FAILED) munmap(d, p->data_bytes);
        herd_status st = herd_errf(err, HERD_ERR_NOMEM, "kv cache: out of memory for %d pages (%.1f MiB); "
                         "pass a smaller -c or --parallel", n_pages,
                         (double)p->page_bytes * n_pages / 1048576.0);
        free(p->ref); free(p->free_ids); free(p);
        return st;
    }
    p->data = d;
    /* pop order: page 1 first */
    for (int i = 0; i < n_pages; i++) p->free_ids[i] = n_pages - i;
    p->n_free = n_pages;
    *out = p;
    return HERD_OK;
}

void kv_pool_free(kv_pool *p) {
    if (!p) return;
    munmap(p->data, p->data_bytes);
    free(p->ref); free(p->free_ids); free(p);
}

int kv_pool_type(const kv_pool *p) { return p->type; }
int kv_pool_pages_free(const kv_pool *p) { return p->n_free; }
int kv_pool_pages_used(const kv_pool *p) { return p->n_pages - p->n_free; }
size_t kv_pool_bytes(const kv_pool *p) { return p->data_bytes; }

static uint8_t *page_data(const kv_pool *p, int32_t id) {
    assert(id >= 1 && id <= p->n_pages);
    return p->data + (size_t)(id - 1) * p->page_bytes;
}

static int32_t page_alloc(kv_pool *p) {
    assert(p->n_free > 0);
    const int32_t id = p->free_ids[--p->n_free];
    assert(p->ref[id] == 0);
    p->ref[id] = 1;
    return id;
}

static void page_release(kv_pool *p, int32_t id) {
    assert(id >= 1 && id <= p->n_pages && p->ref[id] > 0);
    if (--p->ref[id] == 0) p->free_ids[p->n_free++] = id;
}

herd_status kv_seq_init(kv_seq *s, kv_pool *p, int n_ctx, herd_error *err) {
    memset(s, 0, sizeof *s);
    if (n_ctx < 1) return herd_errf(err, HERD_ERR_ARG, "kv cache: context %d; need at least 1", n_ctx);
    s->max_pages = (n_ctx + KV_PAGE - 1) / KV_PAGE;
    s->pages = calloc((size_t)s->max_pages, sizeof *s->pages);
    if (!s->pages) return herd_errf(err, HERD_ERR_NOMEM, "kv cache: out of memory");
    s->pool = p;
    return HERD_OK;
}

static int pages_for(int n_pos) { return (n_pos + KV_PAGE - 1) / KV_PAGE; }

void kv_seq_truncate(kv_seq *s, int n_pos) {
    if (n_pos < 0) n_pos = 0;
    if (n_pos >= s->n_pos) return;
    for (int i = pages_for(n_pos); i < pages_for(s->n_pos); i++) {
        page_release(s->pool, s->pages[i]);
        s->pages[i] = 0;
    }
    s->n_pos = n_pos;
}

void kv_seq_free(kv_seq *s) {
    if (!s->pages) return;
    kv_seq_truncate(s, 0);
    free(s->pages);
    memset(s, 0, sizeof *s);
}

static herd_status out_of_pages(const kv_seq *s, int need, int n_pos, herd_error *err) {
    return herd_errf(err, HERD_ERR_NOMEM, "kv cache: out of pages: %d positions need %d more "
                     "pages of %d positions, %d of %d are free; pass a larger -c, fewer "
                     "--parallel sequences, or a shorter prompt", n_pos, need, KV_PAGE,
                     s->pool->n_free, s->pool->n_pages);
}

herd_status kv_seq_reserve(kv_seq *s, int n_pos, herd_error *err) {
    kv_pool *p = s->pool;
    if (n_pos > s->max_pages * KV_PAGE)
        return herd_errf(err, HERD_ERR_RANGE, "kv cache: %d positions do not fit the %d-position "
                         "context of the sequence; pass a larger -c", n_pos, s->max_pages * KV_PAGE);
    if (n_pos <= s->n_pos) return HERD_OK;
    /* pages from the one holding position s->n_pos on will be written */
    const int first = s->n_pos / KV_PAGE, last = pages_for(n_pos);
    int need = 0;
    for (int i = first; i < last; i++)
        if (s->pages[i] == 0 || p->ref[s->pages[i]] > 1) need++;
    if (need > p->n_free) return out_of_pages(s, need, n_pos, err);
    for (int i = first; i < last; i++) {
        if (s->pages[i] == 0) {
            s->pages[i] = page_alloc(p);
        } else if (p->ref[s->pages[i]] > 1) { /* copy-on-write */
            const int32_t id = page_alloc(p);
            memcpy(page_data(p, id), page_data(p, s->pages[i]), p->page_bytes);
            page_release(p, s->pages[i]);
            s->pages[i] = id;
        }
    }
    s->n_pos = n_pos;
    return HERD_OK;
}

herd_status kv_seq_share_prefix(kv_seq *dst, const kv_seq *src, int n_pos, herd_error *err) {
    kv_pool *p = src->pool;
    if (dst->pool != p || dst->n_pos != 0 || n_pos < 0 || n_pos > src->n_pos ||
        pages_for(n_pos) > dst->max_pages)
        return herd_errf(err, HERD_ERR_ARG, "kv cache: cannot share %d positions of a %d-position "
                         "sequence into one with %d positions and room for %d (same pool: %s)",
                         n_pos, src->n_pos, dst->n_pos, dst->max_pages * KV_PAGE,
                         dst->pool == p ? "yes" : "no");
    const int full = n_pos / KV_PAGE, partial = n_pos % KV_PAGE != 0;
    if (partial && p->n_free < 1) return out_of_pages(dst, 1, n_pos, err);
    for (int i = 0; i < full; i++) {
        dst->pages[i] = src->pages[i];
        p->ref[src->pages[i]]++;
    }
    if (partial) {
        const int32_t id = page_alloc(p);
        memcpy(page_data(p, id), page_data(p, src->pages[full]), p->page_bytes);
        dst->pages[full] = id;
    }
    dst->n_pos = n_pos;
    return HERD_OK;
}

/* ---- storing keys and values ------------------------------------------------ */

static uint8_t *tile(const kv_pool *p, int32_t id, int l, int kv, int g) {
    return page_data(p, id) + ((size_t)l * 2 * p->NKV + (size_t)kv * p->NKV + g) * p->tile_bytes;
}

/* Key / value vectors x (HS) of kv head g at position pos (layouts in kernels.h). */
static void store_key(const kv_pool *p, uint8_t *kt, int pp, const float *x) {
    const int HS = p->HS;
    if (p->type == HERD_F32) {
        for (int d = 0; d < HS; d++) ((float *)kt)[d * KV_PAGE + pp] = x[d];
    } else if (p->type == HERD_F16) {
        for (int d = 0; d < HS; d++) ((uint16_t *)kt)[d * KV_PAGE + pp] = herd_f32_to_f16(x[d]);
    } else {
        block_q8_0 b[HS / 32];
        quantize_row_q8_0_ref(b, x, HS);
        uint16_t *ds = (uint16_t *)(kt + (size_t)HS * KV_PAGE);
        for (int d = 0; d < HS; d++) ((int8_t *)kt)[d * KV_PAGE + pp] = b[d / 32].qs[d % 32];
        for (int j = 0; j < HS / 32; j++) ds[j * KV_PAGE + pp] = b[j].d;
    }
}

static void store_value(const kv_pool *p, uint8_t *vt, int pp, const float *x) {
    const int HS = p->HS;
    if (p->type == HERD_F32) memcpy((float *)vt + (size_t)pp * HS, x, (size_t)HS * sizeof(float));
    else if (p->type == HERD_F16) f32_to_f16_row((uint16_t *)vt + (size_t)pp * HS, x, HS);
    else quantize_row_q8_0_ref((block_q8_0 *)vt + (size_t)pp * (HS / 32), x, HS);
}

void kv_store(const kv_seq *s, int l, int pos0, int T, const float *k, const float *v) {
    const kv_pool *p = s->pool;
    const int KVD = p->NKV * p->HS;
    assert(l >= 0 && l < p->n_layers && pos0 >= 0 && pos0 + T <= s->n_pos);
    for (int t = 0; t < T; t++) {
        const int pos = pos0 + t;
        const int32_t id = s->pages[pos / KV_PAGE];
        assert(id && p->ref[id] == 1);
        for (int g = 0; g < p->NKV; g++) {
            store_key(p, tile(p, id, l, 0, g), pos % KV_PAGE, k + (size_t)t * KVD + (size_t)g * p->HS);
            store_value(p, tile(p, id, l, 1, g), pos % KV_PAGE, v + (size_t)t * KVD + (size_t)g * p->HS);
        }
    }
}

/* ---- attention ---------------------------------------------------------------- */

size_t kv_attend_scratch_size(int T, int NH, int HS) { return attention_paged_scratch_size(T, NH); }

void kv_attend(const kv_seq *s, int l, int pos0, int T, const float *q, const float *k,
               const float *v, float *out, int NH, float *scratch) {
    const kv_pool *p = s->pool;
    kv_store(s, l, pos0, T, k, v);
    const attn_paged_kv kv = {
        .type = p->type, .NKV = p->NKV, .HS = p->HS, .base = p->data, .page_bytes = p->page_bytes,
        .layer_off = (size_t)l * 2 * p->NKV * p->tile_bytes, .tile_bytes = p->tile_bytes,
        .pages = s->pages,
    };
    attention_paged_forward(out, q, &kv, pos0, T, NH, scratch);
}

/* Element (pos, g, d) of layer l's keys (kv 0) or values (kv 1), as f32. */
static float load_elem(const kv_seq *s, int l, int kv, int pos, int g, int d) {
    const kv_pool *p = s->pool;
    const uint8_t *t = tile(p, s->pages[pos / KV_PAGE], l, kv, g);
    const int pp = pos % KV_PAGE, HS = p->HS;
    if (p->type == HERD_F32) return ((const float *)t)[kv ? pp * HS + d : d * KV_PAGE + pp];
    if (p->type == HERD_F16) return herd_f16_to_f32(((const uint16_t *)t)[kv ? pp * HS + d : d * KV_PAGE + pp]);
    if (kv) {
        const block_q8_0 *b = (const block_q8_0 *)t + (size_t)pp * (HS / 32) + d / 32;
        return (float)b->qs[d % 32] * herd_f16_to_f32(b->d);
    }
    const uint16_t *ds = (const uint16_t *)(t + (size_t)HS * KV_PAGE);
    return (float)((const int8_t *)t)[d * KV_PAGE + pp] * herd_f16_to_f32(ds[(d / 32) * KV_PAGE + pp]);
}

/* A test oracle: allocates (S, NKV, HS) f32 copies of the keys and values. */
void kv_attend_ref(const kv_seq *s, int l, int pos0, int T, const float *q, const float *k,
                   const float *v, float *out, int NH) {
    const kv_pool *p = s->pool;
    kv_store(s, l, pos0, T, k, v);
    const int S = pos0 + T, NKV = p->NKV, HS = p->HS;
    float *kc = malloc((size_t)S * NKV * HS * sizeof(float));
    float *vc = malloc((size_t)S * NKV * HS * sizeof(float));
    assert(kc && vc);
    for (int pos = 0; pos < S; pos++)
        for (int g = 0; g < NKV; g++)
            for (int d = 0; d < HS; d++) {
                const size_t i = ((size_t)pos * NKV + g) * HS + d;
                kc[i] = load_elem(s, l, 0, pos, g, d);
                vc[i] = load_elem(s, l, 1, pos, g, d);
            }
    attention_forward_ref(out, q, kc, vc, pos0, T, NH, NKV, HS);
    free(kc);
    free(vc);
}
