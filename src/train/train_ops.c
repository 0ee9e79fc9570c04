/* train_ops.c - the float32 ops of training, each a _forward / _backward pair, as
 * llm.c's train_gpt2.c lays them out. Plain C with OpenMP over independent output
 * rows; `omp simd` reductions let the compiler vectorise dot products. Each output
 * element is summed by one thread in a fixed order, so results do not depend on
 * the thread count. The matmul also has an untouched scalar reference (*_ref) that
 * the fast one is tested against.
 * Not here: quantized weights (training keeps float32 master weights).
 */
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"
#include "train/train.h"

/* ---- embedding ---------------------------------------------------------------- */

void embedding_forward(float *out, const int32_t *ids, const float *wte, int N, int C) {
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * C, wte + (size_t)ids[n] * C, (size_t)C * sizeof(float));
}

/* Serial over n: two rows may share an id, and a fixed order keeps it deterministic. */
void embedding_backward(float *dwte, const float *dout, const int32_t *ids, int N, int C) {
    for (int n = 0; n < N; n++) {
        float *d = dwte + (size_t)ids[n] * C;
        const float *g = dout + (size_t)n * C;
        for (int i = 0; i < C; i++) d[i] += g[i];
    }
}

/* ---- rmsnorm ------------------------------------------------------------------ */

void rmsnorm_train_forward(float *out, float *rstd, const float *x, const float *w, int N, int C,
                           float eps) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *xn = x + (size_t)n * C;
        float *on = out + (size_t)n * C;
        float ss = 0.0f;
        for (int i = 0; i < C; i++) ss += xn[i] * xn[i];
        const float r = 1.0f / sqrtf(ss / (float)C + eps);
        for (int i = 0; i < C; i++) on[i] = (xn[i] * r) * w[i];
        rstd[n] = r;
    }
}

/* y_i = w_i x_i r with r = (mean x^2 + eps)^-1/2:
 * dx_j = r (w_j g_j - x_j r^2 sum_i(w_i g_i x_i) / C),  dw_i += g_i x_i r. */
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *rstd,
                      const float *w, int N, int C) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *g = dout + (size_t)n * C, *xn = x + (size_t)n * C;
        float *d = dx + (size_t)n * C;
        const float r = rstd[n];
        float dot = 0.0f;
        for (int i = 0; i < C; i++) dot += w[i] * g[i] * xn[i];
        const float k = r * r * r * dot / (float)C;
        for (int i = 0; i < C; i++) d[i] += r * w[i] * g[i] - k * xn[i];
    }
    /* dw: a reduction over n; one thread per column block keeps the order fixed */
#pragma omp parallel for schedule(static)
    for (int i0 = 0; i0 < C; i0 += 16) {
        int i1 = i0 + 16 < C ? i0 + 16 : C;
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * C, *xn = x + (size_t)n * C;
            for (int i = i0; i < i1; i++) dw[i] += g[i] * xn[i] * rstd[n];
        }
    }
}

/* ---- matmul (float32 weights) ------------------------------------------------- */

void matmul_train_forward_ref(float *out, const float *x, const float *w, int N, int IC, int OC) {
    for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++) {
            float s = 0.0f;
            for (int i = 0; i < IC; i++) s += x[(size_t)n * IC + i] * w[(size_t)o * IC + i];
            out[(size_t)n * OC + o] = s;
        }
}

void matmul_backward_ref(float *dx, float *dw, const float *dout, const float *x, const float *w,
                         int N, int IC, int OC, int accumulate) {
    if (dx)
        for (int n = 0; n < N; n++)
            for (int i = 0; i < IC; i++) {
                float s = accumulate ? dx[(size_t)n * IC + i] : 0.0f;
                for (int o = 0; o < OC; o++) s += dout[(size_t)n * OC + o] * w[(size_t)o * IC + i];
                dx[(size_t)n * IC + i] = s;
            }
    for (int o = 0; o < OC; o++)
        for (int i = 0; i < IC; i++) {
            float s = 0.0f;
            for (int n = 0; n < N; n++) s += dout[(size_t)n * OC + o] * x[(size_t)n * IC + i];
            dw[(size_t)o * IC + i] += s;
        }
}

enum { MB_N = 4, MB_O = 32 };

/* Tiles of MB_O weight rows (kept in cache) x MB_N input rows; the inner kernel
 * computes MB_N dot products against one weight row at once. */
void matmul_train_forward(float *out, const float *x, const float *w, int N, int IC, int OC) {
    if (herd_cpu_isa() >= HERD_ISA_AVX2) {
        matmul_train_forward_avx2(out, x, w, N, IC, OC);
        return;
    }
    const int n_ob = (OC + MB_O - 1) / MB_O, n_nb = (N + MB_N - 1) / MB_N;
#pragma omp parallel for collapse(2) schedule(static)
    for (int ob = 0; ob < n_ob; ob++)
        for (int nb = 0; nb < n_nb; nb++) {
            const int n0 = nb * MB_N, o0 = ob * MB_O;
            const int o1 = o0 + MB_O < OC ? o0 + MB_O : OC;
            if (n0 + MB_N <= N) {
                const float *x0 = x + (size_t)n0 * IC, *x1 = x0 + IC, *x2 = x1 + IC, *x3 = x2 + IC;
                for (int o = o0; o < o1; o++) {
                    const float *wo = w + (size_t)o * IC;
                    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#pragma omp simd reduction(+:s0, s1, s2, s3)
                    for (int i = 0; i < IC; i++) {
                        s0 += x0[i] * wo[i]; s1 += x1[i] * wo[i];
                        s2 += x2[i] * wo[i]; s3 += x3[i] * wo[i];
                    }
                    out[(size_t)n0 * OC + o] = s0;
                    out[(size_t)(n0 + 1) * OC + o] = s1;
                    out[(size_t)(n0 + 2) * OC + o] = s2;
                    out[(size_t)(n0 + 3) * OC + o] = s3;
                }
            } else {
                for (int n = n0; n < N; n++)
                    for (int o = o0; o < o1; o++) {
                        const float *xn = x + (size_t)n * IC, *wo = w + (size_t)o * IC;
                        float s = 0;
#pragma omp simd reduction(+:s)
                        for (int i = 0; i < IC; i++) s += xn[i] * wo[i];
                        out[(size_t)n * OC + o] = s;
                    }
            }
        }
}

/* dx rows are independent (threads over n); dw rows are independent (threads over
 * o). Both inner loops are axpys over contiguous rows. */
void matmul_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                     int N, int IC, int OC, int accumulate) {
    if (herd_cpu_isa() >= HERD_ISA_AVX2) {
        matmul_backward_avx2(dx, dw, dout, x, w, N, IC, OC, accumulate);
        return;
    }
    if (dx) {
#pragma omp parallel for schedule(static)
        for (int n = 0; n < N; n++) {
            float *d = dx + (size_t)n * IC;
            const float *g = dout + (size_t)n * OC;
            if (!accumulate) memset(d, 0, (size_t)IC * sizeof(float));
            for (int o = 0; o < OC; o++) {
                const float go = g[o];
                const float *wo = w + (size_t)o * IC;
#pragma omp simd
                for (int i = 0; i < IC; i++) d[i] += go * wo[i];
            }
        }
    }
#pragma omp parallel for schedule(static)
    for (int o = 0; o < OC; o++) {
        float *d = dw + (size_t)o * IC;
        for (int n = 0; n < N; n++) {
            const float go = dout[(size_t)n * OC + o];
            const float *xn = x + (size_t)n * IC;
#pragma omp simd
            for (int i = 0; i < IC; i++) d[i] += go * xn[i];
        }
    }
}

/* ---- rope --------------------------------------------------------------------- */

/* The angle is formed in float32 as torch.outer(t.float(), freqs) does. */
void rope_tables(float *cos_t, float *sin_t, const float *freqs, int T, int HS) {
    const int half = HS / 2;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < half; i++) {
            const float angle = (float)t * freqs[i];
            cos_t[(size_t)t * half + i] = cosf(angle);
            sin_t[(size_t)t * half + i] = sinf(angle);
        }
}

/* dir = +1 rotates by +angle (forward), -1 by -angle (the transpose: backward). */
static void rope_apply(float *x, const float *cos_t, const float *sin_t, int B, int T, int NH,
                       int HS, int interleaved, float dir) {
    const int half = HS / 2;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int h = 0; h < NH; h++) {
                float *v = x + (((size_t)b * T + t) * NH + h) * HS;
                for (int i = 0; i < half; i++) {
                    const float c = cos_t[(size_t)t * half + i], s = dir * sin_t[(size_t)t * half + i];
                    float *a = interleaved ? &v[2 * i] : &v[i];
                    float *bb = interleaved ? &v[2 * i + 1] : &v[i + half];
                    const float a0 = *a, b0 = *bb;
                    *a = a0 * c - b0 * s;
                    *bb = a0 * s + b0 * c;
                }
            }
}

void rope_train_forward(float *x, const float *cos_t, const float *sin_t, int B, int T, int NH,
                        int HS, int interleaved) {
    rope_apply(x, cos_t, sin_t, B, T, NH, HS, interleaved, 1.0f);
}

void rope_backward(float *dx, const float *cos_t, const float *sin_t, int B, int T, int NH,
                   int HS, int interleaved) {
    rope_apply(dx, cos_t, sin_t, B, T, NH, HS, interleaved, -1.0f);
}

/* ---- attention ---------------------------------------------------------------- */

void attention_train_forward(float *out, float *att, const float *q, const float *k,
                             const float *v, int B, int T, int NH, int NKV, int HS) {
    const float scale = 1.0f / sqrtf((float)HS);
    const int rep = NH / NKV, QD = NH * HS, KVD = NKV * HS;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const int kvh = h / rep;
            for (int t = 0; t < T; t++) {
                const float *qt = q + ((size_t)b * T + t) * QD + (size_t)h * HS;
                float *p = att + (((size_t)b * NH + h) * T + t) * T;
                float max = -INFINITY;
                for (int s = 0; s <= t; s++) {
                    const float *ks = k + ((size_t)b * T + s) * KVD + (size_t)kvh * HS;
                    float dot = 0.0f;
#pragma omp simd reduction(+:dot)
                    for (int i = 0; i < HS; i++) dot += qt[i] * ks[i];
                    p[s] = dot * scale;
                    if (p[s] > max) max = p[s];
                }
                float sum = 0.0f;
                for (int s = 0; s <= t; s++) { p[s] = expf(p[s] - max); sum += p[s]; }
                const float inv = 1.0f / sum;
                for (int s = 0; s <= t; s++) p[s] *= inv;
                for (int s = t + 1; s < T; s++) p[s] = 0.0f;
                float *ot = out + ((size_t)b * T + t) * QD + (size_t)h * HS;
                for (int i = 0; i < HS; i++) ot[i] = 0.0f;
                for (int s = 0; s <= t; s++) {
                    const float *vs = v + ((size_t)b * T + s) * KVD + (size_t)kvh * HS;
                    for (int i = 0; i < HS; i++) ot[i] += p[s] * vs[i];
                }
            }
        }
}

/* Threads over (b, kv head): the query heads sharing a kv head run in one thread,
 * so dk / dv sums have one writer. Per query t of head h:
 *   dv_s += p_s do_t;  dp_s = do_t . v_s;  ds_s = p_s (dp_s - sum_r p_r dp_r);
 *   dq_t = scale sum_s ds_s k_s;  dk_s += scale ds_s q_t. */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, int B, int T, int NH,
                        int NKV, int HS, float *scratch) {
    const float scale = 1.0f / sqrtf((float)HS);
    const int rep = NH / NKV, QD = NH * HS, KVD = NKV * HS;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++)
        for (int kvh = 0; kvh < NKV; kvh++) {
            float *dp = scratch + ((size_t)b * NKV + kvh) * T;
            for (int s = 0; s < T; s++) {
                memset(dk + ((size_t)b * T + s) * KVD + (size_t)kvh * HS, 0, (size_t)HS * sizeof(float));
                memset(dv + ((size_t)b * T + s) * KVD + (size_t)kvh * HS, 0, (size_t)HS * sizeof(float));
            }
            for (int h = kvh * rep; h < (kvh + 1) * rep; h++)
                for (int t = 0; t < T; t++) {
                    const float *p = att + (((size_t)b * NH + h) * T + t) * T;
                    const float *dot_ = dout + ((size_t)b * T + t) * QD + (size_t)h * HS;
                    const float *qt = q + ((size_t)b * T + t) * QD + (size_t)h * HS;
                    float *dqt = dq + ((size_t)b * T + t) * QD + (size_t)h * HS;
                    float wsum = 0.0f;
                    for (int s = 0; s <= t; s++) {
                        const float *vs = v + ((size_t)b * T + s) * KVD + (size_t)kvh * HS;
                        float *dvs = dv + ((size_t)b * T + s) * KVD + (size_t)kvh * HS;
                        float d = 0.0f;
                        const float ps = p[s];
#pragma omp simd reduction(+:d)
                        for (int i = 0; i < HS; i++) { d += dot_[i] * vs[i]; dvs[i] += ps * dot_[i]; }
                        dp[s] = d;
                        wsum += p[s] * d;
                    }
                    for (int i = 0; i < HS; i++) dqt[i] = 0.0f;
                    for (int s = 0; s <= t; s++) {
                        const float ds = p[s] * (dp[s] - wsum) * scale;
                        const float *ks = k + ((size_t)b * T + s) * KVD + (size_t)kvh * HS;
                        float *dks = dk + ((size_t)b * T + s) * KVD + (size_t)kvh * HS;
                        for (int i = 0; i < HS; i++) { dqt[i] += ds * ks[i]; dks[i] += ds * qt[i]; }
                    }
                }
        }
}

/* ---- swiglu ------------------------------------------------------------------- */

void swiglu_train_forward(float *out, const float *gate, const float *up, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int i = 0; i < F; i++) {
            const size_t j = (size_t)n * F + i;
            const float g = gate[j];
            out[j] = g / (1.0f + expf(-g)) * up[j];
        }
}

/* silu'(g) = sig(g) (1 + g (1 - sig(g))). */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, int N, int F) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        for (int i = 0; i < F; i++) {
            const size_t j = (size_t)n * F + i;
            const float g = gate[j], sg = 1.0f / (1.0f + expf(-g));
            dgate[j] = dout[j] * up[j] * sg * (1.0f + g * (1.0f - sg));
            dup[j] = dout[j] * g * sg;
        }
}

/* ---- cross-entropy ------------------------------------------------------------ */

static void row_max_sum(const float *l, int V, float *max, double *sum) {
    float m = -INFINITY;
    for (int i = 0; i < V; i++) if (l[i] > m) m = l[i];
    double s = 0.0;
    for (int i = 0; i < V; i++) s += exp((double)(l[i] - m));
    *max = m;
    *sum = s;
}

double crossentropy_forward(float *losses, const float *logits, const int32_t *targets, int N,
                            int V) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * V;
        float max; double sum;
        row_max_sum(l, V, &max, &sum);
        losses[n] = (float)(log(sum) - (double)(l[targets[n]] - max));
    }
    double total = 0.0;
    for (int n = 0; n < N; n++) total += losses[n];
    return total / N;
}

void crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                           float dloss, int N, int V) {
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++) {
        const float *l = logits + (size_t)n * V;
        float *d = dlogits + (size_t)n * V;
        /* one float exp per logit (kept in d), summed in double; d may alias l */
        float max = -INFINITY;
        for (int i = 0; i < V; i++) if (l[i] > max) max = l[i];
        double sum = 0.0;
        for (int i = 0; i < V; i++) {
            d[i] = expf(l[i] - max);
            sum += d[i];
        }
        const float inv = (float)(1.0 / sum);
        for (int i = 0; i < V; i++) d[i] = dloss * (d[i] * inv);
        d[targets[n]] -= dloss;
    }
}
