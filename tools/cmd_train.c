/* cmd_train.c - `herd train`: parses flags into herd_train_params and calls
 * herd_train(). Everything else (loop, checkpoints, export) is in the library. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "herd.h"

static void usage(FILE *f) {
    fputs("usage: herd train --init MODEL --data TOKENS --out DIR --batch B --seq T --steps N\n"
          "                  --lr LR [options]\n"
          "Trains MODEL (an HF directory or GGUF, e.g. from `herd init`; weights become float32\n"
          "master copies) on a token file from `herd data` with AdamW. Writes DIR/checkpoint.bin\n"
          "(every --save-every steps and at the end), DIR/hf (safetensors F32), DIR/model.gguf\n"
          "(F32) and DIR/loss.svg.\n"
          "  --from-scratch       use MODEL's shape and tokenizer but a training initialisation\n"
          "                       (N(0, 0.02); o/down projections / sqrt(2L); norms 1; --seed)\n"
          "  --wd WD              decoupled weight decay on 2-D weights (default 0.1)\n"
          "  --warmup W           linear warmup steps (default 0)\n"
          "  --schedule S         cosine (to 0.1 LR at step N, default) or constant\n"
          "  --clip C             clip the global gradient norm to C (default 1; 0: off)\n"
          "  --accum K            accumulate K micro-batches per step (default 1)\n"
          "  --beta1 B --beta2 B --eps E   AdamW (default 0.9, 0.95, 1e-8)\n"
          "  --seed S             data-order seed (default 1)\n"
          "  --no-shuffle         step s uses the windows at token offsets (s*B + b)*T\n"
          "  --eval-data TOKENS   held-out token file; its loss is reported\n"
          "  --eval-every N       evaluate every N steps (default: at the end)\n"
          "  --save-every N       checkpoint every N steps (default: at the end)\n"
          "  --resume             continue from DIR/checkpoint.bin if it exists\n"
          "  --log-json           one JSON object per step on stdout\n"
          "  -t THREADS           threads (default: all cores)\n", f);
}

static int parse_int(const char *flag, const char *v, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (*v == 0 || *end || x < 0 || x > 2000000000) {
        fprintf(stderr, "herd: %s expects a non-negative integer, got '%s'\n", flag, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

static int parse_float(const char *flag, const char *v, float *out) {
    char *end;
    float x = strtof(v, &end);
    if (*v == 0 || *end) {
        fprintf(stderr, "herd: %s expects a number, got '%s'\n", flag, v);
        return -1;
    }
    *out = x;
    return 0;
}

int cmd_train(int argc, char **argv) {
    herd_train_params p = herd_train_default_params();
    p.batch = p.seq = p.steps = 0;
    p.lr = 0;
    p.log = stdout;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "--no-shuffle")) { p.shuffle = 0; continue; }
        if (!strcmp(a, "--resume")) { p.resume = 1; continue; }
        if (!strcmp(a, "--log-json")) { p.log_json = 1; continue; }
        if (!strcmp(a, "--from-scratch")) { p.from_scratch = 1; continue; }
        if (i + 1 >= argc) {
            fprintf(stderr, "herd: %s: unknown flag or missing value (see herd train --help)\n", a);
            return 2;
        }
        const char *v = argv[++i];
        int bad = 0, seed = 0;
        if (!strcmp(a, "--init")) p.init_path = v;
        else if (!strcmp(a, "--data")) p.data_path = v;
        else if (!strcmp(a, "--eval-data")) p.eval_path = v;
        else if (!strcmp(a, "--out")) p.out_dir = v;
        else if (!strcmp(a, "--batch")) bad = parse_int(a, v, &p.batch);
        else if (!strcmp(a, "--seq")) bad = parse_int(a, v, &p.seq);
        else if (!strcmp(a, "--steps")) bad = parse_int(a, v, &p.steps);
        else if (!strcmp(a, "--accum")) bad = parse_int(a, v, &p.accum);
        else if (!strcmp(a, "--warmup")) bad = parse_int(a, v, &p.warmup);
        else if (!strcmp(a, "--eval-every")) bad = parse_int(a, v, &p.eval_every);
        else if (!strcmp(a, "--save-every")) bad = parse_int(a, v, &p.save_every);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) bad = parse_int(a, v, &p.n_threads);
        else if (!strcmp(a, "--seed")) { bad = parse_int(a, v, &seed); p.seed = (uint64_t)seed; }
        else if (!strcmp(a, "--lr")) bad = parse_float(a, v, &p.lr);
        else if (!strcmp(a, "--wd")) bad = parse_float(a, v, &p.weight_decay);
        else if (!strcmp(a, "--clip")) bad = parse_float(a, v, &p.clip);
        else if (!strcmp(a, "--beta1")) bad = parse_float(a, v, &p.beta1);
        else if (!strcmp(a, "--beta2")) bad = parse_float(a, v, &p.beta2);
        else if (!strcmp(a, "--eps")) bad = parse_float(a, v, &p.eps);
        else if (!strcmp(a, "--schedule")) {
            if (!strcmp(v, "cosine")) p.schedule = HERD_SCHEDULE_COSINE;
            else if (!strcmp(v, "constant")) p.schedule = HERD_SCHEDULE_CONSTANT;
            else { fprintf(stderr, "herd: --schedule expects cosine or constant, got '%s'\n", v); return 2; }
        } else {
            fprintf(stderr, "herd: unknown flag '%s' (see herd train --help)\n", a);
            return 2;
        }
        if (bad) return 2;
    }
    const char *missing = !p.init_path ? "--init" : !p.data_path ? "--data" : !p.out_dir ? "--out"
                          : !p.batch ? "--batch" : !p.seq ? "--seq" : !p.steps ? "--steps"
                          : !(p.lr > 0) ? "--lr" : NULL;
    if (missing) {
        fprintf(stderr, "herd: train needs %s (see herd train --help)\n", missing);
        return 2;
    }
    herd_error err = { { 0 } };
    if (herd_train(&p, &err) != HERD_OK) {
        fprintf(stderr, "herd: %s\n", err.msg);
        return 1;
    }
    return 0;
}
