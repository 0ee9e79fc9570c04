/* attn_avx2.c - the portable paged-attention page kernel (attn_generic.h) built
 * with AVX2 + FMA + F16C flags (Makefile's *_avx2 rule), chosen at run time when
 * the CPU has AVX2 but not AVX-512. */
#include <immintrin.h>

#define GEN_F16_TO_F32(h) _cvtsh_ss(h)
#include "kernels/cpu/attn_generic.h"

const attn_isa attn_isa_avx2 = { "avx2", gen_supports, { gen_page_f32, gen_page_f16, gen_page_q8_0 } };
