/* kernels.h - every compute op of the model, in two implementations:
 *   *_ref   plain scalar C, float32, in ref/: the oracle, never optimised;
 *   (plain) the fast version in cpu/: SIMD (AVX-512 / AVX2 chosen at run time,
 *           scalar fallback) and OpenMP threads. Tested against *_ref.
 *
 * Shape legend:
 *   B batch, T tokens, C dim, NH heads, NKV kv heads, HS head size, F ffn dim,
 *   V vocab, L layers, IC / OC input / output features of a linear layer,
 *   S positions held in the KV cache.
 * Linear weights are row-major (OC, IC): row o holds the IC input weights of
 * output o, contiguous, in the weight's type (quantized types blocked along IC).
 * Argument order: outputs, inputs, weights, dims.
 */
#ifndef HERD_KERNELS_H
#define HERD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* A linear weight (OC, IC) of any herd_type. */
typedef struct {
    int type;          /* herd_type */
    const void *data;  /* OC rows of herd_type_row_size(type, IC) bytes */
    int64_t ic, oc;
    void *packed;      /* NULL, or the same weights repacked for this CPU's matmul (matmul_pack) */
} herd_weight;

/* Quantized block layouts (identical to GGUF's). */
typedef struct { uint16_t d; int8_t qs[32]; } block_q8_0;        /* d: f16 scale */
typedef struct { uint16_t d; uint8_t qs[16]; } block_q4_0;       /* low nibbles = elems 0..15 */
/* K-quants: 256-element super-blocks (layouts described in ref/kquant_ref.c). */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; } block_q4_K;              /* 144 B */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; } block_q5_K; /* 176 B */
typedef struct { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; } block_q6_K;       /* 210 B */

/* CPU features found at run time (cpu/dispatch.c). */
typedef struct { int avx2, fma, f16c, avx512f, avx512bw, avx512vnni, avx512bf16, avxvnni; } herd_cpu_features;
const herd_cpu_features *herd_cpu(void);
/* Forces the scalar paths (tests), or lets dispatch choose again (0). */
void herd_cpu_force_scalar(int on);
/* The ISA the fast ops use now (the best the CPU has, capped by
 * herd_cpu_force_isa: tests use it to compare AVX-512, AVX2 and scalar; -1
 * lifts the cap), and the name of the path a matmul of a weight type takes. */
enum { HERD_ISA_SCALAR = 0, HERD_ISA_AVX2 = 1, HERD_ISA_AVX512 = 2 };
void herd_cpu_force_isa(int max_isa);
int herd_cpu_isa(void);
const char *herd_cpu_matmul_path(int type);
/* off = 1: AVX-512's BF16 matmul runs its FMA form instead of vdpbf16ps (bitwise
 * the same: cpu/cpu.h), so tests check one against the other; 0: the CPU decides. */
void herd_cpu_force_bf16dot_off(int off);

/* out (n) = the n elements of a row of weight type, dequantized. n is a multiple
 * of the type's block size. */
void dequant_row_ref(float *out, const void *row, int type, int64_t n);
void dequant_row(float *out, const void *row, int type, int64_t n);

/* Quantize n floats to Q8_0 / Q4_0 blocks (ggml's reference rounding: roundf). */
void quantize_row_q8_0_ref(block_q8_0 *out, const float *x, int64_t n);
void quantize_row_q4_0_ref(block_q4_0 *out, const float *x, int64_t n);
/* Quantize / dequantize n floats (n a multiple of 256) to / from K-quant blocks,
 * as ggml's quantize_row_q*_K_ref (no importance matrix) and dequantize_row_q*_K. */
void quantize_row_q4_K_ref(block_q4_K *out, const float *x, int64_t n);
void quantize_row_q5_K_ref(block_q5_K *out, const float *x, int64_t n);
void quantize_row_q6_K_ref(block_q6_K *out, const float *x, int64_t n);
void dequant_row_q4_K_ref(float *out, const block_q4_K *x, int64_t n);
void dequant_row_q5_K_ref(float *out, const block_q5_K *x, int64_t n);
void dequant_row_q6_K_ref(float *out, const block_q6_K *x, int64_t n);

/* out (T, OC) = x (T, IC) . w^T.
 * The reference dequantizes each weight row to f32 and accumulates in f32.
 * The fast version may quantize x to Q8_0 for Q8_0 / Q4_0 weights (as llama.cpp
 * does) and round x to bf16 for BF16 weights; its tolerance is stated in its test.
 * scratch: at least matmul_scratch_size(w->type, T, IC) bytes, 64-byte aligned. */
void matmul_forward_ref(float *out, const float *x, const herd_weight *w, int T);
size_t matmul_scratch_size(int type, int T, int64_t ic);
void matmul_forward(float *out, const float *x, const herd_weight *w, int T, void *scratch);
/* out[j] = x . w[j]^T for n weights over the same x (attention's q, k, v; the
 * FFN's gate, up): bitwise what n matmul_forward calls give, but when the weights
 * share a type, input size and kernel, x is prepared once and the n matmuls run in
 * one parallel region. scratch as for one. */
void matmul_forward_n(float *const *out, const float *x, const herd_weight *const *w, int n, int T, void *scratch);
/* Repacks w into the layout this CPU's matmul reads fastest, when it has one
 * (AVX-512: Q8_0, Q4_0, F32, F16, BF16, cpu/pack_avx512.c; Q4_K, Q6_K,
 * cpu/kpack_avx512.c), and sets w->packed; w->data stays valid. Results stay
 * bitwise the same, except that packed K-quants quantize x per 32 (as Q8_0
 * does) where the other K-quant paths quantize it per 256. done (may be NULL) is
 * called on each run of source rows once it is packed (so the caller can give
 * those pages back while the rest is packed). Returns the packed bytes (0:
 * nothing to pack, or out of memory: the unpacked path runs).
 * matmul_unpack frees the copy. */
size_t matmul_pack(herd_weight *w, void (*done)(void *ctx, const void *rows, size_t bytes), void *ctx);
void matmul_unpack(herd_weight *w);

/* out (T, C) = x / sqrt(mean(x^2) + eps) * w (C). out may alias x. */
void rmsnorm_forward_ref(float *out, const float *x, const float *w, int T, int C, float eps);
void rmsnorm_forward(float *out, const float *x, const float *w, int T, int C, float eps);

/* Rotary embedding in place on x (T, NH, HS) for positions pos0 .. pos0+T-1.
 * freqs (HS/2): per-pair angular frequency (llama3 scaling already applied).
 * interleaved = 1: pairs (2i, 2i+1) (Meta / GGUF row order);
 * interleaved = 0: pairs (i, i + HS/2) (HF rotate_half order). */
void rope_forward_ref(float *x, const float *freqs, int pos0, int T, int NH, int HS, int interleaved);
void rope_forward(float *x, const float *freqs, int pos0, int T, int NH, int HS, int interleaved);

/* Causal GQA attention of T new queries at positions pos0 .. pos0+T-1 over the
 * cache, which already holds keys / values for positions 0 .. pos0+T-1.
 * out (T, NH*HS), q (T, NH, HS), kc / vc (S, NKV, HS) with S >= pos0+T.
 * scratch: at least attention_scratch_size(T, pos0+T, NH) floats (NH * S). */
void attention_forward_ref(float *out, const float *q, const float *kc, const float *vc,
                           int pos0, int T, int NH, int NKV, int HS);
size_t attention_scratch_size(int T, int S, int NH);
void attention_forward(float *out, const float *q, const float *kc, const float *vc,
                       int pos0, int T, int NH, int NKV, int HS, float *scratch);

/* The same over a KV cache stored as f16 (IEEE half): kc / vc (S, NKV, HS) f16,
 * widened exactly to f32 as they are read; everything else as above. */
void attention_forward_f16_ref(float *out, const float *q, const uint16_t *kc, const uint16_t *vc,
                               int pos0, int T, int NH, int NKV, int HS);
void attention_forward_f16(float *out, const float *q, const uint16_t *kc, const uint16_t *vc,
                           int pos0, int T, int NH, int NKV, int HS, float *scratch);

/* Paged attention: the same causal GQA attention over a KV cache held in pages
 * of ATTN_PAGE positions (kvcache.c owns the pages; kvcache.h the page tables).
 * Layer l's part of a page holds, for each kv head g, a K tile then (after all
 * NKV K tiles) a V tile, each tile_bytes long, in the cache's element type:
 *   F32 / F16: K (HS, ATTN_PAGE) transposed: key p's element d at d * ATTN_PAGE + p;
 *              V (ATTN_PAGE, HS): value p's element d at p * HS + d.
 *   Q8_0:      each key / value quantized per 32 elements exactly as GGUF's
 *              block_q8_0 (f16 scale d, 32 int8 q, x = q * d), laid out as
 *              K: int8 q (HS, ATTN_PAGE) transposed, then f16 d (HS / 32, ATTN_PAGE);
 *              V: block_q8_0 (ATTN_PAGE, HS / 32).
 * The fast kernel is tiled flash attention (online softmax, one page at a time,
 * no (T, S) score matrix); a query row's result is bitwise the same whatever T
 * is and whatever other rows are in the call. Its reference is kv_attend_ref
 * (kvcache.h): pages dequantized to f32, then attention_forward_ref. */
enum { ATTN_PAGE = 64 };
typedef struct {
    int type;               /* HERD_F32, HERD_F16 or HERD_Q8_0 */
    int NKV, HS;            /* HS a multiple of 32 for Q8_0 */
    const uint8_t *base;    /* page id i >= 1 starts at base + (i - 1) * page_bytes */
    size_t page_bytes;
    size_t layer_off;       /* this layer's tiles start at page + layer_off */
    size_t tile_bytes;      /* ATTN_PAGE positions of one kv head, K or V */
    const int32_t *pages;   /* (ceil(S / ATTN_PAGE)) page ids of positions 0 .. S-1 */
} attn_paged_kv;
/* out (T, NH*HS), q (T, NH, HS): queries at positions pos0 .. pos0+T-1 over the
 * keys / values at positions 0 .. pos0+T-1, all already stored in the pages.
 * scratch: attention_paged_scratch_size(T, NH) floats. */
size_t attention_paged_scratch_size(int T, int NH);
void attention_paged_forward(float *out, const float *q, const attn_paged_kv *kv, int pos0, int T,
                             int NH, float *scratch);

/* out (n) f16 = x (n) rounded to nearest even (KV cache stores). */
void f32_to_f16_row_ref(uint16_t *out, const float *x, int64_t n);
void f32_to_f16_row(uint16_t *out, const float *x, int64_t n);

/* x (n) += y (n): the residual adds. */
void add_forward(float *x, const float *y, int64_t n);

/* out (T, F) = silu(gate) * up. out may alias gate. */
/* LoRA deltas of n projections that read the same input: for each p[k],
 * out row rows[i] (OC) += (A x_i) B^T, where x_i is row rows[i] of x (IC; rows
 * NULL: row i), A (r, IC) and bt = B^T (r, OC), F32 row-major. t: scratch of
 * T * (sum of the r) floats. Each t_j = A_j . x_i is one dot in a fixed order
 * and each output adds t_j bt_j[o] for j = 0 .. r-1 in turn, so a row's result
 * depends on that row alone: not on T, the other rows or the threads (batch
 * invariance). The fast version runs both phases across threads. */
typedef struct {
    const float *a, *bt;
    float *out;
    int64_t oc;
    int r;
} lora_proj;
void lora_forward_ref(const lora_proj *p, int n, const float *x, const int32_t *rows, int T, int64_t ic, float *t);
void lora_forward(const lora_proj *p, int n, const float *x, const int32_t *rows, int T, int64_t ic, float *t);
void swiglu_forward_ref(float *out, const float *gate, const float *up, int T, int F);
void swiglu_forward(float *out, const float *gate, const float *up, int T, int F);

/* Softmax in place over n values. */
void softmax_ref(float *x, int n);

/* Llama 3 rope frequencies (HS/2) from theta and the llama3 scaling parameters
 * (scaling = 0: plain theta^(-2i/HS)), computed as Meta's apply_scaling. */
void rope_freqs_llama3(float *freqs, int HS, float theta, int scaling, float factor,
                       float low_freq_factor, float high_freq_factor, int orig_max_pos);

#endif
