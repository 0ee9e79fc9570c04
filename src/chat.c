/* chat.c - the Llama 3.1 chat prompt, token for token as Meta's
 * ChatFormat.encode_dialog_prompt (llama-models models/llama3/chat_format.py), and a
 * reader for OpenAI-style JSON message arrays.
 *
 * Rendering: <|begin_of_text|> once, then per message
 *   <|start_header_id|> encode(role) <|end_header_id|> encode("\n\n") encode(content)
 *   <|eot_id|>   (<|eom_id|> for an assistant message with eom set)
 * and, with add_generation_prompt, the assistant header. Pieces are encoded
 * separately and concatenated, as Meta does. Content is NOT stripped: Meta's 3.1
 * ChatFormat keeps it verbatim (its prompt_format.md shows "...assistant.\n<|eot_id|>"
 * and an ipython message starting with "\n"); HF's template trims (`| trim`), so
 * callers wanting HF parity trim first. Role "tool" is written "ipython".
 * Content is encoded with special=0 (special-token text in user content stays
 * text: no prompt injection), with one exception: an assistant message that starts
 * with the text "<|python_tag|>" gets the real <|python_tag|> id there, because
 * that is how a tool call the model made is fed back (Meta's formatter emits it
 * for tool calls; the message struct has no tool-call field).
 *
 * JSON: an array of {role, content} (or an object with "messages"); content is a
 * string, null, or an array of {"type": "text", "text": ...} parts (joined); a
 * tool message's object content is serialized like Python's json.dumps. An
 * assistant message's tool_calls (one call: Llama 3.1 has no parallel calls)
 * become content as HF's template renders them: built-in tools (brave_search,
 * wolfram_alpha) as <|python_tag|>name.call(query="..."), others as
 * {"name": ..., "parameters": ...}; such messages end with <|eom_id|>.
 * Not here: system-prompt construction (dates, tool lists), parsing model output.
 */
#include "tokenizer_impl.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- rendering ------------------------------------------------------------------- */

typedef struct {
    int32_t *v;
    size_t n, cap;
} ids_buf;

static int ids_push(ids_buf *b, const int32_t *ids, size_t n) {
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        int32_t *p = realloc(b->v, cap * sizeof *p);
        if (!p) return 0;
        b->v = p;
        b->cap = cap;
    }
    memcpy(b->v + b->n, ids, n * sizeof *ids);
    b->n += n;
    return 1;
}

static herd_status push_text(ids_buf *b, const herd_tokenizer *t, const char *s, size_t n,
                             herd_error *err) {
    int32_t *ids;
    size_t n_ids;
    herd_status st = herd_tokenize(t, s, n, 0, 0, &ids, &n_ids, err);
    if (st != HERD_OK) return st;
    int ok = ids_push(b, ids, n_ids);
    free(ids);
    return ok ? HERD_OK : herd_errf(err, HERD_ERR_NOMEM, "chat: out of memory");
}

static herd_status push_special(ids_buf *b, const herd_tokenizer *t, int k, herd_error *err) {
    int32_t id = herd_tokenizer_n_bpe(t) + k;
    return ids_push(b, &id, 1) ? HERD_OK : herd_errf(err, HERD_ERR_NOMEM, "chat: out of memory");
}

/* The Llama 3.1 header a message role is written with: the four of the format,
 * "tool" as ipython, and OpenAI's "developer" (its newer name for instructions
 * above the user's) as system. */
static const char *chat_role(const char *role) {
    static const char *const roles[] = { "system", "user", "assistant", "ipython" };
    if (!role) return NULL;
    if (strcmp(role, "tool") == 0) return "ipython";
    if (strcmp(role, "developer") == 0) return "system";
    for (size_t i = 0; i < sizeof roles / sizeof *roles; i++)
        if (strcmp(role, roles[i]) == 0) return roles[i];
    return NULL;
}

static herd_status push_header(ids_buf *b, const herd_tokenizer *t, const char *role, herd_error *err) {
    herd_status st = push_special(b, t, HERD_SP_START_HEADER, err);
    if (!st) st = push_text(b, t, role, strlen(role), err);
    if (!st) st = push_special(b, t, HERD_SP_END_HEADER, err);
    if (!st) st = push_text(b, t, "\n\n", 2, err);
    return st;
}

herd_status herd_chat_render(const herd_tokenizer *t, const herd_chat_message *msgs, size_t n,
                             int add_generation_prompt, int32_t **ids, size_t *n_ids,
                             herd_error *err) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (!t || !ids || !n_ids || (n && !msgs))
        return herd_errf(err, HERD_ERR_ARG, "chat: NULL tokenizer, messages or output");
    ids_buf b = { 0 };
    herd_status st = push_special(&b, t, HERD_SP_BOS, err);
    for (size_t i = 0; i < n && !st; i++) {
        const char *role = chat_role(msgs[i].role);
        if (!role) {
            st = herd_errf(err, HERD_ERR_ARG, "chat: message %zu: role '%s'; expected system, developer, "
                           "user, assistant, ipython or tool", i, msgs[i].role ? msgs[i].role : "(null)");
            break;
        }
        st = push_header(&b, t, role, err);
        const char *c = msgs[i].content ? msgs[i].content : "";
        size_t cl = strlen(c);
        static const char tag[] = "<|python_tag|>";
        int is_assistant = strcmp(role, "assistant") == 0;
        if (!st && is_assistant && strncmp(c, tag, sizeof tag - 1) == 0) {
            st = push_special(&b, t, HERD_SP_PYTHON_TAG, err);
            c += sizeof tag - 1;
            cl -= sizeof tag - 1;
        }
        if (!st) st = push_text(&b, t, c, cl, err);
        if (!st) st = push_special(&b, t, is_assistant && msgs[i].eom ? HERD_SP_EOM : HERD_SP_EOT, err);
    }
    if (!st && add_generation_prompt) st = push_header(&b, t, "assistant", err);
    if (st != HERD_OK) {
        free(b.v);
        return st;
    }
    *ids = b.v;
    *n_ids = b.n;
    return HERD_OK;
}

/* ---- JSON messages ---------------------------------------------------------------- */

typedef struct {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *s, const char *p, size_t n) {
    if (s->oom) return;
    if (s->n + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 128;
        while (cap < s->n + n + 1) cap *= 2;
        char *q = realloc(s->p, cap);
        if (!q) { s->oom = 1; return; }
        s->p = q;
        s->cap = cap;
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
    s->p[s->n] = 0;
}

static void sb_str(sbuf *s, const char *p) { sb_put(s, p, strlen(p)); }

/* A JSON string literal as Python's json.dumps(ensure_ascii=False) writes it. */
static void py_json_string(sbuf *s, const char *p) {
    sb_put(s, "\"", 1);
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        char e[8];
        switch (c) {
        case '"': sb_str(s, "\\\""); break;
        case '\\': sb_str(s, "\\\\"); break;
        case '\n': sb_str(s, "\\n"); break;
        case '\r': sb_str(s, "\\r"); break;
        case '\t': sb_str(s, "\\t"); break;
        case '\b': sb_str(s, "\\b"); break;
        case '\f': sb_str(s, "\\f"); break;
        default:
            if (c < 0x20) { snprintf(e, sizeof e, "\\u%04x", c); sb_str(s, e); }
            else sb_put(s, (const char *)&c, 1);
        }
    }
    sb_put(s, "\"", 1);
}

/* json.dumps(x) with the default separators ", " and ": " (HF's tojson). Integral
 * numbers print as integers (cJSON does not keep "1.0" apart from "1"). */
static void py_json(sbuf *s, const cJSON *x) {
    char num[64];
    if (cJSON_IsNull(x)) sb_str(s, "null");
    else if (cJSON_IsTrue(x)) sb_str(s, "true");
    else if (cJSON_IsFalse(x)) sb_str(s, "false");
    else if (cJSON_IsString(x)) py_json_string(s, x->valuestring);
    else if (cJSON_IsNumber(x)) {
        double d = x->valuedouble;
        if (isfinite(d) && d == floor(d) && fabs(d) < 1e16) snprintf(num, sizeof num, "%.0f", d);
        else {
            for (int prec = 1; prec <= 17; prec++) { /* shortest repr that round-trips */
                snprintf(num, sizeof num, "%.*g", prec, d);
                if (strtod(num, NULL) == d) break;
            }
        }
        sb_str(s, num);
    } else if (cJSON_IsArray(x) || cJSON_IsObject(x)) {
        int obj = cJSON_IsObject(x), first = 1;
        sb_str(s, obj ? "{" : "[");
        const cJSON *c;
        cJSON_ArrayForEach(c, x) {
            if (!first) sb_str(s, ", ");
            first = 0;
            if (obj) {
                py_json_string(s, c->string ? c->string : "");
                sb_str(s, ": ");
            }
            py_json(s, c);
        }
        sb_str(s, obj ? "}" : "]");
    }
}

static herd_status content_text(const cJSON *c, size_t i, int is_tool, sbuf *out, herd_error *err) {
    if (!c || cJSON_IsNull(c)) return HERD_OK;
    if (cJSON_IsString(c)) { sb_str(out, c->valuestring); return HERD_OK; }
    if (cJSON_IsArray(c)) {
        int k = 0;
        const cJSON *part;
        cJSON_ArrayForEach(part, c) {
            const cJSON *ty = cJSON_GetObjectItemCaseSensitive(part, "type");
            const cJSON *tx = cJSON_GetObjectItemCaseSensitive(part, "text");
            if (cJSON_IsString(part)) sb_str(out, part->valuestring);
            else if (!cJSON_IsObject(part) || !cJSON_IsString(ty) || strcmp(ty->valuestring, "text") != 0 ||
                     !cJSON_IsString(tx))
                return herd_errf(err, HERD_ERR_ARG, "chat json: messages[%zu].content[%d]: expected "
                                 "{\"type\": \"text\", \"text\": string}%s", i, k,
                                 cJSON_IsString(ty) ? "; only text parts are supported" : "");
            else sb_str(out, tx->valuestring);
            k++;
        }
        return HERD_OK;
    }
    if (is_tool && cJSON_IsObject(c)) { py_json(out, c); return HERD_OK; }
    return herd_errf(err, HERD_ERR_ARG, "chat json: messages[%zu].content: expected a string, null or an "
                     "array of text parts", i);
}

static int is_builtin_tool(const char *name) {
    return strcmp(name, "brave_search") == 0 || strcmp(name, "wolfram_alpha") == 0;
}

static herd_status tool_call_text(const cJSON *calls, size_t i, sbuf *out, herd_error *err) {
    int n = cJSON_GetArraySize(calls);
    if (n != 1)
        return herd_errf(err, HERD_ERR_UNSUPPORTED, "chat json: messages[%zu].tool_calls has %d calls; "
                         "Llama 3.1 supports exactly one tool call per message", i, n);
    const cJSON *call = cJSON_GetArrayItem(calls, 0);
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
    if (!fn) fn = call; /* also accept the flat {"name", "arguments"} form */
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
    if (!args) args = cJSON_GetObjectItemCaseSensitive(fn, "parameters");
    if (!cJSON_IsObject(call) || !cJSON_IsString(name))
        return herd_errf(err, HERD_ERR_ARG, "chat json: messages[%zu].tool_calls[0]: expected "
                         "{\"function\": {\"name\": string, \"arguments\": object or JSON string}}", i);
    cJSON *parsed = NULL;
    if (cJSON_IsString(args)) { /* OpenAI sends arguments as a JSON string */
        parsed = cJSON_Parse(args->valuestring);
        if (!parsed || !cJSON_IsObject(parsed)) {
            cJSON_Delete(parsed);
            return herd_errf(err, HERD_ERR_ARG, "chat json: messages[%zu].tool_calls[0].function.arguments: "
                             "the string is not a JSON object", i);
        }
        args = parsed;
    } else if (args && !cJSON_IsObject(args))
        return herd_errf(err, HERD_ERR_ARG, "chat json: messages[%zu].tool_calls[0].function.arguments: "
                         "expected an object or a JSON string", i);
    if (is_builtin_tool(name->valuestring)) {
        sb_str(out, "<|python_tag|>");
        sb_str(out, name->valuestring);
        sb_str(out, ".call(");
        const cJSON *a;
        int first = 1;
        cJSON_ArrayForEach(a, args) {
            if (!first) sb_str(out, ", ");
            first = 0;
            sb_str(out, a->string);
            sb_str(out, "=\"");
            if (cJSON_IsString(a)) sb_str(out, a->valuestring);
            else py_json(out, a);
            sb_str(out, "\"");
        }
        sb_str(out, ")");
    } else {
        sb_str(out, "{\"name\": ");
        py_json_string(out, name->valuestring);
        sb_str(out, ", \"parameters\": ");
        if (args) py_json(out, args);
        else sb_str(out, "{}");
        sb_str(out, "}");
    }
    cJSON_Delete(parsed);
    return HERD_OK;
}

void herd_chat_messages_free(herd_chat_message *msgs, size_t n) {
    if (!msgs) return;
    for (size_t i = 0; i < n; i++) {
        free((char *)msgs[i].role);
        free((char *)msgs[i].content);
    }
    free(msgs);
}

herd_status herd_chat_parse_json(const char *json, size_t len, herd_chat_message **msgs, size_t *n,
                                 herd_error *err) {
    if (msgs) *msgs = NULL;
    if (n) *n = 0;
    if (!json || !msgs || !n) return herd_errf(err, HERD_ERR_ARG, "chat json: NULL argument");
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *e = cJSON_GetErrorPtr();
        size_t off = e && e >= json && e <= json + len ? (size_t)(e - json) : 0;
        return herd_errf(err, HERD_ERR_ARG, "chat json: invalid JSON near byte %zu; expected an array of "
                         "{\"role\": ..., \"content\": ...} messages", off);
    }
    const cJSON *arr = root;
    if (cJSON_IsObject(root)) arr = cJSON_GetObjectItemCaseSensitive(root, "messages");
    if (!cJSON_IsArray(arr)) {
        cJSON_Delete(root);
        return herd_errf(err, HERD_ERR_ARG, "chat json: expected an array of messages (or an object with "
                         "a \"messages\" array)");
    }
    size_t count = (size_t)cJSON_GetArraySize(arr);
    herd_chat_message *m = calloc(count ? count : 1, sizeof *m);
    herd_status st = m ? HERD_OK : herd_errf(err, HERD_ERR_NOMEM, "chat json: out of memory");
    size_t i = 0;
    const cJSON *msg;
    cJSON_ArrayForEach(msg, arr) {
        if (st) break;
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
        if (!cJSON_IsObject(msg) || !cJSON_IsString(role)) {
            st = herd_errf(err, HERD_ERR_ARG, "chat json: messages[%zu].role: %s", i,
                           !cJSON_IsObject(msg) ? "the message is not an object" :
                           role ? "expected a string" : "missing");
            break;
        }
        if (!chat_role(role->valuestring)) {
            st = herd_errf(err, HERD_ERR_ARG, "chat json: messages[%zu].role is '%.40s'; expected system, "
                           "developer, user, assistant, tool or ipython", i, role->valuestring);
            break;
        }
        int is_tool = strcmp(chat_role(role->valuestring), "ipython") == 0;
        sbuf text = { 0 };
        st = content_text(cJSON_GetObjectItemCaseSensitive(msg, "content"), i, is_tool, &text, err);
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
        if (!st && calls && !cJSON_IsNull(calls)) {
            if (!cJSON_IsArray(calls))
                st = herd_errf(err, HERD_ERR_ARG, "chat json: messages[%zu].tool_calls: expected an array", i);
            else if (strcmp(role->valuestring, "assistant") != 0)
                st = herd_errf(err, HERD_ERR_ARG, "chat json: messages[%zu].tool_calls: only assistant "
                               "messages have tool calls, this one is '%s'", i, role->valuestring);
            else if (cJSON_GetArraySize(calls) > 0) {
                st = tool_call_text(calls, i, &text, err);
                m[i].eom = 1;
            }
        }
        if (!st && !text.p) sb_put(&text, "", 0);
        /* developer is stored as system: the tool prompt (server/toolcall.c) joins a first system message */
        m[i].role = strdup(strcmp(role->valuestring, "developer") == 0 ? "system" : role->valuestring);
        m[i].content = text.p;
        if (!st && (text.oom || !m[i].role)) st = herd_errf(err, HERD_ERR_NOMEM, "chat json: out of memory");
        i++;
    }
    cJSON_Delete(root);
    if (st) {
        herd_chat_messages_free(m, m ? i : 0);
        return st;
    }
    *msgs = m;
    *n = count;
    return HERD_OK;
}
