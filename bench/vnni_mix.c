/* vnni_mix.c - how many vpdpbusd (AVX-512 VNNI, 512-bit) a core issues a cycle,
 * alone and mixed with the other ops of herd's Q4_0 / Q8_0 kernels (vcvtdq2ps,
 * vmulps, vfmadd231ps, vpandd / vpsrlw), and its latency: the bounds the
 * batched kernel (src/kernels/cpu/pack_avx512.c q_tn) is held against. Not part
 * of the tests. The clock is taken from a chain of dependent adds (one a cycle).
 * Build: cc -O2 -mavx512f -mavx512vnni bench/vnni_mix.c -o /tmp/vnni_mix
 */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

#define N 200000000L

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* one vpdpbusd into chain a##i */
#define D(i) __asm__ volatile("vpdpbusd %1, %2, %0" : "+v"(a##i) : "v"(w), "v"(x));
#define D8 D(0) D(1) D(2) D(3) D(4) D(5) D(6) D(7)
#define D16 D8 D(8) D(9) D(10) D(11) D(12) D(13) D(14) D(15)

int main(void) {
    __m512i a0 = _mm512_set1_epi32(0), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
    __m512i a8 = a0, a9 = a0, a10 = a0, a11 = a0, a12 = a0, a13 = a0, a14 = a0, a15 = a0;
    const __m512i w = _mm512_set1_epi32(3), x = _mm512_set1_epi32(5);
    __m512 f0 = _mm512_set1_ps(1), f1 = f0, c0 = f0, c1 = f0;
    const __m512 g = _mm512_set1_ps(1.0000001f);
    long v = 0;
    double t0 = now();
    for (long n = 0; n < N; n++) __asm__ volatile("add $1, %0" : "+r"(v));
    const double hz = N / (now() - t0);
    printf("clock ~%.2f GHz\n", hz * 1e-9);
#define RUN(label, per, body)                                                            \
    t0 = now();                                                                          \
    for (long n = 0; n < N / (per); n++) { body }                                        \
    printf("%-40s %.2f vpdpbusd a cycle\n", label, N / (now() - t0) / hz);
    RUN("4 chains (latency-bound)", 4, D(0) D(1) D(2) D(3))
    RUN("8 chains", 8, D8)
    RUN("16 chains", 16, D16)
    RUN("16 + 2 vcvtdq2ps", 16, D16 __asm__ volatile("vcvtdq2ps %1, %0" : "=v"(c0) : "v"(a0));
        __asm__ volatile("vcvtdq2ps %1, %0" : "=v"(c1) : "v"(a8));)
    RUN("16 + 2 vmulps", 16, D16 __asm__ volatile("vmulps %1, %2, %0" : "=v"(c0) : "v"(f0), "v"(g));
        __asm__ volatile("vmulps %1, %2, %0" : "=v"(c1) : "v"(f1), "v"(g));)
    RUN("16 + 2 vfmadd231ps", 16, D16 __asm__ volatile("vfmadd231ps %1, %2, %0" : "+v"(f0) : "v"(g), "v"(g));
        __asm__ volatile("vfmadd231ps %1, %2, %0" : "+v"(f1) : "v"(g), "v"(g));)
    RUN("16 + 2 vaddps", 16, D16 __asm__ volatile("vaddps %1, %2, %0" : "=v"(c0) : "v"(f0), "v"(g));
        __asm__ volatile("vaddps %1, %2, %0" : "=v"(c1) : "v"(f1), "v"(g));)
    RUN("16 + 2 vpandd + vpsrlw", 16, D16 __asm__ volatile("vpandd %1, %2, %0" : "=v"(a9) : "v"(w), "v"(x));
        __asm__ volatile("vpsrlw $4, %1, %0" : "=v"(a10) : "v"(w));
        __asm__ volatile("vpandd %1, %2, %0" : "=v"(a11) : "v"(w), "v"(x));)
    int s = _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a15));
    float fs = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(f0, f1), _mm512_add_ps(c0, c1)));
    printf("(checksum %d %g)\n", s, fs);
    return 0;
}
