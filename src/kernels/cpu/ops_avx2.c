/* ops_avx2.c - AVX2 + FMA row ops: rmsnorm of one token, swiglu of n values, the
 * dot and axpy of attention. Compiled with AVX2 flags, chosen by dispatch.c.
 * Also the f16 KV cache's dot / axpy / store (F16C).
 * silu uses a vector expf (Cephes-style range reduction + degree-6 polynomial,
 * ~2 ulp), tested against libm's through swiglu_forward_ref.
 */
#include <immintrin.h>
#include <math.h>

#include "core/core.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd_avx2.h"

static void a2_rmsnorm_row(float *out, const float *x, const float *w, int C, float eps) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= C; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        acc = _mm256_fmadd_ps(v, v, acc);
    }
    float ss = hsum8(acc);
    for (; i < C; i++) ss += x[i] * x[i];
    const float r = 1.0f / sqrtf(ss / (float)C + eps);
    const __m256 rv = _mm256_set1_ps(r);
    for (i = 0; i + 8 <= C; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), rv), _mm256_loadu_ps(w + i)));
    for (; i < C; i++) out[i] = (x[i] * r) * w[i];
}

static void a2_swiglu_row(float *out, const float *gate, const float *up, int n) {
    int i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 g = _mm256_loadu_ps(gate + i);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), g));
        const __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) out[i] = silu_scalar(gate[i]) * up[i];
}

static float a2_dot(const float *a, const float *b, int n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    float s = hsum8(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static void a2_axpy(float *y, float a, const float *x, int n) {
    const __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

/* f16 cache rows: vcvtph2ps widens exactly; the tails use the same scalar
 * conversions as the reference. */
static float a2_dot_f16(const float *a, const uint16_t *b, int n) {
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i + 8))), acc1);
    }
    for (; i + 8 <= n; i += 8)
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(b + i))), acc0);
    float s = hsum8(_mm256_add_ps(acc0, acc1));
    for (; i < n; i++) s += a[i] * herd_f16_to_f32(b[i]);
    return s;
}

static void a2_axpy_f16(float *y, float a, const uint16_t *x, int n) {
    const __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))),
                                                _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * herd_f16_to_f32(x[i]);
}

static void a2_to_f16(uint16_t *out, const float *x, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(out + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) out[i] = herd_f32_to_f16(x[i]);
}

/* Four rows of a at a time share each load of x (LoRA's A x: r dots of one x);
 * each row's sum takes a2_dot's lanes, order and tail, so t[j] is a2_dot's
 * whatever the blocking. */
static void a2_dots(float *t, const float *a, const float *x, int r, int n) {
    int j = 0;
    for (; j + 4 <= r; j += 4) {
        const float *a0 = a + (size_t)j * n, *a1 = a0 + n, *a2 = a1 + n, *a3 = a2 + n;
        __m256 s00 = _mm256_setzero_ps(), s01 = s00, s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
        int i = 0;
        for (; i + 16 <= n; i += 16) {
            const __m256 x0 = _mm256_loadu_ps(x + i), x1 = _mm256_loadu_ps(x + i + 8);
            s00 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + i), x0, s00);
            s01 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + i + 8), x1, s01);
            s10 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + i), x0, s10);
            s11 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + i + 8), x1, s11);
            s20 = _mm256_fmadd_ps(_mm256_loadu_ps(a2 + i), x0, s20);
            s21 = _mm256_fmadd_ps(_mm256_loadu_ps(a2 + i + 8), x1, s21);
            s30 = _mm256_fmadd_ps(_mm256_loadu_ps(a3 + i), x0, s30);
            s31 = _mm256_fmadd_ps(_mm256_loadu_ps(a3 + i + 8), x1, s31);
        }
        for (; i + 8 <= n; i += 8) {
            const __m256 x0 = _mm256_loadu_ps(x + i);
            s00 = _mm256_fmadd_ps(_mm256_loadu_ps(a0 + i), x0, s00);
            s10 = _mm256_fmadd_ps(_mm256_loadu_ps(a1 + i), x0, s10);
            s20 = _mm256_fmadd_ps(_mm256_loadu_ps(a2 + i), x0, s20);
            s30 = _mm256_fmadd_ps(_mm256_loadu_ps(a3 + i), x0, s30);
        }
        float v[4] = { hsum8(_mm256_add_ps(s00, s01)), hsum8(_mm256_add_ps(s10, s11)),
                       hsum8(_mm256_add_ps(s20, s21)), hsum8(_mm256_add_ps(s30, s31)) };
        const float *rows[4] = { a0, a1, a2, a3 };
        for (int q = 0; q < 4; q++) {
            for (int k = i; k < n; k++) v[q] += rows[q][k] * x[k];
            t[j + q] = v[q];
        }
    }
    for (; j < r; j++) t[j] = a2_dot(a + (size_t)j * n, x, n);
}

/* y += sum_j t[j] bt_j: 64 outputs in registers across all j (eight chains of
 * fused multiply-adds, one load of bt each), each output's terms added in j
 * order. */
static void a2_axpys(float *y, const float *t, const float *bt, int r, int n, int64_t ld) {
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        float *yi = y + i;
        __m256 y0 = _mm256_loadu_ps(yi), y1 = _mm256_loadu_ps(yi + 8), y2 = _mm256_loadu_ps(yi + 16),
               y3 = _mm256_loadu_ps(yi + 24), y4 = _mm256_loadu_ps(yi + 32), y5 = _mm256_loadu_ps(yi + 40),
               y6 = _mm256_loadu_ps(yi + 48), y7 = _mm256_loadu_ps(yi + 56);
        for (int j = 0; j < r; j++) {
            const __m256 tj = _mm256_set1_ps(t[j]);
            const float *b = bt + j * ld + i;
            y0 = _mm256_fmadd_ps(tj, _mm256_loadu_ps(b), y0);
            y1 = _mm256_fmadd_ps(tj, _mm256_loadu_ps(b + 8), y1);
            y2 = _mm256_fmadd_ps(tj, _mm256_loadu_ps(b + 16), y2);
            y3 = _mm256_fmadd_ps(tj, _mm256_loadu_ps(b + 24), y3);
            y4 = _mm256_fmadd_ps(tj, _mm256_loadu_ps(b + 32), y4);
            y5 = _mm256_fmadd_ps(tj, _mm256_loadu_ps(b + 40), y5);
            y6 = _mm256_fmadd_ps(tj, _mm256_loadu_ps(b + 48), y6);
            y7 = _mm256_fmadd_ps(tj, _mm256_loadu_ps(b + 56), y7);
        }
        _mm256_storeu_ps(yi, y0), _mm256_storeu_ps(yi + 8, y1), _mm256_storeu_ps(yi + 16, y2);
        _mm256_storeu_ps(yi + 24, y3), _mm256_storeu_ps(yi + 32, y4), _mm256_storeu_ps(yi + 40, y5);
        _mm256_storeu_ps(yi + 48, y6), _mm256_storeu_ps(yi + 56, y7);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 y0 = _mm256_loadu_ps(y + i);
        for (int j = 0; j < r; j++) y0 = _mm256_fmadd_ps(_mm256_set1_ps(t[j]), _mm256_loadu_ps(bt + j * ld + i), y0);
        _mm256_storeu_ps(y + i, y0);
    }
    for (; i < n; i++) {
        float v = y[i];
        for (int j = 0; j < r; j++) v = fmaf(t[j], bt[j * ld + i], v);
        y[i] = v;
    }
}

const ops_isa ops_isa_avx2 = { a2_rmsnorm_row, a2_swiglu_row, a2_dot, a2_axpy,
                               a2_dot_f16, a2_axpy_f16, a2_to_f16, a2_dots, a2_axpys };
