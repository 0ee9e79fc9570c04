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
};

#endif
