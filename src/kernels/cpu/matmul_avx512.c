/* matmul_avx512.c - the mm_isa entry of CPUs with AVX-512 F/BW/VL + VNNI.
 * Compiled with AVX-512 flags; only called after dispatch.c checked the CPU.
 * Every T, decode included, runs the cache-blocked GEMM of gemm_avx512.c; this
 * file holds the mm_isa glue and the activation quantizer it shares.
 *
 * Why one path for every T: the server batches decode rows of many sequences
 * into one matmul, and a request's greedy output must not depend on its batch
 * neighbours, so row t of matmul(x, w, T) must be bitwise matmul(x_t, w, 1) for
 * every T (tests/test_kernels.c checks it). The GEMM accumulates each output in
 * one fixed order (per 32-block: exact integer dot, then acc += int * dw * dx in
 * block order; F32 / F16: acc += w_k * x_k in k order; BF16 the same by input
 * pairs, k + 1 before k, x rounded to bf16: cpu.h), whatever the token
 * tile; the former decode row kernels (16 lanes per row, reduced at the end)
 * summed in another order and broke that. For T = 1 the GEMM's repacking costs
 * about what the row kernels' lane shuffles cost (~150 vector ops per 32 rows x
 * 32-block, counted, not measured: this session's machine had no AVX-512).
 */
#include <immintrin.h>
#include <string.h>

#include "kernels/cpu/cpu.h"

static int z_supports(int type) { return gemm_z_supports(type, 1); }

static int64_t z_layout(mm_act *a, const float *x, int type, int T, int64_t ic, void *scratch) {
    return gemm_z_layout(a, x, type, T, ic, scratch);
}

/* q (32) = x (32) / d rounded to nearest even (MXCSR default), d = amax / 127:
 * the formula and rounding of mm_quantize_block_q8, so every ISA quantizes x
 * identically. Returns sum(q). */
int32_t z_quantize_block(int8_t *q, float *d, const float *x) {
    const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
    const float dd = amax / 127.0f, id = dd != 0.0f ? 1.0f / dd : 0.0f;
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, _mm512_set1_ps(id)));
    const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, _mm512_set1_ps(id)));
    _mm_storeu_si128((__m128i *)q, _mm512_cvtepi32_epi8(i0));
    _mm_storeu_si128((__m128i *)(q + 16), _mm512_cvtepi32_epi8(i1));
    *d = dd;
    return _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
}

static void z_prep(const mm_act *a, const float *x, int type, int T, int64_t i0, int64_t i1) {
    gemm_z_prep(a, x, type, T, i0, i1);
}

static void z_rows(float *out, const mm_act *a, const herd_weight *w, int T, int64_t r0, int64_t r1) {
    if (zp_small(w, T)) zp_rows_small(out, a, w, T, r0, r1); /* stream the packed rows */
    else gemm_z_rows(out, a, w, T, r0, r1);
}

const mm_isa mm_isa_avx512 = { "avx512", z_supports, z_layout, z_prep, z_rows };
