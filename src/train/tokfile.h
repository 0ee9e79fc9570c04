/* tokfile.h - the token file: what `herd data` writes and `herd train` reads.
 *
 * Layout (all little-endian), version 1:
 *   offset  0  char[8]  magic "HERDTOK1"
 *   offset  8  u32      version (1)
 *   offset 12  u32      vocab_size (every id is < vocab_size)
 *   offset 16  u64      n_tokens
 *   offset 24  u32[n_tokens] ids
 * Nothing follows the ids. Documents are concatenated, each starting with
 * <|begin_of_text|>; the file carries no document boundaries of its own.
 *
 * The reader maps the file and validates it completely before handing out ids:
 * magic, version, exact size (truncation or trailing bytes), n_tokens > 0, and every
 * id < vocab_size (the error names the token index and byte offset). It does not
 * check ids against a model's vocabulary: the trainer compares vocab sizes.
 */
#ifndef HERD_TOKFILE_H
#define HERD_TOKFILE_H

#include "core/core.h"

#define TOKFILE_MAGIC "HERDTOK1"
#define TOKFILE_VERSION 1u
#define TOKFILE_HEADER_BYTES 24u

typedef struct {
    herd_mapped_file file;
    uint32_t vocab_size;
    uint64_t n_tokens;
    const uint32_t *ids; /* (n_tokens,) into the mapping; little-endian hosts only */
} tokfile;

/* Writes ids atomically (temp file + rename). Rejects n == 0 and ids >= vocab. */
herd_status tokfile_write(const char *path, const uint32_t *ids, uint64_t n, uint32_t vocab,
                          herd_error *err);
/* Maps and validates path; on failure t is left closed. */
herd_status tokfile_open(tokfile *t, const char *path, herd_error *err);
void tokfile_close(tokfile *t);

#endif
