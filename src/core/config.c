/* config.c - the Llama 3.1 defaults of herd_config (herd.h): what a model has
 * when its files do not say otherwise. Kept apart from model.c so the format
 * parsers (and their fuzzers) link without the model. */
#include <string.h>

#include <stdlib.h>

#include "core/core.h"
#include "format/format.h"

void herd_config_default(herd_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 128256;
    c->max_seq_len = 131072;
    c->norm_eps = 1e-5f;
    c->rope_theta = 500000.0f;
    c->rope_scaling = 1;
    c->rope_factor = 8.0f;
    c->rope_low_freq_factor = 1.0f;
    c->rope_high_freq_factor = 4.0f;
    c->rope_orig_max_pos = 8192;
    c->bos_id = 128000;
    c->n_eos = 3;
    c->eos_ids[0] = 128001;
    c->eos_ids[1] = 128008;
    c->eos_ids[2] = 128009;
    c->default_temperature = -1;
    c->default_top_p = -1;
    c->default_top_k = -1;
}

herd_status herd_config_load(herd_config *c, const char *path, herd_error *err) {
    char *text;
    size_t len;
    herd_status st = herd_read_file(path, &text, &len, err);
    if (st) return st;
    st = hf_config_parse(c, text, len, path, err);
    free(text);
    return st;
}
