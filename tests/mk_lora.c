/* mk_lora.c - writes a random LoRA adapter for a model (tests/lora_writer.h), for
 * the shell tests and tools/record_lora_fixture.sh. Not a test itself.
 *   mk_lora MODEL OUTDIR [--gguf FILE] [--rank R] [--alpha A] [--targets qkvogud]
 *           [--seed S] [--bf16] [--b-range X] [--zero-b] [--rslora]
 * targets: letters of q k v o g(ate) u(p) d(own); default all seven. */
#include "lora_writer.h"
#include "model.h"

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: mk_lora MODEL OUTDIR [--gguf FILE] [--rank R] [--alpha A] [--targets qkvogud] "
                        "[--seed S] [--bf16] [--b-range X] [--zero-b] [--rslora]\n");
        return 2;
    }
    test_lora p = { 8, 16, 0x7F, 1, 0, HERD_F32, 0.05f, 0 };
    const char *gguf = NULL;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--bf16")) p.dtype = HERD_BF16;
        else if (!strcmp(a, "--zero-b")) p.zero_b = 1;
        else if (!strcmp(a, "--rslora")) p.rslora = 1;
        else if (!v) { fprintf(stderr, "mk_lora: %s needs a value\n", a); return 2; }
        else if (!strcmp(a, "--gguf")) gguf = v, i++;
        else if (!strcmp(a, "--rank")) p.rank = atoi(v), i++;
        else if (!strcmp(a, "--alpha")) p.alpha = strtof(v, NULL), i++;
        else if (!strcmp(a, "--seed")) p.seed = strtoull(v, NULL, 10), i++;
        else if (!strcmp(a, "--b-range")) p.b_range = strtof(v, NULL), i++;
        else if (!strcmp(a, "--targets")) {
            p.targets = 0;
            for (const char *c = v; *c; c++) {
                const char *k = strchr("qkvogud", *c);
                if (!k) { fprintf(stderr, "mk_lora: target '%c' is not one of qkvogud\n", *c); return 2; }
                p.targets |= 1u << (k - "qkvogud");
            }
            i++;
        } else { fprintf(stderr, "mk_lora: unknown option %s\n", a); return 2; }
    }
    herd_model *m;
    herd_error err = { 0 };
    if (model_load(&m, argv[1], &err) || tl_write(argv[2], gguf, herd_model_config(m), &p, &err)) {
        fprintf(stderr, "mk_lora: %s\n", err.msg);
        return 1;
    }
    herd_model_free(m);
    return 0;
}
