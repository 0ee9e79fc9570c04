/* matmul_train_avx2.c - AVX2 + FMA versions of the training matmuls (float32),
 * chosen at run time by train_ops.c when the CPU has them, and tested against
 * matmul_train_forward_ref / matmul_backward_ref (test_train_ops.c).
 *
 *   forward  out (N, OC) = x (N, IC) . w (OC, IC)^T   register tile: 4 rows x 3 dots
 *   backward dx (N, IC) = dout (N, OC) . w (OC, IC)   register tile: 4 rows x 16 cols
 *            dw (OC, IC) += dout^T . x (N, IC)        register tile: 16 o x 4 i, N chunked
 * Each output element is summed by one thread in a fixed order (over IC in 8 lanes
 * then a fixed horizontal sum; over OC or N serially), so results do not depend on
 * the thread count. Tails (sizes not a multiple of a tile) take plain loops.
 * Not here: packing / cache blocking beyond the tile order (the training shapes are
 * small enough that the strips stay in L2), AVX-512 (not on the machines it was
 * measured on; a separate file would be chosen the same way).
 */
#include <immintrin.h>

#include "train/train.h"

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

static float dot(const float *a, const float *b, int n) {
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
    float s = hsum(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* out[r * ldo + j] = x_r . w_j for 4 rows x (IC) and 3 weight rows. */
static void tile_4x3(float *out, int ldo, const float *x, const float *w, int IC) {
    const float *x0 = x, *x1 = x0 + IC, *x2 = x1 + IC, *x3 = x2 + IC;
    const float *w0 = w, *w1 = w0 + IC, *w2 = w1 + IC;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c02 = c00, c10 = c00, c11 = c00, c12 = c00,
           c20 = c00, c21 = c00, c22 = c00, c30 = c00, c31 = c00, c32 = c00;
    int i = 0;
    for (; i + 8 <= IC; i += 8) {
        const __m256 a0 = _mm256_loadu_ps(w0 + i), a1 = _mm256_loadu_ps(w1 + i),
                     a2 = _mm256_loadu_ps(w2 + i);
        __m256 b = _mm256_loadu_ps(x0 + i);
        c00 = _mm256_fmadd_ps(b, a0, c00); c01 = _mm256_fmadd_ps(b, a1, c01); c02 = _mm256_fmadd_ps(b, a2, c02);
        b = _mm256_loadu_ps(x1 + i);
        c10 = _mm256_fmadd_ps(b, a0, c10); c11 = _mm256_fmadd_ps(b, a1, c11); c12 = _mm256_fmadd_ps(b, a2, c12);
        b = _mm256_loadu_ps(x2 + i);
        c20 = _mm256_fmadd_ps(b, a0, c20); c21 = _mm256_fmadd_ps(b, a1, c21); c22 = _mm256_fmadd_ps(b, a2, c22);
        b = _mm256_loadu_ps(x3 + i);
        c30 = _mm256_fmadd_ps(b, a0, c30); c31 = _mm256_fmadd_ps(b, a1, c31); c32 = _mm256_fmadd_ps(b, a2, c32);
    }
    float s[4][3] = {
        { hsum(c00), hsum(c01), hsum(c02) }, { hsum(c10), hsum(c11), hsum(c12) },
        { hsum(c20), hsum(c21), hsum(c22) }, { hsum(c30), hsum(c31), hsum(c32) },
    };
    for (; i < IC; i++)
        for (int r = 0; r < 4; r++)
            for (int j = 0; j < 3; j++) s[r][j] += x[(size_t)r * IC + i] * w[(size_t)j * IC + i];
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < 3; j++) out[(size_t)r * ldo + j] = s[r][j];
}

enum { FW_OB = 48, FW_NB = 64 }; /* weight rows (multiple of 3) x input rows per task */

void matmul_train_forward_avx2(float *out, const float *x, const float *w, int N, int IC, int OC) {
    const int n_ob = (OC + FW_OB - 1) / FW_OB, n_nb = (N + FW_NB - 1) / FW_NB;
#pragma omp parallel for collapse(2) schedule(static)
    for (int ob = 0; ob < n_ob; ob++)
        for (int nb = 0; nb < n_nb; nb++) {
            const int o0 = ob * FW_OB, o1 = o0 + FW_OB < OC ? o0 + FW_OB : OC;
            const int n0 = nb * FW_NB, n1 = n0 + FW_NB < N ? n0 + FW_NB : N;
            int n = n0;
            for (; n + 4 <= n1; n += 4) {
                int o = o0;
                for (; o + 3 <= o1; o += 3)
                    tile_4x3(out + (size_t)n * OC + o, OC, x + (size_t)n * IC, w + (size_t)o * IC, IC);
                for (; o < o1; o++)
                    for (int r = n; r < n + 4; r++)
                        out[(size_t)r * OC + o] = dot(x + (size_t)r * IC, w + (size_t)o * IC, IC);
            }
            for (; n < n1; n++)
                for (int o = o0; o < o1; o++)
                    out[(size_t)n * OC + o] = dot(x + (size_t)n * IC, w + (size_t)o * IC, IC);
        }
}

/* c (4, 16) (row stride ldc) = [c +] sum_k a(r, k) b[k, 0:16], a(r, k) = a[r * ars +
 * k * aks], b rows of stride ldb; the K terms are summed in order from zero, then
 * added to c when add. */
static void tile_4x16(float *c, int ldc, const float *a, int ars, int aks, const float *b, int ldb,
                      int K, int add) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00;
    const float *a0 = a, *a1 = a + ars, *a2 = a + 2 * (size_t)ars, *a3 = a + 3 * (size_t)ars;
    for (int k = 0; k < K; k++) {
        const float *bk = b + (size_t)k * ldb;
        const size_t ak = (size_t)k * aks;
        const __m256 b0 = _mm256_loadu_ps(bk), b1 = _mm256_loadu_ps(bk + 8);
        __m256 s = _mm256_broadcast_ss(a0 + ak);
        c00 = _mm256_fmadd_ps(s, b0, c00); c01 = _mm256_fmadd_ps(s, b1, c01);
        s = _mm256_broadcast_ss(a1 + ak);
        c10 = _mm256_fmadd_ps(s, b0, c10); c11 = _mm256_fmadd_ps(s, b1, c11);
        s = _mm256_broadcast_ss(a2 + ak);
        c20 = _mm256_fmadd_ps(s, b0, c20); c21 = _mm256_fmadd_ps(s, b1, c21);
        s = _mm256_broadcast_ss(a3 + ak);
        c30 = _mm256_fmadd_ps(s, b0, c30); c31 = _mm256_fmadd_ps(s, b1, c31);
    }
    __m256 acc[4][2] = { { c00, c01 }, { c10, c11 }, { c20, c21 }, { c30, c31 } };
    for (int r = 0; r < 4; r++)
        for (int h = 0; h < 2; h++) {
            float *d = c + (size_t)r * ldc + 8 * h;
            _mm256_storeu_ps(d, add ? _mm256_add_ps(_mm256_loadu_ps(d), acc[r][h]) : acc[r][h]);
        }
}

/* One (row, column) of the same product with plain loops. */
static void elem(float *c, const float *a, int aks, const float *b, int ldb, int K, int add) {
    float s = 0.0f;
    for (int k = 0; k < K; k++) s += a[(size_t)k * aks] * b[(size_t)k * ldb];
    *c = add ? *c + s : s;
}

enum { BW_RB = 4, BW_CB = 16 };

/* c (R, M) = [c +] A (R, K) . b (K, M); threads over (column strip, row block) with
 * the strip outer so consecutive tasks of a thread reuse it. */
static void gemm_nn(float *c, const float *a, int ars, int aks, const float *b, int R, int K, int M,
                    int add) {
    const int n_cs = (M + BW_CB - 1) / BW_CB, n_rb = (R + BW_RB - 1) / BW_RB;
#pragma omp parallel for collapse(2) schedule(static)
    for (int cs = 0; cs < n_cs; cs++)
        for (int rb = 0; rb < n_rb; rb++) {
            const int j0 = cs * BW_CB, r0 = rb * BW_RB;
            const int j1 = j0 + BW_CB < M ? j0 + BW_CB : M, r1 = r0 + BW_RB < R ? r0 + BW_RB : R;
            if (j1 - j0 == BW_CB && r1 - r0 == BW_RB) {
                tile_4x16(c + (size_t)r0 * M + j0, M, a + (size_t)r0 * ars, ars, aks, b + j0, M, K, add);
                continue;
            }
            for (int r = r0; r < r1; r++)
                for (int j = j0; j < j1; j++)
                    elem(c + (size_t)r * M + j, a + (size_t)r * ars, aks, b + j, M, K, add);
        }
}

/* dw[o0 + j, i0 + r] += sum_{n in [n0, n1)} dout[n, o0 + j] x[n, i0 + r] for 16 o (two
 * vectors of contiguous dout) x 4 i (broadcasts of contiguous x): both operands are
 * read along their rows, which matters when OC is the vocabulary (a column walk of
 * dout would touch a new page per row). */
static void tile_dw_16x4(float *dw, int IC, const float *dout, int OC, const float *x, int n0,
                         int n1) {
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00;
    for (int n = n0; n < n1; n++) {
        const float *g = dout + (size_t)n * OC, *xn = x + (size_t)n * IC;
        const __m256 g0 = _mm256_loadu_ps(g), g1 = _mm256_loadu_ps(g + 8);
        __m256 s = _mm256_broadcast_ss(xn);
        c00 = _mm256_fmadd_ps(s, g0, c00); c01 = _mm256_fmadd_ps(s, g1, c01);
        s = _mm256_broadcast_ss(xn + 1);
        c10 = _mm256_fmadd_ps(s, g0, c10); c11 = _mm256_fmadd_ps(s, g1, c11);
        s = _mm256_broadcast_ss(xn + 2);
        c20 = _mm256_fmadd_ps(s, g0, c20); c21 = _mm256_fmadd_ps(s, g1, c21);
        s = _mm256_broadcast_ss(xn + 3);
        c30 = _mm256_fmadd_ps(s, g0, c30); c31 = _mm256_fmadd_ps(s, g1, c31);
    }
    float t[4][16];
    _mm256_storeu_ps(t[0], c00); _mm256_storeu_ps(t[0] + 8, c01);
    _mm256_storeu_ps(t[1], c10); _mm256_storeu_ps(t[1] + 8, c11);
    _mm256_storeu_ps(t[2], c20); _mm256_storeu_ps(t[2] + 8, c21);
    _mm256_storeu_ps(t[3], c30); _mm256_storeu_ps(t[3] + 8, c31);
    for (int j = 0; j < 16; j++)
        for (int r = 0; r < 4; r++) dw[(size_t)j * IC + r] += t[r][j];
}

enum { DW_OB = 16, DW_IB = 64, DW_NC = 256 };

/* dw (OC, IC) += dout^T . x: tasks of 16 o x 64 i; N in chunks of DW_NC (each chunk's
 * sum added to dw in chunk order) so a task's operands stay in L1 / L2. */
static void matmul_dw(float *dw, const float *dout, const float *x, int N, int IC, int OC) {
    const int n_ob = (OC + DW_OB - 1) / DW_OB, n_ib = (IC + DW_IB - 1) / DW_IB;
#pragma omp parallel for collapse(2) schedule(static)
    for (int ob = 0; ob < n_ob; ob++)
        for (int ib = 0; ib < n_ib; ib++) {
            const int o0 = ob * DW_OB, o1 = o0 + DW_OB < OC ? o0 + DW_OB : OC;
            const int i0 = ib * DW_IB, i1 = i0 + DW_IB < IC ? i0 + DW_IB : IC;
            for (int n0 = 0; n0 < N; n0 += DW_NC) {
                const int n1 = n0 + DW_NC < N ? n0 + DW_NC : N;
                int i = i0;
                if (o1 - o0 == DW_OB)
                    for (; i + 4 <= i1; i += 4)
                        tile_dw_16x4(dw + (size_t)o0 * IC + i, IC, dout + o0, OC, x + i, n0, n1);
                for (int o = o0; o < o1; o++)
                    for (int ii = (o1 - o0 == DW_OB) ? i : i0; ii < i1; ii++) {
                        float s = 0.0f;
                        for (int n = n0; n < n1; n++) s += dout[(size_t)n * OC + o] * x[(size_t)n * IC + ii];
                        dw[(size_t)o * IC + ii] += s;
                    }
            }
        }
}

void matmul_backward_avx2(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          int N, int IC, int OC, int accumulate) {
    /* dx[n, i] = sum_o dout[n, o] w[o, i] */
    if (dx) gemm_nn(dx, dout, OC, 1, w, N, OC, IC, accumulate);
    /* dw[o, i] += sum_n dout[n, o] x[n, i] */
    matmul_dw(dw, dout, x, N, IC, OC);
}
