/* parse.c - request bodies -> srv_req, every field checked, errors as OpenAI
 * error objects {"error": {"message", "type", "param", "code"}}; and the bodies of
 * /tokenize and /detokenize. No model work happens here except tokenizing the
 * prompt and compiling a response_format's grammar.
 *
 * Sampling fields: temperature (0..2; 0 = greedy), top_p (0..1], seed,
 * frequency_penalty / presence_penalty (-2..2, OpenAI's definition over the
 * generated tokens), logit_bias, and vLLM's top_k, min_p, ignore_eos, min_tokens,
 * stop_token_ids. Defaults: the model's generation_config.json, else temperature
 * 0.6 / top_p 0.9 (Meta's). n (1 .. SRV_MAX_CHOICES) choices run as sequences of
 * their own (choice i samples with seed + i) and answer as one response
 * (req_choice, the front); best_of > 1 is not supported (400). Completions echo
 * puts the prompt before the answer, with logprobs the prompt tokens' too (the
 * first null), and allows max_tokens 0 (the prompt scored, nothing generated); a
 * list of prompts gets n choices each (at most SRV_MAX_INPUTS in all).
 * tool_choice "none" drops the tools; "required" or a named function makes the
 * answer a call (a grammar, json_grammar.c); response_format / guided_json /
 * guided_choice constrain the answer likewise, one of them at most.
 */
#include "server/server.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- errors --------------------------------------------------------------------- */

char *api_error_json(const char *message, const char *type, const char *param, const char *code) {
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddStringToObject(e, "type", type ? type : "invalid_request_error");
    if (param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    if (code) cJSON_AddStringToObject(e, "code", code);
    else cJSON_AddNullToObject(e, "code");
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!s) abort();
    return s;
}

typedef struct {
    int status;
    char msg[600];
    const char *param, *code;
} perr;

static int fail(perr *e, int status, const char *param, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(perr *e, int status, const char *param, const char *code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->status = status;
    e->param = param;
    e->code = code;
    return -1;
}

static const char *type_name(const cJSON *x) {
    return cJSON_IsString(x) ? "a string" : cJSON_IsNumber(x) ? "a number" : cJSON_IsBool(x) ? "a boolean"
         : cJSON_IsArray(x) ? "an array" : cJSON_IsObject(x) ? "an object" : "null";
}

/* Optional number field in [lo, hi]; absent or null keeps *v. */
static int get_num(const cJSON *root, const char *name, double lo, double hi, double *v, perr *e) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!x || cJSON_IsNull(x)) return 0;
    if (!cJSON_IsNumber(x))
        return fail(e, 400, name, "invalid_type", "Invalid type for '%s': expected a number, but got %s "
                    "instead.", name, type_name(x));
    if (!(x->valuedouble >= lo && x->valuedouble <= hi))
        return fail(e, 400, name, "invalid_value", "Invalid '%s': expected a value in [%g, %g], but got "
                    "%g instead.", name, lo, hi, x->valuedouble);
    *v = x->valuedouble;
    return 0;
}

static int get_int(const cJSON *root, const char *name, double lo, double hi, double *v, perr *e) {
    double d = *v;
    if (get_num(root, name, lo, hi, &d, e)) return -1;
    if (d != (double)(long long)d)
        return fail(e, 400, name, "invalid_type", "Invalid type for '%s': expected an integer, but got "
                    "%g instead.", name, d);
    *v = d;
    return 0;
}

static int get_bool(const cJSON *root, const char *name, int *v, perr *e) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!x || cJSON_IsNull(x)) return 0;
    if (!cJSON_IsBool(x))
        return fail(e, 400, name, "invalid_type", "Invalid type for '%s': expected a boolean, but got %s "
                    "instead.", name, type_name(x));
    *v = cJSON_IsTrue(x);
    return 0;
}

/* ---- request parsing ------------------------------------------------------------- */

static uint64_t splitmix(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fresh_random(void) {
    static uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) * 0x2545F4914F6CDD1Dull ^
                 (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32);
    return splitmix(&x);
}

static int parse_stop(const cJSON *root, srv_req *r, perr *e) {
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(root, "stop");
    if (!x || cJSON_IsNull(x)) return 0;
    if (cJSON_IsString(x)) x = x; /* one string */
    else if (!cJSON_IsArray(x))
        return fail(e, 400, "stop", "invalid_type", "Invalid type for 'stop': expected a string or an "
                    "array of strings, but got %s instead.", type_name(x));
    if (cJSON_IsArray(x) && cJSON_GetArraySize(x) > SRV_MAX_STOPS)
        return fail(e, 400, "stop", "invalid_value", "Invalid 'stop': at most %d sequences, got %d.",
                    SRV_MAX_STOPS, cJSON_GetArraySize(x));
    const cJSON *s;
    if (cJSON_IsString(x)) {
        if (x->valuestring[0]) r->stops[r->n_stops++] = strdup(x->valuestring);
        return 0;
    }
    cJSON_ArrayForEach(s, x) {
        if (!cJSON_IsString(s))
            return fail(e, 400, "stop", "invalid_type", "Invalid type for 'stop[%d]': expected a string, "
                        "but got %s instead.", r->n_stops, type_name(s));
        if (s->valuestring[0]) r->stops[r->n_stops++] = strdup(s->valuestring);
    }
    return 0;
}

/* tools, and tool_choice: *forced NULL (auto), "" (required: some tool) or the
 * name of the tool that must be called; none drops the tools. */
static int parse_tools(const cJSON *root, const cJSON **tools_out, const char **forced, perr *e) {
    *tools_out = NULL;
    *forced = NULL;
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    if (cJSON_IsNull(tools)) tools = NULL;
    if (tools && !cJSON_IsArray(tools))
        return fail(e, 400, "tools", "invalid_type", "Invalid type for 'tools': expected an array, but got "
                    "%s instead.", type_name(tools));
    int i = 0;
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (!cJSON_IsObject(t) || !cJSON_IsString(ty) || strcmp(ty->valuestring, "function") ||
            !cJSON_IsObject(fn) || !cJSON_IsString(nm))
            return fail(e, 400, "tools", "invalid_value", "Invalid 'tools[%d]': expected {\"type\": "
                        "\"function\", \"function\": {\"name\": string, ...}}.", i);
        i++;
    }
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "tool_choice");
    if (tc && !cJSON_IsNull(tc)) {
        if (cJSON_IsString(tc)) {
            if (!strcmp(tc->valuestring, "none")) return 0;
            if (strcmp(tc->valuestring, "auto") && strcmp(tc->valuestring, "required"))
                return fail(e, 400, "tool_choice", "invalid_value", "Invalid 'tool_choice': expected "
                            "'none', 'auto', 'required' or an object, got '%.40s'.", tc->valuestring);
            if (!strcmp(tc->valuestring, "required")) *forced = "";
        } else if (!cJSON_IsObject(tc)) {
            return fail(e, 400, "tool_choice", "invalid_type", "Invalid type for 'tool_choice': expected "
                        "a string or an object, but got %s instead.", type_name(tc));
        } else {
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(tc, "function"), "name");
            if (!cJSON_IsString(nm))
                return fail(e, 400, "tool_choice", "invalid_value", "Invalid 'tool_choice': expected {\"type\": "
                            "\"function\", \"function\": {\"name\": string}}.");
            *forced = nm->valuestring;
        }
    }
    if (*forced && !i)
        return fail(e, 400, "tool_choice", "invalid_value", "Invalid 'tool_choice': a tool must be called, but "
                    "'tools' names none.");
    if (*forced && **forced) {
        cJSON_ArrayForEach(t, tools) /* each has function.name (checked above) */
            if (!strcmp(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(t, "function"), "name")
                            ->valuestring, *forced))
                break;
        if (!t)
            return fail(e, 400, "tool_choice", "invalid_value", "Invalid 'tool_choice': no tool named '%.100s' "
                        "in 'tools'.", *forced);
    }
    if (i) *tools_out = tools;
    return 0;
}

/* tool_choice required or a named tool: the answer is a call, {"name": one of
 * the tools (or the named one), "parameters": of its parameters' schema}, which
 * is Llama 3.1's JSON call (the tool-call reader turns it into tool_calls). */
static int forced_tool_grammar(const srv_api *a, const cJSON *tools, const char *forced, srv_req *r, perr *e) {
    if (r->grammar)
        return fail(e, 400, "tool_choice", "invalid_value", "Invalid 'tool_choice': with 'response_format' "
                    "json_object or json_schema, a tool call cannot be required too.");
    cJSON *any = cJSON_CreateObject(), *alts = cJSON_AddArrayToObject(any, "anyOf");
    const cJSON *t;
    cJSON_ArrayForEach(t, tools) {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const char *name = cJSON_GetObjectItemCaseSensitive(fn, "name")->valuestring;
        if (*forced && strcmp(name, forced)) continue;
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
        cJSON *call = cJSON_CreateObject(), *props = cJSON_AddObjectToObject(call, "properties");
        cJSON_AddStringToObject(call, "type", "object");
        cJSON_AddStringToObject(cJSON_AddObjectToObject(props, "name"), "const", name);
        if (cJSON_IsObject(params)) cJSON_AddItemToObject(props, "parameters", cJSON_Duplicate(params, 1));
        else cJSON_AddStringToObject(cJSON_AddObjectToObject(props, "parameters"), "type", "object");
        cJSON *req = cJSON_AddArrayToObject(call, "required");
        cJSON_AddItemToArray(req, cJSON_CreateString("name"));
        cJSON_AddItemToArray(req, cJSON_CreateString("parameters"));
        cJSON_AddItemToArray(alts, call);
    }
    char *schema = cJSON_PrintUnformatted(any);
    cJSON_Delete(any);
    if (!schema) abort();
    herd_error err;
    herd_status st = herd_json_grammar_new(&r->grammar, a->json_vocab, schema, &err);
    free(schema);
    if (st == HERD_ERR_NOMEM) abort();
    if (st) /* the message's path is inside the call: #/anyOf/i/properties/parameters/... */
        return fail(e, 400, "tools", "invalid_value", "Invalid 'tools' for tool_choice '%.100s': a function's "
                    "'parameters' must be a schema herd can keep the call to: %s.", *forced ? forced : "required",
                    err.msg);
    return 0;
}

static int chat_prompt(const srv_api *a, const cJSON *root, srv_req *r, perr *e) {
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!msgs) return fail(e, 400, "messages", "missing_required_parameter", "Missing required parameter: "
                           "'messages'.");
    if (!cJSON_IsArray(msgs))
        return fail(e, 400, "messages", "invalid_type", "Invalid type for 'messages': expected an array, "
                    "but got %s instead.", type_name(msgs));
    if (cJSON_GetArraySize(msgs) == 0)
        return fail(e, 400, "messages", "empty_array", "Invalid 'messages': empty array. Expected an array "
                    "with minimum length 1.");
    const cJSON *tools;
    const char *forced;
    if (parse_tools(root, &tools, &forced, e)) return -1;
    if (r->grammar) r->tools = 0; /* response_format: the answer is the schema's JSON, not a call */
    else r->tools = tools != NULL;
    if (forced && forced_tool_grammar(a, tools, forced, r, e)) return -1;
    herd_chat_message *m;
    size_t n;
    herd_error err;
    if (tc_build_messages(msgs, tools, &m, &n, &err))
        return fail(e, 400, "messages", "invalid_value", "%s", err.msg);
    size_t n_ids;
    herd_status st = herd_chat_render(herd_model_tokenizer(a->model), m, n, 1, &r->prompt, &n_ids, &err);
    herd_chat_messages_free(m, n);
    if (st) return fail(e, 400, "messages", "invalid_value", "%s", err.msg);
    r->n_prompt = (int)n_ids;
    return 0;
}

/* One prompt p (a string, tokenized with BOS, or token ids) into *ids / *n; *bos:
 * the BOS was added. name: the field ("prompt", embeddings' "input"); k: its
 * place in a list (-1: the only one), for messages. */
static int one_prompt(const srv_api *a, const char *name, const cJSON *p, int k, int32_t **ids, int *n, int *bos,
                      perr *e) {
    const herd_tokenizer *t = herd_model_tokenizer(a->model);
    char where[32];
    if (k >= 0) snprintf(where, sizeof where, "%s[%d]", name, k);
    else snprintf(where, sizeof where, "%s", name);
    *bos = 0;
    if (cJSON_IsString(p)) {
        size_t len;
        herd_error err;
        if (herd_tokenize(t, p->valuestring, strlen(p->valuestring), 1, 0, ids, &len, &err))
            return fail(e, 400, name, "invalid_value", "Invalid '%s': %s", where, err.msg);
        *n = (int)len;
        *bos = len > 0 && (*ids)[0] == herd_model_config(a->model)->bos_id;
        return 0;
    }
    int len = cJSON_GetArraySize(p), V = herd_tokenizer_n_vocab(t);
    if (!cJSON_IsArray(p) || len == 0 || !cJSON_IsNumber(p->child))
        return fail(e, 400, name, "invalid_value", "Invalid '%s': expected a string or an array of token "
                    "ids.", where);
    *ids = malloc((size_t)len * sizeof **ids);
    if (!*ids) abort();
    *n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, p) {
        if (!cJSON_IsNumber(x) || x->valuedouble < 0 || x->valuedouble >= V || x->valuedouble != (int)x->valuedouble)
            return fail(e, 400, name, "invalid_value", "Invalid '%s[%d]': token ids are integers in "
                        "[0, %d).", where, *n, V);
        (*ids)[(*n)++] = (int32_t)x->valuedouble;
    }
    return 0;
}

/* prompt: one (a string, or token ids), or a list of them (strings, or arrays of
 * ids), each answered by n choices of its own (indexes prompt x n + choice). A list
 * of one is that prompt. */
static int completion_prompt(const srv_api *a, const char *name, const cJSON *root, srv_req *r, perr *e) {
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!p) return fail(e, 400, name, "missing_required_parameter", "Missing required parameter: '%s'.", name);
    const int list = cJSON_IsArray(p) && cJSON_GetArraySize(p) > 0 && !cJSON_IsNumber(p->child);
    if (!list || cJSON_GetArraySize(p) == 1) {
        if (list) p = p->child;
        r->n_inputs = 1;
        return one_prompt(a, name, p, -1, &r->prompt, &r->n_prompt, &r->bos_added, e);
    }
    const int k = cJSON_GetArraySize(p);
    if (k * r->n_choices > SRV_MAX_INPUTS)
        return fail(e, 400, name, "invalid_value", "Invalid '%s': %d prompts with n = %d make %d choices; at "
                    "most %d in one request.", name, k, r->n_choices, k * r->n_choices, SRV_MAX_INPUTS);
    if (!(r->inputs = calloc((size_t)k, sizeof *r->inputs))) abort();
    r->n_inputs = k;
    int i = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, p) {
        srv_input *in = &r->inputs[i];
        if (one_prompt(a, name, x, i, &in->ids, &in->n, &in->bos_added, e)) return -1;
        i++;
    }
    /* the request's own prompt: the longest (its checks below then hold for all) */
    int longest = 0;
    for (i = 1; i < k; i++) longest = r->inputs[i].n > r->inputs[longest].n ? i : longest;
    r->n_prompt = r->inputs[longest].n;
    r->prompt = malloc((size_t)r->n_prompt * sizeof *r->prompt);
    if (!r->prompt) abort();
    memcpy(r->prompt, r->inputs[longest].ids, (size_t)r->n_prompt * sizeof *r->prompt);
    return 0;
}

/* The body's "model" must be the served one or one of its adapters (required: it
 * must be there; else absent or null is fine); r (may be NULL) gets which. */
static int check_model(const srv_api *a, const cJSON *root, int required, perr *e, srv_req *r) {
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (!model && required)
        return fail(e, 400, "model", "missing_required_parameter", "Missing required parameter: 'model'.");
    if (!model || (!required && cJSON_IsNull(model))) return 0;
    if (!cJSON_IsString(model))
        return fail(e, 400, "model", "invalid_type", "Invalid type for 'model': expected a string, but got %s "
                    "instead.", type_name(model));
    if (!strcmp(model->valuestring, a->model_id)) return 0;
    if (a->adapters) { /* a request holds its adapter until it is freed (req_release) */
        const int i = adapters_ref(a->adapters, model->valuestring, r ? &r->lora : NULL, r ? &r->model_id : NULL);
        if (i >= 0 && !r) adapters_unref(a->adapters, i);
        if (i >= 0 && r) r->model_index = i + 1, r->adapters = a->adapters;
        if (i >= 0) return 0;
    }
    return fail(e, 404, "model", "model_not_found", "The model '%.100s' does not exist; this server "
                "serves '%s'%s (GET /v1/models lists them).", model->valuestring, a->model_id,
                a->adapters ? " and its LoRA adapters" : "");
}

/* A request's grammar was made (st, err): a schema or choices herd cannot keep
 * to are a 400 on param. */
static int grammar_made(herd_status st, const herd_error *err, const char *param, perr *e) {
    if (st == HERD_ERR_NOMEM) abort();
    if (st) return fail(e, 400, param, "invalid_value", "Invalid '%s': %s.", param, err->msg);
    return 0;
}

/* response_format: text (or none), json_object (any JSON object) or json_schema
 * ({"name", "schema", "strict"}): the latter two become a grammar that sampling
 * keeps to (herd_json_grammar; its refusals of a schema are 400s). */
static int response_format(const srv_api *a, const cJSON *root, srv_req *r, perr *e) {
    const cJSON *rf = cJSON_GetObjectItemCaseSensitive(root, "response_format");
    if (!rf || cJSON_IsNull(rf)) return 0;
    const cJSON *rt = cJSON_GetObjectItemCaseSensitive(rf, "type");
    if (!cJSON_IsObject(rf) || !cJSON_IsString(rt))
        return fail(e, 400, "response_format", "invalid_type", "Invalid 'response_format': expected an object "
                    "with a 'type' ('text', 'json_object' or 'json_schema').");
    const char *type = rt->valuestring;
    if (!strcmp(type, "text")) return 0;
    char *schema = NULL;
    if (!strcmp(type, "json_schema")) {
        const cJSON *js = cJSON_GetObjectItemCaseSensitive(rf, "json_schema");
        const cJSON *sc = cJSON_GetObjectItemCaseSensitive(js, "schema");
        if (!cJSON_IsObject(js))
            return fail(e, 400, "response_format.json_schema", "missing_required_parameter", "Missing required "
                        "parameter: 'response_format.json_schema'.");
        if (sc && !cJSON_IsNull(sc) && !(schema = cJSON_PrintUnformatted(sc))) abort();
    } else if (strcmp(type, "json_object")) {
        return fail(e, 400, "response_format.type", "invalid_value", "Invalid 'response_format.type': expected "
                    "'text', 'json_object' or 'json_schema', got '%.40s'.", type);
    }
    herd_error err;
    herd_status st = herd_json_grammar_new(&r->grammar, a->json_vocab, schema, &err);
    free(schema);
    return grammar_made(st, &err, "response_format", e);
}

/* vLLM's guided_json (a JSON Schema: an object or its text) and guided_choice (the
 * answer is exactly one of the strings), chat and completions alike; at most one
 * of them and a JSON response_format. */
static int guided(const srv_api *a, const cJSON *root, srv_req *r, perr *e) {
    const cJSON *gj = cJSON_GetObjectItemCaseSensitive(root, "guided_json");
    const cJSON *gc = cJSON_GetObjectItemCaseSensitive(root, "guided_choice");
    gj = cJSON_IsNull(gj) ? NULL : gj;
    gc = cJSON_IsNull(gc) ? NULL : gc;
    if (!gj && !gc) return 0;
    const char *param = gj ? "guided_json" : "guided_choice";
    if (r->grammar || (gj && gc))
        return fail(e, 400, param, "invalid_value", "Invalid '%s': give at most one of response_format (JSON), "
                    "guided_json and guided_choice.", param);
    herd_error err;
    herd_status st;
    if (gj) {
        char *schema = cJSON_IsString(gj) ? strdup(gj->valuestring) : cJSON_IsObject(gj) ? cJSON_PrintUnformatted(gj)
                                                                                          : NULL;
        if (!schema)
            return fail(e, 400, param, "invalid_type", "Invalid type for 'guided_json': expected a JSON Schema (an "
                        "object, or its text), but got %s instead.", type_name(gj));
        st = herd_json_grammar_new(&r->grammar, a->json_vocab, schema, &err);
        free(schema);
    } else {
        const char *texts[64];
        int n = 0;
        const cJSON *x;
        if (!cJSON_IsArray(gc) || cJSON_GetArraySize(gc) > 64)
            return fail(e, 400, param, "invalid_type", "Invalid 'guided_choice': expected an array of 1 to 64 "
                        "strings.");
        cJSON_ArrayForEach(x, gc) {
            if (!cJSON_IsString(x))
                return fail(e, 400, param, "invalid_type", "Invalid type for 'guided_choice[%d]': expected a "
                            "string, but got %s instead.", n, type_name(x));
            texts[n++] = x->valuestring;
        }
        st = herd_json_grammar_new_choice(&r->grammar, a->json_vocab, texts, n, &err);
    }
    return grammar_made(st, &err, param, e);
}

/* logit_bias: {"token id": bias in [-100, 100], ...}, added to the logits
 * before sampling (-100 all but bans a token, 100 all but forces it). */
static int logit_bias(const srv_api *a, const cJSON *root, srv_req *r, perr *e) {
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(root, "logit_bias");
    if (!lb || cJSON_IsNull(lb)) return 0;
    if (!cJSON_IsObject(lb))
        return fail(e, 400, "logit_bias", "invalid_type", "Invalid type for 'logit_bias': expected an object "
                    "mapping token ids to biases, but got %s instead.", type_name(lb));
    const int n = cJSON_GetArraySize(lb), V = herd_model_config(a->model)->vocab_size;
    if (n > SRV_MAX_BIAS)
        return fail(e, 400, "logit_bias", "invalid_value", "Invalid 'logit_bias': %d tokens; at most %d.", n,
                    SRV_MAX_BIAS);
    if (!n) return 0;
    if (!(r->bias = malloc((size_t)n * sizeof *r->bias))) abort();
    const cJSON *x;
    cJSON_ArrayForEach(x, lb) {
        char *end;
        errno = 0;
        const long id = strtol(x->string, &end, 10);
        if (!x->string[0] || *end || errno || id < 0 || id >= V)
            return fail(e, 400, "logit_bias", "invalid_value", "Invalid 'logit_bias': key '%.40s' is not a token "
                        "id in [0, %d).", x->string, V);
        if (!cJSON_IsNumber(x) || !(x->valuedouble >= -100 && x->valuedouble <= 100))
            return fail(e, 400, "logit_bias", "invalid_value", "Invalid 'logit_bias': the bias of token %ld must "
                        "be a number in [-100, 100].", id);
        r->bias[r->n_bias++] = (struct srv_bias){ (int32_t)id, (float)x->valuedouble };
    }
    return 0;
}

/* stop_token_ids (vLLM): ids in the vocabulary that end the answer. */
static int stop_token_ids(const srv_api *a, const cJSON *root, srv_req *r, perr *e) {
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, "stop_token_ids");
    if (!ids || cJSON_IsNull(ids)) return 0;
    const int V = herd_model_config(a->model)->vocab_size;
    if (!cJSON_IsArray(ids) || cJSON_GetArraySize(ids) > SRV_MAX_STOP_IDS)
        return fail(e, 400, "stop_token_ids", "invalid_value", "Invalid 'stop_token_ids': expected an array of at "
                    "most %d token ids.", SRV_MAX_STOP_IDS);
    const cJSON *x;
    cJSON_ArrayForEach(x, ids) {
        if (!cJSON_IsNumber(x) || x->valuedouble != floor(x->valuedouble) || x->valuedouble < 0 || x->valuedouble >= V)
            return fail(e, 400, "stop_token_ids", "invalid_value", "Invalid 'stop_token_ids[%d]': expected a token "
                        "id in [0, %d).", r->n_stop_ids, V);
        r->stop_ids[r->n_stop_ids++] = (int32_t)x->valuedouble;
    }
    return 0;
}

static int parse_sampling(const srv_api *a, int kind, const cJSON *root, srv_req *r, perr *e);

/* /v1/embeddings: input (a string, ids, or a list of them: one embedding each),
 * encoding_format float or base64, dimensions (only the model's). */
static int embed_fields(const srv_api *a, const cJSON *root, srv_req *r, perr *e) {
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(root, "encoding_format");
    if (fmt && !cJSON_IsNull(fmt)) {
        if (!cJSON_IsString(fmt) || (strcmp(fmt->valuestring, "float") && strcmp(fmt->valuestring, "base64")))
            return fail(e, 400, "encoding_format", "invalid_value", "Invalid 'encoding_format': expected 'float' "
                        "or 'base64'.");
        r->embed_base64 = !strcmp(fmt->valuestring, "base64");
    }
    const int C = herd_model_config(a->model)->dim;
    double dims = C;
    if (get_int(root, "dimensions", 1, 1e9, &dims, e)) return -1;
    if (dims != C)
        return fail(e, 400, "dimensions", "invalid_value", "Invalid 'dimensions': this model's embeddings have %d "
                    "(its hidden size); %.0f is not offered.", C, dims);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(root, "stream");
    if (cJSON_IsTrue(st)) return fail(e, 400, "stream", "invalid_value", "Embeddings are not streamed.");
    return completion_prompt(a, "input", root, r, e);
}

static int parse_fields(const srv_api *a, int kind, const cJSON *root, srv_req *r, perr *e) {
    if (check_model(a, root, 1, e, r)) return -1;
    if (kind == REQ_EMBED) {
        if (embed_fields(a, root, r, e)) return -1;
        r->max_tokens = 0; /* the prompt alone (and a sampler that is never asked) */
        r->temperature = 0, r->top_p = 1;
    } else if (parse_sampling(a, kind, root, r, e)) {
        return -1;
    }
    const double max_tokens = r->max_tokens;
    const char *pparam = kind == REQ_CHAT ? "messages" : kind == REQ_EMBED ? "input" : "prompt";
    if (r->n_prompt >= a->n_ctx)
        return fail(e, 400, pparam, "context_length_exceeded", "This model's maximum context length is %d "
                    "tokens. However, your %s resulted in %d tokens. Please reduce the length of the %s.",
                    a->n_ctx, pparam, r->n_prompt, pparam);
    if (max_tokens > 0 && r->n_prompt + max_tokens > a->n_ctx)
        return fail(e, 400, "max_tokens", "context_length_exceeded", "This model's maximum context length "
                    "is %d tokens. However, you requested %.0f tokens (%d in the %s, %.0f in the completion). "
                    "Please reduce the length of the %s or completion.", a->n_ctx, r->n_prompt + max_tokens,
                    r->n_prompt, pparam, max_tokens, pparam);
    r->max_tokens = max_tokens >= 0 ? (int)max_tokens : a->n_ctx - r->n_prompt;
    r->prompt_total = r->n_prompt;
    if (r->inputs) { /* several prompts: each fills the context when max_tokens is not given */
        r->prompt_total = 0;
        for (int k = 0; k < r->n_inputs; k++) {
            r->inputs[k].max_tokens = max_tokens >= 0 ? (int)max_tokens : a->n_ctx - r->inputs[k].n;
            r->prompt_total += r->inputs[k].n;
        }
    }
    r->per_input = r->n_choices;
    r->n_choices *= r->n_inputs;
    /* the choices' ends gather here (n > 1: choices are requests of their own, req_choice) */
    r->pending = r->n_choices;
    if (!r->stream && !(r->choices = calloc((size_t)r->n_choices, sizeof *r->choices))) abort();
    return 0;
}

/* The sampling and prompt fields of chat and completions; r->max_tokens: the
 * request's (-1: not given). */
static int parse_sampling(const srv_api *a, int kind, const cJSON *root, srv_req *r, perr *e) {
    const herd_config *c = herd_model_config(a->model);
    double temp = c->default_temperature >= 0 ? c->default_temperature : 0.6;
    double top_p = c->default_top_p > 0 ? c->default_top_p : 0.9;
    double fp = 0, pp = 0, n = 1, seed = -1, max_tokens = -1, mct = -1, top_k = 0, min_p = 0, min_tokens = 0;
    if (get_num(root, "temperature", 0, 2, &temp, e) || get_num(root, "top_p", 0, 1, &top_p, e) ||
        get_num(root, "frequency_penalty", -2, 2, &fp, e) || get_num(root, "presence_penalty", -2, 2, &pp, e) ||
        get_int(root, "n", 1, SRV_MAX_CHOICES, &n, e) || get_int(root, "seed", -9.2e18, 9.2e18, &seed, e) ||
        get_int(root, "max_tokens", 0, 1e9, &max_tokens, e) ||
        get_int(root, "max_completion_tokens", 1, 1e9, &mct, e) || get_bool(root, "stream", &r->stream, e) ||
        get_int(root, "top_k", -1, 1e9, &top_k, e) || get_num(root, "min_p", 0, 1, &min_p, e) ||
        parse_stop(root, r, e) || logit_bias(a, root, r, e) || get_bool(root, "ignore_eos", &r->ignore_eos, e) ||
        get_int(root, "min_tokens", 0, 1e9, &min_tokens, e) || stop_token_ids(a, root, r, e))
        return -1;
    r->min_tokens = (int)min_tokens;
    r->top_k = top_k > 0 ? (int)top_k : 0; /* -1 (vLLM) or 0: off */
    r->min_p = (float)min_p;
    if (top_p <= 0) top_p = 1e-6; /* keep only the top token, as OpenAI does for 0 */
    r->temperature = (float)temp;
    r->top_p = (float)top_p;
    r->freq_penalty = (float)fp;
    r->pres_penalty = (float)pp;
    r->seed = seed >= 0 ? (uint64_t)seed : seed < -1 ? (uint64_t)(int64_t)seed : fresh_random();
    r->n_choices = (int)n;
    if (mct > 0) max_tokens = mct;
    if (max_tokens >= 0 && min_tokens > max_tokens)
        return fail(e, 400, "min_tokens", "invalid_value", "Invalid 'min_tokens': %g is more than max_tokens (%g).",
                    min_tokens, max_tokens);
    const cJSON *so = cJSON_GetObjectItemCaseSensitive(root, "stream_options");
    if (so && !cJSON_IsNull(so)) {
        if (!cJSON_IsObject(so))
            return fail(e, 400, "stream_options", "invalid_type", "Invalid type for 'stream_options': expected "
                        "an object, but got %s instead.", type_name(so));
        if (!r->stream)
            return fail(e, 400, "stream_options", "invalid_value", "The 'stream_options' parameter is only "
                        "allowed when 'stream' is enabled.");
        if (get_bool(so, "include_usage", &r->include_usage, e)) return -1;
    }
    if (kind == REQ_CHAT) {
        int lp = 0;
        double top = 0;
        if (get_bool(root, "logprobs", &lp, e) || get_int(root, "top_logprobs", 0, 20, &top, e)) return -1;
        if (top > 0 && !lp)
            return fail(e, 400, "top_logprobs", "invalid_value", "'top_logprobs' requires 'logprobs' to be true.");
        r->logprobs = lp;
        r->top_logprobs = (int)top;
        if (response_format(a, root, r, e) || guided(a, root, r, e) || chat_prompt(a, root, r, e)) return -1;
    } else {
        double lp = -1, best_of = 1;
        int echo = 0;
        if (get_int(root, "logprobs", 0, 5, &lp, e) || get_int(root, "best_of", 1, 1, &best_of, e) ||
            get_bool(root, "echo", &echo, e))
            return -1;
        r->echo = echo;
        const cJSON *sfx = cJSON_GetObjectItemCaseSensitive(root, "suffix");
        if (sfx && !cJSON_IsNull(sfx))
            return fail(e, 400, "suffix", "invalid_value", "'suffix' is not supported by this server.");
        r->logprobs = lp >= 0;
        r->top_logprobs = lp > 0 ? (int)lp : 0;
        if (response_format(a, root, r, e) || guided(a, root, r, e) || completion_prompt(a, "prompt", root, r, e)) return -1;
    }
    if (max_tokens == 0 && !r->echo) /* 0: score the prompt only (echo with logprobs) */
        return fail(e, 400, "max_tokens", "invalid_value", "Invalid 'max_tokens': expected a value in [1, 1e+09], "
                    "but got 0 instead (0 is for echo: true, which answers with the prompt alone).");
    r->max_tokens = (int)max_tokens;
    return 0;
}

srv_req *api_parse_request(const srv_api *a, int kind, const char *body, size_t len, int *status,
                           char **error_body) {
    perr e = { 0 };
    *error_body = NULL;
    if (kind == REQ_RESPONSE) return resp_parse_request(a, body, len, status, error_body);
    cJSON *root = cJSON_ParseWithLength(body, len);
    srv_req *r = NULL;
    if (!root || !cJSON_IsObject(root)) {
        fail(&e, 400, NULL, "invalid_json", "We could not parse the JSON body of your request: %s. (HINT: "
             "send a JSON object with Content-Type: application/json.)", root ? "expected an object" :
             "invalid JSON");
    } else {
        r = req_new();
        r->kind = kind;
        if (parse_fields(a, kind, root, r, &e)) {
            req_release(r);
            r = NULL;
        }
    }
    cJSON_Delete(root);
    if (!r) {
        *status = e.status;
        *error_body = api_error_json(e.msg, e.status == 404 ? "invalid_request_error" : "invalid_request_error",
                                     e.param, e.code);
        return NULL;
    }
    static const char hex[] = "0123456789abcdef";
    uint64_t x = fresh_random(), y = fresh_random();
    snprintf(r->id, sizeof r->id, "%s", kind == REQ_CHAT ? "chatcmpl-" : "cmpl-");
    size_t k = strlen(r->id);
    for (int i = 0; i < 24; i++) r->id[k + i] = hex[(i < 16 ? x >> (4 * i) : y >> (4 * (i - 16))) & 15];
    r->id[k + 24] = 0;
    r->created = (long)time(NULL);
    if (!r->model_id) r->model_id = a->model_id;
    *status = 200;
    return r;
}

/* ---- /tokenize and /detokenize --------------------------------------------------- */

/* Parses body into *root (a JSON object), or sets e. */
static void json_body(const char *body, size_t len, cJSON **root, perr *e) {
    *root = cJSON_ParseWithLength(body, len);
    if (!*root || !cJSON_IsObject(*root))
        fail(e, 400, NULL, "invalid_json", "We could not parse the JSON body of your request: %s.",
             *root ? "expected an object" : "invalid JSON");
}

static char *error_of(perr *e, int *status) {
    *status = e->status;
    return api_error_json(e->msg, "invalid_request_error", e->param, e->code);
}

static char *print_and_free(cJSON *o) {
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!s) abort();
    return s;
}

char *api_tokenize(const srv_api *a, const char *body, size_t len, int *status) {
    perr e = { 0 };
    cJSON *root;
    json_body(body, len, &root, &e);
    srv_req *r = NULL;
    int add_special = 1;
    if (!e.status && !check_model(a, root, 0, &e, NULL) && !get_bool(root, "add_special_tokens", &add_special, &e)) {
        r = req_new();
        if (cJSON_GetObjectItemCaseSensitive(root, "messages")) {
            chat_prompt(a, root, r, &e); /* as a chat request's prompt: header for the answer included */
        } else {
            const cJSON *p = cJSON_GetObjectItemCaseSensitive(root, "prompt");
            size_t n = 0;
            herd_error err;
            if (!cJSON_IsString(p))
                fail(&e, 400, "prompt", p ? "invalid_type" : "missing_required_parameter", "Expected 'prompt' "
                     "(a string) or 'messages' (a chat), to tokenize.");
            else if (herd_tokenize(herd_model_tokenizer(a->model), p->valuestring, strlen(p->valuestring),
                                   add_special, 0, &r->prompt, &n, &err))
                fail(&e, 400, "prompt", "invalid_value", "%s", err.msg);
            r->n_prompt = (int)n;
        }
    }
    cJSON_Delete(root);
    if (e.status) {
        req_release(r);
        return error_of(&e, status);
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "count", r->n_prompt);
    cJSON_AddNumberToObject(o, "max_model_len", a->n_ctx);
    cJSON *arr = cJSON_AddArrayToObject(o, "tokens");
    for (int i = 0; i < r->n_prompt; i++) cJSON_AddItemToArray(arr, cJSON_CreateNumber(r->prompt[i]));
    req_release(r);
    *status = 200;
    return print_and_free(o);
}

char *api_detokenize(const srv_api *a, const char *body, size_t len, int *status) {
    perr e = { 0 };
    cJSON *root;
    json_body(body, len, &root, &e);
    srv_buf text = { 0 };
    if (!e.status && !check_model(a, root, 0, &e, NULL)) {
        const herd_tokenizer *t = herd_model_tokenizer(a->model);
        const int V = herd_tokenizer_n_vocab(t) < herd_model_config(a->model)->vocab_size
                    ? herd_tokenizer_n_vocab(t) : herd_model_config(a->model)->vocab_size;
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(root, "tokens"), *x;
        if (!cJSON_IsArray(ids)) {
            fail(&e, 400, "tokens", ids ? "invalid_type" : "missing_required_parameter", "Expected 'tokens': "
                 "an array of token ids.");
        } else {
            int i = 0;
            cJSON_ArrayForEach(x, ids) {
                size_t n = 0;
                const char *b = cJSON_IsNumber(x) && x->valuedouble >= 0 && x->valuedouble < V &&
                                x->valuedouble == (int)x->valuedouble ? herd_token_bytes(t, (int32_t)x->valuedouble, &n)
                                                                     : NULL;
                if (!b) {
                    fail(&e, 400, "tokens", "invalid_value", "Invalid 'tokens[%d]': token ids are integers in "
                         "[0, %d).", i, V);
                    break;
                }
                buf_put(&text, b, n);
                i++;
            }
        }
    }
    cJSON_Delete(root);
    if (e.status) {
        buf_free(&text);
        return error_of(&e, status);
    }
    srv_buf u = { 0 };
    buf_utf8(&u, text.p ? text.p : "", text.n);
    buf_free(&text);
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "prompt", u.p);
    buf_free(&u);
    *status = 200;
    return print_and_free(o);
}

