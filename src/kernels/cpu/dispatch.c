/* dispatch.c - the public fast entry points of kernels.h. Finds the CPU's features
 * once (__builtin_cpu_supports), picks the best ISA file per op (AVX-512 with VNNI,
 * AVX2 + FMA + F16C, or the portable scalar.c), and owns the OpenMP threading:
 * matmuls split output rows, attention splits heads, row ops split tokens.
 * Tests can cap the ISA (herd_cpu_force_isa) to compare paths against each other.
 * Nothing here allocates; every buffer comes from the caller.
 */
#include <math.h>
#include <omp.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

static herd_cpu_features cpu_feat;
static int cpu_detected;
static int isa_cap = HERD_ISA_AVX512;

const herd_cpu_features *herd_cpu(void) {
    if (!cpu_detected) {
        __builtin_cpu_init();
        herd_cpu_features f = {
            .avx2 = __builtin_cpu_supports("avx2") != 0,
            .fma = __builtin_cpu_supports("fma") != 0,
            .avx512f = __builtin_cpu_supports("avx512f") != 0,
            .avx512bw = __builtin_cpu_supports("avx512bw") != 0,
            .avx512vnni = __builtin_cpu_supports("avx512vnni") != 0,
            .avx512bf16 = __builtin_cpu_supports("avx512bf16") != 0,
        };
        /* F16C has no __builtin_cpu_supports name in every compiler: CPUID.1:ECX[29] */
        unsigned a = 1, b = 0, c = 0, d = 0;
        __asm__ volatile("cpuid" : "+a"(a), "=b"(b), "=c"(c), "=d"(d) : "c"(0));
        f.f16c = (c >> 29) & 1;
        unsigned a7 = 7, b7 = 0, c7 = 1, d7 = 0; /* leaf 7 subleaf 1: EAX[4] = AVX-VNNI */
        __asm__ volatile("cpuid" : "+a"(a7), "=b"(b7), "+c"(c7), "=d"(d7));
        f.avxvnni = (a7 >> 4) & 1;
        cpu_feat = f;
        cpu_detected = 1;
    }
    return &cpu_feat;
}

static int bf16dot_off;
void herd_cpu_force_bf16dot_off(int off) { bf16dot_off = off; }
int z_bf16dot(void) { return herd_cpu()->avx512bf16 && !bf16dot_off; }

void herd_cpu_force_isa(int max_isa) { isa_cap = max_isa < 0 ? HERD_ISA_AVX512 : max_isa; }
void herd_cpu_force_scalar(int on) { herd_cpu_force_isa(on ? HERD_ISA_SCALAR : -1); }

int herd_cpu_isa(void) {
    const herd_cpu_features *f = herd_cpu();
    int isa = HERD_ISA_SCALAR;
    if (f->avx2 && f->fma && f->f16c) isa = HERD_ISA_AVX2;
    if (isa == HERD_ISA_AVX2 && f->avx512f && f->avx512bw && f->avx512vnni) isa = HERD_ISA_AVX512;
    return isa < isa_cap ? isa : isa_cap;
}

static const mm_isa *mm_pick(int type) {
    int isa = herd_cpu_isa();
    if (isa >= HERD_ISA_AVX512 && mm_isa_avx512.supports(type)) return &mm_isa_avx512;
    if (isa >= HERD_ISA_AVX2 && mm_isa_avx2.supports(type)) return &mm_isa_avx2;
    return &mm_isa_scalar;
}

static const ops_isa *ops_pick(void) {
    return herd_cpu_isa() >= HERD_ISA_AVX2 ? &ops_isa_avx2 : &ops_isa_scalar;
}

/* K-quants packed for AVX-512 (kpack_avx512.c): their own layout of x */
static int zk_supports(int type) { return type == HERD_Q4_K || type == HERD_Q5_K || type == HERD_Q6_K; }
static int64_t zk_layout_isa(mm_act *a, const float *x, int type, int T, int64_t ic, void *scratch) {
    return zk_layout(a, x, T, ic, scratch);
}
static void zk_prep_isa(const mm_act *a, const float *x, int type, int T, int64_t i0, int64_t i1) {
    zk_prep(a, x, T, i0, i1);
}
static const mm_isa mm_isa_avx512k = { "avx512-packed", zk_supports, zk_layout_isa, zk_prep_isa, zk_rows };

/* A packed K-quant weight runs its own path while the CPU (cap) allows AVX-512;
 * otherwise (and for everything else) the type decides. */
static const mm_isa *mm_pick_w(const herd_weight *w) {
    if (w->packed && zk_supports(w->type) && herd_cpu_isa() >= HERD_ISA_AVX512) return &mm_isa_avx512k;
    return mm_pick(w->type);
}

const char *herd_cpu_matmul_path(int type) { return mm_pick(type)->name; }

void dequant_row(float *out, const void *row, int type, int64_t n) {
    dequant_row_ref(out, row, type, n); /* one row per token (embeddings): not hot */
}

size_t matmul_scratch_size(int type, int T, int64_t ic) { return mm_scratch_bytes(type, T, ic); }

size_t matmul_pack(herd_weight *w, void (*done)(void *ctx, const void *rows, size_t bytes), void *ctx) {
    if (w->packed || herd_cpu_isa() < HERD_ISA_AVX512) return 0;
    const size_t nk = zk_bytes(w), n = nk ? nk : zp_bytes(w);
    const int k = nk > 0;
    if (n == 0) return 0;
    /* mmap'd (a page-size header keeps the length for munmap) and asking for
     * huge pages: a 1B model's packed copy is ~10^5 4 KiB page faults otherwise */
    const size_t hdr = 4096, len = hdr + (n + 4095) / 4096 * 4096;
    uint8_t *base = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) return 0;
    madvise(base, len, MADV_HUGEPAGE);
    memcpy(base, &len, sizeof len);
    void *p = base + hdr;
    const size_t rb = kern_row_bytes(w->type, w->ic);
    const int64_t quads = (w->oc + ZP_QUAD - 1) / ZP_QUAD;
    const int64_t step = (int64_t)((8u << 20) / (rb * ZP_QUAD)) + 1; /* ~8 MiB of source rows */
    for (int64_t q0 = 0; q0 < quads; q0 += step) {
        const int64_t q1 = q0 + step < quads ? q0 + step : quads;
        if (k) zk_pack(p, w, q0, q1);
        else zp_pack(p, w, q0, q1);
        const int64_t r0 = q0 * ZP_QUAD, r1 = q1 * ZP_QUAD < w->oc ? q1 * ZP_QUAD : w->oc;
        if (done) done(ctx, (const uint8_t *)w->data + (size_t)r0 * rb, (size_t)(r1 - r0) * rb);
    }
    w->packed = p;
    return n;
}

void matmul_unpack(herd_weight *w) {
    if (!w->packed) return;
    uint8_t *base = (uint8_t *)w->packed - 4096;
    size_t len;
    memcpy(&len, base, sizeof len);
    munmap(base, len);
    w->packed = NULL;
}

#define MM_TILE 16 /* rows per unit of the row split (a multiple of ZP_ROWS) */

/* How matmul_forward splits w's rows: units of tile rows. */
static int64_t mm_tile(const mm_isa *isa, const herd_weight *w, int T) {
    const int small = isa == &mm_isa_avx512 && zp_small(w, T);
    return small || (w->packed && isa == &mm_isa_avx512k) ? ZP_QUAD : MM_TILE;
}

/* A thread's share of one weight's tiles, [lo, hi) packed in one word so that its
 * owner (from the front) and a thief (from the back) claim with one CAS. */
static uint64_t range_pack(int64_t lo, int64_t hi) { return (uint64_t)lo | (uint64_t)hi << 32; }

/* Claims up to c tiles of *r: from the front (own) or the back (steal). */
static int range_claim(_Atomic uint64_t *r, int64_t c, int back, int64_t *a, int64_t *b) {
    uint64_t v = atomic_load_explicit(r, memory_order_relaxed);
    for (;;) {
        const int64_t lo = (int64_t)(v & 0xffffffffu), hi = (int64_t)(v >> 32);
        if (lo >= hi) return 0;
        /* at most c, and a quarter of what is left: the last claims are single
         * tiles, so the two threads finish together (bench_batch, 1B Q4_0, 8
         * sequences, instrumented: the gap between them at the end of gate/up
         * 18.6 -> 4.8 us, of the lm_head 58 -> 6 us; ~0.44 ms a 24-25 ms step) */
        int64_t n = (hi - lo) / 4;
        n = n < 1 ? 1 : n > c ? c : n;
        const uint64_t nv = back ? range_pack(lo, hi - n) : range_pack(lo + n, hi);
        if (atomic_compare_exchange_weak_explicit(r, &v, nv, memory_order_relaxed, memory_order_relaxed)) {
            *a = back ? hi - n : lo;
            *b = back ? hi : lo + n;
            return 1;
        }
    }
}

/* Rows of tiles [t0, t1) of w (the last tile may be partial). */
static void run_tiles(const mm_isa *isa, float *out, const mm_act *a, const herd_weight *w, int T, int64_t tile,
                      int64_t t0, int64_t t1) {
    isa->rows(out, a, w, T, t0 * tile, t1 * tile < w->oc ? t1 * tile : w->oc);
}

/* One thread's part of mm_run: x's preparation (its share, then a barrier), its
 * own share of every weight's tiles, then the others' from their back (with
 * fewer threads than asked, the missing threads' shares are only ever taken
 * that way). */
typedef struct {
    float *const *out;
    const float *x;
    const herd_weight *const *w;
    int n, T, small, nth_max;
    const mm_isa *isa;
    void *scratch;
    _Atomic uint64_t *share;       /* (n, nth_max) */
    const int64_t *tile, *chunk;   /* (n) */
} mm_job;

static void mm_thread(const mm_job *J, int ith, int nth) {
    const herd_weight *const *w = J->w;
    const mm_isa *isa = J->isa;
    const float *x = J->x;
    const int T = J->T, nth_max = J->nth_max;
    mm_act a;
    int64_t n_units = isa->layout(&a, x, w[0]->type, T, w[0]->ic, J->scratch);
    if (J->small && !a.q) { /* packed float kernels never read the GEMM's x tiles */
        a.xp = NULL;
        if (!a.xb) n_units = 0; /* F32 / F16 read x as it is; BF16 its bf16 pairs */
    }
    if (n_units > 0) {
        isa->prep(&a, x, w[0]->type, T, n_units * ith / nth, n_units * (ith + 1) / nth);
        if (nth > 1) {
#pragma omp barrier
        }
    }
    for (int j = 0; j < J->n; j++)
        for (int v = 0; v < nth_max; v++) {
            const int i = (ith + v) % nth_max;
            int64_t t0, t1;
            while (range_claim(&J->share[j * nth_max + i], J->chunk[j], v != 0, &t0, &t1))
                run_tiles(isa, J->out[j], &a, w[j], T, J->tile[j], t0, t1);
        }
}

/* The n weights' matmuls over x in one parallel region: x prepared once (callers
 * pass weights of one type, input size and ISA), then each thread works through
 * its share of every weight's rows (outputs are disjoint: no barrier between
 * weights) and then takes tiles from the back of the shares still left. A row's
 * result does not depend on who computes it, so the split is free to vary: it
 * follows how fast each thread actually runs. With a static split the faster
 * thread waited at the end for the slower (2 threads on this VM's 2 vCPUs, 1B
 * Q4_0, 8 sequences a step: one thread spent 13% of its time in OpenMP's barrier
 * wait, the other 3%; the same kernel ran 26% slower on one vCPU than the other). */
static void mm_run(float *const *out, const float *x, const herd_weight *const *w, int n, int T,
                   const mm_isa *isa, void *scratch) {
    /* packed decode (and every packed K-quant matmul) runs whole quads */
    const int small = isa == &mm_isa_avx512 && zp_small(w[0], T);
    /* tiny problems (tests, T = 1 biases) are not worth waking the team */
    double work = 0;
    for (int j = 0; j < n; j++) work += (double)w[j]->oc * (double)w[j]->ic * T;
    const int nth_max = work >= 65536.0 && kern_parallel(2) ? omp_get_max_threads() : 1;
    _Atomic uint64_t share[n * nth_max];
    int64_t tile[n], chunk[n];
    for (int j = 0; j < n; j++) {
        tile[j] = mm_tile(isa, w[j], T);
        const int64_t n_tiles = (w[j]->oc + tile[j] - 1) / tile[j];
        /* claims of ~1/16 of a thread's share at most: a thief finds work until the end */
        chunk[j] = n_tiles / ((int64_t)nth_max * 16) > 1 ? n_tiles / ((int64_t)nth_max * 16) : 1;
        for (int i = 0; i < nth_max; i++)
            atomic_init(&share[j * nth_max + i], range_pack(n_tiles * i / nth_max, n_tiles * (i + 1) / nth_max));
    }
    const mm_job J = { out, x, w, n, T, small, nth_max, isa, scratch, share, tile, chunk };
    if (nth_max == 1) {
        mm_thread(&J, 0, 1);
        return;
    }
#pragma omp parallel num_threads(nth_max)
    mm_thread(&J, omp_get_thread_num(), omp_get_num_threads());
}

void matmul_forward(float *out, const float *x, const herd_weight *w, int T, void *scratch) {
    mm_run(&out, x, &w, 1, T, mm_pick_w(w), scratch);
}

void matmul_forward_n(float *const *out, const float *x, const herd_weight *const *w, int n, int T, void *scratch) {
    const mm_isa *isa = n > 0 ? mm_pick_w(w[0]) : NULL;
    int same = 1;
    for (int j = 1; j < n && same; j++)
        same = w[j]->type == w[0]->type && w[j]->ic == w[0]->ic && !w[j]->packed == !w[0]->packed &&
               mm_pick_w(w[j]) == isa; /* then their tiles and x's preparation are the same too */
    if (n > 0 && same) mm_run(out, x, w, n, T, isa, scratch);
    else
        for (int j = 0; j < n; j++) matmul_forward(out[j], x, w[j], T, scratch);
}

void rmsnorm_forward(float *out, const float *x, const float *w, int T, int C, float eps) {
    const ops_isa *ops = ops_pick();
    if (!kern_parallel(T)) {
        for (int t = 0; t < T; t++) ops->rmsnorm_row(out + (size_t)t * C, x + (size_t)t * C, w, C, eps);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) ops->rmsnorm_row(out + (size_t)t * C, x + (size_t)t * C, w, C, eps);
}

/* axpy with a = 1: fma(1, y, x) rounds once, so it is x + y exactly. (A plain
 * loop stayed scalar: gcc's -O2 does not vectorize a loop of unknown length
 * that needs a tail; it was ~1% of an 8-sequence decode step, on one thread.) */
void add_forward(float *x, const float *y, int64_t n) {
    const ops_isa *ops = ops_pick();
    const int64_t chunk = (int64_t)1 << 30;
    for (int64_t i = 0; i < n; i += chunk) ops->axpy(x + i, 1.0f, y + i, (int)(n - i < chunk ? n - i : chunk));
}

/* Phase 1: unit = (projection, 4 rows of A) over every row of x -> 4 of t a
 * row; phase 2: unit = (projection, LORA_CHUNK outputs) over every row. A unit's
 * slice of A or B^T (4 x IC, r x LORA_CHUNK floats) stays in cache while the
 * rows go by. Chunks start at multiples of LORA_CHUNK, so which outputs fall in a
 * vector body or a tail depends on OC alone; dots sums each t_j alike whatever
 * the blocking: a row's result is the same whatever T. */
#define LORA_CHUNK 512
void lora_forward(const lora_proj *p, int n, const float *x, const int32_t *rows, int T, int64_t ic, float *t) {
    const ops_isa *ops = ops_pick();
    const int z = herd_cpu_isa() >= HERD_ISA_AVX512;
    void (*const dots)(float *, const float *, const float *, int, int) = z ? z_lora_dots : ops->dots;
    void (*const axpys)(float *, const float *, const float *, int, int, int64_t) = z ? z_lora_axpys : ops->axpys;
    int64_t R = 0, n1 = 0, n2 = 0, work = 0;
    int64_t toff[n], off1[n + 1], off2[n + 1]; /* each projection's t, and its first unit in phases 1 and 2 */
    for (int k = 0; k < n; k++) {
        toff[k] = R * T, off1[k] = n1, off2[k] = n2;
        R += p[k].r;
        n1 += (p[k].r + 3) / 4;
        n2 += (p[k].oc + LORA_CHUNK - 1) / LORA_CHUNK;
        work += (int64_t)p[k].r * (ic + p[k].oc);
    }
    off1[n] = n1, off2[n] = n2;
    const int par = (double)work * T >= 65536.0 && kern_parallel(2);
#pragma omp parallel if (par)
    {
#pragma omp for schedule(static)
        for (int64_t u = 0; u < n1; u++) {
            int k = 0;
            while (u >= off1[k + 1]) k++;
            const int64_t j0 = (u - off1[k]) * 4;
            const int nj = (int)(p[k].r - j0 < 4 ? p[k].r - j0 : 4);
            for (int64_t i = 0; i < T; i++)
                dots(t + toff[k] + i * p[k].r + j0, p[k].a + j0 * ic, x + (rows ? rows[i] : i) * ic, nj, (int)ic);
        }
#pragma omp for schedule(static)
        for (int64_t u = 0; u < n2; u++) {
            int k = 0;
            while (u >= off2[k + 1]) k++;
            const int64_t c0 = (u - off2[k]) * LORA_CHUNK, len = p[k].oc - c0 < LORA_CHUNK ? p[k].oc - c0 : LORA_CHUNK;
            for (int64_t i = 0; i < T; i++)
                axpys(p[k].out + (rows ? rows[i] : i) * p[k].oc + c0, t + toff[k] + i * p[k].r, p[k].bt + c0,
                           p[k].r, (int)len, p[k].oc);
        }
    }
}

void swiglu_forward(float *out, const float *gate, const float *up, int T, int F) {
    const ops_isa *ops = ops_pick();
    const int64_t n = (int64_t)T * F, chunk = 4096;
    const int64_t n_chunks = (n + chunk - 1) / chunk;
    if (!kern_parallel(n_chunks)) {
        for (int64_t i0 = 0; i0 < n; i0 += chunk)
            ops->swiglu_row(out + i0, gate + i0, up + i0, (int)(n - i0 < chunk ? n - i0 : chunk));
        return;
    }
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n_chunks; c++) {
        const int64_t i0 = c * chunk, m = n - i0 < chunk ? n - i0 : chunk;
        ops->swiglu_row(out + i0, gate + i0, up + i0, (int)m);
    }
}

/* Row x (NH heads) at position pos: cos / sin for pairs [i0, i0 + n), then
 * applied to every head. */
static void rope_row(float *x, const float *freqs, int pos, int NH, int HS, int interleaved) {
    const int half = HS / 2;
    float cs[64], sn[64];
    for (int i0 = 0; i0 < half; i0 += 64) {
        const int n = half - i0 < 64 ? half - i0 : 64;
        for (int i = 0; i < n; i++) {
            const float angle = (float)pos * freqs[i0 + i];
            cs[i] = cosf(angle);
            sn[i] = sinf(angle);
        }
        for (int h = 0; h < NH; h++) {
            float *v = x + (size_t)h * HS;
            for (int i = 0; i < n; i++) {
                const int ia = interleaved ? 2 * (i0 + i) : i0 + i;
                const int ib = interleaved ? ia + 1 : ia + half;
                const float a0 = v[ia], b0 = v[ib];
                v[ia] = a0 * cs[i] - b0 * sn[i];
                v[ib] = a0 * sn[i] + b0 * cs[i];
            }
        }
    }
}

void rope_forward(float *x, const float *freqs, int pos0, int T, int NH, int HS, int interleaved) {
    if (!kern_parallel(T)) {
        for (int t = 0; t < T; t++) rope_row(x + (size_t)t * NH * HS, freqs, pos0 + t, NH, HS, interleaved);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) rope_row(x + (size_t)t * NH * HS, freqs, pos0 + t, NH, HS, interleaved);
}

/* NH * S floats: one row of scores per head (threads split heads). */
size_t attention_scratch_size(int T, int S, int NH) { return (size_t)NH * (size_t)S; }

/* Two passes per (token, head): scores = q . k_s * scale with their max, then
 * out = sum_s exp(score_s - max) v_s / sum_s exp(score_s - max). The cache is
 * f32 or f16 (es: bytes per element), read through the matching dot / axpy. */
static void attention_any(float *out, const float *q, const void *kc, const void *vc, size_t es,
                          int pos0, int T, int NH, int NKV, int HS, float *scratch) {
    const ops_isa *ops = ops_pick();
    const float scale = 1.0f / sqrtf((float)HS);
    const int rep = NH / NKV, S = pos0 + T;
#pragma omp parallel for schedule(static)
    for (int h = 0; h < NH; h++) {
        float *sc = scratch + (size_t)h * S;
        const int kvh = h / rep;
        for (int t = 0; t < T; t++) {
            const int n_keys = pos0 + t + 1;
            const float *qh = q + ((size_t)t * NH + h) * HS;
            float *oh = out + ((size_t)t * NH + h) * HS;
            float max = -INFINITY, sum = 0.0f;
            for (int s = 0; s < n_keys; s++) {
                const void *k = (const uint8_t *)kc + ((size_t)s * NKV + kvh) * HS * es;
                sc[s] = (es == 2 ? ops->dot_f16(qh, k, HS) : ops->dot(qh, k, HS)) * scale;
                if (sc[s] > max) max = sc[s];
            }
            for (int s = 0; s < n_keys; s++) {
                sc[s] = expf(sc[s] - max);
                sum += sc[s];
            }
            memset(oh, 0, (size_t)HS * sizeof(float));
            const float inv = 1.0f / sum;
            for (int s = 0; s < n_keys; s++) {
                const void *v = (const uint8_t *)vc + ((size_t)s * NKV + kvh) * HS * es;
                if (es == 2) ops->axpy_f16(oh, sc[s] * inv, v, HS);
                else ops->axpy(oh, sc[s] * inv, v, HS);
            }
        }
    }
}

void attention_forward(float *out, const float *q, const float *kc, const float *vc,
                       int pos0, int T, int NH, int NKV, int HS, float *scratch) {
    attention_any(out, q, kc, vc, sizeof(float), pos0, T, NH, NKV, HS, scratch);
}

void attention_forward_f16(float *out, const float *q, const uint16_t *kc, const uint16_t *vc,
                           int pos0, int T, int NH, int NKV, int HS, float *scratch) {
    attention_any(out, q, kc, vc, sizeof(uint16_t), pos0, T, NH, NKV, HS, scratch);
}

void f32_to_f16_row(uint16_t *out, const float *x, int64_t n) { ops_pick()->to_f16(out, x, n); }
