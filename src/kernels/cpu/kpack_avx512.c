/* kpack_avx512.c - K-quant weights (Q4_K, Q5_K, Q6_K) repacked at load for AVX-512,
 * and the matmul that reads them, for every T (layout in cpu.h).
 *
 * Why: the GGUF layout makes the AVX2 row kernels unpack 6-bit scales and
 * shuffle nibbles per row and token and end each super-block with horizontal
 * sums (about half of llama.cpp's speed). Packed, a K-quant matrix reads like
 * Q4_0 / Q8_0 (pack_avx512.c): 16 rows per zmm, one linear stream per quad.
 *
 * The math, per output row and 32-element block b of x (x quantized per 32 as
 * every Q8_0 / Q4_0 path does: q, scale dx, and the negated sums of each half):
 *   Q4_K: w = d sc_j q - dmin m_j (q 0..15; sub-block j of 32 = block b; Q5_K the
 *         same with q 0..31, its fifth bit kept apart and ORed back in):
 *         acc = fma(float(dot(q, xq)), d sc_j dx, acc);
 *         acc = fma(float(-sum(xq)), dmin m_j dx, acc)
 *   Q6_K: w = d sc_g (q - 32) (q 0..63, groups g of 16: b's two halves):
 *         acc = fma(float(dot(q, xq)_half - 32 sum(xq)_half), d sc_g dx, acc), half 0 then 1
 * d sc_j is exact in f32 (an f16 times a 6- or 8-bit integer), so the packed
 * copy is lossless, and it is as large as the GGUF one (Q6_K keeps its top two
 * bits apart and ORs them back in: a few more operations, a quarter fewer bytes
 * than whole bytes; decode reads the weights once, so bytes count). One kernel serves every T (tokens in tiles of 4 sharing each
 * weight load), so each output's operations never depend on T: batch invariant.
 * This path quantizes x per 32 where the AVX2 / scalar K-quant paths quantize
 * per 256: results differ from theirs within that rounding.
 */
#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd_avx512.h"

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

size_t zk_bytes(const herd_weight *w) {
    if ((w->type != HERD_Q4_K && w->type != HERD_Q5_K && w->type != HERD_Q6_K) || w->ic % QKK) return 0;
    const size_t quads = (size_t)((w->oc + ZP_QUAD - 1) / ZP_QUAD);
    return quads * (size_t)(w->ic / QKK) * zk_unit(w->type);
}

/* The 256 quants of one Q6_K super-block as bytes 0..63: element 128 h + 32 q + l
 * is nibble (q < 2: low, else high) of ql[64 h + 32 (q & 1) + l] with bits
 * 2q..2q+1 of qh[32 h + l] on top. */
static void q6_quants(uint8_t *e, const uint8_t *blk) {
    const block_q6_K *b = (const block_q6_K *)blk;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    for (int h = 0; h < 2; h++) {
        const __m256i hi = _mm256_loadu_si256((const __m256i *)(b->qh + 32 * h));
        for (int q = 0; q < 4; q++) {
            __m256i lo = _mm256_loadu_si256((const __m256i *)(b->ql + 64 * h + 32 * (q & 1)));
            if (q >= 2) lo = _mm256_srli_epi16(lo, 4);
            const __m256i top = _mm256_and_si256(_mm256_srli_epi16(hi, 2 * q), m3);
            _mm256_storeu_si256((__m256i *)(e + 128 * h + 32 * q),
                                _mm256_or_si256(_mm256_and_si256(lo, m4), _mm256_slli_epi16(top, 4)));
        }
    }
}

/* Row `row` (of quad `quad`; src NULL: a padding row, all zero) into its units. */
static void pack_row(uint8_t *dst, const herd_weight *w, int64_t quad, int r, const uint8_t *src) {
    const int64_t nsb = w->ic / QKK;
    const int lane = r % ZP_ROWS, g = r / ZP_ROWS;
    const size_t bb = w->type == HERD_Q4_K ? sizeof(block_q4_K) : w->type == HERD_Q5_K ? sizeof(block_q5_K)
                                                                                      : sizeof(block_q6_K);
    for (int64_t sb = 0; sb < nsb; sb++) {
        uint8_t *u = dst + ((size_t)quad * (size_t)nsb + (size_t)sb) * zk_unit(w->type);
        uint8_t e[QKK];
        const uint8_t *blk = src ? src + (size_t)sb * bb : NULL;
        if (w->type == HERD_Q6_K) {
            if (blk) q6_quants(e, blk);
            else memset(e, 0, sizeof e);
        }
        if (w->type == HERD_Q4_K || w->type == HERD_Q5_K) {
            /* block_q4_K and block_q5_K share d, dmin, scales; then Q5_K has qh, qs */
            const int q5 = w->type == HERD_Q5_K;
                    uint16_t d = 0, dmin = 0;
            if (blk) memcpy(&d, blk, 2), memcpy(&dmin, blk + 2, 2);
            memcpy(u + 2 * r, &d, 2);
            memcpy(u + 128 + 2 * r, &dmin, 2);
            for (int j = 0; j < 8; j++) {
                int sc = 0, m = 0;
                if (blk) kq_scale_min(j, ((const block_q4_K *)blk)->scales, &sc, &m);
                u[256 + j * 64 + r] = (uint8_t)sc;
                u[768 + j * 64 + r] = (uint8_t)m;
                /* Q4_0's arrangement, byte i: element i low, 16 + i high; sub-block j is
                 * the low (j even) or high nibbles of qs[32 (j / 2) ..] */
                uint8_t by[16] = { 0 };
                if (blk) {
                    const uint8_t *qs = (q5 ? ((const block_q5_K *)blk)->qs : ((const block_q4_K *)blk)->qs) + 32 * (j / 2);
                    const __m128i m = _mm_set1_epi8(0x0F);
                    __m128i a = _mm_loadu_si128((const __m128i *)qs), c = _mm_loadu_si128((const __m128i *)(qs + 16));
                    if (j % 2) a = _mm_srli_epi16(a, 4), c = _mm_srli_epi16(c, 4);
                    _mm_storeu_si128((__m128i *)by, _mm_or_si128(_mm_and_si128(a, m), _mm_slli_epi16(_mm_and_si128(c, m), 4)));
                }
                for (int k = 0; k < 4; k++) memcpy(u + 1280 + (j * 4 + g) * 256 + (k * 16 + lane) * 4, by + 4 * k, 4);
                if (q5) { /* fifth bits: byte i, bit k: element 4k + i; bit 4 + k: element 16 + 4k + i */
                    uint8_t hb[4] = { 0 };
                    for (int k = 0; k < 4 && blk; k++)
                        for (int i = 0; i < 4; i++) {
                            const uint8_t *qh = ((const block_q5_K *)blk)->qh;
                            hb[i] |= (uint8_t)(((qh[4 * k + i] >> j) & 1) << k);
                            hb[i] |= (uint8_t)(((qh[16 + 4 * k + i] >> j) & 1) << (4 + k));
                        }
                    memcpy(u + 9472 + (j * 4 + g) * 64 + lane * 4, hb, 4);
                }
            }
        } else {
            uint16_t d = 0;
            if (blk) memcpy(&d, blk + offsetof(block_q6_K, d), 2);
            memcpy(u + 2 * r, &d, 2);
            for (int s = 0; s < 16; s++) u[128 + s * 64 + r] = blk ? blk[offsetof(block_q6_K, scales) + s] : 0;
            for (int j = 0; j < 8; j++) { /* low 4 bits as Q4_0's nibbles, top 2 bits apart */
                const uint8_t *ej = e + 32 * j;
                uint8_t *blk6 = u + 1152 + j * 1536;
                for (int k = 0; k < 4; k++) {
                    uint8_t by[4];
                    for (int i = 0; i < 4; i++) by[i] = (uint8_t)((ej[4 * k + i] & 0xF) | ((ej[16 + 4 * k + i] & 0xF) << 4));
                    memcpy(blk6 + g * 256 + (k * 16 + lane) * 4, by, 4);
                }
                uint8_t ha[4] = { 0 }, hb[4] = { 0 }; /* byte i, bits 2k..2k+1: element 4k + i (+ 16) */
                for (int k = 0; k < 4; k++)
                    for (int i = 0; i < 4; i++) {
                        ha[i] |= (uint8_t)(((ej[4 * k + i] >> 4) & 3) << (2 * k));
                        hb[i] |= (uint8_t)(((ej[16 + 4 * k + i] >> 4) & 3) << (2 * k));
                    }
                memcpy(blk6 + 1024 + g * 128 + lane * 4, ha, 4);
                memcpy(blk6 + 1024 + g * 128 + 64 + lane * 4, hb, 4);
            }
        }
    }
}

void zk_pack(void *dst, const herd_weight *w, int64_t quad0, int64_t quad1) {
    const size_t rb = kern_row_bytes(w->type, w->ic);
#pragma omp parallel for schedule(dynamic, 1) /* as zp_pack */
    for (int64_t quad = quad0; quad < quad1; quad++)
        for (int r = 0; r < ZP_QUAD; r++) {
            const int64_t row = quad * ZP_QUAD + r;
            pack_row(dst, w, quad, r, row < w->oc ? (const uint8_t *)w->data + (size_t)row * rb : NULL);
        }
}

/* x per token: q (T, IC) int8, d (T, nb), corr (T, nb, 2): -sum of each half. */
int64_t zk_layout(mm_act *a, const float *x, int T, int64_t ic, void *scratch) {
    memset(a, 0, sizeof *a);
    a->f32 = x;
    a->ic = ic;
    a->nb = ic / QK;
    uint8_t *p = scratch;
    a->q = mm_carve(&p, (size_t)T * (size_t)ic);
    a->d = mm_carve(&p, (size_t)T * (size_t)a->nb * sizeof(float));
    a->corr = mm_carve(&p, (size_t)T * (size_t)a->nb * 2 * sizeof(int32_t));
    return (int64_t)T * a->nb;
}

void zk_prep(const mm_act *a, const float *x, int T, int64_t i0, int64_t i1) {
    for (int64_t u = i0; u < i1; u++) {
        int8_t *q = (int8_t *)a->q + u * QK;
        z_quantize_block(q, (float *)a->d + u, x + u * QK);
        int32_t s0 = 0, s1 = 0;
        for (int j = 0; j < 16; j++) s0 += q[j], s1 += q[16 + j];
        ((int32_t *)a->corr)[2 * u] = -s0;
        ((int32_t *)a->corr)[2 * u + 1] = -s1;
    }
}


INLINE __m512 u8_ps(const uint8_t *p) { return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p))); }
INLINE __m512 i8_ps(const uint8_t *p) { return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)p))); }

/* Bit pair k of every byte moved to bits 4-5 (the rest is masked off by the
 * caller: bits crossing from a neighbouring byte land outside 4-5). */
INLINE __m512i top2(__m512i h, int k) {
    return k == 0 ? _mm512_slli_epi32(h, 4) : k == 1 ? _mm512_slli_epi32(h, 2) : k == 2 ? h : _mm512_srli_epi32(h, 2);
}

/* One quad against tokens t0 .. t0 + TT - 1 (TT 1..4). */
INLINE void k_tile(float *out, const mm_act *a, const herd_weight *w, int64_t quad, int64_t r0, int64_t r1,
                   int t0, const int TT, const int q6, const int q5) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30), m10 = _mm512_set1_epi8(0x10);
    const int64_t nb = a->nb, nsb = nb / 8;
    const int32_t *xq[4], *xc[4];
    const float *xd[4];
    UNROLL
    for (int t = 0; t < TT; t++) {
        xq[t] = (const int32_t *)(a->q + (int64_t)(t0 + t) * a->ic);
        xd[t] = a->d + (int64_t)(t0 + t) * nb;
        xc[t] = a->corr + (int64_t)(t0 + t) * nb * 2;
    }
    __m512 acc[4][4];
    UNROLL
    for (int i = 0; i < 4; i++) {
        UNROLL
        for (int t = 0; t < TT; t++) acc[i][t] = _mm512_setzero_ps();
    }
    /* ZP_PREFETCH, here at TT = 1 as well: without it the decode read only ~25 GB/s */
    const int pf = t0 == 0, lines = (int)(zk_unit(w->type) / 64);
    for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t *u = (const uint8_t *)w->packed + ((size_t)quad * (size_t)nsb + (size_t)sb) * zk_unit(w->type);
        for (int j = 0; j < 8; j++) {
            const int64_t b = sb * 8 + j;
            if (pf)
                for (int l = lines * j / 8; l < lines * (j + 1) / 8; l++)
                    _mm_prefetch((const char *)u + ZP_PREFETCH + l * 64, _MM_HINT_T0);
            UNROLL
            for (int i = 0; i < 4; i++) {
                const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(u + 32 * i)));
                if (!q6) {
                    const uint8_t *q = u + 1280 + (j * 4 + i) * 256;
                    __m512i s[4];
                    UNROLL
                    for (int t = 0; t < TT; t++) s[t] = _mm512_setzero_si512();
                    const __m512i h5 = q5 ? _mm512_load_si512(u + 9472 + (j * 4 + i) * 64) : _mm512_setzero_si512();
                    UNROLL
                    for (int k = 0; k < 4; k++) {
                        const __m512i v = _mm512_load_si512(q + k * 64);
                        __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                        if (q5) { /* bit k (bit 4 + k) of each byte to bit 4: no bit of a neighbour byte lands there */
                            lo = _mm512_or_si512(lo, _mm512_and_si512(_mm512_slli_epi32(h5, 4 - k), m10));
                            hi = _mm512_or_si512(hi, _mm512_and_si512(_mm512_srli_epi32(h5, k), m10));
                        }
                        UNROLL
                        for (int t = 0; t < TT; t++) {
                            s[t] = _mm512_dpbusd_epi32(s[t], lo, _mm512_set1_epi32(xq[t][b * 8 + k]));
                            s[t] = _mm512_dpbusd_epi32(s[t], hi, _mm512_set1_epi32(xq[t][b * 8 + k + 4]));
                        }
                    }
                    const __m512 A = _mm512_mul_ps(dw, u8_ps(u + 256 + j * 64 + i * 16));
                    const __m512 dm = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(u + 128 + 32 * i)));
                    const __m512 B = _mm512_mul_ps(dm, u8_ps(u + 768 + j * 64 + i * 16));
                    UNROLL
                    for (int t = 0; t < TT; t++) {
                        const __m512 dx = _mm512_set1_ps(xd[t][b]);
                        acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), _mm512_mul_ps(A, dx), acc[i][t]);
                        acc[i][t] = _mm512_fmadd_ps(_mm512_set1_ps((float)(xc[t][2 * b] + xc[t][2 * b + 1])),
                                                    _mm512_mul_ps(B, dx), acc[i][t]);
                    }
                } else {
                    const uint8_t *q = u + 1152 + j * 1536 + i * 256, *h = u + 1152 + j * 1536 + 1024 + i * 128;
                    const __m512i ha = _mm512_load_si512(h), hb = _mm512_load_si512(h + 64);
                    __m512i s0[4], s1[4];
                    UNROLL
                    for (int t = 0; t < TT; t++) {
                        s0[t] = _mm512_set1_epi32(32 * xc[t][2 * b]);
                        s1[t] = _mm512_set1_epi32(32 * xc[t][2 * b + 1]);
                    }
                    UNROLL
                    for (int k = 0; k < 4; k++) {
                        const __m512i v = _mm512_load_si512(q + k * 64);
                        const __m512i v0 = _mm512_or_si512(_mm512_and_si512(v, m4), _mm512_and_si512(top2(ha, k), m30));
                        const __m512i v1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4),
                                                           _mm512_and_si512(top2(hb, k), m30));
                        UNROLL
                        for (int t = 0; t < TT; t++) {
                            s0[t] = _mm512_dpbusd_epi32(s0[t], v0, _mm512_set1_epi32(xq[t][b * 8 + k]));
                            s1[t] = _mm512_dpbusd_epi32(s1[t], v1, _mm512_set1_epi32(xq[t][b * 8 + k + 4]));
                        }
                    }
                    const __m512 A0 = _mm512_mul_ps(dw, i8_ps(u + 128 + (2 * j) * 64 + i * 16));
                    const __m512 A1 = _mm512_mul_ps(dw, i8_ps(u + 128 + (2 * j + 1) * 64 + i * 16));
                    UNROLL
                    for (int t = 0; t < TT; t++) {
                        const __m512 dx = _mm512_set1_ps(xd[t][b]);
                        acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0[t]), _mm512_mul_ps(A0, dx), acc[i][t]);
                        acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1[t]), _mm512_mul_ps(A1, dx), acc[i][t]);
                    }
                }
            }
        }
    }
    store_quad(out, w->oc, quad * ZP_QUAD, r0, r1, t0, TT, acc[0], 4, 4);
}

#define KT_ARGS float *out, const mm_act *a, const herd_weight *w, int64_t quad, int64_t r0, int64_t r1, int t0
#define KT_SET(name, q6, q5)                                                                   \
    static void name##1(KT_ARGS) { k_tile(out, a, w, quad, r0, r1, t0, 1, q6, q5); }           \
    static void name##2(KT_ARGS) { k_tile(out, a, w, quad, r0, r1, t0, 2, q6, q5); }           \
    static void name##3(KT_ARGS) { k_tile(out, a, w, quad, r0, r1, t0, 3, q6, q5); }           \
    static void name##4(KT_ARGS) { k_tile(out, a, w, quad, r0, r1, t0, 4, q6, q5); }
KT_SET(q4k, 0, 0)
KT_SET(q5k, 0, 1)
KT_SET(q6k, 1, 0)

/* Per quad, tokens in tiles of 4 and a tail of 1 to 3; after the first tile the
 * quad's data comes from L2. */
void zk_rows(float *out, const mm_act *a, const herd_weight *w, int T, int64_t r0, int64_t r1) {
    typedef void (*kt_fn)(KT_ARGS);
    static const kt_fn tab[3][4] = { { q4k1, q4k2, q4k3, q4k4 }, { q6k1, q6k2, q6k3, q6k4 },
                                     { q5k1, q5k2, q5k3, q5k4 } };
    const kt_fn *k = tab[w->type == HERD_Q6_K ? 1 : w->type == HERD_Q5_K ? 2 : 0];
    for (int64_t quad = r0 / ZP_QUAD; quad * ZP_QUAD < r1; quad++) {
        int t = 0;
        for (; t + 4 <= T; t += 4) k[3](out, a, w, quad, r0, r1, t);
        if (t < T) k[T - t - 1](out, a, w, quad, r0, r1, t);
    }
}
