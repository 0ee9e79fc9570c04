/* test_kvcache.c - the paged KV cache (kvcache.h) and paged attention:
 *   - page accounting: reserve / truncate / free give back exactly what they took;
 *   - prefix sharing: whole pages shared, the partial page copied, copy-on-write
 *     when a sequence rewinds into a shared page, the other sequence unchanged;
 *   - errors: out of pages (HERD_ERR_NOMEM, nothing changes), past n_ctx;
 *   - kv_attend against kv_attend_ref (pages dequantized to f32, then
 *     attention_forward_ref) for F32, F16 and Q8_0 on every ISA the CPU has.
 *     Tolerance: 1e-5 * max(1, |ref|) per element; both read the same stored
 *     pages, so f16 / q8_0 rounding of the cache cancels out, and what remains
 *     is summation order and the vector exp (~2 ulp);
 *   - batch invariance: a query row's output is bitwise identical whether it is
 *     computed alone (T = 1) or as a row of a T = 64 (or T = 7) call, at several
 *     pos0, with 1 or several threads.
 */
#include <omp.h>

#include "core/core.h"
#include "kernels/kernels.h"
#include "kvcache.h"
#include "test.h"

static herd_rng rng;
static const char *isa_name[] = { "scalar", "avx2", "avx512" };
static const int types[] = { HERD_F32, HERD_F16, HERD_Q8_0 };

static void fill_normal(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)herd_rng_normal(&rng) * scale;
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(1); }
    return p;
}

static kv_pool *new_pool(int type, int n_layers, int NKV, int HS, int n_pages) {
    kv_pool *p = NULL;
    herd_error err = { 0 };
    herd_status st = kv_pool_new(&p, type, n_layers, NKV, HS, n_pages, &err);
    CHECKF(st == HERD_OK && p, "kv_pool_new: %s", err.msg);
    if (!p) exit(1);
    return p;
}

static void test_accounting(void) {
    kv_pool *p = new_pool(HERD_F16, 2, 2, 32, 8);
    CHECK(kv_pool_pages_free(p) == 8 && kv_pool_pages_used(p) == 0);
    CHECK(kv_pool_bytes(p) == (size_t)8 * 2 * 2 * 2 * KV_PAGE * 32 * 2);
    CHECK(kv_pool_type(p) == HERD_F16);
    kv_seq s;
    herd_error err = { 0 };
    CHECK(kv_seq_init(&s, p, 300, &err) == HERD_OK);
    CHECK(s.max_pages == 5 && s.n_pos == 0);
    CHECK(kv_seq_reserve(&s, 1, &err) == HERD_OK && s.n_pos == 1 && kv_pool_pages_used(p) == 1);
    CHECK(s.pages[0] != 0 && s.pages[1] == 0);
    CHECK(kv_seq_reserve(&s, 64, &err) == HERD_OK && kv_pool_pages_used(p) == 1);
    CHECK(kv_seq_reserve(&s, 65, &err) == HERD_OK && kv_pool_pages_used(p) == 2);
    CHECK(kv_seq_reserve(&s, 30, &err) == HERD_OK && s.n_pos == 65); /* never shrinks */
    CHECK(kv_seq_reserve(&s, 300, &err) == HERD_OK && kv_pool_pages_used(p) == 5);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < i; j++) CHECK(s.pages[i] != s.pages[j]);
    /* past the sequence's context */
    CHECK(kv_seq_reserve(&s, 321, &err) == HERD_ERR_RANGE && s.n_pos == 300);
    CHECKF(strstr(err.msg, "321 positions") != NULL, "%s", err.msg);
    kv_seq_truncate(&s, 129);
    CHECK(s.n_pos == 129 && kv_pool_pages_used(p) == 3 && s.pages[3] == 0);
    kv_seq_truncate(&s, 128);
    CHECK(s.n_pos == 128 && kv_pool_pages_used(p) == 2);
    kv_seq_truncate(&s, 500); /* forward: no-op */
    CHECK(s.n_pos == 128);
    kv_seq_truncate(&s, 0);
    CHECK(s.n_pos == 0 && kv_pool_pages_used(p) == 0);
    CHECK(kv_seq_reserve(&s, 100, &err) == HERD_OK && kv_pool_pages_used(p) == 2);
    kv_seq_free(&s);
    CHECK(kv_pool_pages_used(p) == 0 && kv_pool_pages_free(p) == 8);
    kv_seq_free(&s); /* twice is harmless */

    /* out of pages: nothing changes */
    kv_seq a, b;
    CHECK(kv_seq_init(&a, p, 1000, &err) == HERD_OK && kv_seq_init(&b, p, 1000, &err) == HERD_OK);
    CHECK(kv_seq_reserve(&a, 6 * KV_PAGE, &err) == HERD_OK);
    CHECK(kv_seq_reserve(&b, 64, &err) == HERD_OK);
    err.msg[0] = 0;
    CHECK(kv_seq_reserve(&b, 64 + 2 * KV_PAGE, &err) == HERD_ERR_NOMEM);
    CHECKF(strstr(err.msg, "out of pages") && strstr(err.msg, "1 of 8 are free"), "%s", err.msg);
    CHECK(b.n_pos == 64 && kv_pool_pages_used(p) == 7 && b.pages[1] == 0);
    CHECK(kv_seq_reserve(&b, 64 + KV_PAGE, &err) == HERD_OK && kv_pool_pages_free(p) == 0);
    kv_seq_free(&a);
    kv_seq_free(&b);
    CHECK(kv_pool_pages_free(p) == 8);
    kv_pool_free(p);

    /* bad pools */
    kv_pool *bad = NULL;
    CHECK(kv_pool_new(&bad, HERD_Q8_0, 2, 2, 48, 4, &err) == HERD_ERR_ARG && !bad);
    CHECKF(strstr(err.msg, "multiple of 32") != NULL, "%s", err.msg);
    CHECK(kv_pool_new(&bad, HERD_Q4_0, 2, 2, 64, 4, &err) == HERD_ERR_ARG && !bad);
    CHECK(kv_pool_new(&bad, HERD_F32, 2, 2, 64, 0, &err) == HERD_ERR_ARG && !bad);
}

/* Runs positions [pos0, pos0 + T) of one layer-0 step through kv_attend or kv_attend_ref. */
typedef struct { int NH, NKV, HS, n_layers; } shape;

static void step(kv_seq *s, const shape *sh, int pos0, int T, const float *q, const float *k,
                 const float *v, float *out, int ref) {
    herd_error err = { 0 };
    CHECKF(kv_seq_reserve(s, pos0 + T, &err) == HERD_OK, "%s", err.msg);
    for (int l = 0; l < sh->n_layers; l++) {
        /* every layer stores the same keys into its own part of the pages; the
         * last layer's output is kept */
        if (ref) {
            kv_attend_ref(s, l, pos0, T, q, k, v, out, sh->NH);
        } else {
            float *scr = xmalloc(kv_attend_scratch_size(T, sh->NH, sh->HS) * sizeof(float));
            kv_attend(s, l, pos0, T, q, k, v, out, sh->NH, scr);
            free(scr);
        }
    }
}

/* Sharing: b takes a's first n_share positions; both write on; a rewinds into
 * a shared page and rewrites it (copy-on-write); b's attention stays what a
 * fresh sequence with the same contents gives. */
static void test_sharing(int type) {
    const shape sh = { 4, 2, 32, 2 };
    const int KVD = sh.NKV * sh.HS, QD = sh.NH * sh.HS, S = 300;
    kv_pool *p = new_pool(type, sh.n_layers, sh.NKV, sh.HS, 32);
    float *k = xmalloc((size_t)S * KVD * 4), *v = xmalloc((size_t)S * KVD * 4);
    float *k2 = xmalloc((size_t)S * KVD * 4), *q = xmalloc((size_t)S * QD * 4);
    float *o1 = xmalloc((size_t)S * QD * 4), *o2 = xmalloc((size_t)S * QD * 4);
    fill_normal(k, (size_t)S * KVD, 1); fill_normal(v, (size_t)S * KVD, 1);
    fill_normal(k2, (size_t)S * KVD, 1); fill_normal(q, (size_t)S * QD, 1);
    herd_error err = { 0 };
    kv_seq a, b, c;
    kv_seq_init(&a, p, 1024, &err); kv_seq_init(&b, p, 1024, &err); kv_seq_init(&c, p, 1024, &err);
    step(&a, &sh, 0, 200, q, k, v, o1, 0);           /* a: 4 pages */
    CHECK(kv_pool_pages_used(p) == 4);
    const int n_share = 150;                         /* 2 whole pages + 22 positions */
    CHECK(kv_seq_share_prefix(&b, &a, n_share, &err) == HERD_OK && b.n_pos == n_share);
    CHECK(kv_pool_pages_used(p) == 5);               /* one copied page */
    CHECK(b.pages[0] == a.pages[0] && b.pages[1] == a.pages[1] && b.pages[2] != a.pages[2]);
    /* b goes on with different keys from position 150 */
    step(&b, &sh, n_share, 100, q + (size_t)n_share * QD, k2, v, o1, 0);
    CHECK(kv_pool_pages_used(p) == 6);
    /* c: a fresh sequence with the same contents as b */
    step(&c, &sh, 0, n_share, q, k, v, o2, 0);
    step(&c, &sh, n_share, 100, q + (size_t)n_share * QD, k2, v, o2, 0);
    CHECKF(memcmp(o1, o2, (size_t)100 * QD * 4) == 0, "type %s: shared prefix changes attention",
           herd_type_name(type));
    /* a rewinds into shared page 1 and rewrites positions 100 .. 199 with k2:
     * page 1 is copied first, so b's view does not change */
    kv_seq_truncate(&a, 100);
    CHECK(kv_pool_pages_used(p) == 8);               /* a: 2 (shared), b: 2 + 2, c: 4 */
    const int32_t shared1 = a.pages[1];
    step(&a, &sh, 100, 100, q + (size_t)100 * QD, k2, v, o1, 0);
    CHECK(a.pages[1] != shared1 && b.pages[1] == shared1 && b.pages[0] == a.pages[0]);
    step(&b, &sh, 250, 1, q + (size_t)250 * QD, k2 + (size_t)100 * KVD, v, o1, 0);
    step(&c, &sh, 250, 1, q + (size_t)250 * QD, k2 + (size_t)100 * KVD, v, o2, 0);
    CHECKF(memcmp(o1, o2, (size_t)QD * 4) == 0, "type %s: copy-on-write leaked into the sharer",
           herd_type_name(type));
    /* sharing errors */
    kv_seq d;
    kv_seq_init(&d, p, 100, &err);
    CHECK(kv_seq_share_prefix(&d, &a, 150, &err) == HERD_ERR_ARG); /* d too short */
    CHECK(kv_seq_share_prefix(&d, &a, 64, &err) == HERD_OK && kv_pool_pages_used(p) > 0);
    CHECK(kv_seq_share_prefix(&d, &a, 64, &err) == HERD_ERR_ARG); /* d not empty */
    kv_seq_free(&a); kv_seq_free(&b); kv_seq_free(&c); kv_seq_free(&d);
    CHECK(kv_pool_pages_used(p) == 0);
    kv_pool_free(p);
    free(k); free(v); free(k2); free(q); free(o1); free(o2);
}

static double max_err(const float *a, const float *ref, size_t n) {
    double e = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]) / fmax(1.0, fabs(ref[i]));
        if (!(d <= e)) e = d; /* NaN wins */
    }
    return e;
}

/* kv_attend vs kv_attend_ref: prefill of pos0 positions, then a call of T. */
static void test_vs_ref(int type, shape sh, int pos0, int T, float qscale) {
    const int KVD = sh.NKV * sh.HS, QD = sh.NH * sh.HS, S = pos0 + T;
    kv_pool *p = new_pool(type, sh.n_layers, sh.NKV, sh.HS, (S + KV_PAGE - 1) / KV_PAGE);
    float *k = xmalloc((size_t)S * KVD * 4), *v = xmalloc((size_t)S * KVD * 4);
    float *q = xmalloc((size_t)S * QD * 4), *o = xmalloc((size_t)S * QD * 4);
    float *ref = xmalloc((size_t)T * QD * 4);
    fill_normal(k, (size_t)S * KVD, 1); fill_normal(v, (size_t)S * KVD, 1);
    fill_normal(q, (size_t)S * QD, qscale);
    herd_error err = { 0 };
    kv_seq s;
    kv_seq_init(&s, p, S, &err);
    if (pos0) step(&s, &sh, 0, pos0, q, k, v, o, 0);
    const float *qt = q + (size_t)pos0 * QD, *kt = k + (size_t)pos0 * KVD, *vt = v + (size_t)pos0 * KVD;
    step(&s, &sh, pos0, T, qt, kt, vt, ref, 1);
    const int best = herd_cpu_isa();
    for (int isa = best; isa >= 0; isa--) {
        herd_cpu_force_isa(isa);
        kv_seq_truncate(&s, pos0);
        step(&s, &sh, pos0, T, qt, kt, vt, o, 0);
        const double e = max_err(o, ref, (size_t)T * QD);
        CHECKF(e <= 1e-5, "kv_attend %s %s pos0 %d T %d NH %d NKV %d HS %d qscale %g: err %.3g",
               herd_type_name(type), isa_name[isa], pos0, T, sh.NH, sh.NKV, sh.HS, qscale, e);
    }
    herd_cpu_force_isa(-1);
    kv_seq_free(&s);
    kv_pool_free(p);
    free(k); free(v); free(q); free(o); free(ref);
}

/* Row t of a T-token call == the same position computed alone, bitwise. */
static void test_batch_invariance(int type, shape sh, int pos0) {
    const int T = 64, KVD = sh.NKV * sh.HS, QD = sh.NH * sh.HS, S = pos0 + T;
    kv_pool *p = new_pool(type, sh.n_layers, sh.NKV, sh.HS, 2 * ((S + KV_PAGE - 1) / KV_PAGE));
    float *k = xmalloc((size_t)S * KVD * 4), *v = xmalloc((size_t)S * KVD * 4);
    float *q = xmalloc((size_t)S * QD * 4);
    float *o64 = xmalloc((size_t)T * QD * 4), *o1 = xmalloc((size_t)T * QD * 4);
    float *o7 = xmalloc((size_t)T * QD * 4), *opre = xmalloc((size_t)S * QD * 4);
    fill_normal(k, (size_t)S * KVD, 1); fill_normal(v, (size_t)S * KVD, 1);
    fill_normal(q, (size_t)S * QD, 2);
    herd_error err = { 0 };
    const int best = herd_cpu_isa(), saved = omp_get_max_threads();
    /* the slower ISAs only on small shapes (keeps the suite fast) */
    const int lowest = sh.NH * sh.HS * (pos0 + T) > 4 * 32 * 300 ? best : 0;
    for (int isa = best; isa >= lowest; isa--) {
        herd_cpu_force_isa(isa);
        kv_seq a, b;
        kv_seq_init(&a, p, S, &err); kv_seq_init(&b, p, S, &err);
        if (pos0) { step(&a, &sh, 0, pos0, q, k, v, opre, 0); step(&b, &sh, 0, pos0, q, k, v, opre, 0); }
        const size_t off = (size_t)pos0;
        step(&a, &sh, pos0, T, q + off * QD, k + off * KVD, v + off * KVD, o64, 0);
        omp_set_num_threads(1);
        for (int t = 0; t < T; t++)
            step(&b, &sh, pos0 + t, 1, q + (off + t) * QD, k + (off + t) * KVD, v + (off + t) * KVD,
                 o1 + (size_t)t * QD, 0);
        omp_set_num_threads(saved);
        int same = 1;
        for (int t = 0; t < T; t++)
            if (memcmp(o64 + (size_t)t * QD, o1 + (size_t)t * QD, (size_t)QD * 4)) { same = 0; break; }
        CHECKF(same, "batch invariance %s %s pos0 %d: T=64 rows differ from T=1",
               herd_type_name(type), isa_name[isa], pos0);
        /* chunks of 7 over the same positions */
        kv_seq_truncate(&b, pos0);
        for (int t = 0; t < T; t += 7) {
            const int n = T - t < 7 ? T - t : 7;
            step(&b, &sh, pos0 + t, n, q + (off + t) * QD, k + (off + t) * KVD, v + (off + t) * KVD,
                 o7 + (size_t)t * QD, 0);
        }
        CHECKF(memcmp(o64, o7, (size_t)T * QD * 4) == 0, "batch invariance %s %s pos0 %d: T=7 chunks differ",
               herd_type_name(type), isa_name[isa], pos0);
        kv_seq_free(&a); kv_seq_free(&b);
    }
    herd_cpu_force_isa(-1);
    kv_pool_free(p);
    free(k); free(v); free(q); free(o64); free(o1); free(o7); free(opre);
}

int main(void) {
    herd_rng_seed(&rng, 42);
    test_accounting();
    for (int i = 0; i < 3; i++) test_sharing(types[i]);
    const shape shapes[] = {
        { 4, 2, 32, 1 },   /* tiny models: rep 2 */
        { 8, 8, 16, 1 },   /* MHA, HS 16 */
        { 32, 8, 64, 1 },  /* Llama 3.2 1B: rep 4 */
        { 24, 8, 128, 1 }, /* Llama 3.2 3B: rep 3, HS 128 */
        { 16, 2, 64, 2 },  /* rep 8: two head groups */
        { 6, 2, 48, 1 },   /* HS 48: vector tails */
    };
    for (int i = 0; i < 3; i++) {
        for (size_t j = 0; j < sizeof shapes / sizeof shapes[0]; j++) {
            if (types[i] == HERD_Q8_0 && shapes[j].HS % 32) continue;
            test_vs_ref(types[i], shapes[j], 0, 1, 1);
            test_vs_ref(types[i], shapes[j], 0, 70, 1);
            test_vs_ref(types[i], shapes[j], 130, 5, 3);
            test_vs_ref(types[i], shapes[j], 64, 64, 1);
        }
        test_vs_ref(types[i], shapes[2], 1000, 1, 4);
        const int pos0s[] = { 0, 1, 63, 64, 200 };
        for (int j = 0; j < 5; j++) test_batch_invariance(types[i], shapes[j % 2 ? 2 : 0], pos0s[j]);
        test_batch_invariance(types[i], shapes[3], 1);
    }
    TEST_MAIN_END("test_kvcache");
}
