/* init.c - `herd init`: writes a random-weight Llama 3.1-architecture model of any
 * shape as a Hugging Face directory (config.json, generation_config.json,
 * model.safetensors in BF16, tokenizer.model + tokenizer.json) and optionally as
 * a GGUF file (F32, F16, BF16, Q8_0 or Q4_0) that llama.cpp loads.
 *
 * Weights are bf16-rounded values from herd's seeded RNG, so every format holds
 * the same model (quantized GGUFs excepted). Scales keep the residual stream O(1)
 * and the logits peaked (a random model with HF's 0.02 init has near-uniform
 * logits, which makes greedy comparisons meaningless):
 *   embeddings, lm_head N(0, 1); q k v o gate up N(0, 1/C); down N(0, 1/F);
 *   layer norms 1 + 0.1 N(0,1); final norm (12/sqrt(C)) * random sign * (1 + 0.1 N).
 * In safetensors q/k rows are in HF rotate-half order; in GGUF they are permuted
 * to Meta's interleaved order, as llama.cpp's converter does.
 * Not here: training initialisation (the trainer may use its own scales).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model.h"
#include "tokenizer.h"

typedef struct {
    char hf_name[128], gguf_name[128];
    int n_dims;
    int64_t rows, cols;    /* 1-D: rows = 1 */
    float *data;           /* (rows, cols) bf16-exact float32 values */
    int permute_heads;     /* > 0: q/k with this many heads (permute for GGUF) */
} init_tensor;

static float bf16_round(float x) { return herd_bf16_to_f32(herd_f32_to_bf16(x)); }

static herd_status fill(init_tensor *t, herd_rng *rng, int kind, float scale, int dim) {
    size_t n = (size_t)t->rows * (size_t)t->cols;
    t->data = malloc(n * sizeof(float));
    if (!t->data) return HERD_ERR_NOMEM;
    if (kind == 0) {          /* matrix: N(0, scale^2) */
        for (size_t i = 0; i < n; i++) t->data[i] = bf16_round((float)(herd_rng_normal(rng) * scale));
    } else if (kind == 1) {   /* norm gain around 1 */
        for (size_t i = 0; i < n; i++) t->data[i] = bf16_round((float)(1.0 + 0.1 * herd_rng_normal(rng)));
    } else {                  /* final norm: random sign, logit scale */
        double T = 12.0 / sqrt((double)dim);
        for (size_t i = 0; i < n; i++) {
            double sign = (herd_rng_next(rng) >> 63) ? -1.0 : 1.0;
            t->data[i] = bf16_round((float)(T * sign * (1.0 + 0.1 * herd_rng_normal(rng))));
        }
    }
    return HERD_OK;
}

/* HF rotate-half rows -> Meta interleaved rows (model_qk_hf_row). */
static void permute_qk(float *dst, const float *src, int n_heads, int64_t rows, int64_t cols) {
    const int64_t HS = rows / n_heads;
    for (int64_t r = 0; r < rows; r++)
        memcpy(dst + r * cols, src + model_qk_hf_row(r, HS) * cols, (size_t)cols * sizeof(float));
}

/* Converts float32 rows to the GGUF type; returns a malloc'd buffer. */
static void *convert(const float *x, int64_t rows, int64_t cols, int type) {
    size_t row_bytes = herd_type_row_size(type, cols);
    uint8_t *out = malloc(row_bytes * (size_t)rows);
    if (!out) return NULL;
    for (int64_t r = 0; r < rows; r++) {
        const float *src = x + r * cols;
        uint8_t *dst = out + (size_t)r * row_bytes;
        switch (type) {
        case HERD_F32: memcpy(dst, src, row_bytes); break;
        case HERD_F16: for (int64_t i = 0; i < cols; i++) ((uint16_t *)dst)[i] = herd_f32_to_f16(src[i]); break;
        case HERD_BF16: for (int64_t i = 0; i < cols; i++) ((uint16_t *)dst)[i] = herd_f32_to_bf16(src[i]); break;
        case HERD_Q8_0: quantize_row_q8_0_ref((block_q8_0 *)dst, src, cols); break;
        case HERD_Q4_0: quantize_row_q4_0_ref((block_q4_0 *)dst, src, cols); break;
        default: free(out); return NULL;
        }
    }
    return out;
}

static herd_status make_tokenizer(herd_tokenizer **tok, const char *path, herd_error *err) {
    if (!path) return herd_tokenizer_from_tokens(tok, NULL, NULL, 0, err);
    struct stat sb;
    if (stat(path, &sb) != 0)
        return herd_errf(err, HERD_ERR_IO, "tokenizer '%s' not found: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode) || (strlen(path) > 5 && !strcmp(path + strlen(path) - 5, ".gguf"))) {
        herd_model *m;
        herd_status st = model_load(&m, path, err);
        if (st) return st;
        /* take the tokenizer over from the model */
        *tok = m->tok;
        m->tok = NULL;
        herd_model_free(m);
        return HERD_OK;
    }
    if (strlen(path) > 5 && !strcmp(path + strlen(path) - 5, ".json"))
        return herd_tokenizer_load_hf_json(tok, path, err);
    return herd_tokenizer_load_tiktoken(tok, path, err);
}

static herd_status write_gguf(const herd_config *c, const herd_tokenizer *tok, init_tensor *ts,
                              int n, const char *path, int type, herd_error *err) {
    gguf_writer *w = gguf_writer_new();
    if (!w) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    float *div = NULL;
    herd_status st = HERD_OK;
    if (c->rope_scaling) {
        /* llama.cpp's form of llama3 scaling: per-frequency divisors */
        div = malloc((size_t)(c->head_dim / 2) * sizeof(float));
        if (!div) st = herd_errf(err, HERD_ERR_NOMEM, "out of memory");
        else model_rope_divisors(c, div);
    }
    uint32_t ftype = type == HERD_F32 ? HERD_FTYPE_F32 : type == HERD_F16 ? HERD_FTYPE_F16
                     : type == HERD_Q4_0 ? HERD_FTYPE_Q4_0 : type == HERD_Q8_0 ? HERD_FTYPE_Q8_0
                     : HERD_FTYPE_BF16;
    if (!st) st = model_gguf_add_header(w, c, tok, "herd-init", ftype, div, err);
    free(div);
    for (int i = 0; i < n && !st; i++) {
        init_tensor *t = &ts[i];
        int ttype = t->n_dims == 1 ? HERD_F32 : type;
        const float *src = t->data;
        float *perm = NULL;
        if (t->permute_heads) {
            perm = malloc((size_t)t->rows * t->cols * sizeof(float));
            if (!perm) { st = herd_errf(err, HERD_ERR_NOMEM, "out of memory"); break; }
            permute_qk(perm, t->data, t->permute_heads, t->rows, t->cols);
            src = perm;
        }
        void *buf = convert(src, t->rows, t->cols, ttype);
        free(perm);
        if (!buf) { st = herd_errf(err, HERD_ERR_NOMEM, "out of memory converting '%s'", t->gguf_name); break; }
        int64_t ne[2] = { t->cols, t->rows };
        st = gguf_writer_add_tensor(w, t->gguf_name, ttype, t->n_dims, ne, buf, err);
        free(buf);
    }
    if (!st) st = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    return st;
}

static herd_status write_hf(const herd_config *c, const herd_tokenizer *tok, init_tensor *ts,
                            int n, const char *dir, herd_error *err) {
    if (herd_make_dirs(dir) != 0)
        return herd_errf(err, HERD_ERR_IO, "cannot create directory '%s': %s", dir, strerror(errno));
    char path[4096];
    herd_status st;
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((st = hf_config_write(c, path, err))) return st;
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    if ((st = hf_generation_config_write(c, path, err))) return st;
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    if ((st = herd_tokenizer_write_tiktoken(tok, path, err))) return st;
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    if ((st = herd_tokenizer_write_hf_json(tok, path, err))) return st;
    st_writer *w = st_writer_new();
    if (!w) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < n && !st; i++) {
        init_tensor *t = &ts[i];
        size_t cnt = (size_t)t->rows * t->cols;
        uint16_t *bf = malloc(cnt * sizeof *bf);
        if (!bf) { st = herd_errf(err, HERD_ERR_NOMEM, "out of memory"); break; }
        for (size_t j = 0; j < cnt; j++) bf[j] = herd_f32_to_bf16(t->data[j]);
        int64_t shape[2] = { t->rows, t->cols };
        if (t->n_dims == 1) shape[0] = t->cols;
        st = st_writer_add(w, t->hf_name, HERD_BF16, t->n_dims, shape, bf, err);
        free(bf);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!st) st = st_writer_write(w, path, err);
    st_writer_free(w);
    return st;
}

herd_status herd_init_model(const herd_init_params *p, const char *hf_dir, const char *gguf_path,
                            int gguf_type, herd_error *err) {
    herd_config c = p->config;
    if (c.dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.ffn_dim <= 0)
        return herd_errf(err, HERD_ERR_ARG, "init: dim, layers, heads and ffn dim must be positive");
    if (c.n_kv_heads <= 0) c.n_kv_heads = c.n_heads;
    if (c.head_dim <= 0) c.head_dim = c.dim / c.n_heads;
    if (c.n_heads % c.n_kv_heads || c.head_dim % 2 || c.head_dim * c.n_heads <= 0)
        return herd_errf(err, HERD_ERR_ARG, "init: heads %d must be a multiple of kv heads %d and "
                         "head dim %d even", c.n_heads, c.n_kv_heads, c.head_dim);
    if (gguf_path && gguf_type != HERD_F32 && gguf_type != HERD_F16 && gguf_type != HERD_BF16 &&
        gguf_type != HERD_Q8_0 && gguf_type != HERD_Q4_0)
        return herd_errf(err, HERD_ERR_ARG, "init: GGUF type %s not supported; use F32, F16, "
                         "BF16, Q8_0 or Q4_0", herd_type_name(gguf_type));
    if (gguf_path && (gguf_type == HERD_Q8_0 || gguf_type == HERD_Q4_0) &&
        (c.dim % 32 || c.ffn_dim % 32 || (c.n_heads * c.head_dim) % 32))
        return herd_errf(err, HERD_ERR_ARG, "init: %s needs dim, ffn dim and heads*head_dim "
                         "divisible by 32", herd_type_name(gguf_type));
    herd_tokenizer *tok = NULL;
    herd_status st = make_tokenizer(&tok, p->tokenizer_path, err);
    if (st) return st;
    c.vocab_size = herd_tokenizer_n_vocab(tok);
    int n_bpe = herd_tokenizer_n_bpe(tok);
    c.bos_id = n_bpe;
    c.n_eos = 3;
    c.eos_ids[0] = n_bpe + 1;
    c.eos_ids[1] = n_bpe + 8;
    c.eos_ids[2] = n_bpe + 9;

    int n = 2 + 9 * c.n_layers + (c.tie_embeddings ? 0 : 1);
    init_tensor *ts = calloc((size_t)n, sizeof *ts);
    if (!ts) { herd_tokenizer_free(tok); return herd_errf(err, HERD_ERR_NOMEM, "out of memory"); }
    int64_t C = c.dim, F = c.ffn_dim, QD = (int64_t)c.n_heads * c.head_dim,
            KVD = (int64_t)c.n_kv_heads * c.head_dim;
    herd_rng rng;
    herd_rng_seed(&rng, p->seed);
    int k = 0;
#define T_(H, G, ND, R, CO, KIND, SC, PERM) do { init_tensor *t_ = &ts[k++]; \
        snprintf(t_->hf_name, sizeof t_->hf_name, "%s", H); \
        snprintf(t_->gguf_name, sizeof t_->gguf_name, "%s", G); \
        t_->n_dims = ND; t_->rows = R; t_->cols = CO; t_->permute_heads = PERM; \
        if (fill(t_, &rng, KIND, SC, c.dim)) st = HERD_ERR_NOMEM; } while (0)
    T_("model.embed_tokens.weight", "token_embd.weight", 2, c.vocab_size, C, 0, 1.0f, 0);
    char h[128], g[128];
    float s_in = (float)(1.0 / sqrt((double)C)), s_ffn = (float)(1.0 / sqrt((double)F));
    for (int l = 0; l < c.n_layers && !st; l++) {
#define NAMES(HN, GN) snprintf(h, sizeof h, "model.layers.%d.%s.weight", l, HN), \
                      snprintf(g, sizeof g, "blk.%d.%s.weight", l, GN)
        NAMES("input_layernorm", "attn_norm");       T_(h, g, 1, 1, C, 1, 0, 0);
        NAMES("self_attn.q_proj", "attn_q");         T_(h, g, 2, QD, C, 0, s_in, c.n_heads);
        NAMES("self_attn.k_proj", "attn_k");         T_(h, g, 2, KVD, C, 0, s_in, c.n_kv_heads);
        NAMES("self_attn.v_proj", "attn_v");         T_(h, g, 2, KVD, C, 0, s_in, 0);
        NAMES("self_attn.o_proj", "attn_output");    T_(h, g, 2, C, QD, 0, s_in, 0);
        NAMES("post_attention_layernorm", "ffn_norm"); T_(h, g, 1, 1, C, 1, 0, 0);
        NAMES("mlp.gate_proj", "ffn_gate");          T_(h, g, 2, F, C, 0, s_in, 0);
        NAMES("mlp.up_proj", "ffn_up");              T_(h, g, 2, F, C, 0, s_in, 0);
        NAMES("mlp.down_proj", "ffn_down");          T_(h, g, 2, C, F, 0, s_ffn, 0);
#undef NAMES
    }
    if (!st) T_("model.norm.weight", "output_norm.weight", 1, 1, C, 2, 0, 0);
    if (!st && !c.tie_embeddings) T_("lm_head.weight", "output.weight", 2, c.vocab_size, C, 0, 1.0f, 0);
#undef T_
    if (st) st = herd_errf(err, HERD_ERR_NOMEM, "out of memory generating weights");
    if (!st && hf_dir) st = write_hf(&c, tok, ts, k, hf_dir, err);
    if (!st && gguf_path) st = write_gguf(&c, tok, ts, k, gguf_path, gguf_type, err);
    for (int i = 0; i < n; i++) free(ts[i].data);
    free(ts);
    herd_tokenizer_free(tok);
    return st;
}
