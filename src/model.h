/* model.h - the internal layout of a loaded model, shared by model.c (loading),
 * forward.c (inference) and init.c (writing). Not public: herd.h has the handles. */
#ifndef HERD_MODEL_H
#define HERD_MODEL_H

#include "core/core.h"
#include "format/format.h"
#include "kernels/kernels.h"

typedef struct {
    float *attn_norm;             /* (C) owned float32 */
    herd_weight wq, wk, wv, wo;   /* (NH*HS, C) (NKV*HS, C) (NKV*HS, C) (C, NH*HS) */
    float *ffn_norm;              /* (C) */
    herd_weight w1, w2, w3;       /* gate (F, C), down (C, F), up (F, C) */
} herd_layer;

struct herd_model {
    char *path;
    herd_config config;
    herd_tokenizer *tok;
    gguf_file *gguf;          /* the source, when GGUF */
    st_set *st;               /* the source, when safetensors */
    herd_weight tok_embd;     /* (V, C) */
    herd_layer *layers;       /* (L) */
    float *out_norm;          /* (C) */
    herd_weight output;       /* (V, C); = tok_embd when tied */
    float *rope_freqs;        /* (HS/2) with llama3 scaling applied */
    int rope_interleaved;     /* 1: GGUF/Meta pair order; 0: HF rotate-half */
    uint64_t n_params;
    int type_count[64];       /* matrices per herd_type, for info */
    size_t packed_bytes;      /* weights repacked for the CPU's matmul (herd_model_load) */
};

/* q / k rows: GGUF (Meta's interleaved pairs) row r, in heads of HS rows, is HF
 * (rotate-half) row model_qk_hf_row(r, HS): row h*HS + 2i + j <- h*HS + j*HS/2 + i.
 * The one mapping herd init, herd quantize and LoRA adapters permute by. */
static inline int64_t model_qk_hf_row(int64_t r, int64_t HS) {
    const int64_t h = r / HS, k = r % HS;
    return h * HS + (k % 2) * (HS / 2) + k / 2;
}

/* herd_model_load without repacking the weights (matmul_pack): for code that
 * reads the weights as stored (training, quantize, init) rather than running them. */
herd_status model_load(herd_model **out, const char *path, herd_error *err);

/* quantize.c: the GGUF metadata herd writes for a Llama model (herd init and herd
 * quantize): general.*, llama.*, the tokenizer, and rope_freqs.weight (HS/2 llama3
 * divisors) when rope_div is non-NULL. */
herd_status model_gguf_add_header(gguf_writer *w, const herd_config *c, const herd_tokenizer *tok,
                                  const char *name, uint32_t file_type, const float *rope_div,
                                  herd_error *err);
/* div (HS/2): llama.cpp's per-frequency divisors of c's llama3 scaling. */
void model_rope_divisors(const herd_config *c, float *div);

#endif
