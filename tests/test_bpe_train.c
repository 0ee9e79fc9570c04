/* test_bpe_train.c - BPE training (src/bpe_train.c) and data preparation (src/data.c):
 * hand-computed merges on a tiny corpus, the pre-tokenizer split, determinism,
 * encode/decode round trips on unicode and invalid UTF-8, written tokenizer.model /
 * tokenizer.json reloading to identical ids, and token files with BOS per document
 * and the validation split.
 */
#include "test.h"

#include <unistd.h>

#include "tokenizer.h"
#include "train/tokfile.h"

static herd_tokenizer *train(const char *const *texts, size_t n, int vocab) {
    herd_error err;
    herd_bpe_trainer *tr;
    herd_tokenizer *t = NULL;
    if (herd_bpe_trainer_new(&tr, &err)) { fprintf(stderr, "%s\n", err.msg); return NULL; }
    for (size_t i = 0; i < n; i++)
        if (herd_bpe_trainer_add(tr, texts[i], strlen(texts[i]), &err)) fprintf(stderr, "%s\n", err.msg);
    if (herd_bpe_train(tr, vocab, NULL, &t, &err)) fprintf(stderr, "%s\n", err.msg);
    herd_bpe_trainer_free(tr);
    return t;
}

static int token_is(const herd_tokenizer *t, int id, const char *s) {
    size_t n;
    const char *b = herd_token_bytes(t, id, &n);
    return b && n == strlen(s) && memcmp(b, s, n) == 0;
}

/* Hand-computed: pieces "hello" " world" " hello" " world" " hello" " there" ","
 * " the" " world" " is" " here" "." "\n". Counts: "he" 6 (hello x3, there, the,
 * here) wins. Then many pairs tie at 3 and go in rank order: " w" (32,119) before
 * " he" (32,256) before "ld" (108,100) before "ll" (108,108); "lo" vanished inside
 * "llo"'s parts he|ll|o, "or" (111,114) is next; then " wor" (257,261) before "llo"
 * (260,111) before "orld" (261,259). */
static void test_tiny_merges(void) {
    const char *text = "hello world hello world hello there, the world is here.\n";
    herd_tokenizer *t = train(&text, 1, 512 + 8);
    CHECK(t != NULL);
    if (!t) return;
    CHECK(herd_tokenizer_n_bpe(t) == 264);
    CHECK(herd_tokenizer_n_vocab(t) == 520);
    const char *want[] = { "he", " w", " he", "ld", "ll", "or", " wor", "llo" };
    for (int i = 0; i < 8; i++) CHECKF(token_is(t, 256 + i, want[i]), "rank %d", 256 + i);
    CHECK(herd_tokenizer_special_id(t, "<|begin_of_text|>") == 264);
    CHECK(herd_tokenizer_special_id(t, "<|eot_id|>") == 273);
    int32_t *ids;
    size_t n;
    herd_error err;
    CHECK(herd_tokenize(t, " world", 6, 0, 0, &ids, &n, &err) == HERD_OK);
    CHECK(n == 2 && ids[0] == 262 && ids[1] == 259); /* " wor" "ld" */
    free(ids);
    herd_tokenizer_free(t);

    /* a corpus with fewer distinct pairs than asked for stops early */
    const char *tiny = "aaaa";
    t = train(&tiny, 1, 4096);
    CHECK(t && herd_tokenizer_n_bpe(t) == 258); /* "aa", "aaaa" */
    if (t) CHECK(token_is(t, 256, "aa") && token_is(t, 257, "aaaa"));
    herd_tokenizer_free(t);

    herd_bpe_trainer *tr;
    CHECK(herd_bpe_trainer_new(&tr, &err) == HERD_OK);
    CHECK(herd_bpe_train(tr, 511, NULL, &t, &err) == HERD_ERR_ARG);
    CHECK(strstr(err.msg, "511") != NULL);
    herd_bpe_trainer_free(tr);
}

typedef struct { char s[16][32]; int n; } pieces;
static int collect(void *ctx, const char *p, size_t n) {
    pieces *ps = ctx;
    if (ps->n < 16 && n < 32) { memcpy(ps->s[ps->n], p, n); ps->s[ps->n][n] = 0; }
    ps->n++;
    return 1;
}

static void test_split(void) {
    herd_tokenizer *t;
    herd_error err;
    CHECK(herd_tokenizer_from_tokens(&t, NULL, NULL, 0, &err) == HERD_OK);
    pieces ps = { .n = 0 };
    const char *text = "He's 12345 cats!!\n\n  x\xff";
    CHECK(herd_tokenizer_split(t, text, strlen(text), collect, &ps, &err) == HERD_OK);
    const char *want[] = { "He", "'s", " ", "123", "45", " cats", "!!\n\n", " ", " x", "\xff" };
    CHECKF(ps.n == 10, "%d pieces", ps.n);
    for (int i = 0; i < 10 && i < ps.n; i++) CHECKF(!strcmp(ps.s[i], want[i]), "piece %d '%s'", i, ps.s[i]);
    herd_tokenizer_free(t);
}

/* A pseudo-random text mixing ASCII words, multi-byte UTF-8 and invalid bytes. */
static char *make_corpus(size_t n, uint32_t seed) {
    static const char *const words[] = {
        "the", "cat", "sat", "on", "mat", "naïve", "café", "日本語", "Ελληνικά", "🙂",
        "don't", "I'll", "1234567", "\t", "\n", "  ", ",", "...", "\xff\xfe", "\xe6\x97",
    };
    char *s = malloc(n + 64);
    size_t k = 0;
    while (k < n) {
        seed = seed * 1664525u + 1013904223u;
        const char *w = words[(seed >> 16) % 20];
        size_t l = strlen(w);
        if (seed & 1) s[k++] = ' ';
        memcpy(s + k, w, l);
        k += l;
    }
    s[k] = 0;
    return s;
}

static int same_ids(const herd_tokenizer *a, const herd_tokenizer *b, const char *text, size_t len) {
    int32_t *x, *y;
    size_t nx, ny;
    herd_error err;
    if (herd_tokenize(a, text, len, 1, 1, &x, &nx, &err)) return 0;
    if (herd_tokenize(b, text, len, 1, 1, &y, &ny, &err)) { free(x); return 0; }
    int ok = nx == ny && memcmp(x, y, nx * sizeof *x) == 0;
    free(x);
    free(y);
    return ok;
}

static void test_roundtrip_and_files(void) {
    char *corpus = make_corpus(200000, 7);
    const char *texts[] = { corpus };
    herd_tokenizer *t = train(texts, 1, 768), *t2 = train(texts, 1, 768);
    CHECK(t && t2);
    if (!t || !t2) { free(corpus); return; }
    CHECKF(herd_tokenizer_n_vocab(t) == 768, "%d", herd_tokenizer_n_vocab(t));
    int same = herd_tokenizer_n_vocab(t) == herd_tokenizer_n_vocab(t2);
    for (int i = 0; same && i < herd_tokenizer_n_vocab(t); i++) {
        size_t la, lb;
        const char *a = herd_token_bytes(t, i, &la), *b = herd_token_bytes(t2, i, &lb);
        same = la == lb && memcmp(a, b, la) == 0;
    }
    CHECK(same); /* deterministic */

    char *probe = make_corpus(20000, 99);
    const char *extra = "Ünïcödé ✓ \xc3\x28 \xf0\x9f\x99 <|eot_id|> tail\xff";
    size_t lp = strlen(probe), le = strlen(extra);
    probe = realloc(probe, lp + le + 1);
    memcpy(probe + lp, extra, le + 1);
    size_t len = lp + le;
    int32_t *ids;
    size_t n;
    herd_error err;
    CHECK(herd_tokenize(t, probe, len, 0, 0, &ids, &n, &err) == HERD_OK);
    CHECK(n < len / 2); /* the merges compress */
    char *back = malloc(len + 1);
    size_t k = 0;
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        size_t l;
        const char *b = herd_token_bytes(t, ids[i], &l);
        ok = b && ids[i] < herd_tokenizer_n_bpe(t) && k + l <= len;
        if (ok) { memcpy(back + k, b, l); k += l; }
    }
    CHECK(ok && k == len && memcmp(back, probe, len) == 0);
    free(ids);
    free(back);

    char dir[] = "/tmp/herd_bpe_test_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    CHECK(herd_tokenizer_save(t, dir, &err) == HERD_OK);
    char path[256];
    herd_tokenizer *fm = NULL, *fj = NULL, *fd = NULL;
    snprintf(path, sizeof path, "%s/tokenizer.model", dir);
    CHECK(herd_tokenizer_load(&fm, path, &err) == HERD_OK);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    CHECK(herd_tokenizer_load(&fj, path, &err) == HERD_OK);
    CHECK(herd_tokenizer_load(&fd, dir, &err) == HERD_OK);
    if (fm && fj && fd) {
        CHECK(same_ids(t, fm, probe, len));
        CHECK(same_ids(t, fj, probe, len));
        CHECK(same_ids(t, fd, probe, len));
        CHECK(herd_tokenizer_n_vocab(fj) == 768);
    }
    herd_tokenizer_free(fm); herd_tokenizer_free(fj); herd_tokenizer_free(fd);
    snprintf(path, sizeof path, "%s/tokenizer.model", dir); unlink(path);
    snprintf(path, sizeof path, "%s/tokenizer.json", dir); unlink(path);
    rmdir(dir);
    free(probe);
    free(corpus);
    herd_tokenizer_free(t);
    herd_tokenizer_free(t2);
}

static void write_file(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    if (f) { fputs(s, f); fclose(f); }
}

static void test_data(void) {
    herd_tokenizer *t;
    herd_error err;
    CHECK(herd_tokenizer_from_tokens(&t, NULL, NULL, 0, &err) == HERD_OK); /* ids = bytes, BOS 256 */
    char dir[] = "/tmp/herd_data_test_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char txt[128], jl[128], out[128], val[128], bad[128];
    snprintf(txt, sizeof txt, "%s/a.txt", dir);
    snprintf(jl, sizeof jl, "%s/b.jsonl", dir);
    snprintf(out, sizeof out, "%s/train.tok", dir);
    snprintf(val, sizeof val, "%s/val.tok", dir);
    snprintf(bad, sizeof bad, "%s/bad.jsonl", dir);
    write_file(txt, "AB");
    write_file(jl, "{\"text\": \"c\"}\n\n{\"text\": \"d\", \"id\": 2}\r\n{\"text\": \"e\"}\n{\"text\": \"f\"}\n");
    const char *in[] = { txt, jl };
    herd_data_params p = { .inputs = in, .n_inputs = 2, .out_path = out,
                           .val_fraction = 0.4, .val_path = val };
    herd_data_stats st;
    CHECK(herd_data_prepare(t, &p, &st, &err) == HERD_OK);
    /* documents 0..4 = AB c d e f; floor((i+1)*0.4) > floor(i*0.4) at i = 2, 4 */
    CHECK(st.n_docs == 3 && st.n_val_docs == 2 && st.n_tokens == 7 && st.n_val_tokens == 4);
    tokfile tf;
    if (tokfile_open(&tf, out, &err) == HERD_OK) {
        uint32_t want[] = { 256, 'A', 'B', 256, 'c', 256, 'e' };
        CHECK(tf.n_tokens == 7 && tf.vocab_size == 512 && !memcmp(tf.ids, want, sizeof want));
        tokfile_close(&tf);
    } else CHECKF(0, "%s", err.msg);
    if (tokfile_open(&tf, val, &err) == HERD_OK) {
        uint32_t want[] = { 256, 'd', 256, 'f' };
        CHECK(tf.n_tokens == 4 && !memcmp(tf.ids, want, sizeof want));
        tokfile_close(&tf);
    } else CHECKF(0, "%s", err.msg);

    write_file(bad, "{\"text\": \"ok\"}\n{\"txt\": \"no\"}\n");
    const char *in2[] = { bad };
    herd_data_params q = { .inputs = in2, .n_inputs = 1, .out_path = out };
    CHECK(herd_data_prepare(t, &q, &st, &err) == HERD_ERR_FORMAT);
    CHECKF(strstr(err.msg, "bad.jsonl:2") && strstr(err.msg, "no \"text\" field"), "%s", err.msg);
    write_file(bad, "{\"text\": \"ok\"\n");
    CHECK(herd_data_prepare(t, &q, &st, &err) == HERD_ERR_FORMAT);
    CHECKF(strstr(err.msg, "bad.jsonl:1") && strstr(err.msg, "invalid JSON"), "%s", err.msg);
    const char *in3[] = { "/nonexistent/x.txt" };
    q.inputs = in3;
    CHECK(herd_data_prepare(t, &q, &st, &err) == HERD_ERR_IO);
    CHECKF(strstr(err.msg, "not found"), "%s", err.msg);
    q.inputs = in;
    q.n_inputs = 1;
    q.vocab_size = 100;
    CHECK(herd_data_prepare(t, &q, &st, &err) == HERD_ERR_ARG);

    unlink(txt); unlink(jl); unlink(out); unlink(val); unlink(bad);
    rmdir(dir);
    herd_tokenizer_free(t);
}

int main(void) {
    test_tiny_merges();
    test_split();
    test_roundtrip_and_files();
    test_data();
    TEST_MAIN_END("test_bpe_train");
}
