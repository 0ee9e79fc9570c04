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
 * acc = fma(float(int), d_w * d_x, acc) in block order; F32 / F16 take
 * acc = fma(w_k, x_k, acc) in k order, as the GEMM does; BF16 one vdpbf16ps per
 * input pair, which is the GEMM's FMA pair order (cpu.h).
 *
 * A quad's four groups (64 rows) run side by side, so the fma and vpdpbusd
 * chains overlap and x's broadcasts serve four groups, and the quad's data is
 * one linear stream (quants and scales interleaved per block) that the hardware
 * prefetcher follows; matmul_forward splits packed decode rows by quads.
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd_avx512.h"

#define INLINE static inline __attribute__((always_inline))
#define UNROLL _Pragma("GCC unroll 16")

size_t zp_bytes(const herd_weight *w) {
    const size_t quads = (size_t)((w->oc + ZP_QUAD - 1) / ZP_QUAD), nb = (size_t)(w->ic / QK);
    switch (w->type) {
    case HERD_Q4_0: case HERD_Q8_0:
        return w->ic % QK ? 0 : quads * nb * zp_unit(w->type);
    case HERD_F16:
        return quads * (size_t)w->ic * ZP_QUAD * sizeof(uint16_t);
    case HERD_BF16:
        return quads * (size_t)zp_npairs(w) * ZP_QUAD * sizeof(uint32_t);
    case HERD_F32:
        return quads * (size_t)w->ic * ZP_QUAD * sizeof(float);
    default:
        return 0;
    }
}

/* Pair q of one BF16 row r (NULL: a missing row, zero) into lane j of group g. */
static void pack_bf16_pair(const herd_weight *p, const uint8_t *r, int64_t g, int j, int64_t q) {
    uint16_t v[2] = { 0, 0 };
    for (int h = 0; h < 2; h++)
        if (r && 2 * q + h < p->ic) {
            memcpy(&v[h], r + 2 * (2 * q + h), 2);
            v[h] = z_bf16_flush(v[h]);
        }
    const uint32_t d = v[0] | (uint32_t)v[1] << 16;
    memcpy((uint32_t *)zp_pair(p, g, q) + j, &d, 4);
}

/* Quad qd, all 64 rows present: in-register transposes of 16 rows at a time,
 * the quad's four groups together so that each cache line of dst is written
 * whole, once. */
static void pack_quad_full(const herd_weight *p, const uint8_t *src, size_t rb, int64_t qd) {
    const uint8_t *rows = src + (size_t)qd * ZP_QUAD * rb;
    if (p->type == HERD_F32) {
        int64_t k = 0;
        for (; k + 8 <= p->ic; k += 8) /* dword c = element k + c of each row */
            for (int i = 0; i < 4; i++) {
                __m512i col[8];
                tr16x8(col, rows + (size_t)i * ZP_ROWS * rb + 4 * k, rb);
                for (int c = 0; c < 8; c++) _mm512_store_si512((void *)zp_f(p, qd * 4 + i, k + c), col[c]);
            }
        for (; k < p->ic; k++)
            for (int j = 0; j < ZP_QUAD; j++)
                memcpy((float *)zp_f(p, qd * 4 + j / ZP_ROWS, k) + j % ZP_ROWS, rows + (size_t)j * rb + 4 * k, 4);
        return;
    }
    if (p->type == HERD_BF16) {
        int64_t k = 0;
        for (; k + 16 <= p->ic; k += 16) /* dword c = elements k + 2c, k + 2c + 1: pair k / 2 + c */
            for (int i = 0; i < 4; i++) {
                __m512i col[8];
                tr16x8(col, rows + (size_t)i * ZP_ROWS * rb + 2 * k, rb);
                for (int c = 0; c < 8; c++) _mm512_store_si512((void *)zp_pair(p, qd * 4 + i, k / 2 + c), bf16_flush_pairs(col[c]));
            }
        for (; k < p->ic; k += 2)
            for (int j = 0; j < ZP_QUAD; j++) pack_bf16_pair(p, rows + (size_t)j * rb, qd * 4 + j / ZP_ROWS, j % ZP_ROWS, k / 2);
        return;
    }
    if (p->type == HERD_F16) {
        int64_t k = 0;
        for (; k + 16 <= p->ic; k += 16) /* dword c = elements 2c, 2c + 1 of each row */
            for (int i = 0; i < 4; i++) {
                __m512i col[8];
                tr16x8(col, rows + (size_t)i * ZP_ROWS * rb + 2 * k, rb);
                for (int c = 0; c < 8; c++) {
                    _mm256_store_si256((__m256i *)zp_f(p, qd * 4 + i, k + 2 * c), _mm512_cvtepi32_epi16(col[c]));
                    _mm256_store_si256((__m256i *)zp_f(p, qd * 4 + i, k + 2 * c + 1),
                                       _mm512_cvtepi32_epi16(_mm512_srli_epi32(col[c], 16)));
                }
            }
        for (; k < p->ic; k++)
            for (int j = 0; j < ZP_QUAD; j++)
                memcpy((uint16_t *)zp_f(p, qd * 4 + j / ZP_ROWS, k) + j % ZP_ROWS, rows + (size_t)j * rb + 2 * k, 2);
        return;
    }
    const int q8 = p->type == HERD_Q8_0;
    const size_t bb = q8 ? sizeof(block_q8_0) : sizeof(block_q4_0);
    for (int64_t b = 0; b < p->ic / QK; b++)
        for (int i = 0; i < 4; i++) {
            const int64_t g = qd * 4 + i;
            const uint8_t *blk = rows + (size_t)i * ZP_ROWS * rb + (size_t)b * bb;
            uint8_t *q = (uint8_t *)zp_q(p, g, b);
            uint16_t *d = (uint16_t *)zp_d(p, g, b);
            for (int j = 0; j < ZP_ROWS; j++) memcpy(d + j, blk + (size_t)j * rb, 2);
            __m512i col[8];
            if (q8) {
                tr16x8(col, blk + 2, rb);
                for (int c = 0; c < 8; c++) _mm512_store_si512(q + c * 64, _mm512_xor_si512(col[c], _mm512_set1_epi8((char)0x80)));
            } else {
                tr16x4(col, blk + 2, rb);
                for (int c = 0; c < 4; c++) _mm512_store_si512(q + c * 64, col[c]);
            }
        }
}

/* Group g with rows past OC: element by element, missing rows zero. */
static void pack_group_part(const herd_weight *p, const uint8_t *src, size_t rb, int64_t g) {
    for (int j = 0; j < ZP_ROWS; j++) {
        const int64_t row = g * ZP_ROWS + j;
        const uint8_t *r = row < p->oc ? src + (size_t)row * rb : NULL;
        if (p->type == HERD_BF16) {
            for (int64_t q = 0; q < zp_npairs(p); q++) pack_bf16_pair(p, r, g, j, q);
            continue;
        }
        if (p->type == HERD_F32 || p->type == HERD_F16) {
            const size_t es = p->type == HERD_F32 ? 4 : 2;
            for (int64_t k = 0; k < p->ic; k++) {
                uint8_t v[4] = { 0, 0, 0, 0 };
                if (r) memcpy(v, r + es * k, es);
                memcpy((uint8_t *)zp_f(p, g, k) + j * es, v, es);
            }
            continue;
        }
        const size_t bb = p->type == HERD_Q8_0 ? sizeof(block_q8_0) : sizeof(block_q4_0);
        const int nk = p->type == HERD_Q8_0 ? 8 : 4;
        for (int64_t b = 0; b < p->ic / QK; b++) {
            const uint8_t *blk = r ? r + (size_t)b * bb : NULL;
            uint8_t *q = (uint8_t *)zp_q(p, g, b);
            uint16_t d = 0;
            if (blk) memcpy(&d, blk, 2);
            memcpy((uint16_t *)zp_d(p, g, b) + j, &d, 2);
            for (int k = 0; k < nk; k++) {
                uint8_t v[4] = { 0, 0, 0, 0 };
                if (blk) memcpy(v, blk + 2 + 4 * k, 4);
                if (p->type == HERD_Q8_0)
                    for (int i = 0; i < 4; i++) v[i] ^= 0x80;
                memcpy(q + (k * ZP_ROWS + j) * 4, v, 4);
            }
        }
    }
}

/* Quads [quad0, quad1) of w into dst, run once per weight. Threads take quads as
 * they finish: a quad's first touch of fresh pages costs a page fault whose time
 * varies, and with a static split one thread waited for the other (1B F16 load,
 * interleaved pairs: median ~3.7 s static, ~3.1 s dynamic, faster in 5 of 6). */
void zp_pack(void *dst, const herd_weight *w, int64_t quad0, int64_t quad1) {
    herd_weight p = *w;
    p.packed = dst;
    const size_t rb = kern_row_bytes(w->type, w->ic);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t qd = quad0; qd < quad1; qd++) {
        if ((qd + 1) * ZP_QUAD <= w->oc) pack_quad_full(&p, w->data, rb, qd);
        else
            for (int64_t g = qd * 4; g < qd * 4 + 4; g++) pack_group_part(&p, w->data, rb, g);
    }
}


/* Group i's 16 weights at p (one input k of a quad) as f32; kind 0 F16, 2 F32. */
INLINE __m512 wvec(const uint8_t *p, int i, const int kind) {
    if (kind == 2) return _mm512_load_ps((const float *)p + i * ZP_ROWS);
    return _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)((const uint16_t *)p + i * ZP_ROWS)));
}

/* vpdpbusd with x's dword broadcast from memory ({1to16}): the compiler would
 * otherwise load the broadcasts a group shares into registers once, and with 8
 * tokens in flight spill them. */
INLINE __m512i dpbusd_bcast(__m512i acc, __m512i w, const int32_t *x) {
    __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(w), "m"(*x));
    return acc;
}

/* One quad (4 groups) of a Q4_0 / Q8_0 weight against TT (1..8) tokens
 * t0 ..: the groups' weights are loaded (and Q4_0's nibbles split) once for all
 * TT; each token's integer dot is one chain (TT chains overlap), two for TT = 1
 * (decode: Q4_0's high nibbles, Q8_0's odd dwords; integer sums are exact in any
 * order).
 * x: gemm_z_prep's tiles. */
INLINE void q_tn(float *out, const mm_act *a, const herd_weight *w, int64_t quad, int64_t r0, int64_t r1,
                 int t0, const int TT, const int q8) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const size_t qb = q8 ? 512 : 256;
    const int32_t *xq[8];
    const float *xd[8];
    const int32_t *xc[8];
    UNROLL
    for (int t = 0; t < TT; t++) { /* token t0 + t: tile (t0 + t) / QT, slot (t0 + t) % QT */
        const int tt = t0 + t;
        const int64_t tb = (int64_t)(tt / GEMM_QT) * a->nb, j = tt % GEMM_QT;
        xq[t] = (const int32_t *)a->q + tb * 8 * GEMM_QT + j;
        xd[t] = a->d + tb * GEMM_QT + j;
        xc[t] = a->corr + tb * GEMM_QT + j;
    }
    __m512 acc[4][8];
    UNROLL
    for (int i = 0; i < 4; i++) {
        UNROLL
        for (int t = 0; t < TT; t++) acc[i][t] = _mm512_setzero_ps();
    }
    const uint8_t *p = zp_block(w, quad, 0);
    const int pf = TT > 1 && t0 == 0; /* later tiles find the quad in L2 */
    for (int64_t b = 0; b < a->nb; b++, p += 4 * qb + 128) {
        if (pf)
            for (int l = 0; l < (int)(4 * qb + 128) / 64; l++)
                _mm_prefetch((const char *)p + ZP_PREFETCH + l * 64, _MM_HINT_T0);
        UNROLL
        for (int i = 0; i < 4; i++) {
            const uint8_t *q = p + i * qb;
            __m512i s[8], s2 = _mm512_setzero_si512(); /* s2: TT = 1's second chain */
            UNROLL
            for (int t = 0; t < TT; t++) s[t] = _mm512_set1_epi32(xc[t][b * GEMM_QT]);
            UNROLL
            for (int k = 0; k < 8; k++) {
                if (!q8 && k == 4) break; /* Q4_0: 4 loads, each two halves */
                const __m512i v = _mm512_load_si512(q + k * 64);
                const __m512i lo = q8 ? v : _mm512_and_si512(v, m4);
                if (TT == 1 && q8 && k % 2) {
                    s2 = _mm512_dpbusd_epi32(s2, lo, _mm512_set1_epi32(xq[0][(b * 8 + k) * GEMM_QT]));
                } else {
                    UNROLL
                    for (int t = 0; t < TT; t++)
                        s[t] = TT > 4 ? dpbusd_bcast(s[t], lo, &xq[t][(b * 8 + k) * GEMM_QT])
                                      : _mm512_dpbusd_epi32(s[t], lo, _mm512_set1_epi32(xq[t][(b * 8 + k) * GEMM_QT]));
                }
                if (!q8) {
                    const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
                    if (TT == 1) {
                        s2 = _mm512_dpbusd_epi32(s2, hi, _mm512_set1_epi32(xq[0][(b * 8 + k + 4) * GEMM_QT]));
                    } else {
                        UNROLL
                        for (int t = 0; t < TT; t++)
                            s[t] = TT > 4 ? dpbusd_bcast(s[t], hi, &xq[t][(b * 8 + k + 4) * GEMM_QT])
                                          : _mm512_dpbusd_epi32(s[t], hi, _mm512_set1_epi32(xq[t][(b * 8 + k + 4) * GEMM_QT]));
                    }
                }
            }
            if (TT == 1) s[0] = _mm512_add_epi32(s[0], s2);
            const __m512 dw = _mm512_cvtph_ps(_mm256_load_si256((const __m256i *)(p + 4 * qb + 32 * i)));
            UNROLL
            for (int t = 0; t < TT; t++)
                acc[i][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s[t]), _mm512_mul_ps(dw, _mm512_set1_ps(xd[t][b * GEMM_QT])),
                                            acc[i][t]);
        }
    }
    store_quad(out, w->oc, quad * ZP_QUAD, r0, r1, t0, TT, acc[0], 8, 4);
}

/* One quad of an F32 / F16 weight against TT (1..FT_MAX) tokens (x rows
 * contiguous), inputs k0 .. k1 - 1: per input k, the 4 groups' weights widened
 * once, then TT x 4 FMAs. The sums start at 0 (k0 = 0) or from out, where the
 * previous inputs' call left them (the same FMAs in the same order: each output
 * sums w_k x_k in k order whatever TT and the k blocks). */
#define FT_MAX 6
/* A float kernel's sums for TT tokens: 0, or (cont) what out holds of them */
INLINE void acc_start(__m512 acc[4][FT_MAX], const float *out, const herd_weight *w, int64_t quad, int64_t r0,
                      int64_t r1, int t0, int cont, const int TT) {
    UNROLL
    for (int i = 0; i < 4; i++) {
        const __mmask16 m = zrow_mask(quad * ZP_QUAD + 16 * i, r0, r1);
        UNROLL
        for (int t = 0; t < TT; t++)
            acc[i][t] = cont ? _mm512_maskz_loadu_ps(m, out + (int64_t)(t0 + t) * w->oc + quad * ZP_QUAD + 16 * i)
                             : _mm512_setzero_ps();
    }
}

INLINE void f_tn(float *out, const mm_act *a, const herd_weight *w, int64_t quad, int64_t r0, int64_t r1,
                 int t0, int64_t k0, int64_t k1, const int TT, const int kind) {
    const float *x = a->f32 + (int64_t)t0 * w->ic;
    __m512 acc[4][FT_MAX];
    acc_start(acc, out, w, quad, r0, r1, t0, k0 > 0, TT);
    const uint8_t *p = zp_f(w, quad * 4, k0);
    const int pf = TT > 1 && t0 == 0; /* ZP_PREFETCH */
    for (int64_t k = k0; k < k1; k++, p += ZP_QUAD * (kind == 2 ? 4 : 2)) {
        if (pf)
            for (int l = 0; l < (kind == 2 ? 4 : 2); l++) _mm_prefetch((const char *)p + ZP_PREFETCH + l * 64, _MM_HINT_T0);
        UNROLL
        for (int i = 0; i < 4; i++) {
            const __m512 wv = wvec(p, i, kind);
            UNROLL
            for (int t = 0; t < TT; t++) acc[i][t] = _mm512_fmadd_ps(wv, _mm512_set1_ps(x[t * w->ic + k]), acc[i][t]);
        }
    }
    store_quad(out, w->oc, quad * ZP_QUAD, r0, r1, t0, TT, acc[0], FT_MAX, 4);
}

/* f_tn for a BF16 weight: input pairs q0 .. q1 - 1 against x rounded to bf16
 * (a->xb), each pair one vdpbf16ps (dot = 1) or its two FMAs (dot = 0: the
 * same bits, cpu.h). Half the instructions of f32 FMAs for the same work. */
INLINE void bf_tn(float *out, const mm_act *a, const herd_weight *w, int64_t quad, int64_t r0, int64_t r1,
                  int t0, int64_t q0, int64_t q1, const int TT, const int dot) {
    const int64_t np = zp_npairs(w);
    const uint32_t *x = a->xb + (int64_t)t0 * np;
    __m512 acc[4][FT_MAX];
    acc_start(acc, out, w, quad, r0, r1, t0, q0 > 0, TT);
    const uint32_t *p = zp_pair(w, quad * 4, q0);
    const int pf = TT > 1 && t0 == 0; /* ZP_PREFETCH */
    const __m512i hi = _mm512_set1_epi32((int)0xFFFF0000u);
    for (int64_t q = q0; q < q1; q++, p += ZP_QUAD) {
        if (pf)
            for (int l = 0; l < 4; l++) _mm_prefetch((const char *)p + ZP_PREFETCH + l * 64, _MM_HINT_T0);
        if (dot) { /* x's pairs broadcast once into registers for the 4 groups: 4 + TT
                    * loads a pair, not 4 + 4 TT as {1to16} operands (1B shapes, T 128,
                    * 2 threads: 575-647 -> 745-773 GFLOP/s) */
            __m512i xv[FT_MAX];
            UNROLL
            for (int t = 0; t < TT; t++) xv[t] = _mm512_set1_epi32((int)x[t * np + q]);
            UNROLL
            for (int i = 0; i < 4; i++) {
                const __m512i wv = _mm512_load_si512(p + i * ZP_ROWS);
                UNROLL
                for (int t = 0; t < TT; t++) acc[i][t] = _mm512_dpbf16_ps(acc[i][t], (__m512bh)wv, (__m512bh)xv[t]);
            }
            continue;
        }
        UNROLL
        for (int i = 0; i < 4; i++) {
            const __m512i wv = _mm512_load_si512(p + i * ZP_ROWS);
            const __m512 wh = _mm512_castsi512_ps(_mm512_and_si512(wv, hi));
            const __m512 wl = _mm512_castsi512_ps(_mm512_slli_epi32(wv, 16));
            UNROLL
            for (int t = 0; t < TT; t++) {
                const uint32_t xv = x[t * np + q], xhv = xv & 0xFFFF0000u, xlv = xv << 16;
                float xh, xl;
                memcpy(&xh, &xhv, 4);
                memcpy(&xl, &xlv, 4);
                acc[i][t] = _mm512_fmadd_ps(wh, _mm512_set1_ps(xh), acc[i][t]);
                acc[i][t] = _mm512_fmadd_ps(wl, _mm512_set1_ps(xl), acc[i][t]);
            }
        }
    }
    store_quad(out, w->oc, quad * ZP_QUAD, r0, r1, t0, TT, acc[0], FT_MAX, 4);
}

#define TN_ARGS float *out, const mm_act *a, const herd_weight *w, int64_t quad, int64_t r0, int64_t r1, int t0
#define TN(name, n) \
    static void name##n(TN_ARGS) { q_tn(out, a, w, quad, r0, r1, t0, n, FLAG); }
#define TN_SET8(name) TN(name, 1) TN(name, 2) TN(name, 3) TN(name, 4) TN(name, 5) TN(name, 6) TN(name, 7) TN(name, 8)
/* float kernels: inputs k0 .. k1 - 1 (f_tn) */
#define FN_ARGS TN_ARGS, int64_t k0, int64_t k1
#define FN(name, n) \
    static void name##n(FN_ARGS) { f_tn(out, a, w, quad, r0, r1, t0, k0, k1, n, FLAG); }
#define FN_SET6(name) FN(name, 1) FN(name, 2) FN(name, 3) FN(name, 4) FN(name, 5) FN(name, 6)
#define BN(name, n) \
    static void name##n(FN_ARGS) { bf_tn(out, a, w, quad, r0, r1, t0, k0, k1, n, FLAG); }
#define BN_SET6(name) BN(name, 1) BN(name, 2) BN(name, 3) BN(name, 4) BN(name, 5) BN(name, 6)
#define FLAG 0
TN_SET8(q4n)
#undef FLAG
#define FLAG 0
FN_SET6(h16n)
#undef FLAG
#define FLAG 1
TN_SET8(q8n)
#undef FLAG
#define FLAG 1
BN_SET6(b16d)
#undef FLAG
#define FLAG 0
BN_SET6(b16f)
#undef FLAG
#define FLAG 2
FN_SET6(f32n)
#undef FLAG

/* Per quad, tokens in tiles of 8 (Q4_0 / Q8_0) or FT_MAX (float types) and a
 * shorter tail; after the first tile the quad's data comes from L2. Q4_0 / Q8_0
 * take 8 tokens at a time, all four groups in one pass: the nibble split and
 * the loads serve 8 tokens (bench_batch, 1B Q4_0, 2 threads, 8 sequences 29.8-31.8
 * -> 27.4-27.6 ms a step, 16: 57 -> 47.5, as two passes of two groups), and the
 * quad streams from memory under 8 tokens' work, not 4 (two passes: perf put 44%
 * of an 8-sequence step in the first pass, which streamed the quad, and 23% in the
 * second, from L2). Of the 32 accumulators some live on the stack (L1). One pass
 * against two, interleaved processes, ms a step: Q4_0 8 sequences 28.4-33.3 ->
 * 26.2-29.5 (5 pairs, a slow hour), 26.4-27.6 -> 25.2-27.0 (4 pairs, a faster
 * one); Q8_0 8: 33.4-34.3 -> 28.2-29.0; Q4_0 16: 49.1-51.6 -> 47.9-48.9.
 * Float types run the tiles over blocks of FK_BLOCK inputs: a quad of a wider
 * weight (1B's down: 8192 inputs, 1 MiB in F16) would not stay in L2 from one
 * tile to the next. */
#define FK_BLOCK 2048
/* A Q4_0 / Q8_0 tail of 1 .. 7 tokens is one tile of its own width: the quad
 * streams once, and the kernel does no work for absent tokens. It was a 4-token
 * tile and the rest for 1 .. 5, an 8-token tile with the missing tokens repeating
 * the first for 6 and 7; the exact widths, bench_batch 1B Q4_0, 2 threads,
 * interleaved, ms a step (3 rounds): 5 sequences 21.6 / 24.7 / 26.5 -> 19.8 /
 * 20.9 / 21.3, 6: 21.9 / 21.9 / 23.3 -> 19.3 / 20.0 / 20.1, 7: 23.6 / 23.7 / 25.3
 * -> 22.5 / 23.5 / 23.3, 13: 41.6 / 43.2 / 43.5 -> 39.6 / 41.0 / 40.6. */
void zp_rows_small(float *out, const mm_act *a, const herd_weight *w, int T, int64_t r0, int64_t r1) {
    typedef void (*tn_fn)(TN_ARGS);
    typedef void (*fn_fn)(FN_ARGS);
    static const tn_fn qtab[2][8] = { { q4n1, q4n2, q4n3, q4n4, q4n5, q4n6, q4n7, q4n8 },
                                      { q8n1, q8n2, q8n3, q8n4, q8n5, q8n6, q8n7, q8n8 } };
    static const fn_fn ftab[4][FT_MAX] = { { h16n1, h16n2, h16n3, h16n4, h16n5, h16n6 },
                                           { b16f1, b16f2, b16f3, b16f4, b16f5, b16f6 },
                                           { f32n1, f32n2, f32n3, f32n4, f32n5, f32n6 },
                                           { b16d1, b16d2, b16d3, b16d4, b16d5, b16d6 } };
    const int ti = w->type == HERD_Q4_0 ? 0 : w->type == HERD_Q8_0 ? 1 : w->type == HERD_F16 ? 2
                 : w->type == HERD_BF16 ? 3 : 4;
    const int bdot = w->type == HERD_BF16 && z_bf16dot();
    for (int64_t quad = r0 / ZP_QUAD; quad * ZP_QUAD < r1; quad++) {
        if (ti >= 2) { /* BF16: k counts input pairs */
            const fn_fn *f = ftab[ti == 3 && bdot ? 3 : ti - 2];
            const int64_t kn = ti == 3 ? zp_npairs(w) : w->ic;
            const int64_t kb = T > FT_MAX ? (ti == 3 ? FK_BLOCK / 2 : FK_BLOCK) : kn; /* one tile: nothing to keep in L2 */
            for (int64_t k0 = 0; k0 < kn; k0 += kb) {
                const int64_t k1 = k0 + kb < kn ? k0 + kb : kn;
                int t = 0;
                for (; t + FT_MAX <= T; t += FT_MAX) f[FT_MAX - 1](out, a, w, quad, r0, r1, t, k0, k1);
                if (t < T) f[T - t - 1](out, a, w, quad, r0, r1, t, k0, k1);
            }
            continue;
        }
        int t = 0;
        for (; t + 8 <= T; t += 8) qtab[ti][7](out, a, w, quad, r0, r1, t);
        if (t < T) qtab[ti][T - t - 1](out, a, w, quad, r0, r1, t);
    }
}
