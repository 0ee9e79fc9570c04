/* test_tokenizer.c - the Llama 3 tokenizer: BPE merges, specials, BOS, invalid
 * UTF-8, Meta's 25,000-char slicing, streaming detokenizer, loader error messages,
 * writer -> loader round trips (tiktoken, tokenizer.json, GGUF), and golden ids from
 * the independent Python reference (tests/data/tok_golden.txt, made by
 * tests/data/mk_tok_golden.py) with the real Llama 3 vocabulary when it is present.
 * Run from the repo root.
 */
#include "tokenizer_impl.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <time.h>
#include <unistd.h>

static herd_tokenizer *small_vocab(void) {
    static const char *const toks[] = { "ab", "cd", "abcd", " a", "aa", "aaaa" };
    size_t lens[6];
    for (int i = 0; i < 6; i++) lens[i] = strlen(toks[i]);
    herd_tokenizer *t = NULL;
    herd_error err = { { 0 } };
    herd_status st = herd_tokenizer_from_tokens(&t, toks, lens, 6, &err);
    CHECKF(st == HERD_OK, "%s", err.msg);
    return t;
}

/* Tokenizes and compares with expected ids; returns 1 when equal. */
static int enc_eq(const herd_tokenizer *t, const char *s, size_t n, int bos, int special,
                  const int32_t *want, size_t n_want) {
    int32_t *ids;
    size_t n_ids;
    herd_error err;
    if (herd_tokenize(t, s, n, bos, special, &ids, &n_ids, &err) != HERD_OK) {
        fprintf(stderr, "tokenize failed: %s\n", err.msg);
        return 0;
    }
    int ok = n_ids == n_want && (n_ids == 0 || memcmp(ids, want, n_ids * sizeof *ids) == 0);
    if (!ok) {
        fprintf(stderr, "  got %zu ids:", n_ids);
        for (size_t i = 0; i < n_ids && i < 40; i++) fprintf(stderr, " %d", ids[i]);
        fprintf(stderr, "\n  want %zu ids:", n_want);
        for (size_t i = 0; i < n_want && i < 40; i++) fprintf(stderr, " %d", want[i]);
        fputc('\n', stderr);
    }
    free(ids);
    return ok;
}
#define ENC_EQ(t, s, bos, sp, ...) do { const int32_t w_[] = { __VA_ARGS__ }; \
    CHECKF(enc_eq(t, s, sizeof(s) - 1, bos, sp, w_, sizeof w_ / sizeof *w_), "text '%s'", s); } while (0)

/* Concatenated token bytes equal the input (lossless for any bytes). */
static int roundtrip(const herd_tokenizer *t, const char *s, size_t n, int special) {
    int32_t *ids;
    size_t n_ids;
    herd_error err;
    if (herd_tokenize(t, s, n, 0, special, &ids, &n_ids, &err) != HERD_OK) return 0;
    char *buf = malloc(n + 1);
    size_t k = 0;
    int ok = 1;
    for (size_t i = 0; i < n_ids && ok; i++) {
        size_t l;
        const char *b = herd_token_bytes(t, ids[i], &l);
        if (!b || k + l > n) ok = 0;
        else { memcpy(buf + k, b, l); k += l; }
    }
    ok = ok && k == n && memcmp(buf, s, n) == 0;
    free(buf);
    free(ids);
    return ok;
}

static void test_small_vocab(void) {
    herd_tokenizer *t = small_vocab();
    if (!t) return;
    CHECK(herd_tokenizer_n_bpe(t) == 262);
    CHECK(herd_tokenizer_n_vocab(t) == 262 + 256);
    CHECK(herd_tokenizer_special_id(t, "<|begin_of_text|>") == 262);
    CHECK(herd_tokenizer_special_id(t, "<|eot_id|>") == 262 + 9);
    CHECK(herd_tokenizer_special_id(t, "<|eom_id|>") == 262 + 8);
    CHECK(herd_tokenizer_special_id(t, "<|python_tag|>") == 262 + 10);
    CHECK(herd_tokenizer_special_id(t, "<|reserved_special_token_3|>") == 262 + 11);
    CHECK(herd_tokenizer_special_id(t, "<|reserved_special_token_247|>") == 262 + 255);
    CHECK(herd_tokenizer_special_id(t, "<|step_id|>") == -1);
    CHECK(herd_tokenizer_special_id(t, "ab") == -1);
    size_t l;
    const char *b = herd_token_bytes(t, 262 + 9, &l);
    CHECK(b && l == 10 && memcmp(b, "<|eot_id|>", 10) == 0);
    b = herd_token_bytes(t, 258, &l);
    CHECK(b && l == 4 && memcmp(b, "abcd", 4) == 0);
    CHECK(herd_token_bytes(t, -1, &l) == NULL && l == 0);
    CHECK(herd_token_bytes(t, 518, &l) == NULL);

    ENC_EQ(t, "abcd", 0, 0, 258);                /* whole piece is a token */
    ENC_EQ(t, "abcde", 0, 0, 258, 'e');          /* ab, cd, then abcd */
    ENC_EQ(t, "aaaaa", 0, 0, 261, 'a');          /* leftmost aa first, then aaaa */
    ENC_EQ(t, "aaa", 0, 0, 260, 'a');
    ENC_EQ(t, " ab", 0, 0, ' ', 256);            /* rank of "ab" < rank of " a" */
    ENC_EQ(t, "ab cd", 0, 0, 256, ' ', 257);      /* regex: "ab", " cd"; " c" is no token */
    ENC_EQ(t, "ab", 1, 0, 262, 256);             /* BOS */
    ENC_EQ(t, "", 1, 0, 262);
    ENC_EQ(t, "x<|eot_id|>y", 0, 1, 'x', 271, 'y');
    ENC_EQ(t, "<|begin_of_text|><|eot_id|>", 0, 1, 262, 271);
    ENC_EQ(t, "<|eot_id|", 0, 1, '<', '|', 'e', 'o', 't', '_', 'i', 'd', '|');
    ENC_EQ(t, "<|<|eot_id|>", 0, 1, '<', '|', 271);
    ENC_EQ(t, "a\xff" "b\xe2\x82", 0, 0, 'a', 255, 'b', 0xe2, 0x82);  /* invalid UTF-8: byte tokens */
    ENC_EQ(t, "\xc0\xaf", 0, 0, 0xc0, 0xaf);                          /* overlong */
    ENC_EQ(t, "\xed\xa0\x80", 0, 0, 0xed, 0xa0, 0x80);               /* surrogate */
    ENC_EQ(t, "a\0b", 0, 0, 'a', 0, 'b');

    /* special=0: special text is plain text, never a special id */
    int32_t *ids;
    size_t n;
    herd_error err;
    CHECK(herd_tokenize(t, "x<|eot_id|>y", 12, 0, 0, &ids, &n, &err) == HERD_OK);
    int any_special = 0;
    for (size_t i = 0; i < n; i++) any_special |= ids[i] >= 262;
    CHECK(!any_special && n > 3);
    free(ids);
    CHECK(herd_tokenize(t, NULL, 0, 0, 0, &ids, &n, &err) == HERD_OK && n == 0);
    free(ids);
    CHECK(herd_tokenize(t, NULL, 5, 0, 0, &ids, &n, &err) == HERD_ERR_ARG);
    herd_tokenizer_free(t);
}

/* Pushes ids and returns the concatenated output (static buffer). */
static const char *detok_all(const herd_tokenizer *t, const int32_t *ids, size_t n, int flush) {
    static char out[4096];
    size_t k = 0, l;
    herd_detok d;
    herd_detok_init(&d);
    for (size_t i = 0; i < n; i++) {
        const char *s = herd_detok_push(&d, t, ids[i], &l);
        memcpy(out + k, s, l);
        k += l;
    }
    if (flush) {
        const char *s = herd_detok_flush(&d, &l);
        memcpy(out + k, s, l);
        k += l;
    }
    out[k] = 0;
    return out;
}

static void test_detok(void) {
    herd_tokenizer *t = small_vocab();
    if (!t) return;
    herd_detok d;
    size_t l;
    herd_detok_init(&d);
    /* U+1F44D split over four byte tokens: nothing until the last byte */
    const char *s = herd_detok_push(&d, t, 0xf0, &l);
    CHECK(l == 0);
    s = herd_detok_push(&d, t, 0x9f, &l);
    CHECK(l == 0);
    s = herd_detok_push(&d, t, 0x91, &l);
    CHECK(l == 0 && d.n_pending == 3);
    s = herd_detok_push(&d, t, 0x8d, &l);
    CHECK(l == 4 && memcmp(s, "\xf0\x9f\x91\x8d", 4) == 0);
    s = herd_detok_flush(&d, &l);
    CHECK(l == 0);
    s = herd_detok_push(&d, t, 258, &l);
    CHECK(l == 4 && memcmp(s, "abcd", 4) == 0);
    s = herd_detok_push(&d, t, 262 + 9, &l);
    CHECK(l == 10 && strcmp(s, "<|eot_id|>") == 0);

    int32_t a[] = { 0xff, 'a' };
    CHECK(strcmp(detok_all(t, a, 2, 1), "\xef\xbf\xbd" "a") == 0);      /* invalid byte */
    int32_t b[] = { 0xf0, 'a' };
    CHECK(strcmp(detok_all(t, b, 2, 1), "\xef\xbf\xbd" "a") == 0);      /* cut-off sequence */
    int32_t c[] = { 0xe2, 0x82 };
    CHECK(strcmp(detok_all(t, c, 2, 0), "") == 0);                      /* pending */
    CHECK(strcmp(detok_all(t, c, 2, 1), "\xef\xbf\xbd") == 0);          /* one U+FFFD at flush */
    int32_t e[] = { 0xe2, 0x82, 0xac, 0xc3, 0xa9 };
    CHECK(strcmp(detok_all(t, e, 5, 1), "\xe2\x82\xac\xc3\xa9") == 0);
    int32_t f[] = { 0xed, 0xa0, 0x80 };                                 /* surrogate: 3 x FFFD */
    CHECK(strcmp(detok_all(t, f, 3, 1), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd") == 0);
    int32_t g[] = { 9999, 'x' };                                        /* out of range: nothing */
    CHECK(strcmp(detok_all(t, g, 2, 1), "x") == 0);
    herd_tokenizer_free(t);
}

static void test_invalid_and_fuzzish(void) {
    herd_tokenizer *t = small_vocab();
    if (!t) return;
    /* every byte string round-trips through encode + token bytes */
    uint64_t x = 88172645463325252ull;
    char buf[300];
    int ok = 1;
    for (int it = 0; it < 300; it++) {
        size_t n = (size_t)(it % 97) + 1;
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            buf[i] = it % 3 == 0 ? "ab cd\n\t<|>_\xc3\xa9"[x % 13] : (char)(x & 0xff);
        }
        ok &= roundtrip(t, buf, n, 0) && roundtrip(t, buf, n, 1);
    }
    CHECK(ok);
    herd_tokenizer_free(t);
}

static int32_t *enc(const herd_tokenizer *t, const char *s, size_t n, size_t *n_ids) {
    int32_t *ids = NULL;
    herd_error err;
    if (herd_tokenize(t, s, n, 0, 0, &ids, n_ids, &err) != HERD_OK) {
        fprintf(stderr, "tokenize: %s\n", err.msg);
        *n_ids = 0;
    }
    return ids;
}

/* Meta splits runs longer than 25,000 whitespace / non-whitespace chars: encoding
 * equals encoding the two slices separately. Also a speed check for long pieces. */
static void test_slicing(const herd_tokenizer *t, const char *label) {
    size_t n = 30001;
    char *s = malloc(n + 1);
    for (int kind = 0; kind < 3; kind++) {
        size_t cut;
        if (kind == 0) { memset(s, 'a', n); cut = 25000; }
        else if (kind == 1) { s[0] = 'x'; memset(s + 1, ' ', n - 1); cut = 25001; }
        else { memset(s, ' ', n - 1); s[n - 1] = 'q'; cut = 25000; }
        clock_t c0 = clock();
        size_t na, nb, nc;
        int32_t *a = enc(t, s, n, &na), *b = enc(t, s, cut, &nb), *c = enc(t, s + cut, n - cut, &nc);
        double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
        CHECKF(na == nb + nc && na > 0 && memcmp(a, b, nb * 4) == 0 && memcmp(a + nb, c, nc * 4) == 0,
               "%s: slicing kind %d: %zu ids vs %zu + %zu", label, kind, na, nb, nc);
        CHECKF(secs < 5.0, "%s: 30,000-char pieces took %.2f s", label, secs);
        free(a); free(b); free(c);
    }
    free(s);
}

static const char *tmpdir(void) {
    static char d[256];
    if (!d[0]) {
        snprintf(d, sizeof d, "/tmp/herd_test_tok_%d", (int)getpid());
        char cmd[300];
        snprintf(cmd, sizeof cmd, "mkdir -p %s", d);
        if (system(cmd) != 0) fprintf(stderr, "cannot create %s\n", d);
    }
    return d;
}

static void write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(s, f);
    fclose(f);
}

/* Loads a tiktoken body from memory and checks the error mentions want. */
static void tiktoken_error(const char *body, herd_status want_st, const char *want) {
    herd_tokenizer *t = NULL;
    herd_error err = { { 0 } };
    herd_status st = herd_tokenizer_from_tiktoken_text(&t, body, strlen(body), "tok.model", &err);
    CHECKF(st == want_st && t == NULL && strstr(err.msg, want), "want '%s', got %d '%s'", want, st, err.msg);
    herd_tokenizer_free(t);
}

/* A tiktoken body with the 256 bytes, plus extra lines. */
static char *byte_body(const char *extra) {
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t cap = 256 * 16 + strlen(extra) + 1;
    char *s = malloc(cap), *p = s;
    for (int b = 0; b < 256; b++)
        p += sprintf(p, "%c%c== %d\n", b64[b >> 2], b64[(b & 3) << 4], b);
    strcpy(p, extra);
    return s;
}

static void test_loader_errors(void) {
    { /* two special tokens with one name: the error names both (and frees the half-built tokenizer) */
        char bytes[256];
        herd_tok_str v[256], sp[HERD_TOK_N_SPECIAL];
        char names[HERD_TOK_N_SPECIAL][40];
        for (int b = 0; b < 256; b++) {
            bytes[b] = (char)b;
            v[b] = (herd_tok_str){ bytes + b, 1 };
        }
        for (int k = 0; k < HERD_TOK_N_SPECIAL; k++) {
            sp[k].ptr = herd_tokenizer_default_special(k, names[k], sizeof names[k]);
            sp[k].len = strlen(sp[k].ptr);
        }
        sp[3] = sp[1];
        herd_tokenizer *d = NULL;
        herd_error e;
        CHECK(herd_tokenizer_build(&d, v, 256, sp, "dup", NULL, &e) == HERD_ERR_FORMAT && d == NULL);
        char want[160];
        snprintf(want, sizeof want, "dup: special token 3 '%.*s' duplicates special 1", (int)sp[1].len, sp[1].ptr);
        CHECKF(strcmp(e.msg, want) == 0, "got '%s', want '%s'", e.msg, want);
    }
    char *ok = byte_body("YWI= 256\n");
    herd_tokenizer *t = NULL;
    herd_error err;
    CHECKF(herd_tokenizer_from_tiktoken_text(&t, ok, strlen(ok), "tok.model", &err) == HERD_OK, "%s", err.msg);
    CHECK(t && herd_tokenizer_n_bpe(t) == 257 && herd_tokenizer_special_id(t, "<|begin_of_text|>") == 257);
    herd_tokenizer_free(t);
    free(ok);

    char *s = byte_body("YW!= 256\n");
    tiktoken_error(s, HERD_ERR_FORMAT, "tok.model:257: bad base64");
    free(s);
    s = byte_body("YWI= 255\n");
    tiktoken_error(s, HERD_ERR_FORMAT, "tok.model:257: duplicate rank 255, already used on line 256");
    free(s);
    s = byte_body("YWI= 258\nYWM= 259\n");
    tiktoken_error(s, HERD_ERR_FORMAT, "tok.model:257: rank 258 but the file has 258 tokens");
    free(s);
    s = byte_body("YWI= 900\n");
    tiktoken_error(s, HERD_ERR_FORMAT, "tok.model:257: rank 900 but the file has 257 tokens");
    free(s);
    s = byte_body("YWI= 256\nYWI= 257\n");
    tiktoken_error(s, HERD_ERR_FORMAT, "tok.model:258 (id 257): duplicate token, same bytes as tok.model:257");
    free(s);
    s = byte_body("YWI=\n");
    tiktoken_error(s, HERD_ERR_FORMAT, "tok.model:257: expected 'base64 rank'");
    free(s);
    s = byte_body("YWI= 12x\n");
    tiktoken_error(s, HERD_ERR_FORMAT, "tok.model:257: bad rank");
    free(s);
    tiktoken_error("YQ== 0\n", HERD_ERR_FORMAT, "1 BPE tokens; expected 256");
    tiktoken_error("", HERD_ERR_FORMAT, "no tokens");

    CHECK(herd_tokenizer_load_tiktoken(&t, "/nonexistent/tokenizer.model", &err) == HERD_ERR_IO);
    CHECKF(strstr(err.msg, "/nonexistent/tokenizer.model") != NULL, "%s", err.msg);

    char path[300];
    snprintf(path, sizeof path, "%s/bad.json", tmpdir());
    write_file(path, "{\"model\": {\"vocab\": {\"a\": 0,}}}");
    CHECK(herd_tokenizer_load_hf_json(&t, path, &err) == HERD_ERR_FORMAT);
    CHECKF(strstr(err.msg, "invalid JSON") != NULL, "%s", err.msg);
    write_file(path, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"\\u0001\": 1}}}");
    CHECK(herd_tokenizer_load_hf_json(&t, path, &err) == HERD_ERR_FORMAT);
    CHECKF(strstr(err.msg, "U+0001 is not a GPT-2 byte-level character") != NULL, "%s", err.msg);
    write_file(path, "{\"model\": {\"type\": \"Unigram\", \"vocab\": {}}}");
    CHECK(herd_tokenizer_load_hf_json(&t, path, &err) == HERD_ERR_UNSUPPORTED);
    CHECKF(strstr(err.msg, "model.type") != NULL, "%s", err.msg);
}

static int same_ids(const herd_tokenizer *a, const herd_tokenizer *b, const char *s, size_t n, int special) {
    int32_t *x, *y;
    size_t nx, ny;
    herd_error err;
    if (herd_tokenize(a, s, n, 1, special, &x, &nx, &err) != HERD_OK) return 0;
    if (herd_tokenize(b, s, n, 1, special, &y, &ny, &err) != HERD_OK) { free(x); return 0; }
    int ok = nx == ny && memcmp(x, y, nx * sizeof *x) == 0;
    free(x); free(y);
    return ok;
}

static const char *const SAMPLES[] = {
    "abcd aaaaa ab cd", "Hello, world! 1234567", "x<|eot_id|>y<|begin_of_text|>", "\xf0\x9f\x91\x8d \xff",
    "  \n\n\t spaces   ", "Crème brûlée",
};

static void check_same_vocab(const herd_tokenizer *a, const herd_tokenizer *b, const char *what) {
    CHECKF(herd_tokenizer_n_vocab(a) == herd_tokenizer_n_vocab(b), "%s: n_vocab", what);
    CHECKF(herd_tokenizer_n_bpe(a) == herd_tokenizer_n_bpe(b), "%s: n_bpe", what);
    int ok = 1;
    for (int32_t i = 0; i < herd_tokenizer_n_vocab(a) && ok; i++) {
        size_t la, lb;
        const char *x = herd_token_bytes(a, i, &la), *y = herd_token_bytes(b, i, &lb);
        ok = x && y && la == lb && memcmp(x, y, la) == 0;
        if (!ok) fprintf(stderr, "%s: token %d differs\n", what, i);
    }
    CHECKF(ok, "%s: token bytes", what);
    for (size_t i = 0; i < sizeof SAMPLES / sizeof *SAMPLES; i++)
        CHECKF(same_ids(a, b, SAMPLES[i], strlen(SAMPLES[i]), i & 1), "%s: ids of '%s'", what, SAMPLES[i]);
}

static void test_roundtrips(void) {
    herd_tokenizer *t = small_vocab(), *u = NULL;
    if (!t) return;
    herd_error err;
    char path[300];
    snprintf(path, sizeof path, "%s/tokenizer.model", tmpdir());
    CHECKF(herd_tokenizer_write_tiktoken(t, path, &err) == HERD_OK, "%s", err.msg);
    CHECKF(herd_tokenizer_load_tiktoken(&u, path, &err) == HERD_OK, "%s", err.msg);
    if (u) check_same_vocab(t, u, "tiktoken round trip");
    herd_tokenizer_free(u);
    u = NULL;

    snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir());
    CHECKF(herd_tokenizer_write_hf_json(t, path, &err) == HERD_OK, "%s", err.msg);
    CHECKF(herd_tokenizer_load_hf_json(&u, path, &err) == HERD_OK, "%s", err.msg);
    if (u) check_same_vocab(t, u, "tokenizer.json round trip");
    herd_tokenizer_free(u);
    u = NULL;
    /* merges as HF's converter derives them from ranks: every split into two tokens,
     * by result rank, then by (left rank, right rank); "aaaa" has only "aa aa" because
     * "aaa" is not a token */
    char *text;
    size_t len;
    if (herd_read_file(path, &text, &len, &err) == HERD_OK) {
        cJSON *j = cJSON_Parse(text);
        cJSON *m = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "model"), "merges");
        static const char *const want[] = { "a b", "c d", "ab cd", "\xc4\xa0 a", "a a", "aa aa" };
        CHECK(cJSON_GetArraySize(m) == 6);
        for (int i = 0; i < 6 && i < cJSON_GetArraySize(m); i++)
            CHECKF(strcmp(cJSON_GetArrayItem(m, i)->valuestring, want[i]) == 0, "merge %d: %s", i,
                   cJSON_GetArrayItem(m, i)->valuestring);
        CHECK(cJSON_IsNull(cJSON_GetObjectItem(j, "normalizer")));
        cJSON_Delete(j);
        free(text);
    }

    /* GGUF: tokenizer.ggml.* written by gguf_writer, read back by gguf_open */
    snprintf(path, sizeof path, "%s/tok.gguf", tmpdir());
    gguf_writer *w = gguf_writer_new();
    herd_tokenizer_write_gguf_kv(t, w);
    CHECKF(gguf_writer_write(w, path, &err) == HERD_OK, "%s", err.msg);
    gguf_writer_free(w);
    gguf_file g;
    if (gguf_open(&g, path, &err) == HERD_OK) {
        CHECKF(herd_tokenizer_load_gguf(&u, &g, &err) == HERD_OK, "%s", err.msg);
        if (u) check_same_vocab(t, u, "gguf round trip");
        herd_tokenizer_free(u);
        u = NULL;
        const gguf_kv *m = gguf_find(&g, "tokenizer.ggml.merges");
        CHECK(m && m->arr_n == 6 && m->arr_strs[2].len == 5 && memcmp(m->arr_strs[2].ptr, "ab cd", 5) == 0);
        uint32_t bos;
        CHECK(gguf_get_u32(&g, "tokenizer.ggml.bos_token_id", &bos, &err) == HERD_OK && bos == 262);
        gguf_close(&g);
    } else {
        CHECKF(0, "gguf_open: %s", err.msg);
    }
    /* GGUF errors name the key */
    w = gguf_writer_new();
    gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    CHECK(gguf_writer_write(w, path, &err) == HERD_OK);
    gguf_writer_free(w);
    if (gguf_open(&g, path, &err) == HERD_OK) {
        CHECK(herd_tokenizer_load_gguf(&u, &g, &err) == HERD_ERR_UNSUPPORTED);
        CHECKF(strstr(err.msg, "tokenizer.ggml.model is 'llama'") != NULL, "%s", err.msg);
        gguf_close(&g);
    }
    herd_tokenizer_free(t);
}

/* ---- real Llama 3 vocabulary ------------------------------------------------------ */

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

static size_t unhex(const char *h, size_t n, char *out) {
    size_t k = 0;
    for (size_t i = 0; i + 1 < n; i += 2) out[k++] = (char)(hexval(h[i]) << 4 | hexval(h[i + 1]));
    return k;
}

/* Runs every line of tests/data/tok_golden.txt; returns the number of mismatches. */
static int run_golden(const herd_tokenizer *t, const char *label) {
    char *text;
    size_t len;
    herd_error err;
    if (herd_read_file("tests/data/tok_golden.txt", &text, &len, &err) != HERD_OK) {
        CHECKF(0, "%s", err.msg);
        return 1;
    }
    int bad = 0, cases = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        int special = strncmp(line, "special ", 8) == 0;
        char *h = strchr(line, ' ') + 1, *colon = strstr(h, " : ");
        size_t hl = (size_t)(colon - h);
        char *in = malloc(hl / 2 + 1);
        size_t n = h[0] == '-' ? 0 : unhex(h, hl, in);
        int32_t want[20000];
        size_t nw = 0;
        for (char *p = colon + 3; *p && nw < 20000;) {
            char *e;
            long v = strtol(p, &e, 10);
            if (e == p) break;
            want[nw++] = (int32_t)v;
            p = e;
        }
        if (!enc_eq(t, in, n, 0, special, want, nw)) {
            bad++;
            fprintf(stderr, "%s: golden mismatch (%s) for input hex %.80s\n", label,
                    special ? "special" : "plain", h);
        }
        cases++;
        free(in);
    }
    free(text);
    CHECKF(bad == 0, "%s: %d of %d golden cases differ", label, bad, cases);
    CHECKF(cases >= 60, "%s: only %d golden cases", label, cases);
    return bad;
}

/* The merges herd derives from ranks equal those of the shipped tokenizer.json. */
static void check_merges(const herd_tokenizer *t, const char *hf_path) {
    char path[300];
    herd_error err;
    snprintf(path, sizeof path, "%s/llama3.json", tmpdir());
    CHECKF(herd_tokenizer_write_hf_json(t, path, &err) == HERD_OK, "%s", err.msg);
    char *a, *b;
    size_t la, lb;
    if (herd_read_file(path, &a, &la, &err) != HERD_OK) return;
    if (herd_read_file(hf_path, &b, &lb, &err) != HERD_OK) { free(a); return; }
    cJSON *ja = cJSON_Parse(a), *jb = cJSON_Parse(b);
    cJSON *ma = cJSON_GetObjectItem(cJSON_GetObjectItem(ja, "model"), "merges");
    cJSON *mb = cJSON_GetObjectItem(cJSON_GetObjectItem(jb, "model"), "merges");
    CHECKF(cJSON_GetArraySize(ma) == cJSON_GetArraySize(mb), "merges: %d written, %d in tokenizer.json",
           cJSON_GetArraySize(ma), cJSON_GetArraySize(mb));
    int diff = 0, i = 0;
    cJSON *x = ma ? ma->child : NULL, *y = mb ? mb->child : NULL;
    for (; x && y; x = x->next, y = y->next, i++)
        if (strcmp(x->valuestring, y->valuestring) != 0 && diff++ < 3)
            fprintf(stderr, "merge %d: herd '%s', tokenizer.json '%s'\n", i, x->valuestring, y->valuestring);
    CHECKF(diff == 0, "%d merges differ", diff);
    cJSON_Delete(ja);
    cJSON_Delete(jb);
    free(a);
    free(b);
    herd_tokenizer *u = NULL;
    CHECKF(herd_tokenizer_load_hf_json(&u, path, &err) == HERD_OK, "%s", err.msg);
    if (u) check_same_vocab(t, u, "llama3 tokenizer.json written by herd");
    herd_tokenizer_free(u);
}

static void test_llama3(void) {
    const char *model = getenv("HERD_LLAMA3_TOKENIZER");
    if (!model) model = "../shared/tokenizers/llama3/tokenizer.model";
    if (!herd_file_exists(model)) {
        printf("SKIP: Llama 3 tokenizer %s not found (set HERD_LLAMA3_TOKENIZER); golden tests not run\n", model);
        return;
    }
    herd_tokenizer *t = NULL, *j = NULL;
    herd_error err;
    clock_t c0 = clock();
    CHECKF(herd_tokenizer_load_tiktoken(&t, model, &err) == HERD_OK, "%s", err.msg);
    double secs = (double)(clock() - c0) / CLOCKS_PER_SEC;
    if (!t) return;
    printf("loaded %s (%d tokens) in %.2f s\n", model, herd_tokenizer_n_vocab(t), secs);
    CHECK(herd_tokenizer_n_vocab(t) == 128256 && herd_tokenizer_n_bpe(t) == 128000);
    CHECK(herd_tokenizer_special_id(t, "<|eot_id|>") == 128009);
    CHECK(herd_tokenizer_special_id(t, "<|eom_id|>") == 128008);
    CHECK(herd_tokenizer_special_id(t, "<|python_tag|>") == 128010);
    CHECK(herd_tokenizer_special_id(t, "<|reserved_special_token_247|>") == 128255);
    ENC_EQ(t, "<|eot_id|>", 1, 1, 128000, 128009);
    run_golden(t, "tokenizer.model");
    test_slicing(t, "llama3");

    char json[600];
    const char *slash = strrchr(model, '/');
    int dir_len = slash ? (int)(slash - model) : 1;
    snprintf(json, sizeof json, "%.*s/tokenizer.json", dir_len, slash ? model : ".");
    if (herd_file_exists(json)) {
        CHECKF(herd_tokenizer_load_hf_json(&j, json, &err) == HERD_OK, "%s", err.msg);
        if (j) {
            check_same_vocab(t, j, "tokenizer.model vs tokenizer.json");
            run_golden(j, "tokenizer.json");
        }
        check_merges(t, json);
    } else {
        printf("SKIP: %s not found; tokenizer.json golden tests not run\n", json);
    }
    herd_tokenizer_free(j);
    herd_tokenizer_free(t);
}

int main(void) {
    test_small_vocab();
    test_detok();
    test_invalid_and_fuzzish();
    herd_tokenizer *t = small_vocab();
    if (t) test_slicing(t, "small vocab");
    herd_tokenizer_free(t);
    test_loader_errors();
    test_roundtrips();
    test_llama3();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir());
    if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", tmpdir());
    TEST_MAIN_END("test_tokenizer");
}
