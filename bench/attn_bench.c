/* attn_bench.c - the cost of kv_attend (paged flash attention) at long context,
 * for Llama 3.2 1B's attention shape (NH 32, NKV 8, HS 64; 16 layers). Not a test.
 *   decode:  one query at position S-1 over S cached positions (T = 1);
 *   prefill: a 128-token chunk at positions S/2-64 .. S/2+63, whose per-token
 *            cost is the average per-token attention cost of prefilling an
 *            S-token prompt (a chunk's cost grows linearly with its position).
 * Prints ms per token for the whole model (x 16 layers) and, for decode, the
 * KV bytes streamed per second. Medians of -r runs.
 * Build and run: make attn-bench && [CPU=1] build/attn_bench [-r N] [-t f32,f16,q8_0] [S ...]
 *
 * Measured 2026-11-29 on the 2-core AMD EPYC VM (AVX2, no AVX-512; shared, load
 * 5-10), CPU=1 OMP_NUM_THREADS=1 build/attn_bench -r 5, ms per token, 16 layers:
 *            decode 512 / 8K / 32K          prefill 512 / 8K / 32K
 *   F32      2.4 / 129 / 615                0.75 / 15.6 / 63.9
 *   F16      1.9 /  83 / 359                0.93 / 12.8 / 50.5
 *   Q8_0     2.5 /  45 / 188                1.41 / 15.8 / 64.9
 * Decode at 8K / 32K streams the cache at 3.0-4.2 GB/s: the machine's read
 * bandwidth in the same minute (bandwidth.c, 2 threads) was 3.0 GB/s median.
 * The whole 1B Q4_0 model (herd bench -p N -n 0 -r 1 -t 1 --kv f16, CPU time)
 * took 50.1 ms/token at pp512 and 48.8 at pp2048; adding the attention above,
 * prefill at 8K would cost ~1.24x and at 32K ~2.0x the 512 figure per token.
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "kernels/kernels.h"
#include "kvcache.h"

enum { NH = 32, NKV = 8, HS = 64, LAYERS = 16, CHUNK = 128 };

/* The machine is shared: with CPU=1 in the environment, time is the process's
 * CPU time divided by the thread count (robust to being descheduled; exact
 * with OMP_NUM_THREADS=1), else wall-clock time. */
static double now(void) {
    static int cpu = -1;
    if (cpu < 0) cpu = getenv("CPU") && atoi(getenv("CPU")) == 1;
    struct timespec ts;
    clock_gettime(cpu ? CLOCK_PROCESS_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    if (cpu) return (ts.tv_sec + ts.tv_nsec * 1e-9) / omp_get_max_threads();
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void die(const char *what, herd_error *err) {
    fprintf(stderr, "attn_bench: %s: %s\n", what, err->msg);
    exit(1);
}

/* Median seconds of one kv_attend of T queries at pos0 (layer 0). */
static double time_attend(kv_seq *s, int pos0, int T, int reps, const float *q, const float *k,
                          const float *v, float *out, float *scr) {
    double t[64];
    if (reps > 64) reps = 64;
    kv_attend(s, 0, pos0, T, q, k, v, out, NH, scr); /* warm */
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        kv_attend(s, 0, pos0, T, q, k, v, out, NH, scr);
        t[r] = now() - t0;
    }
    qsort(t, (size_t)reps, sizeof t[0], cmp_d);
    return t[reps / 2];
}

static void bench_type(int type, int S, int reps) {
    herd_error err = { 0 };
    kv_pool *p;
    if (kv_pool_new(&p, type, 1, NKV, HS, (S + KV_PAGE - 1) / KV_PAGE, &err)) die("pool", &err);
    kv_seq s;
    if (kv_seq_init(&s, p, S, &err) || kv_seq_reserve(&s, S, &err)) die("sequence", &err);
    const int KVD = NKV * HS, QD = NH * HS;
    float *k = malloc((size_t)CHUNK * KVD * 4), *v = malloc((size_t)CHUNK * KVD * 4);
    float *q = malloc((size_t)CHUNK * QD * 4), *out = malloc((size_t)CHUNK * QD * 4);
    float *scr = malloc(kv_attend_scratch_size(CHUNK, NH, HS) * 4);
    herd_rng rng;
    herd_rng_seed(&rng, 7);
    for (int i = 0; i < CHUNK * KVD; i++) { k[i] = (float)herd_rng_normal(&rng); v[i] = (float)herd_rng_normal(&rng); }
    for (int i = 0; i < CHUNK * QD; i++) q[i] = (float)herd_rng_normal(&rng);
    for (int pos = 0; pos < S; pos += CHUNK) /* every page written (no zero-page reads) */
        kv_store(&s, 0, pos, S - pos < CHUNK ? S - pos : CHUNK, k, v);
    const double dec = time_attend(&s, S - 1, 1, reps, q, k, v, out, scr);
    const int pre_pos = S / 2 >= CHUNK / 2 ? S / 2 - CHUNK / 2 : 0;
    const double pre = time_attend(&s, pre_pos, CHUNK < S ? CHUNK : S, reps > 5 ? 5 : reps, q, k, v, out, scr);
    const double kv_bytes = (double)kv_pool_bytes(p) * S / ((S + KV_PAGE - 1) / KV_PAGE * KV_PAGE);
    printf("%-5s S %6d  decode %8.3f ms/token (%6.1f GB/s of KV)   prefill %8.3f ms/token\n",
           herd_type_name(type), S, dec * LAYERS * 1e3, kv_bytes / dec / 1e9,
           pre / (CHUNK < S ? CHUNK : S) * LAYERS * 1e3);
    fflush(stdout);
    kv_seq_free(&s);
    kv_pool_free(p);
    free(k); free(v); free(q); free(out); free(scr);
}

int main(int argc, char **argv) {
    int reps = 9, types[3] = { HERD_F32, HERD_F16, HERD_Q8_0 }, n_types = 3, sizes[16], n_sizes = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            n_types = 0;
            for (char *t = strtok(argv[++i], ","); t && n_types < 3; t = strtok(NULL, ","))
                types[n_types++] = !strcmp(t, "f32") ? HERD_F32 : !strcmp(t, "f16") ? HERD_F16 : HERD_Q8_0;
        } else if (n_sizes < 16) sizes[n_sizes++] = atoi(argv[i]);
    }
    if (!n_sizes) { sizes[0] = 512; sizes[1] = 8192; sizes[2] = 32768; n_sizes = 3; }
    printf("attn_bench: NH %d NKV %d HS %d x %d layers, %d threads, ISA %d\n", NH, NKV, HS, LAYERS,
           omp_get_max_threads(), herd_cpu_isa());
    for (int i = 0; i < n_types; i++)
        for (int j = 0; j < n_sizes; j++) bench_type(types[i], sizes[j], reps);
    return 0;
}
