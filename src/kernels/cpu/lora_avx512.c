/* lora_avx512.c - lora_forward's two inner loops on AVX-512 (dispatch.c picks them
 * over ops_isa's AVX2 / scalar ones when the CPU has AVX-512): twice the lanes of
 * the AVX2 versions, the same structure. Compiled with AVX-512 flags; only called
 * after dispatch.c checked the CPU.
 *
 * z_lora_dots: t[j] = a_j . x for the r rows a_j of n, four rows sharing each load
 * of x. Each row's sum: two 16-lane accumulators over 32 inputs a step, one more
 * 16 into the first, the rest (< 16) masked into the second, then the first plus
 * the second reduced; a row alone (r % 4) is summed the same way, so t[j] does not
 * depend on the blocking.
 * z_lora_axpys: y (n) += sum_j t[j] bt_j, 128 outputs in eight registers across
 * all j, each output's terms added in j order (the tail: 16 at a time, masked).
 */
#include <immintrin.h>

#include "kernels/cpu/cpu.h"

static inline __attribute__((always_inline)) __m512 tail_load(const float *p, int k) {
    return _mm512_maskz_loadu_ps((__mmask16)((1u << k) - 1), p);
}

static float dot1(const float *a, const float *x, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(x + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(x + i + 16), s1);
    }
    if (i + 16 <= n) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(x + i), s0), i += 16;
    if (i < n) s1 = _mm512_fmadd_ps(tail_load(a + i, n - i), tail_load(x + i, n - i), s1);
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

void z_lora_dots(float *t, const float *a, const float *x, int r, int n) {
    int j = 0;
    for (; j + 4 <= r; j += 4) {
        const float *a0 = a + (size_t)j * n, *a1 = a0 + n, *a2 = a1 + n, *a3 = a2 + n;
        __m512 s00 = _mm512_setzero_ps(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
        int i = 0;
        for (; i + 32 <= n; i += 32) {
            const __m512 x0 = _mm512_loadu_ps(x + i), x1 = _mm512_loadu_ps(x + i + 16);
            s00 = _mm512_fmadd_ps(_mm512_loadu_ps(a0 + i), x0, s00);
            s01 = _mm512_fmadd_ps(_mm512_loadu_ps(a0 + i + 16), x1, s01);
            s10 = _mm512_fmadd_ps(_mm512_loadu_ps(a1 + i), x0, s10);
            s11 = _mm512_fmadd_ps(_mm512_loadu_ps(a1 + i + 16), x1, s11);
            s20 = _mm512_fmadd_ps(_mm512_loadu_ps(a2 + i), x0, s20);
            s21 = _mm512_fmadd_ps(_mm512_loadu_ps(a2 + i + 16), x1, s21);
            s30 = _mm512_fmadd_ps(_mm512_loadu_ps(a3 + i), x0, s30);
            s31 = _mm512_fmadd_ps(_mm512_loadu_ps(a3 + i + 16), x1, s31);
        }
        if (i + 16 <= n) {
            const __m512 x0 = _mm512_loadu_ps(x + i);
            s00 = _mm512_fmadd_ps(_mm512_loadu_ps(a0 + i), x0, s00);
            s10 = _mm512_fmadd_ps(_mm512_loadu_ps(a1 + i), x0, s10);
            s20 = _mm512_fmadd_ps(_mm512_loadu_ps(a2 + i), x0, s20);
            s30 = _mm512_fmadd_ps(_mm512_loadu_ps(a3 + i), x0, s30);
            i += 16;
        }
        if (i < n) {
            const int k = n - i;
            const __m512 x1 = tail_load(x + i, k);
            s01 = _mm512_fmadd_ps(tail_load(a0 + i, k), x1, s01);
            s11 = _mm512_fmadd_ps(tail_load(a1 + i, k), x1, s11);
            s21 = _mm512_fmadd_ps(tail_load(a2 + i, k), x1, s21);
            s31 = _mm512_fmadd_ps(tail_load(a3 + i, k), x1, s31);
        }
        t[j] = _mm512_reduce_add_ps(_mm512_add_ps(s00, s01));
        t[j + 1] = _mm512_reduce_add_ps(_mm512_add_ps(s10, s11));
        t[j + 2] = _mm512_reduce_add_ps(_mm512_add_ps(s20, s21));
        t[j + 3] = _mm512_reduce_add_ps(_mm512_add_ps(s30, s31));
    }
    for (; j < r; j++) t[j] = dot1(a + (size_t)j * n, x, n);
}

void z_lora_axpys(float *y, const float *t, const float *bt, int r, int n, int64_t ld) {
    int i = 0;
    for (; i + 128 <= n; i += 128) {
        float *yi = y + i;
        __m512 y0 = _mm512_loadu_ps(yi), y1 = _mm512_loadu_ps(yi + 16), y2 = _mm512_loadu_ps(yi + 32),
               y3 = _mm512_loadu_ps(yi + 48), y4 = _mm512_loadu_ps(yi + 64), y5 = _mm512_loadu_ps(yi + 80),
               y6 = _mm512_loadu_ps(yi + 96), y7 = _mm512_loadu_ps(yi + 112);
        for (int j = 0; j < r; j++) {
            const __m512 tj = _mm512_set1_ps(t[j]);
            const float *b = bt + j * ld + i;
            y0 = _mm512_fmadd_ps(tj, _mm512_loadu_ps(b), y0);
            y1 = _mm512_fmadd_ps(tj, _mm512_loadu_ps(b + 16), y1);
            y2 = _mm512_fmadd_ps(tj, _mm512_loadu_ps(b + 32), y2);
            y3 = _mm512_fmadd_ps(tj, _mm512_loadu_ps(b + 48), y3);
            y4 = _mm512_fmadd_ps(tj, _mm512_loadu_ps(b + 64), y4);
            y5 = _mm512_fmadd_ps(tj, _mm512_loadu_ps(b + 80), y5);
            y6 = _mm512_fmadd_ps(tj, _mm512_loadu_ps(b + 96), y6);
            y7 = _mm512_fmadd_ps(tj, _mm512_loadu_ps(b + 112), y7);
        }
        _mm512_storeu_ps(yi, y0), _mm512_storeu_ps(yi + 16, y1), _mm512_storeu_ps(yi + 32, y2);
        _mm512_storeu_ps(yi + 48, y3), _mm512_storeu_ps(yi + 64, y4), _mm512_storeu_ps(yi + 80, y5);
        _mm512_storeu_ps(yi + 96, y6), _mm512_storeu_ps(yi + 112, y7);
    }
    for (; i < n; i += 16) {
        const int k = n - i < 16 ? n - i : 16;
        const __mmask16 m = (__mmask16)((1u << k) - 1);
        __m512 y0 = _mm512_maskz_loadu_ps(m, y + i);
        for (int j = 0; j < r; j++) y0 = _mm512_fmadd_ps(_mm512_set1_ps(t[j]), _mm512_maskz_loadu_ps(m, bt + j * ld + i), y0);
        _mm512_mask_storeu_ps(y + i, m, y0);
    }
}
