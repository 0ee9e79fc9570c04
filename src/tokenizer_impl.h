/* tokenizer_impl.h - what tokenizer.c (vocabulary, encoder, decoder) shares with
 * tokenizer_io.c (file loaders and writers). Private to those two files and chat.c.
 */
#ifndef HERD_TOKENIZER_IMPL_H
#define HERD_TOKENIZER_IMPL_H

#include "tokenizer.h"

#define HERD_TOK_N_SPECIAL 256
/* Longest token herd accepts (Llama 3's longest is 128 bytes). Bounds the streaming
 * detokenizer's output: (3 pending + 160) bytes, each at worst 3 bytes of U+FFFD. */
#define HERD_TOK_MAX_LEN 160

/* Offsets of the specials the chat template uses, relative to n_bpe. */
enum {
    HERD_SP_BOS = 0, HERD_SP_EOS = 1, HERD_SP_START_HEADER = 6, HERD_SP_END_HEADER = 7,
    HERD_SP_EOM = 8, HERD_SP_EOT = 9, HERD_SP_PYTHON_TAG = 10,
};

typedef struct {
    const char *ptr;
    size_t len;
} herd_tok_str;

/* Builds a tokenizer from n_bpe BPE tokens (id == rank == index) and the 256
 * special texts (NULL: Llama 3.1's names). Validates: tokens non-empty, at most
 * HERD_TOK_MAX_LEN bytes, unique, all 256 single bytes present. src names the
 * source in messages; lines (optional) gives each token's line number there. */
herd_status herd_tokenizer_build(herd_tokenizer **out, const herd_tok_str *bpe, size_t n_bpe,
                                 const herd_tok_str *specials, const char *src,
                                 const size_t *lines, herd_error *err);

/* Llama 3.1 (HF) name of special k (0..255), written into buf (>= 40 bytes). */
const char *herd_tokenizer_default_special(int k, char *buf, size_t cap);

/* The merges of tokenizer.json / GGUF for BPE token id, as HF's tiktoken converter
 * derives them: every split into two parts that are both tokens, sorted by (rank of
 * the left part, rank of the right part). Fills left_len (cap HERD_TOK_MAX_LEN) with
 * the left parts' byte lengths; returns how many. Listing every split, not only the
 * one BPE itself takes, keeps HF's merge-priority BPE equal to tiktoken's. */
size_t herd_tokenizer_merges(const herd_tokenizer *t, int32_t id, size_t *left_len);

/* GPT-2 byte-level mapping used by tokenizer.json and GGUF ("Ġ" is the space byte). */
/* Appends the byte-level UTF-8 form of bytes to out (cap >= 2*n+1); returns length. */
size_t herd_bytes_to_bytelevel(const char *bytes, size_t n, char *out);
/* Decodes a byte-level string; returns -1 (and the offending code point in *bad_cp)
 * when a character is not in the mapping or the UTF-8 is invalid. out cap >= n. */
long herd_bytelevel_to_bytes(const char *s, size_t n, char *out, uint32_t *bad_cp);

#endif
