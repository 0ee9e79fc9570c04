/* test_quant.c - the K-quant reference (ref/kquant_ref.c) against independent
 * fixtures (tests/data/kquant_fixtures.bin, made by tests/data/mk_kquant_fixtures.py):
 *   dequant_row_ref must equal gguf-py's numpy dequantizers bit for bit, on blocks
 *   from ggml's quantizers and on random block bytes;
 *   quantize_row_q*_K_ref must produce ggml's quantize_row_q*_K_ref bytes exactly.
 * Plus round trips: the K types' error on Gaussian rows is below stated bounds and
 * ordered Q4_K > Q5_K > Q6_K, and Q8_0 / Q4_0 quantize-dequantize within d/2.
 */
#include <stdint.h>

#include "core/core.h"
#include "format/format.h"
#include "herd.h"
#include "kernels/kernels.h"
#include "test.h"

static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static void quantize_k(void *out, const float *x, int type, int64_t n) {
    if (type == HERD_Q4_K) quantize_row_q4_K_ref(out, x, n);
    if (type == HERD_Q5_K) quantize_row_q5_K_ref(out, x, n);
    if (type == HERD_Q6_K) quantize_row_q6_K_ref(out, x, n);
}

static void test_fixtures(void) {
    char *buf;
    size_t len;
    herd_error err;
    if (herd_read_file("tests/data/kquant_fixtures.bin", &buf, &len, &err)) { CHECKF(0, "%s", err.msg); return; }
    const uint8_t *p = (const uint8_t *)buf, *end = p + len;
    CHECK(len >= 8 && !memcmp(p, "HKQ1", 4));
    uint32_t n_rec = rd32(p + 4);
    p += 8;
    int counts[3] = { 0 }, quant_checked = 0;
    for (uint32_t r = 0; r < n_rec; r++) {
        if (end - p < 12) { CHECKF(0, "fixture file truncated at record %u", r); break; }
        int type = (int)rd32(p), has_x = (int)rd32(p + 4);
        int64_t n = rd32(p + 8);
        p += 12;
        size_t qbytes = herd_type_row_size(type, n);
        size_t need = (has_x ? 4 * (size_t)n : 0) + qbytes + 4 * (size_t)n;
        if (qbytes == 0 || (size_t)(end - p) < need) { CHECKF(0, "bad record %u", r); break; }
        float *x = malloc(4 * (size_t)n), *y = malloc(4 * (size_t)n), *got = malloc(4 * (size_t)n);
        uint8_t *q = malloc(qbytes), *mine = malloc(qbytes);
        if (has_x) { memcpy(x, p, 4 * (size_t)n); p += 4 * n; }
        memcpy(q, p, qbytes); p += qbytes;
        memcpy(y, p, 4 * (size_t)n); p += 4 * n;

        dequant_row_ref(got, q, type, n);
        int64_t bad = 0, first = -1;
        for (int64_t i = 0; i < n; i++)
            if (memcmp(&got[i], &y[i], 4)) { if (first < 0) first = i; bad++; }
        CHECKF(bad == 0, "record %u (%s, %s): %lld of %lld dequantized values differ from gguf-py; "
               "first at %lld: %.9g vs %.9g", r, herd_type_name(type), has_x ? "ggml blocks" : "random bytes",
               (long long)bad, (long long)n, (long long)first, first >= 0 ? got[first] : 0.0,
               first >= 0 ? y[first] : 0.0);
        if (has_x) {
            quantize_k(mine, x, type, n);
            size_t bb = herd_type_block_bytes(type), nbad = 0;
            for (size_t b = 0; b < qbytes / bb; b++) nbad += memcmp(mine + b * bb, q + b * bb, bb) != 0;
            CHECKF(nbad == 0, "record %u (%s): %zu of %zu blocks differ from ggml's quantize_row_%s_ref",
                   r, herd_type_name(type), nbad, qbytes / bb, herd_type_name(type));
            quant_checked++;
        }
        if (type >= HERD_Q4_K && type <= HERD_Q6_K) counts[type - HERD_Q4_K]++;
        free(x); free(y); free(got); free(q); free(mine);
    }
    CHECKF(counts[0] >= 2 && counts[1] >= 2 && counts[2] >= 2 && quant_checked >= 6,
           "fixtures cover Q4_K %d, Q5_K %d, Q6_K %d records", counts[0], counts[1], counts[2]);
    free(buf);
}

/* rms(dequant(quant(x)) - x) / rms(x) over Gaussian rows. */
static double roundtrip_rel_rmse(int type, int64_t n) {
    herd_rng rng;
    herd_rng_seed(&rng, 42);
    float *x = malloc(4 * (size_t)n), *y = malloc(4 * (size_t)n);
    uint8_t *q = malloc(herd_type_row_size(type, n));
    for (int64_t i = 0; i < n; i++) x[i] = (float)herd_rng_normal(&rng) * 0.03f;
    if (type == HERD_Q8_0) quantize_row_q8_0_ref((block_q8_0 *)q, x, n);
    else if (type == HERD_Q4_0) quantize_row_q4_0_ref((block_q4_0 *)q, x, n);
    else quantize_k(q, x, type, n);
    dequant_row_ref(y, q, type, n);
    double e = 0, s = 0;
    for (int64_t i = 0; i < n; i++) { e += (double)(y[i] - x[i]) * (y[i] - x[i]); s += (double)x[i] * x[i]; }
    free(x); free(y); free(q);
    return sqrt(e / s);
}

static void test_roundtrip(void) {
    const int64_t n = 256 * 64;
    double q4 = roundtrip_rel_rmse(HERD_Q4_K, n), q5 = roundtrip_rel_rmse(HERD_Q5_K, n),
           q6 = roundtrip_rel_rmse(HERD_Q6_K, n), q8 = roundtrip_rel_rmse(HERD_Q8_0, n),
           q40 = roundtrip_rel_rmse(HERD_Q4_0, n);
    /* Gaussian data: about 2^-bits relative error; K types beat the _0 types of equal bits */
    CHECKF(q4 < 0.08, "Q4_K relative rmse %.4f", q4);
    CHECKF(q5 < 0.04, "Q5_K relative rmse %.4f", q5);
    CHECKF(q6 < 0.02, "Q6_K relative rmse %.4f", q6);
    CHECKF(q8 < 0.006, "Q8_0 relative rmse %.4f", q8);
    CHECKF(q4 < q40, "Q4_K (%.4f) should beat Q4_0 (%.4f)", q4, q40);
    CHECKF(q4 > q5 && q5 > q6 && q6 > q8, "error order Q4_K %.4f > Q5_K %.4f > Q6_K %.4f > Q8_0 %.4f", q4, q5, q6, q8);
    /* zero rows quantize to zero blocks and back to zeros */
    float z[256] = { 0 }, y[256];
    block_q4_K b4; block_q5_K b5; block_q6_K b6;
    quantize_row_q4_K_ref(&b4, z, 256); dequant_row_ref(y, &b4, HERD_Q4_K, 256);
    int nz = 0;
    for (int i = 0; i < 256; i++) nz += y[i] != 0;
    quantize_row_q5_K_ref(&b5, z, 256); dequant_row_ref(y, &b5, HERD_Q5_K, 256);
    for (int i = 0; i < 256; i++) nz += y[i] != 0;
    quantize_row_q6_K_ref(&b6, z, 256); dequant_row_ref(y, &b6, HERD_Q6_K, 256);
    for (int i = 0; i < 256; i++) nz += y[i] != 0;
    CHECKF(nz == 0, "%d non-zero values from zero rows", nz);
    printf("test_quant: relative rmse on N(0,1) rows: Q4_0 %.4f Q4_K %.4f Q5_K %.4f Q6_K %.4f Q8_0 %.4f\n",
           q40, q4, q5, q6, q8);
}

int main(void) {
    test_fixtures();
    test_roundtrip();
    TEST_MAIN_END("test_quant");
}
