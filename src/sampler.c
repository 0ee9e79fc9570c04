/* sampler.c - picks the next token from logits: greedy, or repetition penalty,
 * temperature, top-k, top-p (as Meta's sample_top_p: keep the smallest prefix of
 * the sorted distribution whose mass before each token is <= p), min-p, then a
 * seeded multinomial draw. Buffers are allocated once per sampler; samplers share
 * no state, so different ones may run on different threads at once.
 * Order of filters (as in common engines): penalty -> top-k -> temperature ->
 * softmax -> top-p -> min-p -> renormalise -> draw.
 */
#define _GNU_SOURCE /* qsort_r */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

struct herd_sampler {
    herd_sampler_params p;
    int n_vocab;
    herd_rng rng;
    float *work;    /* (V) logits after the penalty */
    double *prob;   /* (V) probabilities */
    int32_t *idx;   /* (V) candidate ids */
    uint8_t *seen;  /* (V) penalty markers, cleared after use */
};

herd_sampler_params herd_sampler_default_params(void) {
    herd_sampler_params p = { 0.6f, 0, 0.9f, 0.0f, 1.0f, 64, 0 };
    return p;
}

herd_status herd_sampler_new(herd_sampler **out, herd_sampler_params p, int n_vocab,
                             herd_error *err) {
    *out = NULL;
    if (!(p.temperature >= 0) || !(p.top_p > 0 && p.top_p <= 1) || !(p.min_p >= 0 && p.min_p <= 1) ||
        p.top_k < 0 || !(p.repeat_penalty > 0) || p.repeat_last_n < 0)
        return herd_errf(err, HERD_ERR_ARG, "bad sampling parameters: temperature %g (want >= 0), "
                         "top-p %g (0 < p <= 1), min-p %g (0 .. 1), top-k %d (>= 0), repeat "
                         "penalty %g (> 0)", (double)p.temperature, (double)p.top_p,
                         (double)p.min_p, p.top_k, (double)p.repeat_penalty);
    if (n_vocab <= 0) return herd_errf(err, HERD_ERR_ARG, "sampler: vocabulary size %d", n_vocab);
    herd_sampler *s = calloc(1, sizeof *s);
    if (!s) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    s->p = p;
    s->n_vocab = n_vocab;
    herd_rng_seed(&s->rng, p.seed);
    s->work = malloc((size_t)n_vocab * sizeof *s->work);
    s->prob = malloc((size_t)n_vocab * sizeof *s->prob);
    s->idx = malloc((size_t)n_vocab * sizeof *s->idx);
    s->seen = calloc((size_t)n_vocab, 1);
    if (!s->work || !s->prob || !s->idx || !s->seen) {
        herd_sampler_free(s);
        return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    }
    *out = s;
    return HERD_OK;
}

void herd_sampler_free(herd_sampler *s) {
    if (!s) return;
    free(s->work);
    free(s->prob);
    free(s->idx);
    free(s->seen);
    free(s);
}

/* The first index of the largest value (NaNs never win; 0 when none is
 * larger than -inf). 16 running maxima, then a scan for the first match: no
 * loop-carried index, so the 128K-entry vocabulary takes microseconds. */
static int32_t argmax(const float *x, int n) {
    float m[16];
    for (int j = 0; j < 16; j++) m[j] = -INFINITY;
    int i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) m[j] = x[i + j] > m[j] ? x[i + j] : m[j];
    for (; i < n; i++) m[0] = x[i] > m[0] ? x[i] : m[0];
    float mx = m[0];
    for (int j = 1; j < 16; j++) mx = m[j] > mx ? m[j] : mx;
    for (i = 0; i < n; i++)
        if (x[i] == mx) return i;
    return 0;
}

/* Sort key: descending value, then ascending id (deterministic). */
static int by_desc(const void *a, const void *b, void *keys) {
    const double *k = keys;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (k[i] != k[j]) return k[i] < k[j] ? 1 : -1;
    return i < j ? -1 : 1;
}

static void apply_penalty(herd_sampler *s, const int32_t *history, size_t n_history) {
    const herd_sampler_params *p = &s->p;
    size_t from = p->repeat_last_n && n_history > (size_t)p->repeat_last_n
                      ? n_history - (size_t)p->repeat_last_n : 0;
    for (size_t i = from; i < n_history; i++) {
        int32_t id = history[i];
        if (id < 0 || id >= s->n_vocab || s->seen[id]) continue;
        s->seen[id] = 1;
        s->work[id] = s->work[id] > 0 ? s->work[id] / p->repeat_penalty
                                      : s->work[id] * p->repeat_penalty;
    }
    for (size_t i = from; i < n_history; i++)
        if (history[i] >= 0 && history[i] < s->n_vocab) s->seen[history[i]] = 0;
}

int32_t herd_sampler_sample(herd_sampler *s, const float *logits, const int32_t *history,
                            size_t n_history) {
    const herd_sampler_params *p = &s->p;
    int V = s->n_vocab;
    const int penalise = p->repeat_penalty != 1.0f && n_history > 0;
    if (p->temperature <= 0 && !penalise) return argmax(logits, V);
    memcpy(s->work, logits, (size_t)V * sizeof(float));
    if (penalise) apply_penalty(s, history, n_history);
    if (p->temperature <= 0) return argmax(s->work, V);

    /* softmax(logits / temperature) in double */
    float maxl = s->work[argmax(s->work, V)];
    double sum = 0;
    for (int i = 0; i < V; i++) sum += (s->prob[i] = exp((double)(s->work[i] - maxl) / p->temperature));
    for (int i = 0; i < V; i++) s->prob[i] /= sum;

    /* Candidates, sorted by probability. Only tokens above a cut need sorting: the
     * ones below it hold at most V * cut = (1 - top_p) / 2 of the mass, so the
     * top-p prefix lies among the others; top-k needs at most k. */
    double cut = p->top_p < 1 ? (1.0 - p->top_p) / (2.0 * V) : 0;
    int n = 0;
    for (int i = 0; i < V; i++)
        if (s->prob[i] > cut) s->idx[n++] = i;
    qsort_r(s->idx, (size_t)n, sizeof(int32_t), by_desc, s->prob);
    if (p->top_k > 0 && p->top_k < n) n = p->top_k;

    /* top-p as Meta's sample_top_p: drop tokens whose preceding mass exceeds p */
    double cum = 0;
    int n_keep = n;
    for (int r = 0; r < n; r++) {
        if (cum > p->top_p) { n_keep = r; break; }
        cum += s->prob[s->idx[r]];
    }
    /* min-p: drop tokens below min_p times the top probability */
    if (p->min_p > 0) {
        double floor_p = p->min_p * s->prob[s->idx[0]];
        for (int r = 1; r < n_keep; r++)
            if (s->prob[s->idx[r]] < floor_p) { n_keep = r; break; }
    }
    double kept = 0;
    for (int r = 0; r < n_keep; r++) kept += s->prob[s->idx[r]];
    double u = herd_rng_uniform(&s->rng) * kept, acc = 0;
    for (int r = 0; r < n_keep; r++) {
        acc += s->prob[s->idx[r]];
        if (u < acc) return s->idx[r];
    }
    return s->idx[n_keep - 1];
}
