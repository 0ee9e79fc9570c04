/* safetensors.c - reader for one .safetensors file or a sharded set named by
 * model.safetensors.index.json, and a writer for single files.
 *
 * A file is an 8-byte little-endian header length H, H bytes of JSON
 * {name: {"dtype", "shape": [outermost, ..., innermost], "data_offsets": [begin,
 * end]}, "__metadata__": {...}}, then the data section; offsets are relative to
 * its start (byte 8 + H). Shapes are reversed into ne (ne[0] innermost).
 *
 * Reader invariants: the header length is checked against the file before the
 * JSON is parsed; every tensor's [begin, end) lies inside the data section and
 * spans exactly product(shape) * element size bytes; names are unique across all
 * shards; data is aligned to its element size (true of every file the safetensors
 * library writes) so kernels may load it directly. Only BF16, F16 and F32 are
 * read; other dtypes are rejected naming the tensor. Holes and overlaps between
 * tensors are not checked (harmless for a read-only mapping).
 */
#include "format/format.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ST_MAX_HEADER (100u * 1024 * 1024)
#define ST_MAX_INT 9007199254740992.0 /* 2^53: larger JSON numbers are not exact */

static int dtype_from_name(const char *s, size_t *esize) {
    if (strcmp(s, "BF16") == 0) { *esize = 2; return HERD_BF16; }
    if (strcmp(s, "F16") == 0) { *esize = 2; return HERD_F16; }
    if (strcmp(s, "F32") == 0) { *esize = 4; return HERD_F32; }
    return -1;
}

/* A non-negative integer JSON number that is exact in a double. */
static int json_uint(const cJSON *j, uint64_t *out) {
    if (!cJSON_IsNumber(j)) return 0;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_INT) || (double)(uint64_t)d != d) return 0;
    *out = (uint64_t)d;
    return 1;
}

static herd_status parse_tensor(herd_tensor *t, const cJSON *j, const uint8_t *data,
                                size_t data_size, size_t data_start, const char *name,
                                herd_error *err) {
    const char *tn = j->string;
    if (!cJSON_IsObject(j))
        return herd_errf(err, HERD_ERR_FORMAT, "safetensors: '%s': tensor '%.100s': expected an "
                         "object with dtype, shape and data_offsets", name, tn);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(j, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(j, "data_offsets");
    if (!cJSON_IsString(dt))
        return herd_errf(err, HERD_ERR_FORMAT, "safetensors: '%s': tensor '%.100s' has no string "
                         "'dtype'", name, tn);
    size_t esize = 0;
    int type = dtype_from_name(dt->valuestring, &esize);
    if (type < 0)
        return herd_errf(err, HERD_ERR_UNSUPPORTED, "safetensors: '%s': tensor '%.100s' has dtype "
                         "'%.20s'; herd reads BF16, F16 and F32 (convert the checkpoint to bf16)",
                         name, tn, dt->valuestring);
    int n_dims = cJSON_IsArray(shape) ? cJSON_GetArraySize(shape) : -1;
    if (n_dims < 0)
        return herd_errf(err, HERD_ERR_FORMAT, "safetensors: '%s': tensor '%.100s' has no 'shape' "
                         "array", name, tn);
    if (n_dims > 4)
        return herd_errf(err, HERD_ERR_UNSUPPORTED, "safetensors: '%s': tensor '%.100s' has %d "
                         "dimensions; herd handles 1 to 4", name, tn, n_dims);
    t->type = type;
    t->n_dims = n_dims ? n_dims : 1; /* a scalar is a 1-element vector */
    for (int d = 0; d < 4; d++) t->ne[d] = 1;
    size_t n_el = 1;
    for (int d = 0; d < n_dims; d++) {
        uint64_t v;
        const cJSON *e = cJSON_GetArrayItem(shape, d);
        if (!json_uint(e, &v) || v == 0 || !herd_mul_size(n_el, (size_t)v, &n_el))
            return herd_errf(err, HERD_ERR_FORMAT, "safetensors: '%s': tensor '%.100s' shape entry "
                             "%d is not a positive integer (or the shape is too large)", name, tn, d);
        t->ne[n_dims - 1 - d] = (int64_t)v;
    }
    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 ||
        !json_uint(cJSON_GetArrayItem(offs, 0), &begin) ||
        !json_uint(cJSON_GetArrayItem(offs, 1), &end) || begin > end)
        return herd_errf(err, HERD_ERR_FORMAT, "safetensors: '%s': tensor '%.100s': expected "
                         "'data_offsets': [begin, end] with 0 <= begin <= end", name, tn);
    if (end > data_size)
        return herd_errf(err, HERD_ERR_FORMAT, "safetensors: '%s': tensor '%.100s' data ends at "
                         "byte %llu but the file has %zu bytes; the file may be truncated", name, tn,
                         (unsigned long long)(data_start + end), data_start + data_size);
    if (!herd_mul_size(n_el, esize, &t->n_bytes) || t->n_bytes != end - begin)
        return herd_errf(err, HERD_ERR_FORMAT, "safetensors: '%s': tensor '%.100s' of shape with %zu "
                         "%s elements needs %zu bytes but its data_offsets span %llu bytes", name,
                         tn, n_el, dt->valuestring, n_el * esize, (unsigned long long)(end - begin));
    if ((data_start + begin) % esize != 0)
        return herd_errf(err, HERD_ERR_UNSUPPORTED, "safetensors: '%s': tensor '%.100s' data at byte "
                         "%llu is not aligned to its %zu-byte elements; rewrite the file with the "
                         "safetensors library", name, tn, (unsigned long long)(data_start + begin),
                         esize);
    t->data = data + begin;
    t->name = strdup(tn);
    if (!t->name) return herd_errf(err, HERD_ERR_NOMEM, "safetensors: '%s': out of memory", name);
    return HERD_OK;
}

/* Appends the tensors of one file to s. */
static herd_status parse_file(st_set *s, const uint8_t *buf, size_t size, const char *name,
                              herd_error *err) {
    if (!buf || size < 8)
        return herd_errf(err, HERD_ERR_FORMAT, "safetensors: '%s': the file has %zu bytes; expected "
                         "at least 8 (the header length); the file may be truncated", name,
                         buf ? size : 0);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > size - 8)
        return herd_errf(err, HERD_ERR_FORMAT, "safetensors: '%s': header length %llu exceeds the "
                         "%zu bytes after the length field; the file may be truncated or not "
                         "safetensors", name, (unsigned long long)hlen, size - 8);
    if (hlen > ST_MAX_HEADER)
        return herd_errf(err, HERD_ERR_FORMAT, "safetensors: '%s': header length %llu is above "
                         "herd's limit of %u bytes; the file is corrupt", name,
                         (unsigned long long)hlen, ST_MAX_HEADER);
    cJSON *root = cJSON_ParseWithLength((const char *)buf + 8, (size_t)hlen);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return herd_errf(err, HERD_ERR_FORMAT, "safetensors: '%s': the %llu-byte header is not a "
                         "JSON object; the file is corrupt or not safetensors", name,
                         (unsigned long long)hlen);
    }
    size_t n = (size_t)cJSON_GetArraySize(root), total;
    herd_tensor *nt = NULL;
    if (herd_add_size(s->n_tensors, n, &total) && total < SIZE_MAX / sizeof *nt)
        nt = realloc(s->tensors, (total ? total : 1) * sizeof *nt);
    if (!nt) {
        cJSON_Delete(root);
        return herd_errf(err, HERD_ERR_NOMEM, "safetensors: '%s': out of memory", name);
    }
    s->tensors = nt;
    herd_status st = HERD_OK;
    size_t data_start = 8 + (size_t)hlen;
    for (const cJSON *j = root->child; j && st == HERD_OK; j = j->next) {
        if (strcmp(j->string, "__metadata__") == 0) continue;
        herd_tensor *t = &s->tensors[s->n_tensors];
        memset(t, 0, sizeof *t);
        st = parse_tensor(t, j, buf + data_start, size - data_start, data_start, name, err);
        if (st == HERD_OK) s->n_tensors++;
    }
    cJSON_Delete(root);
    return st;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const herd_tensor *const *)a)->name, (*(const herd_tensor *const *)b)->name);
}

static herd_status check_unique(const st_set *s, const char *name, herd_error *err) {
    const herd_tensor **v = malloc((s->n_tensors ? s->n_tensors : 1) * sizeof *v);
    if (!v) return herd_errf(err, HERD_ERR_NOMEM, "safetensors: '%s': out of memory", name);
    for (size_t i = 0; i < s->n_tensors; i++) v[i] = &s->tensors[i];
    qsort(v, s->n_tensors, sizeof *v, cmp_tensor_name);
    herd_status st = HERD_OK;
    for (size_t i = 1; i < s->n_tensors && st == HERD_OK; i++)
        if (strcmp(v[i - 1]->name, v[i]->name) == 0)
            st = herd_errf(err, HERD_ERR_FORMAT, "safetensors: '%s': tensor '%.100s' occurs more "
                           "than once", name, v[i]->name);
    free(v);
    return st;
}

void st_close(st_set *s) {
    if (!s) return;
    for (size_t i = 0; s->tensors && i < s->n_tensors; i++) free(s->tensors[i].name);
    for (size_t i = 0; s->files && i < s->n_files; i++) herd_unmap_file(&s->files[i]);
    free(s->tensors);
    free(s->files);
    memset(s, 0, sizeof *s);
}

herd_status st_parse(st_set *s, const uint8_t *buf, size_t size, const char *name,
                     herd_error *err) {
    memset(s, 0, sizeof *s);
    herd_status st = parse_file(s, buf, size, name, err);
    if (st == HERD_OK) st = check_unique(s, name, err);
    if (st != HERD_OK) st_close(s);
    return st;
}

const herd_tensor *st_find_tensor(const st_set *s, const char *name) {
    for (size_t i = 0; i < s->n_tensors; i++)
        if (strcmp(s->tensors[i].name, name) == 0) return &s->tensors[i];
    return NULL;
}

/* Maps and parses one more file into s. */
static herd_status add_file(st_set *s, const char *path, herd_error *err) {
    herd_mapped_file *nf = realloc(s->files, (s->n_files + 1) * sizeof *nf);
    if (!nf) return herd_errf(err, HERD_ERR_NOMEM, "safetensors: out of memory opening '%s'", path);
    s->files = nf;
    herd_status st = herd_map_file(&s->files[s->n_files], path, err);
    if (st != HERD_OK) return st;
    s->n_files++;
    herd_mapped_file *f = &s->files[s->n_files - 1];
    return parse_file(s, f->data, f->size, path, err);
}

static char *join_path(const char *dir, size_t dir_len, const char *file) {
    size_t n = strlen(file);
    char *p = malloc(dir_len + n + 2);
    if (!p) return NULL;
    memcpy(p, dir, dir_len);
    p[dir_len] = '/';
    memcpy(p + dir_len + 1, file, n + 1);
    return p;
}

static int in_file(const herd_mapped_file *f, const herd_tensor *t) {
    return f->data && (const uint8_t *)t->data >= f->data &&
           (const uint8_t *)t->data + t->n_bytes <= f->data + f->size;
}

/* Opens every shard named in the index's weight_map (shard names are plain file
 * names next to the index) and checks that each listed tensor is in its shard. */
static herd_status open_index(st_set *s, const char *path, herd_error *err) {
    char *text;
    size_t len;
    herd_status st = herd_read_file(path, &text, &len, err);
    if (st != HERD_OK) return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *map = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    if (!cJSON_IsObject(map)) {
        cJSON_Delete(root);
        return herd_errf(err, HERD_ERR_FORMAT, "safetensors: index '%s' is not a JSON object with a "
                         "'weight_map' object", path);
    }
    const char *slash = strrchr(path, '/');
    const char *dir = slash ? path : ".";
    size_t dir_len = slash ? (size_t)(slash - path) : 1;
    if (slash == path) dir_len = 0; /* "/model.safetensors.index.json" */
    for (const cJSON *e = map->child; e && st == HERD_OK; e = e->next) {
        const char *shard = cJSON_IsString(e) ? e->valuestring : NULL;
        if (!shard || !*shard || strchr(shard, '/') || strcmp(shard, "..") == 0 ||
            strcmp(shard, ".") == 0) {
            st = herd_errf(err, HERD_ERR_FORMAT, "safetensors: index '%s': tensor '%.100s' maps to "
                           "'%.100s'; expected a file name next to the index", path, e->string,
                           shard ? shard : "(not a string)");
            break;
        }
        int seen = 0;
        for (const cJSON *p = map->child; p != e && !seen; p = p->next)
            seen = strcmp(p->valuestring, shard) == 0;
        if (seen) continue;
        char *full = join_path(dir, dir_len, shard);
        if (!full) { st = herd_errf(err, HERD_ERR_NOMEM, "safetensors: out of memory"); break; }
        st = add_file(s, full, err);
        free(full);
    }
    if (st == HERD_OK) st = check_unique(s, path, err);
    for (const cJSON *e = map->child; e && st == HERD_OK; e = e->next) {
        const herd_tensor *t = st_find_tensor(s, e->string);
        const herd_mapped_file *f = NULL;
        for (size_t i = 0; t && i < s->n_files && !f; i++) {
            const char *b = strrchr(s->files[i].path, '/');
            if (strcmp(b ? b + 1 : s->files[i].path, e->valuestring) == 0) f = &s->files[i];
        }
        if (!t || !f || !in_file(f, t))
            st = herd_errf(err, HERD_ERR_FORMAT, "safetensors: index '%s' lists tensor '%.100s' in "
                           "'%.100s', but that file does not contain it; the download may be "
                           "incomplete", path, e->string, e->valuestring);
    }
    cJSON_Delete(root);
    return st;
}

herd_status st_open(st_set *s, const char *path, herd_error *err) {
    memset(s, 0, sizeof *s);
    struct stat sb;
    herd_status st;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        /* A model directory: the index if there is one, else model.safetensors. */
        size_t n = strlen(path);
        char *p = join_path(path, n, "model.safetensors.index.json");
        if (!p) return herd_errf(err, HERD_ERR_NOMEM, "safetensors: out of memory");
        if (!herd_file_exists(p)) {
            free(p);
            p = join_path(path, n, "model.safetensors");
            if (!p) return herd_errf(err, HERD_ERR_NOMEM, "safetensors: out of memory");
        }
        st = st_open(s, p, err);
        free(p);
        return st;
    }
    if (herd_ends_with(path, ".json")) st = open_index(s, path, err);
    else {
        st = add_file(s, path, err);
        if (st == HERD_OK) st = check_unique(s, path, err);
    }
    if (st != HERD_OK) st_close(s);
    return st;
}

/* ---- writer -------------------------------------------------------------- */

typedef struct {
    char *name;
    int type, n_dims;
    int64_t shape[4]; /* outermost first */
    void *data;
    size_t n_bytes, esize, offset;
} stw_tensor;

struct st_writer {
    stw_tensor *t;
    size_t n, cap;
};

st_writer *st_writer_new(void) { return calloc(1, sizeof(st_writer)); }

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].data);
    }
    free(w->t);
    free(w);
}

static const char *dtype_name(int type) {
    return type == HERD_BF16 ? "BF16" : type == HERD_F16 ? "F16" : type == HERD_F32 ? "F32" : NULL;
}

herd_status st_writer_add(st_writer *w, const char *name, int type, int n_dims,
                          const int64_t *shape, const void *data, herd_error *err) {
    if (!w || !name || !shape || !data)
        return herd_errf(err, HERD_ERR_ARG, "safetensors writer: tensor '%s': missing writer, name, "
                         "shape or data", name ? name : "(null)");
    if (!dtype_name(type))
        return herd_errf(err, HERD_ERR_ARG, "safetensors writer: tensor '%s' has type %s; expected "
                         "BF16, F16 or F32", name, herd_type_name(type));
    if (n_dims < 1 || n_dims > 4)
        return herd_errf(err, HERD_ERR_ARG, "safetensors writer: tensor '%s' has %d dimensions; "
                         "expected 1 to 4", name, n_dims);
    size_t esize = herd_type_block_bytes(type), n_bytes = esize;
    for (int d = 0; d < n_dims; d++)
        if (shape[d] <= 0 || (double)shape[d] > ST_MAX_INT ||
            !herd_mul_size(n_bytes, (size_t)shape[d], &n_bytes))
            return herd_errf(err, HERD_ERR_ARG, "safetensors writer: tensor '%s' dimension %d is "
                             "%lld; expected a positive size", name, d, (long long)shape[d]);
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return herd_errf(err, HERD_ERR_ARG, "safetensors writer: tensor '%s' added twice", name);
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        stw_tensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt) return herd_errf(err, HERD_ERR_NOMEM, "safetensors writer: out of memory");
        w->t = nt;
        w->cap = cap;
    }
    stw_tensor *t = &w->t[w->n];
    memset(t, 0, sizeof *t);
    t->name = strdup(name);
    t->data = malloc(n_bytes);
    if (!t->name || !t->data) {
        free(t->name);
        free(t->data);
        return herd_errf(err, HERD_ERR_NOMEM, "safetensors writer: out of memory copying tensor "
                         "'%s' (%zu bytes)", name, n_bytes);
    }
    memcpy(t->data, data, n_bytes);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < n_dims; d++) t->shape[d] = shape[d];
    t->n_bytes = n_bytes;
    t->esize = esize;
    w->n++;
    return HERD_OK;
}

/* Data goes in insertion order unless that would misalign an element (a BF16
 * tensor of odd size before an F32 one); then, like the safetensors library,
 * wider elements go first. The header keeps insertion order either way. */
static void plan_offsets(st_writer *w, size_t *order) {
    int aligned = 1;
    size_t off = 0;
    for (size_t i = 0; i < w->n; i++) {
        order[i] = i;
        aligned &= off % w->t[i].esize == 0;
        off += w->t[i].n_bytes;
    }
    if (!aligned) {
        size_t k = 0;
        for (size_t es = 4; es >= 2; es /= 2)
            for (size_t i = 0; i < w->n; i++)
                if (w->t[i].esize == es) order[k++] = i;
    }
    off = 0;
    for (size_t i = 0; i < w->n; i++) {
        w->t[order[i]].offset = off;
        off += w->t[order[i]].n_bytes;
    }
}

static cJSON *build_header(const st_writer *w) {
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    if (!root || !meta || !cJSON_AddItemToObject(root, "__metadata__", meta) ||
        !cJSON_AddStringToObject(meta, "format", "pt")) {
        cJSON_Delete(root);
        if (!root) cJSON_Delete(meta);
        return NULL;
    }
    for (size_t i = 0; i < w->n; i++) {
        const stw_tensor *t = &w->t[i];
        double shape[4], offs[2] = { (double)t->offset, (double)(t->offset + t->n_bytes) };
        for (int d = 0; d < t->n_dims; d++) shape[d] = (double)t->shape[d];
        cJSON *o = cJSON_CreateObject();
        cJSON *sh = cJSON_CreateDoubleArray(shape, t->n_dims), *of = cJSON_CreateDoubleArray(offs, 2);
        int ok = o && sh && of && cJSON_AddStringToObject(o, "dtype", dtype_name(t->type));
        ok = ok && cJSON_AddItemToObject(o, "shape", sh);
        if (!ok) cJSON_Delete(sh);
        ok = ok && cJSON_AddItemToObject(o, "data_offsets", of);
        if (!ok) cJSON_Delete(of);
        if (ok) ok = cJSON_AddItemToObject(root, t->name, o);
        if (!ok) {
            cJSON_Delete(o);
            cJSON_Delete(root);
            return NULL;
        }
    }
    return root;
}

herd_status st_writer_write(st_writer *w, const char *path, herd_error *err) {
    if (!w || !path) return herd_errf(err, HERD_ERR_ARG, "safetensors writer: missing writer or path");
    size_t *order = malloc((w->n ? w->n : 1) * sizeof *order);
    if (!order) return herd_errf(err, HERD_ERR_NOMEM, "safetensors writer: out of memory");
    plan_offsets(w, order);
    cJSON *root = build_header(w);
    char *json = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    if (!json) {
        free(order);
        return herd_errf(err, HERD_ERR_NOMEM, "safetensors writer: out of memory building the "
                         "header of '%s'", path);
    }
    size_t jlen = strlen(json), hlen = jlen + (8 - jlen % 8) % 8;
    uint8_t lenb[8];
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    fmt_atomic_file f;
    herd_status st = fmt_atomic_open(&f, path, err);
    if (st == HERD_OK) {
        fmt_atomic_write(&f, lenb, 8);
        fmt_atomic_write(&f, json, jlen);
        fmt_atomic_write(&f, "        ", hlen - jlen); /* spaces, as the spec pads */
        for (size_t i = 0; i < w->n; i++) fmt_atomic_write(&f, w->t[order[i]].data, w->t[order[i]].n_bytes);
        st = fmt_atomic_commit(&f, err);
    }
    cJSON_free(json);
    free(order);
    return st;
}
