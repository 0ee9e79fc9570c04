/* bench_kernels.c - matmul speed per weight type (not part of the tests).
 *   shapes: OC x IC = 2048 x 2048 and 8192 x 2048, T = 1 (GB/s of weights read;
 *           enough copies of the weight are cycled to defeat the 32 MiB L3) and
 *           T = 128 (GFLOP/s, 2 flops per multiply-add); weights packed where this
 *           CPU packs them (as a model's are);
 *   decode: the matmuls of one Llama 3.2 1B token (16 layers of q k v o gate up
 *           down + the 128256-row output), weights in memory, as tokens/s: the
 *           kernel-only ceiling of herd's decode, to hold against llama.cpp's tg
 *           (weights packed as herd_model_load packs them, where this CPU packs);
 *           `--batch B`: B tokens per step (the server's batched decode).
 *   --resident TYPE OC IC T: the packed Q4_0 / Q8_0 kernel alone on a weight that
 *           stays in L2 (one thread; x prepared once): its issue rate.
 * Usage: bench_kernels [--decode] [--batch B] [types...] (default F32 F16 BF16 Q8_0 Q4_0; also Q4_K Q5_K
 * Q6_K); OMP_NUM_THREADS. Besides wall time it prints the process CPU time per
 * call (cpu us): on a shared machine, with 1 thread, that is the kernel's cost
 * with the waits for other processes left out.
 * Build: cc -O2 -fopenmp -Iinclude -Isrc bench/bench_kernels.c build/libherd.a -lm -o /tmp/bk
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/core.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* n_rows rows of a valid random weight: 64 distinct rows repeated. */
static void *make_rows(int type, int64_t oc, int64_t ic, herd_rng *rng) {
    const size_t rb = kern_row_bytes(type, ic);
    uint8_t *w = aligned_alloc(64, (rb * (size_t)oc + 63) & ~(size_t)63);
    float *f = malloc((size_t)ic * 4);
    if (!w || !f) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (int64_t o = 0; o < oc; o++) {
        uint8_t *row = w + (size_t)o * rb;
        if (o >= 64) { memcpy(row, w + (size_t)(o % 64) * rb, rb); continue; }
        for (int64_t i = 0; i < ic; i++) f[i] = (float)herd_rng_normal(rng) * 0.05f;
        for (int64_t i = 0; i < ic; i++) {
            uint16_t h = type == HERD_F16 ? herd_f32_to_f16(f[i]) : herd_f32_to_bf16(f[i]);
            if (type == HERD_F32) memcpy(row + 4 * i, &f[i], 4);
            else if (type == HERD_F16 || type == HERD_BF16) memcpy(row + 2 * i, &h, 2);
        }
        if (type == HERD_Q8_0) quantize_row_q8_0_ref((block_q8_0 *)row, f, ic);
        if (type == HERD_Q4_0) quantize_row_q4_0_ref((block_q4_0 *)row, f, ic);
        if (type == HERD_Q4_K) quantize_row_q4_K_ref((block_q4_K *)row, f, ic);
        if (type == HERD_Q5_K) quantize_row_q5_K_ref((block_q5_K *)row, f, ic);
        if (type == HERD_Q6_K) quantize_row_q6_K_ref((block_q6_K *)row, f, ic);
    }
    free(f);
    return w;
}

static void bench_shape(int type, int64_t oc, int64_t ic, int T, herd_rng *rng) {
    const size_t bytes = kern_row_bytes(type, ic) * (size_t)oc;
    int n_copies = T == 1 ? (int)((256u << 20) / bytes + 1) : 1;
    if (n_copies > 64) n_copies = 64;
    herd_weight *w = calloc((size_t)n_copies, sizeof *w);
    void *data = make_rows(type, oc * n_copies, ic, rng);
    for (int c = 0; c < n_copies; c++) { /* packed as herd_model_load packs them, where this CPU packs */
        w[c] = (herd_weight){ type, (uint8_t *)data + (size_t)c * bytes, ic, oc, NULL };
        matmul_pack(&w[c], NULL, NULL);
    }
    float *x = malloc((size_t)T * ic * 4), *out = malloc((size_t)T * oc * 4);
    void *scratch = aligned_alloc(64, (matmul_scratch_size(type, T, ic) + 63) & ~(size_t)63);
    for (size_t i = 0; i < (size_t)T * ic; i++) x[i] = (float)herd_rng_normal(rng);
    for (int c = 0; c < n_copies; c++) matmul_forward(out, x, &w[c], T, scratch); /* warm */
    int iters = 0;
    double t0 = now(), c0 = cpu_now(), el;
    do {
        matmul_forward(out, x, &w[iters % n_copies], T, scratch);
        iters++;
        el = now() - t0;
    } while (el < 0.5 || iters < 3);
    const double per = el / iters, cpu = (cpu_now() - c0) / iters;
    printf("%-5s %-6s %5lld x %-5lld T %-4d %8.1f us (cpu %8.1f us)  %6.1f GB/s  %7.1f GFLOP/s\n", herd_type_name(type),
           w[0].packed ? "packed" : herd_cpu_matmul_path(type), (long long)oc, (long long)ic, T, per * 1e6, cpu * 1e6, bytes / per * 1e-9,
           2.0 * oc * ic * T / per * 1e-9);
    for (int c = 0; c < n_copies; c++) matmul_unpack(&w[c]);
    free(scratch); free(x); free(out); free(data); free(w);
}

/* One 1B decode token's matmuls: 16 x (q 2048, k 512, v 512, o 2048, gate 8192,
 * up 8192 from 2048; down 2048 from 8192) + output 128256 from 2048. */
static void bench_decode(int type, int T, herd_rng *rng) {
    enum { L = 16 };
    static const int64_t shapes[7][2] = { { 2048, 2048 }, { 512, 2048 }, { 512, 2048 }, { 2048, 2048 },
                                          { 8192, 2048 }, { 8192, 2048 }, { 2048, 8192 } };
    herd_weight w[L * 7 + 1];
    size_t total = 0;
    for (int l = 0; l < L; l++)
        for (int k = 0; k < 7; k++) {
            w[l * 7 + k] = (herd_weight){ type, make_rows(type, shapes[k][0], shapes[k][1], rng), shapes[k][1], shapes[k][0], NULL };
            total += kern_row_bytes(type, shapes[k][1]) * shapes[k][0];
        }
    w[L * 7] = (herd_weight){ type, make_rows(type, 128256, 2048, rng), 2048, 128256, NULL };
    total += kern_row_bytes(type, 2048) * 128256;
    for (int i = 0; i < L * 7 + 1; i++) matmul_pack(&w[i], NULL, NULL);
    float *x = calloc((size_t)T * 8192, 4), *out = calloc((size_t)T * 128256, 4);
    void *scratch = aligned_alloc(64, (matmul_scratch_size(type, T, 8192) + 63) & ~(size_t)63);
    for (int i = 0; i < T * 8192; i++) x[i] = (float)herd_rng_normal(rng);
    double best = 1e9, best_cpu = 1e9;
    for (int rep = 0; rep < 6; rep++) {
        double t0 = now(), c0 = cpu_now();
        for (int i = 0; i < L * 7 + 1; i++) matmul_forward(out, x, &w[i], T, scratch);
        double el = now() - t0, cpu = cpu_now() - c0;
        if (rep > 0 && el < best) best = el;
        if (rep > 0 && cpu < best_cpu) best_cpu = cpu;
    }
    printf("decode %-5s %-6s B %-2d %.3f GB/step  %7.2f ms (cpu %7.2f ms)  %6.2f tok/s  %5.1f GB/s\n",
           herd_type_name(type), w[0].packed ? "packed" : herd_cpu_matmul_path(type), T, total * 1e-9, best * 1e3,
           best_cpu * 1e3, T / best, total / best * 1e-9);
    for (int i = 0; i < L * 7 + 1; i++) {
        matmul_unpack(&w[i]);
        free((void *)w[i].data);
    }
    free(x); free(out); free(scratch);
}

/* The AVX-512 packed kernel alone (zp_rows_small, one thread) on one OC x IC
 * weight small enough to stay in L2, T tokens prepared once: its issue rate
 * without memory in the way (1 vpdpbusd = 64 multiply-adds, Q4_0 / Q8_0). */
static void bench_resident(int type, int64_t oc, int64_t ic, int T, herd_rng *rng) {
    herd_weight w = { type, make_rows(type, oc, ic, rng), ic, oc, NULL };
    if (!herd_cpu()->avx512f || matmul_pack(&w, NULL, NULL) == 0 || !zp_small(&w, T)) {
        printf("resident: %s is not packed for the small-T kernels on this CPU\n", herd_type_name(type));
        free((void *)w.data);
        return;
    }
    float *x = malloc((size_t)T * ic * 4), *out = malloc((size_t)T * oc * 4);
    void *scratch = aligned_alloc(64, (matmul_scratch_size(type, T, ic) + 63) & ~(size_t)63);
    for (int64_t i = 0; i < T * ic; i++) x[i] = (float)herd_rng_normal(rng);
    mm_act a;
    memset(&a, 0, sizeof a);
    mm_isa_avx512.prep(&a, x, type, T, 0, mm_isa_avx512.layout(&a, x, type, T, ic, scratch));
    const long iters = 4e9 / ((double)oc * ic * T) > 10 ? (long)(4e9 / ((double)oc * ic * T)) : 10;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
        for (long it = 0; it < iters; it++) zp_rows_small(out, &a, &w, T, 0, oc);
        const double el = now() - t0, macs = (double)oc * ic * T * iters;
        printf("resident %-5s %lld x %lld T %d: %7.1f GFLOP/s, %.3f G vpdpbusd/s\n", herd_type_name(type),
               (long long)oc, (long long)ic, T, 2 * macs / el * 1e-9, macs / 64 / el * 1e-9);
    }
    matmul_unpack(&w);
    free(scratch); free(x); free(out); free((void *)w.data);
}

int main(int argc, char **argv) {
    static const char *names[] = { "F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K" };
    static const int ids[] = { HERD_F32, HERD_F16, HERD_BF16, HERD_Q8_0, HERD_Q4_0, HERD_Q4_K, HERD_Q5_K, HERD_Q6_K };
    int types[16], nt = 0, decode_only = 0, batch = 1;
    for (int a = 1; a < argc; a++) {
        if (!strcmp(argv[a], "--decode")) { decode_only = 1; continue; }
        if (!strcmp(argv[a], "--batch") && a + 1 < argc) { batch = atoi(argv[++a]); decode_only = 1; continue; }
        if (!strcmp(argv[a], "--resident") && a + 4 < argc) { /* TYPE OC IC T */
            herd_rng rng;
            herd_rng_seed(&rng, 1);
            for (int k = 0; k < 8; k++)
                if (!strcmp(argv[a + 1], names[k]))
                    bench_resident(ids[k], atoll(argv[a + 2]), atoll(argv[a + 3]), atoi(argv[a + 4]), &rng);
            return 0;
        }
        for (int k = 0; k < 8 && nt < 16; k++) if (!strcmp(argv[a], names[k])) types[nt++] = ids[k];
    }
    if (!nt) for (int k = 0; k < 5; k++) types[nt++] = ids[k];
    herd_rng rng;
    herd_rng_seed(&rng, 1);
    printf("threads %d\n", omp_get_max_threads());
    for (int k = 0; k < nt; k++) {
        if (!decode_only) {
            bench_shape(types[k], 2048, 2048, 1, &rng);
            bench_shape(types[k], 8192, 2048, 1, &rng);
            bench_shape(types[k], 2048, 2048, 128, &rng);
            bench_shape(types[k], 8192, 2048, 128, &rng);
        }
        bench_decode(types[k], batch < 1 ? 1 : batch, &rng);
    }
    return 0;
}
