/* attn_avx2.c - the AVX2 + FMA + F16C page kernel of attn.h (compiled with AVX2
 * flags, chosen at run time by attn_paged.c on CPUs without AVX-512). One call:
 * nr <= 4 query heads sharing a kv head, one page of nk <= 64 keys.
 * With 16 vector registers the work goes in strips of 16 lanes:
 *   scores: 16 keys at a time; for each head element d, 2 vectors of the
 *     transposed K tile row serve all nr heads (GQA reuse): 2 nr accumulators;
 *   softmax: per head over its 64 scores (masked keys -inf, vector exp ~2 ulp,
 *     exactly 0 below -87.3), the running max / sum / rescale of attn.h;
 *   values: 16 head elements at a time, 2 nr accumulators, one FMA per value
 *     vector and head.
 * Each lane's arithmetic is a fixed sequence, so a row never depends on the
 * other rows (batch invariance). Needs HS % 16 == 0 (Q8_0: % 32).
 */
#include <immintrin.h>
#include <math.h>

#include "kernels/cpu/attn.h"
#include "kernels/cpu/simd_avx2.h"

#define INL static inline __attribute__((always_inline))
enum { TY_F32, TY_F16, TY_Q8 };

INL __m256 q8_8(const int8_t *q) { /* 8 int8 -> f32 */
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)q)));
}

INL float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* s (NR, 64)[k0 .. k0+16) = q (NR, HS) . keys k0 .. k0+15 of the K tile (HS, 64);
 * part k0 / 16 of 4 of the next K tile fetched meanwhile, kper of its kl lines a
 * step of d. */
INL void scores16(float (*s)[ATTN_PAGE], const float *q, const uint8_t *kt, const attn_next *nx, size_t kl,
                  size_t kper, int HS, int k0, const int NR, const int TY) {
    __m256 a[4][2], dk[2] = { _mm256_setzero_ps(), _mm256_setzero_ps() };
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++) a[r][0] = a[r][1] = _mm256_setzero_ps();
    #pragma GCC unroll 2
    for (int d = 0; d < HS; d++) {
        if (nx) attn_prefetch_lines(nx->k, kl, (size_t)((k0 / 16) * HS + d), kper);
        __m256 k[2];
        #pragma GCC unroll 4
        for (int z = 0; z < 2; z++) {
            const size_t o = (size_t)d * ATTN_PAGE + k0 + 8 * z;
            if (TY == TY_F32) {
                k[z] = _mm256_loadu_ps((const float *)kt + o);
            } else if (TY == TY_F16) {
                k[z] = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)kt + o)));
            } else {
                if (d % 32 == 0) {
                    const uint16_t *ds = (const uint16_t *)(kt + (size_t)HS * ATTN_PAGE);
                    dk[z] = _mm256_cvtph_ps(_mm_loadu_si128(
                        (const __m128i *)(ds + (size_t)(d / 32) * ATTN_PAGE + k0 + 8 * z)));
                }
                k[z] = _mm256_mul_ps(q8_8((const int8_t *)kt + o), dk[z]);
            }
        }
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const __m256 qd = _mm256_broadcast_ss(q + (size_t)r * HS + d);
            a[r][0] = _mm256_fmadd_ps(qd, k[0], a[r][0]);
            a[r][1] = _mm256_fmadd_ps(qd, k[1], a[r][1]);
        }
    }
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        _mm256_store_ps(s[r] + k0, a[r][0]);
        _mm256_store_ps(s[r] + k0 + 8, a[r][1]);
    }
}

/* acc (NR, HS)[c0 .. c0+16) = acc * corr + sum_k p (NR, k) value_k; part c0 / 16
 * of HS / 16 of the next V tile fetched meanwhile. */
INL void values16(float *acc, const float (*p)[ATTN_PAGE], const float *corr, const uint8_t *vt,
                  const attn_next *nx, int nk, int HS, int c0, const int NR, const int TY) {
    __m256 a[4][2];
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
        #pragma GCC unroll 4
        for (int z = 0; z < 2; z++)
            a[r][z] = _mm256_mul_ps(_mm256_loadu_ps(acc + (size_t)r * HS + c0 + 8 * z), _mm256_set1_ps(corr[r]));
    const int part = c0 / 16, parts = HS / 16;
    const size_t vl = nx ? nx->bytes / 64 : 0, vper = (vl + (size_t)parts * ATTN_PAGE - 1) / ((size_t)parts * ATTN_PAGE);
    #pragma GCC unroll 2
    for (int k = 0; k < nk; k++) {
        if (nx) attn_prefetch_lines(nx->v, vl, (size_t)(part * ATTN_PAGE + k), vper);
        __m256 v[2];
        if (TY == TY_Q8) {
            const block_q8_0 *b = (const block_q8_0 *)vt + (size_t)k * (HS / 32) + c0 / 32;
            const __m256 d = _mm256_set1_ps(_cvtsh_ss(b->d));
            v[0] = _mm256_mul_ps(q8_8(b->qs + c0 % 32), d);
            v[1] = _mm256_mul_ps(q8_8(b->qs + c0 % 32 + 8), d);
        } else {
            #pragma GCC unroll 4
            for (int z = 0; z < 2; z++) {
                const size_t o = (size_t)k * HS + c0 + 8 * z;
                v[z] = TY == TY_F32 ? _mm256_loadu_ps((const float *)vt + o)
                                    : _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)vt + o)));
            }
        }
        #pragma GCC unroll 4
        for (int r = 0; r < NR; r++) {
            const __m256 pk = _mm256_broadcast_ss(&p[r][k]);
            a[r][0] = _mm256_fmadd_ps(pk, v[0], a[r][0]);
            a[r][1] = _mm256_fmadd_ps(pk, v[1], a[r][1]);
        }
    }
    if (nx)
        for (int k = nk; k < ATTN_PAGE; k++) attn_prefetch_lines(nx->v, vl, (size_t)(part * ATTN_PAGE + k), vper);
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
        #pragma GCC unroll 4
        for (int z = 0; z < 2; z++) _mm256_storeu_ps(acc + (size_t)r * HS + c0 + 8 * z, a[r][z]);
}

INL void page_body(float *acc, float *m, float *l, const float *q, const uint8_t *kt, const uint8_t *vt,
                   const attn_next *nx, int nk, int HS, float scale, const int NR, const int TY) {
    float s[4][ATTN_PAGE] __attribute__((aligned(32)));
    const int n16 = (nk + 15) / 16; /* key strips holding live keys */
    /* the next K tile's lines over the 4 HS steps of d of the 4 strips */
    const size_t kl = nx ? nx->bytes / 64 : 0, kper = (kl + 4 * (size_t)HS - 1) / (4 * (size_t)HS);
    for (int k0 = 0; k0 < 16 * n16; k0 += 16) scores16(s, q, kt, nx, kl, kper, HS, k0, NR, TY);
    if (nx) /* the K lines of the strips left out */
        for (int i = n16 * HS; i < 4 * HS; i++) attn_prefetch_lines(nx->k, kl, (size_t)i, kper);
    float corr[4];
    #pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (int k0 = 0; k0 < 8 * ((nk + 7) / 8); k0 += 8) {
            const __m256 lane = _mm256_add_ps(_mm256_set1_ps((float)k0), _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7));
            const __m256 live = _mm256_cmp_ps(lane, _mm256_set1_ps((float)nk), _CMP_LT_OQ);
            const __m256 x = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY),
                                              _mm256_mul_ps(_mm256_load_ps(s[r] + k0), _mm256_set1_ps(scale)), live);
            _mm256_store_ps(s[r] + k0, x);
            mx = _mm256_max_ps(mx, x);
        }
        const float mxs = hmax8(mx), mnew = m[r] > mxs ? m[r] : mxs;
        corr[r] = expf(m[r] - mnew); /* 0 on the first page (m = -inf) */
        const __m256 mv = _mm256_set1_ps(mnew);
        __m256 sum = _mm256_setzero_ps();
        for (int k0 = 0; k0 < 8 * ((nk + 7) / 8); k0 += 8) {
            const __m256 e = exp8(_mm256_sub_ps(_mm256_load_ps(s[r] + k0), mv));
            _mm256_store_ps(s[r] + k0, e);
            sum = _mm256_add_ps(sum, e);
        }
        l[r] = l[r] * corr[r] + hsum8(sum);
        m[r] = mnew;
    }
    for (int c0 = 0; c0 < HS; c0 += 16) values16(acc, (const float(*)[ATTN_PAGE])s, corr, vt, nx, nk, HS, c0, NR, TY);
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
PAGE_FN(a2_page_f32, TY_F32)
PAGE_FN(a2_page_f16, TY_F16)
PAGE_FN(a2_page_q8_0, TY_Q8)

static int a2_supports(int type, int HS) {
    return ((type == HERD_F32 || type == HERD_F16) && HS % 16 == 0) || (type == HERD_Q8_0 && HS % 32 == 0);
}

const attn_isa attn_isa_avx2 = { "avx2", a2_supports, { a2_page_f32, a2_page_f16, a2_page_q8_0 }, NULL };
