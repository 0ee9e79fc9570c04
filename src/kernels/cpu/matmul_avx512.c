/* matmul_avx512.c - matmul for CPUs with AVX-512 F/BW/VL + VNNI. Compiled with
 * AVX-512 flags; only called after dispatch.c checked the CPU. This file holds
 * the activation prep and the decode-sized row kernels (T < GEMM_MIN_T); longer
 * batches go to the cache-blocked GEMM in gemm_avx512.c, which repacks weights.
 * Weight rows are read here in GGUF layout, no repacking.
 *
 * Q8_0 / Q4_0: x is quantized once per call to int8 blocks (one f32 scale per
 * block), and each block's integer dot comes from vpdpbusd (u8 x s8):
 *   Q8_0: w ^ 0x80 = w + 128 as u8, so dot(w + 128, x) - 128 * sum(x) = dot(w, x);
 *   Q4_0: nibbles are u8 already: dot(q, x) - 8 * sum(x) = dot(q - 8, x).
 * The "- k * sum(x)" terms are precomputed per block (corr) and start the integer
 * accumulator, so they cost nothing in the loop. Scales: one 64-byte load covers
 * the f16 d of 2 (Q8_0) or 4 (Q4_0) blocks; vpermw spreads them over the lanes.
 * Q4_0 activations are stored interleaved per group of 4 blocks (low halves of
 * the 4 blocks, then high halves) to match unpacking 64 bytes of nibbles at once.
 * Decode of Q8_0 (1 row x 1 token) runs in 256-bit steps instead (q8_r1t1_y).
 * F16: vcvtph2ps + FMA. BF16: widened to f32 by a 16-bit shift, x stays f32, FMA:
 * exact products on purpose. (vdpbf16ps would round x to bf16, and that rounding
 * flips greedy near-ties against float32 references: seen on herd init models
 * after 5 tokens.)
 * Tiles: R rows x TT tokens share every load: 2 x 4 for small batches; decode goes
 * one row at a time (1 x 1), so the weights stream strictly sequentially (4
 * interleaved rows measured ~1.5x slower from DRAM on 4 KiB pages).
 */
#include <immintrin.h>
#include <string.h>

#include "core/core.h"
#include "kernels/cpu/cpu.h"

#define INLINE static inline __attribute__((always_inline))
/* R and TT are constants in each instance: unrolled, the accumulators live in registers */
#define UNROLL _Pragma("GCC unroll 4")
/* Q8_0 / Q4_0 decode streams weights faster from DRAM (4 KiB pages, where the
 * hardware prefetcher restarts at every page) when each step also prefetches
 * PF_BYTES further on in the weights (measured: Q4_0 ~28 -> ~35 GB/s on 2 cores;
 * no gain for F32 / F16 / BF16, which have no prefetch). Prefetching past the
 * end of the weights is harmless. */
#define PF_BYTES 4096

static int z_supports(int type) {
    return type == HERD_F32 || type == HERD_F16 || type == HERD_BF16 || type == HERD_Q8_0 || type == HERD_Q4_0;
}

static int64_t z_layout(mm_act *a, const float *x, int type, int T, int64_t ic, void *scratch) {
    if (gemm_z_supports(type, T)) return gemm_z_layout(a, x, type, T, ic, scratch);
    memset(a, 0, sizeof *a);
    a->f32 = x;
    a->ic = ic;
    a->nb = ic / QK;
    if (type != HERD_Q8_0 && type != HERD_Q4_0) return 0;
    uint8_t *p = scratch;
    a->q = mm_carve(&p, (size_t)T * ic);
    a->d = mm_carve(&p, (size_t)T * a->nb * sizeof(float));
    a->dl = mm_carve(&p, (size_t)T * a->nb * 8 * sizeof(float));
    a->corr = mm_carve(&p, (size_t)T * a->nb * 8 * sizeof(int32_t));
    return (int64_t)T * a->nb;
}

int32_t z_quantize_block(int8_t *q, float *d, const float *x) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, _mm512_set1_ps(id)));
    const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, _mm512_set1_ps(id)));
    _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(i0));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(i1));
    *d = dd;
    return _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
}

/* Quantizes block b of all tokens (token b / nb, block b % nb) into the layout
 * of the weight type. Same formula and rounding as mm_quantize_block_q8. */
static void z_quant_block(const mm_act *a, const float *x, int type, int64_t b) {
    const int64_t t = b / a->nb, bi = b % a->nb;
    int8_t qb[QK];
    float d;
    const int32_t sum = z_quantize_block(qb, &d, x + b * QK);
    int8_t *q = (int8_t *)a->q + t * a->ic;
    float *dl = (float *)a->dl + t * a->nb * 8;
    int32_t *corr = (int32_t *)a->corr + t * a->nb * 8;
    ((float *)a->d)[b] = d;
    const int64_t g = bi / 4, k = bi % 4;
    if (type == HERD_Q4_0 && g < a->nb / 4) {
        /* group g of 4 blocks: 64 bytes of low halves, then 64 of high halves;
         * lane 4k..4k+3 of the group's 16 lanes belongs to block k */
        memcpy(q + g * 128 + k * 16, qb, 16);
        memcpy(q + g * 128 + 64 + k * 16, qb + 16, 16);
        for (int j = 0; j < 4; j++) {
            dl[g * 32 + k * 4 + j] = d;
            corr[g * 32 + k * 4 + j] = j == 0 ? -8 * sum : 0;
        }
        return;
    }
    /* natural order; 8 lanes per block (Q8_0 pairs of blocks fill 16 lanes) */
    memcpy(q + bi * 32, qb, 32);
    for (int j = 0; j < 8; j++) {
        dl[bi * 8 + j] = d;
        corr[bi * 8 + j] = j == 0 ? (type == HERD_Q8_0 ? -128 : -8) * sum : 0;
    }
}

static void z_prep(const mm_act *a, const float *x, int type, int T, int64_t i0, int64_t i1) {
    if (a->gemm) {
        gemm_z_prep(a, x, type, T, i0, i1);
        return;
    }
    for (int64_t b = i0; b < i1; b++) z_quant_block(a, x, type, b);
}

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

/* Exact block dots of the blocks the vector loops leave over (natural x layout).
 * Written with intrinsics on purpose: gcc 12 -mavx512vnni turns a plain C
 * signed x signed int8 dot loop into vpdpbusd (unsigned x signed): wrong sums. */
static float tail_q(const uint8_t *row, int type, const int8_t *xq, const float *xd, int64_t b0, int64_t nb) {
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
    float sum = 0.0f;
    for (int64_t b = b0; b < nb; b++) {
        const __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + b * QK));
        const uint8_t *blk = row + b * (type == HERD_Q8_0 ? 34 : 18);
        __m256i wv;
        if (type == HERD_Q8_0) {
            wv = _mm256_loadu_si256((const __m256i *)(blk + 2));
        } else {
            const __m128i q = _mm_loadu_si128((const __m128i *)(blk + 2));
            wv = _mm256_sub_epi8(_mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4), eight);
        }
        /* |w| (u8) x x-with-w's-sign (s8): |w| <= 128, |x| <= 127, no s16 saturation */
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv)), ones);
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        sum += _cvtsh_ss(rd16(blk)) * xd[b] * (float)_mm_cvtsi128_si32(s4);
    }
    return sum;
}

/* One step of a Q8_0 row: blocks b, b + 1 of row p (at block b) against TT tokens. */
INLINE void q8_step(__m512 *acc, const uint8_t *p, const mm_act *a, int64_t b, int t0, const int TT) {
    const __m512i idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         17, 17, 17, 17, 17, 17, 17, 17, 0, 0, 0, 0, 0, 0, 0, 0);
    _mm_prefetch((const char *)(p + PF_BYTES), _MM_HINT_T0);
    _mm_prefetch((const char *)(p + PF_BYTES + 64), _MM_HINT_T0);
    __m512i wq = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + 2))),
                                    _mm256_loadu_si256((const __m256i *)(p + 36)), 1);
    wq = _mm512_xor_si512(wq, _mm512_set1_epi8((char)0x80));
    const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(
        _mm512_permutexvar_epi16(idx, _mm512_loadu_si512((const void *)p))));
    UNROLL
    for (int tt = 0; tt < TT; tt++) {
        const int64_t t = t0 + tt;
        const __m512i xv = _mm512_loadu_si512((const void *)(a->q + t * a->ic + b * 32));
        const __m512i c = _mm512_loadu_si512((const void *)(a->corr + (t * a->nb + b) * 8));
        const __m512 dl = _mm512_loadu_ps(a->dl + (t * a->nb + b) * 8);
        const __m512i s = _mm512_dpbusd_epi32(c, wq, xv);
        acc[tt] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dl), acc[tt]);
    }
}

/* One step of a Q4_0 row: blocks b .. b + 3 (activations interleaved per group of 4). */
INLINE void q4_step(__m512 *acc, const uint8_t *p, const mm_act *a, int64_t b, int t0, const int TT) {
    const __m512i idx = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                         27, 27, 27, 27, 18, 18, 18, 18, 9, 9, 9, 9, 0, 0, 0, 0);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    _mm_prefetch((const char *)(p + PF_BYTES), _MM_HINT_T0);
    _mm_prefetch((const char *)(p + PF_BYTES + 64), _MM_HINT_T0);
    __m512i qv = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p + 2)));
    qv = _mm512_inserti32x4(qv, _mm_loadu_si128((const __m128i *)(p + 20)), 1);
    qv = _mm512_inserti32x4(qv, _mm_loadu_si128((const __m128i *)(p + 38)), 2);
    qv = _mm512_inserti32x4(qv, _mm_loadu_si128((const __m128i *)(p + 56)), 3);
    const __m512i lo = _mm512_and_si512(qv, m4);
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(qv, 4), m4);
    const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(
        _mm512_permutexvar_epi16(idx, _mm512_loadu_si512((const void *)p))));
    UNROLL
    for (int tt = 0; tt < TT; tt++) {
        const int64_t t = t0 + tt;
        const int8_t *xq = a->q + t * a->ic + b * 32;
        const __m512i c = _mm512_loadu_si512((const void *)(a->corr + (t * a->nb + b) * 8));
        const __m512 dl = _mm512_loadu_ps(a->dl + (t * a->nb + b) * 8);
        __m512i s = _mm512_dpbusd_epi32(c, lo, _mm512_loadu_si512((const void *)xq));
        s = _mm512_dpbusd_epi32(s, hi, _mm512_loadu_si512((const void *)(xq + 64)));
        acc[tt] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dl), acc[tt]);
    }
}

/* R rows x TT tokens of a Q8_0 / Q4_0 weight: out[t0 + tt, r + rr]. */
INLINE void q_tile(float *out, const mm_act *a, const herd_weight *w, int64_t r, int t0,
                   const int type, const int R, const int TT) {
    const size_t rb = kern_row_bytes(type, w->ic), bb = type == HERD_Q8_0 ? 34 : 18;
    const int64_t nb = a->nb, ic = a->ic, step = type == HERD_Q8_0 ? 2 : 4;
    const uint8_t *row[4];
    __m512 acc[4][4];
    UNROLL
    for (int rr = 0; rr < R; rr++) {
        row[rr] = (const uint8_t *)w->data + (r + rr) * rb;
        UNROLL
        for (int tt = 0; tt < TT; tt++) acc[rr][tt] = _mm512_setzero_ps();
    }
    /* (two accumulators alternating steps measured no faster for 1 x 1) */
    int64_t b = 0;
    for (; b + step <= nb; b += step)
        UNROLL
        for (int rr = 0; rr < R; rr++) {
            if (type == HERD_Q8_0) q8_step(acc[rr], row[rr] + b * bb, a, b, t0, TT);
            else q4_step(acc[rr], row[rr] + b * bb, a, b, t0, TT);
        }
    UNROLL
    for (int rr = 0; rr < R; rr++)
        UNROLL
        for (int tt = 0; tt < TT; tt++) {
            const int64_t t = t0 + tt;
            float s = _mm512_reduce_add_ps(acc[rr][tt]);
            if (b < nb) s += tail_q(row[rr], type, a->q + t * ic, a->d + t * nb, b, nb);
            out[t * w->oc + r + rr] = s;
        }
}

/* R rows x TT tokens of an F32 / F16 / BF16 weight. */
INLINE void f_tile(float *out, const mm_act *a, const herd_weight *w, int64_t r, int t0,
                   const int type, const int R, const int TT) {
    const int64_t ic = a->ic;
    const size_t rb = kern_row_bytes(type, ic);
    const uint8_t *row[4];
    __m512 acc[4][4];
    UNROLL
    for (int rr = 0; rr < R; rr++) {
        row[rr] = (const uint8_t *)w->data + (r + rr) * rb;
        UNROLL
        for (int tt = 0; tt < TT; tt++) acc[rr][tt] = _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < ic; i += 16) {
        const __mmask16 m = ic - i >= 16 ? 0xffff : (__mmask16)((1u << (ic - i)) - 1);
        UNROLL
        for (int rr = 0; rr < R; rr++) {
            const __m512 wv = type == HERD_F32 ? _mm512_maskz_loadu_ps(m, row[rr] + i * 4)
                : type == HERD_F16 ? _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row[rr] + i * 2))
                : _mm512_castsi512_ps(_mm512_slli_epi32(
                      _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row[rr] + i * 2)), 16));
            UNROLL
            for (int tt = 0; tt < TT; tt++) {
                const __m512 xv = _mm512_maskz_loadu_ps(m, a->f32 + (t0 + tt) * ic + i);
                acc[rr][tt] = _mm512_fmadd_ps(wv, xv, acc[rr][tt]);
            }
        }
    }
    UNROLL
    for (int rr = 0; rr < R; rr++)
        UNROLL
        for (int tt = 0; tt < TT; tt++) out[(t0 + tt) * w->oc + r + rr] = _mm512_reduce_add_ps(acc[rr][tt]);
}

/* Decode (one row, one token) of Q8_0 in 256-bit steps of one block: on cores
 * that run 512-bit ops as two 256-bit halves (this Zen 5 VM: 1 zmm FMA per
 * cycle, 1.7 ymm) it needs fewer vector ops per byte than q8_step (the scale
 * is one scalar product, not a lane shuffle): measured 1.15-1.2x on one core. */
static void q8_r1t1_y(float *out, const mm_act *a, const herd_weight *w, int64_t r, int t) {
    const int64_t nb = a->nb;
    const uint8_t *row = (const uint8_t *)w->data + r * nb * 34;
    const int8_t *xq = a->q + t * a->ic;
    const float *xd = a->d + t * nb;
    const int32_t *xc = a->corr + t * nb * 8;
    const __m256i bias = _mm256_set1_epi8((char)0x80);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const uint8_t *p = row + b * 34;
        _mm_prefetch((const char *)(p + PF_BYTES), _MM_HINT_T0);
        _mm_prefetch((const char *)(p + PF_BYTES + 64), _MM_HINT_T0);
        const __m256i w0 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 2)), bias);
        const __m256i w1 = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(p + 36)), bias);
        const __m256i s0 = _mm256_dpbusd_epi32(_mm256_loadu_si256((const __m256i *)(xc + b * 8)), w0,
                                               _mm256_loadu_si256((const __m256i *)(xq + b * 32)));
        const __m256i s1 = _mm256_dpbusd_epi32(_mm256_loadu_si256((const __m256i *)(xc + b * 8 + 8)), w1,
                                               _mm256_loadu_si256((const __m256i *)(xq + b * 32 + 32)));
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(_cvtsh_ss(rd16(p)) * xd[b]), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(_cvtsh_ss(rd16(p + 34)) * xd[b + 1]), acc1);
    }
    const __m256 acc = _mm256_add_ps(acc0, acc1);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
    s4 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    s4 = _mm_add_ss(s4, _mm_movehdup_ps(s4));
    float sum = _mm_cvtss_f32(s4);
    if (b < nb) sum += tail_q(row, HERD_Q8_0, xq, xd, b, nb);
    out[t * w->oc + r] = sum;
}

typedef void (*tile_fn)(float *out, const mm_act *a, const herd_weight *w, int64_t r, int t0);
typedef struct { tile_fn r1t1, r2t4; } tile_set;

#define TILES(name, fn, type) \
    static void name##_r1t1(float *o, const mm_act *a, const herd_weight *w, int64_t r, int t) { fn(o, a, w, r, t, type, 1, 1); } \
    static void name##_r2t4(float *o, const mm_act *a, const herd_weight *w, int64_t r, int t) { fn(o, a, w, r, t, type, 2, 4); } \
    static const tile_set name = { type == HERD_Q8_0 ? q8_r1t1_y : name##_r1t1, name##_r2t4 };

TILES(tiles_q8, q_tile, HERD_Q8_0)
TILES(tiles_q4, q_tile, HERD_Q4_0)
TILES(tiles_f32, f_tile, HERD_F32)
TILES(tiles_f16, f_tile, HERD_F16)
TILES(tiles_bf16, f_tile, HERD_BF16)

/* Rows [r0, r1): the GEMM for T >= GEMM_MIN_T, else in chunks (16 rows decode,
 * 64 for 2..7 tokens: the chunk's weights stay in L2 while every group of 4
 * tokens passes over them). */
static void z_rows(float *out, const mm_act *a, const herd_weight *w, int T, int64_t r0, int64_t r1) {
    if (a->gemm) {
        gemm_z_rows(out, a, w, T, r0, r1);
        return;
    }
    const tile_set *k = w->type == HERD_Q8_0 ? &tiles_q8 : w->type == HERD_Q4_0 ? &tiles_q4
                      : w->type == HERD_F32 ? &tiles_f32 : w->type == HERD_F16 ? &tiles_f16 : &tiles_bf16;
    const int64_t chunk = T > 1 ? 64 : 16;
    for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
        const int64_t c1 = c0 + chunk < r1 ? c0 + chunk : r1;
        int t = 0;
        for (; t + 4 <= T; t += 4) {
            int64_t r = c0;
            for (; r + 2 <= c1; r += 2) k->r2t4(out, a, w, r, t);
            for (; r < c1; r++)
                for (int tt = 0; tt < 4; tt++) k->r1t1(out, a, w, r, t + tt);
        }
        for (; t < T; t++)
            for (int64_t r = c0; r < c1; r++) k->r1t1(out, a, w, r, t);
    }
}

const mm_isa mm_isa_avx512 = { "avx512", z_supports, z_layout, z_prep, z_rows };
