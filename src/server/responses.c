/* responses.c - OpenAI's Responses API (POST /v1/responses) on the chat machinery.
 *
 * The body becomes a chat request: instructions a system message, input the
 * messages (a string is one user message; message items with text parts;
 * function_call and function_call_output items are the assistant's calls and the
 * tool results), max_output_tokens max_tokens, text.format the response_format,
 * function tools the chat's tools, tool_choice likewise. The answer goes out as a
 * response object, or streamed as its typed events: response.created,
 * response.in_progress, output_item.added, content_part.added, output_text.delta
 * ..., output_text.done, content_part.done, output_item.done (or a function call's
 * items and arguments events), response.completed.
 *
 * Deliberately not supported (400, not ignored): previous_response_id and
 * conversation (herd keeps no state between requests: send the whole input),
 * background, built-in tools (web_search, file_search, ...), input parts other
 * than text. One output per request (no n); logprobs are not offered here.
 */
#include "server/server.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the request: a chat request ----------------------------------------------- */

typedef struct {
    char msg[400];
    const char *param;
} rerr;

static int bad(rerr *e, const char *param, const char *msg) {
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    e->param = param;
    return -1;
}

/* An input item's text: a string, or the text of its input_text / output_text parts. */
static int item_text(const cJSON *content, srv_buf *out, rerr *e) {
    if (cJSON_IsString(content)) {
        buf_str(out, content->valuestring);
        return 0;
    }
    if (!cJSON_IsArray(content)) return bad(e, "input", "Invalid 'input': a message's content must be a string or "
                                            "an array of input_text parts.");
    const cJSON *p;
    cJSON_ArrayForEach(p, content) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(p, "type"), *tx = cJSON_GetObjectItemCaseSensitive(p, "text");
        if (!cJSON_IsString(ty) || (strcmp(ty->valuestring, "input_text") && strcmp(ty->valuestring, "output_text")) ||
            !cJSON_IsString(tx))
            return bad(e, "input", "Invalid 'input': only text parts (input_text, output_text) are supported.");
        buf_str(out, tx->valuestring);
    }
    return 0;
}

static cJSON *message(const char *role, const char *content) {
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "role", role);
    cJSON_AddStringToObject(m, "content", content);
    return m;
}

/* input (a string or items) after instructions -> the chat's messages. */
static int to_messages(const cJSON *root, cJSON *msgs, rerr *e) {
    const cJSON *ins = cJSON_GetObjectItemCaseSensitive(root, "instructions");
    if (cJSON_IsString(ins)) cJSON_AddItemToArray(msgs, message("system", ins->valuestring));
    else if (ins && !cJSON_IsNull(ins)) return bad(e, "instructions", "Invalid 'instructions': expected a string.");
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "input");
    if (cJSON_IsString(in)) {
        cJSON_AddItemToArray(msgs, message("user", in->valuestring));
        return 0;
    }
    if (!cJSON_IsArray(in) || !cJSON_GetArraySize(in))
        return bad(e, "input", "Invalid 'input': expected a string or a non-empty array of items.");
    const cJSON *it;
    cJSON_ArrayForEach(it, in) {
        const cJSON *ty = cJSON_GetObjectItemCaseSensitive(it, "type");
        const char *type = cJSON_IsString(ty) ? ty->valuestring : "message";
        if (!strcmp(type, "message")) {
            const cJSON *role = cJSON_GetObjectItemCaseSensitive(it, "role");
            if (!cJSON_IsString(role)) return bad(e, "input", "Invalid 'input': a message item needs a 'role'.");
            srv_buf t = { 0 };
            if (item_text(cJSON_GetObjectItemCaseSensitive(it, "content"), &t, e)) {
                buf_free(&t);
                return -1;
            }
            cJSON_AddItemToArray(msgs, message(role->valuestring, t.p ? t.p : ""));
            buf_free(&t);
        } else if (!strcmp(type, "function_call")) { /* the assistant's call, as a chat tool_calls message */
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "call_id");
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(it, "name");
            const cJSON *ar = cJSON_GetObjectItemCaseSensitive(it, "arguments");
            if (!cJSON_IsString(id) || !cJSON_IsString(nm) || !cJSON_IsString(ar))
                return bad(e, "input", "Invalid 'input': a function_call item needs call_id, name and arguments "
                           "(strings).");
            cJSON *m = cJSON_CreateObject(), *calls = cJSON_AddArrayToObject(m, "tool_calls"), *c = cJSON_CreateObject();
            cJSON_AddStringToObject(m, "role", "assistant");
            cJSON_AddNullToObject(m, "content");
            cJSON_AddStringToObject(c, "id", id->valuestring);
            cJSON_AddStringToObject(c, "type", "function");
            cJSON *f = cJSON_AddObjectToObject(c, "function");
            cJSON_AddStringToObject(f, "name", nm->valuestring);
            cJSON_AddStringToObject(f, "arguments", ar->valuestring);
            cJSON_AddItemToArray(calls, c);
            cJSON_AddItemToArray(msgs, m);
        } else if (!strcmp(type, "function_call_output")) {
            const cJSON *id = cJSON_GetObjectItemCaseSensitive(it, "call_id");
            const cJSON *out = cJSON_GetObjectItemCaseSensitive(it, "output");
            if (!cJSON_IsString(id) || !cJSON_IsString(out))
                return bad(e, "input", "Invalid 'input': a function_call_output item needs call_id and output "
                           "(strings).");
            cJSON *m = message("tool", out->valuestring);
            cJSON_AddStringToObject(m, "tool_call_id", id->valuestring);
            cJSON_AddItemToArray(msgs, m);
        } else {
            snprintf(e->msg, sizeof e->msg, "Invalid 'input': items of type '%.40s' are not supported (message, "
                     "function_call, function_call_output are).", type);
            e->param = "input";
            return -1;
        }
    }
    return 0;
}

/* tools: [{type: function, name, description, parameters}] -> the chat's shape;
 * tool_choice {type: function, name} likewise. */
static int to_tools(const cJSON *root, cJSON *chat, rerr *e) {
    const cJSON *tools = cJSON_GetObjectItemCaseSensitive(root, "tools");
    if (tools && !cJSON_IsNull(tools)) {
        if (!cJSON_IsArray(tools)) return bad(e, "tools", "Invalid 'tools': expected an array.");
        cJSON *out = cJSON_AddArrayToObject(chat, "tools");
        const cJSON *t;
        cJSON_ArrayForEach(t, tools) {
            const cJSON *ty = cJSON_GetObjectItemCaseSensitive(t, "type");
            if (!cJSON_IsString(ty) || strcmp(ty->valuestring, "function"))
                return bad(e, "tools", "Invalid 'tools': only function tools are supported (no built-in tools).");
            cJSON *c = cJSON_CreateObject(), *f = cJSON_AddObjectToObject(c, "function");
            cJSON_AddStringToObject(c, "type", "function");
            static const char *const keys[] = { "name", "description", "parameters" };
            for (int k = 0; k < 3; k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, keys[k]);
                if (v) cJSON_AddItemToObject(f, keys[k], cJSON_Duplicate(v, 1));
            }
            cJSON_AddItemToArray(out, c);
        }
    }
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "tool_choice");
    if (cJSON_IsObject(tc)) {
        const cJSON *nm = cJSON_GetObjectItemCaseSensitive(tc, "name");
        cJSON *c = cJSON_AddObjectToObject(chat, "tool_choice");
        cJSON_AddStringToObject(c, "type", "function");
        cJSON_AddItemToObject(cJSON_AddObjectToObject(c, "function"), "name",
                              nm ? cJSON_Duplicate(nm, 1) : cJSON_CreateNull());
    } else if (tc) {
        cJSON_AddItemToObject(chat, "tool_choice", cJSON_Duplicate(tc, 1));
    }
    return 0;
}

/* text.format -> response_format: json_schema's name / schema / strict sit in the
 * format itself here. */
static int to_format(const cJSON *root, cJSON *chat, rerr *e) {
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(root, "text");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(text, "format");
    if (!fmt || cJSON_IsNull(fmt)) return 0;
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(fmt, "type");
    if (!cJSON_IsString(ty)) return bad(e, "text.format", "Invalid 'text.format': expected an object with a 'type'.");
    cJSON *rf = cJSON_AddObjectToObject(chat, "response_format");
    cJSON_AddStringToObject(rf, "type", ty->valuestring);
    if (!strcmp(ty->valuestring, "json_schema")) {
        cJSON *js = cJSON_AddObjectToObject(rf, "json_schema");
        static const char *const keys[] = { "name", "schema", "strict" };
        for (int k = 0; k < 3; k++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(fmt, keys[k]);
            if (v) cJSON_AddItemToObject(js, keys[k], cJSON_Duplicate(v, 1));
        }
    }
    return 0;
}

static const char *const UNSUPPORTED[][2] = {
    { "previous_response_id", "herd keeps no state between requests: send the whole conversation as 'input'" },
    { "conversation", "herd keeps no state between requests: send the whole conversation as 'input'" },
    { "background", "background responses are not supported" },
};

/* A chat request's error names this API's parameters: 'max_tokens' is
 * max_output_tokens here, 'messages' input, 'response_format' text.format. */
static void rename_params(char **body) {
    static const char *const names[][2] = {
        { "max_tokens", "max_output_tokens" }, { "messages", "input" }, { "response_format", "text.format" } };
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        for (int quote = 0; quote < 2; quote++) { /* 'name' in the message, "name" as the param */
            char from[64], to[64];
            snprintf(from, sizeof from, quote ? "\"%s\"" : "'%s'", names[k][0]);
            snprintf(to, sizeof to, quote ? "\"%s\"" : "'%s'", names[k][1]);
            srv_buf b = { 0 };
            const char *p = *body, *q;
            while ((q = strstr(p, from))) {
                buf_put(&b, p, (size_t)(q - p));
                buf_str(&b, to);
                p = q + strlen(from);
            }
            buf_str(&b, p);
            free(*body);
            *body = strdup(b.p ? b.p : "");
            buf_free(&b);
            if (!*body) abort();
        }
    }
}

srv_req *resp_parse_request(const srv_api *a, const char *body, size_t len, int *status, char **error_body) {
    cJSON *root = cJSON_ParseWithLength(body, len);
    rerr e = { { 0 }, NULL };
    cJSON *chat = NULL;
    if (!root || !cJSON_IsObject(root)) {
        bad(&e, NULL, "We could not parse the JSON body of your request (expected a JSON object).");
    } else {
        for (size_t i = 0; i < sizeof UNSUPPORTED / sizeof *UNSUPPORTED && !e.msg[0]; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, UNSUPPORTED[i][0]);
            if (v && !cJSON_IsNull(v) && !cJSON_IsFalse(v)) {
                snprintf(e.msg, sizeof e.msg, "'%s' is not supported: %s.", UNSUPPORTED[i][0], UNSUPPORTED[i][1]);
                e.param = UNSUPPORTED[i][0];
            }
        }
        chat = cJSON_CreateObject();
        cJSON *msgs = cJSON_AddArrayToObject(chat, "messages");
        if (!e.msg[0] && !to_messages(root, msgs, &e) && !to_tools(root, chat, &e) && !to_format(root, chat, &e)) {
            static const char *const same[] = { "model", "temperature", "top_p", "stream", "parallel_tool_calls",
                                                "seed" };
            for (size_t k = 0; k < sizeof same / sizeof *same; k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, same[k]);
                if (v) cJSON_AddItemToObject(chat, same[k], cJSON_Duplicate(v, 1));
            }
            const cJSON *mx = cJSON_GetObjectItemCaseSensitive(root, "max_output_tokens");
            if (mx) cJSON_AddItemToObject(chat, "max_tokens", cJSON_Duplicate(mx, 1));
        }
    }
    cJSON_Delete(root);
    if (e.msg[0]) {
        cJSON_Delete(chat);
        *status = 400;
        *error_body = api_error_json(e.msg, "invalid_request_error", e.param, e.param ? "invalid_value" : "invalid_json");
        return NULL;
    }
    char *text = cJSON_PrintUnformatted(chat);
    cJSON_Delete(chat);
    if (!text) abort();
    srv_req *r = api_parse_request(a, REQ_CHAT, text, strlen(text), status, error_body);
    free(text);
    if (!r) {
        rename_params(error_body);
        return NULL;
    }
    r->kind = REQ_RESPONSE;
    r->include_usage = 0;
    char hex[32];
    snprintf(hex, sizeof hex, "%s", r->id + 9); /* chatcmpl-<hex> */
    snprintf(r->id, sizeof r->id, "resp_%s", hex);
    return r;
}

/* ---- the answer ------------------------------------------------------------------- */

/* One typed event: "event: TYPE" and its data with type and sequence_number. */
static void event(srv_out *o, srv_req *r, const char *type, cJSON *data) {
    cJSON_AddStringToObject(data, "type", type);
    cJSON_AddNumberToObject(data, "sequence_number", o->seq++);
    char *j = cJSON_PrintUnformatted(data);
    cJSON_Delete(data);
    if (!j) abort();
    srv_buf b = { 0 };
    buf_printf(&b, "event: %s\ndata: %s\n\n", type, j);
    free(j);
    req_emit(r, b.p, b.n, 0);
    buf_free(&b);
}

/* An output item's id: msg_HEX for the message, fc_HEX_K for call K (HEX: the
 * response id's). */
static void item_id(const srv_req *r, const char *prefix, int k, char *out, size_t cap) {
    if (!strcmp(prefix, "msg")) snprintf(out, cap, "msg_%s", r->id + 5);
    else snprintf(out, cap, "%s_%s_%d", prefix, r->id + 5, k);
}

static cJSON *text_part(const char *text) {
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "type", "output_text");
    cJSON_AddStringToObject(p, "text", text);
    cJSON_AddArrayToObject(p, "annotations");
    return p;
}

static cJSON *message_item(const srv_req *r, const char *status, const char *text) {
    char id[64];
    item_id(r, "msg", 0, id, sizeof id);
    cJSON *it = cJSON_CreateObject();
    cJSON_AddStringToObject(it, "id", id);
    cJSON_AddStringToObject(it, "type", "message");
    cJSON_AddStringToObject(it, "status", status);
    cJSON_AddStringToObject(it, "role", "assistant");
    cJSON *content = cJSON_AddArrayToObject(it, "content");
    if (text) cJSON_AddItemToArray(content, text_part(text));
    return it;
}

/* A float parameter as the request gave it (0.9, not 0.899999976...). */
static double as_given(float v) {
    char b[32];
    snprintf(b, sizeof b, "%.7g", v);
    return strtod(b, NULL);
}

/* The response object: status, its output items (NULL: none yet), usage (o NULL: none). */
static cJSON *response(const srv_req *r, const srv_out *o, const char *status, cJSON *output, const char *incomplete) {
    cJSON *x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "id", r->id);
    cJSON_AddStringToObject(x, "object", "response");
    cJSON_AddNumberToObject(x, "created_at", (double)r->created);
    cJSON_AddStringToObject(x, "status", status);
    cJSON_AddNullToObject(x, "error");
    if (incomplete) cJSON_AddStringToObject(cJSON_AddObjectToObject(x, "incomplete_details"), "reason", incomplete);
    else cJSON_AddNullToObject(x, "incomplete_details");
    cJSON_AddStringToObject(x, "model", r->model_id);
    cJSON_AddItemToObject(x, "output", output ? output : cJSON_CreateArray());
    cJSON_AddBoolToObject(x, "parallel_tool_calls", 0);
    cJSON_AddNumberToObject(x, "temperature", as_given(r->temperature));
    cJSON_AddNumberToObject(x, "top_p", as_given(r->top_p));
    cJSON_AddNumberToObject(x, "max_output_tokens", r->max_tokens);
    if (o) {
        cJSON *u = cJSON_AddObjectToObject(x, "usage");
        cJSON_AddNumberToObject(u, "input_tokens", r->n_prompt);
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "input_tokens_details"), "cached_tokens", o->n_cached);
        cJSON_AddNumberToObject(u, "output_tokens", o->n_gen);
        cJSON_AddNumberToObject(cJSON_AddObjectToObject(u, "output_tokens_details"), "reasoning_tokens", 0);
        cJSON_AddNumberToObject(u, "total_tokens", r->n_prompt + o->n_gen);
    } else {
        cJSON_AddNullToObject(x, "usage");
    }
    return x;
}

static cJSON *with_response(cJSON *resp) {
    cJSON *d = cJSON_CreateObject();
    cJSON_AddItemToObject(d, "response", resp);
    return d;
}

static cJSON *at(const srv_req *r, int k, const char *prefix) { /* output_index, item_id */
    char id[64];
    item_id(r, prefix, k, id, sizeof id);
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "output_index", k);
    cJSON_AddStringToObject(d, "item_id", id);
    return d;
}

/* Streamed: the response and its message item open at the first text. */
static void start(srv_out *o, srv_req *r, int with_message) {
    if (!o->role_sent) {
        o->role_sent = 1;
        event(o, r, "response.created", with_response(response(r, NULL, "in_progress", NULL, NULL)));
        event(o, r, "response.in_progress", with_response(response(r, NULL, "in_progress", NULL, NULL)));
    }
    if (with_message && o->role_sent == 1) {
        o->role_sent = 2;
        cJSON *d = cJSON_CreateObject();
        cJSON_AddNumberToObject(d, "output_index", 0);
        cJSON_AddItemToObject(d, "item", message_item(r, "in_progress", NULL));
        event(o, r, "response.output_item.added", d);
        d = at(r, 0, "msg");
        cJSON_AddNumberToObject(d, "content_index", 0);
        cJSON_AddItemToObject(d, "part", text_part(""));
        event(o, r, "response.content_part.added", d);
    }
}

static void delta(srv_out *o, srv_req *r, size_t upto) {
    srv_buf t = { 0 };
    buf_utf8(&t, o->text.p + o->sent, upto - o->sent);
    cJSON *d = at(r, 0, "msg");
    cJSON_AddNumberToObject(d, "content_index", 0);
    cJSON_AddStringToObject(d, "delta", t.p ? t.p : "");
    cJSON_AddArrayToObject(d, "logprobs");
    buf_free(&t);
    event(o, r, "response.output_text.delta", d);
    o->sent = upto;
}

void resp_stream_text(srv_out *o, srv_req *r, size_t upto) {
    if (!r->stream) return;
    start(o, r, 0);
    if (o->holding_tool) {
        if (tc_maybe_call(o->text.p ? o->text.p : "", o->text.n)) return;
        o->holding_tool = 0;
    }
    if (upto > o->text.n) upto = o->text.n;
    if (upto <= o->sent) return;
    start(o, r, 1);
    delta(o, r, upto);
}

/* A function call output item (status completed unless given). */
static cJSON *call_item(const srv_req *r, int k, const cJSON *call, const char *status, const char *args) {
    char id[64];
    item_id(r, "fc", k, id, sizeof id);
    const cJSON *f = cJSON_GetObjectItem(call, "function");
    cJSON *it = cJSON_CreateObject();
    cJSON_AddStringToObject(it, "id", id);
    cJSON_AddStringToObject(it, "type", "function_call");
    cJSON_AddStringToObject(it, "status", status);
    cJSON_AddStringToObject(it, "call_id", cJSON_GetObjectItem(call, "id")->valuestring);
    cJSON_AddStringToObject(it, "name", cJSON_GetObjectItem(f, "name")->valuestring);
    cJSON_AddStringToObject(it, "arguments", args ? args : cJSON_GetObjectItem(f, "arguments")->valuestring);
    return it;
}

void resp_finish(srv_out *o, srv_req *r, const char *reason) {
    char call_ids[48];
    snprintf(call_ids, sizeof call_ids, "%s", r->id + 5);
    tc_call *calls = NULL;
    const int n_calls = r->tools ? tc_parse(o->text.p ? o->text.p : "", o->text.n, &calls) : 0;
    cJSON *arr = n_calls ? tc_to_openai(calls, n_calls, call_ids, 0) : NULL;
    const char *incomplete = !n_calls && !strcmp(reason, "length") ? "max_output_tokens" : NULL;
    srv_buf t = { 0 };
    buf_utf8(&t, o->text.p ? o->text.p : "", o->text.n);
    const char *text = t.p ? t.p : "";
    cJSON *output = cJSON_CreateArray();
    if (n_calls) {
        int k = 0;
        const cJSON *c;
        cJSON_ArrayForEach(c, arr) cJSON_AddItemToArray(output, call_item(r, k++, c, "completed", NULL));
    } else {
        cJSON_AddItemToArray(output, message_item(r, incomplete ? "incomplete" : "completed", text));
    }
    if (r->stream) {
        start(o, r, !n_calls);
        if (n_calls) {
            int k = 0;
            const cJSON *c;
            cJSON_ArrayForEach(c, arr) {
                cJSON *d = cJSON_CreateObject();
                cJSON_AddNumberToObject(d, "output_index", k);
                cJSON_AddItemToObject(d, "item", call_item(r, k, c, "in_progress", ""));
                event(o, r, "response.output_item.added", d);
                const char *args = cJSON_GetObjectItem(cJSON_GetObjectItem(c, "function"), "arguments")->valuestring;
                d = at(r, k, "fc");
                cJSON_AddStringToObject(d, "delta", args);
                event(o, r, "response.function_call_arguments.delta", d);
                d = at(r, k, "fc");
                cJSON_AddStringToObject(d, "arguments", args);
                event(o, r, "response.function_call_arguments.done", d);
                d = cJSON_CreateObject();
                cJSON_AddNumberToObject(d, "output_index", k);
                cJSON_AddItemToObject(d, "item", call_item(r, k, c, "completed", NULL));
                event(o, r, "response.output_item.done", d);
                k++;
            }
        } else {
            if (o->text.n > o->sent) delta(o, r, o->text.n);
            cJSON *d = at(r, 0, "msg");
            cJSON_AddNumberToObject(d, "content_index", 0);
            cJSON_AddStringToObject(d, "text", text);
            cJSON_AddArrayToObject(d, "logprobs");
            event(o, r, "response.output_text.done", d);
            d = at(r, 0, "msg");
            cJSON_AddNumberToObject(d, "content_index", 0);
            cJSON_AddItemToObject(d, "part", text_part(text));
            event(o, r, "response.content_part.done", d);
            d = cJSON_CreateObject();
            cJSON_AddNumberToObject(d, "output_index", 0);
            cJSON_AddItemToObject(d, "item", message_item(r, incomplete ? "incomplete" : "completed", text));
            event(o, r, "response.output_item.done", d);
        }
        event(o, r, incomplete ? "response.incomplete" : "response.completed",
              with_response(response(r, o, incomplete ? "incomplete" : "completed", output, incomplete)));
        out_choice_done(r, o->n_gen, o->n_cached, NULL);
    } else {
        out_choice_done(r, o->n_gen, o->n_cached,
                        response(r, o, incomplete ? "incomplete" : "completed", output, incomplete));
    }
    buf_free(&t);
    cJSON_Delete(arr);
    tc_free(calls, n_calls);
}
