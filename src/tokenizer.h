/* tokenizer.h - internal constructors of the Llama 3 tokenizer (tiktoken BPE ranks,
 * Meta's pre-tokenizer regex, 256 special tokens after the BPE ranks). The public
 * encode/decode calls are in herd.h. Whichever source it is loaded from, the same
 * vocabulary gives the same ids.
 */
#ifndef HERD_TOKENIZER_H
#define HERD_TOKENIZER_H

#include "core/core.h"
#include "format/format.h"

/* tiktoken file: one "base64(bytes) rank" line per BPE token; the 256 special
 * tokens get ids n_ranks .. n_ranks+255 with Llama 3.1's names. */
herd_status herd_tokenizer_load_tiktoken(herd_tokenizer **out, const char *path, herd_error *err);
/* HF tokenizer.json: model.vocab (GPT-2 byte-level strings) + added_tokens. */
herd_status herd_tokenizer_load_hf_json(herd_tokenizer **out, const char *path, herd_error *err);
/* GGUF: tokenizer.ggml.tokens / token_type (model "gpt2", pre "llama-bpe"). */
herd_status herd_tokenizer_load_gguf(herd_tokenizer **out, const gguf_file *g, herd_error *err);
/* From memory (fuzzer, tests): a tiktoken text body. */
herd_status herd_tokenizer_from_tiktoken_text(herd_tokenizer **out, const char *text, size_t len,
                                              const char *name, herd_error *err);
/* A byte-level vocabulary: 256 byte tokens (rank = byte value) plus the given merged
 * tokens (ranks 256..), plus the 256 specials. Used by `herd init` without a
 * tokenizer and by tests. */
herd_status herd_tokenizer_from_tokens(herd_tokenizer **out, const char *const *tokens,
                                       const size_t *lens, size_t n_tokens, herd_error *err);
void herd_tokenizer_free(herd_tokenizer *t);

/* The pre-tokenizer alone (encoding steps 2-4 in tokenizer.c, special text plain):
 * calls fn with each piece BPE would see, in order; an invalid UTF-8 byte is a piece
 * of its own. fn returns 0 to stop (reported as out of memory). The vocabulary is
 * not used, so any tokenizer (e.g. the 256-byte one) splits the same way. */
typedef int (*herd_piece_fn)(void *ctx, const char *piece, size_t len);
herd_status herd_tokenizer_split(const herd_tokenizer *t, const char *text, size_t len,
                                 herd_piece_fn fn, void *ctx, herd_error *err);

/* Number of BPE (non-special) tokens; specials are n_bpe .. n_bpe+255. */
int herd_tokenizer_n_bpe(const herd_tokenizer *t);

/* Writers (herd init, herd tokenizer train): tiktoken tokenizer.model, HF
 * tokenizer.json, and the GGUF tokenizer.ggml.* keys. */
herd_status herd_tokenizer_write_tiktoken(const herd_tokenizer *t, const char *path, herd_error *err);
herd_status herd_tokenizer_write_hf_json(const herd_tokenizer *t, const char *path, herd_error *err);
void herd_tokenizer_write_gguf_kv(const herd_tokenizer *t, gguf_writer *w);

#endif
