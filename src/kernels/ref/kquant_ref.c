/* kquant_ref.c - ggml's K-quant super-block formats, scalar reference: dequantize
 * (the oracle for cpu/) and quantize (for `herd quantize`).
 *
 * Layouts (QK_K = 256 elements a super-block; identical to GGUF's):
 *   Q4_K (144 B): f16 d, f16 dmin, 12 B scales, 128 B nibbles. Eight sub-blocks of 32,
 *                 each with a 6-bit scale sc and a 6-bit min m: x = d*sc*q - dmin*m,
 *                 q in 0..15. Sub-block 2k is the low nibbles of bytes 32k..32k+31,
 *                 sub-block 2k+1 their high nibbles.
 *   Q5_K (176 B): as Q4_K plus qh[32] after the scales: bit k of qh[l] is the fifth
 *                 bit (16) of element l of sub-block k; q in 0..31.
 *   Q6_K (210 B): ql[128], qh[64], int8 scales[16], f16 d; sixteen sub-blocks of 16,
 *                 x = d*scale*(q - 32), q 6 bits: 4 in ql, 2 in qh (see dequant_q6_k).
 *   The 12 scale bytes of Q4_K / Q5_K: bytes 0-3 low 6 bits = sc[0..3], bytes 4-7 low
 *   6 bits = m[0..3]; bytes 8-11 = sc[4..7] low nibble | m[4..7] high nibble, whose
 *   top 2 bits are the high 2 bits of bytes 0-3 (sc) and 4-7 (m).
 *
 * The quantizers follow ggml's quantize_row_q{4,5,6}_K_ref (no importance matrix):
 * per sub-block a weighted least-squares search over candidate scales
 * (make_qkx2_quants for the min/scale types, make_qx_quants for Q6_K), then the
 * sub-block scales are themselves quantized to 6 / 8 bits against one f16 super-scale.
 * Rounding is ggml's nearest_int (round half to even), and the arithmetic is kept in
 * ggml's order, so on a plain x86-64 build (no FMA contraction) the bytes match
 * llama-quantize's; tests/test_quant.c checks this against fixtures made by ggml.
 * Not here: importance-matrix quantization, the other K types (Q2_K, Q3_K).
 */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "kernels/kernels.h"

#define QK_K 256
#define GROUP_MAX_EPS 1e-15f

_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K must match GGUF");
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K must match GGUF");
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K must match GGUF");

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* Round to nearest, ties to even, for |x| < 2^22 (ggml's nearest_int: adding
 * 1.5 * 2^23 leaves the rounded integer in the low mantissa bits). */
static int nearest_int(float x) {
    float v = x + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* ---- dequantize ------------------------------------------------------------ */

/* Scale and min of sub-block j (0..7) from the 12 packed bytes (ggml's get_scale_min_k4). */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void dequant_q4_k(float *y, const block_q4_K *b) {
    const float d = herd_f16_to_f32(b->d), min = herd_f16_to_f32(b->dmin);
    const uint8_t *q = b->qs;
    uint8_t sc, m;
    for (int j = 0; j < QK_K / 64; j++, q += 32) {
        scale_min_k4(2 * j, b->scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        scale_min_k4(2 * j + 1, b->scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
    }
}

static void dequant_q5_k(float *y, const block_q5_K *b) {
    const float d = herd_f16_to_f32(b->d), min = herd_f16_to_f32(b->dmin);
    const uint8_t *ql = b->qs;
    uint8_t sc, m, u1 = 1, u2 = 2;
    for (int j = 0; j < QK_K / 64; j++, ql += 32, u1 <<= 2, u2 <<= 2) {
        scale_min_k4(2 * j, b->scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        scale_min_k4(2 * j + 1, b->scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (b->qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (b->qh[l] & u2 ? 16 : 0)) - m2;
    }
}

/* Each 128-element half: ql[0..63], qh[0..31]; element l (0..31) of its four
 * 32-element quarters takes ql[l] low, ql[l+32] low, ql[l] high, ql[l+32] high
 * nibbles and qh[l] bits 0-1, 2-3, 4-5, 6-7. */
static void dequant_q6_k(float *y, const block_q6_K *b) {
    const float d = herd_f16_to_f32(b->d);
    const uint8_t *ql = b->ql, *qh = b->qh;
    const int8_t *sc = b->scales;
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
    }
}

void dequant_row_q4_K_ref(float *out, const block_q4_K *x, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; b++) dequant_q4_k(out + b * QK_K, &x[b]);
}
void dequant_row_q5_K_ref(float *out, const block_q5_K *x, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; b++) dequant_q5_k(out + b * QK_K, &x[b]);
}
void dequant_row_q6_K_ref(float *out, const block_q6_K *x, int64_t n) {
    for (int64_t b = 0; b < n / QK_K; b++) dequant_q6_k(out + b * QK_K, &x[b]);
}

/* ---- scale search ------------------------------------------------------------ */

/* Asymmetric quantization of x (n) to L in 0..nmax with x ~ scale*L - the_min:
 * start from the min/max grid, then try nstep+1 grids of nmax + rmin + rdelta*is
 * steps, solving weighted least squares for (scale, min) on each and keeping the
 * lowest weighted squared error. The min is clamped to <= 0 (the_min >= 0).
 * Returns scale; *the_min = -min (ggml's make_qkx2_quants, use_mad = false). */
static float make_qkx2_quants(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                              float *the_min, uint8_t *Laux, float rmin, float rdelta, int nstep) {
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        float w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        for (int i = 0; i < n; i++) L[i] = 0;
        *the_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * (x[i] - min));
        L[i] = (uint8_t)imax(0, imin(nmax, l));
        float diff = scale * L[i] + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * (x[i] - min));
            l = imax(0, imin(nmax, l));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * l;
            sum_l2 += w * l * l;
            sum_xl += w * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *the_min = -min;
    return scale;
}

/* Symmetric quantization of x (n) to L in 0..2*nmax-1 (stored as l + nmax, l in
 * -nmax..nmax-1) with x ~ scale*l, weights x^2: the grid through the element of
 * largest magnitude, refined by least squares over 18 nearby grids (ggml's
 * make_qx_quants, rmse_type 1, no importance weights). */
static float make_qx_quants(int n, int nmax, const float *x, int8_t *L) {
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++) L[i] = 0;
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = nearest_int(iscale * x[i]);
        l = imax(-nmax, imin(nmax - 1, l));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = nearest_int(iscale * x[i]);
            l = imax(-nmax, imin(nmax - 1, l));
            float w = x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                int l = nearest_int(iscale * x[i]);
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, l)));
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* ---- Q4_K / Q5_K ------------------------------------------------------------ */

/* Shared first half of Q4_K and Q5_K: per 32-element sub-block scale/min search
 * (weights rms(x) + |x|), 6-bit scales and mins packed into scales[12], super-block
 * d / dmin, then the final L (0..nmax) against the quantized scales. */
static void quantize_k_scales(const float *x, int nmax, float rmin, int nstep, uint16_t *d_out,
                              uint16_t *dmin_out, uint8_t *packed, uint8_t *L) {
    uint8_t Laux[32];
    float weights[32], mins[QK_K / 32], scales[QK_K / 32];
    float max_scale = 0, max_min = 0; /* mins are subtracted, so both are >= 0 */
    for (int j = 0; j < QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux,
                                     rmin, 0.1f, nstep);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(packed, 0, 12);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        ls = ls < 63 ? ls : 63;
        lm = lm < 63 ? lm : 63;
        if (j < 4) {
            packed[j] = ls;
            packed[j + 4] = lm;
        } else {
            packed[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
            packed[j - 4] |= (uint8_t)((ls >> 4) << 6);
            packed[j] |= (uint8_t)((lm >> 4) << 6);
        }
    }
    *d_out = herd_f32_to_f16(max_scale / 63.f);
    *dmin_out = herd_f32_to_f16(max_min / 63.f);
    const float D = herd_f16_to_f32(*d_out), DMIN = herd_f16_to_f32(*dmin_out);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        scale_min_k4(j, packed, &sc, &m);
        const float d = D * sc;
        if (!d) continue; /* keeps the search's L, as ggml does */
        const float dm = DMIN * m;
        for (int i = 0; i < 32; i++) {
            int l = nearest_int((x[32 * j + i] + dm) / d);
            L[32 * j + i] = (uint8_t)imax(0, imin(nmax, l));
        }
    }
}

void quantize_row_q4_K_ref(block_q4_K *out, const float *x, int64_t n) {
    uint8_t L[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        block_q4_K *y = &out[b];
        quantize_k_scales(x, 15, -1.f, 20, &y->d, &y->dmin, y->scales, L);
        for (int j = 0; j < QK_K / 64; j++)
            for (int l = 0; l < 32; l++)
                y->qs[32 * j + l] = (uint8_t)(L[64 * j + l] | (L[64 * j + l + 32] << 4));
    }
}

void quantize_row_q5_K_ref(block_q5_K *out, const float *x, int64_t n) {
    uint8_t L[QK_K];
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        block_q5_K *y = &out[b];
        quantize_k_scales(x, 31, -0.5f, 15, &y->d, &y->dmin, y->scales, L);
        memset(y->qh, 0, sizeof y->qh);
        uint8_t m1 = 1, m2 = 2;
        for (int j = 0; j < QK_K / 64; j++, m1 <<= 2, m2 <<= 2) {
            for (int l = 0; l < 32; l++) {
                int l1 = L[64 * j + l], l2 = L[64 * j + l + 32];
                if (l1 > 15) { l1 -= 16; y->qh[l] |= m1; }
                if (l2 > 15) { l2 -= 16; y->qh[l] |= m2; }
                y->qs[32 * j + l] = (uint8_t)(l1 | (l2 << 4));
            }
        }
    }
}

/* ---- Q6_K ------------------------------------------------------------------- */

void quantize_row_q6_K_ref(block_q6_K *out, const float *x, int64_t n) {
    int8_t L[QK_K];
    float scales[QK_K / 16];
    for (int64_t b = 0; b < n / QK_K; b++, x += QK_K) {
        block_q6_K *y = &out[b];
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < QK_K / 16; ib++) {
            scales[ib] = make_qx_quants(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) {
                max_abs_scale = fabsf(scales[ib]);
                max_scale = scales[ib];
            }
        }
        if (max_abs_scale < GROUP_MAX_EPS) { /* all zero */
            memset(y, 0, sizeof *y);
            continue;
        }
        float iscale = -128.f / max_scale;
        y->d = herd_f32_to_f16(1 / iscale);
        for (int ib = 0; ib < QK_K / 16; ib++) y->scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
        const float D = herd_f16_to_f32(y->d);
        for (int j = 0; j < QK_K / 16; j++) {
            float d = D * y->scales[j];
            if (!d) continue;
            for (int i = 0; i < 16; i++) {
                int l = nearest_int(x[16 * j + i] / d);
                L[16 * j + i] = (int8_t)(imax(-32, imin(31, l)) + 32);
            }
        }
        uint8_t *ql = y->ql, *qh = y->qh;
        for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const uint8_t q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF;
                const uint8_t q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
                ql[l] = (uint8_t)(q1 | (q3 << 4));
                ql[l + 32] = (uint8_t)(q2 | (q4 << 4));
                qh[l] = (uint8_t)((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                  ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
        }
    }
}
