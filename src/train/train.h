/* train.h - the training core (internal): float32 training ops in forward /
 * backward pairs, the training model (parameters, gradients, saved activations for
 * one (B, T) shape), AdamW, the data loader and checkpoints. herd_train() in
 * trainer.c ties them together; LoRA and distillation are meant to reuse the ops
 * and the model with other parameter sets.
 *
 * Shapes as kernels.h: B batch, T tokens, C dim, NH heads, NKV kv heads, HS head
 * size, F ffn dim, V vocab, L layers, IC / OC linear in / out features; N = B*T
 * rows of a batch. Argument order: outputs, inputs, weights, dims; backward: input
 * grads, weight grads, output grad, saved tensors, weights, dims. Weight gradients
 * accumulate (+=); input gradients are overwritten unless said otherwise.
 * Every op is deterministic for any thread count: each output element is written
 * by one thread, summing in a fixed order.
 */
#ifndef HERD_TRAIN_H
#define HERD_TRAIN_H

#include "model.h"
#include "train/tokfile.h"

/* ---- ops (train_ops.c) ------------------------------------------------------ */

/* out (N, C) = wte (V, C) rows of ids (N). */
void embedding_forward(float *out, const int32_t *ids, const float *wte, int N, int C);
/* dwte (V, C) += dout (N, C) at rows ids. */
void embedding_backward(float *dwte, const float *dout, const int32_t *ids, int N, int C);

/* out (N, C) = x * rstd * w; rstd (N) saved. */
void rmsnorm_train_forward(float *out, float *rstd, const float *x, const float *w, int N, int C,
                           float eps);
/* dx (N, C) += ..., dw (C) += ...; from dout (N, C), saved x (N, C), rstd (N). dx is
 * accumulated because it lands on the residual stream. */
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *rstd,
                      const float *w, int N, int C);

/* out (N, OC) = x (N, IC) . w (OC, IC)^T, float32 weights. */
void matmul_train_forward(float *out, const float *x, const float *w, int N, int IC, int OC);
/* dx (N, IC) = (accumulate ? dx + : ) dout . w; dw (OC, IC) += dout^T . x. dx may be NULL. */
void matmul_backward(float *dx, float *dw, const float *dout, const float *x, const float *w,
                     int N, int IC, int OC, int accumulate);
/* The plain references of the two (single-threaded, obvious loops). */
void matmul_train_forward_ref(float *out, const float *x, const float *w, int N, int IC, int OC);
void matmul_backward_ref(float *dx, float *dw, const float *dout, const float *x, const float *w,
                         int N, int IC, int OC, int accumulate);

/* AVX2 + FMA versions (matmul_train_avx2.c); the two above call them when
 * herd_cpu_isa() allows AVX2. */
void matmul_train_forward_avx2(float *out, const float *x, const float *w, int N, int IC, int OC);
void matmul_backward_avx2(float *dx, float *dw, const float *dout, const float *x, const float *w,
                          int N, int IC, int OC, int accumulate);

/* Rotary tables for positions 0 .. T-1: cos, sin (T, HS/2) of pos * freqs[i]. */
void rope_tables(float *cos_t, float *sin_t, const float *freqs, int T, int HS);
/* In place on x (B, T, NH, HS), positions 0 .. T-1 in every sequence. */
void rope_train_forward(float *x, const float *cos_t, const float *sin_t, int B, int T, int NH,
                        int HS, int interleaved);
/* In place on dx (B, T, NH, HS): the transposed rotation. */
void rope_backward(float *dx, const float *cos_t, const float *sin_t, int B, int T, int NH,
                   int HS, int interleaved);

/* Causal GQA self-attention within each of B sequences of T tokens.
 * out (B, T, NH*HS); att (B, NH, T, T) saved softmax probabilities (upper triangle
 * zero); q (B, T, NH, HS), k v (B, T, NKV, HS). */
void attention_train_forward(float *out, float *att, const float *q, const float *k,
                             const float *v, int B, int T, int NH, int NKV, int HS);
/* dq dk dv (overwritten) from dout (B, T, NH*HS) and the saved att, q, k, v.
 * scratch: B*NKV*T floats. */
void attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *att,
                        const float *q, const float *k, const float *v, int B, int T, int NH,
                        int NKV, int HS, float *scratch);

/* out (N, F) = silu(gate) * up. */
void swiglu_train_forward(float *out, const float *gate, const float *up, int N, int F);
/* dgate dup (N, F) from dout (N, F), saved gate, up. */
void swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                     const float *up, int N, int F);

/* Softmax cross-entropy: losses (N) = -log softmax(logits)[targets]; returns the
 * mean. The backward overwrites logits (N, V) with dlogits = dloss * (p - onehot). */
double crossentropy_forward(float *losses, const float *logits, const int32_t *targets, int N,
                            int V);
void crossentropy_backward(float *dlogits, const float *logits, const int32_t *targets,
                           float dloss, int N, int V);

/* ---- the training model (train_model.c) -------------------------------------- */

typedef struct {
    float *attn_norm;          /* (C) */
    float *wq, *wk, *wv, *wo;  /* (NH*HS, C) (NKV*HS, C) (NKV*HS, C) (C, NH*HS) */
    float *ffn_norm;           /* (C) */
    float *w1, *w2, *w3;       /* (F, C) (C, F) (F, C) */
} train_layer;

typedef struct {
    float *tok_embd;           /* (V, C) */
    train_layer *layers;       /* (L) */
    float *out_norm;           /* (C) */
    float *output;             /* (V, C); = tok_embd when tied */
} train_params;

/* Saved activations of one layer, for (B, T). */
typedef struct {
    float *x;          /* (N, C) residual stream entering the layer */
    float *xn1;        /* (N, C) attention rmsnorm output */
    float *rstd1;      /* (N) */
    float *q, *k, *v;  /* (N, NH*HS) (N, NKV*HS) (N, NKV*HS), q k after rope */
    float *att;        /* (B, NH, T, T) */
    float *atty;       /* (N, NH*HS) */
    float *xmid;       /* (N, C) residual after attention */
    float *xn2;        /* (N, C) */
    float *rstd2;      /* (N) */
    float *h1, *h3;    /* (N, F) gate and up pre-activations */
    float *hs;         /* (N, F) swiglu output */
} train_acts_layer;

typedef struct {
    herd_config c;
    int rope_interleaved;
    int B, T;
    size_t n_params;           /* floats in params (tied: no separate output) */
    float *params, *grads;     /* (n_params) each, one allocation each */
    train_params w, dw;        /* views into params / grads */
    float *rope_cos, *rope_sin; /* (T, HS/2) */
    /* activations */
    train_acts_layer *acts;    /* (L) */
    float *xf, *xnf, *rstdf;   /* (N, C) (N, C) (N): final residual, norm, rstd */
    float *logits;             /* (N, V); dlogits after backward */
    float *losses;             /* (N) */
    /* backward scratch */
    float *dx, *dxn;           /* (N, C) */
    float *dq, *dk, *dv, *datty; /* (N, NH*HS) (N, NKV*HS) (N, NKV*HS) (N, NH*HS) */
    float *dh1, *dh3, *dhs;    /* (N, F) */
    float *att_scratch;        /* (B*NKV*T) */
    void *mem;                 /* the one activation allocation */
} train_model;

/* Allocates parameters, gradients and activations for batches of B sequences of T
 * tokens. freqs (HS/2): rope frequencies. Parameters start zero. */
herd_status train_model_new(train_model *tm, const herd_config *c, const float *freqs,
                            int rope_interleaved, int B, int T, herd_error *err);
void train_model_free(train_model *tm);
/* Dequantizes a loaded model's weights into tm->params (float32 master copy). */
herd_status train_model_load(train_model *tm, const herd_model *m, herd_error *err);
/* Replaces the parameters with a from-scratch initialisation (seeded): 2-D weights
 * N(0, 0.02^2), o_proj and down_proj N(0, (0.02/sqrt(2L))^2), norm gains 1. */
void train_model_init_scratch(train_model *tm, uint64_t seed);
/* Forward over ids (B, T) with targets (B, T): returns the mean cross-entropy and
 * leaves per-token losses in tm->losses. */
double train_forward(train_model *tm, const int32_t *ids, const int32_t *targets);
/* Accumulates into tm->grads the gradient of dloss * mean loss of the last forward. */
void train_backward(train_model *tm, const int32_t *ids, const int32_t *targets, float dloss);
/* Visits every parameter tensor (HF name, shape, data, is a 2-D weight). */
typedef void (*train_tensor_fn)(void *ctx, const char *hf_name, const char *gguf_name, int n_dims,
                                int64_t rows, int64_t cols, float *data, int qk_heads);
void train_model_each_tensor(const train_model *tm, train_tensor_fn fn, void *ctx);

/* ---- optimizer (optim.c) ----------------------------------------------------- */

typedef struct {
    float lr, beta1, beta2, eps, weight_decay;
} adamw_params;

/* One AdamW step (PyTorch's formulation) on n floats of one tensor, step t >= 1,
 * with that tensor's decoupled weight decay wd (the trainer passes 0 for norm gains). */
void adamw_update(float *p, const float *g, float *m, float *v, size_t n, const adamw_params *a,
                  float wd, uint64_t t);
/* sqrt of the sum of squares of g (n), in double, fixed order. */
double grad_global_norm(const float *g, size_t n);
/* lr at step (0-based): linear warmup over `warmup` steps to lr, then constant or
 * cosine down to lr_min = 0.1 lr at step `steps`. */
float lr_schedule(int step, int steps, int warmup, float lr, int cosine);

/* ---- data (loader.c) ---------------------------------------------------------- */

typedef struct {
    const tokfile *tf;
    int B, T;
    uint64_t n_windows;    /* full windows of T+1 tokens starting at multiples of T */
    int shuffle;
    uint64_t seed;
    uint64_t pos;          /* windows consumed so far */
    uint64_t *perm;        /* (n_windows) current epoch's order (shuffle only) */
    uint64_t perm_epoch;   /* the epoch perm holds; UINT64_MAX: none yet */
} train_loader;

herd_status loader_init(train_loader *ld, const tokfile *tf, int B, int T, int shuffle,
                        uint64_t seed, herd_error *err);
void loader_free(train_loader *ld);
/* Fills ids, targets (B, T) with the next B windows and advances pos. */
void loader_next(train_loader *ld, int32_t *ids, int32_t *targets);

/* ---- checkpoints (checkpoint.c) ---------------------------------------------- */

/* What besides weights and moments a run needs to continue bit-identically. */
typedef struct {
    uint64_t step;         /* optimizer steps done */
    uint64_t data_pos;     /* loader windows consumed */
    herd_rng rng;          /* the trainer's RNG (reserved for dropout-style noise) */
    int32_t B, T, accum, shuffle;
    uint64_t seed;
    float *losses;         /* (step) mean train loss of each step done; caller-owned,
                              capacity >= max(step, steps of the run) */
} train_state;

/* Writes path atomically: versioned header, losses, params, AdamW m, v. */
herd_status checkpoint_save(const char *path, const train_model *tm, const float *m,
                            const float *v, const train_state *s, herd_error *err);
/* Reads path into tm->params, m, v and s (s->losses must hold loss_capacity floats).
 * Rejects a checkpoint of another model shape or batch layout. */
herd_status checkpoint_load(const char *path, train_model *tm, float *m, float *v,
                            train_state *s, uint64_t loss_capacity, herd_error *err);

/* ---- export (export.c) -------------------------------------------------------- */

/* dir/hf (config, generation config, tokenizer, model.safetensors F32) and
 * dir/model.gguf (F32) from tm's weights and config; tok from the init model. */
herd_status train_export(const train_model *tm, const herd_tokenizer *tok, const char *dir,
                         herd_error *err);
/* A loss curve: train losses (n) as a polyline, eval points (n_eval at eval_steps). */
herd_status train_write_svg(const char *path, const float *losses, int n, const int *eval_steps,
                            const float *eval_losses, int n_eval, herd_error *err);

#endif
