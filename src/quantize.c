/* quantize.c - `herd quantize`: rewrites a model (HF directory or GGUF, any weight
 * type herd loads) as a GGUF of another type, with the same metadata as herd init
 * writes (llama keys, tokenizer, rope_freqs for llama3 scaling, general.file_type).
 *
 * Each matrix row is dequantized to float32 with dequant_row_ref and quantized with
 * the ref/ quantizers, so a requantized row depends only on its source row. q/k rows
 * are written in GGUF (interleaved) order: an HF source is permuted as llama.cpp's
 * converter and herd init do. Norms stay float32.
 *
 * Which type each matrix gets (llama.cpp's rules from src/llama-quant.cpp, no
 * importance matrix):
 *   F32, F16, BF16, Q8_0, Q4_0, Q6_K   every matrix of that type ("pure"; for Q4_0
 *                                      llama-quantize would give output.weight Q6_K,
 *                                      herd keeps it Q4_0 like gguf-py's converter);
 *   Q4_K_M   Q4_K, except Q6_K for output.weight (and token_embd when tied) and for
 *            attn_v / ffn_down of the "use_more_bits" layers: the first and last
 *            eighth of the layers and every third layer in between;
 *   Q5_K_M   the same on Q5_K (llama.cpp applies both rules to Q4_K_M and Q5_K_M).
 * A row length that is not a multiple of the block (256 for K types) falls back to
 * Q8_0 (llama.cpp: Q5_0 / Q5_1 for Q4_K / Q5_K, which herd lacks; Q8_0 for Q6_K), or to F16 when
 * it is not a multiple of 32 either.
 * Not here: importance matrices, the other llama.cpp mixtures (Q4_K_S, Q5_K_S, ...).
 * The output is assembled in memory by gguf_writer (peak RAM ~ the output size).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lora.h"
#include "model.h"
#include "tokenizer.h"

int herd_ftype_from_name(const char *name) {
    static const struct { const char *name; int ftype; } names[] = {
        { "F32", HERD_FTYPE_F32 }, { "F16", HERD_FTYPE_F16 }, { "BF16", HERD_FTYPE_BF16 },
        { "Q8_0", HERD_FTYPE_Q8_0 }, { "Q4_0", HERD_FTYPE_Q4_0 }, { "Q4_K_M", HERD_FTYPE_Q4_K_M },
        { "Q5_K_M", HERD_FTYPE_Q5_K_M }, { "Q6_K", HERD_FTYPE_Q6_K },
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcasecmp(name, names[i].name)) return names[i].ftype;
    return -1;
}

const char *herd_ftype_name(int ftype) {
    switch (ftype) {
    case HERD_FTYPE_F32: return "F32";
    case HERD_FTYPE_F16: return "F16";
    case HERD_FTYPE_BF16: return "BF16";
    case HERD_FTYPE_Q8_0: return "Q8_0";
    case HERD_FTYPE_Q4_0: return "Q4_0";
    case HERD_FTYPE_Q4_K_M: return "Q4_K_M";
    case HERD_FTYPE_Q5_K_M: return "Q5_K_M";
    case HERD_FTYPE_Q6_K: return "Q6_K";
    default: return "?";
    }
}

herd_quantize_params herd_quantize_default_params(void) {
    herd_quantize_params p = { HERD_FTYPE_Q4_K_M, NULL, NULL, 1 };
    return p;
}

/* ---- the GGUF header shared with herd init ----------------------------------- */

/* As llama.cpp's convert_hf_to_gguf.py (LlamaModel rope_freqs): float32 base
 * frequencies, the rest in double, so the tensor matches the converter's bytes. */
void model_rope_divisors(const herd_config *c, float *div) {
    const double lo_w = (double)c->rope_orig_max_pos / c->rope_low_freq_factor;
    const double hi_w = (double)c->rope_orig_max_pos / c->rope_high_freq_factor;
    for (int i = 0; i < c->head_dim / 2; i++) {
        const float f = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        const double w = 2 * M_PI / (double)f;
        if (w < hi_w) div[i] = 1.0f;
        else if (w > lo_w) div[i] = c->rope_factor;
        else {
            double s = ((double)c->rope_orig_max_pos / w - c->rope_low_freq_factor) /
                       (c->rope_high_freq_factor - c->rope_low_freq_factor);
            div[i] = (float)(1 / ((1 - s) / c->rope_factor + s));
        }
    }
}

herd_status model_gguf_add_header(gguf_writer *w, const herd_config *c, const herd_tokenizer *tok,
                                  const char *name, uint32_t file_type, const float *rope_div,
                                  herd_error *err) {
    gguf_writer_add_str(w, "general.architecture", "llama");
    gguf_writer_add_str(w, "general.name", name);
    gguf_writer_add_u32(w, "general.alignment", 32);
    gguf_writer_add_u32(w, "general.file_type", file_type);
    gguf_writer_add_u32(w, "general.quantization_version", 2);
    gguf_writer_add_u32(w, "llama.block_count", (uint32_t)c->n_layers);
    gguf_writer_add_u32(w, "llama.context_length", (uint32_t)c->max_seq_len);
    gguf_writer_add_u32(w, "llama.embedding_length", (uint32_t)c->dim);
    gguf_writer_add_u32(w, "llama.feed_forward_length", (uint32_t)c->ffn_dim);
    gguf_writer_add_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads);
    gguf_writer_add_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    gguf_writer_add_f32(w, "llama.rope.freq_base", c->rope_theta);
    gguf_writer_add_f32(w, "llama.attention.layer_norm_rms_epsilon", c->norm_eps);
    gguf_writer_add_u32(w, "llama.attention.key_length", (uint32_t)c->head_dim);
    gguf_writer_add_u32(w, "llama.attention.value_length", (uint32_t)c->head_dim);
    gguf_writer_add_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size);
    gguf_writer_add_u32(w, "llama.rope.dimension_count", (uint32_t)c->head_dim);
    herd_tokenizer_write_gguf_kv(tok, w);
    if (!rope_div) return HERD_OK;
    int64_t ne[1] = { c->head_dim / 2 };
    return gguf_writer_add_tensor(w, "rope_freqs.weight", HERD_F32, 1, ne, rope_div, err);
}

/* ---- type choice --------------------------------------------------------------- */

typedef enum { ROLE_EMBD, ROLE_OUTPUT, ROLE_Q, ROLE_K, ROLE_V, ROLE_O, ROLE_GATE, ROLE_UP, ROLE_DOWN } role;

/* llama.cpp's use_more_bits: the first and last eighth of the layers, and every
 * third layer in between. */
static int use_more_bits(int layer, int n_layers) {
    return layer < n_layers / 8 || layer >= 7 * n_layers / 8 || (layer - n_layers / 8) % 3 == 2;
}

static int base_type(int ftype) {
    switch (ftype) {
    case HERD_FTYPE_F32: return HERD_F32;
    case HERD_FTYPE_F16: return HERD_F16;
    case HERD_FTYPE_BF16: return HERD_BF16;
    case HERD_FTYPE_Q8_0: return HERD_Q8_0;
    case HERD_FTYPE_Q4_0: return HERD_Q4_0;
    case HERD_FTYPE_Q4_K_M: return HERD_Q4_K;
    case HERD_FTYPE_Q5_K_M: return HERD_Q5_K;
    case HERD_FTYPE_Q6_K: return HERD_Q6_K;
    default: return -1;
    }
}

static int pick_type(int ftype, role r, int layer, int n_layers, int tied, int64_t ncols) {
    int t = base_type(ftype);
    if (ftype == HERD_FTYPE_Q4_K_M || ftype == HERD_FTYPE_Q5_K_M) {
        if (r == ROLE_OUTPUT || (r == ROLE_EMBD && tied)) t = HERD_Q6_K;
        else if ((r == ROLE_V || r == ROLE_DOWN) && use_more_bits(layer, n_layers)) t = HERD_Q6_K;
    }
    if (herd_type_row_size(t, ncols) == 0) t = HERD_Q8_0;
    if (herd_type_row_size(t, ncols) == 0) t = HERD_F16;
    return t;
}

/* ---- conversion ------------------------------------------------------------------ */

/* dst (rows, row_bytes of type) from a source weight; perm_heads > 0: q/k rows of
 * an HF source with that many heads, permuted to GGUF's interleaved order.
 * lp (may be NULL): a LoRA pair merged into each source row before it is written
 * (row o += sum_j B[o][j] A_j, B already in the source's row order). */
static herd_status convert(uint8_t *dst, const herd_weight *w, int type, int perm_heads,
                           const lora_pair *lp, herd_error *err) {
    const int64_t rows = w->oc, cols = w->ic;
    const size_t src_bytes = herd_type_row_size(w->type, cols), dst_bytes = herd_type_row_size(type, cols);
    const int64_t HS = perm_heads > 0 ? rows / perm_heads : 0;
    int failed = 0;
#pragma omp parallel
    {
        float *x = malloc((size_t)cols * sizeof *x);
        if (!x) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 16)
        for (int64_t r = 0; r < rows; r++) {
            if (!x) continue;
            const int64_t src = perm_heads > 0 ? model_qk_hf_row(r, HS) : r;
            dequant_row_ref(x, (const uint8_t *)w->data + (size_t)src * src_bytes, w->type, cols);
            if (lp && lp->a)
                for (int j = 0; j < lp->r; j++) {
                    const float b = lp->bt[(size_t)j * lp->oc + src], *a = lp->a + (size_t)j * cols;
                    for (int64_t i = 0; i < cols; i++) x[i] += b * a[i];
                }
            uint8_t *out = dst + (size_t)r * dst_bytes;
            switch (type) {
            case HERD_F32: memcpy(out, x, dst_bytes); break;
            case HERD_F16: for (int64_t i = 0; i < cols; i++) ((uint16_t *)out)[i] = herd_f32_to_f16(x[i]); break;
            case HERD_BF16: for (int64_t i = 0; i < cols; i++) ((uint16_t *)out)[i] = herd_f32_to_bf16(x[i]); break;
            case HERD_Q8_0: quantize_row_q8_0_ref((block_q8_0 *)out, x, cols); break;
            case HERD_Q4_0: quantize_row_q4_0_ref((block_q4_0 *)out, x, cols); break;
            case HERD_Q4_K: quantize_row_q4_K_ref((block_q4_K *)out, x, cols); break;
            case HERD_Q5_K: quantize_row_q5_K_ref((block_q5_K *)out, x, cols); break;
            case HERD_Q6_K: quantize_row_q6_K_ref((block_q6_K *)out, x, cols); break;
            }
        }
        free(x);
    }
    return failed ? herd_errf(err, HERD_ERR_NOMEM, "out of memory") : HERD_OK;
}

static herd_status add_matrix(gguf_writer *w, const char *name, const herd_weight *wt, int type,
                              int perm_heads, const lora_pair *lp, FILE *log, herd_error *err) {
    size_t n = herd_type_row_size(type, wt->ic) * (size_t)wt->oc;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return herd_errf(err, HERD_ERR_NOMEM, "out of memory for '%s' (%zu bytes)", name, n);
    herd_status st = convert(buf, wt, type, perm_heads, lp, err);
    int64_t ne[2] = { wt->ic, wt->oc };
    if (!st) st = gguf_writer_add_tensor(w, name, type, 2, ne, buf, err);
    free(buf);
    if (!st && log)
        fprintf(log, "herd: %-28s [%6lld, %6lld] %-5s -> %s%s\n", name, (long long)wt->oc,
                (long long)wt->ic, herd_type_name(wt->type), herd_type_name(type),
                lp && lp->a ? " (LoRA merged)" : "");
    return st;
}

static herd_status add_vector(gguf_writer *w, const char *name, const float *v, int64_t n,
                              herd_error *err) {
    int64_t ne[1] = { n };
    return gguf_writer_add_tensor(w, name, HERD_F32, 1, ne, v, err);
}

/* general.name: the source GGUF's, else the last path component. */
static void source_name(const herd_model *m, char *out, size_t cap) {
    gguf_str s;
    if (m->gguf && gguf_find(m->gguf, "general.name") && !gguf_get_str(m->gguf, "general.name", &s, NULL)) {
        snprintf(out, cap, "%.*s", (int)(s.len < cap ? s.len : cap - 1), s.ptr);
        return;
    }
    size_t n = strlen(m->path);
    while (n > 1 && m->path[n - 1] == '/') n--;
    size_t b = n;
    while (b > 0 && m->path[b - 1] != '/') b--;
    snprintf(out, cap, "%.*s", (int)(n - b), m->path + b);
}

static herd_status write_model(const herd_model *m, const char *out_path, int ftype, const herd_lora *lora,
                               FILE *log, herd_error *err) {
    const herd_config *c = &m->config;
    gguf_writer *w = gguf_writer_new();
    if (!w) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    char name[256];
    source_name(m, name, sizeof name);
    /* rope_freqs: copied from a source GGUF, else made from config's llama3 scaling */
    const herd_tensor *rf = m->gguf ? gguf_find_tensor(m->gguf, "rope_freqs.weight") : NULL;
    float *div = NULL;
    herd_status st = HERD_OK;
    if (!rf && c->rope_scaling) {
        div = malloc((size_t)(c->head_dim / 2) * sizeof *div);
        if (!div) st = herd_errf(err, HERD_ERR_NOMEM, "out of memory");
        else model_rope_divisors(c, div);
    }
    if (!st)
        st = model_gguf_add_header(w, c, m->tok, name, (uint32_t)ftype, rf ? rf->data : div, err);
    free(div);
    const int L = c->n_layers, tied = c->tie_embeddings, interleave = !m->rope_interleaved;
    const herd_weight *e = &m->tok_embd;
    if (!st) st = add_matrix(w, "token_embd.weight", e, pick_type(ftype, ROLE_EMBD, 0, L, tied, e->ic), 0, NULL, log, err);
    char nm[128];
    for (int l = 0; l < L && !st; l++) {
        const herd_layer *ly = &m->layers[l];
        /* in LORA_Q .. LORA_DOWN order */
        struct { const char *g; const herd_weight *w; role r; int perm; } ms[] = {
            { "attn_q", &ly->wq, ROLE_Q, interleave ? c->n_heads : 0 },
            { "attn_k", &ly->wk, ROLE_K, interleave ? c->n_kv_heads : 0 },
            { "attn_v", &ly->wv, ROLE_V, 0 },
            { "attn_output", &ly->wo, ROLE_O, 0 },
            { "ffn_gate", &ly->w1, ROLE_GATE, 0 },
            { "ffn_up", &ly->w3, ROLE_UP, 0 },
            { "ffn_down", &ly->w2, ROLE_DOWN, 0 },
        };
        snprintf(nm, sizeof nm, "blk.%d.attn_norm.weight", l);
        st = add_vector(w, nm, ly->attn_norm, c->dim, err);
        for (size_t i = 0; i < sizeof ms / sizeof ms[0] && !st; i++) {
            snprintf(nm, sizeof nm, "blk.%d.%s.weight", l, ms[i].g);
            int t = pick_type(ftype, ms[i].r, l, L, tied, ms[i].w->ic);
            st = add_matrix(w, nm, ms[i].w, t, ms[i].perm, lora ? &lora->p[l * LORA_N + (int)i] : NULL, log, err);
        }
        snprintf(nm, sizeof nm, "blk.%d.ffn_norm.weight", l);
        if (!st) st = add_vector(w, nm, ly->ffn_norm, c->dim, err);
    }
    if (!st) st = add_vector(w, "output_norm.weight", m->out_norm, c->dim, err);
    if (!st && !tied)
        st = add_matrix(w, "output.weight", &m->output,
                        pick_type(ftype, ROLE_OUTPUT, 0, L, tied, m->output.ic), 0, NULL, log, err);
    if (!st) st = gguf_writer_write(w, out_path, err);
    gguf_writer_free(w);
    return st;
}

herd_status herd_quantize(const char *in_path, const char *out_path, const herd_quantize_params *p,
                          herd_error *err) {
    if (!in_path || !out_path || !p)
        return herd_errf(err, HERD_ERR_ARG, "quantize: input, output and params are required");
    if (base_type(p->ftype) < 0)
        return herd_errf(err, HERD_ERR_ARG, "quantize: unknown type %d; use F32, F16, BF16, Q8_0, "
                         "Q4_0, Q4_K_M, Q5_K_M or Q6_K", p->ftype);
    herd_model *m;
    herd_status st = model_load(&m, in_path, err);
    if (st) return st;
    herd_lora *lora = NULL;
    if (p->lora) {
        st = herd_lora_load(&lora, m, p->lora, p->lora_scale, err);
        if (st) {
            herd_model_free(m);
            return st;
        }
    }
    /* OUT may be IN: tensors are copied into the writer, which renames over the path */
    st = write_model(m, out_path, p->ftype, lora, p->log, err);
    herd_lora_free(lora);
    herd_model_free(m);
    return st;
}
