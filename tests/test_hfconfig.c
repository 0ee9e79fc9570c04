/* test_hfconfig.c - config.json / generation_config.json: the Llama 3.1 8B
 * Instruct and 3.2 1B configs as HF ships them, every rejection (missing fields,
 * wrong types, unknown architecture, bad rope_scaling, biases, ranges) with its
 * message, and writer -> parser round trips. */
#include "format/format.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Used only when the library's model.c (the real one) is not linked in. */
__attribute__((weak)) void herd_config_default(herd_config *c) {
    memset(c, 0, sizeof *c);
    c->dim = 4096; c->n_layers = 32; c->n_heads = 32; c->n_kv_heads = 8; c->head_dim = 128;
    c->ffn_dim = 14336; c->vocab_size = 128256; c->max_seq_len = 131072; c->norm_eps = 1e-5f;
    c->rope_theta = 500000.0f; c->rope_scaling = 1; c->rope_factor = 8; c->rope_low_freq_factor = 1;
    c->rope_high_freq_factor = 4; c->rope_orig_max_pos = 8192; c->bos_id = 128000; c->n_eos = 3;
    c->eos_ids[0] = 128001; c->eos_ids[1] = 128008; c->eos_ids[2] = 128009;
    c->default_temperature = -1; c->default_top_p = -1; c->default_top_k = -1;
}

static herd_error err;

/* Llama-3.1-8B-Instruct/config.json, verbatim. */
static const char *cfg_8b =
    "{\n"
    "  \"architectures\": [\n"
    "    \"LlamaForCausalLM\"\n"
    "  ],\n"
    "  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 128000,\n"
    "  \"eos_token_id\": [\n"
    "    128001,\n"
    "    128008,\n"
    "    128009\n"
    "  ],\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 4096,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 14336,\n"
    "  \"max_position_embeddings\": 131072,\n"
    "  \"mlp_bias\": false,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 32,\n"
    "  \"num_key_value_heads\": 8,\n"
    "  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": {\n"
    "    \"factor\": 8.0,\n"
    "    \"low_freq_factor\": 1.0,\n"
    "    \"high_freq_factor\": 4.0,\n"
    "    \"original_max_position_embeddings\": 8192,\n"
    "    \"rope_type\": \"llama3\"\n"
    "  },\n"
    "  \"rope_theta\": 500000.0,\n"
    "  \"tie_word_embeddings\": false,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.42.3\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 128256\n"
    "}\n";

/* Llama-3.2-1B config.json (base model: one eos id, tied embeddings). */
static const char *cfg_1b =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false, "
    "\"attention_dropout\": 0.0, \"bos_token_id\": 128000, \"eos_token_id\": 128001, "
    "\"head_dim\": 64, \"hidden_act\": \"silu\", \"hidden_size\": 2048, \"initializer_range\": 0.02, "
    "\"intermediate_size\": 8192, \"max_position_embeddings\": 131072, \"mlp_bias\": false, "
    "\"model_type\": \"llama\", \"num_attention_heads\": 32, \"num_hidden_layers\": 16, "
    "\"num_key_value_heads\": 8, \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05, "
    "\"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0, "
    "\"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"}, "
    "\"rope_theta\": 500000.0, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", "
    "\"transformers_version\": \"4.45.0.dev0\", \"use_cache\": true, \"vocab_size\": 128256}";

static const char *gen_8b =
    "{\n  \"bos_token_id\": 128000,\n  \"do_sample\": true,\n  \"eos_token_id\": [\n    128001,\n"
    "    128008,\n    128009\n  ],\n  \"temperature\": 0.6,\n  \"top_p\": 0.9,\n"
    "  \"transformers_version\": \"4.42.3\"\n}\n";

static herd_status parse(herd_config *c, const char *json) {
    err.msg[0] = 0;
    return hf_config_parse(c, json, strlen(json), "config.json", &err);
}

/* Replaces the first occurrence of from in cfg_8b with to and expects an error. */
static void expect_fail(const char *from, const char *to, int st, const char *w1, const char *w2,
                        int line) {
    const char *at = strstr(cfg_8b, from);
    CHECKF(at != NULL, "line %d: '%s' not in the config", line, from);
    if (!at) return;
    size_t n = strlen(cfg_8b) + strlen(to) + 1;
    char *json = malloc(n);
    snprintf(json, n, "%.*s%s%s", (int)(at - cfg_8b), cfg_8b, to, at + strlen(from));
    herd_config c;
    memset(&c, 0x5a, sizeof c);
    herd_status got = parse(&c, json);
    CHECKF((int)got == st, "line %d: status %d, expected %d: %s", line, got, st, err.msg);
    CHECKF(strstr(err.msg, "config.json") != NULL, "line %d: no file name: %s", line, err.msg);
    CHECKF(!w1 || strstr(err.msg, w1), "line %d: message lacks '%s': %s", line, w1, err.msg);
    CHECKF(!w2 || strstr(err.msg, w2), "line %d: message lacks '%s': %s", line, w2, err.msg);
    CHECKF(((unsigned char *)&c)[0] == 0x5a, "line %d: config changed on failure", line);
    free(json);
}
#define FAIL(from, to, st, w1, w2) expect_fail(from, to, st, w1, w2, __LINE__)

static void test_8b(void) {
    herd_config c;
    CHECKF(parse(&c, cfg_8b) == HERD_OK, "%s", err.msg);
    CHECK(c.dim == 4096 && c.ffn_dim == 14336 && c.n_layers == 32 && c.n_heads == 32);
    CHECK(c.n_kv_heads == 8 && c.head_dim == 128 && c.vocab_size == 128256);
    CHECK(c.max_seq_len == 131072 && c.norm_eps == 1e-5f && c.rope_theta == 500000.0f);
    CHECK(c.rope_scaling == 1 && c.rope_factor == 8.0f && c.rope_low_freq_factor == 1.0f);
    CHECK(c.rope_high_freq_factor == 4.0f && c.rope_orig_max_pos == 8192);
    CHECK(c.tie_embeddings == 0 && c.bos_id == 128000);
    CHECK(c.n_eos == 3 && c.eos_ids[0] == 128001 && c.eos_ids[1] == 128008 && c.eos_ids[2] == 128009);
    CHECK(c.default_temperature < 0 && c.default_top_p < 0 && c.default_top_k < 0);
    CHECKF(hf_generation_config_parse(&c, gen_8b, strlen(gen_8b), "generation_config.json", &err) ==
           HERD_OK, "%s", err.msg);
    CHECK(c.default_temperature == 0.6f && c.default_top_p == 0.9f && c.default_top_k < 0);
    CHECK(c.n_eos == 3 && c.bos_id == 128000);

    CHECKF(parse(&c, cfg_1b) == HERD_OK, "%s", err.msg);
    CHECK(c.dim == 2048 && c.head_dim == 64 && c.n_layers == 16 && c.tie_embeddings == 1);
    CHECK(c.rope_factor == 32.0f && c.n_eos == 1 && c.eos_ids[0] == 128001);
}

static void test_defaults(void) {
    herd_config c;
    const char *minimal = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                          " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 256,"
                          " \"rope_scaling\": null, \"bos_token_id\": null}";
    CHECKF(parse(&c, minimal) == HERD_OK, "%s", err.msg);
    CHECK(c.n_kv_heads == 4 && c.head_dim == 16 && c.rope_theta == 10000.0f && c.rope_scaling == 0);
    CHECK(c.norm_eps == 1e-6f && c.max_seq_len == 2048 && c.tie_embeddings == 0);
    const char *legacy = "{\"architectures\": [\"Foo\", \"LlamaForCausalLM\"], \"hidden_size\": 64, "
                         "\"intermediate_size\": 128, \"num_hidden_layers\": 2, "
                         "\"num_attention_heads\": 4, \"vocab_size\": 256, \"rope_scaling\": "
                         "{\"type\": \"llama3\", \"factor\": 8, \"low_freq_factor\": 1, "
                         "\"high_freq_factor\": 4, \"original_max_position_embeddings\": 64}}";
    CHECKF(parse(&c, legacy) == HERD_OK, "%s", err.msg);
    CHECK(c.rope_scaling == 1 && c.rope_orig_max_pos == 64);
    const char *dflt = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                       " \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"vocab_size\": 256,"
                       " \"rope_scaling\": {\"rope_type\": \"default\"}}";
    CHECKF(parse(&c, dflt) == HERD_OK && c.rope_scaling == 0, "%s", err.msg);
}

static void test_rejects(void) {
    FAIL("\"hidden_size\": 4096,", "", HERD_ERR_FORMAT, "'hidden_size' is missing", NULL);
    FAIL("\"num_hidden_layers\": 32,", "", HERD_ERR_FORMAT, "'num_hidden_layers' is missing", NULL);
    FAIL("\"vocab_size\": 128256", "\"x\": 1", HERD_ERR_FORMAT, "'vocab_size' is missing", NULL);
    FAIL("\"intermediate_size\": 14336", "\"intermediate_size\": \"14336\"", HERD_ERR_FORMAT,
         "'intermediate_size' is a string", "expected an integer");
    FAIL("\"hidden_size\": 4096", "\"hidden_size\": 4096.5", HERD_ERR_FORMAT, "'hidden_size' is 4096.5", NULL);
    FAIL("\"hidden_size\": 4096", "\"hidden_size\": 0", HERD_ERR_FORMAT, "'hidden_size' is 0",
         "1..1048576");
    FAIL("\"hidden_size\": 4096", "\"hidden_size\": -4096", HERD_ERR_FORMAT, "hidden_size", NULL);
    FAIL("\"hidden_size\": 4096", "\"hidden_size\": 1e300", HERD_ERR_FORMAT, "hidden_size", NULL);
    FAIL("\"num_key_value_heads\": 8", "\"num_key_value_heads\": 6", HERD_ERR_FORMAT,
         "num_attention_heads (32) must be a multiple of num_key_value_heads (6)", NULL);
    FAIL("\"num_key_value_heads\": 8", "\"num_key_value_heads\": [8]", HERD_ERR_FORMAT, "an array", NULL);
    FAIL("\"hidden_size\": 4096", "\"hidden_size\": 4095", HERD_ERR_FORMAT, "not a multiple", NULL);
    FAIL("\"hidden_size\": 4096", "\"head_dim\": 127, \"hidden_size\": 4096", HERD_ERR_FORMAT,
         "head_dim is 127", "even");
    FAIL("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 0", HERD_ERR_FORMAT, "'rms_norm_eps' is 0", NULL);
    FAIL("\"rope_theta\": 500000.0", "\"rope_theta\": -1", HERD_ERR_FORMAT, "rope_theta", NULL);
    /* > 0 as a double, 0 as the float it is kept in (fuzz_config) */
    FAIL("\"rms_norm_eps\": 1e-05", "\"rms_norm_eps\": 1e-105", HERD_ERR_FORMAT, "'rms_norm_eps' is 1e-105",
         "32-bit float");
    FAIL("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": 0", HERD_ERR_FORMAT,
         "'tie_word_embeddings' is a number", "true or false");
    FAIL("\"hidden_act\": \"silu\"", "\"hidden_act\": \"gelu\"", HERD_ERR_UNSUPPORTED, "hidden_act is 'gelu'", NULL);
    FAIL("\"attention_bias\": false", "\"attention_bias\": true", HERD_ERR_UNSUPPORTED, "'attention_bias' is true", NULL);
    FAIL("\"mlp_bias\": false", "\"mlp_bias\": true", HERD_ERR_UNSUPPORTED, "mlp_bias", NULL);
    FAIL("\"rope_type\": \"llama3\"", "\"rope_type\": \"yarn\"", HERD_ERR_UNSUPPORTED,
         "rope_scaling type 'yarn' is not supported", NULL);
    FAIL("\"rope_type\": \"llama3\"", "\"x\": 1", HERD_ERR_FORMAT, "rope_type", NULL);
    FAIL("\"factor\": 8.0,", "", HERD_ERR_FORMAT, "'rope_scaling.factor' is missing", NULL);
    FAIL("\"factor\": 8.0,", "\"factor\": \"8\",", HERD_ERR_FORMAT, "'rope_scaling.factor' is a string", NULL);
    FAIL("\"factor\": 8.0,", "\"factor\": 0,", HERD_ERR_FORMAT, "'rope_scaling.factor' is 0", NULL);
    FAIL("\"high_freq_factor\": 4.0,", "\"high_freq_factor\": 1.0,", HERD_ERR_FORMAT,
         "high_freq_factor (1) must be greater than low_freq_factor (1)", NULL);
    FAIL("\"original_max_position_embeddings\": 8192,", "\"original_max_position_embeddings\": -1,",
         HERD_ERR_FORMAT, "rope_scaling.original_max_position_embeddings", NULL);
    FAIL("\"rope_scaling\": {", "\"rope_scaling\": 3, \"x\": {", HERD_ERR_FORMAT,
         "'rope_scaling' is a number", NULL);
    FAIL("128001,\n    128008,", "128001, 128008, 1, 2, 3, 4, 5, 6,", HERD_ERR_FORMAT, "has 9 ids", NULL);
    FAIL("128001,", "200000,", HERD_ERR_FORMAT, "eos_token_id entry 0", "0..128255");
    FAIL("\"eos_token_id\": [", "\"eos_token_id\": \"x\", \"y\": [", HERD_ERR_FORMAT, "eos_token_id", NULL);
    FAIL("\"bos_token_id\": 128000", "\"bos_token_id\": 128256", HERD_ERR_FORMAT, "bos_token_id", NULL);
    FAIL("{", "[", HERD_ERR_FORMAT, "not a JSON object", NULL);

    herd_config c;
    const char *mistral = "{\"architectures\": [\"MistralForCausalLM\"], \"model_type\": \"mistral\"}";
    CHECK(parse(&c, mistral) == HERD_ERR_UNSUPPORTED && strstr(err.msg, "unknown architecture 'MistralForCausalLM'"));
    CHECK(parse(&c, "{\"model_type\": \"gpt2\"}") == HERD_ERR_UNSUPPORTED && strstr(err.msg, "'gpt2'"));
    CHECK(parse(&c, "{}") == HERD_ERR_UNSUPPORTED && strstr(err.msg, "(none given)"));
    /* every prefix of the real config is an error, never a crash */
    size_t n = strlen(cfg_8b);
    for (size_t k = 0; k + 2 < n; k++) {
        char *p = malloc(k ? k : 1);
        memcpy(p, cfg_8b, k);
        herd_status st = hf_config_parse(&c, p, k, "config.json", &err);
        CHECKF(st != HERD_OK, "prefix %zu parsed", k);
        free(p);
    }

    /* generation config */
    herd_config g;
    CHECK(parse(&g, cfg_8b) == HERD_OK);
    const char *bad[] = { "{\"temperature\": -1}", "{\"top_p\": 1.5}", "{\"top_p\": 0}",
                          "{\"top_k\": -3}", "{\"top_k\": 2.5}", "{\"temperature\": \"hot\"}",
                          "{\"eos_token_id\": []}", "{\"do_sample\": 1}", "[]", "{\"top_p\":" };
    const char *word[] = { "temperature", "top_p", "top_p", "top_k", "top_k", "a string",
                           "0 ids", "do_sample", "not a JSON object", "not a JSON object" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        herd_config before = g;
        herd_status st = hf_generation_config_parse(&g, bad[i], strlen(bad[i]), "gen.json", &err);
        CHECKF(st == HERD_ERR_FORMAT && strstr(err.msg, word[i]) && strstr(err.msg, "gen.json"),
               "%s -> %d %s", bad[i], st, err.msg);
        CHECK(memcmp(&before, &g, sizeof g) == 0);
    }
    const char *greedy = "{\"do_sample\": false, \"temperature\": 0.7, \"top_k\": 50, \"eos_token_id\": 128009}";
    CHECK(hf_generation_config_parse(&g, greedy, strlen(greedy), "gen.json", &err) == HERD_OK);
    CHECK(g.default_temperature == 0 && g.default_top_k == 50 && g.n_eos == 1 && g.eos_ids[0] == 128009);
}

static char *slurp(const char *path, size_t *n) {
    char *t = NULL;
    if (herd_read_file(path, &t, n, &err) != HERD_OK) return NULL;
    return t;
}

static void test_write(void) {
    char dir[] = "/tmp/herd_test_cfg_XXXXXX";
    if (!mkdtemp(dir)) { CHECK(0); return; }
    char p1[64], p2[64];
    snprintf(p1, sizeof p1, "%s/config.json", dir);
    snprintf(p2, sizeof p2, "%s/generation_config.json", dir);
    const char *srcs[] = { cfg_8b, cfg_1b };
    for (int k = 0; k < 2; k++) {
        herd_config a, b;
        CHECK(parse(&a, srcs[k]) == HERD_OK);
        CHECK(hf_generation_config_parse(&a, gen_8b, strlen(gen_8b), "g", &err) == HERD_OK);
        if (k == 1) a.default_top_k = 40;
        CHECKF(hf_config_write(&a, p1, &err) == HERD_OK, "%s", err.msg);
        CHECKF(hf_generation_config_write(&a, p2, &err) == HERD_OK, "%s", err.msg);
        size_t n1, n2;
        char *t1 = slurp(p1, &n1), *t2 = slurp(p2, &n2);
        CHECK(t1 && t2);
        if (!t1 || !t2) { free(t1); free(t2); continue; }
        CHECK(strstr(t1, "\"rope_theta\": 500000.0,") && strstr(t1, "\"rms_norm_eps\": 1e-05,"));
        CHECK(strstr(t1, "\"torch_dtype\": \"bfloat16\"") && strstr(t1, "\"model_type\": \"llama\""));
        CHECK(strstr(t1, "\"rope_type\": \"llama3\"") && strstr(t2, "\"temperature\": 0.6,"));
        CHECK(strstr(t1, k ? "\"tie_word_embeddings\": true" : "\"tie_word_embeddings\": false"));
        CHECKF(hf_config_parse(&b, t1, n1, p1, &err) == HERD_OK, "%s\n%s", err.msg, t1);
        CHECKF(hf_generation_config_parse(&b, t2, n2, p2, &err) == HERD_OK, "%s\n%s", err.msg, t2);
        CHECKF(memcmp(&a, &b, sizeof a) == 0, "round trip %d differs:\n%s\n%s", k, t1, t2);
        free(t1);
        free(t2);
    }
    /* no rope scaling, greedy, odd floats */
    herd_config a, b;
    CHECK(parse(&a, cfg_8b) == HERD_OK);
    a.rope_scaling = 0;
    a.rope_theta = 10000.0f;
    a.norm_eps = 1.2345e-6f;
    a.default_temperature = 0;
    CHECK(hf_config_write(&a, p1, &err) == HERD_OK && hf_generation_config_write(&a, p2, &err) == HERD_OK);
    size_t n1, n2;
    char *t1 = slurp(p1, &n1), *t2 = slurp(p2, &n2);
    if (t1 && t2) {
        CHECK(strstr(t1, "\"rope_scaling\": null") && strstr(t2, "\"do_sample\": false"));
        CHECK(hf_config_parse(&b, t1, n1, p1, &err) == HERD_OK);
        CHECK(hf_generation_config_parse(&b, t2, n2, p2, &err) == HERD_OK);
        CHECK(b.rope_scaling == 0 && b.rope_theta == 10000.0f && b.norm_eps == 1.2345e-6f);
        CHECK(b.default_temperature == 0);
    }
    free(t1);
    free(t2);
    CHECK(hf_config_write(&a, "/nonexistent/dir/config.json", &err) == HERD_ERR_IO);
    unlink(p1);
    unlink(p2);
    rmdir(dir);
}

int main(void) {
    test_8b();
    test_defaults();
    test_rejects();
    test_write();
    TEST_MAIN_END("test_hfconfig");
}
