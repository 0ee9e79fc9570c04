/* fuzz_gguf.c - libFuzzer target for the GGUF reader: any input must parse or be
 * rejected with a message, and every view a successful parse hands out (strings,
 * arrays, tensor data) must lie inside the input. Seeds: fuzz/corpus/fuzz_gguf/.
 * Build: make fuzz; run: build-fuzz/fuzz_gguf fuzz/corpus/fuzz_gguf -max_total_time=60 */
#include "format/format.h"

#include <string.h>

/* hfconfig.c needs this; model.c's definition wins when it is linked in. */
__attribute__((weak)) void herd_config_default(herd_config *c) { memset(c, 0, sizeof *c); }

static volatile unsigned sink;

static void touch(const uint8_t *p, size_t n) {
    if (n) sink += p[0] + p[n - 1];
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file g;
    herd_error err;
    err.msg[0] = 0;
    if (gguf_parse(&g, data, size, "fuzz.gguf", &err) != HERD_OK) {
        if (!err.msg[0]) __builtin_trap(); /* a failure must say why */
        return 0;
    }
    for (size_t i = 0; i < g.n_kv; i++) {
        const gguf_kv *kv = &g.kv[i];
        if (kv->type == GGUF_T_STRING) touch((const uint8_t *)kv->str.ptr, kv->str.len);
        if (kv->type == GGUF_T_ARRAY && kv->arr_type == GGUF_T_STRING)
            for (uint64_t j = 0; j < kv->arr_n; j++)
                touch((const uint8_t *)kv->arr_strs[j].ptr, kv->arr_strs[j].len);
        else if (kv->type == GGUF_T_ARRAY && kv->arr_n)
            touch(kv->arr_data, 1);
        uint32_t u;
        float f;
        gguf_str s;
        gguf_get_u32(&g, kv->key, &u, &err);
        gguf_get_f32(&g, kv->key, &f, &err);
        gguf_get_str(&g, kv->key, &s, &err);
        if (gguf_find(&g, kv->key) == NULL) __builtin_trap();
    }
    for (size_t i = 0; i < g.n_tensors; i++) {
        const herd_tensor *t = &g.tensors[i];
        touch(t->data, t->n_bytes);
        if (gguf_find_tensor(&g, t->name) != t) __builtin_trap(); /* names are unique */
    }
    gguf_close(&g);
    return 0;
}
