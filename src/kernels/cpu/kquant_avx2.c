/* kquant_avx2.c - matmul rows of K-quant weights (Q4_K, Q5_K, Q6_K) on AVX2
 * (also the K-quant path of AVX-512 CPUs). Compiled with AVX2 flags; only
 * called after dispatch.c checked the CPU. Weights are read in GGUF layout.
 *
 * x comes quantized per 256 (mm_kq_prep: int8, one f32 scale, sums of 16).
 * Per super-block the weights are unpacked to unsigned bytes (Q4_K 0..15,
 * Q5_K 0..31, Q6_K 0..63), 32 at a time, and dotted with x by vpmaddubsw
 * (u8 x s8 -> s16 pairs, at most 63 * 127 * 2: no saturation), then vpmaddwd
 * against the group's scale (16-bit lanes) adds them into int32 lanes. Q6_K's
 * -32 offset is the integer correction -32 * sum_g scale_g * sum(x_g); Q4_K /
 * Q5_K's min term sum_j m_j * sum(x_j) is one more vpmaddwd. The int32 lanes are
 * summed exactly per super-block, so each output's float steps are those of
 * scalar.c's dot_kq_row (isum * (d dx), msum * (dmin dx), in super-block order)
 * whatever the tile: batch invariant, and equal to the scalar path up to FMA
 * contraction.
 * Tiles: 1 row x TT tokens (TT = 4 for batches, 1 for the rest), the row's
 * unpacked bytes shared by the tile's tokens.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 8")
/* Prefetch distance in the weights (bytes ahead of the super-block in use):
 * decode streams each row once from DRAM. */
#define PF_BYTES 1024

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static int32_t hsum_i32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* acc (int32 lanes) += scale-weighted pair sums of q (32 u8) . x (32 s8); sv holds
 * the scale of elements 0..15 in its low 8 lanes, 16..31 in its high 8. */
INLINE __m256i dot32(__m256i acc, __m256i q, const int8_t *x, __m256i sv) {
    const __m256i p = _mm256_maddubs_epi16(q, _mm256_loadu_si256((const __m256i *)x));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p, sv));
}

/* One Q4_K / Q5_K super-block of one row against TT tokens: isum[tt], msum[tt]. */
INLINE void sb_q45(int32_t *isum, int32_t *msum, const uint8_t *blk, const int type,
                   const int8_t *const *xq, const int16_t *const *xs, const int TT) {
    const uint8_t *scales = blk + 4, *qh = blk + 16, *qs = blk + (type == HERD_Q4_K ? 16 : 48);
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    int sc[8], mn[8];
    int16_t m16[16];
    for (int j = 0; j < 8; j++) {
        kq_scale_min(j, scales, &sc[j], &mn[j]);
        m16[2 * j] = m16[2 * j + 1] = (int16_t)mn[j];
    }
    const __m256i mv = _mm256_loadu_si256((const __m256i *)m16);
    const __m256i h = type == HERD_Q5_K ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    __m256i acc[4];
    UNROLL
    for (int tt = 0; tt < TT; tt++) acc[tt] = _mm256_setzero_si256();
    UNROLL
    for (int g = 0; g < 4; g++) { /* sub-blocks 2g (low nibbles) and 2g + 1 (high) */
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(qs + 32 * g));
        __m256i lo = _mm256_and_si256(raw, m4), hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
        if (type == HERD_Q5_K) { /* bit j of qh[l]: 16 for element l of sub-block j */
            lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * g), one), 4));
            hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2 * g + 1), one), 4));
        }
        const __m256i s0 = _mm256_set1_epi16((int16_t)sc[2 * g]), s1 = _mm256_set1_epi16((int16_t)sc[2 * g + 1]);
        UNROLL
        for (int tt = 0; tt < TT; tt++) {
            acc[tt] = dot32(acc[tt], lo, xq[tt] + 64 * g, s0);
            acc[tt] = dot32(acc[tt], hi, xq[tt] + 64 * g + 32, s1);
        }
    }
    UNROLL
    for (int tt = 0; tt < TT; tt++) {
        isum[tt] = hsum_i32(acc[tt]);
        msum[tt] = hsum_i32(_mm256_madd_epi16(mv, _mm256_loadu_si256((const __m256i *)xs[tt])));
    }
}

/* One Q6_K super-block of one row against TT tokens: isum[tt] (the -32 folded in). */
INLINE void sb_q6(int32_t *isum, const uint8_t *blk, const int8_t *const *xq, const int16_t *const *xs, const int TT) {
    const block_q6_K *b = (const block_q6_K *)blk;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales));
    __m256i acc[4];
    UNROLL
    for (int tt = 0; tt < TT; tt++) acc[tt] = _mm256_setzero_si256();
    UNROLL
    for (int n = 0; n < 2; n++) { /* 128-element halves */
        const __m256i h = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * n));
        const __m256i l0 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * n));
        const __m256i l1 = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * n + 32));
        const __m256i q[4] = { /* quarters: elements 0-31, 32-63, 64-95, 96-127 of the half */
            _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30)),
            _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30)),
            _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(h, 2), m30)),
        };
        UNROLL
        for (int k = 0; k < 4; k++) {
            const int g = 8 * n + 2 * k; /* scales of elements 0-15 and 16-31 of the quarter */
            const __m256i sv = _mm256_set_m128i(_mm_set1_epi16(b->scales[g + 1]), _mm_set1_epi16(b->scales[g]));
            UNROLL
            for (int tt = 0; tt < TT; tt++) acc[tt] = dot32(acc[tt], q[k], xq[tt] + 128 * n + 32 * k, sv);
        }
    }
    UNROLL
    for (int tt = 0; tt < TT; tt++) {
        const __m256i corr = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)xs[tt]));
        isum[tt] = hsum_i32(_mm256_sub_epi32(acc[tt], _mm256_slli_epi32(corr, 5)));
    }
}

/* Row r against tokens t0 .. t0 + TT - 1: out[t, r]. */
INLINE void kq_tile(float *out, const mm_act *a, const herd_weight *w, int64_t r, int t0,
                    const int type, const int TT) {
    const int64_t ic = a->ic, nsb = ic / QKK;
    const size_t bb = type == HERD_Q4_K ? 144 : type == HERD_Q5_K ? 176 : 210;
    const uint8_t *row = (const uint8_t *)w->data + (size_t)r * nsb * bb;
    float sum[4], msum_f[4];
    UNROLL
    for (int tt = 0; tt < TT; tt++) sum[tt] = msum_f[tt] = 0.0f;
    for (int64_t b = 0; b < nsb; b++) {
        const uint8_t *blk = row + b * bb;
        _mm_prefetch((const char *)(blk + PF_BYTES), _MM_HINT_T0);
        _mm_prefetch((const char *)(blk + PF_BYTES + 64), _MM_HINT_T0);
        _mm_prefetch((const char *)(blk + PF_BYTES + 128), _MM_HINT_T0);
        const int8_t *xq[4];
        const int16_t *xs[4];
        UNROLL
        for (int tt = 0; tt < TT; tt++) {
            xq[tt] = a->q + (t0 + tt) * ic + b * QKK;
            xs[tt] = a->xs + (t0 + tt) * (ic / 16) + b * (QKK / 16);
        }
        int32_t isum[4], msum[4];
        if (type == HERD_Q6_K) {
            sb_q6(isum, blk, xq, xs, TT);
            const float d = _cvtsh_ss(rd16(blk + 208));
            UNROLL
            for (int tt = 0; tt < TT; tt++) sum[tt] += (float)isum[tt] * (d * a->d[(t0 + tt) * nsb + b]);
        } else {
            sb_q45(isum, msum, blk, type, xq, xs, TT);
            const float d = _cvtsh_ss(rd16(blk)), dmin = _cvtsh_ss(rd16(blk + 2));
            UNROLL
            for (int tt = 0; tt < TT; tt++) {
                const float dx = a->d[(t0 + tt) * nsb + b];
                sum[tt] += (float)isum[tt] * (d * dx);
                msum_f[tt] += (float)msum[tt] * (dmin * dx);
            }
        }
    }
    UNROLL
    for (int tt = 0; tt < TT; tt++) out[(t0 + tt) * w->oc + r] = sum[tt] - msum_f[tt];
}

typedef void (*kq_fn)(float *out, const mm_act *a, const herd_weight *w, int64_t r, int t0);
#define KQ_TILES(name, type) \
    static void name##_t1(float *o, const mm_act *a, const herd_weight *w, int64_t r, int t) { kq_tile(o, a, w, r, t, type, 1); } \
    static void name##_t4(float *o, const mm_act *a, const herd_weight *w, int64_t r, int t) { kq_tile(o, a, w, r, t, type, 4); }
KQ_TILES(q4k, HERD_Q4_K)
KQ_TILES(q5k, HERD_Q5_K)
KQ_TILES(q6k, HERD_Q6_K)

/* Rows [r0, r1) in chunks of 32 rows (their weights stay in L2 while every group
 * of 4 tokens passes over them). */
void kq_rows_avx2(float *out, const mm_act *a, const herd_weight *w, int T, int64_t r0, int64_t r1) {
    const kq_fn t1 = w->type == HERD_Q4_K ? q4k_t1 : w->type == HERD_Q5_K ? q5k_t1 : q6k_t1;
    const kq_fn t4 = w->type == HERD_Q4_K ? q4k_t4 : w->type == HERD_Q5_K ? q5k_t4 : q6k_t4;
    const int64_t chunk = 32;
    for (int64_t c0 = r0; c0 < r1; c0 += chunk) {
        const int64_t c1 = c0 + chunk < r1 ? c0 + chunk : r1;
        int t = 0;
        for (; t + 4 <= T; t += 4)
            for (int64_t r = c0; r < c1; r++) t4(out, a, w, r, t);
        for (; t < T; t++)
            for (int64_t r = c0; r < c1; r++) t1(out, a, w, r, t);
    }
}
