/* lora_writer.h - random LoRA adapters for the tests (test_lora.c, and mk_lora.c
 * for the shell tests and tools/record_lora_fixture.sh): the same values written
 * as PEFT's directory (adapter_config.json + adapter_model.safetensors, F32 or
 * BF16) and as llama.cpp's GGUF adapter (q / k rows of B in GGUF's interleaved
 * order, as llama.cpp's converter writes them).
 *
 * Values: xorshift64 from the seed, every value rounded to bf16 (so the F32 and
 * BF16 files hold the same numbers); A uniform in +-1/sqrt(IC), B uniform in
 * +-b_range. Projections by bit (1 << k, k = 0..6: q k v o gate up down).
 */
#ifndef HERD_LORA_WRITER_H
#define HERD_LORA_WRITER_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "format/format.h"
#include "herd.h"

typedef struct {
    int rank;
    float alpha;
    unsigned targets;  /* bits 0..6 */
    uint64_t seed;
    int rslora;
    int dtype;         /* HERD_F32 or HERD_BF16 (the safetensors file) */
    float b_range;
    int zero_b;        /* B all zero: PEFT's initial adapter */
} test_lora;

static const char *const TL_HF[7] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                      "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
static const char *const TL_GG[7] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" };

static void tl_dims(const herd_config *c, int t, int64_t *oc, int64_t *ic) {
    const int64_t C = c->dim, F = c->ffn_dim, QD = (int64_t)c->n_heads * c->head_dim,
                  KVD = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t o[7] = { QD, KVD, KVD, C, F, F, C }, i[7] = { C, C, C, QD, C, C, F };
    *oc = o[t];
    *ic = i[t];
}

static float tl_uniform(uint64_t *s, float range) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    const double u = (double)(*s >> 11) / 9007199254740992.0; /* [0, 1) */
    return herd_bf16_to_f32(herd_f32_to_bf16((float)((2 * u - 1) * range)));
}

/* Writes dir/ (PEFT) and, when gguf_path is non-NULL, the GGUF adapter. */
static herd_status tl_write(const char *dir, const char *gguf_path, const herd_config *c, const test_lora *p,
                            herd_error *err) {
    if (herd_make_dirs(dir)) return herd_errf(err, HERD_ERR_IO, "%s: cannot create", dir);
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return herd_errf(err, HERD_ERR_IO, "%s: cannot write", path);
    fprintf(f, "{\"peft_type\": \"LORA\", \"r\": %d, \"lora_alpha\": %g, \"use_rslora\": %s, "
               "\"lora_dropout\": 0.0, \"bias\": \"none\", \"task_type\": \"CAUSAL_LM\", \"target_modules\": [",
            p->rank, (double)p->alpha, p->rslora ? "true" : "false");
    int first = 1;
    for (int t = 0; t < 7; t++)
        if (p->targets >> t & 1) fprintf(f, "%s\"%s\"", first ? "" : ", ", strchr(TL_HF[t], '.') + 1), first = 0;
    fprintf(f, "], \"fan_in_fan_out\": false, \"use_dora\": false, \"modules_to_save\": null}\n");
    fclose(f);
    st_writer *sw = st_writer_new();
    gguf_writer *gw = gguf_path ? gguf_writer_new() : NULL;
    if (!sw || (gguf_path && !gw)) {
        st_writer_free(sw);
        gguf_writer_free(gw);
        return herd_errf(err, HERD_ERR_NOMEM, "out of memory");
    }
    if (gw) {
        gguf_writer_add_str(gw, "general.architecture", "llama");
        gguf_writer_add_str(gw, "general.type", "adapter");
        gguf_writer_add_str(gw, "adapter.type", "lora");
        /* GGUF has no rsLoRA flag: llama.cpp's scale is alpha / r, so rsLoRA's
         * alpha / sqrt(r) is stored as alpha * sqrt(r) */
        gguf_writer_add_f32(gw, "adapter.lora.alpha", p->rslora ? p->alpha * sqrtf((float)p->rank) : p->alpha);
    }
    uint64_t s = p->seed * 0x9E3779B97F4A7C15ull + 1;
    herd_status st = HERD_OK;
    void *keep[4096];
    int n_keep = 0;
    for (int l = 0; l < c->n_layers && !st; l++)
        for (int t = 0; t < 7 && !st; t++) {
            if (!(p->targets >> t & 1)) continue;
            int64_t oc, ic, r = p->rank;
            tl_dims(c, t, &oc, &ic);
            float *a = malloc((size_t)(r * ic) * 4), *b = malloc((size_t)(oc * r) * 4), *bg = malloc((size_t)(oc * r) * 4);
            uint16_t *a16 = malloc((size_t)(r * ic) * 2), *b16 = malloc((size_t)(oc * r) * 2);
            if (!a || !b || !bg || !a16 || !b16 || n_keep + 5 > 4096) {
                free(a), free(b), free(bg), free(a16), free(b16);
                st = herd_errf(err, HERD_ERR_NOMEM, "out of memory");
                break;
            }
            keep[n_keep++] = a, keep[n_keep++] = b, keep[n_keep++] = bg, keep[n_keep++] = a16, keep[n_keep++] = b16;
            const float ar = 1.0f / sqrtf((float)ic);
            for (int64_t i = 0; i < r * ic; i++) a[i] = tl_uniform(&s, ar);
            for (int64_t i = 0; i < oc * r; i++) b[i] = p->zero_b ? 0.0f : tl_uniform(&s, p->b_range);
            for (int64_t i = 0; i < r * ic; i++) a16[i] = herd_f32_to_bf16(a[i]);
            for (int64_t i = 0; i < oc * r; i++) b16[i] = herd_f32_to_bf16(b[i]);
            memcpy(bg, b, (size_t)(oc * r) * 4);
            if (t <= 1) { /* GGUF: q / k rows interleaved, row h*HS + 2i + j <- h*HS + j*HS/2 + i */
                const int64_t HS = c->head_dim, heads = oc / HS;
                for (int64_t h = 0; h < heads; h++)
                    for (int64_t i = 0; i < HS / 2; i++)
                        for (int j = 0; j < 2; j++)
                            memcpy(bg + (h * HS + 2 * i + j) * r, b + (h * HS + j * HS / 2 + i) * r, (size_t)r * 4);
            }
            char nm[160];
            const int bf = p->dtype == HERD_BF16;
            int64_t sa[2] = { r, ic }, sb[2] = { oc, r };
            snprintf(nm, sizeof nm, "base_model.model.model.layers.%d.%s.lora_A.weight", l, TL_HF[t]);
            st = st_writer_add(sw, nm, p->dtype, 2, sa, bf ? (void *)a16 : (void *)a, err);
            snprintf(nm, sizeof nm, "base_model.model.model.layers.%d.%s.lora_B.weight", l, TL_HF[t]);
            if (!st) st = st_writer_add(sw, nm, p->dtype, 2, sb, bf ? (void *)b16 : (void *)b, err);
            if (gw && !st) {
                int64_t na[2] = { ic, r }, nb[2] = { r, oc };
                snprintf(nm, sizeof nm, "blk.%d.%s.weight.lora_a", l, TL_GG[t]);
                st = gguf_writer_add_tensor(gw, nm, HERD_F32, 2, na, a, err);
                snprintf(nm, sizeof nm, "blk.%d.%s.weight.lora_b", l, TL_GG[t]);
                if (!st) st = gguf_writer_add_tensor(gw, nm, HERD_F32, 2, nb, bg, err);
            }
        }
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    if (!st) st = st_writer_write(sw, path, err);
    if (!st && gw) st = gguf_writer_write(gw, gguf_path, err);
    st_writer_free(sw);
    gguf_writer_free(gw);
    for (int i = 0; i < n_keep; i++) free(keep[i]);
    return st;
}

#endif
