/* hfconfig.c - Hugging Face config.json and generation_config.json for the Llama
 * architecture: parse into herd_config with every field range-checked, and write
 * them back in the form transformers writes for Llama 3.1.
 *
 * Absent optional fields take transformers' LlamaConfig defaults (rope_theta
 * 10000, rms_norm_eps 1e-6, max_position_embeddings 2048, no rope scaling, untied
 * embeddings, num_key_value_heads = num_attention_heads, head_dim = hidden_size /
 * num_attention_heads); absent token ids keep herd_config_default's Llama 3 ids.
 * Not handled: other architectures, rope scaling other than llama3, biases,
 * activations other than silu - each rejected with HERD_ERR_UNSUPPORTED naming
 * the field. Unknown extra fields are ignored, as transformers does.
 */
#include "format/format.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SIZE (1 << 20)   /* hidden, ffn, head sizes */
#define MAX_COUNT (1 << 16)  /* layers, heads */
#define MAX_VOCAB (1 << 22)
#define MAX_POS (1 << 24)

typedef struct {
    const char *where;
    const char *prefix; /* "" or "rope_scaling." for nested fields */
    herd_error *err;
} ctx;

static const char *json_kind(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid JSON";
}

static const cJSON *field(const cJSON *obj, const char *key) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsNull(j) ? NULL : j; /* null means absent, as in transformers */
}

/* Integer field in lo..hi. Absent: an error when required, else *out is kept. */
static herd_status get_int(ctx *c, const cJSON *obj, const char *key, int required, long lo,
                           long hi, int *out) {
    const cJSON *j = field(obj, key);
    if (!j) {
        if (!required) return HERD_OK;
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': field '%s%s' is missing; expected an "
                         "integer in %ld..%ld", c->where, c->prefix, key, lo, hi);
    }
    if (!cJSON_IsNumber(j))
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': field '%s%s' is %s; expected an "
                         "integer in %ld..%ld", c->where, c->prefix, key, json_kind(j), lo, hi);
    double d = j->valuedouble;
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': field '%s%s' is %g; expected an "
                         "integer in %ld..%ld", c->where, c->prefix, key, d, lo, hi);
    *out = (int)d;
    return HERD_OK;
}

/* Number field with lo < value <= hi (lo_incl: lo <= value). */
static herd_status get_float(ctx *c, const cJSON *obj, const char *key, int required, double lo,
                             int lo_incl, double hi, float *out) {
    const cJSON *j = field(obj, key);
    if (!j) {
        if (!required) return HERD_OK;
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': field '%s%s' is missing; expected a "
                         "number", c->where, c->prefix, key);
    }
    if (!cJSON_IsNumber(j))
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': field '%s%s' is %s; expected a number",
                         c->where, c->prefix, key, json_kind(j));
    double d = j->valuedouble;
    if (!(lo_incl ? d >= lo : d > lo) || !(d <= hi))
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': field '%s%s' is %g; expected a number "
                         "in %c%g, %g]", c->where, c->prefix, key, d, lo_incl ? '[' : '(', lo, hi);
    const float f = (float)d; /* the range again as stored: 1e-105 is > 0 but rounds to 0 */
    if (!(lo_incl ? f >= lo : f > lo))
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': field '%s%s' is %g, which is %g as a 32-bit "
                         "float; expected a number in %c%g, %g]", c->where, c->prefix, key, d, (double)f,
                         lo_incl ? '[' : '(', lo, hi);
    *out = f;
    return HERD_OK;
}

static herd_status get_bool(ctx *c, const cJSON *obj, const char *key, int *out) {
    const cJSON *j = field(obj, key);
    if (!j) return HERD_OK;
    if (!cJSON_IsBool(j))
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': field '%s%s' is %s; expected true or "
                         "false", c->where, c->prefix, key, json_kind(j));
    *out = cJSON_IsTrue(j);
    return HERD_OK;
}

static herd_status check_false(ctx *c, const cJSON *obj, const char *key) {
    int v = 0;
    herd_status st = get_bool(c, obj, key, &v);
    if (st == HERD_OK && v)
        st = herd_errf(c->err, HERD_ERR_UNSUPPORTED, "config '%s': '%s' is true; herd runs Llama "
                       "without biases", c->where, key);
    return st;
}

/* eos_token_id: one id or an array of 1..8 ids. */
static herd_status get_eos(ctx *c, const cJSON *obj, herd_config *cfg) {
    const cJSON *j = field(obj, "eos_token_id");
    if (!j) return HERD_OK;
    int n = cJSON_IsArray(j) ? cJSON_GetArraySize(j) : 1;
    if (!cJSON_IsArray(j) && !cJSON_IsNumber(j))
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': field 'eos_token_id' is %s; expected "
                         "an integer or an array of integers", c->where, json_kind(j));
    if (n < 1 || n > 8)
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': field 'eos_token_id' has %d ids; "
                         "expected 1 to 8", c->where, n);
    long hi = cfg->vocab_size > 0 ? cfg->vocab_size - 1 : MAX_VOCAB;
    int ids[8];
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_IsArray(j) ? cJSON_GetArrayItem(j, i) : j;
        double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
        if (!(d >= 0 && d <= (double)hi) || d != floor(d))
            return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': eos_token_id entry %d is not a "
                             "token id in 0..%ld", c->where, i, hi);
        ids[i] = (int)d;
    }
    cfg->n_eos = n;
    memcpy(cfg->eos_ids, ids, sizeof(int) * (size_t)n);
    return HERD_OK;
}

static herd_status check_architecture(ctx *c, const cJSON *root) {
    const cJSON *arch = field(root, "architectures"), *mt = field(root, "model_type");
    const char *first = NULL;
    if (cJSON_IsArray(arch))
        for (const cJSON *e = arch->child; e; e = e->next) {
            if (!cJSON_IsString(e)) continue;
            if (strcmp(e->valuestring, "LlamaForCausalLM") == 0) return HERD_OK;
            if (!first) first = e->valuestring;
        }
    if (cJSON_IsString(mt) && strcmp(mt->valuestring, "llama") == 0) return HERD_OK;
    if (!first && cJSON_IsString(mt)) first = mt->valuestring;
    return herd_errf(c->err, HERD_ERR_UNSUPPORTED, "config '%s': unknown architecture '%.100s'; herd "
                     "runs LlamaForCausalLM (model_type 'llama') only", c->where,
                     first ? first : "(none given)");
}

static herd_status get_rope_scaling(ctx *c, const cJSON *root, herd_config *cfg) {
    const cJSON *rs = field(root, "rope_scaling");
    cfg->rope_scaling = 0;
    if (!rs) return HERD_OK;
    if (!cJSON_IsObject(rs))
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': field 'rope_scaling' is %s; expected "
                         "null or an object", c->where, json_kind(rs));
    const cJSON *type = field(rs, "rope_type");
    if (!type) type = field(rs, "type");
    if (!cJSON_IsString(type))
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': rope_scaling has no string "
                         "'rope_type'; expected \"llama3\"", c->where);
    if (strcmp(type->valuestring, "default") == 0) return HERD_OK;
    if (strcmp(type->valuestring, "llama3") != 0)
        return herd_errf(c->err, HERD_ERR_UNSUPPORTED, "config '%s': rope_scaling type '%.40s' is not "
                         "supported; herd implements 'llama3' only", c->where, type->valuestring);
    ctx rc = { c->where, "rope_scaling.", c->err };
    herd_status st;
    if ((st = get_float(&rc, rs, "factor", 1, 0, 0, 1e6, &cfg->rope_factor)) != HERD_OK ||
        (st = get_float(&rc, rs, "low_freq_factor", 1, 0, 0, 1e6, &cfg->rope_low_freq_factor)) != HERD_OK ||
        (st = get_float(&rc, rs, "high_freq_factor", 1, 0, 0, 1e6, &cfg->rope_high_freq_factor)) != HERD_OK ||
        (st = get_int(&rc, rs, "original_max_position_embeddings", 1, 1, MAX_POS,
                      &cfg->rope_orig_max_pos)) != HERD_OK)
        return st;
    if (!(cfg->rope_high_freq_factor > cfg->rope_low_freq_factor))
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': rope_scaling high_freq_factor (%g) "
                         "must be greater than low_freq_factor (%g)", c->where,
                         (double)cfg->rope_high_freq_factor, (double)cfg->rope_low_freq_factor);
    cfg->rope_scaling = 1;
    return HERD_OK;
}

static herd_status parse_config(ctx *c, const cJSON *root, herd_config *cfg) {
    herd_status st;
    if ((st = check_architecture(c, root)) != HERD_OK) return st;
    const cJSON *act = field(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0))
        return herd_errf(c->err, HERD_ERR_UNSUPPORTED, "config '%s': hidden_act is '%.40s'; herd "
                         "implements silu only", c->where,
                         cJSON_IsString(act) ? act->valuestring : json_kind(act));
    if ((st = check_false(c, root, "attention_bias")) != HERD_OK ||
        (st = check_false(c, root, "mlp_bias")) != HERD_OK)
        return st;

    herd_config_default(cfg);
    cfg->max_seq_len = 2048;
    cfg->norm_eps = 1e-6f;
    cfg->rope_theta = 10000.0f;
    cfg->tie_embeddings = 0;
    cfg->n_kv_heads = 0;
    cfg->head_dim = 0;
    cfg->default_temperature = cfg->default_top_p = -1;
    cfg->default_top_k = -1;
    if ((st = get_int(c, root, "hidden_size", 1, 1, MAX_SIZE, &cfg->dim)) != HERD_OK ||
        (st = get_int(c, root, "intermediate_size", 1, 1, MAX_SIZE, &cfg->ffn_dim)) != HERD_OK ||
        (st = get_int(c, root, "num_hidden_layers", 1, 1, MAX_COUNT, &cfg->n_layers)) != HERD_OK ||
        (st = get_int(c, root, "num_attention_heads", 1, 1, MAX_COUNT, &cfg->n_heads)) != HERD_OK ||
        (st = get_int(c, root, "num_key_value_heads", 0, 1, MAX_COUNT, &cfg->n_kv_heads)) != HERD_OK ||
        (st = get_int(c, root, "head_dim", 0, 2, MAX_SIZE, &cfg->head_dim)) != HERD_OK ||
        (st = get_int(c, root, "vocab_size", 1, 1, MAX_VOCAB, &cfg->vocab_size)) != HERD_OK ||
        (st = get_int(c, root, "max_position_embeddings", 0, 1, MAX_POS, &cfg->max_seq_len)) != HERD_OK ||
        (st = get_float(c, root, "rms_norm_eps", 0, 0, 0, 1, &cfg->norm_eps)) != HERD_OK ||
        (st = get_float(c, root, "rope_theta", 0, 0, 0, 1e12, &cfg->rope_theta)) != HERD_OK ||
        (st = get_bool(c, root, "tie_word_embeddings", &cfg->tie_embeddings)) != HERD_OK ||
        (st = get_rope_scaling(c, root, cfg)) != HERD_OK)
        return st;
    if (cfg->n_kv_heads == 0) cfg->n_kv_heads = cfg->n_heads;
    if (cfg->n_heads % cfg->n_kv_heads != 0)
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': num_attention_heads (%d) must be a "
                         "multiple of num_key_value_heads (%d)", c->where, cfg->n_heads,
                         cfg->n_kv_heads);
    if (cfg->head_dim == 0) {
        if (cfg->dim % cfg->n_heads != 0)
            return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': hidden_size (%d) is not a "
                             "multiple of num_attention_heads (%d) and there is no head_dim",
                             c->where, cfg->dim, cfg->n_heads);
        cfg->head_dim = cfg->dim / cfg->n_heads;
    }
    if (cfg->head_dim % 2 != 0)
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': head_dim is %d; expected an even "
                         "number (RoPE rotates pairs)", c->where, cfg->head_dim);
    if ((long)cfg->n_heads * cfg->head_dim > MAX_SIZE)
        return herd_errf(c->err, HERD_ERR_FORMAT, "config '%s': num_attention_heads * head_dim = "
                         "%ld; expected at most %d", c->where, (long)cfg->n_heads * cfg->head_dim,
                         MAX_SIZE);
    if ((st = get_int(c, root, "bos_token_id", 0, 0, cfg->vocab_size - 1, &cfg->bos_id)) != HERD_OK)
        return st;
    return get_eos(c, root, cfg);
}

static herd_status with_json(const char *json, size_t len, const char *where, herd_error *err,
                             herd_config *cfg,
                             herd_status (*fn)(ctx *, const cJSON *, herd_config *)) {
    ctx c = { where ? where : "?", "", err };
    if (!cfg || !json)
        return herd_errf(err, HERD_ERR_ARG, "config '%s': missing config or text", c.where);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return herd_errf(err, HERD_ERR_FORMAT, "config '%s': not a JSON object (%zu bytes); the "
                         "file is corrupt or not a config", c.where, len);
    }
    herd_status st = fn(&c, root, cfg);
    cJSON_Delete(root);
    return st;
}

herd_status hf_config_parse(herd_config *c, const char *json, size_t len, const char *where,
                            herd_error *err) {
    herd_config tmp;
    herd_status st = with_json(json, len, where, err, &tmp, parse_config);
    if (st == HERD_OK) *c = tmp; /* *c is untouched on failure */
    return st;
}

static herd_status parse_generation(ctx *c, const cJSON *root, herd_config *cfg) {
    herd_status st;
    int do_sample = 1;
    if ((st = get_float(c, root, "temperature", 0, 0, 1, 100, &cfg->default_temperature)) != HERD_OK ||
        (st = get_float(c, root, "top_p", 0, 0, 0, 1, &cfg->default_top_p)) != HERD_OK ||
        (st = get_int(c, root, "top_k", 0, 0, MAX_VOCAB, &cfg->default_top_k)) != HERD_OK ||
        (st = get_bool(c, root, "do_sample", &do_sample)) != HERD_OK)
        return st;
    if (!do_sample) cfg->default_temperature = 0; /* transformers: greedy whatever the temperature */
    long hi = cfg->vocab_size > 0 ? cfg->vocab_size - 1 : MAX_VOCAB;
    if ((st = get_int(c, root, "bos_token_id", 0, 0, hi, &cfg->bos_id)) != HERD_OK) return st;
    return get_eos(c, root, cfg);
}

herd_status hf_generation_config_parse(herd_config *c, const char *json, size_t len,
                                       const char *where, herd_error *err) {
    if (!c) return herd_errf(err, HERD_ERR_ARG, "config '%s': missing config", where ? where : "?");
    herd_config tmp = *c;
    herd_status st = with_json(json, len, where, err, &tmp, parse_generation);
    if (st == HERD_OK) *c = tmp;
    return st;
}

/* ---- writers ------------------------------------------------------------- */

typedef struct {
    char buf[4096];
    size_t n;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(t->buf + t->n, sizeof t->buf - t->n, fmt, ap);
    va_end(ap);
    if (k > 0) t->n += (size_t)k < sizeof t->buf - t->n ? (size_t)k : sizeof t->buf - t->n - 1;
}

/* Shortest text that reads back as the same float, with ".0" on integral values
 * as Python's json writes floats. */
static const char *fmt_float(char out[40], float v) {
    if (!isfinite(v)) { snprintf(out, 40, "null"); return out; }
    if (v == floorf(v) && fabsf(v) < 1e15f) {
        snprintf(out, 40, "%.1f", (double)v);
        return out;
    }
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(out, 40, "%.*g", prec, (double)v);
        if (strtof(out, NULL) == v) break;
    }
    return out;
}

static void put_eos(text *t, const herd_config *c) {
    if (c->n_eos == 1) put(t, "  \"eos_token_id\": %d,\n", c->eos_ids[0]);
    if (c->n_eos > 1) {
        put(t, "  \"eos_token_id\": [\n");
        for (int i = 0; i < c->n_eos && i < 8; i++)
            put(t, "    %d%s\n", c->eos_ids[i], i + 1 < c->n_eos && i < 7 ? "," : "");
        put(t, "  ],\n");
    }
}

static herd_status write_text(const text *t, const char *path, herd_error *err) {
    if (t->n >= sizeof t->buf - 1)
        return herd_errf(err, HERD_ERR_ARG, "config writer: '%s': text too long", path);
    fmt_atomic_file f;
    herd_status st = fmt_atomic_open(&f, path, err);
    if (st != HERD_OK) return st;
    fmt_atomic_write(&f, t->buf, t->n);
    return fmt_atomic_commit(&f, err);
}

herd_status hf_config_write(const herd_config *c, const char *path, herd_error *err) {
    return hf_config_write_dtype(c, path, "bfloat16", err);
}

herd_status hf_config_write_dtype(const herd_config *c, const char *path, const char *torch_dtype,
                                  herd_error *err) {
    if (!c || !path || !torch_dtype)
        return herd_errf(err, HERD_ERR_ARG, "config writer: missing config, path or dtype");
    text t = { .n = 0 };
    char f1[40], f2[40], f3[40];
    put(&t, "{\n  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],\n");
    put(&t, "  \"attention_bias\": false,\n  \"attention_dropout\": 0.0,\n");
    if (c->bos_id >= 0) put(&t, "  \"bos_token_id\": %d,\n", c->bos_id);
    put_eos(&t, c);
    put(&t, "  \"head_dim\": %d,\n  \"hidden_act\": \"silu\",\n  \"hidden_size\": %d,\n",
        c->head_dim, c->dim);
    put(&t, "  \"initializer_range\": 0.02,\n  \"intermediate_size\": %d,\n", c->ffn_dim);
    put(&t, "  \"max_position_embeddings\": %d,\n  \"mlp_bias\": false,\n", c->max_seq_len);
    put(&t, "  \"model_type\": \"llama\",\n  \"num_attention_heads\": %d,\n", c->n_heads);
    put(&t, "  \"num_hidden_layers\": %d,\n  \"num_key_value_heads\": %d,\n", c->n_layers,
        c->n_kv_heads);
    put(&t, "  \"pretraining_tp\": 1,\n  \"rms_norm_eps\": %s,\n", fmt_float(f1, c->norm_eps));
    if (c->rope_scaling) {
        put(&t, "  \"rope_scaling\": {\n    \"factor\": %s,\n    \"high_freq_factor\": %s,\n",
            fmt_float(f1, c->rope_factor), fmt_float(f2, c->rope_high_freq_factor));
        put(&t, "    \"low_freq_factor\": %s,\n    \"original_max_position_embeddings\": %d,\n",
            fmt_float(f3, c->rope_low_freq_factor), c->rope_orig_max_pos);
        put(&t, "    \"rope_type\": \"llama3\"\n  },\n");
    } else {
        put(&t, "  \"rope_scaling\": null,\n");
    }
    put(&t, "  \"rope_theta\": %s,\n  \"tie_word_embeddings\": %s,\n", fmt_float(f1, c->rope_theta),
        c->tie_embeddings ? "true" : "false");
    put(&t, "  \"torch_dtype\": \"%s\",\n  \"transformers_version\": \"4.43.0\",\n", torch_dtype);
    put(&t, "  \"use_cache\": true,\n  \"vocab_size\": %d\n}\n", c->vocab_size);
    return write_text(&t, path, err);
}

herd_status hf_generation_config_write(const herd_config *c, const char *path, herd_error *err) {
    if (!c || !path) return herd_errf(err, HERD_ERR_ARG, "config writer: missing config or path");
    text t = { .n = 0 };
    char f[40];
    put(&t, "{\n");
    if (c->bos_id >= 0) put(&t, "  \"bos_token_id\": %d,\n", c->bos_id);
    if (c->default_temperature == 0) put(&t, "  \"do_sample\": false,\n");
    else if (c->default_temperature > 0) put(&t, "  \"do_sample\": true,\n");
    put_eos(&t, c);
    if (c->default_temperature > 0)
        put(&t, "  \"temperature\": %s,\n", fmt_float(f, c->default_temperature));
    if (c->default_temperature != 0 && c->default_top_k >= 0)
        put(&t, "  \"top_k\": %d,\n", c->default_top_k);
    if (c->default_temperature != 0 && c->default_top_p >= 0)
        put(&t, "  \"top_p\": %s,\n", fmt_float(f, c->default_top_p));
    put(&t, "  \"transformers_version\": \"4.43.0\"\n}\n");
    return write_text(&t, path, err);
}
