/* attn_generic.h - the portable page kernel of attn.h in plain C. Included by
 * attn_scalar.c (baseline flags) and attn_avx2.c (AVX2 + FMA flags: the compiler
 * vectorizes the loops over keys and head elements); each gets its own static
 * copy. Any HS. Per row: scores over the page, online-softmax update, then the
 * weighted sum of the page's values, all in a fixed order (batch invariance).
 */
#include <math.h>

#include "core/core.h"
#include "kernels/cpu/attn.h"

/* The includer may supply a faster exact f16 -> f32 widening (F16C). */
#ifndef GEN_F16_TO_F32
#define GEN_F16_TO_F32(h) herd_f16_to_f32(h)
#endif

/* s (nk) = q (HS) . key_k for the page's keys k < nk (K tile transposed). */
static void gen_scores(float *restrict s, const float *restrict q, const uint8_t *restrict kt, int type, int nk, int HS) {
    for (int k = 0; k < nk; k++) s[k] = 0.0f;
    if (type == HERD_F32) {
        const float *K = (const float *)kt;
        for (int d = 0; d < HS; d++) {
            const float qd = q[d], *row = K + (size_t)d * ATTN_PAGE;
            for (int k = 0; k < nk; k++) s[k] += qd * row[k];
        }
    } else if (type == HERD_F16) {
        const uint16_t *K = (const uint16_t *)kt;
        for (int d = 0; d < HS; d++) {
            const float qd = q[d];
            const uint16_t *row = K + (size_t)d * ATTN_PAGE;
            for (int k = 0; k < nk; k++) s[k] += qd * GEN_F16_TO_F32(row[k]);
        }
    } else { /* Q8_0: key element = q * d, as the reference dequantizes it */
        const int8_t *qs = (const int8_t *)kt;
        const uint16_t *ds = (const uint16_t *)(kt + (size_t)HS * ATTN_PAGE);
        float dk[ATTN_PAGE];
        for (int d = 0; d < HS; d++) {
            if (d % 32 == 0)
                for (int k = 0; k < nk; k++) dk[k] = GEN_F16_TO_F32(ds[(d / 32) * ATTN_PAGE + k]);
            const float qd = q[d];
            const int8_t *row = qs + (size_t)d * ATTN_PAGE;
            for (int k = 0; k < nk; k++) s[k] += qd * ((float)row[k] * dk[k]);
        }
    }
}

/* acc (HS) += sum_k p_k value_k over the page's values k < nk. */
static void gen_values(float *restrict acc, const float *restrict p, const uint8_t *restrict vt, int type, int nk, int HS) {
    for (int k = 0; k < nk; k++) {
        const float pk = p[k];
        if (type == HERD_F32) {
            const float *row = (const float *)vt + (size_t)k * HS;
            for (int i = 0; i < HS; i++) acc[i] += pk * row[i];
        } else if (type == HERD_F16) {
            const uint16_t *row = (const uint16_t *)vt + (size_t)k * HS;
            for (int i = 0; i < HS; i++) acc[i] += pk * GEN_F16_TO_F32(row[i]);
        } else {
            const block_q8_0 *b = (const block_q8_0 *)(vt + (size_t)k * (HS / 32) * sizeof(block_q8_0));
            for (int j = 0; j < HS / 32; j++) {
                const float d = GEN_F16_TO_F32(b[j].d);
                for (int i = 0; i < 32; i++) acc[j * 32 + i] += pk * ((float)b[j].qs[i] * d);
            }
        }
    }
}

static void gen_page(float *acc, float *m, float *l, const float *q, const uint8_t *kt,
                     const uint8_t *vt, int type, int nr, int nk, int HS, float scale) {
    float s[ATTN_PAGE];
    for (int r = 0; r < nr; r++) {
        gen_scores(s, q + (size_t)r * HS, kt, type, nk, HS);
        float mx = -INFINITY;
        for (int k = 0; k < nk; k++) {
            s[k] *= scale;
            mx = s[k] > mx ? s[k] : mx;
        }
        const float mnew = m[r] > mx ? m[r] : mx;
        const float corr = expf(m[r] - mnew); /* 0 on the first page (m = -inf) */
        float sum = 0.0f;
        for (int k = 0; k < nk; k++) {
            s[k] = expf(s[k] - mnew);
            sum += s[k];
        }
        l[r] = l[r] * corr + sum;
        m[r] = mnew;
        float *a = acc + (size_t)r * HS;
        for (int i = 0; i < HS; i++) a[i] *= corr;
        gen_values(a, s, vt, type, nk, HS);
    }
}

static void gen_page_f32(float *acc, float *m, float *l, const float *q, const uint8_t *kt,
                         const uint8_t *vt, const attn_next *nx, int nr, int nk, int HS, float scale) {
    attn_prefetch_next(nx);
    gen_page(acc, m, l, q, kt, vt, HERD_F32, nr, nk, HS, scale);
}
static void gen_page_f16(float *acc, float *m, float *l, const float *q, const uint8_t *kt,
                         const uint8_t *vt, const attn_next *nx, int nr, int nk, int HS, float scale) {
    attn_prefetch_next(nx);
    gen_page(acc, m, l, q, kt, vt, HERD_F16, nr, nk, HS, scale);
}
static void gen_page_q8_0(float *acc, float *m, float *l, const float *q, const uint8_t *kt,
                          const uint8_t *vt, const attn_next *nx, int nr, int nk, int HS, float scale) {
    attn_prefetch_next(nx);
    gen_page(acc, m, l, q, kt, vt, HERD_Q8_0, nr, nk, HS, scale);
}

static int gen_supports(int type, int HS) {
    return type == HERD_F32 || type == HERD_F16 || (type == HERD_Q8_0 && HS % 32 == 0);
}
