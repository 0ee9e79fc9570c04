/* fuzz_lora.c - libFuzzer target for what a LoRA adapter file says before its
 * weights are read (format/lora_format.c): the input as adapter_config.json (it
 * parses into a usable scale or is refused with a message), as a tensor name in
 * both naming schemes (a parsed name round-trips: the layer and projection it
 * names print back to the same string), and as a safetensors file whose tensor
 * names go through the same parser, as herd_lora_load does. Seeds:
 * fuzz/corpus/fuzz_lora/. Build: make fuzz; run: build-fuzz/fuzz_lora fuzz/corpus/fuzz_lora */
#include "format/format.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const HF[7] = { "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                   "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj" };
static const char *const GG[7] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" };

static void name(const char *s) {
    for (int gguf = 0; gguf < 2; gguf++) {
        int l = -1, t = -1, b = -1;
        if (!lora_name_parse(s, gguf, &l, &t, &b)) continue;
        if (l < 0 || l > 999999 || t < 0 || t > 6 || (b != 0 && b != 1)) __builtin_trap();
        char want[128];
        if (gguf) snprintf(want, sizeof want, "blk.%d.%s.weight.lora_%c", l, GG[t], b ? 'b' : 'a');
        else snprintf(want, sizeof want, "layers.%d.%s.lora_%c.weight", l, HF[t], b ? 'B' : 'A');
        size_t n = strlen(s), k = strlen(want);
        /* PEFT names may carry a prefix ending in '.' */
        if (n < k || strcmp(s + n - k, want) || (!gguf && n > k && s[n - k - 1] != '.')) __builtin_trap();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    herd_error err;
    err.msg[0] = 0;
    lora_config c;
    if (lora_config_parse(&c, (const char *)data, size, "fuzz/adapter_config.json", &err)) {
        if (!err.msg[0]) __builtin_trap();
    } else if (c.r < 0 || c.r > 65536 || !(fabsf(c.alpha) <= 1e6f)) {
        __builtin_trap(); /* accepted a config whose scale is unusable */
    }
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = 0;
    name(s);
    free(s);
    st_set st;
    if (st_parse(&st, data, size, "fuzz/adapter_model.safetensors", &err) == HERD_OK) {
        for (size_t i = 0; i < st.n_tensors; i++) name(st.tensors[i].name);
        st_close(&st);
    }
    return 0;
}
