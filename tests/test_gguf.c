/* test_gguf.c - GGUF writer -> reader round trips (every metadata kind, every
 * tensor type), the typed getters, and a battery of corrupt files made by
 * mutating valid buffers in memory: each must give an error with the expected
 * words in its message, never a crash (run under ASan/UBSan). */
#include "format/format.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- a tiny byte builder for hand-made files ---- */
typedef struct { uint8_t b[4096]; size_t n; } bb;
static void put(bb *b, const void *p, size_t n) { memcpy(b->b + b->n, p, n); b->n += n; }
static void put_u32(bb *b, uint32_t v) { for (int i = 0; i < 4; i++) b->b[b->n++] = (uint8_t)(v >> (8 * i)); }
static void put_u64(bb *b, uint64_t v) { for (int i = 0; i < 8; i++) b->b[b->n++] = (uint8_t)(v >> (8 * i)); }
static void put_str(bb *b, const char *s) { put_u64(b, strlen(s)); put(b, s, strlen(s)); }
static void set_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void set_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void pad32(bb *b) { while (b->n % 32) b->b[b->n++] = 0; }

static herd_error err;

/* Parses buf; expects failure with status st (or any failure when st < 0) and a
 * message containing each of the given words. */
static void expect_fail(const uint8_t *buf, size_t n, int st, const char *w1, const char *w2,
                        int line) {
    gguf_file g;
    err.msg[0] = 0;
    herd_status got = gguf_parse(&g, buf, n, "mem.gguf", &err);
    CHECKF(got != HERD_OK, "line %d: parse succeeded", line);
    if (got == HERD_OK) { gguf_close(&g); return; }
    CHECKF(st < 0 || (int)got == st, "line %d: status %d, expected %d: %s", line, got, st, err.msg);
    CHECKF(strstr(err.msg, "mem.gguf") != NULL, "line %d: message lacks the file name: %s", line, err.msg);
    CHECKF(!w1 || strstr(err.msg, w1), "line %d: message lacks '%s': %s", line, w1, err.msg);
    CHECKF(!w2 || strstr(err.msg, w2), "line %d: message lacks '%s': %s", line, w2, err.msg);
}
#define FAIL(buf, n, st, w1, w2) expect_fail(buf, n, st, w1, w2, __LINE__)

static void test_types(void) {
    CHECK(herd_type_row_size(HERD_F32, 10) == 40);
    CHECK(herd_type_row_size(HERD_F16, 10) == 20);
    CHECK(herd_type_row_size(HERD_BF16, 10) == 20);
    CHECK(herd_type_row_size(HERD_Q8_0, 64) == 68);
    CHECK(herd_type_row_size(HERD_Q8_0, 33) == 0);
    CHECK(herd_type_row_size(HERD_Q4_0, 64) == 36);
    CHECK(herd_type_row_size(HERD_Q4_K, 512) == 288);
    CHECK(herd_type_row_size(HERD_Q5_K, 256) == 176);
    CHECK(herd_type_row_size(HERD_Q6_K, 256) == 210);
    CHECK(herd_type_row_size(HERD_Q6_K, 128) == 0);
    CHECK(herd_type_row_size(99, 32) == 0);
    CHECK(herd_type_row_size(HERD_F32, -4) == 0);
    CHECK(herd_type_row_size(HERD_F32, INT64_MAX) == 0); /* overflow */
    CHECK(herd_type_block_size(HERD_Q4_K) == 256 && herd_type_block_size(HERD_F16) == 1);
    CHECK(herd_type_block_size(7) == 0 && herd_type_block_bytes(7) == 0);
    CHECK(herd_type_block_bytes(HERD_Q4_0) == 18);
    CHECK(strcmp(herd_type_name(HERD_BF16), "BF16") == 0);
    CHECK(strcmp(herd_type_name(HERD_Q5_K), "Q5_K") == 0);
    CHECK(strcmp(herd_type_name(1234), "?") == 0);
}

static char dir[64];
static char path_in(char *out, const char *name) { sprintf(out, "%s/%s", dir, name); return 0; }

static uint8_t *read_all(const char *path, size_t *n) {
    char *t;
    if (herd_read_file(path, &t, n, &err) != HERD_OK) return NULL;
    return (uint8_t *)t;
}

typedef struct { const char *name; int type, n_dims; int64_t ne[4]; } tspec;
static const tspec specs[] = {
    { "f32", HERD_F32, 2, { 7, 3 } },
    { "f16", HERD_F16, 1, { 5 } },
    { "bf16", HERD_BF16, 3, { 3, 2, 2 } },
    { "blk.0.q8_0", HERD_Q8_0, 2, { 64, 3 } },
    { "blk.0.q4_0", HERD_Q4_0, 2, { 32, 5 } },
    { "q4_k", HERD_Q4_K, 2, { 256, 2 } },
    { "q5_k", HERD_Q5_K, 1, { 512 } },
    { "q6_k", HERD_Q6_K, 4, { 256, 1, 2, 1 } },
};
#define N_SPECS (sizeof specs / sizeof specs[0])

static size_t spec_bytes(const tspec *s) {
    size_t n = herd_type_row_size(s->type, s->ne[0]);
    for (int d = 1; d < s->n_dims; d++) n *= (size_t)s->ne[d];
    return n;
}

static void fill(uint8_t *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(seed * 131 + i * 7 + (i >> 8));
}

static void write_full(const char *path, uint32_t alignment) {
    gguf_writer *w = gguf_writer_new();
    CHECK(w != NULL);
    gguf_writer_add_str(w, "general.architecture", "llama");
    if (alignment) gguf_writer_add_u32(w, "general.alignment", alignment);
    gguf_writer_add_u32(w, "llama.block_count", 32);
    gguf_writer_add_i32(w, "test.i32", -7);
    gguf_writer_add_f32(w, "llama.rope.freq_base", 500000.0f);
    gguf_writer_add_bool(w, "test.bool", 1);
    gguf_writer_add_bool(w, "test.false", 0);
    gguf_writer_add_str(w, "test.empty", "");
    const char *toks[] = { "hello", "", "w\0rld", "<|eot_id|>" };
    size_t lens[] = { 5, 0, 5, 10 };
    gguf_writer_add_str_array(w, "tokenizer.ggml.tokens", toks, lens, 4);
    const char *plain[] = { "a b", "c d" };
    gguf_writer_add_str_array(w, "tokenizer.ggml.merges", plain, NULL, 2);
    int32_t ints[] = { 1, -2, 3, 2147483647 };
    gguf_writer_add_i32_array(w, "tokenizer.ggml.token_type", ints, 4);
    float fl[] = { 0.5f, -1.25f, 3e38f };
    gguf_writer_add_f32_array(w, "tokenizer.ggml.scores", fl, 3);
    gguf_writer_add_i32_array(w, "test.empty_array", NULL, 0);
    gguf_writer_add_u32(w, "llama.block_count", 33); /* replaces the value, keeps the position */
    for (size_t i = 0; i < N_SPECS; i++) {
        size_t n = spec_bytes(&specs[i]);
        uint8_t *data = malloc(n);
        fill(data, n, (unsigned)i);
        CHECK(gguf_writer_add_tensor(w, specs[i].name, specs[i].type, specs[i].n_dims, specs[i].ne,
                                     data, &err) == HERD_OK);
        free(data); /* the writer keeps its own copy */
    }
    /* rejected adds */
    int64_t ne[2] = { 33, 1 };
    uint8_t junk[64] = { 0 };
    CHECK(gguf_writer_add_tensor(w, "bad", HERD_Q8_0, 2, ne, junk, &err) == HERD_ERR_ARG);
    CHECK(strstr(err.msg, "multiple of 32") != NULL);
    CHECK(gguf_writer_add_tensor(w, "f32", HERD_F32, 1, ne, junk, &err) == HERD_ERR_ARG);
    CHECK(strstr(err.msg, "twice") != NULL);
    CHECK(gguf_writer_add_tensor(w, "bad", 77, 1, ne, junk, &err) == HERD_ERR_ARG);
    CHECK(gguf_writer_add_tensor(w, "bad", HERD_F32, 5, ne, junk, &err) == HERD_ERR_ARG);
    CHECK(gguf_writer_write(w, path, &err) == HERD_OK);
    gguf_writer_free(w);
}

static void test_round_trip(uint32_t alignment) {
    char path[128], tmp[140];
    path_in(path, "full.gguf");
    write_full(path, alignment);
    sprintf(tmp, "%s.tmp", path);
    CHECK(access(tmp, F_OK) != 0); /* the temp file was renamed away */
    gguf_file g;
    herd_status st = gguf_open(&g, path, &err);
    CHECKF(st == HERD_OK, "%s", err.msg);
    if (st != HERD_OK) return;
    size_t align = alignment ? alignment : 32;
    CHECK(g.version == 3);
    CHECK(g.alignment == align);
    CHECK(g.data_offset % align == 0);
    CHECK(g.n_kv == (alignment ? 13u : 12u));
    CHECK(strcmp(g.kv[0].key, "general.architecture") == 0); /* insertion order */
    CHECK(strcmp(g.kv[alignment ? 2 : 1].key, "llama.block_count") == 0);
    uint32_t u;
    float f;
    gguf_str s;
    CHECK(gguf_get_u32(&g, "llama.block_count", &u, &err) == HERD_OK && u == 33);
    CHECK(gguf_get_f32(&g, "llama.rope.freq_base", &f, &err) == HERD_OK && f == 500000.0f);
    CHECK(gguf_get_f32(&g, "llama.block_count", &f, &err) == HERD_OK && f == 33.0f);
    CHECK(gguf_get_str(&g, "general.architecture", &s, &err) == HERD_OK && s.len == 5 &&
          memcmp(s.ptr, "llama", 5) == 0);
    CHECK(gguf_get_str(&g, "test.empty", &s, &err) == HERD_OK && s.len == 0);
    /* getter errors name the key and say what was expected */
    CHECK(gguf_get_u32(&g, "test.i32", &u, &err) == HERD_ERR_RANGE && strstr(err.msg, "test.i32"));
    CHECK(gguf_get_u32(&g, "general.architecture", &u, &err) == HERD_ERR_FORMAT &&
          strstr(err.msg, "string") && strstr(err.msg, "integer"));
    CHECK(gguf_get_u32(&g, "nope", &u, &err) == HERD_ERR_FORMAT && strstr(err.msg, "'nope'") &&
          strstr(err.msg, "missing"));
    CHECK(gguf_get_str(&g, "llama.block_count", &s, &err) == HERD_ERR_FORMAT && strstr(err.msg, "u32"));
    CHECK(gguf_get_f32(&g, "test.empty", &f, &err) == HERD_ERR_FORMAT);
    const gguf_kv *kv = gguf_find(&g, "test.i32");
    CHECK(kv && kv->type == GGUF_T_INT32 && kv->i64 == -7);
    kv = gguf_find(&g, "test.bool");
    CHECK(kv && kv->type == GGUF_T_BOOL && kv->u64 == 1);
    kv = gguf_find(&g, "test.false");
    CHECK(kv && kv->type == GGUF_T_BOOL && kv->u64 == 0);
    kv = gguf_find(&g, "tokenizer.ggml.tokens");
    CHECK(kv && kv->type == GGUF_T_ARRAY && kv->arr_type == GGUF_T_STRING && kv->arr_n == 4);
    if (kv && kv->arr_n == 4) {
        CHECK(kv->arr_strs[0].len == 5 && memcmp(kv->arr_strs[0].ptr, "hello", 5) == 0);
        CHECK(kv->arr_strs[1].len == 0);
        CHECK(kv->arr_strs[2].len == 5 && memcmp(kv->arr_strs[2].ptr, "w\0rld", 5) == 0);
        CHECK(kv->arr_strs[3].len == 10 && memcmp(kv->arr_strs[3].ptr, "<|eot_id|>", 10) == 0);
    }
    kv = gguf_find(&g, "tokenizer.ggml.merges");
    CHECK(kv && kv->arr_n == 2 && kv->arr_strs[1].len == 3 && memcmp(kv->arr_strs[1].ptr, "c d", 3) == 0);
    kv = gguf_find(&g, "tokenizer.ggml.token_type");
    CHECK(kv && kv->arr_type == GGUF_T_INT32 && kv->arr_n == 4);
    if (kv && kv->arr_n == 4) {
        int32_t v[4];
        memcpy(v, kv->arr_data, sizeof v);
        CHECK(v[0] == 1 && v[1] == -2 && v[2] == 3 && v[3] == 2147483647);
    }
    kv = gguf_find(&g, "tokenizer.ggml.scores");
    CHECK(kv && kv->arr_type == GGUF_T_FLOAT32 && kv->arr_n == 3);
    if (kv && kv->arr_n == 3) {
        float v[3];
        memcpy(v, kv->arr_data, sizeof v);
        CHECK(v[0] == 0.5f && v[1] == -1.25f && v[2] == 3e38f);
    }
    kv = gguf_find(&g, "test.empty_array");
    CHECK(kv && kv->arr_n == 0);
    CHECK(g.n_tensors == N_SPECS);
    for (size_t i = 0; i < N_SPECS && i < g.n_tensors; i++) {
        const herd_tensor *t = gguf_find_tensor(&g, specs[i].name);
        CHECKF(t != NULL, "tensor %s", specs[i].name);
        if (!t) continue;
        CHECK(t == &g.tensors[i]); /* file order = insertion order */
        CHECK(t->type == specs[i].type && t->n_dims == specs[i].n_dims);
        for (int d = 0; d < 4; d++) CHECK(t->ne[d] == (d < specs[i].n_dims ? specs[i].ne[d] : 1));
        size_t n = spec_bytes(&specs[i]);
        CHECK(t->n_bytes == n);
        CHECK(((const uint8_t *)t->data - g.file.data) % align == 0);
        uint8_t *want = malloc(n);
        fill(want, n, (unsigned)i);
        CHECKF(memcmp(t->data, want, n) == 0, "tensor %s data", specs[i].name);
        free(want);
    }
    CHECK(gguf_find_tensor(&g, "missing") == NULL);
    gguf_close(&g);
    gguf_close(&g); /* closing twice is harmless */
}

/* A file with one 2-D F32 tensor "t" [8, 1] and no metadata, with the offsets of
 * its fields. */
typedef struct { bb b; size_t o_nkv, o_ntensors, o_ndims, o_ne0, o_ne1, o_type, o_off; } one_tensor;
static void make_one_tensor(one_tensor *o) {
    memset(o, 0, sizeof *o);
    bb *b = &o->b;
    put(b, "GGUF", 4);
    put_u32(b, 3);
    o->o_ntensors = b->n; put_u64(b, 1);
    o->o_nkv = b->n; put_u64(b, 0);
    put_str(b, "t");
    o->o_ndims = b->n; put_u32(b, 2);
    o->o_ne0 = b->n; put_u64(b, 8);
    o->o_ne1 = b->n; put_u64(b, 1);
    o->o_type = b->n; put_u32(b, HERD_F32);
    o->o_off = b->n; put_u64(b, 0);
    pad32(b);
    for (int i = 0; i < 32; i++) b->b[b->n++] = (uint8_t)i;
}

static void test_corrupt_tensors(void) {
    one_tensor o, m;
    make_one_tensor(&o);
    gguf_file g;
    CHECKF(gguf_parse(&g, o.b.b, o.b.n, "mem.gguf", &err) == HERD_OK, "%s", err.msg);
    CHECK(g.n_tensors == 1 && g.tensors[0].n_bytes == 32 && g.data_offset == 96);
    gguf_close(&g);

    m = o; set_u64(m.b.b + m.o_off, 4096);
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "tensor 't' data ends at byte 4224 but the file has 128 bytes",
         "truncated");
    m = o; set_u64(m.b.b + m.o_off, UINT64_MAX - 31);
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "data ends at byte", "truncated");
    m = o; set_u64(m.b.b + m.o_off, 4);
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "offset 4 is not a multiple of the alignment 32", NULL);
    m = o; set_u32(m.b.b + m.o_type, 99);
    FAIL(m.b.b, m.b.n, HERD_ERR_UNSUPPORTED, "tensor 't' has type 99", NULL);
    m = o; set_u32(m.b.b + m.o_type, 10); /* Q2_K: a real type herd has no kernels for */
    FAIL(m.b.b, m.b.n, HERD_ERR_UNSUPPORTED, "type 10", "herd does not read");
    m = o; set_u32(m.b.b + m.o_type, HERD_Q8_0); /* ne0 = 8 is not a multiple of 32 */
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "block size 32", NULL);
    m = o; set_u32(m.b.b + m.o_ndims, 5);
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "5 dimensions", "1 to 4");
    m = o; set_u32(m.b.b + m.o_ndims, 0);
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "0 dimensions", NULL);
    m = o; set_u64(m.b.b + m.o_ne1, 0);
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "dimension 1 is 0", NULL);
    m = o; set_u64(m.b.b + m.o_ne0, UINT64_MAX);
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "dimension 0", NULL);
    m = o; set_u64(m.b.b + m.o_ne0, 1ull << 62); set_u64(m.b.b + m.o_ne1, 1ull << 62);
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "fit in memory", NULL);
    m = o; set_u64(m.b.b + m.o_ne0, 1ull << 62); /* elements fit, bytes (x4) overflow */
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "fit in memory", NULL);
    m = o; set_u64(m.b.b + m.o_ne1, 2); /* 64 bytes of data but only 32 in the file */
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "data ends at byte 160 but the file has 128 bytes", NULL);
    m = o; set_u64(m.b.b + m.o_ntensors, 1000000);
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "1000000 tensors", "cannot fit");
    m = o; set_u64(m.b.b + m.o_ntensors, UINT64_MAX);
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "cannot fit", NULL);
    m = o; set_u64(m.b.b + m.o_nkv, UINT64_MAX / 2);
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "metadata entries", "cannot fit");
    m = o; set_u64(m.b.b + m.o_nkv, 2); /* plausible count, but the kvs are really tensor infos */
    FAIL(m.b.b, m.b.n, -1, NULL, NULL);
    m = o; set_u64(m.b.b + 24, 1ull << 40); /* name length */
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "string length 1099511627776", "truncated");
    m = o; m.b.b[32] = 0; /* a NUL in the name */
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "without NUL", NULL);
    m = o; set_u64(m.b.b + 24, 0); /* empty name */
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, NULL, NULL);

    /* every prefix of the file is an error: truncated header, infos or data */
    for (size_t n = 0; n < o.b.n; n++) FAIL(o.b.b, n, HERD_ERR_FORMAT, "truncated", NULL);
    FAIL(NULL, 0, HERD_ERR_FORMAT, "truncated", NULL);

    /* header */
    m = o; m.b.b[0] = 'X';
    FAIL(m.b.b, m.b.n, HERD_ERR_FORMAT, "not a GGUF file", "magic");
    m = o; set_u32(m.b.b + 4, 1);
    FAIL(m.b.b, m.b.n, HERD_ERR_UNSUPPORTED, "version 1", NULL);
    m = o; set_u32(m.b.b + 4, 4);
    FAIL(m.b.b, m.b.n, HERD_ERR_UNSUPPORTED, "version 4", NULL);
    m = o; set_u32(m.b.b + 4, 3u << 24);
    FAIL(m.b.b, m.b.n, HERD_ERR_UNSUPPORTED, "big-endian", NULL);
    m = o; set_u32(m.b.b + 4, 2); /* v2 has the same layout */
    CHECK(gguf_parse(&g, m.b.b, m.b.n, "mem.gguf", &err) == HERD_OK && g.version == 2);
    gguf_close(&g);
}

/* Two tensors "ta", "tb"; duplicates are made by renaming. */
static void test_duplicates(void) {
    bb b = { .n = 0 };
    put(&b, "GGUF", 4); put_u32(&b, 3); put_u64(&b, 2); put_u64(&b, 2);
    put_str(&b, "k.a"); put_u32(&b, GGUF_T_UINT8); b.b[b.n++] = 1;
    size_t kb = b.n + 8 + 2;
    put_str(&b, "k.b"); put_u32(&b, GGUF_T_UINT8); b.b[b.n++] = 2;
    put_str(&b, "ta"); put_u32(&b, 1); put_u64(&b, 4); put_u32(&b, HERD_F32); put_u64(&b, 0);
    size_t tb = b.n + 8 + 1;
    put_str(&b, "tb"); put_u32(&b, 1); put_u64(&b, 4); put_u32(&b, HERD_F32); put_u64(&b, 32);
    pad32(&b);
    for (int i = 0; i < 48; i++) b.b[b.n++] = 0;
    gguf_file g;
    CHECKF(gguf_parse(&g, b.b, b.n, "mem.gguf", &err) == HERD_OK, "%s", err.msg);
    CHECK(g.n_kv == 2 && g.kv[1].u64 == 2 && g.n_tensors == 2);
    gguf_close(&g);
    bb m = b; m.b[tb] = 'a';
    FAIL(m.b, m.n, HERD_ERR_FORMAT, "tensor name 'ta' occurs more than once", NULL);
    m = b; m.b[kb] = 'a';
    FAIL(m.b, m.n, HERD_ERR_FORMAT, "key 'k.a' occurs more than once", NULL);
    m = b; m.b[kb - 8 - 2 + 8 + 3] = 9; /* value type of k.b: an array with garbage after */
    FAIL(m.b, m.n, -1, NULL, NULL);
    m = b; m.b[kb - 8 - 2 + 8 + 3] = 77;
    FAIL(m.b, m.n, HERD_ERR_FORMAT, "metadata 'k.b' has unknown value type 77", NULL);
}

/* A file whose only kv is an array; mutate its element type and count. */
static void test_corrupt_arrays(void) {
    bb b = { .n = 0 };
    put(&b, "GGUF", 4); put_u32(&b, 3); put_u64(&b, 0); put_u64(&b, 2);
    put_str(&b, "a"); put_u32(&b, GGUF_T_ARRAY);
    size_t o_at = b.n; put_u32(&b, GGUF_T_INT32);
    size_t o_n = b.n; put_u64(&b, 3);
    put_u32(&b, 1); put_u32(&b, 2); put_u32(&b, 3);
    put_str(&b, "s"); put_u32(&b, GGUF_T_ARRAY); put_u32(&b, GGUF_T_STRING);
    size_t o_sn = b.n; put_u64(&b, 2);
    size_t o_s1 = b.n; put_str(&b, "xy"); put_str(&b, "");
    gguf_file g;
    CHECKF(gguf_parse(&g, b.b, b.n, "mem.gguf", &err) == HERD_OK, "%s", err.msg);
    CHECK(g.n_kv == 2 && g.kv[0].arr_n == 3 && g.kv[1].arr_n == 2 && g.n_tensors == 0);
    gguf_close(&g);
    bb m = b; set_u64(m.b + o_n, 1ull << 62);
    FAIL(m.b, m.n, HERD_ERR_FORMAT, "array of 4611686018427387904 i32 values", "cannot fit");
    m = b; set_u64(m.b + o_n, UINT64_MAX);
    FAIL(m.b, m.n, HERD_ERR_FORMAT, "cannot fit", NULL);
    m = b; set_u32(m.b + o_at, GGUF_T_ARRAY);
    FAIL(m.b, m.n, HERD_ERR_UNSUPPORTED, "array of arrays", NULL);
    m = b; set_u32(m.b + o_at, 13);
    FAIL(m.b, m.n, HERD_ERR_FORMAT, "unknown array element type 13", NULL);
    m = b; set_u64(m.b + o_sn, 1ull << 60);
    FAIL(m.b, m.n, HERD_ERR_FORMAT, "strings cannot fit", NULL);
    m = b; set_u64(m.b + o_sn, 3); /* the third string runs off the end */
    FAIL(m.b, m.n, HERD_ERR_FORMAT, "truncated", NULL);
    m = b; set_u64(m.b + o_s1, 1000);
    FAIL(m.b, m.n, HERD_ERR_FORMAT, "string length 1000", NULL);
    /* prefixes: all but the full file fail (no tensors: no padding needed) */
    for (size_t n = 0; n < b.n; n++) FAIL(b.b, n, HERD_ERR_FORMAT, "truncated", NULL);
}

static void test_alignment_kv(void) {
    bb b = { .n = 0 };
    put(&b, "GGUF", 4); put_u32(&b, 3); put_u64(&b, 1); put_u64(&b, 1);
    put_str(&b, "general.alignment"); put_u32(&b, GGUF_T_UINT32);
    size_t o_a = b.n; put_u32(&b, 64);
    put_str(&b, "t"); put_u32(&b, 1); put_u64(&b, 4); put_u32(&b, HERD_F32);
    size_t o_off = b.n; put_u64(&b, 0);
    while (b.n % 64) b.b[b.n++] = 0;
    for (int i = 0; i < 16; i++) b.b[b.n++] = 0;
    gguf_file g;
    CHECKF(gguf_parse(&g, b.b, b.n, "mem.gguf", &err) == HERD_OK, "%s", err.msg);
    CHECK(g.alignment == 64 && g.data_offset == 128);
    gguf_close(&g);
    bb m = b; set_u32(m.b + o_a, 0);
    FAIL(m.b, m.n, HERD_ERR_FORMAT, "general.alignment is 0", "power of two");
    m = b; set_u32(m.b + o_a, 48);
    FAIL(m.b, m.n, HERD_ERR_FORMAT, "general.alignment is 48", NULL);
    m = b; set_u32(m.b + o_a, 32); set_u64(m.b + o_off, 64); /* data at 96 + 64 */
    FAIL(m.b, m.n, HERD_ERR_FORMAT, "data ends at byte", NULL);
    m = b; set_u32(m.b + o_a - 4, GGUF_T_FLOAT32);
    FAIL(m.b, m.n, HERD_ERR_FORMAT, "general.alignment has type f32", NULL);
}

/* Random byte mutations of a valid file: any status, but never a crash. */
static void test_mutations(void) {
    char path[128];
    path_in(path, "full.gguf");
    write_full(path, 0);
    size_t n;
    uint8_t *orig = read_all(path, &n);
    CHECK(orig != NULL);
    if (!orig) return;
    uint8_t *m = malloc(n);
    herd_rng r;
    herd_rng_seed(&r, 42);
    int ok = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(m, orig, n);
        int k = 1 + (int)(herd_rng_next(&r) % 4);
        for (int j = 0; j < k; j++) {
            size_t at = herd_rng_next(&r) % n;
            m[at] = (uint8_t)herd_rng_next(&r);
        }
        size_t len = herd_rng_next(&r) % 4 == 0 ? herd_rng_next(&r) % n : n;
        gguf_file g;
        if (gguf_parse(&g, m, len, "mut.gguf", &err) == HERD_OK) {
            ok++;
            for (size_t i = 0; i < g.n_tensors; i++) /* touch every byte of every tensor */
                for (size_t b = 0; b < g.tensors[i].n_bytes; b++) ok += ((const uint8_t *)g.tensors[i].data)[b] == 0x5a;
            gguf_close(&g);
        } else {
            CHECK(err.msg[0] != 0);
        }
    }
    CHECK(ok > 0);
    free(m);
    free(orig);
}

static void test_io_errors(void) {
    gguf_file g;
    CHECK(gguf_open(&g, "/nonexistent/x.gguf", &err) == HERD_ERR_IO && strstr(err.msg, "x.gguf"));
    char path[128];
    path_in(path, "empty.gguf");
    FILE *f = fopen(path, "wb");
    if (f) fclose(f);
    CHECK(gguf_open(&g, path, &err) == HERD_ERR_FORMAT && strstr(err.msg, "truncated") &&
          strstr(err.msg, "empty.gguf"));
    unlink(path);
    gguf_writer *w = gguf_writer_new();
    CHECK(gguf_writer_write(w, "/nonexistent/dir/x.gguf", &err) == HERD_ERR_IO);
    gguf_writer_add_str(w, "k", NULL); /* a bad add is reported by write */
    path_in(path, "bad.gguf");
    CHECK(gguf_writer_write(w, path, &err) == HERD_ERR_ARG && strstr(err.msg, "'k'"));
    CHECK(access(path, F_OK) != 0);
    gguf_writer_free(w);
    /* an empty file (no kvs, no tensors) is valid */
    w = gguf_writer_new();
    CHECK(gguf_writer_write(w, path, &err) == HERD_OK);
    gguf_writer_free(w);
    CHECK(gguf_open(&g, path, &err) == HERD_OK && g.n_kv == 0 && g.n_tensors == 0);
    gguf_close(&g);
    unlink(path);
}

int main(void) {
    strcpy(dir, "/tmp/herd_test_gguf_XXXXXX");
    if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    test_types();
    test_round_trip(0);
    test_round_trip(64);
    test_corrupt_tensors();
    test_duplicates();
    test_corrupt_arrays();
    test_alignment_kv();
    test_mutations();
    test_io_errors();
    char path[128];
    path_in(path, "full.gguf");
    unlink(path);
    rmdir(dir);
    TEST_MAIN_END("test_gguf");
}
