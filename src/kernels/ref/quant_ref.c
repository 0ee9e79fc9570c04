/* quant_ref.c - the reference (de)quantizers: every weight type to float32, and
 * float32 to Q8_0 / Q4_0 exactly as ggml's quantize_row_*_ref (so our blocks are
 * byte-identical to gguf-py's and llama.cpp's). Block layouts are GGUF's:
 *   Q8_0: f16 d, 32 x int8 q              x = q * d
 *   Q4_0: f16 d, 16 bytes of nibbles      x = (q - 8) * d; low nibble of byte j is
 *                                         element j, high nibble element j + 16
 *   Q4_K / Q5_K / Q6_K: 256-element super-blocks, in kquant_ref.c.
 * Plain scalar code, never optimised: the oracle for cpu/.
 */
#include <math.h>
#include <string.h>

#include "core/core.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

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
        dequant_row_q4_K_ref(out, row, n);
        return;
    case HERD_Q5_K:
        dequant_row_q5_K_ref(out, row, n);
        return;
    case HERD_Q6_K:
        dequant_row_q6_K_ref(out, row, n);
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
