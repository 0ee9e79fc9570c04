/* pack_avx512.c - weights repacked once at load for the AVX-512 matmul (layout
 * in cpu.h), and the decode (T = 1) kernel that reads them.
 *
 * Why: without it every matmul transposes its weights into the GEMM's panel
 * first (gemm_avx512.c). For a prompt that cost is shared by all its tokens; for
 * decode it is paid per token and is most of the work. Packed, a decode step
 * streams each group of 16 rows once, already in lane order: memory-bound, as
 * decode should be.
 *
 * Bitwise the GEMM's results (batch invariance, see matmul_avx512.c): per row,
 * Q8_0 / Q4_0 take the exact integer dot of each 32-block (here split into two
 * partial sums to shorten the dependency chain: integer adds are exact) and then
 * acc = fma(float(int), d_w * d_x, acc) in block order; F16 / BF16 take
 * acc = fma(w_k, x_k, acc) in k order, as the GEMM does.
 *
 * Four groups (64 rows) run side by side so that the fma and vpdpbusd chains
 * overlap; x's broadcasts are shared by the four.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

size_t zp_bytes(const herd_weight *w) {
    const size_t g = (size_t)zp_groups(w), nb = (size_t)(w->ic / QK);
    switch (w->type) {
    case HERD_Q4_0: case HERD_Q8_0:
        return w->ic % QK ? 0 : g * nb * (zp_qblock(w->type) + ZP_ROWS * sizeof(uint16_t));
    case HERD_F16: case HERD_BF16:
        return g * (size_t)w->ic * ZP_ROWS * sizeof(uint16_t);
    default:
        return 0;
    }
}

/* Plain copies, group by group (threads split the groups): run once per weight. */
void zp_pack(void *dst, const herd_weight *w) {
    herd_weight p = *w;
    p.packed = dst;
    const int64_t G = zp_groups(w), nb = w->ic / QK;
    const size_t rb = w->type == HERD_Q8_0 ? (size_t)nb * sizeof(block_q8_0)
                    : w->type == HERD_Q4_0 ? (size_t)nb * sizeof(block_q4_0) : (size_t)w->ic * 2;
    const uint8_t *src = w->data;
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < G; g++) {
        for (int j = 0; j < ZP_ROWS; j++) {
            const int64_t row = g * ZP_ROWS + j;
            const uint8_t *r = row < w->oc ? src + (size_t)row * rb : NULL;
            if (w->type == HERD_F16 || w->type == HERD_BF16) {
                for (int64_t k = 0; k < w->ic; k++) {
                    uint16_t v = 0;
                    if (r) memcpy(&v, r + 2 * k, 2);
                    memcpy((uint16_t *)zp_f(&p, g, k) + j, &v, 2);
                }
                continue;
            }
            const size_t bb = w->type == HERD_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
            const int nk = w->type == HERD_Q8_0 ? 8 : 4;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *blk = r ? r + (size_t)b * bb : NULL;
                uint8_t *q = (uint8_t *)zp_q(&p, g, b);
                uint16_t d = 0;
                if (blk) memcpy(&d, blk, 2);
                memcpy((uint16_t *)zp_d(&p, g, b) + j, &d, 2);
                for (int k = 0; k < nk; k++) {
                    uint8_t v[4] = { 0, 0, 0, 0 };
                    if (blk) memcpy(v, blk + 2 + 4 * k, 4);
                    if (w->type == HERD_Q8_0)
                        for (int i = 0; i < 4; i++) v[i] ^= 0x80;
                    memcpy(q + (k * ZP_ROWS + j) * 4, v, 4);
                }
            }
        }
    }
}

static __mmask16 row_mask(int64_t n) { return n >= 16 ? 0xffff : n <= 0 ? 0 : (__mmask16)((1u << n) - 1); }

/* Groups g .. g + NG of a Q4_0 / Q8_0 weight. x: gemm_z_prep's T = 1 layout (dword
 * k of block b at q[(b 8 + k) GEMM_QT], scale and correction at [b GEMM_QT]). */
INLINE void q_t1(float *out, const mm_act *a, const herd_weight *w, int64_t g, int64_t r1, const int NG,
                 const int q8) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const int32_t *xq = (const int32_t *)a->q;
    __m512 acc[4];
    UNROLL
    for (int i = 0; i < NG; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t b = 0; b < a->nb; b++) {
        __m512i xb[8];
        UNROLL
        for (int k = 0; k < 8; k++) xb[k] = _mm512_set1_epi32(xq[(b * 8 + k) * GEMM_QT]);
        const __m512i corr = _mm512_set1_epi32(a->corr[b * GEMM_QT]);
        const __m512 dx = _mm512_set1_ps(a->d[b * GEMM_QT]);
        UNROLL
        for (int i = 0; i < NG; i++) {
            const uint8_t *q = zp_q(w, g + i, b);
            __m512i lo = corr, hi = _mm512_setzero_si512();
            if (q8) {
                UNROLL
                for (int k = 0; k < 8; k += 2) {
                    lo = _mm512_dpbusd_epi32(lo, _mm512_load_si512(q + k * 64), xb[k]);
                    hi = _mm512_dpbusd_epi32(hi, _mm512_load_si512(q + (k + 1) * 64), xb[k + 1]);
                }
            } else {
                UNROLL
                for (int k = 0; k < 4; k++) {
                    const __m512i v = _mm512_load_si512(q + k * 64);
                    lo = _mm512_dpbusd_epi32(lo, _mm512_and_si512(v, m4), xb[k]);
                    hi = _mm512_dpbusd_epi32(hi, _mm512_and_si512(_mm512_srli_epi16(v, 4), m4), xb[k + 4]);
                }
            }
            const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)zp_d(w, g + i, b)));
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(lo, hi)), _mm512_mul_ps(dw, dx), acc[i]);
        }
    }
    UNROLL
    for (int i = 0; i < NG; i++) {
        const int64_t row = (g + i) * ZP_ROWS;
        _mm512_mask_storeu_ps(out + row, row_mask(r1 - row), acc[i]);
    }
}

/* Groups g .. g + NG of an F16 / BF16 weight; x is a->xp (T = 1: x itself). */
INLINE void f_t1(float *out, const mm_act *a, const herd_weight *w, int64_t g, int64_t r1, const int NG,
                 const int bf16) {
    const float *x = a->xp;
    __m512 acc[4];
    UNROLL
    for (int i = 0; i < NG; i++) acc[i] = _mm512_setzero_ps();
    for (int64_t k = 0; k < w->ic; k++) {
        const __m512 xb = _mm512_set1_ps(x[k * GEMM_FT]);
        UNROLL
        for (int i = 0; i < NG; i++) {
            const __m256i h = _mm256_load_si256((const __m256i *)zp_f(w, g + i, k));
            const __m512 wv = bf16 ? _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16))
                                   : _mm512_cvtph_ps(h);
            acc[i] = _mm512_fmadd_ps(wv, xb, acc[i]);
        }
    }
    UNROLL
    for (int i = 0; i < NG; i++) {
        const int64_t row = (g + i) * ZP_ROWS;
        _mm512_mask_storeu_ps(out + row, row_mask(r1 - row), acc[i]);
    }
}

#define T1_ARGS float *out, const mm_act *a, const herd_weight *w, int64_t g, int64_t r1
static void q4_4(T1_ARGS) { q_t1(out, a, w, g, r1, 4, 0); }
static void q4_1(T1_ARGS) { q_t1(out, a, w, g, r1, 1, 0); }
static void q8_4(T1_ARGS) { q_t1(out, a, w, g, r1, 4, 1); }
static void q8_1(T1_ARGS) { q_t1(out, a, w, g, r1, 1, 1); }
static void h_4(T1_ARGS) { f_t1(out, a, w, g, r1, 4, 0); }
static void h_1(T1_ARGS) { f_t1(out, a, w, g, r1, 1, 0); }
static void b_4(T1_ARGS) { f_t1(out, a, w, g, r1, 4, 1); }
static void b_1(T1_ARGS) { f_t1(out, a, w, g, r1, 1, 1); }

void zp_rows_t1(float *out, const mm_act *a, const herd_weight *w, int64_t r0, int64_t r1) {
    void (*k4)(T1_ARGS), (*k1)(T1_ARGS);
    switch (w->type) {
    case HERD_Q4_0: k4 = q4_4, k1 = q4_1; break;
    case HERD_Q8_0: k4 = q8_4, k1 = q8_1; break;
    case HERD_F16: k4 = h_4, k1 = h_1; break;
    default: k4 = b_4, k1 = b_1; break;
    }
    const int64_t g1 = (r1 + ZP_ROWS - 1) / ZP_ROWS;
    int64_t g = r0 / ZP_ROWS;
    for (; g + 4 <= g1; g += 4) k4(out, a, w, g, r1);
    for (; g < g1; g++) k1(out, a, w, g, r1);
}
