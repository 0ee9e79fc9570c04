/* quant_ref.c - the reference (de)quantizers: every weight type to float32, and
 * float32 to Q8_0 / Q4_0 exactly as ggml's quantize_row_*_ref (so our blocks are
 * byte-identical to gguf-py's and llama.cpp's). Block layouts are GGUF's:
 *   Q8_0: f16 d, 32 x int8 q              x = q * d
 *   Q4_0: f16 d, 16 bytes of nibbles      x = (q - 8) * d; low nibble of byte j is
 *                                         element j, high nibble element j + 16
 *   Q4_K / Q5_K / Q6_K: 256-element super-blocks (ggml's dequantize_row_q*_K).
 * Plain scalar code, never optimised: the oracle for cpu/.
 */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

#define QK_K 256

/* Q4_K / Q5_K 6-bit scale and min j (0..7) packed in 12 bytes (ggml's get_scale_min_k4). */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* y (256) from one 144-byte Q4_K block: f16 d, f16 dmin, scales[12], qs[128]. */
static void dequant_q4_k(float *y, const uint8_t *b) {
    const float d = herd_f16_to_f32(rd16(b)), min = herd_f16_to_f32(rd16(b + 2));
    const uint8_t *scales = b + 4, *q = b + 16;
    uint8_t sc, m;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, q += 32) {
        scale_min_k4(is + 0, scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
    }
}

/* y (256) from one 176-byte Q5_K block: f16 d, f16 dmin, scales[12], qh[32], qs[128]. */
static void dequant_q5_k(float *y, const uint8_t *b) {
    const float d = herd_f16_to_f32(rd16(b)), min = herd_f16_to_f32(rd16(b + 2));
    const uint8_t *scales = b + 4, *qh = b + 16, *ql = b + 48;
    uint8_t sc, m, u1 = 1, u2 = 2;
    for (int j = 0, is = 0; j < QK_K; j += 64, is += 2, ql += 32, u1 <<= 2, u2 <<= 2) {
        scale_min_k4(is + 0, scales, &sc, &m);
        const float d1 = d * sc, m1 = min * m;
        scale_min_k4(is + 1, scales, &sc, &m);
        const float d2 = d * sc, m2 = min * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
    }
}

/* y (256) from one 210-byte Q6_K block: ql[128], qh[64], int8 scales[16], f16 d. */
static void dequant_q6_k(float *y, const uint8_t *b) {
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    const float d = herd_f16_to_f32(rd16(b + 208));
    for (int n = 0; n < QK_K; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l + 0] = d * sc[is + 0] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
    }
}

void dequant_row_ref(float *out, const void *row, int type, int64_t n) {
    const uint8_t *p = row;
    switch (type) {
    case HERD_F32:
        memcpy(out, row, (size_t)n * sizeof(float));
        return;
    case HERD_F16:
        for (int64_t i = 0; i < n; i++) out[i] = herd_f16_to_f32(rd16(p + 2 * i));
        return;
    case HERD_BF16:
        for (int64_t i = 0; i < n; i++) out[i] = herd_bf16_to_f32(rd16(p + 2 * i));
        return;
    case HERD_Q8_0:
        for (int64_t b = 0; b < n / QK; b++, p += 34) {
            const float d = herd_f16_to_f32(rd16(p));
            for (int j = 0; j < QK; j++) out[b * QK + j] = (float)(int8_t)p[2 + j] * d;
        }
        return;
    case HERD_Q4_0:
        for (int64_t b = 0; b < n / QK; b++, p += 18) {
            const float d = herd_f16_to_f32(rd16(p));
            for (int j = 0; j < QK / 2; j++) {
                out[b * QK + j] = (float)((p[2 + j] & 0xF) - 8) * d;
                out[b * QK + j + 16] = (float)((p[2 + j] >> 4) - 8) * d;
            }
        }
        return;
    case HERD_Q4_K:
        for (int64_t b = 0; b < n / QK_K; b++) dequant_q4_k(out + b * QK_K, p + b * 144);
        return;
    case HERD_Q5_K:
        for (int64_t b = 0; b < n / QK_K; b++) dequant_q5_k(out + b * QK_K, p + b * 176);
        return;
    case HERD_Q6_K:
        for (int64_t b = 0; b < n / QK_K; b++) dequant_q6_k(out + b * QK_K, p + b * 210);
        return;
    default: /* unknown types are rejected by the loader; make the bug visible */
        for (int64_t i = 0; i < n; i++) out[i] = NAN;
        return;
    }
}

void quantize_row_q8_0_ref(block_q8_0 *out, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / QK; b++, x += QK) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        out[b].d = herd_f32_to_f16(d);
        for (int j = 0; j < QK; j++) out[b].qs[j] = (int8_t)roundf(x[j] * id);
    }
}

void quantize_row_q4_0_ref(block_q4_0 *out, const float *x, int64_t n) {
    for (int64_t b = 0; b < n / QK; b++, x += QK) {
        float amax = 0.0f, max = 0.0f; /* max: the signed value of largest magnitude */
        for (int j = 0; j < QK; j++) {
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        }
        const float d = max / -8.0f;
        const float id = d ? 1.0f / d : 0.0f;
        out[b].d = herd_f32_to_f16(d);
        for (int j = 0; j < QK / 2; j++) {
            int8_t q0 = (int8_t)(x[j] * id + 8.5f), q1 = (int8_t)(x[j + 16] * id + 8.5f);
            uint8_t lo = (uint8_t)(q0 < 15 ? q0 : 15), hi = (uint8_t)(q1 < 15 ? q1 : 15);
            out[b].qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}
