/* attn_paged.c - attention_paged_forward (kernels.h): causal GQA attention over a
 * paged KV cache, flash-attention style. Splits the work into items (kv head g,
 * block of query rows) run by OpenMP threads; an item walks the pages in order
 * and, while a page's K / V tiles of head g are hot in L1, advances the online
 * softmax of every query row of the block for every query head that shares g
 * (GQA reuse) through the per-ISA page kernel (attn.h).
 *
 * Batch invariance: a row's result is made by the same page-kernel calls, in the
 * same order (pages 0, 1, ...; nk keys of the last), with the same group of heads,
 * whatever T, pos0 of the other rows, the block size or the thread count are.
 * Memory: out holds the running sums; scratch the running max and normaliser,
 * 2 * T * NH floats. No (T, S) score matrix; nothing allocated.
 */
#include <math.h>
#include <omp.h>

#include "kernels/cpu/attn.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

static const attn_isa *attn_pick(int type, int HS) {
    const int isa = herd_cpu_isa();
    if (isa >= HERD_ISA_AVX512 && attn_isa_avx512.supports(type, HS)) return &attn_isa_avx512;
    if (isa >= HERD_ISA_AVX2 && attn_isa_avx2.supports(type, HS)) return &attn_isa_avx2;
    return &attn_isa_scalar;
}

size_t attention_paged_scratch_size(int T, int NH) { return 2 * (size_t)T * (size_t)NH; }

enum { HEAD_GROUP = 4 }; /* query heads per page-kernel call (attn.h: nr <= 4) */
/* 1B Q4_0, the whole model on a 512-token chunk, 2 threads, 4 interleaved runs,
 * ms a token: at position 6144, 16 rows 6.95-7.90, 128: 6.37-6.95, 256: 6.33-6.82,
 * 512: 6.66-7.36; at 14336, 16 rows 14.1-15.6, 128: 11.7-13.1 */
enum { ROW_BLOCK = 128 };

/* An item of at least WIDEN_ROWS query rows over an F16 / Q8_0 cache widens each
 * page's tiles to f32 once (attn.h: bitwise the same results) instead of in
 * every page-kernel call, i.e. once per query row. */
enum { WIDEN_ROWS = 4, WIDEN_MAX_HS = 128 };
static _Thread_local float wide_k[WIDEN_MAX_HS * ATTN_PAGE] __attribute__((aligned(64)));
static _Thread_local float wide_v[WIDEN_MAX_HS * ATTN_PAGE] __attribute__((aligned(64)));

/* What every item of one attention_paged_forward call shares. */
typedef struct {
    float *out, *m, *l;
    const float *q;
    const attn_paged_kv *kv;
    const attn_isa *isa;
    attn_page_fn page_own;
    int can_widen, pos0, T, NH, rep, rb;
    float scale;
} attn_job;

/* Item it: kv head g, query rows [t0, t1). */
static void attn_item(const attn_job *J, int it) {
    float *const out = J->out, *const m = J->m, *const l = J->l;
    const float *const q = J->q;
    const attn_paged_kv *const kv = J->kv;
    const attn_isa *const isa = J->isa;
    const int NKV = kv->NKV, HS = kv->HS, NH = J->NH, rep = J->rep, rb = J->rb, T = J->T, pos0 = J->pos0;
    const float scale = J->scale;
    const int can_widen = J->can_widen;
    const attn_page_fn page_own = J->page_own;
    const int g = it % NKV, t0 = (it / NKV) * rb, t1 = t0 + rb < T ? t0 + rb : T;
    const int widen = can_widen && t1 - t0 >= WIDEN_ROWS;
    const attn_page_fn page = widen ? isa->page[0] : page_own;
    for (int t = t0; t < t1; t++)
        for (int h = g * rep; h < (g + 1) * rep; h++) {
            const size_t i = (size_t)t * NH + h;
            m[i] = -INFINITY;
            l[i] = 0.0f;
            for (int e = 0; e < HS; e++) out[i * HS + e] = 0.0f;
        }
    const int n_pages = (pos0 + t1 - 1) / ATTN_PAGE + 1;
    for (int j = 0; j < n_pages; j++) {
        const uint8_t *pg = kv->base + (size_t)(kv->pages[j] - 1) * kv->page_bytes + kv->layer_off;
        const uint8_t *kt = pg + (size_t)g * kv->tile_bytes, *vt = pg + (size_t)(NKV + g) * kv->tile_bytes;
        if (widen) {
            isa->widen(wide_k, wide_v, kt, vt, kv->type, HS);
            kt = (const uint8_t *)wide_k;
            vt = (const uint8_t *)wide_v;
        }
        /* the next page's tiles are elsewhere in memory: the page's first kernel
         * call fetches them while it computes */
        attn_next next = { NULL, NULL, kv->tile_bytes };
        const attn_next *nx = NULL;
        if (j + 1 < n_pages) {
            const uint8_t *np = kv->base + (size_t)(kv->pages[j + 1] - 1) * kv->page_bytes + kv->layer_off;
            next.k = np + (size_t)g * kv->tile_bytes;
            next.v = np + (size_t)(NKV + g) * kv->tile_bytes;
            nx = &next;
        }
        for (int t = t0; t < t1; t++) {
            int nk = pos0 + t + 1 - j * ATTN_PAGE; /* keys of this page row t sees */
            if (nk <= 0) continue;
            if (nk > ATTN_PAGE) nk = ATTN_PAGE;
            for (int h0 = g * rep; h0 < (g + 1) * rep; h0 += HEAD_GROUP) {
                const int nr = (g + 1) * rep - h0 < HEAD_GROUP ? (g + 1) * rep - h0 : HEAD_GROUP;
                const size_t i = (size_t)t * NH + h0;
                page(out + i * HS, m + i, l + i, q + i * HS, kt, vt, nx, nr, nk, HS, scale);
                nx = NULL;
            }
        }
    }
    for (int t = t0; t < t1; t++)
        for (int h = g * rep; h < (g + 1) * rep; h++) {
            const size_t i = (size_t)t * NH + h;
            for (int e = 0; e < HS; e++) out[i * HS + e] /= l[i];
        }
}

void attention_paged_forward(float *out, const float *q, const attn_paged_kv *kv, int pos0, int T,
                             int NH, float *scratch) {
    const attn_isa *isa = attn_pick(kv->type, kv->HS);
    const int NKV = kv->NKV, HS = kv->HS;
    /* rows per item: up to ROW_BLOCK (one page's tiles, hot in L1, serve ROW_BLOCK *
     * rep query rows, and the kv head's pages are read once per block), fewer when
     * that would leave threads idle */
    int rb = T * NKV / (4 * omp_get_max_threads());
    rb = rb < 1 ? 1 : rb > ROW_BLOCK ? ROW_BLOCK : rb;
    const int n_blocks = (T + rb - 1) / rb, n_items = n_blocks * NKV;
    const attn_job J = { out, scratch, scratch + (size_t)T * NH, q, kv, isa, isa->page[attn_type_index(kv->type)],
                         isa->widen && kv->type != HERD_F32 && HS <= WIDEN_MAX_HS && isa->supports(HERD_F32, HS),
                         pos0, T, NH, NH / NKV, rb, 1.0f / sqrtf((float)HS) };
    if (!kern_parallel(n_items)) {
        for (int it = 0; it < n_items; it++) attn_item(&J, it);
        return;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int it = 0; it < n_items; it++) attn_item(&J, it);
}
