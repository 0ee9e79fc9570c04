/* fuzz_api.c - libFuzzer target for the server's request parsing and tool-call
 * reading (src/server/parse.c, toolcall.c), which take bytes from the network and
 * from the model:
 *   - the input as a /v1/chat/completions, /v1/completions, /v1/responses and /v1/embeddings body: either a
 *     request whose fields are in range (sampling values, a prompt of valid ids
 *     that fits the context with its max_tokens, stop strings), or an error status
 *     with an OpenAI error object {"error": {"message", ...}} as the body;
 *   - the input as a /tokenize and a /detokenize body: ids in the vocabulary and
 *     their count, a string, or an error object;
 *   - the input as a model reply: tc_parse gives calls with a name and a JSON
 *     object of arguments (tc_to_openai renders them), or none.
 * A violated invariant traps. The model behind the API is a stand-in: a small
 * vocabulary (herd_tokenizer_from_tokens) and a config; nothing else is touched.
 * Seeds: fuzz/corpus/fuzz_api/. Build: make fuzz; run:
 * build-fuzz/fuzz_api fuzz/corpus/fuzz_api -max_total_time=60 */
#include "server/server.h"
#include "tokenizer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { N_CTX = 256 };
static herd_tokenizer *tok;
static herd_json_vocab *jvocab;
static herd_config cfg;

/* parse.c reaches the model only through these two */
const herd_config *herd_model_config(const herd_model *m) { (void)m; return &cfg; }
const herd_tokenizer *herd_model_tokenizer(const herd_model *m) { (void)m; return tok; }
/* adapters.c (linked for req_release) frees adapters; this target serves none */
void herd_lora_free(herd_lora *l) {
    if (l) __builtin_trap();
}

/* An OpenAI error body with a 4xx status. */
static void check_error(int status, const char *body) {
    if (status < 400 || status > 499 || !body) __builtin_trap();
    cJSON *e = cJSON_Parse(body);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(e, "error");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(err, "message");
    if (!cJSON_IsString(msg) || !msg->valuestring[0] || !cJSON_GetObjectItemCaseSensitive(err, "type") ||
        !cJSON_HasObjectItem(err, "param") || !cJSON_HasObjectItem(err, "code"))
        __builtin_trap();
    cJSON_Delete(e);
}

static void check_request(const uint8_t *data, size_t size, int kind) {
    static const int dummy;
    const srv_api api = { (const herd_model *)&dummy, "m", N_CTX, jvocab };
    int status = 0;
    char *body = NULL;
    srv_req *r = api_parse_request(&api, kind, (const char *)data, size, &status, &body);
    if (r) {
        if (status != 200 || body) __builtin_trap();
        const int min_new = !r->echo && kind != REQ_EMBED; /* echo and embeddings: 0 (the prompt alone) */
        if (r->n_prompt < 1 || r->n_prompt >= N_CTX || r->max_tokens < min_new || r->n_prompt + r->max_tokens > N_CTX ||
            (kind == REQ_EMBED && r->max_tokens != 0))
            __builtin_trap(); /* (max_tokens 0 only with echo: the prompt scored) */
        if (r->n_choices < 1 || r->n_choices > SRV_MAX_INPUTS || r->n_inputs < 1 || r->per_input < 1 ||
            r->per_input > SRV_MAX_CHOICES || r->n_choices != r->n_inputs * r->per_input ||
            (r->echo && kind != REQ_COMPLETION))
            __builtin_trap();
        if (r->top_k < 0 || !(r->min_p >= 0 && r->min_p <= 1) || r->n_bias < 0 || r->n_bias > SRV_MAX_BIAS)
            __builtin_trap();
        if (r->min_tokens < 0 || r->n_stop_ids < 0 || r->n_stop_ids > SRV_MAX_STOP_IDS)
            __builtin_trap();
        for (int i = 0; i < r->n_stop_ids; i++)
            if (r->stop_ids[i] < 0 || r->stop_ids[i] >= cfg.vocab_size) __builtin_trap();
        for (int i = 0; i < r->n_bias; i++) /* logit_bias: ids in the vocabulary, biases in range */
            if (r->bias[i].id < 0 || r->bias[i].id >= cfg.vocab_size || !(fabsf(r->bias[i].v) <= 100))
                __builtin_trap();
        for (int k = 0; r->inputs && k < r->n_inputs; k++) { /* each prompt fits with its answer */
            const srv_input *in = &r->inputs[k];
            if (in->n < 1 || in->max_tokens < min_new || in->n + in->max_tokens > N_CTX) __builtin_trap();
            for (int i = 0; i < in->n; i++)
                if (in->ids[i] < 0 || in->ids[i] >= cfg.vocab_size) __builtin_trap();
        }
        for (int i = 0; i < r->n_prompt; i++)
            if (r->prompt[i] < 0 || r->prompt[i] >= cfg.vocab_size) __builtin_trap();
        if (!(r->temperature >= 0 && r->temperature <= 2) || !(r->top_p > 0 && r->top_p <= 1) ||
            !(r->freq_penalty >= -2 && r->freq_penalty <= 2) || !(r->pres_penalty >= -2 && r->pres_penalty <= 2))
            __builtin_trap();
        if (r->n_stops < 0 || r->n_stops > SRV_MAX_STOPS || r->top_logprobs < 0 || r->top_logprobs > 20) __builtin_trap();
        for (int i = 0; i < r->n_stops; i++)
            if (!r->stops[i] || !r->stops[i][0]) __builtin_trap();
        req_release(r);
        return;
    }
    check_error(status, body);
    free(body);
}

/* The input as a /tokenize and a /detokenize body: ids in the vocabulary and
 * their count, a string, or an error. */
static void check_tokenize(const uint8_t *data, size_t size) {
    static const int dummy;
    const srv_api api = { (const herd_model *)&dummy, "m", N_CTX, jvocab };
    for (int k = 0; k < 2; k++) {
        int status = 0;
        char *b = (k ? api_detokenize : api_tokenize)(&api, (const char *)data, size, &status);
        if (!b) __builtin_trap();
        if (status != 200) {
            check_error(status, b);
        } else {
            cJSON *o = cJSON_Parse(b);
            if (k) {
                if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "prompt"))) __builtin_trap();
            } else {
                const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "tokens"), *x;
                const cJSON *count = cJSON_GetObjectItemCaseSensitive(o, "count");
                if (!cJSON_IsArray(ids) || !cJSON_IsNumber(count) || count->valueint != cJSON_GetArraySize(ids))
                    __builtin_trap();
                cJSON_ArrayForEach(x, ids)
                    if (!cJSON_IsNumber(x) || x->valueint < 0 || x->valueint >= cfg.vocab_size) __builtin_trap();
            }
            cJSON_Delete(o);
        }
        free(b);
    }
}

static void check_reply(const uint8_t *data, size_t size) {
    tc_call *calls = NULL;
    const int n = tc_parse((const char *)data, size, &calls);
    if (n < 0 || (n == 0) != (calls == NULL)) __builtin_trap();
    for (int i = 0; i < n; i++) {
        if (!calls[i].name || !calls[i].name[0] || !calls[i].arguments) __builtin_trap();
        cJSON *a = cJSON_Parse(calls[i].arguments);
        if (!cJSON_IsObject(a)) __builtin_trap();
        cJSON_Delete(a);
    }
    if (n > 0) {
        if (!tc_maybe_call((const char *)data, size)) __builtin_trap(); /* a call was possible all along */
        for (int streaming = 0; streaming < 2; streaming++) {
            cJSON *j = tc_to_openai(calls, n, "fuzz", streaming);
            if (cJSON_GetArraySize(j) != n) __builtin_trap();
            cJSON_Delete(j);
        }
    }
    tc_free(calls, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok) {
        static const char *const toks[] = { "ab", "cd", "abcd", " a", "aa", "{\"", "\":", "name", "()", "\n\n" };
        size_t lens[10];
        for (int i = 0; i < 10; i++) lens[i] = strlen(toks[i]);
        herd_error err;
        if (herd_tokenizer_from_tokens(&tok, toks, lens, 10, &err) != HERD_OK) __builtin_trap();
        memset(&cfg, 0, sizeof cfg);
        cfg.vocab_size = herd_tokenizer_n_vocab(tok);
        cfg.max_seq_len = N_CTX;
        cfg.bos_id = herd_tokenizer_special_id(tok, "<|begin_of_text|>");
        cfg.n_eos = 1;
        cfg.eos_ids[0] = herd_tokenizer_special_id(tok, "<|eot_id|>");
        cfg.default_temperature = -1;
        if (herd_json_vocab_new(&jvocab, tok, cfg.eos_ids, cfg.n_eos, &err)) __builtin_trap();
    }
    check_request(data, size, REQ_CHAT);
    check_request(data, size, REQ_COMPLETION);
    check_request(data, size, REQ_RESPONSE);
    check_request(data, size, REQ_EMBED);
    check_tokenize(data, size);
    check_reply(data, size);
    return 0;
}
