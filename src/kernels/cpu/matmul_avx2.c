/* matmul_avx2.c - matmul for CPUs with AVX2 + FMA + F16C. Compiled with AVX2
 * flags; only called after dispatch.c checked the CPU.
 *
 * Q8_0 / Q4_0: x quantized once per call to int8 blocks (natural order, f32 scale
 * per block); block dots with vpmaddubsw (u8 x s8 -> s16 pairs) + vpmaddwd:
 *   Q8_0: |w| x sign(x, w) (both <= 127: the s16 pair sums cannot saturate);
 *   Q4_0: q (0..15) x x, corrected by -8 * sum(x) (precomputed per block, corr).
 * F16: vcvtph2ps; BF16: shift to f32 (x stays f32 here, not rounded). FMA in f32.
 * Tiles: R rows x TT tokens share every load (4 x 1 for decode, 1 x 4 prefill).
 * K-quants: kquant_avx2.c.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define INLINE static inline __attribute__((always_inline))
/* R and TT are constants in each instance: unrolled, the accumulators live in registers */
#define UNROLL _Pragma("GCC unroll 4")

static int a2_supports(int type) {
    return type == HERD_F32 || type == HERD_F16 || type == HERD_BF16 || type == HERD_Q8_0 || type == HERD_Q4_0 ||
           mm_is_kquant(type);
}

static int64_t a2_layout(mm_act *a, const float *x, int type, int T, int64_t ic, void *scratch) {
    if (mm_is_kquant(type)) return mm_kq_layout(a, x, T, ic, scratch); /* kquant_avx2.c */
    memset(a, 0, sizeof *a);
    a->f32 = x;
    a->ic = ic;
    a->nb = ic / QK;
    if (type != HERD_Q8_0 && type != HERD_Q4_0) return 0;
    uint8_t *p = scratch;
    a->q = mm_carve(&p, (size_t)T * ic);
    a->d = mm_carve(&p, (size_t)T * a->nb * sizeof(float));
    a->corr = mm_carve(&p, (size_t)T * a->nb * 8 * sizeof(int32_t));
    return (int64_t)T * a->nb;
}

static void a2_prep(const mm_act *a, const float *x, int type, int T, int64_t i0, int64_t i1) {
    if (mm_is_kquant(type)) {
        mm_kq_prep(a, x, T, i0, i1);
        return;
    }
    for (int64_t b = i0; b < i1; b++) {
        int8_t *q = (int8_t *)a->q + b * QK;
        mm_quantize_block_q8(q, (float *)a->d + b, x + b * QK);
        int32_t sum = 0;
        for (int j = 0; j < QK; j++) sum += q[j];
        int32_t *c = (int32_t *)a->corr + b * 8;
        for (int j = 0; j < 8; j++) c[j] = j == 0 && type == HERD_Q4_0 ? -8 * sum : 0;
    }
}

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* R rows x TT tokens of a Q8_0 / Q4_0 weight: out[t0 + tt, r + rr]. */
INLINE void q_tile(float *out, const mm_act *a, const herd_weight *w, int64_t r, int t0,
                   const int type, const int R, const int TT) {
    const size_t bb = type == HERD_Q8_0 ? 34 : 18, rb = (size_t)a->nb * bb;
    const int64_t nb = a->nb, ic = a->ic;
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0F);
    const uint8_t *row[4];
    __m256 acc[4][4];
    UNROLL
    for (int rr = 0; rr < R; rr++) {
        row[rr] = (const uint8_t *)w->data + (r + rr) * rb;
        UNROLL
        for (int tt = 0; tt < TT; tt++) acc[rr][tt] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < nb; b++) {
        UNROLL
        for (int rr = 0; rr < R; rr++) {
            const uint8_t *p = row[rr] + b * bb;
            const float dw = _cvtsh_ss(rd16(p));
            __m256i wv;
            if (type == HERD_Q8_0) {
                wv = _mm256_loadu_si256((const __m256i *)(p + 2));
            } else {
                const __m128i q = _mm_loadu_si128((const __m128i *)(p + 2));
                wv = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(q, 4), q), m4);
            }
            const __m256i aw = type == HERD_Q8_0 ? _mm256_sign_epi8(wv, wv) : wv;
            UNROLL
            for (int tt = 0; tt < TT; tt++) {
                const int64_t t = t0 + tt;
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(a->q + t * ic + b * QK));
                __m256i s;
                if (type == HERD_Q8_0) {
                    s = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(xv, wv)), ones);
                } else {
                    s = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, xv), ones);
                    s = _mm256_add_epi32(s, _mm256_loadu_si256((const __m256i *)(a->corr + (t * nb + b) * 8)));
                }
                acc[rr][tt] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * a->d[t * nb + b]), acc[rr][tt]);
            }
        }
    }
    UNROLL
    for (int rr = 0; rr < R; rr++)
        UNROLL
        for (int tt = 0; tt < TT; tt++) out[(t0 + tt) * w->oc + r + rr] = hsum8(acc[rr][tt]);
}

INLINE __m256 load_w8(const uint8_t *p, int type) {
    if (type == HERD_F32) return _mm256_loadu_ps((const float *)p);
    const __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (type == HERD_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); /* bf16 */
}

static float load_w1(const uint8_t *p, int type) {
    if (type == HERD_F32) { float f; memcpy(&f, p, 4); return f; }
    if (type == HERD_F16) return _cvtsh_ss(rd16(p));
    union { uint32_t u; float f; } v = { .u = (uint32_t)rd16(p) << 16 };
    return v.f;
}

/* R rows x TT tokens of an F32 / F16 / BF16 weight; the IC % 8 tail in scalar. */
INLINE void f_tile(float *out, const mm_act *a, const herd_weight *w, int64_t r, int t0,
                   const int type, const int R, const int TT) {
    const int64_t ic = a->ic, ic8 = ic & ~(int64_t)7;
    const int es = type == HERD_F32 ? 4 : 2;
    const uint8_t *row[4];
    __m256 acc[4][4];
    UNROLL
    for (int rr = 0; rr < R; rr++) {
        row[rr] = (const uint8_t *)w->data + (r + rr) * ic * es;
        UNROLL
        for (int tt = 0; tt < TT; tt++) acc[rr][tt] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < ic8; i += 8) {
        UNROLL
        for (int rr = 0; rr < R; rr++) {
            const __m256 wv = load_w8(row[rr] + i * es, type);
            UNROLL
            for (int tt = 0; tt < TT; tt++)
                acc[rr][tt] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(a->f32 + (t0 + tt) * ic + i), acc[rr][tt]);
        }
    }
    UNROLL
    for (int rr = 0; rr < R; rr++)
        UNROLL
        for (int tt = 0; tt < TT; tt++) {
            float s = hsum8(acc[rr][tt]);
            for (int64_t i = ic8; i < ic; i++) s += load_w1(row[rr] + i * es, type) * a->f32[(t0 + tt) * ic + i];
            out[(t0 + tt) * w->oc + r + rr] = s;
        }
}

typedef void (*tile_fn)(float *out, const mm_act *a, const herd_weight *w, int64_t r, int t0);
typedef struct { tile_fn r4t1, r1t1, r1t4; } tile_set;

#define TILES(name, fn, type) \
    static void name##_r4t1(float *o, const mm_act *a, const herd_weight *w, int64_t r, int t) { fn(o, a, w, r, t, type, 4, 1); } \
    static void name##_r1t1(float *o, const mm_act *a, const herd_weight *w, int64_t r, int t) { fn(o, a, w, r, t, type, 1, 1); } \
    static void name##_r1t4(float *o, const mm_act *a, const herd_weight *w, int64_t r, int t) { fn(o, a, w, r, t, type, 1, 4); } \
    static const tile_set name = { name##_r4t1, name##_r1t1, name##_r1t4 };

TILES(tiles_q8, q_tile, HERD_Q8_0)
TILES(tiles_q4, q_tile, HERD_Q4_0)
TILES(tiles_f32, f_tile, HERD_F32)
TILES(tiles_f16, f_tile, HERD_F16)
TILES(tiles_bf16, f_tile, HERD_BF16)

static void a2_rows(float *out, const mm_act *a, const herd_weight *w, int T, int64_t r0, int64_t r1) {
    if (mm_is_kquant(w->type)) {
        kq_rows_avx2(out, a, w, T, r0, r1);
        return;
    }
    const tile_set *k = w->type == HERD_Q8_0 ? &tiles_q8 : w->type == HERD_Q4_0 ? &tiles_q4
                      : w->type == HERD_F32 ? &tiles_f32 : w->type == HERD_F16 ? &tiles_f16 : &tiles_bf16;
    const int64_t chunk = T > 1 ? 64 : 16;
    for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
        const int64_t c1 = c0 + chunk < r1 ? c0 + chunk : r1;
        int t = 0;
        for (; t + 4 <= T; t += 4)
            for (int64_t r = c0; r < c1; r++) k->r1t4(out, a, w, r, t);
        for (; t < T; t++) {
            int64_t r = c0;
            for (; r + 4 <= c1; r += 4) k->r4t1(out, a, w, r, t);
            for (; r < c1; r++) k->r1t1(out, a, w, r, t);
        }
    }
}

const mm_isa mm_isa_avx2 = { "avx2", a2_supports, a2_layout, a2_prep, a2_rows };
