/* fuzz_json_grammar.c - libFuzzer target for constrained JSON (src/json_grammar.c):
 * the input is a JSON Schema, a NUL byte, then a text. The schema compiles or is
 * refused with a message; the text (and, for the any-object grammar, the input
 * whole) is fed byte by byte. Invariants, each our bug if broken, so they trap:
 *   - a text the grammar calls complete is JSON that cJSON parses whole;
 *   - the mask (a trie walk over a small vocabulary) agrees with each token tried
 *     alone, and something (a token or the end) is allowed wherever the text got;
 *   - feeding a prefix the grammar refused leaves the state as it was.
 * Seeds: fuzz/corpus/fuzz_json_grammar/. Build: make fuzz; run:
 * build-fuzz/fuzz_json_grammar fuzz/corpus/fuzz_json_grammar -max_total_time=60 */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "herd.h"
#include "tokenizer.h"

static herd_tokenizer *tok;
static herd_json_vocab *vocab;
static const int32_t END = 256;

static void check_text(const herd_json_grammar *g, const char *text, size_t len) {
    herd_json_state *s;
    herd_error err;
    if (herd_json_state_new(&s, g, &err) != HERD_OK) return;
    const int V = herd_tokenizer_n_vocab(tok);
    float *l = malloc((size_t)V * sizeof *l);
    if (!l) __builtin_trap();
    size_t i = 0;
    for (; i < len; i++) {
        if (i % 7 == 0) { /* the mask against tokens one by one, now and then */
            for (int k = 0; k < V; k++) l[k] = 0;
            const int n = herd_json_state_mask(s, l);
            int m = 0;
            for (int k = 0; k < V; k++) {
                const int ok = l[k] == 0;
                if (ok != herd_json_state_allows(s, k)) __builtin_trap();
                m += ok;
            }
            if (n != m || n == 0) __builtin_trap();
        }
        if (herd_json_state_feed(s, text + i, 1)) {
            /* refused: the state is unchanged, so the bytes before still feed on */
            if (i + 1 < len && herd_json_state_feed(s, text + i + 1, 0)) __builtin_trap();
            break;
        }
    }
    if (i == len && herd_json_state_complete(s)) {
        char *z = malloc(len + 1);
        if (!z) __builtin_trap();
        memcpy(z, text, len);
        z[len] = 0;
        cJSON *v = cJSON_ParseWithLengthOpts(z, len + 1, NULL, 1);
        if (!v || memchr(text, 0, len)) __builtin_trap();
        cJSON_Delete(v);
        free(z);
        if (herd_json_state_accept(s, END) || herd_json_state_allows(s, END) || herd_json_state_allows(s, ' '))
            __builtin_trap();
    }
    free(l);
    herd_json_state_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!tok) {
        const char *merged[] = { "{\"", "\":", "\",", "\"}", " \"", "true", "null", "\\u00", "12", "]}", ", " };
        size_t lens[sizeof merged / sizeof *merged];
        for (size_t i = 0; i < sizeof merged / sizeof *merged; i++) lens[i] = strlen(merged[i]);
        herd_error err;
        if (herd_tokenizer_from_tokens(&tok, merged, lens, sizeof merged / sizeof *merged, &err) ||
            herd_json_vocab_new(&vocab, tok, &END, 1, &err))
            __builtin_trap();
    }
    const uint8_t *nul = memchr(data, 0, size);
    herd_json_grammar *g = NULL;
    herd_error err = { { 0 } };
    if (nul) {
        herd_status st = herd_json_grammar_new(&g, vocab, (const char *)data, &err);
        if ((st == HERD_OK) != (g != NULL) || (st != HERD_OK && !err.msg[0])) __builtin_trap();
        if (g) check_text(g, (const char *)nul + 1, size - (size_t)(nul + 1 - data));
        herd_json_grammar_free(g);
    } else {
        if (herd_json_grammar_new(&g, vocab, NULL, &err)) __builtin_trap();
        check_text(g, (const char *)data, size);
        herd_json_grammar_free(g);
    }
    return 0;
}
