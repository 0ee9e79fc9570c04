/* checkpoint.c - the training checkpoint: everything a run needs to continue
 * bit-identically, in one file written atomically (temp + fsync + rename), so a
 * SIGKILL at any moment leaves either the previous checkpoint or the new one.
 *
 * Layout (little-endian), version 1:
 *   char[8] "HERDCKP1", u32 version, u32 header bytes (H)
 *   i32 dim, n_layers, n_heads, n_kv_heads, head_dim, ffn_dim, vocab, tied, rope_interleaved
 *   i32 B, T, accum, shuffle; u64 seed, n_params, step, data_pos, rng[4]
 *   (pad to H) f32 losses[step], f32 params[n_params], f32 m[n_params], f32 v[n_params]
 * The file size must be exactly that; anything else is rejected with the numbers.
 */
#include <string.h>

#include "train/train.h"

#define CKPT_MAGIC "HERDCKP1"
enum { CKPT_VERSION = 1, CKPT_HEADER = 256 };

typedef struct {
    char magic[8];
    uint32_t version, header_bytes;
    int32_t shape[9];
    int32_t B, T, accum, shuffle;
    uint64_t seed, n_params, step, data_pos, rng[4];
} ckpt_header;

_Static_assert(sizeof(ckpt_header) <= CKPT_HEADER, "checkpoint header fits");

static void fill_shape(int32_t *s, const train_model *tm) {
    const herd_config *c = &tm->c;
    int32_t v[9] = { c->dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim, c->ffn_dim,
                     c->vocab_size, c->tie_embeddings, tm->rope_interleaved };
    memcpy(s, v, sizeof v);
}

herd_status checkpoint_save(const char *path, const train_model *tm, const float *m,
                            const float *v, const train_state *s, herd_error *err) {
    ckpt_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CKPT_MAGIC, 8);
    h.version = CKPT_VERSION;
    h.header_bytes = CKPT_HEADER;
    fill_shape(h.shape, tm);
    h.B = s->B; h.T = s->T; h.accum = s->accum; h.shuffle = s->shuffle;
    h.seed = s->seed;
    h.n_params = tm->n_params;
    h.step = s->step;
    h.data_pos = s->data_pos;
    memcpy(h.rng, s->rng.s, sizeof h.rng);
    fmt_atomic_file f;
    herd_status st = fmt_atomic_open(&f, path, err);
    if (st) return st;
    fmt_atomic_write(&f, &h, sizeof h);
    fmt_atomic_pad(&f, CKPT_HEADER - sizeof h);
    fmt_atomic_write(&f, s->losses, s->step * sizeof(float));
    fmt_atomic_write(&f, tm->params, tm->n_params * sizeof(float));
    fmt_atomic_write(&f, m, tm->n_params * sizeof(float));
    fmt_atomic_write(&f, v, tm->n_params * sizeof(float));
    return fmt_atomic_commit(&f, err);
}

herd_status checkpoint_load(const char *path, train_model *tm, float *m, float *v,
                            train_state *s, uint64_t loss_capacity, herd_error *err) {
    herd_mapped_file f;
    herd_status st = herd_map_file(&f, path, err);
    if (st) return st;
    ckpt_header h;
    int32_t shape[9];
    fill_shape(shape, tm);
    if (f.size < CKPT_HEADER) {
        st = herd_errf(err, HERD_ERR_FORMAT, "checkpoint '%s' has %zu bytes, less than its "
                       "header; delete it to start over", path, f.size);
        goto done;
    }
    memcpy(&h, f.data, sizeof h);
    if (memcmp(h.magic, CKPT_MAGIC, 8) || h.version != CKPT_VERSION || h.header_bytes != CKPT_HEADER) {
        st = herd_errf(err, HERD_ERR_FORMAT, "checkpoint '%s': not a version %d herd checkpoint",
                       path, CKPT_VERSION);
        goto done;
    }
    if (memcmp(h.shape, shape, sizeof shape) || h.n_params != tm->n_params) {
        st = herd_errf(err, HERD_ERR_ARG, "checkpoint '%s' is of another model (dim %d, %d "
                       "layers, vocab %d) than --init (dim %d, %d layers, vocab %d)", path,
                       h.shape[0], h.shape[1], h.shape[6], shape[0], shape[1], shape[6]);
        goto done;
    }
    if (h.B != s->B || h.T != s->T || h.accum != s->accum || h.shuffle != s->shuffle ||
        h.seed != s->seed) {
        st = herd_errf(err, HERD_ERR_ARG, "checkpoint '%s' was made with --batch %d --seq %d "
                       "--accum %d --seed %llu%s; resume with the same values", path, h.B, h.T,
                       h.accum, (unsigned long long)h.seed, h.shuffle ? "" : " --no-shuffle");
        goto done;
    }
    if (h.step > loss_capacity) {
        st = herd_errf(err, HERD_ERR_ARG, "checkpoint '%s' is at step %llu, past --steps %llu",
                       path, (unsigned long long)h.step, (unsigned long long)loss_capacity);
        goto done;
    }
    size_t P = tm->n_params * sizeof(float);
    uint64_t want = CKPT_HEADER + h.step * sizeof(float) + 3 * (uint64_t)P;
    if (f.size != want) {
        st = herd_errf(err, HERD_ERR_FORMAT, "checkpoint '%s' has %zu bytes; expected %llu; it "
                       "may be truncated", path, f.size, (unsigned long long)want);
        goto done;
    }
    const uint8_t *p = f.data + CKPT_HEADER;
    memcpy(s->losses, p, h.step * sizeof(float)); p += h.step * sizeof(float);
    memcpy(tm->params, p, P); p += P;
    memcpy(m, p, P); p += P;
    memcpy(v, p, P);
    s->step = h.step;
    s->data_pos = h.data_pos;
    memcpy(s->rng.s, h.rng, sizeof h.rng);
done:
    herd_unmap_file(&f);
    return st;
}
