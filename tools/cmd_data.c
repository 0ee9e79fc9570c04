/* cmd_data.c - `herd data`: tokenizes plain text or JSONL documents with a model's
 * tokenizer into a token file for `herd train` (format: src/train/tokfile.h), with
 * an optional validation split. The work is herd_data_prepare; this file parses
 * flags and finds the tokenizer and vocab_size.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "herd.h"
#include "cli.h"

static const char *HELP_DATA =
    "usage: herd data -m MODEL -i INPUT [-i INPUT ...] -o TOKENS\n"
    "                 [--val-fraction F --val-out TOKENS2] [--format auto|text|jsonl]\n"
    "Tokenizes documents into a token file (\"HERDTOK1\" header, then little-endian\n"
    "uint32 ids) with <|begin_of_text|> before each document, nothing between them.\n"
    "  -m MODEL          HF model directory, a directory with only tokenizer files,\n"
    "                    tokenizer.model / tokenizer.json, or a .gguf model\n"
    "  -i INPUT          a plain text file (one document) or JSONL file (one document\n"
    "                    per line in a \"text\" field); repeat for more\n"
    "  --format FMT      auto (default: .jsonl/.json are JSONL, others text), text, jsonl\n"
    "  -o TOKENS         training token file\n"
    "  --val-fraction F  send every 1/F-th document (evenly spread, deterministic) to\n"
    "  --val-out TOKENS2 this validation token file instead\n"
    "The header's vocab_size is MODEL's config.json vocab_size when there is one,\n"
    "else the tokenizer's.\n";

static void fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("herd: ", stderr);
    vfprintf(stderr, fmt, ap);
    if (code == 2) fputs("; see 'herd data --help'", stderr);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

int cmd_data(int argc, char **argv) {
    const char **inputs = calloc((size_t)argc + 1, sizeof *inputs);
    if (!inputs) fail(1, "out of memory");
    herd_data_params p;
    memset(&p, 0, sizeof p);
    const char *model = NULL;
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "-h") || !strcmp(s, "--help")) { fputs(HELP_DATA, stdout); free(inputs); return 0; }
        if (i + 1 >= argc) {
            if (!strcmp(s, "-m") || !strcmp(s, "-i") || !strcmp(s, "-o") || !strcmp(s, "--format") ||
                !strcmp(s, "--val-fraction") || !strcmp(s, "--val-out"))
                fail(2, "%s needs a value", s);
            fail(2, "unknown argument '%s'", s);
        }
        const char *v = argv[i + 1];
        if (!strcmp(s, "-m")) model = v;
        else if (!strcmp(s, "-i")) inputs[p.n_inputs++] = v;
        else if (!strcmp(s, "-o")) p.out_path = v;
        else if (!strcmp(s, "--val-out")) p.val_path = v;
        else if (!strcmp(s, "--format")) {
            if (!strcmp(v, "auto")) p.format = HERD_DATA_AUTO;
            else if (!strcmp(v, "text")) p.format = HERD_DATA_TEXT;
            else if (!strcmp(v, "jsonl")) p.format = HERD_DATA_JSONL;
            else fail(2, "--format expects auto, text or jsonl, got '%s'", v);
        }
        else if (!strcmp(s, "--val-fraction")) {
            char *end;
            errno = 0;
            p.val_fraction = strtod(v, &end);
            if (errno || end == v || *end || !(p.val_fraction >= 0 && p.val_fraction < 1))
                fail(2, "--val-fraction expects a number in [0, 1), got '%s'", v);
        }
        else fail(2, "unknown argument '%s'", s);
        i++;
    }
    if (!model) fail(2, "-m MODEL is required");
    if (!p.n_inputs) fail(2, "at least one -i INPUT is required");
    if (!p.out_path) fail(2, "-o TOKENS is required");
    if (p.val_fraction > 0 && !p.val_path) fail(2, "--val-fraction needs --val-out TOKENS2");
    if (p.val_path && p.val_fraction <= 0) fail(2, "--val-out needs --val-fraction F > 0");
    p.inputs = inputs;

    herd_error err;
    herd_tokenizer *tok;
    if (herd_tokenizer_load(&tok, model, &err)) fail(1, "%s", err.msg);
    char cfg[4096];
    struct stat sb;
    snprintf(cfg, sizeof cfg, "%s/config.json", model);
    if (stat(model, &sb) == 0 && S_ISDIR(sb.st_mode) && stat(cfg, &sb) == 0) {
        herd_config c;
        herd_config_default(&c);
        if (herd_config_load(&c, cfg, &err)) fail(1, "%s", err.msg);
        p.vocab_size = (uint32_t)c.vocab_size;
    }
    herd_data_stats st;
    if (herd_data_prepare(tok, &p, &st, &err)) fail(1, "%s", err.msg);
    herd_tokenizer_free(tok);
    fprintf(stderr, "herd: %llu bytes -> %s: %llu document%s, %llu tokens",
            (unsigned long long)st.n_bytes, p.out_path, (unsigned long long)st.n_docs,
            st.n_docs == 1 ? "" : "s", (unsigned long long)st.n_tokens);
    if (p.val_path)
        fprintf(stderr, "; %s: %llu document%s, %llu tokens", p.val_path,
                (unsigned long long)st.n_val_docs, st.n_val_docs == 1 ? "" : "s",
                (unsigned long long)st.n_val_tokens);
    fputc('\n', stderr);
    free(inputs);
    return 0;
}
