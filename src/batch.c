/* batch.c - herd_session_eval_batch. For now each session is evaluated in turn
 * (correct, but each weight is read once per session); the batched forward that
 * reads weights once per step replaces this loop. */
#include "model.h"

herd_status herd_session_eval_batch(herd_session *const *s, const int32_t *const *ids,
                                    const int *n_ids, int n_seq, herd_error *err) {
    if (n_seq < 0) return herd_errf(err, HERD_ERR_ARG, "batch of %d sequences", n_seq);
    for (int i = 0; i < n_seq; i++) {
        herd_status st = herd_session_eval(s[i], ids[i], n_ids[i], NULL, err);
        if (st) return st;
    }
    return HERD_OK;
}
