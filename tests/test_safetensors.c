/* test_safetensors.c - safetensors writer -> reader round trips (single file,
 * sharded set through model.safetensors.index.json, a model directory), and
 * corrupt headers built in memory: each must fail with the expected words in the
 * message, never crash (run under ASan/UBSan). */
#include "format/format.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static herd_error err;
static char dir[64];

static void path_in(char *out, const char *name) { sprintf(out, "%s/%s", dir, name); }

/* 8-byte length + json padded with spaces to 8 bytes + data_len bytes of data
 * (0, 1, 2, ...). Caller frees. */
static uint8_t *make_st(const char *json, size_t data_len, size_t *n) {
    size_t j0 = strlen(json), j = (j0 + 7) / 8 * 8;
    *n = 8 + j + data_len;
    uint8_t *b = malloc(*n);
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)((uint64_t)j >> (8 * i));
    memcpy(b + 8, json, j0);
    memset(b + 8 + j0, ' ', j - j0);
    for (size_t i = 0; i < data_len; i++) b[8 + j + i] = (uint8_t)i;
    return b;
}

static void expect_fail(const char *json, size_t data_len, int st, const char *w1, const char *w2,
                        int line) {
    size_t n;
    uint8_t *b = make_st(json, data_len, &n);
    st_set s;
    err.msg[0] = 0;
    herd_status got = st_parse(&s, b, n, "mem.safetensors", &err);
    CHECKF(got != HERD_OK, "line %d: parse succeeded", line);
    if (got == HERD_OK) st_close(&s);
    else {
        CHECKF(st < 0 || (int)got == st, "line %d: status %d, expected %d: %s", line, got, st, err.msg);
        CHECKF(strstr(err.msg, "mem.safetensors") != NULL, "line %d: no file name: %s", line, err.msg);
        CHECKF(!w1 || strstr(err.msg, w1), "line %d: message lacks '%s': %s", line, w1, err.msg);
        CHECKF(!w2 || strstr(err.msg, w2), "line %d: message lacks '%s': %s", line, w2, err.msg);
    }
    free(b);
}
#define FAIL(json, dlen, st, w1, w2) expect_fail(json, dlen, st, w1, w2, __LINE__)

static void fill(uint8_t *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed * 37 + i * 11);
}

typedef struct { const char *name; int type, n_dims; int64_t shape[4]; } tspec;

static void write_file(const char *path, const tspec *specs, size_t n_specs) {
    st_writer *w = st_writer_new();
    for (size_t i = 0; i < n_specs; i++) {
        size_t n = herd_type_block_bytes(specs[i].type);
        for (int d = 0; d < specs[i].n_dims; d++) n *= (size_t)specs[i].shape[d];
        uint8_t *data = malloc(n);
        fill(data, n, (unsigned)i);
        CHECKF(st_writer_add(w, specs[i].name, specs[i].type, specs[i].n_dims, specs[i].shape, data,
                             &err) == HERD_OK, "%s", err.msg);
        free(data);
    }
    CHECKF(st_writer_write(w, path, &err) == HERD_OK, "%s", err.msg);
    st_writer_free(w);
}

static void check_tensors(const st_set *s, const tspec *specs, size_t n_specs) {
    for (size_t i = 0; i < n_specs; i++) {
        const herd_tensor *t = st_find_tensor(s, specs[i].name);
        CHECKF(t != NULL, "tensor %s", specs[i].name);
        if (!t) continue;
        int nd = specs[i].n_dims;
        CHECK(t->type == specs[i].type && t->n_dims == nd);
        for (int d = 0; d < 4; d++) CHECK(t->ne[d] == (d < nd ? specs[i].shape[nd - 1 - d] : 1));
        size_t n = herd_type_block_bytes(specs[i].type);
        for (int d = 0; d < nd; d++) n *= (size_t)specs[i].shape[d];
        CHECK(t->n_bytes == n);
        CHECK((uintptr_t)t->data % herd_type_block_bytes(t->type) == 0);
        uint8_t *want = malloc(n);
        fill(want, n, (unsigned)i);
        CHECKF(memcmp(t->data, want, n) == 0, "tensor %s data", specs[i].name);
        free(want);
    }
}

static const tspec one[] = {
    { "model.embed_tokens.weight", HERD_BF16, 2, { 5, 3 } },
    { "model.norm.weight", HERD_F32, 1, { 3 } },
    { "x.f16", HERD_F16, 4, { 1, 2, 3, 2 } },
    { "odd.bf16", HERD_BF16, 1, { 3 } },  /* 6 bytes: would misalign the next F32 */
    { "after.f32", HERD_F32, 2, { 2, 1 } },
};

static void test_round_trip(void) {
    char path[128], tmp[140];
    path_in(path, "model.safetensors");
    write_file(path, one, 5);
    sprintf(tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0);
    st_set s;
    herd_status st = st_open(&s, path, &err);
    CHECKF(st == HERD_OK, "%s", err.msg);
    if (st != HERD_OK) return;
    CHECK(s.n_files == 1 && s.n_tensors == 5);
    CHECK(strcmp(s.tensors[0].name, "model.embed_tokens.weight") == 0); /* header order */
    check_tensors(&s, one, 5);
    CHECK(st_find_tensor(&s, "nope") == NULL);
    /* header length is a multiple of 8, padded with spaces */
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | s.files[0].data[i];
    CHECK(hlen % 8 == 0 && s.files[0].data[8] == '{');
    st_close(&s);
    st_close(&s);
    /* a directory with only model.safetensors */
    CHECKF(st_open(&s, dir, &err) == HERD_OK, "%s", err.msg);
    CHECK(s.n_tensors == 5);
    st_close(&s);
    unlink(path);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

static const tspec shard1[] = {
    { "model.layers.0.self_attn.q_proj.weight", HERD_BF16, 2, { 4, 8 } },
    { "model.embed_tokens.weight", HERD_BF16, 2, { 16, 8 } },
};
static const tspec shard2[] = {
    { "model.norm.weight", HERD_BF16, 1, { 8 } },
    { "lm_head.weight", HERD_BF16, 2, { 16, 8 } },
};

static void test_sharded(void) {
    char p1[128], p2[128], idx[128];
    path_in(p1, "model-00001-of-00002.safetensors");
    path_in(p2, "model-00002-of-00002.safetensors");
    path_in(idx, "model.safetensors.index.json");
    write_file(p1, shard1, 2);
    write_file(p2, shard2, 2);
    write_text(idx, "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {"
               "\"lm_head.weight\": \"model-00002-of-00002.safetensors\","
               "\"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\","
               "\"model.layers.0.self_attn.q_proj.weight\": \"model-00001-of-00002.safetensors\","
               "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"}}");
    st_set s;
    herd_status st = st_open(&s, idx, &err);
    CHECKF(st == HERD_OK, "%s", err.msg);
    if (st == HERD_OK) {
        CHECK(s.n_files == 2 && s.n_tensors == 4);
        check_tensors(&s, shard1, 2);
        check_tensors(&s, shard2, 2);
        st_close(&s);
    }
    CHECKF(st_open(&s, dir, &err) == HERD_OK, "%s", err.msg); /* the directory finds the index */
    st_close(&s);

    /* the index names a tensor the shard lacks */
    write_text(idx, "{\"weight_map\": {\"missing.weight\": \"model-00002-of-00002.safetensors\","
               "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"}}");
    CHECK(st_open(&s, idx, &err) == HERD_ERR_FORMAT && strstr(err.msg, "'missing.weight'") &&
          strstr(err.msg, "does not contain"));
    /* the index puts a tensor in the wrong shard */
    write_text(idx, "{\"weight_map\": {\"model.norm.weight\": \"model-00001-of-00002.safetensors\","
               "\"lm_head.weight\": \"model-00002-of-00002.safetensors\"}}");
    CHECK(st_open(&s, idx, &err) == HERD_ERR_FORMAT && strstr(err.msg, "model.norm.weight"));
    /* a shard that is not there */
    write_text(idx, "{\"weight_map\": {\"a\": \"model-00003-of-00003.safetensors\"}}");
    CHECK(st_open(&s, idx, &err) == HERD_ERR_IO && strstr(err.msg, "model-00003-of-00003"));
    /* shard names must be plain file names */
    write_text(idx, "{\"weight_map\": {\"a\": \"../etc/passwd\"}}");
    CHECK(st_open(&s, idx, &err) == HERD_ERR_FORMAT && strstr(err.msg, "file name"));
    write_text(idx, "{\"weight_map\": {\"a\": 7}}");
    CHECK(st_open(&s, idx, &err) == HERD_ERR_FORMAT);
    write_text(idx, "{\"weight_map\": [");
    CHECK(st_open(&s, idx, &err) == HERD_ERR_FORMAT && strstr(err.msg, "weight_map"));
    /* the same tensor in two shards */
    write_file(p2, shard1, 1);
    write_text(idx, "{\"weight_map\": {"
               "\"model.layers.0.self_attn.q_proj.weight\": \"model-00001-of-00002.safetensors\","
               "\"model.norm.weight\": \"model-00002-of-00002.safetensors\"}}");
    CHECK(st_open(&s, idx, &err) == HERD_ERR_FORMAT && strstr(err.msg, "more than once"));
    unlink(p1);
    unlink(p2);
    unlink(idx);
}

static void test_corrupt(void) {
    const char *ok = "{\"__metadata__\":{\"format\":\"pt\"},"
                     "\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]},"
                     "\"v\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[12,16]}}";
    size_t n;
    uint8_t *b = make_st(ok, 16, &n);
    st_set s;
    CHECKF(st_parse(&s, b, n, "mem.safetensors", &err) == HERD_OK, "%s", err.msg);
    CHECK(s.n_tensors == 2 && s.n_files == 0);
    const herd_tensor *t = st_find_tensor(&s, "w");
    CHECK(t && t->ne[0] == 3 && t->ne[1] == 2 && t->n_dims == 2 && t->n_bytes == 12);
    t = st_find_tensor(&s, "v");
    CHECK(t && t->n_dims == 1 && t->ne[0] == 1 && t->n_bytes == 4);
    st_close(&s);
    /* every prefix fails */
    for (size_t k = 0; k < n; k++) {
        herd_status st = st_parse(&s, b, k, "mem.safetensors", &err);
        CHECKF(st == HERD_ERR_FORMAT, "prefix %zu: %d", k, st);
        if (st == HERD_OK) st_close(&s);
        else CHECKF(strstr(err.msg, "truncated"), "prefix %zu: %s", k, err.msg);
    }
    /* header length beyond the file, and above the sanity cap */
    uint8_t m[64];
    memcpy(m, b, sizeof m);
    m[6] = 1;
    CHECK(st_parse(&s, m, sizeof m, "mem.safetensors", &err) == HERD_ERR_FORMAT &&
          strstr(err.msg, "exceeds") && strstr(err.msg, "truncated"));
    free(b);
    size_t big = 100u * 1024 * 1024 + 16;
    uint8_t *huge = calloc(1, big);
    if (huge) {
        uint64_t h = big - 8;
        for (int i = 0; i < 8; i++) huge[i] = (uint8_t)(h >> (8 * i));
        CHECK(st_parse(&s, huge, big, "mem.safetensors", &err) == HERD_ERR_FORMAT &&
              strstr(err.msg, "limit"));
        free(huge);
    }
    FAIL("{\"w\": {", 0, HERD_ERR_FORMAT, "not a JSON object", NULL);
    FAIL("[1, 2]", 0, HERD_ERR_FORMAT, "not a JSON object", NULL);
    FAIL("", 0, HERD_ERR_FORMAT, "not a JSON object", NULL);
    FAIL("{\"w\": 3}", 0, HERD_ERR_FORMAT, "tensor 'w'", "expected an object");
    FAIL("{\"w\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]}}", 16,
         HERD_ERR_UNSUPPORTED, "tensor 'w' has dtype 'I64'", "BF16");
    FAIL("{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", 2,
         HERD_ERR_UNSUPPORTED, "F8_E4M3", NULL);
    FAIL("{\"w\":{\"dtype\":5,\"shape\":[2],\"data_offsets\":[0,4]}}", 4, HERD_ERR_FORMAT, "dtype", NULL);
    FAIL("{\"w\":{\"dtype\":\"BF16\",\"data_offsets\":[0,4]}}", 4, HERD_ERR_FORMAT, "shape", NULL);
    FAIL("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,10]}}", 16, HERD_ERR_FORMAT,
         "needs 12 bytes", "span 10 bytes");
    FAIL("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,3],\"data_offsets\":[0,12]}}", 8, HERD_ERR_FORMAT,
         "data ends at byte", "truncated");
    FAIL("{\"w\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[4,2]}}", 8, HERD_ERR_FORMAT,
         "data_offsets", NULL);
    FAIL("{\"w\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0]}}", 8, HERD_ERR_FORMAT,
         "data_offsets", NULL);
    FAIL("{\"w\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[-2,0]}}", 8, HERD_ERR_FORMAT,
         "data_offsets", NULL);
    FAIL("{\"w\":{\"dtype\":\"BF16\",\"shape\":[1],\"data_offsets\":[0,1e300]}}", 8, HERD_ERR_FORMAT,
         "data_offsets", NULL);
    FAIL("{\"w\":{\"dtype\":\"BF16\",\"shape\":[-1],\"data_offsets\":[0,2]}}", 8, HERD_ERR_FORMAT,
         "shape entry 0", NULL);
    FAIL("{\"w\":{\"dtype\":\"BF16\",\"shape\":[1.5],\"data_offsets\":[0,2]}}", 8, HERD_ERR_FORMAT,
         "shape entry 0", NULL);
    FAIL("{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,\"3\"],\"data_offsets\":[0,12]}}", 16, HERD_ERR_FORMAT,
         "shape entry 1", NULL);
    FAIL("{\"w\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[0,0]}}", 8, HERD_ERR_FORMAT,
         "shape entry 0", NULL);
    FAIL("{\"w\":{\"dtype\":\"BF16\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,2]}}", 8, HERD_ERR_FORMAT, "too large", NULL);
    FAIL("{\"w\":{\"dtype\":\"BF16\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,2]}}", 8,
         HERD_ERR_UNSUPPORTED, "5 dimensions", NULL);
    FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[2,6]}}", 8, HERD_ERR_UNSUPPORTED,
         "not aligned", NULL);
    FAIL("{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, HERD_ERR_FORMAT,
         "tensor 'w' occurs more than once", NULL);
    size_t tiny_n;
    uint8_t *tiny = make_st("{}", 0, &tiny_n);
    CHECK(st_parse(&s, tiny, 4, "mem.safetensors", &err) == HERD_ERR_FORMAT && strstr(err.msg, "at least 8"));
    CHECK(st_parse(&s, tiny, tiny_n, "mem.safetensors", &err) == HERD_OK && s.n_tensors == 0);
    st_close(&s);
    free(tiny);
    CHECK(st_parse(&s, NULL, 0, "mem.safetensors", &err) == HERD_ERR_FORMAT);
}

/* Random mutations of a written file: never a crash. */
static void test_mutations(void) {
    char path[128];
    path_in(path, "mut.safetensors");
    write_file(path, one, 5);
    char *text;
    size_t n;
    if (herd_read_file(path, &text, &n, &err) != HERD_OK) { CHECK(0); return; }
    unlink(path);
    uint8_t *m = malloc(n);
    herd_rng r;
    herd_rng_seed(&r, 7);
    int n_ok = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(m, text, n);
        int k = 1 + (int)(herd_rng_next(&r) % 3);
        for (int j = 0; j < k; j++) m[herd_rng_next(&r) % n] = (uint8_t)herd_rng_next(&r);
        st_set s;
        if (st_parse(&s, m, n, "mut", &err) == HERD_OK) {
            n_ok++;
            for (size_t i = 0; i < s.n_tensors; i++)
                for (size_t b = 0; b < s.tensors[i].n_bytes; b++) n_ok += ((const uint8_t *)s.tensors[i].data)[b] == 0xa5;
            st_close(&s);
        }
    }
    CHECK(n_ok > 0);
    free(m);
    free(text);
}

static void test_writer_errors(void) {
    st_writer *w = st_writer_new();
    int64_t shape[2] = { 2, 2 };
    uint8_t data[64] = { 0 };
    CHECK(st_writer_add(w, "q", HERD_Q8_0, 2, shape, data, &err) == HERD_ERR_ARG && strstr(err.msg, "Q8_0"));
    CHECK(st_writer_add(w, "z", HERD_F32, 0, shape, data, &err) == HERD_ERR_ARG);
    int64_t bad[1] = { 0 };
    CHECK(st_writer_add(w, "z", HERD_F32, 1, bad, data, &err) == HERD_ERR_ARG);
    CHECK(st_writer_add(w, "a\"b\\c", HERD_F32, 2, shape, data, &err) == HERD_OK);
    CHECK(st_writer_add(w, "a\"b\\c", HERD_F32, 2, shape, data, &err) == HERD_ERR_ARG && strstr(err.msg, "twice"));
    CHECK(st_writer_write(w, "/nonexistent/dir/x.safetensors", &err) == HERD_ERR_IO);
    char path[128];
    path_in(path, "esc.safetensors");
    CHECK(st_writer_write(w, path, &err) == HERD_OK);
    st_writer_free(w);
    st_set s;
    CHECK(st_open(&s, path, &err) == HERD_OK && st_find_tensor(&s, "a\"b\\c") != NULL);
    st_close(&s);
    unlink(path);
    CHECK(st_open(&s, "/nonexistent/x.safetensors", &err) == HERD_ERR_IO);
}

int main(void) {
    strcpy(dir, "/tmp/herd_test_st_XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    test_round_trip();
    test_sharded();
    test_corrupt();
    test_mutations();
    test_writer_errors();
    rmdir(dir);
    TEST_MAIN_END("test_safetensors");
}
