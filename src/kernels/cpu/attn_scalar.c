/* attn_scalar.c - the portable paged-attention page kernel (attn_generic.h) built
 * with the baseline flags: the fallback of every CPU. */
#include "kernels/cpu/attn_generic.h"

const attn_isa attn_isa_scalar = { "scalar", gen_supports, { gen_page_f32, gen_page_f16, gen_page_q8_0 }, NULL };
