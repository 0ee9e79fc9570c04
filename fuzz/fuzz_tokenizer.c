/* fuzz_tokenizer.c - libFuzzer target for the tokenizer: the input is parsed as a
 * tiktoken body (herd_tokenizer_from_tiktoken_text), as an OpenAI JSON messages
 * array (herd_chat_parse_json + herd_chat_render), and encoded with a fixed small
 * vocabulary with special on and off. Encoding must be lossless (the token bytes
 * concatenate back to the input, specials aside) and the streaming detokenizer must
 * accept every id. A violated invariant is our bug, so it traps.
 * Build: make fuzz; run: build-fuzz/fuzz_tokenizer -max_total_time=60
 */
#include "tokenizer_impl.h"

#include <stdlib.h>
#include <string.h>

static herd_tokenizer *small;

static void check_roundtrip(const herd_tokenizer *t, const uint8_t *data, size_t size, int special) {
    int32_t *ids;
    size_t n;
    herd_error err;
    if (herd_tokenize(t, (const char *)data, size, 1, special, &ids, &n, &err) != HERD_OK) __builtin_trap();
    if (n == 0 || ids[0] != herd_tokenizer_n_bpe(t)) __builtin_trap();
    size_t k = 0;
    herd_detok d;
    herd_detok_init(&d);
    for (size_t i = 1; i < n; i++) {
        size_t l, dl;
        const char *b = herd_token_bytes(t, ids[i], &l);
        if (!b || k + l > size || memcmp(b, data + k, l) != 0) __builtin_trap();
        if (!special && ids[i] >= herd_tokenizer_n_bpe(t)) __builtin_trap();
        k += l;
        const char *o = herd_detok_push(&d, t, ids[i], &dl);
        if (dl >= sizeof d.out || o[dl] != 0) __builtin_trap();
    }
    size_t fl;
    herd_detok_flush(&d, &fl);
    if (k != size) __builtin_trap();
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    herd_error err;
    if (!small) {
        static const char *const toks[] = { "ab", "cd", "abcd", " a", "aa", "aaaa", "\n\n", " <", "|>" };
        size_t lens[9];
        for (int i = 0; i < 9; i++) lens[i] = strlen(toks[i]);
        if (herd_tokenizer_from_tokens(&small, toks, lens, 9, &err) != HERD_OK) __builtin_trap();
    }
    herd_tokenizer *t = NULL;
    if (herd_tokenizer_from_tiktoken_text(&t, (const char *)data, size, "fuzz", &err) == HERD_OK) {
        check_roundtrip(t, data, size, 0);
        herd_tokenizer_free(t);
    }
    check_roundtrip(small, data, size, 0);
    check_roundtrip(small, data, size, 1);
    herd_chat_message *m;
    size_t n;
    if (herd_chat_parse_json((const char *)data, size, &m, &n, &err) == HERD_OK) {
        int32_t *ids;
        size_t n_ids;
        if (herd_chat_render(small, m, n, 1, &ids, &n_ids, &err) == HERD_OK) free(ids);
        herd_chat_messages_free(m, n);
    }
    return 0;
}
