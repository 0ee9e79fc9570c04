/* attn_avx512.c - the AVX-512 page kernel of attn.h (compiled with AVX-512 flags,
 * chosen at run time by attn_paged.c). One call: nr <= 4 query heads that share a
 * kv head, one page of nk <= 64 keys.
 *   scores: the K tile is transposed (HS, 64), so for each head element d one
 *     row of 64 keys is 4 vectors; every query head does 4 FMAs with them:
 *     s (nr, 64) stays in 16 registers, each tile row is loaded once for all
 *     nr heads (GQA reuse). F16 rows widen exactly (vcvtph2ps); Q8_0 rows are
 *     q * d as the reference dequantizes them.
 *   softmax: masked keys are -inf, p = exp(s - m') by a vector exp (~2 ulp;
 *     exactly 0 below -87.3), the running max / sum / rescale of attn.h.
 *   values: acc (nr, 64-element chunk) in registers, one FMA per value vector
 *     and head.
 * Every lane's arithmetic is a fixed sequence, so a row's result never depends
 * on the other rows (batch invariance). Needs HS % 16 == 0 (Q8_0: % 32).
 */
#include <immintrin.h>
#include <math.h>

#include "kernels/cpu/attn.h"

#define INL static inline __attribute__((always_inline))
enum { TY_F32, TY_F16, TY_Q8 };

/* e^x per lane: x = n ln2 + f, e^f by a degree-6 polynomial, times 2^n
 * (vscalefps); lanes below -87.3, -inf and NaN give exactly 0. */
INL __m512 exp16(__m512 x) {
    const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_GE_OQ);
    x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x); /* ln2 in two parts */
    f = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), f);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(f, f), _mm512_add_ps(f, _mm512_set1_ps(1.0f)));
    return _mm512_maskz_scalef_ps(live, p, n);
}

INL __m512 q8_16(const int8_t *q) { /* 16 int8 -> f32 */
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)q)));
}

/* s (NR, 64) = q (NR, HS) . K tile (HS, 64); the next K tile fetched meanwhile. */
INL void scores(__m512 s[4][4], const float *q, const uint8_t *kt, const attn_next *nx, int HS, const int NR,
                const int TY) {
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
        #pragma GCC unroll 4
        for (int z = 0; z < 4; z++) s[r][z] = _mm512_setzero_ps();
    __m512 dk[4] = { 0 };
    const size_t kl = nx ? nx->bytes / 64 : 0, kper = (kl + (size_t)HS - 1) / (size_t)HS;
    for (int d = 0; d < HS; d++) {
        if (nx) attn_prefetch_lines(nx->k, kl, (size_t)d, kper);
        __m512 k[4];
        #pragma GCC unroll 4
        for (int z = 0; z < 4; z++) {
            if (TY == TY_F32) {
                k[z] = _mm512_loadu_ps((const float *)kt + (size_t)d * ATTN_PAGE + 16 * z);
            } else if (TY == TY_F16) {
                k[z] = _mm512_cvtph_ps(_mm256_loadu_si256(
                    (const __m256i *)((const uint16_t *)kt + (size_t)d * ATTN_PAGE + 16 * z)));
            } else {
                if (d % 32 == 0) {
                    const uint16_t *ds = (const uint16_t *)(kt + (size_t)HS * ATTN_PAGE);
                    dk[z] = _mm512_cvtph_ps(_mm256_loadu_si256(
                        (const __m256i *)(ds + (size_t)(d / 32) * ATTN_PAGE + 16 * z)));
                }
                k[z] = _mm512_mul_ps(q8_16((const int8_t *)kt + (size_t)d * ATTN_PAGE + 16 * z), dk[z]);
            }
        }
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const __m512 qd = _mm512_set1_ps(q[(size_t)r * HS + d]);
            #pragma GCC unroll 4
            for (int z = 0; z < 4; z++) s[r][z] = _mm512_fmadd_ps(qd, k[z], s[r][z]);
        }
    }
}

/* acc (NR, HS)[c0 .. c0 + 16 NZ) = acc * corr + sum_k p (NR, k) value_k; the
 * next V tile fetched meanwhile (nx: the first column chunk's call). */
INL void values(float *acc, const float (*p)[ATTN_PAGE], const float *corr, const uint8_t *vt,
                const attn_next *nx, int nk, int HS, int c0, const int NR, const int NZ, const int TY) {
    __m512 a[4][4];
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
        #pragma GCC unroll 4
        for (int z = 0; z < NZ; z++)
            a[r][z] = _mm512_mul_ps(_mm512_loadu_ps(acc + (size_t)r * HS + c0 + 16 * z), _mm512_set1_ps(corr[r]));
    const size_t vl = nx ? nx->bytes / 64 : 0, vper = (vl + ATTN_PAGE - 1) / ATTN_PAGE;
    for (int k = 0; k < nk; k++) {
        if (nx) attn_prefetch_lines(nx->v, vl, (size_t)k, vper);
        __m512 v[4];
        #pragma GCC unroll 4
        for (int z = 0; z < NZ; z++) {
            if (TY == TY_F32) {
                v[z] = _mm512_loadu_ps((const float *)vt + (size_t)k * HS + c0 + 16 * z);
            } else if (TY == TY_F16) {
                v[z] = _mm512_cvtph_ps(_mm256_loadu_si256(
                    (const __m256i *)((const uint16_t *)vt + (size_t)k * HS + c0 + 16 * z)));
            } else {
                const block_q8_0 *b = (const block_q8_0 *)vt + (size_t)k * (HS / 32) + c0 / 32 + z / 2;
                v[z] = _mm512_mul_ps(q8_16(b->qs + 16 * (z % 2)), _mm512_set1_ps(_cvtsh_ss(b->d)));
            }
        }
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const __m512 pk = _mm512_set1_ps(p[r][k]);
            #pragma GCC unroll 4
            for (int z = 0; z < NZ; z++) a[r][z] = _mm512_fmadd_ps(pk, v[z], a[r][z]);
        }
    }
    if (nx)
        for (int k = nk; k < ATTN_PAGE; k++) attn_prefetch_lines(nx->v, vl, (size_t)k, vper);
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
        #pragma GCC unroll 4
        for (int z = 0; z < NZ; z++) _mm512_storeu_ps(acc + (size_t)r * HS + c0 + 16 * z, a[r][z]);
}

INL void page_body(float *acc, float *m, float *l, const float *q, const uint8_t *kt, const uint8_t *vt,
                   const attn_next *nx, int nk, int HS, float scale, const int NR, const int TY) {
    __m512 s[4][4];
    scores(s, q, kt, nx, HS, NR, TY);
    __mmask16 live[4];
    #pragma GCC unroll 4
    for (int z = 0; z < 4; z++) {
        const int n = nk - 16 * z;
        live[z] = n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
    }
    float p[4][ATTN_PAGE] __attribute__((aligned(64)));
    float corr[4];
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        #pragma GCC unroll 4
        for (int z = 0; z < 4; z++)
            s[r][z] = _mm512_mask_mul_ps(_mm512_set1_ps(-INFINITY), live[z], s[r][z], _mm512_set1_ps(scale));
        const float mx = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(s[r][0], s[r][1]),
                                                            _mm512_max_ps(s[r][2], s[r][3])));
        const float mnew = m[r] > mx ? m[r] : mx;
        corr[r] = expf(m[r] - mnew); /* 0 on the first page (m = -inf) */
        const __m512 mv = _mm512_set1_ps(mnew);
        __m512 sum = _mm512_setzero_ps();
        #pragma GCC unroll 4
        for (int z = 0; z < 4; z++) {
            const __m512 e = exp16(_mm512_sub_ps(s[r][z], mv));
            _mm512_store_ps(p[r] + 16 * z, e);
            sum = _mm512_add_ps(sum, e);
        }
        l[r] = l[r] * corr[r] + _mm512_reduce_add_ps(sum);
        m[r] = mnew;
    }
    const int wide = TY == TY_Q8 ? 2 : 1; /* tail granularity in vectors: Q8_0 blocks are 2 */
    int c0 = 0;
    for (; c0 + 64 <= HS; c0 += 64) values(acc, p, corr, vt, c0 ? NULL : nx, nk, HS, c0, NR, 4, TY);
    for (; c0 < HS; c0 += 16 * wide) values(acc, p, corr, vt, c0 ? NULL : nx, nk, HS, c0, NR, wide, TY);
}

#define PAGE_FN(name, TY)                                                                         \
    static void name(float *acc, float *m, float *l, const float *q, const uint8_t *kt,         \
                     const uint8_t *vt, const attn_next *nx, int nr, int nk, int HS, float scale) { \
        switch (nr) {                                                                           \
        case 1: page_body(acc, m, l, q, kt, vt, nx, nk, HS, scale, 1, TY); break;               \
        case 2: page_body(acc, m, l, q, kt, vt, nx, nk, HS, scale, 2, TY); break;               \
        case 3: page_body(acc, m, l, q, kt, vt, nx, nk, HS, scale, 3, TY); break;               \
        default: page_body(acc, m, l, q, kt, vt, nx, nk, HS, scale, 4, TY); break;              \
        }                                                                                       \
    }
PAGE_FN(z_page_f32, TY_F32)
PAGE_FN(z_page_f16, TY_F16)
PAGE_FN(z_page_q8_0, TY_Q8)

static int z_supports(int type, int HS) {
    return ((type == HERD_F32 || type == HERD_F16) && HS % 16 == 0) || (type == HERD_Q8_0 && HS % 32 == 0);
}

/* attn.h's widen: the values scores() / values() would make, stored. */
static void z_widen(float *kw, float *vw, const uint8_t *kt, const uint8_t *vt, int type, int HS) {
    const int n = HS * ATTN_PAGE;
    if (type == HERD_F16) {
        for (int i = 0; i < n; i += 16) {
            _mm512_storeu_ps(kw + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)kt + i))));
            _mm512_storeu_ps(vw + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)vt + i))));
        }
        return;
    }
    const uint16_t *ds = (const uint16_t *)(kt + (size_t)HS * ATTN_PAGE);
    for (int d = 0; d < HS; d++)
        for (int z = 0; z < 4; z++) {
            const __m512 dk = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(ds + (size_t)(d / 32) * ATTN_PAGE + 16 * z)));
            _mm512_storeu_ps(kw + (size_t)d * ATTN_PAGE + 16 * z,
                             _mm512_mul_ps(q8_16((const int8_t *)kt + (size_t)d * ATTN_PAGE + 16 * z), dk));
        }
    const block_q8_0 *b = (const block_q8_0 *)vt;
    for (int i = 0; i < n / 32; i++)
        for (int h = 0; h < 2; h++)
            _mm512_storeu_ps(vw + 32 * i + 16 * h, _mm512_mul_ps(q8_16(b[i].qs + 16 * h), _mm512_set1_ps(_cvtsh_ss(b[i].d))));
}

const attn_isa attn_isa_avx512 = { "avx512", z_supports, { z_page_f32, z_page_f16, z_page_q8_0 }, z_widen };
