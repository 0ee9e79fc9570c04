/* optim.c - AdamW, global-norm gradient clipping and the learning-rate schedule.
 * AdamW follows PyTorch's single-tensor formulation (torch.optim.AdamW, foreach
 * off) operation for operation, so a reference run in torch tracks herd closely:
 *   p *= 1 - lr wd;  m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *   p -= (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps).
 * Which tensors decay is the trainer's choice (2-D weights, not norm gains).
 */
#include <math.h>

#include "train/train.h"

void adamw_update(float *p, const float *g, float *m, float *v, size_t n, const adamw_params *a,
                  float wd, uint64_t t) {
    const double bc1 = 1.0 - pow(a->beta1, (double)t), bc2 = 1.0 - pow(a->beta2, (double)t);
    const float step_size = (float)(a->lr / bc1), bc2_sqrt = (float)sqrt(bc2);
    const float decay = (float)(1.0 - (double)a->lr * wd);
    const float b1 = a->beta1, b2 = a->beta2, eps = a->eps;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float pi = p[i] * decay;
        m[i] = m[i] * b1 + g[i] * (1.0f - b1);
        v[i] = v[i] * b2 + g[i] * g[i] * (1.0f - b2);
        const float denom = sqrtf(v[i]) / bc2_sqrt + eps;
        p[i] = pi - step_size * (m[i] / denom);
    }
}

double grad_global_norm(const float *g, size_t n) {
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
    return sqrt(ss);
}

float lr_schedule(int step, int steps, int warmup, float lr, int cosine) {
    if (step < warmup) return lr * (float)(step + 1) / (float)warmup;
    if (!cosine) return lr;
    const double lr_min = 0.1 * lr;
    const int span = steps - warmup > 1 ? steps - warmup : 1;
    double progress = (double)(step - warmup) / span;
    if (progress > 1.0) progress = 1.0;
    return (float)(lr_min + 0.5 * (1.0 + cos(M_PI * progress)) * (lr - lr_min));
}
