/* test_kernels.c - every fast kernel against its reference, on every ISA path this
 * CPU has (AVX-512, AVX2, scalar: herd_cpu_force_isa), plus hand-computed facts:
 * known quantized blocks, the llama3 rope frequencies of LLAMA31.md, the causal
 * mask, rope's norm preservation and the interleaved / rotate-half equivalence.
 *
 * Tolerances: err = ||fast - ref||_2 / ||ref||_2 over the whole output.
 *  - F32 / F16 weights: 1e-5 (float summation order only).
 *  - BF16: AVX2 / scalar widen w exactly to f32, x unrounded: 1e-5 as F32.
 *    AVX-512 rounds x to bf16 (vdpbf16ps, cpu/cpu.h): 5e-3 vs the f32 reference
 *    (x's relative rounding error is uniform within 2^-9: ~1e-3 of a dot),
 *    1e-5 vs the reference on the rounded x; and bitwise the same with the
 *    instruction or its FMA form, packed or not, denormals flushed.
 *  - K-quants quantize x to int8 per 256 (as llama.cpp's Q8_K): 2e-2 vs the f32
 *    reference, 1e-5 vs the reference on the quantized-then-dequantized x.
 *  - Q8_0 / Q4_0 quantize x to int8 per 32-block (step amax/127 ~ 0.017 for
 *    Gaussian x: error std ~0.5% of a dot): 2e-2 (4 sigma for a single output)
 *    vs the f32 reference, and 1e-5 vs the reference applied to the
 *    quantized-then-dequantized x (the integer dots are exact).
 *  Matmul errors are relative to max(||ref||, expected ||ref|| for the random
 *  inputs), so a 1-output case whose dot is near 0 does not fail by chance.
 *  - batch invariance: row t of a T-token matmul bitwise equal to the same row
 *    alone (T = 1), every type and path.
 *  - rmsnorm / rope / swiglu / attention: 2e-6 (swiglu's vector expf is ~2 ulp).
 */
#include <omp.h>
#include <stdint.h>

#include "core/core.h"
#include "kernels/cpu/cpu.h"
#include "kernels/kernels.h"
#include "test.h"

static herd_rng rng;
static int max_isa;
static const char *isa_name[] = { "scalar", "avx2", "avx512" };

static void fill_normal(float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = (float)herd_rng_normal(&rng) * scale;
}

/* ||a - b|| / max(||b||, floor): floor guards short outputs that happen to be
 * near zero (a single dot of random vectors can be small). */
static double rel_err_floor(const float *a, const float *b, size_t n, double floor) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    den = sqrt(den);
    return sqrt(num) / (den > floor ? den : floor > 0 ? floor : 1.0);
}
static double rel_err(const float *a, const float *b, size_t n) { return rel_err_floor(a, b, n, 0); }

static void *xmalloc(size_t n) {
    void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);
    if (!p) { fprintf(stderr, "out of memory\n"); exit(2); }
    return p;
}

/* ---- dequant / quantize against hand-computed blocks ------------------------ */

static void test_known_blocks(void) {
    uint8_t q8[34], q4[18], f16[4], bf16[4];
    float out[32];
    q8[0] = 0x00; q8[1] = 0x38; /* f16 0.5 */
    for (int j = 0; j < 32; j++) q8[2 + j] = (uint8_t)(int8_t)(j - 16);
    dequant_row_ref(out, q8, HERD_Q8_0, 32);
    for (int j = 0; j < 32; j++) CHECK_NEAR(out[j], (j - 16) * 0.5f, 0);
    q4[0] = 0x00; q4[1] = 0x40; /* f16 2.0 */
    for (int j = 0; j < 16; j++) q4[2 + j] = (uint8_t)(j | ((15 - j) << 4));
    dequant_row_ref(out, q4, HERD_Q4_0, 32);
    for (int j = 0; j < 16; j++) {
        CHECK_NEAR(out[j], (j - 8) * 2.0f, 0);
        CHECK_NEAR(out[j + 16], (15 - j - 8) * 2.0f, 0);
    }
    f16[0] = 0x00; f16[1] = 0x3C; f16[2] = 0x00; f16[3] = 0xC0;   /* 1.0, -2.0 */
    dequant_row_ref(out, f16, HERD_F16, 2);
    CHECK(out[0] == 1.0f && out[1] == -2.0f);
    bf16[0] = 0x80; bf16[1] = 0x3F; bf16[2] = 0x49; bf16[3] = 0x40; /* 1.0, 3.140625 */
    dequant_row_ref(out, bf16, HERD_BF16, 2);
    CHECK(out[0] == 1.0f && out[1] == 3.140625f);

    /* Q8_0: amax 127 -> d = 1, q = roundf(x) (halves away from zero) */
    float x[32];
    static const float xs[8] = { 127, 2.5f, -2.5f, 0.49f, -0.5f, 1.5f, -126.6f, 0 };
    static const int8_t qs[8] = { 127, 3, -3, 0, -1, 2, -127, 0 };
    for (int j = 0; j < 32; j++) x[j] = xs[j % 8];
    block_q8_0 b8;
    quantize_row_q8_0_ref(&b8, x, 32);
    CHECK(b8.d == 0x3C00);
    for (int j = 0; j < 32; j++) CHECKF(b8.qs[j] == qs[j % 8], "j %d: %d vs %d", j, b8.qs[j], qs[j % 8]);
    /* Q4_0: the largest magnitude is -16 -> d = 2, id = 0.5, q = min(15, (int)(x/2 + 8.5)) */
    static const float x4[8] = { -16, 14, 15.9f, 0, 1, -1, -1.2f, 3 };
    static const uint8_t q4e[8] = { 0, 15, 15, 8, 9, 8, 7, 10 };
    for (int j = 0; j < 32; j++) x[j] = j < 16 ? x4[j % 8] : x4[(j + 3) % 8];
    block_q4_0 b4;
    quantize_row_q4_0_ref(&b4, x, 32);
    CHECK(b4.d == 0x4000);
    for (int j = 0; j < 16; j++)
        CHECKF(b4.qs[j] == (q4e[j % 8] | (q4e[(j + 16 + 3) % 8] << 4)), "j %d: %02x", j, b4.qs[j]);
    /* all-zero blocks: d = 0, q = 0 (Q4_0: 8) */
    memset(x, 0, sizeof x);
    quantize_row_q8_0_ref(&b8, x, 32);
    quantize_row_q4_0_ref(&b4, x, 32);
    CHECK(b8.d == 0 && b8.qs[5] == 0 && (b4.d & 0x7fff) == 0 && b4.qs[3] == 0x88); /* d = -0 / 8 */
    /* round trip: |dequant(quant(x)) - x| <= d / 2 (Q8_0), <= d (Q4_0, clamp at 15) */
    fill_normal(x, 32, 1.0f);
    quantize_row_q8_0_ref(&b8, x, 32);
    quantize_row_q4_0_ref(&b4, x, 32);
    float y8[32], y4[32];
    dequant_row_ref(y8, &b8, HERD_Q8_0, 32);
    dequant_row_ref(y4, &b4, HERD_Q4_0, 32);
    const float d8 = herd_f16_to_f32(b8.d), d4 = fabsf(herd_f16_to_f32(b4.d));
    for (int j = 0; j < 32; j++) {
        CHECK_NEAR(y8[j], x[j], d8 * 0.5f + 1e-3f * d8);
        CHECK_NEAR(y4[j], x[j], d4 * 1.001f);
    }
}

/* ---- matmul ---------------------------------------------------------------- */

/* A weight (OC, IC) of type from Gaussian floats (K-quants: random bytes with
 * small f16 scales). Returns malloc'd rows. */
static void *make_weight(int type, int64_t oc, int64_t ic) {
    const size_t rb = kern_row_bytes(type, ic);
    uint8_t *w = xmalloc(rb * (size_t)oc);
    float *f = xmalloc((size_t)ic * sizeof(float));
    for (int64_t o = 0; o < oc; o++) {
        uint8_t *row = w + (size_t)o * rb;
        fill_normal(f, (size_t)ic, 0.05f);
        switch (type) {
        case HERD_F32: memcpy(row, f, (size_t)ic * 4); break;
        case HERD_F16:
            for (int64_t i = 0; i < ic; i++) { uint16_t h = herd_f32_to_f16(f[i]); memcpy(row + 2 * i, &h, 2); }
            break;
        case HERD_BF16:
            for (int64_t i = 0; i < ic; i++) { uint16_t h = herd_f32_to_bf16(f[i]); memcpy(row + 2 * i, &h, 2); }
            break;
        case HERD_Q8_0: quantize_row_q8_0_ref((block_q8_0 *)row, f, ic); break;
        case HERD_Q4_0: quantize_row_q4_0_ref((block_q4_0 *)row, f, ic); break;
        default: { /* K-quants: random bytes, then sane f16 scales at their offsets */
            for (size_t i = 0; i < rb; i++) row[i] = (uint8_t)herd_rng_next(&rng);
            const size_t bb = type == HERD_Q4_K ? 144 : type == HERD_Q5_K ? 176 : 210;
            for (size_t b = 0; b < rb / bb; b++) {
                uint16_t d = herd_f32_to_f16(0.001f * (float)(1 + b % 3)), m = herd_f32_to_f16(0.002f);
                uint8_t *blk = row + b * bb;
                if (type == HERD_Q6_K) memcpy(blk + 208, &d, 2);
                else { memcpy(blk, &d, 2); memcpy(blk + 2, &m, 2); }
            }
        }
        }
    }
    free(f);
    return w;
}

static void test_matmul_case(int type, int64_t ic, int64_t oc, int T) {
    herd_weight w = { type, make_weight(type, oc, ic), ic, oc, NULL };
    float *x = xmalloc((size_t)T * ic * 4), *xr = xmalloc((size_t)T * ic * 4);
    float *ref = xmalloc((size_t)T * oc * 4), *ref_r = xmalloc((size_t)T * oc * 4);
    float *out = xmalloc((size_t)T * oc * 4), *out_sc = xmalloc((size_t)T * oc * 4);
    fill_normal(x, (size_t)T * ic, 1.0f);
    matmul_forward_ref(ref, x, &w, T);
    const size_t ssz = matmul_scratch_size(type, T, ic);
    uint8_t *scratch = xmalloc(ssz);
    for (int isa = 0; isa <= max_isa; isa++) {
        herd_cpu_force_isa(isa);
        const char *path = herd_cpu_matmul_path(type);
        /* what this path computes: the reference on x as the path rounds it */
        memcpy(xr, x, (size_t)T * ic * 4);
        double tol_f32 = 1e-5;
        if (type == HERD_Q8_0 || type == HERD_Q4_0) {
            for (int64_t b = 0; b < (int64_t)T * ic / QK; b++) {
                int8_t q[QK]; float d;
                mm_quantize_block_q8(q, &d, x + b * QK);
                for (int j = 0; j < QK; j++) xr[b * QK + j] = (float)q[j] * d;
            }
            tol_f32 = 2e-2;
        } else if (type == HERD_Q4_K || type == HERD_Q5_K || type == HERD_Q6_K) {
            /* every path quantizes x per 256 (cpu.h), amax / 127, nearest even */
            for (int64_t b = 0; b < (int64_t)T * ic / 256; b++) {
                float amax = 0.0f;
                for (int j = 0; j < 256; j++) amax = fmaxf(amax, fabsf(x[b * 256 + j]));
                const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
                for (int j = 0; j < 256; j++) xr[b * 256 + j] = (float)lrintf(x[b * 256 + j] * id) * d;
            }
            tol_f32 = 2e-2;
        } else if (type == HERD_BF16 && isa == HERD_ISA_AVX512) {
            for (int64_t i = 0; i < (int64_t)T * ic; i++) xr[i] = herd_bf16_to_f32(herd_f32_to_bf16(x[i]));
            tol_f32 = 5e-3;
        }
        matmul_forward_ref(ref_r, xr, &w, T);
        memset(scratch, 0xAA, ssz); /* stale scratch must not leak into results */
        memset(out, 0xFF, (size_t)T * oc * 4);
        matmul_forward(out, x, &w, T, scratch);
        /* floor: the expected ||out|| for Gaussian x (rms 1) and w (rms ~0.05 for the
         * types made from floats), sqrt(T OC IC) * 0.05 */
        const double floor = type == HERD_Q4_K || type == HERD_Q5_K || type == HERD_Q6_K
                           ? 0 : sqrt((double)T * oc * ic) * 0.05;
        const size_t n = (size_t)T * oc;
        double e = rel_err_floor(out, ref, n, floor), er = rel_err_floor(out, ref_r, n, floor);
        CHECKF(e <= tol_f32, "%s ic %lld oc %lld T %d path %s: err vs f32 ref %.3g > %.3g",
               herd_type_name(type), (long long)ic, (long long)oc, T, path, e, tol_f32);
        CHECKF(er <= 1e-5, "%s ic %lld oc %lld T %d path %s: err vs ref on rounded x %.3g",
               herd_type_name(type), (long long)ic, (long long)oc, T, path, er);
        if (isa == 0) memcpy(out_sc, out, (size_t)T * oc * 4);
        else if (tol_f32 == 1e-5) { /* the same x as the scalar path */
            double es = rel_err_floor(out, out_sc, n, floor);
            CHECKF(es <= 1e-5, "%s ic %lld T %d: %s vs scalar %.3g", herd_type_name(type), (long long)ic, T, path, es);
        }
        if (ic == 2048 && oc == 100 && T == 17)
            printf("  matmul %-4s %-6s err vs f32 ref %.2e, vs ref on rounded x %.2e\n",
                   herd_type_name(type), path, e, er);
    }
    herd_cpu_force_isa(-1);
    free(scratch); free(x); free(xr); free(ref); free(ref_r); free(out); free(out_sc);
    free((void *)w.data);
}

static void test_matmul(void) {
    static const int types[] = { HERD_F32, HERD_F16, HERD_BF16, HERD_Q8_0, HERD_Q4_0 };
    static const int64_t ics[] = { 64, 96, 2048 }, ocs[] = { 1, 13, 100 };
    static const int Ts[] = { 1, 3, 17 };
    for (size_t ti = 0; ti < 5; ti++)
        for (int i = 0; i < 3; i++) for (int o = 0; o < 3; o++) for (int t = 0; t < 3; t++)
            test_matmul_case(types[ti], ics[i], ocs[o], Ts[t]);
    static const int ktypes[] = { HERD_Q4_K, HERD_Q5_K, HERD_Q6_K };
    for (int k = 0; k < 3; k++) {
        test_matmul_case(ktypes[k], 256, 13, 1);
        test_matmul_case(ktypes[k], 512, 37, 3);
        test_matmul_case(ktypes[k], 2304, 70, 9); /* AVX2: 4-token tiles and single tokens */
    }
    /* F32 with IC not a multiple of 8 or 16 (plain types have no blocks) */
    test_matmul_case(HERD_F32, 45, 19, 5);
    test_matmul_case(HERD_F16, 45, 19, 5);
    test_matmul_case(HERD_BF16, 45, 19, 5);
    /* the AVX-512 GEMM (T >= GEMM_MIN_T): odd IC, partial row panels, several
     * k-blocks (int8 k-blocks are 2048 wide, float ones 512), every token tile */
    static const int gtypes[] = { HERD_F32, HERD_F16, HERD_BF16 };
    for (int k = 0; k < 3; k++) {
        test_matmul_case(gtypes[k], 45, 19, GEMM_MIN_T);
        test_matmul_case(gtypes[k], 1101, 70, 31);
    }
    test_matmul_case(HERD_Q8_0, 4160, 70, 31);
    test_matmul_case(HERD_Q4_0, 4160, 70, 31);
    test_matmul_case(HERD_Q8_0, 32, 33, GEMM_MIN_T + 1);
    test_matmul_case(HERD_Q4_0, 96, 48, 128);
}

/* The first of rows 0 .. n - 1 (oc floats each) where a and b differ bitwise, or -1. */
static int first_diff_row(const float *a, const float *b, int n, int64_t oc) {
    for (int t = 0; t < n; t++)
        if (memcmp(a + (size_t)t * oc, b + (size_t)t * oc, (size_t)oc * 4) != 0) return t;
    return -1;
}

/* Batch invariance (the server batches decode rows of many sequences into one
 * matmul): row t of matmul_forward(x, w, T) must be bitwise identical to
 * matmul_forward(x_t, w, 1), for every type, ISA and T. IC = 2304 crosses the
 * AVX-512 GEMM's k-blocks (2048 int8, 512 f32); OC = 70 leaves partial panels. */
static void test_matmul_batch_invariance(void) {
    static const int types[] = { HERD_F32, HERD_F16, HERD_BF16, HERD_Q8_0, HERD_Q4_0, HERD_Q4_K, HERD_Q5_K, HERD_Q6_K };
    static const int Ts[] = { 1, 3, 16, 64, 130 };
    const int64_t ic = 2304, oc = 70;
    const int TMAX = 130;
    float *x = xmalloc((size_t)TMAX * ic * 4), *one = xmalloc((size_t)TMAX * oc * 4), *out = xmalloc((size_t)TMAX * oc * 4);
    fill_normal(x, (size_t)TMAX * ic, 1.0f);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        herd_weight w = { types[ti], make_weight(types[ti], oc, ic), ic, oc, NULL };
        uint8_t *scratch = xmalloc(matmul_scratch_size(types[ti], TMAX, ic));
        for (int isa = 0; isa <= max_isa; isa++) {
            herd_cpu_force_isa(isa);
            for (int t = 0; t < TMAX; t++) matmul_forward(one + (size_t)t * oc, x + (size_t)t * ic, &w, 1, scratch);
            for (int k = 0; k < 5; k++) {
                const int T = Ts[k];
                matmul_forward(out, x, &w, T, scratch);
                const int bad = first_diff_row(out, one, T, oc);
                CHECKF(bad < 0, "batch invariance %s path %s T %d: row %d differs from T = 1 (%.9g vs %.9g)",
                       herd_type_name(types[ti]), herd_cpu_matmul_path(types[ti]), T, bad,
                       bad < 0 ? 0.0 : out[(size_t)bad * oc], bad < 0 ? 0.0 : one[(size_t)bad * oc]);
            }
        }
        herd_cpu_force_isa(-1);
        free(scratch);
        free((void *)w.data);
    }
    free(x); free(one); free(out);
}

/* Packed weights (matmul_pack, AVX-512 only): every row of every T, decode's
 * own kernels (T = 1; T <= ZP_SMALL_T in tiles of 8 tokens and a tail of 1 .. 7) and the
 * GEMM fed from the packed copy (larger T), bitwise
 * equal to the unpacked AVX-512 path's T = 1. OC 70 / 150: partial last group,
 * the four-group kernel and its one-group tail; IC 2304 crosses the GEMM's
 * k-blocks. */
static void test_matmul_packed(void) {
    if (max_isa < HERD_ISA_AVX512) {
        printf("  packed matmul: skipped (this CPU has no AVX-512; the packed layout is AVX-512's)\n");
        return;
    }
    static const int types[] = { HERD_F32, HERD_F16, HERD_BF16, HERD_Q8_0, HERD_Q4_0 };
    /* decode, small-T tiles and tails (6, 7, 15: an 8-token tile padded), GEMM (T > ZP_SMALL_T) */
    static const int Ts[] = { 1, 3, 5, 6, 7, 15, 16, 17, 32, 33, 64, 130 };
    static const int64_t ocs[] = { 70, 150 };
    const int64_t ic = 2304;
    const int TMAX = 130;
    float *x = xmalloc((size_t)TMAX * ic * 4), *one = xmalloc((size_t)TMAX * 150 * 4), *out = xmalloc((size_t)TMAX * 150 * 4);
    fill_normal(x, (size_t)TMAX * ic, 1.0f);
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int oi = 0; oi < 2; oi++) {
            const int64_t oc = ocs[oi];
            herd_weight w = { types[ti], make_weight(types[ti], oc, ic), ic, oc, NULL };
            uint8_t *scratch = xmalloc(matmul_scratch_size(types[ti], TMAX, ic));
            for (int t = 0; t < TMAX; t++) matmul_forward(one + (size_t)t * oc, x + (size_t)t * ic, &w, 1, scratch);
            CHECKF(matmul_pack(&w, NULL, NULL) > 0 && w.packed, "matmul_pack %s", herd_type_name(types[ti]));
            for (int k = 0; k < (int)(sizeof Ts / sizeof Ts[0]) && w.packed; k++) {
                const int T = Ts[k];
                for (size_t i = 0; i < (size_t)TMAX * oc; i++) out[i] = NAN; /* a row not written fails */
                for (int rep = 0; rep < (T == 1 ? TMAX : 1); rep++) /* T = 1: every row alone */
                    matmul_forward(out + (size_t)rep * oc, x + (size_t)rep * ic, &w, T, scratch);
                const int n = T == 1 ? TMAX : T;
                const int bad = first_diff_row(out, one, n, oc);
                CHECKF(bad < 0, "packed %s OC %lld T %d: row %d differs from unpacked T = 1 (%.9g vs %.9g)",
                       herd_type_name(types[ti]), (long long)oc, T, bad,
                       bad < 0 ? 0.0 : out[(size_t)bad * oc], bad < 0 ? 0.0 : one[(size_t)bad * oc]);
                size_t past = (size_t)n * oc; /* rows after the T-th: not written (a padded tile stores T) */
                while (past < (size_t)TMAX * oc && isnan(out[past])) past++;
                CHECKF(past == (size_t)TMAX * oc, "packed %s OC %lld T %d: wrote past its %d rows",
                       herd_type_name(types[ti]), (long long)oc, T, T);
            }
            matmul_unpack(&w);
            CHECK(w.packed == NULL);
            free(scratch);
            free((void *)w.data);
        }
    free(x); free(one); free(out);
}

/* BF16 on AVX-512 (cpu/cpu.h): vdpbf16ps (packed) and its FMA form (packed with
 * the instruction turned off, and the unpacked GEMM) bitwise equal, for odd and
 * even IC (an odd IC's padded pair), every token tile and k-block, with denormal
 * x and w in the data (the instruction reads them as zero; the FMA form must
 * flush them the same way). */
static void test_matmul_bf16(void) {
    if (max_isa < HERD_ISA_AVX512) {
        printf("  bf16 matmul: skipped (no AVX-512)\n");
        return;
    }
    printf("  bf16 matmul: vdpbf16ps %s\n", herd_cpu()->avx512bf16 ? "on this CPU" : "absent (FMA form only)");
    static const int64_t ics[] = { 45, 1101, 4100 };
    static const int Ts[] = { 1, 5, 17, 40 };
    const int64_t oc = 70;
    const int TMAX = 40;
    for (int ii = 0; ii < 3; ii++) {
        const int64_t ic = ics[ii];
        herd_weight w = { HERD_BF16, make_weight(HERD_BF16, oc, ic), ic, oc, NULL };
        uint16_t *wr = (uint16_t *)w.data;
        /* denormal weights here and there, and all of row 7: the instruction's sum is 0 there */
        for (int64_t i = 3; i < oc * ic; i += 97) wr[i] = (uint16_t)((i & 1 ? 0x8000u : 0) | (1 + i % 0x7f));
        for (int64_t i = 7 * ic; i < 8 * ic; i++) wr[i] = (uint16_t)((i & 1 ? 0x8000u : 0) | (1 + i % 0x7f));
        float *x = xmalloc((size_t)TMAX * ic * 4), *one = xmalloc((size_t)TMAX * oc * 4), *out = xmalloc((size_t)TMAX * oc * 4);
        float *ref = xmalloc((size_t)TMAX * oc * 4);
        fill_normal(x, (size_t)TMAX * ic, 1.0f);
        /* denormal x here and there, and all of token 2's (its outputs: 0) */
        for (int64_t i = 5; i < TMAX * ic; i += 31) x[i] = (i & 1 ? -1e-39f : 1.5e-39f) * (float)(1 + i % 7); /* < 2^-126 */
        for (int64_t i = 2 * ic; i < 3 * ic; i++) x[i] = (i & 1 ? -1e-39f : 1.5e-39f) * (float)(1 + i % 7); /* < 2^-126 */
        uint8_t *scratch = xmalloc(matmul_scratch_size(HERD_BF16, TMAX, ic));
        for (int t = 0; t < TMAX; t++) matmul_forward(one + (size_t)t * oc, x + (size_t)t * ic, &w, 1, scratch);
        /* the same against the f32 reference on x rounded to bf16, denormals as zero */
        float *xr = xmalloc((size_t)TMAX * ic * 4);
        for (int64_t i = 0; i < TMAX * ic; i++) xr[i] = fabsf(x[i]) < 1.1754944e-38f ? 0.0f : herd_bf16_to_f32(herd_f32_to_bf16(x[i]));
        matmul_forward_ref(ref, xr, &w, TMAX);
        const double e = rel_err_floor(one, ref, (size_t)TMAX * oc, sqrt((double)TMAX * oc * ic) * 0.05);
        CHECKF(e <= 1e-5, "bf16 IC %lld: unpacked vs reference on rounded x %.3g", (long long)ic, e);
        int zeros = 1;
        for (int t = 0; t < TMAX; t++) zeros &= one[(size_t)t * oc + 7] == 0.0f;
        for (int64_t o = 0; o < oc; o++) zeros &= one[2 * oc + o] == 0.0f;
        CHECKF(zeros, "bf16 IC %lld: denormal w (row 7) or x (token 2) not read as zero", (long long)ic);
        CHECKF(matmul_pack(&w, NULL, NULL) > 0, "matmul_pack BF16 IC %lld", (long long)ic);
        for (int off = 0; off < 2; off++) {
            herd_cpu_force_bf16dot_off(off);
            for (int k = 0; k < 4; k++) {
                const int T = Ts[k];
                for (size_t i = 0; i < (size_t)TMAX * oc; i++) out[i] = NAN;
                for (int t0 = 0; t0 < TMAX; t0 += T)
                    matmul_forward(out + (size_t)t0 * oc, x + (size_t)t0 * ic, &w, TMAX - t0 < T ? TMAX - t0 : T, scratch);
                const int bad = first_diff_row(out, one, TMAX, oc);
                CHECKF(bad < 0, "bf16 IC %lld packed %s T %d: row %d differs from unpacked (%.9g vs %.9g)", (long long)ic,
                       off ? "FMA form" : "vdpbf16ps", T, bad, bad < 0 ? 0.0 : out[(size_t)bad * oc],
                       bad < 0 ? 0.0 : one[(size_t)bad * oc]);
            }
        }
        herd_cpu_force_bf16dot_off(0);
        matmul_unpack(&w);
        free(scratch); free(x); free(xr); free(one); free(out); free(ref);
        free((void *)w.data);
    }
}

/* Packed K-quants (AVX-512 only): against the weights dequantized by the scalar
 * reference times x as this path rounds it (per 32, like Q8_0), and bitwise
 * batch invariant (every T equals T = 1 row by row). IC 2304 = 9 super-blocks;
 * OC 70 / 150: partial quads. */
static void test_matmul_kpacked(void) {
    if (max_isa < HERD_ISA_AVX512) {
        printf("  packed K-quant matmul: skipped (this CPU has no AVX-512)\n");
        return;
    }
    static const int types[] = { HERD_Q4_K, HERD_Q5_K, HERD_Q6_K };
    static const int Ts[] = { 1, 3, 5, 16, 17, 64, 130 };
    static const int64_t ocs[] = { 70, 150 };
    const int64_t ic = 2304;
    const int TMAX = 130;
    float *x = xmalloc((size_t)TMAX * ic * 4), *xr = xmalloc((size_t)TMAX * ic * 4), *wr = xmalloc((size_t)ic * 4);
    float *one = xmalloc((size_t)TMAX * 150 * 4), *out = xmalloc((size_t)TMAX * 150 * 4), *ref = xmalloc((size_t)TMAX * 150 * 4);
    fill_normal(x, (size_t)TMAX * ic, 1.0f);
    for (int64_t b = 0; b < (int64_t)TMAX * ic / QK; b++) {
        int8_t q[QK]; float d;
        mm_quantize_block_q8(q, &d, x + b * QK);
        for (int j = 0; j < QK; j++) xr[b * QK + j] = (float)q[j] * d;
    }
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int oi = 0; oi < 2; oi++) {
            const int64_t oc = ocs[oi];
            herd_weight w = { types[ti], make_weight(types[ti], oc, ic), ic, oc, NULL };
            const size_t rb = (size_t)(ic / 256) * (types[ti] == HERD_Q4_K ? 144 : types[ti] == HERD_Q5_K ? 176 : 210);
            for (int64_t o = 0; o < oc; o++) {
                dequant_row_ref(wr, (const uint8_t *)w.data + o * rb, types[ti], ic);
                for (int t = 0; t < TMAX; t++) {
                    double s = 0;
                    for (int64_t k = 0; k < ic; k++) s += (double)wr[k] * xr[(size_t)t * ic + k];
                    ref[(size_t)t * oc + o] = (float)s;
                }
            }
            uint8_t *scratch = xmalloc(matmul_scratch_size(types[ti], TMAX, ic));
            CHECKF(matmul_pack(&w, NULL, NULL) > 0 && w.packed, "matmul_pack %s", herd_type_name(types[ti]));
            for (int t = 0; t < TMAX && w.packed; t++) matmul_forward(one + (size_t)t * oc, x + (size_t)t * ic, &w, 1, scratch);
            const double err = rel_err(one, ref, (size_t)TMAX * oc);
            CHECKF(err <= 2e-5, "packed %s OC %lld vs reference on x rounded per 32: rel err %.3g",
                   herd_type_name(types[ti]), (long long)oc, err);
            for (int k = 0; k < (int)(sizeof Ts / sizeof Ts[0]) && w.packed; k++) {
                const int T = Ts[k];
                if (T == 1) continue;
                for (size_t i = 0; i < (size_t)TMAX * oc; i++) out[i] = NAN; /* a row not written fails */
                matmul_forward(out, x, &w, T, scratch);
                const int bad = first_diff_row(out, one, T, oc);
                CHECKF(bad < 0, "packed %s OC %lld T %d: row %d differs from T = 1", herd_type_name(types[ti]),
                       (long long)oc, T, bad);
            }
            matmul_unpack(&w);
            free(scratch);
            free((void *)w.data);
        }
    free(x); free(xr); free(wr); free(one); free(out); free(ref);
}

/* matmul_forward_n (q, k, v over one x) is bitwise n matmul_forward calls: on
 * every ISA, unpacked and (AVX-512) packed, at decode, small-T and GEMM sizes,
 * with one weight of another type (each matmul on its own then) and with weights
 * whose row splits differ (OC 150, 70, 64). */
static void test_matmul_n(void) {
    static const int types[] = { HERD_F32, HERD_F16, HERD_BF16, HERD_Q8_0, HERD_Q4_0, HERD_Q4_K, HERD_Q6_K };
    static const int Ts[] = { 1, 5, 33, 130 };
    static const int64_t ocs[3] = { 150, 70, 64 };
    const int64_t ic = 2304;
    const int TMAX = 130;
    float *x = xmalloc((size_t)TMAX * ic * 4);
    fill_normal(x, (size_t)TMAX * ic, 1.0f);
    float *sep[3], *got[3];
    for (int j = 0; j < 3; j++) sep[j] = xmalloc((size_t)TMAX * 150 * 4), got[j] = xmalloc((size_t)TMAX * 150 * 4);
    int checked = 0;
    for (int isa = HERD_ISA_SCALAR; isa <= max_isa; isa++) {
        herd_cpu_force_isa(isa);
        for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
            for (int mixed = 0; mixed < 2; mixed++)
                for (int packed = 0; packed < 1 + (isa >= HERD_ISA_AVX512); packed++) {
                    herd_weight w[3];
                    for (int j = 0; j < 3; j++) {
                        const int type = mixed && j == 1 ? (types[ti] == HERD_Q8_0 ? HERD_F16 : HERD_Q8_0) : types[ti];
                        w[j] = (herd_weight){ type, make_weight(type, ocs[j], ic), ic, ocs[j], NULL };
                        if (packed) matmul_pack(&w[j], NULL, NULL);
                    }
                    size_t sb = 0;
                    for (int j = 0; j < 3; j++)
                        if (matmul_scratch_size(w[j].type, TMAX, ic) > sb) sb = matmul_scratch_size(w[j].type, TMAX, ic);
                    uint8_t *scratch = xmalloc(sb);
                    const herd_weight *wp[3] = { &w[0], &w[1], &w[2] };
                    for (int k = 0; k < 4; k++) {
                        const int T = Ts[k];
                        for (int j = 0; j < 3; j++) matmul_forward(sep[j], x, &w[j], T, scratch);
                        matmul_forward_n(got, x, wp, 3, T, scratch);
                        for (int j = 0; j < 3; j++) {
                            const int bad = first_diff_row(got[j], sep[j], T, ocs[j]);
                            CHECKF(bad < 0, "matmul_forward_n %s %s%s%s T %d: weight %d row %d differs from matmul_forward",
                                   isa_name[isa], herd_type_name(types[ti]), mixed ? " (+ another type)" : "",
                                   packed ? " packed" : "", T, j, bad);
                            checked++;
                        }
                    }
                    free(scratch);
                    for (int j = 0; j < 3; j++) {
                        matmul_unpack(&w[j]);
                        free((void *)w[j].data);
                    }
                }
    }
    herd_cpu_force_isa(-1);
    CHECK(checked >= 3 * 4 * 7 * 2);
    for (int j = 0; j < 3; j++) free(sep[j]), free(got[j]);
    free(x);
}

/* The row split follows the threads' speed (mm_run: own share, then the others'
 * from their back), so which thread computes a row varies from run to run: with
 * 3, 4 and 7 threads on this machine's cores (oversubscribed: threads are
 * preempted, shares are taken over) and from inside a parallel region (one
 * thread where more were asked: it runs every share), every type, packed and
 * not, must give bitwise the 1-thread result, every row written. */
static void test_matmul_threads(void) {
    static const int types[] = { HERD_F32, HERD_F16, HERD_BF16, HERD_Q8_0, HERD_Q4_0, HERD_Q4_K, HERD_Q6_K };
    static const int Ts[] = { 1, 8, 33 };
    const int64_t ic = 512, oc = 4166; /* 65 quads + 6 rows: shares of unequal length */
    const int TMAX = 33, saved = omp_get_max_threads();
    float *x = xmalloc((size_t)TMAX * ic * 4), *one = xmalloc((size_t)TMAX * oc * 4);
    float *out[2] = { xmalloc((size_t)TMAX * oc * 4), xmalloc((size_t)TMAX * oc * 4) };
    fill_normal(x, (size_t)TMAX * ic, 1.0f);
    int checked = 0;
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++)
        for (int packed = 0; packed < 1 + (max_isa >= HERD_ISA_AVX512); packed++) {
            herd_weight w = { types[ti], make_weight(types[ti], oc, ic), ic, oc, NULL };
            if (packed) matmul_pack(&w, NULL, NULL);
            uint8_t *scratch[2] = { xmalloc(matmul_scratch_size(w.type, TMAX, ic)), xmalloc(matmul_scratch_size(w.type, TMAX, ic)) };
            for (int k = 0; k < 3; k++) {
                const int T = Ts[k];
                omp_set_num_threads(1);
                matmul_forward(one, x, &w, T, scratch[0]);
                static const int nths[] = { 3, 4, 7, 0 }; /* 0: two calls, each inside a 2-thread region */
                for (int c = 0; c < 4; c++)
                    for (int rep = 0; rep < 3; rep++) {
                        for (int o = 0; o < 2; o++)
                            for (size_t i = 0; i < (size_t)T * oc; i++) out[o][i] = NAN; /* a row not written fails */
                        if (nths[c]) {
                            omp_set_num_threads(nths[c]);
                            matmul_forward(out[0], x, &w, T, scratch[0]);
                        } else {
                            omp_set_num_threads(2);
#pragma omp parallel num_threads(2)
                            matmul_forward(out[omp_get_thread_num()], x, &w, T, scratch[omp_get_thread_num()]);
                        }
                        for (int o = 0; o < (nths[c] ? 1 : 2); o++) {
                            const int bad = first_diff_row(out[o], one, T, oc);
                            CHECKF(bad < 0, "matmul %s%s T %d, %d threads%s: row %d differs from 1 thread",
                                   herd_type_name(types[ti]), packed ? " packed" : "", T, nths[c] ? nths[c] : 2,
                                   nths[c] ? "" : " (nested: 1 each)", bad);
                            checked++;
                        }
                    }
            }
            omp_set_num_threads(saved);
            free(scratch[0]), free(scratch[1]);
            matmul_unpack(&w);
            free((void *)w.data);
        }
    CHECK(checked >= 7 * 3 * 15);
    free(x); free(one); free(out[0]); free(out[1]);
}

/* ---- row ops ----------------------------------------------------------------- */

static void test_rows(void) {
    static const int Cs[] = { 7, 64, 2048, 2051 };
    for (int ci = 0; ci < 4; ci++) {
        const int C = Cs[ci], T = 3;
        float *x = xmalloc((size_t)T * C * 4), *w = xmalloc((size_t)C * 4), *u = xmalloc((size_t)T * C * 4);
        float *ref = xmalloc((size_t)T * C * 4), *out = xmalloc((size_t)T * C * 4);
        fill_normal(x, (size_t)T * C, 3.0f);
        fill_normal(w, (size_t)C, 1.0f);
        fill_normal(u, (size_t)T * C, 1.0f);
        x[0] = -100.0f; x[1] = 95.0f; /* silu at the tails of exp */
        for (int isa = 0; isa <= max_isa; isa++) {
            herd_cpu_force_isa(isa);
            rmsnorm_forward_ref(ref, x, w, T, C, 1e-5f);
            rmsnorm_forward(out, x, w, T, C, 1e-5f);
            CHECKF(rel_err(out, ref, (size_t)T * C) <= 2e-6, "rmsnorm C %d %s", C, isa_name[isa]);
            memcpy(out, x, (size_t)T * C * 4); /* aliased: out == x */
            rmsnorm_forward(out, out, w, T, C, 1e-5f);
            CHECKF(rel_err(out, ref, (size_t)T * C) <= 2e-6, "rmsnorm aliased C %d %s", C, isa_name[isa]);
            swiglu_forward_ref(ref, x, u, T, C);
            memcpy(out, x, (size_t)T * C * 4);
            swiglu_forward(out, out, u, T, C);
            double e = rel_err(out, ref, (size_t)T * C);
            CHECKF(e <= 2e-6, "swiglu C %d %s: %.3g", C, isa_name[isa], e);
            for (size_t i = 0; i < (size_t)T * C; i++) ref[i] = x[i] + u[i];
            memcpy(out, x, (size_t)T * C * 4);
            add_forward(out, u, (int64_t)T * C);
            CHECKF(memcmp(out, ref, (size_t)T * C * 4) == 0, "add C %d %s: not x + y bitwise", C, isa_name[isa]);
        }
        herd_cpu_force_isa(-1);
        free(x); free(w); free(u); free(ref); free(out);
    }
    /* swiglu over a large T * F goes through the threaded chunks */
    const int F = 8192, T = 5;
    float *g = xmalloc((size_t)T * F * 4), *u = xmalloc((size_t)T * F * 4);
    float *ref = xmalloc((size_t)T * F * 4), *out = xmalloc((size_t)T * F * 4);
    fill_normal(g, (size_t)T * F, 4.0f);
    fill_normal(u, (size_t)T * F, 1.0f);
    swiglu_forward_ref(ref, g, u, T, F);
    swiglu_forward(out, g, u, T, F);
    CHECK(rel_err(out, ref, (size_t)T * F) <= 2e-6);
    free(g); free(u); free(ref); free(out);

    float s[2] = { 0.0f, logf(3.0f) };
    softmax_ref(s, 2);
    CHECK_NEAR(s[0], 0.25, 1e-7);
    CHECK_NEAR(s[1], 0.75, 1e-7);
}

/* ---- rope ------------------------------------------------------------------- */

static void test_rope_freqs(void) {
    float plain[64], scaled[64];
    rope_freqs_llama3(plain, 128, 500000.0f, 0, 8, 1, 4, 8192);
    rope_freqs_llama3(scaled, 128, 500000.0f, 1, 8, 1, 4, 8192);
    static const double smooth[6] = { 1.2075, 1.5534, 2.0263, 2.6945, 3.6843, 5.2573 };
    CHECK_NEAR(plain[0], 1.0, 0);
    CHECK_NEAR(plain[1], pow(500000.0, -2.0 / 128), 1e-7);
    for (int i = 0; i < 64; i++) {
        const double div = (double)plain[i] / scaled[i];
        if (i <= 28) CHECKF(div == 1.0, "i %d div %.6f", i, div);
        else if (i <= 34) CHECKF(fabs(div - smooth[i - 29]) < 1e-4, "i %d div %.6f", i, div);
        else CHECKF(fabs(div - 8.0) < 1e-6, "i %d div %.6f", i, div);
    }
    /* Llama 3.2 1B (head dim 64, factor 32): 0-14 unchanged, 15-17 smoothed, 18-31 / 32 */
    rope_freqs_llama3(plain, 64, 500000.0f, 0, 32, 1, 4, 8192);
    rope_freqs_llama3(scaled, 64, 500000.0f, 1, 32, 1, 4, 8192);
    for (int i = 0; i < 32; i++) {
        const double div = (double)plain[i] / scaled[i];
        if (i <= 14) CHECK(div == 1.0);
        else if (i <= 17) CHECKF(div > 1.0 && div < 32.0, "i %d div %.6f", i, div);
        else CHECK(fabs(div - 32.0) < 1e-5);
    }
}

static void test_rope(void) {
    const int T = 5, NH = 3, HS = 128, pos0 = 4000, n = T * NH * HS;
    float freqs[64];
    rope_freqs_llama3(freqs, HS, 500000.0f, 1, 8, 1, 4, 8192);
    float *x = xmalloc((size_t)n * 4), *a = xmalloc((size_t)n * 4), *b = xmalloc((size_t)n * 4);
    float *p = xmalloc((size_t)n * 4), *pr = xmalloc((size_t)n * 4);
    fill_normal(x, (size_t)n, 1.0f);
    for (int il = 0; il < 2; il++) {
        memcpy(a, x, (size_t)n * 4);
        memcpy(b, x, (size_t)n * 4);
        rope_forward_ref(a, freqs, pos0, T, NH, HS, il);
        rope_forward(b, freqs, pos0, T, NH, HS, il);
        CHECKF(rel_err(b, a, (size_t)n) <= 1e-6, "rope interleaved %d", il);
        /* a rotation: every pair keeps its length */
        int bad = 0;
        for (int v = 0; v < T * NH; v++)
            for (int i = 0; i < HS / 2; i++) {
                const int ia = v * HS + (il ? 2 * i : i), ib = v * HS + (il ? 2 * i + 1 : i + HS / 2);
                const double n0 = hypot(x[ia], x[ib]), n1 = hypot(a[ia], a[ib]);
                bad += fabs(n0 - n1) > 1e-5 * (n0 + 1e-3);
            }
        CHECKF(bad == 0, "rope interleaved %d: %d pairs changed length", il, bad);
    }
    /* HF permutation (per head: hf[j * HS/2 + i] = meta[2i + j]) turns interleaved
     * rope into rotate-half rope */
    for (int v = 0; v < T * NH; v++)
        for (int i = 0; i < HS / 2; i++)
            for (int j = 0; j < 2; j++) p[v * HS + j * HS / 2 + i] = x[v * HS + 2 * i + j];
    memcpy(a, x, (size_t)n * 4);
    rope_forward(a, freqs, pos0, T, NH, HS, 1);
    rope_forward(p, freqs, pos0, T, NH, HS, 0);
    for (int v = 0; v < T * NH; v++)
        for (int i = 0; i < HS / 2; i++)
            for (int j = 0; j < 2; j++) pr[v * HS + j * HS / 2 + i] = a[v * HS + 2 * i + j];
    CHECK(rel_err(p, pr, (size_t)n) <= 1e-7);
    /* position 0 is the identity */
    memcpy(a, x, (size_t)n * 4);
    rope_forward(a, freqs, 0, 1, NH, HS, 1);
    CHECK(memcmp(a, x, (size_t)NH * HS * 4) == 0);
    free(x); free(a); free(b); free(p); free(pr);
}

/* ---- attention -------------------------------------------------------------- */

static void test_attention_case(int pos0, int T, int NH, int NKV, int HS) {
    const int S = pos0 + T;
    float *q = xmalloc((size_t)T * NH * HS * 4), *kc = xmalloc((size_t)S * NKV * HS * 4);
    float *vc = xmalloc((size_t)S * NKV * HS * 4), *ref = xmalloc((size_t)T * NH * HS * 4);
    float *out = xmalloc((size_t)T * NH * HS * 4), *out2 = xmalloc((size_t)T * NH * HS * 4);
    float *scr = xmalloc(attention_scratch_size(T, S, NH) * 4);
    fill_normal(q, (size_t)T * NH * HS, 1.0f);
    fill_normal(kc, (size_t)S * NKV * HS, 1.0f);
    fill_normal(vc, (size_t)S * NKV * HS, 1.0f);
    attention_forward_ref(ref, q, kc, vc, pos0, T, NH, NKV, HS);
    const size_t n = (size_t)T * NH * HS;
    for (int isa = 0; isa <= max_isa; isa++) {
        herd_cpu_force_isa(isa);
        attention_forward(out, q, kc, vc, pos0, T, NH, NKV, HS, scr);
        double e = rel_err(out, ref, n);
        CHECKF(e <= 2e-6, "attention pos0 %d T %d NH %d NKV %d HS %d %s: %.3g", pos0, T, NH, NKV, HS, isa_name[isa], e);
    }
    herd_cpu_force_isa(-1);
    /* causal: changing keys / values after position pos0 + t0 leaves tokens <= t0 alone */
    const int t0 = T / 2;
    for (size_t i = (size_t)(pos0 + t0 + 1) * NKV * HS; i < (size_t)S * NKV * HS; i++) {
        kc[i] += 1.0f;
        vc[i] = -vc[i];
    }
    attention_forward(out2, q, kc, vc, pos0, T, NH, NKV, HS, scr);
    const size_t n0 = (size_t)(t0 + 1) * NH * HS;
    CHECK(memcmp(out, out2, n0 * 4) == 0);
    if (t0 + 1 < T) CHECK(memcmp(out + n0, out2 + n0, (n - n0) * 4) != 0);
    attention_forward_ref(out2, q, kc, vc, pos0, T, NH, NKV, HS);
    CHECK(memcmp(ref, out2, n0 * 4) == 0);
    /* f16 cache: every path against the reference on the same f16 rows (widening
     * is exact, so the tolerance is the f32 one) */
    const size_t nkv = (size_t)S * NKV * HS;
    uint16_t *k16 = xmalloc(nkv * 2), *v16 = xmalloc(nkv * 2);
    f32_to_f16_row_ref(k16, kc, (int64_t)nkv);
    f32_to_f16_row_ref(v16, vc, (int64_t)nkv);
    attention_forward_f16_ref(ref, q, k16, v16, pos0, T, NH, NKV, HS);
    for (int isa = 0; isa <= max_isa; isa++) {
        herd_cpu_force_isa(isa);
        attention_forward_f16(out, q, k16, v16, pos0, T, NH, NKV, HS, scr);
        double e = rel_err(out, ref, n);
        CHECKF(e <= 2e-6, "attention f16 pos0 %d T %d NH %d NKV %d HS %d %s: %.3g", pos0, T, NH, NKV, HS, isa_name[isa], e);
    }
    herd_cpu_force_isa(-1);
    /* and the f16 result stays near the f32 one (f16 keeps 11 bits) */
    attention_forward_ref(out2, q, kc, vc, pos0, T, NH, NKV, HS);
    CHECKF(rel_err(ref, out2, n) <= 2e-3, "attention f16 vs f32 cache: %.3g", rel_err(ref, out2, n));
    free(k16); free(v16);
    free(q); free(kc); free(vc); free(ref); free(out); free(out2); free(scr);
}

/* f32 -> f16 stores of the KV cache: bit-exact with the reference on every path,
 * tails and special values included (NaN payloads are not compared). */
static void test_f16_store(void) {
    enum { N = 203 };
    float x[N];
    uint16_t ref[N], out[N];
    fill_normal(x, N, 3.0f);
    const float special[] = { 0.0f, -0.0f, 1e-9f, -6e-8f, 3e-5f, 6.1e-5f, 65504.0f, 65520.0f, 70000.0f,
                              -1e6f, INFINITY, -INFINITY, 1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, 2049.0f };
    for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) x[N - 1 - i] = special[i];
    f32_to_f16_row_ref(ref, x, N);
    for (int isa = 0; isa <= max_isa; isa++) {
        herd_cpu_force_isa(isa);
        for (int n = 0; n <= N; n += n < 20 ? 1 : 61) {
            memset(out, 0xAB, sizeof out);
            f32_to_f16_row(out, x + (N - n), n);
            CHECKF(memcmp(out, ref + (N - n), (size_t)n * 2) == 0, "f32_to_f16_row n %d %s", n, isa_name[isa]);
        }
    }
    herd_cpu_force_isa(-1);
}

static void test_attention(void) {
    test_attention_case(0, 1, 4, 2, 16);
    test_attention_case(0, 17, 8, 2, 64);
    test_attention_case(37, 3, 32, 8, 64);
    test_attention_case(300, 1, 32, 8, 128);
    test_attention_case(5, 9, 6, 6, 40);
    /* one key: the output is that key's value, from kv head h / (NH / NKV) */
    const int NH = 8, NKV = 2, HS = 8;
    float q[64], kc[16], vc[16], out[64], scr[8];
    fill_normal(q, 64, 1.0f);
    fill_normal(kc, 16, 1.0f);
    fill_normal(vc, 16, 1.0f);
    attention_forward(out, q, kc, vc, 0, 1, NH, NKV, HS, scr);
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < HS; i++) CHECK_NEAR(out[h * HS + i], vc[(h / 4) * HS + i], 1e-6);
}

int main(void) {
    herd_rng_seed(&rng, 20261126);
    herd_cpu_force_isa(-1);
    max_isa = herd_cpu_isa();
    const herd_cpu_features *f = herd_cpu();
    printf("test_kernels: cpu avx2 %d fma %d f16c %d avx512f %d bw %d vnni %d bf16 %d; best path %s, %d threads\n",
           f->avx2, f->fma, f->f16c, f->avx512f, f->avx512bw, f->avx512vnni, f->avx512bf16,
           isa_name[max_isa], omp_get_max_threads());
    test_known_blocks();
    test_rope_freqs();
    test_rope();
    test_rows();
    test_attention();
    test_f16_store();
    test_matmul();
    test_matmul_batch_invariance();
    test_matmul_packed();
    test_matmul_bf16();
    test_matmul_kpacked();
    test_matmul_n();
    test_matmul_threads();
    float row[64], rr[64];
    block_q4_0 blk[2];
    fill_normal(row, 64, 1.0f);
    quantize_row_q4_0_ref(blk, row, 64);
    dequant_row(row, blk, HERD_Q4_0, 64);
    dequant_row_ref(rr, blk, HERD_Q4_0, 64);
    CHECK(memcmp(row, rr, sizeof row) == 0);
    TEST_MAIN_END("test_kernels");
}
