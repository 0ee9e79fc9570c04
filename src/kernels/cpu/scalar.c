/* scalar.c - the portable fast path: plain C (no ISA flags), threaded by the
 * dispatcher, used when the CPU lacks AVX2 and as the comparison point of the
 * SIMD paths in tests. Also the helpers every ISA shares (scratch carving, the
 * activation quantizer, silu, the scratch size).
 *
 * Unlike the reference it computes what the SIMD paths compute: Q8_0 / Q4_0
 * weights are dotted with x quantized to int8 blocks of 32, K-quants with x
 * quantized per 256 (exact integer dots; see cpu.h), so SIMD-vs-scalar
 * differences are float summation order only. BF16 weights
 * are dotted with unrounded f32 x, as on every path.
 */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "kernels/cpu/cpu.h"

void *mm_carve(uint8_t **p, size_t bytes) {
    uintptr_t a = ((uintptr_t)*p + 63) & ~(uintptr_t)63;
    *p = (uint8_t *)(a + bytes);
    return (void *)a;
}

/* Largest scratch any ISA's layout carves: int8 x, per-block scale, 8 expanded
 * lane scales and 8 lane corrections per block (Q8_0 / Q4_0); the AVX-512 GEMM's
 * packed x (T rounded up to its token tile: int8 x, scale and correction per
 * block; or f32 x). */
size_t mm_scratch_bytes(int type, int T, int64_t ic) {
    size_t n = (size_t)T * (size_t)ic, nb = n / QK + (size_t)T;
    size_t tq = (size_t)(T + GEMM_QT - 1) / GEMM_QT * GEMM_QT, tf = (size_t)(T + GEMM_FT - 1) / GEMM_FT * GEMM_FT;
    size_t rows = n + nb * (4 + 32 + 32) + 5 * 64, gq = tq * (size_t)ic + tq * (size_t)(ic / QK) * 8 + 3 * 64;
    switch (type) {
    case HERD_Q8_0: case HERD_Q4_0: return rows > gq ? rows : gq;
    case HERD_Q4_K: case HERD_Q5_K: case HERD_Q6_K: { /* per 256, or per 32 (packed AVX-512) */
        const size_t k256 = n + n / QKK * 4 + n / 16 * 2 + 4 * 64, k32 = n + n / QK * 12 + 4 * 64;
        return k256 > k32 ? k256 : k32;
    }
    case HERD_F32: case HERD_F16: return tf * (size_t)ic * 4 + 64;
    case HERD_BF16: return tf * (size_t)ic * 4 + (size_t)T * (size_t)((ic + 1) / 2) * 4 + 2 * 64; /* + x as bf16 pairs */
    default: return 64;
    }
}

/* q (32) = x (32) / d rounded to nearest-even, d = amax / 127 (the SIMD paths
 * use the same formula and rounding, so all ISAs quantize identically). */
void mm_quantize_block_q8(int8_t *q, float *d, const float *x) {
    float amax = 0.0f;
    for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
    const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    for (int j = 0; j < QK; j++) q[j] = (int8_t)lrintf(x[j] * id);
    *d = dd;
}

float silu_scalar(float x) { return x / (1.0f + expf(-x)); }

/* ---- K-quant activations ------------------------------------------------------ */

int mm_is_kquant(int type) { return type == HERD_Q4_K || type == HERD_Q5_K || type == HERD_Q6_K; }

int64_t mm_kq_layout(mm_act *a, const float *x, int T, int64_t ic, void *scratch) {
    memset(a, 0, sizeof *a);
    a->f32 = x;
    a->ic = ic;
    a->nb = ic / QK;
    uint8_t *p = scratch;
    a->q = mm_carve(&p, (size_t)T * ic);
    a->d = mm_carve(&p, (size_t)T * (ic / QKK) * sizeof(float));
    a->xs = mm_carve(&p, (size_t)T * (ic / 16) * sizeof(int16_t));
    return (int64_t)T * (ic / QKK);
}

/* Super-blocks [i0, i1) of all tokens (x is (T, IC) contiguous): the formula and
 * rounding of mm_quantize_block_q8 over 256 values. */
void mm_kq_prep(const mm_act *a, const float *x, int T, int64_t i0, int64_t i1) {
    for (int64_t b = i0; b < i1; b++) {
        const float *xb = x + b * QKK;
        int8_t *q = (int8_t *)a->q + b * QKK;
        float amax = 0.0f;
        for (int j = 0; j < QKK; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < QKK; j++) q[j] = (int8_t)lrintf(xb[j] * id);
        ((float *)a->d)[b] = d;
        int16_t *xs = (int16_t *)a->xs + b * (QKK / 16);
        for (int g = 0; g < QKK / 16; g++) {
            int s = 0;
            for (int j = 0; j < 16; j++) s += q[16 * g + j];
            xs[g] = (int16_t)s;
        }
    }
}

/* The 6-bit (Q6_K) / 5-bit (Q5_K) / 4-bit (Q4_K) unsigned quant of element i of
 * a super-block, and the scale index of its group (sub-block of 32, Q6_K: 16). */
static int kq_elem(const uint8_t *blk, int type, int i, int *group) {
    if (type == HERD_Q6_K) {
        const block_q6_K *b = (const block_q6_K *)blk;
        const int h = i / 128, r = i % 128, quarter = r / 32, l = r % 32;
        const uint8_t ql = b->ql[64 * h + l + (quarter & 1) * 32], qh = b->qh[32 * h + l];
        *group = i / 16;
        return ((quarter < 2 ? ql & 0xF : ql >> 4) | (((qh >> (2 * quarter)) & 3) << 4));
    }
    const int j = i / 32, l = i % 32;
    const uint8_t *qs = type == HERD_Q4_K ? ((const block_q4_K *)blk)->qs : ((const block_q5_K *)blk)->qs;
    const uint8_t q = qs[32 * (j / 2) + l];
    *group = j;
    int v = j & 1 ? q >> 4 : q & 0xF;
    if (type == HERD_Q5_K && (((const block_q5_K *)blk)->qh[l] >> j & 1)) v += 16;
    return v;
}

/* One output of a K-quant row: per super-block the exact integer dots, then
 * sum += isum * (d dx), msum * (dmin dx) kept apart and subtracted at the end. */
static float dot_kq_row(const uint8_t *row, int type, const int8_t *xq, const float *xd,
                        const int16_t *xs, int64_t nsb) {
    const size_t bb = type == HERD_Q4_K ? 144 : type == HERD_Q5_K ? 176 : 210;
    float sum = 0.0f, msum_f = 0.0f;
    for (int64_t b = 0; b < nsb; b++, xq += QKK, xs += QKK / 16) {
        const uint8_t *blk = row + b * bb;
        int32_t dots[16] = { 0 };
        for (int i = 0; i < QKK; i++) {
            int g;
            const int q = kq_elem(blk, type, i, &g);
            dots[g] += q * xq[i];
        }
        int32_t isum = 0, msum = 0;
        if (type == HERD_Q6_K) {
            const block_q6_K *k = (const block_q6_K *)blk;
            for (int g = 0; g < 16; g++) isum += k->scales[g] * (dots[g] - 32 * xs[g]);
            sum += (float)isum * (herd_f16_to_f32(k->d) * xd[b]);
            continue;
        }
        const uint8_t *scales = type == HERD_Q4_K ? ((const block_q4_K *)blk)->scales : ((const block_q5_K *)blk)->scales;
        for (int j = 0; j < 8; j++) {
            int sc, m;
            kq_scale_min(j, scales, &sc, &m);
            isum += sc * dots[j];
            msum += m * (xs[2 * j] + xs[2 * j + 1]);
        }
        const uint16_t *dd = (const uint16_t *)blk; /* d, dmin */
        sum += (float)isum * (herd_f16_to_f32(dd[0]) * xd[b]);
        msum_f += (float)msum * (herd_f16_to_f32(dd[1]) * xd[b]);
    }
    return sum - msum_f;
}

/* ---- matmul ---------------------------------------------------------------- */

static int sc_supports(int type) {
    int bs; size_t b;
    kern_block_geom(type, &bs, &b);
    return bs != 0;
}

static int64_t sc_layout(mm_act *a, const float *x, int type, int T, int64_t ic, void *scratch) {
    if (mm_is_kquant(type)) return mm_kq_layout(a, x, T, ic, scratch);
    memset(a, 0, sizeof *a);
    a->f32 = x;
    a->ic = ic;
    a->nb = ic / QK;
    if (type != HERD_Q8_0 && type != HERD_Q4_0) return 0;
    uint8_t *p = scratch;
    a->q = mm_carve(&p, (size_t)T * ic);
    a->d = mm_carve(&p, (size_t)T * a->nb * sizeof(float));
    return (int64_t)T * a->nb;
}

static void sc_prep(const mm_act *a, const float *x, int type, int T, int64_t i0, int64_t i1) {
    if (mm_is_kquant(type)) {
        mm_kq_prep(a, x, T, i0, i1);
        return;
    }
    for (int64_t b = i0; b < i1; b++) /* block b of all tokens: x is (T, IC) contiguous */
        mm_quantize_block_q8((int8_t *)a->q + b * QK, (float *)a->d + b, x + b * QK);
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* out[t] += sum over blocks of d_w * d_x * (exact int dot) for one quantized row. */
static float dot_q8_row(const uint8_t *row, int type, const int8_t *xq, const float *xd, int64_t nb) {
    float sum = 0.0f;
    for (int64_t b = 0; b < nb; b++, xq += QK) {
        int32_t s = 0;
        if (type == HERD_Q8_0) {
            const uint8_t *blk = row + b * 34;
            for (int j = 0; j < QK; j++) s += (int8_t)blk[2 + j] * xq[j];
            sum += herd_f16_to_f32(rd16(blk)) * xd[b] * (float)s;
        } else {
            const uint8_t *blk = row + b * 18;
            for (int j = 0; j < QK / 2; j++)
                s += ((blk[2 + j] & 0xF) - 8) * xq[j] + ((blk[2 + j] >> 4) - 8) * xq[j + 16];
            sum += herd_f16_to_f32(rd16(blk)) * xd[b] * (float)s;
        }
    }
    return sum;
}

static void sc_rows(float *out, const mm_act *a, const herd_weight *w, int T, int64_t r0, int64_t r1) {
    const size_t row_bytes = kern_row_bytes(w->type, w->ic);
    const int64_t ic = w->ic, oc = w->oc;
    if (w->type == HERD_Q8_0 || w->type == HERD_Q4_0) {
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = (const uint8_t *)w->data + r * row_bytes;
            for (int t = 0; t < T; t++)
                out[(size_t)t * oc + r] = dot_q8_row(row, w->type, a->q + (size_t)t * ic,
                                                     a->d + (size_t)t * a->nb, a->nb);
        }
        return;
    }
    if (mm_is_kquant(w->type)) {
        for (int64_t r = r0; r < r1; r++) {
            const uint8_t *row = (const uint8_t *)w->data + r * row_bytes;
            for (int t = 0; t < T; t++)
                out[(size_t)t * oc + r] = dot_kq_row(row, w->type, a->q + (size_t)t * ic, a->d + (size_t)t * (ic / QKK),
                                                     a->xs + (size_t)t * (ic / 16), ic / QKK);
        }
        return;
    }
    /* float types: convert 256 weights at a time, used by up to 8 tokens */
    int bs; size_t bbytes;
    kern_block_geom(w->type, &bs, &bbytes);
    const int chunk = 256;
    const size_t chunk_bytes = kern_row_bytes(w->type, chunk);
    float wb[256];
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + r * row_bytes;
        for (int t0 = 0; t0 < T; t0 += 8) {
            const int tn = T - t0 < 8 ? T - t0 : 8;
            float acc[8] = { 0 };
            for (int64_t i0 = 0; i0 < ic; i0 += chunk) {
                const int64_t n = ic - i0 < chunk ? ic - i0 : chunk;
                dequant_row(wb, row + (size_t)(i0 / chunk) * chunk_bytes, w->type, n);
                for (int t = 0; t < tn; t++) {
                    const float *xt = a->f32 + (size_t)(t0 + t) * ic + i0;
                    float s = 0.0f;
                    for (int64_t i = 0; i < n; i++) s += wb[i] * xt[i];
                    acc[t] += s;
                }
            }
            for (int t = 0; t < tn; t++) out[(size_t)(t0 + t) * oc + r] = acc[t];
        }
    }
}

const mm_isa mm_isa_scalar = { "scalar", sc_supports, sc_layout, sc_prep, sc_rows };

/* ---- row ops --------------------------------------------------------------- */

static void sc_rmsnorm_row(float *out, const float *x, const float *w, int C, float eps) {
    float ss = 0.0f;
    for (int i = 0; i < C; i++) ss += x[i] * x[i];
    const float r = 1.0f / sqrtf(ss / (float)C + eps);
    for (int i = 0; i < C; i++) out[i] = (x[i] * r) * w[i];
}

static void sc_swiglu_row(float *out, const float *gate, const float *up, int n) {
    for (int i = 0; i < n; i++) out[i] = silu_scalar(gate[i]) * up[i];
}

static float sc_dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static void sc_axpy(float *y, float a, const float *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static float sc_dot_f16(const float *a, const uint16_t *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * herd_f16_to_f32(b[i]);
    return s;
}

static void sc_axpy_f16(float *y, float a, const uint16_t *x, int n) {
    for (int i = 0; i < n; i++) y[i] += a * herd_f16_to_f32(x[i]);
}

static void sc_dots(float *t, const float *a, const float *x, int r, int n) {
    for (int j = 0; j < r; j++) t[j] = sc_dot(a + (size_t)j * n, x, n);
}

static void sc_axpys(float *y, const float *t, const float *bt, int r, int n, int64_t ld) {
    for (int i = 0; i < n; i++) {
        float v = y[i];
        for (int j = 0; j < r; j++) v += t[j] * bt[j * ld + i];
        y[i] = v;
    }
}

const ops_isa ops_isa_scalar = { sc_rmsnorm_row, sc_swiglu_row, sc_dot, sc_axpy,
                                 sc_dot_f16, sc_axpy_f16, f32_to_f16_row_ref, sc_dots, sc_axpys };
