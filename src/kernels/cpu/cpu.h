/* cpu.h - internal interface between the run-time dispatcher (dispatch.c) and the
 * per-ISA kernel files (scalar.c, *_avx2.c, *_avx512.c). Not part of kernels.h.
 *
 * A matmul runs in two phases inside one OpenMP parallel region:
 *   1. prep: every thread computes the same layout of the scratch (mm_act) and
 *      converts its share of x into it (Q8 quantization for Q8_0 / Q4_0 weights);
 *      then a barrier;
 *   2. rows: every thread computes out[:, r0:r1) for its contiguous range of rows.
 * The scratch layout is private to each ISA (prep and rows of one ISA come as a
 * pair): AVX-512 interleaves Q4_0 activations to match its nibble unpacking.
 * Quantized activations hold exact int8 values; every path computes the exact
 * integer dot of each 32-block, so ISAs differ only in float summation order.
 */
#ifndef HERD_KERNELS_CPU_H
#define HERD_KERNELS_CPU_H

#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "herd.h"
#include "kernels/kernels.h"

/* Whether a loop of n items is worth a parallel region. libgomp runs an `if (0)`
 * region, or one nested in another, as a team of one and still ends it with a
 * futex wake: a ~1 us syscall on this project's VM, and a batched decode step of
 * the 1B model made ~1,000 of them (perf stat, bench_batch 8 sequences). Loops
 * that would run on one thread call their body directly instead. */
static inline int kern_parallel(int64_t n) { return n > 1 && omp_get_max_threads() > 1 && !omp_in_parallel(); }

#define QK 32 /* elements per Q8_0 / Q4_0 block */

/* Elements and bytes per block of a weight type; 0 / 0 when unknown. The kernels
 * keep their own copy of the geometry so they do not depend on format/. */
static inline void kern_block_geom(int type, int *bs, size_t *bytes) {
    switch (type) {
    case HERD_F32:  *bs = 1;   *bytes = 4;   return;
    case HERD_F16:  *bs = 1;   *bytes = 2;   return;
    case HERD_BF16: *bs = 1;   *bytes = 2;   return;
    case HERD_Q8_0: *bs = 32;  *bytes = 34;  return;
    case HERD_Q4_0: *bs = 32;  *bytes = 18;  return;
    case HERD_Q4_K: *bs = 256; *bytes = 144; return;
    case HERD_Q5_K: *bs = 256; *bytes = 176; return;
    case HERD_Q6_K: *bs = 256; *bytes = 210; return;
    default:        *bs = 0;   *bytes = 0;   return;
    }
}
static inline size_t kern_row_bytes(int type, int64_t n) {
    int bs; size_t b;
    kern_block_geom(type, &bs, &b);
    return bs ? (size_t)(n / bs) * b : 0;
}

/* Activations of one matmul call, prepared in the scratch. Pointers not used by
 * a type / ISA are NULL. nb = IC / 32. */
typedef struct {
    const float *f32;     /* (T, IC) x itself */
    const float *xp;      /* gemm, float weights: x in tiles of GEMM_FT tokens (T/FT, IC, FT) */
    const int8_t *q;      /* (T, IC) x quantized per 32-block, ISA order */
    const float *d;       /* (T, nb) scale of each block */
    const float *dl;      /* (T, nb, 8) scale expanded to SIMD lanes, ISA order */
    const int32_t *corr;  /* (T, nb, 8) integer correction that starts each lane */
    const int16_t *xs;    /* K-quants: (T, IC/16) sum of each 16 quantized x (q, d per 256) */
    const uint32_t *xb;   /* BF16 weights (AVX-512): (T, (IC + 1) / 2) x rounded to bf16
                           * (z_bf16_round), inputs 2p and 2p + 1 in the low and high half */
    int64_t ic, nb;
    int gemm;             /* 1: the ISA's prefill GEMM runs (natural x order) */
} mm_act;

/* Per-ISA matmul: supports(type) says which weight types it handles; layout
 * fills a from the scratch (identical in every thread) and returns the number of
 * prep units (ISA-defined: blocks or elements of all T tokens; 0: no prep); prep
 * converts units [i0, i1) (each thread its share); rows computes out (T, OC)
 * for rows [r0, r1). */
typedef struct {
    const char *name;
    int (*supports)(int type);
    int64_t (*layout)(mm_act *a, const float *x, int type, int T, int64_t ic, void *scratch);
    void (*prep)(const mm_act *a, const float *x, int type, int T, int64_t i0, int64_t i1);
    void (*rows)(float *out, const mm_act *a, const herd_weight *w, int T, int64_t r0, int64_t r1);
} mm_isa;

extern const mm_isa mm_isa_scalar, mm_isa_avx2, mm_isa_avx512;

/* AVX-512 GEMM (gemm_avx512.c), used for every T (one summation order per
 * output whatever T: batch invariance): the mm_isa trio of matmul_avx512.c
 * hands over to these. GEMM_MIN_T: the smallest T that fills a float token
 * tile's 8-wide kernel (tests use it to reach every token tile). x is packed in tiles of
 * GEMM_QT (int8) or GEMM_FT (f32) tokens; the last tile is padded. */
#define GEMM_MIN_T 8
#define GEMM_QT 6
#define GEMM_FT 12
#define GEMM_PREP_K 16 /* f32 inputs per unit of gemm_z_prep: 16 x GEMM_FT floats, whole lines */
int gemm_z_supports(int type, int T);
int64_t gemm_z_layout(mm_act *a, const float *x, int type, int T, int64_t ic, void *scratch);
void gemm_z_prep(const mm_act *a, const float *x, int type, int T, int64_t i0, int64_t i1);
void gemm_z_rows(float *out, const mm_act *a, const herd_weight *w, int T, int64_t r0, int64_t r1);
/* AVX-512 packed weights (pack_avx512.c; herd_weight.packed). Rows go in groups
 * of 16 (one zmm of outputs) and groups in quads (64 rows; the last quad padded
 * with zero rows, scale 0). A quad's data is one linear stream, read straight
 * through by decode:
 *   Q4_0 / Q8_0: per quad, per block b: the 4 groups' quants (Q4_0: 4 x 64 bytes,
 *     dword k = bytes 4k..4k+3 of each of the 16 rows' nibbles: low nibbles are
 *     elements 4k..4k+3, high 16+4k..; Q8_0: 8 x 64 bytes, dword k of each row's
 *     32 quants as w + 128, u8), then the 4 groups' 16 f16 scales (128 bytes);
 *   F32 / F16: per quad, per input k: the 4 groups' 16 values (256 or 128
 *     bytes); BF16: per quad, per input pair, the 4 groups' 16 dwords (256 bytes,
 *     zp_pair).
 * zp_small(w, T) says when zp_rows_small reads it directly; otherwise the GEMM
 * fills its panels from it. */
#define ZP_ROWS 16
#define ZP_QUAD 64
/* Bytes ahead of the loads that a quad's first tile of 2+ tokens prefetches: with
 * TT x the work per byte the hardware prefetcher alone leaves the memory idle
 * part of the time (bench_kernels --batch B, 1B shapes, 2 threads, ms per step:
 * B=4 Q8_0 41 -> 25, F16 74 -> 50, Q4_K 46 -> 19; B=8 Q4_0 36 -> 31). At TT = 1
 * only the K-quants prefetch (decode Q4_K 27 -> 15 ms, Q6_K 39 -> 21); Q8_0, F16
 * and BF16 decode got slower with it. */
#define ZP_PREFETCH 4608
size_t zp_bytes(const herd_weight *w); /* 0: the type has no packed layout */
void zp_pack(void *dst, const herd_weight *w, int64_t quad0, int64_t quad1); /* quads [quad0, quad1) */
static inline size_t zp_qblock(int type) { return type == HERD_Q8_0 ? 512 : 256; }
/* bytes per quad and block: 4 groups' quants + their scales */
static inline size_t zp_unit(int type) { return 4 * zp_qblock(type) + 4 * ZP_ROWS * 2; }
static inline const uint8_t *zp_block(const herd_weight *w, int64_t quad, int64_t b) {
    return (const uint8_t *)w->packed + ((size_t)quad * (size_t)(w->ic / QK) + (size_t)b) * zp_unit(w->type);
}
static inline const uint8_t *zp_q(const herd_weight *w, int64_t g, int64_t b) {
    return zp_block(w, g / 4, b) + (size_t)(g % 4) * zp_qblock(w->type);
}
static inline const uint16_t *zp_d(const herd_weight *w, int64_t g, int64_t b) {
    return (const uint16_t *)(zp_block(w, g / 4, b) + 4 * zp_qblock(w->type)) + (g % 4) * ZP_ROWS;
}
/* F32 / F16: group g's 16 values of input k (64 or 32 bytes) */
static inline const void *zp_f(const herd_weight *w, int64_t g, int64_t k) {
    const size_t es = w->type == HERD_F32 ? 4 : 2;
    return (const uint8_t *)w->packed + (((size_t)(g / 4) * (size_t)w->ic + (size_t)k) * 4 + (size_t)(g % 4)) * ZP_ROWS * es;
}
/* BF16: group g's 16 dwords of input pair p (inputs 2p in the low half, 2p + 1 in
 * the high; an odd IC's last pair has a zero high half): vdpbf16ps's operand */
static inline int64_t zp_npairs(const herd_weight *w) { return (w->ic + 1) / 2; }
static inline const uint32_t *zp_pair(const herd_weight *w, int64_t g, int64_t p) {
    return (const uint32_t *)w->packed + ((size_t)(g / 4) * (size_t)zp_npairs(w) + (size_t)p) * ZP_QUAD + (size_t)(g % 4) * ZP_ROWS;
}

/* BF16 weights on AVX-512 take x rounded to bf16 and compute, per output, in input
 * pair order: acc += w[2p+1] x[2p+1], then acc += w[2p] x[2p], each rounded to
 * f32 (products of two bf16 are exact in f32): what vdpbf16ps does, and what
 * llama.cpp's BF16 matmul and PyTorch's bf16 inference compute. Where the CPU
 * lacks AVX512_BF16 two FMAs do the same, bitwise (checked on 3.2M random pairs
 * on Zen 5 and by test_kernels), except that the instruction treats denormal
 * inputs as zero and flushes denormal sums: z_bf16_round flushes x, the packing
 * flushes w, and sums below 2^-126 do not occur in a model. The other ISAs keep
 * BF16 exact (x unrounded). z_bf16dot: use the instruction (CPU has it, tests
 * did not turn it off: herd_cpu_force_bf16dot). */
int z_bf16dot(void);
/* f to bf16 as vcvtneps2bf16: nearest even, denormals to signed zero, NaN quiet */
static inline uint16_t z_bf16_round(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
/* bf16 h with a denormal flushed to its signed zero (as vdpbf16ps reads it) */
static inline uint16_t z_bf16_flush(uint16_t h) { return (h & 0x7f80u) ? h : (uint16_t)(h & 0x8000u); }
/* K-quants (kpack_avx512.c), per quad and 256-element super-block, one unit:
 *   Q4_K (9472 bytes): d [64 rows] f16, dmin [64] f16, sc [8 sub-blocks][64] u8,
 *     m [8][64] u8, then per sub-block the 4 groups' nibbles as Q4_0's (4 x 64
 *     bytes each, no -8);
 *   Q5_K (11520 bytes): Q4_K's unit, then per sub-block the 4 groups' fifth bits
 *     (64 bytes each: dword lane = row; byte i, bit k: element 4k + i, bit 4 + k:
 *     16 + 4k + i);
 *   Q6_K (13440 bytes): d [64] f16, sc [16 groups of 16][64] i8, then per 32-block
 *     the 4 groups' low 4 bits as Q4_0's nibbles (4 x 64 bytes each), then their
 *     top 2 bits (2 x 64 each: dword lane = row; byte i, bits 2k..2k+1 hold
 *     element 4k + i, then 16 + 4k + i): 210 bytes a row per 256, as in GGUF.
 * zk_layout / zk_prep quantize x per 32 (with each half's negated sum); zk_rows
 * serves every T. */
static inline size_t zk_unit(int type) { return type == HERD_Q4_K ? 9472 : type == HERD_Q5_K ? 11520 : 13440; }
size_t zk_bytes(const herd_weight *w); /* 0: not Q4_K / Q5_K / Q6_K */
void zk_pack(void *dst, const herd_weight *w, int64_t quad0, int64_t quad1);
int64_t zk_layout(mm_act *a, const float *x, int T, int64_t ic, void *scratch);
void zk_prep(const mm_act *a, const float *x, int T, int64_t i0, int64_t i1);
void zk_rows(float *out, const mm_act *a, const herd_weight *w, int T, int64_t r0, int64_t r1);

/* out (T, OC) rows [r0, r1) from w->packed when zp_small(w, T) (fastest with r0
 * a multiple of ZP_QUAD): reads the packed quads directly, where the GEMM would
 * first copy them into its panels. x laid out by gemm_z_layout / gemm_z_prep
 * (Q4_0 / Q8_0; float types read x as it is). Bitwise what gemm_z_rows gives.
 * Where it beats the GEMM (bench_kernels --batch T, 1B shapes, 2 threads):
 * Q4_0 / Q8_0 up to T = 128 since its 8-token tiles take a whole quad in one
 * pass (Q4_0 T = 33: 76 vs 102 ms, 40: 91 vs 111, 64: 138-144 vs 157-177, 96:
 * 208-214 vs 221-234, 128: 285-302 vs 293-316; Q8_0 40: 98 vs 120, 96 / 128:
 * faster in 5 of 6 pairs; with two passes the GEMM won from 64 on); F32 / F16 /
 * BF16 at every T measured (F16 T = 128: 974 vs 1128 ms, BF16 914 vs 1110, F32
 * 1066 vs 1205). */
#define ZP_SMALL_T 128
static inline int zp_small(const herd_weight *w, int T) {
    return w->packed && (T <= ZP_SMALL_T || w->type == HERD_F32 || w->type == HERD_F16 || w->type == HERD_BF16);
}
void zp_rows_small(float *out, const mm_act *a, const herd_weight *w, int T, int64_t r0, int64_t r1);

/* q (32) = x (32) quantized as mm_quantize_block_q8, *d its scale; returns sum(q). */
int32_t z_quantize_block(int8_t *q, float *d, const float *x);

/* Bytes of scratch any ISA's layout may use (dispatch.c's matmul_scratch_size). */
size_t mm_scratch_bytes(int type, int T, int64_t ic);

/* K-quant weights (Q4_K, Q5_K, Q6_K), every ISA: x is quantized per 256 (one
 * super-block: q (T, IC) int8, d (T, IC/256), xs (T, IC/16)) by the shared
 * scalar code below, so all ISAs see the same integers. Per super-block and
 * output, the exact integer dot sum_j scale_j * dot(q_j, x_j) (Q6_K with its
 * -32 folded in) becomes isum * d * dx, and Q4_K / Q5_K's min term
 * msum = sum_j m_j * sum(x_j) becomes msum * dmin * dx, subtracted at the end.
 * Prep units: super-blocks of all tokens. */
#define QKK 256
int mm_is_kquant(int type);
int64_t mm_kq_layout(mm_act *a, const float *x, int T, int64_t ic, void *scratch);
void mm_kq_prep(const mm_act *a, const float *x, int T, int64_t i0, int64_t i1);
/* The 6-bit scale and min of sub-block j (0..7) of a Q4_K / Q5_K super-block. */
static inline void kq_scale_min(int j, const uint8_t *q, int *sc, int *m) {
    if (j < 4) { *sc = q[j] & 63; *m = q[j + 4] & 63; }
    else { *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4); *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4); }
}
/* AVX2 K-quant rows (kquant_avx2.c). */
void kq_rows_avx2(float *out, const mm_act *a, const herd_weight *w, int T, int64_t r0, int64_t r1);

/* Shared scratch carving (scalar.c): 64-byte aligned pieces. */
void *mm_carve(uint8_t **p, size_t bytes);

/* Row-level ops (one token / one head), per ISA. */
typedef struct {
    void (*rmsnorm_row)(float *out, const float *x, const float *w, int C, float eps); /* (C) */
    void (*swiglu_row)(float *out, const float *gate, const float *up, int n);        /* (n) */
    float (*dot)(const float *a, const float *b, int n);                              /* (n) */
    void (*axpy)(float *y, float a, const float *x, int n);   /* y (n) += a * x (n) */
    float (*dot_f16)(const float *a, const uint16_t *b, int n);      /* b (n) f16 */
    void (*axpy_f16)(float *y, float a, const uint16_t *x, int n);   /* x (n) f16 */
    void (*to_f16)(uint16_t *out, const float *x, int64_t n);        /* rounded to nearest even */
    /* LoRA (lora_forward): t[j] = a_j . x for the r rows a_j of n (each summed as
     * dot sums it); y (n) += sum over j in order of t[j] bt_j, bt's r rows ld apart */
    void (*dots)(float *t, const float *a, const float *x, int r, int n);
    void (*axpys)(float *y, const float *t, const float *bt, int r, int n, int64_t ld);
} ops_isa;

extern const ops_isa ops_isa_scalar, ops_isa_avx2;
/* ops_isa's dots / axpys on AVX-512 (lora_avx512.c), for lora_forward */
void z_lora_dots(float *t, const float *a, const float *x, int r, int n);
void z_lora_axpys(float *y, const float *t, const float *bt, int r, int n, int64_t ld);

/* Scalar helpers shared by every ISA (scalar.c). */
void mm_quantize_block_q8(int8_t *q, float *d, const float *x); /* q (32), x (32) */
float silu_scalar(float x);

#endif
