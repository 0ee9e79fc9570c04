/* gemm_avx512.c - the matmul on AVX-512, for every T (decode too, so that each
 * output's summation order never depends on T: see matmul_avx512.c): a
 * cache-blocked GEMM, called by matmul_avx512.c's rows for its row range.
 *
 * Each thread walks its rows in panels of MR = 32 (two zmm of output rows) and
 * the input features in k-blocks. Per (panel, k-block) it repacks the weights
 * once into a per-thread buffer (transposed: one zmm holds 16 rows at one input
 * position), then sweeps every token over it with a register tile of 32 rows x
 * TT tokens. Output lanes are rows, so a tile stores straight to out (T, OC)
 * with no horizontal sums; x is broadcast from memory. x is packed once per call
 * (prep) in tiles of GEMM_QT / GEMM_FT tokens, each token tile's values for one
 * input position adjacent: unpacked, the tile's rows sit IC * 4 bytes apart and
 * (IC a multiple of 1024) all land in the same L1 set.
 *
 *   Q8_0 / Q4_0 (x quantized to int8 blocks by gemm_z_prep, same rounding as
 *   every path): the panel holds unsigned bytes (Q8_0: w ^ 0x80 = w + 128; Q4_0: the
 *   nibble 0..15) laid out [block][k 0..7][row vector][16 rows x 4 bytes], and the
 *   f32 scales [block][row vector][16]. Per block and token the int32 lanes start
 *   at corr = -128 * sum(x) (Q8_0) or -8 * sum(x) (Q4_0), take 8 vpdpbusd with x's
 *   4-byte groups broadcast, and are folded once into f32: acc += int * dw * dx.
 *   The integer dot is exact, so results equal the row kernels' up to float
 *   summation order.
 *   F32 / F16 / BF16: the panel is f32 (F16 via vcvtph2ps, BF16 by a 16-bit
 *   shift: exact), [k][row vector][16]; acc += w * x in f32 FMA. BF16 takes x
 *   rounded to bf16 and its inputs in pair order (k + 1, then k): bitwise what
 *   the packed kernels' vdpbf16ps computes (cpu.h). Only unpacked BF16 weights
 *   come here (packed ones run zp_rows_small at every T).
 * Repacking loads 16 rows and transposes them in registers (vpgatherdd for
 * the scales, partial panels and k tails).
 * Nothing here allocates: the panel buffer is static thread-local storage.
 *
 * Measured (one core of this Zen 5 VM, 2048 x 2048, T = 128; the core issues one
 * 512-bit FMA or half a vpdpbusd per cycle: ~117 GFLOP/s f32 peak): Q8_0 / Q4_0
 * ~340 GOP/s, F32 / F16 / BF16 ~103 GFLOP/s (~88% of peak); the row kernels this
 * replaces for T >= 8 reached ~115 and ~30-45.
 */
#include <immintrin.h>
#include <string.h>

#include "core/core.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd_avx512.h"

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

enum {
    MR = 32,   /* rows per panel */
    KCQ = 64,  /* blocks of 32 per int8 k-block: panel 64 KiB + 8 KiB scales */
    KCF = 512, /* input features per float k-block: panel 64 KiB */
};

static _Thread_local union {
    struct { uint8_t q[KCQ * QK * MR]; float d[KCQ * MR]; } i8;
    float f[KCF * MR];
} panel __attribute__((aligned(64)));

int gemm_z_supports(int type, int T) {
    return T >= 1 && (type == HERD_Q8_0 || type == HERD_Q4_0 || type == HERD_F32 ||
                      type == HERD_F16 || type == HERD_BF16);
}

static __m512i row_offsets(size_t rb) {
    return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                              _mm512_set1_epi32((int)rb));
}

static __mmask16 vec_mask(int n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

int64_t gemm_z_layout(mm_act *a, const float *x, int type, int T, int64_t ic, void *scratch) {
    memset(a, 0, sizeof *a);
    a->f32 = x;
    a->ic = ic;
    a->nb = ic / QK;
    a->gemm = 1;
    uint8_t *p = scratch;
    if (type != HERD_Q8_0 && type != HERD_Q4_0) {
        const int64_t tf = (T + GEMM_FT - 1) / GEMM_FT * GEMM_FT;
        a->xp = mm_carve(&p, (size_t)tf * ic * sizeof(float));
        if (type == HERD_BF16) a->xb = mm_carve(&p, (size_t)T * (size_t)((ic + 1) / 2) * sizeof(uint32_t));
        return (ic + GEMM_PREP_K - 1) / GEMM_PREP_K;
    }
    const int64_t tq = (T + GEMM_QT - 1) / GEMM_QT * GEMM_QT;
    a->q = mm_carve(&p, (size_t)tq * ic);
    a->d = mm_carve(&p, (size_t)tq * a->nb * sizeof(float));
    a->corr = mm_carve(&p, (size_t)tq * a->nb * sizeof(int32_t));
    return (int64_t)T * a->nb;
}

/* Units: one block of every token (int8: unit u is block u / T of token u % T),
 * or GEMM_PREP_K inputs of every token (f32). Token t, block b goes to tile
 * t / QT, slot j = t % QT: dword k of its 32 bytes at q[((tile nb + b) 8 + k) QT + j],
 * scale and correction at [(tile nb + b) QT + j]. The tokens of a tile share cache
 * lines, so units split by input position: threads never write the same line
 * (split by token they did, and the lines went back and forth between the cores:
 * ~70 ns per block, 8% of an 8-sequence decode step). */
void gemm_z_prep(const mm_act *a, const float *x, int type, int T, int64_t i0, int64_t i1) {
    if (type != HERD_Q8_0 && type != HERD_Q4_0) {
        const int64_t k0 = i0 * GEMM_PREP_K, k1 = i1 * GEMM_PREP_K < a->ic ? i1 * GEMM_PREP_K : a->ic;
        for (int64_t t = 0; t < T; t++) {
            /* xp NULL: only the packed BF16 kernels' pairs are wanted (mm_run) */
            float *dst = a->xp ? (float *)a->xp + (t / GEMM_FT) * a->ic * GEMM_FT + t % GEMM_FT : NULL;
            const float *src = x + t * a->ic;
            if (type != HERD_BF16) {
                for (int64_t k = k0; k < k1; k++) dst[k * GEMM_FT] = src[k];
                continue;
            }
            /* BF16: x rounded (cpu.h), as pairs for the packed kernels, as f32 here */
            uint32_t *xb = (uint32_t *)a->xb + t * ((a->ic + 1) / 2);
            for (int64_t k = k0; k < k1; k += 2) { /* k0 even: GEMM_PREP_K is */
                const uint16_t lo = z_bf16_round(src[k]), hi = k + 1 < k1 ? z_bf16_round(src[k + 1]) : 0;
                xb[k / 2] = lo | (uint32_t)hi << 16;
                if (!dst) continue;
                dst[k * GEMM_FT] = herd_bf16_to_f32(lo);
                if (k + 1 < k1) dst[(k + 1) * GEMM_FT] = herd_bf16_to_f32(hi);
            }
        }
        return;
    }
    const int32_t cmul = type == HERD_Q8_0 ? -128 : -8;
    for (int64_t u = i0; u < i1; u++) {
        const int64_t t = u % T, b = u / T, j = t % GEMM_QT;
        const int64_t tb = (t / GEMM_QT) * a->nb + b;
        int8_t q[QK];
        float d;
        const int32_t sum = z_quantize_block(q, &d, x + t * a->ic + b * QK);
        int8_t *dst = (int8_t *)a->q + (tb * 8 * GEMM_QT + j) * 4;
        for (int k = 0; k < 8; k++) memcpy(dst + k * GEMM_QT * 4, q + 4 * k, 4);
        ((float *)a->d)[tb * GEMM_QT + j] = d;
        ((int32_t *)a->corr)[tb * GEMM_QT + j] = cmul * sum;
    }
}

/* dst[k * 128 + 4 j ..] = dword k of row j's 32 quants, as w + 128 (u8). */
static void transpose_q8(uint8_t *dst, const uint8_t *p, size_t rb) {
    __m512i col[8];
    tr16x8(col, p, rb);
    UNROLL
    for (int c = 0; c < 8; c++) _mm512_store_si512(dst + c * 128, _mm512_xor_si512(col[c], _mm512_set1_epi8((char)0x80)));
}

/* The same for Q4_0's 16 bytes of nibbles per row: a 16 x 4 dword transpose (rows
 * j, j + 4, j + 8, j + 12 in the four 128-bit lanes), then low nibbles are
 * elements 0..15 (dwords 0..3) and high nibbles 16..31 (dwords 4..7). */
static void transpose_q4(uint8_t *dst, const uint8_t *p, size_t rb) {
    __m512i col[4];
    tr16x4(col, p, rb);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    UNROLL
    for (int k = 0; k < 4; k++) {
        _mm512_store_si512(dst + k * 128, _mm512_and_si512(col[k], m4));
        _mm512_store_si512(dst + (k + 4) * 128, _mm512_and_si512(_mm512_srli_epi16(col[k], 4), m4));
    }
}

/* Rows [r, r + n) (n <= MR; lanes of missing rows are zero), blocks [b0, b0 + nbk). */
static void pack_q(const herd_weight *w, int64_t r, int n, int64_t b0, int nbk) {
    const size_t bb = w->type == HERD_Q8_0 ? 34 : 18, rb = (size_t)(w->ic / QK) * bb;
    const __m512i vidx = row_offsets(rb), z = _mm512_setzero_si512();
    const __m512i bias = _mm512_set1_epi8((char)0x80), m4 = _mm512_set1_epi8(0x0F);
    for (int v = 0; v < 2; v++) {
        const __mmask16 m = vec_mask(n - 16 * v);
        const uint8_t *base = (const uint8_t *)w->data + (size_t)(r + 16 * v) * rb + (size_t)b0 * bb;
        if (!m) { /* a panel of 16 rows or fewer: the second vector stays zero */
            for (int bi = 0; bi < nbk; bi++) {
                for (int k = 0; k < 8; k++) _mm512_store_si512(panel.i8.q + ((bi * 8 + k) * 2 + v) * 64, z);
                _mm512_store_ps(panel.i8.d + (bi * 2 + v) * 16, _mm512_setzero_ps());
            }
            continue;
        }
        if (w->packed) { /* already in lane order (pack_avx512.c): copy, Q4_0's nibbles split */
            const int64_t g = (r + 16 * v) / ZP_ROWS;
            for (int bi = 0; bi < nbk; bi++) {
                const uint8_t *q = zp_q(w, g, b0 + bi);
                uint8_t *dst = panel.i8.q + (size_t)bi * 8 * 2 * 64 + v * 64;
                _mm512_store_ps(panel.i8.d + (bi * 2 + v) * 16,
                                _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)zp_d(w, g, b0 + bi))));
                UNROLL
                for (int k = 0; k < 4; k++) {
                    const __m512i g0 = _mm512_load_si512(q + k * 64);
                    if (w->type == HERD_Q8_0) {
                        _mm512_store_si512(dst + k * 128, g0);
                        _mm512_store_si512(dst + (k + 4) * 128, _mm512_load_si512(q + (k + 4) * 64));
                    } else {
                        _mm512_store_si512(dst + k * 128, _mm512_and_si512(g0, m4));
                        _mm512_store_si512(dst + (k + 4) * 128, _mm512_and_si512(_mm512_srli_epi16(g0, 4), m4));
                    }
                }
            }
            continue;
        }
        for (int bi = 0; bi < nbk; bi++) {
            const uint8_t *blk = base + (size_t)bi * bb;
            uint8_t *dst = panel.i8.q + (size_t)bi * 8 * 2 * 64 + v * 64;
            const __m512i dd = _mm512_mask_i32gather_epi32(z, m, vidx, blk, 1);
            _mm512_store_ps(panel.i8.d + (bi * 2 + v) * 16, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(dd)));
            if (m == 0xffff) { /* 16 rows: loads and an in-register transpose */
                if (w->type == HERD_Q8_0) transpose_q8(dst, blk + 2, rb);
                else transpose_q4(dst, blk + 2, rb);
            } else if (w->type == HERD_Q8_0) {
                UNROLL
                for (int k = 0; k < 8; k++) {
                    const __m512i g = _mm512_mask_i32gather_epi32(z, m, vidx, blk + 2 + 4 * k, 1);
                    _mm512_store_si512(dst + k * 128, _mm512_xor_si512(g, bias));
                }
            } else {
                UNROLL
                for (int k = 0; k < 4; k++) {
                    const __m512i g = _mm512_mask_i32gather_epi32(z, m, vidx, blk + 2 + 4 * k, 1);
                    _mm512_store_si512(dst + k * 128, _mm512_and_si512(g, m4));
                    _mm512_store_si512(dst + (k + 4) * 128, _mm512_and_si512(_mm512_srli_epi16(g, 4), m4));
                }
            }
        }
    }
}

/* out[t0 .. t0+TT) x rows [r, r + n) over blocks [b0, b0 + nbk) of the panel;
 * t0 + TT stays inside one token tile. first: the k-block that starts the sums
 * (else they add to out). */
INLINE void q_kernel(float *out, int64_t oc, const mm_act *a, int64_t r, int n, int64_t b0, int nbk,
                     int t0, int first, const int TT) {
    const __mmask16 m0 = vec_mask(n), m1 = vec_mask(n - 16);
    const int64_t tb0 = (t0 / GEMM_QT) * a->nb + b0, j0 = t0 % GEMM_QT;
    const int8_t *xq = a->q + (tb0 * 8 * GEMM_QT + j0) * 4;
    const float *xd = a->d + tb0 * GEMM_QT + j0;
    const int32_t *xc = a->corr + tb0 * GEMM_QT + j0;
    __m512 acc[2][8];
    UNROLL
    for (int t = 0; t < TT; t++) {
        float *o = out + (t0 + t) * oc + r;
        acc[0][t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, o);
        acc[1][t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, o + 16);
    }
    for (int bi = 0; bi < nbk; bi++) {
        const uint8_t *pw = panel.i8.q + (size_t)bi * 8 * 2 * 64;
        __m512i s[2][8];
        UNROLL
        for (int t = 0; t < TT; t++) s[0][t] = s[1][t] = _mm512_set1_epi32(xc[bi * GEMM_QT + t]);
        UNROLL
        for (int k = 0; k < 8; k++) {
            const __m512i w0 = _mm512_load_si512(pw + k * 128), w1 = _mm512_load_si512(pw + k * 128 + 64);
            UNROLL
            for (int t = 0; t < TT; t++) {
                int32_t xv;
                memcpy(&xv, xq + ((bi * 8 + k) * GEMM_QT + t) * 4, 4);
                const __m512i xb = _mm512_set1_epi32(xv);
                s[0][t] = _mm512_dpbusd_epi32(s[0][t], w0, xb);
                s[1][t] = _mm512_dpbusd_epi32(s[1][t], w1, xb);
            }
        }
        const __m512 d0 = _mm512_load_ps(panel.i8.d + bi * 32), d1 = _mm512_load_ps(panel.i8.d + bi * 32 + 16);
        UNROLL
        for (int t = 0; t < TT; t++) {
            const __m512 dx = _mm512_set1_ps(xd[bi * GEMM_QT + t]);
            acc[0][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[0][t]), _mm512_mul_ps(d0, dx), acc[0][t]);
            acc[1][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[1][t]), _mm512_mul_ps(d1, dx), acc[1][t]);
        }
    }
    UNROLL
    for (int t = 0; t < TT; t++) {
        float *o = out + (t0 + t) * oc + r;
        _mm512_mask_storeu_ps(o, m0, acc[0][t]);
        _mm512_mask_storeu_ps(o + 16, m1, acc[1][t]);
    }
}

/* Rows [r, r + n) of the panel, input features [k0, k0 + nk), from w->data: packed
 * F32 / F16 / BF16 weights never come here (zp_small: their packed kernels take
 * every T). */
static void pack_f(const herd_weight *w, int64_t r, int n, int64_t k0, int nk) {
    const int es = w->type == HERD_F32 ? 4 : 2;
    const size_t rb = (size_t)w->ic * es;
    const __m512i vidx = row_offsets(rb), z = _mm512_setzero_si512();
    for (int v = 0; v < 2; v++) {
        const __mmask16 m = vec_mask(n - 16 * v);
        const uint8_t *base = (const uint8_t *)w->data + (size_t)(r + 16 * v) * rb + (size_t)k0 * es;
        float *dst = panel.f + v * 16;
        int k = 0;
        if (!m) {
            for (; k < nk; k++) _mm512_store_ps(dst + k * 32, _mm512_setzero_ps());
            continue;
        }
        if (m == 0xffff) { /* 16 rows: 32 bytes of each row a step, transposed in registers */
            const int per = w->type == HERD_F32 ? 8 : 16;
            for (; k + per <= nk; k += per) {
                __m512i col[8];
                tr16x8(col, base + (size_t)k * es, rb);
                UNROLL
                for (int c = 0; c < 8; c++) {
                    if (w->type == HERD_F32) {
                        _mm512_store_si512(dst + (k + c) * 32, col[c]);
                    } else if (w->type == HERD_BF16) {
                        const __m512i pr = bf16_flush_pairs(col[c]);
                        _mm512_store_si512(dst + (k + 2 * c) * 32, _mm512_slli_epi32(pr, 16));
                        _mm512_store_si512(dst + (k + 2 * c + 1) * 32, _mm512_and_si512(pr, _mm512_set1_epi32((int)0xFFFF0000u)));
                    } else {
                        _mm512_store_ps(dst + (k + 2 * c) * 32, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(col[c])));
                        _mm512_store_ps(dst + (k + 2 * c + 1) * 32, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(col[c], 16))));
                    }
                }
            }
        }
        if (w->type == HERD_F32) {
            for (; k < nk; k++)
                _mm512_store_si512(dst + k * 32, _mm512_mask_i32gather_epi32(z, m, vidx, base + 4 * k, 1));
            continue;
        }
        for (; k + 2 <= nk; k += 2) { /* one dword = elements k, k + 1 of each row */
            const __m512i g = _mm512_mask_i32gather_epi32(z, m, vidx, base + 2 * k, 1);
            if (w->type == HERD_BF16) {
                const __m512i pr = bf16_flush_pairs(g);
                _mm512_store_si512(dst + k * 32, _mm512_slli_epi32(pr, 16));
                _mm512_store_si512(dst + k * 32 + 32, _mm512_and_si512(pr, _mm512_set1_epi32((int)0xFFFF0000u)));
            } else {
                _mm512_store_ps(dst + k * 32, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g)));
                _mm512_store_ps(dst + k * 32 + 32, _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16))));
            }
        }
        if (k < nk) { /* odd tail: 16-bit loads (a dword could run past the last row) */
            uint16_t h[16] = { 0 };
            for (int j = 0; j < 16; j++)
                if (m >> j & 1) {
                    memcpy(&h[j], base + (size_t)j * rb + 2 * k, 2);
                    if (w->type == HERD_BF16) h[j] = z_bf16_flush(h[j]);
                }
            const __m256i hv = _mm256_loadu_si256((const __m256i *)h);
            _mm512_store_ps(dst + k * 32, w->type == HERD_BF16
                ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(hv), 16))
                : _mm512_cvtph_ps(hv));
        }
    }
}

/* BF16 (pairs = 1): inputs in pair order, k + 1 before k (cpu.h), x rounded by
 * prep; an odd IC's last input adds the zero high half first, as the packed
 * kernels' padded pair does. k0 is even (KCF is). */
INLINE void f_kernel(float *out, int64_t oc, const mm_act *a, int64_t r, int n, int64_t k0,
                     int nk, int t0, int first, const int TT, const int pairs) {
    const __mmask16 m0 = vec_mask(n), m1 = vec_mask(n - 16);
    __m512 acc[2][12];
    UNROLL
    for (int t = 0; t < TT; t++) {
        float *o = out + (t0 + t) * oc + r;
        acc[0][t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m0, o);
        acc[1][t] = first ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(m1, o + 16);
    }
    const float *xk = a->xp + ((t0 / GEMM_FT) * a->ic + k0) * GEMM_FT + t0 % GEMM_FT;
    for (int kk = 0; kk < nk; kk += 1 + pairs) {
        UNROLL
        for (int h = pairs; h >= 0; h--) {
            const int k = kk + h;
            if (k >= nk) { /* odd IC: the zero high half */
                UNROLL
                for (int t = 0; t < TT; t++) {
                    acc[0][t] = _mm512_add_ps(acc[0][t], _mm512_setzero_ps());
                    acc[1][t] = _mm512_add_ps(acc[1][t], _mm512_setzero_ps());
                }
                continue;
            }
            const __m512 w0 = _mm512_load_ps(panel.f + k * 32), w1 = _mm512_load_ps(panel.f + k * 32 + 16);
            UNROLL
            for (int t = 0; t < TT; t++) {
                const __m512 xb = _mm512_set1_ps(xk[k * GEMM_FT + t]);
                acc[0][t] = _mm512_fmadd_ps(w0, xb, acc[0][t]);
                acc[1][t] = _mm512_fmadd_ps(w1, xb, acc[1][t]);
            }
        }
    }
    UNROLL
    for (int t = 0; t < TT; t++) {
        float *o = out + (t0 + t) * oc + r;
        _mm512_mask_storeu_ps(o, m0, acc[0][t]);
        _mm512_mask_storeu_ps(o + 16, m1, acc[1][t]);
    }
}

#define QK_ARGS float *o, int64_t oc, const mm_act *a, int64_t r, int n, int64_t b0, int nbk, int t0, int first
#define FK_ARGS float *o, int64_t oc, const mm_act *a, int64_t r, int n, int64_t k0, int nk, int t0, int first
static void qk6(QK_ARGS) { q_kernel(o, oc, a, r, n, b0, nbk, t0, first, 6); }
static void qk4(QK_ARGS) { q_kernel(o, oc, a, r, n, b0, nbk, t0, first, 4); }
static void qk2(QK_ARGS) { q_kernel(o, oc, a, r, n, b0, nbk, t0, first, 2); }
static void qk1(QK_ARGS) { q_kernel(o, oc, a, r, n, b0, nbk, t0, first, 1); }
static void fk12(FK_ARGS) { f_kernel(o, oc, a, r, n, k0, nk, t0, first, 12, 0); }
static void fk8(FK_ARGS) { f_kernel(o, oc, a, r, n, k0, nk, t0, first, 8, 0); }
static void fk4(FK_ARGS) { f_kernel(o, oc, a, r, n, k0, nk, t0, first, 4, 0); }
static void fk1(FK_ARGS) { f_kernel(o, oc, a, r, n, k0, nk, t0, first, 1, 0); }
static void bk12(FK_ARGS) { f_kernel(o, oc, a, r, n, k0, nk, t0, first, 12, 1); }
static void bk8(FK_ARGS) { f_kernel(o, oc, a, r, n, k0, nk, t0, first, 8, 1); }
static void bk4(FK_ARGS) { f_kernel(o, oc, a, r, n, k0, nk, t0, first, 4, 1); }
static void bk1(FK_ARGS) { f_kernel(o, oc, a, r, n, k0, nk, t0, first, 1, 1); }

void gemm_z_rows(float *out, const mm_act *a, const herd_weight *w, int T, int64_t r0, int64_t r1) {
    const int quant = w->type == HERD_Q8_0 || w->type == HERD_Q4_0;
    const int64_t kdim = quant ? a->nb : a->ic, kc = quant ? KCQ : KCF;
    for (int64_t r = r0; r < r1; r += MR) {
        const int n = r1 - r < MR ? (int)(r1 - r) : MR;
        for (int64_t k0 = 0; k0 < kdim; k0 += kc) {
            const int nk = kdim - k0 < kc ? (int)(kdim - k0) : (int)kc, first = k0 == 0;
            if (quant) {
                pack_q(w, r, n, k0, nk);
                for (int t = 0; t < T; t += GEMM_QT) { /* one token tile */
                    const int te = T - t < GEMM_QT ? T : t + GEMM_QT;
                    int u = t;
                    for (; u + 6 <= te; u += 6) qk6(out, w->oc, a, r, n, k0, nk, u, first);
                    for (; u + 4 <= te; u += 4) qk4(out, w->oc, a, r, n, k0, nk, u, first);
                    for (; u + 2 <= te; u += 2) qk2(out, w->oc, a, r, n, k0, nk, u, first);
                    for (; u < te; u++) qk1(out, w->oc, a, r, n, k0, nk, u, first);
                }
            } else {
                typedef void (*fk_fn)(FK_ARGS);
                static const fk_fn fk[2][4] = { { fk12, fk8, fk4, fk1 }, { bk12, bk8, bk4, bk1 } };
                const fk_fn *f = fk[w->type == HERD_BF16];
                pack_f(w, r, n, k0, nk);
                for (int t = 0; t < T; t += GEMM_FT) {
                    const int te = T - t < GEMM_FT ? T : t + GEMM_FT;
                    int u = t;
                    for (; u + 12 <= te; u += 12) f[0](out, w->oc, a, r, n, k0, nk, u, first);
                    for (; u + 8 <= te; u += 8) f[1](out, w->oc, a, r, n, k0, nk, u, first);
                    for (; u + 4 <= te; u += 4) f[2](out, w->oc, a, r, n, k0, nk, u, first);
                    for (; u < te; u++) f[3](out, w->oc, a, r, n, k0, nk, u, first);
                }
            }
        }
    }
}
