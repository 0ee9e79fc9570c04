/* cmd_tokenizer.c - `herd tokenizer train`: learns a byte-level BPE vocabulary with
 * Llama 3's pre-tokenizer from text files and writes it as tokenizer.model
 * (tiktoken) and tokenizer.json (HF) for `herd init --tokenizer` and `herd data`.
 * Inputs are read as raw bytes (each file is text; JSONL is not parsed here).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "herd.h"
#include "cli.h"

static const char *HELP_TOKENIZER =
    "usage: herd tokenizer train -i INPUT [-i INPUT ...] --vocab N -o DIR\n"
    "Learns a byte-level BPE vocabulary with Llama 3's pre-tokenizer regex from the\n"
    "text files (read as raw bytes; invalid UTF-8 is learned byte-wise) and writes\n"
    "DIR/tokenizer.model (tiktoken) and DIR/tokenizer.json (HF). DIR is created.\n"
    "  -i INPUT      a text file (repeat for more)\n"
    "  --vocab N     total vocabulary size: 256 byte tokens + N-512 merges + the 256\n"
    "                Llama 3.1 special tokens after them (N >= 512; default 4096).\n"
    "                A small corpus may support fewer merges: the size is reported.\n"
    "  -o DIR        output directory\n"
    "  -q            no progress lines\n";

static void fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("herd: ", stderr);
    vfprintf(stderr, fmt, ap);
    if (code == 2) fputs("; see 'herd tokenizer --help'", stderr);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) fail(1, "tokenizer train: cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) fail(1, "tokenizer train: out of memory reading '%s'", path);
        n += fread(buf + n, 1, cap - n, f);
        if (n < cap) break;
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (!nb) free(buf);
        buf = nb;
    }
    if (ferror(f)) fail(1, "tokenizer train: error reading '%s'", path);
    fclose(f);
    *len = n;
    return buf;
}

static int cmd_tokenizer_train(int argc, char **argv) {
    const char **inputs = calloc((size_t)argc, sizeof *inputs);
    size_t n_inputs = 0;
    const char *out = NULL;
    long vocab = 4096;
    int quiet = 0;
    if (!inputs) fail(1, "out of memory");
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) { fputs(HELP_TOKENIZER, stdout); free(inputs); return 0; }
        else if (!strcmp(s, "-q")) quiet = 1;
        else if (!strcmp(s, "-i") || !strcmp(s, "-o") || !strcmp(s, "--vocab")) {
            if (!has) fail(2, "%s needs a value", s);
            const char *v = argv[++i];
            if (!strcmp(s, "-i")) inputs[n_inputs++] = v;
            else if (!strcmp(s, "-o")) out = v;
            else {
                char *end;
                errno = 0;
                vocab = strtol(v, &end, 10);
                if (errno || end == v || *end || vocab < 512 || vocab > (1 << 30))
                    fail(2, "--vocab expects an integer in 512..%d, got '%s'", 1 << 30, v);
            }
        }
        else fail(2, "unknown argument '%s'", s);
    }
    if (!n_inputs) fail(2, "tokenizer train needs at least one -i INPUT");
    if (!out) fail(2, "-o DIR is required");
    for (size_t i = 0; i < n_inputs; i++) {
        struct stat sb;
        if (stat(inputs[i], &sb) != 0)
            fail(1, "tokenizer train: input '%s' not found: %s", inputs[i], strerror(errno));
    }
    herd_error err;
    herd_bpe_trainer *tr;
    if (herd_bpe_trainer_new(&tr, &err)) fail(1, "%s", err.msg);
    double t0 = now_s();
    for (size_t i = 0; i < n_inputs; i++) {
        size_t len;
        char *text = read_all(inputs[i], &len);
        herd_status st = herd_bpe_trainer_add(tr, text, len, &err);
        free(text);
        if (st) fail(1, "tokenizer train: %s: %s", inputs[i], err.msg);
    }
    double t1 = now_s();
    herd_tokenizer *tok;
    if (herd_bpe_train(tr, (int)vocab, quiet ? NULL : stderr, &tok, &err)) fail(1, "%s", err.msg);
    double t2 = now_s();
    herd_bpe_stats s;
    herd_bpe_trainer_stats(tr, &s);
    herd_bpe_trainer_free(tr);
    if (mkdir(out, 0777) != 0 && errno != EEXIST)
        fail(1, "tokenizer train: cannot create '%s': %s", out, strerror(errno));
    if (herd_tokenizer_save(tok, out, &err)) fail(1, "%s", err.msg);
    herd_tokenizer_free(tok);
    fprintf(stderr, "herd: %llu bytes, %llu pieces (%llu distinct), %d merges in %.2f s "
            "(split %.2f s, merges %.2f s)\n", (unsigned long long)s.n_bytes,
            (unsigned long long)s.n_pieces, (unsigned long long)s.n_unique, s.n_merges,
            t2 - t0, t1 - t0, t2 - t1);
    if (s.n_vocab < vocab)
        fprintf(stderr, "herd: note: the corpus supports only %d of the %ld tokens asked for\n",
                s.n_vocab, vocab);
    fprintf(stderr, "herd: wrote %s/tokenizer.model and %s/tokenizer.json (vocab_size %d)\n",
            out, out, s.n_vocab);
    free(inputs);
    return 0;
}

int cmd_tokenizer(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        fputs(HELP_TOKENIZER, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train")) return cmd_tokenizer_train(argc - 1, argv + 1);
    fail(2, "unknown tokenizer command '%s' (expected 'train')", argv[1]);
    return 2;
}
