/* loader.c - the training data loader: windows of T+1 tokens (inputs T, targets the
 * same shifted by one) starting at multiples of T, the way llm.c walks a file.
 *
 * Invariants: window w of the stream is window (w mod n_windows) of its epoch
 * (w / n_windows). Without shuffle the epoch order is the file order, so step s of
 * batch B reads windows s*B .. s*B+B-1 at token offsets (s*B + b)*T. With shuffle,
 * the epoch's order is a Fisher-Yates permutation from an RNG seeded by (seed,
 * epoch), so the whole state to resume is `pos`, the windows consumed.
 */
#include <stdlib.h>

#include "train/train.h"

herd_status loader_init(train_loader *ld, const tokfile *tf, int B, int T, int shuffle,
                        uint64_t seed, herd_error *err) {
    *ld = (train_loader){ .tf = tf, .B = B, .T = T, .shuffle = shuffle, .seed = seed,
                          .perm_epoch = UINT64_MAX };
    if (tf->n_tokens < (uint64_t)T + 1)
        return herd_errf(err, HERD_ERR_ARG, "token file '%s' has %llu tokens; a sequence of %d "
                         "needs at least %d (pass a smaller --seq)", tf->file.path,
                         (unsigned long long)tf->n_tokens, T, T + 1);
    ld->n_windows = (tf->n_tokens - 1) / (uint64_t)T;
    if (shuffle) {
        ld->perm = malloc(ld->n_windows * sizeof *ld->perm);
        if (!ld->perm) return herd_errf(err, HERD_ERR_NOMEM, "out of memory for the data order");
    }
    return HERD_OK;
}

void loader_free(train_loader *ld) {
    free(ld->perm);
    ld->perm = NULL;
}

static void make_perm(train_loader *ld, uint64_t epoch) {
    herd_rng rng;
    herd_rng_seed(&rng, ld->seed * 0x9E3779B97F4A7C15ull + epoch + 1);
    for (uint64_t i = 0; i < ld->n_windows; i++) ld->perm[i] = i;
    for (uint64_t i = ld->n_windows - 1; i > 0; i--) {
        uint64_t j = herd_rng_next(&rng) % (i + 1);
        uint64_t t = ld->perm[i]; ld->perm[i] = ld->perm[j]; ld->perm[j] = t;
    }
    ld->perm_epoch = epoch;
}

void loader_next(train_loader *ld, int32_t *ids, int32_t *targets) {
    const int T = ld->T;
    for (int b = 0; b < ld->B; b++, ld->pos++) {
        uint64_t epoch = ld->pos / ld->n_windows, w = ld->pos % ld->n_windows;
        if (ld->shuffle) {
            if (ld->perm_epoch != epoch) make_perm(ld, epoch);
            w = ld->perm[w];
        }
        const uint32_t *src = ld->tf->ids + w * (uint64_t)T;
        for (int t = 0; t < T; t++) {
            ids[(size_t)b * T + t] = (int32_t)src[t];
            targets[(size_t)b * T + t] = (int32_t)src[t + 1];
        }
    }
}
