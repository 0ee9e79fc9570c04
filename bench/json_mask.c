/* json_mask.c - how long herd_json_state_mask takes over a real vocabulary, at
 * a few places in a JSON text (a mask is computed only when the sampled token is
 * refused, see sched.c's pick).
 * build: cc -O2 -Iinclude bench/json_mask.c build/libherd.a -lpcre2-8 -lcjson -lmicrohttpd -lm -lpthread -fopenmp -o build/json_mask
 * run:   build/json_mask ../shared/tokenizers/llama3/tokenizer.model */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "herd.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    herd_tokenizer *t;
    herd_error err;
    if (argc < 2 || herd_tokenizer_load(&t, argv[1], &err)) {
        fprintf(stderr, "usage: json_mask TOKENIZER (%s)\n", argc < 2 ? "" : err.msg);
        return 1;
    }
    const int V = herd_tokenizer_n_vocab(t);
    const int32_t end = herd_tokenizer_special_id(t, "<|eot_id|>");
    const char *schema = "{\"type\": \"object\", \"properties\": {\"name\": {\"type\": \"string\"}, \"age\": "
                         "{\"type\": \"integer\"}, \"tags\": {\"type\": \"array\", \"items\": {\"type\": \"string\"}}}, "
                         "\"required\": [\"name\", \"age\", \"tags\"]}";
    const char *at[] = { "", "{", "{\"name\": \"Jo", "{\"name\": \"Jo\", \"age\": 4", "{\"name\": \"Jo\", \"age\": 4, \"tags\": [" };
    float *l = malloc((size_t)V * sizeof *l);
    herd_json_vocab *v;
    double t0 = now();
    if (herd_json_vocab_new(&v, t, &end, 1, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    printf("vocabulary for grammars: %.1f ms (once per tokenizer)\n", 1e3 * (now() - t0));
    for (int k = 0; k < 2; k++) {
        herd_json_grammar *g;
        t0 = now();
        if (herd_json_grammar_new(&g, v, k ? schema : NULL, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        printf("%s grammar: %.3f ms\n", k ? "schema" : "any object", 1e3 * (now() - t0));
        for (size_t i = 0; i < sizeof at / sizeof *at; i++) {
            herd_json_state *s;
            herd_json_state_new(&s, g, &err);
            herd_json_state_feed(s, at[i], strlen(at[i]));
            double best = 1e9;
            int n = 0;
            for (int r = 0; r < 5; r++) {
                double t0 = now();
                n = herd_json_state_mask(s, l);
                double dt = now() - t0;
                best = dt < best ? dt : best;
            }
            printf("%-10s after %-42s %6d of %d tokens allowed, mask %.2f ms (best of 5)\n", k ? "schema" : "any object",
                   at[i], n, V, 1e3 * best);
            herd_json_state_free(s);
        }
        herd_json_grammar_free(g);
    }
    free(l);
    herd_json_vocab_free(v);
    herd_tokenizer_free(t);
    return 0;
}
