/* format.h - readers and writers of the weight files herd loads and writes:
 * GGUF v3 (gguf.c), safetensors (safetensors.c). Readers validate every count,
 * offset and size against the file before anything is dereferenced, and hand out
 * tensors as zero-copy views into the mapped file. They know nothing about Llama:
 * model.c maps tensor names to weights.
 */
#ifndef HERD_FORMAT_H
#define HERD_FORMAT_H

#include "core/core.h"

/* A tensor view. ne[0] is the innermost (contiguous) dimension: for a linear
 * weight [out, in], ne[0] = in, ne[1] = out (ggml order; safetensors shapes are
 * reversed on load). Quantized types are blocked along ne[0]. */
typedef struct {
    char *name;
    int type;          /* herd_type */
    int n_dims;        /* 1..4 */
    int64_t ne[4];     /* unused dims are 1 */
    const void *data;  /* into the mapped file */
    size_t n_bytes;
} herd_tensor;

/* Bytes of a row of n elements of a type (0 if n is not a multiple of the block
 * size or the type is unknown). */
size_t herd_type_row_size(int type, int64_t n);
int herd_type_block_size(int type); /* elements per block: 1, 32 or 256; 0 if unknown */
size_t herd_type_block_bytes(int type);

/* ---- GGUF ------------------------------------------------------------------ */

enum {
    GGUF_T_UINT8 = 0, GGUF_T_INT8 = 1, GGUF_T_UINT16 = 2, GGUF_T_INT16 = 3,
    GGUF_T_UINT32 = 4, GGUF_T_INT32 = 5, GGUF_T_FLOAT32 = 6, GGUF_T_BOOL = 7,
    GGUF_T_STRING = 8, GGUF_T_ARRAY = 9, GGUF_T_UINT64 = 10, GGUF_T_INT64 = 11,
    GGUF_T_FLOAT64 = 12,
};

typedef struct {
    const char *ptr; /* into the mapped file, not NUL-terminated */
    size_t len;
} gguf_str;

typedef struct {
    char *key;       /* NUL-terminated copy */
    int type;        /* GGUF_T_* */
    /* scalars: exactly one is meaningful, by type */
    uint64_t u64;
    int64_t i64;
    double f64;
    gguf_str str;
    /* arrays */
    int arr_type;
    uint64_t arr_n;
    const void *arr_data;  /* numeric arrays: raw little-endian elements in the file */
    gguf_str *arr_strs;    /* string arrays: arr_n views, malloc'd */
} gguf_kv;

typedef struct {
    herd_mapped_file file;
    uint32_t version;
    size_t n_kv;
    gguf_kv *kv;
    size_t n_tensors;
    herd_tensor *tensors;
    size_t alignment;
    size_t data_offset;
} gguf_file;

herd_status gguf_open(gguf_file *g, const char *path, herd_error *err);
/* Parses from memory (used by the fuzzer); buf must outlive g. */
herd_status gguf_parse(gguf_file *g, const uint8_t *buf, size_t size, const char *name,
                       herd_error *err);
void gguf_close(gguf_file *g);
const gguf_kv *gguf_find(const gguf_file *g, const char *key);
/* Typed getters: HERD_OK, or an error naming the key when missing / wrong type.
 * Integer getters accept any integer type whose value fits. */
herd_status gguf_get_u32(const gguf_file *g, const char *key, uint32_t *out, herd_error *err);
herd_status gguf_get_f32(const gguf_file *g, const char *key, float *out, herd_error *err);
herd_status gguf_get_str(const gguf_file *g, const char *key, gguf_str *out, herd_error *err);
const herd_tensor *gguf_find_tensor(const gguf_file *g, const char *name);

/* Writer: collect metadata and tensors, then write the file in one go. Tensor
 * data is copied at add time (callers may free their buffers). */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
void gguf_writer_add_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_add_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_writer_add_f32(gguf_writer *w, const char *key, float v);
void gguf_writer_add_bool(gguf_writer *w, const char *key, int v);
void gguf_writer_add_str(gguf_writer *w, const char *key, const char *v);
void gguf_writer_add_str_array(gguf_writer *w, const char *key, const char *const *v,
                               const size_t *lens, size_t n);
void gguf_writer_add_i32_array(gguf_writer *w, const char *key, const int32_t *v, size_t n);
void gguf_writer_add_f32_array(gguf_writer *w, const char *key, const float *v, size_t n);
/* ne in ggml order (ne[0] innermost). */
herd_status gguf_writer_add_tensor(gguf_writer *w, const char *name, int type, int n_dims,
                                   const int64_t *ne, const void *data, herd_error *err);
/* Writes to path atomically (temp file + rename). */
herd_status gguf_writer_write(gguf_writer *w, const char *path, herd_error *err);

/* ---- safetensors ----------------------------------------------------------- */

typedef struct {
    size_t n_files;
    herd_mapped_file *files;
    size_t n_tensors;
    herd_tensor *tensors;  /* BF16, F16, F32 (others rejected with a message) */
} st_set;

/* Opens a single .safetensors file, or every shard named by an index
 * (model.safetensors.index.json) - pass the index path or the .safetensors path. */
herd_status st_open(st_set *s, const char *path, herd_error *err);
/* Parses one file from memory (fuzzer); buf must outlive s. */
herd_status st_parse(st_set *s, const uint8_t *buf, size_t size, const char *name,
                     herd_error *err);
void st_close(st_set *s);
const herd_tensor *st_find_tensor(const st_set *s, const char *name);

/* Writer: tensors with HF shapes (outermost first), written atomically. */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
void st_writer_free(st_writer *w);
herd_status st_writer_add(st_writer *w, const char *name, int type, int n_dims,
                          const int64_t *shape, const void *data, herd_error *err);
herd_status st_writer_write(st_writer *w, const char *path, herd_error *err);

/* ---- HF config.json / generation_config.json (hfconfig.c) ------------------ */

/* Parse config.json (len bytes, need not be NUL-terminated) into c, starting from
 * herd_config_default; where names the file in messages. Llama only. */
herd_status hf_config_parse(herd_config *c, const char *json, size_t len, const char *where,
                            herd_error *err);
/* Overlays generation_config.json: temperature, top_p, top_k, bos/eos ids. */
herd_status hf_generation_config_parse(herd_config *c, const char *json, size_t len,
                                       const char *where, herd_error *err);
herd_status hf_config_write(const herd_config *c, const char *path, herd_error *err);            /* config.json */
/* The same with torch_dtype given ("float32" for an F32 export; the above says "bfloat16"). */
herd_status hf_config_write_dtype(const herd_config *c, const char *path, const char *torch_dtype,
                                  herd_error *err);
herd_status hf_generation_config_write(const herd_config *c, const char *path, herd_error *err); /* generation_config.json */

/* ---- LoRA adapters (lora_format.c) ------------------------------------------ */

/* PEFT's adapter_config.json: what herd needs of it. */
typedef struct {
    int r;          /* 0: not given */
    float alpha;    /* lora_alpha (PEFT's default 8) */
    int rslora;     /* use_rslora: scale alpha / sqrt(r) instead of alpha / r */
    int rank_pattern; /* some modules have their own r (each pair's shape says which) */
} lora_config;
/* Parses adapter_config.json (len bytes); refuses the variants herd cannot apply
 * (DoRA, alpha_pattern, modules_to_save, biases, fan_in_fan_out) by name. */
herd_status lora_config_parse(lora_config *c, const char *json, size_t len, const char *where,
                              herd_error *err);
/* A LoRA tensor's name: PEFT's "[...]layers.N.self_attn.q_proj.lora_A.weight"
 * (gguf 0) or llama.cpp's "blk.N.attn_q.weight.lora_a" (gguf 1). Returns 1 and
 * the layer, the projection (0..6: q k v o gate up down) and whether it is B (the
 * output side); 0 for any other name. */
int lora_name_parse(const char *name, int gguf, int *layer, int *target, int *is_b);
/* Projection t's (0..6) module: "self_attn.q_proj" ... (gguf 0), "attn_q" ... (gguf 1). */
const char *lora_module_name(int t, int gguf);

/* ---- atomic file writing (fileio.c), shared by the writers above ------------ */

typedef struct {
    FILE *fp;
    char *tmp;        /* path + ".tmp" */
    const char *path; /* borrowed */
    int failed, err_no;
} fmt_atomic_file;
herd_status fmt_atomic_open(fmt_atomic_file *f, const char *path, herd_error *err);
void fmt_atomic_write(fmt_atomic_file *f, const void *p, size_t n); /* errors are sticky */
void fmt_atomic_pad(fmt_atomic_file *f, size_t n);                 /* n zero bytes */
herd_status fmt_atomic_commit(fmt_atomic_file *f, herd_error *err); /* fsync + rename */
void fmt_atomic_abort(fmt_atomic_file *f);                          /* removes the temp file */

#endif
