/* tokfile.c - reading and writing token files (layout in tokfile.h).
 * The writer goes through fmt_atomic (temp + rename) so a crash never leaves a
 * half-written file under the final name. The reader rejects anything it cannot
 * vouch for with a message naming the file and the offending offset.
 */
#include <string.h>

#include "format/format.h"
#include "train/tokfile.h"

static void put_u32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static void put_u64(uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static uint32_t get_u32(const uint8_t *p) { uint32_t v = 0; for (int i = 3; i >= 0; i--) v = v << 8 | p[i]; return v; }
static uint64_t get_u64(const uint8_t *p) { uint64_t v = 0; for (int i = 7; i >= 0; i--) v = v << 8 | p[i]; return v; }

herd_status tokfile_write(const char *path, const uint32_t *ids, uint64_t n, uint32_t vocab,
                          herd_error *err) {
    if (n == 0)
        return herd_errf(err, HERD_ERR_ARG, "token file '%s': no tokens to write", path);
    for (uint64_t i = 0; i < n; i++)
        if (ids[i] >= vocab)
            return herd_errf(err, HERD_ERR_RANGE, "token file '%s': id %u at index %llu is not "
                             "below the vocabulary size %u", path, ids[i], (unsigned long long)i, vocab);
    uint8_t hdr[TOKFILE_HEADER_BYTES];
    memcpy(hdr, TOKFILE_MAGIC, 8);
    put_u32(hdr + 8, TOKFILE_VERSION);
    put_u32(hdr + 12, vocab);
    put_u64(hdr + 16, n);
    fmt_atomic_file f;
    herd_status st = fmt_atomic_open(&f, path, err);
    if (st) return st;
    fmt_atomic_write(&f, hdr, sizeof hdr);
    uint8_t buf[4096];
    for (uint64_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < sizeof buf / 4 && i < n; k++, i++) put_u32(buf + 4 * k, ids[i]);
        fmt_atomic_write(&f, buf, 4 * k);
    }
    return fmt_atomic_commit(&f, err);
}

void tokfile_close(tokfile *t) {
    herd_unmap_file(&t->file);
    memset(t, 0, sizeof *t);
}

herd_status tokfile_open(tokfile *t, const char *path, herd_error *err) {
    memset(t, 0, sizeof *t);
    herd_status st = herd_map_file(&t->file, path, err);
    if (st) return st;
    const uint8_t *d = t->file.data;
    size_t size = t->file.size;
    if (size == 0) {
        st = herd_errf(err, HERD_ERR_FORMAT, "token file '%s' is empty; expected a %u-byte "
                       "header and ids (write one with `herd data`)", path, TOKFILE_HEADER_BYTES);
        goto fail;
    }
    if (size < TOKFILE_HEADER_BYTES || memcmp(d, TOKFILE_MAGIC, 8) != 0) {
        st = herd_errf(err, HERD_ERR_FORMAT, "token file '%s': %s; expected the magic '%s' "
                       "(write one with `herd data`)", path,
                       size < TOKFILE_HEADER_BYTES ? "shorter than its header" : "bad magic",
                       TOKFILE_MAGIC);
        goto fail;
    }
    uint32_t version = get_u32(d + 8);
    if (version != TOKFILE_VERSION) {
        st = herd_errf(err, HERD_ERR_UNSUPPORTED, "token file '%s': version %u; this herd reads "
                       "version %u", path, version, TOKFILE_VERSION);
        goto fail;
    }
    t->vocab_size = get_u32(d + 12);
    t->n_tokens = get_u64(d + 16);
    if (t->n_tokens == 0) {
        st = herd_errf(err, HERD_ERR_FORMAT, "token file '%s' holds no tokens", path);
        goto fail;
    }
    uint64_t body = size - TOKFILE_HEADER_BYTES;
    if (t->n_tokens > body / 4 || body != t->n_tokens * 4) {
        st = herd_errf(err, HERD_ERR_FORMAT, "token file '%s': header says %llu tokens (%llu "
                       "bytes) but the file has %llu bytes after the header; %s", path,
                       (unsigned long long)t->n_tokens,
                       (unsigned long long)(t->n_tokens <= UINT64_MAX / 4 ? t->n_tokens * 4 : 0),
                       (unsigned long long)body,
                       body < t->n_tokens * 4 ? "the file is truncated" : "trailing bytes");
        goto fail;
    }
    t->ids = (const uint32_t *)(d + TOKFILE_HEADER_BYTES);
    for (uint64_t i = 0; i < t->n_tokens; i++) {
        uint32_t id = get_u32(d + TOKFILE_HEADER_BYTES + 4 * i);
        if (id >= t->vocab_size) {
            st = herd_errf(err, HERD_ERR_RANGE, "token file '%s': id %u at token %llu (byte "
                           "offset %llu) is not below the vocabulary size %u", path, id,
                           (unsigned long long)i,
                           (unsigned long long)(TOKFILE_HEADER_BYTES + 4 * i), t->vocab_size);
            goto fail;
        }
    }
    return HERD_OK;
fail:
    tokfile_close(t);
    return st;
}
