/* model.c - a Llama 3.1 model: hyper-parameters, weight views and the tokenizer,
 * loaded from a Hugging Face directory (config.json + safetensors) or a GGUF file.
 *
 * Weights stay in the mapped files (zero copy) in their stored type; only the 1-D
 * norm gains are converted to owned float32 arrays. q/k rows are in HF's
 * rotate-half order in safetensors and in Meta's interleaved order in GGUF; the
 * model remembers which, and RoPE is applied in the matching layout (no copy).
 * Not here: the forward pass (forward.c), sampling (sampler.c), writing (init.c).
 */
#include "model.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokenizer.h"

const herd_config *herd_model_config(const herd_model *m) { return &m->config; }
const herd_tokenizer *herd_model_tokenizer(const herd_model *m) { return m->tok; }

/* ---- shape checks --------------------------------------------------------- */

static herd_status check_tensor(const herd_model *m, const herd_tensor *t, const char *name,
                                int n_dims, int64_t ne0, int64_t ne1, herd_error *err) {
    if (!t)
        return herd_errf(err, HERD_ERR_FORMAT,
                         "%s: tensor '%s' is missing; the checkpoint may be incomplete or not a "
                         "Llama model", m->path, name);
    int64_t want[2] = { ne0, ne1 };
    int nd = t->n_dims;
    while (nd > 1 && t->ne[nd - 1] == 1) nd--;
    if (nd != n_dims || t->ne[0] != want[0] || (n_dims == 2 && t->ne[1] != want[1])) {
        char got[96];
        if (t->n_dims >= 2) snprintf(got, sizeof got, "[%lld, %lld]", (long long)t->ne[1], (long long)t->ne[0]);
        else snprintf(got, sizeof got, "[%lld]", (long long)t->ne[0]);
        if (n_dims == 2)
            return herd_errf(err, HERD_ERR_FORMAT,
                             "%s: tensor '%s' has shape %s but the config implies [%lld, %lld]; "
                             "config.json and the weights disagree", m->path, name, got,
                             (long long)ne1, (long long)ne0);
        return herd_errf(err, HERD_ERR_FORMAT,
                         "%s: tensor '%s' has shape %s but the config implies [%lld]", m->path,
                         name, got, (long long)ne0);
    }
    return HERD_OK;
}

static herd_status as_weight(herd_model *m, herd_weight *w, const herd_tensor *t, const char *name,
                             int64_t oc, int64_t ic, herd_error *err) {
    herd_status st = check_tensor(m, t, name, 2, ic, oc, err);
    if (st) return st;
    switch (t->type) {
    case HERD_F32: case HERD_F16: case HERD_BF16: case HERD_Q8_0: case HERD_Q4_0:
    case HERD_Q4_K: case HERD_Q5_K: case HERD_Q6_K:
        break;
    default:
        return herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which herd "
                         "cannot compute with yet; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, "
                         "Q5_K, Q6_K", m->path, name, herd_type_name(t->type));
    }
    if (herd_type_row_size(t->type, ic) == 0)
        return herd_errf(err, HERD_ERR_FORMAT, "%s: tensor '%s': row of %lld elements is not a "
                         "whole number of %s blocks", m->path, name, (long long)ic,
                         herd_type_name(t->type));
    w->type = t->type;
    w->data = t->data;
    w->ic = ic;
    w->oc = oc;
    m->n_params += (uint64_t)(ic * oc);
    m->type_count[t->type & 63]++;
    return HERD_OK;
}

/* Copies a 1-D gain vector to owned float32. */
static herd_status as_vector(herd_model *m, float **out, const herd_tensor *t, const char *name,
                             int64_t n, herd_error *err) {
    herd_status st = check_tensor(m, t, name, 1, n, 1, err);
    if (st) return st;
    if (t->type != HERD_F32 && t->type != HERD_F16 && t->type != HERD_BF16)
        return herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s; norm weights "
                         "must be F32, F16 or BF16", m->path, name, herd_type_name(t->type));
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    dequant_row_ref(v, t->data, t->type, n);
    *out = v;
    m->n_params += (uint64_t)n;
    return HERD_OK;
}

static herd_status validate_config(const herd_model *m, herd_error *err) {
    const herd_config *c = &m->config;
    if (c->dim <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->ffn_dim <= 0 || c->vocab_size <= 0 || c->head_dim <= 0)
        return herd_errf(err, HERD_ERR_FORMAT, "%s: hyper-parameters must be positive (dim %d, "
                         "layers %d, heads %d, kv heads %d, ffn %d, vocab %d, head_dim %d)",
                         m->path, c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->ffn_dim,
                         c->vocab_size, c->head_dim);
    if (c->n_heads % c->n_kv_heads)
        return herd_errf(err, HERD_ERR_FORMAT, "%s: %d attention heads are not a multiple of %d "
                         "key/value heads", m->path, c->n_heads, c->n_kv_heads);
    if (c->head_dim % 2)
        return herd_errf(err, HERD_ERR_FORMAT, "%s: head_dim %d is odd; RoPE needs pairs",
                         m->path, c->head_dim);
    if (c->n_layers > 4096 || c->dim > (1 << 20) || c->ffn_dim > (1 << 22) || c->n_heads > 4096 ||
        c->vocab_size > (1 << 24) || c->head_dim > 4096)
        return herd_errf(err, HERD_ERR_FORMAT, "%s: hyper-parameters are implausibly large", m->path);
    return HERD_OK;
}

/* Resolves the weights by name through a lookup function, in either naming scheme. */
typedef const herd_tensor *(*find_fn)(const void *src, const char *name);

static const herd_tensor *find_gguf(const void *src, const char *name) {
    return gguf_find_tensor((const gguf_file *)src, name);
}
static const herd_tensor *find_st(const void *src, const char *name) {
    return st_find_tensor((const st_set *)src, name);
}

static herd_status bind_weights(herd_model *m, find_fn find, const void *src, int gguf_names,
                                herd_error *err) {
    const herd_config *c = &m->config;
    int64_t C = c->dim, F = c->ffn_dim, HS = c->head_dim;
    int64_t QD = (int64_t)c->n_heads * HS, KVD = (int64_t)c->n_kv_heads * HS;
    herd_status st;
    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    const char *emb = gguf_names ? "token_embd.weight" : "model.embed_tokens.weight";
    if ((st = as_weight(m, &m->tok_embd, find(src, emb), emb, c->vocab_size, C, err))) return st;
    for (int l = 0; l < c->n_layers; l++) {
        herd_layer *L = &m->layers[l];
        struct { herd_weight *w; const char *g, *h; int64_t oc, ic; } ws[] = {
            { &L->wq, "attn_q", "self_attn.q_proj", QD, C },
            { &L->wk, "attn_k", "self_attn.k_proj", KVD, C },
            { &L->wv, "attn_v", "self_attn.v_proj", KVD, C },
            { &L->wo, "attn_output", "self_attn.o_proj", C, QD },
            { &L->w1, "ffn_gate", "mlp.gate_proj", F, C },
            { &L->w2, "ffn_down", "mlp.down_proj", C, F },
            { &L->w3, "ffn_up", "mlp.up_proj", F, C },
        };
        char name[128];
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) {
            if (gguf_names) snprintf(name, sizeof name, "blk.%d.%s.weight", l, ws[i].g);
            else snprintf(name, sizeof name, "model.layers.%d.%s.weight", l, ws[i].h);
            if ((st = as_weight(m, ws[i].w, find(src, name), name, ws[i].oc, ws[i].ic, err))) return st;
        }
        if (gguf_names) snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        else snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
        if ((st = as_vector(m, &L->attn_norm, find(src, name), name, C, err))) return st;
        if (gguf_names) snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        else snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
        if ((st = as_vector(m, &L->ffn_norm, find(src, name), name, C, err))) return st;
    }
    const char *nrm = gguf_names ? "output_norm.weight" : "model.norm.weight";
    if ((st = as_vector(m, &m->out_norm, find(src, nrm), nrm, C, err))) return st;
    const char *out = gguf_names ? "output.weight" : "lm_head.weight";
    const herd_tensor *ot = find(src, out);
    if (ot) {
        if ((st = as_weight(m, &m->output, ot, out, c->vocab_size, C, err))) return st;
        m->config.tie_embeddings = 0;
    } else if (gguf_names || m->config.tie_embeddings) {
        m->output = m->tok_embd;
        m->config.tie_embeddings = 1;
    } else {
        return herd_errf(err, HERD_ERR_FORMAT, "%s: 'lm_head.weight' is missing and config.json "
                         "has tie_word_embeddings false; set it to true if the model ties its "
                         "output to the embedding", m->path);
    }
    return HERD_OK;
}

static herd_status make_rope_freqs(herd_model *m, const herd_tensor *rf, herd_error *err) {
    const herd_config *c = &m->config;
    int half = c->head_dim / 2;
    m->rope_freqs = malloc((size_t)half * sizeof(float));
    if (!m->rope_freqs) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    if (rf) {
        /* GGUF stores llama3 scaling as per-frequency divisors. */
        herd_status st = check_tensor(m, rf, "rope_freqs.weight", 1, half, 1, err);
        if (st) return st;
        if (rf->type != HERD_F32)
            return herd_errf(err, HERD_ERR_FORMAT, "%s: rope_freqs.weight must be F32, got %s",
                             m->path, herd_type_name(rf->type));
        rope_freqs_llama3(m->rope_freqs, c->head_dim, c->rope_theta, 0, 1, 1, 1, 1);
        const float *div = rf->data;
        for (int i = 0; i < half; i++) {
            if (!(div[i] > 0))
                return herd_errf(err, HERD_ERR_FORMAT, "%s: rope_freqs.weight[%d] = %g; divisors "
                                 "must be positive", m->path, i, (double)div[i]);
            m->rope_freqs[i] /= div[i];
        }
        m->config.rope_scaling = 1;
    } else {
        rope_freqs_llama3(m->rope_freqs, c->head_dim, c->rope_theta, c->rope_scaling,
                          c->rope_factor, c->rope_low_freq_factor, c->rope_high_freq_factor,
                          c->rope_orig_max_pos);
    }
    return HERD_OK;
}

/* ---- GGUF ------------------------------------------------------------------ */

static herd_status load_gguf(herd_model *m, herd_error *err) {
    herd_status st;
    m->gguf = calloc(1, sizeof *m->gguf);
    if (!m->gguf) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    if ((st = gguf_open(m->gguf, m->path, err))) return st;
    gguf_file *g = m->gguf;
    gguf_str arch;
    if ((st = gguf_get_str(g, "general.architecture", &arch, err))) return st;
    if (arch.len != 5 || memcmp(arch.ptr, "llama", 5) != 0)
        return herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: architecture '%.*s' is not supported; "
                         "herd runs 'llama' (Llama 3.1 / 3.2) models", m->path,
                         (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
    herd_config *c = &m->config;
    uint32_t u;
    struct { const char *key; int *dst; int required; } ints[] = {
        { "llama.embedding_length", &c->dim, 1 },
        { "llama.block_count", &c->n_layers, 1 },
        { "llama.attention.head_count", &c->n_heads, 1 },
        { "llama.attention.head_count_kv", &c->n_kv_heads, 0 },
        { "llama.feed_forward_length", &c->ffn_dim, 1 },
        { "llama.context_length", &c->max_seq_len, 0 },
        { "llama.rope.dimension_count", &c->head_dim, 0 },
    };
    c->n_kv_heads = 0;
    c->head_dim = 0;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (!gguf_find(g, ints[i].key) && !ints[i].required) continue;
        if ((st = gguf_get_u32(g, ints[i].key, &u, err))) return st;
        if (u > (1u << 24))
            return herd_errf(err, HERD_ERR_FORMAT, "%s: %s = %u is implausibly large", m->path,
                             ints[i].key, u);
        *ints[i].dst = (int)u;
    }
    if (!c->n_kv_heads) c->n_kv_heads = c->n_heads;
    if (!c->head_dim && c->n_heads) c->head_dim = c->dim / c->n_heads;
    if (gguf_find(g, "llama.attention.layer_norm_rms_epsilon") &&
        (st = gguf_get_f32(g, "llama.attention.layer_norm_rms_epsilon", &c->norm_eps, err)))
        return st;
    c->rope_theta = 10000.0f;
    if (gguf_find(g, "llama.rope.freq_base") &&
        (st = gguf_get_f32(g, "llama.rope.freq_base", &c->rope_theta, err)))
        return st;
    c->rope_scaling = 0;
    if ((st = herd_tokenizer_load_gguf(&m->tok, g, err))) return st;
    c->vocab_size = herd_tokenizer_n_vocab(m->tok);
    if (gguf_find(g, "llama.vocab_size")) {
        if ((st = gguf_get_u32(g, "llama.vocab_size", &u, err))) return st;
        c->vocab_size = (int)u;
    }
    if (gguf_find(g, "tokenizer.ggml.bos_token_id") &&
        !gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &u, NULL))
        c->bos_id = (int)u;
    /* Stop ids: the end-of-text id and, when the vocabulary has them, eom / eot. */
    c->n_eos = 0;
    if (gguf_find(g, "tokenizer.ggml.eos_token_id") &&
        !gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &u, NULL))
        c->eos_ids[c->n_eos++] = (int)u;
    const char *stops[] = { "<|end_of_text|>", "<|eom_id|>", "<|eot_id|>" };
    for (int i = 0; i < 3; i++) {
        int32_t id = herd_tokenizer_special_id(m->tok, stops[i]);
        int dup = 0;
        for (int j = 0; j < c->n_eos; j++) dup |= c->eos_ids[j] == id;
        if (id >= 0 && !dup && c->n_eos < 8) c->eos_ids[c->n_eos++] = id;
    }
    if ((st = validate_config(m, err))) return st;
    m->rope_interleaved = 1;
    if ((st = bind_weights(m, find_gguf, g, 1, err))) return st;
    return make_rope_freqs(m, gguf_find_tensor(g, "rope_freqs.weight"), err);
}

/* ---- Hugging Face directory ------------------------------------------------ */

static herd_status load_hf_tokenizer(herd_model *m, herd_error *err) {
    const char *cands[] = { "tokenizer.json", "tokenizer.model", "original/tokenizer.model" };
    for (int i = 0; i < 3; i++) {
        char *p = herd_path_join(m->path, cands[i]);
        if (!p) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
        herd_status st = HERD_ERR_IO;
        if (herd_file_exists(p))
            st = i == 0 ? herd_tokenizer_load_hf_json(&m->tok, p, err)
                        : herd_tokenizer_load_tiktoken(&m->tok, p, err);
        free(p);
        if (st == HERD_OK) return HERD_OK;
        if (st != HERD_ERR_IO) return st;
    }
    return herd_errf(err, HERD_ERR_IO, "%s: no tokenizer found (looked for tokenizer.json, "
                     "tokenizer.model and original/tokenizer.model); copy the tokenizer files "
                     "from the original download", m->path);
}

static herd_status load_hf(herd_model *m, herd_error *err) {
    herd_status st;
    char *p = herd_path_join(m->path, "config.json"), *text = NULL;
    size_t len;
    if (!p) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    st = herd_read_file(p, &text, &len, err);
    if (st == HERD_OK) st = hf_config_parse(&m->config, text, len, p, err);
    free(text);
    free(p);
    if (st) return st;
    p = herd_path_join(m->path, "generation_config.json");
    if (!p) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    if (herd_file_exists(p)) {
        st = herd_read_file(p, &text, &len, err);
        if (st == HERD_OK) st = hf_generation_config_parse(&m->config, text, len, p, err);
        free(text);
    }
    free(p);
    if (st) return st;
    if ((st = validate_config(m, err))) return st;
    if ((st = load_hf_tokenizer(m, err))) return st;
    if (herd_tokenizer_n_vocab(m->tok) > m->config.vocab_size)
        return herd_errf(err, HERD_ERR_FORMAT, "%s: the tokenizer has %d tokens but config.json "
                         "says vocab_size %d", m->path, herd_tokenizer_n_vocab(m->tok),
                         m->config.vocab_size);
    m->st = calloc(1, sizeof *m->st);
    if (!m->st) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    p = herd_path_join(m->path, "model.safetensors.index.json");
    if (p && !herd_file_exists(p)) { free(p); p = herd_path_join(m->path, "model.safetensors"); }
    if (!p) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    if (!herd_file_exists(p)) {
        free(p);
        return herd_errf(err, HERD_ERR_IO, "%s: no model.safetensors or "
                         "model.safetensors.index.json; is this a Hugging Face model directory?",
                         m->path);
    }
    st = st_open(m->st, p, err);
    free(p);
    if (st) return st;
    m->rope_interleaved = 0;
    if ((st = bind_weights(m, find_st, m->st, 0, err))) return st;
    return make_rope_freqs(m, NULL, err);
}

/* A layer's seven matrices (packing and freeing walk them alike). */
enum { LAYER_MATRICES = 7 };
static void layer_matrices(herd_layer *L, herd_weight *ws[LAYER_MATRICES]) {
    herd_weight *all[LAYER_MATRICES] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->w1, &L->w2, &L->w3 };
    memcpy(ws, all, sizeof all);
}

/* Whether [p, p + n) lies in one of the model's file mappings. */
static int in_mapping(const herd_model *m, const void *p, size_t n) {
    const uint8_t *b = p;
    if (m->gguf && m->gguf->file.data && b >= m->gguf->file.data &&
        b + n <= m->gguf->file.data + m->gguf->file.size)
        return 1;
    for (size_t i = 0; m->st && i < m->st->n_files; i++) {
        const herd_mapped_file *f = &m->st->files[i];
        if (f->data && b >= f->data && b + n <= f->data + f->size) return 1;
    }
    return 0;
}

/* Gives back the file pages of rows matmul_pack has copied (a read-only file
 * mapping: they come back from the file if anything reads them again), so RSS
 * holds the weights once, and at the peak one ~8 MiB run of rows twice. */
static void release_rows(void *ctx, const void *rows, size_t bytes) {
    if (!in_mapping(ctx, rows, bytes)) return;
    const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), b = (uintptr_t)rows;
    const uintptr_t b0 = (b + pg - 1) / pg * pg, b1 = (b + bytes) / pg * pg;
    if (b1 > b0) madvise((void *)b0, b1 - b0, MADV_DONTNEED);
}

static void pack_weight(herd_model *m, herd_weight *w) { m->packed_bytes += matmul_pack(w, release_rows, m); }

/* HERD_PACK=0 turns packing off (to measure what it buys). */
static void pack_weights(herd_model *m) {
    const char *e = getenv("HERD_PACK");
    if (e && !strcmp(e, "0")) return;
    for (int l = 0; l < m->config.n_layers; l++) {
        herd_weight *ws[LAYER_MATRICES];
        layer_matrices(&m->layers[l], ws);
        for (int i = 0; i < LAYER_MATRICES; i++) pack_weight(m, ws[i]);
    }
    pack_weight(m, &m->output); /* tied: output's copy of tok_embd (rows for lookups stay unpacked) */
}

herd_status herd_model_load(herd_model **out, const char *path, herd_error *err) {
    herd_status st = model_load(out, path, err);
    if (st == HERD_OK) pack_weights(*out);
    return st;
}

herd_status model_load(herd_model **out, const char *path, herd_error *err) {
    *out = NULL;
    herd_model *m = calloc(1, sizeof *m);
    if (!m) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    herd_config_default(&m->config);
    m->path = strdup(path);
    struct stat sb;
    herd_status st;
    if (stat(path, &sb) != 0)
        st = herd_errf(err, HERD_ERR_IO, "model '%s' not found; pass an HF directory or a .gguf "
                       "file", path);
    else if (S_ISDIR(sb.st_mode))
        st = load_hf(m, err);
    else
        st = load_gguf(m, err);
    if (st) {
        herd_model_free(m);
        return st;
    }
    *out = m;
    return HERD_OK;
}

void herd_model_free(herd_model *m) {
    if (!m) return;
    if (m->layers) {
        for (int l = 0; l < m->config.n_layers; l++) {
            herd_weight *ws[LAYER_MATRICES];
            layer_matrices(&m->layers[l], ws);
            for (int i = 0; i < LAYER_MATRICES; i++) matmul_unpack(ws[i]);
            free(m->layers[l].attn_norm);
            free(m->layers[l].ffn_norm);
        }
        free(m->layers);
    }
    matmul_unpack(&m->output);
    free(m->out_norm);
    free(m->rope_freqs);
    if (m->tok) herd_tokenizer_free(m->tok);
    if (m->gguf) { gguf_close(m->gguf); free(m->gguf); }
    if (m->st) { st_close(m->st); free(m->st); }
    free(m->path);
    free(m);
}

uint64_t herd_model_n_params(const herd_model *m) { return m->n_params; }

void herd_model_print_info(const herd_model *m, FILE *out) {
    const herd_config *c = &m->config;
    fprintf(out, "model:            %s\n", m->path);
    fprintf(out, "format:           %s\n", m->gguf ? "GGUF" : "Hugging Face safetensors");
    fprintf(out, "architecture:     llama (Llama 3.1 family)\n");
    fprintf(out, "parameters:       %llu\n", (unsigned long long)m->n_params);
    fprintf(out, "dim:              %d\n", c->dim);
    fprintf(out, "layers:           %d\n", c->n_layers);
    fprintf(out, "heads:            %d (kv heads %d, head dim %d)\n", c->n_heads, c->n_kv_heads,
            c->head_dim);
    fprintf(out, "ffn dim:          %d\n", c->ffn_dim);
    fprintf(out, "vocab:            %d (tokenizer %d)\n", c->vocab_size,
            herd_tokenizer_n_vocab(m->tok));
    fprintf(out, "max context:      %d\n", c->max_seq_len);
    fprintf(out, "rms norm eps:     %g\n", (double)c->norm_eps);
    fprintf(out, "rope theta:       %g\n", (double)c->rope_theta);
    if (c->rope_scaling && !m->gguf)
        fprintf(out, "rope scaling:     llama3 (factor %g, low %g, high %g, original %d)\n",
                (double)c->rope_factor, (double)c->rope_low_freq_factor,
                (double)c->rope_high_freq_factor, c->rope_orig_max_pos);
    else
        fprintf(out, "rope scaling:     %s\n", c->rope_scaling ? "llama3 (rope_freqs tensor)" : "none");
    fprintf(out, "tied embeddings:  %s\n", c->tie_embeddings ? "yes" : "no");
    fprintf(out, "bos id:           %d\n", c->bos_id);
    fprintf(out, "stop ids:        ");
    for (int i = 0; i < c->n_eos; i++) fprintf(out, " %d", c->eos_ids[i]);
    fprintf(out, "\ntensor types:    ");
    for (int t = 0; t < 64; t++)
        if (m->type_count[t]) fprintf(out, " %s x%d", herd_type_name(t), m->type_count[t]);
    fprintf(out, " (matrices; norms are float32)\n");
    if (m->packed_bytes)
        fprintf(out, "packed weights:   %.1f MiB, repacked at load for this CPU's AVX-512 matmul\n",
                (double)m->packed_bytes / (1 << 20));
}
