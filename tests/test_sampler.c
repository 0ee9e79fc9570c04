/* test_sampler.c - sampling filters: greedy, temperature, top-k, Meta's top-p,
 * min-p, repetition penalty and seed determinism, checked on small hand-made
 * distributions whose answers are known in closed form. */
#include <math.h>
#include <stdint.h>

#include "herd.h"
#include "test.h"

static herd_sampler *mk(float temp, int top_k, float top_p, float min_p, float rep, uint64_t seed) {
    herd_sampler_params p = herd_sampler_default_params();
    p.temperature = temp; p.top_k = top_k; p.top_p = top_p; p.min_p = min_p;
    p.repeat_penalty = rep; p.seed = seed;
    herd_sampler *s = NULL;
    herd_error err;
    if (herd_sampler_new(&s, p, 8, &err)) { fprintf(stderr, "%s\n", err.msg); exit(1); }
    return s;
}

/* counts of each id over n draws */
static void histogram(herd_sampler *s, const float *logits, int n, int *counts) {
    memset(counts, 0, 8 * sizeof *counts);
    for (int i = 0; i < n; i++) counts[herd_sampler_sample(s, logits, NULL, 0)]++;
}

int main(void) {
    herd_error err;
    /* probabilities 0.5, 0.25, 0.125, 0.0625, ... from logits log(p) */
    float logits[8];
    double p[8] = { 0.5, 0.25, 0.125, 0.0625, 0.03125, 0.015625, 0.0078125, 0.0078125 };
    for (int i = 0; i < 8; i++) logits[i] = (float)log(p[i]);
    int counts[8];

    herd_sampler *s = mk(0, 0, 1, 0, 1, 1);
    CHECK(herd_sampler_sample(s, logits, NULL, 0) == 0);
    herd_sampler_free(s);

    /* temperature 1, no filter: frequencies follow p */
    s = mk(1, 0, 1, 0, 1, 7);
    histogram(s, logits, 40000, counts);
    for (int i = 0; i < 4; i++) CHECK_NEAR(counts[i] / 40000.0, p[i], 0.01);
    herd_sampler_free(s);

    /* top-k 2: only ids 0 and 1, in ratio 2:1 */
    s = mk(1, 2, 1, 0, 1, 7);
    histogram(s, logits, 30000, counts);
    CHECK(counts[0] + counts[1] == 30000);
    CHECK_NEAR(counts[0] / 30000.0, 2.0 / 3.0, 0.015);
    herd_sampler_free(s);

    /* Meta top-p 0.6: keep while mass before the token <= 0.6: ids 0 (0) and 1 (0.5);
     * id 2 has 0.75 before it and is dropped. */
    s = mk(1, 0, 0.6f, 0, 1, 3);
    histogram(s, logits, 30000, counts);
    CHECK(counts[0] + counts[1] == 30000);
    CHECK(counts[1] > 0);
    herd_sampler_free(s);
    /* top-p 0.51: mass before id 1 is 0.5 (not > 0.51) so it stays too */
    s = mk(1, 0, 0.51f, 0, 1, 3);
    histogram(s, logits, 20000, counts);
    CHECK(counts[0] + counts[1] == 20000 && counts[1] > 0);
    herd_sampler_free(s);
    /* top-p 0.4: only id 0 */
    s = mk(1, 0, 0.4f, 0, 1, 3);
    histogram(s, logits, 1000, counts);
    CHECK(counts[0] == 1000);
    herd_sampler_free(s);

    /* min-p 0.2: keep p >= 0.1 -> ids 0, 1, 2 */
    s = mk(1, 0, 1, 0.2f, 1, 5);
    histogram(s, logits, 30000, counts);
    CHECK(counts[0] + counts[1] + counts[2] == 30000 && counts[2] > 0);
    herd_sampler_free(s);

    /* low temperature sharpens: at T=0.25 id 0 has p ~ 0.5^4 / sum */
    s = mk(0.25f, 0, 1, 0, 1, 9);
    histogram(s, logits, 20000, counts);
    CHECK(counts[0] > 18500);
    herd_sampler_free(s);

    /* repetition penalty: with id 0 in history and penalty huge, greedy picks id 1 */
    s = mk(0, 0, 1, 0, 1000, 1);
    int32_t hist[2] = { 0, 0 };
    /* logits of id 0 are negative (log 0.5): multiplied by the penalty */
    CHECK(herd_sampler_sample(s, logits, hist, 2) == 1);
    herd_sampler_free(s);

    /* same seed, same sequence; another seed, another sequence */
    herd_sampler *a = mk(1, 0, 1, 0, 1, 123), *b = mk(1, 0, 1, 0, 1, 123), *c = mk(1, 0, 1, 0, 1, 124);
    int same = 1, diff = 0;
    for (int i = 0; i < 200; i++) {
        int x = herd_sampler_sample(a, logits, NULL, 0), y = herd_sampler_sample(b, logits, NULL, 0);
        int z = herd_sampler_sample(c, logits, NULL, 0);
        same &= x == y;
        diff |= x != z;
    }
    CHECK(same);
    CHECK(diff);
    herd_sampler_free(a); herd_sampler_free(b); herd_sampler_free(c);

    /* greedy over a vocabulary the size of Llama 3's (and sizes that leave a tail
     * after the 16-wide blocks): the first index of the largest logit wins */
    {
        enum { BV = 128256 + 13 };
        static float big[BV];
        const int sizes[] = { 1, 15, 17, 4096, 128256, BV };
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
            const int V = sizes[k];
            herd_sampler_params gp = herd_sampler_default_params();
            gp.temperature = 0;
            herd_sampler *g = NULL;
            CHECK(herd_sampler_new(&g, gp, V, &err) == HERD_OK);
            for (int i = 0; i < V; i++) big[i] = (float)((i * 7919) % 1009) * 0.01f - 5;
            int want = 0; /* by the definition: scan for the first strict maximum */
            for (int i = 1; i < V; i++) if (big[i] > big[want]) want = i;
            CHECK(herd_sampler_sample(g, big, NULL, 0) == want);
            big[V - 1] = 100; /* the very last entry (a tail element for most sizes) */
            CHECK(herd_sampler_sample(g, big, NULL, 0) == V - 1);
            if (V > 3) {
                big[V / 2] = 100; /* a tie: the lower index wins */
                CHECK(herd_sampler_sample(g, big, NULL, 0) == V / 2);
                big[1] = NAN; /* NaN never wins */
                big[0] = NAN;
                CHECK(herd_sampler_sample(g, big, NULL, 0) == V / 2);
            }
            for (int i = 0; i < V; i++) big[i] = -INFINITY;
            CHECK(herd_sampler_sample(g, big, NULL, 0) == 0);
            herd_sampler_free(g);
        }
    }

    /* bad parameters are rejected with a message */
    herd_sampler_params bad = herd_sampler_default_params();
    bad.top_p = 0;
    herd_sampler *x = NULL;
    CHECK(herd_sampler_new(&x, bad, 8, &err) == HERD_ERR_ARG && strstr(err.msg, "top-p"));
    TEST_MAIN_END("test_sampler");
}
