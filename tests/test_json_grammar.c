/* test_json_grammar.c - constrained JSON output (src/json_grammar.c): whole
 * texts a grammar must accept or refuse, byte by byte; schemas it must refuse,
 * with the message; and on a small byte-level vocabulary, random walks through
 * the allowed tokens that must end in text cJSON parses and the schema's shape
 * holds for (checked here by hand, not by the grammar). */
#include <cjson/cJSON.h>

#include "herd.h"
#include "test.h"
#include "tokenizer.h"

/* A vocabulary for t (the end: 256, the first special of a byte-level one); NULL
 * for t NULL (bytes only). */
static herd_json_vocab *vocab(const herd_tokenizer *t) {
    herd_json_vocab *v = NULL;
    herd_error err = { { 0 } };
    const int32_t end = 256;
    if (t) CHECKF(herd_json_vocab_new(&v, t, &end, 1, &err) == HERD_OK, "%s", err.msg);
    return v;
}

static herd_json_grammar *grammar(const herd_json_vocab *v, const char *schema) {
    herd_json_grammar *g = NULL;
    herd_error err = { { 0 } };
    CHECKF(herd_json_grammar_new(&g, v, schema, &err) == HERD_OK, "%s: %s", schema ? schema : "(any)", err.msg);
    return g;
}

/* 1: text is a whole value; 0: a valid prefix only; -1: refused at some byte. */
static int judge(const herd_json_grammar *g, const char *text) {
    herd_json_state *s;
    herd_error err;
    if (herd_json_state_new(&s, g, &err) != HERD_OK) return -2;
    int r = herd_json_state_feed(s, text, strlen(text)) ? -1 : herd_json_state_complete(s);
    herd_json_state_free(s);
    return r;
}

#define WHOLE(g, text) CHECKF(judge(g, text) == 1, "expected whole: %s (got %d)", text, judge(g, text))
#define PREFIX(g, text) CHECKF(judge(g, text) == 0, "expected prefix: %s (got %d)", text, judge(g, text))
#define REFUSED(g, text) CHECKF(judge(g, text) == -1, "expected refused: %s (got %d)", text, judge(g, text))

static void any_object(void) {
    herd_json_grammar *g = grammar(NULL, NULL);
    if (!g) return;
    WHOLE(g, "{}");
    WHOLE(g, "{\"a\": 1}");
    WHOLE(g, "{\n  \"a\": [1, -2.5e+3, 0.25, true, false, null, \"x\\ty\\u00e9\"],\n  \"b\": {\"c\": {}}\n}");
    WHOLE(g, "{\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\": \"\xe4\xb8\xad\"}");
    PREFIX(g, "");
    PREFIX(g, "{\"a\": 1");
    PREFIX(g, "{\"a\": [1, 2");
    PREFIX(g, "{\"a\": \"\xe2\x82"); /* inside a UTF-8 sequence */
    REFUSED(g, "[1]");               /* json_object: an object */
    REFUSED(g, "\"x\"");
    REFUSED(g, "{} ");               /* nothing after the value */
    REFUSED(g, " {}");               /* nor before it */
    REFUSED(g, "{}{}");
    REFUSED(g, "{\"a\" 1}");
    REFUSED(g, "{\"a\": 01}");
    REFUSED(g, "{\"a\": 1.}");
    REFUSED(g, "{\"a\": .5}");
    REFUSED(g, "{\"a\": [1,]}");
    REFUSED(g, "{\"a\": 1,}");
    REFUSED(g, "{,}");
    REFUSED(g, "{\"a\": tru}");
    REFUSED(g, "{\"a\": \"x\ny\"}");    /* a raw control character in a string */
    REFUSED(g, "{\"a\": \"\\x\"}");     /* an unknown escape */
    REFUSED(g, "{\"a\": \"\\u12g4\"}");
    /* \u escapes: surrogates only in pairs, decided digit by digit (no dead ends) */
    WHOLE(g, "{\"a\": \"\\uD83D\\ude00\"}");
    PREFIX(g, "{\"a\": \"\\uD83D");
    PREFIX(g, "{\"a\": \"\\uD83D\\u");
    REFUSED(g, "{\"a\": \"\\uD83Dx");
    REFUSED(g, "{\"a\": \"\\uD83D\\u0041");
    REFUSED(g, "{\"a\": \"\\uDE");   /* a low surrogate alone */
    REFUSED(g, "{\"a\": \"\\uD83D\\uD8");
    WHOLE(g, "{\"a\": \"\\ud7ff\\uE000\"}");
    REFUSED(g, "{\"a\": \"\xc0\xaf\"}"); /* overlong */
    REFUSED(g, "{\"a\": \"\xed\xa0\x80\"}"); /* a surrogate */
    REFUSED(g, "{\"a\": \"\xf4\x90\x80\x80\"}"); /* past U+10FFFF */
    REFUSED(g, "{\"a\": \"\x80\"}");
    REFUSED(g, "{\"a\": 12345678901234567890123456789}"); /* longer than a number may be */
    /* whitespace runs are bounded, so a model cannot pad forever */
    char ws[80] = "{";
    memset(ws + 1, ' ', 21);
    REFUSED(g, ws);
    memset(ws + 1, ' ', 20);
    ws[21] = 0;
    PREFIX(g, ws);
    /* nesting is bounded */
    char deep[64] = { 0 };
    memset(deep, '[', 40);
    deep[0] = '{';
    deep[1] = '"', deep[2] = '"', deep[3] = ':';
    REFUSED(g, deep);
    herd_json_grammar_free(g);
}

static void schemas(void) {
    herd_json_grammar *g = grammar(NULL, "{\"type\": \"object\", \"properties\": {"
        "\"name\": {\"type\": \"string\", \"minLength\": 1, \"maxLength\": 3},"
        "\"age\": {\"type\": \"integer\"}, \"score\": {\"type\": \"number\"},"
        "\"kind\": {\"enum\": [\"cat\", \"dog\", 1, 12, null]}, \"tags\": {\"type\": \"array\", "
        "\"items\": {\"type\": \"boolean\"}, \"minItems\": 1, \"maxItems\": 2}},"
        "\"required\": [\"name\", \"kind\"], \"additionalProperties\": false}");
    if (g) {
        WHOLE(g, "{\"name\": \"Bo\", \"kind\": \"cat\"}");
        WHOLE(g, "{\"name\":\"\xc3\xa9\xc3\xa9\xc3\xa9\",\"age\":-3,\"score\":1.5e-3,\"kind\":12,\"tags\":[true,false]}");
        WHOLE(g, "{\"name\": \"\\n\", \"kind\": 1}");
        WHOLE(g, "{\"name\": \"a\", \"kind\": null, \"tags\": [false]}");
        PREFIX(g, "{\"name\": \"a\", \"kind\": 1"); /* 1, or 12 to come */
        REFUSED(g, "{\"name\": \"abcd\", \"kind\": 1}"); /* maxLength */
        REFUSED(g, "{\"name\": \"\", \"kind\": 1}");     /* minLength */
        REFUSED(g, "{\"kind\": 1}");                     /* name is required, and first */
        REFUSED(g, "{\"name\": \"a\"}");                 /* kind is required */
        REFUSED(g, "{\"name\": \"a\", \"kind\": 1, \"age\": 2}"); /* the schema's order */
        REFUSED(g, "{\"name\": \"a\", \"age\": 2.5, \"kind\": 1}"); /* an integer */
        REFUSED(g, "{\"name\": \"a\", \"kind\": \"cow\"}");
        REFUSED(g, "{\"name\": \"a\", \"kind\": 2}");
        REFUSED(g, "{\"name\": \"a\", \"kind\": 1, \"tags\": []}");     /* minItems */
        REFUSED(g, "{\"name\": \"a\", \"kind\": 1, \"tags\": [true, true, true]}"); /* maxItems */
        REFUSED(g, "{\"name\": \"a\", \"kind\": 1, \"other\": 1}");
        REFUSED(g, "{\"name\": \"a\", \"kind\": 1,}");
        REFUSED(g, "{\"nam\": \"a\", \"kind\": 1}");
        herd_json_grammar_free(g);
    }
    /* Pydantic's shapes: $defs and $ref, Optional as anyOf with null, a list of models */
    g = grammar(NULL, "{\"$defs\": {\"Pet\": {\"properties\": {\"n\": {\"title\": \"N\", \"type\": \"string\"}},"
        "\"required\": [\"n\"], \"title\": \"Pet\", \"type\": \"object\"}},"
        "\"properties\": {\"pets\": {\"items\": {\"$ref\": \"#/$defs/Pet\"}, \"type\": \"array\"},"
        "\"best\": {\"anyOf\": [{\"$ref\": \"#/$defs/Pet\"}, {\"type\": \"null\"}], \"default\": null},"
        "\"when\": {\"type\": \"string\", \"format\": \"date-time\"}},"
        "\"required\": [\"pets\", \"best\"], \"title\": \"Owner\", \"type\": \"object\"}");
    if (g) {
        WHOLE(g, "{\"pets\": [{\"n\": \"a\"}, {\"n\": \"b\"}], \"best\": null}");
        WHOLE(g, "{\"pets\": [], \"best\": {\"n\": \"a\"}, \"when\": \"2026\"}");
        REFUSED(g, "{\"pets\": [{\"m\": \"a\"}], \"best\": null}");
        REFUSED(g, "{\"pets\": [], \"best\": 1}");
        herd_json_grammar_free(g);
    }
    /* recursion through $ref "#", a dictionary, type lists, const, any value */
    g = grammar(NULL, "{\"type\": \"object\", \"properties\": {\"v\": {\"type\": [\"integer\", \"string\"]},"
        "\"kids\": {\"type\": \"array\", \"items\": {\"$ref\": \"#\"}}, \"m\": {\"type\": \"object\", "
        "\"additionalProperties\": {\"type\": \"number\"}}, \"c\": {\"const\": \"k\\\"q\"}, \"x\": {}},"
        "\"required\": [\"v\"]}");
    if (g) {
        WHOLE(g, "{\"v\": 1, \"kids\": [{\"v\": \"a\", \"kids\": [{\"v\": 2}]}]}");
        WHOLE(g, "{\"v\": 1, \"m\": {\"p\": 1.5, \"q\": -2}, \"c\": \"k\\\"q\", \"x\": [null, {\"y\": \"z\"}]}");
        REFUSED(g, "{\"v\": true}");
        REFUSED(g, "{\"v\": 1, \"m\": {\"p\": \"s\"}}");
        REFUSED(g, "{\"v\": 1, \"c\": \"kq\"}");
        REFUSED(g, "{\"v\": 1, \"kids\": [{}]}");
        herd_json_grammar_free(g);
    }
    /* a top-level value that is not an object; a number can end at the end */
    g = grammar(NULL, "{\"type\": \"number\"}");
    if (g) {
        WHOLE(g, "42");
        WHOLE(g, "-0.5E7");
        PREFIX(g, "-");
        PREFIX(g, "1e");
        REFUSED(g, "{}");
        herd_json_grammar_free(g);
    }
    /* a key that needs escaping is matched in the encoder's escaping */
    g = grammar(NULL, "{\"properties\": {\"a\\\"b\\u00e9\": {\"type\": \"null\"}}, \"required\": [\"a\\\"b\\u00e9\"]}");
    if (g) {
        WHOLE(g, "{\"a\\\"b\xc3\xa9\": null}");
        herd_json_grammar_free(g);
    }
}

/* anyOfs nested through $ref multiply (8^7 paths here): the work per byte is
 * bounded, and the first alternatives still answer */
static void nested_alternatives(void) {
    char schema[4096];
    int n = snprintf(schema, sizeof schema, "{\"$ref\": \"#/$defs/d0\", \"$defs\": {");
    for (int d = 0; d < 7; d++) {
        n += snprintf(schema + n, sizeof schema - (size_t)n, "\"d%d\": {\"anyOf\": [", d);
        for (int k = 0; k < 8; k++)
            n += snprintf(schema + n, sizeof schema - (size_t)n, "%s{\"$ref\": \"#/$defs/d%d\"}", k ? ", " : "", d + 1);
        n += snprintf(schema + n, sizeof schema - (size_t)n, "]}, ");
    }
    snprintf(schema + n, sizeof schema - (size_t)n, "\"d7\": {\"type\": \"null\"}}}");
    herd_json_grammar *g = grammar(NULL, schema);
    if (!g) return;
    WHOLE(g, "null");
    REFUSED(g, "1");
    herd_json_grammar_free(g);
}

/* ---- random documents: a writer independent of the grammar ------------------------ */

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void put(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = 2 * (b->n + n + 1);
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }
static uint64_t next_rand(void);

static void ws(sbuf *b) { /* 0 to 4 bytes of JSON whitespace */
    static const char w[] = " \t\n\r";
    for (int k = (int)(next_rand() % 5); k > 0; k--) put(b, &w[next_rand() % 4], 1);
}

static void string_(sbuf *b) {
    static const char *const parts[] = { "a", "Z", " ", "~", "\\\"", "\\\\", "\\/", "\\n", "\\t", "\\u00e9", "\\uD83D\\uDE00",
                                         "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\x7f", "{", "]", ":" };
    puts_(b, "\"");
    for (int k = (int)(next_rand() % 8); k > 0; k--) puts_(b, parts[next_rand() % (sizeof parts / sizeof *parts)]);
    puts_(b, "\"");
}

static void value(sbuf *b, int depth) {
    const int kind = (int)(next_rand() % (depth < 5 ? 9 : 7));
    static const char *const nums[] = { "0", "-0", "7", "-12", "3.25", "1e5", "-2.5E-3", "10e+2", "0.001", "123456789" };
    switch (kind) {
    case 0: puts_(b, "true"); break;
    case 1: puts_(b, "false"); break;
    case 2: puts_(b, "null"); break;
    case 3: case 4: string_(b); break;
    case 5: case 6: puts_(b, nums[next_rand() % 10]); break;
    case 7: { /* array */
        puts_(b, "[");
        int n = (int)(next_rand() % 4);
        ws(b);
        for (int i = 0; i < n; i++) {
            if (i) puts_(b, ","), ws(b);
            value(b, depth + 1);
            ws(b);
        }
        puts_(b, "]");
        break;
    }
    default: { /* object */
        puts_(b, "{");
        int n = (int)(next_rand() % 4);
        ws(b);
        for (int i = 0; i < n; i++) {
            if (i) puts_(b, ","), ws(b);
            string_(b);
            ws(b);
            puts_(b, ":");
            ws(b);
            value(b, depth + 1);
            ws(b);
        }
        puts_(b, "}");
    }
    }
}

/* JSON written by the generator above (objects at the root, whitespace inside
 * only, within the grammar's limits): whole, and every shorter prefix a prefix;
 * one byte changed: whatever the grammar then calls whole, cJSON parses. */
static void random_documents(void) {
    herd_json_grammar *g = grammar(NULL, NULL);
    if (!g) return;
    sbuf b = { 0 };
    int whole = 0, prefixes = 0, n_prefixes = 0, mutants = 0, mutants_ok = 1;
    for (int d = 0; d < 150; d++) {
        b.n = 0;
        do { /* the root is an object */
            b.n = 0;
            value(&b, 0);
        } while (b.p[0] != '{');
        whole += judge(g, b.p) == 1;
        char *pre = malloc(b.n + 1);
        for (size_t k = 0; k < b.n; k++) {
            memcpy(pre, b.p, k);
            pre[k] = 0;
            /* a prefix that ends inside a \u escape or a UTF-8 sequence is still a prefix */
            prefixes += judge(g, pre) == 0;
            n_prefixes++;
        }
        for (int m = 0; m < 4 && b.n > 1; m++) {
            memcpy(pre, b.p, b.n + 1);
            pre[next_rand() % b.n] = "\"{}[],:0-e.\\ a\x80"[next_rand() % 16];
            if (strlen(pre) != b.n || judge(g, pre) != 1) continue;
            mutants++;
            cJSON *v = cJSON_Parse(pre);
            if (!v) mutants_ok = 0, fprintf(stderr, "mutant accepted but not JSON: %s\n", pre);
            cJSON_Delete(v);
        }
        free(pre);
    }
    CHECKF(whole == 150, "%d of 150 generated documents whole", whole);
    CHECKF(prefixes == n_prefixes, "%d of %d prefixes of them prefixes", prefixes, n_prefixes);
    CHECKF(mutants_ok, "every one-byte mutant the grammar calls whole parses (%d of them)", mutants);
    free(b.p);
    herd_json_grammar_free(g);
}

/* exactly one of some texts (guided_choice): a choice that is a prefix of another
 * is whole and may go on */
static void choices(void) {
    const char *c[] = { "yes", "no", "nope", "caf\xc3\xa9 \"x\"" };
    herd_json_grammar *g = NULL;
    herd_error err = { { 0 } };
    CHECKF(herd_json_grammar_new_choice(&g, NULL, c, 4, &err) == HERD_OK, "%s", err.msg);
    if (g) {
        WHOLE(g, "yes");
        WHOLE(g, "no");
        WHOLE(g, "nope");
        WHOLE(g, "caf\xc3\xa9 \"x\"");
        PREFIX(g, "ye");
        PREFIX(g, "nop");
        REFUSED(g, "yes!");
        REFUSED(g, " yes");
        REFUSED(g, "maybe");
        REFUSED(g, "\"yes\"");
        herd_json_grammar_free(g);
    }
    const char *empty[] = { "a", "" };
    CHECK(herd_json_grammar_new_choice(&g, NULL, empty, 2, &err) == HERD_ERR_ARG && strstr(err.msg, "choice 1 is empty"));
    CHECK(herd_json_grammar_new_choice(&g, NULL, c, 0, &err) == HERD_ERR_ARG && strstr(err.msg, "0 of them"));
    CHECK(herd_json_grammar_new_choice(&g, NULL, c, 65, &err) == HERD_ERR_ARG && g == NULL);
}

static void refused_schema(const char *schema, const char *want) {
    herd_json_grammar *g = NULL;
    herd_error err = { { 0 } };
    herd_status st = herd_json_grammar_new(&g, NULL, schema, &err);
    CHECKF(st != HERD_OK && g == NULL && strstr(err.msg, want), "%s: status %d, message '%s', want '%s'",
           schema, (int)st, err.msg, want);
    herd_json_grammar_free(g);
}

static void bad_schemas(void) {
    refused_schema("{\"type\": \"string\", \"pattern\": \"^a\"}", "json schema at #: 'pattern' is not supported");
    refused_schema("{\"properties\": {\"a\": {\"type\": \"integer\", \"minimum\": 0}}}",
                   "at #/properties/a: 'minimum' is not supported");
    refused_schema("{\"type\": \"strin\"}", "unknown type 'strin'");
    refused_schema("{\"type\": \"object\", \"required\": [\"a\"]}", "'required' names 'a', which has no schema");
    refused_schema("{\"$ref\": \"#/$defs/Nope\"}", "'$ref' '#/$defs/Nope' points at nothing");
    refused_schema("{\"$ref\": \"http://x/s.json\"}", "only references within the schema");
    refused_schema("{\"$defs\": {\"A\": {\"$ref\": \"#/$defs/A\"}}, \"$ref\": \"#/$defs/A\"}", "refers to itself");
    refused_schema("{\"type\": \"array\", \"minItems\": 3, \"maxItems\": 2}", "minItems > maxItems");
    refused_schema("{\"type\": \"string\", \"maxLength\": -1}", "'maxLength' must be a non-negative integer");
    refused_schema("{\"enum\": []}", "'enum' must be a non-empty array");
    refused_schema("false", "accepts nothing");
    refused_schema("[1]", "expected an object");
    refused_schema("{\"type\": \"string\",", "not valid JSON");
    refused_schema("{\"type\": \"string\", \"anyOf\": [{}]}", "combine at most one of");
}

/* ---- token level: random walks on a small vocabulary ------------------------------ */

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static int utf8_chars(const char *s) {
    int n = 0;
    for (; *s; s++) n += ((uint8_t)*s & 0xC0) != 0x80;
    return n;
}

/* The schema's shape, checked independently of the grammar. */
static int shape_ok(const cJSON *v) {
    if (!cJSON_IsObject(v)) return 0;
    const char *order[] = { "id", "label", "on", "xs" };
    int k = 0, seen = 0;
    for (const cJSON *p = v->child; p; p = p->next) {
        while (k < 4 && strcmp(order[k], p->string)) k++;
        if (k == 4) return 0; /* unknown, repeated or out of order */
        seen |= 1 << k;
        if (k == 0 && !(cJSON_IsNumber(p) && p->valuedouble == (double)(long long)p->valuedouble)) return 0;
        if (k == 1 && !(cJSON_IsString(p) && utf8_chars(p->valuestring) <= 4)) return 0;
        if (k == 2 && !cJSON_IsBool(p)) return 0;
        if (k == 3) {
            if (!cJSON_IsArray(p) || cJSON_GetArraySize(p) > 3) return 0;
            for (const cJSON *x = p->child; x; x = x->next)
                if (!(cJSON_IsString(x) && (!strcmp(x->valuestring, "up") || !strcmp(x->valuestring, "down")))) return 0;
        }
        k++;
    }
    return (seen & 3) == 3;
}

static void walks(const herd_tokenizer *t, const herd_json_vocab *v, const char *schema, int n_walks,
                  int (*check)(const cJSON *)) {
    herd_json_grammar *g = grammar(v, schema);
    if (!g) return;
    const int V = herd_tokenizer_n_vocab(t);
    float *l = malloc((size_t)V * sizeof *l);
    int *ok = malloc((size_t)V * sizeof *ok);
    char text[8192];
    int parsed = 0, mask_agrees = 1, refused_agrees = 1;
    for (int w = 0; w < n_walks; w++) {
        herd_json_state *s;
        herd_error err;
        if (herd_json_state_new(&s, g, &err) != HERD_OK) break;
        size_t n = 0;
        int ended = 0;
        for (int step = 0; step < 3000 && !ended; step++) {
            for (int i = 0; i < V; i++) l[i] = 0;
            const int allowed = herd_json_state_mask(s, l);
            int m = 0, m_punct = 0;
            for (int i = 0; i < V; i++) {
                if (l[i] != 0) continue;
                ok[m++] = i;
                size_t len;
                const char *b = herd_token_bytes(t, i, &len);
                if (i == 256 || (len && strchr("\"}],:", b[0]))) m_punct++;
            }
            if (allowed != m || m == 0) { mask_agrees = 0; break; }
            /* the mask (a trie walk) and each token tried alone agree on every token */
            for (int32_t i = 0; i < V; i++)
                if ((l[i] == 0) != herd_json_state_allows(s, i)) refused_agrees = 0;
            /* lean towards closing tokens so walks end */
            int32_t id = ok[next_rand() % (uint64_t)m];
            if (m_punct && next_rand() % 3 == 0) {
                int k = (int)(next_rand() % (uint64_t)m_punct);
                for (int i = 0; i < m; i++) {
                    size_t len;
                    const char *b = herd_token_bytes(t, ok[i], &len);
                    if ((ok[i] == 256 || (len && strchr("\"}],:", b[0]))) && k-- == 0) { id = ok[i]; break; }
                }
            }
            if (herd_json_state_accept(s, id)) { mask_agrees = 0; break; }
            if (id == 256) { ended = 1; break; }
            size_t len;
            const char *b = herd_token_bytes(t, id, &len);
            if (n + len >= sizeof text) break;
            memcpy(text + n, b, len);
            n += len;
        }
        text[n] = 0;
        herd_json_state_free(s);
        if (!ended) continue;
        cJSON *v = cJSON_ParseWithLengthOpts(text, n + 1, NULL, 1); /* with the NUL */
        if (v && check(v)) parsed++;
        else fprintf(stderr, "walk %d: %s\n", w, text);
        cJSON_Delete(v);
    }
    CHECKF(mask_agrees, "the mask's count, its allowed tokens and accept agree, and some token is always allowed");
    CHECK(refused_agrees);
    CHECKF(parsed == n_walks, "%d of %d walks ended in text of the schema", parsed, n_walks);
    free(l);
    free(ok);
    herd_json_grammar_free(g);
}

static int is_object(const cJSON *v) { return cJSON_IsObject(v); }

static void token_level(void) {
    const char *merged[] = { "{\"", "\":", "\",", "\"}", " \"", "true", "false", "null", "id", "label", "on",
                             "xs", "up", "down", "\": \"", "12", "}}", "]}", "\"]", ", ", "\n  ", "\xc3\xa9" };
    size_t lens[sizeof merged / sizeof *merged];
    for (size_t i = 0; i < sizeof merged / sizeof *merged; i++) lens[i] = strlen(merged[i]);
    herd_tokenizer *t = NULL;
    herd_error err;
    if (herd_tokenizer_from_tokens(&t, merged, lens, sizeof merged / sizeof *merged, &err) != HERD_OK) {
        CHECKF(0, "tokenizer: %s", err.msg);
        return;
    }
    herd_json_vocab *v = vocab(t);
    walks(t, v, "{\"type\": \"object\", \"properties\": {\"id\": {\"type\": \"integer\"}, \"label\": {\"type\": "
             "\"string\", \"maxLength\": 4}, \"on\": {\"type\": \"boolean\"}, \"xs\": {\"type\": \"array\", "
             "\"items\": {\"enum\": [\"up\", \"down\"]}, \"maxItems\": 3}}, \"required\": [\"id\", \"label\"]}",
          60, shape_ok);
    walks(t, v, NULL, 60, is_object);
    /* specials never, the end token only once whole */
    herd_json_grammar *g = grammar(v, NULL);
    if (g) {
        herd_json_state *s;
        if (herd_json_state_new(&s, g, &err) == HERD_OK) {
            CHECK(!herd_json_state_allows(s, 256));
            CHECK(!herd_json_state_allows(s, 257));
            CHECK(herd_json_state_allows(s, '{'));
            CHECK(!herd_json_state_allows(s, '['));
            CHECK(herd_json_state_accept(s, '[') == -1);
            CHECK(herd_json_state_feed(s, "{\"a\":1", 6) == 0);
            CHECK(!herd_json_state_allows(s, 256));
            CHECK(herd_json_state_accept(s, '}') == 0);
            CHECK(herd_json_state_allows(s, 256) && !herd_json_state_allows(s, ' ') && !herd_json_state_allows(s, 257));
            CHECK(herd_json_state_accept(s, 256) == 0);
            CHECK(!herd_json_state_allows(s, 256));
            herd_json_state_free(s);
        }
        herd_json_grammar_free(g);
    }
    herd_json_vocab_free(v);
    herd_tokenizer_free(t);
}

int main(void) {
    any_object();
    schemas();
    nested_alternatives();
    choices();
    random_documents();
    bad_schemas();
    token_level();
    TEST_MAIN_END("test_json_grammar");
}
