/* test_toolcall.c - the Llama 3.1 tool-call parser (src/server/toolcall.c) on every
 * shape the model emits, the streaming hold-back predicate, the OpenAI tool_calls
 * JSON, and the rendering of `tools` into the prompt messages. */
#include "test.h"

#include "server/server.h"

/* Parses text; checks one call with name and (canonical JSON) arguments. */
static void one(const char *text, const char *name, const char *args) {
    tc_call *c;
    int n = tc_parse(text, strlen(text), &c);
    CHECKF(n == 1, "'%s' gave %d calls", text, n);
    if (n >= 1) {
        CHECKF(!strcmp(c[0].name, name), "'%s': name '%s', want '%s'", text, c[0].name, name);
        cJSON *got = cJSON_Parse(c[0].arguments), *want = cJSON_Parse(args);
        CHECKF(got && want && cJSON_Compare(got, want, 1), "'%s': arguments %s, want %s", text, c[0].arguments, args);
        cJSON_Delete(got);
        cJSON_Delete(want);
    }
    tc_free(c, n);
}

static void none(const char *text) {
    tc_call *c;
    int n = tc_parse(text, strlen(text), &c);
    CHECKF(n == 0 && c == NULL, "'%s' should not be a call, gave %d", text, n);
    tc_free(c, n);
}

int main(void) {
    /* JSON custom tools: HF form, Meta form, with/without python_tag, eom/eot kept */
    one("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "get_weather", "{\"city\":\"Paris\"}");
    one("<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}<|eom_id|>", "get_weather",
        "{\"city\":\"Paris\"}");
    one("  {\"name\": \"f\", \"parameters\": {\"a\": 1}}<|eot_id|>\n", "f", "{\"a\":1}");
    one("<|python_tag|>{\n    \"type\": \"function\",\n    \"name\": \"trending_songs\",\n    \"parameters\": {\n"
        "        \"n\": \"10\",\n        \"genre\": \"all\"\n    }\n}<|eom_id|>", "trending_songs",
        "{\"n\":\"10\",\"genre\":\"all\"}");
    one("{\"type\": \"function\", \"function\": {\"name\": \"g\", \"arguments\": \"{\\\"x\\\": true}\"}}", "g",
        "{\"x\":true}");
    one("{\"name\": \"noargs\"}", "noargs", "{}");
    /* built-in tools */
    one("<|python_tag|>brave_search.call(query=\"latest price of 1oz gold\")<|eom_id|>", "brave_search",
        "{\"query\":\"latest price of 1oz gold\"}");
    one("<|python_tag|>wolfram_alpha.call(query=\"100th decimal of pi\")", "wolfram_alpha",
        "{\"query\":\"100th decimal of pi\"}");
    one("brave_search.call(query=\"a \\\"quoted\\\" word\", count=3)", "brave_search",
        "{\"query\":\"a \\\"quoted\\\" word\",\"count\":3}");
    /* <function=...> */
    one("<function=trending_songs>{\"n\": 10}</function>", "trending_songs", "{\"n\":10}");
    one("<function=spotify_trending_songs>{\"n\": \"5\"}</function><|eot_id|>", "spotify_trending_songs",
        "{\"n\":\"5\"}");
    /* code interpreter: python_tag + code */
    one("<|python_tag|>def is_prime(n):\n    return n > 1<|eom_id|>", "code_interpreter",
        "{\"code\":\"def is_prime(n):\\n    return n > 1\"}");
    /* 3.2 pythonic list: several calls */
    {
        const char *t = "[get_weather(city='San Francisco', unit=\"celsius\"), get_time(tz=\"PST\", dst=True)]";
        tc_call *c;
        int n = tc_parse(t, strlen(t), &c);
        CHECKF(n == 2, "pythonic list gave %d calls", n);
        if (n == 2) {
            CHECK(!strcmp(c[0].name, "get_weather") && !strcmp(c[1].name, "get_time"));
            CHECKF(!strcmp(c[0].arguments, "{\"city\":\"San Francisco\",\"unit\":\"celsius\"}"), "%s", c[0].arguments);
            CHECKF(!strcmp(c[1].arguments, "{\"tz\":\"PST\",\"dst\":true}"), "%s", c[1].arguments);
        }
        tc_free(c, n);
    }
    /* not calls */
    none("The weather in Paris is sunny.");
    none("");
    none("{\"name\": \"f\", \"parameters\": {}} and then some prose");
    none("I would call brave_search.call(query=\"x\") here");
    none("{\"city\": \"Paris\"}");
    none("<function=f>{not json}</function>");
    none("{\"name\": 3}");
    none("[1, 2, 3]");
    none("<function=f>{\"a\":1}");
    /* no '>' after the name but the closing tag's own (found by fuzz_api: read
     * before the reply's start) */
    none("<function=f,{\"n\": \"5\"}</function>");
    none("<function=</function>");
    none("<function=a b>{}</function>"); /* a name is letters, digits, _ - . */
    none("<function=\x01>{}</function>");
    one("<function=ns.get-time_2>{}</function>", "ns.get-time_2", "{}");

    /* streaming hold-back */
    CHECK(tc_maybe_call("", 0));
    CHECK(tc_maybe_call("  ", 2));
    CHECK(tc_maybe_call("{\"na", 4));
    CHECK(tc_maybe_call("<|pyth", 6));
    CHECK(tc_maybe_call("<|python_tag|>x", 15));
    CHECK(tc_maybe_call("<func", 5));
    CHECK(tc_maybe_call("brave_search", 12));
    CHECK(tc_maybe_call("brave_search.ca", 15));
    CHECK(!tc_maybe_call("Hello there", 11));
    CHECK(!tc_maybe_call("<b>", 3));
    CHECK(!tc_maybe_call("word.other", 10));

    /* OpenAI JSON */
    {
        tc_call c = { "get_weather", "{\"city\":\"Paris\"}" };
        cJSON *a = tc_to_openai(&c, 1, "abc", 0);
        char *s = cJSON_PrintUnformatted(a);
        CHECKF(!strcmp(s, "[{\"id\":\"call_abc_0\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                          "\"arguments\":\"{\\\"city\\\":\\\"Paris\\\"}\"}}]"), "%s", s);
        free(s);
        cJSON_Delete(a);
        a = tc_to_openai(&c, 1, "abc", 1);
        CHECK(cJSON_GetObjectItem(cJSON_GetArrayItem(a, 0), "index") != NULL);
        cJSON_Delete(a);
    }

    /* rendering tools into the messages (HF template, tools in the first user message) */
    {
        cJSON *msgs = cJSON_Parse("[{\"role\":\"system\",\"content\":\" Be brief. \"},{\"role\":\"user\","
                                  "\"content\":\"Weather in Paris?\"},{\"role\":\"assistant\",\"tool_calls\":[{\"id\":"
                                  "\"c1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":"
                                  "\"{\\\"city\\\":\\\"Paris\\\"}\"}}]},{\"role\":\"tool\",\"content\":\"sunny\"}]");
        cJSON *tools = cJSON_Parse("[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":"
                                   "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},"
                                   "\"required\":[\"city\"]}}}]");
        herd_chat_message *m;
        size_t n;
        herd_error err;
        CHECK(tc_build_messages(msgs, tools, &m, &n, &err) == 0);
        CHECKF(n == 4, "%zu messages", n);
        if (n == 4) {
            CHECK(!strcmp(m[0].role, "system"));
            CHECKF(!strcmp(m[0].content, "Environment: ipython\nCutting Knowledge Date: December 2023\n"
                                         "Today Date: 26 Jul 2024\n\nBe brief."), "%s", m[0].content);
            const char *want_user =
                "Given the following functions, please respond with a JSON for a function call with its proper "
                "arguments that best answers the given prompt.\n\nRespond in the format {\"name\": function name, "
                "\"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n{\n"
                "    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",\n"
                "        \"parameters\": {\n            \"type\": \"object\",\n            \"properties\": {\n"
                "                \"city\": {\n                    \"type\": \"string\"\n                }\n"
                "            },\n            \"required\": [\n                \"city\"\n            ]\n"
                "        }\n    }\n}\n\nWeather in Paris?";
            CHECKF(!strcmp(m[1].content, want_user), "user message:\n%s", m[1].content);
            CHECK(!strcmp(m[2].role, "assistant") && m[2].eom == 1);
            CHECKF(!strcmp(m[2].content, "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}"), "%s",
                   m[2].content);
            CHECK(!strcmp(m[3].role, "tool") && !strcmp(m[3].content, "sunny"));
        }
        herd_chat_messages_free(m, n);
        /* no system message: one is added; no user message: an error */
        cJSON *m2 = cJSON_Parse("[{\"role\":\"user\",\"content\":\"hi\"}]");
        CHECK(tc_build_messages(m2, tools, &m, &n, &err) == 0 && n == 2 && !strcmp(m[0].role, "system"));
        herd_chat_messages_free(m, n);
        /* numbers in a schema as json.dumps writes them; one past long long's range
         * (fuzz_api: UBSan caught the cast done before the range check) */
        cJSON *tn = cJSON_Parse("[{\"type\":\"function\",\"function\":{\"name\":\"f\",\"parameters\":"
                                "{\"a\":1e38,\"b\":-5,\"c\":2.5,\"d\":-1e300}}}]");
        CHECK(tc_build_messages(m2, tn, &m, &n, &err) == 0 && n == 2);
        if (n == 2)
            CHECKF(strstr(m[1].content, "\"a\": 1e+38,\n") && strstr(m[1].content, "\"b\": -5,\n") &&
                   strstr(m[1].content, "\"c\": 2.5,\n") && strstr(m[1].content, "\"d\": -1e+300\n"), "%s", m[1].content);
        herd_chat_messages_free(m, n);
        cJSON_Delete(tn);
        cJSON *m3 = cJSON_Parse("[{\"role\":\"system\",\"content\":\"s\"}]");
        CHECK(tc_build_messages(m3, tools, &m, &n, &err) == -1 && strstr(err.msg, "user message"));
        /* without tools: the messages unchanged */
        CHECK(tc_build_messages(m2, NULL, &m, &n, &err) == 0 && n == 1 && !strcmp(m[0].content, "hi"));
        herd_chat_messages_free(m, n);
        cJSON_Delete(m2);
        cJSON_Delete(m3);
        cJSON_Delete(msgs);
        cJSON_Delete(tools);
    }
    TEST_MAIN_END("test_toolcall");
}
