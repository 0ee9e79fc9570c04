/* gguf.c - GGUF v2/v3 reader and writer (little-endian only).
 *
 * Layout: "GGUF", u32 version, u64 n_tensors, u64 n_kv, n_kv x (string key,
 * u32 type, value), n_tensors x (string name, u32 n_dims, u64 ne[n_dims],
 * u32 type, u64 offset), zero padding to general.alignment (default 32), then the
 * tensor data; offsets are relative to that data section. Strings are u64 length +
 * bytes, no NUL.
 *
 * Reader invariant: nothing is dereferenced before its whole extent is known to be
 * inside the buffer; every count is bounded by the bytes left before anything is
 * allocated for it, and all size arithmetic is overflow-checked. Tensors and
 * string values are zero-copy views into the buffer; keys and tensor names are
 * NUL-terminated copies. Not handled: big-endian files, GGUF v1, nested arrays,
 * tensor types herd has no kernels for (each rejected with a message). Overlapping
 * tensor data is not checked (harmless for a read-only mapping).
 *
 * The writer collects copies of everything, then writes the file in one pass
 * (header, padding, data with each tensor padded to the alignment) to a temp file
 * that is renamed into place.
 */
#include "format/format.h"

#include <stdlib.h>
#include <string.h>

#define GGUF_MAGIC "GGUF"
#define GGUF_VERSION 3
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_KEY_LEN 65535
/* Smallest possible encodings, used to bound the header counts by the file size:
 * a kv is a >=1-byte key (8 + 1), a type (4) and a >=1-byte value; a tensor info
 * is a >=1-byte name (8 + 1), n_dims (4), one ne (8), type (4), offset (8). */
#define GGUF_MIN_KV_BYTES 14
#define GGUF_MIN_TENSOR_BYTES 33

/* ---- reader -------------------------------------------------------------- */

typedef struct {
    const uint8_t *buf;
    size_t size, pos;
    const char *name;
    herd_error *err;
    char ctx[200]; /* what is being read, for messages */
} reader;

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

static herd_status rd_bytes(reader *r, size_t n, const uint8_t **out) {
    if (n > r->size - r->pos)
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': %s needs %zu bytes at offset %zu but the file has %zu bytes; "
                         "the file may be truncated", r->name, r->ctx, n, r->pos, r->size);
    *out = r->buf + r->pos;
    r->pos += n;
    return HERD_OK;
}

static herd_status rd_u32(reader *r, uint32_t *v) {
    const uint8_t *p = NULL;
    herd_status st = rd_bytes(r, 4, &p);
    if (st == HERD_OK) *v = le32(p);
    return st;
}

static herd_status rd_u64(reader *r, uint64_t *v) {
    const uint8_t *p = NULL;
    herd_status st = rd_bytes(r, 8, &p);
    if (st == HERD_OK) *v = le64(p);
    return st;
}

static herd_status rd_str(reader *r, gguf_str *s) {
    uint64_t len;
    size_t at = r->pos;
    herd_status st = rd_u64(r, &len);
    if (st != HERD_OK) return st;
    if (len > r->size - r->pos)
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': %s: string length %llu at offset %zu exceeds the %zu bytes "
                         "left in the file; the file is truncated or corrupt", r->name, r->ctx,
                         (unsigned long long)len, at, r->size - r->pos);
    s->ptr = (const char *)r->buf + r->pos;
    s->len = (size_t)len;
    r->pos += (size_t)len;
    return HERD_OK;
}

/* A NUL-terminated copy of a key or tensor name; rejects empty names and names
 * with an embedded NUL (they could not be looked up). */
static herd_status dup_name(reader *r, gguf_str s, char **out) {
    if (s.len == 0 || s.len > GGUF_MAX_KEY_LEN || memchr(s.ptr, 0, s.len))
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': %s: a name must be 1 to %d bytes without NUL; got %zu bytes",
                         r->name, r->ctx, GGUF_MAX_KEY_LEN, s.len);
    *out = malloc(s.len + 1);
    if (!*out) return herd_errf(r->err, HERD_ERR_NOMEM, "gguf: '%s': out of memory", r->name);
    memcpy(*out, s.ptr, s.len);
    (*out)[s.len] = 0;
    return HERD_OK;
}

static size_t scalar_size(int t) {
    switch (t) {
    case GGUF_T_UINT8: case GGUF_T_INT8: case GGUF_T_BOOL: return 1;
    case GGUF_T_UINT16: case GGUF_T_INT16: return 2;
    case GGUF_T_UINT32: case GGUF_T_INT32: case GGUF_T_FLOAT32: return 4;
    case GGUF_T_UINT64: case GGUF_T_INT64: case GGUF_T_FLOAT64: return 8;
    default: return 0;
    }
}

static const char *kv_type_name(int t) {
    static const char *names[] = { "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                   "string", "array", "u64", "i64", "f64" };
    return t >= 0 && t <= GGUF_T_FLOAT64 ? names[t] : "unknown";
}

static int is_int_type(int t) {
    return scalar_size(t) != 0 && t != GGUF_T_FLOAT32 && t != GGUF_T_FLOAT64 && t != GGUF_T_BOOL;
}

static void decode_scalar(gguf_kv *kv, int t, const uint8_t *p) {
    uint32_t u32;
    uint64_t u64;
    union { uint32_t u; float f; } f32;
    union { uint64_t u; double f; } f64;
    switch (t) {
    case GGUF_T_UINT8: kv->u64 = p[0]; break;
    case GGUF_T_BOOL: kv->u64 = p[0] != 0; break;
    case GGUF_T_INT8: kv->i64 = (int8_t)p[0]; break;
    case GGUF_T_UINT16: kv->u64 = (uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_T_INT16: kv->i64 = (int16_t)(uint16_t)(p[0] | p[1] << 8); break;
    case GGUF_T_UINT32: kv->u64 = le32(p); break;
    case GGUF_T_INT32: u32 = le32(p); kv->i64 = (int32_t)u32; break;
    case GGUF_T_FLOAT32: f32.u = le32(p); kv->f64 = f32.f; break;
    case GGUF_T_UINT64: kv->u64 = le64(p); break;
    case GGUF_T_INT64: u64 = le64(p); kv->i64 = (int64_t)u64; break;
    case GGUF_T_FLOAT64: f64.u = le64(p); kv->f64 = f64.f; break;
    }
}

static herd_status read_array(reader *r, gguf_kv *kv) {
    uint32_t at;
    uint64_t n;
    herd_status st = rd_u32(r, &at);
    if (st == HERD_OK) st = rd_u64(r, &n);
    if (st != HERD_OK) return st;
    kv->arr_type = (int)at;
    size_t left = r->size - r->pos;
    if (at == GGUF_T_ARRAY)
        return herd_errf(r->err, HERD_ERR_UNSUPPORTED,
                         "gguf: '%s': %s is an array of arrays, which herd does not read",
                         r->name, r->ctx);
    if (at == GGUF_T_STRING) {
        if (n > left / 8)
            return herd_errf(r->err, HERD_ERR_FORMAT,
                             "gguf: '%s': %s: array of %llu strings cannot fit in the %zu bytes left "
                             "in the file; the file is truncated or corrupt", r->name, r->ctx,
                             (unsigned long long)n, left);
        kv->arr_n = n;
        kv->arr_strs = calloc(n ? (size_t)n : 1, sizeof *kv->arr_strs);
        if (!kv->arr_strs) return herd_errf(r->err, HERD_ERR_NOMEM, "gguf: '%s': out of memory", r->name);
        for (size_t i = 0; i < (size_t)n; i++)
            if ((st = rd_str(r, &kv->arr_strs[i])) != HERD_OK) return st;
        return HERD_OK;
    }
    size_t es = scalar_size((int)at), bytes;
    if (es == 0)
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': %s has unknown array element type %u (expected 0..12)",
                         r->name, r->ctx, at);
    if (n > SIZE_MAX || !herd_mul_size((size_t)n, es, &bytes) || bytes > left)
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': %s: array of %llu %s values cannot fit in the %zu bytes left "
                         "in the file; the file is truncated or corrupt", r->name, r->ctx,
                         (unsigned long long)n, kv_type_name((int)at), left);
    kv->arr_n = n;
    kv->arr_data = r->buf + r->pos;
    r->pos += bytes;
    return HERD_OK;
}

static herd_status read_kv(reader *r, gguf_kv *kv, size_t i) {
    gguf_str key;
    uint32_t t;
    snprintf(r->ctx, sizeof r->ctx, "the key of metadata entry %zu", i);
    herd_status st = rd_str(r, &key);
    if (st == HERD_OK) st = dup_name(r, key, &kv->key);
    if (st != HERD_OK) return st;
    snprintf(r->ctx, sizeof r->ctx, "metadata '%.100s'", kv->key);
    if ((st = rd_u32(r, &t)) != HERD_OK) return st;
    kv->type = (int)t;
    if (t == GGUF_T_STRING) return rd_str(r, &kv->str);
    if (t == GGUF_T_ARRAY) return read_array(r, kv);
    size_t es = scalar_size((int)t);
    if (es == 0)
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': metadata '%.100s' has unknown value type %u (expected 0..12); "
                         "the file is corrupt", r->name, kv->key, t);
    const uint8_t *p = NULL;
    if ((st = rd_bytes(r, es, &p)) != HERD_OK) return st;
    decode_scalar(kv, (int)t, p);
    return HERD_OK;
}

static herd_status read_alignment(reader *r, const gguf_kv *kv, size_t *alignment) {
    uint64_t v;
    if (kv->type == GGUF_T_UINT32 || kv->type == GGUF_T_UINT64 || kv->type == GGUF_T_UINT16 ||
        kv->type == GGUF_T_UINT8) v = kv->u64;
    else if (is_int_type(kv->type) && kv->i64 >= 0) v = (uint64_t)kv->i64;
    else
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': general.alignment has type %s; expected u32", r->name,
                         kv_type_name(kv->type));
    if (v == 0 || (v & (v - 1)) != 0 || v > (1u << 30))
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': general.alignment is %llu; expected a power of two (usually 32)",
                         r->name, (unsigned long long)v);
    *alignment = (size_t)v;
    return HERD_OK;
}

static herd_status read_tensor_info(reader *r, herd_tensor *t, size_t i, size_t alignment,
                                    uint64_t *offset) {
    gguf_str name;
    uint32_t n_dims, type;
    snprintf(r->ctx, sizeof r->ctx, "the name of tensor %zu", i);
    herd_status st = rd_str(r, &name);
    if (st == HERD_OK) st = dup_name(r, name, &t->name);
    if (st != HERD_OK) return st;
    snprintf(r->ctx, sizeof r->ctx, "tensor '%.100s'", t->name);
    if ((st = rd_u32(r, &n_dims)) != HERD_OK) return st;
    if (n_dims < 1 || n_dims > 4)
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': tensor '%.100s' has %u dimensions; expected 1 to 4", r->name,
                         t->name, n_dims);
    t->n_dims = (int)n_dims;
    size_t n_rows = 1;
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t ne;
        if ((st = rd_u64(r, &ne)) != HERD_OK) return st;
        if (ne == 0 || ne > (uint64_t)INT64_MAX)
            return herd_errf(r->err, HERD_ERR_FORMAT,
                             "gguf: '%s': tensor '%.100s' dimension %u is %llu; expected 1 to 2^63-1",
                             r->name, t->name, d, (unsigned long long)ne);
        t->ne[d] = (int64_t)ne;
        if (d > 0 && !herd_mul_size(n_rows, (size_t)ne, &n_rows))
            return herd_errf(r->err, HERD_ERR_FORMAT,
                             "gguf: '%s': tensor '%.100s' has more elements than fit in memory; "
                             "the file is corrupt", r->name, t->name);
    }
    if ((st = rd_u32(r, &type)) != HERD_OK) return st;
    if ((st = rd_u64(r, offset)) != HERD_OK) return st;
    t->type = (int)type;
    int bs = herd_type_block_size(t->type);
    if (bs == 0)
        return herd_errf(r->err, HERD_ERR_UNSUPPORTED,
                         "gguf: '%s': tensor '%.100s' has type %u, which herd does not read; "
                         "supported: F32, F16, BF16, Q8_0, Q4_0, Q4_K, Q5_K, Q6_K; requantize it "
                         "with llama-quantize", r->name, t->name, type);
    size_t row = herd_type_row_size(t->type, t->ne[0]);
    if (t->ne[0] % bs != 0)
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': tensor '%.100s' of type %s has a row of %lld elements; "
                         "expected a multiple of the block size %d", r->name, t->name,
                         herd_type_name(t->type), (long long)t->ne[0], bs);
    if (row == 0 || !herd_mul_size(row, n_rows, &t->n_bytes))
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': tensor '%.100s' has more bytes than fit in memory; "
                         "the file is corrupt", r->name, t->name);
    if (*offset % alignment != 0)
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': tensor '%.100s' offset %llu is not a multiple of the "
                         "alignment %zu; the file is corrupt", r->name, t->name,
                         (unsigned long long)*offset, alignment);
    return HERD_OK;
}

static int cmp_name_ptr(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Returns the first name that occurs twice, or NULL; names[] is sorted in place. */
static const char *find_duplicate(char **names, size_t n) {
    qsort(names, n, sizeof *names, cmp_name_ptr);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0) return names[i];
    return NULL;
}

static herd_status check_duplicates(reader *r, gguf_file *g) {
    size_t n = g->n_kv > g->n_tensors ? g->n_kv : g->n_tensors;
    char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names) return herd_errf(r->err, HERD_ERR_NOMEM, "gguf: '%s': out of memory", r->name);
    herd_status st = HERD_OK;
    for (size_t i = 0; i < g->n_kv; i++) names[i] = g->kv[i].key;
    const char *dup = find_duplicate(names, g->n_kv);
    if (dup) st = herd_errf(r->err, HERD_ERR_FORMAT,
                            "gguf: '%s': metadata key '%.100s' occurs more than once; the file is "
                            "corrupt", r->name, dup);
    if (st == HERD_OK) {
        for (size_t i = 0; i < g->n_tensors; i++) names[i] = g->tensors[i].name;
        dup = find_duplicate(names, g->n_tensors);
        if (dup) st = herd_errf(r->err, HERD_ERR_FORMAT,
                                "gguf: '%s': tensor name '%.100s' occurs more than once; the file "
                                "is corrupt", r->name, dup);
    }
    free(names);
    return st;
}

static void free_contents(gguf_file *g) {
    for (size_t i = 0; g->kv && i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].arr_strs);
    }
    for (size_t i = 0; g->tensors && i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    g->kv = NULL;
    g->tensors = NULL;
    g->n_kv = g->n_tensors = 0;
}

static herd_status read_header(reader *r, gguf_file *g, uint64_t *n_tensors, uint64_t *n_kv) {
    const uint8_t *m = NULL;
    snprintf(r->ctx, sizeof r->ctx, "the header");
    herd_status st = rd_bytes(r, 4, &m);
    if (st != HERD_OK) return st;
    if (memcmp(m, GGUF_MAGIC, 4) != 0) {
        char shown[4];
        for (int i = 0; i < 4; i++) shown[i] = m[i] >= 32 && m[i] < 127 ? (char)m[i] : '?';
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': not a GGUF file: the magic is '%.4s' (%02x %02x %02x %02x), "
                         "expected 'GGUF'", r->name, shown, m[0], m[1], m[2], m[3]);
    }
    if ((st = rd_u32(r, &g->version)) != HERD_OK) return st;
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0 && (g->version >> 24) >= 1 && (g->version >> 24) <= 3)
            return herd_errf(r->err, HERD_ERR_UNSUPPORTED,
                             "gguf: '%s': big-endian GGUF (v%u), which herd does not read; use a "
                             "little-endian file", r->name, g->version >> 24);
        return herd_errf(r->err, HERD_ERR_UNSUPPORTED,
                         "gguf: '%s': GGUF version %u; herd reads versions 2 and 3%s", r->name,
                         g->version, g->version == 1 ? " (convert it with a current llama.cpp)" : "");
    }
    if ((st = rd_u64(r, n_tensors)) != HERD_OK || (st = rd_u64(r, n_kv)) != HERD_OK) return st;
    size_t left = r->size - r->pos;
    if (*n_kv > left / GGUF_MIN_KV_BYTES || *n_tensors > left / GGUF_MIN_TENSOR_BYTES ||
        *n_kv * GGUF_MIN_KV_BYTES + *n_tensors * GGUF_MIN_TENSOR_BYTES > left)
        return herd_errf(r->err, HERD_ERR_FORMAT,
                         "gguf: '%s': the header claims %llu metadata entries and %llu tensors, "
                         "which cannot fit in the %zu bytes that follow; the file is corrupt or "
                         "truncated", r->name, (unsigned long long)*n_kv,
                         (unsigned long long)*n_tensors, left);
    return HERD_OK;
}

static herd_status parse_impl(gguf_file *g, const uint8_t *buf, size_t size, const char *name,
                              herd_error *err) {
    reader r = { .buf = buf, .size = buf ? size : 0, .name = name, .err = err };
    uint64_t n_tensors, n_kv;
    herd_status st = read_header(&r, g, &n_tensors, &n_kv);
    if (st != HERD_OK) return st;

    g->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors) return herd_errf(err, HERD_ERR_NOMEM, "gguf: '%s': out of memory", name);
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < (size_t)n_kv; i++) {
        g->n_kv = i + 1; /* so that free_contents sees the partial entry */
        if ((st = read_kv(&r, &g->kv[i], i)) != HERD_OK) return st;
        if (strcmp(g->kv[i].key, "general.alignment") == 0 &&
            (st = read_alignment(&r, &g->kv[i], &g->alignment)) != HERD_OK) return st;
    }
    uint64_t *offsets = malloc((n_tensors ? (size_t)n_tensors : 1) * sizeof *offsets);
    if (!offsets) return herd_errf(err, HERD_ERR_NOMEM, "gguf: '%s': out of memory", name);
    for (size_t i = 0; i < (size_t)n_tensors && st == HERD_OK; i++) {
        g->n_tensors = i + 1;
        st = read_tensor_info(&r, &g->tensors[i], i, g->alignment, &offsets[i]);
    }
    if (st == HERD_OK) st = check_duplicates(&r, g);
    /* The data section starts at the next multiple of the alignment. A file with no
     * tensors may end right after the tensor infos, without the padding. */
    size_t pad = (g->alignment - r.pos % g->alignment) % g->alignment;
    g->data_offset = r.pos + pad;
    if (st == HERD_OK && g->n_tensors > 0 && pad > r.size - r.pos)
        st = herd_errf(err, HERD_ERR_FORMAT,
                       "gguf: '%s': the data section should start at byte %zu but the file has %zu "
                       "bytes; the file may be truncated", name, g->data_offset, r.size);
    for (size_t i = 0; i < g->n_tensors && st == HERD_OK; i++) {
        herd_tensor *t = &g->tensors[i];
        size_t start, end;
        if (offsets[i] > SIZE_MAX || !herd_add_size(g->data_offset, (size_t)offsets[i], &start) ||
            !herd_add_size(start, t->n_bytes, &end) || end > r.size) {
            st = herd_errf(err, HERD_ERR_FORMAT,
                           "gguf: '%s': tensor '%.100s' data ends at byte %.0f but the file has %zu "
                           "bytes; the file may be truncated", name, t->name,
                           (double)g->data_offset + (double)offsets[i] + (double)t->n_bytes, r.size);
            break;
        }
        t->data = buf + start;
    }
    free(offsets);
    return st;
}

herd_status gguf_parse(gguf_file *g, const uint8_t *buf, size_t size, const char *name,
                       herd_error *err) {
    memset(g, 0, sizeof *g);
    herd_status st = parse_impl(g, buf, size, name, err);
    if (st != HERD_OK) {
        free_contents(g);
        memset(g, 0, sizeof *g);
        return st;
    }
    g->file.path = strdup(name);
    if (!g->file.path) {
        free_contents(g);
        return herd_errf(err, HERD_ERR_NOMEM, "gguf: '%s': out of memory", name);
    }
    return HERD_OK;
}

herd_status gguf_open(gguf_file *g, const char *path, herd_error *err) {
    memset(g, 0, sizeof *g);
    herd_mapped_file f;
    herd_status st = herd_map_file(&f, path, err);
    if (st != HERD_OK) return st;
    st = parse_impl(g, f.data, f.size, path, err);
    if (st != HERD_OK) {
        free_contents(g);
        memset(g, 0, sizeof *g);
        herd_unmap_file(&f);
        return st;
    }
    g->file = f;
    return HERD_OK;
}

void gguf_close(gguf_file *g) {
    if (!g) return;
    free_contents(g);
    herd_unmap_file(&g->file); /* frees path; unmaps only what gguf_open mapped */
    memset(g, 0, sizeof *g);
}

const gguf_kv *gguf_find(const gguf_file *g, const char *key) {
    for (size_t i = 0; i < g->n_kv; i++)
        if (strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const herd_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    for (size_t i = 0; i < g->n_tensors; i++)
        if (strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static const char *gname(const gguf_file *g) { return g->file.path ? g->file.path : "?"; }

static herd_status find_typed(const gguf_file *g, const char *key, const char *want,
                              const gguf_kv **out, herd_error *err) {
    *out = gguf_find(g, key);
    if (!*out)
        return herd_errf(err, HERD_ERR_FORMAT, "gguf: '%s': metadata key '%s' is missing; expected %s",
                         gname(g), key, want);
    return HERD_OK;
}

herd_status gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out, herd_error *err) {
    const gguf_kv *kv;
    herd_status st = find_typed(g, key, "an integer", &kv, err);
    if (st != HERD_OK) return st;
    if (!is_int_type(kv->type))
        return herd_errf(err, HERD_ERR_FORMAT, "gguf: '%s': metadata '%s' has type %s; expected an "
                         "integer", gname(g), key, kv_type_name(kv->type));
    int is_signed = kv->type == GGUF_T_INT8 || kv->type == GGUF_T_INT16 ||
                    kv->type == GGUF_T_INT32 || kv->type == GGUF_T_INT64;
    if (is_signed ? (kv->i64 < 0 || kv->i64 > (int64_t)UINT32_MAX) : kv->u64 > UINT32_MAX)
        return herd_errf(err, HERD_ERR_RANGE, "gguf: '%s': metadata '%s' is %lld; expected 0 to "
                         "4294967295", gname(g), key,
                         is_signed ? (long long)kv->i64 : (long long)kv->u64);
    *out = is_signed ? (uint32_t)kv->i64 : (uint32_t)kv->u64;
    return HERD_OK;
}

herd_status gguf_get_f32(const gguf_file *g, const char *key, float *out, herd_error *err) {
    const gguf_kv *kv;
    herd_status st = find_typed(g, key, "a number", &kv, err);
    if (st != HERD_OK) return st;
    if (kv->type == GGUF_T_FLOAT32 || kv->type == GGUF_T_FLOAT64) *out = (float)kv->f64;
    else if (kv->type == GGUF_T_INT8 || kv->type == GGUF_T_INT16 || kv->type == GGUF_T_INT32 ||
             kv->type == GGUF_T_INT64) *out = (float)kv->i64;
    else if (is_int_type(kv->type)) *out = (float)kv->u64;
    else
        return herd_errf(err, HERD_ERR_FORMAT, "gguf: '%s': metadata '%s' has type %s; expected "
                         "f32", gname(g), key, kv_type_name(kv->type));
    return HERD_OK;
}

herd_status gguf_get_str(const gguf_file *g, const char *key, gguf_str *out, herd_error *err) {
    const gguf_kv *kv;
    herd_status st = find_typed(g, key, "a string", &kv, err);
    if (st != HERD_OK) return st;
    if (kv->type != GGUF_T_STRING)
        return herd_errf(err, HERD_ERR_FORMAT, "gguf: '%s': metadata '%s' has type %s; expected "
                         "string", gname(g), key, kv_type_name(kv->type));
    *out = kv->str;
    return HERD_OK;
}

/* ---- writer -------------------------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t n, cap;
    int oom;
} bbuf;

static void bb_put(bbuf *b, const void *p, size_t n) {
    if (b->oom || n == 0) return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) { b->oom = 1; return; }
            cap *= 2;
        }
        uint8_t *np = realloc(b->p, cap);
        if (!np) { b->oom = 1; return; }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void bb_u32(bbuf *b, uint32_t v) {
    uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
    bb_put(b, x, 4);
}
static void bb_u64(bbuf *b, uint64_t v) {
    bb_u32(b, (uint32_t)v);
    bb_u32(b, (uint32_t)(v >> 32));
}
static void bb_str(bbuf *b, const char *s, size_t n) {
    bb_u64(b, n);
    bb_put(b, s, n);
}

typedef struct {
    char *key;
    bbuf val; /* u32 type + encoded value */
} wkv;

typedef struct {
    char *name;
    int type, n_dims;
    int64_t ne[4];
    void *data;
    size_t n_bytes;
} wtensor;

struct gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *t;
    size_t n_t, cap_t;
    size_t alignment;
    herd_status st; /* first failure of an add function, reported by write */
    char msg[256];
};

gguf_writer *gguf_writer_new(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val.p);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->kv);
    free(w->t);
    free(w);
}

static void w_fail(gguf_writer *w, herd_status st, const char *what, const char *key) {
    if (w->st != HERD_OK) return;
    w->st = st;
    snprintf(w->msg, sizeof w->msg, "%s '%.100s'", what, key ? key : "(null)");
}

/* Takes ownership of val. A key added twice keeps its first position and its
 * last value, so the file never holds duplicates. */
static void add_kv(gguf_writer *w, const char *key, bbuf val) {
    if (!w) { free(val.p); return; }
    if (!key || !*key) { w_fail(w, HERD_ERR_ARG, "empty metadata key", key); free(val.p); return; }
    if (val.oom) { w_fail(w, HERD_ERR_NOMEM, "out of memory adding metadata", key); free(val.p); return; }
    for (size_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].val.p);
            w->kv[i].val = val;
            return;
        }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        wkv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk) { w_fail(w, HERD_ERR_NOMEM, "out of memory adding metadata", key); free(val.p); return; }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) { w_fail(w, HERD_ERR_NOMEM, "out of memory adding metadata", key); free(val.p); return; }
    w->kv[w->n_kv].key = k;
    w->kv[w->n_kv].val = val;
    w->n_kv++;
}

static void set_alignment(gguf_writer *w, const char *key, int64_t v) {
    if (!w || !key || strcmp(key, "general.alignment") != 0) return;
    if (v <= 0 || (v & (v - 1)) != 0 || v > (1 << 30)) w_fail(w, HERD_ERR_ARG, "not a power of two:", key);
    else w->alignment = (size_t)v;
}

void gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v) {
    bbuf b = { 0 };
    bb_u32(&b, GGUF_T_UINT32);
    bb_u32(&b, v);
    set_alignment(w, key, v);
    add_kv(w, key, b);
}

void gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v) {
    bbuf b = { 0 };
    bb_u32(&b, GGUF_T_INT32);
    bb_u32(&b, (uint32_t)v);
    set_alignment(w, key, v);
    add_kv(w, key, b);
}

static uint32_t f32_bits(float f) {
    union { float f; uint32_t u; } v = { .f = f };
    return v.u;
}

void gguf_writer_add_f32(gguf_writer *w, const char *key, float v) {
    bbuf b = { 0 };
    bb_u32(&b, GGUF_T_FLOAT32);
    bb_u32(&b, f32_bits(v));
    add_kv(w, key, b);
}

void gguf_writer_add_bool(gguf_writer *w, const char *key, int v) {
    bbuf b = { 0 };
    uint8_t x = v != 0;
    bb_u32(&b, GGUF_T_BOOL);
    bb_put(&b, &x, 1);
    add_kv(w, key, b);
}

void gguf_writer_add_str(gguf_writer *w, const char *key, const char *v) {
    bbuf b = { 0 };
    if (!v) { if (w) w_fail(w, HERD_ERR_ARG, "NULL string value for", key); return; }
    bb_u32(&b, GGUF_T_STRING);
    bb_str(&b, v, strlen(v));
    add_kv(w, key, b);
}

void gguf_writer_add_str_array(gguf_writer *w, const char *key, const char *const *v,
                               const size_t *lens, size_t n) {
    bbuf b = { 0 };
    if (n && !v) { if (w) w_fail(w, HERD_ERR_ARG, "NULL array for", key); return; }
    bb_u32(&b, GGUF_T_ARRAY);
    bb_u32(&b, GGUF_T_STRING);
    bb_u64(&b, n);
    for (size_t i = 0; i < n; i++) {
        size_t len = lens ? lens[i] : v[i] ? strlen(v[i]) : 0;
        bb_str(&b, v[i] ? v[i] : "", v[i] ? len : 0);
    }
    add_kv(w, key, b);
}

static void add_numeric_array(gguf_writer *w, const char *key, int type, const void *v, size_t n) {
    bbuf b = { 0 };
    if (n && !v) { if (w) w_fail(w, HERD_ERR_ARG, "NULL array for", key); return; }
    bb_u32(&b, GGUF_T_ARRAY);
    bb_u32(&b, (uint32_t)type);
    bb_u64(&b, n);
    const uint32_t *u = v; /* i32 and f32 are both 4-byte little-endian words */
    for (size_t i = 0; i < n; i++) {
        uint32_t x;
        memcpy(&x, u + i, 4);
        bb_u32(&b, x);
    }
    add_kv(w, key, b);
}

void gguf_writer_add_i32_array(gguf_writer *w, const char *key, const int32_t *v, size_t n) {
    add_numeric_array(w, key, GGUF_T_INT32, v, n);
}

void gguf_writer_add_f32_array(gguf_writer *w, const char *key, const float *v, size_t n) {
    add_numeric_array(w, key, GGUF_T_FLOAT32, v, n);
}

herd_status gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, int n_dims,
                                   const int64_t *ne, const void *data, herd_error *err) {
    if (!w || !name || !*name || !ne || !data)
        return herd_errf(err, HERD_ERR_ARG, "gguf writer: tensor '%s': missing writer, name, shape "
                         "or data", name ? name : "(null)");
    if (n_dims < 1 || n_dims > 4)
        return herd_errf(err, HERD_ERR_ARG, "gguf writer: tensor '%s' has %d dimensions; expected 1 "
                         "to 4", name, n_dims);
    int bs = herd_type_block_size(type);
    if (bs == 0)
        return herd_errf(err, HERD_ERR_ARG, "gguf writer: tensor '%s' has unknown type %d", name, type);
    size_t n_rows = 1, n_bytes;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || (d > 0 && !herd_mul_size(n_rows, (size_t)ne[d], &n_rows)))
            return herd_errf(err, HERD_ERR_ARG, "gguf writer: tensor '%s' dimension %d is %lld; "
                             "expected a positive size", name, d, (long long)ne[d]);
    }
    size_t row = herd_type_row_size(type, ne[0]);
    if (row == 0)
        return herd_errf(err, HERD_ERR_ARG, "gguf writer: tensor '%s' of type %s has rows of %lld "
                         "elements; expected a multiple of %d", name, herd_type_name(type),
                         (long long)ne[0], bs);
    if (!herd_mul_size(row, n_rows, &n_bytes))
        return herd_errf(err, HERD_ERR_ARG, "gguf writer: tensor '%s' is too large", name);
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return herd_errf(err, HERD_ERR_ARG, "gguf writer: tensor '%s' added twice", name);
    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? w->cap_t * 2 : 64;
        wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return herd_errf(err, HERD_ERR_NOMEM, "gguf writer: out of memory adding '%s'", name);
        w->t = nt;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = malloc(n_bytes);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return herd_errf(err, HERD_ERR_NOMEM, "gguf writer: out of memory copying tensor '%s' "
                         "(%zu bytes)", name, n_bytes);
    }
    memcpy(t->data, data, n_bytes);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < 4; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->n_bytes = n_bytes;
    w->n_t++;
    return HERD_OK;
}

static size_t pad_to(size_t n, size_t a) { return (a - n % a) % a; }

herd_status gguf_writer_write(gguf_writer *w, const char *path, herd_error *err) {
    if (!w || !path) return herd_errf(err, HERD_ERR_ARG, "gguf writer: missing writer or path");
    if (w->st != HERD_OK)
        return herd_errf(err, w->st, "gguf writer: '%s': an earlier add failed: %s", path, w->msg);
    bbuf h = { 0 };
    bb_put(&h, GGUF_MAGIC, 4);
    bb_u32(&h, GGUF_VERSION);
    bb_u64(&h, w->n_t);
    bb_u64(&h, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        bb_str(&h, w->kv[i].key, strlen(w->kv[i].key));
        bb_put(&h, w->kv[i].val.p, w->kv[i].val.n);
    }
    size_t offset = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        bb_str(&h, t->name, strlen(t->name));
        bb_u32(&h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) bb_u64(&h, (uint64_t)t->ne[d]);
        bb_u32(&h, (uint32_t)t->type);
        bb_u64(&h, offset);
        offset += t->n_bytes + pad_to(t->n_bytes, w->alignment);
    }
    if (h.oom) {
        free(h.p);
        return herd_errf(err, HERD_ERR_NOMEM, "gguf writer: '%s': out of memory", path);
    }
    fmt_atomic_file f;
    herd_status st = fmt_atomic_open(&f, path, err);
    if (st != HERD_OK) { free(h.p); return st; }
    fmt_atomic_write(&f, h.p, h.n);
    fmt_atomic_pad(&f, pad_to(h.n, w->alignment));
    free(h.p);
    for (size_t i = 0; i < w->n_t; i++) {
        fmt_atomic_write(&f, w->t[i].data, w->t[i].n_bytes);
        fmt_atomic_pad(&f, pad_to(w->t[i].n_bytes, w->alignment));
    }
    return fmt_atomic_commit(&f, err);
}
