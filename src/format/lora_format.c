/* lora_format.c - what a LoRA adapter file says, before any weight is read:
 * PEFT's adapter_config.json (the scale alpha / r or alpha / sqrt(r), and the
 * variants herd refuses) and the tensor names of PEFT safetensors and of
 * llama.cpp's GGUF adapters. Parsing only (fuzzed: fuzz/fuzz_lora.c); the weights
 * are read and applied in src/lora.c.
 *
 * Refused with a message naming the field: DoRA (use_dora), fan_in_fan_out
 * (GPT-2's Conv1D layout, never Llama's), per-module alphas (alpha_pattern),
 * modules_to_save (whole replaced layers, e.g. lm_head), trained biases, and any
 * peft_type but LORA. Training-only fields (lora_dropout, init_lora_weights) and
 * what the tensors themselves say (target_modules, layers_to_transform,
 * rank_pattern: each pair's r is its shape) are not needed.
 */
#include "format/format.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const cJSON *field(const cJSON *obj, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(j) ? NULL : j;
}

static int nonempty(const cJSON *j) {
    if (!j) return 0;
    if (cJSON_IsArray(j) || cJSON_IsObject(j)) return cJSON_GetArraySize(j) > 0;
    if (cJSON_IsString(j)) return j->valuestring[0] != 0;
    return 1;
}

herd_status lora_config_parse(lora_config *c, const char *json, size_t len, const char *where,
                              herd_error *err) {
    memset(c, 0, sizeof *c);
    c->alpha = 8; /* PEFT's default lora_alpha */
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return herd_errf(err, HERD_ERR_FORMAT, "%s: not a JSON object; expected PEFT's "
                         "adapter_config.json", where);
    }
    herd_status st = HERD_OK;
    const cJSON *j;
    if ((j = field(root, "peft_type")) && (!cJSON_IsString(j) || strcmp(j->valuestring, "LORA")))
        st = herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: peft_type is %s; herd applies LORA adapters",
                       where, cJSON_IsString(j) ? j->valuestring : "not a string");
    if (!st && (j = field(root, "r"))) {
        if (!cJSON_IsNumber(j) || !(j->valuedouble >= 1 && j->valuedouble <= 65536) ||
            j->valuedouble != floor(j->valuedouble))
            st = herd_errf(err, HERD_ERR_FORMAT, "%s: 'r' must be an integer in 1..65536", where);
        else c->r = (int)j->valuedouble;
    }
    if (!st && (j = field(root, "lora_alpha"))) {
        if (!cJSON_IsNumber(j) || !(fabs(j->valuedouble) <= 1e6))
            st = herd_errf(err, HERD_ERR_FORMAT, "%s: 'lora_alpha' must be a number of magnitude "
                           "at most 1e6", where);
        else c->alpha = (float)j->valuedouble;
    }
    static const char *const bools[] = { "use_rslora", "use_dora", "fan_in_fan_out" };
    int on[3] = { 0, 0, 0 };
    for (int i = 0; i < 3 && !st; i++)
        if ((j = field(root, bools[i]))) {
            if (!cJSON_IsBool(j)) st = herd_errf(err, HERD_ERR_FORMAT, "%s: '%s' must be true or false", where, bools[i]);
            else on[i] = cJSON_IsTrue(j);
        }
    c->rslora = on[0];
    if (!st && on[1])
        st = herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: use_dora is true; herd applies plain LoRA, "
                       "not DoRA (merge the adapter into the model instead)", where);
    if (!st && on[2])
        st = herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: fan_in_fan_out is true, a layout of "
                       "Conv1D models; a Llama adapter has it false", where);
    if (!st && nonempty(field(root, "alpha_pattern")))
        st = herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: alpha_pattern gives some modules their own "
                       "lora_alpha; herd supports one alpha for all", where);
    c->rank_pattern = nonempty(field(root, "rank_pattern"));
    if (!st && nonempty(field(root, "modules_to_save")))
        st = herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: modules_to_save replaces whole modules; "
                       "herd applies low-rank pairs only (merge the adapter into the model instead)",
                       where);
    if (!st && (j = field(root, "bias")) && (!cJSON_IsString(j) || strcmp(j->valuestring, "none")))
        st = herd_errf(err, HERD_ERR_UNSUPPORTED, "%s: bias is %s; herd runs Llama without biases "
                       "(expected \"none\")", where, cJSON_IsString(j) ? j->valuestring : "not a string");
    cJSON_Delete(root);
    return st;
}

/* The seven projections, as PEFT (HF module paths) and GGUF name them. */
static const char *const HF_MOD[7] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                       "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
static const char *const GG_MOD[7] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" };

const char *lora_module_name(int t, int gguf) { return gguf ? GG_MOD[t] : HF_MOD[t]; }

/* "<digits>." at *p: the layer (at most 6 digits, no leading zero), p moved
 * past the dot. */
static int layer_at(const char **p, int *layer) {
    const char *s = *p;
    if (s[0] == '0' && s[1] >= '0' && s[1] <= '9') return 0;
    int n = 0, v = 0;
    while (*s >= '0' && *s <= '9' && n < 7) v = v * 10 + (*s++ - '0'), n++;
    if (n == 0 || n > 6 || *s != '.') return 0;
    *layer = v;
    *p = s + 1;
    return 1;
}

int lora_name_parse(const char *name, int gguf, int *layer, int *target, int *is_b) {
    const char *s;
    if (gguf) {
        if (strncmp(name, "blk.", 4)) return 0;
        s = name + 4;
        if (!layer_at(&s, layer)) return 0;
        for (int t = 0; t < 7; t++) {
            size_t n = strlen(GG_MOD[t]);
            if (strncmp(s, GG_MOD[t], n)) continue;
            const char *e = s + n;
            if (!strcmp(e, ".weight.lora_a") || !strcmp(e, ".weight.lora_b")) {
                *target = t;
                *is_b = e[13] == 'b';
                return 1;
            }
        }
        return 0;
    }
    /* [anything.]layers.N.<module>.lora_A.weight */
    const char *l = strstr(name, "layers.");
    if (!l || (l != name && l[-1] != '.')) return 0;
    s = l + 7;
    if (!layer_at(&s, layer)) return 0;
    for (int t = 0; t < 7; t++) {
        size_t n = strlen(HF_MOD[t]);
        if (strncmp(s, HF_MOD[t], n)) continue;
        const char *e = s + n;
        if (!strcmp(e, ".lora_A.weight") || !strcmp(e, ".lora_B.weight")) {
            *target = t;
            *is_b = e[6] == 'B';
            return 1;
        }
    }
    return 0;
}
