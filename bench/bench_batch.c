/* bench_batch.c - the batched forward alone (no HTTP): decode steps of B = 1, 2, 4,
 * 8, 16 sequences in one herd_session_eval_batch, interleaved across B, reporting
 * the median ms per step, aggregate tok/s and the ratio to B = 1.
 *
 *   cc -O2 -fopenmp -Iinclude bench/bench_batch.c build/libherd.a -lpcre2-8 -lcjson \
 *      -lmicrohttpd -lm -lpthread -o build/bench_batch
 *   build/bench_batch MODEL.gguf [THREADS] [REPS] [B] [P]
 * With B, only that batch size runs, REPS times (up to 400: for a profiler).
 * With P too: a new request's P-token prompt, the three ways a scheduler can run
 * it next to B - 1 decoding sequences, interleaved, medians: B decodes alone, the
 * prompt alone, and B - 1 decodes + the prompt in one step (herd serve runs a
 * short prompt alone, for its time to first token, at most every other step).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "herd.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: bench_batch MODEL [THREADS] [REPS] [B]\n"); return 2; }
    int threads = argc > 2 ? atoi(argv[2]) : 0, reps = argc > 3 ? atoi(argv[3]) : 5;
    int only = argc > 4 ? atoi(argv[4]) : 0;
    herd_error err;
    herd_model *m;
    if (herd_model_load(&m, argv[1], &err)) { fprintf(stderr, "herd: %s\n", err.msg); return 1; }
    enum { NS = 16, NB = 5, PROMPT = 32 };
    const int Bs[NB] = { 1, 2, 4, 8, 16 };
    herd_session_params sp = herd_session_default_params();
    sp.n_ctx = 512;
    sp.kv_type = HERD_F16; /* as herd serve's default */
    sp.n_threads = threads;
    herd_kv_pool *pool;
    if (herd_kv_pool_new(&pool, m, sp, NS, 0, &err)) { fprintf(stderr, "herd: %s\n", err.msg); return 1; }
    herd_session *s[NS];
    int32_t prompt[PROMPT], tok[NS];
    for (int i = 0; i < PROMPT; i++) prompt[i] = 1000 + 37 * i;
    for (int j = 0; j < NS; j++) {
        if (herd_session_new_on_pool(&s[j], pool, &err)) { fprintf(stderr, "herd: %s\n", err.msg); return 1; }
        tok[j] = 500 + j;
    }
    /* the same prompt for everyone: prefill once, share the rest */
    herd_session_eval(s[0], prompt, PROMPT, NULL, &err);
    for (int j = 1; j < NS; j++) herd_session_share_prefix(s[j], s[0], PROMPT, &err);
    const int32_t *ids[NS];
    int n[NS];
    for (int j = 0; j < NS; j++) ids[j] = &tok[j], n[j] = 1;
    const int P = argc > 5 ? atoi(argv[5]) : 0;
    if (only > 0 && P > 0) {
        enum { PMAX = 256 };
        if (only > NS) only = NS;
        if (reps > 64) reps = 64;
        int32_t pr[PMAX];
        const int np = P < PMAX ? P : PMAX;
        for (int i = 0; i < np; i++) pr[i] = 2000 + 11 * i;
        double t[3][64];
        for (int r = 0; r < reps; r++)
            for (int v = 0; v < 3; v++) { /* 0: B decodes, 1: the prompt alone, 2: B - 1 decodes + the prompt */
                herd_session *ss[NS];
                const int32_t *id2[NS];
                int n2[NS], k = 0;
                if (v != 1)
                    for (int j = 0; j < (v == 0 ? only : only - 1); j++) ss[k] = s[j], id2[k] = &tok[j], n2[k++] = 1;
                herd_session *np_s = s[only - 1]; /* v = 2 leaves its decode out */
                if (v != 0) ss[k] = np_s, id2[k] = pr, n2[k++] = np;
                double t0 = now();
                if (herd_session_eval_batch(ss, id2, n2, k, &err)) { fprintf(stderr, "herd: %s\n", err.msg); return 1; }
                t[v][r] = now() - t0;
                if (v != 0) herd_session_rewind(np_s, PROMPT);
                else for (int j = 0; j < only; j++) herd_session_rewind(s[j], PROMPT); /* contexts stay put */
            }
        static const char *const what[3] = { "decodes", "prompt alone", "decodes - 1 + prompt" };
        for (int v = 0; v < 3; v++) {
            qsort(t[v], (size_t)reps, sizeof(double), cmp);
            printf("B %d, P %d: %-22s %7.2f ms (median of %d)\n", only, np, what[v], t[v][reps / 2] * 1e3, reps);
        }
        return 0;
    }
    if (only > 0) {
        if (only > NS) only = NS;
        double t0 = now();
        for (int r = 0; r < reps && r < 100000; r++)
            if (herd_session_eval_batch(s, ids, n, only, &err)) { fprintf(stderr, "herd: %s\n", err.msg); return 1; }
        double dt = (now() - t0) / reps;
        printf("batch %d: %.1f ms/step, %.2f tok/s (mean of %d)\n", only, dt * 1e3, only / dt, reps);
        return 0;
    }
    if (reps > 64) reps = 64;
    double t[NB][64];
    for (int r = 0; r < reps; r++)
        for (int b = 0; b < NB; b++) {
            double t0 = now();
            if (herd_session_eval_batch(s, ids, n, Bs[b], &err)) { fprintf(stderr, "herd: %s\n", err.msg); return 1; }
            t[b][r] = now() - t0;
        }
    printf("%6s %12s %10s %8s\n", "batch", "ms/step", "tok/s", "x B=1");
    double base = 0;
    for (int b = 0; b < NB; b++) {
        qsort(t[b], (size_t)reps, sizeof(double), cmp);
        double med = t[b][reps / 2], tps = Bs[b] / med;
        if (b == 0) base = tps;
        printf("%6d %12.1f %10.2f %8.2f\n", Bs[b], med * 1e3, tps, tps / base);
    }
    for (int j = 0; j < NS; j++) herd_session_free(s[j]);
    herd_kv_pool_free(pool);
    herd_model_free(m);
    return 0;
}
