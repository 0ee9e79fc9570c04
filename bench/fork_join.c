/* fork_join.c - what one parallel region costs: OpenMP (libgomp, as herd's kernels use
 * it) against a persistent pool of threads spinning on an atomic generation counter
 * (the alternative issue 3 asks to measure). Not a test.
 *
 * A "region" is: wake the other threads, every thread runs a job of W nanoseconds of
 * arithmetic on its own data, all wait until every thread is done (a fork and a
 * join). Printed per region: median ns over -r runs of N regions, and the overhead,
 * i.e. that less the job alone on one thread. Also an OpenMP barrier inside one
 * region (what matmul_forward pays between quantizing x and its rows).
 * A herd decode step of the 1B model runs ~145 regions and ~113 barriers
 * (16 layers x (7 matmuls + attention + swiglu) + the output projection; the barriers:
 * each Q4_0 / Q8_0 matmul's, between quantizing x and its rows).
 *
 * Build and run: make fork-join && OMP_NUM_THREADS=2 build/fork_join [-r REPS] [-n REGIONS] [W_NS ...]
 * (jobs of 0, 2000 and 20000 ns by default).
 *
 * Measured 2026-12-01 on the 2-core AMD EPYC VM (Zen 5, AVX-512), 2 threads, -r 5 -n 10000,
 * two runs: an OpenMP region costs 3.0-3.7 us more than its job, 4.3-4.9 us with a barrier
 * inside; the spinning pool 0.4-1.2 us. On a ~15 ms 1B Q4_0 decode step (~145 regions,
 * ~113 barriers) OpenMP's share is ~0.6 ms, a pool's would be ~0.1 ms: ~3% of decode, less
 * of a batched step. The pool spins while idle, so it needs the cores to itself: with
 * a spinning thread of each kind at once (3 on 2 cores) OpenMP's overhead went from ~3 to
 * 13-59 us and the pool's from 0.4-1.2 to 3.5-41 us here.
 */
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <immintrin.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ~w ns of dependent float arithmetic (calibrated below); sink keeps it alive */
static long iters_per_ns_x1000;
static volatile float sink[64 * 16];
static void job(int ith, long w_ns) {
    long n = w_ns * iters_per_ns_x1000 / 1000;
    float a = 1.0f + (float)ith, b = 0.999f;
    for (long i = 0; i < n; i++) a = a * b + 1e-7f;
    sink[ith * 16] = a;
}

static void calibrate(void) {
    iters_per_ns_x1000 = 1000;
    double t0 = now();
    job(0, 20000000); /* 2e7 iterations */
    double ns = (now() - t0) * 1e9;
    iters_per_ns_x1000 = (long)(2e7 / ns * 1000);
    if (iters_per_ns_x1000 < 1) iters_per_ns_x1000 = 1;
}

/* ---- the spinning pool ----------------------------------------------------------- */

typedef struct {
    int n;                       /* threads, the caller included */
    pthread_t th[64];
    _Atomic unsigned gen;        /* bumped by the caller to start a region */
    _Atomic int done;            /* workers finished with the current region */
    _Atomic int stop;
    long w_ns;
} pool;

typedef struct { pool *p; int ith; } worker_arg;

static void *worker(void *arg) {
    worker_arg *wa = arg;
    pool *p = wa->p;
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen) {
            if (atomic_load_explicit(&p->stop, memory_order_relaxed)) return NULL;
            _mm_pause();
        }
        seen = g;
        job(wa->ith, p->w_ns);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static void pool_run(pool *p, long w_ns) {
    p->w_ns = w_ns;
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&p->gen, 1, memory_order_release);
    job(0, w_ns);
    while (atomic_load_explicit(&p->done, memory_order_acquire) != p->n - 1) _mm_pause();
}

int main(int argc, char **argv) {
    int reps = 7, regions = 20000, n_w = 0;
    long ws[16];
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) regions = atoi(argv[++i]);
        else if (n_w < 16) ws[n_w++] = atol(argv[i]);
    }
    if (!n_w) ws[0] = 0, ws[1] = 2000, ws[2] = 20000, n_w = 3;
    if (reps > 64) reps = 64;
    if (regions < 1) regions = 1;
    calibrate();
    const int nth = omp_get_max_threads();
    printf("fork_join: %d threads, %d regions per run, median of %d runs; ns per region (overhead: less the job alone)\n",
           nth, regions, reps);
    printf("%8s %14s %16s %16s %16s\n", "job ns", "job alone", "omp parallel", "omp + barrier", "spin pool");
    double med[16][4];
    /* OpenMP first, then the pool's threads exist only while it is measured: a
     * spinning thread of one would take a core from the other (2 cores here) */
    for (int k = 0; k < n_w; k++) {
        const long w = ws[k];
        double t[3][64];
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            for (int i = 0; i < regions; i++) job(0, w);
            t[0][r] = (now() - t0) / regions;
            t0 = now();
            for (int i = 0; i < regions; i++) {
#pragma omp parallel
                job(omp_get_thread_num(), w);
            }
            t[1][r] = (now() - t0) / regions;
            t0 = now();
            for (int i = 0; i < regions; i++) {
#pragma omp parallel
                {
                    job(omp_get_thread_num(), w / 2);
#pragma omp barrier
                    job(omp_get_thread_num(), w - w / 2);
                }
            }
            t[2][r] = (now() - t0) / regions;
        }
        for (int j = 0; j < 3; j++) {
            qsort(t[j], (size_t)reps, sizeof(double), cmp_d);
            med[k][j] = t[j][reps / 2] * 1e9;
        }
    }
    struct timespec pause = { 0, 200000000 }; /* libgomp's idle threads stop spinning */
    nanosleep(&pause, NULL);
    static worker_arg wa[64];
    static pool p;
    p.n = nth > 64 ? 64 : nth;
    for (int i = 1; i < p.n; i++) {
        wa[i] = (worker_arg){ &p, i };
        pthread_create(&p.th[i], NULL, worker, &wa[i]);
    }
    for (int k = 0; k < n_w; k++) {
        double t[64];
        for (int r = 0; r < reps; r++) {
            double t0 = now();
            for (int i = 0; i < regions; i++) pool_run(&p, ws[k]);
            t[r] = (now() - t0) / regions;
        }
        qsort(t, (size_t)reps, sizeof(double), cmp_d);
        med[k][3] = t[reps / 2] * 1e9;
    }
    atomic_store(&p.stop, 1);
    for (int i = 1; i < p.n; i++) pthread_join(p.th[i], NULL);
    for (int k = 0; k < n_w; k++) {
        const double *m = med[k];
        printf("%8ld %14.0f %8.0f (+%5.0f) %8.0f (+%5.0f) %8.0f (+%5.0f)\n", ws[k], m[0], m[1], m[1] - m[0], m[2],
               m[2] - m[0], m[3], m[3] - m[0]);
    }
    return 0;
}
