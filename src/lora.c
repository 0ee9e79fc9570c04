/* lora.c - LoRA adapters at inference: a session that carries one computes each
 * adapted projection as y = W x + s B (A x), W the base model's weight in its own
 * type (quantized or not: QLoRA's arithmetic) and A (r, IC), B (OC, r) in F32.
 * Nothing is merged, so one loaded model serves its plain form and any number of
 * adapters at once, sequences of different adapters in the same batch.
 *
 * Files: a PEFT directory (adapter_config.json + adapter_model.safetensors, what
 * peft, torchtune and unsloth save), or its .safetensors file with the config
 * beside it; or a llama.cpp GGUF adapter (general.type "adapter", adapter.type
 * "lora", adapter.lora.alpha). Scale s = scale * alpha / r (rsLoRA: alpha /
 * sqrt(r)); a GGUF adapter without an alpha has s = scale, as llama.cpp reads it.
 * PEFT's q / k rows are in HF's rotate-half order and a GGUF adapter's in the
 * interleaved order of GGUF models; B's q / k rows are permuted when the base
 * model has the other order (a PEFT adapter on a GGUF model is the common case).
 *
 * The delta is added to the base projection's output by lora_forward (kernels),
 * which computes a row's delta from that row alone in a fixed order, so a
 * sequence's logits are bitwise the same alone or beside sequences with other
 * adapters or none (batch invariance). A and B stay F32 (exact for F32, F16 and
 * BF16 files); an adapter's rows in a round share one pass over its matrices.
 * Not here: parsing the config and the names (format/lora_format.c).
 */
#include "lora.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "session.h"

#define MAX_RANK 4096

static void target_dims(const herd_config *c, int t, int64_t *oc, int64_t *ic) {
    const int64_t C = c->dim, F = c->ffn_dim, QD = (int64_t)c->n_heads * c->head_dim,
                  KVD = (int64_t)c->n_kv_heads * c->head_dim;
    static const char shape[LORA_N][2] = { { 'q', 'c' }, { 'k', 'c' }, { 'k', 'c' }, { 'c', 'q' },
                                           { 'f', 'c' }, { 'f', 'c' }, { 'c', 'f' } };
    int64_t *const d[2] = { oc, ic };
    for (int i = 0; i < 2; i++)
        *d[i] = shape[t][i] == 'q' ? QD : shape[t][i] == 'k' ? KVD : shape[t][i] == 'f' ? F : C;
}

/* "q_proj" ... for messages */
static const char *target_name(int t) { return strrchr(lora_module_name(t, 0), '.') + 1; }

void herd_lora_free(herd_lora *l) {
    if (!l) return;
    if (l->p)
        for (int i = 0; i < l->m->config.n_layers * LORA_N; i++) {
            free(l->p[i].a);
            free(l->p[i].bt);
        }
    free(l->p);
    free(l);
}

int herd_lora_rank(const herd_lora *l) { return l->rank; }
int herd_lora_n_adapted(const herd_lora *l) { return l->n_pairs; }

/* A tensor's rows as F32 (n_rows x n_cols), into a 64-byte aligned copy. */
static float *to_f32(const herd_tensor *t, int64_t rows, int64_t cols) {
    size_t n = (size_t)rows * (size_t)cols;
    float *v = aligned_alloc(64, (n * sizeof(float) + 63) / 64 * 64);
    if (!v) return NULL;
    const size_t rb = herd_type_row_size(t->type, cols);
    for (int64_t r = 0; r < rows; r++) dequant_row_ref(v + r * cols, (const uint8_t *)t->data + r * rb, t->type, cols);
    return v;
}

/* b's rows of q / k with `heads` heads of HS, from one RoPE order to the other:
 * to_interleaved: HF -> GGUF (model_qk_hf_row), else the inverse. */
static int permute_rows(float *b, int64_t oc, int64_t r, int heads, int to_interleaved) {
    const int64_t HS = oc / heads;
    float *tmp = malloc((size_t)oc * (size_t)r * sizeof *tmp);
    if (!tmp) return 0;
    memcpy(tmp, b, (size_t)oc * (size_t)r * sizeof *tmp);
    for (int64_t row = 0; row < oc; row++) { /* interleaved row, and its rotate-half one */
        const int64_t hf = model_qk_hf_row(row, HS);
        memcpy(b + (to_interleaved ? row : hf) * r, tmp + (to_interleaved ? hf : row) * r, (size_t)r * sizeof *b);
    }
    free(tmp);
    return 1;
}

typedef struct {
    const herd_tensor *a, *b;
} found_pair;

/* Checks and copies one pair (layer l, projection t) into the adapter. */
static herd_status take_pair(herd_lora *L, const found_pair *f, int l, int t, const char *path, int gguf,
                             const lora_config *cfg, herd_error *err) {
    const herd_model *m = L->m;
    const herd_config *c = &m->config;
    int64_t oc, ic;
    target_dims(c, t, &oc, &ic);
    if (!f->a || !f->b)
        return herd_errf(err, HERD_ERR_FORMAT, "%s: layer %d %s has its %s matrix but not its %s", path, l,
                         target_name(t), f->a ? "A" : "B", f->a ? "B" : "A");
    const herd_tensor *ts[2] = { f->a, f->b };
    for (int i = 0; i < 2; i++) {
        const herd_tensor *x = ts[i];
        int nd = x->n_dims;
        while (nd > 2 && x->ne[nd - 1] == 1) nd--;
        if (nd != 2)
            return herd_errf(err, HERD_ERR_FORMAT, "%s: tensor '%s' has %d dimensions; a LoRA matrix has 2",
                             path, x->name, x->n_dims);
        if (x->type != HERD_F32 && x->type != HERD_F16 && x->type != HERD_BF16)
            return herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s; LoRA matrices "
                             "must be F32, F16 or BF16", path, x->name, herd_type_name(x->type));
    }
    const int64_t r = f->a->ne[1];
    if (f->a->ne[0] != ic || r < 1 || r > MAX_RANK || r > ic)
        return herd_errf(err, HERD_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld]; layer %d %s "
                         "takes %lld inputs, so A must be [r, %lld] with 1 <= r <= %lld", path, f->a->name,
                         (long long)f->a->ne[1], (long long)f->a->ne[0], l, target_name(t), (long long)ic,
                         (long long)ic, (long long)(ic < MAX_RANK ? ic : MAX_RANK));
    if (f->b->ne[0] != r || f->b->ne[1] != oc)
        return herd_errf(err, HERD_ERR_FORMAT, "%s: tensor '%s' has shape [%lld, %lld]; with A's rank "
                         "%lld and layer %d %s's %lld outputs, B must be [%lld, %lld]", path, f->b->name,
                         (long long)f->b->ne[1], (long long)f->b->ne[0], (long long)r, l, target_name(t),
                         (long long)oc, (long long)oc, (long long)r);
    if (!gguf && cfg->r && r != cfg->r && !cfg->rank_pattern)
        return herd_errf(err, HERD_ERR_FORMAT, "%s: tensor '%s' has rank %lld but adapter_config.json "
                         "says r = %d", path, f->a->name, (long long)r, cfg->r);
    lora_pair *p = &L->p[l * LORA_N + t];
    float *a = to_f32(f->a, r, ic), *b = to_f32(f->b, oc, r), *bt = malloc((size_t)(oc * r) * sizeof *bt);
    *p = (lora_pair){ a, bt, ic, oc, (int)r };
    if (!a || !b || !bt) {
        free(b);
        return herd_errf(err, HERD_ERR_NOMEM, "out of memory reading %s", path);
    }
    const float s = gguf ? (cfg->alpha != 0 ? L->scale * cfg->alpha / (float)r : L->scale)
                         : L->scale * cfg->alpha / (cfg->rslora ? sqrtf((float)r) : (float)r);
    for (int64_t i = 0; i < oc * r; i++) b[i] *= s;
    if ((t == LORA_Q || t == LORA_K) && gguf != m->rope_interleaved &&
        !permute_rows(b, oc, r, t == LORA_Q ? c->n_heads : c->n_kv_heads, m->rope_interleaved)) {
        free(b);
        return herd_errf(err, HERD_ERR_NOMEM, "out of memory reading %s", path);
    }
    for (int64_t o = 0; o < oc; o++)
        for (int64_t j = 0; j < r; j++) bt[j * oc + o] = b[o * r + j];
    free(b);
    if (r > L->rank) L->rank = (int)r;
    L->n_pairs++;
    return HERD_OK;
}

/* Every tensor of the file placed by name; pairs taken once all are seen. */
static herd_status take_all(herd_lora *L, const herd_tensor *ts, size_t n, const char *path, int gguf,
                            const lora_config *cfg, herd_error *err) {
    const herd_config *c = &L->m->config;
    found_pair *f = calloc((size_t)c->n_layers * LORA_N, sizeof *f);
    if (!f) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    herd_status st = HERD_OK;
    for (size_t i = 0; i < n && !st; i++) {
        const char *nm = ts[i].name;
        int l, t, is_b;
        if (!lora_name_parse(nm, gguf, &l, &t, &is_b)) {
            if (strstr(nm, "lora_magnitude_vector"))
                st = herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: tensor '%s' is DoRA's; herd applies plain LoRA",
                               path, nm);
            else if (strstr(nm, "lm_head") || strstr(nm, "embed_tokens") || strstr(nm, "token_embd") ||
                     strstr(nm, "output"))
                st = herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: tensor '%s' adapts the embeddings or the "
                               "output layer; herd applies adapters to the attention and MLP projections "
                               "(q, k, v, o, gate, up, down)", path, nm);
            else
                st = herd_errf(err, HERD_ERR_FORMAT, "%s: tensor '%s' is not a LoRA matrix of a Llama "
                               "projection (expected names like %s)", path, nm,
                               gguf ? "blk.0.attn_q.weight.lora_a"
                                    : "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
            break;
        }
        if (l >= c->n_layers) {
            st = herd_errf(err, HERD_ERR_FORMAT, "%s: tensor '%s' is for layer %d; the model has %d layers "
                           "(an adapter for another model?)", path, nm, l, c->n_layers);
            break;
        }
        const herd_tensor **slot = is_b ? &f[l * LORA_N + t].b : &f[l * LORA_N + t].a;
        if (*slot) st = herd_errf(err, HERD_ERR_FORMAT, "%s: tensor '%s' appears twice", path, nm);
        *slot = &ts[i];
    }
    for (int i = 0; i < c->n_layers * LORA_N && !st; i++)
        if (f[i].a || f[i].b) st = take_pair(L, &f[i], i / LORA_N, i % LORA_N, path, gguf, cfg, err);
    if (!st && L->n_pairs == 0)
        st = herd_errf(err, HERD_ERR_FORMAT, "%s: no LoRA matrices in the file", path);
    free(f);
    return st;
}

static herd_status load_gguf(herd_lora *L, const char *path, herd_error *err) {
    gguf_file g;
    herd_status st = gguf_open(&g, path, err);
    if (st) return st;
    gguf_str s;
    herd_error e2 = { 0 };
    lora_config cfg = { 0, 0, 0, 0 };
    if (gguf_get_str(&g, "general.type", &s, &e2) || s.len != 7 || memcmp(s.ptr, "adapter", 7))
        st = herd_errf(err, HERD_ERR_FORMAT, "%s: general.type is not \"adapter\"; this GGUF is a model, "
                       "not a LoRA adapter (pass it with -m)", path);
    else if (gguf_get_str(&g, "adapter.type", &s, &e2) || s.len != 4 || memcmp(s.ptr, "lora", 4))
        st = herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: adapter.type is not \"lora\"", path);
    else if (gguf_get_str(&g, "general.architecture", &s, &e2) || s.len != 5 || memcmp(s.ptr, "llama", 5))
        st = herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: the adapter's general.architecture is not \"llama\"", path);
    if (!st && gguf_find(&g, "adapter.lora.alpha")) {
        st = gguf_get_f32(&g, "adapter.lora.alpha", &cfg.alpha, err);
        if (!st && !(fabsf(cfg.alpha) <= 1e6f))
            st = herd_errf(err, HERD_ERR_FORMAT, "%s: adapter.lora.alpha %g is out of range", path, cfg.alpha);
    }
    if (!st) st = take_all(L, g.tensors, g.n_tensors, path, 1, &cfg, err);
    gguf_close(&g);
    return st;
}

static herd_status load_peft(herd_lora *L, const char *st_path, const char *cfg_path, herd_error *err) {
    char *json = NULL;
    size_t len = 0;
    if (!herd_file_exists(cfg_path))
        return herd_errf(err, HERD_ERR_IO, "%s: missing; a PEFT adapter is a directory with "
                         "adapter_config.json and adapter_model.safetensors", cfg_path);
    herd_status st = herd_read_file(cfg_path, &json, &len, err);
    if (st) return st;
    lora_config cfg;
    st = lora_config_parse(&cfg, json, len, cfg_path, err);
    free(json);
    if (st) return st;
    st_set s;
    st = st_open(&s, st_path, err);
    if (st) return st;
    st = take_all(L, s.tensors, s.n_tensors, st_path, 0, &cfg, err);
    st_close(&s);
    return st;
}

herd_status herd_lora_load(herd_lora **out, const herd_model *m, const char *path, float scale,
                           herd_error *err) {
    *out = NULL;
    if (!m || !path) return herd_errf(err, HERD_ERR_ARG, "herd_lora_load: NULL argument");
    if (!(fabsf(scale) <= 1e6f))
        return herd_errf(err, HERD_ERR_ARG, "LoRA scale %g is out of range (magnitude at most 1e6)", scale);
    herd_lora *L = calloc(1, sizeof *L);
    if (L) L->p = calloc((size_t)m->config.n_layers * LORA_N, sizeof *L->p);
    if (!L || !L->p) {
        free(L);
        return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    }
    L->m = m;
    L->scale = scale;
    struct stat sb;
    herd_status st;
    if (stat(path, &sb) != 0) {
        st = herd_errf(err, HERD_ERR_IO, "%s: no such file or directory (a LoRA adapter: a PEFT "
                       "directory, its .safetensors file, or a GGUF adapter)", path);
    } else if (S_ISDIR(sb.st_mode)) {
        char *sp = herd_path_join(path, "adapter_model.safetensors"), *cp = herd_path_join(path, "adapter_config.json");
        if (!sp || !cp) st = herd_errf(err, HERD_ERR_NOMEM, "out of memory");
        else if (!herd_file_exists(sp)) {
            char *bin = herd_path_join(path, "adapter_model.bin");
            st = herd_errf(err, HERD_ERR_IO, "%s: no adapter_model.safetensors%s", path,
                           bin && herd_file_exists(bin) ? " (adapter_model.bin is a pickle herd does "
                           "not read; save the adapter with safe_serialization=True)" : "");
            free(bin);
        } else st = load_peft(L, sp, cp, err);
        free(sp);
        free(cp);
    } else if (herd_ends_with(path, ".gguf")) {
        st = load_gguf(L, path, err);
    } else if (herd_ends_with(path, ".safetensors")) {
        char *dir = strdup(path), *slash = dir ? strrchr(dir, '/') : NULL;
        char *cp = NULL;
        if (dir) {
            if (slash) *slash = 0;
            cp = herd_path_join(slash ? dir : ".", "adapter_config.json");
        }
        st = cp ? load_peft(L, path, cp, err) : herd_errf(err, HERD_ERR_NOMEM, "out of memory");
        free(dir);
        free(cp);
    } else {
        st = herd_errf(err, HERD_ERR_ARG, "%s: not a LoRA adapter; expected a PEFT directory, a "
                       ".safetensors file with adapter_config.json beside it, or a .gguf adapter", path);
    }
    if (st) {
        herd_lora_free(L);
        return st;
    }
    *out = L;
    return HERD_OK;
}

/* The pool's round workspace for adapters of rank up to r (lora_rows, lora_t):
 * grown here, when a session takes an adapter, never in the forward. */
static herd_status lora_pool_reserve(herd_kv_pool *P, int r, herd_error *err) {
    if (r <= P->lora_rank) return HERD_OK;
    const size_t R = (size_t)P->max_rows;
    float *t = malloc(R * LORA_N * (size_t)r * sizeof *t);
    if (!P->lora_rows) P->lora_rows = malloc(R * sizeof *P->lora_rows);
    if (!t || !P->lora_rows) {
        free(t);
        return herd_errf(err, HERD_ERR_NOMEM, "out of memory for a rank-%d adapter's workspace", r);
    }
    free(P->lora_t);
    P->lora_t = t;
    P->lora_rank = r;
    return HERD_OK;
}

void lora_apply(herd_kv_pool *P, const fwd_seg *segs, int n_seg, int l, const int *targets, int n,
                const float *x, float *const *outs) {
    unsigned char done[n_seg]; /* a segment whose adapter's rows have gone */
    memset(done, 0, sizeof done);
    for (int i = 0; i < n_seg; i++) {
        const herd_lora *L = segs[i].s->lora;
        if (!L || done[i]) continue;
        int T = 0;
        for (int k = i; k < n_seg; k++) { /* this adapter's rows */
            const fwd_seg *g = &segs[k];
            if (g->s->lora != L) continue;
            done[k] = 1;
            for (int q = 0; q < g->n; q++) P->lora_rows[T++] = g->row0 + q;
        }
        lora_proj pr[LORA_N];
        int np = 0;
        int64_t ic = 0;
        for (int k = 0; k < n; k++) {
            const lora_pair *p = &L->p[l * LORA_N + targets[k]];
            if (!p->a) continue;
            pr[np++] = (lora_proj){ p->a, p->bt, outs[k], p->oc, p->r };
            ic = p->ic;
        }
        if (np) lora_forward(pr, np, x, P->lora_rows, T, ic, P->lora_t);
    }
}

herd_status herd_session_set_lora(herd_session *s, const herd_lora *l, herd_error *err) {
    if (l && l->m != s->m)
        return herd_errf(err, HERD_ERR_ARG, "the adapter was loaded for another model");
    if (l) {
        herd_status st = lora_pool_reserve(s->pool, l->rank, err);
        if (st) return st;
    }
    if (l != s->lora) {
        herd_session_reset(s);
        s->lora = l;
    }
    return HERD_OK;
}

const herd_lora *herd_session_lora(const herd_session *s) { return s->lora; }

void herd_lora_print_info(const herd_lora *l, FILE *out) {
    const int L = l->m->config.n_layers;
    uint64_t params = 0;
    fprintf(out, "LoRA adapter: %d projections of %d layers, rank up to %d, scale multiplier %g\n", l->n_pairs, L,
            l->rank, (double)l->scale);
    for (int t = 0; t < LORA_N; t++) {
        int n = 0, rmin = 0, rmax = 0;
        const lora_pair *first = NULL;
        for (int i = 0; i < L; i++) {
            const lora_pair *p = &l->p[i * LORA_N + t];
            if (!p->a) continue;
            if (!first) first = p, rmin = p->r;
            rmin = p->r < rmin ? p->r : rmin;
            rmax = p->r > rmax ? p->r : rmax;
            params += (uint64_t)p->r * (uint64_t)(p->ic + p->oc);
            n++;
        }
        if (!first) continue;
        fprintf(out, "  %-9s %4d layers  %6lld -> %-6lld  rank %d", target_name(t), n, (long long)first->ic,
                (long long)first->oc, rmin);
        if (rmax != rmin) fprintf(out, "-%d", rmax);
        fputc('\n', out);
    }
    fprintf(out, "parameters: %llu (%.1f MiB as herd holds them, F32)\n", (unsigned long long)params,
            (double)params * 4 / (1 << 20));
}

herd_status herd_lora_save_gguf(const herd_lora *l, const char *path, herd_error *err) {
    const herd_config *c = &l->m->config;
    gguf_writer *w = gguf_writer_new();
    if (!w) return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    gguf_writer_add_str(w, "general.architecture", "llama");
    gguf_writer_add_str(w, "general.type", "adapter");
    gguf_writer_add_str(w, "adapter.type", "lora");
    /* the scale is folded into B: no alpha, which llama.cpp (and herd) read as scale 1 */
    herd_status st = HERD_OK;
    float **keep = calloc((size_t)c->n_layers * LORA_N, sizeof *keep);
    if (!keep) st = herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    for (int i = 0; i < c->n_layers * LORA_N && !st; i++) {
        const lora_pair *p = &l->p[i];
        if (!p->a) continue;
        const int t = i % LORA_N;
        float *b = malloc((size_t)(p->oc * p->r) * sizeof *b); /* B (OC, r) from B^T */
        if (!(keep[i] = b)) {
            st = herd_errf(err, HERD_ERR_NOMEM, "out of memory");
            break;
        }
        for (int64_t o = 0; o < p->oc; o++)
            for (int j = 0; j < p->r; j++) b[o * p->r + j] = p->bt[(int64_t)j * p->oc + o];
        if ((t == LORA_Q || t == LORA_K) && !l->m->rope_interleaved && /* GGUF's q / k row order */
            !permute_rows(b, p->oc, p->r, t == LORA_Q ? c->n_heads : c->n_kv_heads, 1)) {
            st = herd_errf(err, HERD_ERR_NOMEM, "out of memory");
            break;
        }
        char nm[96];
        int64_t na[2] = { p->ic, p->r }, nb[2] = { p->r, p->oc };
        snprintf(nm, sizeof nm, "blk.%d.%s.weight.lora_a", i / LORA_N, lora_module_name(t, 1));
        st = gguf_writer_add_tensor(w, nm, HERD_F32, 2, na, p->a, err);
        snprintf(nm, sizeof nm, "blk.%d.%s.weight.lora_b", i / LORA_N, lora_module_name(t, 1));
        if (!st) st = gguf_writer_add_tensor(w, nm, HERD_F32, 2, nb, b, err);
    }
    if (!st) st = gguf_writer_write(w, path, err);
    gguf_writer_free(w);
    for (int i = 0; keep && i < c->n_layers * LORA_N; i++) free(keep[i]);
    free(keep);
    return st;
}
