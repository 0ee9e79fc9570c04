/* fileio.c - the atomic file writer shared by the format writers (GGUF,
 * safetensors, config.json): data goes to "<path>.tmp", is flushed and fsync'd,
 * then renamed over path, so a reader never sees a half-written file. Errors are
 * sticky: after the first failed write the rest are no-ops and commit reports it.
 * It does not buffer beyond stdio, and does not create directories. */
#include "format/format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

herd_status fmt_atomic_open(fmt_atomic_file *f, const char *path, herd_error *err) {
    memset(f, 0, sizeof *f);
    size_t n = strlen(path);
    f->tmp = malloc(n + 5);
    if (!f->tmp) return herd_errf(err, HERD_ERR_NOMEM, "out of memory writing '%s'", path);
    memcpy(f->tmp, path, n);
    memcpy(f->tmp + n, ".tmp", 5);
    f->path = path;
    f->fp = fopen(f->tmp, "wb");
    if (!f->fp) {
        herd_status st = herd_errf(err, HERD_ERR_IO, "cannot create '%s': %s", f->tmp, strerror(errno));
        free(f->tmp);
        f->tmp = NULL;
        return st;
    }
    return HERD_OK;
}

void fmt_atomic_write(fmt_atomic_file *f, const void *p, size_t n) {
    if (f->failed || n == 0) return;
    if (fwrite(p, 1, n, f->fp) != n) {
        f->failed = 1;
        f->err_no = errno;
    }
}

void fmt_atomic_pad(fmt_atomic_file *f, size_t n) {
    static const uint8_t zeros[64];
    while (n > 0) {
        size_t k = n < sizeof zeros ? n : sizeof zeros;
        fmt_atomic_write(f, zeros, k);
        n -= k;
    }
}

void fmt_atomic_abort(fmt_atomic_file *f) {
    if (f->fp) fclose(f->fp);
    if (f->tmp) {
        unlink(f->tmp);
        free(f->tmp);
    }
    memset(f, 0, sizeof *f);
}

/* fsync of the directory makes the rename itself durable; failure there is not
 * an error (some filesystems refuse to open or sync directories). */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path) + (slash == path)) : strdup(".");
    if (!dir) return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(dir);
}

herd_status fmt_atomic_commit(fmt_atomic_file *f, herd_error *err) {
    if (!f->failed && fflush(f->fp) != 0) { f->failed = 1; f->err_no = errno; }
    if (!f->failed && fsync(fileno(f->fp)) != 0) { f->failed = 1; f->err_no = errno; }
    if (f->failed) {
        herd_status st = herd_errf(err, HERD_ERR_IO, "cannot write '%s': %s", f->tmp,
                                   strerror(f->err_no));
        fmt_atomic_abort(f);
        return st;
    }
    int rc = fclose(f->fp);
    f->fp = NULL;
    if (rc != 0) {
        herd_status st = herd_errf(err, HERD_ERR_IO, "cannot write '%s': %s", f->tmp, strerror(errno));
        fmt_atomic_abort(f);
        return st;
    }
    if (rename(f->tmp, f->path) != 0) {
        herd_status st = herd_errf(err, HERD_ERR_IO, "cannot rename '%s' to '%s': %s", f->tmp,
                                   f->path, strerror(errno));
        fmt_atomic_abort(f);
        return st;
    }
    sync_parent_dir(f->path);
    free(f->tmp);
    memset(f, 0, sizeof *f);
    return HERD_OK;
}
