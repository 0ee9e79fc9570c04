/* ops_ref.c - the reference of every model op in kernels.h: matmul, rmsnorm,
 * rope (+ llama3 frequencies), causal GQA attention, swiglu, softmax.
 * Plain scalar float32 C that reads like Meta's model.py; never optimised and
 * never threaded. The fast kernels in cpu/ are tested against these.
 * Nothing here allocates: attention recomputes its scores instead of storing them.
 */
#include <math.h>

#include "core/core.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

/* out (T, OC) = x (T, IC) . w^T: each weight block dequantized to f32, f32 sums. */
void matmul_forward_ref(float *out, const float *x, const herd_weight *w, int T) {
    int bs; size_t bbytes;
    kern_block_geom(w->type, &bs, &bbytes);
    if (bs == 1) bs = 256; /* plain types: dequantize 256 elements at a time */
    const size_t row_bytes = kern_row_bytes(w->type, w->ic);
    const size_t chunk_bytes = kern_row_bytes(w->type, bs);
    float wb[256];
    for (int t = 0; t < T; t++) {
        for (int64_t o = 0; o < w->oc; o++) {
            const uint8_t *row = (const uint8_t *)w->data + (size_t)o * row_bytes;
            float sum = 0.0f;
            for (int64_t i0 = 0; i0 < w->ic; i0 += bs) {
                int64_t n = w->ic - i0 < bs ? w->ic - i0 : bs;
                dequant_row_ref(wb, row + (size_t)(i0 / bs) * chunk_bytes, w->type, n);
                for (int64_t i = 0; i < n; i++) sum += wb[i] * x[(size_t)t * w->ic + i0 + i];
            }
            out[(size_t)t * w->oc + o] = sum;
        }
    }
}

/* Meta: x * rsqrt(mean(x^2) + eps) * weight. */
void rmsnorm_forward_ref(float *out, const float *x, const float *w, int T, int C, float eps) {
    for (int t = 0; t < T; t++) {
        const float *xt = x + (size_t)t * C;
        float *ot = out + (size_t)t * C;
        float ss = 0.0f;
        for (int i = 0; i < C; i++) ss += xt[i] * xt[i];
        const float r = 1.0f / sqrtf(ss / (float)C + eps);
        for (int i = 0; i < C; i++) ot[i] = (xt[i] * r) * w[i];
    }
}

/* Meta's apply_rotary_emb: pair (a, b) rotated by angle pos * freqs[i], where the
 * angle is formed in float32 as torch.outer(t.float(), freqs) does. */
void rope_forward_ref(float *x, const float *freqs, int pos0, int T, int NH, int HS, int interleaved) {
    const int half = HS / 2;
    for (int t = 0; t < T; t++) {
        for (int h = 0; h < NH; h++) {
            float *v = x + ((size_t)t * NH + h) * HS;
            for (int i = 0; i < half; i++) {
                const float angle = (float)(pos0 + t) * freqs[i];
                const float c = cosf(angle), s = sinf(angle);
                float *a = interleaved ? &v[2 * i] : &v[i];
                float *b = interleaved ? &v[2 * i + 1] : &v[i + half];
                const float a0 = *a, b0 = *b;
                *a = a0 * c - b0 * s;
                *b = a0 * s + b0 * c;
            }
        }
    }
}

/* Element i of a KV cache stored as f32 (f16 = 0) or f16 (exactly widened). */
static float kv_at(const void *c, int f16, size_t i) {
    return f16 ? herd_f16_to_f32(((const uint16_t *)c)[i]) : ((const float *)c)[i];
}

/* For each new query t and head h (kv head h / (NH / NKV), Meta's repeat_kv):
 * softmax(q . k_s / sqrt(HS)) over s = 0 .. pos0 + t, then the weighted sum of v_s.
 * Three passes over the keys (max, normaliser, output) keep it allocation-free. */

static void attention_any_ref(float *out, const float *q, const void *kc, const void *vc, int f16,
                              int pos0, int T, int NH, int NKV, int HS) {
    const float scale = 1.0f / sqrtf((float)HS);
    const int rep = NH / NKV;
    for (int t = 0; t < T; t++) {
        const int n_keys = pos0 + t + 1; /* causal: keys 0 .. pos0 + t */
        for (int h = 0; h < NH; h++) {
            const float *qh = q + ((size_t)t * NH + h) * HS;
            const int kvh = h / rep;
            float *oh = out + ((size_t)t * NH + h) * HS;
            float max = -INFINITY;
            for (int s = 0; s < n_keys; s++) {
                const size_t k = ((size_t)s * NKV + kvh) * HS;
                float dot = 0.0f;
                for (int i = 0; i < HS; i++) dot += qh[i] * kv_at(kc, f16, k + i);
                if (dot * scale > max) max = dot * scale;
            }
            float sum = 0.0f;
            for (int i = 0; i < HS; i++) oh[i] = 0.0f;
            for (int s = 0; s < n_keys; s++) {
                const size_t k = ((size_t)s * NKV + kvh) * HS;
                float dot = 0.0f;
                for (int i = 0; i < HS; i++) dot += qh[i] * kv_at(kc, f16, k + i);
                const float p = expf(dot * scale - max);
                sum += p;
                for (int i = 0; i < HS; i++) oh[i] += p * kv_at(vc, f16, k + i);
            }
            for (int i = 0; i < HS; i++) oh[i] /= sum;
        }
    }
}

void attention_forward_ref(float *out, const float *q, const float *kc, const float *vc,
                           int pos0, int T, int NH, int NKV, int HS) {
    attention_any_ref(out, q, kc, vc, 0, pos0, T, NH, NKV, HS);
}

void attention_forward_f16_ref(float *out, const float *q, const uint16_t *kc, const uint16_t *vc,
                               int pos0, int T, int NH, int NKV, int HS) {
    attention_any_ref(out, q, kc, vc, 1, pos0, T, NH, NKV, HS);
}

void f32_to_f16_row_ref(uint16_t *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) out[i] = herd_f32_to_f16(x[i]);
}

/* Meta's feed_forward middle: silu(w1 x) * (w3 x), silu(x) = x / (1 + exp(-x)). */
void swiglu_forward_ref(float *out, const float *gate, const float *up, int T, int F) {
    for (size_t i = 0; i < (size_t)T * F; i++) {
        const float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void softmax_ref(float *x, int n) {
    float max = -INFINITY, sum = 0.0f;
    for (int i = 0; i < n; i++) if (x[i] > max) max = x[i];
    for (int i = 0; i < n; i++) { x[i] = expf(x[i] - max); sum += x[i]; }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

/* Meta's precompute_freqs_cis + apply_scaling, in float32 like the torch original:
 *   inv_freq[i] = 1 / theta^(2i / HS)
 *   wavelen = 2 pi / inv_freq
 *   wavelen < orig / high_freq_factor: unchanged; > orig / low_freq_factor: / factor;
 *   between: (1 - smooth) * inv_freq / factor + smooth * inv_freq,
 *            smooth = (orig / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor). */
void rope_freqs_llama3(float *freqs, int HS, float theta, int scaling, float factor,
                       float low_freq_factor, float high_freq_factor, int orig_max_pos) {
    const float low_freq_wavelen = (float)orig_max_pos / low_freq_factor;
    const float high_freq_wavelen = (float)orig_max_pos / high_freq_factor;
    for (int i = 0; i < HS / 2; i++) {
        const float freq = 1.0f / powf(theta, (float)(2 * i) / (float)HS);
        if (!scaling) { freqs[i] = freq; continue; }
        const float wavelen = 2.0f * (float)M_PI / freq;
        if (wavelen < high_freq_wavelen) {
            freqs[i] = freq;
        } else if (wavelen > low_freq_wavelen) {
            freqs[i] = freq / factor;
        } else {
            const float smooth = ((float)orig_max_pos / wavelen - low_freq_factor) /
                                 (high_freq_factor - low_freq_factor);
            freqs[i] = (1.0f - smooth) * freq / factor + smooth * freq;
        }
    }
}

void lora_forward_ref(const lora_proj *p, int n, const float *x, const int32_t *rows, int T, int64_t ic, float *t) {
    for (int k = 0; k < n; k++)
        for (int i = 0; i < T; i++) {
            const int64_t row = rows ? rows[i] : i;
            const float *xr = x + row * ic;
            for (int j = 0; j < p[k].r; j++) {
                float s = 0;
                for (int64_t c = 0; c < ic; c++) s += p[k].a[j * ic + c] * xr[c];
                t[j] = s;
            }
            float *o = p[k].out + row * p[k].oc;
            for (int j = 0; j < p[k].r; j++)
                for (int64_t c = 0; c < p[k].oc; c++) o[c] += t[j] * p[k].bt[j * p[k].oc + c];
        }
}
