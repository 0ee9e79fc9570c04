/* fuzz_safetensors.c - libFuzzer target for the safetensors reader: any input
 * must parse or be rejected with a message; a successful parse's tensor views
 * must lie inside the input. Seeds: fuzz/corpus/fuzz_safetensors/.
 * Build: make fuzz; run: build-fuzz/fuzz_safetensors fuzz/corpus/fuzz_safetensors -max_total_time=60 */
#include "format/format.h"

#include <string.h>

/* hfconfig.c needs this; model.c's definition wins when it is linked in. */
__attribute__((weak)) void herd_config_default(herd_config *c) { memset(c, 0, sizeof *c); }

static volatile unsigned sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_set s;
    herd_error err;
    err.msg[0] = 0;
    if (st_parse(&s, data, size, "fuzz.safetensors", &err) != HERD_OK) {
        if (!err.msg[0]) __builtin_trap();
        return 0;
    }
    for (size_t i = 0; i < s.n_tensors; i++) {
        const herd_tensor *t = &s.tensors[i];
        const uint8_t *p = t->data;
        if (t->n_bytes) sink += p[0] + p[t->n_bytes - 1];
        if (st_find_tensor(&s, t->name) != t) __builtin_trap();
    }
    st_close(&s);
    return 0;
}
