/* simd_avx512.h - small AVX-512 helpers shared by the AVX-512 kernel files
 * (included only by files compiled with AVX-512 flags). */
#ifndef HERD_SIMD_AVX512_H
#define HERD_SIMD_AVX512_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* 32 bf16 with each denormal flushed to its signed zero, as vdpbf16ps reads
 * them (cpu.h: z_bf16_flush). */
static inline __m512i bf16_flush_pairs(__m512i v) {
    const __mmask32 normal = _mm512_test_epi16_mask(v, _mm512_set1_epi16(0x7f80));
    return _mm512_mask_blend_epi16(normal, _mm512_and_si512(v, _mm512_set1_epi16((short)0x8000)), v);
}

/* col[c] lane j = dword c (0..7) of the 32 bytes at p + j * rb, j 0..15: two
 * 8 x 8 dword transposes side by side (rows 0-7 in the low 256 bits, 8-15 in the
 * high). Measured ~2x faster than 8 vpgatherdd on this Zen 5. */
static inline __attribute__((always_inline)) void tr16x8(__m512i col[8], const uint8_t *p, size_t rb) {
    __m512i z[8], t[8], u[8];
    _Pragma("GCC unroll 8")
    for (int j = 0; j < 8; j++)
        z[j] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(p + j * rb))),
                                  _mm256_loadu_si256((const __m256i *)(p + (j + 8) * rb)), 1);
    _Pragma("GCC unroll 8")
    for (int j = 0; j < 4; j++) {
        t[2 * j] = _mm512_unpacklo_epi32(z[2 * j], z[2 * j + 1]);
        t[2 * j + 1] = _mm512_unpackhi_epi32(z[2 * j], z[2 * j + 1]);
    }
    _Pragma("GCC unroll 8")
    for (int h = 0; h < 2; h++) { /* rows 0-3 (h 0) and 4-7 (h 1) of each half */
        u[4 * h + 0] = _mm512_unpacklo_epi64(t[4 * h], t[4 * h + 2]);
        u[4 * h + 1] = _mm512_unpackhi_epi64(t[4 * h], t[4 * h + 2]);
        u[4 * h + 2] = _mm512_unpacklo_epi64(t[4 * h + 1], t[4 * h + 3]);
        u[4 * h + 3] = _mm512_unpackhi_epi64(t[4 * h + 1], t[4 * h + 3]);
    }
    /* u[c] (c 0..3) holds dword c in 128-bit lanes 0 / 2 and dword c + 4 in lanes 1 / 3 */
    const __m512i lo = _mm512_setr_epi64(0, 1, 8, 9, 4, 5, 12, 13), hi = _mm512_setr_epi64(2, 3, 10, 11, 6, 7, 14, 15);
    _Pragma("GCC unroll 8")
    for (int c = 0; c < 4; c++) {
        col[c] = _mm512_permutex2var_epi64(u[c], lo, u[c + 4]);
        col[c + 4] = _mm512_permutex2var_epi64(u[c], hi, u[c + 4]);
    }
}

/* col[c] lane j = dword c (0..3) of the 16 bytes at p + j * rb, j 0..15: a
 * 16 x 4 dword transpose (rows j, j + 4, j + 8, j + 12 in the four 128-bit lanes). */
static inline __attribute__((always_inline)) void tr16x4(__m512i col[4], const uint8_t *p, size_t rb) {
    __m512i z[4];
    _Pragma("GCC unroll 4")
    for (int j = 0; j < 4; j++) {
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p + j * rb)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + (j + 4) * rb)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + (j + 8) * rb)), 2);
        z[j] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + (j + 12) * rb)), 3);
    }
    const __m512i t0 = _mm512_unpacklo_epi32(z[0], z[1]), t1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i t2 = _mm512_unpacklo_epi32(z[2], z[3]), t3 = _mm512_unpackhi_epi32(z[2], z[3]);
    col[0] = _mm512_unpacklo_epi64(t0, t2);
    col[1] = _mm512_unpackhi_epi64(t0, t2);
    col[2] = _mm512_unpacklo_epi64(t1, t3);
    col[3] = _mm512_unpackhi_epi64(t1, t3);
}

/* Lanes of the 16 rows [row, row + 16) that fall in [r0, r1). */
static inline __mmask16 zrow_mask(int64_t row, int64_t r0, int64_t r1) {
    uint32_t m = 0xffff;
    if (r1 - row < 16) m = r1 <= row ? 0 : m & ((1u << (r1 - row)) - 1);
    if (r0 > row) m = r0 - row >= 16 ? 0 : m & ~((1u << (r0 - row)) - 1);
    return (__mmask16)m;
}

/* A quad's results (or NG < 4 of its groups): acc[i * ld + t] holds rows
 * row0 + 16 i .. + 15 of token t0 + t, i < NG, t < TT (ld: the accumulator
 * array's row length); rows outside [r0, r1) are not written. */
static inline __attribute__((always_inline)) void store_quad(float *out, int64_t oc, int64_t row0, int64_t r0,
                                                             int64_t r1, int t0, const int TT, const __m512 *acc,
                                                             const int ld, const int NG) {
    _Pragma("GCC unroll 4")
    for (int i = 0; i < NG; i++) {
        const __mmask16 m = zrow_mask(row0 + 16 * i, r0, r1);
        _Pragma("GCC unroll 8")
        for (int t = 0; t < TT; t++) _mm512_mask_storeu_ps(out + (int64_t)(t0 + t) * oc + row0 + 16 * i, m, acc[i * ld + t]);
    }
}

#endif
