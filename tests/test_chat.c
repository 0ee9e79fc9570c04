/* test_chat.c - Llama 3.1 chat rendering (Meta ChatFormat) and the OpenAI-style JSON
 * message reader: exact ids on a small vocabulary, error messages naming the
 * message and field, and with the real Llama 3 vocabulary the dialogs of Meta's
 * prompt_format.md and HF's template golden (tests/data/chat_golden.txt, ids built
 * piece by piece by tests/data/mk_tok_golden.py with the Python reference).
 */
#include "tokenizer_impl.h"
#include "test.h"

static herd_tokenizer *small_vocab(void) {
    static const char *const toks[] = { "\n\n", "user", "assistant" };
    size_t lens[3] = { 2, 4, 9 };
    herd_tokenizer *t = NULL;
    herd_error err;
    CHECKF(herd_tokenizer_from_tokens(&t, toks, lens, 3, &err) == HERD_OK, "%s", err.msg);
    return t;
}

static int ids_eq(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    int ok = na == nb && memcmp(a, b, na * sizeof *a) == 0;
    if (!ok) {
        size_t i = 0;
        while (i < na && i < nb && a[i] == b[i]) i++;
        fprintf(stderr, "  ids differ at %zu (got %zu, want %zu): got %d want %d\n", i, na, nb,
                i < na ? a[i] : -1, i < nb ? b[i] : -1);
    }
    return ok;
}

static void test_render_small(void) {
    herd_tokenizer *t = small_vocab();
    if (!t) return;
    /* n_bpe = 259: BOS 259, start_header 265, end_header 266, eom 267, eot 268, python_tag 269 */
    herd_chat_message m[] = {
        { "user", "hi", 0 },
        { "assistant", "<|python_tag|>x", 1 },
        { "tool", " <|eot_id|>", 0 },
    };
    int32_t *ids;
    size_t n;
    herd_error err;
    CHECKF(herd_chat_render(t, m, 3, 1, &ids, &n, &err) == HERD_OK, "%s", err.msg);
    const int32_t want[] = {
        259,
        265, 257, 266, 256, 'h', 'i', 268,
        265, 258, 266, 256, 269, 'x', 267,
        265, 'i', 'p', 'y', 't', 'h', 'o', 'n', 266, 256,
        ' ', '<', '|', 'e', 'o', 't', '_', 'i', 'd', '|', '>', 268,
        265, 258, 266, 256,
    };
    CHECK(ids_eq(ids, n, want, sizeof want / sizeof *want));
    free(ids);
    /* eom only for assistant; content kept verbatim (not stripped); no generation prompt */
    herd_chat_message u[] = { { "user", " a\n", 1 } };
    CHECK(herd_chat_render(t, u, 1, 0, &ids, &n, &err) == HERD_OK);
    const int32_t want2[] = { 259, 265, 257, 266, 256, ' ', 'a', '\n', 268 };
    CHECK(ids_eq(ids, n, want2, sizeof want2 / sizeof *want2));
    free(ids);
    CHECK(herd_chat_render(t, NULL, 0, 0, &ids, &n, &err) == HERD_OK && n == 1 && ids[0] == 259);
    free(ids);
    herd_chat_message bad[] = { { "user", "x", 0 }, { "moderator", "y", 0 } };
    CHECK(herd_chat_render(t, bad, 2, 1, &ids, &n, &err) == HERD_ERR_ARG && ids == NULL);
    CHECKF(strstr(err.msg, "message 1: role 'moderator'") != NULL, "%s", err.msg);
    herd_tokenizer_free(t);
}

static void parse_error(const char *json, const char *want) {
    herd_chat_message *m = NULL;
    size_t n = 0;
    herd_error err = { { 0 } };
    herd_status st = herd_chat_parse_json(json, strlen(json), &m, &n, &err);
    CHECKF(st != HERD_OK && m == NULL && strstr(err.msg, want), "json %s: want '%s', got '%s'", json, want,
           err.msg);
}

static void test_parse_json(void) {
    const char *j = "{\"model\": \"x\", \"messages\": ["
                    "{\"role\": \"system\", \"content\": \"Be brief.\"},"
                    "{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"a\"}, {\"type\": \"text\", \"text\": \"b\"}]},"
                    "{\"role\": \"assistant\", \"content\": null, \"tool_calls\": [{\"type\": \"function\", \"function\": "
                    "{\"name\": \"get\", \"arguments\": \"{\\\"city\\\": \\\"Paris\\\", \\\"n\\\": [1, 2.5], \\\"q\\\": \\\"\\\\\\\"\\\\n\\\"}\"}}]},"
                    "{\"role\": \"tool\", \"content\": {\"ok\": true, \"v\": null}},"
                    "{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"brave_search\", \"arguments\": {\"query\": \"x y\"}}}]}"
                    "]}";
    herd_chat_message *m;
    size_t n;
    herd_error err;
    CHECKF(herd_chat_parse_json(j, strlen(j), &m, &n, &err) == HERD_OK, "%s", err.msg);
    if (n == 5) {
        CHECK(strcmp(m[0].role, "system") == 0 && strcmp(m[0].content, "Be brief.") == 0 && !m[0].eom);
        CHECK(strcmp(m[1].content, "ab") == 0);
        CHECKF(strcmp(m[2].content, "{\"name\": \"get\", \"parameters\": {\"city\": \"Paris\", \"n\": [1, 2.5], "
                                    "\"q\": \"\\\"\\n\"}}") == 0 && m[2].eom, "%s", m[2].content);
        CHECKF(strcmp(m[3].role, "tool") == 0 && strcmp(m[3].content, "{\"ok\": true, \"v\": null}") == 0,
               "%s", m[3].content);
        CHECKF(strcmp(m[4].content, "<|python_tag|>brave_search.call(query=\"x y\")") == 0 && m[4].eom, "%s",
               m[4].content);
    } else {
        CHECKF(0, "parsed %zu messages, want 5", n);
    }
    herd_chat_messages_free(m, n);

    /* OpenAI's developer role is a system message: parsed as one, rendered with the
     * same ids */
    const char *jd = "[{\"role\": \"developer\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"hi\"}]";
    const char *js = "[{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"hi\"}]";
    herd_chat_message *md, *ms;
    size_t nd, ns;
    if (herd_chat_parse_json(jd, strlen(jd), &md, &nd, &err) != HERD_OK) {
        CHECKF(0, "developer message: %s", err.msg);
    } else {
        CHECKF(nd == 2 && strcmp(md[0].role, "system") == 0 && strcmp(md[0].content, "Be brief.") == 0,
               "developer parsed as role '%s'", nd ? md[0].role : "");
        herd_tokenizer *t = small_vocab();
        if (t && herd_chat_parse_json(js, strlen(js), &ms, &ns, &err) == HERD_OK) {
            int32_t *a = NULL, *b = NULL;
            size_t na = 0, nb = 0;
            herd_chat_message raw = { "developer", "Be brief.", 0 };
            CHECKF(herd_chat_render(t, md, nd, 1, &a, &na, &err) == HERD_OK &&
                   herd_chat_render(t, ms, ns, 1, &b, &nb, &err) == HERD_OK, "%s", err.msg);
            CHECK(na == nb && na > 0 && memcmp(a, b, na * sizeof *a) == 0);
            free(a);
            free(b);
            /* the render API takes the role name directly too */
            int32_t *c = NULL, *d = NULL;
            size_t nc = 0, ndd = 0;
            herd_chat_message sys = { "system", "Be brief.", 0 };
            CHECKF(herd_chat_render(t, &raw, 1, 0, &c, &nc, &err) == HERD_OK &&
                   herd_chat_render(t, &sys, 1, 0, &d, &ndd, &err) == HERD_OK, "%s", err.msg);
            CHECK(nc == ndd && nc > 0 && memcmp(c, d, nc * sizeof *c) == 0);
            free(c);
            free(d);
            herd_chat_messages_free(ms, ns);
        }
        herd_tokenizer_free(t);
        herd_chat_messages_free(md, nd);
    }

    parse_error("[{\"role\": \"user\", \"content\": \"x\"", "invalid JSON");
    parse_error("{\"role\": \"user\"}", "expected an array of messages");
    parse_error("[{\"role\": \"user\", \"content\": \"x\"}, {\"content\": \"y\"}]", "messages[1].role: missing");
    parse_error("[{\"role\": 3}]", "messages[0].role: expected a string");
    parse_error("[\"hi\"]", "messages[0].role: the message is not an object");
    parse_error("[{\"role\": \"wizard\"}]", "messages[0].role is 'wizard'");
    parse_error("[{\"role\": \"user\", \"content\": 5}]", "messages[0].content: expected a string");
    parse_error("[{\"role\": \"user\", \"content\": [{\"type\": \"image_url\"}]}]",
                "messages[0].content[0]: expected {\"type\": \"text\"");
    parse_error("[{\"role\": \"user\", \"content\": \"x\", \"tool_calls\": []}]", "only assistant messages");
    parse_error("[{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\", \"arguments\": \"{oops\"}}]}]",
                "messages[0].tool_calls[0].function.arguments");
    parse_error("[{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"name\": \"f\"}}, {\"function\": {\"name\": \"g\"}}]}]",
                "messages[0].tool_calls has 2 calls");
    parse_error("[{\"role\": \"assistant\", \"tool_calls\": [{\"function\": {\"arguments\": {}}}]}]",
                "messages[0].tool_calls[0]: expected");
    herd_chat_messages_free(NULL, 0);
}

static int hexval(int c) { return c >= '0' && c <= '9' ? c - '0' : c - 'a' + 10; }

static void test_golden(void) {
    const char *model = getenv("HERD_LLAMA3_TOKENIZER");
    if (!model) model = "../shared/tokenizers/llama3/tokenizer.model";
    if (!herd_file_exists(model)) {
        printf("SKIP: Llama 3 tokenizer %s not found (set HERD_LLAMA3_TOKENIZER); chat golden tests not run\n",
               model);
        return;
    }
    herd_tokenizer *t = NULL;
    herd_error err;
    CHECKF(herd_tokenizer_load_tiktoken(&t, model, &err) == HERD_OK, "%s", err.msg);
    if (!t) return;
    char *text;
    size_t len;
    CHECKF(herd_read_file("tests/data/chat_golden.txt", &text, &len, &err) == HERD_OK, "%s", err.msg);
    int cases = 0;
    char *save = NULL;
    for (char *line = text ? strtok_r(text, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        char name[64];
        int gen, off;
        if (sscanf(line, "%63s %d %n", name, &gen, &off) != 2) continue;
        char *h = line + off, *colon = strstr(h, " : ");
        size_t hl = (size_t)(colon - h);
        char *json = malloc(hl / 2 + 1);
        for (size_t i = 0; i + 1 < hl; i += 2) json[i / 2] = (char)(hexval(h[i]) << 4 | hexval(h[i + 1]));
        int32_t *want = malloc(strlen(colon) * sizeof *want);
        size_t nw = 0;
        for (char *p = colon + 3, *e;; p = e) {
            long v = strtol(p, &e, 10);
            if (e == p) break;
            want[nw++] = (int32_t)v;
        }
        herd_chat_message *m;
        size_t n;
        int32_t *ids = NULL;
        size_t n_ids = 0;
        CHECKF(herd_chat_parse_json(json, hl / 2, &m, &n, &err) == HERD_OK, "%s: %s", name, err.msg);
        CHECKF(herd_chat_render(t, m, n, gen, &ids, &n_ids, &err) == HERD_OK, "%s: %s", name, err.msg);
        CHECKF(ids_eq(ids, n_ids, want, nw), "chat golden '%s'", name);
        herd_chat_messages_free(m, n);
        free(ids);
        free(want);
        free(json);
        cases++;
    }
    free(text);
    CHECKF(cases == 4, "%d chat golden cases", cases);
    /* Meta's example: header role ids 9125/882/78191, "\n\n" = 271 */
    herd_chat_message m[] = { { "system", "S", 0 }, { "user", "U", 0 } };
    int32_t *ids;
    size_t n;
    CHECK(herd_chat_render(t, m, 2, 1, &ids, &n, &err) == HERD_OK);
    CHECK(n > 8 && ids[0] == 128000 && ids[1] == 128006 && ids[2] == 9125 && ids[3] == 128007 && ids[4] == 271);
    CHECK(n > 8 && ids[n - 4] == 128006 && ids[n - 3] == 78191 && ids[n - 2] == 128007 && ids[n - 1] == 271);
    free(ids);
    herd_tokenizer_free(t);
}

int main(void) {
    test_render_small();
    test_parse_json();
    test_golden();
    TEST_MAIN_END("test_chat");
}
