/* fuzz_config.c - libFuzzer target for config.json and generation_config.json
 * parsing: any input parses into a config whose fields are in range, or is
 * rejected with a message. Seeds: fuzz/corpus/fuzz_config/.
 * Build: make fuzz; run: build-fuzz/fuzz_config fuzz/corpus/fuzz_config -max_total_time=60 */
#include "format/format.h"

#include <string.h>

/* hfconfig.c needs this; model.c's definition wins when it is linked in. */
__attribute__((weak)) void herd_config_default(herd_config *c) {
    memset(c, 0, sizeof *c);
    c->bos_id = 128000;
    c->n_eos = 1;
    c->eos_ids[0] = 128001;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    herd_config c;
    herd_error err;
    err.msg[0] = 0;
    memset(&c, 0, sizeof c);
    herd_status st = hf_config_parse(&c, (const char *)data, size, "fuzz/config.json", &err);
    if (st != HERD_OK) {
        if (!err.msg[0]) __builtin_trap();
    } else if (c.dim <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads ||
               c.head_dim <= 0 || c.head_dim % 2 || c.n_layers <= 0 || c.vocab_size <= 0 ||
               c.n_eos < 0 || c.n_eos > 8 || !(c.norm_eps > 0) || !(c.rope_theta > 0) ||
               (c.rope_scaling && !(c.rope_high_freq_factor > c.rope_low_freq_factor))) {
        __builtin_trap(); /* accepted a config the forward pass cannot run */
    }
    st = hf_generation_config_parse(&c, (const char *)data, size, "fuzz/generation_config.json", &err);
    if (st != HERD_OK && !err.msg[0]) __builtin_trap();
    if (c.n_eos < 0 || c.n_eos > 8) __builtin_trap();
    return 0;
}
