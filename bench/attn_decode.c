/* attn_decode.c - decode attention (one query row) as a model's step meets it:
 * 16 layers of 1B-shaped F16 tiles (NKV 8, HS 64) laid out as the KV pool lays
 * them out (a page holds every layer's tiles of 64 positions), pages in a
 * scattered order, so the cache streams from memory as it does in `herd
 * generate` at depth; bench/attn_bench.c times layer 0 alone, whose pages stay in
 * L3 between repeats. Prints the best of 7 steps: ms a token, GB/s of cache
 * read, ns a page-kernel call per thread. ISA=1 caps the kernels at AVX2.
 *   cc -O2 -fopenmp -Iinclude -Isrc bench/attn_decode.c build/libherd.a -lm -o build/attn_decode
 *   build/attn_decode [S ...]          (default 2048 8192 32768)
 */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "core/core.h"
#include "kernels/kernels.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void run(int S) {
    enum { L = 16, NKV = 8, NH = 32, HS = 64 };
    const int np = (S + ATTN_PAGE - 1) / ATTN_PAGE;
    const size_t tile = (size_t)HS * ATTN_PAGE * 2, page = (size_t)L * 2 * NKV * tile;
    uint8_t *base = mmap(NULL, page * np, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    int32_t *pages = malloc((size_t)np * sizeof *pages);
    float *q = malloc(NH * HS * 4), *out = malloc(NH * HS * 4), *scr = malloc(attention_paged_scratch_size(1, NH) * 4);
    if (base == MAP_FAILED || !pages || !q || !out || !scr) { fprintf(stderr, "out of memory\n"); exit(1); }
    for (size_t i = 0; i < page * np / 2; i++) ((uint16_t *)base)[i] = (uint16_t)(0x3000 + (i * 7919) % 0x800);
    for (int i = 0; i < np; i++) pages[i] = 1 + (int)((i * 37L) % np); /* a permutation while np % 37 != 0 */
    for (int i = 0; i < NH * HS; i++) q[i] = (float)(i % 13) * 0.01f;
    double best = 1e9;
    for (int r = 0; r < 7; r++) {
        const double t0 = now();
        for (int l = 0; l < L; l++) {
            const attn_paged_kv kv = { HERD_F16, NKV, HS, base, page, (size_t)l * 2 * NKV * tile, tile, pages };
            attention_paged_forward(out, q, &kv, S - 1, 1, NH, scr);
        }
        const double t = now() - t0;
        if (t < best) best = t;
    }
    printf("S %6d: %7.3f ms a token (16 layers), %5.1f GB/s of cache, %5.0f ns a page call per thread\n", S,
           best * 1e3, (double)page * np / best * 1e-9, best / ((double)np * NKV * L) * omp_get_max_threads() * 1e9);
    munmap(base, page * np);
    free(pages); free(q); free(out); free(scr);
}

int main(int argc, char **argv) {
    if (getenv("ISA")) herd_cpu_force_isa(atoi(getenv("ISA")));
    printf("decode attention, F16 cache, NH 32 NKV 8 HS 64 x 16 layers, %d threads, ISA %d\n",
           omp_get_max_threads(), herd_cpu_isa());
    if (argc < 2) {
        run(2048); run(8192); run(32768);
    }
    for (int i = 1; i < argc; i++) run(atoi(argv[i]));
    return 0;
}
