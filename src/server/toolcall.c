/* toolcall.c - Llama 3.1 tool calls for the OpenAI API: rendering a request's
 * `tools` into the prompt messages, and reading the model's reply back as calls.
 *
 * Rendering follows the Llama 3.1 HF chat template (tools_in_user_message=true):
 * the system message gets "Environment: ipython\n", the knowledge/today dates
 * ("26 Jul 2024", the template's fixed fallback, for reproducible prompts), then the
 * caller's system text; the first user message is prefixed with the "Given the
 * following functions..." instruction and each tool as json.dumps(indent=4).
 * Contents are trimmed as the template trims them.
 *
 * Parsing accepts, after trimming and dropping a literal trailing <|eot_id|> or
 * <|eom_id|> and a leading <|python_tag|>, the whole reply being one of:
 *   {"name": N, "parameters": {..}}  (also "arguments"; "type": "function"; a
 *                                     nested "function" object; a JSON array of those)
 *   <function=N>{..}</function>
 *   N.call(query="...", k=v)          (built-in tools)
 *   [f(a=1, b='x'), g()]              (3.2 pythonic list)
 *   anything else after <|python_tag|> -> code_interpreter {"code": text}
 * A reply that merely mentions such text among prose is not a call: the match is
 * anchored at both ends. Not here: executing tools, the tool role's rendering
 * (chat.c does that, as ipython).
 */
#include "server/server.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static const char PY_TAG[] = "<|python_tag|>";

/* ---- parsing ------------------------------------------------------------------ */

static int starts(const char *s, size_t n, const char *pre) {
    size_t k = strlen(pre);
    return n >= k && memcmp(s, pre, k) == 0;
}

static int ends(const char *s, size_t n, const char *suf) {
    size_t k = strlen(suf);
    return n >= k && memcmp(s + n - k, suf, k) == 0;
}

static void trim(const char **s, size_t *n) {
    while (*n && isspace((unsigned char)**s)) (*s)++, (*n)--;
    while (*n && isspace((unsigned char)(*s)[*n - 1])) (*n)--;
}

static char *dupn(const char *s, size_t n) {
    char *p = malloc(n + 1);
    if (!p) abort();
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

typedef struct {
    tc_call *v;
    int n;
} calls;

static void calls_add(calls *c, char *name, char *args) {
    tc_call *v = realloc(c->v, (size_t)(c->n + 1) * sizeof *v);
    if (!v) abort();
    c->v = v;
    c->v[c->n].name = name;
    c->v[c->n].arguments = args;
    c->n++;
}

/* One JSON call object -> call; 0 if it is not shaped like one. */
static int json_call(const cJSON *o, calls *c) {
    if (!cJSON_IsObject(o)) return 0;
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(o, "function");
    if (cJSON_IsObject(fn)) o = fn;
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(o, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(o, "parameters");
    if (!args) args = cJSON_GetObjectItemCaseSensitive(o, "arguments");
    if (!cJSON_IsString(name) || !name->valuestring[0]) return 0;
    char *a;
    if (!args || cJSON_IsNull(args)) a = dupn("{}", 2);
    else if (cJSON_IsObject(args)) a = cJSON_PrintUnformatted(args);
    else if (cJSON_IsString(args)) {
        cJSON *p = cJSON_Parse(args->valuestring);
        int ok = cJSON_IsObject(p);
        cJSON_Delete(p);
        if (!ok) return 0;
        a = dupn(args->valuestring, strlen(args->valuestring));
    } else return 0;
    if (!a) abort();
    calls_add(c, dupn(name->valuestring, strlen(name->valuestring)), a);
    return 1;
}

/* Whole text is JSON: an object call or an array of them. */
static int parse_json(const char *s, size_t n, calls *c) {
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(s, n, &end, 0);
    if (!j) return 0;
    size_t rest = (size_t)(s + n - end);
    while (rest && isspace((unsigned char)*end)) end++, rest--;
    int ok = 0;
    if (rest == 0) {
        if (cJSON_IsArray(j)) {
            const cJSON *e;
            ok = cJSON_GetArraySize(j) > 0;
            cJSON_ArrayForEach(e, j) if (ok) ok = json_call(e, c);
        } else ok = json_call(j, c);
    }
    cJSON_Delete(j);
    return ok;
}

static int is_ident(int ch) { return isalnum(ch) || ch == '_'; }

/* Python-ish keyword arguments `k="v", k2=3, k3='x'` up to the closing ')' at
 * *pos; builds a JSON object. Returns 0 on a syntax error. */
static int parse_kwargs(const char *s, size_t n, size_t *pos, cJSON *obj) {
    size_t i = *pos;
    for (;;) {
        while (i < n && isspace((unsigned char)s[i])) i++;
        if (i < n && s[i] == ')') { *pos = i + 1; return 1; }
        size_t k0 = i;
        while (i < n && is_ident((unsigned char)s[i])) i++;
        if (i == k0) return 0;
        char *key = dupn(s + k0, i - k0);
        while (i < n && isspace((unsigned char)s[i])) i++;
        if (i >= n || s[i] != '=') { free(key); return 0; }
        i++;
        while (i < n && isspace((unsigned char)s[i])) i++;
        if (i < n && (s[i] == '"' || s[i] == '\'')) {
            char q = s[i++];
            srv_buf v = { 0 };
            while (i < n && s[i] != q) {
                if (s[i] == '\\' && i + 1 < n) {
                    char e = s[++i];
                    buf_put(&v, e == 'n' ? "\n" : e == 't' ? "\t" : &s[i], 1);
                } else buf_put(&v, &s[i], 1);
                i++;
            }
            if (i >= n) { free(key); buf_free(&v); return 0; }
            i++;
            buf_put(&v, "", 0);
            cJSON_AddStringToObject(obj, key, v.p ? v.p : "");
            buf_free(&v);
        } else {
            size_t v0 = i;
            int depth = 0;
            while (i < n && (depth > 0 || (s[i] != ',' && s[i] != ')'))) {
                if (s[i] == '[' || s[i] == '{' || s[i] == '(') depth++;
                if (s[i] == ']' || s[i] == '}' || s[i] == ')') depth--;
                i++;
            }
            const char *vs = s + v0;
            size_t vn = i - v0;
            trim(&vs, &vn);
            if (!vn) { free(key); return 0; }
            char *lit = dupn(vs, vn);
            cJSON *val = NULL;
            if (!strcmp(lit, "True")) val = cJSON_CreateTrue();
            else if (!strcmp(lit, "False")) val = cJSON_CreateFalse();
            else if (!strcmp(lit, "None")) val = cJSON_CreateNull();
            else val = cJSON_Parse(lit);
            if (!val) val = cJSON_CreateString(lit);
            free(lit);
            cJSON_AddItemToObject(obj, key, val);
        }
        free(key);
        while (i < n && isspace((unsigned char)s[i])) i++;
        if (i < n && s[i] == ',') i++;
        else if (!(i < n && s[i] == ')')) return 0;
    }
}

/* `name(` or `name.call(` at *pos, then kwargs. */
static int parse_pycall(const char *s, size_t n, size_t *pos, int dot_call, calls *c) {
    size_t i = *pos, n0 = i;
    while (i < n && is_ident((unsigned char)s[i])) i++;
    if (i == n0 || isdigit((unsigned char)s[n0])) return 0;
    size_t name_end = i;
    if (dot_call) {
        if (!starts(s + i, n - i, ".call(")) return 0;
        i += 6;
    } else {
        if (i >= n || s[i] != '(') return 0;
        i++;
    }
    cJSON *obj = cJSON_CreateObject();
    if (!parse_kwargs(s, n, &i, obj)) { cJSON_Delete(obj); return 0; }
    char *a = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    if (!a) abort();
    calls_add(c, dupn(s + n0, name_end - n0), a);
    *pos = i;
    return 1;
}

static int parse_pylist(const char *s, size_t n, calls *c) {
    if (n < 2 || s[0] != '[' || s[n - 1] != ']') return 0;
    size_t i = 1;
    for (;;) {
        while (i < n && isspace((unsigned char)s[i])) i++;
        if (!parse_pycall(s, n - 1, &i, 0, c)) return 0;
        while (i < n && isspace((unsigned char)s[i])) i++;
        if (i == n - 1) return 1;
        if (s[i] != ',') return 0;
        i++;
    }
}

void tc_free(tc_call *v, int n) {
    for (int i = 0; i < n; i++) {
        free(v[i].name);
        free(v[i].arguments);
    }
    free(v);
}

int tc_parse(const char *text, size_t len, tc_call **out) {
    *out = NULL;
    const char *s = text;
    size_t n = len;
    trim(&s, &n);
    for (int k = 0; k < 2; k++) { /* literal stop tokens, when the caller kept them */
        if (ends(s, n, "<|eom_id|>") || ends(s, n, "<|eot_id|>")) n -= 10;
        trim(&s, &n);
    }
    int tagged = starts(s, n, PY_TAG);
    if (tagged) {
        s += sizeof PY_TAG - 1;
        n -= sizeof PY_TAG - 1;
        trim(&s, &n);
    }
    calls c = { 0 };
    int ok = 0;
    if (starts(s, n, "<function=")) {
        size_t i = 10, n0 = i;
        /* a function name (letters, digits, _ - .), then its '>', before the
         * closing tag (whose own '>' does not count) */
        while (i < n && (is_ident((unsigned char)s[i]) || s[i] == '-' || s[i] == '.')) i++;
        if (i + 1 + 11 <= n && s[i] == '>' && i > n0 && ends(s, n, "</function>")) {
            const char *body = s + i + 1;
            size_t bn = n - (i + 1) - 11;
            trim(&body, &bn);
            const char *end = NULL;
            cJSON *j = cJSON_ParseWithLengthOpts(body, bn, &end, 0);
            if (cJSON_IsObject(j) && end == body + bn) {
                char *a = cJSON_PrintUnformatted(j);
                if (!a) abort();
                calls_add(&c, dupn(s + n0, i - n0), a);
                ok = 1;
            }
            cJSON_Delete(j);
        }
    } else if (n && (s[0] == '{' || s[0] == '[')) {
        ok = parse_json(s, n, &c) || (s[0] == '[' && (tc_free(c.v, c.n), c.v = NULL, c.n = 0,
                                                      parse_pylist(s, n, &c)));
    } else {
        size_t i = 0;
        ok = parse_pycall(s, n, &i, 1, &c) && i == n;
    }
    if (!ok) {
        tc_free(c.v, c.n);
        c.v = NULL;
        c.n = 0;
        if (tagged && n) { /* Meta: python_tag + anything else is code for the interpreter */
            cJSON *o = cJSON_CreateObject();
            char *code = dupn(s, n);
            cJSON_AddStringToObject(o, "code", code);
            free(code);
            char *a = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
            if (!a) abort();
            calls_add(&c, dupn("code_interpreter", 16), a);
        }
    }
    *out = c.v;
    return c.n;
}

/* Could the reply so far still become a call? Conservative for streaming: hold back
 * while the text is empty, a prefix of a marker, or starts like JSON or `name.call(`. */
int tc_maybe_call(const char *text, size_t len) {
    const char *s = text;
    size_t n = len;
    while (n && isspace((unsigned char)*s)) s++, n--;
    if (!n) return 1;
    static const char *const marks[] = { "<|python_tag|>", "<function=" };
    for (int k = 0; k < 2; k++) {
        size_t m = strlen(marks[k]);
        if (memcmp(s, marks[k], n < m ? n : m) == 0) return 1;
    }
    if (s[0] == '{' || s[0] == '[') return 1;
    size_t i = 0;
    while (i < n && is_ident((unsigned char)s[i])) i++;
    if (i == 0) return 0;
    if (i == n) return 1;
    const char *dc = ".call(";
    size_t r = n - i < 6 ? n - i : 6;
    return memcmp(s + i, dc, r) == 0;
}

cJSON *tc_to_openai(const tc_call *v, int n, const char *id_prefix, int streaming) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        char id[96];
        snprintf(id, sizeof id, "call_%s_%d", id_prefix, i);
        if (streaming) cJSON_AddNumberToObject(o, "index", i);
        cJSON_AddStringToObject(o, "id", id);
        cJSON_AddStringToObject(o, "type", "function");
        cJSON *f = cJSON_AddObjectToObject(o, "function");
        cJSON_AddStringToObject(f, "name", v[i].name);
        cJSON_AddStringToObject(f, "arguments", v[i].arguments);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

/* ---- rendering tools into the prompt ------------------------------------------ */

/* json.dumps(x, indent=4) as Python writes it (HF's tojson(indent=4)). */
static void py_string(srv_buf *b, const char *p) {
    buf_put(b, "\"", 1);
    for (; *p; p++) {
        unsigned char ch = (unsigned char)*p;
        switch (ch) {
        case '"': buf_str(b, "\\\""); break;
        case '\\': buf_str(b, "\\\\"); break;
        case '\n': buf_str(b, "\\n"); break;
        case '\r': buf_str(b, "\\r"); break;
        case '\t': buf_str(b, "\\t"); break;
        case '\b': buf_str(b, "\\b"); break;
        case '\f': buf_str(b, "\\f"); break;
        default:
            if (ch < 0x20) buf_printf(b, "\\u%04x", ch);
            else buf_put(b, (const char *)&ch, 1);
        }
    }
    buf_put(b, "\"", 1);
}

static void py_indent(srv_buf *b, const cJSON *x, int depth) {
    if (cJSON_IsNull(x)) buf_str(b, "null");
    else if (cJSON_IsTrue(x)) buf_str(b, "true");
    else if (cJSON_IsFalse(x)) buf_str(b, "false");
    else if (cJSON_IsString(x)) py_string(b, x->valuestring);
    else if (cJSON_IsNumber(x)) {
        double d = x->valuedouble;
        char num[64];
        /* the range first: casting a double out of long long's range is undefined */
        if (d < 1e16 && d > -1e16 && d == (double)(long long)d) snprintf(num, sizeof num, "%lld", (long long)d);
        else
            for (int prec = 1; prec <= 17; prec++) {
                snprintf(num, sizeof num, "%.*g", prec, d);
                if (strtod(num, NULL) == d) break;
            }
        buf_str(b, num);
    } else if (cJSON_IsArray(x) || cJSON_IsObject(x)) {
        int obj = cJSON_IsObject(x);
        if (!x->child) { buf_str(b, obj ? "{}" : "[]"); return; }
        buf_str(b, obj ? "{" : "[");
        const cJSON *c;
        int first = 1;
        cJSON_ArrayForEach(c, x) {
            buf_str(b, first ? "\n" : ",\n");
            first = 0;
            for (int i = 0; i < 4 * (depth + 1); i++) buf_put(b, " ", 1);
            if (obj) {
                py_string(b, c->string ? c->string : "");
                buf_str(b, ": ");
            }
            py_indent(b, c, depth + 1);
        }
        buf_put(b, "\n", 1);
        for (int i = 0; i < 4 * depth; i++) buf_put(b, " ", 1);
        buf_str(b, obj ? "}" : "]");
    }
}

static char *trimmed(const char *s) {
    size_t n = strlen(s);
    trim(&s, &n);
    return dupn(s, n);
}

int tc_build_messages(const cJSON *messages, const cJSON *tools, herd_chat_message **out, size_t *n_out,
                      herd_error *err) {
    *out = NULL;
    *n_out = 0;
    char *json = cJSON_PrintUnformatted(messages);
    if (!json) abort();
    herd_chat_message *m;
    size_t n;
    herd_status st = herd_chat_parse_json(json, strlen(json), &m, &n, err);
    free(json);
    if (st) return -1;
    if (!tools || !cJSON_IsArray(tools) || cJSON_GetArraySize(tools) == 0) {
        *out = m;
        *n_out = n;
        return 0;
    }
    /* system first (new or the caller's), then the rest with the first user message
     * carrying the tool definitions */
    int has_sys = n > 0 && strcmp(m[0].role, "system") == 0;
    size_t first_user = n;
    for (size_t i = has_sys ? 1 : 0; i < n; i++)
        if (strcmp(m[i].role, "user") == 0) { first_user = i; break; }
    if (first_user == n) {
        herd_chat_messages_free(m, n);
        snprintf(err->msg, sizeof err->msg, "tools need a user message to be placed in (Llama 3.1 puts "
                 "tool definitions in the first user message)");
        return -1;
    }
    size_t n2 = n + (has_sys ? 0 : 1);
    herd_chat_message *r = calloc(n2, sizeof *r);
    if (!r) abort();
    srv_buf sys = { 0 };
    buf_str(&sys, "Environment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n");
    if (has_sys) {
        char *t = trimmed(m[0].content);
        buf_str(&sys, t);
        free(t);
    }
    buf_put(&sys, "", 0);
    size_t k = 0;
    r[k].role = dupn("system", 6);
    r[k++].content = sys.p;
    for (size_t i = has_sys ? 1 : 0; i < n; i++, k++) {
        r[k].role = dupn(m[i].role, strlen(m[i].role));
        r[k].eom = m[i].eom;
        if (i != first_user) {
            r[k].content = dupn(m[i].content, strlen(m[i].content));
            continue;
        }
        srv_buf u = { 0 };
        buf_str(&u, "Given the following functions, please respond with a JSON for a function call "
                    "with its proper arguments that best answers the given prompt.\n\n"
                    "Respond in the format {\"name\": function name, \"parameters\": dictionary of "
                    "argument name and its value}.Do not use variables.\n\n");
        const cJSON *t;
        cJSON_ArrayForEach(t, tools) {
            py_indent(&u, t, 0);
            buf_str(&u, "\n\n");
        }
        char *c = trimmed(m[i].content);
        buf_str(&u, c);
        free(c);
        r[k].content = u.p;
    }
    herd_chat_messages_free(m, n);
    *out = r;
    *n_out = n2;
    return 0;
}
