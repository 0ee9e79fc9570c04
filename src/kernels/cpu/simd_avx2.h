/* simd_avx2.h - small AVX2 + FMA helpers shared by the *_avx2.c kernels (include
 * only from files compiled with -mavx2 -mfma; see the Makefile). Header-only and
 * static inline, so each kernel file keeps its own copy and dispatch stays per file.
 * Not part of kernels.h.
 */
#ifndef HERD_KERNELS_CPU_SIMD_AVX2_H
#define HERD_KERNELS_CPU_SIMD_AVX2_H

#include <immintrin.h>

/* e^x per lane, ~2 ulp: x = n ln2 + f (Cephes-style range reduction, ln2 in two
 * parts), e^f by a degree-6 polynomial, 2^n built in the exponent field.
 * Edges, the same as attn_avx512.c's exp16: below -87.3 (where e^x leaves the
 * normal floats), -inf and NaN give exactly 0; above 88.7 (and +inf) clamp to
 * e^88.7 ~ 3.3e38, finite. Callers: silu in ops_avx2.c (e^-g over any g: the
 * finite top keeps g / (1 + e^-g) a number) and the softmax of attn_avx2.c
 * (s - max <= 0, masked keys -inf, which must weigh 0). */
static inline __attribute__((always_inline)) __m256 exp8(__m256 x) {
    const __m256 live = _mm256_cmp_ps(x, _mm256_set1_ps(-87.3f), _CMP_GE_OQ);
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.7f)), _mm256_set1_ps(-87.3f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 f = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    f = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), f);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(f, f), _mm256_add_ps(f, _mm256_set1_ps(1.0f)));
    /* 2^n for n in [-126, 128] as two factors 2^h 2^(n-h), h = n >> 1, so n = 128
     * does not overflow the exponent field */
    const __m256i ni = _mm256_cvtps_epi32(n);
    const __m256i h = _mm256_srai_epi32(ni, 1);
    const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h, _mm256_set1_epi32(127)), 23));
    const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_sub_epi32(ni, h), _mm256_set1_epi32(127)), 23));
    return _mm256_and_ps(_mm256_mul_ps(_mm256_mul_ps(p, s1), s2), live);
}

/* The sum of the 8 lanes (pairwise: lanes i + 4, then i + 2, then i + 1). */
static inline __attribute__((always_inline)) float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#endif
